//! The standard library: `.rec` modules under `stdlib/`, built into the binary.
//!
//! The stdlib is written in the language itself; these are its texts, parsed
//! with the same front end as a user's file.

use crate::ast;
use crate::diagnostic::Diagnostic;
use crate::parse::parse;
use crate::source::SourceMap;

/// `(module name, source text)` for every stdlib module.
pub const MODULES: &[(&str, &str)] = &[
    ("losses", include_str!("../../stdlib/losses.rec")),
    ("likelihoods", include_str!("../../stdlib/likelihoods.rec")),
    ("links", include_str!("../../stdlib/links.rec")),
    ("weights", include_str!("../../stdlib/weights.rec")),
    ("fm", include_str!("../../stdlib/fm.rec")),
    ("geometry", include_str!("../../stdlib/geometry.rec")),
];

/// The module consulted for the negative log of `X ~ DIST(...)`, `use` or not.
pub const LIKELIHOODS: &str = "likelihoods";

/// One parsed stdlib module.
#[derive(Clone, Debug)]
pub struct Module {
    pub name: String,
    pub file: ast::File,
}

/// Parse every stdlib module into `sources`.
pub fn load(sources: &mut SourceMap) -> (Vec<Module>, Vec<Diagnostic>) {
    let mut modules = Vec::new();
    let mut diagnostics = Vec::new();
    for (name, text) in MODULES {
        let id = sources.add(format!("stdlib/{name}.rec"), *text);
        match parse(id, text) {
            Ok(file) => modules.push(Module {
                name: (*name).to_string(),
                file,
            }),
            Err(mut errors) => diagnostics.append(&mut errors),
        }
    }
    (modules, diagnostics)
}
