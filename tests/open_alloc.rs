//! Opening a model never allocates more than a small bound proportional to what the header
//! declares (the spec length, at most 1 MiB, and the section table, at most 256 entries),
//! whatever the header and spec claim: a counting global allocator records the peak of live
//! heap bytes while hostile files are opened. Each test builds one hostile file and expects its
//! typed error.
//!
//! The claimed sizes (a 2^50-byte table, a 1 GiB MLP, a 1 MiB spec, 256 sections, a file length
//! of 2^64 − 1) are never allocated: sizes are checked against the file before anything is read
//! or packed, and the embedding table is only ever mapped.

use deepfm::fixtures::{mixed_small, write_random_model};
use deepfm::format::{HEADER_LEN, MAGIC, ModelFile, SECTION_ALIGN, TABLE_ALIGN, tensor_shapes};
use deepfm::spec::{MAX_DENSE_PARAMS, MAX_FIELDS, MAX_LAYER_WIDTH};
use deepfm::{Field, FieldKind, FormatError, Model, ModelSpec, Output, SpecError};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use xxhash_rust::xxh3::Xxh3;

/// Live heap bytes and their peak since the last [`measure`] reset.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(live, Ordering::SeqCst);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as the new block arriving before the old one leaves: the worst case.
        grew(new_size);
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Tests run one at a time, so that the peak is this test's own.
static SERIAL: Mutex<()> = Mutex::new(());

/// A fixed allowance for the opening machinery (path, error strings, the section list, the
/// rayon job of the finiteness check): independent of anything the file claims.
const BASE_BYTES: usize = 64 << 10;

/// Heap bytes allowed per byte of spec text: `serde_json` builds the spec's vectors with
/// doubling growth (a `hidden` list of 1-digit widths costs 8 bytes per 2 characters, twice
/// that while a vector grows).
const PER_SPEC_BYTE: usize = 16;

/// Opens `bytes` (written to a temporary file) with `Model::open` and returns the error and the
/// peak of live heap bytes above the level before the call. Panics if the file opens.
fn open_peak(bytes: &[u8]) -> (FormatError, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.dfm");
    std::fs::write(&path, bytes).unwrap();
    // Warm up what is set up once per process (rayon's pool, std's buffers).
    let _ = Model::open(&path);
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let result = Model::open(&path);
    let peak = PEAK.load(Ordering::SeqCst) - before;
    eprintln!("peak {peak} bytes above the level before opening");
    match result {
        Ok(_) => panic!("a hostile file opened"),
        Err(e) => (e, peak),
    }
}

/// The bound for a file whose header declares `spec_len` bytes of spec (capped at the format's
/// 1 MiB limit: a longer claim is refused before anything is read).
fn bound(spec_len: u64) -> usize {
    BASE_BYTES + PER_SPEC_BYTE * spec_len.min(deepfm::format::MAX_SPEC_LEN) as usize
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Header, section table and spec of a file for `spec` whose sections are placed as the
/// writer places them (dense sections after the spec, then `linear`, then the embedding table
/// at a 65536-aligned offset) but whose data is absent: the file ends after the spec, and the
/// header's file length says so. Every number is consistent and the meta checksum is right,
/// so the reader gets as far as comparing the sections with the file length.
fn claims_without_data(spec_json: &str) -> Vec<u8> {
    let spec = ModelSpec::from_json(spec_json).expect("a valid spec");
    let shapes = tensor_shapes(&spec);
    let count = shapes.len();
    let spec_offset = HEADER_LEN as usize + 64 * count;
    let spec_end = (spec_offset + spec_json.len()) as u64;
    let mut b = vec![0u8; spec_end as usize];
    b[..8].copy_from_slice(&MAGIC);
    put_u32(&mut b, 8, deepfm::format::VERSION);
    put_u32(&mut b, 12, deepfm::format::BYTE_ORDER_MARK);
    put_u64(&mut b, 16, spec_end);
    put_u64(&mut b, 24, spec_offset as u64);
    put_u64(&mut b, 32, spec_json.len() as u64);
    put_u32(&mut b, 40, count as u32);
    b[spec_offset..].copy_from_slice(spec_json.as_bytes());
    let mut cursor = spec_end;
    let mut place = |i: usize, align: u64| {
        let s = &shapes[i];
        let length = s.dims[0] * s.dims[1] * 4;
        let offset = cursor.next_multiple_of(align);
        cursor = offset + length;
        let e = HEADER_LEN as usize + 64 * i;
        let (kind, index) = match s.id {
            deepfm::format::SectionId::Embedding => (1, 0),
            deepfm::format::SectionId::Linear => (2, 0),
            deepfm::format::SectionId::Bias => (3, 0),
            deepfm::format::SectionId::LayerWeight(l) => (4, l),
            deepfm::format::SectionId::LayerBias(l) => (5, l),
            deepfm::format::SectionId::OutWeight => (6, 0),
            deepfm::format::SectionId::OutBias => (7, 0),
        };
        put_u32(&mut b, e, kind);
        put_u32(&mut b, e + 4, index);
        put_u32(&mut b, e + 8, 1);
        put_u32(&mut b, e + 12, s.rank);
        put_u64(&mut b, e + 16, s.dims[0]);
        put_u64(&mut b, e + 24, s.dims[1]);
        put_u64(&mut b, e + 32, offset);
        put_u64(&mut b, e + 40, length);
    };
    for i in 2..count {
        place(i, SECTION_ALIGN);
    }
    place(1, SECTION_ALIGN);
    place(0, TABLE_ALIGN);
    fix_meta(&mut b);
    b
}

/// Recomputes the meta checksum from the header's own count and spec length.
fn fix_meta(b: &mut [u8]) {
    let count = u32::from_le_bytes(b[40..44].try_into().unwrap()) as usize;
    let spec_len = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
    let table_end = HEADER_LEN as usize + 64 * count;
    let mut h = Xxh3::new();
    h.update(&b[..48]);
    h.update(&b[HEADER_LEN as usize..table_end]);
    h.update(&b[table_end..table_end + spec_len]);
    let digest = h.digest();
    put_u64(b, 48, digest);
}

/// The valid `mixed_small()` model's bytes.
fn valid_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_random_model(dir.path().join("m.dfm"), &mixed_small(), 3).unwrap();
    std::fs::read(path).unwrap()
}

