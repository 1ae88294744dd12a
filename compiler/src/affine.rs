//! Affine blocks: which tables a closed-form solver (ALS, Gibbs) can update
//! one row at a time.
//!
//! `analyse(&Graph) -> AffineReport`, on the forward graph.
//!
//! A table is a block when, holding every other value fixed, the loss is a
//! sum of scaled squares of terms affine in each of its rows, plus terms that
//! do not read it. Then the gradient of each squared term with respect to a
//! row does not depend on that row, and a row's optimum (ALS) and full
//! conditional (Gibbs) are closed forms of per-example statistics. The loss
//! is walked rather than the score alone, because a score affine in a row
//! (BPR's `m[i] + dot(p[u], q[i])`) is useless to these solvers once the
//! loss passes it through a sigmoid.
//!
//! Each node gets a [`Degree`] in the table's rows. A product of two terms
//! that both read the table breaks it (a row times itself anywhere but in a
//! squared term, or two rows of the same table: `dot(p[u], p[v])`), as does
//! any non-linear function of a term that reads it. The one product that is
//! kept is the factorization machine's pairwise term,
//! `dot(sum(v), sum(v)) - sum(dot(v, v))`: each member's square cancels, so
//! what is left is affine in each member's row.

use crate::diagnostic::Diagnostic;
use crate::ir::{Graph, NodeId, Op, TableId, TableRole};
use crate::source::{FileId, Span};
use crate::types::{BinaryFn, UnaryFn};
use std::fmt;

/// The analysis of one model: a verdict per parameter, in declaration
/// order (tables with a row per domain member, and globals, which are one
/// row the solver fits too), and the shape of the loss.
#[derive(Clone, Debug, PartialEq)]
pub struct AffineReport {
    pub tables: Vec<TableVerdict>,
    pub loss: LossShape,
}

impl AffineReport {
    /// The tables an ALS or Gibbs sweep can update.
    pub fn blocks(&self) -> impl Iterator<Item = &TableVerdict> {
        self.tables
            .iter()
            .filter(|t| matches!(t.verdict, Verdict::Block))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableVerdict {
    pub table: TableId,
    pub name: String,
    /// A global parameter (`param b: real`): one row shared by every example.
    pub global: bool,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The loss is a sum of squares of terms affine in each row.
    Block,
    /// The score does not read the table, so no example constrains its rows
    /// through the prediction.
    NotInScore,
    /// The node that breaks it, with where it came from.
    NotAffine {
        reason: Breaker,
        node: NodeId,
        span: Option<Span>,
    },
}

/// Why a table is not an affine block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breaker {
    /// A non-linear function of a term that reads the table.
    Function(UnaryFn),
    /// A product of two different terms that both read the table: two rows
    /// of one table, or a row times a function of itself.
    Product,
    /// A row times itself inside something other than a squared loss term.
    SquareInside,
    /// A division by a term that reads the table.
    Divisor,
    /// `max` or `min` of a term that reads the table: a hinge.
    Hinge,
    /// A softmax over a term that reads the table.
    Softmax,
    /// The loss reads the table only linearly: no squared error bounds it.
    LinearLoss,
}

impl fmt::Display for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breaker::Function(u) => write!(f, "{} of a term that reads the table", u.name()),
            Breaker::Product => write!(f, "a product of two terms that both read the table"),
            Breaker::SquareInside => {
                write!(f, "a square of the table's row inside another function")
            }
            Breaker::Divisor => write!(f, "a division by a term that reads the table"),
            Breaker::Hinge => write!(f, "max or min of a term that reads the table"),
            Breaker::Softmax => write!(f, "a softmax over a term that reads the table"),
            Breaker::LinearLoss => write!(f, "the loss is linear in the table, not squared"),
        }
    }
}

