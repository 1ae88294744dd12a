//! The CUDA C++ of every model in `models/`: golden text (snapshots, reviewed with
//! `cargo insta review`) and compiled by the real NVRTC to PTX for sm_80 and sm_90.
//!
//! A model the kernel plan cannot lower yet is listed in [`REFUSED`] with the error it gets,
//! so the tests say exactly which models the backend covers.

use recc_cuda::nvrtc::{self, Arch};
use recc_cuda::{emit_cuda, PlanError, StepOptions};
use std::path::PathBuf;

/// Models the plan refuses today, and a piece of the message each gets.
const REFUSED: &[(&str, &str)] = &[
    (
        "mixture_mf",
        "the CUDA backend cannot run a matrix-vector product yet",
    ),
    (
        "ncf",
        "the CUDA backend cannot run a matrix-vector product yet",
    ),
];

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
    let file = format!("{stem}.rec");
    let text = std::fs::read_to_string(models_dir().join(&file)).expect("model file");
    let compiled = recc_compiler::compile(&file, &text);
    assert!(!compiled.has_errors(), "{}", compiled.render_diagnostics());
    let model = compiled.model.expect("a checked model");
    let gradient = recc_compiler::gradient_graph(&model).expect("gradient graph");
    let forward = recc_compiler::forward_graph(&model).expect("forward graph");
    let options = StepOptions {
        optimizer: model.fit.optimizer,
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
            assert!(ptx.log.trim().is_empty(), "{model}: NVRTC warned:\n{}", ptx.log);
            compiled += 1;
        }
    }
    eprintln!("{compiled} model kernels compiled to PTX");
}
