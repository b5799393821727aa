//! One test per way a model file can be wrong: each builds the bad file from a valid one and
//! expects exactly the `FormatError` variant the reader documents for it (from both
//! `ModelFile::open` and `Model::open`). Then a property test (random flips and truncations never
//! panic) and the writer's own errors.
//!
//! The valid file is `fixtures::mixed_small()` (4 fields, R = 559 rows, D = 13, hidden 37-20), whose
//! table is, in order: embedding, linear, bias, mlp.0.weight, mlp.0.bias, mlp.1.weight,
//! mlp.1.bias, out.weight, out.bias. Most header and table edits would be caught by the meta
//! checksum first, so tests that aim at a later check call `fix_meta` after editing.

use deepfm::fixtures::{mixed_small, random_batch, write_random_model};
use deepfm::format::{
    CHECKSUM_CHUNK, ENTRY_LEN, HEADER_LEN, MAX_SECTIONS, MAX_SPEC_LEN, ModelFile, SectionId,
    TABLE_ALIGN,
};
use deepfm::{FormatError, Model, ModelWriter, OpenOptions, ScoreError, Scratch, SpecError, score};
use proptest::prelude::*;
use std::path::Path;
use std::sync::OnceLock;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Table positions of the sections of `mixed_small()`.
const EMBEDDING: usize = 0;
const LINEAR: usize = 1;
const BIAS: usize = 2;
const MLP0_W: usize = 3;
const MLP0_B: usize = 4;
const MLP1_W: usize = 5;
const MLP1_B: usize = 6;
const OUT_W: usize = 7;
const OUT_B: usize = 8;
const SECTIONS: usize = 9;

/// Field offsets inside a table entry.
const KIND: usize = 0;
const INDEX: usize = 4;
const DTYPE: usize = 8;
const RANK: usize = 12;
const DIM0: usize = 16;
const DIM1: usize = 24;
const OFFSET: usize = 32;
const LENGTH: usize = 40;
const CHECKSUM: usize = 48;
const ENTRY_RESERVED: usize = 56;

/// Header field offsets.
const H_VERSION: usize = 8;
const H_BOM: usize = 12;
const H_FILE_LEN: usize = 16;
const H_SPEC_OFFSET: usize = 24;
const H_SPEC_LEN: usize = 32;
const H_COUNT: usize = 40;
const H_FLAGS: usize = 44;
const H_META: usize = 48;
const H_RESERVED: usize = 56;

/// The bytes of a valid `mixed_small()` model (written once, then cloned).
fn valid_model_bytes() -> Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("valid.dfm");
            write_random_model(&path, &mixed_small(), 7).unwrap();
            std::fs::read(&path).unwrap()
        })
        .clone()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn patch_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn patch_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Byte position of table entry `i`.
fn entry_offset(i: usize) -> usize {
    (HEADER_LEN + ENTRY_LEN * i as u64) as usize
}

/// `[start, end)` of the spec according to the header.
fn spec_range(b: &[u8]) -> std::ops::Range<usize> {
    let start = u64_at(b, H_SPEC_OFFSET) as usize;
    start..start + u64_at(b, H_SPEC_LEN) as usize
}

/// `[start, end)` of section `i` according to its table entry.
fn section_range(b: &[u8], i: usize) -> std::ops::Range<usize> {
    let e = entry_offset(i);
    let start = u64_at(b, e + OFFSET) as usize;
    start..start + u64_at(b, e + LENGTH) as usize
}

/// Recomputes and stores the meta checksum (header 0..48, table, spec), using the header's own
/// count and spec length, so that a check after the meta checksum is reached.
fn fix_meta(b: &mut [u8]) {
    let count = u32_at(b, H_COUNT) as usize;
    let table_end = entry_offset(count);
    let spec_end = table_end + u64_at(b, H_SPEC_LEN) as usize;
    let mut h = Xxh3::new();
    h.update(&b[..48]);
    h.update(&b[HEADER_LEN as usize..table_end]);
    h.update(&b[table_end..spec_end]);
    patch_u64(b, H_META, h.digest());
}

/// The chunked section checksum of the format docs, written out independently of the crate.
fn section_checksum(bytes: &[u8]) -> u64 {
    let digests: Vec<u8> = bytes
        .chunks(CHECKSUM_CHUNK)
        .flat_map(|c| xxh3_64(c).to_le_bytes())
        .collect();
    xxh3_64(&digests)
}

/// Recomputes section `i`'s checksum into its entry (then the meta checksum must be fixed too).
fn fix_section(b: &mut [u8], i: usize) {
    let sum = section_checksum(&b[section_range(b, i)]);
    patch_u64(b, entry_offset(i) + CHECKSUM, sum);
}

/// Replaces `from` by `to` (same length) inside the spec.
fn replace_in_spec(b: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len(), "spec edits keep the spec length");
    let r = spec_range(b);
    let at = b[r.clone()]
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{:?} not in spec", String::from_utf8_lossy(from)));
    b[r.start + at..r.start + at + to.len()].copy_from_slice(to);
}

/// Writes `bytes` to a fresh file and opens it with `ModelFile::open`. Also opens it with
/// `Model::open` and checks that it fails the same way (or succeeds too).
fn open_bytes(bytes: &[u8]) -> Result<ModelFile, FormatError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.dfm");
    std::fs::write(&path, bytes).unwrap();
    let file = ModelFile::open(&path);
    let model = Model::open(&path);
    match (&file, &model) {
        (Ok(_), Ok(_)) => {}
        (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "Model::open differs"),
        (a, b) => panic!(
            "ModelFile::open gave {a:?} but Model::open gave {:?}",
            b.as_ref().err()
        ),
    }
    // Unlinking a mapped file is fine on Unix: the map keeps the inode alive.
    file
}

