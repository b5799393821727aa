//! Blocked GEMM with pre-packed weights and a fused bias + ReLU epilogue.
//!
//! `C[m × n] = act(A[m × k] · Wᵀ + b)` where `W` is `[n, k]` (PyTorch `[out, in]`), packed once
//! into panels of [`NR`] = 16 output columns ([`super::pack`]). The loop nest, written once for
//! every micro-kernel (`GemmKernel`), walks `k` in blocks of [`KC`], rows in blocks of [`MC`]
//! (an `A` block stays in L2), packs each `A` block into micro-panels of the kernel's `MR` rows
//! (`MR` values per `k`, contiguous, so the micro-kernel's broadcasts read one sequential
//! stream), and calls the kernel on each `MR × 16` tile of `C`, which it keeps in registers.

use super::pack::{Epilogue, PairTile, Tile, pack_columns, pack_rows};
pub use super::pack::{KC, Line, MC, NR, PackBuffer, PackedMatrix, fill_panel};
use super::{GemmKernel, Isa, dispatch};
use std::ops::Range;

/// `C = act(A · Wᵀ + b)` for `m` rows, using `pack` for the packed blocks of `A`.
///
/// `a` holds row `i` at `a[i * lda..i * lda + w.k()]`, `c` row `i` at
/// `c[i * ldc..i * ldc + w.n()]`. Columns of `C` past `n` are not touched.
///
/// # Panics
/// If the slices are too short for `m`, `lda`, `ldc`, or `lda < k`, `ldc < n`. These are
/// programming errors: the scorer sizes its buffers from the validated model.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bias_act(
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    w: &PackedMatrix,
    relu: bool,
    c: &mut [f32],
    ldc: usize,
    pack: &mut PackBuffer,
) {
    Operand::Rows(a, lda).gemm_bias_act(isa, m, w, relu, c, ldc, pack);
}

/// `C = act(Aᵀ · Wᵀ + b)` where `A` is stored `[k, m]`: element `(i, kk)` of the left operand
/// is `a[kk * lda + i]`. The trainer's weight gradient `dW = dZᵀ · X` runs on this without
/// transposing `dZ`: packing reads `MR` consecutive values per `k`, which is cheaper than the
/// row-major packing.
///
/// # Panics
/// As [`gemm_bias_act`], with `a` holding `k` rows of `lda ≥ m` values.
#[allow(clippy::too_many_arguments)]
pub fn gemm_at_bias_act(
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    w: &PackedMatrix,
    relu: bool,
    c: &mut [f32],
    ldc: usize,
    pack: &mut PackBuffer,
) {
    Operand::Columns(a, lda).gemm_bias_act(isa, m, w, relu, c, ldc, pack);
}

