//! Blocked GEMM with pre-packed weights and a fused bias + ReLU epilogue.
//!
//! `C[m × n] = act(A[m × k] · Wᵀ + b)` where `W` is `[n, k]` (PyTorch `[out, in]`). `W` is packed
//! once (when a model is opened) into panels of [`NR`] = 16 output columns: panel `j` holds, for
//! every `k`, the 16 weights of columns `16j..16j+16` in one 64-byte line, zero-padded past `n`.
//! The loop nest walks `k` in blocks of [`KC`], rows in blocks of
//! [`MC`] (an `A` block stays in L2), packs each `A` block into micro-panels of `MR` rows
//! (`MR` values per `k`, contiguous, so the micro-kernel's broadcasts read one sequential
//! stream), and calls a micro-kernel that keeps an `MR × 16` tile of `C` in registers.

use super::Isa;
use std::ops::Range;

/// Output columns per panel (one 64-byte line of f32).
pub const NR: usize = 16;
/// Depth of a `k` block. Large enough that the layers of common models are not split along `k`
/// at all: measured here, re-reading and re-writing `C` per `k` block cost more (KC = 256: 66
/// GFLOP/s at 4096×624×400) than streaming a panel longer than L1 from L2 (KC = 1024: 84).
pub const KC: usize = 1024;
/// Rows of an `A` block (48 × 1024 floats = 192 KiB packed, inside L2).
pub const MC: usize = 48;

/// One 64-byte line: 16 weights of a panel at one `k`, or any aligned scratch.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
pub struct Line(pub [f32; NR]);

impl Line {
    /// Sets the line to `values` (at most 16), zero past them.
    #[inline]
    pub(crate) fn set(&mut self, values: &[f32]) {
        match <&[f32; NR]>::try_from(values) {
            // A fixed-size copy is two vector moves; a slice copy is a memcpy call.
            Ok(full) => self.0 = *full,
            Err(_) => {
                self.0[..values.len()].copy_from_slice(values);
                self.0[values.len()..].fill(0.0);
            }
        }
    }
}

/// Weights `[n, k]` packed into 16-column panels, with the bias padded to a multiple of 16.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    panels: Vec<Line>,
    bias: Vec<Line>,
}

