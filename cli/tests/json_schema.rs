//! Every command's `--json` output, run on the built-in data, is valid
//! against `docs/json-schema.json`, the schema `docs/json.md` describes; and
//! failures under `--json` are JSON errors on stdout with the exit status
//! they have without it.

use jsonschema::Validator;
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;
use tempfile::TempDir;

mod common;
use common::{recc, workspace, Run};

fn schema_value() -> Value {
    let path = workspace().join("docs/json-schema.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::validator_for(&schema_value())
            .unwrap_or_else(|e| panic!("docs/json-schema.json does not compile: {e}"))
    })
}

/// The schema's complaints about `v`, one per line; empty when it is valid.
fn complaints(v: &Value) -> String {
    validator()
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn temp() -> TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"))
}

fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("temp path is not UTF-8: {}", p.display()))
}

/// The JSON `run` printed, after checking that it exited with `code`, that
/// its output is valid against the schema and that it names `command`.
fn valid(run: &Run, code: i32, command: &str) -> Value {
    assert_eq!(
        run.code, code,
        "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout, run.stderr
    );
    let v: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n--- stderr\n{}",
            run.stdout, run.stderr
        )
    });
    let wrong = complaints(&v);
    assert!(wrong.is_empty(), "{command}: {wrong}\n{v:#}");
    assert_eq!(v["command"], command, "{v:#}");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    v
}

/// `recc ARGS --json`, valid and successful.
fn json_ok(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    valid(&recc(&all), 0, args[0])
}

/// `recc ARGS --json` fails with the status `recc ARGS` fails with, and
/// prints a valid JSON error; its `error` object.
fn json_error(args: &[&str], code: i32) -> Value {
    let text = recc(args);
    assert_eq!(text.code, code, "without --json: {}", text.stderr);
    let mut all = args.to_vec();
    all.push("--json");
    let v = valid(&recc(&all), code, args[0]);
    assert_eq!(v["error"]["code"], code, "{v:#}");
    v["error"].clone()
}

#[test]
fn the_schema_is_a_valid_2020_12_schema() {
    let schema = schema_value();
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("docs/json-schema.json is not a valid JSON Schema: {e}");
    }
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

/// A valid `eval` output, to break in the test below.
fn an_eval() -> Value {
    serde_json::json!({
        "command": "eval",
        "model": "mf",
        "data": "builtin",
        "split": "random:0.2",
        "task": "rating",
        "test_rows": 10,
        "metrics": {"rmse": 1.0, "spread_corr": null},
        "model_file": "mf.recm"
    })
}

#[test]
fn the_schema_rejects_unknown_fields_numbers_as_text_and_a_missing_command() {
    assert_eq!(complaints(&an_eval()), "");
    let mut unknown = an_eval();
    unknown["rows"] = 10.into();
    assert_ne!(complaints(&unknown), "", "an unknown field passed");
    let mut text = an_eval();
    text["metrics"]["rmse"] = "1.0".into();
    assert_ne!(complaints(&text), "", "a figure as text passed");
    let mut nameless = an_eval();
    nameless.as_object_mut().map(|o| o.remove("command"));
    assert_ne!(complaints(&nameless), "", "no command passed");
    let mut train = an_eval();
    train["command"] = "train".into();
    assert_ne!(complaints(&train), "", "a train without its fields passed");
}

#[test]
fn check_prints_each_file_and_its_diagnostics() {
    let v = json_ok(&["check", "models/mf.rec", "models/bpr_mf.rec"]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["files"][0]["model"]["name"], "mf", "{v:#}");
    assert!(v["files"][0]["model"]["params"].is_u64(), "{v:#}");

    let dir = temp();
    let bad = dir.path().join("bad.rec");
    std::fs::write(&bad, "model m { input u: user; }\n").unwrap_or_else(|e| panic!("{e}"));
    let run = recc(&["check", path_str(&bad), "--json"]);
    let v = valid(&run, 1, "check");
    assert_eq!(v["ok"], false);
    let d = &v["files"][0]["diagnostics"][0];
    assert_eq!(d["severity"], "error", "{v:#}");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(1), Some(9))
    );
    // The report is the JSON; stderr does not repeat it.
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    let missing = dir.path().join("missing.rec");
    let v = valid(&recc(&["check", path_str(&missing), "--json"]), 2, "check");
    assert_eq!(v["files"][0]["error"]["kind"], "usage", "{v:#}");
}

