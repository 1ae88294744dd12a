//! Prediction and evaluation with trained parameters.
//!
//! Input: a [`Session`] and trained [`Params`]. Output: scores, metrics,
//! recommendations and neighbours.
//!
//! Cold start, defined once here: after training, every row the training
//! never touched holds the mean of its table's touched rows ([`finalise`]),
//! and prediction appends one more row per domain table, the mean of all
//! rows, for ids the data has never seen ([`with_cold_rows`]). An unknown
//! user therefore scores as the average user; a known occupation or genre
//! beside it still counts.

use crate::bind::Columns;
use crate::data::{ColumnData, Dataset};
use crate::metrics::{
    self, Catalogue, IntervalMetrics, Predictive, RankingMetrics, UserMetrics, UserRanking,
};
use crate::native::{Hyper, InputError, NativeParams, Runner, TableWords};
use crate::progress::{StepObserver, Unobserved};
use crate::rank::{Factored, ItemPart};
use crate::session::{Backend, Session, Task};
use ndarray::{Array2, Axis};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use recc_compiler::interp::{evaluate, EvalError, Example, Incremental, Params};
use recc_compiler::ir::{Graph, SlotId, SlotKind, TableRole};
use recc_compiler::model::Constraint;
use recc_jit::{Kernel, KernelKind};
use std::sync::Arc;

/// Why scoring or measuring failed.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("the evaluator refused an example: {0}")]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Native(#[from] InputError),
    /// The model or the data cannot give the figure asked for.
    #[error("{0}")]
    Config(String),
}

/// Replace rows training never touched by the mean of the touched rows of
/// their table (per-domain tables only).
pub fn finalise(g: &Graph, params: Params, touched: &[Vec<bool>]) -> Params {
    let mut out = params;
    for (k, table) in g.tables.iter().enumerate() {
        if table.domain.is_none() {
            continue;
        }
        let values = &mut out.tables[k];
        let seen = touched[k]
            .iter()
            .take(values.nrows())
            .filter(|&&t| t)
            .count();
        if seen == 0 || seen == values.nrows() {
            continue;
        }
        // Summed in place rather than over a copy of the touched rows (with
        // many ids, a second table's worth of memory), in the order and with
        // the rounding of `mean_axis(Axis(0))`: row after row, then divided.
        let mut sum = ndarray::Array1::<f64>::zeros(values.ncols());
        for (row, _) in values
            .rows()
            .into_iter()
            .zip(&touched[k])
            .filter(|(_, t)| **t)
        {
            sum += &row;
        }
        let count = seen as f64;
        let mean = sum.mapv_into(|v| v / count);
        for (mut row, _) in values
            .rows_mut()
            .into_iter()
            .zip(&touched[k])
            .filter(|(_, t)| !**t)
        {
            row.assign(&mean);
        }
    }
    out
}

/// `params` with one extra row per domain table, the mean of its rows: the
/// row of an id the data does not know.
pub fn with_cold_rows(g: &Graph, params: &Params) -> Params {
    add_cold_rows(g, params.clone())
}

/// [`with_cold_rows`], growing each table in place rather than copying it:
/// with many ids the tables are most of the memory a run uses.
pub fn add_cold_rows(g: &Graph, params: Params) -> Params {
    let Params {
        domain_sizes,
        tables,
    } = params;
    let tables = g
        .tables
        .iter()
        .zip(tables)
        .map(|(table, values)| {
            if table.domain.is_none() {
                return values;
            }
            grow_cold_row(values)
        })
        .collect();
    Params {
        domain_sizes: domain_sizes.iter().map(|n| n + 1).collect(),
        tables,
    }
}

/// The inverse of [`add_cold_rows`]: the parameters as trained, bit for bit.
pub fn remove_cold_rows(g: &Graph, params: Params) -> Params {
    let Params {
        domain_sizes,
        tables,
    } = params;
    let tables = g
        .tables
        .iter()
        .zip(tables)
        .map(|(table, values)| {
            if table.domain.is_none() {
                return values;
            }
            let (rows, lanes) = values.dim();
            let rows = rows.saturating_sub(1);
            let mut flat = into_row_major(values);
            flat.truncate(rows * lanes);
            table_from_rows(rows, lanes, flat)
        })
        .collect();
    Params {
        domain_sizes: domain_sizes.iter().map(|n| n.saturating_sub(1)).collect(),
        tables,
    }
}

/// The values of `table` row after row, without a copy when it is laid out
/// that way already (as every table the runtime makes is).
pub fn into_row_major(table: Array2<f64>) -> Vec<f64> {
    if !table.is_standard_layout() {
        return table.iter().copied().collect();
    }
    let len = table.len();
    let (mut flat, offset) = table.into_raw_vec_and_offset();
    let offset = offset.unwrap_or(0);
    if offset == 0 && flat.len() == len {
        return flat;
    }
    flat.truncate(offset + len);
    flat.drain(..offset);
    flat
}

