//! Stage 2's output: a resolved, shape-checked model.
//!
//! Every name is resolved to an id, every `let` and `fn` is expanded at its
//! use, likelihoods and priors are already loss terms, and every expression
//! carries its type. Lowering to IR needs nothing else.

use crate::source::Span;
use crate::types::{BinaryFn, Shape, UnaryFn};
use std::fmt;

id_type!(DomainId, InputId, ParamId, SamplerId);

#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: String,
    pub domains: Vec<Domain>,
    pub inputs: Vec<Input>,
    pub params: Vec<Param>,
    pub samplers: Vec<Sampler>,
    pub terms: Vec<Term>,
    /// Terms summed over every pair without an example
    /// (`loss EXPR where j ~ unobserved(item)`); see [`UnobservedTerm`].
    pub unobserved: Vec<UnobservedTerm>,
    /// The prediction: the `let` named `R` applied to the inputs it names.
    pub score: Option<TExpr>,
    /// The scale `S` of the model's one likelihood `x ~ normal(MU, S)` on a
    /// `real` input: the observation noise around the prediction, which
    /// predictive intervals need. A scalar that reads neither that input nor
    /// a negative, so it can be evaluated without the target.
    pub noise_scale: Option<TExpr>,
    pub fit: FitConfig,
}

impl Model {
    pub fn domain(&self, id: DomainId) -> &Domain {
        &self.domains[id.index()]
    }
    pub fn input(&self, id: InputId) -> &Input {
        &self.inputs[id.index()]
    }
    pub fn param(&self, id: ParamId) -> &Param {
        &self.params[id.index()]
    }
    pub fn sampler(&self, id: SamplerId) -> &Sampler {
        &self.samplers[id.index()]
    }
}

/// A categorical space: `user`, `item`, `week`. Its size comes from the data.
#[derive(Clone, Debug, PartialEq)]
pub struct Domain {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub name: String,
    pub kind: InputKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Real,
    Index(DomainId),
    Bag(DomainId),
    History(DomainId),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    /// `None` for a global parameter, else the domain its rows range over.
    pub domain: Option<DomainId>,
    pub shape: Shape,
    pub init: Init,
    /// `Some` for a `variational` param: each row is a Gaussian.
    pub variational: Option<Variational>,
    pub constraint: Constraint,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Constant(f64),
    Normal { mean: f64, std: f64 },
    Uniform { low: f64, high: f64 },
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Zeros => write!(f, "zeros"),
            Init::Constant(c) => write!(f, "constant({c})"),
            Init::Normal { mean, std } => write!(f, "normal({mean}, {std})"),
            Init::Uniform { low, high } => write!(f, "uniform({low}, {high})"),
        }
    }
}

/// How a variational param's rows start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Variational {
    /// The standard deviation every row's Gaussian starts with
    /// (`variational(sd: S)`); `None` for the compiler's default
    /// ([`crate::lower::INITIAL_LOG_VARIANCE`]).
    pub initial_sd: Option<f64>,
}

/// A constraint the optimiser keeps after every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constraint {
    None,
    /// Inside the open unit ball (Poincaré embeddings).
    Ball,
    /// Every component at least zero.
    Nonneg,
}

/// A negative sampler introduced by `where j ~ negative(item, 5)` or a
/// comprehension: `count` indices of `domain` the example does not contain.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampler {
    pub name: String,
    pub domain: DomainId,
    pub count: usize,
    pub popularity: bool,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermKind {
    Loss,
    Likelihood,
    Prior,
    Penalty,
}

impl TermKind {
    pub fn name(self) -> &'static str {
        match self {
            TermKind::Loss => "loss",
            TermKind::Likelihood => "likelihood",
            TermKind::Prior => "prior",
            TermKind::Penalty => "penalty",
        }
    }
}

/// One summand of the per-example objective.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub kind: TermKind,
    pub expr: TExpr,
    pub span: Span,
}