/// The error of opening `bytes`, panicking if the file opens.
fn open_err(bytes: &[u8]) -> FormatError {
    match open_bytes(bytes) {
        Ok(_) => panic!("a bad file was accepted"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// Sanity: the helpers reproduce what the writer wrote
// ---------------------------------------------------------------------------------------------

// Nothing is wrong: the valid file opens, verifies, and the helpers agree with the writer.
#[test]
fn valid_file_opens_and_helpers_match_writer() {
    let b = valid_model_bytes();
    let file = open_bytes(&b).expect("valid file");
    file.verify().expect("valid file verifies");
    assert_eq!(file.sections().len(), SECTIONS);
    assert_eq!(u64_at(&b, H_FILE_LEN), b.len() as u64);
    let mut again = b.clone();
    fix_meta(&mut again);
    assert_eq!(again, b, "fix_meta reproduces the writer's meta checksum");
    for i in 0..SECTIONS {
        fix_section(&mut again, i);
    }
    assert_eq!(
        again, b,
        "section_checksum reproduces the writer's checksums"
    );
    let ids = [
        SectionId::Embedding,
        SectionId::Linear,
        SectionId::Bias,
        SectionId::LayerWeight(0),
        SectionId::LayerBias(0),
        SectionId::LayerWeight(1),
        SectionId::LayerBias(1),
        SectionId::OutWeight,
        SectionId::OutBias,
    ];
    for (i, (s, id)) in file.sections().iter().zip(ids).enumerate() {
        assert_eq!(s.shape.id, id);
        assert_eq!(
            section_range(&b, i),
            s.offset as usize..(s.offset + s.length) as usize
        );
    }
    assert_eq!(section_range(&b, EMBEDDING).start % TABLE_ALIGN as usize, 0);
    assert_eq!(
        section_range(&b, EMBEDDING).end,
        b.len(),
        "the table is last"
    );
}

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

// Shorter than the 64-byte header (including empty).
#[test]
fn too_small() {
    let b = valid_model_bytes();
    for n in [0usize, 1, 8, 63] {
        let e = open_err(&b[..n]);
        assert!(
            matches!(e, FormatError::TooSmall(m) if m == n as u64),
            "{n}: {e:?}"
        );
    }
}

// First 8 bytes are not the magic.
#[test]
fn bad_magic() {
    let mut b = valid_model_bytes();
    b[1] = b'X';
    let e = open_err(&b);
    assert!(matches!(e, FormatError::BadMagic), "{e:?}");
}

// Format version 2.
#[test]
fn unsupported_version() {
    let mut b = valid_model_bytes();
    patch_u32(&mut b, H_VERSION, 2);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(matches!(e, FormatError::UnsupportedVersion(2)), "{e:?}");
}

// Byte-order mark written big-endian.
#[test]
fn wrong_byte_order() {
    let mut b = valid_model_bytes();
    patch_u32(&mut b, H_BOM, 0x0403_0201);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(e, FormatError::WrongByteOrder(0x0403_0201)),
        "{e:?}"
    );
}

// Header flags nonzero.
#[test]
fn nonzero_flags() {
    let mut b = valid_model_bytes();
    patch_u32(&mut b, H_FLAGS, 1);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(matches!(e, FormatError::Reserved("header flags")), "{e:?}");
}

// Header reserved bytes 56..64 nonzero.
#[test]
fn nonzero_header_reserved() {
    let mut b = valid_model_bytes();
    patch_u64(&mut b, H_RESERVED, 1 << 63);
    let e = open_err(&b);
    assert!(
        matches!(e, FormatError::Reserved("header bytes 56..64")),
        "{e:?}"
    );
}

// Section count above 256.
#[test]
fn too_many_sections() {
    let mut b = valid_model_bytes();
    for count in [MAX_SECTIONS + 1, u32::MAX] {
        patch_u32(&mut b, H_COUNT, count);
        let e = open_err(&b);
        assert!(
            matches!(e, FormatError::TooManySections(c) if c == count),
            "{e:?}"
        );
    }
}

// Section count within limits but not matching the spec offset (table and spec disagree).
#[test]
fn count_disagrees_with_spec_offset() {
    let mut b = valid_model_bytes();
    patch_u32(&mut b, H_COUNT, MAX_SECTIONS);
    let e = open_err(&b);
    assert!(
        matches!(e, FormatError::SpecOffset { expected, found } if expected == 64 + 64 * 256 && found == 640),
        "{e:?}"
    );
}

// Spec offset not right after the table.
#[test]
fn wrong_spec_offset() {
    let mut b = valid_model_bytes();
    for off in [0u64, 64, 639, 641, 704, u64::MAX] {
        patch_u64(&mut b, H_SPEC_OFFSET, off);
        fix_meta(&mut b);
        let e = open_err(&b);
        assert!(
            matches!(e, FormatError::SpecOffset { expected: 640, found } if found == off),
            "{off}: {e:?}"
        );
    }
}

// Spec length above 1 MiB, u64::MAX (must not overflow), or running past the end of the file.
#[test]
fn spec_length_huge() {
    let b = valid_model_bytes();
    let past_end = b.len() as u64 - 640 + 1;
    for len in [MAX_SPEC_LEN + 1, u64::MAX, u64::MAX - 639, past_end] {
        let mut b = b.clone();
        patch_u64(&mut b, H_SPEC_LEN, len);
        let e = open_err(&b);
        assert!(
            matches!(e, FormatError::SpecLength(l) if l == len),
            "{len}: {e:?}"
        );
    }
}

// Meta checksum altered (one bit).
#[test]
fn meta_checksum_flipped() {
    let mut b = valid_model_bytes();
    b[H_META + 3] ^= 0x20;
    let e = open_err(&b);
    assert!(matches!(e, FormatError::MetaChecksum { .. }), "{e:?}");
}

// A byte of the table or the spec changed without fixing the meta checksum.
#[test]
fn table_or_spec_byte_changed_without_meta() {
    let b = valid_model_bytes();
    let spec_end = spec_range(&b).end;
    for at in HEADER_LEN as usize..spec_end {
        let mut b = b.clone();
        b[at] ^= 0x01;
        let e = open_err(&b);
        assert!(
            matches!(e, FormatError::MetaChecksum { .. }),
            "byte {at}: {e:?}"
        );
    }
}

// Every header byte flipped (three masks): always an error, never a panic, and the right check.
#[test]
fn every_header_byte_flipped() {
    let b = valid_model_bytes();
    for at in 0..HEADER_LEN as usize {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut b = b.clone();
            b[at] ^= mask;
            let e = open_err(&b);
            let ok = match at {
                0..8 => matches!(e, FormatError::BadMagic),
                8..12 => matches!(e, FormatError::UnsupportedVersion(_)),
                12..16 => matches!(e, FormatError::WrongByteOrder(_)),
                16..24 => matches!(e, FormatError::FileLength { .. }),
                24..32 => matches!(e, FormatError::SpecOffset { .. }),
                32..40 => matches!(
                    e,
                    FormatError::SpecLength(_) | FormatError::MetaChecksum { .. }
                ),
                40..44 => matches!(
                    e,
                    FormatError::TooManySections(_) | FormatError::SpecOffset { .. }
                ),
                44..48 => matches!(e, FormatError::Reserved("header flags")),
                48..56 => matches!(e, FormatError::MetaChecksum { .. }),
                _ => matches!(e, FormatError::Reserved("header bytes 56..64")),
            };
            assert!(ok, "byte {at} ^ {mask:#x}: {e:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// File length
// ---------------------------------------------------------------------------------------------

/// Section boundaries, header/table/spec boundaries and a point inside each section.
fn truncation_points(b: &[u8]) -> Vec<usize> {
    let mut points = vec![0, 1, 63, 64, 65, 100];
    points.extend((1..=SECTIONS).map(entry_offset));
    let spec = spec_range(b);
    points.extend([
        spec.start + 1,
        (spec.start + spec.end) / 2,
        spec.end - 1,
        spec.end,
    ]);
    for i in 0..SECTIONS {
        let r = section_range(b, i);
        points.extend([
            r.start,
            r.start + 1,
            (r.start + r.end) / 2,
            r.end - 1,
            r.end,
        ]);
    }
    points.retain(|&n| n < b.len());
    points.sort_unstable();
    points.dedup();
    points
}

// Truncated at every boundary and inside every section: the header's length no longer matches.
#[test]
fn truncated() {
    let b = valid_model_bytes();
    let full = b.len() as u64;
    for n in truncation_points(&b) {
        let e = open_err(&b[..n]);
        let ok = if n < 64 {
            matches!(e, FormatError::TooSmall(m) if m == n as u64)
        } else {
            matches!(e, FormatError::FileLength { expected, actual } if expected == full && actual == n as u64)
        };
        assert!(ok, "truncated to {n}: {e:?}");
    }
}

// Truncated, with the header's length (and meta checksum, when the spec survived) rewritten to
// match: the spec or the embedding table (last in the file) now runs past the end.
#[test]
fn truncated_with_length_patched() {
    let b = valid_model_bytes();
    let spec_end = spec_range(&b).end;
    for n in truncation_points(&b) {
        let mut t = b[..n].to_vec();
        if n >= 64 {
            patch_u64(&mut t, H_FILE_LEN, n as u64);
        }
        if n >= spec_end {
            fix_meta(&mut t);
        }
        let e = open_err(&t);
        let ok = if n < 64 {
            matches!(e, FormatError::TooSmall(_))
        } else if n < spec_end {
            matches!(e, FormatError::SpecLength(_))
        } else {
            matches!(&e, FormatError::OutOfBounds { section, file_len, .. }
                if section == "embedding" && *file_len == n as u64)
        };
        assert!(ok, "truncated to {n}: {e:?}");
    }
}

// One byte appended.
#[test]
fn grown_by_one_byte() {
    let mut b = valid_model_bytes();
    let full = b.len() as u64;
    b.push(0);
    let e = open_err(&b);
    assert!(
        matches!(e, FormatError::FileLength { expected, actual } if expected == full && actual == full + 1),
        "{e:?}"
    );
}

// One byte appended and the header's length rewritten to match: bytes after the last section are
// not forbidden by the format (sections must only lie inside the file), so this opens.
#[test]
fn grown_with_length_patched_is_accepted() {
    let mut b = valid_model_bytes();
    b.push(0);
    let len = b.len() as u64;
    patch_u64(&mut b, H_FILE_LEN, len);
    fix_meta(&mut b);
    let file = open_bytes(&b).expect("trailing bytes are allowed");
    file.verify().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Spec
// ---------------------------------------------------------------------------------------------

// Spec is not UTF-8.
#[test]
fn spec_not_utf8() {
    let mut b = valid_model_bytes();
    replace_in_spec(&mut b, b"user", b"us\xFFr");
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(matches!(e, FormatError::SpecUtf8), "{e:?}");
}

// Spec is not JSON.
#[test]
fn spec_invalid_json() {
    let mut b = valid_model_bytes();
    let start = spec_range(&b).start;
    b[start] = b'x';
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(matches!(e, FormatError::Spec(SpecError::Json(_))), "{e:?}");
}

// Spec is JSON but not a valid spec (embedding_dim 0).
#[test]
fn spec_invalid() {
    let mut b = valid_model_bytes();
    replace_in_spec(&mut b, b"\"embedding_dim\":13", b"\"embedding_dim\": 0");
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(e, FormatError::Spec(SpecError::BadEmbeddingDim(0))),
        "{e:?}"
    );
}

// Spec has a different number of hidden layers than the table has sections for.
#[test]
fn section_count_mismatch() {
    for (hidden, expected) in [(&b"[3,7,2]"[..], 11usize), (&b"[37]   "[..], 7)] {
        let mut b = valid_model_bytes();
        replace_in_spec(&mut b, b"[37,20]", hidden);
        fix_meta(&mut b);
        let e = open_err(&b);
        assert!(
            matches!(e, FormatError::SectionCount { expected: x, found: 9 } if x == expected),
            "{e:?}"
        );
    }
}

// Spec's vocabulary changed: same section count, but the table's shapes no longer match.
#[test]
fn spec_vocab_changed() {
    let mut b = valid_model_bytes();
    replace_in_spec(&mut b, b"500", b"501");
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(&e, FormatError::ShapeMismatch { section, found: [559, 13], expected: [560, 13], .. } if section == "embedding"),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Section table
// ---------------------------------------------------------------------------------------------

/// Copies table entry `i` over entry `j` and `j` over `i`.
fn swap_entries(b: &mut [u8], i: usize, j: usize) {
    let (ei, ej) = (entry_offset(i), entry_offset(j));
    let a: Vec<u8> = b[ei..ei + 64].to_vec();
    b.copy_within(ej..ej + 64, ei);
    b[ej..ej + 64].copy_from_slice(&a);
}

// Two entries swapped (mlp.0.weight and mlp.0.bias; embedding and linear).
#[test]
fn entries_swapped() {
    let mut b = valid_model_bytes();
    swap_entries(&mut b, MLP0_W, MLP0_B);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(&e, FormatError::UnexpectedSection { position: 3, kind: 5, index: 0, expected } if expected == "mlp.0.weight"),
        "{e:?}"
    );

    let mut b = valid_model_bytes();
    swap_entries(&mut b, EMBEDDING, LINEAR);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(&e, FormatError::UnexpectedSection { position: 0, kind: 2, index: 0, expected } if expected == "embedding"),
        "{e:?}"
    );
}

// Layer index of a hidden layer entry wrong.
#[test]
fn wrong_layer_index() {
    let mut b = valid_model_bytes();
    patch_u32(&mut b, entry_offset(MLP1_B) + INDEX, 0);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(&e, FormatError::UnexpectedSection { position: 6, kind: 5, index: 0, expected } if expected == "mlp.1.bias"),
        "{e:?}"
    );
}

// Unknown kind code.
#[test]
fn unknown_kind() {
    let mut b = valid_model_bytes();
    patch_u32(&mut b, entry_offset(OUT_B) + KIND, 99);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(
            e,
            FormatError::UnexpectedSection {
                position: 8,
                kind: 99,
                ..
            }
        ),
        "{e:?}"
    );
}

// Dtype 2 (f16, reserved for later versions) and an unknown dtype.
#[test]
fn unsupported_dtype() {
    // 5 (u8) is the metadata section's dtype, not a tensor's; 2, 4 and 6 are table formats.
    for dtype in [0u32, 2, 4, 5, 6, u32::MAX] {
        let mut b = valid_model_bytes();
        patch_u32(&mut b, entry_offset(BIAS) + DTYPE, dtype);
        fix_meta(&mut b);
        let e = open_err(&b);
        assert!(
            matches!(&e, FormatError::UnsupportedDtype { section, dtype: d } if section == "bias" && *d == dtype),
            "{e:?}"
        );
    }
}

// Dims (or rank) differ from what the spec implies.
#[test]
fn wrong_dims() {
    let mut b = valid_model_bytes();
    patch_u64(&mut b, entry_offset(MLP0_W) + DIM0, 52);
    patch_u64(&mut b, entry_offset(MLP0_W) + DIM1, 37);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(&e, FormatError::ShapeMismatch { section, rank: 2, found: [52, 37], expected: [37, 52] } if section == "mlp.0.weight"),
        "{e:?}"
    );

    let mut b = valid_model_bytes();
    patch_u32(&mut b, entry_offset(MLP0_B) + RANK, 2);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(&e, FormatError::ShapeMismatch { section, rank: 2, .. } if section == "mlp.0.bias"),
        "{e:?}"
    );
}

