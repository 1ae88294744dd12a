//! Stage 2: [`ast::File`] → [`Model`].
//!
//! Resolves names, infers and checks shapes and domains, expands `let` and
//! `fn` at their uses, and desugars likelihoods, priors and negatives into
//! loss terms. Errors are collected, never thrown: one run reports every
//! independent mistake, and a failed sub-expression yields `None` so that it
//! causes no second, derived error.

use crate::ast::{self, BinOp, Expr, ExprKind, Ident, ItemKind};
use crate::diagnostic::{self, closest, Diagnostic, Severity};
use crate::model::*;
use crate::source::{FileId, Span};
use crate::stdlib::{self, Module};
use crate::types::{BinaryFn, Shape, UnaryFn};
use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;

/// Largest vector length or matrix size a parameter may declare.
const MAX_DIM: usize = 65_536;
/// The sampler that sums a term over the pairs no example holds.
const UNOBSERVED: &str = "unobserved";

/// Largest number of negatives one sampler may draw per example.
const MAX_NEGATIVES: usize = 1_000;
/// Expansion work before we give up: every expression node built or copied
/// and every expansion of a definition, successful or not, counts one.
/// Nested definitions can otherwise grow exponentially. The largest model of
/// `models/` needs under 2,000; this leaves room for a thousand negatives
/// over a large score while refusing a runaway model in a fraction of a
/// second.
const MAX_WORK: usize = 200_000;
/// Deepest expanded expression: bounds the recursion of every stage and of
/// whoever clones, compares or prints a model (the largest model of
/// `models/` is under 30 deep).
const MAX_EXPR_DEPTH: usize = 2_000;
/// Nested calls deeper than this are refused (a cycle is reported anyway).
const MAX_DEPTH: usize = 32;

/// Built-in primitives and their arities.
pub(crate) const PRIMITIVES: &[(&str, usize)] = &[
    ("dot", 2),
    ("sum", 1),
    ("mean", 1),
    ("sq", 1),
    ("exp", 1),
    ("log", 1),
    ("sqrt", 1),
    ("abs", 1),
    ("sigmoid", 1),
    ("log_sigmoid", 1),
    ("softplus", 1),
    ("tanh", 1),
    ("relu", 1),
    ("max", 2),
    ("min", 2),
    ("clip", 3),
    ("softmax", 1),
    ("concat", 2),
];

const FIT_OPTIONS: &[&str] = &[
    "solver",
    "optimizer",
    "lr",
    "epochs",
    "batch",
    "threads",
    "seed",
    "early_stopping",
    "sweeps",
    "samples",
    "burn_in",
];

/// The names `fit { solver: ... }` takes.
const SOLVERS: &[&str] = &["sgd", "als", "gibbs"];

/// The fit options only gradient steps use.
const SGD_ONLY: &[&str] = &["optimizer", "lr", "epochs", "batch", "early_stopping"];

/// Sweeps of ALS when the fit block does not say.
pub const DEFAULT_SWEEPS: usize = 15;
/// Kept Gibbs sweeps when the fit block does not say.
pub const DEFAULT_SAMPLES: usize = 150;
/// Gibbs sweeps thrown away first when the fit block does not say.
pub const DEFAULT_BURN_IN: usize = 50;

/// The solver a fit block names, before its counts are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SolverKind {
    Sgd,
    Als,
    Gibbs,
}

impl SolverKind {
    /// As written in `solver: NAME`.
    fn name(self) -> &'static str {
        match self {
            SolverKind::Sgd => "sgd",
            SolverKind::Als => "als",
            SolverKind::Gibbs => "gibbs",
        }
    }

    fn title(self) -> &'static str {
        match self {
            SolverKind::Sgd => "SGD",
            SolverKind::Als => "ALS",
            SolverKind::Gibbs => "Gibbs",
        }
    }

    /// Why `key`, an SGD-only option, has no meaning for this solver.
    fn sgd_only_help(self, key: &str) -> String {
        let name = self.title();
        let counts = match self {
            SolverKind::Gibbs => "`samples` and `burn_in`",
            _ => "`sweeps`",
        };
        match key {
            "epochs" => format!("`epochs` counts SGD passes; {name} counts {counts}"),
            "lr" => format!(
                "{name} sets each row in closed form given the others: there is no step size"
            ),
            "optimizer" => format!(
                "{name} sets each row in closed form, not by gradient steps: there is no optimizer"
            ),
            "batch" => {
                format!("{name} reads all of a row's examples at once: there are no mini-batches")
            }
            _ => format!(
                "early stopping watches SGD epochs; {name} runs a fixed number of sweeps ({counts})"
            ),
        }
    }
}

/// Check one file against the stdlib. `default_name` names a model that has
/// no `model` statement (the file's stem).
pub fn check(
    root: FileId,
    file: &ast::File,
    stdlib: &[Module],
    default_name: &str,
) -> (Option<Model>, Vec<Diagnostic>) {
    let mut c = Checker::with_model(root, file, stdlib);
    c.unused_definitions();
    c.unused_declarations();
    let diags = c.take_diagnostics();
    if diags.iter().any(Diagnostic::is_error) {
        return (None, diags);
    }
    let noise_scale = c.noise_scale();
    (Some(c.into_model(default_name, noise_scale)), diags)
}

/// Check an expression typed at a prompt against a model: the model's file
/// first, as [`check`] does, then `expr` (from its own file) with every
/// stdlib function in scope. A literal of `literals` that stands where an
/// index goes becomes an index input of that index's domain, one per literal
/// and domain. Returns the model (inputs extended by those slots, terms as
/// checked), the expression's value and the slots made, as
/// `(input, literal)` pairs with `literal` indexing `literals`.
pub fn check_probe(
    root: FileId,
    file: &ast::File,
    stdlib: &[Module],
    default_name: &str,
    expr: &Expr,
    literals: &[Span],
) -> (Option<CheckedProbe>, Vec<Diagnostic>) {
    let mut c = Checker::with_model(root, file, stdlib);
    // A model still being written may have no objective yet: an expression
    // over what it has so far is still worth evaluating.
    c.diags
        .retain(|d| d.is_error() && d.code != "recc::no-loss");
    if !c.diags.is_empty() {
        return (None, c.take_diagnostics());
    }
    c.used_modules.extend(stdlib.iter().map(|m| m.name.clone()));
    c.probe = Some(Probe {
        file: expr.span.file,
        literals: literals
            .iter()
            .enumerate()
            .map(|(k, span)| (*span, k))
            .collect(),
        slots: HashMap::new(),
    });
    let value = c.expr(&Env::default(), expr);
    if let Some(v) = &value {
        let _ = c.check_depth(v, expr.span);
    }
    let diags = c.take_diagnostics();
    let value = match value {
        Some(v) if !diags.iter().any(Diagnostic::is_error) => v,
        _ => return (None, diags),
    };
    let mut slots: Vec<(InputId, usize)> = c
        .probe
        .take()
        .map(|p| p.slots.into_iter().map(|((k, _), i)| (i, k)).collect())
        .unwrap_or_default();
    slots.sort();
    let model = c.into_model(default_name, None);
    (
        Some(CheckedProbe {
            model,
            value,
            slots,
        }),
        diags,
    )
}

/// What [`check_probe`] gives for an expression that checks.
pub struct CheckedProbe {
    pub model: Model,
    pub value: TExpr,
    /// `(input, literal)`: the index input made for a literal.
    pub slots: Vec<(InputId, usize)>,
}

/// State of checking a prompt expression (see [`check_probe`]).
struct Probe {
    /// The expression's file.
    file: FileId,
    /// The literal at each span that may stand for a domain member.
    literals: HashMap<Span, usize>,
    /// The index input made for each (literal, domain).
    slots: HashMap<(usize, DomainId), InputId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DefId(usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Symbol {
    Input(InputId),
    Param(ParamId),
    Def(DefId),
    /// Declared, but the declaration was rejected: uses stay silent rather
    /// than repeat the error as "unknown name".
    Invalid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DefKind {
    Let,
    Fn,
}

/// A `let` or `fn`, from the user's file or the stdlib.
struct Def<'a> {
    name: &'a Ident,
    kind: DefKind,
    params: Option<&'a [Ident]>,
    body: &'a Expr,
    /// The stdlib module it comes from, if any.
    module: Option<&'a str>,
}

/// What an expression can see.
#[derive(Clone, Default)]
struct Env {
    /// Bound arguments and sampler variables, innermost last. Shared, so
    /// that copying an environment copies no expression: each use of a local
    /// is copied (and paid for) in `Checker::name`.
    locals: Vec<(String, Rc<TExpr>)>,
    /// Inside a `fn` body: only arguments and functions are visible.
    in_fn: Option<String>,
    /// Inside a stdlib body: every stdlib function is visible.
    in_stdlib: bool,
}

impl Env {
    fn bind(&self, name: &str, value: TExpr) -> Env {
        let mut e = self.clone();
        e.locals.push((name.to_string(), Rc::new(value)));
        e
    }

    fn local(&self, name: &str) -> Option<&TExpr> {
        self.locals
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &**v)
    }
}

struct Frame {
    def: DefId,
    name: String,
    call: Span,
}

struct Checker<'a> {
    root: FileId,

    diags: Vec<Diagnostic>,
    model_name: Option<String>,
    model_span: Option<Span>,
    domains: Vec<Domain>,
    inputs: Vec<Input>,
    params: Vec<Param>,
    samplers: Vec<Sampler>,
    terms: Vec<Term>,
    unobserved: Vec<UnobservedTerm>,
    score: Option<TExpr>,
    /// For each likelihood on a `real` input: the scale, if it is a usable
    /// normal scale (see [`Model::noise_scale`]).
    likelihood_scales: Vec<Option<TExpr>>,
    fit: FitConfig,
    /// Every top-level name of the user's file.
    globals: HashMap<String, (Symbol, Span)>,
    defs: Vec<Def<'a>>,
    /// Every stdlib function by name, with its module.
    stdlib_fns: HashMap<&'a str, DefId>,
    used_modules: HashSet<String>,
    /// Definitions that are part of a cycle: never expanded.
    recursive: HashSet<DefId>,
    expanded: HashSet<DefId>,
    /// How many times each definition has been expanded.
    expansions: HashMap<DefId, usize>,
    stack: Vec<Frame>,
    work: usize,
    /// Set once expansion is refused (work or depth): every later expansion
    /// stops at once, so a refused model costs no more than the budget.
    out_of_budget: bool,
    /// Definitions without arguments whose expansion failed: expanding them
    /// again would fail the same way, so their uses stop at once.
    failed_lets: HashSet<DefId>,
    /// Errors already reported, so a definition used many times reports
    /// each of its mistakes once.
    reported: HashSet<(&'static str, String, Span)>,
    /// Set while checking an expression typed at a prompt.
    probe: Option<Probe>,
    /// Inputs and parameters some expression reads, so that the ones
    /// nothing reads can be warned about.
    used_inputs: HashSet<InputId>,
    used_params: HashSet<ParamId>,
    /// Tables declared over a domain no input ranges over, with the
    /// table's name: see [`Checker::misnamed_domains`].
    unknown_table_domains: Vec<(Ident, String)>,
}

impl<'a> Checker<'a> {
    /// A checker that has checked a model's file: its declarations, then
    /// its terms and score.
    fn with_model(root: FileId, file: &'a ast::File, stdlib: &'a [Module]) -> Checker<'a> {
        let mut c = Checker::new(root, stdlib);
        c.declarations(file);
        c.find_recursion();
        c.terms(file);
        c.score();
        c
    }

    /// The diagnostics so far, in the order they are shown.
    fn take_diagnostics(&mut self) -> Vec<Diagnostic> {
        let mut diags = std::mem::take(&mut self.diags);
        diagnostic::sort(&mut diags);
        diags
    }

    /// The model checked; a file without a `model` statement is named
    /// `default_name`.
    fn into_model(self, default_name: &str, noise_scale: Option<TExpr>) -> Model {
        Model {
            name: self.model_name.unwrap_or_else(|| default_name.to_string()),
            domains: self.domains,
            inputs: self.inputs,
            params: self.params,
            samplers: self.samplers,
            terms: self.terms,
            unobserved: self.unobserved,
            score: self.score,
            noise_scale,
            fit: self.fit,
        }
    }

