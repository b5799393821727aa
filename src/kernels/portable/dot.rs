//! The dot product on portable SIMD: four `f32x8` accumulators, interleaved.

use super::Portable;
use crate::kernels::DotKernel;
use crate::kernels::shared::{dot_reduce, load8};
use wide::f32x8;

impl DotKernel for Portable {
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
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
        dot_reduce(sum.to_array(), a, b, full)
    }
}
