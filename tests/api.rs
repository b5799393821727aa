//! The recommender API: the tutorial's calls on planted ratings, save/load, unknown ids,
//! recommendations, and the checks `load` makes.

use deepfm::api::{ApiError, DeepFM, Task};
use deepfm::rng::Rng;

/// Ratings 1–5 from planted user and item factors: user `u` likes items whose factor is close
/// to its own. String user ids, integer item ids.
fn planted(n: usize, seed: u64) -> (Vec<String>, Vec<u32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let user_f: Vec<f32> = (0..60).map(|_| rng.uniform()).collect();
    let item_f: Vec<f32> = (0..80).map(|_| rng.uniform()).collect();
    let mut users = Vec::with_capacity(n);
    let mut items = Vec::with_capacity(n);
    let mut ratings = Vec::with_capacity(n);
    for _ in 0..n {
        let u = rng.below(60) as usize;
        let i = rng.below(80) as usize;
        let r = 5.0 - 4.0 * (user_f[u] - item_f[i]).abs() + 0.3 * rng.normal();
        users.push(format!("user-{u}"));
        items.push(i as u32);
        ratings.push(r.round().clamp(1.0, 5.0));
    }
    (users, items, ratings)
}

fn fit(users: &[String], items: &[u32], ratings: &[f32]) -> DeepFM<String, u32> {
    DeepFM::builder()
        .name("test")
        .embedding_dim(8)
        .deep_layers(&[32, 16])
        .epochs(15)
        .batch_size(128)
        .learning_rate(3e-3)
        .threads(2)
        .seed(7)
        .fit(users, items, ratings)
        .unwrap()
}

