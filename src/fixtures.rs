//! Fixtures: the benchmark shapes, random models and batches of a given shape, labelled data
//! planted by a known teacher, and sparse models larger than memory, for the CLI's demo, tests,
//! benchmarks, examples and fuzzing.
//!
//! It sits at the top of the crate's layers: nothing below it uses it outside tests. Everything is
//! drawn from the crate's seeded generator ([`crate::rng::Rng`]), so a seed always gives the same
//! model file, batch and data.

use crate::batch::{BatchBuf, Value};
use crate::format::{FormatError, ModelWriter, SectionId};
use crate::rng::Rng;
use crate::spec::{Field, FieldKind, ModelSpec, Output, Pooling};
use std::path::{Path, PathBuf};

/// The Criteo-like benchmark shape: 13 numeric + 26 categorical fields, 1,000,000 embedding rows
/// in all, D = 16, hidden 400-400-400, sigmoid output.
pub fn criteo_like() -> ModelSpec {
    let numeric = 13usize;
    let categorical = 26usize;
    // Skewed vocabularies like Criteo's (a few huge fields, many small ones), summing with the
    // numeric rows to exactly 1,000,000.
    let mut vocabs: Vec<u64> = (0..categorical).map(|i| 1000 + 997 * i as u64).collect();
    let small: u64 = vocabs.iter().sum();
    let rest = 1_000_000 - numeric as u64 - small;
    vocabs[0] += rest / 2;
    vocabs[1] += rest - rest / 2;
    let mut fields: Vec<Field> = (1..=numeric)
        .map(|i| Field {
            name: format!("I{i}"),
            kind: FieldKind::Numeric,
            table: None,
        })
        .collect();
    fields.extend(vocabs.iter().enumerate().map(|(i, &vocab)| Field {
        name: format!("C{}", i + 1),
        kind: FieldKind::Categorical { vocab },
        table: None,
    }));
    ModelSpec {
        mlp: Default::default(),
        table: Default::default(),
        fields,
        embedding_dim: 16,
        hidden: vec![400, 400, 400],
        output: Output::Sigmoid,
        clamp: None,
    }
}

/// The MovieLens-like benchmark shape: user (6,040) and item (3,706) ids, D = 32, hidden
/// 256-128-64, linear output clamped to the 1–5 rating scale.
pub fn movielens_like() -> ModelSpec {
    ModelSpec {
        mlp: Default::default(),
        table: Default::default(),
        fields: vec![
            Field {
                name: "user".into(),
                kind: FieldKind::Categorical { vocab: 6040 },
                table: None,
            },
            Field {
                name: "item".into(),
                kind: FieldKind::Categorical { vocab: 3706 },
                table: None,
            },
        ],
        embedding_dim: 32,
        hidden: vec![256, 128, 64],
        output: Output::Linear,
        clamp: Some([1.0, 5.0]),
    }
}

/// A small model with one field of each kind, used by the demo's agreement check and by tests.
pub fn mixed_small() -> ModelSpec {
    ModelSpec {
        mlp: Default::default(),
        table: Default::default(),
        fields: vec![
            Field {
                name: "user".into(),
                kind: FieldKind::Categorical { vocab: 500 },
                table: None,
            },
            Field {
                name: "age".into(),
                kind: FieldKind::Numeric,
                table: None,
            },
            Field {
                name: "genres".into(),
                kind: FieldKind::multi_hot(18, Pooling::Mean),
                table: None,
            },
            Field {
                name: "tags".into(),
                kind: FieldKind::multi_hot(40, Pooling::Sum),
                table: None,
            },
        ],
        embedding_dim: 13,
        hidden: vec![37, 20],
        output: Output::Sigmoid,
        clamp: None,
    }
}

/// Writes a model with random weights (embeddings N(0, 0.1²), He-initialised layers, small
/// biases), streaming the table in chunks.
pub fn write_random_model(
    path: impl AsRef<Path>,
    spec: &ModelSpec,
    seed: u64,
) -> Result<PathBuf, FormatError> {
    let mut rng = Rng::new(seed);
    let mut w = ModelWriter::create(path, spec)?;
    let mut fill = |w: &mut ModelWriter, id: SectionId, scale: f32| -> Result<(), FormatError> {
        let mut left = w.section_elements(id);
        let mut chunk = Vec::with_capacity(1 << 16);
        while left > 0 {
            let n = left.min(1 << 16);
            chunk.clear();
            chunk.extend((0..n).map(|_| rng.normal() * scale));
            w.write(id, &chunk)?;
            left -= n;
        }
        Ok(())
    };
    fill(&mut w, SectionId::Embedding, 0.1)?;
    fill(&mut w, SectionId::Linear, 0.05)?;
    fill(&mut w, SectionId::Bias, 0.1)?;
    for (i, &(input, _)) in spec.layer_shapes().iter().enumerate() {
        let he = (2.0 / input as f32).sqrt();
        let (weight, bias) = SectionId::layer(i, spec.hidden.len());
        fill(&mut w, weight, he)?;
        fill(&mut w, bias, 0.01)?;
    }
    w.finish()
}

