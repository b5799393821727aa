//! The precisions a model can be scored in: of its hidden layers ([`MlpPrecision`]) and of its
//! embedding rows ([`TablePrecision`]), both recorded in the spec and f32 by default.

use serde::{Deserialize, Serialize};

/// The arithmetic of the hidden layers when a model is scored ([`ModelSpec::mlp`](crate::ModelSpec::mlp)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MlpPrecision {
    /// f32 weights and activations: the exact default.
    #[default]
    F32,
    /// int8: each hidden layer's weights quantized per output column (symmetric) when the
    /// model is opened, its input quantized per row (8-bit, with a zero point) as it is scored,
    /// i32 sums, then dequantized with the bias and ReLU in f32 (`kernels::quant` gives the
    /// arithmetic). The gather, FM term and output unit stay f32. Made by `deepfm quantize
    /// --mlp int8`; the layers' outputs are bit-identical on every instruction set.
    Int8,
}

impl MlpPrecision {
    /// Every precision, as [`MlpPrecision::name`] spells it.
    pub const NAMES: [&'static str; 2] = ["f32", "int8"];

    /// The name in specs and on the command line (`f32`, `int8`).
    pub fn name(self) -> &'static str {
        match self {
            MlpPrecision::F32 => "f32",
            MlpPrecision::Int8 => "int8",
        }
    }

    /// Parses one of [`MlpPrecision::NAMES`].
    pub fn from_name(name: &str) -> Option<MlpPrecision> {
        [MlpPrecision::F32, MlpPrecision::Int8]
            .into_iter()
            .find(|p| p.name() == name)
    }

    pub(super) fn is_f32(&self) -> bool {
        *self == MlpPrecision::F32
    }
}

/// How the embedding table's rows are stored ([`ModelSpec::table`](crate::ModelSpec::table)); the first-order weights
/// and every other section stay f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TablePrecision {
    /// f32 rows (4·D bytes): the exact default, and what the trainer writes.
    #[default]
    F32,
    /// IEEE half-precision rows (2·D bytes), rounded to nearest from f32.
    F16,
    /// bfloat16 rows (2·D bytes): f32's range, 8 significant bits, rounded to nearest.
    Bf16,
    /// Row-wise int8 (D + 8 bytes), FBGEMM's fused 8-bit row-wise layout: D codes `q` (u8),
    /// then the row's `scale` and `bias` as little-endian f32; a value is `scale · q + bias`,
    /// with `bias` the row's minimum and `scale` its range / 255.
    Int8,
    /// Row-wise 4-bit (⌈D/2⌉ + 4 bytes), FBGEMM's fused 4-bit row-wise layout: D codes `q`
    /// (0–15) two to a byte, the even value in the low nibble, then the row's `scale` and
    /// `bias` as little-endian f16; a value is `scale · q + bias`, with `bias` the row's
    /// minimum (as f16) and `scale` its range / 15 (as f16). For the largest tables: a D = 16
    /// row in 12 bytes, at a measured cost in accuracy (see the README's precision table).
    Int4,
}

impl TablePrecision {
    /// Every row format, as [`TablePrecision::name`] spells it.
    pub const NAMES: [&'static str; 5] = ["f32", "f16", "bf16", "int8", "int4"];

    const ALL: [TablePrecision; 5] = [
        TablePrecision::F32,
        TablePrecision::F16,
        TablePrecision::Bf16,
        TablePrecision::Int8,
        TablePrecision::Int4,
    ];

    /// The name in specs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TablePrecision::F32 => "f32",
            TablePrecision::F16 => "f16",
            TablePrecision::Bf16 => "bf16",
            TablePrecision::Int8 => "int8",
            TablePrecision::Int4 => "int4",
        }
    }

    /// Parses one of [`TablePrecision::NAMES`].
    pub fn from_name(name: &str) -> Option<TablePrecision> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Bytes of one row of `dim` values.
    pub fn row_bytes(self, dim: usize) -> usize {
        match self {
            TablePrecision::F32 => 4 * dim,
            TablePrecision::F16 | TablePrecision::Bf16 => 2 * dim,
            TablePrecision::Int8 => dim + 8,
            TablePrecision::Int4 => dim.div_ceil(2) + 4,
        }
    }

    pub(super) fn is_f32(&self) -> bool {
        *self == TablePrecision::F32
    }
}
