//! The trainer: epochs over shuffled examples through the model's step.
//!
//! Input: a [`Session`] (a checked model, its graphs and its data binding),
//! the training rows and a [`TrainConfig`]. Output: [`Trained`] parameters
//! with a record of every epoch. The step is the reference evaluator's
//! gradient followed by the optimiser's row updates; one thread and a seed
//! make a run reproducible bit for bit.

use crate::bind::BindError;
use crate::data::Dataset;
use crate::init::{check_memory, initialise, Holder, InitError, MAX_BALL_NORM};
use crate::modelfile::EpochRecord;
use crate::native::{Hyper, InputError, LaidOut, NativeParams, NonFinite, Runner, TableWords};
use crate::optim::{OptimiserState, Schedule, StateOverflow};
use crate::predict::{self, PredictError, Predictor};
use crate::progress::{StepObserver, Unobserved};
// Re-exported: callers name the session's types through the trainer, where
// they lived before the session had a module of its own.
pub use crate::session::{Backend, Session, SessionError, Task};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use rand::SeedableRng;
use recc_compiler::hoist::HoistPlan;
use recc_compiler::interp::{evaluate, EvalError, Example, Params};
use recc_compiler::ir::{Graph, TableId};
use recc_compiler::model::{FitConfig, Optimizer, Solver};
use recc_jit::{Kernel, KernelKind, StepOptions, DEFAULT_PREFETCH};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("the evaluator refused an example: {0}")]
    Eval(#[from] EvalError),
    #[error("{0}")]
    Compile(String),
    #[error(
        "training diverged: the loss became {value} at epoch {epoch}, example {example} \
         (learning rate {lr}); try a smaller learning rate, e.g. --lr {suggest}"
    )]
    Diverged {
        epoch: usize,
        example: usize,
        value: f64,
        lr: f64,
        suggest: f64,
    },
    /// The native step made a parameter infinite or NaN while every loss
    /// stayed finite (the evaluator refuses such a step by its gradient).
    #[error(
        "training diverged: parameter `{table}` row {row} became {value} in epoch {epoch} \
         (learning rate {lr}); try a smaller learning rate, e.g. --lr {suggest}"
    )]
    DivergedParameter {
        table: String,
        /// The row's number and, where the domain names it, its id.
        row: String,
        epoch: usize,
        value: f64,
        lr: f64,
        suggest: f64,
    },
    /// A gradient whose square (or whose moment) f32 cannot hold: the
    /// native step's Adagrad or Adam state would become infinite and its
    /// steps silently zero. The evaluator stops at the same bound.
    #[error(
        "training diverged: a gradient of parameter `{table}` row {row} is too large for \
         the optimiser: its {state} became {value:e}, beyond f32's range, in epoch {epoch}; \
         scale the loss or penalty terms down, or try a smaller learning rate, e.g. --lr {suggest}"
    )]
    DivergedState {
        table: String,
        row: String,
        state: &'static str,
        epoch: usize,
        value: f64,
        lr: f64,
        suggest: f64,
    },
    #[error(transparent)]
    Native(#[from] InputError),
    /// Initialisation failed, or the parameters would not fit in memory.
    #[error(transparent)]
    Init(#[from] InitError),
    #[error("{0}")]
    Config(String),
    /// Measuring the validation rows failed.
    #[error(transparent)]
    Predict(#[from] PredictError),
}

impl From<SessionError> for TrainError {
    fn from(e: SessionError) -> TrainError {
        match e {
            SessionError::Bind(b) => TrainError::Bind(b),
            SessionError::Compile(c) => TrainError::Compile(c),
        }
    }
}

/// Training settings: the model's `fit` block, overridden by flags.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub optimizer: Optimizer,
    pub lr: f64,
    pub epochs: usize,
    /// Examples whose gradients are averaged into one update.
    pub batch: usize,
    pub seed: u64,
    /// Stop after this many epochs without improvement on the validation
    /// rows; 0 turns it off.
    pub early_stopping: usize,
    pub schedule: Schedule,
    /// Native code or the reference evaluator.
    pub backend: Backend,
    /// Threads for the native backend: 1 reproduces a run exactly; more
    /// update shared tables without locks (Hogwild).
    pub threads: usize,
    /// Examples ahead whose rows the native step touches early (0: none).
    pub prefetch: usize,
    /// Which parameters an interrupted run returns.
    pub on_interrupt: OnInterrupt,
    /// Gradient steps, or a closed-form solver (`crate::solve`).
    pub solver: Solver,
    /// How the native trainer orders the steps of a model that pools a
    /// history (`recc_compiler::hoist`).
    pub pooling: Pooling,
}

/// The native trainer's schedule for a pooled history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pooling {
    /// A user's examples together, the history's rows frozen for the group
    /// and updated once at its end (`crate::grouped`), where the model's
    /// plan allows; else per example.
    #[default]
    Grouped,
    /// Every example pools its history and updates every member row.
    PerExample,
}

