//! The GEMV kernel on AVX-512: the 16-lane kernel of `kernels/gemm16.rs` on zmm registers,
//! four panels at once, one zmm chain each.

use super::Avx512;
use crate::kernels::GemvKernel;
use crate::kernels::gemm16::gemv16_kernel;
use crate::kernels::pack::{NR, PackedMatrix};
use std::arch::x86_64::*;

gemv16_kernel! {
    #[target_feature(enable = "avx512f")]
    kernel = Avx512, vector = __m512, zero = _mm512_setzero_ps, splat = _mm512_set1_ps,
    load_aligned = _mm512_load_ps, mul_add = _mm512_fmadd_ps, store = _mm512_storeu_ps,
}
