//! A row's statistics from one term graph, without the reference
//! evaluator's per-call costs.
//!
//! The solvers run every term graph ([`recc_compiler::solve`]) once per
//! (row, example) pair, millions of times a sweep, and want from each run
//! only the loss, the score and the gradient of one table row. The reference
//! evaluator ([`recc_compiler::interp::evaluate`]) answers far more: a fresh
//! vector for every node, a clone of every bag, every table's gradients in
//! a map. A [`Program`] is a graph prepared once for one table: the nodes
//! its outputs read, in order, each with a buffer in a [`Scratch`] that
//! keeps its memory from one run to the next, bags read in place from the
//! example, and the gradients of the one row asked for summed into the
//! caller's slice.
//!
//! Every node computes what the evaluator computes, in the same order of
//! floating-point operations, so a program's statistics equal the
//! evaluator's bit for bit (tested against it for every model the solvers
//! take); the evaluator stays the reference. The solvers check every
//! example against the graph with the evaluator before any program runs
//! (their index of which rows each example reads), so a program does not
//! check slots again.

use recc_compiler::interp::{EvalError, Example, Params, SlotValue};
use recc_compiler::ir::{GradTarget, Graph, NodeId, Op, TableId, Ty};
use recc_compiler::types::{BinaryFn, Shape};

/// A graph prepared for statistics of one table's rows.
pub struct Program<'g> {
    graph: &'g Graph,
    /// The nodes the outputs read, in graph order (operands first).
    order: Vec<usize>,
    /// Lanes of each node's value (1 for a scalar), as the graph types it.
    lanes: Vec<usize>,
    /// The gradients into the chosen table.
    grads: Vec<(GradTarget, NodeId)>,
    /// The example slot of the bag whose members' rows get gradients, when
    /// there is one such bag.
    focus_slot: Option<usize>,
    /// Nodes computed for the focus members only: per-member values of that
    /// bag that only the gradient reads.
    focused: Vec<bool>,
    /// Values that do not read the solved table, kept per example.
    frozen: Option<Frozen>,
    /// The nodes that say which rows the gradients go to, in order.
    index_order: Vec<usize>,
}

/// The values of a program that stay fixed while one table's rows are
/// solved (every other table is), so that an example read by many of the
/// table's rows (a factorization machine's features) computes them once
/// per sweep of the table instead of once per row.
struct Frozen {
    /// (node, offset in an example's frozen values, lanes).
    nodes: Vec<(usize, usize, usize)>,
    /// Numbers per example.
    lanes: usize,
    /// The nodes the frozen values read, in order.
    fill_order: Vec<usize>,
    /// The nodes a run computes given the frozen values, in order.
    order: Vec<usize>,
}

/// One node's value during a run; its numbers live in [`Scratch`].
#[derive(Clone, Copy, Debug)]
enum Value {
    /// A member of a domain, or `None` when a shift fell off its end.
    Index(Option<usize>),
    /// The bag in this example slot.
    Bag(usize),
    /// Numbers with `lanes` per member; `members` is `Some(n)` for a bag.
    Tensor {
        members: Option<usize>,
        lanes: usize,
    },
}

/// A program's working memory, reused from run to run (one per thread).
pub struct Scratch {
    values: Vec<Value>,
    data: Vec<Vec<f64>>,
    /// The members of the focus bag whose row is the one asked for.
    focus: Vec<usize>,
    /// The focus members of a focused node's full-bag operands.
    compact: [Vec<f64>; 2],
}

/// What one run gives besides the gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub loss: f64,
    pub score: Option<f64>,
    /// Whether any gradient reached the row asked for (the evaluator's
    /// gradients would hold a key for it).
    pub touched: bool,
}

/// A numeric operand: its numbers and how they are laid out.
#[derive(Clone, Copy)]
struct Tensor<'a> {
    members: Option<usize>,
    lanes: usize,
    data: &'a [f64],
}

impl<'a> Tensor<'a> {
    fn count(&self) -> usize {
        self.members.unwrap_or(1)
    }