impl std::str::FromStr for Pooling {
    type Err = String;
    fn from_str(s: &str) -> Result<Pooling, String> {
        match s {
            "grouped" => Ok(Pooling::Grouped),
            "per-example" => Ok(Pooling::PerExample),
            other => Err(format!(
                "unknown pooling schedule `{other}` (expected `grouped` or `per-example`)"
            )),
        }
    }
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Grouped => "grouped",
            Pooling::PerExample => "per-example",
        })
    }
}

/// The schedule a run of `config` on `session` takes: the hoisted plan
/// when it runs grouped, else why not (for the run's notes). Only the
/// native backend runs grouped; the evaluator is the per-example
/// schedule's reference.
pub fn pooling_plan(session: &Session, config: &TrainConfig) -> Result<HoistPlan, String> {
    if config.pooling == Pooling::PerExample {
        return Err("--pooling per-example".into());
    }
    if config.solver != Solver::Sgd {
        return Err(format!("the {} solver does not pool", config.solver));
    }
    if config.effective_backend() != Backend::Jit {
        return Err("the evaluator runs the per-example schedule".into());
    }
    recc_compiler::hoist_plan(&session.forward).map_err(|e| e.to_string())
}

/// Which parameters a run stopped by its observer returns (early
/// stopping's best epoch, when it has one, wins over both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Those after the last finished block of examples: nothing trained is
    /// lost, but the last epoch may be part-way through.
    #[default]
    KeepLastBlock,
    /// Those at the end of the last finished epoch (the initial ones when
    /// none finished), so that a stopped run is one a whole number of
    /// epochs long. Costs a copy of the parameters at every epoch's end.
    KeepLastEpoch,
}

impl TrainConfig {
    pub fn from_fit(fit: &FitConfig) -> TrainConfig {
        TrainConfig {
            optimizer: fit.optimizer,
            lr: fit.lr,
            epochs: fit.epochs,
            batch: fit.batch.max(1),
            seed: fit.seed,
            early_stopping: fit.early_stopping,
            schedule: Schedule::default(),
            backend: Backend::default(),
            threads: 1,
            prefetch: DEFAULT_PREFETCH,
            on_interrupt: OnInterrupt::default(),
            solver: fit.solver,
            pooling: Pooling::default(),
        }
    }

    /// The backend that will run: mini-batches average gradients across
    /// examples, which only the evaluator's trainer does.
    pub fn effective_backend(&self) -> Backend {
        if self.batch > 1 {
            Backend::Interp
        } else {
            self.backend
        }
    }

    /// The settings as text, for model files and reports.
    pub fn describe(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("optimizer".into(), self.optimizer.to_string());
        m.insert("lr".into(), self.lr.to_string());
        m.insert("epochs".into(), self.epochs.to_string());
        m.insert("batch".into(), self.batch.to_string());
        m.insert("seed".into(), self.seed.to_string());
        m.insert("early_stopping".into(), self.early_stopping.to_string());
        m.insert("schedule".into(), self.schedule.to_string());
        m.insert("backend".into(), self.effective_backend().to_string());
        m.insert("threads".into(), self.threads.to_string());
        // Said only when it is not the default, so SGD runs read as before.
        if self.solver != Solver::Sgd {
            m.insert("solver".into(), self.solver.to_string());
        }
        m
    }
}

/// What the trainer tells whoever is watching.
pub trait Observer {
    /// `done` of `total` examples of `epoch` (1-based) are through, with the
    /// running mean loss.
    fn progress(&mut self, _epoch: usize, _done: usize, _total: usize, _loss: f64) {}
    /// An epoch ended.
    fn epoch(&mut self, _record: &EpochRecord, _monitor: &str, _epochs: usize) {}
    /// Should training stop now (an interrupt)? Asked at the end of every
    /// block of examples; training then returns what it has.
    fn stop_requested(&mut self) -> bool {
        false
    }
    /// Something worth telling whoever runs the training (how the data was
    /// bound), said before the first epoch. The trainer itself says none;
    /// [`crate::experiment`] passes on its notes here as they arise.
    fn note(&mut self, _text: &str) {}
    /// Training starts now (the notes are said). Called by
    /// [`crate::experiment`], not by [`train`].
    fn started(&mut self) {}
    /// Training is over, whether it ended, stopped or failed; measuring
    /// the result follows, and reports to [`Observer::measuring`]. Called
    /// by [`crate::experiment`], not by [`train`].
    fn finished(&mut self) {}
    /// Where the progress of measuring the trained model goes (ranking the
    /// catalogue for each test user).
    fn measuring(&self) -> &dyn StepObserver {
        &Unobserved
    }
    /// A closed-form solver runs: each "epoch" is a sweep over every
    /// block table, and progress counts rows solved rather than examples.
    fn solving(&mut self) {}
}

/// An observer that says nothing.
pub struct Silent;
impl Observer for Silent {}

