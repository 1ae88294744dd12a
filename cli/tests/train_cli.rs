//! `recc train` and the commands that use its model files (eval, cv,
//! predict, recommend, similar, export), run as a user runs them: the built
//! binary on the generated built-in data, one or two epochs, in a temp dir.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{path_str, recc, temp, workspace, Run};

/// Train biased MF for `epochs` into `dir/m.recm`, quietly.
fn train_biased_mf(dir: &Path, epochs: &str) -> PathBuf {
    let model = dir.join("m.recm");
    recc(&[
        "train",
        "models/biased_mf.rec",
        "--epochs",
        epochs,
        "-q",
        "-o",
        path_str(&model),
    ])
    .ok();
    model
}

/// The value of `name` in a metrics line such as `test: mae 0.80  rmse 0.97`.
fn metric(line: &str, name: &str) -> f64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or_else(|| panic!("no `{name} NUMBER` in {line:?}"))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A model file split into its JSON header, with the wall-clock seconds of
/// each epoch removed, and the raw bytes of its tables (without the
/// checksum that ends the file, which covers the timings too).
fn model_file_without_timings(path: &Path) -> (Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let magic = b"RECC-MODEL\n";
    assert!(bytes.starts_with(magic), "{}: no magic", path.display());
    let start = magic.len() + 4 + 8;
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[magic.len() + 4..start]);
    let end = start + u64::from_le_bytes(len) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[start..end])
        .unwrap_or_else(|e| panic!("{}: header: {e}", path.display()));
    if let Some(epochs) = header["history"].as_array_mut() {
        for e in epochs {
            e.as_object_mut().map(|o| o.remove("seconds"));
        }
    }
    (header, bytes[end..bytes.len() - 4].to_vec())
}

#[test]
fn train_writes_the_model_and_eval_reproduces_its_test_metrics() {
    let dir = temp();
    let model = dir.path().join("m.recm");
    let run = recc(&[
        "train",
        "models/biased_mf.rec",
        "--epochs",
        "2",
        "-o",
        path_str(&model),
    ])
    .ok();
    assert!(model.is_file(), "no model file written");
    let test = run
        .stdout
        .lines()
        .find(|l| l.starts_with("test: "))
        .unwrap_or_else(|| panic!("no test line:\n{}", run.stdout));
    let rmse = metric(test, "rmse");
    assert!(rmse.is_finite() && rmse > 0.0 && rmse < 2.0, "{test}");
    assert!(run.stdout.contains(&format!("wrote {}", model.display())));
    // The progress goes to stderr: the settings and one line per epoch.
    assert!(
        run.stderr.contains("training biased_mf on "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("epoch 2/2"), "{}", run.stderr);

    let eval = recc(&["eval", path_str(&model)]).ok();
    let line = eval.stdout.lines().next().unwrap_or_default();
    assert!(line.ends_with(test.trim_start_matches("test: ")), "{line}");
}

#[test]
fn train_json_has_model_metrics_history_and_output_and_eval_agrees_exactly() {
    let dir = temp();
    let model = dir.path().join("m.recm");
    let run = recc(&[
        "train",
        "models/biased_mf.rec",
        "--epochs",
        "2",
        "--json",
        "-o",
        path_str(&model),
    ])
    .ok();
    let v = run.json();
    assert_eq!(v["model"], "biased_mf");
    assert_eq!(v["output"], path_str(&model));
    assert_eq!(v["history"].as_array().map(Vec::len), Some(2), "{v:#}");
    let rmse = v["metrics"]["rmse"].as_f64().unwrap_or(f64::NAN);
    assert!(rmse.is_finite() && rmse > 0.0, "{v:#}");
    // A point prediction has no intervals to measure.
    assert!(v["metrics"].get("interval50").is_none(), "{v:#}");
    // --json keeps stderr free of progress.
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    let eval = recc(&["eval", path_str(&model), "--json"]).ok().json();
    assert_eq!(eval["metrics"]["rmse"].as_f64(), Some(rmse), "{eval:#}");
    assert_eq!(eval["metrics"]["mae"], v["metrics"]["mae"], "{eval:#}");
    assert_eq!(eval["test_rows"], v["test_rows"]);
}

#[test]
fn the_same_seed_trains_the_same_model_and_another_seed_does_not() {
    let dir = temp();
    let train = |name: &str, seed: &str| {
        let path = dir.path().join(name);
        let v = recc(&[
            "train",
            "models/biased_mf.rec",
            "--epochs",
            "1",
            "--seed",
            seed,
            "--json",
            "-o",
            path_str(&path),
        ])
        .ok()
        .json();
        (v["metrics"].clone(), model_file_without_timings(&path))
    };
    let (metrics_a, (header_a, tables_a)) = train("a.recm", "7");
    let (metrics_b, (header_b, tables_b)) = train("b.recm", "7");
    let (metrics_c, (_, tables_c)) = train("c.recm", "8");
    assert_eq!(metrics_a, metrics_b);
    assert_eq!(header_a, header_b);
    assert!(tables_a == tables_b, "same seed, different parameters");
    assert_ne!(metrics_a, metrics_c);
    assert!(tables_a != tables_c, "another seed, same parameters");
}

#[test]
fn predict_scores_a_pair_and_an_unknown_user_as_cold_start() {
    let dir = temp();
    let model = train_biased_mf(dir.path(), "1");
    let run = recc(&["predict", path_str(&model), "--user", "u1", "--item", "i1"]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"user\titem\tscore"), "{}", run.stdout);
    let row: Vec<&str> = lines
        .get(1)
        .copied()
        .unwrap_or_default()
        .split('\t')
        .collect();
    assert_eq!(row[..2], ["u1", "i1"], "{}", run.stdout);
    let score: f64 = row[2].parse().unwrap_or(f64::NAN);
    assert!((0.0..=6.0).contains(&score), "{}", run.stdout);
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    let cold = recc(&[
        "predict",
        path_str(&model),
        "--user",
        "nobody",
        "--item",
        "i1",
        "--allow-unknown",
        "--json",
    ])
    .ok();
    assert!(
        cold.stderr.contains("note: user `nobody`"),
        "{}",
        cold.stderr
    );
    assert!(cold.stderr.contains("unknown user"), "{}", cold.stderr);
    let score = cold.json()["predictions"][0]["score"]
        .as_f64()
        .unwrap_or(f64::NAN);
    assert!(score.is_finite(), "{}", cold.stdout);
}

