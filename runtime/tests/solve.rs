//! The closed-form solvers end to end: ALS reaches the least-squares optimum
//! of a convex model and a stationary point of MF, Gibbs sampling fits as
//! well as SGD, and both are deterministic for a seed.

use recc_compiler::interp::{evaluate, Example, Params};
use recc_compiler::model::Solver;
use recc_runtime::bind::BindOptions;
use recc_runtime::data::{ColumnData, Dataset};
use recc_runtime::predict::Predictor;
use recc_runtime::session::Backend;
use recc_runtime::solve::KEPT_DRAWS;
use recc_runtime::split;
use recc_runtime::synth::{self, SynthConfig};
use recc_runtime::train::{self, Session, Silent, TrainConfig};
use std::path::PathBuf;

fn compile_text(name: &str, text: &str) -> recc_compiler::model::Model {
    let compiled = recc_compiler::compile(name, text);
    assert!(!compiled.has_errors(), "{}", compiled.render_diagnostics());
    compiled.model.expect("a checked model")
}

fn model_file(name: &str) -> recc_compiler::model::Model {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name);
    compile_text(name, &std::fs::read_to_string(path).expect("model file"))
}

fn data(users: usize, items: usize, per_user: usize) -> Dataset {
    synth::generate(&SynthConfig {
        users,
        items,
        ratings_per_user: per_user,
        ..SynthConfig::default()
    })
}

fn run(
    model: &recc_compiler::model::Model,
    data: &Dataset,
    solver: Solver,
    threads: usize,
) -> (Session, Vec<usize>, Vec<usize>, train::Trained) {
    let split = split::random_holdout(data.len(), 0.2, 7);
    let session = Session::new(model, data, &split.train, &BindOptions::default()).unwrap();
    let mut config = TrainConfig::from_fit(&model.fit);
    config.solver = solver;
    config.threads = threads;
    let trained = train::train(
        &session,
        data,
        &split.train,
        &split.test,
        &config,
        &mut Silent,
    )
    .unwrap();
    (session, split.train, split.test, trained)
}

fn rmse(session: &Session, data: &Dataset, params: &Params, rows: &[usize]) -> f64 {
    Predictor::new(session, params)
        .rating(data, rows)
        .unwrap()
        .rmse
}

/// The sum over `rows` of every example's loss gradient, per table and row.
fn total_gradient(
    session: &Session,
    data: &Dataset,
    params: &Params,
    rows: &[usize],
) -> std::collections::BTreeMap<(recc_compiler::ir::TableId, usize), Vec<f64>> {
    let mut total = std::collections::BTreeMap::new();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut ex = Example { slots: Vec::new() };
    for &r in rows {
        let row = session.binding.row(data, r);
        session.binding.example(data, &row, &mut rng, true, &mut ex);
        let ev = evaluate(&session.gradient, params, &ex).unwrap();
        for (key, g) in ev.gradients.rows {
            let e = total.entry(key).or_insert_with(|| vec![0.0; g.len()]);
            for (a, b) in e.iter_mut().zip(&g) {
                *a += b;
            }
        }
    }
    total
}

const BIASES: &str = "\
use stdlib.losses
input u: user
input i: item
input r: real
param b: real
param w[user]: real
param m[item]: real
let R(u, i) = b + w[u] + m[i]
loss mse(R(u, i), r)
penalty 0.5 * (sq(w[u]) + sq(m[i]))
";

