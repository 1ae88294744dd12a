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

/// What `:help NAME` shows of one stdlib function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionDoc {
    /// The module, as `use stdlib.MODULE` names it.
    pub module: String,
    pub name: String,
    /// `mse(pred, target)`
    pub signature: String,
    /// The comment above the `fn`, without its `#` marks; empty if none.
    pub doc: String,
    /// The right-hand side as written: `sq(pred - target)`.
    pub body: String,
}

/// Every stdlib function with its signature and documentation, module by
/// module in [`MODULES`] order, each in the order its module defines them.
pub fn catalogue() -> Vec<FunctionDoc> {
    let mut out = Vec::new();
    let mut sources = SourceMap::new();
    for (module, text) in MODULES {
        let id = sources.add(format!("stdlib/{module}.rec"), *text);
        // The stdlib is part of the binary and its tests parse it: a module
        // that did not parse would have failed them.
        let Ok(file) = parse(id, text) else { continue };
        for item in &file.items {
            let ast::ItemKind::Fn { name, params, body } = &item.kind else {
                continue;
            };
            let args: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
            let body_text = text
                .get(body.span.start as usize..body.span.end as usize)
                .unwrap_or_default();
            out.push(FunctionDoc {
                module: (*module).to_string(),
                name: name.name.clone(),
                signature: format!("{}({})", name.name, args.join(", ")),
                doc: comment_above(text, item.span.start as usize),
                body: body_text.to_string(),
            });
        }
    }
    out
}

/// The run of `#` lines that ends on the line before byte `start`. Functions
/// written on consecutive lines share the comment above the first.
fn comment_above(text: &str, start: usize) -> String {
    let before = text.get(..start).unwrap_or_default();
    let mut lines: Vec<&str> = Vec::new();
    let mut above = before.lines().rev().map(str::trim).peekable();
    while above.peek().is_some_and(|l| l.starts_with("fn ")) {
        above.next();
    }
    for line in above {
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        lines.push(comment.strip_prefix(' ').unwrap_or(comment));
    }
    lines.reverse();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_has_every_stdlib_fn_with_its_comment() {
        let docs = catalogue();
        // Every `fn` line of every module, counted from the text alone.
        let written: usize = MODULES
            .iter()
            .map(|(_, text)| text.lines().filter(|l| l.starts_with("fn ")).count())
            .sum();
        assert_eq!(docs.len(), written);
        for d in &docs {
            assert!(!d.doc.is_empty(), "{} has no comment", d.name);
            assert!(d.signature.starts_with(&format!("{}(", d.name)));
            assert!(!d.body.is_empty());
        }
        let mse = docs.iter().find(|d| d.name == "mse");
        assert_eq!(
            mse.map(|d| (
                d.module.as_str(),
                d.signature.as_str(),
                d.doc.as_str(),
                d.body.as_str()
            )),
            Some((
                "losses",
                "mse(pred, target)",
                "Squared error: mse(pred, target) = (pred - target)^2",
                "sq(pred - target)"
            ))
        );
        // A comment block ends at a blank line: the module header is not
        // part of the first function's doc.
        let fm2 = docs.iter().find(|d| d.name == "fm2");
        assert!(fm2.is_some_and(|d| d.doc.starts_with("Second-order FM")));
        // Names are unique across modules, as the checker requires.
        let mut names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), docs.len());
    }
}
