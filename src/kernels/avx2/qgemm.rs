//! The int8 micro-kernel on AVX2: a 4 × 16 tile of i32 sums in eight ymm accumulators. Per `k`
//! group, the panel line's two halves (columns 0–7 and 8–15) are loaded once; each row's four
//! activations are broadcast, multiplied by the weights with `vpmaddubsw` (u8 × s8, adjacent
//! pairs summed into i16: never saturating, as the weights keep `quant`'s pair rule) and the i16
//! pairs summed into i32 lanes with `vpmaddwd` by ones.

use super::Avx2Fma;
use crate::kernels::qgemm::{Acc, LayerCall, QGemmKernel, finish_tile, layer_loop};
use crate::kernels::quant::{QLine, QNR};
use crate::kernels::quant::{QuantizedMatrix, RowQuant, quantize_rows_with};
use std::arch::x86_64::*;

const MR: usize = 4;

impl QGemmKernel for Avx2Fma {
    const MR: usize = MR;

    unsafe fn tile(a: &[u8], lda: usize, rows: usize, panel: &[QLine], acc: &mut Acc) {
        // SAFETY: the trait's contract (AVX2 present, `rows ≤ MR`, `a` long enough), passed on.
        unsafe { crate::kernels::by_tile_rows!(rows, [1, 2, 3], MR, rows_of(a, lda, panel, acc)) }
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
        // SAFETY: the trait's contract (AVX2 present). Panel `j`'s column data is 16 values
        // of each padded vector, read as two halves of 8; row `r`'s 16 outputs at
        // `r·ldc + first` lie in `c` (asserted above).
        unsafe {
            let zero = _mm256_setzero_ps();
            for half in 0..2 {
                let at = first + 8 * half;
                let scale = _mm256_loadu_ps(w.scales()[at..at + 8].as_ptr());
                let sums = _mm256_loadu_si256(w.column_sums()[at..].as_ptr() as *const __m256i);
                let bias = _mm256_loadu_ps(w.bias()[at..at + 8].as_ptr());
                for (r, (acc, p)) in acc.iter().zip(params).enumerate() {
                    // `finish_tile`'s operations in its order (see the AVX-512 kernel).
                    let sum = _mm256_loadu_si256(acc[8 * half..].as_ptr() as *const __m256i);
                    let zp = _mm256_mullo_epi32(_mm256_set1_epi32(p.zero), sums);
                    let step = _mm256_mul_ps(_mm256_set1_ps(p.scale), scale);
                    let f = _mm256_cvtepi32_ps(_mm256_sub_epi32(sum, zp));
                    let mut v = _mm256_add_ps(_mm256_mul_ps(f, step), bias);
                    if relu {
                        v = _mm256_max_ps(v, zero);
                    }
                    _mm256_storeu_ps(c.as_mut_ptr().add(r * ldc + at), v);
                }
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
#[target_feature(enable = "avx2")]
unsafe fn layer_here(call: &mut LayerCall<'_>) {
    // SAFETY: the caller's contract.
    unsafe { layer_loop::<Avx2Fma>(call) }
}

/// The shared activation quantization, compiled for this instruction set.
///
/// # Safety
/// The CPU supports it.
#[target_feature(enable = "avx2")]
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

/// `quant::row_range` on ymm registers: the same minimum and maximum (of the finite values;
/// NaN rows become NaN scores whatever this returns).
///
/// # Safety
/// The CPU supports AVX.
#[target_feature(enable = "avx2")]
unsafe fn row_range(row: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        // SAFETY: a chunk is 8 f32.
        let v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
        lo = _mm256_min_ps(lo, v);
        hi = _mm256_max_ps(hi, v);
    }
    let (mut l, mut h) = ([0.0f32; 8], [0.0f32; 8]);
    // SAFETY: each array holds 8 f32.
    unsafe {
        _mm256_storeu_ps(l.as_mut_ptr(), lo);
        _mm256_storeu_ps(h.as_mut_ptr(), hi);
    }
    let tail = chunks.remainder();
    let lo = l
        .iter()
        .chain(tail)
        .fold(0.0f32, |m, &v| if v < m { v } else { m });
    let hi = h
        .iter()
        .chain(tail)
        .fold(0.0f32, |m, &v| if v > m { v } else { m });
    (lo, hi)
}

/// The kernel for `R` rows.
///
/// # Safety
/// The CPU supports AVX2; `a` holds `R` rows `lda` apart of `4 · panel.len()` bytes.
#[target_feature(enable = "avx2")]
unsafe fn rows_of<const R: usize>(a: &[u8], lda: usize, panel: &[QLine], acc: &mut Acc) {
    let groups = panel.len();
    assert!(R <= MR && (groups == 0 || a.len() >= (R - 1) * lda + 4 * groups));
    let ones = _mm256_set1_epi16(1);
    let mut sums = [[_mm256_setzero_si256(); 2]; R];
    let pa = a.as_ptr();
    for (g, line) in panel.iter().enumerate() {
        let w = line.0.as_ptr() as *const __m256i;
        // SAFETY: a line is 64 bytes, 64-byte aligned (`QLine`): two aligned ymm loads. Row `r`'s
        // group `g` is at `r·lda + 4g`, inside `a` (asserted above); read unaligned.
        unsafe {
            let (w0, w1) = (_mm256_load_si256(w), _mm256_load_si256(w.add(1)));
            for (r, sum) in sums.iter_mut().enumerate() {
                let four = std::ptr::read_unaligned(pa.add(r * lda + 4 * g) as *const i32);
                let x = _mm256_set1_epi32(four);
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(x, w0), ones);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(x, w1), ones);
                sum[0] = _mm256_add_epi32(sum[0], p0);
                sum[1] = _mm256_add_epi32(sum[1], p1);
            }
        }
    }
    for (out, sum) in acc.iter_mut().zip(&sums) {
        let p = out.as_mut_ptr() as *mut __m256i;
        // SAFETY: a row of `acc` is 16 i32: two unaligned ymm stores.
        unsafe {
            _mm256_storeu_si256(p, sum[0]);
            _mm256_storeu_si256(p.add(1), sum[1]);
        }
    }
    const _: () = assert!(QNR == 16);
}