/// A `rows × lanes` table of `flat`, which holds exactly that many values.
fn table_from_rows(rows: usize, lanes: usize, flat: Vec<f64>) -> Array2<f64> {
    debug_assert_eq!(flat.len(), rows * lanes);
    Array2::from_shape_vec((rows, lanes), flat)
        .unwrap_or_else(|_| unreachable!("a table's values fill its shape"))
}

/// The per-epoch validation figure of a task.
pub fn monitor_name(task: Task) -> &'static str {
    match task {
        Task::Rating => "rmse",
        Task::Ranking => "auc",
        Task::Loss => "loss",
    }
}

/// Is validation figure `a` better than `b` for `task`?
pub fn better(task: Task, a: f64, b: f64) -> bool {
    match task {
        Task::Ranking => a > b,
        Task::Rating | Task::Loss => a < b,
    }
}

/// RMSE and MAE of a rating model on some rows.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct RatingMetrics {
    pub rmse: f64,
    pub mae: f64,
    pub rows: usize,
}

/// The draws of a Gibbs chain kept for prediction: a prediction is the
/// mean of the draws' scores, and the draws with their noise make its
/// predictive distribution. Only the tables the score reads are kept; the
/// others are the trained parameters'.
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    /// The graph's tables each draw holds, in increasing order.
    pub tables: Vec<usize>,
    pub draws: Vec<Draw>,
}

/// One kept draw: its values of [`Samples::tables`], in that order, rows
/// training never touched [`finalise`]d, and the noise precision drawn
/// with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Draw {
    pub tables: Vec<Array2<f64>>,
    pub noise_precision: f64,
}

/// Trained parameters, ready to score.
pub struct Predictor<'a> {
    pub session: &'a Session,
    /// The trained parameters: for a Gibbs fit, the posterior mean, which
    /// [`similar`] and the parameters' own figures read.
    pub params: Params,
    /// The forward graph compiled to native code, when the session's
    /// backend is the JIT.
    native: Option<NativeScorer>,
    /// A Gibbs fit's kept draws: when there are any, every score is the
    /// mean of theirs.
    draws: Vec<DrawScorer>,
    /// The score split into a user part and an item part, when it splits:
    /// the catalogue is then scored as a matrix product ([`crate::rank`]).
    factored: Option<Factored>,
}

/// One kept draw, ready to score: the parameters with its tables (and
/// cold rows), and its noise precision.
struct DrawScorer {
    params: Params,
    native: Option<NativeScorer>,
    noise_precision: f64,
}

/// Rows scored per call of the predict kernel.
const SCORE_BLOCK: usize = 4096;

/// The predict kernel and the f32 copy of the parameters it reads.
pub struct NativeScorer {
    /// Shared by the scorers of a model's kept draws: one compilation.
    kernel: Arc<Kernel>,
    params: NativeParams,
    tables: TableWords,
}

impl NativeScorer {
    pub fn new(forward: &Graph, params: &Params) -> Result<NativeScorer, recc_jit::JitError> {
        let kernel = Kernel::compile(forward, KernelKind::Predict, 0)?;
        Ok(NativeScorer::with_kernel(Arc::new(kernel), params))
    }

    /// A scorer of `params` running this scorer's kernel.
    pub fn sharing(&self, params: &Params) -> NativeScorer {
        NativeScorer::with_kernel(Arc::clone(&self.kernel), params)
    }

    fn with_kernel(kernel: Arc<Kernel>, params: &Params) -> NativeScorer {
        let mut params = NativeParams::new(params, recc_compiler::model::Optimizer::Sgd);
        let tables = TableWords::new(&mut params);
        NativeScorer {
            kernel,
            params,
            tables,
        }
    }

    /// The score of every example of `columns`.
    pub fn score(&self, g: &Graph, columns: &Columns) -> Result<Vec<f32>, InputError> {
        let mut runner = Runner::new();
        let hyper = Hyper::new(recc_compiler::model::Optimizer::Sgd, 0.0);
        runner.run(
            &self.kernel,
            g,
            columns,
            &self.tables,
            &self.params.domain_sizes,
            hyper,
        )?;
        Ok(std::mem::take(&mut runner.scores))
    }
}

/// Draws of the variational noise per row for predictive intervals: the
/// sd of a row is then known to within about 1/√(2·64) ≈ 9% of its
/// parameter-uncertainty part, which moves coverage by well under a point.
pub const PREDICTIVE_DRAWS: usize = 64;

/// Validation rows scored per epoch for sampled AUC: enough for a stable
/// figure, few enough to stay a small part of an epoch.
const MONITOR_ROWS: usize = 2000;