/// The outcome of training.
#[derive(Clone, Debug)]
pub struct Trained {
    /// Parameters ready for prediction: rows the training never touched
    /// hold their domain's mean (see [`predict::finalise`]).
    pub params: Params,
    /// A Gibbs fit's kept draws, which its predictions average; `None`
    /// for every other fit.
    pub samples: Option<crate::predict::Samples>,
    pub history: Vec<EpochRecord>,
    /// The epoch whose parameters were kept, when early stopping chose one.
    pub best_epoch: Option<usize>,
    /// The name of the per-epoch validation figure, e.g. `rmse`.
    pub monitor: String,
    /// Set when the observer asked training to stop before its last epoch.
    pub interrupted: Option<Interruption>,
}

/// Where training stood when it was asked to stop. The parameters returned
/// are those after the last finished block of examples (or the best epoch,
/// under early stopping), or with [`OnInterrupt::KeepLastEpoch`] those at
/// the end of the last finished epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interruption {
    /// The epoch (1-based) that was running.
    pub epoch: usize,
    /// Examples of that epoch trained on: `total` when it had just ended.
    pub examples: usize,
    pub total: usize,
    /// The epoch whose end the returned parameters are (0: the initial
    /// ones), under [`OnInterrupt::KeepLastEpoch`] without a best epoch.
    pub kept_epoch: Option<usize>,
}

/// Examples between progress reports.
const PROGRESS_EVERY: usize = 4096;

/// Train `session` on `rows` of `data`. `validation` rows, if any, are
/// scored after every epoch and drive early stopping.
pub fn train(
    session: &Session,
    data: &Dataset,
    rows: &[usize],
    validation: &[usize],
    config: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<Trained, TrainError> {
    if rows.is_empty() {
        return Err(TrainError::Config("there are no training rows".into()));
    }
    // The closed-form solvers take no learning rate.
    if config.solver != Solver::Sgd {
        return crate::solve::solve(session, data, rows, validation, config, observer);
    }
    if !(config.lr.is_finite() && config.lr > 0.0) {
        return Err(TrainError::Config(format!(
            "the learning rate must be a positive number, not {}",
            config.lr
        )));
    }
    if config.effective_backend() == Backend::Jit {
        return train_native(session, data, rows, validation, config, observer);
    }
    let g = &session.gradient;
    let sizes = session.binding.domain_sizes();
    check_memory(g, &sizes, config.optimizer, Holder::Evaluator)?;
    let mut params = initialise(g, &sizes, config.seed)?;
    let mut optimiser = OptimiserState::new(config.optimizer, g, &params);
    let mut touched: Vec<Vec<bool>> = params
        .tables
        .iter()
        .map(|t| vec![false; t.nrows()])
        .collect();
    let mut order: Vec<usize> = rows.to_vec();
    let mut shuffle_rng = StdRng::seed_from_u64(config.seed);
    let mut sample_rng = StdRng::seed_from_u64(config.seed.wrapping_add(0x9e37_79b9_7f4a_7c15));
    let mut example = Example { slots: Vec::new() };
    let mut tracker = EpochTracker::new(session, data, validation, config);
    tracker.start(&|| (params.clone(), touched.clone()));
    let batch = config.batch.max(1);
    let mut pending: BTreeMap<(TableId, usize), Vec<f64>> = BTreeMap::new();
    let mut interrupted = None;

    'epochs: for epoch in 0..config.epochs {
        if observer.stop_requested() {
            interrupted = Some(Interruption {
                epoch: epoch.max(1),
                examples: if epoch == 0 { 0 } else { order.len() },
                total: order.len(),
                kept_epoch: None,
            });
            break;
        }
        let started = Instant::now();
        let lr = config.schedule.rate(config.lr, epoch, config.epochs);
        order.shuffle(&mut shuffle_rng);
        let mut total_loss = 0.0;
        for (k, &r) in order.iter().enumerate() {
            let row = session.binding.row(data, r);
            session
                .binding
                .example(data, &row, &mut sample_rng, true, &mut example);
            let ev = evaluate(g, &params, &example)?;
            let finite = ev.loss.is_finite()
                && ev
                    .gradients
                    .rows
                    .values()
                    .all(|v| v.iter().all(|x| x.is_finite()));
            if !finite {
                let value = if ev.loss.is_finite() {
                    f64::NAN
                } else {
                    ev.loss
                };
                return Err(TrainError::Diverged {
                    epoch: epoch + 1,
                    example: k + 1,
                    value,
                    lr,
                    suggest: nice_smaller(lr),
                });
            }
            total_loss += ev.loss;
            if batch == 1 {
                for ((t, row), grad) in &ev.gradients.rows {
                    optimiser.step(&mut params, *t, *row, grad, lr);
                    touched[t.index()][*row] = true;
                }
            } else {
                for (key, grad) in ev.gradients.rows {
                    let e = pending.entry(key).or_insert_with(|| vec![0.0; grad.len()]);
                    for (a, b) in e.iter_mut().zip(&grad) {
                        *a += b;
                    }
                }
                if (k + 1) % batch == 0 || k + 1 == order.len() {
                    let n = ((k % batch) + 1) as f64;
                    for ((t, row), grad) in std::mem::take(&mut pending) {
                        let mean: Vec<f64> = grad.iter().map(|v| v / n).collect();
                        optimiser.step(&mut params, t, row, &mean, lr);
                        touched[t.index()][row] = true;
                    }
                }
            }
            if (k + 1) % PROGRESS_EVERY == 0 {
                observer.progress(epoch + 1, k + 1, order.len(), total_loss / (k + 1) as f64);
                // A partial mini-batch is dropped: its rows are not stepped.
                if k + 1 < order.len() && observer.stop_requested() {
                    interrupted = Some(Interruption {
                        epoch: epoch + 1,
                        examples: k + 1,
                        total: order.len(),
                        kept_epoch: None,
                    });
                    break 'epochs;
                }
            }
        }
        observer.progress(
            epoch + 1,
            order.len(),
            order.len(),
            total_loss / order.len() as f64,
        );
        let mean_loss = total_loss / order.len() as f64;
        let seconds = started.elapsed().as_secs_f64();
        if let Some(over) = optimiser.first_beyond_f32() {
            return Err(diverged_state(session, over, epoch + 1, lr));
        }
        let snapshot = || (params.clone(), touched.clone());
        if tracker.end_epoch(epoch, mean_loss, seconds, &snapshot, observer)? {
            break;
        }
    }
    Ok(tracker.finish(params, &touched, interrupted))
}

