//! Streaming, crash-safe model file writer.
//!
//! The file is written to a temporary file beside the target, synced, then renamed into place
//! (and the directory synced), so a reader sees either the old file or the complete new one
//! (see [`super::atomic`]). Sections are written in pieces, each section front to back, so a
//! table of any size passes through a small buffer; [`ModelWriter::skip`] leaves zero rows as
//! file holes.

use super::atomic::AtomicFile;
use super::checksum::{StreamingChecksum, checksum};
use super::reader::ModelFile;
use super::{
    BYTE_ORDER_MARK, Dtype, FormatError, HEADER_LEN, Layout, MAGIC, METADATA_KIND, SectionId,
    VERSION,
};
use crate::kernels::row_codec::{decode_row, encode_rows, first_non_finite};
use crate::spec::{ModelSpec, TablePrecision};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

struct Progress {
    written: u64,
    hash: StreamingChecksum,
}

/// Writes one model file. Call [`ModelWriter::write`] / [`ModelWriter::skip`] until every section
/// is complete, then [`ModelWriter::finish`]. Dropping it unfinished removes the temporary file and
/// leaves any existing file at the target untouched.
pub struct ModelWriter {
    layout: Layout,
    progress: Vec<Progress>,
    out: AtomicFile,
    metadata: Option<String>,
}

impl ModelWriter {
    /// Starts a file for `spec` at `path` (through a temporary file in the same directory).
    pub fn create(path: impl AsRef<Path>, spec: &ModelSpec) -> Result<Self, FormatError> {
        Self::start(path.as_ref(), spec, None)
    }

    /// As [`ModelWriter::create`], with a metadata section holding `metadata` (JSON, at most
    /// [`super::MAX_METADATA_LEN`] bytes; see the format documentation).
    pub fn create_with_metadata(
        path: impl AsRef<Path>,
        spec: &ModelSpec,
        metadata: String,
    ) -> Result<Self, FormatError> {
        // What is written must read back: refuse what is not JSON now, not when it is loaded.
        serde_json::from_str::<serde::de::IgnoredAny>(&metadata)
            .map_err(|e| FormatError::MetadataJson(e.to_string()))?;
        Self::start(path.as_ref(), spec, Some(metadata))
    }

    fn start(
        target: &Path,
        spec: &ModelSpec,
        metadata: Option<String>,
    ) -> Result<Self, FormatError> {
        let layout = Layout::for_spec(spec, metadata.as_ref().map(|m| m.len() as u64))?;
        let mut out = AtomicFile::create(target)?;
        // Sets the length up front: everything not written stays a hole and reads as zeros.
        out.set_len(layout.file_len)?;
        let progress = layout
            .sections
            .iter()
            .map(|_| Progress {
                written: 0,
                hash: StreamingChecksum::new(),
            })
            .collect();
        Ok(ModelWriter {
            layout,
            progress,
            out,
            metadata,
        })
    }

    fn index_of(&self, id: SectionId) -> usize {
        self.layout
            .sections
            .iter()
            .position(|s| s.shape.id == id)
            .unwrap_or_else(|| panic!("section {} is not part of this model's spec", id.name()))
    }

    /// Elements a section holds (values, whatever its dtype).
    pub fn section_elements(&self, id: SectionId) -> u64 {
        let shape = &self.layout.sections[self.index_of(id)].shape;
        shape.dims[0] * shape.dims[1]
    }

    /// Claims the next `elements` values of section `id`: its index, the byte offset they go
    /// to in the file and their byte length. A row-wise (int8, int4) table takes whole rows
    /// only.
    fn advance(&mut self, id: SectionId, elements: u64) -> Result<(usize, u64, u64), FormatError> {
        let i = self.index_of(id);
        let capacity = self.section_elements(id);
        let start = self.progress[i].written;
        if start.checked_add(elements).is_none_or(|end| end > capacity) {
            return Err(FormatError::SectionOverflow {
                section: id.name(),
                elements: capacity,
            });
        }
        let s = &self.layout.sections[i];
        let dim = s.shape.dims[1];
        let row_wise = matches!(s.dtype, Dtype::Int8Rows | Dtype::Int4Rows);
        let bytes = |values: u64| {
            if row_wise {
                values / dim * s.dtype.row_bytes(dim).expect("validated layout")
            } else {
                values * s.dtype.row_bytes(1).expect("one value")
            }
        };
        if row_wise && !(start.is_multiple_of(dim) && elements.is_multiple_of(dim)) {
            return Err(FormatError::PartialRow {
                section: id.name(),
                dim,
            });
        }
        self.progress[i].written += elements;
        Ok((i, s.offset + bytes(start), bytes(elements)))
    }