impl PackedMatrix {
    /// Packs row-major `weight[n][k]` and `bias[n]`.
    ///
    /// # Panics
    /// If `weight.len() != n * k` or `bias.len() != n` (callers pass validated sections).
    pub fn pack(weight: &[f32], bias: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k, "weight is not n × k");
        assert_eq!(bias.len(), n, "bias is not n long");
        let panels_n = n.div_ceil(NR);
        let mut panels = vec![Line::default(); panels_n * k];
        for (o, row) in weight.chunks_exact(k.max(1)).enumerate().take(n) {
            let (j, c) = (o / NR, o % NR);
            for (kk, &w) in row.iter().enumerate() {
                panels[j * k + kk].0[c] = w;
            }
        }
        let mut padded = vec![Line::default(); panels_n];
        for (o, &b) in bias.iter().enumerate() {
            padded[o / NR].0[o % NR] = b;
        }
        PackedMatrix {
            k,
            n,
            panels,
            bias: padded,
        }
    }

    /// Re-packs row-major `weight[n][k]` and `bias[n]` into this matrix, reusing its memory
    /// (the trainer re-packs every layer after every step).
    ///
    /// # Panics
    /// As [`PackedMatrix::pack`].
    pub fn repack(&mut self, weight: &[f32], bias: &[f32], n: usize, k: usize) {
        assert_eq!(weight.len(), n * k, "weight is not n × k");
        assert_eq!(bias.len(), n, "bias is not n long");
        self.resize(n, k);
        let fill = |(j, panel): (usize, &mut [Line])| {
            let rows = &weight[j * NR * k..((j + 1) * NR).min(n) * k];
            fill_panel(panel, rows, k);
        };
        self.for_each_panel(fill);
        self.set_bias(bias);
    }

    /// Sizes this matrix for `n × k` weights and returns its panels (`k` lines each, panel `j`
    /// for output columns `16j..16j + 16`) for the caller to fill with [`fill_panel`], then
    /// [`PackedMatrix::set_bias`]. The trainer packs each panel right after its optimizer
    /// updates the panel's 16 weight rows, while they are in cache, instead of reading the
    /// whole matrix again afterwards as [`PackedMatrix::repack`] would.
    pub fn panels_for(&mut self, n: usize, k: usize) -> &mut [Line] {
        self.resize(n, k);
        &mut self.panels
    }

    /// Packs the transpose of row-major `source[k][n]` (so that the packed weights, `[n, k]`,
    /// are `sourceᵀ`) with a zero bias, reusing this matrix's memory. This is how the backward
    /// GEMMs run on the forward kernel: `dX = dZ · W` packs `W` transposed, and
    /// `dW = dZᵀ · X` packs the layer input `X` transposed. Reads `source` row by row.
    ///
    /// # Panics
    /// If `source.len() != k * n`.
    pub fn repack_transposed(&mut self, source: &[f32], n: usize, k: usize) {
        assert_eq!(source.len(), k * n, "source is not k × n");
        self.resize(n, k);
        let fill = |(j, panel): (usize, &mut [Line])| {
            let col0 = j * NR;
            let cols = NR.min(n - col0);
            for (kk, line) in panel.iter_mut().enumerate() {
                line.set(&source[kk * n + col0..kk * n + col0 + cols]);
            }
        };
        self.for_each_panel(fill);
        for line in &mut self.bias {
            line.0 = [0.0; NR];
        }
    }

    /// Runs `fill` on every `(panel index, panel)`, in parallel (on the current rayon pool)
    /// when the matrix is large enough to be worth it. Each panel is written by one call, so
    /// the result does not depend on the split.
    fn for_each_panel(&mut self, fill: impl Fn((usize, &mut [Line])) + Sync + Send) {
        use rayon::prelude::*;
        let k = self.k.max(1);
        if self.panels.len() >= 1 << 12 {
            self.panels
                .par_chunks_exact_mut(k)
                .enumerate()
                .for_each(fill);
        } else {
            self.panels.chunks_exact_mut(k).enumerate().for_each(fill);
        }
    }

    fn resize(&mut self, n: usize, k: usize) {
        let panels_n = n.div_ceil(NR);
        self.n = n;
        self.k = k;
        self.panels.resize(panels_n * k, Line::default());
        self.bias.resize(panels_n, Line::default());
    }

    /// Sets the bias (zero-padded to whole panels).
    ///
    /// # Panics
    /// If `bias` is longer than the matrix's output width.
    pub fn set_bias(&mut self, bias: &[f32]) {
        assert!(bias.len() <= self.n, "bias longer than the output width");
        for (j, line) in self.bias.iter_mut().enumerate() {
            for (c, v) in line.0.iter_mut().enumerate() {
                *v = bias.get(j * NR + c).copied().unwrap_or(0.0);
            }
        }
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes of packed weights.
    pub fn bytes(&self) -> usize {
        self.panels.len() * 64
    }

    pub(crate) fn panel(&self, j: usize) -> &[Line] {
        &self.panels[j * self.k..(j + 1) * self.k]
    }

    pub(crate) fn bias_line(&self, j: usize) -> &[f32; NR] {
        &self.bias[j].0
    }
}

/// Packs `rows` (up to 16 weight rows of `k` values, row-major) into one panel of `k` lines,
/// zero past the last row.
///
/// # Panics
/// If `rows` holds more than 16 rows or `panel` fewer than `k` lines.
pub fn fill_panel(panel: &mut [Line], rows: &[f32], k: usize) {
    if k == 0 {
        return;
    }
    let cols = rows.len() / k;
    assert!(cols <= NR && panel.len() >= k, "rows do not fit the panel");
    if cols < NR {
        panel.iter_mut().for_each(|line| line.0 = [0.0; NR]);
    }
    // 16 lines (1 KiB, in L1) at a time, row by row within them: a whole panel (`k` lines) is
    // larger than L1 from k = 512 on, and sixteen row passes over it would each re-read it.
    for k0 in (0..k).step_by(NR) {
        let k1 = (k0 + NR).min(k);
        let lines = &mut panel[k0..k1];
        for (c, row) in rows.chunks_exact(k).enumerate() {
            for (line, &w) in lines.iter_mut().zip(&row[k0..k1]) {
                line.0[c] = w;
            }
        }
    }
}

/// What a micro-kernel does with its tile after the `k` loop.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    /// Add to what `C` already holds (a later `k` block) instead of overwriting it.
    pub accumulate: bool,
    /// On the last `k` block: add this bias line and optionally apply ReLU.
    pub finish: Option<(&'a [f32; NR], bool)>,
}

/// Room for one packed block of `A` (`MC × KC` floats), reused between calls so that
/// [`gemm_bias_act`] never allocates.
#[derive(Debug, Clone)]
pub struct PackBuffer(Vec<Line>);

impl PackBuffer {
    /// A buffer for any GEMM shape.
    pub fn new() -> Self {
        PackBuffer(vec![Line::default(); MC * KC / NR])
    }
}