/// Whether the loss is squared error on the score: the normal likelihood
/// ALS and Gibbs assume.
#[derive(Clone, Debug, PartialEq)]
pub enum LossShape {
    /// Every loss term that reads the score is a scaled `(score - target)²`.
    SquaredError,
    /// The model has no score to fit.
    NoScore,
    /// A loss term that reads the score some other way.
    Other { node: NodeId, span: Option<Span> },
}

/// A node's degree in one table's rows.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Degree {
    /// Does not read the table.
    Free,
    /// Affine in each row.
    Linear,
    /// Quadratic in a row: allowed only as a term of the loss's sum. The
    /// node where the square was taken, to blame if it goes further.
    Square(NodeId),
    Broken(Breaker, NodeId),
}

/// The verdict on every parameter of a forward graph, and the loss's
/// shape. A global is analysed as a table of one row: a closed-form solver
/// must fit the global bias as well as the tables. The graph is one
/// [`Graph::verify`] accepts (as every pass's output is): operands come
/// before their users.
pub fn analyse(graph: &Graph) -> AffineReport {
    let tables = graph
        .tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let table = TableId(i as u32);
            TableVerdict {
                table,
                name: t.name.clone(),
                global: t.domain.is_none(),
                verdict: table_verdict(graph, table),
            }
        })
        .collect();
    AffineReport {
        tables,
        loss: loss_shape(graph),
    }
}

fn table_verdict(graph: &Graph, table: TableId) -> Verdict {
    let degrees = degrees(graph, table);
    let score_reads = graph
        .score
        .is_some_and(|s| degrees[s.index()] != Degree::Free);
    if !score_reads {
        return Verdict::NotInScore;
    }
    let broken = |reason, node: NodeId| Verdict::NotAffine {
        reason,
        node,
        span: graph.spans.get(node.index()).copied().flatten(),
    };
    match degrees[graph.loss.index()] {
        Degree::Square(_) => Verdict::Block,
        Degree::Broken(reason, node) => broken(reason, node),
        Degree::Free | Degree::Linear => broken(Breaker::LinearLoss, graph.loss),
    }
}

/// The degree of every node in `table`'s rows, in one forward walk.
fn degrees(graph: &Graph, table: TableId) -> Vec<Degree> {
    let mut degrees: Vec<Degree> = Vec::with_capacity(graph.nodes.len());
    for (i, node) in graph.nodes.iter().enumerate() {
        let here = NodeId(i as u32);
        let of = |n: NodeId| degrees[n.index()];
        let degree = match node.op {
            Op::Const(_)
            | Op::Slot(_)
            | Op::Shift(..)
            | Op::InRange(_)
            | Op::BagWeights(_)
            | Op::BagLen(_) => Degree::Free,
            Op::Global(t) | Op::Gather(t, _) | Op::GatherBag(t, _) => {
                if t == table {
                    Degree::Linear
                } else {
                    Degree::Free
                }
            }
            Op::Unary(UnaryFn::Neg, a)
            | Op::SumLanes(a)
            | Op::SumBag(a)
            | Op::Slice(a, ..)
            | Op::Pad(a, ..)
            | Op::Expand(a, _) => of(a),
            Op::Unary(f, a) => through_function(of(a), Breaker::Function(f), here),
            Op::Softmax(a) => through_function(of(a), Breaker::Softmax, here),
            Op::Binary(BinaryFn::Add, a, b) | Op::Concat(a, b) => sum(of(a), of(b)),
            Op::Binary(BinaryFn::Sub, a, b) => {
                if is_pairwise_interaction(graph, table, a, b) {
                    Degree::Linear
                } else {
                    sum(of(a), of(b))
                }
            }
            Op::Binary(BinaryFn::Mul, a, b)
            | Op::Dot(a, b)
            | Op::Outer(a, b)
            | Op::MatVec(a, b)
            | Op::MatTVec(a, b) => {
                let same = unscaled(graph, &degrees, a) == unscaled(graph, &degrees, b);
                product(same, of(a), of(b), here)
            }
            Op::Binary(BinaryFn::Div, a, b) => match of(b) {
                Degree::Free => of(a),
                Degree::Broken(r, n) => Degree::Broken(r, n),
                Degree::Linear | Degree::Square(_) => {
                    first_broken(of(a), Degree::Broken(Breaker::Divisor, here))
                }
            },
            Op::Binary(BinaryFn::Max | BinaryFn::Min, a, b) => {
                let both = sum(of(a), of(b));
                through_function(both, Breaker::Hinge, here)
            }
        };
        degrees.push(degree);
    }
    degrees
}

