//! How well an embedding in the Poincaré ball reflects a known tree.
//!
//! Input: a [`Tree`] and one embedding row per node. Output: a
//! [`HierarchyReport`] with the two figures Nickel & Kiela (2017) read a
//! hierarchy's embedding by: whether each node's nearest neighbour is its
//! parent, and whether the norm grows with depth (general nodes near the
//! origin, specific ones near the rim).

use crate::data::tree::{self, Tree};
use crate::data::IdMap;
use ndarray::{s, Array2, ArrayView2};
use rayon::prelude::*;
use recc_compiler::interp::Params;
use recc_compiler::ir::{Graph, TableRole};
use recc_compiler::model::Constraint;

/// The hierarchy figures of one embedding.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HierarchyReport {
    /// Over non-root nodes, the mean rank of the node's parent among all
    /// other nodes by Poincaré distance from the node: 1 when the parent is
    /// always the nearest. Ties count half, so an embedding that says
    /// nothing (every row equal) scores the rank of a random guess.
    pub parent_rank: f64,
    /// The mean Euclidean norm of the rows at each depth, the root's first.
    pub norm_by_depth: Vec<f64>,
}

/// The report of `embedding`, whose row `i` embeds node `i` of `tree`.
/// Rows are points of the open unit ball; as a neighbour, a row on or past
/// the boundary is infinitely far.
pub fn hierarchy_report(tree: &Tree, embedding: ArrayView2<f64>) -> HierarchyReport {
    let n = tree.len().min(embedding.nrows());
    let lanes = embedding.ncols();
    // Rows laid out flat, so the n² comparisons below allocate nothing.
    let flat: Vec<f64> = embedding.slice(s![..n, ..]).iter().copied().collect();
    let row = |i: usize| &flat[i * lanes..(i + 1) * lanes];
    let room: Vec<f64> = (0..n)
        .map(|i| 1.0 - row(i).iter().map(|x| x * x).sum::<f64>())
        .collect();
    // For a fixed `a`, d(a, b) = arcosh(1 + 2‖a − b‖² / ((1 − ‖a‖²)(1 − ‖b‖²)))
    // grows with ‖a − b‖² / (1 − ‖b‖²): ranks compare that, without logs.
    let far = |a: &[f64], j: usize| {
        if room[j] > 0.0 {
            let d2: f64 = a.iter().zip(row(j)).map(|(x, y)| (x - y) * (x - y)).sum();
            d2 / room[j]
        } else {
            f64::INFINITY
        }
    };
    let ranks: Vec<f64> = (1..n)
        .into_par_iter()
        .filter_map(|i| {
            let p = tree.parent(i).filter(|&p| p < n)?;
            let a = row(i);
            let to_parent = far(a, p);
            let (mut nearer, mut tied) = (0usize, 0usize);
            for j in (0..n).filter(|&j| j != i && j != p) {
                let d = far(a, j);
                if d < to_parent {
                    nearer += 1;
                } else if d == to_parent {
                    tied += 1;
                }
            }
            Some(1.0 + nearer as f64 + tied as f64 / 2.0)
        })
        .collect();
    let parent_rank = ranks.iter().sum::<f64>() / ranks.len().max(1) as f64;
    let depths = (0..n).map(|i| tree.depth_of(i)).max().map_or(0, |d| d + 1);
    let mut sums = vec![(0.0, 0usize); depths];
    for i in 0..n {
        let s = &mut sums[tree.depth_of(i)];
        s.0 += row(i).iter().map(|x| x * x).sum::<f64>().sqrt();
        s.1 += 1;
    }
    HierarchyReport {
        parent_rank,
        norm_by_depth: sums.iter().map(|(s, c)| s / (*c).max(1) as f64).collect(),
    }
}