#[test]
fn tutorial_flow() {
    let (users, items, ratings) = planted(12_000, 1);
    let (train, test) = (10_000, 2_000);
    let model = fit(&users[..train], &items[..train], &ratings[..train]);
    assert_eq!(model.task(), Task::Rating);

    // RMSE well below predicting the mean.
    let (rmse, mae) = model
        .evaluate(&users[train..], &items[train..], &ratings[train..])
        .unwrap();
    let mean = ratings[..train].iter().sum::<f32>() / train as f32;
    let base = (ratings[train..]
        .iter()
        .map(|r| ((r - mean) as f64).powi(2))
        .sum::<f64>()
        / test as f64)
        .sqrt();
    assert!(
        rmse < 0.8 * base,
        "RMSE {rmse} vs mean-only {base} (MAE {mae})"
    );

    // predict, batch_predict and the rating scale.
    let pairs: Vec<(String, u32)> = users[train..]
        .iter()
        .cloned()
        .zip(items[train..].iter().copied())
        .collect();
    let batch = model.batch_predict(&pairs).unwrap();
    for (k, (u, i)) in pairs.iter().enumerate().take(200) {
        assert_eq!(model.predict(u, i), batch[k]);
        assert!((1.0..=5.0).contains(&batch[k]));
    }

    // Unknown ids: a finite prediction, or an error from try_predict.
    let stranger = "nobody".to_string();
    assert!(model.predict(&stranger, &3).is_finite());
    assert!(model.predict(&users[0], &9999).is_finite());
    assert!(matches!(
        model.try_predict(&stranger, &3),
        Err(ApiError::UnknownUser)
    ));
    assert!(matches!(
        model.try_predict(&users[0], &9999),
        Err(ApiError::UnknownItem)
    ));

    // recommend: sorted, no seen item, the same list with scores, deterministic.
    let user = &users[0];
    let recs = model.recommend_with_scores(user, 10).unwrap();
    assert_eq!(recs.len(), 10);
    assert!(recs.windows(2).all(|w| w[0].1 >= w[1].1));
    let seen: std::collections::HashSet<u32> = users[..train]
        .iter()
        .zip(&items[..train])
        .filter(|(u, _)| *u == user)
        .map(|(_, &i)| i)
        .collect();
    assert!(recs.iter().all(|(i, _)| !seen.contains(i)));
    for (i, s) in &recs {
        assert_eq!(model.predict(user, i), *s);
    }
    assert_eq!(
        model.recommend(user, 10).unwrap(),
        recs.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    let with_seen = model.recommend_with(user, 80, false, &[]).unwrap();
    assert_eq!(with_seen.len(), 80);
    let excluded = model.recommend_with(user, 5, true, &[recs[0].0]).unwrap();
    assert!(excluded.iter().all(|(i, _)| *i != recs[0].0));
    let many = model.recommend_many(&users[..3], 4).unwrap();
    assert_eq!(many[0], model.recommend(&users[0], 4).unwrap());

    // save / load: the loaded model predicts exactly what the saved one did.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deepfm_model.dfm");
    model.save(&path).unwrap();
    let loaded = DeepFM::<String, u32>::load(&path).unwrap();
    assert_eq!(loaded.batch_predict(&pairs).unwrap(), batch);
    assert_eq!(
        loaded.recommend(user, 10).unwrap(),
        model.recommend(user, 10).unwrap()
    );
    assert_eq!(loaded.task(), Task::Rating);
    assert_eq!(loaded.history().len(), model.history().len());
}

#[test]
fn auto_task_follows_the_labels() {
    let users: Vec<u64> = (0..200).map(|k| k % 10).collect();
    let items: Vec<u64> = (0..200).map(|k| k % 13).collect();
    let quick = || {
        DeepFM::builder()
            .embedding_dim(4)
            .deep_layers(&[8])
            .epochs(1)
            .threads(1)
    };
    let clicks: Vec<f32> = (0..200).map(|k| (k % 3 == 0) as u8 as f32).collect();
    let m = quick().fit(&users, &items, &clicks).unwrap();
    assert_eq!(m.task(), Task::Click);
    assert!((0.0..=1.0).contains(&m.predict(&1, &2)));
    let m = quick().fit(&users, &items, &vec![1.0; 200]).unwrap();
    assert_eq!(m.task(), Task::Implicit);
    let m = quick()
        .fit(
            &users,
            &items,
            &(0..200).map(|k| (k % 5) as f32).collect::<Vec<_>>(),
        )
        .unwrap();
    assert_eq!(m.task(), Task::Rating);
    // Bad input is an error, not a panic.
    assert!(matches!(
        quick().fit(&users, &items[..10], &clicks),
        Err(ApiError::Lengths { .. })
    ));
    assert!(matches!(
        quick().fit(&users[..1], &items[..1], &[f32::NAN]),
        Err(ApiError::Invalid(_))
    ));
    assert!(quick().dropout(1.5).fit(&users, &items, &clicks).is_err());
}

/// `save` writes one file (the id maps in its metadata section); `load` refuses a model file
/// without them, metadata whose id maps do not fit the model, damaged metadata, and other id
/// types.
#[test]
fn load_checks_the_metadata_section() {
    use deepfm::format::{FormatError, ModelFile, writer::copy_with_metadata};
    let quick = |n, seed| {
        let (users, items, ratings) = planted(n, 3);
        DeepFM::builder()
            .embedding_dim(4)
            .deep_layers(&[8])
            .epochs(1)
            .threads(1)
            .seed(seed)
            .fit(&users, &items, &ratings)
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a.dfm"),
        dir.path().join("b.dfm"),
        dir.path().join("c.dfm"),
    );
    let model_a = quick(2_000, 1);
    model_a.save(&a).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["a.dfm"], "save writes exactly one file");
    let loaded = DeepFM::<String, u32>::load(&a).unwrap();
    assert_eq!(loaded.users().len(), model_a.users().len());

    // A model file without metadata (as `deepfm train --data` writes).
    let plain = ModelFile::open(&a).unwrap();
    let spec = plain.spec().clone();
    let mut w = deepfm::ModelWriter::create(&c, &spec).unwrap();
    for s in plain.sections() {
        w.write(s.shape.id, plain.f32s(s.shape.id).unwrap())
            .unwrap();
    }
    w.finish().unwrap();
    let err = DeepFM::<String, u32>::load(&c).unwrap_err();
    assert!(matches!(err, ApiError::Meta { .. }), "{err}");

    // Metadata of a model with other id maps (fewer users and items seen).
    let small = quick(100, 2);
    small.save(&b).unwrap();
    let other_meta = ModelFile::open(&b)
        .unwrap()
        .metadata()
        .unwrap()
        .unwrap()
        .to_string();
    copy_with_metadata(&plain, &c, other_meta).unwrap();
    let err = DeepFM::<String, u32>::load(&c).unwrap_err();
    assert!(matches!(err, ApiError::Meta { .. }), "{err}");

    // Damaged metadata.
    let mut bytes = std::fs::read(&a).unwrap();
    let info = plain.metadata_info().unwrap();
    bytes[info.offset as usize + 10] ^= 0x04;
    std::fs::write(&c, &bytes).unwrap();
    let err = DeepFM::<String, u32>::load(&c).unwrap_err();
    assert!(
        matches!(err, ApiError::Format(FormatError::SectionChecksum { .. })),
        "{err}"
    );
    // Wrong id types are refused too (the users were strings).
    assert!(DeepFM::<u64, u32>::load(&a).is_err());
}

