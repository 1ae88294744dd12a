//! The commands that touch data: train, eval, cv, predict, recommend,
//! similar and export. Each turns its flags into a request to
//! [`recc_runtime::experiment`], and prints what comes back for people or,
//! with `--json`, for machines.

use crate::progress::{self, Progress, StepBar};
use crate::report;
use crate::{Failure, EXIT_MODEL_ERRORS, EXIT_USAGE};
use recc_compiler::model::Solver;
use recc_runtime::data::Dataset;
use recc_runtime::experiment::{
    self, format_hierarchy, format_metrics, printable, DataRequest, ErrorKind, ExperimentError,
    FitOverrides, FoldObserver, FoldResult, Measured, Outcome, Source, TrainRequest,
};
use recc_runtime::modelfile;
use recc_runtime::optim::Schedule;
use recc_runtime::session::Backend;
use recc_runtime::split::Split;
use recc_runtime::train::{Observer, TrainConfig};
use std::path::{Path, PathBuf};

/// Where the examples come from and how they are split and bound.
#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    /// Data: builtin (generated, the default), ml-100k:DIR, lastfm:DIR,
    /// amazon:FILE, csv:FILE, tree:BxD (the ancestor pairs of a generated
    /// tree) or a path; append +item2vec or +text for co-occurrence counts
    #[arg(long, default_value = "builtin")]
    pub data: String,
    /// How to split: given[:u1..u5|ua|ub], random[:F], kfold[:K], user[:F],
    /// last[:N|P%], none [default: random:0.2, or user:0.2 for ranking
    /// models, none for tree:BxD]
    #[arg(long)]
    pub split: Option<String>,
    /// Columns of a delimited file, e.g. user,item,rating:real,ts:time,genres:bag(genre,|)
    #[arg(long)]
    pub columns: Option<String>,
    /// Field separator of a delimited file (default: detected)
    #[arg(long)]
    pub sep: Option<String>,
    /// The delimited file's first line names its columns
    #[arg(long)]
    pub header: bool,
    /// Skip lines that do not parse, and report how many, instead of stopping
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Bind a model input to a data column: --bind r=stars
    #[arg(long, value_name = "INPUT=COLUMN")]
    pub bind: Vec<String>,
    /// Columns that make up a factorization machine's features (default: all categorical ones)
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Only rows whose target is at least this are positives of a ranking model
    #[arg(long, allow_negative_numbers = true)]
    pub min_target: Option<f64>,
    /// Co-occurrence window of +item2vec and +text
    #[arg(long, default_value_t = 5, value_parser = at_least_one, allow_negative_numbers = true)]
    pub window: usize,
    /// Words rarer than this are dropped by +text
    #[arg(long, default_value_t = 5)]
    pub min_count: usize,
}

/// The data `eval` measures on: the model's own, split as it was, unless
/// told otherwise. The co-occurrence window and vocabulary are the model's
/// and cannot change, so there is no `--window` or `--min-count` here.
#[derive(clap::Args, Clone, Debug)]
pub struct EvalDataArgs {
    /// Data to measure on, written as for `train` [default: the data the
    /// model was trained on]
    #[arg(long)]
    pub data: Option<String>,
    /// How to split, written as for `train` [default: the model's split]
    #[arg(long)]
    pub split: Option<String>,
    /// Columns of a delimited file [default: the model's]
    #[arg(long)]
    pub columns: Option<String>,
    /// Field separator of a delimited file [default: the model's, or detected]
    #[arg(long)]
    pub sep: Option<String>,
    /// The delimited file's first line names its columns
    #[arg(long)]
    pub header: bool,
    /// Skip lines that do not parse, and report how many, instead of stopping
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Bind a model input to a data column: --bind r=stars [default: the model's]
    #[arg(long, value_name = "INPUT=COLUMN")]
    pub bind: Vec<String>,
    /// Columns that make up a factorization machine's features [default: the model's]
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Only rows whose target is at least this are positives of a ranking
    /// model [default: the model's]
    #[arg(long, allow_negative_numbers = true)]
    pub min_target: Option<f64>,
}

impl EvalDataArgs {
    /// The request laid over the model's own: what is not given is the
    /// model's (the default data spec stands for "the model's data").
    pub fn request(&self) -> DataRequest {
        let default = DataRequest::default();
        DataRequest {
            data: self.data.clone().unwrap_or(default.data.clone()),
            split: self.split.clone(),
            columns: self.columns.clone(),
            sep: self.sep.clone(),
            header: self.header,
            skip_bad_lines: self.skip_bad_lines,
            bind: self.bind.clone(),
            features: self.features.clone(),
            min_target: self.min_target,
            ..default
        }
    }
}

/// Where `train` writes its split's rows.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct WriteSplitArgs {
    /// Also write the split's rows as DIR/train.tsv and DIR/test.tsv (raw ids),
    /// so other tools can be measured on exactly the same rows
    #[arg(long, value_name = "DIR")]
    pub write_split: Option<PathBuf>,
}

