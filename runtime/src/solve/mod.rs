//! The closed-form solvers: alternating least squares and Gibbs sampling
//! over a model's affine blocks.
//!
//! Input: a [`Session`] whose model asks for `solver: als` or `gibbs`, the
//! training rows and a [`TrainConfig`]. Output: [`Trained`] parameters, as
//! the SGD trainer gives, so model files, evaluation and recommendations do
//! not care which solver ran.
//!
//! A sweep visits each block table in declaration order. For one table it
//! builds every row's normal equations from the compiler's term graphs
//! ([`recc_compiler::solve`]) evaluated on the row's examples, with every
//! other value held fixed, and solves (ALS) or samples (Gibbs) the row. The
//! graphs run as [`stats::Program`]s, which give the reference evaluator's
//! numbers at a fraction of its cost. Rows
//! of one table that share an example (a factorization machine's features,
//! SVD++'s history) depend on each other, so a table's rows are coloured
//! such that no two rows of one colour meet in an example: the rows of one
//! colour are solved together, in parallel, and each colour sees the
//! colours before it (Gauss–Seidel across colours, exact within one). A
//! table read once per example (users, items) is one colour.

pub mod implicit;
pub mod linalg;
pub mod stats;

use crate::data::Dataset;
use crate::init::{check_memory, initialise, Holder};
use crate::modelfile::EpochRecord;
use crate::predict::{self, Predictor};
use crate::session::Session;
use crate::train::{EpochTracker, Interruption, Observer, TrainConfig, TrainError, Trained};
use linalg::RowSystem;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Gamma, Normal, StandardNormal};
use rayon::prelude::*;
use recc_compiler::interp::{evaluate_node, Example, Params};
use recc_compiler::ir::{NodeId, Ty};
use recc_compiler::model::{Optimizer, Solver};
use recc_compiler::solve::{BlockPlan, SolvePlan, TermKind};
use stats::{Program, Scratch};
use std::time::Instant;

/// Above this many numbers per row, a row is updated by a few
/// conjugate-gradient steps from its last value instead of a factorization
/// (ALS only: a Gibbs draw needs the factor).
const CG_WIDTH: usize = 128;
const CG_STEPS: usize = 3;

/// The hyperpriors of Gibbs sampling, as Bayesian PMF and libFM set them:
/// Gamma(α₀/2, β₀/2) on precisions, N(μ₀, 1/(γ₀λ)) on a table's mean.
const ALPHA0: f64 = 1.0;
const BETA0: f64 = 1.0;
const GAMMA0: f64 = 1.0;
const MU0: f64 = 0.0;
/// The prior precision of a global (one row: no table to pool over).
const GLOBAL_PRECISION: f64 = 1e-4;

/// Draws of a Gibbs chain kept for prediction, evenly spaced over the kept
/// sweeps. Averaging S draws instead of every sweep adds a score's
/// posterior variance over S to the squared error, and the file holds S
/// copies (f32) of the tables the score reads. On ML-100k u1, biased MF
/// with 64 factors (a score's posterior sd about 0.6), the mean of 150,
/// 75 and 38 of 150 draws scored test RMSE 0.9078, 0.9092 and 0.9123: 64
/// keeps the loss near 0.002 at about 44 MB of draws, where 32 would lose
/// 0.005 to save 22 MB.
pub const KEPT_DRAWS: usize = 64;

/// One block table's examples, by row, and its rows by colour.
struct BlockIndex {
    /// For each row of the table, the training examples that read it.
    examples: Vec<Vec<u32>>,
    /// Rows that share no example, solved together.
    colours: Vec<Vec<u32>>,
}

/// A table's rows' prior in a Gibbs sweep: per group of rows, a mean and a
/// precision per lane.
#[derive(Clone, Debug)]
struct Hyper {
    mean: Vec<Vec<f64>>,
    precision: Vec<Vec<f64>>,
    /// Each row's group; empty when the table is one group.
    group_of: Vec<u32>,
}

impl Hyper {
    fn group(&self, row: u32) -> usize {
        self.group_of.get(row as usize).map_or(0, |&g| g as usize)
    }
}

enum Mode<'a> {
    Als,
    Gibbs {
        /// The noise precision.
        alpha: f64,
        /// The likelihood's mean weight: a term's weight over it is its
        /// share of one observation.
        weight: f64,
        hyper: &'a Hyper,
        sweep: usize,
        seed: u64,
    },
}

