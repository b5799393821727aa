use super::BLOCK_ROWS;
use super::model::{FieldPlan, Model};
use super::scratch::{Scratch, ScratchPool};
use crate::batch::ScoreError;
use crate::batch::{Column, Columns};
use crate::kernels::dot::dot;
use crate::kernels::fm::fm_pairwise;
use crate::kernels::gemm::gemm_bias_act;
use crate::kernels::gemv::gemv_bias_act;
use crate::kernels::prefetch::{copy_row, prefetch};
use crate::spec::{FieldKind, Pooling};
use rayon::prelude::*;
use std::ops::Range;

/// Smallest chunk of rows worth a task of its own in [`score_parallel`].
const MIN_CHUNK: usize = 48;

/// Samples ahead whose table rows are prefetched during the gather.
const PREFETCH_AHEAD: usize = 8;

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

/// Gathers the embeddings of rows `rows` into `scratch.x` (one row of `fields × D` per
/// sample) and their first-order + FM terms (plus the global bias) into `scratch.fm`.
pub(crate) fn gather_block<C: Columns + ?Sized>(
    model: &Model,
    batch: &C,
    rows: Range<usize>,
    scratch: &mut Scratch,
) {
    let (d, fields) = (model.dim, model.fields.len());
    let width = d * fields;
    let n = rows.len();
    let x: &mut [f32] = &mut bytemuck::cast_slice_mut(&mut scratch.x)[..n * width];
    let fm = &mut scratch.fm[..n];
    fm.fill(model.bias);
    let (table, linear) = (model.embedding(), model.linear());
    if n <= PREFETCH_AHEAD {
        // Too few rows for the per-field look-ahead below: ask for every row up front so the
        // misses of all fields overlap.
        for (f, plan) in model.fields.iter().enumerate() {
            if let Column::Categorical(ids) = batch.column(f) {
                for &id in &ids[rows.clone()] {
                    let r = plan.row_offset as usize + id as usize;
                    prefetch(table, r * d);
                    prefetch(linear, r);
                }
            }
        }
    }
    for (f, plan) in model.fields.iter().enumerate() {
        let column = batch.column(f);
        gather_field(
            plan,
            column,
            rows.clone(),
            table,
            linear,
            d,
            x,
            width,
            f,
            fm,
        );
    }
    for (b, fm) in fm.iter_mut().enumerate() {
        *fm += fm_pairwise(model.isa(), &x[b * width..(b + 1) * width], fields, d);
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
    let width = model.dim * model.fields.len();
    gather_block(model, batch, rows, scratch);
    let Scratch {
        x,
        h,
        fm,
        nonzeros,
        pack,
        ..
    } = scratch;
    let x: &[f32] = &bytemuck::cast_slice(x)[..n * width];
    let [h0, h1] = h;
    let (h0, h1): (&mut [f32], &mut [f32]) =
        (bytemuck::cast_slice_mut(h0), bytemuck::cast_slice_mut(h1));
    let mut input_is_x = true;
    let mut in_width = width;
    for (i, layer) in model.layers.iter().enumerate() {
        // Ping-pong: x → h0 → h1 → h0 ...
        let (input, output): (&[f32], &mut [f32]) = match (input_is_x, i % 2) {
            (true, _) => (x, &mut h0[..]),
            (false, 1) => (&h0[..], &mut h1[..]),
            (false, _) => (&h1[..], &mut h0[..]),
        };
        if n <= GEMV_ROWS {
            // Row by row: see `kernels::gemv` for why one row is not a small GEMM.
            for r in 0..n {
                nonzeros.gather(&input[r * in_width..(r + 1) * in_width]);
                let y = &mut output[r * layer.n()..(r + 1) * layer.n()];
                gemv_bias_act(model.isa(), nonzeros, layer, true, y);
            }
        } else {
            gemm_bias_act(
                model.isa(),
                input,
                in_width,
                n,
                layer,
                true,
                output,
                layer.n(),
                pack,
            );
        }
        input_is_x = false;
        in_width = layer.n();
    }
    let last: &[f32] = match (model.layers.len(), model.layers.len() % 2) {
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

/// Writes field `f` of every row of the block into `x` and adds its first-order term to `fm`.
#[allow(clippy::too_many_arguments)]
fn gather_field(
    plan: &FieldPlan,
    column: Column<'_>,
    rows: Range<usize>,
    table: &[f32],
    linear: &[f32],
    d: usize,
    x: &mut [f32],
    width: usize,
    f: usize,
    fm: &mut [f32],
) {
    // Ids were validated below the field's vocabulary, so every row index below is inside the
    // table (validated against the spec when the file was opened).
    let base = plan.row_offset as usize;
    let dst_rows = x
        .chunks_exact_mut(width)
        .map(|r| &mut r[f * d..(f + 1) * d]);
    match column {
        Column::Categorical(ids) => {
            let ids = &ids[rows];
            for (i, ((dst, &id), fm)) in dst_rows.zip(ids).zip(fm.iter_mut()).enumerate() {
                if let Some(&ahead) = ids.get(i + PREFETCH_AHEAD) {
                    let r = base + ahead as usize;
                    prefetch(table, r * d);
                    prefetch(linear, r);
                }
                let r = base + id as usize;
                copy_row(dst, &table[r * d..(r + 1) * d]);
                *fm += linear[r];
            }
        }
        Column::Numeric(values) => {
            let row = &table[base * d..(base + 1) * d];
            for ((dst, &v), fm) in dst_rows.zip(&values[rows]).zip(fm.iter_mut()) {
                for (o, &e) in dst.iter_mut().zip(row) {
                    *o = e * v;
                }
                *fm += linear[base] * v;
            }
        }
        Column::MultiHot { ids, offsets } => {
            let mean = matches!(
                plan.kind,
                FieldKind::MultiHot {
                    pooling: Pooling::Mean,
                    ..
                }
            );
            for ((dst, r), fm) in dst_rows.zip(rows).zip(fm.iter_mut()) {
                let list = &ids[offsets[r]..offsets[r + 1]];
                dst.fill(0.0);
                let mut lin = 0.0;
                for &id in list {
                    let row = base + id as usize;
                    for (o, &e) in dst.iter_mut().zip(&table[row * d..(row + 1) * d]) {
                        *o += e;
                    }
                    lin += linear[row];
                }
                if mean && !list.is_empty() {
                    let scale = 1.0 / list.len() as f32;
                    dst.iter_mut().for_each(|o| *o *= scale);
                    lin *= scale;
                }
                *fm += lin;
            }
        }
    }
}
