//! Shared helpers for the cross-stage tests in `tests/tests/`.
