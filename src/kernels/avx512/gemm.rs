//! GEMM micro-kernel on AVX-512: a 12 × 32 tile of `C` over two adjacent panels in 24 zmm
//! accumulators; per `k`, one aligned load of each panel's weight line and twelve broadcasts
//! from the packed `A` micro-panel, each feeding two FMAs (so the loads, 14 per 24 FMAs, no
//! longer bound it: a 12 × 16 tile's 13 loads per 12 FMAs held it near 60% of the FMA peak).
//! A layer's odd last panel is a 12 × 16 tile. Both kernels have versions for 1 to 11 rows,
//! for short tiles, and form each element by the same chain of FMAs as the AVX2 kernel.

use super::Avx512;
use crate::kernels::GemmKernel;
use crate::kernels::pack::{NR, PairTile, Tile};
use std::arch::x86_64::*;

/// Rows per tile: twelve accumulators hide the FMA latency on two ports with room to spare, and
/// twelve divides the loop nest's 48-row blocks and the scorer's 144-row blocks.
const MR: usize = 12;

impl GemmKernel for Avx512 {
    const MR: usize = MR;
    const PAIRS: bool = true;

    unsafe fn tile(t: &mut Tile<'_>) {
        // SAFETY: the trait's contract (AVX-512F present, the tile as the loop nest builds it),
        // passed on.
        unsafe { micro(t) }
    }

    unsafe fn pair(t: &mut PairTile<'_>) {
        // SAFETY: the trait's contract (AVX-512F present, the pair as the loop nest builds it),
        // passed on.
        unsafe { micro_pair(t) }
    }
}

/// [`micro`] for a pair of panels.
///
/// # Safety
/// The CPU must support AVX-512F, and `t` must be built as the GEMM loop nest builds it:
/// `t.a` holds `MR × t.b[0].len()` packed values, `t.b[1]` is as long as `t.b[0]`, and `t.c`
/// holds `rows` rows `ldc` apart of `cols ≤ 32` values each, `rows` ≤ 12.
#[target_feature(enable = "avx512f")]
unsafe fn micro_pair(t: &mut PairTile<'_>) {
    // SAFETY: the caller's contract, passed on; each arm's `R` is at least `t.rows`.
    unsafe {
        match t.rows {
            1 => pair_rows::<1>(t),
            2 => pair_rows::<2>(t),
            3 => pair_rows::<3>(t),
            4 => pair_rows::<4>(t),
            5 => pair_rows::<5>(t),
            6 => pair_rows::<6>(t),
            7 => pair_rows::<7>(t),
            8 => pair_rows::<8>(t),
            9 => pair_rows::<9>(t),
            10 => pair_rows::<10>(t),
            11 => pair_rows::<11>(t),
            _ => pair_rows::<MR>(t),
        }
    }
}

/// The kernel for pairs of `R ≤ MR` rows: `R × 32` of `C` in `2R` zmm accumulators.
///
/// # Safety
/// As [`micro_pair`], with `t.rows ≤ R`.
#[target_feature(enable = "avx512f")]
unsafe fn pair_rows<const R: usize>(t: &mut PairTile<'_>) {
    let kc = t.b[0].len();
    assert!(R <= MR && t.rows <= R, "tile taller than the kernel");
    assert!(
        t.b[1].len() == kc && t.a.len() >= kc * MR,
        "packed operands too short"
    );
    assert!(
        (NR + 1..=2 * NR).contains(&t.cols),
        "a pair is 17 to 32 columns"
    );
    let a = t.a.as_ptr();
    let (b0, b1) = (t.b[0].as_ptr() as *const f32, t.b[1].as_ptr() as *const f32);
    // Two flat arrays, not one of pairs: LLVM keeps these in registers, where an array of
    // pairs was stored back to the stack after every FMA (half the speed).
    let (mut left, mut right) = ([_mm512_setzero_ps(); R], [_mm512_setzero_ps(); R]);
    // One step of `k`: two weight vectors, `R` broadcasts, `2R` FMAs; each accumulator gets
    // one FMA per `k`, in order, as in the single-panel kernel.
    let step = |kk: usize, left: &mut [__m512; R], right: &mut [__m512; R]| {
        // SAFETY: `kk < kc`, the length of both panels' blocks; each line is 16 f32 and 64-byte
        // aligned (`Line`); `kk * MR + r < kc * MR <= t.a.len()` for `r < R <= MR` (asserted).
        unsafe {
            let w0 = _mm512_load_ps(b0.add(kk * NR));
            let w1 = _mm512_load_ps(b1.add(kk * NR));
            for r in 0..R {
                let av = _mm512_set1_ps(*a.add(kk * MR + r));
                left[r] = _mm512_fmadd_ps(av, w0, left[r]);
                right[r] = _mm512_fmadd_ps(av, w1, right[r]);
            }
        }
    };
    let mut kk = 0;
    while kk + 4 <= kc {
        step(kk, &mut left, &mut right);
        step(kk + 1, &mut left, &mut right);
        step(kk + 2, &mut left, &mut right);
        step(kk + 3, &mut left, &mut right);
        kk += 4;
    }
    while kk < kc {
        step(kk, &mut left, &mut right);
        kk += 1;
    }
    // The second panel's columns past `cols` are masked off (a layer's last pair may be
    // ragged); the operations on the others are the single-panel kernel's.
    let tail: __mmask16 = if t.cols == 2 * NR {
        0xffff
    } else {
        (1u16 << (t.cols - NR)) - 1
    };
    let zero = _mm512_setzero_ps();
    for r in 0..t.rows {
        let row = &mut t.c[r * t.ldc..r * t.ldc + t.cols];
        for (half, acc, mask) in [(0, left[r], 0xffff), (1, right[r], tail)] {
            // SAFETY: `row` holds `cols > 16` values (bounds-checked above): half 0 is its
            // first 16, and the mask limits half 1 to the `cols − 16` after them; each bias
            // line is `[f32; 16]`.
            unsafe {
                let p = row.as_mut_ptr().add(half * NR);
                let mut v = acc;
                if t.accumulate {
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, p));
                }
                if let Some((bias, relu)) = t.finish {
                    v = _mm512_add_ps(v, _mm512_loadu_ps(bias[half].as_ptr()));
                    if relu {
                        v = _mm512_max_ps(v, zero);
                    }
                }
                _mm512_mask_storeu_ps(p, mask, v);
            }
        }
    }
}

