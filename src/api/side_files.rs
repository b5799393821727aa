//! Side-feature files to [`Features`]: RecBole atomic files (`.user`, `.item`: a typed header
//! such as `user_id:token age:token genre:token_seq`, tab-separated, the key in the first column) and the
//! MovieLens originals (`users.dat`, `movies.dat`, `u.user`, `u.item`), format detected from the
//! first line.
//!
//! RecBole types map to kinds: `token` → categorical, `float` → numeric (empty → 0),
//! `token_seq` → multi-hot over space-separated tokens (mean pooling); `float_seq` is refused.
//! MovieLens users give `gender`, `age`, `occupation` and `zip` (its first two characters, a
//! region), all categorical; movies give `genres` (multi-hot) and `year` (categorical).

use super::ApiError;
use super::features::{Feature, FeatureKind, Features};
use crate::data::DataError;
use crate::data::error::At;
use crate::data::movielens::{read_movies, read_users};
use crate::spec::Pooling;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Reads the side features in `path`. With `columns`, only those feature columns are kept
/// (by name, in file order); an unknown name is an error.
pub fn read_features(
    path: &Path,
    columns: Option<&[String]>,
) -> Result<Features<String>, ApiError> {
    let io = |source| {
        ApiError::Data(DataError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut first = String::new();
    BufReader::new(std::fs::File::open(path).map_err(io)?)
        .read_line(&mut first)
        .map_err(io)?;
    let all = if first.contains(":token") || first.contains(":float") {
        read_atomic(path)?
    } else if first.split("::").count() == 5 || first.split('|').count() == 5 {
        movielens_users(path)?
    } else {
        movielens_movies(path)?
    };
    match columns {
        None => Ok(all),
        Some(names) => select(all, names),
    }
}

/// Keeps the named columns.
fn select(all: Features<String>, names: &[String]) -> Result<Features<String>, ApiError> {
    let keep: Vec<usize> = names
        .iter()
        .map(|n| {
            (all.fields().iter().position(|(f, _)| f == n)).ok_or_else(|| {
                let have: Vec<&str> = all.fields().iter().map(|(f, _)| f.as_str()).collect();
                ApiError::Invalid(format!("no feature column {n:?} (the file has {have:?})"))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut out = Features::new();
    for &i in &keep {
        let (name, kind) = &all.fields()[i];
        out = out.field(name, *kind);
    }
    for (key, values) in all.entries() {
        out.insert(
            key.clone(),
            keep.iter().map(|&i| values[i].clone()).collect(),
        )?;
    }
    Ok(out)
}

/// A RecBole atomic file.
fn read_atomic(path: &Path) -> Result<Features<String>, ApiError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = BufReader::new(file).lines().enumerate();
    let bad = |line: usize, column: usize, field: &str, problem: String, text: &str| {
        let at = At { file: &name, line };
        ApiError::Data(at.err(column, field, problem, text.as_bytes()))
    };
    let header = match lines.next() {
        Some((_, Ok(h))) => h,
        Some((_, Err(source))) => {
            return Err(ApiError::Data(DataError::Io {
                path: path.to_path_buf(),
                source,
            }));
        }
        None => return Err(bad(1, 1, "header", "empty file".into(), "")),
    };
    let header = header.trim_end_matches('\r');
    let mut kinds = Vec::new();
    let mut features = Features::new();
    for (c, column) in header.split('\t').enumerate().skip(1) {
        let (field, ty) = column.rsplit_once(':').unwrap_or((column, ""));
        let kind = match ty {
            "token" => FeatureKind::Categorical,
            "float" => FeatureKind::Numeric,
            "token_seq" => FeatureKind::MultiHot(Pooling::Mean),
            _ => {
                let problem = format!("type {ty:?} is not token, float or token_seq");
                return Err(bad(1, c + 1, field, problem, column));
            }
        };
        kinds.push((field.to_string(), kind));
        features = features.field(field, kind);
    }
    for (index, line) in lines {
        let line_no = index + 1;
        let line = line.map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split('\t').collect();
        if cells.len() != kinds.len() + 1 {
            let problem = format!(
                "{} columns where the header has {}",
                cells.len(),
                kinds.len() + 1
            );
            return Err(bad(line_no, 1, "line", problem, line));
        }
        let mut values = Vec::with_capacity(kinds.len());
        for (c, ((field, kind), text)) in kinds.iter().zip(&cells[1..]).enumerate() {
            values.push(match kind {
                FeatureKind::Categorical => Feature::Token(text.to_string()),
                FeatureKind::MultiHot(_) => Feature::Tokens(
                    text.split(' ')
                        .filter(|t| !t.is_empty())
                        .map(String::from)
                        .collect(),
                ),
                FeatureKind::Numeric if text.trim().is_empty() => Feature::Num(0.0),
                FeatureKind::Numeric => match text.trim().parse::<f32>() {
                    Ok(v) if v.is_finite() => Feature::Num(v),
                    _ => {
                        return Err(bad(
                            line_no,
                            c + 2,
                            field,
                            "not a finite number".into(),
                            text,
                        ));
                    }
                },
            });
        }
        features.insert(cells[0].to_string(), values)?;
    }
    Ok(features)
}

/// MovieLens `users.dat` or `u.user`.
fn movielens_users(path: &Path) -> Result<Features<String>, ApiError> {
    let mut features = Features::new()
        .categorical("gender")
        .categorical("age")
        .categorical("occupation")
        .categorical("zip");
    for u in read_users(path)? {
        let zip: String = u.zip.chars().take(2).collect();
        let values = vec![
            Feature::Token(u.gender),
            Feature::Token(u.age.to_string()),
            Feature::Token(u.occupation),
            Feature::Token(zip),
        ];
        features.insert(u.id.to_string(), values)?;
    }
    Ok(features)
}

/// MovieLens `movies.dat` or `u.item`.
fn movielens_movies(path: &Path) -> Result<Features<String>, ApiError> {
    let mut features = Features::new()
        .multi_hot("genres", Pooling::Mean)
        .categorical("year");
    for m in read_movies(path)? {
        let year = m.year.map_or_else(String::new, |y| y.to_string());
        let values = vec![Feature::Tokens(m.genres), Feature::Token(year)];
        features.insert(m.id.to_string(), values)?;
    }
    Ok(features)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_recbole_atomic_files_with_types_and_a_column_selection() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "x.item",
            "item_id:token\tyear:token\tprice:float\tclass:token_seq\r\n\
             1\t1995\t2.5\tAnimation Comedy\n2\t1996\t\tAction\n",
        );
        let f = read_features(&path, None).unwrap();
        assert_eq!(f.len(), 2);
        let kinds: Vec<FeatureKind> = f.fields().iter().map(|(_, k)| *k).collect();
        assert_eq!(
            kinds,
            [
                FeatureKind::Categorical,
                FeatureKind::Numeric,
                FeatureKind::MultiHot(Pooling::Mean)
            ]
        );
        let only = read_features(&path, Some(&["class".to_string()])).unwrap();
        assert_eq!(only.fields().len(), 1);
        assert!(read_features(&path, Some(&["nope".to_string()])).is_err());
    }

    #[test]
    fn bad_atomic_files_name_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        for (text, needle) in [
            ("id:token\tv:float\n1\tabc\n", "line 2, column 2 (v)"),
            ("id:token\tv:float_seq\n1\t1 2\n", "float_seq"),
            (
                "id:token\tv:token\n1\ta\tb\n",
                "3 columns where the header has 2",
            ),
        ] {
            let path = write(dir.path(), "bad.user", text);
            let err = read_features(&path, None).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }

    #[test]
    fn reads_movielens_users_and_movies() {
        let dir = tempfile::tempdir().unwrap();
        let users = write(
            dir.path(),
            "users.dat",
            "1::F::1::10::48067\n2::M::56::16::70072\n",
        );
        let f = read_features(&users, None).unwrap();
        assert_eq!((f.len(), f.fields().len()), (2, 4));
        let movies = write(
            dir.path(),
            "movies.dat",
            "1::Toy Story (1995)::Animation|Comedy\n",
        );
        let f = read_features(&movies, None).unwrap();
        assert_eq!(
            (f.len(), f.fields()[0].1),
            (1, FeatureKind::MultiHot(Pooling::Mean))
        );
    }
}
