//! Amazon reviews, tokenising, documents and co-occurrence counts.

use std::path::{Path, PathBuf};

use recc_runtime::data::amazon::{self, Reviews};
use recc_runtime::data::text::{
    cooccurrence, item_sequences, review_documents, tokenize, Document,
};
use recc_runtime::data::{BadLines, ColumnData, DataError, Dataset};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/amazon")
        .join(name)
}

fn reviews() -> Reviews {
    match amazon::load(&fixture("reviews.json"), BadLines::Fail) {
        Ok(r) => r,
        Err(e) => panic!("loading the fixture: {e}"),
    }
}

fn doc(anchor: Option<&str>, tokens: &[&str]) -> Document {
    Document {
        anchor: anchor.map(str::to_string),
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
    }
}

fn words(ws: &[&str]) -> Vec<String> {
    ws.iter().map(|w| w.to_string()).collect()
}

fn reals<'a>(d: &'a Dataset, name: &str) -> &'a [f64] {
    match d.column(name).map(|c| &c.data) {
        Some(ColumnData::Real(v)) => v,
        other => panic!("column `{name}` is not real: {other:?}"),
    }
}

/// The co-occurrence rows as (c token, x token, k).
fn rows(d: &Dataset) -> Vec<(String, String, f64)> {
    let tokens = &d.domains["token"];
    let (_, c) = d.indices("c").expect("c");
    let (_, x) = d.indices("x").expect("x");
    let k = reals(d, "k");
    (0..d.len())
        .map(|r| {
            (
                tokens.name(c[r]).to_string(),
                tokens.name(x[r]).to_string(),
                k[r],
            )
        })
        .collect()
}

#[test]
fn tokenize_cases() {
    assert_eq!(tokenize("Hello, World!"), words(&["hello", "world"]));
    assert_eq!(tokenize("don't stop"), words(&["dont", "stop"]));
    assert_eq!(
        tokenize("it\u{2019}s 'quoted' text"),
        words(&["its", "quoted", "text"])
    );
    assert_eq!(tokenize("rock'n'roll"), words(&["rocknroll"]));
    assert_eq!(
        tokenize("5-string bass, 24 frets"),
        words(&["5", "string", "bass", "24", "frets"])
    );
    assert_eq!(tokenize("well...better.I"), words(&["well", "better", "i"]));
    assert_eq!(tokenize("Ÿes ÇA"), words(&["ÿes", "ça"]));
    assert_eq!(tokenize(""), Vec::<String>::new());
    assert_eq!(tokenize(" ' -- ''"), Vec::<String>::new());
    assert_eq!(tokenize("end'"), words(&["end"]));
}

#[test]
fn amazon_load() {
    let r = reviews();
    let d = &r.dataset;
    assert_eq!(d.len(), 4);
    assert_eq!(d.skipped, 0);
    assert_eq!(d.target.as_deref(), Some("stars"));
    assert_eq!(d.user.as_deref(), Some("user"));
    assert_eq!(d.item.as_deref(), Some("item"));
    assert_eq!(d.time.as_deref(), Some("timestamp"));
    let kinds: Vec<String> = d.columns.iter().map(|c| c.data.kind()).collect();
    assert_eq!(kinds, ["index(user)", "index(item)", "real", "time"]);

    let users = &d.domains["user"];
    assert_eq!(users.names(), ["U1", "U2", "U3"]);
    assert_eq!(users.label(0), "Ann");
    assert_eq!(users.label(1), "U2", "no reviewerName: the raw id");
    assert_eq!(users.label(2), "Cy");
    assert_eq!(d.domains["item"].names(), ["B001", "B002"]);
    assert_eq!(d.users().expect("users").1, [0, 1, 0, 2]);
    assert_eq!(d.items().expect("items").1, [0, 0, 1, 1]);
    assert_eq!(reals(d, "stars"), [5.0, 2.0, 4.0, 3.0]);
    assert_eq!(
        d.times().expect("times"),
        [1393545600, 1363392000, 1300000000, 0]
    );
    assert_eq!(
        r.texts,
        [
            "Love them Great strings, don't break.",
            "Meh Strings broke fast.",
            "A fine tuner.",
            "Tuner works",
        ]
    );
}

