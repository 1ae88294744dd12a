//! The recc CUDA backend.
//!
//! [`device`] finds the CUDA driver and the GPUs it sees, loading the
//! driver at run time so recc builds and runs without CUDA.

pub mod device;
