//! The reference evaluator: runs an IR graph on one example, in f64.
//!
//! Plain and obviously right, not fast: every value is a fresh vector and
//! every index is checked. Every other backend is tested against it.

use crate::ir::{GradTarget, Graph, NodeId, Op, SlotId, SlotKind, TableId, Ty};
use crate::types::Shape;
use ndarray::Array2;
use std::collections::BTreeMap;

/// Parameter values: one `rows × lanes` array per table (globals have one row).
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// The size of each domain, by `DomainId`.
    pub domain_sizes: Vec<usize>,
    pub tables: Vec<Array2<f64>>,
}

impl Params {
    /// All-zero parameters for `g` with the given domain sizes.
    pub fn zeros(g: &Graph, domain_sizes: &[usize]) -> Result<Params, EvalError> {
        if domain_sizes.len() != g.domains.len() {
            return Err(EvalError::DomainSizes {
                expected: g.domains.len(),
                found: domain_sizes.len(),
            });
        }
        let tables = g
            .tables
            .iter()
            .map(|t| {
                let rows = t.domain.map_or(1, |d| domain_sizes[d.index()]);
                Array2::zeros((rows, t.shape.len()))
            })
            .collect();
        Ok(Params {
            domain_sizes: domain_sizes.to_vec(),
            tables,
        })
    }
}

/// The value of one example slot.
#[derive(Clone, Debug, PartialEq)]
pub enum SlotValue {
    Index(usize),
    Real(f64),
    /// Members and their weights.
    Bag(Vec<(usize, f64)>),
    /// The lanes of a noise, pooled or dense slot.
    Noise(Vec<f64>),
}

/// One example: a value for every slot of the graph, in slot order.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub slots: Vec<SlotValue>,
}

/// Gradients by table and row (row 0 for a global), and by pooled slot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gradients {
    pub rows: BTreeMap<(TableId, usize), Vec<f64>>,
    pub slots: BTreeMap<SlotId, Vec<f64>>,
}

