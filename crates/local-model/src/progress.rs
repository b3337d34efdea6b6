//! Progress of `pod model up`: steps as lines, long jobs (download, assembly) as a
//! bar redrawn in place on a terminal, or as a line every tenth on a log.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Receives what `pod model up` is doing.
pub trait Progress {
    /// A step starts or a fact is worth a line ("downloading 23 wheels").
    fn step(&mut self, message: &str);
    /// A long job advanced: `done` of `total` (`unit` is `bytes` or a noun).
    fn advance(&mut self, label: &str, done: u64, total: u64, unit: &str);
}

/// Discards everything (tests, `--json`).
pub struct Silent;

impl Progress for Silent {
    fn step(&mut self, _: &str) {}
    fn advance(&mut self, _: &str, _: u64, _: u64, _: &str) {}
}

/// Draws on stderr.
pub struct Console {
    tty: bool,
    bar_open: bool,
    last_draw: Option<Instant>,
    last_tenth: Option<(String, u64)>,
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}

impl Console {
    /// A console on stderr; draws bars in place only if stderr is a terminal.
    pub fn new() -> Self {
        Console {
            tty: std::io::stderr().is_terminal(),
            bar_open: false,
            last_draw: None,
            last_tenth: None,
        }
    }

    fn close_bar(&mut self) {
        if self.bar_open {
            eprintln!();
            self.bar_open = false;
        }
    }
}

/// `1117320768` bytes as `1065.6 MiB`; other units as the bare count.
pub(crate) fn amount(n: u64, unit: &str) -> String {
    if unit == "bytes" {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    } else {
        format!("{n} {unit}")
    }
}

/// One bar line: `label [#####.....]  50%  12/24 wheels`.
pub(crate) fn bar_line(label: &str, done: u64, total: u64, unit: &str) -> String {
    const WIDTH: u64 = 30;
    let total = total.max(1);
    let done = done.min(total);
    let filled = (done * WIDTH / total) as usize;
    format!(
        "{label:<9} [{}{}] {:>3}%  {} / {}",
        "#".repeat(filled),
        ".".repeat(WIDTH as usize - filled),
        done * 100 / total,
        amount(done, unit),
        amount(total, unit)
    )
}

impl Progress for Console {
    fn step(&mut self, message: &str) {
        self.close_bar();
        eprintln!("model: {message}");
    }

    fn advance(&mut self, label: &str, done: u64, total: u64, unit: &str) {
        let finished = done >= total;
        if self.tty {
            // Redraw at most 10 times a second, and always the final state.
            let due = self
                .last_draw
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
            if due || finished {
                let mut err = std::io::stderr();
                let _ = write!(err, "\r{}", bar_line(label, done, total, unit));
                let _ = err.flush();
                self.bar_open = true;
                self.last_draw = Some(Instant::now());
            }
            if finished {
                self.close_bar();
            }
        } else {
            let tenth = done * 10 / total.max(1);
            let key = (label.to_string(), tenth);
            if self.last_tenth.as_ref() != Some(&key) {
                eprintln!("{}", bar_line(label, done, total, unit));
                self.last_tenth = Some(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_lines_show_share_and_amounts() {
        assert_eq!(
            bar_line("assemble", 512 << 20, 1024 << 20, "bytes"),
            "assemble  [###############...............]  50%  512.0 MiB / 1024.0 MiB"
        );
        assert_eq!(
            bar_line("download", 23, 23, "wheels"),
            format!("download  [{}] 100%  23 wheels / 23 wheels", "#".repeat(30))
        );
        // Nonsense input draws a full bar instead of panicking.
        assert!(bar_line("x", 5, 0, "wheels").contains("100%"));
    }
}
