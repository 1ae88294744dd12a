//! Progress bars, forced on with `RECC_PROGRESS=always` (the tests' stderr
//! is a pipe, where bars are otherwise off): what they show for training,
//! for measuring a ranking model over the catalogue and for each fold of a
//! cross-validation, and when they stay off.

use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// The workspace root, where `models/...` resolves.
fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `recc ARGS` with `RECC_PROGRESS` set to `progress` (unset for `None`).
fn recc(args: &[&str], progress: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recc"));
    cmd.args(args)
        .current_dir(workspace())
        .env("NO_COLOR", "1")
        .env_remove("RECC_PROGRESS");
    if let Some(p) = progress {
        cmd.env("RECC_PROGRESS", p);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run recc: {e}"));
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(run.code, 0, "{}\n--- stderr\n{}", run.stdout, run.stderr);
    run
}

/// Every frame a bar drew, and every line printed, with the terminal's
/// control sequences taken out.
fn frames(stderr: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = stderr.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters, then one final letter.
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            plain.push('\n');
        } else if c == '\r' {
            plain.push('\n');
        } else {
            plain.push(c);
        }
    }
    plain
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn temp() -> TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"))
}

fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("temp path is not UTF-8: {}", p.display()))
}

/// A ranking model trained for one epoch, quietly.
fn ranking_model(dir: &Path) -> String {
    let model = dir.join("bpr.recm");
    let path = path_str(&model).to_string();
    recc(
        &[
            "train",
            "models/bpr_mf.rec",
            "--epochs",
            "1",
            "-q",
            "-o",
            &path,
        ],
        Some("always"),
    );
    path
}

#[test]
fn the_training_bar_shows_one_rate() {
    let dir = temp();
    let model = dir.path().join("mf.recm");
    let run = recc(
        &[
            "train",
            "models/mf.rec",
            "--epochs",
            "1",
            "-o",
            path_str(&model),
        ],
        Some("always"),
    );
    let bars: Vec<String> = frames(&run.stderr)
        .into_iter()
        .filter(|f| f.starts_with("epoch 1 ["))
        .collect();
    assert!(!bars.is_empty(), "no training bar:\n{}", run.stderr);
    for bar in &bars {
        assert!(bar.contains("/23033"), "{bar}");
        assert_eq!(bar.matches("/s").count(), 1, "more than one rate: {bar}");
        assert!(bar.ends_with("examples/s"), "{bar}");
    }
}

#[test]
fn eval_of_a_ranking_model_shows_the_users_ranked() {
    let dir = temp();
    let model = ranking_model(dir.path());
    let run = recc(&["eval", &model], Some("always"));
    let bars: Vec<String> = frames(&run.stderr)
        .into_iter()
        .filter(|f| f.starts_with("ranking ["))
        .collect();
    assert!(!bars.is_empty(), "no ranking bar:\n{}", run.stderr);
    assert!(bars.iter().all(|b| b.ends_with("/600 users")), "{bars:?}");
    assert!(bars[0].contains("] 0/600"), "{bars:?}");
    // The table is on stdout, untouched by the bar.
    assert!(run.stdout.starts_with("users"), "{}", run.stdout);
}

#[test]
fn bars_stay_off_with_quiet_json_never_and_off_a_terminal() {
    let dir = temp();
    let model = ranking_model(dir.path());
    let cases: [(&[&str], Option<&str>); 4] = [
        (&["-q"], Some("always")),
        (&["--json"], Some("always")),
        (&[], Some("never")),
        // The tests' stderr is a pipe: no bar unless forced.
        (&[], None),
    ];
    for (flags, progress) in cases {
        let mut args = vec!["eval", model.as_str()];
        args.extend_from_slice(flags);
        let run = recc(&args, progress);
        assert!(
            !run.stderr.contains("ranking"),
            "{flags:?} {progress:?}:\n{}",
            run.stderr
        );
    }
}

#[test]
fn cv_bars_say_which_fold_of_how_many_and_show_its_ranking() {
    let run = recc(
        &[
            "cv",
            "models/bpr_mf.rec",
            "--split",
            "kfold:2",
            "--epochs",
            "1",
        ],
        Some("always"),
    );
    let frames = frames(&run.stderr);
    for fold in 1..=2 {
        let label = format!("fold {fold} ({fold}/2): ");
        assert!(
            frames
                .iter()
                .any(|f| f.starts_with(&format!("{label}epoch 1 ["))),
            "no training bar for fold {fold}:\n{frames:#?}"
        );
        assert!(
            frames
                .iter()
                .any(|f| f.starts_with(&format!("{label}ranking ["))),
            "no ranking bar for fold {fold}:\n{frames:#?}"
        );
    }
    // The epoch lines keep their plain label.
    assert!(
        frames.iter().any(|f| f.starts_with("fold 1: epoch 1/1")),
        "{frames:#?}"
    );
}
