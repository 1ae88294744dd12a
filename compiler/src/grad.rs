//! Stage 4: reverse-mode differentiation on the IR.
//!
//! `grad` walks the forward nodes once, from the loss back to the inputs,
//! summing each node's contributions to its operands' adjoints. The rule for
//! every op is written out in one exhaustive `match`: a new op does not
//! compile until it has a gradient. Only operands that depend on a parameter
//! receive adjoints, so the result has no dead gradient code to begin with.

use crate::ir::{Builder, Grad, GradTarget, Graph, IrError, NodeId, Op, SlotKind, Ty};
use crate::types::{BinaryFn, Shape, UnaryFn};

/// The forward graph plus the gradient of its loss with respect to every
/// parameter value the example reads, and to every `Pooled` input slot.
pub fn grad(forward: &Graph) -> Result<Graph, IrError> {
    let mut b = Builder::new(forward);
    // Re-add the forward nodes; hash-consing keeps their ids.
    let mut map = Vec::with_capacity(forward.nodes.len());
    for (i, n) in forward.nodes.iter().enumerate() {
        let op = n.op.map_operands(|o| map[o.index()]);
        map.push(b.add(op, forward.spans[i])?);
    }
    let nodes: Vec<(Op, Ty)> = b.graph.nodes.iter().map(|n| (n.op, n.ty)).collect();
    let n = nodes.len();

    // Which nodes depend on a parameter or a pooled input: only they need
    // adjoints.
    let pooled = |s: crate::ir::SlotId| {
        matches!(
            forward.slots.get(s.index()).map(|s| &s.kind),
            Some(SlotKind::Pooled { .. })
        )
    };
    let mut needs = vec![false; n];
    for (i, (op, _)) in nodes.iter().enumerate() {
        needs[i] = match op {
            Op::Global(_) | Op::Gather(..) | Op::GatherBag(..) => true,
            Op::Slot(s) => pooled(*s),
            _ => op.operands().iter().any(|o| needs[o.index()]),
        };
    }

    let loss = map[forward.loss.index()];
    let mut adjoint: Vec<Option<NodeId>> = vec![None; n];
    if needs[loss.index()] {
        adjoint[loss.index()] = Some(b.constant(1.0)?);
    }
    let mut grads = Vec::new();
    for i in (0..n).rev() {
        let Some(g) = adjoint[i] else { continue };
        let y = NodeId(i as u32);
        let span = b.graph.spans[i];
        let mut d = Diff {
            b: &mut b,
            adjoint: &mut adjoint,
            needs: &needs,
            span,
        };
        match nodes[i].0 {
            Op::Slot(s) if pooled(s) => grads.push(Grad {
                target: GradTarget::Slot(s),
                value: g,
            }),
            Op::Const(_)
            | Op::Slot(_)
            | Op::Shift(..)
            | Op::InRange(_)
            | Op::BagWeights(_)
            | Op::BagLen(_) => {}
            Op::Global(t) => grads.push(Grad {
                target: GradTarget::Global(t),
                value: g,
            }),
            Op::Gather(t, ix) => grads.push(Grad {
                target: GradTarget::Row(t, ix),
                value: g,
            }),
            Op::GatherBag(t, bag) => {
                // y_k = w_k · row_k, so d row_k = w_k · g_k.
                let w = d.op(Op::BagWeights(bag))?;
                let value = d.mul(g, w)?;
                grads.push(Grad {
                    target: GradTarget::BagRows(t, bag),
                    value,
                });
            }
            Op::Unary(f, x) => {
                let dx = match f {
                    UnaryFn::Neg => d.op(Op::Unary(UnaryFn::Neg, g))?,
                    UnaryFn::Exp => d.mul(g, y)?,
                    UnaryFn::Log => d.bin(BinaryFn::Div, g, x)?,
                    UnaryFn::Sqrt => {
                        let half = d.b.constant(0.5)?;
                        let h = d.mul(g, half)?;
                        d.bin(BinaryFn::Div, h, y)?
                    }
                    UnaryFn::Abs => {
                        let s = d.op(Op::Unary(UnaryFn::Sign, x))?;
                        d.mul(g, s)?
                    }
                    UnaryFn::Sigmoid => {
                        let one = d.b.constant(1.0)?;
                        let c = d.bin(BinaryFn::Sub, one, y)?;
                        let yc = d.mul(y, c)?;
                        d.mul(g, yc)?
                    }
                    UnaryFn::LogSigmoid => {
                        let nx = d.op(Op::Unary(UnaryFn::Neg, x))?;
                        let s = d.op(Op::Unary(UnaryFn::Sigmoid, nx))?;
                        d.mul(g, s)?
                    }
                    UnaryFn::Softplus => {
                        let s = d.op(Op::Unary(UnaryFn::Sigmoid, x))?;
                        d.mul(g, s)?
                    }
                    UnaryFn::Tanh => {
                        let one = d.b.constant(1.0)?;
                        let y2 = d.mul(y, y)?;
                        let c = d.bin(BinaryFn::Sub, one, y2)?;
                        d.mul(g, c)?
                    }
                    UnaryFn::Relu => {
                        let s = d.op(Op::Unary(UnaryFn::Step, x))?;
                        d.mul(g, s)?
                    }
                    // Piecewise constant: no gradient flows through them.
                    UnaryFn::Step | UnaryFn::Sign => continue,
                };
                d.accumulate(x, dx)?;
            }
            Op::Binary(f, x, z) => {
                let (dx, dz) = match f {
                    BinaryFn::Add => (g, g),
                    BinaryFn::Sub => (g, d.op(Op::Unary(UnaryFn::Neg, g))?),
                    BinaryFn::Mul => (d.mul(g, z)?, d.mul(g, x)?),
                    BinaryFn::Div => {
                        let dx = d.bin(BinaryFn::Div, g, z)?;
                        // d/dz (x / z) = −y / z.
                        let gy = d.mul(g, y)?;
                        let q = d.bin(BinaryFn::Div, gy, z)?;
                        (dx, d.op(Op::Unary(UnaryFn::Neg, q))?)
                    }
                    BinaryFn::Max | BinaryFn::Min => {
                        // The chosen operand takes the whole gradient.
                        let diff = if f == BinaryFn::Max {
                            d.bin(BinaryFn::Sub, x, z)?
                        } else {
                            d.bin(BinaryFn::Sub, z, x)?
                        };
                        let m = d.op(Op::Unary(UnaryFn::Step, diff))?;
                        let one = d.b.constant(1.0)?;
                        let not_m = d.bin(BinaryFn::Sub, one, m)?;
                        (d.mul(g, m)?, d.mul(g, not_m)?)
                    }
                };
                d.accumulate(x, dx)?;
                d.accumulate(z, dz)?;
            }
            Op::Dot(x, z) => {
                let dx = d.mul(g, z)?;
                let dz = d.mul(g, x)?;
                d.accumulate(x, dx)?;
                d.accumulate(z, dz)?;
            }
            Op::SumLanes(x) | Op::SumBag(x) => {
                let dx = d.op(Op::Expand(g, x))?;
                d.accumulate(x, dx)?;
            }
            Op::Expand(x, _) => d.accumulate(x, g)?,
            Op::Softmax(x) => {
                // dx = y ⊙ (g − ⟨g, y⟩)
                let gy = d.op(Op::Dot(g, y))?;
                let c = d.bin(BinaryFn::Sub, g, gy)?;
                let dx = d.mul(y, c)?;
                d.accumulate(x, dx)?;
            }
            Op::Concat(x, z) => {
                let nx = vec_len(d.b.ty(x))?;
                let nz = vec_len(d.b.ty(z))?;
                let dx = d.op(Op::Slice(g, 0, nx))?;
                let dz = d.op(Op::Slice(g, nx, nz))?;
                d.accumulate(x, dx)?;
                d.accumulate(z, dz)?;
            }
            Op::Slice(x, start, _) => {
                let len = vec_len(d.b.ty(x))?;
                let dx = d.op(Op::Pad(g, start, len))?;
                d.accumulate(x, dx)?;
            }
            Op::Pad(x, start, _) => {
                let len = vec_len(d.b.ty(x))?;
                let dx = d.op(Op::Slice(g, start, len))?;
                d.accumulate(x, dx)?;
            }
            Op::MatVec(m, v) => {
                let dm = d.op(Op::Outer(g, v))?;
                let dv = d.op(Op::MatTVec(m, g))?;
                d.accumulate(m, dm)?;
                d.accumulate(v, dv)?;
            }
            Op::MatTVec(m, v) => {
                let dm = d.op(Op::Outer(v, g))?;
                let dv = d.op(Op::MatVec(m, g))?;
                d.accumulate(m, dm)?;
                d.accumulate(v, dv)?;
            }
            Op::Outer(x, z) => {
                let dx = d.op(Op::MatVec(g, z))?;
                let dz = d.op(Op::MatTVec(g, x))?;
                d.accumulate(x, dx)?;
                d.accumulate(z, dz)?;
            }
        }
    }
    grads.reverse();
    let mut out = b.finish();
    out.loss = loss;
    out.score = forward.score.map(|s| map[s.index()]);
    out.noise_scale = forward.noise_scale.map(|s| map[s.index()]);
    out.grads = grads;
    Ok(out)
}

