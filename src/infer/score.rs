use super::BLOCK_ROWS;
use super::int8::{Int8Buffers, int8_layer};
use super::model::Model;
use super::scratch::{Scratch, ScratchPool};
use crate::batch::Columns;
use crate::batch::ScoreError;
use crate::kernels::dot::dot;
use crate::kernels::fm::fm_pairwise;
use crate::kernels::gather::{Tables, gather};
use crate::kernels::gemm::gemm_bias_act;
use crate::kernels::gemv::gemv_bias_act;
use crate::kernels::rows::{Rows, TableRows};
use rayon::prelude::*;
use std::ops::Range;

/// Smallest chunk of rows worth a task of its own in [`score_parallel`].
const MIN_CHUNK: usize = 48;

/// Blocks of at most this many rows go through the one-row GEMV kernel.
const GEMV_ROWS: usize = 1;

/// Scores every row of `batch` into `out[..rows]`. Performs no heap allocation when it succeeds.
///
/// The whole batch is validated first (at least one row, column count and kinds, row counts,
/// ids below each field's vocabulary, finite values, well-formed offsets); on error nothing is
/// written. The one error found after scoring is [`ScoreError::NonFiniteScore`].
pub fn score<C: Columns + ?Sized>(
    model: &Model,
    batch: &C,
    scratch: &mut Scratch,
    out: &mut [f32],
) -> Result<(), ScoreError> {
    let rows = validate(model, batch, out.len())?;
    if !scratch.fits(model) {
        return Err(ScoreError::ScratchMismatch);
    }
    score_range(model, batch, 0..rows, scratch, &mut out[..rows]);
    check_scores(&out[..rows])
}

/// The error for the first NaN score, if any.
pub(crate) fn check_scores(out: &[f32]) -> Result<(), ScoreError> {
    match out.iter().position(|s| s.is_nan()) {
        Some(row) => Err(ScoreError::NonFiniteScore { row }),
        None => Ok(()),
    }
}

/// Like [`score`], splitting the batch over the current rayon pool, one [`Scratch`] of `pool`
/// per worker. Results are identical to [`score`] (rows never interact).
pub fn score_parallel<C: Columns + Sync + ?Sized>(
    model: &Model,
    batch: &C,
    pool: &ScratchPool,
    out: &mut [f32],
) -> Result<(), ScoreError> {
    let rows = validate(model, batch, out.len())?;
    if !pool.fits(model) {
        return Err(ScoreError::ScratchMismatch);
    }
    // Four chunks per thread so that a core slowed by a neighbour does not hold up the rest,
    // of nearly equal size (a multiple of the GEMM kernel's tile height rather than of the
    // block). Any remainder, even one row, scores bit for bit as inside a larger block: the
    // one-row GEMV sums exactly like the GEMM.
    let threads = rayon::current_num_threads();
    let chunk = rows
        .div_ceil(threads * 4)
        .max(MIN_CHUNK)
        .next_multiple_of(model.isa().tile_rows());
    out[..rows]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, out)| {
            let start = i * chunk;
            let mut scratch = pool.get();
            score_range(model, batch, start..start + out.len(), &mut scratch, out);
        });
    check_scores(&out[..rows])
}

pub(crate) fn validate<C: Columns + ?Sized>(
    model: &Model,
    batch: &C,
    out_len: usize,
) -> Result<usize, ScoreError> {
    crate::batch::validate(model.spec(), batch, out_len)
}

/// Scores validated rows `range` into `out` (`out.len() == range.len()`), block by block.
fn score_range<C: Columns + ?Sized>(
    model: &Model,
    batch: &C,
    range: Range<usize>,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    for (block, out) in range.step_by(BLOCK_ROWS).zip(out.chunks_mut(BLOCK_ROWS)) {
        score_block(model, batch, block..block + out.len(), scratch, out);
    }
}

