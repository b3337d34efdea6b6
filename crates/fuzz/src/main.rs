//! `pod-fuzz`: runs the fuzz targets for a time budget and saves what fails.
//!
//! Each target runs in a child process (this binary again, with `--child`),
//! so that a crash no `catch_unwind` survives (an abort on a huge allocation,
//! a stack overflow, the kernel's OOM killer) is still reported: the child
//! keeps the input in flight in a file, and the parent saves it. Otherwise
//! thin: the fuzzing itself is the library's (`pod_fuzz::fuzz`), which
//! carries the tests.

#![forbid(unsafe_code)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pod_fuzz::rng::{fnv1a, mix64};
use pod_fuzz::{
    Budget, Config, FuzzError, Report, TARGETS, Target, fuzz, minimize, regressions_dir, replay,
    save_input, scratch_base, target,
};

const USAGE: &str = "\
usage: pod-fuzz [TARGET|all]... [--seconds N | --inputs N] [--seed S] [--timeout-s N]
                [--out DIR] [--list]
       pod-fuzz TARGET --replay FILE...

Runs seeded mutation fuzzing of the input-facing code (see docs/reliability.md).

  TARGET        a target name (see --list), or all (the default)
  --seconds N   total time budget, split evenly between the targets (default 60)
  --inputs N    run N inputs per target instead of a time budget
  --seed S      the run's seed, decimal or 0x-hex (default: from the clock, printed);
                each target's own seed is derived from it and its name
  --timeout-s N an input running longer than N seconds is a hang (default 10)
  --out DIR     where failing inputs are saved as DIR/<target>/<hash>.bin
                (default: crates/fuzz/regressions)
  --list        list the targets and exit
  --replay FILE run saved inputs through TARGET in this process and report

Exit status: 0 nothing failed, 1 a failure was found (inputs saved), 2 usage or
environment error.";

/// What the command line asks for.
struct Args {
    targets: Vec<Target>,
    /// The budget of each target.
    budget: Budget,
    seed: Option<u64>,
    timeout: Duration,
    out: PathBuf,
    replay: Vec<PathBuf>,
    /// Run the (one) target in this process, recording inputs in this file.
    child: Option<PathBuf>,
}