/// Train `session` by its closed-form solver.
pub fn solve(
    session: &Session,
    data: &Dataset,
    rows: &[usize],
    validation: &[usize],
    config: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<Trained, TrainError> {
    let plan = recc_compiler::solve_plan(&session.model, &session.forward)
        .map_err(|e| TrainError::Config(format!("`solver: {}`: {e}", config.solver.name())))?;
    if plan.blocks.is_empty() {
        return Err(TrainError::Config(format!(
            "`solver: {}` found no table to solve",
            config.solver.name()
        )));
    }
    observer.solving();
    let g = &session.gradient;
    let sizes = session.binding.domain_sizes();
    check_memory(g, &sizes, Optimizer::Sgd, Holder::Evaluator)?;
    let params = initialise(g, &sizes, config.seed)?;

    // The examples once: the solvers read them many times, and a model a
    // solver can fit draws no negatives or noise, so they never change.
    let mut rng = StdRng::seed_from_u64(config.seed);
    let examples: Vec<Example> = rows
        .iter()
        .map(|&r| {
            let mut ex = Example { slots: Vec::new() };
            let row = session.binding.row(data, r);
            session.binding.example(data, &row, &mut rng, true, &mut ex);
            ex
        })
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads.max(1))
        .build()
        .map_err(|e| TrainError::Config(format!("could not start the solver's threads: {e}")))?;
    let programs: Vec<Vec<Program>> = plan
        .blocks
        .iter()
        .map(|b| {
            b.terms
                .iter()
                .map(|term| Program::new(&term.graph, Some(b.table), true).freezing(b.table))
                .collect()
        })
        .collect();
    let mut indices: Vec<BlockIndex> = pool.install(|| {
        plan.blocks
            .iter()
            .zip(&programs)
            .map(|(b, programs)| index_block(b, programs, &params, &examples))
            .collect::<Result<_, TrainError>>()
    })?;
    // A sum over unobserved pairs gives every row of its tables an
    // objective, examples or not; rows without examples share none, so any
    // colour takes them.
    for (block, index) in plan.blocks.iter().zip(indices.iter_mut()) {
        if plan.pairs.iter().any(|p| p.table == block.table) {
            let lonely: Vec<u32> = (0..index.examples.len() as u32)
                .filter(|&r| index.examples[r as usize].is_empty())
                .collect();
            if index.colours.is_empty() {
                index.colours.push(Vec::new());
            }
            index.colours[0].extend(lonely);
            index.colours[0].sort_unstable();
        }
    }
    let mut touched: Vec<Vec<bool>> = params
        .tables
        .iter()
        .map(|t| vec![false; t.nrows()])
        .collect();
    for (block, index) in plan.blocks.iter().zip(&indices) {
        let paired = plan.pairs.iter().any(|p| p.table == block.table);
        for (row, ex) in index.examples.iter().enumerate() {
            touched[block.table.index()][row] = paired || !ex.is_empty();
        }
    }
    let ctx = Context {
        session,
        plan: &plan,
        examples: &examples,
        indices: &indices,
        programs: &programs,
        pool: &pool,
        pair: None,
    };
    match config.solver {
        Solver::Sgd => Err(TrainError::Config(
            "the closed-form solver was asked to run SGD".into(),
        )),
        Solver::Als { sweeps } => als(
            &ctx, data, validation, config, sweeps, params, touched, observer,
        ),
        Solver::Gibbs { samples, burn_in } => gibbs(
            &ctx, data, validation, config, samples, burn_in, params, touched, observer,
        ),
    }
}

#[derive(Clone, Copy)]
struct Context<'a> {
    session: &'a Session,
    plan: &'a SolvePlan,
    examples: &'a [Example],
    indices: &'a [BlockIndex],
    /// Each block's term graphs, prepared for its rows' statistics.
    programs: &'a [Vec<Program<'a>>],
    pool: &'a rayon::ThreadPool,
    /// While a block with a sum over unobserved pairs is solved: that sum's
    /// share of each of its rows' systems.
    pair: Option<&'a implicit::PairShare>,
}

