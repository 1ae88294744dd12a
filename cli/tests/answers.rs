//! Model files answer on their own, from any directory, and measure
//! honestly: `predict`, `recommend` and `similar` need only the file;
//! `eval` on data read in another order binds by id; test rows the model
//! was trained on are left out, and a split of nothing else is refused.

mod common;
use common::{recc_in, Run};
use std::path::Path;

fn ok(r: Run, what: &str) -> String {
    assert_eq!(r.code, 0, "{what}: {}{}", r.stdout, r.stderr);
    r.stdout
}

/// A command's JSON answer without `model_file`, the one field that names
/// where the file was asked from.
fn answer(stdout: String) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
    v.as_object_mut().map(|o| o.remove("model_file"));
    v
}

fn model(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name)
        .display()
        .to_string()
}

/// Ratings of 30 users on 40 items, one per line, times increasing.
fn ratings() -> Vec<String> {
    let mut lines = Vec::new();
    let mut t = 1_000_000_000u64;
    for u in 1..=30u32 {
        for i in 1..=40u32 {
            if (u * 7 + i * 3) % 5 < 2 {
                t += 60;
                let r = 1 + (u + 2 * i) % 5;
                lines.push(format!("{u},{i},{r},{t}"));
            }
        }
    }
    lines
}

const COLUMNS: &str = "user,item,rating:real,ts:time";

#[test]
fn a_model_answers_from_its_file_alone_after_its_data_is_gone() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("ratings.csv"), ratings().join("\n") + "\n").unwrap();
    let train = [
        "train",
        &model("biased_mf.rec"),
        "--data",
        "csv:ratings.csv",
        "--columns",
        COLUMNS,
        "--epochs",
        "3",
        "-q",
        "-o",
        "m.recm",
    ];
    ok(recc_in(work.path(), &train), "train");
    let ask: [&[&str]; 3] = [
        &["predict", "M", "--user", "3", "--item", "5", "--item", "7"],
        &["recommend", "M", "--user", "3", "-k", "5"],
        &["similar", "M", "--item", "5", "-k", "3"],
    ];
    let answer = |dir: &Path, file: &str| -> Vec<String> {
        ask.iter()
            .map(|args| {
                let args: Vec<&str> = args
                    .iter()
                    .map(|a| if *a == "M" { file } else { a })
                    .collect();
                ok(recc_in(dir, &args), &args.join(" "))
            })
            .collect()
    };
    let before = answer(work.path(), "m.recm");

    // The model moves away and its data is gone: the same answers, from `/`.
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("m.recm");
    std::fs::rename(work.path().join("m.recm"), &moved).unwrap();
    std::fs::remove_file(work.path().join("ratings.csv")).unwrap();
    let after = answer(Path::new("/"), &moved.display().to_string());
    assert_eq!(before, after);
    assert!(before[1].starts_with("top 5 for user 3:"), "{}", before[1]);
}

#[test]
fn eval_on_data_in_another_order_matches_ids_by_name() {
    let work = tempfile::tempdir().unwrap();
    let lines = ratings();
    std::fs::write(work.path().join("ratings.csv"), lines.join("\n") + "\n").unwrap();
    let mut reversed = lines.clone();
    reversed.reverse();
    std::fs::write(work.path().join("reversed.csv"), reversed.join("\n") + "\n").unwrap();
    let data = |file: &str| {
        [
            "--data".to_string(),
            format!("csv:{file}"),
            "--columns".into(),
            COLUMNS.into(),
            "--split".into(),
            "last:2".into(),
        ]
    };
    let mut train = vec![
        "train".to_string(),
        model("biased_mf.rec"),
        "--epochs".into(),
        "3".into(),
        "-q".into(),
        "-o".into(),
        "m.recm".into(),
    ];
    train.extend(data("ratings.csv"));
    ok(recc_in(work.path(), &train), "train");
    let mut eval = vec!["eval".to_string(), "m.recm".into()];
    eval.extend(data("ratings.csv"));
    let same = ok(recc_in(work.path(), &eval), "eval");
    let mut eval_reversed = vec!["eval".to_string(), "m.recm".into()];
    eval_reversed.extend(data("reversed.csv"));
    let r = recc_in(work.path(), &eval_reversed);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("ids differ"), "{}", r.stderr);
    // The last two rows of each user are found whatever the order, and
    // score the same.
    assert_eq!(r.stdout, same);
    // And `predict` reads data elsewhere when asked, matched the same way.
    let p = ["predict", "m.recm", "--user", "3", "--item", "5"];
    let mut p_data: Vec<String> = p.iter().map(|s| s.to_string()).collect();
    p_data.extend([
        "--data".into(),
        "csv:reversed.csv".into(),
        "--columns".into(),
        COLUMNS.into(),
    ]);
    assert_eq!(
        ok(recc_in(work.path(), &p), "predict"),
        ok(recc_in(work.path(), &p_data), "predict --data")
    );
}

