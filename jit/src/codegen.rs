//! IR → Cranelift: one function that runs a range of examples.
//!
//! Input: a graph (with gradients for a training step, forward only for
//! prediction), its [`ArgLayout`] and the optimiser. Output: the body of
//! `fn(args: *const u64, begin: u64, end: u64) -> u64` in a Cranelift
//! [`Function`]. For each example the kernel computes the forward values and
//! the gradients in registers (static shapes, `f32x4` chunks; bag-valued
//! nodes in a scratch area, one loop over the members each), then updates
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
use crate::layout::ArgLayout;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, Endianness, FuncRef, InstBuilder, MemFlagsData as MemFlags, StackSlotData,
    StackSlotKind, Value,
};
use cranelift_frontend::{FunctionBuilder, Variable};
use recc_compiler::ir::{GradTarget, Graph, NodeId, Op, SlotId, SlotKind, TableId, Ty};
use recc_compiler::model::{Constraint, Optimizer};
use recc_compiler::types::{BinaryFn, Shape, UnaryFn};
use std::collections::BTreeMap;

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

/// Imported helpers: transcendental functions (computed in f64 by the same
/// definitions the evaluator uses) and Adam's bias correction.
pub struct Helpers {
    pub unary: BTreeMap<UnaryFn, FuncRef>,
    /// `fn(beta: f64, steps: i32) -> f32`: `1 − betaˢᵗᵉᵖˢ`.
    pub bias_correction: FuncRef,
    /// `fn(addresses: *const u64, count: i64)`: prefetch each address.
    pub prefetch: FuncRef,
}

/// Unary functions the kernel calls out for instead of inlining.
pub const CALLED_UNARY: [UnaryFn; 6] = [
    UnaryFn::Exp,
    UnaryFn::Log,
    UnaryFn::Sigmoid,
    UnaryFn::LogSigmoid,
    UnaryFn::Softplus,
    UnaryFn::Tanh,
];

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
    /// Per-member lanes in scratch: the region's address.
    BagNum {
        base: Value,
        lanes: usize,
    },
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
                    GradTarget::Global(_) => {}
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

