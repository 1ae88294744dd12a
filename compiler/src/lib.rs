//! The recc compiler.
//!
//! Stages, in the order data flows through them:
//!
//! | stage | input → output | module |
//! |---|---|---|
//! | parse | `&str` → [`ast::File`] | [`parse`] |
//! | check | [`ast::File`] → [`model::Model`] | [`check`] |
//! | lower | [`model::Model`] → [`ir::Graph`] (forward) | [`lower`] |
//! | grad | [`ir::Graph`] → [`ir::Graph`] (with gradients) | [`grad`] |
//! | simplify | [`ir::Graph`] → [`ir::Graph`] | [`simplify`] |
//! | evaluate | [`ir::Graph`] + params + example → loss, gradients | [`interp`] |
//!
//! [`compile`] runs the front end (parse and check, with the stdlib) and
//! [`Compiled::forward`] / [`Compiled::backward`] the rest.

pub mod ast;
pub mod check;
pub mod diagnostic;
pub mod grad;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod model;
pub mod parse;
pub mod simplify;
pub mod source;
pub mod stdlib;
pub mod types;

use diagnostic::Diagnostic;
use source::{FileId, SourceMap};

/// The result of the front end on one file.
pub struct Compiled {
    pub sources: SourceMap,
    pub root: FileId,
    /// The checked model; `None` when there were errors.
    pub model: Option<model::Model>,
    /// Errors and warnings, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// All diagnostics rendered as text (no colour, fixed width).
    pub fn render_diagnostics(&self) -> String {
        diagnostic::render(&self.sources, &self.diagnostics)
    }
}

/// Parse and check one model file. `name` is how the file is shown in
/// diagnostics and IR comments.
pub fn compile(name: &str, text: &str) -> Compiled {
    let mut sources = SourceMap::new();
    let root = sources.add(name, text);
    let (modules, mut diagnostics) = stdlib::load(&mut sources);
    let file = match parse::parse(root, text) {
        Ok(file) => file,
        Err(mut errors) => {
            diagnostics.append(&mut errors);
            diagnostic::sort(&mut diagnostics);
            return Compiled {
                sources,
                root,
                model: None,
                diagnostics,
            };
        }
    };
    let stem = name
        .rsplit('/')
        .next()
        .unwrap_or(name)
        .trim_end_matches(".rec")
        .to_string();
    let (model, mut more) = check::check(root, &file, &modules, &stem);
    diagnostics.append(&mut more);
    Compiled {
        sources,
        root,
        model,
        diagnostics,
    }
}

/// The simplified forward graph of a checked model.
pub fn forward_graph(model: &model::Model) -> Result<ir::Graph, ir::IrError> {
    simplify::simplify(&lower::lower(model)?)
}

/// The simplified graph with the loss's gradients.
pub fn gradient_graph(model: &model::Model) -> Result<ir::Graph, ir::IrError> {
    simplify::simplify(&grad::grad(&forward_graph(model)?)?)
}
