//! Strict inputs: ids the model does not know, labels, values out of range,
//! flags that do not apply to a command, and output targets checked before
//! any work starts. Each runs the built binary as a user runs it, on the
//! generated built-in data.

use serde_json::Value;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

mod common;
use common::{recc, Run};

impl Run {
    fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// A failure with `code`, a message on stderr, and no panic.
    fn fails(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        assert!(self.stderr.contains("error"), "{}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }

    /// Says `what` on stderr.
    fn says(self, what: &str) -> Run {
        assert!(
            self.stderr.contains(what),
            "expected {what:?} on stderr:\n{}",
            self.stderr
        );
        self
    }
}

fn temp() -> TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"))
}

fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("temp path is not UTF-8: {}", p.display()))
}

/// Train `model` on the built-in data for one epoch into `dir/NAME.recm`.
fn trained(dir: &Path, model: &str, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.recm"));
    recc(&["train", model, "--epochs", "1", "-q", "-o", path_str(&out)]).ok();
    out
}

fn biased_mf(dir: &Path) -> PathBuf {
    trained(dir, "models/biased_mf.rec", "mf")
}

// --- ids and labels ---------------------------------------------------------

#[test]
fn an_unknown_id_is_an_error_unless_cold_start_is_asked_for() {
    let dir = temp();
    let m = biased_mf(dir.path());
    let m = path_str(&m);
    recc(&["predict", m, "--user", "nobody", "--item", "i1"])
        .fails(1)
        .says("user `nobody` is not in the model");
    recc(&["predict", m, "--user", "u1", "--item", "i99999"])
        .fails(1)
        .says("item `i99999` is not in the model");
    recc(&["recommend", m, "--user", "nobody"])
        .fails(1)
        .says("user `nobody`");
    recc(&["similar", m, "--item", "i99999"])
        .fails(1)
        .says("item `i99999`");

    let cold = recc(&[
        "predict",
        m,
        "--user",
        "nobody",
        "--item",
        "i1",
        "--item",
        "i2",
        "--allow-unknown",
        "--json",
    ])
    .ok();
    assert!(cold.stderr.contains("unknown user"), "{}", cold.stderr);
    let v = cold.json();
    assert_eq!(v["predictions"][0]["unknown"], Value::Bool(true), "{v:#}");
    let known = recc(&["predict", m, "--user", "u1", "--item", "i1", "--json"])
        .ok()
        .json();
    assert_eq!(
        known["predictions"][0]["unknown"],
        Value::Bool(false),
        "{known:#}"
    );

    let v = recc(&[
        "recommend",
        m,
        "--user",
        "nobody",
        "--allow-unknown",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(v["unknown"], Value::Bool(true), "{v:#}");
    assert_eq!(v["recommendations"].as_array().map(Vec::len), Some(10));
}

#[test]
fn ids_are_trimmed() {
    let dir = temp();
    let m = biased_mf(dir.path());
    let m = path_str(&m);
    let plain = recc(&["predict", m, "--user", "u1", "--item", "i1"]).ok();
    let padded = recc(&["predict", m, "--user", " u1  ", "--item", "i1 "]).ok();
    assert!(!padded.stderr.contains("unknown"), "{}", padded.stderr);
    let score = |r: &Run| r.stdout.lines().nth(1).map(|l| l.to_string());
    assert_eq!(score(&plain), score(&padded));
}

#[test]
fn labels_match_exactly_then_case_insensitively_and_a_miss_suggests() {
    let dir = temp();
    let m = biased_mf(dir.path());
    let m = path_str(&m);
    let exact = recc(&[
        "similar",
        m,
        "--item",
        "Item 66 (Animation, 1995)",
        "-k",
        "3",
    ])
    .ok();
    let folded = recc(&[
        "similar",
        m,
        "--item",
        "item 66 (ANIMATION, 1995)",
        "-k",
        "3",
    ])
    .ok();
    assert_eq!(exact.stdout, folded.stdout);
    // Ids beside labels, for the item asked about and each neighbour.
    let lines: Vec<&str> = exact.stdout.lines().collect();
    assert!(
        lines[0].contains("Item 66 (Animation, 1995)  [i66]"),
        "{}",
        exact.stdout
    );
    assert_eq!(lines.len(), 4, "{}", exact.stdout);
    for l in &lines[1..] {
        assert!(l.contains("  [i"), "no id beside the label: {l}");
    }
    let p = recc(&[
        "predict",
        m,
        "--user",
        "u1",
        "--item",
        "item 66 (animation, 1995)",
    ])
    .ok();
    let by_id = recc(&["predict", m, "--user", "u1", "--item", "i66"]).ok();
    let score = |r: &Run| {
        r.stdout
            .lines()
            .nth(1)
            .and_then(|l| l.split('\t').nth(2))
            .map(String::from)
    };
    assert_eq!(score(&p), score(&by_id));

    recc(&["similar", m, "--item", "Item 66"])
        .fails(1)
        .says("did you mean")
        .says("\"Item 66 (Animation, 1995)\" [i66]");
}

#[test]
fn similar_refuses_a_table_of_one_number_per_item() {
    let dir = temp();
    let m = biased_mf(dir.path());
    recc(&["similar", path_str(&m), "--item", "i1", "--table", "m"])
        .fails(2)
        .says("one number per item");
}

// --- values out of range ----------------------------------------------------

/// `recc train models/biased_mf.rec ARGS` into a temp dir: refused with
/// exit 2, nothing written.
fn train_refuses(args: &[&str], says: &str) {
    let dir = temp();
    let out = dir.path().join("m.recm");
    let mut all = vec!["train", "models/biased_mf.rec", "-q", "-o", path_str(&out)];
    all.extend_from_slice(args);
    recc(&all).fails(2).says(says);
    assert!(!out.exists(), "{args:?} wrote a model");
}

#[test]
fn counts_of_zero_are_refused_before_training() {
    train_refuses(&["--epochs", "0"], "--epochs");
    train_refuses(&["-k", "0"], "-k");
    train_refuses(&["--batch", "0"], "--batch");
    train_refuses(&["--threads", "0"], "--threads");
    train_refuses(&["--data", "builtin+item2vec", "--window", "0"], "--window");
    train_refuses(&["--epochs", "-3"], "--epochs");
    recc(&["bench", "models/biased_mf.rec", "--factors", "0"])
        .fails(2)
        .says("--factors");
    let dir = temp();
    let m = biased_mf(dir.path());
    let m = path_str(&m);
    recc(&["recommend", m, "--user", "u1", "-k", "0"])
        .fails(2)
        .says("-k");
    recc(&["similar", m, "--item", "i1", "-k", "0"])
        .fails(2)
        .says("-k");
    recc(&["eval", m, "-k", "0"]).fails(2).says("-k");
}

#[test]
fn a_negative_learning_rate_is_explained() {
    let dir = temp();
    let out = dir.path().join("m.recm");
    let run = recc(&[
        "train",
        "models/biased_mf.rec",
        "--lr",
        "-1",
        "-o",
        path_str(&out),
    ])
    .fails(2)
    .says("learning rate");
    assert!(!run.stderr.contains("-- -1"), "{}", run.stderr);
}

#[test]
fn a_step_schedule_names_its_factor() {
    train_refuses(&["--schedule", "step:2:1"], "factor 2");
    train_refuses(&["--schedule", "step:2:1"], "between 0 and 1");
    train_refuses(&["--schedule", "step:0.5:0"], "at least 1");
}

#[test]
fn cross_validation_needs_two_folds() {
    for split in ["none", "random:0.2", "user:0.2"] {
        recc(&[
            "cv",
            "models/biased_mf.rec",
            "--epochs",
            "1",
            "--split",
            split,
        ])
        .fails(2)
        .says("at least two folds");
    }
}

// --- flags that do not apply ------------------------------------------------

#[test]
fn flags_that_do_not_apply_are_refused() {
    train_refuses(&["--baseline"], "rating model");
    train_refuses(&["--min-target", "4"], "rating model");
    let dir = temp();
    let m = biased_mf(dir.path());
    let m = path_str(&m);
    for args in [
        vec!["predict", m, "--user", "u1", "--item", "i1", "-q"],
        vec!["predict", m, "--user", "u1", "--item", "i1", "-k", "3"],
        vec!["recommend", m, "--user", "u1", "--baseline"],
        vec!["similar", m, "--item", "i1", "--allow-unknown"],
        vec!["eval", m, "--baseline"],
        vec!["eval", m, "--write-split", "x"],
        vec!["eval", m, "--window", "3"],
        vec!["cv", "models/biased_mf.rec", "--baseline"],
        vec!["bench", "models/biased_mf.rec", "-k", "3"],
        vec!["bench", "models/biased_mf.rec", "--write-split", "x"],
    ] {
        let command = format!("`recc {}` does not take it", args[0]);
        recc(&args).fails(2).says(&command);
    }
}

#[test]
fn each_command_helps_with_its_own_flags() {
    for command in ["predict", "recommend", "similar", "eval"] {
        let run = recc(&[command, "--help"]).ok();
        insta::assert_snapshot!(format!("{command}_help"), run.stdout);
    }
}

// --- output targets -----------------------------------------------------------

#[test]
fn export_and_write_split_targets_are_checked_before_work() {
    let dir = temp();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap_or_else(|e| panic!("{e}"));
    let under_file = file.join("sub");
    // A directory is needed where a file is: refused before the data is
    // loaded (a data spec that would fail is never reached).
    let out = dir.path().join("m.recm");
    recc(&[
        "train",
        "models/biased_mf.rec",
        "--data",
        "csv:/nonexistent/ratings.csv",
        "-o",
        path_str(&out),
        "--write-split",
        path_str(&file),
    ])
    .fails(2)
    .says("--write-split")
    .says("not a directory");
    recc(&[
        "cv",
        "models/biased_mf.rec",
        "--data",
        "csv:/nonexistent/ratings.csv",
        "--write-split",
        path_str(&under_file),
    ])
    .fails(2)
    .says("--write-split");
    recc(&["export", "/nonexistent/model.recm", "-o", path_str(&file)])
        .fails(2)
        .says("-o")
        .says("not a directory");
}

#[test]
fn no_message_names_a_temporary_file() {
    // /proc takes no new files, whoever runs the test.
    let run = recc(&[
        "train",
        "models/biased_mf.rec",
        "-o",
        "/proc/recc-strict-test.recm",
    ])
    .fails(2);
    assert!(!run.stderr.contains("recc-tmp"), "{}", run.stderr);
    let dir = temp();
    let m = biased_mf(dir.path());
    let run = recc(&["export", path_str(&m), "-o", "/proc/recc-strict-test"]).fails(2);
    assert!(!run.stderr.contains("recc-tmp"), "{}", run.stderr);
    assert!(run.stderr.contains("-o"), "{}", run.stderr);
}

#[test]
fn cv_writes_one_split_folder_per_fold() {
    let dir = temp();
    let splits = dir.path().join("splits");
    recc(&[
        "cv",
        "models/biased_mf.rec",
        "--epochs",
        "1",
        "-q",
        "--split",
        "kfold:3",
        "--write-split",
        path_str(&splits),
    ])
    .ok();
    let mut test_rows = 0;
    for fold in ["fold1", "fold2", "fold3"] {
        for file in ["train.tsv", "test.tsv"] {
            let path = splits.join(fold).join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if file == "test.tsv" {
                // Less the line that names the columns.
                test_rows += text.lines().count() - 1;
            }
        }
    }
    // The folds' test rows cover the data once.
    let whole = recc(&[
        "train",
        "models/biased_mf.rec",
        "--split",
        "none",
        "--epochs",
        "1",
        "-q",
        "--json",
        "-o",
        path_str(&dir.path().join("all.recm")),
    ])
    .ok()
    .json();
    assert_eq!(Some(test_rows as u64), whole["train_rows"].as_u64());
}
