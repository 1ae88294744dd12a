//! The kernel plan: one training step (or one prediction) for one example,
//! as the 32 lanes of a warp execute it.
//!
//! A plan is plain data between the graph IR and the code that runs it: the
//! CUDA renderer walks it to print a kernel, and the CPU emulator
//! ([`crate::emulate`]) walks it to run every lane in Rust. It fixes the
//! schedule the IR leaves open (Halide's split of algorithm and schedule):
//!
//! - **Where a value lives** ([`Layout`]): a vector of `n` elements is
//!   spread over the warp, lane `j` holding elements `j, j + 32, …`, so a
//!   row is read in coalesced 128-byte transactions; a scalar is held
//!   redundantly by every lane; an index names one row for the whole warp.
//! - **Reductions** (dot products, sums, norms, softmax's maximum) are two
//!   steps: each lane combines its own elements ([`Expr::Partial`]), then a
//!   butterfly of `__shfl_xor_sync` over offsets 16, 8, 4, 2, 1
//!   ([`Expr::Butterfly`]) leaves the same total in every lane.
//! - **Bags** (histories, feature sets) are loops over their members inside
//!   the warp ([`Instr::ForMembers`]); a per-member value read after its
//!   loop is kept in the warp's scratch, `bag_lanes` floats per member.
//! - **Updates** ([`Update`]) come after every value is computed, in the
//!   gradient graph's order, each an explicit list of [`RowStep`]s: the
//!   ball's metric, the optimiser's rule with its per-row state, `nonneg`,
//!   the ball's pull-back, marking the row touched. Gradients of index nodes
//!   of one table that name the same row are summed and applied once, by
//!   the first of them, as the JIT and the evaluator do.
//!
//! Values are in A-normal form: each [`Instr::Let`] defines a new
//! [`ValueId`] from earlier ones; only [`Instr::Accumulate`] adds into an
//! existing value (a bag sum's accumulator).

use recc_compiler::ir::{
    DomainId, GradTarget, Graph, NodeId, Op, SlotId, SlotKind, TableId, TableRole, Ty,
};
use recc_compiler::model::{Constraint, Optimizer};
use recc_compiler::types::{BinaryFn, Shape, UnaryFn};
use std::collections::BTreeMap;
use std::fmt;

/// Lanes of a warp.
pub const WARP: usize = 32;

/// The butterfly's shuffle offsets, in order.
pub const BUTTERFLY: [usize; 5] = [16, 8, 4, 2, 1];

/// A value of the plan, printed `v3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// What a kernel does with each example.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KernelKind {
    /// Forward, loss, gradients and the optimiser's update.
    Step(StepOptions),
    /// Forward only: the score, written to the score column.
    Predict,
}

/// How a training step is planned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOptions {
    pub optimizer: Optimizer,
    /// Rows of `on ball` tables are pulled back inside this radius.
    pub max_ball_norm: f64,
}

/// One kernel: the per-example program every warp runs.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelPlan {
    /// The model's name.
    pub model: String,
    pub kind: KernelKind,
    /// The example's inputs, by slot: which column each reads.
    pub slots: Vec<SlotInput>,
    /// The parameters, by table.
    pub tables: Vec<TablePlan>,
    /// The domains' names, by domain (their sizes are run-time arguments).
    pub domains: Vec<String>,
    /// Every value, by [`ValueId`].
    pub values: Vec<ValueInfo>,
    /// The example's program: forward values, then gradients.
    pub body: Vec<Instr>,
    /// Scratch floats per bag member (the per-member values read after
    /// their loop, summed), as the JIT's `ArgLayout::bag_lanes`.
    pub bag_lanes: usize,
    /// What the example produces.
    pub output: Output,
}

/// Which column a slot reads, per example.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotInput {
    /// A `u32` row of a domain (index and negative slots).
    Index(DomainId),
    /// An `f32` (real columns and inverse counts).
    Real,
    /// A bag: `u32` offsets (n + 1), `u32` members, `f32` weights.
    Bag(DomainId),
    /// `lanes` `f32`s per example (a variational row's noise).
    Noise { lanes: usize },
}

/// One table of parameters: `rows × lanes` f32 values (rows: the domain's
/// size, or 1 for a global), row-major, with the optimiser's state beside
/// it (Adagrad: one sum of squares per value; Adam: two moments per value
/// and one step count per row) and one touched flag per row.
#[derive(Clone, Debug, PartialEq)]
pub struct TablePlan {
    pub name: String,
    /// `None`: a global, one row.
    pub domain: Option<DomainId>,
    /// Floats per row.
    pub lanes: usize,
    pub constraint: Constraint,
    pub role: TableRole,
}

/// Where one value lives in the warp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One `f32`, the same in every lane.
    Uniform,
    /// `n` elements spread over the warp: lane `j` holds elements
    /// `j, j + 32, …` (`n.div_ceil(32)` registers per lane; elements past
    /// `n` are padding no reduction reads).
    Spread(usize),
    /// One `f32` per lane, different in each: a reduction's partial.
    PerLane,
    /// A row of a domain, the same in every lane, with a flag that is
    /// false when a shift fell off the domain (the row then reads zeros
    /// and takes no update).
    Row(DomainId),
    /// A bag slot's members for this example.
    Bag(SlotId),
}

impl Layout {
    /// Registers per lane a value of this layout takes.
    pub fn registers(self) -> usize {
        match self {
            Layout::Spread(n) => n.div_ceil(WARP),
            Layout::Uniform | Layout::PerLane | Layout::Row(_) | Layout::Bag(_) => 1,
        }
    }

