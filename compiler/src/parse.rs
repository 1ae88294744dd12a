//! Stage 1: source text → [`ast::File`].
//!
//! The pest grammar recognises the text; this module builds the typed AST with
//! byte spans. When the whole file fails to parse, the file is cut at the
//! lines where statements start and each piece is parsed alone, so one run
//! reports the syntax errors of every statement, not only the first.

use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser as _;
use recc_grammar::{RecParser, Rule};
use std::sync::OnceLock;

/// Brackets nested deeper than this are refused before pest sees them: the
/// recursive-descent parser would otherwise exhaust the stack.
const MAX_NESTING: usize = 64;

/// Operators one statement may hold. Expressions are trees walked
/// recursively by every stage; this keeps them shallow.
const MAX_OPERATORS: usize = 256;

/// Parse one file. Either the whole AST, or every syntax error found.
pub fn parse(file: FileId, text: &str) -> Result<File, Vec<Diagnostic>> {
    if let Some(d) = check_nesting(file, text) {
        return Err(vec![d]);
    }
    let too_long: Vec<Diagnostic> = statement_chunks(text)
        .into_iter()
        .filter_map(|(s, e)| check_operator_count(file, &text[s..e], s))
        .collect();
    if !too_long.is_empty() {
        return Err(too_long);
    }
    match RecParser::parse(Rule::file, text) {
        Ok(mut pairs) => {
            let builder = Builder { file, offset: 0 };
            let items = match pairs.next() {
                Some(file_pair) => file_pair
                    .into_inner()
                    .filter(|p| p.as_rule() != Rule::EOI)
                    .map(|p| builder.item(p))
                    .collect(),
                None => Vec::new(),
            };
            Ok(File { items })
        }
        Err(first) => {
            let mut errors = recover_statement_errors(file, text);
            if errors.is_empty() {
                errors.push(syntax_error(file, 0, &first));
            }
            Err(errors)
        }
    }
}

/// Parse each statement-sized piece of `text` alone and collect their errors.
fn recover_statement_errors(file: FileId, text: &str) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    for (start, end) in statement_chunks(text) {
        let chunk = &text[start..end];
        if chunk.trim().is_empty() {
            continue;
        }
        if let Err(e) = RecParser::parse(Rule::statement_only, chunk) {
            errors.push(syntax_error(file, start, &e));
        }
    }
    errors
}

/// Byte ranges of the pieces that start at lines opening a statement.
fn statement_chunks(text: &str) -> Vec<(usize, usize)> {
    let mut starts = vec![0];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset > 0 && opens_statement(line) {
            starts.push(offset);
        }
        offset += line.len();
    }
    let mut chunks = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let e = starts.get(k + 1).copied().unwrap_or(text.len());
        chunks.push((s, e));
    }
    chunks
}

const STATEMENT_KEYWORDS: &[&str] = &[
    "model", "use", "input", "param", "let", "fn", "loss", "prior", "penalty", "fit",
];

fn opens_statement(line: &str) -> bool {
    let t = line.trim_start();
    let word: String = t
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if word.is_empty() {
        return false;
    }
    if STATEMENT_KEYWORDS.contains(&word.as_str()) {
        return true;
    }
    // A likelihood: `r ~ normal(...)`.
    t[word.len()..].trim_start().starts_with('~')
}

