//! The grouped schedule of a model whose history is pooled
//! (`recc_compiler::hoist`): the examples of one user run together, the
//! history's rows frozen for the group.
//!
//! Per group: each distinct member's pooled value is computed once from
//! the rows as they stand; each example's pooled inputs are the sums over
//! its history; the hoisted step runs the group's examples (updating every
//! other table per example, as the per-example schedule does) and writes
//! the loss's gradient with respect to each pooled input; each member
//! accumulates those gradients once per occurrence in a history; and the
//! member step applies the accumulated gradient to each distinct member's
//! rows once, with the model's optimiser. The cost per example is the sum
//! over its history of a vector add, where the per-example schedule reads
//! and updates every member row.

use crate::bind::{Columns, SlotColumn};
use crate::data::Dataset;
use crate::native::{Hyper, InputError, Runner, TableWords};
use crate::session::Session;
use rand::rngs::StdRng;
use recc_compiler::hoist::{HoistPlan, MemberValue};
use recc_jit::Kernel;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Examples between progress reports (and interrupt checks).
const REPORT_EVERY: usize = 4096;

/// Rows grouped by the user whose history they read, in data order; rows
/// with no user are each a group of their own.
pub fn user_groups(data: &Dataset, rows: &[usize]) -> Vec<Vec<usize>> {
    let Some((_, users)) = data.users() else {
        return rows.iter().map(|&r| vec![r]).collect();
    };
    let mut by_user: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for &r in rows {
        by_user.entry(users[r]).or_default().push(r);
    }
    by_user.into_values().collect()
}

/// What every thread of a grouped epoch shares.
pub struct GroupJob<'a> {
    pub session: &'a Session,
    pub data: &'a Dataset,
    pub plan: &'a HoistPlan,
    pub step: &'a Kernel,
    pub member: &'a Kernel,
    pub tables: &'a TableWords,
    /// Lanes of each table.
    pub lanes: &'a [usize],
    pub sizes: &'a [usize],
    pub hyper: Hyper,
}

/// What one thread's share of a grouped epoch did.
pub struct GroupsRan {
    pub done: usize,
    pub loss: f64,
    pub stop: Option<GroupStop>,
}

pub enum GroupStop {
    /// A loss was not finite: the example (0-based, in this share's order).
    Loss,
    Input(InputError),
    Halted,
}

/// Per-thread buffers, kept from group to group.
struct Buffers {
    columns: Columns,
    members: Columns,
    step: Runner,
    member: Runner,
    /// Per member of the bag's domain: its place in `distinct` plus 1 when
    /// `seen == stamp`.
    local: Vec<u32>,
    seen: Vec<u32>,
    stamp: u32,
    distinct: Vec<u32>,
    /// Per pooled value: each distinct member's value, then its adjoint.
    values: Vec<Vec<f32>>,
    adjoints: Vec<Vec<f32>>,
}

