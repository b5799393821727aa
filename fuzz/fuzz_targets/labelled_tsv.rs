//! A labelled TSV training file (`label\tuser\tage\tgenres\ttags` for `mixed_small()`) streamed
//! through `data::stream::Streamed` with `LabelledTsv`: line limit, skipping bad lines, shuffle
//! buffer and batch size come from the first two bytes.
//!
//! Invariants, against an independent model of the stream (too long or non-UTF-8 lines are bad,
//! blank lines skipped, the rest parsed by `LabelledTsv::parse`): with skipping, exactly the
//! parsed samples come out (in file order without a buffer) and the bad lines are counted;
//! without it the epoch fails exactly when a line is bad; batches hold at most the batch size and
//! score Ok (or `NonFiniteScore` for huge ages) on the `mixed_small` model. Details in
//! `deepfm_fuzz::check_labelled_tsv`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    deepfm_fuzz::check_labelled_tsv(data);
});
