//! The scalar int8 kernel: the reference's integer sums, four rows per tile.

use super::Portable;
use crate::kernels::qgemm::{Acc, LayerCall, QGemmKernel, layer_loop, tile_ref};
use crate::kernels::quant::{QLine, RowQuant, quantize_rows};

impl QGemmKernel for Portable {
    const MR: usize = 4;

    unsafe fn tile(a: &[u8], lda: usize, rows: usize, panel: &[QLine], acc: &mut Acc) {
        tile_ref(a, lda, rows, panel, acc);
    }

    unsafe fn layer(call: &mut LayerCall<'_>) {
        // SAFETY: the scalar kernel needs no instruction set; the call is checked.
        unsafe { layer_loop::<Portable>(call) }
    }

    unsafe fn quantize(
        x: &[f32],
        width: usize,
        rows: usize,
        q: &mut [u8],
        stride: usize,
        params: &mut [RowQuant],
    ) {
        quantize_rows(x, width, rows, q, stride, params);
    }
}
