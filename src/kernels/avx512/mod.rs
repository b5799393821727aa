//! The kernels on AVX-512 (x86-64 with AVX-512F, and AVX2 + FMA, which every AVX-512 CPU has):
//! one file per kernel, each implementing its trait of [`super`] for [`Avx512`].
//!
//! A 16-column panel line is one zmm register, so the GEMM tile is `12 × 16` in twelve zmm
//! accumulators. Every output element is the same chain of FMAs, in the same order, as in the
//! AVX2 kernels (one rounding per `k`), so the GEMM and GEMV give the AVX2 kernels' results bit
//! for bit; the dot product and FM term are the AVX2 ones. Scores and trained models are
//! therefore the same on both instruction sets.

mod dot;
mod fm;
mod gemm;
mod gemv;
mod qgemm;

/// The AVX-512 instruction set, as a kernel type (see `dispatch!` in [`super`]); code runs on
/// it only through an [`super::Isa`] token of kind [`super::IsaKind::Avx512`].
pub(crate) struct Avx512;
