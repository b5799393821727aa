//! Model file bytes → `validate_bytes`, and (when valid) `Model::open` + scoring.
//!
//! The first input byte picks the mode and options:
//!
//! - bit 0 clear: the rest of the input is a whole model file, as is.
//! - bit 0 set: the rest mutates a valid `mixed_small()` model (~95 KB) so that the deeper checks
//!   are reached. Then:
//!   - bit 4: the next 3 bytes (LE) resize the file to `value % (2 × len + 1)` bytes (zero fill);
//!   - then patches until the input runs out, each `[tag, lo, hi, data...]`: `tag & 15` + 1 data
//!     bytes are XORed (or, with tag bit 5, written) at offset `lo | hi << 8`, plus 65536 when tag
//!     bit 4 is set (the embedding table starts there), wrapped to the file length;
//!   - bit 3: write the actual length into the header's file-length field;
//!   - bit 1: recompute every section's checksum (so section data edits pass the checksum);
//!   - bit 2: recompute the meta checksum (so header, table and spec edits reach later checks).
//! - bit 5 (both modes): open with the portable kernels instead of the best ones.
//!
//! Invariants: no panic; bytes that `validate_bytes` accepts also open with `Model::open`, with
//! the same spec; a batch built from the accepted spec (ids in range, finite values) scores Ok,
//! or `NonFiniteScore` (row-indexed sections are not checked at open, and huge finite weights may
//! overflow), never another error.

#![no_main]

use deepfm::format::reader::validate_bytes;
use deepfm::random::{mixed_small, random_batch};
use deepfm::{Batch, Column, Isa, ScoreError, Scratch, score};
use deepfm_fuzz::{
    base_model_bytes, fix_file_len, fix_meta_checksum, fix_section_checksums, open_bytes,
};
use libfuzzer_sys::fuzz_target;

fn mutate(flags: u8, mut rest: &[u8]) -> Vec<u8> {
    let mut bytes = base_model_bytes().to_vec();
    if flags & 0x10 != 0 && rest.len() >= 3 {
        let v = u32::from_le_bytes([rest[0], rest[1], rest[2], 0]) as usize;
        bytes.resize(v % (2 * bytes.len() + 1), 0);
        rest = &rest[3..];
    }
    while let [tag, lo, hi, tail @ ..] = rest {
        let n = ((tag & 15) as usize + 1).min(tail.len());
        let (data, next) = tail.split_at(n);
        rest = next;
        if bytes.is_empty() {
            continue;
        }
        let mut at = (*lo as usize | (*hi as usize) << 8) + if tag & 0x10 != 0 { 65536 } else { 0 };
        for &b in data {
            at %= bytes.len();
            if tag & 0x20 != 0 {
                bytes[at] = b;
            } else {
                bytes[at] ^= b;
            }
            at += 1;
        }
    }
    if flags & 0x08 != 0 {
        fix_file_len(&mut bytes);
    }
    if flags & 0x02 != 0 {
        fix_section_checksums(&mut bytes);
    }
    if flags & 0x04 != 0 {
        fix_meta_checksum(&mut bytes);
    }
    bytes
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mutated;
    let bytes: &[u8] = if flags & 1 == 0 {
        rest
    } else {
        mutated = mutate(flags, rest);
        &mutated
    };
    let Ok((spec, sections)) = validate_bytes(bytes) else {
        return;
    };
    assert_eq!(sections.len(), deepfm::format::tensor_shapes(&spec).len());

    let isa = if flags & 0x20 != 0 {
        Isa::Portable
    } else {
        Isa::detect()
    };
    let model = match open_bytes(bytes, Some(isa)) {
        Ok(model) => model,
        Err(e) => panic!("validate_bytes accepted the file but Model::open refused it: {e}"),
    };
    assert_eq!(
        model.spec(),
        &spec,
        "open and validate_bytes disagree on the spec"
    );
    // Verifying reads the row-indexed sections too: any result, no panic.
    let _ = model.file().verify();

    let mut scratch = Scratch::new(&model);
    // A fixed mixed_small batch (1 and 2 rows: the GEMV and GEMM paths). Must score when the
    // spec is still mixed_small; any typed result otherwise.
    let (users, ages) = ([3u64, 499], [0.5f32, -2.0]);
    let (genres, genre_offsets) = ([1u64, 2, 17], [0usize, 3, 3]);
    let (tags, tag_offsets) = ([0u64, 39], [0usize, 1, 2]);
    for rows in [1usize, 2] {
        let columns = [
            Column::Categorical(&users[..rows]),
            Column::Numeric(&ages[..rows]),
            Column::MultiHot {
                ids: &genres[..genre_offsets[rows]],
                offsets: &genre_offsets[..=rows],
            },
            Column::MultiHot {
                ids: &tags[..tag_offsets[rows]],
                offsets: &tag_offsets[..=rows],
            },
        ];
        let mut out = [0.0f32; 2];
        let result = score(&model, &Batch::new(&columns), &mut scratch, &mut out);
        if spec == mixed_small() {
            match result {
                // Finite but huge weights can overflow (not checked at open).
                Ok(()) | Err(ScoreError::NonFiniteScore { .. }) => {}
                Err(e) => panic!("a valid mixed_small batch did not score: {e}"),
            }
        }
    }
    // A batch drawn from the accepted spec always fits it.
    for rows in [1usize, 3] {
        let batch = random_batch(&spec, rows, 7);
        let mut out = vec![0.0f32; rows];
        match score(&model, &batch, &mut scratch, &mut out) {
            Ok(()) | Err(ScoreError::NonFiniteScore { .. }) => {}
            Err(e) => panic!("a batch built from the model's own spec did not score: {e}"),
        }
    }
});
