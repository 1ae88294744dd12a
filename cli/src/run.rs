//! The commands that touch data: train, eval, cv, predict, recommend,
//! similar and export. Each turns its flags into a request to
//! [`recc_runtime::experiment`], and prints what comes back for people or,
//! with `--json`, for machines.

use crate::progress::{self, Progress, EXIT_INTERRUPTED};
use crate::{Failure, EXIT_MODEL_ERRORS, EXIT_USAGE};
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
use serde_json::json;
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
    #[arg(long)]
    pub min_target: Option<f64>,
    /// Co-occurrence window of +item2vec and +text
    #[arg(long, default_value_t = 5)]
    pub window: usize,
    /// Words rarer than this are dropped by +text
    #[arg(long, default_value_t = 5)]
    pub min_count: usize,
    /// Also write the split's rows as DIR/train.tsv and DIR/test.tsv (raw ids),
    /// so other tools can be measured on exactly the same rows
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
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Learning rate
    #[arg(long)]
    pub lr: Option<f64>,
    /// sgd, adagrad or adam
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Examples averaged into one update
    #[arg(long)]
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
    #[arg(long)]
    pub threads: Option<usize>,
    /// What runs the training step: jit (native code, the default), interp
    /// (the reference evaluator) or cuda (a GPU: not built yet, says what
    /// this machine has)
    #[arg(long)]
    pub backend: Option<String>,
}

