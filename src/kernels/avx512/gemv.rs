//! The GEMV kernel on AVX-512: four panels at once, one zmm chain each.

use super::Avx512;
use crate::kernels::GemvKernel;
use crate::kernels::pack::{NR, PackedMatrix};
use std::arch::x86_64::*;

impl GemvKernel for Avx512 {
    unsafe fn panels(
        index: &[u32],
        value: &[f32],
        w: &PackedMatrix,
        p: usize,
        group: usize,
        acc: &mut [[f32; NR]; 4],
    ) {
        // SAFETY: the trait's contract (AVX-512F present, indices below `k`, panels
        // `p..p + group` in `w`), passed on.
        unsafe { avx512(index, value, w, p, group, acc) }
    }
}

/// # Safety
/// The CPU must support AVX-512F, every `index` must be below `w.k()`, and panels
/// `p..p + group` must exist in `w`.
#[target_feature(enable = "avx512f")]
unsafe fn avx512(
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
    let mut v = [_mm512_setzero_ps(); 4];
    for (&i, &a) in index.iter().zip(value) {
        let off = i as usize * NR;
        debug_assert!((i as usize) < k);
        let a = _mm512_set1_ps(a);
        // SAFETY: `i < source_len <= k` (asserted by the caller), so line `i` of each panel
        // (64-byte aligned, 16 f32) lies inside that panel.
        unsafe {
            v[0] = _mm512_fmadd_ps(a, _mm512_load_ps(b0.add(off)), v[0]);
            v[1] = _mm512_fmadd_ps(a, _mm512_load_ps(b1.add(off)), v[1]);
            v[2] = _mm512_fmadd_ps(a, _mm512_load_ps(b2.add(off)), v[2]);
            v[3] = _mm512_fmadd_ps(a, _mm512_load_ps(b3.add(off)), v[3]);
        }
    }
    for (acc, v) in acc.iter_mut().zip(v) {
        // SAFETY: each `acc` row holds 16 f32.
        unsafe { _mm512_storeu_ps(acc.as_mut_ptr(), v) };
    }
}
