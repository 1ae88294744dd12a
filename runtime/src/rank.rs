//! Scoring a whole catalogue as a matrix product.
//!
//! When a model's score splits into a user part and an item part
//! ([`recc_compiler::factor::factor_score`]), the item part is computed once
//! per item and the user part once per user, by the reference evaluator on
//! the graph's own nodes, and the scores of a block of users against the
//! catalogue are assembled tile by tile: each dot product an outer-product
//! loop over a tile of items that the compiler turns into SIMD code, each
//! scalar step one pass over the tile. Every pair's arithmetic is the
//! evaluator's, in its order, so the scores equal the per-pair evaluator's
//! bit for bit; only the work is shared.

use crate::bind::Binding;
use crate::data::Dataset;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;
use recc_compiler::factor::{factor_score, NoFactors, ScoreFactors, SlotSide, Step};
use recc_compiler::interp::{EvalError, Example, Incremental, Params};
use recc_compiler::ir::{Graph, NodeId, SlotId};

/// Items per tile: a tile of the widest item part in common models (64
/// lanes of f64) stays within the second-level cache, and one user's row of
/// it (2 KiB) within the first.
pub const TILE: usize = 256;

/// Users scored together against each tile, so that a tile read from memory
/// serves all of them.
pub const USER_BLOCK: usize = 16;

/// A model's score split for catalogue scoring, with what it takes to
/// compute each part.
#[derive(Clone, Debug)]
pub struct Factored {
    pub factors: ScoreFactors,
    /// Slots that change from one user to the next, and from one item to the
    /// next.
    user_slots: Vec<SlotId>,
    item_slots: Vec<SlotId>,
    /// Lanes of each user value and each item value, and where each user
    /// value starts in a user's row of values.
    user_lanes: Vec<usize>,
    user_offsets: Vec<usize>,
    item_lanes: Vec<usize>,
}

impl Factored {
    /// The split of `forward`'s score under `binding`, or why there is none.
    pub fn new(forward: &Graph, binding: &Binding) -> Result<Factored, NoFactors> {
        let sides = binding.slot_sides();
        let factors = factor_score(forward, &sides)?;
        let slots = |side: SlotSide| -> Vec<SlotId> {
            sides
                .iter()
                .enumerate()
                .filter(|(_, s)| **s == side)
                .map(|(k, _)| SlotId(k as u32))
                .collect()
        };
        let lanes = |nodes: &[NodeId]| -> Vec<usize> {
            nodes
                .iter()
                .map(|&n| ScoreFactors::lanes(forward, n))
                .collect()
        };
        let user_lanes = lanes(&factors.user_values);
        let user_offsets = user_lanes
            .iter()
            .scan(0, |at, &l| {
                let start = *at;
                *at += l;
                Some(start)
            })
            .collect();
        Ok(Factored {
            user_slots: slots(SlotSide::User),
            item_slots: slots(SlotSide::Item),
            user_lanes,
            user_offsets,
            item_lanes: lanes(&factors.item_values),
            factors,
        })
    }

    fn user_stride(&self) -> usize {
        self.user_lanes.iter().sum()
    }

    /// The item part of every item of `data`'s catalogue under `params`.
    pub fn items(
        &self,
        forward: &Graph,
        binding: &Binding,
        data: &Dataset,
        params: &Params,
    ) -> Result<ItemPart, EvalError> {
        let n_items = data.items().map_or(0, |(d, _)| data.domain_size(d));
        let n_tiles = n_items.div_ceil(TILE);
        // One tile per task; each value's lanes lie lane-major in the tile so
        // that a dot product reads one lane of the whole tile at a time.
        let tiles = (0..n_tiles)
            .into_par_iter()
            .map(|t| {
                let items = t * TILE..((t + 1) * TILE).min(n_items);
                let mut scorer = Incremental::new(forward, &self.item_slots);
                let mut ex = Example { slots: Vec::new() };
                let mut rng = StdRng::seed_from_u64(0);
                let mut row = Vec::new();
                let mut tile: Vec<Vec<f64>> = self
                    .item_lanes
                    .iter()
                    .map(|l| vec![0.0; l * TILE])
                    .collect();
                for (at, i) in items.enumerate() {
                    binding.example(
                        data,
                        &binding.pair(None, Some(i as u32)),
                        &mut rng,
                        false,
                        &mut ex,
                    );
                    row.clear();
                    scorer.values(params, &ex, &self.factors.item_values, &mut row)?;
                    let mut lanes = row.iter();
                    for (values, &l) in tile.iter_mut().zip(&self.item_lanes) {
                        for k in 0..l {
                            values[k * TILE + at] = lanes.next().copied().unwrap_or(0.0);
                        }
                    }
                }
                Ok(tile)
            })
            .collect::<Result<Vec<_>, EvalError>>()?;
        Ok(ItemPart { n_items, tiles })
    }

    /// The user part of each of `users` (`None`: an unknown user), one row
    /// of [`Factored::user_stride`] values each.
    fn users(
        &self,
        forward: &Graph,
        binding: &Binding,
        data: &Dataset,
        params: &Params,
        users: &[Option<u32>],
    ) -> Result<Vec<f64>, EvalError> {
        let mut scorer = Incremental::new(forward, &self.user_slots);
        let mut ex = Example { slots: Vec::new() };
        let mut rng = StdRng::seed_from_u64(0);
        let mut out = Vec::with_capacity(users.len() * self.user_stride());
        // Any item will do: the values read no item slot.
        let item = data.items().map(|_| 0);
        for &u in users {
            binding.example(data, &binding.pair(u, item), &mut rng, false, &mut ex);
            scorer.values(params, &ex, &self.factors.user_values, &mut out)?;
        }
        Ok(out)
    }

