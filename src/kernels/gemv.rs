//! Matrix–vector product for one row (batch-1 latency), on the same packed panels as the GEMM.
//!
//! At one row a GEMM micro-kernel has too few independent accumulators to keep the FMA units
//! busy, and the cost is reading the weights, not multiplying them. So the input is first
//! compacted to its non-zero entries (after ReLU about half of them are zero), and only the
//! weight lines of those entries are read: a hidden layer reads about half its weights. Four
//! panels are walked at once to give the FMA units eight independent chains.

use super::pack::{KC, NR, PackedMatrix};
use super::{GemvKernel, Isa, dispatch};
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
/// If an index in `x` is not below `w.k()`, or `y` has the wrong length.
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
    // SAFETY: the token `isa` exists only where this CPU runs its kernels (`K`); the shapes
    // are checked above.
    dispatch!(isa, K => unsafe { gemv_panels_with::<K>(x, w, panels, relu, y) });
}

/// [`gemv_panels`] on kernel `K`, once the shapes are checked.
///
/// # Safety
/// This CPU runs `K`'s instructions; `panels` lie in `w`, `y` holds their columns and every
/// index of `x` is below `w.k()` (as `gemv_panels` asserts).
unsafe fn gemv_panels_with<K: GemvKernel>(
    x: &NonZeros,
    w: &PackedMatrix,
    panels: Range<usize>,
    relu: bool,
    y: &mut [f32],
) {
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
            // SAFETY: the caller's contract: this CPU runs `K`, every index is below `k`;
            // `1 <= group <= 4` panels from `p < panels.end <= w`'s panel count.
            unsafe { K::panels(index, value, w, p, group, &mut acc) };
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
            // The AVX-512 kernel's logic (groups of four panels, a short last group) on
            // emulated lanes, on any CPU: bit for bit the emulated GEMM's row, and so the x86
            // SIMD kernels' where this CPU has them.
            use crate::kernels::gemm16::emulated::Emulated512;
            let mut emulated = vec![0.0f32; n];
            let mut halves = vec![0.0f32; n];
            let (lo, hi) = halves.split_at_mut((split * NR).min(n));
            // SAFETY: emulated lanes run on any CPU; the shapes are as `gemv_panels` checks.
            unsafe {
                gemv_panels_with::<Emulated512>(&nz, &packed, 0..panels, relu, &mut emulated);
                gemv_panels_with::<Emulated512>(&nz, &packed, 0..split, relu, lo);
                gemv_panels_with::<Emulated512>(&nz, &packed, split..panels, relu, hi);
            }
            prop_assert_eq!(&emulated, &halves);
            let mut via_gemm = vec![0.0f32; n];
            let mut buffer = crate::kernels::gemm::PackBuffer::new();
            crate::kernels::gemm::emulated_gemm(&x, k, 1, &packed, relu, &mut via_gemm, n, &mut buffer);
            prop_assert_eq!(&emulated, &via_gemm);
            for (i, (g, w)) in emulated.iter().zip(&want).enumerate() {
                prop_assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "emulated {i}: {g} vs {w}");
            }
            let simd = Isa::available().into_iter().find(|isa| isa.kind() != crate::kernels::IsaKind::Portable);
            if let Some(isa) = simd {
                let mut got = vec![0.0f32; n];
                gemv_bias_act(isa, &nz, &packed, relu, &mut got);
                prop_assert_eq!(&got, &emulated, "{:?} vs the emulated 16 lanes", isa);
            }
        }
    }
}
