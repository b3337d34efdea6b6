//! The fuzz harness's own tests: saved regressions replay clean, every target
//! survives a short deterministic run, and the driver demonstrably finds a
//! planted panic, hang and memory blow-up (a harness that cannot fail proves
//! nothing).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use pod_fuzz::regress::target_dirs;
use pod_fuzz::{
    Budget, Config, FailureKind, Feedback, FuzzError, Harness, Report, TARGETS, Target, fuzz,
    load_inputs, minimize, regressions_dir, replay, save_input, target,
};

/// The seed of the short runs: fixed, so they try the same inputs everywhere.
const SEED: u64 = 7;

/// Inputs per target in the short runs: about a second or two each in a
/// debug build on 2 cores.
const SHORT_RUN: u64 = 3_000;

/// Panics with every failure of `report`, each with its input, for a readable test failure.
fn assert_clean(report: &Report) {
    if report.failures.is_empty() {
        return;
    }
    let mut text = format!(
        "{} failure(s) in target {} (seed {:#x}, {} inputs):\n",
        report.failures.len(),
        report.target,
        report.seed,
        report.inputs
    );
    for f in &report.failures {
        text.push_str(&format!(
            "- {f}\n  input: {:?}\n",
            String::from_utf8_lossy(&f.input[..f.input.len().min(400)])
        ));
    }
    text.push_str(
        "A new crash: save the input (cargo run -p pod-fuzz -- <target> --seed <seed> saves \
         it), fix the crate it names, and keep the input under crates/fuzz/regressions/. A \
         known one: see crates/fuzz/findings/README.md.",
    );
    panic!("{text}");
}

/// Crashes in other crates that the fuzzer finds and that are not fixed yet
/// (`crates/fuzz/findings/README.md`): a short run hitting one still passes,
/// saying so on stderr. Each entry is a target and the words its failure
/// report contains (the panic line, or for a crash what the process printed),
/// without line numbers so that edits nearby do not break the match. Delete
/// an entry when its fix lands (and move its input to `regressions/`).
const KNOWN_FINDINGS: &[(&str, &[&str])] = &[];

/// The failures a `pod-fuzz` run printed: each `FAIL` line, and for a crashed
/// target what its process printed (the `  | ` lines).
fn printed_failures(stdout: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let mut crash: Option<String> = None;
    for line in stdout.lines() {
        if let Some(printed) = line.strip_prefix("  | ") {
            let text = crash.get_or_insert_with(String::new);
            text.push_str(printed);
            text.push('\n');
        } else if line.contains(" crashed: ") {
            crash = Some(format!("{line}\n"));
        } else if line.starts_with("  FAIL crash") {
            failures.push(crash.take().unwrap_or_default() + line);
        } else if line.starts_with("  FAIL ") {
            failures.push(line.to_owned());
        }
    }
    failures
}

/// A short, fixed run of one target, through the `pod-fuzz` binary: it runs
/// the target in a child process of its own, so that a crash no guard
/// survives (an abort on a huge allocation) fails this test alone, with its
/// input saved, instead of killing every test in this binary.
fn short_run(name: &str) {
    let out = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_pod-fuzz"))
        .args([name, "--inputs", &SHORT_RUN.to_string(), "--seed"])
        .arg(format!("{SEED:#x}"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        matches!(run.status.code(), Some(0 | 1)),
        "pod-fuzz {name} did not run ({}):\n{stdout}\n{stderr}",
        run.status
    );
    let (known, new): (Vec<String>, Vec<String>) =
        printed_failures(&stdout).into_iter().partition(|failure| {
            KNOWN_FINDINGS
                .iter()
                .any(|(t, words)| *t == name && words.iter().all(|w| failure.contains(w)))
        });
    for failure in &known {
        test_support::loud(&format!(
            "pod-fuzz {name}: a known finding (crates/fuzz/findings/README.md) was hit again:\n{failure}"
        ));
    }
    if !new.is_empty() || (run.status.code() == Some(1) && known.is_empty()) {
        let kept = out.keep();
        panic!(
            "pod-fuzz {name} found failures (seed {SEED:#x}); inputs kept in {}:\n{}\n\n\
             full output:\n{stdout}\n{stderr}\n\
             Fix the crate the failure names and move the input to \
             crates/fuzz/regressions/{name}/.",
            kept.display(),
            new.join("\n")
        );
    }
    if known.is_empty() {
        let report = stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no report line for {name}:\n{stdout}"));
        assert!(
            report.contains(&format!(" {SHORT_RUN} inputs")),
            "the run ended early: {report}"
        );
    }
}

#[test]
fn failure_reports_are_read_back() {
    let stdout = "pod-fuzz: seed 0x7\n\
        sse-openai-chat  3000 inputs  failures 1\n\
        \x20 FAIL panic at crates/llm-worker/src/llm_client/openai_chat.rs:515:68: attempt to add with overflow (3 bytes, 1 hit)\n\
        \x20      input (3 bytes, shrunk from 3) saved to /x\n\
        sse-gemini             crashed: aborted (SIGABRT)\n\
        \x20 | memory allocation of 309237645312 bytes failed\n\
        \x20 FAIL crash (6 bytes) saved to /y\n";
    let failures = printed_failures(stdout);
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0].contains("openai_chat.rs"));
    assert!(failures[1].contains("memory allocation of 309237645312 bytes failed"));
    assert!(failures[1].contains("FAIL crash"));
}

