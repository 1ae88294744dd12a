//! `recc`: the command-line interface. A thin shell over the compiler:
//! argument parsing, file reading, printing and exit codes live here only.

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
}

/// Exit status for a model with errors (usage and I/O problems use 2).
const EXIT_MODEL_ERRORS: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files } => check(&files),
        Command::Parse { file } => parse(&file),
        Command::Ir {
            file,
            grad,
            dot,
            no_locations,
        } => ir(&file, grad, dot, !no_locations),
    }
}

fn load(path: &Path) -> Result<Compiled, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
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
                Ok(line) => println!("{}: {line}", path.display()),
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

fn summary(model: &Model) -> Result<String, recc_compiler::ir::IrError> {
    let forward = forward_graph(model)?;
    let backward = gradient_graph(model)?;
    let inputs: Vec<String> = model
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
            format!("{}: {ty}", i.name)
        })
        .collect();
    Ok(format!(
        "model {} ok — inputs {}; {} params; {} term{}; IR {} nodes, {} with gradients",
        model.name,
        inputs.join(", "),
        model.params.len(),
        model.terms.len(),
        if model.terms.len() == 1 { "" } else { "s" },
        forward.nodes.len(),
        backward.nodes.len()
    ))
}

fn parse(path: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
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
    ExitCode::SUCCESS
}