/// Examples encoded and run per kernel call: large enough to amortise the
/// call, small enough that the columns stay in cache.
const NATIVE_BLOCK: usize = 4096;

/// Laid-out examples up to this size are read in place by the kernel; more
/// are gathered per block (`NativeJob::run`).
const IN_PLACE_BYTES: usize = 8 << 20;

/// Training through the native step: the same shuffles and the same
/// negative and noise draws as the evaluator's loop, so one thread follows
/// the same path (in f32 instead of f64).
fn train_native(
    session: &Session,
    data: &Dataset,
    rows: &[usize],
    validation: &[usize],
    config: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<Trained, TrainError> {
    let g = &session.gradient;
    let sizes = session.binding.domain_sizes();
    // Before compiling: a model too large for memory is refused at once.
    check_memory(g, &sizes, config.optimizer, Holder::Native)?;
    let plan = pooling_plan(session, config).ok();
    let kernel = match &plan {
        Some(_) => None,
        None => Some(compile_step(g, config.optimizer, config.prefetch)?),
    };
    let hoisted = match &plan {
        Some(p) => Some((
            compile_step(&p.step, config.optimizer, config.prefetch)?,
            compile_step(&p.member, config.optimizer, 0)?,
        )),
        None => None,
    };
    let mut groups = plan
        .as_ref()
        .map(|_| crate::grouped::user_groups(session, data, rows));
    let mut native = NativeParams::initialise(g, &sizes, config.seed, config.optimizer)?;
    let lanes = native.lanes.clone();
    let tables = TableWords::new(&mut native);
    // Every training example laid out once, checked once; an epoch only
    // shuffles the order of their positions (the same permutation the rows
    // themselves would get from the same generator).
    // Plain columns of a training set too large for the cache are gathered
    // from the data block by block, as they are: a copy laid out would be
    // read the same way, at the cost of its memory.
    let from_data =
        session.binding.is_plain() && rows.len().saturating_mul(4 * g.slots.len()) > IN_PLACE_BYTES;
    let laid = match &kernel {
        Some(_) if from_data => None,
        Some(kernel) => {
            let mut columns = session.binding.columns();
            session.binding.encode_examples(data, rows, &mut columns);
            Some(LaidOut::new(kernel, g, columns, &sizes)?)
        }
        None => None,
    };
    let positions = u32::try_from(rows.len()).map_err(|_| {
        TrainError::Compile(format!(
            "{} training rows; the native trainer takes at most {}",
            rows.len(),
            u32::MAX
        ))
    })?;
    let mut order: Vec<u32> = (0..positions).collect();
    let mut shuffle_rng = StdRng::seed_from_u64(config.seed);
    let mut sample_rng = StdRng::seed_from_u64(config.seed.wrapping_add(0x9e37_79b9_7f4a_7c15));
    let mut tracker = EpochTracker::new(session, data, validation, config);
    tracker.start(&|| (native.to_params(), native.touched()));
    let threads = config.threads.clamp(1, order.len().max(1));
    let mut interrupted = None;
    for epoch in 0..config.epochs {
        let total = order.len();
        if observer.stop_requested() {
            interrupted = Some(Interruption {
                epoch: epoch.max(1),
                examples: if epoch == 0 { 0 } else { total },
                total,
                kept_epoch: None,
            });
            break;
        }
        let started = Instant::now();
        let lr = config.schedule.rate(config.lr, epoch, config.epochs);
        let hyper = Hyper::new(config.optimizer, lr);
        let ran: Vec<(usize, Ran)> = if let (Some(plan), Some((step, member)), Some(groups)) =
            (&plan, &hoisted, groups.as_mut())
        {
            // Users in a shuffled order, each user's examples shuffled.
            for group in groups.iter_mut() {
                group.rows.shuffle(&mut shuffle_rng);
            }
            let chunks =
                crate::grouped::chunks(groups, GROUP_EXAMPLES, GROUP_SPLITS, &mut shuffle_rng);
            let job = crate::grouped::GroupJob {
                session,
                data,
                plan,
                step,
                member,
                tables: &tables,
                lanes: &lanes,
                sizes: &sizes,
                hyper,
            };
            grouped_epoch(
                &job,
                &chunks,
                threads,
                epoch,
                total,
                &mut sample_rng,
                observer,
            )
        } else {
            let Some(kernel) = &kernel else {
                return Err(TrainError::Compile("no step kernel was compiled".into()));
            };
            let laid = laid.as_ref();
            order.shuffle(&mut shuffle_rng);
            let job = NativeJob {
                session,
                data,
                rows,
                laid,
                kernel,
                tables: &tables,
                sizes: &sizes,
                hyper,
            };
            // Each share of the order ran from its offset: what it did.
            if threads == 1 {
                let mut report = |done: usize, loss: f64| {
                    observer.progress(epoch + 1, done, total, loss / done.max(1) as f64);
                    !observer.stop_requested()
                };
                vec![(0, job.run(&order, &mut sample_rng, &mut report, None))]
            } else {
                // Hogwild: each thread takes a contiguous share of the shuffled
                // order and updates the shared tables without locks.
                let seeds: Vec<u64> = (0..threads).map(|_| sample_rng.random()).collect();
                let share = total.div_ceil(threads);
                let shares: Vec<&[u32]> = order.chunks(share).collect();
                let results = run_shares(
                    &shares,
                    &seeds,
                    &|part: &[u32], rng, report, shared| job.run(part, rng, report, shared),
                    epoch,
                    total,
                    observer,
                );
                (0..total).step_by(share.max(1)).zip(results).collect()
            }
        };
        let mut total_loss = 0.0;
        let mut done_all = 0;
        let mut halted = false;
        for (offset, ran) in ran {
            total_loss += ran.loss;
            done_all += ran.done;
            let first = offset + ran.done + 1;
            match ran.stop {
                None => {}
                Some(Stop::Halted) => halted = true,
                Some(Stop::Loss) => {
                    return Err(TrainError::Diverged {
                        epoch: epoch + 1,
                        example: first,
                        value: f64::NAN,
                        lr,
                        suggest: nice_smaller(lr),
                    })
                }
                Some(Stop::Input(e)) => return Err(e.into()),
            }
        }
        // The loss can stay finite while an update overflows: no
        // parameter may leave an epoch (or an interrupted one) infinite.
        if let Some(bad) = native.first_non_finite() {
            return Err(diverged_parameter(session, bad, epoch + 1, lr));
        }
        if let Some(over) = native_state_overflow(&native, config.optimizer) {
            return Err(diverged_state(session, over, epoch + 1, lr));
        }
        if halted {
            interrupted = Some(Interruption {
                epoch: epoch + 1,
                examples: done_all,
                total,
                kept_epoch: None,
            });
            break;
        }
        observer.progress(epoch + 1, total, total, total_loss / total as f64);
        let mean_loss = total_loss / total as f64;
        let seconds = started.elapsed().as_secs_f64();
        // The f64 copy is made only when validation or early stopping reads it.
        let snapshot = || (native.to_params(), native.touched());
        if tracker.end_epoch(epoch, mean_loss, seconds, &snapshot, observer)? {
            break;
        }
    }
    drop(tables);
    let touched = native.touched();
    let params = native.into_params()?;
    Ok(tracker.finish(params, &touched, interrupted))
}

/// A user's examples form one chunk (at least this many per chunk, in at
/// most `GROUP_SPLITS` chunks); rounds of chunks of several users run with
/// the history's rows frozen (`grouped::ROUND_CHUNKS`).
const GROUP_EXAMPLES: usize = 16;
const GROUP_SPLITS: usize = 1;

/// One epoch of the grouped schedule: the shuffled groups split among
/// `threads` (Hogwild), each share's examples counted from its offset.
fn grouped_epoch(
    job: &crate::grouped::GroupJob,
    chunks: &[crate::grouped::Chunk],
    threads: usize,
    epoch: usize,
    total: usize,
    sample_rng: &mut StdRng,
    observer: &mut dyn Observer,
) -> Vec<(usize, Ran)> {
    use crate::grouped::{GroupStop, GroupsRan};
    let convert = |r: GroupsRan| Ran {
        done: r.done,
        loss: r.loss,
        stop: r.stop.map(|s| match s {
            GroupStop::Loss => Stop::Loss,
            GroupStop::Input(e) => Stop::Input(e),
            GroupStop::Halted => Stop::Halted,
        }),
    };
    let all = chunks;
    let threads = threads.clamp(1, all.len().max(1));
    if threads == 1 {
        let mut report = |done: usize, loss: f64| {
            observer.progress(epoch + 1, done, total, loss / done.max(1) as f64);
            !observer.stop_requested()
        };
        return vec![(0, convert(job.run(all, sample_rng, &mut report, None)))];
    }
    let seeds: Vec<u64> = (0..threads).map(|_| sample_rng.random()).collect();
    let share = all.len().div_ceil(threads);
    let parts: Vec<&[crate::grouped::Chunk]> = all.chunks(share).collect();
    let offsets: Vec<usize> = parts
        .iter()
        .scan(0, |at, part| {
            let here = *at;
            *at += part.iter().map(|g| g.rows.len()).sum::<usize>();
            Some(here)
        })
        .collect();
    let results = run_shares(
        &parts,
        &seeds,
        &|part: &[crate::grouped::Chunk], rng, report, shared| {
            convert(job.run(part, rng, report, shared))
        },
        epoch,
        total,
        observer,
    );
    offsets.into_iter().zip(results).collect()
}

/// How a share of an epoch reports: examples done and their summed loss;
/// false to stop.
type Report<'r> = dyn FnMut(usize, f64) -> bool + 'r;

/// A share's run: its part, its generator, its report, and the flag and
/// counter the shares have in common.
type ShareRun<'r, P> =
    dyn Fn(&P, &mut StdRng, &mut Report, Option<(&AtomicBool, &AtomicUsize)>) -> Ran + Sync + 'r;

/// Hogwild: each of `shares` runs on a thread of its own with a generator
/// seeded from `seeds`, updating the shared tables without locks. The first
/// runs on this thread and reports the progress of them all to `observer`,
/// whose stop request stops every share. What each share did, in order.
fn run_shares<P: ?Sized + Sync>(
    shares: &[&P],
    seeds: &[u64],
    run: &ShareRun<P>,
    epoch: usize,
    total: usize,
    observer: &mut dyn Observer,
) -> Vec<Ran> {
    let stop = AtomicBool::new(false);
    let progress = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (&part, &seed) in shares.iter().zip(seeds).skip(1) {
            let (stop, progress) = (&stop, &progress);
            handles.push(scope.spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut report = |_: usize, _: f64| true;
                run(part, &mut rng, &mut report, Some((stop, progress)))
            }));
        }
        let mut results = Vec::with_capacity(shares.len());
        if let (Some(&first), Some(&seed)) = (shares.first(), seeds.first()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut report = |_: usize, loss: f64| {
                let done = progress.load(Ordering::Relaxed);
                observer.progress(epoch + 1, done, total, loss / done.max(1) as f64);
                !observer.stop_requested()
            };
            results.push(run(first, &mut rng, &mut report, Some((&stop, &progress))));
        }
        for h in handles {
            results.push(h.join().unwrap_or(Ran {
                done: 0,
                loss: f64::NAN,
                stop: Some(Stop::Halted),
            }));
        }
        results
    })
}