// Dims whose product overflows u64. The dims are compared with the spec's before any size is
// computed, and a valid spec's sizes never overflow (`ModelSpec::validate` checks R × D × 4), so
// this is a ShapeMismatch: the reader never multiplies numbers it has not already matched.
#[test]
fn dims_product_overflows() {
    let mut b = valid_model_bytes();
    patch_u64(&mut b, entry_offset(EMBEDDING) + DIM0, u64::MAX);
    patch_u64(&mut b, entry_offset(EMBEDDING) + DIM1, u64::MAX);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(&e, FormatError::ShapeMismatch { section, found: [u64::MAX, u64::MAX], .. } if section == "embedding"),
        "{e:?}"
    );
}

// Table entry reserved bytes nonzero.
#[test]
fn nonzero_entry_reserved() {
    let mut b = valid_model_bytes();
    patch_u64(&mut b, entry_offset(OUT_W) + ENTRY_RESERVED, 1);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(e, FormatError::Reserved("section entry bytes 56..64")),
        "{e:?}"
    );
}

// Length not dims × 4 (one element more, one byte less, zero).
#[test]
fn length_not_matching_dims() {
    let b = valid_model_bytes();
    let expected = u64_at(&b, entry_offset(MLP1_W) + LENGTH);
    assert_eq!(expected, 20 * 37 * 4);
    for found in [expected + 4, expected - 1, 0, u64::MAX] {
        let mut b = b.clone();
        patch_u64(&mut b, entry_offset(MLP1_W) + LENGTH, found);
        fix_meta(&mut b);
        let e = open_err(&b);
        assert!(
            matches!(&e, FormatError::SectionLength { section, expected: x, found: f } if section == "mlp.1.weight" && *x == expected && *f == found),
            "{e:?}"
        );
    }
}

