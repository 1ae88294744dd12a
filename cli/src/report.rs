//! What `--json` prints: one serde type per command, each an object with a
//! `command` field, and one error object for every failure. docs/json.md
//! describes them and docs/json-schema.json is their JSON Schema; the
//! `json_schema` test checks every command's output against it, so a field
//! added here is added there too.
//!
//! Figures are JSON numbers; one that is not a finite number (NaN, as
//! `spread_corr` is without a user column) is `null`.
//!
//! Whether errors are JSON is decided from the command line itself, before
//! it is parsed, so that a usage error is reported as the caller asked.

use crate::Failure;
use recc_compiler::diagnostic::{Diagnostic, Severity};
use recc_compiler::source::SourceMap;
use recc_runtime::experiment::{
    BenchReport, CvReport, Evaluation, Measured, Neighbours, Outcome, PairScore, Prepared,
    Recommendations, Source, TrainConfig,
};
use recc_runtime::hierarchy::HierarchyReport;
use recc_runtime::modelfile::EpochRecord;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::OnceLock;

/// The command line's choice: `Some(command)` when it asks for `--json`
/// (the command word, when there is one).
static JSON_ASKED: OnceLock<Option<Option<String>>> = OnceLock::new();

/// Note whether `args` (the whole command line) asks for JSON, before it is
/// parsed: every error from then on, a usage error included, is reported in
/// the form asked for.
pub fn watch_arguments(args: impl IntoIterator<Item = OsString>) {
    let args: Vec<OsString> = args.into_iter().skip(1).collect();
    let before_end = args.iter().take_while(|a| *a != "--");
    let json = before_end.clone().any(|a| a == "--json");
    let command = args
        .iter()
        .find(|a| !a.to_string_lossy().starts_with('-'))
        .map(|a| a.to_string_lossy().into_owned());
    let _ = JSON_ASKED.set(json.then_some(command));
}

/// Does the command line ask for JSON?
pub fn json_asked() -> bool {
    matches!(JSON_ASKED.get(), Some(Some(_)))
}

/// The command word of a command line that asks for JSON.
fn asked_command() -> Option<String> {
    JSON_ASKED.get().cloned().flatten().flatten()
}

