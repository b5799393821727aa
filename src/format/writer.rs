//! Streaming, crash-safe model file writer.
//!
//! The file is written to a temporary file beside the target, synced, then renamed into place
//! (and the directory synced), so a reader sees either the old file or the complete new one.
//! Sections are written in pieces, each section front to back, so a table of any size passes
//! through a small buffer; [`ModelWriter::skip`] leaves zero rows as file holes.

use super::checksum::StreamingChecksum;
use super::{BYTE_ORDER_MARK, FormatError, HEADER_LEN, Layout, MAGIC, SectionId, VERSION};
use crate::spec::ModelSpec;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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
    out: BufWriter<File>,
    position: u64,
    temp: PathBuf,
    target: PathBuf,
    finished: bool,
}

pub(crate) fn temp_path(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{name}.tmp.{}.{unique}", std::process::id()))
}

impl ModelWriter {
    /// Starts a file for `spec` at `path` (through a temporary file in the same directory).
    pub fn create(path: impl AsRef<Path>, spec: &ModelSpec) -> Result<Self, FormatError> {
        let layout = Layout::for_spec(spec)?;
        let target = path.as_ref().to_path_buf();
        let temp = temp_path(&target);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(FormatError::io(&temp))?;
        // Sets the length up front: everything not written stays a hole and reads as zeros.
        let sized = file.set_len(layout.file_len);
        let progress = layout
            .sections
            .iter()
            .map(|_| Progress {
                written: 0,
                hash: StreamingChecksum::new(),
            })
            .collect();
        let writer = ModelWriter {
            layout,
            progress,
            out: BufWriter::with_capacity(1 << 20, file),
            position: 0,
            temp,
            target,
            finished: false,
        };
        sized.map_err(FormatError::io(&writer.temp))?;
        Ok(writer)
    }

    fn index_of(&self, id: SectionId) -> usize {
        self.layout
            .sections
            .iter()
            .position(|s| s.shape.id == id)
            .unwrap_or_else(|| panic!("section {} is not part of this model's spec", id.name()))
    }

    /// Elements a section holds.
    pub fn section_elements(&self, id: SectionId) -> u64 {
        self.layout.sections[self.index_of(id)].length / 4
    }

    fn advance(&mut self, id: SectionId, elements: u64) -> Result<(usize, u64), FormatError> {
        let i = self.index_of(id);
        let capacity = self.layout.sections[i].length / 4;
        let start = self.progress[i].written;
        if start.checked_add(elements).is_none_or(|end| end > capacity) {
            return Err(FormatError::SectionOverflow {
                section: id.name(),
                elements: capacity,
            });
        }
        self.progress[i].written += elements;
        Ok((i, self.layout.sections[i].offset + start * 4))
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
        let (i, at) = self.advance(id, data.len() as u64)?;
        let bytes = bytemuck::cast_slice::<f32, u8>(data);
        self.progress[i].hash.update(bytes);
        self.write_at(at, bytes)
    }

    /// Leaves the next `elements` elements of section `id` as zeros (a file hole: no disk used).
    pub fn skip(&mut self, id: SectionId, elements: u64) -> Result<(), FormatError> {
        let (i, _) = self.advance(id, elements)?;
        self.progress[i].hash.update_zeros(elements * 4);
        Ok(())
    }

    fn write_at(&mut self, at: u64, bytes: &[u8]) -> Result<(), FormatError> {
        if at != self.position {
            self.out
                .seek(SeekFrom::Start(at))
                .map_err(FormatError::io(&self.temp))?;
        }
        self.out
            .write_all(bytes)
            .map_err(FormatError::io(&self.temp))?;
        self.position = at + bytes.len() as u64;
        Ok(())
    }

    /// Checks every section is complete, writes header, table and spec, syncs, and renames the
    /// file into place. Returns the target path.
    pub fn finish(mut self) -> Result<PathBuf, FormatError> {
        let mut sections = self.layout.sections.clone();
        for (s, p) in sections.iter_mut().zip(&mut self.progress) {
            let elements = s.length / 4;
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
        let spec = self.layout.spec_json.as_bytes();
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&BYTE_ORDER_MARK.to_le_bytes());
        header.extend_from_slice(&self.layout.file_len.to_le_bytes());
        header.extend_from_slice(&self.layout.spec_offset.to_le_bytes());
        header.extend_from_slice(&(spec.len() as u64).to_le_bytes());
        header.extend_from_slice(&(sections.len() as u32).to_le_bytes());
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
        self.out.flush().map_err(FormatError::io(&self.temp))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(FormatError::io(&self.temp))?;
        std::fs::rename(&self.temp, &self.target).map_err(FormatError::io(&self.target))?;
        self.finished = true;
        sync_parent_dir(&self.target)?;
        Ok(self.target.clone())
    }
}

/// Makes the rename itself durable (on Unix a directory entry is only durable once its directory
/// is synced).
pub(crate) fn sync_parent_dir(path: &Path) -> Result<(), FormatError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(FormatError::io(dir))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl Drop for ModelWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to `target` crash-safely: a temp file beside it, fsync, rename over the
/// target, fsync of the directory. On an error the temp file is removed and the target is
/// untouched.
pub fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    use std::io::Write;
    let temp = temp_path(target);
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, target)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(FormatError::io(target)(e));
    }
    sync_parent_dir(target)
}
