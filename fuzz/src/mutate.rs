//! Mutations of text and bytes, shared by the harnesses.

use rand::rngs::StdRng;
use rand::Rng;
use recc_compiler::parse::KEYWORDS;
use std::sync::LazyLock;

/// Tokens of the model language: its keywords, then the other words and
/// symbols below.
pub static TOKENS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| KEYWORDS.iter().chain(OTHER_TOKENS).copied().collect());

/// Names, stdlib functions, symbols and numbers (the robustness test's
/// list, with more functions and numbers at the edges of f32).
const OTHER_TOKENS: &[&str] = &[
    "stdlib",
    "stdlib.losses",
    "stdlib.fm",
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
    "t",
    "user",
    "item",
    "week",
    "genre",
    "dot",
    "sum",
    "mean",
    "sq",
    "exp",
    "log",
    "max",
    "min",
    "softmax",
    "concat",
    "sigmoid",
    "tanh",
    "relu",
    "softplus",
    "mse",
    "bpr",
    "hinge",
    "logistic",
    "normal",
    "negative",
    "sgd",
    "adagrad",
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
    "2",
    "3",
    "13",
    "32",
    "0.1",
    "1e9",
    "-1",
    "1e-30",
    "3.5e38",
    "1e39",
    "\n",
    " ",
    "#",
    "é",
    "\t",
    "99999999999999999999",
    "\u{feff}",
];

/// Words that can stand for each other, so a replacement often still checks
/// and reaches the later stages.
const CLASSES: &[&[&str]] = &[
    &[
        "sigmoid", "tanh", "relu", "exp", "softplus", "sq", "log", "-",
    ],
    &["sum", "mean"],
    &["max", "min"],
    &["sgd", "adagrad", "adam"],
    &["mse", "hinge", "bpr"],
    &["+", "-", "*", "/"],
    &["u", "i", "j"],
    &["user", "item", "week", "genre", "occupation"],
    &["normal", "uniform"],
    &["nonneg", "on ball", "variational", ""],
];

/// Numbers a numeric literal may become: small sizes, zero, and values at
/// the edges of f32.
const NUMBERS: &[&str] = &[
    "0", "1", "2", "3", "4", "5", "8", "13", "16", "64", "100", "0.5", "0.001", "1e-8", "-1",
    "-0.5", "1e30", "3.4e38", "1e39", "1e-45", "65536", "1000000",
];

fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

/// Byte ranges of the words (identifiers, numbers, single symbols) of `text`.
fn words(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let word = c.is_alphanumeric() || c == '_' || c == '.';
        match (word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
        if !word && !c.is_whitespace() {
            out.push((i, i + c.len_utf8()));
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

/// One to three mutations of `text`: character edits (delete, insert a
/// token, duplicate, swap) as the robustness test makes, and word
/// replacements within a class, numbers replaced, lines deleted or
/// duplicated.
pub fn text(base: &str, rng: &mut StdRng, tokens: &[&str]) -> String {
    let mut text = base.to_string();
    for _ in 0..rng.random_range(1..=3) {
        text = once(&text, rng, tokens);
    }
    text
}

fn once(text: &str, rng: &mut StdRng, tokens: &[&str]) -> String {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len().max(1);
    let mut out = chars.clone();
    match rng.random_range(0..10) {
        0 => {
            let s = rng.random_range(0..n).min(chars.len());
            let e = (s + rng.random_range(1..40)).min(chars.len());
            out.drain(s..e);
        }
        1 => {
            let s = rng.random_range(0..n).min(chars.len());
            out.splice(s..s, pick(rng, tokens).chars());
        }
        2 => {
            let s = rng.random_range(0..n).min(chars.len());
            let e = (s + rng.random_range(1..200)).min(chars.len());
            let piece: Vec<char> = chars[s..e].to_vec();
            out.splice(e..e, piece);
        }
        3 if !chars.is_empty() => {
            let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
            out.swap(a, b);
        }
        4..=6 => return replace_word(text, rng),
        7 | 8 => {
            let ws = words(text);
            let numbers: Vec<&(usize, usize)> = ws
                .iter()
                .filter(|(s, _)| text[*s..].starts_with(|c: char| c.is_ascii_digit()))
                .collect();
            if let Some(&&(s, e)) = numbers.get(rng.random_range(0..numbers.len().max(1))) {
                return format!("{}{}{}", &text[..s], pick(rng, NUMBERS), &text[e..]);
            }
        }
        _ => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let k = rng.random_range(0..lines.len());
                if rng.random_bool(0.5) {
                    lines.remove(k);
                } else {
                    let l = lines[k];
                    lines.insert(rng.random_range(0..=lines.len()), l);
                }
            }
            return lines.join("\n");
        }
    }
    out.into_iter().collect()
}

fn replace_word(text: &str, rng: &mut StdRng) -> String {
    let ws = words(text);
    if ws.is_empty() {
        return text.to_string();
    }
    let (s, e) = ws[rng.random_range(0..ws.len())];
    let word = &text[s..e];
    let class = CLASSES.iter().find(|c| c.contains(&word));
    let new = match class {
        Some(c) => pick(rng, c),
        None => pick(rng, &TOKENS),
    };
    format!("{}{}{}", &text[..s], new, &text[e..])
}

/// Byte-level mutations: bit flips, set bytes, deletions, insertions of
/// interesting bytes, chunk duplication, truncation.
pub fn bytes(base: &[u8], rng: &mut StdRng, rounds: usize) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..rounds {
        let n = b.len().max(1);
        match rng.random_range(0..7) {
            0 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] = *[
                    0u8, 0xff, 0x7f, 0x80, b'\n', b'\t', b',', b'|', b'"', b'\r', b'9',
                ]
                .get(rng.random_range(0..11))
                .unwrap_or(&0);
            }
            2 => {
                let s = rng.random_range(0..n).min(b.len());
                let e = (s + rng.random_range(1..64)).min(b.len());
                b.drain(s..e);
            }
            3 => {
                let s = rng.random_range(0..n).min(b.len());
                let e = (s + rng.random_range(1..256)).min(b.len());
                let piece = b[s..e].to_vec();
                let at = rng.random_range(0..=b.len());
                b.splice(at..at, piece);
            }
            4 => {
                let at = rng.random_range(0..=b.len());
                b.truncate(at);
            }
            _ => {
                let at = rng.random_range(0..=b.len());
                let piece: &[u8] = [
                    &b"\xef\xbb\xbf"[..],
                    b"\xff\xfe",
                    b"\x00",
                    b"\xc3\x28",
                    b"\x1b[31m",
                    b"-9223372036854775808",
                    b"18446744073709551616",
                    b"NaN",
                    b"1e400",
                ][rng.random_range(0..9)];
                b.splice(at..at, piece.iter().copied());
            }
        }
    }
    b
}