/// Print `value` as the command's JSON on standard output.
pub fn print(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new(crate::EXIT_MODEL_ERRORS, format!("writing JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// How a failure is classed in its JSON, by its exit status.
fn kind(code: u8) -> &'static str {
    match code {
        crate::EXIT_USAGE => "usage",
        crate::progress::EXIT_INTERRUPTED => "interrupted",
        _ => "model",
    }
}

/// A failed command, under `--json`.
#[derive(Serialize)]
pub struct ErrorReport {
    /// The command word; `null` when the command line has none.
    command: Option<String>,
    error: ErrorBody,
}

/// What went wrong: the exit status, its class and the message.
#[derive(Serialize)]
pub struct ErrorBody {
    code: u8,
    /// `usage` (exit 2), `model` (exit 1) or `interrupted` (exit 130).
    kind: &'static str,
    message: String,
}

impl ErrorBody {
    fn new(code: u8, message: &str) -> ErrorBody {
        ErrorBody {
            code,
            kind: kind(code),
            message: message.trim_end().to_string(),
        }
    }
}

/// Report a failed command: as JSON on standard output when the command
/// line asks for JSON, else as text on standard error.
pub fn failure(f: &Failure) {
    if json_asked() {
        let report = ErrorReport {
            command: asked_command(),
            error: ErrorBody::new(f.code, &f.message),
        };
        if print(&report).is_ok() {
            return;
        }
    }
    let m = f.message.trim_end();
    // Compiler reports arrive rendered; everything else gets a prefix.
    if m.contains('\n') {
        eprintln!("{m}");
    } else {
        eprintln!("error: {m}");
    }
}

/// Report a command line that does not parse, and say with what status to
/// exit. Help and the version are printed as clap prints them.
pub fn usage_error(e: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if informational || !json_asked() {
        e.exit();
    }
    let code = u8::try_from(e.exit_code()).unwrap_or(crate::EXIT_USAGE);
    let text = e.to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    // The error and its tips; the usage line and the pointer to --help are
    // for people at a terminal.
    let message: Vec<&str> = text
        .split("\n\n")
        .filter(|p| !p.starts_with("Usage:") && !p.starts_with("For more information"))
        .map(str::trim)
        .collect();
    failure(&Failure::new(code, message.join("\n")));
    std::process::ExitCode::from(code)
}

/// Training stopped by Ctrl-C: `message` says what was kept. Exits with
/// status 130.
pub fn interrupted(message: &str) -> ! {
    if json_asked() {
        failure(&Failure::new(crate::progress::EXIT_INTERRUPTED, message));
    } else {
        eprintln!("{message}");
    }
    std::process::exit(crate::progress::EXIT_INTERRUPTED.into())
}

/// What a model was measured on and what it scored, shared by `train` and
/// `eval`.
#[derive(Serialize)]
pub struct Measurement<'a> {
    /// The model's name.
    model: &'a str,
    data: String,
    /// The split's name (`random:0.2`, `u1`).
    split: String,
    /// `rating`, `ranking` or `loss`.
    task: String,
    test_rows: usize,
    /// Each figure by name (`rmse`, `precision@10`); empty with no test rows.
    metrics: &'a BTreeMap<String, f64>,
    /// On tree data, the hierarchy figures of the embedding.
    #[serde(skip_serializing_if = "Option::is_none")]
    hierarchy: Option<&'a HierarchyReport>,
}

/// The fit settings a run trained with.
#[derive(Serialize)]
pub struct Settings {
    optimizer: String,
    lr: f64,
    epochs: usize,
    batch: usize,
    seed: u64,
    early_stopping: usize,
    schedule: String,
    backend: String,
    threads: usize,
    /// `sgd`, or a closed-form solver with its counts, e.g. `als(sweeps: 15)`.
    solver: String,
}

impl Settings {
    fn new(config: &TrainConfig) -> Settings {
        Settings {
            optimizer: config.optimizer.to_string(),
            lr: config.lr,
            epochs: config.epochs,
            batch: config.batch,
            seed: config.seed,
            early_stopping: config.early_stopping,
            schedule: config.schedule.to_string(),
            backend: config.effective_backend().to_string(),
            threads: config.threads,
            solver: config.solver.to_string(),
        }
    }
}

/// One epoch of training; a loss that is not a number is `null`.
#[derive(Serialize)]
pub struct Epoch {
    epoch: usize,
    loss: f64,
    validation: Option<f64>,
    seconds: f64,
}

fn epochs(history: &[EpochRecord]) -> Vec<Epoch> {
    history
        .iter()
        .map(|r| Epoch {
            epoch: r.epoch,
            loss: r.loss,
            validation: r.validation,
            seconds: r.seconds,
        })
        .collect()
}

/// `recc train --json`.
#[derive(Serialize)]
pub struct Train<'a> {
    command: &'static str,
    #[serde(flatten)]
    measured: Measurement<'a>,
    /// The `.rec` file.
    file: &'a str,
    train_rows: usize,
    settings: Settings,
    history: Vec<Epoch>,
    best_epoch: Option<usize>,
    /// The popularity baseline's figures, with `--baseline`.
    baseline: Option<&'a BTreeMap<String, f64>>,
    seconds: f64,
    /// The model file written.
    output: String,
}

/// What a training run did, for [`Train`].
pub struct TrainRun<'a> {
    pub source: &'a Source,
    pub prepared: &'a Prepared,
    pub split: &'a str,
    pub train_rows: usize,
    pub test_rows: usize,
    pub config: &'a TrainConfig,
    pub outcome: &'a Outcome,
    pub hierarchy: Option<&'a HierarchyReport>,
    pub output: &'a Path,
}

