//! The hidden layers of an int8 MLP ([`MlpPrecision::Int8`](crate::MlpPrecision::Int8)) and
//! how the first one splits its input.
//!
//! A row of the first layer's input holds values on very different scales: embedding vectors
//! (often 0.01 or so), numeric fields' embeddings scaled by the raw value (an age of 70), and
//! dense values (log-counts). One scale per row would leave the embeddings a step or two each,
//! so the first layer quantizes only the embedding vectors of categorical and multi-hot fields
//! and sums the numeric and dense fields in f32 ([`F32Columns`]): a dense field's input is its
//! value and its weights are its column; a numeric field's `D` inputs are `v · e` for the
//! field's one embedding row `e`, so its `D` columns fold at open into one, `W · e`, times `v`
//! (D times less f32 work, and exact). The other layers' inputs are ReLU outputs of one layer,
//! on one scale, and are quantized whole.

use crate::batch::{Column, Columns};
use crate::kernels::f32_columns::F32Columns;
use crate::kernels::gather::FieldPlan;
use crate::kernels::qgemm::{Int8Path, qgemm_bias_act, quantize_rows_on};
use crate::kernels::quant::{QK, QuantizedMatrix, RowQuant};
use crate::kernels::rows::TableRows;
use crate::spec::FieldKind;
use std::ops::Range;

/// f32 inputs added to a row of outputs per pass (`F32Columns::add_columns`).
const COLUMNS_PER_PASS: usize = 8;

/// The hidden layers quantized for the int8 kernels.
#[derive(Debug)]
pub(crate) struct Int8Mlp {
    pub(crate) path: Int8Path,
    /// Every hidden layer; the first over the quantized columns only when `split` is set.
    pub(crate) layers: Vec<QuantizedMatrix>,
    /// How the first layer's input splits (`None`: it has no numeric or dense fields).
    pub(crate) split: Option<SplitInput>,
}

/// The first layer's input: the columns quantized, and the fields summed in f32.
#[derive(Debug)]
pub(crate) struct SplitInput {
    /// Columns of an input row quantized, in order (adjacent fields merged).
    quantized: Vec<Range<usize>>,
    /// The batch column (field) of each f32 input, in order.
    fields: Vec<usize>,
    columns: F32Columns,
}

impl Int8Mlp {
    /// Quantizes `layers` (`(weight, bias, (input, output))` of each hidden layer, weights
    /// row-major with one row of `input` per output), splitting the first layer's input by
    /// `fields` (`embedding` is the stacked table, `dim` its width).
    pub(crate) fn new<'a>(
        path: Int8Path,
        layers: impl Iterator<Item = (&'a [f32], &'a [f32], (usize, usize))>,
        fields: &[FieldPlan],
        embedding: TableRows<'_>,
        dim: usize,
    ) -> Int8Mlp {
        let mut split = None;
        let layers = layers
            .enumerate()
            .map(|(i, (w, b, (input, output)))| {
                let kept = (i == 0).then(|| SplitInput::of(fields, embedding, dim, w, output));
                match kept.flatten() {
                    None => QuantizedMatrix::quantize(w, b, output, input),
                    Some(s) => {
                        let quantized: Vec<f32> = (0..output)
                            .flat_map(|o| {
                                let row = &w[o * input..(o + 1) * input];
                                s.quantized.iter().flat_map(move |r| &row[r.clone()])
                            })
                            .copied()
                            .collect();
                        let width = s.quantized_width();
                        split = Some(s);
                        QuantizedMatrix::quantize(&quantized, b, output, width)
                    }
                }
            })
            .collect();
        Int8Mlp {
            path,
            layers,
            split,
        }
    }
}

