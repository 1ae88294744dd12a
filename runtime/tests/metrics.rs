//! Every metric against values worked out by hand, plus brute-force
//! references on random data.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use recc_runtime::metrics::{
    cosine, format_table, mae, predictive, predictive_intervals, rank_user, rmse, spearman,
    summarise, Catalogue, Predictive, RankingMetrics, UserMetrics, UserRanking,
};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

macro_rules! assert_close {
    ($a:expr, $b:expr) => {{
        let (a, b) = ($a, $b);
        assert!(close(a, b), "{} = {a}, expected {b}", stringify!($a));
    }};
}

fn rank(scores: &[f64], exclude: &[u32], relevant: &[u32], k: usize) -> UserMetrics {
    rank_user(
        &UserRanking {
            scores,
            exclude,
            relevant,
        },
        k,
    )
}

fn inv_log2(x: f64) -> f64 {
    1.0 / x.log2()
}

#[test]
fn rmse_and_mae() {
    // errors -1, 0, -2: mse = (1 + 0 + 4) / 3 = 5/3, mae = (1 + 0 + 2) / 3 = 1
    assert_close!(
        rmse(&[1.0, 2.0, 3.0], &[2.0, 2.0, 5.0]),
        (5.0f64 / 3.0).sqrt()
    );
    assert_close!(mae(&[1.0, 2.0, 3.0], &[2.0, 2.0, 5.0]), 1.0);
    assert_eq!(rmse(&[], &[]), 0.0);
    assert_eq!(mae(&[], &[]), 0.0);
    // only the pair (1, 1) is compared
    assert_eq!(rmse(&[1.0, 2.0, 3.0], &[1.0]), 0.0);
    assert_eq!(mae(&[1.0], &[1.0, 9.0]), 0.0);
}

#[test]
fn basic_ranking_with_exclusion() {
    // item:   0    1    2    3    4    5
    // score: .9   .1   .8   .5   .7   .3     exclude 0, relevant {2, 5}, k = 3
    // ranking: 2 (1), 4 (2), 3 (3), 5 (4), 1 (5); top 3 = [2, 4, 3], one hit (item 2)
    let m = rank(&[0.9, 0.1, 0.8, 0.5, 0.7, 0.3], &[0], &[2, 5], 3);
    assert_eq!(m.top, vec![2, 4, 3]);
    assert_close!(m.precision, 1.0 / 3.0);
    assert_close!(m.recall, 1.0 / 2.0);
    // dcg = 1/log2(2) = 1; ideal = min(3, 2) = 2 hits: 1 + 1/log2(3)
    assert_close!(m.ndcg, 1.0 / (1.0 + inv_log2(3.0)));
    // relevant at ranks 1 and 4: (1/1 + 2/4) / 2
    assert_close!(m.average_precision, 0.75);
    assert_close!(m.reciprocal_rank, 1.0);
    // pairs: 2 (.8) beats 4, 3, 1 -> 3; 5 (.3) beats 1 only -> 1; 4 of 6
    assert_close!(m.auc, 4.0 / 6.0);
    assert_eq!(m.hit, 1.0);
    assert_close!(m.arhr, 1.0);
}

#[test]
fn several_relevant_items_given_out_of_order_and_repeated() {
    // scores 6..1 on items 0..5: ranking is 0, 1, 2, 3, 4, 5; relevant {0, 2, 5}, k = 3
    let m = rank(&[6.0, 5.0, 4.0, 3.0, 2.0, 1.0], &[], &[5, 0, 2, 0], 3);
    assert_eq!(m.top, vec![0, 1, 2]);
    assert_close!(m.precision, 2.0 / 3.0);
    assert_close!(m.recall, 2.0 / 3.0);
    // dcg = 1 + 1/log2(4); ideal = 1 + 1/log2(3) + 1/log2(4)
    assert_close!(m.ndcg, 1.5 / (1.0 + inv_log2(3.0) + 0.5));
    // ranks 1, 3, 6: (1/1 + 2/3 + 3/6) / 3
    assert_close!(m.average_precision, (1.0 + 2.0 / 3.0 + 0.5) / 3.0);
    assert_close!(m.reciprocal_rank, 1.0);
    // non-relevant {1, 3, 4}: 0 beats all 3, 2 beats 3 and 4, 5 beats none -> 5 of 9
    assert_close!(m.auc, 5.0 / 9.0);
    assert_eq!(m.hit, 1.0);
    assert_close!(m.arhr, 1.0);
}

