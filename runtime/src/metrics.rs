//! Scoring a trained model: rating error and ranking quality.
//!
//! Rating models are judged with [`rmse`] and [`mae`]; a model with a
//! predictive distribution also by how well its intervals cover the targets
//! ([`predictive`], [`predictive_intervals`]). Ranking models are
//! judged one user at a time: [`rank_user`] ranks the whole catalogue for a
//! user from its scores and returns [`UserMetrics`], and [`summarise`] averages
//! those over users and adds the catalogue-level measures (coverage, novelty,
//! diversity) in [`RankingMetrics`]. [`format_table`] prints the result.
//!
//! Nothing here panics on odd input: empty slices, out-of-range item indices,
//! `k = 0` and NaN scores all give defined, finite values (documented per
//! function).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt::Write as _;

use rayon::prelude::*;

/// Root mean squared error between predictions and targets, paired by index.
///
/// Pairs beyond the shorter slice are ignored. Empty input gives `0.0`.
pub fn rmse(predicted: &[f64], actual: &[f64]) -> f64 {
    mean_of(predicted.iter().zip(actual).map(|(p, a)| (p - a) * (p - a))).sqrt()
}

/// Mean absolute error between predictions and targets, paired by index.
///
/// Pairs beyond the shorter slice are ignored. Empty input gives `0.0`.
pub fn mae(predicted: &[f64], actual: &[f64]) -> f64 {
    mean_of(predicted.iter().zip(actual).map(|(p, a)| (p - a).abs()))
}

/// The mean of the values, `0.0` when there are none.
fn mean_of(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// A row's predictive distribution, summarised: mean and standard deviation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Predictive {
    pub mean: f64,
    pub sd: f64,
}

/// The predictive distribution of one row from Monte Carlo draws: draw `s`
/// gave the score `scores[s]` and the noise scale `scales[s]`, i.e. the
/// target is normal(scores[s], scales[s]²) given that draw. The mixture
/// over equally weighted draws has mean `mean(scores)` and, by the law of
/// total variance, variance `var(scores) + mean(scales²)` (variances over
/// the draws, divided by their number, not one less).
///
/// Pairs beyond the shorter slice are ignored; no draws give NaN.
pub fn predictive(scores: &[f64], scales: &[f64]) -> Predictive {
    let n = scores.len().min(scales.len());
    if n == 0 {
        return Predictive {
            mean: f64::NAN,
            sd: f64::NAN,
        };
    }
    let (scores, scales) = (&scores[..n], &scales[..n]);
    let mean = scores.iter().sum::<f64>() / n as f64;
    let spread = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / n as f64;
    let noise = scales.iter().map(|s| s * s).sum::<f64>() / n as f64;
    Predictive {
        mean,
        sd: (spread + noise).sqrt(),
    }
}

/// The standard normal quantile at 75%: mean ± this many sd hold 50%.
pub const Z50: f64 = 0.674_489_750_196_081_7;
/// The standard normal quantile at 95%: mean ± this many sd hold 90%.
pub const Z90: f64 = 1.644_853_626_951_472_2;

/// How well predictive distributions describe the targets.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct IntervalMetrics {
    /// The fraction of targets within mean ± [`Z50`]·sd: 0.5 if calibrated.
    pub interval50: f64,
    /// The fraction of targets within mean ± [`Z90`]·sd: 0.9 if calibrated.
    pub interval90: f64,
    /// The Spearman correlation between the sd and the row's support (e.g.
    /// its user's number of training rows): negative when the model is
    /// less sure where it has seen less.
    pub spread_corr: f64,
}

