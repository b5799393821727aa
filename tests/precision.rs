//! The int8 MLP (`ModelSpec::mlp`, `deepfm quantize --mlp int8`): one result on every
//! instruction set, batch size and thread split; close to the f32 model; recorded in the file
//! and overridable at open; refused where it cannot work.

use deepfm::ModelWriter;
use deepfm::fixtures::{
    mixed_small, movielens_like, random_batch, random_rows, write_random_model,
};
use deepfm::format::writer::copy_with_mlp;
use deepfm::format::{ModelFile, SectionId};
use deepfm::reference::{max_abs_difference, max_relative_error};
use deepfm::rng::Rng;
use deepfm::train::{TrainConfig, TrainError, Trainer};
use deepfm::{
    BatchBuf, Field, FieldKind, Isa, IsaKind, MlpPrecision, Model, ModelSpec, OpenOptions, Output,
    PairedScorer, Scratch, ScratchPool, SpecError, Value, score, score_parallel,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Writes a random model of `spec` and its int8 copy; returns (f32 path, int8 path).
fn model_pair(dir: &Path, spec: &ModelSpec, seed: u64) -> (PathBuf, PathBuf) {
    let f32_path = write_random_model(dir.join("m.dfm"), spec, seed).unwrap();
    let file = ModelFile::open(&f32_path).unwrap();
    let int8_path = copy_with_mlp(&file, &dir.join("q.dfm"), MlpPrecision::Int8).unwrap();
    (f32_path, int8_path)
}

fn open(path: &Path, isa: Option<Isa>, mlp: Option<MlpPrecision>) -> Model {
    let options = OpenOptions {
        isa,
        mlp,
        ..OpenOptions::default()
    };
    Model::open_with(path, &options).unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn int8_scores_are_the_same_on_every_isa_batch_size_and_thread_split() {
    for (spec, seed) in [(mixed_small(), 3), (movielens_like(), 4)] {
        let dir = tempfile::tempdir().unwrap();
        let (_, int8) = model_pair(dir.path(), &spec, seed);
        // Past one 144-row block, with a ragged last block.
        let rows = 333;
        let batch = random_batch(&spec, rows, seed);
        let (mut first, mut vector): (Option<Vec<f32>>, Option<Vec<f32>>) = (None, None);
        for isa in Isa::available() {
            let model = open(&int8, Some(isa), None);
            assert_eq!(model.mlp_precision(), MlpPrecision::Int8);
            let mut whole = vec![0.0f32; rows];
            score(&model, &batch, &mut Scratch::new(&model), &mut whole).unwrap();
            let mut parallel = vec![0.0f32; rows];
            let pool = ScratchPool::with_threads(&model, 3);
            score_parallel(&model, &batch, &pool, &mut parallel).unwrap();
            assert_eq!(bits(&whole), bits(&parallel), "{isa:?}: score_parallel");
            let model = Arc::new(model);
            let mut paired = PairedScorer::new(model.clone()).unwrap();
            let mut one_by_one = vec![0.0f32; rows];
            for (row, out) in random_rows(&spec, rows, seed).iter().zip(&mut one_by_one) {
                let mut one = BatchBuf::new(&spec);
                one.push_row(row).unwrap();
                paired.score(&one, std::slice::from_mut(out)).unwrap();
            }
            assert_eq!(
                bits(&whole),
                bits(&one_by_one),
                "{isa:?}: one row at a time"
            );
            // The hidden layers are bit-identical on every path (the kernels' proptests); the
            // FM term and output unit are the instruction set's f32 kernels, which round
            // differently on portable SIMD than on AVX2 and AVX-512 (which agree bit for bit).
            match &first {
                None => first = Some(whole.clone()),
                Some(f) => {
                    let err = max_relative_error(
                        &whole,
                        &f.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                    );
                    assert!(err <= 1e-6, "{isa:?}: {err}");
                }
            }
            if isa.kind() != IsaKind::Portable {
                match &vector {
                    None => vector = Some(whole.clone()),
                    Some(v) => assert_eq!(bits(v), bits(&whole), "{isa:?} differs from AVX2"),
                }
            }
        }
    }
}

#[test]
fn int8_stays_close_to_f32_and_the_open_option_overrides_the_file() {
    let spec = ModelSpec {
        output: Output::Sigmoid,
        clamp: None,
        ..movielens_like()
    };
    let dir = tempfile::tempdir().unwrap();
    let (f32_path, int8_path) = model_pair(dir.path(), &spec, 9);
    let rows = 2000;
    let batch = random_batch(&spec, rows, 10);
    let run = |model: &Model| {
        let mut out = vec![0.0f32; rows];
        score(model, &batch, &mut Scratch::new(model), &mut out).unwrap();
        out
    };
    let exact = run(&open(&f32_path, None, None));
    let quantized = run(&open(&int8_path, None, None));
    // The file's setting, or the same setting asked for at open: one result.
    assert_eq!(
        bits(&quantized),
        bits(&run(&open(&f32_path, None, Some(MlpPrecision::Int8))))
    );
    assert_eq!(
        bits(&exact),
        bits(&run(&open(&int8_path, None, Some(MlpPrecision::F32))))
    );
    // Probabilities: 8-bit activations and weights move a score by a little, and not
    // every score identically.
    let diffs: Vec<f32> = exact
        .iter()
        .zip(&quantized)
        .map(|(a, b)| (a - b).abs())
        .collect();
    let max = diffs.iter().copied().fold(0.0, f32::max);
    eprintln!("int8 against f32 on a random MovieLens-shaped model: max |dp| {max:e}");
    assert!(max < 0.01, "int8 moved a probability by {max}");
    assert!(
        diffs.iter().any(|&d| d > 0.0),
        "int8 scores equal f32 ones: not quantized?"
    );
}

/// Writes a model of `spec` whose section `id` holds `value(id, index, rng)` at each index.
fn write_model(
    path: &Path,
    spec: &ModelSpec,
    value: impl Fn(SectionId, usize, &mut Rng) -> f32,
) -> PathBuf {
    let mut rng = Rng::new(11);
    let mut w = ModelWriter::create(path, spec).unwrap();
    let mut ids = vec![SectionId::Embedding, SectionId::Linear, SectionId::Bias];
    for i in 0..=spec.hidden.len() {
        let (weight, bias) = SectionId::layer(i, spec.hidden.len());
        ids.extend([weight, bias]);
    }
    for id in ids {
        let n = w.section_elements(id) as usize;
        let data: Vec<f32> = (0..n).map(|i| value(id, i, &mut rng)).collect();
        w.write(id, &data).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn numeric_and_dense_inputs_far_larger_than_the_embeddings_do_not_swamp_them() {
    // Raw numbers beside small embeddings, as a trained model sees them: an age-like numeric
    // field (its embedding times 18 to 78) and four count-like dense fields (the same range),
    // with small weights, beside 20 categorical fields of vectors near 0.05, all of them
    // mattering to the score. Quantized in one row, every embedding value would be about one
    // step; the first layer keeps the numeric and dense fields in f32.
    let d = 8;
    let mut fields = vec![Field {
        name: "age".into(),
        kind: FieldKind::Numeric,
        table: None,
    }];
    fields.extend((1..=20).map(|i| Field {
        name: format!("C{i}"),
        kind: FieldKind::Categorical { vocab: 100 },
        table: None,
    }));
    fields.extend((1..=4).map(|i| Field {
        name: format!("I{i}"),
        kind: FieldKind::Dense,
        table: None,
    }));
    let spec = ModelSpec {
        mlp: MlpPrecision::F32,
        table: Default::default(),
        fields,
        embedding_dim: d,
        hidden: vec![64, 32],
        output: Output::Sigmoid,
        clamp: None,
    };
    let k = spec.mlp_input_width();
    let layer0 = SectionId::layer(0, spec.hidden.len()).0;
    let raw = |column: usize| column < d || column >= 21 * d; // age's D inputs, the dense ones
    let dir = tempfile::tempdir().unwrap();
    let path = write_model(&dir.path().join("m.dfm"), &spec, |id, i, rng| {
        let mut he = |input: usize| rng.normal() * (2.0 / input as f32).sqrt();
        match id {
            SectionId::Embedding => 0.05 * rng.normal(),
            SectionId::Linear | SectionId::Bias => 0.0,
            _ if id == layer0 && raw(i % k) => he(k) / 50.0,
            _ if id == layer0 => he(k),
            SectionId::LayerWeight(_) | SectionId::OutWeight => he(64),
            _ => 0.01 * rng.normal(),
        }
    });
    let rows = 2000;
    let mut batch = BatchBuf::new(&spec);
    for mut row in random_rows(&spec, rows, 6) {
        for v in &mut row {
            if let Value::Num(x) = v {
                *x = 18.0 + *x * 20.0; // 18 to 78
            }
        }
        batch.push_row(&row).unwrap();
    }
    let run = |mlp| {
        let model = open(&path, None, Some(mlp));
        let mut out = vec![0.0f32; rows];
        score(&model, &batch, &mut Scratch::new(&model), &mut out).unwrap();
        out
    };
    let (exact, quantized) = (run(MlpPrecision::F32), run(MlpPrecision::Int8));
    let spread = exact
        .iter()
        .fold(0.0f32, |m, &p| m.max((p - exact[0]).abs()));
    assert!(
        spread > 0.1,
        "the scores hardly vary ({spread}): the test would prove nothing"
    );
    let max = max_abs_difference(&exact, &quantized);
    eprintln!("int8 against f32 with raw numeric and dense inputs: max |dp| {max:e}");
    assert!(max < 2e-3, "int8 moved a probability by {max}");
}

#[test]
fn a_first_layer_of_only_numeric_and_dense_fields_runs_in_f32() {
    let field = |name: &str, kind| Field {
        name: name.into(),
        kind,
        table: None,
    };
    let spec = ModelSpec {
        mlp: MlpPrecision::F32,
        table: Default::default(),
        fields: vec![
            field("a", FieldKind::Numeric),
            field("b", FieldKind::Dense),
            field("c", FieldKind::Numeric),
        ],
        embedding_dim: 4,
        hidden: vec![5, 3],
        output: Output::Sigmoid,
        clamp: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = write_random_model(dir.path().join("m.dfm"), &spec, 2).unwrap();
    let batch = random_batch(&spec, 300, 3);
    let run = |mlp, isa| {
        let model = open(&path, isa, Some(mlp));
        let mut out = vec![0.0f32; 300];
        score(&model, &batch, &mut Scratch::new(&model), &mut out).unwrap();
        out
    };
    let exact = run(MlpPrecision::F32, None);
    let int8 = run(MlpPrecision::Int8, None);
    for isa in Isa::available() {
        assert_eq!(
            bits(&int8),
            bits(&run(MlpPrecision::Int8, Some(isa))),
            "{isa:?}"
        );
    }
    let max = max_abs_difference(&exact, &int8);
    assert!(max < 5e-3, "int8 moved a probability by {max}");
}

#[test]
fn the_spec_records_the_precision_and_old_specs_are_unchanged() {
    let mut spec = mixed_small();
    let plain = serde_json::to_string(&spec).unwrap();
    assert!(
        !plain.contains("mlp"),
        "an f32 spec must serialize as before: {plain}"
    );
    spec.mlp = MlpPrecision::Int8;
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains(r#""mlp":"int8""#), "{json}");
    assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), spec);
    let bad = json.replace(r#""mlp":"int8""#, r#""mlp":"int4""#);
    let e = serde_json::from_str::<ModelSpec>(&bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("int4"), "{e}");
}

#[test]
fn an_int8_layer_too_deep_for_i32_sums_is_refused() {
    // 260 fields × D 256 = 66 560 inputs to the first layer: more than the 65 536 whose
    // integer sums fit an i32.
    let fields = (0..260)
        .map(|i| Field::new(format!("f{i}"), FieldKind::Categorical { vocab: 2 }))
        .collect();
    let mut spec = ModelSpec {
        fields,
        embedding_dim: 256,
        hidden: vec![4],
        ..mixed_small()
    };
    spec.validate().unwrap();
    spec.mlp = MlpPrecision::Int8;
    assert_eq!(
        spec.validate(),
        Err(SpecError::Int8TooDeep { input: 66_560 })
    );
    // And at open: an f32 file cannot be opened as int8.
    spec.mlp = MlpPrecision::F32;
    let dir = tempfile::tempdir().unwrap();
    let path = write_random_model(dir.path().join("deep.dfm"), &spec, 1).unwrap();
    let options = OpenOptions {
        mlp: Some(MlpPrecision::Int8),
        ..OpenOptions::default()
    };
    let e = Model::open_with(&path, &options).unwrap_err().to_string();
    assert!(e.contains("66560"), "{e}");
}

#[test]
fn the_trainer_refuses_an_int8_spec() {
    let mut spec = mixed_small();
    spec.mlp = MlpPrecision::Int8;
    match Trainer::new(spec, TrainConfig::default()) {
        Err(TrainError::Mismatch(m)) => assert!(m.contains("quantize"), "{m}"),
        other => panic!("expected a mismatch, got {:?}", other.map(|_| ())),
    }
}
