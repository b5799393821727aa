//! The int8 micro-kernel on AVX-512 VNNI: the 16-lane kernels of `kernels/qgemm16.rs` on zmm
//! registers, a 12 × 16 tile of i32 sums in twelve zmm accumulators. Per `k` group, one
//! aligned load of the panel line and, per row, a broadcast of its four activations and one
//! `vpdpbusd` (u8 × s8, four products summed into each i32 lane, without intermediate
//! saturation).

use super::Avx512;
use crate::kernels::qgemm::{Acc, LayerCall, QGemmKernel, finish_tile, layer_loop};
use crate::kernels::qgemm16::{MR, qgemm16_kernels};
use crate::kernels::quant::QLine;
use crate::kernels::quant::{QNR, QuantizedMatrix, RowQuant, quantize_rows_with};
use std::arch::x86_64::*;

qgemm16_kernels! {
    #[target_feature(enable = "avx512f,avx512vnni")]
    kernel = Avx512, int = __m512i, float = __m512, izero = _mm512_setzero_si512,
    iset1 = _mm512_set1_epi32, iload_aligned = _mm512_load_si512, iload = _mm512_loadu_si512,
    istore = _mm512_storeu_si512, dpbusd = _mm512_dpbusd_epi32, iadd = _mm512_add_epi32,
    isub = _mm512_sub_epi32, imul = _mm512_mullo_epi32, to_float = _mm512_cvtepi32_ps,
    fzero = _mm512_setzero_ps, fset1 = _mm512_set1_ps, fload = _mm512_loadu_ps,
    fload_masked = _mm512_maskz_loadu_ps, fstore = _mm512_storeu_ps, fmul = _mm512_mul_ps,
    fadd = _mm512_add_ps, fmax = _mm512_max_ps, fmin = _mm512_min_ps,
    reduce_min = _mm512_reduce_min_ps, reduce_max = _mm512_reduce_max_ps,
}