#[test]
fn train_eval_predict_recommend_similar_and_export_print_valid_json() {
    let dir = temp();
    let rating = dir.path().join("mf.recm");
    let train = json_ok(&[
        "train",
        "models/biased_mf.rec",
        "--epochs",
        "2",
        "-o",
        path_str(&rating),
    ]);
    // Settings are numbers where they are numbers.
    assert!(train["settings"]["lr"].is_f64(), "{train:#}");
    assert!(train["settings"]["epochs"].is_u64(), "{train:#}");
    assert!(train["history"][0]["loss"].is_f64(), "{train:#}");
    let eval = json_ok(&["eval", path_str(&rating)]);
    // eval is shaped like train: the measurement is the same, key for key.
    for key in ["model", "data", "split", "task", "test_rows", "metrics"] {
        assert_eq!(eval[key], train[key], "{key}: {eval:#}\n{train:#}");
    }

    let ranking = dir.path().join("bpr.recm");
    let train = json_ok(&[
        "train",
        "models/bpr_mf.rec",
        "--epochs",
        "1",
        "--baseline",
        "-o",
        path_str(&ranking),
    ]);
    assert_eq!(train["task"], "ranking");
    assert!(train["baseline"]["auc"].is_f64(), "{train:#}");
    let eval = json_ok(&["eval", path_str(&ranking)]);
    assert_eq!(eval["task"], "ranking");
    assert_eq!(eval["metrics"], train["metrics"], "{eval:#}");
    assert!(eval["users"].is_u64(), "{eval:#}");

    let v = json_ok(&[
        "predict",
        path_str(&rating),
        "--user",
        "u1",
        "--item",
        "i1",
        "--item",
        "i2",
    ]);
    assert_eq!(v["predictions"].as_array().map(Vec::len), Some(2), "{v:#}");
    let v = json_ok(&["recommend", path_str(&ranking), "--user", "u1", "-k", "3"]);
    assert_eq!(v["recommendations"].as_array().map(Vec::len), Some(3));
    let v = json_ok(&["similar", path_str(&ranking), "--item", "i1", "-k", "3"]);
    assert_eq!(v["neighbours"].as_array().map(Vec::len), Some(3));
    let out = dir.path().join("tables");
    let v = json_ok(&["export", path_str(&rating), "-o", path_str(&out)]);
    assert!(
        v["files"].as_array().is_some_and(|f| !f.is_empty()),
        "{v:#}"
    );
}

#[test]
fn a_tree_reports_its_hierarchy_in_train_and_eval() {
    let dir = temp();
    let model = dir.path().join("tree.recm");
    let train = json_ok(&[
        "train",
        "models/poincare_tree.rec",
        "--data",
        "tree:2x3",
        "--epochs",
        "2",
        "-o",
        path_str(&model),
    ]);
    assert_eq!(train["test_rows"], 0);
    let eval = json_ok(&["eval", path_str(&model)]);
    assert_eq!(eval["hierarchy"], train["hierarchy"], "{eval:#}");
}

#[test]
fn cv_labels_made_folds_by_number_and_given_folds_by_name() {
    let v = json_ok(&["cv", "models/mf.rec", "--split", "kfold:2", "--epochs", "1"]);
    let labels: Vec<&Value> = v["folds"]
        .as_array()
        .map(|f| f.iter().map(|f| &f["fold"]).collect())
        .unwrap_or_default();
    assert_eq!(labels, [&Value::from(1), &Value::from(2)], "{v:#}");

    // MovieLens-shaped data with its own five folds (each the fixture's u1).
    let dir = temp();
    let fixture = workspace().join("runtime/tests/fixtures/ml-mini");
    for name in ["u.data", "u.genre", "u.item", "u.occupation", "u.user"] {
        std::fs::copy(fixture.join(name), dir.path().join(name))
            .unwrap_or_else(|e| panic!("copying {name}: {e}"));
    }
    for fold in ["u1", "u2", "u3", "u4", "u5"] {
        for part in ["base", "test"] {
            std::fs::copy(
                fixture.join(format!("u1.{part}")),
                dir.path().join(format!("{fold}.{part}")),
            )
            .unwrap_or_else(|e| panic!("copying u1.{part}: {e}"));
        }
    }
    let data = format!("ml-100k:{}", path_str(dir.path()));
    let v = json_ok(&[
        "cv",
        "models/mf.rec",
        "--data",
        &data,
        "--split",
        "given",
        "--epochs",
        "1",
    ]);
    let labels: Vec<&str> = v["folds"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["fold"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(labels, ["u1", "u2", "u3", "u4", "u5"], "{v:#}");
}

#[test]
fn bench_prints_valid_json() {
    let v = json_ok(&["bench", "models/mf.rec", "--epochs", "1"]);
    assert_eq!(v["epochs"], 1);
    assert!(v["updates_per_second"].is_f64(), "{v:#}");
}

#[test]
fn failures_are_json_errors_on_stdout_with_the_same_exit_status() {
    let e = json_error(&["eval", "no-such-model.recm"], 2);
    assert_eq!(e["kind"], "usage");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-model.recm")),
        "{e:#}"
    );
    // A model with errors.
    let dir = temp();
    let bad = dir.path().join("bad.rec");
    std::fs::write(&bad, "model m { input u: user; }\n").unwrap_or_else(|e| panic!("{e}"));
    let e = json_error(&["train", path_str(&bad)], 1);
    assert_eq!(e["kind"], "model");
    // Flags that do not parse.
    let e = json_error(&["train", "models/mf.rec", "--epochs", "many"], 2);
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("--epochs")),
        "{e:#}"
    );
    let run = recc(&["no-such-command", "--json"]);
    let v = valid(&run, 2, "no-such-command");
    assert_eq!(v["error"]["kind"], "usage");
}

#[test]
fn json_keeps_stderr_free_of_progress_even_when_bars_are_forced() {
    let dir = temp();
    let model = dir.path().join("bpr.recm");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_recc"))
        .args([
            "train",
            "models/bpr_mf.rec",
            "--epochs",
            "1",
            "--json",
            "-o",
            path_str(&model),
        ])
        .current_dir(workspace())
        .env("RECC_PROGRESS", "always")
        .output()
        .unwrap_or_else(|e| panic!("cannot run recc: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("ranking"), "{stderr}");
    assert!(!stderr.contains("epoch"), "{stderr}");
}
