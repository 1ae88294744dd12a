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
    // Detailed attempts let syntax errors name the token that was expected
    // at the furthest point reached, not only the rule that failed.
    pest::set_error_detail(true);
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
                errors.push(syntax_error(file, 0, text, &first));
            }
            Err(errors)
        }
    }
}

/// Parse one expression alone (an expression typed at a prompt): the same
/// limits and syntax errors as an expression inside a file.
pub fn parse_expression(file: FileId, text: &str) -> Result<Expr, Vec<Diagnostic>> {
    if let Some(d) = check_nesting(file, text) {
        return Err(vec![d]);
    }
    if let Some(d) = check_operator_count(file, text, 0) {
        return Err(vec![d]);
    }
    pest::set_error_detail(true);
    match RecParser::parse(Rule::expr_only, text) {
        Ok(mut pairs) => {
            let builder = Builder { file, offset: 0 };
            match pairs.next().and_then(|p| p.into_inner().next()) {
                Some(expr) => Ok(builder.expr(expr)),
                None => Err(vec![Diagnostic::error(
                    "recc::syntax",
                    "expected an expression",
                    Span::new(file, 0, text.len()),
                )
                .label("nothing to evaluate")]),
            }
        }
        Err(e) => Err(vec![syntax_error(file, 0, text, &e)]),
    }
}

