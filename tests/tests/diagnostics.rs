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

/// A UTF-8 byte order mark, as some editors write, is skipped: every model
/// checks with one, and diagnostics still point at the right column.
#[test]
fn a_byte_order_mark_is_skipped() {
    use recc_compiler::parse::parse;
    use recc_compiler::source::FileId;
    for path in rec_files("models") {
        let name = display_name(&path);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let with_bom = format!("\u{feff}{text}");
        let compiled = compile(&name, &with_bom);
        assert!(
            compiled.model.is_some(),
            "{name} with a byte order mark:\n{}",
            compiled.render_diagnostics()
        );
        // Parsed alone, spans stay offsets into the text as given.
        let plain = parse(FileId(0), &text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let marked = parse(FileId(0), &with_bom).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let bom = 3;
        assert_eq!(marked.items.len(), plain.items.len(), "{name}");
        for (m, p) in marked.items.iter().zip(&plain.items) {
            assert_eq!(m.span.start, p.span.start + bom, "{name}");
        }
    }
    let compiled = compile("bom.rec", "\u{feff}input r: real\nloss sq(rr)\n");
    let report = compiled.render_diagnostics();
    assert!(report.contains("unknown name `rr`"), "{report}");
    assert!(report.contains("bom.rec:2:9]"), "{report}");
    let first_line = compile("bom.rec", "\u{feff}loss sq(rr)\n").render_diagnostics();
    assert!(first_line.contains("bom.rec:1:9]"), "{first_line}");
}

/// Inputs and parameters nothing reads are warned about (the model still
/// compiles); the warnings are pinned like the errors.
#[test]
fn unused_inputs_and_params_warn() {
    let text = "model unused
use stdlib.losses

input u: user
input i: item
input r: real
input o: occupation

param p[user]: vec(8)
param q[item]: vec(8)
param w[occupation]: real
param b: real

let R(u, i) = dot(p[u], q[i])
loss mse(R(u, i), r)
";
    let compiled = compile("unused.rec", text);
    assert!(!compiled.has_errors(), "{}", compiled.render_diagnostics());
    let codes: Vec<(&str, String)> = compiled
        .diagnostics
        .iter()
        .map(|d| (d.code, d.message.clone()))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("recc::unused-input", "input `o` is never used".to_string()),
            (
                "recc::unused-param",
                "parameter `w` is never used".to_string()
            ),
            (
                "recc::unused-param",
                "parameter `b` is never used".to_string()
            ),
        ]
    );
    insta::assert_snapshot!(
        "unused_warnings",
        format!(
            "----- SOURCE CODE\n{text}\n----- WARNINGS\n{}",
            compiled.render_diagnostics()
        )
    );
}