/// A row's number and, where its domain names it, its id.
fn describe_row(session: &Session, table: usize, row: usize) -> String {
    let id = session.gradient.tables[table]
        .domain
        .and_then(|d| session.binding.domains.get(d.index()))
        .and_then(|(_, ids)| ids.names().get(row));
    match id {
        Some(id) => format!("{row} (`{id}`)"),
        None => row.to_string(),
    }
}

/// The first lane of the native Adagrad or Adam state that is infinite or NaN.
fn native_state_overflow(native: &NativeParams, optimizer: Optimizer) -> Option<StateOverflow> {
    let names: [&'static str; 2] = match optimizer {
        Optimizer::Adagrad => ["squared-gradient sum", ""],
        Optimizer::Adam { .. } => ["first moment", "second moment"],
        Optimizer::Sgd => return None,
    };
    for (state, tables) in names.into_iter().zip([&native.first, &native.second]) {
        for (table, values) in tables.iter().enumerate() {
            if let Some(at) = values.iter().position(|v| !v.is_finite()) {
                return Some(StateOverflow {
                    table,
                    row: at / native.lanes[table].max(1),
                    state,
                    value: f64::from(values[at]),
                });
            }
        }
    }
    None
}

/// The divergence error for optimiser state beyond f32's range.
fn diverged_state(session: &Session, over: StateOverflow, epoch: usize, lr: f64) -> TrainError {
    TrainError::DivergedState {
        table: session.gradient.tables[over.table].name.clone(),
        row: describe_row(session, over.table, over.row),
        state: over.state,
        epoch,
        value: over.value,
        lr,
        suggest: nice_smaller(lr),
    }
}

