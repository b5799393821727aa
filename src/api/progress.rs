//! The fit's progress on stderr when `verbose` is set: a bar per epoch, then a line with the
//! epoch's losses; it also relays a search's rule that ends a fit early.

use super::EpochReport;
use crate::train::FitObserver;

/// The `verbose` progress: a bar per epoch on stderr with the samples done, the ETA and the
/// running loss, then a line with the epoch's losses (nothing when not verbose).
pub(super) struct Progress<'a> {
    bar: Option<indicatif::ProgressBar>,
    epochs: usize,
    per_epoch: u64,
    pub(super) keep_going: Option<&'a mut dyn FnMut(&EpochReport) -> bool>,
    last: Option<EpochReport>,
}

impl Progress<'_> {
    pub(super) fn new(verbose: bool, epochs: usize, per_epoch: usize) -> Self {
        let bar = verbose.then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(per_epoch as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} samples, ETA {eta}, loss {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Progress {
            bar,
            epochs,
            per_epoch: per_epoch as u64,
            keep_going: None,
            last: None,
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl FitObserver for Progress<'_> {
    fn on_step(&mut self, epoch: usize, samples: usize, running_loss: f64) {
        if let Some(bar) = &self.bar {
            if samples as u64 <= self.per_epoch && bar.position() > samples as u64 {
                bar.reset();
            }
            bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
            bar.set_position(samples as u64);
            bar.set_message(format!("{running_loss:.4}"));
        }
    }

    fn keep_going(&mut self) -> bool {
        match (&mut self.keep_going, &self.last) {
            (Some(rule), Some(last)) => rule(last),
            _ => true,
        }
    }

    fn on_epoch(&mut self, e: &EpochReport) {
        if self.keep_going.is_some() {
            self.last = Some(e.clone());
        }
        if let Some(bar) = &self.bar {
            let line = format!(
                "epoch {}/{}: loss {:.4}{} ({} samples, {:.1} s)",
                e.epoch,
                self.epochs,
                e.train_loss,
                e.valid_loss
                    .map(|v| format!(", validation {v:.4}"))
                    .unwrap_or_default(),
                e.samples,
                e.seconds
            );
            // A bar is drawn only on a terminal; the epoch lines go to stderr either way.
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            bar.reset();
        }
    }
}