impl<'a> Predictor<'a> {
    /// `params` as trained (already [`finalise`]d).
    pub fn new(session: &'a Session, params: &Params) -> Predictor<'a> {
        Predictor::owning(session, params.clone())
    }

    /// [`Predictor::new`] taking the parameters rather than copying them;
    /// [`Predictor::into_params`] gives them back.
    pub fn owning(session: &'a Session, params: Params) -> Predictor<'a> {
        let params = add_cold_rows(&session.forward, params);
        let native = match session.backend {
            // A model the JIT cannot compile is still scored, by the evaluator.
            Backend::Jit if session.forward.score.is_some() => {
                NativeScorer::new(&session.forward, &params).ok()
            }
            _ => None,
        };
        let factored = Factored::new(&session.forward, &session.binding).ok();
        Predictor {
            session,
            params,
            native,
            draws: Vec::new(),
            factored,
        }
    }

    /// This predictor scoring the catalogue pair by pair even when the
    /// score splits: the path a split score is checked against.
    pub fn per_pair(mut self) -> Self {
        self.factored = None;
        self
    }

    /// The split of the score that catalogue scoring uses, if any.
    pub fn factored(&self) -> Option<&Factored> {
        self.factored.as_ref()
    }

    /// Ready to score every item of `data` for many users: with a split
    /// score, the item part of the whole catalogue is computed here, once.
    pub fn catalogue<'p>(
        &'p self,
        data: &'p Dataset,
    ) -> Result<CatalogueScorer<'p, 'a>, EvalError> {
        let blocked = match &self.factored {
            None => None,
            Some(f) => {
                let (g, b) = (&self.session.forward, &self.session.binding);
                let parts = if self.draws.is_empty() {
                    vec![f.items(g, b, data, &self.params)?]
                } else {
                    self.draws
                        .iter()
                        .map(|d| f.items(g, b, data, &d.params))
                        .collect::<Result<_, _>>()?
                };
                Some((f, parts))
            }
        };
        Ok(CatalogueScorer {
            predictor: self,
            data,
            blocked,
        })
    }

    /// This predictor scoring by the mean over the kept draws of a Gibbs
    /// fit (`None`: as it was). A draw's tables must have the shapes of the
    /// parameters'.
    pub fn with_samples(mut self, samples: Option<&Samples>) -> Result<Self, PredictError> {
        let Some(samples) = samples else {
            return Ok(self);
        };
        let g = &self.session.forward;
        let mut draws = Vec::with_capacity(samples.draws.len());
        for draw in &samples.draws {
            if draw.tables.len() != samples.tables.len() {
                return Err(PredictError::Config(format!(
                    "a kept draw holds {} tables, not the {} named",
                    draw.tables.len(),
                    samples.tables.len()
                )));
            }
            let mut params = self.params.clone();
            for (&k, values) in samples.tables.iter().zip(&draw.tables) {
                let (Some(table), Some(own)) = (g.tables.get(k), params.tables.get_mut(k)) else {
                    return Err(PredictError::Config(format!(
                        "a kept draw names table {k}; the model has {}",
                        g.tables.len()
                    )));
                };
                let cold = usize::from(table.domain.is_some());
                if (values.nrows() + cold, values.ncols()) != own.dim() {
                    return Err(PredictError::Config(format!(
                        "a kept draw of `{}` is {} × {}; the table is {} × {}",
                        table.name,
                        values.nrows(),
                        values.ncols(),
                        own.nrows() - cold,
                        own.ncols()
                    )));
                }
                *own = with_cold_row(table.domain.is_some(), values);
            }
            let native = self.native.as_ref().map(|n| n.sharing(&params));
            draws.push(DrawScorer {
                params,
                native,
                noise_precision: draw.noise_precision,
            });
        }
        self.draws = draws;
        Ok(self)
    }

    /// Whether scores are means over kept draws.
    pub fn averages_draws(&self) -> bool {
        !self.draws.is_empty()
    }

    /// The parameters as given to [`Predictor::owning`], bit for bit; the
    /// native scorer's copy is freed.
    pub fn into_params(self) -> Params {
        remove_cold_rows(&self.session.forward, self.params)
    }

    /// Scores through the predict kernel, in blocks on every core:
    /// `encode` lays out one block of `items` (data rows, or items for one
    /// user) as columns.
    fn native_scores<T: Sync>(
        &self,
        native: &NativeScorer,
        items: &[T],
        encode: impl Fn(&[T], &mut StdRng, &mut Columns) + Sync,
    ) -> Result<Vec<f64>, InputError> {
        let b = &self.session.binding;
        let blocks: Vec<Vec<f32>> = items
            .par_chunks(SCORE_BLOCK)
            .map(|block| {
                let mut columns = b.columns();
                let mut rng = StdRng::seed_from_u64(0);
                encode(block, &mut rng, &mut columns);
                native.score(&self.session.forward, &columns)
            })
            .collect::<Result<_, _>>()?;
        Ok(blocks.into_iter().flatten().map(f64::from).collect())
    }

    fn score(&self, ex: &Example) -> Result<f64, EvalError> {
        if self.draws.is_empty() {
            return score_with(&self.session.forward, &self.params, ex);
        }
        let mut total = 0.0;
        for d in &self.draws {
            total += score_with(&self.session.forward, &d.params, ex)?;
        }
        Ok(total / self.draws.len() as f64)
    }

    /// The score of data row `r`.
    pub fn score_row(&self, data: &Dataset, r: usize) -> Result<f64, EvalError> {
        let mut ex = Example { slots: Vec::new() };
        let mut rng = StdRng::seed_from_u64(0);
        let b = &self.session.binding;
        b.example(data, &b.row(data, r), &mut rng, false, &mut ex);
        self.score(&ex)
    }

    /// The score of a (user, item) pair; `None` for an id the data lacks.
    pub fn score_pair(
        &self,
        data: &Dataset,
        user: Option<u32>,
        item: Option<u32>,
    ) -> Result<f64, EvalError> {
        let mut ex = Example { slots: Vec::new() };
        let mut rng = StdRng::seed_from_u64(0);
        let b = &self.session.binding;
        b.example(data, &b.pair(user, item), &mut rng, false, &mut ex);
        self.score(&ex)
    }

    /// The model's score for each of `rows`.
    pub fn scores(&self, data: &Dataset, rows: &[usize]) -> Result<Vec<f64>, PredictError> {
        if self.draws.is_empty() {
            return self.scores_with(&self.params, self.native.as_ref(), data, rows);
        }
        let per_draw = self.draw_scores(data, rows)?;
        Ok(mean_over_draws(&per_draw, rows.len()))
    }

    /// Each kept draw's score for each of `rows`, draw after draw.
    fn draw_scores(&self, data: &Dataset, rows: &[usize]) -> Result<Vec<Vec<f64>>, PredictError> {
        self.draws
            .iter()
            .map(|d| self.scores_with(&d.params, d.native.as_ref(), data, rows))
            .collect()
    }

    /// The scores of `rows` under `params` (scored by `native` when given,
    /// which holds the same values).
    fn scores_with(
        &self,
        params: &Params,
        native: Option<&NativeScorer>,
        data: &Dataset,
        rows: &[usize],
    ) -> Result<Vec<f64>, PredictError> {
        let b = &self.session.binding;
        let predicted: Vec<f64> = match native {
            Some(native) => self.native_scores(native, rows, |block, rng, columns| {
                b.encode_rows(data, block, rng, false, columns)
            })?,
            None => rows
                .par_iter()
                .map(|&r| {
                    let mut ex = Example { slots: Vec::new() };
                    let mut rng = StdRng::seed_from_u64(0);
                    b.example(data, &b.row(data, r), &mut rng, false, &mut ex);
                    score_with(&self.session.forward, params, &ex)
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(predicted)
    }

    /// The RMSE of `predicted` against the target of `rows`.
    pub fn rmse_of(
        &self,
        data: &Dataset,
        rows: &[usize],
        predicted: &[f64],
    ) -> Result<f64, PredictError> {
        let target = self.session.binding.target_values(data).ok_or_else(|| {
            PredictError::Config(
                "rating metrics need the model's real input bound to the data's target".into(),
            )
        })?;
        let actual: Vec<f64> = rows.iter().map(|&r| target[r]).collect();
        Ok(metrics::rmse(predicted, &actual))
    }

    /// RMSE and MAE of the score against the target on `rows`.
    pub fn rating(&self, data: &Dataset, rows: &[usize]) -> Result<RatingMetrics, PredictError> {
        let target = match self.session.binding.target_values(data) {
            Some(t) => t,
            None => {
                return Err(PredictError::Config(
                    "rating metrics need the model's real input bound to the data's target".into(),
                ))
            }
        };
        let predicted = self.scores(data, rows)?;
        let actual: Vec<f64> = rows.iter().map(|&r| target[r]).collect();
        Ok(RatingMetrics {
            rmse: metrics::rmse(&predicted, &actual),
            mae: metrics::mae(&predicted, &actual),
            rows: rows.len(),
        })
    }

    /// How well the model's predictive distribution covers the targets of
    /// `test` ([`metrics::predictive_intervals`]); `None` for a model
    /// without variational tables, which has no distribution to measure.
    ///
    /// Each row's distribution is estimated from [`PREDICTIVE_DRAWS`] draws
    /// of the variational noise, drawn as training draws it (a standard
    /// normal per lane, from a generator seeded by `seed` and the row): per
    /// draw, the score and the noise scale of the model's normal likelihood
    /// ([`Graph::noise_scale`]). A model without one takes the mean squared
    /// residual of its (mean) score on `train` as the noise variance. A
    /// row's support is its user's number of rows in `train`.
    ///
    /// A Gibbs fit's distribution is the mixture over its kept draws `s` of
    /// N(score_s, 1/α_s), α_s the noise precision drawn with the draw (per
    /// row weights of the likelihood taken at their mean), measured the
    /// same way: its mean and its variance, spread of the scores plus the
    /// mean noise variance.
    pub fn intervals(
        &self,
        data: &Dataset,
        train: &[usize],
        test: &[usize],
        seed: u64,
    ) -> Result<Option<IntervalMetrics>, PredictError> {
        let g = &self.session.forward;
        if !self.draws.is_empty() {
            return self.draw_intervals(data, train, test).map(Some);
        }
        if !g.tables.iter().any(|t| t.role == TableRole::LogVar) {
            return Ok(None);
        }
        let Some(target) = self.session.binding.target_values(data) else {
            return Err(PredictError::Config(
                "predictive intervals need the model's real input bound to the data's target"
                    .into(),
            ));
        };
        let fallback_scale = match g.noise_scale {
            Some(_) => None,
            None => Some(self.rating(data, train)?.rmse),
        };
        // Only the noise differs from one draw of a row to the next.
        let drawn: Vec<SlotId> = g
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.kind, SlotKind::Noise(_) | SlotKind::Negative { .. }))
            .map(|(k, _)| SlotId(k as u32))
            .collect();
        let b = &self.session.binding;
        let rows: Vec<Predictive> = test
            .par_iter()
            .map(|&r| {
                // Seeded per row, so the result does not depend on threads.
                let mut rng = StdRng::seed_from_u64(
                    seed ^ (r as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let row = b.row(data, r);
                let mut ex = Example { slots: Vec::new() };
                let mut scorer = Incremental::new(g, &drawn);
                let mut scores = [0.0; PREDICTIVE_DRAWS];
                let mut scales = [0.0; PREDICTIVE_DRAWS];
                for (score, scale) in scores.iter_mut().zip(&mut scales) {
                    b.example(data, &row, &mut rng, true, &mut ex);
                    let (s, noise) = scorer.score_and_scale(&self.params, &ex)?;
                    *score = s;
                    *scale = noise.or(fallback_scale).unwrap_or(0.0);
                }
                Ok(metrics::predictive(&scores, &scales))
            })
            .collect::<Result<_, EvalError>>()?;
        let targets: Vec<f64> = test.iter().map(|&r| target[r]).collect();
        let support = user_support(data, train, test);
        Ok(Some(metrics::predictive_intervals(
            &rows, &targets, &support,
        )))
    }

    /// [`Predictor::intervals`] of a Gibbs fit, from its kept draws.
    fn draw_intervals(
        &self,
        data: &Dataset,
        train: &[usize],
        test: &[usize],
    ) -> Result<IntervalMetrics, PredictError> {
        let Some(target) = self.session.binding.target_values(data) else {
            return Err(PredictError::Config(
                "predictive intervals need the model's real input bound to the data's target"
                    .into(),
            ));
        };
        let per_draw = self.draw_scores(data, test)?;
        let scales: Vec<f64> = self
            .draws
            .iter()
            .map(|d| 1.0 / d.noise_precision.sqrt())
            .collect();
        let rows: Vec<Predictive> = (0..test.len())
            .map(|j| {
                let scores: Vec<f64> = per_draw.iter().map(|s| s[j]).collect();
                metrics::predictive(&scores, &scales)
            })
            .collect();
        let targets: Vec<f64> = test.iter().map(|&r| target[r]).collect();
        let support = user_support(data, train, test);
        Ok(metrics::predictive_intervals(&rows, &targets, &support))
    }

    /// The mean loss on `rows`, negatives drawn with `seed`, noise off.
    pub fn mean_loss(&self, data: &Dataset, rows: &[usize], seed: u64) -> Result<f64, EvalError> {
        let b = &self.session.binding;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ex = Example { slots: Vec::new() };
        let mut total = 0.0;
        for &r in rows {
            b.example(data, &b.row(data, r), &mut rng, false, &mut ex);
            total += evaluate(&self.session.forward, &self.params, &ex)?.loss;
        }
        Ok(total / rows.len().max(1) as f64)
    }

    /// The validation figure named by [`monitor_name`].
    pub fn monitor(&self, data: &Dataset, rows: &[usize], seed: u64) -> Result<f64, PredictError> {
        match self.session.task {
            Task::Rating => Ok(self.rating(data, rows)?.rmse),
            Task::Loss => Ok(self.mean_loss(data, rows, seed)?),
            Task::Ranking => Ok(self.sampled_auc(data, rows, seed)?),
        }
    }

    /// AUC estimated from pairs: each held-out (user, item) against one
    /// item the user has not touched.
    pub fn sampled_auc(&self, data: &Dataset, rows: &[usize], seed: u64) -> Result<f64, EvalError> {
        let (Some((_, users)), Some((item_domain, items))) = (data.users(), data.items()) else {
            return Ok(f64::NAN);
        };
        let n_items = data.domain_size(item_domain);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sample = rows.to_vec();
        sample.shuffle(&mut rng);
        sample.truncate(MONITOR_ROWS);
        let positives = &self.session.binding.positives;
        let mut total = 0.0;
        for &r in &sample {
            let (u, i) = (users[r], items[r]);
            let seen = positives.get(u as usize).map_or(&[][..], Vec::as_slice);
            let mut j = rng.random_range(0..n_items as u32);
            for _ in 0..64 {
                if j != i && seen.binary_search(&j).is_err() {
                    break;
                }
                j = rng.random_range(0..n_items as u32);
            }
            let pos = self.score_pair(data, Some(u), Some(i))?;
            let neg = self.score_pair(data, Some(u), Some(j))?;
            total += if pos > neg {
                1.0
            } else if pos == neg {
                0.5
            } else {
                0.0
            };
        }
        Ok(total / sample.len().max(1) as f64)
    }

    /// Scores of every item for `user` (`None`: an unknown user).
    pub fn user_scores(&self, data: &Dataset, user: Option<u32>) -> Result<Vec<f64>, EvalError> {
        if self.draws.is_empty() {
            return self.user_scores_with(&self.params, self.native.as_ref(), data, user);
        }
        let per_draw = self
            .draws
            .iter()
            .map(|d| self.user_scores_with(&d.params, d.native.as_ref(), data, user))
            .collect::<Result<Vec<_>, _>>()?;
        let n = per_draw.first().map_or(0, Vec::len);
        Ok(mean_over_draws(&per_draw, n))
    }

    /// [`Predictor::user_scores`] under `params` (scored by `native` when
    /// given, which holds the same values).
    fn user_scores_with(
        &self,
        params: &Params,
        native: Option<&NativeScorer>,
        data: &Dataset,
        user: Option<u32>,
    ) -> Result<Vec<f64>, EvalError> {
        let n_items = data.items().map_or(0, |(d, _)| data.domain_size(d));
        if let Some(native) = native {
            let b = &self.session.binding;
            let items: Vec<u32> = (0..n_items as u32).collect();
            return self
                .native_scores(native, &items, |block, rng, columns| {
                    for &i in block {
                        b.encode(data, &b.pair(user, Some(i)), rng, false, columns);
                    }
                })
                .map_err(|e| EvalError::Internal(e.to_string()));
        }
        let b = &self.session.binding;
        let mut ex = Example { slots: Vec::new() };
        let mut rng = StdRng::seed_from_u64(0);
        let mut scores = Vec::with_capacity(n_items);
        // Only the item's side of the graph changes from one item to the next.
        let mut scorer = Incremental::new(&self.session.forward, &b.item_slots());
        for i in 0..n_items as u32 {
            b.example(data, &b.pair(user, Some(i)), &mut rng, false, &mut ex);
            scores.push(scorer.score(params, &ex)?);
        }
        Ok(scores)
    }

    /// The `k` best items for `user`, leaving out the items of `exclude`
    /// (sorted).
    pub fn recommend(
        &self,
        data: &Dataset,
        user: Option<u32>,
        k: usize,
        exclude: &[u32],
    ) -> Result<Vec<(u32, f64)>, EvalError> {
        let scores = self
            .catalogue(data)?
            .scores(&[user])?
            .pop()
            .unwrap_or_default();
        Ok(crate::rank::top_k(&scores, exclude, k))
    }

    /// Ranking metrics over the full catalogue: for each user with test
    /// rows, every item not in their training rows is ranked.
    pub fn ranking(
        &self,
        data: &Dataset,
        train: &[usize],
        test: &[usize],
        k: usize,
    ) -> Result<RankingMetrics, PredictError> {
        self.ranking_observed(data, train, test, k, &Unobserved)
    }

    /// [`Predictor::ranking`], telling `progress` of each user ranked.
    pub fn ranking_observed(
        &self,
        data: &Dataset,
        train: &[usize],
        test: &[usize],
        k: usize,
        progress: &dyn StepObserver,
    ) -> Result<RankingMetrics, PredictError> {
        let positives = &self.session.binding.positives;
        let catalogue = self.catalogue(data)?;
        rank_catalogue(
            data,
            train,
            test,
            k,
            |u| positives.get(u as usize).map_or(&[][..], Vec::as_slice),
            |users| {
                let users: Vec<Option<u32>> = users.iter().map(|&u| Some(u)).collect();
                catalogue.scores(&users)
            },
            progress,
        )
    }
}

/// Scores every item of a catalogue for many users ([`Predictor::catalogue`]):
/// as a matrix product when the score splits, else pair by pair.
pub struct CatalogueScorer<'p, 'a> {
    predictor: &'p Predictor<'a>,
    data: &'p Dataset,
    /// The split, and the catalogue's item part under each parameter set
    /// scored (the parameters, or each kept draw's).
    blocked: Option<(&'p Factored, Vec<ItemPart>)>,
}

impl CatalogueScorer<'_, '_> {
    /// Whether scores come from the split (a matrix product).
    pub fn is_blocked(&self) -> bool {
        self.blocked.is_some()
    }

    /// The score of every item for each of `users` (`None`: an unknown
    /// user), one row each.
    pub fn scores(&self, users: &[Option<u32>]) -> Result<Vec<Vec<f64>>, EvalError> {
        let p = self.predictor;
        let Some((factored, parts)) = &self.blocked else {
            return users.iter().map(|&u| p.user_scores(self.data, u)).collect();
        };
        let (g, b) = (&p.session.forward, &p.session.binding);
        if p.draws.is_empty() {
            return factored.scores(g, b, self.data, &p.params, &parts[0], users);
        }
        let per_draw = p
            .draws
            .iter()
            .zip(parts)
            .map(|(d, part)| factored.scores(g, b, self.data, &d.params, part, users))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((0..users.len())
            .map(|a| {
                let rows: Vec<&[f64]> = per_draw.iter().map(|d| d[a].as_slice()).collect();
                let n = rows.first().map_or(0, |r| r.len());
                mean_over_draws(&rows, n)
            })
            .collect())
    }
}

/// Ranks the whole catalogue for each user with test rows, by `scores(user)`,
/// leaving out `exclude(user)`, and summarises: the one definition of the
/// ranking metrics that models and baselines share. `progress` is told of
/// each user ranked.
pub fn rank_catalogue<'a>(
    data: &Dataset,
    train: &[usize],
    test: &[usize],
    k: usize,
    exclude: impl Fn(u32) -> &'a [u32] + Sync,
    scores: impl Fn(&[u32]) -> Result<Vec<Vec<f64>>, EvalError> + Sync,
    progress: &dyn StepObserver,
) -> Result<RankingMetrics, PredictError> {
    let (Some((user_domain, users)), Some((item_domain, items))) = (data.users(), data.items())
    else {
        return Err(PredictError::Config(
            "ranking metrics need user and item columns in the data".into(),
        ));
    };
    let n_users = data.domain_size(user_domain);
    let n_items = data.domain_size(item_domain);
    let mut relevant: Vec<Vec<u32>> = vec![Vec::new(); n_users];
    for &r in test {
        relevant[users[r] as usize].push(items[r]);
    }
    let evaluated: Vec<u32> = (0..n_users as u32)
        .filter(|&u| !relevant[u as usize].is_empty())
        .collect();
    progress.begin("ranking", "users", evaluated.len());
    // Users in blocks, so that a split score shares each tile of the
    // catalogue among a block's users.
    let per_block = evaluated
        .par_chunks(crate::rank::USER_BLOCK)
        .map(|block| {
            let rows = scores(block)?;
            let ranked: Vec<UserMetrics> = block
                .iter()
                .zip(&rows)
                .map(|(&u, scores)| {
                    metrics::rank_user(
                        &UserRanking {
                            scores,
                            exclude: exclude(u),
                            relevant: &relevant[u as usize],
                        },
                        k,
                    )
                })
                .collect();
            progress.advance(block.len());
            Ok(ranked)
        })
        .collect::<Result<Vec<Vec<UserMetrics>>, EvalError>>();
    progress.end();
    let per_user: Vec<UserMetrics> = per_block?.into_iter().flatten().collect();
    let item_users = item_users(data, train);
    let popularity: Vec<usize> = item_users.iter().map(Vec::len).collect();
    let train_users = {
        let mut seen = vec![false; n_users];
        for &r in train {
            seen[users[r] as usize] = true;
        }
        seen.iter().filter(|s| **s).count()
    };
    Ok(metrics::summarise(
        &per_user,
        k,
        n_items,
        &Catalogue {
            item_popularity: &popularity,
            n_users: train_users,
            item_users: &item_users,
        },
    ))
}

/// For each item, its distinct training users in increasing order.
pub fn item_users(data: &Dataset, train: &[usize]) -> Vec<Vec<u32>> {
    let (Some((_, users)), Some((item_domain, items))) = (data.users(), data.items()) else {
        return Vec::new();
    };
    let mut item_users: Vec<Vec<u32>> = vec![Vec::new(); data.domain_size(item_domain)];
    for &r in train {
        item_users[items[r] as usize].push(users[r]);
    }
    for u in &mut item_users {
        u.sort_unstable();
        u.dedup();
    }
    item_users
}

/// The popularity baseline: every user gets the items with the most distinct
/// training users, measured by [`rank_catalogue`] exactly as a model is.
pub fn popularity_ranking(
    data: &Dataset,
    train: &[usize],
    test: &[usize],
    k: usize,
    progress: &dyn StepObserver,
) -> Result<RankingMetrics, PredictError> {
    let scores: Vec<f64> = item_users(data, train)
        .iter()
        .map(|u| u.len() as f64)
        .collect();
    let mut seen: Vec<Vec<u32>> = Vec::new();
    if let (Some((user_domain, users)), Some((_, items))) = (data.users(), data.items()) {
        seen = vec![Vec::new(); data.domain_size(user_domain)];
        for &r in train {
            seen[users[r] as usize].push(items[r]);
        }
        for s in &mut seen {
            s.sort_unstable();
            s.dedup();
        }
    }
    rank_catalogue(
        data,
        train,
        test,
        k,
        |u| seen.get(u as usize).map_or(&[][..], Vec::as_slice),
        |users| Ok(vec![scores.clone(); users.len()]),
        progress,
    )
}

/// The table that embeds members of `domain` best: the widest plain (or
/// mean) table over it.
pub fn embedding_table(g: &Graph, domain: &str) -> Option<usize> {
    g.tables
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            t.domain
                .is_some_and(|d| g.domains[d.index()].name == domain)
                && t.role != TableRole::LogVar
                && t.shape.len() > 1
        })
        .max_by_key(|(k, t)| (t.shape.len(), std::cmp::Reverse(*k)))
        .map(|(k, _)| k)
}

/// The `k` rows nearest to `row` in `table`: by cosine similarity, or for a
/// table on the Poincaré ball by (negated) hyperbolic distance.
pub fn similar(g: &Graph, params: &Params, table: usize, row: usize, k: usize) -> Vec<(u32, f64)> {
    let values = &params.tables[table];
    let rows = values.nrows();
    if row >= rows {
        return Vec::new();
    }
    let ball = g.tables[table].constraint == Constraint::Ball;
    let a = values.row(row);
    let norm = |v: ndarray::ArrayView1<f64>| v.dot(&v).sqrt();
    let na = norm(a);
    // One pass over the table (a matrix-vector product), then the best `k`
    // by a bounded heap rather than a sort of every row.
    let scores: Vec<f64> = (0..rows)
        .map(|r| {
            let b = values.row(r);
            if ball {
                let diff = &a - &b;
                let d2 = diff.dot(&diff);
                let (a2, b2) = (a.dot(&a), b.dot(&b));
                let x = 1.0 + 2.0 * d2 / ((1.0 - a2).max(1e-12) * (1.0 - b2).max(1e-12));
                -(x + (x * x - 1.0).max(0.0).sqrt()).ln()
            } else {
                let nb = norm(b);
                if na == 0.0 || nb == 0.0 {
                    0.0
                } else {
                    a.dot(&b) / (na * nb)
                }
            }
        })
        .collect();
    crate::rank::top_k(&scores, &[row as u32], k)
}

/// Each test row's support: its user's number of rows in `train` (NaN
/// without users).
fn user_support(data: &Dataset, train: &[usize], test: &[usize]) -> Vec<f64> {
    match data.users() {
        Some((domain, users)) => {
            let mut count = vec![0usize; data.domain_size(domain)];
            for &r in train {
                count[users[r] as usize] += 1;
            }
            test.iter()
                .map(|&r| count[users[r] as usize] as f64)
                .collect()
        }
        None => vec![f64::NAN; test.len()],
    }
}

/// The score of `ex` under `params`.
fn score_with(g: &Graph, params: &Params, ex: &Example) -> Result<f64, EvalError> {
    evaluate(g, params, ex)?
        .score
        .ok_or_else(|| EvalError::Internal("the model has no score".into()))
}

/// The mean over draws of each of `n` scores, summed draw after draw so
/// that threads do not change it.
fn mean_over_draws<S: AsRef<[f64]>>(per_draw: &[S], n: usize) -> Vec<f64> {
    let mut sum = vec![0.0; n];
    for scores in per_draw {
        for (s, v) in sum.iter_mut().zip(scores.as_ref()) {
            *s += v;
        }
    }
    let count = per_draw.len().max(1) as f64;
    sum.into_iter().map(|s| s / count).collect()
}

/// `values` with one more row, the mean of its rows, when `per_domain`
/// (as [`add_cold_rows`] grows a table).
fn with_cold_row(per_domain: bool, values: &Array2<f64>) -> Array2<f64> {
    if per_domain {
        grow_cold_row(values.clone())
    } else {
        values.clone()
    }
}

/// A per-domain table with one more row, the mean of its rows: the row a
/// member training never saw is scored with.
fn grow_cold_row(values: Array2<f64>) -> Array2<f64> {
    let (rows, lanes) = values.dim();
    let mean = values
        .mean_axis(Axis(0))
        .unwrap_or_else(|| ndarray::Array1::zeros(lanes));
    let mut flat = into_row_major(values);
    flat.reserve_exact(lanes);
    flat.extend(mean.iter());
    table_from_rows(rows + 1, lanes, flat)
}

/// The order of a ranked list of `(index, score)`: highest score first, a
/// NaN score (a row no figure can rank) after every number, ties by index.
pub fn best_first(a: (u32, f64), b: (u32, f64)) -> std::cmp::Ordering {
    a.1.is_nan()
        .cmp(&b.1.is_nan())
        .then_with(|| {
            if a.1.is_nan() {
                std::cmp::Ordering::Equal
            } else {
                b.1.total_cmp(&a.1)
            }
        })
        .then(a.0.cmp(&b.0))
}

/// Rows a positive-only ranking model trains and is tested on: those whose
/// target is at least `min` (all rows when the data has no target).
pub fn positive_rows(data: &Dataset, rows: &[usize], min: Option<f64>) -> Vec<usize> {
    let (Some(min), Some(ColumnData::Real(target))) = (
        min,
        data.target
            .as_deref()
            .and_then(|t| data.column(t))
            .map(|c| &c.data),
    ) else {
        return rows.to_vec();
    };
    rows.iter().copied().filter(|&r| target[r] >= min).collect()
}
