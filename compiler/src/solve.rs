//! The statistics a closed-form solver needs, derived from the forward graph.
//!
//! `plan(&Graph) -> Result<SolvePlan, SolveError>`.
//!
//! The loss of a model ALS or Gibbs can fit is a sum of scaled squares,
//! `Σ_j c_j ‖d_j‖²`, each `d_j` affine in every row of a block table given
//! the rest (see [`crate::affine`]). For one row `x` of table `T` that makes
//! the objective a quadratic whose normal equations are sums over the row's
//! examples of two kinds of term:
//!
//! - a scalar `d` (the error `score - target`, or any other affine scalar):
//!   `c (bᵀx - t)²` with `b = ∂d/∂x` and `t = bᵀx - d` at the current values;
//! - a vector `d` that is the table's row itself, scaled (an L2 penalty or a
//!   zero-mean normal prior): `c ‖g ∘ x‖²`, with `g = ∂(Σ d)/∂x` per lane.
//!
//! Each term becomes a small graph whose loss is `d` summed to a scalar, whose
//! score is `c`, and whose only gradients are `T`'s: evaluating it on an
//! example gives `b` (or `g`), `d`'s sum and `c`, which is all a row's system
//! needs. So any backend that runs gradient graphs can run them: the
//! reference evaluator defines the numbers, and the runtime's solvers run
//! them as prepared statistics programs that give the same.

use crate::affine::{self, AffineReport, LossShape, Verdict};
use crate::ir::{Builder, GradTarget, Graph, IrError, NodeId, Op, SlotId, SlotKind, TableId, Ty};
use crate::source::Span;
use crate::types::{BinaryFn, Shape, UnaryFn};
use std::fmt;

/// How to accumulate every block table's rows.
#[derive(Clone, Debug)]
pub struct SolvePlan {
    /// In declaration order; globals are one-row blocks.
    pub blocks: Vec<BlockPlan>,
    /// The likelihood alone: loss is `Σ c_j d_j²` over the terms that read
    /// the score, score is `Σ c_j` (their weight). Gibbs samples the noise
    /// precision from its residuals.
    pub likelihood: Graph,
    /// The blocks' shares of a sum over unobserved pairs, if the model has
    /// one (see [`plan_with_pairs`]).
    pub pairs: Vec<PairBlock>,
}

/// One block table's share of a model's sum over every pair
/// (`loss f(u, j) where j ~ unobserved(item)`, kept as `f` over every pair
/// less `f` over the observed ones, which are per-example terms).
///
/// For a row of `table`, indexed by `own`'s member, the sum over every
/// pair is a sum over `running`'s whole domain. Every other value the
/// terms read belongs to that domain (or is global), so the sum's
/// statistics are the same for every row of the table: computed once per
/// table per sweep with `own` at any member (the YᵀY trick of Hu, Koren and
/// Volinsky), they cost one pass over `running`'s domain, not over every
/// pair.
#[derive(Clone, Debug)]
pub struct PairBlock {
    pub table: TableId,
    /// The slot of the table's own member in the pair graph.
    pub own: SlotId,
    /// The slot that runs over its whole domain.
    pub running: SlotId,
    /// Term graphs as [`BlockPlan::terms`], over the pair graph's slots.
    pub terms: Vec<TermPlan>,
}

#[derive(Clone, Debug)]
pub struct BlockPlan {
    pub table: TableId,
    pub name: String,
    /// Numbers per row.
    pub width: usize,
    /// A global: one row, no domain.
    pub global: bool,
    /// The loss terms that read the table.
    pub terms: Vec<TermPlan>,
}

