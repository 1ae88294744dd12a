//! Hoisting a history's pooled values out of the per-example step.
//!
//! `hoist(&Graph) -> Result<HoistPlan, NotHoisted>` reads a simplified
//! forward graph. SVD++'s `mean(y[h])` costs O(|h|·k) per example when the
//! step pools the history and updates every member row itself. The grouped
//! schedule instead takes the examples of one user together, keeps the rows
//! of the history frozen for the group, pools them once per example from
//! values computed once per member, and applies each member's accumulated
//! gradient once at the group's end. That is exact arithmetic on a
//! different update order, and it is possible when every value over the
//! history's members depends on that member's rows alone and reaches the
//! rest of the graph only through `sum_bag` or `bag_len` (a mean is their
//! quotient). The plan has two graphs:
//!
//! - `step`: the model with each such `sum_bag`/`bag_len` replaced by a
//!   `SlotKind::Pooled` input, differentiated; its `GradTarget::Slot`
//!   outputs are the loss's gradient with respect to each pooled sum.
//! - `member`: one member `j` of the bag's domain and, per pooled sum `p`,
//!   a `SlotKind::Dense` input `A_p`; its loss is `Σ_p ⟨A_p, E_p(j)⟩` where
//!   `E_p` is the pooled node's per-member value. Its gradient with respect
//!   to `j`'s rows is `J_Eᵀ·A`, so an ordinary step of this graph with the
//!   model's optimiser applies exactly the accumulated update.
//!
//! History members always weigh 1 (the binding builds them so), so a
//! member's `bag_weights` is the constant 1 in the member graph.

use crate::ir::{
    Builder, GradTarget, Graph, IrError, NodeId, Op, Slot, SlotId, SlotKind, TableId, Ty,
};
use crate::types::{BinaryFn, Shape};
use std::fmt::Write as _;

/// How the runtime computes a member's contribution to one pooled value
/// from the member's (frozen) rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberValue {
    /// The member's row of the table (`sum_bag(y[h])`).
    Row(TableId),
    /// The squared norm of the member's row (`sum_bag(sq(y[h]))`).
    SquaredNorm(TableId),
    /// 1 per member (`bag_len`): no gradient reaches a row through it.
    Count,
}

/// One pooled value of the history.
#[derive(Clone, Debug, PartialEq)]
pub struct Pooled {
    /// Its input slot in [`HoistPlan::step`].
    pub slot: SlotId,
    /// The `sum_bag` or `bag_len` node of the forward graph it replaces
    /// (the first one, for `bag_len`s over the same bag).
    pub node: NodeId,
    pub shape: Shape,
    pub value: MemberValue,
    /// The slot of its accumulated gradient in [`HoistPlan::member`];
    /// `None` for [`MemberValue::Count`].
    pub adjoint: Option<SlotId>,
}

/// The grouped schedule of a model with a history input.
#[derive(Clone, Debug, PartialEq)]
pub struct HoistPlan {
    /// The history slot, in the model's graphs and in `step`.
    pub bag: SlotId,
    /// The model's forward graph with the pooled values as input slots,
    /// with its gradients (parameters and pooled slots), simplified.
    pub step: Graph,
    pub pooled: Vec<Pooled>,
    /// The member step, with its gradients, simplified.
    pub member: Graph,
    /// The member's index slot in `member`.
    pub member_index: SlotId,
}

/// Why a model keeps the per-example schedule.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NotHoisted {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Internal(#[from] IrError),
}

impl HoistPlan {
    /// The plan as text: which nodes became which slots, then both graphs.
    /// Pinned by golden tests.
    pub fn to_text(&self, forward: &Graph) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "hoist {} over {} ({})",
            forward.name,
            self.bag,
            forward.slots[self.bag.index()].name
        );
        for p in &self.pooled {
            let value = match p.value {
                MemberValue::Row(t) => format!("row {}", forward.tables[t.index()].name),
                MemberValue::SquaredNorm(t) => {
                    format!("squared norm {}", forward.tables[t.index()].name)
                }
                MemberValue::Count => "count".into(),
            };
            let adjoint = p
                .adjoint
                .map(|a| format!(", adjoint {a}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} = {}: {value}{adjoint}",
                p.slot,
                node_text(forward, p.node)
            );
        }
        out.push_str(&self.step.to_text(None));
        out.push_str(&self.member.to_text(None));
        out
    }
}

