//! The `ratings` target: the interactions reader, then the recommender API on what it parsed.

use super::*;

/// The fitted recommender the `ratings` target scores with: string ids, ratings 1–5 (so the
/// predictions are clamped to `[1, 5]`), trained once per process on a fixed small set.
pub fn ratings_model() -> &'static DeepFM<String, String> {
    static MODEL: OnceLock<DeepFM<String, String>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let mut users = Vec::new();
        let mut items = Vec::new();
        let mut ratings = Vec::new();
        for u in 0..12u32 {
            for i in 0..9u32 {
                if (u + i) % 3 != 0 {
                    users.push(format!("u{u}"));
                    items.push(format!("i{i}"));
                    ratings.push(1.0 + ((u * 7 + i * 3) % 5) as f32);
                }
            }
        }
        DeepFM::builder()
            .embedding_dim(4)
            .deep_layers(&[8])
            .epochs(2)
            .batch_size(16)
            .threads(1)
            .seed(1)
            .fit(&users, &items, &ratings)
            .expect("fit the ratings model")
    })
}

/// One `ratings` input: the first byte's bit 0 asks for pairs (`predict --pairs`: the rating
/// column optional), the rest is the file. Checks: no panic; the same result with any read
/// buffering; errors name an existing line; parallel columns of equal length, ids non-empty,
/// ratings finite, exactly one record per non-blank line but a detected header. Parsed ids
/// then go through the recommender API
/// ([`ratings_model`]; unknown ids use the out-of-vocabulary rows): `batch_predict` gives one
/// score per pair, each in the clamp range `[1, 5]`, equal to `predict` on the same pair;
/// `evaluate` is Ok with finite, non-negative errors; `recommend` gives at most `k` distinct
/// known items. Returns the pairs parsed.
pub fn check_ratings(data: &[u8]) -> usize {
    let Some((&flags, bytes)) = data.split_first() else {
        return 0;
    };
    let pairs_only = flags & 1 != 0;
    let lines = line_count(bytes);
    let context = String::from_utf8_lossy(bytes);
    let parsed = match twice(bytes, |r| parse_interactions(r, "ratings", pairs_only)) {
        Ok(p) => p,
        Err(e) => {
            check_data_error(&e, lines, &context);
            return 0;
        }
    };
    let n = parsed.users.len();
    assert!(n <= lines, "{n} records from {lines} lines: {context:?}");
    // One record per non-blank line but the header: never one more or one fewer.
    let samples = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !String::from_utf8_lossy(l).trim().is_empty())
        .count();
    assert_eq!(
        n + parsed.header.is_some() as usize,
        samples,
        "records and header against non-blank lines: {context:?}"
    );
    assert_eq!(parsed.header.is_some(), parsed.header_reason.is_some());
    assert_eq!(parsed.items.len(), n);
    assert_eq!(parsed.ratings.len(), n);
    assert_eq!(parsed.timestamps.len(), n);
    assert!(
        parsed
            .users
            .iter()
            .chain(&parsed.items)
            .all(|id| !id.is_empty())
    );
    assert!(parsed.ratings.iter().all(|r| r.is_finite()), "{context:?}");
    if n == 0 {
        return 0;
    }

    let model = ratings_model();
    let pairs: Vec<(String, String)> = parsed
        .users
        .iter()
        .cloned()
        .zip(parsed.items.iter().cloned())
        .collect();
    let scores = model
        .batch_predict(&pairs)
        .unwrap_or_else(|e| panic!("batch_predict failed: {e}; input: {context:?}"));
    assert_eq!(scores.len(), n);
    for ((u, i), &s) in pairs.iter().zip(&scores).take(64) {
        assert!(
            (1.0..=5.0).contains(&s),
            "score {s} outside [1, 5]: {context:?}"
        );
        let one = model.predict(u, i);
        assert_eq!(
            one.to_bits(),
            s.to_bits(),
            "predict vs batch_predict: {context:?}"
        );
    }
    let (rmse, mae) = model
        .evaluate(&parsed.users, &parsed.items, &parsed.ratings)
        .unwrap_or_else(|e| panic!("evaluate failed: {e}; input: {context:?}"));
    assert!(rmse.is_finite() && mae.is_finite() && rmse >= 0.0 && mae >= 0.0);
    let k = (flags >> 1) as usize % 12;
    let recs = model
        .recommend(&parsed.users[0], k)
        .unwrap_or_else(|e| panic!("recommend failed: {e}; input: {context:?}"));
    assert!(
        recs.len() <= k,
        "{} recommendations for k = {k}",
        recs.len()
    );
    for (j, item) in recs.iter().enumerate() {
        assert!(
            model.items().get(item).is_some(),
            "unknown item recommended"
        );
        assert!(!recs[..j].contains(item), "item recommended twice");
    }
    n
}
