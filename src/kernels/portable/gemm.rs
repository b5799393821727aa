//! GEMM micro-kernel on portable SIMD (`wide`): an `MR × 16` tile in `f32x8` registers.

use super::Portable;
use crate::kernels::GemmKernel;
use crate::kernels::pack::{NR, Tile, store_tile};
use crate::kernels::shared::{load8, store16};
use wide::f32x8;

/// Rows per tile (SSE2 has 16 registers: 4 rows × 4 half-lines of accumulators plus B).
const MR: usize = 4;

impl GemmKernel for Portable {
    const MR: usize = MR;

    unsafe fn tile(t: &mut Tile<'_>) {
        micro(t)
    }
}

fn micro(t: &mut Tile<'_>) {
    let mut acc = [[f32x8::ZERO; 2]; MR];
    for (kk, line) in t.b.iter().enumerate() {
        let (b0, b1) = (load8(&line.0[..8]), load8(&line.0[8..]));
        let a_k = &t.a[kk * MR..kk * MR + MR];
        for (acc_r, &a) in acc.iter_mut().zip(a_k) {
            let a = f32x8::splat(a);
            acc_r[0] = a.mul_add(b0, acc_r[0]);
            acc_r[1] = a.mul_add(b1, acc_r[1]);
        }
    }
    let mut out = [[0.0f32; NR]; MR];
    for (o, a) in out.iter_mut().zip(&acc) {
        store16(o, a);
    }
    store_tile(t, &out[..t.rows]);
}
