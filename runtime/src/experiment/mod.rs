//! One API for running experiments: compile a model, prepare and split its
//! data, train on a split, measure, cross-validate, save, reopen a saved
//! model and ask it for scores, recommendations, neighbours and exports,
//! and time training against a hand-written loop.
//!
//! Every front end sits on it: the `recc` commands, the REPL and the zoo
//! runner. It returns values (metrics, rankings, tables, run records and
//! notes) and prints nothing; each front end decides how to show them.
//! Progress while training goes to a [`train::Observer`], which is also told
//! the notes that arise before training starts, so that a front end can
//! show them in order.
//!
//! Errors are [`ExperimentError`]s: [`ErrorKind::Usage`] for what the caller
//! asked (flags, files, data) and [`ErrorKind::Model`] for what the model
//! is, does or knows (it does not compile, training diverged, an id it was
//! never trained on).
//!
//! [`train::Observer`]: crate::train::Observer

mod bench;
mod data;
mod fit;
mod fitted;
mod ids;
mod query;
mod source;
mod text;

pub use bench::{
    bench, bench_cache_dir, bench_data, zipf_request, BenchData, BenchOptions, BenchReport,
};
pub use data::{
    bind_options, check_split_dir, describe_data, prepare, resplit, write_split, DataRequest,
    Prepared,
};
pub use fit::{
    check_min_target, check_solver, cross_validate, cross_validate_with_jobs,
    describe_interruption, saved_model, train_config, train_split, CvReport, FitOverrides,
    FoldObserver, FoldResult, Outcome, TrainRequest,
};
pub use fitted::{
    bind_saved, evaluate, evaluate_observed, hierarchy, open_for_answers, open_model, reopen,
    Answering, Evaluation, Fitted, Measured, Reopened,
};
pub use ids::{describe_id, lookup_id, resolve_id, resolve_or_unknown, IdLookup};
pub use query::{
    export, predict_pairs, read_model, recommend, similar, similar_saved, Neighbour, Neighbours,
    PairScore, Recommendation, Recommendations, SeenItems,
};
pub use source::{compile_source, read_source, read_text, Source, MAX_SOURCE_BYTES};
pub use text::{format_hierarchy, format_mean_std, format_metrics, printable};
// The types a caller of the API needs beside its own.
pub use crate::export::ExportFormat;
pub use crate::progress::{StepObserver, Unobserved};
pub use crate::train::{Interruption, Observer, OnInterrupt, Silent, TrainConfig, Trained};

use crate::predict::PredictError;
use crate::session::SessionError;
use crate::train::TrainError;

/// Whose fault a failure is, which decides how a front end reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// What was asked cannot be done: a bad flag, a missing file, data the
    /// model cannot bind to, a label several ids carry.
    Usage,
    /// The model has errors, training or measuring it failed, or it does
    /// not know an id asked about (and no cold-start score was asked for).
    Model,
}

/// A failed step, with a message ready to show (a compiler report arrives
/// rendered, over several lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExperimentError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ExperimentError {
    pub fn usage(message: impl Into<String>) -> ExperimentError {
        ExperimentError {
            kind: ErrorKind::Usage,
            message: message.into(),
        }
    }

    pub fn model(message: impl Into<String>) -> ExperimentError {
        ExperimentError {
            kind: ErrorKind::Model,
            message: message.into(),
        }
    }

    /// The same failure, said to have happened while doing `what`.
    pub fn context(self, what: &str) -> ExperimentError {
        ExperimentError {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }
}

impl std::fmt::Display for ExperimentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExperimentError {}

/// A binding problem is the data's or the options' (`bind`, `features`);
/// a model that does not lower is the model's.
impl From<SessionError> for ExperimentError {
    fn from(e: SessionError) -> ExperimentError {
        match e {
            SessionError::Bind(_) => ExperimentError::usage(e.to_string()),
            SessionError::Compile(_) => ExperimentError::model(e.to_string()),
        }
    }
}

impl From<TrainError> for ExperimentError {
    fn from(e: TrainError) -> ExperimentError {
        ExperimentError::model(e.to_string())
    }
}

impl From<PredictError> for ExperimentError {
    fn from(e: PredictError) -> ExperimentError {
        ExperimentError::model(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, ExperimentError>;

fn usage(message: impl Into<String>) -> ExperimentError {
    ExperimentError::usage(message)
}

fn failed(message: impl Into<String>) -> ExperimentError {
    ExperimentError::model(message)
}
