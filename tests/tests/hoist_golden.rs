//! The grouped schedule's plan: which pooled values of a history are
//! hoisted out of the step for `svdpp` and `hybrid_mf` (snapshots), why a
//! model whose members read the example's other values keeps the
//! per-example schedule, and that models without a history are refused.

use recc_compiler::hoist::NotHoisted;
use recc_compiler::{compile, forward_graph, hoist_plan};
use recc_tests::{display_name, rec_files, snapshot_settings, stem};

fn forward(path: &std::path::Path) -> recc_compiler::ir::Graph {
    let name = display_name(path);
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let compiled = compile(&name, &text);
    let model = compiled
        .model
        .as_ref()
        .unwrap_or_else(|| panic!("{name} does not check:\n{}", compiled.render_diagnostics()));
    forward_graph(model).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn svdpp_and_hybrid_mf_hoist_their_pooled_history() {
    for stem_name in ["svdpp", "hybrid_mf"] {
        let path = recc_tests::root().join(format!("models/{stem_name}.rec"));
        let g = forward(&path);
        let plan = hoist_plan(&g).unwrap_or_else(|e| panic!("{stem_name}: {e}"));
        snapshot_settings(&path, stem(&path)).bind(|| {
            insta::assert_snapshot!("hoist", plan.to_text(&g));
        });
    }
}

#[test]
fn a_member_value_that_reads_the_example_is_refused_with_the_reason() {
    let path = recc_tests::root().join("tests/corpus/hoist/mixed.rec");
    let g = forward(&path);
    let err = hoist_plan(&g).expect_err("mixed.rec must not hoist");
    snapshot_settings(&path, stem(&path)).bind(|| {
        insta::assert_snapshot!("refusal", err.to_string());
    });
}

#[test]
fn every_other_model_is_refused_for_a_reason_or_plans() {
    for path in rec_files("models") {
        let g = forward(&path);
        let has_history = g.slots.iter().any(|s| {
            matches!(
                s.kind,
                recc_compiler::ir::SlotKind::Bag { history: true, .. }
            )
        });
        match hoist_plan(&g) {
            Ok(plan) => {
                assert!(has_history, "{}", display_name(&path));
                plan.step.verify().unwrap();
                plan.member.verify().unwrap();
            }
            Err(NotHoisted::Refused(reason)) => {
                assert!(!reason.is_empty());
                if !has_history {
                    assert_eq!(reason, "the model has no history input");
                }
            }
            Err(NotHoisted::Internal(e)) => panic!("{}: {e}", display_name(&path)),
        }
    }
}
