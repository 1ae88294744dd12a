//! The trainer: epochs over shuffled examples through the model's step.
//!
//! Input: a [`Session`] (a checked model, its graphs and its data binding),
//! the training rows and a [`TrainConfig`]. Output: [`Trained`] parameters
//! with a record of every epoch. The step is the reference evaluator's
//! gradient followed by the optimiser's row updates; one thread and a seed
//! make a run reproducible bit for bit.

use crate::bind::{BindError, BindOptions, Binding};
use crate::data::Dataset;
use crate::init::initialise;
use crate::modelfile::EpochRecord;
use crate::optim::{OptimiserState, Schedule};
use crate::predict::{self, Predictor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use recc_compiler::interp::{evaluate, EvalError, Example, Params};
use recc_compiler::ir::{Graph, SlotKind, TableId};
use recc_compiler::model::{FitConfig, Model, Optimizer};
use std::collections::BTreeMap;
use std::time::Instant;

/// What a model is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// The score predicts the data's target: RMSE and MAE.
    Rating,
    /// Trained against sampled negatives: ranking metrics over the catalogue.
    Ranking,
    /// Neither: the mean loss on held-out rows.
    Loss,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::Rating => "rating",
            Task::Ranking => "ranking",
            Task::Loss => "loss",
        })
    }
}

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
    #[error("{0}")]
    Config(String),
}

/// A model bound to its data, ready to train and to predict.
#[derive(Clone, Debug)]
pub struct Session {
    pub model: Model,
    pub forward: Graph,
    pub gradient: Graph,
    pub binding: Binding,
    pub task: Task,
}

impl Session {
    pub fn new(
        model: &Model,
        data: &Dataset,
        train: &[usize],
        options: &BindOptions,
    ) -> Result<Session, TrainError> {
        let forward =
            recc_compiler::forward_graph(model).map_err(|e| TrainError::Compile(e.to_string()))?;
        let gradient =
            recc_compiler::gradient_graph(model).map_err(|e| TrainError::Compile(e.to_string()))?;
        let binding = Binding::new(&gradient, data, train, options)?;
        let task = if gradient
            .slots
            .iter()
            .any(|s| matches!(s.kind, SlotKind::Negative { .. }))
        {
            Task::Ranking
        } else if forward.score.is_some() && binding.target_slot(data).is_some() {
            Task::Rating
        } else {
            Task::Loss
        };
        Ok(Session {
            model: model.clone(),
            forward,
            gradient,
            binding,
            task,
        })
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
    pub history: Vec<EpochRecord>,
    /// The epoch whose parameters were kept, when early stopping chose one.
    pub best_epoch: Option<usize>,
    /// The name of the per-epoch validation figure, e.g. `rmse`.
    pub monitor: String,
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
    if !(config.lr.is_finite() && config.lr > 0.0) {
        return Err(TrainError::Config(format!(
            "the learning rate must be a positive number, not {}",
            config.lr
        )));
    }
    let g = &session.gradient;
    let sizes = session.binding.domain_sizes();
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
    let mut history = Vec::new();
    let monitor = predict::monitor_name(session.task);
    let mut best: Option<(f64, usize, Params)> = None;
    let batch = config.batch.max(1);
    let mut pending: BTreeMap<(TableId, usize), Vec<f64>> = BTreeMap::new();

    for epoch in 0..config.epochs {
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
            }
        }
        observer.progress(
            epoch + 1,
            order.len(),
            order.len(),
            total_loss / order.len() as f64,
        );
        let mean_loss = total_loss / order.len() as f64;
        let value = if validation.is_empty() {
            None
        } else {
            let finished = predict::finalise(g, &params, &touched);
            let predictor = Predictor::new(session, &finished);
            Some(predictor.monitor(data, validation, config.seed)?)
        };
        let record = EpochRecord {
            epoch: epoch + 1,
            loss: mean_loss,
            validation: value,
            seconds: started.elapsed().as_secs_f64(),
        };
        observer.epoch(&record, monitor, config.epochs);
        history.push(record);
        if config.early_stopping > 0 {
            if let Some(v) = value {
                let better = best
                    .as_ref()
                    .is_none_or(|(b, _, _)| predict::better(session.task, v, *b));
                if better {
                    best = Some((v, epoch + 1, params.clone()));
                } else if best
                    .as_ref()
                    .is_some_and(|(_, e, _)| epoch + 1 - e >= config.early_stopping)
                {
                    break;
                }
            }
        }
    }
    let (params, best_epoch) = match best {
        Some((_, e, p)) => (p, Some(e)),
        None => (params, None),
    };
    Ok(Trained {
        params: predict::finalise(g, &params, &touched),
        history,
        best_epoch,
        monitor: monitor.to_string(),
    })
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
