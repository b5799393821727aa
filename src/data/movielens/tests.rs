use super::*;
use proptest::prelude::*;

fn ratings(text: &[u8]) -> Result<Vec<Rating>, DataError> {
    parse_ratings(text, "r.dat")
}

/// The parse error's (line, column, field, problem, text), or a panic naming what came instead.
fn parse_err<T: std::fmt::Debug>(
    r: Result<T, DataError>,
) -> (usize, usize, String, String, String) {
    match r {
        Err(DataError::Parse {
            line,
            column,
            field,
            problem,
            text,
            ..
        }) => (line, column, field, problem, text),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn ratings_in_both_layouts() {
    let one_m = ratings(b"1::1193::5::978300760\r\n\n2::661::4.5::978302109\n\n").unwrap();
    assert_eq!(
        one_m,
        [
            Rating {
                user: 1,
                item: 1193,
                rating: 5.0,
                timestamp: 978300760
            },
            Rating {
                user: 2,
                item: 661,
                rating: 4.5,
                timestamp: 978302109
            },
        ]
    );
    let hundred_k = ratings(b"196\t242\t3\t881250949\n186\t302\t0.5\t891717742").unwrap();
    assert_eq!(
        hundred_k[1],
        Rating {
            user: 186,
            item: 302,
            rating: 0.5,
            timestamp: 891717742
        }
    );
    assert_eq!(ratings(b"").unwrap(), []);
    assert_eq!(ratings(b"\n\r\n").unwrap(), []);
}

#[test]
fn rating_errors_name_line_column_and_text() {
    let cases: [(&[u8], usize, usize, &str, &str); 11] = [
        (b"1::2::3::4\n1::2::3\n", 2, 4, "timestamp", "missing"),
        (b"1::2::3::4::5\n", 1, 5, "(extra)", "more than"),
        (b"1::2::0::4\n", 1, 3, "rating", "outside"),
        (b"1::2::5.5::4\n", 1, 3, "rating", "outside"),
        (b"1::2::NaN::4\n", 1, 3, "rating", "outside"),
        (b"1::2::inf::4\n", 1, 3, "rating", "outside"),
        (b"1::2::three::4\n", 1, 3, "rating", "not a f32"),
        (b"-1::2::3::4\n", 1, 1, "user", "not a u32"),
        (b"1::2\xff::3::4\n", 1, 2, "item", "not a u32"),
        // A line of spaces is not empty, and a tab file cannot switch to `::`.
        (b"1\t2\t3\t4\n \n", 2, 2, "item", "missing"),
        (b"1 2 3 4\n", 1, 1, "(line)", "no separator"),
    ];
    for (text, line, column, field, problem) in cases {
        let (l, c, f, p, _) = parse_err(ratings(text));
        let shown = String::from_utf8_lossy(text);
        assert_eq!((l, c, f.as_str()), (line, column, field), "{shown:?}: {p}");
        assert!(p.contains(problem), "{shown:?}: {p}");
    }
}

#[test]
fn error_message_shows_file_and_truncated_text() {
    let long = format!("1::2::{}::4", "9".repeat(100));
    let err = ratings(long.as_bytes()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("r.dat, line 1, column 3 (rating): "),
        "{message}"
    );
    assert!(
        message.contains(&format!("\"{}…\"", "9".repeat(40))),
        "{message}"
    );
    let missing = Path::new("/nonexistent/ratings.dat");
    match read_ratings(missing) {
        Err(DataError::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
}

#[test]
fn users_in_both_layouts() {
    let one_m = parse_users(&b"1::F::1::10::48067\n2::M::56::16::98107-2117\n"[..], "u").unwrap();
    assert_eq!(
        one_m[1],
        User {
            id: 2,
            gender: "M".into(),
            age: 56,
            occupation: "16".into(),
            zip: "98107-2117".into(),
        }
    );
    let hundred_k =
        parse_users(&b"1|24|M|technician|85711\n2|53|F|other|T8H1N\n"[..], "u").unwrap();
    assert_eq!(
        hundred_k[1],
        User {
            id: 2,
            gender: "F".into(),
            age: 53,
            occupation: "other".into(),
            zip: "T8H1N".into(),
        }
    );
    // Age is column 3 in ML-1M and column 2 in ML-100k.
    let (_, column, field, ..) = parse_err(parse_users(&b"1::F::x::10::48067"[..], "u"));
    assert_eq!((column, field.as_str()), (3, "age"));
    let (_, column, field, ..) = parse_err(parse_users(&b"1|x|M|technician|85711"[..], "u"));
    assert_eq!((column, field.as_str()), (2, "age"));
    let (_, column, field, ..) = parse_err(parse_users(&b"1|24|M|technician"[..], "u"));
    assert_eq!((column, field.as_str()), (5, "zip"));
}

#[test]
fn movies_dat_is_latin1_with_year_in_title() {
    let text = b"73::Mis\xe9rables, Les (1995)::Drama|Musical\n\
                 9::No Year::\n\
                 10::Land Before Time III (1995) (V)::Animation\n";
    let movies = parse_movies(&text[..], "m", &ML100K_GENRES).unwrap();
    assert_eq!(
        movies[0],
        Movie {
            id: 73,
            title: "Misérables, Les (1995)".into(),
            year: Some(1995),
            genres: vec!["Drama".into(), "Musical".into()],
        }
    );
    assert_eq!((movies[1].year, movies[1].genres.len()), (None, 0));
    assert_eq!(movies[2].year, None);
    let (line, column, field, ..) = parse_err(parse_movies(
        &b"1::T (1995)::A\n\nx::T::A"[..],
        "m",
        &ML100K_GENRES,
    ));
    assert_eq!((line, column, field.as_str()), (3, 1, "id"));
}

#[test]
fn u_item_flags_name_genres_and_date_gives_year() {
    let genres = ["Action", "Drama", "War"];
    let text = b"1|Toy Story (1995)|01-Jan-1995||http://x|1|0|1\n\
                 2|C\xe9r\xe9monie, La (1995)|4-Feb-1971||http://x|0|0|0\n\
                 267|unknown||||0|1|0\n";
    let movies = parse_movies(&text[..], "u.item", &genres).unwrap();
    assert_eq!(
        movies[0],
        Movie {
            id: 1,
            title: "Toy Story (1995)".into(),
            year: Some(1995),
            genres: vec!["Action".into(), "War".into()],
        }
    );
    assert_eq!(
        (movies[1].title.as_str(), movies[1].year),
        ("Cérémonie, La (1995)", Some(1971))
    );
    assert_eq!(
        (movies[2].year, movies[2].genres.clone()),
        (None, vec!["Drama".to_string()])
    );
    let bad: [(&[u8], usize, &str, &str); 5] = [
        (b"1|T|01-Jan-1995||u|1|2|0", 7, "genre Drama", "not 0 or 1"),
        (b"1|T|01-Jan-1995||u|1|0", 8, "genre War", "missing"),
        (b"1|T|01-Jan-1995||u|1|0|0|1", 9, "(extra)", "more than"),
        (b"1|T|1995||u|1|0|0", 3, "release date", "not a date"),
        (b"1|T|32-Jan-1995||u|1|0|0", 3, "release date", "not a date"),
    ];
    for (text, column, field, problem) in bad {
        let (_, c, f, p, _) = parse_err(parse_movies(text, "u.item", &genres));
        assert_eq!((c, f.as_str()), (column, field), "{p}");
        assert!(p.contains(problem), "{p}");
    }
}

#[test]
fn genre_file_in_order() {
    let genres = parse_genres(&b"unknown|0\nAction|1\n\n"[..], "u.genre").unwrap();
    assert_eq!(genres, ["unknown", "Action"]);
    let (line, column, _, problem, _) = parse_err(parse_genres(&b"unknown|0\nAction|2\n"[..], "g"));
    assert_eq!((line, column), (2, 2));
    assert!(problem.contains("1 was expected"), "{problem}");
}

#[test]
fn load_dir_finds_either_layout() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &[u8]| std::fs::write(dir.path().join(name), text).unwrap();
    assert!(matches!(
        load_dir(dir.path()),
        Err(DataError::NotFound { .. })
    ));
    write("u.data", b"1\t1\t3\t5\n");
    write("u.user", b"1|24|M|technician|85711\n");
    write("u.item", b"1|Toy Story (1995)|01-Jan-1995||u|0|1\n");
    // A u.genre next to u.item names its (here two) flag columns.
    write("u.genre", b"Comedy|0\nDrama|1\n");
    let ml = load_dir(dir.path()).unwrap();
    assert_eq!((ml.ratings.len(), ml.users.len()), (1, 1));
    assert_eq!(ml.movies[0].genres, ["Drama"]);
    write("ratings.dat", b"1::1::3::5\n2::1::4::6\n");
    match load_dir(dir.path()) {
        Err(DataError::Io { path, .. }) => assert_eq!(path, dir.path().join("users.dat")),
        other => panic!("{other:?}"),
    }
    write("users.dat", b"1::F::1::10::48067\n");
    write("movies.dat", b"1::Toy Story (1995)::Comedy\n");
    let ml = load_dir(dir.path()).unwrap();
    assert_eq!(ml.ratings.len(), 2);
}

/// Bytes that are mostly separators, digits and line ends, so that inputs get past the first
/// checks and into every branch.
fn near_misses() -> impl Strategy<Value = Vec<u8>> {
    let alphabet = b":|\t\n\r0123456789.-( )Jan\xe9";
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(&alphabet[..]),
            1 => any::<u8>(),
        ],
        0..200,
    )
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in near_misses()) {
        let _ = parse_ratings(&bytes[..], "fuzz");
        let _ = parse_users(&bytes[..], "fuzz");
        let _ = parse_movies(&bytes[..], "fuzz", &ML100K_GENRES);
        let _ = parse_movies(&bytes[..], "fuzz", &[] as &[&str]);
        let _ = parse_genres(&bytes[..], "fuzz");
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_ratings(&bytes[..], "fuzz");
        let _ = parse_users(&bytes[..], "fuzz");
        let _ = parse_movies(&bytes[..], "fuzz", &ML100K_GENRES);
        let _ = parse_genres(&bytes[..], "fuzz");
    }

    #[test]
    fn valid_ratings_round_trip(
        rows in prop::collection::vec((any::<u32>(), any::<u32>(), 1u8..=10, any::<u64>()), 0..20),
        tabs in any::<bool>(),
    ) {
        let sep = if tabs { "\t" } else { "::" };
        let text: String = rows
            .iter()
            .map(|(u, i, r, t)| format!("{u}{sep}{i}{sep}{}{sep}{t}\n", f32::from(*r) / 2.0))
            .collect();
        let parsed = parse_ratings(text.as_bytes(), "gen").unwrap();
        let expected: Vec<Rating> = rows
            .iter()
            .map(|&(user, item, r, timestamp)| Rating { user, item, rating: f32::from(r) / 2.0, timestamp })
            .collect();
        prop_assert_eq!(parsed, expected);
    }
}
