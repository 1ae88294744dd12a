//! Data lines: random and mutated files through every reader of
//! `runtime/src/data/` (delimited with and without `--columns`, MovieLens
//! `u.data`/`u.item`/`u.user` and its folds, Last.fm, Amazon reviews, the
//! co-occurrence views and the tokenizer, tree shapes), then through a split
//! and, when the case asks for it, a few training steps and predictions of
//! the models that fit the columns (where time buckets, feature bags and
//! bound indices are made from the data). Every step must end in `Ok` or a
//! clean error; a panic or a crash is a finding.
//!
//! A case is one text file: directive lines `%% key value` and the files,
//! each after `%% file NAME`:
//!
//! ```text
//! %% reader csv
//! %% columns user,item,rating:real,ts:time
//! %% train
//! %% file ratings.csv
//! u1,i1,4,881250949
//! ```

use crate::driver::{Finding, Harness, Stages};
use crate::mutate;
use rand::rngs::StdRng;
use rand::Rng;
use recc_runtime::bind::BindOptions;
use recc_runtime::data::delimited::{self, Spec};
use recc_runtime::data::spec::{DataSpec, LoadOptions, Source, View};
use recc_runtime::data::{text, BadLines, ColumnData, Dataset};
use recc_runtime::predict::Predictor;
use recc_runtime::split::SplitSpec;
use recc_runtime::train::{self, Backend, Session, Silent, TrainConfig};
use std::path::Path;
use std::str::FromStr;

/// Rows a training case trains on.
const TRAIN_ROWS: usize = 100;

macro_rules! fixture {
    ($p:literal) => {
        include_bytes!(concat!("../../runtime/tests/fixtures/", $p)).as_slice()
    };
}

/// The readers' own test files: where mutation starts.
const ML: &[(&str, &[u8])] = &[
    ("u.data", fixture!("ml-mini/u.data")),
    ("u.item", fixture!("ml-mini/u.item")),
    ("u.user", fixture!("ml-mini/u.user")),
    ("u.genre", fixture!("ml-mini/u.genre")),
    ("u.occupation", fixture!("ml-mini/u.occupation")),
    ("u1.base", fixture!("ml-mini/u1.base")),
    ("u1.test", fixture!("ml-mini/u1.test")),
];
const LASTFM: &[(&str, &[u8])] = &[
    ("user_artists.dat", fixture!("lastfm-mini/user_artists.dat")),
    ("artists.dat", fixture!("lastfm-mini/artists.dat")),
];
const AMAZON: &[u8] = fixture!("amazon/reviews.json");
const CSV: &[&[u8]] = &[
    fixture!("ratings.dat"),
    fixture!("ratings_header.csv"),
    fixture!("positional.tsv"),
    fixture!("bad_count.csv"),
    fixture!("bad_number.csv"),
];

/// `--columns` lists a case may carry.
const COLUMNS: &[&str] = &[
    "",
    "user,item,rating:real",
    "user,item,rating:real,ts:time",
    "user,item,rating:real,ts:time,genres:bag(genre,|)",
    "user:index(user),item:index(item),rating:real,_:skip",
    "user,item,rating:real,a,b:bag",
    "user,item,rating:real,f:bag(feature,;)",
    "index(user),index(item),real",
    "user,item,skip,ts:time",
];

/// Field values at the edges of what a reader parses.
const FIELDS: &[&str] = &[
    "",
    "-1",
    "0",
    "1",
    "5",
    "4294967295",
    "4294967296",
    "-9223372036854775808",
    "9223372036854775807",
    "18446744073709551616",
    "9e18",
    "1e20",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "0x10",
    " 5 ",
    "ü",
    "\u{feff}u1",
    "a=b",
    "a|b|c",
    "||",
    "=",
    "x=",
    "\u{1b}[31mred",
    "\"quoted, with comma\"",
    "u1",
    "i1",
    "881250949",
    "881250949000",
];

/// The parsed case.
#[derive(Default)]
struct Case {
    reader: String,
    view: String,
    bad_skip: bool,
    columns: Option<String>,
    sep: Option<String>,
    header: bool,
    train: bool,
    /// `--features` for the factorization machine; empty: every index and
    /// bag column.
    features: Option<String>,
    spec: Option<String>,
    files: Vec<(String, Vec<u8>)>,
}