/// A function that is not affine: free stays free, a break stays the first
/// break, anything that reads the table breaks here.
fn through_function(operand: Degree, reason: Breaker, here: NodeId) -> Degree {
    match operand {
        Degree::Free => Degree::Free,
        Degree::Broken(r, n) => Degree::Broken(r, n),
        Degree::Linear => Degree::Broken(reason, here),
        // Blame the square, which is what the function makes non-quadratic.
        Degree::Square(at) => Degree::Broken(Breaker::SquareInside, at),
    }
}

/// The degree of a sum: the higher of the two, a break winning.
fn sum(a: Degree, b: Degree) -> Degree {
    match (a, b) {
        (Degree::Broken(..), _) => a,
        (_, Degree::Broken(..)) => b,
        (Degree::Square(_), _) => a,
        (_, Degree::Square(_)) => b,
        (Degree::Linear, _) | (_, Degree::Linear) => Degree::Linear,
        (Degree::Free, Degree::Free) => Degree::Free,
    }
}

fn first_broken(a: Degree, otherwise: Degree) -> Degree {
    match a {
        Degree::Broken(..) => a,
        _ => otherwise,
    }
}

/// A product: scaling by a free factor keeps the degree; a term times
/// itself (`same`: the factors are one node up to free scaling) is a
/// square; any other product of two terms that read the table breaks it.
fn product(same: bool, da: Degree, db: Degree, here: NodeId) -> Degree {
    match (da, db) {
        (Degree::Broken(..), _) => da,
        (_, Degree::Broken(..)) => db,
        (Degree::Free, d) | (d, Degree::Free) => d,
        (Degree::Linear, Degree::Linear) if same => Degree::Square(here),
        (Degree::Square(at), _) | (_, Degree::Square(at)) => {
            Degree::Broken(Breaker::SquareInside, at)
        }
        (Degree::Linear, Degree::Linear) => Degree::Broken(Breaker::Product, here),
    }
}

/// The node under any scaling by factors `free` says do not matter: the
/// normal likelihood writes its square as `0.5 * d * d`, which is
/// `(0.5 * d) * d`, and that is still `d` times itself.
fn strip_scaling(graph: &Graph, mut n: NodeId, free: impl Fn(NodeId) -> bool) -> NodeId {
    loop {
        match graph.node(n).op {
            Op::Unary(UnaryFn::Neg, a) => n = a,
            Op::Binary(BinaryFn::Mul, a, b) if free(a) && !free(b) => n = b,
            Op::Binary(BinaryFn::Mul, a, b) if free(b) && !free(a) => n = a,
            Op::Binary(BinaryFn::Div, a, b) if free(b) => n = a,
            _ => return n,
        }
    }
}

/// [`strip_scaling`] by factors that do not read the table.
fn unscaled(graph: &Graph, degrees: &[Degree], n: NodeId) -> NodeId {
    strip_scaling(graph, n, |m| degrees[m.index()] == Degree::Free)
}

/// `dot(sum(v), sum(v)) - sum(dot(v, v))` for a bag of `table`'s rows `v`:
/// the factorization machine's `Σ_{f<g} <v_f, v_g>`, affine in each member's
/// row because each member's square appears once on each side.
fn is_pairwise_interaction(graph: &Graph, table: TableId, all: NodeId, own: NodeId) -> bool {
    let op = |n: NodeId| graph.node(n).op;
    let Op::Dot(s1, s2) = op(all) else {
        return false;
    };
    let Op::SumBag(rows) = op(s1) else {
        return false;
    };
    let Op::SumBag(own_squares) = op(own) else {
        return false;
    };
    s1 == s2
        && op(own_squares) == Op::Dot(rows, rows)
        && matches!(op(rows), Op::GatherBag(t, _) if t == table)
}

