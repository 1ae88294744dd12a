//! Expressions typed at a prompt: `R(42, 50)`, `p[42]`, `sigmoid(3)`.
//!
//! An expression is checked against the model by the ordinary checker, as if
//! it were part of the model, and lowered to a graph whose score is the
//! expression's value. A literal standing where an index goes (`p[42]`,
//! `p["Star Wars (1977)"]`, or `R(42, 50)` through `R`'s body) becomes an
//! index slot of that index's domain; whoever evaluates the graph fills it
//! with the member the literal names. The grammar has no strings: a quoted
//! name is swapped for a number of the same length before parsing, so every
//! span still points into the text as typed.

use crate::ast::{Expr, ExprKind};
use crate::diagnostic::{self, Diagnostic};
use crate::ir::{Graph, SlotId};
use crate::model::{InputKind, Model, TExpr, TExprKind, Ty};
use crate::source::{FileId, SourceMap, Span};
use crate::types::Shape;
use crate::{check, parse, stdlib, BYTE_ORDER_MARK};

/// How the typed expression is named in reports.
pub const EXPRESSION_NAME: &str = "<expr>";

/// A compiled prompt expression.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The model's file, the stdlib and the expression, for reports.
    pub sources: SourceMap,
    /// The expression's file in `sources`.
    pub file: FileId,
    /// The model without its objective; `score` is the expression's value.
    pub graph: Graph,
    /// The shape of the value.
    pub shape: Shape,
    /// The slots that literals in index positions fill.
    pub slots: Vec<IdSlot>,
    /// Does the value read parameters (so needs them, and data to size them)?
    pub reads_params: bool,
}

/// An index slot filled from a literal of the expression.
#[derive(Clone, Debug, PartialEq)]
pub struct IdSlot {
    pub slot: SlotId,
    /// The name of the slot's domain.
    pub domain: String,
    /// What the literal names: its text as typed, or a quoted string's contents.
    pub key: String,
    /// Written in quotes (a label or a raw id) rather than as a number.
    pub quoted: bool,
    /// The literal, in the expression's file.
    pub span: Span,
}

/// Why an expression could not be compiled: the reports, with the sources
/// they point into.
#[derive(Clone, Debug)]
pub struct ProbeError {
    pub sources: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
}

impl ProbeError {
    /// The reports as text, as the compiler renders them.
    pub fn render(&self) -> String {
        diagnostic::render(&self.sources, &self.diagnostics)
    }
}

impl Probe {
    /// A located error about the expression, rendered: for problems found
    /// when the expression meets the data (an unknown id).
    pub fn report(&self, diagnostic: Diagnostic) -> String {
        diagnostic::render(&self.sources, &[diagnostic])
    }

    /// The whole expression's span.
    pub fn span(&self) -> Span {
        let text = &self.sources.get(self.file).text;
        Span::new(self.file, 0, text.trim_end().len())
    }
}

/// A quoted string in the typed text.
struct Quoted {
    span: Span,
    contents: String,
}

/// Compile `expr` against the model `model_text` (shown as `model_name`).
pub fn compile(model_name: &str, model_text: &str, expr: &str) -> Result<Probe, ProbeError> {
    crate::on_big_stack(|| compile_here(model_name, model_text, expr))
}