    /// Elements of a numeric value (1 for a scalar), `None` otherwise.
    pub fn elements(self) -> Option<usize> {
        match self {
            Layout::Uniform => Some(1),
            Layout::Spread(n) => Some(n),
            Layout::PerLane | Layout::Row(_) | Layout::Bag(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueInfo {
    pub layout: Layout,
    /// The IR node this value computes, when it computes one.
    pub node: Option<NodeId>,
    /// `Some(slot)`: one value per member of that bag, defined inside a
    /// [`Instr::ForMembers`] over it.
    pub member_of: Option<SlotId>,
    /// For a per-member value read outside its loop: its offset, in
    /// floats, into each member's `bag_lanes` of scratch. `None`: a
    /// register, live within its loop only.
    pub scratch: Option<usize>,
}

/// One step of the example's program.
#[derive(Clone, Debug, PartialEq)]
pub enum Instr {
    /// Define `out` (every lane computes its own part of it).
    Let { out: ValueId, expr: Expr },
    /// Run `body` once per member of `slot`'s bag, members in order, the
    /// whole warp together (the trip count is the same in every lane).
    /// Per-member values defined in `body` are stored to scratch at the
    /// member when they have a `scratch` offset.
    ForMembers { slot: SlotId, body: Vec<Instr> },
    /// `acc += x`, element by element (both of the same layout; `x` may be
    /// a per-member value of the enclosing loop).
    Accumulate { acc: ValueId, x: ValueId },
}

/// How one value is computed from earlier ones.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A constant, [`Layout::Uniform`].
    Const(f32),
    /// Zeros of the given layout (an accumulator's start).
    Zeros,
    /// The example's value of an index or negative slot ([`Layout::Row`]),
    /// a real or inverse-count slot ([`Layout::Uniform`]) or a noise slot
    /// ([`Layout::Spread`]).
    Input(SlotId),
    /// `row + by` in `domain`: off either end the flag goes false.
    Shift {
        index: ValueId,
        by: i64,
        domain: DomainId,
    },
    /// 1 if the index's flag is true, else 0.
    InRange(ValueId),
    /// A table's row: lane `j` reads elements `j, j + 32, …` (a scalar
    /// table: every lane reads the one value). `row: None` reads a
    /// global. An index whose flag is false reads zeros.
    Load {
        table: TableId,
        row: Option<ValueId>,
    },
    /// Inside [`Instr::ForMembers`]: the current member's row of `table`,
    /// scaled by its weight.
    MemberRow {
        table: TableId,
    },
    /// Inside [`Instr::ForMembers`]: the current member's weight.
    MemberWeight,
    /// The number of members of the bag, at least 1.
    BagLen(SlotId),
    /// Elementwise; a [`Layout::Uniform`] operand broadcasts.
    Unary(UnaryFn, ValueId),
    Binary(BinaryFn, ValueId, ValueId),
    /// A uniform scalar copied into every element of a spread vector.
    Broadcast {
        x: ValueId,
        len: usize,
    },
    /// The same value (a loop-invariant value copied per bag member).
    Copy(ValueId),
    /// Element `index` of a spread vector, read by every lane from the
    /// lane that holds it (`__shfl_sync` from lane `index % 32` of
    /// register `index / 32`): [`Layout::Uniform`].
    Extract {
        x: ValueId,
        index: usize,
    },
    /// Each lane's combination of its own elements: [`Layout::PerLane`].
    Partial(Partial),
    /// The warp's total of a per-lane value: `x = op(x, shfl_xor(x, d))`
    /// for `d` in [`BUTTERFLY`]; every lane ends with the same
    /// [`Layout::Uniform`] value.
    Butterfly {
        x: ValueId,
        op: Combine,
    },
    /// A spread vector of `len` elements assembled from pieces of others
    /// (concatenation, slices, padding); elements no piece covers are 0.
    /// A piece whose offsets differ modulo 32 moves elements across lanes
    /// (`__shfl_sync`).
    Move {
        len: usize,
        pieces: Vec<Piece>,
    },
}

/// A per-lane partial reduction. A [`Layout::Uniform`] operand counts as a
/// one-element vector (lane 0's) where both are, and broadcasts against a
/// spread one in a dot product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partial {
    /// Σ a·b over the lane's elements.
    Dot(ValueId, ValueId),
    /// Σ a over the lane's elements.
    Sum(ValueId),
    /// The largest of the lane's elements (−∞ for a lane with none).
    Max(ValueId),
}

/// How a butterfly combines two lanes' values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    Sum,
    Max,
}

/// `len` elements of `src` from `src_start`, placed at `dst_start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub src: ValueId,
    pub src_start: usize,
    pub dst_start: usize,
    pub len: usize,
}

/// What one example produces.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Add the loss to the loss total (a loss that is not finite stops the
    /// kernel at this example, its rows untouched), then apply `updates`
    /// in order.
    Step { loss: ValueId, updates: Vec<Update> },
    /// Write the score to the example's place in the score column.
    Predict { score: ValueId },
}

/// One gradient's update of the parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// A global's one row.
    Global {
        table: TableId,
        grad: ValueId,
        steps: Vec<RowStep>,
    },
    /// The row an index names, when its flag is true and no index in
    /// `unless` names the same row (that one applies the sum); the
    /// gradient is `grad` plus, in order, each `also` gradient whose index
    /// names the same row.
    Row {
        table: TableId,
        row: ValueId,
        grad: ValueId,
        also: Vec<(ValueId, ValueId)>,
        unless: Vec<ValueId>,
        steps: Vec<RowStep>,
    },
    /// Each member's row of `slot`'s bag, one after another (a row listed
    /// twice takes two steps), with the per-member gradient `grad`.
    BagRows {
        table: TableId,
        slot: SlotId,
        grad: ValueId,
        steps: Vec<RowStep>,
    },
}

impl Update {
    pub fn table(&self) -> TableId {
        match self {
            Update::Global { table, .. }
            | Update::Row { table, .. }
            | Update::BagRows { table, .. } => *table,
        }
    }

    pub fn steps(&self) -> &[RowStep] {
        match self {
            Update::Global { steps, .. }
            | Update::Row { steps, .. }
            | Update::BagRows { steps, .. } => steps,
        }
    }
}

/// One step of a row's update, in order. `v` is the row (spread over the
/// warp like any vector), `g` the gradient; the learning rate and Adam's
/// β₁, β₂ are run-time arguments (f64, rounded to f32 as the JIT does).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RowStep {
    /// The Poincaré metric: `g *= (1 − |v|²)² / 4`, `|v|²` by a butterfly.
    BallMetric,
    /// `v −= lr · g`.
    Sgd,
    /// `a += g²; v −= lr · g / (√a + ε)`, `a` the row's sum of squares.
    Adagrad,
    /// Count the row's step `t`; `m = β₁m + (1−β₁)g`, `s = β₂s + (1−β₂)g²`,
    /// `v −= lr · (m / (1−β₁ᵗ)) / (√(s / (1−β₂ᵗ)) + ε)`; the corrections
    /// in f64, rounded to f32.
    Adam,
    /// `v = max(v, 0)`.
    Nonneg,
    /// When `|v| ≥ max_norm` (a butterfly of `v²`), `v *= max_norm / |v|`.
    BallShrink { max_norm: f32 },
    /// Mark the row touched.
    Touch,
}

/// Added to Adagrad's and Adam's denominators, as the evaluator's trainer does.
pub const EPSILON: f32 = 1e-8;

