//! The model being built at the prompt: its source as a list of
//! statements, each change checked before it is kept.
//!
//! Statements typed at the prompt extend the source; one that defines a name
//! the source already has (or sets the loss, the `fit` settings, the model's
//! name, a prior on the same rows) replaces the old statement in place. A
//! change that does not check leaves the source as it was, and its errors
//! point into what was typed.

use recc_compiler::ast::ItemKind;
use recc_compiler::diagnostic::{self, Diagnostic, Label};
use recc_compiler::model::Model;
use recc_compiler::source::{FileId, SourceMap, Span};
use std::path::PathBuf;

/// Warnings of declarations nothing reads yet: a model typed a statement at
/// a time declares its inputs and tables before the lines that use them, so
/// these are shown for whole sources (a file opened or edited) only.
const NOT_YET_USED: [&str; 2] = ["recc::unused-input", "recc::unused-param"];

/// How typed text is named in error reports.
pub const TYPED: &str = "input";

/// The source name of a model begun at the prompt; its stem names the model
/// until a `model` statement does.
pub const UNNAMED: &str = "repl.rec";

/// The one error a source being built may have: it has no loss yet.
const NO_LOSS: &str = "recc::no-loss";

/// What a statement sets: a second statement with the same key replaces the
/// first. Penalties add up, so none has a key.
#[derive(Clone, Debug, PartialEq)]
enum Key {
    ModelName,
    Use(String),
    /// Inputs, params, lets and fns share one namespace.
    Name(String),
    /// `loss` or a likelihood `r ~ ...`: one objective at a time.
    Objective,
    Fit,
    /// A prior on the rows written.
    Prior(String),
    Penalty,
}

impl Key {
    fn replaces(&self, other: &Key) -> bool {
        *self != Key::Penalty && self == other
    }

    /// How a replacement is announced.
    fn describe(&self) -> String {
        match self {
            Key::ModelName => "renamed the model".into(),
            Key::Use(path) => format!("`use {path}` was already there"),
            Key::Name(name) => format!("redefined `{name}`"),
            Key::Objective => "replaced the loss".into(),
            Key::Fit => "replaced the `fit` settings".into(),
            Key::Prior(target) => format!("replaced the prior on `{target}`"),
            Key::Penalty => "added a penalty".into(),
        }
    }
}

#[derive(Clone, Debug)]
struct Statement {
    /// Blank lines and comments before the statement, kept so that a loaded
    /// file is written back as it was.
    lead: String,
    text: String,
    key: Key,
    /// Where the statement starts in the text being applied, if it is new.
    typed_at: Option<usize>,
}

/// The current model source.
#[derive(Clone, Debug)]
pub struct Buffer {
    /// Shown in reports and IR comments; its stem names a model that has no
    /// `model` statement.
    pub name: String,
    /// The file the source came from, for `:reload`.
    pub file: Option<PathBuf>,
    statements: Vec<Statement>,
    /// Comments after the last statement of a loaded file.
    tail: String,
    /// The checked model, once the source has a loss.
    model: Option<Model>,
}

/// What a change did, for the prompt to say.
pub struct Applied {
    /// One line per statement that replaced an earlier one.
    pub replaced: Vec<String>,
    /// Warnings about what was typed, rendered.
    pub warnings: String,
}

impl Default for Buffer {
    fn default() -> Buffer {
        Buffer {
            name: UNNAMED.into(),
            file: None,
            statements: Vec::new(),
            tail: String::new(),
            model: None,
        }
    }
}

/// Where a typed statement sits in the candidate source and in what was typed.
struct Placed {
    in_source: std::ops::Range<usize>,
    in_typed: usize,
}

