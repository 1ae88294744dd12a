//! The results page: sections of tables and notes, and every figure checked
//! against its target, gathered into one summary at the top.

use recc_runtime::modelfile::{write_atomic, ModelFileError};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

/// One figure the issue names, measured.
pub struct Check {
    pub figure: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// The pages `recc-zoo` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Page {
    /// `docs/RESULTS.md`: every model family's accuracy against its targets.
    Results,
    /// `docs/SPEED.md`: compile time, updates/s, memory, peers and wall times.
    Speed,
}

impl Page {
    pub fn title(self) -> &'static str {
        match self {
            Page::Results => "Results",
            Page::Speed => "Speed",
        }
    }

    pub fn default_out(self) -> &'static str {
        match self {
            Page::Results => "docs/RESULTS.md",
            Page::Speed => "docs/SPEED.md",
        }
    }

    fn intro(self) -> &'static str {
        match self {
            Page::Results => {
                "Every model family of `models/`, trained with the `fit` defaults in its file \
                 (no per-fold tuning, seeds as stated) on the shared datasets. This page is \
                 written by `bench/results.sh` and is regenerated from scratch by it; do not \
                 edit it by hand."
            }
            Page::Speed => {
                "How fast recc compiles and trains every model of `models/`, beside the peers \
                 measured in the same run on the same rows, against the hand-written loop, \
                 and the wall time of everyday commands against their targets. This page is \
                 written by `bench/speed.sh --page` and is regenerated from scratch by it; do \
                 not edit it by hand."
            }
        }
    }
}

/// A markdown table: a header row and data rows.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(&self.header));
        out.push_str(&line(&vec!["---".to_string(); self.header.len()]));
        for r in &self.rows {
            out.push_str(&line(r));
        }
    }
}

/// Prose and tables, in order.
pub enum Block {
    Text(String),
    Table(Table),
}

pub struct Section {
    pub title: String,
    pub blocks: Vec<Block>,
}

impl Section {
    pub fn new(title: &str) -> Section {
        Section {
            title: title.to_string(),
            blocks: Vec::new(),
        }
    }

    pub fn text(&mut self, s: impl Into<String>) {
        self.blocks.push(Block::Text(s.into()));
    }

    pub fn table(&mut self, t: Table) {
        self.blocks.push(Block::Table(t));
    }
}

#[derive(Default)]
pub struct Report {
    sections: Vec<Section>,
    checks: Vec<Check>,
    failures: Vec<(String, String)>,
}

impl Report {
    pub fn push(&mut self, s: Section) {
        self.sections.push(s);
    }

    /// Records a figure; `met` says whether it reached its target.
    pub fn check(&mut self, figure: &str, target: &str, measured: String, met: bool) {
        self.checks.push(Check {
            figure: figure.to_string(),
            target: target.to_string(),
            measured,
            met,
        });
    }

    pub fn failed(&mut self, section: &str, error: &str) {
        self.failures.push((section.to_string(), error.to_string()));
    }

    pub fn has_failures(&self) -> bool {
        !self.failures.is_empty()
    }

    pub fn met(&self) -> usize {
        self.checks.iter().filter(|c| c.met).count()
    }

    pub fn checked(&self) -> usize {
        self.checks.len()
    }

    pub fn render(&self, page: Page, setup: &str, seconds: f64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# {}\n\n{}\n", page.title(), page.intro());
        out.push_str(setup);
        let _ = writeln!(
            out,
            "\nThe whole run took {seconds:.0} s. Times below are wall-clock seconds of \
             the command on a shared 2-core machine and vary from run to run.\n"
        );
        out.push_str("## Figures against their targets\n\n");
        let mut t = Table::new(&["figure", "target", "measured", ""]);
        for c in &self.checks {
            t.row(vec![
                c.figure.clone(),
                c.target.clone(),
                c.measured.clone(),
                if c.met { "met" } else { "**not met**" }.to_string(),
            ]);
        }
        t.render(&mut out);
        let _ = writeln!(out, "\n{} of {} figures met.\n", self.met(), self.checked());
        if !self.failures.is_empty() {
            out.push_str("## Runs that failed\n\n");
            for (s, e) in &self.failures {
                let _ = writeln!(out, "- **{s}**: {e}");
            }
            out.push('\n');
        }
        for s in &self.sections {
            let _ = writeln!(out, "## {}\n", s.title);
            for b in &s.blocks {
                match b {
                    Block::Text(t) => {
                        out.push_str(t);
                        out.push_str("\n\n");
                    }
                    Block::Table(t) => {
                        t.render(&mut out);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }
}

/// Writes `text` to `path` through a temporary file beside it, so an
/// interrupted run never leaves half a page (the runtime's atomic writer:
/// the temporary files of killed runs are removed by the next one).
pub fn write_atomically(path: &Path, text: &str) -> Result<(), ModelFileError> {
    write_atomic(path, |w| w.write_all(text.as_bytes()))
}
