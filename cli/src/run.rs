//! The commands that touch data: train, eval, cv, predict, recommend,
//! similar and export. Each reads its arguments, calls the runtime and
//! prints for people or, with `--json`, for machines.

use crate::progress::{self, Progress, EXIT_INTERRUPTED};
use crate::{Failure, EXIT_MODEL_ERRORS, EXIT_USAGE};
use recc_compiler::interp::Params;
use recc_compiler::ir::SlotKind;
use recc_compiler::model::{Model, Optimizer};
use recc_runtime::bind::BindOptions;
use recc_runtime::data::spec::{DataSpec, LoadOptions};
use recc_runtime::data::{delimited, BadLines, Dataset};
use recc_runtime::hierarchy::{self, HierarchyReport};
use recc_runtime::modelfile::{self, SavedDomain, SavedModel};
use recc_runtime::optim::Schedule;
use recc_runtime::predict::{self, Predictor};
use recc_runtime::split::{Split, SplitSpec};
use recc_runtime::train::{self, Backend, Interruption, Session, Task, TrainConfig, Trained};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// What runs the training step: jit (native code, the default) or
    /// interp (the reference evaluator)
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

/// A checked model and its source.
pub struct Source {
    pub name: String,
    pub text: String,
    pub model: Model,
}

pub fn compile_file(path: &Path) -> Result<Source> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    compile_text(&path.display().to_string(), text)
}

fn compile_text(name: &str, text: String) -> Result<Source> {
    let compiled = recc_compiler::compile(name, &text);
    let report = compiled.render_diagnostics();
    match compiled.model {
        Some(model) if !compiled.diagnostics.iter().any(|d| d.is_error()) => {
            eprint!("{report}");
            Ok(Source {
                name: name.to_string(),
                text,
                model,
            })
        }
        _ => Err(failed(report)),
    }
}

fn has_negatives(model: &Model) -> bool {
    !model.samplers.is_empty()
}

/// The split as asked, or the data's own default, or the model's.
fn split_text(args: &DataArgs, model: &Model, spec: &DataSpec) -> String {
    args.split.clone().unwrap_or_else(|| {
        if let Some(split) = spec.default_split() {
            split.into()
        } else if has_negatives(model) {
            "user:0.2".into()
        } else {
            "random:0.2".into()
        }
    })
}

fn load_options(args: &DataArgs) -> Result<LoadOptions> {
    let columns = match &args.columns {
        Some(c) => delimited::parse_columns(c).map_err(|e| usage(e.to_string()))?,
        None => Vec::new(),
    };
    Ok(LoadOptions {
        bad_lines: if args.skip_bad_lines {
            BadLines::Skip
        } else {
            BadLines::Fail
        },
        delimited: delimited::Spec {
            separator: args.sep.clone(),
            header: args.header,
            columns,
        },
        window: args.window,
        min_count: args.min_count,
    })
}

pub fn bind_options(args: &DataArgs) -> Result<BindOptions> {
    let mut explicit = BTreeMap::new();
    for b in &args.bind {
        let Some((input, column)) = b.split_once('=') else {
            return Err(usage(format!(
                "--bind {b}: expected INPUT=COLUMN, e.g. --bind r=stars"
            )));
        };
        explicit.insert(input.trim().to_string(), column.trim().to_string());
    }
    Ok(BindOptions {
        explicit,
        features: args.features.clone(),
    })
}

/// Loaded data and the splits to run.
pub struct Prepared {
    pub data: Dataset,
    pub spec: DataSpec,
    pub split_text: String,
    pub splits: Vec<(String, Split)>,
}