/// What a plan cannot express, or a graph the plan does not understand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A feature of the graph no CUDA kernel runs yet. Every op of the IR
    /// plans today; this is the error for what a later op, or a limit of
    /// a back end walking the plan, leaves out.
    #[error("{model}: the CUDA backend cannot run {what} yet (node %{node})")]
    Unsupported {
        model: String,
        what: String,
        node: u32,
    },
    #[error("{model}: the model has no score to predict")]
    NoScore { model: String },
    #[error("{model}: internal error planning the CUDA kernel: {message}")]
    Internal { model: String, message: String },
}

/// The layout of a numeric value of `shape`: a scalar in every lane, a
/// vector or matrix spread over the warp.
pub fn layout_of(shape: Shape) -> Layout {
    match shape {
        Shape::Scalar => Layout::Uniform,
        other => Layout::Spread(other.len()),
    }
}

/// Plan `g` as a kernel of `kind`: for [`KernelKind::Step`] the gradient
/// graph (forward, loss, gradients, then each gradient's update in the
/// graph's order); for [`KernelKind::Predict`] the forward graph (the
/// score only). The plan returned has passed [`KernelPlan::verify`].
pub fn lower(g: &Graph, kind: KernelKind) -> Result<KernelPlan, PlanError> {
    let live = live_nodes(g, &kind);
    let mut lw = Lowerer {
        g,
        values: Vec::new(),
        of_node: vec![None; g.nodes.len()],
        bag_lanes: 0,
    };
    let mut body = Vec::new();
    for (i, &needed) in live.iter().enumerate() {
        if needed {
            lw.node(NodeId(i as u32), &mut body)?;
        }
    }
    let output = match kind {
        KernelKind::Predict => {
            let score = g.score.ok_or_else(|| PlanError::NoScore {
                model: g.name.clone(),
            })?;
            Output::Predict {
                score: lw.value(score)?,
            }
        }
        KernelKind::Step(options) => Output::Step {
            loss: lw.value(g.loss)?,
            updates: lw.updates(&options)?,
        },
    };
    let slots = g
        .slots
        .iter()
        .map(|s| match s.kind {
            SlotKind::Index(d) | SlotKind::Negative { domain: d, .. } => Ok(SlotInput::Index(d)),
            SlotKind::Real | SlotKind::InverseCount(_) => Ok(SlotInput::Real),
            SlotKind::Bag { domain, .. } => Ok(SlotInput::Bag(domain)),
            SlotKind::Noise(shape) => Ok(SlotInput::Noise { lanes: shape.len() }),
            // The grouped schedule's inputs are the CPU trainer's.
            SlotKind::Pooled { .. } | SlotKind::Dense(_) => Err(PlanError::Unsupported {
                model: g.name.clone(),
                what: format!("the pooled input `{}`", s.name),
                node: 0,
            }),
        })
        .collect::<Result<_, _>>()?;
    let tables = g
        .tables
        .iter()
        .map(|t| TablePlan {
            name: t.name.clone(),
            domain: t.domain,
            lanes: t.shape.len(),
            constraint: t.constraint,
            role: t.role,
        })
        .collect();
    let plan = KernelPlan {
        model: g.name.clone(),
        kind,
        slots,
        tables,
        domains: g.domains.iter().map(|d| d.name.clone()).collect(),
        values: lw.values,
        body,
        bag_lanes: lw.bag_lanes,
        output,
    };
    // Linear in the plan and far cheaper than compiling it: every plan a
    // renderer sees has been checked.
    plan.verify()?;
    Ok(plan)
}

/// Which nodes the kernel computes: what its outputs depend on (as the JIT).
fn live_nodes(g: &Graph, kind: &KernelKind) -> Vec<bool> {
    let mut live = vec![false; g.nodes.len()];
    let roots: Vec<NodeId> = match kind {
        KernelKind::Step(_) => {
            let mut r = vec![g.loss];
            for gr in &g.grads {
                r.push(gr.value);
                match gr.target {
                    GradTarget::Global(_) | GradTarget::Slot(_) => {}
                    GradTarget::Row(_, i) | GradTarget::BagRows(_, i) => r.push(i),
                }
            }
            r
        }
        KernelKind::Predict => g.score.into_iter().collect(),
    };
    for r in roots {
        if let Some(l) = live.get_mut(r.index()) {
            *l = true;
        }
    }
    for i in (0..g.nodes.len()).rev() {
        if live[i] {
            for o in g.nodes[i].op.operands() {
                if let Some(l) = live.get_mut(o.index()) {
                    *l = true;
                }
            }
        }
    }
    live
}

struct Lowerer<'g> {
    g: &'g Graph,
    values: Vec<ValueInfo>,
    /// The value each lowered node computes.
    of_node: Vec<Option<ValueId>>,
    bag_lanes: usize,
}

