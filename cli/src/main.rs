//! `recc`: the command-line interface. A thin shell over the compiler and
//! the runtime: argument parsing, file reading, printing and exit codes
//! live here only.

mod bench;
mod cuda;
mod emit;
mod progress;
mod repl;
mod report;
mod run;

use clap::{Parser, Subcommand};
use recc_compiler::{compile, forward_graph, gradient_graph, model::Model, Compiled};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "recc", version, about = "A compiler for recommender models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check model files: a one-line summary per model, or its errors.
    Check {
        /// `.rec` files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print JSON for machines instead of text for people
        #[arg(long)]
        json: bool,
    },
    /// Print the parse tree of a model file as an S-expression.
    Parse {
        /// The `.rec` file.
        file: PathBuf,
    },
    /// Print the graph IR a model compiles to.
    Ir {
        /// The `.rec` file.
        file: PathBuf,
        /// Include the reverse-mode gradient of the loss.
        #[arg(long)]
        grad: bool,
        /// Print Graphviz DOT instead of the text form.
        #[arg(long)]
        dot: bool,
        /// Leave out the source locations.
        #[arg(long)]
        no_locations: bool,
    },
    /// Print the code a model compiles to, for reading.
    Emit(emit::EmitArgs),
    /// Train a model on data and write the trained model file.
    Train {
        /// The `.rec` file.
        file: PathBuf,
        #[command(flatten)]
        data: run::DataArgs,
        #[command(flatten)]
        fit: run::FitArgs,
        #[command(flatten)]
        write_split: run::WriteSplitArgs,
        #[command(flatten)]
        out: run::TrainOutput,
        /// Where to write the model [default: MODEL.recm]
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Measure a trained model on the test rows of its split (or of --data).
    Eval {
        /// The trained model file.
        model: PathBuf,
        #[command(flatten)]
        data: run::EvalDataArgs,
        /// What scores the test rows: jit (native code), interp (the
        /// reference evaluator) or cuda (a GPU: not built yet, says what
        /// this machine has) [default: what trained the model]
        #[arg(long)]
        backend: Option<String>,
        #[command(flatten)]
        out: run::EvalOutput,
    },
    /// Time training epochs: updates/s, compile time, peak memory; with
    /// --handwritten, against the hand-written SIMD loop. --data zipf is a
    /// generated 20M-rating set (cached after the first run).
    Bench {
        /// The `.rec` file.
        file: PathBuf,
        #[command(flatten)]
        data: run::DataArgs,
        #[command(flatten)]
        fit: run::FitArgs,
        #[command(flatten)]
        bench: bench::BenchArgs,
        #[command(flatten)]
        out: run::BenchOutput,
    },
    /// Cross-validate: train and test on every fold, then mean ± std.
    Cv {
        /// The `.rec` file.
        file: PathBuf,
        #[command(flatten)]
        data: run::DataArgs,
        #[command(flatten)]
        fit: run::FitArgs,
        #[command(flatten)]
        write_split: run::WriteFoldsArgs,
        #[command(flatten)]
        out: run::CvOutput,
    },
    /// Score (user, item) pairs with a trained model.
    Predict {
        /// The trained model file.
        model: PathBuf,
        /// Raw user ids or labels (repeat, or one for every item)
        #[arg(long, required = true)]
        user: Vec<String>,
        /// Raw item ids or labels, e.g. a film's title (repeat, or one for
        /// every user)
        #[arg(long, required = true)]
        item: Vec<String>,
        #[command(flatten)]
        data: run::AnswerDataArgs,
        #[command(flatten)]
        out: run::PredictOutput,
    },
    /// The best items for a user, leaving out those they already have.
    Recommend {
        /// The trained model file.
        model: PathBuf,
        /// The raw user id or label.
        #[arg(long)]
        user: String,
        /// Also list the items the user already has
        #[arg(long)]
        include_seen: bool,
        #[command(flatten)]
        data: run::AnswerDataArgs,
        #[command(flatten)]
        out: run::RecommendOutput,
    },
    /// The nearest neighbours of an item (or token) in the model's embedding.
    Similar {
        /// The trained model file.
        model: PathBuf,
        /// The raw id or the label (a film's title, in any case) of the item.
        #[arg(long)]
        item: String,
        /// The embedding table to compare in [default: the widest over the domain]
        #[arg(long)]
        table: Option<String>,
        /// The domain of the item [default: item, or the model's index input]
        #[arg(long)]
        domain: Option<String>,
        #[command(flatten)]
        out: run::SimilarOutput,
    },
    /// Build, train and compare models interactively, on data loaded once;
    /// with input from a pipe, write a transcript (see docs/repl.md).
    Repl(repl::ReplArgs),
    /// Write a trained model's tables as CSV or .npy files.
    Export {
        /// The trained model file.
        model: PathBuf,
        /// csv or npy
        #[arg(long, default_value = "csv")]
        format: String,
        /// The directory to write into.
        #[arg(long, short)]
        output: PathBuf,
        /// Print JSON for machines instead of the files' names
        #[arg(long)]
        json: bool,
    },
}

