//! The MovieLens loaders on the real files: the counts GroupLens publishes must come out exactly,
//! so nothing is dropped or misread. The data sets are not redistributable and live outside the
//! repository (`../shared/data`, or `$DEEPFM_DATA`);
//! without them the tests say so and pass, except under CI (`CI` set), where they fail.
//! Run in release mode: `cargo test --release --test movielens`.

mod common;

use deepfm::data::movielens::{Movie, load_dir, read_ratings};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

fn data_dir(name: &str) -> Option<PathBuf> {
    common::shared_data(name)
}

fn distinct<T: std::hash::Hash + Eq>(items: impl Iterator<Item = T>) -> usize {
    items.collect::<HashSet<_>>().len()
}

fn movie(movies: &[Movie], id: u32) -> &Movie {
    movies
        .iter()
        .find(|m| m.id == id)
        .expect("movie id present")
}

#[test]
fn ml_100k_counts() {
    let Some(dir) = data_dir("ml-100k") else {
        return;
    };
    let ml = load_dir(&dir).unwrap();
    assert_eq!(ml.ratings.len(), 100_000);
    assert_eq!(ml.users.len(), 943);
    assert_eq!(ml.movies.len(), 1_682);
    assert_eq!(distinct(ml.ratings.iter().map(|r| r.user)), 943);
    assert_eq!(distinct(ml.ratings.iter().map(|r| r.item)), 1_682);
    assert_eq!(distinct(ml.users.iter().map(|u| u.id)), 943);
    assert_eq!(distinct(ml.movies.iter().map(|m| m.id)), 1_682);

    let toy = movie(&ml.movies, 1);
    assert_eq!(
        (toy.title.as_str(), toy.year),
        ("Toy Story (1995)", Some(1995))
    );
    assert_eq!(toy.genres, ["Animation", "Children's", "Comedy"]);
    // Latin-1 in u.item: "Cérémonie, La (1995)".
    assert_eq!(
        movie(&ml.movies, 1623).title,
        "C\u{e9}r\u{e9}monie, La (1995)"
    );
    // Item 267 is a placeholder with no title, date or URL.
    let unknown = movie(&ml.movies, 267);
    assert_eq!((unknown.title.as_str(), unknown.year), ("unknown", None));
    assert_eq!(ml.movies.iter().filter(|m| m.year.is_none()).count(), 1);

    // The five-fold splits partition u.data.
    let mut tests = 0;
    for fold in 1..=5 {
        let base = read_ratings(&dir.join(format!("u{fold}.base"))).unwrap();
        let test = read_ratings(&dir.join(format!("u{fold}.test"))).unwrap();
        assert_eq!(base.len() + test.len(), 100_000, "fold {fold}");
        tests += test.len();
    }
    assert_eq!(tests, 100_000);
}

#[test]
fn ml_1m_counts() {
    let Some(dir) = data_dir("ml-1m") else { return };
    let start = Instant::now();
    let ratings = read_ratings(&dir.join("ratings.dat")).unwrap();
    let elapsed = start.elapsed();
    println!(
        "ml-1m ratings.dat: {} ratings in {:.1} ms",
        ratings.len(),
        elapsed.as_secs_f64() * 1e3
    );
    let ml = load_dir(&dir).unwrap();
    assert_eq!(ml.ratings, ratings);
    assert_eq!(ml.ratings.len(), 1_000_209);
    assert_eq!(ml.users.len(), 6_040);
    assert_eq!(ml.movies.len(), 3_883);
    assert_eq!(distinct(ml.ratings.iter().map(|r| r.user)), 6_040);
    assert_eq!(distinct(ml.ratings.iter().map(|r| r.item)), 3_706);

    let mut histogram = BTreeMap::new();
    for r in &ml.ratings {
        *histogram.entry(r.rating.to_string()).or_insert(0) += 1;
    }
    let expected = [
        ("1", 56_174),
        ("2", 107_557),
        ("3", 261_197),
        ("4", 348_971),
        ("5", 226_310),
    ];
    assert_eq!(
        histogram,
        expected
            .iter()
            .map(|&(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>()
    );

    // Every rated movie and every rating user is described.
    let movie_ids: HashSet<u32> = ml.movies.iter().map(|m| m.id).collect();
    let user_ids: HashSet<u32> = ml.users.iter().map(|u| u.id).collect();
    assert!(ml.ratings.iter().all(|r| movie_ids.contains(&r.item)));
    assert!(ml.ratings.iter().all(|r| user_ids.contains(&r.user)));

    // Latin-1 in movies.dat, and every title ends in its year.
    assert_eq!(movie(&ml.movies, 73).title, "Mis\u{e9}rables, Les (1995)");
    assert!(ml.movies.iter().all(|m| m.year.is_some()));
    assert_eq!(
        movie(&ml.movies, 1).genres,
        ["Animation", "Children's", "Comedy"]
    );
    let ages: HashSet<u32> = ml.users.iter().map(|u| u.age).collect();
    assert_eq!(ages, HashSet::from([1, 18, 25, 35, 45, 50, 56]));
}