impl Lowerer<'_> {
    fn internal(&self, message: impl Into<String>) -> PlanError {
        PlanError::Internal {
            model: self.g.name.clone(),
            message: message.into(),
        }
    }

    fn value(&self, id: NodeId) -> Result<ValueId, PlanError> {
        self.of_node
            .get(id.index())
            .copied()
            .flatten()
            .ok_or_else(|| self.internal(format!("{id} is used before it is planned")))
    }

    fn layout(&self, v: ValueId) -> Layout {
        self.values[v.index()].layout
    }

    /// A new value; `member_of` when defined inside a loop over that bag.
    fn fresh(
        &mut self,
        layout: Layout,
        node: Option<NodeId>,
        member_of: Option<SlotId>,
    ) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(ValueInfo {
            layout,
            node,
            member_of,
            scratch: None,
        });
        id
    }

    fn emit(
        &mut self,
        out: &mut Vec<Instr>,
        layout: Layout,
        member_of: Option<SlotId>,
        expr: Expr,
    ) -> ValueId {
        let v = self.fresh(layout, None, member_of);
        out.push(Instr::Let { out: v, expr });
        v
    }

    /// Plan node `id`, appending its instructions to `out`.
    fn node(&mut self, id: NodeId, out: &mut Vec<Instr>) -> Result<(), PlanError> {
        let n = *self.g.node(id);
        let v = match (n.ty, n.op) {
            // A bag-valued number: one loop over the members, each member's
            // value kept in scratch for the loops and sums that read it.
            (
                Ty::Value {
                    shape,
                    bag: Some(slot),
                },
                op,
            ) if !matches!(op, Op::Slot(_)) => {
                let mut body = Vec::new();
                let v = self.op(id, op, shape, Some(slot), &mut body)?;
                let at = self.bag_lanes;
                self.bag_lanes += shape.len();
                let info = &mut self.values[v.index()];
                info.node = Some(id);
                info.scratch = Some(at);
                out.push(Instr::ForMembers { slot, body });
                v
            }
            (Ty::Value { shape, bag: None }, op) => {
                let v = self.op(id, op, shape, None, out)?;
                if self.values[v.index()].node.is_none() {
                    self.values[v.index()].node = Some(id);
                }
                v
            }
            (Ty::Index(d), Op::Slot(s)) => {
                let v = self.emit(out, Layout::Row(d), None, Expr::Input(s));
                self.values[v.index()].node = Some(id);
                v
            }
            (Ty::Index(d), Op::Shift(ix, by)) => {
                let index = self.value(ix)?;
                let v = self.emit(
                    out,
                    Layout::Row(d),
                    None,
                    Expr::Shift {
                        index,
                        by,
                        domain: d,
                    },
                );
                self.values[v.index()].node = Some(id);
                v
            }
            (Ty::Bag(slot, _), Op::Slot(s)) if s == slot => {
                let v = self.emit(out, Layout::Bag(slot), None, Expr::Input(s));
                self.values[v.index()].node = Some(id);
                v
            }
            (ty, op) => {
                return Err(self.internal(format!("{id}: {op:?} typed {ty:?}")));
            }
        };
        self.of_node[id.index()] = Some(v);
        Ok(())
    }

    /// The value of numeric node `id` (`op`, of `shape`), its instructions
    /// appended to `out`; `member` inside a loop over that bag.
    fn op(
        &mut self,
        id: NodeId,
        op: Op,
        shape: Shape,
        member: Option<SlotId>,
        out: &mut Vec<Instr>,
    ) -> Result<ValueId, PlanError> {
        let layout = layout_of(shape);
        let emit =
            |lw: &mut Self, out: &mut Vec<Instr>, layout, expr| lw.emit(out, layout, member, expr);
        Ok(match op {
            Op::Const(bits) => emit(self, out, layout, Expr::Const(f64::from_bits(bits) as f32)),
            Op::Slot(s) => match self.g.slots.get(s.index()).map(|s| &s.kind) {
                Some(SlotKind::Real | SlotKind::InverseCount(_) | SlotKind::Noise(_)) => {
                    emit(self, out, layout, Expr::Input(s))
                }
                _ => return Err(self.internal(format!("{id}: slot {s} read as a number"))),
            },
            Op::InRange(ix) => {
                let ix = self.value(ix)?;
                emit(self, out, Layout::Uniform, Expr::InRange(ix))
            }
            Op::Global(t) => emit(
                self,
                out,
                layout,
                Expr::Load {
                    table: t,
                    row: None,
                },
            ),
            Op::Gather(t, ix) => {
                let row = Some(self.value(ix)?);
                emit(self, out, layout, Expr::Load { table: t, row })
            }
            Op::GatherBag(t, _) => emit(self, out, layout, Expr::MemberRow { table: t }),
            Op::BagWeights(_) => emit(self, out, Layout::Uniform, Expr::MemberWeight),
            Op::BagLen(x) => {
                let slot = match self.g.ty(x) {
                    Ty::Bag(s, _) | Ty::Value { bag: Some(s), .. } => s,
                    _ => return Err(self.internal(format!("{id}: bag_len of a non-bag"))),
                };
                emit(self, out, Layout::Uniform, Expr::BagLen(slot))
            }
            Op::Unary(f, a) => {
                let a = self.value(a)?;
                emit(self, out, layout, Expr::Unary(f, a))
            }
            Op::Binary(f, a, b) => {
                let (a, b) = (self.value(a)?, self.value(b)?);
                emit(self, out, layout, Expr::Binary(f, a, b))
            }
            Op::Dot(a, b) => {
                let (a, b) = (self.value(a)?, self.value(b)?);
                let p = emit(
                    self,
                    out,
                    Layout::PerLane,
                    Expr::Partial(Partial::Dot(a, b)),
                );
                emit(
                    self,
                    out,
                    Layout::Uniform,
                    Expr::Butterfly {
                        x: p,
                        op: Combine::Sum,
                    },
                )
            }
            Op::SumLanes(a) => {
                let a = self.value(a)?;
                let p = emit(self, out, Layout::PerLane, Expr::Partial(Partial::Sum(a)));
                emit(
                    self,
                    out,
                    Layout::Uniform,
                    Expr::Butterfly {
                        x: p,
                        op: Combine::Sum,
                    },
                )
            }
            Op::SumBag(x) => {
                let slot = self
                    .g
                    .ty(x)
                    .bag()
                    .ok_or_else(|| self.internal(format!("{id}: sum_bag of a non-bag")))?;
                let x = self.value(x)?;
                let acc = emit(self, out, layout, Expr::Zeros);
                out.push(Instr::ForMembers {
                    slot,
                    body: vec![Instr::Accumulate { acc, x }],
                });
                acc
            }
            Op::Expand(a, _) => {
                let a = self.value(a)?;
                match (self.layout(a), layout) {
                    (Layout::Uniform, Layout::Spread(len)) => {
                        emit(self, out, layout, Expr::Broadcast { x: a, len })
                    }
                    // The same value; a per-member copy when it is to be
                    // one per member of a bag.
                    (from, to) if from == to && member.is_none() => a,
                    (from, to) if from == to => emit(self, out, layout, Expr::Copy(a)),
                    _ => return Err(self.internal(format!("{id}: expand to {shape}"))),
                }
            }
            Op::Softmax(a) => {
                let a = self.value(a)?;
                let p = emit(self, out, Layout::PerLane, Expr::Partial(Partial::Max(a)));
                let max = emit(
                    self,
                    out,
                    Layout::Uniform,
                    Expr::Butterfly {
                        x: p,
                        op: Combine::Max,
                    },
                );
                let shifted = emit(self, out, layout, Expr::Binary(BinaryFn::Sub, a, max));
                let e = emit(self, out, layout, Expr::Unary(UnaryFn::Exp, shifted));
                let p = emit(self, out, Layout::PerLane, Expr::Partial(Partial::Sum(e)));
                let total = emit(
                    self,
                    out,
                    Layout::Uniform,
                    Expr::Butterfly {
                        x: p,
                        op: Combine::Sum,
                    },
                );
                emit(self, out, layout, Expr::Binary(BinaryFn::Div, e, total))
            }
            Op::Concat(a, b) => {
                let na = self.g.ty(a).shape().map_or(1, Shape::len);
                let nb = self.g.ty(b).shape().map_or(1, Shape::len);
                let (a, b) = (self.value(a)?, self.value(b)?);
                let pieces = vec![
                    Piece {
                        src: a,
                        src_start: 0,
                        dst_start: 0,
                        len: na,
                    },
                    Piece {
                        src: b,
                        src_start: 0,
                        dst_start: na,
                        len: nb,
                    },
                ];
                emit(
                    self,
                    out,
                    layout,
                    Expr::Move {
                        len: shape.len(),
                        pieces,
                    },
                )
            }
            Op::Slice(a, start, len) => {
                let a = self.value(a)?;
                let pieces = vec![Piece {
                    src: a,
                    src_start: start as usize,
                    dst_start: 0,
                    len: len as usize,
                }];
                emit(
                    self,
                    out,
                    layout,
                    Expr::Move {
                        len: shape.len(),
                        pieces,
                    },
                )
            }
            Op::Pad(a, start, _) => {
                let na = self.g.ty(a).shape().map_or(1, Shape::len);
                let a = self.value(a)?;
                let pieces = vec![Piece {
                    src: a,
                    src_start: 0,
                    dst_start: start as usize,
                    len: na,
                }];
                emit(
                    self,
                    out,
                    layout,
                    Expr::Move {
                        len: shape.len(),
                        pieces,
                    },
                )
            }
            // Row k of a matrix, `cols` wide, is a slice of its elements;
            // when `cols` is a multiple of 32 the slice is already on the
            // lanes of the vector it meets, and the move costs nothing.
            Op::MatVec(m, v) => {
                let (rows, cols) = self.mat_dims(id, m)?;
                let (m, v) = (self.value(m)?, self.value(v)?);
                let mut pieces = Vec::with_capacity(rows);
                for k in 0..rows {
                    let row = self.slice(out, member, m, k * cols, cols);
                    let p = emit(
                        self,
                        out,
                        Layout::PerLane,
                        Expr::Partial(Partial::Dot(row, v)),
                    );
                    let d = emit(
                        self,
                        out,
                        Layout::Uniform,
                        Expr::Butterfly {
                            x: p,
                            op: Combine::Sum,
                        },
                    );
                    pieces.push(Piece {
                        src: d,
                        src_start: 0,
                        dst_start: k,
                        len: 1,
                    });
                }
                emit(self, out, layout, Expr::Move { len: rows, pieces })
            }
            Op::MatTVec(m, v) => {
                let (rows, cols) = self.mat_dims(id, m)?;
                let (m, v) = (self.value(m)?, self.value(v)?);
                // Σ_k row_k · v_k, rows in order from zero, as the JIT sums.
                let mut acc = emit(self, out, layout, Expr::Zeros);
                for k in 0..rows {
                    let row = self.slice(out, member, m, k * cols, cols);
                    let vk = emit(self, out, Layout::Uniform, Expr::Extract { x: v, index: k });
                    let p = emit(self, out, layout, Expr::Binary(BinaryFn::Mul, row, vk));
                    acc = emit(self, out, layout, Expr::Binary(BinaryFn::Add, acc, p));
                }
                acc
            }
            Op::Outer(a, b) => {
                let rows = self.g.ty(a).shape().map_or(1, Shape::len);
                let cols = self.g.ty(b).shape().map_or(1, Shape::len);
                let (a, b) = (self.value(a)?, self.value(b)?);
                let mut pieces = Vec::with_capacity(rows);
                for k in 0..rows {
                    let ak = emit(self, out, Layout::Uniform, Expr::Extract { x: a, index: k });
                    let row = emit(
                        self,
                        out,
                        Layout::Spread(cols),
                        Expr::Binary(BinaryFn::Mul, b, ak),
                    );
                    pieces.push(Piece {
                        src: row,
                        src_start: 0,
                        dst_start: k * cols,
                        len: cols,
                    });
                }
                emit(
                    self,
                    out,
                    layout,
                    Expr::Move {
                        len: rows * cols,
                        pieces,
                    },
                )
            }
            Op::Shift(..) => return Err(self.internal(format!("{id}: a shift typed as a number"))),
        })
    }

    fn mat_dims(&self, id: NodeId, m: NodeId) -> Result<(usize, usize), PlanError> {
        match self.g.ty(m).shape() {
            Some(Shape::Mat(r, c)) => Ok((r, c)),
            _ => Err(self.internal(format!("{id}: {m} is not a matrix"))),
        }
    }

    /// Elements `start..start + len` of `x` as a vector of their own.
    fn slice(
        &mut self,
        out: &mut Vec<Instr>,
        member: Option<SlotId>,
        x: ValueId,
        start: usize,
        len: usize,
    ) -> ValueId {
        let pieces = vec![Piece {
            src: x,
            src_start: start,
            dst_start: 0,
            len,
        }];
        self.emit(out, Layout::Spread(len), member, Expr::Move { len, pieces })
    }

    /// The row steps of one update of table `t`, in order.
    fn steps(&self, options: &StepOptions, t: TableId) -> Result<Vec<RowStep>, PlanError> {
        let table = self
            .g
            .tables
            .get(t.index())
            .ok_or_else(|| self.internal(format!("no table {t}")))?;
        let ball = table.constraint == Constraint::Ball;
        let mut steps = Vec::new();
        if ball {
            steps.push(RowStep::BallMetric);
        }
        steps.push(match options.optimizer {
            Optimizer::Sgd => RowStep::Sgd,
            Optimizer::Adagrad => RowStep::Adagrad,
            Optimizer::Adam { .. } => RowStep::Adam,
        });
        if table.constraint == Constraint::Nonneg {
            steps.push(RowStep::Nonneg);
        }
        if ball {
            steps.push(RowStep::BallShrink {
                max_norm: options.max_ball_norm as f32,
            });
        }
        steps.push(RowStep::Touch);
        Ok(steps)
    }

    /// Every gradient's update, in the graph's order. Row gradients of one
    /// table are grouped so that index nodes naming the same row sum their
    /// gradients into one update, applied by the first of them.
    fn updates(&self, options: &StepOptions) -> Result<Vec<Update>, PlanError> {
        let mut groups: BTreeMap<TableId, Vec<(NodeId, NodeId)>> = BTreeMap::new();
        for gr in &self.g.grads {
            if let GradTarget::Row(t, ix) = gr.target {
                groups.entry(t).or_default().push((ix, gr.value));
            }
        }
        let mut updates = Vec::new();
        for gr in &self.g.grads {
            let grad = self.value(gr.value)?;
            updates.push(match gr.target {
                GradTarget::Slot(_) => {
                    return Err(self.internal("a pooled input's gradient reached the CUDA plan"))
                }
                GradTarget::Global(table) => Update::Global {
                    table,
                    grad,
                    steps: self.steps(options, table)?,
                },
                GradTarget::Row(table, ix) => {
                    let group = groups.get(&table).map_or(&[][..], Vec::as_slice);
                    let me = group.iter().position(|&(i, _)| i == ix).unwrap_or(0);
                    let mut also = Vec::new();
                    let mut unless = Vec::new();
                    for (pos, &(other, value)) in group.iter().enumerate() {
                        if other == ix {
                            continue;
                        }
                        if pos < me {
                            unless.push(self.value(other)?);
                        } else {
                            also.push((self.value(other)?, self.value(value)?));
                        }
                    }
                    Update::Row {
                        table,
                        row: self.value(ix)?,
                        grad,
                        also,
                        unless,
                        steps: self.steps(options, table)?,
                    }
                }
                GradTarget::BagRows(table, bag) => {
                    let Ty::Bag(slot, _) = self.g.ty(bag) else {
                        return Err(self.internal("a bag gradient without a bag"));
                    };
                    Update::BagRows {
                        table,
                        slot,
                        grad,
                        steps: self.steps(options, table)?,
                    }
                }
            });
        }
        Ok(updates)
    }
}

