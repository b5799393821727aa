//! GEMM micro-kernel on AVX-512: the 16-lane kernels of `kernels/gemm16.rs` on zmm registers.
//! A 12 × 32 tile of `C` over two adjacent panels in 24 zmm accumulators, so each broadcast
//! of `A` feeds two FMAs (14 loads per 24 FMAs: a 12 × 16 tile's 13 loads per 12 FMAs held it
//! near 60% of the FMA peak); a layer's odd last panel is a 12 × 16 tile. Every element is the
//! same chain of FMAs as in the AVX2 kernel.

use super::Avx512;
use crate::kernels::GemmKernel;
use crate::kernels::gemm16::{MR, gemm16_kernels};
use crate::kernels::pack::{NR, PairTile, Tile};
use std::arch::x86_64::*;

/// The mask of lanes `0..n` (`n ≤ 16`).
#[inline(always)]
fn first(n: usize) -> __mmask16 {
    if n >= 16 { 0xffff } else { (1u16 << n) - 1 }
}

gemm16_kernels! {
    #[target_feature(enable = "avx512f")]
    kernel = Avx512, vector = __m512, mask = __mmask16, zero = _mm512_setzero_ps,
    splat = _mm512_set1_ps, load_aligned = _mm512_load_ps, load = _mm512_loadu_ps,
    load_masked = _mm512_maskz_loadu_ps, store_masked = _mm512_mask_storeu_ps,
    mul_add = _mm512_fmadd_ps, add = _mm512_add_ps, max = _mm512_max_ps, first = first,
}
