//! The int8 micro-kernel on AMX: a tile of up to 32 rows × one 16-column panel in two i32 tile
//! registers. Per 64-byte `k` block, one B tile (16 panel lines, loaded straight from the
//! packed panel: a [`QLine`] is the layout `tdpbusd` takes for B) and one A tile per 16 rows,
//! then one `tdpbusd` per A tile. A depth that is not a whole number of blocks ends in tail
//! tiles configured to its exact width, so no load reads past a row or a panel. The
//! epilogue and the activations' quantization are the AVX-512 ones.
//!
//! Tile registers: 0 and 1 the sums of rows 0–15 and 16–31, 2 and 3 their A blocks, 4 the B
//! block, 5 and 6 the A tails, 7 the B tail. The configuration depends only on the rows of a
//! tile and the depth's tail, so a layer loads it at most twice (rows outer, panels inner).

use super::{Amx, TileConfig, load_config, release, tile_dot, tile_load, tile_store, tile_zero};
use crate::kernels::avx512::Avx512;
use crate::kernels::qgemm::{Acc, LayerCall, QGemmKernel};
use crate::kernels::quant::{QK, QLine, QNR, QuantizedMatrix, RowQuant};

/// Rows of a tile: two A tiles of 16.
const MR: usize = 32;
/// `k` groups of 4 in one 64-byte block (the rows of a B tile).
const BLOCK_GROUPS: usize = 16;
/// Bytes of a tile row (one `k` block of activations; a panel line).
const ROW_BYTES: usize = 64;

impl TileConfig {
    /// The tiles of a tile of `rows` rows over a depth whose last block has `tail` groups.
    fn for_tile(rows: usize, tail: usize) -> TileConfig {
        let (low, high) = (rows.min(16), rows.saturating_sub(16));
        let mut config = TileConfig::empty();
        config.set(0, low, ROW_BYTES);
        config.set(1, high, ROW_BYTES);
        config.set(2, low, ROW_BYTES);
        config.set(3, high, ROW_BYTES);
        config.set(4, BLOCK_GROUPS, ROW_BYTES);
        config.set(5, low, QK * tail);
        config.set(6, high, QK * tail);
        config.set(7, tail, ROW_BYTES);
        config
    }
}

impl QGemmKernel for Amx {
    const MR: usize = MR;

    unsafe fn tile(a: &[u8], lda: usize, rows: usize, panel: &[QLine], acc: &mut Acc) {
        // SAFETY: the trait's contract (AMX granted: the AMX path is made only where
        // `has_amx` holds; `1 ≤ rows ≤ MR`; `a` long enough), with the configuration for
        // exactly these rows and this panel's tail loaded first.
        unsafe {
            load_config(&TileConfig::for_tile(rows, panel.len() % BLOCK_GROUPS));
            panel_sums(a, lda, rows, panel, acc);
            release();
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
        // SAFETY: the trait's contract; the AMX path implies AVX-512F (`has_amx`).
        unsafe { <Avx512 as QGemmKernel>::finish(acc, params, w, j, relu, c, ldc) }
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
        // SAFETY: the AMX path implies AVX-512F and VNNI (`has_amx`).
        unsafe { <Avx512 as QGemmKernel>::quantize(x, width, rows, q, stride, params) }
    }
}

/// One layer: tiles of 32 rows outer, panels inner, each tile's sums then the AVX-512
/// epilogue; the tile configuration is loaded when a tile's rows change (at most twice).
///
/// # Safety
/// [`super::has_amx`] holds, and `call` is checked (`LayerCall::check`).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn layer_here(call: &mut LayerCall<'_>) {
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
    let tail = w.groups() % BLOCK_GROUPS;
    let mut acc: Acc = [[0; QNR]; crate::kernels::qgemm::MAX_MR];
    let mut loaded = None;
    let mut r0 = 0;
    while r0 < rows {
        let tile = MR.min(rows - r0);
        if loaded != Some(tile) {
            // SAFETY: AMX granted (the caller's contract); tiles of at most 16 × 64.
            unsafe { load_config(&TileConfig::for_tile(tile, tail)) };
            loaded = Some(tile);
        }
        let a = &a[r0 * lda..(r0 + tile - 1) * lda + depth];
        for j in 0..w.panels() {
            // SAFETY: the configuration for `tile` rows and this depth's tail is loaded; `a`
            // holds `tile` rows `lda` apart of `depth = 4 · panel.len()` bytes (sliced above).
            unsafe { panel_sums(a, lda, tile, w.panel(j), &mut acc) };
            // SAFETY: AVX-512F (the caller's contract); the arguments are `finish_tile`'s.
            unsafe {
                <Avx512 as QGemmKernel>::finish(
                    &acc,
                    &params[r0..r0 + tile],
                    w,
                    j,
                    relu,
                    &mut c[r0 * ldc..],
                    ldc,
                )
            };
        }
        r0 += tile;
    }
    // SAFETY: AMX granted.
    unsafe { release() };
}

/// `acc[r][c] = Σ_g Σ_t a[r·lda + 4g + t] · panel[g][4c + t]` for `r < rows`, on the tiles.
///
/// # Safety
/// AMX is granted and the configuration `TileConfig::for_tile(rows, panel.len() % 16)` is
/// loaded; `1 ≤ rows ≤ MR`; `a` holds `rows` rows `lda` apart of `4 · panel.len()` bytes.
#[inline(always)]
unsafe fn panel_sums(a: &[u8], lda: usize, rows: usize, panel: &[QLine], acc: &mut Acc) {
    let groups = panel.len();
    assert!(
        (1..=MR).contains(&rows) && a.len() >= (rows - 1) * lda + QK * groups,
        "tile of {rows} rows"
    );
    let (blocks, tail) = (groups / BLOCK_GROUPS, groups % BLOCK_GROUPS);
    let two = rows > 16;
    let (low, high) = (a.as_ptr(), a.as_ptr().wrapping_add(16 * lda));
    let lines = panel.as_ptr();
    // SAFETY: tiles 0–7 are configured as `TileConfig::for_tile` says (the caller's contract).
    // Block `b` of a row is its bytes `64b..64b + 64` and the tail `64·blocks..4·groups`, all
    // within the `4 · groups` bytes `a` holds of every row (asserted above); rows 16.. are read
    // only when `two`. A B block is 16 lines of 64 bytes from line `16b`, the tail `tail` lines,
    // inside the panel. The stores write `rows` rows of 64 bytes into `acc`'s 16-i32 rows.
    unsafe {
        tile_zero!("0");
        if two {
            tile_zero!("1");
        }
        for b in 0..blocks {
            tile_load!("4", lines.add(b * BLOCK_GROUPS), ROW_BYTES);
            tile_load!("2", low.add(b * ROW_BYTES), lda);
            tile_dot!("0", "2", "4");
            if two {
                tile_load!("3", high.add(b * ROW_BYTES), lda);
                tile_dot!("1", "3", "4");
            }
        }
        if tail > 0 {
            tile_load!("7", lines.add(blocks * BLOCK_GROUPS), ROW_BYTES);
            tile_load!("5", low.add(blocks * ROW_BYTES), lda);
            tile_dot!("0", "5", "7");
            if two {
                tile_load!("6", high.add(blocks * ROW_BYTES), lda);
                tile_dot!("1", "6", "7");
            }
        }
        tile_store!("0", acc.as_mut_ptr(), ROW_BYTES);
        if two {
            tile_store!("1", acc[16..].as_mut_ptr(), ROW_BYTES);
        }
    }
}
