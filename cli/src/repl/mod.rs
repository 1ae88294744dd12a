//! `recc repl`: build a model a statement at a time on data loaded once,
//! train, look, change a term, train again, compare.
//!
//! Everything the REPL says goes through one writer ([`Out`]), so that when
//! its input is not a terminal the output is a transcript: each input line
//! echoed after its prompt, then what it printed. `--check` replays such a
//! transcript and compares; `--bless` rewrites it (see [`transcript`]).

pub mod buffer;
pub mod commands;
mod data;
pub mod editor;
pub mod expr;
pub mod input;
pub mod runs;
pub mod transcript;

use buffer::Buffer;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use transcript::{CONTINUATION, PROMPT};

/// `recc repl`
#[derive(clap::Args, Debug)]
pub struct ReplArgs {
    /// A model file to start from (as :load)
    pub file: Option<PathBuf>,
    /// Data to load at the start (as :data)
    #[arg(long)]
    pub data: Option<String>,
    /// How to split it (as :split)
    #[arg(long)]
    pub split: Option<String>,
    /// When the input is not a terminal, go on after a command fails (and
    /// exit 0) instead of stopping with status 1
    #[arg(long, conflicts_with = "check")]
    pub keep_going: bool,
    /// Replay a recorded transcript and fail, showing the difference, where
    /// the output differs
    #[arg(long, value_name = "TRANSCRIPT")]
    pub check: Option<PathBuf>,
    /// With --check: write the new output into the transcript instead
    #[arg(long, requires = "check")]
    pub bless: bool,
}

/// Where everything the REPL says goes: the terminal, or a string being
/// compared with a recorded transcript.
pub struct Out {
    captured: Option<String>,
}

impl Out {
    fn terminal() -> Out {
        Out { captured: None }
    }

    fn capture() -> Out {
        Out {
            captured: Some(String::new()),
        }
    }

    /// Print `text`, ending it with a newline if it has none.
    pub fn print(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let newline = if text.ends_with('\n') { "" } else { "\n" };
        match &mut self.captured {
            Some(s) => {
                s.push_str(text);
                s.push_str(newline);
            }
            None => {
                let mut stdout = std::io::stdout().lock();
                // A closed stdout ends the session at the next read; there
                // is nobody left to tell.
                let _ = write!(stdout, "{text}{newline}");
                let _ = stdout.flush();
            }
        }
    }

    /// Print a failure: rendered reports as they are, other messages after
    /// `error: `.
    pub fn error(&mut self, message: &str) {
        let m = message.trim_end();
        if m.contains('\n') {
            self.print(m);
        } else {
            self.print(&format!("error: {m}"));
        }
    }
}

/// What the prompt read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    Line(String),
    /// Ctrl-C at the prompt: the line being typed is dropped.
    Interrupted,
    /// Ctrl-D, or the end of the input.
    Eof,
}

/// Where input lines come from: a terminal's line editor, standard input
/// read as a script, or a recorded transcript.
pub trait Lines {
    fn read(&mut self, prompt: &str) -> Read;
    /// Are the lines echoed into the output (a transcript), or has the
    /// person just typed them?
    fn echoed(&self) -> bool;
    /// What tab may complete from now on; only a line editor uses it.
    fn set_completions(&mut self, _completions: editor::Completions) {}
}

/// Lines from a pipe or a file, echoed into the transcript.
struct Script<R: BufRead> {
    input: R,
}

impl<R: BufRead> Lines for Script<R> {
    fn read(&mut self, _prompt: &str) -> Read {
        let mut bytes = Vec::new();
        match self.input.read_until(b'\n', &mut bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Read::Interrupted,
            Ok(0) | Err(_) => Read::Eof,
            Ok(_) => {
                // A line that is not UTF-8 is shown with its bad bytes
                // replaced, and fails as any text that does not parse.
                let line = String::from_utf8_lossy(&bytes);
                Read::Line(line.trim_end_matches(['\n', '\r']).to_string())
            }
        }
    }

    fn echoed(&self) -> bool {
        true
    }
}