/// Load the data and make the splits. `all_folds` runs every given fold
/// (cv) instead of the one named.
pub fn prepare(args: &DataArgs, model: &Model, seed: u64, all_folds: bool) -> Result<Prepared> {
    let spec: DataSpec = args.data.parse().map_err(usage)?;
    let options = load_options(args)?;
    let split_text = split_text(args, model, &spec);
    let (fold_names, rest): (Vec<String>, Option<SplitSpec>) =
        match split_text.strip_prefix("given") {
            Some(tail) => {
                let named = tail.strip_prefix(':').filter(|t| !t.is_empty());
                let folds = match (named, all_folds) {
                    (Some(f), _) => vec![f.to_string()],
                    (None, true) => ["u1", "u2", "u3", "u4", "u5"].map(String::from).to_vec(),
                    (None, false) => vec!["u1".to_string()],
                };
                (folds, None)
            }
            None => (
                Vec::new(),
                Some(
                    split_text
                        .parse()
                        .map_err(|e: recc_runtime::split::SplitSpecError| usage(e.to_string()))?,
                ),
            ),
        };
    let mut splits = Vec::new();
    let mut data = None;
    for fold in &fold_names {
        let (d, s) = spec
            .load(&options, Some(fold))
            .map_err(|e| usage(e.to_string()))?;
        let s = s.ok_or_else(|| usage(format!("{spec} has no fold {fold}")))?;
        // Every fold of one data set has the same id maps; keep one copy of
        // the rows per fold by training each fold on its own load.
        splits.push((fold.clone(), s));
        data = Some(d);
        if fold_names.len() > 1 {
            // cv loads each fold again when it runs it.
            continue;
        }
    }
    let data = match (data, rest) {
        (Some(d), _) => d,
        (None, Some(split)) => {
            let (d, _) = spec
                .load(&options, None)
                .map_err(|e| usage(e.to_string()))?;
            let made = split.apply(&d, seed).map_err(|e| usage(e.to_string()))?;
            let n = made.len();
            for (k, s) in made.into_iter().enumerate() {
                let name = if n > 1 {
                    format!("fold {}", k + 1)
                } else {
                    split_text.clone()
                };
                splits.push((name, s));
            }
            d
        }
        (None, None) => return Err(usage("no split to run")),
    };
    if data.skipped > 0 {
        eprintln!(
            "note: skipped {} bad line{} of {}",
            data.skipped,
            if data.skipped == 1 { "" } else { "s" },
            data.name
        );
    }
    Ok(Prepared {
        data,
        spec,
        split_text,
        splits,
    })
}

/// The fit settings: the model's `fit`, overridden by flags.
pub fn train_config(model: &Model, fit: &FitArgs) -> Result<TrainConfig> {
    let mut c = TrainConfig::from_fit(&model.fit);
    if let Some(e) = fit.epochs {
        c.epochs = e;
    }
    if let Some(lr) = fit.lr {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(usage(format!(
                "--lr {lr}: the learning rate must be a positive number"
            )));
        }
        c.lr = lr;
    }
    if let Some(o) = &fit.optimizer {
        c.optimizer = match o.as_str() {
            "sgd" => Optimizer::Sgd,
            "adagrad" => Optimizer::Adagrad,
            "adam" => match c.optimizer {
                a @ Optimizer::Adam { .. } => a,
                _ => Optimizer::Adam {
                    beta1: 0.9,
                    beta2: 0.999,
                },
            },
            other => {
                return Err(usage(format!(
                    "--optimizer {other}: expected sgd, adagrad or adam"
                )))
            }
        };
    }
    if let Some(b) = fit.batch {
        if b == 0 {
            return Err(usage("--batch 0: a batch holds at least one example"));
        }
        c.batch = b;
    }
    if let Some(s) = fit.seed {
        c.seed = s;
    }
    if let Some(e) = fit.early_stopping {
        c.early_stopping = e;
    }
    if let Some(s) = &fit.schedule {
        c.schedule = s.parse::<Schedule>().map_err(usage)?;
    }
    if let Some(b) = &fit.backend {
        c.backend = b.parse::<Backend>().map_err(usage)?;
    }
    if let Some(t) = fit.threads {
        if t == 0 {
            return Err(usage("--threads 0: training needs at least one thread"));
        }
        c.threads = t;
    }
    if c.batch > 1 && c.backend == Backend::Jit {
        eprintln!(
            "note: --batch {}: mini-batches are averaged by the reference evaluator, \
             which trains this run",
            c.batch
        );
    }
    if c.threads > 1 && c.effective_backend() == Backend::Interp {
        eprintln!(
            "note: --threads {}: the reference evaluator trains on one thread",
            c.threads
        );
    }
    Ok(c)
}

/// One trained split: the session, its result and the test metrics.
pub struct Outcome {
    pub session: Session,
    pub trained: Trained,
    pub metrics: BTreeMap<String, f64>,
    /// The popularity baseline's metrics, when `--baseline` asked for them.
    pub baseline: Option<BTreeMap<String, f64>>,
    pub seconds: f64,
}

/// What every split of one command shares.
pub struct Job<'a> {
    pub source: &'a Source,
    pub config: &'a TrainConfig,
    pub bind: &'a BindOptions,
    pub args: &'a DataArgs,
    pub out: &'a OutputArgs,
}

/// Why a model could not be bound to its data: a binding problem is the
/// data's or the flags' (`--bind`, `--features`), anything else the model's.
fn session_failure(e: train::TrainError) -> Failure {
    match e {
        train::TrainError::Bind(_) => usage(e.to_string()),
        _ => failed(e.to_string()),
    }
}

