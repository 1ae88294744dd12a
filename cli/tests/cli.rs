//! The `recc` binary end to end: output and exit codes, pinned as snapshots.

mod common;
use common::{recc, workspace};

fn model_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(workspace().join("models"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".rec"))
                .map(|n| format!("models/{n}"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn check_passes_every_model_with_a_summary_line_each() {
    let files = model_files();
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let run = recc(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), files.len());
    insta::assert_snapshot!("check_models", run.stdout);
}

#[test]
fn check_reports_errors_and_exits_one() {
    let run = recc(&["check", "tests/corpus/errors/shape_mismatch_add.rec"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.is_empty());
    insta::assert_snapshot!("check_error", run.stderr);
}

#[test]
fn ir_prints_forward_and_gradient_graphs() {
    let run = recc(&["ir", "models/biased_mf.rec", "--grad", "--no-locations"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("grad p[%"), "{}", run.stdout);
    insta::assert_snapshot!("ir_biased_mf_grad", run.stdout);
    let dot = recc(&["ir", "models/mf.rec", "--dot"]);
    assert_eq!(dot.code, 0);
    assert!(dot.stdout.starts_with("digraph"), "{}", dot.stdout);
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let run = recc(&["check", "models/does_not_exist.rec"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot read models/does_not_exist.rec"),
        "{}",
        run.stderr
    );
    let run = recc(&["check"]);
    assert_eq!(run.code, 2);
}
