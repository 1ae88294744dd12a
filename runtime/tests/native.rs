//! The native backend against the reference evaluator: every model of
//! `models/` and a batch of random models train to the same parameters in
//! both, trained models score the same test metrics, ids at the edges of
//! their domains stay inside their tables (and read and write nothing
//! past them), and Hogwild threads still train.
//!
//! The evaluator runs in f64 and the kernels in f32, so parameters agree to
//! a relative 1e-4, not bit for bit. Where a random model's trajectories
//! drift further apart, every step is compared from the same parameters
//! instead (`lockstep`). One known divergence, a row named twice in one
//! example, is pinned by an ignored test at the end.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recc_compiler::interp::{evaluate, Example, Params, SlotValue};
use recc_compiler::ir::{DomainId, Graph, SlotKind, TableId};
use recc_compiler::model::{Model, Optimizer};
use recc_jit::{Kernel, KernelKind, StepOptions};
use recc_runtime::bind::{BindOptions, Columns, SlotColumn};
use recc_runtime::data::Dataset;
use recc_runtime::init::{initialise, MAX_BALL_NORM};
use recc_runtime::native::{Hyper, NativeParams, Runner, TableWords};
use recc_runtime::optim::OptimiserState;
use recc_runtime::predict::{with_cold_rows, Predictor};
use recc_runtime::split::{self, Split};
use recc_runtime::synth::{self, SynthConfig};
use recc_runtime::train::{self, Backend, Session, Silent, Task, TrainConfig, TrainError, Trained};
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Every model file, sorted, read from the directory so a new one is covered.
fn model_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(models_dir())
        .expect("models/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rec"))
        .collect();
    files.sort();
    files
}

fn compile_file(name: &str) -> Model {
    let text = std::fs::read_to_string(models_dir().join(name)).expect("model file");
    compile_text(name, &text).unwrap_or_else(|e| panic!("{e}"))
}

fn compile_text(name: &str, text: &str) -> Result<Model, String> {
    let compiled = recc_compiler::compile(name, text);
    if compiled.has_errors() {
        return Err(compiled.render_diagnostics());
    }
    compiled.model.ok_or_else(|| "no model".to_string())
}

fn builtin() -> Dataset {
    synth::generate(&SynthConfig::default())
}

/// Data `file` fits, from the built-in ratings: word2vec_mf reads the
/// co-occurrences of items in users' sequences, poincare_tree the ancestor
/// pairs of a generated tree, every other model the ratings themselves (as
/// `runtime/tests/train.rs` chooses).
fn data_for(file: &str, base: &Dataset) -> (Dataset, BindOptions) {
    match file {
        "word2vec_mf.rec" => {
            let docs = recc_runtime::data::text::item_sequences(base);
            let mut d = recc_runtime::data::text::cooccurrence(&docs, 3, None).unwrap();
            d.target = None;
            (d, BindOptions::default())
        }
        "poincare_tree.rec" => (tree_data("3x4"), BindOptions::default()),
        _ => (base.clone(), BindOptions::default()),
    }
}

/// The ancestor pairs of a complete tree of `shape` (`BxD`).
fn tree_data(shape: &str) -> Dataset {
    let shape = shape.parse().unwrap_or_else(|e| panic!("{e}"));
    recc_runtime::data::tree::Tree::new(shape)
        .closure()
        .unwrap()
}

fn holdout(data: &Dataset) -> Split {
    split::random_holdout(data.len(), 0.2, 7)
}

/// The model's own `fit` settings for `epochs` epochs, one example per
/// step, one thread, on `backend`.
fn config(model: &Model, epochs: usize, backend: Backend) -> TrainConfig {
    let mut c = TrainConfig::from_fit(&model.fit);
    c.epochs = epochs;
    c.batch = 1;
    c.threads = 1;
    c.early_stopping = 0;
    c.backend = backend;
    // The evaluator is the per-example schedule's reference.
    c.pooling = train::Pooling::PerExample;
    c
}

fn train_on(
    session: &Session,
    data: &Dataset,
    rows: &[usize],
    config: &TrainConfig,
) -> Result<Trained, TrainError> {
    assert_eq!(config.effective_backend(), config.backend);
    train::train(session, data, rows, &[], config, &mut Silent)
}

/// The largest elementwise `|jit − interp| / max(|interp|, 1)` over every
/// table, and where it is. A NaN on either side counts as infinite.
fn max_rel_diff(session: &Session, interp: &Params, jit: &Params) -> (f64, String) {
    let (d, t, row, lane) = worst_lane(interp, jit, 0.0, |_, _, _| false);
    (d, describe_lane(session, interp, jit, t, row, lane))
}

/// [`max_rel_diff`] as (difference, table, row, lane), less an absolute
/// `slack`, leaving out the lanes `skip` names.
fn worst_lane(
    interp: &Params,
    jit: &Params,
    slack: f64,
    skip: impl Fn(usize, usize, usize) -> bool,
) -> (f64, usize, usize, usize) {
    let mut worst = (0.0, 0, 0, 0);
    assert_eq!(interp.tables.len(), jit.tables.len());
    for (k, (a, b)) in interp.tables.iter().zip(&jit.tables).enumerate() {
        assert_eq!(a.dim(), b.dim(), "table {k}");
        for (((row, lane), x), y) in a.indexed_iter().zip(b.iter()) {
            let d = ((y - x).abs() - slack).max(0.0) / x.abs().max(1.0);
            let d = if (y - x).is_nan() { f64::INFINITY } else { d };
            if d > worst.0 && !skip(k, row, lane) {
                worst = (d, k, row, lane);
            }
        }
    }
    worst
}

fn describe_lane(
    session: &Session,
    interp: &Params,
    jit: &Params,
    t: usize,
    row: usize,
    lane: usize,
) -> String {
    let name = &session.gradient.tables[t].name;
    let lanes = interp.tables[t].ncols();
    format!(
        "{name}[{row}][{lane}] (of {lanes} lanes): interp {}, jit {}",
        interp.tables[t][[row, lane]],
        jit.tables[t][[row, lane]]
    )
}

/// Parameters may differ by 1e-4 of their size (or absolutely, below 1).
/// Every model of `models/` meets it after 1000 steps, none by less than
/// an order of magnitude (hinge_mf comes closest, about 7e-6).
const PARAM_TOLERANCE: f64 = 1e-4;