/// The left operand of a product with its leading dimension: row-major `[m, k]`
/// (`a[i * lda + kk]`) or stored transposed `[k, m]` (`a[kk * lda + i]`).
#[derive(Clone, Copy)]
pub(crate) enum Operand<'a> {
    Rows(&'a [f32], usize),
    Columns(&'a [f32], usize),
}

impl Operand<'_> {
    /// The operand without its first `i0` rows.
    #[cfg_attr(not(feature = "train"), allow(dead_code))] // the trainer's (train/forward.rs)
    pub(crate) fn skip_rows(self, i0: usize) -> Self {
        match self {
            Operand::Rows(a, lda) => Operand::Rows(&a[i0 * lda..], lda),
            Operand::Columns(a, lda) => Operand::Columns(&a[i0..], lda),
        }
    }

    /// [`gemm_bias_act`] or [`gemm_at_bias_act`], by layout.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm_bias_act(
        self,
        isa: Isa,
        m: usize,
        w: &PackedMatrix,
        relu: bool,
        c: &mut [f32],
        ldc: usize,
        pack: &mut PackBuffer,
    ) {
        if self.fits(m, w) {
            gemm(isa, self, m, w, relu, c, ldc, pack, |_| {});
        }
    }

    /// `C = A · Wᵀ + b` as [`Operand::gemm_bias_act`] (no ReLU), calling `done` on every block
    /// of [`MC`] rows of `C` as soon as it is final, while it is in cache: the trainer applies
    /// the optimizer to each block of weight gradients there instead of in a pass of its own.
    ///
    /// # Panics
    /// As [`gemm_bias_act`].
    #[allow(clippy::too_many_arguments)]
    #[cfg_attr(not(feature = "train"), allow(dead_code))] // the trainer's (train/fused.rs)
    pub(crate) fn gemm_then(
        self,
        isa: Isa,
        m: usize,
        w: &PackedMatrix,
        c: &mut [f32],
        ldc: usize,
        pack: &mut PackBuffer,
        done: impl FnMut(DoneRows<'_>),
    ) {
        if self.fits(m, w) {
            gemm(isa, self, m, w, false, c, ldc, pack, done);
        }
    }

    /// Whether there is a product to compute (`m` and the output width non-zero), after
    /// checking that this operand holds `m` rows of `w.k()` values.
    ///
    /// # Panics
    /// If it does not, or its leading dimension is too small.
    fn fits(&self, m: usize, w: &PackedMatrix) -> bool {
        if m == 0 || w.n() == 0 {
            return false;
        }
        match *self {
            Operand::Rows(a, lda) => {
                assert!(lda >= w.k(), "leading dimension of A too small");
                assert!(a.len() >= (m - 1) * lda + w.k(), "A too short");
            }
            Operand::Columns(a, lda) => {
                assert!(lda >= m, "leading dimension of A too small");
                assert!(
                    w.k() == 0 || a.len() >= (w.k() - 1) * lda + m,
                    "A too short"
                );
            }
        }
        true
    }
}

/// A block of rows of `C` that [`Operand::gemm_then`] has finished.
#[cfg_attr(not(feature = "train"), allow(dead_code))] // read by the trainer (train/fused.rs)
pub(crate) struct DoneRows<'a> {
    /// Rows of `C` (of the product's `m`) the block covers: a multiple of [`MC`] onwards.
    pub rows: Range<usize>,
    /// The block: its row `r` is `c[r * ldc..r * ldc + n]`.
    pub c: &'a mut [f32],
    pub ldc: usize,
}