/// Coverage of the central 50% and 90% intervals of `rows` (the predictive
/// distribution of each row, taken as normal) over `targets`, and the rank
/// correlation of the rows' sd with `support`, all paired by index.
///
/// Rows beyond the shortest slice are ignored; no rows give NaN coverage; see
/// [`spearman`] for its NaN cases.
pub fn predictive_intervals(
    rows: &[Predictive],
    targets: &[f64],
    support: &[f64],
) -> IntervalMetrics {
    let n = rows.len().min(targets.len()).min(support.len());
    let (rows, targets) = (&rows[..n], &targets[..n]);
    let coverage = |z: f64| {
        let inside = rows
            .iter()
            .zip(targets)
            .filter(|(p, t)| (*t - p.mean).abs() <= z * p.sd)
            .count();
        if n == 0 {
            f64::NAN
        } else {
            inside as f64 / n as f64
        }
    };
    let sds: Vec<f64> = rows.iter().map(|p| p.sd).collect();
    IntervalMetrics {
        interval50: coverage(Z50),
        interval90: coverage(Z90),
        spread_corr: spearman(&sds, &support[..n]),
    }
}

/// Spearman's rank correlation: the Pearson correlation of the ranks, tied
/// values sharing their mean rank.
///
/// Pairs beyond the shorter slice are ignored. Fewer than two pairs, or a
/// side whose values are all equal (no order to correlate), give NaN.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (ra, rb) = (ranks(&a[..n]), ranks(&b[..n]));
    let mean = (n as f64 + 1.0) / 2.0;
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        ab += (x - mean) * (y - mean);
        aa += (x - mean) * (x - mean);
        bb += (y - mean) * (y - mean);
    }
    if n < 2 || aa == 0.0 || bb == 0.0 {
        return f64::NAN;
    }
    ab / (aa * bb).sqrt()
}

/// 1-based ranks, ties given the mean of the ranks they span.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut out = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold ranks start+1..=end; their mean:
        let rank = (start + end + 1) as f64 / 2.0;
        for &k in &order[start..end] {
            out[k] = rank;
        }
        start = end;
    }
    out
}

/// One user's scores over the whole catalogue, with what to leave out and
/// what counts as a hit.
///
/// Item indices outside `0..scores.len()` in `exclude` or `relevant` are
/// ignored, as are repeated indices.
#[derive(Clone, Copy, Debug)]
pub struct UserRanking<'a> {
    /// One score per item of the catalogue; higher ranks first.
    pub scores: &'a [f64],
    /// The user's training items: removed from the ranking altogether.
    pub exclude: &'a [u32],
    /// The user's test items. Those that are also in `exclude` are ignored.
    pub relevant: &'a [u32],
}

/// Ranking quality for one user; see [`rank_user`] for the ranking itself.
///
/// "Rank" below is 1-based, among the items left after exclusion, and `R` is
/// the number of relevant items that are not excluded.
#[derive(Clone, Debug, PartialEq)]
pub struct UserMetrics {
    /// Relevant items in the top `k`, divided by `k` (LightFM's definition:
    /// the divisor stays `k` even when fewer than `k` items can be ranked).
    pub precision: f64,
    /// Relevant items in the top `k`, divided by `R`.
    pub recall: f64,
    /// DCG@k with binary gains, `Σ 1/log2(rank + 1)` over relevant items in
    /// the top `k`, divided by the ideal DCG of `min(k, R)` hits at ranks
    /// `1..=min(k, R)`.
    pub ndcg: f64,
    /// Over the full ranking: the mean, over relevant items, of the precision
    /// at that item's rank (`j / rank_j` for the `j`-th relevant item).
    pub average_precision: f64,
    /// `1 / rank` of the best-ranked relevant item (full ranking).
    pub reciprocal_rank: f64,
    /// Fraction of (relevant, non-relevant) pairs of ranked items in which the
    /// relevant item has the higher score; equal scores count `1/2`. Index
    /// order does not break ties here. `0.5` when every ranked item is
    /// relevant (there are no pairs).
    pub auc: f64,
    /// `1.0` if any relevant item is in the top `k`, else `0.0`.
    pub hit: f64,
    /// `1 / rank` of the best-ranked relevant item if that rank is at most
    /// `k`, else `0.0` (the leave-one-out "average reciprocal hit rank").
    pub arhr: f64,
    /// The `k` best items, best first; fewer when fewer can be ranked.
    pub top: Vec<u32>,
}

