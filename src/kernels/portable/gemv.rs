//! The GEMV kernel on portable SIMD: up to four panels, two `f32x8` accumulators each.

use super::Portable;
use crate::kernels::GemvKernel;
use crate::kernels::pack::{Line, NR, PackedMatrix};
use crate::kernels::shared::{load8, store16};
use wide::f32x8;

impl GemvKernel for Portable {
    unsafe fn panels(
        index: &[u32],
        value: &[f32],
        w: &PackedMatrix,
        p: usize,
        group: usize,
        acc: &mut [[f32; NR]; 4],
    ) {
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
}