/// Where `cv` writes its folds' rows.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct WriteFoldsArgs {
    /// Also write each fold's rows as DIR/FOLD/train.tsv and
    /// DIR/FOLD/test.tsv (raw ids; FOLD is u1.., or fold1..), so other tools
    /// can be measured on exactly the same rows
    #[arg(long, value_name = "DIR")]
    pub write_split: Option<PathBuf>,
}

/// Data to answer from instead of the rows a model file keeps.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AnswerDataArgs {
    /// Bind the model to this data (ml-100k:DIR, csv:FILE, ...) instead of
    /// the rows its file keeps; ids are matched to the model's by name
    #[arg(long)]
    pub data: Option<String>,
    /// Columns of a delimited file, e.g. user,item,rating:real,ts:time
    #[arg(long, requires = "data")]
    pub columns: Option<String>,
    /// Field separator of a delimited file (default: detected)
    #[arg(long, requires = "data")]
    pub sep: Option<String>,
    /// The delimited file's first line names its columns
    #[arg(long, requires = "data")]
    pub header: bool,
}

impl AnswerDataArgs {
    /// The data asked for, if any.
    pub fn request(&self) -> Option<DataRequest> {
        let data = self.data.clone()?;
        Some(DataRequest {
            data,
            columns: self.columns.clone(),
            sep: self.sep.clone(),
            header: self.header,
            ..DataRequest::default()
        })
    }
}

/// Overrides of the model's `fit` block.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FitArgs {
    /// Epochs over the training rows
    #[arg(long, value_parser = at_least_one, allow_negative_numbers = true)]
    pub epochs: Option<usize>,
    /// Learning rate
    #[arg(long, value_parser = learning_rate, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// sgd, adagrad or adam
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Examples averaged into one update
    #[arg(long, value_parser = at_least_one, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// Seed of initialisation, shuffling and sampling
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop after this many epochs without improvement on a validation tenth of the training rows
    #[arg(long)]
    pub early_stopping: Option<usize>,
    /// Learning-rate schedule: constant, linear, cosine or step:FACTOR:EPOCHS
    #[arg(long)]
    pub schedule: Option<String>,
    /// Training threads: 1 (the default) reproduces a run exactly; more
    /// update the tables lock-free (Hogwild)
    #[arg(long, value_parser = at_least_one, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// What runs the training step: jit (native code, the default), interp
    /// (the reference evaluator) or cuda (a GPU: not built yet, says what
    /// this machine has)
    #[arg(long)]
    pub backend: Option<String>,
    /// How a model that pools a history is stepped: grouped (users' examples
    /// in rounds with the history's rows frozen, each updated once per round;
    /// the default where the model allows) or per-example
    #[arg(long)]
    pub pooling: Option<String>,
    /// How the model is fitted: sgd (gradient steps), als (alternating
    /// least squares) or gibbs (Gibbs sampling); als and gibbs need a
    /// squared-error model affine in each parameter [default: the model's
    /// fit block, else sgd]
    #[arg(long)]
    pub solver: Option<String>,
    /// ALS sweeps over every table [default: 15]
    #[arg(long, value_parser = at_least_one, allow_negative_numbers = true)]
    pub sweeps: Option<usize>,
    /// Gibbs sweeps kept and averaged [default: 150]
    #[arg(long, value_parser = at_least_one, allow_negative_numbers = true)]
    pub samples: Option<usize>,
    /// Gibbs sweeps thrown away before the kept ones [default: 50]
    #[arg(long, value_parser = at_least_zero, allow_negative_numbers = true)]
    pub burn_in: Option<usize>,
}