fn check_operator_count(file: FileId, chunk: &str, offset: usize) -> Option<Diagnostic> {
    let code = chunk.lines().map(|l| l.split('#').next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let count = code.chars().filter(|c| matches!(c, '+' | '-' | '*' | '/' | '@')).count();
    if count <= MAX_OPERATORS {
        return None;
    }
    let end = offset + chunk.trim_end().len();
    Some(
        Diagnostic::error(
            "recc::syntax",
            format!("this statement has {count} operators; at most {MAX_OPERATORS} are allowed"),
            Span::new(file, offset, end.max(offset)),
        )
        .label("too long")
        .with_help("split it into several `let` definitions"),
    )
}

fn check_nesting(file: FileId, text: &str) -> Option<Diagnostic> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(
                        Diagnostic::error(
                            "recc::syntax",
                            format!("brackets nested more than {MAX_NESTING} deep"),
                            Span::new(file, i, i + 1),
                        )
                        .label("too deep")
                        .with_help("split the expression with `let` definitions"),
                    );
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn syntax_error(file: FileId, offset: usize, e: &pest::error::Error<Rule>) -> Diagnostic {
    let (start, end) = match e.location {
        InputLocation::Pos(p) => (p, p),
        InputLocation::Span((s, e)) => (s, e),
    };
    let (message, label) = match &e.variant {
        ErrorVariant::ParsingError {
            positives,
            negatives,
        } => {
            let mut expected: Vec<&str> = positives.iter().map(|r| describe(*r)).collect();
            expected.sort_unstable();
            expected.dedup();
            let found = found_at(e, start);
            if !expected.is_empty() {
                (
                    format!("expected {}, found {found}", join_alternatives(&expected)),
                    format!("expected {}", join_alternatives(&expected)),
                )
            } else {
                let unexpected: Vec<&str> = negatives.iter().map(|r| describe(*r)).collect();
                (
                    format!("unexpected {}", join_alternatives(&unexpected)),
                    "not allowed here".to_string(),
                )
            }
        }
        ErrorVariant::CustomError { message } => (message.clone(), String::new()),
    };
    let span = Span::new(file, offset + start, offset + end.max(start));
    let mut d = Diagnostic::error("recc::syntax", message, span).label(label);
    if let Some(h) = syntax_hint(e) {
        d = d.with_help(h);
    }
    d
}

fn found_at(e: &pest::error::Error<Rule>, pos: usize) -> String {
    let line = e.line();
    // `line()` is the whole line the error is on; find the text at the column.
    let col = match e.line_col {
        pest::error::LineColLocation::Pos((_, c)) | pest::error::LineColLocation::Span((_, c), _) => c,
    };
    let rest: String = line.chars().skip(col.saturating_sub(1)).collect();
    let rest = rest.trim_end();
    let _ = pos;
    match rest.chars().next() {
        None => "the end of the line".to_string(),
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            format!("`{word}`")
        }
        Some(c) => format!("`{c}`"),
    }
}

fn syntax_hint(e: &pest::error::Error<Rule>) -> Option<String> {
    let line = e.line().trim();
    if line.starts_with("param") && line.contains(": vector") {
        return Some("vector shapes are written `vec(K)`".into());
    }
    if line.contains("==") {
        return Some("recc has no comparisons; constraints go on params (`nonneg`, `on ball`)".into());
    }
    None
}