/// Ranks the catalogue for one user and measures the ranking against the
/// user's relevant items.
///
/// Items are ordered by score, highest first, ties broken by the lower item
/// index; scores are compared with [`f64::total_cmp`], so NaN scores have a
/// place in the order (positive NaN above `+∞`, negative NaN below `−∞`)
/// instead of panicking. Excluded items are removed before ranking.
///
/// Callers should leave out users with no relevant items; if one is passed,
/// every metric is `0.0` (and `top` is still filled). With `k = 0` the `@k`
/// metrics (precision, recall, NDCG, hit, ARHR) are `0.0` and `top` is empty.
///
/// Cost: `O(n log k)` for the top `k`, `O(n log R)` for the ranks of the
/// relevant items and for AUC, where `n` is the catalogue size; the only
/// allocation proportional to `n` is one byte per item.
pub fn rank_user(r: &UserRanking, k: usize) -> UserMetrics {
    let scores = r.scores;
    let (marks, mut relevant) = mark_items(r);
    let top = top_k(scores, &marks, k);

    let zeros = UserMetrics {
        precision: 0.0,
        recall: 0.0,
        ndcg: 0.0,
        average_precision: 0.0,
        reciprocal_rank: 0.0,
        auc: 0.0,
        hit: 0.0,
        arhr: 0.0,
        top,
    };
    if relevant.is_empty() {
        return zeros;
    }

    relevant.sort_unstable_by(|&a, &b| rank_order(scores, a, b));
    let (ranks, auc) = ranks_and_auc(scores, &marks, &relevant);
    let n_relevant = relevant.len();

    let hits = ranks.iter().take_while(|&&rank| rank <= k).count();
    let dcg: f64 = ranks.iter().take(hits).map(|&rank| discount(rank)).sum();
    let ideal: f64 = (1..=k.min(n_relevant)).map(discount).sum();
    let average_precision = ranks
        .iter()
        .enumerate()
        .map(|(j, &rank)| (j + 1) as f64 / rank as f64)
        .sum::<f64>()
        / n_relevant as f64;
    let first = ranks[0];
    let reciprocal_rank = 1.0 / first as f64;

    UserMetrics {
        precision: if k == 0 { 0.0 } else { hits as f64 / k as f64 },
        recall: hits as f64 / n_relevant as f64,
        ndcg: if ideal > 0.0 { dcg / ideal } else { 0.0 },
        average_precision,
        reciprocal_rank,
        auc,
        hit: if hits > 0 { 1.0 } else { 0.0 },
        arhr: if first <= k { reciprocal_rank } else { 0.0 },
        ..zeros
    }
}

/// What each catalogue item is for one user.
const RANKED: u8 = 0;
const EXCLUDED: u8 = 1;
const RELEVANT: u8 = 2;

/// One mark per item, and the relevant items that are ranked (deduplicated,
/// in range, not excluded).
fn mark_items(r: &UserRanking) -> (Vec<u8>, Vec<u32>) {
    let mut marks = vec![RANKED; r.scores.len()];
    for &i in r.exclude {
        if let Some(m) = marks.get_mut(i as usize) {
            *m = EXCLUDED;
        }
    }
    let mut relevant = Vec::with_capacity(r.relevant.len());
    for &i in r.relevant {
        if let Some(m) = marks.get_mut(i as usize) {
            if *m == RANKED {
                *m = RELEVANT;
                relevant.push(i);
            }
        }
    }
    (marks, relevant)
}

/// `Less` when item `a` ranks before item `b`: higher score first, then lower
/// index.
fn rank_order(scores: &[f64], a: u32, b: u32) -> Ordering {
    scores[b as usize]
        .total_cmp(&scores[a as usize])
        .then(a.cmp(&b))
}

/// The NDCG discount of a 1-based rank.
fn discount(rank: usize) -> f64 {
    1.0 / ((rank + 1) as f64).log2()
}

