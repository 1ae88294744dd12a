//! Training: the fit settings, one split trained and measured, every fold
//! of a cross-validation, and the model file a run is saved as.

use super::data::{has_negatives, load_options};
use super::{bind_options, failed, usage, DataRequest, Prepared, Result, Source};
use crate::bind::BindOptions;
use crate::data::Dataset;
use crate::modelfile::{self, SavedDomain, SavedModel};
use crate::optim::Schedule;
use crate::predict::{self, Predictor};
use crate::session::{Backend, Session, Task};
use crate::split::{self, Split};
use crate::train::{self, Interruption, Observer, Pooling, TrainConfig, Trained};
use recc_compiler::check::{DEFAULT_BURN_IN, DEFAULT_SAMPLES, DEFAULT_SWEEPS};
use recc_compiler::interp::Params;
use recc_compiler::model::{Model, Optimizer, Solver};
use std::collections::BTreeMap;
use std::time::Instant;

/// Overrides of a model's `fit` block: the command line's fit flags.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FitOverrides {
    pub epochs: Option<usize>,
    pub lr: Option<f64>,
    /// sgd, adagrad or adam.
    pub optimizer: Option<String>,
    pub batch: Option<usize>,
    pub seed: Option<u64>,
    pub early_stopping: Option<usize>,
    /// constant, linear, cosine or step:FACTOR:EPOCHS.
    pub schedule: Option<String>,
    pub threads: Option<usize>,
    /// jit or interp.
    pub backend: Option<String>,
    /// grouped or per-example.
    pub pooling: Option<String>,
    /// sgd, als or gibbs.
    pub solver: Option<String>,
    /// ALS sweeps.
    pub sweeps: Option<usize>,
    /// Gibbs sweeps kept.
    pub samples: Option<usize>,
    /// Gibbs sweeps thrown away first.
    pub burn_in: Option<usize>,
}

/// The solver a run uses: the model's `fit`, or `--solver` with its counts.
/// A count flag of another solver, or an SGD flag given to ALS or Gibbs, is
/// refused naming both, since it would silently do nothing.
fn solver(model: &Model, fit: &FitOverrides) -> Result<Solver> {
    let from_fit = model.fit.solver;
    let solver = match fit.solver.as_deref() {
        None => from_fit,
        Some(name) if name == from_fit.name() => from_fit,
        Some("sgd") => Solver::Sgd,
        Some("als") => Solver::Als {
            sweeps: DEFAULT_SWEEPS,
        },
        Some("gibbs") => Solver::Gibbs {
            samples: DEFAULT_SAMPLES,
            burn_in: DEFAULT_BURN_IN,
        },
        Some(other) => {
            return Err(usage(format!(
                "--solver {other}: expected sgd, als or gibbs"
            )))
        }
    };
    // Where the solver was chosen, for the messages.
    let chosen = match fit.solver.as_deref() {
        Some(name) => format!("--solver {name}"),
        None if solver == Solver::Sgd => "the default".to_string(),
        None => format!("the model's `fit {{ solver: {} }}`", solver.name()),
    };
    let title = match solver {
        Solver::Sgd => "SGD",
        Solver::Als { .. } => "ALS",
        Solver::Gibbs { .. } => "Gibbs",
    };
    let counts = match solver {
        Solver::Sgd => "--epochs",
        Solver::Als { .. } => "--sweeps",
        Solver::Gibbs { .. } => "--samples and --burn-in",
    };
    let elsewhere = |flag: &str, of: &str| {
        usage(format!(
            "{flag} is a setting of {of}, and this run is fitted with {title} ({chosen}); \
             {title} counts {counts}"
        ))
    };
    let mut solver = solver;
    if let Some(n) = fit.sweeps {
        match &mut solver {
            Solver::Als { sweeps } => {
                if n == 0 {
                    return Err(usage("--sweeps 0: ALS runs at least one sweep"));
                }
                *sweeps = n;
            }
            _ => return Err(elsewhere("--sweeps", "--solver als")),
        }
    }
    if let Some(n) = fit.samples {
        match &mut solver {
            Solver::Gibbs { samples, .. } => {
                if n == 0 {
                    return Err(usage("--samples 0: Gibbs keeps at least one sample"));
                }
                *samples = n;
            }
            _ => return Err(elsewhere("--samples", "--solver gibbs")),
        }
    }
    if let Some(n) = fit.burn_in {
        match &mut solver {
            Solver::Gibbs { burn_in, .. } => *burn_in = n,
            _ => return Err(elsewhere("--burn-in", "--solver gibbs")),
        }
    }
    if solver != Solver::Sgd {
        let sgd_flags = [
            ("--epochs", fit.epochs.is_some()),
            ("--lr", fit.lr.is_some()),
            ("--optimizer", fit.optimizer.is_some()),
            ("--batch", fit.batch.is_some()),
            ("--schedule", fit.schedule.is_some()),
            ("--early-stopping", fit.early_stopping.is_some()),
        ];
        if let Some((flag, _)) = sgd_flags.iter().find(|(_, given)| *given) {
            return Err(elsewhere(flag, "SGD"));
        }
    }
    Ok(solver)
}