/// The plan as text, one value per line in A-normal form (as `recc ir`
/// prints the graph): `v3 = butterfly.sum v2 : uniform  # %7`. For
/// reading a plan and for comments in generated code; nothing parses it.
impl fmt::Display for KernelPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            KernelKind::Step(o) => format!("step, {}", o.optimizer),
            KernelKind::Predict => "predict".to_string(),
        };
        writeln!(f, "plan {} ({kind}), {WARP} lanes per example", self.model)?;
        for (s, input) in self.slots.iter().enumerate() {
            let what = match input {
                SlotInput::Index(d) => format!("index of {}", self.domain_name(*d)),
                SlotInput::Real => "real".to_string(),
                SlotInput::Bag(d) => format!("bag of {}", self.domain_name(*d)),
                SlotInput::Noise { lanes } => format!("noise, {lanes} lanes"),
            };
            writeln!(f, "slot s{s}: {what}")?;
        }
        for (t, table) in self.tables.iter().enumerate() {
            let rows = table.domain.map_or("1 row".to_string(), |d| {
                format!("rows of {}", self.domain_name(d))
            });
            let constraint = match table.constraint {
                Constraint::None => "",
                Constraint::Ball => ", on ball",
                Constraint::Nonneg => ", nonneg",
            };
            writeln!(
                f,
                "table t{t} {}: {rows} × {} lanes{constraint}",
                table.name, table.lanes
            )?;
        }
        if self.bag_lanes > 0 {
            writeln!(f, "scratch: {} floats per bag member", self.bag_lanes)?;
        }
        self.write_body(f, &self.body, 0)?;
        match &self.output {
            Output::Predict { score } => writeln!(f, "score {score}"),
            Output::Step { loss, updates } => {
                writeln!(f, "loss {loss}")?;
                for u in updates {
                    let steps: Vec<String> = u.steps().iter().map(row_step_text).collect();
                    let steps = steps.join(", ");
                    match u {
                        Update::Global { table, grad, .. } => {
                            writeln!(f, "update t{} by {grad}: {steps}", table.0)?
                        }
                        Update::Row {
                            table,
                            row,
                            grad,
                            also,
                            unless,
                            ..
                        } => {
                            write!(f, "update t{}[{row}] by {grad}", table.0)?;
                            for (r, g) in also {
                                write!(f, " + {g} if {r} = {row}")?;
                            }
                            for r in unless {
                                write!(f, ", unless {r} = {row}")?;
                            }
                            writeln!(f, ": {steps}")?
                        }
                        Update::BagRows {
                            table, slot, grad, ..
                        } => writeln!(
                            f,
                            "update t{}[each member of s{}] by {grad}: {steps}",
                            table.0, slot.0
                        )?,
                    }
                }
                Ok(())
            }
        }
    }
}

