//! Fuzz harnesses for recc, one per surface a user's input reaches:
//!
//! - [`models::ModelHarness`]: model source through check, lower, grad, the
//!   JIT and 100 training steps, the JIT against the reference evaluator;
//! - [`data::DataHarness`]: data files through every reader, a split, and a
//!   few training steps;
//! - [`modelfile::ModelFileHarness`]: model-file bytes through `load` and
//!   prediction.
//!
//! Each is a binary (`recc-fuzz-models`, `recc-fuzz-data`,
//! `recc-fuzz-modelfile`) run for `--seconds N` from `--seed S`, and a
//! short fixed-seed run in `cargo test` (`tests/short.rs`). The shared
//! driver is [`driver`]; `docs/fuzzing.md` says how to run them.

pub mod agree;
pub mod data;
pub mod driver;
pub mod modelfile;
pub mod models;
pub mod mutate;

use std::path::PathBuf;

/// The workspace's `models/` folder.
pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Every `models/*.rec` file as (file name, text), sorted by name.
pub fn named_model_sources() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(models_dir())
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "rec"))
                .filter_map(|p| {
                    let name = p.file_name()?.to_string_lossy().into_owned();
                    Some((name, std::fs::read_to_string(&p).ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The texts of `models/*.rec`.
pub fn model_sources() -> Vec<String> {
    named_model_sources().into_iter().map(|(_, t)| t).collect()
}
