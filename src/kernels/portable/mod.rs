//! The kernels on portable SIMD (`wide`: SSE2 on any x86-64, NEON on aarch64): one file per
//! kernel, each implementing its trait of [`super`] for [`Portable`]. Safe code throughout;
//! the traits' functions are `unsafe` only for the instruction sets that need it.

mod dot;
mod fm;
mod gemm;
mod gemv;
mod qgemm;

/// The portable instruction set, as a kernel type (see `dispatch!` in [`super`]).
pub(crate) struct Portable;
