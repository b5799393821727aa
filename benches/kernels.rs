//! Each kernel alone: the packed GEMM with fused bias + ReLU (against `matrixmultiply`, which
//! packs per call and allocates) at the Criteo-like and MovieLens-like layer shapes, the
//! one-row GEMV (bytes of weights read per second), the FM pairwise term, and the machine's
//! FMA peak (twelve independent FMA chains, on ymm and, where the CPU has AVX-512, zmm), the bound the GEMM figures are read against; and
//! the trainer's backward products at the Criteo-like first layer (`gemm_train`); and the int8
//! layer (`qgemm`) on every int8 path this CPU has (AMX, AVX-512 VNNI, AVX2, scalar) at the
//! scorer's block of 144 rows and at small batches.
//! Run with `cargo bench --bench kernels`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use deepfm::Isa;
use deepfm::kernels::fm::fm_pairwise;
use deepfm::kernels::gemm::{PackBuffer, PackedMatrix, gemm_at_bias_act, gemm_bias_act};
use deepfm::kernels::gemv::{NonZeros, gemv_bias_act};
use deepfm::kernels::qgemm::{Int8Path, qgemm_bias_act, quantize_rows_on};
use deepfm::kernels::quant::{QK, QuantizedMatrix, RowQuant};
use deepfm::rng::Rng;
use std::hint::black_box;
use std::time::Duration;

fn gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm");
    group
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let mut rng = Rng::new(1);
    for (m, k, n) in [
        (4096usize, 624usize, 400usize),
        (4096, 400, 400),
        (4096, 64, 256),
        (1, 624, 400),
    ] {
        let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
        let w: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let packed = PackedMatrix::pack(&w, &bias, n, k);
        let mut out = vec![0.0f32; m * n];
        let mut buffer = PackBuffer::new();
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let shape = format!("{m}x{k}x{n}");
        for isa in Isa::available() {
            group.bench_function(BenchmarkId::new(isa.name(), &shape), |b| {
                b.iter(|| {
                    gemm_bias_act(
                        isa,
                        black_box(&a),
                        k,
                        m,
                        &packed,
                        true,
                        &mut out,
                        n,
                        &mut buffer,
                    )
                })
            });
        }
        group.bench_function(BenchmarkId::new("matrixmultiply", &shape), |b| {
            b.iter(|| {
                // SAFETY: the pointers and strides describe the `a`, `w` and `out` buffers
                // above: A m×k row-major, Wᵀ read as k×n with strides (1, k), C m×n row-major.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        w.as_ptr(),
                        1,
                        k as isize,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            })
        });
    }
    group.finish();
}

fn qgemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("qgemm");
    group
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let mut rng = Rng::new(3);
    // The scorer's block (`infer::BLOCK_ROWS`) at the Criteo-like layers, and small batches.
    for (m, k, n) in [
        (144usize, 624usize, 400usize),
        (144, 400, 400),
        (16, 400, 400),
        (8, 400, 400),
        (4, 400, 400),
        (2, 400, 400),
        (1, 624, 400),
    ] {
        let x: Vec<f32> = (0..m * k).map(|_| rng.normal().max(0.0)).collect();
        let w: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let layer = QuantizedMatrix::quantize(&w, &bias, n, k);
        let lda = QK * layer.groups();
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let shape = format!("{m}x{k}x{n}");
        for path in Int8Path::available() {
            let (mut q, mut p) = (vec![0u8; m * lda], vec![RowQuant::default(); m]);
            quantize_rows_on(path, &x, k, m, &mut q, lda, &mut p);
            group.bench_function(BenchmarkId::new(path.name(), &shape), |b| {
                b.iter(|| {
                    qgemm_bias_act(path, black_box(&q), lda, &p, m, &layer, true, &mut out, n)
                })
            });
        }
    }
    group.finish();
}

fn fm(c: &mut Criterion) {
    let mut group = c.benchmark_group("fm_pairwise");
    let mut rng = Rng::new(2);
    for (fields, d) in [(39usize, 16usize), (2, 32), (39, 13)] {
        let x: Vec<f32> = (0..fields * d).map(|_| rng.normal()).collect();
        for isa in Isa::available() {
            group.bench_function(BenchmarkId::new(isa.name(), format!("{fields}x{d}")), |b| {
                b.iter(|| fm_pairwise(isa, black_box(&x), fields, d))
            });
        }
    }
    group.finish();
}