/// Whether every loss term that reads the score is a scaled squared error
/// `(score - target)²` against a real column.
fn loss_shape(graph: &Graph) -> LossShape {
    let Some(score) = graph.score else {
        return LossShape::NoScore;
    };
    let mut reads_score = vec![false; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        reads_score[i] =
            i == score.index() || node.op.operands().iter().any(|o| reads_score[o.index()]);
    }
    let reads = |n: NodeId| reads_score[n.index()];
    let unscaled_error = |n: NodeId| strip_scaling(graph, n, |m| !reads(m));
    let other = |n: NodeId| LossShape::Other {
        node: n,
        span: graph.spans.get(n.index()).copied().flatten(),
    };
    // Walk down the loss's sums and free scalings to the terms that read the
    // score, each with the term it was reached through.
    let mut pending = vec![(graph.loss, graph.loss)];
    let mut linear = None;
    while let Some((n, through)) = pending.pop() {
        if !reads(n) {
            continue;
        }
        // The score itself as a term of the loss (`+ 0.01 * R`): linear, not
        // an error squared. Its own sums are the prediction, not loss terms;
        // the term that holds it is blamed, since the score's one node is
        // shown at its first use, and only when no term is worse (a
        // logistic loss is `softplus(R) - y * R`: the softplus says more).
        if Some(n) == graph.score {
            linear.get_or_insert(through);
            continue;
        }
        let from = |m: NodeId| (m, n);
        match graph.node(n).op {
            Op::Binary(BinaryFn::Add | BinaryFn::Sub, a, b) => pending.extend([(a, a), (b, b)]),
            Op::Unary(UnaryFn::Neg, a) | Op::SumLanes(a) => pending.push(from(a)),
            Op::Binary(BinaryFn::Mul, a, b) if !(reads(a) && reads(b)) => {
                pending.extend([from(a), from(b)])
            }
            Op::Binary(BinaryFn::Div, a, b) if !reads(b) => pending.push(from(a)),
            Op::Binary(BinaryFn::Mul, a, b) | Op::Dot(a, b)
                if unscaled_error(a) == unscaled_error(b)
                    && (is_error(graph, &reads_score, unscaled_error(a))
                        // The score squared: an error against a target of 0
                        // (implicit feedback's unobserved pairs).
                        || Some(unscaled_error(a)) == graph.score) => {}
            _ => return other(n),
        }
    }
    match linear {
        Some(term) => other(term),
        None => LossShape::SquaredError,
    }
}

/// `score - target` or `target - score` (already stripped of scaling), where
/// the target is anything that does not read the score: a real column, or a
/// function of one (GloVe's `log(k)`).
fn is_error(graph: &Graph, reads_score: &[bool], n: NodeId) -> bool {
    let Op::Binary(BinaryFn::Sub, a, b) = graph.node(n).op else {
        return false;
    };
    let is_score = |m: NodeId| graph.score == Some(m);
    let is_target = |m: NodeId| !reads_score[m.index()];
    (is_score(a) && is_target(b)) || (is_score(b) && is_target(a))
}