#[test]
fn eval_leaves_out_test_rows_the_model_was_trained_on_and_refuses_when_that_is_all() {
    let work = tempfile::tempdir().unwrap();
    let lines = ratings();
    std::fs::write(work.path().join("ratings.csv"), lines.join("\n") + "\n").unwrap();
    let flags = |split: &str| {
        [
            "--data".to_string(),
            "csv:ratings.csv".into(),
            "--columns".into(),
            COLUMNS.into(),
            "--split".into(),
            split.into(),
        ]
    };
    let mut train = vec![
        "train".to_string(),
        model("biased_mf.rec"),
        "--epochs".into(),
        "3".into(),
        "-q".into(),
        "-o".into(),
        "m.recm".into(),
    ];
    train.extend(flags("last:1"));
    ok(recc_in(work.path(), &train), "train");

    // Each user's last two rows: the last was a test row, the other a training row.
    let mut eval = vec!["eval".to_string(), "m.recm".into(), "--json".into()];
    eval.extend(flags("last:2"));
    let out = ok(recc_in(work.path(), &eval), "eval last:2");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["excluded_rows"], 30, "{out}");
    assert_eq!(v["test_rows"], 30, "{out}");
    let mut eval_text = vec!["eval".to_string(), "m.recm".into()];
    eval_text.extend(flags("last:2"));
    let r = recc_in(work.path(), &eval_text);
    assert!(
        r.stderr.contains("left out 30 of the 60 test rows"),
        "{}",
        r.stderr
    );

    // Data holding only training rows: nothing honest to measure.
    let trained_only: Vec<&String> = {
        let mut last_of = std::collections::BTreeMap::new();
        for (k, l) in lines.iter().enumerate() {
            last_of.insert(l.split(',').next().unwrap().to_string(), k);
        }
        let last: std::collections::BTreeSet<usize> = last_of.values().copied().collect();
        lines
            .iter()
            .enumerate()
            .filter(|(k, _)| !last.contains(k))
            .map(|(_, l)| l)
            .collect()
    };
    let text: Vec<&str> = trained_only.iter().map(|s| s.as_str()).collect();
    std::fs::write(work.path().join("train-only.csv"), text.join("\n") + "\n").unwrap();
    let r = recc_in(
        work.path(),
        &[
            "eval",
            "m.recm",
            "--data",
            "csv:train-only.csv",
            "--columns",
            COLUMNS,
            "--split",
            "last:1",
        ],
    );
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("all 30 test rows of this split are rows the model was trained on"),
        "{}",
        r.stderr
    );
}

#[test]
fn recommend_leaves_out_test_items_too_unless_include_seen() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("ratings.csv"), ratings().join("\n") + "\n").unwrap();
    ok(
        recc_in(
            work.path(),
            &[
                "train",
                &model("biased_mf.rec"),
                "--data",
                "csv:ratings.csv",
                "--columns",
                COLUMNS,
                "--split",
                "last:3",
                "--epochs",
                "2",
                "-q",
                "-o",
                "m.recm",
            ],
        ),
        "train",
    );
    let ids = |out: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        v["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["item"].as_str().unwrap().to_string())
            .collect()
    };
    let user_items: std::collections::BTreeSet<String> = ratings()
        .iter()
        .filter(|l| l.starts_with("3,"))
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect();
    let all = ids(&ok(
        recc_in(
            work.path(),
            &["recommend", "m.recm", "--user", "3", "-k", "100", "--json"],
        ),
        "recommend",
    ));
    assert_eq!(all.len(), 40 - user_items.len());
    assert!(all.iter().all(|i| !user_items.contains(i)), "{all:?}");
    let with_seen = ids(&ok(
        recc_in(
            work.path(),
            &[
                "recommend",
                "m.recm",
                "--user",
                "3",
                "-k",
                "100",
                "--json",
                "--include-seen",
            ],
        ),
        "recommend --include-seen",
    ));
    assert_eq!(with_seen.len(), 40);
}

