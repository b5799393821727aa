//! Embedding tables stored as f16, bf16, row-wise int8 or int4 (`ModelSpec::table`, `deepfm quantize
//! --table`): converted in a stream, read back by the gather as the format defines, close to
//! the f32 model, validated like every section, and refused where they cannot be used.

use deepfm::fixtures::{mixed_small, random_batch, write_random_model};
use deepfm::format::writer::{copy_with_mlp, copy_with_precision};
use deepfm::format::{ModelFile, SectionId};
use deepfm::kernels::row_codec::decode_row;
use deepfm::reference::{max_abs_difference, max_relative_error, score_reference};
use deepfm::train::{TrainConfig, TrainError, Trainer};
use deepfm::{Isa, MlpPrecision, Model, OpenOptions, Scratch, TablePrecision, score};
use std::path::{Path, PathBuf};

const REDUCED: [TablePrecision; 4] = [
    TablePrecision::F16,
    TablePrecision::Bf16,
    TablePrecision::Int8,
    TablePrecision::Int4,
];

fn convert(from: &Path, to: PathBuf, table: TablePrecision) -> PathBuf {
    let file = ModelFile::open(from).unwrap();
    copy_with_precision(&file, &to, file.spec().mlp, table).unwrap()
}

fn scores(path: &Path, isa: Option<Isa>) -> Vec<f32> {
    let options = OpenOptions {
        isa,
        verify: true,
        ..OpenOptions::default()
    };
    let model = Model::open_with(path, &options).unwrap();
    let batch = random_batch(model.spec(), 500, 8);
    let mut out = vec![0.0f32; 500];
    score(&model, &batch, &mut Scratch::new(&model), &mut out).unwrap();
    out
}

#[test]
fn every_row_format_scores_as_its_decoded_rows_and_close_to_f32() {
    let dir = tempfile::tempdir().unwrap();
    let spec = mixed_small();
    let f32_path = write_random_model(dir.path().join("m.dfm"), &spec, 4).unwrap();
    let exact = scores(&f32_path, None);
    for table in REDUCED {
        let path = convert(
            &f32_path,
            dir.path().join(format!("{}.dfm", table.name())),
            table,
        );
        let file = ModelFile::open(&path).unwrap();
        assert_eq!(file.spec().table, table);
        // The section is the rows' size in the format, and holds what the format encodes.
        let d = spec.embedding_dim;
        let rows = spec.total_rows().unwrap() as usize;
        let bytes = file.bytes(SectionId::Embedding).unwrap();
        assert_eq!(bytes.len(), rows * table.row_bytes(d));
        assert!(file.f32s(SectionId::Embedding).is_none());
        // On every instruction set the scorer agrees with the f64 reference over the decoded
        // rows (the gather decodes the same values on all of them).
        let model = Model::open(&path).unwrap();
        let batch = random_batch(&spec, 500, 8);
        let want = score_reference(&model, &batch);
        for isa in Isa::available() {
            let got = scores(&path, Some(isa));
            let err = max_relative_error(&got, &want);
            assert!(
                err <= 1e-5,
                "{table:?} on {isa:?}: {err:e} from the reference"
            );
        }
        // And rows decode as `kernels::row_codec` defines them: row by row against the f32 file.
        let original = ModelFile::open(&f32_path).unwrap();
        let f32_rows = original.f32s(SectionId::Embedding).unwrap();
        let (mut got, mut via_model) = (vec![0.0; d], vec![0.0; d]);
        for r in [0, 1, rows / 2, rows - 1] {
            decode_row(
                table,
                &bytes[r * table.row_bytes(d)..][..table.row_bytes(d)],
                &mut got,
            );
            model.embedding_row(r, &mut via_model);
            assert_eq!(got, via_model);
            let row = &f32_rows[r * d..(r + 1) * d];
            let range = row.iter().fold(0.0f32, |m, &v| m.max(v.abs())) * 2.0;
            // Within a step of the row's range (half a step plus the f16 scale and bias).
            let steps = if table == TablePrecision::Int4 {
                15.0
            } else {
                255.0
            };
            for (&a, &b) in row.iter().zip(&got) {
                assert!(
                    (a - b).abs() <= range / steps,
                    "{table:?} row {r}: {a} as {b}"
                );
            }
        }
        // Close to the f32 model (mixed_small: sigmoid output).
        let quantized = scores(&path, None);
        let max = max_abs_difference(&exact, &quantized);
        eprintln!("{table:?} table: max |dp| {max:.2e} against f32");
        // 4-bit rows: 16 levels a row, a coarser bound (measured: see the README).
        let bound = if table == TablePrecision::Int4 {
            5e-2
        } else {
            1e-2
        };
        assert!(max < bound && max > 0.0, "{table:?}: max |dp| {max}");
    }
}

