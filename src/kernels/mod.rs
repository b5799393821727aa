//! Numeric kernels behind one narrow interface, selected once per model by CPU features.
//!
//! - [`gemm`]: `C = act(A · W + b)` with `W` pre-packed into 16-column panels ([`pack`]); bias
//!   and ReLU are fused into the pass that writes `C`. One loop nest drives the
//!   `GemmKernel` of each instruction set.
//! - [`gemv`]: the one-row case (batch-1 latency), skipping the weights of zero inputs
//!   (`GemvKernel`).
//! - [`dot`]: the output unit, one dot product per row (`DotKernel`).
//! - [`fm`]: the FM pairwise term `½·Σ_d((Σ_f e_fd)² − Σ_f e_fd²)` over a gathered row
//!   (`FmKernel`).
//! - `gather`: the embedding gather of the scorer and the trainer, one code for both: rows of
//!   the stacked table by id, multi-hot pooling, the first-order sum, prefetch (plain scalar
//!   code, the same on every instruction set).
//!
//! **Instruction sets.** An [`Isa`] is a token that only detection creates ([`isa`]), so the
//! kernels run on one without checking the CPU again. Each instruction set is a zero-sized type
//! (`portable::Portable`, `avx2::Avx2Fma`) in a folder of its own with one file per kernel,
//! each implementing one of the four kernel traits below; the public entry points
//! ([`gemm::gemm_bias_act`], [`gemv::gemv_bias_act`], [`dot::dot`], [`fm::fm_pairwise`]) pick the
//! type of the token's [`IsaKind`] in one `match` (the `dispatch!` macro of this file), and the
//! loop nests above the kernels are written once, generically.
//!
//! **Adding an instruction set or a precision** (say AVX-512) is: a variant of [`IsaKind`] with
//! its name and feature test (`isa.rs`); a folder `avx512/` whose `mod.rs` declares
//! `pub(crate) struct Avx512;` and whose four files implement `GemmKernel` (tile height `MR`,
//! the `unsafe fn tile`), `GemvKernel`, `DotKernel` and `FmKernel` for it, each with
//! `#[target_feature]` functions and a `// SAFETY:` comment per `unsafe` block; and one arm in
//! `dispatch!`. The proptests of every kernel iterate over [`Isa::available`], so they run
//! against the new kernels unchanged, on any CPU that has the features (docs/ARCHITECTURE.md).
//!
//! Every kernel has a plain scalar twin in [`reference`](mod@reference), and proptests compare
//! them over random, ragged shapes.

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod dot;
pub mod f32_columns;
pub mod fm;
pub(crate) mod gather;
pub mod gemm;
mod gemm16;
pub mod gemv;
pub mod isa;
pub mod pack;
mod portable;
pub mod prefetch;
pub mod qgemm;
mod qgemm16;
pub mod quant;
pub mod reference;
pub mod row_codec;
pub(crate) mod rows;
pub mod self_check;
mod shared;

pub use isa::{ISA_ENV, Isa, IsaError, IsaKind, IsaSource};

use pack::{NR, PackedMatrix, PairTile, Tile};

/// A GEMM micro-kernel: computes one `MR × NR` tile of `C` from a packed micro-panel of `A`
/// and a run of panel lines of the packed weights, in the spirit of matrixmultiply's
/// `GemmKernel`. The loop nest ([`gemm`]) packs, blocks and walks the tiles.
pub(crate) trait GemmKernel {
    /// Rows of a tile (the packed micro-panels of `A` hold `MR` values per `k`). Batches are
    /// split between threads in multiples of it ([`Isa::tile_rows`]).
    const MR: usize;
    /// Columns of a tile: one packed panel line ([`pack::NR`]).
    const NR: usize = NR;
    /// Alignment of the panel lines the kernel reads, in bytes: [`pack::Line`] is 64-byte
    /// aligned, so a kernel may use aligned loads of up to a whole line.
    const ALIGN: usize = 64;

