//! GEMM micro-kernel on portable SIMD (`wide`): an `MR × 16` tile in `f32x8` registers.

use super::gemm::{NR, Tile, store_tile};
use wide::f32x8;

/// Rows per tile (SSE2 has 16 registers: 4 rows × 4 half-lines of accumulators plus B).
pub(crate) const MR: usize = 4;

fn half(line: &[f32; NR], h: usize) -> f32x8 {
    let mut v = [0.0; 8];
    v.copy_from_slice(&line[h * 8..h * 8 + 8]);
    f32x8::new(v)
}

pub(crate) fn micro(t: &mut Tile<'_>) {
    let mut acc = [[f32x8::ZERO; 2]; MR];
    for (kk, line) in t.b.iter().enumerate() {
        let (b0, b1) = (half(&line.0, 0), half(&line.0, 1));
        let a_k = &t.a[kk * MR..kk * MR + MR];
        for (acc_r, &a) in acc.iter_mut().zip(a_k) {
            let a = f32x8::splat(a);
            acc_r[0] = a.mul_add(b0, acc_r[0]);
            acc_r[1] = a.mul_add(b1, acc_r[1]);
        }
    }
    let mut out = [[0.0f32; NR]; MR];
    for (o, a) in out.iter_mut().zip(&acc) {
        o[..8].copy_from_slice(&a[0].to_array());
        o[8..].copy_from_slice(&a[1].to_array());
    }
    store_tile(t, &out[..t.rows]);
}