    /// Lanes of member `m`, repeating a non-bag value for every member.
    fn member(&self, m: usize) -> &'a [f64] {
        let m = if self.members.is_some() { m } else { 0 };
        &self.data[m * self.lanes..(m + 1) * self.lanes]
    }
}

fn internal(node: usize, message: &str) -> EvalError {
    EvalError::Internal(format!("%{node}: {message}"))
}

impl<'g> Program<'g> {
    /// Prepare `graph` to give its loss, its score (when `with_score`) and
    /// the gradient of one row of `table` (when given).
    pub fn new(graph: &'g Graph, table: Option<TableId>, with_score: bool) -> Program<'g> {
        let grads: Vec<(GradTarget, NodeId)> = graph
            .grads
            .iter()
            .filter(|gr| {
                let t = match gr.target {
                    GradTarget::Global(t) | GradTarget::Row(t, _) | GradTarget::BagRows(t, _) => {
                        Some(t)
                    }
                    GradTarget::Slot(_) => None,
                };
                t.is_some() && t == table
            })
            .map(|gr| (gr.target, gr.value))
            .collect();
        let mut needed = vec![false; graph.nodes.len()];
        let mut mark = |id: NodeId| needed[id.index()] = true;
        mark(graph.loss);
        if with_score {
            if let Some(s) = graph.score {
                mark(s);
            }
        }
        for &(target, value) in &grads {
            mark(value);
            match target {
                GradTarget::Global(_) | GradTarget::Slot(_) => {}
                GradTarget::Row(_, n) | GradTarget::BagRows(_, n) => mark(n),
            }
        }
        // Operands precede their users, so one backward pass closes the set.
        for i in (0..graph.nodes.len()).rev() {
            if needed[i] {
                for o in graph.nodes[i].op.operands() {
                    needed[o.index()] = true;
                }
            }
        }
        let order: Vec<usize> = (0..graph.nodes.len()).filter(|&i| needed[i]).collect();
        let lanes = graph
            .nodes
            .iter()
            .map(|n| n.ty.shape().map_or(1, Shape::len))
            .collect();
        let (focus_slot, focused) = focus(graph, with_score, &grads, &order);
        let mut index_needed = vec![false; graph.nodes.len()];
        for &(target, _) in &grads {
            if let GradTarget::Row(_, x) | GradTarget::BagRows(_, x) = target {
                index_needed[x.index()] = true;
            }
        }
        for i in (0..graph.nodes.len()).rev() {
            if index_needed[i] {
                for o in graph.nodes[i].op.operands() {
                    index_needed[o.index()] = true;
                }
            }
        }
        let index_order = (0..graph.nodes.len())
            .filter(|&i| index_needed[i])
            .collect();
        Program {
            graph,
            order,
            lanes,
            grads,
            focus_slot,
            focused,
            frozen: None,
            index_order,
        }
    }

    /// The rows of the program's table that a run on `example` gives a
    /// gradient to (the evaluator's gradient keys for the table), appended
    /// to `rows`, perhaps more than once; only the nodes that say which
    /// rows are computed.
    pub fn rows(
        &self,
        params: &Params,
        example: &Example,
        scratch: &mut Scratch,
        rows: &mut Vec<usize>,
    ) -> Result<(), EvalError> {
        self.eval(params, example, &self.index_order, scratch)?;
        for &(target, _) in &self.grads {
            match target {
                GradTarget::Global(_) => rows.push(0),
                GradTarget::Slot(_) => {}
                GradTarget::Row(_, ix) => {
                    if let Value::Index(Some(r)) = scratch.values[ix.index()] {
                        rows.push(r);
                    }
                }
                GradTarget::BagRows(_, bag) => {
                    if let Value::Bag(slot) = scratch.values[bag.index()] {
                        rows.extend(bag_members(example, slot, bag.index())?.iter().map(|m| m.0));
                    }
                }
            }
        }
        Ok(())
    }

    /// The program with the values that do not read `table` computed by
    /// [`Program::fill`] instead of by every run: those that something
    /// reading `table` uses, or that are outputs, other than plain reads of
    /// an example or a table (as cheap to read again as to keep).
    pub fn freezing(mut self, table: TableId) -> Program<'g> {
        let g = self.graph;
        let n = g.nodes.len();
        let mut reads = vec![false; n];
        let mut outputs = vec![false; n];
        outputs[g.loss.index()] = true;
        if let Some(s) = g.score {
            outputs[s.index()] = true;
        }
        for &(target, value) in &self.grads {
            outputs[value.index()] = true;
            match target {
                GradTarget::Global(_) | GradTarget::Slot(_) => {}
                GradTarget::Row(_, x) | GradTarget::BagRows(_, x) => outputs[x.index()] = true,
            }
        }
        let mut live = vec![false; n];
        for &i in &self.order {
            live[i] = true;
            let op = g.nodes[i].op;
            reads[i] = matches!(op, Op::Global(t) | Op::Gather(t, _) | Op::GatherBag(t, _) if t == table)
                || op.operands().iter().any(|o| reads[o.index()]);
        }
        let mut read_by_solved = vec![false; n];
        for &i in &self.order {
            if reads[i] {
                for o in g.nodes[i].op.operands() {
                    read_by_solved[o.index()] = true;
                }
            }
        }
        let mut keep = vec![false; n];
        let mut nodes = Vec::new();
        let mut lanes = 0;
        for &i in &self.order {
            let node = &g.nodes[i];
            let plain_read = matches!(
                node.op,
                Op::Const(_)
                    | Op::Slot(_)
                    | Op::Global(_)
                    | Op::Gather(..)
                    | Op::Shift(..)
                    | Op::InRange(_)
                    | Op::BagLen(_)
            );
            let per_example = matches!(node.ty, Ty::Value { bag: None, .. });
            if !reads[i]
                && !self.focused[i]
                && per_example
                && !plain_read
                && (read_by_solved[i] || outputs[i])
            {
                keep[i] = true;
                nodes.push((i, lanes, self.lanes[i]));
                lanes += self.lanes[i];
            }
        }
        if nodes.is_empty() {
            return self;
        }
        // A run starts from the outputs and stops at kept values; a fill
        // computes the kept values from scratch.
        let reach = |from: &[usize], stop: &[bool]| {
            let mut r = vec![false; n];
            for &i in from {
                r[i] = true;
            }
            for i in (0..n).rev() {
                if r[i] && !stop[i] {
                    for o in g.nodes[i].op.operands() {
                        r[o.index()] = true;
                    }
                }
            }
            r
        };
        let outs: Vec<usize> = (0..n).filter(|&i| outputs[i] && live[i]).collect();
        let run_reach = reach(&outs, &keep);
        let kept: Vec<usize> = nodes.iter().map(|&(i, _, _)| i).collect();
        let fill_reach = reach(&kept, &vec![false; n]);
        self.frozen = Some(Frozen {
            order: (0..n).filter(|&i| run_reach[i] && !keep[i]).collect(),
            fill_order: (0..n).filter(|&i| fill_reach[i]).collect(),
            nodes,
            lanes,
        });
        self
    }

