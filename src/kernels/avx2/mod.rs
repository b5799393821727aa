//! The kernels on AVX2 with FMA (x86-64): one file per kernel, each implementing its trait of
//! [`super`] for [`Avx2Fma`] with `#[target_feature(enable = "avx2,fma")]` functions.

mod dot;
mod fm;
mod gemm;
mod gemv;
mod qgemm;
mod qgemm_vnni;

pub(crate) use qgemm_vnni::AvxVnni;

/// The AVX2 + FMA instruction set, as a kernel type (see `dispatch!` in [`super`]); code runs
/// on it only through an [`super::Isa`] token of kind [`super::IsaKind::Avx2Fma`].
pub(crate) struct Avx2Fma;
