//! No input makes `recc repl` panic: every line of the recorded transcripts,
//! mutated (cut, spliced, doubled, with stray brackets, quotes, control
//! characters and tokens of the language), is fed to one session with
//! `--keep-going`. Each line must be answered or refused with a message,
//! and the session must end normally.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The input lines of every transcript under `tests/repl/` (not MovieLens).
fn recorded_inputs() -> Vec<String> {
    let dir = root().join("tests").join("repl");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect(),
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    };
    files.sort();
    let mut lines = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => panic!("cannot read {}: {e}", f.display()),
        };
        for line in text.lines() {
            if let Some(input) = line
                .strip_prefix("recc> ")
                .or_else(|| line.strip_prefix("  ...> "))
            {
                lines.push(input.to_string());
            }
        }
    }
    assert!(
        lines.len() > 100,
        "too few recorded inputs: {}",
        lines.len()
    );
    lines
}

const PIECES: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "#",
    "=",
    "~",
    "+",
    "*",
    "-",
    "/",
    "^",
    "0",
    "1e39",
    "-1",
    "3.5",
    "NaN",
    "inf",
    "18446744073709551616",
    "p",
    "q",
    "R",
    "u",
    "i",
    "r",
    "user",
    "item",
    "vec(0)",
    "vec(100000)",
    "dot(",
    "mean(",
    "sigmoid",
    "let ",
    "param ",
    "input ",
    "fn ",
    "loss ",
    "prior ",
    "penalty ",
    "fit ",
    "model ",
    "use ",
    "stdlib.",
    "bag(",
    "history(",
    "real",
    ":",
    ":train",
    ":data",
    ":split",
    ":runs",
    ":compare",
    ":diff",
    ":help",
    ":ir",
    "--grad",
    "-k",
    "--epochs",
    "--lr",
    " ",
    "\t",
    "\u{1b}[2J",
    "\u{0}",
    "\u{7f}",
    "é",
    "\u{202e}",
    "\u{feff}",
    "../",
    "/dev/null",
    "*",
];

/// One mutation of `line`.
fn mutate(rng: &mut StdRng, line: &str, others: &[String]) -> String {
    let chars: Vec<char> = line.chars().collect();
    let at = |rng: &mut StdRng| rng.random_range(0..=chars.len());
    match rng.random_range(0..6) {
        // Cut a piece out.
        0 => {
            let (a, b) = (at(rng), at(rng));
            let (a, b) = (a.min(b), a.max(b));
            chars[..a].iter().chain(&chars[b..]).collect()
        }
        // Insert a piece of the language, or of trouble.
        1 | 2 => {
            let k = at(rng);
            let piece = PIECES[rng.random_range(0..PIECES.len())];
            let mut s: String = chars[..k].iter().collect();
            s.push_str(piece);
            s.extend(&chars[k..]);
            s
        }
        // Splice the head of this line onto the tail of another.
        3 => {
            let other: Vec<char> = others[rng.random_range(0..others.len())].chars().collect();
            let k = at(rng);
            let j = rng.random_range(0..=other.len());
            chars[..k].iter().chain(&other[j..]).collect()
        }
        // Double a piece.
        4 => {
            let (a, b) = (at(rng), at(rng));
            let (a, b) = (a.min(b), a.max(b));
            chars[..b].iter().chain(&chars[a..]).collect()
        }
        // Replace a character with a random one.
        _ => {
            let mut c = chars.clone();
            if !c.is_empty() {
                let k = rng.random_range(0..c.len());
                c[k] = char::from_u32(rng.random_range(0x20..0x3000)).unwrap_or('?');
            }
            c.into_iter().collect()
        }
    }
}

/// Mutated lines that could start long work (training on many epochs,
/// loading large data, an editor) are left out, and so is `:quit`: the point
/// is the parser and the answers, not the trainer's speed.
fn is_left_out(line: &str) -> bool {
    let t = line.trim_start();
    [
        ":train", ":cv", ":edit", ":data", ":open", ":tr", ":c", ":e", ":d", ":o", ":q",
    ]
    .iter()
    .any(|c| t.starts_with(c))
}

/// Does `line` open more brackets than it closes (roughly: strings and
/// comments count too, which only leaves out a few more lines)?
fn opens_more(line: &str) -> bool {
    let opened = line.matches(['(', '[', '{']).count();
    let closed = line.matches([')', ']', '}']).count();
    opened > closed
}