fn parse_case(input: &[u8]) -> Case {
    let mut c = Case::default();
    for line in input.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"%% ") {
            let rest = String::from_utf8_lossy(rest);
            let (key, value) = rest.split_once(' ').unwrap_or((&rest, ""));
            match key {
                "reader" => c.reader = value.to_string(),
                "view" => c.view = value.to_string(),
                "bad" => c.bad_skip = value == "skip",
                "columns" => c.columns = Some(value.to_string()),
                "sep" => c.sep = Some(value.to_string()),
                "header" => c.header = true,
                "train" => c.train = true,
                "features" => c.features = Some(value.to_string()),
                "spec" => c.spec = Some(value.to_string()),
                "file" => c.files.push((value.to_string(), Vec::new())),
                _ => {}
            }
            continue;
        }
        if let Some((_, content)) = c.files.last_mut() {
            content.extend_from_slice(line);
            content.push(b'\n');
        }
    }
    c
}

fn write_case(c: &Case) -> Vec<u8> {
    let mut out = Vec::new();
    let mut directive = |k: &str, v: &str| {
        out.extend_from_slice(format!("%% {k} {v}\n").as_bytes());
    };
    directive("reader", &c.reader);
    if !c.view.is_empty() {
        directive("view", &c.view);
    }
    if c.bad_skip {
        directive("bad", "skip");
    }
    if let Some(v) = &c.columns {
        directive("columns", v);
    }
    if let Some(v) = &c.sep {
        directive("sep", v);
    }
    if c.header {
        directive("header", "");
    }
    if c.train {
        directive("train", "");
    }
    if let Some(v) = &c.features {
        directive("features", v);
    }
    if let Some(v) = &c.spec {
        directive("spec", v);
    }
    for (name, content) in &c.files {
        out.extend_from_slice(format!("%% file {name}\n").as_bytes());
        out.extend_from_slice(content);
        if !content.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out
}

pub struct DataHarness {
    /// Model sources by file name, for the training stage.
    models: Vec<(String, String)>,
}

impl Default for DataHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl DataHarness {
    pub fn new() -> DataHarness {
        let wanted = [
            "biased_mf.rec",
            "temporal_mf.rec",
            "fm.rec",
            "svdpp.rec",
            "bpr_mf.rec",
        ];
        let models = crate::named_model_sources()
            .into_iter()
            .filter(|(n, _)| wanted.contains(&n.as_str()))
            .collect();
        DataHarness { models }
    }
}

fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

/// Generated delimited lines: ids, ratings, timestamps, bags, with edge
/// values mixed in.
fn generated_lines(rng: &mut StdRng, sep: &str, fields: usize) -> Vec<u8> {
    let mut out = String::new();
    for _ in 0..rng.random_range(1..30) {
        let mut line = Vec::new();
        for f in 0..fields {
            let v = if rng.random_bool(0.1) {
                pick(rng, FIELDS).to_string()
            } else {
                match f {
                    0 => format!("u{}", rng.random_range(0..8)),
                    1 => format!("i{}", rng.random_range(0..8)),
                    2 => format!("{}", rng.random_range(1..=5)),
                    3 => format!("{}", 881_250_949 + rng.random_range(0..10_000_000i64)),
                    _ => format!("g{}|g{}", rng.random_range(0..4), rng.random_range(0..4)),
                }
            };
            line.push(v);
        }
        out.push_str(&line.join(sep));
        out.push('\n');
    }
    out.into_bytes()
}

/// Line edits: delete, duplicate, swap, replace a field with an edge value.
fn mutate_lines(content: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = content
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    for _ in 0..rng.random_range(1..=4) {
        if lines.is_empty() {
            lines.push(pick(rng, FIELDS).as_bytes().to_vec());
            continue;
        }
        let k = rng.random_range(0..lines.len());
        match rng.random_range(0..6) {
            0 => {
                lines.remove(k);
            }
            1 => {
                let l = lines[k].clone();
                lines.insert(rng.random_range(0..=lines.len()), l);
            }
            2 => {
                let j = rng.random_range(0..lines.len());
                lines.swap(k, j);
            }
            _ => {
                // Replace one field (split at any usual separator).
                let line = String::from_utf8_lossy(&lines[k]).into_owned();
                let sep = ["\t", "::", ",", "|", ";", " "]
                    .into_iter()
                    .find(|s| line.contains(s))
                    .unwrap_or(",");
                let mut fields: Vec<String> = line.split(sep).map(String::from).collect();
                let f = rng.random_range(0..fields.len().max(1));
                let value = pick(rng, FIELDS).to_string();
                if f < fields.len() {
                    fields[f] = value;
                } else {
                    fields.push(value);
                }
                lines[k] = fields.join(sep).into_bytes();
            }
        }
    }
    let mut out = lines.join(&b'\n');
    out.push(b'\n');
    if rng.random_bool(0.2) {
        let rounds = rng.random_range(1..4);
        out = mutate::bytes(&out, rng, rounds);
    }
    out
}

/// Lines of JSON reviews with edge values in their fields.
fn generated_reviews(rng: &mut StdRng) -> Vec<u8> {
    let mut out = String::new();
    for _ in 0..rng.random_range(1..12) {
        let user = if rng.random_bool(0.1) {
            serde_json::Value::from(pick(rng, FIELDS))
        } else {
            serde_json::Value::from(format!("U{}", rng.random_range(0..5)))
        };
        let overall: serde_json::Value = match rng.random_range(0..8) {
            0 => "5".into(),
            1 => serde_json::Value::Null,
            2 => 1e300.into(),
            3 => (-1).into(),
            _ => (rng.random_range(1..=5) as f64).into(),
        };
        let time: serde_json::Value = match rng.random_range(0..8) {
            0 => i64::MIN.into(),
            1 => u64::MAX.into(),
            2 => "1300000000".into(),
            _ => (1_300_000_000 + rng.random_range(0..1_000_000i64)).into(),
        };
        let review = serde_json::json!({
            "reviewerID": user,
            "asin": format!("B{}", rng.random_range(0..6)),
            "reviewerName": pick(rng, FIELDS),
            "overall": overall,
            "summary": pick(rng, FIELDS),
            "reviewText": format!("{} strings {} tuner", pick(rng, FIELDS), pick(rng, FIELDS)),
            "unixReviewTime": time,
        });
        out.push_str(&review.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

impl Harness for DataHarness {
    fn name(&self) -> &'static str {
        "data"
    }

    fn extension(&self) -> &'static str {
        "case"
    }

    fn generate(&mut self, rng: &mut StdRng) -> Vec<u8> {
        let mut c = Case {
            bad_skip: rng.random_bool(0.3),
            train: rng.random_bool(0.4),
            ..Case::default()
        };
        if rng.random_bool(0.2) {
            let features = [
                "user,item",
                "user,user",
                "user,user,user,user",
                "item,a",
                "a,b",
            ];
            c.features = Some(pick(rng, &features).to_string());
        }
        match rng.random_range(0..10) {
            0..=3 => {
                c.reader = "csv".into();
                let columns = pick(rng, COLUMNS);
                if !columns.is_empty() {
                    c.columns = Some(if rng.random_bool(0.2) {
                        mutate::text(columns, rng, &[",", ":", "(", ")", "bag", "time", "real"])
                    } else {
                        columns.to_string()
                    });
                }
                let sep = pick(rng, &["\t", ",", "::", ";", " "]);
                if rng.random_bool(0.3) {
                    c.sep = Some(pick(rng, &["\t", ",", "::", ";", "", "|"]).to_string());
                }
                let content = if rng.random_bool(0.4) {
                    CSV[rng.random_range(0..CSV.len())].to_vec()
                } else {
                    let fields = rng.random_range(2..=5);
                    let mut body = Vec::new();
                    if rng.random_bool(0.4) {
                        c.header = true;
                        let names = ["user", "item", "rating", "timestamp", "a"];
                        let mut h: Vec<&str> = names[..fields].to_vec();
                        if rng.random_bool(0.3) {
                            h.push(pick(rng, &["a", "a=b", "user", "", "genre:bag"]));
                        }
                        body.extend_from_slice(h.join(sep).as_bytes());
                        body.push(b'\n');
                    }
                    body.extend(generated_lines(rng, sep, fields));
                    body
                };
                let content = if rng.random_bool(0.6) {
                    mutate_lines(&content, rng)
                } else {
                    content
                };
                c.files.push(("ratings.csv".into(), content));
                c.view = pick(rng, &["", "", "item2vec"]).into();
            }
            4 | 5 => {
                c.reader = pick(rng, &["ml-100k", "ml-100k", "ml-fold"]).into();
                let target = rng.random_range(0..ML.len());
                for (k, (name, content)) in ML.iter().enumerate() {
                    let content = if k == target || rng.random_bool(0.1) {
                        mutate_lines(content, rng)
                    } else {
                        content.to_vec()
                    };
                    c.files.push((name.to_string(), content));
                }
                c.view = pick(rng, &["", "", "item2vec"]).into();
            }
            6 => {
                c.reader = "lastfm".into();
                for (name, content) in LASTFM {
                    let content = if rng.random_bool(0.6) {
                        mutate_lines(content, rng)
                    } else {
                        content.to_vec()
                    };
                    c.files.push((name.to_string(), content));
                }
            }
            7 | 8 => {
                c.reader = "amazon".into();
                let content = if rng.random_bool(0.5) {
                    mutate_lines(AMAZON, rng)
                } else {
                    let r = generated_reviews(rng);
                    if rng.random_bool(0.3) {
                        mutate::bytes(&r, rng, 2)
                    } else {
                        r
                    }
                };
                c.files.push(("reviews.json".into(), content));
                c.view = pick(rng, &["", "text", "item2vec"]).into();
            }
            _ => {
                c.reader = "spec".into();
                let spec = pick(
                    rng,
                    &[
                        "tree:3x3",
                        "tree:2x5",
                        "tree:0x3",
                        "tree:1x1",
                        "tree:99999x99999",
                        "tree:3x",
                        "builtin+item2vec",
                        "csv:x+text",
                        "lastfm:",
                        "ml-100k:x+foo",
                        "tree:18446744073709551615x2",
                    ],
                );
                c.spec = Some(if rng.random_bool(0.4) {
                    mutate::text(spec, rng, &["x", "0", "9", ":", "+", "tree"])
                } else {
                    spec.to_string()
                });
                c.files.push((
                    "words.txt".into(),
                    pick(rng, FIELDS)
                        .repeat(rng.random_range(1..4))
                        .into_bytes(),
                ));
                c.train = false;
            }
        }
        write_case(&c)
    }

    fn run(&mut self, input: &[u8], stages: &mut Stages) -> Result<(), Finding> {
        let c = parse_case(input);
        let mut stage = |s: &'static str| *stages.entry(s).or_default() += 1;
        // The tokenizer reads any text.
        for (_, content) in &c.files {
            let _ = text::tokenize(&String::from_utf8_lossy(content));
        }
        let dir =
            tempfile::tempdir().map_err(|e| Finding::new("harness: tempdir", e.to_string()))?;
        for (name, content) in &c.files {
            // Only plain names: a case must not write outside its folder.
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                continue;
            }
            let _ = std::fs::write(dir.path().join(name), content);
        }
        let first = c
            .files
            .first()
            .map_or_else(|| dir.path().join("missing"), |(n, _)| dir.path().join(n));
        let view = match c.view.as_str() {
            "item2vec" => View::ItemSequences,
            "text" => View::ReviewText,
            _ => View::Rows,
        };
        let mut fold = None;
        let source = match c.reader.as_str() {
            "csv" => Source::Delimited(first),
            "ml-100k" => Source::MovieLens(dir.path().to_path_buf()),
            "ml-fold" => {
                fold = Some("u1");
                Source::MovieLens(dir.path().to_path_buf())
            }
            "lastfm" => Source::LastFm(dir.path().to_path_buf()),
            "amazon" => Source::Amazon(first),
            "spec" => {
                let text = c.spec.clone().unwrap_or_default();
                match DataSpec::from_str(&text) {
                    Ok(spec) => {
                        stage("spec parsed");
                        // Only generated trees load: a path in a spec names
                        // nothing in the case's folder.
                        match spec.source {
                            Source::Tree(_) if spec.view == View::Rows => spec.source,
                            _ => return Ok(()),
                        }
                    }
                    Err(_) => {
                        stage("spec refused");
                        return Ok(());
                    }
                }
            }
            _ => return Ok(()),
        };
        let delimited = match &c.columns {
            Some(text) => match delimited::parse_columns(text) {
                Ok(columns) => columns,
                Err(_) => {
                    stage("columns refused");
                    return Ok(());
                }
            },
            None => Vec::new(),
        };
        let options = LoadOptions {
            bad_lines: if c.bad_skip {
                BadLines::Skip
            } else {
                BadLines::Fail
            },
            delimited: Spec {
                separator: c.sep.clone().filter(|s| !s.is_empty()),
                header: c.header,
                columns: delimited,
                ..Spec::default()
            },
            window: 3,
            min_count: 1,
        };
        let spec = DataSpec { source, view };
        let data = match spec.load(&options, fold) {
            Ok((data, _)) => data,
            Err(e) => {
                let _ = e.to_string();
                stage("refused by a reader");
                return Ok(());
            }
        };
        stage(match c.reader.as_str() {
            "csv" => "loaded: delimited",
            "ml-100k" | "ml-fold" => "loaded: movielens",
            "lastfm" => "loaded: lastfm",
            "amazon" => "loaded: amazon",
            _ => "loaded: tree",
        });
        if view != View::Rows {
            stage("loaded: a co-occurrence view");
        }
        if let Err(e) = data.validate() {
            return Err(Finding::new(
                "loaded data fails its own validation",
                e.to_string(),
            ));
        }
        for split in ["random:0.2", "user:0.3", "last:1", "kfold:3"] {
            if let Ok(s) = SplitSpec::from_str(split) {
                let _ = s.apply(&data, 7);
            }
        }
        let _ = text::cooccurrence(&text::item_sequences(&data), 2, None);
        stage("split");
        if c.train {
            self.train(&data, c.features.as_deref(), &mut stage);
        }
        Ok(())
    }
}

impl DataHarness {
    /// A few steps of every model the data binds to, then predictions.
    fn train(&self, data: &Dataset, features: Option<&str>, stage: &mut impl FnMut(&'static str)) {
        let rows: Vec<usize> = (0..data.len().min(TRAIN_ROWS)).collect();
        let bags: Vec<String> = data
            .columns
            .iter()
            .filter(|c| matches!(c.data, ColumnData::Index { .. } | ColumnData::Bag { .. }))
            .map(|c| c.name.clone())
            .collect();
        for (name, source) in &self.models {
            let compiled = recc_compiler::compile(name, source);
            let Some(model) = compiled.model.as_ref() else {
                continue;
            };
            let mut options = BindOptions::default();
            if name == "fm.rec" {
                options.features = match features {
                    Some(f) => f.split(',').map(String::from).collect(),
                    None => bags.clone(),
                };
            }
            let Ok(session) = Session::new(model, data, &rows, &options) else {
                continue;
            };
            stage("bound");
            let mut config = TrainConfig::from_fit(&model.fit);
            config.epochs = 1;
            config.batch = 1;
            config.threads = 1;
            config.early_stopping = 0;
            config.backend = Backend::Jit;
            let Ok(trained) = train::train(&session, data, &rows, &[], &config, &mut Silent) else {
                continue;
            };
            stage("trained");
            let p = Predictor::new(&session, &trained.params);
            let few: Vec<usize> = rows.iter().copied().take(20).collect();
            let _ = p.rating(data, &few);
            let _ = p.recommend(data, Some(0), 5, &[]);
            let _ = p.recommend(data, None, 5, &[]);
            stage("predicted");
        }
    }
}

/// A case as text, for the tests' own inputs.
pub fn case(reader: &str, directives: &[(&str, &str)], files: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("%% reader {reader}\n");
    for (k, v) in directives {
        out.push_str(&format!("%% {k} {v}\n"));
    }
    for (name, content) in files {
        out.push_str(&format!("%% file {name}\n{content}"));
        if !content.ends_with('\n') {
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// Whether `path` holds a case (its first line is a directive).
pub fn is_case(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"%% "))
}