#[test]
fn ties_are_broken_by_lower_index() {
    // scores .5 .5 .5 .2, relevant {1}: ranking 0, 1, 2, 3, so item 1 has rank 2
    let scores = [0.5, 0.5, 0.5, 0.2];
    let m = rank(&scores, &[], &[1], 1);
    assert_eq!(m.top, vec![0]);
    assert_eq!(m.precision, 0.0);
    assert_eq!(m.recall, 0.0);
    assert_eq!(m.ndcg, 0.0);
    assert_close!(m.average_precision, 0.5);
    assert_close!(m.reciprocal_rank, 0.5);
    // item 1 vs 0 (tie, 1/2), 2 (tie, 1/2), 3 (win, 1): 2 of 3 — ties ignore the index
    assert_close!(m.auc, 2.0 / 3.0);
    assert_eq!(m.hit, 0.0);
    assert_eq!(m.arhr, 0.0);

    let m = rank(&scores, &[], &[1], 2);
    assert_eq!(m.top, vec![0, 1]);
    assert_close!(m.precision, 0.5);
    assert_close!(m.recall, 1.0);
    // dcg = 1/log2(3); ideal: one hit at rank 1 = 1
    assert_close!(m.ndcg, inv_log2(3.0));
    assert_eq!(m.hit, 1.0);
    assert_close!(m.arhr, 0.5);
}

#[test]
fn excluded_relevant_item_is_ignored() {
    // scores .1 .9 .4 .6, exclude {1}, relevant {1, 2}: only 2 counts
    // ranking: 3 (1), 2 (2), 0 (3)
    let m = rank(&[0.1, 0.9, 0.4, 0.6], &[1], &[1, 2], 2);
    assert_eq!(m.top, vec![3, 2]);
    assert_close!(m.precision, 0.5);
    assert_close!(m.recall, 1.0);
    // dcg = 1/log2(3); ideal = min(2, 1) = 1 hit: 1
    assert_close!(m.ndcg, inv_log2(3.0));
    assert_close!(m.average_precision, 0.5);
    assert_close!(m.reciprocal_rank, 0.5);
    // item 2 (.4) vs 3 (.6) loses, vs 0 (.1) wins: 1 of 2
    assert_close!(m.auc, 0.5);
    assert_eq!(m.hit, 1.0);
    assert_close!(m.arhr, 0.5);
}

#[test]
fn k_larger_than_the_catalogue() {
    // scores .2 .4 .3, relevant {0}, k = 10: ranking 1, 2, 0
    let m = rank(&[0.2, 0.4, 0.3], &[], &[0], 10);
    assert_eq!(m.top, vec![1, 2, 0]);
    // precision keeps k as divisor: 1/10
    assert_close!(m.precision, 0.1);
    assert_close!(m.recall, 1.0);
    // dcg = 1/log2(4) = 1/2; ideal = 1
    assert_close!(m.ndcg, 0.5);
    assert_close!(m.average_precision, 1.0 / 3.0);
    assert_close!(m.reciprocal_rank, 1.0 / 3.0);
    assert_eq!(m.auc, 0.0);
    assert_eq!(m.hit, 1.0);
    assert_close!(m.arhr, 1.0 / 3.0);
}

#[test]
fn top_list_leaves_out_excluded_items() {
    let m = rank(&[5.0, 4.0, 3.0, 2.0, 1.0], &[0, 2, 4], &[3], 10);
    assert_eq!(m.top, vec![1, 3]);
    // item 3 has rank 2 among {1, 3}
    assert_close!(m.reciprocal_rank, 0.5);
}

fn assert_zero_metrics(m: &UserMetrics) {
    for v in [
        m.precision,
        m.recall,
        m.ndcg,
        m.average_precision,
        m.reciprocal_rank,
        m.auc,
        m.hit,
        m.arhr,
    ] {
        assert_eq!(v, 0.0, "{m:?}");
    }
}

#[test]
fn no_relevant_items_gives_zeros() {
    let m = rank(&[0.3, 0.2, 0.1], &[], &[], 2);
    assert_zero_metrics(&m);
    assert_eq!(m.top, vec![0, 1]);

    // every relevant item is excluded
    let m = rank(&[0.3, 0.2, 0.1], &[1], &[1], 2);
    assert_zero_metrics(&m);
    assert_eq!(m.top, vec![0, 2]);

    // out-of-range relevant items are ignored
    let m = rank(&[0.3, 0.2, 0.1], &[7], &[3, 99], 2);
    assert_zero_metrics(&m);

    // empty catalogue
    let m = rank(&[], &[], &[0], 5);
    assert_zero_metrics(&m);
    assert!(m.top.is_empty());
}