/// The divergence error for a parameter the native step made infinite or NaN.
fn diverged_parameter(session: &Session, bad: NonFinite, epoch: usize, lr: f64) -> TrainError {
    let table = &session.gradient.tables[bad.table];
    let row = describe_row(session, bad.table, bad.row);
    TrainError::DivergedParameter {
        table: table.name.clone(),
        row,
        epoch,
        value: f64::from(bad.value),
        lr,
        suggest: nice_smaller(lr),
    }
}

/// Compile the fused training step of `g`, touching rows `prefetch`
/// examples ahead.
pub fn compile_step(
    g: &Graph,
    optimizer: Optimizer,
    prefetch: usize,
) -> Result<Kernel, TrainError> {
    let options = StepOptions {
        optimizer,
        max_ball_norm: MAX_BALL_NORM,
    };
    Kernel::compile(g, KernelKind::Step(options), prefetch)
        .map_err(|e| TrainError::Compile(e.to_string()))
}

/// What every thread of a native epoch shares.
struct NativeJob<'a> {
    session: &'a Session,
    data: &'a Dataset,
    /// The training rows, by position in `laid`.
    rows: &'a [usize],
    /// The training examples, laid out once; `None`: encoded from the
    /// data block by block.
    laid: Option<&'a LaidOut>,
    kernel: &'a Kernel,
    tables: &'a TableWords,
    sizes: &'a [usize],
    hyper: Hyper,
}