/// A batch of `rows` random samples: uniform ids, numeric values uniform in `[0, 3)`, multi-hot
/// lists of 0–5 ids.
pub fn random_batch(spec: &ModelSpec, rows: usize, seed: u64) -> BatchBuf {
    let mut batch = BatchBuf::new(spec);
    for row in random_rows(spec, rows, seed) {
        batch.push_row(&row).expect("rows are built from the spec");
    }
    batch
}

/// The rows of [`random_batch`] (the same values for the same seed), one `Vec` of values per
/// row: for building batches of single rows, or of any subset.
pub fn random_rows(spec: &ModelSpec, rows: usize, seed: u64) -> Vec<Vec<Value>> {
    let mut rng = Rng::new(seed);
    (0..rows)
        .map(|_| {
            spec.fields
                .iter()
                .map(|f| match f.kind {
                    FieldKind::Categorical { vocab } => Value::Id(rng.below(vocab)),
                    FieldKind::Numeric | FieldKind::Dense => Value::Num(rng.uniform() * 3.0),
                    FieldKind::MultiHot {
                        vocab,
                        pooling,
                        linear_pooling,
                        padding,
                        weighted,
                    } => {
                        let mut ids: Vec<u64> =
                            (0..rng.below(6)).map(|_| rng.below(vocab)).collect();
                        // A max-pooled list needs one id that is not padding (see
                        // `Pooling::Max`).
                        let is_real = |id: &u64| Some(*id) != padding;
                        let max = pooling == Pooling::Max || linear_pooling == Pooling::Max;
                        if max && !ids.iter().any(is_real) {
                            ids.push((padding.unwrap_or(0) + 1) % vocab);
                        }
                        if weighted {
                            // Weights of both signs and of a wide range, as a user's scores.
                            Value::WeightedIds(
                                ids.into_iter().map(|id| (id, rng.normal() * 2.0)).collect(),
                            )
                        } else {
                            Value::Ids(ids)
                        }
                    }
                })
                .collect()
        })
        .collect()
}

/// Labelled samples drawn from a known "teacher" model.
#[cfg(feature = "train")]
#[derive(Debug, Clone)]
pub struct Planted {
    /// The samples.
    pub batch: BatchBuf,
    /// 0/1 clicks (sigmoid teachers) or the teacher's score plus noise (linear teachers).
    pub labels: Vec<f32>,
    /// The teacher's own score of each sample (a click probability for sigmoid teachers).
    pub truth: Vec<f32>,
}

/// `rows` samples with skewed id frequencies (id = ⌊vocab · u³⌋: a few ids are very common,
/// most are rare, as in click logs), numeric values uniform in `[0, 2)`, multi-hot lists of
/// 0–4 ids, labelled by `teacher`: a click drawn with the teacher's probability for a sigmoid
/// output, the teacher's score plus N(0, `noise`²) for a linear one.
#[cfg(feature = "train")]
pub fn planted(
    teacher: &mut crate::train::Trainer,
    rows: usize,
    noise: f32,
    seed: u64,
) -> Result<Planted, crate::train::TrainError> {
    let spec = teacher.spec().clone();
    let mut rng = Rng::new(seed);
    let skewed = |vocab: u64, rng: &mut Rng| {
        let u = rng.uniform() as f64;
        ((vocab as f64 * u * u * u) as u64).min(vocab - 1)
    };
    let mut batch = BatchBuf::new(&spec);
    let mut row = Vec::with_capacity(spec.fields.len());
    for _ in 0..rows {
        row.clear();
        for f in &spec.fields {
            row.push(match f.kind {
                FieldKind::Categorical { vocab } => Value::Id(skewed(vocab, &mut rng)),
                FieldKind::Numeric | FieldKind::Dense => Value::Num(rng.uniform() * 2.0),
                FieldKind::MultiHot { vocab, .. } => {
                    let n = rng.below(5);
                    Value::Ids((0..n).map(|_| skewed(vocab, &mut rng)).collect())
                }
            });
        }
        batch.push_row(&row).expect("rows are built from the spec");
    }
    let mut truth = vec![0.0; rows];
    teacher.predict(&batch, &mut truth)?;
    let labels = truth
        .iter()
        .map(|&p| match spec.output {
            Output::Sigmoid => (rng.uniform() < p) as u8 as f32,
            Output::Linear => p + noise * rng.normal(),
        })
        .collect();
    Ok(Planted {
        batch,
        labels,
        truth,
    })
}