enum Command {
    Help,
    List,
    Run(Args),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match parse(&args) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::List) => {
            for t in TARGETS {
                println!("{:<22} {}", t.name, t.about);
            }
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(args)) => {
            if !args.replay.is_empty() {
                run_replay(&args)
            } else if let Some(flight) = &args.child {
                run_child(&args, flight)
            } else {
                run_parent(&args)
            }
        }
        Err(message) => {
            eprintln!("pod-fuzz: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("pod-fuzz: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse(args: &[String]) -> Result<Command, String> {
    let mut targets = Vec::new();
    let mut seconds: Option<f64> = None;
    let mut inputs: Option<u64> = None;
    let mut seed = None;
    let mut timeout = Duration::from_secs(10);
    let mut out = regressions_dir();
    let mut replay = Vec::new();
    let mut child = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--list" => return Ok(Command::List),
            "--seconds" => {
                let text = value("--seconds")?;
                let s: f64 = text
                    .parse()
                    .map_err(|_| format!("not a number of seconds: {text}"))?;
                if !(s.is_finite() && s >= 0.0) {
                    return Err(format!("not a number of seconds: {text}"));
                }
                seconds = Some(s);
            }
            "--inputs" => inputs = Some(number(&value("--inputs")?)?),
            "--seed" => seed = Some(number(&value("--seed")?)?),
            "--timeout-s" => timeout = Duration::from_secs(number(&value("--timeout-s")?)?),
            "--out" => out = PathBuf::from(value("--out")?),
            // Internal: how the parent starts a target's process.
            "--child" => child = Some(PathBuf::from(value("--child")?)),
            "--replay" => {
                replay.extend(it.by_ref().map(PathBuf::from));
                if replay.is_empty() {
                    return Err("--replay needs files".to_owned());
                }
            }
            "all" => targets.extend_from_slice(TARGETS),
            name if !name.starts_with('-') => {
                targets.push(target(name).map_err(|e| e.to_string())?);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if targets.is_empty() {
        targets.extend_from_slice(TARGETS);
    }
    if (!replay.is_empty() || child.is_some()) && targets.len() != 1 {
        return Err("--replay needs exactly one target".to_owned());
    }
    let budget = match (seconds, inputs) {
        (Some(_), Some(_)) => return Err("give --seconds or --inputs, not both".to_owned()),
        (_, Some(n)) => Budget::Inputs(n),
        (seconds, None) => {
            let total = Duration::from_secs_f64(seconds.unwrap_or(60.0));
            Budget::Time(total / u32::try_from(targets.len()).unwrap_or(u32::MAX))
        }
    };
    Ok(Command::Run(Args {
        targets,
        budget,
        seed,
        timeout,
        out,
        replay,
        child,
    }))
}

/// A decimal or `0x` hexadecimal number.
fn number(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("not a number: {text}"))
}

/// Runs each target in a child process; `Ok(false)` if anything failed.
fn run_parent(args: &Args) -> Result<bool, FuzzError> {
    let seed = args.seed.unwrap_or_else(clock_seed);
    println!(
        "pod-fuzz: seed {seed:#x}, {} target(s), {} each (rerun with --seed {seed:#x})",
        args.targets.len(),
        match args.budget {
            Budget::Time(d) => format!("{:.1} s", d.as_secs_f64()),
            Budget::Inputs(n) => format!("{n} inputs"),
        }
    );
    let exe =
        std::env::current_exe().map_err(|e| FuzzError::io("find", PathBuf::from("pod-fuzz"), e))?;
    // Flight recorders, the children's stderr and their harnesses' files:
    // all removed with this directory, whatever happened to the children.
    let base = scratch_base();
    let scratch = tempfile::Builder::new()
        .prefix("pod-fuzz-")
        .tempdir_in(&base)
        .map_err(|e| FuzzError::io("create a temporary directory under", base, e))?;
    let mut clean = true;
    for t in &args.targets {
        clean &= run_in_child(&exe, t, seed, args, scratch.path())?;
    }
    if !clean {
        println!(
            "pod-fuzz: failures found; each saved input is replayed by `cargo test -p pod-fuzz` \
             until fixed (see crates/fuzz/regressions/README.md)"
        );
    }
    Ok(clean)
}

/// Runs one target in a child process and reports a crash it did not survive.
fn run_in_child(
    exe: &Path,
    t: &Target,
    seed: u64,
    args: &Args,
    scratch: &Path,
) -> Result<bool, FuzzError> {
    let flight = scratch.join(format!("{}.flight", t.name));
    let stderr_path = scratch.join(format!("{}.stderr", t.name));
    let stderr = std::fs::File::create(&stderr_path)
        .map_err(|e| FuzzError::io("create", &stderr_path, e))?;
    let mut command = Process::new(exe);
    command
        .arg(t.name)
        .arg("--child")
        .arg(&flight)
        .arg("--seed")
        .arg(format!("{seed:#x}"))
        .arg("--timeout-s")
        .arg(args.timeout.as_secs().to_string())
        .arg("--out")
        .arg(&args.out)
        .env("POD_FUZZ_TMPDIR", scratch)
        .stdout(Stdio::inherit())
        .stderr(stderr);
    match args.budget {
        Budget::Inputs(n) => command.arg("--inputs").arg(n.to_string()),
        Budget::Time(d) => command.arg("--seconds").arg(d.as_secs_f64().to_string()),
    };
    let status = command
        .status()
        .map_err(|e| FuzzError::io("run", exe.to_path_buf(), e))?;
    let errors = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        Some(2) => Err(FuzzError::setup(t.name, errors.trim().to_owned())),
        _ => {
            // Killed: the flight recorder holds the input that was running.
            let input = std::fs::read(&flight).map_err(|e| FuzzError::io("read", &flight, e))?;
            let path = save_input(&args.out, t.name, &input)?;
            println!("{:<22} crashed: {}", t.name, describe(status));
            for line in errors.lines().take(6) {
                println!("  | {line}");
            }
            println!(
                "  FAIL crash ({} bytes) saved to {}",
                input.len(),
                path.display()
            );
            Ok(false)
        }
    }
}

/// How a child process ended, in words.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(6)) => {
            "aborted (SIGABRT: a failed allocation, a stack overflow, a double panic)".to_owned()
        }
        (None, Some(9)) => "killed (SIGKILL: the OOM killer?)".to_owned(),
        (None, Some(11)) => "segmentation fault (SIGSEGV)".to_owned(),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended abnormally".to_owned(),
    }
}

