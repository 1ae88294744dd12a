//! The recc compiler.
//!
//! Stages, in the order data flows through them:
//!
//! | stage | input → output | module |
//! |---|---|---|
//! | parse | `&str` → [`ast::File`] | [`parse`] |
//! | check | [`ast::File`] → [`model::Model`] | [`check`] |
//! | lower | [`model::Model`] → [`ir::Graph`] (forward) | [`lower`] |
//! | grad | [`ir::Graph`] → [`ir::Graph`] (with gradients) | [`grad`] |
//! | simplify | [`ir::Graph`] → [`ir::Graph`] | [`simplify`] |
//! | affine blocks | [`ir::Graph`] → which tables ALS and Gibbs can solve | [`affine`] |
//! | evaluate | [`ir::Graph`] + params + example → loss, gradients | [`interp`] |
//!
//! [`compile`] runs the front end (parse and check, with the stdlib) and
//! [`Compiled::forward`] / [`Compiled::backward`] the rest.

/// Declares `u32` id newtypes with `index()`; `Name => "p"` also displays
/// them as `p0`, `p1`, ... (the IR's `%3`, `t1`).
macro_rules! id_type {
    ($($name:ident),* $(,)?) => {$(
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);
        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    )*};
    ($($name:ident => $prefix:literal),* $(,)?) => {$(
        id_type!($name);
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    )*};
}

pub mod affine;
pub mod ast;
pub mod check;
pub mod diagnostic;
pub mod factor;
pub mod grad;
pub mod hoist;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod model;
pub mod parse;
pub mod probe;
pub mod simplify;
pub mod solve;
pub mod source;
pub mod stdlib;
pub mod types;

use diagnostic::Diagnostic;
use source::{FileId, SourceMap};

/// The result of the front end on one file.
pub struct Compiled {
    pub sources: SourceMap,
    pub root: FileId,
    /// The checked model; `None` when there were errors.
    pub model: Option<model::Model>,
    /// Errors and warnings, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// All diagnostics rendered as text (no colour, fixed width).
    pub fn render_diagnostics(&self) -> String {
        diagnostic::render(&self.sources, &self.diagnostics)
    }

    /// Why the checked model cannot be fitted with `solver`, when it asks for
    /// another one than its `fit` block does (a command-line override): the
    /// same error the `fit` block would give. `None` for SGD, for a model
    /// that qualifies, and when there is no checked model.
    pub fn solver_refusal(&self, solver: model::Solver) -> Option<Diagnostic> {
        let model = self.model.as_ref()?;
        on_big_stack(|| solver_refusal(model, solver, self.root))
    }
}

/// The refusal of a closed-form solver for `model` (see [`affine`]); `None`
/// for SGD, or when the model does not lower (training reports that).
fn solver_refusal(model: &model::Model, solver: model::Solver, root: FileId) -> Option<Diagnostic> {
    if let Some(u) = model.unobserved.first() {
        if !matches!(solver, model::Solver::Als { .. }) {
            let span = if u.span.file == root {
                u.span
            } else {
                source::Span::new(root, 0, 0)
            };
            return Some(
                Diagnostic::error(
                    "recc::unobserved-solver",
                    format!(
                        "`solver: {}` cannot fit a sum over every unobserved pair",
                        solver.name()
                    ),
                    span,
                )
                .label("every pair without an example")
                .with_help(
                    "fit it with `solver: als`, which adds these pairs up without visiting them; \
                     for SGD, sample a few per example instead: `where j ~ negative(item, 5)`",
                ),
            );
        }
    }
    if solver == model::Solver::Sgd {
        return None;
    }
    let graph = simplify::simplify(&lower::lower(model).ok()?).ok()?;
    let report = affine::analyse(&graph);
    if let Some(d) = affine::solver_error(&graph, &report, solver.name(), root) {
        return Some(d);
    }
    let pairs = match lower::lower_unobserved(model).ok()? {
        Some((g, over, by)) => {
            let g = simplify::simplify(&g).ok()?;
            let pair_report = affine::analyse(&g);
            if let Some(d) = affine::solver_error(&g, &pair_report, solver.name(), root) {
                return Some(d);
            }
            Some((g, over, by))
        }
        None => None,
    };
    // Every parameter is a block; the solvers also need each loss term to
    // be a scaled square they can split (not, e.g., a random-walk prior).
    let e = match &pairs {
        Some((g, over, by)) => solve::plan_with_pairs(&graph, &report, g, *over, *by).err()?,
        None => solve::plan_with(&graph, &report).err()?,
    };
    let span = e
        .span
        .filter(|s| s.file == root)
        .unwrap_or(source::Span::new(root, 0, 0));
    Some(
        Diagnostic::error(
            "recc::solver-term",
            format!(
                "`solver: {}` cannot split this loss: {}",
                solver.name(),
                e.message
            ),
            span,
        )
        .label("this term")
        .with_help(
            "ALS and Gibbs take squared errors, L2 penalties and zero-mean normal priors on a \
             table's own rows; train this model with `sgd` or `adam`",
        ),
    )
}