impl Buffer {
    /// The source as it would be written to a file.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for s in &self.statements {
            text.push_str(&s.lead);
            text.push_str(&s.text);
        }
        text.push_str(&self.tail);
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// The checked model, when the source is complete.
    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// Replace the whole source with `text` (a file, or an edit of the
    /// source). On errors, the report is returned and nothing changes; on
    /// success, the rendered warnings.
    pub fn replace_all(&mut self, name: &str, text: &str) -> Result<String, String> {
        let text = text
            .strip_prefix(recc_compiler::BYTE_ORDER_MARK)
            .unwrap_or(text);
        let compiled = recc_compiler::compile(name, text);
        let blocking = blocking_errors(&compiled.diagnostics);
        if !blocking.is_empty() {
            return Err(diagnostic::render(&compiled.sources, &blocking));
        }
        let (statements, tail) = split_statements(text, false)?;
        let warnings: Vec<Diagnostic> = compiled
            .diagnostics
            .iter()
            .filter(|d| !d.is_error())
            .cloned()
            .collect();
        self.name = name.to_string();
        self.statements = statements;
        self.tail = tail;
        self.model = compiled.model;
        Ok(diagnostic::render(&compiled.sources, &warnings))
    }

    /// Forget the source: an empty model begun at the prompt.
    pub fn clear(&mut self) {
        *self = Buffer::default();
    }

    /// Add the statements of `typed` to the source, each replacing the one
    /// with its key. Nothing changes unless the result checks.
    pub fn apply(&mut self, typed: &str) -> Result<Applied, String> {
        let (typed_statements, typed_tail) = split_statements(typed, true)?;
        let mut candidate = self.statements.clone();
        for s in &mut candidate {
            s.typed_at = None;
        }
        let mut replaced = Vec::new();
        let count = typed_statements.len();
        for (k, mut statement) in typed_statements.into_iter().enumerate() {
            if k + 1 == count && !typed_tail.trim().is_empty() {
                // A comment after the last statement stays with it.
                statement.text.push_str(typed_tail.trim_end());
            }
            match candidate
                .iter()
                .position(|s| statement.key.replaces(&s.key))
            {
                Some(i) => {
                    replaced.push(statement.key.describe());
                    statement.lead = std::mem::take(&mut candidate[i].lead);
                    let objective = statement.key == Key::Objective;
                    candidate[i] = statement;
                    if objective {
                        // One objective: any other loss goes with the old one.
                        let mut j = 0;
                        candidate.retain(|s| {
                            let keep = j == i || s.key != Key::Objective;
                            j += 1;
                            keep
                        });
                    }
                }
                None => {
                    statement.lead = if candidate.is_empty() && self.tail.is_empty() {
                        String::new()
                    } else {
                        "\n".into()
                    };
                    candidate.push(statement);
                }
            }
        }
        // Lay the candidate out, noting where each typed statement landed.
        let mut text = String::new();
        let mut placed = Vec::new();
        for s in &candidate {
            text.push_str(&s.lead);
            let start = text.len();
            text.push_str(&s.text);
            if let Some(offset) = s.typed_at {
                placed.push(Placed {
                    in_source: start..text.len(),
                    in_typed: offset,
                });
            }
        }
        text.push_str(&self.tail);
        let compiled = recc_compiler::compile(&self.name, &text);
        let blocking = blocking_errors(&compiled.diagnostics);
        if !blocking.is_empty() {
            return Err(render_located(
                &compiled.sources,
                compiled.root,
                &blocking,
                typed,
                &placed,
            ));
        }
        // Warnings about the rest of the source were shown when it was
        // typed; a source still being built (no loss yet) is not warned
        // about what it lacks, nor about a declaration the next line may
        // be about to use.
        let complete = compiled.model.is_some();
        let warnings: Vec<Diagnostic> = compiled
            .diagnostics
            .iter()
            .filter(|d| {
                complete
                    && !d.is_error()
                    && !NOT_YET_USED.contains(&d.code)
                    && d.primary.span.file == compiled.root
                    && placed
                        .iter()
                        .any(|p| p.in_source.contains(&(d.primary.span.start as usize)))
            })
            .cloned()
            .collect();
        let warnings = render_located(&compiled.sources, compiled.root, &warnings, typed, &placed);
        self.statements = candidate;
        self.model = compiled.model;
        Ok(Applied { replaced, warnings })
    }
}

/// The errors that keep a source from being taken: all but a missing
/// objective, which a model still being written may lack.
fn blocking_errors(diagnostics: &[Diagnostic]) -> Vec<Diagnostic> {
    diagnostics
        .iter()
        .filter(|d| d.is_error() && d.code != NO_LOSS)
        .cloned()
        .collect()
}