fn node_text(g: &Graph, id: NodeId) -> String {
    let op = match g.node(id).op {
        Op::SumBag(x) => format!("sum_bag {x}"),
        Op::BagLen(x) => format!("bag_len {x}"),
        other => format!("{other:?}"),
    };
    format!("{id} ({op})")
}

fn refuse<T>(msg: impl Into<String>) -> Result<T, NotHoisted> {
    Err(NotHoisted::Refused(msg.into()))
}

/// The grouped schedule's plan for the simplified forward graph `forward`,
/// or why the model keeps the per-example one.
pub fn hoist(forward: &Graph) -> Result<HoistPlan, NotHoisted> {
    let histories: Vec<SlotId> = forward
        .slots
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.kind, SlotKind::Bag { history: true, .. }))
        .map(|(i, _)| SlotId(i as u32))
        .collect();
    let bag = match histories.as_slice() {
        [] => return refuse("the model has no history input"),
        [one] => *one,
        _ => return refuse("the model has more than one history input"),
    };
    let SlotKind::Bag { domain, .. } = forward.slots[bag.index()].kind else {
        return refuse("the history is not a bag");
    };
    let name = &forward.slots[bag.index()].name;
    let n = forward.nodes.len();
    let is_member = |i: usize| forward.nodes[i].ty.bag() == Some(bag);
    let is_bag_slot = |id: NodeId| forward.node(id).op == Op::Slot(bag);
    let mut constant = vec![false; n];
    for (i, node) in forward.nodes.iter().enumerate() {
        constant[i] = match node.op {
            Op::Const(_) => true,
            Op::Slot(_) | Op::Global(_) | Op::Gather(..) | Op::GatherBag(..) => false,
            op => op.operands().iter().all(|o| constant[o.index()]),
        };
    }
    let at = |i: usize| format!("%{i}");
    for (i, node) in forward.nodes.iter().enumerate() {
        let ops = node.op.operands();
        if is_member(i) {
            match node.op {
                Op::GatherBag(_, b) | Op::BagWeights(b) if is_bag_slot(b) => {}
                Op::Slot(_) | Op::GatherBag(..) | Op::BagWeights(_) => {
                    return refuse(format!("{} reads `{name}` in a way it cannot pool", at(i)))
                }
                _ => {
                    for o in &ops {
                        if !(is_member(o.index()) || constant[o.index()]) {
                            return refuse(format!(
                                "{} mixes {o}, a value of the example, into each member of `{name}`",
                                at(i)
                            ));
                        }
                    }
                }
            }
        } else {
            for o in &ops {
                let reads_members = is_member(o.index());
                let reads_bag = is_bag_slot(*o);
                if !(reads_members || reads_bag) {
                    continue;
                }
                let pooled = matches!(node.op, Op::SumBag(_) | Op::BagLen(_))
                    || (reads_bag && matches!(node.op, Op::GatherBag(..) | Op::BagWeights(_)));
                if !pooled {
                    return refuse(format!(
                        "{} reads the members of `{name}` other than by sum_bag or bag_len",
                        at(i)
                    ));
                }
            }
        }
    }

    // The pooled values: one slot per sum_bag over the members, one for
    // every bag_len.
    let mut slots = forward.slots.clone();
    let mut pooled: Vec<Pooled> = Vec::new();
    let mut replaced: Vec<Option<SlotId>> = vec![None; n];
    let mut count: Option<SlotId> = None;
    let mut member_slots = vec![Slot {
        name: format!("{name}.member"),
        kind: SlotKind::Index(domain),
    }];
    for (i, node) in forward.nodes.iter().enumerate() {
        match node.op {
            Op::SumBag(x) if is_member(x.index()) => {
                let shape = node.ty.shape().unwrap_or(Shape::Scalar);
                let value = member_value(forward, x, bag).ok_or_else(|| {
                    NotHoisted::Refused(format!(
                        "%{i} pools a member value other than a row or its squared norm"
                    ))
                })?;
                let slot = SlotId(slots.len() as u32);
                slots.push(Slot {
                    name: format!("{name}.sum{}", pooled.len()),
                    kind: SlotKind::Pooled { bag, shape },
                });
                let adjoint = SlotId(member_slots.len() as u32);
                member_slots.push(Slot {
                    name: format!("{name}.adjoint{}", pooled.len()),
                    kind: SlotKind::Dense(shape),
                });
                replaced[i] = Some(slot);
                pooled.push(Pooled {
                    slot,
                    node: NodeId(i as u32),
                    shape,
                    value,
                    adjoint: Some(adjoint),
                });
            }
            Op::BagLen(x) if is_member(x.index()) || is_bag_slot(x) => {
                let slot = match count {
                    Some(s) => s,
                    None => {
                        let s = SlotId(slots.len() as u32);
                        slots.push(Slot {
                            name: format!("{name}.len"),
                            kind: SlotKind::Pooled {
                                bag,
                                shape: Shape::Scalar,
                            },
                        });
                        pooled.push(Pooled {
                            slot: s,
                            node: NodeId(i as u32),
                            shape: Shape::Scalar,
                            value: MemberValue::Count,
                            adjoint: None,
                        });
                        count = Some(s);
                        s
                    }
                };
                replaced[i] = Some(slot);
            }
            _ => {}
        }
    }
    if !pooled
        .iter()
        .any(|p| !matches!(p.value, MemberValue::Count))
    {
        return refuse(format!("the model pools no value over `{name}`"));
    }

    let step = step_graph(forward, slots, &replaced, &is_member, &is_bag_slot, &pooled)?;
    let member = member_graph(forward, member_slots, bag, &pooled)?;
    Ok(HoistPlan {
        bag,
        step,
        pooled,
        member,
        member_index: SlotId(0),
    })
}

