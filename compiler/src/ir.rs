//! The graph IR: primitive ops over static shapes, for one training example.
//!
//! A [`Graph`] is an arena of nodes in topological order — every operand
//! comes before its user — so evaluation is one forward walk and reverse-mode
//! differentiation one backward walk. Nodes are hash-consed as they are
//! added: building the same op on the same operands twice returns the first
//! node, so common subexpressions merge for free. Source spans sit in a side
//! table and do not affect node identity. petgraph provides the graph view
//! for verification and DOT export.

use crate::model::{Constraint, Init};
use crate::source::{SourceMap, Span};
use crate::types::{BinaryFn, Shape, UnaryFn};
use petgraph::graph::DiGraph;
use std::collections::HashMap;
use std::fmt::{self, Write as _};

id_type!(NodeId => "%", TableId => "t", SlotId => "s", DomainId => "d");

/// The type of an IR value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    /// Numbers of a static shape; with `bag`, one such value per member of
    /// that bag slot (a length known only at run time).
    Value { shape: Shape, bag: Option<SlotId> },
    /// One member of a domain.
    Index(DomainId),
    /// The members (and weights) of a bag slot.
    Bag(SlotId, DomainId),
}

impl Ty {
    pub const SCALAR: Ty = Ty::Value {
        shape: Shape::Scalar,
        bag: None,
    };

    pub fn shape(self) -> Option<Shape> {
        match self {
            Ty::Value { shape, .. } => Some(shape),
            _ => None,
        }
    }

    pub fn bag(self) -> Option<SlotId> {
        match self {
            Ty::Value { bag, .. } => bag,
            _ => None,
        }
    }
}

/// One operation. Operands are earlier nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A scalar constant, stored as bits so ops can be hashed.
    Const(u64),
    /// The example's value in an index, real, bag or noise slot.
    Slot(SlotId),
    /// `t + by`: a neighbouring member of an ordinal domain.
    Shift(NodeId, i64),
    /// 1 if the index names a member of its domain, else 0.
    InRange(NodeId),
    /// A global parameter.
    Global(TableId),
    /// One row of a table. An index outside the domain reads zeros.
    Gather(TableId, NodeId),
    /// One row per member of a bag, each scaled by the member's weight.
    GatherBag(TableId, NodeId),
    /// The weights of a bag's members.
    BagWeights(NodeId),
    /// The number of members of a bag value, at least 1 (the divisor of a mean).
    BagLen(NodeId),
    Unary(UnaryFn, NodeId),
    /// Elementwise; a scalar operand broadcasts over lanes, a non-bag
    /// operand over a bag's members.
    Binary(BinaryFn, NodeId, NodeId),
    /// Sum of products over the lanes of two vectors.
    Dot(NodeId, NodeId),
    /// Sum of all lanes (per member of a bag).
    SumLanes(NodeId),
    /// Sum over a bag's members.
    SumBag(NodeId),
    /// The first operand broadcast to the type of the second.
    Expand(NodeId, NodeId),
    Softmax(NodeId),
    Concat(NodeId, NodeId),
    /// `len` lanes of a vector from `start`.
    Slice(NodeId, u32, u32),
    /// A vector placed at `start` in zeros of length `len`.
    Pad(NodeId, u32, u32),
    /// Matrix times vector.
    MatVec(NodeId, NodeId),
    /// Transposed matrix times vector.
    MatTVec(NodeId, NodeId),
    /// Outer product of two vectors: a matrix.
    Outer(NodeId, NodeId),
}

impl Op {
    pub fn constant(v: f64) -> Op {
        Op::Const(v.to_bits())
    }

    /// The operands, in order.
    pub fn operands(&self) -> Vec<NodeId> {
        match *self {
            Op::Const(_) | Op::Slot(_) | Op::Global(_) => vec![],
            Op::Shift(a, _)
            | Op::InRange(a)
            | Op::Gather(_, a)
            | Op::GatherBag(_, a)
            | Op::BagWeights(a)
            | Op::BagLen(a)
            | Op::Unary(_, a)
            | Op::SumLanes(a)
            | Op::SumBag(a)
            | Op::Softmax(a)
            | Op::Slice(a, _, _)
            | Op::Pad(a, _, _) => vec![a],
            Op::Binary(_, a, b)
            | Op::Dot(a, b)
            | Op::Expand(a, b)
            | Op::Concat(a, b)
            | Op::MatVec(a, b)
            | Op::MatTVec(a, b)
            | Op::Outer(a, b) => vec![a, b],
        }
    }

