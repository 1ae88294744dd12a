//! Does a model's score split into a user part and an item part?
//!
//! Ranking a whole catalogue scores every (user, item) pair. When the score
//! is built from values that read only the user's side of the example (its
//! index, attributes, history), values that read only the item's side, and
//! dot products of one with the other, joined by scalar arithmetic, the
//! user values can be computed once per user, the item values once per
//! item, and every pair costs only its dot products and a few scalar ops:
//! a matrix product. [`factor_score`] finds that split on the IR.
//!
//! The split is exact: [`ScoreFactors::steps`] repeat the graph's own
//! operations on the pair in the graph's order, and a [`Step::Dot`] sums the
//! products lane after lane as the reference evaluator's `dot` does, so a
//! score assembled from the parts equals the evaluator's bit for bit. A link
//! applied after the dot product (`sigmoid(dot(p[u], q[i]))`) is a scalar
//! step like any other.

use crate::ir::{Graph, NodeId, Op, SlotId, Ty};
use crate::types::{BinaryFn, Shape, UnaryFn};

/// Which member of a (user, item) pair a slot's value follows when one
/// user is scored against the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotSide {
    /// The same for every pair: noise (zero at prediction), a constant.
    Fixed,
    /// The same for every item of one user: the user's index, attributes and
    /// history, a value read from the user's row.
    User,
    /// Depends on the item alone: its index and attributes.
    Item,
    /// Depends on both, or on neither in a way that is fixed (features of the
    /// pair, a negative draw): the score cannot be split at such a slot.
    Pair,
}

/// How a node's value varies over the pairs of a catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// Reads no slot (constants, globals).
    Fixed,
    User,
    Item,
    Mixed,
}

impl Side {
    fn join(self, other: Side) -> Side {
        match (self, other) {
            (Side::Fixed, s) | (s, Side::Fixed) => s,
            (a, b) if a == b => a,
            _ => Side::Mixed,
        }
    }
}

/// One operation on a pair's values; operands are earlier steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Scalar number `k` of [`ScoreFactors::user_values`].
    User(usize),
    /// Scalar number `k` of [`ScoreFactors::item_values`].
    Item(usize),
    /// The dot product of user vector `user` and item vector `item`, summed
    /// from lane 0 up.
    Dot {
        user: usize,
        item: usize,
    },
    Unary(UnaryFn, usize),
    Binary(BinaryFn, usize, usize),
}

/// A score split into its user part and its item part.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreFactors {
    /// Nodes of the graph that read no item slot, each a number or a vector
    /// (no bag member dimension): the user's part.
    pub user_values: Vec<NodeId>,
    /// Nodes that read no user slot: the item's part.
    pub item_values: Vec<NodeId>,
    /// The score from those values; the last step is the score.
    pub steps: Vec<Step>,
}

impl ScoreFactors {
    /// The number of lanes of `node` (1 for a scalar).
    pub fn lanes(g: &Graph, node: NodeId) -> usize {
        g.ty(node).shape().map_or(1, |s| s.len())
    }

    /// The dot products of a pair: the lanes each multiplies.
    pub fn dot_lanes(&self, g: &Graph) -> Vec<usize> {
        self.steps
            .iter()
            .filter_map(|s| match *s {
                Step::Dot { user, .. } => Some(Self::lanes(g, self.user_values[user])),
                _ => None,
            })
            .collect()
    }

    /// One line for people: the dot products and the scalar work per pair.
    pub fn describe(&self, g: &Graph) -> String {
        let dots = self.dot_lanes(g);
        let dots = if dots.is_empty() {
            "no dot product".to_string()
        } else {
            let lanes: Vec<String> = dots.iter().map(usize::to_string).collect();
            format!("dot over {} lanes", lanes.join(" + "))
        };
        let scalar = self
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Unary(..) | Step::Binary(..)))
            .count();
        format!(
            "{dots}, {} user and {} item values, {scalar} scalar ops per pair",
            self.user_values.len(),
            self.item_values.len()
        )
    }
}

/// Why a score does not split: the first node (from the score down) that
/// joins the user's side and the item's side other than by a dot product
/// or scalar arithmetic.
#[derive(Clone, Debug, PartialEq)]
pub struct NoFactors {
    pub node: Option<NodeId>,
    pub reason: String,
}

