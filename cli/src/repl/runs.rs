//! The training runs of a session: what each trained (the source, the data
//! and the settings) and what it scored, to list (`:runs`), put side by
//! side (`:compare`) and tell apart (`:diff`).

use std::collections::BTreeMap;
use std::hash::Hasher;

/// One training run.
#[derive(Clone, Debug)]
pub struct Run {
    /// 1, 2, ... in the order the session trained them.
    pub id: usize,
    pub model: String,
    /// The source it trained, as `:model` showed it then.
    pub source: String,
    /// Data, split and fit settings, as text.
    pub settings: BTreeMap<String, String>,
    /// Test metrics (none when the run was interrupted).
    pub metrics: BTreeMap<String, f64>,
    /// Wall time of the training, seconds.
    pub seconds: f64,
    /// Set when training stopped early: what was kept.
    pub note: Option<String>,
}

/// A short, stable fingerprint of a source (64-bit FNV-1a, the first eight
/// hex digits): equal sources, equal hashes, on every machine and release.
pub fn source_hash(text: &str) -> String {
    let mut h = fnv::FnvHasher::default();
    h.write(text.as_bytes());
    format!("{:016x}", h.finish())[..8].to_string()
}

/// The settings `:compare` always shows; the others only where they differ.
const ALWAYS_COMPARED: &[&str] = &["data", "split", "optimizer", "lr", "epochs", "seed"];

impl Run {
    /// `sgd lr 0.01 · 3 epochs`: what people change most.
    fn settings_summary(&self) -> String {
        let get = |k: &str| self.settings.get(k).map_or("?", String::as_str);
        format!(
            "{} lr {} · {} epochs",
            get("optimizer"),
            get("lr"),
            get("epochs")
        )
    }

    fn metrics_summary(&self) -> String {
        if let Some(note) = &self.note {
            return note.clone();
        }
        self.metrics
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect::<Vec<_>>()
            .join("  ")
    }
}

/// Seconds as every table shows them.
pub fn format_seconds(seconds: f64) -> String {
    format!("{seconds:.1} s")
}

/// Rows of cells laid out in columns two spaces apart.
fn columns(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..width)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `:runs`: one line per run.
pub fn table(runs: &[Run]) -> String {
    if runs.is_empty() {
        return "no runs yet: :train makes one\n".into();
    }
    let mut rows = vec![["run", "model", "source", "settings", "metrics", "time"]
        .map(String::from)
        .to_vec()];
    for r in runs {
        rows.push(vec![
            r.id.to_string(),
            r.model.clone(),
            source_hash(&r.source),
            r.settings_summary(),
            r.metrics_summary(),
            format_seconds(r.seconds),
        ]);
    }
    columns(&rows)
}

/// Find run `name` (its number, as `:runs` lists it).
pub fn find<'a>(runs: &'a [Run], name: &str) -> Result<&'a Run, String> {
    let id: usize = name
        .trim_start_matches('#')
        .parse()
        .map_err(|_| format!("`{name}` is not a run number; :runs lists them"))?;
    runs.iter()
        .find(|r| r.id == id)
        .ok_or_else(|| match runs.len() {
            0 => format!("no run {id}: nothing has been trained yet"),
            1 => format!("no run {id}: there is one run, 1"),
            n => format!("no run {id}: the runs are 1 to {n}"),
        })
}