/// The error for a model a closed-form solver cannot fit; `None` when
/// `solver` (the name the user asked for: `als`, `gibbs`) can run. It is
/// refused when any parameter the score reads is not a block (the solver
/// would leave it untrained), naming each and the term that breaks it, and
/// when the loss is not squared error on the score. Terms inside a stdlib
/// function are shown at the user's expression that reads them, in `root`,
/// the model's file, with the function's own text in a note, as every other
/// error is.
pub fn solver_error(
    graph: &Graph,
    report: &AffineReport,
    solver: &str,
    root: FileId,
) -> Option<Diagnostic> {
    let start_of_file = Span::new(root, 0, 0);
    // Parameters broken by the same term share one label.
    let mut groups: Vec<(Breaker, NodeId, Vec<&str>)> = Vec::new();
    for t in &report.tables {
        if let Verdict::NotAffine { reason, node, .. } = t.verdict {
            match groups.iter_mut().find(|g| g.0 == reason && g.1 == node) {
                Some(group) => group.2.push(&t.name),
                None => groups.push((reason, node, vec![&t.name])),
            }
        }
    }
    let closed_form = format!(
        "`{solver}` updates a table's rows in closed form, which needs the loss to be a squared error of a prediction affine in each row"
    );
    if report.blocks().next().is_none() {
        let message = format!(
            "`solver: {solver}` needs a table the loss is affine in, and this model has none"
        );
        if groups.is_empty() {
            return Some(
                Diagnostic::error("recc::no-affine-block", message, start_of_file)
                    .label("the score reads no table with a row per member"),
            );
        }
        let d = labelled(graph, root, "recc::no-affine-block", message, &groups);
        return Some(d.with_help(format!(
            "{closed_form}; train this model with `sgd` or `adam`"
        )));
    }
    if !groups.is_empty() {
        let names: Vec<&str> = groups.iter().flat_map(|g| g.2.iter().copied()).collect();
        let message = format!(
            "`solver: {solver}` cannot fit {}: the loss is not affine in {}",
            quoted(&names),
            if names.len() == 1 { "it" } else { "them" }
        );
        let mut d = labelled(graph, root, "recc::not-affine-block", message, &groups);
        let variational: Vec<&str> = report
            .tables
            .iter()
            .filter(|t| matches!(t.verdict, Verdict::NotAffine { .. }))
            .filter(|t| graph.tables[t.table.index()].role == TableRole::LogVar)
            .map(|t| t.name.trim_end_matches(".logvar"))
            .collect();
        if !variational.is_empty() {
            d = d.with_note(format!(
                "{} {} `variational`: a log-variance is fitted by the gradient of the ELBO; \
                 `gibbs` samples the posterior itself, so drop `variational(...)` to use it",
                quoted(&variational),
                if variational.len() == 1 { "is" } else { "are" }
            ));
        }
        return Some(d.with_help(format!(
            "{closed_form}; it would solve the other parameters and leave these untrained. \
             Train this model with `sgd` or `adam`, or make the score affine in every parameter it reads"
        )));
    }
    if let LossShape::Other { node, .. } = report.loss {
        let (span, inner) = in_user_file(graph, node, root);
        let d = Diagnostic::error(
            "recc::not-squared-error",
            format!("`solver: {solver}` needs a squared-error loss on the score"),
            span.unwrap_or(start_of_file),
        )
        .label("this loss term reads the score another way")
        .with_help(
            "ALS and Gibbs assume a normal likelihood: `loss mse(R, r)` or `r ~ normal(R, s)`",
        );
        return Some(match inner {
            Some(inner) => d.with_secondary(inner, "the term, inside a stdlib function"),
            None => d,
        });
    }
    None
}

/// An error with a label at each breaking term, naming the parameters it
/// breaks: the first group's as the primary label.
fn labelled(
    graph: &Graph,
    root: FileId,
    code: &'static str,
    message: String,
    groups: &[(Breaker, NodeId, Vec<&str>)],
) -> Diagnostic {
    let start_of_file = Span::new(root, 0, 0);
    let mut d = Diagnostic::error(code, message, start_of_file);
    for (i, (reason, node, names)) in groups.iter().enumerate() {
        let (span, inner) = in_user_file(graph, *node, root);
        let span = span.unwrap_or(start_of_file);
        if i == 0 {
            d.primary.span = span;
            d = d.label(format!("{reason}: {} not affine", quoted(names)));
        } else {
            d = d.with_secondary(span, format!("{}: {reason}", quoted(names)));
        }
        d = with_inner(d, inner, *reason);
    }
    d
}

