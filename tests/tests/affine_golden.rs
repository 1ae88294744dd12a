//! Golden affine analysis: for every model in `models/`, which tables a
//! closed-form solver (ALS, Gibbs) can update row by row, and whether the
//! loss is squared error on the score (globals are analysed as one-row
//! tables: the solver fits them too). One snapshot lists them all, so a
//! change of verdict reads as one diff; review with `cargo insta review`.

use recc_compiler::affine::{analyse, solver_error, AffineReport, LossShape, Verdict};
use recc_compiler::source::{SourceMap, Span};
use recc_compiler::{compile, diagnostic, forward_graph};
use recc_tests::{display_name, rec_files};
use std::fmt::Write as _;

/// `file.rec:LINE:COL `text`` for a span, on one line.
fn located(sources: &SourceMap, span: Option<Span>) -> String {
    match span {
        Some(span) => {
            let text = sources.snippet(span).split_whitespace().collect::<Vec<_>>();
            format!("{} `{}`", sources.location(span), text.join(" "))
        }
        None => "(no source)".to_string(),
    }
}

fn describe(out: &mut String, sources: &SourceMap, report: &AffineReport) {
    let loss = match &report.loss {
        LossShape::SquaredError => "squared error on the score".to_string(),
        LossShape::NoScore => "no score".to_string(),
        LossShape::Other { span, .. } => {
            format!("not squared error: {}", located(sources, *span))
        }
    };
    let _ = writeln!(out, "  loss: {loss}");
    for table in &report.tables {
        let verdict = match &table.verdict {
            Verdict::Block => "block".to_string(),
            Verdict::NotInScore => "not in the score".to_string(),
            Verdict::NotAffine { reason, span, .. } => {
                format!("not affine: {reason} at {}", located(sources, *span))
            }
        };
        let global = if table.global { " (global)" } else { "" };
        let _ = writeln!(out, "  {}{global}: {verdict}", table.name);
    }
}

#[test]
fn every_model_has_a_golden_affine_analysis() {
    let models = rec_files("models");
    assert!(
        models.len() >= 13,
        "expected a model per family, found {}",
        models.len()
    );
    let mut out = String::new();
    let mut refusals = String::new();
    for path in models {
        let name = display_name(&path);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let compiled = compile(&name, &text);
        let model = compiled
            .model
            .as_ref()
            .unwrap_or_else(|| panic!("{name} does not check:\n{}", compiled.render_diagnostics()));
        let forward = forward_graph(model).unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = analyse(&forward);
        let _ = writeln!(out, "{name}");
        describe(&mut out, &compiled.sources, &report);
        if let Some(error) = solver_error(&forward, &report, "als", compiled.root) {
            let _ = writeln!(refusals, "----- {name}");
            refusals.push_str(&diagnostic::render(&compiled.sources, &[error]));
        }
    }
    insta::assert_snapshot!("affine_blocks", out);
    // What `solver: als` will say on each model it cannot fit.
    insta::assert_snapshot!("als_refusals", refusals);
}
