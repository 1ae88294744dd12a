//! Golden IR: the forward and gradient graph of every model in `models/`,
//! pinned in `tests/tests/snapshots/`. Review changes with `cargo insta review`.

use recc_compiler::{compile, forward_graph, grad, gradient_graph, lower, simplify};
use recc_tests::{display_name, rec_files, snapshot_settings, stem};

#[test]
fn every_model_has_a_golden_forward_and_gradient_graph() {
    let models = rec_files("models");
    assert!(
        models.len() >= 13,
        "expected a model per family, found {}",
        models.len()
    );
    for path in models {
        let name = display_name(&path);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let compiled = compile(&name, &text);
        let model = compiled
            .model
            .as_ref()
            .unwrap_or_else(|| panic!("{name} does not check:\n{}", compiled.render_diagnostics()));
        let forward = forward_graph(model).unwrap_or_else(|e| panic!("{name}: {e}"));
        let backward = gradient_graph(model).unwrap_or_else(|e| panic!("{name}: {e}"));
        let settings = snapshot_settings(&path, stem(&path));
        settings.bind(|| {
            insta::assert_snapshot!("forward", forward.to_text(Some(&compiled.sources)));
            insta::assert_snapshot!("gradient", backward.to_text(Some(&compiled.sources)));
        });
    }
}

/// Every pass keeps the IR's invariants, on every model.
#[test]
fn every_pass_keeps_the_ir_valid() {
    for path in rec_files("models") {
        let name = display_name(&path);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let compiled = compile(&name, &text);
        let Some(model) = compiled.model.as_ref() else {
            panic!("{name} does not check")
        };
        let lowered = lower::lower(model).unwrap_or_else(|e| panic!("{name}: {e}"));
        lowered
            .verify()
            .unwrap_or_else(|e| panic!("{name} lowered: {e}"));
        let folded = simplify::fold_constants(&lowered).unwrap_or_else(|e| panic!("{name}: {e}"));
        folded
            .verify()
            .unwrap_or_else(|e| panic!("{name} folded: {e}"));
        let cse = simplify::eliminate_common_subexpressions(&folded)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        cse.verify().unwrap_or_else(|e| panic!("{name} cse: {e}"));
        let dce = simplify::eliminate_dead_nodes(&cse).unwrap_or_else(|e| panic!("{name}: {e}"));
        dce.verify().unwrap_or_else(|e| panic!("{name} dce: {e}"));
        let g = grad::grad(&dce).unwrap_or_else(|e| panic!("{name}: {e}"));
        g.verify().unwrap_or_else(|e| panic!("{name} grad: {e}"));
        let s = simplify::simplify(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
        s.verify()
            .unwrap_or_else(|e| panic!("{name} simplified: {e}"));
        assert!(!s.grads.is_empty(), "{name}: no gradients");
        assert!(
            s.nodes.len() <= g.nodes.len(),
            "{name}: simplify grew the graph"
        );
    }
}