    fn new(root: FileId, stdlib: &'a [Module]) -> Checker<'a> {
        let mut c = Checker {
            root,

            diags: Vec::new(),
            model_name: None,
            model_span: None,
            domains: Vec::new(),
            inputs: Vec::new(),
            params: Vec::new(),
            samplers: Vec::new(),
            terms: Vec::new(),
            unobserved: Vec::new(),
            score: None,
            likelihood_scales: Vec::new(),
            fit: FitConfig::default(),
            globals: HashMap::new(),
            defs: Vec::new(),
            stdlib_fns: HashMap::new(),
            used_modules: HashSet::new(),
            recursive: HashSet::new(),
            expanded: HashSet::new(),
            expansions: HashMap::new(),
            stack: Vec::new(),
            work: 0,
            out_of_budget: false,
            failed_lets: HashSet::new(),
            reported: HashSet::new(),
            probe: None,
            used_inputs: HashSet::new(),
            used_params: HashSet::new(),
            unknown_table_domains: Vec::new(),
        };
        for m in stdlib {
            for item in &m.file.items {
                if let ItemKind::Fn { name, params, body } = &item.kind {
                    let id = DefId(c.defs.len());
                    c.defs.push(Def {
                        name,
                        kind: DefKind::Fn,
                        params: Some(params),
                        body,
                        module: Some(&m.name),
                    });
                    c.stdlib_fns.insert(&name.name, id);
                }
            }
        }
        c
    }

    // ------------------------------------------------------------ reporting

    /// Record an error. One found inside a stdlib body is shown at the user's
    /// call, with the stdlib location as a note.
    fn report(&mut self, mut d: Diagnostic) {
        if !self.is_user_file(d.primary.span.file) {
            if let Some(frame) = self
                .stack
                .iter()
                .rev()
                .find(|f| self.is_user_file(f.call.file))
            {
                let inner = std::mem::replace(
                    &mut d.primary,
                    diagnostic::Label {
                        span: frame.call,
                        text: format!("in this call to `{}`", frame.name),
                    },
                );
                let text = if inner.text.is_empty() {
                    format!("inside `{}`", frame.name)
                } else {
                    format!("inside `{}`: {}", frame.name, inner.text)
                };
                d.secondary.insert(
                    0,
                    diagnostic::Label {
                        span: inner.span,
                        text,
                    },
                );
            }
        }
        let key = (d.code, d.message.clone(), d.primary.span);
        if self.reported.insert(key) {
            self.diags.push(d);
        }
    }

    /// The model's file, or the prompt expression's: not the stdlib.
    fn is_user_file(&self, file: FileId) -> bool {
        file == self.root || self.probe.as_ref().is_some_and(|p| p.file == file)
    }

    /// A prompt literal standing where an index of `domain` goes, as the
    /// index input that will hold its member; anything else unchanged.
    fn probe_index(&mut self, e: TExpr, domain: DomainId) -> TExpr {
        let Some(probe) = &mut self.probe else {
            return e;
        };
        let Some(&literal) = probe.literals.get(&e.span) else {
            return e;
        };
        if !matches!(e.kind, TExprKind::Const(_)) {
            return e;
        }
        let next = InputId(self.inputs.len() as u32);
        let id = *probe.slots.entry((literal, domain)).or_insert(next);
        if id == next {
            self.inputs.push(Input {
                name: format!("id{}.{}", literal, self.domains[domain.index()].name),
                kind: InputKind::Index(domain),
                span: e.span,
            });
        }
        self.input_expr(id, e.span)
    }

    fn warn(&mut self, d: Diagnostic) {
        self.diags.push(Diagnostic {
            severity: Severity::Warning,
            ..d
        });
    }

    fn error(
        &mut self,
        code: &'static str,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) {
        self.report(Diagnostic::error(code, message, span).label(label));
    }

    // --------------------------------------------------------- declarations

    fn declarations(&mut self, file: &'a ast::File) {
        // Inputs first: they create the domains that params refer to.
        for item in &file.items {
            if let ItemKind::Input { name, ty } = &item.kind {
                self.input(name, ty);
            }
        }
        for item in &file.items {
            match &item.kind {
                ItemKind::Model(name) => {
                    if let Some(first) = self.model_span {
                        self.report(
                            Diagnostic::error(
                                "recc::duplicate",
                                "the model is named twice",
                                name.span,
                            )
                            .label("second `model` statement")
                            .with_secondary(first, "first named here"),
                        );
                    } else {
                        self.model_name = Some(name.name.clone());
                        self.model_span = Some(name.span);
                    }
                }
                ItemKind::Use(path) => self.use_module(path, item.span),
                ItemKind::Param {
                    name,
                    domain,
                    shape,
                    attrs,
                } => self.param(name, domain.as_ref(), shape, attrs),
                ItemKind::Let { name, params, body } => {
                    self.define(name, DefKind::Let, params.as_deref(), body)
                }
                ItemKind::Fn { name, params, body } => {
                    self.define(name, DefKind::Fn, Some(params), body)
                }
                ItemKind::Fit(entries) => self.fit_block(entries),
                ItemKind::Input { .. }
                | ItemKind::Loss { .. }
                | ItemKind::Likelihood { .. }
                | ItemKind::Prior { .. }
                | ItemKind::Penalty(_) => {}
            }
        }
        self.misnamed_domains();
    }

    /// Tables over a domain no input ranges over, each blamed where the
    /// typo most likely is: when an input ranges over a close name that no
    /// table uses (`input u: users` beside `p[user]`), the input is the odd
    /// one out if more tables agree with each other than declarations use
    /// its name, or if the tables' name is one every data reader gives
    /// (`user`, `item`); otherwise the table is.
    fn misnamed_domains(&mut self) {
        let pending = std::mem::take(&mut self.unknown_table_domains);
        let mut blamed: Vec<DomainId> = Vec::new();
        for (domain, table) in &pending {
            let names: Vec<&str> = self.domains.iter().map(|d| d.name.as_str()).collect();
            let input_domain = closest(&domain.name, names)
                .and_then(|c| self.find_domain(c))
                .filter(|&c| !self.params.iter().any(|p| p.domain == Some(c)));
            let Some(c) = input_domain else {
                self.unknown_domain(domain, &format!("`{table}` has rows"));
                continue;
            };
            let tables_agreeing = pending
                .iter()
                .filter(|(d, _)| d.name == domain.name)
                .count();
            let inputs_over = self
                .inputs
                .iter()
                .filter(|i| {
                    matches!(i.kind, InputKind::Index(d) | InputKind::Bag(d) | InputKind::History(d) if d == c)
                })
                .count();
            let conventional = ["user", "item"].contains(&domain.name.as_str());
            if tables_agreeing <= inputs_over && !conventional {
                self.unknown_domain(domain, &format!("`{table}` has rows"));
                continue;
            }
            if blamed.contains(&c) {
                continue;
            }
            blamed.push(c);
            let input_domain = self.domains[c.index()].clone();
            let input = self
                .inputs
                .iter()
                .find(|i| {
                    matches!(i.kind, InputKind::Index(d) | InputKind::Bag(d) | InputKind::History(d) if d == c)
                })
                .map_or_else(String::new, |i| format!("input `{}` ", i.name));
            self.report(
                Diagnostic::error(
                    "recc::unknown-domain",
                    format!(
                        "{input}ranges over `{}`, but no table has rows over that domain",
                        input_domain.name
                    ),
                    input_domain.span,
                )
                .label("no table uses this domain")
                .with_secondary(
                    domain.span,
                    format!("`{table}` has rows over `{}`", domain.name),
                )
                .with_help(format!("did you mean `{}`?", domain.name)),
            );
        }
    }

    /// Claim a top-level name, reporting a clash with an earlier one.
    fn claim(&mut self, name: &Ident, symbol: Symbol) -> bool {
        if let Some((_, first)) = self.globals.get(&name.name) {
            let first = *first;
            self.report(
                Diagnostic::error(
                    "recc::duplicate",
                    format!("`{}` is defined twice", name.name),
                    name.span,
                )
                .label("defined again here")
                .with_secondary(first, "first defined here")
                .with_help("inputs, params, lets and fns share one namespace; rename one of them"),
            );
            return false;
        }
        if PRIMITIVES.iter().any(|(p, _)| *p == name.name) {
            self.report(
                Diagnostic::error(
                    "recc::reserved-name",
                    format!("`{}` is a built-in function", name.name),
                    name.span,
                )
                .label("cannot be redefined")
                .with_help("choose another name"),
            );
            self.globals
                .insert(name.name.clone(), (Symbol::Invalid, name.span));
            return false;
        }
        self.globals.insert(name.name.clone(), (symbol, name.span));
        true
    }

    /// Remember a rejected declaration's name so its uses raise no new errors.
    fn poison(&mut self, name: &Ident) {
        self.globals
            .entry(name.name.clone())
            .or_insert((Symbol::Invalid, name.span));
    }

    fn domain_id(&mut self, name: &Ident) -> DomainId {
        if let Some(i) = self.domains.iter().position(|d| d.name == name.name) {
            return DomainId(i as u32);
        }
        self.domains.push(Domain {
            name: name.name.clone(),
            span: name.span,
        });
        DomainId(self.domains.len() as u32 - 1)
    }

    fn find_domain(&self, name: &str) -> Option<DomainId> {
        self.domains
            .iter()
            .position(|d| d.name == name)
            .map(|i| DomainId(i as u32))
    }

    fn unknown_domain(&mut self, name: &Ident, what: &str) {
        let names: Vec<&str> = self.domains.iter().map(|d| d.name.as_str()).collect();
        let mut d = Diagnostic::error(
            "recc::unknown-domain",
            format!(
                "{what} over `{}`, but no input ranges over that domain",
                name.name
            ),
            name.span,
        )
        .label("unknown domain");
        d = match closest(&name.name, names.iter().copied()) {
            Some(c) => d.with_help(format!("did you mean `{c}`?")),
            None if names.is_empty() => {
                d.with_help(format!("declare an input first: `input x: {}`", name.name))
            }
            None => d.with_help(format!("the model's domains are: {}", names.join(", "))),
        };
        self.report(d);
    }

    fn input(&mut self, name: &Ident, ty: &ast::InputType) {
        let kind = match ty {
            ast::InputType::Real(_) => InputKind::Real,
            ast::InputType::Domain(d) => InputKind::Index(self.domain_id(d)),
            ast::InputType::Bag(d, _) => InputKind::Bag(self.domain_id(d)),
            ast::InputType::History(d, _) => InputKind::History(self.domain_id(d)),
        };
        let id = InputId(self.inputs.len() as u32);
        if self.claim(name, Symbol::Input(id)) {
            self.inputs.push(Input {
                name: name.name.clone(),
                kind,
                span: name.span,
            });
        }
    }

    fn use_module(&mut self, path: &[Ident], span: Span) {
        let names: Vec<&str> = path.iter().map(|i| i.name.as_str()).collect();
        match names.as_slice() {
            ["stdlib"] => {
                for (m, _) in stdlib::MODULES {
                    self.used_modules.insert((*m).to_string());
                }
            }
            ["stdlib", m] if stdlib::MODULES.iter().any(|(n, _)| n == m) => {
                self.used_modules.insert((*m).to_string());
            }
            ["stdlib", _] => {
                let m = &path[1];
                let modules: Vec<&str> = stdlib::MODULES.iter().map(|(n, _)| *n).collect();
                let help = match closest(&m.name, modules.iter().copied()) {
                    Some(c) => format!("did you mean `stdlib.{c}`?"),
                    None => format!("the stdlib modules are: {}", modules.join(", ")),
                };
                self.report(
                    Diagnostic::error(
                        "recc::unknown-module",
                        format!("there is no module `stdlib.{}`", m.name),
                        m.span,
                    )
                    .label("unknown module")
                    .with_help(help),
                );
            }
            _ => self.report(
                Diagnostic::error(
                    "recc::unknown-module",
                    format!("cannot use `{}`", names.join(".")),
                    span,
                )
                .label("not a stdlib module")
                .with_help("`use stdlib` or `use stdlib.MODULE`, e.g. `use stdlib.losses`"),
            ),
        }
    }

    fn dim(&mut self, d: &ast::Dim) -> Option<usize> {
        match d.text.parse::<usize>() {
            Ok(0) => {
                self.error(
                    "recc::bad-shape",
                    "a dimension must be at least 1",
                    d.span,
                    "zero",
                );
                None
            }
            Ok(n) if n <= MAX_DIM => Some(n),
            _ => {
                self.error(
                    "recc::bad-shape",
                    format!("a dimension may be at most {MAX_DIM}"),
                    d.span,
                    "too large",
                );
                None
            }
        }
    }

    fn param(
        &mut self,
        name: &Ident,
        domain: Option<&Ident>,
        shape: &ast::ShapeDecl,
        attrs: &[ast::ParamAttr],
    ) {
        let domain_id = match domain {
            Some(d) => match self.find_domain(&d.name) {
                Some(id) => Some(id),
                None => {
                    // Reported once every table is known: the typo may be
                    // the input's.
                    self.unknown_table_domains
                        .push((d.clone(), name.name.clone()));
                    self.poison(name);
                    return;
                }
            },
            None => None,
        };
        let shape = match shape {
            ast::ShapeDecl::Real(_) => Some(Shape::Scalar),
            ast::ShapeDecl::Vec(n, _) => self.dim(n).map(Shape::Vec),
            ast::ShapeDecl::Mat(r, c, span) => match (self.dim(r), self.dim(c)) {
                (Some(r), Some(c)) if r * c <= MAX_DIM => Some(Shape::Mat(r, c)),
                (Some(_), Some(_)) => {
                    self.error(
                        "recc::bad-shape",
                        format!("a matrix may hold at most {MAX_DIM} numbers"),
                        *span,
                        "too large",
                    );
                    None
                }
                _ => None,
            },
        };
        let mut init = None;
        let mut variational = None;
        let mut constraint: Option<(Constraint, Span)> = None;
        for attr in attrs {
            match attr {
                ast::ParamAttr::Init(dist) => {
                    if init.is_some() {
                        self.error(
                            "recc::bad-param",
                            "`init` is given twice",
                            dist.span,
                            "second `init`",
                        );
                    }
                    init = Some(self.init(dist));
                }
                ast::ParamAttr::Variational(s, options) => {
                    if variational.is_some() {
                        self.error(
                            "recc::bad-param",
                            "`variational` is given twice",
                            *s,
                            "again",
                        );
                    }
                    let v = self.variational_options(options);
                    variational = Some((*s, v));
                }
                ast::ParamAttr::OnBall(s) | ast::ParamAttr::Nonneg(s) => {
                    let c = if matches!(attr, ast::ParamAttr::OnBall(_)) {
                        Constraint::Ball
                    } else {
                        Constraint::Nonneg
                    };
                    if let Some((_, first)) = constraint {
                        self.report(
                            Diagnostic::error(
                                "recc::bad-param",
                                "a param takes at most one constraint",
                                *s,
                            )
                            .label("second constraint")
                            .with_secondary(first, "first constraint"),
                        );
                    } else {
                        constraint = Some((c, *s));
                    }
                }
            }
        }
        let Some(shape) = shape else {
            self.poison(name);
            return;
        };
        if let Some((Constraint::Ball, s)) = constraint {
            if !matches!(shape, Shape::Vec(_)) {
                self.report(
                    Diagnostic::error(
                        "recc::bad-param",
                        format!("`on ball` needs a vector, but `{}` is {shape}", name.name),
                        s,
                    )
                    .label("needs vec(K)"),
                );
            }
        }
        if let (Some((v, _)), Some((_, s))) = (variational, constraint) {
            self.report(
                Diagnostic::error(
                    "recc::bad-param",
                    "a variational param cannot also be constrained",
                    s,
                )
                .label("constraint")
                .with_secondary(v, "variational"),
            );
        }
        let id = ParamId(self.params.len() as u32);
        if self.claim(name, Symbol::Param(id)) {
            self.params.push(Param {
                name: name.name.clone(),
                domain: domain_id,
                shape,
                init: init.flatten().unwrap_or(Init::Zeros),
                variational: variational.map(|(_, v)| v),
                constraint: constraint.map_or(Constraint::None, |(c, _)| c),
                span: name.span,
            });
        }
    }

    /// `variational(sd: S)`: the sd rows start with, a positive number.
    fn variational_options(&mut self, options: &[ast::FitEntry]) -> Variational {
        let mut v = Variational { initial_sd: None };
        for o in options {
            if o.key.name != "sd" {
                let mut d = Diagnostic::error(
                    "recc::bad-param",
                    format!("unknown option `{}` of `variational`", o.key.name),
                    o.key.span,
                )
                .label("unknown option");
                d = match closest(&o.key.name, ["sd"]) {
                    Some(c) => d.with_help(format!("did you mean `{c}`?")),
                    None => d.with_help("`variational(sd: S)` starts every row with sd S"),
                };
                self.report(d);
                continue;
            }
            match o.value {
                ast::FitValue::Number(x, span) if x > 0.0 && x.is_finite() => {
                    if self.check_f32_range(x, span).is_none() {
                        continue;
                    }
                    if v.initial_sd.is_some() {
                        self.error(
                            "recc::bad-param",
                            "`sd` is given twice",
                            o.key.span,
                            "again",
                        );
                    }
                    v.initial_sd = Some(x);
                }
                _ => self.error(
                    "recc::bad-param",
                    "`sd` must be a positive number",
                    o.value.span(),
                    "the sd every row starts with",
                ),
            }
        }
        v
    }

    /// A constant argument of `init`: a number, possibly negated.
    fn constant(&mut self, e: &Expr) -> Option<f64> {
        match &e.kind {
            ExprKind::Number(v) => {
                self.check_f32_range(*v, e.span)?;
                Some(*v)
            }
            ExprKind::Neg(inner) => self.constant(inner).map(|v| -v),
            _ => {
                self.error(
                    "recc::bad-init",
                    "expected a number",
                    e.span,
                    "not a constant",
                );
                None
            }
        }
    }

    fn init(&mut self, dist: &ast::Dist) -> Option<Init> {
        let args: Vec<Option<f64>> = dist.args.iter().map(|a| self.constant(a)).collect();
        if args.iter().any(Option::is_none) {
            return None;
        }
        let args: Vec<f64> = args.into_iter().flatten().collect();
        let name = dist.name.name.as_str();
        let arity = match name {
            "zeros" => 0,
            "constant" => 1,
            "normal" | "uniform" => 2,
            _ => {
                let known = ["zeros", "constant", "normal", "uniform"];
                let mut d = Diagnostic::error(
                    "recc::bad-init",
                    format!("unknown initialisation `{name}`"),
                    dist.name.span,
                )
                .label("unknown");
                d = match closest(name, known) {
                    Some(c) => d.with_help(format!("did you mean `{c}`?")),
                    None => d.with_help(
                        "use zeros, constant(c), normal(mean, std) or uniform(low, high)",
                    ),
                };
                self.report(d);
                return None;
            }
        };
        if args.len() != arity {
            self.error(
                "recc::arity",
                format!(
                    "`{name}` takes {arity} argument{}, found {}",
                    plural(arity),
                    args.len()
                ),
                dist.span,
                "wrong number of arguments",
            );
            return None;
        }
        match name {
            "zeros" => Some(Init::Zeros),
            "constant" => Some(Init::Constant(args[0])),
            "normal" if args[1] > 0.0 && args.iter().all(|a| a.is_finite()) => Some(Init::Normal {
                mean: args[0],
                std: args[1],
            }),
            "normal" => {
                self.error(
                    "recc::bad-init",
                    "the standard deviation must be positive and finite",
                    dist.args[1].span,
                    "not positive",
                );
                None
            }
            _ if args[0] < args[1] && args.iter().all(|a| a.is_finite()) => Some(Init::Uniform {
                low: args[0],
                high: args[1],
            }),
            _ => {
                self.report(
                    Diagnostic::error(
                        "recc::bad-init",
                        "`uniform(low, high)` needs low < high",
                        dist.span,
                    )
                    .label("empty range")
                    .with_help("e.g. `init uniform(-0.01, 0.01)`"),
                );
                None
            }
        }
    }

    fn define(
        &mut self,
        name: &'a Ident,
        kind: DefKind,
        params: Option<&'a [Ident]>,
        body: &'a Expr,
    ) {
        let id = DefId(self.defs.len());
        if !self.claim(name, Symbol::Def(id)) {
            return;
        }
        if let Some(ps) = params {
            let mut seen: HashMap<&str, Span> = HashMap::new();
            for p in ps {
                if let Some(first) = seen.insert(&p.name, p.span) {
                    self.report(
                        Diagnostic::error(
                            "recc::duplicate",
                            format!("argument `{}` appears twice", p.name),
                            p.span,
                        )
                        .label("again")
                        .with_secondary(first, "first here"),
                    );
                }
            }
        }
        self.defs.push(Def {
            name,
            kind,
            params,
            body,
            module: None,
        });
    }

    fn fit_block(&mut self, entries: &[ast::FitEntry]) {
        // The solver decides which other options mean anything, wherever in
        // the block it is written.
        let solver = entries
            .iter()
            .find(|e| e.key.name == "solver")
            .map(|e| (self.solver_kind(&e.value), e.span));
        // An unknown solver is reported once; its options are not judged.
        let kind = match solver {
            Some((None, _)) => None,
            Some((Some(kind), _)) => Some(kind),
            None => Some(SolverKind::Sgd),
        };
        let chosen_at = solver.map(|(_, span)| span);
        let mut sweeps = DEFAULT_SWEEPS;
        let mut samples = DEFAULT_SAMPLES;
        let mut burn_in = DEFAULT_BURN_IN;
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut lr_in_optimizer: Option<Span> = None;
        for e in entries {
            let key = e.key.name.as_str();
            if let Some(first) = seen.insert(key, e.key.span) {
                self.report(
                    Diagnostic::error(
                        "recc::bad-fit",
                        format!("fit option `{key}` is given twice"),
                        e.key.span,
                    )
                    .label("again")
                    .with_secondary(first, "first here"),
                );
                continue;
            }
            if let Some(kind) = kind.filter(|k| *k != SolverKind::Sgd) {
                if SGD_ONLY.contains(&key) {
                    let mut d = Diagnostic::error(
                        "recc::bad-fit",
                        format!(
                            "`{key}` is an option of SGD, and this model is fitted with `solver: {}`",
                            kind.name()
                        ),
                        e.key.span,
                    )
                    .label("SGD only")
                    .with_help(kind.sgd_only_help(key));
                    if let Some(at) = chosen_at {
                        d = d.with_secondary(at, "the solver is chosen here");
                    }
                    self.report(d);
                    continue;
                }
            }
            let wants = match key {
                "sweeps" => Some(SolverKind::Als),
                "samples" | "burn_in" => Some(SolverKind::Gibbs),
                _ => None,
            };
            if let (Some(wants), Some(kind)) = (wants, kind) {
                if wants != kind {
                    self.report(
                        self.misplaced_solver_option(key, wants, kind, e.key.span, chosen_at),
                    );
                    continue;
                }
            }
            match key {
                "solver" => {}
                "sweeps" => {
                    if let Some(v) = self.count(&e.value, 1) {
                        sweeps = v;
                    }
                }
                "samples" => {
                    if let Some(v) = self.count(&e.value, 1) {
                        samples = v;
                    }
                }
                "burn_in" => {
                    if let Some(v) = self.count(&e.value, 0) {
                        burn_in = v;
                    }
                }
                "optimizer" => {
                    if let Some((opt, lr)) = self.optimizer(&e.value) {
                        self.fit.optimizer = opt;
                        if let Some(lr) = lr {
                            if let Some(&first) = seen.get("lr") {
                                self.report(
                                    Diagnostic::error(
                                        "recc::bad-fit",
                                        "the learning rate is given twice",
                                        e.value.span(),
                                    )
                                    .label("second learning rate")
                                    .with_secondary(first, "already set here")
                                    .with_help(
                                        "keep one: `optimizer: sgd(lr: 0.01)` or `lr: 0.01`",
                                    ),
                                );
                            }
                            self.fit.lr = lr;
                            lr_in_optimizer = Some(e.value.span());
                        }
                    }
                }
                "lr" => {
                    if let Some(first) = lr_in_optimizer {
                        self.report(
                            Diagnostic::error(
                                "recc::bad-fit",
                                "the learning rate is given twice",
                                e.key.span,
                            )
                            .label("second learning rate")
                            .with_secondary(first, "already set in `optimizer`")
                            .with_help("keep one: `optimizer: sgd(lr: 0.01)` or `lr: 0.01`"),
                        );
                    } else if let Some(v) = self.positive(&e.value) {
                        self.fit.lr = v;
                    }
                }
                "epochs" => {
                    if let Some(v) = self.count(&e.value, 1) {
                        self.fit.epochs = v;
                    }
                }
                "batch" => {
                    if let Some(v) = self.count(&e.value, 1) {
                        self.fit.batch = v;
                    }
                }
                "threads" => {
                    if let Some(v) = self.count(&e.value, 1) {
                        self.fit.threads = v;
                    }
                }
                "seed" => {
                    if let Some(v) = self.count(&e.value, 0) {
                        self.fit.seed = v as u64;
                    }
                }
                "early_stopping" => {
                    if let Some(v) = self.count(&e.value, 0) {
                        self.fit.early_stopping = v;
                    }
                }
                _ => {
                    let mut d = Diagnostic::error(
                        "recc::bad-fit",
                        format!("unknown fit option `{key}`"),
                        e.key.span,
                    )
                    .label("unknown option");
                    d = match closest(key, FIT_OPTIONS.iter().copied()) {
                        Some(c) => d.with_help(format!("did you mean `{c}`?")),
                        None => d.with_help(format!("the options are: {}", FIT_OPTIONS.join(", "))),
                    };
                    self.report(d);
                }
            }
        }
        self.fit.solver = match kind {
            Some(SolverKind::Als) => Solver::Als { sweeps },
            Some(SolverKind::Gibbs) => Solver::Gibbs { samples, burn_in },
            Some(SolverKind::Sgd) | None => Solver::Sgd,
        };
    }

    /// The solver `solver: NAME` names; `None` (reported) when it names none.
    fn solver_kind(&mut self, v: &ast::FitValue) -> Option<SolverKind> {
        let name = match v {
            ast::FitValue::Name(n) => n,
            ast::FitValue::Call { name, args, span } => {
                let counts = match name.name.as_str() {
                    "als" => "sweeps: 15",
                    "gibbs" => "samples: 150, burn_in: 50",
                    _ => "epochs: 20",
                };
                let first = args.first().map_or(*span, |a| a.span);
                self.report(
                    Diagnostic::error("recc::bad-fit", "a solver takes no arguments", first)
                        .label("not an argument of the solver")
                        .with_help(format!(
                            "its options are options of the fit block: `solver: {}, {counts}`",
                            name.name
                        )),
                );
                return None;
            }
            ast::FitValue::Number(_, s) => {
                self.error(
                    "recc::bad-fit",
                    "expected a solver",
                    *s,
                    "sgd, als or gibbs",
                );
                return None;
            }
        };
        match name.name.as_str() {
            "sgd" => Some(SolverKind::Sgd),
            "als" => Some(SolverKind::Als),
            "gibbs" => Some(SolverKind::Gibbs),
            other => {
                let mut d = Diagnostic::error(
                    "recc::bad-fit",
                    format!("unknown solver `{other}`"),
                    name.span,
                )
                .label("unknown solver");
                d = match closest(other, SOLVERS.iter().copied()) {
                    Some(c) => d.with_help(format!("did you mean `{c}`?")),
                    None => d.with_help(
                        "the solvers are sgd (gradient steps, the default), als (alternating least squares) and gibbs (Gibbs sampling)",
                    ),
                };
                self.report(d);
                None
            }
        }
    }

    /// `sweeps` under Gibbs or SGD, `samples` or `burn_in` under ALS or SGD.
    fn misplaced_solver_option(
        &self,
        key: &str,
        wants: SolverKind,
        kind: SolverKind,
        at: Span,
        chosen_at: Option<Span>,
    ) -> Diagnostic {
        let wanted = wants.name();
        let (message, help) = match kind {
            SolverKind::Sgd => (
                format!("`{key}` is an option of `solver: {wanted}`, and this model is fitted with SGD"),
                match wants {
                    SolverKind::Als => "add `solver: als` to solve the tables in closed form, or count SGD passes with `epochs`".to_string(),
                    _ => "add `solver: gibbs` to sample the posterior, or count SGD passes with `epochs`".to_string(),
                },
            ),
            _ => (
                format!(
                    "`{key}` is an option of `solver: {wanted}`, and this model is fitted with `solver: {}`",
                    kind.name()
                ),
                match kind {
                    SolverKind::Als => "ALS counts `sweeps`".to_string(),
                    _ => "Gibbs counts `samples` (kept) and `burn_in` (thrown away first)".to_string(),
                },
            ),
        };
        let d = Diagnostic::error("recc::bad-fit", message, at)
            .label(format!("needs `solver: {wanted}`"))
            .with_help(help);
        match chosen_at {
            Some(span) => d.with_secondary(span, "the solver is chosen here"),
            None => d,
        }
    }

    fn number(&mut self, v: &ast::FitValue) -> Option<f64> {
        match v {
            ast::FitValue::Number(x, span) if x.is_finite() => {
                self.check_f32_range(*x, *span)?;
                Some(*x)
            }
            _ => {
                self.error(
                    "recc::bad-fit",
                    "expected a number",
                    v.span(),
                    "not a number",
                );
                None
            }
        }
    }

    fn positive(&mut self, v: &ast::FitValue) -> Option<f64> {
        let x = self.number(v)?;
        if x > 0.0 {
            Some(x)
        } else {
            self.report(
                Diagnostic::error("recc::bad-fit", "expected a positive number", v.span())
                    .label("must be > 0")
                    .with_help("learning rates are positive, e.g. `lr: 0.01`"),
            );
            None
        }
    }

    fn count(&mut self, v: &ast::FitValue, min: usize) -> Option<usize> {
        let x = self.number(v)?;
        if x.fract() == 0.0 && x >= min as f64 && x <= u32::MAX as f64 {
            Some(x as usize)
        } else {
            self.report(
                Diagnostic::error(
                    "recc::bad-fit",
                    format!("expected a whole number of at least {min}"),
                    v.span(),
                )
                .label("not a valid count")
                .with_help("counts are whole numbers, e.g. `epochs: 25`"),
            );
            None
        }
    }

    fn optimizer(&mut self, v: &ast::FitValue) -> Option<(Optimizer, Option<f64>)> {
        let (name, args): (&Ident, &[ast::FitEntry]) = match v {
            ast::FitValue::Name(n) => (n, &[]),
            ast::FitValue::Call { name, args, .. } => (name, args),
            ast::FitValue::Number(_, s) => {
                self.error(
                    "recc::bad-fit",
                    "expected an optimizer",
                    *s,
                    "sgd, adagrad or adam",
                );
                return None;
            }
        };
        let mut opt = match name.name.as_str() {
            "sgd" => Optimizer::Sgd,
            "adagrad" => Optimizer::Adagrad,
            "adam" => Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
            },
            other => {
                let mut d = Diagnostic::error(
                    "recc::bad-fit",
                    format!("unknown optimizer `{other}`"),
                    name.span,
                )
                .label("unknown optimizer");
                d = match closest(other, ["sgd", "adagrad", "adam"]) {
                    Some(c) => d.with_help(format!("did you mean `{c}`?")),
                    None => d.with_help("the optimizers are sgd, adagrad and adam"),
                };
                self.report(d);
                return None;
            }
        };
        let mut lr = None;
        for a in args {
            match (a.key.name.as_str(), &mut opt) {
                ("lr", _) => lr = self.positive(&a.value),
                ("beta1", Optimizer::Adam { beta1, .. })
                | ("beta2", Optimizer::Adam { beta2: beta1, .. }) => {
                    let x = self.number(&a.value)?;
                    if (0.0..1.0).contains(&x) {
                        *beta1 = x;
                    } else {
                        self.error(
                            "recc::bad-fit",
                            "a beta must be in [0, 1)",
                            a.value.span(),
                            "out of range",
                        );
                    }
                }
                (k, _) => {
                    let allowed: &[&str] = if matches!(opt, Optimizer::Adam { .. }) {
                        &["lr", "beta1", "beta2"]
                    } else {
                        &["lr"]
                    };
                    let mut d = Diagnostic::error(
                        "recc::bad-fit",
                        format!("`{}` takes no option `{k}`", name.name),
                        a.key.span,
                    )
                    .label("unknown option");
                    d = d.with_help(format!("`{}` takes: {}", name.name, allowed.join(", ")));
                    self.report(d);
                }
            }
        }
        Some((opt, lr))
    }