pub fn train<'a>(run: &TrainRun<'a>) -> Train<'a> {
    let outcome = run.outcome;
    Train {
        command: "train",
        measured: Measurement {
            model: &run.source.model.name,
            data: run.prepared.spec.to_string(),
            split: run.split.to_string(),
            task: outcome.session.task.to_string(),
            test_rows: run.test_rows,
            metrics: &outcome.metrics,
            hierarchy: run.hierarchy,
        },
        file: &run.source.name,
        train_rows: run.train_rows,
        settings: Settings::new(run.config),
        history: epochs(&outcome.trained.history),
        best_epoch: outcome.trained.best_epoch,
        baseline: outcome.baseline.as_ref(),
        seconds: outcome.seconds,
        output: run.output.display().to_string(),
    }
}

/// `recc eval --json`: shaped as `train`'s measurement.
#[derive(Serialize)]
pub struct Eval<'a> {
    command: &'static str,
    #[serde(flatten)]
    measured: Measurement<'a>,
    /// The model file.
    model_file: String,
    /// Test rows of the split left out because the model was trained on them.
    excluded_rows: usize,
    /// A ranking model's: the users the figures average over.
    #[serde(skip_serializing_if = "Option::is_none")]
    users: Option<usize>,
}

/// `e`, measured by the model in `model_file` on `prepared`'s split.
pub fn eval<'a>(
    model_file: &Path,
    prepared: &Prepared,
    task: String,
    e: &'a Evaluation,
    metrics: &'a BTreeMap<String, f64>,
) -> Eval<'a> {
    let split = prepared
        .splits
        .first()
        .map_or_else(|| prepared.split_text.clone(), |(name, _)| name.clone());
    Eval {
        command: "eval",
        measured: Measurement {
            model: &e.model,
            data: prepared.spec.to_string(),
            split,
            task,
            test_rows: e.rows,
            metrics,
            hierarchy: e.hierarchy.as_ref(),
        },
        model_file: model_file.display().to_string(),
        excluded_rows: e.excluded,
        users: match &e.measured {
            Measured::Ranking(m) => Some(m.users),
            _ => None,
        },
    }
}

/// `recc cv --json`.
#[derive(Serialize)]
pub struct Cv<'a> {
    command: &'static str,
    model: &'a str,
    file: &'a str,
    data: String,
    split: &'a str,
    folds: Vec<Fold<'a>>,
    mean: &'a BTreeMap<String, f64>,
    std: &'a BTreeMap<String, f64>,
    seconds: f64,
}

/// A fold is known by the name the data gives it (`u1`), or by its number
/// when the split made it.
#[derive(Serialize)]
#[serde(untagged)]
pub enum FoldLabel<'a> {
    Given(&'a str),
    Number(usize),
}

#[derive(Serialize)]
pub struct Fold<'a> {
    fold: FoldLabel<'a>,
    metrics: &'a BTreeMap<String, f64>,
    seconds: f64,
}

pub fn cv<'a>(source: &'a Source, prepared: &'a Prepared, report: &'a CvReport) -> Cv<'a> {
    Cv {
        command: "cv",
        model: &source.model.name,
        file: &source.name,
        data: prepared.spec.to_string(),
        split: &prepared.split_text,
        folds: report
            .folds
            .iter()
            .map(|f| Fold {
                fold: if f.given {
                    FoldLabel::Given(&f.name)
                } else {
                    FoldLabel::Number(f.number)
                },
                metrics: &f.metrics,
                seconds: f.seconds,
            })
            .collect(),
        mean: &report.mean,
        std: &report.std,
        seconds: report.seconds,
    }
}

/// `recc bench --json`.
#[derive(Serialize)]
pub struct Bench<'a> {
    command: &'static str,
    model: &'a str,
    data: &'a str,
    rows: usize,
    backend: String,
    threads: usize,
    prefetch: usize,
    epochs: usize,
    compile_ms: Option<f64>,
    code_bytes: Option<usize>,
    load_seconds: f64,
    epoch_seconds: &'a [f64],
    updates_per_second: f64,
    wall_seconds: f64,
    handwritten_updates_per_second: Option<f64>,
    ratio_to_handwritten: Option<f64>,
    peak_memory_bytes: Option<u64>,
}

