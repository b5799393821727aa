//! The int8 micro-kernel on AVX-512 VNNI: a 12 × 16 tile of i32 sums in twelve zmm
//! accumulators. Per `k` group, one aligned load of the panel line and, per row, a broadcast of
//! its four activations and one `vpdpbusd` (u8 × s8, four products summed into each i32 lane,
//! without intermediate saturation).

use super::Avx512;
use crate::kernels::qgemm::{Acc, LayerCall, QGemmKernel, finish_tile, layer_loop};
use crate::kernels::quant::QLine;
use crate::kernels::quant::{QNR, QuantizedMatrix, RowQuant, quantize_rows_with};
use std::arch::x86_64::*;

const MR: usize = 12;

impl QGemmKernel for Avx512 {
    const MR: usize = MR;

    unsafe fn tile(a: &[u8], lda: usize, rows: usize, panel: &[QLine], acc: &mut Acc) {
        // SAFETY: the trait's contract (AVX-512F and VNNI present: the VNNI path is made only
        // where they are; `rows ≤ MR`; `a` long enough), passed on.
        unsafe {
            match rows {
                1 => rows_of::<1>(a, lda, panel, acc),
                2 => rows_of::<2>(a, lda, panel, acc),
                3 => rows_of::<3>(a, lda, panel, acc),
                4 => rows_of::<4>(a, lda, panel, acc),
                5 => rows_of::<5>(a, lda, panel, acc),
                6 => rows_of::<6>(a, lda, panel, acc),
                7 => rows_of::<7>(a, lda, panel, acc),
                8 => rows_of::<8>(a, lda, panel, acc),
                9 => rows_of::<9>(a, lda, panel, acc),
                10 => rows_of::<10>(a, lda, panel, acc),
                11 => rows_of::<11>(a, lda, panel, acc),
                _ => rows_of::<MR>(a, lda, panel, acc),
            }
        }
    }

    #[inline(always)]
    unsafe fn finish(
        acc: &Acc,
        params: &[RowQuant],
        w: &QuantizedMatrix,
        j: usize,
        relu: bool,
        c: &mut [f32],
        ldc: usize,
    ) {
        let first = j * QNR;
        if w.n() - first < QNR {
            finish_tile(acc, params, w, j, relu, c, ldc);
            return;
        }
        assert!(params.len() <= acc.len() && c.len() >= (params.len() - 1) * ldc + first + QNR);
        // SAFETY: the trait's contract (AVX-512F present). The column data of panel `j` is 16
        // values of each padded vector; row `r`'s 16 outputs at `r·ldc + first` lie in `c`
        // (asserted above).
        unsafe {
            let scale = _mm512_loadu_ps(w.scales()[first..first + QNR].as_ptr());
            let sums = _mm512_loadu_si512(w.column_sums()[first..].as_ptr() as *const __m512i);
            let bias = _mm512_loadu_ps(w.bias()[first..first + QNR].as_ptr());
            let zero = _mm512_setzero_ps();
            for (r, (acc, p)) in acc.iter().zip(params).enumerate() {
                // `finish_tile`'s operations in its order: i32 sum minus zero point times
                // column sum, to f32 (nearest), times (row scale × column scale), plus bias.
                let sum = _mm512_loadu_si512(acc.as_ptr() as *const __m512i);
                let shifted =
                    _mm512_sub_epi32(sum, _mm512_mullo_epi32(_mm512_set1_epi32(p.zero), sums));
                let step = _mm512_mul_ps(_mm512_set1_ps(p.scale), scale);
                let mut v = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(shifted), step), bias);
                if relu {
                    // `vmaxps(v, 0)` is 0 unless v > 0: `finish_tile`'s select.
                    v = _mm512_max_ps(v, zero);
                }
                _mm512_storeu_ps(c.as_mut_ptr().add(r * ldc + first), v);
            }
        }
    }

    unsafe fn layer(call: &mut LayerCall<'_>) {
        // SAFETY: the trait's contract, passed on.
        unsafe { layer_here(call) }
    }

    unsafe fn quantize(
        x: &[f32],
        width: usize,
        rows: usize,
        q: &mut [u8],
        stride: usize,
        params: &mut [RowQuant],
    ) {
        // SAFETY: the trait's contract, passed on.
        unsafe { quantize_here(x, width, rows, q, stride, params) }
    }
}

/// The shared loop nest and epilogue, compiled for this instruction set.
///
/// # Safety
/// The CPU supports it, and `call` is checked.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn layer_here(call: &mut LayerCall<'_>) {
    // SAFETY: the caller's contract.
    unsafe { layer_loop::<Avx512>(call) }
}

