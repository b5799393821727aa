//! Criteo lines → `data::criteo::CriteoPreprocessor` (`fit_reader`, `parse_line`) and
//! `data::stream::read_all`. The first byte is the setup (integer mode, delimiter, hashing or a
//! vocabulary fitted on the input itself with a minimum count), the rest is the file.
//!
//! Invariants: no panic; fitting does not depend on read buffering; an accepted line adds one
//! row and a label in `[0, 1]`, a refused one nothing and an error naming it; rows fit the
//! preprocessor's spec; in hashing mode they score Ok on a random model of that spec, every
//! score a probability; `read_all` gives the same rows and labels exactly when every line parses.
//! Details in the doc comment of `deepfm_fuzz::check_criteo`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    deepfm_fuzz::check_criteo(data);
});
