//! Embedding rows in each storage format ([`TablePrecision`]): f32 rows encoded for the file
//! (the writer) and one stored row decoded to f32 (the gather, the reference, `verify`).
//!
//! - `f16`, `bf16`: each value rounded to nearest (ties to even) by the `half` crate; decoding
//!   is exact (every f16 and bf16 value is an f32), with F16C where the CPU has it.
//! - `int8`: FBGEMM's fused 8-bit row-wise layout. A row's `bias` is its minimum and its
//!   `scale` its range / 255; a value `x` is stored as `q = round((x − bias) · 255 / range)`
//!   and read back as `scale · q + bias` (a multiply and an add, never fused, so every
//!   instruction set reads the same value), within `scale / 2` of `x` plus rounding.
//! - `int4`: FBGEMM's fused 4-bit row-wise layout, computed as FBGEMM computes it: the `bias`
//!   is the row's minimum rounded to f16, the `scale` its range (from that bias) / 15 rounded
//!   to f16, and `q = round((x − bias) / scale)` clamped to 0–15, two codes a byte (the even
//!   value in the low nibble, a last odd half-byte 0); read back as `scale · q + bias` in f32
//!   (the f16 scale and bias are exact in f32), within `scale / 2` of `x` plus the scale's
//!   rounding.

use crate::spec::TablePrecision;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// Appends the rows `rows` (whole rows of `dim` finite values) to `out`, encoded as `table`.
///
/// # Panics
/// If `rows.len()` is not a multiple of `dim`.
pub fn encode_rows(table: TablePrecision, rows: &[f32], dim: usize, out: &mut Vec<u8>) {
    assert!(dim > 0 && rows.len().is_multiple_of(dim), "not whole rows");
    match table {
        TablePrecision::F32 => out.extend(rows.iter().flat_map(|v| v.to_le_bytes())),
        TablePrecision::F16 => {
            out.extend(rows.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()))
        }
        TablePrecision::Bf16 => {
            out.extend(rows.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()))
        }
        TablePrecision::Int8 => {
            for row in rows.chunks_exact(dim) {
                let lo = row.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let range = hi - lo;
                let inverse = if range > 0.0 { 255.0 / range } else { 0.0 };
                out.extend(
                    row.iter()
                        .map(|&v| ((v - lo) * inverse).round().clamp(0.0, 255.0) as u8),
                );
                out.extend((range / 255.0).to_le_bytes());
                out.extend(lo.to_le_bytes());
            }
        }
        TablePrecision::Int4 => {
            for row in rows.chunks_exact(dim) {
                let (scale, bias) = int4_scale_bias_of(row);
                let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                let code = |v: f32| ((v - bias) * inverse).round().clamp(0.0, 15.0) as u8;
                out.extend(
                    row.chunks(2)
                        .map(|two| code(two[0]) | two.get(1).map_or(0, |&v| code(v) << 4)),
                );
                out.extend(f16::from_f32(scale).to_le_bytes());
                out.extend(f16::from_f32(bias).to_le_bytes());
            }
        }
    }
}

/// The f16 scale and bias of a 4-bit row, as f32 (both exact in f16): FBGEMM's choice.
fn int4_scale_bias_of(row: &[f32]) -> (f32, f32) {
    let lo = row.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let bias = f16::from_f32(lo).to_f32();
    let scale = f16::from_f32((hi - bias) / 15.0).to_f32();
    (scale, bias)
}