/// A model whose loss is jointly quadratic: alternating exact solves
/// converge to its one minimum, where every gradient of the summed loss is
/// zero.
#[test]
fn als_on_a_convex_model_reaches_the_least_squares_optimum() {
    let model = compile_text("biases.rec", BIASES);
    let data = data(40, 30, 8);
    let (session, train_rows, _, trained) = run(&model, &data, Solver::Als { sweeps: 60 }, 1);
    let grads = total_gradient(&session, &data, &trained.params, &train_rows);
    let worst = grads
        .values()
        .flat_map(|g| g.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(worst < 1e-6, "largest summed gradient {worst}");
}

/// After one sweep the last table solved is exactly optimal given the rest:
/// the summed gradient of the model's own loss is zero on its every row.
#[test]
fn one_als_sweep_leaves_the_last_table_at_its_exact_optimum() {
    let model = model_file("biased_mf.rec");
    let data = data(60, 40, 12);
    let (session, train_rows, _, trained) = run(&model, &data, Solver::Als { sweeps: 1 }, 2);
    let q = session
        .gradient
        .tables
        .iter()
        .position(|t| t.name == "q")
        .unwrap();
    // The trained parameters give untouched rows the mean; only touched
    // rows have gradients.
    let grads = total_gradient(&session, &data, &trained.params, &train_rows);
    let mut checked = 0;
    for ((t, _), g) in &grads {
        if t.index() == q {
            checked += 1;
            let worst = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(worst < 1e-8, "a row of q has summed gradient {worst}");
        }
    }
    assert!(checked > 10);
}

#[test]
fn als_fits_biased_mf_as_well_as_sgd_and_is_deterministic_across_threads() {
    let model = model_file("biased_mf.rec");
    let data = data(150, 100, 25);
    let (session, _, test, als) = run(&model, &data, Solver::Als { sweeps: 8 }, 1);
    let (_, _, _, als2) = run(&model, &data, Solver::Als { sweeps: 8 }, 2);
    assert_eq!(als.params, als2.params, "threads changed the result");
    let (_, _, _, sgd) = run(&model, &data, Solver::Sgd, 1);
    let a = rmse(&session, &data, &als.params, &test);
    let s = rmse(&session, &data, &sgd.params, &test);
    assert!(a < s + 0.02, "ALS rmse {a} vs SGD {s}");
    assert_eq!(als.history.len(), 8);
}

#[test]
fn gibbs_fits_biased_mf_and_is_deterministic_across_threads() {
    let model = model_file("biased_mf.rec");
    let data = data(150, 100, 25);
    let solver = Solver::Gibbs {
        samples: 20,
        burn_in: 10,
    };
    let (session, _, test, g1) = run(&model, &data, solver, 1);
    let (_, _, _, g2) = run(&model, &data, solver, 2);
    assert_eq!(g1.params, g2.params, "threads changed the result");
    assert_eq!(g1.samples, g2.samples, "threads changed the kept draws");
    let (_, _, _, sgd) = run(&model, &data, Solver::Sgd, 1);
    let g = rmse(&session, &data, &g1.params, &test);
    let s = rmse(&session, &data, &sgd.params, &test);

    assert!(g < s + 0.02, "Gibbs rmse {g} vs SGD {s}");
    assert_eq!(g1.history.len(), 30);
}

/// Each row solve minimises the loss exactly given the rest, and rows of
/// one colour share no example, so no sweep can raise the training loss,
/// however the factorization machine's rows are coupled.
#[test]
fn als_never_raises_svdpps_loss() {
    let model = model_file("svdpp.rec");
    let data = data(60, 40, 12);
    let (_, _, _, als) = run(&model, &data, Solver::Als { sweeps: 4 }, 2);
    for pair in als.history.windows(2) {
        assert!(
            pair[1].loss <= pair[0].loss * (1.0 + 1e-9),
            "sweep {} raised the loss from {} to {}",
            pair[1].epoch,
            pair[0].loss,
            pair[1].loss
        );
    }
}

#[test]
fn als_never_raises_a_factorization_machines_loss() {
    let model = model_file("fm.rec");
    let data = data(100, 60, 15);
    let (session, train_rows, test, als) = run(&model, &data, Solver::Als { sweeps: 6 }, 2);
    for pair in als.history.windows(2) {
        assert!(
            pair[1].loss <= pair[0].loss * (1.0 + 1e-9),
            "sweep {} raised the loss from {} to {}",
            pair[1].epoch,
            pair[0].loss,
            pair[1].loss
        );
    }
    // And it learns: better than predicting the training mean.
    let target = session.binding.target_values(&data).unwrap();
    let mean = train_rows.iter().map(|&r| target[r]).sum::<f64>() / train_rows.len() as f64;
    let baseline = (test
        .iter()
        .map(|&r| (target[r] - mean).powi(2))
        .sum::<f64>()
        / test.len() as f64)
        .sqrt();
    let a = rmse(&session, &data, &als.params, &test);
    assert!(a < baseline - 0.05, "ALS rmse {a} vs the mean's {baseline}");
}

/// A conjugate toy: one global mean under a normal likelihood. Its
/// posterior mean is the data's mean (the global's prior is nearly flat),
/// and the average of the kept draws must find it within Monte Carlo error.
#[test]
fn gibbs_recovers_the_posterior_mean_of_a_conjugate_model() {
    let model = compile_text(
        "mean.rec",
        "use stdlib.losses\ninput u: user\ninput r: real\nparam b: real\n\
         let R(u) = b\nloss mse(R(u), r)\n",
    );
    let data = data(50, 20, 10);
    let split = split::random_holdout(data.len(), 0.2, 7);
    let session = Session::new(&model, &data, &split.train, &BindOptions::default()).unwrap();
    let mut config = TrainConfig::from_fit(&model.fit);
    let samples = 2000;
    config.solver = Solver::Gibbs {
        samples,
        burn_in: 20,
    };
    let trained = train::train(&session, &data, &split.train, &[], &config, &mut Silent).unwrap();
    let target = session.binding.target_values(&data).unwrap();
    let ys: Vec<f64> = split.train.iter().map(|&r| target[r]).collect();
    let n = ys.len() as f64;
    let mean = ys.iter().sum::<f64>() / n;
    let var = ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n;
    // The posterior sd of b is about √(var / n); the draws are independent
    // given the noise, so the average's error is that over √samples.
    let se = (var / n).sqrt() / (samples as f64).sqrt();
    let b = trained.params.tables[0][[0, 0]];
    assert!(
        (b - mean).abs() < 5.0 * se,
        "posterior mean {b} vs {mean} (se {se})"
    );
}

/// A Gibbs fit keeps at most `KEPT_DRAWS` evenly spaced draws of every
/// table the score reads, and a prediction is the mean of the draws'
/// scores: computed here by hand from the kept tables.
#[test]
fn gibbs_predictions_are_the_mean_over_the_kept_draws() {
    let model = model_file("biased_mf.rec");
    let data = data(60, 40, 12);
    // More kept sweeps than draws kept: the draws are thinned.
    let solver = Solver::Gibbs {
        samples: KEPT_DRAWS + 16,
        burn_in: 5,
    };
    let (mut session, _, test, trained) = run(&model, &data, solver, 2);
    let samples = trained.samples.as_ref().expect("a Gibbs fit keeps draws");
    assert_eq!(samples.draws.len(), KEPT_DRAWS);
    let name = |k: usize| session.forward.tables[k].name.as_str();
    let names: Vec<&str> = samples.tables.iter().map(|&k| name(k)).collect();
    assert_eq!(names, ["b", "w", "m", "p", "q"]);
    assert!(samples.draws.iter().all(|d| d.noise_precision > 0.0));
    assert_ne!(samples.draws[0].tables[3], samples.draws[1].tables[3]);

    let (_, users) = data.users().unwrap();
    let (_, items) = data.items().unwrap();
    let by_hand: Vec<f64> = test
        .iter()
        .map(|&r| {
            let (u, i) = (users[r] as usize, items[r] as usize);
            let total: f64 = samples
                .draws
                .iter()
                .map(|d| {
                    let t = &d.tables;
                    let dot: f64 = (0..64).map(|k| t[3][[u, k]] * t[4][[i, k]]).sum();
                    t[0][[0, 0]] + t[1][[u, 0]] + t[2][[i, 0]] + dot
                })
                .sum();
            total / samples.draws.len() as f64
        })
        .collect();
    for backend in [Backend::Interp, Backend::Jit] {
        session.backend = backend;
        let predictor = Predictor::new(&session, &trained.params)
            .with_samples(Some(samples))
            .unwrap();
        let scores = predictor.scores(&data, &test).unwrap();
        // The predict kernel scores in f32.
        let tolerance = if backend == Backend::Interp {
            1e-9
        } else {
            1e-4
        };
        for (a, b) in scores.iter().zip(&by_hand) {
            assert!((a - b).abs() < tolerance, "{backend:?}: {a} vs {b}");
        }
        let r = test[0];
        let pair = predictor
            .score_pair(&data, Some(users[r]), Some(items[r]))
            .unwrap();
        assert!((pair - by_hand[0]).abs() < 1e-9, "{pair} vs {}", by_hand[0]);
        let row = predictor
            .user_scores(&data, Some(users[r]))
            .unwrap()
            .swap_remove(items[r] as usize);
        assert!(
            (row - by_hand[0]).abs() < tolerance,
            "{row} vs {}",
            by_hand[0]
        );
    }
    // Not the score of the posterior mean: E[p·q] is not E[p]·E[q].
    let of_mean = Predictor::new(&session, &trained.params)
        .scores(&data, &test)
        .unwrap();
    let moved = of_mean
        .iter()
        .zip(&by_hand)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        moved > 1e-6,
        "the draws' mean is the mean's score ({moved})"
    );
}