    /// Numbers per example that [`Program::fill`] writes (0: none).
    pub fn frozen_lanes(&self) -> usize {
        self.frozen.as_ref().map_or(0, |f| f.lanes)
    }

    /// The frozen values of `example` into `out` ([`Program::frozen_lanes`]
    /// numbers), for [`Program::run`] while only the frozen table changes.
    pub fn fill(
        &self,
        params: &Params,
        example: &Example,
        scratch: &mut Scratch,
        out: &mut [f64],
    ) -> Result<(), EvalError> {
        let Some(frozen) = &self.frozen else {
            return Ok(());
        };
        self.eval(params, example, &frozen.fill_order, scratch)?;
        for &(i, offset, lanes) in &frozen.nodes {
            let data = &scratch.data[i];
            if data.len() != lanes
                || !matches!(scratch.values[i], Value::Tensor { members: None, .. })
            {
                return Err(internal(i, "a value's numbers do not match its type"));
            }
            out[offset..offset + lanes].copy_from_slice(data);
        }
        Ok(())
    }

    /// How many nodes run for the asked row's bag members only.
    pub fn focused_nodes(&self) -> usize {
        self.focused.iter().filter(|f| **f).count()
    }

    pub fn scratch(&self) -> Scratch {
        let n = self.graph.nodes.len();
        Scratch {
            values: vec![Value::Index(None); n],
            data: vec![Vec::new(); n],
            focus: Vec::new(),
            compact: [Vec::new(), Vec::new()],
        }
    }