/// Train on one split and evaluate on its test rows.
pub fn run_split(job: &Job, data: &Dataset, split: &Split, label: &str) -> Result<Outcome> {
    let Job {
        source,
        config,
        bind,
        args,
        out,
    } = *job;
    let ranking = has_negatives(&source.model);
    let (train_rows, test_rows) = if ranking {
        (
            predict::positive_rows(data, &split.train, args.min_target),
            predict::positive_rows(data, &split.test, args.min_target),
        )
    } else {
        (split.train.clone(), split.test.clone())
    };
    // Early stopping watches a tenth of the training rows; otherwise the
    // test rows are shown as they go, which steers nothing.
    let all_train = train_rows.clone();
    let (train_rows, validation) = if config.early_stopping > 0 {
        let s = recc_runtime::split::random_holdout(train_rows.len(), 0.1, config.seed);
        (
            s.train.iter().map(|&k| train_rows[k]).collect::<Vec<_>>(),
            s.test.iter().map(|&k| train_rows[k]).collect::<Vec<_>>(),
        )
    } else {
        (train_rows, test_rows.clone())
    };
    let mut session = Session::new(&source.model, data, &train_rows, bind)
        .map_err(|e| session_failure(e).context(&source.name))?;
    for note in &session.binding.notes {
        eprintln!("note: {note}");
    }
    session.backend = config.backend;
    let watched = if config.early_stopping > 0 {
        "valid"
    } else {
        "test"
    };
    let started = Instant::now();
    let mut progress = Progress::new(out.quiet || out.json, label, watched);
    // Ctrl-C stops training at the end of a block; the caller saves what
    // there is (`Trained::interrupted`).
    progress::catch_interrupts();
    let trained = train::train(
        &session,
        data,
        &train_rows,
        &validation,
        config,
        &mut progress,
    )
    .map_err(|e| failed(e.to_string()));
    progress::release_interrupts();
    progress.finish();
    let mut trained = trained?;
    let seconds = started.elapsed().as_secs_f64();
    // Measured as `recc eval` measures it: every training row, validation
    // tenth included, is the user's and is left out of their ranking.
    let session = if config.early_stopping > 0 {
        let mut s = Session::new(&source.model, data, &all_train, bind)
            .map_err(|e| session_failure(e).context(&source.name))?;
        s.backend = config.backend;
        s
    } else {
        session
    };
    let train_rows = all_train;
    // The predictor holds the trained tables while it measures and hands
    // them back, so that no second copy of them lives beside it.
    let trained_params = std::mem::replace(
        &mut trained.params,
        Params {
            domain_sizes: Vec::new(),
            tables: Vec::new(),
        },
    );
    let predictor = Predictor::owning(&session, trained_params);
    let mut metrics = BTreeMap::new();
    let mut baseline = None;
    // An interrupted run is saved as it stands, without measuring it.
    if !test_rows.is_empty() && trained.interrupted.is_none() {
        match session.task {
            Task::Rating => {
                metrics = rating_metrics(&predictor, data, &train_rows, &test_rows, config.seed)?;
            }
            Task::Ranking => {
                let m = predictor
                    .ranking(data, &train_rows, &test_rows, out.k)
                    .map_err(|e| failed(e.to_string()))?;
                metrics = m.named().into_iter().collect();
                if out.baseline {
                    let b = predict::popularity_ranking(data, &train_rows, &test_rows, out.k)
                        .map_err(|e| failed(e.to_string()))?;
                    baseline = Some(b.named().into_iter().collect());
                }
            }
            Task::Loss => {
                let l = predictor
                    .mean_loss(data, &test_rows, config.seed)
                    .map_err(|e| failed(e.to_string()))?;
                metrics.insert("loss".into(), l);
            }
        }
    }
    trained.params = predictor.into_params();
    Ok(Outcome {
        session,
        trained,
        metrics,
        baseline,
        seconds,
    })
}

/// A rating model's test metrics: RMSE and MAE, and for a model with a
/// predictive distribution (variational tables) the coverage of its
/// intervals, measured as `recc train` and `recc eval` both measure it.
fn rating_metrics(
    predictor: &Predictor,
    data: &Dataset,
    train: &[usize],
    test: &[usize],
    seed: u64,
) -> Result<BTreeMap<String, f64>> {
    let m = predictor
        .rating(data, test)
        .map_err(|e| failed(e.to_string()))?;
    let mut metrics = BTreeMap::from([("rmse".to_string(), m.rmse), ("mae".to_string(), m.mae)]);
    let intervals = predictor
        .intervals(data, train, test, seed)
        .map_err(|e| failed(e.to_string()))?;
    if let Some(i) = intervals {
        metrics.insert("interval50".into(), i.interval50);
        metrics.insert("interval90".into(), i.interval90);
        metrics.insert("spread_corr".into(), i.spread_corr);
    }
    Ok(metrics)
}

