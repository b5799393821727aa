//! Each kernel alone: the packed GEMM with fused bias + ReLU (against `matrixmultiply`, which
//! packs per call and allocates) at the Criteo-like and MovieLens-like layer shapes, and the FM
//! pairwise term. Run with `cargo bench --bench kernels`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use deepfm::Isa;
use deepfm::kernels::fm::fm_pairwise;
use deepfm::kernels::gemm::{PackBuffer, PackedMatrix, gemm_bias_act};
use deepfm::random::Rng;
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

criterion_group!(benches, gemm, fm);
criterion_main!(benches);
