//! The error corpus: every file in `tests/corpus/errors/` is a model with
//! mistakes. Its first line names the diagnostic codes it must produce
//! (`# expect: recc::unknown-name, recc::arity`); the rendered report is
//! pinned as a golden snapshot, source first, Gleam-style.

use recc_compiler::compile;
use recc_tests::{display_name, rec_files, snapshot_settings, stem};

#[test]
fn every_corpus_file_reports_its_expected_errors() {
    let files = rec_files("tests/corpus/errors");
    assert!(
        files.len() >= 30,
        "the error corpus has only {} files",
        files.len()
    );
    let mut problems = Vec::new();
    for path in files {
        let name = display_name(&path);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected: Vec<&str> = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect:"))
            .map(|codes| {
                codes
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if expected.is_empty() {
            problems.push(format!("{name}: first line must be `# expect: CODE, ...`"));
            continue;
        }
        let compiled = compile(&name, &text);
        if !compiled.has_errors() {
            problems.push(format!("{name}: compiled without errors"));
            continue;
        }
        let found: Vec<&str> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.code)
            .collect();
        for code in &expected {
            if !found.contains(code) {
                problems.push(format!("{name}: expected {code}, found {found:?}"));
            }
        }
        for d in &compiled.diagnostics {
            if d.primary.span.file != compiled.root {
                problems.push(format!(
                    "{name}: `{}` points outside the user's file",
                    d.message
                ));
            }
        }
        let report = format!(
            "----- SOURCE CODE\n{text}\n----- ERROR\n{}",
            compiled.render_diagnostics()
        );
        let settings = snapshot_settings(&path, stem(&path));
        settings.bind(|| insta::assert_snapshot!("diagnostics", report));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
