//! The model file.
//!
//! # Layout (format version 1)
//!
//! All integers are little-endian. Offsets and lengths are in bytes from the start of the file.
//!
//! ```text
//! offset 0      header            64 bytes
//! offset 64     section table     64 bytes per section
//! spec_offset   spec              UTF-8 JSON (see `spec::ModelSpec`), spec_len bytes
//! ...           tensor sections   each 64-byte aligned; the embedding table 65536-byte aligned
//! ```
//!
//! **Header** (64 bytes):
//!
//! | bytes  | type    | meaning |
//! |--------|---------|---------|
//! | 0..8   | [u8; 8] | magic `89 44 45 45 50 46 4D 0A` (`\x89DEEPFM\n`) |
//! | 8..12  | u32     | format version, `1` |
//! | 12..16 | u32     | byte-order mark `0x01020304` (bytes `04 03 02 01`) |
//! | 16..24 | u64     | file length: the file must be exactly this long |
//! | 24..32 | u64     | spec offset: `64 + 64 × section count` |
//! | 32..40 | u64     | spec length, at most 1 MiB |
//! | 40..44 | u32     | section count, `2 × hidden layers + 5`, plus 1 with a metadata section; at most 256 |
//! | 44..48 | u32     | flags, `0` |
//! | 48..56 | u64     | meta checksum: XXH3-64 (seed 0) of the concatenation of header bytes 0..48, the section table and the spec |
//! | 56..64 | u64     | reserved, `0` |
//!
//! **Section table entry** (64 bytes):
//!
//! | bytes  | type | meaning |
//! |--------|------|---------|
//! | 0..4   | u32  | kind: 1 embedding, 2 linear, 3 bias, 4 hidden weight, 5 hidden bias, 6 output weight, 7 output bias, 8 metadata |
//! | 4..8   | u32  | layer index for kinds 4 and 5, else 0 |
//! | 8..12  | u32  | dtype: 1 f32; for the embedding table only, as the spec's `table` says, 2 f16, 3 bf16, 4 row-wise int8 (per row: dim 1 u8 codes, then scale and bias, f32), 6 row-wise 4-bit (per row: ⌈dim 1 / 2⌉ bytes of two codes, low nibble first, then scale and bias, f16); 5 u8 (metadata only) |
//! | 12..16 | u32  | rank, 1 or 2 |
//! | 16..24 | u64  | dim 0 |
//! | 24..32 | u64  | dim 1 (1 when rank is 1) |
//! | 32..40 | u64  | offset |
//! | 40..48 | u64  | length = dim 0 × bytes of a row of dim 1 (4·dim 1 for f32, 2·dim 1 for f16 and bf16, dim 1 + 8 for row-wise int8) |
//! | 48..56 | u64  | section checksum (below) |
//! | 56..64 | u64  | reserved, `0` |
//!
//! The table lists exactly these sections in this order (PyTorch names and shapes, weights
//! `[out, in]`, `R` = total embedding rows, `D` = embedding dim, `F` = fields):
//! `embedding [R, D]`, `linear [R]`, `bias [1]`, then for each hidden layer `i`:
//! `mlp.i.weight [out, in]`, `mlp.i.bias [out]`; then `out.weight [1, last]`, `out.bias [1]`
//! (`in` of layer 0 and `last` with no hidden layer are the MLP input width: `D` per embedded
//! field plus one per dense field, [`ModelSpec::mlp_input_width`](crate::ModelSpec::mlp_input_width)).
//! An optional last entry, kind 8 `metadata`, dtype 5 (u8), rank 1, dims `[length, 1]`, holds
//! the application's metadata (the recommender API keeps its id maps and settings there, so that
//! a model and what it needs to be used are one file, replaced by one rename): UTF-8 JSON, at
//! most [`MAX_METADATA_LEN`] bytes, 64-byte aligned, placed and checksummed like a tensor
//! section. Its checksum, UTF-8 and JSON are checked when it is read
//! ([`reader::ModelFile::metadata`]) and by `verify`, not at open (its size grows with the
//! data). Files without it are complete models.
//! Field `f`'s rows start at the sum of the rows of the fields before it that own rows (a
//! numeric or dense field owns one row, a categorical or multi-hot field `vocab`, a field with
//! `table` none: it reads the rows of the field it names). A dense field's embedding row is
//! unused (written as zeros).
//!
//! Sections may sit in any order in the file but must start at or after the end of the spec,
//! lie inside the file, not overlap, and be aligned: 64 bytes, the embedding table 65536 bytes
//! (a multiple of every common page size, so rows never straddle a page needlessly).
//! Padding between sections should be zero and is ignored by readers, as are bytes after the
//! last section. Unwritten rows may be file holes (sparse files read as zeros). Every value of
//! every section must be finite (NaN or ±∞ is an error: at open for the dense sections, in
//! `verify` for all).
//!
//! The spec is the JSON of [`crate::spec::ModelSpec`]: keys `fields` (each `name`, `kind` =
//! `categorical` with `vocab`, `numeric`, `dense`, or `multi_hot` with `vocab` and `pooling` =
//! `mean`, `sum` or `max`, optional `linear_pooling` (default: `pooling`), `padding` (an id
//! below `vocab`) and `weighted` (`true`: a weight per id, sum or mean pooling only; written
//! only when true); a categorical or multi-hot field may name the field whose rows it reads with
//! `table`), `embedding_dim` (1..=256), `hidden` (widths 1..=16384, at most 64 layers), `output`
//! (`sigmoid` or `linear`), optional `clamp` (`[lo, hi]`, linear output only) and optional `mlp`
//! (`f32`, the default and never written, or `int8`: the hidden layers are quantized when the
//! file is opened, from the f32 weights the file holds either way; at most 65536 inputs per
//! int8 layer); unknown keys are refused, names are unique, at most 4096 fields and 2^28 MLP
//! parameters.
//!
//! **Section checksum**: split the section into 1 MiB chunks (the last may be shorter), take
//! XXH3-64 (seed 0) of each, and take XXH3-64 (seed 0) of the concatenation of those digests
//! written as little-endian u64s, in order.
//! Chunking lets `verify` run in parallel and lets a writer account for holes without hashing them.
//! Opening a file checks the meta checksum and the checksums of every section except `embedding`
//! and `linear`, which grow with the vocabulary and are checked only by
//! [`reader::ModelFile::verify`].

