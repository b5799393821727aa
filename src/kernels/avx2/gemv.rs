//! The GEMV kernel on AVX2 + FMA: four panels at once, eight independent FMA chains.

use super::Avx2Fma;
use crate::kernels::GemvKernel;
use crate::kernels::pack::{NR, PackedMatrix};
use std::arch::x86_64::*;

impl GemvKernel for Avx2Fma {
    unsafe fn panels(
        index: &[u32],
        value: &[f32],
        w: &PackedMatrix,
        p: usize,
        group: usize,
        acc: &mut [[f32; NR]; 4],
    ) {
        // SAFETY: the trait's contract (AVX2 and FMA present, indices below `k`, panels
        // `p..p + group` in `w`), passed on.
        unsafe { avx2(index, value, w, p, group, acc) }
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA, every `index` must be below `w.k()`, and panels
/// `p..p + group` must exist in `w`.
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(
    index: &[u32],
    value: &[f32],
    w: &PackedMatrix,
    p: usize,
    group: usize,
    acc: &mut [[f32; NR]; 4],
) {
    let k = w.k();
    // Missing panels of a short group point at the first one; their sums are discarded.
    let base = |g: usize| w.panel(p + if g < group { g } else { 0 }).as_ptr() as *const f32;
    let (b0, b1, b2, b3) = (base(0), base(1), base(2), base(3));
    let mut v = [_mm256_setzero_ps(); 8];
    for (&i, &a) in index.iter().zip(value) {
        let off = i as usize * NR;
        debug_assert!((i as usize) < k);
        let a = _mm256_set1_ps(a);
        // SAFETY: `i < source_len <= k` (asserted by the caller), so line `i` of each panel (64-byte aligned,
        // 16 f32) lies inside that panel.
        unsafe {
            v[0] = _mm256_fmadd_ps(a, _mm256_load_ps(b0.add(off)), v[0]);
            v[1] = _mm256_fmadd_ps(a, _mm256_load_ps(b0.add(off + 8)), v[1]);
            v[2] = _mm256_fmadd_ps(a, _mm256_load_ps(b1.add(off)), v[2]);
            v[3] = _mm256_fmadd_ps(a, _mm256_load_ps(b1.add(off + 8)), v[3]);
            v[4] = _mm256_fmadd_ps(a, _mm256_load_ps(b2.add(off)), v[4]);
            v[5] = _mm256_fmadd_ps(a, _mm256_load_ps(b2.add(off + 8)), v[5]);
            v[6] = _mm256_fmadd_ps(a, _mm256_load_ps(b3.add(off)), v[6]);
            v[7] = _mm256_fmadd_ps(a, _mm256_load_ps(b3.add(off + 8)), v[7]);
        }
    }
    for (g, acc) in acc.iter_mut().enumerate() {
        // SAFETY: each `acc` row holds 16 f32.
        unsafe {
            _mm256_storeu_ps(acc.as_mut_ptr(), v[2 * g]);
            _mm256_storeu_ps(acc.as_mut_ptr().add(8), v[2 * g + 1]);
        }
    }
}