    /// Appends `data` to section `id`, after what was written or skipped before. Every value
    /// must be finite. After an error, drop the writer (nothing is left on disk).
    ///
    /// # Panics
    /// If `id` is not a section of this spec (e.g. `LayerWeight(7)` for a 3-layer model): that is
    /// a bug in the caller, not bad input.
    pub fn write(&mut self, id: SectionId, data: &[f32]) -> Result<(), FormatError> {
        if let Some(p) = data.iter().position(|v| !v.is_finite()) {
            let written = self.progress[self.index_of(id)].written;
            return Err(FormatError::NonFinite {
                section: id.name(),
                element: written as usize + p,
            });
        }
        // The file is little-endian; `open` refuses big-endian hosts, and so does this.
        if cfg!(target_endian = "big") {
            return Err(FormatError::BigEndianHost);
        }
        let written = self.progress[self.index_of(id)].written as usize;
        let (i, at, _) = self.advance(id, data.len() as u64)?;
        let table = self.layout.table;
        if id == SectionId::Embedding && table != TablePrecision::F32 {
            // Rows encoded as the spec's `table` says (`kernels::row_codec`); a finite value the
            // format cannot hold (it would be stored as infinity) is refused here, not found
            // by `verify` in a file already written.
            let dim = self.layout.sections[i].shape.dims[1] as usize;
            let mut encoded = Vec::with_capacity(data.len() * 2);
            encode_rows(table, data, dim, &mut encoded);
            if let Some(p) = first_non_finite(table, &encoded, dim) {
                return Err(FormatError::NotRepresentable {
                    section: id.name(),
                    element: written + p,
                    format: table.name(),
                });
            }
            self.progress[i].hash.update(&encoded);
            return self.write_at(at, &encoded);
        }
        let bytes = bytemuck::cast_slice::<f32, u8>(data);
        self.progress[i].hash.update(bytes);
        self.write_at(at, bytes)
    }

    /// Leaves the next `elements` elements of section `id` as zeros (a file hole: no disk used;
    /// zero bytes read back as 0.0 in every row format).
    pub fn skip(&mut self, id: SectionId, elements: u64) -> Result<(), FormatError> {
        let (i, _, bytes) = self.advance(id, elements)?;
        self.progress[i].hash.update_zeros(bytes);
        Ok(())
    }

    fn write_at(&mut self, at: u64, bytes: &[u8]) -> Result<(), FormatError> {
        self.out.write_at(at, bytes)
    }

    /// Checks every section is complete, writes the metadata, header, table and spec, syncs,
    /// and renames the file into place. Returns the target path.
    pub fn finish(mut self) -> Result<PathBuf, FormatError> {
        let mut sections = self.layout.sections.clone();
        for (s, p) in sections.iter_mut().zip(&mut self.progress) {
            let elements = s.shape.dims[0] * s.shape.dims[1];
            if p.written != elements {
                return Err(FormatError::IncompleteSection {
                    section: s.shape.id.name(),
                    written: p.written,
                    elements,
                });
            }
            s.checksum = std::mem::replace(&mut p.hash, StreamingChecksum::new()).finish();
        }
        let mut table = Vec::with_capacity(sections.len() * 64);
        for s in &sections {
            let (kind, index) = s.shape.id.code();
            for v in [kind, index, s.dtype as u32, s.shape.rank] {
                table.extend_from_slice(&v.to_le_bytes());
            }
            let words = [
                s.shape.dims[0],
                s.shape.dims[1],
                s.offset,
                s.length,
                s.checksum,
                0,
            ];
            for v in words {
                table.extend_from_slice(&v.to_le_bytes());
            }
        }
        let mut entries = sections.len();
        if let (Some(info), Some(metadata)) = (self.layout.metadata, self.metadata.take()) {
            let metadata_checksum = checksum(metadata.as_bytes());
            self.write_at(info.offset, metadata.as_bytes())?;
            for v in [METADATA_KIND, 0, Dtype::U8 as u32, 1] {
                table.extend_from_slice(&v.to_le_bytes());
            }
            for v in [
                info.length,
                1,
                info.offset,
                info.length,
                metadata_checksum,
                0,
            ] {
                table.extend_from_slice(&v.to_le_bytes());
            }
            entries += 1;
        }
        let spec = self.layout.spec_json.as_bytes();
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&BYTE_ORDER_MARK.to_le_bytes());
        header.extend_from_slice(&self.layout.file_len.to_le_bytes());
        header.extend_from_slice(&self.layout.spec_offset.to_le_bytes());
        header.extend_from_slice(&(spec.len() as u64).to_le_bytes());
        header.extend_from_slice(&(entries as u32).to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        let mut meta = Xxh3::new();
        meta.update(&header);
        meta.update(&table);
        meta.update(spec);
        header.extend_from_slice(&meta.digest().to_le_bytes());
        header.extend_from_slice(&0u64.to_le_bytes());

        let mut prefix = header;
        prefix.extend_from_slice(&table);
        prefix.extend_from_slice(spec);
        self.write_at(0, &prefix)?;
        self.out.commit()
    }
}