/// Gathers the MLP input of rows `rows` into `scratch.x` (one row of
/// [`ModelSpec::mlp_input_width`](crate::ModelSpec::mlp_input_width) per sample: the embedded
/// fields' vectors, then the dense values) and their first-order + FM terms (plus the global
/// bias) into `scratch.fm`: the shared gather ([`gather`]), then the FM pairwise term over the
/// embedded fields of each row by this instruction set's kernel.
pub(crate) fn gather_block<C: Columns + ?Sized>(
    model: &Model,
    batch: &C,
    rows: Range<usize>,
    scratch: &mut Scratch,
) {
    let (d, width, embedded) = (model.dim, model.input_width, model.embedded_fields);
    let n = rows.len();
    let x: &mut [f32] = &mut bytemuck::cast_slice_mut(&mut scratch.x)[..n * width];
    let fm = &mut scratch.fm[..n];
    fm.fill(model.bias);
    // One gather compiled per row format: an f32 table reads rows in place.
    fn tables<R: Rows>(model: &Model, embedding: R) -> Tables<'_, R> {
        Tables {
            fields: &model.fields,
            embedding,
            linear: model.linear(),
            dim: model.dim,
            width: model.input_width,
        }
    }
    match model.table() {
        TableRows::F32(t) => gather(tables(model, t), batch, rows, x, fm),
        TableRows::Encoded(t) => gather(tables(model, t), batch, rows, x, fm),
    }
    if embedded > 0 {
        for (b, fm) in fm.iter_mut().enumerate() {
            let row = &x[b * width..][..embedded * d];
            *fm += fm_pairwise(model.isa(), row, embedded, d);
        }
    }
}

fn score_block<C: Columns + ?Sized>(
    model: &Model,
    batch: &C,
    rows: Range<usize>,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let n = rows.len();
    let width = model.input_width;
    gather_block(model, batch, rows.clone(), scratch);
    let Scratch {
        x,
        h,
        fm,
        nonzeros,
        pack,
        quantized,
        row_quant,
        row,
        ..
    } = scratch;
    let x: &[f32] = &bytemuck::cast_slice(x)[..n * width];
    let [h0, h1] = h;
    let (h0, h1): (&mut [f32], &mut [f32]) =
        (bytemuck::cast_slice_mut(h0), bytemuck::cast_slice_mut(h1));
    let hidden = &model.spec().hidden;
    let mut in_width = width;
    for (i, &out_width) in hidden.iter().enumerate() {
        // Ping-pong: x → h0 → h1 → h0 ...
        let (input, output): (&[f32], &mut [f32]) = match (i, i % 2) {
            (0, _) => (x, &mut h0[..]),
            (_, 1) => (&h0[..], &mut h1[..]),
            _ => (&h1[..], &mut h0[..]),
        };
        if let Some(int8) = &model.int8 {
            // One code for every block height: a row is a one-row tile.
            let buffers = Int8Buffers {
                quantized,
                row_quant,
                row,
            };
            int8_layer(
                int8,
                i,
                batch,
                rows.clone(),
                input,
                in_width,
                buffers,
                output,
                out_width,
            );
        } else if n <= GEMV_ROWS {
            // Row by row: see `kernels::gemv` for why one row is not a small GEMM.
            let layer = &model.layers[i];
            for r in 0..n {
                nonzeros.gather(&input[r * in_width..(r + 1) * in_width]);
                let y = &mut output[r * out_width..(r + 1) * out_width];
                gemv_bias_act(model.isa(), nonzeros, layer, true, y);
            }
        } else {
            let layer = &model.layers[i];
            gemm_bias_act(
                model.isa(),
                input,
                in_width,
                n,
                layer,
                true,
                output,
                out_width,
                pack,
            );
        }
        in_width = out_width;
    }
    let last: &[f32] = match (hidden.len(), hidden.len() % 2) {
        (0, _) => x,
        (_, 1) => h0,
        _ => h1,
    };
    for (r, (o, &fm)) in out.iter_mut().zip(fm.iter()).enumerate() {
        let row = &last[r * in_width..(r + 1) * in_width];
        let deep = dot(model.isa(), row, &model.out_weight) + model.out_bias;
        *o = model.output.activate(model.clamp, deep + fm);
    }
}
