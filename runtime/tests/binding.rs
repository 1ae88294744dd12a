//! Binding hostile data and flags: time buckets over any `i64` times,
//! duplicated or colliding FM features, and bag inputs over a domain the
//! data already numbers. Each must be a clear error or an example whose
//! every index lies inside its domain, never an index past a table.

use rand::SeedableRng;
use recc_compiler::ir::SlotKind;
use recc_runtime::bind::{BindOptions, SlotColumn, MAX_TIME_BUCKETS};
use recc_runtime::data::delimited::{self, Spec};
use recc_runtime::data::{BadLines, Dataset};
use recc_runtime::synth::{self, SynthConfig};
use recc_runtime::train::{self, Session, SessionError, Silent, TrainConfig};
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn model_file(name: &str) -> recc_compiler::model::Model {
    let text = std::fs::read_to_string(models_dir().join(name)).expect("model file");
    model(name, &text)
}

fn model(name: &str, text: &str) -> recc_compiler::model::Model {
    let compiled = recc_compiler::compile(name, text);
    assert!(!compiled.has_errors(), "{}", compiled.render_diagnostics());
    compiled.model.expect("a checked model")
}

fn csv(text: &str) -> Dataset {
    let spec = Spec {
        header: true,
        ..Spec::default()
    };
    delimited::read_str("data.csv", text, &spec, BadLines::Fail).unwrap_or_else(|e| panic!("{e}"))
}

fn all_rows(data: &Dataset) -> Vec<usize> {
    (0..data.len()).collect()
}

fn bind_error(r: Result<Session, SessionError>) -> String {
    match r {
        Err(SessionError::Bind(e)) => e.to_string(),
        Err(other) => panic!("expected a binding error, got {other}"),
        Ok(_) => panic!("expected a binding error, the model bound"),
    }
}

fn features(names: &[&str]) -> BindOptions {
    BindOptions {
        features: names.iter().map(|n| n.to_string()).collect(),
        ..BindOptions::default()
    }
}

/// Encode every row as the native trainer does and check that each index
/// and bag member lies inside the domain the slot reads.
fn assert_examples_in_domain(session: &Session, data: &Dataset) {
    let b = &session.binding;
    let mut out = b.columns();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    b.encode_rows(data, &all_rows(data), &mut rng, true, &mut out);
    let sizes = b.domain_sizes();
    for (slot, column) in session.gradient.slots.iter().zip(&out.slots) {
        let (domain, values) = match (&slot.kind, column) {
            (SlotKind::Index(d), SlotColumn::Index(v))
            | (SlotKind::Negative { domain: d, .. }, SlotColumn::Index(v)) => (d, v),
            (SlotKind::Bag { domain, .. }, SlotColumn::Bag { members, .. }) => (domain, members),
            _ => continue,
        };
        let size = sizes[domain.index()];
        if let Some(v) = values.iter().find(|&&v| v as usize >= size) {
            panic!("slot `{}` reads {v} of a domain of {size}", slot.name);
        }
    }
}

// Time buckets.

#[test]
fn times_whose_difference_overflows_are_refused_naming_the_column() {
    let data = csv("user,item,rating,timestamp\n\
         u1,i1,4,-9223372036854775808\n\
         u2,i2,3,-1\n\
         u1,i2,5,0\n");
    let m = model_file("temporal_mf.rec");
    let e = bind_error(Session::new(
        &m,
        &data,
        &all_rows(&data),
        &BindOptions::default(),
    ));
    assert!(e.contains("time column `timestamp`"), "{e}");
    assert!(e.contains("from -9223372036854775808 to 0"), "{e}");
    assert!(e.contains("604800 s"), "{e}");
    assert!(e.contains(&format!("at most {MAX_TIME_BUCKETS}")), "{e}");
}

#[test]
fn a_range_of_more_buckets_than_the_bound_is_refused() {
    // 0 and 9e18 would make 1.5e13 weeks, interned one by one.
    let data = csv("user,item,rating,timestamp\nu1,i1,4,0\nu2,i2,3,9000000000000000000\n");
    let m = model_file("temporal_mf.rec");
    let e = bind_error(Session::new(
        &m,
        &data,
        &all_rows(&data),
        &BindOptions::default(),
    ));
    assert!(e.contains("from 0 to 9000000000000000000"), "{e}");
    assert!(e.contains("14880952380953 buckets"), "{e}");

    // Seconds mixed with milliseconds: 2.6 million weeks.
    let data = csv("user,item,rating,timestamp\nu1,i1,4,1600000000\nu2,i2,3,1600000000000\n");
    let e = bind_error(Session::new(
        &m,
        &data,
        &all_rows(&data),
        &BindOptions::default(),
    ));
    assert!(e.contains("milliseconds"), "{e}");
}

