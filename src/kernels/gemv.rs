//! Matrix–vector product for one row (batch-1 latency), on the same packed panels as the GEMM.
//!
//! At one row a GEMM micro-kernel has too few independent accumulators to keep the FMA units
//! busy, and the cost is reading the weights, not multiplying them. So the input is first
//! compacted to its non-zero entries (after ReLU about half of them are zero), and only the
//! weight lines of those entries are read: a hidden layer reads about half its weights. Four
//! panels are walked at once to give the FMA units eight independent chains.

use super::Isa;
use super::gemm::{KC, Line, NR, PackedMatrix};
use std::ops::Range;

/// The non-zero entries of an input vector: indices and values, reused between calls.
#[derive(Debug, Clone, Default)]
pub struct NonZeros {
    index: Vec<u32>,
    value: Vec<f32>,
    /// Length of the vector gathered: every index is below it.
    source_len: usize,
}

impl NonZeros {
    /// Room for vectors of up to `k` entries (no allocation afterwards).
    pub fn with_capacity(k: usize) -> Self {
        NonZeros {
            index: Vec::with_capacity(k),
            value: Vec::with_capacity(k),
            source_len: 0,
        }
    }

    /// Keeps the non-zero entries of `x`. Allocates only if `x` is longer than the capacity.
    pub fn gather(&mut self, x: &[f32]) {
        self.index.clear();
        self.value.clear();
        self.source_len = x.len();
        for (k, &v) in x.iter().enumerate() {
            if v != 0.0 {
                self.index.push(k as u32);
                self.value.push(v);
            }
        }
    }