#[derive(Clone, Debug)]
pub struct TermPlan {
    pub kind: TermKind,
    /// Whether the term reads the score (part of the likelihood), rather
    /// than being a penalty or prior.
    pub likelihood: bool,
    /// loss = `d` summed to a scalar, score = `c`, gradients: the table's.
    pub graph: Graph,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermKind {
    /// `c (bᵀx - t)²`: one rank-one update of the row's system.
    Scalar,
    /// `c ‖g ∘ x‖²`: a diagonal update, no pull away from zero.
    Ridge,
}

/// Why a model's loss cannot be split into the solvers' terms.
#[derive(Clone, Debug, PartialEq)]
pub struct SolveError {
    pub message: String,
    pub span: Option<Span>,
}

impl fmt::Display for SolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SolveError {}

impl From<IrError> for SolveError {
    fn from(e: IrError) -> SolveError {
        SolveError {
            message: e.to_string(),
            span: None,
        }
    }
}

/// One squared term of the loss: `scale · ‖inner‖²`, the scale a product of
/// factors that read no parameter.
#[derive(Clone, Debug)]
struct Square {
    inner: NodeId,
    /// The loss term it was found in, for reports.
    term: NodeId,
    /// (factor, divides) pairs; `negated` flips the sign.
    factors: Vec<(NodeId, bool)>,
    negated: bool,
}

/// The plan for `forward`, a simplified forward graph whose report says
/// every table the score reads is a block (as `affine::solver_error`
/// requires before a solver runs).
pub fn plan(forward: &Graph) -> Result<SolvePlan, SolveError> {
    let report = affine::analyse(forward);
    plan_with(forward, &report)
}

pub fn plan_with(forward: &Graph, report: &AffineReport) -> Result<SolvePlan, SolveError> {
    plan_squares(forward, report, false)
}

/// The plan for a model with a sum over unobserved pairs: `forward`'s
/// per-example terms, which subtract each observed pair's share of the sum
/// (so they may hold negated squares: with the sum over every pair added
/// back, each row's system stays positive), and the blocks' shares of the
/// sum over every pair from `pairs`, whose loss is the term on one pair of
/// the members in slots `over` (the summed domain) and `by`.
pub fn plan_with_pairs(
    forward: &Graph,
    report: &AffineReport,
    pairs: &Graph,
    over: SlotId,
    by: SlotId,
) -> Result<SolvePlan, SolveError> {
    let mut plan = plan_squares(forward, report, true)?;
    let pair_report = affine::analyse(pairs);
    let inner = plan_squares(pairs, &pair_report, false)?;
    let domain_of = |slot: SlotId| match pairs.slots[slot.index()].kind {
        SlotKind::Index(d) => Some(d),
        _ => None,
    };
    let span_of = |n: NodeId| pairs.spans.get(n.index()).copied().flatten();
    for block in inner.blocks {
        let t = &pairs.tables[block.table.index()];
        let (own, running) = match t.domain {
            Some(d) if Some(d) == domain_of(by) => (by, over),
            Some(d) if Some(d) == domain_of(over) => (over, by),
            _ => {
                return Err(SolveError {
                    message: format!(
                        "the sum over unobserved pairs reads `{}`, which is not a row of \
                         either member of the pair",
                        t.name
                    ),
                    span: first_read(pairs, block.table).and_then(span_of),
                })
            }
        };
        let own_domain = domain_of(own);
        for term in &block.terms {
            let g = &term.graph;
            for n in &g.nodes {
                if let Op::Gather(other, _) | Op::GatherBag(other, _) = n.op {
                    if other != block.table && g.tables[other.index()].domain == own_domain {
                        return Err(SolveError {
                            message: format!(
                                "the sum over unobserved pairs reads `{}` and `{}`, two rows of \
                                 one member: it is summed without visiting every pair only when \
                                 each table's row meets rows of the other member alone",
                                t.name,
                                g.tables[other.index()].name
                            ),
                            span: first_read(pairs, other).and_then(span_of),
                        });
                    }
                }
            }
        }
        if !plan.blocks.iter().any(|b| b.table == block.table) {
            return Err(SolveError {
                message: format!(
                    "`{}` is read only by the sum over unobserved pairs; no example fits it",
                    t.name
                ),
                span: first_read(pairs, block.table).and_then(span_of),
            });
        }
        plan.pairs.push(PairBlock {
            table: block.table,
            own,
            running,
            terms: block.terms,
        });
    }
    Ok(plan)
}

/// The first node that reads `table`.
fn first_read(g: &Graph, table: TableId) -> Option<NodeId> {
    g.nodes.iter().position(|n| {
        matches!(n.op, Op::Global(t) | Op::Gather(t, _) | Op::GatherBag(t, _) if t == table)
    })
    .map(|i| NodeId(i as u32))
}

fn plan_squares(
    forward: &Graph,
    report: &AffineReport,
    allow_negated: bool,
) -> Result<SolvePlan, SolveError> {
    let reads_param = reads(forward, |op| {
        matches!(op, Op::Global(_) | Op::Gather(..) | Op::GatherBag(..))
    });
    let span_of = |n: NodeId| forward.spans.get(n.index()).copied().flatten();
    if let LossShape::Other { node, .. } = report.loss {
        return Err(SolveError {
            message: "the loss reads the score other than by a squared error".into(),
            span: span_of(node),
        });
    }
    let mut squares = Vec::new();
    collect_squares(
        forward,
        &reads_param,
        forward.loss,
        forward.loss,
        Vec::new(),
        false,
        &mut squares,
    )?;
    let reads_score = reads_node(forward, forward.score);
    if !allow_negated
        && squares
            .iter()
            .any(|s| s.negated && reads_param[s.inner.index()])
    {
        return Err(SolveError {
            message: "the loss subtracts a square of a parameter: it has no minimum".into(),
            span: None,
        });
    }

    let mut blocks = Vec::new();
    for (i, t) in forward.tables.iter().enumerate() {
        let table = TableId(i as u32);
        let verdict = report.tables.iter().find(|v| v.table == table);
        let is_block = match verdict {
            Some(v) => v.verdict == Verdict::Block,
            // Globals the report leaves out are blocks when a term reads them.
            None => t.domain.is_none(),
        };
        let reading: Vec<&Square> = squares
            .iter()
            .filter(|s| reads_table(forward, s.inner, table))
            .collect();
        if reading.is_empty() {
            continue;
        }
        if !is_block {
            return Err(SolveError {
                message: format!("table `{}` is not an affine block", t.name),
                span: None,
            });
        }
        let mut terms = Vec::new();
        for sq in reading {
            let inner_ty = forward.ty(sq.inner);
            let scalar = inner_ty.shape() == Some(Shape::Scalar) && inner_ty.bag().is_none();
            let kind = if scalar {
                TermKind::Scalar
            } else if is_scaled_row(forward, sq.inner, table) {
                TermKind::Ridge
            } else {
                return Err(SolveError {
                    message: format!(
                        "a penalty on `{}` squares more than the table's own row; \
                         the solvers take L2 penalties and zero-mean normal priors",
                        t.name
                    ),
                    span: span_of(sq.term).or(span_of(sq.inner)),
                });
            };
            terms.push(TermPlan {
                kind,
                likelihood: reads_score[sq.inner.index()],
                graph: term_graph(forward, sq, Some(table))?,
            });
        }
        blocks.push(BlockPlan {
            table,
            name: t.name.clone(),
            width: t.shape.len(),
            global: t.domain.is_none(),
            terms,
        });
    }
    let likelihood_squares: Vec<&Square> = squares
        .iter()
        .filter(|s| reads_score[s.inner.index()])
        .collect();
    Ok(SolvePlan {
        blocks,
        likelihood: likelihood_graph(forward, &likelihood_squares)?,
        pairs: Vec::new(),
    })
}

/// Which nodes depend on a node whose op `pred` accepts.
///
/// A bag's length reads only how many members it has, never their values,
/// so it reads nothing (SVD++'s `mean(sq(y[h]))` divides by it).
fn reads(g: &Graph, pred: impl Fn(&Op) -> bool) -> Vec<bool> {
    let mut out = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        out[i] = match n.op {
            Op::BagLen(_) => false,
            op => pred(&op) || op.operands().iter().any(|o| out[o.index()]),
        };
    }
    out
}