/// Explicit ratings from a planted model, for the tutorial demo and tests: each user and item
/// has a bias and 8 latent factors; a rating is the global mean + biases + the factors' dot
/// product + N(0, 0.5²) noise, rounded and clipped to 1–5. Users and items are drawn with
/// skewed frequencies (some are far more active or popular than others), ids start at 1.
/// Returns `(users, items, ratings)`.
pub fn planted_ratings(
    users: u32,
    items: u32,
    ratings: usize,
    seed: u64,
) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
    const K: usize = 8;
    let mut rng = Rng::new(seed);
    let factors = |n: u32, rng: &mut Rng| -> Vec<(f32, [f32; K])> {
        (0..n)
            .map(|_| {
                (
                    0.4 * rng.normal(),
                    std::array::from_fn(|_| 0.35 * rng.normal()),
                )
            })
            .collect()
    };
    let (user_f, item_f) = (factors(users, &mut rng), factors(items, &mut rng));
    let skewed = |n: u32, rng: &mut Rng| ((n as f32 * rng.uniform().powi(2)) as u32).min(n - 1);
    let (mut us, mut is, mut rs) = (
        Vec::with_capacity(ratings),
        Vec::with_capacity(ratings),
        Vec::with_capacity(ratings),
    );
    for _ in 0..ratings {
        let (u, i) = (skewed(users, &mut rng), skewed(items, &mut rng));
        let (bu, fu) = &user_f[u as usize];
        let (bi, fi) = &item_f[i as usize];
        let dot: f32 = fu.iter().zip(fi).map(|(a, b)| a * b).sum();
        let r = 3.6 + bu + bi + 2.0 * dot + 0.5 * rng.normal();
        us.push(u + 1);
        is.push(i + 1);
        rs.push(r.round().clamp(1.0, 5.0));
    }
    (us, is, rs)
}

/// The shape of [`write_sparse_model`]'s model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseShape {
    /// Rows of the big categorical field (`big`).
    pub big_vocab: u64,
    /// Rows of the small categorical field (`small`).
    pub small_vocab: u64,
    /// Rows written at each end of the big field; the rows between are a hole.
    pub edge: u64,
    /// Embedding dimension.
    pub dim: usize,
}

impl SparseShape {
    /// 2^28 rows × D 64 × 4 bytes: a 64 GiB table, larger than the memory of the machines this
    /// crate is tested on.
    pub const HUGE: SparseShape = SparseShape {
        big_vocab: 1 << 28,
        small_vocab: 10,
        edge: 4,
        dim: 64,
    };

    /// Its spec: the big and the small field, hidden 32-16, sigmoid output.
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            mlp: Default::default(),
            table: Default::default(),
            fields: vec![
                Field {
                    name: "big".into(),
                    kind: FieldKind::Categorical {
                        vocab: self.big_vocab,
                    },
                    table: None,
                },
                Field {
                    name: "small".into(),
                    kind: FieldKind::Categorical {
                        vocab: self.small_vocab,
                    },
                    table: None,
                },
            ],
            embedding_dim: self.dim,
            hidden: vec![32, 16],
            output: Output::Sigmoid,
            clamp: None,
        }
    }
}

/// Writes a model of `shape` whose table is a sparse file: only the first and last
/// `shape.edge` rows of the big field (and all of the small one) hold random data, the rest is
/// a hole that reads as zeros and takes no disk. For tests and load tests of tables larger
/// than memory.
pub fn write_sparse_model(
    path: &Path,
    shape: SparseShape,
    seed: u64,
) -> Result<PathBuf, FormatError> {
    let mut rng = Rng::new(seed);
    let mut w = ModelWriter::create(path, &shape.spec())?;
    for (id, width) in [(SectionId::Embedding, shape.dim), (SectionId::Linear, 1)] {
        let mut rows = |w: &mut ModelWriter, n: u64| {
            let data: Vec<f32> = (0..n as usize * width)
                .map(|_| rng.normal() * 0.1)
                .collect();
            w.write(id, &data)
        };
        rows(&mut w, shape.edge)?;
        w.skip(id, (shape.big_vocab - 2 * shape.edge) * width as u64)?;
        rows(&mut w, shape.edge + shape.small_vocab)?;
    }
    for id in [
        SectionId::Bias,
        SectionId::LayerWeight(0),
        SectionId::LayerBias(0),
        SectionId::LayerWeight(1),
        SectionId::LayerBias(1),
        SectionId::OutWeight,
        SectionId::OutBias,
    ] {
        let data: Vec<f32> = (0..w.section_elements(id))
            .map(|_| rng.normal() * 0.2)
            .collect();
        w.write(id, &data)?;
    }
    w.finish()
}
