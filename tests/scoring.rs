//! The optimized scorer against the f64 reference, on random models and inputs, for every
//! instruction set this CPU has; and every way a batch can be wrong.

use deepfm::fixtures::{mixed_small, random_batch, write_random_model};
use deepfm::reference::{max_relative_error, score_reference};
use deepfm::rng::Rng;
use deepfm::{
    Batch, Column, Field, FieldKind, Isa, IsaError, IsaKind, IsaSource, Model, ModelSpec,
    OpenOptions, Output, PairedScorer, Pooling, ScoreError, Scratch, ScratchPool, score,
    score_parallel,
};
use proptest::prelude::*;
use std::sync::Arc;

fn random_pooling(rng: &mut Rng) -> Pooling {
    [Pooling::Mean, Pooling::Sum, Pooling::Max][rng.below(3) as usize]
}

/// A spec with fields of every kind: categorical, numeric, dense, multi-hot with any pooling
/// of embeddings and first-order weights, maybe a padding id and maybe per-id weights, and
/// fields reading the table of an earlier one.
fn random_spec(rng: &mut Rng, fields: usize, dim: usize, layers: usize) -> ModelSpec {
    let mut fields: Vec<Field> = (0..fields)
        .map(|i| {
            let kind = match rng.below(6) {
                0 => FieldKind::Numeric,
                1 => FieldKind::Dense,
                2 => {
                    let vocab = 1 + rng.below(30);
                    let (pooling, linear_pooling) = (random_pooling(rng), random_pooling(rng));
                    FieldKind::MultiHot {
                        vocab,
                        pooling,
                        linear_pooling,
                        // A padding id leaves an id to pool (see `random_batch`).
                        padding: (vocab > 1 && rng.below(2) == 0).then(|| rng.below(vocab)),
                        // Per-id weights take no max pooling.
                        weighted: pooling != Pooling::Max
                            && linear_pooling != Pooling::Max
                            && rng.below(2) == 0,
                    }
                }
                _ => FieldKind::Categorical {
                    vocab: 1 + rng.below(200),
                },
            };
            Field::new(format!("f{i}"), kind)
        })
        .collect();
    for i in 1..fields.len() {
        let owner = (0..i).find(|&j| fields[j].table.is_none() && owns_ids(&fields[j].kind));
        if let Some(j) = owner
            && owns_ids(&fields[i].kind)
            && rng.below(3) == 0
        {
            let rows = fields[j].kind.rows();
            if let FieldKind::Categorical { vocab } | FieldKind::MultiHot { vocab, .. } =
                &mut fields[i].kind
            {
                *vocab = (*vocab).min(rows);
            }
            if let FieldKind::MultiHot { vocab, padding, .. } = &mut fields[i].kind {
                *padding = padding.filter(|&p| p < *vocab && *vocab > 1);
            }
            fields[i].table = Some(fields[j].name.clone());
        }
    }
    let sigmoid = rng.below(2) == 0;
    ModelSpec {
        mlp: Default::default(),
        table: Default::default(),
        fields,
        embedding_dim: dim,
        hidden: (0..layers).map(|_| 1 + rng.below(70) as usize).collect(),
        output: if sigmoid {
            Output::Sigmoid
        } else {
            Output::Linear
        },
        clamp: (!sigmoid && rng.below(2) == 0).then_some([-1.0, 1.0]),
    }
}

