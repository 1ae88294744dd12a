//! Stage 3: [`Model`] → [`Graph`], the forward computation of one example.
//!
//! Inputs and negative draws become example slots, params become tables,
//! variational params become a mean table and a log-variance table read
//! through a reparameterised sample, and the terms are summed into one loss.

use crate::ir::{self, Builder, Graph, IrError, NodeId, Op, SlotId, SlotKind, TableId, TableRole};
use crate::model::{Constraint, Init, InputId, InputKind, Model, ParamId, TExpr, TExprKind, Ty};
use crate::types::{BinaryFn, Shape, UnaryFn};
use std::collections::HashMap;

/// The log-variance a variational row starts from: σ = e^(-5/2) ≈ 0.08, small
/// enough that early samples stay near the mean.
pub const INITIAL_LOG_VARIANCE: f64 = -5.0;

/// Lower a checked model to its forward graph.
pub fn lower(model: &Model) -> Result<Graph, IrError> {
    let mut template = Graph {
        name: model.name.clone(),
        domains: model
            .domains
            .iter()
            .map(|d| ir::Domain {
                name: d.name.clone(),
            })
            .collect(),
        slots: Vec::new(),
        tables: Vec::new(),
        nodes: Vec::new(),
        spans: Vec::new(),
        loss: NodeId(0),
        score: None,
        noise_scale: None,
        grads: Vec::new(),
    };
    let dom = |d: crate::model::DomainId| ir::DomainId(d.0);
    let mut input_slots = Vec::new();
    for input in &model.inputs {
        let kind = match input.kind {
            InputKind::Real => SlotKind::Real,
            InputKind::Index(d) => SlotKind::Index(dom(d)),
            InputKind::Bag(d) => SlotKind::Bag {
                domain: dom(d),
                history: false,
            },
            InputKind::History(d) => SlotKind::Bag {
                domain: dom(d),
                history: true,
            },
        };
        input_slots.push(SlotId(template.slots.len() as u32));
        template.slots.push(ir::Slot {
            name: input.name.clone(),
            kind,
        });
    }
    let mut negative_slots = Vec::new();
    for s in &model.samplers {
        let first = template.slots.len() as u32;
        for draw in 0..s.count {
            template.slots.push(ir::Slot {
                name: s.name.clone(),
                kind: SlotKind::Negative {
                    domain: dom(s.domain),
                    draw: draw as u32,
                    popularity: s.popularity,
                },
            });
        }
        negative_slots.push(first);
    }
    let mut tables = Vec::new();
    for p in &model.params {
        let domain = p.domain.map(dom);
        let mean = TableId(template.tables.len() as u32);
        if let Some(v) = p.variational {
            template.tables.push(ir::Table {
                name: format!("{}.mean", p.name),
                domain,
                shape: p.shape,
                init: p.init,
                constraint: Constraint::None,
                role: TableRole::Mean,
            });
            template.tables.push(ir::Table {
                name: format!("{}.logvar", p.name),
                domain,
                shape: p.shape,
                init: Init::Constant(
                    v.initial_sd
                        .map_or(INITIAL_LOG_VARIANCE, |sd| 2.0 * sd.ln()),
                ),
                constraint: Constraint::None,
                role: TableRole::LogVar,
            });
            tables.push((mean, Some(TableId(mean.0 + 1))));
        } else {
            template.tables.push(ir::Table {
                name: p.name.clone(),
                domain,
                shape: p.shape,
                init: p.init,
                constraint: p.constraint,
                role: TableRole::Plain,
            });
            tables.push((mean, None));
        }
    }
    let mut l = Lowering {
        b: Builder::new(&template),
        model,
        input_slots,
        negative_slots,
        tables,
        noise: HashMap::new(),
        inverse_counts: HashMap::new(),
    };
    let mut loss = None;
    for term in &model.terms {
        let t = l.expr(&term.expr)?;
        loss = Some(match loss {
            None => t,
            Some(acc) => {
                l.b.add(Op::Binary(BinaryFn::Add, acc, t), Some(term.span))?
            }
        });
    }
    let loss = match loss {
        Some(l) => l,
        None => l.b.constant(0.0)?,
    };
    let score = match &model.score {
        Some(s) => Some(l.expr(s)?),
        None => None,
    };
    let noise_scale = match &model.noise_scale {
        Some(s) => Some(l.expr(s)?),
        None => None,
    };
    let mut g = l.b.finish();
    g.loss = loss;
    g.score = score;
    g.noise_scale = noise_scale;
    Ok(g)
}