pub mod atomic;
pub(crate) mod checksum;
mod error;
mod install;
pub mod reader;
pub mod writer;

pub use error::FormatError;
pub use install::{Installed, install};
pub use reader::{FileStamp, ModelFile};
pub use writer::ModelWriter;

use crate::spec::{ModelSpec, TablePrecision};

/// File magic.
pub const MAGIC: [u8; 8] = *b"\x89DEEPFM\n";
/// The only format version this build reads and writes.
pub const VERSION: u32 = 1;
/// Byte-order mark as written.
pub const BYTE_ORDER_MARK: u32 = 0x0102_0304;
/// Header size.
pub const HEADER_LEN: u64 = 64;
/// Size of one section table entry.
pub const ENTRY_LEN: u64 = 64;
/// Largest spec accepted.
pub const MAX_SPEC_LEN: u64 = 1 << 20;
/// Largest section count accepted.
pub const MAX_SECTIONS: u32 = 256;
/// Alignment of every section.
pub const SECTION_ALIGN: u64 = 64;
/// Alignment of the embedding table.
pub const TABLE_ALIGN: u64 = 65_536;
/// Chunk size of the section checksum.
pub const CHECKSUM_CHUNK: usize = 1 << 20;
/// Largest metadata section accepted (1 GiB).
pub const MAX_METADATA_LEN: u64 = 1 << 30;
/// Kind code of the metadata section in the section table.
pub const METADATA_KIND: u32 = 8;

/// Element type of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE 754 binary32, little-endian (every tensor section but a reduced-precision table).
    F32 = 1,
    /// IEEE 754 binary16, little-endian (an `f16` embedding table).
    F16 = 2,
    /// bfloat16, little-endian (a `bf16` embedding table).
    Bf16 = 3,
    /// Row-wise int8: each row `dim 1` u8 codes, then its scale and bias as little-endian f32
    /// (an `int8` embedding table; [`TablePrecision::Int8`]).
    Int8Rows = 4,
    /// Bytes (the metadata section).
    U8 = 5,
    /// Row-wise 4-bit: each row `⌈dim 1 / 2⌉` bytes of two codes (low nibble first), then its
    /// scale and bias as little-endian f16 (an `int4` embedding table;
    /// [`TablePrecision::Int4`]).
    Int4Rows = 6,
}

impl Dtype {
    /// Bytes of one row of `dim1` elements (`None` on overflow).
    pub fn row_bytes(self, dim1: u64) -> Option<u64> {
        match self {
            Dtype::F32 => dim1.checked_mul(4),
            Dtype::F16 | Dtype::Bf16 => dim1.checked_mul(2),
            Dtype::Int8Rows => dim1.checked_add(8),
            Dtype::Int4Rows => dim1.div_ceil(2).checked_add(4),
            Dtype::U8 => Some(dim1),
        }
    }