#[test]
fn k_zero_gives_zero_at_k_metrics() {
    // ranking 0, 1; relevant 1 at rank 2
    let m = rank(&[0.9, 0.1], &[], &[1], 0);
    assert!(m.top.is_empty());
    assert_eq!(
        (m.precision, m.recall, m.ndcg, m.hit, m.arhr),
        (0.0, 0.0, 0.0, 0.0, 0.0)
    );
    assert_close!(m.average_precision, 0.5);
    assert_close!(m.reciprocal_rank, 0.5);
    assert_eq!(m.auc, 0.0);
}

#[test]
fn only_relevant_items_left_gives_auc_one_half() {
    let m = rank(&[0.9, 0.1, 0.5], &[2], &[0, 1], 2);
    assert_eq!(m.auc, 0.5);
    assert_close!(m.precision, 1.0);
    assert_close!(m.ndcg, 1.0);
    assert_close!(m.average_precision, 1.0);
}

#[test]
fn nan_scores_do_not_panic() {
    // total_cmp order: NaN > 1.0 > 0.5 > -NaN, so the ranking is 0, 3, 1, 2
    let scores = [f64::NAN, 0.5, -f64::NAN, 1.0];
    let m = rank(&scores, &[], &[1], 2);
    assert_eq!(m.top, vec![0, 3]);
    assert_close!(m.reciprocal_rank, 1.0 / 3.0);
    // item 1 loses to 0 and 3, beats 2
    assert_close!(m.auc, 1.0 / 3.0);
    for v in [m.precision, m.recall, m.ndcg, m.average_precision, m.auc] {
        assert!(v.is_finite());
    }
    let m = rank(&[f64::NAN; 5], &[0], &[1, 4], 3);
    assert_eq!(m.top, vec![1, 2, 3]);
    // all tied: 2 relevant vs 2 non-relevant, every pair 1/2
    assert_close!(m.auc, 0.5);
}

/// The full ranking by sorting everything, for reference.
fn full_ranking(scores: &[f64], exclude: &[u32]) -> Vec<u32> {
    let mut items: Vec<u32> = (0..scores.len() as u32)
        .filter(|i| !exclude.contains(i))
        .collect();
    items.sort_by(|&a, &b| {
        scores[b as usize]
            .total_cmp(&scores[a as usize])
            .then(a.cmp(&b))
    });
    items
}

#[test]
fn random_users_match_brute_force() {
    let mut rng = StdRng::seed_from_u64(7);
    for case in 0..300 {
        let n = rng.random_range(1..60usize);
        // few distinct values so ties are common
        let levels = rng.random_range(1..12u32);
        let scores: Vec<f64> = (0..n)
            .map(|_| f64::from(rng.random_range(0..levels)) / 4.0)
            .collect();
        let pick = |rng: &mut StdRng, p: f64| -> Vec<u32> {
            (0..n as u32).filter(|_| rng.random_bool(p)).collect()
        };
        let exclude = pick(&mut rng, 0.2);
        let relevant: Vec<u32> = pick(&mut rng, 0.25)
            .into_iter()
            .filter(|i| !exclude.contains(i))
            .collect();
        let k = rng.random_range(0..15usize);
        let m = rank(&scores, &exclude, &relevant, k);

        let ranking = full_ranking(&scores, &exclude);
        let top: Vec<u32> = ranking.iter().copied().take(k).collect();
        assert_eq!(m.top, top, "case {case}");
        if relevant.is_empty() {
            assert_zero_metrics(&m);
            continue;
        }

        // AUC: every pair, O(n^2)
        let negatives: Vec<u32> = ranking
            .iter()
            .copied()
            .filter(|i| !relevant.contains(i))
            .collect();
        let mut wins = 0.0;
        for &r in &relevant {
            for &q in &negatives {
                let (sr, sq) = (scores[r as usize], scores[q as usize]);
                if sr > sq {
                    wins += 1.0;
                } else if sr == sq {
                    wins += 0.5;
                }
            }
        }
        let auc = if negatives.is_empty() {
            0.5
        } else {
            wins / (relevant.len() * negatives.len()) as f64
        };
        assert_close!(m.auc, auc);

        // rank-based metrics from the full ranking
        let ranks: Vec<usize> = ranking
            .iter()
            .enumerate()
            .filter(|(_, i)| relevant.contains(i))
            .map(|(r, _)| r + 1)
            .collect();
        let ap = ranks
            .iter()
            .enumerate()
            .map(|(j, &r)| (j + 1) as f64 / r as f64)
            .sum::<f64>()
            / ranks.len() as f64;
        assert_close!(m.average_precision, ap);
        assert_close!(m.reciprocal_rank, 1.0 / ranks[0] as f64);
        let hits = ranks.iter().filter(|&&r| r <= k).count();
        let dcg: f64 = ranks
            .iter()
            .filter(|&&r| r <= k)
            .map(|&r| inv_log2(r as f64 + 1.0))
            .sum();
        let ideal: f64 = (1..=k.min(relevant.len()))
            .map(|r| inv_log2(r as f64 + 1.0))
            .sum();
        assert_close!(m.ndcg, if ideal > 0.0 { dcg / ideal } else { 0.0 });
        assert_close!(m.recall, hits as f64 / relevant.len() as f64);
        if k > 0 {
            assert_close!(m.precision, hits as f64 / k as f64);
        }
        assert_eq!(m.hit, if hits > 0 { 1.0 } else { 0.0 });
    }
}