#[test]
fn recommend_gives_k_items_the_user_did_not_train_on() {
    let dir = temp();
    let model = dir.path().join("m.recm");
    let split = dir.path().join("split");
    recc(&[
        "train",
        "models/biased_mf.rec",
        "--epochs",
        "1",
        "-q",
        "-o",
        path_str(&model),
        "--write-split",
        path_str(&split),
    ])
    .ok();
    let train_tsv = std::fs::read_to_string(split.join("train.tsv")).unwrap_or_default();
    assert!(split.join("test.tsv").is_file());
    let rated: Vec<&str> = train_tsv
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split('\t')
                .collect::<Vec<_>>()
                .get(..2)
                .map(<[_]>::to_vec)
        })
        .filter(|ui| ui[0] == "u1")
        .map(|ui| ui[1])
        .collect();
    assert!(!rated.is_empty(), "u1 has no training rows");

    let run = recc(&["recommend", path_str(&model), "--user", "u1", "-k", "5"]).ok();
    let mut lines = run.stdout.lines();
    assert_eq!(lines.next(), Some("top 5 for user u1:"), "{}", run.stdout);
    let items: Vec<&str> = lines
        .map(|l| {
            // `  1. Label  [i66]  (4.327)`, or `  1. i66  (4.327)` without labels.
            match (l.find('['), l.find(']')) {
                (Some(a), Some(b)) => &l[a + 1..b],
                _ => l.split_whitespace().nth(1).unwrap_or_default(),
            }
        })
        .collect();
    assert_eq!(items.len(), 5, "{}", run.stdout);
    for item in &items {
        assert!(item.starts_with('i'), "{}", run.stdout);
        assert!(
            !rated.contains(item),
            "{item} was rated by u1:\n{}",
            run.stdout
        );
    }
}

#[test]
fn similar_lists_k_neighbours() {
    let dir = temp();
    let model = train_biased_mf(dir.path(), "1");
    let run = recc(&["similar", path_str(&model), "--item", "i1", "-k", "3"]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("nearest to "), "{}", run.stdout);
    assert!(lines[0].ends_with("by `q`:"), "{}", run.stdout);
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    for (k, line) in lines[1..].iter().enumerate() {
        assert!(
            line.trim_start().starts_with(&format!("{}. ", k + 1)),
            "{line}"
        );
    }
    let json = recc(&[
        "similar",
        path_str(&model),
        "--item",
        "i1",
        "-k",
        "3",
        "--json",
    ])
    .ok()
    .json();
    let near = json["neighbours"].as_array().cloned().unwrap_or_default();
    assert_eq!(near.len(), 3, "{json:#}");
    assert!(near.iter().all(|n| n["id"] != "i1"), "{json:#}");
}

#[test]
fn export_writes_every_table_as_csv_and_npy() {
    let dir = temp();
    let model = train_biased_mf(dir.path(), "1");
    let csv = dir.path().join("csv");
    recc(&[
        "export",
        path_str(&model),
        "--format",
        "csv",
        "-o",
        path_str(&csv),
    ])
    .ok();
    assert_eq!(
        files_in(&csv),
        ["b.csv", "m.csv", "p.csv", "q.csv", "w.csv"]
    );
    let p = std::fs::read_to_string(csv.join("p.csv")).unwrap_or_default();
    assert!(p.starts_with("id,p_0,p_1,"), "{}", &p[..p.len().min(80)]);
    assert_eq!(p.lines().nth(1).map(|l| l.split(',').count()), Some(65));

    let npy = dir.path().join("npy");
    recc(&[
        "export",
        path_str(&model),
        "--format",
        "npy",
        "-o",
        path_str(&npy),
    ])
    .ok();
    let names = files_in(&npy);
    for name in ["b.npy", "m.npy", "p.npy", "q.npy", "w.npy", "q.ids.txt"] {
        assert!(names.iter().any(|n| n == name), "no {name} in {names:?}");
    }
    let q = std::fs::read(npy.join("q.npy")).unwrap_or_default();
    assert!(q.starts_with(b"\x93NUMPY"), "q.npy is not a .npy file");
}

#[test]
fn cv_trains_every_fold_and_prints_the_mean_with_its_spread() {
    let run = recc(&[
        "cv",
        "models/biased_mf.rec",
        "--split",
        "kfold:3",
        "--epochs",
        "1",
        "-q",
    ])
    .ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    for (k, line) in lines[..3].iter().enumerate() {
        assert!(line.starts_with(&format!("fold {}: ", k + 1)), "{line}");
        assert!(metric(line, "rmse").is_finite(), "{line}");
    }
    assert!(lines[3].starts_with("mean over 3 folds: "), "{}", lines[3]);
    assert!(
        lines[3].contains("rmse ") && lines[3].contains(" ± "),
        "{}",
        lines[3]
    );
}

