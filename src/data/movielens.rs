//! MovieLens (GroupLens) in its original distribution formats, told apart by the first line:
//! the `::`-separated `.dat` files of ML-1M (and ML-10M's `ratings.dat`) and the tab- and
//! `|`-separated `u.*` files of ML-100k. The results we compare with (Surprise, NCF, DeepFM
//! tutorials) were computed on these files as distributed, so we read them directly rather than
//! through a conversion step whose mistakes would move the numbers.
//!
//! Parsing is strict: every field is checked and only empty lines are skipped, because a line
//! misread or silently dropped shifts RMSE in the third decimal and leaves no other trace.
//! Text is Latin-1 (the files predate UTF-8 at GroupLens): each byte becomes the character with
//! that code point, so no input is rejected for its encoding.

pub mod features;

use super::error::{At, DataError};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// One rating: `user` rated `item` with `rating` stars at `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rating {
    /// User id as in the file (1-based in every MovieLens release).
    pub user: u32,
    /// Movie id as in the file.
    pub item: u32,
    /// Stars, in `0.5..=5` (whole stars before ML-10M, half stars since).
    pub rating: f32,
    /// Seconds since 1970-01-01 UTC.
    pub timestamp: u64,
}

/// One user's demographics. In ML-1M `age` is a bucket code (1, 18, 25, 35, 45, 50, 56) and
/// `occupation` a numeric code (0–20); in ML-100k both are plain (years, and a word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id, as in the ratings.
    pub id: u32,
    /// `M` or `F` as in the file.
    pub gender: String,
    /// Age in years (ML-100k) or age-bucket code (ML-1M).
    pub age: u32,
    /// Occupation name (ML-100k) or code (ML-1M), as text: it is categorical either way.
    pub occupation: String,
    /// Zip code as text (some are Canadian, some ZIP+4).
    pub zip: String,
}

/// One movie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movie {
    /// Movie id, as in the ratings.
    pub id: u32,
    /// Title exactly as in the file, year included (`Toy Story (1995)`).
    pub title: String,
    /// ML-1M: the title's trailing `(YYYY)`; ML-100k: the year of the release date. `None`
    /// when absent.
    pub year: Option<u16>,
    /// Genre names, in the file's order.
    pub genres: Vec<String>,
}

/// One MovieLens release: its ratings, users and movies, each in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieLens {
    /// Every rating.
    pub ratings: Vec<Rating>,
    /// Every user.
    pub users: Vec<User>,
    /// Every movie, rated or not.
    pub movies: Vec<Movie>,
}

/// ML-100k's 19 genres in flag order, from its README; used when no `u.genre` is at hand.
pub const ML100K_GENRES: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

const RATING_COLUMNS: [&str; 4] = ["user", "item", "rating", "timestamp"];

/// Reads `ratings.dat` (ML-1M, ML-10M: `UserID::MovieID::Rating::Timestamp`) or `u.data` and
/// the `u1.base`… splits (ML-100k: tab-separated), telling them apart by the first line.
/// Streams the file; memory is the result (24 bytes a rating).
pub fn read_ratings(path: &Path) -> Result<Vec<Rating>, DataError> {
    parse_ratings(open(path)?, &path.display().to_string())
}

