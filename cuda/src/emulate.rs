//! A CPU interpreter of a [`KernelPlan`]: one warp of 32 lanes, run in Rust.
//!
//! Every lane keeps its own registers; a value spread over the warp is
//! computed lane by lane over the elements that lane holds, a butterfly
//! reads the other lane's register as `__shfl_xor_sync` would, a move
//! across lanes reads the source lane's register as `__shfl_sync` would,
//! and a loop over bag members runs the whole warp once per member. The
//! examples run one after another, so a run is deterministic: what the
//! GPU adds is only Hogwild's races between warps.
//!
//! Inputs are the columns the runtime lays out for the JIT (one per slot:
//! indices as `u32`, numbers and noise as `f32`, bags as offsets, members
//! and weights) and the tables as f32 rows with their optimiser state.
//! Every index and offset is checked here: a bad input is an
//! [`EmulateError`], never a panic.

use crate::plan::{
    Combine, Expr, Instr, KernelPlan, Layout, Output, Partial, RowStep, SlotInput, Update, ValueId,
    BUTTERFLY, EPSILON, WARP,
};
use recc_compiler::types::{BinaryFn, UnaryFn};

/// One slot's column over a block of examples.
#[derive(Clone, Copy, Debug)]
pub enum Column<'a> {
    /// Index and negative slots.
    Index(&'a [u32]),
    /// Real and inverse-count slots (one per example), noise slots (their
    /// lanes per example, one example after another).
    Real(&'a [f32]),
    Bag {
        /// `examples + 1` offsets into `members` and `weights`.
        offsets: &'a [u32],
        members: &'a [u32],
        weights: &'a [f32],
    },
}

/// One table's parameters and optimiser state, row-major (as the JIT's).
#[derive(Debug)]
pub struct TableMut<'a> {
    pub values: &'a mut [f32],
    /// Adagrad's squared-gradient sums or Adam's first moments (empty for SGD).
    pub first: &'a mut [f32],
    /// Adam's second moments (empty otherwise).
    pub second: &'a mut [f32],
    /// Adam: updates each row has had (empty otherwise).
    pub steps: &'a mut [u32],
    /// 1 for each row a step has updated.
    pub touched: &'a mut [u8],
}

/// Hyper-parameters a step reads at run time (f64, rounded to f32 where
/// the kernel uses them, as the JIT does).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
}

/// What a step over a block did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ran {
    /// Examples finished: all of them, or the first whose loss was not
    /// finite (its rows untouched, nothing after it run).
    pub done: usize,
    /// The summed loss of the examples finished.
    pub loss: f64,
}

/// The inputs do not fit the plan: a column missing or of the wrong kind,
/// an index outside its domain, a table too small.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{model}: {reason}")]
pub struct EmulateError {
    pub model: String,
    pub reason: String,
}

/// Run the step plan over `examples` examples of `columns`, updating
/// `tables` in place.
pub fn step(
    plan: &KernelPlan,
    columns: &[Column],
    examples: usize,
    domain_sizes: &[usize],
    tables: &mut [TableMut],
    hyper: Hyper,
) -> Result<Ran, EmulateError> {
    let Output::Step { loss, updates } = &plan.output else {
        return Err(error(plan, "a predict plan run as a step"));
    };
    check(
        plan,
        columns,
        examples,
        domain_sizes,
        tables.iter().map(|t| &*t.values),
    )?;
    let mut warp = Warp::new(plan, columns, domain_sizes);
    let mut total = 0.0;
    for k in 0..examples {
        {
            let views: Vec<&[f32]> = tables.iter().map(|t| &*t.values).collect();
            warp.example(k, &views)?;
        }
        let l = warp.uniform(*loss)?;
        if !l.is_finite() {
            return Ok(Ran {
                done: k,
                loss: total,
            });
        }
        total += f64::from(l);
        for u in updates {
            warp.update(u, tables, hyper)?;
        }
    }
    Ok(Ran {
        done: examples,
        loss: total,
    })
}

