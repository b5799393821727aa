//! The embedding gather, written once for the scorer (`infer`) and the trainer (`train`): the
//! rows of a block of samples are looked up by id in the stacked embedding table, pooled for
//! multi-hot fields, written side by side as the MLP input, and their first-order terms added
//! to a per-sample sum. Random table rows miss every cache, so the rows a few samples ahead are
//! prefetched ([`prefetch`](super::prefetch)).
//!
//! What is not here is the FM pairwise term, which each caller adds over the gathered rows its
//! own way: the scorer with the SIMD kernel of its instruction set ([`fm`](super::fm)), the
//! trainer with a scalar loop that also keeps the per-sample sum of the field embeddings
//! `s = Σ_f e_f` for the backward pass (the FM gradient of `e_f` is `s − e_f`). The two sum in
//! different orders, so one shared term would change the bits of one of them.

use super::prefetch::prefetch;
use super::rows::{F32Rows, Rows};
use crate::batch::{Column, Columns};
use crate::spec::{FieldKind, MAX_EMBEDDING_DIM, ModelSpec, Pooling};
use std::ops::Range;

/// Samples ahead whose table rows are prefetched, within one field.
const PREFETCH_AHEAD: usize = 8;

/// What the gather needs to know about one field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldPlan {
    pub kind: FieldKind,
    /// First row of the field in the stacked table (of its owner, for a shared table).
    pub row_offset: u64,
    /// Where the field's values start in a row of the MLP input
    /// ([`ModelSpec::input_offsets`]).
    pub input_offset: usize,
}

impl FieldPlan {
    /// One plan per field of `spec`, in order.
    pub(crate) fn of(spec: &ModelSpec) -> Vec<FieldPlan> {
        spec.fields
            .iter()
            .zip(spec.row_offsets())
            .zip(spec.input_offsets())
            .map(|((f, row_offset), input_offset)| FieldPlan {
                kind: f.kind,
                row_offset,
                input_offset,
            })
            .collect()
    }
}

/// The tables a gather reads: the scorer's are the model file's map, the trainer's its
/// parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tables<'a, R: Rows> {
    /// The fields, in column order.
    pub fields: &'a [FieldPlan],
    /// The stacked embedding rows, `dim` values each, in the file's row format.
    pub embedding: R,
    /// The stacked first-order weights, one per row.
    pub linear: &'a [f32],
    /// The embedding dimension.
    pub dim: usize,
    /// The width of a row of the MLP input ([`ModelSpec::mlp_input_width`]).
    pub width: usize,
}

/// Gathers samples `rows` of `batch` (validated against the fields of `t`): field `f` of the
/// `i`-th sample goes to `x[i·W + s_f..]` (`W` = [`Tables::width`], `s_f` the field's
/// [`FieldPlan::input_offset`]; `x` holds `rows.len()` rows of `W`): `D` values for an embedded
/// field, one for a dense field. Its first-order term is added to `first_order[i]`, field after
/// field (the caller sets the starting value, the global bias). Field by field, and within a
/// field sample by sample.
///
/// The terms of a field, for a sample:
/// - categorical id `i`: row `e = E[o + i]`, term `w[o + i]` (`o` the field's first row);
/// - numeric value `v`: `e = E[o] · v`, term `w[o] · v`;
/// - dense value `v`: the value `v` itself, term `w[o] · v`;
/// - multi-hot list `l`, less its padding id: for sum and mean pooling
///   `e = (Σ_{i∈l} E[o + i]) · p`, summed in list order, with `p` the pooling weight
///   ([`Pooling::weight`](crate::spec::Pooling::weight): 1 for sum, `1/|l|` for mean, 1 for an
///   empty list); for max pooling the element-wise maximum of the rows (a NaN wins). The term is
///   the same pooling, by the field's `linear_pooling`, of the weights `w[o + i]`. A weight of
///   exactly 1 is not multiplied by: `v · 1 = v` exactly, so skipping it changes no bit (the
///   scorer's gather skipped it, the trainer's multiplied; `tests` checks the two agree bit for
///   bit).
pub(crate) fn gather<C: Columns + ?Sized, R: Rows>(
    t: Tables<'_, R>,
    batch: &C,
    rows: Range<usize>,
    x: &mut [f32],
    first_order: &mut [f32],
) {
    let width = t.width;
    debug_assert_eq!(x.len(), rows.len() * width);
    debug_assert_eq!(first_order.len(), rows.len());
    if rows.len() <= PREFETCH_AHEAD {
        // Too few rows for the per-field look-ahead below: ask for every row up front so the
        // misses of all fields overlap.
        for (f, plan) in t.fields.iter().enumerate() {
            if let Column::Categorical(ids) = batch.column(f) {
                for &id in &ids[rows.clone()] {
                    let r = plan.row_offset as usize + id as usize;
                    t.embedding.prefetch(r);
                    prefetch(t.linear, r);
                }
            }
        }
    }
    for (f, plan) in t.fields.iter().enumerate() {
        gather_field(t, plan, batch.column(f), rows.clone(), x, first_order);
    }
}

