//! The CUDA C++ of every model in `models/`: golden text (snapshots, reviewed with
//! `cargo insta review`) and compiled by the real NVRTC to PTX for sm_80 and sm_90.
//!
//! A model the kernel plan cannot lower yet is listed in [`REFUSED`] with the error it gets,
//! so the tests say exactly which models the backend covers.

use recc_compiler::ir::{DomainId, SlotId, TableId, TableRole};
use recc_compiler::model::{Constraint, Optimizer};
use recc_compiler::types::{BinaryFn, UnaryFn};
use recc_cuda::nvrtc::{self, Arch};
use recc_cuda::plan::{
    Combine, Expr, Instr, Layout, Output, Partial, Piece, RowStep, SlotInput, TablePlan, Update,
    ValueId, ValueInfo,
};
use recc_cuda::render::render;
use recc_cuda::{emit_cuda, KernelKind, KernelPlan, PlanError, StepOptions};
use std::path::PathBuf;

/// Models the plan refuses today, and a piece of the message each gets (none: every model in
/// `models/` lowers).
const REFUSED: &[(&str, &str)] = &[];

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Every model file's stem, sorted.
fn model_stems() -> Vec<String> {
    let mut stems: Vec<String> = std::fs::read_dir(models_dir())
        .expect("models/ is readable")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?.to_string();
            name.strip_suffix(".rec").map(str::to_string)
        })
        .collect();
    stems.sort();
    stems
}

/// The model's CUDA source, as `recc emit --target cuda` prints it.
fn emit(stem: &str) -> Result<String, PlanError> {
    emit_with(stem, None)
}

/// The model's CUDA source with its own optimiser or `optimizer`.
fn emit_with(stem: &str, optimizer: Option<Optimizer>) -> Result<String, PlanError> {
    let file = format!("{stem}.rec");
    let text = std::fs::read_to_string(models_dir().join(&file)).expect("model file");
    let compiled = recc_compiler::compile(&file, &text);
    assert!(!compiled.has_errors(), "{}", compiled.render_diagnostics());
    let model = compiled.model.expect("a checked model");
    let gradient = recc_compiler::gradient_graph(&model).expect("gradient graph");
    let forward = recc_compiler::forward_graph(&model).expect("forward graph");
    let options = StepOptions {
        optimizer: optimizer.unwrap_or(model.fit.optimizer),
        max_ball_norm: recc_runtime::init::MAX_BALL_NORM,
    };
    emit_cuda(&gradient, &forward, options)
}

/// (model, source) for the models the plan lowers; asserts the others are exactly [`REFUSED`].
fn rendered_models() -> Vec<(String, String)> {
    let mut rendered = Vec::new();
    let mut refused = Vec::new();
    for stem in model_stems() {
        match emit(&stem) {
            Ok(source) => rendered.push((stem, source)),
            Err(error) => refused.push((stem, error.to_string())),
        }
    }
    let listed: Vec<&str> = REFUSED.iter().map(|(m, _)| *m).collect();
    let got: Vec<&str> = refused.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(got, listed, "refused models changed: {refused:#?}");
    for ((model, message), (_, expected)) in refused.iter().zip(REFUSED) {
        assert!(message.contains(expected), "{model}: {message}");
    }
    assert!(!rendered.is_empty(), "no model renders");
    rendered
}

#[test]
fn every_lowered_model_matches_its_golden_cuda_source() {
    for (model, source) in rendered_models() {
        insta::assert_snapshot!(model.clone(), source);
    }
}

#[test]
fn rendering_is_deterministic() {
    for stem in model_stems() {
        let first = emit(&stem).map_err(|e| e.to_string());
        let second = emit(&stem).map_err(|e| e.to_string());
        assert_eq!(first, second, "{stem}");
    }
}

