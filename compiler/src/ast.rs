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
    /// `prior ROW ~ DIST(ARGS) [once]`; `once` is the keyword's span.
    Prior {
        target: Expr,
        dist: Dist,
        once: Option<Span>,
    },
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
    /// `variational` or `variational(sd: 0.3)`: the keyword's span and the options.
    Variational(Span, Vec<FitEntry>),
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

/// The parse tree as an S-expression, one statement a line: what
/// `recc parse` prints and the parse-tree snapshots pin.
pub fn to_sexpr(file: &File) -> String {
    let mut out = String::from("(file\n");
    for item in &file.items {
        out.push_str("  ");
        out.push_str(&item_sexpr(item));
        out.push('\n');
    }
    out.push_str(")\n");
    out
}

fn item_sexpr(item: &Item) -> String {
    match &item.kind {
        ItemKind::Model(n) => format!("(model {})", n.name),
        ItemKind::Use(path) => {
            let p: Vec<&str> = path.iter().map(|i| i.name.as_str()).collect();
            format!("(use {})", p.join("."))
        }
        ItemKind::Input { name, ty } => {
            let t = match ty {
                InputType::Real(_) => "real".to_string(),
                InputType::Domain(d) => format!("(domain {})", d.name),
                InputType::Bag(d, _) => format!("(bag {})", d.name),
                InputType::History(d, _) => format!("(history {})", d.name),
            };
            format!("(input {} {t})", name.name)
        }
        ItemKind::Param {
            name,
            domain,
            shape,
            attrs,
        } => {
            let mut s = format!("(param {}", name.name);
            if let Some(d) = domain {
                s.push_str(&format!(" [{}]", d.name));
            }
            s.push_str(&match shape {
                ShapeDecl::Real(_) => " real".to_string(),
                ShapeDecl::Vec(n, _) => format!(" (vec {})", n.text),
                ShapeDecl::Mat(r, c, _) => format!(" (mat {} {})", r.text, c.text),
            });
            for a in attrs {
                s.push_str(&match a {
                    ParamAttr::Init(d) => format!(" (init {})", dist_sexpr(d)),
                    ParamAttr::Variational(_, options) if options.is_empty() => {
                        " variational".to_string()
                    }
                    ParamAttr::Variational(_, options) => {
                        let o: Vec<String> = options.iter().map(fit_sexpr).collect();
                        format!(" (variational {})", o.join(" "))
                    }
                    ParamAttr::OnBall(_) => " (on ball)".to_string(),
                    ParamAttr::Nonneg(_) => " nonneg".to_string(),
                });
            }
            s.push(')');
            s
        }
        ItemKind::Let { name, params, body } => match params {
            Some(ps) => format!("(let {} ({}) {})", name.name, names(ps), expr_sexpr(body)),
            None => format!("(let {} {})", name.name, expr_sexpr(body)),
        },
        ItemKind::Fn { name, params, body } => {
            format!(
                "(fn {} ({}) {})",
                name.name,
                names(params),
                expr_sexpr(body)
            )
        }
        ItemKind::Loss { expr, samplers } => {
            format!("(loss {}{})", expr_sexpr(expr), where_sexpr(samplers))
        }
        ItemKind::Likelihood {
            target,
            dist,
            samplers,
        } => format!(
            "(~ {} {}{})",
            target.name,
            dist_sexpr(dist),
            where_sexpr(samplers)
        ),
        ItemKind::Prior { target, dist, once } => format!(
            "(prior {} {}{})",
            expr_sexpr(target),
            dist_sexpr(dist),
            if once.is_some() { " once" } else { "" }
        ),
        ItemKind::Penalty(e) => format!("(penalty {})", expr_sexpr(e)),
        ItemKind::Fit(entries) => {
            let e: Vec<String> = entries.iter().map(fit_sexpr).collect();
            format!("(fit {})", e.join(" "))
        }
    }
}

fn names(ids: &[Ident]) -> String {
    ids.iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn dist_sexpr(d: &Dist) -> String {
    let mut s = format!("({}", d.name.name);
    for a in &d.args {
        s.push(' ');
        s.push_str(&expr_sexpr(a));
    }
    s.push(')');
    s
}

fn sampler_sexpr(s: &Sampler) -> String {
    format!("({} ~ {})", s.var.name, dist_sexpr(&s.dist))
}

fn where_sexpr(samplers: &[Sampler]) -> String {
    if samplers.is_empty() {
        return String::new();
    }
    let s: Vec<String> = samplers.iter().map(sampler_sexpr).collect();
    format!(" (where {})", s.join(" "))
}

fn fit_sexpr(e: &FitEntry) -> String {
    let v = match &e.value {
        FitValue::Number(x, _) => format!("{x}"),
        FitValue::Name(n) => n.name.clone(),
        FitValue::Call { name, args, .. } => {
            let a: Vec<String> = args.iter().map(fit_sexpr).collect();
            format!("({} {})", name.name, a.join(" "))
        }
    };
    format!("({} {v})", e.key.name)
}

/// One expression as an S-expression.
pub fn expr_sexpr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Number(v) => format!("{v}"),
        ExprKind::Name(n) => n.name.clone(),
        ExprKind::Index { table, index } => format!("{}[{}]", table.name, expr_sexpr(index)),
        ExprKind::Call { func, args } => {
            let a: Vec<String> = args.iter().map(expr_sexpr).collect();
            if a.is_empty() {
                format!("({})", func.name)
            } else {
                format!("({} {})", func.name, a.join(" "))
            }
        }
        ExprKind::Comprehension {
            func,
            body,
            sampler,
        } => format!(
            "({} {} (for {}))",
            func.name,
            expr_sexpr(body),
            sampler_sexpr(sampler)
        ),
        ExprKind::Neg(x) => format!("(neg {})", expr_sexpr(x)),
        ExprKind::Binary { op, lhs, rhs } => {
            format!("({} {} {})", op.symbol(), expr_sexpr(lhs), expr_sexpr(rhs))
        }
    }
}