/// The lines of a recorded transcript.
struct Replay {
    lines: std::vec::IntoIter<String>,
}

impl Lines for Replay {
    fn read(&mut self, _prompt: &str) -> Read {
        self.lines.next().map_or(Read::Eof, Read::Line)
    }

    fn echoed(&self) -> bool {
        true
    }
}

/// How one entry ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Done,
    Failed,
    Quit,
}

type Answer = Result<(), String>;

/// The session: the model being built, and what it has run.
pub struct Repl {
    out: Out,
    buffer: Buffer,
    runs: Vec<runs::Run>,
    /// The data as asked with `:data` and `:split`.
    request: recc_runtime::experiment::DataRequest,
    /// That data, loaded and split.
    loaded: Option<data::Loaded>,
    /// The trained model: the last run, or a model file opened.
    current: Option<data::Current>,
    /// Whether a person is watching (progress bars) rather than a transcript.
    interactive: bool,
}

/// `recc repl`
pub fn main(args: ReplArgs) -> ExitCode {
    if let Some(path) = &args.check {
        return check(&args, path);
    }
    let interactive = std::io::stdin().is_terminal();
    let mut repl = Repl::new(Out::terminal(), interactive);
    if interactive {
        repl.out.print(&format!(
            "recc {} — statements build the model; :help lists the commands; Ctrl-D leaves",
            env!("CARGO_PKG_VERSION")
        ));
    }
    let stop_on_failure = !interactive && !args.keep_going;
    if repl.start(&args) == Status::Failed && stop_on_failure {
        return ExitCode::from(crate::EXIT_MODEL_ERRORS);
    }
    let failures = if interactive {
        let (mut editor, warning) = editor::LineEditor::new(editor::default_history_path());
        if let Some(w) = warning {
            repl.out.print(&w);
        }
        editor.set_completions(repl.completions());
        repl.drive(&mut editor, false)
    } else {
        let mut script = Script {
            input: std::io::stdin().lock(),
        };
        repl.drive(&mut script, stop_on_failure)
    };
    if failures > 0 && stop_on_failure {
        ExitCode::from(crate::EXIT_MODEL_ERRORS)
    } else {
        ExitCode::SUCCESS
    }
}