/// What a pooled member value is, when the runtime can compute it.
fn member_value(g: &Graph, x: NodeId, bag: SlotId) -> Option<MemberValue> {
    let row = |id: NodeId| match g.node(id).op {
        Op::GatherBag(t, b) if g.node(b).op == Op::Slot(bag) => Some(t),
        _ => None,
    };
    match g.node(x).op {
        Op::GatherBag(..) => row(x).map(MemberValue::Row),
        Op::Dot(a, b) if a == b => row(a).map(MemberValue::SquaredNorm),
        _ => None,
    }
}

/// The model with pooled values read from slots, and its gradients.
fn step_graph(
    forward: &Graph,
    slots: Vec<Slot>,
    replaced: &[Option<SlotId>],
    is_member: &dyn Fn(usize) -> bool,
    is_bag_slot: &dyn Fn(NodeId) -> bool,
    pooled: &[Pooled],
) -> Result<Graph, NotHoisted> {
    let mut template = forward.clone();
    template.slots = slots;
    let mut b = Builder::new(&template);
    let mut map: Vec<Option<NodeId>> = Vec::with_capacity(forward.nodes.len());
    for (i, node) in forward.nodes.iter().enumerate() {
        let id = if let Some(s) = replaced[i] {
            Some(b.add(Op::Slot(s), forward.spans[i])?)
        } else if is_member(i) || is_bag_slot(NodeId(i as u32)) {
            // Read by pooled nodes only, which are slots now.
            None
        } else {
            let mut missing = false;
            let op = node.op.map_operands(|o| {
                map[o.index()].unwrap_or_else(|| {
                    missing = true;
                    o
                })
            });
            if missing {
                return Err(IrError(format!("%{i} reads a member value after hoisting")).into());
            }
            Some(b.add(op, forward.spans[i])?)
        };
        map.push(id);
    }
    let out = |id: NodeId| {
        map[id.index()].ok_or_else(|| IrError(format!("output {id} is a member value")))
    };
    let mut g = b.finish();
    g.loss = out(forward.loss)?;
    g.score = forward.score.map(out).transpose()?;
    g.noise_scale = forward.noise_scale.map(out).transpose()?;
    let mut g = crate::grad::grad(&crate::simplify::simplify(&g)?)?;
    // A member counts 1 whatever its rows: the gradient of a count is not used.
    let counts: Vec<SlotId> = pooled
        .iter()
        .filter(|p| p.value == MemberValue::Count)
        .map(|p| p.slot)
        .collect();
    g.grads
        .retain(|gr| !matches!(gr.target, GradTarget::Slot(s) if counts.contains(&s)));
    let g = crate::simplify::simplify(&g)?;
    g.verify()?;
    Ok(g)
}