/// An item in the top-k heap; `Ord` follows the ranking, so the heap's
/// maximum is the worst item kept.
struct Ranked {
    score: f64,
    item: u32,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.item.cmp(&other.item))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

/// The `k` best ranked (not excluded) items, best first.
fn top_k(scores: &[f64], marks: &[u8], k: usize) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    let mut heap = BinaryHeap::with_capacity(k.min(scores.len()));
    for ((item, &score), &mark) in (0..=u32::MAX).zip(scores).zip(marks) {
        if mark == EXCLUDED {
            continue;
        }
        let entry = Ranked { score, item };
        if heap.len() < k {
            heap.push(entry);
        } else if heap.peek().is_some_and(|worst| entry < *worst) {
            heap.pop();
            heap.push(entry);
        }
    }
    heap.into_sorted_vec().into_iter().map(|e| e.item).collect()
}

/// The 1-based rank of each relevant item, which must be sorted in ranking
/// order (so the ranks come out increasing), and the AUC over the ranked
/// items (see [`UserMetrics::auc`]); `relevant` must be non-empty.
///
/// The `j`-th relevant item (0-based) has `j` relevant items before it; each
/// other ranked item is counted once, at the first relevant item it precedes,
/// and a prefix sum spreads that count to every later relevant item. The
/// AUC counts, per ranked item, the relevant scores above it and those equal
/// to it. Both come from one search of the relevant scores per item, and
/// none for an item scored below every relevant one (most of a catalogue).
fn ranks_and_auc(scores: &[f64], marks: &[u8], relevant: &[u32]) -> (Vec<usize>, f64) {
    let n_rel = relevant.len();
    // Ascending in `total_cmp`, the relevant items' scores.
    let ascending: Vec<f64> = relevant.iter().rev().map(|&i| scores[i as usize]).collect();
    let lowest = ascending.first().copied().unwrap_or(f64::NAN);
    // before[p]: non-relevant items with exactly p relevant items ahead of them.
    let mut before = vec![0usize; n_rel + 1];
    let (mut above, mut level, mut negatives) = (0u64, 0u64, 0u64);
    for ((item, &score), &mark) in (0..=u32::MAX).zip(scores).zip(marks) {
        if mark != RANKED {
            continue;
        }
        negatives += 1;
        if score.total_cmp(&lowest) == Ordering::Less {
            before[n_rel] += 1;
            above += n_rel as u64;
            continue;
        }
        let not_above = ascending.partition_point(|s| s.total_cmp(&score) != Ordering::Greater);
        let higher = n_rel - not_above;
        let below = ascending[..not_above]
            .iter()
            .rposition(|s| s.total_cmp(&score) == Ordering::Less)
            .map_or(0, |k| k + 1);
        let equal = not_above - below;
        above += higher as u64;
        level += equal as u64;
        // Relevant items of equal score come before this one when their
        // index is lower: they follow the higher ones in `relevant`.
        let ties_first = relevant[higher..higher + equal]
            .iter()
            .filter(|&&r| r < item)
            .count();
        before[higher + ties_first] += 1;
    }
    let mut ahead = 0;
    let ranks = before
        .iter()
        .take(n_rel)
        .enumerate()
        .map(|(j, &count)| {
            ahead += count;
            j + 1 + ahead
        })
        .collect();
    let auc = if negatives == 0 {
        0.5
    } else {
        (above as f64 + 0.5 * level as f64) / (n_rel as f64 * negatives as f64)
    };
    (ranks, auc)
}

/// What the training data says about each item, for the catalogue-level
/// measures.
#[derive(Clone, Copy, Debug)]
pub struct Catalogue<'a> {
    /// Training users per item. Items past the end count as popularity 0.
    pub item_popularity: &'a [usize],
    /// Users in the training data.
    pub n_users: usize,
    /// For each item, its training users' ids in increasing order. Items past
    /// the end have no users.
    pub item_users: &'a [Vec<u32>],
}