/// The rows a model trains and is tested on, as `--write-split` writes them.
fn write_split(
    dir: &Path,
    data: &Dataset,
    split: &Split,
    model: &Model,
    args: &DataArgs,
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| usage(format!("cannot create {}: {e}", dir.display())))?;
    let min = has_negatives(model).then_some(args.min_target).flatten();
    // Both files are checked before either is written, and each is written
    // where a symlink leads, never over a directory, device or FIFO.
    let mut targets = Vec::new();
    for name in ["train.tsv", "test.tsv"] {
        let target = modelfile::check_output(&dir.join(name))
            .map_err(|e| usage(format!("--write-split {e}")))?;
        targets.push(target);
    }
    for (target, rows) in targets.iter().zip([&split.train, &split.test]) {
        let rows = predict::positive_rows(data, rows, min);
        data.write_tsv(target, &rows)
            .map_err(|e| usage(e.to_string()))?;
    }
    Ok(())
}

fn describe_data(data: &Dataset) -> String {
    let mut parts = vec![format!("{} rows", data.len())];
    let mut named: Vec<&str> = Vec::new();
    for role in [data.user.as_deref(), data.item.as_deref()]
        .into_iter()
        .flatten()
    {
        // Users and items of one domain (a tree's nodes) are counted once.
        if let Some((d, _)) = data.indices(role).filter(|(d, _)| !named.contains(d)) {
            parts.push(format!("{} {}s", data.domain_size(d), d));
            named.push(d);
        }
    }
    format!("{} ({})", data.name, parts.join(", "))
}

/// The hierarchy figures of a model trained on a generated tree, when one of
/// its tables embeds the tree's nodes in the Poincaré ball.
fn hierarchy(spec: &DataSpec, session: &Session, params: &Params) -> Option<HierarchyReport> {
    let tree = spec.tree()?;
    hierarchy::tree_report(&tree, &session.forward, &session.binding.domains, params)
}

fn format_hierarchy(h: &HierarchyReport) -> String {
    let norms: Vec<String> = h.norm_by_depth.iter().map(|n| format!("{n:.4}")).collect();
    format!(
        "hierarchy: parent_rank {:.4}  norm_by_depth {}",
        h.parent_rank,
        norms.join(" ")
    )
}

