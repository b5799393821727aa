//! int8 data for the int8 MLP ([`super::qgemm`]): a layer's weights quantized per output
//! column and packed for the integer kernels ([`QuantizedMatrix`]), and rows of activations
//! quantized per row ([`quantize_rows`]).
//!
//! **The arithmetic.** A weight column `o` is stored as `q_w[o][k] = round(w[o][k] / s_o)`
//! with the step `s_o` of `column_step` (8 bits of `max_k |w[o][k]|` where the pair rule
//! below allows). An activation row `x` is stored as
//! `q_x[k] = clamp(round(x[k] / s_x) + z_x, 0, 255)` with `s_x = (hi − lo) / 255` over
//! `lo = min(0, min x)`, `hi = max(0, max x)` and zero point `z_x = round(−lo / s_x)`, so that
//! 0 (padding, a ReLU's zeros) is exact. Then
//! `y[o] = s_x·s_o·(Σ_k q_x[k]·q_w[o][k] − z_x·Σ_k q_w[o][k]) + b[o]`, the integer sum exact
//! in i32.
//!
//! **The pair rule: 8-bit weights that cannot saturate.** AVX2's `vpmaddubsw` multiplies u8
//! by s8 and adds adjacent pairs (`k = 2i, 2i + 1` of a column) into an i16 *with
//! saturation*. With activations in `0..=255`, a pair cannot saturate when
//! `|q_w[2i]| + |q_w[2i + 1]| ≤ 128` ([`PAIR_MAX`]): `255·128 = 32640 ≤ 32767`. So a column's
//! step is the larger of `max |w| / 127` and `max (|w[2i]| + |w[2i + 1]|) / 128`: 8 bits
//! unless two large weights sit side by side, and never coarser than 7 bits (`max / 64`).
//! Rounding can still carry a pair one past 128 (both halves on a tie); the one rounded up
//! furthest then steps back, which keeps every weight within half a step. So every
//! instruction set (scalar, AVX2, AVX-VNNI, AVX-512 VNNI, AMX) forms the same exact integer
//! sums, and int8 layer outputs are bit-identical across them.
//!
//! Measured on the seven imported fixtures (`tests/interop_frameworks.rs`), against 7-bit
//! weights (`±63`, the earlier way to keep `vpmaddubsw` exact): the mean score error fell on
//! six of them, by 18–32% (RecBole's rose 4%), and the worst fell on five, by up to 33%
//! (torchrec's 1.11e-2 to 7.8e-3, RecBole's 7.6e-3 to 5.1e-3). FBGEMM's `reduce_range` takes
//! the bit from the activations instead; a per-row activation range is the coarser of the
//! two, so that was worse still.
//!
//! **Depth bound.** Over a pair, `|q_x·q_w| ≤ 255·128`, so
//! `|Σ q_x·q_w| + |z_x·Σ q_w| ≤ 255·128·(k + 1)`, which fits an i32 for `k ≤` [`MAX_DEPTH`];
//! the spec refuses an int8 MLP with a wider input.

/// Weights of one `k` group in a panel: 4 consecutive `k` of 16 columns, column-major within
/// the line (`line[4·c + t]` is column `c` at `k = 4·g + t`): the layout of `vpdpbusd`, whose
/// i32 lane `c` sums the four byte products at `4c..4c + 4`.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
pub struct QLine(pub [i8; 64]);

impl Default for QLine {
    fn default() -> Self {
        QLine([0; 64])
    }
}

/// Columns per panel (as the f32 kernels' [`super::pack::NR`]).
pub const QNR: usize = 16;
/// `k` values per group (one i32 lane of bytes).
pub const QK: usize = 4;
/// Largest input width of an int8 layer: the integer sums of the epilogue stay inside an i32
/// (`255·128·65537 < 2³¹`; the spec refuses wider ones).
pub const MAX_DEPTH: usize = crate::spec::MAX_INT8_DEPTH;
/// Largest quantized activation (8 bits: see the module documentation).
pub const ACT_MAX: u8 = 255;
/// Largest weight magnitude (symmetric, 8 bits: −127..=127; see the module documentation).
pub const WEIGHT_MAX: i8 = 127;
/// Largest `|q_w[2i]| + |q_w[2i + 1]|` of a column's adjacent pair (the pair rule in the
/// module documentation: `255 · PAIR_MAX` fits an i16).
pub const PAIR_MAX: i32 = 128;

/// A layer's weights `[n, k]` quantized per output column and packed into 16-column panels of
/// `k` groups ([`QLine`]), with per-column scales, column sums (for the activations' zero
/// point) and the f32 bias, each padded to a multiple of 16 columns.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedMatrix {
    k: usize,
    n: usize,
    /// `panels · groups` lines: panel `j` is `lines[j·groups..(j + 1)·groups]`.
    lines: Vec<QLine>,
    scale: Vec<f32>,
    column_sum: Vec<i32>,
    bias: Vec<f32>,
}