#[test]
fn conversions_stream_keep_the_metadata_and_combine_with_the_int8_mlp() {
    let dir = tempfile::tempdir().unwrap();
    let spec = mixed_small();
    let original = write_random_model(dir.path().join("m.dfm"), &spec, 5).unwrap();
    let file = ModelFile::open(&original).unwrap();
    let with_meta = dir.path().join("meta.dfm");
    deepfm::format::writer::copy_with_metadata(&file, &with_meta, r#"{"k":1}"#.into()).unwrap();
    let int8 = convert(
        &with_meta,
        dir.path().join("int8.dfm"),
        TablePrecision::Int8,
    );
    // int8 rows to f16 rows: decoded from one format, encoded in the other.
    let f16 = convert(&int8, dir.path().join("f16.dfm"), TablePrecision::F16);
    let back = convert(&f16, dir.path().join("f32.dfm"), TablePrecision::F32);
    for path in [&int8, &f16, &back] {
        let file = ModelFile::open(path).unwrap();
        assert_eq!(file.metadata().unwrap(), Some(r#"{"k":1}"#));
        file.verify().unwrap();
    }
    // f16 → f32 is exact, so the last file scores as the f16 one, bit for bit.
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    assert_eq!(bits(scores(&f16, None)), bits(scores(&back, None)));
    // An int8 MLP over an int8 table: both recorded, both used.
    let both = copy_with_mlp(
        &ModelFile::open(&int8).unwrap(),
        &dir.path().join("b.dfm"),
        MlpPrecision::Int8,
    )
    .unwrap();
    let model = Model::open(&both).unwrap();
    assert_eq!(
        (model.spec().table, model.mlp_precision()),
        (TablePrecision::Int8, MlpPrecision::Int8)
    );
    let json = model.spec().to_json();
    assert!(
        json.contains(r#""table":"int8""#) && json.contains(r#""mlp":"int8""#),
        "{json}"
    );
    assert!(
        !ModelFile::open(&original)
            .unwrap()
            .spec()
            .to_json()
            .contains("table")
    );
}

#[test]
fn the_trainer_and_export_refuse_a_reduced_precision_table() {
    let mut spec = mixed_small();
    spec.table = TablePrecision::F16;
    match Trainer::new(spec, TrainConfig::default()) {
        Err(TrainError::Mismatch(m)) => assert!(m.contains("--table f16"), "{m}"),
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
    let dir = tempfile::tempdir().unwrap();
    let original = write_random_model(dir.path().join("m.dfm"), &mixed_small(), 7).unwrap();
    let f16 = convert(&original, dir.path().join("f16.dfm"), TablePrecision::F16);
    let err = deepfm::interop::export(
        &ModelFile::open(&f16).unwrap(),
        &dir.path().join("w.safetensors"),
        &dir.path().join("s.json"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("f16 embedding table"), "{err}");
}

/// A model whose table holds `value` at its first element (the rest as `write_random_model`
/// makes them).
fn model_with_first_value(dir: &Path, value: f32) -> PathBuf {
    let spec = mixed_small();
    let random = write_random_model(dir.join("random.dfm"), &spec, 6).unwrap();
    let file = ModelFile::open(&random).unwrap();
    let mut w = deepfm::format::writer::ModelWriter::create(dir.join("big.dfm"), &spec).unwrap();
    for s in file.sections() {
        let id = s.shape.id;
        let mut data = file.f32s(id).unwrap().to_vec();
        if id == SectionId::Embedding {
            data[0] = value;
        }
        w.write(id, &data).unwrap();
    }
    w.finish().unwrap()
}

/// A value a format cannot hold (past f16's 65504, or a 4-bit row's f16 bias) is refused when
/// the table is converted, naming the section and the element, not written as infinity.
#[test]
fn values_a_format_cannot_hold_are_refused_when_converting() {
    let dir = tempfile::tempdir().unwrap();
    // −1e5: past f16's range, and a 4-bit row's minimum, which its f16 bias must hold.
    let path = model_with_first_value(dir.path(), -1.0e5);
    let file = ModelFile::open(&path).unwrap();
    for table in [TablePrecision::F16, TablePrecision::Int4] {
        let to = dir.path().join(format!("{}.dfm", table.name()));
        let err = copy_with_precision(&file, &to, file.spec().mlp, table).unwrap_err();
        assert!(
            matches!(&err, deepfm::format::FormatError::NotRepresentable { section, element, .. }
                if section == "embedding" && *element == 0),
            "{table:?}: {err:?}"
        );
        assert!(!to.exists(), "{table:?}: a refused conversion left a file");
    }
    // bf16 and int8 (f32 scale and bias) hold it.
    for table in [TablePrecision::Bf16, TablePrecision::Int8] {
        let to = dir.path().join(format!("{}.dfm", table.name()));
        copy_with_precision(&file, &to, file.spec().mlp, table).unwrap();
        ModelFile::open(&to).unwrap().verify().unwrap();
    }
}