    /// The same op with every operand mapped through `f`.
    pub fn map_operands(&self, mut f: impl FnMut(NodeId) -> NodeId) -> Op {
        match *self {
            Op::Const(_) | Op::Slot(_) | Op::Global(_) => *self,
            Op::Shift(a, by) => Op::Shift(f(a), by),
            Op::InRange(a) => Op::InRange(f(a)),
            Op::Gather(t, a) => Op::Gather(t, f(a)),
            Op::GatherBag(t, a) => Op::GatherBag(t, f(a)),
            Op::BagWeights(a) => Op::BagWeights(f(a)),
            Op::BagLen(a) => Op::BagLen(f(a)),
            Op::Unary(u, a) => Op::Unary(u, f(a)),
            Op::SumLanes(a) => Op::SumLanes(f(a)),
            Op::SumBag(a) => Op::SumBag(f(a)),
            Op::Softmax(a) => Op::Softmax(f(a)),
            Op::Slice(a, s, n) => Op::Slice(f(a), s, n),
            Op::Pad(a, s, n) => Op::Pad(f(a), s, n),
            Op::Binary(o, a, b) => {
                let a = f(a);
                Op::Binary(o, a, f(b))
            }
            Op::Dot(a, b) => {
                let a = f(a);
                Op::Dot(a, f(b))
            }
            Op::Expand(a, b) => {
                let a = f(a);
                Op::Expand(a, f(b))
            }
            Op::Concat(a, b) => {
                let a = f(a);
                Op::Concat(a, f(b))
            }
            Op::MatVec(a, b) => {
                let a = f(a);
                Op::MatVec(a, f(b))
            }
            Op::MatTVec(a, b) => {
                let a = f(a);
                Op::MatTVec(a, f(b))
            }
            Op::Outer(a, b) => {
                let a = f(a);
                Op::Outer(a, f(b))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub ty: Ty,
}

/// A categorical space whose size the data decides.
#[derive(Clone, Debug, PartialEq)]
pub struct Domain {
    pub name: String,
}

/// Where an example's slot is filled from.
#[derive(Clone, Debug, PartialEq)]
pub enum SlotKind {
    /// An index column of the data.
    Index(DomainId),
    /// A numeric column of the data.
    Real,
    /// A bag column, or a user's history.
    Bag { domain: DomainId, history: bool },
    /// Draw `draw` of a negative sampler: a member the example does not contain.
    Negative {
        domain: DomainId,
        draw: u32,
        popularity: bool,
    },
    /// Standard normal noise of a variational row (zero at prediction).
    Noise(Shape),
    /// 1 / the number of training examples whose index slot holds this
    /// example's value (`None`: 1 / the number of training examples); 1 for
    /// a value training never saw. The weight of a `once` prior.
    InverseCount(Option<SlotId>),
    /// The pooled value `sum_bag` or `bag_len` of a history bag over its
    /// members, computed by the runtime from rows frozen for a group of
    /// examples (`crate::hoist`). The loss's gradient with respect to it is
    /// an output of the step (`GradTarget::Slot`).
    Pooled { bag: SlotId, shape: Shape },
    /// A vector the runtime computes per example: the gradient accumulated
    /// for one pooled value, the input of a hoisted member step.
    Dense(Shape),
}

impl SlotKind {
    /// The shape of a `Pooled` slot's value.
    pub fn pooled_shape(&self) -> Option<Shape> {
        match self {
            SlotKind::Pooled { shape, .. } => Some(*shape),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub name: String,
    pub kind: SlotKind,
}

/// What a table holds for the optimiser's benefit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableRole {
    /// An ordinary parameter.
    Plain,
    /// The mean of a variational parameter.
    Mean,
    /// The log-variance of a variational parameter.
    LogVar,
}

/// Storage for one parameter: a global (one row) or a table over a domain.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub name: String,
    pub domain: Option<DomainId>,
    pub shape: Shape,
    pub init: Init,
    pub constraint: Constraint,
    pub role: TableRole,
}

/// Where a gradient goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GradTarget {
    Global(TableId),
    /// The row a `Gather` read: the index node says which.
    Row(TableId, NodeId),
    /// The rows a `GatherBag` read: the value has one gradient per member.
    BagRows(TableId, NodeId),
    /// A `Pooled` input slot: the step writes this gradient out per example.
    Slot(SlotId),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grad {
    pub target: GradTarget,
    pub value: NodeId,
}

/// The IR of one model.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub name: String,
    pub domains: Vec<Domain>,
    pub slots: Vec<Slot>,
    pub tables: Vec<Table>,
    pub nodes: Vec<Node>,
    /// Where each node came from, if anywhere (side table, not identity).
    pub spans: Vec<Option<Span>>,
    /// The per-example objective.
    pub loss: NodeId,
    /// The prediction, if the model has one.
    pub score: Option<NodeId>,
    /// The scale of a normal likelihood on the target (`Model::noise_scale`):
    /// the observation noise around `score`, for predictive intervals.
    pub noise_scale: Option<NodeId>,
    /// Gradients of `loss`, filled in by [`crate::grad::grad`].
    pub grads: Vec<Grad>,
}

/// An error that means the compiler itself is wrong: a well-typed model
/// produced an ill-typed graph.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("internal compiler error: {0}")]
pub struct IrError(pub String);

impl Graph {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn ty(&self, id: NodeId) -> Ty {
        self.nodes[id.index()].ty
    }

    /// Every node the outputs depend on: loss, score, noise scale and gradients.
    pub fn roots(&self) -> Vec<NodeId> {
        let mut roots = vec![self.loss];
        roots.extend(self.score);
        roots.extend(self.noise_scale);
        for g in &self.grads {
            roots.push(g.value);
            match g.target {
                GradTarget::Global(_) | GradTarget::Slot(_) => {}
                GradTarget::Row(_, i) | GradTarget::BagRows(_, i) => roots.push(i),
            }
        }
        roots
    }

    /// The dependency graph as petgraph: an edge from each operand to its user.
    pub fn to_petgraph(&self) -> DiGraph<Op, ()> {
        let mut g = DiGraph::with_capacity(self.nodes.len(), self.nodes.len() * 2);
        let ids: Vec<_> = self.nodes.iter().map(|n| g.add_node(n.op)).collect();
        for (i, n) in self.nodes.iter().enumerate() {
            for o in n.op.operands() {
                if let Some(&from) = ids.get(o.index()) {
                    g.add_edge(from, ids[i], ());
                }
            }
        }
        g
    }

    /// Check the invariants every pass must keep: operands come first, the
    /// graph is acyclic, every node's type is what its op and operands give,
    /// and outputs have the types their consumers expect.
    pub fn verify(&self) -> Result<(), IrError> {
        if self.spans.len() != self.nodes.len() {
            return Err(IrError("span table out of step with nodes".into()));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for o in n.op.operands() {
                if o.index() >= i {
                    return Err(IrError(format!(
                        "%{i} uses {o}, which does not come before it"
                    )));
                }
            }
            let ty = infer_type(self, &n.op)?;
            if ty != n.ty {
                return Err(IrError(format!(
                    "%{i} has type {ty:?}, recorded {:?}",
                    n.ty
                )));
            }
        }
        for s in &self.slots {
            if let SlotKind::InverseCount(Some(of)) = s.kind {
                if !matches!(
                    self.slots.get(of.index()).map(|o| &o.kind),
                    Some(SlotKind::Index(_))
                ) {
                    return Err(IrError(format!(
                        "slot {} counts {of}, not an index",
                        s.name
                    )));
                }
            }
        }
        if petgraph::algo::is_cyclic_directed(&self.to_petgraph()) {
            return Err(IrError("the graph has a cycle".into()));
        }
        for r in self.roots() {
            if r.index() >= self.nodes.len() {
                return Err(IrError(format!("output {r} does not exist")));
            }
        }
        if self.ty(self.loss) != Ty::SCALAR {
            return Err(IrError("the loss is not a scalar".into()));
        }
        if self.noise_scale.is_some_and(|s| self.ty(s) != Ty::SCALAR) {
            return Err(IrError("the noise scale is not a scalar".into()));
        }
        for g in &self.grads {
            let t = match g.target {
                GradTarget::Global(t) | GradTarget::Row(t, _) | GradTarget::BagRows(t, _) => t,
                GradTarget::Slot(s) => {
                    let want = match self.slots.get(s.index()).map(|s| &s.kind) {
                        Some(SlotKind::Pooled { shape, .. }) => Ty::Value {
                            shape: *shape,
                            bag: None,
                        },
                        _ => return Err(IrError(format!("gradient of {s}, not a pooled slot"))),
                    };
                    if self.ty(g.value) != want {
                        return Err(IrError(format!(
                            "gradient of {s} has type {:?}, expected {want:?}",
                            self.ty(g.value)
                        )));
                    }
                    continue;
                }
            };
            let table = &self.tables[t.index()];
            let want_bag = match g.target {
                GradTarget::BagRows(_, bag) => match self.ty(bag) {
                    Ty::Bag(slot, _) => Some(slot),
                    _ => return Err(IrError("bag gradient without a bag".into())),
                },
                _ => None,
            };
            let want = Ty::Value {
                shape: table.shape,
                bag: want_bag,
            };
            if self.ty(g.value) != want {
                return Err(IrError(format!(
                    "gradient of {} has type {:?}, expected {want:?}",
                    table.name,
                    self.ty(g.value)
                )));
            }
        }
        Ok(())
    }

    /// The graph in Graphviz DOT, for looking at.
    pub fn to_dot(&self) -> String {
        let labelled = self.to_petgraph().map(
            |i, op| format!("%{} = {}", i.index(), OpText(self, op)),
            |_, _| "",
        );
        format!(
            "{:?}",
            petgraph::dot::Dot::with_config(&labelled, &[petgraph::dot::Config::EdgeNoLabel])
        )
    }

    /// The stable text form printed by `recc ir` and pinned by golden tests.
    pub fn to_text(&self, sources: Option<&SourceMap>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "graph {} {{", self.name);
        for (i, d) in self.domains.iter().enumerate() {
            let _ = writeln!(out, "  domain d{i} {}", d.name);
        }
        for (i, s) in self.slots.iter().enumerate() {
            let kind = match &s.kind {
                SlotKind::Index(d) => format!("index {}", self.domains[d.index()].name),
                SlotKind::Real => "real".to_string(),
                SlotKind::Bag { domain, history } => format!(
                    "{}({})",
                    if *history { "history" } else { "bag" },
                    self.domains[domain.index()].name
                ),
                SlotKind::Negative {
                    domain,
                    draw,
                    popularity,
                } => format!(
                    "negative({}{}) #{draw}",
                    self.domains[domain.index()].name,
                    if *popularity { ", popularity" } else { "" }
                ),
                SlotKind::Noise(shape) => format!("noise {}", shape_text(*shape)),
                SlotKind::InverseCount(Some(of)) => format!("inverse_count {of}"),
                SlotKind::InverseCount(None) => "inverse_count".to_string(),
                SlotKind::Pooled { bag, shape } => format!("pooled {bag} {}", shape_text(*shape)),
                SlotKind::Dense(shape) => format!("dense {}", shape_text(*shape)),
            };
            let _ = writeln!(out, "  slot s{i} {}: {kind}", s.name);
        }
        for (i, t) in self.tables.iter().enumerate() {
            let rows = match t.domain {
                Some(d) => format!("[{}]", self.domains[d.index()].name),
                None => String::new(),
            };
            let mut extra = format!(" init {}", t.init);
            match t.constraint {
                Constraint::None => {}
                Constraint::Ball => extra.push_str(" on ball"),
                Constraint::Nonneg => extra.push_str(" nonneg"),
            }
            let _ = writeln!(
                out,
                "  table t{i} {}{rows}: {}{extra}",
                t.name,
                shape_text(t.shape)
            );
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let line = format!("  %{i} = {} : {}", OpText(self, &n.op), TyText(self, n.ty));
            match (sources, self.spans[i]) {
                (Some(src), Some(span)) => {
                    let _ = writeln!(out, "{line:<56} # {}", src.location(span));
                }
                _ => {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        let _ = writeln!(out, "  loss {}", self.loss);
        if let Some(s) = self.score {
            let _ = writeln!(out, "  score {s}");
        }
        if let Some(s) = self.noise_scale {
            let _ = writeln!(out, "  scale {s}");
        }
        for g in &self.grads {
            let target = match g.target {
                GradTarget::Global(t) => self.tables[t.index()].name.clone(),
                GradTarget::Row(t, i) => format!("{}[{i}]", self.tables[t.index()].name),
                GradTarget::BagRows(t, i) => format!("{}[{i}...]", self.tables[t.index()].name),
                GradTarget::Slot(s) => format!("slot {}", self.slots[s.index()].name),
            };
            let _ = writeln!(out, "  grad {target} = {}", g.value);
        }
        out.push_str("}\n");
        out
    }
}

fn shape_text(s: Shape) -> String {
    match s {
        Shape::Scalar => "f".into(),
        Shape::Vec(n) => format!("f[{n}]"),
        Shape::Mat(r, c) => format!("f[{r},{c}]"),
    }
}

struct TyText<'g>(&'g Graph, Ty);

impl fmt::Display for TyText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Ty::Value { shape, bag: None } => write!(f, "{}", shape_text(shape)),
            Ty::Value {
                shape,
                bag: Some(b),
            } => write!(f, "{}[{b}]", shape_text(shape)),
            Ty::Index(d) => write!(f, "index {}", self.0.domains[d.index()].name),
            Ty::Bag(s, d) => write!(f, "bag {} {s}", self.0.domains[d.index()].name),
        }
    }
}