impl GroupJob<'_> {
    /// Train on `groups` (each a user's rows, in the order to run them).
    /// `report` is told the examples done and their summed loss every few
    /// thousand examples and returns false to stop.
    pub fn run(
        &self,
        groups: &[&[usize]],
        rng: &mut StdRng,
        report: &mut dyn FnMut(usize, f64) -> bool,
        shared: Option<(&AtomicBool, &AtomicUsize)>,
    ) -> GroupsRan {
        let binding = &self.session.binding;
        let plan = self.plan;
        let mut columns = binding.columns();
        for _ in binding_slots(self.session)..plan.step.slots.len() {
            columns.slots.push(SlotColumn::Real(Vec::new()));
        }
        let mut members = Columns {
            slots: plan
                .member
                .slots
                .iter()
                .enumerate()
                .map(|(s, _)| {
                    if s == plan.member_index.index() {
                        SlotColumn::Index(Vec::new())
                    } else {
                        SlotColumn::Real(Vec::new())
                    }
                })
                .collect(),
            len: 0,
        };
        members.clear();
        let domain = match plan.member.slots[plan.member_index.index()].kind {
            recc_compiler::ir::SlotKind::Index(d) => self.sizes[d.index()],
            _ => 0,
        };
        let mut buf = Buffers {
            columns,
            members,
            step: Runner::new(),
            member: Runner::new(),
            local: vec![0; domain],
            seen: vec![0; domain],
            stamp: 0,
            distinct: Vec::new(),
            values: vec![Vec::new(); plan.pooled.len()],
            adjoints: vec![Vec::new(); plan.pooled.len()],
        };
        let (mut done, mut loss) = (0usize, 0.0);
        let mut since_report = 0;
        let stop = 'groups: {
            for (g, rows) in groups.iter().enumerate() {
                if shared.is_some_and(|(stop, _)| stop.load(Ordering::Relaxed)) {
                    break 'groups Some(GroupStop::Halted);
                }
                match self.group(rows, rng, &mut buf) {
                    Ok((n, l)) => {
                        done += n;
                        loss += l;
                        since_report += n;
                        if n < rows.len() {
                            break 'groups Some(GroupStop::Loss);
                        }
                    }
                    Err(e) => break 'groups Some(GroupStop::Input(e)),
                }
                if since_report >= REPORT_EVERY {
                    if let Some((_, progress)) = shared {
                        progress.fetch_add(since_report, Ordering::Relaxed);
                    }
                    since_report = 0;
                    if !report(done, loss) && g + 1 < groups.len() {
                        break 'groups Some(GroupStop::Halted);
                    }
                }
            }
            None
        };
        if let Some((_, progress)) = shared {
            progress.fetch_add(since_report, Ordering::Relaxed);
        }
        if let (Some((flag, _)), Some(_)) = (shared, &stop) {
            flag.store(true, Ordering::Relaxed);
        }
        GroupsRan { done, loss, stop }
    }

    /// One user's examples. Returns the examples finished and their loss.
    fn group(
        &self,
        rows: &[usize],
        rng: &mut StdRng,
        buf: &mut Buffers,
    ) -> Result<(usize, f64), InputError> {
        let plan = self.plan;
        let binding = &self.session.binding;
        buf.columns.clear();
        binding.encode_rows(self.data, rows, rng, true, &mut buf.columns);
        let n = buf.columns.len;
        let SlotColumn::Bag {
            offsets, members, ..
        } = &buf.columns.slots[plan.bag.index()]
        else {
            return Err(self.internal("the history column is not a bag"));
        };
        let (offsets, members) = (offsets.clone(), members.clone());

        // The distinct members of the group's histories.
        buf.stamp = buf.stamp.wrapping_add(1);
        if buf.stamp == 0 {
            buf.seen.fill(0);
            buf.stamp = 1;
        }
        buf.distinct.clear();
        for &m in &members {
            let m = m as usize;
            if m >= buf.seen.len() {
                return Err(self.internal("a history member outside its domain"));
            }
            if buf.seen[m] != buf.stamp {
                buf.seen[m] = buf.stamp;
                buf.local[m] = buf.distinct.len() as u32;
                buf.distinct.push(m as u32);
            }
        }
        let count = buf.distinct.len();

        // Each distinct member's value, from the rows as they stand.
        for (p, pooled) in plan.pooled.iter().enumerate() {
            let lanes = pooled.shape.len();
            let values = &mut buf.values[p];
            values.clear();
            match pooled.value {
                MemberValue::Count => {}
                MemberValue::Row(t) | MemberValue::SquaredNorm(t) => {
                    let width = self.lanes[t.index()];
                    let table = self.tables.values(t.index());
                    for &m in &buf.distinct {
                        // SAFETY: `m` is inside the bag's domain (checked
                        // above), the table holds `width` lanes per member
                        // of it, and other threads write it only with
                        // plain racy f32 stores (Hogwild).
                        let row = unsafe {
                            std::slice::from_raw_parts(table.add(m as usize * width), width)
                        };
                        if matches!(pooled.value, MemberValue::Row(_)) {
                            values.extend_from_slice(row);
                        } else {
                            values.push(row.iter().map(|x| x * x).sum());
                        }
                    }
                }
            }
            if values.len() != count * lanes && pooled.value != MemberValue::Count {
                return Err(self.internal("a pooled value of the wrong width"));
            }
        }

        // Each example's pooled inputs.
        for (p, pooled) in plan.pooled.iter().enumerate() {
            let lanes = pooled.shape.len();
            let SlotColumn::Real(column) = &mut buf.columns.slots[pooled.slot.index()] else {
                return Err(self.internal("a pooled input is not a number column"));
            };
            column.clear();
            column.resize(n * lanes, 0.0);
            for k in 0..n {
                let (a, b) = (offsets[k] as usize, offsets[k + 1] as usize);
                let out = &mut column[k * lanes..(k + 1) * lanes];
                if pooled.value == MemberValue::Count {
                    // bag_len: the number of members, at least 1.
                    out[0] = (b - a).max(1) as f32;
                    continue;
                }
                for &m in &members[a..b] {
                    let at = buf.local[m as usize] as usize * lanes;
                    for (o, v) in out.iter_mut().zip(&buf.values[p][at..at + lanes]) {
                        *o += v;
                    }
                }
            }
        }

        let (done, loss) = buf.step.run(
            self.step,
            &plan.step,
            &buf.columns,
            self.tables,
            self.sizes,
            self.hyper,
        )?;

        // Each member's accumulated gradient, over the examples that ran.
        let mut any = false;
        for (p, pooled) in plan.pooled.iter().enumerate() {
            if pooled.adjoint.is_none() {
                continue;
            }
            let lanes = pooled.shape.len();
            let adjoint = &mut buf.adjoints[p];
            adjoint.clear();
            adjoint.resize(count * lanes, 0.0);
            let Some(grads) = buf.step.slot_grads.get(pooled.slot.index()) else {
                continue;
            };
            for k in 0..done {
                let g = &grads[k * lanes..(k + 1) * lanes];
                if g.iter().all(|&x| x == 0.0) {
                    continue;
                }
                any = true;
                let (a, b) = (offsets[k] as usize, offsets[k + 1] as usize);
                for &m in &members[a..b] {
                    let at = buf.local[m as usize] as usize * lanes;
                    for (o, v) in adjoint[at..at + lanes].iter_mut().zip(g) {
                        *o += v;
                    }
                }
            }
        }
        if any && count > 0 {
            buf.members.clear();
            if let SlotColumn::Index(v) = &mut buf.members.slots[plan.member_index.index()] {
                v.extend_from_slice(&buf.distinct);
            }
            for (p, pooled) in plan.pooled.iter().enumerate() {
                if let Some(a) = pooled.adjoint {
                    if let SlotColumn::Real(v) = &mut buf.members.slots[a.index()] {
                        v.extend_from_slice(&buf.adjoints[p]);
                    }
                }
            }
            buf.members.len = count;
            let (applied, _) = buf.member.run(
                self.member,
                &plan.member,
                &buf.members,
                self.tables,
                self.sizes,
                self.hyper,
            )?;
            if applied < count {
                // A member's update was not finite: report it as the
                // group's last example failing.
                return Ok((done.min(rows.len().saturating_sub(1)), loss));
            }
        }
        Ok((done, loss))
    }

    fn internal(&self, reason: &str) -> InputError {
        InputError {
            model: self.session.gradient.name.clone(),
            reason: reason.to_string(),
        }
    }
}

/// Slots the binding fills: the model's own.
fn binding_slots(session: &Session) -> usize {
    session.gradient.slots.len()
}