#[allow(clippy::too_many_arguments)]
fn als(
    ctx: &Context,
    data: &Dataset,
    validation: &[usize],
    config: &TrainConfig,
    sweeps: usize,
    mut params: Params,
    touched: Vec<Vec<bool>>,
    observer: &mut dyn Observer,
) -> Result<Trained, TrainError> {
    let session = ctx.session;
    // The tracker counts sweeps where SGD counts epochs.
    let config = TrainConfig {
        epochs: sweeps,
        ..config.clone()
    };
    let mut tracker = EpochTracker::new(session, data, validation, &config);
    tracker.start(&|| (params.clone(), touched.clone()));
    let total_rows: usize = ctx.indices.iter().map(|i| i.examples.len()).sum();
    let mut interrupted = None;
    for sweep in 0..sweeps {
        let started = Instant::now();
        let mut done = 0;
        // The sum over unobserved pairs at the sweep's end: the last block's
        // share of it, at the rows just solved.
        let mut pairs_total = 0.0;
        for ((block, index), programs) in ctx.plan.blocks.iter().zip(ctx.indices).zip(ctx.programs)
        {
            let share = match ctx.plan.pairs.iter().find(|p| p.table == block.table) {
                Some(p) => Some(pair_share(ctx, p, block, &params)?),
                None => None,
            };
            let block_ctx = Context {
                pair: share.as_ref(),
                ..*ctx
            };
            sweep_block(&block_ctx, block, index, programs, &mut params, &Mode::Als)?;
            if let Some(share) = &share {
                let t = &params.tables[block.table.index()];
                pairs_total = (0..t.nrows())
                    .map(|r| share.value(t.row(r).as_slice().unwrap_or(&[])))
                    .sum();
            }
            done += index.examples.len();
            observer.progress(sweep + 1, done, total_rows, f64::NAN);
            if observer.stop_requested() && done < total_rows {
                interrupted = Some(Interruption {
                    epoch: sweep + 1,
                    examples: done,
                    total: total_rows,
                    kept_epoch: None,
                });
                break;
            }
        }
        if interrupted.is_some() {
            break;
        }
        let loss = mean_loss(ctx, &params)? + pairs_total / ctx.examples.len().max(1) as f64;
        observer.progress(sweep + 1, total_rows, total_rows, loss);
        let seconds = started.elapsed().as_secs_f64();
        let snapshot = || (params.clone(), touched.clone());
        if tracker.end_epoch(sweep, loss, seconds, &snapshot, observer)? {
            break;
        }
        if observer.stop_requested() && sweep + 1 < sweeps {
            interrupted = Some(Interruption {
                epoch: sweep + 2,
                examples: 0,
                total: total_rows,
                kept_epoch: None,
            });
            break;
        }
    }
    Ok(tracker.finish(params, &touched, interrupted))
}

