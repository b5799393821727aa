//! Side features in the recommender API: they become model fields, they carry the signal for
//! items never seen in training (cold start), they survive save/load, and an explicit
//! validation set drives early stopping.

use deepfm::Pooling;
use deepfm::api::{DeepFM, Features, Interactions};
use deepfm::rng::Rng;

/// Ratings where an item's genre decides most of the rating: genre "good" items rate ~4.5,
/// "bad" ones ~1.5, plus a user bias from the user's group. Items 0..100; the even ones are
/// good.
fn planted(n: usize, seed: u64) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let (mut users, mut items, mut ratings) = (vec![], vec![], vec![]);
    for _ in 0..n {
        let u = rng.below(50) as u32;
        let i = rng.below(100) as u32;
        let base = if i.is_multiple_of(2) { 4.5 } else { 1.5 };
        let bias = if u.is_multiple_of(3) { -0.5 } else { 0.2 };
        users.push(u);
        items.push(i);
        ratings.push((base + bias + 0.2 * rng.normal()).clamp(1.0, 5.0));
    }
    (users, items, ratings)
}

fn features() -> (Features<u32>, Features<u32>) {
    let mut users = Features::new().categorical("group").numeric("age");
    for u in 0..50u32 {
        let group = if u.is_multiple_of(3) { "a" } else { "b" };
        users
            .insert(u, vec![group.into(), (u as f32 / 50.0).into()])
            .unwrap();
    }
    let mut items = Features::new().multi_hot("genres", Pooling::Mean);
    // Items 0..100 are trained on; 1000 and 1001 only have features (cold start).
    for i in (0..100u32).chain([1000, 1001]) {
        let genres = if i.is_multiple_of(2) {
            vec!["good", "x"]
        } else {
            vec!["bad", "x"]
        };
        items.insert(i, vec![genres.into()]).unwrap();
    }
    (users, items)
}

#[test]
fn features_score_cold_start_items_and_survive_save_and_load() {
    let (users, items, ratings) = planted(8_000, 1);
    let (user_features, item_features) = features();
    let data = Interactions::new(&users, &items, &ratings)
        .user_features(&user_features)
        .item_features(&item_features);
    let model = DeepFM::builder()
        .embedding_dim(8)
        .deep_layers(&[16])
        .epochs(6)
        .dropout(0.0)
        .seed(3)
        .threads(2)
        .fit_interactions(data)
        .unwrap();
    let names: Vec<&str> = (model.model().spec().fields.iter())
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["user", "item", "user.group", "user.age", "item.genres"]
    );
    // Cold start: two items never rated, told apart only by their genres.
    let good = model.try_predict(&7, &1000);
    assert!(
        good.is_err(),
        "try_predict still refuses ids unknown to training"
    );
    let (good, bad) = (model.predict(&7, &1000), model.predict(&7, &1001));
    assert!(
        good - bad > 1.5,
        "cold-start good {good:.2} vs bad {bad:.2}"
    );
    let batch = model
        .batch_predict(&[(7, 1000), (7, 1001), (8, 2)])
        .unwrap();
    assert_eq!(batch[..2], [good, bad]);
    // Save, load, same predictions (features included).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.dfm");
    model.save(&path).unwrap();
    let loaded = DeepFM::<u32, u32>::load(&path).unwrap();
    assert_eq!(
        loaded
            .batch_predict(&[(7, 1000), (7, 1001), (8, 2)])
            .unwrap(),
        batch
    );
    assert_eq!(
        loaded.recommend(&7, 5).unwrap(),
        model.recommend(&7, 5).unwrap()
    );
    // With the items already rated included, the top 10 are good (even) items.
    let top = model.recommend_with(&7, 10, false, &[]).unwrap();
    assert!(top.iter().all(|(i, _)| i.is_multiple_of(2)), "{top:?}");
}

#[test]
fn an_explicit_validation_set_drives_early_stopping() {
    let (users, items, ratings) = planted(6_000, 2);
    let (vu, vi, vr) = planted(1_000, 3);
    let data = Interactions::new(&users, &items, &ratings).validation(&vu, &vi, &vr);
    let model = DeepFM::builder()
        .embedding_dim(8)
        .deep_layers(&[16])
        .epochs(30)
        .learning_rate(0.01)
        .patience(Some(2))
        .seed(1)
        .threads(2)
        .fit_interactions(data)
        .unwrap();
    let history = model.history();
    assert!(history.iter().all(|e| e.valid_loss.is_some()));
    assert!(
        history.len() < 30,
        "stopped early after {} epochs",
        history.len()
    );
    // The validation loss is the MSE on the given set, whose size is not a share of the data.
    let (rmse, _) = model.evaluate(&vu, &vi, &vr).unwrap();
    let best = history
        .iter()
        .filter_map(|e| e.valid_loss)
        .fold(f64::INFINITY, f64::min);
    assert!(
        (rmse * rmse - best).abs() < 0.05,
        "rmse² {:.4} vs best valid loss {best:.4}",
        rmse * rmse
    );
}