fn vec_len(ty: Ty) -> Result<u32, IrError> {
    match ty.shape() {
        Some(Shape::Vec(n)) => Ok(n as u32),
        _ => Err(IrError("expected a vector".into())),
    }
}

/// One backward step's context.
struct Diff<'a> {
    b: &'a mut Builder,
    adjoint: &'a mut Vec<Option<NodeId>>,
    needs: &'a [bool],
    span: Option<crate::source::Span>,
}

impl Diff<'_> {
    fn op(&mut self, op: Op) -> Result<NodeId, IrError> {
        self.b.add(op, self.span)
    }

    fn bin(&mut self, f: BinaryFn, a: NodeId, b: NodeId) -> Result<NodeId, IrError> {
        self.op(Op::Binary(f, a, b))
    }

    fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId, IrError> {
        self.bin(BinaryFn::Mul, a, b)
    }

    /// Add `contribution` to `x`'s adjoint, first summing away any lanes or
    /// bag members that broadcasting added.
    fn accumulate(&mut self, x: NodeId, contribution: NodeId) -> Result<(), IrError> {
        if !self.needs[x.index()] {
            return Ok(());
        }
        let mut c = contribution;
        let want = self.b.ty(x);
        let have = self.b.ty(c);
        if want.shape() == Some(Shape::Scalar) && have.shape() != Some(Shape::Scalar) {
            c = self.op(Op::SumLanes(c))?;
        }
        if want.bag().is_none() && have.bag().is_some() {
            c = self.op(Op::SumBag(c))?;
        }
        let total = match self.adjoint[x.index()] {
            None => c,
            Some(prev) => self.bin(BinaryFn::Add, prev, c)?,
        };
        self.adjoint[x.index()] = Some(total);
        Ok(())
    }
}