/// Build the kernel into `b` (a fresh function with the kernel signature).
pub fn build_kernel(
    b: &mut FunctionBuilder,
    g: &Graph,
    layout: &ArgLayout,
    kind: KernelKind,
    prefetch: usize,
    helpers: &Helpers,
) -> Result<(), String> {
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let (args, begin, end) = (params[0], params[1], params[2]);
    let words: Vec<Value> = (0..layout.words)
        .map(|w| b.ins().load(types::I64, mem(), args, 8 * w as i32))
        .collect();
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
    let mut gen = Gen {
        b,
        g,
        layout,
        words,
        helpers,
        k,
        vals: vec![None; g.nodes.len()],
        bags: vec![None; g.slots.len()],
    };
    gen.example(kind, prefetch, end, exit, loss_var)?;
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
    /// The current example.
    k: Value,
    vals: Vec<Option<Val>>,
    bags: Vec<Option<BagSlot>>,
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
        kind: KernelKind,
        prefetch: usize,
        end: Value,
        exit: cranelift_codegen::ir::Block,
        loss_var: Variable,
    ) -> Result<(), String> {
        let live = live_nodes(self.g, &kind);
        // The bags of this example: offsets[k] .. offsets[k + 1].
        for (s, slot) in self.g.slots.iter().enumerate() {
            if !matches!(slot.kind, SlotKind::Bag { .. }) {
                continue;
            }
            let w = self.layout.slot[s];
            let (offsets, members, weights) = (self.word(w), self.word(w + 1), self.word(w + 2));
            let off = self.load_u32(offsets, self.k);
            let k1 = self.b.ins().iadd_imm_s(self.k, 1);
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
            self.prefetch(&live, prefetch, end);
        }
        for (i, &needed) in live.iter().enumerate() {
            if needed {
                let v = self.node(NodeId(i as u32))?;
                self.vals[i] = Some(v);
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
    /// when its turn comes. Cranelift has no prefetch instruction, and a
    /// plain load of a far-away row would hold up retirement until it
    /// arrives, so the kernel collects the rows' cache lines on the stack
    /// and calls a helper that issues `prefetcht0` for each. The call comes
    /// first in the example, before any vector is live across it.
    fn prefetch(&mut self, live: &[bool], distance: usize, end: Value) {
        let mut rows: Vec<(TableId, SlotId)> = Vec::new();
        for (i, n) in self.g.nodes.iter().enumerate() {
            let Op::Gather(t, ix) = n.op else { continue };
            let Op::Slot(s) = self.g.node(ix).op else {
                continue;
            };
            if live[i] && !rows.contains(&(t, s)) {
                rows.push((t, s));
            }
        }
        let lines: usize = rows
            .iter()
            .map(|&(t, _)| (self.row_bytes(t) as usize).div_ceil(64))
            .sum();
        if lines == 0 {
            return;
        }
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            8 * lines as u32,
            3,
        ));
        let ahead = self.b.ins().iadd_imm_s(self.k, distance as i64);
        let last = self.b.ins().iadd_imm_s(end, -1);
        let ahead = self.b.ins().umin(ahead, last);
        let mut index_of: Vec<(SlotId, Value)> = Vec::new();
        let mut at = 0;
        for (t, s) in rows {
            let row = match index_of.iter().find(|(x, _)| *x == s) {
                Some(&(_, v)) => v,
                None => {
                    let column = self.word(self.layout.slot[s.index()]);
                    let v = self.load_u32(column, ahead);
                    index_of.push((s, v));
                    v
                }
            };
            let addr = self.row_addr(t, 0, row);
            for line in (0..self.row_bytes(t)).step_by(64) {
                let a = self.b.ins().iadd_imm_s(addr, line);
                self.b.ins().stack_store(types::I64, a, slot, 8 * at);
                at += 1;
            }
        }
        let base = self.b.ins().stack_addr(types::I64, slot, 0);
        let count = self.b.ins().iconst(types::I64, lines as i64);
        self.b.ins().call(self.helpers.prefetch, &[base, count]);
    }

    fn node(&mut self, id: NodeId) -> Result<Val, String> {
        let n = *self.g.node(id);
        if let (Some(_), Some(_)) = (n.ty.bag(), n.ty.shape()) {
            if !matches!(n.op, Op::Slot(_)) {
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
                    SlotKind::Index(_) | SlotKind::Negative { .. } => {
                        let row = self.load_u32(self.word(w), self.k);
                        Val::Index { row, valid: None }
                    }
                    SlotKind::Real | SlotKind::InverseCount(_) => {
                        let a = self.column_addr(self.word(w), self.k, 4);
                        let v = self.b.ins().load(F32, mem(), a, 0);
                        Val::Num(Lanes {
                            n: 1,
                            chunks: vec![v],
                        })
                    }
                    SlotKind::Bag { .. } => Val::Bag(s),
                    SlotKind::Noise(shape) => {
                        let a = self.column_addr(self.word(w), self.k, 4 * shape.len() as i64);
                        Val::Num(lanes::load(self.b, a, 0, shape.len()))
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
                Val::Num(lanes::load(self.b, base, 0, lanes_of(n.ty)))
            }
            Op::Gather(t, ix) => {
                let Some(Val::Index { row, valid }) = self.vals[ix.index()].clone() else {
                    return Err("gather with a non-index".into());
                };
                let addr = self.row_addr(t, 0, row);
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
            Op::SumBag(x) => Val::Num(self.sum_bag(x)?),
            Op::GatherBag(..) | Op::BagWeights(_) => {
                return Err("a bag op typed as a non-bag".into());
            }
            op => {
                let args = op
                    .operands()
                    .iter()
                    .map(|&o| self.lanes(o))
                    .collect::<Result<Vec<_>, _>>()?;
                Val::Num(self.pure(op, n.ty, &args)?)
            }
        })
    }

    fn bag(&self, slot: SlotId) -> Result<BagSlot, String> {
        self.bags[slot.index()].ok_or_else(|| format!("bag slot {slot} not loaded"))
    }

    /// The operand `id` for member `m` of a bag loop.
    fn member_operand(&mut self, id: NodeId, m: Value) -> Result<Lanes, String> {
        match self.vals[id.index()].clone() {
            Some(Val::Num(l)) => Ok(l),
            Some(Val::BagNum { base, lanes }) => {
                let a = self.column_addr(base, m, 4 * lanes as i64);
                Ok(lanes::load(self.b, a, 0, lanes))
            }
            other => Err(format!("{id} is not a number: {other:?}")),
        }
    }

    /// Open a loop over the members of `slot`; returns the member index and
    /// the block to continue with after [`Gen::close_loop`].
    fn open_loop(&mut self, slot: SlotId) -> Result<(Variable, Value, LoopBlocks), String> {
        let bag = self.bag(slot)?;
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

    /// A bag-valued node: one loop over the members, results in scratch.
    fn bag_node(&mut self, id: NodeId) -> Result<Val, String> {
        let n = *self.g.node(id);
        let slot = n.ty.bag().ok_or("bag node without a bag")?;
        let lanes_n = n.ty.shape().map_or(1, Shape::len);
        let region = self.layout.region(id).ok_or("bag node without scratch")?;
        let scratch = self.word(self.layout.scratch);
        let cap = self.word(self.layout.bag_cap);
        let off = self.b.ins().imul_imm_s(cap, 4 * region as i64);
        let base = self.b.ins().iadd(scratch, off);
        let bag = self.bag(slot)?;
        let (m_var, m, blocks) = self.open_loop(slot)?;
        let value = match n.op {
            Op::GatherBag(t, _) => {
                let (row, w) = self.member(bag, m);
                let addr = self.row_addr(t, 0, row);
                let v = lanes::load(self.b, addr, 0, lanes_n);
                let w = Lanes {
                    n: 1,
                    chunks: vec![w],
                };
                lanes::zip(self.b, &v, &w, |b, x, y| b.ins().fmul(x, y))
            }
            Op::BagWeights(_) => {
                let (_, w) = self.member(bag, m);
                Lanes {
                    n: 1,
                    chunks: vec![w],
                }
            }
            op => {
                let args = op
                    .operands()
                    .iter()
                    .map(|&o| self.member_operand(o, m))
                    .collect::<Result<Vec<_>, _>>()?;
                self.pure(op, n.ty, &args)?
            }
        };
        let a = self.column_addr(base, m, 4 * lanes_n as i64);
        lanes::store(self.b, &value, a, 0);
        self.close_loop(m_var, m, blocks);
        Ok(Val::BagNum {
            base,
            lanes: lanes_n,
        })
    }

    fn sum_bag(&mut self, x: NodeId) -> Result<Lanes, String> {
        let slot = self.g.ty(x).bag().ok_or("sum_bag of a non-bag")?;
        let n = self.g.ty(x).shape().map_or(1, Shape::len);
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
        let (m_var, m, blocks) = self.open_loop(slot)?;
        let v = self.member_operand(x, m)?;
        for (var, &c) in vars.iter().zip(&v.chunks) {
            let acc = self.b.use_var(*var);
            let s = self.b.ins().fadd(acc, c);
            self.b.def_var(*var, s);
        }
        self.close_loop(m_var, m, blocks);
        let chunks = vars.iter().map(|v| self.b.use_var(*v)).collect();
        Ok(Lanes { n, chunks })
    }

    fn call_unary(&mut self, f: UnaryFn, x: &Lanes) -> Result<Lanes, String> {
        let func = *self
            .helpers
            .unary
            .get(&f)
            .ok_or_else(|| format!("no helper for {}", f.name()))?;
        let xs = lanes::scalars(self.b, x);
        let ys: Vec<Value> = xs
            .iter()
            .map(|&v| {
                let call = self.b.ins().call(func, &[v]);
                self.b.inst_results(call)[0]
            })
            .collect();
        Ok(lanes::from_scalars(self.b, &ys))
    }

    /// Ops whose value depends only on their operands' lanes: the same code
    /// serves a plain value and one member of a bag value.
    fn pure(&mut self, op: Op, ty: Ty, args: &[Lanes]) -> Result<Lanes, String> {
        let out_n = ty.shape().map_or(1, Shape::len);
        let b = &mut *self.b;
        Ok(match op {
            Op::Unary(f, _) => {
                let x = &args[0];
                match f {
                    UnaryFn::Neg => lanes::map(b, x, |b, v, _| b.ins().fneg(v)),
                    UnaryFn::Abs => lanes::map(b, x, |b, v, _| b.ins().fabs(v)),
                    UnaryFn::Sqrt => lanes::map(b, x, |b, v, _| b.ins().sqrt(v)),
                    UnaryFn::Relu => lanes::map(b, x, |b, v, vector| {
                        let z = lanes::constant(b, 0.0, vector);
                        b.ins().fmax(v, z)
                    }),
                    UnaryFn::Step => lanes::map(b, x, step),
                    UnaryFn::Sign => lanes::map(b, x, |b, v, vector| {
                        let up = step(b, v, vector);
                        let nv = b.ins().fneg(v);
                        let down = step(b, nv, vector);
                        b.ins().fsub(up, down)
                    }),
                    _ => return self.call_unary(f, x),
                }
            }
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
                let e = self.call_unary(UnaryFn::Exp, &shifted)?;
                let b = &mut *self.b;
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
        for gr in self.g.grads.clone() {
            match gr.target {
                GradTarget::Global(t) => {
                    let g = self.lanes(gr.value)?;
                    let row = self.b.ins().iconst(types::I64, 0);
                    self.update_row(options, t, row, g);
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
                    let b = self.bag(slot)?;
                    let (m_var, m, blocks) = self.open_loop(slot)?;
                    let (row, _) = self.member(b, m);
                    let g = self.member_operand(gr.value, m)?;
                    self.update_row(options, t, row, g);
                    self.close_loop(m_var, m, blocks);
                }
            }
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
        let mut g = self.lanes(value)?;
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
            let flag = scalar(self.b.ins().select(same, one, zero));
            let og = self.lanes(other_value)?;
            let add = lanes::zip(self.b, &og, &flag, |b, x, y| b.ins().fmul(x, y));
            g = lanes::zip(self.b, &g, &add, |b, x, y| b.ins().fadd(x, y));
            if pos < me {
                let not_same = self.b.ins().bxor_imm_s(same, 1);
                first = Some(match first {
                    Some(f) => self.b.ins().band(f, not_same),
                    None => not_same,
                });
            }
        }
        match first {
            None => self.update_row(options, t, row, g),
            Some(cond) => {
                let then = self.b.create_block();
                let after = self.b.create_block();
                self.b.ins().brif(cond, then, &[], after, &[]);
                self.b.switch_to_block(then);
                self.update_row(options, t, row, g);
                self.b.ins().jump(after, &[]);
                self.b.switch_to_block(after);
            }
        }
        Ok(())
    }

    /// One optimiser step on one row, then its constraint; marks the row touched.
    fn update_row(&mut self, options: &StepOptions, t: TableId, row: Value, grad: Lanes) {
        let table = &self.g.tables[t.index()];
        let n = table.shape.len();
        let constraint = table.constraint;
        let lr = self.hyper(self.layout.lr);
        let addr = self.row_addr(t, 0, row);
        let v = lanes::load(self.b, addr, 0, n);
        let mut g = grad;
        if constraint == Constraint::Ball {
            // The Poincaré metric: steps shrink near the boundary.
            let sq = lanes::zip(self.b, &v, &v, |b, x, y| b.ins().fmul(x, y));
            let norm2 = lanes::sum(self.b, &sq);
            let one = self.b.ins().f32const(1.0);
            let s = self.b.ins().fsub(one, norm2);
            let s2 = self.b.ins().fmul(s, s);
            let quarter = self.b.ins().f32const(0.25);
            let scale = scalar(self.b.ins().fmul(s2, quarter));
            g = lanes::zip(self.b, &g, &scale, |b, x, y| b.ins().fmul(x, y));
        }
        let lr = scalar(lr);
        let eps = scalar(self.b.ins().f32const(EPSILON));
        let step = match options.optimizer {
            Optimizer::Sgd => lanes::zip(self.b, &g, &lr, |b, x, y| b.ins().fmul(x, y)),
            Optimizer::Adagrad => {
                let aaddr = self.row_addr(t, 1, row);
                let a = lanes::load(self.b, aaddr, 0, n);
                let g2 = lanes::zip(self.b, &g, &g, |b, x, y| b.ins().fmul(x, y));
                let a = lanes::zip(self.b, &a, &g2, |b, x, y| b.ins().fadd(x, y));
                lanes::store(self.b, &a, aaddr, 0);
                let root = lanes::map(self.b, &a, |b, x, _| b.ins().sqrt(x));
                let den = lanes::zip(self.b, &root, &eps, |b, x, y| b.ins().fadd(x, y));
                let q = lanes::zip(self.b, &g, &den, |b, x, y| b.ins().fdiv(x, y));
                lanes::zip(self.b, &q, &lr, |b, x, y| b.ins().fmul(x, y))
            }
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
                let c1 = self.call_correction(beta1, count);
                let c2 = self.call_correction(beta2, count);
                let b1 = self.b.ins().fdemote(F32, beta1);
                let b2 = self.b.ins().fdemote(F32, beta2);
                let one = self.b.ins().f32const(1.0);
                let nb1 = scalar(self.b.ins().fsub(one, b1));
                let nb2 = scalar(self.b.ins().fsub(one, b2));
                let (b1, b2) = (scalar(b1), scalar(b2));
                let maddr = self.row_addr(t, 1, row);
                let saddr = self.row_addr(t, 2, row);
                let m = lanes::load(self.b, maddr, 0, n);
                let s = lanes::load(self.b, saddr, 0, n);
                let mul = |b: &mut FunctionBuilder, x: Value, y: Value| b.ins().fmul(x, y);
                let add = |b: &mut FunctionBuilder, x: Value, y: Value| b.ins().fadd(x, y);
                let bm = lanes::zip(self.b, &m, &b1, mul);
                let gm = lanes::zip(self.b, &g, &nb1, mul);
                let m = lanes::zip(self.b, &bm, &gm, add);
                let bs = lanes::zip(self.b, &s, &b2, mul);
                let g2 = lanes::zip(self.b, &g, &g, mul);
                let gs = lanes::zip(self.b, &g2, &nb2, mul);
                let s = lanes::zip(self.b, &bs, &gs, add);
                lanes::store(self.b, &m, maddr, 0);
                lanes::store(self.b, &s, saddr, 0);
                let mhat = lanes::zip(self.b, &m, &scalar(c1), |b, x, y| b.ins().fdiv(x, y));
                let shat = lanes::zip(self.b, &s, &scalar(c2), |b, x, y| b.ins().fdiv(x, y));
                let root = lanes::map(self.b, &shat, |b, x, _| b.ins().sqrt(x));
                let den = lanes::zip(self.b, &root, &eps, add);
                let q = lanes::zip(self.b, &mhat, &den, |b, x, y| b.ins().fdiv(x, y));
                lanes::zip(self.b, &q, &lr, mul)
            }
        };
        let mut v = lanes::zip(self.b, &v, &step, |b, x, y| b.ins().fsub(x, y));
        match constraint {
            Constraint::None => {}
            Constraint::Nonneg => {
                v = lanes::map(self.b, &v, |b, x, vector| {
                    let z = lanes::constant(b, 0.0, vector);
                    b.ins().fmax(x, z)
                })
            }
            Constraint::Ball => {
                let sq = lanes::zip(self.b, &v, &v, |b, x, y| b.ins().fmul(x, y));
                let norm2 = lanes::sum(self.b, &sq);
                let norm = self.b.ins().sqrt(norm2);
                let max = self.b.ins().f32const(options.max_ball_norm as f32);
                let outside = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, norm, max);
                let shrink = self.b.ins().fdiv(max, norm);
                let one = self.b.ins().f32const(1.0);
                let f = scalar(self.b.ins().select(outside, shrink, one));
                v = lanes::zip(self.b, &v, &f, |b, x, y| b.ins().fmul(x, y));
            }
        }
        lanes::store(self.b, &v, addr, 0);
        let touched = self.table_word(t, 4);
        let ta = self.b.ins().iadd(touched, row);
        let one = self.b.ins().iconst(types::I8, 1);
        self.b.ins().store(mem(), one, ta, 0);
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
