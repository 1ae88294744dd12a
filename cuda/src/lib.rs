//! The CUDA backend: kernels rendered as CUDA C++ and compiled at run time with NVRTC.

pub mod nvrtc;
