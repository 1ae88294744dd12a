//! The prompt's line editor: rustyline with the language's completion,
//! highlighting and multi-line statements, and a history file.

use super::input::needs_more;
use super::{Lines, Read};
use recc_compiler::parse::KEYWORDS;
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Config, Context, Editor, Helper};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// What tab completes, besides file paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completions {
    /// `:commands`, with or without their colon.
    pub commands: Vec<String>,
    /// Names the model defines.
    pub names: Vec<String>,
    pub domains: Vec<String>,
    /// Built-in and stdlib functions.
    pub functions: Vec<String>,
}

/// Commands whose argument is a file path.
const PATH_COMMANDS: &[&str] = &[":load", ":open", ":write", ":save", ":data", ":export"];

/// Where history is kept unless told otherwise: `recc/history` in the
/// user's data directory.
pub fn default_history_path() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("recc").join("history"))
}

/// The line editor. Without a terminal rustyline still reads lines; if it
/// cannot start at all, lines are read from standard input directly.
pub struct LineEditor {
    editor: Option<Editor<ReplHelper, DefaultHistory>>,
    history: Option<PathBuf>,
    /// A problem with the history file not yet told.
    warning: Option<String>,
}

impl LineEditor {
    /// An editor keeping history in `history` (none if `None`). The second
    /// value is a warning to show when the history cannot be read or
    /// written: the editor works on without keeping it.
    pub fn new(history: Option<PathBuf>) -> (LineEditor, Option<String>) {
        let config = Config::builder()
            .auto_add_history(false)
            .history_ignore_space(true)
            .max_history_size(10_000)
            .map(|b| b.build())
            .unwrap_or_default();
        let mut editor = match Editor::with_config(config) {
            Ok(e) => e,
            Err(e) => {
                let me = LineEditor {
                    editor: None,
                    history: None,
                    warning: None,
                };
                return (
                    me,
                    Some(format!(
                        "warning: line editing is off ({e}); reading plain lines"
                    )),
                );
            }
        };
        editor.set_helper(Some(ReplHelper::default()));
        let mut warning = None;
        let history = match history {
            Some(path) => match prepare_history(&path) {
                Ok(()) => {
                    if path.exists() {
                        if let Err(e) = editor.load_history(&path) {
                            warning = Some(history_warning(&path, "read", &e.to_string()));
                        }
                    }
                    Some(path)
                }
                Err(e) => {
                    warning = Some(history_warning(&path, "write", &e));
                    None
                }
            },
            None => None,
        };
        let me = LineEditor {
            editor: Some(editor),
            history,
            warning: None,
        };
        (me, warning)
    }

    /// Read one input after `prompt`. Ctrl-C drops what was typed.
    pub fn read(&mut self, prompt: &str) -> Read {
        let Some(editor) = &mut self.editor else {
            return read_plain(prompt);
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    // Only a failure to add matters here; a duplicate is fine.
                    let _ = editor.add_history_entry(line.as_str());
                    if let Some(path) = &self.history {
                        if let Err(e) = editor.append_history(path) {
                            self.warning = Some(history_warning(path, "write", &e.to_string()));
                            self.history = None;
                        }
                    }
                }
                Read::Line(line)
            }
            Err(ReadlineError::Interrupted) => Read::Interrupted,
            Err(ReadlineError::Eof) => Read::Eof,
            Err(e) => {
                self.warning = Some(format!("warning: could not read the terminal: {e}"));
                Read::Eof
            }
        }
    }

    /// A warning that arose while reading (the history became unwritable),
    /// once.
    pub fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }

    /// Replace what tab completes.
    pub fn set_completions(&mut self, completions: Completions) {
        if let Some(helper) = self.editor.as_mut().and_then(|e| e.helper_mut()) {
            helper.completions = completions;
        }
    }
}

impl Lines for LineEditor {
    fn read(&mut self, prompt: &str) -> Read {
        let read = LineEditor::read(self, prompt);
        if let Some(w) = self.take_warning() {
            eprintln!("{w}");
        }
        read
    }