    // ------------------------------------------------------------ recursion

    /// Report every cycle among definitions; cyclic ones are never expanded.
    fn find_recursion(&mut self) {
        let mut graph: DiGraph<DefId, Span> = DiGraph::new();
        let nodes: Vec<_> = (0..self.defs.len())
            .map(|i| graph.add_node(DefId(i)))
            .collect();
        for (i, def) in self.defs.iter().enumerate() {
            let shadowed: HashSet<&str> = def
                .params
                .unwrap_or(&[])
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            let mut refs = Vec::new();
            references(def.body, &mut refs);
            for (name, span) in refs {
                if shadowed.contains(name) {
                    continue;
                }
                let target = if def.module.is_some() {
                    self.stdlib_fns.get(name).copied()
                } else {
                    match self.globals.get(name) {
                        Some((Symbol::Def(d), _)) => Some(*d),
                        _ => self.stdlib_fns.get(name).copied(),
                    }
                };
                if let Some(t) = target {
                    graph.add_edge(nodes[i], nodes[t.0], span);
                }
            }
        }
        for scc in tarjan_scc(&graph) {
            let cyclic = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
            if !cyclic {
                continue;
            }
            let members: BTreeSet<usize> = scc.iter().map(|n| graph[*n].0).collect();
            let names: Vec<String> = members
                .iter()
                .map(|i| format!("`{}`", self.defs[*i].name.name))
                .collect();
            for &i in &members {
                self.recursive.insert(DefId(i));
                let def = &self.defs[i];
                // Point at the first reference that stays inside the cycle.
                let edge = graph
                    .edges(nodes[i])
                    .find(|e| members.contains(&graph[petgraph::visit::EdgeRef::target(e)].0))
                    .map(|e| *e.weight());
                let mut d = Diagnostic::error(
                    "recc::recursive-definition",
                    format!("`{}` is defined in terms of itself", def.name.name),
                    def.name.span,
                )
                .label("recursive definition")
                .with_help(
                    "definitions are expanded where they are used, so they cannot be recursive",
                );
                if let Some(s) = edge {
                    d = d.with_secondary(s, "refers back here");
                }
                if names.len() > 1 {
                    d = d.with_note(format!("the cycle: {}", names.join(" → ")));
                }
                self.report(d);
            }
        }
    }