#[allow(clippy::too_many_arguments)]
fn gibbs(
    ctx: &Context,
    data: &Dataset,
    validation: &[usize],
    config: &TrainConfig,
    samples: usize,
    burn_in: usize,
    mut params: Params,
    touched: Vec<Vec<bool>>,
    observer: &mut dyn Observer,
) -> Result<Trained, TrainError> {
    let session = ctx.session;
    let g = &session.gradient;
    let monitor = predict::monitor_name(session.task);
    let sweeps = burn_in + samples;
    let total_rows: usize = ctx.indices.iter().map(|i| i.examples.len()).sum();
    // The chain starts from the model's initial values with priors fitted
    // to them (tight: the initial rows are small), and a noise precision
    // from their residuals, so the first sweeps grow the rows only as far
    // as the data asks, instead of from an arbitrary unit prior.
    let mut hypers: Vec<Hyper> = ctx
        .plan
        .blocks
        .iter()
        .zip(ctx.indices)
        .map(|(b, index)| {
            if b.global {
                Hyper {
                    mean: vec![vec![0.0; b.width]],
                    precision: vec![vec![GLOBAL_PRECISION; b.width]],
                    group_of: Vec::new(),
                }
            } else {
                let groups = row_groups(ctx.session, b);
                sample_hyper(b, index, &params, config.seed, usize::MAX, groups)
            }
        })
        .collect();
    let (weight, residual) = likelihood(ctx, &params)?;
    let weight = if weight > 0.0 { weight } else { 1.0 };
    let n = ctx.examples.len() as f64;
    let mut alpha = (n / (residual / weight)).clamp(1e-6, 1e6);
    if !alpha.is_finite() {
        alpha = 1.0;
    }
    let mut history = Vec::new();
    let mut mean: Option<Params> = None;
    // The tables the score reads: the rest do not change a prediction.
    let sampled: Vec<usize> = recc_compiler::affine::analyse(&session.forward)
        .blocks()
        .map(|t| t.table.index())
        .collect();
    let mut draws: Vec<predict::Draw> = Vec::new();
    let mut kept = 0usize;
    let mut predicted_sum: Vec<f64> = vec![0.0; validation.len()];
    let mut interrupted = None;
    for sweep in 0..sweeps {
        let started = Instant::now();
        let mut done = 0;
        for (((block, index), programs), hyper) in ctx
            .plan
            .blocks
            .iter()
            .zip(ctx.indices)
            .zip(ctx.programs)
            .zip(&mut hypers)
        {
            let mode = Mode::Gibbs {
                alpha,
                weight,
                hyper,
                sweep,
                seed: config.seed,
            };
            sweep_block(ctx, block, index, programs, &mut params, &mode)?;
            if !block.global {
                let groups = std::mem::take(&mut hyper.group_of);
                *hyper = sample_hyper(block, index, &params, config.seed, sweep, groups);
            }
            done += index.examples.len();
            observer.progress(sweep + 1, done, total_rows, f64::NAN);
            if observer.stop_requested() && done < total_rows {
                interrupted = Some(Interruption {
                    epoch: sweep + 1,
                    examples: done,
                    total: total_rows,
                    kept_epoch: None,
                });
                break;
            }
        }
        if interrupted.is_some() {
            break;
        }
        let (w, residual) = likelihood(ctx, &params)?;
        let n = ctx.examples.len() as f64;
        let shape = (ALPHA0 + n) / 2.0;
        let rate = (BETA0 + residual / w.max(f64::MIN_POSITIVE)) / 2.0;
        let mut rng = row_rng(config.seed, sweep, u32::MAX, 0);
        alpha = Gamma::new(shape, 1.0 / rate)
            .map_err(|e| TrainError::Config(format!("the noise precision's draw failed: {e}")))?
            .sample(&mut rng);
        let kept_now = sweep >= burn_in;
        if kept_now {
            kept += 1;
            let m = mean.get_or_insert_with(|| {
                let mut z = params.clone();
                z.tables.iter_mut().for_each(|t| t.fill(0.0));
                z
            });
            for (a, b) in m.tables.iter_mut().zip(&params.tables) {
                *a += &((b - &*a) / kept as f64);
            }
            if keeps_draw(kept - 1, samples) {
                let finished = predict::finalise(g, params.clone(), &touched);
                draws.push(predict::Draw {
                    tables: sampled
                        .iter()
                        .map(|&k| {
                            // Rounded as the file keeps them, so that a
                            // reopened model predicts exactly as this run.
                            finished.tables[k].mapv(|v| f64::from(v as f32))
                        })
                        .collect(),
                    noise_precision: alpha,
                });
            }
        }
        // The running posterior mean of the predictions on the validation
        // rows (or, during burn-in, this sample's).
        let value = if validation.is_empty() {
            None
        } else {
            let sample = predict::finalise(g, params.clone(), &touched);
            let predictor = Predictor::owning(session, sample);
            let scores = predictor.scores(data, validation)?;
            let shown: Vec<f64> = if kept_now {
                for (s, p) in predicted_sum.iter_mut().zip(&scores) {
                    *s += p;
                }
                predicted_sum.iter().map(|s| s / kept as f64).collect()
            } else {
                scores
            };
            Some(predictor.rmse_of(data, validation, &shown)?)
        };
        let record = EpochRecord {
            epoch: sweep + 1,
            loss: residual / n,
            validation: value,
            seconds: started.elapsed().as_secs_f64(),
        };
        observer.epoch(&record, monitor, sweeps);
        history.push(record);
        if observer.stop_requested() && sweep + 1 < sweeps {
            interrupted = Some(Interruption {
                epoch: sweep + 2,
                examples: 0,
                total: total_rows,
                kept_epoch: None,
            });
            break;
        }
    }
    // The posterior mean of the parameters; before any sample is kept, the
    // last draw.
    let params = mean.unwrap_or(params);
    let samples = (!draws.is_empty()).then_some(predict::Samples {
        tables: sampled,
        draws,
    });
    Ok(Trained {
        params: predict::finalise(g, params, &touched),
        samples,
        history,
        best_epoch: None,
        monitor: monitor.to_string(),
        interrupted,
    })
}