#[test]
fn short_run_json_lines() {
    short_run("json-lines");
}

#[test]
fn short_run_protocol() {
    short_run("protocol");
}

#[test]
fn short_run_sse_openai_chat() {
    short_run("sse-openai-chat");
}

#[test]
fn short_run_sse_openai_responses() {
    short_run("sse-openai-responses");
}

#[test]
fn short_run_sse_anthropic() {
    short_run("sse-anthropic");
}

#[test]
fn short_run_sse_gemini() {
    short_run("sse-gemini");
}

#[test]
fn short_run_manifest() {
    short_run("manifest");
}

#[test]
fn short_run_session_log() {
    short_run("session-log");
}

#[test]
fn every_target_has_a_short_run_test() {
    // The tests above name the targets one by one; a new target needs its own.
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "json-lines",
            "protocol",
            "sse-openai-chat",
            "sse-openai-responses",
            "sse-anthropic",
            "sse-gemini",
            "manifest",
            "session-log"
        ]
    );
}

#[test]
fn saved_regressions_replay_clean() {
    let dir = regressions_dir();
    for name in target_dirs(&dir).unwrap() {
        assert!(
            target(&name).is_ok(),
            "{} names no target; the targets are: {:?}",
            dir.join(&name).display(),
            TARGETS.iter().map(|t| t.name).collect::<Vec<_>>()
        );
    }
    for t in TARGETS {
        let saved = load_inputs(&dir, t.name).unwrap();
        if saved.is_empty() {
            continue;
        }
        let inputs: Vec<Vec<u8>> = saved.iter().map(|(_, bytes)| bytes.clone()).collect();
        let mut config = Config::new(0, Budget::Inputs(0));
        config.max_failures = usize::MAX;
        let report = replay(t, inputs, &config).unwrap();
        assert_eq!(report.inputs, saved.len() as u64);
        for failure in &report.failures {
            let (path, _) = saved
                .iter()
                .find(|(_, bytes)| *bytes == failure.input)
                .unwrap();
            eprintln!("regression {} fails: {failure}", path.display());
        }
        assert_clean(&report);
    }
}

// --- The driver can fail: planted bugs. ---

/// A check with a bug behind a byte pattern the seed almost contains:
/// `"valu` followed by a NUL where the seed has the closing quote.
struct Planted;

const PLANTED_SEED: &[u8] = br#"{"key":"valu","n":12}"#;
const PLANTED_BUG: &[u8] = b"\"valu\0";

impl Harness for Planted {
    fn seeds(&mut self) -> Result<Vec<Vec<u8>>, FuzzError> {
        Ok(vec![PLANTED_SEED.to_vec()])
    }

    fn check(&mut self, input: &[u8]) -> Result<Feedback, FuzzError> {
        if input.windows(PLANTED_BUG.len()).any(|w| w == PLANTED_BUG) {
            panic!("planted bug reached");
        }
        Ok(Feedback::of(if input.starts_with(b"{") {
            "object"
        } else {
            "other"
        }))
    }
}

fn build_planted() -> Result<Box<dyn Harness>, FuzzError> {
    Ok(Box::new(Planted))
}

const PLANTED: Target = Target {
    name: "planted",
    about: "a check with a planted bug",
    build: build_planted,
};