/// Which nodes depend on `node` (none when it is `None`).
fn reads_node(g: &Graph, node: Option<NodeId>) -> Vec<bool> {
    let mut out = vec![false; g.nodes.len()];
    let Some(node) = node else { return out };
    for (i, n) in g.nodes.iter().enumerate() {
        out[i] = i == node.index() || n.op.operands().iter().any(|o| out[o.index()]);
    }
    out
}

fn reads_table(g: &Graph, node: NodeId, table: TableId) -> bool {
    let r = reads(g, |op| match *op {
        Op::Global(t) | Op::Gather(t, _) | Op::GatherBag(t, _) => t == table,
        _ => false,
    });
    r[node.index()]
}

/// The loss's squares, down its sums and free scalings.
#[allow(clippy::too_many_arguments)]
fn collect_squares(
    g: &Graph,
    reads_param: &[bool],
    n: NodeId,
    term: NodeId,
    factors: Vec<(NodeId, bool)>,
    negated: bool,
    out: &mut Vec<Square>,
) -> Result<(), SolveError> {
    if !reads_param[n.index()] {
        return Ok(());
    }
    let free = |m: NodeId| !reads_param[m.index()];
    let scalar = |m: NodeId| g.ty(m) == Ty::SCALAR;
    let with = |f: (NodeId, bool)| {
        let mut v = factors.clone();
        v.push(f);
        v
    };
    match g.node(n).op {
        Op::Binary(BinaryFn::Add, a, b) => {
            // The loss's top-level sum is its terms; a sum below a term
            // (inside a prior) stays part of that term.
            let (ta, tb) = if n == term { (a, b) } else { (term, term) };
            collect_squares(g, reads_param, a, ta, factors.clone(), negated, out)?;
            collect_squares(g, reads_param, b, tb, factors, negated, out)
        }
        Op::Binary(BinaryFn::Sub, a, b) => {
            // The loss's top-level sum is its terms; a sum below a term
            // (inside a prior) stays part of that term.
            let (ta, tb) = if n == term { (a, b) } else { (term, term) };
            collect_squares(g, reads_param, a, ta, factors.clone(), negated, out)?;
            collect_squares(g, reads_param, b, tb, factors, !negated, out)
        }
        Op::Unary(UnaryFn::Neg, a) => {
            collect_squares(g, reads_param, a, term, factors, !negated, out)
        }
        // A sum over a bag of per-member squares: each member is a square.
        Op::SumBag(a) => collect_squares(g, reads_param, a, term, factors, negated, out),
        Op::Binary(BinaryFn::Mul, a, b) if free(a) && scalar(a) => {
            collect_squares(g, reads_param, b, term, with((a, false)), negated, out)
        }
        Op::Binary(BinaryFn::Mul, a, b) if free(b) && scalar(b) => {
            collect_squares(g, reads_param, a, term, with((b, false)), negated, out)
        }
        Op::Binary(BinaryFn::Div, a, b) if free(b) && scalar(b) => {
            collect_squares(g, reads_param, a, term, with((b, true)), negated, out)
        }
        // Lanes summed: of a product, a vector squared; of a sum (a normal
        // prior's `0.5 (x / s)² + log s`), the sum of its terms' lanes.
        Op::SumLanes(a) => collect_squares(g, reads_param, a, term, factors, negated, out),
        Op::Binary(BinaryFn::Mul, x, y) | Op::Dot(x, y) => {
            square(g, reads_param, n, term, x, y, factors, negated, out)
        }
        _ => Err(unsupported(g, n)),
    }
}

