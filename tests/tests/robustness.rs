//! Robustness: no input, however malformed, panics the front end, the
//! lowering, the gradient or the evaluator. Random token soup and random
//! mutations of the real model files, for a bounded number of cases.

use proptest::prelude::*;
use recc_compiler::interp::evaluate;
use recc_compiler::parse::KEYWORDS;
use recc_compiler::{compile, forward_graph, gradient_graph};
use recc_tests::{random_example, random_params, rec_files, rng};

/// Names, stdlib functions, symbols and numbers: with the language's
/// keywords, the words of the soup.
const OTHER_TOKENS: &[&str] = &[
    "stdlib",
    "stdlib.losses",
    "on",
    "ball",
    "real",
    "vec",
    "mat",
    "bag",
    "history",
    "u",
    "i",
    "j",
    "r",
    "p",
    "q",
    "b",
    "R",
    "user",
    "item",
    "dot",
    "sum",
    "mean",
    "sq",
    "exp",
    "log",
    "max",
    "softmax",
    "concat",
    "mse",
    "bpr",
    "normal",
    "negative",
    "sgd",
    "adam",
    "epochs",
    "lr",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "~",
    "=",
    "+",
    "-",
    "*",
    "/",
    "@",
    ".",
    "0",
    "1",
    "32",
    "0.1",
    "1e9",
    "-1",
    "\n",
    " ",
    "#",
    "é",
    "ü",
    "\u{feff}",
    "$",
    "1e39",
    "1e-50",
    "\t",
    "99999999999999999999",
];

fn tokens() -> Vec<&'static str> {
    KEYWORDS.iter().chain(OTHER_TOKENS).copied().collect()
}

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(tokens()), 0..80).prop_map(|t| t.join(" "))
}

/// Everything the pipeline does with a file, without looking at the result.
fn run_pipeline(name: &str, text: &str) {
    let compiled = compile(name, text);
    let _ = compiled.render_diagnostics();
    let Some(model) = compiled.model.as_ref() else {
        return;
    };
    let Ok(forward) = forward_graph(model) else {
        return;
    };
    let _ = forward.to_text(Some(&compiled.sources));
    if let Ok(g) = gradient_graph(model) {
        let mut r = rng(7);
        let params = random_params(&g, &mut r);
        let example = random_example(&g, &mut r);
        let _ = evaluate(&g, &params, &example);
    }
}

fn model_texts() -> Vec<String> {
    rec_files("models")
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: &'static str },
    Duplicate { at: usize, len: usize },
    Swap { a: usize, b: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), prop::sample::select(tokens()))
            .prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<usize>(), 1usize..200).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap { a, b }),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len().max(1);
    let mut out = chars.clone();
    match *m {
        Mutation::Delete { at, len } => {
            let s = at % n;
            let e = (s + len).min(chars.len());
            out.drain(s.min(chars.len())..e);
        }
        Mutation::Insert { at, token } => {
            let s = (at % n).min(chars.len());
            out.splice(s..s, token.chars());
        }
        Mutation::Duplicate { at, len } => {
            let s = (at % n).min(chars.len());
            let e = (s + len).min(chars.len());
            let piece: Vec<char> = chars[s..e].to_vec();
            out.splice(e..e, piece);
        }
        Mutation::Swap { a, b } => {
            if !chars.is_empty() {
                out.swap(a % chars.len(), b % chars.len());
            }
        }
    }
    out.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn token_soup_never_panics(text in soup()) {
        run_pipeline("soup.rec", &text);
    }

    #[test]
    fn mutated_models_never_panic(which in any::<usize>(), mutations in prop::collection::vec(mutation(), 1..4)) {
        let texts = model_texts();
        let mut text = texts[which % texts.len()].clone();
        for m in &mutations {
            text = apply(&text, m);
        }
        run_pipeline("mutated.rec", &text);
    }
}

#[test]
fn pathological_inputs_are_refused_cleanly() {
    let deep = format!("let x = {}1{}", "(".repeat(5000), ")".repeat(5000));
    let long = format!("let x = 1{}", " + 1".repeat(100_000));
    let negs = format!("let x = {}1", "-".repeat(100_000));
    let huge =
        "input u: user\nparam p[user]: vec(99999999999999999999999)\nloss sq(p[u])".to_string();
    for text in [
        deep,
        long,
        negs,
        huge,
        String::new(),
        "\u{0}".into(),
        "loss".into(),
    ] {
        let compiled = compile("bad.rec", &text);
        assert!(
            compiled.has_errors(),
            "accepted: {}",
            &text[..text.len().min(60)]
        );
    }
}