pub fn bench(r: &BenchReport) -> Bench<'_> {
    let rate = r.updates_per_second;
    Bench {
        command: "bench",
        model: &r.model,
        data: &r.data,
        rows: r.rows,
        backend: r.backend.to_string(),
        threads: r.threads,
        prefetch: r.prefetch,
        epochs: r.epoch_seconds.len(),
        compile_ms: r.compile_ms,
        code_bytes: r.code_bytes,
        load_seconds: r.load_seconds,
        epoch_seconds: &r.epoch_seconds,
        updates_per_second: rate,
        wall_seconds: r.wall_seconds,
        handwritten_updates_per_second: r.handwritten_updates_per_second,
        ratio_to_handwritten: r.handwritten_updates_per_second.map(|h| h / rate),
        peak_memory_bytes: r.peak_memory_bytes,
    }
}

/// `recc predict --json`.
#[derive(Serialize)]
pub struct Predict<'a> {
    command: &'static str,
    model: &'a str,
    model_file: String,
    predictions: Vec<Prediction<'a>>,
}

#[derive(Serialize)]
pub struct Prediction<'a> {
    user: &'a str,
    item: &'a str,
    score: f64,
    /// The user or the item is not in the model (`--allow-unknown`).
    unknown: bool,
}

pub fn predict<'a>(model: &'a str, model_file: &Path, pairs: &'a [PairScore]) -> Predict<'a> {
    Predict {
        command: "predict",
        model,
        model_file: model_file.display().to_string(),
        predictions: pairs
            .iter()
            .map(|p| Prediction {
                user: &p.user,
                item: &p.item,
                score: p.score,
                unknown: p.unknown,
            })
            .collect(),
    }
}

/// `recc recommend --json`.
#[derive(Serialize)]
pub struct Recommend<'a> {
    command: &'static str,
    model: &'a str,
    model_file: String,
    user: &'a str,
    /// The user is not in the model: a cold-start list (`--allow-unknown`).
    unknown: bool,
    recommendations: Vec<Recommended<'a>>,
}

#[derive(Serialize)]
pub struct Recommended<'a> {
    item: &'a str,
    label: &'a str,
    score: f64,
}

pub fn recommend<'a>(
    model: &'a str,
    model_file: &Path,
    user: &'a str,
    recs: &'a Recommendations,
) -> Recommend<'a> {
    Recommend {
        command: "recommend",
        model,
        model_file: model_file.display().to_string(),
        user,
        unknown: recs.unknown,
        recommendations: recs
            .items
            .iter()
            .map(|r| Recommended {
                item: &r.item,
                label: &r.label,
                score: r.score,
            })
            .collect(),
    }
}

/// `recc similar --json`.
#[derive(Serialize)]
pub struct Similar<'a> {
    command: &'static str,
    model: &'a str,
    model_file: String,
    /// The item as asked (an id or a label).
    item: &'a str,
    /// The raw id and the label of the item found.
    id: &'a str,
    label: &'a str,
    table: &'a str,
    neighbours: Vec<Neighbour<'a>>,
}

#[derive(Serialize)]
pub struct Neighbour<'a> {
    id: &'a str,
    label: &'a str,
    similarity: f64,
}

pub fn similar<'a>(
    model: &'a str,
    model_file: &Path,
    item: &'a str,
    near: &'a Neighbours,
) -> Similar<'a> {
    Similar {
        command: "similar",
        model,
        model_file: model_file.display().to_string(),
        item,
        id: &near.id,
        label: &near.label,
        table: &near.table,
        neighbours: near
            .neighbours
            .iter()
            .map(|n| Neighbour {
                id: &n.id,
                label: &n.label,
                similarity: n.similarity,
            })
            .collect(),
    }
}

/// `recc export --json`.
#[derive(Serialize)]
pub struct Export {
    command: &'static str,
    model: String,
    model_file: String,
    format: String,
    output: String,
    /// The files written, in order.
    files: Vec<String>,
}