fn compile_here(model_name: &str, model_text: &str, expr: &str) -> Result<Probe, ProbeError> {
    let model_text = model_text
        .strip_prefix(BYTE_ORDER_MARK)
        .unwrap_or(model_text);
    let mut sources = SourceMap::new();
    let root = sources.add(model_name, model_text);
    let (modules, stdlib_errors) = stdlib::load(&mut sources);
    let file = sources.add(EXPRESSION_NAME, expr);
    let fail = |sources: SourceMap, diagnostics: Vec<Diagnostic>| ProbeError {
        sources,
        diagnostics,
    };
    if !stdlib_errors.is_empty() {
        return Err(fail(sources, stdlib_errors));
    }
    let (masked, quoted) = match mask_strings(file, expr) {
        Ok(m) => m,
        Err(d) => return Err(fail(sources, vec![*d])),
    };
    let ast = match parse::parse(root, model_text) {
        Ok(ast) => ast,
        Err(errors) => return Err(fail(sources, errors)),
    };
    let parsed = match parse::parse_expression(file, &masked) {
        Ok(e) => e,
        Err(errors) => return Err(fail(sources, errors)),
    };
    let mut numbers = Vec::new();
    number_literals(&parsed, &mut numbers);
    if let Some(q) = quoted.iter().find(|q| !numbers.contains(&q.span)) {
        let d = Diagnostic::error(
            "recc::syntax",
            "a quoted id must stand alone, where an index goes",
            q.span,
        )
        .label("not a whole argument or index")
        .with_help("write it as `p[\"Star Wars (1977)\"]` or `R(42, \"Star Wars (1977)\")`");
        return Err(fail(sources, vec![d]));
    }
    let stem = model_name
        .rsplit('/')
        .next()
        .unwrap_or(model_name)
        .trim_end_matches(".rec")
        .to_string();
    let (checked, diagnostics) = check::check_probe(root, &ast, &modules, &stem, &parsed, &numbers);
    let Some(check::CheckedProbe {
        mut model,
        value,
        slots: literal_slots,
    }) = checked
    else {
        return Err(fail(sources, diagnostics));
    };
    let quoted_spans: Vec<Span> = quoted.iter().map(|q| q.span).collect();
    if let Some(d) = value_problem(&model, &value, &literal_slots, &quoted_spans, parsed.span) {
        return Err(fail(sources, vec![d]));
    }
    let shape = match value.ty {
        Ty::Value { shape, .. } => shape,
        _ => Shape::Scalar,
    };
    let reads_params = reads_params(&value);
    model.terms.clear();
    model.noise_scale = None;
    model.score = Some(value);
    let lowered = crate::lower::lower(&model).and_then(|g| crate::simplify::simplify(&g));
    let graph = match lowered {
        Ok(g) => g,
        Err(e) => {
            let d = Diagnostic::error("recc::internal", e.to_string(), parsed.span)
                .label("could not be lowered");
            return Err(fail(sources, vec![d]));
        }
    };
    let mut slots = Vec::new();
    for (input, literal) in literal_slots {
        let span = numbers[literal];
        let InputKind::Index(domain) = model.input(input).kind else {
            continue;
        };
        let (key, is_quoted) = match quoted.iter().find(|q| q.span == span) {
            Some(q) => (q.contents.clone(), true),
            None => (
                expr[span.start as usize..span.end as usize].to_string(),
                false,
            ),
        };
        slots.push(IdSlot {
            // Lowering gives input `k` slot `k`.
            slot: SlotId(input.0),
            domain: model.domain(domain).name.clone(),
            key,
            quoted: is_quoted,
            span,
        });
    }
    Ok(Probe {
        sources,
        file,
        graph,
        shape,
        slots,
        reads_params,
    })
}

/// `text` with every quoted string replaced by zeros of the same length (a
/// number the parser accepts), and the strings found.
fn mask_strings(file: FileId, text: &str) -> Result<(String, Vec<Quoted>), Box<Diagnostic>> {
    let mut masked = String::with_capacity(text.len());
    let mut quoted = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '#' => {
                // A comment runs to the end of the line, quotes and all.
                masked.push(c);
                while let Some(&(_, d)) = chars.peek() {
                    if d == '\n' {
                        break;
                    }
                    masked.push(d);
                    chars.next();
                }
            }
            '"' => {
                let Some(close) = text[i + 1..].find('"').map(|k| i + 1 + k) else {
                    return Err(Box::new(
                        Diagnostic::error(
                            "recc::syntax",
                            "this quoted id has no closing quote",
                            Span::new(file, i, text.len()),
                        )
                        .label("opened here")
                        .with_help("end it with `\"`"),
                    ));
                };
                quoted.push(Quoted {
                    span: Span::new(file, i, close + 1),
                    contents: text[i + 1..close].to_string(),
                });
                masked.extend(std::iter::repeat_n('0', close + 1 - i));
                while chars.peek().is_some_and(|&(k, _)| k <= close) {
                    chars.next();
                }
            }
            _ => masked.push(c),
        }
    }
    Ok((masked, quoted))
}

/// The spans of every number written in `e`.
fn number_literals(e: &Expr, out: &mut Vec<Span>) {
    match &e.kind {
        ExprKind::Number(_) => out.push(e.span),
        ExprKind::Name(_) => {}
        ExprKind::Index { index, .. } => number_literals(index, out),
        ExprKind::Call { args, .. } => args.iter().for_each(|a| number_literals(a, out)),
        ExprKind::Comprehension { body, .. } => number_literals(body, out),
        ExprKind::Neg(x) => number_literals(x, out),
        ExprKind::Binary { lhs, rhs, .. } => {
            number_literals(lhs, out);
            number_literals(rhs, out);
        }
    }
}

