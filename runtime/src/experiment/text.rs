//! Figures as text, the same wherever they are shown.

use crate::hierarchy::HierarchyReport;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// `mae 0.7321  rmse 0.9312`: every figure to four places, by name.
pub fn format_metrics(metrics: &BTreeMap<String, f64>) -> String {
    metrics
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// `mae 0.7321 ± 0.0102  rmse 0.9312 ± 0.0150`: each metric's mean and
/// standard deviation over folds (`std` names the same metrics, in the same
/// order, as `mean`).
pub fn format_mean_std(mean: &BTreeMap<String, f64>, std: &BTreeMap<String, f64>) -> String {
    mean.iter()
        .zip(std.values())
        .map(|((k, m), s)| format!("{k} {m:.4} ± {s:.4}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// `hierarchy: parent_rank 1.0312  norm_by_depth 0.0100 0.4211 ...`
pub fn format_hierarchy(h: &HierarchyReport) -> String {
    let norms: Vec<String> = h.norm_by_depth.iter().map(|n| format!("{n:.4}")).collect();
    format!(
        "hierarchy: parent_rank {:.4}  norm_by_depth {}",
        h.parent_rank,
        norms.join(" ")
    )
}

/// `text` safe to print to a terminal: ids and labels come from data, and a
/// control character in one (an escape sequence above all) would be obeyed
/// by the terminal instead of shown. Each is written as a Rust escape
/// (`\u{1b}`, `\n`); JSON output escapes them by itself.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}
