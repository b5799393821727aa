//! The int8 micro-kernel on AVX-VNNI (the VEX-encoded `vpdpbusd` of CPUs with AVX2 and no
//! AVX-512: Intel Alder Lake and later client parts, Sierra Forest; AMD Zen 5 has it beside
//! AVX-512): a 6 × 16 tile of i32 sums in twelve ymm accumulators. Per `k` group, the panel
//! line's two halves (columns 0–7 and 8–15) are loaded once; each row's four activations are
//! broadcast and `vpdpbusd` adds the four u8 × s8 products of each lane into its i32 sum, with
//! no intermediate saturation: the sums the AVX2 kernel builds with `vpmaddubsw` + `vpmaddwd`
//! + `vpaddd`, in one instruction. The epilogue and the quantization are the AVX2 ones.

use super::Avx2Fma;
use crate::kernels::qgemm::{Acc, LayerCall, QGemmKernel, layer_loop};
use crate::kernels::quant::{QLine, QNR};
use crate::kernels::quant::{QuantizedMatrix, RowQuant};
use std::arch::x86_64::*;

/// AVX2 with AVX-VNNI, as an int8 kernel type; code runs on it only through an
/// [`Int8Path`](crate::kernels::qgemm::Int8Path) of kind `AvxVnni`, made only where the CPU
/// has both.
pub(crate) struct AvxVnni;

/// Twelve accumulators, two weight halves and a broadcast: 15 of the 16 ymm registers.
const MR: usize = 6;

impl QGemmKernel for AvxVnni {
    const MR: usize = MR;

    unsafe fn tile(a: &[u8], lda: usize, rows: usize, panel: &[QLine], acc: &mut Acc) {
        // SAFETY: the trait's contract (AVX2 and AVX-VNNI present, `rows ≤ MR`, `a` long
        // enough), passed on.
        unsafe {
            crate::kernels::by_tile_rows!(rows, [1, 2, 3, 4, 5], MR, rows_of(a, lda, panel, acc))
        }
    }

    #[inline(always)]
    unsafe fn finish(
        acc: &Acc,
        params: &[RowQuant],
        w: &QuantizedMatrix,
        j: usize,
        relu: bool,
        c: &mut [f32],
        ldc: usize,
    ) {
        // SAFETY: the trait's contract; AVX-VNNI implies the AVX2 the epilogue needs.
        unsafe { <Avx2Fma as QGemmKernel>::finish(acc, params, w, j, relu, c, ldc) }
    }

    unsafe fn layer(call: &mut LayerCall<'_>) {
        // SAFETY: the trait's contract, passed on.
        unsafe { layer_here(call) }
    }

    unsafe fn quantize(
        x: &[f32],
        width: usize,
        rows: usize,
        q: &mut [u8],
        stride: usize,
        params: &mut [RowQuant],
    ) {
        // SAFETY: the trait's contract; AVX-VNNI implies AVX2.
        unsafe { <Avx2Fma as QGemmKernel>::quantize(x, width, rows, q, stride, params) }
    }
}

/// The shared loop nest and the AVX2 epilogue, compiled for this instruction set.
///
/// # Safety
/// The CPU supports it, and `call` is checked.
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn layer_here(call: &mut LayerCall<'_>) {
    // SAFETY: the caller's contract.
    unsafe { layer_loop::<AvxVnni>(call) }
}

/// The kernel for `R` rows.
///
/// # Safety
/// The CPU supports AVX2 and AVX-VNNI; `a` holds `R` rows `lda` apart of `4 · panel.len()`
/// bytes.
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn rows_of<const R: usize>(a: &[u8], lda: usize, panel: &[QLine], acc: &mut Acc) {
    let groups = panel.len();
    assert!(R <= MR && (groups == 0 || a.len() >= (R - 1) * lda + 4 * groups));
    // One or two rows leave the `vpdpbusd` latency exposed on two accumulators per row: they
    // take alternate groups into two sets of sums, added at the end (integer sums: the order
    // changes nothing). The sets are separate arrays, each indexed only by constants, so they
    // stay in registers (an index that varies at run time puts an array on the stack).
    let mut even = [[_mm256_setzero_si256(); 2]; R];
    let mut odd = [[_mm256_setzero_si256(); 2]; R];
    if R <= 2 {
        let mut pairs = panel.chunks_exact(2);
        for (i, two) in (&mut pairs).enumerate() {
            // SAFETY: `step`'s contract: this function's features; groups below `groups`.
            unsafe {
                step(&mut even, a, lda, 2 * i, &two[0]);
                step(&mut odd, a, lda, 2 * i + 1, &two[1]);
            }
        }
        if let [line] = pairs.remainder() {
            // SAFETY: as above.
            unsafe { step(&mut even, a, lda, groups - 1, line) };
        }
    } else {
        for (g, line) in panel.iter().enumerate() {
            // SAFETY: `step`'s contract: this function's features; `g < groups`.
            unsafe { step(&mut even, a, lda, g, line) };
        }
    }
    for (out, (e, o)) in acc.iter_mut().zip(even.iter().zip(&odd)) {
        let p = out.as_mut_ptr() as *mut __m256i;
        // SAFETY: a row of `acc` is 16 i32: two unaligned ymm stores.
        unsafe {
            _mm256_storeu_si256(p, _mm256_add_epi32(e[0], o[0]));
            _mm256_storeu_si256(p.add(1), _mm256_add_epi32(e[1], o[1]));
        }
    }
    const _: () = assert!(QNR == 16);
}

/// Adds group `g` of the `R` rows of `a` (`lda` apart) times `line` to `sums`.
///
/// # Safety
/// The CPU supports AVX2 and AVX-VNNI; row `r`'s group `g`, `r·lda + 4g .. + 4`, lies in `a`.
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
unsafe fn step<const R: usize>(
    sums: &mut [[__m256i; 2]; R],
    a: &[u8],
    lda: usize,
    g: usize,
    line: &QLine,
) {
    let w = line.0.as_ptr() as *const __m256i;
    // SAFETY: a line is 64 bytes, 64-byte aligned (`QLine`): two aligned ymm loads. Row `r`'s
    // group `g` is inside `a` (the caller's contract); read unaligned.
    unsafe {
        let (w0, w1) = (_mm256_load_si256(w), _mm256_load_si256(w.add(1)));
        for (r, sum) in sums.iter_mut().enumerate() {
            let four = std::ptr::read_unaligned(a.as_ptr().add(r * lda + 4 * g) as *const i32);
            let x = _mm256_set1_epi32(four);
            sum[0] = _mm256_dpbusd_avx_epi32(sum[0], x, w0);
            sum[1] = _mm256_dpbusd_avx_epi32(sum[1], x, w1);
        }
    }
}