/// A command that failed: its exit status and what to tell the user.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// The same failure, said to have happened while doing `what`.
    pub fn context(self, what: &str) -> Failure {
        Failure {
            code: self.code,
            message: format!("{what}: {}", self.message),
        }
    }
}

fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            report::failure(&f);
            ExitCode::from(f.code)
        }
    }
}

/// Exit status for a model with errors (usage and I/O problems use 2).
pub const EXIT_MODEL_ERRORS: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// `recc ... | head` should end quietly when `head` stops reading, as other
/// command-line tools do, instead of panicking on the failed write: Rust
/// programs ignore SIGPIPE unless told otherwise.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any thread exists; resetting a
    // signal's disposition to its default has no other precondition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    restore_default_sigpipe();
    report::watch_arguments(std::env::args_os());
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return report::usage_error(explain_unknown_flag(e)),
    };
    match cli.command {
        Command::Check { files, json } if json => check_json(&files),
        Command::Check { files, .. } => check(&files),
        Command::Parse { file } => parse(&file),
        Command::Ir {
            file,
            grad,
            dot,
            no_locations,
        } => ir(&file, grad, dot, !no_locations),
        Command::Train {
            file,
            data,
            fit,
            write_split,
            out,
            output,
        } => finish(run::train_command(
            &file,
            &data,
            &fit,
            &(&out).into(),
            output,
            write_split.write_split.as_deref(),
        )),
        Command::Bench {
            file,
            data,
            fit,
            bench,
            out,
        } => finish(bench::bench_command(
            &file,
            &data,
            &fit,
            &bench,
            &(&out).into(),
        )),
        Command::Eval {
            model,
            data,
            backend,
            out,
        } => finish(run::eval_command(
            &model,
            &data,
            backend.as_deref(),
            &(&out).into(),
        )),
        Command::Cv {
            file,
            data,
            fit,
            write_split,
            out,
        } => finish(run::cv_command(
            &file,
            &data,
            &fit,
            &(&out).into(),
            write_split.write_split.as_deref(),
        )),
        Command::Predict {
            model,
            user,
            item,
            data,
            out,
        } => finish(run::predict_command(
            &model,
            &user,
            &item,
            &data,
            &(&out).into(),
        )),
        Command::Recommend {
            model,
            user,
            include_seen,
            data,
            out,
        } => finish(run::recommend_command(
            &model,
            &user,
            include_seen,
            &data,
            &(&out).into(),
        )),
        Command::Similar {
            model,
            item,
            table,
            domain,
            out,
        } => finish(run::similar_command(
            &model,
            &item,
            table.as_deref(),
            domain.as_deref(),
            &(&out).into(),
        )),
        Command::Export {
            model,
            format,
            output,
            json,
        } => finish(run::export_command(&model, &format, &output, json)),
        Command::Repl(args) => repl::main(args),
        Command::Emit(args) => finish(emit::emit_command(&args)),
    }
}

/// A flag the command does not take gets a message of its own: clap's tip
/// (pass it as a value after `--`) does not fit a flag that belongs to
/// another command.
fn explain_unknown_flag(e: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return e;
    }
    let flag = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(flag)) if flag.starts_with('-') => flag.clone(),
        _ => return e,
    };
    match std::env::args().nth(1).filter(|c| !c.starts_with('-')) {
        Some(command) => clap::Error::raw(
            ErrorKind::UnknownArgument,
            format!(
                "unexpected argument '{flag}': `recc {command}` does not take it; \
                 `recc {command} --help` lists the flags it does\n"
            ),
        ),
        None => e,
    }
}

fn load(path: &Path) -> Result<Compiled, ExitCode> {
    let text = recc_runtime::experiment::read_text(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_USAGE)
    })?;
    Ok(compile(&path.display().to_string(), &text))
}