#[test]
fn a_ranking_model_reports_ranking_metrics() {
    let dir = temp();
    let model = dir.path().join("bpr.recm");
    let v = recc(&[
        "train",
        "models/bpr_mf.rec",
        "--epochs",
        "1",
        "--json",
        "-o",
        path_str(&model),
    ])
    .ok()
    .json();
    assert_eq!(v["task"], "ranking");
    assert_eq!(v["split"], "user:0.2");
    for name in ["precision@10", "auc"] {
        let m = v["metrics"][name].as_f64().unwrap_or(f64::NAN);
        assert!((0.0..=1.0).contains(&m), "{name}: {v:#}");
    }
    assert!(v["metrics"]["auc"].as_f64() > Some(0.5), "{v:#}");
    assert!(model.is_file());
}

#[test]
fn baseline_measures_popularity_on_the_same_split() {
    let dir = temp();
    let model = dir.path().join("bpr.recm");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "models/bpr_mf.rec",
            "--epochs",
            "3",
            "--json",
            "-o",
            path_str(&model),
        ];
        args.extend_from_slice(extra);
        recc(&args).ok().json()
    };
    assert!(train(&[])["baseline"].is_null());
    let v = train(&["--baseline"]);
    let b = &v["baseline"];
    for name in ["precision@10", "ndcg@10", "auc", "mrr"] {
        let m = b[name].as_f64().unwrap_or(f64::NAN);
        assert!((0.0..=1.0).contains(&m), "{name}: {b:#}");
    }
    // Popularity recommends the same few items to everyone.
    assert!(
        b["coverage@10"].as_f64() < v["metrics"]["coverage@10"].as_f64(),
        "{v:#}"
    );

    let text = recc(&[
        "train",
        "models/bpr_mf.rec",
        "--epochs",
        "1",
        "--baseline",
        "-q",
        "-o",
        path_str(&model),
    ])
    .ok();
    assert!(
        text.stdout.contains("\npopularity: arhr@10 "),
        "{}",
        text.stdout
    );
}

/// The `hierarchy:` line of `recc train` or `recc eval`.
fn hierarchy_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.starts_with("hierarchy: "))
        .unwrap_or_else(|| panic!("no hierarchy line:\n{stdout}"))
}