/// Ranking quality averaged over users, plus catalogue-level measures.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RankingMetrics {
    /// The cut-off of the `@k` metrics.
    pub k: usize,
    /// Users averaged over.
    pub users: usize,
    /// Mean of [`UserMetrics::precision`].
    pub precision: f64,
    /// Mean of [`UserMetrics::recall`].
    pub recall: f64,
    /// Mean of [`UserMetrics::ndcg`].
    pub ndcg: f64,
    /// Mean of [`UserMetrics::average_precision`].
    pub map: f64,
    /// Mean of [`UserMetrics::reciprocal_rank`].
    pub mrr: f64,
    /// Mean of [`UserMetrics::auc`].
    pub auc: f64,
    /// Mean of [`UserMetrics::hit`]: the fraction of users with a hit.
    pub hit_rate: f64,
    /// Mean of [`UserMetrics::arhr`].
    pub arhr: f64,
    /// Distinct items in any user's top list, divided by the catalogue size.
    pub coverage: f64,
    /// Mean over every recommendation (all users' top lists, repeats counted)
    /// of `−log2(popularity / n_users)`, popularity 0 taken as 1.
    pub novelty: f64,
    /// Mean over users with at least two recommendations of the mean, over
    /// pairs in their top list, of `1 − cos(a, b)`, the cosine taken between
    /// the items' binary training-user vectors.
    pub diversity: f64,
}

/// Averages per-user metrics and measures the recommendations as a whole.
///
/// Every mean over nothing is `0.0`: no users, `n_items = 0`, `n_users = 0`
/// (novelty), or no user with two recommendations (diversity). The result is
/// deterministic: the parallel part (diversity) is summed in user order.
pub fn summarise(
    users: &[UserMetrics],
    k: usize,
    n_items: usize,
    catalogue: &Catalogue,
) -> RankingMetrics {
    let mean = |field: fn(&UserMetrics) -> f64| mean_of(users.iter().map(field));

    let mut recommended: Vec<u32> = users.iter().flat_map(|u| u.top.iter().copied()).collect();
    let novelty = if catalogue.n_users == 0 {
        0.0
    } else {
        let n_users = catalogue.n_users as f64;
        mean_of(recommended.iter().map(|&i| {
            let popularity = catalogue
                .item_popularity
                .get(i as usize)
                .copied()
                .unwrap_or(0);
            -(popularity.max(1) as f64 / n_users).log2()
        }))
    };
    recommended.sort_unstable();
    recommended.dedup();
    let coverage = if n_items == 0 {
        0.0
    } else {
        recommended.len() as f64 / n_items as f64
    };

    let per_user: Vec<Option<f64>> = users
        .par_iter()
        .map(|u| intra_list_dissimilarity(&u.top, catalogue.item_users))
        .collect();
    let diversity = mean_of(per_user.into_iter().flatten());

    RankingMetrics {
        k,
        users: users.len(),
        precision: mean(|u| u.precision),
        recall: mean(|u| u.recall),
        ndcg: mean(|u| u.ndcg),
        map: mean(|u| u.average_precision),
        mrr: mean(|u| u.reciprocal_rank),
        auc: mean(|u| u.auc),
        hit_rate: mean(|u| u.hit),
        arhr: mean(|u| u.arhr),
        coverage,
        novelty,
        diversity,
    }
}

/// Mean `1 − cosine` over the pairs of a list; `None` with fewer than two
/// items.
fn intra_list_dissimilarity(top: &[u32], item_users: &[Vec<u32>]) -> Option<f64> {
    if top.len() < 2 {
        return None;
    }
    let users_of = |i: u32| item_users.get(i as usize).map_or(&[][..], Vec::as_slice);
    let pairs = top.iter().enumerate().flat_map(|(n, &a)| {
        top[n + 1..]
            .iter()
            .map(move |&b| 1.0 - cosine(users_of(a), users_of(b)))
    });
    Some(mean_of(pairs))
}