    fn echoed(&self) -> bool {
        false
    }

    fn set_completions(&mut self, completions: Completions) {
        LineEditor::set_completions(self, completions);
    }
}

impl super::Repl {
    /// What tab completes now: the commands, the names and domains the
    /// model declares, and every function an expression can call.
    pub(super) fn completions(&self) -> Completions {
        let (names, domains) = declared_names(&self.buffer.text());
        Completions {
            commands: super::commands::COMMANDS
                .iter()
                .map(|c| c.name.to_string())
                .collect(),
            names,
            domains,
            functions: recc_compiler::stdlib::function_names(),
        }
    }
}

/// The names a model's source declares (inputs, params, lets, fns) and the
/// domains it mentions; a source that does not parse declares nothing.
fn declared_names(text: &str) -> (Vec<String>, Vec<String>) {
    use recc_compiler::ast::{InputType, ItemKind};
    let Ok(file) = recc_compiler::parse::parse(recc_compiler::source::FileId(0), text) else {
        return (Vec::new(), Vec::new());
    };
    let mut names = Vec::new();
    let mut domains = Vec::new();
    for item in &file.items {
        match &item.kind {
            ItemKind::Input { name, ty } => {
                names.push(name.name.clone());
                match ty {
                    InputType::Domain(d) | InputType::Bag(d, _) | InputType::History(d, _) => {
                        domains.push(d.name.clone())
                    }
                    InputType::Real(_) => {}
                }
            }
            ItemKind::Param { name, domain, .. } => {
                names.push(name.name.clone());
                domains.extend(domain.iter().map(|d| d.name.clone()));
            }
            ItemKind::Let { name, .. } | ItemKind::Fn { name, .. } => names.push(name.name.clone()),
            _ => {}
        }
    }
    for list in [&mut names, &mut domains] {
        list.sort_unstable();
        list.dedup();
    }
    (names, domains)
}

fn history_warning(path: &Path, what: &str, why: &str) -> String {
    format!(
        "warning: cannot {what} the history file {} ({why}); this session's history will not be kept",
        path.display()
    )
}

/// Make sure the history file can be written: its folder exists and the
/// file opens for appending.
fn prepare_history(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Reading without rustyline: print the prompt, read a line.
fn read_plain(prompt: &str) -> Read {
    use std::io::Write;
    print!("{prompt}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => Read::Eof,
        Ok(_) => Read::Line(line.trim_end_matches(['\n', '\r']).to_string()),
    }
}

/// Completion, highlighting and the multi-line rule, for rustyline.
#[derive(Default)]
struct ReplHelper {
    completions: Completions,
    files: FilenameCompleter,
}

impl Helper for ReplHelper {}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        if needs_more(ctx.input()) {
            Ok(ValidationResult::Incomplete)
        } else {
            Ok(ValidationResult::Valid(None))
        }
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = line.get(..pos).unwrap_or(line);
        let trimmed = before.trim_start();
        if let Some(command) = trimmed.strip_prefix(':') {
            let command_end = command.find(char::is_whitespace);
            let Some(end) = command_end else {
                // Still typing the command's name.
                let start = before.len() - trimmed.len();
                return Ok((start, self.commands_starting(trimmed)));
            };
            let name = format!(":{}", &command[..end]);
            if PATH_COMMANDS.contains(&name.as_str()) {
                let (start, mut found) = self.files.complete_path(line, pos)?;
                if name == ":data" {
                    let word = &before[start..];
                    if "builtin".starts_with(word) && !word.is_empty() {
                        found.insert(0, pair("builtin"));
                    }
                }
                return Ok((start, found));
            }
            if name == ":help" {
                let start = word_start(before);
                let word = &before[start..];
                let mut found = self.commands_starting(&format!(":{word}"));
                found.extend(self.functions_starting(word));
                return Ok((start, found));
            }
        }
        let start = word_start(before);
        let word = &before[start..];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let c = &self.completions;
        let mut words: Vec<&str> = c
            .names
            .iter()
            .chain(&c.domains)
            .chain(&c.functions)
            .map(String::as_str)
            .chain(KEYWORDS.iter().copied())
            .filter(|w| w.starts_with(word))
            .collect();
        words.sort_unstable();
        words.dedup();
        Ok((start, words.into_iter().map(pair).collect()))
    }
}