fn row_step_text(s: &RowStep) -> String {
    match s {
        RowStep::BallMetric => "ball metric".into(),
        RowStep::Sgd => "sgd".into(),
        RowStep::Adagrad => "adagrad".into(),
        RowStep::Adam => "adam".into(),
        RowStep::Nonneg => "nonneg".into(),
        RowStep::BallShrink { max_norm } => format!("ball shrink to {max_norm}"),
        RowStep::Touch => "touch".into(),
    }
}

impl KernelPlan {
    fn domain_name(&self, d: DomainId) -> &str {
        self.domains.get(d.index()).map_or("?", String::as_str)
    }

    fn write_body(&self, f: &mut fmt::Formatter<'_>, body: &[Instr], depth: usize) -> fmt::Result {
        let indent = "  ".repeat(depth);
        for instr in body {
            match instr {
                Instr::Let { out, expr } => {
                    let info = self.values.get(out.index());
                    let layout = info.map_or("?".to_string(), |i| match i.layout {
                        Layout::Uniform => "uniform".into(),
                        Layout::Spread(n) => format!("spread({n})"),
                        Layout::PerLane => "per-lane".into(),
                        Layout::Row(d) => format!("row of {}", self.domain_name(d)),
                        Layout::Bag(s) => format!("bag s{}", s.0),
                    });
                    let kept = info
                        .and_then(|i| i.scratch)
                        .map_or(String::new(), |at| format!(", scratch +{at}"));
                    let node = info
                        .and_then(|i| i.node)
                        .map_or(String::new(), |n| format!("  # {n}"));
                    writeln!(
                        f,
                        "{indent}{out} = {} : {layout}{kept}{node}",
                        expr_text(expr)
                    )?;
                }
                Instr::ForMembers { slot, body } => {
                    writeln!(f, "{indent}for each member of s{} {{", slot.0)?;
                    self.write_body(f, body, depth + 1)?;
                    writeln!(f, "{indent}}}")?;
                }
                Instr::Accumulate { acc, x } => writeln!(f, "{indent}{acc} += {x}")?,
            }
        }
        Ok(())
    }
}

