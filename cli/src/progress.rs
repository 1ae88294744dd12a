//! The trainer's progress for people: a bar over each epoch's examples with
//! the running loss and examples per second, and one line per epoch; and
//! Ctrl-C while training, which asks the trainer to stop ([`catch_interrupts`]).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use recc_runtime::modelfile::EpochRecord;
use recc_runtime::train::{Observer, TrainConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set by the first Ctrl-C while interrupts are caught.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells
/// report it.
pub const EXIT_INTERRUPTED: u8 = 130;

#[cfg(unix)]
extern "C" fn on_interrupt(_: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe and ends the process at once.
        unsafe { libc::_exit(EXIT_INTERRUPTED as libc::c_int) };
    }
    let say = b"\ninterrupted: stopping after the current block (Ctrl-C again to quit now)\n";
    // SAFETY: `write` is async-signal-safe; the buffer is a static string.
    unsafe {
        libc::write(2, say.as_ptr().cast(), say.len());
    }
}

/// From now until [`release_interrupts`], the first Ctrl-C asks training to
/// stop at the end of its current block (see [`interrupted`]) and a second
/// one ends the process at once with status 130.
pub fn catch_interrupts() {
    INTERRUPTED.store(false, Ordering::SeqCst);
    #[cfg(unix)]
    // SAFETY: the handler only touches an atomic and calls the
    // async-signal-safe `write` and `_exit`.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

/// Ctrl-C ends the process again, as it did before [`catch_interrupts`].
pub fn release_interrupts() {
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition has no precondition.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

/// Has Ctrl-C been pressed since [`catch_interrupts`]?
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Which rows a run's per-epoch figure is measured on: `valid` when it
/// stops early on held-out rows, else `test`.
pub fn watched(config: &TrainConfig) -> &'static str {
    if config.early_stopping > 0 {
        "valid"
    } else {
        "test"
    }
}

/// The trainer's progress: a bar on the terminal, and its notes and epoch
/// lines through one printer (standard error for the commands; the REPL's
/// own writer, so that a transcript holds them in order).
pub struct Progress<'a> {
    bar: Option<ProgressBar>,
    /// When the current epoch began, for examples per second.
    epoch_started: Instant,
    /// Printed before each epoch line (the fold of a cross-validation).
    label: String,
    /// Which rows the per-epoch figure is measured on: `test` or `valid`.
    watched: &'static str,
    /// No epoch lines (notes are still said).
    quiet: bool,
    /// Where notes and epoch lines go, a line at a time.
    print: Box<dyn FnMut(&str) + 'a>,
}

impl<'a> Progress<'a> {
    /// Bar and epoch lines on standard error, unless `quiet`.
    pub fn on_stderr(quiet: bool, label: &str, watched: &'static str) -> Progress<'a> {
        Progress::new(
            !quiet,
            quiet,
            label,
            watched,
            Box::new(|line| eprintln!("{line}")),
        )
    }

    /// Epoch lines and notes through `print`, and a bar on standard error
    /// if `bar`.
    pub fn through(
        print: impl FnMut(&str) + 'a,
        bar: bool,
        label: &str,
        watched: &'static str,
    ) -> Progress<'a> {
        Progress::new(bar, false, label, watched, Box::new(print))
    }

    fn new(
        bar: bool,
        quiet: bool,
        label: &str,
        watched: &'static str,
        print: Box<dyn FnMut(&str) + 'a>,
    ) -> Progress<'a> {
        let bar = bar.then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {per_sec} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            epoch_started: Instant::now(),
            label: if label.is_empty() {
                String::new()
            } else {
                format!("{label}: ")
            },
            watched,
            quiet,
            print,
        }
    }

    /// Print a line without tearing the bar.
    fn say(&mut self, line: &str) {
        let print = &mut self.print;
        match &self.bar {
            Some(bar) => bar.suspend(|| print(line)),
            None => print(line),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress<'_> {
    fn stop_requested(&mut self) -> bool {
        interrupted()
    }

    fn note(&mut self, text: &str) {
        self.say(&format!("note: {text}"));
    }

    /// Ctrl-C stops training at the end of a block; the caller keeps what
    /// there is (`Trained::interrupted`).
    fn started(&mut self) {
        self.epoch_started = Instant::now();
        catch_interrupts();
    }

    fn finished(&mut self) {
        release_interrupts();
        Progress::finish(self);
    }

    fn progress(&mut self, epoch: usize, done: usize, total: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            if bar.length() != Some(total as u64) || done < bar.position() as usize {
                bar.set_length(total as u64);
                bar.reset();
            }
            let rate = done as f64 / self.epoch_started.elapsed().as_secs_f64().max(1e-3);
            bar.set_prefix(format!("{}epoch {epoch}", self.label));
            bar.set_position(done as u64);
            bar.set_message(format!("loss {loss:.4}  {:.0}k examples/s", rate / 1000.0));
        }
    }

    fn epoch(&mut self, record: &EpochRecord, monitor: &str, epochs: usize) {
        // The next epoch's examples start now (its validation is done).
        self.epoch_started = Instant::now();
        if self.quiet {
            return;
        }
        let width = epochs.to_string().len();
        let figure = record
            .validation
            .map(|v| format!("  {} {monitor} {v:.4}", self.watched))
            .unwrap_or_default();
        let line = format!(
            "{}epoch {:>width$}/{epochs}  loss {:.4}{figure}  {:.1} s",
            self.label, record.epoch, record.loss, record.seconds
        );
        self.say(&line);
    }
}