impl Default for PackBuffer {
    fn default() -> Self {
        Self::new()
    }
}

/// The job of one micro-kernel call: an `MR × 16` tile of `C`, of which `rows` are stored.
pub(crate) struct Tile<'a> {
    /// A packed micro-panel of `A`: for each `k` of the block, `MR` row values (rows past
    /// `rows` are zero).
    pub a: &'a [f32],
    /// The panel lines of the current `k` block.
    pub b: &'a [Line],
    /// `C` rows, each `ldc` apart, starting at the tile's first column.
    pub c: &'a mut [f32],
    pub ldc: usize,
    /// Valid columns in this tile (≤ 16).
    pub cols: usize,
    pub rows: usize,
    pub epilogue: Epilogue<'a>,
}

/// Applies the bias/ReLU epilogue and writes `rows × cols` of a computed tile into `C`.
/// Shared by all micro-kernels for the ragged tiles they spill to the stack.
pub(crate) fn store_tile(tile: &mut Tile<'_>, acc: &[[f32; NR]]) {
    for (r, acc_row) in acc.iter().enumerate().take(tile.rows) {
        let c_row = &mut tile.c[r * tile.ldc..r * tile.ldc + tile.cols];
        for (col, (c, &v)) in c_row.iter_mut().zip(acc_row).enumerate() {
            let mut v = if tile.epilogue.accumulate { *c + v } else { v };
            if let Some((bias, relu)) = tile.epilogue.finish {
                v += bias[col];
                if relu {
                    v = v.max(0.0);
                }
            }
            *c = v;
        }
    }
}

/// `C = act(A · Wᵀ + b)` for `m` rows, using `pack` for the packed blocks of `A`.
///
/// `a` holds row `i` at `a[i * lda..i * lda + w.k()]`, `c` row `i` at
/// `c[i * ldc..i * ldc + w.n()]`. Columns of `C` past `n` are not touched.
///
/// # Panics
/// If the slices are too short for `m`, `lda`, `ldc`, or `lda < k`, `ldc < n`, or the
/// instruction set is not supported by this CPU. These are programming errors: the scorer sizes
/// its buffers from the validated model.
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
        if m == 0 || w.n == 0 {
            return false;
        }
        match *self {
            Operand::Rows(a, lda) => {
                assert!(lda >= w.k, "leading dimension of A too small");
                assert!(a.len() >= (m - 1) * lda + w.k, "A too short");
            }
            Operand::Columns(a, lda) => {
                assert!(lda >= m, "leading dimension of A too small");
                assert!(w.k == 0 || a.len() >= (w.k - 1) * lda + m, "A too short");
            }
        }
        true
    }
}