/// Split text into statements, and say what follows the last one. From a
/// file (`typed` false) each statement keeps the comments before it; from
/// typed text each is marked with its offset in it instead, and leading
/// blank lines and comments are dropped.
fn split_statements(text: &str, typed: bool) -> Result<(Vec<Statement>, String), String> {
    let mut sources = SourceMap::new();
    let id = sources.add(TYPED, text);
    let file = recc_compiler::parse::parse(id, text)
        .map_err(|errors| diagnostic::render(&sources, &errors))?;
    let mut statements = Vec::new();
    let mut end = 0;
    for item in &file.items {
        let (start, stop) = trimmed(text, item.span);
        let lead = if typed {
            ""
        } else {
            text.get(end..start).unwrap_or_default()
        };
        statements.push(Statement {
            lead: lead.to_string(),
            text: text.get(start..stop).unwrap_or_default().to_string(),
            key: key_of(&item.kind, &sources, item.span),
            typed_at: typed.then_some(start),
        });
        end = stop;
    }
    Ok((statements, text.get(end..).unwrap_or_default().to_string()))
}

/// A statement's byte range without the blank space its span may end with,
/// which belongs before the next statement.
fn trimmed(text: &str, span: Span) -> (usize, usize) {
    let (start, stop) = (span.start as usize, span.end as usize);
    let body = text.get(start..stop).unwrap_or_default();
    (start, start + body.trim_end().len())
}

fn key_of(kind: &ItemKind, sources: &SourceMap, span: Span) -> Key {
    match kind {
        ItemKind::Model(_) => Key::ModelName,
        ItemKind::Use(path) => Key::Use(
            path.iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join("."),
        ),
        ItemKind::Input { name, .. }
        | ItemKind::Param { name, .. }
        | ItemKind::Let { name, .. }
        | ItemKind::Fn { name, .. } => Key::Name(name.name.clone()),
        ItemKind::Loss { .. } | ItemKind::Likelihood { .. } => Key::Objective,
        ItemKind::Fit(_) => Key::Fit,
        ItemKind::Prior { target, .. } => {
            // The rows as written, spaces aside: `prior p[u] ~` and
            // `prior p[ u ] ~` are one prior.
            let written: String = sources
                .snippet(target.span)
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if written.is_empty() {
                Key::Prior(sources.snippet(span).to_string())
            } else {
                Key::Prior(written)
            }
        }
        ItemKind::Penalty(_) => Key::Penalty,
    }
}

