//! The `movielens` target.

use super::*;

/// One `movielens` input: the first byte picks the parser (`% 4`: ratings, users, movies with
/// ML-100k's genre names, `u.genre`), the rest is the file. Checks: no panic; the same result
/// with any read buffering; errors name an existing line; at most one record per line; ratings in
/// `0.5..=5`; ratings written back with the detected separator parse to the same ratings.
/// Returns whether the file parsed.
pub fn check_movielens(data: &[u8]) -> bool {
    let Some((&which, text)) = data.split_first() else {
        return false;
    };
    let lines = line_count(text);
    let context = String::from_utf8_lossy(text);
    let ok = |n: usize| assert!(n <= lines, "{n} records from {lines} lines: {context:?}");
    let result: Result<usize, DataError> = match which % 4 {
        0 => twice(text, |r| parse_ratings(r, "ratings")).map(|ratings| {
            ok(ratings.len());
            for r in &ratings {
                assert!(
                    (0.5..=5.0).contains(&r.rating),
                    "rating {} accepted: {context:?}",
                    r.rating
                );
            }
            // The separator is chosen on the first non-empty line: `::` if it has one.
            let first = text
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .find(|l| !l.is_empty())
                .unwrap_or_default();
            let sep = if first.windows(2).any(|w| w == b"::") {
                "::"
            } else {
                "\t"
            };
            let again: String = ratings
                .iter()
                .map(|r| {
                    let (u, i, s, t) = (r.user, r.item, r.rating, r.timestamp);
                    format!("{u}{sep}{i}{sep}{s}{sep}{t}\n")
                })
                .collect();
            let reparsed = parse_ratings(again.as_bytes(), "again")
                .unwrap_or_else(|e| panic!("written-back ratings do not parse: {e}: {again:?}"));
            assert_eq!(reparsed, ratings, "round trip changed ratings: {context:?}");
            ratings.len()
        }),
        1 => twice(text, |r| parse_users(r, "users")).map(|users| {
            ok(users.len());
            users.len()
        }),
        2 => twice(text, |r| parse_movies(r, "movies", &ML100K_GENRES)).map(|movies| {
            ok(movies.len());
            for m in &movies {
                assert!(
                    m.genres.iter().all(|g| !g.contains('|')),
                    "a genre name holds the separator: {context:?}"
                );
            }
            movies.len()
        }),
        _ => twice(text, |r| parse_genres(r, "genres")).map(|genres| {
            ok(genres.len());
            genres.len()
        }),
    };
    match result {
        Ok(_) => true,
        Err(e) => {
            check_data_error(&e, lines, &context);
            false
        }
    }
}