#[test]
fn times_that_look_like_mixed_units_are_noted_and_seconds_are_not() {
    let m = model_file("temporal_mf.rec");
    // Two years in milliseconds: 104,000 "weeks", within the bound.
    let data = csv("user,item,rating,timestamp\n\
         u1,i1,4,1600000000000\n\
         u2,i2,3,1663000000000\n\
         u1,i2,5,1630000000000\n");
    let s = Session::new(&m, &data, &all_rows(&data), &BindOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.binding.notes.len(), 1, "{:?}", s.binding.notes);
    let note = &s.binding.notes[0];
    assert!(note.contains("time column `timestamp`"), "{note}");
    assert!(note.contains("milliseconds"), "{note}");
    assert_examples_in_domain(&s, &data);

    let data = synth::generate(&SynthConfig::default());
    let s = Session::new(&m, &data, &all_rows(&data), &BindOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.binding.notes.is_empty(), "{:?}", s.binding.notes);
}

#[test]
fn extreme_times_within_the_bound_train_with_every_bucket_in_its_domain() {
    // The whole i64 range in months is too many; near its ends, a few are fine.
    let data = csv("user,item,rating,timestamp\n\
         u1,i1,4,9223372036854775807\n\
         u2,i2,3,9223372036854000000\n\
         u1,i2,5,9223372036854775000\n");
    let m = model_file("temporal_mf.rec");
    let rows = all_rows(&data);
    let s =
        Session::new(&m, &data, &rows, &BindOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.binding.domain_sizes()[s.binding.domain_of("week").unwrap()],
        2
    );
    assert_examples_in_domain(&s, &data);
    let mut c = TrainConfig::from_fit(&m.fit);
    c.epochs = 2;
    let t = train::train(&s, &data, &rows, &[], &c, &mut Silent).unwrap_or_else(|e| panic!("{e}"));
    assert!(t.history.iter().all(|h| h.loss.is_finite()));
}

#[test]
fn a_bucket_input_bound_to_another_time_column_counts_that_columns_range() {
    // The time role is `ts`, a day long; `later` spans ten weeks.
    let spec = Spec {
        header: true,
        columns: delimited::parse_columns("user,item,rating:real,ts:time,later:time").unwrap(),
        ..Spec::default()
    };
    let data = delimited::read_str(
        "data.csv",
        "user,item,rating,ts,later\n\
         u1,i1,4,1600000000,1600000000\n\
         u2,i2,3,1600050000,1606000000\n\
         u1,i2,5,1600080000,1603000000\n",
        &spec,
        BadLines::Fail,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.time.as_deref(), Some("ts"));
    let m = model_file("temporal_mf.rec");
    let bind = BindOptions {
        explicit: [("t".to_string(), "later".to_string())].into(),
        ..BindOptions::default()
    };
    let s = Session::new(&m, &data, &all_rows(&data), &bind).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.binding.domain_sizes()[s.binding.domain_of("week").unwrap()],
        10
    );
    assert_examples_in_domain(&s, &data);
}

// FM features.