impl ReplHelper {
    fn commands_starting(&self, prefix: &str) -> Vec<Pair> {
        let mut found: Vec<String> = self
            .completions
            .commands
            .iter()
            .map(|c| {
                if c.starts_with(':') {
                    c.clone()
                } else {
                    format!(":{c}")
                }
            })
            .filter(|c| c.starts_with(prefix))
            .collect();
        found.sort_unstable();
        found.dedup();
        found.iter().map(|c| pair(c)).collect()
    }

    fn functions_starting(&self, prefix: &str) -> Vec<Pair> {
        let mut found: Vec<&str> = self
            .completions
            .functions
            .iter()
            .map(String::as_str)
            .filter(|f| f.starts_with(prefix))
            .collect();
        found.sort_unstable();
        found.dedup();
        found.into_iter().map(pair).collect()
    }
}

fn pair(word: &str) -> Pair {
    Pair {
        display: word.to_string(),
        replacement: word.to_string(),
    }
}

/// Where the identifier that ends `text` starts.
fn word_start(text: &str) -> usize {
    text.char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
        .last()
        .map_or(text.len(), |(i, _)| i)
}

const KEYWORD_STYLE: &str = "\x1b[1;35m";
const NUMBER_STYLE: &str = "\x1b[36m";
const COMMENT_STYLE: &str = "\x1b[2m";
const STRING_STYLE: &str = "\x1b[32m";
const COMMAND_STYLE: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

impl Highlighter for ReplHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        let styled = highlight(line);
        if styled == line {
            Cow::Borrowed(line)
        } else {
            Cow::Owned(styled)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        // Any character can start or end a token's style.
        true
    }
}