#[test]
fn amazon_bad_line_is_located() {
    let path = fixture("bad.json");
    match amazon::load(&path, BadLines::Fail) {
        Err(DataError::BadLine { at, message }) => {
            assert_eq!(at.path, path);
            assert_eq!(at.line, 3);
            assert!(message.contains("JSON"), "{message}");
            let shown = DataError::BadLine { at, message }.to_string();
            assert!(shown.contains("bad.json:3: "), "{shown}");
        }
        other => panic!("expected a bad line, got {other:?}"),
    }
}

#[test]
fn amazon_skip_counts_bad_lines() {
    let r = match amazon::load(&fixture("bad.json"), BadLines::Skip) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    // Line 3 is not JSON, line 4 has no `overall`.
    assert_eq!(r.dataset.skipped, 2);
    assert_eq!(r.dataset.len(), 3);
    assert_eq!(r.texts.len(), 3);
    assert_eq!(r.dataset.domains["user"].names(), ["U1", "U2", "U5"]);
}

#[test]
fn amazon_missing_field_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("r.json");
    std::fs::write(&path, "{\"reviewerID\": \"U1\", \"overall\": 5.0}\n").expect("write");
    match amazon::load(&path, BadLines::Fail) {
        Err(DataError::BadLine { at, message }) => {
            assert_eq!(at.line, 1);
            assert!(message.contains("asin"), "{message}");
        }
        other => panic!("expected a bad line, got {other:?}"),
    }
    assert!(matches!(
        amazon::load(&dir.path().join("absent.json"), BadLines::Fail),
        Err(DataError::Io { .. })
    ));
}

#[test]
fn documents_from_reviews() {
    let r = reviews();
    let docs = review_documents(&r, 2);
    assert_eq!(
        docs,
        [
            doc(Some("ITEM_B001"), &["strings"]),
            doc(Some("ITEM_B001"), &["strings"]),
            doc(Some("ITEM_B002"), &["tuner"]),
            doc(Some("ITEM_B002"), &["tuner"]),
        ]
    );
    // Stop words go even when frequent enough: `a`, `them`.
    let docs = review_documents(&r, 1);
    assert_eq!(
        docs[0].tokens,
        words(&["love", "great", "strings", "dont", "break"])
    );
    assert_eq!(docs[2].tokens, words(&["fine", "tuner"]));
}

#[test]
fn cooccurrence_by_hand() {
    // Tokens in first-seen order: P=0, a=1, b=2, c=3, d=4.
    let docs = [
        doc(Some("P"), &["a", "b", "c", "a"]),
        doc(None, &["b", "d", "d"]),
    ];
    let d = match cooccurrence(&docs, 2, None) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(d.name, "co-occurrence (window 2)");
    assert_eq!(d.domains["token"].names(), ["P", "a", "b", "c", "d"]);
    assert_eq!(d.target.as_deref(), Some("k"));
    assert_eq!(d.user.as_deref(), Some("c"));
    assert_eq!(d.item.as_deref(), Some("x"));
    assert_eq!(d.time, None);
    // Anchor P with each token occurrence: a twice, b, c once.
    // a-b: 1 (positions 0,1) + 1/2 (positions 1,3) = 1.5
    // a-c: 1/2 (0,2) + 1 (2,3) = 1.5;  b-c: 1;  a-a at distance 3 is outside
    // the window and a token never pairs with itself.
    // b-d: 1 + 1/2 = 1.5; d-d is not a pair.
    let expected: Vec<(String, String, f64)> = [
        ("P", "a", 2.0),
        ("P", "b", 1.0),
        ("P", "c", 1.0),
        ("a", "P", 2.0),
        ("a", "b", 1.5),
        ("a", "c", 1.5),
        ("b", "P", 1.0),
        ("b", "a", 1.5),
        ("b", "c", 1.0),
        ("b", "d", 1.5),
        ("c", "P", 1.0),
        ("c", "a", 1.5),
        ("c", "b", 1.0),
        ("d", "b", 1.5),
    ]
    .iter()
    .map(|&(c, x, k)| (c.to_string(), x.to_string(), k))
    .collect();
    assert_eq!(rows(&d), expected);

    // Window 1: only neighbours; the anchor still pairs with all tokens.
    let d = cooccurrence(&docs, 1, None).expect("window 1");
    let ab = rows(&d)
        .into_iter()
        .find(|(c, x, _)| c == "a" && x == "b")
        .map(|r| r.2);
    assert_eq!(ab, Some(1.0));
    let ac = rows(&d).into_iter().find(|(c, x, _)| c == "a" && x == "c");
    assert_eq!(ac.map(|r| r.2), Some(1.0), "positions 2,3");
}