#[test]
fn mutated_transcripts_never_make_the_repl_panic() {
    let recorded = recorded_inputs();
    let mut rng = StdRng::seed_from_u64(20261202);
    // The recorded sessions as they are first (models, data and runs to act
    // on), then mutations of them, each line alone and in bursts.
    let mut input: Vec<String> = recorded
        .iter()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with(":edit") && !t.starts_with(":q") && !l.contains("movielens")
        })
        .cloned()
        .collect();
    let mut mutated = 0;
    while mutated < 3000 {
        let base = &recorded[rng.random_range(0..recorded.len())];
        let mut line = mutate(&mut rng, base, &recorded);
        if rng.random_bool(0.3) {
            line = mutate(&mut rng, &line, &recorded);
        }
        // A line that leaves a bracket open would make every later line
        // part of one statement; such lines come once, at the end.
        if is_left_out(&line) || line.contains(['\n', '\r']) || opens_more(&line) {
            continue;
        }
        input.push(line);
        mutated += 1;
    }
    // Last, lines that leave a bracket open to the end of the input, a very
    // long line and bytes that are not UTF-8.
    input.push("x".repeat(200_000));
    input.push("let R(u, i) = dot(".to_string());
    input.push("(".repeat(10_000));
    let mut bytes = input.join("\n").into_bytes();
    bytes.extend_from_slice(b"\n\xff\xfe garbage \xc3\n");

    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot make a scratch directory: {e}"),
    };
    if let Err(e) = std::os::unix::fs::symlink(root().join("models"), dir.path().join("models")) {
        panic!("cannot link models/: {e}");
    }
    let started = Instant::now();
    let mut child = match Command::new(env!("CARGO_BIN_EXE_recc"))
        .args(["repl", "--keep-going"])
        .current_dir(dir.path())
        .env_remove("EDITOR")
        .env_remove("VISUAL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("cannot run recc: {e}"),
    };
    let Some(mut pipe) = child.stdin.take() else {
        panic!("no stdin pipe");
    };
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        // The REPL may stop reading early only by failing, which the
        // status below reports.
        let _ = pipe.write_all(&bytes);
    });
    let output = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => panic!("recc did not finish: {e}"),
    };
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked") && !stdout.contains("panicked"),
        "the REPL panicked:\n{}",
        stderr.lines().take(40).collect::<Vec<_>>().join("\n")
    );
    assert!(
        output.status.success(),
        "status {:?}; stderr:\n{}",
        output.status,
        stderr.lines().take(40).collect::<Vec<_>>().join("\n")
    );
    // Every line was read and echoed: the session did not stop early.
    // (An empty line is echoed as the prompt without its trailing space.)
    let prompts = stdout
        .lines()
        .filter(|l| l.starts_with("recc>") || l.starts_with("  ...>"))
        .count();
    assert!(
        prompts >= input.len(),
        "{prompts} prompts echoed for {} input lines",
        input.len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the session took {:?}",
        started.elapsed()
    );
}

/// A file that never ends (`/dev/zero`) or is far too large to be a model is
/// refused after a bounded read, by `recc check` and by `:load` alike.
#[test]
fn endless_files_are_refused_not_read_for_ever() {
    let zero = Path::new("/dev/zero");
    if !zero.exists() {
        println!("skipped: this system has no /dev/zero");
        return;
    }
    let started = Instant::now();
    let check = match Command::new(env!("CARGO_BIN_EXE_recc"))
        .args(["check", "/dev/zero"])
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("cannot run recc: {e}"),
    };
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("/dev/zero is larger than 16 MiB"),
        "stderr: {stderr}"
    );
    let mut repl = match Command::new(env!("CARGO_BIN_EXE_recc"))
        .arg("repl")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("cannot run recc: {e}"),
    };
    if let Some(mut pipe) = repl.stdin.take() {
        use std::io::Write;
        let _ = pipe.write_all(b":load /dev/zero\n");
    }
    let output = match repl.wait_with_output() {
        Ok(o) => o,
        Err(e) => panic!("recc did not finish: {e}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "stdout: {stdout}");
    assert!(
        stdout.contains("error: /dev/zero is larger than 16 MiB"),
        "stdout: {stdout}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}
