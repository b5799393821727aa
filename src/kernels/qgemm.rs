//! The int8 layer: `C = act(dequantize(Q_A · Q_W) + b)` over rows of activations quantized per
//! row and weights quantized per column ([`super::quant`]).
//!
//! One loop nest ([`qgemm_bias_act`]) walks the 16-column panels of the weights and, for each,
//! tiles of up to `MR` rows; the `QGemmKernel` of an [`Int8Path`] forms a tile's exact i32
//! sums, and one shared epilogue (`finish_tile`) dequantizes them and adds the bias (and
//! ReLU). The integer sums are exact on every path and the epilogue is the same code, so the
//! scores of an int8 model are bit-identical whatever the CPU. Panels are the outer loop: a
//! panel's weights (`16 × k` bytes, 10 KiB at `k` = 624) stay in L1 across all the rows of a
//! block. One row (batch 1) is a tile of one row: the same code and the same sums, reading
//! weights a quarter the size of f32 ones.

use super::quant::{QK, QLine, QNR, QuantizedMatrix, RowQuant};
use super::{Isa, IsaError, IsaKind};

/// Environment variable that picks the int8 kernels by [`Int8Path::name`] (`scalar`, `avx2`,
/// `avx512-vnni`, `amx`), say to compare AMX with VNNI or to keep AMX off; read when a model
/// with an int8 MLP is opened. Unset or empty: the kernels of the model's instruction set
/// ([`Int8Path::of`]). A name this CPU lacks is an error, not a silent fallback.
pub const INT8_ENV: &str = "DEEPFM_INT8";

/// The integer micro-kernel of one path: the i32 sums of a tile of at most `MR` rows and one
/// 16-column panel.
pub(crate) trait QGemmKernel {
    /// Rows of a tile (at most [`MAX_MR`]).
    const MR: usize;

    /// `acc[r][c] = Σ_g Σ_t a[r·lda + 4g + t] · panel[g][4c + t]` for `r < rows` (rows at and past
    /// `rows` are unspecified).
    ///
    /// # Safety
    /// This CPU runs the kernel's instructions (the caller holds the path, made by
    /// [`Int8Path::of`]), `1 ≤ rows ≤ MR`, every weight pair keeps the pair rule
    /// (`QuantizedMatrix`), and `a` holds `rows` rows `lda` bytes apart of `4 · panel.len()`
    /// bytes each.
    unsafe fn tile(a: &[u8], lda: usize, rows: usize, panel: &[QLine], acc: &mut Acc);

    /// The epilogue of a tile: [`finish_tile`], which this default runs; a path may run the
    /// same operations (no fused multiply-add) on vectors, with the same results.
    ///
    /// # Safety
    /// This CPU runs the kernel's instructions; the arguments are as [`finish_tile`] takes
    /// them.
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
        finish_tile(acc, params, w, j, relu, c, ldc);
    }

    /// Runs [`layer_loop`] compiled for this path's instruction set (the loop nest and the
    /// shared epilogue are plain code: this is where they get its vector width).
    ///
    /// # Safety
    /// This CPU runs the kernel's instructions, and `call` is checked ([`LayerCall::check`]).
    unsafe fn layer(call: &mut LayerCall<'_>);

    /// Runs [`quantize_rows`](super::quant::quantize_rows) compiled for this path's instruction set.
    ///
    /// # Safety
    /// This CPU runs the kernel's instructions.
    unsafe fn quantize(
        x: &[f32],
        width: usize,
        rows: usize,
        q: &mut [u8],
        stride: usize,
        params: &mut [RowQuant],
    );
}

/// The arguments of one int8 layer ([`qgemm_bias_act`]).
pub(crate) struct LayerCall<'a> {
    pub a: &'a [u8],
    pub lda: usize,
    pub params: &'a [RowQuant],
    pub rows: usize,
    pub w: &'a QuantizedMatrix,
    pub relu: bool,
    pub c: &'a mut [f32],
    pub ldc: usize,
}

impl LayerCall<'_> {
    /// Panics unless the buffers hold what [`qgemm_bias_act`] documents.
    fn check(&self) {
        let depth = QK * self.w.groups();
        assert!(
            self.lda >= depth && self.ldc >= self.w.n(),
            "strides too short"
        );
        assert!(self.params.len() >= self.rows, "one RowQuant per row");
        if self.rows > 0 {
            assert!(
                self.a.len() >= (self.rows - 1) * self.lda + depth,
                "activations too short"
            );
            assert!(
                self.c.len() >= (self.rows - 1) * self.ldc + self.w.n(),
                "output too short"
            );
        }
    }
}

