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

/// `dst.copy_from_slice(src)`, inlined as fixed-size moves for the common embedding widths
/// (a call to `memcpy` per 64-byte row costs as much as the copy).
#[inline(always)]
pub fn copy_row(dst: &mut [f32], src: &[f32]) {
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32]) {
        let d: &mut [f32; N] = dst.try_into().expect("equal lengths");
        *d = *<&[f32; N]>::try_from(src).expect("equal lengths");
    }
    match (dst.len(), src.len()) {
        (8, 8) => fixed::<8>(dst, src),
        (16, 16) => fixed::<16>(dst, src),
        (32, 32) => fixed::<32>(dst, src),
        (64, 64) => fixed::<64>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}