/// Writes the field of `plan` of every sample of `rows` into `x` and adds its first-order term
/// to `first_order` (see [`gather`]).
fn gather_field<R: Rows>(
    t: Tables<'_, R>,
    plan: &FieldPlan,
    column: Column<'_>,
    rows: Range<usize>,
    x: &mut [f32],
    first_order: &mut [f32],
) {
    let (d, width) = (t.dim, t.width);
    let (table, linear) = (t.embedding, t.linear);
    // One decoded row, for a table stored in a reduced-precision format (unused for f32).
    let mut buf = [0.0f32; MAX_EMBEDDING_DIM];
    let buf = &mut buf[..d];
    // Ids were validated below the field's vocabulary, so every row index below is inside the
    // table (the scorer's was checked against the spec when the file was opened, the trainer's
    // is built from it).
    let base = plan.row_offset as usize;
    let start = plan.input_offset;
    if let (Column::Numeric(values), FieldKind::Dense) = (column, plan.kind) {
        for ((dst, &v), fo) in x
            .chunks_exact_mut(width)
            .zip(&values[rows])
            .zip(first_order)
        {
            dst[start] = v;
            *fo += linear[base] * v;
        }
        return;
    }
    let dst_rows = x.chunks_exact_mut(width).map(|r| &mut r[start..start + d]);
    match (column, plan.kind) {
        (Column::Categorical(ids), _) => {
            let ids = &ids[rows];
            for (i, ((dst, &id), fo)) in dst_rows.zip(ids).zip(first_order).enumerate() {
                if let Some(&ahead) = ids.get(i + PREFETCH_AHEAD) {
                    let r = base + ahead as usize;
                    table.prefetch(r);
                    prefetch(linear, r);
                }
                let r = base + id as usize;
                table.load(r, dst);
                *fo += linear[r];
            }
        }
        (Column::Numeric(values), _) => {
            let row = table.row(base, buf);
            for ((dst, &v), fo) in dst_rows.zip(&values[rows]).zip(first_order) {
                for (o, &e) in dst.iter_mut().zip(row) {
                    *o = e * v;
                }
                *fo += linear[base] * v;
            }
        }
        (
            Column::MultiHot {
                ids,
                offsets,
                weights,
            },
            FieldKind::MultiHot {
                pooling,
                linear_pooling,
                padding,
                ..
            },
        ) => {
            let linear = F32Rows {
                data: linear,
                dim: 1,
            };
            for ((dst, r), fo) in dst_rows.zip(rows).zip(first_order) {
                let span = offsets[r]..offsets[r + 1];
                let mut lin = [0.0];
                // Two loops, so that an unweighted list pays nothing for weights.
                match weights {
                    None => {
                        let rows = ids[span]
                            .iter()
                            .filter(|&&id| Some(id) != padding)
                            .map(|&id| base + id as usize);
                        pool_rows(rows.clone(), pooling, table, dst);
                        pool_rows(rows, linear_pooling, linear, &mut lin);
                    }
                    Some(weights) => {
                        let terms = span
                            .filter(|&i| Some(ids[i]) != padding)
                            .map(|i| (base + ids[i] as usize, weights[i]));
                        pool_weighted(terms.clone(), pooling, table, dst);
                        pool_weighted(terms, linear_pooling, linear, &mut lin);
                    }
                }
                *fo += lin[0];
            }
        }
        (Column::MultiHot { .. }, _) => unreachable!("columns were validated against the spec"),
    }
}

/// Pools the rows `rows` of `table` into `dst` (as wide as a row; see [`gather`]): sums them
/// in order and multiplies by the pooling weight unless it is 1, or takes their element-wise
/// maximum (validation saw to it that a max-pooled list has a row).
fn pool_rows<R: Rows>(
    rows: impl Iterator<Item = usize> + Clone,
    pooling: Pooling,
    table: R,
    dst: &mut [f32],
) {
    let mut buf = [0.0f32; MAX_EMBEDDING_DIM];
    let buf = &mut buf[..dst.len()];
    if pooling == Pooling::Max {
        let mut rows = rows;
        let first = rows
            .next()
            .expect("validation refuses empty max-pooled lists");
        table.load(first, dst);
        for r in rows {
            for (o, &e) in dst.iter_mut().zip(table.row(r, buf)) {
                // A NaN wins, as in PyTorch's `max`.
                if e > *o || e.is_nan() {
                    *o = e;
                }
            }
        }
        return;
    }
    dst.fill(0.0);
    let mut count = 0;
    for r in rows {
        for (o, &e) in dst.iter_mut().zip(table.row(r, buf)) {
            *o += e;
        }
        count += 1;
    }
    let w = pooling.weight(count);
    if w != 1.0 {
        dst.iter_mut().for_each(|o| *o *= w);
    }
}

