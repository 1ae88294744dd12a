//! A generated hierarchy: the transitive closure of a complete tree, the
//! data Poincaré embeddings are judged on (Nickel & Kiela 2017).
//!
//! `tree:BxD` is a complete tree of branching `B` and depth `D`: one root,
//! `B` children under every node above depth `D`. There is one row per
//! (node, ancestor) pair, so a node at depth `d` has `d` rows. Both columns
//! hold the one domain `node`, so a single table embeds every node, and are
//! named `u` (the node) and `v` (its ancestor) after the inputs of a
//! model's `R(u, v)`. The node column is the user role and the ancestor
//! column the item role: a node's training positives are its ancestors,
//! which negative sampling therefore never proposes.
//!
//! Nodes are numbered breadth first, the root first, and their ids are
//! paths: `n`, `n.0`, `n.0.2` (the third child of the first child).

use super::{Column, ColumnData, DataError, Dataset, IdMap};
use std::fmt;
use std::str::FromStr;

/// The domain of both columns.
pub const DOMAIN: &str = "node";
/// The column of the node a row is about (the user role).
pub const NODE_COLUMN: &str = "u";
/// The column of one of its ancestors (the item role).
pub const ANCESTOR_COLUMN: &str = "v";
/// The largest tree generated: the hierarchy report compares every node
/// with every other, so its cost grows with the square of this.
pub const MAX_NODES: usize = 100_000;
/// The most rows generated: a deep chain (`1xD`) has few nodes but
/// `D(D + 1)/2` rows.
pub const MAX_ROWS: usize = 10_000_000;

/// The branching and depth of a complete tree, checked to be of a size
/// recc generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeShape {
    branching: usize,
    depth: usize,
}

impl TreeShape {
    /// A complete tree of `branching` children per node, `depth` levels
    /// below the root; an error names what is out of range.
    pub fn new(branching: usize, depth: usize) -> Result<TreeShape, String> {
        let shape = format!("tree:{branching}x{depth}");
        if branching == 0 {
            return Err(format!("{shape}: the branching must be at least 1"));
        }
        if depth == 0 {
            return Err(format!(
                "{shape}: the depth must be at least 1 (a root alone has no ancestor pairs)"
            ));
        }
        sizes(branching, depth).map_err(|too_many| format!("{shape}: {too_many}"))?;
        Ok(TreeShape { branching, depth })
    }

    pub fn branching(&self) -> usize {
        self.branching
    }

    pub fn depth(&self) -> usize {
        self.depth
    }
}

/// Nodes and (node, ancestor) rows of a complete tree, or which limit it
/// passes. Counted level by level and stopped at a limit, so a huge shape
/// costs no more than an allowed one.
fn sizes(branching: usize, depth: usize) -> Result<(usize, usize), String> {
    let (mut nodes, mut rows, mut level) = (1usize, 0usize, 1usize);
    for d in 1..=depth {
        level = level.saturating_mul(branching);
        nodes = nodes.saturating_add(level);
        rows = rows.saturating_add(level.saturating_mul(d));
        if nodes > MAX_NODES {
            return Err(format!(
                "more than {MAX_NODES} nodes; choose a smaller tree"
            ));
        }
        if rows > MAX_ROWS {
            return Err(format!("more than {MAX_ROWS} rows; choose a smaller tree"));
        }
    }
    Ok((nodes, rows))
}

impl FromStr for TreeShape {
    type Err = String;

    /// `BxD`, e.g. `3x6`.
    fn from_str(s: &str) -> Result<TreeShape, String> {
        let bad = || format!("tree:{s}: expected tree:BxD (branching x depth), e.g. tree:3x6");
        let (b, d) = s.split_once('x').ok_or_else(bad)?;
        let number = |t: &str| {
            if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            // All digits: the only failure left is a number past usize.
            t.parse::<usize>()
                .map_err(|_| format!("tree:{s}: too large; choose a smaller tree"))
        };
        TreeShape::new(number(b)?, number(d)?)
    }
}

impl fmt::Display for TreeShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.branching, self.depth)
    }
}

/// A complete tree, its nodes in breadth-first order (the root is 0, and
/// every node comes after its parent).
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    shape: TreeShape,
    /// Per node: its parent; the root's is itself.
    parent: Vec<u32>,
    /// Per node: its depth, 0 at the root.
    depth: Vec<u32>,
}

impl Tree {
    pub fn new(shape: TreeShape) -> Tree {
        let b = shape.branching;
        // A shape is only made once its sizes are known to be within limits.
        let (nodes, _) = sizes(b, shape.depth).unwrap_or((1, 0));
        let mut parent = Vec::with_capacity(nodes);
        let mut depth = Vec::with_capacity(nodes);
        parent.push(0);
        depth.push(0);
        // Breadth first, the children of node p are b·p + 1 … b·p + b.
        for i in 1..nodes {
            let p = (i - 1) / b;
            parent.push(p as u32);
            depth.push(depth[p] + 1);
        }
        Tree {
            shape,
            parent,
            depth,
        }
    }

