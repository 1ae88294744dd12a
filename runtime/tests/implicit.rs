//! Weighted ALS for implicit feedback: the sum over unobserved pairs is
//! added up without visiting the pairs, and must equal the sum over every
//! pair computed one pair at a time.

use recc_compiler::interp::{evaluate, Example, Params, SlotValue};
use recc_compiler::ir::{SlotKind, TableId};
use recc_compiler::model::{Model, Solver};
use recc_runtime::bind::BindOptions;
use recc_runtime::data::Dataset;
use recc_runtime::split;
use recc_runtime::synth::{self, SynthConfig};
use recc_runtime::train::{self, Session, Silent, TrainConfig};
use std::collections::BTreeMap;

fn compile_text(name: &str, text: &str) -> Model {
    let compiled = recc_compiler::compile(name, text);
    assert!(!compiled.has_errors(), "{}", compiled.render_diagnostics());
    compiled.model.expect("a checked model")
}

/// Weighted MF as `models/wals.rec` writes it, small, with the tables in
/// either order (a sweep solves them in declaration order).
fn wals(tables: [&str; 2]) -> String {
    format!(
        "\
input u: user
input i: item
input r: real
{}
{}
let R(u, i) = dot(p[u], q[i])
loss (1 + 4 * log(1 + r)) * sq(R(u, i) - 1)
loss sq(R(u, j)) where j ~ unobserved(item)
prior p[u] ~ normal(0, 2) once
prior q[i] ~ normal(0, 2) once
fit {{ solver: als, sweeps: 1, seed: 3 }}
",
        tables[0], tables[1]
    )
}

const P: &str = "param p[user]: vec(3) init normal(0, 0.3)";
const Q: &str = "param q[item]: vec(3) init normal(0, 0.3)";

fn data() -> Dataset {
    synth::generate(&SynthConfig {
        users: 14,
        items: 11,
        ratings_per_user: 3,
        ..SynthConfig::default()
    })
}

type Gradient = BTreeMap<(TableId, usize), Vec<f64>>;

fn add(total: &mut Gradient, rows: BTreeMap<(TableId, usize), Vec<f64>>) {
    for (key, g) in rows {
        let e = total.entry(key).or_insert_with(|| vec![0.0; g.len()]);
        for (a, b) in e.iter_mut().zip(&g) {
            *a += b;
        }
    }
}

/// The gradient of the whole objective, brute force: every training
/// example's terms (which subtract the observed pairs' share of the sum),
/// then the unobserved term on every (user, item) pair, one at a time.
fn brute_force_gradient(
    model: &Model,
    session: &Session,
    data: &Dataset,
    params: &Params,
    rows: &[usize],
) -> Gradient {
    let mut total = Gradient::new();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut ex = Example { slots: Vec::new() };
    for &r in rows {
        let row = session.binding.row(data, r);
        session.binding.example(data, &row, &mut rng, true, &mut ex);
        add(
            &mut total,
            evaluate(&session.gradient, params, &ex)
                .unwrap()
                .gradients
                .rows,
        );
    }
    let (pairs, over, by) = recc_compiler::lower::lower_unobserved(model)
        .unwrap()
        .expect("a sum over unobserved pairs");
    let pairs = recc_compiler::simplify::simplify(&pairs).unwrap();
    let pairs =
        recc_compiler::simplify::simplify(&recc_compiler::grad::grad(&pairs).unwrap()).unwrap();
    let size = |slot: recc_compiler::ir::SlotId| match pairs.slots[slot.index()].kind {
        SlotKind::Index(d) => params.domain_sizes[d.index()],
        _ => panic!("a pair's member is an index"),
    };
    let mut pair = Example {
        slots: pairs
            .slots
            .iter()
            .map(|s| match s.kind {
                SlotKind::Real => SlotValue::Real(0.0),
                _ => SlotValue::Index(0),
            })
            .collect(),
    };
    for a in 0..size(by) {
        for b in 0..size(over) {
            pair.slots[by.index()] = SlotValue::Index(a);
            pair.slots[over.index()] = SlotValue::Index(b);
            add(
                &mut total,
                evaluate(&pairs, params, &pair).unwrap().gradients.rows,
            );
        }
    }
    total
}

/// One sweep leaves the table solved last at its exact optimum given the
/// other, over every pair: the brute-force gradient of each of its rows is
/// zero, rows without an example included. Both orders, so both sides'
/// shares (a sum over items for users, over users for items) are checked.
#[test]
fn the_trick_equals_the_sum_over_every_pair() {
    let data = data();
    let split = split::random_holdout(data.len(), 0.2, 7);
    for (order, last) in [([P, Q], "q"), ([Q, P], "p")] {
        let model = compile_text("wals.rec", &wals(order));
        let session = Session::new(&model, &data, &split.train, &BindOptions::default()).unwrap();
        let config = TrainConfig::from_fit(&model.fit);
        assert_eq!(config.solver, Solver::Als { sweeps: 1 });
        let trained = train::train(
            &session,
            &data,
            &split.train,
            &split.test,
            &config,
            &mut Silent,
        )
        .unwrap();
        let table = session
            .gradient
            .tables
            .iter()
            .position(|t| t.name == last)
            .map(|t| TableId(t as u32))
            .unwrap();
        let grads = brute_force_gradient(&model, &session, &data, &trained.params, &split.train);
        let rows = trained.params.tables[table.index()].nrows();
        let mut seen = 0;
        for ((t, row), g) in &grads {
            if *t != table {
                continue;
            }
            seen += 1;
            let worst = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(worst < 1e-8, "`{last}` row {row}: gradient {g:?}");
        }
        assert_eq!(
            seen, rows,
            "every row of `{last}` is in the sum over every pair"
        );
        // A sweep that did nothing would leave a gradient of its initial
        // values: the other table's rows are not at their optimum.
        let other = grads
            .iter()
            .filter(|((t, _), _)| *t != table)
            .flat_map(|(_, g)| g.iter())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(
            other > 1e-6,
            "the table solved first is not optimal given the last"
        );
    }
}

/// Training reaches a better objective sweep by sweep, and the same result
/// on one thread as on four.
#[test]
fn weighted_als_lowers_its_loss_and_is_deterministic_across_threads() {
    let data = data();
    let split = split::random_holdout(data.len(), 0.2, 7);
    let text = wals([P, Q]).replace("sweeps: 1", "sweeps: 6");
    let model = compile_text("wals.rec", &text);
    let session = Session::new(&model, &data, &split.train, &BindOptions::default()).unwrap();
    let mut results = Vec::new();
    for threads in [1, 4] {
        let mut config = TrainConfig::from_fit(&model.fit);
        config.threads = threads;
        let trained = train::train(
            &session,
            &data,
            &split.train,
            &split.test,
            &config,
            &mut Silent,
        )
        .unwrap();
        let losses: Vec<f64> = trained.history.iter().map(|e| e.loss).collect();
        assert_eq!(losses.len(), 6, "{losses:?}");
        for w in losses.windows(2) {
            assert!(w[1] <= w[0] + 1e-9, "the objective rose: {losses:?}");
        }
        results.push(trained.params.tables.clone());
    }
    assert_eq!(results[0], results[1]);
}