/// Refuses a closed-form solver that `config` asks for and the model's own
/// `fit` block does not (that one is refused when the model is checked),
/// with the error the `fit` block would give: the terms that keep the
/// model's parameters from being affine blocks.
pub fn check_solver(source: &Source, config: &TrainConfig) -> Result<()> {
    // SGD needs no affine blocks, but cannot fit a sum over unobserved pairs.
    let sgd_fits = config.solver == Solver::Sgd && source.model.unobserved.is_empty();
    if sgd_fits || config.solver.name() == source.model.fit.solver.name() {
        return Ok(());
    }
    let compiled = recc_compiler::compile(&source.name, &source.text);
    match compiled.solver_refusal(config.solver) {
        Some(refusal) => Err(failed(recc_compiler::diagnostic::render(
            &compiled.sources,
            &[refusal],
        ))),
        None => Ok(()),
    }
}

/// The fit settings: the model's `fit`, overridden. The notes say where a
/// setting will not act as asked.
pub fn train_config(model: &Model, fit: &FitOverrides) -> Result<(TrainConfig, Vec<String>)> {
    let mut c = TrainConfig::from_fit(&model.fit);
    c.solver = solver(model, fit)?;
    if let Some(e) = fit.epochs {
        if e == 0 {
            return Err(usage("--epochs 0: training runs at least one epoch"));
        }
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
    let mut notes = Vec::new();
    if let Some(p) = &fit.pooling {
        c.pooling = p.parse::<Pooling>().map_err(usage)?;
        let history = model
            .inputs
            .iter()
            .any(|i| matches!(i.kind, recc_compiler::model::InputKind::History(_)));
        if !history {
            return Err(usage(format!(
                "--pooling {p}: model `{}` has no history input to pool",
                model.name
            )));
        }
        if c.pooling == Pooling::Grouped && c.effective_backend() == Backend::Interp {
            notes.push(
                "--pooling grouped: the reference evaluator runs the per-example schedule".into(),
            );
        }
        if c.solver != Solver::Sgd {
            return Err(usage(format!(
                "--pooling {p}: the {} solver takes no gradient steps to schedule",
                c.solver
            )));
        }
    }
    if c.batch > 1 && c.backend == Backend::Jit {
        notes.push(format!(
            "--batch {}: mini-batches are averaged by the reference evaluator, \
             which trains this run",
            c.batch
        ));
    }
    if c.threads > 1 && c.effective_backend() == Backend::Interp {
        notes.push(format!(
            "--threads {}: the reference evaluator trains on one thread",
            c.threads
        ));
    }
    Ok((c, notes))
}

/// Which schedule steps a model with a history input, and why.
pub fn pooling_note(session: &Session, config: &TrainConfig) -> Option<String> {
    let history = session.forward.slots.iter().find(|s| {
        matches!(
            s.kind,
            recc_compiler::ir::SlotKind::Bag { history: true, .. }
        )
    })?;
    if config.solver != Solver::Sgd {
        return None;
    }
    Some(match train::pooling_plan(session, config) {
        Ok(_) => format!(
            "pooling: grouped by user, `{}` pooled once per user's examples",
            history.name
        ),
        Err(why) => format!("pooling: per example ({why})"),
    })
}

/// What every split of one run shares.
#[derive(Clone, Copy, Debug)]
pub struct TrainRequest<'a> {
    pub source: &'a Source,
    pub config: &'a TrainConfig,
    /// The data as asked: its binding, and a ranking model's `min_target`.
    pub request: &'a DataRequest,
    /// Cut-off of the @k ranking metrics.
    pub k: usize,
    /// Also measure the popularity baseline (ranking models).
    pub baseline: bool,
}

