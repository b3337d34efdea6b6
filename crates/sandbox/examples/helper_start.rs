//! Start-up time of two sandbox helpers, timed alternately in one run so that both see
//! the same machine load: spawn → exit of `<helper> </dev/null` (the helper reads no
//! request, reports that and exits), N runs each, median / p10 / p90.
//!
//! Usage: `helper_start <old helper> <new helper> [runs]` (see `benches/helper_start.sh`).

use std::error::Error;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Median, 10th and 90th percentile of `samples` (sorted in place).
fn stats(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

/// A duration in milliseconds with three decimals (the budget is 0.1 ms).
fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// One spawn → exit of `helper` with stdin, stdout and stderr on /dev/null.
fn once(helper: &PathBuf) -> Result<Duration, Box<dyn Error>> {
    let start = Instant::now();
    let status = Command::new(helper)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let took = start.elapsed();
    // No request on stdin: the helper reports a setup failure (exit 125), as designed.
    if status.code() != Some(125) {
        return Err(format!("{} exited with {status}, expected 125", helper.display()).into());
    }
    Ok(took)
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: helper_start <old helper> <new helper> [runs]";
    let old = PathBuf::from(args.next().ok_or(usage)?);
    let new = PathBuf::from(args.next().ok_or(usage)?);
    let runs: usize = args.next().map_or(Ok(1000), |n| n.parse())?;
    for helper in [&old, &new] {
        let size = std::fs::metadata(helper)?.len();
        println!("{}: {size} bytes", helper.display());
    }
    // Warm the page cache for both before timing.
    for _ in 0..20 {
        once(&old)?;
        once(&new)?;
    }
    let (mut a, mut b) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for i in 0..runs {
        // Alternate which goes first, so neither always follows the other.
        if i % 2 == 0 {
            a.push(once(&old)?);
            b.push(once(&new)?);
        } else {
            b.push(once(&new)?);
            a.push(once(&old)?);
        }
    }
    for (name, samples) in [("old", &mut a), ("new", &mut b)] {
        let (median, p10, p90) = stats(samples);
        println!(
            "{name}: median {}  p10 {}  p90 {}  ({runs} runs)",
            ms(median),
            ms(p10),
            ms(p90)
        );
    }
    let (ma, _, _) = stats(&mut a);
    let (mb, _, _) = stats(&mut b);
    let delta = mb.as_secs_f64() * 1000.0 - ma.as_secs_f64() * 1000.0;
    println!("new - old median: {delta:+.3} ms");
    Ok(())
}