// A dense section's offset not a multiple of 64.
#[test]
fn misaligned_dense_section() {
    for delta in [4u64, 32, 63] {
        let mut b = valid_model_bytes();
        let at = entry_offset(BIAS) + OFFSET;
        let offset = u64_at(&b, at) + delta;
        patch_u64(&mut b, at, offset);
        fix_meta(&mut b);
        let e = open_err(&b);
        assert!(
            matches!(&e, FormatError::Misaligned { section, offset: o, align: 64 } if section == "bias" && *o == offset),
            "{e:?}"
        );
    }
}

// The embedding table's offset a multiple of 64 but not of 65536.
#[test]
fn misaligned_embedding_table() {
    let mut b = valid_model_bytes();
    let at = entry_offset(EMBEDDING) + OFFSET;
    let offset = u64_at(&b, at) - 64;
    patch_u64(&mut b, at, offset);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(&e, FormatError::Misaligned { section, offset: o, align: 65536 } if section == "embedding" && *o == offset),
        "{e:?}"
    );
}

// A section starting inside the header, the table or the spec.
#[test]
fn section_inside_header_or_spec() {
    let b = valid_model_bytes();
    let in_spec = (spec_range(&b).end as u64 - 1) / 64 * 64;
    for (i, offset, section) in [
        (BIAS, 0u64, "bias"),
        (OUT_B, 64, "out.bias"),
        (MLP0_W, 640, "mlp.0.weight"),
        (LINEAR, in_spec, "linear"),
        (EMBEDDING, 0, "embedding"),
    ] {
        let mut b = b.clone();
        patch_u64(&mut b, entry_offset(i) + OFFSET, offset);
        fix_meta(&mut b);
        let e = open_err(&b);
        assert!(
            matches!(&e, FormatError::OverlapsHeader { section: s, offset: o } if s == section && *o == offset),
            "{section} at {offset}: {e:?}"
        );
    }
}