/// On data a linear model generates with normal noise, the mixture of the
/// kept draws' N(score, 1/α) covers held-out targets at the nominal rates.
#[test]
fn gibbs_predictive_intervals_cover_at_the_nominal_rates() {
    let model = compile_text("biases.rec", BIASES);
    let mut data = data(300, 120, 20);
    // The targets again, drawn from the model itself: b + w_u + m_i + noise.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(11);
    let normal = |rng: &mut rand::rngs::StdRng, sd: f64| {
        sd * rand::Rng::sample::<f64, _>(rng, rand_distr::StandardNormal)
    };
    let (_, users) = data.users().unwrap();
    let (_, items) = data.items().unwrap();
    let (users, items) = (users.to_vec(), items.to_vec());
    let w: Vec<f64> = (0..=*users.iter().max().unwrap())
        .map(|_| normal(&mut rng, 0.4))
        .collect();
    let m: Vec<f64> = (0..=*items.iter().max().unwrap())
        .map(|_| normal(&mut rng, 0.4))
        .collect();
    let target = data.target.clone().unwrap();
    let column = data.columns.iter_mut().find(|c| c.name == target).unwrap();
    let ColumnData::Real(values) = &mut column.data else {
        panic!("the target is not real")
    };
    for (r, v) in values.iter_mut().enumerate() {
        *v = 3.5 + w[users[r] as usize] + m[items[r] as usize] + normal(&mut rng, 0.6);
    }
    let (session, train_rows, test, trained) = run(
        &model,
        &data,
        Solver::Gibbs {
            samples: 100,
            burn_in: 20,
        },
        2,
    );
    let predictor = Predictor::new(&session, &trained.params)
        .with_samples(trained.samples.as_ref())
        .unwrap();
    let i = predictor
        .intervals(&data, &train_rows, &test, 1)
        .unwrap()
        .expect("a Gibbs fit has intervals");
    // About 1,200 test rows: a coverage's standard error is at most 0.015.
    assert!(
        (i.interval50 - 0.5).abs() < 0.05,
        "interval50 {}",
        i.interval50
    );
    assert!(
        (i.interval90 - 0.9).abs() < 0.035,
        "interval90 {}",
        i.interval90
    );
    // Without the draws, a point fit has no distribution to measure.
    let point = Predictor::new(&session, &trained.params);
    assert!(point
        .intervals(&data, &train_rows, &test, 1)
        .unwrap()
        .is_none());
}