/// How a command shows its results, from its own flags: each command
/// accepts only those that act there (`TrainOutput`, `PredictOutput`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct OutputArgs {
    /// JSON for machines instead of text for people.
    pub json: bool,
    /// No progress bar or per-epoch lines.
    pub quiet: bool,
    /// Cut-off of the @k ranking metrics, or the length of a list.
    pub k: usize,
    /// Also measure the popularity baseline (ranking models).
    pub baseline: bool,
    /// Score ids the model does not know as unknown ones.
    pub allow_unknown: bool,
}

impl Default for OutputArgs {
    fn default() -> OutputArgs {
        OutputArgs {
            json: false,
            quiet: false,
            k: 10,
            baseline: false,
            allow_unknown: false,
        }
    }
}

/// `train`'s output flags.
#[derive(clap::Args, Clone, Debug)]
pub struct TrainOutput {
    /// Print JSON for machines instead of text for people
    #[arg(long)]
    pub json: bool,
    /// No progress bar or per-epoch lines
    #[arg(long, short)]
    pub quiet: bool,
    /// Cut-off of the @k ranking metrics
    #[arg(
        long,
        short = 'k',
        value_name = "N",
        default_value_t = 10,
        value_parser = at_least_one,
        allow_negative_numbers = true
    )]
    pub k: usize,
    /// Also measure the popularity baseline (items ranked by their training
    /// users) on the same split (ranking models)
    #[arg(long)]
    pub baseline: bool,
}

/// `cv`'s output flags.
#[derive(clap::Args, Clone, Debug)]
pub struct CvOutput {
    /// Print JSON for machines instead of text for people
    #[arg(long)]
    pub json: bool,
    /// No progress bar or per-epoch lines
    #[arg(long, short)]
    pub quiet: bool,
    /// Cut-off of the @k ranking metrics
    #[arg(
        long,
        short = 'k',
        value_name = "N",
        default_value_t = 10,
        value_parser = at_least_one,
        allow_negative_numbers = true
    )]
    pub k: usize,
}

/// `eval`'s output flags.
#[derive(clap::Args, Clone, Debug)]
pub struct EvalOutput {
    /// Print JSON for machines instead of text for people
    #[arg(long)]
    pub json: bool,
    /// No progress bar while a ranking model is measured
    #[arg(long, short)]
    pub quiet: bool,
    /// Cut-off of the @k ranking metrics
    #[arg(
        long,
        short = 'k',
        value_name = "N",
        default_value_t = 10,
        value_parser = at_least_one,
        allow_negative_numbers = true
    )]
    pub k: usize,
}

/// `bench`'s output flags.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchOutput {
    /// Print JSON for machines instead of text for people
    #[arg(long)]
    pub json: bool,
    /// Say nothing while the generated data is made
    #[arg(long, short)]
    pub quiet: bool,
}

/// `predict`'s output flags.
#[derive(clap::Args, Clone, Debug)]
pub struct PredictOutput {
    /// Print JSON for machines instead of text for people
    #[arg(long)]
    pub json: bool,
    /// Score ids the model does not know as unknown ones (the mean of those
    /// learned, marked in --json) instead of refusing them
    #[arg(long)]
    pub allow_unknown: bool,
}

