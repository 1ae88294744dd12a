//! The REPL's golden transcripts: every `tests/repl/*.txt` is replayed with
//! `recc repl --check` and must match; the MovieLens ones under
//! `tests/repl/movielens/` run when the data is there. Plus the behaviour
//! of `--check` itself (a readable diff, `--bless`), of `--keep-going`, and
//! the walk-through in docs/repl.md, which must be its transcript word for
//! word.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn recc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_recc"))
}

/// A scratch directory laid out as the transcripts expect: `models/` and
/// `tests/` of the repository and, when MovieLens is there, `data/`, so that
/// what a session writes stays out of the repository.
fn scratch() -> tempfile::TempDir {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot make a scratch directory: {e}"),
    };
    for (name, target) in [
        ("models", root().join("models")),
        ("tests", root().join("tests")),
        ("data", movielens_root()),
    ] {
        if target.exists() {
            if let Err(e) = std::os::unix::fs::symlink(&target, dir.path().join(name)) {
                panic!("cannot link {}: {e}", target.display());
            }
        }
    }
    dir
}

/// Where the shared data sets live (../shared/data beside the repository).
fn movielens_root() -> PathBuf {
    root().join("..").join("shared").join("data")
}

fn transcripts(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect(),
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    };
    found.sort();
    found
}

fn run(mut command: Command, cwd: &Path, stdin: Option<&str>) -> Output {
    command
        .current_dir(cwd)
        .env_remove("EDITOR")
        .env_remove("VISUAL");
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot run recc: {e}"),
    };
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        if let Err(e) = pipe.write_all(text.as_bytes()) {
            panic!("cannot write to recc: {e}");
        }
    }
    match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => panic!("recc did not finish: {e}"),
    }
}

/// Replay every transcript in `dir`, in parallel; panic listing each that
/// differs, with its diff.
fn check_all(dir: &Path) -> usize {
    let files = transcripts(dir);
    let scratch_dirs: Vec<tempfile::TempDir> = files.iter().map(|_| scratch()).collect();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .zip(&scratch_dirs)
            .map(|(file, cwd)| {
                s.spawn(move || {
                    let mut c = recc();
                    c.arg("repl").arg("--check").arg(file);
                    let out = run(c, cwd.path(), None);
                    (!out.status.success()).then(|| {
                        format!(
                            "{}\n{}{}",
                            file.display(),
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        )
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap_or_else(|_| Some("a check panicked".into())))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} transcripts differ:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
    files.len()
}

#[test]
fn every_transcript_replays_as_recorded() {
    let n = check_all(&root().join("tests").join("repl"));
    assert!(n >= 15, "only {n} transcripts under tests/repl");
}

#[test]
fn the_movielens_walk_through_replays_as_recorded() {
    if !movielens_root().join("ml-100k").join("u.data").exists() {
        println!(
            "skipped: MovieLens 100K is not at {}",
            movielens_root().join("ml-100k").display()
        );
        return;
    }
    check_all(&root().join("tests").join("repl").join("movielens"));
}

/// The walk-through in docs/repl.md is the transcript the test above
/// replays, line for line.
#[test]
fn the_documented_walk_through_is_its_transcript() {
    let doc = read(&root().join("docs").join("repl.md"));
    let walk = read(
        &root()
            .join("tests")
            .join("repl")
            .join("movielens")
            .join("walkthrough.txt"),
    );
    assert!(
        doc.contains(&walk),
        "docs/repl.md does not contain tests/repl/movielens/walkthrough.txt word for word"
    );
}

fn read(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    }
}

#[test]
fn check_shows_a_readable_diff_and_bless_rewrites() {
    let dir = scratch();
    let recorded = read(&root().join("tests").join("repl").join("redefinition.txt"));
    let changed = recorded.replacen("redefined `R`", "redefined `Q`", 1);
    assert_ne!(changed, recorded, "the transcript lacks the line to change");
    let path = dir.path().join("changed.txt");
    if let Err(e) = std::fs::write(&path, &changed) {
        panic!("cannot write {}: {e}", path.display());
    }

    let mut c = recc();
    c.arg("repl").arg("--check").arg(&path);
    let out = run(c, dir.path(), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("-redefined `Q`\n+redefined `R`\n"),
        "{stderr}"
    );
    assert!(stderr.contains("@@ "), "{stderr}");
    assert!(stderr.contains("--bless"), "{stderr}");

    let mut c = recc();
    c.arg("repl").arg("--check").arg(&path).arg("--bless");
    let out = run(c, dir.path(), None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&path), recorded);

    let mut c = recc();
    c.arg("repl").arg("--check").arg(&path);
    assert!(run(c, dir.path(), None).status.success());
}

/// The input lines of a transcript, as a person would pipe them in.
fn inputs_of(transcript: &str) -> String {
    let mut text = String::new();
    for line in transcript.lines() {
        let input = ["recc> ", "  ...> "]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .or((line == "recc>" || line == "  ...>").then_some(""));
        if let Some(input) = input {
            text.push_str(input);
            text.push('\n');
        }
    }
    text
}

#[test]
fn piped_input_stops_at_the_first_failure_unless_told_to_keep_going() {
    let dir = scratch();
    let recorded = read(&root().join("tests").join("repl").join("error_recovery.txt"));
    let input = inputs_of(&recorded);

    let mut c = recc();
    c.arg("repl").arg("--keep-going");
    let out = run(c, dir.path(), Some(&input));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), recorded);

    let mut c = recc();
    c.arg("repl");
    let out = run(c, dir.path(), Some(&input));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(recorded.starts_with(&*stdout), "{stdout}");
    assert!(
        stdout.len() < recorded.len(),
        "nothing was left out:\n{stdout}"
    );
    // It stopped right after the first failure's report, before the next prompt.
    assert!(stdout.contains("unknown parameter `qq`"), "{stdout}");
    assert!(recorded[stdout.len()..].starts_with("recc> "), "{stdout}");
}