/// Implicit feedback: positives only, negatives sampled every epoch; leave-one-out HR@10 and
/// NDCG@10 against 100 sampled negatives beat a random ranking by far.
#[test]
fn implicit_feedback_leave_one_out() {
    // Users interact with items of their own group (5 groups of 20 items).
    let mut rng = Rng::new(11);
    let (mut users, mut items, mut times) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..200u32 {
        let group = u % 5;
        for t in 0..12 {
            users.push(u);
            items.push(group * 20 + rng.below(20) as u32);
            times.push(t as u64);
        }
    }
    let (train, test) = deepfm::data::split::leave_one_out_by_time(&users, &times);
    let pick = |idx: &[usize], v: &[u32]| idx.iter().map(|&k| v[k]).collect::<Vec<u32>>();
    let model = DeepFM::builder()
        .embedding_dim(8)
        .deep_layers(&[16])
        .dropout(0.0)
        .epochs(20)
        .batch_size(128)
        .learning_rate(5e-3)
        .threads(1)
        .fit(
            &pick(&train, &users),
            &pick(&train, &items),
            &vec![1.0; train.len()],
        )
        .unwrap();
    assert_eq!(model.task(), Task::Implicit);
    let held: Vec<(u32, u32)> = pick(&test, &users)
        .into_iter()
        .zip(pick(&test, &items))
        .collect();
    let (hr, ndcg) = model.hit_ratio_ndcg(&held, 50, 10, 3).unwrap();
    // Random ranking among 51 candidates: HR@10 = 10/51 ≈ 0.2.
    assert!(hr > 0.5 && ndcg > 0.25, "HR@10 {hr}, NDCG@10 {ndcg}");
    assert!(model.hit_ratio_ndcg(&[], 50, 10, 3).is_err());
}

/// The builder's decoupled weight decay reaches the trainer: it changes the model, is kept
/// with it through save/load (and left out of the metadata when off), and an out-of-range
/// decay is an error.
#[test]
fn weight_decay_changes_the_model_and_is_kept() {
    let (users, items, ratings) = planted(2_000, 5);
    let quick = || {
        DeepFM::builder()
            .embedding_dim(4)
            .deep_layers(&[8])
            .epochs(2)
            .threads(1)
            .seed(3)
    };
    let plain = quick().fit(&users, &items, &ratings).unwrap();
    let decayed = quick()
        .weight_decay_embedding(20.0)
        .weight_decay_dense(50.0)
        .fit(&users, &items, &ratings)
        .unwrap();
    assert_eq!(decayed.settings().weight_decay_embedding, 20.0);
    assert_eq!(decayed.settings().weight_decay_dense, 50.0);
    let pairs: Vec<(String, u32)> = users
        .iter()
        .cloned()
        .zip(items.iter().copied())
        .take(200)
        .collect();
    let p = plain.batch_predict(&pairs).unwrap();
    let q = decayed.batch_predict(&pairs).unwrap();
    assert!(
        p.iter().zip(&q).any(|(a, b)| (a - b).abs() > 1e-4),
        "weight decay made no difference"
    );
    // The same settings without decay give the same model again: the difference is the decay.
    let again = quick().fit(&users, &items, &ratings).unwrap();
    assert_eq!(again.batch_predict(&pairs).unwrap(), p);
    // The dense L2 penalty reaches the trainer too.
    let penalised = quick().l2_dense(5.0).fit(&users, &items, &ratings).unwrap();
    assert_eq!(penalised.settings().l2_dense, 5.0);
    let r = penalised.batch_predict(&pairs).unwrap();
    assert!(
        p.iter().zip(&r).any(|(a, b)| (a - b).abs() > 1e-4),
        "l2_dense made no difference"
    );

    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.dfm"), dir.path().join("b.dfm"));
    decayed.save(&a).unwrap();
    let loaded = DeepFM::<String, u32>::load(&a).unwrap();
    assert_eq!(loaded.settings(), decayed.settings());
    assert_eq!(loaded.batch_predict(&pairs).unwrap(), q);
    plain.save(&b).unwrap();
    let meta = deepfm::format::ModelFile::open(&b)
        .unwrap()
        .metadata()
        .unwrap()
        .unwrap()
        .to_string();
    assert!(!meta.contains("weight_decay"), "unset decay is not saved");
    assert!(!meta.contains("l2_dense"), "an unset dense L2 is not saved");

    // lr · λ must stay below 1 (the default lr is 1e-3).
    for bad in [
        quick().weight_decay_embedding(-1.0),
        quick().weight_decay_dense(f32::NAN),
        quick().weight_decay_dense(1e3),
        quick().learning_rate(0.1).weight_decay_embedding(10.0),
    ] {
        let err = bad.fit(&users, &items, &ratings).unwrap_err();
        assert!(err.to_string().contains("weight_decay"), "{err}");
    }
}

