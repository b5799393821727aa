//! MovieLens ratings as DeepFM samples: user and movie ids, optionally with the users'
//! demographics and the movies' release year and genres, each mapped to dense indices.
//!
//! Fields, in this order: `user`, `item` (categorical), and with side features `age`, `gender`,
//! `occupation`, `zip` (categorical, user side), `year` (categorical) and `genres`
//! (multi-hot, mean pooling). The vocabularies come from the catalogue files (`u.user`,
//! `u.item` / `users.dat`, `movies.dat`), never from the ratings, so building them reads no
//! label and a split can be drawn after.
//!
//! ```no_run
//! use deepfm::data::movielens::{features::{Encoder, Features}, load_dir};
//! let ml = load_dir("../shared/data/ml-100k".as_ref())?;
//! let encoder = Encoder::new(&ml, &Features { side: true, ..Features::default() });
//! let spec = encoder.spec(32, vec![256, 128, 64]);
//! let (batch, labels) = encoder.encode(&spec, &ml.ratings)?;
//! assert_eq!(batch.len(), labels.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::{Movie, MovieLens, Rating, User};
use crate::batch::{BatchBuf, Columns, Value};
use crate::data::TokenIndex;
use crate::rng::Rng;
use crate::spec::{Field, FieldKind, ModelSpec, Output, Pooling};
use thiserror::Error;

/// Which features to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    /// Add the user's age, gender, occupation and zip prefix and the movie's release year and
    /// genres to the ids.
    pub side: bool,
    /// Characters of the zip code kept as its prefix (1: the first digit, a region of the US).
    pub zip_prefix: usize,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            side: false,
            zip_prefix: 1,
        }
    }
}

/// A rating that cannot be encoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeatureError {
    /// The rating's user is not in the users file.
    #[error("user {0} is rated but absent from the users file")]
    UnknownUser(u32),
    /// The rating's movie is not in the movies file.
    #[error("movie {0} is rated but absent from the movies file")]
    UnknownMovie(u32),
    /// The spec given is not the one [`Encoder::spec`] builds.
    #[error("the spec's fields are not this encoder's")]
    SpecMismatch,
}

/// The age bucket of `age`: ML-1M's codes (1: under 18, 18: 18–24, 25: 25–34, 35: 35–44,
/// 45: 45–49, 50: 50–55, 56: 56 and over). ML-100k ages in years fall into the same seven
/// buckets, and an ML-1M code is its own bucket, so both releases share one vocabulary.
///
/// Why buckets rather than a numeric field: the effect of age on ratings is not monotone, and
/// a numeric field here is one embedding row scaled by the value, which can only express a
/// linear trend; seven buckets each keep hundreds of users (ML-100k) to learn from.
pub fn age_bucket(age: u32) -> u32 {
    match age {
        0..18 => 1,
        18..25 => 18,
        25..35 => 25,
        35..45 => 35,
        45..50 => 45,
        50..56 => 50,
        _ => 56,
    }
}

/// The release-year bucket: the decade (`1995` → `1990`), everything before 1940 together
/// (few movies, hence few ratings each), `0` when the year is unknown.
pub fn year_bucket(year: Option<u16>) -> u16 {
    match year {
        None => 0,
        Some(y) => (y.max(1930) / 10) * 10,
    }
}

/// The first `len` characters of a zip code, upper-cased (Canadian codes have letters).
pub fn zip_prefix(zip: &str, len: usize) -> String {
    zip.chars().take(len).flat_map(char::to_uppercase).collect()
}

/// Side features of one user or movie, as indices into their vocabularies.
#[derive(Debug, Clone)]
struct Side {
    /// Per user index: age, gender, occupation, zip prefix.
    user: Vec<[u64; 4]>,
    /// Per movie index: year bucket.
    year: Vec<u64>,
    /// Per movie index: genres.
    genres: Vec<Vec<u64>>,
    /// Vocabulary sizes of age, gender, occupation, zip, year, genres.
    vocab: [usize; 6],
}

/// Maps ratings to rows of a [`BatchBuf`] with the fields of [`Encoder::spec`].
#[derive(Debug, Clone)]
pub struct Encoder {
    users: TokenIndex<u32>,
    movies: TokenIndex<u32>,
    side: Option<Side>,
}

impl Encoder {
    /// Vocabularies from the catalogue of `ml` (its users and movies, in file order).
    pub fn new(ml: &MovieLens, features: &Features) -> Encoder {
        let users: TokenIndex<u32> = ml.users.iter().map(|u| u.id).collect();
        let movies: TokenIndex<u32> = ml.movies.iter().map(|m| m.id).collect();
        let side = features
            .side
            .then(|| side_features(&users, &ml.users, &movies, &ml.movies, features));
        Encoder {
            users,
            movies,
            side,
        }
    }