fn owns_ids(kind: &FieldKind) -> bool {
    matches!(
        kind,
        FieldKind::Categorical { .. } | FieldKind::MultiHot { .. }
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn optimized_matches_reference(
        fields in 1usize..12, dim in prop_oneof![1usize..40, Just(256usize)], layers in 0usize..4,
        rows in 1usize..300, seed: u64,
    ) {
        let mut rng = Rng::new(seed);
        let spec = random_spec(&mut rng, fields, dim, layers);
        let dir = tempfile::tempdir().unwrap();
        let path = write_random_model(dir.path().join("m.dfm"), &spec, seed).unwrap();
        let batch = random_batch(&spec, rows, seed ^ 1);
        let mut first: Option<Vec<f32>> = None;
        for isa in Isa::available() {
            let model = Model::open_with(&path, &OpenOptions { isa: Some(isa), verify: true, mlp: None }).unwrap();
            let want = score_reference(&model, &batch);
            let mut got = vec![0.0f32; rows];
            score(&model, &batch, &mut Scratch::new(&model), &mut got).unwrap();
            let err = max_relative_error(&got, &want);
            prop_assert!(err <= 1e-5, "{isa:?}: max relative error {err}");
            let mut parallel = vec![0.0f32; rows];
            score_parallel(&model, &batch, &ScratchPool::with_threads(&model, 3), &mut parallel).unwrap();
            prop_assert_eq!(&got, &parallel, "score_parallel differs from score");
            match &first {
                None => first = Some(got),
                Some(f) => prop_assert!(max_relative_error(&got, &f.iter().map(|&v| v as f64).collect::<Vec<_>>()) <= 1e-5),
            }
        }
    }
}

// Issue 16: `OpenOptions::isa` naming an instruction set this CPU lacks hit an `assert!` in
// `Model::from_file` although the option's doc promised an error. Now an `Isa` is a token that
// only exists for what the CPU has: asking for one the CPU lacks fails where it is asked for,
// naming the option, and every token opens a model on its kernels.
#[test]
fn open_with_an_isa_the_cpu_lacks_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_random_model(dir.path().join("m.dfm"), &mixed_small(), 1).unwrap();
    for kind in IsaKind::ALL {
        match Isa::new(kind, IsaSource::OpenOptions) {
            Ok(isa) => {
                assert!(kind.is_supported(), "{kind:?} token on a CPU that lacks it");
                let options = OpenOptions {
                    isa: Some(isa),
                    ..OpenOptions::default()
                };
                assert_eq!(Model::open_with(&path, &options).unwrap().isa(), isa);
            }
            Err(IsaError::Unsupported {
                isa: refused,
                requested_by: IsaSource::OpenOptions,
            }) => {
                assert!(
                    !kind.is_supported(),
                    "{kind:?} refused on a CPU that has it"
                );
                assert_eq!(refused, kind);
            }
            Err(e) => panic!("{kind:?}: {e}"),
        }
    }
}

/// A model and its scratch for the error tests: fields `user` (categorical, 500), `age`
/// (numeric), `genres` (multi-hot, 18), `tags` (multi-hot, 40).
fn small_model() -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_random_model(dir.path().join("m.dfm"), &mixed_small(), 5).unwrap();
    let model = Model::open(&path).unwrap();
    (dir, model)
}