    // ---------------------------------------------------------------- terms

    fn terms(&mut self, file: &'a ast::File) {
        for item in &file.items {
            match &item.kind {
                ItemKind::Loss { expr, samplers }
                    if samplers.iter().any(|s| s.dist.name.name == UNOBSERVED) =>
                {
                    self.unobserved_term(expr, samplers, item.span);
                }
                ItemKind::Loss { expr, samplers } => {
                    let e =
                        self.with_samplers(&Env::default(), samplers, |c, env| c.expr(env, expr));
                    self.term(TermKind::Loss, e, item.span);
                }
                ItemKind::Likelihood {
                    target,
                    dist,
                    samplers,
                } => {
                    let e = self.with_samplers(&Env::default(), samplers, |c, env| {
                        c.likelihood(env, target, dist)
                    });
                    self.term(TermKind::Likelihood, e, item.span);
                }
                ItemKind::Prior { target, dist, once } => {
                    let e = self.prior(target, dist, *once);
                    self.term(TermKind::Prior, e, item.span);
                }
                ItemKind::Penalty(expr) => {
                    let e = self.expr(&Env::default(), expr);
                    self.term(TermKind::Penalty, e, item.span);
                }
                _ => {}
            }
        }
        let has_objective = file
            .items
            .iter()
            .any(|i| matches!(i.kind, ItemKind::Loss { .. } | ItemKind::Likelihood { .. }));
        if !has_objective {
            let span = self
                .model_span
                .or_else(|| file.items.first().map(|i| i.span))
                .unwrap_or(Span::new(self.root, 0, 0));
            self.report(
                Diagnostic::error("recc::no-loss", "the model has no loss", span)
                    .label("nothing to train")
                    .with_help("add a loss, e.g. `loss mse(R(u, i), r)`, or a likelihood `r ~ normal(R(u, i), 1)`"),
            );
        }
    }

    fn term(&mut self, kind: TermKind, e: Option<TExpr>, span: Span) {
        let Some(e) = e else { return };
        if self.check_depth(&e, span).is_none() {
            return;
        }
        match e.ty {
            Ty::Value {
                shape: Shape::Scalar,
                bag: None,
            } => self.terms.push(Term {
                kind,
                expr: e,
                span,
            }),
            other => {
                let help = match other {
                    Ty::Value { bag: Some(_), .. } => {
                        "reduce it over the bag with sum(...) or mean(...)"
                    }
                    Ty::Value { .. } => "reduce it to one number, e.g. with sum(...) or sq(...)",
                    _ => "an index is not a number: look a row up with it, e.g. `p[u]`",
                };
                let d = Diagnostic::error(
                    "recc::term-not-scalar",
                    format!(
                        "a {} term must be one number, found {}",
                        kind.name(),
                        self.describe(other)
                    ),
                    e.span,
                )
                .label(self.describe(other))
                .with_help(help);
                self.report(d);
            }
        }
    }

    /// `loss EXPR where j ~ unobserved(DOMAIN)` (see [`UnobservedTerm`]):
    /// `EXPR` with `j` standing for the example's own member of `DOMAIN`,
    /// which must read exactly one other member and no data.
    fn unobserved_term(&mut self, expr: &ast::Expr, samplers: &[ast::Sampler], span: Span) {
        let (s, others) = match samplers.iter().position(|s| s.dist.name.name == UNOBSERVED) {
            Some(k) => (
                &samplers[k],
                samplers
                    .iter()
                    .filter(|o| o.dist.name.name != UNOBSERVED)
                    .count(),
            ),
            None => return,
        };
        if samplers.len() > 1 {
            let other = samplers
                .iter()
                .find(|o| !std::ptr::eq(*o, s))
                .map_or(s.span, |o| o.span);
            self.report(
                Diagnostic::error(
                    "recc::bad-sampler",
                    "`unobserved` sums its term alone",
                    other,
                )
                .label(if others > 0 { "another draw in the same term" } else { "a second sum" })
                .with_help("write the term over unobserved pairs as its own `loss ... where j ~ unobserved(item)`"),
            );
            return;
        }
        if let Some(first) = self.unobserved.first() {
            let first = first.span;
            self.report(
                Diagnostic::error(
                    "recc::bad-sampler",
                    "a model sums over unobserved pairs once",
                    s.span,
                )
                .label("a second sum over unobserved pairs")
                .with_secondary(first, "the first")
                .with_help("add the two terms inside one `loss ... where j ~ unobserved(item)`"),
            );
            return;
        }
        if self.globals.contains_key(&s.var.name) {
            self.error(
                "recc::duplicate",
                format!("`{}` already names a declaration", s.var.name),
                s.var.span,
                "choose another name for the unobserved member",
            );
            return;
        }
        let domain = match s.dist.args.as_slice() {
            [a] => match &a.kind {
                ExprKind::Name(n) => match self.find_domain(&n.name) {
                    Some(d) => d,
                    None => {
                        self.unknown_domain(n, "an unobserved sum");
                        return;
                    }
                },
                _ => {
                    self.error(
                        "recc::bad-sampler",
                        "expected a domain name",
                        a.span,
                        "e.g. `item`",
                    );
                    return;
                }
            },
            _ => {
                self.error(
                    "recc::arity",
                    "`unobserved` takes the domain whose members it sums over",
                    s.dist.span,
                    "e.g. unobserved(item)",
                );
                return;
            }
        };
        let holders: Vec<InputId> = (0..self.inputs.len())
            .map(|k| InputId(k as u32))
            .filter(|&k| self.inputs[k.index()].kind == InputKind::Index(domain))
            .collect();
        let domain_name = self.domains[domain.index()].name.clone();
        let over = match holders.as_slice() {
            [one] => *one,
            [] => {
                self.report(
                    Diagnostic::error(
                        "recc::bad-sampler",
                        format!("no input holds a `{domain_name}` to tell observed pairs from the others"),
                        s.dist.span,
                    )
                    .label(format!("every `{domain_name}` without an example"))
                    .with_help(format!("declare the examples' member, e.g. `input i: {domain_name}`")),
                );
                return;
            }
            many => {
                let names: Vec<String> = many
                    .iter()
                    .map(|k| format!("`{}`", self.inputs[k.index()].name))
                    .collect();
                self.report(
                    Diagnostic::error(
                        "recc::bad-sampler",
                        format!("more than one input holds a `{domain_name}`: {}", names.join(", ")),
                        s.dist.span,
                    )
                    .label("which one makes a pair observed?")
                    .with_help("an unobserved sum needs the examples' pairs to have one member of the domain"),
                );
                return;
            }
        };
        let env = Env::default().bind(
            &s.var.name,
            TExpr {
                kind: TExprKind::Input(over),
                ty: Ty::Index(domain),
                span: s.var.span,
            },
        );
        let Some(e) = self.expr(&env, expr) else {
            return;
        };
        // The members the term reads besides the summed one: exactly one,
        // of another domain, and no data (an unobserved pair has none).
        let mut read: Vec<(InputId, Span)> = Vec::new();
        let mut stack = vec![&e];
        while let Some(x) = stack.pop() {
            if let TExprKind::Input(k) = x.kind {
                if k != over && !read.iter().any(|(r, _)| *r == k) {
                    read.push((k, x.span));
                }
            }
            stack.extend(children(x));
        }
        read.sort_by_key(|(_, sp)| sp.start);
        let mut by = None;
        for (k, at) in read {
            let input = &self.inputs[k.index()];
            match input.kind {
                InputKind::Index(d) if d != domain && by.is_none() => by = Some(k),
                InputKind::Index(d) if d != domain => {
                    self.report(
                        Diagnostic::error(
                            "recc::bad-sampler",
                            format!(
                                "an unobserved pair has two members; this term also reads `{}`",
                                input.name
                            ),
                            at,
                        )
                        .label("a third member")
                        .with_help("read one member besides the summed one, e.g. `sq(R(u, j))`"),
                    );
                    return;
                }
                _ => {
                    let what = match input.kind {
                        InputKind::Real => "a number",
                        InputKind::Index(_) => "the summed domain's member",
                        InputKind::Bag(_) | InputKind::History(_) => "a bag",
                    };
                    self.report(
                        Diagnostic::error(
                            "recc::bad-sampler",
                            format!("`{}` has no value for a pair without an example", input.name),
                            at,
                        )
                        .label(format!("{what} of the example"))
                        .with_help("an unobserved pair has only its two members: keep the data in the observed term"),
                    );
                    return;
                }
            }
        }
        let Some(by) = by else {
            self.report(
                Diagnostic::error(
                    "recc::bad-sampler",
                    format!("the term reads no member to pair with the `{domain_name}`"),
                    expr.span,
                )
                .label("one member of a pair")
                .with_help("read the other member too, e.g. `sq(R(u, j))` for users and items"),
            );
            return;
        };
        let Some(neg) = self.node(
            TExprKind::Unary(UnaryFn::Neg, Box::new(e.clone())),
            e.ty,
            e.span,
        ) else {
            return;
        };
        let before = self.terms.len();
        self.term(TermKind::Loss, Some(neg), span);
        if self.terms.len() > before {
            self.unobserved.push(UnobservedTerm {
                expr: e,
                over,
                by,
                span: s.span,
            });
        }
    }

    /// Check `f` once for every combination of the samplers' draws and add
    /// the results: `loss ... where j ~ negative(item, 5)` counts five times.
    fn with_samplers(
        &mut self,
        env: &Env,
        samplers: &[ast::Sampler],
        mut f: impl FnMut(&mut Self, &Env) -> Option<TExpr>,
    ) -> Option<TExpr> {
        let mut bound = vec![env.clone()];
        for s in samplers {
            let id = self.sampler(s)?;
            let count = self.samplers[id.index()].count;
            let domain = self.samplers[id.index()].domain;
            if bound.len() * count > 64 {
                self.error(
                    "recc::bad-sampler",
                    "more than 64 combinations of negatives in one term",
                    s.span,
                    "too many draws",
                );
                return None;
            }
            bound = bound
                .iter()
                .flat_map(|e| {
                    (0..count).map(move |k| {
                        e.bind(
                            &s.var.name,
                            TExpr {
                                kind: TExprKind::Negative {
                                    sampler: id,
                                    draw: k as u32,
                                },
                                ty: Ty::Index(domain),
                                span: s.var.span,
                            },
                        )
                    })
                })
                .collect();
        }
        let mut total: Option<TExpr> = None;
        for env in &bound {
            let e = f(self, env)?;
            total = Some(match total {
                None => e,
                Some(t) => {
                    let span = t.span;
                    self.node(
                        TExprKind::Binary(BinaryFn::Add, Box::new(t), Box::new(e)),
                        Ty::scalar(),
                        span,
                    )?
                }
            });
        }
        total
    }