pub fn export(
    model: &str,
    model_file: &Path,
    format: &str,
    output: &Path,
    files: &[std::path::PathBuf],
) -> Export {
    Export {
        command: "export",
        model: model.to_string(),
        model_file: model_file.display().to_string(),
        format: format.to_string(),
        output: output.display().to_string(),
        files: files.iter().map(|p| p.display().to_string()).collect(),
    }
}

/// `recc check --json`: every file's verdict.
#[derive(Serialize)]
pub struct Check {
    command: &'static str,
    /// Every file checked without error.
    ok: bool,
    files: Vec<CheckedFile>,
}

impl Check {
    pub fn new(files: Vec<CheckedFile>) -> Check {
        Check {
            command: "check",
            ok: files.iter().all(|f| f.ok),
            files,
        }
    }
}

/// One checked file.
#[derive(Serialize)]
pub struct CheckedFile {
    file: String,
    ok: bool,
    /// What the model is, when it checks.
    model: Option<CheckedModel>,
    diagnostics: Vec<DiagnosticReport>,
    /// Why the file could not be checked at all (unreadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

impl CheckedFile {
    /// A file that was checked: its model (when it checks, and its graph
    /// builds) and its diagnostics; `failure` says why its graph did not.
    pub fn checked(
        file: &Path,
        sources: &SourceMap,
        diagnostics: &[Diagnostic],
        model: Option<CheckedModel>,
        failure: Option<String>,
    ) -> CheckedFile {
        CheckedFile {
            file: file.display().to_string(),
            ok: model.is_some() && !diagnostics.iter().any(Diagnostic::is_error),
            model,
            diagnostics: diagnostics
                .iter()
                .map(|d| DiagnosticReport::new(sources, d))
                .collect(),
            error: failure.map(|m| ErrorBody::new(crate::EXIT_MODEL_ERRORS, &m)),
        }
    }

    /// Did the file check without error?
    pub fn is_ok(&self) -> bool {
        self.ok
    }

    /// A file that could not be read.
    pub fn unreadable(file: &Path, message: &str) -> CheckedFile {
        CheckedFile {
            file: file.display().to_string(),
            ok: false,
            model: None,
            diagnostics: Vec::new(),
            error: Some(ErrorBody::new(crate::EXIT_USAGE, message)),
        }
    }
}

/// What `check` says of a model that checks.
#[derive(Serialize)]
pub struct CheckedModel {
    pub name: String,
    pub inputs: Vec<CheckedInput>,
    pub params: usize,
    pub terms: usize,
    /// Nodes of the forward graph, and of the graph with gradients.
    pub ir_nodes: usize,
    pub gradient_nodes: usize,
}

#[derive(Serialize)]
pub struct CheckedInput {
    pub name: String,
    /// `real`, a domain, `bag(DOMAIN)` or `history(DOMAIN)`.
    #[serde(rename = "type")]
    pub ty: String,
}

impl CheckedModel {
    /// The one-line summary `check` prints for people.
    pub fn line(&self) -> String {
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .map(|i| format!("{}: {}", i.name, i.ty))
            .collect();
        format!(
            "model {} ok — inputs {}; {} params; {} term{}; IR {} nodes, {} with gradients",
            self.name,
            inputs.join(", "),
            self.params,
            self.terms,
            if self.terms == 1 { "" } else { "s" },
            self.ir_nodes,
            self.gradient_nodes
        )
    }
}

/// A compiler diagnostic, located.
#[derive(Serialize)]
pub struct DiagnosticReport {
    /// `error` or `warning`.
    severity: &'static str,
    /// A stable name such as `recc::shape-mismatch`.
    code: &'static str,
    message: String,
    file: String,
    /// 1-based.
    line: usize,
    column: usize,
    help: Option<String>,
}

impl DiagnosticReport {
    fn new(sources: &SourceMap, d: &Diagnostic) -> DiagnosticReport {
        let span = d.primary.span;
        let at = sources.line_col(span.file, span.start);
        DiagnosticReport {
            severity: match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            code: d.code,
            message: d.message.clone(),
            file: sources.get(span.file).name.clone(),
            line: at.line,
            column: at.col,
            help: d.help.clone(),
        }
    }
}
