//! Gradient check: for every model in `models/`, the reference evaluator's
//! gradients (from the gradient IR) agree with central finite differences
//! of its loss, in f64, on random parameters and examples.

use recc_compiler::interp::evaluate;
use recc_compiler::{compile, gradient_graph};
use recc_tests::{
    display_name, finite_difference_check, random_example, random_params, rec_files, rng,
};

const TOLERANCE: f64 = 1e-5;
const TRIALS: u64 = 5;

/// Random parameters and examples, seeded from `seed`: the loss is finite,
/// gradients exist, and they match finite differences.
fn check_trials(name: &str, g: &recc_compiler::ir::Graph, seed: u64, failures: &mut Vec<String>) {
    for trial in 0..TRIALS {
        let mut r = rng(seed + trial);
        let params = random_params(g, &mut r);
        let example = random_example(g, &mut r);
        let eval = evaluate(g, &params, &example).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(eval.loss.is_finite(), "{name}: loss {}", eval.loss);
        assert!(!eval.gradients.rows.is_empty(), "{name}: no gradients");
        let bad = finite_difference_check(g, &params, &example, TOLERANCE)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for m in bad.into_iter().take(3) {
            failures.push(format!("{name} trial {trial}: {m:?}"));
        }
    }
}

#[test]
fn gradients_match_finite_differences_for_every_model() {
    let mut failures = Vec::new();
    for path in rec_files("models") {
        let name = display_name(&path);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let compiled = compile(&name, &text);
        let Some(model) = compiled.model.as_ref() else {
            panic!("{name} does not check:\n{}", compiled.render_diagnostics())
        };
        let g = gradient_graph(model).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_trials(&name, &g, 1000, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "gradient mismatches:\n{}",
        failures.join("\n")
    );
}

/// The check is not vacuous: a gradient graph with one gradient swapped for
/// another node's value is caught.
#[test]
fn a_wrong_gradient_is_caught() {
    let text = std::fs::read_to_string(recc_tests::root().join("models/biased_mf.rec"))
        .unwrap_or_else(|e| panic!("{e}"));
    let compiled = compile("biased_mf.rec", &text);
    let Some(model) = compiled.model.as_ref() else {
        panic!("biased_mf does not check")
    };
    let mut g = gradient_graph(model).unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (g.grads[1].value, g.grads[2].value);
    g.grads[1].value = b;
    g.grads[2].value = a;
    let mut r = rng(5);
    let params = random_params(&g, &mut r);
    let example = random_example(&g, &mut r);
    let bad =
        finite_difference_check(&g, &params, &example, TOLERANCE).unwrap_or_else(|e| panic!("{e}"));
    assert!(!bad.is_empty(), "a corrupted gradient went unnoticed");
}

/// Every stdlib function, differentiated through, in each regime it has.
#[test]
fn stdlib_functions_have_correct_gradients() {
    let header = "use stdlib\ninput r: real\ninput k: real\ninput f: bag(feature)\n\
        param a: real\nparam c: real\nparam x: vec(3) on ball\nparam y: vec(3) on ball\n\
        param v[feature]: vec(3)\n";
    let losses = [
        "mse(a, r)",
        "mae(a, r)",
        "huber(a, r)",
        "huber(a, 0.1 * r)",
        "logistic(a + c, 1)",
        "logistic(a * c, 0)",
        "bpr(a, c)",
        "hinge(a, c)",
        "glove_weight(k) * sq(a - log(k))",
        "glove_weight(100 * k) * sq(a)",
        "sigmoid_range(a * c, 0.5, 5.5)",
        "fm2(v[f])",
        "poincare_distance(x, y)",
        "normal_nll(r, a, exp(c))",
        "laplace_nll(r, a, exp(c))",
        "bernoulli_logit_nll(1, a * c)",
        "poisson_log_nll(r, a + c)",
        "sum(softmax(x) * y) + sq(concat(x, y))",
        "sqrt(sq(x) + 1) + tanh(a) + clip(c, -0.1, 0.1) + sum(mean(v[f]))",
    ];
    let mut failures = Vec::new();
    for (n, loss) in losses.iter().enumerate() {
        let text = format!("{header}loss {loss}\n");
        let compiled = compile("stdlib_check.rec", &text);
        let Some(model) = compiled.model.as_ref() else {
            panic!(
                "`{loss}` does not check:\n{}",
                compiled.render_diagnostics()
            )
        };
        let g = gradient_graph(model).unwrap_or_else(|e| panic!("{loss}: {e}"));
        check_trials(
            &format!("`{loss}`"),
            &g,
            2000 + 10 * n as u64,
            &mut failures,
        );
    }
    assert!(
        failures.is_empty(),
        "gradient mismatches:\n{}",
        failures.join("\n")
    );
}