/// How results are shown.
#[derive(clap::Args, Clone, Debug)]
pub struct OutputArgs {
    /// Print JSON for machines instead of text for people
    #[arg(long)]
    pub json: bool,
    /// No progress bar or per-epoch lines
    #[arg(long, short)]
    pub quiet: bool,
    /// Cut-off of the @k ranking metrics
    #[arg(long, short = 'k', default_value_t = 10)]
    pub k: usize,
    /// Also measure the popularity baseline (items ranked by their training
    /// users) on the same split (ranking models)
    #[arg(long)]
    pub baseline: bool,
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
            write_split: self.write_split.clone(),
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
) -> Result<()> {
    crate::cuda::refuse(fit.backend.as_deref())?;
    let source = compile_file(file)?;
    let config = train_config(&source, fit)?;
    // A run is not lost to an output it cannot write: check before training.
    let output = output.unwrap_or_else(|| PathBuf::from(format!("{}.recm", source.model.name)));
    modelfile::check_output(&output).map_err(|e| usage(format!("-o {e}")))?;
    let request = data_args.request();
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
        eprintln!("interrupted: wrote {what} to {}", output.display());
        std::process::exit(EXIT_INTERRUPTED.into());
    }
    if out.json {
        let mut v = json!({
            "model": source.model.name,
            "file": source.name,
            "data": prepared.spec.to_string(),
            "split": split_name,
            "train_rows": split.train.len(),
            "test_rows": split.test.len(),
            "task": outcome.session.task.to_string(),
            "settings": config.describe(),
            "history": outcome.trained.history,
            "best_epoch": outcome.trained.best_epoch,
            "metrics": outcome.metrics,
            "baseline": outcome.baseline,
            "seconds": outcome.seconds,
            "output": output.display().to_string(),
        });
        if let Some(h) = &hierarchy {
            v["hierarchy"] = json!(h);
        }
        println!("{v:#}");
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
    fn fold_started(&mut self, name: &str) -> Box<dyn Observer + '_> {
        Box::new(Progress::on_stderr(
            self.out.quiet || self.out.json,
            name,
            self.watched,
        ))
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
) -> Result<()> {
    crate::cuda::refuse(fit.backend.as_deref())?;
    let source = compile_file(file)?;
    let config = train_config(&source, fit)?;
    let request = data_args.request().for_cross_validation();
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
        eprintln!("interrupted during {name}: no results");
        std::process::exit(EXIT_INTERRUPTED.into());
    }
    let seconds = report.seconds;
    if out.json {
        let folds: Vec<_> = report
            .folds
            .iter()
            .map(|f| json!({"fold": f.name, "metrics": f.metrics, "seconds": f.seconds}))
            .collect();
        println!(
            "{:#}",
            json!({"model": source.model.name, "data": prepared.spec.to_string(),
                   "split": prepared.split_text, "folds": folds, "mean": report.mean,
                   "std": report.std, "seconds": seconds})
        );
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
    data_args: &DataArgs,
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
    let mut r = reopen(path, Some(&data_args.request()))?;
    if let Some(b) = scorer {
        r.fitted.session.backend = b;
    }
    let e = experiment::evaluate(&r.fitted, &r.prepared.data, &r.split, out.k)?;
    if e.excluded > 0 && !out.json {
        note(&format!(
            "left out {} of the split's test rows: the model was trained on them",
            e.excluded
        ));
    }
    let model = &r.saved.model_name;
    match &e.measured {
        Measured::Nothing => {
            if let Some(h) = &e.hierarchy {
                if out.json {
                    println!("{:#}", json!({"model": model, "rows": 0, "hierarchy": h}));
                } else {
                    println!("{}", format_hierarchy(h));
                }
            }
        }
        Measured::Ranking(m) => {
            if out.json {
                let mut v = serde_json::to_value(m).map_err(|e| failed(e.to_string()))?;
                v["excluded_rows"] = json!(e.excluded);
                if let Some(h) = &e.hierarchy {
                    v["hierarchy"] = json!(h);
                }
                println!("{v:#}");
            } else {
                println!("{}", recc_runtime::metrics::format_table(m));
                if let Some(h) = &e.hierarchy {
                    println!("{}", format_hierarchy(h));
                }
            }
        }
        Measured::Metrics(metrics) => {
            if out.json {
                let mut v = json!({"model": model, "rows": e.rows,
                                   "excluded_rows": e.excluded, "metrics": metrics});
                if let Some(h) = &e.hierarchy {
                    v["hierarchy"] = json!(h);
                }
                println!("{v:#}");
            } else {
                println!("{} rows: {}", e.rows, format_metrics(metrics));
                if let Some(h) = &e.hierarchy {
                    println!("{}", format_hierarchy(h));
                }
            }
        }
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
    let rows = experiment::predict_pairs(&r.fitted, &r.data, users, items)?;
    for n in rows.iter().flat_map(|p| &p.notes) {
        note(n);
    }
    if out.json {
        let v: Vec<_> = rows
            .iter()
            .map(|p| json!({"user": p.user, "item": p.item, "score": p.score}))
            .collect();
        println!("{:#}", json!(v));
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
    let recs = experiment::recommend(&r.fitted, &r.data, user, out.k, seen)?;
    recs.notes.iter().for_each(|n| note(n));
    if out.json {
        let v: Vec<_> = recs
            .items
            .iter()
            .map(|r| json!({"item": r.item, "label": r.label, "score": r.score}))
            .collect();
        println!("{:#}", json!({"user": user, "recommendations": v}));
    } else {
        println!(
            "top {} for {} {}:",
            recs.items.len(),
            recs.domain,
            printable(user)
        );
        for (rank, r) in recs.items.iter().enumerate() {
            let (l, n) = (printable(&r.label), printable(&r.item));
            let s = r.score;
            if l == n {
                println!("{:>3}. {n}  ({s:.3})", rank + 1);
            } else {
                println!("{:>3}. {l}  [{n}]  ({s:.3})", rank + 1);
            }
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
        let v: Vec<_> = near
            .neighbours
            .iter()
            .map(|n| json!({"id": n.id, "label": n.label, "similarity": n.similarity}))
            .collect();
        println!(
            "{:#}",
            json!({"item": item, "table": near.table, "neighbours": v})
        );
    } else {
        println!("nearest to {} by `{}`:", printable(&near.label), near.table);
        for (rank, n) in near.neighbours.iter().enumerate() {
            println!(
                "{:>3}. {}  ({:.3})",
                rank + 1,
                printable(&n.label),
                n.similarity
            );
        }
    }
    Ok(())
}

/// `recc export`: embeddings and biases as CSV or .npy.
pub fn export_command(path: &Path, format: &str, dir: &Path) -> Result<()> {
    let saved = experiment::read_model(path)?;
    let format = format
        .parse::<recc_runtime::export::ExportFormat>()
        .map_err(usage)?;
    for p in experiment::export(&saved, dir, format)? {
        println!("{}", printable(&p.display().to_string()));
    }
    Ok(())
}