#[test]
fn cooccurrence_of_nothing_is_an_error() {
    for docs in [
        vec![],
        vec![doc(None, &["a"])],
        vec![doc(Some("a"), &["a", "a"])],
    ] {
        match cooccurrence(&docs, 2, None) {
            Err(DataError::Invalid(m)) => assert!(m.contains("co-occurrence (window 2)"), "{m}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

#[test]
fn item_sequences_follow_time() {
    let r = reviews();
    let seqs = item_sequences(&r.dataset);
    // U1 reviewed B001 (2014) in row 0 and B002 (2011) in row 2.
    assert_eq!(
        seqs,
        [
            doc(None, &["B002", "B001"]),
            doc(None, &["B001"]),
            doc(None, &["B002"]),
        ]
    );
    // Without a time column (or with equal times) rows keep their order.
    let mut undated = r.dataset.clone();
    undated.time = None;
    assert_eq!(item_sequences(&undated)[0], doc(None, &["B001", "B002"]));
    let mut tied = r.dataset.clone();
    for c in &mut tied.columns {
        if let ColumnData::Time(t) = &mut c.data {
            t.iter_mut().for_each(|x| *x = 7);
        }
    }
    assert_eq!(item_sequences(&tied)[0], doc(None, &["B001", "B002"]));
}

#[test]
fn item_tokens_take_item_labels() {
    let r = reviews();
    let mut items = r.dataset.domains["item"].clone();
    items.set_label(0, "Guitar strings");
    let d = cooccurrence(&item_sequences(&r.dataset), 3, Some(&items)).expect("co-occurrence");
    let tokens = &d.domains["token"];
    assert_eq!(tokens.names(), ["B002", "B001"]);
    assert_eq!(tokens.label(1), "Guitar strings");
    assert_eq!(tokens.label(0), "B002", "no label: the raw id");
    assert_eq!(tokens.find("Guitar strings"), Some(1));
    assert_eq!(
        rows(&d),
        [
            ("B002".to_string(), "B001".to_string(), 1.0),
            ("B001".to_string(), "B002".to_string(), 1.0),
        ]
    );
}

#[test]
fn deterministic() {
    let run = || {
        let r = reviews();
        let mut docs = review_documents(&r, 1);
        docs.extend(item_sequences(&r.dataset));
        cooccurrence(&docs, 3, None).expect("co-occurrence")
    };
    let a = run();
    assert!(!a.is_empty());
    assert_eq!(a, run());
}

#[test]
fn real_amazon_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/amazon-musical-instruments/reviews_5core.json");
    if !path.exists() {
        println!("skipped: {} is not there", path.display());
        return;
    }
    let r = match amazon::load(&path, BadLines::Fail) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(r.dataset.len(), 10261);
    assert_eq!(r.texts.len(), 10261);
    assert_eq!(r.dataset.skipped, 0);
    let docs = review_documents(&r, 5);
    assert_eq!(docs.len(), 10261);
    let d = cooccurrence(&docs, 5, None).expect("co-occurrence of the reviews");
    assert!(d.len() > 10_000, "{} pairs", d.len());
    assert!(d.domains["token"].get("guitar").is_some());
    assert!(d.domains["token"].get("the").is_none());
    let items = &r.dataset.domains["item"];
    let d = cooccurrence(&item_sequences(&r.dataset), 5, Some(items)).expect("item2vec");
    assert!(!d.is_empty());
}