/// `` `m`, `p` `` for a list of table names.
fn quoted(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

/// Where to show `node` in the model's file: its own span there, or else
/// the span of the first node in `root` that reads it (the user's call of the
/// stdlib function it sits in), with the node's own span as the second value.
fn in_user_file(graph: &Graph, node: NodeId, root: FileId) -> (Option<Span>, Option<Span>) {
    let span_of = |n: NodeId| graph.spans.get(n.index()).copied().flatten();
    let own = span_of(node);
    if own.is_none_or(|s| s.file == root) {
        return (own, None);
    }
    let mut reads = vec![false; graph.nodes.len()];
    for (i, n) in graph.nodes.iter().enumerate().skip(node.index()) {
        reads[i] = i == node.index() || n.op.operands().iter().any(|o| reads[o.index()]);
        if let Some(span) = span_of(NodeId(i as u32)).filter(|s| reads[i] && s.file == root) {
            return (Some(span), own);
        }
    }
    (own, None)
}

/// The term's own place, when it is inside a stdlib function.
fn with_inner(d: Diagnostic, inner: Option<Span>, reason: Breaker) -> Diagnostic {
    match inner {
        Some(span) => d.with_secondary(span, format!("{reason}, inside a stdlib function")),
        None => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{compile, forward_graph};

    const HEADER: &str = "\
use stdlib.losses
use stdlib.fm
use stdlib.geometry
input u: user
input v: user
input i: item
input r: real
input f: bag(feature)
param b: real
param m[item]: real
param p[user]: vec(4)
param q[item]: vec(4)
param e[feature]: vec(4)
";

    /// The graph and report of a model made of the shared header and `body`.
    fn analysed(body: &str) -> (crate::Compiled, Graph, AffineReport) {
        let text = format!("{HEADER}{body}");
        let compiled = compile("t.rec", &text);
        let Some(model) = compiled.model.as_ref() else {
            panic!("{body}\n{}", compiled.render_diagnostics())
        };
        let graph = match forward_graph(model) {
            Ok(g) => g,
            Err(e) => panic!("{body}: {e}"),
        };
        let report = analyse(&graph);
        (compiled, graph, report)
    }

    fn verdict<'r>(report: &'r AffineReport, name: &str) -> &'r Verdict {
        match report.tables.iter().find(|t| t.name == name) {
            Some(t) => &t.verdict,
            None => panic!("no table {name} in {report:?}"),
        }
    }

    /// The reason a table is not a block, and the source text of the term blamed.
    fn breaker(compiled: &crate::Compiled, report: &AffineReport, name: &str) -> (Breaker, String) {
        match verdict(report, name) {
            Verdict::NotAffine {
                reason,
                span: Some(span),
                ..
            } => (*reason, compiled.sources.snippet(*span).to_string()),
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn matrix_factorization_is_a_block_in_each_table() {
        let (_, _, report) = analysed(
            "let R(u, i) = b + m[i] + dot(p[u], q[i])\n\
             loss mse(R(u, i), r)\n\
             penalty 0.1 * (sq(p[u]) + sq(q[i]))\n",
        );
        for name in ["m", "p", "q"] {
            assert_eq!(verdict(&report, name), &Verdict::Block, "{name}");
        }
        assert_eq!(verdict(&report, "e"), &Verdict::NotInScore);
        assert_eq!(report.loss, LossShape::SquaredError);
    }

    #[test]
    fn a_normal_likelihood_and_a_random_walk_prior_are_squares() {
        let (_, _, report) = analysed(
            "use stdlib.likelihoods\n\
             input t: week\n\
             param n[week]: vec(4)\n\
             let R(u, i) = dot(p[u], q[i]) + dot(p[u], n[t])\n\
             r ~ normal(R(u, i), 0.5)\n\
             prior n[t] ~ normal(n[t - 1], 0.1)\n",
        );
        for name in ["p", "q", "n"] {
            assert_eq!(verdict(&report, name), &Verdict::Block, "{name}");
        }
        assert_eq!(report.loss, LossShape::SquaredError);
    }

    #[test]
    fn the_factorization_machine_pairwise_term_is_affine_in_each_row() {
        let (_, _, report) = analysed(
            "let R = b + fm2(e[f])\n\
             loss mse(R, r)\n\
             penalty 0.1 * sum(sq(e[f]))\n",
        );
        assert_eq!(verdict(&report, "e"), &Verdict::Block);
    }

    #[test]
    fn a_bag_sum_squared_without_its_diagonal_removed_is_not_affine() {
        let (_, _, report) = analysed(
            "let R = b + 0.5 * sq(sum(e[f]))\n\
             loss mse(R, r)\n",
        );
        assert!(
            matches!(
                verdict(&report, "e"),
                Verdict::NotAffine {
                    reason: Breaker::SquareInside,
                    ..
                }
            ),
            "{report:?}"
        );
    }

    #[test]
    fn a_sigmoid_of_the_row_breaks_it() {
        let (compiled, _, report) = analysed(
            "let R(u, i) = sigmoid(dot(p[u], q[i]))\n\
             loss mse(R(u, i), r)\n",
        );
        let (reason, text) = breaker(&compiled, &report, "p");
        assert_eq!(reason, Breaker::Function(UnaryFn::Sigmoid));
        // A `let` is expanded at its use, so its terms are located at the call.
        assert_eq!(text, "R(u, i)");
    }

    #[test]
    fn a_row_times_itself_in_the_score_breaks_it() {
        let (compiled, _, report) = analysed(
            "let R(u, i) = dot(p[u], p[u]) + dot(p[u], q[i])\n\
             loss mse(R(u, i), r)\n",
        );
        let (reason, text) = breaker(&compiled, &report, "p");
        assert_eq!(reason, Breaker::SquareInside);
        assert_eq!(text, "dot(p[u], p[u])");
        assert_eq!(verdict(&report, "q"), &Verdict::Block);
    }

    #[test]
    fn one_table_indexed_twice_in_a_product_breaks_it() {
        let (compiled, _, report) = analysed(
            "let R(u, v) = dot(p[u], p[v])\n\
             loss mse(R(u, v), r)\n",
        );
        let (reason, text) = breaker(&compiled, &report, "p");
        assert_eq!(reason, Breaker::Product);
        assert_eq!(text, "R(u, v)");
    }

    #[test]
    fn a_hinge_breaks_it() {
        let (compiled, _, report) = analysed(
            "let R(u, i) = dot(p[u], q[i])\n\
             loss max(0, 1 - r * R(u, i))\n",
        );
        let (reason, text) = breaker(&compiled, &report, "q");
        assert_eq!(reason, Breaker::Hinge);
        assert_eq!(text, "max(0, 1 - r * R(u, i))");
        assert!(matches!(report.loss, LossShape::Other { .. }));
    }

    #[test]
    fn a_distance_breaks_it() {
        let (_, _, report) = analysed(
            "let R(u, i) = m[i] - poincare_distance(p[u], q[i])\n\
             loss mse(R(u, i), r)\n",
        );
        assert!(matches!(verdict(&report, "p"), Verdict::NotAffine { .. }));
        assert_eq!(verdict(&report, "m"), &Verdict::Block);
    }

    #[test]
    fn a_division_by_the_row_breaks_it() {
        let (compiled, _, report) = analysed(
            "let R(u, i) = m[i] / (1 + dot(p[u], q[i]))\n\
             loss mse(R(u, i), r)\n",
        );
        let (reason, _) = breaker(&compiled, &report, "p");
        assert_eq!(reason, Breaker::Divisor);
        assert_eq!(verdict(&report, "m"), &Verdict::Block);
    }

    #[test]
    fn a_loss_linear_in_the_row_is_not_a_block() {
        let (compiled, _, report) = analysed(
            "let R(u, i) = dot(p[u], q[i])\n\
             loss r - R(u, i)\n",
        );
        let (reason, _) = breaker(&compiled, &report, "p");
        assert_eq!(reason, Breaker::LinearLoss);
    }

    #[test]
    fn a_sigmoid_of_a_difference_of_scores_leaves_no_block_and_says_where() {
        let (compiled, graph, report) = analysed(
            "let R(u, i) = m[i] + dot(p[u], q[i])\n\
             loss bpr(R(u, i), R(u, j)) where j ~ negative(item)\n",
        );
        assert_eq!(report.blocks().count(), 0);
        let (reason, text) = breaker(&compiled, &report, "p");
        assert_eq!(reason, Breaker::Function(UnaryFn::Softplus));
        assert_eq!(text, "bpr(R(u, i), R(u, j))");
        let Some(error) = solver_error(&graph, &report, "als", compiled.root) else {
            panic!("no error for {report:?}")
        };
        assert_eq!(error.code, "recc::no-affine-block");
        let rendered = crate::diagnostic::render(&compiled.sources, &[error]);
        assert!(
            rendered.contains("softplus of a term that reads the table"),
            "{rendered}"
        );
    }

    #[test]
    fn a_model_with_blocks_and_squared_error_can_use_the_solvers() {
        let (compiled, graph, report) = analysed(
            "let R(u, i) = dot(p[u], q[i])\n\
             loss mse(R(u, i), r)\n",
        );
        assert_eq!(solver_error(&graph, &report, "gibbs", compiled.root), None);
    }

    #[test]
    fn an_absolute_error_loss_is_not_squared_error() {
        let (compiled, _, report) = analysed(
            "let R(u, i) = m[i] + dot(p[u], q[i])\n\
             loss mse(R(u, i), r) + 0.1 * mae(R(u, i), r)\n",
        );
        let LossShape::Other {
            span: Some(span), ..
        } = report.loss
        else {
            panic!("{:?}", report.loss)
        };
        assert_eq!(compiled.sources.snippet(span), "mae(R(u, i), r)");
    }

    #[test]
    fn a_global_bias_is_a_one_row_block() {
        let (_, _, report) = analysed(
            "let R(u, i) = b + dot(p[u], q[i])\n\
             loss mse(R(u, i), r)\n",
        );
        let Some(b) = report.tables.iter().find(|t| t.name == "b") else {
            panic!("{report:?}")
        };
        assert!(b.global);
        assert_eq!(b.verdict, Verdict::Block);
        assert!(report
            .tables
            .iter()
            .filter(|t| t.name != "b")
            .all(|t| !t.global));
    }

    #[test]
    fn one_parameter_that_is_not_a_block_refuses_the_solver_and_is_named() {
        let (compiled, graph, report) = analysed(
            "let R(u, i) = b * b + dot(p[u], q[i])\n\
             loss mse(R(u, i), r)\n",
        );
        assert_eq!(verdict(&report, "p"), &Verdict::Block);
        let Some(error) = solver_error(&graph, &report, "als", compiled.root) else {
            panic!("no error for {report:?}")
        };
        assert_eq!(error.code, "recc::not-affine-block");
        assert_eq!(
            error.message,
            "`solver: als` cannot fit `b`: the loss is not affine in it"
        );
        assert_eq!(compiled.sources.snippet(error.primary.span), "b * b");
    }

    #[test]
    fn the_score_added_to_the_loss_is_not_squared_error_and_the_term_is_blamed() {
        let (compiled, graph, report) = analysed(
            "let R(u, i) = dot(p[u], q[i])\n\
             loss mse(R(u, i), r) + 0.01 * R(u, i)\n",
        );
        let LossShape::Other {
            span: Some(span), ..
        } = report.loss
        else {
            panic!("{:?}", report.loss)
        };
        assert_eq!(compiled.sources.snippet(span), "0.01 * R(u, i)");
        let error = solver_error(&graph, &report, "gibbs", compiled.root);
        assert_eq!(error.map(|e| e.code), Some("recc::not-squared-error"));
    }
}
