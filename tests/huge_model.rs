//! A model whose embedding table is 64 GiB (a sparse file: only the rows used are written),
//! larger than this machine's memory: it opens in under 100 ms, grows resident memory by under
//! 64 MiB, and scores rows at both ends of the table correctly; scoring random rows all over
//! it grows resident memory by about one page per row touched (no read-ahead), not with the
//! table.

use deepfm::fixtures::{SparseShape, write_sparse_model};
use deepfm::reference::{max_relative_error, score_reference};
use deepfm::rng::Rng;
use deepfm::{Batch, Column, Model, Scratch, score};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// 2^28 rows × 64 dims × 4 bytes = 64 GiB.
const BIG_VOCAB: u64 = SparseShape::HUGE.big_vocab;
const SMALL_VOCAB: u64 = SparseShape::HUGE.small_vocab;
/// Rows written at each end of the big field.
const EDGE: u64 = SparseShape::HUGE.edge;

/// Resident memory of this process (`VmRSS` in `/proc/self/status`), in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The tests measure this process's resident memory: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The 64 GiB model: a big field of [`BIG_VOCAB`] rows (only [`EDGE`] rows at each end
/// written) and a small one, D = 64, hidden 32-16.
fn write_huge_model(dir: &Path) -> PathBuf {
    let path = write_sparse_model(&dir.join("huge.dfm"), SparseShape::HUGE, 3).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len >= 64 << 30, "file is only {len} bytes");
    path
}

#[test]
fn sixty_four_gib_table_opens_fast_and_scores_both_ends() {
    if !cfg!(target_os = "linux") {
        eprintln!("skipped: resident memory is read from /proc (Linux only)");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = write_huge_model(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();

    let rss_before = resident_bytes();
    let start = Instant::now();
    let model = Model::open(&path).unwrap();
    let opened = start.elapsed();
    let grown = resident_bytes().saturating_sub(rss_before);
    eprintln!(
        "opened a {:.1} GiB model in {:.2} ms; resident memory grew {:.1} MiB",
        len as f64 / (1u64 << 30) as f64,
        opened.as_secs_f64() * 1e3,
        grown as f64 / (1 << 20) as f64
    );
    assert!(opened.as_millis() < 100, "open took {opened:?}");
    assert!(grown < 64 << 20, "resident memory grew {grown} bytes");

    let big = [
        0u64,
        1,
        EDGE - 1,
        BIG_VOCAB - EDGE,
        BIG_VOCAB - 2,
        BIG_VOCAB - 1,
        BIG_VOCAB / 2,
    ];
    let small = [0u64, 9, 3, 5, 1, 9, 2];
    let columns = [Column::Categorical(&big), Column::Categorical(&small)];
    let batch = Batch::new(&columns);
    let mut out = vec![0.0f32; big.len()];
    score(&model, &batch, &mut Scratch::new(&model), &mut out).unwrap();
    let want = score_reference(&model, &batch);
    assert!(
        max_relative_error(&out, &want) <= 1e-5,
        "{out:?} vs {want:?}"
    );
    // The rows at both ends were written with data, the middle row is a hole (zeros): the
    // scores must differ accordingly, proving the right rows were read.
    assert_ne!(out[0], out[5]);
    let grown = resident_bytes().saturating_sub(rss_before);
    assert!(
        grown < 64 << 20,
        "resident memory grew {grown} bytes after scoring"
    );
}

/// Rows scored at random all over the table.
const RANDOM_ROWS: usize = 20_000;

// Scoring rows drawn uniformly from the whole 64 GiB table (nearly all of them file holes) maps
// one page per row: resident memory grows with the rows touched, never with the table, and
// scoring the same rows again adds nothing. (Without the random-access advice given at open,
// each fault would read ahead and map its neighbours too.)
#[test]
fn random_rows_of_a_table_larger_than_memory_keep_resident_memory_bounded() {
    if !cfg!(target_os = "linux") {
        eprintln!("skipped: resident memory is read from /proc (Linux only)");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = write_huge_model(dir.path());
    let model = Model::open(&path).unwrap();
    let mut rng = Rng::new(17);
    let big: Vec<u64> = (0..RANDOM_ROWS).map(|_| rng.below(BIG_VOCAB)).collect();
    let small: Vec<u64> = (0..RANDOM_ROWS).map(|_| rng.below(SMALL_VOCAB)).collect();
    let columns = [Column::Categorical(&big), Column::Categorical(&small)];
    let batch = Batch::new(&columns);
    let mut scratch = Scratch::new(&model);
    let mut out = vec![0.0f32; RANDOM_ROWS];
    // Warm up the scoring path on one row, so that only table pages are counted below.
    score(
        &model,
        &Batch::new(&[Column::Categorical(&[0]), Column::Categorical(&[0])]),
        &mut scratch,
        &mut out[..1],
    )
    .unwrap();

    let before = resident_bytes();
    let start = Instant::now();
    score(&model, &batch, &mut scratch, &mut out).unwrap();
    let took = start.elapsed();
    let grown = resident_bytes().saturating_sub(before);
    // A row of D = 64 floats is 256 bytes, inside one 4 KiB page of the table; `linear` adds
    // one more page per row (4 bytes a row: 1024 rows share a page).
    let pages = RANDOM_ROWS as u64 * 2;
    eprintln!(
        "scored {RANDOM_ROWS} random rows of a 64 GiB table in {:.0} ms; resident memory grew {:.1} MiB (bound: two pages a row, embedding and linear, + 16 MiB: {:.1} MiB)",
        took.as_secs_f64() * 1e3,
        grown as f64 / (1 << 20) as f64,
        (pages * 4096 + (16 << 20)) as f64 / (1 << 20) as f64,
    );
    assert!(
        grown <= pages * 4096 + (16 << 20),
        "resident memory grew {grown} bytes for {RANDOM_ROWS} rows"
    );
    assert!(out.iter().all(|p| (0.0..=1.0).contains(p)));

    let again = resident_bytes();
    let mut second = vec![0.0f32; RANDOM_ROWS];
    score(&model, &batch, &mut scratch, &mut second).unwrap();
    let regrown = resident_bytes().saturating_sub(again);
    assert!(
        regrown <= 4 << 20,
        "scoring the same rows again grew memory by {regrown} bytes"
    );
    assert_eq!(out, second);
}
