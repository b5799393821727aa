//! The output unit: one dot product per row. As a GEMM it would fill a 16-wide panel with a
//! single useful column (16× the work, plus packing `A` for it).

use super::{Isa, load8};
use wide::f32x8;

/// `Σ a[i]·b[i]`, summed in the same order for every call of one instruction set (so a row
/// scores the same whatever batch it is in).
///
/// # Panics
/// If the lengths differ or the instruction set is not supported by this CPU.
pub fn dot(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot of unequal lengths");
    assert!(isa.is_supported(), "instruction set not supported here");
    match isa {
        Isa::Portable => dot_portable(a, b),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: support and lengths were asserted above.
        Isa::Avx2Fma => unsafe { dot_avx2(a, b) },
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2Fma => unreachable!("is_supported() is false off x86-64"),
    }
}

/// Scalar tail and final reduction shared by both versions: lanes summed pairwise in a fixed
/// order, then the tail.
fn reduce(lanes: [f32; 8], a: &[f32], b: &[f32], from: usize) -> f32 {
    let pairs = [
        (lanes[0] + lanes[4]) + (lanes[2] + lanes[6]),
        (lanes[1] + lanes[5]) + (lanes[3] + lanes[7]),
    ];
    let mut total = pairs[0] + pairs[1];
    for (x, y) in a[from..].iter().zip(&b[from..]) {
        total = x.mul_add(*y, total);
    }
    total
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let full = a.len() / 8 * 8;
    let mut acc = [f32x8::ZERO; 4];
    for (j, (x, y)) in a[..full]
        .chunks_exact(8)
        .zip(b[..full].chunks_exact(8))
        .enumerate()
    {
        acc[j % 4] = load8(x).mul_add(load8(y), acc[j % 4]);
    }
    let sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    reduce(sum.to_array(), a, b, full)
}

/// # Safety
/// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
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
    reduce(out, a, b, full)
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