/// `recommend`'s output flags.
#[derive(clap::Args, Clone, Debug)]
pub struct RecommendOutput {
    /// Print JSON for machines instead of text for people
    #[arg(long)]
    pub json: bool,
    /// How many items to list
    #[arg(
        long,
        short = 'k',
        value_name = "N",
        default_value_t = 10,
        value_parser = at_least_one,
        allow_negative_numbers = true
    )]
    pub k: usize,
    /// Rank for a user the model does not know as for an unknown one (the
    /// mean of those learned, marked in --json) instead of refusing
    #[arg(long)]
    pub allow_unknown: bool,
}

/// `similar`'s output flags.
#[derive(clap::Args, Clone, Debug)]
pub struct SimilarOutput {
    /// Print JSON for machines instead of text for people
    #[arg(long)]
    pub json: bool,
    /// How many neighbours to list
    #[arg(
        long,
        short = 'k',
        value_name = "N",
        default_value_t = 10,
        value_parser = at_least_one,
        allow_negative_numbers = true
    )]
    pub k: usize,
}

impl From<&TrainOutput> for OutputArgs {
    fn from(o: &TrainOutput) -> OutputArgs {
        OutputArgs {
            json: o.json,
            quiet: o.quiet,
            k: o.k,
            baseline: o.baseline,
            ..OutputArgs::default()
        }
    }
}

impl From<&CvOutput> for OutputArgs {
    fn from(o: &CvOutput) -> OutputArgs {
        OutputArgs {
            json: o.json,
            quiet: o.quiet,
            k: o.k,
            ..OutputArgs::default()
        }
    }
}

impl From<&EvalOutput> for OutputArgs {
    fn from(o: &EvalOutput) -> OutputArgs {
        OutputArgs {
            json: o.json,
            quiet: o.quiet,
            k: o.k,
            ..OutputArgs::default()
        }
    }
}

impl From<&BenchOutput> for OutputArgs {
    fn from(o: &BenchOutput) -> OutputArgs {
        OutputArgs {
            json: o.json,
            quiet: o.quiet,
            ..OutputArgs::default()
        }
    }
}

impl From<&PredictOutput> for OutputArgs {
    fn from(o: &PredictOutput) -> OutputArgs {
        OutputArgs {
            json: o.json,
            allow_unknown: o.allow_unknown,
            ..OutputArgs::default()
        }
    }
}

impl From<&RecommendOutput> for OutputArgs {
    fn from(o: &RecommendOutput) -> OutputArgs {
        OutputArgs {
            json: o.json,
            k: o.k,
            allow_unknown: o.allow_unknown,
            ..OutputArgs::default()
        }
    }
}

impl From<&SimilarOutput> for OutputArgs {
    fn from(o: &SimilarOutput) -> OutputArgs {
        OutputArgs {
            json: o.json,
            k: o.k,
            ..OutputArgs::default()
        }
    }
}

/// A count that must be at least one (epochs, a list's length, a window),
/// for clap: a negative or zero one is refused with the flag named.
pub fn at_least_one(text: &str) -> std::result::Result<usize, String> {
    match text.trim().parse::<i128>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!("must be at least 1, not {n}")),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// A count that may be zero (sweeps thrown away), for clap: a negative one
