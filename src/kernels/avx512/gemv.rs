//! The GEMV kernel on AVX-512: the 16-lane kernel of `kernels/gemm16.rs` on zmm registers,
//! four panels at once, one zmm chain each.

use super::Avx512;
use crate::kernels::GemvKernel;
use crate::kernels::gemm16::gemv16_kernel;
use crate::kernels::pack::{NR, PackedMatrix};
use std::arch::x86_64::*;

impl GemvKernel for Avx512 {
    unsafe fn panels(
        index: &[u32],
        value: &[f32],
        w: &PackedMatrix,
        p: usize,
        group: usize,
        acc: &mut [[f32; NR]; 4],
    ) {
        // SAFETY: the trait's contract (AVX-512F present, indices below `k`, panels
        // `p..p + group` in `w`), passed on.
        unsafe { gemv_panels(index, value, w, p, group, acc) }
    }
}

gemv16_kernel! {
    #[target_feature(enable = "avx512f")]
    vector = __m512, zero = _mm512_setzero_ps, splat = _mm512_set1_ps,
    load_aligned = _mm512_load_ps, mul_add = _mm512_fmadd_ps, store = _mm512_storeu_ps,
}