#[test]
fn cosine_of_sorted_lists() {
    // |{0, 1}| / sqrt(4 * 2)
    assert_close!(cosine(&[0, 1, 2, 3], &[0, 1]), 2.0 / 8f64.sqrt());
    assert_close!(cosine(&[1, 4, 9], &[1, 4, 9]), 1.0);
    assert_eq!(cosine(&[1, 3], &[2, 4]), 0.0);
    assert_eq!(cosine(&[], &[1]), 0.0);
}

fn user(precision: f64, top: Vec<u32>) -> UserMetrics {
    UserMetrics {
        precision,
        recall: 2.0 * precision,
        ndcg: 0.1,
        average_precision: 0.2,
        reciprocal_rank: 0.3,
        auc: 0.4,
        hit: if precision > 0.0 { 1.0 } else { 0.0 },
        arhr: 0.5,
        top,
    }
}

fn catalogue_fixture() -> (Vec<usize>, Vec<Vec<u32>>) {
    // item 0: users 0..4, item 1: users 0, 1, item 2: user 2, item 3: nobody
    let item_users = vec![vec![0, 1, 2, 3], vec![0, 1], vec![2], vec![]];
    let popularity = item_users.iter().map(Vec::len).collect();
    (popularity, item_users)
}

#[test]
fn summarise_by_hand() {
    let (popularity, item_users) = catalogue_fixture();
    let catalogue = Catalogue {
        item_popularity: &popularity,
        n_users: 4,
        item_users: &item_users,
    };
    let users = [
        user(0.5, vec![0, 1]),
        user(0.25, vec![1, 2]),
        user(0.0, vec![3]),
    ];
    let m = summarise(&users, 2, 5, &catalogue);
    assert_eq!(m.k, 2);
    assert_eq!(m.users, 3);
    // (0.5 + 0.25 + 0) / 3
    assert_close!(m.precision, 0.25);
    assert_close!(m.recall, 0.5);
    assert_close!(m.ndcg, 0.1);
    assert_close!(m.map, 0.2);
    assert_close!(m.mrr, 0.3);
    assert_close!(m.auc, 0.4);
    assert_close!(m.hit_rate, 2.0 / 3.0);
    assert_close!(m.arhr, 0.5);
    // items {0, 1, 2, 3} of 5
    assert_close!(m.coverage, 0.8);
    // recommended 0, 1, 1, 2, 3: -log2(4/4) = 0, -log2(2/4) = 1 (twice),
    // -log2(1/4) = 2, popularity 0 -> 1: 2; (0 + 1 + 1 + 2 + 2) / 5
    assert_close!(m.novelty, 1.2);
    // user 0: 1 - 2/sqrt(4*2); user 1: 1 - 0/sqrt(2*1) = 1; user 2 has one item, left out
    assert_close!(m.diversity, ((1.0 - 2.0 / 8f64.sqrt()) + 1.0) / 2.0);
}

#[test]
fn summarise_nothing_gives_zeros() {
    let catalogue = Catalogue {
        item_popularity: &[],
        n_users: 0,
        item_users: &[],
    };
    let m = summarise(&[], 10, 0, &catalogue);
    let zero = RankingMetrics {
        k: 10,
        users: 0,
        precision: 0.0,
        recall: 0.0,
        ndcg: 0.0,
        map: 0.0,
        mrr: 0.0,
        auc: 0.0,
        hit_rate: 0.0,
        arhr: 0.0,
        coverage: 0.0,
        novelty: 0.0,
        diversity: 0.0,
    };
    assert_eq!(m, zero);

    // items unknown to the catalogue: popularity 0, no users, all finite
    let m = summarise(&[user(1.0, vec![8, 9])], 2, 0, &catalogue);
    assert_eq!(m.coverage, 0.0);
    assert_eq!(m.novelty, 0.0);
    assert_close!(m.diversity, 1.0);
}

