//! The dot product on AVX-512 CPUs: the AVX2 kernel. The output unit is one dot product of a few
//! hundred values per row, a small share of a score; sharing the kernel keeps each instruction
//! set's scores identical.

use super::Avx512;
use crate::kernels::DotKernel;
use crate::kernels::avx2::Avx2Fma;

impl DotKernel for Avx512 {
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: an `Avx512` token exists only where AVX2 and FMA are present too
        // (`IsaKind::is_supported`), and the length contract is passed on.
        unsafe { <Avx2Fma as DotKernel>::dot(a, b) }
    }
}