#[test]
fn a_tree_model_never_recommends_a_node_to_itself() {
    let work = tempfile::tempdir().unwrap();
    ok(
        recc_in(
            work.path(),
            &[
                "train",
                &model("poincare_tree.rec"),
                "--data",
                "tree:2x3",
                "--epochs",
                "3",
                "-q",
                "-o",
                "t.recm",
            ],
        ),
        "train",
    );
    // Nodes are `n`, `n.0`, `n.0.1`, ...; a node is nearest to itself.
    for node in ["n", "n.0", "n.1.0", "n.0.0.0"] {
        for seen in [None, Some("--include-seen")] {
            let mut args = vec!["recommend", "t.recm", "--user", node, "-k", "100", "--json"];
            args.extend(seen);
            let r = recc_in(work.path(), &args);
            assert!(!r.stderr.contains("not in the data"), "{}", r.stderr);
            let out = ok(r, "recommend");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let items: Vec<&str> = v["recommendations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["item"].as_str().unwrap())
                .collect();
            assert!(!items.is_empty());
            assert!(!items.contains(&node), "{node}: {items:?}");
        }
    }
}

/// The data, a user, an item and a node or item for `similar` of each
/// model of `models/` in the test below.
fn builtin_case(file: &str) -> (&'static str, &'static str, &'static str) {
    match file {
        "word2vec_mf.rec" => ("builtin+item2vec", "i5", "i7"),
        "poincare_tree.rec" => ("tree:2x3", "n.0", "n.1"),
        _ => ("builtin", "u1", "i5"),
    }
}

#[test]
fn every_model_answers_the_same_from_its_moved_file_as_from_its_data() {
    let mut files: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../models"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".rec"))
            .collect();
    files.sort();
    assert!(files.len() >= 19, "{files:?}");
    let work = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    for file in &files {
        let (data, user, item) = builtin_case(file);
        let name = format!("{file}m");
        // One pass of whichever solver the model's `fit` block names.
        let text = std::fs::read_to_string(model(file)).unwrap();
        let passes = if text.contains("solver: als") {
            "--sweeps"
        } else {
            "--epochs"
        };
        ok(
            recc_in(
                work.path(),
                &[
                    "train",
                    &model(file),
                    "--data",
                    data,
                    passes,
                    "1",
                    "-q",
                    "-o",
                    &name,
                ],
            ),
            &format!("train {file}"),
        );
        let questions = |path: &str| -> Vec<Vec<String>> {
            let q: [&[&str]; 3] = [
                &[
                    "predict",
                    path,
                    "--user",
                    user,
                    "--item",
                    item,
                    "--item",
                    "no-such-item",
                    "--allow-unknown",
                    "--json",
                ],
                &["recommend", path, "--user", user, "-k", "5", "--json"],
                if file == "fm.rec" {
                    // A factorization machine's items are `column=value` features.
                    &[
                        "similar", path, "--domain", "feature", "--item", "item=i5", "-k", "3",
                        "--json",
                    ]
                } else {
                    &["similar", path, "--item", item, "-k", "3", "--json"]
                },
            ];
            q.iter()
                .map(|a| a.iter().map(|s| s.to_string()).collect())
                .collect()
        };
        // Bound to all of its data, where it was trained...
        let before: Vec<serde_json::Value> = questions(&name)
            .into_iter()
            .map(|mut q| {
                if q[0] != "similar" {
                    q.extend(["--data".to_string(), data.to_string()]);
                }
                answer(ok(
                    recc_in(work.path(), &q),
                    &format!("{file}: {}", q.join(" ")),
                ))
            })
            .collect();
        // ...and from the file alone, moved, from another directory.
        let moved = elsewhere.path().join(&name);
        std::fs::rename(work.path().join(&name), &moved).unwrap();
        let after: Vec<serde_json::Value> = questions(&moved.display().to_string())
            .into_iter()
            .map(|q| {
                answer(ok(
                    recc_in(Path::new("/"), &q),
                    &format!("{file}: {}", q.join(" ")),
                ))
            })
            .collect();
        assert_eq!(before, after, "{file}");
    }
}

/// ALS and Gibbs write ordinary model files: every command that reads one
/// answers from it as from an SGD model's, and the settings name the solver.
#[test]
fn models_fitted_by_als_and_gibbs_answer_every_command() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("ratings.csv"), ratings().join("\n") + "\n").unwrap();
    for (solver, counts) in [
        ("als", &["--sweeps", "3"][..]),
        ("gibbs", &["--samples", "4", "--burn-in", "2"][..]),
    ] {
        let file = format!("{solver}.recm");
        let model_path = model("biased_mf.rec");
        let mut train = vec![
            "train",
            &model_path,
            "--data",
            "csv:ratings.csv",
            "--columns",
            COLUMNS,
            "--solver",
            solver,
            "--json",
            "-o",
            &file,
        ];
        train.extend_from_slice(counts);
        let trained = ok(recc_in(work.path(), &train), "train");
        assert!(trained.contains("\"rmse\""), "{trained}");
        assert!(
            trained.contains(&format!("\"solver\": \"{solver}(")),
            "{trained}"
        );
        let out = work.path().join(format!("{solver}-export"));
        for args in [
            vec!["predict", &file, "--user", "3", "--item", "5"],
            vec!["recommend", &file, "--user", "3", "-k", "5"],
            vec!["similar", &file, "--item", "5", "-k", "3"],
            vec![
                "eval",
                &file,
                "--data",
                "csv:ratings.csv",
                "--columns",
                COLUMNS,
            ],
            vec!["export", &file, "-o", out.to_str().unwrap()],
        ] {
            ok(recc_in(work.path(), &args), &args.join(" "));
        }
    }
}
