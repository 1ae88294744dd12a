//! The concrete syntax of `.rec` files as a pest grammar (`grammar/rec.pest`).
//!
//! This crate only recognises text; turning pest pairs into the typed AST
//! with byte spans is the compiler's `parse` stage.

use pest_derive::Parser;

/// The pest parser generated from `rec.pest`.
#[derive(Parser)]
#[grammar = "../rec.pest"]
pub struct RecParser;
