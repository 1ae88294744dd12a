//! IR → Cranelift: one function that runs a range of examples.
//!
//! Input: a graph (with gradients for a training step, forward only for
//! prediction), its [`ArgLayout`] and the optimiser. Output: the body of
//! `fn(args: *const u64, begin: u64, end: u64) -> u64` in a Cranelift
//! [`Function`]. For each example the kernel computes the forward values and
//! the gradients in registers (static shapes, `f32x4` chunks; values wider
//! than [`REGISTER_LANES`] in scratch memory, one loop per op; bag-valued
//! nodes streamed: computed per member in registers inside the loop that
//! reads them, in a scratch area only where a wide value or
//! an update that must not see its own steps asks for it), then updates
//! exactly the rows the example touched, in place, with the optimiser's
//! rule and the table's constraint. It returns the index of the first
//! example it did not finish: `end`, or the example whose loss was not
//! finite (its rows are left untouched).
//!
//! **Invariant: no bounds checks.** Every index column and bag member the
//! runtime passes has been validated against its domain when the data was
//! loaded (`Dataset::validate`), negatives are drawn inside their domain,
//! and cold-start ids never reach a training kernel. The only index the
//! kernel computes itself, `t + by` of an ordinal domain, is checked against
//! the domain's size and reads zeros when it falls off the end, as the
//! evaluator does. The reference evaluator keeps checked execution.

use crate::lanes::{self, mem, Lanes, F32, V4};
use crate::layout::{per_visit, ArgLayout};
use crate::transcendental;
use crate::wide::{self, Src};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, Endianness, FuncRef, InstBuilder, MemFlagsData as MemFlags, StackSlotData,
    StackSlotKind, Value,
};
use cranelift_frontend::{FunctionBuilder, Variable};
use recc_compiler::ir::{GradTarget, Graph, NodeId, Op, SlotId, SlotKind, TableId, Ty};
use recc_compiler::model::{Constraint, Optimizer};
use recc_compiler::types::{BinaryFn, Shape, UnaryFn};
use std::collections::{BTreeMap, BTreeSet};

/// What a kernel does with each example.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KernelKind {
    /// Forward, loss, gradients and the optimiser's update.
    Step(StepOptions),
    /// Forward only: the score, written to the `score_out` column.
    Predict,
}

/// How a training step is compiled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOptions {
    pub optimizer: Optimizer,
    /// Rows of `on ball` tables are pulled back inside this radius.
    pub max_ball_norm: f64,
}

/// Added to Adagrad's and Adam's denominators, as the evaluator's trainer does.
const EPSILON: f32 = 1e-8;

/// Imported helpers: Adam's bias correction, prefetching and scratch.
/// Transcendental functions are inline ([`transcendental`]).
pub struct Helpers {
    /// `fn(beta: f64, steps: i32) -> f32`: `1 − betaˢᵗᵉᵖˢ`.
    pub bias_correction: FuncRef,
    /// `fn(addresses: *const u64, count: i64)`: prefetch each address.
    pub prefetch: FuncRef,
    /// `fn(bytes: i64) -> *mut u8`: scratch for wide values, 64-byte aligned.
    pub scratch_alloc: FuncRef,
    /// `fn(at: *mut u8, bytes: i64)`: give that scratch back.
    pub scratch_free: FuncRef,
}

/// The widest value kept in registers, in lanes, by default. Wider values
/// live in scratch memory and every op over them is a loop (see
/// [`crate::wide`]); up to this width unrolled `f32x4` chunks compile fast
/// and run faster.
pub const REGISTER_LANES: usize = 128;

/// The most scratch a kernel's wide values may need at once: 1 GiB, 4096
/// values of the widest shape the checker allows.
pub const MAX_SCRATCH: usize = 1 << 30;

/// Cache lines of one row the kernel prefetches at most; the hardware's
/// stream prefetcher follows a longer row by itself.
const PREFETCH_LINES_PER_ROW: usize = 16;

/// Members of a bag whose rows the kernel prefetches at most; the rest are
/// fetched while the first are worked on.
const PREFETCH_BAG_MEMBERS: usize = 8;

/// Cache lines of a bag's members, and of its weights, the kernel fetches
/// ahead of reading them: 16 members each.
const BAG_COLUMN_LINES: usize = 1;

/// A node's value while one example is being compiled.
#[derive(Clone, Debug)]
enum Val {
    Num(Lanes),
    /// A member of a domain: the row, and a flag that is false when a
    /// shift fell off the domain (the row is then 0 and must not be used).
    Index {
        row: Value,
        valid: Option<Value>,
    },
    /// A bag slot itself.
    Bag(SlotId),
    /// A bag-valued node computed member by member where it is read (see
    /// [`Gen::member_value`]): nothing is written to scratch.
    BagStream,
    /// Per-member lanes in scratch: the region's address.
    BagNum {
        base: Value,
        lanes: usize,
    },
    /// An outer product wider than registers whose one reader is a sum:
    /// the sum adds it row by row (see [`Gen::add_outers`]) instead of
    /// reading it from scratch.
    Outer {
        x: Lanes,
        y: Lanes,
    },
    /// A value wider than registers, in memory at `addr`.
    Wide {
        addr: Value,
        n: usize,
    },
}

/// A numeric operand: lanes in registers or in memory.
#[derive(Clone, Debug)]
enum Opnd {
    Reg(Lanes),
    Mem(Value, usize),
}

impl Opnd {
    fn n(&self) -> usize {
        match self {
            Opnd::Reg(l) => l.n,
            Opnd::Mem(_, n) => *n,
        }
    }
}

/// Byte ranges of the wide-value scratch, handed out and taken back as
/// values die, so the scratch is as large as the most values live at once.
#[derive(Default)]
struct Regions {
    /// Free ranges: (bytes, offset).
    free: Vec<(usize, usize)>,
    /// Bytes in all.
    high: usize,
}

impl Regions {
    /// Whole cache lines, so two values never share one.
    fn round(lanes: usize) -> usize {
        (4 * lanes.max(1)).div_ceil(64) * 64
    }

    fn take(&mut self, lanes: usize) -> (usize, usize) {
        let bytes = Self::round(lanes);
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, &(size, _))| size >= bytes)
            .min_by_key(|(_, &(size, _))| size)
            .map(|(k, _)| k);
        if let Some(k) = best {
            let (size, at) = self.free.swap_remove(k);
            if size > bytes {
                self.free.push((size - bytes, at + bytes));
            }
            return (at, bytes);
        }
        let at = self.high;
        self.high += bytes;
        (at, bytes)
    }

    fn give(&mut self, (at, bytes): (usize, usize)) {
        self.free.push((bytes, at));
    }
}

/// A bag slot's members for the current example.
#[derive(Clone, Copy, Debug)]
struct BagSlot {
    /// First member's position in the members column.
    off: Value,
    len: Value,
    members: Value,
    weights: Value,
}

/// Which nodes the kernel must compute.
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
        live[r.index()] = true;
    }
    for i in (0..g.nodes.len()).rev() {
        if live[i] {
            for o in g.nodes[i].op.operands() {
                live[o.index()] = true;
            }
        }
    }
    live
}

/// For each node, the last live node that reads it; `usize::MAX` for the
/// values the kernel's end (the loss, the score, the updates) reads.
fn last_uses(g: &Graph, live: &[bool]) -> Vec<usize> {
    let mut last = vec![0; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        if live[i] {
            for o in n.op.operands() {
                last[o.index()] = last[o.index()].max(i);
            }
        }
    }
    let mut roots = vec![g.loss];
    roots.extend(g.score);
    for gr in &g.grads {
        roots.push(gr.value);
        match gr.target {
            GradTarget::Global(_) | GradTarget::Slot(_) => {}
            GradTarget::Row(_, i) | GradTarget::BagRows(_, i) => roots.push(i),
        }
    }
    for r in roots {
        last[r.index()] = usize::MAX;
    }
    last
}

/// Build the kernel into `b` (a fresh function with the kernel signature),
/// keeping values of up to `register_lanes` lanes in registers.
pub fn build_kernel(
    b: &mut FunctionBuilder,
    g: &Graph,
    layout: &ArgLayout,
    kind: KernelKind,
    prefetch: usize,
    helpers: &Helpers,
    register_lanes: usize,
) -> Result<(), String> {
    // A scalar is always in a register.
    let register_lanes = register_lanes.max(1);
    let live = live_nodes(g, &kind);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let (args, begin, end) = (params[0], params[1], params[2]);
    let words: Vec<Value> = (0..layout.words)
        .map(|w| b.ins().load(types::I64, mem(), args, 8 * w as i32))
        .collect();
    // Scratch for wide values, once per call; its size is known when every
    // node has been generated, and patched in then.
    let any_wide = g
        .nodes
        .iter()
        .enumerate()
        .any(|(i, n)| live[i] && n.ty.shape().is_some_and(|s| s.len() > register_lanes))
        || g.tables.iter().any(|t| t.shape.len() > register_lanes)
        || !looped_row_tables(g).is_empty();
    let scratch = if any_wide {
        let size = b.ins().iconst(types::I64, 0);
        let call = b.ins().call(helpers.scratch_alloc, &[size]);
        Some((size, b.inst_results(call)[0]))
    } else {
        None
    };
    let k_var = b.declare_var(types::I64);
    let loss_var = b.declare_var(types::F64);
    b.def_var(k_var, begin);
    let zero = b.ins().f64const(0.0);
    b.def_var(loss_var, zero);
    let header = b.create_block();
    let body = b.create_block();
    let exit = b.create_block();
    b.ins().jump(header, &[]);

    b.switch_to_block(header);
    let k = b.use_var(k_var);
    let more = b.ins().icmp(IntCC::UnsignedLessThan, k, end);
    b.ins().brif(more, body, &[], exit, &[]);

    b.switch_to_block(body);
    let order = words[layout.order];
    let at = b.ins().imul_imm_s(k, 4);
    let at = b.ins().iadd(order, at);
    let e = b.ins().load(types::I32, mem(), at, 0);
    let e = b.ins().uextend(types::I64, e);
    let mut gen = Gen {
        b,
        g,
        layout,
        words,
        helpers,
        k,
        e,
        vals: vec![None; g.nodes.len()],
        bags: vec![None; g.slots.len()],
        register_lanes,
        scratch: scratch.map(|(_, base)| base),
        regions: Regions::default(),
        owned: vec![None; g.nodes.len()],
        last_use: last_uses(g, &live),
        live: live.clone(),
        member_memo: MemberMemo::default(),
    };
    gen.example(&live, kind, prefetch, end, exit, loss_var)?;
    let high = gen.regions.high;
    if high > MAX_SCRATCH {
        return Err(format!(
            "the model's wide values need {} MiB of scratch at once; at most {} MiB are allowed",
            high >> 20,
            MAX_SCRATCH >> 20
        ));
    }
    let b = gen.b;
    let next = b.ins().iadd_imm_s(k, 1);
    b.def_var(k_var, next);
    b.ins().jump(header, &[]);

    b.switch_to_block(exit);
    let done = b.use_var(k_var);
    if let KernelKind::Step(_) = kind {
        let out = b
            .ins()
            .load(types::I64, mem(), args, 8 * layout.loss_out as i32);
        let before = b.ins().load(types::F64, mem(), out, 0);
        let added = b.use_var(loss_var);
        let total = b.ins().fadd(before, added);
        b.ins().store(mem(), total, out, 0);
    }
    if let Some((size, base)) = scratch {
        let inst = b
            .func
            .dfg
            .value_def(size)
            .inst()
            .ok_or("the scratch size is not an instruction")?;
        b.func.replace(inst).iconst(types::I64, high as i64);
        b.ins().call(helpers.scratch_free, &[base, size]);
    }
    b.ins().return_(&[done]);
    b.seal_all_blocks();
    Ok(())
}

