//! The argument block a compiled kernel reads: one `u64` word per pointer,
//! size or hyper-parameter, at positions fixed when the kernel is built.
//!
//! The runtime fills a `Vec<u64>` in this layout and passes its address; the
//! kernel loads each word at a constant offset. Keeping the contract in one
//! struct means the code generator and its caller cannot disagree.

use recc_compiler::ir::{Graph, NodeId, Op, SlotKind};

/// Where each input of a kernel sits in its argument block.
///
/// The kernel trusts every word: it does no bounds checks. The runtime
/// therefore validates each block against this layout before the kernel
/// runs (`recc_runtime::native::validate`): one column per slot of the
/// slot's kind, holding at least the block's examples; every index and bag
/// member below its domain's size; bag offsets monotone and inside their
/// members and weights; every table's values and the optimiser state the
/// update reads at least `rows × lanes` (rows: the domain's size, 1 for a
/// global); the scratch at least `bag_lanes × bag_cap`. A reader, binder or
/// model-file bug then surfaces as an error, not an out-of-bounds access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgLayout {
    /// First word of each slot's columns, by slot:
    /// index and negative slots: `[*const u32]`; real: `[*const f32]`;
    /// bags: `[offsets *const u32 (n + 1), members *const u32, weights *const f32]`;
    /// noise and dense: `[*const f32]` with the slot's lanes per example;
    /// pooled: `[*const f32, gradient out *mut f32]`, both with the slot's
    /// lanes per example.
    pub slot: Vec<usize>,
    /// First word of each table: `[values *mut f32, first *mut f32,
    /// second *mut f32, steps *mut u32, touched *mut u8]`.
    pub table: Vec<usize>,
    /// The size of each domain, by domain.
    pub domain: Vec<usize>,
    /// Scratch for bag-valued nodes: `bag_lanes × bag_cap` floats.
    pub scratch: usize,
    /// The most members any bag of this call has.
    pub bag_cap: usize,
    /// Learning rate, Adam's β₁ and β₂, as `f64` bits.
    pub lr: usize,
    pub beta1: usize,
    pub beta2: usize,
    /// `*mut f64`: the kernel adds each example's loss here.
    pub loss_out: usize,
    /// `*mut f32`: `predict` writes each example's score here.
    pub score_out: usize,
    /// `*const u32`: by visit, the example it reads. Columns of examples
    /// (see [`per_visit`]) are read at `order[k]` on the `k`-th visit, so a
    /// trainer lays its examples out once and only shuffles the order.
    pub order: usize,
    /// Words in all.
    pub words: usize,
    /// Scratch lanes per bag member, summed over the bag-valued nodes.
    pub bag_lanes: usize,
    /// Each bag-valued node's offset into a member's scratch, in lanes.
    pub bag_region: Vec<Option<usize>>,
}

/// Whether a slot's column holds one entry per visit (in visit order) rather
/// than per example: what is drawn afresh for each visit (noise, negatives)
/// or computed for it (pooled and dense inputs). Its gradient output, and a
/// predict kernel's scores, are per visit too.
pub fn per_visit(kind: &SlotKind) -> bool {
    matches!(
        kind,
        SlotKind::Negative { .. }
            | SlotKind::Noise(_)
            | SlotKind::Pooled { .. }
            | SlotKind::Dense(_)
    )
}

/// Words per table entry in the argument block.
pub const TABLE_WORDS: usize = 5;

impl ArgLayout {
    pub fn new(g: &Graph) -> ArgLayout {
        let mut next = 0;
        let mut take = |n: usize| {
            let at = next;
            next += n;
            at
        };
        let slot = g
            .slots
            .iter()
            .map(|s| match s.kind {
                SlotKind::Bag { .. } => take(3),
                SlotKind::Pooled { .. } => take(2),
                _ => take(1),
            })
            .collect();
        let table = g.tables.iter().map(|_| take(TABLE_WORDS)).collect();
        let domain = g.domains.iter().map(|_| take(1)).collect();
        let scratch = take(1);
        let bag_cap = take(1);
        let lr = take(1);
        let beta1 = take(1);
        let beta2 = take(1);
        let loss_out = take(1);
        let score_out = take(1);
        let order = take(1);
        let mut bag_lanes = 0;
        let bag_region = g
            .nodes
            .iter()
            .map(|n| match (n.op, n.ty.bag(), n.ty.shape()) {
                (Op::Slot(_), _, _) => None,
                (_, Some(_), Some(shape)) => {
                    let at = bag_lanes;
                    bag_lanes += shape.len();
                    Some(at)
                }
                _ => None,
            })
            .collect();
        ArgLayout {
            slot,
            table,
            domain,
            scratch,
            bag_cap,
            lr,
            beta1,
            beta2,
            loss_out,
            score_out,
            order,
            words: next,
            bag_lanes,
            bag_region,
        }
    }

    /// The scratch region of a bag-valued node, in lanes per member.
    pub fn region(&self, id: NodeId) -> Option<usize> {
        self.bag_region.get(id.index()).copied().flatten()
    }
}
