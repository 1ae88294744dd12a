//! A sum over unobserved pairs in each row's normal equations, without
//! visiting the pairs (the YᵀY trick of Hu, Koren and Volinsky 2008).
//!
//! Input: a [`PairBlock`] of the compiler's plan and the current parameters.
//! Output: a [`PairShare`], the sum over every pair's share of one row's
//! system, which is the same for every row of the block's table.
//!
//! A model `loss f(u, j) where j ~ unobserved(item)` is fitted as `f` over
//! every pair less `f` over the observed pairs; the observed part is an
//! ordinary per-example term. For a row `x` of `p[user]`, `f(u, j)` over
//! every item `j` is `Σ_j c_j (b_jᵀx + a_j)²`, where `b_j`, `a_j` and `c_j`
//! read only rows of items (the compiler checks this), so the sum's share of
//! the row's system, `Σ_j c_j b_j b_jᵀ` and `-Σ_j c_j a_j b_j`, is one pass
//! over the items per sweep, shared by every user: with 64 factors, one
//! `64 × 64` matrix instead of a term for each of the millions of pairs.

use super::linalg::RowSystem;
use crate::train::TrainError;
use rayon::prelude::*;
use recc_compiler::interp::{evaluate, Example, Params, SlotValue};
use recc_compiler::ir::{Graph, SlotKind};
use recc_compiler::solve::{PairBlock, TermKind};

/// The share of the sum over every pair in each row's system of one block,
/// at the values of every other table.
#[derive(Clone, Debug)]
pub struct PairShare {
    pub system: RowSystem,
    /// `Σ c a²`: with `system`, the sum's value at a row `x` is
    /// `xᵀAx - 2 zᵀx + constant`.
    pub constant: f64,
}

impl PairShare {
    /// The sum over every pair of the row `x` (one member of the block's
    /// domain with every member of the other).
    pub fn value(&self, x: &[f64]) -> f64 {
        let k = self.system.k;
        let a = &self.system.a;
        let mut quad = 0.0;
        for r in 0..k {
            // `a` holds the lower triangle of a symmetric matrix.
            quad += a[r * k + r] * x[r] * x[r];
            for c in 0..r {
                quad += 2.0 * a[r * k + c] * x[r] * x[c];
            }
        }
        let zx: f64 = self.system.z.iter().zip(x).map(|(z, x)| z * x).sum();
        quad - 2.0 * zx + self.constant
    }
}

/// The share of `block`'s sum over every pair, from one evaluation of each
/// term per member of the other domain. `size` is that domain's size.
/// Summed in member order, so the thread count does not change it.
pub fn pair_share(
    block: &PairBlock,
    params: &Params,
    width: usize,
    size: usize,
    pool: &rayon::ThreadPool,
) -> Result<PairShare, TrainError> {
    let table = block.table.index();
    // Any member stands for the row's own: the terms read none of its values
    // but the row's, which is taken out again below.
    let current: Vec<f64> = params.tables[table].row(0).to_vec();
    let mut share = PairShare {
        system: RowSystem::zeros(width),
        constant: 0.0,
    };
    for term in &block.terms {
        let template = blank_example(&term.graph);
        let statistics: Vec<Option<(f64, Vec<f64>, f64)>> = pool.install(|| {
            (0..size)
                .into_par_iter()
                .map(|member| {
                    let mut ex = template.clone();
                    ex.slots[block.own.index()] = SlotValue::Index(0);
                    ex.slots[block.running.index()] = SlotValue::Index(member);
                    let ev = evaluate(&term.graph, params, &ex)?;
                    let Some(b) = ev.gradients.rows.get(&(block.table, 0)) else {
                        return Ok(None);
                    };
                    let c = ev.score.unwrap_or(1.0);
                    let bx: f64 = b.iter().zip(&current).map(|(b, x)| b * x).sum();
                    Ok(Some((c, b.clone(), ev.loss - bx)))
                })
                .collect::<Result<_, TrainError>>()
        })?;
        for (c, b, a) in statistics.into_iter().flatten() {
            match term.kind {
                TermKind::Scalar => {
                    share.system.add_term(c, &b, -a);
                    share.constant += c * a * a;
                }
                TermKind::Ridge => {
                    for (lane, gl) in b.iter().enumerate() {
                        share.system.a[lane * width + lane] += c * gl * gl;
                    }
                }
            }
        }
    }
    Ok(share)
}

/// A value for every slot of `g`: the pair's two members are filled in per
/// evaluation, and nothing else is read (the compiler refuses a sum over
/// unobserved pairs that reads data).
fn blank_example(g: &Graph) -> Example {
    Example {
        slots: g
            .slots
            .iter()
            .map(|s| match s.kind {
                SlotKind::Index(_) | SlotKind::Negative { .. } => SlotValue::Index(0),
                SlotKind::Real => SlotValue::Real(0.0),
                SlotKind::Bag { .. } => SlotValue::Bag(Vec::new()),
                SlotKind::Noise(shape)
                | SlotKind::Pooled { shape, .. }
                | SlotKind::Dense(shape) => SlotValue::Noise(vec![0.0; shape.len()]),
                SlotKind::InverseCount(_) => SlotValue::Real(1.0),
            })
            .collect(),
    }
}
