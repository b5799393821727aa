//! The FM pairwise term on portable SIMD: sums and sums of squares of eight columns at a time.

use super::Portable;
use crate::kernels::FmKernel;
use crate::kernels::shared::{fm_tail, load8};
use wide::f32x8;

impl FmKernel for Portable {
    unsafe fn fm_pairwise(x: &[f32], fields: usize, d: usize) -> f32 {
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
        0.5 * (total.reduce_add() + fm_tail(x, fields, d, full))
    }
}