#[test]
fn every_model_agrees_after_1000_steps() {
    let files = model_files();
    assert!(files.len() >= 13, "{files:?}");
    let base = builtin();
    let mut failures = Vec::new();
    for file in &files {
        let model = compile_file(file);
        let (data, bind) = data_for(file, &base);
        let s = holdout(&data);
        let rows: Vec<usize> = s.train.iter().copied().take(1000).collect();
        let session =
            Session::new(&model, &data, &rows, &bind).unwrap_or_else(|e| panic!("{file}: {e}"));
        let started = std::time::Instant::now();
        let interp = train_on(&session, &data, &rows, &config(&model, 1, Backend::Interp))
            .unwrap_or_else(|e| panic!("{file} (interp): {e}"));
        let t_interp = started.elapsed();
        let started = std::time::Instant::now();
        let jit = train_on(&session, &data, &rows, &config(&model, 1, Backend::Jit))
            .unwrap_or_else(|e| panic!("{file} (jit): {e}"));
        let t_jit = started.elapsed();
        let (diff, at) = max_rel_diff(&session, &interp.params, &jit.params);
        let loss = (interp.history[0].loss, jit.history[0].loss);
        println!(
            "{file:<22} max rel diff {diff:.3e} at {at}; mean loss interp {:.6} jit {:.6}; \
             {t_interp:.2?} vs {t_jit:.2?}",
            loss.0, loss.1
        );
        if diff > PARAM_TOLERANCE {
            failures.push(format!("{file}: {diff:.3e} at {at}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------------------------------
// Edge indices: guard rows of NaN after every table.

/// Rows of NaN appended after each table's real rows.
const GUARD_ROWS: usize = 3;
/// A NaN with a payload no computation produces, so "still the guard" is a
/// bit-for-bit check.
const GUARD: f32 = f32::from_bits(0x7fc0_dead);
const GUARD_STEPS: u32 = 0xdead_beef;
const GUARD_TOUCHED: u8 = 0xab;

/// One example's slot values, for the evaluator (f64) and as columns (f32).
/// Every number is exactly representable in f32, so both see the same input.
fn edge_example(g: &Graph, sizes: &[usize], e: usize, train: bool) -> Example {
    let slots = g
        .slots
        .iter()
        .enumerate()
        .map(|(s, slot)| {
            // Four patterns: all first members, all last members, and two
            // mixtures alternating between the slots.
            let last = |d: DomainId| match e % 4 {
                0 => false,
                1 => true,
                2 => s % 2 == 0,
                _ => s % 2 == 1,
            } && sizes[d.index()] > 0;
            let edge = |d: DomainId| if last(d) { sizes[d.index()] - 1 } else { 0 };
            match &slot.kind {
                SlotKind::Index(d) | SlotKind::Negative { domain: d, .. } => {
                    SlotValue::Index(edge(*d))
                }
                // A rating, and a co-occurrence count (positive: log k).
                SlotKind::Real => SlotValue::Real(if e.is_multiple_of(2) { 4.0 } else { 1.5 }),
                // A row seen once, or one of eight.
                SlotKind::InverseCount(_) => {
                    SlotValue::Real(if e.is_multiple_of(2) { 1.0 } else { 0.125 })
                }
                SlotKind::Bag { domain, .. } => {
                    let n = sizes[domain.index()];
                    SlotValue::Bag(match e % 4 {
                        0 => vec![(0, 1.0)],
                        1 => vec![(n - 1, 0.5), (0, 1.0)],
                        2 => vec![],
                        _ => vec![(n - 1, 1.0)],
                    })
                }
                SlotKind::Noise(shape)
                | SlotKind::Pooled { shape, .. }
                | SlotKind::Dense(shape) => SlotValue::Noise(
                    (0..shape.len())
                        .map(|k| {
                            if train {
                                ((k * 7 + e * 3) % 11) as f64 / 8.0 - 0.625
                            } else {
                                0.0
                            }
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    Example { slots }
}

/// The examples as the kernel's columns, one per slot of `g`.
fn columns_of(g: &Graph, examples: &[Example]) -> Columns {
    let mut slots: Vec<SlotColumn> = g
        .slots
        .iter()
        .map(|s| match s.kind {
            SlotKind::Index(_) | SlotKind::Negative { .. } => SlotColumn::Index(Vec::new()),
            SlotKind::Real
            | SlotKind::Noise(_)
            | SlotKind::InverseCount(_)
            | SlotKind::Pooled { .. }
            | SlotKind::Dense(_) => SlotColumn::Real(Vec::new()),
            SlotKind::Bag { .. } => SlotColumn::Bag {
                offsets: vec![0],
                members: Vec::new(),
                weights: Vec::new(),
            },
        })
        .collect();
    for ex in examples {
        for (column, value) in slots.iter_mut().zip(&ex.slots) {
            match (column, value) {
                (SlotColumn::Index(v), SlotValue::Index(i)) => v.push(*i as u32),
                (SlotColumn::Real(v), SlotValue::Real(x)) => v.push(*x as f32),
                (SlotColumn::Real(v), SlotValue::Noise(x)) => v.extend(x.iter().map(|&z| z as f32)),
                (
                    SlotColumn::Bag {
                        offsets,
                        members,
                        weights,
                    },
                    SlotValue::Bag(bag),
                ) => {
                    for &(m, w) in bag {
                        members.push(m as u32);
                        weights.push(w as f32);
                    }
                    offsets.push(members.len() as u32);
                }
                (c, v) => panic!("slot value {v:?} for column {c:?}"),
            }
        }
    }
    Columns {
        slots,
        len: examples.len(),
    }
}

/// `params` rounded to f32, so the evaluator starts where the kernel does.
fn rounded(params: &Params) -> Params {
    let mut p = params.clone();
    for t in &mut p.tables {
        t.mapv_inplace(|v| v as f32 as f64);
    }
    p
}

/// f32 parameters with [`GUARD_ROWS`] rows of guards after every table and
/// every optimiser state.
fn guarded(params: &Params, optimizer: Optimizer) -> NativeParams {
    let mut native = NativeParams::new(params, optimizer);
    for t in 0..native.tables.len() {
        let lanes = native.lanes[t];
        native.tables[t].extend(std::iter::repeat_n(GUARD, GUARD_ROWS * lanes));
        for state in [&mut native.first[t], &mut native.second[t]] {
            if !state.is_empty() {
                state.extend(std::iter::repeat_n(GUARD, GUARD_ROWS * lanes));
            }
        }
        if !native.steps[t].is_empty() {
            native.steps[t].extend(std::iter::repeat_n(GUARD_STEPS, GUARD_ROWS));
        }
        native.touched[t].extend(std::iter::repeat_n(GUARD_TOUCHED, GUARD_ROWS));
    }
    native
}

/// Every guard is still exactly what [`guarded`] wrote.
fn assert_guards_intact(what: &str, g: &Graph, params: &Params, native: &NativeParams) {
    for (t, table) in g.tables.iter().enumerate() {
        let lanes = native.lanes[t];
        let rows = params.tables[t].nrows();
        let name = &table.name;
        let check = |field: &str, v: &[f32]| {
            if v.is_empty() {
                return;
            }
            assert_eq!(
                v.len(),
                (rows + GUARD_ROWS) * lanes,
                "{what}: {name}.{field}"
            );
            for (k, x) in v[rows * lanes..].iter().enumerate() {
                assert_eq!(
                    x.to_bits(),
                    GUARD.to_bits(),
                    "{what}: guard {k} after {name}.{field} was written: {x}"
                );
            }
        };
        check("values", &native.tables[t]);
        check("first", &native.first[t]);
        check("second", &native.second[t]);
        if !native.steps[t].is_empty() {
            assert!(
                native.steps[t][rows..].iter().all(|&s| s == GUARD_STEPS),
                "{what}: {name}.steps guard written"
            );
        }
        assert!(
            native.touched[t][rows..]
                .iter()
                .all(|&s| s == GUARD_TOUCHED),
            "{what}: {name}.touched guard written"
        );
    }
}

/// The native parameters without their guard rows, as the evaluator's.
fn unguarded(params: &Params, native: &NativeParams) -> Params {
    let tables = params
        .tables
        .iter()
        .zip(&native.tables)
        .map(|(t, v)| {
            let (rows, lanes) = t.dim();
            ndarray::Array2::from_shape_fn((rows, lanes), |(r, c)| v[r * lanes + c] as f64)
        })
        .collect();
    Params {
        domain_sizes: params.domain_sizes.clone(),
        tables,
    }
}

fn assert_close(what: &str, g: &Graph, expected: &Params, found: &Params, tol: f64) {
    for (k, (a, b)) in expected.tables.iter().zip(&found.tables).enumerate() {
        for ((at, x), y) in a.indexed_iter().zip(b.iter()) {
            let d = (y - x).abs() / x.abs().max(1.0);
            assert!(
                d <= tol,
                "{what}: {}[{}][{}]: evaluator {x}, kernel {y} (rel {d:.2e})",
                g.tables[k].name,
                at.0,
                at.1
            );
        }
    }
}

/// Examples at the edges of every domain through the step and the predict
/// kernels of `model` (from `file`), on tables followed by NaN guard rows.
fn check_edges(file: &str, model: &Model, base: &Dataset) {
    let (data, bind) = data_for(file, base);
    let rows: Vec<usize> = (0..data.len()).collect();
    let session = Session::new(model, &data, &rows, &bind).unwrap();
    let g = &session.gradient;
    let sizes = session.binding.domain_sizes();
    let optimizer = model.fit.optimizer;
    // Enough that a row is stepped more than once (Adam's counts, Adagrad's sums).
    let n = 8;
    let examples: Vec<Example> = (0..n).map(|e| edge_example(g, &sizes, e, true)).collect();
    let columns = columns_of(g, &examples);

    // The evaluator: one optimiser step per example, as the trainer takes.
    let start = rounded(&initialise(g, &sizes, model.fit.seed).unwrap());
    let mut expected = start.clone();
    let mut state = OptimiserState::new(optimizer, g, &expected);
    let mut loss = 0.0;
    for ex in &examples {
        let ev = evaluate(g, &expected, ex).unwrap_or_else(|e| panic!("{file}: {e}"));
        loss += ev.loss;
        for ((t, row), grad) in &ev.gradients.rows {
            state.step(&mut expected, *t, *row, grad, model.fit.lr);
        }
    }

    let kernel = train::compile_step(g, optimizer, recc_jit::DEFAULT_PREFETCH).unwrap();
    let mut native = guarded(&start, optimizer);
    let tables = TableWords::new(&mut native);
    let (done, native_loss) = Runner::new()
        .run(
            &kernel,
            g,
            &columns,
            &tables,
            &sizes,
            Hyper::new(optimizer, model.fit.lr),
        )
        .unwrap();
    let what = format!("{file} step");
    assert_eq!(done, n, "{what}: a loss was not finite (a guard read?)");
    assert!(native_loss.is_finite(), "{what}: loss {native_loss}");
    assert!(
        (native_loss - loss).abs() <= 1e-5 * loss.abs().max(1.0),
        "{what}: loss {native_loss}, evaluator {loss}"
    );
    assert_guards_intact(&what, g, &start, &native);
    assert_close(&what, g, &expected, &unguarded(&start, &native), 1e-5);

    // The predict kernel, on the trained rows and on the rows prediction
    // adds for unknown ids (the last row of each domain table).
    let f = &session.forward;
    let predict = Kernel::compile(f, KernelKind::Predict, 0).unwrap();
    for (label, params) in [
        ("predict", expected.clone()),
        ("predict with cold rows", with_cold_rows(f, &expected)),
    ] {
        let what = format!("{file} {label}");
        let sizes = &params.domain_sizes;
        let examples: Vec<Example> = (0..4).map(|e| edge_example(f, sizes, e, false)).collect();
        let columns = columns_of(f, &examples);
        let mut native = guarded(&params, Optimizer::Sgd);
        let tables = TableWords::new(&mut native);
        let mut runner = Runner::new();
        let (done, _) = runner
            .run(
                &predict,
                f,
                &columns,
                &tables,
                sizes,
                Hyper::new(Optimizer::Sgd, 0.0),
            )
            .unwrap();
        assert_eq!(done, examples.len(), "{what}");
        for (ex, &score) in examples.iter().zip(&runner.scores) {
            let want = evaluate(f, &params, ex)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .score
                .unwrap();
            assert!(score.is_finite(), "{what}: score {score} (a guard read?)");
            let d = (score as f64 - want).abs() / want.abs().max(1.0);
            assert!(d <= 1e-5, "{what}: score {score}, evaluator {want}");
        }
        assert_guards_intact(&what, f, &params, &native);
    }
}

#[test]
fn edge_indices_stay_inside_tables() {
    let base = builtin();
    for file in model_files() {
        check_edges(&file, &compile_file(&file), &base);
    }
    // Every kind of index at once, and rows pushed off the Poincaré ball,
    // with each optimiser.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/native");
    for name in ["edges.rec", "ball.rec"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let mut model = compile_text(name, &text).unwrap_or_else(|e| panic!("{e}"));
        for optimizer in [
            Optimizer::Sgd,
            Optimizer::Adagrad,
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
            },
        ] {
            model.fit.optimizer = optimizer;
            check_edges(&format!("{name} with {optimizer}"), &model, &base);
        }
    }
}

// ---------------------------------------------------------------------------
// Trained models: the same test metrics from either backend.

/// Train `file` for `epochs` on the built-in data with `backend` and measure
/// its test rows as `recc train` does, with a predictor on the same backend.
fn trained_metrics(
    file: &str,
    data: &Dataset,
    epochs: usize,
    backend: Backend,
) -> Vec<(String, f64)> {
    let model = compile_file(file);
    let s = holdout(data);
    let mut session = Session::new(&model, data, &s.train, &BindOptions::default()).unwrap();
    session.backend = backend;
    let trained = train_on(&session, data, &s.train, &config(&model, epochs, backend))
        .unwrap_or_else(|e| panic!("{file} ({backend}): {e}"));
    if backend == Backend::Jit {
        // The predictor falls back to the evaluator when this fails.
        Kernel::compile(&session.forward, KernelKind::Predict, 0)
            .unwrap_or_else(|e| panic!("{file}: no predict kernel: {e}"));
    }
    let p = Predictor::new(&session, &trained.params);
    let mut out = vec![("loss".to_string(), trained.history.last().unwrap().loss)];
    match session.task {
        Task::Rating => {
            let m = p.rating(data, &s.test).unwrap();
            out.push(("rmse".into(), m.rmse));
            out.push(("mae".into(), m.mae));
        }
        Task::Ranking => {
            let m = p.ranking(data, &s.train, &s.test, 10).unwrap();
            out.push(("auc".into(), m.auc));
            out.push(("precision@10".into(), m.precision));
            out.push(("ndcg@10".into(), m.ndcg));
        }
        Task::Loss => out.push(("test loss".into(), p.mean_loss(data, &s.test, 1).unwrap())),
    }
    out
}

#[test]
fn trained_metrics_agree() {
    let data = builtin();
    let mut failures = Vec::new();
    for file in [
        "biased_mf.rec",
        "svdpp.rec",
        "fm.rec",
        "bpr_mf.rec",
        "temporal_mf.rec",
        "variational_mf.rec",
    ] {
        let interp = trained_metrics(file, &data, 3, Backend::Interp);
        let jit = trained_metrics(file, &data, 3, Backend::Jit);
        for ((name, a), (_, b)) in interp.iter().zip(&jit) {
            println!(
                "{file:<20} {name:<13} interp {a:.6} jit {b:.6} diff {:.2e}",
                (a - b).abs()
            );
            // The training loss is shown, not compared: temporal_mf's
            // random-walk prior at s = 0.1 and SGD at 0.01 maps a
            // difference n[t] − n[t − 1] to its negative every step, so
            // rounding differences there are never damped, and the prior's
            // term (50 × that difference squared) differs in the third
            // decimal while the predictions agree to 1e-7.
            if name != "loss" && ((a - b).abs() > 0.002 || a.is_nan() != b.is_nan()) {
                failures.push(format!("{file}: {name} interp {a} jit {b}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------------------------------
// Hogwild.

#[test]
fn hogwild_threads_train() {
    let data = builtin();
    let model = compile_file("biased_mf.rec");
    let s = holdout(&data);
    let mut session = Session::new(&model, &data, &s.train, &BindOptions::default()).unwrap();
    session.backend = Backend::Jit;
    let run = |threads: usize| {
        let mut c = config(&model, 4, Backend::Jit);
        c.threads = threads;
        train_on(&session, &data, &s.train, &c).unwrap()
    };
    let rmse = |t: &Trained| {
        Predictor::new(&session, &t.params)
            .rating(&data, &s.test)
            .unwrap()
            .rmse
    };
    let one = run(1);
    let again = run(1);
    let bits = |p: &Params| -> Vec<u64> {
        p.tables
            .iter()
            .flat_map(|t| t.iter().map(|v| v.to_bits()))
            .collect()
    };
    assert_eq!(
        bits(&one.params),
        bits(&again.params),
        "one thread is not reproducible"
    );

    let two = run(2);
    let losses: Vec<f64> = two.history.iter().map(|r| r.loss).collect();
    assert!(
        losses.windows(2).all(|w| w[1] < w[0]),
        "two threads: the loss did not fall: {losses:?}"
    );
    let (r1, r2) = (rmse(&one), rmse(&two));
    println!("biased_mf test rmse: 1 thread {r1:.5}, 2 threads {r2:.5}; losses {losses:?}");
    assert!((r1 - r2).abs() <= 0.02, "1 thread {r1}, 2 threads {r2}");
}

// ---------------------------------------------------------------------------
// Random models.

/// A parameter row's shape.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shp {
    S,
    V(usize),
    M(usize, usize),
}

impl std::fmt::Display for Shp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shp::S => write!(f, "real"),
            Shp::V(k) => write!(f, "vec({k})"),
            Shp::M(a, b) => write!(f, "mat({a}, {b})"),
        }
    }
}

struct RandomParam {
    name: String,
    /// `None` for a global.
    domain: Option<&'static str>,
    shape: Shp,
    attrs: String,
    variational: bool,
}

/// Vector sizes the generator draws from.
const SIZES: [usize; 6] = [1, 3, 4, 5, 8, 13];

/// Writes one random, valid model as `.rec` text.
struct ModelGen {
    rng: StdRng,
    params: Vec<RandomParam>,
    occupation: bool,
    week: bool,
    genre: bool,
    history: bool,
    /// Plain row lookups made, for a penalty.
    lookups: Vec<String>,
    /// Start every row at random values: see [`ModelGen::param_for`].
    random_init: bool,
}

impl ModelGen {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.random_range(0..xs.len())]
    }

    fn size(&mut self) -> usize {
        self.pick(&SIZES)
    }

    fn constant(&mut self) -> &'static str {
        self.pick(&["0.5", "2", "0.25", "1.5", "3"])
    }

    /// A parameter over `domain` of `shape`: an existing one or a new one.
    fn param(&mut self, domain: Option<&'static str>, shape: Shp) -> String {
        self.param_for(domain, shape, false)
    }

    /// [`ModelGen::param`]; one a bag looks up cannot be variational.
    fn param_for(&mut self, domain: Option<&'static str>, shape: Shp, bag: bool) -> String {
        let existing: Vec<usize> = (0..self.params.len())
            .filter(|&k| {
                let p = &self.params[k];
                p.domain == domain && p.shape == shape && !(bag && p.variational)
            })
            .collect();
        if !existing.is_empty() && self.chance(0.5) {
            let k = self.pick(&existing);
            return self.params[k].name.clone();
        }
        let name = format!("p{}", self.params.len());
        let roll = self.rng.random_range(0..100);
        let (attrs, variational) = match (domain, shape) {
            (Some(_), _) if roll < 8 => ("nonneg init uniform(0, 0.1)".to_string(), false),
            (Some(_), Shp::V(k)) if roll < 14 && k > 1 => {
                ("on ball init uniform(-0.01, 0.01)".to_string(), false)
            }
            (Some(_), Shp::S | Shp::V(_)) if roll < 20 && !bag => {
                ("variational init normal(0, 0.1)".to_string(), true)
            }
            // Adagrad's and Adam's first step on a lane is ±lr whatever the
            // gradient's size, so where rows start equal (zeros, a
            // constant) sums of them cancel to rounding noise, and the
            // sign of that noise, which f32 and f64 need not share, moves
            // a row by a whole step. Those start at random values only.
            _ if roll < 40 && !self.random_init => (String::new(), false),
            // A vector of equal lanes makes `softmax(x) * v` sum to the
            // same number for every x, up to rounding: a max over
            // negatives then picks among exact ties by their last bits.
            (_, Shp::S) if roll < 48 && !self.random_init => {
                ("init constant(0.1)".to_string(), false)
            }
            _ if roll < 60 => ("init uniform(-0.1, 0.1)".to_string(), false),
            _ => ("init normal(0, 0.1)".to_string(), false),
        };
        self.params.push(RandomParam {
            name: name.clone(),
            domain,
            shape,
            attrs,
            variational,
        });
        name
    }

    /// A parameter looked up with the example's index (or a global).
    fn leaf(&mut self, shape: Shp) -> String {
        let mut domains = vec![None, Some("user"), Some("item"), Some("user"), Some("item")];
        if self.occupation {
            domains.push(Some("occupation"));
        }
        if self.week {
            domains.push(Some("week"));
        }
        let domain = self.pick(&domains);
        let name = self.param(domain, shape);
        let index = match domain {
            None => return name,
            Some("user") => "u",
            Some("item") => "i",
            Some("occupation") => "o",
            _ => self.pick(&["t", "t", "t - 1", "t + 1"]),
        };
        let lookup = format!("{name}[{index}]");
        if !index.contains(' ') {
            self.lookups.push(lookup.clone());
        }
        lookup
    }

    /// A bag of rows reduced to `shape` (scalar or vector), if the model
    /// has a bag input.
    fn bag(&mut self, shape: Shp, depth: usize) -> Option<String> {
        let mut bags = Vec::new();
        if self.genre {
            bags.push(("genre", "g"));
        }
        if self.history {
            bags.push(("item", "h"));
        }
        if bags.is_empty() {
            return None;
        }
        let (domain, input) = self.pick(&bags);
        let reduce = self.pick(&["sum", "mean"]);
        if shape == Shp::S && self.chance(0.5) {
            let k = self.size();
            let y = self.param_for(Some(domain), Shp::V(k), true);
            return Some(if self.chance(0.5) {
                format!("{reduce}(sq({y}[{input}]))")
            } else {
                let v = self.vector(k, depth.saturating_sub(1));
                format!("{reduce}(dot({y}[{input}], {v}))")
            });
        }
        let y = self.param_for(Some(domain), shape, true);
        let lookup = format!("{y}[{input}]");
        Some(match self.rng.random_range(0..4) {
            0 => format!("{reduce}({lookup})"),
            1 => {
                let f = self.pick(&["tanh", "sigmoid", "relu"]);
                format!("{reduce}({f}({lookup}))")
            }
            2 => format!("{reduce}({lookup} * {})", self.constant()),
            _ => format!("{reduce}(exp(0.5 * tanh({lookup})))"),
        })
    }

    /// An elementwise function of `x`, kept in a tame range.
    ///
    /// The log is of `0.5 + sq(x)`, not `1 + sq(x)`: f32 keeps only the
    /// bits of a small `sq(x)` that fit beside the 1 (the language has no
    /// `log1p`), so `log(1 + sq(x))` with `|x| ≪ 1` is a few percent off in
    /// any f32 backend, and a product with it passes that on to other
    /// gradients. (`stdlib/geometry.rec` writes `arcosh1p` for the same
    /// reason.)
    fn unary(&mut self, x: String, scalar: bool) -> String {
        match self.rng.random_range(0..if scalar { 7 } else { 5 }) {
            0 => format!("sigmoid({x})"),
            1 => format!("tanh({x})"),
            2 => format!("relu({x})"),
            3 => format!("exp(0.5 * tanh({x}))"),
            4 => format!("-({x})"),
            5 => format!("log(0.5 + sq({x}))"),
            _ => format!("softplus({x})"),
        }
    }

    fn scalar(&mut self, depth: usize) -> String {
        if depth == 0 {
            return self.leaf(Shp::S);
        }
        let d = depth - 1;
        match self.rng.random_range(0..14) {
            0 | 1 => {
                let k = self.size();
                let (a, b) = (self.vector(k, d), self.vector(k, d));
                format!("dot({a}, {b})")
            }
            2 => {
                let k = self.size();
                let f = self.pick(&["sum", "mean"]);
                format!("{f}({})", self.vector(k, d))
            }
            3 => {
                let k = self.size();
                format!("0.1 * sq({})", self.vector(k, d))
            }
            4 => {
                let k = self.size();
                format!("log(0.5 + sq({}))", self.vector(k, d))
            }
            5 | 6 => {
                let op = self.pick(&["+", "-", "*"]);
                let (a, b) = (self.scalar(d), self.scalar(d));
                format!("({a} {op} {b})")
            }
            7 => {
                let c = self.constant();
                let op = self.pick(&["*", "/"]);
                format!("{} {op} {c}", self.scalar(d))
            }
            8 => {
                let (a, b) = (self.scalar(d), self.scalar(d));
                format!("{a} / (1 + sq({b}))")
            }
            9 | 10 => {
                let x = self.scalar(d);
                self.unary(x, true)
            }
            11 => {
                let f = self.pick(&["max", "min"]);
                let (a, b) = (self.scalar(d), self.scalar(d));
                format!("{f}({a}, {b})")
            }
            12 => self.bag(Shp::S, d).unwrap_or_else(|| self.leaf(Shp::S)),
            _ => self.leaf(Shp::S),
        }
    }

    fn vector(&mut self, k: usize, depth: usize) -> String {
        if depth == 0 {
            return self.leaf(Shp::V(k));
        }
        let d = depth - 1;
        match self.rng.random_range(0..13) {
            0 | 1 => {
                let op = self.pick(&["+", "-", "*"]);
                let (a, b) = (self.vector(k, d), self.vector(k, d));
                format!("({a} {op} {b})")
            }
            2 => {
                let (a, s) = (self.vector(k, d), self.scalar(d));
                let op = self.pick(&["+", "*"]);
                format!("({a} {op} {s})")
            }
            3 => {
                let c = self.constant();
                let op = self.pick(&["*", "/"]);
                format!("{} {op} {c}", self.vector(k, d))
            }
            4 | 5 => {
                let x = self.vector(k, d);
                self.unary(x, false)
            }
            // Attention, as in mixture_mf: a bare softmax sums to 1, and
            // the gradient through a constant is rounding noise that
            // Adagrad and Adam would scale up to whole steps.
            //
            // Its argument is never `v + s` with a scalar `s` either: softmax
            // ignores a shift, so `s` would get a gradient of pure noise.
            6 => {
                let x = match self.rng.random_range(0..3) {
                    0 => self.leaf(Shp::V(k)),
                    1 => format!("tanh({})", self.vector(k, d)),
                    _ => {
                        let cols = self.size();
                        let m = self.leaf(Shp::M(k, cols));
                        format!("({m} @ {})", self.vector(cols, d))
                    }
                };
                let v = self.leaf(Shp::V(k));
                format!("(softmax({x}) * {v})")
            }
            7 | 8 => {
                let cols = self.size();
                let m = self.leaf(Shp::M(k, cols));
                format!("({m} @ {})", self.vector(cols, d))
            }
            9 if k > 1 => {
                let k1 = self.rng.random_range(1..k);
                let (a, b) = (self.vector(k1, d), self.vector(k - k1, d));
                format!("concat({a}, {b})")
            }
            10 => {
                let f = self.pick(&["max", "min"]);
                let (a, b) = (self.vector(k, d), self.vector(k, d));
                format!("{f}({a}, {b})")
            }
            11 => self
                .bag(Shp::V(k), d)
                .unwrap_or_else(|| self.leaf(Shp::V(k))),
            _ => self.leaf(Shp::V(k)),
        }
    }

    /// The source of model number `n`.
    fn model(seed: u64, n: usize) -> String {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(n as u64));
        let occupation = rng.random_bool(0.3);
        let week = rng.random_bool(0.35);
        let genre = rng.random_bool(0.3);
        let history = rng.random_bool(0.25);
        // Losses against negatives take the positive's and the negative's
        // gradients of every row they share (the user's), and where the
        // score's user side does not depend on the item the two cancel,
        // exactly (BPR, hinge) or nearly (logistic around a score of 0),
        // down to rounding noise. Adagrad and Adam scale any gradient to a
        // step of about lr, noise included, and the noise of f32 is not
        // that of f64; so models with negatives train with SGD.
        let logistic = format!(
            "loss logistic(R(u, i), 1) + logistic(R(u, j), 0) where j ~ negative(item{})",
            if rng.random_bool(0.5) {
                ", popularity"
            } else {
                ""
            }
        );
        let hinge_max = "loss hinge(R(u, i), max(R(u, j) for j ~ negative(item, 3)))";
        // (loss, has a rating target, takes the largest of several negatives)
        let (loss, rating, argmax) = match rng.random_range(0..6) {
            0 | 1 => ("loss mse(R(u, i), r)".to_string(), true, false),
            2 => ("r ~ normal(R(u, i), 1)".to_string(), true, false),
            3 => {
                let bpr = "loss bpr(R(u, i), R(u, j)) where j ~ negative(item)";
                (bpr.to_string(), false, false)
            }
            4 if rng.random_bool(0.5) => {
                let hinge = "loss hinge(R(u, i), R(u, j)) where j ~ negative(item)";
                (hinge.to_string(), false, false)
            }
            4 => (hinge_max.to_string(), false, true),
            _ => (logistic, false, false),
        };
        let optimizer = if rating {
            ["sgd(lr: 0.01)", "adagrad(lr: 0.05)", "adam(lr: 0.005)"][rng.random_range(0..3)]
        } else {
            "sgd(lr: 0.01)"
        };
        let mut gen = ModelGen {
            rng,
            params: Vec::new(),
            occupation,
            week,
            genre,
            history,
            lookups: Vec::new(),
            // The largest of several negatives: where item rows start equal
            // (zeros), the negatives tie, and f32 and f64 break ties of a
            // few ulps differently (sigmoid(1e-14) is 0.5 in f32). Rows
            // start at random values, as for Adagrad and Adam.
            random_init: argmax || !optimizer.starts_with("sgd"),
        };
        let depth = gen.rng.random_range(2..=5);
        let mut score = gen.scalar(depth);
        // The score ranks items for users: make it depend on both, and on
        // every optional input the model declares.
        if !score.contains("[u]") || !score.contains("[i]") {
            let k = gen.size();
            let p = gen.param(Some("user"), Shp::V(k));
            let q = gen.param(Some("item"), Shp::V(k));
            score = format!("{score} + dot({p}[u], {q}[i])");
        }
        if gen.occupation && !score.contains("[o]") {
            let k = gen.size();
            let d = gen.param(Some("occupation"), Shp::V(k));
            let q = gen.leaf(Shp::V(k));
            score = format!("{score} + dot({d}[o], {q})");
        }
        if gen.week && !score.contains("[t") {
            let k = gen.size();
            let n = gen.param(Some("week"), Shp::V(k));
            let shift = gen.pick(&["t", "t - 1", "t + 1", "t - 2"]);
            let a = gen.leaf(Shp::V(k));
            score = format!("{score} + dot({a}, {n}[{shift}])");
        }
        for (on, input) in [(gen.genre, "[g]"), (gen.history, "[h]")] {
            if on && !score.contains(input) {
                let (genre, history) = (gen.genre, gen.history);
                // Only this bag, for this term.
                gen.genre = input == "[g]";
                gen.history = input == "[h]";
                let term = gen.bag(Shp::S, 2).unwrap_or_default();
                gen.genre = genre;
                gen.history = history;
                score = format!("{score} + {term}");
            }
        }
        let mut extra = Vec::new();
        if !gen.lookups.is_empty() && gen.chance(0.5) {
            let mut terms = Vec::new();
            for _ in 0..gen.rng.random_range(1..=3) {
                let k = gen.rng.random_range(0..gen.lookups.len());
                let l = gen.lookups[k].clone();
                terms.push(format!("sq({l})"));
            }
            extra.push(format!("penalty 0.01 * ({})", terms.join(" + ")));
        }
        let week_tables: Vec<String> = gen
            .params
            .iter()
            .filter(|p| p.domain == Some("week") && !p.variational)
            .map(|p| p.name.clone())
            .collect();
        if let Some(n) = week_tables.first() {
            if gen.chance(0.7) {
                extra.push(format!("prior {n}[t] ~ normal({n}[t - 1], 0.3)"));
            }
        }
        let variational: Vec<(String, &'static str)> = gen
            .params
            .iter()
            .filter(|p| p.variational)
            .map(|p| (p.name.clone(), p.domain.unwrap_or("user")))
            .collect();
        for (name, domain) in variational {
            let index = match domain {
                "user" => "u",
                "item" => "i",
                "occupation" => "o",
                "week" => "t",
                _ => continue,
            };
            if gen.chance(0.7) {
                extra.push(format!("prior {name}[{index}] ~ normal(0, 1)"));
            }
        }

        let mut text = format!("model random_{n}\n\nuse stdlib.losses\n\n");
        text += "input u: user\ninput i: item\n";
        if rating {
            text += "input r: real\n";
        }
        if gen.occupation {
            text += "input o: occupation\n";
        }
        if gen.week {
            text += "input t: week\n";
        }
        if gen.genre {
            text += "input g: bag(genre)\n";
        }
        if gen.history {
            text += "input h: history(item)\n";
        }
        text += "\n";
        for p in &gen.params {
            let index = p.domain.map(|d| format!("[{d}]")).unwrap_or_default();
            text += &format!("param {}{index}: {} {}\n", p.name, p.shape, p.attrs);
        }
        text += &format!("\nlet R(u, i) = {score}\n\n{loss}\n");
        for e in extra {
            text += &format!("{e}\n");
        }
        text += &format!(
            "\nfit {{ optimizer: {optimizer}, epochs: 1, seed: {} }}\n",
            100 + n
        );
        text
    }
}

/// The largest difference of one step: the step kernel and the evaluator
/// (with the optimiser's step) each take example after example of `rows`
/// from the same parameters, the evaluator's, rounded to f32. Each keeps
/// its own optimiser state. `Err` names the first step that differs by
/// more than `tol`.
fn lockstep(
    session: &Session,
    model: &Model,
    data: &Dataset,
    rows: &[usize],
    tol: f64,
    kernel: &Kernel,
) -> Result<f64, String> {
    let g = &session.gradient;
    let b = &session.binding;
    let sizes = b.domain_sizes();
    let (optimizer, lr) = (model.fit.optimizer, model.fit.lr);
    let mut params = rounded(&initialise(g, &sizes, model.fit.seed).unwrap());
    let mut state = OptimiserState::new(optimizer, g, &params);
    let mut native = NativeParams::new(&params, optimizer);
    let tables = TableWords::new(&mut native);
    let mut runner = Runner::new();
    // `example` and `encode` draw negatives and noise in the same order.
    let seed = model.fit.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let (mut rng_eval, mut rng_jit) = (StdRng::seed_from_u64(seed), StdRng::seed_from_u64(seed));
    let mut ex = Example { slots: Vec::new() };
    let mut columns = b.columns();
    let mut worst = 0.0f64;
    for (k, &r) in rows.iter().enumerate() {
        b.example(data, &b.row(data, r), &mut rng_eval, true, &mut ex);
        columns.clear();
        b.encode_rows(data, &[r], &mut rng_jit, true, &mut columns);
        let ev = evaluate(g, &params, &ex).map_err(|e| e.to_string())?;
        if !ev.loss.is_finite() {
            break;
        }
        let mut next = params.clone();
        for ((t, row), grad) in &ev.gradients.rows {
            state.step(&mut next, *t, *row, grad, lr);
        }
        // The kernel starts from the evaluator's parameters, in place.
        for (mine, theirs) in native.tables.iter_mut().zip(&params.tables) {
            for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                *m = *t as f32;
            }
        }
        let (done, _) = runner
            .run(
                kernel,
                g,
                &columns,
                &tables,
                &sizes,
                Hyper::new(optimizer, lr),
            )
            .unwrap();
        if done != 1 {
            return Err(format!(
                "step {k}: the kernel's loss was not finite; evaluator {}",
                ev.loss
            ));
        }
        // Adagrad and Adam take a step of about lr in the direction of a
        // row's first gradients, however small. f32 carries a gradient with
        // an absolute error of about 1e-7 times the terms it is made of
        // (1 − tanh² of a saturated tanh, a near cancellation), so a lane
        // whose gradient is that small may step the other way, or (around
        // epsilon, 1e-8) by another amount. Those lanes are not compared;
        // the next step starts from the evaluator's parameters anyway. A
        // larger gradient still passes its relative error on to the step
        // whole: a hundredth of lr is allowed for it.
        let adaptive = optimizer != Optimizer::Sgd;
        let slack = if adaptive { 0.01 * lr } else { 0.0 };
        let gradient = |t: usize, row: usize, lane: usize| {
            ev.gradients
                .rows
                .get(&(TableId(t as u32), row))
                .map_or(0.0, |g| g[lane])
        };
        let jit = native.to_params();
        let (d, t, row, lane) = worst_lane(&next, &jit, slack, |t, row, lane| {
            adaptive && gradient(t, row, lane).abs() < ILL_CONDITIONED_GRADIENT
        });
        if d > tol {
            return Err(format!(
                "step {k}: {d:.3e} at {} (the evaluator's gradient there: {:e})",
                describe_lane(session, &next, &jit, t, row, lane),
                gradient(t, row, lane)
            ));
        }
        worst = worst.max(d);
        params = rounded(&next);
    }
    Ok(worst)
}

/// How two trainings of the same random model compare.
enum Comparison {
    /// Within [`PARAM_TOLERANCE`], or diverged in both.
    Agree(String),
    /// Both trained, to parameters further apart than that.
    Drift(String),
    /// One trained and the other did not, or another error.
    Disagree(String),
}

fn compare_random(
    session: &Session,
    interp: Result<Trained, TrainError>,
    jit: Result<Trained, TrainError>,
) -> Comparison {
    let magnitude = |p: &Params| {
        p.tables
            .iter()
            .flat_map(|t| t.iter())
            .fold(0.0f64, |m, v| m.max(v.abs()))
    };
    match (interp, jit) {
        (Ok(a), Ok(b)) => {
            let (diff, at) = max_rel_diff(session, &a.params, &b.params);
            if diff <= PARAM_TOLERANCE {
                Comparison::Agree(format!("max rel diff {diff:.2e}"))
            } else {
                Comparison::Drift(format!("max rel diff {diff:.3e} at {at}"))
            }
        }
        (Err(TrainError::Diverged { .. }), Err(TrainError::Diverged { .. })) => {
            Comparison::Agree("diverged in both".into())
        }
        (Err(TrainError::Diverged { .. }), Ok(t)) | (Ok(t), Err(TrainError::Diverged { .. }))
            if magnitude(&t.params) > 1e6 =>
        {
            Comparison::Agree("diverged in one; the other's parameters exceed 1e6".into())
        }
        (a, b) => {
            let outcome = |r: Result<Trained, TrainError>| match r {
                Ok(_) => "trained".to_string(),
                Err(e) => e.to_string(),
            };
            Comparison::Disagree(format!("interp: {}; jit: {}", outcome(a), outcome(b)))
        }
    }
}

/// One step from the same parameters: f32 rounding of one evaluation.
const LOCKSTEP_TOLERANCE: f64 = 1e-5;

/// Adagrad's and Adam's steps from gradients this small are left out of
/// the lockstep comparison: see [`lockstep`].
const ILL_CONDITIONED_GRADIENT: f64 = 1e-5;

/// `RECC_RANDOM_MODELS` and `RECC_RANDOM_SEED` run more, or other, random
/// models than the 40 of the fixed seed.
fn from_env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_models_agree() {
    let models: usize = from_env("RECC_RANDOM_MODELS", 40);
    let seed: u64 = from_env("RECC_RANDOM_SEED", 0x5eed_2024);
    let data = builtin();
    let s = holdout(&data);
    let rows: Vec<usize> = s.train.iter().copied().step_by(97).take(200).collect();
    let mut checked = 0;
    let mut failures = Vec::new();
    for n in 0..models {
        let text = ModelGen::model(seed, n);
        let model = match compile_text(&format!("random_{n}.rec"), &text) {
            Ok(m) => m,
            Err(e) => {
                println!("random_{n} does not check:\n{text}\n{e}");
                continue;
            }
        };
        checked += 1;
        let session = match Session::new(&model, &data, &rows, &BindOptions::default()) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("random_{n}: {e}\n{text}"));
                continue;
            }
        };
        let interp = train_on(&session, &data, &rows, &config(&model, 1, Backend::Interp));
        let jit = train_on(&session, &data, &rows, &config(&model, 1, Backend::Jit));
        // Trajectories can drift apart with no step wrong: where a gradient
        // passes through Adagrad's or Adam's epsilon (a parameter crossing
        // zero, say), the step's size follows the gradient's last bits, and
        // f32 and f64 round those differently. Then every step, taken from
        // the same parameters by both, must still agree.
        let compared = match compare_random(&session, interp, jit) {
            Comparison::Agree(m) => Ok(m),
            Comparison::Disagree(m) => Err(m),
            Comparison::Drift(drift) => {
                let g = &session.gradient;
                let kernel =
                    train::compile_step(g, model.fit.optimizer, recc_jit::DEFAULT_PREFETCH)
                        .map_err(|e| e.to_string());
                kernel
                    .and_then(|k| lockstep(&session, &model, &data, &rows, LOCKSTEP_TOLERANCE, &k))
                    .map(|d| format!("trajectories drift ({drift}), every step agrees ({d:.2e})"))
                    .map_err(|e| format!("{drift}; stepping together: {e}"))
            }
        };
        match compared {
            Ok(m) => println!("random_{n}: {m}"),
            Err(m) => failures.push(format!("random_{n}: {m}\n{text}")),
        }
    }
    println!("{checked} of {models} random models checked");
    for f in &failures {
        println!("FAILED {f}");
    }
    // At least 35 of 40.
    assert!(
        checked * 8 >= models * 7,
        "only {checked} of {models} random models checked"
    );
    assert!(
        failures.is_empty(),
        "{} random models disagree",
        failures.len()
    );
}

// ---------------------------------------------------------------------------
// Wide values: computed by loops over memory instead of unrolled registers.

/// A model's step kernel keeping values of at most `register_lanes` lanes
/// in registers.
fn step_kernel(g: &Graph, optimizer: Optimizer, register_lanes: usize) -> Kernel {
    let options = StepOptions {
        optimizer,
        max_ball_norm: MAX_BALL_NORM,
    };
    let kind = KernelKind::Step(options);
    Kernel::compile_with(g, kind, recc_jit::DEFAULT_PREFETCH, register_lanes)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Every step of `text` on `steps` rows of the built-in data, the kernel
/// (values wider than `register_lanes` in memory) against the evaluator.
fn wide_lockstep(
    name: &str,
    text: &str,
    register_lanes: usize,
    steps: usize,
) -> Result<f64, String> {
    let model = compile_text(name, text)?;
    let (data, bind) = data_for(name, &builtin());
    let s = holdout(&data);
    let rows: Vec<usize> = s.train.iter().copied().step_by(7).take(steps).collect();
    let session = Session::new(&model, &data, &rows, &bind).map_err(|e| e.to_string())?;
    let kernel = step_kernel(&session.gradient, model.fit.optimizer, register_lanes);
    lockstep(&session, &model, &data, &rows, LOCKSTEP_TOLERANCE, &kernel)
}

/// Every op, optimiser and constraint of `models/` computed the wide way:
/// with no value in registers, each step agrees with the evaluator.
#[test]
fn every_model_agrees_with_every_value_in_memory() {
    let mut failures = Vec::new();
    for file in model_files() {
        let text = std::fs::read_to_string(models_dir().join(&file)).expect("model file");
        match wide_lockstep(&file, &text, 0, 150) {
            Ok(d) => println!("{file:<22} every step within {d:.2e}"),
            Err(e) => failures.push(format!("{file}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The random models likewise, with no value in registers.
#[test]
fn random_models_agree_with_every_value_in_memory() {
    let seed: u64 = from_env("RECC_RANDOM_SEED", 0x5eed_2024);
    let mut failures = Vec::new();
    for n in 0..20 {
        let text = ModelGen::model(seed, n);
        let name = format!("random_{n}.rec");
        if compile_text(&name, &text).is_err() {
            continue;
        }
        match wide_lockstep(&name, &text, 0, 100) {
            Ok(d) => println!("random_{n}: every step within {d:.2e}"),
            Err(e) => failures.push(format!("random_{n}: {e}\n{text}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Models whose values are wider than registers hold, at the default
/// width: factors of 4096 lanes, a 256 × 256 matrix, and a mix of bags,
/// softmax, concatenation, a nonneg and a ball constraint over 160 lanes.
const WIDE_MODELS: [(&str, &str); 3] = [
    (
        "wide_mf.rec",
        "model wide_mf
use stdlib.losses
input u: user
input i: item
input r: real
param b: real
param w[user]: real
param m[item]: real
param p[user]: vec(4096) init normal(0, 0.01)
param q[item]: vec(4096) init normal(0, 0.01)
let R(u, i) = b + w[u] + m[i] + dot(p[u], q[i])
loss mse(R(u, i), r)
penalty 0.1 * (sq(p[u]) + sq(q[i]))
fit { optimizer: sgd(lr: 0.005), epochs: 1, seed: 42 }
",
    ),
    (
        "wide_mat.rec",
        "model wide_mat
use stdlib.losses
input u: user
input i: item
input r: real
param W: mat(256, 256) init normal(0, 0.01)
param p[user]: vec(256) init normal(0, 0.1)
param q[item]: vec(256) init normal(0, 0.1)
let R(u, i) = dot(p[u], W @ q[i])
loss mse(R(u, i), r)
fit { optimizer: sgd(lr: 0.05), epochs: 1, seed: 42 }
",
    ),
    (
        "wide_mix.rec",
        "model wide_mix
use stdlib.losses
use stdlib.geometry
input u: user
input i: item
input g: bag(genre)
input r: real
param p[user]: vec(160) init normal(0, 0.05)
param q[item]: vec(160) nonneg init uniform(0, 0.1)
param e[genre]: vec(160) init normal(0, 0.05)
param a[user]: vec(150) on ball init uniform(-0.001, 0.001)
param c[item]: vec(150) on ball init uniform(-0.001, 0.001)
param W: mat(6, 320) init normal(0, 0.05)
param v: vec(6) init normal(0, 0.1)
let R(u, i) = dot(p[u] + mean(e[g]), q[i]) + sum(softmax(p[u]) * q[i])
    + dot(v, tanh(W @ concat(relu(p[u]), q[i]))) - poincare_distance(a[u], c[i])
loss mse(R(u, i), r)
fit { optimizer: adagrad(lr: 0.01), epochs: 1, seed: 7 }
",
    ),
];

#[test]
fn wide_models_agree_at_the_default_width() {
    let mut failures = Vec::new();
    for (name, text) in WIDE_MODELS {
        match wide_lockstep(name, text, recc_jit::REGISTER_LANES, 60) {
            Ok(d) => println!("{name}: every step within {d:.2e}"),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The widest shapes the checker allows compile as loops, in time linear
/// in the graph: factors of 65536 lanes, a 256 × 256 matrix (whose
/// gradient is an outer product as wide) and the widest model of
/// `models/`. Natively each takes milliseconds; the bound leaves room for
/// a loaded machine.
#[test]
fn widest_shapes_compile_quickly() {
    const BOUND: std::time::Duration = std::time::Duration::from_secs(5);
    let read = |file: &str| std::fs::read_to_string(models_dir().join(file)).expect("model file");
    let texts = [
        read("biased_mf.rec").replace("vec(64)", "vec(65536)"),
        WIDE_MODELS[1].1.to_string(),
        read("ncf.rec"),
    ];
    let models: Vec<Model> = texts
        .iter()
        .map(|t| compile_text("wide.rec", t).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let (done, wait) = std::sync::mpsc::channel();
    // Compiled on a thread of its own, so a slow compiler fails the test
    // at the bound instead of running on.
    std::thread::spawn(move || {
        for model in models {
            let started = std::time::Instant::now();
            let gradient = recc_compiler::gradient_graph(&model).unwrap();
            let forward = recc_compiler::forward_graph(&model).unwrap();
            let step = train::compile_step(&gradient, model.fit.optimizer, 8);
            let predict = Kernel::compile(&forward, KernelKind::Predict, 0);
            let ok = step.is_ok() && predict.is_ok();
            let _ = done.send((model.name.clone(), started.elapsed(), ok));
        }
    });
    let started = std::time::Instant::now();
    for _ in 0..texts.len() {
        let left = BOUND.saturating_sub(started.elapsed());
        match wait.recv_timeout(left) {
            Ok((name, took, ok)) => {
                assert!(ok, "{name}: the kernels did not compile");
                println!("{name}: step and predict kernels compiled in {took:.2?}");
            }
            Err(_) => panic!("compiling the widest shapes took more than {BOUND:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// A known divergence.

/// The evaluator sums every gradient of a row within one example and steps
/// it once; the step kernel steps a row once per bag member that names it
/// (and once more for an index lookup of the same table). With SGD the two
/// agree; Adagrad and Adam do not (Adam also counts two steps). Histories
/// repeat an item when the data has repeated (user, item) rows, and a
/// model may look a table up by both an item and a history of items.
#[test]
#[ignore = "the native step takes one optimiser step per occurrence of a row in an example"]
fn a_row_repeated_in_one_example_takes_one_step() {
    let data = builtin();
    let text = "model repeated\nuse stdlib.losses\n\
        input u: user\ninput i: item\ninput h: history(item)\ninput g: bag(genre)\ninput r: real\n\
        param y[item]: vec(3) init normal(0, 0.1)\n\
        param e[genre]: vec(3) init normal(0, 0.1)\n\
        param p[user]: vec(3) init normal(0, 0.1)\n\
        let R(u, i) = dot(p[u], y[i] + mean(y[h]) + sum(e[g]))\n\
        loss mse(R(u, i), r)\n\
        fit { optimizer: OPTIMIZER, epochs: 1, seed: 3 }\n";
    let mut failures = Vec::new();
    for optimizer in ["sgd(lr: 0.1)", "adagrad(lr: 0.1)", "adam(lr: 0.1)"] {
        let model = compile_text("repeated.rec", &text.replace("OPTIMIZER", optimizer)).unwrap();
        let rows: Vec<usize> = (0..data.len()).collect();
        let session = Session::new(&model, &data, &rows, &BindOptions::default()).unwrap();
        let g = &session.gradient;
        let sizes = session.binding.domain_sizes();
        let (opt, lr) = (model.fit.optimizer, model.fit.lr);
        for (case, history, genres) in [
            (
                "item 5 in its own history",
                vec![(5, 1.0), (9, 1.0)],
                vec![(1, 1.0)],
            ),
            (
                "item 9 twice in the history",
                vec![(9, 1.0), (9, 1.0)],
                vec![(1, 1.0)],
            ),
            (
                "genre 2 twice in the bag",
                vec![(9, 1.0)],
                vec![(2, 1.0), (2, 1.0)],
            ),
        ] {
            let slots = g
                .slots
                .iter()
                .map(|s| match s.name.as_str() {
                    "u" => SlotValue::Index(0),
                    "i" => SlotValue::Index(5),
                    "r" => SlotValue::Real(4.0),
                    "h" => SlotValue::Bag(history.clone()),
                    _ => SlotValue::Bag(genres.clone()),
                })
                .collect();
            let ex = Example { slots };
            let start = rounded(&initialise(g, &sizes, model.fit.seed).unwrap());
            let mut expected = start.clone();
            let mut state = OptimiserState::new(opt, g, &expected);
            let ev = evaluate(g, &expected, &ex).unwrap();
            for ((t, row), grad) in &ev.gradients.rows {
                state.step(&mut expected, *t, *row, grad, lr);
            }
            let kernel = train::compile_step(g, opt, 0).unwrap();
            let mut native = NativeParams::new(&start, opt);
            let tables = TableWords::new(&mut native);
            let columns = columns_of(g, &[ex]);
            Runner::new()
                .run(&kernel, g, &columns, &tables, &sizes, Hyper::new(opt, lr))
                .unwrap();
            let (d, at) = max_rel_diff(&session, &expected, &native.to_params());
            println!("{optimizer}, {case}: {d:.3e} at {at}");
            if d > 1e-5 {
                failures.push(format!("{optimizer}, {case}: {d:.3e} at {at}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Bag members are streamed: each member's value is computed where a loop
/// reads it. A bag read by several sums and by its own gradient (the fm
/// pairwise term, a penalty on the members' rows), with a member repeated
/// and the example's item also in its history, still agrees under SGD,
/// whose steps add up as the evaluator's one summed step: every member's
/// gradient is computed from the rows before any update.
#[test]
fn streamed_bags_with_repeated_members_agree_under_sgd() {
    let data = builtin();
    let text = "model streamed\nuse stdlib.losses\nuse stdlib.fm\n\
        input u: user\ninput i: item\ninput h: history(item)\ninput g: bag(genre)\ninput r: real\n\
        param y[item]: vec(8) init normal(0, 0.1)\n\
        param e[genre]: vec(8) init normal(0, 0.1)\n\
        param p[user]: vec(8) init normal(0, 0.1)\n\
        let R(u, i) = dot(p[u], y[i] + mean(y[h]) + sum(e[g])) + fm2(y[h])\n\
        loss mse(R(u, i), r)\n\
        penalty 0.1 * mean(sq(y[h]))\n\
        fit { optimizer: sgd(lr: 0.05), epochs: 1, seed: 3 }\n";
    let model = compile_text("streamed.rec", text).unwrap();
    let rows: Vec<usize> = (0..data.len()).collect();
    let session = Session::new(&model, &data, &rows, &BindOptions::default()).unwrap();
    let g = &session.gradient;
    let sizes = session.binding.domain_sizes();
    let (opt, lr) = (model.fit.optimizer, model.fit.lr);
    let mut failures = Vec::new();
    for (case, history, genres) in [
        (
            "distinct members",
            vec![(3, 1.0), (9, 1.0), (12, 1.0)],
            vec![(1, 1.0), (2, 1.0)],
        ),
        (
            "item 5 in its own history",
            vec![(5, 1.0), (9, 1.0)],
            vec![(1, 1.0)],
        ),
        (
            "item 9 twice in the history",
            vec![(9, 1.0), (4, 1.0), (9, 1.0)],
            vec![(1, 1.0)],
        ),
        (
            "genre 2 twice in the bag",
            vec![(9, 1.0)],
            vec![(2, 1.0), (2, 1.0)],
        ),
        ("an empty history", vec![], vec![(2, 1.0)]),
    ] {
        let slots = g
            .slots
            .iter()
            .map(|s| match s.name.as_str() {
                "u" => SlotValue::Index(0),
                "i" => SlotValue::Index(5),
                "r" => SlotValue::Real(4.0),
                "h" => SlotValue::Bag(history.clone()),
                _ => SlotValue::Bag(genres.clone()),
            })
            .collect();
        let ex = Example { slots };
        let start = rounded(&initialise(g, &sizes, model.fit.seed).unwrap());
        let mut expected = start.clone();
        let mut state = OptimiserState::new(opt, g, &expected);
        let ev = evaluate(g, &expected, &ex).unwrap();
        for ((t, row), grad) in &ev.gradients.rows {
            state.step(&mut expected, *t, *row, grad, lr);
        }
        let kernel = train::compile_step(g, opt, 0).unwrap();
        let mut native = NativeParams::new(&start, opt);
        let tables = TableWords::new(&mut native);
        let columns = columns_of(g, &[ex]);
        Runner::new()
            .run(&kernel, g, &columns, &tables, &sizes, Hyper::new(opt, lr))
            .unwrap();
        let (d, at) = max_rel_diff(&session, &expected, &native.to_params());
        println!("{case}: {d:.3e} at {at}");
        if d > 1e-5 {
            failures.push(format!("{case}: {d:.3e} at {at}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// One block of `file`'s training examples, encoded, with its session.
fn encoded_block(file: &str, base: &Dataset, n: usize) -> (Session, Columns) {
    let model = compile_file(file);
    let (data, bind) = data_for(file, base);
    let rows: Vec<usize> = (0..data.len()).collect();
    let session = Session::new(&model, &data, &rows, &bind).unwrap();
    let mut columns = session.binding.columns();
    let mut rng = StdRng::seed_from_u64(3);
    session
        .binding
        .encode_rows(&data, &rows[..n], &mut rng, true, &mut columns);
    (session, columns)
}

/// Columns, offsets and tables that break the kernel's layout are refused
/// before the kernel runs, naming what is wrong; the tables stay as they
/// were.
#[test]
fn bad_columns_offsets_and_tables_are_refused_before_the_kernel_runs() {
    let base = builtin();
    for (file, optimizer) in [
        ("biased_mf.rec", Optimizer::Sgd),
        ("svdpp.rec", Optimizer::Adagrad),
        (
            "svdpp.rec",
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
            },
        ),
    ] {
        let (session, good) = encoded_block(file, &base, 64);
        let g = &session.gradient;
        let sizes = session.binding.domain_sizes();
        let kernel = train::compile_step(g, optimizer, 0).unwrap();
        let start = initialise(g, &sizes, 1).unwrap();
        let hyper = Hyper::new(optimizer, 0.01);
        let run = |columns: &Columns, native: &mut NativeParams, sizes: &[usize]| {
            let tables = TableWords::new(native);
            Runner::new().run(&kernel, g, columns, &tables, sizes, hyper)
        };
        let refused =
            |columns: &Columns, native: &mut NativeParams, sizes: &[usize], says: &str| {
                let before = native.tables.clone();
                match run(columns, native, sizes) {
                    Err(e) => {
                        let m = e.to_string();
                        assert!(m.contains(says), "{file}: expected `{says}` in: {m}");
                    }
                    Ok(r) => panic!("{file}: ran ({r:?}) where `{says}` was expected"),
                }
                assert_eq!(
                    native.tables, before,
                    "{file}: a refused block changed the tables"
                );
            };
        let mut native = NativeParams::new(&start, optimizer);
        assert_eq!(run(&good, &mut native, &sizes).unwrap().0, 64, "{file}");

        let index_slot = g
            .slots
            .iter()
            .position(|s| matches!(s.kind, SlotKind::Index(_)))
            .unwrap();
        let SlotKind::Index(d) = g.slots[index_slot].kind else {
            unreachable!()
        };
        let name = &g.slots[index_slot].name;

        // An index equal to its domain's size.
        let mut bad = good.clone();
        if let SlotColumn::Index(v) = &mut bad.slots[index_slot] {
            v[5] = sizes[d.index()] as u32;
        }
        let says = format!("slot `{name}`: example 6 holds index {}", sizes[d.index()]);
        refused(&bad, &mut native, &sizes, &says);

        // A column shorter than the block.
        let mut bad = good.clone();
        if let SlotColumn::Index(v) = &mut bad.slots[index_slot] {
            v.pop();
        }
        refused(&bad, &mut native, &sizes, "holds 63 values, 64 needed");

        // A column missing, domain sizes missing.
        let mut bad = good.clone();
        bad.slots.pop();
        refused(&bad, &mut native, &sizes, "input columns given for");
        refused(&good, &mut native, &sizes[1..], "domain sizes given for");

        // A domain said to be larger than its tables: every table over it
        // is then short.
        let mut larger = sizes.clone();
        larger[d.index()] += 1;
        refused(&good, &mut native, &larger, "its values hold");

        // Short tables: values, and each piece of optimiser state.
        let t = g.tables.iter().position(|t| t.domain == Some(d)).unwrap();
        let mut short = NativeParams::new(&start, optimizer);
        short.tables[t].pop();
        refused(&good, &mut short, &sizes, "its values hold");
        let mut short = NativeParams::new(&start, optimizer);
        short.touched[t].pop();
        refused(&good, &mut short, &sizes, "its touched flags hold");
        if optimizer != Optimizer::Sgd {
            let mut short = NativeParams::new(&start, optimizer);
            short.first[t].clear();
            refused(&good, &mut short, &sizes, "its optimiser state hold 0");
        }
        if matches!(optimizer, Optimizer::Adam { .. }) {
            let mut short = NativeParams::new(&start, optimizer);
            short.steps[t].clear();
            refused(&good, &mut short, &sizes, "its step counts hold 0");
        }

        // Bags: offsets out of order, past the members, a member outside.
        let Some(bag_slot) = g
            .slots
            .iter()
            .position(|s| matches!(s.kind, SlotKind::Bag { .. }))
        else {
            continue;
        };
        let SlotKind::Bag { domain: bd, .. } = g.slots[bag_slot].kind else {
            unreachable!()
        };
        let mut bad = good.clone();
        if let SlotColumn::Bag { offsets, .. } = &mut bad.slots[bag_slot] {
            // Example 10's bag ends before it starts.
            offsets[10] = offsets[11] + 1;
        }
        refused(&bad, &mut native, &sizes, "the bag of example");
        let mut bad = good.clone();
        if let SlotColumn::Bag {
            offsets, members, ..
        } = &mut bad.slots[bag_slot]
        {
            let last = offsets.len() - 1;
            offsets[last] = members.len() as u32 + 1;
        }
        refused(&bad, &mut native, &sizes, "past its");
        let mut bad = good.clone();
        if let SlotColumn::Bag {
            offsets, members, ..
        } = &mut bad.slots[bag_slot]
        {
            let at = offsets[20] as usize;
            assert!(at < members.len(), "{file}: example 21 has an empty bag");
            members[at] = sizes[bd.index()] as u32;
        }
        refused(&bad, &mut native, &sizes, "outside domain");
        let mut bad = good.clone();
        if let SlotColumn::Bag { offsets, .. } = &mut bad.slots[bag_slot] {
            offsets.truncate(10);
        }
        refused(
            &bad,
            &mut native,
            &sizes,
            "offsets holds 10 values, 65 needed",
        );
    }
}

/// The predict kernel is checked the same way: a short table is refused.
#[test]
fn a_predict_kernel_with_a_short_table_is_refused() {
    let base = builtin();
    let (session, columns) = encoded_block("biased_mf.rec", &base, 32);
    let f = &session.forward;
    let sizes = session.binding.domain_sizes();
    let predict = Kernel::compile(f, KernelKind::Predict, 0).unwrap();
    let params = initialise(f, &sizes, 1).unwrap();
    let mut native = NativeParams::new(&params, Optimizer::Sgd);
    let tables = TableWords::new(&mut native);
    let hyper = Hyper::new(Optimizer::Sgd, 0.0);
    assert!(Runner::new()
        .run(&predict, f, &columns, &tables, &sizes, hyper)
        .is_ok());
    let p = f.tables.iter().position(|t| t.name == "p").unwrap();
    native.tables[p].truncate(10);
    let tables = TableWords::new(&mut native);
    let err = Runner::new()
        .run(&predict, f, &columns, &tables, &sizes, hyper)
        .unwrap_err();
    assert!(err.to_string().contains("table `p`"), "{err}");
}

// ---------------------------------------------------------------------------
// Many index nodes of one table: their rows are updated by one loop.

/// `models/hinge_mf.rec` with `n` sampled negatives.
fn hinge_mf_with_negatives(n: usize) -> String {
    let text = std::fs::read_to_string(models_dir().join("hinge_mf.rec")).expect("model file");
    assert!(text.contains("negative(item, 5)"), "hinge_mf.rec changed");
    text.replace("negative(item, 5)", &format!("negative(item, {n})"))
}

/// A ranking model's 64 sampled negatives and its positive are 65 index
/// nodes of `q` (and of `m`): the step kernel compiles in time linear in
/// them, not quadratic, and each step agrees with the evaluator (negatives
/// of 400 items repeat within an example, so rows are shared).
#[test]
fn sixty_four_negatives_compile_quickly_and_agree() {
    const BOUND: std::time::Duration = std::time::Duration::from_secs(5);
    let text = hinge_mf_with_negatives(64);
    let model = compile_text("hinge_mf.rec", &text).unwrap_or_else(|e| panic!("{e}"));
    let (done, wait) = std::sync::mpsc::channel();
    // Compiled on a thread of its own, so a slow compiler fails the test
    // at the bound instead of running on.
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let gradient = recc_compiler::gradient_graph(&model).unwrap();
        let ok = train::compile_step(&gradient, model.fit.optimizer, 8).is_ok();
        let _ = done.send((started.elapsed(), ok));
    });
    match wait.recv_timeout(BOUND) {
        Ok((took, ok)) => {
            assert!(ok, "the step kernel did not compile");
            println!("64 negatives: step kernel compiled in {took:.2?}");
        }
        Err(_) => panic!("compiling 64 negatives took more than {BOUND:?}"),
    }
    let d = wide_lockstep("hinge_mf.rec", &text, recc_jit::REGISTER_LANES, 40)
        .unwrap_or_else(|e| panic!("{e}"));
    println!("64 negatives: every step within {d:.2e}");
}

/// Nine index nodes of a table of 21 rows (the positive occupation and
/// eight negatives) name the same rows often: each shared row takes one
/// step with the summed gradient, as in the evaluator, with each
/// optimiser, in registers and in memory.
#[test]
fn index_nodes_sharing_rows_in_a_large_group_agree() {
    let mut failures = Vec::new();
    for optimizer in ["sgd(lr: 0.05)", "adagrad(lr: 0.05)", "adam(lr: 0.01)"] {
        for register_lanes in [recc_jit::REGISTER_LANES, 0] {
            let text = format!(
                "model shared_rows\nuse stdlib.losses\n\
                 input u: user\ninput o: occupation\n\
                 param p[user]: vec(6) init normal(0, 0.1)\n\
                 param w[occupation]: vec(6) init normal(0, 0.1)\n\
                 param c[occupation]: real init normal(0, 0.1)\n\
                 let R(u, o) = c[o] + dot(p[u], w[o])\n\
                 loss hinge(R(u, o), max(R(u, j) for j ~ negative(occupation, 8)))\n\
                 fit {{ optimizer: {optimizer}, epochs: 1, seed: 5 }}\n"
            );
            match wide_lockstep("shared_rows.rec", &text, register_lanes, 60) {
                Ok(d) => println!("{optimizer}, {register_lanes} lanes: within {d:.2e}"),
                Err(e) => failures.push(format!("{optimizer}, {register_lanes} lanes: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Visits in a shuffled order over examples laid out once (what the trainer
/// does each epoch) update the tables exactly as the same examples encoded
/// in that order do, for every model: the same kernel reads the same
/// values, and the drawn columns (negatives, noise) come from the generator
/// in the same order.
#[test]
fn laid_out_examples_in_a_shuffled_order_train_as_encoded_ones() {
    use rand::seq::SliceRandom;
    use recc_runtime::native::LaidOut;
    let base = builtin();
    for file in model_files() {
        let model = compile_file(&file);
        let (data, bind) = data_for(&file, &base);
        let rows: Vec<usize> = (0..data.len().min(3000)).collect();
        let session = Session::new(&model, &data, &rows, &bind).unwrap();
        let g = &session.gradient;
        let sizes = session.binding.domain_sizes();
        let optimizer = model.fit.optimizer;
        let kernel = train::compile_step(g, optimizer, recc_jit::DEFAULT_PREFETCH).unwrap();
        let start = initialise(g, &sizes, 3).unwrap();
        let hyper = Hyper::new(optimizer, model.fit.lr);
        let mut order: Vec<u32> = (0..rows.len() as u32).collect();
        order.shuffle(&mut StdRng::seed_from_u64(11));
        let shuffled: Vec<usize> = order.iter().map(|&p| rows[p as usize]).collect();

        let mut encoded = session.binding.columns();
        let mut rng = StdRng::seed_from_u64(5);
        session
            .binding
            .encode_rows(&data, &shuffled, &mut rng, true, &mut encoded);
        let mut expected = NativeParams::new(&start, optimizer);
        let tables = TableWords::new(&mut expected);
        let want = Runner::new()
            .run(&kernel, g, &encoded, &tables, &sizes, hyper)
            .unwrap();

        let mut examples = session.binding.columns();
        session.binding.encode_examples(&data, &rows, &mut examples);
        let laid = LaidOut::new(&kernel, g, examples, &sizes).unwrap();
        let mut found = NativeParams::new(&start, optimizer);
        let tables = TableWords::new(&mut found);
        let mut runner = Runner::new();
        let mut rng = StdRng::seed_from_u64(5);
        let (mut done, mut loss) = (0, 0.0);
        // In blocks, as the trainer runs them.
        for (block, block_rows) in order.chunks(1000).zip(shuffled.chunks(1000)) {
            let mut drawn = session.binding.columns();
            session
                .binding
                .encode_draws(&data, block_rows, &mut rng, true, &mut drawn);
            let (n, l) = runner
                .run_laid_out(&kernel, g, &laid, block, &drawn, &tables, &sizes, hyper)
                .unwrap();
            done += n;
            loss += l;
            // A loss that is not finite stops the trainer there (an
            // ALS-only model's SGD steps diverge by design).
            if n < block.len() {
                break;
            }
        }
        assert_eq!(done, want.0, "{file}: examples done");
        // Summed per block here, in one call there.
        assert!(
            (loss - want.1).abs() <= 1e-12 * want.1.abs().max(1.0),
            "{file}: summed loss {loss}, {} encoded",
            want.1
        );
        assert_eq!(found.tables, expected.tables, "{file}: trained tables");

        // Gathered block by block (what a large training set does), the same.
        let mut gathered = NativeParams::new(&start, optimizer);
        let tables = TableWords::new(&mut gathered);
        let mut rng = StdRng::seed_from_u64(5);
        for (block, block_rows) in order.chunks(1000).zip(shuffled.chunks(1000)) {
            let mut columns = session.binding.columns();
            laid.gather(block, &mut columns);
            session
                .binding
                .encode_draws(&data, block_rows, &mut rng, true, &mut columns);
            let (n, _) = runner
                .run(&kernel, g, &columns, &tables, &sizes, hyper)
                .unwrap();
            if n < block.len() {
                break;
            }
        }
        assert_eq!(gathered.tables, expected.tables, "{file}: gathered");

        // An order naming an example that was not laid out is refused.
        let past = [0, rows.len() as u32];
        let mut drawn = session.binding.columns();
        let mut rng = StdRng::seed_from_u64(5);
        session
            .binding
            .encode_draws(&data, &rows[..2], &mut rng, true, &mut drawn);
        let err = runner
            .run_laid_out(&kernel, g, &laid, &past, &drawn, &tables, &sizes, hyper)
            .unwrap_err();
        assert!(
            err.reason
                .contains(&format!("visit 2 names example {}", rows.len())),
            "{file}: {err}"
        );
        // Drawn columns shorter than the visits are refused, where there are any.
        if session.binding.has_draws() {
            let err = runner
                .run_laid_out(
                    &kernel,
                    g,
                    &laid,
                    &[0, 1, 2],
                    &drawn,
                    &tables,
                    &sizes,
                    hyper,
                )
                .unwrap_err();
            assert!(
                err.reason.contains("needed for 3 examples"),
                "{file}: {err}"
            );
        }
    }
}