/// The report of a trained model on the tree its data came from: its table
/// over the tree's domain that lives on the ball (the first, if several).
/// `None` when the model has no such table. `domains` are the binding's id
/// maps, which say the row of each node.
pub fn tree_report(
    tree: &Tree,
    g: &Graph,
    domains: &[(String, IdMap)],
    params: &Params,
) -> Option<HierarchyReport> {
    let t = g.tables.iter().position(|t| {
        t.constraint == Constraint::Ball
            && t.role != TableRole::LogVar
            && t.domain
                .is_some_and(|d| g.domains[d.index()].name == tree::DOMAIN)
    })?;
    let (_, ids) = domains.iter().find(|(name, _)| name == tree::DOMAIN)?;
    let values = params.tables.get(t)?;
    let mut embedding = Array2::zeros((tree.len(), values.ncols()));
    for (i, path) in tree.paths().iter().enumerate() {
        let row = ids.get(path)? as usize;
        embedding.row_mut(i).assign(&values.row(row));
    }
    Some(hierarchy_report(tree, embedding.view()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn tree(s: &str) -> Tree {
        Tree::new(s.parse().unwrap())
    }

    #[test]
    fn a_perfect_embedding_ranks_every_parent_first() {
        // 2x2, breadth first: n; n.0, n.1; n.0.0, n.0.1, n.1.0, n.1.1.
        // Children at 0.5 either side, grandchildren fanned out beyond them
        // (close together, near the rim, siblings would be nearer than the
        // parent).
        let e = array![
            [0.0, 0.0],
            [0.5, 0.0],
            [-0.5, 0.0],
            [0.8, 0.4],
            [0.8, -0.4],
            [-0.8, 0.4],
            [-0.8, -0.4],
        ];
        let r = hierarchy_report(&tree("2x2"), e.view());
        assert_eq!(r.parent_rank, 1.0);
        assert_eq!(r.norm_by_depth.len(), 3);
        assert_eq!(r.norm_by_depth[0], 0.0);
        assert_eq!(r.norm_by_depth[1], 0.5);
        assert!((r.norm_by_depth[2] - 0.8f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn ranks_count_nearer_nodes_by_poincare_distance() {
        // 1x2 is a chain n, n.0, n.0.0 on a line. The middle node at 0.5 is
        // nearer its child at 0.9 than its parent at 0 in Euclidean terms,
        // but distances stretch towards the rim: in the ball the parent is
        // nearer (0.25 against 0.16 / 0.19 in the ranked quantity), rank 1.
        let e = array![[0.0, 0.0], [0.5, 0.0], [0.9, 0.0]];
        assert_eq!(hierarchy_report(&tree("1x2"), e.view()).parent_rank, 1.0);
        // Beside the leaf, the middle node has the leaf nearer than the
        // root: rank 2; the leaf's parent is nearest: rank 1.
        let e = array![[0.0, 0.0], [0.6, 0.0], [0.65, 0.0]];
        let r = hierarchy_report(&tree("1x2"), e.view());
        assert_eq!(r.parent_rank, 1.5);
        assert_eq!(r.norm_by_depth, [0.0, 0.6, 0.65]);
    }

    #[test]
    fn equal_rows_score_a_random_guess() {
        // Every node tied with the parent: rank 1 + (n − 2)/2.
        let t = tree("3x2");
        let e = Array2::<f64>::zeros((t.len(), 2));
        let r = hierarchy_report(&t, e.view());
        assert_eq!(r.parent_rank, 1.0 + (13.0 - 2.0) / 2.0);
        assert_eq!(r.norm_by_depth, [0.0, 0.0, 0.0]);
    }

    #[test]
    fn rows_outside_the_ball_are_infinitely_far() {
        // The leaf sits outside the ball: Euclidean 0.15 from the middle
        // node against the root's 0.9, yet the root counts as nearer.
        let e = array![[0.0, 0.0], [0.9, 0.0], [1.05, 0.0]];
        let r = hierarchy_report(&tree("1x2"), e.view());
        assert_eq!(r.parent_rank, 1.0);
    }
}