    pub fn shape(&self) -> TreeShape {
        self.shape
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// The parent of `node`; `None` for the root.
    pub fn parent(&self, node: usize) -> Option<usize> {
        (node > 0).then(|| self.parent[node] as usize)
    }

    /// The depth of `node`, 0 at the root.
    pub fn depth_of(&self, node: usize) -> usize {
        self.depth[node] as usize
    }

    /// The ancestors of `node`, nearest first: its parent, …, the root.
    pub fn ancestors(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(self.parent(node), move |&a| self.parent(a))
    }

    /// The raw id of every node, in node order: `n`, `n.0`, …, `n.2.1`.
    pub fn paths(&self) -> Vec<String> {
        let b = self.shape.branching;
        let mut paths: Vec<String> = Vec::with_capacity(self.len());
        for i in 0..self.len() {
            let path = match self.parent(i) {
                None => "n".to_string(),
                Some(p) => format!("{}.{}", paths[p], (i - 1) % b),
            };
            paths.push(path);
        }
        paths
    }

    /// The transitive closure as a dataset: one row per (node, ancestor),
    /// nodes in order and each node's ancestors nearest first.
    pub fn closure(&self) -> Result<Dataset, DataError> {
        let mut ids = IdMap::new();
        for path in self.paths() {
            ids.intern(&path);
        }
        let mut nodes = Vec::new();
        let mut ancestors = Vec::new();
        for i in 1..self.len() {
            for a in self.ancestors(i) {
                nodes.push(i as u32);
                ancestors.push(a as u32);
            }
        }
        let column = |name: &str, values: Vec<u32>| Column {
            name: name.to_string(),
            data: ColumnData::Index {
                domain: DOMAIN.to_string(),
                values,
            },
        };
        let data = Dataset {
            name: format!("tree {}", self.shape),
            columns: vec![
                column(NODE_COLUMN, nodes),
                column(ANCESTOR_COLUMN, ancestors),
            ],
            domains: [(DOMAIN.to_string(), ids)].into_iter().collect(),
            target: None,
            user: Some(NODE_COLUMN.to_string()),
            item: Some(ANCESTOR_COLUMN.to_string()),
            time: None,
            skipped: 0,
            notes: Vec::new(),
        };
        data.validate()?;
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(s: &str) -> Tree {
        Tree::new(s.parse().unwrap())
    }

    #[test]
    fn three_by_six_has_1093_nodes_and_6015_rows() {
        let t = tree("3x6");
        assert_eq!(t.len(), 1093);
        let d = t.closure().unwrap();
        // Σ d·3^d for d = 1..6: a node at depth d has d ancestors.
        assert_eq!(d.len(), 6015);
        assert_eq!(d.domain_size(DOMAIN), 1093);
        assert_eq!(d.name, "tree 3x6");
        assert_eq!(d.users().map(|(dom, _)| dom), Some(DOMAIN));
        assert_eq!(d.items().map(|(dom, _)| dom), Some(DOMAIN));
        let per_depth: Vec<usize> = (0..=6)
            .map(|k| (0..t.len()).filter(|&i| t.depth_of(i) == k).count())
            .collect();
        assert_eq!(per_depth, [1, 3, 9, 27, 81, 243, 729]);
    }

    #[test]
    fn ids_are_paths_and_rows_are_node_ancestor_pairs() {
        let t = tree("2x3");
        let paths = t.paths();
        assert_eq!(
            &paths[..7],
            ["n", "n.0", "n.1", "n.0.0", "n.0.1", "n.1.0", "n.1.1"]
        );
        assert_eq!(paths[14], "n.1.1.1");
        assert_eq!(t.parent(0), None);
        assert_eq!(t.parent(6), Some(2));
        assert_eq!(t.depth_of(14), 3);
        assert_eq!(t.ancestors(14).collect::<Vec<_>>(), [6, 2, 0]);
        let d = t.closure().unwrap();
        let ids = &d.domains[DOMAIN];
        let (_, us) = d.indices(NODE_COLUMN).unwrap();
        let (_, vs) = d.indices(ANCESTOR_COLUMN).unwrap();
        let rows: Vec<(&str, &str)> = us
            .iter()
            .zip(vs)
            .map(|(&u, &v)| (ids.name(u), ids.name(v)))
            .collect();
        assert_eq!(
            &rows[..5],
            [
                ("n.0", "n"),
                ("n.1", "n"),
                ("n.0.0", "n.0"),
                ("n.0.0", "n"),
                ("n.0.1", "n.0")
            ]
        );
        // Every ancestor is a prefix of its node's path.
        for (u, v) in rows {
            assert!(u.starts_with(&format!("{v}.")), "{u} under {v}");
        }
        assert_eq!(d.len(), 2 + 2 * 4 + 3 * 8);
    }

    #[test]
    fn a_chain_and_wide_children_keep_unambiguous_paths() {
        let chain = tree("1x4");
        assert_eq!(chain.paths(), ["n", "n.0", "n.0.0", "n.0.0.0", "n.0.0.0.0"]);
        assert_eq!(chain.closure().unwrap().len(), 1 + 2 + 3 + 4);
        let wide = tree("12x1");
        assert_eq!(wide.paths()[12], "n.11");
    }

    #[test]
    fn bad_shapes_are_refused_with_a_reason() {
        let err = |s: &str| s.parse::<TreeShape>().unwrap_err();
        assert!(err("3").contains("expected tree:BxD"), "{}", err("3"));
        assert!(err("3x").contains("expected tree:BxD"));
        assert!(err("x6").contains("expected tree:BxD"));
        assert!(err("-3x6").contains("expected tree:BxD"));
        assert!(err("3x6x1").contains("expected tree:BxD"));
        assert!(err("0x6").contains("branching must be at least 1"));
        assert!(err("3x0").contains("depth must be at least 1"));
        assert!(
            err("3x11").contains("more than 100000 nodes"),
            "{}",
            err("3x11")
        );
        assert!(
            err("1x5000").contains("more than 10000000 rows"),
            "{}",
            err("1x5000")
        );
        assert!(err("2x18446744073709551615").contains("more than"));
        assert!(err("99999999999999999999999x2").contains("too large"));
        assert!(err("2x99999999999999999999").contains("too large"));
        assert_eq!("3x6".parse::<TreeShape>().unwrap().to_string(), "3x6");
    }
}
