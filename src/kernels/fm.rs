//! The FM pairwise term over one gathered row.
//!
//! `x` holds the row's field embeddings back to back (`fields × d`, the MLP input). The term is
//! `½·Σ_d((Σ_f x[f][d])² − Σ_f x[f][d]²)`: for each 8-wide slice of `d`, sums and sums of squares
//! are accumulated across fields in registers, then combined.

use super::{FmKernel, Isa, dispatch};

/// `½·Σ_d((Σ_f x[f·d + j])² − Σ_f x[f·d + j]²)`.
///
/// # Panics
/// If `x.len() != fields * d`.
pub fn fm_pairwise(isa: Isa, x: &[f32], fields: usize, d: usize) -> f32 {
    assert_eq!(x.len(), fields * d, "x is not fields × d");
    // SAFETY: the token `isa` exists only where this CPU runs its kernels (`K`); the length
    // was checked above.
    dispatch!(isa, K => unsafe { <K as FmKernel>::fm_pairwise(x, fields, d) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::fm_pairwise_ref;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_reference(fields in 1usize..45, d in 1usize..=256, seed: u64) {
            let mut rng = crate::rng::Rng::new(seed);
            let x: Vec<f32> = (0..fields * d).map(|_| rng.normal()).collect();
            let want = fm_pairwise_ref(&x, fields, d);
            let scale: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() * fields as f64;
            for isa in Isa::available() {
                let got = fm_pairwise(isa, &x, fields, d) as f64;
                prop_assert!((got - want).abs() <= 1e-5 * (1.0 + scale), "{isa:?}: {got} vs {want}");
            }
        }
    }
}