/// What one thread's share of an epoch did.
struct Ran {
    /// Examples finished, and their summed loss.
    done: usize,
    loss: f64,
    /// Why it stopped before the end of its rows.
    stop: Option<Stop>,
}

enum Stop {
    /// An example's loss was not finite (`done` is that example, 0-based).
    Loss,
    /// A block failed validation; the kernel did not run it.
    Input(InputError),
    /// Asked to stop (an interrupt), or another thread stopped.
    Halted,
}

impl NativeJob<'_> {
    /// Train on `rows` in blocks. After each block `report` is told the
    /// examples done and their summed loss; it returns false to stop
    /// there (unless it was the last block). Stops early too when a loss
    /// is not finite, when a block fails validation, or when another thread
    /// has stopped (`shared`).
    fn run(
        &self,
        positions: &[u32],
        rng: &mut StdRng,
        report: &mut dyn FnMut(usize, f64) -> bool,
        shared: Option<(&AtomicBool, &AtomicUsize)>,
    ) -> Ran {
        let binding = &self.session.binding;
        let g = &self.session.gradient;
        // Only what is drawn afresh (negatives, noise) is encoded per block.
        // Examples that fit in cache are read where they were laid out; a
        // larger set is gathered block by block, so the kernel reads each
        // block in order instead of missing the cache at every example.
        let in_place = self.laid.is_some_and(|l| l.bytes() <= IN_PLACE_BYTES);
        let draws = binding.has_draws();
        let mut drawn = binding.columns();
        let mut block_rows: Vec<usize> = Vec::new();
        let mut runner = Runner::new();
        let (mut done, mut loss) = (0, 0.0);
        let mut blocks = positions.chunks(NATIVE_BLOCK).peekable();
        let stop = loop {
            let Some(block) = blocks.next() else {
                break None;
            };
            if shared.is_some_and(|(stop, _)| stop.load(Ordering::Relaxed)) {
                break Some(Stop::Halted);
            }
            drawn.clear();
            // The data rows are read only to encode or draw from them.
            if !in_place || draws {
                block_rows.clear();
                block_rows.extend(block.iter().map(|&p| self.rows[p as usize]));
            }
            match self.laid {
                Some(laid) if !in_place => {
                    laid.gather(block, &mut drawn);
                    binding.encode_draws(self.data, &block_rows, rng, true, &mut drawn);
                }
                Some(_) if draws => {
                    binding.encode_draws(self.data, &block_rows, rng, true, &mut drawn)
                }
                Some(_) => {}
                None => binding.encode_rows(self.data, &block_rows, rng, true, &mut drawn),
            }
            let ran = if let (Some(laid), true) = (self.laid, in_place) {
                runner.run_laid_out(
                    self.kernel,
                    g,
                    laid,
                    block,
                    &drawn,
                    self.tables,
                    self.sizes,
                    self.hyper,
                )
            } else {
                runner.run(self.kernel, g, &drawn, self.tables, self.sizes, self.hyper)
            };
            let (n, l) = match ran {
                Ok(ran) => ran,
                Err(e) => break Some(Stop::Input(e)),
            };
            done += n;
            loss += l;
            if let Some((_, progress)) = shared {
                progress.fetch_add(n, Ordering::Relaxed);
            }
            let stop = if n < block.len() {
                Some(Stop::Loss)
            } else if !report(done, loss) && blocks.peek().is_some() {
                Some(Stop::Halted)
            } else {
                None
            };
            if stop.is_some() {
                break stop;
            }
        };
        if let (Some((flag, _)), Some(_)) = (shared, &stop) {
            flag.store(true, Ordering::Relaxed);
        }
        Ran { done, loss, stop }
    }
}

