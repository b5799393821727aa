//! Pieces the kernels of every instruction set share, so that they sum in the same order: the
//! lane reduction and tail of the dot product, the tail of the FM term, and loads and stores
//! between slices and portable SIMD vectors.

use wide::f32x8;

/// Eight f32 from a slice of exactly eight, as a portable SIMD vector.
pub(crate) fn load8(x: &[f32]) -> f32x8 {
    f32x8::new(x.try_into().expect("eight lanes"))
}

/// Two portable SIMD vectors into one 16-float line.
pub(crate) fn store16(out: &mut [f32; 16], v: &[f32x8; 2]) {
    out[..8].copy_from_slice(&v[0].to_array());
    out[8..].copy_from_slice(&v[1].to_array());
}

/// The dot product's end, shared by every instruction set: lanes summed pairwise in a fixed
/// order, then the tail from `from` on.
pub(crate) fn dot_reduce(lanes: [f32; 8], a: &[f32], b: &[f32], from: usize) -> f32 {
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

/// The FM term's columns `from..d`, in scalar code, shared by every instruction set.
pub(crate) fn fm_tail(x: &[f32], fields: usize, d: usize, from: usize) -> f32 {
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