/// The ReLU of every int8 epilogue, as a select rather than `f32::max`: +0.0 for −0.0 and NaN
/// alike, whatever the vector width, so scalar and vector epilogues agree bit for bit.
#[inline(always)]
pub(crate) fn relu_select(v: f32) -> f32 {
    if v.partial_cmp(&0.0) == Some(std::cmp::Ordering::Greater) {
        v
    } else {
        0.0
    }
}

/// Tallest tile of any kernel.
pub const MAX_MR: usize = 32;
/// A tile's i32 sums.
pub(crate) type Acc = [[i32; QNR]; MAX_MR];

/// Which integer kernels an int8 layer runs on: a token made only from an [`Isa`] (and, for
/// VNNI, the CPU's features), so the kernels never check the CPU again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Int8Path(Int8Kind);

/// The int8 kernels by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Int8Kind {
    /// Plain scalar integer code (the `portable` instruction set).
    Scalar,
    /// AVX2 `vpmaddubsw` / `vpmaddwd` (the `avx2` instruction set on a CPU without AVX-VNNI,
    /// and `avx512` on one without AVX-512 VNNI or AVX-VNNI).
    Avx2,
    /// AVX-VNNI `vpdpbusd` on ymm registers (the `avx2` instruction set on a CPU with
    /// AVX-VNNI, and `avx512` on one with AVX-VNNI and no AVX-512 VNNI); the epilogue and the
    /// quantization are the AVX2 ones.
    AvxVnni,
    /// AVX-512 VNNI `vpdpbusd` (the `avx512` instruction set on a CPU with AVX512_VNNI and
    /// AVX512BW, without AMX).
    Avx512Vnni,
    /// AMX `tdpbusd` tile multiplies (the `avx512` instruction set on a CPU with AMX-INT8 that
    /// the OS lets this process use, and AVX-512 VNNI; the epilogue and the quantization are
    /// the AVX-512 ones).
    Amx,
}

