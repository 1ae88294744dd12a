//! The abstract syntax tree of a `.rec` file, as written, with byte spans.
//!
//! Nothing here is resolved or checked: names are strings and shapes are
//! whatever the user wrote. The checker turns this into a [`crate::model::Model`].

use crate::source::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub kind: ItemKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ItemKind {
    /// `model NAME`
    Model(Ident),
    /// `use stdlib.losses`
    Use(Vec<Ident>),
    /// `input NAME: TYPE`
    Input { name: Ident, ty: InputType },
    /// `param NAME[DOMAIN]: SHAPE ATTR*`
    Param {
        name: Ident,
        domain: Option<Ident>,
        shape: ShapeDecl,
        attrs: Vec<ParamAttr>,
    },
    /// `let NAME = EXPR` or `let NAME(ARGS) = EXPR`
    Let {
        name: Ident,
        params: Option<Vec<Ident>>,
        body: Expr,
    },
    /// `fn NAME(ARGS) = EXPR`
    Fn {
        name: Ident,
        params: Vec<Ident>,
        body: Expr,
    },
    /// `loss EXPR [where ...]`
    Loss { expr: Expr, samplers: Vec<Sampler> },
    /// `TARGET ~ DIST(ARGS) [where ...]`
    Likelihood {
        target: Ident,
        dist: Dist,
        samplers: Vec<Sampler>,
    },
    /// `prior ROW ~ DIST(ARGS)`
    Prior { target: Expr, dist: Dist },
    /// `penalty EXPR`
    Penalty(Expr),
    /// `fit { KEY: VALUE, ... }`
    Fit(Vec<FitEntry>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum InputType {
    Real(Span),
    Domain(Ident),
    Bag(Ident, Span),
    History(Ident, Span),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ShapeDecl {
    Real(Span),
    Vec(Dim, Span),
    Mat(Dim, Dim, Span),
}

impl ShapeDecl {
    pub fn span(&self) -> Span {
        match self {
            ShapeDecl::Real(s) | ShapeDecl::Vec(_, s) | ShapeDecl::Mat(_, _, s) => *s,
        }
    }
}

/// A dimension as written; the checker validates its size.
#[derive(Clone, Debug, PartialEq)]
pub struct Dim {
    pub text: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ParamAttr {
    Init(Dist),
    Variational(Span),
    OnBall(Span),
    Nonneg(Span),
}

/// A distribution or sampler call: `normal(0, 0.1)`, `zeros`, `negative(item, 5)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dist {
    pub name: Ident,
    pub args: Vec<Expr>,
    pub span: Span,
}

/// `j ~ negative(item, 5)`
#[derive(Clone, Debug, PartialEq)]
pub struct Sampler {
    pub var: Ident,
    pub dist: Dist,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FitEntry {
    pub key: Ident,
    pub value: FitValue,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FitValue {
    Number(f64, Span),
    Name(Ident),
    Call {
        name: Ident,
        args: Vec<FitEntry>,
        span: Span,
    },
}

impl FitValue {
    pub fn span(&self) -> Span {
        match self {
            FitValue::Number(_, s) => *s,
            FitValue::Name(i) => i.span,
            FitValue::Call { span, .. } => *span,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Number(f64),
    Name(Ident),
    /// `p[u]`, `n[t - 1]`
    Index {
        table: Ident,
        index: Box<Expr>,
    },
    /// `dot(a, b)`, `R(u, j)`
    Call {
        func: Ident,
        args: Vec<Expr>,
    },
    /// `max(R(u, j) for j ~ negative(item, 5))`
    Comprehension {
        func: Ident,
        body: Box<Expr>,
        sampler: Sampler,
    },
    Neg(Box<Expr>),
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    MatMul,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::MatMul => "@",
        }
    }
}