    /// Run on `example`: the loss and score, and the gradient of `row` of
    /// the program's table summed into `grad` (which the caller zeroes).
    pub fn run(
        &self,
        params: &Params,
        example: &Example,
        row: usize,
        scratch: &mut Scratch,
        grad: &mut [f64],
        frozen: Option<&[f64]>,
    ) -> Result<Stats, EvalError> {
        let g = self.graph;
        scratch.focus.clear();
        if let Some(slot) = self.focus_slot {
            let members = bag_members(example, slot, 0)?;
            scratch
                .focus
                .extend((0..members.len()).filter(|&m| members[m].0 == row));
        }
        let order = match (&self.frozen, frozen) {
            (Some(f), Some(values)) => {
                for &(i, offset, lanes) in &f.nodes {
                    let data = &mut scratch.data[i];
                    data.clear();
                    data.extend_from_slice(&values[offset..offset + lanes]);
                    scratch.values[i] = Value::Tensor {
                        members: None,
                        lanes,
                    };
                }
                &f.order
            }
            _ => &self.order,
        };
        self.eval(params, example, order, scratch)?;
        let scalar = |id: NodeId| match scratch.values[id.index()] {
            Value::Tensor { .. } if scratch.data[id.index()].len() == 1 => {
                Ok(scratch.data[id.index()][0])
            }
            _ => Err(EvalError::Internal(format!("{id} is not a scalar"))),
        };
        let loss = scalar(g.loss)?;
        let score = match g.score {
            Some(s) if self.order.binary_search(&s.index()).is_ok() => Some(scalar(s)?),
            _ => None,
        };
        let mut touched = false;
        let mut add = |values: &[f64]| {
            touched = true;
            for (e, v) in grad.iter_mut().zip(values) {
                *e += v;
            }
        };
        for &(target, value) in &self.grads {
            let t = tensor(&scratch.values, &scratch.data, value)?;
            match target {
                // A program keeps only its table's gradients.
                GradTarget::Slot(_) => {}
                GradTarget::Global(_) => {
                    if row == 0 {
                        add(t.data);
                    }
                }
                GradTarget::Row(_, ix) => {
                    if let Value::Index(Some(r)) = scratch.values[ix.index()] {
                        if r == row {
                            add(t.data);
                        }
                    }
                }
                GradTarget::BagRows(_, _) if self.focused[value.index()] => {
                    // Every focus member reads the row, in member order.
                    for j in 0..scratch.focus.len() {
                        add(t.member(j));
                    }
                }
                GradTarget::BagRows(_, bag) => {
                    if let Value::Bag(slot) = scratch.values[bag.index()] {
                        for (m, (r, _)) in
                            bag_members(example, slot, bag.index())?.iter().enumerate()
                        {
                            if *r == row {
                                add(t.member(m));
                            }
                        }
                    }
                }
            }
        }
        Ok(Stats {
            loss,
            score,
            touched,
        })
    }

