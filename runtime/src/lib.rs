//! The recc runtime: what surrounds a compiled training step.
//!
//! For now it creates parameter storage initialised as each `param`'s
//! `init` says; data loading and the trainer build on it.

pub mod init;