    /// The dtype of an embedding table stored as `table`.
    pub fn of_table(table: TablePrecision) -> Dtype {
        match table {
            TablePrecision::F32 => Dtype::F32,
            TablePrecision::F16 => Dtype::F16,
            TablePrecision::Bf16 => Dtype::Bf16,
            TablePrecision::Int8 => Dtype::Int8Rows,
            TablePrecision::Int4 => Dtype::Int4Rows,
        }
    }

    fn from_code(code: u32) -> Option<Dtype> {
        [
            Dtype::F32,
            Dtype::F16,
            Dtype::Bf16,
            Dtype::Int8Rows,
            Dtype::U8,
            Dtype::Int4Rows,
        ]
        .into_iter()
        .find(|&d| d as u32 == code)
    }
}

/// Where the metadata section lives in the file and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataInfo {
    /// Byte offset in the file.
    pub offset: u64,
    /// Byte length.
    pub length: u64,
    /// Section checksum (see the module docs).
    pub checksum: u64,
}

/// Which tensor a section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionId {
    /// Stacked embedding rows `[R, D]`.
    Embedding,
    /// First-order weights `[R]`.
    Linear,
    /// Global bias `[1]`.
    Bias,
    /// Hidden layer `i` weight `[out, in]`.
    LayerWeight(u32),
    /// Hidden layer `i` bias `[out]`.
    LayerBias(u32),
    /// Output unit weight `[1, last]`.
    OutWeight,
    /// Output unit bias `[1]`.
    OutBias,
}

impl SectionId {
    fn code(self) -> (u32, u32) {
        match self {
            SectionId::Embedding => (1, 0),
            SectionId::Linear => (2, 0),
            SectionId::Bias => (3, 0),
            SectionId::LayerWeight(i) => (4, i),
            SectionId::LayerBias(i) => (5, i),
            SectionId::OutWeight => (6, 0),
            SectionId::OutBias => (7, 0),
        }
    }

    /// The tensor name used in files and in safetensors interop (`mlp.0.weight`, ...).
    pub fn name(self) -> String {
        match self {
            SectionId::Embedding => "embedding".into(),
            SectionId::Linear => "linear".into(),
            SectionId::Bias => "bias".into(),
            SectionId::LayerWeight(i) => format!("mlp.{i}.weight"),
            SectionId::LayerBias(i) => format!("mlp.{i}.bias"),
            SectionId::OutWeight => "out.weight".into(),
            SectionId::OutBias => "out.bias".into(),
        }
    }

    /// Sections whose size grows with the vocabulary: not read when a file is opened.
    pub fn is_row_indexed(self) -> bool {
        matches!(self, SectionId::Embedding | SectionId::Linear)
    }

    /// Required alignment of the section's offset.
    pub fn align(self) -> u64 {
        if self == SectionId::Embedding {
            TABLE_ALIGN
        } else {
            SECTION_ALIGN
        }
    }

    /// Weight and bias sections of MLP layer `i` of a model with `hidden` hidden layers (layer
    /// `hidden` is the output unit).
    pub fn layer(i: usize, hidden: usize) -> (SectionId, SectionId) {
        if i < hidden {
            (
                SectionId::LayerWeight(i as u32),
                SectionId::LayerBias(i as u32),
            )
        } else {
            (SectionId::OutWeight, SectionId::OutBias)
        }
    }
}

/// One expected tensor: its id and shape (`[dim0, dim1]`, `dim1 = 1` for rank 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorShape {
    /// Which tensor.
    pub id: SectionId,
    /// 1 or 2.
    pub rank: u32,
    /// Dimensions.
    pub dims: [u64; 2],
    /// Element type: f32, or the table's row format for the embedding table.
    pub dtype: Dtype,
}

impl TensorShape {
    /// Element count (may overflow for hostile shapes: checked).
    pub fn elements(&self) -> Option<u64> {
        self.dims[0].checked_mul(self.dims[1])
    }

    /// Bytes of the tensor in its dtype (may overflow for hostile shapes: checked).
    pub fn bytes(&self) -> Option<u64> {
        self.dims[0].checked_mul(self.dtype.row_bytes(self.dims[1])?)
    }
}