fn expr_text(e: &Expr) -> String {
    match e {
        Expr::Const(c) => format!("const {c}"),
        Expr::Zeros => "zeros".into(),
        Expr::Input(s) => format!("input s{}", s.0),
        Expr::Shift { index, by, .. } => format!("shift {index}, {by:+}"),
        Expr::InRange(x) => format!("in_range {x}"),
        Expr::Load { table, row: None } => format!("load t{}", table.0),
        Expr::Load {
            table,
            row: Some(r),
        } => format!("load t{}[{r}]", table.0),
        Expr::MemberRow { table } => format!("member_row t{}", table.0),
        Expr::MemberWeight => "member_weight".into(),
        Expr::BagLen(s) => format!("bag_len s{}", s.0),
        Expr::Unary(u, x) => format!("{} {x}", u.name()),
        Expr::Binary(b, x, y) => format!("{} {x}, {y}", b.name()),
        Expr::Broadcast { x, len } => format!("broadcast {x} to {len}"),
        Expr::Copy(x) => format!("copy {x}"),
        Expr::Extract { x, index } => format!("extract {x}[{index}]"),
        Expr::Partial(Partial::Dot(a, b)) => format!("partial.dot {a}, {b}"),
        Expr::Partial(Partial::Sum(a)) => format!("partial.sum {a}"),
        Expr::Partial(Partial::Max(a)) => format!("partial.max {a}"),
        Expr::Butterfly { x, op } => match op {
            Combine::Sum => format!("butterfly.sum {x}"),
            Combine::Max => format!("butterfly.max {x}"),
        },
        Expr::Move { len, pieces } => {
            let parts: Vec<String> = pieces
                .iter()
                .map(|p| {
                    format!(
                        "{}[{}..{}] at {}",
                        p.src,
                        p.src_start,
                        p.src_start + p.len,
                        p.dst_start
                    )
                })
                .collect();
            format!("move {len}: {}", parts.join(", "))
        }
    }
}

impl KernelPlan {
    /// Check the invariants a renderer and the emulator rely on: every
    /// value defined once before it is read; per-member values defined in a
    /// loop over their bag and read in such a loop (from scratch, unless
    /// defined in the same loop); operand layouts each op accepts; pieces,
    /// element reads and scratch regions in bounds; every update's row,
    /// gradient and table consistent. [`lower`] checks every plan it makes.
    pub fn verify(&self) -> Result<(), PlanError> {
        let mut v = Verifier {
            plan: self,
            defined: vec![false; self.values.len()],
            in_loop: Vec::new(),
        };
        v.body(&self.body, None)?;
        for (i, info) in self.values.iter().enumerate() {
            if let Some(at) = info.scratch {
                let n = info.layout.elements().unwrap_or(0);
                if info.member_of.is_none() || at + n > self.bag_lanes || n == 0 {
                    return Err(v.err(format!("v{i}: scratch +{at} of {n} floats")));
                }
            }
        }
        match &self.output {
            Output::Predict { score } => v.uniform(*score),
            Output::Step { loss, updates } => {
                v.uniform(*loss)?;
                for u in updates {
                    v.update(u)?;
                }
                Ok(())
            }
        }
    }
}

struct Verifier<'p> {
    plan: &'p KernelPlan,
    defined: Vec<bool>,
    /// Values defined in the loop being walked.
    in_loop: Vec<ValueId>,
}