/// Nested definitions that would expand exponentially stop with an error.
#[test]
fn exponential_expansion_is_refused() {
    let mut text = String::from("input r: real\nfn f0(x) = x\n");
    for k in 1..40 {
        text.push_str(&format!("fn f{k}(x) = f{}(x) + f{}(x)\n", k - 1, k - 1));
    }
    text.push_str("loss f39(r)\n");
    let compiled = compile("big.rec", &text);
    assert!(compiled
        .diagnostics
        .iter()
        .any(|d| d.code == "recc::too-large"));
}

/// A model whose definitions each use the one before twice:
/// `let a1 = a0 + a0` … `let aN = aN-1 + aN-1`, with `a0 = A0`.
fn doubling_chain(n: usize, a0: &str) -> String {
    let mut text = String::from(
        "use stdlib.losses\ninput u: user\ninput i: item\ninput r: real\n\
         param p[user]: vec(8)\nparam q[item]: vec(8)\n",
    );
    text.push_str(&format!("let a0 = {a0}\n"));
    for k in 1..=n {
        text.push_str(&format!("let a{k} = a{} + a{}\n", k - 1, k - 1));
    }
    text.push_str(&format!("let R(u, i) = a{n}\nloss mse(R(u, i), r)\n"));
    text
}

/// Compile `text`, check it is refused with `code`, and return how long it took.
fn refused_in(text: &str, code: &str) -> std::time::Duration {
    let start = std::time::Instant::now();
    let compiled = compile("chain.rec", text);
    let took = start.elapsed();
    let errors: Vec<_> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .collect();
    assert!(
        errors.iter().any(|d| d.code == code),
        "expected {code}, found {:?}",
        errors.iter().map(|d| &d.message).collect::<Vec<_>>()
    );
    // One located error, not one per failed expansion.
    assert!(errors.len() <= 2, "{} errors", errors.len());
    took
}

/// Expansion is bounded however it ends: by the work budget, by the depth
/// limit, or by an error inside a definition used 2^31 times. Each of these
/// once ran without bound (expansions that failed paid nothing).
#[test]
fn doubling_definitions_are_refused_quickly() {
    let cases = [
        (doubling_chain(31, "dot(p[u], q[i])"), "recc::too-large"),
        (doubling_chain(40, "dot(p[u], q[i])"), "recc::too-large"),
        (doubling_chain(24, "dot(p[u], q[i])"), "recc::too-large"),
        (doubling_chain(29, "dot(p[u], qq[i])"), "recc::unknown-name"),
        (
            doubling_chain(29, "dot(p[u], q[i]) * 1e39"),
            "recc::bad-number",
        ),
        (
            doubling_chain(29, "dot(p[u], q[i]) * 1e-50"),
            "recc::bad-number",
        ),
    ];
    // Functions whose innermost body is wrong: every call fails, none builds anything.
    let mut failing_fns = String::from("input r: real\nfn f0(x) = x + sq(x, x)\n");
    for k in 1..30 {
        failing_fns.push_str(&format!("fn f{k}(x) = f{}(x) + f{}(x)\n", k - 1, k - 1));
    }
    failing_fns.push_str("loss f29(r)\n");
    let cases = cases
        .into_iter()
        .chain([(failing_fns, "recc::arity")])
        .collect::<Vec<_>>();
    for (text, code) in &cases {
        let took = refused_in(text, code);
        eprintln!("{code}: {took:?}");
        assert!(took.as_secs_f64() < 2.0, "{code} took {took:?}");
    }
}

/// Definitions that each extend the one before by a long sum nest the
/// expression tree thousands deep. Refused with a located error, and every
/// stage, and dropping the model, works on a small stack.
#[test]
fn deeply_nested_expressions_are_refused_on_a_small_stack() {
    let chain = |n: usize| {
        let mut text =
            String::from("use stdlib.losses\ninput r: real\nparam b: real\nlet a0 = b\n");
        for k in 1..=n {
            text.push_str(&format!("let a{k} = a{}{}\n", k - 1, " + b".repeat(250)));
        }
        text.push_str(&format!("loss mse(a{n}, r)\n"));
        text
    };
    let result = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let deep = compile("deep.rec", &chain(30));
            assert!(
                deep.diagnostics.iter().any(|d| d.code == "recc::too-large"),
                "{}",
                deep.render_diagnostics()
            );
            // Just under the bound: accepted, and the whole pipeline runs.
            let text = chain(7);
            assert!(compile("deep.rec", &text).model.is_some());
            run_pipeline("deep.rec", &text);
        })
        .map(|h| h.join());
    assert!(matches!(result, Ok(Ok(()))), "the pipeline failed");
}