/// [`pool_rows`] for a weighted field: `terms` are (row, its weight); sums `weight × row` in
/// order and multiplies the sum by the pooling weight unless it is 1 (`mean` divides by the
/// number of rows, as fbgemm's weighted mean does). Validation refuses max pooling here.
fn pool_weighted<R: Rows>(
    terms: impl Iterator<Item = (usize, f32)>,
    pooling: Pooling,
    table: R,
    dst: &mut [f32],
) {
    debug_assert!(pooling != Pooling::Max, "validated: no weighted max");
    let mut buf = [0.0f32; MAX_EMBEDDING_DIM];
    let buf = &mut buf[..dst.len()];
    dst.fill(0.0);
    let mut count = 0;
    for (r, weight) in terms {
        for (o, &e) in dst.iter_mut().zip(table.row(r, buf)) {
            *o += weight * e;
        }
        count += 1;
    }
    let w = pooling.weight(count);
    if w != 1.0 {
        dst.iter_mut().for_each(|o| *o *= w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mixed_small, random_batch};
    use crate::rng::Rng;

    /// Row `r` of `batch` gathered the plain way, every term multiplied by its weight (as the
    /// trainer's own gather did): the embeddings into `x`, bias + first-order terms returned.
    /// For the fields the trainer trains (whose MLP input is `fields × D`).
    fn naive<C: Columns + ?Sized>(
        t: Tables<'_, F32Rows<'_>>,
        batch: &C,
        r: usize,
        x: &mut [f32],
    ) -> f32 {
        let d = t.dim;
        let mut first_order = 0.25;
        for (f, plan) in t.fields.iter().enumerate() {
            let base = plan.row_offset as usize;
            let e = &mut x[f * d..(f + 1) * d];
            match (batch.column(f), plan.kind) {
                (Column::Categorical(ids), _) => {
                    let row = base + ids[r] as usize;
                    e.copy_from_slice(&t.embedding.data[row * d..(row + 1) * d]);
                    first_order += t.linear[row];
                }
                (Column::Numeric(values), _) => {
                    let v = values[r];
                    for (e, &w) in e
                        .iter_mut()
                        .zip(&t.embedding.data[base * d..(base + 1) * d])
                    {
                        *e = v * w;
                    }
                    first_order += v * t.linear[base];
                }
                (
                    Column::MultiHot {
                        ids,
                        offsets,
                        weights,
                    },
                    FieldKind::MultiHot { pooling, .. },
                ) => {
                    let span = offsets[r]..offsets[r + 1];
                    let w = pooling.weight(span.len());
                    e.fill(0.0);
                    let mut lin = 0.0;
                    for i in span {
                        let own = weights.map_or(1.0, |w| w[i]);
                        let row = base + ids[i] as usize;
                        for (e, &v) in e.iter_mut().zip(&t.embedding.data[row * d..(row + 1) * d]) {
                            *e += own * v;
                        }
                        lin += own * t.linear[row];
                    }
                    e.iter_mut().for_each(|e| *e *= w);
                    first_order += w * lin;
                }
                _ => unreachable!(),
            }
        }
        first_order
    }

    #[test]
    fn matches_the_plain_gather_bit_for_bit() {
        let mut spec = mixed_small();
        // With per-id weights on one of the two multi-hot fields.
        spec.fields[3].kind = FieldKind::MultiHot {
            vocab: 40,
            pooling: Pooling::Sum,
            linear_pooling: Pooling::Sum,
            padding: None,
            weighted: true,
        };
        let fields = FieldPlan::of(&spec);
        let d = spec.embedding_dim;
        let rows = spec.total_rows().unwrap() as usize;
        let mut rng = Rng::new(7);
        let embedding: Vec<f32> = (0..rows * d).map(|_| rng.normal()).collect();
        let linear: Vec<f32> = (0..rows).map(|_| rng.normal()).collect();
        let t = Tables {
            fields: &fields,
            embedding: F32Rows {
                data: &embedding,
                dim: d,
            },
            linear: &linear,
            dim: d,
            width: spec.mlp_input_width(),
        };
        let batch = random_batch(&spec, 200, 3);
        let width = spec.mlp_input_width();
        let mut want = vec![0.0; width];
        // Short blocks (everything prefetched up front), long ones, ragged starts.
        for range in [0..1, 5..13, 7..200, 0..144] {
            let n = range.len();
            let (mut x, mut fo) = (vec![f32::NAN; n * width], vec![0.25; n]);
            gather(t, &batch, range.clone(), &mut x, &mut fo);
            for (i, r) in range.enumerate() {
                let first_order = naive(t, &batch, r, &mut want);
                assert_eq!(fo[i].to_bits(), first_order.to_bits(), "row {r}");
                let got = &x[i * width..(i + 1) * width];
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                );
            }
        }
    }
}