    fn sampler(&mut self, s: &ast::Sampler) -> Option<SamplerId> {
        if s.dist.name.name != "negative" {
            let mut d = Diagnostic::error(
                "recc::bad-sampler",
                format!("unknown sampler `{}`", s.dist.name.name),
                s.dist.name.span,
            )
            .label("unknown sampler");
            d = match closest(&s.dist.name.name, ["negative", UNOBSERVED]) {
                Some(c) => d.with_help(format!("did you mean `{c}`?")),
                None => d.with_help(
                    "negatives are drawn with `negative(DOMAIN[, COUNT][, popularity])`",
                ),
            };
            self.report(d);
            return None;
        }
        if let Some((sym, first)) = self.globals.get(&s.var.name) {
            let what = match sym {
                Symbol::Input(_) => "an input",
                Symbol::Param(_) => "a param",
                Symbol::Def(_) => "a definition",
                Symbol::Invalid => "a declaration",
            };
            let first = *first;
            self.report(
                Diagnostic::error(
                    "recc::duplicate",
                    format!("`{}` already names {what}", s.var.name),
                    s.var.span,
                )
                .label("choose another name for the negative")
                .with_secondary(first, "defined here"),
            );
            return None;
        }
        let Some(first) = s.dist.args.first() else {
            self.error(
                "recc::arity",
                "`negative` needs the domain to sample from",
                s.dist.span,
                "e.g. negative(item)",
            );
            return None;
        };
        let ExprKind::Name(domain_name) = &first.kind else {
            self.error(
                "recc::bad-sampler",
                "expected a domain name",
                first.span,
                "e.g. `item`",
            );
            return None;
        };
        let Some(domain) = self.find_domain(&domain_name.name) else {
            self.unknown_domain(domain_name, "negative sampling");
            return None;
        };
        let mut count = 1;
        let mut popularity = false;
        for a in &s.dist.args[1..] {
            match &a.kind {
                ExprKind::Number(n)
                    if n.fract() == 0.0 && *n >= 1.0 && *n <= MAX_NEGATIVES as f64 =>
                {
                    count = *n as usize
                }
                ExprKind::Number(n) => {
                    self.report(
                        Diagnostic::error(
                            "recc::bad-sampler",
                            format!("the number of negatives must be a whole number from 1 to {MAX_NEGATIVES}"),
                            a.span,
                        )
                        .label(format!("{n} negatives")),
                    );
                    return None;
                }
                ExprKind::Name(n) if n.name == "popularity" => popularity = true,
                ExprKind::Name(n) if n.name == "uniform" => popularity = false,
                _ => {
                    self.report(
                        Diagnostic::error("recc::bad-sampler", "unexpected argument to `negative`", a.span)
                            .label("not a count or `popularity`")
                            .with_help(format!(
                                "negative(DOMAIN[, COUNT][, popularity]) with COUNT from 1 to {MAX_NEGATIVES}"
                            )),
                    );
                    return None;
                }
            }
        }
        self.samplers.push(Sampler {
            name: s.var.name.clone(),
            domain,
            count,
            popularity,
            span: s.span,
        });
        Some(SamplerId(self.samplers.len() as u32 - 1))
    }

    fn likelihood(&mut self, env: &Env, target: &Ident, dist: &ast::Dist) -> Option<TExpr> {
        let target_expr = Expr {
            kind: ExprKind::Name(target.clone()),
            span: target.span,
        };
        let t = self.expr(env, &target_expr)?;
        let t = self.expect_value(t)?;
        let real_input = match t.kind {
            TExprKind::Input(i) if self.inputs[i.index()].kind == InputKind::Real => Some(i),
            _ => None,
        };
        let (def, args) = self.distribution_args(env, t, dist, "likelihood")?;
        if let Some(input) = real_input {
            let is_normal =
                dist.name.name == "normal" && self.defs[def.0].module == Some(stdlib::LIKELIHOODS);
            let scale = match &args[..] {
                [_, _, s] if is_normal => Some(s),
                _ => None,
            };
            // The scale must be computable for a row whose target is unknown.
            let usable = scale.filter(|s| {
                s.ty == Ty::scalar()
                    && !mentions(s, &|k| {
                        matches!(k, TExprKind::Negative { .. }) || *k == TExprKind::Input(input)
                    })
            });
            self.likelihood_scales.push(usable.cloned());
        }
        self.instantiate(def, args, dist.span)
    }

    /// The recorded noise scale: only when the model has exactly one
    /// likelihood on a `real` input, since two would not say which one
    /// describes the target.
    fn noise_scale(&mut self) -> Option<TExpr> {
        match std::mem::take(&mut self.likelihood_scales).as_mut_slice() {
            [one] => one.take(),
            _ => None,
        }
    }

    /// `X ~ D(args)` → `D_nll(X, args...)`.
    fn apply_distribution(
        &mut self,
        env: &Env,
        target: TExpr,
        dist: &ast::Dist,
        what: &str,
    ) -> Option<TExpr> {
        let (def, args) = self.distribution_args(env, target, dist, what)?;
        self.instantiate(def, args, dist.span)
    }

    /// The `D_nll` behind `X ~ D(args)` and its checked arguments, `X` first.
    fn distribution_args(
        &mut self,
        env: &Env,
        target: TExpr,
        dist: &ast::Dist,
        what: &str,
    ) -> Option<(DefId, Vec<TExpr>)> {
        let fn_name = format!("{}_nll", dist.name.name);
        let def = match self.globals.get(&fn_name) {
            Some((Symbol::Def(d), _)) => Some(*d),
            _ => self
                .stdlib_fns
                .get(fn_name.as_str())
                .copied()
                .filter(|d| self.defs[d.0].module == Some(stdlib::LIKELIHOODS)),
        };
        let Some(def) = def else {
            let known: Vec<&str> = self
                .stdlib_fns
                .keys()
                .filter_map(|k| k.strip_suffix("_nll"))
                .collect();
            let mut known_sorted = known.clone();
            known_sorted.sort_unstable();
            let mut d = Diagnostic::error(
                "recc::unknown-distribution",
                format!("unknown distribution `{}` in a {what}", dist.name.name),
                dist.name.span,
            )
            .label("unknown distribution");
            d = match closest(&dist.name.name, known) {
                Some(c) => d.with_help(format!("did you mean `{c}`?")),
                None => d.with_help(format!(
                    "known: {} (or define `fn {fn_name}(x, ...)`)",
                    known_sorted.join(", ")
                )),
            };
            self.report(d);
            return None;
        };
        let expected = self.defs[def.0]
            .params
            .map_or(0, <[Ident]>::len)
            .saturating_sub(1);
        if dist.args.len() != expected {
            let names: Vec<&str> = self.defs[def.0]
                .params
                .unwrap_or(&[])
                .iter()
                .skip(1)
                .map(|p| p.name.as_str())
                .collect();
            self.error(
                "recc::arity",
                format!(
                    "`{}` takes {expected} argument{} ({}), found {}",
                    dist.name.name,
                    plural(expected),
                    names.join(", "),
                    dist.args.len()
                ),
                dist.span,
                "wrong number of arguments",
            );
            return None;
        }
        let mut args = vec![target];
        for a in &dist.args {
            args.push(self.expr(env, a)?);
        }
        Some((def, args))
    }

    /// A prior's term; with `once`, weighted so that it counts once per row
    /// per epoch instead of once per example.
    fn prior(&mut self, target: &Expr, dist: &ast::Dist, once: Option<Span>) -> Option<TExpr> {
        let env = Env::default();
        let t = self.expr(&env, target)?;
        let e = self.prior_term(&env, target, &t, dist)?;
        let Some(once) = once else { return Some(e) };
        let counted_by = match &t.kind {
            TExprKind::Global(_) => None,
            TExprKind::Row { index, .. } => match index.kind {
                TExprKind::Input(i)
                    if matches!(self.inputs[i.index()].kind, InputKind::Index(_)) =>
                {
                    Some(i)
                }
                _ => {
                    let what = match (&index.kind, index.ty) {
                        (TExprKind::Shift { .. }, _) => "a shifted index",
                        (_, Ty::Bag(..)) => "a bag: one row per member",
                        _ => "not an index input",
                    };
                    self.report(
                        Diagnostic::error(
                            "recc::prior-once",
                            "`once` needs the row to be looked up by an index input",
                            index.span,
                        )
                        .label(what)
                        .with_secondary(once, "counts the row's training examples")
                        .with_help("write the prior on the row an input names, e.g. `prior p[u] ~ normal(0, 1) once` with `input u: user`"),
                    );
                    return None;
                }
            },
            _ => return None,
        };
        let weight = self.node(TExprKind::InverseCount(counted_by), Ty::scalar(), once)?;
        let span = e.span;
        self.node(
            TExprKind::Binary(BinaryFn::Mul, Box::new(weight), Box::new(e)),
            Ty::scalar(),
            span,
        )
    }

    fn prior_term(
        &mut self,
        env: &Env,
        target: &Expr,
        t: &TExpr,
        dist: &ast::Dist,
    ) -> Option<TExpr> {
        let t = t.clone();
        let (param, index) = match &t.kind {
            TExprKind::Global(p) => (*p, None),
            TExprKind::Row { param, index } => (*param, Some(index.clone())),
            _ => {
                let what = match &target.kind {
                    ExprKind::Name(n) | ExprKind::Index { table: n, .. } => {
                        match self.globals.get(&n.name) {
                            Some((Symbol::Input(_), _)) => format!("`{}` is an input", n.name),
                            Some((Symbol::Def(_), _)) => format!("`{}` is a definition", n.name),
                            _ => "this is not a parameter".to_string(),
                        }
                    }
                    _ => "this is an expression".to_string(),
                };
                self.report(
                    Diagnostic::error("recc::prior-target", "a prior must be on a parameter", target.span)
                        .label(what)
                        .with_help("write `prior p[u] ~ normal(0, 0.1)` for a table `p`, or `prior b ~ normal(0, 1)` for a global"),
                );
                return None;
            }
        };
        if self.params[param.index()].variational.is_some() {
            if dist.name.name != "normal" || dist.args.len() != 2 {
                self.report(
                    Diagnostic::error(
                        "recc::prior-variational",
                        format!("the prior of variational `{}` must be `normal(mean, std)`", self.params[param.index()].name),
                        dist.span,
                    )
                    .label("not normal(mean, std)")
                    .with_help("a variational row's prior becomes a closed-form KL divergence, known for the normal"),
                );
                return None;
            }
            let mean = self.expr(env, &dist.args[0])?;
            let std = self.expr(env, &dist.args[1])?;
            let mean = self.expect_value(mean)?;
            let std = self.expect_value(std)?;
            let kl = self.node(
                TExprKind::Kl {
                    param,
                    index,
                    mean: Box::new(mean),
                    std: Box::new(std),
                },
                Ty::scalar(),
                t.span,
            )?;
            return self.reduce_bag(kl);
        }
        let mut e = self.apply_distribution(env, t, dist, "prior")?;
        e = self.reduce_bag(e)?;
        // A random-walk prior `n[t] ~ normal(n[t - 1], s)` has no neighbour at
        // the start of the domain: the term is switched off there.
        let mut masks = Vec::new();
        find_shift_nodes(&e, &mut masks);
        masks.dedup();
        for m in masks {
            let span = m.span;
            let mask = self.node(TExprKind::InRange(Box::new(m)), Ty::scalar(), span)?;
            let espan = e.span;
            e = self.node(
                TExprKind::Binary(BinaryFn::Mul, Box::new(mask), Box::new(e)),
                Ty::scalar(),
                espan,
            )?;
        }
        Some(e)
    }

    fn reduce_bag(&mut self, e: TExpr) -> Option<TExpr> {
        if let Ty::Value {
            shape,
            bag: Some(_),
        } = e.ty
        {
            let span = e.span;
            return self.node(
                TExprKind::Sum(Box::new(e)),
                Ty::Value { shape, bag: None },
                span,
            );
        }
        Some(e)
    }

    // ---------------------------------------------------------------- score

    /// The prediction is the `let` named `R`, applied to the inputs its
    /// arguments name.
    fn score(&mut self) {
        let def = match self.globals.get("R").copied() {
            Some((Symbol::Def(def), _)) => def,
            Some(_) => return,
            None => {
                let span = self.model_span.unwrap_or(Span::new(self.root, 0, 0));
                self.warn(
                    Diagnostic::error("recc::no-score", "the model has no score `R`", span)
                        .label("nothing to predict with")
                        .with_help("name the prediction `let R(u, i) = ...` so it can rank, predict and be evaluated"),
                );
                return;
            }
        };
        if self.recursive.contains(&def) {
            return;
        }
        let span = self.defs[def.0].name.span;
        let Some(args) = self.input_args(def) else {
            self.warn(
                Diagnostic::error("recc::no-score", "the arguments of `R` do not name inputs", span)
                    .label("cannot be applied to an example")
                    .with_help("write `let R(u, i)` with the index inputs the prediction takes, e.g. `input u: user`"),
            );
            return;
        };
        let Some(e) = self.instantiate(def, args, span) else {
            return;
        };
        if self.check_depth(&e, span).is_none() {
            return;
        }
        if e.ty == Ty::scalar() {
            self.score = Some(e);
        } else {
            let d = Diagnostic::error(
                "recc::score-not-scalar",
                format!("the score `R` must be one number, found {}", self.describe(e.ty)),
                span,
            )
            .label("the model's prediction")
            .with_help("`R` is what the model predicts for one example; reduce it with sum(...) or dot(...)");
            self.report(d);
        }
    }

    /// Arguments binding a definition's parameters to the inputs of the same
    /// names, if every parameter names an input.
    fn input_args(&mut self, def: DefId) -> Option<Vec<TExpr>> {
        let params = self.defs[def.0].params.unwrap_or(&[]);
        let mut args = Vec::new();
        for p in params {
            match self.globals.get(&p.name).copied() {
                Some((Symbol::Input(id), _)) => args.push(self.input_expr(id, p.span)),
                _ => return None,
            }
        }
        Some(args)
    }

    fn input_expr(&mut self, id: InputId, span: Span) -> TExpr {
        self.used_inputs.insert(id);
        let ty = match self.inputs[id.index()].kind {
            InputKind::Real => Ty::scalar(),
            InputKind::Index(d) => Ty::Index(d),
            InputKind::Bag(d) | InputKind::History(d) => Ty::Bag(id, d),
        };
        TExpr {
            kind: TExprKind::Input(id),
            ty,
            span,
        }
    }

    /// Check definitions no term used, so their mistakes are still reported.
    fn unused_definitions(&mut self) {
        for i in 0..self.defs.len() {
            let def = DefId(i);
            if self.defs[i].module.is_some()
                || self.expanded.contains(&def)
                || self.recursive.contains(&def)
            {
                continue;
            }
            if self.defs[i].kind == DefKind::Fn {
                continue;
            }
            if let Some(args) = self.input_args(def) {
                let span = self.defs[i].name.span;
                let _ = self.instantiate(def, args, span);
            }
            let name = self.defs[i].name;
            self.warn(
                Diagnostic::error(
                    "recc::unused",
                    format!("`{}` is never used", name.name),
                    name.span,
                )
                .label("defined here")
                .with_help("use it in a loss, or remove it"),
            );
        }
    }

    /// Warn of inputs and parameters nothing reads: an input still has to
    /// be found in the data, and a parameter is stored and never trained.
    /// Checked after every definition, used or not, has been expanded.
    fn unused_declarations(&mut self) {
        if self.diags.iter().any(Diagnostic::is_error) {
            return;
        }
        for (k, input) in self.inputs.iter().enumerate() {
            if self.used_inputs.contains(&InputId(k as u32)) || input.span.file != self.root {
                continue;
            }
            let d = Diagnostic::error(
                "recc::unused-input",
                format!("input `{}` is never used", input.name),
                input.span,
            )
            .label("declared here")
            .with_help(
                "use it in the model, or remove it: the data must still have a column for it",
            );
            self.diags.push(Diagnostic {
                severity: Severity::Warning,
                ..d
            });
        }
        for (k, param) in self.params.iter().enumerate() {
            if self.used_params.contains(&ParamId(k as u32)) || param.span.file != self.root {
                continue;
            }
            let d = Diagnostic::error(
                "recc::unused-param",
                format!("parameter `{}` is never used", param.name),
                param.span,
            )
            .label("declared here")
            .with_help("use it in the score or a loss, or remove it: nothing would train it");
            self.diags.push(Diagnostic {
                severity: Severity::Warning,
                ..d
            });
        }
    }

