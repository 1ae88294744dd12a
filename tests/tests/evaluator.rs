//! The reference evaluator against values computed by hand.

use ndarray::array;
use recc_compiler::interp::{evaluate, EvalError, Example, Params, SlotValue};
use recc_compiler::ir::{Graph, TableId};
use recc_compiler::lower::INITIAL_LOG_VARIANCE;
use recc_compiler::model::Init;
use recc_compiler::{compile, gradient_graph};

fn graph(src: &str) -> Graph {
    let c = compile("t.rec", src);
    let Some(m) = c.model.as_ref() else {
        panic!("{}", c.render_diagnostics())
    };
    gradient_graph(m).unwrap_or_else(|e| panic!("{e}"))
}

fn table(g: &Graph, name: &str) -> usize {
    g.tables
        .iter()
        .position(|t| t.name == name)
        .unwrap_or_else(|| panic!("no table {name}"))
}

#[test]
fn biased_mf_by_hand() {
    let g = graph(
        "use stdlib.losses\ninput u: user\ninput i: item\ninput r: real\n\
         param b: real\nparam w[user]: real\nparam p[user]: vec(2)\nparam q[item]: vec(2)\n\
         let R(u, i) = b + w[u] + dot(p[u], q[i])\nloss mse(R(u, i), r)\n",
    );
    let mut params = Params::zeros(&g, &[2, 3]).unwrap_or_else(|e| panic!("{e}"));
    params.tables[table(&g, "b")] = array![[0.5]];
    params.tables[table(&g, "w")] = array![[0.0], [0.25]];
    params.tables[table(&g, "p")] = array![[0.0, 0.0], [1.0, 2.0]];
    params.tables[table(&g, "q")] = array![[0.0, 0.0], [0.0, 0.0], [3.0, -1.0]];
    let ex = Example {
        slots: vec![
            SlotValue::Index(1),
            SlotValue::Index(2),
            SlotValue::Real(4.0),
        ],
    };
    let e = evaluate(&g, &params, &ex).unwrap_or_else(|e| panic!("{e}"));
    // R = 0.5 + 0.25 + (1·3 + 2·(−1)) = 1.75; loss = (1.75 − 4)² = 5.0625
    assert_eq!(e.score, Some(1.75));
    assert!((e.loss - 5.0625).abs() < 1e-12);
    // dL/dR = 2(R − r) = −4.5; dL/dp[1] = −4.5·q[2] = (−13.5, 4.5)
    let dp = &e.gradients.rows[&(TableId(table(&g, "p") as u32), 1)];
    assert_eq!(dp, &vec![-13.5, 4.5]);
    let db = &e.gradients.rows[&(TableId(table(&g, "b") as u32), 0)];
    assert_eq!(db, &vec![-4.5]);
}