/// Runs one tile with a kernel of as many rows as the tile has (a short tile does not pay for
/// twelve). Each row's sums are formed in the same order whatever the kernel.
///
/// # Safety
/// The CPU must support AVX-512F, and `t` must be built as the GEMM loop nest builds it:
/// `t.a` holds `MR × t.b.len()` packed values and `t.c` holds `rows` rows `ldc` apart of `cols`
/// values each, `rows` ≤ 12.
#[target_feature(enable = "avx512f")]
unsafe fn micro(t: &mut Tile<'_>) {
    // SAFETY: the caller's contract, passed on; each arm's `R` is at least `t.rows`.
    unsafe {
        match t.rows {
            1 => rows::<1>(t),
            2 => rows::<2>(t),
            3 => rows::<3>(t),
            4 => rows::<4>(t),
            5 => rows::<5>(t),
            6 => rows::<6>(t),
            7 => rows::<7>(t),
            8 => rows::<8>(t),
            9 => rows::<9>(t),
            10 => rows::<10>(t),
            11 => rows::<11>(t),
            _ => rows::<MR>(t),
        }
    }
}

/// The kernel for tiles of `R ≤ MR` rows: `R × 16` of `C` in `R` zmm accumulators.
///
/// # Safety
/// As [`micro`], with `t.rows ≤ R`.
#[target_feature(enable = "avx512f")]
unsafe fn rows<const R: usize>(t: &mut Tile<'_>) {
    let kc = t.b.len();
    assert!(R <= MR && t.rows <= R, "tile taller than the kernel");
    assert!(t.a.len() >= kc * MR, "packed A too short");
    let a = t.a.as_ptr();
    let b = t.b.as_ptr() as *const f32;
    let mut acc = [_mm512_setzero_ps(); R];
    // One step of `k`: one weight vector, `R` broadcasts, `R` FMAs.
    let step = |kk: usize, acc: &mut [__m512; R]| {
        // SAFETY: `kk < kc = t.b.len()`, each line is 16 f32 and 64-byte aligned (`Line`);
        // `kk * MR + r < kc * MR <= t.a.len()` for `r < R <= MR` (asserted above).
        unsafe {
            let bv = _mm512_load_ps(b.add(kk * NR));
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(kk * MR + r));
                *acc = _mm512_fmadd_ps(av, bv, *acc);
            }
        }
    };
    // Four steps per iteration, as in the AVX2 kernel: the FMAs into each accumulator keep
    // their order, so the result is the same as with one step per iteration.
    let mut kk = 0;
    while kk + 4 <= kc {
        step(kk, &mut acc);
        step(kk + 1, &mut acc);
        step(kk + 2, &mut acc);
        step(kk + 3, &mut acc);
        kk += 4;
    }
    while kk < kc {
        step(kk, &mut acc);
        kk += 1;
    }
    // `rows` picks a kernel of exactly the tile's rows, so only the columns can be ragged (a
    // layer's last panel): masked off, the same operations on the others.
    debug_assert!(t.rows == R || R == MR);
    let mask: __mmask16 = if t.cols == NR {
        0xffff
    } else {
        (1u16 << t.cols) - 1
    };
    let zero = _mm512_setzero_ps();
    for (r, &acc) in acc.iter().enumerate().take(t.rows) {
        let row = &mut t.c[r * t.ldc..r * t.ldc + t.cols];
        let p = row.as_mut_ptr();
        // SAFETY: `row` holds `cols` values (bounds-checked above) and the mask limits the load
        // and the store to them; `bias` is `[f32; 16]`.
        unsafe {
            let mut v = acc;
            if t.epilogue.accumulate {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, p));
            }
            if let Some((bias, relu)) = t.epilogue.finish {
                v = _mm512_add_ps(v, _mm512_loadu_ps(bias.as_ptr()));
                if relu {
                    v = _mm512_max_ps(v, zero);
                }
            }
            _mm512_mask_storeu_ps(p, mask, v);
        }
    }
}