/// One trained split: the session, its result and the test metrics.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The model bound to the split's training rows, as it is measured.
    pub session: Session,
    pub trained: Trained,
    /// The test metrics; empty when the split has no test rows or the run
    /// was interrupted (an interrupted run is not measured).
    pub metrics: BTreeMap<String, f64>,
    /// The popularity baseline's metrics, when asked for.
    pub baseline: Option<BTreeMap<String, f64>>,
    /// Wall time of the training.
    pub seconds: f64,
    /// Notes about the binding (also given to the observer before training).
    pub notes: Vec<String>,
}

/// The rows of `rows` a model trains or is tested on: a ranking model's
/// positives only.
fn model_rows(req: &TrainRequest, data: &Dataset, rows: &[usize]) -> Vec<usize> {
    if has_negatives(&req.source.model) {
        predict::positive_rows(data, rows, req.request.min_target)
    } else {
        rows.to_vec()
    }
}

/// Why the model is judged as it is, when its loss or its flags suggest
/// otherwise: a model that samples negatives is a ranking model even when
/// it also reads the target, and a `real` input bound away from the target
/// leaves no rating to compute RMSE against.
fn task_note(session: &Session, data: &Dataset, bind: &BindOptions) -> Option<String> {
    let target = data.target.as_deref()?;
    match session.task {
        Task::Ranking
            if session.binding.target_slot(data).is_some()
                && !session.model.unobserved.is_empty() =>
        {
            let u = &session.model.unobserved[0];
            Some(format!(
                "the model weighs every pair without an example (`unobserved({})`), so it is a \
                 ranking model: it is judged by ranking metrics over the catalogue, and reads \
                 `{target}` as a weight, not as a target to predict",
                session
                    .model
                    .domain(match session.model.input(u.over).kind {
                        recc_compiler::model::InputKind::Index(d) => d,
                        _ => return None,
                    })
                    .name
            ))
        }
        Task::Ranking if session.binding.target_slot(data).is_some() => {
            let negatives: Vec<String> = session
                .model
                .samplers
                .iter()
                .map(|s| {
                    format!(
                        "`{} ~ negative({})`",
                        s.name,
                        session.model.domain(s.domain).name
                    )
                })
                .collect();
            Some(format!(
                "the model draws negatives ({}), so it is a ranking model: it is judged by \
                 ranking metrics over the catalogue (precision, recall, NDCG, AUC at k), not \
                 by RMSE and MAE of `{target}`, though its loss reads `{target}`",
                negatives.join(", ")
            ))
        }
        Task::Loss if session.forward.score.is_some() => {
            let rebound: Vec<String> = session
                .model
                .inputs
                .iter()
                .filter(|i| i.kind == recc_compiler::model::InputKind::Real)
                .filter_map(|i| {
                    let column = bind.explicit.get(&i.name)?;
                    (column != target).then(|| format!("`{}` reads `{column}`", i.name))
                })
                .collect();
            (!rebound.is_empty()).then(|| {
                format!(
                    "input {} (--bind), not the data's target `{target}`, so the model is \
                     judged by its mean loss on the test rows (`loss`), not by RMSE and MAE",
                    rebound.join(", ")
                )
            })
        }
        _ => None,
    }
}