/// `text` with ANSI colours on keywords, numbers, quoted ids, comments and a
/// leading `:command`; the visible characters are unchanged.
pub fn highlight(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut rest = text;
    let lead = text.len() - text.trim_start().len();
    if text.trim_start().starts_with(':') {
        let end = text[lead..]
            .find(char::is_whitespace)
            .map_or(text.len(), |k| lead + k);
        out.push_str(&text[..lead]);
        styled(&mut out, COMMAND_STYLE, &text[lead..end]);
        rest = &text[end..];
    }
    while let Some(c) = rest.chars().next() {
        let len = if c == '#' {
            let end = rest.find('\n').unwrap_or(rest.len());
            styled(&mut out, COMMENT_STYLE, &rest[..end]);
            end
        } else if c == '"' {
            let end = rest[1..].find('"').map_or(rest.len(), |k| k + 2);
            styled(&mut out, STRING_STYLE, &rest[..end]);
            end
        } else if c.is_ascii_digit() {
            let end = rest
                .find(|d: char| !(d.is_ascii_alphanumeric() || d == '.'))
                .unwrap_or(rest.len());
            styled(&mut out, NUMBER_STYLE, &rest[..end]);
            end
        } else if c.is_ascii_alphabetic() || c == '_' {
            let end = rest
                .find(|d: char| !(d.is_ascii_alphanumeric() || d == '_'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            if KEYWORDS.contains(&word) {
                styled(&mut out, KEYWORD_STYLE, word);
            } else {
                out.push_str(word);
            }
            end
        } else {
            out.push(c);
            c.len_utf8()
        };
        rest = &rest[len..];
    }
    out
}

fn styled(out: &mut String, style: &str, text: &str) {
    out.push_str(style);
    out.push_str(text);
    out.push_str(RESET);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustyline::history::DefaultHistory;

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    fn helper() -> ReplHelper {
        ReplHelper {
            completions: Completions {
                commands: vec![
                    ":train".into(),
                    "load".into(),
                    ":data".into(),
                    ":help".into(),
                ],
                names: vec!["R".into(), "p".into(), "q".into(), "pred".into()],
                domains: vec!["user".into(), "item".into()],
                functions: vec!["sigmoid".into(), "sigmoid_range".into(), "mse".into()],
            },
            files: FilenameCompleter::new(),
        }
    }

    fn complete(line: &str) -> (usize, Vec<String>) {
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        match helper().complete(line, line.len(), &ctx) {
            Ok((start, found)) => (start, found.into_iter().map(|p| p.replacement).collect()),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn completes_commands_names_and_functions() {
        assert_eq!(complete(":tr"), (0, vec![":train".to_string()]));
        assert_eq!(complete("  :lo"), (2, vec![":load".to_string()]));
        assert_eq!(
            complete("sigm"),
            (0, vec!["sigmoid".to_string(), "sigmoid_range".to_string()])
        );
        assert_eq!(
            complete("let x = p"),
            (
                8,
                vec![
                    "p".to_string(),
                    "param".to_string(),
                    "penalty".to_string(),
                    "pred".to_string(),
                    "prior".to_string()
                ]
            )
        );
        assert_eq!(complete("input i: ite"), (9, vec!["item".to_string()]));
        assert_eq!(complete(":help sig").1, vec!["sigmoid", "sigmoid_range"]);
        assert_eq!(
            complete(":data bui").1.first().map(String::as_str),
            Some("builtin")
        );
        assert!(complete("x + ").1.is_empty());
    }

    #[test]
    fn completes_paths_after_file_commands() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let file = dir.path().join("biased_mf.rec");
        if let Err(e) = std::fs::write(&file, "") {
            panic!("{e}");
        }
        let typed = format!(":load {}/bia", dir.path().display());
        let (start, found) = complete(&typed);
        assert_eq!(start, 6);
        assert_eq!(found, vec![file.display().to_string()]);
        // Not after a command that takes no path.
        let typed = format!(":train {}/bia", dir.path().display());
        assert!(complete(&typed).1.is_empty());
    }

    #[test]
    fn highlighting_only_adds_colour() {
        for text in [
            "let R(u, i) = b + dot(p[u], q[i]) # the score",
            ":load models/mf.rec",
            "p[\"Star Wars (1977)\"] * 2.5e3",
            "fit { optimizer: sgd(lr: 0.005), epochs: 45 }",
            "é \"unterminated",
        ] {
            let h = highlight(text);
            assert_eq!(strip_ansi(&h), text);
        }
        assert!(highlight("loss x").starts_with(KEYWORD_STYLE));
        assert!(highlight("losses").starts_with("losses"));
        assert!(highlight("# c").starts_with(COMMENT_STYLE));
    }

    #[test]
    fn an_unwritable_history_is_a_warning() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        // A file where the history's folder should be.
        let blocker = dir.path().join("blocked");
        if let Err(e) = std::fs::write(&blocker, "") {
            panic!("{e}");
        }
        let (_, warning) = LineEditor::new(Some(blocker.join("history")));
        let Some(w) = warning else {
            panic!("no warning")
        };
        assert!(w.contains("history"), "{w}");
        let (_, warning) = LineEditor::new(Some(dir.path().join("recc").join("history")));
        assert_eq!(warning, None);
        assert!(dir.path().join("recc").join("history").exists());
        let (_, warning) = LineEditor::new(None);
        assert_eq!(warning, None);
    }

    #[test]
    fn the_model_declares_names_and_domains() {
        let (names, domains) = declared_names(
            "input u: user\ninput f: bag(feature)\nparam p[user]: vec(4)\nparam q[item]: real\nlet R(u) = 1\nfn g(x) = x\n",
        );
        assert_eq!(names, ["R", "f", "g", "p", "q", "u"]);
        assert_eq!(domains, ["feature", "item", "user"]);
        assert_eq!(declared_names("let = ("), (Vec::new(), Vec::new()));
    }

    #[test]
    fn the_default_history_is_in_the_data_directory() {
        if let (Some(path), Some(data)) = (default_history_path(), dirs::data_dir()) {
            assert_eq!(path, data.join("recc").join("history"));
        }
    }
}
