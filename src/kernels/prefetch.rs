//! Software prefetch for the embedding gather: random rows of a large table miss every cache,
//! and asking for a row a few samples ahead overlaps those misses.

/// Hints the CPU to start loading the cache line holding `data[index]`. Does nothing when
/// `index` is out of range or the target has no prefetch instruction.
#[inline(always)]
pub fn prefetch<T>(data: &[T], index: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = data.get(index) {
        // SAFETY: a prefetch never faults and has no architectural effect; the address is a
        // valid element of `data` anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                (v as *const T).cast::<i8>(),
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, index);
}

/// `dst.copy_from_slice(src)`, inlined as 16-byte moves for the common embedding widths (a call
/// to `memcpy` per 64-byte row costs as much as the copy). The moves are SSE loads and stores,
/// not array copies: LLVM turned fixed-size array copies back into one shared `memcpy` call
/// (seen in the disassembly of the gather, 10–13% of a Criteo-like profile).
///
/// # Panics
/// If the lengths differ.
#[inline(always)]
pub fn copy_row(dst: &mut [f32], src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32]) {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_storeu_ps};
        let d: &mut [f32; N] = dst.try_into().expect("equal lengths");
        let s: &[f32; N] = src.try_into().expect("equal lengths");
        for i in (0..N).step_by(4) {
            // SAFETY: SSE is part of x86-64; `i + 4 ≤ N` (N is a multiple of 4), so both
            // 16-byte accesses lie inside the arrays.
            unsafe { _mm_storeu_ps(d.as_mut_ptr().add(i), _mm_loadu_ps(s.as_ptr().add(i))) };
        }
    }
    #[cfg(target_arch = "x86_64")]
    match (dst.len(), src.len()) {
        (8, 8) => return fixed::<8>(dst, src),
        (16, 16) => return fixed::<16>(dst, src),
        (32, 32) => return fixed::<32>(dst, src),
        (64, 64) => return fixed::<64>(dst, src),
        _ => {}
    }
    dst.copy_from_slice(src);
}

#[cfg(test)]
mod tests {
    use super::copy_row;

    #[test]
    fn copy_row_copies_every_width() {
        for n in 0..70 {
            let src: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let mut dst = vec![f32::NAN; n];
            copy_row(&mut dst, &src);
            assert_eq!(dst, src, "width {n}");
        }
    }
}
