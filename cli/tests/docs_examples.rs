//! Every example in the README and docs/ is run, and what it prints must be
//! what the page shows, so the pages cannot go stale.
//!
//! An example is a ```` ```console ```` block: lines `$ COMMAND` followed by
//! what the command prints (standard output and standard error, in the order
//! printed). `$ recc ARGS` runs the recc built with these tests; any other
//! command runs through `sh -c`. Each page runs in a scratch folder of its own, in order, so a
//! later example can read what an earlier one wrote; the scratch folder sees
//! the workspace's `models/`, `stdlib/`, `docs/`, `zoo/` and `tests/`, the files of
//! `docs/examples/`, and `data/` for `../shared/data`.
//!
//! In the shown output:
//! - a line `...` stands for any number of lines;
//! - `[..]` inside a line stands for any text on that line;
//! - durations (`3.3 s`, `12 ms`) are not compared, only that one is there;
//! - a command whose output shows an error, a line starting `error:`, a
//!   compiler error (`  × `) or a `--json` error object (`  "error": {`),
//!   must exit with a non-zero status, any other must exit 0.
//!
//! A block whose commands read `data/` is skipped (and says so) when
//! `../shared/data` is absent. A block right after the comment
//! `<!-- checked on a machine without a CUDA driver -->` is checked only where
//! the device probe finds no driver. A block right after `<!-- not run:
//! REASON -->` is not run; the reason is kept beside it on the page.
//!
//! `RECC_BLESS_DOCS=1` rewrites the shown output of every failing example
//! with what the command printed, keeping `...` lines and the lines that
//! still match; review the diff. `RECC_DOCS_ONLY=docs/data.md` runs one page.

use recc_cuda::device::{self, Missing};
use std::path::{Path, PathBuf};
use std::process::Command;

const NO_DRIVER: &str = "<!-- checked on a machine without a CUDA driver -->";
const NOT_RUN: &str = "<!-- not run:";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn shared_data() -> PathBuf {
    workspace().join("../shared/data")
}

/// One `$ COMMAND` of a block and the lines shown after it.
struct Example {
    /// 1-based line of the `$` line on its page.
    line: usize,
    command: String,
    /// 0-based index of the first shown output line on the page.
    first: usize,
    /// The block's indent, given back to rewritten lines.
    indent: usize,
    expected: Vec<String>,
}

struct Block {
    line: usize,
    examples: Vec<Example>,
    needs_no_driver: bool,
    not_run: bool,
}

fn blocks(page: &str) -> Vec<Block> {
    let lines: Vec<&str> = page.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "```console" {
            i += 1;
            continue;
        }
        // A block inside a list item is indented; its lines lose that indent.
        let indent = lines[i].len() - lines[i].trim_start().len();
        let start = i;
        let before = if start > 0 {
            lines[start - 1].trim()
        } else {
            ""
        };
        let mut examples: Vec<Example> = Vec::new();
        i += 1;
        while i < lines.len() && lines[i].trim() != "```" {
            let line = lines[i].get(indent..).unwrap_or("");
            if let Some(command) = line.strip_prefix("$ ") {
                examples.push(Example {
                    line: i + 1,
                    command: command.to_string(),
                    first: i + 1,
                    indent,
                    expected: Vec::new(),
                });
            } else if let Some(ex) = examples.last_mut() {
                ex.expected.push(line.to_string());
            }
            i += 1;
        }
        found.push(Block {
            line: start + 1,
            examples,
            needs_no_driver: before == NO_DRIVER,
            not_run: before.starts_with(NOT_RUN),
        });
        i += 1;
    }
    found
}