/// One item whose embedding row holds a NaN (a damaged table: only `verify` reads it) never
/// empties or reorders recommendations silently: `recommend` names the item, `predict` returns
/// NaN for that item only (as documented), `try_predict` and `batch_predict` name the pair, and
/// every other item still scores.
#[test]
fn a_damaged_item_row_is_an_error_naming_the_item() {
    use deepfm::format::{ModelFile, SectionId};
    let (users, items, ratings) = planted(3_000, 21);
    let model = fit(&users, &items, &ratings);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.dfm");
    model.save(&path).unwrap();
    let bad_item = items[0];
    let row = model.items().get(&bad_item).unwrap();
    // The item field's rows follow the user field's in the stacked table.
    let stacked_row = model.users().rows() + row;
    let file = ModelFile::open(&path).unwrap();
    let table = file
        .sections()
        .iter()
        .find(|s| s.shape.id == SectionId::Embedding)
        .unwrap()
        .offset;
    drop(file);
    let dim = model.settings().embedding_dim as u64;
    let mut bytes = std::fs::read(&path).unwrap();
    let at = (table + 4 * stacked_row * dim) as usize;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let damaged = DeepFM::<String, u32>::load(&path).unwrap();
    assert!(
        ModelFile::open(&path).unwrap().verify().is_err(),
        "verify finds it"
    );

    // A user who did not rate the item in training: it is among their candidates.
    let user = users
        .iter()
        .find(|u| !(0..users.len()).any(|k| &users[k] == *u && items[k] == bad_item))
        .unwrap();
    let named = |e: ApiError| {
        let message = e.to_string();
        assert!(matches!(e, ApiError::NonFiniteScore { .. }), "{message}");
        assert!(message.contains(&format!("item {bad_item}:")), "{message}");
        assert!(message.contains(&format!("user \"{user}\"")), "{message}");
    };
    named(damaged.recommend(user, 5).unwrap_err());
    named(damaged.recommend_with_scores(user, 5).unwrap_err());
    named(damaged.recommend_with(user, 5, false, &[]).unwrap_err());
    named(damaged.try_predict(user, &bad_item).unwrap_err());
    let good_item = *items.iter().find(|&&i| i != bad_item).unwrap();
    named(
        damaged
            .batch_predict(&[(user.clone(), good_item), (user.clone(), bad_item)])
            .unwrap_err(),
    );
    assert!(damaged.predict(user, &bad_item).is_nan());
    // Other pairs score as before; excluding the damaged item gives the list back.
    assert_eq!(
        damaged.predict(user, &good_item),
        model.predict(user, &good_item)
    );
    let want = model.recommend_with(user, 5, true, &[bad_item]).unwrap();
    assert_eq!(
        damaged.recommend_with(user, 5, true, &[bad_item]).unwrap(),
        want
    );
}