/// Run the predict plan over `examples` examples of `columns`, writing each
/// score to `scores`.
pub fn predict(
    plan: &KernelPlan,
    columns: &[Column],
    examples: usize,
    domain_sizes: &[usize],
    tables: &[&[f32]],
    scores: &mut [f32],
) -> Result<(), EmulateError> {
    let Output::Predict { score } = &plan.output else {
        return Err(error(plan, "a step plan run as a prediction"));
    };
    check(
        plan,
        columns,
        examples,
        domain_sizes,
        tables.iter().copied(),
    )?;
    if scores.len() < examples {
        return Err(error(
            plan,
            format!("{} scores for {examples} examples", scores.len()),
        ));
    }
    let mut warp = Warp::new(plan, columns, domain_sizes);
    for (k, out) in scores.iter_mut().enumerate().take(examples) {
        warp.example(k, tables)?;
        *out = warp.uniform(*score)?;
    }
    Ok(())
}

fn error(plan: &KernelPlan, reason: impl Into<String>) -> EmulateError {
    EmulateError {
        model: plan.model.clone(),
        reason: reason.into(),
    }
}

/// Every column of the kind and length its slot needs, every index and bag
/// member inside its domain, every table holding its domain's rows.
fn check<'t>(
    plan: &KernelPlan,
    columns: &[Column],
    examples: usize,
    domain_sizes: &[usize],
    tables: impl Iterator<Item = &'t [f32]>,
) -> Result<(), EmulateError> {
    let err = |reason: String| Err(error(plan, reason));
    if domain_sizes.len() != plan.domains.len() {
        return err(format!(
            "{} domain sizes for {} domains",
            domain_sizes.len(),
            plan.domains.len()
        ));
    }
    if columns.len() < plan.slots.len() {
        return err(format!(
            "{} columns for {} slots",
            columns.len(),
            plan.slots.len()
        ));
    }
    let size = |d: recc_compiler::ir::DomainId| domain_sizes.get(d.index()).copied().unwrap_or(0);
    for (s, (input, column)) in plan.slots.iter().zip(columns).enumerate() {
        match (input, column) {
            (SlotInput::Index(d), Column::Index(v)) => {
                if v.len() < examples {
                    return err(format!("slot {s}: {} of {examples} examples", v.len()));
                }
                if let Some(&bad) = v[..examples].iter().find(|&&i| i as usize >= size(*d)) {
                    return err(format!(
                        "slot {s}: index {bad} outside its domain of {}",
                        size(*d)
                    ));
                }
            }
            (SlotInput::Real, Column::Real(v)) => {
                if v.len() < examples {
                    return err(format!("slot {s}: {} of {examples} examples", v.len()));
                }
            }
            (SlotInput::Noise { lanes }, Column::Real(v)) => {
                if v.len() < examples * lanes {
                    return err(format!(
                        "slot {s}: {} noise values for {examples} examples of {lanes}",
                        v.len()
                    ));
                }
            }
            (
                SlotInput::Bag(d),
                Column::Bag {
                    offsets,
                    members,
                    weights,
                },
            ) => {
                if offsets.len() < examples + 1 {
                    return err(format!(
                        "slot {s}: {} bag offsets for {examples} examples",
                        offsets.len()
                    ));
                }
                if offsets[..=examples].windows(2).any(|w| w[1] < w[0]) {
                    return err(format!("slot {s}: bag offsets go backwards"));
                }
                let end = offsets[examples] as usize;
                if end > members.len() || end > weights.len() {
                    return err(format!("slot {s}: bag offsets past their members"));
                }
                let first = offsets[0] as usize;
                if let Some(&bad) = members[first..end]
                    .iter()
                    .find(|&&m| m as usize >= size(*d))
                {
                    return err(format!(
                        "slot {s}: member {bad} outside its domain of {}",
                        size(*d)
                    ));
                }
            }
            (input, _) => {
                return err(format!("slot {s}: the column does not hold {input:?}"));
            }
        }
    }
    let mut n = 0;
    for (t, values) in tables.enumerate() {
        let Some(table) = plan.tables.get(t) else {
            return err(format!("more tables than the plan's {}", plan.tables.len()));
        };
        let rows = table.domain.map_or(1, size);
        if values.len() < rows * table.lanes {
            return err(format!(
                "table {}: {} values for {rows} rows of {}",
                table.name,
                values.len(),
                table.lanes
            ));
        }
        n += 1;
    }
    if n != plan.tables.len() {
        return err(format!("{n} tables for the plan's {}", plan.tables.len()));
    }
    Ok(())
}