// A section running past the end of the file.
#[test]
fn section_past_end_of_file() {
    let b = valid_model_bytes();
    let len = b.len() as u64;
    for (i, offset, section) in [
        (OUT_B, len.next_multiple_of(64), "out.bias"),
        (MLP0_W, len.next_multiple_of(64) + 64 * 1000, "mlp.0.weight"),
        (EMBEDDING, 2 * TABLE_ALIGN, "embedding"),
    ] {
        let mut b = b.clone();
        patch_u64(&mut b, entry_offset(i) + OFFSET, offset);
        fix_meta(&mut b);
        let e = open_err(&b);
        assert!(
            matches!(&e, FormatError::OutOfBounds { section: s, offset: o, file_len, .. } if s == section && *o == offset && *file_len == len),
            "{section} at {offset}: {e:?}"
        );
    }
}

// Offset + length overflows u64 (a dense section at the last 64-aligned offset).
#[test]
fn offset_plus_length_overflows() {
    let mut b = valid_model_bytes();
    patch_u64(&mut b, entry_offset(OUT_W) + OFFSET, u64::MAX / 64 * 64);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(&e, FormatError::SizeOverflow { section } if section == "out.weight"),
        "{e:?}"
    );
}

// The embedding table at the last 65536-aligned offset: its 29,068 bytes still fit in u64, so
// this is out of bounds rather than an overflow.
#[test]
fn embedding_at_last_aligned_offset() {
    let mut b = valid_model_bytes();
    let offset = u64::MAX / TABLE_ALIGN * TABLE_ALIGN;
    patch_u64(&mut b, entry_offset(EMBEDDING) + OFFSET, offset);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(&e, FormatError::OutOfBounds { section, offset: o, end, .. }
            if section == "embedding" && *o == offset && *end == offset + 559 * 13 * 4),
        "{e:?}"
    );
}

// Two sections sharing bytes: at the same offset, and one running into the next.
#[test]
fn overlapping_sections() {
    let mut b = valid_model_bytes();
    let mlp1_bias = section_range(&b, MLP1_B).start as u64;
    patch_u64(&mut b, entry_offset(OUT_B) + OFFSET, mlp1_bias);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(&e, FormatError::Overlap { first, second } if first == "mlp.1.bias" && second == "out.bias"),
        "{e:?}"
    );

    let mut b = valid_model_bytes();
    patch_u64(&mut b, entry_offset(LINEAR) + OFFSET, TABLE_ALIGN - 64);
    fix_meta(&mut b);
    let e = open_err(&b);
    assert!(
        matches!(&e, FormatError::Overlap { first, second } if first == "linear" && second == "embedding"),
        "{e:?}"
    );
}