/// `:compare A B`: two runs side by side, with the change in each metric.
pub fn compare(a: &Run, b: &Run) -> String {
    let mut rows = vec![vec![
        String::new(),
        format!("run {}", a.id),
        format!("run {}", b.id),
        "change".into(),
    ]];
    rows.push(vec![
        "model".into(),
        a.model.clone(),
        b.model.clone(),
        String::new(),
    ]);
    rows.push(vec![
        "source".into(),
        source_hash(&a.source),
        source_hash(&b.source),
        if a.source == b.source {
            "same".into()
        } else {
            ":diff shows it".into()
        },
    ]);
    let mut keys: Vec<&String> = a.settings.keys().chain(b.settings.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (x, y) = (a.settings.get(k), b.settings.get(k));
        if x == y && !ALWAYS_COMPARED.contains(&k.as_str()) {
            continue;
        }
        let cell = |v: Option<&String>| v.cloned().unwrap_or_else(|| "-".into());
        rows.push(vec![
            k.clone(),
            cell(x),
            cell(y),
            if x == y {
                String::new()
            } else {
                "changed".into()
            },
        ]);
    }
    let mut metrics: Vec<&String> = a.metrics.keys().chain(b.metrics.keys()).collect();
    metrics.sort();
    metrics.dedup();
    for k in metrics {
        let (x, y) = (a.metrics.get(k), b.metrics.get(k));
        let cell = |v: Option<&f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
        let change = match (x, y) {
            (Some(x), Some(y)) => format!("{:+.4}", y - x),
            _ => String::new(),
        };
        rows.push(vec![k.clone(), cell(x), cell(y), change]);
    }
    rows.push(vec![
        "time".into(),
        format_seconds(a.seconds),
        format_seconds(b.seconds),
        String::new(),
    ]);
    columns(&rows)
}

/// `:diff A B`: what changed in the source from run A to run B.
pub fn diff(a: &Run, b: &Run) -> String {
    if a.source == b.source {
        return format!("runs {} and {} trained the same source\n", a.id, b.id);
    }
    similar::TextDiff::from_lines(&a.source, &b.source)
        .unified_diff()
        .context_radius(2)
        .header(
            &format!("run {} ({})", a.id, a.model),
            &format!("run {} ({})", b.id, b.model),
        )
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: usize, source: &str, rmse: f64) -> Run {
        Run {
            id,
            model: "mf".into(),
            source: source.into(),
            settings: BTreeMap::from([
                ("epochs".to_string(), "3".to_string()),
                ("lr".to_string(), "0.005".to_string()),
            ]),
            metrics: BTreeMap::from([("rmse".to_string(), rmse)]),
            seconds: 0.25,
            note: None,
        }
    }

    #[test]
    fn the_hash_is_stable_and_tells_sources_apart() {
        assert_eq!(source_hash("model mf\n"), source_hash("model mf\n"));
        assert_ne!(source_hash("model mf\n"), source_hash("model mf2\n"));
        assert_eq!(source_hash("").len(), 8);
        // FNV-1a of nothing is its offset basis.
        assert_eq!(source_hash(""), "cbf29ce4");
    }

    #[test]
    fn compare_shows_the_change_in_each_metric() {
        let text = compare(&run(1, "a\n", 0.95), &run(2, "b\n", 0.93));
        let rmse = text
            .lines()
            .find(|l| l.starts_with("rmse"))
            .unwrap_or_default();
        let cells: Vec<&str> = rmse.split_whitespace().collect();
        assert_eq!(cells, ["rmse", "0.9500", "0.9300", "-0.0200"], "{text}");
        assert!(text.contains(":diff shows it"), "{text}");
    }

    #[test]
    fn diff_shows_the_changed_lines() {
        let d = diff(&run(1, "x\ny\n", 1.0), &run(2, "x\nz\n", 1.0));
        assert!(d.contains("-y\n+z\n"), "{d}");
        assert!(d.contains("--- run 1 (mf)"), "{d}");
    }

    #[test]
    fn runs_are_found_by_number_with_a_clear_miss() {
        let runs = vec![run(1, "", 1.0), run(2, "", 1.0)];
        assert_eq!(find(&runs, "2").map(|r| r.id), Ok(2));
        assert_eq!(find(&runs, "#1").map(|r| r.id), Ok(1));
        assert_eq!(
            find(&runs, "7").map(|r| r.id),
            Err("no run 7: the runs are 1 to 2".into())
        );
        assert!(find(&runs, "best").is_err());
    }
}