struct OpText<'g>(&'g Graph, &'g Op);

impl fmt::Display for OpText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.0;
        let table = |t: TableId| &g.tables[t.index()].name;
        match *self.1 {
            Op::Const(bits) => write!(f, "const {}", f64::from_bits(bits)),
            Op::Slot(s) => write!(f, "slot {} {s}", g.slots[s.index()].name),
            Op::Shift(a, by) => write!(f, "shift {a}, {by}"),
            Op::InRange(a) => write!(f, "in_range {a}"),
            Op::Global(t) => write!(f, "global {}", table(t)),
            Op::Gather(t, a) => write!(f, "gather {}, {a}", table(t)),
            Op::GatherBag(t, a) => write!(f, "gather_bag {}, {a}", table(t)),
            Op::BagWeights(a) => write!(f, "bag_weights {a}"),
            Op::BagLen(a) => write!(f, "bag_len {a}"),
            Op::Unary(u, a) => write!(f, "{} {a}", u.name()),
            Op::Binary(b, x, y) => write!(f, "{} {x}, {y}", b.name()),
            Op::Dot(a, b) => write!(f, "dot {a}, {b}"),
            Op::SumLanes(a) => write!(f, "sum_lanes {a}"),
            Op::SumBag(a) => write!(f, "sum_bag {a}"),
            Op::Expand(a, b) => write!(f, "expand {a}, like {b}"),
            Op::Softmax(a) => write!(f, "softmax {a}"),
            Op::Concat(a, b) => write!(f, "concat {a}, {b}"),
            Op::Slice(a, s, n) => write!(f, "slice {a}, {s}, {n}"),
            Op::Pad(a, s, n) => write!(f, "pad {a}, {s}, {n}"),
            Op::MatVec(a, b) => write!(f, "matvec {a}, {b}"),
            Op::MatTVec(a, b) => write!(f, "mattvec {a}, {b}"),
            Op::Outer(a, b) => write!(f, "outer {a}, {b}"),
        }
    }
}