// Every table byte flipped with the meta checksum fixed: the damage is caught at open, or (for
// the embedding/linear placement and checksums, which open does not read) by `verify`.
#[test]
fn every_table_byte_flipped_with_meta_fixed() {
    let b = valid_model_bytes();
    for at in HEADER_LEN as usize..entry_offset(SECTIONS) {
        for mask in [0x01u8, 0x40, 0x80] {
            let mut b = b.clone();
            b[at] ^= mask;
            fix_meta(&mut b);
            if let Ok(file) = open_bytes(&b) {
                let e = file.verify().expect_err("a damaged table must not verify");
                let (entry, field) = ((at - 64) / 64, (at - 64) % 64);
                assert!(
                    entry == EMBEDDING || entry == LINEAR,
                    "byte {at} ^ {mask:#x} (entry {entry} field {field}) was accepted"
                );
                assert!(matches!(e, FormatError::SectionChecksum { .. }), "{e:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Section contents
// ---------------------------------------------------------------------------------------------

// One flipped byte in each dense section (read and checked at open).
#[test]
fn dense_section_byte_flipped() {
    let names = [
        "bias",
        "mlp.0.weight",
        "mlp.0.bias",
        "mlp.1.weight",
        "mlp.1.bias",
        "out.weight",
        "out.bias",
    ];
    for (i, want) in (BIAS..=OUT_B).zip(names) {
        let mut b = valid_model_bytes();
        let r = section_range(&b, i);
        b[r.end - 1] ^= 0x01;
        let e = open_err(&b);
        assert!(
            matches!(&e, FormatError::SectionChecksum { section, .. } if section == want),
            "{want}: {e:?}"
        );
    }
}

// One flipped byte in the embedding table or the first-order weights: open does not read them
// (cost must not grow with the vocabulary), but `verify` and `open_with(verify)` catch it.
#[test]
fn row_indexed_section_byte_flipped() {
    for (i, want) in [(EMBEDDING, "embedding"), (LINEAR, "linear")] {
        let mut b = valid_model_bytes();
        let r = section_range(&b, i);
        b[(r.start + r.end) / 2] ^= 0x10;
        let file = open_bytes(&b).expect("row-indexed sections are not read at open");
        let e = file.verify().expect_err("verify reads every section");
        assert!(
            matches!(&e, FormatError::SectionChecksum { section, .. } if section == want),
            "{want}: {e:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.dfm");
        std::fs::write(&path, &b).unwrap();
        let options = OpenOptions {
            verify: true,
            ..OpenOptions::default()
        };
        let e = Model::open_with(&path, &options).expect_err("open_with verify");
        assert!(
            matches!(&e, FormatError::SectionChecksum { section, .. } if section == want),
            "{want}: {e:?}"
        );
    }
}

// A NaN in an MLP weight and an infinity in a bias, with the checksums fixed.
#[test]
fn non_finite_weights() {
    for (i, element, value, want) in [
        (MLP1_W, 5usize, f32::NAN, "mlp.1.weight"),
        (MLP0_B, 36, f32::NEG_INFINITY, "mlp.0.bias"),
        (OUT_B, 0, f32::INFINITY, "out.bias"),
        (BIAS, 0, f32::NAN, "bias"),
    ] {
        let mut b = valid_model_bytes();
        let at = section_range(&b, i).start + 4 * element;
        b[at..at + 4].copy_from_slice(&value.to_le_bytes());
        fix_section(&mut b, i);
        fix_meta(&mut b);
        let e = open_err(&b);
        assert!(
            matches!(&e, FormatError::NonFinite { section, element: x } if section == want && *x == element),
            "{want}: {e:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Property test: random damage never panics
// ---------------------------------------------------------------------------------------------

/// Opens `bytes`; if it opens, also builds the model and scores a random batch. Must not panic.
fn open_and_score(bytes: &[u8], seed: u64) {
    if let Ok(file) = open_bytes(bytes) {
        let _ = file.verify();
        let model = Model::from_file(file, None).expect("an open file builds a model");
        let batch = random_batch(model.spec(), 37, seed);
        let mut scratch = Scratch::new(&model);
        let mut out = vec![0.0f32; batch.len()];
        // Damage inside the (unchecksummed-at-open) table can turn a value into a huge but
        // finite float; the scorer then reports the overflow as a typed error, never a NaN.
        match score(&model, &batch, &mut scratch, &mut out) {
            Ok(()) => assert!(out.iter().all(|s| s.is_finite())),
            Err(ScoreError::NonFiniteScore { .. }) => {}
            Err(e) => panic!("a batch drawn from the spec must score: {e}"),
        }
    }
}

/// A byte position, biased towards the header, table, spec and dense sections (the first 16 KiB)
/// where damage reaches the most checks.
fn position() -> impl Strategy<Value = usize> {
    let len = valid_model_bytes().len();
    prop_oneof![0..16_384usize, 0..len]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    // Random bytes overwritten anywhere (meta checksum optionally fixed, so that table and spec
    // damage reaches the later checks): open is Ok or Err, never a panic.
    #[test]
    fn random_byte_damage_never_panics(
        edits in proptest::collection::vec((position(), any::<u8>()), 1..8),
        fix in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut b = valid_model_bytes();
        for (at, v) in edits {
            b[at] = v;
        }
        // fix_meta trusts the count and spec length: only fix when they still fit the file.
        let spec_len = u64_at(&b, H_SPEC_LEN);
        if fix && u32_at(&b, H_COUNT) as usize == SECTIONS
            && spec_len <= MAX_SPEC_LEN
            && entry_offset(SECTIONS) + spec_len as usize <= b.len()
        {
            fix_meta(&mut b);
        }
        open_and_score(&b, seed);
    }

    // Truncated at a random point, the header's length optionally patched to match: never a panic.
    #[test]
    fn random_truncation_never_panics(
        at in position(),
        patch in any::<bool>(),
    ) {
        let b = valid_model_bytes();
        let mut t = b[..at].to_vec();
        if patch && at >= 64 {
            patch_u64(&mut t, H_FILE_LEN, at as u64);
            if at >= spec_range(&b).end {
                fix_meta(&mut t);
            }
        }
        prop_assert!(open_bytes(&t).is_err(), "a truncated file opened");
    }
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/// Writes every section in `ids` completely (all 0.5).
fn fill_all(w: &mut ModelWriter, ids: &[SectionId]) {
    for &id in ids {
        let n = w.section_elements(id) as usize;
        w.write(id, &vec![0.5f32; n]).unwrap();
    }
}

fn all_ids() -> Vec<SectionId> {
    vec![
        SectionId::Embedding,
        SectionId::Linear,
        SectionId::Bias,
        SectionId::LayerWeight(0),
        SectionId::LayerBias(0),
        SectionId::LayerWeight(1),
        SectionId::LayerBias(1),
        SectionId::OutWeight,
        SectionId::OutBias,
    ]
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// Writer: more elements than a section holds, by write and by skip, in one piece or after others.
#[test]
fn writer_section_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ModelWriter::create(dir.path().join("m.dfm"), &mixed_small()).unwrap();
    let e = w.write(SectionId::Bias, &[1.0, 2.0]).unwrap_err();
    assert!(
        matches!(&e, FormatError::SectionOverflow { section, elements: 1 } if section == "bias"),
        "{e:?}"
    );
    w.write(SectionId::LayerBias(1), &[0.0; 15]).unwrap();
    let e = w.write(SectionId::LayerBias(1), &[0.0; 6]).unwrap_err();
    assert!(
        matches!(&e, FormatError::SectionOverflow { section, elements: 20 } if section == "mlp.1.bias"),
        "{e:?}"
    );
    w.skip(SectionId::LayerBias(1), 5).unwrap();
    let e = w.skip(SectionId::LayerBias(1), 1).unwrap_err();
    assert!(matches!(e, FormatError::SectionOverflow { .. }), "{e:?}");
    let e = w.skip(SectionId::Embedding, u64::MAX).unwrap_err();
    assert!(
        matches!(&e, FormatError::SectionOverflow { section, elements: 7267 } if section == "embedding"),
        "{e:?}"
    );
    w.skip(SectionId::Embedding, 7267).unwrap();
    let e = w.skip(SectionId::Embedding, u64::MAX).unwrap_err();
    assert!(
        matches!(e, FormatError::SectionOverflow { .. }),
        "{e:?} (counter overflow)"
    );
}

// Writer: finish() with a section incomplete leaves no file at the target and no temp file.
#[test]
fn writer_incomplete_section() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("m.dfm");

    let w = ModelWriter::create(&target, &mixed_small()).unwrap();
    let e = w.finish().unwrap_err();
    assert!(
        matches!(&e, FormatError::IncompleteSection { section, written: 0, elements: 7267 } if section == "embedding"),
        "{e:?}"
    );
    assert!(!target.exists());
    assert!(
        dir_entries(dir.path()).is_empty(),
        "{:?}",
        dir_entries(dir.path())
    );

    let mut w = ModelWriter::create(&target, &mixed_small()).unwrap();
    let ids = all_ids();
    fill_all(&mut w, &ids[..3]);
    fill_all(&mut w, &ids[4..]);
    w.write(SectionId::LayerWeight(0), &[0.25; 100]).unwrap();
    w.skip(SectionId::LayerWeight(0), 23).unwrap();
    let e = w.finish().unwrap_err();
    assert!(
        matches!(&e, FormatError::IncompleteSection { section, written: 123, elements: 1924 } if section == "mlp.0.weight"),
        "{e:?}"
    );
    assert!(!target.exists());
    assert!(
        dir_entries(dir.path()).is_empty(),
        "{:?}",
        dir_entries(dir.path())
    );
}

// Writer: dropped unfinished over an existing model: the old file is untouched, no temp remains.
#[test]
fn writer_dropped_unfinished_keeps_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("m.dfm");
    write_random_model(&target, &mixed_small(), 1).unwrap();
    let before = std::fs::read(&target).unwrap();

    let mut w = ModelWriter::create(&target, &mixed_small()).unwrap();
    fill_all(&mut w, &all_ids()[..5]);
    drop(w);
    assert_eq!(std::fs::read(&target).unwrap(), before, "target changed");
    assert_eq!(dir_entries(dir.path()), vec!["m.dfm".to_string()]);

    // Also when the writer already failed.
    let mut w = ModelWriter::create(&target, &mixed_small()).unwrap();
    assert!(w.write(SectionId::OutBias, &[1.0, 1.0]).is_err());
    drop(w);
    assert_eq!(std::fs::read(&target).unwrap(), before, "target changed");
    assert_eq!(dir_entries(dir.path()), vec!["m.dfm".to_string()]);
    ModelFile::open(&target).unwrap().verify().unwrap();
}

// Writer: a file whose table is all holes (skipped) is valid and its checksum covers the zeros.
#[test]
fn writer_skipped_rows_verify() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("m.dfm");
    let mut w = ModelWriter::create(&target, &mixed_small()).unwrap();
    let ids = all_ids();
    w.skip(SectionId::Embedding, 7000).unwrap();
    w.write(SectionId::Embedding, &[0.125; 267]).unwrap();
    fill_all(&mut w, &ids[1..]);
    w.finish().unwrap();
    let b = std::fs::read(&target).unwrap();
    let file = open_bytes(&b).unwrap();
    file.verify().unwrap();
    let emb = file.f32s(SectionId::Embedding).unwrap();
    assert!(emb[..7000].iter().all(|&v| v == 0.0) && emb[7000..].iter().all(|&v| v == 0.125));
}

// ---------------------------------------------------------------------------------------------
// The optional metadata section (table position 9, after the tensors)
// ---------------------------------------------------------------------------------------------

const METADATA: usize = SECTIONS;
const METADATA_JSON: &str = r#"{"users":["a","b"],"note":"metadata section"}"#;

/// The valid model with `json` as its metadata section (written by `copy_with_metadata`).
fn model_with_metadata(json: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (plain, with) = (dir.path().join("plain.dfm"), dir.path().join("with.dfm"));
    std::fs::write(&plain, valid_model_bytes()).unwrap();
    let file = ModelFile::open(&plain).unwrap();
    deepfm::format::writer::copy_with_metadata(&file, &with, json.to_string()).unwrap();
    std::fs::read(&with).unwrap()
}

/// The metadata of `bytes`, which must open (metadata is not read at open).
fn metadata_err(bytes: &[u8]) -> FormatError {
    let file = open_bytes(bytes).unwrap();
    let err = file.metadata_json::<serde_json::Value>().unwrap_err();
    let verify = file.verify().unwrap_err();
    assert_eq!(format!("{err:?}"), format!("{verify:?}"), "verify differs");
    err
}

// A file without metadata has none; one with it holds the same tensors, scores the same, and
// gives its metadata back.
#[test]
fn metadata_round_trip_and_files_without_it() {
    let plain = open_bytes(&valid_model_bytes()).unwrap();
    assert!(plain.metadata_info().is_none());
    assert!(plain.metadata().unwrap().is_none());
    let b = model_with_metadata(METADATA_JSON);
    assert_eq!(u32_at(&b, H_COUNT) as usize, SECTIONS + 1);
    let with = open_bytes(&b).unwrap();
    with.verify().unwrap();
    assert_eq!(with.metadata().unwrap(), Some(METADATA_JSON));
    let value: serde_json::Value = with.metadata_json().unwrap().unwrap();
    assert_eq!(value["note"], "metadata section");
    assert_eq!(with.spec(), plain.spec());
    for s in plain.sections() {
        assert_eq!(
            with.bytes(s.shape.id),
            plain.bytes(s.shape.id),
            "{:?}",
            s.shape.id
        );
    }
    let info = with.metadata_info().unwrap();
    assert_eq!(info.length, METADATA_JSON.len() as u64);
    assert_eq!(
        info.checksum,
        section_checksum(&b[section_range(&b, METADATA)])
    );
    // Copying again replaces the metadata.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("again.dfm");
    deepfm::format::writer::copy_with_metadata(&with, &path, "[1, 2]".into()).unwrap();
    assert_eq!(
        ModelFile::open(&path).unwrap().metadata().unwrap(),
        Some("[1, 2]")
    );
}

// The writer refuses metadata that is not JSON (it could not be read back), leaving no file.
#[test]
fn writer_refuses_metadata_that_is_not_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.dfm");
    let err = ModelWriter::create_with_metadata(&path, &mixed_small(), "{not json".into())
        .err()
        .unwrap();
    assert!(matches!(err, FormatError::MetadataJson(_)), "{err:?}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

// Damaged metadata bytes: the file opens (the metadata is read on demand), and reading the
// metadata or `verify` names the problem.
#[test]
fn metadata_checksum_utf8_and_json_errors() {
    let good = model_with_metadata(METADATA_JSON);
    let r = section_range(&good, METADATA);

    let mut b = good.clone();
    b[r.start + 3] ^= 1;
    let e = metadata_err(&b);
    assert!(
        matches!(&e, FormatError::SectionChecksum { section, .. } if section == "metadata"),
        "{e:?}"
    );

    let mut b = good.clone();
    b[r.start + 3] = 0xFF;
    fix_section(&mut b, METADATA);
    fix_meta(&mut b);
    assert!(matches!(metadata_err(&b), FormatError::MetadataUtf8));

    let mut b = good.clone();
    b[r.end - 1] = b'x';
    fix_section(&mut b, METADATA);
    fix_meta(&mut b);
    assert!(matches!(metadata_err(&b), FormatError::MetadataJson(_)));
}

// Every field of the metadata entry is checked at open.
#[test]
fn metadata_entry_errors() {
    let good = model_with_metadata(METADATA_JSON);
    let e = entry_offset(METADATA);
    let len = METADATA_JSON.len() as u64;
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        fix_meta(&mut b);
        open_err(&b)
    };
    let err = edit(&|b| patch_u32(b, e + KIND, 9));
    assert!(
        matches!(&err, FormatError::UnexpectedSection { position, kind: 9, expected, .. } if *position == METADATA && expected == "metadata"),
        "{err:?}"
    );
    let err = edit(&|b| patch_u32(b, e + INDEX, 1));
    assert!(
        matches!(err, FormatError::UnexpectedSection { index: 1, .. }),
        "{err:?}"
    );
    let err = edit(&|b| patch_u32(b, e + DTYPE, 1));
    assert!(
        matches!(&err, FormatError::UnsupportedDtype { section, dtype: 1 } if section == "metadata"),
        "{err:?}"
    );
    let err = edit(&|b| patch_u32(b, e + RANK, 2));
    assert!(
        matches!(err, FormatError::ShapeMismatch { rank: 2, .. }),
        "{err:?}"
    );
    let err = edit(&|b| patch_u64(b, e + DIM1, 2));
    assert!(matches!(err, FormatError::ShapeMismatch { .. }), "{err:?}");
    let err = edit(&|b| patch_u64(b, e + ENTRY_RESERVED, 1));
    assert!(matches!(err, FormatError::Reserved(_)), "{err:?}");
    let huge = deepfm::format::MAX_METADATA_LEN + 1;
    let err = edit(&|b| {
        patch_u64(b, e + DIM0, huge);
        patch_u64(b, e + LENGTH, huge);
    });
    assert!(
        matches!(err, FormatError::MetadataLength(n) if n == huge),
        "{err:?}"
    );
    let err = edit(&|b| patch_u64(b, e + LENGTH, len + 1));
    assert!(
        matches!(&err, FormatError::SectionLength { section, .. } if section == "metadata"),
        "{err:?}"
    );
    let offset = u64_at(&good, e + OFFSET);
    let err = edit(&|b| patch_u64(b, e + OFFSET, offset + 8));
    assert!(
        matches!(&err, FormatError::Misaligned { section, .. } if section == "metadata"),
        "{err:?}"
    );
    let err = edit(&|b| patch_u64(b, e + OFFSET, 64));
    assert!(matches!(err, FormatError::OverlapsHeader { .. }), "{err:?}");
    let bias = u64_at(&good, entry_offset(BIAS) + OFFSET);
    let err = edit(&|b| patch_u64(b, e + OFFSET, bias));
    assert!(
        matches!(&err, FormatError::Overlap { first, second } if first == "bias" && second == "metadata" || second == "bias" && first == "metadata"),
        "{err:?}"
    );
    let err = edit(&|b| patch_u64(b, e + OFFSET, (good.len() as u64).next_multiple_of(64)));
    assert!(matches!(err, FormatError::OutOfBounds { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Reduced-precision embedding tables
// ---------------------------------------------------------------------------------------------

/// The bytes of the valid model with its table stored as row-wise int8.
fn int8_table_bytes() -> Vec<u8> {
    table_bytes(deepfm::TablePrecision::Int8)
}

fn table_bytes(table: deepfm::TablePrecision) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("valid.dfm");
    std::fs::write(&path, valid_model_bytes()).unwrap();
    let file = ModelFile::open(&path).unwrap();
    let out = dir.path().join("reduced.dfm");
    deepfm::format::writer::copy_with_precision(&file, &out, file.spec().mlp, table).unwrap();
    std::fs::read(&out).unwrap()
}

// The same in a 4-bit table: its bias (f16, after the codes and the scale) is NaN.
#[test]
fn int4_table_with_a_nan_bias() {
    let mut b = table_bytes(deepfm::TablePrecision::Int4);
    assert_eq!(
        u32_at(&b, entry_offset(0) + 8),
        6,
        "row-wise 4-bit is dtype 6"
    );
    let d = mixed_small().embedding_dim;
    let row = d.div_ceil(2) + 4;
    let at = section_range(&b, 0).start + 3 * row + d.div_ceil(2) + 2;
    b[at..at + 2].copy_from_slice(&[0x00, 0x7e]); // an f16 NaN
    fix_section(&mut b, 0);
    fix_meta(&mut b);
    let err = open_bytes(&b).unwrap().verify().unwrap_err();
    match err {
        FormatError::NonFinite { section, element } => {
            assert_eq!((section.as_str(), element), ("embedding", 3 * d));
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
}

// A row whose scale is NaN (checksums redone, so only the value check can catch it): the table
// is not read at open, and `verify` names the table and the row's first value.
#[test]
fn int8_table_with_a_nan_scale() {
    let mut b = int8_table_bytes();
    let d = mixed_small().embedding_dim;
    let at = section_range(&b, 0).start + 3 * (d + 8) + d;
    b[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    fix_section(&mut b, 0);
    fix_meta(&mut b);
    let err = open_bytes(&b).unwrap().verify().unwrap_err();
    match err {
        FormatError::NonFinite { section, element } => {
            assert_eq!((section.as_str(), element), ("embedding", 3 * d));
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
}

// The section table says f32 rows where the spec says int8 ones.
#[test]
fn table_dtype_disagrees_with_the_spec() {
    let mut b = int8_table_bytes();
    assert_eq!(
        u32_at(&b, entry_offset(0) + 8),
        4,
        "row-wise int8 is dtype 4"
    );
    patch_u32(&mut b, entry_offset(0) + 8, 1);
    fix_meta(&mut b);
    assert!(matches!(
        open_err(&b),
        FormatError::UnsupportedDtype { dtype: 1, ref section } if section == "embedding"
    ));
    // And an f32 file whose table entry claims f16 rows.
    let mut b = valid_model_bytes();
    patch_u32(&mut b, entry_offset(0) + 8, 2);
    fix_meta(&mut b);
    assert!(matches!(
        open_err(&b),
        FormatError::UnsupportedDtype { dtype: 2, .. }
    ));
}

// An int8 table whose length is that of f32 rows.
#[test]
fn int8_table_of_the_wrong_length() {
    let mut b = int8_table_bytes();
    let len = u64_at(&b, entry_offset(0) + LENGTH);
    patch_u64(&mut b, entry_offset(0) + LENGTH, len + 1);
    fix_meta(&mut b);
    assert!(matches!(open_err(&b), FormatError::SectionLength { .. }));
}