#[test]
fn a_tree_is_embedded_whole_and_measured_by_its_hierarchy() {
    let dir = temp();
    let model = dir.path().join("tree.recm");
    let args = [
        "train",
        "models/poincare_tree.rec",
        "--data",
        "tree:2x3",
        "--epochs",
        "30",
        "-o",
        path_str(&model),
    ];
    let run = recc(&args).ok();
    assert!(
        run.stderr
            .contains("on tree 2x3 (34 rows, 15 nodes): 34 train / 0 test rows (none)"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("no test rows"), "{}", run.stdout);
    let line = hierarchy_line(&run.stdout);
    assert!(metric(line, "parent_rank") >= 1.0, "{line}");
    let norms = line
        .split("norm_by_depth ")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(norms.split(' ').count(), 4, "{line}");
    // eval measures the saved embedding the same way.
    let eval = recc(&["eval", path_str(&model)]).ok();
    assert_eq!(hierarchy_line(&eval.stdout), line);

    let json = recc(&[&args[..], &["--json"]].concat()).ok().json();
    assert_eq!(json["split"], "none");
    assert_eq!(json["test_rows"], 0);
    let h = &json["hierarchy"];
    assert!(h["parent_rank"].as_f64() >= Some(1.0), "{json:#}");
    assert_eq!(h["norm_by_depth"].as_array().map(Vec::len), Some(4));
    let eval = recc(&["eval", path_str(&model), "--json"]).ok().json();
    assert_eq!(eval["hierarchy"], *h);
}

#[test]
fn a_bad_tree_shape_is_a_usage_error() {
    let run = train_fails(&["--data", "tree:3x0"], 2);
    assert!(
        run.stderr
            .contains("tree:3x0: the depth must be at least 1"),
        "{}",
        run.stderr
    );
    let run = train_fails(&["--data", "tree:3by6"], 2);
    assert!(run.stderr.contains("expected tree:BxD"), "{}", run.stderr);
}

#[test]
fn a_variational_model_reports_its_intervals_wherever_rating_metrics_appear() {
    let dir = temp();
    let model = dir.path().join("v.recm");
    let v = recc(&[
        "train",
        "models/variational_mf.rec",
        "--epochs",
        "2",
        "--json",
        "-o",
        path_str(&model),
    ])
    .ok()
    .json();
    assert_eq!(v["task"], "rating");
    let m = &v["metrics"];
    for name in ["interval50", "interval90"] {
        let c = m[name].as_f64().unwrap_or(f64::NAN);
        assert!((0.0..=1.0).contains(&c), "{name}: {v:#}");
    }
    assert!(m["interval50"].as_f64() < m["interval90"].as_f64(), "{v:#}");
    let corr = m["spread_corr"].as_f64().unwrap_or(f64::NAN);
    assert!((-1.0..=1.0).contains(&corr), "{v:#}");
    // Recorded in the model file, and recomputed exactly by eval: the draws
    // are seeded.
    let (header, _) = model_file_without_timings(&model);
    assert_eq!(&header["metrics"], m, "{header:#}");
    let eval = recc(&["eval", path_str(&model), "--json"]).ok().json();
    assert_eq!(&eval["metrics"], m, "{eval:#}");

    let cv = recc(&[
        "cv",
        "models/variational_mf.rec",
        "--split",
        "kfold:2",
        "--epochs",
        "1",
        "-q",
    ])
    .ok();
    let last = cv.stdout.lines().last().unwrap_or_default();
    for name in ["interval50 ", "interval90 ", "spread_corr "] {
        assert!(last.contains(name), "{name}: {}", cv.stdout);
    }
}

/// Train biased MF with `extra` flags into a fresh dir; the failure must
/// leave no model file behind.
fn train_fails(extra: &[&str], code: i32) -> Run {
    let dir = temp();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap_or_else(|e| panic!("{e}"));
    let model = out.join("m.recm");
    let mut args = vec!["train", "models/biased_mf.rec", "-o", path_str(&model)];
    args.extend_from_slice(extra);
    let run = recc(&args).fails(code);
    assert_eq!(
        files_in(&out),
        Vec::<String>::new(),
        "a model file was written"
    );
    run
}

/// A comma-separated file of 30 ratings whose third line has two fields.
fn bad_csv(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for k in 0..30 {
        if k == 2 {
            text.push_str("u3,i3\n");
        } else {
            text.push_str(&format!("u{},i{},{}\n", k % 5, k % 7, 1 + k % 5));
        }
    }
    let path = dir.join("ratings.csv");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

#[test]
fn a_bad_line_in_a_csv_names_the_file_and_line_unless_skipped() {
    let dir = temp();
    let csv = bad_csv(dir.path());
    let data = format!("csv:{}", path_str(&csv));
    let run = train_fails(&["--data", &data, "--epochs", "1"], 2);
    assert!(
        run.stderr.contains(&format!("{}:3:", csv.display())),
        "{}",
        run.stderr
    );

    let model = dir.path().join("m.recm");
    let run = recc(&[
        "train",
        "models/biased_mf.rec",
        "--data",
        &data,
        "--skip-bad-lines",
        "--epochs",
        "1",
        "-o",
        path_str(&model),
    ])
    .ok();
    assert!(
        run.stderr.contains("skipped 1 bad line of ratings.csv"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(29 rows"), "{}", run.stderr);
    assert!(model.is_file());
}

#[test]
fn an_unknown_split_is_a_usage_error() {
    let run = train_fails(&["--split", "bogus", "--epochs", "1"], 2);
    assert!(
        run.stderr.contains("unknown split `bogus`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("kfold[:K]"), "{}", run.stderr);
}

#[test]
fn missing_data_is_a_usage_error_naming_the_path() {
    let run = train_fails(&["--data", "ml-100k:/nonexistent", "--epochs", "1"], 2);
    assert!(
        run.stderr.contains("there is no folder /nonexistent"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_diverging_learning_rate_stops_in_the_first_epoch() {
    let run = train_fails(&["--lr", "1000", "--epochs", "2"], 1);
    let err = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(err.contains("diverged"), "{}", run.stderr);
    assert!(err.contains("epoch 1"), "{}", run.stderr);
    assert!(
        err.contains("try a smaller learning rate"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_model_with_a_syntax_error_is_a_model_error() {
    let dir = temp();
    let rec = dir.path().join("broken.rec");
    std::fs::write(&rec, "model broken\ninput u: user\nparam p[user]: vec(4\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let model = dir.path().join("m.recm");
    let run = recc(&["train", path_str(&rec), "-o", path_str(&model)]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(run.stderr.contains("recc::syntax"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("{}:3:", rec.display())),
        "{}",
        run.stderr
    );
    assert!(!model.exists());
}

#[test]
fn eval_of_a_file_that_is_not_a_model_says_so() {
    let run = recc(&["eval", "models/biased_mf.rec"]).fails(2);
    assert!(
        run.stderr
            .contains("models/biased_mf.rec: not a recc model file"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn binding_an_input_the_model_lacks_is_a_usage_error() {
    let run = train_fails(&["--bind", "nope=rating", "--epochs", "1"], 2);
    assert!(
        run.stderr.contains("the model has no input `nope`"),
        "{}",
        run.stderr
    );
}

#[test]
fn train_help_lists_every_flag() {
    let run = recc(&["train", "--help"]).ok();
    insta::assert_snapshot!("train_help", run.stdout);
}

/// `recc train` of biased MF for many epochs with `-o out`: refused at once,
/// before the data is even loaded, and `out` is left as it was.
fn train_refuses_output(out: &Path) -> Run {
    let started = std::time::Instant::now();
    let run = recc(&[
        "train",
        "models/biased_mf.rec",
        "--epochs",
        "500",
        "-o",
        path_str(out),
    ])
    .fails(2);
    assert!(
        run.stderr.contains(&format!("-o {}", out.display())),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("training "), "{}", run.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "refused only after training"
    );
    run
}

#[test]
fn train_never_replaces_a_device_a_fifo_or_a_directory() {
    let run = train_refuses_output(Path::new("/dev/null"));
    assert!(run.stderr.contains("a character device"), "{}", run.stderr);
    let null = std::fs::symlink_metadata("/dev/null").unwrap_or_else(|e| panic!("{e}"));
    assert!(!null.is_file(), "/dev/null was replaced by a file");

    let dir = temp();
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(made.success());
    let run = train_refuses_output(&fifo);
    assert!(run.stderr.contains("a FIFO"), "{}", run.stderr);

    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap_or_else(|e| panic!("{e}"));
    let run = train_refuses_output(&sub);
    assert!(run.stderr.contains("a directory"), "{}", run.stderr);
    assert!(sub.is_dir());

    let missing = dir.path().join("missing").join("m.recm");
    let run = train_refuses_output(&missing);
    assert!(
        run.stderr.contains("cannot create a file in"),
        "{}",
        run.stderr
    );
    assert_eq!(files_in(dir.path()), ["fifo", "sub"]);
}

#[test]
fn train_writes_through_a_symlink_to_the_file_it_names() {
    let dir = temp();
    let real = dir.path().join("real.recm");
    std::fs::write(&real, "an older model").unwrap_or_else(|e| panic!("{e}"));
    let link = dir.path().join("link.recm");
    std::os::unix::fs::symlink("real.recm", &link).unwrap_or_else(|e| panic!("{e}"));
    recc(&[
        "train",
        "models/biased_mf.rec",
        "--epochs",
        "1",
        "-q",
        "-o",
        path_str(&link),
    ])
    .ok();
    let meta = std::fs::symlink_metadata(&link).unwrap_or_else(|e| panic!("{e}"));
    assert!(meta.file_type().is_symlink(), "the link was replaced");
    assert_eq!(files_in(dir.path()), ["link.recm", "real.recm"]);
    recc(&["eval", path_str(&real)]).ok();
}

#[test]
fn write_split_and_export_refuse_a_fifo_before_writing_anything() {
    let dir = temp();
    let split = dir.path().join("split");
    std::fs::create_dir(&split).unwrap_or_else(|e| panic!("{e}"));
    let fifo = split.join("test.tsv");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(made.success());
    let model = dir.path().join("m.recm");
    let run = recc(&[
        "train",
        "models/biased_mf.rec",
        "--epochs",
        "500",
        "-o",
        path_str(&model),
        "--write-split",
        path_str(&split),
    ])
    .fails(2);
    assert!(run.stderr.contains("--write-split"), "{}", run.stderr);
    assert!(run.stderr.contains("a FIFO"), "{}", run.stderr);
    assert_eq!(files_in(&split), ["test.tsv"]);
    assert!(!model.exists());

    let model = train_biased_mf(dir.path(), "1");
    let out = dir.path().join("csv");
    std::fs::create_dir(&out).unwrap_or_else(|e| panic!("{e}"));
    let made = Command::new("mkfifo")
        .arg(out.join("w.csv"))
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(made.success());
    let run = recc(&["export", path_str(&model), "-o", path_str(&out)]).fails(2);
    assert!(run.stderr.contains("w.csv"), "{}", run.stderr);
    assert!(run.stderr.contains("a FIFO"), "{}", run.stderr);
    assert_eq!(files_in(&out), ["w.csv"]);

    let run = recc(&["export", path_str(&model), "-o", "/dev/null"]).fails(2);
    assert!(run.stderr.contains("not a directory"), "{}", run.stderr);
}

/// Overwrite the rows of `ids` in every table over items of the model at
/// `path` with NaN, through the runtime, and save it again.
fn poison_items(path: &Path, ids: &[&str]) {
    use recc_runtime::modelfile;
    let mut saved = modelfile::load(path).unwrap_or_else(|e| panic!("{e}"));
    let items = saved
        .domains
        .iter()
        .find(|d| d.name == "item")
        .map(|d| d.ids.clone())
        .unwrap_or_default();
    for t in &mut saved.tables {
        if t.domain.as_deref() != Some("item") {
            continue;
        }
        for id in ids {
            let r = items
                .iter()
                .position(|i| i == id)
                .unwrap_or_else(|| panic!("no item {id}"));
            for v in &mut t.values[r * t.lanes..(r + 1) * t.lanes] {
                *v = f64::NAN;
            }
        }
    }
    modelfile::save(path, &saved).unwrap_or_else(|e| panic!("{e}"));
}

/// The score in parentheses at the end of a ranked line.
fn ranked_score(line: &str) -> f64 {
    line.rsplit('(')
        .next()
        .and_then(|s| s.strip_suffix(')'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {line:?}"))
}

#[test]
fn nan_scores_rank_last_in_recommend_and_similar() {
    let dir = temp();
    let model = train_biased_mf(dir.path(), "1");
    poison_items(&model, &["i2", "i3", "i4"]);
    let run = recc(&[
        "recommend",
        path_str(&model),
        "--user",
        "u1",
        "-k",
        "100000",
    ])
    .ok();
    let scores: Vec<f64> = run.stdout.lines().skip(1).map(ranked_score).collect();
    let nan = scores.iter().filter(|s| s.is_nan()).count();
    assert!(nan >= 1, "{}", run.stdout);
    assert!(
        scores[..scores.len() - nan].iter().all(|s| !s.is_nan()),
        "a NaN score ranks before a number:\n{}",
        run.stdout
    );
    let top = recc(&["recommend", path_str(&model), "--user", "u1", "-k", "3"]).ok();
    assert!(!top.stdout.contains("NaN"), "{}", top.stdout);

    let run = recc(&["similar", path_str(&model), "--item", "i1", "-k", "100000"]).ok();
    let scores: Vec<f64> = run.stdout.lines().skip(1).map(ranked_score).collect();
    let n = scores.len();
    assert!(n > 3, "{}", run.stdout);
    assert!(scores[n - 3..].iter().all(|s| s.is_nan()), "{}", run.stdout);
    assert!(
        scores[..n - 3].iter().all(|s| !s.is_nan()),
        "{}",
        run.stdout
    );
}

#[test]
fn control_characters_in_ids_are_escaped_on_the_terminal() {
    let dir = temp();
    let mut text = String::new();
    for k in 0..60 {
        // Only u0 rates it: recommended to u1.
        let item = if k % 10 == 0 {
            "\u{1b}[31mred\u{7}".to_string()
        } else {
            format!("i{}", k % 7)
        };
        text.push_str(&format!("u{},{item},{}\n", k % 5, 1 + k % 5));
    }
    let csv = dir.path().join("ratings.csv");
    std::fs::write(&csv, text).unwrap_or_else(|e| panic!("{e}"));
    let data = format!("csv:{}", path_str(&csv));
    let model = dir.path().join("m.recm");
    recc(&[
        "train",
        "models/biased_mf.rec",
        "--data",
        &data,
        "--split",
        "none",
        "--epochs",
        "1",
        "-q",
        "-o",
        path_str(&model),
    ])
    .ok();
    for args in [
        vec!["recommend", path_str(&model), "--user", "u1", "-k", "10"],
        vec!["similar", path_str(&model), "--item", "i1", "-k", "10"],
        vec![
            "predict",
            path_str(&model),
            "--user",
            "u1",
            "--item",
            "\u{1b}[31mred\u{7}",
        ],
    ] {
        let run = recc(&args).ok();
        assert!(!run.stdout.contains('\u{1b}'), "{args:?}: {:?}", run.stdout);
        assert!(!run.stdout.contains('\u{7}'), "{args:?}: {:?}", run.stdout);
        assert!(
            run.stdout.contains("\\u{1b}[31mred\\u{7}"),
            "{args:?}: {:?}",
            run.stdout
        );
    }
    // JSON escapes them its own way, exactly.
    let json = recc(&[
        "similar",
        path_str(&model),
        "--item",
        "i1",
        "-k",
        "10",
        "--json",
    ])
    .ok()
    .json();
    let ids: Vec<String> = json["neighbours"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n["id"].as_str().map(String::from))
        .collect();
    assert!(ids.iter().any(|i| i == "\u{1b}[31mred\u{7}"), "{ids:?}");
}

/// `recc train MODEL --split none --epochs 1 EXTRA`, writing nothing.
fn train_model_fails(model: &str, extra: &[&str]) -> Run {
    let mut args = vec!["train", model, "--split", "none", "--epochs", "1", "-q"];
    args.extend_from_slice(extra);
    recc(&args).fails(2)
}

#[test]
fn hostile_data_and_flags_are_usage_errors_not_crashes() {
    let dir = temp();
    // Times whose difference overflows an i64 (a segfault in native code).
    let times = dir.path().join("times.csv");
    std::fs::write(
        &times,
        "user,item,rating,timestamp\nu1,i1,4,-9223372036854775808\nu2,i2,3,-1\nu1,i2,5,0\n",
    )
    .unwrap();
    let run = train_model_fails(
        "models/temporal_mf.rec",
        &["--data", path_str(&times), "--header"],
    );
    assert!(
        run.stderr
            .contains("time column `timestamp` runs from -9223372036854775808 to 0"),
        "{}",
        run.stderr
    );

    // The same feature column twice (a double free).
    let run = train_model_fails("models/fm.rec", &["--features", "user,user,user,user"]);
    assert!(
        run.stderr.contains("--features names column `user` twice"),
        "{}",
        run.stderr
    );

    // A bag over the user domain (an invalid free, or silently wrong).
    let model = dir.path().join("bag.rec");
    std::fs::write(
        &model,
        "model bag\nuse stdlib.losses\ninput u: user\ninput h: bag(user)\ninput r: real\n\
         param w[user]: real\nlet R = w[u] + sum(w[h])\nloss mse(R, r)\n",
    )
    .unwrap();
    for extra in [&[][..], &["--features", "gender"]] {
        let run = train_model_fails(path_str(&model), extra);
        assert!(
            run.stderr.contains("input `h: bag(user)`"),
            "{}",
            run.stderr
        );
    }

    // A file without line breaks (read until memory ran out).
    if Path::new("/dev/zero").exists() {
        let run = train_model_fails("models/biased_mf.rec", &["--data", "/dev/zero"]);
        assert!(
            run.stderr.contains("/dev/zero:1: a line longer than"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn times_in_milliseconds_are_noted() {
    let dir = temp();
    let times = dir.path().join("ms.csv");
    let mut text = "user,item,rating,timestamp\n".to_string();
    for k in 0..40u64 {
        let t = 1_600_000_000_000 + k * 1_500_000_000;
        text.push_str(&format!("u{},i{},{},{t}\n", k % 7, k % 5, 1 + k % 5));
    }
    std::fs::write(&times, text).unwrap();
    let model = dir.path().join("m.recm");
    let run = recc(&[
        "train",
        "models/temporal_mf.rec",
        "--data",
        path_str(&times),
        "--header",
        "--split",
        "none",
        "--epochs",
        "1",
        "-q",
        "-o",
        path_str(&model),
    ])
    .ok();
    assert!(
        run.stderr
            .contains("note: time column `timestamp` runs from"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("milliseconds"), "{}", run.stderr);
}

/// A model whose parameters become infinite while its loss stays finite:
/// `sqrt(w[u])` at `w = 0` has an infinite gradient, and with one rating
/// per user no example reads the infinite row again in the epoch.
const SQRT_MODEL: &str = "model sqrt_bias
use stdlib.losses
input u: user
input i: item
input r: real
param q[item]: real
param w[user]: real
let R(u, i) = q[i] + sqrt(w[u])
loss mse(R(u, i), r)
fit { optimizer: sgd(lr: 0.01), epochs: 1, seed: 1 }
";

#[test]
fn parameters_that_diverge_under_a_finite_loss_fail_and_leave_the_old_model() {
    let dir = temp();
    let src = dir.path().join("sqrt_bias.rec");
    std::fs::write(&src, SQRT_MODEL).unwrap_or_else(|e| panic!("{e}"));
    let csv = dir.path().join("one_per_user.csv");
    let text: String = (0..200)
        .map(|u| format!("u{u},i{},{}\n", u % 13, 1 + u % 5))
        .collect();
    std::fs::write(&csv, text).unwrap_or_else(|e| panic!("{e}"));
    let model = train_biased_mf(dir.path(), "1");
    let before = std::fs::read(&model).unwrap_or_else(|e| panic!("{e}"));
    let data = format!("csv:{}", path_str(&csv));
    let run = recc(&[
        "train",
        path_str(&src),
        "--data",
        &data,
        "--split",
        "none",
        "-q",
        "-o",
        path_str(&model),
    ])
    .fails(1);
    assert!(
        run.stderr.contains("diverged: parameter `w`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("epoch 1"), "{}", run.stderr);
    let after = std::fs::read(&model).unwrap_or_else(|e| panic!("{e}"));
    assert!(before == after, "the existing model file was replaced");
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_training_and_writes_a_loadable_model_with_exit_130() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = temp();
    let model = dir.path().join("m.recm");
    let mut child = Command::new(env!("CARGO_BIN_EXE_recc"))
        .args([
            "train",
            "models/biased_mf.rec",
            "--epochs",
            "1000000",
            "-o",
            path_str(&model),
        ])
        .current_dir(workspace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run recc: {e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let mut lines = BufReader::new(stderr).lines();
    // Wait until an epoch has finished, so training is under way.
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap_or_default();
        seen.push_str(&line);
        seen.push('\n');
        if line.trim_start().starts_with("epoch ") {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(status.success());
    for line in lines {
        seen.push_str(&line.unwrap_or_default());
        seen.push('\n');
    }
    let code = child
        .wait()
        .unwrap_or_else(|e| panic!("{e}"))
        .code()
        .unwrap_or(-1);
    assert_eq!(code, 130, "{seen}");
    assert!(!seen.contains("panicked"), "{seen}");
    let said = seen
        .lines()
        .find(|l| l.starts_with("interrupted: wrote epoch "))
        .unwrap_or_else(|| panic!("no interruption message:\n{seen}"));
    assert!(said.ends_with(&format!("to {}", model.display())), "{said}");
    // The file is a whole model: eval loads it and measures it.
    let eval = recc(&["eval", path_str(&model), "--json"]).ok();
    assert!(
        eval.json()["metrics"]["rmse"].as_f64().is_some(),
        "{}",
        eval.stdout
    );
}

/// `eval --backend` chooses what scores the test rows: the native predict
/// kernel (f32) and the reference evaluator (f64) agree to f32's precision;
/// a name no backend has is a usage error.
#[test]
fn eval_backend_chooses_the_scorer() {
    let dir = temp();
    let model = train_biased_mf(dir.path(), "2");
    let jit = recc(&["eval", path_str(&model), "--backend", "jit", "--json"])
        .ok()
        .json();
    let interp = recc(&["eval", path_str(&model), "--backend", "interp", "--json"])
        .ok()
        .json();
    let rmse = |v: &Value| v["metrics"]["rmse"].as_f64().unwrap_or(f64::NAN);
    assert!(rmse(&jit).is_finite(), "{jit:#}");
    assert!(
        (rmse(&jit) - rmse(&interp)).abs() < 1e-4,
        "{jit:#}\n{interp:#}"
    );
    assert_eq!(jit["test_rows"], interp["test_rows"]);
    let bad = recc(&["eval", path_str(&model), "--backend", "tpu"]).fails(2);
    assert!(
        bad.stderr.contains("unknown backend `tpu`"),
        "{}",
        bad.stderr
    );
}

/// `model` with its `fit` block replaced by `fit`, written into `dir`.
fn with_fit(dir: &Path, model: &str, fit: &str) -> PathBuf {
    let text =
        std::fs::read_to_string(workspace().join(model)).unwrap_or_else(|e| panic!("{model}: {e}"));
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("fit ")).collect();
    let path = dir.join(Path::new(model).file_name().unwrap_or_default());
    std::fs::write(&path, format!("{}\n{fit}\n", kept.join("\n")))
        .unwrap_or_else(|e| panic!("{e}"));
    path
}

#[test]
fn solver_flags_that_do_not_apply_are_refused_naming_both() {
    for (extra, says) in [
        (
            &["--solver", "als", "--epochs", "3"][..],
            "--epochs is a setting of SGD, and this run is fitted with ALS (--solver als); ALS counts --sweeps",
        ),
        (
            &["--solver", "gibbs", "--lr", "0.1"],
            "--lr is a setting of SGD, and this run is fitted with Gibbs (--solver gibbs)",
        ),
        (&["--solver", "als", "--optimizer", "adam"], "--optimizer is a setting of SGD"),
        (&["--solver", "als", "--batch", "8"], "--batch is a setting of SGD"),
        (&["--solver", "gibbs", "--schedule", "cosine"], "--schedule is a setting of SGD"),
        (
            &["--sweeps", "3"],
            "--sweeps is a setting of --solver als, and this run is fitted with SGD (the default)",
        ),
        (
            &["--solver", "gibbs", "--sweeps", "3"],
            "--sweeps is a setting of --solver als, and this run is fitted with Gibbs",
        ),
        (
            &["--solver", "als", "--samples", "3"],
            "--samples is a setting of --solver gibbs, and this run is fitted with ALS",
        ),
        (&["--burn-in", "3"], "--burn-in is a setting of --solver gibbs"),
        (&["--solver", "alz"], "--solver alz: expected sgd, als or gibbs"),
        (&["--sweeps", "0"], "must be at least 1, not 0"),
        (&["--solver", "gibbs", "--samples", "0"], "must be at least 1, not 0"),
        (&["--solver", "gibbs", "--burn-in", "-1"], "must be at least 0, not -1"),
    ] {
        train_fails(extra, 2).says(says);
    }
    // A solver's own counts are accepted with it (refused here only for the
    // output directory, which is checked after the settings).
    for extra in [
        &["--solver", "als", "--sweeps", "4", "--seed", "3"][..],
        &["--solver", "gibbs", "--samples", "3", "--burn-in", "0"],
    ] {
        let mut args = vec!["train", "models/biased_mf.rec", "-o", "/nonexistent/m.recm"];
        args.extend_from_slice(extra);
        recc(&args).fails(2).says("-o ");
    }
    // cv and bench read the same flags.
    recc(&[
        "cv",
        "models/biased_mf.rec",
        "--solver",
        "als",
        "--epochs",
        "2",
    ])
    .fails(2)
    .says("--epochs is a setting of SGD");
    recc(&["bench", "models/biased_mf.rec", "--samples", "2"])
        .fails(2)
        .says("--samples is a setting of --solver gibbs");
}

#[test]
fn a_fit_block_solver_is_overridden_and_its_flags_judged_by_it() {
    let dir = temp();
    let model = with_fit(
        dir.path(),
        "models/biased_mf.rec",
        "fit { solver: als, sweeps: 5 }",
    );
    recc(&["train", path_str(&model), "--epochs", "1"])
        .fails(2)
        .says("--epochs is a setting of SGD, and this run is fitted with ALS (the model's `fit { solver: als }`)");
    // Back to SGD for one run: the SGD flags apply again.
    let out = dir.path().join("m.recm");
    recc(&[
        "train",
        path_str(&model),
        "--solver",
        "sgd",
        "--epochs",
        "1",
        "-q",
        "-o",
        path_str(&out),
    ])
    .ok();
    assert!(out.exists());
}

#[test]
fn a_solver_flag_on_a_model_it_cannot_fit_gives_the_fit_blocks_error() {
    let dir = temp();
    let asked = with_fit(dir.path(), "models/bpr_mf.rec", "fit { solver: als }");
    let check = recc(&["check", path_str(&asked)]).fails(1);
    for command in ["train", "cv", "bench"] {
        let run = recc(&[command, "models/bpr_mf.rec", "--solver", "als"]).fails(1);
        for says in [
            "recc::no-affine-block",
            "`solver: als` needs a table the loss is affine in, and this model has none",
            "bpr_mf.rec:20:6]",
            "softplus of a term that reads the table: `m`, `p`, `q` not affine",
        ] {
            assert!(
                run.stderr.contains(says),
                "{command}: {says}\n{}",
                run.stderr
            );
            assert!(
                check.stdout.contains(says) || check.stderr.contains(says),
                "check: {says}\n{}{}",
                check.stdout,
                check.stderr
            );
        }
    }
    // Variational MF: the score reads the log-variances through `exp`.
    recc(&["train", "models/variational_mf.rec", "--solver", "gibbs"])
        .fails(1)
        .says("`solver: gibbs` cannot fit `p.logvar`, `q.logvar`: the loss is not affine in them");
}

#[test]
fn bench_with_a_solver_times_sweeps_and_refuses_the_hand_written_sgd_loop() {
    let run = recc(&[
        "bench",
        "models/biased_mf.rec",
        "--solver",
        "als",
        "--sweeps",
        "2",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let first = run.stdout.lines().next().unwrap_or("");
    assert!(
        first.ends_with("23033 rows, 2 sweeps · als · 1 thread"),
        "{first}"
    );
    assert!(run.stdout.contains("\n  sweeps "), "{}", run.stdout);
    assert!(!run.stdout.contains("machine code"), "{}", run.stdout);
    recc(&["bench", "models/biased_mf.rec", "--solver", "als", "--handwritten"])
        .fails(2)
        .says("--handwritten times the hand-written SGD loop beside recc's SGD step, and this run is fitted with ALS");
}

#[test]
fn weighted_als_trains_on_the_default_data_and_refuses_sgd_at_the_draw() {
    let dir = temp();
    let out = dir.path().join("wals.recm");
    let run = recc(&[
        "train",
        "models/wals.rec",
        "--sweeps",
        "2",
        "-o",
        path_str(&out),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("judged by ranking metrics"),
        "{}",
        run.stderr
    );
    let test = run
        .stdout
        .lines()
        .find(|l| l.starts_with("test:"))
        .unwrap_or("");
    let auc = metric(test, "auc");
    assert!(auc > 0.55, "{test}");
    assert!(out.exists());
    // `recc ir` shows the term over one pair as a graph of its own.
    let ir = recc(&["ir", "models/wals.rec", "--no-locations"]);
    assert_eq!(ir.code, 0, "{}", ir.stderr);
    let pairs = ir
        .stdout
        .split("# summed over every pair without an example:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", ir.stdout));
    assert!(
        pairs.contains("= dot %1, %3 : f") && pairs.contains("loss %5"),
        "{pairs}"
    );
    for solver in ["sgd", "gibbs"] {
        let run = recc(&["train", "models/wals.rec", "--solver", solver]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "`solver: {solver}` cannot fit a sum over every unobserved pair"
            )) && run.stderr.contains("recc::unobserved-solver"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn pooling_chooses_the_schedule_and_is_refused_where_it_does_not_apply() {
    let dir = temp();
    let out = dir.path().join("svdpp.recm");
    let out = path_str(&out);
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "models/svdpp.rec", "--epochs", "1", "-o", out];
        args.extend_from_slice(extra);
        recc(&args)
    };
    train(&[])
        .ok()
        .says("note: pooling: grouped by user, `h` pooled");
    train(&["--pooling", "per-example"])
        .ok()
        .says("note: pooling: per example (--pooling per-example)");
    train(&["--pooling", "per-example", "--backend", "interp"])
        .ok()
        .says("note: pooling: per example");
    train(&["--pooling", "sideways"])
        .fails(2)
        .says("unknown pooling schedule `sideways`");
    recc(&[
        "train",
        "models/svdpp.rec",
        "--pooling",
        "grouped",
        "--solver",
        "als",
        "-o",
        out,
    ])
    .fails(2)
    .says("--pooling grouped: the als(sweeps: 15) solver takes no gradient steps");
    recc(&[
        "train",
        "models/biased_mf.rec",
        "--pooling",
        "grouped",
        "-o",
        out,
    ])
    .fails(2)
    .says("--pooling grouped: model `biased_mf` has no history input to pool");
    // cv and bench read the same flag.
    recc(&["cv", "models/biased_mf.rec", "--pooling", "per-example"])
        .fails(2)
        .says("has no history input to pool");
    recc(&[
        "bench",
        "models/svdpp.rec",
        "--epochs",
        "1",
        "--pooling",
        "per-example",
    ])
    .ok();
}
