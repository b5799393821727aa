//! [`Table`]: the trainer's large `f32` tables (embedding rows, first-order weights, the
//! embedding optimizer's state), laid out for random row access.
//!
//! Two things make a random row cheap, and a `Vec<f32>` has neither:
//! - **64-byte alignment.** The allocator aligns a `Vec<f32>` to 16 bytes, so a 64-byte row
//!   (D = 16) straddles two cache lines, and every row read or update misses twice.
//! - **Huge pages.** With 4 KiB pages almost every random row also misses the TLB (a 1M-row
//!   table at D = 16 spans 16k pages; the second-level TLB holds about 2k); with 2 MiB pages
//!   it spans 32. Linux's common default THP mode, `madvise`, gives huge pages only to ranges
//!   that ask for them, so a table asks before its first write faults the pages in. Elsewhere,
//!   or if the kernel says no, the table is still correct, only slower.

use crate::kernels::gemm::{Line, NR};
use std::ops::{Deref, DerefMut};

/// Below this a table is small enough for the TLB anyway: not worth a system call.
const HUGE_MIN_BYTES: usize = 4 << 20;

/// A fixed-length `f32` table, 64-byte aligned, backed by huge pages where the kernel allows.
/// It dereferences to `[f32]`.
#[derive(PartialEq, Default)]
pub struct Table {
    lines: Vec<Line>,
    len: usize,
}

impl Table {
    /// `len` zeros.
    pub fn zeroed(len: usize) -> Table {
        let n = len.div_ceil(NR);
        let mut lines = Vec::with_capacity(n);
        // Advise before the zeros are written: the first write to each page decides its size.
        advise_huge(lines.spare_capacity_mut());
        lines.resize(n, Line::default());
        Table { lines, len }
    }

    /// A table holding a copy of `values`.
    pub fn from_slice(values: &[f32]) -> Table {
        let mut t = Table::zeroed(values.len());
        t.copy_from_slice(values);
        t
    }
}

impl Deref for Table {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &bytemuck::cast_slice(&self.lines)[..self.len]
    }
}

impl DerefMut for Table {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut bytemuck::cast_slice_mut(&mut self.lines)[..self.len]
    }
}

impl Table {
    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        self
    }

    /// The values, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        self
    }
}

impl<'a> IntoIterator for &'a Table {
    type Item = &'a f32;
    type IntoIter = std::slice::Iter<'a, f32>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut Table {
    type Item = &'a mut f32;
    type IntoIter = std::slice::IterMut<'a, f32>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl Clone for Table {
    /// A copy with the same layout (aligned, huge pages), which a derived clone would lose.
    fn clone(&self) -> Table {
        Table::from_slice(self)
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl From<Vec<f32>> for Table {
    fn from(values: Vec<f32>) -> Table {
        Table::from_slice(&values)
    }
}

/// Asks for huge pages over the 2 MiB-aligned interior of `memory` (a hint: a refusal is
/// ignored, the memory is untouched either way).
#[cfg(target_os = "linux")]
fn advise_huge<T>(memory: &mut [T]) {
    const HUGE: usize = 2 << 20;
    let bytes = std::mem::size_of_val(memory);
    if bytes < HUGE_MIN_BYTES {
        return;
    }
    let start = memory.as_mut_ptr() as usize;
    let (begin, end) = (start.next_multiple_of(HUGE), (start + bytes) / HUGE * HUGE);
    if begin < end {
        // SAFETY: `begin..end` lies inside `memory`, which we hold mutably; MADV_HUGEPAGE only
        // changes how the kernel backs the range, never its contents or its validity.
        unsafe {
            libc::madvise(begin as *mut libc::c_void, end - begin, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge<T>(_: &mut [T]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_zeroed_aligned_and_copy_exactly() {
        for n in [
            0,
            1,
            15,
            16,
            17,
            1000,
            HUGE_MIN_BYTES / 4 + 17,
            (9 << 20) / 4,
        ] {
            let t = Table::zeroed(n);
            assert_eq!(t.len(), n);
            assert!(t.iter().all(|&x| x == 0.0));
            assert_eq!(t.as_ptr() as usize % 64, 0, "{n} values");
            let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let copy = Table::from(values.clone());
            assert_eq!(&copy[..], &values[..]);
            let again = copy.clone();
            assert_eq!(again, copy);
            assert_eq!(again.as_ptr() as usize % 64, 0);
        }
    }
}
