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

/// Chunks (of as many users) whose examples run shuffled together in one
/// round, the history's rows frozen: enough that the other tables see
/// users interleaved as the per-example schedule shows them.
const ROUND_CHUNKS: usize = 64;

/// One user's training examples and the history they are windows of.
#[derive(Clone, Debug)]
pub struct Group {
    /// The user's training items in time order.
    pub items: Vec<u32>,
    /// Each example's data row and its history's window of `items`.
    pub rows: Vec<(usize, u32, u32)>,
}

/// Rows grouped by the user whose history they read (users in id order,
/// rows in data order); a row with no user is a group of its own.
pub fn user_groups(session: &Session, data: &Dataset, rows: &[usize]) -> Vec<Group> {
    let binding = &session.binding;
    let mut by_user: std::collections::BTreeMap<u32, Vec<(usize, u32, u32)>> = Default::default();
    let mut alone = Vec::new();
    for &r in rows {
        match binding.history_window(data, r) {
            Some((user, start, end)) => {
                by_user
                    .entry(user)
                    .or_default()
                    .push((r, start as u32, end as u32))
            }
            None => alone.push(Group {
                items: Vec::new(),
                rows: vec![(r, 0, 0)],
            }),
        }
    }
    let mut groups: Vec<Group> = by_user
        .into_iter()
        .map(|(user, rows)| Group {
            items: binding.history_items(user).collect(),
            rows,
        })
        .collect();
    groups.extend(alone);
    groups
}

/// Some examples of one user, run together with the history's rows frozen.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    pub items: &'a [u32],
    pub rows: &'a [(usize, u32, u32)],
}

/// The epoch's order: each user's examples in at most `splits` chunks of
/// at least `size` examples, those chunks shuffled across users (after the
/// caller shuffled within each user).
pub fn chunks<'a>(
    groups: &'a [Group],
    size: usize,
    splits: usize,
    rng: &mut StdRng,
) -> Vec<Chunk<'a>> {
    use rand::seq::SliceRandom;
    let mut out: Vec<Chunk> = groups
        .iter()
        .flat_map(|g| {
            let size = size.max(g.rows.len().div_ceil(splits.max(1))).max(1);
            g.rows.chunks(size).map(|rows| Chunk {
                items: &g.items,
                rows,
            })
        })
        .collect();
    out.shuffle(rng);
    out
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
    /// Per pooled value: each distinct member's accumulated gradient.
    adjoints: Vec<Vec<f32>>,
    /// Prefix sums (or differences) over a group's history positions.
    prefix: Vec<f64>,
    running: Vec<f64>,
    rows: Vec<usize>,
    /// Per chunk of a round: its span `lo..hi` of its user's items and
    /// where its prefix sums start.
    spans: Vec<(usize, usize, usize)>,
    /// A round's examples in their shuffled order: (chunk, example).
    order: Vec<(u32, u32)>,
}

