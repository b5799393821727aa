//! Zeroed `f32` tables backed by transparent huge pages where the kernel allows it.
//!
//! The embedding table, its first-order weights and the optimizer's per-row state are read
//! and written at random rows, a few per sample. With 4 KiB pages almost every such access
//! also misses the TLB (a 1M-row table at D = 16 spans 16k pages; the second-level TLB holds
//! about 2k); with 2 MiB pages the same table spans 32. Linux's default THP mode, `madvise`,
//! gives huge pages only to ranges that ask for them, so this asks, before the first write
//! faults the pages in. Elsewhere, or if the kernel says no, the table is an ordinary `Vec`.

/// Below this a table is small enough for the TLB anyway: not worth a system call.
const MIN_BYTES: usize = 4 << 20;

/// `vec![0.0; n]`, with huge pages requested for it on Linux when it is large.
pub(crate) fn zeroed(n: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; n];
    advise(&mut v);
    v
}

/// Asks for huge pages over the 2 MiB-aligned interior of `v` (a hint: errors are ignored,
/// the contents are unchanged either way).
#[cfg(target_os = "linux")]
fn advise(v: &mut [f32]) {
    const HUGE: usize = 2 << 20;
    let bytes = std::mem::size_of_val(v);
    if bytes < MIN_BYTES {
        return;
    }
    let start = v.as_mut_ptr() as usize;
    let (begin, end) = (start.next_multiple_of(HUGE), (start + bytes) / HUGE * HUGE);
    if begin < end {
        // SAFETY: `begin..end` lies inside `v`'s allocation, which we hold mutably; MADV_HUGEPAGE
        // only changes how the kernel backs the range, never its contents or its validity.
        unsafe {
            libc::madvise(begin as *mut libc::c_void, end - begin, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_: &mut [f32]) {}

#[cfg(test)]
mod tests {
    #[test]
    fn zeroed_tables_are_zero_at_every_size() {
        for n in [0, 1, 1000, (4 << 20) / 4 + 17, (9 << 20) / 4] {
            let v = super::zeroed(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x == 0.0));
        }
    }
}