/// Render `diagnostics` with every place inside a typed statement shown in
/// the typed text (`input:1:9`), and the rest in the source.
fn render_located(
    sources: &SourceMap,
    root: FileId,
    diagnostics: &[Diagnostic],
    typed: &str,
    placed: &[Placed],
) -> String {
    let mut shown = SourceMap::new();
    let mut files: Vec<(FileId, FileId)> = Vec::new();
    let typed_id = shown.add(TYPED, typed);
    let mut map_span = |span: Span| -> Span {
        if span.file == root {
            let (start, end) = (span.start as usize, span.end as usize);
            if let Some(p) = placed
                .iter()
                .find(|p| p.in_source.contains(&start) && end <= p.in_source.end)
            {
                let shift = |at: usize| at - p.in_source.start + p.in_typed;
                return Span::new(typed_id, shift(start), shift(end));
            }
        }
        let file = match files.iter().find(|(from, _)| *from == span.file) {
            Some((_, to)) => *to,
            None => {
                let f = sources.get(span.file);
                let to = shown.add(f.name.clone(), f.text.clone());
                files.push((span.file, to));
                to
            }
        };
        Span { file, ..span }
    };
    let moved: Vec<Diagnostic> = diagnostics
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.primary = Label {
                span: map_span(d.primary.span),
                text: d.primary.text,
            };
            for label in &mut d.secondary {
                label.span = map_span(label.span);
            }
            d
        })
        .collect();
    diagnostic::render(&shown, &moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MF: &[&str] = &[
        "use stdlib.losses",
        "input u: user",
        "input i: item",
        "input r: real",
        "param p[user]: vec(4) init normal(0, 0.1)",
        "param q[item]: vec(4) init normal(0, 0.1)",
        "let R(u, i) = dot(p[u], q[i])",
        "loss mse(R(u, i), r)",
    ];

    fn built(lines: &[&str]) -> Buffer {
        let mut b = Buffer::default();
        for line in lines {
            if let Err(e) = b.apply(line) {
                panic!("{line}: {e}");
            }
        }
        b
    }

    #[test]
    fn statements_build_a_model_once_it_has_a_loss() {
        let b = built(&MF[..7]);
        assert!(b.model().is_none());
        let b = built(MF);
        assert_eq!(b.model().map(|m| m.name.as_str()), Some("repl"));
        assert_eq!(b.text(), format!("{}\n", MF.join("\n")));
    }

    #[test]
    fn a_name_defined_again_replaces_the_old_statement_in_place() {
        let mut b = built(MF);
        let applied = b
            .apply("let R(u, i) = 2 * dot(p[u], q[i])")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(applied.replaced, vec!["redefined `R`".to_string()]);
        let text = b.text();
        assert!(text.contains("let R(u, i) = 2 * dot"));
        assert_eq!(text.matches("let R").count(), 1);
        assert!(text.find("let R").unwrap_or(0) < text.find("\nloss ").unwrap_or(0));
    }

    #[test]
    fn an_error_changes_nothing_and_points_into_the_typed_text() {
        let mut b = built(MF);
        let before = b.text();
        let report = match b.apply("let R(u, i) = dot(p[u], w[i])") {
            Err(report) => report,
            Ok(_) => panic!("an unknown name was accepted"),
        };
        assert!(report.contains("[input:1:"), "{report}");
        assert_eq!(b.text(), before);
        assert!(b.model().is_some());
        let syntax = match b.apply("param p[user] vec(4)") {
            Err(report) => report,
            Ok(_) => panic!("a statement without its colon was accepted"),
        };
        assert!(syntax.contains("input:1:"), "{syntax}");
        assert_eq!(b.text(), before);
    }

    #[test]
    fn a_new_loss_replaces_the_old_one_and_penalties_add_up() {
        let mut b = built(MF);
        let applied = b.apply("loss mae(R(u, i), r)");
        assert!(applied.is_ok_and(|a| a.replaced == ["replaced the loss"]));
        assert_eq!(b.text().matches("loss ").count(), 1);
        assert!(b.text().contains("loss mae"));
        assert!(b.apply("penalty 0.1 * sq(p[u])").is_ok());
        assert!(b.apply("penalty 0.1 * sq(q[i])").is_ok());
        assert_eq!(b.text().matches("penalty").count(), 2);
    }

    #[test]
    fn a_declaration_typed_before_its_use_is_not_warned_about_but_a_file_is() {
        let mut b = built(MF);
        let applied = b.apply("param w[item]: real");
        assert!(
            applied.as_ref().is_ok_and(|a| a.warnings.is_empty()),
            "{:?}",
            applied.map(|a| a.warnings)
        );
        assert!(b.apply("let R(u, i) = w[i] + dot(p[u], q[i])").is_ok());
        let mut file = Buffer::default();
        let text = format!("{}\nparam z[item]: real\n", MF.join("\n"));
        let warnings = file.replace_all("m.rec", &text);
        assert!(
            warnings
                .as_ref()
                .is_ok_and(|w| w.contains("parameter `z` is never used")),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_loaded_file_is_written_back_as_it_was() {
        let text = "# a comment\nmodel m\n\nuse stdlib.losses\ninput u: user\ninput i: item\n\
                    input r: real\nparam p[user]: vec(2)\nparam q[item]: vec(2)\n\
                    let R(u, i) = dot(p[u], q[i])  # the score\nloss mse(R(u, i), r)\n# end\n";
        let mut b = Buffer::default();
        let warnings = b.replace_all("m.rec", text);
        assert!(warnings.is_ok());
        assert_eq!(b.text(), text);
        assert_eq!(b.model().map(|m| m.name.as_str()), Some("m"));
    }
}
