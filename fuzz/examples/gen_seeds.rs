//! Writes the hand-made starting corpus of every target into `<dir>/<target>/` (default
//! `corpus/`, relative to the current directory):
//!
//! ```text
//! cd fuzz && cargo run --release --example gen_seeds -- corpus
//! ```
//!
//! model_bytes: the valid `mixed_small()` file whole (both kernel flags) and truncated, plus a few
//! mutation-mode inputs aimed at the header, the table, the spec and the dense sections.
//! spec_json: the built-in shapes' specs and a few invalid ones. score_tsv: valid and invalid
//! lines for `mixed_small()`. score_columns: a few seeded random byte strings (its input is
//! decoded by `arbitrary`).

use deepfm::fixtures::{criteo_like, mixed_small, movielens_like};
use deepfm::rng::Rng;
use deepfm_fuzz::{ENTRY_LEN, HEADER_LEN, base_model_bytes};
use std::path::Path;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A mutation-mode patch `[tag, lo, hi, data...]` at `offset` (< 65536 + 65536).
fn patch(offset: usize, data: &[u8], set: bool) -> Vec<u8> {
    assert!(!data.is_empty() && data.len() <= 16);
    let high = offset >= 65536;
    let off = offset - if high { 65536 } else { 0 };
    let tag = (data.len() - 1) as u8 | if high { 0x10 } else { 0 } | if set { 0x20 } else { 0 };
    let mut p = vec![tag, off as u8, (off >> 8) as u8];
    p.extend_from_slice(data);
    p
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let dir = Path::new(&dir);
    let model = base_model_bytes();

    // --- model_bytes ------------------------------------------------------------------------
    let t = "model_bytes";
    let raw = |flags: u8, bytes: &[u8]| [&[flags][..], bytes].concat();
    write(dir, t, "valid", &raw(0x00, model));
    write(dir, t, "valid_portable", &raw(0x20, model));
    for cut in [0usize, 63, 64, 640, 1000, model.len() - 1] {
        write(
            dir,
            t,
            &format!("truncated_{cut}"),
            &raw(0x00, &model[..cut]),
        );
    }
    // Section table entries: kind, index, dtype, rank, dims, offset, length, checksum.
    let entry = |i: usize| HEADER_LEN + i * ENTRY_LEN;
    let spec_offset = u64_at(model, 24) as usize;
    let bias_offset = u64_at(model, entry(2) + 32) as usize; // `bias`, a dense section
    let mlp0_offset = u64_at(model, entry(3) + 32) as usize;
    let mutations: Vec<(&str, u8, Vec<u8>)> = vec![
        ("mut_none", 0x01, vec![]),
        ("mut_none_portable", 0x21, vec![]),
        // Header: version 1 → 3, with the meta checksum fixed.
        ("mut_version", 0x05, patch(8, &[2], false)),
        // Header: flags bit, meta fixed.
        ("mut_flags", 0x05, patch(44, &[1], false)),
        // Header: section count 9 → 11, meta fixed (reaches the section count check).
        ("mut_count", 0x05, patch(40, &[2], false)),
        // Table: dtype of `bias` 1 → 2.
        ("mut_dtype", 0x05, patch(entry(2) + 8, &[3], false)),
        // Table: offset of `mlp.0.weight` moved by 64 (overlap), meta fixed.
        ("mut_overlap", 0x05, patch(entry(3) + 32, &[64], false)),
        // Table: embedding offset moved by 64 (misaligned).
        ("mut_misaligned", 0x05, patch(entry(0) + 32, &[64], false)),
        // Spec text: the first digit of the spec flipped (a different vocabulary).
        ("mut_spec_digit", 0x05, {
            let spec = &model[spec_offset..];
            let at = spec.iter().position(|b| b.is_ascii_digit()).unwrap();
            patch(spec_offset + at, &[0x01], false)
        }),
        // Spec text: `"sigmoid"` → `"linear"` is longer; flip a letter instead (bad JSON).
        (
            "mut_spec_letter",
            0x05,
            patch(spec_offset + 2, &[0x20], false),
        ),
        // Dense data: `bias` set to +inf, checksums fixed (reaches the finiteness check).
        (
            "mut_bias_inf",
            0x07,
            patch(bias_offset, &0x7f80_0000u32.to_le_bytes(), true),
        ),
        // Dense data: a weight changed, checksums fixed: opens and scores with other weights.
        (
            "mut_weight",
            0x07,
            patch(mlp0_offset + 4, &[0x10, 0x20], false),
        ),
        // Embedding table data changed (not checked at open): opens and scores.
        (
            "mut_embedding",
            0x01,
            patch(65536 + 52, &[0xff, 0xff, 0x7f, 0x7f], true),
        ),
        // Resized to half the length, file length fixed, checksums fixed.
        ("mut_resize", 0x1f, {
            let n = model.len() / 2;
            vec![n as u8, (n >> 8) as u8, (n >> 16) as u8]
        }),
    ];
    for (name, flags, patches) in mutations {
        write(dir, t, name, &[&[flags][..], &patches].concat());
    }

    // --- spec_json --------------------------------------------------------------------------
    let t = "spec_json";
    write(dir, t, "mixed_small", mixed_small().to_json().as_bytes());
    write(dir, t, "criteo_like", criteo_like().to_json().as_bytes());
    write(
        dir,
        t,
        "movielens_like",
        movielens_like().to_json().as_bytes(),
    );
    let by_hand = [
        (
            "doc_example",
            r#"{"fields": [{"name": "C1", "kind": "categorical", "vocab": 1000},
             {"name": "I1", "kind": "numeric"},
             {"name": "genres", "kind": "multi_hot", "vocab": 18, "pooling": "mean"}],
  "embedding_dim": 16, "hidden": [400, 400, 400], "output": "sigmoid"}"#,
        ),
        (
            "no_hidden_clamp",
            r#"{"fields":[{"name":"a","kind":"categorical","vocab":3},{"name":"b","kind":"numeric"}],"embedding_dim":4,"hidden":[],"output":"linear","clamp":[1,5]}"#,
        ),
        (
            "no_fields",
            r#"{"fields":[],"embedding_dim":4,"hidden":[8],"output":"sigmoid"}"#,
        ),
        (
            "overflow",
            r#"{"fields":[{"name":"a","kind":"categorical","vocab":18446744073709551615},{"name":"b","kind":"multi_hot","vocab":2,"pooling":"sum"}],"embedding_dim":1,"hidden":[],"output":"sigmoid"}"#,
        ),
        (
            "bad_clamp",
            r#"{"fields":[{"name":"a","kind":"numeric"}],"embedding_dim":1,"hidden":[1],"output":"sigmoid","clamp":[5,1]}"#,
        ),
        (
            "unknown_key",
            r#"{"fields":[{"name":"a","kind":"numeric"}],"embedding_dim":1,"hidden":[1],"output":"linear","clamps":[1,5]}"#,
        ),
        (
            "dup_name",
            r#"{"fields":[{"name":"a","kind":"numeric"},{"name":"a","kind":"numeric"}],"embedding_dim":256,"hidden":[16384],"output":"linear"}"#,
        ),
    ];
    for (name, text) in by_hand {
        write(dir, t, name, text.as_bytes());
    }

    // --- score_tsv --------------------------------------------------------------------------
    let t = "score_tsv";
    let lines = [
        ("one", "3\t0.5\t1,2\t"),
        ("crlf", "3\t0.5\t1,2\t\r"),
        ("edges", "499\t-2.5e3\t17\t0,39"),
        ("empty_lists", "0\t0\t\t"),
        (
            "many",
            "3\t0.5\t1,2\t\n499\t1\t17\t39\n0\t-1\t\t1,1,1,1\n7\t3\t0,0\t5",
        ),
        (
            "mixed_bad",
            "3\t0.5\t1,2\t\n500\t0.5\t1\t\n3\tnan\t1\t\n3\t1\t1,,2\t\n3\t1\t1",
        ),
        ("spaces", " 3 \t 0.5 \t 1, 2 \t 3 "),
        ("huge_value", "3\t1e30\t1\t2"),
    ];
    for (name, text) in lines {
        write(dir, t, name, text.as_bytes());
    }

    // --- score_columns ----------------------------------------------------------------------
    let t = "score_columns";
    let mut rng = Rng::new(2024);
    for (i, len) in [16usize, 64, 128, 256, 512, 1024].into_iter().enumerate() {
        let bytes: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        write(dir, t, &format!("random_{i}"), &bytes);
    }
    println!("seeds written under {}", dir.display());
}