/// Train on one split and measure on its test rows. Progress, and the
/// binding's notes before it, go to `observer`; its
/// [`Observer::stop_requested`] interrupts the run, which is then returned
/// unmeasured with [`Trained::interrupted`] set.
pub fn train_split(
    req: &TrainRequest,
    data: &Dataset,
    split: &Split,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let TrainRequest { source, config, .. } = *req;
    let bind = bind_options(req.request)?;
    let train_rows = model_rows(req, data, &split.train);
    let test_rows = model_rows(req, data, &split.test);
    // Early stopping watches a tenth of the training rows; otherwise the
    // test rows are shown as they go, which steers nothing.
    let all_train = train_rows.clone();
    let (train_rows, validation) = if config.early_stopping > 0 {
        let s = split::random_holdout(train_rows.len(), 0.1, config.seed);
        (
            s.train.iter().map(|&k| train_rows[k]).collect::<Vec<_>>(),
            s.test.iter().map(|&k| train_rows[k]).collect::<Vec<_>>(),
        )
    } else {
        (train_rows, test_rows.clone())
    };
    let mut session = Session::new(&source.model, data, &train_rows, &bind)
        .map_err(|e| super::ExperimentError::from(e).context(&source.name))?;
    check_min_target(session.task, req.request)?;
    if req.baseline && session.task != Task::Ranking {
        return Err(usage(format!(
            "--baseline measures popularity beside a ranking model; `{}` is a {} model here",
            source.model.name, session.task
        )));
    }
    let mut notes = session.binding.notes.clone();
    notes.extend(task_note(&session, data, &bind));
    notes.extend(pooling_note(&session, config));
    for note in &notes {
        observer.note(note);
    }
    session.backend = config.backend;
    observer.started();
    let started = Instant::now();
    let trained = train::train(&session, data, &train_rows, &validation, config, observer);
    observer.finished();
    let mut trained = trained.map_err(|e| failed(e.to_string()))?;
    let seconds = started.elapsed().as_secs_f64();
    // Measured as a reopened model is measured: every training row,
    // validation tenth included, is the user's and is left out of their
    // ranking.
    let session = if config.early_stopping > 0 {
        let mut s = Session::new(&source.model, data, &all_train, &bind)
            .map_err(|e| super::ExperimentError::from(e).context(&source.name))?;
        s.backend = config.backend;
        s
    } else {
        session
    };
    let train_rows = all_train;
    // The predictor holds the trained tables while it measures and hands
    // them back, so that no second copy of them lives beside it.
    let trained_params = std::mem::replace(&mut trained.params, empty_params());
    let predictor = Predictor::owning(&session, trained_params)
        .with_samples(trained.samples.as_ref())
        .map_err(|e| failed(e.to_string()))?;
    let mut metrics = BTreeMap::new();
    let mut baseline = None;
    if !test_rows.is_empty() && trained.interrupted.is_none() {
        match session.task {
            Task::Rating => {
                metrics = rating_metrics(&predictor, data, &train_rows, &test_rows, config.seed)?;
            }
            Task::Ranking => {
                let progress = observer.measuring();
                let m = predictor
                    .ranking_observed(data, &train_rows, &test_rows, req.k, progress)
                    .map_err(|e| failed(e.to_string()))?;
                metrics = m.named().into_iter().collect();
                if req.baseline {
                    let b =
                        predict::popularity_ranking(data, &train_rows, &test_rows, req.k, progress)
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
        notes,
    })
}

/// `--min-target` picks a ranking model's positives; any other task has
/// none to pick, so it is refused rather than ignored.
pub fn check_min_target(task: Task, request: &DataRequest) -> Result<()> {
    match request.min_target {
        Some(m) if task != Task::Ranking => Err(usage(format!(
            "--min-target {m} picks the positives of a ranking model; this is a {task} model, \
             which trains on every row"
        ))),
        _ => Ok(()),
    }
}

pub(super) fn empty_params() -> Params {
    Params {
        domain_sizes: Vec::new(),
        tables: Vec::new(),
    }
}

/// A rating model's test metrics: RMSE and MAE, and for a model with a
/// predictive distribution (variational tables) the coverage of its
/// intervals, measured alike after training and on a reopened model.
pub(super) fn rating_metrics(
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

/// What an interrupted run kept: `epoch 3`, or `epoch 3 and 4096 of 80000
/// examples of epoch 4`.
pub fn describe_interruption(stop: Interruption, best_epoch: Option<usize>) -> String {
    if let Some(best) = best_epoch {
        return format!("epoch {best} (the best on validation)");
    }
    if let Some(kept) = stop.kept_epoch {
        return format!("epoch {kept}");
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

/// The settings a model file records: the fit settings, the split, the
/// task and the data options a reopened model needs to bind as it did.
pub(super) fn recorded_settings(
    config: &TrainConfig,
    split_text: &str,
    task: Task,
    request: &DataRequest,
) -> BTreeMap<String, String> {
    let mut settings = config.describe();
    settings.insert("split".into(), split_text.to_string());
    settings.insert("task".into(), task.to_string());
    if !request.bind.is_empty() {
        settings.insert("bind".into(), request.bind.join(" "));
    }
    if !request.features.is_empty() {
        settings.insert("features".into(), request.features.join(","));
    }
    if let Some(m) = request.min_target {
        settings.insert("min_target".into(), m.to_string());
    }
    for (k, v) in [
        ("columns", request.columns.clone()),
        ("sep", request.sep.clone()),
    ] {
        if let Some(v) = v {
            settings.insert(k.into(), v);
        }
    }
    if request.header {
        settings.insert("header".into(), "true".into());
    }
    settings.insert("window".into(), request.window.to_string());
    settings.insert("min_count".into(), request.min_count.to_string());
    settings
}

/// The model file of a trained split, the first of `prepared`; `params`
/// are its trained parameters (moved in, so that no copy is made).
pub fn saved_model(
    source: &Source,
    prepared: &Prepared,
    config: &TrainConfig,
    outcome: &Outcome,
    params: Params,
    request: &DataRequest,
) -> SavedModel {
    let settings = recorded_settings(config, &prepared.split_text, outcome.session.task, request);
    let session = &outcome.session;
    SavedModel {
        recc_version: env!("CARGO_PKG_VERSION").to_string(),
        model_name: source.model.name.clone(),
        source_name: source.name.clone(),
        source: source.text.clone(),
        data: prepared.spec.to_string(),
        settings,
        metrics: outcome.metrics.clone(),
        history: outcome.trained.history.clone(),
        domains: SavedDomain::all(&session.binding.domains),
        tables: modelfile::into_saved_tables(&session.forward, params),
        context: super::fitted::training_context(source, session, prepared, request.min_target),
        samples: outcome
            .trained
            .samples
            .as_ref()
            .map(|s| modelfile::SavedSamples::new(&session.forward, s)),
    }
}

/// One fold of a cross-validation.
#[derive(Clone, Debug, PartialEq)]
pub struct FoldResult {
    /// `u1` for one of the data's own folds, `fold 2` for a made one.
    pub name: String,
    /// Its place among the folds, from 1.
    pub number: usize,
    /// One of the data's own folds (`--split given`), known by its name;
    /// a made fold is known by its number.
    pub given: bool,
    pub metrics: BTreeMap<String, f64>,
    pub seconds: f64,
}

/// Every fold's test metrics, and the mean and sample standard deviation
/// of each over the folds.
#[derive(Clone, Debug, PartialEq)]
pub struct CvReport {
    pub folds: Vec<FoldResult>,
    pub mean: BTreeMap<String, f64>,
    pub std: BTreeMap<String, f64>,
    /// Wall time of the whole cross-validation.
    pub seconds: f64,
    /// The fold that was interrupted: the folds before it are reported,
    /// and the summary is over them.
    pub interrupted: Option<String>,
}

/// Watches a cross-validation: an observer for each fold's training, and
/// each fold's result as it comes.
pub trait FoldObserver {
    /// The observer of the training of fold `name`, the `number`th (from 1)
    /// of `folds`.
    fn fold_started(&mut self, name: &str, number: usize, folds: usize) -> Box<dyn Observer + '_>;
    /// Fold `result.name` was trained and measured.
    fn fold_finished(&mut self, _result: &FoldResult) {}
}

/// The folder a fold's rows are written to: its name without spaces
/// (`u1`, `fold1`).
fn fold_folder(name: &str) -> String {
    name.split_whitespace().collect()
}

/// Train and test on every split of `prepared` (made with all folds); with
/// `write_split` asked for, each fold's rows are written to a folder of
/// their own under it before the fold trains.
///
/// Folds train at once where the cores allow: as many as there are cores
/// for each fold's `--threads` ([`cross_validate_with_jobs`] takes the
/// number), with the same results.
pub fn cross_validate(
    req: &TrainRequest,
    prepared: &Prepared,
    watch: &mut dyn FoldObserver,
) -> Result<CvReport> {
    let jobs = fold_jobs(req.config, prepared.splits.len());
    cross_validate_with_jobs(req, prepared, jobs, watch)
}

/// [`cross_validate`], training at most `jobs` folds at once. `watch`
/// sees the folds one after another, in order, whatever `jobs` is.
pub fn cross_validate_with_jobs(
    req: &TrainRequest,
    prepared: &Prepared,
    jobs: usize,
    watch: &mut dyn FoldObserver,
) -> Result<CvReport> {
    let options = load_options(req.request)?;
    if prepared.splits.len() < 2 {
        return Err(usage(format!(
            "--split {}: cross-validation needs at least two folds, and this split makes {}; \
             use kfold:K (K at least 2), or given for the data's own folds",
            prepared.split_text,
            prepared.splits.len()
        )));
    }
    let given = prepared.split_text.starts_with("given");
    let started = Instant::now();
    let count = prepared.splits.len();
    let jobs = jobs.clamp(1, count);
    let (folds, interrupted) = if jobs > 1 {
        folds_at_once(req, prepared, &options, jobs, watch)?
    } else {
        let mut folds: Vec<FoldResult> = Vec::new();
        let mut interrupted = None;
        for number in 0..count {
            let outcome = {
                let (name, _) = &prepared.splits[number];
                let mut observer = watch.fold_started(name, number + 1, count);
                train_fold(req, prepared, &options, number, observer.as_mut())?
            };
            match fold_result(prepared, number, given, &outcome) {
                Some(result) => {
                    watch.fold_finished(&result);
                    folds.push(result);
                }
                None => {
                    interrupted = Some(prepared.splits[number].0.clone());
                    break;
                }
            }
        }
        (folds, interrupted)
    };
    let names: Vec<String> = folds
        .first()
        .map(|f| f.metrics.keys().cloned().collect())
        .unwrap_or_default();
    let (mut mean, mut std) = (BTreeMap::new(), BTreeMap::new());
    for n in &names {
        let vals: Vec<f64> = folds
            .iter()
            .filter_map(|f| f.metrics.get(n).copied())
            .collect();
        let m = vals.iter().sum::<f64>() / vals.len().max(1) as f64;
        let var =
            vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (vals.len().max(2) - 1) as f64;
        mean.insert(n.clone(), m);
        std.insert(n.clone(), var.sqrt());
    }
    Ok(CvReport {
        folds,
        mean,
        std,
        seconds: started.elapsed().as_secs_f64(),
        interrupted,
    })
}

/// Folds trained at once: as many as the cores allow each with its
/// `--threads`. Each fold trains from its own seed on one thread of its
/// own, so the folds' results do not depend on how many run together.
fn fold_jobs(config: &TrainConfig, folds: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / config.threads.max(1)).clamp(1, folds.max(1))
}

/// Train fold `number` of `prepared` (loading its own files for a given
/// fold, writing its rows first when asked), watched by `observer`.
fn train_fold(
    req: &TrainRequest,
    prepared: &Prepared,
    options: &crate::data::spec::LoadOptions,
    number: usize,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let (name, split) = &prepared.splits[number];
    // A given fold has its own files: load them for this fold.
    let fold_data;
    let data = if prepared.split_text.starts_with("given") {
        let (d, _) = prepared
            .spec
            .load(options, Some(name))
            .map_err(|e| usage(e.to_string()))?;
        fold_data = d;
        &fold_data
    } else {
        &prepared.data
    };
    if let Some(dir) = &req.request.write_split {
        let fold_dir = dir.join(fold_folder(name));
        super::write_split(&fold_dir, data, split, &req.source.model, req.request)?;
    }
    train_split(req, data, split, observer)
}

/// Fold `number`'s result, or `None` when its training was interrupted.
fn fold_result(
    prepared: &Prepared,
    number: usize,
    given: bool,
    outcome: &Outcome,
) -> Option<FoldResult> {
    if outcome.trained.interrupted.is_some() {
        return None;
    }
    Some(FoldResult {
        name: prepared.splits[number].0.clone(),
        number: number + 1,
        given,
        metrics: outcome.metrics.clone(),
        seconds: outcome.seconds,
    })
}

/// What a fold's training tells its observer, sent from the thread that
/// trains it to the one that shows the folds, in their order.
enum FoldEvent {
    Progress(usize, usize, usize, f64),
    Epoch(Box<crate::modelfile::EpochRecord>, String, usize),
    Note(String),
    Started,
    Finished,
    Solving,
    MeasureBegin(String, String, usize),
    MeasureAdvance(usize),
    MeasureEnd,
    Done(Box<Result<Outcome>>),
}

/// The observer of a fold trained away from the shown one: passes every
/// event on, and stops when the shown fold's observer asked to.
struct Forward<'a> {
    fold: usize,
    events: std::sync::mpsc::Sender<(usize, FoldEvent)>,
    stop: &'a std::sync::atomic::AtomicBool,
}

impl Forward<'_> {
    fn send(&self, event: FoldEvent) {
        // The showing thread only goes away once every fold is done.
        let _ = self.events.send((self.fold, event));
    }
}

impl Observer for Forward<'_> {
    fn progress(&mut self, epoch: usize, done: usize, total: usize, loss: f64) {
        self.send(FoldEvent::Progress(epoch, done, total, loss));
    }
    fn epoch(&mut self, record: &crate::modelfile::EpochRecord, monitor: &str, epochs: usize) {
        self.send(FoldEvent::Epoch(
            Box::new(record.clone()),
            monitor.to_string(),
            epochs,
        ));
    }
    fn stop_requested(&mut self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn note(&mut self, text: &str) {
        self.send(FoldEvent::Note(text.to_string()));
    }
    fn started(&mut self) {
        self.send(FoldEvent::Started);
    }
    fn finished(&mut self) {
        self.send(FoldEvent::Finished);
    }
    fn measuring(&self) -> &dyn crate::progress::StepObserver {
        self
    }
    fn solving(&mut self) {
        self.send(FoldEvent::Solving);
    }
}

impl crate::progress::StepObserver for Forward<'_> {
    fn begin(&self, what: &str, unit: &str, total: usize) {
        self.send(FoldEvent::MeasureBegin(
            what.to_string(),
            unit.to_string(),
            total,
        ));
    }
    fn advance(&self, units: usize) {
        self.send(FoldEvent::MeasureAdvance(units));
    }
    fn end(&self) {
        self.send(FoldEvent::MeasureEnd);
    }
}

/// Train the folds `jobs` at a time. `watch` sees them one after another,
/// in order, as if they ran in turn: the shown fold's events as they come,
/// a later fold's kept until its turn. When the shown fold's observer asks
/// to stop, every fold stops.
fn folds_at_once(
    req: &TrainRequest,
    prepared: &Prepared,
    options: &crate::data::spec::LoadOptions,
    jobs: usize,
    watch: &mut dyn FoldObserver,
) -> Result<(Vec<FoldResult>, Option<String>)> {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let count = prepared.splits.len();
    let given = prepared.split_text.starts_with("given");
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (events, received) = std::sync::mpsc::channel::<(usize, FoldEvent)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let events = events.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || loop {
                let number = next.fetch_add(1, Ordering::Relaxed);
                if number >= count || stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut forward = Forward {
                    fold: number,
                    events: events.clone(),
                    stop,
                };
                let outcome = train_fold(req, prepared, options, number, &mut forward);
                forward.send(FoldEvent::Done(Box::new(outcome)));
            });
        }
        drop(events);
        let mut kept: Vec<VecDeque<FoldEvent>> = (0..count).map(|_| VecDeque::new()).collect();
        let mut folds = Vec::new();
        for number in 0..count {
            let outcome = {
                let (name, _) = &prepared.splits[number];
                let mut observer = watch.fold_started(name, number + 1, count);
                loop {
                    let event = match kept[number].pop_front() {
                        Some(event) => event,
                        None => match received.recv() {
                            Ok((fold, event)) if fold == number => event,
                            Ok((fold, event)) => {
                                kept[fold].push_back(event);
                                continue;
                            }
                            // Every fold stopped before this one started.
                            Err(_) if stop.load(Ordering::Relaxed) => {
                                return Ok((folds, Some(name.clone())));
                            }
                            Err(_) => {
                                return Err(failed(format!(
                                    "the training of fold {name} ended without a result"
                                )));
                            }
                        },
                    };
                    match event {
                        FoldEvent::Progress(e, d, t, l) => observer.progress(e, d, t, l),
                        FoldEvent::Epoch(record, monitor, epochs) => {
                            observer.epoch(&record, &monitor, epochs)
                        }
                        FoldEvent::Note(text) => observer.note(&text),
                        FoldEvent::Started => observer.started(),
                        FoldEvent::Finished => observer.finished(),
                        FoldEvent::Solving => observer.solving(),
                        FoldEvent::MeasureBegin(what, unit, total) => {
                            observer.measuring().begin(&what, &unit, total)
                        }
                        FoldEvent::MeasureAdvance(units) => observer.measuring().advance(units),
                        FoldEvent::MeasureEnd => observer.measuring().end(),
                        FoldEvent::Done(outcome) => break *outcome,
                    }
                    if observer.stop_requested() {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            };
            match fold_result(prepared, number, given, &outcome) {
                Some(result) => {
                    watch.fold_finished(&result);
                    folds.push(result);
                }
                None => {
                    stop.store(true, Ordering::Relaxed);
                    return Ok((folds, Some(prepared.splits[number].0.clone())));
                }
            }
        }
        Ok((folds, None))
    })
}