/// is refused with the flag named.
pub fn at_least_zero(text: &str) -> std::result::Result<usize, String> {
    match text.trim().parse::<i128>() {
        Ok(n) if n >= 0 => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!("must be at least 0, not {n}")),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// A learning rate, for clap: a finite number above zero.
pub fn learning_rate(text: &str) -> std::result::Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(lr) if lr.is_finite() && lr > 0.0 => Ok(lr),
        Ok(_) => Err("the learning rate must be a positive number, e.g. 0.01".to_string()),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

/// `LABEL  [ID]`, or the id alone when it is its own label: how answers
/// name an item.
pub fn label_and_id(label: &str, id: &str) -> String {
    let (label, id) = (printable(label), printable(id));
    if label == id {
        id.into_owned()
    } else {
        format!("{label}  [{id}]")
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

pub fn usage(m: impl Into<String>) -> Failure {
    Failure::new(EXIT_USAGE, m)
}

pub fn failed(m: impl Into<String>) -> Failure {
    Failure::new(EXIT_MODEL_ERRORS, m)
}

impl From<ExperimentError> for Failure {
    fn from(e: ExperimentError) -> Failure {
        match e.kind {
            ErrorKind::Usage => usage(e.message),
            ErrorKind::Model => failed(e.message),
        }
    }
}

impl DataArgs {
    pub fn request(&self) -> DataRequest {
        DataRequest {
            data: self.data.clone(),
            split: self.split.clone(),
            columns: self.columns.clone(),
            sep: self.sep.clone(),
            header: self.header,
            skip_bad_lines: self.skip_bad_lines,
            bind: self.bind.clone(),
            features: self.features.clone(),
            min_target: self.min_target,
            window: self.window,
            min_count: self.min_count,
            write_split: None,
        }
    }
}

impl FitArgs {
    pub fn overrides(&self) -> FitOverrides {
        FitOverrides {
            epochs: self.epochs,
            lr: self.lr,
            optimizer: self.optimizer.clone(),
            batch: self.batch,
            seed: self.seed,
            early_stopping: self.early_stopping,
            schedule: self.schedule.clone(),
            threads: self.threads,
            backend: self.backend.clone(),
            pooling: self.pooling.clone(),
            solver: self.solver.clone(),
            sweeps: self.sweeps,
            samples: self.samples,
            burn_in: self.burn_in,
        }
    }
}

fn note(text: &str) {
    eprintln!("note: {text}");
}

/// Read and check a model file; its warnings go to standard error.
pub fn compile_file(path: &Path) -> Result<Source> {
    let source = experiment::read_source(path)?;
    eprint!("{}", source.warnings);
    Ok(source)
}

/// The fit settings, with their notes said.
pub fn train_config(source: &Source, fit: &FitArgs) -> Result<TrainConfig> {
    let (config, notes) = experiment::train_config(&source.model, &fit.overrides())?;
    experiment::check_solver(source, &config)?;
    notes.iter().for_each(|n| note(n));
    Ok(config)
}

/// Load and split the data, with its notes said.
pub fn prepare(
    req: &DataRequest,
    source: &Source,
    seed: u64,
    all_folds: bool,
) -> Result<experiment::Prepared> {
    let prepared = experiment::prepare(req, Some(&source.model), seed, all_folds)?;
    prepared.notes.iter().for_each(|n| note(n));
    Ok(prepared)
}

/// Train one split with the progress bar; Ctrl-C stops it.
fn run_split(
    req: &TrainRequest,
    out: &OutputArgs,
    data: &Dataset,
    split: &Split,
    label: &str,
) -> Result<Outcome> {
    let watched = progress::watched(req.config);
    let mut observer = Progress::on_stderr(out.quiet || out.json, label, watched);
    Ok(experiment::train_split(req, data, split, &mut observer)?)
}

/// The fit settings a run trains with, as one indented line.
pub fn settings_line(config: &TrainConfig) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    match config.solver {
        Solver::Sgd => {}
        Solver::Als { sweeps } => {
            return format!(
                "  als · {sweeps} sweep{} · seed {} · {} thread{}",
                plural(sweeps),
                config.seed,
                config.threads,
                plural(config.threads)
            )
        }
        Solver::Gibbs { samples, burn_in } => {
            return format!(
                "  gibbs · {burn_in} burn-in + {samples} kept sweep{} · seed {} · {} thread{}",
                plural(samples),
                config.seed,
                config.threads,
                plural(config.threads)
            )
        }
    }
    format!(
        "  {} lr {} · {} epoch{} · batch {} · seed {}{}",
        config.optimizer,
        config.lr,
        config.epochs,
        if config.epochs == 1 { "" } else { "s" },
        config.batch,
        config.seed,
        if config.schedule == Schedule::Constant {
            String::new()
        } else {
            format!(" · schedule {}", config.schedule)
        }
    )
}

/// `recc train`
pub fn train_command(
    file: &Path,
    data_args: &DataArgs,
    fit: &FitArgs,
    out: &OutputArgs,
    output: Option<PathBuf>,
    write_split: Option<&Path>,
) -> Result<()> {
    crate::cuda::refuse(fit.backend.as_deref())?;
    let source = compile_file(file)?;
    let config = train_config(&source, fit)?;
    // A run is not lost to an output it cannot write: check before training.
    let output = output.unwrap_or_else(|| PathBuf::from(format!("{}.recm", source.model.name)));
    modelfile::check_output(&output).map_err(|e| usage(format!("-o {e}")))?;
    let mut request = data_args.request();
    if let Some(dir) = write_split {
        experiment::check_split_dir(dir)?;
        request.write_split = Some(dir.to_path_buf());
    }
    let prepared = prepare(&request, &source, config.seed, false)?;
    experiment::bind_options(&request)?;
    let (split_name, split) = prepared
        .splits
        .first()
        .ok_or_else(|| usage("the split produced nothing to train on"))?;
    if !out.json && !out.quiet {
        eprintln!(
            "training {} on {}: {} train / {} test rows ({split_name})",
            source.model.name,
            experiment::describe_data(&prepared.data),
            split.train.len(),
            split.test.len()
        );
        eprintln!("{}", settings_line(&config));
    }
    if let Some(dir) = &request.write_split {
        experiment::write_split(dir, &prepared.data, split, &source.model, &request)?;
    }
    let req = TrainRequest {
        source: &source,
        config: &config,
        request: &request,
        k: out.k,
        baseline: out.baseline,
    };
    let mut outcome = run_split(&req, out, &prepared.data, split, "")?;
    let hierarchy =
        experiment::hierarchy(&prepared.spec, &outcome.session, &outcome.trained.params);
    // The tables move into the saved model: nothing reads them after this.
    let params = std::mem::replace(
        &mut outcome.trained.params,
        recc_compiler::interp::Params {
            domain_sizes: Vec::new(),
            tables: Vec::new(),
        },
    );
    let mut saved =
        experiment::saved_model(&source, &prepared, &config, &outcome, params, &request);
    let interrupted = outcome
        .trained
        .interrupted
        .map(|stop| experiment::describe_interruption(stop, outcome.trained.best_epoch));
    if let Some(what) = &interrupted {
        saved.settings.insert("interrupted".into(), what.clone());
    }
    modelfile::save(&output, &saved).map_err(|e| usage(e.to_string()))?;
    if let Some(what) = interrupted {
        report::interrupted(&format!(
            "interrupted: wrote {what} to {}",
            output.display()
        ));
    }
    if out.json {
        report::print(&report::train(&report::TrainRun {
            source: &source,
            prepared: &prepared,
            split: split_name,
            train_rows: split.train.len(),
            test_rows: split.test.len(),
            config: &config,
            outcome: &outcome,
            hierarchy: hierarchy.as_ref(),
            output: &output,
        }))?;
    } else {
        if let Some(e) = outcome.trained.best_epoch {
            println!("early stopping kept epoch {e}");
        }
        if !outcome.metrics.is_empty() {
            println!("test: {}", format_metrics(&outcome.metrics));
        }
        if let Some(b) = &outcome.baseline {
            println!("popularity: {}", format_metrics(b));
        }
        match &hierarchy {
            Some(h) => println!("{}", format_hierarchy(h)),
            None if outcome.metrics.is_empty() => println!("no test rows: nothing measured"),
            None => {}
        }
        println!(
            "wrote {} ({:.1} s of training)",
            output.display(),
            outcome.seconds
        );
    }
    Ok(())
}

/// A cross-validation's progress: a bar per fold, and each fold's line as
/// it ends.
struct CvProgress<'a> {
    out: &'a OutputArgs,
    watched: &'static str,
}

impl FoldObserver for CvProgress<'_> {
    fn fold_started(&mut self, name: &str, number: usize, folds: usize) -> Box<dyn Observer + '_> {
        Box::new(
            Progress::on_stderr(self.out.quiet || self.out.json, name, self.watched)
                .fold_of(number, folds),
        )
    }

    fn fold_finished(&mut self, result: &FoldResult) {
        if !self.out.json {
            println!("{}: {}", result.name, format_metrics(&result.metrics));
        }
    }
}

