//! The solvers' row statistics ([`recc_runtime::solve::stats::Program`])
//! equal the reference evaluator's, bit for bit, for every model in
//! models/ that the solvers take: the term graphs' loss, weight and the
//! gradient of each row, the forward loss and the likelihood.

use recc_compiler::affine::{analyse, solver_error};
use recc_compiler::interp::{evaluate, Example, Params};
use recc_compiler::ir::Graph;
use recc_runtime::bind::BindOptions;
use recc_runtime::init::initialise;
use recc_runtime::solve::stats::Program;
use recc_runtime::synth::{self, SynthConfig};
use recc_runtime::train::Session;
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Bits of an optional number, so that NaNs compare and -0 differs from 0.
fn bits(x: Option<f64>) -> Option<u64> {
    x.map(f64::to_bits)
}

/// Compare a program without a table (loss and score only) on `examples`.
fn check_outputs(name: &str, g: &Graph, params: &Params, examples: &[Example]) {
    let program = Program::new(g, None, true);
    let mut scratch = program.scratch();
    for (e, ex) in examples.iter().enumerate() {
        let want = evaluate(g, params, ex).unwrap();
        let got = program
            .run(params, ex, 0, &mut scratch, &mut [], None)
            .unwrap();
        assert_eq!(
            got.loss.to_bits(),
            want.loss.to_bits(),
            "{name} example {e}"
        );
        assert_eq!(bits(got.score), bits(want.score), "{name} example {e}");
        assert!(!got.touched, "{name}: no table was asked for");
    }
}

#[test]
fn programs_equal_the_evaluator_on_every_model_the_solvers_take() {
    let data = synth::generate(&SynthConfig {
        users: 30,
        items: 25,
        ratings_per_user: 6,
        ..SynthConfig::default()
    });
    let rows: Vec<usize> = (0..data.len()).collect();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(models_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rec"))
        .collect();
    paths.sort();
    let mut covered = Vec::new();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let compiled = recc_compiler::compile(&name, &std::fs::read_to_string(&path).unwrap());
        let Some(model) = compiled.model.as_ref() else {
            panic!("{name} does not compile: {}", compiled.render_diagnostics());
        };
        let Ok(session) = Session::new(model, &data, &rows, &BindOptions::default()) else {
            continue;
        };
        let report = analyse(&session.forward);
        if solver_error(&session.forward, &report, "als", compiled.root).is_some() {
            continue;
        }
        let Ok(plan) = recc_compiler::solve::plan(&session.forward) else {
            continue;
        };
        let sizes = session.binding.domain_sizes();
        // Random values everywhere, so that no gradient is trivially zero.
        let params = initialise(&session.gradient, &sizes, 3).unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let examples: Vec<Example> = rows
            .iter()
            .take(60)
            .map(|&r| {
                let mut ex = Example { slots: Vec::new() };
                let row = session.binding.row(&data, r);
                session
                    .binding
                    .example(&data, &row, &mut rng, true, &mut ex);
                ex
            })
            .collect();
        check_outputs(&name, &session.forward, &params, &examples);
        check_outputs(&name, &plan.likelihood, &params, &examples);
        let mut compared = 0;
        let mut frozen_lanes = 0;
        for block in &plan.blocks {
            let k = block.width;
            let nrows = params.tables[block.table.index()].nrows();
            for (term, freeze) in block.terms.iter().flat_map(|t| [(t, false), (t, true)]) {
                let mut program = Program::new(&term.graph, Some(block.table), true);
                if freeze {
                    program = program.freezing(block.table);
                }
                let mut scratch = program.scratch();
                let mut grad = vec![0.0; k];
                let lanes = program.frozen_lanes();
                frozen_lanes += lanes;
                let mut frozen = vec![0.0; lanes];
                for (e, ex) in examples.iter().enumerate() {
                    program
                        .fill(&params, ex, &mut scratch, &mut frozen)
                        .unwrap();
                    let want = evaluate(&term.graph, &params, ex).unwrap();
                    // Every row the example reads, and one it does not.
                    let mut asked: Vec<usize> = want
                        .gradients
                        .rows
                        .keys()
                        .filter(|(t, _)| *t == block.table)
                        .map(|&(_, r)| r)
                        .collect();
                    // The rows the program says the example reads are the
                    // evaluator's, which index the examples by row.
                    let mut read = Vec::new();
                    program.rows(&params, ex, &mut scratch, &mut read).unwrap();
                    read.sort_unstable();
                    read.dedup();
                    assert_eq!(
                        read, asked,
                        "{name} `{}` example {e}: rows read",
                        block.name
                    );
                    if let Some(other) = (0..nrows).find(|r| !asked.contains(r)) {
                        asked.push(other);
                    }
                    for row in asked {
                        grad.fill(0.0);
                        let got = program
                            .run(
                                &params,
                                ex,
                                row,
                                &mut scratch,
                                &mut grad,
                                freeze.then_some(&frozen[..]),
                            )
                            .unwrap();
                        let at = format!(
                            "{name} `{}` row {row} example {e} (frozen values: {freeze})",
                            block.name
                        );
                        assert_eq!(got.loss.to_bits(), want.loss.to_bits(), "{at}");
                        assert_eq!(bits(got.score), bits(want.score), "{at}");
                        match want.gradients.rows.get(&(block.table, row)) {
                            Some(g) => {
                                assert!(got.touched, "{at}");
                                let want_bits: Vec<u64> = g.iter().map(|v| v.to_bits()).collect();
                                let got_bits: Vec<u64> = grad.iter().map(|v| v.to_bits()).collect();
                                assert_eq!(got_bits, want_bits, "{at}");
                                compared += 1;
                            }
                            None => assert!(!got.touched, "{at}"),
                        }
                    }
                }
            }
        }
        assert!(compared > 0, "{name}: no gradient compared");
        // Models whose terms compute from other tables' values keep them.
        if ["biased_mf.rec", "fm.rec", "svdpp.rec"].contains(&name.as_str()) {
            assert!(frozen_lanes > 0, "{name}: no value was frozen");
        }
        if name == "fm.rec" {
            // The factorization machine's bag gradients run for the asked
            // row's members only: that path is the one compared above.
            let v = plan.blocks.iter().find(|b| b.name == "v").unwrap();
            for term in &v.terms {
                let program = Program::new(&term.graph, Some(v.table), true);
                assert!(program.focused_nodes() > 0, "fm.rec: nothing focused");
            }
        }
        covered.push(name);
    }
    for must in ["biased_mf.rec", "mf.rec", "svdpp.rec", "fm.rec"] {
        assert!(
            covered.iter().any(|c| c == must),
            "{must} was not compared (compared: {covered:?})"
        );
    }
    eprintln!("compared: {covered:?}");
}