/// The end of every epoch, whichever backend trained it: validation, the
/// record, early stopping and the parameters to keep.
pub(crate) struct EpochTracker<'a> {
    session: &'a Session,
    data: &'a Dataset,
    validation: &'a [usize],
    config: &'a TrainConfig,
    history: Vec<EpochRecord>,
    best: Option<(f64, usize, Params, Vec<Vec<bool>>)>,
    /// The parameters at the end of the last finished epoch, and its
    /// number, kept only under [`OnInterrupt::KeepLastEpoch`].
    last_epoch: Option<(usize, Params, Vec<Vec<bool>>)>,
}

impl<'a> EpochTracker<'a> {
    pub(crate) fn new(
        session: &'a Session,
        data: &'a Dataset,
        validation: &'a [usize],
        config: &'a TrainConfig,
    ) -> EpochTracker<'a> {
        EpochTracker {
            session,
            data,
            validation,
            config,
            history: Vec::new(),
            best: None,
            last_epoch: None,
        }
    }

    fn keeps_epochs(&self) -> bool {
        self.config.on_interrupt == OnInterrupt::KeepLastEpoch
    }

    /// Before the first epoch: the initial parameters are the last
    /// finished epoch's until one ends.
    pub(crate) fn start(&mut self, snapshot: &dyn Fn() -> (Params, Vec<Vec<bool>>)) {
        if self.keeps_epochs() {
            let (params, touched) = snapshot();
            self.last_epoch = Some((0, params, touched));
        }
    }

    /// Record epoch `epoch` (0-based); true when early stopping says stop.
    pub(crate) fn end_epoch(
        &mut self,
        epoch: usize,
        mean_loss: f64,
        seconds: f64,
        snapshot: &dyn Fn() -> (Params, Vec<Vec<bool>>),
        observer: &mut dyn Observer,
    ) -> Result<bool, TrainError> {
        let session = self.session;
        let g = &session.gradient;
        let monitor = predict::monitor_name(session.task);
        // Parameters are read only to validate, and to keep the best epoch.
        let mut state = (!self.validation.is_empty()).then(snapshot);
        // Only early stopping keeps the snapshot; otherwise it is finalised
        // in place and handed to the predictor, which owns it.
        let value = match state.take() {
            None => None,
            Some((params, touched)) => {
                let keep = self.config.early_stopping > 0;
                let finished = if keep {
                    let finished = predict::finalise(g, params.clone(), &touched);
                    state = Some((params, touched));
                    finished
                } else {
                    predict::finalise(g, params, &touched)
                };
                let predictor = Predictor::owning(session, finished);
                Some(predictor.monitor(self.data, self.validation, self.config.seed)?)
            }
        };
        let record = EpochRecord {
            epoch: epoch + 1,
            loss: mean_loss,
            validation: value,
            seconds,
        };
        observer.epoch(&record, monitor, self.config.epochs);
        self.history.push(record);
        if self.keeps_epochs() {
            let (params, touched) = snapshot();
            self.last_epoch = Some((epoch + 1, params, touched));
        }
        if self.config.early_stopping > 0 {
            if let Some(v) = value {
                let better = self
                    .best
                    .as_ref()
                    .is_none_or(|(b, _, _, _)| predict::better(session.task, v, *b));
                if better {
                    if let Some((params, touched)) = state {
                        self.best = Some((v, epoch + 1, params, touched));
                    }
                } else if self
                    .best
                    .as_ref()
                    .is_some_and(|(_, e, _, _)| epoch + 1 - e >= self.config.early_stopping)
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    pub(crate) fn finish(
        self,
        params: Params,
        touched: &[Vec<bool>],
        mut interrupted: Option<Interruption>,
    ) -> Trained {
        let g = &self.session.gradient;
        let (params, touched, best_epoch) = match (self.best, self.last_epoch, &mut interrupted) {
            (Some((_, e, p, t)), _, _) => (p, t, Some(e)),
            (None, Some((e, p, t)), Some(stop)) => {
                stop.kept_epoch = Some(e);
                (p, t, None)
            }
            (None, _, _) => (params, touched.to_vec(), None),
        };
        Trained {
            params: predict::finalise(g, params, &touched),
            samples: None,
            history: self.history,
            best_epoch,
            monitor: predict::monitor_name(self.session.task).to_string(),
            interrupted,
        }
    }
}

/// A round learning rate an order of magnitude or so below `lr`.
fn nice_smaller(lr: f64) -> f64 {
    let target = lr / 10.0;
    let exp = target.log10().floor();
    let base = 10f64.powf(exp);
    let mantissa = (target / base).round().clamp(1.0, 9.0);
    let v = mantissa * base;
    // Print-friendly: strip float noise such as 0.0010000000000000002.
    format!("{v:.12}").parse().unwrap_or(v)
}
