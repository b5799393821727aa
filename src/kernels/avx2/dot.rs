//! The dot product on AVX2 + FMA: four ymm accumulators, interleaved.

use super::Avx2Fma;
use crate::kernels::DotKernel;
use crate::kernels::shared::dot_reduce;
use std::arch::x86_64::*;

impl DotKernel for Avx2Fma {
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: the trait's contract (AVX2 and FMA present, equal lengths), passed on.
        unsafe { dot_avx2(a, b) }
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let full = a.len() / 8 * 8;
    let mut acc = [_mm256_setzero_ps(); 4];
    for j in 0..full / 8 {
        // SAFETY: `8j + 8 <= full <= a.len() == b.len()`.
        unsafe {
            let x = _mm256_loadu_ps(a.as_ptr().add(8 * j));
            let y = _mm256_loadu_ps(b.as_ptr().add(8 * j));
            acc[j % 4] = _mm256_fmadd_ps(x, y, acc[j % 4]);
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut out = [0.0f32; 8];
    // SAFETY: `out` holds 8 f32.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    dot_reduce(out, a, b, full)
}