/// Why the checked value cannot be evaluated at a prompt, if it cannot: it
/// reads what only a training example has, or it is no number.
fn value_problem(
    model: &Model,
    value: &TExpr,
    slots: &[(crate::model::InputId, usize)],
    quoted: &[Span],
    whole: Span,
) -> Option<Diagnostic> {
    let here = |span: Span| if span.file == whole.file { span } else { whole };
    let mut stack = vec![value];
    while let Some(e) = stack.pop() {
        match &e.kind {
            TExprKind::Input(i) if !slots.iter().any(|(s, _)| s == i) => {
                let input = model.input(*i);
                let help = match input.kind {
                    InputKind::Index(d) => format!(
                        "each example gives `{}` its value; write a raw {} id or a quoted label in its place, e.g. `42`",
                        input.name,
                        model.domain(d).name
                    ),
                    InputKind::Real => format!(
                        "each example gives `{}` its value; write a number in its place",
                        input.name
                    ),
                    InputKind::Bag(_) | InputKind::History(_) => format!(
                        "each example gives the bag `{}` its members; look rows up by id instead, e.g. `v[42]`",
                        input.name
                    ),
                };
                return Some(
                    Diagnostic::error(
                        "recc::input-at-prompt",
                        format!("`{}` is an input, which has no value here", input.name),
                        here(e.span),
                    )
                    .label("reads an input")
                    .with_help(help),
                );
            }
            TExprKind::Negative { .. } | TExprKind::InverseCount(_) => {
                return Some(
                    Diagnostic::error(
                        "recc::input-at-prompt",
                        "this samples from training examples, which the prompt has none of",
                        here(e.span),
                    )
                    .label("needs a training example")
                    .with_help("write the ids to evaluate at, e.g. `R(42, 50)`"),
                );
            }
            TExprKind::Const(_) if quoted.contains(&e.span) => {
                return Some(
                    Diagnostic::error(
                        "recc::not-a-value",
                        "a quoted id stands for a member of a domain, not a number",
                        e.span,
                    )
                    .label("used as a number")
                    .with_help("use it where an index goes, e.g. `p[\"Star Wars (1977)\"]`"),
                );
            }
            _ => {}
        }
        stack.extend(check::children(e));
    }
    match value.ty {
        Ty::Value { bag: None, .. } => {}
        Ty::Index(d) => {
            return Some(
                Diagnostic::error(
                    "recc::not-a-value",
                    format!(
                        "this is {} index, not a value",
                        article(&model.domain(d).name)
                    ),
                    whole,
                )
                .label("an index")
                .with_help("look a row up with it, e.g. `p[42]`"),
            )
        }
        Ty::Value { bag: Some(_), .. } | Ty::Bag(..) => {
            return Some(
                Diagnostic::error(
                    "recc::not-a-value",
                    "this has one value per member of a bag, which only an example has",
                    whole,
                )
                .label("a bag")
                .with_help("evaluate an expression over rows looked up by id, e.g. `v[42]`"),
            )
        }
    }
    None
}

fn reads_params(value: &TExpr) -> bool {
    let mut stack = vec![value];
    while let Some(e) = stack.pop() {
        if matches!(
            e.kind,
            TExprKind::Global(_) | TExprKind::Row { .. } | TExprKind::Kl { .. }
        ) {
            return true;
        }
        stack.extend(check::children(e));
    }
    false
}