/// The type an op produces from its operands' types, or why it is ill-typed.
pub fn infer_type(g: &Graph, op: &Op) -> Result<Ty, IrError> {
    infer_type_with(
        &|id: NodeId| g.nodes.get(id.index()).map(|n| n.ty),
        &g.slots,
        &g.tables,
        op,
    )
}

fn err<T>(msg: impl Into<String>) -> Result<T, IrError> {
    Err(IrError(msg.into()))
}

fn infer_type_with(
    ty_of: &dyn Fn(NodeId) -> Option<Ty>,
    slots: &[Slot],
    tables: &[Table],
    op: &Op,
) -> Result<Ty, IrError> {
    let ty = |id: NodeId| ty_of(id).ok_or_else(|| IrError(format!("{id} does not exist")));
    let value = |id: NodeId| match ty(id)? {
        Ty::Value { shape, bag } => Ok((shape, bag)),
        other => err(format!("{id} is {other:?}, not a value")),
    };
    let table = |t: TableId| {
        tables
            .get(t.index())
            .ok_or_else(|| IrError(format!("{t} does not exist")))
    };
    let join_bags = |a: Option<SlotId>, b: Option<SlotId>| match (a, b) {
        (Some(x), Some(y)) if x != y => err("two different bags in one op"),
        (x, y) => Ok(x.or(y)),
    };
    match *op {
        Op::Const(_) => Ok(Ty::SCALAR),
        Op::Slot(s) => match slots.get(s.index()).map(|s| &s.kind) {
            Some(SlotKind::Index(d)) | Some(SlotKind::Negative { domain: d, .. }) => {
                Ok(Ty::Index(*d))
            }
            Some(SlotKind::Real | SlotKind::InverseCount(_)) => Ok(Ty::SCALAR),
            Some(SlotKind::Bag { domain, .. }) => Ok(Ty::Bag(s, *domain)),
            Some(
                SlotKind::Noise(shape) | SlotKind::Pooled { shape, .. } | SlotKind::Dense(shape),
            ) => Ok(Ty::Value {
                shape: *shape,
                bag: None,
            }),
            None => err(format!("{s} does not exist")),
        },
        Op::Shift(a, _) => match ty(a)? {
            Ty::Index(d) => Ok(Ty::Index(d)),
            _ => err("shift of a non-index"),
        },
        Op::InRange(a) => match ty(a)? {
            Ty::Index(_) => Ok(Ty::SCALAR),
            _ => err("in_range of a non-index"),
        },
        Op::Global(t) => {
            let t = table(t)?;
            if t.domain.is_some() {
                return err("global read of a table");
            }
            Ok(Ty::Value {
                shape: t.shape,
                bag: None,
            })
        }
        Op::Gather(t, a) => {
            let t = table(t)?;
            match ty(a)? {
                Ty::Index(d) if Some(d) == t.domain => Ok(Ty::Value {
                    shape: t.shape,
                    bag: None,
                }),
                _ => err(format!("gather of {} with a wrong index", t.name)),
            }
        }
        Op::GatherBag(t, a) => {
            let t = table(t)?;
            match ty(a)? {
                Ty::Bag(s, d) if Some(d) == t.domain => Ok(Ty::Value {
                    shape: t.shape,
                    bag: Some(s),
                }),
                _ => err(format!("gather_bag of {} with a wrong bag", t.name)),
            }
        }
        Op::BagWeights(a) => match ty(a)? {
            Ty::Bag(s, _) => Ok(Ty::Value {
                shape: Shape::Scalar,
                bag: Some(s),
            }),
            _ => err("bag_weights of a non-bag"),
        },
        Op::BagLen(a) => match ty(a)? {
            Ty::Value { bag: Some(_), .. } | Ty::Bag(..) => Ok(Ty::SCALAR),
            _ => err("bag_len of a non-bag"),
        },
        Op::Unary(_, a) => {
            let (shape, bag) = value(a)?;
            Ok(Ty::Value { shape, bag })
        }
        Op::Binary(_, a, b) => {
            let (sa, ba) = value(a)?;
            let (sb, bb) = value(b)?;
            let bag = join_bags(ba, bb)?;
            let shape = if sa == sb || sb.is_scalar() {
                sa
            } else if sa.is_scalar() {
                sb
            } else {
                return err(format!("binary op on {sa} and {sb}"));
            };
            Ok(Ty::Value { shape, bag })
        }
        Op::Dot(a, b) => {
            let (sa, ba) = value(a)?;
            let (sb, bb) = value(b)?;
            match (sa, sb) {
                (Shape::Vec(n), Shape::Vec(m)) if n == m => Ok(Ty::Value {
                    shape: Shape::Scalar,
                    bag: join_bags(ba, bb)?,
                }),
                _ => err("dot of non-matching vectors"),
            }
        }
        Op::SumLanes(a) => {
            let (_, bag) = value(a)?;
            Ok(Ty::Value {
                shape: Shape::Scalar,
                bag,
            })
        }
        Op::SumBag(a) => match value(a)? {
            (shape, Some(_)) => Ok(Ty::Value { shape, bag: None }),
            _ => err("sum_bag of a non-bag"),
        },
        Op::Expand(a, like) => {
            let (sa, ba) = value(a)?;
            let (sl, bl) = value(like)?;
            let shape_ok = sa == sl || sa.is_scalar();
            let bag_ok = ba.is_none() || ba == bl;
            if shape_ok && bag_ok {
                Ok(Ty::Value { shape: sl, bag: bl })
            } else {
                err("expand to an incompatible type")
            }
        }
        Op::Softmax(a) => match value(a)? {
            (Shape::Vec(n), bag) => Ok(Ty::Value {
                shape: Shape::Vec(n),
                bag,
            }),
            _ => err("softmax of a non-vector"),
        },
        Op::Concat(a, b) => match (value(a)?, value(b)?) {
            ((Shape::Vec(n), ba), (Shape::Vec(m), bb)) => Ok(Ty::Value {
                shape: Shape::Vec(n + m),
                bag: join_bags(ba, bb)?,
            }),
            _ => err("concat of non-vectors"),
        },
        Op::Slice(a, s, n) => match value(a)? {
            (Shape::Vec(len), bag) if (s + n) as usize <= len && n > 0 => Ok(Ty::Value {
                shape: Shape::Vec(n as usize),
                bag,
            }),
            _ => err("slice out of range"),
        },
        Op::Pad(a, s, n) => match value(a)? {
            (Shape::Vec(len), bag) if s as usize + len <= n as usize => Ok(Ty::Value {
                shape: Shape::Vec(n as usize),
                bag,
            }),
            _ => err("pad out of range"),
        },
        Op::MatVec(m, v) => match (value(m)?, value(v)?) {
            ((Shape::Mat(r, c), bm), (Shape::Vec(n), bv)) if c == n => Ok(Ty::Value {
                shape: Shape::Vec(r),
                bag: join_bags(bm, bv)?,
            }),
            _ => err("matvec of non-matching shapes"),
        },
        Op::MatTVec(m, v) => match (value(m)?, value(v)?) {
            ((Shape::Mat(r, c), bm), (Shape::Vec(n), bv)) if r == n => Ok(Ty::Value {
                shape: Shape::Vec(c),
                bag: join_bags(bm, bv)?,
            }),
            _ => err("mattvec of non-matching shapes"),
        },
        Op::Outer(a, b) => match (value(a)?, value(b)?) {
            ((Shape::Vec(r), ba), (Shape::Vec(c), bb)) => Ok(Ty::Value {
                shape: Shape::Mat(r, c),
                bag: join_bags(ba, bb)?,
            }),
            _ => err("outer of non-vectors"),
        },
    }
}