#[test]
fn the_driver_finds_a_planted_panic_and_shrinks_its_input() {
    let mut config = Config::new(SEED, Budget::Inputs(200_000));
    config.max_failures = 1;
    let report = fuzz(&PLANTED, &config).unwrap();
    assert_eq!(report.failures.len(), 1, "the planted bug was not found");
    let failure = &report.failures[0];
    assert_eq!(failure.kind, FailureKind::Panic);
    assert_eq!(failure.message, "planted bug reached");
    assert!(
        failure.location.as_deref().unwrap().contains("main.rs"),
        "{failure}"
    );
    assert!(
        report.inputs < 200_000,
        "the run did not stop at the failure"
    );

    // Shrunk to the pattern itself, which still fails the same way.
    let small = minimize(&PLANTED, failure, 5_000, &config).unwrap();
    assert_eq!(small, PLANTED_BUG);

    // Saved, loaded back and replayed: the same failure.
    let tmp = tempfile::tempdir().unwrap();
    let path = save_input(tmp.path(), PLANTED.name, &small).unwrap();
    assert!(path.starts_with(tmp.path().join("planted")));
    let saved = load_inputs(tmp.path(), PLANTED.name).unwrap();
    assert_eq!(saved, vec![(path, small.clone())]);
    let replayed = replay(&PLANTED, vec![small, PLANTED_SEED.to_vec()], &config).unwrap();
    assert_eq!(replayed.inputs, 2);
    assert_eq!(replayed.failures.len(), 1);
    assert_eq!(replayed.failures[0].signature(), failure.signature());
}

#[test]
fn the_same_seed_finds_the_same_failure() {
    let mut config = Config::new(7, Budget::Inputs(200_000));
    config.max_failures = 1;
    let a = fuzz(&PLANTED, &config).unwrap();
    let b = fuzz(&PLANTED, &config).unwrap();
    assert_eq!(a.inputs, b.inputs);
    assert_eq!(a.failures, b.failures);
}

/// A check that never returns on one input and holds the worker's memory watch on another.
struct Stuck;

impl Harness for Stuck {
    fn seeds(&mut self) -> Result<Vec<Vec<u8>>, FuzzError> {
        Ok(vec![b"fine".to_vec(), b"HANG".to_vec()])
    }

    fn check(&mut self, input: &[u8]) -> Result<Feedback, FuzzError> {
        if input == b"HANG" {
            // Sleeps rather than spins: the abandoned thread must not eat a core.
            loop {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if input == b"SLOW" {
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(Feedback::default())
    }
}

fn build_stuck() -> Result<Box<dyn Harness>, FuzzError> {
    Ok(Box::new(Stuck))
}

const STUCK: Target = Target {
    name: "stuck",
    about: "a check that hangs",
    build: build_stuck,
};

#[test]
fn the_driver_reports_a_hang_with_its_input() {
    let mut config = Config::new(SEED, Budget::Inputs(1_000));
    config.input_timeout = Duration::from_millis(200);
    let report = fuzz(&STUCK, &config).unwrap();
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let failure = &report.failures[0];
    assert_eq!(failure.kind, FailureKind::Hang);
    assert_eq!(failure.input, b"HANG");
    assert!(failure.message.contains("still running"), "{failure}");
}

#[test]
fn the_driver_reports_memory_growth_with_its_input() {
    // Any process is over a 1 MiB limit: the input in flight when the
    // supervisor looks is reported.
    let mut config = Config::new(SEED, Budget::Inputs(1_000));
    config.rss_limit = Some(1 << 20);
    let report = replay(&STUCK, vec![b"SLOW".to_vec()], &config).unwrap();
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(report.failures[0].kind, FailureKind::Memory);
    assert_eq!(report.failures[0].input, b"SLOW");
}

#[test]
fn a_slow_input_that_finishes_is_a_hang_too() {
    let mut config = Config::new(SEED, Budget::Inputs(1_000));
    config.input_timeout = Duration::from_millis(100);
    // The supervisor may see it first ("still running") or the worker when
    // it returns ("took"); either way it is a hang of this input.
    let report = replay(&STUCK, vec![b"fine".to_vec(), b"SLOW".to_vec()], &config).unwrap();
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(report.failures[0].kind, FailureKind::Hang);
    assert_eq!(report.failures[0].input, b"SLOW");
}
