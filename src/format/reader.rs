//! Validating reader: maps the file, checks every number before trusting it, and hands out
//! zero-copy `f32` views of the sections.

use super::checksum::checksum;
use super::{
    Dtype, ENTRY_LEN, FormatError, HEADER_LEN, MAGIC, MAX_METADATA_LEN, MAX_SECTIONS, MAX_SPEC_LEN,
    METADATA_KIND, MetadataInfo, SectionId, SectionInfo, TensorShape, VERSION, tensor_shapes,
};
use crate::spec::ModelSpec;
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

/// An open, validated model file. Immutable and `Send + Sync`; views borrow the map.
#[derive(Debug)]
pub struct ModelFile {
    map: Mmap,
    spec: ModelSpec,
    sections: Vec<SectionInfo>,
    metadata: Option<MetadataInfo>,
    path: PathBuf,
    /// The open file behind the map, kept so that [`ModelFile::check_unchanged`] can ask the
    /// operating system about *this* inode, whatever the path now names.
    file: File,
    /// What the file looked like when it was mapped.
    stamp: FileStamp,
}

/// Identity and state of a file at one moment: which inode it is, its length and when it was
/// last modified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Device and inode number (0, 0 where the platform has none).
    pub inode: (u64, u64),
    /// Length in bytes.
    pub len: u64,
    /// Last modification time, if the platform reports one.
    pub modified: Option<std::time::SystemTime>,
}

impl FileStamp {
    /// Stamps an open file.
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        #[cfg(unix)]
        let inode = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let inode = (0, 0);
        FileStamp {
            inode,
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }

    /// Stamps the file at `path` now (following symlinks).
    pub fn of_path(path: &Path) -> Result<FileStamp, FormatError> {
        let meta = std::fs::metadata(path).map_err(FormatError::io(path))?;
        Ok(FileStamp::of(&meta))
    }
}

/// What validating a file finds: the spec, the tensor sections and the metadata section.
struct Validated {
    spec: ModelSpec,
    sections: Vec<SectionInfo>,
    metadata: Option<MetadataInfo>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl ModelFile {
    /// Maps and validates `path`: header, section table, spec, section placement and the
    /// checksums of all sections except `embedding` and `linear` (see [`ModelFile::verify`]).
    /// Reads only the header, table, spec and dense sections; cost does not grow with the
    /// vocabulary.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FormatError> {
        if cfg!(target_endian = "big") {
            return Err(FormatError::BigEndianHost);
        }
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(FormatError::io(&path))?;
        let stamp = FileStamp::of(&file.metadata().map_err(FormatError::io(&path))?);
        let actual_len = stamp.len;
        if actual_len < HEADER_LEN {
            return Err(FormatError::TooSmall(actual_len));
        }
        // SAFETY: `Mmap::map` is unsafe because the file may change under the map. That is the
        // caller's duty, documented on `Model` and in the README: replace a model by renaming a
        // new file over it (`format::install`), never truncate or rewrite it in place (existing
        // maps keep the old inode). What this crate guarantees: after `validate`, no byte of the
        // map is used as an index, length or offset (those come from the validated header,
        // copied out), so an in-place rewrite could only change score values; a truncation
        // raises SIGBUS, which no reader of a map can prevent.
        let map = unsafe { Mmap::map(&file) }.map_err(FormatError::io(&path))?;
        let Validated {
            spec,
            sections,
            metadata,
        } = validate(&map)?;
        let model = ModelFile {
            map,
            spec,
            sections,
            metadata,
            path,
            file,
            stamp,
        };
        model.advise_random_access();
        Ok(model)
    }

    /// Tells the kernel that table rows are read at random, so it does not read ahead (which
    /// would fill memory with rows nobody asked for when the table is larger than RAM).
    fn advise_random_access(&self) {
        #[cfg(unix)]
        for s in &self.sections {
            if s.shape.id.is_row_indexed() && s.length > 0 {
                // Advice only: failure changes speed, never results.
                let _ = self.map.advise_range(
                    memmap2::Advice::Random,
                    s.offset as usize,
                    s.length as usize,
                );
            }
        }
    }

    /// The model's spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Placement and checksums of every tensor section, in table order (the metadata section,
    /// if any, is [`ModelFile::metadata_info`]).
    pub fn sections(&self) -> &[SectionInfo] {
        &self.sections
    }

    /// Placement and checksum of the metadata section, if the file has one.
    pub fn metadata_info(&self) -> Option<MetadataInfo> {
        self.metadata
    }