#[allow(clippy::too_many_arguments)]
fn square(
    g: &Graph,
    reads_param: &[bool],
    at: NodeId,
    term: NodeId,
    x: NodeId,
    y: NodeId,
    mut factors: Vec<(NodeId, bool)>,
    negated: bool,
    out: &mut Vec<Square>,
) -> Result<(), SolveError> {
    let (cx, fx) = strip(g, reads_param, x);
    let (cy, fy) = strip(g, reads_param, y);
    if cx != cy {
        return Err(unsupported(g, at));
    }
    factors.extend(fx);
    factors.extend(fy);
    out.push(Square {
        inner: cx,
        term,
        factors,
        negated,
    });
    Ok(())
}

/// `n` without its free scalar factors, and those factors.
fn strip(g: &Graph, reads_param: &[bool], mut n: NodeId) -> (NodeId, Vec<(NodeId, bool)>) {
    let free = |m: NodeId| !reads_param[m.index()] && g.ty(m) == Ty::SCALAR;
    let mut factors = Vec::new();
    loop {
        match g.node(n).op {
            Op::Binary(BinaryFn::Mul, a, b) if free(a) && !free(b) => {
                factors.push((a, false));
                n = b;
            }
            Op::Binary(BinaryFn::Mul, a, b) if free(b) && !free(a) => {
                factors.push((b, false));
                n = a;
            }
            Op::Binary(BinaryFn::Div, a, b) if free(b) => {
                factors.push((b, true));
                n = a;
            }
            _ => return (n, factors),
        }
    }
}

