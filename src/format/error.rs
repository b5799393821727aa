use crate::spec::SpecError;
use std::path::PathBuf;
use thiserror::Error;

/// Every way reading or writing a model file can fail. Each check of the reader has its own
/// variant so that a test can build the bad file and expect exactly that error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The operating system refused an operation on `path`.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file under an open map was truncated, grown or rewritten in place since it was opened
    /// (see [`super::ModelFile::check_unchanged`]): replace model files with [`super::install()`]
    /// (a new file renamed into place) instead.
    #[error(
        "{path} changed under its map ({mapped_len} bytes when opened, {now_len} now): it was rewritten in place; install new models with `deepfm install` (a new file renamed into place) instead"
    )]
    ChangedUnderMap {
        /// File concerned.
        path: PathBuf,
        /// Length when it was mapped.
        mapped_len: u64,
        /// Length now.
        now_len: u64,
    },
    /// [`super::install()`] was given the live file itself as the new model (the same path, a
    /// hard link or a symbolic link to it): there is nothing to install.
    #[error(
        "{new} and {live} are the same file: nothing to install (give the new model's own file)"
    )]
    SameFile {
        /// The new model's path as given.
        new: PathBuf,
        /// The live path as given.
        live: PathBuf,
    },
    /// This build runs on a big-endian CPU; model files are little-endian and read zero-copy.
    #[error("model files are little-endian and this CPU is not")]
    BigEndianHost,
    /// Shorter than the 64-byte header.
    #[error("file is {0} bytes, shorter than the 64-byte header")]
    TooSmall(u64),
    /// The first 8 bytes are not the magic.
    #[error("not a deepfm model file (bad magic)")]
    BadMagic,
    /// A version this build does not read.
    #[error("format version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u32),
    /// The byte-order mark does not read as `0x01020304`.
    #[error("byte-order mark {0:#010x}: file was not written little-endian")]
    WrongByteOrder(u32),
    /// The file length differs from the header's: truncated, grown, or rewritten in place.
    #[error("file is {actual} bytes but its header says {expected}: truncated or modified")]
    FileLength {
        /// Length recorded in the header.
        expected: u64,
        /// Length on disk.
        actual: u64,
    },
    /// A reserved header or table field, or the flags, is not zero.
    #[error("reserved field {0} is not zero")]
    Reserved(&'static str),
    /// More sections than [`super::MAX_SECTIONS`].
    #[error("header declares {0} sections, at most 256 are allowed")]
    TooManySections(u32),
    /// The spec offset is not right after the section table.
    #[error("spec offset {found} should be {expected}")]
    SpecOffset {
        /// Offset implied by the section count.
        expected: u64,
        /// Offset in the header.
        found: u64,
    },
    /// The spec is longer than [`super::MAX_SPEC_LEN`] or runs past the end of the file.
    #[error("spec of {0} bytes is too long or runs past the end of the file")]
    SpecLength(u64),
    /// The spec is not UTF-8.
    #[error("spec is not UTF-8")]
    SpecUtf8,
    /// The spec is not a valid model spec.
    #[error("invalid spec: {0}")]
    Spec(#[from] SpecError),
    /// The header, section table or spec do not match their checksum.
    #[error("header checksum mismatch (stored {stored:#018x}, computed {computed:#018x})")]
    MetaChecksum {
        /// Stored value.
        stored: u64,
        /// Value computed from the file.
        computed: u64,
    },
    /// The number of sections does not match the spec.
    #[error("file has {found} sections, its spec needs {expected}")]
    SectionCount {
        /// Count implied by the spec.
        expected: usize,
        /// Count in the header.
        found: usize,
    },
    /// A table entry is not the section expected at that position.
    #[error("section table entry {position} is kind {kind} index {index}, expected {expected}")]
    UnexpectedSection {
        /// Position in the table.
        position: usize,
        /// Kind code found.
        kind: u32,
        /// Layer index found.
        index: u32,
        /// Name of the expected section.
        expected: String,
    },
    /// A dtype code this build does not read.
    #[error("section {section}: dtype {dtype} is not supported")]
    UnsupportedDtype {
        /// Section name.
        section: String,
        /// Dtype code.
        dtype: u32,
    },
    /// Rank or dims differ from what the spec implies.
    #[error("section {section}: shape rank {rank} {found:?}, spec implies {expected:?}")]
    ShapeMismatch {
        /// Section name.
        section: String,
        /// Rank found.
        rank: u32,
        /// Dims found.
        found: [u64; 2],
        /// Dims implied by the spec.
        expected: [u64; 2],
    },
    /// A value given to the writer is finite, but the table's row format cannot hold it: past
    /// f16's ±65504 (an `f16` table, or a 4-bit row's f16 scale and bias).
    #[error(
        "section {section}: the value at element {element} (or its row's range) is too large \
         for {format} rows; keep this table in f32, bf16 or int8"
    )]
    NotRepresentable {
        /// Section name.
        section: String,
        /// Index of the first element that cannot be stored (a 4-bit row: its first element).
        element: usize,
        /// The row format (`TablePrecision::name`).
        format: &'static str,
    },
    /// Sizes or offsets overflow 64-bit arithmetic.
    #[error("section {section}: size arithmetic overflows")]
    SizeOverflow {
        /// Section name.
        section: String,
    },
    /// The length is not dims × dtype size.
    #[error("section {section}: length {found} bytes, dims × dtype give {expected}")]
    SectionLength {
        /// Section name.
        section: String,
        /// Expected bytes.
        expected: u64,
        /// Bytes in the table.
        found: u64,
    },
    /// A write to a row-wise int8 table that is not made of whole rows.
    #[error("section {section}: int8 rows are written whole, {dim} values at a time")]
    PartialRow {
        /// Section name.
        section: String,
        /// Values per row.
        dim: u64,
    },
    /// The offset is not a multiple of the required alignment.
    #[error("section {section}: offset {offset} is not a multiple of {align}")]
    Misaligned {
        /// Section name.
        section: String,
        /// Offset found.
        offset: u64,
        /// Required alignment.
        align: u64,
    },
    /// The section runs past the end of the file.
    #[error("section {section}: bytes {offset}..{end} lie outside the {file_len}-byte file")]
    OutOfBounds {
        /// Section name.
        section: String,
        /// Start.
        offset: u64,
        /// End.
        end: u64,
        /// File length.
        file_len: u64,
    },
    /// The section starts inside the header, table or spec.
    #[error("section {section}: offset {offset} lies inside the header, table or spec")]
    OverlapsHeader {
        /// Section name.
        section: String,
        /// Offset found.
        offset: u64,
    },
    /// Two sections share bytes.
    #[error("sections {first} and {second} overlap")]
    Overlap {
        /// One section.
        first: String,
        /// The other.
        second: String,
    },
    /// A section's bytes do not match its checksum.
    #[error(
        "section {section}: checksum mismatch (stored {stored:#018x}, computed {computed:#018x})"
    )]
    SectionChecksum {
        /// Section name.
        section: String,
        /// Stored value.
        stored: u64,
        /// Value computed from the file.
        computed: u64,
    },
    /// A value is NaN or infinite: found in a dense section at open, in any section by `verify`,
    /// or in data given to the writer.
    #[error("section {section}: element {element} is not finite")]
    NonFinite {
        /// Section name.
        section: String,
        /// Index of the first bad element.
        element: usize,
    },
    /// Opening a model could not pick its kernels: `DEEPFM_ISA` holds an unknown name, or it or
    /// [`crate::OpenOptions::isa`] asks for an instruction set this CPU does not have.
    #[error(transparent)]
    Isa(#[from] crate::kernels::IsaError),
    /// Writer: more data than the section holds.
    #[error("section {section}: writing past its {elements} elements")]
    SectionOverflow {
        /// Section name.
        section: String,
        /// Capacity.
        elements: u64,
    },
    /// The metadata section is longer than [`super::MAX_METADATA_LEN`].
    #[error("metadata of {0} bytes is longer than the 1 GiB allowed")]
    MetadataLength(u64),
    /// The metadata section is not UTF-8.
    #[error("metadata is not UTF-8")]
    MetadataUtf8,
    /// The metadata section is not JSON, or not the JSON its reader expects.
    #[error("metadata: {0}")]
    MetadataJson(String),
    /// Writer: `finish` before every section was fully written.
    #[error("section {section}: {written} of {elements} elements written")]
    IncompleteSection {
        /// Section name.
        section: String,
        /// Elements written or skipped.
        written: u64,
        /// Capacity.
        elements: u64,
    },
}

impl FormatError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> FormatError + '_ {
        move |source| FormatError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
