//! `recc repl` on a real terminal: a pseudo-terminal made by tmux, typed into
//! key by key. Covers what only a terminal has: a statement over several
//! lines, tab completion, an error, Ctrl-C during `:train` and Ctrl-D.
//! Skipped, with the reason printed, where tmux is not installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How long one expected output may take (a debug build trains slowly).
const WAIT: Duration = Duration::from_secs(60);

struct Tmux {
    session: String,
    /// Keeps the history file out of the user's data directory.
    home: tempfile::TempDir,
}

fn tmux(args: &[&str]) -> Option<Output> {
    Command::new("tmux").args(args).output().ok()
}

impl Tmux {
    fn start(command: &str, cwd: &Path) -> Tmux {
        let home = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("no temporary directory: {e}"),
        };
        let session = format!("recc-pty-{}", std::process::id());
        let env = format!(
            "HOME={h} XDG_DATA_HOME={h}/data TERM=xterm-256color",
            h = home.path().display()
        );
        let started = tmux(&[
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "160",
            "-y",
            "50",
            "-c",
            &cwd.display().to_string(),
            &format!("env {env} {command}"),
        ]);
        assert!(
            started.as_ref().is_some_and(|o| o.status.success()),
            "tmux did not start: {started:?}"
        );
        Tmux { session, home }
    }

    /// Type `text` as it is, key by key.
    fn type_text(&self, text: &str) {
        let _ = tmux(&["send-keys", "-t", &self.session, "-l", text]);
    }

    /// Press named keys: `Enter`, `Tab`, `C-c`, `C-d`.
    fn press(&self, key: &str) {
        let _ = tmux(&["send-keys", "-t", &self.session, key]);
    }

    fn screen(&self) -> String {
        tmux(&["capture-pane", "-p", "-t", &self.session, "-S", "-500"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn alive(&self) -> bool {
        tmux(&["has-session", "-t", &self.session]).is_some_and(|o| o.status.success())
    }

    /// Wait until the screen shows `text` `times` times in all.
    fn wait_for_count(&self, text: &str, times: usize) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.matches(text).count() >= times {
                return screen;
            }
            if start.elapsed() > WAIT || !self.alive() {
                panic!("waited for {text:?} ×{times}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = tmux(&["kill-session", "-t", &self.session]);
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn a_terminal_session_edits_completes_fails_interrupts_and_exits() {
    if tmux(&["-V"]).is_none_or(|o| !o.status.success()) {
        eprintln!("skipped: tmux is not installed, and this test needs its pseudo-terminal");
        return;
    }
    let recc = env!("CARGO_BIN_EXE_recc");
    let has_repl = Command::new(recc)
        .args(["repl", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_repl {
        eprintln!("skipped: this build of recc has no `repl` command");
        return;
    }
    let t = Tmux::start(
        &format!("{recc} repl models/biased_mf.rec --data builtin"),
        &workspace(),
    );
    // tmux drops the space after a prompt at the end of a line.
    let prompts = |n| t.wait_for_count("recc>", n);
    prompts(1);

    // A statement over two lines: the bracket left open asks for more.
    t.type_text("sigmoid(");
    t.press("Enter");
    t.type_text("0)");
    t.press("Enter");
    let screen = prompts(2);
    assert!(
        screen.contains("0.5"),
        "sigmoid(0) over two lines:\n{screen}"
    );

    // An error is reported, located, and the prompt comes back.
    t.type_text("sigmoid(1, 2)");
    t.press("Enter");
    let screen = prompts(3);
    assert!(
        screen.contains("takes 1 argument"),
        "no arity error:\n{screen}"
    );

    // Tab completes a command's name: `:tra` is no command, `:train` is.
    t.type_text(":tra");
    t.press("Tab");
    t.type_text(" --epochs 100000");
    t.press("Enter");
    let screen = t.wait_for_count("epoch", 1);
    assert!(screen.contains(":train --epochs 100000"), "{screen}");

    // Ctrl-C stops the run and gives the prompt back.
    std::thread::sleep(Duration::from_millis(500));
    t.press("C-c");
    let screen = prompts(4);
    assert!(t.alive(), "Ctrl-C during :train ended the REPL");
    assert!(screen.contains("interrupted"), "{screen}");

    // Ctrl-C at the prompt clears the line; the REPL stays.
    t.type_text("never_run");
    t.press("C-c");
    let screen = prompts(5);
    assert!(t.alive(), "Ctrl-C at the prompt ended the REPL");
    assert!(
        !screen.contains("`never_run`"),
        "the dropped line ran:\n{screen}"
    );

    // Ctrl-D ends it.
    t.press("C-d");
    let start = Instant::now();
    while t.alive() && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!t.alive(), "Ctrl-D did not end the REPL:\n{}", t.screen());

    // What was typed is kept in the data directory's history, the
    // two-line statement as one entry.
    let history = t.home.path().join("data").join("recc").join("history");
    let kept = std::fs::read_to_string(&history).unwrap_or_default();
    assert!(kept.contains(":train --epochs 100000"), "history:\n{kept}");
    assert!(kept.contains("sigmoid("), "history:\n{kept}");
    assert!(!kept.contains("never_run"), "history:\n{kept}");
}