/// The solvers on MovieLens-100k's u1 (when the data is there): prints
/// figures; asserts only that each beats the item-mean baseline by a margin.
#[test]
#[ignore = "slow: run with --ignored to print the solvers' figures on u1"]
fn solvers_on_movielens_u1() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ml-100k");
    if !dir.exists() {
        eprintln!("skipped: {} is not there", dir.display());
        return;
    }
    let spec: recc_runtime::data::spec::DataSpec =
        format!("ml-100k:{}", dir.display()).parse().unwrap();
    let (data, split) = spec.load(&Default::default(), Some("u1")).unwrap();
    let split = split.unwrap();
    let which = std::env::var("RECC_SOLVER_MODEL").unwrap_or_else(|_| "biased_mf.rec".into());
    let model = model_file(&which);
    let solvers = [
        Solver::Als { sweeps: 15 },
        Solver::Gibbs {
            samples: 150,
            burn_in: 50,
        },
    ];
    for solver in solvers {
        let session = Session::new(&model, &data, &split.train, &BindOptions::default()).unwrap();
        let mut config = TrainConfig::from_fit(&model.fit);
        config.solver = solver;
        config.threads = 2;
        let started = std::time::Instant::now();
        let trained = train::train(
            &session,
            &data,
            &split.train,
            &split.test,
            &config,
            &mut Silent,
        )
        .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let r = rmse(&session, &data, &trained.params, &split.test);
        let last = trained.history.last().and_then(|h| h.validation);
        eprintln!(
            "{which} {solver}: test rmse {r:.4} (last sweep's figure {last:?}) in {seconds:.1} s"
        );
        assert!(r < 1.0);
        let Some(samples) = &trained.samples else {
            continue;
        };
        // The predictions of the kept draws, and of every 2nd, 4th, ... of
        // them: how the Monte Carlo error of the mean grows as fewer are kept.
        let mut every = 1;
        while every <= samples.draws.len() {
            let thinned = recc_runtime::predict::Samples {
                tables: samples.tables.clone(),
                draws: samples.draws.iter().rev().step_by(every).cloned().collect(),
            };
            let predictor = Predictor::new(&session, &trained.params)
                .with_samples(Some(&thinned))
                .unwrap();
            let m = predictor.rating(&data, &split.test).unwrap();
            let i = predictor
                .intervals(&data, &split.train, &split.test, 42)
                .unwrap()
                .unwrap();
            eprintln!(
                "  mean of {:>3} draws: rmse {:.4}  interval50 {:.4}  interval90 {:.4}",
                thinned.draws.len(),
                m.rmse,
                i.interval50,
                i.interval90
            );
            every *= 2;
        }
    }
}