#[test]
fn a_feature_column_named_twice_is_refused() {
    let data = synth::generate(&SynthConfig::default());
    let m = model_file("fm.rec");
    for names in [
        &["user", "user"][..],
        &["user", "user", "user", "user"],
        &["item", "gender", "item"],
    ] {
        let e = bind_error(Session::new(&m, &data, &all_rows(&data), &features(names)));
        let twice = names
            .iter()
            .find(|n| names.iter().filter(|m| m == n).count() > 1);
        assert_eq!(
            e,
            format!("--features names column `{}` twice", twice.unwrap())
        );
    }
    let s = Session::new(
        &m,
        &data,
        &all_rows(&data),
        &features(&["user", "item", "genres"]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_examples_in_domain(&s, &data);
}

#[test]
fn features_whose_names_collide_are_refused() {
    // `a` = `b=x12` and `a=b` = `x12` are both the feature `a=b=x12`.
    let data = csv("user,item,rating,a,a=b\n\
         u30,i19,1,b=x23,x12\n\
         u31,i19,2,b=x12,x12\n");
    let m = model_file("fm.rec");
    let e = bind_error(Session::new(
        &m,
        &data,
        &all_rows(&data),
        &BindOptions::default(),
    ));
    assert!(e.contains("feature `a=b=x12`"), "{e}");
    assert!(e.contains("column `a` and column `a=b`"), "{e}");
    // Without one of the two, every feature is its own.
    let s = Session::new(
        &m,
        &data,
        &all_rows(&data),
        &features(&["user", "item", "a"]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_examples_in_domain(&s, &data);
    // The single row that does not collide binds in full.
    let data = csv("user,item,rating,a,a=b\nu30,i19,1,b=x23,x12\n");
    let s = Session::new(&m, &data, &all_rows(&data), &BindOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_examples_in_domain(&s, &data);
}

// Bag inputs over an index domain.

const BAG_OF_USERS: &str = "model bag_of_users
use stdlib.losses
input u: user
input h: bag(user)
input r: real
param w[user]: real
let R = w[u] + sum(w[h])
loss mse(R, r)
";

#[test]
fn a_feature_bag_never_renumbers_a_domain_of_the_data() {
    let data = synth::generate(&SynthConfig::default());
    let m = model("bag_of_users.rec", BAG_OF_USERS);
    for bind in [BindOptions::default(), features(&["gender"])] {
        let e = bind_error(Session::new(&m, &data, &all_rows(&data), &bind));
        assert!(e.contains("input `h: bag(user)`"), "{e}");
        assert!(e.contains("the domain of the data's column `user`"), "{e}");
        assert!(e.contains("bag(feature)"), "{e}");
    }
    // A derived time domain cannot hold features either.
    let weeks = BAG_OF_USERS
        .replace("bag(user)", "bag(week)")
        .replace("sum(w[h])", "sum(n[h])")
        .replace(
            "param w[user]: real",
            "param w[user]: real\nparam n[week]: real",
        );
    let m = model("bag_of_weeks.rec", &weeks);
    let e = bind_error(Session::new(
        &m,
        &data,
        &all_rows(&data),
        &BindOptions::default(),
    ));
    assert!(e.contains("derived from time"), "{e}");
}

#[test]
fn an_index_input_over_a_bag_or_a_near_domain_says_what_to_write() {
    let data = synth::generate(&SynthConfig::default());
    let rows = all_rows(&data);
    let genre = model(
        "g.rec",
        "use stdlib.losses\ninput u: user\ninput i: item\ninput r: real\ninput g: genre\n\
         param z[genre]: real\nparam p[user]: vec(2)\nparam q[item]: vec(2)\n\
         let R(u, i) = z[g] + dot(p[u], q[i])\nloss mse(R(u, i), r)\n",
    );
    let e = bind_error(Session::new(&genre, &data, &rows, &BindOptions::default()));
    assert!(
        e.contains("column `genres` holds a bag of `genre` per row: declare `input g: bag(genre)`"),
        "{e}"
    );
    let users = model(
        "u.rec",
        "use stdlib.losses\ninput u: users\ninput i: item\ninput r: real\n\
         param p[users]: vec(2)\nparam q[item]: vec(2)\n\
         let R(u, i) = dot(p[u], q[i])\nloss mse(R(u, i), r)\n",
    );
    let e = bind_error(Session::new(&users, &data, &rows, &BindOptions::default()));
    assert!(e.contains("did you mean `input u: user`?"), "{e}");
}

#[test]
fn a_bound_column_of_numeric_ids_is_read_as_ids() {
    use recc_runtime::experiment::{prepare, DataRequest};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.csv");
    let mut text = String::from("customer,product,stars\n");
    for k in 0..200 {
        text.push_str(&format!("{},{},{}\n", k % 20 + 100, k % 30, k % 5 + 1));
    }
    std::fs::write(&path, text).unwrap();
    let mf = model_file("biased_mf.rec");
    let req = DataRequest {
        data: path.display().to_string(),
        header: true,
        bind: vec!["u=customer".into(), "i=product".into()],
        ..DataRequest::default()
    };
    let prepared = prepare(&req, Some(&mf), 1, false).unwrap_or_else(|e| panic!("{e}"));
    let data = &prepared.data;
    assert_eq!(data.column("customer").unwrap().data.kind(), "index(user)");
    assert_eq!(data.column("product").unwrap().data.kind(), "index(item)");
    assert_eq!(data.domain_size("user"), 20);
    let options = recc_runtime::experiment::bind_options(&req).unwrap();
    let split = &prepared.splits[0].1;
    assert!(Session::new(&mf, data, &split.train, &options).is_ok());
}

/// A factorization machine's features are grouped by the column they come
/// from, in the order of `--features`; no other domain is grouped.
#[test]
fn feature_members_are_grouped_by_their_column() {
    let data = synth::generate(&SynthConfig {
        users: 30,
        items: 20,
        ratings_per_user: 5,
        ..SynthConfig::default()
    });
    let model = model_file("fm.rec");
    let session = Session::new(
        &model,
        &data,
        &all_rows(&data),
        &features(&["item", "user", "gender"]),
    )
    .unwrap();
    let b = &session.binding;
    let feature = b.domains.iter().position(|(n, _)| n == "feature").unwrap();
    let groups = b
        .member_groups(feature)
        .expect("the feature domain is grouped");
    let (_, ids) = &b.domains[feature];
    assert_eq!(groups.len(), ids.len());
    for (f, &g) in groups.iter().enumerate() {
        let label = ids.label(f as u32);
        let column = ["item", "user", "gender"][g as usize];
        assert!(
            label.starts_with(&format!("{column}=")),
            "{label} in group {g}"
        );
    }
    assert_eq!(*groups.last().unwrap(), 2);
    // One column: a single group, as for any other domain.
    let one = Session::new(&model, &data, &all_rows(&data), &features(&["item"])).unwrap();
    assert_eq!(one.binding.member_groups(feature), None);
}
