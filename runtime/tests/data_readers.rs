//! The file readers: delimited text, MovieLens 100k and Last.fm 2k.
//!
//! Fixtures under `tests/fixtures/` are small hand-written files. The tests at
//! the end read the real data sets from `shared/data` beside the repository
//! when it is there, and say they were skipped when it is not.

use std::path::{Path, PathBuf};

use recc_runtime::data::delimited::{self, ColumnKind, ColumnSpec, Spec};
use recc_runtime::data::{lastfm, movielens, BadLines, ColumnData, DataError, Dataset};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn spec(text: &str) -> Vec<ColumnSpec> {
    match delimited::parse_columns(text) {
        Ok(c) => c,
        Err(e) => panic!("`{text}` should parse: {e}"),
    }
}

fn col(name: &str, kind: ColumnKind) -> ColumnSpec {
    ColumnSpec {
        name: name.to_string(),
        kind,
    }
}

fn index(domain: &str) -> ColumnKind {
    ColumnKind::Index(domain.to_string())
}

fn ok<T>(r: Result<T, DataError>) -> T {
    r.unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

/// The file name, line and message of a bad-line error.
fn bad_line<T: std::fmt::Debug>(r: Result<T, DataError>) -> (String, usize, String) {
    match r {
        Err(DataError::BadLine { at, message }) => (
            at.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            at.line,
            message,
        ),
        other => panic!("expected a bad line, got {other:?}"),
    }
}

fn invalid<T: std::fmt::Debug>(r: Result<T, DataError>) -> String {
    match r {
        Err(DataError::Invalid(m)) => m,
        other => panic!("expected an invalid-data error, got {other:?}"),
    }
}

/// The raw ids of an index column, row by row.
fn raw_ids(ds: &Dataset, column: &str) -> Vec<String> {
    let (domain, values) = ds.indices(column).expect("an index column");
    let map = &ds.domains[domain];
    values.iter().map(|&v| map.name(v).to_string()).collect()
}

fn reals(ds: &Dataset, column: &str) -> Vec<f64> {
    match &ds.column(column).expect("the column").data {
        ColumnData::Real(v) => v.clone(),
        other => panic!("{column} is {}", other.kind()),
    }
}

/// Members of row `r` of a bag column, as raw ids.
fn bag_row(ds: &Dataset, column: &str, r: usize) -> Vec<String> {
    match &ds.column(column).expect("the column").data {
        ColumnData::Bag {
            domain,
            offsets,
            members,
            weights,
        } => {
            let range = offsets[r]..offsets[r + 1];
            assert!(weights[range.clone()].iter().all(|&w| w == 1.0));
            let map = &ds.domains[domain];
            members[range]
                .iter()
                .map(|&m| map.name(m).to_string())
                .collect()
        }
        other => panic!("{column} is {}", other.kind()),
    }
}

fn kinds(ds: &Dataset) -> Vec<(String, String)> {
    ds.columns
        .iter()
        .map(|c| (c.name.clone(), c.data.kind()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

// Column lists.

#[test]
fn column_lists_parse_in_full_and_in_shorthand() {
    assert_eq!(
        spec("user:index(user),item:index(item),rating:real,ts:time,genres:bag(genre,|),_:skip"),
        vec![
            col("user", index("user")),
            col("item", index("item")),
            col("rating", ColumnKind::Real),
            col("ts", ColumnKind::Time),
            col(
                "genres",
                ColumnKind::Bag {
                    domain: "genre".into(),
                    separator: '|'
                }
            ),
            col("_", ColumnKind::Skip),
        ]
    );
    assert_eq!(
        spec(" user , movie:index , tags:bag , genres:bag(genre) , kw:bag(word,;), skip, _"),
        vec![
            col("user", index("user")),
            col("movie", index("movie")),
            col(
                "tags",
                ColumnKind::Bag {
                    domain: "tags".into(),
                    separator: '|'
                }
            ),
            col(
                "genres",
                ColumnKind::Bag {
                    domain: "genre".into(),
                    separator: '|'
                }
            ),
            col(
                "kw",
                ColumnKind::Bag {
                    domain: "word".into(),
                    separator: ';'
                }
            ),
            col("_", ColumnKind::Skip),
            col("_", ColumnKind::Skip),
        ]
    );
    // A kind alone is named after its domain; a bag may split at commas.
    assert_eq!(
        spec("index(user),bag(tag,,)"),
        vec![
            col("user", index("user")),
            col(
                "tag",
                ColumnKind::Bag {
                    domain: "tag".into(),
                    separator: ','
                }
            ),
        ]
    );
}

#[test]
fn bad_column_lists_say_what_is_wrong() {
    let cases = [
        ("", "names no columns"),
        ("user,,item", "an empty entry"),
        ("user,item,", "an empty entry"),
        ("rating:number", "unknown column kind `number`"),
        ("rating:number", "expected index, index(DOMAIN), real"),
        ("user,user:index(person)", "column `user` is named twice"),
        ("genres:bag(genre", "without a matching `)`"),
        ("genres:bag(genre,ab)", "a bag separator is one character"),
        ("rating:real(x)", "`real` takes no arguments"),
        ("user:index()", "an empty domain"),
        ("us er", "not a column name"),
        ("rating:", "no kind after `rating:`"),
        ("_:real", "`_` names only skipped fields"),
        ("time(x)", "`time` takes no arguments"),
    ];
    for (text, expected) in cases {
        let message = invalid(delimited::parse_columns(text));
        assert!(
            message.contains(expected),
            "`{text}`: {message:?} should contain {expected:?}"
        );
        assert!(message.contains("--columns"), "{message}");
    }
}

// Delimited files.

#[test]
fn header_names_infer_the_columns() {
    let spec = Spec {
        header: true,
        ..Spec::default()
    };
    let ds = ok(delimited::read(
        &fixture("ratings_header.csv"),
        &spec,
        BadLines::Fail,
    ));
    assert_eq!(ds.name, "ratings_header.csv");
    assert_eq!(
        kinds(&ds),
        pairs(&[
            ("user", "index(user)"),
            ("item", "index(item)"),
            ("stars", "real"),
            ("timestamp", "time"),
            ("city", "index(city)"),
            ("price", "real"),
        ])
    );
    assert_eq!(ds.user.as_deref(), Some("user"));
    assert_eq!(ds.item.as_deref(), Some("item"));
    assert_eq!(ds.target.as_deref(), Some("stars"));
    assert_eq!(ds.time.as_deref(), Some("timestamp"));
    assert_eq!(ds.len(), 3);
    assert_eq!(raw_ids(&ds, "user"), ["u1", "u2", "u1"]);
    assert_eq!(raw_ids(&ds, "item"), ["m10", "m10", "m20"]);
    assert_eq!(raw_ids(&ds, "city"), ["Paris", "Oslo", "Paris"]);
    assert_eq!(reals(&ds, "stars"), [4.5, 3.0, 5.0]);
    assert_eq!(reals(&ds, "price"), [9.99, 12.0, 7.5]);
    assert_eq!(ds.times(), Some(&[978300760, 978300761, 978300762][..]));
    // Ids are interned in first-seen order.
    assert_eq!(ds.domains["user"].names(), ["u1", "u2"]);
    assert_eq!(ds.domains["item"].get("m20"), Some(1));
}

#[test]
fn header_inference_knows_common_names() {
    let text = "user_id\tartist\tplays\tdate\tts2\n1\ta\t3\t100\t5\n";
    let spec = Spec {
        header: true,
        ..Spec::default()
    };
    let ds = ok(delimited::read_str(
        "plays.tsv",
        text,
        &spec,
        BadLines::Fail,
    ));
    assert_eq!(
        kinds(&ds),
        pairs(&[
            ("user", "index(user)"),
            ("item", "index(item)"),
            ("plays", "real"),
            ("date", "time"),
            ("ts2", "real"),
        ])
    );
}

#[test]
fn a_column_list_replaces_the_header() {
    let named = Spec {
        separator: Some(",".into()),
        header: true,
        columns: spec("who:index(user),what:index(item),_,ts:time,city,_:skip"),
        ..Spec::default()
    };
    let ds = ok(delimited::read(
        &fixture("ratings_header.csv"),
        &named,
        BadLines::Fail,
    ));
    assert_eq!(
        kinds(&ds),
        pairs(&[
            ("who", "index(user)"),
            ("what", "index(item)"),
            ("ts", "time"),
            ("city", "index(city)"),
        ])
    );
    assert_eq!(ds.user.as_deref(), Some("who"));
    assert_eq!(ds.target, None);

    let short = Spec {
        columns: spec("user,item"),
        ..named
    };
    let (file, line, message) = bad_line(delimited::read(
        &fixture("ratings_header.csv"),
        &short,
        BadLines::Fail,
    ));
    assert_eq!((file.as_str(), line), ("ratings_header.csv", 2));
    assert!(message.contains("header has 6 fields"), "{message}");
}

#[test]
fn without_a_header_columns_follow_movielens() {
    let ds = ok(delimited::read(
        &fixture("positional.tsv"),
        &Spec::default(),
        BadLines::Fail,
    ));
    assert_eq!(
        kinds(&ds),
        pairs(&[
            ("user", "index(user)"),
            ("item", "index(item)"),
            ("rating", "real")
        ])
    );
    assert_eq!(reals(&ds, "rating"), [1.0, 0.5, 2.5]);

    // `::`, detected as whitespace would fail, given explicitly it reads.
    let spec = Spec {
        separator: Some("::".into()),
        ..Spec::default()
    };
    let ds = ok(delimited::read(
        &fixture("ratings.dat"),
        &spec,
        BadLines::Fail,
    ));
    assert_eq!(
        kinds(&ds),
        pairs(&[
            ("user", "index(user)"),
            ("item", "index(item)"),
            ("rating", "real"),
            ("timestamp", "time"),
        ])
    );
    assert_eq!(raw_ids(&ds, "user"), ["1", "1", "2"]);
    assert_eq!(raw_ids(&ds, "item"), ["10", "20", "10"]);
    assert_eq!(ds.times(), Some(&[978300760, 978300761, 978302109][..]));

    let two = ok(delimited::read_str(
        "pairs",
        "a b\nb c\n",
        &Spec::default(),
        BadLines::Fail,
    ));
    assert_eq!(
        kinds(&two),
        pairs(&[("user", "index(user)"), ("item", "index(item)")])
    );
    assert_eq!(two.target, None);

    let (_, line, message) = bad_line(delimited::read_str(
        "wide",
        "\n1;2;3;4;5\n",
        &Spec::default(),
        BadLines::Fail,
    ));
    assert_eq!(line, 2);
    assert!(
        message.contains("5 fields per line") && message.contains("--columns"),
        "{message}"
    );
}

#[test]
fn separators_are_detected_from_the_first_line() {
    let read = |text: &str| {
        ok(delimited::read_str(
            "t",
            text,
            &Spec::default(),
            BadLines::Fail,
        ))
    };
    for text in ["a\tb c\t1\n", "a,b c,1\n", "a;b c;1\n"] {
        assert_eq!(raw_ids(&read(text), "item"), ["b c"], "{text:?}");
    }
    assert_eq!(raw_ids(&read("a  b  1\n"), "item"), ["b"]);
}

#[test]
fn bags_split_their_field() {
    let spec = Spec {
        separator: Some("\t".into()),
        header: false,
        columns: spec("user,item,tags:bag(tag)"),
        ..Spec::default()
    };
    let ds = ok(delimited::read_str(
        "tags.tsv",
        "u\ti\tfun|short\nv\ti\t\nu\tj\tshort| long \n",
        &spec,
        BadLines::Fail,
    ));
    assert_eq!(bag_row(&ds, "tags", 0), ["fun", "short"]);
    assert!(bag_row(&ds, "tags", 1).is_empty());
    assert_eq!(bag_row(&ds, "tags", 2), ["short", "long"]);
    assert_eq!(ds.domains["tag"].names(), ["fun", "short", "long"]);

    let clash = Spec {
        separator: Some("|".into()),
        ..spec
    };
    let message = invalid(delimited::read_str("x", "u|i|a\n", &clash, BadLines::Fail));
    assert!(message.contains("bag separator `|`"), "{message}");
}

#[test]
fn bad_lines_are_located() {
    let (file, line, message) = bad_line(delimited::read(
        &fixture("bad_count.csv"),
        &Spec::default(),
        BadLines::Fail,
    ));
    assert_eq!((file.as_str(), line), ("bad_count.csv", 4));
    assert_eq!(
        message,
        "expected 3 fields separated by \",\" (user, item, rating), found 4"
    );

    let header = Spec {
        header: true,
        ..Spec::default()
    };
    let (file, line, message) = bad_line(delimited::read(
        &fixture("bad_number.csv"),
        &header,
        BadLines::Fail,
    ));
    assert_eq!((file.as_str(), line), ("bad_number.csv", 4));
    assert_eq!(message, "column rating: expected a number, found \"x\"");

    // The error's text shows the whole path and the line.
    let err = delimited::read(&fixture("bad_number.csv"), &header, BadLines::Fail);
    let shown = err.map(|_| ()).unwrap_err().to_string();
    assert!(
        shown.ends_with("bad_number.csv:4: column rating: expected a number, found \"x\""),
        "{shown}"
    );

    let cases = [
        (
            "u,i,NaN\n",
            "column rating: expected a finite number, found \"NaN\"",
        ),
        (
            "u,i,inf\n",
            "column rating: expected a finite number, found \"inf\"",
        ),
        (
            "u,i,1,yesterday\n",
            "column timestamp: expected a time in integer unix seconds, found \"yesterday\"",
        ),
        ("u,,1\n", "column item: an empty id"),
    ];
    for (text, expected) in cases {
        let (file, line, message) = bad_line(delimited::read_str(
            "mem.csv",
            text,
            &Spec::default(),
            BadLines::Fail,
        ));
        assert_eq!(
            (file.as_str(), line, message.as_str()),
            ("mem.csv", 1, expected)
        );
    }
}

#[test]
fn skipped_bad_lines_are_counted_and_leave_no_ids() {
    let header = Spec {
        header: true,
        ..Spec::default()
    };
    let ds = ok(delimited::read(
        &fixture("bad_number.csv"),
        &header,
        BadLines::Skip,
    ));
    assert_eq!(ds.skipped, 2);
    assert_eq!(ds.len(), 3);
    assert_eq!(raw_ids(&ds, "user"), ["a", "b", "e"]);
    // `c` and `d` were on skipped lines.
    assert_eq!(ds.domains["user"].names(), ["a", "b", "e"]);

    let ds = ok(delimited::read(
        &fixture("bad_count.csv"),
        &Spec::default(),
        BadLines::Skip,
    ));
    assert_eq!((ds.len(), ds.skipped), (2, 1));
}

#[test]
fn empty_files_are_errors() {
    let message = invalid(delimited::read(
        &fixture("empty.csv"),
        &Spec::default(),
        BadLines::Fail,
    ));
    assert!(message.contains("empty.csv: no rows"), "{message}");
    let header = Spec {
        header: true,
        ..Spec::default()
    };
    invalid(delimited::read(
        &fixture("empty.csv"),
        &header,
        BadLines::Fail,
    ));
    invalid(delimited::read_str(
        "h",
        "user,item\n# nothing\n",
        &header,
        BadLines::Fail,
    ));
    let message = invalid(delimited::read_str(
        "all-bad",
        "a,b,x\n",
        &Spec::default(),
        BadLines::Skip,
    ));
    assert!(
        message.contains("no rows (1 bad lines skipped)"),
        "{message}"
    );
}

#[test]
fn missing_files_name_their_path() {
    match delimited::read(&fixture("no-such.csv"), &Spec::default(), BadLines::Fail) {
        Err(DataError::Io { path, .. }) => assert!(path.ends_with("no-such.csv")),
        other => panic!("expected an io error, got {other:?}"),
    }
}

// MovieLens.

#[test]
fn a_movielens_fold_loads_with_all_its_columns() {
    let (ds, split) = ok(movielens::load_fold(
        &fixture("ml-mini"),
        "u1",
        BadLines::Fail,
    ));
    assert_eq!(ds.name, "ml-100k u1");
    assert_eq!(
        kinds(&ds),
        pairs(&[
            ("user", "index(user)"),
            ("item", "index(item)"),
            ("rating", "real"),
            ("timestamp", "time"),
            ("age", "real"),
            ("age_group", "index(age_group)"),
            ("gender", "index(gender)"),
            ("occupation", "index(occupation)"),
            ("genres", "bag(genre)"),
            ("year", "index(year)"),
        ])
    );
    assert_eq!(ds.user.as_deref(), Some("user"));
    assert_eq!(ds.item.as_deref(), Some("item"));
    assert_eq!(ds.target.as_deref(), Some("rating"));
    assert_eq!(ds.time.as_deref(), Some("timestamp"));
    assert_eq!(split.train, (0..6).collect::<Vec<_>>());
    assert_eq!(split.test, vec![6, 7]);
    assert_eq!(ds.skipped, 0);

    // Rows are base then test, in file order.
    assert_eq!(
        raw_ids(&ds, "user"),
        ["1", "1", "2", "2", "3", "3", "4", "4"]
    );
    assert_eq!(
        raw_ids(&ds, "item"),
        ["1", "2", "1", "4", "3", "4", "2", "1"]
    );
    assert_eq!(
        reals(&ds, "rating"),
        [5.0, 3.0, 4.0, 2.0, 1.0, 5.0, 4.0, 3.0]
    );
    assert_eq!(ds.times().map(|t| t[7]), Some(881250956));

    // Demographics follow the user, genres and year the film.
    assert_eq!(
        reals(&ds, "age"),
        [24.0, 24.0, 53.0, 53.0, 17.0, 17.0, 56.0, 56.0]
    );
    assert_eq!(
        raw_ids(&ds, "age_group"),
        ["18-24", "18-24", "50-55", "50-55", "under 18", "under 18", "56+", "56+"]
    );
    assert_eq!(ds.domains["age_group"].names(), movielens::AGE_GROUPS);
    assert_eq!(raw_ids(&ds, "gender")[..3], ["M", "M", "F"]);
    assert_eq!(
        raw_ids(&ds, "occupation")[2..5],
        ["other", "other", "student"]
    );
    assert_eq!(ds.domains["occupation"].len(), 5);
    assert_eq!(ds.domains["genre"].len(), 19);
    assert_eq!(
        bag_row(&ds, "genres", 0),
        ["Animation", "Children's", "Comedy"]
    );
    assert_eq!(bag_row(&ds, "genres", 1), ["Drama", "Romance"]);
    assert_eq!(bag_row(&ds, "genres", 3), ["Action", "Adventure", "Sci-Fi"]);
    assert_eq!(bag_row(&ds, "genres", 4), ["unknown"]);
    assert_eq!(
        raw_ids(&ds, "year")[..5],
        ["1995", "1996", "1995", "1977", "unknown"]
    );
    assert_eq!(
        ds.domains["year"].names(),
        ["1977", "1995", "1996", "unknown"]
    );

    // Titles label the films; the Latin-1 byte 0xE9 is `é`.
    let items = &ds.domains["item"];
    assert_eq!(items.label(0), "Paper Boats (1995)");
    assert_eq!(items.label(1), "Le Café (1996)");
    assert_eq!(items.find("Star Road (1977)"), Some(3));
}

#[test]
fn movielens_id_maps_do_not_depend_on_the_fold() {
    let dir = fixture("ml-mini");
    let all = ok(movielens::load(&dir, BadLines::Fail));
    assert_eq!(all.name, "ml-100k");
    assert_eq!(all.len(), 8);
    let (u1, _) = ok(movielens::load_fold(&dir, "u1", BadLines::Fail));
    let (u2, split) = ok(movielens::load_fold(&dir, "u2", BadLines::Skip));
    assert_eq!(all.domains, u1.domains);
    assert_eq!(all.domains, u2.domains);
    // All users and films are interned even when they have no rating.
    assert_eq!(u2.domain_size("user"), 4);
    assert_eq!(u2.domain_size("item"), 4);
    assert_eq!(all.domains["user"].names(), ["1", "2", "3", "4"]);
    // u2.test has a rating by an unknown user, skipped.
    assert_eq!(u2.skipped, 1);
    assert_eq!((split.train.len(), split.test.len()), (5, 2));
}

#[test]
fn movielens_errors_name_the_file_and_line() {
    let dir = fixture("ml-mini");
    let (file, line, message) = bad_line(movielens::load_fold(&dir, "u2", BadLines::Fail));
    assert_eq!((file.as_str(), line), ("u2.test", 2));
    assert_eq!(message, "column user: user \"99\" is not listed in u.user");

    let message = invalid(movielens::load_fold(&dir, "u9", BadLines::Fail));
    assert!(message.contains("unknown MovieLens fold `u9`"), "{message}");
    assert!(message.contains("u1, u2, u3, u4, u5, ua, ub"), "{message}");

    match movielens::load_fold(&dir, "u3", BadLines::Fail) {
        Err(DataError::Io { path, .. }) => assert!(path.ends_with("ml-mini/u3.base")),
        other => panic!("expected an io error, got {other:?}"),
    }
    match movielens::load(&fixture("no-such-dir"), BadLines::Fail) {
        Err(e @ DataError::Io { .. }) => assert!(e.to_string().contains("no-such-dir"), "{e}"),
        other => panic!("expected an io error, got {other:?}"),
    }
}

// Last.fm.

#[test]
fn lastfm_loads_plays_and_artist_names() {
    let ds = ok(lastfm::load(&fixture("lastfm-mini"), BadLines::Fail));
    assert_eq!(ds.name, "lastfm-2k");
    assert_eq!(
        kinds(&ds),
        pairs(&[
            ("user", "index(user)"),
            ("item", "index(item)"),
            ("plays", "real")
        ])
    );
    assert_eq!(ds.user.as_deref(), Some("user"));
    assert_eq!(ds.item.as_deref(), Some("item"));
    assert_eq!(ds.target.as_deref(), Some("plays"));
    assert_eq!(ds.time, None);
    assert_eq!(raw_ids(&ds, "user"), ["2", "2", "3", "4"]);
    assert_eq!(raw_ids(&ds, "item"), ["51", "52", "51", "53"]);
    // No plays is kept.
    assert_eq!(reals(&ds, "plays"), [13883.0, 0.0, 120.0, 7.0]);
    let artists = &ds.domains["item"];
    assert_eq!(artists.label(0), "The Paper Kites");
    assert_eq!(artists.label(1), "No Such Band");
    // Artist 53 has no name; artist 99 has no plays and is not added.
    assert_eq!(artists.label(2), "53");
    assert_eq!(artists.len(), 3);
}

#[test]
fn lastfm_bad_plays_are_bad_lines() {
    let dir = fixture("lastfm-bad");
    let (file, line, message) = bad_line(lastfm::load(&dir, BadLines::Fail));
    assert_eq!((file.as_str(), line), ("user_artists.dat", 3));
    assert_eq!(
        message,
        "column plays: expected a play count of 0 or more, found \"-4\""
    );
    let ds = ok(lastfm::load(&dir, BadLines::Skip));
    assert_eq!((ds.len(), ds.skipped), (2, 2));
    // Without artists.dat, labels are the raw ids.
    assert_eq!(ds.domains["item"].label(0), "51");
}

// The real data sets, when they are beside the repository.

fn real_data(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipped: {} is not there", dir.display());
        None
    }
}

#[test]
fn real_movielens_100k() {
    let Some(dir) = real_data("ml-100k") else {
        return;
    };
    let all = ok(movielens::load(&dir, BadLines::Fail));
    assert_eq!(all.len(), 100_000);
    assert_eq!(all.domain_size("user"), 943);
    assert_eq!(all.domain_size("item"), 1682);
    assert_eq!(all.domain_size("genre"), 19);
    assert_eq!(all.domain_size("occupation"), 21);
    assert_eq!(all.skipped, 0);
    let items = &all.domains["item"];
    assert_eq!(items.label(0), "Toy Story (1995)");
    assert!(items.find("Misérables, Les (1995)").is_some());

    let (u1, split) = ok(movielens::load_fold(&dir, "u1", BadLines::Fail));
    assert_eq!((split.train.len(), split.test.len()), (80_000, 20_000));
    assert_eq!(u1.domains, all.domains);
}

#[test]
fn real_lastfm_2k() {
    let Some(dir) = real_data("lastfm-2k") else {
        return;
    };
    let ds = ok(lastfm::load(&dir, BadLines::Fail));
    assert_eq!(ds.len(), 92_834);
    assert_eq!(ds.domain_size("user"), 1892);
    assert_eq!(ds.skipped, 0);
}

// Hostile input: overlong lines, byte order marks, duplicated or absurd
// side data.

/// A copy of fixture directory `name` whose file `file` is replaced by `text`.
fn fixture_with(name: &str, file: &str, text: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.path().join(file), text).unwrap();
    dir
}

/// `text` written to a file `name` in a new directory.
fn file_with(name: &str, text: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn overlong_line(r: Result<impl std::fmt::Debug, DataError>) -> (String, usize) {
    let (file, line, message) = bad_line(r);
    assert!(
        message.contains("longer than 1048576 bytes"),
        "{file}:{line}: {message}"
    );
    (file, line)
}

#[test]
fn an_endless_line_stops_at_the_line_bound_with_its_location() {
    // `/dev/zero` has no line break: it was read until memory ran out.
    let zero = Path::new("/dev/zero");
    if zero.exists() {
        let r = delimited::read(zero, &Spec::default(), BadLines::Skip);
        assert_eq!(overlong_line(r), ("zero".to_string(), 1));
    }
    let mut text = b"user,item,rating\nu1,i1,4\n".to_vec();
    text.extend(std::iter::repeat_n(b'x', delimited::MAX_LINE_BYTES + 1));
    text.extend(b"\nu2,i2,3\n");
    let (_dir, path) = file_with("long.csv", &text);
    let r = delimited::read(&path, &Spec::default(), BadLines::Skip);
    assert_eq!(overlong_line(r), ("long.csv".to_string(), 3));
    let r = delimited::read_str(
        "long.csv",
        std::str::from_utf8(&text).unwrap(),
        &Spec::default(),
        BadLines::Skip,
    );
    assert_eq!(overlong_line(r), ("long.csv".to_string(), 3));

    // A line of exactly the bound is data.
    let mut text = b"user,item,note\nu1,i1,".to_vec();
    let room = delimited::MAX_LINE_BYTES - "u1,i1,".len();
    text.extend(std::iter::repeat_n(b'y', room));
    text.extend(b"\nu2,i2,z\n");
    let (_dir, path) = file_with("edge.csv", &text);
    let header = Spec {
        header: true,
        ..Spec::default()
    };
    assert_eq!(ok(delimited::read(&path, &header, BadLines::Fail)).len(), 2);

    // Every reader stops the same way.
    let mut long = b"userID\tartistID\tweight\n2\t51\t1\n".to_vec();
    long.extend(std::iter::repeat_n(b'7', delimited::MAX_LINE_BYTES + 1));
    let dir = fixture_with("lastfm-mini", "user_artists.dat", &long);
    let (file, line) = overlong_line(lastfm::load(dir.path(), BadLines::Skip));
    assert_eq!((file.as_str(), line), ("user_artists.dat", 3));
    let dir = fixture_with("lastfm-mini", "artists.dat", &long);
    let (file, line) = overlong_line(lastfm::load(dir.path(), BadLines::Skip));
    assert_eq!((file.as_str(), line), ("artists.dat", 3));
    let dir = fixture_with("ml-mini", "u.user", &long);
    let (file, line) = overlong_line(movielens::load(dir.path(), BadLines::Skip));
    assert_eq!((file.as_str(), line), ("u.user", 3));
    let (_dir, path) = file_with("reviews.json", &long);
    let (file, line) = overlong_line(recc_runtime::data::amazon::load(&path, BadLines::Skip));
    assert_eq!((file.as_str(), line), ("reviews.json", 3));
}

#[test]
fn a_byte_order_mark_is_no_part_of_the_first_field() {
    let text = "\u{feff}user,item,rating\nu1,i1,4\nu2,i1,3\n";
    let header = Spec {
        header: true,
        ..Spec::default()
    };
    let (_dir, path) = file_with("bom.csv", text.as_bytes());
    for ds in [
        ok(delimited::read(&path, &header, BadLines::Fail)),
        ok(delimited::read_str(
            "bom.csv",
            text,
            &header,
            BadLines::Fail,
        )),
    ] {
        assert_eq!(ds.columns[0].name, "user");
        assert_eq!(ds.user.as_deref(), Some("user"));
        assert_eq!(ds.target.as_deref(), Some("rating"));
    }
    // Without a header the first id is clean.
    let (_dir, path) = file_with("bom.tsv", "\u{feff}196\t242\t3\n186\t302\t3\n".as_bytes());
    let ds = ok(delimited::read(&path, &Spec::default(), BadLines::Fail));
    assert_eq!(raw_ids(&ds, "user"), ["196", "186"]);

    let users = std::fs::read(fixture("ml-mini/u.user")).unwrap();
    let dir = fixture_with("ml-mini", "u.user", &[b"\xEF\xBB\xBF", &users[..]].concat());
    let ds = ok(movielens::load(dir.path(), BadLines::Fail));
    assert_eq!(ds.domains["user"].names(), ["1", "2", "3", "4"]);

    let plays = std::fs::read(fixture("lastfm-mini/user_artists.dat")).unwrap();
    let dir = fixture_with(
        "lastfm-mini",
        "user_artists.dat",
        &[b"\xEF\xBB\xBF", &plays[..]].concat(),
    );
    assert_eq!(
        ok(lastfm::load(dir.path(), BadLines::Fail)),
        ok(lastfm::load(&fixture("lastfm-mini"), BadLines::Fail))
    );

    let reviews = std::fs::read(fixture("amazon/reviews.json")).unwrap();
    let (_dir, path) = file_with("reviews.json", &[b"\xEF\xBB\xBF", &reviews[..]].concat());
    let amazon = recc_runtime::data::amazon::load;
    assert_eq!(
        ok(amazon(&path, BadLines::Fail)).dataset.columns,
        ok(amazon(&fixture("amazon/reviews.json"), BadLines::Fail))
            .dataset
            .columns
    );
}

#[test]
fn side_files_list_each_id_once() {
    let users = std::fs::read_to_string(fixture("ml-mini/u.user")).unwrap();
    let twice = format!("{users}2|60|M|retired|99999\n");
    let dir = fixture_with("ml-mini", "u.user", twice.as_bytes());
    let (file, line, message) = bad_line(movielens::load(dir.path(), BadLines::Fail));
    assert_eq!((file.as_str(), line), ("u.user", users.lines().count() + 1));
    assert_eq!(message, "user \"2\" is listed twice");
    // Skipped, the first listing counts.
    let ds = ok(movielens::load(dir.path(), BadLines::Skip));
    assert_eq!(ds.skipped, 1);
    assert_eq!(ds.domains["user"].len(), 4);

    let occupations = std::fs::read_to_string(fixture("ml-mini/u.occupation")).unwrap();
    let first = occupations.lines().next().unwrap();
    let twice = format!("{occupations}{first}\n");
    let dir = fixture_with("ml-mini", "u.occupation", twice.as_bytes());
    let (file, _, message) = bad_line(movielens::load(dir.path(), BadLines::Fail));
    assert_eq!(file, "u.occupation");
    assert_eq!(message, format!("occupation {first:?} is listed twice"));

    let genres = std::fs::read_to_string(fixture("ml-mini/u.genre")).unwrap();
    let first = genres.lines().next().unwrap().split('|').next().unwrap();
    let n = genres.lines().filter(|l| !l.trim().is_empty()).count();
    let twice = format!("{genres}{first}|{n}\n");
    let dir = fixture_with("ml-mini", "u.genre", twice.as_bytes());
    let (file, _, message) = bad_line(movielens::load(dir.path(), BadLines::Fail));
    assert_eq!(file, "u.genre");
    assert_eq!(message, format!("genre {first:?} is listed twice"));

    let artists = std::fs::read_to_string(fixture("lastfm-mini/artists.dat")).unwrap();
    let twice = format!("{artists}51\tThe Other Kites\thttp://x\thttp://y\n");
    let dir = fixture_with("lastfm-mini", "artists.dat", twice.as_bytes());
    let (file, line, message) = bad_line(lastfm::load(dir.path(), BadLines::Fail));
    assert_eq!(
        (file.as_str(), line),
        ("artists.dat", artists.lines().count() + 1)
    );
    assert_eq!(message, "artist \"51\" is listed twice");
    let ds = ok(lastfm::load(dir.path(), BadLines::Skip));
    assert_eq!(ds.domains["item"].label(0), "The Paper Kites");
}

#[test]
fn absurd_numbers_are_bad_lines() {
    let users = std::fs::read_to_string(fixture("ml-mini/u.user")).unwrap();
    for age in ["1e20", "151", "-1", "inf", "NaN"] {
        let text = users.replacen("|24|", &format!("|{age}|"), 1);
        let dir = fixture_with("ml-mini", "u.user", text.as_bytes());
        let (file, line, message) = bad_line(movielens::load(dir.path(), BadLines::Fail));
        assert_eq!((file.as_str(), line), ("u.user", 1), "{age}");
        assert!(message.starts_with("column age: "), "{message}");
    }
    let text = users.replacen("|24|", "|150|", 1);
    let dir = fixture_with("ml-mini", "u.user", text.as_bytes());
    ok(movielens::load(dir.path(), BadLines::Fail));

    // A number beyond a 32-bit float would be an infinity in native code.
    let header = Spec {
        header: true,
        ..Spec::default()
    };
    let r = delimited::read_str(
        "big.csv",
        "user,item,rating\nu1,i1,4\nu2,i1,1e39\n",
        &header,
        BadLines::Fail,
    );
    let (file, line, message) = bad_line(r);
    assert_eq!((file.as_str(), line), ("big.csv", 3));
    assert!(message.contains("beyond the range"), "{message}");
    let ds = ok(delimited::read_str(
        "big.csv",
        "user,item,rating\nu1,i1,4\nu2,i1,-3e38\n",
        &header,
        BadLines::Fail,
    ));
    assert_eq!(reals(&ds, "rating"), [4.0, -3e38]);
}

// Strict, helpful reading: kinds, folders, headers, whole columns, gzip,
// binary garbage.

use recc_runtime::data::spec::{DataSpec, LoadOptions};

fn load_spec(text: &str) -> Result<Dataset, String> {
    let spec: DataSpec = text.parse()?;
    spec.load(&LoadOptions::default(), None)
        .map(|(d, _)| d)
        .map_err(|e| e.to_string())
}

#[test]
fn a_misspelt_kind_is_named_with_the_closest() {
    let e = load_spec("ml100k:some/dir").unwrap_err();
    assert!(e.contains("unknown kind `ml100k`"), "{e}");
    assert!(e.contains("did you mean ml-100k?"), "{e}");
    let e = load_spec("lastfn:x").unwrap_err();
    assert!(e.contains("did you mean lastfm?"), "{e}");
}

#[test]
fn a_missing_folder_or_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let e = load_spec(&format!("ml-100k:{}", missing.display())).unwrap_err();
    assert!(
        e.contains(&format!("there is no folder {}", missing.display())),
        "{e}"
    );
    let e = load_spec(&format!("ml-100k:{}", dir.path().display())).unwrap_err();
    assert!(e.contains("the folder has no u.data"), "{e}");
    std::fs::write(dir.path().join("u.data"), "1\t1\t5\t0\n").unwrap();
    let e = load_spec(&format!("ml-100k:{}", dir.path().display())).unwrap_err();
    assert!(e.contains("the folder has no u.user"), "{e}");
    let e = load_spec(&format!("lastfm:{}", dir.path().display())).unwrap_err();
    assert!(e.contains("the folder has no user_artists.dat"), "{e}");
    let e = load_spec(&format!("csv:{}", dir.path().join("r.csv").display())).unwrap_err();
    assert!(e.contains("there is no such file"), "{e}");
}

#[test]
fn a_header_line_is_detected_and_noted() {
    let ds = ok(delimited::read_str(
        "h.csv",
        "customer,product,stars\n1,10,5\n2,11,3\n",
        &Spec::default(),
        BadLines::Fail,
    ));
    assert_eq!(ds.len(), 2);
    assert_eq!(reals(&ds, "stars"), vec![5.0, 3.0]);
    assert_eq!(ds.notes.len(), 1);
    assert!(ds.notes[0].contains("as a header"), "{:?}", ds.notes);
    // Known names alone make a header, even over columns of words.
    let ds = ok(delimited::read_str(
        "h.csv",
        "user,item\nann,film\nbob,book\n",
        &Spec::default(),
        BadLines::Fail,
    ));
    assert_eq!(raw_ids(&ds, "user"), vec!["ann", "bob"]);
}

#[test]
fn an_undetected_header_that_fails_suggests_header() {
    // Columns of words: nothing says the first line is not data.
    let columns = spec("a,b,score:real");
    let (_, line, message) = bad_line(delimited::read_str(
        "w.csv",
        "first,second,third\nx,y,z\n",
        &Spec {
            columns,
            ..Spec::default()
        },
        BadLines::Fail,
    ));
    assert_eq!(line, 1);
    assert!(message.contains("pass --header"), "{message}");
}

#[test]
fn column_kinds_are_inferred_from_every_row() {
    let mut text = String::from("user,item,rating,zone\n");
    for k in 0..150 {
        text.push_str(&format!("u{k},i{k},3,{k}\n"));
    }
    text.push_str("u0,i0,4,north\n");
    let spec = Spec {
        header: true,
        ..Spec::default()
    };
    let ds = ok(delimited::read_str("z.csv", &text, &spec, BadLines::Fail));
    assert_eq!(ds.column("zone").unwrap().data.kind(), "index(zone)");
    assert_eq!(raw_ids(&ds, "zone").last().unwrap(), "north");
}

#[test]
fn declared_kinds_win_over_inference() {
    let spec = Spec {
        header: true,
        declared: [("customer".to_string(), index("user"))].into(),
        ..Spec::default()
    };
    let ds = ok(delimited::read_str(
        "c.csv",
        "customer,product,stars\n7,10,5\n8,11,3\n",
        &spec,
        BadLines::Fail,
    ));
    assert_eq!(ds.column("customer").unwrap().data.kind(), "index(user)");
    assert_eq!(ds.user.as_deref(), Some("customer"));
    assert_eq!(raw_ids(&ds, "customer"), vec!["7", "8"]);
}

#[test]
fn a_header_can_declare_its_columns() {
    let ds = ok(delimited::read_str(
        "t.tsv",
        "user\titem\trating\tgenres:bag(genre)\tyear:index\tt:time\nu1\ti1\t4\tA|B\t1998\t5\n",
        &Spec::default(),
        BadLines::Fail,
    ));
    assert_eq!(
        kinds(&ds),
        pairs(&[
            ("user", "index(user)"),
            ("item", "index(item)"),
            ("rating", "real"),
            ("genres", "bag(genre)"),
            ("year", "index(year)"),
            ("t", "time"),
        ])
    );
    assert_eq!(bag_row(&ds, "genres", 0), vec!["A", "B"]);
    assert_eq!(ds.time.as_deref(), Some("t"));
}

#[test]
fn written_split_files_read_back_into_the_same_columns() {
    let data = recc_runtime::synth::generate(&recc_runtime::synth::SynthConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.tsv");
    let rows: Vec<usize> = (0..200).collect();
    ok(data.write_tsv(&path, &rows));
    let back = ok(delimited::read(&path, &Spec::default(), BadLines::Fail));
    assert_eq!(kinds(&back), kinds(&data));
    assert_eq!(back.len(), rows.len());
    assert_eq!(
        (back.user.as_deref(), back.item.as_deref()),
        (data.user.as_deref(), data.item.as_deref())
    );
    assert_eq!(
        (back.target.as_deref(), back.time.as_deref()),
        (data.target.as_deref(), data.time.as_deref())
    );
    for r in [0, 17, 199] {
        assert_eq!(bag_row(&back, "genres", r), bag_row(&data, "genres", r));
    }
    assert_eq!(raw_ids(&back, "year")[..200], raw_ids(&data, "year")[..200]);
}

#[test]
fn gzip_files_are_read() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv.gz");
    let file = std::fs::File::create(&path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gz.write_all(b"user,item,rating\n1,2,5\n3,4,1\n").unwrap();
    gz.finish().unwrap();
    let ds = ok(delimited::read(&path, &Spec::default(), BadLines::Fail));
    assert_eq!(reals(&ds, "rating"), vec![5.0, 1.0]);
    assert_eq!(raw_ids(&ds, "user"), vec!["1", "3"]);
}

#[test]
fn binary_garbage_is_never_echoed() {
    // An escape sequence in a header and a long field of binary bytes.
    let header = "\u{1b}]0;pwned\u{7},\u{1b}[31mred,x\n1,2,3\n";
    let spec = Spec {
        header: true,
        ..Spec::default()
    };
    let (_, _, message) = bad_line(delimited::read_str("g.csv", header, &spec, BadLines::Fail));
    assert!(!message.contains('\u{1b}'), "{message:?}");
    let long = format!("1,2,{}\n", "\u{9b}x".repeat(5000));
    let columns = spec_columns("u,i,r:real");
    let (_, _, message) = bad_line(delimited::read_str(
        "g.csv",
        &long,
        &columns,
        BadLines::Fail,
    ));
    assert!(!message.contains('\u{9b}'), "{message:?}");
    assert!(message.len() < 300, "{} bytes: {message:?}", message.len());
    assert!(message.contains("cut"), "{message}");
}

fn spec_columns(text: &str) -> Spec {
    Spec {
        columns: spec(text),
        ..Spec::default()
    }
}
