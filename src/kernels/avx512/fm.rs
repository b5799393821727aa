//! The FM pairwise term on AVX-512 CPUs: the AVX2 kernel (`D` is 16 to 64 in common models, one
//! or a few 8-wide steps), which also keeps each instruction set's scores identical.

use super::Avx512;
use crate::kernels::FmKernel;
use crate::kernels::avx2::Avx2Fma;

impl FmKernel for Avx512 {
    unsafe fn fm_pairwise(x: &[f32], fields: usize, d: usize) -> f32 {
        // SAFETY: an `Avx512` token exists only where AVX2 and FMA are present too
        // (`IsaKind::is_supported`), and the length contract is passed on.
        unsafe { <Avx2Fma as FmKernel>::fm_pairwise(x, fields, d) }
    }
}
