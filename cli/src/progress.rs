//! Progress for people: a bar over each epoch's examples with the running
//! loss and examples per second, and one line per epoch; a bar over the
//! users while a model is measured on the whole catalogue ([`StepBar`]); and
//! Ctrl-C while training, which asks the trainer to stop ([`catch_interrupts`]).
//!
//! Bars are drawn on standard error when it is a terminal. `RECC_PROGRESS`
//! overrides that: `always` draws them whatever standard error is (for
//! tests and logs), `never` draws none, `auto` (the default) decides by the
//! terminal. `-q` and `--json` turn them off whatever the variable says.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use recc_runtime::modelfile::EpochRecord;
use recc_runtime::progress::StepObserver;
use recc_runtime::train::{Observer, TrainConfig};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The variable that forces bars on or off: `always`, `never` or `auto`.
pub const PROGRESS_VAR: &str = "RECC_PROGRESS";

/// Where bars are drawn: standard error when it is a terminal, or as
/// [`PROGRESS_VAR`] says.
fn draw_target() -> ProgressDrawTarget {
    let setting = std::env::var(PROGRESS_VAR).unwrap_or_default();
    match setting.trim().to_ascii_lowercase().as_str() {
        "never" => ProgressDrawTarget::hidden(),
        "always" if !std::io::stderr().is_terminal() => {
            ProgressDrawTarget::term_like_with_hz(Box::new(ForcedStderr), 20)
        }
        _ => ProgressDrawTarget::stderr(),
    }
}

/// Standard error drawn on as if it were an 80-column terminal, for bars
/// forced on where it is not one.
#[derive(Debug)]
struct ForcedStderr;

impl ForcedStderr {
    fn put(&self, text: &str) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(text.as_bytes())
    }
}

impl TermLike for ForcedStderr {
    fn width(&self) -> u16 {
        80
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(&format!("\x1b[{n}A"))
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(&format!("\x1b[{n}B"))
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(&format!("\x1b[{n}C"))
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(&format!("\x1b[{n}D"))
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(&format!("{s}\n"))
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }

    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A bar of `template`, or none when `shown` is false. It draws nothing
/// until [`show`] gives it somewhere to draw, so that its first frame has
/// its length and prefix.
fn bar(shown: bool, template: &str) -> Option<ProgressBar> {
    shown.then(|| {
        let bar = ProgressBar::hidden();
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar
    })
}

/// Start drawing `bar`, set up while hidden.
fn show(bar: &ProgressBar) {
    if bar.is_hidden() {
        bar.set_draw_target(draw_target());
        bar.tick();
    }
}

/// The bar of a step that is not training: ranking the catalogue for each
/// test user, as `eval`, `cv` and `train` do for ranking models.
pub struct StepBar {
    bar: Option<ProgressBar>,
    /// Printed before the step's name (the fold of a cross-validation).
    label: String,
}

impl StepBar {
    /// A bar on standard error, unless `quiet`.
    pub fn on_stderr(quiet: bool, label: &str) -> StepBar {
        StepBar {
            bar: bar(!quiet, "{prefix} [{wide_bar}] {pos}/{len} {msg}"),
            label: prefix_label(label),
        }
    }
}

impl StepObserver for StepBar {
    fn begin(&self, what: &str, unit: &str, total: usize) {
        if let Some(bar) = &self.bar {
            bar.set_draw_target(ProgressDrawTarget::hidden());
            bar.reset();
            bar.set_length(total as u64);
            bar.set_prefix(format!("{}{what}", self.label));
            bar.set_message(unit.to_string());
            show(bar);
        }
    }

    fn advance(&self, units: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(units as u64);
        }
    }

    fn end(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `label: `, or nothing for no label.
fn prefix_label(label: &str) -> String {
    if label.is_empty() {
        String::new()
    } else {
        format!("{label}: ")
    }
}

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
    /// The bar of measuring the trained model, after the epochs.
    measuring: StepBar,
    /// When the current epoch began, for examples per second.
    epoch_started: Instant,
    /// What one pass over the data is called, and what its bar counts:
    /// SGD's epochs of examples, or a solver's sweeps of rows.
    round: &'static str,
    unit: &'static str,
    /// Printed before each epoch line (the fold of a cross-validation).
    label: String,
    /// Printed before the bar's epoch: the label, and the fold's place
    /// among the folds.
    bar_label: String,
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
        // One rate, examples per second over the epoch so far, is in the
        // message; the bar shows none of its own.
        let shown = bar;
        let bar = crate::progress::bar(shown, "{prefix} [{wide_bar}] {pos}/{len} {msg}");
        Progress {
            bar,
            measuring: StepBar::on_stderr(!shown, label),
            epoch_started: Instant::now(),
            round: "epoch",
            unit: "examples",
            bar_label: prefix_label(label),
            label: prefix_label(label),
            watched,
            quiet,
            print,
        }
    }

    /// The bar also says this is the `number`th of `folds` folds.
    pub fn fold_of(mut self, number: usize, folds: usize) -> Progress<'a> {
        let label = self.label.trim_end_matches(": ");
        let counted = format!("{label} ({number}/{folds})");
        self.bar_label = prefix_label(&counted);
        self.measuring.label = prefix_label(&counted);
        self
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

    fn measuring(&self) -> &dyn StepObserver {
        &self.measuring
    }

    fn solving(&mut self) {
        self.round = "sweep";
        self.unit = "rows";
    }

    fn progress(&mut self, epoch: usize, done: usize, total: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            if bar.length() != Some(total as u64) || done < bar.position() as usize {
                bar.set_length(total as u64);
                bar.reset();
            }
            let rate = done as f64 / self.epoch_started.elapsed().as_secs_f64().max(1e-3);
            bar.set_prefix(format!("{}{} {epoch}", self.bar_label, self.round));
            bar.set_position(done as u64);
            // A solver knows its loss only at a sweep's end.
            let loss = if loss.is_finite() {
                format!("loss {loss:.4}  ")
            } else {
                String::new()
            };
            bar.set_message(format!("{loss}{:.0}k {}/s", rate / 1000.0, self.unit));
            show(bar);
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
            "{}{} {:>width$}/{epochs}  loss {:.4}{figure}  {:.1} s",
            self.label, self.round, record.epoch, record.loss, record.seconds
        );
        self.say(&line);
    }
}