fn format_metrics(metrics: &BTreeMap<String, f64>) -> String {
    metrics
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// `recc train`
pub fn train_command(
    file: &Path,
    data_args: &DataArgs,
    fit: &FitArgs,
    out: &OutputArgs,
    output: Option<PathBuf>,
) -> Result<()> {
    let source = compile_file(file)?;
    let config = train_config(&source.model, fit)?;
    // A run is not lost to an output it cannot write: check before training.
    let output = output.unwrap_or_else(|| PathBuf::from(format!("{}.recm", source.model.name)));
    modelfile::check_output(&output).map_err(|e| usage(format!("-o {e}")))?;
    let prepared = prepare(data_args, &source.model, config.seed, false)?;
    let bind = bind_options(data_args)?;
    let (split_name, split) = prepared
        .splits
        .first()
        .ok_or_else(|| usage("the split produced nothing to train on"))?;
    if !out.json && !out.quiet {
        eprintln!(
            "training {} on {}: {} train / {} test rows ({split_name})",
            source.model.name,
            describe_data(&prepared.data),
            split.train.len(),
            split.test.len()
        );
        eprintln!(
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
        );
    }
    let job = Job {
        source: &source,
        config: &config,
        bind: &bind,
        args: data_args,
        out,
    };
    if let Some(dir) = &data_args.write_split {
        write_split(dir, &prepared.data, split, &source.model, data_args)?;
    }
    let mut outcome = run_split(&job, &prepared.data, split, "")?;
    let hierarchy = hierarchy(&prepared.spec, &outcome.session, &outcome.trained.params);
    // The tables move into the saved model: nothing reads them after this.
    let params = std::mem::replace(
        &mut outcome.trained.params,
        Params {
            domain_sizes: Vec::new(),
            tables: Vec::new(),
        },
    );
    let mut saved = saved_model(&source, &prepared, &config, &outcome, params, data_args);
    let interrupted = outcome
        .trained
        .interrupted
        .map(|stop| describe_interruption(stop, outcome.trained.best_epoch));
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

/// What an interrupted run kept: `epoch 3`, or `epoch 3 and 4096 of 80000
/// examples of epoch 4`.
fn describe_interruption(stop: Interruption, best_epoch: Option<usize>) -> String {
    if let Some(best) = best_epoch {
        return format!("epoch {best} (the best on validation)");
    }
    let finished = if stop.examples == stop.total {
        stop.epoch
    } else {
        stop.epoch - 1
    };
    if stop.examples == stop.total || stop.examples == 0 {
        format!("epoch {finished}")
    } else {
        format!(
            "epoch {finished} and {} of {} examples of epoch {}",
            stop.examples, stop.total, stop.epoch
        )
    }
}

fn saved_model(
    source: &Source,
    prepared: &Prepared,
    config: &TrainConfig,
    outcome: &Outcome,
    params: Params,
    args: &DataArgs,
) -> SavedModel {
    let mut settings = config.describe();
    settings.insert("split".into(), prepared.split_text.clone());
    settings.insert("task".into(), outcome.session.task.to_string());
    if !args.bind.is_empty() {
        settings.insert("bind".into(), args.bind.join(" "));
    }
    if !args.features.is_empty() {
        settings.insert("features".into(), args.features.join(","));
    }
    if let Some(m) = args.min_target {
        settings.insert("min_target".into(), m.to_string());
    }
    for (k, v) in [("columns", args.columns.clone()), ("sep", args.sep.clone())] {
        if let Some(v) = v {
            settings.insert(k.into(), v);
        }
    }
    if args.header {
        settings.insert("header".into(), "true".into());
    }
    settings.insert("window".into(), args.window.to_string());
    settings.insert("min_count".into(), args.min_count.to_string());
    let g = &outcome.session.forward;
    SavedModel {
        recc_version: env!("CARGO_PKG_VERSION").to_string(),
        model_name: source.model.name.clone(),
        source_name: source.name.clone(),
        source: source.text.clone(),
        data: prepared.spec.to_string(),
        settings,
        metrics: outcome.metrics.clone(),
        history: outcome.trained.history.clone(),
        domains: outcome
            .session
            .binding
            .domains
            .iter()
            .map(|(n, m)| SavedDomain::from_id_map(n, m))
            .collect(),
        tables: modelfile::into_saved_tables(g, params),
    }
}

/// `recc cv`: train and test on every fold; mean ± std of each metric.
pub fn cv_command(
    file: &Path,
    data_args: &DataArgs,
    fit: &FitArgs,
    out: &OutputArgs,
) -> Result<()> {
    let source = compile_file(file)?;
    let config = train_config(&source.model, fit)?;
    let mut args = data_args.clone();
    if args.split.is_none() {
        args.split = Some("kfold:5".into());
    }
    let prepared = prepare(&args, &source.model, config.seed, true)?;
    let bind = bind_options(&args)?;
    let options = load_options(&args)?;
    let given = prepared.split_text.starts_with("given");
    let mut results: Vec<(String, BTreeMap<String, f64>, f64)> = Vec::new();
    let started = Instant::now();
    for (name, split) in &prepared.splits {
        // A given fold has its own files: load them for this fold.
        let fold_data;
        let data = if given {
            let (d, _) = prepared
                .spec
                .load(&options, Some(name))
                .map_err(|e| usage(e.to_string()))?;
            fold_data = d;
            &fold_data
        } else {
            &prepared.data
        };
        let job = Job {
            source: &source,
            config: &config,
            bind: &bind,
            args: &args,
            out,
        };
        let outcome = run_split(&job, data, split, name)?;
        if outcome.trained.interrupted.is_some() {
            eprintln!("interrupted during {name}: no results");
            std::process::exit(EXIT_INTERRUPTED.into());
        }
        if !out.json {
            println!("{name}: {}", format_metrics(&outcome.metrics));
        }
        results.push((name.clone(), outcome.metrics, outcome.seconds));
    }
    let names: Vec<String> = results
        .first()
        .map(|(_, m, _)| m.keys().cloned().collect())
        .unwrap_or_default();
    let mut summary = BTreeMap::new();
    for n in &names {
        let vals: Vec<f64> = results
            .iter()
            .filter_map(|(_, m, _)| m.get(n).copied())
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len().max(1) as f64;
        let var =
            vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (vals.len().max(2) - 1) as f64;
        summary.insert(n.clone(), (mean, var.sqrt()));
    }
    let seconds = started.elapsed().as_secs_f64();
    if out.json {
        let folds: Vec<_> = results
            .iter()
            .map(|(n, m, s)| json!({"fold": n, "metrics": m, "seconds": s}))
            .collect();
        let mean: BTreeMap<_, _> = summary.iter().map(|(k, (m, _))| (k.clone(), *m)).collect();
        let std: BTreeMap<_, _> = summary.iter().map(|(k, (_, s))| (k.clone(), *s)).collect();
        println!(
            "{:#}",
            json!({"model": source.model.name, "data": prepared.spec.to_string(),
                   "split": prepared.split_text, "folds": folds, "mean": mean, "std": std,
                   "seconds": seconds})
        );
    } else {
        let line = summary
            .iter()
            .map(|(k, (m, s))| format!("{k} {m:.4} ± {s:.4}"))
            .collect::<Vec<_>>()
            .join("  ");
        println!(
            "mean over {} folds: {line}  ({seconds:.1} s)",
            results.len()
        );
    }
    Ok(())
}

/// A saved model with its data reloaded and bound as when it was trained.
pub struct Reloaded {
    pub saved: SavedModel,
    /// The seed the model was trained with.
    pub seed: u64,
    pub source: Source,
    pub data: Dataset,
    pub split: Split,
    pub session: Session,
    pub params: recc_compiler::interp::Params,
    /// The data spec the model is measured on.
    pub spec: DataSpec,
}

/// Load a model file and the data it was trained on (or `--data`).
pub fn reload(path: &Path, data_args: Option<&DataArgs>) -> Result<Reloaded> {
    let saved = modelfile::load(path).map_err(|e| usage(e.to_string()))?;
    let source = compile_text(&saved.source_name, saved.source.clone())?;
    let setting = |k: &str| saved.settings.get(k).cloned();
    // What the model was trained with, overridden only by what the command
    // line says differently.
    let recorded = DataArgs {
        data: saved.data.clone(),
        split: setting("split"),
        columns: setting("columns"),
        sep: setting("sep"),
        header: setting("header").is_some(),
        skip_bad_lines: data_args.is_some_and(|a| a.skip_bad_lines),
        bind: setting("bind")
            .map(|b| b.split(' ').map(String::from).collect())
            .unwrap_or_default(),
        features: setting("features")
            .map(|f| f.split(',').map(String::from).collect())
            .unwrap_or_default(),
        min_target: setting("min_target").and_then(|m| m.parse().ok()),
        window: setting("window").and_then(|w| w.parse().ok()).unwrap_or(5),
        min_count: setting("min_count")
            .and_then(|w| w.parse().ok())
            .unwrap_or(5),
        write_split: None,
    };
    let args = match data_args {
        Some(a) => DataArgs {
            data: if a.data == "builtin" {
                recorded.data.clone()
            } else {
                a.data.clone()
            },
            split: a.split.clone().or(recorded.split.clone()),
            columns: a.columns.clone().or(recorded.columns.clone()),
            sep: a.sep.clone().or(recorded.sep.clone()),
            header: a.header || recorded.header,
            bind: if a.bind.is_empty() {
                recorded.bind.clone()
            } else {
                a.bind.clone()
            },
            features: if a.features.is_empty() {
                recorded.features.clone()
            } else {
                a.features.clone()
            },
            min_target: a.min_target.or(recorded.min_target),
            ..recorded
        },
        None => recorded,
    };
    let seed = setting("seed").and_then(|s| s.parse().ok()).unwrap_or(42);
    let prepared = prepare(&args, &source.model, seed, false)
        .map_err(|f| f.context(&format!("reloading the data of {}", path.display())))?;
    let split = prepared
        .splits
        .first()
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    let train_rows = if has_negatives(&source.model) {
        predict::positive_rows(&prepared.data, &split.train, args.min_target)
    } else {
        split.train.clone()
    };
    let bind = bind_options(&args)?;
    let mut session =
        Session::new(&source.model, &prepared.data, &train_rows, &bind).map_err(session_failure)?;
    // Score as training scored, unless the model file predates the choice.
    session.backend = setting("backend")
        .and_then(|b| b.parse().ok())
        .unwrap_or_default();
    // The data must be what the model was trained on: same domains, same
    // ids. `load` has checked the file's domains against its source, which
    // the session was built from, so the lists correspond one to one.
    let bound = &session.binding.domains;
    if bound.len() != saved.domains.len() {
        return Err(usage(format!(
            "{}: the model has {} domains but its source binds {} to the data",
            path.display(),
            saved.domains.len(),
            bound.len()
        )));
    }
    for ((name, map), saved_domain) in bound.iter().zip(&saved.domains) {
        if *name != saved_domain.name || map.names() != saved_domain.ids.as_slice() {
            return Err(usage(format!(
                "{}: the data's `{name}` ids differ from those the model was trained on \
                 ({} now, {} in the model); use the data it was trained on",
                path.display(),
                map.len(),
                saved_domain.ids.len()
            )));
        }
    }
    let params = saved
        .params(session.binding.domain_sizes())
        .map_err(|e| usage(e.to_string()))?;
    let data = prepared.data;
    let spec = prepared.spec;
    Ok(Reloaded {
        saved,
        seed,
        source,
        data,
        split,
        session,
        params,
        spec,
    })
}

/// `recc eval`: the test metrics of a saved model, recomputed.
pub fn eval_command(path: &Path, data_args: &DataArgs, out: &OutputArgs) -> Result<()> {
    let r = reload(path, Some(data_args))?;
    let predictor = Predictor::new(&r.session, &r.params);
    let ranking = has_negatives(&r.source.model);
    let min = data_args.min_target.or_else(|| {
        r.saved
            .settings
            .get("min_target")
            .and_then(|m| m.parse().ok())
    });
    let (train_rows, test_rows) = if ranking {
        (
            predict::positive_rows(&r.data, &r.split.train, min),
            predict::positive_rows(&r.data, &r.split.test, min),
        )
    } else {
        (r.split.train.clone(), r.split.test.clone())
    };
    let hierarchy = hierarchy(&r.spec, &r.session, &r.params);
    if test_rows.is_empty() {
        // A tree embedded whole is measured by its hierarchy figures alone.
        let Some(h) = hierarchy else {
            return Err(usage("the split has no test rows to evaluate on"));
        };
        if out.json {
            println!(
                "{:#}",
                json!({"model": r.saved.model_name, "rows": 0, "hierarchy": h})
            );
        } else {
            println!("{}", format_hierarchy(&h));
        }
        return Ok(());
    }
    let mut metrics: BTreeMap<String, f64> = BTreeMap::new();
    match r.session.task {
        Task::Rating => {
            metrics = rating_metrics(&predictor, &r.data, &train_rows, &test_rows, r.seed)?;
        }
        Task::Ranking => {
            let m = predictor
                .ranking(&r.data, &train_rows, &test_rows, out.k)
                .map_err(|e| failed(e.to_string()))?;
            if !out.json {
                println!("{}", recc_runtime::metrics::format_table(&m));
                if let Some(h) = &hierarchy {
                    println!("{}", format_hierarchy(h));
                }
                return Ok(());
            }
            let mut v = serde_json::to_value(&m).map_err(|e| failed(e.to_string()))?;
            if let Some(h) = &hierarchy {
                v["hierarchy"] = json!(h);
            }
            println!("{v:#}");
            return Ok(());
        }
        Task::Loss => {
            let l = predictor
                .mean_loss(&r.data, &test_rows, r.seed)
                .map_err(|e| failed(e.to_string()))?;
            metrics.insert("loss".into(), l);
        }
    }
    if out.json {
        let mut v =
            json!({"model": r.saved.model_name, "rows": test_rows.len(), "metrics": metrics});
        if let Some(h) = &hierarchy {
            v["hierarchy"] = json!(h);
        }
        println!("{v:#}");
    } else {
        println!("{} rows: {}", test_rows.len(), format_metrics(&metrics));
        if let Some(h) = &hierarchy {
            println!("{}", format_hierarchy(h));
        }
    }
    Ok(())
}

fn lookup(data: &Dataset, domain: &str, raw: &str, what: &str) -> Option<u32> {
    let found = data.domains.get(domain).and_then(|m| m.find(raw));
    if found.is_none() {
        eprintln!(
            "note: {what} `{}` is not in the data; scoring it as an unknown {what} \
             (the mean of the {what}s the model learned)",
            printable(raw)
        );
    }
    found
}

fn user_item_domains(data: &Dataset) -> Result<(String, String)> {
    match (data.users(), data.items()) {
        (Some((u, _)), Some((i, _))) => Ok((u.to_string(), i.to_string())),
        _ => Err(usage("the data has no user and item columns")),
    }
}

/// `recc predict`: scores of (user, item) pairs.
pub fn predict_command(
    path: &Path,
    users: &[String],
    items: &[String],
    out: &OutputArgs,
) -> Result<()> {
    let r = reload(path, None)?;
    let (ud, id) = user_item_domains(&r.data)?;
    let predictor = Predictor::new(&r.session, &r.params);
    if users.len() != items.len() && users.len() != 1 && items.len() != 1 {
        return Err(usage("give one --user per --item, or one of either"));
    }
    let n = users.len().max(items.len());
    let mut rows = Vec::new();
    for k in 0..n {
        let u = &users[k.min(users.len() - 1)];
        let i = &items[k.min(items.len() - 1)];
        let score = predictor
            .score_pair(
                &r.data,
                lookup(&r.data, &ud, u, "user"),
                lookup(&r.data, &id, i, "item"),
            )
            .map_err(|e| failed(e.to_string()))?;
        rows.push((u.clone(), i.clone(), score));
    }
    if out.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(u, i, s)| json!({"user": u, "item": i, "score": s}))
            .collect();
        println!("{:#}", json!(v));
    } else {
        println!("user\titem\tscore");
        for (u, i, s) in rows {
            println!("{}\t{}\t{s:.4}", printable(&u), printable(&i));
        }
    }
    Ok(())
}

