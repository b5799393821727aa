//! CSV/TSV files described by a JSON schema → `data::schema` (`Schema::from_json`,
//! `SchemaEncoder::fit_reader`, `fit_skipping_bad_lines`, `parser_for`, `SchemaParser`),
//! `data::prep::Preprocessing` and `data::stream::read_all`. The first byte is the setup (one of
//! six fixed schemas, or a schema JSON taken from the input up to its first NUL; labels or none;
//! skipping bad lines), the rest is the file.
//!
//! Invariants: no panic; fitting and placing the columns do not depend on read buffering;
//! errors name an existing line; an accepted line adds one row and a label, a refused one
//! nothing and an error naming it; a fitted vocabulary knows every token of its own training
//! file; rows fit the encoder's spec and score on a random model of it; `read_all` gives the same
//! rows and labels exactly when every line parses; fitting and training skip the same lines.
//! Details in the doc comment of `deepfm_fuzz::check_schema`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    deepfm_fuzz::check_schema(data);
});
