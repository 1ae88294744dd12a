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

/// The primitives the compiler provides, documented as [`catalogue`]
/// documents the stdlib: `(name, arguments, doc)`.
const BUILTIN_DOCS: &[(&str, &str, &str)] = &[
    ("dot", "a, b", "Sum of the lane-wise products of two vectors."),
    ("sum", "x", "Over a bag (`sum(w[f])`): add the members. Otherwise: add the lanes of a vector or matrix."),
    ("mean", "x", "Like `sum`, divided by the count (an empty bag's mean is 0)."),
    ("sq", "x", "Square of a scalar; squared norm of a vector or matrix."),
    ("exp", "x", "e^x, lane by lane."),
    ("log", "x", "Natural logarithm, lane by lane."),
    ("sqrt", "x", "Square root, lane by lane."),
    ("abs", "x", "|x|, lane by lane."),
    ("sigmoid", "x", "1 / (1 + e^-x), lane by lane."),
    ("log_sigmoid", "x", "log sigmoid(x) = -softplus(-x), computed without overflow."),
    ("softplus", "x", "log(1 + e^x), computed without overflow."),
    ("tanh", "x", "Hyperbolic tangent, lane by lane."),
    ("relu", "x", "max(0, x), lane by lane."),
    ("max", "a, b", "The larger, lane by lane; `max(E for j ~ negative(item, 5))` takes the largest over draws."),
    ("min", "a, b", "The smaller, lane by lane."),
    ("clip", "x, lo, hi", "x limited to [lo, hi]: min(max(x, lo), hi)."),
    ("softmax", "x", "e^x_k / sum_j e^x_j over the lanes of a vector."),
    ("concat", "a, b", "The lanes of a followed by those of b."),
];

/// Every built-in primitive with its signature and documentation (module
/// `builtin`), for help at a prompt.
pub fn builtins() -> Vec<FunctionDoc> {
    crate::check::PRIMITIVES
        .iter()
        .map(|(name, _)| {
            let (args, doc) = BUILTIN_DOCS
                .iter()
                .find(|(n, _, _)| n == name)
                .map_or(("", ""), |(_, a, d)| (*a, *d));
            FunctionDoc {
                module: "builtin".to_string(),
                name: (*name).to_string(),
                signature: format!("{name}({args})"),
                doc: doc.to_string(),
                body: String::new(),
            }
        })
        .collect()
}

/// The names of every function an expression can call: the built-in
/// primitives and the stdlib's, sorted.
pub fn function_names() -> Vec<String> {
    let mut names: Vec<String> = crate::check::PRIMITIVES
        .iter()
        .map(|(n, _)| (*n).to_string())
        .chain(catalogue().into_iter().map(|d| d.name))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
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
        // Built-ins are documented too, with the arity the checker enforces.
        for b in builtins() {
            assert!(!b.doc.is_empty(), "{} has no doc", b.name);
            let arity = crate::check::PRIMITIVES
                .iter()
                .find(|(n, _)| *n == b.name)
                .map(|(_, a)| *a);
            let written = b.signature.matches(',').count() + 1;
            assert_eq!(Some(written), arity, "{}", b.signature);
        }
        let names = function_names();
        assert!(names.iter().any(|n| n == "sigmoid") && names.iter().any(|n| n == "mse"));
        // Names are unique across modules, as the checker requires.
        let mut names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), docs.len());
    }
}