struct Gen<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    g: &'a Graph,
    layout: &'a ArgLayout,
    /// Every argument word, loaded once before the loop.
    words: Vec<Value>,
    helpers: &'a Helpers,
    /// The current visit: where per-visit columns are read.
    k: Value,
    /// The example the current visit reads (`order[k]`): where columns of
    /// examples are read.
    e: Value,
    vals: Vec<Option<Val>>,
    bags: Vec<Option<BagSlot>>,
    /// The widest value kept in registers.
    register_lanes: usize,
    /// The wide values' scratch, when the kernel has any.
    scratch: Option<Value>,
    regions: Regions,
    /// The scratch range each wide node's value occupies.
    owned: Vec<Option<(usize, usize)>>,
    last_use: Vec<usize>,
    live: Vec<bool>,
    /// The member loop being generated: its member's row and weight, and
    /// the streamed nodes' values for that member, each computed once.
    member_memo: MemberMemo,
}

/// Values of the current member of a member loop, reused within its body.
#[derive(Default)]
struct MemberMemo {
    row_weight: Option<(Value, Value)>,
    nodes: Vec<(NodeId, Lanes)>,
}

impl Gen<'_, '_> {
    fn word(&self, w: usize) -> Value {
        self.words[w]
    }

    fn table_word(&self, t: TableId, field: usize) -> Value {
        self.word(self.layout.table[t.index()] + field)
    }

    fn row_bytes(&self, t: TableId) -> i64 {
        4 * self.g.tables[t.index()].shape.len() as i64
    }

    /// Address of row `row` of field `field` (0 values, 1 first, 2 second) of `t`.
    fn row_addr(&mut self, t: TableId, field: usize, row: Value) -> Value {
        let base = self.table_word(t, field);
        let bytes = self.row_bytes(t);
        let off = self.b.ins().imul_imm_s(row, bytes);
        self.b.ins().iadd(base, off)
    }

    /// Element `at` (an i64) of a column of `bytes`-wide elements.
    fn column_addr(&mut self, column: Value, at: Value, bytes: i64) -> Value {
        let off = self.b.ins().imul_imm_s(at, bytes);
        self.b.ins().iadd(column, off)
    }

    fn load_u32(&mut self, column: Value, at: Value) -> Value {
        let a = self.column_addr(column, at, 4);
        let v = self.b.ins().load(types::I32, mem(), a, 0);
        self.b.ins().uextend(types::I64, v)
    }

    fn lanes(&self, id: NodeId) -> Result<Lanes, String> {
        match &self.vals[id.index()] {
            Some(Val::Num(l)) => Ok(l.clone()),
            other => Err(format!("{id} is not a number here: {other:?}")),
        }
    }

    fn example(
        &mut self,
        live: &[bool],
        kind: KernelKind,
        prefetch: usize,
        end: Value,
        exit: cranelift_codegen::ir::Block,
        loss_var: Variable,
    ) -> Result<(), String> {
        // The bags of this example: offsets[k] .. offsets[k + 1].
        for (s, slot) in self.g.slots.iter().enumerate() {
            if !matches!(slot.kind, SlotKind::Bag { .. }) {
                continue;
            }
            let w = self.layout.slot[s];
            let (offsets, members, weights) = (self.word(w), self.word(w + 1), self.word(w + 2));
            let off = self.load_u32(offsets, self.e);
            let k1 = self.b.ins().iadd_imm_s(self.e, 1);
            let stop = self.load_u32(offsets, k1);
            let len = self.b.ins().isub(stop, off);
            self.bags[s] = Some(BagSlot {
                off,
                len,
                members,
                weights,
            });
        }
        if prefetch > 0 {
            self.prefetch(live, kind, prefetch, end);
        }
        for (i, &needed) in live.iter().enumerate() {
            if needed {
                // A sum over a bag may have been computed with an earlier one.
                if self.vals[i].is_none() {
                    let v = self.node(NodeId(i as u32))?;
                    self.vals[i] = Some(v);
                }
                // Operands read for the last time give their scratch back.
                for o in self.g.nodes[i].op.operands() {
                    if self.last_use[o.index()] == i {
                        if let Some(r) = self.owned[o.index()].take() {
                            self.regions.give(r);
                        }
                    }
                }
            }
        }
        match kind {
            KernelKind::Predict => {
                let score = self.g.score.ok_or("the model has no score")?;
                let s = self.lanes(score)?.chunks[0];
                let out = self.word(self.layout.score_out);
                let a = self.column_addr(out, self.k, 4);
                self.b.ins().store(mem(), s, a, 0);
            }
            KernelKind::Step(options) => {
                let loss = self.lanes(self.g.loss)?.chunks[0];
                // A NaN or an infinity makes `loss − loss` NaN.
                let d = self.b.ins().fsub(loss, loss);
                let zero = self.b.ins().f32const(0.0);
                let finite = self.b.ins().fcmp(FloatCC::Equal, d, zero);
                let go = self.b.create_block();
                self.b.ins().brif(finite, go, &[], exit, &[]);
                self.b.switch_to_block(go);
                let wide = self.b.ins().fpromote(types::F64, loss);
                let acc = self.b.use_var(loss_var);
                let acc = self.b.ins().fadd(acc, wide);
                self.b.def_var(loss_var, acc);
                self.updates(&options)?;
            }
        }
        Ok(())
    }