    // ---------------------------------------------------------- expressions

    /// Build a node, counting it against the expansion budget.
    fn node(&mut self, kind: TExprKind, ty: Ty, span: Span) -> Option<TExpr> {
        self.spend(1, span)?;
        Some(TExpr { kind, ty, span })
    }

    fn spend(&mut self, work: usize, span: Span) -> Option<()> {
        if self.out_of_budget {
            return None;
        }
        self.work += work;
        if self.work > MAX_WORK {
            self.out_of_budget = true;
            let d = match self.outermost_user_frame() {
                Some(outer) => {
                    // Blame the outermost definition copied more than once:
                    // that is where the copies start to multiply.
                    let k = (outer..self.stack.len())
                        .find(|&k| self.expansions_of(self.stack[k].def) > 1)
                        .unwrap_or(outer);
                    let name = self.stack[k].name.clone();
                    let copies = self.expansions_of(self.stack[k].def);
                    let chain = self.expansion_chain(outer, None);
                    let label = if copies > 1 {
                        format!("`{name}` is copied at each use ({copies} copies so far)")
                    } else {
                        format!("expanding `{name}`")
                    };
                    Diagnostic::error(
                        "recc::too-large",
                        format!(
                            "expanding `{name}` makes the model more than {MAX_WORK} operations"
                        ),
                        self.stack[k].call,
                    )
                    .label(label)
                    .with_help(format!(
                        "each use of a definition copies its body, so nested uses multiply \
                         ({chain}); use each definition fewer times, or nest fewer of them"
                    ))
                }
                None => Diagnostic::error(
                    "recc::too-large",
                    format!("the model expands to more than {MAX_WORK} operations"),
                    span,
                )
                .label("while expanding this")
                .with_help("definitions are expanded where they are used; nested ones multiply"),
            };
            self.report(d);
            return None;
        }
        Some(())
    }

    fn expansions_of(&self, def: DefId) -> usize {
        self.expansions.get(&def).copied().unwrap_or(0)
    }

    /// The first frame of the expansion stack that expands one of the
    /// user's definitions, used from the user's file.
    fn outermost_user_frame(&self) -> Option<usize> {
        self.stack
            .iter()
            .position(|f| self.is_user_file(f.call.file) && self.defs[f.def.0].module.is_none())
    }

    /// The definitions being expanded from frame `from` inwards, then
    /// `next`: `a3 → a2 → a1`, the middle left out when long.
    fn expansion_chain(&self, from: usize, next: Option<&str>) -> String {
        let names: Vec<String> = self.stack[from..]
            .iter()
            .map(|f| f.name.as_str())
            .chain(next)
            .map(|n| format!("`{n}`"))
            .collect();
        if names.len() <= 8 {
            names.join(" → ")
        } else {
            format!(
                "{} → … → {}",
                names[..4].join(" → "),
                names[names.len() - 3..].join(" → ")
            )
        }
    }

    /// Expanded definitions nest: every later stage and every user of the
    /// model walks its expressions recursively, so their depth is bounded.
    fn check_depth(&mut self, e: &TExpr, span: Span) -> Option<()> {
        let depth = texpr_depth(e);
        if depth <= MAX_EXPR_DEPTH {
            return Some(());
        }
        self.report(
            Diagnostic::error(
                "recc::too-large",
                format!(
                    "this expression nests {depth} operations deep once its definitions are expanded; at most {MAX_EXPR_DEPTH} are allowed"
                ),
                span,
            )
            .label("too deep")
            .with_help("long chains of definitions that each extend the one before nest deeply: sum the pieces side by side instead"),
        );
        None
    }

    /// Native code computes in f32: a constant outside its range would be
    /// infinite or zero there while the evaluator, in f64, kept its value.
    fn check_f32_range(&mut self, v: f64, span: Span) -> Option<()> {
        let magnitude = v.abs();
        let (problem, label) = if !v.is_finite() || magnitude > f64::from(f32::MAX) {
            ("too large", "infinite in f32")
        } else if magnitude != 0.0 && magnitude < f64::from(f32::MIN_POSITIVE) {
            ("too small", "zero or imprecise in f32")
        } else {
            return Some(());
        };
        self.report(
            Diagnostic::error(
                "recc::bad-number",
                format!("this number is {problem} for f32, which training computes in"),
                span,
            )
            .label(label)
            .with_help("numbers other than 0 must lie between about 1.2e-38 and 3.4e38 in size; write 0 for a vanishing constant"),
        );
        None
    }

    fn describe(&self, ty: Ty) -> String {
        match ty {
            Ty::Value { shape, bag: None } => shape.to_string(),
            Ty::Value {
                shape,
                bag: Some(b),
            } => {
                format!(
                    "{shape} for each member of `{}`",
                    self.inputs[b.index()].name
                )
            }
            Ty::Index(d) => format!("an index of {}", self.domains[d.index()].name),
            Ty::Bag(_, d) => format!("a bag of {}", self.domains[d.index()].name),
        }
    }

    /// Require a number-valued expression; an index or bag used as a number
    /// is a mistake with a specific hint.
    fn expect_value(&mut self, e: TExpr) -> Option<TExpr> {
        match e.ty {
            Ty::Value { .. } => Some(e),
            Ty::Index(_) | Ty::Bag(..) => {
                let d = Diagnostic::error(
                    "recc::index-as-value",
                    format!("{} is not a number", self.describe(e.ty)),
                    e.span,
                )
                .label(self.describe(e.ty))
                .with_help("indices select rows: look one up with it, e.g. `p[u]`");
                self.report(d);
                None
            }
        }
    }

    fn expr(&mut self, env: &Env, e: &Expr) -> Option<TExpr> {
        match &e.kind {
            ExprKind::Number(v) => {
                self.check_f32_range(*v, e.span)?;
                self.node(TExprKind::Const(*v), Ty::scalar(), e.span)
            }
            ExprKind::Name(id) => self.name(env, id),
            ExprKind::Index { table, index } => self.index(env, table, index, e.span),
            ExprKind::Call { func, args } => self.call(env, func, args, e.span),
            ExprKind::Comprehension {
                func,
                body,
                sampler,
            } => self.comprehension(env, func, body, sampler, e.span),
            ExprKind::Neg(inner) => {
                let x = self.expr(env, inner)?;
                let x = self.expect_value(x)?;
                let ty = x.ty;
                self.node(TExprKind::Unary(UnaryFn::Neg, Box::new(x)), ty, e.span)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let a = self.expr(env, lhs);
                let b = self.expr(env, rhs);
                let (a, b) = (a?, b?);
                self.binary(*op, a, b, e.span)
            }
        }
    }

    fn name(&mut self, env: &Env, id: &Ident) -> Option<TExpr> {
        if let Some(v) = env.local(&id.name) {
            // Pay before copying: a large argument used many times is an
            // expansion like any other.
            self.spend(texpr_size(v), id.span)?;
            let mut v = v.clone();
            // Inside the user's own definitions, point at the use; inside the
            // stdlib, keep pointing at the user's argument. What was typed at
            // a prompt keeps its own span: that is how an index position
            // finds a literal, and where a report about it belongs.
            let from_prompt = self.probe.as_ref().is_some_and(|p| p.file == v.span.file);
            if id.span.file == self.root && !from_prompt {
                v.span = id.span;
            }
            return Some(v);
        }
        if let Some(f) = &env.in_fn {
            if self.globals.contains_key(&id.name) || !env.in_stdlib {
                let f = f.clone();
                self.fn_sees_only_args(id, &f);
                return None;
            }
        }
        match self.globals.get(&id.name).copied() {
            Some((Symbol::Invalid, _)) => None,
            Some((Symbol::Input(i), _)) => Some(self.input_expr(i, id.span)),
            Some((Symbol::Param(p), _)) => {
                self.used_params.insert(p);
                let param = &self.params[p.index()];
                match param.domain {
                    None => {
                        let ty = Ty::Value {
                            shape: param.shape,
                            bag: None,
                        };
                        self.node(TExprKind::Global(p), ty, id.span)
                    }
                    Some(d) => {
                        let domain = self.domains[d.index()].name.clone();
                        let example = self
                            .inputs
                            .iter()
                            .find(|i| i.kind == InputKind::Index(d))
                            .or_else(|| {
                                self.inputs.iter().find(|i| {
                                    matches!(i.kind, InputKind::Bag(b) | InputKind::History(b) if b == d)
                                })
                            })
                            .map_or("x".to_string(), |i| i.name.clone());
                        self.report(
                            Diagnostic::error(
                                "recc::missing-index",
                                format!("`{}` is a table with one row per {domain}", id.name),
                                id.span,
                            )
                            .label("needs an index")
                            .with_help(if self.probe.is_some() {
                                format!("look a row up by a raw {domain} id or a quoted label, e.g. `{}[42]`", id.name)
                            } else {
                                format!("did you mean `{}[{example}]`?", id.name)
                            }),
                        );
                        None
                    }
                }
            }
            Some((Symbol::Def(d), _)) => {
                let def = &self.defs[d.0];
                match (def.kind, def.params) {
                    (DefKind::Let, None) => self.instantiate(d, Vec::new(), id.span),
                    (_, params) => {
                        let n = params.map_or(0, <[Ident]>::len);
                        let names: Vec<&str> = params
                            .unwrap_or(&[])
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect();
                        let d = Diagnostic::error(
                            "recc::arity",
                            format!("`{}` takes {n} argument{}", id.name, plural(n)),
                            id.span,
                        )
                        .label("used without arguments")
                        .with_help(format!(
                            "call it: `{}({})`",
                            id.name,
                            names.join(", ")
                        ));
                        self.report(d);
                        None
                    }
                }
            }
            None => {
                self.unknown_name(env, id);
                None
            }
        }
    }

    fn fn_sees_only_args(&mut self, id: &Ident, f: &str) {
        self.report(
            Diagnostic::error(
                "recc::fn-captures",
                format!("fn `{f}` uses `{}`, which is not one of its arguments", id.name),
                id.span,
            )
            .label("not an argument")
            .with_help(format!(
                "a fn sees only its arguments; pass `{}` in, or use `let` for definitions over the model",
                id.name
            )),
        );
    }

    fn visible_names<'s>(&'s self, env: &'s Env) -> Vec<&'s str> {
        let mut names: Vec<&str> = env.locals.iter().map(|(n, _)| n.as_str()).collect();
        if env.in_fn.is_none() {
            names.extend(self.globals.keys().map(String::as_str));
        }
        names
    }

    fn unknown_name(&mut self, env: &Env, id: &Ident) {
        // A name used bare is a value: a definition that takes arguments
        // (`R` for `r`) is no fix for it.
        let takes_arguments = |name: &str| match self.globals.get(name) {
            Some((Symbol::Def(d), _)) => self.defs[d.0].params.is_some_and(|p| !p.is_empty()),
            _ => false,
        };
        let names: Vec<&str> = self
            .visible_names(env)
            .into_iter()
            .filter(|n| !takes_arguments(n))
            .collect();
        let mut d = Diagnostic::error(
            "recc::unknown-name",
            format!("unknown name `{}`", id.name),
            id.span,
        )
        .label("not defined");
        if let Some(c) = closest(&id.name, names) {
            d = d.with_help(format!("did you mean `{c}`?"));
        } else if self.find_domain(&id.name).is_some() {
            d = d.with_help(format!(
                "`{}` is a domain; use an input that ranges over it",
                id.name
            ));
        } else if env.in_fn.is_none() {
            d = d.with_help(format!(
                "declare it: `input {0}: real` for a number each example has, or `param {0}: real` \
                 for one to learn",
                id.name
            ));
        }
        self.report(d);
    }

    fn index(&mut self, env: &Env, table: &Ident, index: &Expr, span: Span) -> Option<TExpr> {
        let param = match (
            env.local(&table.name),
            self.globals.get(&table.name).copied(),
        ) {
            (None, Some((Symbol::Param(p), _))) if env.in_fn.is_none() => {
                self.used_params.insert(p);
                p
            }
            (None, Some((Symbol::Invalid, _))) => return None,
            (None, _) if env.in_fn.is_some() => {
                let f = env.in_fn.clone().unwrap_or_default();
                self.fn_sees_only_args(table, &f);
                return None;
            }
            (None, None) => {
                let params: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
                let mut d = Diagnostic::error(
                    "recc::unknown-name",
                    format!("unknown parameter `{}`", table.name),
                    table.span,
                )
                .label("not defined");
                if let Some(c) = closest(&table.name, params) {
                    d = d.with_help(format!("did you mean `{c}`?"));
                } else {
                    d = d.with_help(format!(
                        "declare it: `param {}[DOMAIN]: vec(K)`",
                        table.name
                    ));
                }
                self.report(d);
                return None;
            }
            _ => {
                self.report(
                    Diagnostic::error(
                        "recc::not-a-table",
                        format!("cannot index `{}`: only params have rows", table.name),
                        table.span,
                    )
                    .label("not a param")
                    .with_help("index a table param declared as `param NAME[DOMAIN]: ...`"),
                );
                return None;
            }
        };
        let ix = self.expr(env, index)?;
        let p = &self.params[param.index()];
        let Some(domain) = p.domain else {
            let d = Diagnostic::error(
                "recc::not-a-table",
                format!("`{}` is a global parameter: it has no rows", table.name),
                span,
            )
            .label("global")
            .with_help(format!(
                "use `{}` alone, or declare `param {}[DOMAIN]: ...`",
                table.name, table.name
            ))
            .with_secondary(p.span, "declared without a domain");
            self.report(d);
            return None;
        };
        let shape = p.shape;
        let ix = self.probe_index(ix, domain);
        let (bag, found) = match ix.ty {
            Ty::Index(d) => (None, d),
            Ty::Bag(b, d) => (Some(b), d),
            Ty::Value { .. } => {
                let d = Diagnostic::error(
                    "recc::index-not-index",
                    format!(
                        "`{}` must be indexed by {}, found a number",
                        table.name,
                        article(&self.domains[domain.index()].name)
                    ),
                    ix.span,
                )
                .label(self.describe(ix.ty))
                .with_help(if self.probe.is_some() {
                    "at the prompt, index with a raw id such as `42` or a quoted label such as `\"Star Wars (1977)\"`"
                } else {
                    "index with an input such as `u`, a negative such as `j`, or a bag"
                });
                self.report(d);
                return None;
            }
        };
        if found != domain {
            let want = self.domains[domain.index()].name.clone();
            let got = self.domains[found.index()].name.clone();
            let suggestion = self
                .inputs
                .iter()
                .find(|i| i.kind == InputKind::Index(domain))
                .map(|i| format!("did you mean `{}[{}]`?", table.name, i.name));
            let mut d = Diagnostic::error(
                "recc::wrong-domain",
                format!(
                    "`{}` is indexed by {want} but `{}` is {}",
                    table.name,
                    index_text(index),
                    article(&got)
                ),
                ix.span,
            )
            .label(format!("{got}, expected {want}"))
            .with_secondary(
                self.params[param.index()].span,
                format!("`{}` has one row per {want}", table.name),
            );
            if let Some(s) = suggestion {
                d = d.with_help(s);
            }
            self.report(d);
            return None;
        }
        if bag.is_some() && self.params[param.index()].variational.is_some() {
            let d = Diagnostic::error(
                "recc::variational-bag",
                format!("variational `{}` cannot be looked up by a bag", table.name),
                ix.span,
            )
            .label("a bag")
            .with_secondary(self.params[param.index()].span, "declared variational")
            .with_help("look variational rows up one index at a time, e.g. `p[u]`");
            self.report(d);
            return None;
        }
        self.node(
            TExprKind::Row {
                param,
                index: Box::new(ix),
            },
            Ty::Value { shape, bag },
            span,
        )
    }