/// `recc cv`: train and test on every fold; mean ± std of each metric.
pub fn cv_command(
    file: &Path,
    data_args: &DataArgs,
    fit: &FitArgs,
    out: &OutputArgs,
    write_split: Option<&Path>,
) -> Result<()> {
    crate::cuda::refuse(fit.backend.as_deref())?;
    let source = compile_file(file)?;
    let config = train_config(&source, fit)?;
    let mut request = data_args.request().for_cross_validation();
    if let Some(dir) = write_split {
        experiment::check_split_dir(dir)?;
        request.write_split = Some(dir.to_path_buf());
    }
    let prepared = prepare(&request, &source, config.seed, true)?;
    experiment::bind_options(&request)?;
    let req = TrainRequest {
        source: &source,
        config: &config,
        request: &request,
        k: out.k,
        baseline: false,
    };
    let mut watch = CvProgress {
        out,
        watched: progress::watched(&config),
    };
    let report = experiment::cross_validate(&req, &prepared, &mut watch)?;
    if let Some(name) = &report.interrupted {
        report::interrupted(&format!("interrupted during {name}: no results"));
    }
    let seconds = report.seconds;
    if out.json {
        report::print(&report::cv(&source, &prepared, &report))?;
    } else {
        let line = experiment::format_mean_std(&report.mean, &report.std);
        println!(
            "mean over {} folds: {line}  ({seconds:.1} s)",
            report.folds.len()
        );
    }
    Ok(())
}