#[test]
fn every_lowered_model_compiles_to_ptx_for_sm80_and_sm90() {
    let nvrtc = match nvrtc::shared() {
        Ok(nvrtc) => nvrtc,
        Err(error) => {
            if std::env::var_os("RECC_NVRTC_REQUIRED").is_some_and(|v| v == "1") {
                panic!("RECC_NVRTC_REQUIRED=1 but {error}");
            }
            eprintln!("every_lowered_model_compiles: SKIPPED: {error}");
            return;
        }
    };
    eprintln!("compiling with NVRTC at {}", nvrtc.path().display());
    let mut compiled = 0;
    for (model, source) in rendered_models() {
        for arch in [Arch::SM80, Arch::SM90] {
            let ptx = nvrtc
                .compile_ptx(&source, &format!("{model}.cu"), arch)
                .unwrap_or_else(|e| panic!("{model}: {e}"));
            assert!(ptx.text.contains(&format!(".target {arch}")), "{model}");
            assert!(ptx.text.contains(".entry step("), "{model}: no step kernel");
            // The reductions stayed warp shuffles.
            assert!(ptx.text.contains("shfl.sync"), "{model}: no warp shuffle");
            assert!(
                ptx.log.trim().is_empty(),
                "{model}: NVRTC warned:\n{}",
                ptx.log
            );
            compiled += 1;
        }
    }
    eprintln!("{compiled} model kernels compiled to PTX");
}

/// The NVRTC to compile with, or `None` when it is absent (the reason printed) and not required.
fn nvrtc_or_skip(test: &str) -> Option<&'static nvrtc::Nvrtc> {
    match nvrtc::shared() {
        Ok(nvrtc) => Some(nvrtc),
        Err(error) => {
            if std::env::var_os("RECC_NVRTC_REQUIRED").is_some_and(|v| v == "1") {
                panic!("{test}: RECC_NVRTC_REQUIRED=1 but {error}");
            }
            eprintln!("{test}: SKIPPED: {error}");
            None
        }
    }
}

/// Compiles `source` for sm_80 and sm_90 and checks the PTX has `kernel` and no warnings.
fn assert_compiles(nvrtc: &nvrtc::Nvrtc, name: &str, source: &str, kernels: &[&str]) {
    for arch in [Arch::SM80, Arch::SM90] {
        let ptx = nvrtc
            .compile_ptx(source, &format!("{name}.cu"), arch)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{source}"));
        assert!(ptx.text.contains(&format!(".target {arch}")), "{name}");
        for kernel in kernels {
            assert!(
                ptx.text.contains(&format!(".entry {kernel}(")),
                "{name}: no {kernel}"
            );
        }
        assert!(
            ptx.log.trim().is_empty(),
            "{name}: NVRTC warned:\n{}",
            ptx.log
        );
    }
}

#[test]
fn every_lowered_model_compiles_with_each_optimizer() {
    let Some(nvrtc) = nvrtc_or_skip("every_lowered_model_compiles_with_each_optimizer") else {
        return;
    };
    let optimizers = [
        Optimizer::Sgd,
        Optimizer::Adagrad,
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
        },
    ];
    for stem in model_stems() {
        for optimizer in optimizers {
            let Ok(source) = emit_with(&stem, Some(optimizer)) else {
                continue;
            };
            assert_compiles(nvrtc, &format!("{stem}-{optimizer}"), &source, &["step"]);
        }
    }
}