/// Decodes one stored row (`table.row_bytes(dst.len())` bytes) into `dst`.
#[inline(always)]
pub fn decode_row(table: TablePrecision, row: &[u8], dst: &mut [f32]) {
    let dim = dst.len();
    match table {
        TablePrecision::F32 => {
            for (d, b) in dst.iter_mut().zip(row.chunks_exact(4)) {
                *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        // The table starts 64-byte aligned and rows are 2·D bytes, so a row is 2-aligned and
        // the casts succeed; the map is little-endian like the file (big-endian hosts are
        // refused at open).
        TablePrecision::F16 => {
            bytemuck::cast_slice::<u8, f16>(&row[..2 * dim]).convert_to_f32_slice(dst)
        }
        TablePrecision::Bf16 => {
            bytemuck::cast_slice::<u8, bf16>(&row[..2 * dim]).convert_to_f32_slice(dst)
        }
        TablePrecision::Int8 => {
            let (scale, bias) = int8_scale_bias(row, dim);
            for (d, &q) in dst.iter_mut().zip(&row[..dim]) {
                *d = scale * f32::from(q) + bias;
            }
        }
        TablePrecision::Int4 => {
            let (scale, bias) = int4_scale_bias(row, dim);
            let codes = &row[..dim.div_ceil(2)];
            // Whole bytes in exact chunks (which LLVM vectorizes), then an odd last value.
            let mut pairs = dst.chunks_exact_mut(2);
            for (pair, &b) in (&mut pairs).zip(codes) {
                pair[0] = scale * f32::from(b & 0x0f) + bias;
                pair[1] = scale * f32::from(b >> 4) + bias;
            }
            if let [last] = pairs.into_remainder() {
                *last = scale * f32::from(codes[dim / 2] & 0x0f) + bias;
            }
        }
    }
}

/// The scale and bias of a row-wise 4-bit row of `dim` codes.
#[inline(always)]
fn int4_scale_bias(row: &[u8], dim: usize) -> (f32, f32) {
    let at = dim.div_ceil(2);
    // The const (software) conversion inlines into the gather's loop; `to_f32` dispatches to
    // F16C through a call per value, which took 11% of an int8-MLP scoring run. Both exact.
    let f = |at: usize| f16::from_le_bytes([row[at], row[at + 1]]).to_f32_const();
    (f(at), f(at + 2))
}

/// The scale and bias of a row-wise int8 row of `dim` codes.
#[inline(always)]
fn int8_scale_bias(row: &[u8], dim: usize) -> (f32, f32) {
    let f = |at: usize| f32::from_le_bytes(row[at..at + 4].try_into().expect("4 bytes"));
    (f(dim), f(dim + 4))
}

/// Index of the first value of a table of `table` rows (`dim` values each) that is NaN or
/// infinite, or whose row's scale or bias is (row-wise int8 and int4: reported at the row's
/// first value).
pub fn first_non_finite(table: TablePrecision, bytes: &[u8], dim: usize) -> Option<usize> {
    let row_bytes = table.row_bytes(dim);
    match table {
        TablePrecision::F32 => bytes
            .chunks_exact(4)
            .position(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()),
        TablePrecision::F16 => bytes
            .chunks_exact(2)
            .position(|b| !f16::from_le_bytes([b[0], b[1]]).is_finite()),
        TablePrecision::Bf16 => bytes
            .chunks_exact(2)
            .position(|b| !bf16::from_le_bytes([b[0], b[1]]).is_finite()),
        TablePrecision::Int8 => bytes
            .chunks_exact(row_bytes)
            .position(|row| {
                let (scale, bias) = int8_scale_bias(row, dim);
                !(scale.is_finite() && bias.is_finite() && (scale * 255.0 + bias).is_finite())
            })
            .map(|r| r * dim),
        TablePrecision::Int4 => bytes
            .chunks_exact(row_bytes)
            .position(|row| {
                let (scale, bias) = int4_scale_bias(row, dim);
                !(scale.is_finite() && bias.is_finite() && (scale * 15.0 + bias).is_finite())
            })
            .map(|r| r * dim),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    const ALL: [TablePrecision; 5] = [
        TablePrecision::F32,
        TablePrecision::F16,
        TablePrecision::Bf16,
        TablePrecision::Int8,
        TablePrecision::Int4,
    ];

    #[test]
    fn rows_decode_within_each_formats_rounding() {
        let mut rng = Rng::new(3);
        for dim in [1, 3, 8, 16, 33] {
            let rows: Vec<f32> = (0..dim * 20)
                .map(|i| match i % 7 {
                    0 => 0.0,
                    1 => 1e-3 * rng.normal(),
                    _ => 0.3 * rng.normal(),
                })
                .collect();
            for table in ALL {
                let mut bytes = Vec::new();
                encode_rows(table, &rows, dim, &mut bytes);
                let row_bytes = table.row_bytes(dim);
                assert_eq!(bytes.len(), 20 * row_bytes, "{table:?}");
                assert_eq!(first_non_finite(table, &bytes, dim), None);
                let mut back = vec![0.0; dim];
                for (r, row) in rows.chunks_exact(dim).enumerate() {
                    decode_row(table, &bytes[r * row_bytes..][..row_bytes], &mut back);
                    let (lo, hi) = row
                        .iter()
                        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                    for (&x, &y) in row.iter().zip(&back) {
                        let bound = match table {
                            TablePrecision::F32 => 0.0,
                            // Half a unit in the last place: 2⁻¹¹ and 2⁻⁸ relative (f16's
                            // subnormals below 6e-5 have a fixed step of 2⁻²⁴).
                            TablePrecision::F16 => x.abs() * 2f32.powi(-11) + 2f32.powi(-25),
                            TablePrecision::Bf16 => x.abs() * 2f32.powi(-8),
                            // Half a step of 1/15 of the range, the step and the minimum
                            // rounded to f16 (2⁻¹¹ relative each: the step's error times 15
                            // codes, the bias's once).
                            TablePrecision::Int4 => {
                                let step = (hi - lo) / 15.0;
                                step * (0.5 + 16.0 * 2f32.powi(-11))
                                    + (lo.abs() + hi.abs()) * 2f32.powi(-10)
                                    + 2f32.powi(-24)
                            }
                            _ => (hi - lo) / 255.0 * 0.5 + 1e-6 * (hi.abs() + lo.abs()),
                        };
                        assert!((x - y).abs() <= bound, "{table:?}: {x} read back as {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn decoding_matches_the_formats_definitions_exactly() {
        // f16 and bf16 by the bits, int8 by its formula.
        let mut bytes = Vec::new();
        encode_rows(TablePrecision::F16, &[1.0, -2.5, 65504.0], 3, &mut bytes);
        assert_eq!(bytes, [0x00, 0x3c, 0x00, 0xc1, 0xff, 0x7b]);
        let mut out = [0.0; 3];
        decode_row(TablePrecision::F16, &bytes, &mut out);
        assert_eq!(out, [1.0, -2.5, 65504.0]);
        bytes.clear();
        encode_rows(TablePrecision::Bf16, &[1.0, -2.5, 3.0e38], 3, &mut bytes);
        decode_row(TablePrecision::Bf16, &bytes, &mut out);
        assert_eq!(out[..2], [1.0, -2.5]);
        assert_eq!(out[2].to_bits() & 0xffff, 0);
        bytes.clear();
        encode_rows(TablePrecision::Int8, &[-1.0, 0.5, 1.0, 4.0], 4, &mut bytes);
        assert_eq!(bytes.len(), 12);
        assert_eq!(bytes[..4], [0, 77, 102, 255]);
        let scale = 5.0f32 / 255.0;
        assert_eq!(bytes[4..8], scale.to_le_bytes());
        assert_eq!(bytes[8..], (-1.0f32).to_le_bytes());
        let mut out = [0.0; 4];
        decode_row(TablePrecision::Int8, &bytes, &mut out);
        assert_eq!(
            out,
            [0, 77, 102, 255].map(|q: u8| scale * f32::from(q) - 1.0)
        );
        // 4-bit: two codes a byte, low nibble first; scale and bias as f16.
        bytes.clear();
        encode_rows(
            TablePrecision::Int4,
            &[-1.0, 0.5, 1.0, 4.0, 2.0],
            5,
            &mut bytes,
        );
        assert_eq!(bytes.len(), 3 + 4);
        let scale = f16::from_f32(5.0 / 15.0).to_f32();
        let codes = [0.0f32, 1.5, 2.0, 5.0, 3.0].map(|d| (d / scale).round() as u8);
        // 1.5 over f16's 1/3 (0.33325195) is 4.5011: code 5.
        assert_eq!(codes, [0, 5, 6, 15, 9]);
        assert_eq!(
            bytes[..3],
            [codes[0] | codes[1] << 4, codes[2] | codes[3] << 4, codes[4]]
        );
        assert_eq!(bytes[3..5], f16::from_f32(5.0 / 15.0).to_le_bytes());
        assert_eq!(bytes[5..], f16::from_f32(-1.0).to_le_bytes());
        let mut out = [0.0; 5];
        decode_row(TablePrecision::Int4, &bytes, &mut out);
        assert_eq!(out, codes.map(|q| scale * f32::from(q) - 1.0));
        // A constant row is its bias, exactly.
        bytes.clear();
        encode_rows(TablePrecision::Int8, &[0.7; 5], 5, &mut bytes);
        let mut out = [0.0; 5];
        decode_row(TablePrecision::Int8, &bytes, &mut out);
        assert_eq!(out, [0.7; 5]);
    }

    #[test]
    fn non_finite_stored_values_are_found() {
        let mut bytes = Vec::new();
        encode_rows(TablePrecision::F16, &[1.0, 2.0, 3.0, 4.0], 2, &mut bytes);
        bytes[4..6].copy_from_slice(&f16::INFINITY.to_le_bytes());
        assert_eq!(first_non_finite(TablePrecision::F16, &bytes, 2), Some(2));
        bytes.clear();
        encode_rows(TablePrecision::Int8, &[1.0, 2.0, 3.0, 4.0], 2, &mut bytes);
        bytes[12..16].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(first_non_finite(TablePrecision::Int8, &bytes, 2), Some(2));
        bytes.clear();
        encode_rows(
            TablePrecision::Int4,
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            3,
            &mut bytes,
        );
        assert_eq!(bytes.len(), 12);
        bytes[10..12].copy_from_slice(&f16::NAN.to_le_bytes());
        assert_eq!(first_non_finite(TablePrecision::Int4, &bytes, 3), Some(3));
    }
}