/// Reopen a model file bound to its data, its warnings and notes said.
fn reopen(path: &Path, data: Option<&DataRequest>) -> Result<experiment::Reopened> {
    let (saved, source) = experiment::open_model(path)?;
    eprint!("{}", source.warnings);
    let reopened = experiment::bind_saved(path, saved, source, data)?;
    reopened.prepared.notes.iter().for_each(|n| note(n));
    Ok(reopened)
}

/// `recc eval`: the test metrics of a saved model, recomputed.
pub fn eval_command(
    path: &Path,
    data_args: &EvalDataArgs,
    backend: Option<&str>,
    out: &OutputArgs,
) -> Result<()> {
    crate::cuda::refuse(backend)?;
    let scorer = backend
        .map(|b| {
            b.parse::<Backend>()
                .map_err(|e| usage(format!("--backend: {e}")))
        })
        .transpose()?;
    let request = data_args.request();
    let mut r = reopen(path, Some(&request))?;
    experiment::check_min_target(r.fitted.session.task, &request)?;
    if let Some(b) = scorer {
        r.fitted.session.backend = b;
    }
    let bar = StepBar::on_stderr(out.quiet || out.json, "");
    let e = experiment::evaluate_observed(&r.fitted, &r.prepared.data, &r.split, out.k, &bar)?;
    if e.excluded > 0 && !out.json {
        note(&format!(
            "left out {} of the {} test rows: the model was trained on them",
            e.excluded,
            e.excluded + e.rows
        ));
    }
    if out.json {
        let task = r.fitted.session.task.to_string();
        let metrics = e.metrics();
        return report::print(&report::eval(path, &r.prepared, task, &e, &metrics));
    }
    match &e.measured {
        Measured::Nothing => {}
        Measured::Ranking(m) => println!("{}", recc_runtime::metrics::format_table(m)),
        Measured::Metrics(metrics) => println!("{} rows: {}", e.rows, format_metrics(metrics)),
    }
    if let Some(h) = &e.hierarchy {
        println!("{}", format_hierarchy(h));
    }
    Ok(())
}