/// A plan no model in `models/` produces yet, reaching the renderer's other paths: a shifted
/// index and its range flag, noise, a row of 40 (two registers, the second partly padding),
/// a max butterfly, vectors assembled across lanes by shuffles, an element read, a
/// global, Adam with per-row step counts and `nonneg`.
fn hand_plan(kind: KernelKind) -> KernelPlan {
    let d0 = DomainId(0);
    let v = ValueId;
    let info = |layout| ValueInfo {
        layout,
        node: None,
        member_of: None,
        scratch: None,
    };
    let layouts = [
        Layout::Row(d0),    // v0 the example's user
        Layout::Row(d0),    // v1 the user before
        Layout::Uniform,    // v2 1 if there is one
        Layout::Spread(40), // v3 its row
        Layout::Spread(40), // v4 noise
        Layout::Spread(40), // v5 row + noise
        Layout::PerLane,    // v6
        Layout::Uniform,    // v7 max of v5
        Layout::Uniform,    // v8 the global
        Layout::Spread(41), // v9 [global, v5]
        Layout::Uniform,    // v10 v5[3]
        Layout::PerLane,    // v11
        Layout::Uniform,    // v12 |v9|²
        Layout::Uniform,    // v13 softplus
        Layout::Uniform,    // v14 × in range
        Layout::Uniform,    // v15 the loss / score
        Layout::Spread(40), // v16 the row's gradient
        Layout::Spread(40), // v17 v5[32..40], each element staying in its lane
    ];
    let let_ = |out: u32, expr| Instr::Let { out: v(out), expr };
    let piece = |src, src_start, dst_start, len| Piece {
        src: v(src),
        src_start,
        dst_start,
        len,
    };
    let body = vec![
        let_(0, Expr::Input(SlotId(0))),
        let_(
            1,
            Expr::Shift {
                index: v(0),
                by: -1,
                domain: d0,
            },
        ),
        let_(2, Expr::InRange(v(1))),
        let_(
            3,
            Expr::Load {
                table: TableId(0),
                row: Some(v(1)),
            },
        ),
        let_(4, Expr::Input(SlotId(1))),
        let_(5, Expr::Binary(BinaryFn::Add, v(3), v(4))),
        let_(6, Expr::Partial(Partial::Max(v(5)))),
        let_(
            7,
            Expr::Butterfly {
                x: v(6),
                op: Combine::Max,
            },
        ),
        let_(
            8,
            Expr::Load {
                table: TableId(1),
                row: None,
            },
        ),
        let_(
            9,
            Expr::Move {
                len: 41,
                pieces: vec![piece(8, 0, 0, 1), piece(5, 0, 1, 40)],
            },
        ),
        let_(10, Expr::Extract { x: v(5), index: 35 }),
        let_(11, Expr::Partial(Partial::Dot(v(9), v(9)))),
        let_(
            12,
            Expr::Butterfly {
                x: v(11),
                op: Combine::Sum,
            },
        ),
        let_(13, Expr::Unary(UnaryFn::Softplus, v(12))),
        let_(14, Expr::Binary(BinaryFn::Mul, v(13), v(2))),
        let_(15, Expr::Binary(BinaryFn::Add, v(14), v(7))),
        let_(16, Expr::Broadcast { x: v(14), len: 40 }),
        let_(
            17,
            Expr::Move {
                len: 40,
                pieces: vec![piece(5, 32, 0, 8)],
            },
        ),
    ];
    let mut body = body;
    let output = match kind {
        KernelKind::Predict => {
            // The gradients' values are the step's only.
            body.truncate(16);
            Output::Predict { score: v(15) }
        }
        KernelKind::Step(_) => Output::Step {
            loss: v(15),
            updates: vec![
                Update::Row {
                    table: TableId(0),
                    row: v(1),
                    grad: v(16),
                    also: vec![(v(0), v(17))],
                    unless: vec![],
                    steps: vec![RowStep::Adam, RowStep::Nonneg, RowStep::Touch],
                },
                Update::Global {
                    table: TableId(1),
                    grad: v(10),
                    steps: vec![RowStep::Adam, RowStep::Touch],
                },
            ],
        },
    };
    let table = |name: &str, domain, lanes, constraint| TablePlan {
        name: name.to_string(),
        domain,
        lanes,
        constraint,
        role: TableRole::Plain,
    };
    KernelPlan {
        model: "hand".to_string(),
        kind,
        slots: vec![SlotInput::Index(d0), SlotInput::Noise { lanes: 40 }],
        tables: vec![
            table("e", Some(d0), 40, Constraint::Nonneg),
            table("g", None, 1, Constraint::None),
        ],
        domains: vec!["user".to_string()],
        values: layouts.into_iter().map(info).collect(),
        body,
        bag_lanes: 0,
        output,
    }
}

#[test]
fn a_plan_with_shuffled_moves_max_and_adam_renders_and_compiles() {
    let adam = Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
    };
    let step = hand_plan(KernelKind::Step(StepOptions {
        optimizer: adam,
        max_ball_norm: 1.0,
    }));
    let predict = hand_plan(KernelKind::Predict);
    for plan in [&step, &predict] {
        plan.verify().unwrap_or_else(|e| panic!("{e}\n{plan}"));
    }
    let source = format!("{}\n{}", render(&step), render(&predict));
    insta::assert_snapshot!("hand_plan", source);
    // The cross-lane piece is moved by shuffles; the one 32 elements on stays in its lane.
    assert!(
        source.contains("warp_element(v5, (int)lane + (-1))"),
        "{source}"
    );
    assert!(
        source.contains("if (lane < 8u) v17[0] = v5[1];"),
        "{source}"
    );
    assert!(source.contains("warp_max(v6)"), "{source}");
    // Element 35 is lane 3's second register.
    assert!(
        source.contains("v10 = __shfl_sync(FULL_MASK, v5[1], 3);"),
        "{source}"
    );
    if let Some(nvrtc) = nvrtc_or_skip("a_plan_with_shuffled_moves") {
        assert_compiles(nvrtc, "hand", &source, &["step", "predict"]);
    }
}