    /// Compute the nodes of `order` into `scratch`.
    fn eval(
        &self,
        params: &Params,
        example: &Example,
        order: &[usize],
        scratch: &mut Scratch,
    ) -> Result<(), EvalError> {
        let g = self.graph;
        for &i in order {
            let node = &g.nodes[i];
            let (done, rest) = scratch.data.split_at_mut(i);
            let out = &mut rest[0];
            let values = &scratch.values;
            let value = if self.focused[i] {
                // Full-bag operands are cut down to the focus members, so
                // that the node's members line up with the focus.
                let focus = &scratch.focus;
                let operands = node.op.operands();
                for (o, compact) in operands.iter().zip(scratch.compact.iter_mut()) {
                    compact.clear();
                    if self.focused[o.index()] {
                        continue;
                    }
                    if let Value::Tensor {
                        members: Some(_), ..
                    } = values[o.index()]
                    {
                        let t = tensor(values, done, *o)?;
                        for &m in focus {
                            compact.extend_from_slice(t.member(m));
                        }
                    }
                }
                let compact = &scratch.compact;
                let operand = |id: NodeId| {
                    let mut t = tensor(values, done, id)?;
                    if let Some(pos) = operands.iter().position(|o| *o == id) {
                        if !self.focused[id.index()] && t.members.is_some() {
                            t.members = Some(focus.len());
                            t.data = &compact[pos.min(1)];
                        }
                    }
                    Ok(t)
                };
                eval_node(
                    g,
                    params,
                    example,
                    values,
                    &operand,
                    Some(focus),
                    i,
                    node.op,
                    node.ty,
                    self.lanes[i],
                    out,
                )?
            } else {
                eval_node(
                    g,
                    params,
                    example,
                    values,
                    &|id| tensor(values, done, id),
                    None,
                    i,
                    node.op,
                    node.ty,
                    self.lanes[i],
                    out,
                )?
            };
            scratch.values[i] = value;
        }
        Ok(())
    }
}

fn tensor<'a>(values: &[Value], data: &'a [Vec<f64>], id: NodeId) -> Result<Tensor<'a>, EvalError> {
    match values[id.index()] {
        Value::Tensor { members, lanes } => Ok(Tensor {
            members,
            lanes,
            data: &data[id.index()],
        }),
        _ => Err(EvalError::Internal(format!("{id} is not numeric"))),
    }
}

fn bag_members(example: &Example, slot: usize, node: usize) -> Result<&[(usize, f64)], EvalError> {
    match example.slots.get(slot) {
        Some(SlotValue::Bag(members)) => Ok(members),
        _ => Err(internal(node, "a bag slot holds no bag")),
    }
}

/// A bag's members: all of them, or those at the `focus` positions.
fn picked<'e>(
    members: &'e [(usize, f64)],
    focus: Option<&'e [usize]>,
) -> impl Iterator<Item = &'e (usize, f64)> + 'e {
    let all = if focus.is_none() { members.len() } else { 0 };
    let focus = focus.unwrap_or(&[]);
    members[..all]
        .iter()
        .chain(focus.iter().map(move |&m| &members[m]))
}