    /// Computes `t`: `C[rows × cols] (+)= A·B`, then the epilogue (bias, ReLU) on the last `k`
    /// block. Rows past `t.rows` and columns past `t.cols` are computed on padding and not
    /// stored.
    ///
    /// # Safety
    /// This CPU runs the kernel's instructions (the caller holds the instruction set's
    /// [`Isa`] token), and `t` is built as the loop nest builds it: `t.a` holds
    /// `MR × t.b.len()` packed values, `t.rows ≤ MR`, `t.cols ≤ NR`, and `t.c` holds `rows`
    /// rows `ldc` apart of `cols` values each.
    unsafe fn tile(t: &mut Tile<'_>);

    /// Whether the loop nest hands this kernel two adjacent panels' tiles at once
    /// ([`GemmKernel::pair`]): each broadcast of `A` then feeds twice the FMAs, which pays
    /// where the register file holds twice the accumulators (AVX-512's 32 zmm).
    const PAIRS: bool = false;

    /// Computes `t` as [`GemmKernel::tile`] computes each of its two panels, every element by
    /// the same chain of FMAs. The loop nest calls it only for kernels with [`GemmKernel::PAIRS`];
    /// the others keep this default, which is never reached.
    ///
    /// # Safety
    /// As [`GemmKernel::tile`], with `t.cols ≤ 32` and both panels' `k` blocks `t.b[0].len()`
    /// long.
    unsafe fn pair(t: &mut PairTile<'_>) {
        let _ = t;
        unreachable!("the loop nest pairs panels only for kernels with PAIRS");
    }
}

/// The GEMV kernel of one instruction set: the sums of up to four 16-column panels over the
/// non-zero entries of one input vector ([`gemv`] drives it block by block).
pub(crate) trait GemvKernel {
    /// `acc[g][c] = Σ_i value[i] · panel(p + g)[index[i]][c]` for `g < group` (rows of `acc` at
    /// and past `group` are unspecified), each sum formed in the order of `index`, as the GEMM
    /// kernels of the same instruction set form it.
    ///
    /// # Safety
    /// This CPU runs the kernel's instructions (the caller holds its [`Isa`] token), every
    /// `index` is below `w.k()`, `index.len() == value.len()`, `1 ≤ group ≤ 4`, and panels
    /// `p..p + group` exist in `w`.
    unsafe fn panels(
        index: &[u32],
        value: &[f32],
        w: &PackedMatrix,
        p: usize,
        group: usize,
        acc: &mut [[f32; NR]; 4],
    );
}

/// The dot-product kernel of one instruction set (the output unit, [`dot`]).
pub(crate) trait DotKernel {
    /// `Σ a[i]·b[i]`, in an order fixed for the instruction set (see [`dot::dot`]).
    ///
    /// # Safety
    /// This CPU runs the kernel's instructions (the caller holds its [`Isa`] token), and
    /// `a.len() == b.len()`.
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32;
}

/// The FM pairwise-term kernel of one instruction set ([`fm`]).
pub(crate) trait FmKernel {
    /// `½·Σ_d((Σ_f x[f·d + j])² − Σ_f x[f·d + j]²)`.
    ///
    /// # Safety
    /// This CPU runs the kernel's instructions (the caller holds its [`Isa`] token), and
    /// `x.len() == fields * d`.
    unsafe fn fm_pairwise(x: &[f32], fields: usize, d: usize) -> f32;
}

/// Runs `$body` with `$k` naming the kernel type of `$isa`'s instruction set: the one place an
/// [`IsaKind`] becomes code. Each arm is where an instruction set plugs in.
macro_rules! dispatch {
    ($isa:expr, $k:ident => $body:expr) => {
        match $crate::kernels::Isa::kind($isa) {
            $crate::kernels::IsaKind::Portable => {
                type $k = $crate::kernels::portable::Portable;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            $crate::kernels::IsaKind::Avx2Fma => {
                type $k = $crate::kernels::avx2::Avx2Fma;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            $crate::kernels::IsaKind::Avx512 => {
                type $k = $crate::kernels::avx512::Avx512;
                $body
            }
            #[cfg(not(target_arch = "x86_64"))]
            $crate::kernels::IsaKind::Avx2Fma | $crate::kernels::IsaKind::Avx512 => {
                unreachable!("detection never makes an x86-64 token off x86-64")
            }
        }
    };
}
pub(crate) use dispatch;

/// `$kernel::<R>($args)` with `R` the tile height `$rows` as a constant: one arm per height
/// listed, `$max` (the kernel's full height) for any other. A kernel is compiled once per
/// height, so its accumulators are arrays of constant length, which stay in registers.
macro_rules! by_tile_rows {
    ($rows:expr, [$($height:literal),*], $max:expr, $kernel:ident $args:tt) => {
        match $rows {
            $($height => $kernel::<$height> $args,)*
            _ => $kernel::<$max> $args,
        }
    };
}
pub(crate) use by_tile_rows;

impl Isa {
    /// Rows of this instruction set's GEMM tile (`GemmKernel::MR`): the scorer and the
    /// trainer split batches between threads in multiples of it, so that no thread's share
    /// ends in a partial tile.
    pub fn tile_rows(self) -> usize {
        dispatch!(self, K => <K as GemmKernel>::MR)
    }
}
