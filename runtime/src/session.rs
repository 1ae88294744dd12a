//! A model bound to its data: what the trainer trains and the predictor
//! scores. Both read it; neither is needed to make one.

use crate::bind::{BindError, BindOptions, Binding};
use crate::data::Dataset;
use recc_compiler::ir::{Graph, SlotKind};
use recc_compiler::model::Model;

/// Why a model could not be bound to data: the binding's fault (the data or
/// the options) or the model's (it does not lower to a graph).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("{0}")]
    Compile(String),
}

/// What a model is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// The score predicts the data's target: RMSE and MAE.
    Rating,
    /// Trained against sampled negatives, or weighing every unobserved pair:
    /// ranking metrics over the catalogue.
    Ranking,
    /// Neither: the mean loss on held-out rows.
    Loss,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::Rating => "rating",
            Task::Ranking => "ranking",
            Task::Loss => "loss",
        })
    }
}

/// A model bound to its data, ready to train and to predict.
#[derive(Clone, Debug)]
pub struct Session {
    pub model: Model,
    pub forward: Graph,
    pub gradient: Graph,
    pub binding: Binding,
    pub task: Task,
    /// What scores examples after training: the native predict kernel, or
    /// the reference evaluator.
    pub backend: Backend,
}

impl Session {
    pub fn new(
        model: &Model,
        data: &Dataset,
        train: &[usize],
        options: &BindOptions,
    ) -> Result<Session, SessionError> {
        let forward = recc_compiler::forward_graph(model)
            .map_err(|e| SessionError::Compile(e.to_string()))?;
        let gradient = recc_compiler::gradient_graph(model)
            .map_err(|e| SessionError::Compile(e.to_string()))?;
        let binding = Binding::new(&gradient, data, train, options)?;
        // A model weighing unobserved pairs, like one sampling negatives,
        // ranks the catalogue: its real input is a confidence, not a target.
        let task = if !model.unobserved.is_empty()
            || gradient
                .slots
                .iter()
                .any(|s| matches!(s.kind, SlotKind::Negative { .. }))
        {
            Task::Ranking
        } else if forward.score.is_some() && binding.target_slot(data).is_some() {
            Task::Rating
        } else {
            Task::Loss
        };
        Ok(Session {
            model: model.clone(),
            forward,
            gradient,
            binding,
            task,
            backend: Backend::default(),
        })
    }
}

/// Which code runs the training step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// The reference evaluator: f64, checked, slow.
    Interp,
    /// One fused native step per model, compiled with Cranelift.
    #[default]
    Jit,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "interp" => Ok(Backend::Interp),
            "jit" => Ok(Backend::Jit),
            _ => Err(format!("unknown backend `{s}`; expected jit or interp")),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Interp => "interp",
            Backend::Jit => "jit",
        })
    }
}