/// The graph of a model's sum over unobserved pairs
/// ([`crate::model::UnobservedTerm`]): its loss is the term over one pair,
/// whose two members are the slots of the term's inputs `over` and `by`
/// (inputs are the graph's first slots, in declaration order). `None` when
/// the model has no such term.
pub fn lower_unobserved(model: &Model) -> Result<Option<(Graph, SlotId, SlotId)>, IrError> {
    let Some(u) = model.unobserved.first() else {
        return Ok(None);
    };
    let alone = Model {
        terms: vec![crate::model::Term {
            kind: crate::model::TermKind::Loss,
            expr: u.expr.clone(),
            span: u.span,
        }],
        unobserved: Vec::new(),
        noise_scale: None,
        ..model.clone()
    };
    let g = lower(&alone)?;
    Ok(Some((g, SlotId(u.over.0), SlotId(u.by.0))))
}

struct Lowering<'m> {
    b: Builder,
    model: &'m Model,
    input_slots: Vec<SlotId>,
    /// The first slot of each sampler's draws.
    negative_slots: Vec<u32>,
    /// Per param: its table, and its log-variance table if variational.
    tables: Vec<(TableId, Option<TableId>)>,
    /// One noise slot per variational row an example reads.
    noise: HashMap<(ParamId, Option<NodeId>), SlotId>,
    /// One slot per input whose rows a `once` prior counts (`None`: all rows).
    inverse_counts: HashMap<Option<InputId>, SlotId>,
}

