//! MovieLens files → `data::movielens::parse_{ratings,users,movies,genres}`: the `::` files of
//! ML-1M (`ratings.dat`, `users.dat`, `movies.dat`) and ML-100k's `u.data`, `u.user`, `u.item`,
//! `u.genre`. The first byte picks the parser (`% 4`), the rest is the file.
//!
//! Invariants: no panic; the same result whatever the read buffering (whole slice vs 7-byte
//! `BufReader`); an error names a line that exists and a column from 1; at most one record per
//! line; ratings in `0.5..=5`, and ratings written back with the file's separator parse to the
//! same ratings.

#![no_main]

use libfuzzer_sys::fuzz_target;

// The checks live in `deepfm_fuzz::check_movielens`, shared with `tests/fuzz_corpus.rs`.
fuzz_target!(|data: &[u8]| {
    deepfm_fuzz::check_movielens(data);
});