impl QuantizedMatrix {
    /// Quantizes and packs row-major `weight[n][k]` with `bias[n]`.
    ///
    /// # Panics
    /// If `weight.len() != n * k`, `bias.len() != n` or `k > MAX_DEPTH` (callers pass validated
    /// sections of a spec that allows int8).
    pub fn quantize(weight: &[f32], bias: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k, "weight is not n × k");
        assert_eq!(bias.len(), n, "bias is not n long");
        assert!(k <= MAX_DEPTH, "int8 layer deeper than {MAX_DEPTH}");
        let (panels, groups) = (n.div_ceil(QNR), k.div_ceil(QK));
        let padded = panels * QNR;
        let mut lines = vec![QLine::default(); panels * groups];
        let mut scale = vec![0.0; padded];
        let mut column_sum = vec![0; padded];
        let mut padded_bias = vec![0.0; padded];
        padded_bias[..n].copy_from_slice(bias);
        for o in 0..n {
            let row = &weight[o * k..(o + 1) * k];
            let (j, c) = (o / QNR, o % QNR);
            let step = column_step(row);
            if step == 0.0 {
                continue; // scale 0, weights 0: the column is its bias.
            }
            scale[o] = step;
            let inverse = 1.0 / step;
            for (kk, pair) in row.chunks(2).enumerate() {
                for (t, q) in quantize_pair(pair, inverse).into_iter().enumerate() {
                    let kk = 2 * kk + t;
                    if kk < k {
                        lines[j * groups + kk / QK].0[QK * c + kk % QK] = q;
                        column_sum[o] += i32::from(q);
                    }
                }
            }
        }
        QuantizedMatrix {
            k,
            n,
            lines,
            scale,
            column_sum,
            bias: padded_bias,
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

    /// `k` groups of 4 per panel (the stride of an activation row in [`quantize_rows`] is
    /// `4 · groups`).
    pub fn groups(&self) -> usize {
        self.k.div_ceil(QK)
    }

    /// Number of 16-column panels.
    pub fn panels(&self) -> usize {
        self.n.div_ceil(QNR)
    }

    /// Panel `j`'s lines, one per `k` group.
    pub(crate) fn panel(&self, j: usize) -> &[QLine] {
        let g = self.groups();
        &self.lines[j * g..(j + 1) * g]
    }

    /// The quantized weight of column `o` at `kk` (for references and tests).
    pub fn weight(&self, o: usize, kk: usize) -> i8 {
        self.lines[(o / QNR) * self.groups() + kk / QK].0[QK * (o % QNR) + kk % QK]
    }

    /// Per-column scales (padded with zeros to whole panels).
    pub fn scales(&self) -> &[f32] {
        &self.scale
    }

    /// Per-column sums of the quantized weights (padded with zeros).
    pub fn column_sums(&self) -> &[i32] {
        &self.column_sum
    }

    /// The bias (padded with zeros).
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// Bytes of packed weights (what batch-1 latency reads).
    pub fn bytes(&self) -> usize {
        self.lines.len() * std::mem::size_of::<QLine>()
    }
}

/// The quantization step of a column: the larger of `max |w| / 127` (8 bits) and
/// `max (|w[2i]| + |w[2i + 1]|) / 128`, so that no pair's scaled magnitudes sum past the pair
/// rule's 128 before rounding (the module documentation).
fn column_step(row: &[f32]) -> f32 {
    let max = row.iter().fold(0.0f32, |m, w| m.max(w.abs()));
    let pair = row
        .chunks(2)
        .map(|p| p.iter().map(|w| w.abs()).sum::<f32>())
        .fold(0.0f32, f32::max);
    (max / f32::from(WEIGHT_MAX)).max(pair / PAIR_MAX as f32)
}

/// A column's adjacent weights `pair` (one or two) times `inverse` (`1 / column_step`),
/// rounded to the nearest integers, then brought within the pair rule (`|q₀| + |q₁| ≤`
/// [`PAIR_MAX`]) by lowering the magnitude rounded furthest above its value, one step at a
/// time: the integer pair nearest to the values that keeps the rule. With the column's step
/// the scaled magnitudes sum to at most 128, so at most one step is needed, on a tie.
fn quantize_pair(pair: &[f32], inverse: f32) -> [i8; 2] {
    let limit = f32::from(WEIGHT_MAX);
    let scaled: [f32; 2] = std::array::from_fn(|t| pair.get(t).map_or(0.0, |w| w * inverse));
    let mut q = scaled.map(|v| v.round().clamp(-limit, limit) as i32);
    while q[0].abs() + q[1].abs() > PAIR_MAX {
        // How far each magnitude sits above its value: lowering the larger costs the least
        // squared error (`1 − 2·over`), so the greedy steps end at the nearest valid pair.
        let over = |t: usize| q[t].abs() as f32 - scaled[t].abs();
        let t = usize::from(over(1) > over(0));
        q[t] -= q[t].signum();
    }
    q.map(|v| v as i8)
}

/// How one activation row was quantized: `x ≈ scale · (q − zero)`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RowQuant {
    /// Step between quantized values (0 for an all-zero row).
    pub scale: f32,
    /// The quantized value of 0.
    pub zero: i32,
}