#[test]
fn table_is_aligned_and_serialises() {
    let (popularity, item_users) = catalogue_fixture();
    let catalogue = Catalogue {
        item_popularity: &popularity,
        n_users: 4,
        item_users: &item_users,
    };
    let m = summarise(&[user(0.1234, vec![0, 1])], 10, 4, &catalogue);
    let table = format_table(&m);
    assert!(table.contains("precision@10  0.1234\n"), "{table}");
    assert!(table.contains("map           0.2000\n"), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 12);
    assert_eq!(lines[0], "users         1");
    // every value starts in column 14: a 12-character label column, two spaces
    for line in &lines {
        assert_eq!(&line[12..14], "  ", "{table}");
        assert_ne!(line.as_bytes()[14], b' ', "{table}");
    }
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["k"], 10);
    assert!(json["map"].is_number());
}

#[test]
fn predictive_distribution_by_hand() {
    // Two draws at 1 and 3, each with noise sd 1: the mixture has mean 2
    // and variance var{1, 3} + mean{1², 1²} = 1 + 1.
    let p = predictive(&[1.0, 3.0], &[1.0, 1.0]);
    assert_close!(p.mean, 2.0);
    assert_close!(p.sd, 2f64.sqrt());
    // Scales enter squared: mean{0², 2²} = 2.
    assert_close!(predictive(&[5.0, 5.0], &[0.0, 2.0]).sd, 2f64.sqrt());
    assert!(predictive(&[], &[]).mean.is_nan());

    let rows = [Predictive { mean: 0.0, sd: 1.0 }; 4];
    // |t| ≤ 0.674 holds 0.5 only; |t| ≤ 1.645 holds 0.5, −0.7 and 1.0.
    let m = predictive_intervals(&rows, &[0.5, -0.7, 1.0, 2.0], &[1.0, 2.0, 3.0, 4.0]);
    assert_close!(m.interval50, 0.25);
    assert_close!(m.interval90, 0.75);
    // Every sd is the same: no order to correlate.
    assert!(m.spread_corr.is_nan());
    let wider: Vec<Predictive> = (1..=4)
        .map(|k| Predictive {
            mean: 0.0,
            sd: k as f64,
        })
        .collect();
    let m = predictive_intervals(&wider, &[0.0; 4], &[40.0, 30.0, 20.0, 10.0]);
    assert_close!(m.spread_corr, -1.0);
    assert_close!(m.interval50, 1.0);
}

#[test]
fn spearman_by_hand() {
    assert_close!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
    // Ranks of the first side: 1, 2.5, 2.5, 4. Deviations from 2.5 give
    // Σab = 4.5, Σa² = 4.5, Σb² = 5.
    assert_close!(
        spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]),
        4.5 / 22.5f64.sqrt()
    );
    assert!(spearman(&[1.0], &[2.0]).is_nan());
    assert!(spearman(&[1.0, 1.0], &[2.0, 3.0]).is_nan());
}

/// Targets drawn from exactly the distribution the draws describe: a score
/// uncertain by `a` (the draws) plus noise of sd `b` (the scale). The
/// intervals must then cover 50% and 90%, up to sampling error.
#[test]
fn well_specified_intervals_cover_what_they_claim() {
    let mut rng = StdRng::seed_from_u64(7);
    let n = 20_000;
    let (mut rows, mut targets, mut support) = (Vec::new(), Vec::new(), Vec::new());
    let mut overconfident = Vec::new();
    for _ in 0..n {
        let mu: f64 = rng.random_range(1.0..5.0);
        let a: f64 = rng.random_range(0.1..0.8);
        let b: f64 = rng.random_range(0.5..1.0);
        let scores: Vec<f64> = (0..64)
            .map(|_| mu + a * rng.sample::<f64, _>(StandardNormal))
            .collect();
        let truth = mu
            + a * rng.sample::<f64, _>(StandardNormal)
            + b * rng.sample::<f64, _>(StandardNormal);
        rows.push(predictive(&scores, &[b; 64]));
        overconfident.push(predictive(&[mu], &[b]));
        targets.push(truth);
        // Less data, more uncertainty: support falls as `a` grows.
        support.push(1.0 / (a * a));
    }
    let m = predictive_intervals(&rows, &targets, &support);
    assert!((m.interval50 - 0.5).abs() < 0.02, "{m:?}");
    assert!((m.interval90 - 0.9).abs() < 0.015, "{m:?}");
    assert!(m.spread_corr < -0.3, "{m:?}");
    // Leaving out the score's own uncertainty covers too little.
    let m = predictive_intervals(&overconfident, &targets, &support);
    assert!(m.interval50 < 0.46 && m.interval90 < 0.87, "{m:?}");
}
