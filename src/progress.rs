//! Progress of long CLI work (`replay`, `projections rebuild`, `demo`), on standard error.
//!
//! On a terminal: an indicatif bar with the rate per second and an ETA. Elsewhere (a pipe, a
//! log file, CI): one plain line every [`PLAIN_EVERY`] and a last one at the end, so logs show
//! progress without control characters. Standard output stays free for the command's result.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is printed when standard error is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(2);

const TEMPLATE: &str = "{msg} [{bar:40.cyan/blue}] {pos}/{len} {prefix} ({per_sec}, ETA {eta})";

enum Mode {
    Bar(ProgressBar),
    Plain { last: Instant },
}

/// One piece of work with a known size, reported as it advances.
pub struct Progress {
    label: String,
    unit: &'static str,
    total: u64,
    position: u64,
    started: Instant,
    mode: Mode,
}

impl Progress {
    /// Starts reporting `label` (e.g. `rebuild board`), `total` `unit`s (e.g. `events`) to do.
    pub fn new(label: impl Into<String>, unit: &'static str, total: u64) -> Self {
        let label = label.into();
        let mode = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(TEMPLATE)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label.clone());
            bar.set_prefix(unit);
            Mode::Bar(bar)
        } else {
            Mode::Plain {
                last: Instant::now(),
            }
        };
        Self {
            label,
            unit,
            total,
            position: 0,
            started: Instant::now(),
            mode,
        }
    }

    /// Records that `position` units are done.
    pub fn set(&mut self, position: u64) {
        self.position = position;
        match &mut self.mode {
            Mode::Bar(bar) => bar.set_position(position),
            Mode::Plain { last } => {
                if last.elapsed() >= PLAIN_EVERY {
                    *last = Instant::now();
                    eprintln!(
                        "{}",
                        plain_line(
                            &self.label,
                            self.unit,
                            position,
                            self.total,
                            self.started.elapsed()
                        )
                    );
                }
            }
        }
    }

    /// Ends the report: clears the bar, or prints a last plain line.
    pub fn finish(self) {
        match self.mode {
            Mode::Bar(bar) => bar.finish_and_clear(),
            Mode::Plain { .. } => eprintln!(
                "{}",
                plain_line(
                    &self.label,
                    self.unit,
                    self.position,
                    self.total,
                    self.started.elapsed()
                )
            ),
        }
    }
}

/// `rebuild board: 12000/50000 events (24%), 6000 events/s, ETA 6s`.
pub fn plain_line(label: &str, unit: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        done as f64 / seconds
    } else {
        0.0
    };
    let eta = if rate > 0.0 && total > done {
        format!("{:.0}s", (total - done) as f64 / rate)
    } else if total <= done {
        "0s".to_owned()
    } else {
        "unknown".to_owned()
    };
    format!("{label}: {done}/{total} {unit} ({percent}%), {rate:.0} {unit}/s, ETA {eta}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_says_how_far_how_fast_and_how_long_to_go() {
        let line = plain_line(
            "rebuild board",
            "events",
            12_000,
            50_000,
            Duration::from_secs(2),
        );
        assert_eq!(
            line,
            "rebuild board: 12000/50000 events (24%), 6000 events/s, ETA 6s"
        );
    }

    #[test]
    fn a_plain_line_copes_with_nothing_to_do() {
        let line = plain_line("replay board", "events", 0, 0, Duration::ZERO);
        assert_eq!(line, "replay board: 0/0 events (100%), 0 events/s, ETA 0s");
    }
}