impl SplitInput {
    /// The split of a first layer with weights `w` (`n` rows), or `None` when every field is
    /// embedded by id (nothing to keep in f32).
    fn of(
        fields: &[FieldPlan],
        embedding: TableRows<'_>,
        dim: usize,
        w: &[f32],
        n: usize,
    ) -> Option<SplitInput> {
        let k = w.len() / n;
        let mut quantized: Vec<Range<usize>> = Vec::new();
        let (mut kept, mut weight) = (Vec::new(), Vec::new());
        for (f, plan) in fields.iter().enumerate() {
            let start = plan.input_offset;
            match plan.kind {
                FieldKind::Dense => {
                    kept.push(f);
                    weight.extend((0..n).map(|o| w[o * k + start]));
                }
                FieldKind::Numeric => {
                    kept.push(f);
                    let mut e = vec![0.0; dim];
                    embedding.load(plan.row_offset as usize, &mut e);
                    weight.extend((0..n).map(|o| {
                        let w = &w[o * k + start..][..dim];
                        w.iter()
                            .zip(&e)
                            .map(|(&w, &e)| f64::from(w) * f64::from(e))
                            .sum::<f64>() as f32
                    }));
                }
                FieldKind::Categorical { .. } | FieldKind::MultiHot { .. } => {
                    match quantized.last_mut() {
                        Some(last) if last.end == start => last.end += dim,
                        _ => quantized.push(start..start + dim),
                    }
                }
            }
        }
        (!kept.is_empty()).then(|| SplitInput {
            quantized,
            fields: kept,
            columns: F32Columns::new(n, weight),
        })
    }

    fn quantized_width(&self) -> usize {
        self.quantized.iter().map(|r| r.len()).sum()
    }
}

/// The buffers of a block's int8 layer.
pub(crate) struct Int8Buffers<'a> {
    pub quantized: &'a mut [u8],
    pub row_quant: &'a mut [RowQuant],
    /// One input row's quantized columns, gathered (at least the input width).
    pub row: &'a mut [f32],
}

/// Hidden layer `i` of an int8 model over the `n` rows of `input` (`in_width` apart; the
/// block's rows `rows` of `batch`) into `output` (`out_width` apart), with the ReLU.
#[allow(clippy::too_many_arguments)]
pub(crate) fn int8_layer<C: Columns + ?Sized>(
    int8: &Int8Mlp,
    i: usize,
    batch: &C,
    rows: Range<usize>,
    input: &[f32],
    in_width: usize,
    buffers: Int8Buffers<'_>,
    output: &mut [f32],
    out_width: usize,
) {
    let Int8Buffers {
        quantized,
        row_quant,
        row,
    } = buffers;
    let (path, layer, n) = (int8.path, &int8.layers[i], rows.len());
    let lda = QK * layer.groups();
    let Some(split) = int8.split.as_ref().filter(|_| i == 0) else {
        quantize_rows_on(path, input, in_width, n, quantized, lda, row_quant);
        qgemm_bias_act(
            path, quantized, lda, row_quant, n, layer, true, output, out_width,
        );
        return;
    };
    // The quantized columns of each row, gathered when they are not one run.
    let width = layer.k();
    for r in 0..n {
        let x = &input[r * in_width..(r + 1) * in_width];
        let src: &[f32] = match split.quantized.as_slice() {
            [only] => &x[only.clone()],
            ranges => {
                let mut at = 0;
                for range in ranges {
                    row[at..at + range.len()].copy_from_slice(&x[range.clone()]);
                    at += range.len();
                }
                &row[..width]
            }
        };
        let (q, p) = (&mut quantized[r * lda..][..lda], &mut row_quant[r..=r]);
        quantize_rows_on(path, src, width, 1, q, lda, p);
    }
    qgemm_bias_act(
        path, quantized, lda, row_quant, n, layer, false, output, out_width,
    );
    // The f32 inputs, a few at a time (their values gathered on the stack), the ReLU with the
    // last ones.
    let groups = split.fields.chunks(COLUMNS_PER_PASS);
    let last = groups.len() - 1;
    for (g, fields) in groups.enumerate() {
        let mut values: [&[f32]; COLUMNS_PER_PASS] = [&[]; COLUMNS_PER_PASS];
        for (slot, &f) in values.iter_mut().zip(fields) {
            let Column::Numeric(column) = batch.column(f) else {
                unreachable!("batches are checked against the spec before scoring");
            };
            *slot = &column[rows.clone()];
        }
        split.columns.add_columns(
            path,
            g * COLUMNS_PER_PASS,
            &values[..fields.len()],
            n,
            g == last,
            output,
            out_width,
        );
    }
}
