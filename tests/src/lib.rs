//! Shared helpers for the cross-stage tests in `tests/tests/`: where the
//! corpus lives, random parameters and examples for a graph, and a
//! finite-difference gradient check against the reference evaluator.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recc_compiler::interp::{evaluate, EvalError, Example, Params, SlotValue};
use recc_compiler::ir::{Graph, SlotKind, TableRole};
use recc_compiler::model::Constraint;
use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `.rec` files in a folder of the workspace, sorted.
pub fn rec_files(folder: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(folder))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "rec"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The path as shown in diagnostics and snapshots: relative to the root.
pub fn display_name(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Small domains so examples can hit every edge: the first and last member.
pub const DOMAIN_SIZE: usize = 6;

/// Random parameters in a range where every function is smooth and finite:
/// ball-constrained rows stay well inside the unit ball, log-variances small.
pub fn random_params(g: &Graph, rng: &mut StdRng) -> Params {
    let sizes = vec![DOMAIN_SIZE; g.domains.len()];
    let mut params = match Params::zeros(g, &sizes) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    for (t, table) in params.tables.iter_mut().zip(&g.tables) {
        let (lo, hi) = match (table.constraint, table.role) {
            (Constraint::Ball, _) => (-0.3, 0.3),
            (Constraint::Nonneg, _) => (0.05, 0.5),
            (_, TableRole::LogVar) => (-2.0, -0.5),
            _ => (-0.5, 0.5),
        };
        t.mapv_inplace(|_| rng.random_range(lo..hi));
    }
    params
}

/// A random example for `g`: indices anywhere in their domains, positive
/// reals (counts and ratings), bags of one to four weighted members.
pub fn random_example(g: &Graph, rng: &mut StdRng) -> Example {
    let slots = g
        .slots
        .iter()
        .map(|s| match &s.kind {
            SlotKind::Index(_) | SlotKind::Negative { .. } => {
                SlotValue::Index(rng.random_range(0..DOMAIN_SIZE))
            }
            SlotKind::Real => SlotValue::Real(rng.random_range(0.5..5.0)),
            SlotKind::InverseCount(_) => SlotValue::Real(1.0 / rng.random_range(1..=100) as f64),
            SlotKind::Bag { .. } => {
                let n = rng.random_range(1..=4);
                SlotValue::Bag(
                    (0..n)
                        .map(|_| (rng.random_range(0..DOMAIN_SIZE), rng.random_range(0.2..1.5)))
                        .collect(),
                )
            }
            SlotKind::Noise(shape) | SlotKind::Pooled { shape, .. } | SlotKind::Dense(shape) => {
                SlotValue::Noise(
                    (0..shape.len())
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect(),
                )
            }
        })
        .collect();
    Example { slots }
}

/// One disagreement between analytic and numeric gradients.
#[derive(Debug)]
pub struct Mismatch {
    pub table: String,
    pub row: usize,
    pub lane: usize,
    pub analytic: f64,
    pub numeric: f64,
}

/// Compare every gradient `g` reports with central differences of the loss.
/// Also perturbs rows the example touches but `g` reports no gradient for, so
/// a missing gradient is caught too. Relative error is measured against
/// `max(|analytic|, |numeric|, 1e-3)`.
pub fn finite_difference_check(
    g: &Graph,
    params: &Params,
    example: &Example,
    tolerance: f64,
) -> Result<Vec<Mismatch>, EvalError> {
    let base = evaluate(g, params, example)?;
    let h = 1e-6;
    let mut mismatches = Vec::new();
    for (t, table) in params.tables.iter().enumerate() {
        // Big tables (an MLP's weight matrix) get every 7th lane checked: the
        // gradient of a lane does not depend on its position, only its formula.
        let stride = if table.ncols() > 256 { 7 } else { 1 };
        for row in 0..table.nrows() {
            for lane in (0..table.ncols()).step_by(stride) {
                let mut p = params.clone();
                p.tables[t][(row, lane)] += h;
                let up = evaluate(g, &p, example)?.loss;
                p.tables[t][(row, lane)] -= 2.0 * h;
                let down = evaluate(g, &p, example)?.loss;
                let numeric = (up - down) / (2.0 * h);
                let analytic = base
                    .gradients
                    .rows
                    .get(&(recc_compiler::ir::TableId(t as u32), row))
                    .map_or(0.0, |v| v[lane]);
                let scale = analytic.abs().max(numeric.abs()).max(1e-3);
                // A NaN on either side is a mismatch, not a pass.
                let error = (analytic - numeric).abs() / scale;
                if error.is_nan() || error > tolerance {
                    mismatches.push(Mismatch {
                        table: g.tables[t].name.clone(),
                        row,
                        lane,
                        analytic,
                        numeric,
                    });
                }
            }
        }
    }
    Ok(mismatches)
}

/// Snapshot settings for one corpus file: the snapshot is named
/// `NAME@SUFFIX.snap` and records the file it came from.
pub fn snapshot_settings(path: &Path, suffix: String) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_suffix(suffix);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_input_file(path);
    settings.set_snapshot_path(root().join("tests/tests/snapshots"));
    settings
}

/// The file's stem (`biased_mf` for `models/biased_mf.rec`).
pub fn stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("file")
        .to_string()
}

/// A seeded generator, so every test run sees the same numbers.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}
