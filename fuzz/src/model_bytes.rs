//! The `model_bytes` target: mutations of the base model file and the whole check of one.

use super::*;

pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The section checksum: XXH3-64 of each 1 MiB chunk, then XXH3-64 of those digests (LE).
pub fn section_checksum(bytes: &[u8]) -> u64 {
    let mut outer = Xxh3::new();
    for chunk in bytes.chunks(CHECKSUM_CHUNK) {
        outer.update(&xxh3_64(chunk).to_le_bytes());
    }
    outer.digest()
}

/// Rewrites the stored checksum of every table entry whose `[offset, offset + length)` lies
/// inside `bytes`, so that edits of section data (or of the entries) get past the checksum
/// check. Entries out of bounds are left alone.
pub fn fix_section_checksums(bytes: &mut [u8]) {
    let Some(count) = u32_at(bytes, 40) else {
        return;
    };
    for i in 0..count.min(256) as usize {
        let e = HEADER_LEN + i * ENTRY_LEN;
        let (Some(offset), Some(length)) = (u64_at(bytes, e + 32), u64_at(bytes, e + 40)) else {
            return;
        };
        let Some(end) = offset.checked_add(length) else {
            continue;
        };
        if end > bytes.len() as u64 || e + ENTRY_LEN > bytes.len() {
            continue;
        }
        let sum = section_checksum(&bytes[offset as usize..end as usize]);
        bytes[e + 48..e + 56].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Rewrites the meta checksum (header bytes 48..56): XXH3-64 of header bytes 0..48, then the
/// section table (count from the header), then the spec (offset and length from the header).
/// Does nothing when those ranges are not inside `bytes`.
pub fn fix_meta_checksum(bytes: &mut [u8]) {
    let (Some(count), Some(spec_offset), Some(spec_len)) =
        (u32_at(bytes, 40), u64_at(bytes, 24), u64_at(bytes, 32))
    else {
        return;
    };
    let table_end = HEADER_LEN as u64 + ENTRY_LEN as u64 * count as u64;
    let Some(spec_end) = spec_offset.checked_add(spec_len) else {
        return;
    };
    if table_end > bytes.len() as u64 || spec_end > bytes.len() as u64 {
        return;
    }
    let mut meta = Xxh3::new();
    meta.update(&bytes[..48]);
    meta.update(&bytes[HEADER_LEN..table_end as usize]);
    meta.update(&bytes[spec_offset as usize..spec_end as usize]);
    bytes[48..56].copy_from_slice(&meta.digest().to_le_bytes());
}

/// Writes the actual length into the header's file-length field (bytes 16..24).
pub fn fix_file_len(bytes: &mut [u8]) {
    let len = bytes.len() as u64;
    if let Some(field) = bytes.get_mut(16..24) {
        field.copy_from_slice(&len.to_le_bytes());
    }
}

/// Mutation mode of the `model_bytes` target: `rest` edits a copy of [`base_model_bytes`] as
/// `flags` says (the encoding is in the doc comment of `fuzz_targets/model_bytes.rs`).
pub(crate) fn mutate(flags: u8, mut rest: &[u8]) -> Vec<u8> {
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

/// One `model_bytes` input, decoded and checked as the doc comment of
/// `fuzz_targets/model_bytes.rs` says: the first byte picks raw or mutation mode and the kernels;
/// bytes that `validate_bytes` accepts must open with the same spec, and score a fixed
/// `mixed_small` batch (while the spec is still `mixed_small`) and a batch drawn from the spec,
/// with Ok or `NonFiniteScore`. Panics (messages prefixed by `name`) when an invariant fails;
/// returns whether `validate_bytes` accepted the bytes.
pub fn check_model_bytes(data: &[u8], name: &str) -> bool {
    let Some((&flags, rest)) = data.split_first() else {
        return false;
    };
    let mutated;
    let bytes: &[u8] = if flags & 1 == 0 {
        rest
    } else {
        mutated = mutate(flags, rest);
        &mutated
    };
    let Ok((spec, sections)) = validate_bytes(bytes) else {
        return false;
    };
    assert_eq!(sections.len(), tensor_shapes(&spec).len(), "{name}");

    let isa = if flags & 0x20 != 0 {
        Isa::portable()
    } else {
        Isa::best()
    };
    let model = open_bytes(bytes, Some(isa)).unwrap_or_else(|e| {
        panic!("{name}: validate_bytes accepted the file but Model::open refused it: {e}")
    });
    assert_eq!(
        model.spec(),
        &spec,
        "{name}: open and validate_bytes disagree on the spec"
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
                weights: None,
            },
            Column::MultiHot {
                ids: &tags[..tag_offsets[rows]],
                offsets: &tag_offsets[..=rows],
                weights: None,
            },
        ];
        let mut out = [0.0f32; 2];
        let result = score(&model, &Batch::new(&columns), &mut scratch, &mut out);
        if spec == mixed_small() {
            match result {
                // Finite but huge weights can overflow (not checked at open).
                Ok(()) | Err(ScoreError::NonFiniteScore { .. }) => {}
                Err(e) => panic!("{name}: a valid mixed_small batch did not score: {e}"),
            }
        }
    }
    // A batch drawn from the accepted spec always fits it.
    for rows in [1usize, 3] {
        let batch = random_batch(&spec, rows, 7);
        let mut out = vec![0.0f32; rows];
        match score(&model, &batch, &mut scratch, &mut out) {
            Ok(()) | Err(ScoreError::NonFiniteScore { .. }) => {}
            Err(e) => panic!("{name}: a batch built from the model's own spec did not score: {e}"),
        }
    }
    true
}