    /// The score of every item for each of `users` under `params`, whose
    /// item part is `items`: one row per user.
    pub fn scores(
        &self,
        forward: &Graph,
        binding: &Binding,
        data: &Dataset,
        params: &Params,
        items: &ItemPart,
        users: &[Option<u32>],
    ) -> Result<Vec<Vec<f64>>, EvalError> {
        let stride = self.user_stride();
        let mut rows: Vec<Vec<f64>> = vec![vec![0.0; items.n_items]; users.len()];
        for (block, out) in users.chunks(USER_BLOCK).zip(rows.chunks_mut(USER_BLOCK)) {
            let user_values = self.users(forward, binding, data, params, block)?;
            let mut tile = TileScratch::new(self.factors.steps.len(), block.len());
            for (t, item_tile) in items.tiles.iter().enumerate() {
                let start = t * TILE;
                let width = TILE.min(items.n_items - start);
                self.score_tile(
                    &user_values,
                    stride,
                    block.len(),
                    item_tile,
                    width,
                    &mut tile,
                );
                let last = tile.steps.last().map_or(&[][..], Vec::as_slice);
                for (a, row) in out.iter_mut().enumerate() {
                    row[start..start + width].copy_from_slice(&last[a * TILE..a * TILE + width]);
                }
            }
        }
        Ok(rows)
    }

    /// Every step of the score for `n_users` users (their values
    /// `user_values`, `stride` apart) against one tile of `width` items.
    fn score_tile(
        &self,
        user_values: &[f64],
        stride: usize,
        n_users: usize,
        item_tile: &[Vec<f64>],
        width: usize,
        scratch: &mut TileScratch,
    ) {
        // The evaluator's `dot` sums with `Iterator::sum`, which starts from
        // its own zero: start from the same one.
        let zero: f64 = std::iter::empty::<f64>().sum();
        for (s, step) in self.factors.steps.iter().enumerate() {
            let (done, rest) = scratch.steps.split_at_mut(s);
            let out = &mut rest[0];
            for a in 0..n_users {
                let user = &user_values[a * stride..(a + 1) * stride];
                let row = &mut out[a * TILE..a * TILE + width];
                let at = |k: usize| &done[k][a * TILE..a * TILE + width];
                match *step {
                    Step::User(v) => row.fill(user[self.user_offsets[v]]),
                    Step::Item(v) => row.copy_from_slice(&item_tile[v][..width]),
                    Step::Dot { user: uv, item: iv } => {
                        let start = self.user_offsets[uv];
                        let lanes = self.user_lanes[uv];
                        row.fill(zero);
                        for (k, &x) in user[start..start + lanes].iter().enumerate() {
                            let lane = &item_tile[iv][k * TILE..k * TILE + width];
                            for (r, y) in row.iter_mut().zip(lane) {
                                *r += x * y;
                            }
                        }
                    }
                    Step::Unary(f, x) => {
                        for (r, x) in row.iter_mut().zip(at(x)) {
                            *r = f.apply(*x);
                        }
                    }
                    Step::Binary(f, x, y) => {
                        use recc_compiler::types::BinaryFn;
                        let (x, y) = (at(x), at(y));
                        let pairs = row.iter_mut().zip(x.iter().zip(y));
                        // The common cases as plain loops, which vectorise.
                        match f {
                            BinaryFn::Add => pairs.for_each(|(r, (x, y))| *r = x + y),
                            BinaryFn::Sub => pairs.for_each(|(r, (x, y))| *r = x - y),
                            BinaryFn::Mul => pairs.for_each(|(r, (x, y))| *r = x * y),
                            _ => pairs.for_each(|(r, (x, y))| *r = f.apply(*x, *y)),
                        }
                    }
                }
            }
        }
    }
}

/// The item part of a catalogue: per tile of [`TILE`] items, each item
/// value's lanes, lane-major (lane `k` of item `i` of the tile at
/// `k * TILE + i`).
pub struct ItemPart {
    pub n_items: usize,
    tiles: Vec<Vec<Vec<f64>>>,
}

/// One buffer per step for a block of users against one tile.
struct TileScratch {
    steps: Vec<Vec<f64>>,
}

impl TileScratch {
    fn new(steps: usize, users: usize) -> TileScratch {
        TileScratch {
            steps: vec![vec![0.0; users * TILE]; steps],
        }
    }
}

/// The `k` best of `scores` in the order of [`crate::predict::best_first`],
/// leaving out the items of `exclude` (sorted): a bounded heap, so the cost
/// is `O(n log k)`.
pub fn top_k(scores: &[f64], exclude: &[u32], k: usize) -> Vec<(u32, f64)> {
    use std::cmp::Ordering;
    use std::collections::BinaryHeap;
    /// Greater means worse, so the heap's top is the worst kept.
    struct Ranked(u32, f64);
    impl PartialEq for Ranked {
        fn eq(&self, other: &Self) -> bool {
            self.cmp(other) == Ordering::Equal
        }
    }
    impl Eq for Ranked {}
    impl PartialOrd for Ranked {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Ranked {
        fn cmp(&self, other: &Self) -> Ordering {
            crate::predict::best_first((self.0, self.1), (other.0, other.1))
        }
    }
    if k == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Ranked> = BinaryHeap::with_capacity(k + 1);
    for (i, &s) in scores.iter().enumerate() {
        let i = i as u32;
        if exclude.binary_search(&i).is_ok() {
            continue;
        }
        let candidate = Ranked(i, s);
        if heap.len() < k {
            heap.push(candidate);
        } else if heap.peek().is_some_and(|worst| candidate < *worst) {
            heap.pop();
            heap.push(candidate);
        }
    }
    heap.into_sorted_vec()
        .into_iter()
        .map(|r| (r.0, r.1))
        .collect()
}