#[allow(clippy::too_many_arguments)]
fn gemm(
    isa: Isa,
    a: Operand<'_>,
    m: usize,
    w: &PackedMatrix,
    relu: bool,
    c: &mut [f32],
    ldc: usize,
    pack: &mut PackBuffer,
    done: impl FnMut(DoneRows<'_>),
) {
    assert!(ldc >= w.n(), "leading dimension of C too small");
    assert!(c.len() >= (m - 1) * ldc + w.n(), "C too short");
    // SAFETY: the token `isa` exists only where this CPU runs its kernels (`K`).
    dispatch!(isa, K => unsafe { gemm_with::<K, { K::MR }>(a, m, w, relu, c, ldc, pack, done) })
}

/// The loop nest over micro-kernel `K` (whose tile height `K::MR` is repeated as `MR`, because
/// a constant of a generic type cannot size the packing arrays on stable Rust).
///
/// # Safety
/// This CPU must run `K`'s instructions (the caller holds its [`Isa`] token); `c` holds `m`
/// rows `ldc ≥ n` apart and `a` fits `m` and `w` ([`Operand::fits`]).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_with<K: GemmKernel, const MR: usize>(
    a: Operand<'_>,
    m: usize,
    w: &PackedMatrix,
    relu: bool,
    c: &mut [f32],
    ldc: usize,
    pack: &mut PackBuffer,
    mut done: impl FnMut(DoneRows<'_>),
) {
    const {
        assert!(
            K::MR == MR && K::NR == NR,
            "the kernel's tile is not MR × NR"
        );
        assert!(
            K::ALIGN <= align_of::<Line>(),
            "panel lines are less aligned than the kernel reads"
        );
    };
    let (k, n) = (w.k(), w.n());
    let panels = n.div_ceil(NR);
    let packed: &mut [f32] = bytemuck::cast_slice_mut(pack.lines_mut());
    let mut k0 = 0;
    loop {
        let kc = KC.min(k - k0);
        let last_k = k0 + kc == k;
        for i0 in (0..m).step_by(MC) {
            let i1 = (i0 + MC).min(m);
            match a {
                Operand::Rows(a, lda) => pack_rows::<MR>(a, lda, i0..i1, k0..k0 + kc, packed),
                Operand::Columns(a, lda) => pack_columns::<MR>(a, lda, i0..i1, k0..k0 + kc, packed),
            }
            let mut j = 0;
            while j < panels {
                let col0 = j * NR;
                if K::PAIRS && j + 1 < panels {
                    let cols = (2 * NR).min(n - col0);
                    let b = [&w.panel(j)[k0..k0 + kc], &w.panel(j + 1)[k0..k0 + kc]];
                    let finish = last_k.then(|| ([w.bias_line(j), w.bias_line(j + 1)], relu));
                    for (p, i) in (i0..i1).step_by(MR).enumerate() {
                        let rows = MR.min(i1 - i);
                        let c_start = i * ldc + col0;
                        let c_end = (i + rows - 1) * ldc + col0 + cols;
                        let mut tile = PairTile {
                            a: &packed[p * MR * kc..(p + 1) * MR * kc],
                            b,
                            c: &mut c[c_start..c_end],
                            ldc,
                            cols,
                            rows,
                            accumulate: k0 > 0,
                            finish,
                        };
                        // SAFETY: as for a single tile below, with `cols ≤ 32` over two
                        // panels' `k` blocks of `kc` lines; `K::PAIRS` holds.
                        unsafe { K::pair(&mut tile) };
                    }
                    j += 2;
                    continue;
                }
                let cols = NR.min(n - col0);
                let b = &w.panel(j)[k0..k0 + kc];
                let epilogue = Epilogue {
                    accumulate: k0 > 0,
                    finish: last_k.then(|| (w.bias_line(j), relu)),
                };
                for (p, i) in (i0..i1).step_by(MR).enumerate() {
                    let rows = MR.min(i1 - i);
                    let c_start = i * ldc + col0;
                    let c_end = (i + rows - 1) * ldc + col0 + cols;
                    let mut tile = Tile {
                        a: &packed[p * MR * kc..(p + 1) * MR * kc],
                        b,
                        c: &mut c[c_start..c_end],
                        ldc,
                        cols,
                        rows,
                        epilogue,
                    };
                    // SAFETY: the caller's promise that this CPU runs `K`; the tile is built
                    // as `GemmKernel::tile` requires (`MR × kc` packed values, `rows ≤ MR`
                    // rows of `cols ≤ 16` values `ldc` apart).
                    unsafe { K::tile(&mut tile) };
                }
                j += 1;
            }
            if last_k {
                done(DoneRows {
                    rows: i0..i1,
                    c: &mut c[i0 * ldc..(i1 - 1) * ldc + n],
                    ldc,
                });
            }
        }
        if last_k {
            break;
        }
        k0 += kc;
    }
}

/// [`gemm_bias_act`] on the emulated 16-lane kernel (tests of other modules).
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn emulated_gemm(
    a: &[f32],
    lda: usize,
    m: usize,
    w: &PackedMatrix,
    relu: bool,
    c: &mut [f32],
    ldc: usize,
    pack: &mut PackBuffer,
) {
    use super::gemm16::{MR, emulated::Emulated512};
    let a = Operand::Rows(a, lda);
    if a.fits(m, w) {
        assert!(ldc >= w.n() && c.len() >= (m - 1) * ldc + w.n());
        // SAFETY: emulated lanes run on any CPU; `a` and `c` fit (checked above).
        unsafe { gemm_with::<Emulated512, MR>(a, m, w, relu, c, ldc, pack, |_| {}) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::gemm_bias_act_ref;
    use proptest::prelude::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-4 * (1.0 + b.abs())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn matches_reference(
            m in 1usize..40,
            // Past `KC` a second `k` block adds to what the first stored (`accumulate`).
            k in prop_oneof![3 => 1usize..600, 1 => KC - 8..KC + 200],
            n in 1usize..70,
            lda_pad in 0usize..5, ldc_pad in 0usize..5, relu: bool, seed: u64,
        ) {
            let (lda, ldc) = (k + lda_pad, n + ldc_pad);
            let mut rng = crate::rng::Rng::new(seed);
            let a: Vec<f32> = (0..m * lda).map(|_| rng.normal()).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let packed = PackedMatrix::pack(&w, &bias, n, k);
            let mut buffer = PackBuffer::new();
            let mut want = vec![7.0f32; m * ldc];
            gemm_bias_act_ref(&a, lda, m, &w, &bias, n, k, relu, &mut want, ldc);
            // The same A stored transposed (`k` rows of `m + lda_pad` values).
            let ldt = m + lda_pad;
            let mut at = vec![0.0f32; k * ldt];
            for i in 0..m {
                for kk in 0..k {
                    at[kk * ldt + i] = a[i * lda + kk];
                }
            }
            for isa in Isa::available() {
                let mut got = vec![7.0f32; m * ldc];
                gemm_bias_act(isa, &a, lda, m, &packed, relu, &mut got, ldc, &mut buffer);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    prop_assert!(close(*g, *w), "{isa:?} element {i}: {g} vs {w}");
                }
                let mut got_t = vec![7.0f32; m * ldc];
                gemm_at_bias_act(isa, &at, ldt, m, &packed, relu, &mut got_t, ldc, &mut buffer);
                // Same packed values in the same order: bit-identical to the row-major call.
                prop_assert_eq!(&got_t, &got);
                // A row's result does not depend on the rows beside it (short tiles run their
                // own kernels): the last row alone is bit for bit the same as in the batch.
                let last = &a[(m - 1) * lda..(m - 1) * lda + k];
                let mut alone = vec![0.0f32; n];
                gemm_bias_act(isa, last, k, 1, &packed, relu, &mut alone, n, &mut buffer);
                prop_assert_eq!(&alone[..], &got[(m - 1) * ldc..(m - 1) * ldc + n]);
            }
            // The AVX-512 kernel's logic (pairs of panels, masks, short tiles) on emulated
            // lanes, on any CPU: as close to the reference, and bit for bit what the SIMD
            // kernels give where this CPU has them (below).
            let mut emulated = vec![7.0f32; m * ldc];
            use crate::kernels::gemm16::{MR as MR16, emulated::Emulated512};
            // SAFETY: emulated lanes run on any CPU; `a` and `emulated` fit `m`, `lda`, `ldc`.
            unsafe {
                gemm_with::<Emulated512, MR16>(
                    Operand::Rows(&a, lda), m, &packed, relu, &mut emulated, ldc, &mut buffer, |_| {},
                )
            };
            for (i, (g, w)) in emulated.iter().zip(&want).enumerate() {
                prop_assert!(close(*g, *w), "emulated 16 lanes, element {i}: {g} vs {w}");
            }
            // The x86 SIMD kernels form every element as the same chain of FMAs, so AVX2 and
            // AVX-512 agree bit for bit (where this CPU runs both), whatever their tile heights,
            // and with the emulated 16-lane kernel.
            let simd: Vec<_> = Isa::available()
                .into_iter()
                .filter(|isa| isa.kind() != crate::kernels::IsaKind::Portable)
                .collect();
            if let Some(&isa) = simd.first() {
                let mut got = vec![7.0f32; m * ldc];
                gemm_bias_act(isa, &a, lda, m, &packed, relu, &mut got, ldc, &mut buffer);
                prop_assert_eq!(&got, &emulated, "{:?} vs the emulated 16 lanes", isa);
            }
            for pair in simd.windows(2) {
                let mut first = vec![7.0f32; m * ldc];
                let mut second = vec![7.0f32; m * ldc];
                gemm_bias_act(pair[0], &a, lda, m, &packed, relu, &mut first, ldc, &mut buffer);
                gemm_bias_act(pair[1], &a, lda, m, &packed, relu, &mut second, ldc, &mut buffer);
                prop_assert_eq!(&first, &second, "{:?} vs {:?}", pair[0], pair[1]);
            }
        }
    }
}