/// The trainer's two backward products at the Criteo-like first layer (624 inputs, 400
/// units) for one thread's half of a batch of 4096: `dX = dZ · W` (`W` packed transposed) and
/// `dW = dZᵀ · X` (`dZ` read by columns, `X` packed transposed). The forward product is
/// `gemm/…/4096x624x400` above.
fn gemm_train(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_train");
    group
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let (rows, inputs, units) = (2048usize, 624usize, 400usize);
    let mut rng = Rng::new(2);
    let mut normal = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.normal()).collect() };
    let (x, w, dz) = (
        normal(rows * inputs),
        normal(units * inputs),
        normal(rows * units),
    );
    // `W` (units × inputs) as the `k = units`, `n = inputs` operand of `dX`.
    let mut w_t = PackedMatrix::pack(&[], &[], 0, 0);
    w_t.repack_transposed(&w, inputs, units);
    // `X` (rows × inputs) as the `k = rows`, `n = inputs` operand of `dW`.
    let mut x_t = PackedMatrix::pack(&[], &[], 0, 0);
    x_t.repack_transposed(&x, inputs, rows);
    let mut out = vec![0.0f32; rows * inputs];
    let mut buffer = PackBuffer::new();
    group.throughput(Throughput::Elements((2 * rows * inputs * units) as u64));
    for isa in Isa::available() {
        group.bench_function(BenchmarkId::new(isa.name(), "dX 2048x400x624"), |b| {
            b.iter(|| {
                gemm_bias_act(
                    isa,
                    black_box(&dz),
                    units,
                    rows,
                    &w_t,
                    false,
                    &mut out,
                    inputs,
                    &mut buffer,
                )
            })
        });
        group.bench_function(BenchmarkId::new(isa.name(), "dW 400x2048x624"), |b| {
            b.iter(|| {
                gemm_at_bias_act(
                    isa,
                    black_box(&dz),
                    units,
                    units,
                    &x_t,
                    false,
                    &mut out,
                    inputs,
                    &mut buffer,
                )
            })
        });
    }
    group.finish();
}

fn gemv(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemv");
    group
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    let mut rng = Rng::new(3);
    // Layer 1 of the Criteo-like model (dense input), then a hidden layer after ReLU (half zero).
    for (k, n, zero_fraction) in [(624usize, 400usize, 0.0f32), (400, 400, 0.5)] {
        let x: Vec<f32> = (0..k)
            .map(|_| {
                if rng.uniform() < zero_fraction {
                    0.0
                } else {
                    rng.normal()
                }
            })
            .collect();
        let w: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let packed = PackedMatrix::pack(&w, &bias, n, k);
        let mut nz = NonZeros::with_capacity(k);
        nz.gather(&x);
        let mut y = vec![0.0f32; n];
        // Bytes of weights actually read: one 64-byte line per panel per non-zero input.
        group.throughput(Throughput::Bytes((nz.len() * n.div_ceil(16) * 64) as u64));
        for isa in Isa::available() {
            group.bench_function(
                BenchmarkId::new(isa.name(), format!("{k}x{n}-zeros{zero_fraction}")),
                |b| b.iter(|| gemv_bias_act(isa, black_box(&nz), &packed, true, &mut y)),
            );
        }
    }
    group.finish();
}

/// Twelve independent FMA chains on 8 lanes: the throughput ceiling of the GEMM micro-kernel.
fn fma_peak(c: &mut Criterion) {
    #[cfg(target_arch = "x86_64")]
    if deepfm::kernels::IsaKind::Avx2Fma.is_supported() {
        const ITERS: u64 = 1_000_000;
        #[target_feature(enable = "avx2,fma")]
        fn chains() -> f32 {
            use std::arch::x86_64::*;
            let (b, c) = (_mm256_set1_ps(0.999_9), _mm256_set1_ps(0.000_1));
            let mut acc = [_mm256_set1_ps(black_box(0.1)); 12];
            for _ in 0..ITERS {
                for a in acc.iter_mut() {
                    *a = _mm256_fmadd_ps(*a, b, c);
                }
            }
            let mut lanes = [0.0f32; 8];
            let sum = acc
                .iter()
                .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
            // SAFETY: `lanes` holds 8 f32.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
            lanes[0]
        }
        let mut group = c.benchmark_group("fma_peak");
        group
            .measurement_time(Duration::from_secs(2))
            .sample_size(20);
        group.throughput(Throughput::Elements(ITERS * 12 * 16));
        // SAFETY: AVX2 and FMA support was checked above.
        group.bench_function("avx2", |b| b.iter(|| unsafe { chains() }));
        if deepfm::kernels::IsaKind::Avx512.is_supported() {
            #[target_feature(enable = "avx512f")]
            fn chains512() -> f32 {
                use std::arch::x86_64::*;
                let (b, c) = (_mm512_set1_ps(0.999_9), _mm512_set1_ps(0.000_1));
                let mut acc = [_mm512_set1_ps(black_box(0.1)); 12];
                for _ in 0..ITERS {
                    for a in acc.iter_mut() {
                        *a = _mm512_fmadd_ps(*a, b, c);
                    }
                }
                let sum = acc
                    .iter()
                    .fold(_mm512_setzero_ps(), |s, &a| _mm512_add_ps(s, a));
                _mm512_reduce_add_ps(sum)
            }
            // Twice the flops per FMA: 16 lanes.
            group.throughput(Throughput::Elements(ITERS * 12 * 32));
            // SAFETY: AVX-512F support was checked above.
            group.bench_function("avx512", |b| b.iter(|| unsafe { chains512() }));
        }
        group.finish();
    }
    let _ = c;
}

criterion_group!(benches, gemm, gemm_train, gemv, qgemm, fm, fma_peak);
criterion_main!(benches);