/// A block of rows of `C` that [`Operand::gemm_then`] has finished.
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
    mut done: impl FnMut(DoneRows<'_>),
) {
    let (k, n) = (w.k, w.n);
    assert!(ldc >= n, "leading dimension of C too small");
    assert!(c.len() >= (m - 1) * ldc + n, "C too short");
    assert!(isa.is_supported(), "instruction set not supported here");
    let mr = match isa {
        Isa::Portable => super::gemm_portable::MR,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => super::gemm_avx2::MR,
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2Fma => unreachable!("is_supported() is false off x86-64"),
    };
    let panels = n.div_ceil(NR);
    let packed: &mut [f32] = bytemuck::cast_slice_mut(&mut pack.0);
    let mut k0 = 0;
    loop {
        let kc = KC.min(k - k0);
        let last_k = k0 + kc == k;
        for i0 in (0..m).step_by(MC) {
            let i1 = (i0 + MC).min(m);
            match a {
                Operand::Rows(a, lda) => pack_a(a, lda, i0..i1, k0..k0 + kc, mr, packed),
                Operand::Columns(a, lda) => {
                    pack_a_transposed(a, lda, i0..i1, k0..k0 + kc, mr, packed)
                }
            }
            for j in 0..panels {
                let col0 = j * NR;
                let cols = NR.min(n - col0);
                let b = &w.panel(j)[k0..k0 + kc];
                let epilogue = Epilogue {
                    accumulate: k0 > 0,
                    finish: last_k.then(|| (w.bias_line(j), relu)),
                };
                for (p, i) in (i0..i1).step_by(mr).enumerate() {
                    let rows = mr.min(i1 - i);
                    let c_start = i * ldc + col0;
                    let c_end = (i + rows - 1) * ldc + col0 + cols;
                    let mut tile = Tile {
                        a: &packed[p * mr * kc..(p + 1) * mr * kc],
                        b,
                        c: &mut c[c_start..c_end],
                        ldc,
                        cols,
                        rows,
                        epilogue,
                    };
                    run_tile(isa, &mut tile);
                }
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

/// Packs rows `rows` × columns `ks` of `A` into micro-panels of `mr` rows: panel `p` holds, for
/// each `k`, the values of rows `p·mr..p·mr + mr` (zero past the last row).
fn pack_a(a: &[f32], lda: usize, rows: Range<usize>, ks: Range<usize>, mr: usize, out: &mut [f32]) {
    match mr {
        4 => pack_panels::<4>(a, lda, rows, ks, out),
        6 => pack_panels::<6>(a, lda, rows, ks, out),
        _ => unreachable!("micro-kernels have 4 or 6 rows"),
    }
}

fn pack_panels<const MR: usize>(
    a: &[f32],
    lda: usize,
    rows: Range<usize>,
    ks: Range<usize>,
    out: &mut [f32],
) {
    static ZEROS: [f32; KC] = [0.0; KC];
    let kc = ks.len();
    for (p, i) in rows.clone().step_by(MR).enumerate() {
        let src: [&[f32]; MR] = std::array::from_fn(|r| {
            let row = i + r;
            if row < rows.end {
                &a[row * lda + ks.start..row * lda + ks.end]
            } else {
                &ZEROS[..kc]
            }
        });
        // `k` outer: the stores run sequentially through the panel, the loads along MR rows.
        let panel = &mut out[p * MR * kc..(p + 1) * MR * kc];
        for (kk, dst) in panel.chunks_exact_mut(MR).enumerate() {
            for (d, row) in dst.iter_mut().zip(&src) {
                *d = row[kk];
            }
        }
    }
}

/// As [`pack_a`] for a transposed `A` (`a[kk * lda + i]`): each `k` contributes `mr`
/// consecutive values.
fn pack_a_transposed(
    a: &[f32],
    lda: usize,
    rows: Range<usize>,
    ks: Range<usize>,
    mr: usize,
    out: &mut [f32],
) {
    match mr {
        4 => pack_columns::<4>(a, lda, rows, ks, out),
        6 => pack_columns::<6>(a, lda, rows, ks, out),
        _ => unreachable!("micro-kernels have 4 or 6 rows"),
    }
}

fn pack_columns<const MR: usize>(
    a: &[f32],
    lda: usize,
    rows: Range<usize>,
    ks: Range<usize>,
    out: &mut [f32],
) {
    let kc = ks.len();
    for (p, i) in rows.clone().step_by(MR).enumerate() {
        let live = MR.min(rows.end - i);
        let panel = &mut out[p * MR * kc..(p + 1) * MR * kc];
        for (dst, kk) in panel.chunks_exact_mut(MR).zip(ks.clone()) {
            let src = &a[kk * lda + i..kk * lda + i + live];
            match <&[f32; MR]>::try_from(src) {
                Ok(full) => dst.copy_from_slice(full),
                Err(_) => {
                    dst[..live].copy_from_slice(src);
                    dst[live..].fill(0.0);
                }
            }
        }
    }
}

fn run_tile(isa: Isa, tile: &mut Tile<'_>) {
    match isa {
        Isa::Portable => super::gemm_portable::micro(tile),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `gemm_bias_act` asserted that this CPU supports AVX2 and FMA.
        Isa::Avx2Fma => unsafe { super::gemm_avx2::micro(tile) },
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2Fma => unreachable!("is_supported() is false off x86-64"),
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
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Re-packing (plain and transposed) into a matrix of another shape gives exactly
        /// what a fresh `pack` of the same weights gives.
        #[test]
        fn repack_matches_pack(n in 1usize..40, k in 1usize..40, n0 in 1usize..40, k0 in 1usize..40, seed: u64) {
            let mut rng = crate::rng::Rng::new(seed);
            let w: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let fresh = PackedMatrix::pack(&w, &bias, n, k);
            let mut reused = PackedMatrix::pack(&vec![1.0; n0 * k0], &vec![1.0; n0], n0, k0);
            reused.repack(&w, &bias, n, k);
            prop_assert_eq!(&fresh.panels, &reused.panels);
            prop_assert_eq!(&fresh.bias, &reused.bias);
            // wᵀ stored row-major is [k][n]; packing it transposed must give w again.
            let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
            reused.repack_transposed(&wt, n, k);
            let unbiased = PackedMatrix::pack(&w, &vec![0.0; n], n, k);
            prop_assert_eq!(&unbiased.panels, &reused.panels);
            prop_assert_eq!(&unbiased.bias, &reused.bias);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn matches_reference(
            m in 1usize..40, k in 1usize..600, n in 1usize..70,
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
        }
    }
}