/// Which nodes of a statistics program can be computed for the focus
/// members only (see [`Program::focused`]): with the gradients into one
/// bag's rows, a per-member value of that bag that neither the loss nor
/// the score reads, and that is read only by such values or as that
/// gradient, is wanted only at the members whose row is asked for. That
/// turns a bag's gradient from a cost per member into one per asked row,
/// which is most of a factorization machine's statistics.
fn focus(
    g: &Graph,
    with_score: bool,
    grads: &[(GradTarget, NodeId)],
    order: &[usize],
) -> (Option<usize>, Vec<bool>) {
    let n = g.nodes.len();
    let none = (None, vec![false; n]);
    // One bag, read straight from its slot, takes every bag gradient.
    let mut slot = None;
    for &(target, _) in grads {
        if let GradTarget::BagRows(_, bag) = target {
            let Op::Slot(s) = g.nodes[bag.index()].op else {
                return none;
            };
            if slot.is_some_and(|t| t != s) {
                return none;
            }
            slot = Some(s);
        }
    }
    let Some(slot) = slot else {
        return none;
    };
    // What the loss and the score read is needed in full.
    let mut full = vec![false; n];
    full[g.loss.index()] = true;
    if with_score {
        if let Some(s) = g.score {
            full[s.index()] = true;
        }
    }
    for &(target, _) in grads {
        match target {
            GradTarget::Global(_) | GradTarget::Slot(_) => {}
            GradTarget::Row(_, x) | GradTarget::BagRows(_, x) => full[x.index()] = true,
        }
    }
    for i in (0..n).rev() {
        if full[i] {
            for o in g.nodes[i].op.operands() {
                full[o.index()] = true;
            }
        }
    }
    let mut focused: Vec<bool> = (0..n)
        .map(|i| {
            let per_member = !matches!(
                g.nodes[i].op,
                Op::SumBag(_) | Op::BagLen(_) | Op::Slot(_) | Op::Shift(..) | Op::InRange(_)
            );
            !full[i] && per_member && g.nodes[i].ty.bag() == Some(slot)
        })
        .collect();
    // A gradient value other than a bag's needs its node in full.
    for &(target, value) in grads {
        if !matches!(target, GradTarget::BagRows(..)) {
            focused[value.index()] = false;
        }
    }
    // A node some unfocused node reads is needed in full; the program's
    // nodes come in order, so users are visited before their operands.
    let live: Vec<bool> = {
        let mut l = vec![false; n];
        order.iter().for_each(|&i| l[i] = true);
        l
    };
    for &i in order.iter().rev() {
        if !focused[i] {
            for o in g.nodes[i].op.operands() {
                focused[o.index()] = false;
            }
        }
    }
    focused.iter_mut().zip(&live).for_each(|(f, l)| *f &= *l);
    (Some(slot.index()), focused)
}

fn mat_dims(g: &Graph, id: NodeId) -> Result<(usize, usize), EvalError> {
    match g.ty(id).shape() {
        Some(Shape::Mat(r, c)) => Ok((r, c)),
        _ => Err(EvalError::Internal(format!("{id} is not a matrix"))),
    }
}

/// One table row, checked: the example was checked against the domains,
/// so a bad row here is the program's fault, reported rather than a panic.
fn table_row(params: &Params, table: TableId, r: usize, node: usize) -> Result<&[f64], EvalError> {
    let t = params
        .tables
        .get(table.index())
        .ok_or_else(|| internal(node, "no such table"))?;
    if r >= t.nrows() {
        return Err(internal(node, "row outside its table"));
    }
    // Tables are built row-major, so a row is a slice.
    t.row(r)
        .to_slice()
        .ok_or_else(|| internal(node, "a table is not stored row by row"))
}

/// `out = f` member by member, broadcasting non-bag operands, as the
/// evaluator's `per_member` does; the value's layout is returned.
fn per_member<const N: usize>(
    inputs: [Tensor; N],
    lanes: usize,
    out: &mut Vec<f64>,
    mut f: impl FnMut([&[f64]; N], &mut [f64]),
) -> Value {
    let members = inputs.iter().find_map(|t| t.members);
    let count = members.unwrap_or(1);
    out.resize(count * lanes, 0.0);
    for m in 0..count {
        let args = inputs.map(|t| t.member(m));
        f(args, &mut out[m * lanes..(m + 1) * lanes]);
    }
    Value::Tensor { members, lanes }
}

/// `out = f(a, b)` lane by lane and member by member, a one-lane operand
/// broadcast to every lane (the evaluator's `Binary`).
fn binary(
    a: Tensor,
    b: Tensor,
    lanes: usize,
    out: &mut Vec<f64>,
    f: impl Fn(f64, f64) -> f64,
) -> Value {
    per_member([a, b], lanes, out, |[x, y], out| match (x.len(), y.len()) {
        (1, 1) => out.iter_mut().for_each(|o| *o = f(x[0], y[0])),
        (1, _) => {
            for (o, y) in out.iter_mut().zip(&y[..lanes]) {
                *o = f(x[0], *y);
            }
        }
        (_, 1) => {
            for (o, x) in out.iter_mut().zip(&x[..lanes]) {
                *o = f(*x, y[0]);
            }
        }
        _ => {
            for ((o, x), y) in out.iter_mut().zip(&x[..lanes]).zip(&y[..lanes]) {
                *o = f(*x, *y);
            }
        }
    })
}