fn join_alternatives(items: &[&str]) -> String {
    match items {
        [] => "something else".into(),
        [one] => (*one).into(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// What a rule is called in an error message.
fn describe(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of file",
        Rule::file | Rule::statement_only => "a statement",
        Rule::model_decl => "`model`",
        Rule::use_decl => "`use`",
        Rule::input_decl => "`input`",
        Rule::param_decl => "`param`",
        Rule::let_decl => "`let`",
        Rule::fn_decl => "`fn`",
        Rule::loss_decl => "`loss`",
        Rule::likelihood_decl => "a likelihood (`r ~ normal(R, 1)`)",
        Rule::prior_decl => "`prior`",
        Rule::penalty_decl => "`penalty`",
        Rule::fit_decl => "`fit`",
        Rule::keyword => "a keyword",
        Rule::ident | Rule::domain_type | Rule::fit_name => "a name",
        Rule::path => "a module path",
        Rule::bag_type | Rule::history_type | Rule::real_type => "an input type",
        Rule::param_domain => "`[DOMAIN]`",
        Rule::real_shape | Rule::vec_shape | Rule::mat_shape => "a shape (`real`, `vec(K)`, `mat(R, C)`)",
        Rule::init_attr | Rule::variational_attr | Rule::ball_attr | Rule::nonneg_attr => {
            "a param attribute (`init`, `variational`, `on ball`, `nonneg`)"
        }
        Rule::param_list => "an argument list",
        Rule::prior_target => "a parameter row",
        Rule::where_clause => "`where`",
        Rule::sampler => "a sampler (`j ~ negative(item)`)",
        Rule::dist => "a distribution",
        Rule::fit_entry => "an option (`key: value`)",
        Rule::fit_call | Rule::signed_number => "an option value",
        Rule::expr | Rule::paren | Rule::index | Rule::call | Rule::comprehension => {
            "an expression"
        }
        Rule::add | Rule::sub | Rule::mul | Rule::div | Rule::matmul => "an operator",
        Rule::neg => "`-`",
        Rule::number => "a number",
        Rule::int => "a whole number",
        Rule::statement => "a statement",
        Rule::kw_where => "`where`",
        Rule::kw_for => "`for`",
        Rule::kw_init => "`init`",
        Rule::primary | Rule::prefix => "an expression",
        Rule::infix => "an operator",
        _ => "something else",
    }
}

fn pratt() -> &'static PrattParser<Rule> {
    static PRATT: OnceLock<PrattParser<Rule>> = OnceLock::new();
    PRATT.get_or_init(|| {
        PrattParser::new()
            .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
            .op(Op::infix(Rule::mul, Assoc::Left)
                | Op::infix(Rule::div, Assoc::Left)
                | Op::infix(Rule::matmul, Assoc::Left))
            .op(Op::prefix(Rule::neg))
    })
}

/// Turns pest pairs into AST nodes. The grammar guarantees each pair's shape,
/// so the accessors below only ever see what the rule allows.
struct Builder {
    file: FileId,
    offset: usize,
}

impl Builder {
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        Span::new(self.file, self.offset + s.start(), self.offset + s.end())
    }

    fn ident(&self, p: Pair<Rule>) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn item(&self, p: Pair<Rule>) -> Item {
        let span = self.span(&p);
        let rule = p.as_rule();
        let mut inner: Vec<Pair<Rule>> = p.into_inner().collect();
        let kind = match rule {
            Rule::model_decl => ItemKind::Model(self.ident(inner.remove(0))),
            Rule::use_decl => {
                let path = inner.remove(0);
                ItemKind::Use(path.into_inner().map(|i| self.ident(i)).collect())
            }
            Rule::input_decl => {
                let name = self.ident(inner.remove(0));
                let ty_pair = inner.remove(0);
                let ty_span = self.span(&ty_pair);
                let ty = match ty_pair.as_rule() {
                    Rule::real_type => InputType::Real(ty_span),
                    Rule::bag_type => {
                        InputType::Bag(self.ident(first(ty_pair)), ty_span)
                    }
                    Rule::history_type => {
                        InputType::History(self.ident(first(ty_pair)), ty_span)
                    }
                    _ => InputType::Domain(self.ident(first(ty_pair))),
                };
                ItemKind::Input { name, ty }
            }
            Rule::param_decl => {
                let mut it = inner.into_iter();
                let name = self.ident(next(&mut it));
                let mut domain = None;
                let mut shape = None;
                let mut attrs = Vec::new();
                for q in it {
                    let qs = self.span(&q);
                    match q.as_rule() {
                        Rule::param_domain => domain = Some(self.ident(first(q))),
                        Rule::real_shape => shape = Some(ShapeDecl::Real(qs)),
                        Rule::vec_shape => shape = Some(ShapeDecl::Vec(self.dim(first(q)), qs)),
                        Rule::mat_shape => {
                            let mut d = q.into_inner();
                            let r = self.dim(next(&mut d));
                            let c = self.dim(next(&mut d));
                            shape = Some(ShapeDecl::Mat(r, c, qs));
                        }
                        Rule::init_attr => attrs.push(ParamAttr::Init(self.dist(first(q)))),
                        Rule::variational_attr => attrs.push(ParamAttr::Variational(qs)),
                        Rule::ball_attr => attrs.push(ParamAttr::OnBall(qs)),
                        _ => attrs.push(ParamAttr::Nonneg(qs)),
                    }
                }
                ItemKind::Param {
                    name,
                    domain,
                    shape: shape.unwrap_or(ShapeDecl::Real(span)),
                    attrs,
                }
            }
            Rule::let_decl => {
                let mut it = inner.into_iter();
                let name = self.ident(next(&mut it));
                let q = next(&mut it);
                let (params, body) = if q.as_rule() == Rule::param_list {
                    (Some(self.param_list(q)), self.expr(next(&mut it)))
                } else {
                    (None, self.expr(q))
                };
                ItemKind::Let { name, params, body }
            }
            Rule::fn_decl => {
                let mut it = inner.into_iter();
                let name = self.ident(next(&mut it));
                let params = self.param_list(next(&mut it));
                let body = self.expr(next(&mut it));
                ItemKind::Fn { name, params, body }
            }
            Rule::loss_decl => {
                let mut it = inner.into_iter();
                let expr = self.expr(next(&mut it));
                let samplers = it.next().map(|w| self.where_clause(w)).unwrap_or_default();
                ItemKind::Loss { expr, samplers }
            }
            Rule::likelihood_decl => {
                let mut it = inner.into_iter();
                let target = self.ident(next(&mut it));
                let dist = self.dist(next(&mut it));
                let samplers = it.next().map(|w| self.where_clause(w)).unwrap_or_default();
                ItemKind::Likelihood {
                    target,
                    dist,
                    samplers,
                }
            }
            Rule::prior_decl => {
                let mut it = inner.into_iter();
                let target = self.primary(first(next(&mut it)));
                let dist = self.dist(next(&mut it));
                ItemKind::Prior { target, dist }
            }
            Rule::penalty_decl => ItemKind::Penalty(self.expr(inner.remove(0))),
            _ => ItemKind::Fit(inner.into_iter().map(|e| self.fit_entry(e)).collect()),
        };
        Item { kind, span }
    }

    fn dim(&self, p: Pair<Rule>) -> Dim {
        Dim {
            text: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn param_list(&self, p: Pair<Rule>) -> Vec<Ident> {
        p.into_inner().map(|i| self.ident(i)).collect()
    }

    fn where_clause(&self, p: Pair<Rule>) -> Vec<Sampler> {
        p.into_inner().map(|s| self.sampler(s)).collect()
    }

    fn sampler(&self, p: Pair<Rule>) -> Sampler {
        let span = self.span(&p);
        let mut it = p.into_inner();
        let var = self.ident(next(&mut it));
        let dist = self.dist(next(&mut it));
        Sampler { var, dist, span }
    }

    fn dist(&self, p: Pair<Rule>) -> Dist {
        let span = self.span(&p);
        let mut it = p.into_inner();
        let name = self.ident(next(&mut it));
        let args = it.map(|a| self.expr(a)).collect();
        Dist { name, args, span }
    }

    fn fit_entry(&self, p: Pair<Rule>) -> FitEntry {
        let span = self.span(&p);
        let mut it = p.into_inner();
        let key = self.ident(next(&mut it));
        let v = next(&mut it);
        let vspan = self.span(&v);
        let value = match v.as_rule() {
            Rule::signed_number => FitValue::Number(v.as_str().parse().unwrap_or(f64::NAN), vspan),
            Rule::fit_call => {
                let mut c = v.into_inner();
                let name = self.ident(next(&mut c));
                let args = c.map(|e| self.fit_entry(e)).collect();
                FitValue::Call {
                    name,
                    args,
                    span: vspan,
                }
            }
            _ => FitValue::Name(self.ident(first(v))),
        };
        FitEntry { key, value, span }
    }

    fn expr(&self, p: Pair<Rule>) -> Expr {
        pratt()
            .map_primary(|q| self.primary(q))
            .map_prefix(|op, rhs| Expr {
                span: self.span(&op).to(rhs.span),
                kind: ExprKind::Neg(Box::new(rhs)),
            })
            .map_infix(|lhs, op, rhs| {
                let op = match op.as_rule() {
                    Rule::add => BinOp::Add,
                    Rule::sub => BinOp::Sub,
                    Rule::mul => BinOp::Mul,
                    Rule::div => BinOp::Div,
                    _ => BinOp::MatMul,
                };
                Expr {
                    span: lhs.span.to(rhs.span),
                    kind: ExprKind::Binary {
                        op,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                }
            })
            .parse(p.into_inner())
    }

    fn primary(&self, p: Pair<Rule>) -> Expr {
        let span = self.span(&p);
        let kind = match p.as_rule() {
            Rule::number => ExprKind::Number(p.as_str().parse().unwrap_or(f64::NAN)),
            Rule::paren => return self.expr(first(p)),
            Rule::index => {
                let mut it = p.into_inner();
                let table = self.ident(next(&mut it));
                let index = Box::new(self.expr(next(&mut it)));
                ExprKind::Index { table, index }
            }
            Rule::call => {
                let mut it = p.into_inner();
                let func = self.ident(next(&mut it));
                let args = it.map(|a| self.expr(a)).collect();
                ExprKind::Call { func, args }
            }
            Rule::comprehension => {
                let mut it = p.into_inner();
                let func = self.ident(next(&mut it));
                let body = Box::new(self.expr(next(&mut it)));
                let sampler = self.sampler(next(&mut it));
                ExprKind::Comprehension {
                    func,
                    body,
                    sampler,
                }
            }
            _ => ExprKind::Name(self.ident(p)),
        };
        Expr { kind, span }
    }
}

// The grammar fixes how many children each rule has; these two accessors are
// the only places that rely on it.
#[allow(clippy::expect_used)]
fn first(p: Pair<Rule>) -> Pair<Rule> {
    p.into_inner()
        .next()
        .expect("the grammar guarantees a child here")
}

#[allow(clippy::expect_used)]
fn next<'a>(it: &mut impl Iterator<Item = Pair<'a, Rule>>) -> Pair<'a, Rule> {
    it.next().expect("the grammar guarantees a child here")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(src: &str) -> File {
        match parse(FileId(0), src) {
            Ok(f) => f,
            Err(e) => panic!("parse failed: {e:?}"),
        }
    }

    #[test]
    fn precedence_binds_products_tighter() {
        let f = parse_ok("let x = 1 + 2 * 3");
        let ItemKind::Let { body, .. } = &f.items[0].kind else {
            panic!("not a let")
        };
        let ExprKind::Binary { op, rhs, .. } = &body.kind else {
            panic!("not binary")
        };
        assert_eq!(*op, BinOp::Add);
        assert!(matches!(rhs.kind, ExprKind::Binary { op: BinOp::Mul, .. }));
    }

    #[test]
    fn reports_one_error_per_broken_statement() {
        let src = "input u: user\nparam p[user]: vec(\nlet R = dot(p[u],, q)\nloss R\n";
        let errors = parse(FileId(0), src).err().unwrap_or_default();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn keywords_are_not_names() {
        assert!(parse(FileId(0), "let loss = 1").is_err());
    }
}