/// Most nodes one graph may have. The checker's expansion budget keeps a
/// model's expression tree far smaller, and lowering, `grad` and `simplify`
/// add a bounded number of nodes per node they read; this is the backstop
/// that turns a mistake in that reasoning into an error, not exhausted memory.
pub const MAX_NODES: usize = 4_000_000;

/// Builds a graph node by node, hash-consing as it goes.
pub struct Builder {
    pub graph: Graph,
    seen: HashMap<Op, NodeId>,
}

impl Builder {
    /// A builder with the declarations of `template` and no nodes.
    pub fn new(template: &Graph) -> Builder {
        Builder {
            graph: Graph {
                name: template.name.clone(),
                domains: template.domains.clone(),
                slots: template.slots.clone(),
                tables: template.tables.clone(),
                nodes: Vec::new(),
                spans: Vec::new(),
                loss: NodeId(0),
                score: None,
                noise_scale: None,
                grads: Vec::new(),
            },
            seen: HashMap::new(),
        }
    }

    pub fn ty(&self, id: NodeId) -> Ty {
        self.graph.nodes[id.index()].ty
    }

    /// Add `op`, or return the node that already computes it.
    pub fn add(&mut self, op: Op, span: Option<Span>) -> Result<NodeId, IrError> {
        if let Some(&id) = self.seen.get(&op) {
            if self.graph.spans[id.index()].is_none() {
                self.graph.spans[id.index()] = span;
            }
            return Ok(id);
        }
        if self.graph.nodes.len() >= MAX_NODES {
            return Err(IrError(format!(
                "the graph of `{}` grows beyond {MAX_NODES} nodes",
                self.graph.name
            )));
        }
        let nodes = &self.graph.nodes;
        let ty = infer_type_with(
            &|id: NodeId| nodes.get(id.index()).map(|n| n.ty),
            &self.graph.slots,
            &self.graph.tables,
            &op,
        )?;
        let id = NodeId(self.graph.nodes.len() as u32);
        self.graph.nodes.push(Node { op, ty });
        self.graph.spans.push(span);
        self.seen.insert(op, id);
        Ok(id)
    }

    pub fn constant(&mut self, v: f64) -> Result<NodeId, IrError> {
        self.add(Op::constant(v), None)
    }

    pub fn finish(self) -> Graph {
        self.graph
    }
}