/// [`read_ratings`] on any reader; `name` stands for the file in errors.
pub fn parse_ratings<R: BufRead>(reader: R, name: &str) -> Result<Vec<Rating>, DataError> {
    let mut sep = None;
    let mut out = Vec::new();
    for_each_line(reader, name, |line, at| {
        let sep = separator(&mut sep, line, &[b"::", b"\t"], at)?;
        let mut c = [&line[..0]; 4];
        columns(line, sep, &mut c, |i| RATING_COLUMNS[i].into(), at)?;
        let rating: f32 = number(c[2], 3, RATING_COLUMNS[2], at)?;
        // `contains` is false for NaN, so this also rejects non-finite ratings.
        if !(0.5..=5.0).contains(&rating) {
            return Err(at.err(3, RATING_COLUMNS[2], "outside 0.5..=5", c[2]));
        }
        out.push(Rating {
            user: number(c[0], 1, RATING_COLUMNS[0], at)?,
            item: number(c[1], 2, RATING_COLUMNS[1], at)?,
            rating,
            timestamp: number(c[3], 4, RATING_COLUMNS[3], at)?,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Reads `users.dat` (ML-1M: `UserID::Gender::Age::Occupation::Zip-code`) or `u.user`
/// (ML-100k: `id|age|gender|occupation|zip`), telling them apart by the first line.
pub fn read_users(path: &Path) -> Result<Vec<User>, DataError> {
    parse_users(open(path)?, &path.display().to_string())
}

/// [`read_users`] on any reader; `name` stands for the file in errors.
pub fn parse_users<R: BufRead>(reader: R, name: &str) -> Result<Vec<User>, DataError> {
    let mut sep = None;
    let mut out = Vec::new();
    for_each_line(reader, name, |line, at| {
        let sep = separator(&mut sep, line, &[b"::", b"|"], at)?;
        // The two layouts swap gender and age (0-based columns).
        let (gender, age) = if sep == b"::" { (1, 2) } else { (2, 1) };
        let mut names = ["id", "", "", "occupation", "zip"];
        (names[gender], names[age]) = ("gender", "age");
        let mut c = [&line[..0]; 5];
        columns(line, sep, &mut c, |i| names[i].into(), at)?;
        out.push(User {
            id: number(c[0], 1, "id", at)?,
            gender: latin1(c[gender]),
            age: number(c[age], age + 1, "age", at)?,
            occupation: latin1(c[3]),
            zip: latin1(c[4]),
        });
        Ok(())
    })?;
    Ok(out)
}

/// Reads `movies.dat` (ML-1M: `MovieID::Title (Year)::Genre|Genre`) or `u.item` (ML-100k:
/// `id|title|release date|video release date|IMDb URL|` and one 0/1 flag per genre), telling
/// them apart by the first line. For `u.item` the genre names come from `u.genre` in the same
/// folder when it exists, else from [`ML100K_GENRES`].
pub fn read_movies(path: &Path) -> Result<Vec<Movie>, DataError> {
    let genre_file = path.with_file_name("u.genre");
    let genres = if genre_file.is_file() {
        read_genres(&genre_file)?
    } else {
        ML100K_GENRES.iter().map(|g| g.to_string()).collect()
    };
    parse_movies(open(path)?, &path.display().to_string(), &genres)
}

/// [`read_movies`] on any reader; `name` stands for the file in errors. `genres` names the
/// flag columns of the ML-100k layout (one flag column per name) and is unused for ML-1M.
pub fn parse_movies<R: BufRead, S: AsRef<str>>(
    reader: R,
    name: &str,
    genres: &[S],
) -> Result<Vec<Movie>, DataError> {
    let mut sep = None;
    let mut out = Vec::new();
    for_each_line(reader, name, |line, at| {
        let sep = separator(&mut sep, line, &[b"::", b"|"], at)?;
        out.push(if sep == b"::" {
            movie_dat(line, at)?
        } else {
            movie_item(line, genres, at)?
        });
        Ok(())
    })?;
    Ok(out)
}

/// Reads ML-100k's `u.genre`: `name|index` lines, indexes 0, 1, 2… in order.
pub fn read_genres(path: &Path) -> Result<Vec<String>, DataError> {
    parse_genres(open(path)?, &path.display().to_string())
}

/// [`read_genres`] on any reader; `name` stands for the file in errors.
pub fn parse_genres<R: BufRead>(reader: R, name: &str) -> Result<Vec<String>, DataError> {
    let mut out = Vec::new();
    for_each_line(reader, name, |line, at| {
        let mut c = [&line[..0]; 2];
        columns(line, b"|", &mut c, |i| ["name", "index"][i].into(), at)?;
        let index: usize = number(c[1], 2, "index", at)?;
        if index != out.len() {
            let problem = format!("index {index} where {} was expected", out.len());
            return Err(at.err(2, "index", problem, c[1]));
        }
        out.push(latin1(c[0]));
        Ok(())
    })?;
    Ok(out)
}

/// Loads the MovieLens release in `dir`: `ratings.dat`, `users.dat`, `movies.dat` (ML-1M) or
/// `u.data`, `u.user`, `u.item` (ML-100k). [`DataError::NotFound`] when neither ratings file
/// is there; a missing users or movies file is an I/O error naming it (ML-10M, which has no
/// `users.dat`, is read with [`read_ratings`] and [`read_movies`]).
pub fn load_dir(dir: &Path) -> Result<MovieLens, DataError> {
    const LAYOUTS: [[&str; 3]; 2] = [
        ["ratings.dat", "users.dat", "movies.dat"],
        ["u.data", "u.user", "u.item"],
    ];
    for [ratings, users, movies] in LAYOUTS {
        if dir.join(ratings).is_file() {
            return Ok(MovieLens {
                ratings: read_ratings(&dir.join(ratings))?,
                users: read_users(&dir.join(users))?,
                movies: read_movies(&dir.join(movies))?,
            });
        }
    }
    Err(DataError::NotFound {
        dir: dir.to_path_buf(),
        looked_for: "ratings.dat (ML-1M) or u.data (ML-100k)".into(),
    })
}

/// One ML-1M `movies.dat` line.
fn movie_dat(line: &[u8], at: At) -> Result<Movie, DataError> {
    let mut c = [&line[..0]; 3];
    columns(
        line,
        b"::",
        &mut c,
        |i| ["id", "title", "genres"][i].into(),
        at,
    )?;
    let title = latin1(c[1]);
    Ok(Movie {
        id: number(c[0], 1, "id", at)?,
        year: title_year(&title),
        title,
        genres: if c[2].is_empty() {
            Vec::new()
        } else {
            c[2].split(|&b| b == b'|').map(latin1).collect()
        },
    })
}

/// One ML-100k `u.item` line, with one flag column per name in `genres`.
fn movie_item<S: AsRef<str>>(line: &[u8], genres: &[S], at: At) -> Result<Movie, DataError> {
    const NAMES: [&str; 5] = [
        "id",
        "title",
        "release date",
        "video release date",
        "IMDb URL",
    ];
    let mut c = vec![&line[..0]; NAMES.len() + genres.len()];
    let name = |i: usize| match i.checked_sub(NAMES.len()) {
        None => NAMES[i].to_string(),
        Some(g) => format!("genre {}", genres[g].as_ref()),
    };
    columns(line, b"|", &mut c, name, at)?;
    let mut movie_genres = Vec::new();
    for (i, (flag, genre)) in c[NAMES.len()..].iter().zip(genres).enumerate() {
        match *flag {
            b"0" => {}
            b"1" => movie_genres.push(genre.as_ref().to_string()),
            _ => {
                return Err(at.err(
                    NAMES.len() + i + 1,
                    name(NAMES.len() + i),
                    "not 0 or 1",
                    flag,
                ));
            }
        }
    }
    let year = if c[2].is_empty() {
        None
    } else {
        Some(
            release_year(c[2])
                .ok_or_else(|| at.err(3, NAMES[2], "not a date like 01-Jan-1995", c[2]))?,
        )
    };
    Ok(Movie {
        id: number(c[0], 1, "id", at)?,
        title: latin1(c[1]),
        year,
        genres: movie_genres,
    })
}

/// The year of an ML-100k release date `D-Mon-YYYY` (the day has one or two digits).
fn release_year(date: &[u8]) -> Option<u16> {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let mut parts = date.split(|&b| b == b'-');
    let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
    let day_ok = matches!(day.len(), 1 | 2) && day.iter().all(u8::is_ascii_digit);
    let day_ok = day_ok && (1..=31).contains(&ascii_number(day)?);
    if parts.next().is_some() || !day_ok || !MONTHS.contains(&month) || year.len() != 4 {
        return None;
    }
    u16::try_from(ascii_number(year)?).ok()
}

/// The year in a title's trailing `(YYYY)`, ignoring trailing spaces.
fn title_year(title: &str) -> Option<u16> {
    let inner = title.trim_end().strip_suffix(')')?;
    let (_, year) = inner.rsplit_once('(')?;
    if year.len() != 4 {
        return None;
    }
    u16::try_from(ascii_number(year.as_bytes())?).ok()
}

/// Digits only (no sign), at most 9 of them so the value fits.
fn ascii_number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

fn open(path: &Path) -> Result<BufReader<File>, DataError> {
    File::open(path)
        .map(|f| BufReader::with_capacity(1 << 16, f))
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Calls `f` on each non-empty line without its `\n` or `\r\n`, with its 1-based number.
fn for_each_line<R: BufRead>(
    mut reader: R,
    name: &str,
    mut f: impl FnMut(&[u8], At) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let mut buf = Vec::with_capacity(256);
    let mut line = 0;
    loop {
        buf.clear();
        let read = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| DataError::Io {
                path: name.into(),
                source,
            })?;
        if read == 0 {
            return Ok(());
        }
        line += 1;
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf[..]);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if !text.is_empty() {
            f(text, At { file: name, line })?;
        }
    }
}

/// The file's separator: on the first non-empty line, the first of `candidates` that occurs in
/// it, remembered in `chosen` for the lines after.
fn separator(
    chosen: &mut Option<&'static [u8]>,
    line: &[u8],
    candidates: &[&'static [u8]],
    at: At,
) -> Result<&'static [u8], DataError> {
    match *chosen {
        Some(sep) => Ok(sep),
        None => Ok(*chosen.insert(detect(line, candidates, at)?)),
    }
}

/// The first of `candidates` that occurs in `line`.
fn detect(line: &[u8], candidates: &[&'static [u8]], at: At) -> Result<&'static [u8], DataError> {
    candidates
        .iter()
        .find(|sep| find(line, sep).is_some())
        .copied()
        .ok_or_else(|| {
            let names: Vec<String> = candidates
                .iter()
                .map(|s| format!("{:?}", latin1(s)))
                .collect();
            at.err(
                1,
                "(line)",
                format!("no separator ({}) on the first line", names.join(" or ")),
                line,
            )
        })
}

/// Splits `line` at `sep` into exactly `out.len()` columns; `name(i)` names 0-based column `i`.
fn columns<'a>(
    line: &'a [u8],
    sep: &[u8],
    out: &mut [&'a [u8]],
    name: impl Fn(usize) -> String,
    at: At,
) -> Result<(), DataError> {
    let expected = out.len();
    let mut rest = Some(line);
    for (i, slot) in out.iter_mut().enumerate() {
        let Some(text) = rest else {
            let problem = format!("missing: the line has {i} columns, {expected} expected");
            return Err(at.err(i + 1, name(i), problem, line));
        };
        (*slot, rest) = match find(text, sep) {
            Some(pos) => (&text[..pos], Some(&text[pos + sep.len()..])),
            None => (text, None),
        };
    }
    match rest {
        Some(extra) => {
            let problem = format!("more than the {expected} columns expected");
            Err(at.err(expected + 1, "(extra)", problem, extra))
        }
        None => Ok(()),
    }
}

/// Byte offset of the first `needle` in `haystack` (`needle` is one or two bytes here).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, tail) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = haystack[from..].iter().position(|&b| b == first) {
        let start = from + i;
        if haystack[start + 1..].starts_with(tail) {
            return Some(start);
        }
        from = start + 1;
    }
    None
}

/// Parses a whole field as `T`; anything else (including non-ASCII) is an error at `column`.
fn number<T: std::str::FromStr>(
    field: &[u8],
    column: usize,
    name: &str,
    at: At,
) -> Result<T, DataError> {
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            let kind = std::any::type_name::<T>();
            at.err(column, name, format!("not a {kind}"), field)
        })
}

/// Each byte to the character with that code point: Latin-1 never fails to decode.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests;
