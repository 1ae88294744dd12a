//! Model source: generated and mutated models through check → lower →
//! grad → JIT compile → 100 training steps on generated data, the JIT
//! against the reference evaluator, then the predict kernel against the
//! evaluator's scores.
//!
//! A model the checker or the binder refuses is a pass (its diagnostics are
//! rendered, which must not panic either). A panic, a crash, or the two
//! backends disagreeing (by `runtime/tests/native.rs`'s tolerances) is a
//! finding. Cases are bounded: 100 rows of a small generated data set, and
//! models with more than [`MAX_LANES`] lanes in a row or [`MAX_VALUES`]
//! parameters in all are set aside before the JIT sees them.

use crate::agree::{self, Comparison, ModelGen};
use crate::driver::{Finding, Harness, Stages};
use crate::mutate::{self, TOKENS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recc_compiler::interp::{evaluate, Example, Params};
use recc_compiler::ir::Graph;
use recc_compiler::model::{Constraint, Model};
use recc_runtime::bind::BindOptions;
use recc_runtime::data::Dataset;
use recc_runtime::init::{initialise, MAX_BALL_NORM};
use recc_runtime::predict::{with_cold_rows, NativeScorer};
use recc_runtime::synth::{self, SynthConfig};
use recc_runtime::train::{self, Backend, Session, Silent, TrainConfig, TrainError, Trained};

/// Training steps per backend and case.
pub const STEPS: usize = 100;
/// Rows scored by both the predict kernel and the evaluator.
const SCORED: usize = 20;
/// The widest row a case may have: wide rows compile slowly (a known
/// limit of the JIT), which would make cases seconds long.
pub const MAX_LANES: usize = 512;
/// The most parameter values a case may have.
pub const MAX_VALUES: usize = 400_000;
/// The largest initial parameter of a model the backends are compared on.
const MAX_COMPARED_INIT: f64 = 100.0;
/// Predict scores may differ by this much relative to max(|score|, 1).
const SCORE_TOLERANCE: f64 = 1e-4;

/// One data set a model can bind to, with the rows it trains on.
struct Data {
    data: Dataset,
    rows: Vec<usize>,
}

pub struct ModelHarness {
    /// Ratings (with users' occupation, a timestamp, genres, histories),
    /// co-occurrence counts and a tree's ancestor pairs: each model trains
    /// on the first it binds to, as `runtime/tests/native.rs` chooses.
    data: Vec<Data>,
    /// `models/*.rec`, the seeds of mutation.
    sources: Vec<String>,
}

impl Default for ModelHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl ModelHarness {
    pub fn new() -> ModelHarness {
        let ratings = synth::generate(&SynthConfig {
            users: 60,
            items: 40,
            ratings_per_user: 10,
            seed: 11,
        });
        let docs = recc_runtime::data::text::item_sequences(&ratings);
        let mut cooc = recc_runtime::data::text::cooccurrence(&docs, 3, None)
            .unwrap_or_else(|_| ratings.clone());
        cooc.target = None;
        let tree = "3x3"
            .parse()
            .ok()
            .and_then(|shape| recc_runtime::data::tree::Tree::new(shape).closure().ok())
            .unwrap_or_else(|| ratings.clone());
        let data = [ratings, cooc, tree]
            .into_iter()
            .map(|d| {
                // Spread over the data, so every user and item appears.
                let step = (d.len() / STEPS).max(1);
                let rows = (0..d.len()).step_by(step).take(STEPS).collect();
                Data { data: d, rows }
            })
            .collect();
        ModelHarness {
            data,
            sources: crate::model_sources(),
        }
    }
}

fn config(model: &Model, backend: Backend) -> TrainConfig {
    let mut c = TrainConfig::from_fit(&model.fit);
    c.epochs = 1;
    c.batch = 1;
    c.threads = 1;
    c.early_stopping = 0;
    c.backend = backend;
    // The evaluator is the per-example schedule's reference.
    c.pooling = recc_runtime::train::Pooling::PerExample;
    c
}

fn train_on(
    session: &Session,
    data: &Dataset,
    rows: &[usize],
    config: &TrainConfig,
) -> Result<Trained, TrainError> {
    train::train(session, data, rows, &[], config, &mut Silent)
}

impl Harness for ModelHarness {
    fn name(&self) -> &'static str {
        "models"
    }

    fn extension(&self) -> &'static str {
        "rec"
    }

    fn generate(&mut self, rng: &mut StdRng) -> Vec<u8> {
        let roll = rng.random_range(0..100);
        let text = if roll < 45 {
            let mut r = StdRng::seed_from_u64(rng.random());
            ModelGen::model(r.random(), r.random_range(0..1000))
        } else if roll < 80 && !self.sources.is_empty() {
            let base = self.sources[rng.random_range(0..self.sources.len())].clone();
            mutate::text(&base, rng, &TOKENS)
        } else {
            let mut r = StdRng::seed_from_u64(rng.random());
            let base = ModelGen::model(r.random(), r.random_range(0..1000));
            mutate::text(&base, rng, &TOKENS)
        };
        text.into_bytes()
    }

    fn run(&mut self, input: &[u8], stages: &mut Stages) -> Result<(), Finding> {
        let mut stage = |s: &'static str| *stages.entry(s).or_default() += 1;
        let Ok(text) = std::str::from_utf8(input) else {
            stage("not utf-8");
            return Ok(());
        };
        let compiled = recc_compiler::compile("case.rec", text);
        let _ = compiled.render_diagnostics();
        let model = match (&compiled.model, compiled.has_errors()) {
            (Some(m), false) => m.clone(),
            _ => {
                stage("refused by check");
                return Ok(());
            }
        };
        stage("checked");
        let forward = match recc_compiler::forward_graph(&model) {
            Ok(g) => g,
            Err(_) => {
                stage("refused by lower");
                return Ok(());
            }
        };
        let _ = forward.to_text(Some(&compiled.sources));
        if recc_compiler::gradient_graph(&model).is_err() {
            stage("refused by grad");
            return Ok(());
        }
        stage("lowered and differentiated");
        let Some((session, d)) = self.data.iter().find_map(|d| {
            Session::new(&model, &d.data, &d.rows, &BindOptions::default())
                .ok()
                .map(|s| (s, d))
        }) else {
            stage("refused by bind");
            return Ok(());
        };
        let g = &session.gradient;
        let sizes = session.binding.domain_sizes();
        let too_wide = g.tables.iter().any(|t| t.shape.len() > MAX_LANES);
        let values: usize = g
            .tables
            .iter()
            .map(|t| {
                let rows = t
                    .domain
                    .map_or(1, |dom| sizes.get(dom.index()).copied().unwrap_or(1));
                rows.saturating_mul(t.shape.len())
            })
            .fold(0, usize::saturating_add);
        if too_wide || values > MAX_VALUES {
            stage("set aside: too large");
            return Ok(());
        }
        let Ok(start) = initialise(g, &sizes, model.fit.seed) else {
            stage("refused by init");
            return Ok(());
        };
        // Rows that start in the thousands (a mutated `init uniform(0, 1e6)`)
        // make scores whose f32 rounding alone exceeds the tolerances: such a
        // model still trains natively, for crashes, but is not compared.
        let largest = start
            .tables
            .iter()
            .flat_map(|t| t.iter())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        if largest.is_nan() || largest > MAX_COMPARED_INIT {
            let _ = train_on(&session, &d.data, &d.rows, &config(&model, Backend::Jit));
            stage("trained natively, not compared: large initial values");
            return Ok(());
        }
        // The kernel alone first, so a compile failure is told apart from
        // a training failure.
        if let Err(e) = train::compile_step(g, model.fit.optimizer, recc_jit::DEFAULT_PREFETCH) {
            return Err(Finding::new(
                "disagree: the evaluator runs a model the JIT cannot compile",
                format!("{e}"),
            ));
        }
        stage("jit compiled");
        let interp = train_on(&session, &d.data, &d.rows, &config(&model, Backend::Interp));
        let jit = train_on(&session, &d.data, &d.rows, &config(&model, Backend::Jit));
        stage("trained on both backends");
        let jit_params = jit.as_ref().ok().map(|t| t.params.clone());
        match agree::compare_random(&session, interp, jit) {
            Comparison::Agree(_) => {}
            Comparison::Disagree(m) => {
                let kind = |s: &str| {
                    if s.starts_with("trained") {
                        "trained"
                    } else if s.contains("diverged") || s.contains("not finite") {
                        "diverged"
                    } else {
                        "failed"
                    }
                };
                let (a, b) = m
                    .split_once("; jit: ")
                    .map_or(("?", "?"), |(a, b)| (a.trim_start_matches("interp: "), b));
                return Err(Finding::new(
                    format!("disagree: interp {}, jit {}", kind(a), kind(b)),
                    m,
                ));
            }
            Comparison::Drift(drift) => {
                stage("drifted, stepped together");
                if let Err(e) = agree::lockstep(
                    &session,
                    &model,
                    &d.data,
                    &d.rows,
                    agree::LOCKSTEP_TOLERANCE,
                ) {
                    return Err(Finding::new(
                        format!(
                            "disagree: one step differs ({})",
                            model
                                .fit
                                .optimizer
                                .to_string()
                                .split('(')
                                .next()
                                .unwrap_or("")
                        ),
                        format!("{drift}; stepping together: {e}"),
                    ));
                }
            }
        }
        stage("agreed");
        let (Some(params), Some(_)) = (jit_params, session.forward.score.as_ref()) else {
            return Ok(());
        };
        // The predict kernel against the evaluator, from the same f32 values.
        let f = &session.forward;
        let params = with_cold_rows(f, &agree::rounded(&params));
        let scorer = match NativeScorer::new(f, &params) {
            Ok(s) => s,
            Err(e) => {
                return Err(Finding::new(
                    "disagree: the evaluator scores a model the JIT cannot compile",
                    e.to_string(),
                ))
            }
        };
        let b = &session.binding;
        let rows: Vec<usize> = d.rows.iter().copied().take(SCORED).collect();
        let mut columns = b.columns();
        let mut rng = StdRng::seed_from_u64(0);
        b.encode_rows(&d.data, &rows, &mut rng, false, &mut columns);
        let scores = scorer.score(f, &columns).map_err(|e| {
            Finding::new(
                "disagree: the predict kernel refused the binding's columns",
                e.to_string(),
            )
        })?;
        let ball_slack = ball_edge_slack(f, &params);
        let mut rng = StdRng::seed_from_u64(0);
        let mut ex = Example { slots: Vec::new() };
        for (k, &r) in rows.iter().enumerate() {
            b.example(&d.data, &b.row(&d.data, r), &mut rng, false, &mut ex);
            let Ok(ev) = evaluate(f, &params, &ex) else {
                continue;
            };
            let (Some(want), Some(&got)) = (ev.score, scores.get(k)) else {
                continue;
            };
            let got = got as f64;
            let diff = ((got - want).abs() - ball_slack).max(0.0) / want.abs().max(1.0);
            let both_nan = got.is_nan() && want.is_nan();
            if !want.is_finite() || !got.is_finite() {
                if !both_nan && want.is_finite() != got.is_finite() && want.abs() < 1e30 {
                    return Err(Finding::new(
                        "disagree: predict score finite in one backend only",
                        format!("row {r}: evaluator {want}, kernel {got}"),
                    ));
                }
                continue;
            }
            if diff > SCORE_TOLERANCE {
                // Distances near the ball's edge lose most of f32's digits
                // in 1 − |x|²: kept apart from other score disagreements.
                let ball = f.tables.iter().any(|t| t.constraint == Constraint::Ball);
                return Err(Finding::new(
                    if ball {
                        "disagree: predict score (a model with a table on the ball)"
                    } else {
                        "disagree: predict score"
                    },
                    format!("row {r}: evaluator {want}, kernel {got} (rel {diff:.2e})"),
                ));
            }
        }
        stage("predict agreed");
        Ok(())
    }
}

/// The absolute error f32 may put in a score through Poincaré distances.
/// The kernel rounds ‖x‖² by about `lanes` ε, which 1 − ‖x‖² carries as an
/// absolute error; relative to 1 − ‖x‖² (2e-5 at the ball's edge) it is
/// large, and the distance (about the logarithm of a ratio of such terms)
/// carries it as an absolute error, once for each of its two points. So
/// each ball table adds 2 · lanes · ε / (its smallest 1 − ‖x‖²): about
/// 1e-6 for rows well inside the ball, 2e-2 at its edge.
fn ball_edge_slack(g: &Graph, params: &Params) -> f64 {
    g.tables
        .iter()
        .zip(&params.tables)
        .filter(|(t, _)| t.constraint == Constraint::Ball)
        .map(|(_, v)| {
            let margin = v
                .rows()
                .into_iter()
                .map(|r| 1.0 - r.dot(&r))
                .fold(1.0f64, f64::min)
                .max(1.0 - MAX_BALL_NORM * MAX_BALL_NORM);
            2.0 * v.ncols() as f64 * f64::from(f32::EPSILON) / margin
        })
        .sum()
}