    /// The fields, in the order [`Encoder::push`] fills them.
    pub fn fields(&self) -> Vec<Field> {
        let cat = |name: &str, vocab: usize| Field {
            name: name.into(),
            kind: FieldKind::Categorical {
                vocab: vocab.max(1) as u64,
            },
            table: None,
        };
        let mut fields = vec![
            cat("user", self.users.len()),
            cat("item", self.movies.len()),
        ];
        if let Some(side) = &self.side {
            let names = ["age", "gender", "occupation", "zip", "year"];
            fields.extend(names.iter().zip(side.vocab).map(|(n, v)| cat(n, v)));
            fields.push(Field {
                name: "genres".into(),
                kind: FieldKind::multi_hot(side.vocab[5].max(1) as u64, Pooling::Mean),
                table: None,
            });
        }
        fields
    }

    /// A rating model over these fields: linear output clamped to the 1–5 star scale.
    pub fn spec(&self, embedding_dim: usize, hidden: Vec<usize>) -> ModelSpec {
        ModelSpec {
            mlp: Default::default(),
            table: Default::default(),
            fields: self.fields(),
            embedding_dim,
            hidden,
            output: Output::Linear,
            clamp: Some([1.0, 5.0]),
        }
    }

    /// Appends the features of `rating` (not its label) to `batch`, a batch of this
    /// encoder's spec.
    pub fn push(&self, batch: &mut BatchBuf, rating: &Rating) -> Result<(), FeatureError> {
        let user = self
            .users
            .get(&rating.user)
            .ok_or(FeatureError::UnknownUser(rating.user))?;
        let movie = self
            .movies
            .get(&rating.item)
            .ok_or(FeatureError::UnknownMovie(rating.item))?;
        let mut row = vec![Value::Id(user), Value::Id(movie)];
        if let Some(side) = &self.side {
            row.extend(side.user[user as usize].map(Value::Id));
            row.push(Value::Id(side.year[movie as usize]));
            row.push(Value::Ids(side.genres[movie as usize].clone()));
        }
        batch.push_row(&row).map_err(|_| FeatureError::SpecMismatch)
    }

    /// The features and labels (stars) of `ratings`, one row each, in order.
    pub fn encode<'a>(
        &self,
        spec: &ModelSpec,
        ratings: impl IntoIterator<Item = &'a Rating>,
    ) -> Result<(BatchBuf, Vec<f32>), FeatureError> {
        if spec.fields != self.fields() {
            return Err(FeatureError::SpecMismatch);
        }
        let mut batch = BatchBuf::new(spec);
        let mut labels = Vec::new();
        for r in ratings {
            self.push(&mut batch, r)?;
            labels.push(r.rating);
        }
        debug_assert_eq!(batch.rows(), labels.len());
        Ok((batch, labels))
    }
}

fn side_features(
    user_index: &TokenIndex<u32>,
    users: &[User],
    movie_index: &TokenIndex<u32>,
    movies: &[Movie],
    features: &Features,
) -> Side {
    let (mut age, mut gender, mut occupation, mut zip) = (
        TokenIndex::new(),
        TokenIndex::new(),
        TokenIndex::new(),
        TokenIndex::new(),
    );
    let mut user = vec![[0; 4]; user_index.len()];
    for u in users {
        // A repeated id keeps its first index; its last line's features win, as in a map.
        let i = user_index.get(&u.id).expect("indexed from this list") as usize;
        user[i] = [
            age.insert(age_bucket(u.age)),
            gender.insert(u.gender.clone()),
            occupation.insert(u.occupation.clone()),
            zip.insert(zip_prefix(&u.zip, features.zip_prefix)),
        ];
    }
    let (mut years, mut genre_names) = (TokenIndex::new(), TokenIndex::new());
    let mut year = vec![0; movie_index.len()];
    let mut genres = vec![Vec::new(); movie_index.len()];
    for m in movies {
        let i = movie_index.get(&m.id).expect("indexed from this list") as usize;
        year[i] = years.insert(year_bucket(m.year));
        genres[i] = m
            .genres
            .iter()
            .map(|g| genre_names.insert(g.clone()))
            .collect();
    }
    Side {
        user,
        year,
        genres,
        vocab: [
            age.len(),
            gender.len(),
            occupation.len(),
            zip.len(),
            years.len(),
            genre_names.len(),
        ],
    }
}

