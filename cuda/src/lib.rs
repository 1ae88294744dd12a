//! The recc CUDA backend: one warp per example.
//!
//! | stage | input → output | module |
//! |---|---|---|
//! | plan | gradient or forward [`Graph`](recc_compiler::ir::Graph) → [`KernelPlan`] | [`plan`] |
//! | render | [`KernelPlan`] → CUDA C++ (one `step` or `predict` kernel) | [`render`] |
//! | compile | CUDA C++ → PTX for a GPU architecture, with NVRTC loaded at run time | [`nvrtc`] |
//! | emulate | [`KernelPlan`] + examples + tables → updated tables, scores | [`emulate`] |
//!
//! The plan is the schedule: how each value of one example's step sits on
//! the 32 lanes of a warp, which reductions are warp shuffles, which loops
//! run over bag members, and how each row is updated. The emulator runs a
//! plan lane by lane on the CPU, so the plan can be checked against the
//! reference evaluator on a machine without a GPU.
//!
//! [`device`] finds the CUDA driver and the GPUs it sees, loading the
//! driver at run time so recc builds and runs without CUDA.

pub mod device;
pub mod emulate;
pub mod nvrtc;
pub mod plan;
pub mod render;

pub use plan::{lower, KernelKind, KernelPlan, PlanError, StepOptions};

use recc_compiler::ir::Graph;

/// The CUDA C++ of a model, as `recc emit --target cuda` prints it: the training step planned
/// from the `gradient` graph and, when the model has a score, the predict kernel planned from
/// the `forward` graph, in one source file that NVRTC compiles as it is.
pub fn emit_cuda(
    gradient: &Graph,
    forward: &Graph,
    options: StepOptions,
) -> Result<String, PlanError> {
    // The renderer trusts the plan's invariants; a plan that breaks one is an error, not text.
    let step = plan::lower(gradient, KernelKind::Step(options))?;
    step.verify()?;
    let mut text = render::render(&step);
    if forward.score.is_some() {
        let predict = plan::lower(forward, KernelKind::Predict)?;
        predict.verify()?;
        text.push('\n');
        text.push_str(&render::render(&predict));
    }
    Ok(text)
}