/// Whether the `kept`-th kept sweep (from 0) of `samples` is one of the
/// [`KEPT_DRAWS`] evenly spaced draws kept for prediction: the last of each
/// of that many equal runs of sweeps, so the final sweep is always kept.
fn keeps_draw(kept: usize, samples: usize) -> bool {
    samples <= KEPT_DRAWS || (kept + 1) * KEPT_DRAWS / samples > kept * KEPT_DRAWS / samples
}

/// Which rows of `block` each example reads, inverted, and the colouring.
fn index_block(
    block: &BlockPlan,
    programs: &[Program],
    params: &Params,
    examples: &[Example],
) -> Result<BlockIndex, TrainError> {
    let nrows = params.tables[block.table.index()].nrows();
    let rows_of: Vec<Vec<u32>> = examples
        .par_iter()
        .map_init(
            || {
                (
                    programs.iter().map(Program::scratch).collect::<Vec<_>>(),
                    Vec::new(),
                )
            },
            |(scratches, read), ex| {
                let mut rows: Vec<u32> = Vec::new();
                for ((term, program), scratch) in block.terms.iter().zip(programs).zip(scratches) {
                    // The statistics programs take examples as checked: this
                    // is where they are, against each term's graph (the
                    // evaluator checks all slots, then runs up to the first
                    // number).
                    let first = term
                        .graph
                        .nodes
                        .iter()
                        .position(|n| matches!(n.ty, Ty::Value { .. }))
                        .map_or(term.graph.loss, |i| NodeId(i as u32));
                    evaluate_node(&term.graph, params, ex, first)?;
                    read.clear();
                    program.rows(params, ex, scratch, read)?;
                    for &r in read.iter() {
                        if r < nrows && !rows.contains(&(r as u32)) {
                            rows.push(r as u32);
                        }
                    }
                }
                Ok(rows)
            },
        )
        .collect::<Result<_, TrainError>>()?;
    let mut examples_of: Vec<Vec<u32>> = vec![Vec::new(); nrows];
    for (e, rows) in rows_of.iter().enumerate() {
        for &r in rows {
            examples_of[r as usize].push(e as u32);
        }
    }
    // Greedy colouring, rows in order: the first colour none of the rows
    // sharing an example with this one has.
    let mut colour: Vec<Option<u32>> = vec![None; nrows];
    let mut colours: Vec<Vec<u32>> = Vec::new();
    let mut taken: Vec<bool> = Vec::new();
    for row in 0..nrows {
        if examples_of[row].is_empty() {
            continue;
        }
        taken.iter_mut().for_each(|t| *t = false);
        for &e in &examples_of[row] {
            for &other in &rows_of[e as usize] {
                if let Some(c) = colour[other as usize] {
                    taken[c as usize] = true;
                }
            }
        }
        let c = match taken.iter().position(|t| !t) {
            Some(c) => c,
            None => {
                taken.push(false);
                colours.push(Vec::new());
                colours.len() - 1
            }
        };
        colour[row] = Some(c as u32);
        colours[c].push(row as u32);
    }
    Ok(BlockIndex {
        examples: examples_of,
        colours,
    })
}

/// Solve or draw every row of one block, colour by colour.
fn sweep_block(
    ctx: &Context,
    block: &BlockPlan,
    index: &BlockIndex,
    programs: &[Program],
    params: &mut Params,
    mode: &Mode,
) -> Result<(), TrainError> {
    let t = block.table.index();
    let frozen = frozen_values(ctx, index, programs, params)?;
    for colour in &index.colours {
        let frozen_values = &frozen;
        let frozen: &Params = params;
        let solved: Vec<(u32, Vec<f64>)> = ctx.pool.install(|| {
            colour
                .par_iter()
                .map(|&row| {
                    let x = solve_row(
                        ctx,
                        block,
                        index,
                        programs,
                        frozen_values,
                        frozen,
                        row,
                        mode,
                    )?;
                    Ok((row, x))
                })
                .collect::<Result<_, TrainError>>()
        })?;
        for (row, x) in solved {
            for (lane, v) in x.into_iter().enumerate() {
                params.tables[t][[row as usize, lane]] = v;
            }
        }
    }
    Ok(())
}

/// Memory the frozen values of one block's sweep may take.
const FROZEN_BYTES: usize = 1 << 28;