fn unsupported(g: &Graph, n: NodeId) -> SolveError {
    SolveError {
        message: "this loss term is not a sum of scaled squares".into(),
        span: g.spans.get(n.index()).copied().flatten(),
    }
}

/// Whether `n` is `table`'s row (one gathered row, a bag's rows, or the
/// global) and nothing else.
fn is_scaled_row(g: &Graph, n: NodeId, table: TableId) -> bool {
    matches!(g.node(n).op, Op::Gather(t, _) | Op::GatherBag(t, _) | Op::Global(t) if t == table)
}

/// A copy of `forward`'s nodes in a builder, the ids kept.
fn copy(forward: &Graph) -> Result<Builder, IrError> {
    let mut b = Builder::new(forward);
    for (i, n) in forward.nodes.iter().enumerate() {
        let id = b.add(n.op, forward.spans[i])?;
        if id.index() != i {
            return Err(IrError(format!("%{i} merged into {id} while copying")));
        }
    }
    Ok(b)
}

/// The product of a square's factors (1 when it has none), negative for a
/// subtracted square.
fn scale(b: &mut Builder, sq: &Square) -> Result<NodeId, IrError> {
    let mut c = b.constant(if sq.negated { -1.0 } else { 1.0 })?;
    for &(f, divides) in &sq.factors {
        let op = if divides {
            BinaryFn::Div
        } else {
            BinaryFn::Mul
        };
        c = b.add(Op::Binary(op, c, f), None)?;
    }
    Ok(c)
}

/// `d` summed to one number per example: its lanes, then its members.
fn reduce(b: &mut Builder, mut n: NodeId) -> Result<NodeId, IrError> {
    if !matches!(b.ty(n).shape(), Some(Shape::Scalar)) {
        n = b.add(Op::SumLanes(n), None)?;
    }
    if b.ty(n).bag().is_some() {
        n = b.add(Op::SumBag(n), None)?;
    }
    Ok(n)
}

/// loss = `Σ d`, score = `c`, gradients of `table` only.
fn term_graph(forward: &Graph, sq: &Square, table: Option<TableId>) -> Result<Graph, IrError> {
    let mut b = copy(forward)?;
    let c = scale(&mut b, sq)?;
    let loss = reduce(&mut b, sq.inner)?;
    let mut g = b.finish();
    g.loss = loss;
    g.score = Some(c);
    g.noise_scale = None;
    let mut g = crate::grad::grad(&crate::simplify::simplify(&g)?)?;
    g.grads.retain(|gr| {
        let t = match gr.target {
            GradTarget::Global(t) | GradTarget::Row(t, _) | GradTarget::BagRows(t, _) => Some(t),
            GradTarget::Slot(_) => None,
        };
        t.is_some() && t == table
    });
    crate::simplify::simplify(&g)
}

/// loss = `Σ c_j d_j²` over the likelihood's squares, score = `Σ c_j`.
fn likelihood_graph(forward: &Graph, squares: &[&Square]) -> Result<Graph, IrError> {
    let mut b = copy(forward)?;
    let mut loss = b.constant(0.0)?;
    let mut weight = b.constant(0.0)?;
    for sq in squares {
        let c = scale(&mut b, sq)?;
        let d = reduce(&mut b, sq.inner)?;
        let dd = b.add(Op::Binary(BinaryFn::Mul, d, d), None)?;
        let term = b.add(Op::Binary(BinaryFn::Mul, c, dd), None)?;
        loss = b.add(Op::Binary(BinaryFn::Add, loss, term), None)?;
        weight = b.add(Op::Binary(BinaryFn::Add, weight, c), None)?;
    }
    let mut g = b.finish();
    g.loss = loss;
    g.score = Some(weight);
    g.noise_scale = None;
    g.grads.clear();
    crate::simplify::simplify(&g)
}