    /// Number of non-zero entries kept.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when every entry was zero.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// `y[16·p..] = act(W x + b)` for the panels `panels` of `w` only (so that two threads can
/// each take half), `x` given by its non-zeros. `y` holds the columns of those panels:
/// `y.len() == min(16 · panels.end, n) − 16 · panels.start`.
///
/// # Panics
/// If an index in `x` is not below `w.k()`, `y` has the wrong length, or the instruction set
/// is not supported by this CPU.
pub fn gemv_panels(
    isa: Isa,
    x: &NonZeros,
    w: &PackedMatrix,
    panels: Range<usize>,
    relu: bool,
    y: &mut [f32],
) {
    let n_end = (panels.end * NR).min(w.n());
    assert!(panels.start <= panels.end && panels.end <= w.n().div_ceil(NR));
    assert_eq!(
        y.len(),
        n_end.saturating_sub(panels.start * NR),
        "y does not match the panels"
    );
    assert!(x.source_len <= w.k(), "input longer than k");
    assert!(isa.is_supported(), "instruction set not supported here");
    let blocks = w.k().div_ceil(KC).max(1);
    let mut p = panels.start;
    while p < panels.end {
        let group = (panels.end - p).min(4);
        // Summed `k` block by `k` block exactly as the GEMM sums them (the first block's sum,
        // then each next block's added to it), so a row scores bit for bit the same alone as
        // inside a larger batch.
        let mut total = [[0.0f32; NR]; 4];
        let mut from = 0;
        for block in 0..blocks {
            let end = x.index[from..].partition_point(|&k| (k as usize) < (block + 1) * KC) + from;
            let (index, value) = (&x.index[from..end], &x.value[from..end]);
            let mut acc = [[0.0f32; NR]; 4];
            match isa {
                Isa::Portable => portable(index, value, w, p, group, &mut acc),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: support was asserted above, and every index is below `x.source_len <= k`.
                Isa::Avx2Fma => unsafe { avx2(index, value, w, p, group, &mut acc) },
                #[cfg(not(target_arch = "x86_64"))]
                Isa::Avx2Fma => unreachable!("is_supported() is false off x86-64"),
            }
            for (t, a) in total.iter_mut().flatten().zip(acc.iter().flatten()) {
                *t = if block == 0 { *a } else { *t + *a };
            }
            from = end;
        }
        for (g, acc) in total.iter().enumerate().take(group) {
            let col0 = (p + g) * NR;
            let cols = NR.min(w.n() - col0);
            let bias = w.bias_line(p + g);
            let out = &mut y[col0 - panels.start * NR..][..cols];
            for ((o, &a), &b) in out.iter_mut().zip(acc).zip(bias) {
                let v = a + b;
                *o = if relu { v.max(0.0) } else { v };
            }
        }
        p += group;
    }
}

/// `y = act(W x + b)` for one row, all panels.
pub fn gemv_bias_act(isa: Isa, x: &NonZeros, w: &PackedMatrix, relu: bool, y: &mut [f32]) {
    gemv_panels(isa, x, w, 0..w.n().div_ceil(NR), relu, &mut y[..w.n()]);
}

fn portable(
    index: &[u32],
    value: &[f32],
    w: &PackedMatrix,
    p: usize,
    group: usize,
    acc: &mut [[f32; NR]; 4],
) {
    use super::{load8, store16};
    use wide::f32x8;
    let mut v = [[f32x8::ZERO; 2]; 4];
    for (g, v) in v.iter_mut().enumerate().take(group) {
        let panel: &[Line] = w.panel(p + g);
        for (&k, &a) in index.iter().zip(value) {
            let line = &panel[k as usize].0;
            let a = f32x8::splat(a);
            v[0] = a.mul_add(load8(&line[..8]), v[0]);
            v[1] = a.mul_add(load8(&line[8..]), v[1]);
        }
    }
    for (acc, v) in acc.iter_mut().zip(&v) {
        store16(acc, v);
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA, every `index` must be below `w.k()`, and panels
/// `p..p + group` must exist in `w`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(
    index: &[u32],
    value: &[f32],
    w: &PackedMatrix,
    p: usize,
    group: usize,
    acc: &mut [[f32; NR]; 4],
) {
    use std::arch::x86_64::*;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::gemm_bias_act_ref;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_reference_and_gemm(k in prop_oneof![1usize..700, 1000usize..2200], n in 1usize..150, zeros in 0.0f32..1.0, relu: bool, seed: u64) {
            let mut rng = crate::rng::Rng::new(seed);
            let x: Vec<f32> = (0..k).map(|_| if rng.uniform() < zeros { 0.0 } else { rng.normal() }).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let packed = PackedMatrix::pack(&w, &bias, n, k);
            let mut want = vec![0.0f32; n];
            gemm_bias_act_ref(&x, k, 1, &w, &bias, n, k, relu, &mut want, n);
            let mut nz = NonZeros::with_capacity(k);
            nz.gather(&x);
            let panels = n.div_ceil(NR);
            let split = (seed as usize) % (panels + 1);
            for isa in Isa::available() {
                let mut got = vec![0.0f32; n];
                gemv_bias_act(isa, &nz, &packed, relu, &mut got);
                // Bit for bit what the GEMM computes for the same row, whatever `k`.
                let mut via_gemm = vec![0.0f32; n];
                let mut buffer = crate::kernels::gemm::PackBuffer::new();
                crate::kernels::gemm::gemm_bias_act(isa, &x, k, 1, &packed, relu, &mut via_gemm, n, &mut buffer);
                prop_assert_eq!(&got, &via_gemm, "{:?}", isa);
                // The same through two panel ranges, as the two-thread mode splits it.
                let mut halves = vec![0.0f32; n];
                let (lo, hi) = halves.split_at_mut((split * NR).min(n));
                gemv_panels(isa, &nz, &packed, 0..split, relu, lo);
                gemv_panels(isa, &nz, &packed, split..panels, relu, hi);
                for (i, ((g, h), w)) in got.iter().zip(&halves).zip(&want).enumerate() {
                    prop_assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{isa:?} {i}: {g} vs {w}");
                    prop_assert_eq!(g, h);
                }
            }
        }
    }
}
