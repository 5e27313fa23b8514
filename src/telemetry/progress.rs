//! Progress of long work on a terminal: one line on stderr, redrawn at most every
//! [`REDRAW_INTERVAL`]; nothing at all when stdout is not a terminal (scripts, CI, logs),
//! so machine-read output stays clean.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Shortest time between two redraws.
const REDRAW_INTERVAL: Duration = Duration::from_millis(250);

/// A progress line for `label`, of `total` items when known.
pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    drawn_at: Option<Instant>,
    enabled: bool,
}

impl Progress {
    /// A progress line, drawn only if stdout is a terminal.
    pub fn new(label: impl Into<String>, total: Option<u64>) -> Progress {
        Progress::with_output(label, total, std::io::stdout().is_terminal())
    }

    /// A progress line drawn if and only if `enabled`.
    pub fn with_output(label: impl Into<String>, total: Option<u64>, enabled: bool) -> Progress {
        Progress {
            label: label.into(),
            total,
            done: 0,
            started: Instant::now(),
            drawn_at: None,
            enabled,
        }
    }

    /// Sets how many items are done, redrawing if it is time.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        if !self.enabled {
            return;
        }
        if self
            .drawn_at
            .is_some_and(|at| at.elapsed() < REDRAW_INTERVAL)
        {
            return;
        }
        self.drawn_at = Some(Instant::now());
        let line = self.line();
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K{line}");
        let _ = stderr.flush();
    }

    /// Adds `n` items done.
    pub fn add(&mut self, n: u64) {
        self.set(self.done + n);
    }

    /// The line as drawn: label, count (of total, percent), rate.
    pub fn line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = if seconds > 0.0 {
            (self.done as f64 / seconds).round() as u64
        } else {
            0
        };
        match self.total {
            Some(total) if total > 0 => format!(
                "{}: {} of {} ({}%), {rate}/s",
                self.label,
                self.done,
                total,
                self.done.min(total) * 100 / total
            ),
            _ => format!("{}: {}, {rate}/s", self.label, self.done),
        }
    }

    /// Ends the line (a final redraw and a newline) if anything was drawn.
    pub fn finish(mut self) {
        if self.enabled {
            self.drawn_at = None;
            self.set(self.done);
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_count_total_and_percent() {
        let mut progress = Progress::with_output("restore", Some(200), false);
        progress.add(50);
        assert!(progress.line().starts_with("restore: 50 of 200 (25%)"));
        let mut open = Progress::with_output("replay", None, false);
        open.set(7);
        assert!(open.line().starts_with("replay: 7, "));
    }
}
