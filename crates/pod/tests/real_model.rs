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

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Writes to the real stderr: the test harness captures `eprintln!` of passing
/// tests, and a skip or a measurement must show in CI's log.
fn loud(text: &str) {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "{text}");
    let _ = err.flush();
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

/// Runs `pod run TASK` as pod `name` in `home`'s work dir against the model.
fn run_case(home: &Home, base_url: &str, name: &str, task: &str) -> Outcome {
    let mut overlay = pod::model::local_overlay("temperature = 0.0\nseed = 42");
    if !erase_slot(base_url) {
        // Another server: turn prompt caching off instead.
        overlay.push_str("cache_prompt = false\n");
    }
    let started = Instant::now();
    let mut c = home.command(base_url);
    c.env("POD_MODEL", pod::model::MODEL_ALIAS)
        .args(["run", "--name", name, "--overlay", &overlay, task])
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
        if started.elapsed() > CASE_TIMEOUT {
            // The pod runs detached from `pod run`: stop it, or it keeps the
            // model busy for the cases after this one.
            let _ = home.command(base_url).args(["stop", name]).output();
            panic!(
                "case `{name}` did not finish within {} s",
                CASE_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let stdout = reader.join().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    Outcome {
        log: logs_of(home, base_url, name),
        stdout,
        seconds,
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

/// (b) Asked which file defines a function, the pod searches (Grep or Read) and
/// names the right file.
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
    assert!(
        outcome
            .tool_calls()
            .iter()
            .any(|t| t == "Grep" || t == "Read"),
        "no Grep or Read call\n{why}"
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
    let cases: [(&str, Case); 3] = [
        ("creates a file with Write", creates_a_file),
        ("finds a definition with Grep/Read", finds_a_definition),
        ("delegates to a child pod", delegates_to_a_child),
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
    let mut failed = Vec::new();
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