/// A register of every lane.
#[derive(Clone, Debug)]
enum Reg {
    Unset,
    /// Numbers: `registers × WARP`, register `r` of lane `j` at `r·32 + j`.
    Num(Vec<f32>),
    /// A row (the same in every lane) and its flag.
    Row {
        row: usize,
        valid: bool,
    },
    /// A bag slot, its bounds loaded for the example.
    Bag,
}

/// The current bag member inside a loop.
#[derive(Clone, Copy, Debug)]
struct Member {
    index: usize,
    row: usize,
    weight: f32,
}

struct Warp<'p, 'c> {
    plan: &'p KernelPlan,
    columns: &'p [Column<'c>],
    domain_sizes: &'p [usize],
    regs: Vec<Reg>,
    /// The example's bag bounds, by slot.
    bags: Vec<Option<(usize, usize)>>,
    /// Per-member values: `bag_lanes` floats per member.
    scratch: Vec<f32>,
    /// Values defined in the current loop iteration (read from registers;
    /// other per-member values are read from scratch).
    fresh: Vec<bool>,
    example: usize,
}

impl<'p, 'c> Warp<'p, 'c> {
    fn new(plan: &'p KernelPlan, columns: &'p [Column<'c>], domain_sizes: &'p [usize]) -> Self {
        Warp {
            plan,
            columns,
            domain_sizes,
            regs: vec![Reg::Unset; plan.values.len()],
            bags: vec![None; plan.slots.len()],
            scratch: Vec::new(),
            fresh: vec![false; plan.values.len()],
            example: 0,
        }
    }

    fn err(&self, reason: impl Into<String>) -> EmulateError {
        error(
            self.plan,
            format!("example {}: {}", self.example, reason.into()),
        )
    }

    fn layout(&self, v: ValueId) -> Result<Layout, EmulateError> {
        self.plan
            .values
            .get(v.index())
            .map(|i| i.layout)
            .ok_or_else(|| self.err(format!("{v} does not exist")))
    }

    fn num(&self, v: ValueId) -> Result<&[f32], EmulateError> {
        match self.regs.get(v.index()) {
            Some(Reg::Num(x)) => Ok(x),
            other => Err(self.err(format!("{v} is not a number here: {other:?}"))),
        }
    }

    fn row(&self, v: ValueId) -> Result<(usize, bool), EmulateError> {
        match self.regs.get(v.index()) {
            Some(Reg::Row { row, valid }) => Ok((*row, *valid)),
            other => Err(self.err(format!("{v} is not an index here: {other:?}"))),
        }
    }

    /// Lane 0's copy of a uniform value.
    fn uniform(&self, v: ValueId) -> Result<f32, EmulateError> {
        Ok(self.num(v)?[0])
    }

    fn example(&mut self, k: usize, tables: &[&[f32]]) -> Result<(), EmulateError> {
        self.example = k;
        let mut longest = 0;
        for (s, input) in self.plan.slots.iter().enumerate() {
            self.bags[s] = match (input, self.columns[s]) {
                (SlotInput::Bag(_), Column::Bag { offsets, .. }) => {
                    let start = offsets[k] as usize;
                    let len = offsets[k + 1] as usize - start;
                    longest = longest.max(len);
                    Some((start, len))
                }
                _ => None,
            };
        }
        let need = self.plan.bag_lanes * longest;
        if self.scratch.len() < need {
            self.scratch.resize(need, 0.0);
        }
        for r in &mut self.regs {
            *r = Reg::Unset;
        }
        let body = &self.plan.body;
        self.run(body, None, tables)
    }

    fn run(
        &mut self,
        body: &[Instr],
        member: Option<Member>,
        tables: &[&[f32]],
    ) -> Result<(), EmulateError> {
        for instr in body {
            match instr {
                Instr::Let { out, expr } => {
                    let reg = self.eval(*out, expr, member, tables)?;
                    self.regs[out.index()] = reg;
                    if let Some(m) = member {
                        self.fresh[out.index()] = true;
                        if let Some(at) = self.plan.values[out.index()].scratch {
                            self.store_member(*out, m.index, at)?;
                        }
                    }
                }
                Instr::ForMembers { slot, body } => {
                    let Some((start, len)) = self.bags.get(slot.index()).copied().flatten() else {
                        return Err(self.err(format!("a loop over {slot}, not a bag")));
                    };
                    let Column::Bag {
                        members, weights, ..
                    } = self.columns[slot.index()]
                    else {
                        return Err(self.err(format!("slot {slot} is not a bag column")));
                    };
                    for m in 0..len {
                        self.fresh.fill(false);
                        let at = start + m;
                        let member = Member {
                            index: m,
                            row: members[at] as usize,
                            weight: weights[at],
                        };
                        self.run(body, Some(member), tables)?;
                    }
                    self.fresh.fill(false);
                }
                Instr::Accumulate { acc, x } => {
                    let x_layout = self.layout(*x)?;
                    let x = self.operand(*x, member)?;
                    let acc_layout = self.layout(*acc)?;
                    let Some(Reg::Num(a)) = self.regs.get_mut(acc.index()) else {
                        return Err(error(self.plan, format!("{acc} is not an accumulator")));
                    };
                    for r in 0..acc_layout.registers() {
                        for lane in 0..WARP {
                            a[r * WARP + lane] += at(&x, x_layout, lane, r);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Write per-member value `v` to member `m`'s scratch at `at`: each
    /// lane its own elements (a uniform value: lane 0).
    fn store_member(&mut self, v: ValueId, m: usize, at: usize) -> Result<(), EmulateError> {
        let layout = self.layout(v)?;
        let n = layout
            .elements()
            .ok_or_else(|| self.err(format!("{v} kept per member is not a number")))?;
        let base = m * self.plan.bag_lanes + at;
        let Some(Reg::Num(x)) = self.regs.get(v.index()) else {
            return Err(self.err(format!("{v} has no value to keep")));
        };
        let dst = self
            .scratch
            .get_mut(base..base + n)
            .ok_or_else(|| error(self.plan, format!("{v}: scratch too small")))?;
        for (e, d) in dst.iter_mut().enumerate() {
            *d = x[(e / WARP) * WARP + e % WARP];
        }
        Ok(())
    }

    /// A numeric operand: its registers, or for a per-member value of an
    /// earlier loop, the current member's, loaded from scratch.
    fn operand(&self, v: ValueId, member: Option<Member>) -> Result<Vec<f32>, EmulateError> {
        let info = self
            .plan
            .values
            .get(v.index())
            .ok_or_else(|| self.err(format!("{v} does not exist")))?;
        match (info.member_of, info.scratch, member) {
            (Some(_), Some(at), Some(m)) if !self.fresh[v.index()] => {
                let n = info.layout.elements().unwrap_or(1);
                let base = m.index * self.plan.bag_lanes + at;
                let src = self
                    .scratch
                    .get(base..base + n)
                    .ok_or_else(|| self.err(format!("{v}: scratch too small")))?;
                let mut x = vec![0.0; info.layout.registers() * WARP];
                match info.layout {
                    Layout::Uniform => x.fill(src[0]),
                    _ => {
                        for (e, &s) in src.iter().enumerate() {
                            x[(e / WARP) * WARP + e % WARP] = s;
                        }
                    }
                }
                Ok(x)
            }
            (Some(_), _, None) => {
                Err(self.err(format!("{v}, one per member, read outside a loop")))
            }
            _ => Ok(self.num(v)?.to_vec()),
        }
    }

    fn table<'t>(&self, tables: &[&'t [f32]], t: usize) -> Result<&'t [f32], EmulateError> {
        tables
            .get(t)
            .copied()
            .ok_or_else(|| self.err(format!("no table {t}")))
    }

    /// Each lane's elements of `row` of `values` (`lanes` per row) into a
    /// value of `layout`, times `scale`.
    fn load_row(
        &self,
        values: &[f32],
        lanes: usize,
        row: usize,
        layout: Layout,
        scale: Option<f32>,
    ) -> Result<Vec<f32>, EmulateError> {
        let src = values
            .get(row * lanes..(row + 1) * lanes)
            .ok_or_else(|| self.err(format!("row {row} outside its table")))?;
        let mut x = vec![0.0; layout.registers() * WARP];
        for lane in 0..WARP {
            for r in 0..layout.registers() {
                let e = match layout {
                    Layout::Uniform => 0,
                    _ => r * WARP + lane,
                };
                if let Some(&v) = src.get(e) {
                    x[r * WARP + lane] = match scale {
                        Some(w) => v * w,
                        None => v,
                    };
                }
            }
        }
        Ok(x)
    }

    fn eval(
        &self,
        out: ValueId,
        expr: &Expr,
        member: Option<Member>,
        tables: &[&[f32]],
    ) -> Result<Reg, EmulateError> {
        let layout = self.layout(out)?;
        let regs = layout.registers();
        let k = self.example;
        let lanewise = |f: &mut dyn FnMut(usize, usize) -> f32| {
            let mut x = vec![0.0; regs * WARP];
            for lane in 0..WARP {
                for r in 0..regs {
                    x[r * WARP + lane] = f(lane, r);
                }
            }
            Reg::Num(x)
        };
        Ok(match expr {
            Expr::Const(c) => lanewise(&mut |_, _| *c),
            Expr::Zeros => lanewise(&mut |_, _| 0.0),
            Expr::Input(s) => match (self.plan.slots.get(s.index()), self.columns.get(s.index())) {
                (Some(SlotInput::Index(_)), Some(Column::Index(v))) => Reg::Row {
                    row: v[k] as usize,
                    valid: true,
                },
                (Some(SlotInput::Real), Some(Column::Real(v))) => lanewise(&mut |_, _| v[k]),
                (Some(SlotInput::Noise { lanes }), Some(Column::Real(v))) => {
                    let row = &v[k * lanes..(k + 1) * lanes];
                    lanewise(&mut |lane, r| match layout {
                        Layout::Uniform => row[0],
                        _ => row.get(r * WARP + lane).copied().unwrap_or(0.0),
                    })
                }
                (Some(SlotInput::Bag(_)), _) => {
                    if self.bags[s.index()].is_none() {
                        return Err(self.err(format!("bag slot {s} not loaded")));
                    }
                    Reg::Bag
                }
                _ => return Err(self.err(format!("slot {s} has no column of its kind"))),
            },
            Expr::Shift { index, by, domain } => {
                let (row, valid) = self.row(*index)?;
                let size = self.domain_sizes.get(domain.index()).copied().unwrap_or(0) as i64;
                let j = row as i64 + by;
                let ok = valid && j >= 0 && j < size;
                Reg::Row {
                    row: if ok { j as usize } else { 0 },
                    valid: ok,
                }
            }
            Expr::InRange(ix) => {
                let (_, valid) = self.row(*ix)?;
                lanewise(&mut |_, _| if valid { 1.0 } else { 0.0 })
            }
            Expr::Load { table, row } => {
                let values = self.table(tables, table.index())?;
                let lanes = self.plan.tables[table.index()].lanes;
                let (row, valid) = match row {
                    None => (0, true),
                    Some(ix) => self.row(*ix)?,
                };
                let x = self.load_row(values, lanes, row, layout, None)?;
                // Off the domain's end: zeros, as the evaluator reads.
                Reg::Num(if valid {
                    x
                } else {
                    x.iter().map(|v| v * 0.0).collect()
                })
            }
            Expr::MemberRow { table } => {
                let m = member.ok_or_else(|| self.err("a member's row outside a loop"))?;
                let values = self.table(tables, table.index())?;
                let lanes = self.plan.tables[table.index()].lanes;
                Reg::Num(self.load_row(values, lanes, m.row, layout, Some(m.weight))?)
            }
            Expr::MemberWeight => {
                let m = member.ok_or_else(|| self.err("a member's weight outside a loop"))?;
                lanewise(&mut |_, _| m.weight)
            }
            Expr::BagLen(s) => {
                let (_, len) = self
                    .bags
                    .get(s.index())
                    .copied()
                    .flatten()
                    .ok_or_else(|| self.err(format!("bag slot {s} not loaded")))?;
                let n = len.max(1) as f32;
                lanewise(&mut |_, _| n)
            }
            Expr::Unary(f, a) => {
                let la = self.layout(*a)?;
                let x = self.operand(*a, member)?;
                lanewise(&mut |lane, r| unary(*f, at(&x, la, lane, r)))
            }
            Expr::Binary(f, a, b) => {
                let (la, lb) = (self.layout(*a)?, self.layout(*b)?);
                let x = self.operand(*a, member)?;
                let y = self.operand(*b, member)?;
                lanewise(&mut |lane, r| binary(*f, at(&x, la, lane, r), at(&y, lb, lane, r)))
            }
            Expr::Broadcast { x, .. } | Expr::Copy(x) => {
                let lx = self.layout(*x)?;
                let v = self.operand(*x, member)?;
                lanewise(&mut |lane, r| at(&v, lx, lane, r))
            }
            Expr::Extract { x, index } => {
                let lx = self.layout(*x)?;
                let v = self.operand(*x, member)?;
                // Every lane reads the holder's register: a shuffle.
                lanewise(&mut |lane, _| match lx {
                    Layout::Uniform => v[lane],
                    _ => v
                        .get((index / WARP) * WARP + index % WARP)
                        .copied()
                        .unwrap_or(0.0),
                })
            }
            Expr::Partial(p) => Reg::Num(self.partial(*p, member)?),
            Expr::Butterfly { x, op } => {
                let mut v = self.operand(*x, member)?;
                v.truncate(WARP);
                for d in BUTTERFLY {
                    // Every lane reads its partner's value before any writes.
                    let before = v.clone();
                    for lane in 0..WARP {
                        let other = before[lane ^ d];
                        v[lane] = match op {
                            Combine::Sum => before[lane] + other,
                            Combine::Max => fmax(before[lane], other),
                        };
                    }
                }
                Reg::Num(v)
            }
            Expr::Move { len, pieces } => {
                let mut srcs = Vec::with_capacity(pieces.len());
                for p in pieces {
                    srcs.push((p, self.layout(p.src)?, self.operand(p.src, member)?));
                }
                lanewise(&mut |lane, r| {
                    let e = r * WARP + lane;
                    if e >= *len {
                        return 0.0;
                    }
                    for (p, ls, x) in &srcs {
                        if e >= p.dst_start && e < p.dst_start + p.len {
                            let s = e - p.dst_start + p.src_start;
                            // The source lane's register: a shuffle.
                            return match ls {
                                Layout::Uniform => x[lane],
                                _ => x.get((s / WARP) * WARP + s % WARP).copied().unwrap_or(0.0),
                            };
                        }
                    }
                    0.0
                })
            }
        })
    }

    /// Each lane's part of a reduction.
    fn partial(&self, p: Partial, member: Option<Member>) -> Result<Vec<f32>, EmulateError> {
        let mut out = vec![0.0; WARP];
        match p {
            Partial::Dot(a, b) => {
                let (la, lb) = (self.layout(a)?, self.layout(b)?);
                let (x, y) = (self.operand(a, member)?, self.operand(b, member)?);
                let n = la.elements().unwrap_or(1).max(lb.elements().unwrap_or(1));
                let spread = !(la == Layout::Uniform && lb == Layout::Uniform);
                for (lane, o) in out.iter_mut().enumerate() {
                    let mut acc = 0.0f32;
                    for r in 0..n.div_ceil(WARP) {
                        let e = r * WARP + lane;
                        if (spread && e < n) || (!spread && e == 0) {
                            acc += at(&x, la, lane, r) * at(&y, lb, lane, r);
                        }
                    }
                    *o = acc;
                }
            }
            Partial::Sum(a) | Partial::Max(a) => {
                let la = self.layout(a)?;
                let x = self.operand(a, member)?;
                let n = la.elements().unwrap_or(1);
                let max = matches!(p, Partial::Max(_));
                for (lane, o) in out.iter_mut().enumerate() {
                    let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
                    for r in 0..la.registers() {
                        let e = r * WARP + lane;
                        let held = match la {
                            Layout::Uniform => lane == 0,
                            _ => e < n,
                        };
                        if held {
                            let v = at(&x, la, lane, r);
                            acc = if max { fmax(acc, v) } else { acc + v };
                        }
                    }
                    *o = acc;
                }
            }
        }
        Ok(out)
    }

    /// Apply one update.
    fn update(
        &mut self,
        u: &Update,
        tables: &mut [TableMut],
        hyper: Hyper,
    ) -> Result<(), EmulateError> {
        let t = u.table().index();
        match u {
            Update::Global { grad, steps, .. } => {
                let g = self.grad_elements(*grad, self.num(*grad)?.to_vec(), t)?;
                self.update_row(tables, t, 0, &g, steps, hyper)
            }
            Update::Row {
                row,
                grad,
                also,
                unless,
                steps,
                ..
            } => {
                let (r, valid) = self.row(*row)?;
                if !valid {
                    return Ok(());
                }
                for other in unless {
                    let (o, ovalid) = self.row(*other)?;
                    if ovalid && o == r {
                        return Ok(());
                    }
                }
                let mut g = self.grad_elements(*grad, self.num(*grad)?.to_vec(), t)?;
                for (other, og) in also {
                    let (o, ovalid) = self.row(*other)?;
                    let flag = if ovalid && o == r { 1.0 } else { 0.0 };
                    let og = self.grad_elements(*og, self.num(*og)?.to_vec(), t)?;
                    for (a, b) in g.iter_mut().zip(&og) {
                        *a += b * flag;
                    }
                }
                self.update_row(tables, t, r, &g, steps, hyper)
            }
            Update::BagRows {
                slot, grad, steps, ..
            } => {
                let Some((start, len)) = self.bags.get(slot.index()).copied().flatten() else {
                    return Err(self.err(format!("an update over {slot}, not a bag")));
                };
                let Column::Bag { members, .. } = self.columns[slot.index()] else {
                    return Err(self.err(format!("slot {slot} is not a bag column")));
                };
                self.fresh.fill(false);
                // Members one after another: a row listed twice takes two steps.
                for m in 0..len {
                    let member = Member {
                        index: m,
                        row: members[start + m] as usize,
                        weight: 0.0,
                    };
                    let x = self.operand(*grad, Some(member))?;
                    let g = self.grad_elements(*grad, x, t)?;
                    self.update_row(tables, t, member.row, &g, steps, hyper)?;
                }
                Ok(())
            }
        }
    }

    /// A gradient's registers as the table row's elements, in warp layout
    /// (`registers × WARP`, element `e` at `(e / 32)·32 + e % 32`); a
    /// uniform gradient broadcasts over the row.
    fn grad_elements(&self, v: ValueId, x: Vec<f32>, t: usize) -> Result<Vec<f32>, EmulateError> {
        let layout = self.layout(v)?;
        let lanes = self.plan.tables[t].lanes;
        let regs = lanes.div_ceil(WARP);
        let mut g = vec![0.0; regs * WARP];
        for lane in 0..WARP {
            for r in 0..regs {
                g[r * WARP + lane] = at(&x, layout, lane, r);
            }
        }
        Ok(g)
    }

    /// One row's update steps, lane by lane over the row's elements.
    fn update_row(
        &self,
        tables: &mut [TableMut],
        t: usize,
        row: usize,
        grad: &[f32],
        steps: &[RowStep],
        hyper: Hyper,
    ) -> Result<(), EmulateError> {
        let n = self.plan.tables[t].lanes;
        let regs = n.div_ceil(WARP);
        let table = tables
            .get_mut(t)
            .ok_or_else(|| self.err(format!("no table {t}")))?;
        let range = row * n..(row + 1) * n;
        let Some(values) = table.values.get(range.clone()) else {
            return Err(self.err(format!("row {row} outside its table")));
        };
        // The row in warp layout: lane j holds elements j, j + 32, ….
        let mut v = vec![0.0f32; regs * WARP];
        v[..n].copy_from_slice(values);
        let mut g = grad.to_vec();
        let lr = hyper.lr as f32;
        let eps = EPSILON;
        let held = |e: usize| e < n;
        let norm2 = |v: &[f32]| {
            let mut p = [0.0f32; WARP];
            for (lane, acc) in p.iter_mut().enumerate() {
                for r in 0..regs {
                    let e = r * WARP + lane;
                    if held(e) {
                        *acc += v[e] * v[e];
                    }
                }
            }
            butterfly_sum(p)
        };
        for s in steps {
            match s {
                RowStep::BallMetric => {
                    let one_minus = 1.0 - norm2(&v);
                    let metric = (one_minus * one_minus) * 0.25;
                    for x in g.iter_mut() {
                        *x *= metric;
                    }
                }
                RowStep::Sgd => {
                    for e in (0..regs * WARP).filter(|&e| held(e)) {
                        v[e] -= g[e] * lr;
                    }
                }
                RowStep::Adagrad => {
                    let acc = table
                        .first
                        .get_mut(range.clone())
                        .ok_or_else(|| self.err("Adagrad's state is missing"))?;
                    for e in 0..n {
                        let a = acc[e] + g[e] * g[e];
                        acc[e] = a;
                        let den = a.sqrt() + eps;
                        v[e] -= (g[e] / den) * lr;
                    }
                }
                RowStep::Adam => {
                    let count = table
                        .steps
                        .get_mut(row)
                        .ok_or_else(|| self.err("Adam's step counts are missing"))?;
                    *count = count.wrapping_add(1);
                    let c = *count as i32;
                    let c1 = (1.0 - hyper.beta1.powi(c)) as f32;
                    let c2 = (1.0 - hyper.beta2.powi(c)) as f32;
                    let (b1, b2) = (hyper.beta1 as f32, hyper.beta2 as f32);
                    let (nb1, nb2) = (1.0 - b1, 1.0 - b2);
                    let (Some(m), Some(sq)) = (
                        table.first.get_mut(range.clone()),
                        table.second.get_mut(range.clone()),
                    ) else {
                        return Err(self.err("Adam's moments are missing"));
                    };
                    for e in 0..n {
                        let me = m[e] * b1 + g[e] * nb1;
                        let se = sq[e] * b2 + (g[e] * g[e]) * nb2;
                        m[e] = me;
                        sq[e] = se;
                        let den = (se / c2).sqrt() + eps;
                        v[e] -= ((me / c1) / den) * lr;
                    }
                }
                RowStep::Nonneg => {
                    for x in v.iter_mut().take(n) {
                        *x = fmax(*x, 0.0);
                    }
                }
                RowStep::BallShrink { max_norm } => {
                    let norm = norm2(&v).sqrt();
                    let f = if norm >= *max_norm {
                        max_norm / norm
                    } else {
                        1.0
                    };
                    for x in v.iter_mut().take(n) {
                        *x *= f;
                    }
                }
                RowStep::Touch => {
                    let flag = table
                        .touched
                        .get_mut(row)
                        .ok_or_else(|| self.err(format!("row {row} has no touched flag")))?;
                    *flag = 1;
                }
            }
        }
        if let Some(dst) = table.values.get_mut(range) {
            dst.copy_from_slice(&v[..n]);
        }
        Ok(())
    }
}

/// Register `r` of `lane` of a value of `layout`; a uniform value is the
/// same in every register.
fn at(x: &[f32], layout: Layout, lane: usize, r: usize) -> f32 {
    match layout {
        Layout::Uniform | Layout::PerLane => x[lane],
        _ => x.get(r * WARP + lane).copied().unwrap_or(0.0),
    }
}

fn butterfly_sum(mut v: [f32; WARP]) -> f32 {
    for d in BUTTERFLY {
        let before = v;
        for lane in 0..WARP {
            v[lane] = before[lane] + before[lane ^ d];
        }
    }
    v[0]
}

/// Cranelift's `fmax`, which the JIT uses: NaN if either is NaN.
fn fmax(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a > b || (a == b && b.is_sign_negative()) {
        a
    } else {
        b
    }
}

fn fmin(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a < b || (a == b && a.is_sign_negative()) {
        a
    } else {
        b
    }
}

/// One lane's unary function: the transcendental ones in f64 by the
/// evaluator's definitions, rounded (as the JIT's helpers compute them).
fn unary(f: UnaryFn, x: f32) -> f32 {
    match f {
        UnaryFn::Neg => -x,
        UnaryFn::Abs => x.abs(),
        UnaryFn::Sqrt => x.sqrt(),
        UnaryFn::Relu => fmax(x, 0.0),
        UnaryFn::Step => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        UnaryFn::Sign => {
            let up = if x > 0.0 { 1.0 } else { 0.0 };
            let down = if -x > 0.0 { 1.0 } else { 0.0 };
            up - down
        }
        UnaryFn::Exp
        | UnaryFn::Log
        | UnaryFn::Sigmoid
        | UnaryFn::LogSigmoid
        | UnaryFn::Softplus
        | UnaryFn::Tanh => f.apply(f64::from(x)) as f32,
    }
}

fn binary(f: BinaryFn, a: f32, b: f32) -> f32 {
    match f {
        BinaryFn::Add => a + b,
        BinaryFn::Sub => a - b,
        BinaryFn::Mul => a * b,
        BinaryFn::Div => a / b,
        BinaryFn::Max => fmax(a, b),
        BinaryFn::Min => fmin(a, b),
    }
}
