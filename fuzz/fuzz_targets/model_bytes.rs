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

use deepfm_fuzz::check_model_bytes;
use libfuzzer_sys::fuzz_target;

// The decoding and the invariants live in `deepfm_fuzz::check_model_bytes`, shared with the
// stable-Rust corpus replay in `tests/fuzz_corpus.rs`.
fuzz_target!(|data: &[u8]| {
    check_model_bytes(data, "model_bytes");
});