/// `loss EXPR where j ~ unobserved(item)`: `EXPR` summed over every pair of
/// a member of `by`'s domain and a member of `over`'s domain that no
/// training example pairs, as implicit-feedback models weigh the pairs
/// nobody interacted with (Hu, Koren and Volinsky 2008).
///
/// It is kept as the sum over every pair less the observed ones: `expr`
/// reads `over` where the term names `j`, and [`Model::terms`] holds
/// `-expr` as an ordinary per-example loss, so that
/// `Σ_unobserved f = Σ_all f - Σ_observed f`. Only a solver that adds up
/// the sum over every pair without visiting it (ALS) can fit such a model.
#[derive(Clone, Debug, PartialEq)]
pub struct UnobservedTerm {
    pub expr: TExpr,
    /// The input holding the summed domain's member in an example (`i`).
    pub over: InputId,
    /// The other member of each pair (`u`).
    pub by: InputId,
    /// The `j ~ unobserved(item)` draw.
    pub span: Span,
}

/// The type of a checked expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// Numbers of one shape; `bag` is the bag or history input whose members
    /// this value has one element per (`v[f]`), if any.
    Value { shape: Shape, bag: Option<InputId> },
    /// One member of a domain: an index input, a negative draw, a shifted index.
    Index(DomainId),
    /// A bag or history input: several members of a domain.
    Bag(InputId, DomainId),
}

impl Ty {
    /// The shape as the language writes it, for labels; "index"/"bag" otherwise.
    pub fn shape_text(self) -> String {
        match self {
            Ty::Value { shape, .. } => shape.to_string(),
            Ty::Index(_) => "an index".to_string(),
            Ty::Bag(..) => "a bag".to_string(),
        }
    }

