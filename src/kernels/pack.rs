//! Packing for the GEMM and GEMV kernels: the weights of a layer packed once into panels of
//! [`NR`] = 16 output columns ([`PackedMatrix`]: panel `j` holds, for every `k`, the 16 weights
//! of columns `16j..16j+16` in one 64-byte [`Line`], zero-padded past `n`), blocks of the left
//! operand `A` packed per call into micro-panels of a kernel's `MR` rows (`pack_rows`,
//! `pack_columns`, into a [`PackBuffer`]), and the `Tile` a micro-kernel computes with the
//! epilogue that stores it (`store_tile`), and the `PairTile` of kernels that compute two
//! panels' tiles at once.
//!
//! The loop nest ([`super::gemm`]) and the micro-kernels (`super::avx2`, `super::portable`)
//! both use this file and not each other.

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

    /// Re-packs row-major `weight[n][k]` and `bias[n]` into this matrix, reusing its memory.
    /// The trainer calls it only when its weights are replaced wholesale (a new trainer, early
    /// stopping restoring the best weights, resuming from a checkpoint); after each step it
    /// packs panels as their weights are updated, inside the weight-gradient GEMM
    /// (`train/fused.rs`) or, with gradient clipping, 16 rows at a time through
    /// [`PackedMatrix::panels_for`] and [`fill_panel`].
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
/// [`super::gemm::gemm_bias_act`] never allocates.
#[derive(Debug, Clone)]
pub struct PackBuffer(Vec<Line>);

impl PackBuffer {
    /// A buffer for any GEMM shape.
    pub fn new() -> Self {
        PackBuffer(vec![Line::default(); MC * KC / NR])
    }

    /// The buffer's lines, for the loop nest to pack into.
    pub(crate) fn lines_mut(&mut self) -> &mut [Line] {
        &mut self.0
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

/// Two adjacent 16-column tiles computed together (`GemmKernel::PAIRS`): the same rows, packed
/// `A` micro-panel and `k` block, over the columns of panels `j` and `j + 1`.
pub(crate) struct PairTile<'a> {
    /// A packed micro-panel of `A`, as in [`Tile`].
    pub a: &'a [f32],
    /// The two panels' lines of the current `k` block.
    pub b: [&'a [Line]; 2],
    /// `C` rows, each `ldc` apart, starting at the first panel's first column.
    pub c: &'a mut [f32],
    pub ldc: usize,
    /// Valid columns, 17 to 32 (the second panel's are `16..cols`).
    pub cols: usize,
    pub rows: usize,
    /// Add to what `C` already holds (a later `k` block) instead of overwriting it.
    pub accumulate: bool,
    /// On the last `k` block: each panel's bias line, and whether to apply ReLU.
    pub finish: Option<([&'a [f32; NR]; 2], bool)>,
}

/// Packs rows `rows` × columns `ks` of a row-major `A` (`a[i * lda + kk]`) into micro-panels of
/// `MR` rows: panel `p` holds, for each `k`, the values of rows `p·MR..p·MR + MR` (zero past
/// the last row).
pub(crate) fn pack_rows<const MR: usize>(
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

/// As [`pack_rows`] for an `A` stored transposed (`a[kk * lda + i]`): each `k` contributes `MR`
/// consecutive values.
pub(crate) fn pack_columns<const MR: usize>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
}