/// Runs `$body` with `$k` naming the kernel type of `$path`.
macro_rules! dispatch_int8 {
    ($path:expr, $k:ident => $body:expr) => {
        match $path.kind() {
            Int8Kind::Scalar => {
                type $k = $crate::kernels::portable::Portable;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            Int8Kind::Avx2 => {
                type $k = $crate::kernels::avx2::Avx2Fma;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            Int8Kind::AvxVnni => {
                type $k = $crate::kernels::avx2::AvxVnni;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            Int8Kind::Avx512Vnni => {
                type $k = $crate::kernels::avx512::Avx512;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            Int8Kind::Amx => {
                type $k = $crate::kernels::amx::Amx;
                $body
            }
            #[cfg(not(target_arch = "x86_64"))]
            Int8Kind::Avx2 | Int8Kind::AvxVnni | Int8Kind::Avx512Vnni | Int8Kind::Amx => {
                unreachable!("no x86-64 int8 path off x86-64")
            }
        }
    };
}

impl Int8Path {
    /// The int8 kernels that go with the f32 instruction set `isa`: its own, or for `avx512`
    /// the AMX kernels where this CPU has them, the OS grants them and they pass their
    /// self-check (else a warning on stderr, once), then the AVX-512 VNNI kernels where this
    /// CPU has them; for `avx2` (or an `avx512` CPU without AVX-512 VNNI) the AVX-VNNI kernels
    /// where it has those, the AVX2 ones otherwise.
    pub fn of(isa: Isa) -> Int8Path {
        Int8Path(match isa.kind() {
            IsaKind::Portable => Int8Kind::Scalar,
            #[cfg(target_arch = "x86_64")]
            IsaKind::Avx512 if amx_usable() => Int8Kind::Amx,
            #[cfg(target_arch = "x86_64")]
            IsaKind::Avx512 if has_vnni() => Int8Kind::Avx512Vnni,
            #[cfg(target_arch = "x86_64")]
            _ if has_avx_vnni() => Int8Kind::AvxVnni,
            _ => Int8Kind::Avx2,
        })
    }

    /// [`Int8Path::of`], unless [`INT8_ENV`] names another path.
    ///
    /// # Errors
    /// [`IsaError::Int8Path`] if the variable names a path this CPU lacks (or none), or one
    /// whose kernels fail their self-check here.
    pub fn detect(isa: Isa) -> Result<Int8Path, IsaError> {
        let value = std::env::var_os(INT8_ENV);
        Int8Path::from_env_value(isa, value.as_ref().map(|v| v.to_string_lossy()).as_deref())
    }

    /// What [`Int8Path::detect`] returns when [`INT8_ENV`] holds `value` (`None`: unset).
    pub fn from_env_value(isa: Isa, value: Option<&str>) -> Result<Int8Path, IsaError> {
        let name = match value {
            None | Some("") => return Ok(Int8Path::of(isa)),
            Some(name) => name,
        };
        let refuse = |reason: String| IsaError::Int8Path {
            value: name.to_string(),
            reason,
        };
        let available = Int8Path::available();
        let path = available.iter().find(|p| p.name() == name).ok_or_else(|| {
            let names: Vec<&str> = available.iter().map(|p| p.name()).collect();
            refuse(format!("this CPU has {}", names.join(", ")))
        })?;
        super::self_check::int8_passes(*path).map_err(refuse)?;
        Ok(*path)
    }

    /// Every path this CPU can run, slowest first (for tests and benchmarks).
    pub fn available() -> Vec<Int8Path> {
        let mut paths = vec![Int8Path(Int8Kind::Scalar)];
        #[cfg(target_arch = "x86_64")]
        {
            if IsaKind::Avx2Fma.is_supported() {
                paths.push(Int8Path(Int8Kind::Avx2));
            }
            if has_avx_vnni() {
                paths.push(Int8Path(Int8Kind::AvxVnni));
            }
            if has_vnni() {
                paths.push(Int8Path(Int8Kind::Avx512Vnni));
            }
            if crate::kernels::amx::has_amx() {
                paths.push(Int8Path(Int8Kind::Amx));
            }
        }
        paths
    }

    /// The kernels, by name.
    pub fn kind(self) -> Int8Kind {
        self.0
    }

    /// Short name (`scalar`, `avx2`, `avx-vnni`, `avx512-vnni`, `amx`).
    pub fn name(self) -> &'static str {
        match self.0 {
            Int8Kind::Scalar => "scalar",
            Int8Kind::Avx2 => "avx2",
            Int8Kind::AvxVnni => "avx-vnni",
            Int8Kind::Avx512Vnni => "avx512-vnni",
            Int8Kind::Amx => "amx",
        }
    }
}

/// True when the AMX kernels may run here and agree with the scalar path on the self-check's
/// problem (checked once per process; a disagreement is a warning, and the VNNI kernels are
/// used instead).
#[cfg(target_arch = "x86_64")]
fn amx_usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| {
        if !crate::kernels::amx::has_amx() {
            return false;
        }
        match super::self_check::int8_passes(Int8Path(Int8Kind::Amx)) {
            Ok(()) => true,
            Err(why) => {
                eprintln!(
                    "deepfm: the amx int8 kernels disagree with the reference on this CPU \
                     ({why}); using the avx512-vnni ones"
                );
                false
            }
        }
    })
}

/// True when this CPU has the features of the VNNI kernel (read once per open).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_vnni() -> bool {
    std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && IsaKind::Avx512.is_supported()
}

/// True when this CPU has the features of the AVX-VNNI kernel.
#[cfg(target_arch = "x86_64")]
fn has_avx_vnni() -> bool {
    std::arch::is_x86_feature_detected!("avxvnni") && IsaKind::Avx2Fma.is_supported()
}

/// `C[rows × n] = act(dequantize(Q_A · Q_W) + b)`: `a` holds `rows` quantized rows `lda`
/// bytes apart (`lda ≥ 4 · w.groups()`, from [`quantize_rows`](super::quant::quantize_rows) with their `params`), `c` holds
/// `rows` rows `ldc` apart, of which the first `w.n()` values are written.
///
/// # Panics
/// If a buffer is shorter than that, or `lda` is too short.
#[allow(clippy::too_many_arguments)]
pub fn qgemm_bias_act(
    path: Int8Path,
    a: &[u8],
    lda: usize,
    params: &[RowQuant],
    rows: usize,
    w: &QuantizedMatrix,
    relu: bool,
    c: &mut [f32],
    ldc: usize,
) {
    let mut call = LayerCall {
        a,
        lda,
        params,
        rows,
        w,
        relu,
        c,
        ldc,
    };
    call.check();
    // SAFETY: the path token was made by `Int8Path::of` (the CPU runs its kernels); the call
    // was checked.
    dispatch_int8!(path, K => unsafe { K::layer(&mut call) });
}

/// [`quantize_rows`](super::quant::quantize_rows) on `path`'s instruction set (the same result on every path).
///
/// # Panics
/// As [`quantize_rows`](super::quant::quantize_rows).
pub fn quantize_rows_on(
    path: Int8Path,
    x: &[f32],
    width: usize,
    rows: usize,
    q: &mut [u8],
    stride: usize,
    params: &mut [RowQuant],
) {
    // SAFETY: the path token was made by `Int8Path::of` (the CPU runs its instructions).
    dispatch_int8!(path, K => unsafe { K::quantize(x, width, rows, q, stride, params) });
}