/// The tensors a spec implies, in section-table order.
pub fn tensor_shapes(spec: &ModelSpec) -> Vec<TensorShape> {
    let rows = spec.total_rows().unwrap_or(u64::MAX);
    let d = spec.embedding_dim as u64;
    let t = |id, rank, dims| TensorShape {
        id,
        rank,
        dims,
        dtype: match id {
            SectionId::Embedding => Dtype::of_table(spec.table),
            _ => Dtype::F32,
        },
    };
    let mut shapes = vec![
        t(SectionId::Embedding, 2, [rows, d]),
        t(SectionId::Linear, 1, [rows, 1]),
        t(SectionId::Bias, 1, [1, 1]),
    ];
    let layers = spec.layer_shapes();
    let (hidden, out) = layers.split_at(layers.len() - 1);
    for (i, &(input, output)) in hidden.iter().enumerate() {
        let i = i as u32;
        shapes.push(t(
            SectionId::LayerWeight(i),
            2,
            [output as u64, input as u64],
        ));
        shapes.push(t(SectionId::LayerBias(i), 1, [output as u64, 1]));
    }
    shapes.push(t(SectionId::OutWeight, 2, [1, out[0].0 as u64]));
    shapes.push(t(SectionId::OutBias, 1, [1, 1]));
    shapes
}

/// Where a section lives in the file and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionInfo {
    /// Tensor and shape.
    pub shape: TensorShape,
    /// Element type.
    pub dtype: Dtype,
    /// Byte offset in the file.
    pub offset: u64,
    /// Byte length.
    pub length: u64,
    /// Section checksum (see the module docs).
    pub checksum: u64,
}

/// Where the writer puts everything for a spec.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub sections: Vec<SectionInfo>,
    /// The metadata section's place (checksum 0 until written), if any.
    pub metadata: Option<MetadataInfo>,
    pub spec_json: String,
    pub spec_offset: u64,
    pub file_len: u64,
    /// How the embedding rows are stored.
    pub table: TablePrecision,
}

fn align_up(x: u64, align: u64) -> Option<u64> {
    x.checked_add(align - 1).map(|v| v / align * align)
}

impl Layout {
    /// Dense sections first (right after the spec, read at open), then the metadata of
    /// `metadata_len` bytes if any, then `linear`, then the embedding table at a table-aligned
    /// offset, last so that it can grow into holes.
    pub fn for_spec(spec: &ModelSpec, metadata_len: Option<u64>) -> Result<Layout, FormatError> {
        if let Some(len) = metadata_len
            && len > MAX_METADATA_LEN
        {
            return Err(FormatError::MetadataLength(len));
        }
        spec.validate()?;
        let spec_json = spec.to_json();
        if spec_json.len() as u64 > MAX_SPEC_LEN {
            return Err(FormatError::SpecLength(spec_json.len() as u64));
        }
        let shapes = tensor_shapes(spec);
        let entries = shapes.len() as u64 + metadata_len.is_some() as u64;
        let spec_offset = HEADER_LEN + ENTRY_LEN * entries;
        let mut cursor = spec_offset + spec_json.len() as u64;
        let mut sections: Vec<SectionInfo> = shapes
            .iter()
            .map(|&shape| SectionInfo {
                shape,
                dtype: shape.dtype,
                offset: 0,
                length: 0,
                checksum: 0,
            })
            .collect();
        let place = |s: &mut SectionInfo, align: u64, cursor: &mut u64| -> Option<()> {
            s.length = s.shape.bytes()?;
            s.offset = align_up(*cursor, align)?;
            *cursor = s.offset.checked_add(s.length)?;
            Some(())
        };
        let overflow = || FormatError::SizeOverflow {
            section: "layout".into(),
        };
        let (row_indexed, dense): (Vec<usize>, Vec<usize>) =
            (0..sections.len()).partition(|&i| sections[i].shape.id.is_row_indexed());
        for i in dense {
            place(&mut sections[i], SECTION_ALIGN, &mut cursor).ok_or_else(overflow)?;
        }
        let metadata = match metadata_len {
            Some(length) => {
                let offset = align_up(cursor, SECTION_ALIGN).ok_or_else(overflow)?;
                cursor = offset.checked_add(length).ok_or_else(overflow)?;
                Some(MetadataInfo {
                    offset,
                    length,
                    checksum: 0,
                })
            }
            None => None,
        };
        // `linear` then `embedding`.
        for i in row_indexed.into_iter().rev() {
            let align = sections[i].shape.id.align();
            place(&mut sections[i], align, &mut cursor).ok_or_else(overflow)?;
        }
        Ok(Layout {
            sections,
            metadata,
            spec_json,
            spec_offset,
            file_len: cursor,
            table: spec.table,
        })
    }
}
