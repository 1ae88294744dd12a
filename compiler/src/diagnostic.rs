//! Compiler diagnostics and their rendering.
//!
//! Stages return plain [`Diagnostic`] values; rendering through miette happens
//! only here, with a fixed theme and width so golden snapshots are stable.

use crate::source::{SourceMap, Span};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// A labelled place in the source.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

/// One problem found in a model, pointing at the source.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable, greppable name such as `recc::shape-mismatch`.
    pub code: &'static str,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub help: Option<String>,
    /// Free-form notes, e.g. the chain of calls an error was found through.
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            primary: Label {
                span,
                text: String::new(),
            },
            secondary: Vec::new(),
            help: None,
            notes: Vec::new(),
        }
    }

    /// Text printed under the primary span.
    pub fn label(mut self, text: impl Into<String>) -> Diagnostic {
        self.primary.text = text.into();
        self
    }

    pub fn with_secondary(mut self, span: Span, text: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label {
            span,
            text: text.into(),
        });
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Sort diagnostics by file and position, dropping exact duplicates, so a
/// report reads top to bottom like the file.
pub fn sort(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| {
        (
            a.primary.span.file,
            a.primary.span.start,
            a.primary.span.end,
        )
            .cmp(&(
                b.primary.span.file,
                b.primary.span.start,
                b.primary.span.end,
            ))
    });
    diagnostics.dedup();
}

/// Render diagnostics as text: no colour, fixed width, Unicode box drawing.
pub fn render(sources: &SourceMap, diagnostics: &[Diagnostic]) -> String {
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    for d in diagnostics {
        let report = Rendered::new(sources, d);
        if handler.render_report(&mut out, &report).is_err() {
            // Rendering into a String cannot fail in practice; fall back to plain text.
            out.push_str(&format!("error: {}\n", d.message));
        }
    }
    out
}

/// A diagnostic paired with its source text, in the shape miette renders.
#[derive(Debug)]
struct Rendered {
    code: &'static str,
    severity: Severity,
    message: String,
    source: NamedSource<String>,
    labels: Vec<LabeledSpan>,
    help: Option<String>,
}

impl Rendered {
    fn new(sources: &SourceMap, d: &Diagnostic) -> Rendered {
        let file = sources.get(d.primary.span.file);
        let mut labels = Vec::new();
        let mut help_lines: Vec<String> = Vec::new();
        let to_span = |s: Span| SourceSpan::new((s.start as usize).into(), s.len());
        labels.push(LabeledSpan::new_primary_with_span(
            non_empty(&d.primary.text),
            to_span(d.primary.span),
        ));
        for l in &d.secondary {
            if l.span.file == d.primary.span.file {
                labels.push(LabeledSpan::new_with_span(
                    non_empty(&l.text),
                    to_span(l.span),
                ));
            } else {
                help_lines.push(format!("{} ({})", l.text, sources.location(l.span)));
            }
        }
        help_lines.extend(d.notes.iter().cloned());
        if let Some(h) = &d.help {
            help_lines.push(h.clone());
        }
        Rendered {
            code: d.code,
            severity: d.severity,
            message: d.message.clone(),
            source: NamedSource::new(file.name.clone(), file.text.clone()),
            labels,
            help: if help_lines.is_empty() {
                None
            } else {
                Some(help_lines.join("\n"))
            },
        }
    }
}

fn non_empty(s: &str) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s.to_string())
    }
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display + 'a>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
}

/// Names people bring from other tools, and what recc calls them.
const SYNONYMS: &[(&str, &str)] = &[
    ("gaussian", "normal"),
    ("gauss", "normal"),
    ("bernoulli", "bernoulli_logit"),
    ("binomial", "bernoulli_logit"),
    ("poisson", "poisson_log"),
    ("zero", "zeros"),
    ("adamw", "adam"),
    ("warp", "hinge"),
    ("rmse", "mse"),
    ("l2", "sq"),
    ("inner", "dot"),
    ("matmul", "@"),
    ("n_epochs", "epochs"),
    ("learning_rate", "lr"),
    ("batch_size", "batch"),
];

/// The closest candidate by edit distance (or a known synonym), for
/// `did you mean ...?` hints.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let candidates: Vec<&'a str> = candidates.into_iter().collect();
    if let Some((_, target)) = SYNONYMS.iter().find(|(from, _)| *from == name) {
        if let Some(c) = candidates.iter().find(|c| *c == target) {
            return Some(c);
        }
    }
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| {
            // A word and its plural (`loss`, `losses`) are as near as a typo.
            let distance = if is_plural_of(name, c) || is_plural_of(c, name) {
                limit
            } else {
                edit_distance(name, c)
            };
            (distance, c)
        })
        // Replacing every letter (`r` for `i`) is no near miss.
        .filter(|(d, _)| *d <= limit && *d < name.chars().count())
        .min()
        .map(|(_, c)| c)
}

/// Is `plural` `word` with `s` or `es` added (`losses`, `users`)?
fn is_plural_of(word: &str, plural: &str) -> bool {
    word.len() >= 3
        && plural
            .strip_prefix(word)
            .is_some_and(|tail| tail == "s" || tail == "es")
}

/// Optimal-string-alignment distance: Levenshtein plus swapping two
/// neighbouring letters as one edit (`bais` → `bias`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_a_near_name() {
        assert_eq!(closest("epoch", ["epochs", "seed", "lr"]), Some("epochs"));
        assert_eq!(closest("zzz", ["epochs", "seed"]), None);
        assert_eq!(closest("bais", ["bias", "b"]), Some("bias"));
        assert_eq!(closest("rleu", ["relu", "exp"]), Some("relu"));
        assert_eq!(closest("gaussian", ["normal", "laplace"]), Some("normal"));
        assert_eq!(closest("gaussian", ["laplace"]), None);
        assert_eq!(closest("loss", ["links", "losses"]), Some("losses"));
        assert_eq!(closest("users", ["user", "item"]), Some("user"));
        assert_eq!(closest("r", ["i", "u", "R"]), None);
    }
}
