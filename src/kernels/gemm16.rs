//! The 16-lane GEMM micro-kernels, written once: a 12 × 32 tile of `C` over two adjacent panels
//! in 24 accumulators (per `k`, one aligned load of each panel's weight line and twelve
//! broadcasts from the packed `A` micro-panel, each feeding two FMAs), and a 12 × 16 tile for a
//! layer's odd last panel; versions for 1 to 11 rows, for short tiles; ragged columns masked.
//! Every element is formed by the same chain of FMAs as in the AVX2 kernel.
//!
//! The kernels are a macro over the lane operations: AVX-512 expands it with the zmm
//! intrinsics inside `#[target_feature(enable = "avx512f")]` functions (`avx512/gemm.rs`), the
//! tests with [`emulated`] lanes, plain code with the same rounding, so the AVX-512 kernel's
//! tiling, pairs, masks and tails run in the proptests of any CPU and agree with AVX-512 bit for
//! bit. (A macro, not a trait: generic over a lane trait, LLVM kept every accumulator on the
//! stack, a third of the speed.)

/// Rows per tile: twelve accumulators hide the FMA latency on two ports with room to spare, and
/// twelve divides the loop nest's 48-row blocks and the scorer's 144-row blocks.
pub(crate) const MR: usize = 12;

/// Implements `GemmKernel` for the kernel type `$K` with `micro` and `micro_pair` (its `tile`
/// and `pair`) and their per-row kernels over the lane operations named: a vector type
/// `$V`, a mask type `$M`, and functions with the signatures and results of the AVX-512
/// intrinsics `_mm512_setzero_ps`, `_mm512_set1_ps`, `_mm512_load_ps`, `_mm512_loadu_ps`,
/// `_mm512_maskz_loadu_ps`, `_mm512_mask_storeu_ps`, `_mm512_fmadd_ps`, `_mm512_add_ps`,
/// `_mm512_max_ps`, and `$first(n)`, the mask of lanes `0..n`. `$attr` goes on every
/// function (the target feature).
macro_rules! gemm16_kernels {
    (
        $(#[$attr:meta])*
        kernel = $K:ident, vector = $V:ty, mask = $M:ty, zero = $zero:path, splat = $splat:path,
        load_aligned = $load_aligned:path, load = $load:path, load_masked = $load_masked:path,
        store_masked = $store_masked:path, mul_add = $mul_add:path, add = $add:path,
        max = $max:path, first = $first:path $(,)?
    ) => {
        impl GemmKernel for $K {
            const MR: usize = MR;
            const PAIRS: bool = true;

            unsafe fn tile(t: &mut Tile<'_>) {
                // SAFETY: the trait's contract (the CPU runs the lanes, the tile as the loop
                // nest builds it), passed on.
                unsafe { micro(t) }
            }

            unsafe fn pair(t: &mut PairTile<'_>) {
                // SAFETY: the trait's contract (the CPU runs the lanes, the pair as the loop
                // nest builds it), passed on.
                unsafe { micro_pair(t) }
            }
        }

        /// `micro` for a pair of panels.
        ///
        /// # Safety
        /// The CPU runs the lanes' instructions, and `t` must be built as the GEMM loop nest builds it:
        /// `t.a` holds `MR × t.b[0].len()` packed values, `t.b[1]` is as long as `t.b[0]`, and `t.c`
        /// holds `rows` rows `ldc` apart of `cols ≤ 32` values each, `rows` ≤ 12.
        $(#[$attr])*
        unsafe fn micro_pair(t: &mut PairTile<'_>) {
            // SAFETY: the caller's contract, passed on; each arm's `R` is at least `t.rows`.
            unsafe {
                crate::kernels::by_tile_rows!(
                    t.rows,
                    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                    MR,
                    pair_rows(t)
                )
            }
        }

        /// The kernel for pairs of `R ≤ MR` rows: `R × 32` of `C` in `2R` accumulators.
        ///
        /// # Safety
        /// As `micro_pair`, with `t.rows ≤ R`.
        $(#[$attr])*
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
            let (mut left, mut right) = ([$zero(); R], [$zero(); R]);
            // One step of `k`: two weight vectors, `R` broadcasts, `2R` FMAs; each accumulator gets
            // one FMA per `k`, in order, as in the single-panel kernel.
            let step = |kk: usize, left: &mut [$V; R], right: &mut [$V; R]| {
                // SAFETY: `kk < kc`, the length of both panels' blocks; each line is 16 f32 and 64-byte
                // aligned (`Line`); `kk * MR + r < kc * MR <= t.a.len()` for `r < R <= MR` (asserted).
                unsafe {
                    let w0 = $load_aligned(b0.add(kk * NR));
                    let w1 = $load_aligned(b1.add(kk * NR));
                    for r in 0..R {
                        let av = $splat(*a.add(kk * MR + r));
                        left[r] = $mul_add(av, w0, left[r]);
                        right[r] = $mul_add(av, w1, right[r]);
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
            let (full, tail): ($M, $M) = ($first(NR), $first(t.cols - NR));
            let zero = $zero();
            for r in 0..t.rows {
                let row = &mut t.c[r * t.ldc..r * t.ldc + t.cols];
                for (half, acc, mask) in [(0, left[r], full), (1, right[r], tail)] {
                    // SAFETY: `row` holds `cols > 16` values (bounds-checked above): half 0 is its
                    // first 16, and the mask limits half 1 to the `cols − 16` after them; each bias
                    // line is `[f32; 16]`.
                    unsafe {
                        let p = row.as_mut_ptr().add(half * NR);
                        let mut v = acc;
                        if t.accumulate {
                            v = $add(v, $load_masked(mask, p));
                        }
                        if let Some((bias, relu)) = t.finish {
                            v = $add(v, $load(bias[half].as_ptr()));
                            if relu {
                                v = $max(v, zero);
                            }
                        }
                        $store_masked(p, mask, v);
                    }
                }
            }
        }

        /// Runs one tile with a kernel of as many rows as the tile has (a short tile does not pay for
        /// twelve). Each row's sums are formed in the same order whatever the kernel.
        ///
        /// # Safety
        /// The CPU runs the lanes' instructions, and `t` must be built as the GEMM loop nest builds it:
        /// `t.a` holds `MR × t.b.len()` packed values and `t.c` holds `rows` rows `ldc` apart of `cols`
        /// values each, `rows` ≤ 12.
        $(#[$attr])*
        unsafe fn micro(t: &mut Tile<'_>) {
            // SAFETY: the caller's contract, passed on; each arm's `R` is at least `t.rows`.
            unsafe {
                crate::kernels::by_tile_rows!(
                    t.rows,
                    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                    MR,
                    rows(t)
                )
            }
        }

        /// The kernel for tiles of `R ≤ MR` rows: `R × 16` of `C` in `R` accumulators.
        ///
        /// # Safety
        /// As `micro`, with `t.rows ≤ R`.
        $(#[$attr])*
        unsafe fn rows<const R: usize>(t: &mut Tile<'_>) {
            let kc = t.b.len();
            assert!(R <= MR && t.rows <= R, "tile taller than the kernel");
            assert!(t.a.len() >= kc * MR, "packed A too short");
            let a = t.a.as_ptr();
            let b = t.b.as_ptr() as *const f32;
            let mut acc = [$zero(); R];
            // One step of `k`: one weight vector, `R` broadcasts, `R` FMAs.
            let step = |kk: usize, acc: &mut [$V; R]| {
                // SAFETY: `kk < kc = t.b.len()`, each line is 16 f32 and 64-byte aligned (`Line`);
                // `kk * MR + r < kc * MR <= t.a.len()` for `r < R <= MR` (asserted above).
                unsafe {
                    let bv = $load_aligned(b.add(kk * NR));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let av = $splat(*a.add(kk * MR + r));
                        *acc = $mul_add(av, bv, *acc);
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
            let mask: $M = $first(t.cols);
            let zero = $zero();
            for (r, &acc) in acc.iter().enumerate().take(t.rows) {
                let row = &mut t.c[r * t.ldc..r * t.ldc + t.cols];
                let p = row.as_mut_ptr();
                // SAFETY: `row` holds `cols` values (bounds-checked above) and the mask limits the load
                // and the store to them; `bias` is `[f32; 16]`.
                unsafe {
                    let mut v = acc;
                    if t.epilogue.accumulate {
                        v = $add(v, $load_masked(mask, p));
                    }
                    if let Some((bias, relu)) = t.epilogue.finish {
                        v = $add(v, $load(bias.as_ptr()));
                        if relu {
                            v = $max(v, zero);
                        }
                    }
                    $store_masked(p, mask, v);
                }
            }
        }
    };
}
pub(crate) use gemm16_kernels;

/// Implements `GemvKernel` for the kernel type `$K` with `gemv_panels`: four panels
/// at once, one accumulator chain each, reading only the weight lines of the input's non-zero
/// entries. Lane operations as in [`gemm16_kernels`], plus `$store`, with the signature of
/// `_mm512_storeu_ps`.
macro_rules! gemv16_kernel {
    (
        $(#[$attr:meta])*
        kernel = $K:ident, vector = $V:ty, zero = $zero:path, splat = $splat:path,
        load_aligned = $load_aligned:path,
        mul_add = $mul_add:path, store = $store:path $(,)?
    ) => {
        impl GemvKernel for $K {
            unsafe fn panels(
                index: &[u32],
                value: &[f32],
                w: &PackedMatrix,
                p: usize,
                group: usize,
                acc: &mut [[f32; NR]; 4],
            ) {
                // SAFETY: the trait's contract (the CPU runs the lanes, indices below `k`,
                // panels `p..p + group` in `w`), passed on.
                unsafe { gemv_panels(index, value, w, p, group, acc) }
            }
        }

        /// `GemvKernel::panels`.
        ///
        /// # Safety
        /// The CPU runs the lanes' instructions, every `index` is below `w.k()`, `index` and
        /// `value` are as long, `1 ≤ group ≤ 4`, and panels `p..p + group` exist in `w`.
        $(#[$attr])*
        unsafe fn gemv_panels(
            index: &[u32],
            value: &[f32],
            w: &PackedMatrix,
            p: usize,
            group: usize,
            acc: &mut [[f32; NR]; 4],
        ) {
            let k = w.k();
            assert!((1..=4).contains(&group) && index.len() == value.len());
            // Missing panels of a short group point at the first one; their sums are discarded.
            let base = |g: usize| w.panel(p + if g < group { g } else { 0 }).as_ptr() as *const f32;
            let (b0, b1, b2, b3) = (base(0), base(1), base(2), base(3));
            let mut v: [$V; 4] = [$zero(); 4];
            for (&i, &a) in index.iter().zip(value) {
                let off = i as usize * NR;
                debug_assert!((i as usize) < k);
                let a = $splat(a);
                // SAFETY: `i < k` (the caller's contract), so line `i` of each panel (64-byte
                // aligned, 16 f32) lies inside that panel.
                unsafe {
                    v[0] = $mul_add(a, $load_aligned(b0.add(off)), v[0]);
                    v[1] = $mul_add(a, $load_aligned(b1.add(off)), v[1]);
                    v[2] = $mul_add(a, $load_aligned(b2.add(off)), v[2]);
                    v[3] = $mul_add(a, $load_aligned(b3.add(off)), v[3]);
                }
            }
            for (acc, v) in acc.iter_mut().zip(v) {
                // SAFETY: each `acc` row holds 16 f32.
                unsafe { $store(acc.as_mut_ptr(), v) };
            }
        }
    };
}
pub(crate) use gemv16_kernel;

/// The lane operations in plain code, lane by lane, with the AVX-512 intrinsics' signatures
/// and results (`f32::mul_add` rounds once, as an FMA does), and the AVX-512 kernel expanded
/// over them as a kernel type the GEMM loop nest runs on any CPU (tests only).
#[cfg(test)]
pub(crate) mod emulated {
    use super::MR;
    use crate::kernels::pack::{NR, PackedMatrix, PairTile, Tile};
    use crate::kernels::{GemmKernel, GemvKernel};

    /// Sixteen f32 lanes.
    pub(crate) type F32x16 = [f32; 16];

    pub(crate) fn zero() -> F32x16 {
        [0.0; 16]
    }
    pub(crate) fn splat(v: f32) -> F32x16 {
        [v; 16]
    }
    /// # Safety
    /// 16 values readable at `p`, 64-byte aligned (checked).
    pub(crate) unsafe fn load_aligned(p: *const f32) -> F32x16 {
        assert!(
            (p as usize).is_multiple_of(64),
            "an aligned load from an unaligned address"
        );
        // SAFETY: the caller's contract.
        unsafe { load(p) }
    }
    /// # Safety
    /// 16 values readable at `p`.
    pub(crate) unsafe fn load(p: *const f32) -> F32x16 {
        // SAFETY: the caller's contract.
        std::array::from_fn(|i| unsafe { p.add(i).read_unaligned() })
    }
    /// # Safety
    /// The lanes of `mask` readable at `p`; no other lane is read.
    pub(crate) unsafe fn load_masked(mask: u16, p: *const f32) -> F32x16 {
        std::array::from_fn(|i| {
            if mask >> i & 1 == 1 {
                // SAFETY: the caller's contract.
                unsafe { p.add(i).read_unaligned() }
            } else {
                0.0
            }
        })
    }
    /// # Safety
    /// The lanes of `mask` writable at `p`; no other lane is written.
    pub(crate) unsafe fn store_masked(p: *mut f32, mask: u16, v: F32x16) {
        for (i, &x) in v.iter().enumerate() {
            if mask >> i & 1 == 1 {
                // SAFETY: the caller's contract.
                unsafe { p.add(i).write_unaligned(x) };
            }
        }
    }
    /// # Safety
    /// 16 values writable at `p`.
    pub(crate) unsafe fn store(p: *mut f32, v: F32x16) {
        // SAFETY: the caller's contract.
        unsafe { store_masked(p, u16::MAX, v) }
    }
    pub(crate) fn mul_add(a: F32x16, b: F32x16, c: F32x16) -> F32x16 {
        std::array::from_fn(|i| a[i].mul_add(b[i], c[i]))
    }
    pub(crate) fn add(a: F32x16, b: F32x16) -> F32x16 {
        std::array::from_fn(|i| a[i] + b[i])
    }
    /// `vmaxps`: `a` where `a > b`, else `b` (so `b` for a NaN or two zeros).
    pub(crate) fn max(a: F32x16, b: F32x16) -> F32x16 {
        std::array::from_fn(|i| if a[i] > b[i] { a[i] } else { b[i] })
    }
    pub(crate) fn first(n: usize) -> u16 {
        assert!(n <= 16, "a mask of more than 16 lanes");
        if n == 16 { u16::MAX } else { (1u16 << n) - 1 }
    }

    super::gemm16_kernels! {
        kernel = Emulated512, vector = F32x16, mask = u16, zero = zero, splat = splat,
        load_aligned = load_aligned, load = load, load_masked = load_masked,
        store_masked = store_masked, mul_add = mul_add,
        add = add, max = max, first = first,
    }

    super::gemv16_kernel! {
        kernel = Emulated512, vector = F32x16, zero = zero, splat = splat,
        load_aligned = load_aligned, mul_add = mul_add, store = store,
    }

    /// The AVX-512 kernels' logic on emulated lanes (tests only).
    pub(crate) struct Emulated512;
}