/// Split the score of `g` into a user part and an item part, `sides` giving
/// each slot's side (one per slot of `g`).
pub fn factor_score(g: &Graph, sides: &[SlotSide]) -> Result<ScoreFactors, NoFactors> {
    let refuse = |node: Option<NodeId>, reason: &str| NoFactors {
        node,
        reason: reason.to_string(),
    };
    let Some(score) = g.score else {
        return Err(refuse(None, "the model has no score"));
    };
    if sides.len() != g.slots.len() {
        return Err(refuse(
            None,
            &format!("{} slot sides for {} slots", sides.len(), g.slots.len()),
        ));
    }
    let mut side = Vec::with_capacity(g.nodes.len());
    for n in &g.nodes {
        let s = match n.op {
            Op::Const(_) | Op::Global(_) => Side::Fixed,
            Op::Slot(SlotId(k)) => match sides[k as usize] {
                SlotSide::Fixed => Side::Fixed,
                SlotSide::User => Side::User,
                SlotSide::Item => Side::Item,
                SlotSide::Pair => Side::Mixed,
            },
            op => op
                .operands()
                .iter()
                .fold(Side::Fixed, |acc, o| acc.join(side[o.index()])),
        };
        side.push(s);
    }
    let mut split = Splitter {
        g,
        side: &side,
        factors: ScoreFactors {
            user_values: Vec::new(),
            item_values: Vec::new(),
            steps: Vec::new(),
        },
        done: vec![None; g.nodes.len()],
    };
    split.step(score)?;
    Ok(split.factors)
}

/// Builds the steps of a score, each node once.
struct Splitter<'g> {
    g: &'g Graph,
    side: &'g [Side],
    factors: ScoreFactors,
    /// The step that computes each node already visited.
    done: Vec<Option<usize>>,
}

impl Splitter<'_> {
    /// The step computing scalar `node`.
    fn step(&mut self, node: NodeId) -> Result<usize, NoFactors> {
        if let Some(s) = self.done[node.index()] {
            return Ok(s);
        }
        let refuse = |reason: &str| NoFactors {
            node: Some(node),
            reason: reason.to_string(),
        };
        if !is_plain(self.g.ty(node), true) {
            return Err(refuse("a value between user and item that is not a number"));
        }
        let step = match self.side[node.index()] {
            Side::Fixed | Side::User => Step::User(value(&mut self.factors.user_values, node)),
            Side::Item => Step::Item(value(&mut self.factors.item_values, node)),
            Side::Mixed => match self.g.node(node).op {
                Op::Unary(f, a) => Step::Unary(f, self.step(a)?),
                Op::Binary(f, a, b) => {
                    let a = self.step(a)?;
                    Step::Binary(f, a, self.step(b)?)
                }
                Op::Dot(a, b) => self.dot(node, a, b)?,
                // `sum_lanes(u * v)`: the evaluator multiplies lane by lane,
                // then sums from lane 0, exactly as `dot` does.
                Op::SumLanes(x) => match self.g.node(x).op {
                    Op::Binary(BinaryFn::Mul, a, b) if self.g.ty(a) == self.g.ty(b) => {
                        self.dot(node, a, b)?
                    }
                    _ => return Err(refuse("a sum over lanes of user and item values")),
                },
                op => {
                    return Err(refuse(&format!(
                        "`{}` of user and item values",
                        op_name(op)
                    )))
                }
            },
        };
        self.factors.steps.push(step);
        let s = self.factors.steps.len() - 1;
        self.done[node.index()] = Some(s);
        Ok(s)
    }

    /// A dot product of a user vector and an item vector.
    fn dot(&mut self, node: NodeId, a: NodeId, b: NodeId) -> Result<Step, NoFactors> {
        let refuse = |reason: &str| NoFactors {
            node: Some(node),
            reason: reason.to_string(),
        };
        let user_side = |s: Side| matches!(s, Side::Fixed | Side::User);
        let (sa, sb) = (self.side[a.index()], self.side[b.index()]);
        let (user, item) = if user_side(sa) && sb == Side::Item {
            (a, b)
        } else if sa == Side::Item && user_side(sb) {
            (b, a)
        } else {
            return Err(refuse("a dot product of values that mix user and item"));
        };
        if !is_plain(self.g.ty(user), false) || !is_plain(self.g.ty(item), false) {
            return Err(refuse("a dot product of values with bag members"));
        }
        Ok(Step::Dot {
            user: value(&mut self.factors.user_values, user),
            item: value(&mut self.factors.item_values, item),
        })
    }
}

/// A number (or, unless `scalar`, a vector) with no bag member dimension.
fn is_plain(ty: Ty, scalar: bool) -> bool {
    match ty {
        Ty::Value { shape, bag: None } => match shape {
            Shape::Scalar => true,
            Shape::Vec(_) => !scalar,
            Shape::Mat(..) => false,
        },
        _ => false,
    }
}

