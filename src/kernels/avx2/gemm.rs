//! GEMM micro-kernel on AVX2 + FMA: a 6 × 16 tile of `C` in 12 ymm accumulators; per `k`, two
//! aligned loads of the weight line and six broadcasts from the packed `A` micro-panel (and the
//! same kernel for 1 to 5 rows, for short tiles).

use super::Avx2Fma;
use crate::kernels::GemmKernel;
use crate::kernels::pack::{NR, Tile, store_tile};
use std::arch::x86_64::*;

/// Rows per tile.
const MR: usize = 6;

impl GemmKernel for Avx2Fma {
    const MR: usize = MR;

    unsafe fn tile(t: &mut Tile<'_>) {
        // SAFETY: the trait's contract (AVX2 and FMA present, the tile as the loop nest builds
        // it), passed on.
        unsafe { micro(t) }
    }
}

/// Runs one tile, with a kernel of as many rows as the tile has: a batch of two rows (or the
/// ragged last tile of any batch) does not pay for six. A short tile reads the same weight
/// lines with fewer FMAs per line, so at 1–3 rows it runs at the speed of the weight stream,
/// not of the FMA units. Each row's sums are formed in the same order whatever the kernel, so
/// a row's scores do not depend on the rows beside it.
///
/// # Safety
/// The CPU must support AVX2 and FMA, and `t` must be built as the GEMM loop nest builds it:
/// `t.a` holds `MR × t.b.len()` packed values and `t.c` holds `rows` rows `ldc` apart of `cols`
/// values each, `rows` ≤ 6.
#[target_feature(enable = "avx2,fma")]
unsafe fn micro(t: &mut Tile<'_>) {
    // SAFETY: the caller's contract, passed on; each arm's `R` is at least `t.rows`.
    unsafe { crate::kernels::by_tile_rows!(t.rows, [1, 2, 3, 4, 5], MR, rows(t)) }
}

/// The kernel for tiles of `R ≤ MR` rows: `R × 16` of `C` in `2R` ymm accumulators.
///
/// # Safety
/// As [`micro`], with `t.rows ≤ R`.
#[target_feature(enable = "avx2,fma")]
unsafe fn rows<const R: usize>(t: &mut Tile<'_>) {
    let kc = t.b.len();
    assert!(R <= MR && t.rows <= R, "tile taller than the kernel");
    assert!(t.a.len() >= kc * MR, "packed A too short");
    let a = t.a.as_ptr();
    let b = t.b.as_ptr() as *const f32;
    let mut acc0 = [_mm256_setzero_ps(); R];
    let mut acc1 = [_mm256_setzero_ps(); R];
    // One step of `k`: two weight vectors, `R` broadcasts, `2R` FMAs.
    let step = |kk: usize, acc0: &mut [__m256; R], acc1: &mut [__m256; R]| {
        // SAFETY: `kk < kc = t.b.len()`, each line is 16 f32 and 64-byte aligned (`Line`);
        // `kk * MR + r < kc * MR <= t.a.len()` for `r < R <= MR` (asserted above).
        unsafe {
            let b0 = _mm256_load_ps(b.add(kk * NR));
            let b1 = _mm256_load_ps(b.add(kk * NR + 8));
            for r in 0..R {
                let av = _mm256_broadcast_ss(&*a.add(kk * MR + r));
                acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
            }
        }
    };
    // Four steps per iteration. In a scratch loop over this kernel on the project's machine, the
    // one-step loop ran up to a quarter slower than this one while the other vCPU was busy too,
    // and within 3% of it when alone. The FMAs into each accumulator keep their order, so every
    // result is the same as with one step per iteration.
    let mut kk = 0;
    while kk + 4 <= kc {
        step(kk, &mut acc0, &mut acc1);
        step(kk + 1, &mut acc0, &mut acc1);
        step(kk + 2, &mut acc0, &mut acc1);
        step(kk + 3, &mut acc0, &mut acc1);
        kk += 4;
    }
    while kk < kc {
        step(kk, &mut acc0, &mut acc1);
        kk += 1;
    }
    if t.cols < NR || t.rows < R {
        let mut out = [[0.0f32; NR]; R];
        for r in 0..R {
            // SAFETY: each row of `out` holds 16 f32.
            unsafe {
                _mm256_storeu_ps(out[r].as_mut_ptr(), acc0[r]);
                _mm256_storeu_ps(out[r].as_mut_ptr().add(8), acc1[r]);
            }
        }
        store_tile(t, &out);
        return;
    }
    let zero = _mm256_setzero_ps();
    for r in 0..R {
        let row = &mut t.c[r * t.ldc..r * t.ldc + NR];
        let p = row.as_mut_ptr();
        // SAFETY: `row` is a 16-element slice (bounds-checked above); `bias` is `[f32; 16]`.
        unsafe {
            let (mut v0, mut v1) = (acc0[r], acc1[r]);
            if t.epilogue.accumulate {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(p));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(p.add(8)));
            }
            if let Some((bias, relu)) = t.epilogue.finish {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(bias.as_ptr()));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(bias.as_ptr().add(8)));
                if relu {
                    v0 = _mm256_max_ps(v0, zero);
                    v1 = _mm256_max_ps(v1, zero);
                }
            }
            _mm256_storeu_ps(p, v0);
            _mm256_storeu_ps(p.add(8), v1);
        }
    }
}