/// Where the `fit` block names its solver: `solver: als`.
fn solver_entry(file: &ast::File) -> Option<source::Span> {
    file.items.iter().rev().find_map(|item| match &item.kind {
        ast::ItemKind::Fit(entries) => entries
            .iter()
            .find(|e| e.key.name == "solver")
            .map(|e| e.span),
        _ => None,
    })
}

/// Stack for the front end and lowering. Expressions are walked
/// recursively; parse limits bound their depth, and this bounds the stack
/// those depths can need, whichever thread the caller is on.
const STACK_SIZE: usize = 256 << 20;

/// Run `f` on a thread with [`STACK_SIZE`] of stack (only the pages used are
/// ever committed).
fn on_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("recc-compiler".into())
            .stack_size(STACK_SIZE)
            .spawn_scoped(scope, f);
        match handle {
            Ok(h) => match h.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            // Only an operating system out of threads or memory refuses.
            Err(e) => panic!("could not start the compiler thread: {e}"),
        }
    })
}

/// The UTF-8 byte order mark some editors write at the start of a file.
pub const BYTE_ORDER_MARK: char = '\u{feff}';

/// Parse and check one model file. `name` is how the file is shown in
/// diagnostics and IR comments.
pub fn compile(name: &str, text: &str) -> Compiled {
    on_big_stack(|| compile_here(name, text))
}

fn compile_here(name: &str, text: &str) -> Compiled {
    // A byte order mark is no part of the model: dropped before any span is
    // taken, so spans and rendered columns count from the first real character.
    let text = text.strip_prefix(BYTE_ORDER_MARK).unwrap_or(text);
    let mut sources = SourceMap::new();
    let root = sources.add(name, text);
    let (modules, mut diagnostics) = stdlib::load(&mut sources);
    let file = match parse::parse(root, text) {
        Ok(file) => file,
        Err(mut errors) => {
            diagnostics.append(&mut errors);
            diagnostic::sort(&mut diagnostics);
            return Compiled {
                sources,
                root,
                model: None,
                diagnostics,
            };
        }
    };
    let stem = name
        .rsplit('/')
        .next()
        .unwrap_or(name)
        .trim_end_matches(".rec")
        .to_string();
    let (mut model, mut more) = check::check(root, &file, &modules, &stem);
    diagnostics.append(&mut more);
    // A closed-form solver is refused here, at check time, so that `recc
    // check` says so before any data is read.
    let refusal = model
        .as_ref()
        .and_then(|m| solver_refusal(m, m.fit.solver, root));
    if let Some(mut refusal) = refusal {
        if let Some(span) = solver_entry(&file) {
            refusal = refusal.with_secondary(span, "the solver is chosen here");
        }
        diagnostics.push(refusal);
        diagnostic::sort(&mut diagnostics);
        model = None;
    }
    Compiled {
        sources,
        root,
        model,
        diagnostics,
    }
}

/// The closed-form solvers' plan for a checked model whose simplified
/// forward graph is `forward` (see [`solve`]), with its sum over unobserved
/// pairs if it has one.
pub fn solve_plan(
    model: &model::Model,
    forward: &ir::Graph,
) -> Result<solve::SolvePlan, solve::SolveError> {
    on_big_stack(|| {
        let report = affine::analyse(forward);
        match lower::lower_unobserved(model)? {
            Some((g, over, by)) => {
                let g = simplify::simplify(&g)?;
                solve::plan_with_pairs(forward, &report, &g, over, by)
            }
            None => solve::plan_with(forward, &report),
        }
    })
}

/// The simplified forward graph of a checked model.
pub fn forward_graph(model: &model::Model) -> Result<ir::Graph, ir::IrError> {
    on_big_stack(|| simplify::simplify(&lower::lower(model)?))
}

/// The grouped schedule's plan for a model's simplified forward graph
/// (see [`hoist`]), or why it keeps the per-example schedule.
pub fn hoist_plan(forward: &ir::Graph) -> Result<hoist::HoistPlan, hoist::NotHoisted> {
    on_big_stack(|| hoist::hoist(forward))
}

/// The simplified graph with the loss's gradients.
pub fn gradient_graph(model: &model::Model) -> Result<ir::Graph, ir::IrError> {
    let forward = forward_graph(model)?;
    simplify::simplify(&grad::grad(&forward)?)
}