/// Durations vary from run to run: `3.3 s`, `0.1 s`, `12 ms` become `<time>`.
fn without_durations(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_number =
            bytes[i].is_ascii_digit() && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric()));
        if starts_number {
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j] == b'.') {
                j += 1;
            }
            let rest = &line[j..];
            let unit = [" ms", " s", "ms", "s"].into_iter().find(|u| {
                rest.starts_with(u)
                    && !rest[u.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_alphanumeric() || c == '/')
            });
            if let Some(unit) = unit {
                out.push_str("<time>");
                i = j + unit.len();
                continue;
            }
            out.push_str(&line[i..j]);
            i = j;
            continue;
        }
        let c = line[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Whether one shown line matches one printed line: `[..]` matches any text.
fn line_matches(want: &str, got: &str) -> bool {
    let want = without_durations(want);
    let got = without_durations(got);
    let parts: Vec<&str> = want.split("[..]").collect();
    if parts.len() == 1 {
        return want == got;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !got.starts_with(first) || !got[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &got[first.len()..got.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `got` matches `want`, where a `...` line in `want` matches any run
/// of lines.
fn matches(want: &[String], got: &[&str]) -> bool {
    match want.split_first() {
        None => got.is_empty(),
        Some((w, rest)) if w.trim() == "..." => (0..=got.len()).any(|k| matches(rest, &got[k..])),
        Some((w, rest)) => {
            got.first().is_some_and(|g| line_matches(w, g)) && matches(rest, &got[1..])
        }
    }
}

/// The shown lines rewritten to what was printed: `...` lines stay and take
/// as many printed lines as leave the rest one for one; shown lines that
/// still match stay as they are.
fn blessed(want: &[String], got: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut g = 0;
    for (w_at, w) in want.iter().enumerate() {
        if w.trim() == "..." {
            let literal_after = want[w_at + 1..]
                .iter()
                .filter(|l| l.trim() != "...")
                .count();
            let take = got.len().saturating_sub(g).saturating_sub(literal_after);
            g += take;
            out.push(w.clone());
            continue;
        }
        match got.get(g) {
            Some(line) if line_matches(w, line) => out.push(w.clone()),
            Some(line) => out.push(line.to_string()),
            None => {}
        }
        g += 1;
    }
    out.extend(got.iter().skip(g).map(|l| l.to_string()));
    out
}

fn scratch_dir(page: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("docs-examples")
        .join(page.replace(['/', '.'], "_"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let ws = workspace();
    for name in ["models", "stdlib", "docs", "zoo", "tests"] {
        link(&ws.join(name), &dir.join(name));
    }
    if shared_data().is_dir() {
        link(&shared_data(), &dir.join("data"));
    }
    if let Ok(entries) = std::fs::read_dir(ws.join("docs/examples")) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                let to = dir.join(entry.file_name());
                std::fs::copy(&path, &to).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }
    dir
}

fn link(from: &Path, to: &Path) {
    #[cfg(unix)]
    std::os::unix::fs::symlink(from, to)
        .unwrap_or_else(|e| panic!("{} -> {}: {e}", to.display(), from.display()));
}

fn run(command: &str, dir: &Path) -> (i32, String) {
    // Both streams go to one pipe, so the lines come in the order printed.
    let mut sh = Command::new("sh");
    match command.strip_prefix("recc ") {
        Some(args) => {
            let args = shlex::split(args).unwrap_or_else(|| panic!("cannot split `{command}`"));
            sh.arg("-c")
                .arg("exec \"$0\" \"$@\" 2>&1")
                .arg(env!("CARGO_BIN_EXE_recc"))
                .args(args)
                .env("NO_COLOR", "1")
                .env("RECC_PROGRESS", "never");
        }
        None => {
            sh.arg("-c").arg(format!("exec 2>&1; {command}"));
        }
    }
    let out = sh
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

fn reads_shared_data(block: &Block) -> bool {
    block.examples.iter().any(|ex| {
        ex.command
            .split_whitespace()
            .any(|word| word.contains("data/") && !word.contains("docs/"))
    })
}

/// Runs every example of one page; returns the failures, one message each.
fn check_page(page: &str) -> Vec<String> {
    let path = workspace().join(page);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
    let bless = std::env::var_os("RECC_BLESS_DOCS").is_some_and(|v| v == "1");
    let dir = scratch_dir(page);
    let no_driver = matches!(device::probe(), Err(Missing::Driver { .. }));
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Rewrites are applied from the bottom up so earlier indices stay valid.
    let mut rewrites: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let mut failures = Vec::new();
    for block in blocks(&text) {
        if block.not_run {
            continue;
        }
        if block.needs_no_driver && !no_driver {
            eprintln!(
                "{page}:{}: skipped: this machine has a CUDA driver",
                block.line
            );
            continue;
        }
        if reads_shared_data(&block) && !shared_data().is_dir() {
            eprintln!("{page}:{}: skipped: ../shared/data is absent", block.line);
            continue;
        }
        for ex in &block.examples {
            let (code, printed) = run(&ex.command, &dir);
            let got: Vec<&str> = printed.lines().collect();
            let shows_error = ex.expected.iter().any(|l| {
                l.starts_with("error:")
                    || l.starts_with("  × ")
                    || l.trim_start().starts_with("\"error\": {")
            });
            let status_ok = if shows_error { code != 0 } else { code == 0 };
            if matches(&ex.expected, &got) && status_ok {
                continue;
            }
            failures.push(format!(
                "{page}:{}: `{}` exited {code} and printed\n{printed}\nbut the page shows\n{}\n",
                ex.line,
                ex.command,
                ex.expected.join("\n")
            ));
            if bless {
                let pad = " ".repeat(ex.indent);
                let new = blessed(&ex.expected, &got)
                    .into_iter()
                    .map(|l| if l.is_empty() { l } else { format!("{pad}{l}") })
                    .collect();
                rewrites.push((ex.first, ex.expected.len(), new));
            }
        }
    }
    if bless && !rewrites.is_empty() {
        for (first, len, new) in rewrites.into_iter().rev() {
            lines.splice(first..first + len, new);
        }
        let mut out = lines.join("\n");
        out.push('\n');
        std::fs::write(&path, out).unwrap_or_else(|e| panic!("{page}: {e}"));
        eprintln!("{page}: rewritten; review the diff");
    }
    failures
}

/// The pages with examples; a test below checks that none is missing.
const PAGES: &[&str] = &[
    "README.md",
    "docs/ARCHITECTURE.md",
    "docs/cuda.md",
    "docs/data.md",
    "docs/json.md",
    "docs/language.md",
    "docs/repl.md",
    "docs/training.md",
    "docs/models/biased_mf.md",
    "docs/models/fm.md",
    "docs/models/mf.md",
    "docs/models/mixture_mf.md",
    "docs/models/ncf.md",
    "docs/models/nmf.md",
    "docs/models/poincare.md",
    "docs/models/ranking.md",
    "docs/models/side_mf.md",
    "docs/models/svdpp.md",
    "docs/models/temporal_mf.md",
    "docs/models/variational_mf.md",
    "docs/models/word2vec_mf.md",
];

fn check(page: &str) {
    if let Ok(only) = std::env::var("RECC_DOCS_ONLY") {
        if !only.split(',').any(|p| p == page) {
            return;
        }
    }
    let failures = check_page(page);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! page_tests {
    ($($name:ident => $page:expr),* $(,)?) => {
        $(#[test] fn $name() { check($page); })*
    };
}

page_tests! {
    readme => "README.md",
    architecture => "docs/ARCHITECTURE.md",
    cuda => "docs/cuda.md",
    data => "docs/data.md",
    json => "docs/json.md",
    language => "docs/language.md",
    repl => "docs/repl.md",
    training => "docs/training.md",
    model_biased_mf => "docs/models/biased_mf.md",
    model_fm => "docs/models/fm.md",
    model_mf => "docs/models/mf.md",
    model_mixture_mf => "docs/models/mixture_mf.md",
    model_ncf => "docs/models/ncf.md",
    model_nmf => "docs/models/nmf.md",
    model_poincare => "docs/models/poincare.md",
    model_ranking => "docs/models/ranking.md",
    model_side_mf => "docs/models/side_mf.md",
    model_svdpp => "docs/models/svdpp.md",
    model_temporal_mf => "docs/models/temporal_mf.md",
    model_variational_mf => "docs/models/variational_mf.md",
    model_word2vec_mf => "docs/models/word2vec_mf.md",
}

#[test]
fn every_page_with_examples_is_checked() {
    let ws = workspace();
    let mut pages = vec![ws.join("README.md")];
    for dir in ["docs", "docs/models"] {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(ws.join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        entries.sort();
        pages.extend(entries);
    }
    for path in pages {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let name = path
            .strip_prefix(&ws)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if text.lines().any(|l| l.trim() == "```console") {
            assert!(
                PAGES.contains(&name.as_str()),
                "{name} has examples but is not in PAGES"
            );
        }
    }
    assert!(PAGES.len() >= 10);
}

#[test]
fn a_recc_command_in_a_fence_other_than_console_shows_no_output() {
    // An example with output belongs in a console block, where it is run;
    // a `sh` block is a list of commands to type, with no output shown.
    let ws = workspace();
    for page in PAGES {
        let text = std::fs::read_to_string(ws.join(page)).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.trim_start().starts_with("$ recc ") || in_console_block(&text, n),
                "{page}:{}: `$ recc` outside a ```console block is never run",
                n + 1
            );
        }
    }
}

fn in_console_block(text: &str, line: usize) -> bool {
    let mut open: Option<&str> = None;
    for l in text.lines().take(line) {
        if let Some(fence) = l.trim().strip_prefix("```") {
            open = if open.is_some() { None } else { Some(fence) };
        }
    }
    open == Some("console")
}

#[test]
fn wildcards_match_what_they_say_and_nothing_else() {
    let want: Vec<String> = ["a", "...", "d"].iter().map(|s| s.to_string()).collect();
    assert!(matches(&want, &["a", "d"]));
    assert!(matches(&want, &["a", "b", "c", "d"]));
    assert!(!matches(&want, &["a", "b"]));
    assert!(!matches(&want, &["x", "d"]));
    assert!(line_matches("wrote [..].recm", "wrote bmf.recm"));
    assert!(!line_matches("wrote [..].recm", "wrote bmf.csv"));
    assert!(line_matches("epoch 1  0.1 s", "epoch 1  12.5 s"));
    assert!(line_matches("(3.3 s of training)", "(0.9 s of training)"));
    assert!(!line_matches("rmse 0.8854", "rmse 0.8855"));
    assert!(!line_matches("25 epochs", "26 epochs"));
    assert!(!line_matches("0.5 M updates/s", "0.7 M updates/s"));
}

#[test]
fn blessing_keeps_wildcards_and_matching_lines() {
    let want: Vec<String> = ["head", "...", "rmse 0.9", "wrote m (1.0 s)"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let got = ["head", "e1", "e2", "rmse 0.8", "wrote m (2.0 s)"];
    assert_eq!(
        blessed(&want, &got),
        vec!["head", "...", "rmse 0.8", "wrote m (1.0 s)"]
    );
}

#[test]
fn a_block_inside_a_list_item_is_read_without_its_indent() {
    let page =
        "- a point:\n\n  ```console\n  $ recc eval m.recm\n  5758 rows: rmse 0.8713\n  ```\n";
    let found = blocks(page);
    assert_eq!(found.len(), 1);
    let ex = &found[0].examples[0];
    assert_eq!(ex.command, "recc eval m.recm");
    assert_eq!(ex.expected, vec!["5758 rows: rmse 0.8713"]);
    assert_eq!((ex.line, ex.indent), (4, 2));
}