/// Cosine similarity of two binary vectors given as sorted index lists; `0.0`
/// when either is empty.
pub fn cosine(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    common as f64 / ((a.len() as f64) * (b.len() as f64)).sqrt()
}

impl RankingMetrics {
    /// Each metric with the name `train`, `eval` and `--json` print, in
    /// table order (`precision@10`, ..., `diversity@10`).
    pub fn named(&self) -> [(String, f64); 11] {
        let k = self.k;
        [
            (format!("precision@{k}"), self.precision),
            (format!("recall@{k}"), self.recall),
            (format!("ndcg@{k}"), self.ndcg),
            ("map".to_string(), self.map),
            ("mrr".to_string(), self.mrr),
            ("auc".to_string(), self.auc),
            (format!("hit_rate@{k}"), self.hit_rate),
            (format!("arhr@{k}"), self.arhr),
            (format!("coverage@{k}"), self.coverage),
            (format!("novelty@{k}"), self.novelty),
            (format!("diversity@{k}"), self.diversity),
        ]
    }
}

/// The metrics as an aligned two-column table, one per line, e.g.
/// `precision@10  0.1234`.
pub fn format_table(m: &RankingMetrics) -> String {
    let rows = m.named();
    let width = rows
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        .max("users".len());
    let mut out = String::new();
    let _ = writeln!(out, "{:<width$}  {}", "users", m.users);
    for (label, value) in rows {
        let _ = writeln!(out, "{label:<width$}  {value:.4}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Ranks and AUC by definition: every pair of items compared.
    fn by_definition(scores: &[f64], marks: &[u8], relevant: &[u32]) -> (Vec<usize>, f64) {
        let ranked = |i: usize| marks[i] != EXCLUDED;
        let ranks = relevant
            .iter()
            .map(|&r| {
                1 + (0..scores.len())
                    .filter(|&i| ranked(i) && rank_order(scores, i as u32, r) == Ordering::Less)
                    .count()
            })
            .collect();
        let (mut wins, mut negatives) = (0.0, 0usize);
        for i in (0..scores.len()).filter(|&i| marks[i] == RANKED) {
            negatives += 1;
            for &r in relevant {
                wins += match scores[r as usize].total_cmp(&scores[i]) {
                    Ordering::Greater => 1.0,
                    Ordering::Equal => 0.5,
                    Ordering::Less => 0.0,
                };
            }
        }
        let auc = if negatives == 0 {
            0.5
        } else {
            wins / (relevant.len() * negatives) as f64
        };
        (ranks, auc)
    }

    #[test]
    fn ranks_and_auc_match_their_definition_with_ties_and_nan() {
        let mut rng = StdRng::seed_from_u64(7);
        for case in 0..500 {
            let n = rng.random_range(1..40);
            // Few distinct values, so that ties are common.
            let scores: Vec<f64> = (0..n)
                .map(|_| match rng.random_range(0..8) {
                    0 => f64::NAN,
                    1 => -0.0,
                    v => f64::from(v) * 0.5,
                })
                .collect();
            let exclude: Vec<u32> = (0..n as u32).filter(|_| rng.random_bool(0.2)).collect();
            let relevant: Vec<u32> = (0..n as u32).filter(|_| rng.random_bool(0.3)).collect();
            let r = UserRanking {
                scores: &scores,
                exclude: &exclude,
                relevant: &relevant,
            };
            let (marks, mut relevant) = mark_items(&r);
            if relevant.is_empty() {
                continue;
            }
            relevant.sort_unstable_by(|&a, &b| rank_order(&scores, a, b));
            let (ranks, auc) = ranks_and_auc(&scores, &marks, &relevant);
            let (want_ranks, want_auc) = by_definition(&scores, &marks, &relevant);
            assert_eq!(ranks, want_ranks, "case {case}: {scores:?}");
            assert!(
                (auc - want_auc).abs() < 1e-12,
                "case {case}: {auc} {want_auc}"
            );
        }
    }
}