    fn call(&mut self, env: &Env, func: &Ident, args: &[Expr], span: Span) -> Option<TExpr> {
        if env.local(&func.name).is_some() {
            self.error(
                "recc::not-a-function",
                format!("`{}` is a value, not a function", func.name),
                func.span,
                "cannot be called",
            );
            return None;
        }
        let target = self.resolve_function(env, func)?;
        let mut checked = Vec::new();
        let mut failed = false;
        for a in args {
            match self.expr(env, a) {
                Some(t) => checked.push(t),
                None => failed = true,
            }
        }
        match target {
            Callee::Def(d) => {
                let def = &self.defs[d.0];
                let params = match def.params {
                    Some(p) => p,
                    None => {
                        self.report(
                            Diagnostic::error(
                                "recc::arity",
                                format!("`{}` takes no arguments", func.name),
                                span,
                            )
                            .label("called with arguments")
                            .with_help(format!("write `{}` alone", func.name)),
                        );
                        return None;
                    }
                };
                if params.len() != args.len() {
                    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
                    let d = Diagnostic::error(
                        "recc::arity",
                        format!(
                            "`{}` takes {} argument{} but {} {} given",
                            func.name,
                            params.len(),
                            plural(params.len()),
                            args.len(),
                            if args.len() == 1 { "was" } else { "were" }
                        ),
                        span,
                    )
                    .label("wrong number of arguments")
                    .with_secondary(
                        def.name.span,
                        format!("`{}({})` is defined here", func.name, names.join(", ")),
                    );
                    self.report(d);
                    return None;
                }
                if failed {
                    return None;
                }
                self.instantiate(d, checked, span)
            }
            Callee::Primitive(arity) => {
                if args.len() != arity {
                    self.error(
                        "recc::arity",
                        format!(
                            "`{}` takes {arity} argument{} but {} {} given",
                            func.name,
                            plural(arity),
                            args.len(),
                            if args.len() == 1 { "was" } else { "were" }
                        ),
                        span,
                        "wrong number of arguments",
                    );
                    return None;
                }
                if failed {
                    return None;
                }
                self.primitive(&func.name, checked, span)
            }
        }
    }

    fn resolve_function(&mut self, env: &Env, func: &Ident) -> Option<Callee> {
        if let Some(&(_, arity)) = PRIMITIVES.iter().find(|(p, _)| *p == func.name) {
            return Some(Callee::Primitive(arity));
        }
        if !env.in_stdlib {
            match self.globals.get(&func.name).copied() {
                Some((Symbol::Def(d), _)) => {
                    if env.in_fn.is_some() && self.defs[d.0].kind == DefKind::Let {
                        let f = env.in_fn.clone().unwrap_or_default();
                        self.fn_sees_only_args(func, &f);
                        return None;
                    }
                    return Some(Callee::Def(d));
                }
                Some((Symbol::Invalid, _)) => return None,
                Some((Symbol::Input(_) | Symbol::Param(_), _)) => {
                    let hint =
                        if matches!(self.globals.get(&func.name), Some((Symbol::Param(_), _))) {
                            format!("to look up a row, use brackets: `{}[...]`", func.name)
                        } else {
                            "inputs are values, not functions".to_string()
                        };
                    self.report(
                        Diagnostic::error(
                            "recc::not-a-function",
                            format!("`{}` is not a function", func.name),
                            func.span,
                        )
                        .label("cannot be called")
                        .with_help(hint),
                    );
                    return None;
                }
                None => {}
            }
        }
        if let Some(&d) = self.stdlib_fns.get(func.name.as_str()) {
            let module = self.defs[d.0].module.unwrap_or_default();
            if env.in_stdlib || self.used_modules.contains(module) {
                return Some(Callee::Def(d));
            }
            self.report(
                Diagnostic::error(
                    "recc::unknown-function",
                    format!("unknown function `{}`", func.name),
                    func.span,
                )
                .label("not in scope")
                .with_help(format!(
                    "`{}` is in stdlib.{module}: add `use stdlib.{module}`",
                    func.name
                )),
            );
            return None;
        }
        let mut candidates: Vec<&str> = PRIMITIVES.iter().map(|(p, _)| *p).collect();
        if !env.in_stdlib {
            candidates.extend(
                self.defs
                    .iter()
                    .filter(|d| d.module.is_none())
                    .map(|d| d.name.name.as_str()),
            );
        }
        candidates.extend(self.stdlib_fns.keys().copied());
        let mut d = Diagnostic::error(
            "recc::unknown-function",
            format!("unknown function `{}`", func.name),
            func.span,
        )
        .label("not defined");
        if let Some(c) = closest(&func.name, candidates) {
            let module_hint = self
                .stdlib_fns
                .get(c)
                .and_then(|d| self.defs[d.0].module)
                .filter(|m| !self.used_modules.contains(*m))
                .map(|m| format!(" (in stdlib.{m})"))
                .unwrap_or_default();
            d = d.with_help(format!("did you mean `{c}`?{module_hint}"));
        }
        self.report(d);
        None
    }

    /// Expand a definition with its arguments bound.
    fn instantiate(&mut self, def: DefId, args: Vec<TExpr>, call: Span) -> Option<TExpr> {
        if self.recursive.contains(&def) || self.failed_lets.contains(&def) {
            return None;
        }
        // Every expansion pays, even one that fails: failing ones build no
        // node, and uses of them can still multiply.
        self.spend(1, call)?;
        self.expanded.insert(def);
        *self.expansions.entry(def).or_insert(0) += 1;
        let d = &self.defs[def.0];
        let name = d.name.name.clone();
        if self.stack.len() >= MAX_DEPTH {
            self.out_of_budget = true;
            let from = self.outermost_user_frame().unwrap_or(0);
            let chain = self.expansion_chain(from, Some(&name));
            self.report(
                Diagnostic::error(
                    "recc::too-large",
                    format!("definitions nest more than {MAX_DEPTH} deep at `{name}`"),
                    call,
                )
                .label(format!("`{name}` used {MAX_DEPTH} definitions deep"))
                .with_help(format!(
                    "{chain}: compute the value with fewer definitions inside each other"
                )),
            );
            return None;
        }
        let mut env = Env {
            locals: Vec::new(),
            in_fn: (d.kind == DefKind::Fn).then(|| name.clone()),
            in_stdlib: d.module.is_some(),
        };
        for (p, a) in d.params.unwrap_or(&[]).iter().zip(args) {
            env.locals.push((p.name.clone(), Rc::new(a)));
        }
        let body = d.body;
        let no_args = d.params.is_none();
        self.stack.push(Frame { def, name, call });
        let result = self.expr(&env, body);
        self.stack.pop();
        let Some(mut result) = result else {
            // A `let` without arguments sees no locals: it fails the same way
            // at every use.
            if no_args {
                self.failed_lets.insert(def);
            }
            return None;
        };
        // Point uses of the definition at the call, not at the body.
        if body.span.file != self.root || self.defs[def.0].params.is_some() {
            result.span = call;
        }
        Some(result)
    }

    fn comprehension(
        &mut self,
        env: &Env,
        func: &Ident,
        body: &Expr,
        sampler: &ast::Sampler,
        span: Span,
    ) -> Option<TExpr> {
        let op = match func.name.as_str() {
            "sum" | "mean" => BinaryFn::Add,
            "max" => BinaryFn::Max,
            "min" => BinaryFn::Min,
            other => {
                self.report(
                    Diagnostic::error(
                        "recc::bad-comprehension",
                        format!("cannot reduce over negatives with `{other}`"),
                        func.span,
                    )
                    .label("not a reduction")
                    .with_help(
                        "use sum, mean, max or min: `max(R(u, j) for j ~ negative(item, 5))`",
                    ),
                );
                return None;
            }
        };
        let id = self.sampler(sampler)?;
        let (count, domain) = {
            let s = &self.samplers[id.index()];
            (s.count, s.domain)
        };
        let mut acc: Option<TExpr> = None;
        for k in 0..count {
            let j = TExpr {
                kind: TExprKind::Negative {
                    sampler: id,
                    draw: k as u32,
                },
                ty: Ty::Index(domain),
                span: sampler.var.span,
            };
            let e = self.expr(&env.bind(&sampler.var.name, j), body)?;
            let e = self.expect_value(e)?;
            acc = Some(match acc {
                None => e,
                Some(a) => {
                    let ty = self.broadcast(BinOp::Add, &a, &e)?;
                    self.node(TExprKind::Binary(op, Box::new(a), Box::new(e)), ty, span)?
                }
            });
        }
        let mut acc = acc?;
        if func.name == "mean" && count > 1 {
            let ty = acc.ty;
            let n = self.node(TExprKind::Const(count as f64), Ty::scalar(), span)?;
            acc = self.node(
                TExprKind::Binary(BinaryFn::Div, Box::new(acc), Box::new(n)),
                ty,
                span,
            )?;
        }
        acc.span = span;
        Some(acc)
    }

    /// The result type of an elementwise operation, or an error naming both
    /// operands' shapes.
    fn broadcast(&mut self, op: BinOp, a: &TExpr, b: &TExpr) -> Option<Ty> {
        let (Ty::Value { shape: sa, bag: ba }, Ty::Value { shape: sb, bag: bb }) = (a.ty, b.ty)
        else {
            return None;
        };
        let bag = match (ba, bb) {
            (Some(x), Some(y)) if x != y => {
                let d = Diagnostic::error(
                    "recc::bag-mismatch",
                    format!(
                        "cannot combine members of `{}` with members of `{}`",
                        self.inputs[x.index()].name,
                        self.inputs[y.index()].name
                    ),
                    a.span,
                )
                .label(self.describe(a.ty))
                .with_secondary(b.span, self.describe(b.ty))
                .with_help("reduce one of them first, e.g. with sum(...) or mean(...)");
                self.report(d);
                return None;
            }
            (x, y) => x.or(y),
        };
        let shape = if sa == sb || sb.is_scalar() {
            sa
        } else if sa.is_scalar() {
            sb
        } else {
            let verb = match op {
                BinOp::Add => "add",
                BinOp::Sub => "subtract",
                BinOp::Mul => "multiply",
                BinOp::Div => "divide",
                BinOp::MatMul => "multiply",
            };
            let (x, y) = if op == BinOp::Sub || op == BinOp::Div {
                (sb, sa)
            } else {
                (sa, sb)
            };
            let message = match op {
                BinOp::Sub => format!("cannot subtract {x} from {y}"),
                BinOp::Div => format!("cannot divide {y} by {x}"),
                _ => format!("cannot {verb} {x} and {y}"),
            };
            let d = Diagnostic::error("recc::shape-mismatch", message, a.span)
                .label(sa.to_string())
                .with_secondary(b.span, sb.to_string())
                .with_help("elementwise operations need equal shapes, or a scalar on one side");
            self.report(d);
            return None;
        };
        Some(Ty::Value { shape, bag })
    }

    fn binary(&mut self, op: BinOp, a: TExpr, b: TExpr, span: Span) -> Option<TExpr> {
        // `t - 1`: a neighbouring index.
        if let (Ty::Index(d), BinOp::Add | BinOp::Sub) = (a.ty, op) {
            if let TExprKind::Const(c) = b.kind {
                if c.fract() == 0.0 && c.abs() <= 1e6 {
                    let by = if op == BinOp::Add {
                        c as i64
                    } else {
                        -(c as i64)
                    };
                    return self.node(
                        TExprKind::Shift {
                            index: Box::new(a),
                            by,
                        },
                        Ty::Index(d),
                        span,
                    );
                }
            }
            let d = Diagnostic::error(
                "recc::index-as-value",
                format!(
                    "{} can only be shifted by a whole number",
                    self.describe(a.ty)
                ),
                b.span,
            )
            .label("not a whole-number constant")
            .with_help("write a neighbouring index as `t - 1` or `t + 1`");
            self.report(d);
            return None;
        }
        let a = self.expect_value(a);
        let b = self.expect_value(b);
        let (a, b) = (a?, b?);
        if op == BinOp::MatMul {
            return self.matvec(a, b, span);
        }
        let ty = self.broadcast(op, &a, &b)?;
        let f = match op {
            BinOp::Add => BinaryFn::Add,
            BinOp::Sub => BinaryFn::Sub,
            BinOp::Mul => BinaryFn::Mul,
            BinOp::Div => BinaryFn::Div,
            BinOp::MatMul => BinaryFn::Mul,
        };
        self.node(TExprKind::Binary(f, Box::new(a), Box::new(b)), ty, span)
    }

    fn join_bags(&mut self, a: &TExpr, b: &TExpr) -> Option<Option<InputId>> {
        let (Ty::Value { bag: ba, .. }, Ty::Value { bag: bb, .. }) = (a.ty, b.ty) else {
            return None;
        };
        match (ba, bb) {
            (Some(x), Some(y)) if x != y => {
                self.broadcast(BinOp::Add, a, b)?;
                None
            }
            (x, y) => Some(x.or(y)),
        }
    }