/// The member step: loss `Σ_p ⟨A_p, E_p(j)⟩` over the pooled sums.
fn member_graph(
    forward: &Graph,
    slots: Vec<Slot>,
    bag: SlotId,
    pooled: &[Pooled],
) -> Result<Graph, NotHoisted> {
    let mut template = forward.clone();
    template.name = format!("{}.member", forward.name);
    template.slots = slots;
    let mut b = Builder::new(&template);
    let j = b.add(Op::Slot(SlotId(0)), None)?;
    // Each member node of the forward graph, computed for member `j`.
    let mut map: Vec<Option<NodeId>> = vec![None; forward.nodes.len()];
    for (i, node) in forward.nodes.iter().enumerate() {
        let span = forward.spans[i];
        let id = match node.op {
            Op::GatherBag(t, x) if forward.node(x).op == Op::Slot(bag) => {
                b.add(Op::Gather(t, j), span)?
            }
            Op::BagWeights(x) if forward.node(x).op == Op::Slot(bag) => b.constant(1.0)?,
            _ if forward.nodes[i].ty.bag() == Some(bag) => {
                let mut missing = false;
                let op = node.op.map_operands(|o| {
                    map[o.index()].unwrap_or_else(|| {
                        missing = true;
                        o
                    })
                });
                if missing {
                    continue;
                }
                b.add(op, span)?
            }
            Op::Const(_) => b.add(node.op, span)?,
            _ if node.op.operands().iter().all(|o| map[o.index()].is_some())
                && !matches!(
                    node.op,
                    Op::Slot(_) | Op::Global(_) | Op::Gather(..) | Op::SumBag(_) | Op::BagLen(_)
                ) =>
            {
                // A constant expression a member value reads.
                let op = node.op.map_operands(|o| map[o.index()].unwrap_or(o));
                b.add(op, span)?
            }
            _ => continue,
        };
        map[i] = Some(id);
    }
    let mut loss = b.constant(0.0)?;
    for p in pooled {
        let (Some(adjoint), Op::SumBag(x)) = (p.adjoint, forward.node(p.node).op) else {
            continue;
        };
        let e =
            map[x.index()].ok_or_else(|| IrError(format!("member value {x} was not rebuilt")))?;
        let a = b.add(Op::Slot(adjoint), None)?;
        let term = match p.shape {
            Shape::Scalar => b.add(Op::Binary(BinaryFn::Mul, a, e), None)?,
            Shape::Vec(_) => b.add(Op::Dot(a, e), None)?,
            Shape::Mat(..) => {
                let m = b.add(Op::Binary(BinaryFn::Mul, a, e), None)?;
                b.add(Op::SumLanes(m), None)?
            }
        };
        loss = b.add(Op::Binary(BinaryFn::Add, loss, term), None)?;
    }
    let mut g = b.finish();
    g.loss = loss;
    g.score = None;
    g.noise_scale = None;
    if g.ty(loss) != Ty::SCALAR {
        return Err(IrError("the member loss is not a scalar".into()).into());
    }
    let g = crate::simplify::simplify(&crate::grad::grad(&crate::simplify::simplify(&g)?)?)?;
    g.verify()?;
    Ok(g)
}
