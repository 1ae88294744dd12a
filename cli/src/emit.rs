//! `recc emit`: the code a model's formulas became, for people to read.

use crate::run::{compile_file, failed, usage, Result};
use recc_compiler::{forward_graph, gradient_graph};
use recc_jit::{ClifStage, KernelKind, StepOptions};
use recc_runtime::init::MAX_BALL_NORM;
use recc_runtime::train::TrainConfig;
use std::path::{Path, PathBuf};

/// What `recc emit` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The Cranelift IR of the native (JIT) kernel
    Clif,
    /// The CUDA C++ of the GPU kernels: the training step and, when the
    /// model has a score, the predict kernel, as one source file
    Cuda,
}

#[derive(clap::Args, Clone, Debug)]
pub struct EmitArgs {
    /// The `.rec` file.
    pub file: PathBuf,
    /// The code to print
    #[arg(long, value_enum)]
    pub target: Target,
    /// The predict kernel (forward only) instead of the training step
    #[arg(long)]
    pub predict: bool,
    /// With --target clif: the IR after Cranelift's optimisation, as it
    /// was lowered to machine code
    #[arg(long)]
    pub optimized: bool,
}

/// `recc emit`
pub fn emit_command(args: &EmitArgs) -> Result<()> {
    if args.optimized && args.target != Target::Clif {
        return Err(usage(
            "--optimized: only --target clif has an optimised form",
        ));
    }
    let source = compile_file(&args.file)?;
    let text = match args.target {
        Target::Clif => clif_text(&args.file, &source.model, args)?,
        Target::Cuda => cuda_text(&args.file, &source.model, args.predict)?,
    };
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}

/// The kernel as the native backend compiles it for training with the
/// model's own `fit` settings (the optimiser decides the update code).
fn clif_text(path: &Path, model: &recc_compiler::model::Model, args: &EmitArgs) -> Result<String> {
    let located = |e: recc_compiler::ir::IrError| failed(format!("{}: {e}", path.display()));
    let config = TrainConfig::from_fit(&model.fit);
    let (graph, kind, prefetch) = if args.predict {
        let forward = forward_graph(model).map_err(located)?;
        if forward.score.is_none() {
            return Err(failed(format!(
                "{}: model `{}` has no score, so it has no predict kernel; \
                 leave out --predict for its training step",
                path.display(),
                model.name
            )));
        }
        // Predicting streams no rows ahead: the runtime compiles its
        // predict kernel without prefetching.
        (forward, KernelKind::Predict, 0)
    } else {
        let options = StepOptions {
            optimizer: config.optimizer,
            max_ball_norm: MAX_BALL_NORM,
        };
        (
            gradient_graph(model).map_err(located)?,
            KernelKind::Step(options),
            config.prefetch,
        )
    };
    let stage = if args.optimized {
        ClifStage::Optimized
    } else {
        ClifStage::Generated
    };
    recc_jit::clif(&graph, kind, prefetch, stage)
        .map_err(|e| failed(format!("{}: {e}", path.display())))
}

/// The CUDA source of the model's kernels: both (as the GPU runtime would
/// compile them), or with `predict` the predict kernel alone.
fn cuda_text(path: &Path, model: &recc_compiler::model::Model, predict: bool) -> Result<String> {
    let located = |e: &dyn std::fmt::Display| failed(format!("{}: {e}", path.display()));
    let forward = forward_graph(model).map_err(|e| located(&e))?;
    if predict {
        let plan = recc_cuda::plan::lower(&forward, recc_cuda::KernelKind::Predict)
            .map_err(|e| located(&e))?;
        // The renderer trusts the plan's invariants, as `emit_cuda` checks.
        plan.verify().map_err(|e| located(&e))?;
        return Ok(recc_cuda::render::render(&plan));
    }
    let gradient = gradient_graph(model).map_err(|e| located(&e))?;
    let options = recc_cuda::StepOptions {
        optimizer: TrainConfig::from_fit(&model.fit).optimizer,
        max_ball_norm: MAX_BALL_NORM,
    };
    recc_cuda::emit_cuda(&gradient, &forward, options).map_err(|e| located(&e))
}
