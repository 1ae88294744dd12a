//! `recc emit`: the code a model compiles to, printed for reading.

mod common;
use common::{recc, workspace};

const DOT4: &str = "tests/corpus/emit/dot4.rec";

/// The training step of the smallest factorization, as the JIT generates
/// it: one `f32x4` load per row, the dot product, the squared error's
/// gradient and the SGD update of both rows. The text is stable across
/// runs (the snapshot would not hold otherwise); it is x86-64 and
/// AArch64 Linux's (the System V calling convention).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[test]
fn clif_of_the_training_step() {
    let run = recc(&["emit", "--target", "clif", DOT4]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    insta::assert_snapshot!("clif_dot4_step", run.stdout);
}

#[test]
fn clif_names_the_kernel_and_its_helpers() {
    let step = recc(&["emit", "--target", "clif", DOT4]);
    let predict = recc(&["emit", "--target", "clif", "--predict", DOT4]);
    assert_eq!(predict.code, 0, "{}", predict.stderr);
    assert!(step.stdout.contains("= step\n"), "{}", step.stdout);
    assert!(predict.stdout.contains("= predict\n"), "{}", predict.stdout);
    assert!(predict.stdout.contains("; u0:0 = recc_bias_correction\n"));
    // Transcendental functions are inline code, not calls.
    assert!(!predict.stdout.contains("recc_exp"), "{}", predict.stdout);
    // Prediction computes the dot product and updates nothing: one store
    // per example, the score.
    assert!(predict.stdout.contains("load.f32x4"), "{}", predict.stdout);
    assert_eq!(predict.stdout.matches("store notrap").count(), 1);
    assert!(step.stdout.matches("store").count() > 2);
}

#[test]
fn optimized_clif_is_deterministic_and_differs_from_the_generated() {
    let args = ["emit", "--target", "clif", "--optimized", DOT4];
    let a = recc(&args);
    let b = recc(&args);
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert!(a.stdout.contains("function u0:"), "{}", a.stdout);
    assert_eq!(a.stdout, b.stdout);
    let generated = recc(&["emit", "--target", "clif", DOT4]);
    assert_ne!(a.stdout, generated.stdout);
}

/// The optimiser in the model's `fit` decides the update code.
#[test]
fn the_step_follows_the_models_optimizer() {
    let sgd = recc(&["emit", "--target", "clif", "models/mf.rec"]);
    let adagrad = recc(&["emit", "--target", "clif", "models/bpr_mf.rec"]);
    assert_eq!(sgd.code, 0, "{}", sgd.stderr);
    assert_eq!(adagrad.code, 0, "{}", adagrad.stderr);
    assert!(!sgd.stdout.contains("sqrt"));
    assert!(adagrad.stdout.contains("sqrt"), "Adagrad divides by a root");
}

#[test]
fn emit_of_a_model_with_errors_reports_them_and_exits_one() {
    let run = recc(&[
        "emit",
        "--target",
        "clif",
        "tests/corpus/errors/shape_mismatch_add.rec",
    ]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.contains("shape_mismatch_add.rec"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unknown_target_is_a_usage_error_listing_the_targets() {
    let run = recc(&["emit", "--target", "wasm", DOT4]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("possible values: clif, cuda"),
        "{}",
        run.stderr
    );
}

/// The CUDA source of the smallest model: the step kernel (forward, the
/// squared error's gradient, SGD on both rows) and the predict kernel.
#[test]
fn cuda_of_both_kernels() {
    let run = recc(&["emit", "--target", "cuda", DOT4]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    assert!(
        run.stdout.contains("__global__ void step("),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("__global__ void predict("),
        "{}",
        run.stdout
    );
    insta::assert_snapshot!("cuda_dot4", run.stdout);
}

#[test]
fn cuda_predict_is_the_predict_kernel_alone() {
    let run = recc(&["emit", "--target", "cuda", "--predict", DOT4]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("__global__ void predict("));
    assert!(!run.stdout.contains("void step("));
    assert!(run.stdout.contains("__shfl_xor_sync"));
}

/// Every model in models/ has CUDA kernels (the golden text of each is
/// pinned in cuda/tests/; here the command's path to them).
#[test]
fn cuda_of_every_model() {
    let dir = workspace().join("models");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".rec"))
        .collect();
    files.sort();
    assert!(files.len() > 10);
    for f in files {
        let path = format!("models/{f}");
        let run = recc(&["emit", "--target", "cuda", &path]);
        assert_eq!(run.code, 0, "{path}: {}", run.stderr);
        assert!(run.stdout.contains("__global__ void step("), "{path}");
    }
}

#[test]
fn optimized_is_for_clif_only() {
    let run = recc(&["emit", "--target", "cuda", "--optimized", DOT4]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("only --target clif"), "{}", run.stderr);
}