impl GroupJob<'_> {
    /// Train on `groups` (each a user's rows, in the order to run them).
    /// `report` is told the examples done and their summed loss every few
    /// thousand examples and returns false to stop.
    pub fn run(
        &self,
        groups: &[Chunk],
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
            adjoints: vec![Vec::new(); plan.pooled.len()],
            prefix: Vec::new(),
            running: Vec::new(),
            rows: Vec::new(),
            spans: Vec::new(),
            order: Vec::new(),
        };
        let (mut done, mut loss) = (0usize, 0.0);
        let mut since_report = 0;
        let rounds: Vec<&[Chunk]> = groups.chunks(ROUND_CHUNKS).collect();
        let stop = 'groups: {
            for (g, round) in rounds.iter().enumerate() {
                if shared.is_some_and(|(stop, _)| stop.load(Ordering::Relaxed)) {
                    break 'groups Some(GroupStop::Halted);
                }
                let size: usize = round.iter().map(|c| c.rows.len()).sum();
                match self.round(round, rng, &mut buf) {
                    Ok((n, l)) => {
                        done += n;
                        loss += l;
                        since_report += n;
                        if n < size {
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
                    if !report(done, loss) && g + 1 < rounds.len() {
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

    /// One round: the examples of some users' chunks, in a shuffled order,
    /// with the history's rows frozen. Returns the examples finished and
    /// their loss.
    fn round(
        &self,
        round: &[Chunk],
        rng: &mut StdRng,
        buf: &mut Buffers,
    ) -> Result<(usize, f64), InputError> {
        use rand::seq::SliceRandom;
        let plan = self.plan;
        let binding = &self.session.binding;
        // Each chunk's span of its user's items: positions `lo..hi` are read
        // by some example of the chunk.
        buf.spans.clear();
        let mut at = 0;
        for chunk in round {
            let lo = chunk.rows.iter().map(|w| w.1 as usize).min().unwrap_or(0);
            let hi = chunk.rows.iter().map(|w| w.2 as usize).max().unwrap_or(0);
            if hi > chunk.items.len() || lo > hi {
                return Err(self.internal("a history window outside the user's items"));
            }
            buf.spans.push((lo, hi, at));
            at += hi - lo + 1;
        }
        // The round's examples in a shuffled order: (chunk, example).
        buf.order.clear();
        for (c, chunk) in round.iter().enumerate() {
            buf.order
                .extend((0..chunk.rows.len()).map(|k| (c as u32, k as u32)));
        }
        buf.order.shuffle(rng);
        buf.rows.clear();
        buf.rows.extend(
            buf.order
                .iter()
                .map(|&(c, k)| round[c as usize].rows[k as usize].0),
        );
        buf.columns.clear();
        binding.encode_rows_without_histories(self.data, &buf.rows, rng, true, &mut buf.columns);
        let n = buf.columns.len;

        // The distinct members of the round.
        buf.stamp = buf.stamp.wrapping_add(1);
        if buf.stamp == 0 {
            buf.seen.fill(0);
            buf.stamp = 1;
        }
        buf.distinct.clear();
        for (chunk, &(lo, hi, _)) in round.iter().zip(&buf.spans) {
            for &m in &chunk.items[lo..hi] {
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
        }
        let count = buf.distinct.len();

        for pooled in &plan.pooled {
            let lanes = pooled.shape.len();
            let SlotColumn::Real(column) = &mut buf.columns.slots[pooled.slot.index()] else {
                return Err(self.internal("a pooled input is not a number column"));
            };
            column.clear();
            column.resize(n * lanes, 0.0);
            let table = match pooled.value {
                MemberValue::Count => {
                    // bag_len: the number of members, at least 1.
                    for (e, &(c, k)) in buf.order.iter().enumerate() {
                        let (_, start, end) = round[c as usize].rows[k as usize];
                        column[e] = (end - start).max(1) as f32;
                    }
                    continue;
                }
                MemberValue::Row(t) | MemberValue::SquaredNorm(t) => t,
            };
            // Prefix sums over each chunk's positions of each member's
            // value from the rows as they stand: a window's sum is a
            // difference.
            let width = self.lanes[table.index()];
            let values = self.tables.values(table.index());
            let prefix = &mut buf.prefix;
            prefix.clear();
            prefix.resize(at * lanes, 0.0);
            for (chunk, &(lo, hi, base)) in round.iter().zip(&buf.spans) {
                let prefix = &mut prefix[base * lanes..(base + hi - lo + 1) * lanes];
                for (j, &m) in chunk.items[lo..hi].iter().enumerate() {
                    // SAFETY: `m` is inside the bag's domain (checked
                    // above), the table holds `width` lanes per member of
                    // it, and other threads write it only with plain racy
                    // f32 stores (Hogwild).
                    let row = unsafe {
                        std::slice::from_raw_parts(values.add(m as usize * width), width)
                    };
                    let (before, after) = prefix.split_at_mut((j + 1) * lanes);
                    let before = &before[j * lanes..];
                    if matches!(pooled.value, MemberValue::Row(_)) {
                        for ((c, p), r) in after[..lanes].iter_mut().zip(before).zip(row) {
                            *c = p + f64::from(*r);
                        }
                    } else {
                        let sq: f32 = row.iter().map(|x| x * x).sum();
                        after[0] = before[0] + f64::from(sq);
                    }
                }
            }
            for (e, &(c, k)) in buf.order.iter().enumerate() {
                let (_, start, end) = round[c as usize].rows[k as usize];
                let (lo, _, base) = buf.spans[c as usize];
                let a = (base + start as usize - lo) * lanes;
                let b = (base + end as usize - lo) * lanes;
                let out = &mut column[e * lanes..(e + 1) * lanes];
                for ((o, hi), lo) in out.iter_mut().zip(&prefix[b..b + lanes]).zip(&prefix[a..]) {
                    *o = (hi - lo) as f32;
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

        // Each member's accumulated gradient over the examples that ran:
        // a window adds its example's gradient to each of its positions,
        // by differences summed once per chunk.
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
            let diff = &mut buf.prefix;
            diff.clear();
            diff.resize(at * lanes, 0.0);
            for (e, &(c, k)) in buf.order.iter().enumerate().take(done) {
                let (_, start, end) = round[c as usize].rows[k as usize];
                if start == end {
                    continue;
                }
                let (lo, _, base) = buf.spans[c as usize];
                let g = &grads[e * lanes..(e + 1) * lanes];
                let a = (base + start as usize - lo) * lanes;
                let b = (base + end as usize - lo) * lanes;
                for (d, x) in diff[a..a + lanes].iter_mut().zip(g) {
                    *d += f64::from(*x);
                }
                for (d, x) in diff[b..b + lanes].iter_mut().zip(g) {
                    *d -= f64::from(*x);
                }
            }
            let running = &mut buf.running;
            for (chunk, &(lo, hi, base)) in round.iter().zip(&buf.spans) {
                running.clear();
                running.resize(lanes, 0.0);
                for (j, &m) in chunk.items[lo..hi].iter().enumerate() {
                    let at = buf.local[m as usize] as usize * lanes;
                    let out = &mut adjoint[at..at + lanes];
                    let d = &diff[(base + j) * lanes..];
                    for ((r, d), o) in running.iter_mut().zip(d).zip(out) {
                        *r += d;
                        *o += *r as f32;
                    }
                }
            }
            any |= adjoint.iter().any(|&x| x != 0.0);
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
                // round's last example failing.
                return Ok((done.min(n.saturating_sub(1)), loss));
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