/// Open a model file to answer from (its kept rows, or `data`), its
/// warnings and notes said.
fn open_for_answers(path: &Path, data: &AnswerDataArgs) -> Result<experiment::Answering> {
    let (saved, source) = experiment::open_model(path)?;
    eprint!("{}", source.warnings);
    let answering = experiment::open_for_answers(path, saved, source, data.request().as_ref())?;
    answering.notes.iter().for_each(|n| note(n));
    Ok(answering)
}

/// `recc predict`: scores of (user, item) pairs.
pub fn predict_command(
    path: &Path,
    users: &[String],
    items: &[String],
    data: &AnswerDataArgs,
    out: &OutputArgs,
) -> Result<()> {
    let r = open_for_answers(path, data)?;
    let rows = experiment::predict_pairs(&r.fitted, &r.data, users, items, out.allow_unknown)?;
    for n in rows.iter().flat_map(|p| &p.notes) {
        note(n);
    }
    if out.json {
        report::print(&report::predict(&r.saved.model_name, path, &rows))?;
    } else {
        println!("user\titem\tscore");
        for p in rows {
            println!(
                "{}\t{}\t{:.4}",
                printable(&p.user),
                printable(&p.item),
                p.score
            );
        }
    }
    Ok(())
}

/// `recc recommend`: the best items for a user, leaving out what they have
/// unless `include_seen`.
pub fn recommend_command(
    path: &Path,
    user: &str,
    include_seen: bool,
    data: &AnswerDataArgs,
    out: &OutputArgs,
) -> Result<()> {
    let r = open_for_answers(path, data)?;
    let seen = if include_seen {
        experiment::SeenItems::Include
    } else {
        experiment::SeenItems::Exclude
    };
    let recs = experiment::recommend(&r.fitted, &r.data, user, out.k, out.allow_unknown, seen)?;
    recs.notes.iter().for_each(|n| note(n));
    if out.json {
        report::print(&report::recommend(&r.saved.model_name, path, user, &recs))?;
    } else {
        println!(
            "top {} for {} {}:",
            recs.items.len(),
            recs.domain,
            printable(user)
        );
        for (rank, r) in recs.items.iter().enumerate() {
            let item = label_and_id(&r.label, &r.item);
            println!("{:>3}. {item}  ({:.3})", rank + 1, r.score);
        }
    }
    Ok(())
}

/// `recc similar`: nearest neighbours of an item in the model's embedding,
/// read from the model file alone.
pub fn similar_command(
    path: &Path,
    item: &str,
    table: Option<&str>,
    domain: Option<&str>,
    out: &OutputArgs,
) -> Result<()> {
    let (saved, source) = experiment::open_model(path)?;
    eprint!("{}", source.warnings);
    let near = experiment::similar_saved(&saved, &source, item, table, domain, out.k)?;
    if out.json {
        report::print(&report::similar(&saved.model_name, path, item, &near))?;
    } else {
        println!(
            "nearest to {} by `{}`:",
            label_and_id(&near.label, &near.id),
            near.table
        );
        for (rank, n) in near.neighbours.iter().enumerate() {
            println!(
                "{:>3}. {}  ({:.3})",
                rank + 1,
                label_and_id(&n.label, &n.id),
                n.similarity
            );
        }
    }
    Ok(())
}

/// `recc export`: embeddings and biases as CSV or .npy.
pub fn export_command(path: &Path, format_name: &str, dir: &Path, json: bool) -> Result<()> {
    let format = format_name
        .parse::<recc_runtime::export::ExportFormat>()
        .map_err(usage)?;
    // Before the model is read: a target that cannot be written is said first.
    modelfile::check_output_dir(dir).map_err(|e| usage(format!("-o {e}")))?;
    let saved = experiment::read_model(path)?;
    let files = experiment::export(&saved, dir, format)?;
    if json {
        let model = &saved.model_name;
        return report::print(&report::export(model, path, format_name, dir, &files));
    }
    for p in files {
        println!("{}", printable(&p.display().to_string()));
    }
    Ok(())
}
