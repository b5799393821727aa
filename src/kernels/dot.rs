//! The output unit: one dot product per row. As a GEMM it would fill a 16-wide panel with a
//! single useful column (16× the work, plus packing `A` for it).

use super::{DotKernel, Isa, dispatch};

/// `Σ a[i]·b[i]`, summed in the same order for every call of one instruction set (so a row
/// scores the same whatever batch it is in): eight lanes in four interleaved accumulators,
/// the lanes reduced pairwise in a fixed order, then the tail.
///
/// # Panics
/// If the lengths differ.
pub fn dot(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot of unequal lengths");
    // SAFETY: the token `isa` exists only where this CPU runs its kernels (`K`); the lengths
    // were checked above.
    dispatch!(isa, K => unsafe { <K as DotKernel>::dot(a, b) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_reference(n in 0usize..700, seed: u64) {
            let mut rng = crate::rng::Rng::new(seed);
            let a: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let want = crate::kernels::reference::dot_ref(&a, &b);
            let scale: f64 = a.iter().zip(&b).map(|(x, y)| (x * y).abs() as f64).sum();
            for isa in Isa::available() {
                let got = dot(isa, &a, &b) as f64;
                prop_assert!((got - want).abs() <= 1e-5 * (1.0 + scale), "{isa:?}: {got} vs {want}");
            }
        }
    }
}