/// Runs the one target in this process (started by [`run_in_child`]).
fn run_child(args: &Args, flight: &Path) -> Result<bool, FuzzError> {
    let Some(t) = args.targets.first() else {
        return Ok(true);
    };
    let seed = args.seed.unwrap_or_else(clock_seed);
    let mut config = Config::new(target_seed(seed, t.name), args.budget);
    config.input_timeout = args.timeout;
    config.flight_recorder = Some(flight.to_path_buf());
    let report = fuzz(t, &config)?;
    print_report(&report);
    // Minimizing runs inputs too; crashes there are the same crash.
    save_failures(t, &report, &config, args)
}

fn run_replay(args: &Args) -> Result<bool, FuzzError> {
    let Some(t) = args.targets.first() else {
        return Ok(true);
    };
    let mut inputs = Vec::new();
    for path in &args.replay {
        inputs.push(std::fs::read(path).map_err(|e| FuzzError::io("read", path, e))?);
    }
    let mut config = Config::new(0, Budget::Inputs(0));
    config.input_timeout = args.timeout;
    config.max_failures = usize::MAX;
    let report = replay(t, inputs.clone(), &config)?;
    for (path, input) in args.replay.iter().zip(&inputs) {
        match report.failures.iter().find(|f| f.input == *input) {
            None => println!("pass {}", path.display()),
            Some(f) => println!("FAIL {}: {f}", path.display()),
        }
    }
    Ok(report.failures.is_empty())
}

fn print_report(report: &Report) {
    println!(
        "{:<22} {:>9} inputs {:>7.0}/s  corpus {:>4}  failures {}  slowest {} ms  seed {:#018x}",
        report.target,
        report.inputs,
        report.rate(),
        report.corpus,
        report.failures.len(),
        report.slowest.as_millis(),
        report.seed
    );
}

/// Attempts at shrinking a failing input before it is saved.
const MINIMIZE_TRIES: u64 = 3000;

/// Saves each failure's input, shrinks it and saves the smaller one in its
/// place, and prints where; true if there were none. The original is saved
/// first, since shrinking runs the target again and could crash this process.
fn save_failures(
    t: &Target,
    report: &Report,
    config: &Config,
    args: &Args,
) -> Result<bool, FuzzError> {
    for failure in &report.failures {
        println!("  FAIL {failure}");
        let original = save_input(&args.out, report.target, &failure.input)?;
        let input = minimize(t, failure, MINIMIZE_TRIES, config)?;
        let path = if input == failure.input {
            original
        } else {
            let path = save_input(&args.out, report.target, &input)?;
            std::fs::remove_file(&original).map_err(|e| FuzzError::io("remove", &original, e))?;
            path
        };
        println!(
            "       input ({} bytes, shrunk from {}) saved to {}",
            input.len(),
            failure.input.len(),
            path.display()
        );
    }
    Ok(report.failures.is_empty())
}

/// Each target's own seed, so one target alone reproduces its part of an `all` run.
fn target_seed(seed: u64, name: &str) -> u64 {
    mix64(seed ^ fnv1a(name.as_bytes()))
}

/// A seed from the clock (printed, so the run can be repeated).
fn clock_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    mix64(nanos ^ u64::from(std::process::id()))
}