    /// The metadata section as text, after checking its checksum and UTF-8 (`None` if the file
    /// has none). Reads the whole section.
    pub fn metadata(&self) -> Result<Option<&str>, FormatError> {
        let Some(m) = self.metadata else {
            return Ok(None);
        };
        let bytes = &self.map[m.offset as usize..(m.offset + m.length) as usize];
        let computed = checksum(bytes);
        if computed != m.checksum {
            return Err(FormatError::SectionChecksum {
                section: "metadata".into(),
                stored: m.checksum,
                computed,
            });
        }
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| FormatError::MetadataUtf8)
    }

    /// The metadata section parsed as JSON into `T` (`None` if the file has none); a parse
    /// failure is [`FormatError::MetadataJson`].
    pub fn metadata_json<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, FormatError> {
        match self.metadata()? {
            Some(text) => serde_json::from_str(text)
                .map(Some)
                .map_err(|e| FormatError::MetadataJson(e.to_string())),
            None => Ok(None),
        }
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length of the mapped file in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    /// The mapped file's identity, length and modification time when it was opened.
    pub fn stamp(&self) -> FileStamp {
        self.stamp
    }

    /// Checks that the file under the map was not rewritten in place since it was opened: same
    /// length and modification time. Replacing the *path* by renaming a new file over it is the
    /// supported way to roll out a model and does not count (the map keeps the old inode).
    ///
    /// A file truncated under a map makes reads of the lost pages fault (SIGBUS) and an in-place
    /// rewrite changes scores silently; neither can be prevented by a reader, only detected.
    /// Services call this periodically or before a reload (see [`crate::reload`]).
    pub fn check_unchanged(&self) -> Result<(), FormatError> {
        let now = FileStamp::of(&self.file.metadata().map_err(FormatError::io(&self.path))?);
        if now.len != self.stamp.len || now.modified != self.stamp.modified {
            return Err(FormatError::ChangedUnderMap {
                path: self.path.clone(),
                mapped_len: self.stamp.len,
                now_len: now.len,
            });
        }
        Ok(())
    }

    fn info(&self, id: SectionId) -> Option<&SectionInfo> {
        self.sections.iter().find(|s| s.shape.id == id)
    }

    /// Raw bytes of a section (`None` if the spec has no such section).
    pub fn bytes(&self, id: SectionId) -> Option<&[u8]> {
        let s = self.info(id)?;
        Some(&self.map[s.offset as usize..(s.offset + s.length) as usize])
    }

    /// A section as `f32`s, zero-copy (`None` if the spec has no such section, or it is an
    /// embedding table stored in another format: read that with [`ModelFile::bytes`] and
    /// [`crate::kernels::row_codec::decode_row`]).
    pub fn f32s(&self, id: SectionId) -> Option<&[f32]> {
        if self.info(id)?.dtype != Dtype::F32 {
            return None;
        }
        // Offsets were checked to be 64-byte aligned and the map is page aligned, so the cast
        // cannot fail; `try_` keeps even a broken invariant a `None`, not a panic.
        bytemuck::try_cast_slice(self.bytes(id)?).ok()
    }

    /// Checks the checksum of every section, including the embedding table and the first-order
    /// weights, and that every value is finite; and the metadata's checksum, UTF-8 and JSON
    /// (reads the whole file, in parallel chunks).
    pub fn verify(&self) -> Result<(), FormatError> {
        self.metadata_json::<serde::de::IgnoredAny>()?;
        for s in &self.sections {
            check_section(&self.map, s)?;
            let bytes = &self.map[s.offset as usize..(s.offset + s.length) as usize];
            let non_finite = match s.shape.id {
                SectionId::Embedding if s.dtype != Dtype::F32 => {
                    let dim = s.shape.dims[1] as usize;
                    crate::kernels::row_codec::first_non_finite(self.spec().table, bytes, dim)
                }
                _ => first_non_finite(bytes),
            };
            if let Some(element) = non_finite {
                return Err(FormatError::NonFinite {
                    section: s.shape.id.name(),
                    element,
                });
            }
        }
        Ok(())
    }
}

/// Index of the first NaN or infinite little-endian f32 in `bytes`, searched in parallel
/// chunks; read byte-wise so that it holds for bytes of any alignment (`validate_bytes`).
fn first_non_finite(bytes: &[u8]) -> Option<usize> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 20;
    bytes
        .par_chunks(CHUNK)
        .enumerate()
        .find_map_first(|(c, chunk)| {
            chunk
                .chunks_exact(4)
                .position(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite())
                .map(|p| c * CHUNK / 4 + p)
        })
}

