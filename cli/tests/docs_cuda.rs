//! Every example in docs/cuda.md is run, and its output must be the one the
//! page shows.
//!
//! An example is a ```` ```console ```` block: `$ recc ARGS` on its first
//! line, then what recc prints (standard output, then standard error). A
//! line `...` stands for any number of lines. A block right after the
//! comment `<!-- checked on a machine without a CUDA driver -->` is checked
//! only where the device probe finds no driver (CI has none); elsewhere the
//! test says it skipped it.

use recc_cuda::device::{self, Missing};
use std::path::PathBuf;
use std::process::Command;

const NO_DRIVER: &str = "<!-- checked on a machine without a CUDA driver -->";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

struct Example {
    line: usize,
    args: Vec<String>,
    expected: Vec<String>,
    needs_no_driver: bool,
}

fn examples(page: &str) -> Vec<Example> {
    let lines: Vec<&str> = page.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i] != "```console" {
            i += 1;
            continue;
        }
        let start = i;
        let needs_no_driver = start > 0 && lines[start - 1] == NO_DRIVER;
        let command = lines.get(i + 1).copied().unwrap_or_default();
        let args = command
            .strip_prefix("$ recc ")
            .and_then(shlex::split)
            .unwrap_or_else(|| panic!("docs/cuda.md:{}: not `$ recc ...`", i + 2));
        i += 2;
        let mut expected = Vec::new();
        while i < lines.len() && lines[i] != "```" {
            expected.push(lines[i].to_string());
            i += 1;
        }
        found.push(Example {
            line: start + 1,
            args,
            expected,
            needs_no_driver,
        });
        i += 1;
    }
    found
}

/// Whether `got` matches `want`, where a `...` line in `want` matches any
/// run of lines.
fn matches(want: &[String], got: &[&str]) -> bool {
    match want.split_first() {
        None => got.is_empty(),
        Some((w, rest)) if w == "..." => (0..=got.len()).any(|k| matches(rest, &got[k..])),
        Some((w, rest)) => got.first() == Some(&w.as_str()) && matches(rest, &got[1..]),
    }
}

#[test]
fn every_example_in_the_cuda_page_prints_what_the_page_shows() {
    let page = std::fs::read_to_string(workspace().join("docs/cuda.md"))
        .unwrap_or_else(|e| panic!("docs/cuda.md: {e}"));
    let all = examples(&page);
    assert!(all.len() >= 2, "docs/cuda.md has {} examples", all.len());
    let no_driver = matches!(device::probe(), Err(Missing::Driver { .. }));
    for ex in &all {
        if ex.needs_no_driver && !no_driver {
            eprintln!(
                "docs/cuda.md:{}: skipped: this machine has a CUDA driver",
                ex.line
            );
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_recc"))
            .args(&ex.args)
            .current_dir(workspace())
            .env("NO_COLOR", "1")
            .output()
            .unwrap_or_else(|e| panic!("cannot run recc: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<&str> = text.lines().collect();
        assert!(
            matches(&ex.expected, &got),
            "docs/cuda.md:{}: `recc {}` printed\n{text}\nbut the page shows\n{}",
            ex.line,
            ex.args.join(" "),
            ex.expected.join("\n")
        );
    }
}

#[test]
fn an_ellipsis_matches_any_run_of_lines_and_nothing_else_does() {
    let want: Vec<String> = ["a", "...", "d"].iter().map(|s| s.to_string()).collect();
    assert!(matches(&want, &["a", "d"]));
    assert!(matches(&want, &["a", "b", "c", "d"]));
    assert!(!matches(&want, &["a", "b"]));
    assert!(!matches(&want, &["x", "d"]));
}