/// Each term's values that stay fixed through the sweep of `index`'s table,
/// per example, when examples are read by several of its rows on average
/// (otherwise computing them as the rows are solved costs no more).
fn frozen_values(
    ctx: &Context,
    index: &BlockIndex,
    programs: &[Program],
    params: &Params,
) -> Result<Vec<Option<Vec<f64>>>, TrainError> {
    let visits: usize = index.examples.iter().map(Vec::len).sum();
    let shared = 2 * visits > 3 * ctx.examples.len();
    programs
        .iter()
        .map(|program| {
            let lanes = program.frozen_lanes();
            let bytes = lanes * ctx.examples.len() * std::mem::size_of::<f64>();
            if !shared || lanes == 0 || bytes > FROZEN_BYTES {
                return Ok(None);
            }
            let mut values = vec![0.0; lanes * ctx.examples.len()];
            ctx.pool.install(|| {
                values
                    .par_chunks_mut(lanes)
                    .zip(ctx.examples)
                    .try_for_each_init(
                        || program.scratch(),
                        |scratch, (out, ex)| program.fill(params, ex, scratch, out),
                    )
            })?;
            Ok(Some(values))
        })
        .collect()
}

/// One row's new value: its normal equations from its examples.
#[allow(clippy::too_many_arguments)]
fn solve_row(
    ctx: &Context,
    block: &BlockPlan,
    index: &BlockIndex,
    programs: &[Program],
    frozen: &[Option<Vec<f64>>],
    params: &Params,
    row: u32,
    mode: &Mode,
) -> Result<Vec<f64>, TrainError> {
    let k = block.width;
    let current: Vec<f64> = params.tables[block.table.index()]
        .row(row as usize)
        .to_vec();
    let mut system = RowSystem::zeros(k);
    let mut scratches: Vec<Scratch> = programs.iter().map(Program::scratch).collect();
    let mut grad = vec![0.0; k];
    for &e in &index.examples[row as usize] {
        let ex = &ctx.examples[e as usize];
        for (((term, program), scratch), frozen) in block
            .terms
            .iter()
            .zip(programs)
            .zip(&mut scratches)
            .zip(frozen)
        {
            let gibbs_scale = match mode {
                Mode::Als => 1.0,
                // Gibbs replaces the model's penalties by its hierarchical
                // prior, and weighs the likelihood by the noise precision.
                Mode::Gibbs { alpha, weight, .. } => {
                    if !term.likelihood {
                        continue;
                    }
                    alpha / weight
                }
            };
            grad.fill(0.0);
            let lanes = program.frozen_lanes();
            let frozen = frozen
                .as_ref()
                .map(|v| &v[e as usize * lanes..(e as usize + 1) * lanes]);
            let stats = program.run(params, ex, row as usize, scratch, &mut grad, frozen)?;
            if !stats.touched {
                continue;
            }
            let grad = &grad;
            let c = stats.score.unwrap_or(1.0) * gibbs_scale;
            match term.kind {
                TermKind::Scalar => {
                    let bx: f64 = grad.iter().zip(&current).map(|(b, x)| b * x).sum();
                    system.add_term(c, grad, bx - stats.loss);
                }
                TermKind::Ridge => {
                    for (lane, gl) in grad.iter().enumerate() {
                        system.a[lane * k + lane] += c * gl * gl;
                    }
                }
            }
        }
    }
    if let Some(share) = ctx.pair {
        for (a, s) in system.a.iter_mut().zip(&share.system.a) {
            *a += s;
        }
        for (z, s) in system.z.iter_mut().zip(&share.system.z) {
            *z += s;
        }
        // A row without examples has no prior (a `once` prior counts per
        // example), only the sum over unobserved pairs, which is flat along
        // any direction no member of the other side spans. A vanishing ridge
        // picks the smallest of its minimisers instead of failing.
        if index.examples[row as usize].is_empty() {
            let scale = (0..k).map(|l| system.a[l * k + l]).fold(0.0, f64::max);
            system.add_ridge(scale.max(1.0) * 1e-10, None);
        }
    }
    let mut x = current.clone();
    let outcome = match mode {
        Mode::Als if k > CG_WIDTH => {
            linalg::conjugate_gradient(&system, &mut x, CG_STEPS);
            Ok(())
        }
        Mode::Als => system.solve(&mut x),
        Mode::Gibbs {
            hyper, sweep, seed, ..
        } => {
            let g = hyper.group(row);
            for lane in 0..k {
                system.a[lane * k + lane] += hyper.precision[g][lane];
                system.z[lane] += hyper.precision[g][lane] * hyper.mean[g][lane];
            }
            let mut rng = row_rng(*seed, *sweep, block.table.0, row);
            let noise: Vec<f64> = (0..k).map(|_| StandardNormal.sample(&mut rng)).collect();
            system.sample(&noise, &mut x)
        }
    };
    outcome.map_err(|e| {
        TrainError::Config(format!(
            "`{}` row {row}: {e}; give the table a penalty or a prior so that every row has one",
            block.name
        ))
    })?;
    Ok(x)
}