/// The value of node `i` into `out` (cleared), as the evaluator's
/// `eval_node` computes it.
#[allow(clippy::too_many_arguments)]
fn eval_node<'a>(
    g: &Graph,
    params: &Params,
    example: &Example,
    values: &[Value],
    t: &dyn Fn(NodeId) -> Result<Tensor<'a>, EvalError>,
    focus: Option<&[usize]>,
    i: usize,
    op: Op,
    ty: Ty,
    out_lanes: usize,
    out: &mut Vec<f64>,
) -> Result<Value, EvalError> {
    out.clear();
    let scalar = |out: &mut Vec<f64>, v: f64| {
        out.push(v);
        Value::Tensor {
            members: None,
            lanes: 1,
        }
    };
    let v = match op {
        Op::Const(bits) => scalar(out, f64::from_bits(bits)),
        Op::Slot(s) => match example.slots.get(s.index()) {
            Some(SlotValue::Index(r)) => Value::Index(Some(*r)),
            Some(SlotValue::Real(x)) => scalar(out, *x),
            Some(SlotValue::Bag(_)) => Value::Bag(s.index()),
            Some(SlotValue::Noise(v)) => {
                out.extend_from_slice(v);
                Value::Tensor {
                    members: None,
                    lanes: v.len(),
                }
            }
            None => return Err(internal(i, "the example lacks a slot")),
        },
        Op::Shift(ix, by) => {
            let Value::Index(r) = values[ix.index()] else {
                return Err(internal(i, "shift of a non-index"));
            };
            let Ty::Index(d) = ty else {
                return Err(internal(i, "shift typed as a non-index"));
            };
            let size = params.domain_sizes[d.index()] as i64;
            Value::Index(r.and_then(|r| {
                let j = r as i64 + by;
                (0..size).contains(&j).then_some(j as usize)
            }))
        }
        Op::InRange(ix) => match values[ix.index()] {
            Value::Index(r) => scalar(out, if r.is_some() { 1.0 } else { 0.0 }),
            _ => return Err(internal(i, "in_range of a non-index")),
        },
        Op::Global(table) => {
            out.extend_from_slice(table_row(params, table, 0, i)?);
            Value::Tensor {
                members: None,
                lanes: out_lanes,
            }
        }
        Op::Gather(table, ix) => {
            match values[ix.index()] {
                Value::Index(Some(r)) => out.extend_from_slice(table_row(params, table, r, i)?),
                // A shifted index off the domain's end reads zeros.
                Value::Index(None) => out.resize(out_lanes, 0.0),
                _ => return Err(internal(i, "gather with a non-index")),
            }
            Value::Tensor {
                members: None,
                lanes: out_lanes,
            }
        }
        Op::GatherBag(table, bag) => {
            let Value::Bag(slot) = values[bag.index()] else {
                return Err(internal(i, "gather_bag with a non-bag"));
            };
            let members = bag_members(example, slot, i)?;
            for (r, w) in picked(members, focus) {
                out.extend(table_row(params, table, *r, i)?.iter().map(|x| x * w));
            }
            Value::Tensor {
                members: Some(focus.map_or(members.len(), <[usize]>::len)),
                lanes: out_lanes,
            }
        }
        Op::BagWeights(bag) => {
            let Value::Bag(slot) = values[bag.index()] else {
                return Err(internal(i, "bag_weights of a non-bag"));
            };
            let members = bag_members(example, slot, i)?;
            out.extend(picked(members, focus).map(|(_, w)| *w));
            Value::Tensor {
                members: Some(focus.map_or(members.len(), <[usize]>::len)),
                lanes: 1,
            }
        }
        Op::BagLen(x) => {
            let n = match values[x.index()] {
                Value::Bag(slot) => bag_members(example, slot, i)?.len(),
                Value::Tensor { .. } => t(x)?.count(),
                Value::Index(_) => return Err(internal(i, "bag_len of an index")),
            };
            scalar(out, n.max(1) as f64)
        }
        Op::Unary(f, x) => {
            let x = t(x)?;
            out.extend(x.data.iter().map(|v| f.apply(*v)));
            Value::Tensor {
                members: x.members,
                lanes: x.lanes,
            }
        }
        Op::Binary(f, a, b) => {
            let (a, b) = (t(a)?, t(b)?);
            // One loop per function: the evaluator's per-number dispatch
            // costs more than the arithmetic.
            match f {
                BinaryFn::Add => binary(a, b, out_lanes, out, |x, y| x + y),
                BinaryFn::Sub => binary(a, b, out_lanes, out, |x, y| x - y),
                BinaryFn::Mul => binary(a, b, out_lanes, out, |x, y| x * y),
                BinaryFn::Div => binary(a, b, out_lanes, out, |x, y| x / y),
                BinaryFn::Max | BinaryFn::Min => binary(a, b, out_lanes, out, |x, y| f.apply(x, y)),
            }
        }
        Op::Dot(a, b) => per_member([t(a)?, t(b)?], 1, out, |[x, y], out| {
            out[0] = x.iter().zip(y).map(|(x, y)| x * y).sum();
        }),
        Op::SumLanes(x) => per_member([t(x)?], 1, out, |[x], out| out[0] = x.iter().sum()),
        Op::SumBag(x) => {
            let x = t(x)?;
            out.resize(x.lanes, 0.0);
            for m in 0..x.count() {
                for (d, v) in out.iter_mut().zip(x.member(m)) {
                    *d += v;
                }
            }
            Value::Tensor {
                members: None,
                lanes: x.lanes,
            }
        }
        Op::Expand(x, like) => {
            let (x, like) = (t(x)?, t(like)?);
            for m in 0..like.count() {
                let xm = x.member(m);
                if x.lanes == 1 {
                    out.extend(std::iter::repeat_n(xm[0], like.lanes));
                } else {
                    out.extend_from_slice(&xm[..like.lanes]);
                }
            }
            Value::Tensor {
                members: like.members,
                lanes: like.lanes,
            }
        }
        Op::Softmax(x) => per_member([t(x)?], out_lanes, out, |[x], out| {
            let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut total = 0.0;
            for (o, v) in out.iter_mut().zip(x) {
                *o = (v - max).exp();
                total += *o;
            }
            for o in out.iter_mut() {
                *o /= total;
            }
        }),
        Op::Concat(a, b) => per_member([t(a)?, t(b)?], out_lanes, out, |[x, y], out| {
            let n = x.len();
            out[..n].copy_from_slice(x);
            out[n..].copy_from_slice(y);
        }),
        Op::Slice(x, start, len) => per_member([t(x)?], out_lanes, out, |[x], out| {
            out.copy_from_slice(&x[start as usize..(start + len) as usize]);
        }),
        Op::Pad(x, start, _) => per_member([t(x)?], out_lanes, out, |[x], out| {
            let s = start as usize;
            out[s..s + x.len()].copy_from_slice(x);
        }),
        Op::MatVec(m, v) => {
            let (_, cols) = mat_dims(g, m)?;
            per_member([t(m)?, t(v)?], out_lanes, out, |[m, v], out| {
                for (r, o) in out.iter_mut().enumerate() {
                    *o = (0..cols).map(|c| m[r * cols + c] * v[c]).sum();
                }
            })
        }
        Op::MatTVec(m, v) => {
            let (rows, cols) = mat_dims(g, m)?;
            per_member([t(m)?, t(v)?], out_lanes, out, |[m, v], out| {
                for (c, o) in out.iter_mut().enumerate() {
                    *o = (0..rows).map(|r| m[r * cols + c] * v[r]).sum();
                }
            })
        }
        Op::Outer(a, b) => per_member([t(a)?, t(b)?], out_lanes, out, |[x, y], out| {
            let cols = y.len();
            for (r, x) in x.iter().enumerate() {
                for (c, y) in y.iter().enumerate() {
                    out[r * cols + c] = x * y;
                }
            }
        }),
    };
    Ok(v)
}
