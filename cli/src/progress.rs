//! The trainer's progress for people: a bar over each epoch's examples with
//! the running loss and examples per second, and one line per epoch.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use recc_runtime::modelfile::EpochRecord;
use recc_runtime::train::Observer;

pub struct Progress {
    bar: Option<ProgressBar>,
    /// When the current epoch began, for examples per second.
    epoch_started: std::time::Instant,
    /// Printed before each epoch line (the fold of a cross-validation).
    label: String,
    /// Which rows the per-epoch figure is measured on: `test` or `valid`.
    watched: &'static str,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool, label: &str, watched: &'static str) -> Progress {
        let bar = (!quiet).then(|| {
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
            epoch_started: std::time::Instant::now(),
            label: if label.is_empty() {
                String::new()
            } else {
                format!("{label}: ")
            },
            watched,
            quiet,
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
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
        self.epoch_started = std::time::Instant::now();
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
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}