    /// Prefetch the rows of example `k + distance` so they are in cache
    /// when its turn comes: each index row a gather reads, the optimiser's
    /// state rows of tables the step updates, and the rows of the first
    /// [`PREFETCH_BAG_MEMBERS`] members of each bag a gather reads.
    /// Cranelift has no prefetch instruction, and a plain load of a
    /// far-away row would hold up retirement until it arrives, so the
    /// kernel collects the rows' cache lines on the stack and calls a
    /// helper that issues `prefetcht0` for each. The call comes first in
    /// the example, before any vector is live across it.
    fn prefetch(&mut self, live: &[bool], kind: KernelKind, distance: usize, end: Value) {
        // Fields of a row the step reads: values, and the optimiser's state.
        let state_fields: &[usize] = match kind {
            KernelKind::Step(StepOptions {
                optimizer: Optimizer::Adagrad,
                ..
            }) => &[1],
            KernelKind::Step(StepOptions {
                optimizer: Optimizer::Adam { .. },
                ..
            }) => &[1, 2],
            _ => &[],
        };
        let updated: BTreeSet<TableId> = match kind {
            KernelKind::Step(_) => self
                .g
                .grads
                .iter()
                .filter_map(|gr| match gr.target {
                    GradTarget::Row(t, _) | GradTarget::BagRows(t, _) => Some(t),
                    GradTarget::Global(_) | GradTarget::Slot(_) => None,
                })
                .collect(),
            KernelKind::Predict => BTreeSet::new(),
        };
        let fields_of = |t: TableId| -> Vec<usize> {
            let mut f = vec![0];
            if updated.contains(&t) {
                f.extend_from_slice(state_fields);
            }
            f
        };
        let mut rows: Vec<(TableId, SlotId)> = Vec::new();
        let mut bag_rows: Vec<(TableId, SlotId)> = Vec::new();
        for (i, n) in self.g.nodes.iter().enumerate() {
            let (list, t, ix) = match n.op {
                Op::Gather(t, ix) => (&mut rows, t, ix),
                Op::GatherBag(t, ix) => (&mut bag_rows, t, ix),
                _ => continue,
            };
            let Op::Slot(s) = self.g.node(ix).op else {
                continue;
            };
            if live[i] && !list.contains(&(t, s)) {
                list.push((t, s));
            }
        }
        let row_lines = |s: &Self, t: TableId| {
            (s.row_bytes(t) as usize)
                .div_ceil(64)
                .min(PREFETCH_LINES_PER_ROW)
        };
        let lines: usize = rows
            .iter()
            .map(|&(t, _)| row_lines(self, t) * fields_of(t).len())
            .sum();
        let bag_lines: usize = bag_rows
            .iter()
            .map(|&(t, _)| PREFETCH_BAG_MEMBERS * row_lines(self, t) * fields_of(t).len())
            .sum();
        // Columns of examples are read at `order[k]`, at random places when
        // the order is shuffled: their entries are fetched further ahead
        // than the rows they name (a bag's offsets furthest, as its members
        // are found through them).
        let mut example_columns: Vec<SlotId> = Vec::new();
        let mut bag_slots: Vec<SlotId> = Vec::new();
        for (i, n) in self.g.nodes.iter().enumerate() {
            let Op::Slot(s) = n.op else { continue };
            let kind = &self.g.slots[s.index()].kind;
            if !live[i] || per_visit(kind) {
                continue;
            }
            match kind {
                SlotKind::Bag { .. } => bag_slots.push(s),
                _ => example_columns.push(s),
            }
        }
        let column_lines = example_columns.len() + bag_slots.len() * (1 + 2 * BAG_COLUMN_LINES);
        if lines + bag_lines == 0 {
            return;
        }
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            8 * (lines + bag_lines + column_lines) as u32,
            3,
        ));
        let last = self.b.ins().iadd_imm_s(end, -1);
        let order = self.word(self.layout.order);
        let visit_ahead = |s: &mut Self, times: i64| {
            let ahead = s.b.ins().iadd_imm_s(s.k, times * distance as i64);
            let ahead = s.b.ins().umin(ahead, last);
            let example = s.load_u32(order, ahead);
            (ahead, example)
        };
        let (ahead, ahead_example) = visit_ahead(self, 1);
        let mut at: i32 = 0;
        let mut push = |s: &mut Self, addr: Value| {
            s.b.ins().stack_store(types::I64, addr, slot, 8 * at);
            at += 1;
        };
        if !example_columns.is_empty() || !bag_slots.is_empty() {
            let (_, twice) = visit_ahead(self, 2);
            for &s in &example_columns {
                let column = self.word(self.layout.slot[s.index()]);
                let a = self.column_addr(column, twice, 4);
                push(self, a);
            }
            for &s in &bag_slots {
                let w = self.layout.slot[s.index()];
                let (offsets, members, weights) =
                    (self.word(w), self.word(w + 1), self.word(w + 2));
                let start = self.load_u32(offsets, twice);
                for column in [members, weights] {
                    let a = self.column_addr(column, start, 4);
                    for line in 0..BAG_COLUMN_LINES as i64 {
                        let a = self.b.ins().iadd_imm_s(a, 64 * line);
                        push(self, a);
                    }
                }
            }
            if !bag_slots.is_empty() {
                let (_, thrice) = visit_ahead(self, 3);
                for &s in &bag_slots {
                    let offsets = self.word(self.layout.slot[s.index()]);
                    let a = self.column_addr(offsets, thrice, 4);
                    push(self, a);
                }
            }
        }
        let mut index_of: Vec<(SlotId, Value)> = Vec::new();
        for (t, s) in rows {
            let row = match index_of.iter().find(|(x, _)| *x == s) {
                Some(&(_, v)) => v,
                None => {
                    let column = self.word(self.layout.slot[s.index()]);
                    let at = if per_visit(&self.g.slots[s.index()].kind) {
                        ahead
                    } else {
                        ahead_example
                    };
                    let v = self.load_u32(column, at);
                    index_of.push((s, v));
                    v
                }
            };
            for field in fields_of(t) {
                let addr = self.row_addr(t, field, row);
                for line in (0..self.row_bytes(t))
                    .step_by(64)
                    .take(PREFETCH_LINES_PER_ROW)
                {
                    let a = self.b.ins().iadd_imm_s(addr, line);
                    push(self, a);
                }
            }
        }
        let base = self.b.ins().stack_addr(types::I64, slot, 0);
        // Bag members: a loop over at most PREFETCH_BAG_MEMBERS of them,
        // appending their lines after the index rows'.
        let count_var = self.b.declare_var(types::I64);
        let fixed = self.b.ins().iconst(types::I64, at as i64);
        self.b.def_var(count_var, fixed);
        for (t, s) in bag_rows {
            let w = self.layout.slot[s.index()];
            let (offsets, members) = (self.word(w), self.word(w + 1));
            let off = self.load_u32(offsets, ahead_example);
            let next = self.b.ins().iadd_imm_s(ahead_example, 1);
            let stop = self.load_u32(offsets, next);
            let len = self.b.ins().isub(stop, off);
            let cap = self.b.ins().iconst(types::I64, PREFETCH_BAG_MEMBERS as i64);
            let len = self.b.ins().umin(len, cap);
            let m_var = self.b.declare_var(types::I64);
            let zero = self.b.ins().iconst(types::I64, 0);
            self.b.def_var(m_var, zero);
            let header = self.b.create_block();
            let body = self.b.create_block();
            let done = self.b.create_block();
            self.b.ins().jump(header, &[]);
            self.b.switch_to_block(header);
            let m = self.b.use_var(m_var);
            let more = self.b.ins().icmp(IntCC::UnsignedLessThan, m, len);
            self.b.ins().brif(more, body, &[], done, &[]);
            self.b.switch_to_block(body);
            let j = self.b.ins().iadd(off, m);
            let row = self.load_u32(members, j);
            for field in fields_of(t) {
                let addr = self.row_addr(t, field, row);
                for line in (0..self.row_bytes(t))
                    .step_by(64)
                    .take(PREFETCH_LINES_PER_ROW)
                {
                    let a = self.b.ins().iadd_imm_s(addr, line);
                    let count = self.b.use_var(count_var);
                    let to = self.column_addr(base, count, 8);
                    self.b.ins().store(mem(), a, to, 0);
                    let count = self.b.ins().iadd_imm_s(count, 1);
                    self.b.def_var(count_var, count);
                }
            }
            let m1 = self.b.ins().iadd_imm_s(m, 1);
            self.b.def_var(m_var, m1);
            self.b.ins().jump(header, &[]);
            self.b.switch_to_block(done);
        }
        let count = self.b.use_var(count_var);
        self.b.ins().call(self.helpers.prefetch, &[base, count]);
    }

    fn node(&mut self, id: NodeId) -> Result<Val, String> {
        let n = *self.g.node(id);
        if let (Some(_), Some(_)) = (n.ty.bag(), n.ty.shape()) {
            if !matches!(n.op, Op::Slot(_)) {
                let streamed = self.streamable_op(id)
                    && member_operands(n.op)
                        .iter()
                        .all(|&o| self.member_readable(o));
                if streamed {
                    return Ok(Val::BagStream);
                }
                return self.bag_node(id);
            }
        }
        let lanes_of = |ty: Ty| ty.shape().map_or(1, Shape::len);
        Ok(match n.op {
            Op::Const(bits) => {
                let v = self.b.ins().f32const(f64::from_bits(bits) as f32);
                Val::Num(Lanes {
                    n: 1,
                    chunks: vec![v],
                })
            }
            Op::Slot(s) => {
                let w = self.layout.slot[s.index()];
                match &self.g.slots[s.index()].kind {
                    SlotKind::Index(_) => {
                        let row = self.load_u32(self.word(w), self.e);
                        Val::Index { row, valid: None }
                    }
                    SlotKind::Negative { .. } => {
                        let row = self.load_u32(self.word(w), self.k);
                        Val::Index { row, valid: None }
                    }
                    SlotKind::Real | SlotKind::InverseCount(_) => {
                        let a = self.column_addr(self.word(w), self.e, 4);
                        let v = self.b.ins().load(F32, mem(), a, 0);
                        Val::Num(Lanes {
                            n: 1,
                            chunks: vec![v],
                        })
                    }
                    SlotKind::Bag { .. } => Val::Bag(s),
                    SlotKind::Noise(shape)
                    | SlotKind::Pooled { shape, .. }
                    | SlotKind::Dense(shape) => {
                        let n = shape.len();
                        let a = self.column_addr(self.word(w), self.k, 4 * n as i64);
                        if n > self.register_lanes {
                            // The column is read-only: the value stays there.
                            Val::Wide { addr: a, n }
                        } else {
                            Val::Num(lanes::load(self.b, a, 0, n))
                        }
                    }
                }
            }
            Op::Shift(ix, by) => {
                let Some(Val::Index { row, valid }) = self.vals[ix.index()].clone() else {
                    return Err("shift of a non-index".into());
                };
                let Ty::Index(d) = n.ty else {
                    return Err("shift typed as a non-index".into());
                };
                let size = self.word(self.layout.domain[d.index()]);
                let j = self.b.ins().iadd_imm_s(row, by);
                let zero = self.b.ins().iconst(types::I64, 0);
                let above = self.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, j, zero);
                let below = self.b.ins().icmp(IntCC::SignedLessThan, j, size);
                let mut ok = self.b.ins().band(above, below);
                if let Some(v) = valid {
                    ok = self.b.ins().band(ok, v);
                }
                let row = self.b.ins().select(ok, j, zero);
                Val::Index {
                    row,
                    valid: Some(ok),
                }
            }
            Op::InRange(ix) => {
                let Some(Val::Index { valid, .. }) = self.vals[ix.index()].clone() else {
                    return Err("in_range of a non-index".into());
                };
                let one = self.b.ins().f32const(1.0);
                let v = match valid {
                    None => one,
                    Some(ok) => {
                        let zero = self.b.ins().f32const(0.0);
                        self.b.ins().select(ok, one, zero)
                    }
                };
                Val::Num(Lanes {
                    n: 1,
                    chunks: vec![v],
                })
            }
            Op::Global(t) => {
                let base = self.table_word(t, 0);
                let n_lanes = lanes_of(n.ty);
                let read_by_update = self.g.grads.iter().any(|gr| gr.value == id);
                if n_lanes > self.register_lanes && !read_by_update {
                    // Read in place: every node that reads it is computed
                    // before the updates write the table.
                    Val::Wide {
                        addr: base,
                        n: n_lanes,
                    }
                } else if n_lanes > self.register_lanes {
                    // A copy: the updates write the table before the
                    // gradient that is this value is applied.
                    let dst = self.own(id, n_lanes)?;
                    wide::copy(self.b, n_lanes, dst, Src::Mem(base));
                    Val::Wide {
                        addr: dst,
                        n: n_lanes,
                    }
                } else {
                    Val::Num(lanes::load(self.b, base, 0, n_lanes))
                }
            }
            Op::Gather(t, ix) => {
                let Some(Val::Index { row, valid }) = self.vals[ix.index()].clone() else {
                    return Err("gather with a non-index".into());
                };
                let addr = self.row_addr(t, 0, row);
                let n_lanes = lanes_of(n.ty);
                if n_lanes > self.register_lanes {
                    let dst = self.own(id, n_lanes)?;
                    match valid {
                        None => wide::copy(self.b, n_lanes, dst, Src::Mem(addr)),
                        Some(ok) => {
                            let one = self.b.ins().f32const(1.0);
                            let zero = self.b.ins().f32const(0.0);
                            let flag = self.b.ins().select(ok, one, zero);
                            wide::zip(
                                self.b,
                                n_lanes,
                                dst,
                                Src::Mem(addr),
                                Src::Scalar(flag),
                                |b, x, y, _| b.ins().fmul(x, y),
                            );
                        }
                    }
                    return Ok(Val::Wide {
                        addr: dst,
                        n: n_lanes,
                    });
                }
                let mut v = lanes::load(self.b, addr, 0, lanes_of(n.ty));
                if let Some(ok) = valid {
                    // Off the domain's end: zeros, as the evaluator reads.
                    let one = self.b.ins().f32const(1.0);
                    let zero = self.b.ins().f32const(0.0);
                    let flag = self.b.ins().select(ok, one, zero);
                    let flag = Lanes {
                        n: 1,
                        chunks: vec![flag],
                    };
                    v = lanes::zip(self.b, &v, &flag, |b, x, y| b.ins().fmul(x, y));
                }
                Val::Num(v)
            }
            Op::BagLen(x) => {
                let slot = match self.g.ty(x) {
                    Ty::Bag(s, _) => s,
                    Ty::Value { bag: Some(s), .. } => s,
                    _ => return Err("bag_len of a non-bag".into()),
                };
                let bag = self.bag(slot)?;
                let one = self.b.ins().iconst(types::I64, 1);
                let n = self.b.ins().umax(bag.len, one);
                let v = self.b.ins().fcvt_from_uint(F32, n);
                Val::Num(Lanes {
                    n: 1,
                    chunks: vec![v],
                })
            }
            Op::SumBag(x) => self.sum_bag(id, x)?,
            Op::GatherBag(..) | Op::BagWeights(_) => {
                return Err("a bag op typed as a non-bag".into());
            }
            Op::Outer(x, y) if self.deferred_outer(id) => {
                let (Some(Val::Num(x)), Some(Val::Num(y))) =
                    (self.vals[x.index()].clone(), self.vals[y.index()].clone())
                else {
                    return Err("a deferred outer product of values not in registers".into());
                };
                Val::Outer { x, y }
            }
            Op::Binary(BinaryFn::Add, p, q)
                if [p, q]
                    .iter()
                    .any(|o| matches!(self.vals[o.index()], Some(Val::Outer { .. }))) =>
            {
                self.add_outers(id, p, q)?
            }
            op => {
                let args = op
                    .operands()
                    .iter()
                    .map(|&o| self.operand(o, None))
                    .collect::<Result<Vec<_>, _>>()?;
                let out_n = lanes_of(n.ty);
                let dst = if out_n > self.register_lanes {
                    Some(self.own(id, out_n)?)
                } else {
                    None
                };
                match self.compute(op, n.ty, &args, dst)? {
                    Opnd::Reg(l) => Val::Num(l),
                    Opnd::Mem(addr, n) => Val::Wide { addr, n },
                }
            }
        })
    }

    /// The scratch address of range `r`.
    fn region_addr(&mut self, (at, _): (usize, usize)) -> Result<Value, String> {
        let base = self.scratch.ok_or("a wide value but no scratch")?;
        Ok(wide::offset(self.b, base, at as i64))
    }

    /// Scratch for node `id`'s value of `n` lanes, held until its last use.
    fn own(&mut self, id: NodeId, n: usize) -> Result<Value, String> {
        let r = self.regions.take(n);
        self.owned[id.index()] = Some(r);
        self.region_addr(r)
    }

    /// Scratch for an intermediate of `n` lanes; give it back when done.
    fn temp(&mut self, n: usize) -> Result<(Value, (usize, usize)), String> {
        let r = self.regions.take(n);
        Ok((self.region_addr(r)?, r))
    }

    /// Node `id`'s value as an operand; for a bag-valued node, member `m`'s.
    fn operand(&mut self, id: NodeId, m: Option<Value>) -> Result<Opnd, String> {
        match (self.vals[id.index()].clone(), m) {
            (Some(Val::Num(l)), _) => Ok(Opnd::Reg(l)),
            (Some(Val::Wide { addr, n }), _) => Ok(Opnd::Mem(addr, n)),
            (Some(Val::BagStream), Some(m)) => Ok(Opnd::Reg(self.member_value(id, m)?)),
            (Some(Val::BagNum { base, lanes }), Some(m)) => {
                let a = self.column_addr(base, m, 4 * lanes as i64);
                Ok(if lanes > self.register_lanes {
                    Opnd::Mem(a, lanes)
                } else {
                    Opnd::Reg(lanes::load(self.b, a, 0, lanes))
                })
            }
            (other, _) => Err(format!("{id} is not a number here: {other:?}")),
        }
    }

    /// An operand for a loop: a scalar broadcasts, lanes in registers are
    /// stored to scratch first (the range returned, to give back).
    fn src(&mut self, x: &Opnd) -> Result<(Src, Option<(usize, usize)>), String> {
        Ok(match x {
            Opnd::Reg(l) if l.n == 1 => (Src::Scalar(l.chunks[0]), None),
            Opnd::Reg(l) => {
                let (addr, r) = self.temp(l.n)?;
                lanes::store(self.b, l, addr, 0);
                (Src::Mem(addr), Some(r))
            }
            Opnd::Mem(addr, _) => (Src::Mem(*addr), None),
        })
    }

    /// `op` over `args`: in registers when the result and every operand fit
    /// there, else by loops, writing the result to `dst` (scratch when
    /// `None`, loaded back into registers).
    fn compute(
        &mut self,
        op: Op,
        ty: Ty,
        args: &[Opnd],
        dst: Option<Value>,
    ) -> Result<Opnd, String> {
        let out_n = ty.shape().map_or(1, Shape::len);
        if let (Op::MatVec(m, _), [Opnd::Mem(mat, _), Opnd::Reg(v)]) = (op, args) {
            // A wide matrix times a vector in registers: one loop over the
            // rows, each row's dot product unrolled against the vector's
            // chunks (independent products, a tree of sums), where a loop
            // per row would wait on one accumulator.
            let (rows, cols) = self.mat_dims(m)?;
            if v.n == cols {
                let (out, temp) = match dst {
                    Some(d) => (d, None),
                    None => {
                        let (d, r) = self.temp(out_n)?;
                        (d, Some(r))
                    }
                };
                matvec_rows(self.b, *mat, rows, v, out);
                return Ok(match temp {
                    Some(r) => {
                        let l = lanes::load(self.b, out, 0, out_n);
                        self.regions.give(r);
                        Opnd::Reg(l)
                    }
                    None => Opnd::Mem(out, out_n),
                });
            }
        }
        if dst.is_none() && args.iter().all(|a| matches!(a, Opnd::Reg(_))) {
            let regs: Vec<Lanes> = args
                .iter()
                .filter_map(|a| match a {
                    Opnd::Reg(l) => Some(l.clone()),
                    Opnd::Mem(..) => None,
                })
                .collect();
            return Ok(Opnd::Reg(self.pure(op, ty, &regs)?));
        }
        let mut temps = Vec::new();
        let (out, into_registers) = match dst {
            Some(d) => (d, false),
            None => {
                let (d, r) = self.temp(out_n)?;
                temps.push(r);
                (d, true)
            }
        };
        let mut srcs = Vec::with_capacity(args.len());
        for a in args {
            let (s, r) = self.src(a)?;
            srcs.push(s);
            temps.extend(r);
        }
        let ns: Vec<usize> = args.iter().map(Opnd::n).collect();
        self.pure_mem(op, out_n, &srcs, &ns, out)?;
        let result = if into_registers {
            Opnd::Reg(lanes::load(self.b, out, 0, out_n))
        } else {
            Opnd::Mem(out, out_n)
        };
        for r in temps {
            self.regions.give(r);
        }
        Ok(result)
    }

    fn bag(&self, slot: SlotId) -> Result<BagSlot, String> {
        self.bags[slot.index()].ok_or_else(|| format!("bag slot {slot} not loaded"))
    }

    /// Open a loop over the members of `slot`; returns the member index and
    /// the block to continue with after [`Gen::close_loop`].
    fn open_loop(&mut self, slot: SlotId) -> Result<(Variable, Value, LoopBlocks), String> {
        let bag = self.bag(slot)?;
        self.member_memo = MemberMemo::default();
        let m_var = self.b.declare_var(types::I64);
        let zero = self.b.ins().iconst(types::I64, 0);
        self.b.def_var(m_var, zero);
        let header = self.b.create_block();
        let body = self.b.create_block();
        let done = self.b.create_block();
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let m = self.b.use_var(m_var);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, m, bag.len);
        self.b.ins().brif(more, body, &[], done, &[]);
        self.b.switch_to_block(body);
        Ok((m_var, m, LoopBlocks { header, done }))
    }

    fn close_loop(&mut self, m_var: Variable, m: Value, blocks: LoopBlocks) {
        self.member_memo = MemberMemo::default();
        let next = self.b.ins().iadd_imm_s(m, 1);
        self.b.def_var(m_var, next);
        self.b.ins().jump(blocks.header, &[]);
        self.b.switch_to_block(blocks.done);
    }

    /// The member's row and weight.
    fn member(&mut self, bag: BagSlot, m: Value) -> (Value, Value) {
        let at = self.b.ins().iadd(bag.off, m);
        let row = self.load_u32(bag.members, at);
        let wa = self.column_addr(bag.weights, at, 4);
        let w = self.b.ins().load(F32, mem(), wa, 0);
        (row, w)
    }

    /// Whether outer product `id` is left for its reader to add row by
    /// row: too wide for registers, its factors in registers (they stay
    /// valid until the sum), and read once, by a wide sum, and by no update.
    fn deferred_outer(&self, id: NodeId) -> bool {
        let Op::Outer(x, y) = self.g.node(id).op else {
            return false;
        };
        let wide = |s: &Self, n: NodeId| s.g.ty(n).shape().map_or(1, Shape::len) > s.register_lanes;
        if !wide(self, id)
            || self.last_use[id.index()] == usize::MAX
            || ![x, y]
                .iter()
                .all(|o| matches!(self.vals[o.index()], Some(Val::Num(_))))
        {
            return false;
        }
        let mut readers = self
            .g
            .nodes
            .iter()
            .enumerate()
            .filter(|&(j, _)| self.live[j])
            .flat_map(|(j, n)| {
                n.op.operands()
                    .into_iter()
                    .filter(|&o| o == id)
                    .map(move |_| (j, n.op))
            });
        match (readers.next(), readers.next()) {
            (Some((j, Op::Binary(BinaryFn::Add, _, _))), None) => wide(self, NodeId(j as u32)),
            _ => false,
        }
    }

    /// `p + q` where one or both are deferred outer products: the other
    /// operand's scratch (when this is its last use) or a fresh region
    /// takes the sum, and each outer product is added row by row.
    fn add_outers(&mut self, id: NodeId, p: NodeId, q: NodeId) -> Result<Val, String> {
        let n = self.g.ty(id).shape().map_or(1, Shape::len);
        let mut outers = Vec::new();
        let mut rest = None;
        for o in [p, q] {
            match self.vals[o.index()].clone() {
                Some(Val::Outer { x, y }) => outers.push((x, y)),
                _ => rest = Some(o),
            }
        }
        let dst = match rest {
            Some(o)
                if p != q
                    && self.last_use[o.index()] == id.index()
                    && self.owned[o.index()].is_some()
                    && matches!(self.vals[o.index()], Some(Val::Wide { .. })) =>
            {
                // In place: the operand dies here.
                let r = self.owned[o.index()].take();
                self.owned[id.index()] = r;
                let Some(Val::Wide { addr, .. }) = self.vals[o.index()] else {
                    return Err("a wide operand lost its address".into());
                };
                addr
            }
            Some(o) => {
                let dst = self.own(id, n)?;
                let v = self.operand(o, None)?;
                let (s, temp) = self.src(&v)?;
                wide::copy(self.b, n, dst, s);
                if let Some(r) = temp {
                    self.regions.give(r);
                }
                dst
            }
            None => {
                let dst = self.own(id, n)?;
                let (x, y) = outers.remove(0);
                let srcs = [Opnd::Reg(x), Opnd::Reg(y)];
                let mut temps = Vec::new();
                let mut ss = Vec::new();
                for a in &srcs {
                    let (s, r) = self.src(a)?;
                    ss.push(s);
                    temps.extend(r);
                }
                let ns = [srcs[0].n(), srcs[1].n()];
                let op = self.g.node(id).op;
                let Op::Binary(_, first, _) = op else {
                    return Err("a sum of outer products is not a sum".into());
                };
                self.pure_mem(self.g.node(first).op, n, &ss, &ns, dst)?;
                for r in temps {
                    self.regions.give(r);
                }
                dst
            }
        };
        for (x, y) in outers {
            self.add_outer(dst, &x, &y)?;
        }
        Ok(Val::Wide { addr: dst, n })
    }

    /// `dst += x ⊗ y`, row by row.
    fn add_outer(&mut self, dst: Value, x: &Lanes, y: &Lanes) -> Result<(), String> {
        let (xs, xr) = self.src(&Opnd::Reg(x.clone()))?;
        let (ys, yr) = self.src(&Opnd::Reg(y.clone()))?;
        let ny = y.n;
        wide::counted_loop(self.b, 4 * x.n as i64, 4, |b, i4| {
            let xi = wide::lane(b, xs, i4);
            let row_at = b.ins().imul_imm_s(i4, ny as i64);
            let row = b.ins().iadd(dst, row_at);
            wide::for_chunks(b, ny, |b, off, vector| {
                let acc = wide::load(b, Src::Mem(row), off, vector);
                let yc = wide::load(b, ys, off, vector);
                let xc = wide::load(b, Src::Scalar(xi), off, vector);
                let prod = b.ins().fmul(yc, xc);
                let sum = b.ins().fadd(acc, prod);
                wide::store(b, sum, row, off);
            });
        });
        for r in [xr, yr].into_iter().flatten() {
            self.regions.give(r);
        }
        Ok(())
    }

    /// The scratch of bag-valued node `id`: its lanes for every member.
    fn bag_base(&mut self, id: NodeId) -> Result<Value, String> {
        let region = self.layout.region(id).ok_or("bag node without scratch")?;
        let scratch = self.word(self.layout.scratch);
        let cap = self.word(self.layout.bag_cap);
        let off = self.b.ins().imul_imm_s(cap, 4 * region as i64);
        Ok(self.b.ins().iadd(scratch, off))
    }

    /// Whether bag-valued node `id` is an op that can be computed for one
    /// member in registers wherever it is read: lane arithmetic (the
    /// transcendental functions included: they are inline, straight-line
    /// code) on a value narrow enough for registers.
    fn streamable_op(&self, id: NodeId) -> bool {
        let n = self.g.node(id);
        n.ty.shape().map_or(1, Shape::len) <= self.register_lanes
            && matches!(
                n.op,
                Op::GatherBag(..)
                    | Op::BagWeights(_)
                    | Op::Unary(..)
                    | Op::Binary(..)
                    | Op::Dot(..)
                    | Op::SumLanes(_)
                    | Op::Expand(..)
                    | Op::Concat(..)
                    | Op::Slice(..)
                    | Op::Pad(..)
            )
    }

    /// Whether the computed value of `o` can be read for one member inside
    /// a member loop, in registers.
    fn member_readable(&self, o: NodeId) -> bool {
        match &self.vals[o.index()] {
            Some(Val::Num(_) | Val::Bag(_) | Val::BagStream) => true,
            Some(Val::BagNum { lanes, .. }) => *lanes <= self.register_lanes,
            _ => false,
        }
    }

    /// Whether bag-valued `x` can be read per member now: computed, or
    /// streamable with every operand so. Nodes found streamable on the way
    /// are marked streamed (they emit no code of their own).
    fn stream_ready(&mut self, x: NodeId) -> bool {
        if self.vals[x.index()].is_some() {
            return self.member_readable(x);
        }
        let op = self.g.node(x).op;
        if self.g.node(x).ty.bag().is_none() || matches!(op, Op::Slot(_)) || !self.streamable_op(x)
        {
            return false;
        }
        for o in member_operands(op) {
            if !self.stream_ready(o) {
                return false;
            }
        }
        self.vals[x.index()] = Some(Val::BagStream);
        true
    }

    /// The current member's row and weight, loaded once per loop body.
    fn member_row(&mut self, slot: SlotId, m: Value) -> Result<(Value, Value), String> {
        if let Some(rw) = self.member_memo.row_weight {
            return Ok(rw);
        }
        let bag = self.bag(slot)?;
        let rw = self.member(bag, m);
        self.member_memo.row_weight = Some(rw);
        Ok(rw)
    }

    /// A bag-valued operand's lanes for member `m`.
    fn member_lanes(&mut self, id: NodeId, m: Value) -> Result<Lanes, String> {
        match self.operand(id, Some(m))? {
            Opnd::Reg(l) => Ok(l),
            Opnd::Mem(..) => Err(format!("{id} is too wide to stream")),
        }
    }

    /// Streamed node `id`'s value for member `m`, computed from its
    /// operands' values for that member (once per loop body).
    fn member_value(&mut self, id: NodeId, m: Value) -> Result<Lanes, String> {
        if let Some((_, l)) = self.member_memo.nodes.iter().find(|(n, _)| *n == id) {
            return Ok(l.clone());
        }
        let n = *self.g.node(id);
        let slot = n.ty.bag().ok_or("a streamed node without a bag")?;
        let value = match n.op {
            Op::GatherBag(t, _) => {
                let (row, w) = self.member_row(slot, m)?;
                let addr = self.row_addr(t, 0, row);
                let lanes_n = n.ty.shape().map_or(1, Shape::len);
                let v = lanes::load(self.b, addr, 0, lanes_n);
                lanes::zip(self.b, &v, &scalar(w), |b, x, y| b.ins().fmul(x, y))
            }
            Op::BagWeights(_) => scalar(self.member_row(slot, m)?.1),
            op => {
                let args = member_operands(op)
                    .into_iter()
                    .map(|o| self.member_lanes(o, m))
                    .collect::<Result<Vec<_>, _>>()?;
                self.pure(op, n.ty, &args)?
            }
        };
        self.member_memo.nodes.push((id, value.clone()));
        Ok(value)
    }

    /// The tables a streamed node reads rows of when it is computed.
    fn streamed_tables(&self, id: NodeId, out: &mut BTreeSet<TableId>) {
        if !matches!(self.vals[id.index()], Some(Val::BagStream)) {
            return;
        }
        let op = self.g.node(id).op;
        if let Op::GatherBag(t, _) = op {
            out.insert(t);
        }
        for o in member_operands(op) {
            self.streamed_tables(o, out);
        }
    }

    /// Write streamed nodes of one bag to their scratch, in one loop over
    /// the members; they are then read from there.
    fn materialize(&mut self, slot: SlotId, ids: &[NodeId]) -> Result<(), String> {
        let mut bases = Vec::with_capacity(ids.len());
        for &id in ids {
            bases.push(self.bag_base(id)?);
        }
        let (m_var, m, blocks) = self.open_loop(slot)?;
        for (&id, &base) in ids.iter().zip(&bases) {
            let v = self.member_value(id, m)?;
            let a = self.column_addr(base, m, 4 * v.n as i64);
            lanes::store(self.b, &v, a, 0);
        }
        self.close_loop(m_var, m, blocks);
        for (&id, &base) in ids.iter().zip(&bases) {
            let lanes = self.g.ty(id).shape().map_or(1, Shape::len);
            self.vals[id.index()] = Some(Val::BagNum { base, lanes });
        }
        Ok(())
    }

    /// A bag-valued node: one loop over the members, results in scratch.
    fn bag_node(&mut self, id: NodeId) -> Result<Val, String> {
        let n = *self.g.node(id);
        let slot = n.ty.bag().ok_or("bag node without a bag")?;
        let lanes_n = n.ty.shape().map_or(1, Shape::len);
        let wide = lanes_n > self.register_lanes;
        let base = self.bag_base(id)?;
        let bag = self.bag(slot)?;
        let (m_var, m, blocks) = self.open_loop(slot)?;
        let a = self.column_addr(base, m, 4 * lanes_n as i64);
        let value = match n.op {
            Op::GatherBag(t, _) => {
                let (row, w) = self.member(bag, m);
                let addr = self.row_addr(t, 0, row);
                if wide {
                    let mul = |b: &mut FunctionBuilder, x, y, _| b.ins().fmul(x, y);
                    wide::zip(self.b, lanes_n, a, Src::Mem(addr), Src::Scalar(w), mul);
                    None
                } else {
                    let v = lanes::load(self.b, addr, 0, lanes_n);
                    Some(lanes::zip(self.b, &v, &scalar(w), |b, x, y| {
                        b.ins().fmul(x, y)
                    }))
                }
            }
            Op::BagWeights(_) => {
                let (_, w) = self.member(bag, m);
                Some(scalar(w))
            }
            op => {
                let args = member_operands(op)
                    .iter()
                    .map(|&o| self.operand(o, Some(m)))
                    .collect::<Result<Vec<_>, _>>()?;
                match self.compute(op, n.ty, &args, wide.then_some(a))? {
                    Opnd::Reg(l) => Some(l),
                    Opnd::Mem(..) => None,
                }
            }
        };
        if let Some(value) = value {
            lanes::store(self.b, &value, a, 0);
        }
        self.close_loop(m_var, m, blocks);
        Ok(Val::BagNum {
            base,
            lanes: lanes_n,
        })
    }

    /// The sum over a bag's members of `x`, the value of node `id`.
    fn sum_bag(&mut self, id: NodeId, x: NodeId) -> Result<Val, String> {
        let slot = self.g.ty(x).bag().ok_or("sum_bag of a non-bag")?;
        let n = self.g.ty(x).shape().map_or(1, Shape::len);
        if n > self.register_lanes {
            let dst = self.own(id, n)?;
            let zero = self.b.ins().f32const(0.0);
            wide::copy(self.b, n, dst, Src::Scalar(zero));
            let (m_var, m, blocks) = self.open_loop(slot)?;
            let v = self.operand(x, Some(m))?;
            let (v, temp) = self.src(&v)?;
            let add = |b: &mut FunctionBuilder, p, q, _| b.ins().fadd(p, q);
            wide::zip(self.b, n, dst, Src::Mem(dst), v, add);
            if let Some(r) = temp {
                self.regions.give(r);
            }
            self.close_loop(m_var, m, blocks);
            return Ok(Val::Wide { addr: dst, n });
        }
        // Every later sum over the same bag whose members can be computed
        // now shares this loop: one pass over the members' rows.
        let mut group = vec![(id, x)];
        for j in id.index() + 1..self.g.nodes.len() {
            if !self.live[j] || self.vals[j].is_some() {
                continue;
            }
            let Op::SumBag(y) = self.g.nodes[j].op else {
                continue;
            };
            let fits = self.g.ty(y).shape().map_or(1, Shape::len) <= self.register_lanes;
            if self.g.ty(y).bag() == Some(slot) && fits && self.stream_ready(y) {
                group.push((NodeId(j as u32), y));
            }
        }
        let mut accs = Vec::with_capacity(group.len());
        for &(_, y) in &group {
            let n = self.g.ty(y).shape().map_or(1, Shape::len);
            let init = lanes::zeros(self.b, n);
            let vars: Vec<Variable> = init
                .chunks
                .iter()
                .enumerate()
                .map(|(c, &v)| {
                    let var = self
                        .b
                        .declare_var(if init.is_vector_chunk(c) { V4 } else { F32 });
                    self.b.def_var(var, v);
                    var
                })
                .collect();
            accs.push((n, vars));
        }
        let (m_var, m, blocks) = self.open_loop(slot)?;
        for (&(_, y), (n, vars)) in group.iter().zip(&accs) {
            let n = *n;
            let v = match self.operand(y, Some(m))? {
                Opnd::Reg(l) if l.n == n => l,
                Opnd::Reg(l) => lanes::splat_to(self.b, l.chunks[0], n),
                Opnd::Mem(addr, _) => lanes::load(self.b, addr, 0, n),
            };
            for (var, &c) in vars.iter().zip(&v.chunks) {
                let acc = self.b.use_var(*var);
                let s = self.b.ins().fadd(acc, c);
                self.b.def_var(*var, s);
            }
        }
        self.close_loop(m_var, m, blocks);
        let mut own = None;
        for (&(gid, _), (n, vars)) in group.iter().zip(&accs) {
            let chunks = vars.iter().map(|v| self.b.use_var(*v)).collect();
            let v = Val::Num(Lanes { n: *n, chunks });
            if gid == id {
                own = Some(v);
            } else {
                self.vals[gid.index()] = Some(v);
            }
        }
        own.ok_or_else(|| "a sum over a bag lost its value".into())
    }

    /// `op` by loops over memory: every operand an address or a scalar
    /// (`ns` their lanes), the result's `out_n` lanes written to `dst`.
    fn pure_mem(
        &mut self,
        op: Op,
        out_n: usize,
        srcs: &[Src],
        ns: &[usize],
        dst: Value,
    ) -> Result<(), String> {
        let b = &mut *self.b;
        let store_scalar = |b: &mut FunctionBuilder, v: Value| b.ins().store(mem(), v, dst, 0);
        match op {
            Op::Unary(f, _) => wide::map(b, out_n, dst, srcs[0], |b, v, vector| {
                unary(b, f, v, vector)
            }),
            Op::Binary(f, _, _) => {
                wide::zip(b, out_n, dst, srcs[0], srcs[1], |b, x, y, _| match f {
                    BinaryFn::Add => b.ins().fadd(x, y),
                    BinaryFn::Sub => b.ins().fsub(x, y),
                    BinaryFn::Mul => b.ins().fmul(x, y),
                    BinaryFn::Div => b.ins().fdiv(x, y),
                    BinaryFn::Max => b.ins().fmax(x, y),
                    BinaryFn::Min => b.ins().fmin(x, y),
                })
            }
            Op::Dot(_, _) => {
                let d = wide::dot(b, ns[0].max(ns[1]), srcs[0], srcs[1]);
                store_scalar(b, d);
            }
            Op::SumLanes(_) => {
                let s = wide::sum(b, ns[0], srcs[0]);
                store_scalar(b, s);
            }
            Op::Expand(_, _) => wide::copy(b, out_n, dst, srcs[0]),
            Op::Softmax(_) => {
                let x = srcs[0];
                let n = ns[0];
                let max = b.declare_var(F32);
                let at0 = b.ins().iconst(types::I64, 0);
                let first = wide::lane(b, x, at0);
                b.def_var(max, first);
                wide::for_lanes(b, n, |b, off| {
                    let v = wide::lane(b, x, off);
                    let m = b.use_var(max);
                    let m = b.ins().fmax(m, v);
                    b.def_var(max, m);
                });
                let max = b.use_var(max);
                wide::for_lanes(b, n, |b, off| {
                    let v = wide::lane(b, x, off);
                    let shifted = b.ins().fsub(v, max);
                    let e = transcendental::exp(b, shifted, false);
                    wide::store(b, e, dst, off);
                });
                let total = wide::sum(b, n, Src::Mem(dst));
                let div = |b: &mut FunctionBuilder, x, y, _| b.ins().fdiv(x, y);
                wide::zip(b, n, dst, Src::Mem(dst), Src::Scalar(total), div);
            }
            Op::Concat(_, _) => {
                wide::copy(b, ns[0], dst, srcs[0]);
                let second = wide::offset(b, dst, 4 * ns[0] as i64);
                wide::copy(b, ns[1], second, srcs[1]);
            }
            Op::Slice(_, start, len) => {
                let at = b.ins().iconst(types::I64, 4 * i64::from(start));
                let x = wide::advance(b, srcs[0], at);
                wide::copy(b, len as usize, dst, x);
            }
            Op::Pad(_, start, len) => {
                let zero = b.ins().f32const(0.0);
                wide::copy(b, len as usize, dst, Src::Scalar(zero));
                let at = wide::offset(b, dst, 4 * i64::from(start));
                wide::copy(b, ns[0], at, srcs[0]);
            }
            Op::MatVec(m, _) => {
                let (rows, cols) = self.mat_dims(m)?;
                let b = &mut *self.b;
                let (mat, v) = (srcs[0], srcs[1]);
                wide::counted_loop(b, 4 * rows as i64, 4, |b, r4| {
                    let row_at = b.ins().imul_imm_s(r4, cols as i64);
                    let row = wide::advance(b, mat, row_at);
                    let d = wide::dot(b, cols, row, v);
                    wide::store(b, d, dst, r4);
                });
            }
            Op::MatTVec(m, _) => {
                let (rows, cols) = self.mat_dims(m)?;
                let b = &mut *self.b;
                let (mat, v) = (srcs[0], srcs[1]);
                let zero = b.ins().f32const(0.0);
                wide::copy(b, cols, dst, Src::Scalar(zero));
                wide::counted_loop(b, 4 * rows as i64, 4, |b, r4| {
                    let vr = wide::lane(b, v, r4);
                    let row_at = b.ins().imul_imm_s(r4, cols as i64);
                    let row = wide::advance(b, mat, row_at);
                    wide::for_chunks(b, cols, |b, off, vector| {
                        let acc = wide::load(b, Src::Mem(dst), off, vector);
                        let w = wide::load(b, row, off, vector);
                        let s = wide::load(b, Src::Scalar(vr), off, vector);
                        let p = b.ins().fmul(w, s);
                        let sum = b.ins().fadd(acc, p);
                        wide::store(b, sum, dst, off);
                    });
                });
            }
            Op::Outer(_, _) => {
                let (x, y) = (srcs[0], srcs[1]);
                let (nx, ny) = (ns[0], ns[1]);
                wide::counted_loop(b, 4 * nx as i64, 4, |b, i4| {
                    let xi = wide::lane(b, x, i4);
                    let row_at = b.ins().imul_imm_s(i4, ny as i64);
                    let row = b.ins().iadd(dst, row_at);
                    let mul = |b: &mut FunctionBuilder, p, q, _| b.ins().fmul(p, q);
                    wide::zip(b, ny, row, y, Src::Scalar(xi), mul);
                });
            }
            other => return Err(format!("{other:?} is not a lane op")),
        }
        Ok(())
    }

    /// Ops whose value depends only on their operands' lanes: the same code
    /// serves a plain value and one member of a bag value.
    fn pure(&mut self, op: Op, ty: Ty, args: &[Lanes]) -> Result<Lanes, String> {
        let out_n = ty.shape().map_or(1, Shape::len);
        let b = &mut *self.b;
        Ok(match op {
            Op::Unary(f, _) => lanes::map(b, &args[0], |b, v, vector| unary(b, f, v, vector)),
            Op::Binary(f, _, _) => lanes::zip(b, &args[0], &args[1], |b, x, y| match f {
                BinaryFn::Add => b.ins().fadd(x, y),
                BinaryFn::Sub => b.ins().fsub(x, y),
                BinaryFn::Mul => b.ins().fmul(x, y),
                BinaryFn::Div => b.ins().fdiv(x, y),
                BinaryFn::Max => b.ins().fmax(x, y),
                BinaryFn::Min => b.ins().fmin(x, y),
            }),
            Op::Dot(_, _) => {
                let p = lanes::zip(b, &args[0], &args[1], |b, x, y| b.ins().fmul(x, y));
                scalar(lanes::sum(b, &p))
            }
            Op::SumLanes(_) => scalar(lanes::sum(b, &args[0])),
            Op::Expand(_, _) => {
                if args[0].n == out_n {
                    args[0].clone()
                } else {
                    lanes::splat_to(b, args[0].chunks[0], out_n)
                }
            }
            Op::Softmax(_) => {
                let xs = lanes::scalars(b, &args[0]);
                let mut max = xs[0];
                for &v in &xs[1..] {
                    max = b.ins().fmax(max, v);
                }
                let shifted: Vec<Value> = xs.iter().map(|&v| b.ins().fsub(v, max)).collect();
                let shifted = lanes::from_scalars(b, &shifted);
                let e = lanes::map(b, &shifted, transcendental::exp);
                let total = lanes::sum(b, &e);
                let total = scalar(total);
                lanes::zip(b, &e, &total, |b, x, y| b.ins().fdiv(x, y))
            }
            Op::Concat(_, _) => lanes::concat(b, &args[0], &args[1]),
            Op::Slice(_, start, len) => lanes::slice(b, &args[0], start as usize, len as usize),
            Op::Pad(_, start, len) => {
                let x = &args[0];
                let before = lanes::zeros(b, start as usize);
                let after = lanes::zeros(b, len as usize - start as usize - x.n);
                let head = if start > 0 {
                    lanes::concat(b, &before, x)
                } else {
                    x.clone()
                };
                if after.n > 0 {
                    lanes::concat(b, &head, &after)
                } else {
                    head
                }
            }
            Op::MatVec(m, _) => {
                let (rows, cols) = self.mat_dims(m)?;
                let b = &mut *self.b;
                let mut out = Vec::with_capacity(rows);
                for r in 0..rows {
                    let row = lanes::slice(b, &args[0], r * cols, cols);
                    let p = lanes::zip(b, &row, &args[1], |b, x, y| b.ins().fmul(x, y));
                    out.push(lanes::sum(b, &p));
                }
                lanes::from_scalars(b, &out)
            }
            Op::MatTVec(m, _) => {
                let (rows, cols) = self.mat_dims(m)?;
                let b = &mut *self.b;
                let vs = lanes::scalars(b, &args[1]);
                let mut acc = lanes::zeros(b, cols);
                for (r, &v) in vs.iter().enumerate().take(rows) {
                    let row = lanes::slice(b, &args[0], r * cols, cols);
                    let s = scalar(v);
                    let p = lanes::zip(b, &row, &s, |b, x, y| b.ins().fmul(x, y));
                    acc = lanes::zip(b, &acc, &p, |b, x, y| b.ins().fadd(x, y));
                }
                acc
            }
            Op::Outer(_, _) => {
                let xs = lanes::scalars(b, &args[0]);
                let mut out: Option<Lanes> = None;
                for &x in &xs {
                    let row = lanes::zip(b, &args[1], &scalar(x), |b, p, q| b.ins().fmul(p, q));
                    out = Some(match out {
                        None => row,
                        Some(prev) => lanes::concat(b, &prev, &row),
                    });
                }
                out.ok_or("outer of an empty vector")?
            }
            other => return Err(format!("{other:?} is not a lane op")),
        })
    }

    fn mat_dims(&self, id: NodeId) -> Result<(usize, usize), String> {
        match self.g.ty(id).shape() {
            Some(Shape::Mat(r, c)) => Ok((r, c)),
            _ => Err(format!("{id} is not a matrix")),
        }
    }

    /// Apply every gradient of the example with the optimiser. All values
    /// were computed from the parameters before any update, as the
    /// evaluator does.
    fn updates(&mut self, options: &StepOptions) -> Result<(), String> {
        // Row gradients of one table, by table, so rows two index nodes
        // share are summed into one update, as the evaluator sums them.
        let mut rows: BTreeMap<TableId, Vec<(NodeId, NodeId)>> = BTreeMap::new();
        for gr in &self.g.grads {
            if let GradTarget::Row(t, ix) = gr.target {
                rows.entry(t).or_default().push((ix, gr.value));
            }
        }
        // A streamed bag gradient that reads rows of a table this step
        // updates is computed for every member first, before any update,
        // as the evaluator does (a row listed twice in a bag must see its
        // value before the step); one loop per bag writes them all.
        let updated: BTreeSet<TableId> = self
            .g
            .grads
            .iter()
            .filter_map(|gr| match gr.target {
                GradTarget::Global(t) | GradTarget::Row(t, _) | GradTarget::BagRows(t, _) => {
                    Some(t)
                }
                GradTarget::Slot(_) => None,
            })
            .collect();
        let mut early: BTreeMap<SlotId, Vec<NodeId>> = BTreeMap::new();
        for gr in &self.g.grads {
            let GradTarget::BagRows(_, bag) = gr.target else {
                continue;
            };
            let Some(Val::Bag(slot)) = self.vals[bag.index()] else {
                return Err("bag gradient without a bag".into());
            };
            let mut read = BTreeSet::new();
            self.streamed_tables(gr.value, &mut read);
            if !read.is_disjoint(&updated) {
                let ids = early.entry(slot).or_default();
                if !ids.contains(&gr.value) {
                    ids.push(gr.value);
                }
            }
        }
        for (slot, ids) in early {
            self.materialize(slot, &ids)?;
        }
        let looped = looped_row_tables(self.g);
        for gr in self.g.grads.clone() {
            match gr.target {
                GradTarget::Row(t, _) if looped.contains(&t) => {
                    // The whole group at its first gradient, once.
                    if let Some(group) = rows.remove(&t) {
                        self.update_rows_loop(options, t, &group)?;
                    }
                }
                GradTarget::Global(t) => {
                    let g = self.operand(gr.value, None)?;
                    let row = self.b.ins().iconst(types::I64, 0);
                    self.update_row(options, t, row, g)?;
                }
                GradTarget::Row(t, ix) => {
                    let group = rows.get(&t).cloned().unwrap_or_default();
                    self.update_shared_row(options, t, ix, gr.value, &group)?;
                }
                GradTarget::BagRows(t, bag) => {
                    // Members are updated one after another; a row listed
                    // twice in one bag takes two steps.
                    let Some(Val::Bag(slot)) = self.vals[bag.index()].clone() else {
                        return Err("bag gradient without a bag".into());
                    };
                    // A streamed gradient is computed here, member by
                    // member, and applied at once.
                    let (m_var, m, blocks) = self.open_loop(slot)?;
                    let (row, _) = self.member_row(slot, m)?;
                    let g = self.operand(gr.value, Some(m))?;
                    self.update_row(options, t, row, g)?;
                    self.close_loop(m_var, m, blocks);
                }
                GradTarget::Slot(slot) => {
                    // A pooled input's gradient, to the column after its values.
                    let n = self.g.slots[slot.index()]
                        .kind
                        .pooled_shape()
                        .ok_or("gradient of a slot that is not pooled")?
                        .len();
                    let column = self.word(self.layout.slot[slot.index()] + 1);
                    let dst = self.column_addr(column, self.k, 4 * n as i64);
                    match self.operand(gr.value, None)? {
                        Opnd::Reg(l) if l.n == n => lanes::store(self.b, &l, dst, 0),
                        Opnd::Reg(l) if l.n == 1 => {
                            let l = lanes::splat_to(self.b, l.chunks[0], n);
                            lanes::store(self.b, &l, dst, 0)
                        }
                        Opnd::Mem(addr, _) => wide::copy(self.b, n, dst, Src::Mem(addr)),
                        Opnd::Reg(_) => return Err("slot gradient of the wrong width".into()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Update every row a large group of index nodes of table `t` names, by
    /// one runtime loop: rows and gradients go to scratch, and the first
    /// node naming a row applies the sum of the gradients of all nodes
    /// naming it. Code size stays linear in the group, where comparing each
    /// pair in straight-line code and updating per node would be quadratic.
    fn update_rows_loop(
        &mut self,
        options: &StepOptions,
        t: TableId,
        group: &[(NodeId, NodeId)],
    ) -> Result<(), String> {
        let n = self.g.tables[t.index()].shape.len();
        let k = group.len();
        // Rows as i64 (two lanes each); an invalid index is stored as −1,
        // which names no row.
        let (rows, rows_r) = self.temp(2 * k)?;
        let (grads, grads_r) = self.temp(k * n)?;
        for (j, &(ix, value)) in group.iter().enumerate() {
            let Some(Val::Index { row, valid }) = self.vals[ix.index()].clone() else {
                return Err("row gradient without an index".into());
            };
            let row = if self.b.func.dfg.value_type(row) == types::I64 {
                row
            } else {
                self.b.ins().uextend(types::I64, row)
            };
            let row = match valid {
                Some(v) => {
                    let none = self.b.ins().iconst(types::I64, -1);
                    self.b.ins().select(v, row, none)
                }
                None => row,
            };
            self.b.ins().store(mem(), row, rows, 8 * j as i32);
            let dst = wide::offset(self.b, grads, 4 * (n * j) as i64);
            match self.operand(value, None)? {
                Opnd::Reg(l) if l.n == n => lanes::store(self.b, &l, dst, 0),
                g => {
                    let (s, temp) = self.src(&g)?;
                    wide::copy(self.b, n, dst, s);
                    if let Some(r) = temp {
                        self.regions.give(r);
                    }
                }
            }
        }
        let (acc, acc_r) = self.temp(n)?;
        let i_var = self.b.declare_var(types::I64);
        let j_var = self.b.declare_var(types::I64);
        let zero = self.b.ins().iconst(types::I64, 0);
        self.b.def_var(i_var, zero);
        let header = self.b.create_block();
        let body = self.b.create_block();
        let seen_head = self.b.create_block();
        let seen_body = self.b.create_block();
        let seen_next = self.b.create_block();
        let sum_start = self.b.create_block();
        let sum_head = self.b.create_block();
        let sum_body = self.b.create_block();
        let sum_add = self.b.create_block();
        let sum_next = self.b.create_block();
        let apply = self.b.create_block();
        let next = self.b.create_block();
        let done = self.b.create_block();
        let row_at = |b: &mut FunctionBuilder, at: Value| {
            let off = b.ins().imul_imm_s(at, 8);
            let a = b.ins().iadd(rows, off);
            b.ins().load(types::I64, mem(), a, 0)
        };
        let grad_at = |b: &mut FunctionBuilder, at: Value| {
            let off = b.ins().imul_imm_s(at, 4 * n as i64);
            b.ins().iadd(grads, off)
        };
        self.b.ins().jump(header, &[]);
        // for i in 0..k
        self.b.switch_to_block(header);
        let i = self.b.use_var(i_var);
        let more = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThan, i, k as i64);
        self.b.ins().brif(more, body, &[], done, &[]);
        self.b.switch_to_block(body);
        let row = row_at(self.b, i);
        let invalid = self.b.ins().icmp_imm_s(IntCC::Equal, row, -1);
        self.b.def_var(j_var, zero);
        self.b.ins().brif(invalid, next, &[], seen_head, &[]);
        // Skip a row some j < i names: its update is j's.
        self.b.switch_to_block(seen_head);
        let j = self.b.use_var(j_var);
        let before = self.b.ins().icmp(IntCC::UnsignedLessThan, j, i);
        self.b.ins().brif(before, seen_body, &[], sum_start, &[]);
        self.b.switch_to_block(seen_body);
        let other = row_at(self.b, j);
        let same = self.b.ins().icmp(IntCC::Equal, other, row);
        self.b.ins().brif(same, next, &[], seen_next, &[]);
        self.b.switch_to_block(seen_next);
        let j1 = self.b.ins().iadd_imm_s(j, 1);
        self.b.def_var(j_var, j1);
        self.b.ins().jump(seen_head, &[]);
        // acc = Σ gradients of j ≥ i naming the row, in group order.
        self.b.switch_to_block(sum_start);
        let gi = grad_at(self.b, i);
        wide::copy(self.b, n, acc, Src::Mem(gi));
        let i1 = self.b.ins().iadd_imm_s(i, 1);
        self.b.def_var(j_var, i1);
        self.b.ins().jump(sum_head, &[]);
        self.b.switch_to_block(sum_head);
        let j = self.b.use_var(j_var);
        let more = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThan, j, k as i64);
        self.b.ins().brif(more, sum_body, &[], apply, &[]);
        self.b.switch_to_block(sum_body);
        let other = row_at(self.b, j);
        let same = self.b.ins().icmp(IntCC::Equal, other, row);
        self.b.ins().brif(same, sum_add, &[], sum_next, &[]);
        self.b.switch_to_block(sum_add);
        let gj = grad_at(self.b, j);
        let add = |b: &mut FunctionBuilder, x, y, _| b.ins().fadd(x, y);
        wide::zip(self.b, n, acc, Src::Mem(acc), Src::Mem(gj), add);
        self.b.ins().jump(sum_next, &[]);
        self.b.switch_to_block(sum_next);
        let j1 = self.b.ins().iadd_imm_s(j, 1);
        self.b.def_var(j_var, j1);
        self.b.ins().jump(sum_head, &[]);
        self.b.switch_to_block(apply);
        let g = if n <= self.register_lanes {
            Opnd::Reg(lanes::load(self.b, acc, 0, n))
        } else {
            Opnd::Mem(acc, n)
        };
        self.update_row(options, t, row, g)?;
        self.b.ins().jump(next, &[]);
        self.b.switch_to_block(next);
        let i1 = self.b.ins().iadd_imm_s(i, 1);
        self.b.def_var(i_var, i1);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(done);
        for r in [acc_r, grads_r, rows_r] {
            self.regions.give(r);
        }
        Ok(())
    }

    /// Update the row `ix` names, adding the gradients of other index nodes
    /// of the same table that name the same row; only the first of them
    /// applies the sum.
    fn update_shared_row(
        &mut self,
        options: &StepOptions,
        t: TableId,
        ix: NodeId,
        value: NodeId,
        group: &[(NodeId, NodeId)],
    ) -> Result<(), String> {
        let Some(Val::Index { row, valid }) = self.vals[ix.index()].clone() else {
            return Err("row gradient without an index".into());
        };
        let n = self.g.tables[t.index()].shape.len();
        let mut g = self.operand(value, None)?;
        // A wide sum is gathered in scratch.
        let mut sum: Option<(Value, (usize, usize))> = None;
        let mut first = valid;
        let me = group.iter().position(|(i, _)| *i == ix).unwrap_or(0);
        for (pos, &(other, other_value)) in group.iter().enumerate() {
            if other == ix {
                continue;
            }
            let Some(Val::Index {
                row: orow,
                valid: ovalid,
            }) = self.vals[other.index()].clone()
            else {
                return Err("row gradient without an index".into());
            };
            let mut same = self.b.ins().icmp(IntCC::Equal, row, orow);
            if let Some(ov) = ovalid {
                same = self.b.ins().band(same, ov);
            }
            let one = self.b.ins().f32const(1.0);
            let zero = self.b.ins().f32const(0.0);
            let flag = self.b.ins().select(same, one, zero);
            let og = self.operand(other_value, None)?;
            match (&g, &og) {
                (Opnd::Reg(gl), Opnd::Reg(ol)) if n <= self.register_lanes => {
                    let add = lanes::zip(self.b, ol, &scalar(flag), |b, x, y| b.ins().fmul(x, y));
                    g = Opnd::Reg(lanes::zip(self.b, gl, &add, |b, x, y| b.ins().fadd(x, y)));
                }
                _ => {
                    let acc = match sum {
                        Some((acc, _)) => acc,
                        None => {
                            let (acc, r) = self.temp(n)?;
                            let (gs, temp) = self.src(&g)?;
                            wide::copy(self.b, n, acc, gs);
                            if let Some(r) = temp {
                                self.regions.give(r);
                            }
                            sum = Some((acc, r));
                            g = Opnd::Mem(acc, n);
                            acc
                        }
                    };
                    let (os, temp) = self.src(&og)?;
                    wide::for_chunks(self.b, n, |b, off, vector| {
                        let a = wide::load(b, Src::Mem(acc), off, vector);
                        let o = wide::load(b, os, off, vector);
                        let f = wide::load(b, Src::Scalar(flag), off, vector);
                        let p = b.ins().fmul(o, f);
                        let s = b.ins().fadd(a, p);
                        wide::store(b, s, acc, off);
                    });
                    if let Some(r) = temp {
                        self.regions.give(r);
                    }
                }
            }
            if pos < me {
                let not_same = self.b.ins().bxor_imm_s(same, 1);
                first = Some(match first {
                    Some(f) => self.b.ins().band(f, not_same),
                    None => not_same,
                });
            }
        }
        match first {
            None => self.update_row(options, t, row, g)?,
            Some(cond) => {
                let then = self.b.create_block();
                let after = self.b.create_block();
                self.b.ins().brif(cond, then, &[], after, &[]);
                self.b.switch_to_block(then);
                self.update_row(options, t, row, g)?;
                self.b.ins().jump(after, &[]);
                self.b.switch_to_block(after);
            }
        }
        if let Some((_, r)) = sum {
            self.regions.give(r);
        }
        Ok(())
    }

    /// The optimiser's per-row constants and state addresses for one update
    /// (Adam counts the step here); `metric` scales the gradient first.
    fn rule(
        &mut self,
        options: &StepOptions,
        t: TableId,
        row: Value,
        metric: Option<Value>,
        nonneg: bool,
    ) -> (Rule, [Option<Value>; 2]) {
        let lr = self.hyper(self.layout.lr);
        let eps = self.b.ins().f32const(EPSILON);
        let mut rule = Rule {
            optimizer: options.optimizer,
            lr,
            eps,
            metric,
            nonneg,
            adam: None,
        };
        let state = match options.optimizer {
            Optimizer::Sgd => [None, None],
            Optimizer::Adagrad => [Some(self.row_addr(t, 1, row)), None],
            Optimizer::Adam { .. } => {
                let steps = self.table_word(t, 3);
                let sa = self.column_addr(steps, row, 4);
                let count = self.b.ins().load(types::I32, mem(), sa, 0);
                let count = self.b.ins().iadd_imm_s(count, 1);
                self.b.ins().store(mem(), count, sa, 0);
                let beta1 = self.word(self.layout.beta1);
                let beta2 = self.word(self.layout.beta2);
                let beta1 = self.b.ins().bitcast(types::F64, MemFlags::new(), beta1);
                let beta2 = self.b.ins().bitcast(types::F64, MemFlags::new(), beta2);
                // The corrections divide every lane: multiply by their
                // reciprocals instead (within an ulp of the quotient).
                let c1 = self.call_correction(beta1, count);
                let c2 = self.call_correction(beta2, count);
                let one = self.b.ins().f32const(1.0);
                let c1 = self.b.ins().fdiv(one, c1);
                let c2 = self.b.ins().fdiv(one, c2);
                let b1 = self.b.ins().fdemote(F32, beta1);
                let b2 = self.b.ins().fdemote(F32, beta2);
                let one = self.b.ins().f32const(1.0);
                let nb1 = self.b.ins().fsub(one, b1);
                let nb2 = self.b.ins().fsub(one, b2);
                rule.adam = Some([b1, nb1, b2, nb2, c1, c2]);
                [
                    Some(self.row_addr(t, 1, row)),
                    Some(self.row_addr(t, 2, row)),
                ]
            }
        };
        (rule, state)
    }

    /// The Poincaré metric's scale of a gradient at a point of squared norm
    /// `norm2`: steps shrink near the boundary.
    fn ball_metric(&mut self, norm2: Value) -> Value {
        let one = self.b.ins().f32const(1.0);
        let s = self.b.ins().fsub(one, norm2);
        let s2 = self.b.ins().fmul(s, s);
        let quarter = self.b.ins().f32const(0.25);
        self.b.ins().fmul(s2, quarter)
    }

    /// The factor that pulls a row of squared norm `norm2` back inside the ball.
    fn ball_shrink(&mut self, options: &StepOptions, norm2: Value) -> Value {
        let norm = self.b.ins().sqrt(norm2);
        let max = self.b.ins().f32const(options.max_ball_norm as f32);
        let outside = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, norm, max);
        let shrink = self.b.ins().fdiv(max, norm);
        let one = self.b.ins().f32const(1.0);
        self.b.ins().select(outside, shrink, one)
    }

    /// One optimiser step on one row, then its constraint; marks the row
    /// touched. A wide row is updated by a loop over its chunks.
    fn update_row(
        &mut self,
        options: &StepOptions,
        t: TableId,
        row: Value,
        grad: Opnd,
    ) -> Result<(), String> {
        let table = &self.g.tables[t.index()];
        let n = table.shape.len();
        let constraint = table.constraint;
        let ball = constraint == Constraint::Ball;
        let nonneg = constraint == Constraint::Nonneg;
        let addr = self.row_addr(t, 0, row);
        let in_registers = n <= self.register_lanes && matches!(grad, Opnd::Reg(_));
        if let (true, false, Opnd::Reg(g)) = (in_registers, ball, &grad) {
            // Chunk by chunk: load, step, store, so only one chunk of the
            // row and its state is live at a time (a 128-lane row and its
            // Adagrad or Adam state would not fit the registers at once).
            let (rule, state_addr) = self.rule(options, t, row, None, nonneg);
            let nv = Lanes::vectors(n);
            for c in 0..nv + n % 4 {
                let vector = c < nv;
                let at = if vector {
                    16 * c as i32
                } else {
                    4 * (4 * nv + (c - nv)) as i32
                };
                let ty = if vector { V4 } else { F32 };
                let v = self.b.ins().load(ty, mem(), addr, at);
                let gc = if g.n == n {
                    g.chunks[c]
                } else {
                    lanes::constant_of(self.b, g.chunks[0], vector)
                };
                let sc = state_addr.map(|a| a.map(|a| self.b.ins().load(ty, mem(), a, at)));
                let (nv_c, ns) = rule.chunk(self.b, v, gc, sc, vector);
                self.b.ins().store(mem(), nv_c, addr, at);
                for k in 0..2 {
                    if let (Some(a), Some(x)) = (state_addr[k], ns[k]) {
                        self.b.ins().store(mem(), x, a, at);
                    }
                }
            }
        } else if let (true, Opnd::Reg(g)) = (in_registers, &grad) {
            let v = lanes::load(self.b, addr, 0, n);
            let metric = if ball {
                let sq = lanes::zip(self.b, &v, &v, |b, x, y| b.ins().fmul(x, y));
                let norm2 = lanes::sum(self.b, &sq);
                Some(self.ball_metric(norm2))
            } else {
                None
            };
            let (rule, state_addr) = self.rule(options, t, row, metric, nonneg);
            let mut state: Vec<Option<Lanes>> = state_addr
                .iter()
                .map(|a| a.map(|a| lanes::load(self.b, a, 0, n)))
                .collect();
            let mut out = v.clone();
            for c in 0..v.chunks.len() {
                let vector = v.is_vector_chunk(c);
                let gc = if g.n == n {
                    g.chunks[c]
                } else {
                    lanes::constant_of(self.b, g.chunks[0], vector)
                };
                let sc = [0, 1].map(|k| state[k].as_ref().map(|l| l.chunks[c]));
                let (nv, ns) = rule.chunk(self.b, v.chunks[c], gc, sc, vector);
                out.chunks[c] = nv;
                for k in 0..2 {
                    if let (Some(l), Some(x)) = (state[k].as_mut(), ns[k]) {
                        l.chunks[c] = x;
                    }
                }
            }
            for (a, l) in state_addr.iter().zip(&state) {
                if let (Some(a), Some(l)) = (a, l) {
                    lanes::store(self.b, l, *a, 0);
                }
            }
            if ball {
                let sq = lanes::zip(self.b, &out, &out, |b, x, y| b.ins().fmul(x, y));
                let norm2 = lanes::sum(self.b, &sq);
                let f = scalar(self.ball_shrink(options, norm2));
                out = lanes::zip(self.b, &out, &f, |b, x, y| b.ins().fmul(x, y));
            }
            lanes::store(self.b, &out, addr, 0);
        } else {
            let (g, temp) = self.src(&grad)?;
            let metric = if ball {
                let norm2 = wide::dot(self.b, n, Src::Mem(addr), Src::Mem(addr));
                Some(self.ball_metric(norm2))
            } else {
                None
            };
            let (rule, state_addr) = self.rule(options, t, row, metric, nonneg);
            wide::for_chunks(self.b, n, |b, off, vector| {
                let v = wide::load(b, Src::Mem(addr), off, vector);
                let gc = wide::load(b, g, off, vector);
                let sc = state_addr.map(|a| a.map(|a| wide::load(b, Src::Mem(a), off, vector)));
                let (nv, ns) = rule.chunk(b, v, gc, sc, vector);
                wide::store(b, nv, addr, off);
                for k in 0..2 {
                    if let (Some(a), Some(x)) = (state_addr[k], ns[k]) {
                        wide::store(b, x, a, off);
                    }
                }
            });
            if ball {
                let norm2 = wide::dot(self.b, n, Src::Mem(addr), Src::Mem(addr));
                let f = self.ball_shrink(options, norm2);
                let mul = |b: &mut FunctionBuilder, x, y, _| b.ins().fmul(x, y);
                wide::zip(self.b, n, addr, Src::Mem(addr), Src::Scalar(f), mul);
            }
            if let Some(r) = temp {
                self.regions.give(r);
            }
        }
        let touched = self.table_word(t, 4);
        let ta = self.b.ins().iadd(touched, row);
        let one = self.b.ins().iconst(types::I8, 1);
        self.b.ins().store(mem(), one, ta, 0);
        Ok(())
    }

    /// A hyper-parameter word (f64 bits) as an f32.
    fn hyper(&mut self, w: usize) -> Value {
        let bits = self.word(w);
        let v = self.b.ins().bitcast(types::F64, MemFlags::new(), bits);
        self.b.ins().fdemote(F32, v)
    }

    fn call_correction(&mut self, beta: Value, count: Value) -> Value {
        let call = self
            .b
            .ins()
            .call(self.helpers.bias_correction, &[beta, count]);
        self.b.inst_results(call)[0]
    }
}

/// The operands an op reads to compute one member's value: an expansion
/// reads only its value, not the node it takes its shape from.
fn member_operands(op: Op) -> Vec<NodeId> {
    match op {
        Op::Expand(a, _) => vec![a],
        op => op.operands(),
    }
}

/// Row-gradient groups up to this size are updated by straight-line code,
/// pair by pair; larger ones by one loop (see `Gen::update_rows_loop`).
const UNROLLED_ROW_GROUP: usize = 4;

/// Tables whose row gradients are updated by one loop: more than
/// [`UNROLLED_ROW_GROUP`] index nodes, and no bag gradient whose updates
/// the loop could reorder against theirs.
fn looped_row_tables(g: &Graph) -> BTreeSet<TableId> {
    let mut counts: BTreeMap<TableId, usize> = BTreeMap::new();
    let mut bagged = BTreeSet::new();
    for gr in &g.grads {
        match gr.target {
            GradTarget::Row(t, _) => *counts.entry(t).or_default() += 1,
            GradTarget::BagRows(t, _) => {
                bagged.insert(t);
            }
            GradTarget::Global(_) | GradTarget::Slot(_) => {}
        }
    }
    counts
        .into_iter()
        .filter(|&(t, c)| c > UNROLLED_ROW_GROUP && !bagged.contains(&t))
        .map(|(t, _)| t)
        .collect()
}

/// One row update's optimiser, as constants of the step.
#[derive(Clone, Copy)]
struct Rule {
    optimizer: Optimizer,
    lr: Value,
    eps: Value,
    /// The ball's metric: the gradient's scale.
    metric: Option<Value>,
    /// Clip at zero after the step.
    nonneg: bool,
    /// Adam's β₁, 1 − β₁, β₂, 1 − β₂ and the reciprocals of the two bias
    /// corrections.
    adam: Option<[Value; 6]>,
}

impl Rule {
    /// The step on one chunk of a row: its new value and the optimiser's
    /// new state (Adagrad's sum of squares; Adam's two moments), in the
    /// evaluator's order of operations.
    fn chunk(
        &self,
        b: &mut FunctionBuilder,
        v: Value,
        g: Value,
        state: [Option<Value>; 2],
        vector: bool,
    ) -> (Value, [Option<Value>; 2]) {
        let c = |b: &mut FunctionBuilder, s: Value| lanes::constant_of(b, s, vector);
        let g = match self.metric {
            Some(m) => {
                let m = c(b, m);
                b.ins().fmul(g, m)
            }
            None => g,
        };
        let lr = c(b, self.lr);
        let eps = c(b, self.eps);
        let (step, state) = match (self.optimizer, state, self.adam) {
            (Optimizer::Adagrad, [Some(a), _], _) => {
                let g2 = b.ins().fmul(g, g);
                let a = b.ins().fadd(a, g2);
                let root = b.ins().sqrt(a);
                let den = b.ins().fadd(root, eps);
                let q = b.ins().fdiv(g, den);
                (b.ins().fmul(q, lr), [Some(a), None])
            }
            (Optimizer::Adam { .. }, [Some(m), Some(s)], Some(k)) => {
                let [b1, nb1, b2, nb2, c1, c2] = k.map(|x| c(b, x));
                let bm = b.ins().fmul(m, b1);
                let gm = b.ins().fmul(g, nb1);
                let m = b.ins().fadd(bm, gm);
                let bs = b.ins().fmul(s, b2);
                let g2 = b.ins().fmul(g, g);
                let gs = b.ins().fmul(g2, nb2);
                let s = b.ins().fadd(bs, gs);
                let mhat = b.ins().fmul(m, c1);
                let shat = b.ins().fmul(s, c2);
                let root = b.ins().sqrt(shat);
                let den = b.ins().fadd(root, eps);
                let q = b.ins().fdiv(mhat, den);
                (b.ins().fmul(q, lr), [Some(m), Some(s)])
            }
            _ => (b.ins().fmul(g, lr), [None, None]),
        };
        let mut v = b.ins().fsub(v, step);
        if self.nonneg {
            let z = lanes::constant(b, 0.0, vector);
            v = b.ins().fmax(v, z);
        }
        (v, state)
    }
}

/// `dst[r] = mat[r] · v` for each of `rows` rows of `v.n` lanes at `mat`.
fn matvec_rows(b: &mut FunctionBuilder, mat: Value, rows: usize, v: &Lanes, dst: Value) {
    let cols = v.n;
    let nv = Lanes::vectors(cols);
    wide::counted_loop(b, 4 * rows as i64, 4, |b, r4| {
        let at = b.ins().imul_imm_s(r4, cols as i64);
        let row = b.ins().iadd(mat, at);
        let mut parts: Vec<Value> = (0..nv)
            .map(|c| {
                let w = b.ins().load(V4, mem(), row, 16 * c as i32);
                b.ins().fmul(w, v.chunks[c])
            })
            .collect();
        while parts.len() > 1 {
            let mut next = Vec::with_capacity(parts.len().div_ceil(2));
            for pair in parts.chunks(2) {
                next.push(if pair.len() == 2 {
                    b.ins().fadd(pair[0], pair[1])
                } else {
                    pair[0]
                });
            }
            parts = next;
        }
        let mut total = parts.pop().map(|p| {
            let l = [0u8, 1, 2, 3].map(|k| b.ins().extractlane(p, k));
            let s01 = b.ins().fadd(l[0], l[1]);
            let s23 = b.ins().fadd(l[2], l[3]);
            b.ins().fadd(s01, s23)
        });
        for k in 0..cols % 4 {
            let w = b.ins().load(F32, mem(), row, 4 * (4 * nv + k) as i32);
            let p = b.ins().fmul(w, v.chunks[nv + k]);
            total = Some(match total {
                Some(t) => b.ins().fadd(t, p),
                None => p,
            });
        }
        let total = total.unwrap_or_else(|| b.ins().f32const(0.0));
        wide::store(b, total, dst, r4);
    });
}

struct LoopBlocks {
    header: cranelift_codegen::ir::Block,
    done: cranelift_codegen::ir::Block,
}

fn scalar(v: Value) -> Lanes {
    Lanes {
        n: 1,
        chunks: vec![v],
    }
}

/// 1 where `v > 0`, else 0.
/// `f` of one chunk (an `f32x4` vector or a scalar lane).
fn unary(b: &mut FunctionBuilder, f: UnaryFn, v: Value, vector: bool) -> Value {
    match f {
        UnaryFn::Neg => b.ins().fneg(v),
        UnaryFn::Abs => b.ins().fabs(v),
        UnaryFn::Sqrt => b.ins().sqrt(v),
        UnaryFn::Relu => {
            let z = lanes::constant(b, 0.0, vector);
            b.ins().fmax(v, z)
        }
        UnaryFn::Step => step(b, v, vector),
        UnaryFn::Sign => {
            let up = step(b, v, vector);
            let nv = b.ins().fneg(v);
            let down = step(b, nv, vector);
            b.ins().fsub(up, down)
        }
        UnaryFn::Exp => transcendental::exp(b, v, vector),
        UnaryFn::Log => transcendental::log(b, v, vector),
        UnaryFn::Sigmoid => transcendental::sigmoid(b, v, vector),
        UnaryFn::Softplus => transcendental::softplus(b, v, vector),
        UnaryFn::LogSigmoid => transcendental::log_sigmoid(b, v, vector),
        UnaryFn::Tanh => transcendental::tanh(b, v, vector),
    }
}

fn step(b: &mut FunctionBuilder, v: Value, vector: bool) -> Value {
    let zero = lanes::constant(b, 0.0, vector);
    let one = lanes::constant(b, 1.0, vector);
    let mask = b.ins().fcmp(FloatCC::GreaterThan, v, zero);
    if vector {
        let flags = MemFlags::new().with_endianness(Endianness::Little);
        let mask = b.ins().bitcast(V4, flags, mask);
        b.ins().bitselect(mask, one, zero)
    } else {
        b.ins().select(mask, one, zero)
    }
}