/// Quantizes `rows` rows of `x` (`width` apart, `width` values each) into `q` (`stride` bytes
/// apart, `stride ≥ width`, a multiple of 4; the bytes past `width` are set to the zero point,
/// which the packed weights' zero padding cancels), one [`RowQuant`] per row into `params`.
///
/// Plain code with one result on every CPU (rounding by adding and subtracting 1.5·2²³, min and
/// max lane by lane): each int8 path compiles it with its own instruction set
/// ([`super::qgemm`]), so it is inlined wherever it is called.
///
/// # Panics
/// If the buffers are shorter than `rows` rows, or `stride` is not a multiple of 4 at least
/// `width`.
#[inline(always)]
pub fn quantize_rows(
    x: &[f32],
    width: usize,
    rows: usize,
    q: &mut [u8],
    stride: usize,
    params: &mut [RowQuant],
) {
    quantize_rows_with(x, width, rows, q, stride, params, row_range);
}

/// [`quantize_rows`] with `range` computing [`row_range`] (an instruction set's own).
#[inline(always)]
pub(crate) fn quantize_rows_with(
    x: &[f32],
    width: usize,
    rows: usize,
    q: &mut [u8],
    stride: usize,
    params: &mut [RowQuant],
    range: impl Fn(&[f32]) -> (f32, f32) + Copy,
) {
    assert!(
        stride >= width && stride.is_multiple_of(QK),
        "bad quantized row stride"
    );
    assert!(x.len() >= rows * width && q.len() >= rows * stride && params.len() >= rows);
    for r in 0..rows {
        let row = &x[r * width..(r + 1) * width];
        let out = &mut q[r * stride..(r + 1) * stride];
        params[r] = quantize_row(row, out, range);
    }
}

/// Adding then subtracting this rounds an f32 in `[0, 2²²)` to the nearest integer (ties to
/// even), which then sits in the low mantissa bits of the sum: no libm call, no float-to-int
/// conversion, and the same on every instruction set.
const ROUNDER: f32 = 12_582_912.0;

/// `v` (in `[0, 255]`) rounded to the nearest integer, ties to even.
#[inline(always)]
fn round_small(v: f32) -> u8 {
    ((v + ROUNDER).to_bits() & 0xff) as u8
}

/// Lanes of the min/max scan (any count gives the same result; 16 fills a zmm).
const LANES: usize = 16;

/// `(min(0, min row), max(0, max row))` over the finite values of `row`, in plain code (the
/// scalar and AVX2 paths'; AVX-512 has its own, with the same result: the minimum and maximum
/// of a set do not depend on the order they are taken in).
#[inline(always)]
pub fn row_range(row: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = ([0.0f32; LANES], [0.0f32; LANES]);
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for i in 0..LANES {
            lo[i] = if chunk[i] < lo[i] { chunk[i] } else { lo[i] };
            hi[i] = if chunk[i] > hi[i] { chunk[i] } else { hi[i] };
        }
    }
    for (i, &v) in chunks.remainder().iter().enumerate() {
        lo[i] = if v < lo[i] { v } else { lo[i] };
        hi[i] = if v > hi[i] { v } else { hi[i] };
    }
    let lo = lo.iter().fold(0.0f32, |m, &v| if v < m { v } else { m });
    let hi = hi.iter().fold(0.0f32, |m, &v| if v > m { v } else { m });
    (lo, hi)
}

/// One row of [`quantize_rows`], with `range` computing [`row_range`].
#[inline(always)]
fn quantize_row(row: &[f32], out: &mut [u8], range: impl Fn(&[f32]) -> (f32, f32)) -> RowQuant {
    let (lo, hi) = range(row);
    if hi == lo && row.iter().all(|&v| v == 0.0) {
        out.fill(0);
        return RowQuant::default();
    }
    let levels = f32::from(ACT_MAX);
    let scale = (hi - lo) / levels;
    let inverse = levels / (hi - lo);
    let zero = round_small((-lo * inverse).clamp(0.0, levels));
    let shift = f32::from(zero);
    let mut finite = true;
    for (o, &v) in out.iter_mut().zip(row) {
        // `max`/`min` written as selects: no NaN handling, so they vectorize.
        let t = v * inverse + shift;
        finite &= !t.is_nan();
        let t = if t > 0.0 { t } else { 0.0 };
        let t = if t < levels { t } else { levels };
        *o = round_small(t);
    }
    out[row.len()..].fill(zero);
    RowQuant {
        // A NaN or infinite input must not quantize to numbers: a NaN scale makes the row's
        // outputs NaN, as f32 arithmetic would, and the scorer reports the score.
        scale: if finite && scale.is_finite() {
            scale
        } else {
            f32::NAN
        },
        zero: i32::from(zero),
    }
}