fn check(files: &[PathBuf]) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for path in files {
        let compiled = match load(path) {
            Ok(c) => c,
            Err(code) => {
                status = code;
                continue;
            }
        };
        eprint!("{}", compiled.render_diagnostics());
        match &compiled.model {
            Some(model) => match summary(model) {
                Ok(checked) => println!("{}: {}", path.display(), checked.line()),
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    status = ExitCode::from(EXIT_MODEL_ERRORS);
                }
            },
            None => {
                let errors = compiled.diagnostics.iter().filter(|d| d.is_error()).count();
                eprintln!(
                    "{}: {errors} error{}",
                    path.display(),
                    if errors == 1 { "" } else { "s" }
                );
                status = ExitCode::from(EXIT_MODEL_ERRORS);
            }
        }
    }
    status
}

/// `recc check --json`: every file's verdict in one object; the exit status
/// is as without `--json`.
fn check_json(files: &[PathBuf]) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    let mut checked = Vec::new();
    for path in files {
        let text = match recc_runtime::experiment::read_text(path) {
            Ok(t) => t,
            Err(e) => {
                checked.push(report::CheckedFile::unreadable(path, &e.to_string()));
                status = ExitCode::from(EXIT_USAGE);
                continue;
            }
        };
        let compiled = compile(&path.display().to_string(), &text);
        let (model, failure) = match compiled.model.as_ref().map(summary) {
            Some(Ok(m)) => (Some(m), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, None),
        };
        let file = report::CheckedFile::checked(
            path,
            &compiled.sources,
            &compiled.diagnostics,
            model,
            failure,
        );
        // As without --json, the last file that fails decides the status.
        if !file.is_ok() {
            status = ExitCode::from(EXIT_MODEL_ERRORS);
        }
        checked.push(file);
    }
    match report::print(&report::Check::new(checked)) {
        Ok(()) => status,
        Err(f) => finish(Err(f)),
    }
}

fn summary(model: &Model) -> Result<report::CheckedModel, recc_compiler::ir::IrError> {
    let forward = forward_graph(model)?;
    let backward = gradient_graph(model)?;
    let inputs = model
        .inputs
        .iter()
        .map(|i| {
            let ty = match i.kind {
                recc_compiler::model::InputKind::Real => "real".to_string(),
                recc_compiler::model::InputKind::Index(d) => model.domain(d).name.clone(),
                recc_compiler::model::InputKind::Bag(d) => format!("bag({})", model.domain(d).name),
                recc_compiler::model::InputKind::History(d) => {
                    format!("history({})", model.domain(d).name)
                }
            };
            report::CheckedInput {
                name: i.name.clone(),
                ty,
            }
        })
        .collect();
    Ok(report::CheckedModel {
        name: model.name.clone(),
        inputs,
        params: model.params.len(),
        terms: model.terms.len(),
        ir_nodes: forward.nodes.len(),
        gradient_nodes: backward.nodes.len(),
    })
}

fn parse(path: &Path) -> ExitCode {
    let text = match recc_runtime::experiment::read_text(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut sources = recc_compiler::source::SourceMap::new();
    let id = sources.add(path.display().to_string(), text.as_str());
    match recc_compiler::parse::parse(id, &text) {
        Ok(file) => {
            print!("{}", recc_compiler::ast::to_sexpr(&file));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{}", recc_compiler::diagnostic::render(&sources, &errors));
            ExitCode::from(EXIT_MODEL_ERRORS)
        }
    }
}

fn ir(path: &Path, grad: bool, dot: bool, locations: bool) -> ExitCode {
    let compiled = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    eprint!("{}", compiled.render_diagnostics());
    let Some(model) = &compiled.model else {
        return ExitCode::from(EXIT_MODEL_ERRORS);
    };
    let graph = if grad {
        gradient_graph(model)
    } else {
        forward_graph(model)
    };
    match graph {
        Ok(g) if dot => print!("{}", g.to_dot()),
        Ok(g) => print!("{}", g.to_text(locations.then_some(&compiled.sources))),
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(EXIT_MODEL_ERRORS);
        }
    }
    // A sum over unobserved pairs is a graph of its own: the term on one
    // pair, which the solver adds up over every pair.
    if !dot {
        match recc_compiler::lower::lower_unobserved(model).and_then(|g| {
            g.map(|(g, _, _)| recc_compiler::simplify::simplify(&g))
                .transpose()
        }) {
            Ok(Some(g)) => {
                println!("# summed over every pair without an example:");
                print!("{}", g.to_text(locations.then_some(&compiled.sources)));
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(EXIT_MODEL_ERRORS);
            }
        }
    }
    ExitCode::SUCCESS
}