    pub fn scalar() -> Ty {
        Ty::Value {
            shape: Shape::Scalar,
            bag: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TExpr {
    pub kind: TExprKind,
    pub ty: Ty,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TExprKind {
    Const(f64),
    Input(InputId),
    /// Draw `draw` of a negative sampler.
    Negative {
        sampler: SamplerId,
        draw: u32,
    },
    /// `t - 1`: a neighbouring member of an ordinal domain.
    Shift {
        index: Box<TExpr>,
        by: i64,
    },
    /// 1 if the index exists (a shifted index may fall off the domain), else 0.
    InRange(Box<TExpr>),
    /// The weight of a prior written `once`: 1 / the number of training
    /// examples whose index input holds this example's value, or with no
    /// input 1 / the number of training examples. Summed over an epoch, the
    /// prior then counts once per row.
    InverseCount(Option<InputId>),
    Global(ParamId),
    /// `p[u]` (an index) or `v[f]` (a bag: one weighted row per member).
    Row {
        param: ParamId,
        index: Box<TExpr>,
    },
    Unary(UnaryFn, Box<TExpr>),
    Binary(BinaryFn, Box<TExpr>, Box<TExpr>),
    Dot(Box<TExpr>, Box<TExpr>),
    /// Square of a scalar, squared norm of a vector or matrix.
    Sq(Box<TExpr>),
    /// Over a bag: add the members. Otherwise: add the lanes.
    Sum(Box<TExpr>),
    /// Like `Sum`, divided by the count (an empty bag's mean is zero).
    Mean(Box<TExpr>),
    Softmax(Box<TExpr>),
    Concat(Box<TExpr>, Box<TExpr>),
    MatVec(Box<TExpr>, Box<TExpr>),
    /// KL(q(row) ‖ normal(mean, std)) for a variational row, in closed form.
    Kl {
        param: ParamId,
        index: Option<Box<TExpr>>,
        mean: Box<TExpr>,
        std: Box<TExpr>,
    },
}

/// Expanded definitions nest expressions thousands deep; the derived,
/// recursive drop would need a frame per level on whatever thread drops the
/// model. This one keeps the pending sub-expressions in a list instead.
impl Drop for TExpr {
    fn drop(&mut self) {
        let mut pending: Vec<TExpr> = Vec::new();
        detach_children(&mut self.kind, &mut pending);
        while let Some(mut e) = pending.pop() {
            // `e` drops at the end of this iteration with no children left.
            detach_children(&mut e.kind, &mut pending);
        }
    }
}

/// Move the sub-expressions of `kind` into `out`, leaving a leaf behind.
fn detach_children(kind: &mut TExprKind, out: &mut Vec<TExpr>) {
    use TExprKind::*;
    match kind {
        Const(_) | Input(_) | Negative { .. } | InverseCount(_) | Global(_) => return,
        _ => {}
    }
    match std::mem::replace(kind, Const(0.0)) {
        Const(_) | Input(_) | Negative { .. } | InverseCount(_) | Global(_) => {}
        Shift { index: x, .. }
        | InRange(x)
        | Row { index: x, .. }
        | Unary(_, x)
        | Sq(x)
        | Sum(x)
        | Mean(x)
        | Softmax(x) => out.push(*x),
        Binary(_, a, b) | Dot(a, b) | Concat(a, b) | MatVec(a, b) => {
            out.push(*a);
            out.push(*b);
        }
        Kl {
            index, mean, std, ..
        } => {
            out.extend(index.map(|i| *i));
            out.push(*mean);
            out.push(*std);
        }
    }
}

/// Training defaults from the `fit { ... }` block.
#[derive(Clone, Debug, PartialEq)]
pub struct FitConfig {
    pub optimizer: Optimizer,
    pub lr: f64,
    pub epochs: usize,
    pub batch: usize,
    pub threads: usize,
    pub seed: u64,
    /// Stop after this many epochs without improvement; 0 turns it off.
    pub early_stopping: usize,
    /// How the parameters are fitted: gradient steps, or a closed-form
    /// solver over the tables the loss is affine in.
    pub solver: Solver,
}

impl Default for FitConfig {
    fn default() -> FitConfig {
        FitConfig {
            optimizer: Optimizer::Sgd,
            lr: 0.01,
            epochs: 20,
            batch: 1,
            threads: 1,
            seed: 42,
            early_stopping: 0,
            solver: Solver::Sgd,
        }
    }
}

/// How a model is fitted. The solvers other than `Sgd` need every table the
/// score reads to be an affine block (see `affine::analyse`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Solver {
    /// Stochastic gradient steps with the `optimizer`, for `epochs`.
    Sgd,
    /// Alternating least squares: each table's rows solved in closed form
    /// given the others, `sweeps` times over every table.
    Als { sweeps: usize },
    /// Gibbs sampling with hierarchical normal priors: `burn_in` sweeps
    /// thrown away, then `samples` sweeps whose predictions are averaged.
    Gibbs { samples: usize, burn_in: usize },
}

impl Solver {
    /// The name written in `fit { solver: ... }`.
    pub fn name(&self) -> &'static str {
        match self {
            Solver::Sgd => "sgd",
            Solver::Als { .. } => "als",
            Solver::Gibbs { .. } => "gibbs",
        }
    }
}

impl fmt::Display for Solver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Solver::Sgd => write!(f, "sgd"),
            Solver::Als { sweeps } => write!(f, "als(sweeps: {sweeps})"),
            Solver::Gibbs { samples, burn_in } => {
                write!(f, "gibbs(samples: {samples}, burn_in: {burn_in})")
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Sgd,
    Adagrad,
    Adam { beta1: f64, beta2: f64 },
}

impl fmt::Display for Optimizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Optimizer::Sgd => write!(f, "sgd"),
            Optimizer::Adagrad => write!(f, "adagrad"),
            Optimizer::Adam { beta1, beta2 } => write!(f, "adam(beta1: {beta1}, beta2: {beta2})"),
        }
    }
}