#[test]
fn random_walk_prior_is_off_at_the_first_member() {
    let g = graph("input t: week\nparam n[week]: vec(2)\nprior n[t] ~ normal(n[t - 1], 1)\nloss 0 * sum(n[t])\n");
    let mut params = Params::zeros(&g, &[3]).unwrap_or_else(|e| panic!("{e}"));
    params.tables[0] = array![[1.0, 1.0], [2.0, 3.0], [0.0, 0.0]];
    let at = |t| {
        evaluate(
            &g,
            &params,
            &Example {
                slots: vec![SlotValue::Index(t)],
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let first = at(0);
    assert_eq!(first.loss, 0.0, "no predecessor, no prior term");
    // t = 1: ½‖n1 − n0‖² + 2·(log 1 + ½ log 2π) = ½·(1 + 4) + 2·0.9189…
    let second = at(1);
    let expected = 2.5 + 2.0 * 0.918_938_533_204_672_7;
    assert!((second.loss - expected).abs() < 1e-12, "{}", second.loss);
    // The gradient reaches both rows: +(n1 − n0) and −(n1 − n0).
    assert_eq!(second.gradients.rows[&(TableId(0), 1)], vec![1.0, 2.0]);
    assert_eq!(second.gradients.rows[&(TableId(0), 0)], vec![-1.0, -2.0]);
}

#[test]
fn bags_are_weighted_and_an_empty_mean_is_zero() {
    let g = graph("input f: bag(feature)\ninput h: history(feature)\nparam w[feature]: real\nloss sum(w[f]) + mean(w[h])\n");
    let mut params = Params::zeros(&g, &[3]).unwrap_or_else(|e| panic!("{e}"));
    params.tables[0] = array![[1.0], [10.0], [100.0]];
    let ex = Example {
        slots: vec![
            SlotValue::Bag(vec![(0, 2.0), (2, 0.5)]),
            SlotValue::Bag(vec![]),
        ],
    };
    let e = evaluate(&g, &params, &ex).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(e.loss, 52.0);
    assert_eq!(e.gradients.rows[&(TableId(0), 0)], vec![2.0]);
    assert_eq!(e.gradients.rows[&(TableId(0), 2)], vec![0.5]);
}

#[test]
fn an_index_outside_its_domain_is_an_error_not_a_panic() {
    let g = graph("input u: user\nparam p[user]: real\nloss sq(p[u])\n");
    let params = Params::zeros(&g, &[4]).unwrap_or_else(|e| panic!("{e}"));
    let err = evaluate(
        &g,
        &params,
        &Example {
            slots: vec![SlotValue::Index(4)],
        },
    );
    assert!(
        matches!(
            err,
            Err(EvalError::IndexOutOfRange {
                index: 4,
                size: 4,
                ..
            })
        ),
        "{err:?}"
    );
    let err = evaluate(
        &g,
        &params,
        &Example {
            slots: vec![SlotValue::Real(1.0)],
        },
    );
    assert!(matches!(err, Err(EvalError::SlotKind { .. })), "{err:?}");
}

#[test]
fn negatives_in_a_comprehension_take_the_hardest() {
    let g = graph(
        "use stdlib.losses\ninput u: user\ninput i: item\nparam q[item]: real\n\
         let R(u, i) = q[i]\nloss hinge(R(u, i), max(R(u, j) for j ~ negative(item, 3)))\n",
    );
    assert_eq!(g.slots.iter().filter(|s| s.name == "j").count(), 3);
    let mut params = Params::zeros(&g, &[1, 5]).unwrap_or_else(|e| panic!("{e}"));
    params.tables[0] = array![[1.0], [0.2], [0.9], [-1.0], [0.0]];
    let ex = Example {
        slots: vec![
            SlotValue::Index(0),
            SlotValue::Index(0),
            SlotValue::Index(1),
            SlotValue::Index(2),
            SlotValue::Index(3),
        ],
    };
    let e = evaluate(&g, &params, &ex).unwrap_or_else(|e| panic!("{e}"));
    // relu(1 − 1.0 + max(0.2, 0.9, −1.0)) = 0.9; only the hardest negative gets a gradient.
    assert!((e.loss - 0.9).abs() < 1e-12);
    assert_eq!(e.gradients.rows.get(&(TableId(0), 2)), Some(&vec![1.0]));
    assert_eq!(
        e.gradients
            .rows
            .get(&(TableId(0), 1))
            .map(|v| v[0])
            .unwrap_or(0.0),
        0.0
    );
}

#[test]
fn a_normal_likelihood_records_its_scale_beside_the_score() {
    let head = "input u: user\ninput i: item\ninput r: real\nparam ls: real\n\
                param w[user]: real\nlet R(u, i) = w[u]\n";
    let g = graph(&format!("{head}r ~ normal(R(u, i), exp(ls))\n"));
    assert!(g.noise_scale.is_some());
    assert!(g.to_text(None).contains("  scale %"));
    let mut params = Params::zeros(&g, &[2, 1]).unwrap_or_else(|e| panic!("{e}"));
    params.tables[table(&g, "ls")] = array![[2f64.ln()]];
    params.tables[table(&g, "w")] = array![[0.0], [3.0]];
    let ex = Example {
        slots: vec![
            SlotValue::Index(1),
            SlotValue::Index(0),
            SlotValue::Real(4.0),
        ],
    };
    let e = evaluate(&g, &params, &ex).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(e.score, Some(3.0));
    assert!((e.noise_scale.unwrap_or(f64::NAN) - 2.0).abs() < 1e-12);
    // ½((4 − 3) / 2)² + log 2 + ½ log 2π
    let want = 0.125 + 2f64.ln() + 0.918_938_533_204_672_7;
    assert!((e.loss - want).abs() < 1e-12, "{}", e.loss);

    // No scale where it would not describe the target, or not be known without it.
    for objective in [
        "r ~ laplace(R(u, i), 1)\n",
        "r ~ normal(R(u, i), 0.1 * r + 1)\n",
        "r ~ normal(R(u, i), 1)\nr ~ normal(R(u, i), 2)\n",
        "use stdlib.losses\nloss mse(R(u, i), r)\n",
    ] {
        let g = graph(&format!("{head}{objective}"));
        assert_eq!(g.noise_scale, None, "{objective}");
        assert!(!g.to_text(None).contains("scale"), "{objective}");
    }
}

#[test]
fn a_once_prior_is_weighted_by_its_slot() {
    let g = graph(
        "input u: user\ninput r: real\nparam w[user]: real\nlet R(u) = w[u]\n\
         r ~ normal(R(u), 1)\nprior w[u] ~ normal(0, 0.5) once\n",
    );
    let once = g
        .slots
        .iter()
        .position(|s| s.name == "once.u")
        .unwrap_or_else(|| panic!("no once slot:\n{}", g.to_text(None)));
    assert!(g.to_text(None).contains("slot s2 once.u: inverse_count s0"));
    let mut params = Params::zeros(&g, &[1]).unwrap_or_else(|e| panic!("{e}"));
    params.tables[table(&g, "w")] = array![[1.0]];
    let mut slots = vec![SlotValue::Index(0), SlotValue::Real(1.0)];
    slots.insert(once, SlotValue::Real(0.25));
    let e = evaluate(&g, &params, &Example { slots }).unwrap_or_else(|e| panic!("{e}"));
    // Likelihood: ½·0² + log 1 + c. Prior: ¼ · (½(1 / 0.5)² + log 0.5 + c).
    let c = 0.918_938_533_204_672_7;
    let want = c + 0.25 * (2.0 + 0.5f64.ln() + c);
    assert!((e.loss - want).abs() < 1e-12, "{} vs {want}", e.loss);
    let dw = &e.gradients.rows[&(TableId(table(&g, "w") as u32), 0)];
    // d/dw of ¼ · ½ (w / 0.5)² = ¼ · 4w = 1.
    assert!((dw[0] - 1.0).abs() < 1e-12, "{dw:?}");
}

#[test]
fn variational_sd_sets_where_the_log_variance_starts() {
    let g = graph(
        "input u: user\ninput r: real\nparam p[user]: vec(2) variational(sd: 0.5)\n\
         param q[user]: vec(2) variational\nlet R(u) = sum(p[u] + q[u])\n\
         r ~ normal(R(u), 1)\n",
    );
    let init = |name: &str| g.tables[table(&g, name)].init;
    assert_eq!(init("p.logvar"), Init::Constant(2.0 * 0.5f64.ln()));
    assert_eq!(init("q.logvar"), Init::Constant(INITIAL_LOG_VARIANCE));
}