/// The shared activation quantization, compiled for this instruction set.
///
/// # Safety
/// The CPU supports it.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn quantize_here(
    x: &[f32],
    width: usize,
    rows: usize,
    q: &mut [u8],
    stride: usize,
    params: &mut [RowQuant],
) {
    // SAFETY: this function's target features include row_range's.
    quantize_rows_with(x, width, rows, q, stride, params, |row| unsafe {
        row_range(row)
    });
}

/// `quant::row_range` on zmm registers: the same minimum and maximum (of the finite values;
/// NaN rows become NaN scores whatever this returns).
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn row_range(row: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut chunks = row.chunks_exact(QNR);
    for chunk in &mut chunks {
        // SAFETY: a chunk is 16 f32.
        let v = unsafe { _mm512_loadu_ps(chunk.as_ptr()) };
        lo = _mm512_min_ps(lo, v);
        hi = _mm512_max_ps(hi, v);
    }
    let tail = chunks.remainder();
    // SAFETY: the mask covers the `tail.len() < 16` values of the tail; the rest load as 0,
    // which the range includes anyway.
    let v = unsafe { _mm512_maskz_loadu_ps((1u16 << tail.len()) - 1, tail.as_ptr()) };
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
    (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi))
}

/// The kernel for `R` rows.
///
/// # Safety
/// The CPU supports AVX-512F and AVX512_VNNI; `a` holds `R` rows `lda` apart of
/// `4 · panel.len()` bytes.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn rows_of<const R: usize>(a: &[u8], lda: usize, panel: &[QLine], acc: &mut Acc) {
    let groups = panel.len();
    assert!(R <= MR && (groups == 0 || a.len() >= (R - 1) * lda + 4 * groups));
    // Few rows leave the `vpdpbusd` latency exposed on one accumulator per row: they take
    // groups in turn into four sets of sums, added at the end (integer sums: the order changes
    // nothing). Each set is indexed only by constants, so the sums stay in registers (an index
    // that varies at run time puts the array on the stack: 2-row layers ran 3× slower so).
    let zero = _mm512_setzero_si512();
    let mut sets = [[zero; R]; 4];
    let [s0, s1, s2, s3] = &mut sets;
    if R <= 3 {
        let mut quads = panel.chunks_exact(4);
        for (i, four) in (&mut quads).enumerate() {
            let g = 4 * i;
            // SAFETY: `step`'s contract: this function's features; groups below `groups`.
            unsafe {
                step(s0, a, lda, g, &four[0]);
                step(s1, a, lda, g + 1, &four[1]);
                step(s2, a, lda, g + 2, &four[2]);
                step(s3, a, lda, g + 3, &four[3]);
            }
        }
        let first = groups - quads.remainder().len();
        for (g, line) in (first..).zip(quads.remainder()) {
            // SAFETY: as above.
            unsafe { step(s0, a, lda, g, line) };
        }
    } else {
        for (g, line) in panel.iter().enumerate() {
            // SAFETY: `step`'s contract: this function's features; `g < groups`.
            unsafe { step(s0, a, lda, g, line) };
        }
    }
    for (r, out) in acc.iter_mut().take(R).enumerate() {
        let sum = _mm512_add_epi32(
            _mm512_add_epi32(s0[r], s1[r]),
            _mm512_add_epi32(s2[r], s3[r]),
        );
        // SAFETY: a row of `acc` is 16 i32: one unaligned zmm store.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr() as *mut __m512i, sum) };
    }
}

/// Adds group `g` of the `R` rows of `a` (`lda` apart) times `line` to `sums`.
///
/// # Safety
/// The CPU supports AVX-512F and AVX512_VNNI; row `r`'s group `g`, `r·lda + 4g .. + 4`, lies
/// in `a`.
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
unsafe fn step<const R: usize>(
    sums: &mut [__m512i; R],
    a: &[u8],
    lda: usize,
    g: usize,
    line: &QLine,
) {
    // SAFETY: a line is 64 bytes, 64-byte aligned (`QLine`). Row `r`'s group `g` is inside
    // `a` (the caller's contract); read unaligned.
    unsafe {
        let w = _mm512_load_si512(line.0.as_ptr() as *const __m512i);
        for (r, sum) in sums.iter_mut().enumerate() {
            let four = std::ptr::read_unaligned(a.as_ptr().add(r * lda + 4 * g) as *const i32);
            *sum = _mm512_dpbusd_epi32(*sum, _mm512_set1_epi32(four), w);
        }
    }
}
