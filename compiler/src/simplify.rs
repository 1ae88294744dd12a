//! Stage 5: simplification passes over the IR.
//!
//! Each pass rebuilds the graph through a hash-consing [`Builder`], so common
//! subexpressions merge in every pass. `simplify` runs constant folding and
//! algebraic identities, then drops nodes no output depends on.

use crate::ir::{Builder, Grad, GradTarget, Graph, IrError, NodeId, Op, Ty};
use crate::types::{BinaryFn, UnaryFn};

/// All passes, to a fixed point (bounded: each round only shrinks the graph).
pub fn simplify(g: &Graph) -> Result<Graph, IrError> {
    let mut g = g.clone();
    for _ in 0..8 {
        let before = g.nodes.len();
        g = fold_constants(&g)?;
        g = eliminate_dead_nodes(&g)?;
        if g.nodes.len() == before {
            break;
        }
    }
    Ok(g)
}

/// Rebuild `g`, choosing for each node either a rewritten op or an existing
/// node that already has its value.
fn rebuild(
    g: &Graph,
    keep: impl Fn(usize) -> bool,
    mut rewrite: impl FnMut(&mut Builder, Op, Ty) -> Result<Rewrite, IrError>,
) -> Result<Graph, IrError> {
    let mut b = Builder::new(g);
    let mut map: Vec<NodeId> = Vec::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        if !keep(i) {
            // Never referenced: a placeholder keeps indices aligned.
            map.push(NodeId(u32::MAX));
            continue;
        }
        let op = n.op.map_operands(|o| map[o.index()]);
        let id = match rewrite(&mut b, op, n.ty)? {
            Rewrite::Same(id) => id,
            Rewrite::Op(op) => b.add(op, g.spans[i])?,
        };
        map.push(id);
    }
    let mut out = b.finish();
    let m = |id: NodeId| map[id.index()];
    out.loss = m(g.loss);
    out.score = g.score.map(m);
    out.noise_scale = g.noise_scale.map(m);
    out.grads = g
        .grads
        .iter()
        .map(|gr| Grad {
            target: match gr.target {
                GradTarget::Global(t) => GradTarget::Global(t),
                GradTarget::Row(t, i) => GradTarget::Row(t, m(i)),
                GradTarget::BagRows(t, i) => GradTarget::BagRows(t, m(i)),
                GradTarget::Slot(s) => GradTarget::Slot(s),
            },
            value: m(gr.value),
        })
        .collect();
    Ok(out)
}

enum Rewrite {
    Same(NodeId),
    Op(Op),
}

fn constant_of(b: &Builder, id: NodeId) -> Option<f64> {
    match b.graph.nodes[id.index()].op {
        Op::Const(bits) => Some(f64::from_bits(bits)),
        _ => None,
    }
}

/// Fold operations on constants and apply identities such as `x * 1 = x`,
/// only where the result keeps the node's type.
pub fn fold_constants(g: &Graph) -> Result<Graph, IrError> {
    rebuild(
        g,
        |_| true,
        |b, op, ty| {
            let same_ty = |b: &Builder, id: NodeId| b.ty(id) == ty;
            Ok(match op {
                Op::Unary(f, x) => match (f, constant_of(b, x)) {
                    (_, Some(c)) => Rewrite::Op(Op::constant(f.apply(c))),
                    (UnaryFn::Neg, None) => match b.graph.nodes[x.index()].op {
                        Op::Unary(UnaryFn::Neg, inner) => Rewrite::Same(inner),
                        _ => Rewrite::Op(op),
                    },
                    _ => Rewrite::Op(op),
                },
                Op::Binary(f, x, z) => {
                    let (cx, cz) = (constant_of(b, x), constant_of(b, z));
                    match (f, cx, cz) {
                        (_, Some(a), Some(c)) => Rewrite::Op(Op::constant(f.apply(a, c))),
                        (BinaryFn::Add, Some(a), _) if a == 0.0 && same_ty(b, z) => {
                            Rewrite::Same(z)
                        }
                        (BinaryFn::Add | BinaryFn::Sub, _, Some(c))
                            if c == 0.0 && same_ty(b, x) =>
                        {
                            Rewrite::Same(x)
                        }
                        (BinaryFn::Sub, Some(a), _) if a == 0.0 && same_ty(b, z) => {
                            Rewrite::Op(Op::Unary(UnaryFn::Neg, z))
                        }
                        (BinaryFn::Mul, Some(a), _) if a == 1.0 && same_ty(b, z) => {
                            Rewrite::Same(z)
                        }
                        (BinaryFn::Mul | BinaryFn::Div, _, Some(c))
                            if c == 1.0 && same_ty(b, x) =>
                        {
                            Rewrite::Same(x)
                        }
                        (BinaryFn::Mul, Some(a), _) if a == -1.0 && same_ty(b, z) => {
                            Rewrite::Op(Op::Unary(UnaryFn::Neg, z))
                        }
                        (BinaryFn::Mul, _, Some(c)) if c == -1.0 && same_ty(b, x) => {
                            Rewrite::Op(Op::Unary(UnaryFn::Neg, x))
                        }
                        _ => Rewrite::Op(op),
                    }
                }
                // Broadcasting to one's own type, or summing a scalar's lanes, is the identity.
                Op::Expand(x, _) | Op::SumLanes(x) if same_ty(b, x) => Rewrite::Same(x),
                _ => Rewrite::Op(op),
            })
        },
    )
}

/// Drop nodes that no output ([`Graph::roots`]) depends on.
pub fn eliminate_dead_nodes(g: &Graph) -> Result<Graph, IrError> {
    let mut live = vec![false; g.nodes.len()];
    for r in g.roots() {
        if let Some(l) = live.get_mut(r.index()) {
            *l = true;
        }
    }
    for i in (0..g.nodes.len()).rev() {
        if live[i] {
            for o in g.nodes[i].op.operands() {
                live[o.index()] = true;
            }
        }
    }
    rebuild(g, |i| live[i], |_, op, _| Ok(Rewrite::Op(op)))
}

/// Merge nodes that compute the same op on the same operands.
pub fn eliminate_common_subexpressions(g: &Graph) -> Result<Graph, IrError> {
    rebuild(g, |_| true, |_, op, _| Ok(Rewrite::Op(op)))
}