fn score_columns(model: &Model, columns: &[Column<'_>], out_len: usize) -> Result<(), ScoreError> {
    let mut out = vec![-1.0f32; out_len];
    let result = score(
        model,
        &Batch::new(columns),
        &mut Scratch::new(model),
        &mut out,
    );
    if result.is_err() {
        assert!(out.iter().all(|&v| v == -1.0), "output written on error");
    }
    result
}

#[test]
fn bad_batches_get_typed_errors_naming_field_and_row() {
    let (_dir, model) = small_model();
    let users = [1u64, 2, 3];
    let ages = [0.5f32, 1.0, 2.0];
    let ids = [1u64, 2, 3];
    let offsets = [0usize, 1, 2, 3];
    let good = |i: usize| -> Column<'_> {
        match i {
            0 => Column::Categorical(&users),
            1 => Column::Numeric(&ages),
            _ => Column::MultiHot {
                ids: &ids,
                offsets: &offsets,
                weights: None,
            },
        }
    };
    let all: Vec<Column<'_>> = (0..4).map(good).collect();
    score_columns(&model, &all, 3).unwrap();

    let with = |i: usize, c: Column<'static>| -> Vec<Column<'static>> {
        let mut v: Vec<Column<'static>> = vec![
            Column::Categorical(&[1, 2, 3]),
            Column::Numeric(&[0.5, 1.0, 2.0]),
            Column::MultiHot {
                ids: &[1, 2, 3],
                offsets: &[0, 1, 2, 3],
                weights: None,
            },
            Column::MultiHot {
                ids: &[1, 2, 3],
                offsets: &[0, 1, 2, 3],
                weights: None,
            },
        ];
        v[i] = c;
        v
    };
    let err = |cols: Vec<Column<'static>>| score_columns(&model, &cols, 3).unwrap_err();

    assert_eq!(
        err(with(0, Column::Categorical(&[1, 500, 3]))),
        ScoreError::IdOutOfRange {
            field: "user".into(),
            row: 1,
            id: 500,
            vocab: 500
        }
    );
    assert_eq!(
        err(with(1, Column::Numeric(&[0.5, 1.0, f32::NAN]))).to_string(),
        "field age, row 2: value NaN is not finite"
    );
    assert!(matches!(
        err(with(1, Column::Numeric(&[0.5, f32::INFINITY, 1.0]))),
        ScoreError::NonFinite { ref field, row: 1, .. } if field == "age"
    ));
    assert_eq!(
        err(with(
            2,
            Column::MultiHot {
                ids: &[1, 2, 18],
                offsets: &[0, 1, 1, 3],
                weights: None
            }
        )),
        ScoreError::IdOutOfRange {
            field: "genres".into(),
            row: 2,
            id: 18,
            vocab: 18
        }
    );
    for offsets in [
        &[1usize, 1, 2, 3][..],
        &[0, 2, 1, 3],
        &[0, 1, 2, 2],
        &[0, 1, 2, 4],
    ] {
        assert!(
            matches!(
                err(with(3, Column::MultiHot { ids: &[1, 2, 3], offsets, weights: None })),
                ScoreError::BadOffsets { ref field, .. } if field == "tags"
            ),
            "{offsets:?}"
        );
    }
    assert_eq!(
        err(with(1, Column::Categorical(&[1, 2, 3]))),
        ScoreError::ColumnKind {
            field: "age".into(),
            expected: "numeric",
            found: "categorical"
        }
    );
    assert_eq!(
        err(with(1, Column::Numeric(&[1.0, 2.0]))),
        ScoreError::RowCount {
            field: "age".into(),
            expected: 3,
            found: 2
        }
    );
    let mut three = with(0, Column::Categorical(&[1, 2, 3]));
    three.pop();
    assert_eq!(
        err(three),
        ScoreError::ColumnCount {
            expected: 4,
            found: 3
        }
    );
    assert_eq!(
        score_columns(&model, &all, 2).unwrap_err(),
        ScoreError::OutputTooShort {
            needed: 3,
            found: 2
        }
    );
    let empty = with(0, Column::Categorical(&[]));
    assert_eq!(
        score_columns(&model, &empty, 3).unwrap_err(),
        ScoreError::EmptyBatch
    );

    let dir = tempfile::tempdir().unwrap();
    let mut other = mixed_small();
    other.embedding_dim += 1;
    let other =
        Model::open(write_random_model(dir.path().join("o.dfm"), &other, 1).unwrap()).unwrap();
    let mut out = vec![0.0; 3];
    assert_eq!(
        score(
            &model,
            &Batch::new(&all),
            &mut Scratch::new(&other),
            &mut out
        )
        .unwrap_err(),
        ScoreError::ScratchMismatch
    );
}

#[test]
fn batch_larger_than_a_block_scores_like_single_rows() {
    let (_dir, model) = small_model();
    let batch = random_batch(model.spec(), 1000, 8);
    let mut scratch = Scratch::new(&model);
    let mut all = vec![0.0f32; 1000];
    score(&model, &batch, &mut scratch, &mut all).unwrap();
    for r in [0usize, 143, 144, 145, 288, 999] {
        let one = random_batch(model.spec(), r + 1, 8);
        let mut out = vec![0.0f32; r + 1];
        score(&model, &one, &mut scratch, &mut out).unwrap();
        assert_eq!(out[r], all[r], "row {r}");
    }
}

// ---------------------------------------------------------------------------------------------
// The scoring boundary: one test per case, each expecting its typed error (naming field and
// row), the same from `score`, `score_parallel` and `PairedScorer`, nothing written on error.
// ---------------------------------------------------------------------------------------------