/// The share of `pair`'s sum over every pair in each row of `block`.
fn pair_share(
    ctx: &Context,
    pair: &recc_compiler::solve::PairBlock,
    block: &BlockPlan,
    params: &Params,
) -> Result<implicit::PairShare, TrainError> {
    let size = pair
        .terms
        .first()
        .and_then(|t| match t.graph.slots[pair.running.index()].kind {
            recc_compiler::ir::SlotKind::Index(d) => params.domain_sizes.get(d.index()).copied(),
            _ => None,
        })
        .unwrap_or(0);
    implicit::pair_share(pair, params, block.width, size, ctx.pool)
}

/// A generator for one row's draw: the same for a seed, sweep, table and
/// row whichever thread draws it.
fn row_rng(seed: u64, sweep: usize, table: u32, row: u32) -> StdRng {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for v in [sweep as u64, table as u64, row as u64] {
        h = (h ^ v).wrapping_mul(0x1000_0000_01b3).rotate_left(29);
    }
    StdRng::seed_from_u64(h)
}

/// A table's mean and precision per lane given its rows (Normal–Gamma).
fn sample_hyper(
    block: &BlockPlan,
    index: &BlockIndex,
    params: &Params,
    seed: u64,
    sweep: usize,
    group_of: Vec<u32>,
) -> Hyper {
    let values = &params.tables[block.table.index()];
    let groups = group_of.iter().max().map_or(1, |&g| g as usize + 1);
    let mut hyper = Hyper {
        mean: vec![vec![0.0; block.width]; groups],
        precision: vec![vec![1.0; block.width]; groups],
        group_of,
    };
    for g in 0..groups {
        let rows: Vec<usize> = (0..index.examples.len())
            .filter(|&r| !index.examples[r].is_empty() && hyper.group(r as u32) == g)
            .collect();
        let mut rng = row_rng(seed, sweep, block.table.0, u32::MAX - g as u32);
        let mut lane_values = vec![0.0; rows.len()];
        for lane in 0..block.width {
            for (v, &r) in lane_values.iter_mut().zip(&rows) {
                *v = values[[r, lane]];
            }
            let (mu, lambda) = draw_normal_gamma(&lane_values, &mut rng);
            hyper.mean[g][lane] = mu;
            hyper.precision[g][lane] = lambda;
        }
    }
    hyper
}

/// The groups of a table's rows that get their own prior: a factorization
/// machine's features by the column they come from; otherwise one group.
fn row_groups(session: &Session, block: &BlockPlan) -> Vec<u32> {
    session.gradient.tables[block.table.index()]
        .domain
        .and_then(|d| session.binding.member_groups(d.index()))
        .unwrap_or_default()
}

/// A draw of (mean, precision) from the Normal–Gamma posterior given the
/// values `xs` of one lane of a table's rows: the precision from its
/// marginal Gamma(α₀/2 + n/2, β₀/2 + spread/2 + γ₀n(x̄-μ₀)²/(2(γ₀+n))), then
/// the mean given it, N((γ₀μ₀ + Σx)/(γ₀+n), 1/((γ₀+n)λ)).
fn draw_normal_gamma(xs: &[f64], rng: &mut StdRng) -> (f64, f64) {
    let n = xs.len() as f64;
    let sum: f64 = xs.iter().sum();
    let avg = if n > 0.0 { sum / n } else { 0.0 };
    let spread: f64 = xs.iter().map(|x| (x - avg).powi(2)).sum();
    let shape = (ALPHA0 + n) / 2.0;
    let rate = (BETA0 + spread + GAMMA0 * n / (GAMMA0 + n) * (avg - MU0).powi(2)) / 2.0;
    let lambda = Gamma::new(shape, 1.0 / rate)
        .map(|d| d.sample(rng))
        .unwrap_or(1.0);
    let centre = (GAMMA0 * MU0 + sum) / (GAMMA0 + n);
    let sd = 1.0 / ((GAMMA0 + n) * lambda).sqrt();
    let mu = Normal::new(centre, sd)
        .map(|d| d.sample(rng))
        .unwrap_or(centre);
    (mu, lambda)
}

