//! The recc CUDA backend: one warp per example.
//!
//! | stage | input → output | module |
//! |---|---|---|
//! | plan | gradient or forward [`Graph`](recc_compiler::ir::Graph) → [`KernelPlan`] | [`plan`] |
//! | emulate | [`KernelPlan`] + examples + tables → updated tables, scores | [`emulate`] |
//!
//! The plan is the schedule: how each value of one example's step sits on
//! the 32 lanes of a warp, which reductions are warp shuffles, which loops
//! run over bag members, and how each row is updated. The emulator runs a
//! plan lane by lane on the CPU, so the plan can be checked against the
//! reference evaluator on a machine without a GPU.

pub mod emulate;
pub mod plan;

pub use plan::{lower, KernelKind, KernelPlan, PlanError, StepOptions};