    fn matvec(&mut self, m: TExpr, v: TExpr, span: Span) -> Option<TExpr> {
        let (Ty::Value { shape: sm, .. }, Ty::Value { shape: sv, .. }) = (m.ty, v.ty) else {
            return None;
        };
        let rows = match (sm, sv) {
            (Shape::Mat(r, c), Shape::Vec(n)) if c == n => r,
            (Shape::Mat(_, c), Shape::Vec(n)) => {
                let d = Diagnostic::error(
                    "recc::shape-mismatch",
                    format!("cannot multiply {sm} by vec({n}): the matrix has {c} columns"),
                    m.span,
                )
                .label(sm.to_string())
                .with_secondary(v.span, sv.to_string());
                self.report(d);
                return None;
            }
            _ => {
                let d = Diagnostic::error(
                    "recc::shape-mismatch",
                    format!("`@` multiplies a matrix by a vector, found {sm} @ {sv}"),
                    m.span,
                )
                .label(format!("{sm}, expected a matrix"))
                .with_secondary(v.span, sv.to_string())
                .with_help("write `M @ v` with M: mat(R, C) and v: vec(C); `dot(a, b)` multiplies two vectors");
                self.report(d);
                return None;
            }
        };
        let bag = self.join_bags(&m, &v)?;
        self.node(
            TExprKind::MatVec(Box::new(m), Box::new(v)),
            Ty::Value {
                shape: Shape::Vec(rows),
                bag,
            },
            span,
        )
    }

    /// Report two operands whose shapes do not fit, each labelled with its shape.
    fn shape_mismatch<T>(&mut self, message: String, a: &TExpr, b: &TExpr) -> Option<T> {
        let shape = |e: &TExpr| e.ty.shape_text();
        let d = Diagnostic::error("recc::shape-mismatch", message, a.span)
            .label(shape(a))
            .with_secondary(b.span, shape(b));
        self.report(d);
        None
    }

    fn primitive(&mut self, name: &str, args: Vec<TExpr>, span: Span) -> Option<TExpr> {
        let mut values = Vec::new();
        let mut failed = false;
        for a in args {
            match self.expect_value(a) {
                Some(v) => values.push(v),
                None => failed = true,
            }
        }
        if failed {
            return None;
        }
        let shape_of = |e: &TExpr| match e.ty {
            Ty::Value { shape, .. } => shape,
            _ => Shape::Scalar,
        };
        let bag_of = |e: &TExpr| match e.ty {
            Ty::Value { bag, .. } => bag,
            _ => None,
        };
        let mut it = values.into_iter();
        let (Some(a), b, c) = (it.next(), it.next(), it.next()) else {
            return None;
        };
        let unary = |f: UnaryFn| Some(f);
        let elementwise = match name {
            "exp" => unary(UnaryFn::Exp),
            "log" => unary(UnaryFn::Log),
            "sqrt" => unary(UnaryFn::Sqrt),
            "abs" => unary(UnaryFn::Abs),
            "sigmoid" => unary(UnaryFn::Sigmoid),
            "log_sigmoid" => unary(UnaryFn::LogSigmoid),
            "softplus" => unary(UnaryFn::Softplus),
            "tanh" => unary(UnaryFn::Tanh),
            "relu" => unary(UnaryFn::Relu),
            _ => None,
        };
        if let Some(f) = elementwise {
            let ty = a.ty;
            return self.node(TExprKind::Unary(f, Box::new(a)), ty, span);
        }
        match (name, b, c) {
            ("dot", Some(b), _) => match (shape_of(&a), shape_of(&b)) {
                (Shape::Vec(n), Shape::Vec(m)) if n == m => {
                    let bag = self.join_bags(&a, &b)?;
                    self.node(
                        TExprKind::Dot(Box::new(a), Box::new(b)),
                        Ty::Value {
                            shape: Shape::Scalar,
                            bag,
                        },
                        span,
                    )
                }
                (sa, sb) => self.shape_mismatch(
                    format!("`dot` needs two vectors of one length, found {sa} and {sb}"),
                    &a,
                    &b,
                ),
            },
            ("sq", _, _) => {
                let bag = bag_of(&a);
                self.node(
                    TExprKind::Sq(Box::new(a)),
                    Ty::Value {
                        shape: Shape::Scalar,
                        bag,
                    },
                    span,
                )
            }
            ("sum" | "mean", _, _) => {
                let ty = match a.ty {
                    Ty::Value {
                        shape,
                        bag: Some(_),
                    } => Ty::Value { shape, bag: None },
                    _ => Ty::scalar(),
                };
                let kind = if name == "sum" {
                    TExprKind::Sum(Box::new(a))
                } else {
                    TExprKind::Mean(Box::new(a))
                };
                self.node(kind, ty, span)
            }
            ("max" | "min", Some(b), _) => {
                let ty = self.broadcast(BinOp::Add, &a, &b)?;
                let f = if name == "max" {
                    BinaryFn::Max
                } else {
                    BinaryFn::Min
                };
                self.node(TExprKind::Binary(f, Box::new(a), Box::new(b)), ty, span)
            }
            ("clip", Some(lo), Some(hi)) => {
                for bound in [&lo, &hi] {
                    if shape_of(bound) != Shape::Scalar || bag_of(bound).is_some() {
                        let d = Diagnostic::error(
                            "recc::shape-mismatch",
                            "the bounds of `clip` must be numbers",
                            bound.span,
                        )
                        .label(self.describe(bound.ty));
                        self.report(d);
                        return None;
                    }
                }
                let ty = a.ty;
                let upper = self.node(
                    TExprKind::Binary(BinaryFn::Min, Box::new(a), Box::new(hi)),
                    ty,
                    span,
                )?;
                self.node(
                    TExprKind::Binary(BinaryFn::Max, Box::new(upper), Box::new(lo)),
                    ty,
                    span,
                )
            }
            ("softmax", _, _) => match shape_of(&a) {
                Shape::Vec(_) => {
                    let ty = a.ty;
                    self.node(TExprKind::Softmax(Box::new(a)), ty, span)
                }
                s => {
                    let d = Diagnostic::error(
                        "recc::shape-mismatch",
                        format!("`softmax` needs a vector, found {s}"),
                        a.span,
                    )
                    .label(s.to_string());
                    self.report(d);
                    None
                }
            },
            ("concat", Some(b), _) => match (shape_of(&a), shape_of(&b)) {
                // Nested concatenations double at each level: values obey the
                // bound declared params do.
                (Shape::Vec(n), Shape::Vec(m)) if n + m > MAX_DIM => {
                    self.report(
                        Diagnostic::error(
                            "recc::too-large",
                            format!(
                                "`concat` makes a vector of {} numbers; at most {MAX_DIM} are allowed",
                                n + m
                            ),
                            span,
                        )
                        .label(format!("vec({n}) and vec({m})"))
                        .with_help("concatenate shorter vectors"),
                    );
                    None
                }
                (Shape::Vec(n), Shape::Vec(m)) => {
                    let bag = self.join_bags(&a, &b)?;
                    self.node(
                        TExprKind::Concat(Box::new(a), Box::new(b)),
                        Ty::Value {
                            shape: Shape::Vec(n + m),
                            bag,
                        },
                        span,
                    )
                }
                (sa, sb) => self.shape_mismatch(
                    format!("`concat` joins two vectors, found {sa} and {sb}"),
                    &a,
                    &b,
                ),
            },
            _ => None,
        }
    }
}

enum Callee {
    Def(DefId),
    Primitive(usize),
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn article(word: &str) -> String {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {word}")
    } else {
        format!("a {word}")
    }
}

fn index_text(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Name(n) => n.name.clone(),
        _ => "this index".into(),
    }
}

/// Names an expression refers to (calls and plain names), with their spans.
fn references<'e>(e: &'e Expr, out: &mut Vec<(&'e str, Span)>) {
    match &e.kind {
        ExprKind::Number(_) => {}
        ExprKind::Name(n) => out.push((&n.name, n.span)),
        ExprKind::Index { index, .. } => references(index, out),
        ExprKind::Call { func, args } => {
            out.push((&func.name, func.span));
            for a in args {
                references(a, out);
            }
        }
        ExprKind::Comprehension { body, .. } => references(body, out),
        ExprKind::Neg(x) => references(x, out),
        ExprKind::Binary { lhs, rhs, .. } => {
            references(lhs, out);
            references(rhs, out);
        }
    }
}

/// Every shifted index in a checked expression.
fn find_shift_nodes(e: &TExpr, out: &mut Vec<TExpr>) {
    if let TExprKind::Shift { .. } = e.kind {
        if !out.contains(e) {
            out.push(e.clone());
        }
        return;
    }
    for c in children(e) {
        find_shift_nodes(c, out);
    }
}

/// Does `e` or any sub-expression satisfy `hit`?
fn mentions(e: &TExpr, hit: &impl Fn(&TExprKind) -> bool) -> bool {
    hit(&e.kind) || children(e).into_iter().any(|c| mentions(c, hit))
}

/// The number of nodes on the longest path from `e` to a leaf.
fn texpr_depth(e: &TExpr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(e, 1)];
    while let Some((e, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        pending.extend(children(e).into_iter().map(|c| (c, depth + 1)));
    }
    deepest
}

fn texpr_size(e: &TExpr) -> usize {
    1 + children(e).iter().map(|c| texpr_size(c)).sum::<usize>()
}

/// The direct sub-expressions of a checked expression.
pub fn children(e: &TExpr) -> Vec<&TExpr> {
    match &e.kind {
        TExprKind::Const(_)
        | TExprKind::Input(_)
        | TExprKind::Negative { .. }
        | TExprKind::InverseCount(_)
        | TExprKind::Global(_) => vec![],
        TExprKind::Shift { index, .. } => vec![index],
        TExprKind::InRange(x)
        | TExprKind::Unary(_, x)
        | TExprKind::Sq(x)
        | TExprKind::Sum(x)
        | TExprKind::Mean(x)
        | TExprKind::Softmax(x) => vec![x],
        TExprKind::Row { index, .. } => vec![index],
        TExprKind::Binary(_, a, b)
        | TExprKind::Dot(a, b)
        | TExprKind::Concat(a, b)
        | TExprKind::MatVec(a, b) => {
            vec![a, b]
        }
        TExprKind::Kl {
            index, mean, std, ..
        } => {
            let mut v: Vec<&TExpr> = vec![mean, std];
            if let Some(i) = index {
                v.push(i);
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DEFAULT_BURN_IN, DEFAULT_SAMPLES, DEFAULT_SWEEPS};
    use crate::model::{FitConfig, Solver};

    const MODEL: &str = "\
use stdlib.losses
input u: user
input i: item
input r: real
param p[user]: vec(4)
param q[item]: vec(4)
let R(u, i) = dot(p[u], q[i])
loss mse(R(u, i), r)
";

    /// The fit settings of the model with `fit`, or its errors' messages.
    fn fit(block: &str) -> Result<FitConfig, Vec<String>> {
        let compiled = crate::compile("t.rec", &format!("{MODEL}{block}\n"));
        match compiled.model {
            Some(model) if !compiled.has_errors() => Ok(model.fit),
            _ => Err(compiled
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(|d| {
                    assert_eq!(d.code, "recc::bad-fit", "{}", d.message);
                    d.message.clone()
                })
                .collect()),
        }
    }

    fn solver(block: &str) -> Solver {
        match fit(block) {
            Ok(f) => f.solver,
            Err(errors) => panic!("{block}: {errors:?}"),
        }
    }

    fn errors(block: &str) -> Vec<String> {
        match fit(block) {
            Ok(f) => panic!("{block} was accepted: {f:?}"),
            Err(errors) => errors,
        }
    }

    #[test]
    fn the_solver_defaults_to_sgd_and_its_counts_to_the_documented_values() {
        assert_eq!(solver("fit { epochs: 3 }"), Solver::Sgd);
        assert_eq!(solver("fit { solver: sgd, lr: 0.1 }"), Solver::Sgd);
        assert_eq!(
            solver("fit { solver: als }"),
            Solver::Als {
                sweeps: DEFAULT_SWEEPS
            }
        );
        assert_eq!(
            solver("fit { solver: gibbs }"),
            Solver::Gibbs {
                samples: DEFAULT_SAMPLES,
                burn_in: DEFAULT_BURN_IN
            }
        );
        assert_eq!(
            (DEFAULT_SWEEPS, DEFAULT_SAMPLES, DEFAULT_BURN_IN),
            (15, 150, 50)
        );
    }

    #[test]
    fn the_order_of_keys_does_not_matter() {
        let als = Solver::Als { sweeps: 7 };
        assert_eq!(solver("fit { solver: als, sweeps: 7 }"), als);
        assert_eq!(solver("fit { sweeps: 7, solver: als }"), als);
        let gibbs = Solver::Gibbs {
            samples: 20,
            burn_in: 0,
        };
        assert_eq!(
            solver("fit { burn_in: 0, samples: 20, solver: gibbs }"),
            gibbs
        );
        let f = fit("fit { seed: 9, threads: 3, solver: gibbs, samples: 20, burn_in: 0 }");
        let Ok(f) = f else { panic!("{f:?}") };
        assert_eq!((f.seed, f.threads, f.solver), (9, 3, gibbs));
    }

    #[test]
    fn each_misplaced_option_is_refused() {
        assert_eq!(
            errors("fit { solver: gibbs, sweeps: 3 }"),
            ["`sweeps` is an option of `solver: als`, and this model is fitted with `solver: gibbs`"]
        );
        assert_eq!(
            errors("fit { samples: 3 }"),
            ["`samples` is an option of `solver: gibbs`, and this model is fitted with SGD"]
        );
        assert_eq!(
            errors("fit { burn_in: 3, solver: als }"),
            ["`burn_in` is an option of `solver: gibbs`, and this model is fitted with `solver: als`"]
        );
        for key in [
            "optimizer: adam",
            "lr: 0.1",
            "epochs: 3",
            "batch: 2",
            "early_stopping: 2",
        ] {
            let name = key.split(':').next().unwrap_or_default();
            assert_eq!(
                errors(&format!("fit {{ {key}, solver: als }}")),
                [format!(
                    "`{name}` is an option of SGD, and this model is fitted with `solver: als`"
                )]
            );
        }
    }

    #[test]
    fn bad_solvers_and_counts_are_refused() {
        assert_eq!(errors("fit { solver: gibs }"), ["unknown solver `gibs`"]);
        // An unknown solver is reported once, not again for its counts.
        assert_eq!(
            errors("fit { solver: gibs, samples: 3 }"),
            ["unknown solver `gibs`"]
        );
        assert_eq!(errors("fit { solver: 3 }"), ["expected a solver"]);
        assert_eq!(
            errors("fit { solver: als(sweeps: 3) }"),
            ["a solver takes no arguments"]
        );
        assert_eq!(
            errors("fit { solver: als, sweeps: 0 }"),
            ["expected a whole number of at least 1"]
        );
        assert_eq!(
            errors("fit { solver: gibbs, samples: 2.5 }"),
            ["expected a whole number of at least 1"]
        );
        assert_eq!(
            errors("fit { solver: gibbs, burn_in: -1 }"),
            ["expected a whole number of at least 0"]
        );
        assert_eq!(
            errors("fit { solver: als, solver: gibbs }"),
            ["fit option `solver` is given twice"]
        );
    }
}