/// `:edit` opens `$EDITOR` on the source and keeps what it saved, if that
/// checks; here the editor is a `sed` that changes one line.
#[test]
fn edit_keeps_a_good_edit_and_refuses_a_bad_one() {
    let dir = scratch();
    let session = |editor: &str| {
        let mut c = recc();
        c.arg("repl").arg("--keep-going");
        let mut out = run_with_editor(
            c,
            dir.path(),
            ":load models/mf.rec\n:edit\n:model\n",
            editor,
        );
        out.stdout.extend(out.stderr);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let good = session("sed -i 's/vec(32)/vec(16)/'");
    assert!(good.contains("param p[user]: vec(16)"), "{good}");
    assert!(!good.contains("vec(32)"), "{good}");
    let bad = session("sed -i 's/q\\[i\\])/w[i])/'");
    assert!(
        bad.contains("the edit does not check; the model is unchanged"),
        "{bad}"
    );
    assert!(bad.contains("let R(u, i) = dot(p[u], q[i])"), "{bad}");
}

fn run_with_editor(mut command: Command, cwd: &Path, stdin: &str, editor: &str) -> Output {
    command
        .current_dir(cwd)
        .env("EDITOR", editor)
        .env_remove("VISUAL");
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot run recc: {e}"),
    };
    if let Some(mut pipe) = child.stdin.take() {
        use std::io::Write;
        if let Err(e) = pipe.write_all(stdin.as_bytes()) {
            panic!("cannot write to recc: {e}");
        }
    }
    match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => panic!("recc did not finish: {e}"),
    }
}

/// `recc repl FILE --data SPEC --split SPEC` does what `:load`, `:data` and
/// `:split` would, before the first prompt.
#[test]
fn the_command_line_loads_a_model_and_data_before_the_first_prompt() {
    let dir = scratch();
    let mut c = recc();
    c.args([
        "repl",
        "models/mf.rec",
        "--data",
        "builtin",
        "--split",
        "user:0.1",
    ]);
    let out = run(c, dir.path(), Some(":train --epochs 1\n"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let loaded = stdout.find("loaded models/mf.rec").unwrap_or(usize::MAX);
    let data = stdout.find("split user:0.1:").unwrap_or(usize::MAX);
    let prompt = stdout.find("recc> :train").unwrap_or(usize::MAX);
    assert!(loaded < data && data < prompt, "{stdout}");
    assert!(stdout.contains("run 1: test mae"), "{stdout}");
    assert!(stdout.contains("(user:0.1)"), "{stdout}");
}

/// A replay already runs every recorded line, so `--keep-going` has nothing
/// to do there and is refused rather than ignored.
#[test]
fn keep_going_is_refused_with_check() {
    let dir = scratch();
    let out = run(
        {
            let mut c = recc();
            c.args(["repl", "--check", "x.txt", "--keep-going"]);
            c
        },
        dir.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--keep-going"), "stderr: {stderr}");
}

/// `:train` reads the solver flags of `recc train`, with the same refusals.
#[test]
fn train_in_the_repl_refuses_a_solver_the_model_cannot_use() {
    let dir = scratch();
    let mut c = recc();
    c.args([
        "repl",
        "--keep-going",
        "models/bpr_mf.rec",
        "--data",
        "builtin",
    ]);
    let out = run(
        c,
        dir.path(),
        Some(":train --solver als\n:train --sweeps 3\n:train --solver gibbs --epochs 2\n"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for says in [
        "`solver: als` needs a table the loss is affine in, and this model has none",
        "--sweeps is a setting of --solver als, and this run is fitted with SGD",
        "--epochs is a setting of SGD, and this run is fitted with Gibbs (--solver gibbs)",
    ] {
        assert!(stdout.contains(says), "{says}\n{stdout}");
    }
    assert!(!stdout.contains("run 1:"), "{stdout}");
}
