//! The recc runtime: what surrounds a compiled training step.
//!
//! Data comes in through [`data`] as columns with dense indices, [`split`]
//! divides it, [`session`] binds a model to it, the trainer feeds it to the
//! model's step, [`metrics`] scores the result and [`modelfile`] saves it.
//! [`experiment`] strings these into the steps every front end runs.

pub mod bench;
pub mod bind;
pub mod context;
pub mod data;
pub mod experiment;
pub mod export;
pub mod grouped;
pub mod hierarchy;
pub mod init;
pub mod metrics;
pub mod modelfile;
pub mod native;
pub mod optim;
pub mod predict;
pub mod probe;
pub mod progress;
pub mod rank;
pub mod session;
pub mod solve;
pub mod split;
pub mod synth;
pub mod train;