impl Lowering<'_> {
    fn expr(&mut self, e: &TExpr) -> Result<NodeId, IrError> {
        let span = Some(e.span);
        let op = match &e.kind {
            TExprKind::Const(v) => Op::constant(*v),
            TExprKind::Input(i) => Op::Slot(self.input_slots[i.index()]),
            TExprKind::Negative { sampler, draw } => {
                Op::Slot(SlotId(self.negative_slots[sampler.index()] + draw))
            }
            TExprKind::Shift { index, by } => Op::Shift(self.expr(index)?, *by),
            TExprKind::InRange(x) => Op::InRange(self.expr(x)?),
            TExprKind::InverseCount(input) => Op::Slot(self.inverse_count_slot(*input)),
            TExprKind::Global(p) => return self.param_value(*p, None, e),
            TExprKind::Row { param, index } => {
                let ix = self.expr(index)?;
                if matches!(index.ty, Ty::Bag(..)) {
                    let (t, logvar) = self.tables[param.index()];
                    if logvar.is_some() {
                        return Err(IrError("variational rows looked up by a bag".into()));
                    }
                    Op::GatherBag(t, ix)
                } else {
                    return self.param_value(*param, Some(ix), e);
                }
            }
            TExprKind::Unary(f, x) => Op::Unary(*f, self.expr(x)?),
            TExprKind::Binary(f, a, b) => {
                let a = self.expr(a)?;
                Op::Binary(*f, a, self.expr(b)?)
            }
            TExprKind::Dot(a, b) => {
                let a = self.expr(a)?;
                Op::Dot(a, self.expr(b)?)
            }
            TExprKind::Sq(x) => {
                let shape = self.shape(x);
                let x = self.expr(x)?;
                match shape {
                    Shape::Scalar => Op::Binary(BinaryFn::Mul, x, x),
                    Shape::Vec(_) => Op::Dot(x, x),
                    Shape::Mat(..) => {
                        let xx = self.b.add(Op::Binary(BinaryFn::Mul, x, x), span)?;
                        Op::SumLanes(xx)
                    }
                }
            }
            TExprKind::Sum(x) => {
                let (shape, bag) = self.value_ty(x);
                let x = self.expr(x)?;
                match (bag, shape) {
                    (true, _) => Op::SumBag(x),
                    (false, Shape::Scalar) => return Ok(x),
                    (false, _) => Op::SumLanes(x),
                }
            }
            TExprKind::Mean(x) => {
                let (shape, bag) = self.value_ty(x);
                let x = self.expr(x)?;
                let (total, count) = match (bag, shape) {
                    (true, _) => (
                        self.b.add(Op::SumBag(x), span)?,
                        self.b.add(Op::BagLen(x), span)?,
                    ),
                    (false, Shape::Scalar) => return Ok(x),
                    (false, s) => (
                        self.b.add(Op::SumLanes(x), span)?,
                        self.b.constant(s.len() as f64)?,
                    ),
                };
                Op::Binary(BinaryFn::Div, total, count)
            }
            TExprKind::Softmax(x) => Op::Softmax(self.expr(x)?),
            TExprKind::Concat(a, b) => {
                let a = self.expr(a)?;
                Op::Concat(a, self.expr(b)?)
            }
            TExprKind::MatVec(m, v) => {
                let m = self.expr(m)?;
                Op::MatVec(m, self.expr(v)?)
            }
            TExprKind::Kl {
                param,
                index,
                mean,
                std,
            } => return self.kl(*param, index.as_deref(), mean, std, e),
        };
        self.b.add(op, span)
    }

    fn inverse_count_slot(&mut self, input: Option<InputId>) -> SlotId {
        if let Some(&slot) = self.inverse_counts.get(&input) {
            return slot;
        }
        let slot = SlotId(self.b.graph.slots.len() as u32);
        let (name, of) = match input {
            Some(i) => (
                format!("once.{}", self.model.input(i).name),
                Some(self.input_slots[i.index()]),
            ),
            None => ("once".to_string(), None),
        };
        self.b.graph.slots.push(ir::Slot {
            name,
            kind: SlotKind::InverseCount(of),
        });
        self.inverse_counts.insert(input, slot);
        slot
    }

    fn shape(&self, e: &TExpr) -> Shape {
        self.value_ty(e).0
    }

    fn value_ty(&self, e: &TExpr) -> (Shape, bool) {
        match e.ty {
            Ty::Value { shape, bag } => (shape, bag.is_some()),
            _ => (Shape::Scalar, false),
        }
    }

    fn read(
        &mut self,
        table: TableId,
        index: Option<NodeId>,
        e: &TExpr,
    ) -> Result<NodeId, IrError> {
        let op = match index {
            Some(ix) => Op::Gather(table, ix),
            None => Op::Global(table),
        };
        self.b.add(op, Some(e.span))
    }

    /// A param's value: the row itself, or for a variational param the
    /// reparameterised sample `mean + exp(logvar / 2) * noise`.
    fn param_value(
        &mut self,
        p: ParamId,
        index: Option<NodeId>,
        e: &TExpr,
    ) -> Result<NodeId, IrError> {
        let (t, logvar) = self.tables[p.index()];
        let mean = self.read(t, index, e)?;
        let Some(lv_table) = logvar else {
            return Ok(mean);
        };
        let lv = self.read(lv_table, index, e)?;
        let shape = self.model.param(p).shape;
        let next_slot = self.b.graph.slots.len();
        let slot = *self
            .noise
            .entry((p, index))
            .or_insert_with(|| SlotId(next_slot as u32));
        if slot.index() == next_slot {
            self.b.graph.slots.push(ir::Slot {
                name: format!("eps.{}", self.model.param(p).name),
                kind: SlotKind::Noise(shape),
            });
        }
        let span = Some(e.span);
        let noise = self.b.add(Op::Slot(slot), span)?;
        let half = self.b.constant(0.5)?;
        let half_lv = self.b.add(Op::Binary(BinaryFn::Mul, half, lv), span)?;
        let sd = self.b.add(Op::Unary(UnaryFn::Exp, half_lv), span)?;
        let scaled = self.b.add(Op::Binary(BinaryFn::Mul, sd, noise), span)?;
        self.b.add(Op::Binary(BinaryFn::Add, mean, scaled), span)
    }

    /// KL(normal(mean_row, exp(logvar_row)) ‖ normal(m0, s0²)), summed over lanes:
    /// log s0 − logvar/2 + (exp(logvar) + (mean − m0)²) / (2 s0²) − 1/2.
    fn kl(
        &mut self,
        p: ParamId,
        index: Option<&TExpr>,
        m0: &TExpr,
        s0: &TExpr,
        e: &TExpr,
    ) -> Result<NodeId, IrError> {
        let span = Some(e.span);
        let (t, logvar) = self.tables[p.index()];
        let lv_table = logvar.ok_or_else(|| IrError("KL of a non-variational param".into()))?;
        let ix = match index {
            Some(i) => Some(self.expr(i)?),
            None => None,
        };
        let mu = self.read(t, ix, e)?;
        let lv = self.read(lv_table, ix, e)?;
        let m0 = self.expr(m0)?;
        let s0 = self.expr(s0)?;
        let b = &mut self.b;
        let var = b.add(Op::Unary(UnaryFn::Exp, lv), span)?;
        let diff = b.add(Op::Binary(BinaryFn::Sub, mu, m0), span)?;
        let diff2 = b.add(Op::Binary(BinaryFn::Mul, diff, diff), span)?;
        let num = b.add(Op::Binary(BinaryFn::Add, var, diff2), span)?;
        let two = b.constant(2.0)?;
        let s2 = b.add(Op::Binary(BinaryFn::Mul, s0, s0), span)?;
        let den = b.add(Op::Binary(BinaryFn::Mul, two, s2), span)?;
        let ratio = b.add(Op::Binary(BinaryFn::Div, num, den), span)?;
        let log_s0 = b.add(Op::Unary(UnaryFn::Log, s0), span)?;
        let half = b.constant(0.5)?;
        let half_lv = b.add(Op::Binary(BinaryFn::Mul, half, lv), span)?;
        let a = b.add(Op::Binary(BinaryFn::Sub, log_s0, half_lv), span)?;
        let c = b.add(Op::Binary(BinaryFn::Add, a, ratio), span)?;
        let lanes = b.add(Op::Binary(BinaryFn::Sub, c, half), span)?;
        match b.ty(lanes).shape() {
            Some(Shape::Scalar) => Ok(lanes),
            _ => b.add(Op::SumLanes(lanes), span),
        }
    }
}