/// Splits `0..n` at random into two sets of indices, the second with `round(n · fraction)`
/// of them; each set is in increasing order. The same `(n, fraction, seed)` always gives the
/// same split.
///
/// # Panics
/// If `fraction` is not in `[0, 1]`.
pub fn random_split(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    assert!((0.0..=1.0).contains(&fraction), "fraction {fraction}");
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut order);
    let take = ((n as f64) * fraction).round() as usize;
    let (mut rest, mut part) = (order[take..].to_vec(), order[..take].to_vec());
    rest.sort_unstable();
    part.sort_unstable();
    (rest, part)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> MovieLens {
        let user = |id, gender: &str, age, occupation: &str, zip: &str| User {
            id,
            gender: gender.into(),
            age,
            occupation: occupation.into(),
            zip: zip.into(),
        };
        let movie = |id, year, genres: &[&str]| Movie {
            id,
            title: String::new(),
            year,
            genres: genres.iter().map(|g| g.to_string()).collect(),
        };
        let rating = |user, item, rating| Rating {
            user,
            item,
            rating,
            timestamp: 0,
        };
        MovieLens {
            ratings: vec![rating(7, 30, 4.0), rating(5, 10, 2.0), rating(7, 10, 5.0)],
            users: vec![
                user(5, "M", 24, "writer", "85711"),
                user(7, "F", 53, "other", "t8h1n"),
            ],
            movies: vec![
                movie(10, Some(1995), &["Animation", "Comedy"]),
                movie(30, None, &[]),
                movie(20, Some(1921), &["Comedy"]),
            ],
        }
    }

    #[test]
    fn buckets() {
        let ages = [1, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 73];
        let buckets: Vec<u32> = ages.iter().map(|&a| age_bucket(a)).collect();
        assert_eq!(
            buckets,
            [1, 1, 18, 18, 25, 25, 35, 35, 45, 45, 50, 50, 56, 56]
        );
        for code in [1, 18, 25, 35, 45, 50, 56] {
            assert_eq!(age_bucket(code), code, "ML-1M codes are their own bucket");
        }
        assert_eq!(
            [None, Some(1921), Some(1939), Some(1940), Some(1998)].map(year_bucket),
            [0, 1930, 1930, 1940, 1990]
        );
        assert_eq!(zip_prefix("t8h1n", 3), "T8H");
        assert_eq!(zip_prefix("85711", 1), "8");
        assert_eq!(zip_prefix("", 2), "");
    }

    #[test]
    fn ids_only() {
        let ml = tiny();
        let enc = Encoder::new(&ml, &Features::default());
        let spec = enc.spec(4, vec![8]);
        spec.validate().unwrap();
        let names: Vec<_> = spec.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["user", "item"]);
        let (batch, labels) = enc.encode(&spec, &ml.ratings).unwrap();
        assert_eq!(labels, [4.0, 2.0, 5.0]);
        let crate::batch::Column::Categorical(users) = batch.column(0) else {
            panic!()
        };
        let crate::batch::Column::Categorical(items) = batch.column(1) else {
            panic!()
        };
        assert_eq!((users, items), (&[1, 0, 1][..], &[1, 0, 0][..]));
    }

    #[test]
    fn side_features_in_field_order() {
        let ml = tiny();
        let enc = Encoder::new(
            &ml,
            &Features {
                side: true,
                zip_prefix: 1,
            },
        );
        let spec = enc.spec(4, vec![8]);
        spec.validate().unwrap();
        let vocab: Vec<(String, u64)> = spec
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.kind.rows()))
            .collect();
        let want = [
            ("user", 2),
            ("item", 3),
            ("age", 2),
            ("gender", 2),
            ("occupation", 2),
            ("zip", 2),
            ("year", 3),
            ("genres", 2),
        ];
        let want: Vec<(String, u64)> = want.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        assert_eq!(vocab, want);
        let (batch, _) = enc.encode(&spec, &ml.ratings[..1]).unwrap();
        // User 7 (index 1): age 53 → second bucket, F, other, "T"; movie 30: no year, no genre.
        let ids: Vec<u64> = (0..7)
            .map(|i| match batch.column(i) {
                crate::batch::Column::Categorical(v) => v[0],
                _ => panic!("field {i}"),
            })
            .collect();
        assert_eq!(ids, [1, 1, 1, 1, 1, 1, 1]);
        let crate::batch::Column::MultiHot { ids, offsets, .. } = batch.column(7) else {
            panic!()
        };
        assert_eq!((ids, offsets), (&[][..], &[0, 0][..]));
        let (batch, _) = enc.encode(&spec, &ml.ratings[1..2]).unwrap();
        let crate::batch::Column::MultiHot { ids, .. } = batch.column(7) else {
            panic!()
        };
        assert_eq!(ids, [0, 1]);
    }

    #[test]
    fn unknown_ids_and_foreign_specs_are_refused() {
        let ml = tiny();
        let enc = Encoder::new(&ml, &Features::default());
        let spec = enc.spec(4, vec![]);
        let stray = Rating {
            user: 99,
            item: 10,
            rating: 3.0,
            timestamp: 0,
        };
        assert_eq!(
            enc.encode(&spec, [&stray]).unwrap_err(),
            FeatureError::UnknownUser(99)
        );
        let stray = Rating {
            user: 5,
            item: 99,
            ..stray
        };
        assert_eq!(
            enc.encode(&spec, [&stray]).unwrap_err(),
            FeatureError::UnknownMovie(99)
        );
        let side = Encoder::new(
            &ml,
            &Features {
                side: true,
                zip_prefix: 1,
            },
        );
        assert_eq!(
            side.encode(&spec, &ml.ratings).unwrap_err(),
            FeatureError::SpecMismatch
        );
    }

    #[test]
    fn random_split_partitions_reproducibly() {
        let (a, b) = random_split(1000, 0.2, 42);
        assert_eq!((a.len(), b.len()), (800, 200));
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(random_split(1000, 0.2, 42), (a.clone(), b.clone()));
        assert_ne!(random_split(1000, 0.2, 43).1, b);
        assert_eq!(random_split(0, 0.5, 1), (vec![], vec![]));
        assert_eq!(random_split(3, 1.0, 1).0, Vec::<usize>::new());
    }
}