/// `recc recommend`: the best items for a user, leaving out what they have.
pub fn recommend_command(path: &Path, user: &str, out: &OutputArgs) -> Result<()> {
    let r = reload(path, None)?;
    let (ud, id) = user_item_domains(&r.data)?;
    let u = lookup(&r.data, &ud, user, "user");
    let predictor = Predictor::new(&r.session, &r.params);
    let recs = predictor
        .recommend(&r.data, u, out.k)
        .map_err(|e| failed(e.to_string()))?;
    let items = r.data.domains.get(&id);
    let label = |i: u32| items.map_or(i.to_string(), |m| m.label(i).to_string());
    let raw = |i: u32| items.map_or(i.to_string(), |m| m.name(i).to_string());
    if out.json {
        let v: Vec<_> = recs
            .iter()
            .map(|(i, s)| json!({"item": raw(*i), "label": label(*i), "score": s}))
            .collect();
        println!("{:#}", json!({"user": user, "recommendations": v}));
    } else {
        println!("top {} for {ud} {}:", recs.len(), printable(user));
        for (rank, (i, s)) in recs.iter().enumerate() {
            let (l, n) = (label(*i), raw(*i));
            let (l, n) = (printable(&l), printable(&n));
            if l == n {
                println!("{:>3}. {n}  ({s:.3})", rank + 1);
            } else {
                println!("{:>3}. {l}  [{n}]  ({s:.3})", rank + 1);
            }
        }
    }
    Ok(())
}

