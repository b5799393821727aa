//! The FM pairwise term on AVX2 + FMA: sums and sums of squares of eight columns at a time.

use super::Avx2Fma;
use crate::kernels::FmKernel;
use crate::kernels::shared::fm_tail;
use std::arch::x86_64::*;

impl FmKernel for Avx2Fma {
    unsafe fn fm_pairwise(x: &[f32], fields: usize, d: usize) -> f32 {
        // SAFETY: the trait's contract (AVX2 and FMA present, `x.len() == fields * d`), passed
        // on.
        unsafe { fm_avx2(x, fields, d) }
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA, and `x.len() == fields * d`.
#[target_feature(enable = "avx2,fma")]
unsafe fn fm_avx2(x: &[f32], fields: usize, d: usize) -> f32 {
    let full = d / 8 * 8;
    let p = x.as_ptr();
    let mut total = _mm256_setzero_ps();
    for j in (0..full).step_by(8) {
        let (mut s, mut q) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for f in 0..fields {
            // SAFETY: `f * d + j + 8 <= fields * d = x.len()` because `j + 8 <= full <= d`.
            let v = unsafe { _mm256_loadu_ps(p.add(f * d + j)) };
            s = _mm256_add_ps(s, v);
            q = _mm256_fmadd_ps(v, v, q);
        }
        total = _mm256_add_ps(total, _mm256_fmsub_ps(s, s, q));
    }
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), total) };
    0.5 * (lanes.iter().sum::<f32>() + fm_tail(x, fields, d, full))
}