fn spec_json(fields: &str, dim: usize, hidden: &[usize]) -> String {
    let hidden: Vec<String> = hidden.iter().map(|h| h.to_string()).collect();
    format!(
        r#"{{"fields":[{fields}],"embedding_dim":{dim},"hidden":[{}],"output":"sigmoid"}}"#,
        hidden.join(",")
    )
}

// The header claims the longest spec allowed (1 MiB) in a 1 KiB file: refused before reading.
#[test]
fn spec_length_larger_than_the_file() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = valid_bytes();
    b.truncate(1024);
    put_u64(&mut b, 16, 1024);
    put_u64(&mut b, 32, 1 << 20);
    let (e, peak) = open_peak(&b);
    assert!(
        matches!(e, FormatError::SpecLength(n) if n == 1 << 20),
        "{e:?}"
    );
    assert!(peak <= BASE_BYTES, "peak {peak} bytes");
}

// The header claims a spec of 2^64 − 1 bytes.
#[test]
fn spec_length_u64_max() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = valid_bytes();
    put_u64(&mut b, 32, u64::MAX);
    let (e, peak) = open_peak(&b);
    assert!(matches!(e, FormatError::SpecLength(u64::MAX)), "{e:?}");
    assert!(peak <= BASE_BYTES, "peak {peak} bytes");
}

// The header claims a file of 2^64 − 1 bytes.
#[test]
fn file_length_u64_max() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = valid_bytes();
    put_u64(&mut b, 16, u64::MAX);
    let (e, peak) = open_peak(&b);
    assert!(
        matches!(
            e,
            FormatError::FileLength {
                expected: u64::MAX,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(peak <= BASE_BYTES, "peak {peak} bytes");
}

// The header claims 2^32 − 1 sections.
#[test]
fn section_count_u32_max() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = valid_bytes();
    put_u32(&mut b, 40, u32::MAX);
    let (e, peak) = open_peak(&b);
    assert!(matches!(e, FormatError::TooManySections(u32::MAX)), "{e:?}");
    assert!(peak <= BASE_BYTES, "peak {peak} bytes");
}

// The most sections allowed (256), with the spec offset moved to match, in a file too short
// for the table: refused before the table is read.
#[test]
fn largest_section_table_past_the_end() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = valid_bytes();
    b.truncate(4096);
    put_u64(&mut b, 16, 4096);
    put_u32(&mut b, 40, 256);
    put_u64(&mut b, 24, HEADER_LEN + 64 * 256);
    let (e, peak) = open_peak(&b);
    assert!(matches!(e, FormatError::SpecLength(_)), "{e:?}");
    assert!(peak <= BASE_BYTES, "peak {peak} bytes");
}

// A consistent header, table and spec declaring an embedding table of 2^50 bytes (2^40 rows of
// D = 256) in a file that ends after the spec.
#[test]
fn embedding_table_of_a_petabyte() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let json = spec_json(
        &format!(
            r#"{{"name":"id","kind":"categorical","vocab":{}}}"#,
            1u64 << 40
        ),
        256,
        &[16],
    );
    let b = claims_without_data(&json);
    let (e, peak) = open_peak(&b);
    assert!(
        matches!(&e, FormatError::OutOfBounds { section, end, .. }
            if section == "embedding" && *end > 1 << 50),
        "{e:?}"
    );
    assert!(peak <= bound(json.len() as u64), "peak {peak} bytes");
}

