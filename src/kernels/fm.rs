//! The FM pairwise term over one gathered row.
//!
//! `x` holds the row's field embeddings back to back (`fields × d`, the MLP input). The term is
//! `½·Σ_d((Σ_f x[f][d])² − Σ_f x[f][d]²)`: for each 8-wide slice of `d`, sums and sums of squares
//! are accumulated across fields in registers, then combined.

use super::{Isa, load8};
use wide::f32x8;

/// `½·Σ_d((Σ_f x[f·d + j])² − Σ_f x[f·d + j]²)`.
///
/// # Panics
/// If `x.len() != fields * d` or the instruction set is not supported by this CPU.
pub fn fm_pairwise(isa: Isa, x: &[f32], fields: usize, d: usize) -> f32 {
    assert_eq!(x.len(), fields * d, "x is not fields × d");
    assert!(isa.is_supported(), "instruction set not supported here");
    match isa {
        Isa::Portable => fm_portable(x, fields, d),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: support was asserted above; lengths were asserted above.
        Isa::Avx2Fma => unsafe { fm_avx2(x, fields, d) },
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2Fma => unreachable!("is_supported() is false off x86-64"),
    }
}

fn tail(x: &[f32], fields: usize, d: usize, from: usize) -> f32 {
    let mut total = 0.0;
    for j in from..d {
        let (mut s, mut q) = (0.0f32, 0.0f32);
        for f in 0..fields {
            let v = x[f * d + j];
            s += v;
            q += v * v;
        }
        total += s * s - q;
    }
    total
}

fn fm_portable(x: &[f32], fields: usize, d: usize) -> f32 {
    let full = d / 8 * 8;
    let mut total = f32x8::ZERO;
    for j in (0..full).step_by(8) {
        let (mut s, mut q) = (f32x8::ZERO, f32x8::ZERO);
        for f in 0..fields {
            let v = load8(&x[f * d + j..f * d + j + 8]);
            s += v;
            q = v.mul_add(v, q);
        }
        total += s.mul_add(s, -q);
    }
    0.5 * (total.reduce_add() + tail(x, fields, d, full))
}

/// # Safety
/// The CPU must support AVX2 and FMA, and `x.len() == fields * d`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fm_avx2(x: &[f32], fields: usize, d: usize) -> f32 {
    use std::arch::x86_64::*;
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
    0.5 * (lanes.iter().sum::<f32>() + tail(x, fields, d, full))
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