/// The mean per-example loss of the model (penalties included).
fn mean_loss(ctx: &Context, params: &Params) -> Result<f64, TrainError> {
    let program = Program::new(&ctx.session.forward, None, false);
    // Summed in example order, so that threads do not change the figure.
    let losses: Vec<f64> = ctx.pool.install(|| {
        ctx.examples
            .par_iter()
            .map_init(
                || program.scratch(),
                |scratch, ex| {
                    program
                        .run(params, ex, 0, scratch, &mut [], None)
                        .map(|s| s.loss)
                },
            )
            .collect::<Result<_, _>>()
    })?;
    Ok(losses.iter().sum::<f64>() / ctx.examples.len().max(1) as f64)
}

/// The likelihood's mean weight and its weighted squared residuals.
fn likelihood(ctx: &Context, params: &Params) -> Result<(f64, f64), TrainError> {
    let program = Program::new(&ctx.plan.likelihood, None, true);
    // Summed in example order: the noise precision drawn from it, and so
    // every later draw, must not depend on the number of threads.
    let terms: Vec<(f64, f64)> = ctx.pool.install(|| {
        ctx.examples
            .par_iter()
            .map_init(
                || program.scratch(),
                |scratch, ex| {
                    program
                        .run(params, ex, 0, scratch, &mut [], None)
                        .map(|s| (s.score.unwrap_or(0.0), s.loss))
                },
            )
            .collect::<Result<_, _>>()
    })?;
    let (weight, residual) = terms.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    Ok((weight / ctx.examples.len().max(1) as f64, residual))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hyperprior's draws have the analytic posterior moments of the
    /// Normal–Gamma model, within Monte Carlo error.
    #[test]
    fn normal_gamma_draws_match_the_analytic_posterior() {
        let xs = [0.3, -0.1, 0.5, 0.9, 0.2, 0.4, -0.3, 0.6];
        let n = xs.len() as f64;
        let sum: f64 = xs.iter().sum();
        let avg = sum / n;
        let spread: f64 = xs.iter().map(|x| (x - avg).powi(2)).sum();
        let shape = (ALPHA0 + n) / 2.0;
        let rate = (BETA0 + spread + GAMMA0 * n / (GAMMA0 + n) * (avg - MU0).powi(2)) / 2.0;
        let want_lambda = shape / rate;
        let want_mu = (GAMMA0 * MU0 + sum) / (GAMMA0 + n);
        // Var(μ) = E[1 / ((γ₀+n) λ)] = rate / ((shape - 1)(γ₀+n)).
        let want_var_mu = rate / ((shape - 1.0) * (GAMMA0 + n));
        let draws = 200_000;
        let mut rng = StdRng::seed_from_u64(5);
        let (mut s_l, mut s_m, mut s_mm) = (0.0, 0.0, 0.0);
        for _ in 0..draws {
            let (mu, lambda) = draw_normal_gamma(&xs, &mut rng);
            s_l += lambda;
            s_m += mu;
            s_mm += mu * mu;
        }
        let d = draws as f64;
        let mean_lambda = s_l / d;
        let mean_mu = s_m / d;
        let var_mu = s_mm / d - mean_mu * mean_mu;
        // Standard errors: sd(λ) = √shape / rate, sd(μ) = √Var(μ).
        let se_lambda = shape.sqrt() / rate / d.sqrt();
        let se_mu = want_var_mu.sqrt() / d.sqrt();
        assert!(
            (mean_lambda - want_lambda).abs() < 5.0 * se_lambda,
            "λ {mean_lambda} vs {want_lambda}"
        );
        assert!(
            (mean_mu - want_mu).abs() < 5.0 * se_mu,
            "μ {mean_mu} vs {want_mu}"
        );
        assert!(
            (var_mu / want_var_mu - 1.0).abs() < 0.03,
            "Var μ {var_mu} vs {want_var_mu}"
        );
    }
}