// The largest MLP a spec may declare (2^28 parameters: two layers of 16384, 1 GiB of
// weights, which opening would pack) in a file that ends after the spec.
#[test]
fn largest_mlp_without_its_weights() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Input width 2 × 1 = 2: params = 3 × 16384 + 16385 × w + (w + 1).
    let w = ((MAX_DENSE_PARAMS - 3 * MAX_LAYER_WIDTH as u64 - 1) / (MAX_LAYER_WIDTH as u64 + 2))
        .min(MAX_LAYER_WIDTH as u64) as usize;
    let json = spec_json(
        r#"{"name":"a","kind":"categorical","vocab":2},{"name":"b","kind":"numeric"}"#,
        1,
        &[MAX_LAYER_WIDTH, w],
    );
    ModelSpec::from_json(&json).expect("the spec is within the limits");
    let b = claims_without_data(&json);
    let (e, peak) = open_peak(&b);
    assert!(matches!(e, FormatError::OutOfBounds { .. }), "{e:?}");
    assert!(peak <= bound(json.len() as u64), "peak {peak} bytes");
}

// The most fields allowed (4096) with large vocabularies, in a file that ends after the spec.
#[test]
fn most_fields_without_their_rows() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fields: Vec<String> = (0..MAX_FIELDS)
        .map(|i| {
            format!(
                r#"{{"name":"f{i}","kind":"categorical","vocab":{}}}"#,
                1u64 << 30
            )
        })
        .collect();
    let json = spec_json(&fields.join(","), 1, &[]);
    let b = claims_without_data(&json);
    let (e, peak) = open_peak(&b);
    assert!(matches!(e, FormatError::OutOfBounds { .. }), "{e:?}");
    assert!(peak <= bound(json.len() as u64), "peak {peak} bytes");
}

/// A valid `mixed_small()` file whose spec is replaced by `json` (table left as it is), with
/// the header's spec length, file length and meta checksum made consistent.
fn with_spec(json: &str) -> Vec<u8> {
    let b = valid_bytes();
    let spec_offset = u64::from_le_bytes(b[24..32].try_into().unwrap()) as usize;
    let mut out = b[..spec_offset].to_vec();
    out.extend_from_slice(json.as_bytes());
    let len = out.len() as u64;
    put_u64(&mut out, 16, len);
    put_u64(&mut out, 32, json.len() as u64);
    fix_meta(&mut out);
    out
}

// A spec of almost 1 MiB that is one long `hidden` list (refused as too many layers only after
// parsing): the parser's memory stays proportional to the declared spec length.
#[test]
fn megabyte_spec_of_hidden_widths() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let widths = vec![1usize; 500_000];
    let json = spec_json(r#"{"name":"a","kind":"numeric"}"#, 1, &widths);
    assert!(json.len() as u64 <= deepfm::format::MAX_SPEC_LEN);
    let (e, peak) = open_peak(&with_spec(&json));
    assert!(
        matches!(e, FormatError::Spec(SpecError::TooManyLayers(500_000))),
        "{e:?}"
    );
    assert!(peak <= bound(json.len() as u64), "peak {peak} bytes");
}

// A spec of almost 1 MiB that is one long field list (refused as too many fields).
#[test]
fn megabyte_spec_of_fields() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fields: Vec<String> = (0..25_000)
        .map(|i| format!(r#"{{"name":"f{i}","kind":"numeric"}}"#))
        .collect();
    let json = spec_json(&fields.join(","), 1, &[]);
    assert!(json.len() as u64 <= deepfm::format::MAX_SPEC_LEN);
    let (e, peak) = open_peak(&with_spec(&json));
    assert!(
        matches!(e, FormatError::Spec(SpecError::TooManyFields(25_000))),
        "{e:?}"
    );
    assert!(peak <= bound(json.len() as u64), "peak {peak} bytes");
}

// For contrast, a valid file: opening allocates the packed MLP (proportional to the dense
// sections actually in the file) and nothing for the table. `ModelFile::open` alone packs
// nothing and stays within the header bound.
#[test]
fn valid_file_allocates_only_what_it_holds() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let spec = ModelSpec {
        mlp: Default::default(),
        table: Default::default(),
        fields: vec![Field {
            name: "id".into(),
            kind: FieldKind::Categorical { vocab: 1 << 20 },
            table: None,
        }],
        embedding_dim: 64,
        hidden: vec![32],
        output: Output::Sigmoid,
        clamp: None,
    };
    let path = write_random_model(dir.path().join("v.dfm"), &spec, 1).unwrap();
    let _ = Model::open(&path).unwrap();
    let spec_len = u64::from_le_bytes(std::fs::read(&path).unwrap()[32..40].try_into().unwrap());

    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let file = ModelFile::open(&path).unwrap();
    let peak_file = PEAK.load(Ordering::SeqCst) - before;
    drop(file);
    assert!(
        peak_file <= bound(spec_len),
        "ModelFile::open peak {peak_file} bytes"
    );

    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let model = Model::open(&path).unwrap();
    let peak_model = PEAK.load(Ordering::SeqCst) - before;
    let dense_bytes = (64 * 32 + 32 + 32 + 1) * 4;
    // The table alone is 256 MiB; packing may pad the MLP to whole panels.
    assert!(
        peak_model <= bound(spec_len) + 4 * dense_bytes + (64 << 10),
        "Model::open peak {peak_model} bytes"
    );
    assert_eq!(model.embedding().unwrap().len(), (1 << 20) * 64);
}