/// The position of `node` in `values`, added when new.
fn value(values: &mut Vec<NodeId>, node: NodeId) -> usize {
    match values.iter().position(|&v| v == node) {
        Some(k) => k,
        None => {
            values.push(node);
            values.len() - 1
        }
    }
}

/// The op's name as `recc ir` prints it, for a refusal.
fn op_name(op: Op) -> &'static str {
    match op {
        Op::Const(_) => "const",
        Op::Slot(_) => "slot",
        Op::Shift(..) => "shift",
        Op::InRange(_) => "in_range",
        Op::Global(_) => "global",
        Op::Gather(..) => "gather",
        Op::GatherBag(..) => "gather_bag",
        Op::BagWeights(_) => "bag_weights",
        Op::BagLen(_) => "bag_len",
        Op::Unary(..) => "unary",
        Op::Binary(..) => "binary",
        Op::Dot(..) => "dot",
        Op::SumLanes(_) => "sum_lanes",
        Op::SumBag(_) => "sum_bag",
        Op::Expand(..) => "expand",
        Op::Softmax(_) => "softmax",
        Op::Concat(..) => "concat",
        Op::Slice(..) => "slice",
        Op::Pad(..) => "pad",
        Op::MatVec(..) => "matvec",
        Op::MatTVec(..) => "mattvec",
        Op::Outer(..) => "outer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::SlotKind;
    use crate::{compile, forward_graph};

    /// The forward graph of a model over `u`, `i`, `r` whose score is `score`.
    fn graph(params: &str, score: &str) -> Graph {
        let text = format!(
            "model t\nuse stdlib.losses\nuse stdlib.links\ninput u: user\ninput i: item\n\
             input r: real\n{params}\nlet R(u, i) = {score}\nloss mse(R(u, i), r)\n"
        );
        let compiled = compile("t.rec", &text);
        let Some(model) = compiled.model.as_ref() else {
            panic!("{score}\n{}", compiled.render_diagnostics())
        };
        forward_graph(model).unwrap_or_else(|e| panic!("{score}: {e}"))
    }

    /// The user's index slot on the user's side, the item's on the item's,
    /// every other slot on the user's (as a pair binds them).
    fn sides(g: &Graph) -> Vec<SlotSide> {
        g.slots
            .iter()
            .map(|s| match s.kind {
                SlotKind::Index(d) if g.domains[d.index()].name == "item" => SlotSide::Item,
                _ => SlotSide::User,
            })
            .collect()
    }

    const PARAMS: &str = "param b: real\nparam w[user]: real\nparam m[item]: real\n\
                          param p[user]: vec(4)\nparam q[item]: vec(4)\nparam h[user]: mat(4, 4)";

    #[test]
    fn a_biased_dot_product_splits_into_a_dot_and_scalar_steps() {
        let g = graph(PARAMS, "b + w[u] + m[i] + dot(p[u], q[i])");
        let f = factor_score(&g, &sides(&g)).unwrap();
        assert_eq!(f.dot_lanes(&g), [4]);
        assert_eq!(f.item_values.len(), 2);
        let last = f.steps.last().copied();
        assert!(
            matches!(last, Some(Step::Binary(BinaryFn::Add, ..))),
            "{f:?}"
        );
    }

    #[test]
    fn a_link_after_the_dot_product_is_a_scalar_step() {
        let g = graph(PARAMS, "sigmoid(dot(p[u], q[i]))");
        let f = factor_score(&g, &sides(&g)).unwrap();
        assert!(matches!(
            f.steps.last(),
            Some(Step::Unary(UnaryFn::Sigmoid, _))
        ));
    }

    #[test]
    fn a_user_transform_of_the_user_vector_stays_on_the_users_side() {
        let g = graph(PARAMS, "dot(h[u] @ p[u], q[i])");
        let f = factor_score(&g, &sides(&g)).unwrap();
        assert_eq!(f.dot_lanes(&g), [4]);
        assert_eq!(f.user_values.len(), 1);
    }

    #[test]
    fn mixing_user_and_item_inside_a_vector_does_not_split() {
        let g = graph(PARAMS, "dot(p[u] + q[i], q[i])");
        let e = factor_score(&g, &sides(&g)).unwrap_err();
        assert!(e.reason.contains("mix user and item"), "{e:?}");
        let g = graph(PARAMS, "dot(p[u], q[i])");
        let pair: Vec<SlotSide> = g.slots.iter().map(|_| SlotSide::Pair).collect();
        assert!(factor_score(&g, &pair).is_err());
    }
}
