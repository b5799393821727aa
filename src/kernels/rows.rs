//! The embedding table as the gather reads it: rows by index, as f32, whatever format the file
//! stores them in ([`TablePrecision`]). An f32 table is read in place; a reduced-precision one
//! is decoded a row at a time into the gather's output (`row_codec`), never materialised as
//! an f32 table. The gather is generic over [`Rows`], so each format gets its own compiled
//! loop and an f32 table pays nothing for the others.

use super::prefetch::{copy_row, prefetch};
use super::row_codec::decode_row;
use crate::spec::TablePrecision;

/// Rows of `dim` values, read as f32.
pub(crate) trait Rows: Copy {
    /// Writes row `r` into `dst` (`dim` values).
    fn load(&self, r: usize, dst: &mut [f32]);

    /// Row `r` as f32: a slice of the table when it is stored as f32, else `buf` (`dim`
    /// values) filled with the decoded row.
    fn row<'b>(&'b self, r: usize, buf: &'b mut [f32]) -> &'b [f32];

    /// Starts loading row `r` into the cache.
    fn prefetch(&self, r: usize);
}

/// An f32 table, `dim` values a row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct F32Rows<'a> {
    pub data: &'a [f32],
    pub dim: usize,
}

impl Rows for F32Rows<'_> {
    #[inline(always)]
    fn load(&self, r: usize, dst: &mut [f32]) {
        copy_row(dst, &self.data[r * self.dim..(r + 1) * self.dim]);
    }

    #[inline(always)]
    fn row<'b>(&'b self, r: usize, _: &'b mut [f32]) -> &'b [f32] {
        &self.data[r * self.dim..(r + 1) * self.dim]
    }

    #[inline(always)]
    fn prefetch(&self, r: usize) {
        prefetch(self.data, r * self.dim);
    }
}

/// A table stored in a reduced-precision format, `row_bytes` a row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncodedRows<'a> {
    pub table: TablePrecision,
    pub data: &'a [u8],
    pub row_bytes: usize,
}

impl Rows for EncodedRows<'_> {
    #[inline(always)]
    fn load(&self, r: usize, dst: &mut [f32]) {
        decode_row(
            self.table,
            &self.data[r * self.row_bytes..(r + 1) * self.row_bytes],
            dst,
        );
    }

    #[inline(always)]
    fn row<'b>(&'b self, r: usize, buf: &'b mut [f32]) -> &'b [f32] {
        self.load(r, buf);
        buf
    }

    #[inline(always)]
    fn prefetch(&self, r: usize) {
        // A row-wise int8 row may straddle two lines; its first one is the one the decode
        // starts on.
        prefetch(self.data, r * self.row_bytes);
    }
}

/// The embedding table of a model file, in its format.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TableRows<'a> {
    F32(F32Rows<'a>),
    Encoded(EncodedRows<'a>),
}

impl<'a> TableRows<'a> {
    /// The table stored as `table` in `bytes` (whole rows of `dim` values; an f32 table must be
    /// 4-byte aligned, which a model file's is), or `None` if they are not.
    pub(crate) fn new(table: TablePrecision, bytes: &'a [u8], dim: usize) -> Option<Self> {
        let row_bytes = table.row_bytes(dim);
        if dim == 0 || !bytes.len().is_multiple_of(row_bytes) {
            return None;
        }
        Some(match table {
            TablePrecision::F32 => TableRows::F32(F32Rows {
                data: bytemuck::try_cast_slice(bytes).ok()?,
                dim,
            }),
            _ => TableRows::Encoded(EncodedRows {
                table,
                data: bytes,
                row_bytes,
            }),
        })
    }

    /// Writes row `r` into `dst` (`dim` values).
    pub(crate) fn load(&self, r: usize, dst: &mut [f32]) {
        match self {
            TableRows::F32(t) => t.load(r, dst),
            TableRows::Encoded(t) => t.load(r, dst),
        }
    }
}