/// `recc repl --check TRANSCRIPT [--bless]`
fn check(args: &ReplArgs, path: &Path) -> ExitCode {
    let recorded = match recc_runtime::experiment::read_text(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    let mut repl = Repl::new(Out::capture(), false);
    repl.start(args);
    // A replay runs every recorded line: the transcript shows what failed.
    repl.drive(
        &mut Replay {
            lines: transcript::inputs(&recorded).into_iter(),
        },
        false,
    );
    let replayed = repl.out.captured.take().unwrap_or_default();
    match transcript::difference(&recorded, &replayed) {
        None => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Some(_) if args.bless => {
            let text = transcript::blessed(&recorded, &replayed);
            match std::fs::write(path, text) {
                Ok(()) => {
                    println!("{}: blessed", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    ExitCode::from(crate::EXIT_USAGE)
                }
            }
        }
        Some(diff) => {
            eprintln!(
                "{}: the replayed session differs (- recorded, + now; times and rates ignored):\n{diff}\
                 to accept the new output: recc repl --check {} --bless",
                path.display(),
                path.display()
            );
            ExitCode::from(crate::EXIT_MODEL_ERRORS)
        }
    }
}

/// The first word of a statement, as the language's keywords start them.
const STATEMENT_KEYWORDS: &[&str] = &[
    "model", "use", "input", "param", "let", "fn", "loss", "prior", "penalty", "fit",
];

/// What a complete entry is.
enum Entry<'a> {
    Nothing,
    Command(&'a str),
    Statement,
    Expression,
}

fn classify(text: &str) -> Entry<'_> {
    let code: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let Some(first) = code.first() else {
        return Entry::Nothing;
    };
    if let Some(command) = first.strip_prefix(':') {
        return Entry::Command(command);
    }
    let word_end = first
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(first.len());
    let (word, rest) = first.split_at(word_end);
    let likelihood = !word.is_empty() && rest.trim_start().starts_with('~');
    if STATEMENT_KEYWORDS.contains(&word) || likelihood {
        Entry::Statement
    } else {
        Entry::Expression
    }
}

impl Repl {
    fn new(out: Out, interactive: bool) -> Repl {
        Repl {
            out,
            buffer: Buffer::default(),
            runs: Vec::new(),
            request: Default::default(),
            loaded: None,
            current: None,
            interactive,
        }
    }

    /// What the command line asked for before the first prompt.
    fn start(&mut self, args: &ReplArgs) -> Status {
        let mut status = Status::Done;
        if let Some(file) = &args.file {
            let answer = self.load(file);
            status = self.answer(answer);
        }
        if status == Status::Done {
            if let Some(data) = &args.data {
                let answer = self.data_command(&["data".into(), data.clone()]);
                status = self.answer(answer);
            }
        }
        if status == Status::Done {
            if let Some(split) = &args.split {
                let answer = self.data_command(&["split".into(), split.clone()]);
                status = self.answer(answer);
            }
        }
        status
    }

    /// Read and run entries until the input ends or `:quit`; returns how
    /// many failed.
    fn drive(&mut self, lines: &mut dyn Lines, stop_on_failure: bool) -> usize {
        let mut failures = 0;
        let mut pending = String::new();
        loop {
            let prompt = if pending.is_empty() {
                PROMPT
            } else {
                CONTINUATION
            };
            if !lines.echoed() {
                lines.set_completions(self.completions());
            }
            let (line, at_end) = match lines.read(prompt) {
                Read::Line(line) => (line, false),
                Read::Interrupted => {
                    pending.clear();
                    continue;
                }
                Read::Eof if pending.is_empty() => break,
                // An unfinished statement at the end is run as it is, so
                // that its error is shown.
                Read::Eof => (String::new(), true),
            };
            if at_end {
                pending.push('\n');
            } else {
                if lines.echoed() {
                    self.out.print(&transcript::echo(prompt, &line));
                }
                if !pending.is_empty() {
                    pending.push('\n');
                }
                pending.push_str(&line);
                // A command is one line; a statement or an expression goes
                // on while a bracket is open.
                let command = pending.trim_start().starts_with(':');
                if !command && input::needs_more(&pending) {
                    continue;
                }
            }
            let entry = std::mem::take(&mut pending);
            match self.execute(&entry) {
                Status::Done => {}
                Status::Quit => break,
                Status::Failed => {
                    failures += 1;
                    if stop_on_failure {
                        break;
                    }
                }
            }
            if at_end {
                break;
            }
        }
        failures
    }

    fn answer(&mut self, answer: Answer) -> Status {
        match answer {
            Ok(()) => Status::Done,
            Err(message) => {
                self.out.error(&message);
                Status::Failed
            }
        }
    }

    /// Run one complete entry: a command, statements or an expression.
    fn execute(&mut self, entry: &str) -> Status {
        match classify(entry) {
            Entry::Nothing => Status::Done,
            Entry::Command(command) => {
                let words = match shlex::split(command) {
                    Some(w) => w,
                    None => {
                        return self
                            .answer(Err(format!("`:{}`: a quote is not closed", command.trim())))
                    }
                };
                if words.first().is_some_and(|w| w == "quit" || w == "q") {
                    return Status::Quit;
                }
                let answer = self.command(&words);
                self.answer(answer)
            }
            Entry::Statement => {
                let answer = self.statements(entry);
                self.answer(answer)
            }
            Entry::Expression => {
                let answer = self.expression(entry);
                self.answer(answer)
            }
        }
    }

    /// Statements typed at the prompt: added to the model, or replacing
    /// what they redefine.
    fn statements(&mut self, text: &str) -> Answer {
        let applied = self.buffer.apply(text)?;
        for line in &applied.replaced {
            self.out.print(line);
        }
        self.out.print(&applied.warnings);
        self.say_model_state();
        Ok(())
    }

    /// One line saying what the model now is, once it is complete.
    fn say_model_state(&mut self) {
        if let Some(model) = self.buffer.model() {
            let line = match crate::summary(model) {
                Ok(checked) => checked.line(),
                Err(e) => format!("model {}: {e}", model.name),
            };
            self.out.print(&line);
        }
    }

    /// An expression: evaluated on the trained parameters, else on initial
    /// ones when data is loaded, else without parameters (`sigmoid(3)`).
    fn expression(&mut self, text: &str) -> Answer {
        self.evaluate(text)
    }

    /// A `:command` split into words, the name first.
    fn command(&mut self, words: &[String]) -> Answer {
        let Some(name) = words.first() else {
            return Err("`:` alone is no command; :help lists them".into());
        };
        let args = &words[1..];
        match name.as_str() {
            "help" | "h" | "?" => self.help(args),
            "model" => {
                no_arguments(name, args)?;
                if self.buffer.is_empty() {
                    self.out
                        .print("(the model is empty: type statements, or :load FILE.rec)");
                } else {
                    let text = self.buffer.text();
                    self.out.print(&text);
                }
                Ok(())
            }
            "load" => {
                let [file] = args else {
                    return Err(usage_of(name));
                };
                self.load(Path::new(file))
            }
            "reload" => {
                no_arguments(name, args)?;
                let file = self
                    .buffer
                    .file
                    .clone()
                    .ok_or("nothing to reload: the model was not loaded from a file")?;
                self.load(&file)
            }
            "edit" => {
                no_arguments(name, args)?;
                self.edit()
            }
            "reset" => {
                no_arguments(name, args)?;
                self.buffer.clear();
                self.out.print("the model is empty");
                Ok(())
            }
            "write" => {
                let [file] = args else {
                    return Err(usage_of(name));
                };
                self.write(Path::new(file))
            }
            "ir" => self.ir(args),
            "runs" => {
                no_arguments(name, args)?;
                self.out.print(&runs::table(&self.runs));
                Ok(())
            }
            "compare" | "diff" => {
                let [a, b] = args else {
                    return Err(usage_of(name));
                };
                let (a, b) = (runs::find(&self.runs, a)?, runs::find(&self.runs, b)?);
                let text = if name == "compare" {
                    runs::compare(a, b)
                } else {
                    runs::diff(a, b)
                };
                self.out.print(&text);
                Ok(())
            }
            other if commands::find(other).is_some() => self.data_command(words),
            other => Err(commands::unknown(&format!(":{other}"))),
        }
    }

    fn help(&mut self, args: &[String]) -> Answer {
        match args {
            [] => {
                self.out.print(&commands::overview());
                Ok(())
            }
            [name] => {
                if let Some(c) = commands::find(name) {
                    let text = data::help(&c.name[1..])
                        .unwrap_or_else(|| format!("{}\n  {}", c.usage, c.about));
                    self.out.print(&text);
                    return Ok(());
                }
                if let Some(text) = expr::function_help(name) {
                    self.out.print(&text);
                    return Ok(());
                }
                Err(format!(
                    "no command or stdlib function `{name}`; :help lists the commands"
                ))
            }
            _ => Err(usage_of("help")),
        }
    }

    /// Replace the model with a file's.
    fn load(&mut self, path: &Path) -> Answer {
        let text = recc_runtime::experiment::read_text(path)?;
        let warnings = self
            .buffer
            .replace_all(&path.display().to_string(), &text)?;
        self.buffer.file = Some(path.to_path_buf());
        self.out.print(&warnings);
        let lines = self.buffer.text().lines().count();
        self.out.print(&format!(
            "loaded {} ({lines} line{})",
            path.display(),
            plural(lines)
        ));
        self.say_model_state();
        Ok(())
    }

    fn write(&mut self, path: &Path) -> Answer {
        if self.buffer.is_empty() {
            return Err("the model is empty: nothing to write".into());
        }
        let target = recc_runtime::modelfile::check_output(path).map_err(|e| e.to_string())?;
        let text = self.buffer.text();
        std::fs::write(&target, &text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let lines = text.lines().count();
        self.out.print(&format!(
            "wrote {} ({lines} line{})",
            path.display(),
            plural(lines)
        ));
        Ok(())
    }

    /// `:edit`: the source in `$VISUAL` or `$EDITOR`, read back on exit.
    fn edit(&mut self) -> Answer {
        let editor = std::env::var("VISUAL")
            .or_else(|_| std::env::var("EDITOR"))
            .map_err(|_| "set $EDITOR (or $VISUAL) to the editor :edit should open")?;
        let dir = std::env::temp_dir().join(format!("recc-edit-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let stem = self
            .buffer
            .model()
            .map_or("model".to_string(), |m| m.name.clone());
        let path = dir.join(format!("{stem}.rec"));
        std::fs::write(&path, self.buffer.text())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        // The editor setting may carry flags (`code --wait`): the shell
        // splits it, as git and others do.
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(&path)
            .status()
            .map_err(|e| format!("cannot run the editor `{editor}`: {e}"))?;
        let edited = recc_runtime::experiment::read_text(&path)?;
        let _ = std::fs::remove_dir_all(&dir);
        if !status.success() {
            return Err(format!(
                "the editor `{editor}` failed ({status}); the model is unchanged"
            ));
        }
        if edited == self.buffer.text() {
            self.out.print("no change");
            return Ok(());
        }
        let (name, file) = (self.buffer.name.clone(), self.buffer.file.clone());
        let warnings = self.buffer.replace_all(&name, &edited).map_err(|report| {
            format!(
                "{}\nthe edit does not check; the model is unchanged",
                report.trim_end()
            )
        })?;
        self.buffer.file = file;
        self.out.print(&warnings);
        self.say_model_state();
        Ok(())
    }

    /// `:ir [--grad]`
    fn ir(&mut self, args: &[String]) -> Answer {
        let grad = match args {
            [] => false,
            [flag] if flag == "--grad" => true,
            _ => return Err(usage_of("ir")),
        };
        if self.buffer.model().is_none() {
            return Err(incomplete(&self.buffer));
        }
        let compiled = recc_compiler::compile(&self.buffer.name, &self.buffer.text());
        let model = compiled
            .model
            .as_ref()
            .ok_or_else(|| compiled.render_diagnostics())?;
        let graph = if grad {
            recc_compiler::gradient_graph(model)
        } else {
            recc_compiler::forward_graph(model)
        }
        .map_err(|e| e.to_string())?;
        self.out.print(&graph.to_text(Some(&compiled.sources)));
        Ok(())
    }
}

/// Why a command that needs a complete model cannot run.
fn incomplete(buffer: &Buffer) -> String {
    if buffer.is_empty() {
        "the model is empty: type statements, or :load FILE.rec".into()
    } else {
        "the model has no loss yet: add one, e.g. `loss mse(R(u, i), r)`".into()
    }
}

fn no_arguments(name: &str, args: &[String]) -> Answer {
    if args.is_empty() {
        Ok(())
    } else {
        Err(usage_of(name))
    }
}

fn usage_of(name: &str) -> String {
    match commands::find(name) {
        Some(c) => format!("usage: {}", c.usage),
        None => commands::unknown(name),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::{classify, Entry};

    fn kind(text: &str) -> &'static str {
        match classify(text) {
            Entry::Nothing => "nothing",
            Entry::Command(_) => "command",
            Entry::Statement => "statement",
            Entry::Expression => "expression",
        }
    }

    #[test]
    fn entries_are_told_apart_by_their_first_word() {
        assert_eq!(kind("param p[user]: vec(8)"), "statement");
        assert_eq!(kind("  let R(u, i) = dot(p[u], q[i])"), "statement");
        assert_eq!(kind("r ~ normal(R(u, i), 1)"), "statement");
        assert_eq!(kind("# a note\nfit { epochs: 3 }"), "statement");
        assert_eq!(kind(":train --epochs 3"), "command");
        assert_eq!(kind("R(1, 2)"), "expression");
        assert_eq!(kind("lets(3)"), "expression");
        assert_eq!(kind("p[\"u1\"]"), "expression");
        assert_eq!(kind("# only a comment"), "nothing");
        assert_eq!(kind("   "), "nothing");
    }
}