/// `recc similar`: nearest neighbours of an item in the model's embedding.
pub fn similar_command(
    path: &Path,
    item: &str,
    table: Option<&str>,
    domain: Option<&str>,
    out: &OutputArgs,
) -> Result<()> {
    let saved = modelfile::load(path).map_err(|e| usage(e.to_string()))?;
    let source = compile_text(&saved.source_name, saved.source.clone())?;
    let g = recc_compiler::forward_graph(&source.model).map_err(|e| failed(e.to_string()))?;
    let domain_name = match domain {
        Some(d) => d.to_string(),
        None => {
            // The domain of the recommended things: the item input's, or the first index input's.
            let idx: Vec<&str> = g
                .slots
                .iter()
                .filter_map(|s| match s.kind {
                    SlotKind::Index(d) => Some(g.domains[d.index()].name.as_str()),
                    _ => None,
                })
                .collect();
            idx.iter()
                .find(|d| **d == "item")
                .or(idx.last())
                .map(|d| d.to_string())
                .ok_or_else(|| usage("the model has no index input; name a --domain"))?
        }
    };
    let t = match table {
        Some(name) => g
            .tables
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| usage(format!("the model has no table `{name}`")))?,
        None => predict::embedding_table(&g, &domain_name).ok_or_else(|| {
            usage(format!(
                "the model has no vector table over `{domain_name}`"
            ))
        })?,
    };
    let table_domain = g.tables[t]
        .domain
        .map(|d| g.domains[d.index()].name.clone())
        .ok_or_else(|| usage(format!("table `{}` is a global", g.tables[t].name)))?;
    let sd = saved
        .domains
        .iter()
        .find(|d| d.name == table_domain)
        .ok_or_else(|| usage(format!("the model file lacks domain `{table_domain}`")))?;
    let map = sd.to_id_map();
    let row = map
        .find(item)
        .ok_or_else(|| usage(format!("{table_domain} `{item}` is not in the model")))?;
    // `load` checked that the file's domains are the graph's, in order.
    let sizes: Vec<usize> = saved.domains.iter().map(|d| d.ids.len()).collect();
    let params = saved.params(sizes).map_err(|e| usage(e.to_string()))?;
    let near = predict::similar(&g, &params, t, row as usize, out.k);
    if out.json {
        let v: Vec<_> = near
            .iter()
            .map(|(r, s)| json!({"id": map.name(*r), "label": map.label(*r), "similarity": s}))
            .collect();
        println!(
            "{:#}",
            json!({"item": item, "table": g.tables[t].name, "neighbours": v})
        );
    } else {
        println!(
            "nearest to {} by `{}`:",
            printable(map.label(row)),
            g.tables[t].name
        );
        for (rank, (r, s)) in near.iter().enumerate() {
            println!("{:>3}. {}  ({s:.3})", rank + 1, printable(map.label(*r)));
        }
    }
    Ok(())
}

/// `recc export`: embeddings and biases as CSV or .npy.
pub fn export_command(path: &Path, format: &str, dir: &Path) -> Result<()> {
    let saved = modelfile::load(path).map_err(|e| usage(e.to_string()))?;
    let format = format
        .parse::<recc_runtime::export::ExportFormat>()
        .map_err(usage)?;
    let written =
        recc_runtime::export::export(&saved, dir, format).map_err(|e| usage(e.to_string()))?;
    for p in written {
        println!("{}", printable(&p.display().to_string()));
    }
    Ok(())
}

/// `text` safe to print to a terminal: ids and labels come from data, and a
/// control character in one (an escape sequence above all) would be obeyed
/// by the terminal instead of shown. Each is written as a Rust escape
/// (`\u{1b}`, `\n`); JSON output escapes them by itself.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}