impl Gradients {
    fn add(&mut self, t: TableId, row: usize, values: &[f64]) {
        let entry = self
            .rows
            .entry((t, row))
            .or_insert_with(|| vec![0.0; values.len()]);
        for (e, v) in entry.iter_mut().zip(values) {
            *e += v;
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub score: Option<f64>,
    /// The value of [`Graph::noise_scale`], if the graph has one.
    pub noise_scale: Option<f64>,
    pub gradients: Gradients,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("expected sizes for {expected} domains, found {found}")]
    DomainSizes { expected: usize, found: usize },
    #[error("the example has {found} slots, the model expects {expected}")]
    SlotCount { expected: usize, found: usize },
    #[error("slot `{slot}` expects {expected}")]
    SlotKind {
        slot: String,
        expected: &'static str,
    },
    #[error("slot `{slot}`: index {index} is outside its domain of {size}")]
    IndexOutOfRange {
        slot: String,
        index: usize,
        size: usize,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

/// A value during evaluation.
#[derive(Clone, Debug)]
enum Value {
    /// A member of a domain, or `None` when a shift fell off its end.
    Index(Option<usize>),
    Bag(Vec<(usize, f64)>),
    Tensor(Tensor),
}

/// Numbers with `lanes` per member; `members` is `Some(n)` for a bag value.
#[derive(Clone, Debug)]
struct Tensor {
    members: Option<usize>,
    lanes: usize,
    data: Vec<f64>,
}

impl Tensor {
    fn scalar(v: f64) -> Tensor {
        Tensor {
            members: None,
            lanes: 1,
            data: vec![v],
        }
    }

    fn count(&self) -> usize {
        self.members.unwrap_or(1)
    }

    /// Lanes of member `m`, repeating a non-bag value for every member.
    fn member(&self, m: usize) -> &[f64] {
        let m = if self.members.is_some() { m } else { 0 };
        &self.data[m * self.lanes..(m + 1) * self.lanes]
    }

    /// Lane `k` of member `m`, broadcasting scalars and non-bag values.
    fn at(&self, m: usize, k: usize) -> f64 {
        let k = if self.lanes == 1 { 0 } else { k };
        self.member(m)[k]
    }
}

/// Evaluate `g` on one example: the loss, the score and, if `g` has
/// gradients, their values accumulated by table row.
pub fn evaluate(g: &Graph, params: &Params, example: &Example) -> Result<Evaluation, EvalError> {
    check_example(g, params, example)?;
    let mut values: Vec<Value> = Vec::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        let v = eval_node(g, params, example, &values, n.op, n.ty).map_err(|e| match e {
            EvalError::Internal(m) => EvalError::Internal(format!("%{i}: {m}")),
            other => other,
        })?;
        values.push(v);
    }
    let scalar = |id: NodeId| match &values[id.index()] {
        Value::Tensor(t) if t.data.len() == 1 => Ok(t.data[0]),
        _ => Err(EvalError::Internal(format!("{id} is not a scalar"))),
    };
    let loss = scalar(g.loss)?;
    let score = g.score.map(scalar).transpose()?;
    let noise_scale = g.noise_scale.map(scalar).transpose()?;
    let mut gradients = Gradients::default();
    for gr in &g.grads {
        let value = tensor(&values, gr.value)?;
        match gr.target {
            GradTarget::Global(t) => gradients.add(t, 0, &value.data),
            GradTarget::Row(t, ix) => {
                if let Value::Index(Some(r)) = values[ix.index()] {
                    gradients.add(t, r, &value.data);
                }
            }
            GradTarget::BagRows(t, bag) => {
                if let Value::Bag(members) = &values[bag.index()] {
                    for (m, (r, _)) in members.iter().enumerate() {
                        gradients.add(t, *r, value.member(m));
                    }
                }
            }
            GradTarget::Slot(s) => {
                gradients.slots.insert(s, value.data.clone());
            }
        }
    }
    Ok(Evaluation {
        loss,
        score,
        noise_scale,
        gradients,
    })
}

/// The value of one node of `g` on one example, all its lanes in order (a
/// matrix row after row): for outputs other than the loss and the score.
pub fn evaluate_node(
    g: &Graph,
    params: &Params,
    example: &Example,
    node: NodeId,
) -> Result<Vec<f64>, EvalError> {
    check_example(g, params, example)?;
    if node.index() >= g.nodes.len() {
        return Err(EvalError::Internal(format!("{node} does not exist")));
    }
    let mut values: Vec<Value> = Vec::with_capacity(node.index() + 1);
    for (i, n) in g.nodes.iter().enumerate().take(node.index() + 1) {
        let v = eval_node(g, params, example, &values, n.op, n.ty).map_err(|e| match e {
            EvalError::Internal(m) => EvalError::Internal(format!("%{i}: {m}")),
            other => other,
        })?;
        values.push(v);
    }
    Ok(tensor(&values, node)?.data.clone())
}

/// Scores one graph on many examples that differ only in a few slots (one
/// user against every item), recomputing only the nodes that depend on
/// those slots. Every example is still checked in full.
pub struct Incremental<'g> {
    graph: &'g Graph,
    /// Does node `i` depend on a slot that changes between examples?
    changes: Vec<bool>,
    values: Vec<Value>,
}

impl<'g> Incremental<'g> {
    /// `changing` lists the slots that differ from one example to the next.
    pub fn new(graph: &'g Graph, changing: &[crate::ir::SlotId]) -> Incremental<'g> {
        let mut changes = Vec::with_capacity(graph.nodes.len());
        for n in &graph.nodes {
            let c = match n.op {
                Op::Slot(s) => changing.contains(&s),
                op => op.operands().iter().any(|o| changes[o.index()]),
            };
            changes.push(c);
        }
        Incremental {
            graph,
            changes,
            values: Vec::new(),
        }
    }

    /// The score of `example`. After the first call, the caller promises
    /// that only the slots named in [`Incremental::new`] have changed.
    pub fn score(&mut self, params: &Params, example: &Example) -> Result<f64, EvalError> {
        self.run(params, example)?;
        let id = self
            .graph
            .score
            .ok_or_else(|| EvalError::Internal("the model has no score".into()))?;
        self.scalar(id)
    }

    /// The score and the noise scale ([`Graph::noise_scale`]) of `example`,
    /// with the promise of [`Incremental::score`].
    pub fn score_and_scale(
        &mut self,
        params: &Params,
        example: &Example,
    ) -> Result<(f64, Option<f64>), EvalError> {
        let score = self.score(params, example)?;
        let scale = match self.graph.noise_scale {
            Some(id) => Some(self.scalar(id)?),
            None => None,
        };
        Ok((score, scale))
    }

    /// The values of `nodes` (numbers or vectors, no bag members) for
    /// `example`, their lanes appended to `out` in order, with the promise
    /// of [`Incremental::score`].
    pub fn values(
        &mut self,
        params: &Params,
        example: &Example,
        nodes: &[NodeId],
        out: &mut Vec<f64>,
    ) -> Result<(), EvalError> {
        self.run(params, example)?;
        for &id in nodes {
            match self.values.get(id.index()) {
                Some(Value::Tensor(t)) if t.members.is_none() => out.extend_from_slice(&t.data),
                _ => {
                    return Err(EvalError::Internal(format!(
                        "{id} is not a number or vector"
                    )))
                }
            }
        }
        Ok(())
    }

    fn run(&mut self, params: &Params, example: &Example) -> Result<(), EvalError> {
        let g = self.graph;
        check_example(g, params, example)?;
        let fresh = self.values.len() != g.nodes.len();
        if fresh {
            self.values.clear();
        }
        for (i, n) in g.nodes.iter().enumerate() {
            if !fresh && !self.changes[i] {
                continue;
            }
            let v = eval_node(g, params, example, &self.values, n.op, n.ty)?;
            if fresh {
                self.values.push(v);
            } else {
                self.values[i] = v;
            }
        }
        Ok(())
    }

    fn scalar(&self, id: NodeId) -> Result<f64, EvalError> {
        match self.values.get(id.index()) {
            Some(Value::Tensor(t)) if t.data.len() == 1 => Ok(t.data[0]),
            _ => Err(EvalError::Internal(format!("{id} is not a scalar"))),
        }
    }
}

fn check_example(g: &Graph, params: &Params, example: &Example) -> Result<(), EvalError> {
    if example.slots.len() != g.slots.len() {
        return Err(EvalError::SlotCount {
            expected: g.slots.len(),
            found: example.slots.len(),
        });
    }
    if params.domain_sizes.len() != g.domains.len() {
        return Err(EvalError::DomainSizes {
            expected: g.domains.len(),
            found: params.domain_sizes.len(),
        });
    }
    for (slot, value) in g.slots.iter().zip(&example.slots) {
        let bad = |expected| {
            Err(EvalError::SlotKind {
                slot: slot.name.clone(),
                expected,
            })
        };
        let in_domain = |index: usize, d: crate::ir::DomainId| {
            let size = params.domain_sizes[d.index()];
            if index < size {
                Ok(())
            } else {
                Err(EvalError::IndexOutOfRange {
                    slot: slot.name.clone(),
                    index,
                    size,
                })
            }
        };
        match (&slot.kind, value) {
            (SlotKind::Index(d) | SlotKind::Negative { domain: d, .. }, SlotValue::Index(i)) => {
                in_domain(*i, *d)?
            }
            (SlotKind::Index(_) | SlotKind::Negative { .. }, _) => return bad("an index"),
            (SlotKind::Real | SlotKind::InverseCount(_), SlotValue::Real(_)) => {}
            (SlotKind::Real | SlotKind::InverseCount(_), _) => return bad("a number"),
            (SlotKind::Bag { domain, .. }, SlotValue::Bag(members)) => {
                for (i, _) in members {
                    in_domain(*i, *domain)?;
                }
            }
            (SlotKind::Bag { .. }, _) => return bad("a bag"),
            (SlotKind::Noise(shape), SlotValue::Noise(v)) if v.len() == shape.len() => {}
            (SlotKind::Noise(_), _) => return bad("noise of the param's shape"),
            (SlotKind::Pooled { shape, .. } | SlotKind::Dense(shape), SlotValue::Noise(v))
                if v.len() == shape.len() => {}
            (SlotKind::Pooled { .. } | SlotKind::Dense(_), _) => {
                return bad("numbers of the slot's shape")
            }
        }
    }
    Ok(())
}

fn tensor(values: &[Value], id: NodeId) -> Result<&Tensor, EvalError> {
    match &values[id.index()] {
        Value::Tensor(t) => Ok(t),
        _ => Err(EvalError::Internal(format!("{id} is not numeric"))),
    }
}

fn mat_dims(g: &Graph, id: NodeId) -> Result<(usize, usize), EvalError> {
    match g.ty(id).shape() {
        Some(Shape::Mat(r, c)) => Ok((r, c)),
        _ => Err(EvalError::Internal(format!("{id} is not a matrix"))),
    }
}

/// Apply `f` member by member, broadcasting non-bag operands.
fn per_member(
    inputs: &[&Tensor],
    lanes: usize,
    mut f: impl FnMut(&[&[f64]], &mut [f64]),
) -> Tensor {
    let members = inputs.iter().find_map(|t| t.members);
    let count = members.unwrap_or(1);
    let mut data = vec![0.0; count * lanes];
    // Operands are one or two: a fixed array keeps the loop allocation-free.
    let mut args: [&[f64]; 2] = [&[], &[]];
    let n = inputs.len().min(2);
    for m in 0..count {
        for (a, t) in args.iter_mut().zip(inputs) {
            *a = t.member(m);
        }
        f(&args[..n], &mut data[m * lanes..(m + 1) * lanes]);
    }
    Tensor {
        members,
        lanes,
        data,
    }
}

fn eval_node(
    g: &Graph,
    params: &Params,
    example: &Example,
    values: &[Value],
    op: Op,
    ty: Ty,
) -> Result<Value, EvalError> {
    let t = |id: NodeId| tensor(values, id);
    let out_lanes = ty.shape().map_or(1, Shape::len);
    let v = match op {
        Op::Const(bits) => Tensor::scalar(f64::from_bits(bits)),
        Op::Slot(s) => {
            return Ok(match &example.slots[s.index()] {
                SlotValue::Index(i) => Value::Index(Some(*i)),
                SlotValue::Real(x) => Value::Tensor(Tensor::scalar(*x)),
                SlotValue::Bag(members) => Value::Bag(members.clone()),
                SlotValue::Noise(v) => Value::Tensor(Tensor {
                    members: None,
                    lanes: v.len(),
                    data: v.clone(),
                }),
            })
        }
        Op::Shift(ix, by) => {
            let Value::Index(i) = values[ix.index()] else {
                return Err(EvalError::Internal("shift of a non-index".into()));
            };
            let Ty::Index(d) = ty else {
                return Err(EvalError::Internal("shift typed as a non-index".into()));
            };
            let size = params.domain_sizes[d.index()] as i64;
            let shifted = i.and_then(|i| {
                let j = i as i64 + by;
                (0..size).contains(&j).then_some(j as usize)
            });
            return Ok(Value::Index(shifted));
        }
        Op::InRange(ix) => match values[ix.index()] {
            Value::Index(i) => Tensor::scalar(if i.is_some() { 1.0 } else { 0.0 }),
            _ => return Err(EvalError::Internal("in_range of a non-index".into())),
        },
        Op::Global(table) => Tensor {
            members: None,
            lanes: out_lanes,
            data: params.tables[table.index()].row(0).to_vec(),
        },
        Op::Gather(table, ix) => {
            let data = match values[ix.index()] {
                Value::Index(Some(r)) => params.tables[table.index()].row(r).to_vec(),
                // A shifted index off the domain's end reads zeros.
                Value::Index(None) => vec![0.0; out_lanes],
                _ => return Err(EvalError::Internal("gather with a non-index".into())),
            };
            Tensor {
                members: None,
                lanes: out_lanes,
                data,
            }
        }
        Op::GatherBag(table, bag) => {
            let Value::Bag(members) = &values[bag.index()] else {
                return Err(EvalError::Internal("gather_bag with a non-bag".into()));
            };
            let mut data = Vec::with_capacity(members.len() * out_lanes);
            for (r, w) in members {
                data.extend(params.tables[table.index()].row(*r).iter().map(|x| x * w));
            }
            Tensor {
                members: Some(members.len()),
                lanes: out_lanes,
                data,
            }
        }
        Op::BagWeights(bag) => {
            let Value::Bag(members) = &values[bag.index()] else {
                return Err(EvalError::Internal("bag_weights of a non-bag".into()));
            };
            Tensor {
                members: Some(members.len()),
                lanes: 1,
                data: members.iter().map(|(_, w)| *w).collect(),
            }
        }
        Op::BagLen(x) => {
            let n = match &values[x.index()] {
                Value::Bag(m) => m.len(),
                Value::Tensor(t) => t.count(),
                Value::Index(_) => return Err(EvalError::Internal("bag_len of an index".into())),
            };
            Tensor::scalar(n.max(1) as f64)
        }
        Op::Unary(f, x) => {
            let x = t(x)?;
            Tensor {
                members: x.members,
                lanes: x.lanes,
                data: x.data.iter().map(|v| f.apply(*v)).collect(),
            }
        }
        Op::Binary(f, a, b) => {
            let (a, b) = (t(a)?, t(b)?);
            per_member(&[a, b], out_lanes, |args, out| {
                for (k, o) in out.iter_mut().enumerate() {
                    let x = if args[0].len() == 1 {
                        args[0][0]
                    } else {
                        args[0][k]
                    };
                    let y = if args[1].len() == 1 {
                        args[1][0]
                    } else {
                        args[1][k]
                    };
                    *o = f.apply(x, y);
                }
            })
        }
        Op::Dot(a, b) => per_member(&[t(a)?, t(b)?], 1, |args, out| {
            out[0] = args[0].iter().zip(args[1]).map(|(x, y)| x * y).sum();
        }),
        Op::SumLanes(x) => per_member(&[t(x)?], 1, |args, out| out[0] = args[0].iter().sum()),
        Op::SumBag(x) => {
            let x = t(x)?;
            let mut data = vec![0.0; x.lanes];
            for m in 0..x.count() {
                for (d, v) in data.iter_mut().zip(x.member(m)) {
                    *d += v;
                }
            }
            Tensor {
                members: None,
                lanes: x.lanes,
                data,
            }
        }
        Op::Expand(x, like) => {
            let (x, like) = (t(x)?, t(like)?);
            let mut data = Vec::with_capacity(like.data.len());
            for m in 0..like.count() {
                for k in 0..like.lanes {
                    data.push(x.at(m, k));
                }
            }
            Tensor {
                members: like.members,
                lanes: like.lanes,
                data,
            }
        }
        Op::Softmax(x) => per_member(&[t(x)?], out_lanes, |args, out| {
            let max = args[0].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut total = 0.0;
            for (o, v) in out.iter_mut().zip(args[0]) {
                *o = (v - max).exp();
                total += *o;
            }
            for o in out.iter_mut() {
                *o /= total;
            }
        }),
        Op::Concat(a, b) => per_member(&[t(a)?, t(b)?], out_lanes, |args, out| {
            let n = args[0].len();
            out[..n].copy_from_slice(args[0]);
            out[n..].copy_from_slice(args[1]);
        }),
        Op::Slice(x, start, len) => per_member(&[t(x)?], out_lanes, |args, out| {
            out.copy_from_slice(&args[0][start as usize..(start + len) as usize]);
        }),
        Op::Pad(x, start, _) => per_member(&[t(x)?], out_lanes, |args, out| {
            let s = start as usize;
            out[s..s + args[0].len()].copy_from_slice(args[0]);
        }),
        Op::MatVec(m, v) => {
            let (_, cols) = mat_dims(g, m)?;
            per_member(&[t(m)?, t(v)?], out_lanes, |args, out| {
                for (r, o) in out.iter_mut().enumerate() {
                    *o = (0..cols).map(|c| args[0][r * cols + c] * args[1][c]).sum();
                }
            })
        }
        Op::MatTVec(m, v) => {
            let (rows, cols) = mat_dims(g, m)?;
            per_member(&[t(m)?, t(v)?], out_lanes, |args, out| {
                for (c, o) in out.iter_mut().enumerate() {
                    *o = (0..rows).map(|r| args[0][r * cols + c] * args[1][r]).sum();
                }
            })
        }
        Op::Outer(a, b) => per_member(&[t(a)?, t(b)?], out_lanes, |args, out| {
            let cols = args[1].len();
            for (r, x) in args[0].iter().enumerate() {
                for (c, y) in args[1].iter().enumerate() {
                    out[r * cols + c] = x * y;
                }
            }
        }),
    };
    Ok(Value::Tensor(v))
}