/// Writes the model of `file` to `target` with `metadata` as its metadata section (replacing any
/// metadata `file` has), crash-safely. Section contents are copied as they are (all-zero runs
/// stay file holes); `file` may be the target itself, as it stays mapped while the new file
/// replaces it.
pub fn copy_with_metadata(
    file: &ModelFile,
    target: &Path,
    metadata: String,
) -> Result<PathBuf, FormatError> {
    copy(file, target, file.spec(), Some(metadata))
}

/// Writes the model of `file` to `target` with its MLP scored in `mlp` ([`ModelSpec::mlp`]):
/// the spec changed in that one setting, every section and the metadata copied as they are,
/// streamed in bounded memory (a table larger than RAM converts), crash-safely. What `deepfm
/// quantize --mlp` does.
///
/// # Errors
/// [`FormatError::Spec`] if the model cannot use `mlp` (an int8 layer wider than
/// [`crate::spec::MAX_INT8_DEPTH`]), and I/O errors.
pub fn copy_with_mlp(
    file: &ModelFile,
    target: &Path,
    mlp: crate::MlpPrecision,
) -> Result<PathBuf, FormatError> {
    copy_with_precision(file, target, mlp, file.spec().table)
}

/// [`copy_with_mlp`] that also stores the embedding rows as `table` ([`ModelSpec::table`]):
/// the rows are decoded from the file's format and encoded in the new one a chunk at a time
/// (bounded memory, whatever the table's size). What `deepfm quantize --table` does.
///
/// # Errors
/// As [`copy_with_mlp`].
pub fn copy_with_precision(
    file: &ModelFile,
    target: &Path,
    mlp: crate::MlpPrecision,
    table: TablePrecision,
) -> Result<PathBuf, FormatError> {
    let mut spec = file.spec().clone();
    spec.mlp = mlp;
    spec.table = table;
    spec.validate()?;
    let metadata = file.metadata()?.map(str::to_string);
    copy(file, target, &spec, metadata)
}

/// Copies every section of `file` into a new file of `spec` (which has the same sections;
/// its table may be stored in another row format).
fn copy(
    file: &ModelFile,
    target: &Path,
    spec: &ModelSpec,
    metadata: Option<String>,
) -> Result<PathBuf, FormatError> {
    const CHUNK: usize = 1 << 16;
    let mut w = match metadata {
        Some(metadata) => ModelWriter::create_with_metadata(target, spec, metadata)?,
        None => ModelWriter::create(target, spec)?,
    };
    let put = |w: &mut ModelWriter, id, chunk: &[f32]| {
        if chunk.iter().all(|v| v.to_bits() == 0) {
            w.skip(id, chunk.len() as u64)
        } else {
            w.write(id, chunk)
        }
    };
    for s in file.sections() {
        let id = s.shape.id;
        if let Some(data) = file.f32s(id) {
            // Whole rows per chunk, as a row-wise int8 table is written.
            let chunk = CHUNK.next_multiple_of(s.shape.dims[1] as usize);
            for chunk in data.chunks(chunk) {
                put(&mut w, id, chunk)?;
            }
            continue;
        }
        // An embedding table in a reduced-precision format, decoded a chunk of rows at a time.
        let table = file.spec().table;
        let dim = s.shape.dims[1] as usize;
        let row_bytes = table.row_bytes(dim);
        let bytes = file
            .bytes(id)
            .ok_or_else(|| FormatError::SizeOverflow { section: id.name() })?;
        let mut rows = vec![0.0f32; (CHUNK / dim).max(1) * dim];
        for encoded in bytes.chunks(rows.len() / dim * row_bytes) {
            let n = encoded.len() / row_bytes;
            for (row, dst) in encoded
                .chunks_exact(row_bytes)
                .zip(rows.chunks_exact_mut(dim))
            {
                decode_row(table, row, dst);
            }
            put(&mut w, id, &rows[..n * dim])?;
        }
    }
    w.finish()
}

/// Writes `bytes` to `target` crash-safely: a temp file beside it, fsync, rename over the
/// target, fsync of the directory (see [`super::atomic`]). On an error before the rename the
/// temp file is removed and the target is untouched.
pub fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    super::atomic::write_atomically(target, bytes).map(drop)
}