impl Verifier<'_> {
    fn err(&self, message: String) -> PlanError {
        PlanError::Internal {
            model: self.plan.model.clone(),
            message: format!("invalid plan: {message}"),
        }
    }

    fn info(&self, v: ValueId) -> Result<ValueInfo, PlanError> {
        self.plan
            .values
            .get(v.index())
            .copied()
            .ok_or_else(|| self.err(format!("{v} does not exist")))
    }

    /// `v` readable here: defined, and a per-member value only inside a
    /// loop over its bag.
    fn read(&self, v: ValueId, member: Option<SlotId>) -> Result<Layout, PlanError> {
        let info = self.info(v)?;
        if !self.defined[v.index()] {
            return Err(self.err(format!("{v} is read before it is defined")));
        }
        if let Some(s) = info.member_of {
            if member != Some(s) {
                return Err(self.err(format!(
                    "{v}, one per member of s{}, read outside its loop",
                    s.0
                )));
            }
            if info.scratch.is_none() && !self.in_loop.contains(&v) {
                return Err(self.err(format!(
                    "{v} is read in another loop but not kept in scratch"
                )));
            }
        }
        Ok(info.layout)
    }

    fn numeric(&self, v: ValueId, member: Option<SlotId>) -> Result<usize, PlanError> {
        self.read(v, member)?
            .elements()
            .ok_or_else(|| self.err(format!("{v} is not a number")))
    }

    fn uniform(&self, v: ValueId) -> Result<(), PlanError> {
        match self.read(v, None)? {
            Layout::Uniform => Ok(()),
            other => Err(self.err(format!("{v} is {other:?}, not uniform"))),
        }
    }

    fn table(&self, t: TableId) -> Result<&TablePlan, PlanError> {
        self.plan
            .tables
            .get(t.index())
            .ok_or_else(|| self.err(format!("no table t{}", t.0)))
    }

    fn row_of(&self, v: ValueId, t: TableId) -> Result<(), PlanError> {
        let domain = self.table(t)?.domain;
        match self.read(v, None)? {
            Layout::Row(d) if Some(d) == domain => Ok(()),
            other => Err(self.err(format!("{v} ({other:?}) names no row of t{}", t.0))),
        }
    }

    fn body(&mut self, body: &[Instr], member: Option<SlotId>) -> Result<(), PlanError> {
        for instr in body {
            match instr {
                Instr::Let { out, expr } => {
                    let info = self.info(*out)?;
                    if self.defined[out.index()] {
                        return Err(self.err(format!("{out} is defined twice")));
                    }
                    if info.member_of != member {
                        return Err(self.err(format!("{out} is defined in the wrong loop")));
                    }
                    self.expr(*out, info.layout, expr, member)?;
                    self.defined[out.index()] = true;
                    if member.is_some() {
                        self.in_loop.push(*out);
                    }
                }
                Instr::ForMembers { slot, body } => {
                    if member.is_some() {
                        return Err(self.err("a loop inside a loop".into()));
                    }
                    if !matches!(self.plan.slots.get(slot.index()), Some(SlotInput::Bag(_))) {
                        return Err(self.err(format!("a loop over s{}, not a bag", slot.0)));
                    }
                    self.in_loop.clear();
                    self.body(body, Some(*slot))?;
                    self.in_loop.clear();
                }
                Instr::Accumulate { acc, x } => {
                    let a = self.read(*acc, None)?;
                    let lx = self.read(*x, member)?;
                    if a.elements().is_none() || (lx != a && lx != Layout::Uniform) {
                        return Err(self.err(format!("{acc} ({a:?}) += {x} ({lx:?})")));
                    }
                }
            }
        }
        Ok(())
    }

    fn expr(
        &self,
        out: ValueId,
        layout: Layout,
        expr: &Expr,
        member: Option<SlotId>,
    ) -> Result<(), PlanError> {
        let bad = |what: &str| Err(self.err(format!("{out} = {}: {what}", expr_text(expr))));
        let elementwise = |x: ValueId| -> Result<bool, PlanError> {
            let lx = self.read(x, member)?;
            Ok(lx == layout || (lx == Layout::Uniform && layout.elements().is_some()))
        };
        match expr {
            Expr::Const(_) | Expr::MemberWeight | Expr::BagLen(_) | Expr::InRange(_)
                if layout != Layout::Uniform =>
            {
                return bad("not uniform");
            }
            Expr::Const(_) => {}
            Expr::Zeros => {
                if layout.elements().is_none() {
                    return bad("zeros of a non-number");
                }
            }
            Expr::Input(s) => {
                let ok = match (self.plan.slots.get(s.index()), layout) {
                    (Some(SlotInput::Index(d)), Layout::Row(e)) => d == &e,
                    (Some(SlotInput::Real), Layout::Uniform) => true,
                    (Some(SlotInput::Noise { lanes }), l) => l.elements() == Some(*lanes),
                    (Some(SlotInput::Bag(_)), Layout::Bag(t)) => t == *s,
                    _ => false,
                };
                if !ok {
                    return bad("the slot does not give this layout");
                }
            }
            Expr::Shift { index, domain, .. } => {
                if self.read(*index, member)? != Layout::Row(*domain)
                    || layout != Layout::Row(*domain)
                {
                    return bad("a shift of another domain");
                }
            }
            Expr::InRange(ix) => {
                if !matches!(self.read(*ix, member)?, Layout::Row(_)) {
                    return bad("not an index");
                }
            }
            Expr::Load { table, row } => {
                let lanes = self.table(*table)?.lanes;
                if layout.elements() != Some(lanes) {
                    return bad("not the table's row width");
                }
                match row {
                    Some(r) => self.row_of(*r, *table)?,
                    None if self.table(*table)?.domain.is_some() => {
                        return bad("a table read as a global")
                    }
                    None => {}
                }
            }
            Expr::MemberRow { table } => {
                let t = self.table(*table)?;
                let bag_domain = member.and_then(|s| match self.plan.slots.get(s.index()) {
                    Some(SlotInput::Bag(d)) => Some(*d),
                    _ => None,
                });
                if layout.elements() != Some(t.lanes)
                    || bag_domain.is_none()
                    || t.domain != bag_domain
                {
                    return bad("not a member's row of this table");
                }
            }
            Expr::MemberWeight => {
                if member.is_none() {
                    return bad("outside a loop");
                }
            }
            Expr::BagLen(s) => {
                if !matches!(self.plan.slots.get(s.index()), Some(SlotInput::Bag(_))) {
                    return bad("not a bag");
                }
            }
            Expr::Unary(_, x) | Expr::Copy(x) => {
                if self.read(*x, member)? != layout || layout.elements().is_none() {
                    return bad("the operand's layout differs");
                }
            }
            Expr::Binary(_, x, y) => {
                if !(elementwise(*x)? && elementwise(*y)?) {
                    return bad("operands of other layouts");
                }
            }
            Expr::Broadcast { x, len } => {
                if self.read(*x, member)? != Layout::Uniform || layout != Layout::Spread(*len) {
                    return bad("not a scalar to a vector");
                }
            }
            Expr::Extract { x, index } => {
                if *index >= self.numeric(*x, member)? || layout != Layout::Uniform {
                    return bad("out of range");
                }
            }
            Expr::Partial(p) => {
                if layout != Layout::PerLane {
                    return bad("a partial is per lane");
                }
                match p {
                    Partial::Dot(a, b) => {
                        self.numeric(*a, member)?;
                        self.numeric(*b, member)?;
                    }
                    Partial::Sum(a) | Partial::Max(a) => {
                        self.numeric(*a, member)?;
                    }
                }
            }
            Expr::Butterfly { x, .. } => {
                if self.read(*x, member)? != Layout::PerLane || layout != Layout::Uniform {
                    return bad("a butterfly takes a partial to a uniform value");
                }
            }
            Expr::Move { len, pieces } => {
                if layout != Layout::Spread(*len) {
                    return bad("not a vector of its length");
                }
                for p in pieces {
                    let n = self.numeric(p.src, member)?;
                    if p.src_start + p.len > n || p.dst_start + p.len > *len {
                        return bad("a piece out of range");
                    }
                }
            }
        }
        Ok(())
    }

    fn update(&self, u: &Update) -> Result<(), PlanError> {
        let t = u.table();
        let lanes = self.table(t)?.lanes;
        let grad_ok = |g: ValueId, member: Option<SlotId>| -> Result<(), PlanError> {
            let n = self.numeric(g, member)?;
            if n == lanes || self.info(g)?.layout == Layout::Uniform {
                Ok(())
            } else {
                Err(self.err(format!("{g} has {n} elements for t{}'s {lanes}", t.0)))
            }
        };
        match u {
            Update::Global { grad, .. } => {
                if self.table(t)?.domain.is_some() {
                    return Err(self.err(format!("a global update of table t{}", t.0)));
                }
                grad_ok(*grad, None)
            }
            Update::Row {
                row,
                grad,
                also,
                unless,
                ..
            } => {
                self.row_of(*row, t)?;
                grad_ok(*grad, None)?;
                for (r, g) in also {
                    self.row_of(*r, t)?;
                    grad_ok(*g, None)?;
                }
                for r in unless {
                    self.row_of(*r, t)?;
                }
                Ok(())
            }
            Update::BagRows { slot, grad, .. } => {
                let info = self.info(*grad)?;
                let domain = match self.plan.slots.get(slot.index()) {
                    Some(SlotInput::Bag(d)) => Some(*d),
                    _ => None,
                };
                if info.member_of != Some(*slot)
                    || info.scratch.is_none()
                    || domain != self.table(t)?.domain
                {
                    return Err(self.err(format!("{grad} is no per-member gradient of t{}", t.0)));
                }
                // Read member by member from scratch, as in a loop.
                if !self.defined[grad.index()] {
                    return Err(self.err(format!("{grad} is never defined")));
                }
                grad_ok(*grad, Some(*slot))
            }
        }
    }
}