/// The error of `columns` from all three entry points, which must agree (compared by `Debug`
/// text: a NaN value makes the errors unequal under `==`) and leave the output untouched.
fn error_everywhere(model: &Model, columns: &[Column<'_>], out_len: usize) -> ScoreError {
    let batch = Batch::new(columns);
    let e = score_columns(model, columns, out_len).expect_err("a bad batch scored");
    let mut out = vec![-1.0f32; out_len];
    let pool = ScratchPool::with_threads(model, 2);
    let same = |other: ScoreError| assert_eq!(format!("{other:?}"), format!("{e:?}"));
    same(score_parallel(model, &batch, &pool, &mut out).expect_err("score_parallel"));
    assert!(
        out.iter().all(|&v| v == -1.0),
        "score_parallel wrote on error"
    );
    let shared =
        Arc::new(Model::open(model.file().path()).expect("reopen the model for a PairedScorer"));
    let mut paired = PairedScorer::new(shared).unwrap();
    same(paired.score(&batch, &mut out).expect_err("PairedScorer"));
    assert!(
        out.iter().all(|&v| v == -1.0),
        "PairedScorer wrote on error"
    );
    e
}

/// A valid `mixed_small` batch of 3 rows, with column `i` replaced by `c`.
fn three_rows_with(i: usize, c: Column<'static>) -> Vec<Column<'static>> {
    let mut v: Vec<Column<'static>> = vec![
        Column::Categorical(&[1, 2, 3]),
        Column::Numeric(&[0.5, 1.0, 2.0]),
        Column::MultiHot {
            ids: &[1, 2, 3],
            offsets: &[0, 1, 2, 3],
            weights: None,
        },
        Column::MultiHot {
            ids: &[1, 2, 3],
            offsets: &[0, 1, 2, 3],
            weights: None,
        },
    ];
    v[i] = c;
    v
}

#[test]
fn empty_batch_no_columns() {
    let (_dir, model) = small_model();
    assert_eq!(
        error_everywhere(&model, &[], 1),
        ScoreError::ColumnCount {
            expected: 4,
            found: 0
        }
    );
}

#[test]
fn empty_batch_every_column_without_rows() {
    let (_dir, model) = small_model();
    let empty = Column::MultiHot {
        ids: &[],
        offsets: &[0],
        weights: None,
    };
    let columns = [Column::Categorical(&[]), Column::Numeric(&[]), empty, empty];
    assert_eq!(
        error_everywhere(&model, &columns, 0),
        ScoreError::EmptyBatch
    );
}

#[test]
fn too_many_columns() {
    let (_dir, model) = small_model();
    let mut columns = three_rows_with(0, Column::Categorical(&[1, 2, 3]));
    columns.push(Column::Numeric(&[1.0, 2.0, 3.0]));
    assert_eq!(
        error_everywhere(&model, &columns, 3),
        ScoreError::ColumnCount {
            expected: 4,
            found: 5
        }
    );
}

#[test]
fn multi_hot_offsets_empty() {
    let (_dir, model) = small_model();
    let columns = three_rows_with(
        2,
        Column::MultiHot {
            ids: &[],
            offsets: &[],
            weights: None,
        },
    );
    assert_eq!(
        error_everywhere(&model, &columns, 3),
        ScoreError::RowCount {
            field: "genres".into(),
            expected: 3,
            found: 0
        }
    );
}

#[test]
fn id_u64_max_in_a_multi_hot_list() {
    let (_dir, model) = small_model();
    let columns = three_rows_with(
        3,
        Column::MultiHot {
            ids: &[1, 2, u64::MAX],
            offsets: &[0, 0, 2, 3],
            weights: None,
        },
    );
    assert_eq!(
        error_everywhere(&model, &columns, 3),
        ScoreError::IdOutOfRange {
            field: "tags".into(),
            row: 2,
            id: u64::MAX,
            vocab: 40
        }
    );
}

#[test]
fn negative_infinity() {
    let (_dir, model) = small_model();
    let columns = three_rows_with(1, Column::Numeric(&[0.5, 1.0, f32::NEG_INFINITY]));
    assert!(matches!(
        error_everywhere(&model, &columns, 3),
        ScoreError::NonFinite { ref field, row: 2, value } if field == "age" && value == f32::NEG_INFINITY
    ));
}

#[test]
fn offsets_past_the_id_list() {
    let (_dir, model) = small_model();
    let columns = three_rows_with(
        2,
        Column::MultiHot {
            ids: &[1, 2],
            offsets: &[0, 1, 2, usize::MAX],
            weights: None,
        },
    );
    assert!(matches!(
        error_everywhere(&model, &columns, 3),
        ScoreError::BadOffsets { ref field, .. } if field == "genres"
    ));
}

// Errors in rows far beyond the first block (the scratch holds 144 rows) name the right row,
// and nothing is written even though earlier blocks are valid.
#[test]
fn bad_rows_beyond_the_scratch_are_named() {
    let (_dir, model) = small_model();
    let rows = 1000;
    let batch = random_batch(model.spec(), rows, 21);
    let owned: Vec<Column<'_>> = (0..4).map(|i| deepfm::Columns::column(&batch, i)).collect();
    let mut users: Vec<u64> = match owned[0] {
        Column::Categorical(ids) => ids.to_vec(),
        _ => unreachable!(),
    };
    users[777] = 500;
    let mut ages: Vec<f32> = match owned[1] {
        Column::Numeric(v) => v.to_vec(),
        _ => unreachable!(),
    };
    ages[999] = f32::NAN;
    let mut columns = owned.clone();
    columns[0] = Column::Categorical(&users);
    assert_eq!(
        error_everywhere(&model, &columns, rows),
        ScoreError::IdOutOfRange {
            field: "user".into(),
            row: 777,
            id: 500,
            vocab: 500
        }
    );
    let mut columns = owned.clone();
    columns[1] = Column::Numeric(&ages);
    assert!(matches!(
        error_everywhere(&model, &columns, rows),
        ScoreError::NonFinite { ref field, row: 999, .. } if field == "age"
    ));
}

// A batch hundreds of times larger than the scratch (100,000 rows, 695 blocks of 144) scores
// through it block by block: every row equals its score in a batch of its own block, and
// `score_parallel` gives the same bits.
#[test]
fn batch_far_larger_than_the_scratch() {
    let (_dir, model) = small_model();
    let rows = 100_000;
    let batch = random_batch(model.spec(), rows, 33);
    let mut scratch = Scratch::new(&model);
    let mut all = vec![0.0f32; rows];
    score(&model, &batch, &mut scratch, &mut all).unwrap();
    let pool = ScratchPool::with_threads(&model, 2);
    let mut par = vec![0.0f32; rows];
    score_parallel(&model, &batch, &pool, &mut par).unwrap();
    assert!(
        all.iter()
            .zip(&par)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    let want = score_reference(&model, &batch);
    assert!(max_relative_error(&all, &want) <= 1e-5);
}

// One multi-hot row listing far more ids than the scratch has room for rows (100,000 ids,
// pooled into one embedding): scored exactly like the reference.
#[test]
fn one_row_with_a_huge_id_list() {
    let (_dir, model) = small_model();
    let mut rng = Rng::new(5);
    let genres: Vec<u64> = (0..100_000).map(|_| rng.below(18)).collect();
    let tags: Vec<u64> = (0..100_000).map(|_| rng.below(40)).collect();
    let columns = [
        Column::Categorical(&[7]),
        Column::Numeric(&[0.25]),
        Column::MultiHot {
            ids: &genres,
            offsets: &[0, 100_000],
            weights: None,
        },
        Column::MultiHot {
            ids: &tags,
            offsets: &[0, 100_000],
            weights: None,
        },
    ];
    let batch = Batch::new(&columns);
    let mut out = [0.0f32];
    score(&model, &batch, &mut Scratch::new(&model), &mut out).unwrap();
    let want = score_reference(&model, &batch);
    // `tags` sums 100,000 rows: compare relative to the logit's scale, loosely.
    assert!(
        max_relative_error(&out, &want) <= 1e-4,
        "{out:?} vs {want:?}"
    );
}

// An output longer than the batch: only the batch's rows are written.
#[test]
fn output_longer_than_the_batch() {
    let (_dir, model) = small_model();
    let batch = random_batch(model.spec(), 5, 2);
    let mut out = vec![-1.0f32; 300];
    score(&model, &batch, &mut Scratch::new(&model), &mut out).unwrap();
    assert!(out[..5].iter().all(|p| (0.0..=1.0).contains(p)));
    assert!(out[5..].iter().all(|&v| v == -1.0));
}

/// Per-id weights must match the field: present, one per id and finite for a weighted field,
/// absent for the others (where they would be silently ignored); and they weigh the rows.
#[test]
fn weights_must_fit_the_field_and_weigh_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = mixed_small();
    spec.fields[3].kind = FieldKind::MultiHot {
        vocab: 40,
        pooling: Pooling::Mean,
        linear_pooling: Pooling::Mean,
        padding: None,
        weighted: true,
    };
    let model =
        Model::open(write_random_model(dir.path().join("w.dfm"), &spec, 5).unwrap()).unwrap();
    let (users, ages, genres, offsets_one) = ([1u64, 2], [0.5f32, 1.0], [1u64, 2], [0usize, 1]);
    let columns = |genre_weights: Option<&'static [f32]>, tags: Column<'static>| {
        vec![
            Column::Categorical(&[1, 2]),
            Column::Numeric(&[0.5, 1.0]),
            Column::MultiHot {
                ids: &[1, 2],
                offsets: &[0, 1, 2],
                weights: genre_weights,
            },
            tags,
        ]
    };
    let tags = |weights: Option<&'static [f32]>| Column::MultiHot {
        ids: &[3, 4, 5],
        offsets: &[0, 2, 3],
        weights,
    };
    score_columns(&model, &columns(None, tags(Some(&[0.5, -2.0, 1.0]))), 2).unwrap();
    let problem = |cols: Vec<Column<'static>>| match score_columns(&model, &cols, 2) {
        Err(ScoreError::BadWeights { field, problem }) => format!("{field}: {problem}"),
        other => panic!("{other:?}"),
    };
    assert!(problem(columns(None, tags(None))).starts_with("tags: the field is weighted"));
    assert!(
        problem(columns(Some(&[1.0, 1.0]), tags(Some(&[1.0; 3]))))
            .starts_with("genres: the field is not weighted")
    );
    assert_eq!(
        problem(columns(None, tags(Some(&[1.0; 2])))),
        "tags: 2 weights for 3 ids"
    );
    assert_eq!(
        score_columns(&model, &columns(None, tags(Some(&[1.0, 1.0, f32::NAN]))), 2)
            .unwrap_err()
            .to_string(),
        "field tags, row 1: value NaN is not finite"
    );

    // Weights scale the rows they pool; a repeated id with weights summing to 1 is the id.
    let score_tags = |ids: &[u64], weights: &[f32]| {
        let offsets = [0, ids.len()];
        let cols = [
            Column::Categorical(&users[..1]),
            Column::Numeric(&ages[..1]),
            Column::MultiHot {
                ids: &genres[..1],
                offsets: &offsets_one,
                weights: None,
            },
            Column::MultiHot {
                ids,
                offsets: &offsets,
                weights: Some(weights),
            },
        ];
        let mut out = [0.0f32];
        score(
            &model,
            &Batch::new(&cols),
            &mut Scratch::new(&model),
            &mut out,
        )
        .unwrap();
        out[0]
    };
    assert_eq!(score_tags(&[7], &[1.0]), score_tags(&[7, 7], &[1.0, 1.0]));
    assert_ne!(score_tags(&[7], &[1.0]), score_tags(&[7], &[0.5]));
    assert_eq!(
        score_tags(&[7, 9], &[0.0, 1.0]),
        score_tags(&[9, 9], &[0.5, 0.5])
    );
}