fn check_section(map: &[u8], s: &SectionInfo) -> Result<(), FormatError> {
    let computed = checksum(&map[s.offset as usize..(s.offset + s.length) as usize]);
    if computed != s.checksum {
        return Err(FormatError::SectionChecksum {
            section: s.shape.id.name(),
            stored: s.checksum,
            computed,
        });
    }
    Ok(())
}

/// Runs every check [`ModelFile::open`] runs on the bytes of a whole file held in memory
/// (for fuzzing and for tools that receive models over the network before writing them).
/// Returns the spec and the section table.
pub fn validate_bytes(bytes: &[u8]) -> Result<(ModelSpec, Vec<SectionInfo>), FormatError> {
    if cfg!(target_endian = "big") {
        return Err(FormatError::BigEndianHost);
    }
    if (bytes.len() as u64) < HEADER_LEN {
        return Err(FormatError::TooSmall(bytes.len() as u64));
    }
    validate(bytes).map(|v| (v.spec, v.sections))
}

fn validate(map: &[u8]) -> Result<Validated, FormatError> {
    let file_len = map.len() as u64;
    let h = &map[..HEADER_LEN as usize];
    if h[..8] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = u32_at(h, 8);
    if version != VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let bom = u32_at(h, 12);
    if bom != super::BYTE_ORDER_MARK {
        return Err(FormatError::WrongByteOrder(bom));
    }
    let expected_len = u64_at(h, 16);
    if expected_len != file_len {
        return Err(FormatError::FileLength {
            expected: expected_len,
            actual: file_len,
        });
    }
    if u32_at(h, 44) != 0 {
        return Err(FormatError::Reserved("header flags"));
    }
    if u64_at(h, 56) != 0 {
        return Err(FormatError::Reserved("header bytes 56..64"));
    }
    let count = u32_at(h, 40);
    if count > MAX_SECTIONS {
        return Err(FormatError::TooManySections(count));
    }
    let spec_offset = u64_at(h, 24);
    let table_end = HEADER_LEN + ENTRY_LEN * count as u64;
    if spec_offset != table_end {
        return Err(FormatError::SpecOffset {
            expected: table_end,
            found: spec_offset,
        });
    }
    let spec_len = u64_at(h, 32);
    // Both operands are small (checked above / bounded here), so the sum cannot overflow.
    if spec_len > MAX_SPEC_LEN || spec_offset + spec_len > file_len {
        return Err(FormatError::SpecLength(spec_len));
    }
    let spec_end = (spec_offset + spec_len) as usize;
    let table = &map[HEADER_LEN as usize..table_end as usize];
    let spec_bytes = &map[table_end as usize..spec_end];

    let mut meta = Xxh3::new();
    meta.update(&h[..48]);
    meta.update(table);
    meta.update(spec_bytes);
    let computed = meta.digest();
    let stored = u64_at(h, 48);
    if computed != stored {
        return Err(FormatError::MetaChecksum { stored, computed });
    }

    let spec_text = std::str::from_utf8(spec_bytes).map_err(|_| FormatError::SpecUtf8)?;
    let spec = ModelSpec::from_json(spec_text)?;
    let expected = tensor_shapes(&spec);
    // One more entry than the tensors: the metadata section, last.
    let has_metadata = count as usize == expected.len() + 1;
    if expected.len() != count as usize && !has_metadata {
        return Err(FormatError::SectionCount {
            expected: expected.len(),
            found: count as usize,
        });
    }
    let sections = expected
        .iter()
        .enumerate()
        .map(|(position, want)| {
            let entry = &table[position * ENTRY_LEN as usize..(position + 1) * ENTRY_LEN as usize];
            parse_entry(entry, position, want, spec_end as u64, file_len)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = if has_metadata {
        let position = expected.len();
        let entry = &table[position * ENTRY_LEN as usize..(position + 1) * ENTRY_LEN as usize];
        Some(parse_metadata_entry(
            entry,
            position,
            spec_end as u64,
            file_len,
        )?)
    } else {
        None
    };

    let mut by_offset: Vec<(u64, u64, String)> = sections
        .iter()
        .map(|s| (s.offset, s.length, s.shape.id.name()))
        .chain(metadata.map(|m| (m.offset, m.length, "metadata".to_string())))
        .collect();
    by_offset.sort_by_key(|s| s.0);
    for pair in by_offset.windows(2) {
        // Ends were checked not to overflow in `parse_entry`.
        if pair[0].0 + pair[0].1 > pair[1].0 {
            return Err(FormatError::Overlap {
                first: pair[0].2.clone(),
                second: pair[1].2.clone(),
            });
        }
    }
    for s in sections.iter().filter(|s| !s.shape.id.is_row_indexed()) {
        check_section(map, s)?;
        let bytes = &map[s.offset as usize..(s.offset + s.length) as usize];
        if let Some(element) = first_non_finite(bytes) {
            return Err(FormatError::NonFinite {
                section: s.shape.id.name(),
                element,
            });
        }
    }
    Ok(Validated {
        spec,
        sections,
        metadata,
    })
}

/// The metadata entry: kind 8, dtype u8, rank 1, `[length, 1]`, placed like a section.
fn parse_metadata_entry(
    e: &[u8],
    position: usize,
    data_start: u64,
    file_len: u64,
) -> Result<MetadataInfo, FormatError> {
    let section = || "metadata".to_string();
    let (kind, index) = (u32_at(e, 0), u32_at(e, 4));
    if (kind, index) != (METADATA_KIND, 0) {
        return Err(FormatError::UnexpectedSection {
            position,
            kind,
            index,
            expected: section(),
        });
    }
    let dtype = u32_at(e, 8);
    if dtype != Dtype::U8 as u32 {
        return Err(FormatError::UnsupportedDtype {
            section: section(),
            dtype,
        });
    }
    let (rank, dims) = (u32_at(e, 12), [u64_at(e, 16), u64_at(e, 24)]);
    let (offset, length, stored_checksum) = (u64_at(e, 32), u64_at(e, 40), u64_at(e, 48));
    if rank != 1 || dims[1] != 1 {
        return Err(FormatError::ShapeMismatch {
            section: section(),
            rank,
            found: dims,
            expected: [length, 1],
        });
    }
    if u64_at(e, 56) != 0 {
        return Err(FormatError::Reserved("section entry bytes 56..64"));
    }
    if dims[0] > MAX_METADATA_LEN {
        return Err(FormatError::MetadataLength(dims[0]));
    }
    if length != dims[0] {
        return Err(FormatError::SectionLength {
            section: section(),
            expected: dims[0],
            found: length,
        });
    }
    check_placement(
        section,
        offset,
        length,
        super::SECTION_ALIGN,
        data_start,
        file_len,
    )?;
    Ok(MetadataInfo {
        offset,
        length,
        checksum: stored_checksum,
    })
}

/// Alignment, start after the spec, and end inside the file.
fn check_placement(
    section: impl Fn() -> String,
    offset: u64,
    length: u64,
    align: u64,
    data_start: u64,
    file_len: u64,
) -> Result<(), FormatError> {
    if !offset.is_multiple_of(align) {
        return Err(FormatError::Misaligned {
            section: section(),
            offset,
            align,
        });
    }
    if offset < data_start {
        return Err(FormatError::OverlapsHeader {
            section: section(),
            offset,
        });
    }
    let end = offset
        .checked_add(length)
        .ok_or_else(|| FormatError::SizeOverflow { section: section() })?;
    if end > file_len {
        return Err(FormatError::OutOfBounds {
            section: section(),
            offset,
            end,
            file_len,
        });
    }
    Ok(())
}

fn parse_entry(
    e: &[u8],
    position: usize,
    want: &TensorShape,
    data_start: u64,
    file_len: u64,
) -> Result<SectionInfo, FormatError> {
    let section = || want.id.name();
    let (kind, index) = (u32_at(e, 0), u32_at(e, 4));
    if (kind, index) != want.id.code() {
        return Err(FormatError::UnexpectedSection {
            position,
            kind,
            index,
            expected: section(),
        });
    }
    let dtype_code = u32_at(e, 8);
    let dtype = Dtype::from_code(dtype_code)
        .filter(|&d| d == want.dtype)
        .ok_or_else(|| FormatError::UnsupportedDtype {
            section: section(),
            dtype: dtype_code,
        })?;
    let rank = u32_at(e, 12);
    let dims = [u64_at(e, 16), u64_at(e, 24)];
    if rank != want.rank || dims != want.dims {
        return Err(FormatError::ShapeMismatch {
            section: section(),
            rank,
            found: dims,
            expected: want.dims,
        });
    }
    let (offset, length, stored_checksum) = (u64_at(e, 32), u64_at(e, 40), u64_at(e, 48));
    if u64_at(e, 56) != 0 {
        return Err(FormatError::Reserved("section entry bytes 56..64"));
    }
    let expected_len = want
        .bytes()
        .ok_or_else(|| FormatError::SizeOverflow { section: section() })?;
    if length != expected_len {
        return Err(FormatError::SectionLength {
            section: section(),
            expected: expected_len,
            found: length,
        });
    }
    check_placement(
        section,
        offset,
        length,
        want.id.align(),
        data_start,
        file_len,
    )?;
    Ok(SectionInfo {
        shape: *want,
        dtype,
        offset,
        length,
        checksum: stored_checksum,
    })
}
