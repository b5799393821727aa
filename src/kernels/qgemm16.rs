//! The 16-lane int8 kernels (AVX-512 VNNI), written once: a 12 × 16 tile of i32 sums in twelve
//! accumulators (per `k` group, one aligned load of the panel line and, per row, a broadcast
//! of its four activations and one `vpdpbusd`: u8 × s8, four products summed into each i32
//! lane without saturation); the full-panel epilogue on vectors; and the activations' range.
//!
//! As for the f32 kernels ([`super::gemm16`]), the kernels are a macro over the lane
//! operations: `avx512/qgemm.rs` expands it with the zmm intrinsics, the tests with
//! [`emulated`] lanes, plain code with the intrinsics' results, so the VNNI kernel's few-row
//! sets of sums, its remainders and its epilogue run in the proptests of every CPU and agree
//! with the other int8 paths bit for bit.

/// Rows per tile: twelve `vpdpbusd` chains hide its latency on the two ports that run it.
pub(crate) const MR: usize = 12;

/// Implements `QGemmKernel` for the kernel type `$K` over the lane operations named: `tile`
/// (with its per-row kernels `rows_of` and `step`), `finish_full` (the epilogue of a full
/// 16-column panel), `row_range` (`quant::row_range` on vectors), and the shared loop nest and
/// quantization compiled with the lanes' features. The lanes: an i32 vector
/// `$I` and an f32 vector `$F`, and functions with the signatures and results of the AVX-512
/// intrinsics they stand for (`_mm512_` omitted): `setzero_si512`, `set1_epi32`,
/// `load_si512`, `loadu_si512`, `storeu_si512`, `dpbusd_epi32`, `add_epi32`, `sub_epi32`,
/// `mullo_epi32`, `cvtepi32_ps`, `setzero_ps`, `set1_ps`, `loadu_ps`, `maskz_loadu_ps`,
/// `storeu_ps`, `mul_ps`, `add_ps`, `max_ps`, `min_ps`, `reduce_min_ps`, `reduce_max_ps`.
/// `$attr` goes on the kernels (the target features); `finish_full` is inlined into its
/// caller (the loop nest compiled with them).
macro_rules! qgemm16_kernels {
    (
        $(#[$attr:meta])*
        kernel = $K:ident, int = $I:ty, float = $F:ty,
        izero = $izero:path, iset1 = $iset1:path, iload_aligned = $iload_aligned:path,
        iload = $iload:path, istore = $istore:path, dpbusd = $dpbusd:path, iadd = $iadd:path,
        isub = $isub:path, imul = $imul:path, to_float = $to_float:path,
        fzero = $fzero:path, fset1 = $fset1:path, fload = $fload:path,
        fload_masked = $fload_masked:path, fstore = $fstore:path, fmul = $fmul:path,
        fadd = $fadd:path, fmax = $fmax:path, fmin = $fmin:path,
        reduce_min = $reduce_min:path, reduce_max = $reduce_max:path $(,)?
    ) => {
        impl QGemmKernel for $K {
            const MR: usize = MR;

            unsafe fn tile(a: &[u8], lda: usize, rows: usize, panel: &[QLine], acc: &mut Acc) {
                // SAFETY: the trait's contract (the CPU runs the lanes: a VNNI path is made only
                // where it does; `rows ≤ MR`; `a` long enough), passed on.
                unsafe { tile(a, lda, rows, panel, acc) }
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
                // SAFETY: the trait's contract, passed on.
                unsafe { finish_full(acc, params, w, j, relu, c, ldc) }
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
                // SAFETY: the trait's contract, passed on.
                unsafe { quantize_here(x, width, rows, q, stride, params) }
            }
        }

        /// The shared loop nest and epilogue, compiled with the lanes' features.
        ///
        /// # Safety
        /// The CPU runs the lanes' instructions, and `call` is checked.
        $(#[$attr])*
        unsafe fn layer_here(call: &mut LayerCall<'_>) {
            // SAFETY: the caller's contract.
            unsafe { layer_loop::<$K>(call) }
        }

        /// The shared activation quantization, compiled with the lanes' features.
        ///
        /// # Safety
        /// The CPU runs the lanes' instructions.
        $(#[$attr])*
        unsafe fn quantize_here(
            x: &[f32],
            width: usize,
            rows: usize,
            q: &mut [u8],
            stride: usize,
            params: &mut [RowQuant],
        ) {
            // SAFETY: this function's features are `row_range`'s.
            quantize_rows_with(x, width, rows, q, stride, params, |row| unsafe {
                row_range(row)
            });
        }

        /// `QGemmKernel::tile`.
        ///
        /// # Safety
        /// The CPU runs the lanes' instructions, `rows ≤ MR`, and `a` holds `rows` rows `lda`
        /// apart of `4 · panel.len()` bytes.
        $(#[$attr])*
        unsafe fn tile(a: &[u8], lda: usize, rows: usize, panel: &[QLine], acc: &mut Acc) {
            // SAFETY: the caller's contract, passed on; each arm's `R` is `rows`.
            unsafe {
                crate::kernels::by_tile_rows!(
                    rows,
                    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                    MR,
                    rows_of(a, lda, panel, acc)
                )
            }
        }

        /// `QGemmKernel::finish`: `finish_tile` for a ragged last panel, its operations in its
        /// order on vectors for a full one (no fused multiply-add, so the same results).
        ///
        /// # Safety
        /// The CPU runs the lanes' instructions; the arguments are as `finish_tile` takes them.
        #[inline(always)]
        unsafe fn finish_full(
            acc: &Acc,
            params: &[RowQuant],
            w: &QuantizedMatrix,
            j: usize,
            relu: bool,
            c: &mut [f32],
            ldc: usize,
        ) {
            let first = j * QNR;
            if w.n() - first < QNR {
                finish_tile(acc, params, w, j, relu, c, ldc);
                return;
            }
            assert!(params.len() <= acc.len() && c.len() >= (params.len() - 1) * ldc + first + QNR);
            // SAFETY: the caller's contract (the CPU runs the lanes). The column data of panel
            // `j` is 16 values of each padded vector; row `r`'s 16 outputs at `r·ldc + first`
            // lie in `c` (asserted above).
            unsafe {
                let scale = $fload(w.scales()[first..first + QNR].as_ptr());
                let sums = $iload(w.column_sums()[first..first + QNR].as_ptr() as *const $I);
                let bias = $fload(w.bias()[first..first + QNR].as_ptr());
                let zero = $fzero();
                for (r, (acc, p)) in acc.iter().zip(params).enumerate() {
                    // `finish_tile`'s operations in its order: i32 sum minus zero point times
                    // column sum, to f32 (nearest), times (row scale × column scale), plus bias.
                    let sum = $iload(acc.as_ptr() as *const $I);
                    let shifted = $isub(sum, $imul($iset1(p.zero), sums));
                    let step = $fmul($fset1(p.scale), scale);
                    let mut v = $fadd($fmul($to_float(shifted), step), bias);
                    if relu {
                        // `vmaxps(v, 0)` is 0 unless v > 0: `finish_tile`'s select.
                        v = $fmax(v, zero);
                    }
                    $fstore(c.as_mut_ptr().add(r * ldc + first), v);
                }
            }
        }

        /// `quant::row_range` on vectors: the same minimum and maximum (of the finite values;
        /// NaN rows become NaN scores whatever this returns).
        ///
        /// # Safety
        /// The CPU runs the lanes' instructions.
        $(#[$attr])*
        unsafe fn row_range(row: &[f32]) -> (f32, f32) {
            let (mut lo, mut hi) = ($fzero(), $fzero());
            let mut chunks = row.chunks_exact(QNR);
            for chunk in &mut chunks {
                // SAFETY: a chunk is 16 f32.
                let v = unsafe { $fload(chunk.as_ptr()) };
                lo = $fmin(lo, v);
                hi = $fmax(hi, v);
            }
            let tail = chunks.remainder();
            // SAFETY: the mask covers the `tail.len() < 16` values of the tail; the rest load
            // as 0, which the range includes anyway.
            let v = unsafe { $fload_masked((1u16 << tail.len()) - 1, tail.as_ptr()) };
            lo = $fmin(lo, v);
            hi = $fmax(hi, v);
            ($reduce_min(lo), $reduce_max(hi))
        }

        /// The kernel for `R` rows.
        ///
        /// # Safety
        /// The CPU runs the lanes' instructions; `a` holds `R` rows `lda` apart of
        /// `4 · panel.len()` bytes.
        $(#[$attr])*
        unsafe fn rows_of<const R: usize>(a: &[u8], lda: usize, panel: &[QLine], acc: &mut Acc) {
            let groups = panel.len();
            assert!(R <= MR && (groups == 0 || a.len() >= (R - 1) * lda + 4 * groups));
            // Few rows leave the `vpdpbusd` latency exposed on one accumulator per row: they
            // take groups in turn into four sets of sums, added at the end (integer sums: the
            // order changes nothing). Each set is indexed only by constants, so the sums stay
            // in registers (an index that varies at run time puts the array on the stack:
            // 2-row layers ran 3× slower so).
            let zero = $izero();
            let mut sets = [[zero; R]; 4];
            let [s0, s1, s2, s3] = &mut sets;
            if R <= 3 {
                let mut quads = panel.chunks_exact(4);
                for (i, four) in (&mut quads).enumerate() {
                    let g = 4 * i;
                    // SAFETY: `step`'s contract: this function's lanes; groups below `groups`.
                    unsafe {
                        step(s0, a, lda, g, &four[0]);
                        step(s1, a, lda, g + 1, &four[1]);
                        step(s2, a, lda, g + 2, &four[2]);
                        step(s3, a, lda, g + 3, &four[3]);
                    }
                }
                let first = groups - quads.remainder().len();
                for (g, line) in (first..).zip(quads.remainder()) {
                    // SAFETY: as above.
                    unsafe { step(s0, a, lda, g, line) };
                }
            } else {
                for (g, line) in panel.iter().enumerate() {
                    // SAFETY: `step`'s contract: this function's lanes; `g < groups`.
                    unsafe { step(s0, a, lda, g, line) };
                }
            }
            for (r, out) in acc.iter_mut().take(R).enumerate() {
                let sum = $iadd($iadd(s0[r], s1[r]), $iadd(s2[r], s3[r]));
                // SAFETY: a row of `acc` is 16 i32: one unaligned store.
                unsafe { $istore(out.as_mut_ptr() as *mut $I, sum) };
            }
        }

        /// Adds group `g` of the `R` rows of `a` (`lda` apart) times `line` to `sums`.
        ///
        /// # Safety
        /// The CPU runs the lanes' instructions; row `r`'s group `g`, `r·lda + 4g .. + 4`,
        /// lies in `a`.
        $(#[$attr])*
        #[inline]
        unsafe fn step<const R: usize>(
            sums: &mut [$I; R],
            a: &[u8],
            lda: usize,
            g: usize,
            line: &QLine,
        ) {
            // SAFETY: a line is 64 bytes, 64-byte aligned (`QLine`). Row `r`'s group `g` is
            // inside `a` (the caller's contract); read unaligned.
            unsafe {
                let w = $iload_aligned(line.0.as_ptr() as *const $I);
                for (r, sum) in sums.iter_mut().enumerate() {
                    let at = a.as_ptr().add(r * lda + 4 * g);
                    let four = std::ptr::read_unaligned(at as *const i32);
                    *sum = $dpbusd(*sum, $iset1(four), w);
                }
            }
        }
    };
}
pub(crate) use qgemm16_kernels;

/// The int8 lane operations in plain code, lane by lane, with the AVX-512 intrinsics' results
/// (`vpdpbusd`'s u8 × s8 products summed into wrapping i32 lanes, `vcvtdq2ps` rounding to
/// nearest, `vminps`/`vmaxps` returning the second operand unless the first is smaller or
/// larger), and the VNNI kernel expanded over them as a path the tests run on any CPU.
#[cfg(test)]
pub(crate) mod emulated {
    use super::MR;
    use crate::kernels::gemm16::emulated::{
        F32x16, add, load as fload, load_masked as fload_masked, max, splat, store as fstore,
        zero as fzero,
    };
    use crate::kernels::qgemm::{Acc, LayerCall, QGemmKernel, finish_tile, layer_loop};
    use crate::kernels::quant::{QLine, QNR, QuantizedMatrix, RowQuant, quantize_rows_with};

    /// Sixteen i32 lanes.
    pub(crate) type I32x16 = [i32; 16];

    fn izero() -> I32x16 {
        [0; 16]
    }
    fn iset1(v: i32) -> I32x16 {
        [v; 16]
    }
    /// # Safety
    /// 16 values readable at `p`, 64-byte aligned (checked).
    unsafe fn iload_aligned(p: *const I32x16) -> I32x16 {
        assert!(
            (p as usize).is_multiple_of(64),
            "an aligned load from an unaligned address"
        );
        // SAFETY: the caller's contract.
        unsafe { iload(p) }
    }
    /// # Safety
    /// 16 values readable at `p`.
    unsafe fn iload(p: *const I32x16) -> I32x16 {
        // SAFETY: the caller's contract.
        unsafe { p.read_unaligned() }
    }
    /// # Safety
    /// 16 values writable at `p`.
    unsafe fn istore(p: *mut I32x16, v: I32x16) {
        // SAFETY: the caller's contract.
        unsafe { p.write_unaligned(v) }
    }
    /// `vpdpbusd`: lane `l` plus the four products of `a`'s unsigned and `b`'s signed bytes
    /// `4l..4l + 4`, wrapping.
    fn dpbusd(src: I32x16, a: I32x16, b: I32x16) -> I32x16 {
        std::array::from_fn(|l| {
            let (a, b) = (a[l].to_le_bytes(), b[l].to_le_bytes());
            (0..4).fold(src[l], |s, t| {
                s.wrapping_add(i32::from(a[t]) * i32::from(b[t] as i8))
            })
        })
    }
    fn iadd(a: I32x16, b: I32x16) -> I32x16 {
        std::array::from_fn(|l| a[l].wrapping_add(b[l]))
    }
    fn isub(a: I32x16, b: I32x16) -> I32x16 {
        std::array::from_fn(|l| a[l].wrapping_sub(b[l]))
    }
    fn imul(a: I32x16, b: I32x16) -> I32x16 {
        std::array::from_fn(|l| a[l].wrapping_mul(b[l]))
    }
    fn to_float(a: I32x16) -> F32x16 {
        a.map(|v| v as f32)
    }
    fn fmul(a: F32x16, b: F32x16) -> F32x16 {
        std::array::from_fn(|l| a[l] * b[l])
    }
    fn fmin(a: F32x16, b: F32x16) -> F32x16 {
        std::array::from_fn(|l| if a[l] < b[l] { a[l] } else { b[l] })
    }
    fn reduce_min(a: F32x16) -> f32 {
        a.into_iter()
            .fold(f32::INFINITY, |m, v| if v < m { v } else { m })
    }
    fn reduce_max(a: F32x16) -> f32 {
        a.into_iter()
            .fold(f32::NEG_INFINITY, |m, v| if v > m { v } else { m })
    }

    super::qgemm16_kernels! {
        kernel = EmulatedVnni, int = I32x16, float = F32x16, izero = izero, iset1 = iset1,
        iload_aligned = iload_aligned, iload = iload, istore = istore, dpbusd = dpbusd,
        iadd = iadd, isub = isub, imul = imul, to_float = to_float, fzero = fzero,
        fset1 = splat, fload = fload, fload_masked = fload_masked, fstore = fstore,
        fmul = fmul, fadd = add, fmax = max, fmin = fmin, reduce_min = reduce_min,
        reduce_max = reduce_max,
    }

    /// The AVX-512 VNNI path's logic on emulated lanes (tests only).
    pub(crate) struct EmulatedVnni;
}