/// Parse each statement-sized piece of `text` alone and collect their errors.
fn recover_statement_errors(file: FileId, text: &str) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    for (start, end) in statement_chunks(text) {
        let chunk = &text[start..end];
        let has_code = chunk
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if !has_code {
            continue;
        }
        if let Err(e) = RecParser::parse(Rule::statement_only, chunk) {
            errors.push(syntax_error(file, start, chunk, &e));
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

/// The words of the language: first those that open a statement, then the
/// other words the grammar reserves (its `keyword` rule: never names), then
/// `once`, which marks a prior only where it follows one and may otherwise
/// be a name.
pub const KEYWORDS: &[&str] = &[
    "model",
    "use",
    "input",
    "param",
    "let",
    "fn",
    "loss",
    "prior",
    "penalty",
    "fit",
    "where",
    "for",
    "init",
    "variational",
    "nonneg",
    "once",
];

const STATEMENT_KEYWORDS: &[&str] = KEYWORDS.split_at(10).0;

/// The words that are never names.
const RESERVED: &[&str] = KEYWORDS.split_at(15).0;

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
    let code = chunk
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let count = code
        .chars()
        .filter(|c| matches!(c, '+' | '-' | '*' | '/' | '@'))
        .count();
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

/// What the parser wanted at the furthest point it reached, from pest's
/// detailed attempts: rules by their names, literal tokens quoted.
fn furthest_expectation(e: &pest::error::Error<Rule>) -> Option<(usize, Vec<String>)> {
    let attempts = e.parse_attempts()?;
    let mut expected: Vec<String> = Vec::new();
    for stack in attempts.call_stacks() {
        // A failed literal token is listed below as itself, not by its rule.
        if let Some(&r) = stack.deepest.get_rule() {
            // A statement rule here only says which statement was being read.
            let statement_rule = matches!(
                r,
                Rule::model_decl
                    | Rule::use_decl
                    | Rule::input_decl
                    | Rule::param_decl
                    | Rule::let_decl
                    | Rule::fn_decl
                    | Rule::loss_decl
                    | Rule::likelihood_decl
                    | Rule::prior_decl
                    | Rule::penalty_decl
                    | Rule::fit_decl
            );
            if !statement_rule && !matches!(r, Rule::WHITESPACE | Rule::COMMENT | Rule::EOI) {
                expected.push(describe(r).to_string());
            }
        }
    }
    for t in attempts.expected_tokens() {
        let token = t.to_string();
        // Character ranges (`0..9`) stand for numbers and names, which the
        // rules above already name.
        // Words and character ranges are names, numbers and keywords, which
        // the rules above already name; keep punctuation.
        let punctuation = !token.trim().is_empty()
            && token != "#"
            && !token.contains("..")
            && !token.chars().any(|c| c.is_ascii_alphanumeric() || c == '_');
        if punctuation {
            expected.push(format!("`{token}`"));
        }
    }
    expected.sort();
    expected.dedup();
    // Tokens that only start an expression add nothing to "an expression".
    if expected.iter().any(|x| x == "an expression") {
        expected.retain(|x| !matches!(x.as_str(), "`(`" | "`-`" | "`.`"));
    }
    // A long list helps no one: keep the rules and the closing brackets.
    if expected.len() > 5 {
        expected.retain(|x| !x.starts_with('`') || matches!(x.as_str(), "`)`" | "`]`" | "`}`"));
    }
    if expected.is_empty() {
        return None;
    }
    Some((attempts.max_position, expected))
}

fn syntax_error(
    file: FileId,
    offset: usize,
    text: &str,
    e: &pest::error::Error<Rule>,
) -> Diagnostic {
    let d = located_syntax_error(file, offset, text, e);
    match unclosed_bracket(text, (d.primary.span.start as usize).saturating_sub(offset)) {
        // The error asks for the closing bracket: the fault is where the
        // bracket was opened, which may be lines above.
        Some((at, open, close)) if d.primary.text.contains(&format!("`{close}`")) => {
            let span = Span::new(file, offset + at, offset + at + 1);
            let mut never_closed = Diagnostic::error(
                "recc::syntax",
                format!("this `{open}` is never closed"),
                span,
            )
            .label(format!("`{open}` opened here"))
            .with_secondary(d.primary.span, format!("expected `{close}` by here"));
            never_closed.help = d.help;
            never_closed
        }
        _ => d,
    }
}

/// The innermost bracket opened before byte `end` of `text` and not closed
/// by then: its position and the bracket with its closer. Comments are
/// skipped; a closer that matches nothing ends the search (the text is
/// mismatched, not unclosed).
fn unclosed_bracket(text: &str, end: usize) -> Option<(usize, char, char)> {
    let mut open: Vec<(usize, char)> = Vec::new();
    let mut comment = false;
    for (i, c) in text.char_indices() {
        if i >= end {
            break;
        }
        match c {
            '\n' => comment = false,
            _ if comment => {}
            '#' => comment = true,
            '(' | '[' | '{' => open.push((i, c)),
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if open.pop().map(|(_, o)| o) != Some(want) {
                    return None;
                }
            }
            _ => {}
        }
    }
    let (at, c) = open.pop()?;
    let close = match c {
        '(' => ')',
        '[' => ']',
        _ => '}',
    };
    Some((at, c, close))
}

fn located_syntax_error(
    file: FileId,
    offset: usize,
    text: &str,
    e: &pest::error::Error<Rule>,
) -> Diagnostic {
    let (mut start, mut end) = match e.location {
        InputLocation::Pos(p) => (p, p),
        InputLocation::Span((s, e)) => (s, e),
    };
    if let Some((pos, expected)) = furthest_expectation(e) {
        if let Some(d) = invalid_character(file, offset, text, pos) {
            return d;
        }
        if pos >= start {
            // Point at the start of a word the parser stopped inside (`vec` of `vector`).
            let bytes = text.as_bytes();
            let is_word = |i: usize| {
                bytes
                    .get(i)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
            };
            let mut pos = pos;
            while pos > 0 && is_word(pos) && is_word(pos - 1) {
                pos -= 1;
            }
            // At the end of the text, point just past its last token.
            if text[pos.min(text.len())..].trim().is_empty() {
                pos = text.trim_end().len();
            }
            start = pos;
            end = pos;
            // `let loss = ...`: the parser stops after the reserved word.
            if expected
                .iter()
                .any(|x| x == "a name" || x == "an expression")
            {
                if let Some((ws, we, word)) = word_before(text, pos) {
                    // Only a reserved word the parser stopped right after is
                    // the culprit: `input 1x` stops after `input` too.
                    if we == pos && is_reserved(word) {
                        // `use stdlib.loss`: a module misnamed as a keyword.
                        if text[..ws].trim_end().ends_with("stdlib.") {
                            return unknown_module(Span::new(file, offset + ws, offset + we), word);
                        }
                        return Diagnostic::error(
                            "recc::syntax",
                            format!("`{word}` is a reserved word, not a name"),
                            Span::new(file, offset + ws, offset + we),
                        )
                        .label("reserved")
                        .with_help(format!("choose another name, e.g. `{word}_`"));
                    }
                }
            }
            let found = found_in(text, pos);
            let wanted =
                join_alternatives(&expected.iter().map(String::as_str).collect::<Vec<_>>());
            let span = Span::new(file, offset + start, offset + end);
            let mut d = Diagnostic::error(
                "recc::syntax",
                format!("expected {wanted}, found {found}"),
                span,
            )
            .label(format!("expected {wanted}"));
            if let Some(h) = syntax_hint(e, &found) {
                d = d.with_help(h);
            }
            return d;
        }
    }
    let (message, label) = match &e.variant {
        ErrorVariant::ParsingError {
            positives,
            negatives,
        } => {
            let mut expected: Vec<&str> = positives.iter().map(|r| describe(*r)).collect();
            expected.sort_unstable();
            expected.dedup();
            let found = found_in(text, start);
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
    if let Some(d) = invalid_character(file, offset, text, start) {
        return d;
    }
    let span = Span::new(file, offset + start, offset + end.max(start));
    let found = found_in(text, start);
    let mut d = Diagnostic::error("recc::syntax", message, span).label(label);
    if let Some(h) = syntax_hint(e, &found) {
        d = d.with_help(h);
    }
    d
}

/// `use stdlib.WORD` for a module there is not, named with the closest.
fn unknown_module(span: Span, word: &str) -> Diagnostic {
    let modules: Vec<&str> = crate::stdlib::MODULES.iter().map(|(n, _)| *n).collect();
    let help = match crate::diagnostic::closest(word, modules.iter().copied()) {
        Some(c) => format!("did you mean `stdlib.{c}`?"),
        None => format!("the stdlib modules are: {}", modules.join(", ")),
    };
    Diagnostic::error(
        "recc::unknown-module",
        format!("there is no module `stdlib.{word}`"),
        span,
    )
    .label("unknown module")
    .with_help(help)
}

/// A character no token may contain, at the byte `pos` where parsing
/// stopped: named for what it is, rather than blaming the token before it.
fn invalid_character(file: FileId, offset: usize, text: &str, pos: usize) -> Option<Diagnostic> {
    let c = text.get(pos..)?.chars().next()?;
    let span = Span::new(file, offset + pos, offset + pos + c.len_utf8());
    if c.is_ascii() {
        let stray = (c.is_ascii_graphic()
            && !c.is_ascii_alphanumeric()
            && !"()[]{},:~=+-*/@.#_;".contains(c))
            || (c.is_ascii_control() && !c.is_ascii_whitespace());
        return stray.then(|| {
            let shown = if c.is_ascii_graphic() {
                format!("`{c}`")
            } else {
                format!("U+{:04X}", u32::from(c))
            };
            Diagnostic::error(
                "recc::syntax",
                format!("unexpected character {shown}"),
                span,
            )
            .label("not part of the language")
        });
    }
    let code_point = format!("U+{:04X}", u32::from(c));
    Some(if c.is_alphanumeric() {
        Diagnostic::error(
            "recc::syntax",
            format!("`{c}` ({code_point}) cannot be part of a name"),
            span,
        )
        .label("not an ASCII letter, digit or `_`")
        .with_help(
            "names are written with ASCII letters, digits and `_`, starting with a letter or `_`",
        )
    } else {
        Diagnostic::error(
            "recc::syntax",
            format!("unexpected character {code_point}"),
            span,
        )
        .label("not part of the language")
        .with_help("model files are written in ASCII, except in comments")
    })
}

fn is_reserved(word: &str) -> bool {
    RESERVED.contains(&word)
}

/// The word ending at or before `pos`, skipping spaces: `(start, end, word)`.
fn word_before(text: &str, pos: usize) -> Option<(usize, usize, &str)> {
    let before = text.get(..pos)?;
    let end = before.trim_end().len();
    let start = before[..end]
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    (start < end).then(|| (start, end, &text[start..end]))
}

/// The token at byte `pos` of `text`, for "found ..." messages.
fn found_in(text: &str, pos: usize) -> String {
    let rest = text.get(pos..).unwrap_or("");
    let line_rest = rest.split('\n').next().unwrap_or("");
    let trimmed = line_rest.trim_start();
    match trimmed.chars().next() {
        None if rest.trim().is_empty() => "the end of the file".to_string(),
        None => "the end of the line".to_string(),
        Some('#') => "a comment".to_string(),
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
            let word: String = trimmed
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            format!("`{word}`")
        }
        Some(c) => format!("`{c}`"),
    }
}

fn syntax_hint(e: &pest::error::Error<Rule>, found: &str) -> Option<String> {
    let line = e.line().trim();
    let word = found.trim_matches('`');
    if line.starts_with("param") && line.contains("vector") {
        return Some("vector shapes are written `param NAME[DOMAIN]: vec(K)`".into());
    }
    if line.contains("==") {
        return Some(
            "recc has no comparisons; constraints go on params (`nonneg`, `on ball`)".into(),
        );
    }
    if found == "`;`" {
        return Some("statements need no separator: start the next one on a new line".into());
    }
    if is_reserved(word) {
        return Some(format!(
            "`{word}` is a reserved word and cannot be used as a name"
        ));
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
        Rule::expr_only => "an expression",
        Rule::model_decl => "`model`",
        Rule::use_decl => "`use`",
        Rule::input_decl => "`input`",
        Rule::param_decl => "`param`",
        Rule::let_decl => "`let`",
        Rule::fn_decl => "`fn`",
        Rule::loss_decl => "`loss`",
        Rule::likelihood_decl => "a likelihood (`r ~ normal(R, 1)`)",
        Rule::prior_decl => "`prior`",
        Rule::once_attr => "`once`",
        Rule::penalty_decl => "`penalty`",
        Rule::fit_decl => "`fit`",
        Rule::keyword => "a keyword",
        Rule::ident | Rule::domain_type | Rule::fit_name => "a name",
        Rule::path => "a module path",
        Rule::bag_type | Rule::history_type | Rule::real_type => "an input type",
        Rule::param_domain => "`[DOMAIN]`",
        Rule::real_shape | Rule::vec_shape | Rule::mat_shape => {
            "a shape (`real`, `vec(K)`, `mat(R, C)`)"
        }
        Rule::init_attr
        | Rule::variational_attr
        | Rule::variational_kw
        | Rule::ball_attr
        | Rule::nonneg_attr => "a param attribute (`init`, `variational`, `on ball`, `nonneg`)",
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
                    Rule::bag_type => InputType::Bag(self.ident(first(ty_pair)), ty_span),
                    Rule::history_type => InputType::History(self.ident(first(ty_pair)), ty_span),
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
                        Rule::variational_attr => {
                            let mut v = q.into_inner();
                            let kw = self.span(&next(&mut v));
                            let options = v.map(|e| self.fit_entry(e)).collect();
                            attrs.push(ParamAttr::Variational(kw, options))
                        }
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
                let once = it.next().map(|p| self.span(&p));
                ItemKind::Prior { target, dist, once }
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

    /// The list agrees with the grammar: the reserved words cannot name a
    /// `let`, `once` can, and the statement words each open a statement.
    #[test]
    fn the_keyword_list_is_the_grammars() {
        for word in RESERVED {
            assert!(
                parse(FileId(0), &format!("let {word} = 1")).is_err(),
                "{word}"
            );
        }
        for word in &KEYWORDS[RESERVED.len()..] {
            assert!(
                parse(FileId(0), &format!("let {word} = 1")).is_ok(),
                "{word}"
            );
        }
        for word in STATEMENT_KEYWORDS {
            assert!(opens_statement(&format!("{word} x")), "{word}");
        }
    }
}