/// The loop nest of one layer: panels outer, tiles of `K::MR` rows inner, each tile's sums by
/// `K::tile` and then [`finish_tile`]. Inlined into each path's `layer`, which compiles it
/// with that path's instruction set.
///
/// # Safety
/// This CPU runs `K`'s instructions, and `call` is checked ([`LayerCall::check`]).
#[inline(always)]
pub(crate) unsafe fn layer_loop<K: QGemmKernel>(call: &mut LayerCall<'_>) {
    let LayerCall {
        a,
        lda,
        params,
        rows,
        w,
        relu,
        ref mut c,
        ldc,
    } = *call;
    let depth = QK * w.groups();
    let mut acc: Acc = [[0; QNR]; MAX_MR];
    for j in 0..w.panels() {
        let panel = w.panel(j);
        let mut r0 = 0;
        while r0 < rows {
            let tile = K::MR.min(rows - r0);
            let a = &a[r0 * lda..(r0 + tile - 1) * lda + depth];
            // SAFETY: the caller's promise that the CPU runs `K`; `1 ≤ tile ≤ MR`; activations
            // come from `quantize_rows`, the weights keep the pair rule, and `a` holds `tile`
            // rows `lda` apart of `depth = 4 · panel.len()` bytes (sliced above).
            unsafe { K::tile(a, lda, tile, panel, &mut acc) };
            // SAFETY: as above.
            unsafe {
                K::finish(
                    &acc,
                    &params[r0..r0 + tile],
                    w,
                    j,
                    relu,
                    &mut c[r0 * ldc..],
                    ldc,
                )
            };
            r0 += tile;
        }
    }
}

/// The epilogue of one tile, the same code on every path: `c[r][o] = act((acc[r][o] −
/// zero_r · Σ q_w[o]) as f32 · (scale_r · s_o) + b_o)` for the tile's rows and panel `j`'s real
/// columns. Inlined into each path's loop nest: element by element the same operations
/// (no fused multiply-add), so the same results at any vector width.
#[inline(always)]
pub(crate) fn finish_tile(
    acc: &Acc,
    params: &[RowQuant],
    w: &QuantizedMatrix,
    j: usize,
    relu: bool,
    c: &mut [f32],
    ldc: usize,
) {
    let first = j * QNR;
    let cols = QNR.min(w.n() - first);
    let scale: &[f32; QNR] = w.scales()[first..first + QNR]
        .try_into()
        .expect("16 columns");
    let sums: &[i32; QNR] = w.column_sums()[first..first + QNR]
        .try_into()
        .expect("16 columns");
    let bias: &[f32; QNR] = w.bias()[first..first + QNR].try_into().expect("16 columns");
    let value = |acc: i32, p: RowQuant, o: usize| {
        let v = (acc - p.zero * sums[o]) as f32 * (p.scale * scale[o]) + bias[o];
        if relu { relu_select(v) } else { v }
    };
    for (r, (acc, &p)) in acc.iter().zip(params).enumerate() {
        let out = &mut c[r * ldc + first..r * ldc + first + cols];
        match <&mut [f32; QNR]>::try_from(&mut *out) {
            // A whole panel: fixed-length loops, one vector operation each.
            Ok(out) => {
                for o in 0..QNR {
                    out[o] = value(acc[o], p, o);
                }
            }
            Err(_) => {
                for (o, y) in out.iter_mut().enumerate() {
                    *y = value(acc[o], p, o);
                }
            }
        }
    }
}

/// The exact integer sums of `QGemmKernel::tile`, in plain scalar code: the reference every
/// kernel must equal bit for bit (and the scalar path's kernel).
pub fn tile_ref(a: &[u8], lda: usize, rows: usize, panel: &[QLine], acc: &mut [[i32; QNR]]) {
    for (r, acc) in acc.iter_mut().enumerate().take(rows) {
        let row = &a[r * lda..r * lda + QK * panel.len()];
        for (c, sum) in acc.iter_mut().enumerate() {
            *sum = panel
                .iter()
                .zip(row.chunks_exact(QK))
                .map(|(line, a)| {
                    (0..QK)
                        .map(|t| i32::from(a[t]) * i32::from(line.0[QK * c + t]))
                        .sum::<i32>()
                })
                .sum();
        }
    }
}

#[cfg(test)]
mod tests;