fn article(word: &str) -> String {
    match word.chars().next() {
        // "a user", "an item": a leading u is mostly sounded "you".
        Some(c) if "aeio".contains(c) => format!("an {word}"),
        _ => format!("a {word}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Op, SlotKind};

    const MF: &str = "\
use stdlib.losses
input u: user
input i: item
input r: real
param b: real
param p[user]: vec(4)
param q[item]: vec(4)
let R(u, i) = b + dot(p[u], q[i])
loss mse(R(u, i), r)
";

    fn ok(expr: &str) -> Probe {
        match compile("mf.rec", MF, expr) {
            Ok(p) => p,
            Err(e) => panic!("{expr}: {}", e.render()),
        }
    }

    fn err(expr: &str) -> String {
        match compile("mf.rec", MF, expr) {
            Ok(_) => panic!("{expr} compiled"),
            Err(e) => e.render(),
        }
    }

    #[test]
    fn literals_in_index_positions_become_slots_of_their_domain() {
        let p = ok("R(42, 50)");
        assert_eq!(p.shape, Shape::Scalar);
        assert!(p.reads_params);
        let found: Vec<(&str, &str, bool)> = p
            .slots
            .iter()
            .map(|s| (s.domain.as_str(), s.key.as_str(), s.quoted))
            .collect();
        assert_eq!(found, [("user", "42", false), ("item", "50", false)]);
        for s in &p.slots {
            let want = if s.domain == "user" { 0 } else { 1 };
            assert_eq!(
                p.graph.slots[s.slot.index()].kind,
                SlotKind::Index(crate::ir::DomainId(want))
            );
        }
    }

    #[test]
    fn a_quoted_label_is_a_slot_with_its_contents() {
        let p = ok("dot(p[1], q[\"Star Wars (1977)\"])");
        assert_eq!(p.slots.len(), 2);
        assert_eq!(p.slots[1].key, "Star Wars (1977)");
        assert!(p.slots[1].quoted);
        assert_eq!(p.slots[1].domain, "item");
        // The span covers the quotes in the text as typed.
        assert_eq!(p.slots[1].span.start, 12);
    }

    #[test]
    fn rows_are_vectors_and_numbers_need_no_parameters() {
        let p = ok("p[7]");
        assert_eq!(p.shape, Shape::Vec(4));
        let s = ok("sigmoid(3) + mse(1, 4)");
        assert_eq!(s.shape, Shape::Scalar);
        assert!(!s.reads_params);
        assert!(s.slots.is_empty());
        // A number used as a value stays a constant.
        let Some(score) = s.graph.score else {
            panic!("no value")
        };
        assert!(!matches!(s.graph.node(score).op, Op::Slot(_)));
    }

    #[test]
    fn stdlib_functions_are_in_scope_without_use() {
        let p = ok("sigmoid_range(R(1, 2), 0.5, 5.5)");
        assert_eq!(p.shape, Shape::Scalar);
    }

    #[test]
    fn one_literal_used_twice_is_one_slot() {
        let p = ok("dot(p[3], p[3]) + sq(p[3])");
        // Three literals, three slots; each its own span.
        assert_eq!(p.slots.len(), 3);
        let model = "input u: user\nparam p[user]: vec(2)\nlet S(u) = dot(p[u], p[u])\nloss S(u)\n";
        let Ok(p) = compile("m.rec", model, "S(5)") else {
            panic!("did not compile")
        };
        assert_eq!(p.slots.len(), 1);
    }

    #[test]
    fn errors_point_into_the_expression() {
        let e = err("dot(p[1], q[2]) + nope(3)");
        assert!(e.contains("unknown function `nope`"), "{e}");
        assert!(e.contains("<expr>:1:19"), "{e}");
        let e = err("p[1.5 + 1]");
        assert!(e.contains("must be indexed by"), "{e}");
        assert!(e.contains("raw id such as `42`"), "{e}");
        let e = err("p");
        assert!(e.contains("e.g. `p[42]`"), "{e}");
        let e = err("u");
        assert!(e.contains("`u` is an input"), "{e}");
        let e = err("R(u, 3)");
        assert!(e.contains("`u` is an input"), "{e}");
        assert!(e.contains("<expr>:1:3"), "{e}");
        let e = err("sigmoid(\"x\")");
        assert!(e.contains("not a number"), "{e}");
        let e = err("p[\"x]");
        assert!(e.contains("no closing quote"), "{e}");
        let e = err("dot(p[1], q[2]");
        assert!(e.contains("<expr>"), "{e}");
        let e = err("q[1] + ");
        assert!(e.contains("<expr>"), "{e}");
        let e = err("p[1] @ 2");
        assert!(e.contains("<expr>"), "{e}");
    }

    #[test]
    fn a_model_without_a_loss_still_evaluates() {
        let Ok(p) = compile("m.rec", "input u: user\nparam p[user]: real\n", "p[3] * 2") else {
            panic!("did not compile")
        };
        assert_eq!(p.slots.len(), 1);
        let Ok(p) = compile("m.rec", "", "exp(0)") else {
            panic!("did not compile")
        };
        assert!(!p.reads_params);
    }

    #[test]
    fn an_index_or_a_bag_is_not_a_value() {
        let model = "input f: bag(feature)\nparam v[feature]: vec(2)\nloss sum(sq(v[f]))\n";
        let Err(e) = compile("m.rec", model, "v[f]") else {
            panic!("compiled")
        };
        assert!(e.render().contains("bag"), "{}", e.render());
        let Ok(p) = compile("m.rec", model, "v[3]") else {
            panic!("did not compile")
        };
        assert_eq!(p.shape, Shape::Vec(2));
    }
}
