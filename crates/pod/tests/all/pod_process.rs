//! The real `pod` binary against the fake provider: the connect sequence, the
//! state machine's answers, bad input, notifications, shutdown, and restore
//! after a clean stop and after `kill -9`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::time::Duration;

use common::{Home, TestPod, WAIT, events_until, kinds, run};
use protocol::{ErrorCode, Event, InvokeKind, Method, PodStatus, TurnResult};
use test_support::Family;
use test_support::fake_provider::{FakeProvider, Scripted};
use test_support::script::Turn;

fn text_turn(text: &str) -> Scripted {
    Scripted::sse(Turn::new().text(text).sse(Family::OpenaiChat))
}

fn is_run_end(e: &Event) -> bool {
    matches!(e, Event::RunEnd { .. } | Event::Error { .. })
}

#[tokio::test]
async fn connect_sequence_then_a_run_streams_and_commits() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(text_turn("Hello there."));
    let pod = TestPod::start(&home, &server, "alpha", &[]);
    let mut client = pod.connect().await;
    assert_eq!(client.status, PodStatus::Idle);
    assert_eq!(client.greeting.pod_name, "alpha");
    assert_eq!(client.greeting.provider, "openai_chat");
    assert_eq!(client.greeting.model, "test-model");
    assert!(
        client.greeting.scope_summary.contains("sandbox"),
        "{}",
        client.greeting.scope_summary
    );
    assert!(client.entries.is_empty(), "{:?}", client.entries);

    let (seq, mut events) = client.request(&run("say hello")).await.unwrap();
    events.extend(
        events_until(&mut client, |e| {
            matches!(
                e,
                Event::Status {
                    status: PodStatus::Idle
                }
            )
        })
        .await,
    );
    let names: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::InvokeStart {
                kind: InvokeKind::UserSend,
            } => Some("invoke_start"),
            Event::UserMessage { .. } => Some("user_message"),
            Event::TurnStart { turn: 1 } => Some("turn_start"),
            Event::LlmCallStart { llm_call: 1 } => Some("llm_call_start"),
            Event::TextDone { text } if text == "Hello there." => Some("text_done"),
            Event::Usage { .. } => Some("usage"),
            Event::LlmCallEnd { llm_call: 1 } => Some("llm_call_end"),
            Event::TurnEnd {
                turn: 1,
                result: TurnResult::Finished,
            } => Some("turn_end"),
            Event::RunEnd {
                result: TurnResult::Finished,
            } => Some("run_end"),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        [
            "invoke_start",
            "user_message",
            "turn_start",
            "llm_call_start",
            "text_done",
            "usage",
            "llm_call_end",
            "turn_end",
            "run_end"
        ]
    );
    assert!(events.iter().any(|e| matches!(e, Event::TextDelta { .. })));
    // Every committed entry arrived once, as `entry`, in sequence.
    let seqs: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Entry(v) => v["seq"].as_u64(),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, (1..1 + seqs.len() as u64).collect::<Vec<_>>());

    // A later client gets it all in its snapshot.
    let late = pod.connect().await;
    assert_eq!(
        kinds(&late.entries),
        [
            "invoke_start",
            "user_input",
            "assistant_item",
            "usage",
            "turn_end"
        ]
    );
    assert_eq!(late.entries[1]["seq"].as_u64(), Some(seq));
    // What the provider received: system prompt and the user's text.
    let body = server.requests()[0].body.to_string();
    assert!(
        body.contains("say hello") && body.contains("alpha"),
        "{body}"
    );
}

#[tokio::test]
async fn each_call_reports_how_full_the_context_is() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(Scripted::sse(
        Turn::new()
            .text("Short.")
            .usage(1200, 80)
            .sse(Family::OpenaiChat),
    ));
    let pod = TestPod::start(
        &home,
        &server,
        "ctx",
        &["--overlay", "[model] context_window = 4000"],
    );
    let mut client = pod.connect().await;
    assert_eq!(client.greeting.context_window, 4000);
    client.request(&run("go")).await.unwrap();
    let events = events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    let at = |pred: &dyn Fn(&Event) -> bool| events.iter().position(pred);
    let usage = at(&|e| matches!(e, Event::Usage { .. })).expect("usage");
    let context = at(&|e| {
        matches!(
            e,
            Event::Context {
                context_tokens: 1280,
                context_window: 4000
            }
        )
    })
    .unwrap_or_else(|| panic!("no context event: {events:#?}"));
    assert!(usage < context, "the context event follows the usage");
    // status.json (what `pod ls` and the UI read) says the same.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let record = pod_runtime::status::StatusRecord::read(&home.path("runtime").join("ctx"));
        if record
            .as_ref()
            .is_some_and(|r| r.context_tokens == 1280 && r.context_window == 4000)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status.json: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_state_machine_answers_only_the_asker() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let turn = Turn::new().text("Working on it, slowly");
    server.push(Scripted::stall(turn.sse_cut_in_call(Family::OpenaiChat)));
    let pod = TestPod::start(&home, &server, "beta", &[]);
    let mut a = pod.connect().await;
    let mut b = pod.connect().await;

    // Not running yet: cancel and pause are refused, resume too.
    for (method, code) in [
        (Method::Cancel, ErrorCode::NotRunning),
        (Method::Pause, ErrorCode::NotRunning),
        (Method::Resume, ErrorCode::NotPaused),
    ] {
        match b.command(&method).await {
            Err(pod::client::ClientError::Refused { code: got, .. }) => {
                assert_eq!(got, code, "{method:?}")
            }
            other => panic!("{method:?}: {other:?}"),
        }
    }

    let (_, first) = a.request(&run("go")).await.unwrap();
    if !first.iter().any(|e| matches!(e, Event::TextDelta { .. })) {
        events_until(&mut a, |e| matches!(e, Event::TextDelta { .. })).await;
    }
    match b.request(&run("me too")).await {
        Err(pod::client::ClientError::Refused { code, message }) => {
            assert_eq!(code, ErrorCode::AlreadyRunning);
            assert!(message.contains("turn 1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The refused run was not logged.
    let c = pod.connect().await;
    assert!(!c.entries.iter().any(|e| e.to_string().contains("me too")));

    b.command(&Method::Cancel).await.unwrap();
    let seen = events_until(&mut a, is_run_end).await;
    assert!(
        seen.contains(&Event::RunEnd {
            result: TurnResult::Cancelled
        }),
        "{seen:#?}"
    );
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            Event::Error {
                code: ErrorCode::AlreadyRunning,
                ..
            }
        )),
        "the other client's error went to it alone"
    );
    // The partial text is kept in the log.
    let c = pod.connect().await;
    assert_eq!(c.status, PodStatus::Idle);
    assert!(
        c.entries
            .iter()
            .any(|e| e.to_string().contains("Working on it"))
    );
}

#[tokio::test]
async fn pause_waits_for_the_step_and_resume_continues() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    // A slow first response with a call (to a tool this pod lacks: its error is
    // the result), then the answer.
    server.push(Scripted::sse_chunked(
        Turn::new()
            .text("Checking.")
            .call("c1", "Nope", "{}")
            .sse(Family::OpenaiChat),
        40,
        Duration::from_millis(20),
    ));
    server.push(text_turn("Done after resume."));
    let pod = TestPod::start(&home, &server, "gamma", &[]);
    let mut a = pod.connect().await;
    let (_, mut seen) = a.request(&run("go")).await.unwrap();
    if !seen.iter().any(|e| matches!(e, Event::TextDelta { .. })) {
        seen.extend(events_until(&mut a, |e| matches!(e, Event::TextDelta { .. })).await);
    }
    seen.extend(a.command(&Method::Pause).await.unwrap());
    if !seen.contains(&Event::Status {
        status: PodStatus::Paused,
    }) {
        seen.extend(
            events_until(&mut a, |e| {
                matches!(
                    e,
                    Event::Status {
                        status: PodStatus::Paused
                    }
                )
            })
            .await,
        );
    }
    assert!(seen.contains(&Event::RunEnd {
        result: TurnResult::Paused
    }));
    // The step finished: the call was answered before pausing.
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::ToolResult { id, is_error: true, .. } if id == "c1"))
    );
    assert_eq!(server.requests().len(), 1);

    let mut seen = a.command(&Method::Resume).await.unwrap();
    if !seen.iter().any(is_run_end) {
        seen.extend(events_until(&mut a, is_run_end).await);
    }
    assert!(seen.contains(&Event::InvokeStart {
        kind: InvokeKind::Resume
    }));
    assert!(seen.contains(&Event::RunEnd {
        result: TurnResult::Finished
    }));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn notify_is_acked_and_wakes_an_idle_pod() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(text_turn("Noted."));
    let pod = TestPod::start(&home, &server, "delta", &[]);
    let mut a = pod.connect().await;
    let (seq, mut seen) = a
        .request(&Method::Notify {
            message: "CI is green".into(),
        })
        .await
        .unwrap();
    if !seen.iter().any(is_run_end) {
        seen.extend(events_until(&mut a, is_run_end).await);
    }
    assert!(
        seen.contains(&Event::InvokeStart {
            kind: InvokeKind::Notify
        }),
        "{seen:#?}"
    );
    let body = server.requests()[0].body.to_string();
    assert!(body.contains("CI is green"), "{body}");
    let c = pod.connect().await;
    let notify = c
        .entries
        .iter()
        .find(|e| e["kind"] == "system_item")
        .unwrap();
    assert_eq!(notify["seq"].as_u64(), Some(seq));
    assert_eq!(notify["origin"], "notify");
}

/// Reads event lines from a raw socket until one is an `error`.
fn next_error(reader: &mut BufReader<StdUnixStream>) -> serde_json::Value {
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "connection closed before an error");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "error" {
            return v["data"].clone();
        }
    }
}

#[tokio::test]
async fn bad_input_gets_a_specific_error_and_the_connection_lives() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(text_turn("still fine"));
    let pod = TestPod::start(&home, &server, "eps", &[]);
    let socket = pod.socket.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let stream = StdUnixStream::connect(&socket).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json\n".to_vec(), "invalid JSON"),
            (
                b"{\"method\":\"frobnicate\"}\n".to_vec(),
                "unknown method `frobnicate`",
            ),
            (
                b"{\"method\":\"run\",\"params\":{\"input\":42}}\n".to_vec(),
                "wrong params for `run`",
            ),
            (b"\xff\xfe\x00garbage\n".to_vec(), "not UTF-8"),
            (
                [vec![b'x'; 20 * 1024 * 1024], b"\n".to_vec()].concat(),
                "line too long",
            ),
            (
                b"{\"method\":\"run\",\"params\":{\"input\":[]}}\n".to_vec(),
                "non-empty input",
            ),
        ];
        for (bytes, want) in cases {
            writer.write_all(&bytes).unwrap();
            let err = next_error(&mut reader);
            assert_eq!(err["code"], "invalid_request", "{want}: {err}");
            assert!(
                err["message"].as_str().unwrap().contains(want),
                "{want}: {err}"
            );
        }
        // Still serving this connection: a real run is acked.
        writer
            .write_all(b"{\"method\":\"run\",\"params\":{\"input\":[{\"kind\":\"text\",\"content\":\"hi\"}]}}\n")
            .unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.contains("\"ack\"") {
                break;
            }
        }
        // Half a line, then close: nothing breaks.
        let mut half =
            StdUnixStream::connect(reader.get_ref().peer_addr().unwrap().as_pathname().unwrap())
                .unwrap();
        half.write_all(b"{\"method\":\"noti").unwrap();
        drop(half);
    });
    tokio::time::timeout(WAIT, outcome).await.unwrap().unwrap();
    let mut c = pod.connect().await;
    let _ = c.status;
    // Another client still gets served.
    c.command(&Method::Pause).await.ok();
    assert!(pod.connect().await.greeting.pod_name == "eps");
}

#[tokio::test]
async fn a_final_line_without_newline_is_processed() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(text_turn("ok"));
    let pod = TestPod::start(&home, &server, "zeta", &[]);
    let socket = pod.socket.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = StdUnixStream::connect(&socket).unwrap();
        s.write_all(b"{\"method\":\"notify\",\"params\":{\"message\":\"no newline\"}}")
            .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = String::new();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let _ = s.read_to_string(&mut rest);
        assert!(rest.contains("\"ack\""), "{rest}");
    })
    .await
    .unwrap();
    let c = pod.connect().await;
    assert!(
        c.entries
            .iter()
            .any(|e| e.to_string().contains("no newline"))
    );
}

#[tokio::test]
async fn shutdown_mid_invocation_then_restore_is_idle_with_a_valid_log() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let turn = Turn::new().text("partial").call("c1", "Nope", r#"{"a":1}"#);
    server.push(Scripted::stall(turn.sse_cut_in_call(Family::OpenaiChat)));
    let mut pod = TestPod::start(&home, &server, "eta", &[]);
    let mut a = pod.connect().await;
    let (_, mut seen) = a.request(&run("go")).await.unwrap();
    if !seen
        .iter()
        .any(|e| matches!(e, Event::ToolCallStart { .. }))
    {
        seen.extend(events_until(&mut a, |e| matches!(e, Event::ToolCallStart { .. })).await);
    }
    a.send(&Method::Shutdown).await.unwrap();
    seen.extend(events_until(&mut a, |e| matches!(e, Event::Shutdown)).await);
    assert!(
        seen.contains(&Event::TurnEnd {
            turn: 1,
            result: TurnResult::Cancelled
        }),
        "{seen:#?}"
    );
    assert!(pod.wait_exit().success());
    drop(pod);

    // `start` with the same name refuses and points to restore.
    let out = home
        .command(&server.base_url())
        .args(["start", "--foreground", "--name", "eta"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pod restore eta"), "{err}");

    let pod = TestPod::restore(&home, &server, "eta");
    let c = pod.connect().await;
    // A cleanly cancelled turn: the pod comes back idle, the cut call answered.
    assert_eq!(c.status, PodStatus::Idle);
    let text = serde_json::Value::Array(c.entries.clone()).to_string();
    assert!(text.contains("[interrupted]"), "{text}");
    assert_eq!(
        kinds(&c.entries).last().map(String::as_str),
        Some("turn_end")
    );
}

// Multi-threaded: the process checks block while the fake provider serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_invocation_then_restore_resumes_with_every_call_answered() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    // Two commands that would run for 30 s: the pod is killed while both run.
    let tokens = [21, 22].map(test_support::procs::sleep_token);
    let bash =
        |t: &str| serde_json::json!({ "command": format!("sleep {t}; echo done") }).to_string();
    server.push(Scripted::sse(
        Turn::new()
            .text("Running both.")
            .call("c1", "Bash", bash(&tokens[0]))
            .call("c2", "Bash", bash(&tokens[1]))
            .sse(Family::OpenaiChat),
    ));
    let mut pod = TestPod::start(&home, &server, "theta", &[]);
    let mut a = pod.connect().await;
    a.request(&run("run both")).await.unwrap();
    // Both calls executing: their processes run.
    for token in &tokens {
        assert!(
            test_support::procs::appears_within(token, WAIT),
            "the commands never ran"
        );
    }
    pod.kill9();
    drop(a);
    // The pod's death takes its commands with it.
    for token in &tokens {
        assert!(
            test_support::procs::gone_within(token, Duration::from_secs(10)),
            "a command outlived its pod"
        );
    }

    server.push(text_turn("Finished after the crash."));
    let mut c = home.command(&server.base_url());
    c.args(["__restore-foreground", "--name", "theta"])
        .stdout(std::process::Stdio::piped());
    let mut restored = common::Reaped(c.spawn().unwrap());
    let mut line = String::new();
    BufReader::new(restored.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let socket = line.trim_end().split_once('\t').unwrap().1.to_string();
    let mut client = pod::client::PodClient::connect(std::path::Path::new(&socket))
        .await
        .unwrap();
    assert_eq!(client.status, PodStatus::Paused);
    assert!(
        client
            .alerts
            .iter()
            .any(|a| a.message.contains("cut short")),
        "{:?}",
        client.alerts
    );
    let ks = kinds(&client.entries);
    assert_eq!(ks.last().map(String::as_str), Some("turn_end"));
    let mut seen = client.command(&Method::Resume).await.unwrap();
    if !seen.iter().any(is_run_end) {
        seen.extend(events_until(&mut client, is_run_end).await);
    }
    assert!(
        seen.contains(&Event::RunEnd {
            result: TurnResult::Finished
        }),
        "{seen:#?}"
    );
    // The request after the crash answers each call with its interrupted result.
    let last = server.requests().pop().unwrap().body;
    let messages = last["messages"].as_array().unwrap();
    for id in ["c1", "c2"] {
        let answers: Vec<&serde_json::Value> = messages
            .iter()
            .filter(|m| m["role"] == "tool" && m["tool_call_id"] == id)
            .collect();
        assert_eq!(answers.len(), 1, "{id}: {messages:#?}");
        let content = answers[0]["content"].as_str().unwrap();
        assert!(content.contains("[interrupted]"), "{id}: {content}");
    }
}

#[tokio::test]
async fn the_builtin_tools_work_inside_the_scope() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let work = home.path("work");
    server.push(Scripted::sse(
        Turn::new()
            .call(
                "w1",
                "Write",
                r#"{"path":"hello.txt","content":"hi from the pod\n"}"#,
            )
            .sse(Family::OpenaiChat),
    ));
    server.push(Scripted::sse(
        Turn::new()
            .call(
                "b1",
                "Bash",
                r#"{"command":"cat hello.txt; echo out > ../outside.txt"}"#,
            )
            .sse(Family::OpenaiChat),
    ));
    server.push(text_turn("Wrote it."));
    let pod = TestPod::start(&home, &server, "tooly", &[]);
    let mut a = pod.connect().await;
    assert_eq!(
        a.greeting.tools,
        [
            "Read",
            "Write",
            "Edit",
            "Glob",
            "Grep",
            "Bash",
            "SpawnPod",
            "SendToPod",
            "ReadPodOutput",
            "StopPod",
            "ListPods"
        ]
    );
    let (_, mut seen) = a.request(&run("write a file")).await.unwrap();
    if !seen.iter().any(is_run_end) {
        seen.extend(events_until(&mut a, is_run_end).await);
    }
    assert!(
        seen.contains(&Event::RunEnd {
            result: TurnResult::Finished
        }),
        "{seen:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("hello.txt")).unwrap(),
        "hi from the pod\n"
    );
    let bash = seen
        .iter()
        .find_map(|e| match e {
            Event::ToolResult {
                id,
                summary,
                content,
                ..
            } if id == "b1" => Some(format!(
                "{summary}\n{}",
                content.clone().unwrap_or_default()
            )),
            _ => None,
        })
        .unwrap();
    assert!(bash.contains("hi from the pod"), "{bash}");
    // The command could not write outside the scope (the cwd).
    assert!(!home.dir.path().join("outside.txt").exists(), "{bash}");
}

#[tokio::test]
async fn a_second_pod_on_the_same_tree_gets_a_scope_conflict_naming_the_holder() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let first = TestPod::start(&home, &server, "owner", &[]);
    let out = home
        .command(&server.base_url())
        .args(["start", "--foreground", "--name", "intruder"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scope conflict") && err.contains("\"owner\"") && err.contains("--scope"),
        "{err}"
    );
    // A disjoint scope is fine.
    std::fs::create_dir_all(home.path("other")).unwrap();
    let other = home.path("other").display().to_string();
    let second = TestPod::start(&home, &server, "neighbour", &["--cwd", &other]);
    drop(second);
    // Once the holder stops, its scope is free again.
    let mut first = first;
    let mut c = first.connect().await;
    c.send(&Method::Shutdown).await.unwrap();
    assert!(first.wait_exit().success());
    let again = TestPod::start(&home, &server, "intruder", &[]);
    drop(again);
}

#[tokio::test]
async fn commands_cannot_write_a_nested_project_manifest() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let nested = home.path("work/sub/.pods");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(nested.join("manifest.toml"), "[worker]\n").unwrap();
    server.push(Scripted::sse(
        Turn::new()
            .call("b1", "Bash", r#"{"command":"echo '[model]' >> sub/.pods/manifest.toml; echo ok > sub/fine.txt"}"#)
            .sse(Family::OpenaiChat),
    ));
    server.push(text_turn("Tried."));
    let pod = TestPod::start(&home, &server, "nested", &[]);
    let mut a = pod.connect().await;
    let (_, mut seen) = a.request(&run("edit the manifest")).await.unwrap();
    if !seen.iter().any(is_run_end) {
        seen.extend(events_until(&mut a, is_run_end).await);
    }
    assert_eq!(
        std::fs::read_to_string(nested.join("manifest.toml")).unwrap(),
        "[worker]\n"
    );
    assert_eq!(
        std::fs::read_to_string(home.path("work/sub/fine.txt")).unwrap(),
        "ok\n"
    );
}

// Multi-threaded: the process checks block while the fake provider serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_pause_while_a_command_runs() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    // A unique sleep: its process is found by its command line.
    let token = test_support::procs::sleep_token(20);
    let sleepy = |secs: &str| {
        let command = format!("sleep {secs}; echo slept > slept.txt");
        Scripted::sse(
            Turn::new()
                .call(
                    "slow",
                    "Bash",
                    serde_json::json!({ "command": command }).to_string(),
                )
                .sse(Family::OpenaiChat),
        )
    };
    server.push(sleepy(&token));
    let pod = TestPod::start(&home, &server, "sleeper", &[]);
    let mut a = pod.connect().await;

    // Cancel mid-command: the invocation ends at once, the call answered.
    let (_, mut seen) = a.request(&run("sleep")).await.unwrap();
    if !seen.iter().any(|e| matches!(e, Event::ToolCallDone { .. })) {
        seen.extend(events_until(&mut a, |e| matches!(e, Event::ToolCallDone { .. })).await);
    }
    assert!(
        test_support::procs::appears_within(&token, WAIT),
        "the command never ran"
    );
    let started = std::time::Instant::now();
    seen.extend(a.command(&Method::Cancel).await.unwrap());
    if !seen.iter().any(is_run_end) {
        seen.extend(events_until(&mut a, is_run_end).await);
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        seen.contains(&Event::RunEnd {
            result: TurnResult::Cancelled
        }),
        "{seen:#?}"
    );
    assert!(seen.iter().any(|e| matches!(e, Event::ToolResult { id, summary, .. } if id == "slow" && summary == "[interrupted]")));
    // It would sleep 30 s: still there after 10 s means it was not killed.
    assert!(
        test_support::procs::gone_within(&token, Duration::from_secs(10)),
        "the cancelled command still runs"
    );
    assert!(!home.path("work/slept.txt").exists());

    // Pause mid-command: the command finishes, then the pod pauses.
    server.push(sleepy("1"));
    let (_, mut seen) = a.request(&run("sleep again")).await.unwrap();
    if !seen.iter().any(|e| matches!(e, Event::ToolCallDone { .. })) {
        seen.extend(events_until(&mut a, |e| matches!(e, Event::ToolCallDone { .. })).await);
    }
    seen.extend(a.command(&Method::Pause).await.unwrap());
    if !seen.iter().any(is_run_end) {
        seen.extend(events_until(&mut a, is_run_end).await);
    }
    assert!(
        seen.contains(&Event::RunEnd {
            result: TurnResult::Paused
        }),
        "{seen:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(home.path("work/slept.txt")).unwrap(),
        "slept\n"
    );
}

/// The manifest overlay that points a pod at the fake provider in `family`'s
/// scheme (any variable that is set will do as the key: the fake ignores it).
pub(crate) fn scheme_overlay(family: Family, server: &FakeProvider) -> String {
    let scheme = match family {
        Family::OpenaiChat => "openai_chat",
        Family::OpenaiResponses => "openai_responses",
        Family::Anthropic => "anthropic",
        Family::Gemini => "gemini",
    };
    format!(
        "model.scheme = \"{scheme}\"\nmodel.base_url = \"{}\"\nmodel.api_key_env = \"POD_MODEL\"",
        server.base_url()
    )
}

/// Polls the pod's session log until `done` holds for its entries.
pub(crate) async fn wait_for_log(
    home: &Home,
    name: &str,
    done: impl Fn(&[session_store::LogEntry]) -> bool,
) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let entries: Vec<session_store::LogEntry> =
            session_store::read_session(home.path("state/sessions").join(name))
                .map(|log| log.entries().cloned().collect())
                .unwrap_or_default();
        if done(&entries) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out; the log: {entries:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A notification that arrives while a tool runs is logged before the tool's
/// result, but the model saw it after the result (providers reject anything
/// between a call and its result). After `kill -9` and restore, the request
/// rebuilt from the log is byte for byte the one the live pod sent; after a
/// clean stop and restore the next request is accepted too.
async fn restored_request_is_the_live_one(family: Family) {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let sse = |turn: Turn| Scripted::sse(turn.sse(family));
    let wait_for_go = "until [ -e go ]; do sleep 0.02; done; echo went";
    server.push(sse(Turn::new().call(
        "c1",
        "Bash",
        serde_json::json!({ "command": wait_for_go }).to_string(),
    )));
    server.push(sse(Turn::new().text("Noted.")));
    let overlay = scheme_overlay(family, &server);
    let mut pod = TestPod::start(&home, &server, "hist", &["--overlay", &overlay]);
    let mut a = pod.connect().await;
    a.request(&run("wait for go")).await.unwrap();
    // The call is committed and its command waits for `go`.
    wait_for_log(&home, "hist", |entries| {
        entries
            .iter()
            .any(|e| matches!(e, session_store::LogEntry::AssistantItem { .. }))
    })
    .await;
    let acked = a
        .command(&Method::Notify {
            message: "note".into(),
        })
        .await
        .unwrap();
    assert!(
        acked.iter().any(|e| matches!(e, Event::Ack { .. })),
        "{acked:#?}"
    );
    std::fs::write(home.path("work/go"), "").unwrap();
    let seen = events_until(&mut a, is_run_end).await;
    assert!(
        seen.contains(&Event::RunEnd {
            result: TurnResult::Finished
        }),
        "{seen:#?}"
    );
    let second = server.requests()[1].body.to_string();
    let (result_at, note_at) = (
        second.find("went").expect("the tool's output"),
        second
            .find("[notification] note")
            .expect("the notification"),
    );
    assert!(result_at < note_at, "{second}");

    // The live request of the next run; the pod dies while it is answered.
    server.push(Scripted::stall(Vec::new()));
    a.request(&run("again")).await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while server.requests().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "no third request");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // serde_json keeps key order: the text is the request's bytes re-encoded.
    let live = server.requests()[2].body.to_string();
    pod.kill9();
    drop(a);

    server.push(sse(Turn::new().text("Again.")));
    let mut restored = TestPod::restore(&home, &server, "hist");
    let mut c = restored.connect().await;
    assert_eq!(c.status, PodStatus::Paused);
    // Token totals continue (two answered calls of 100 in / 20 out each), in
    // the status file the restored process wrote.
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        let status: serde_json::Value = std::fs::read(home.path("runtime/hist/status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if status["pid"] == restored.child.id() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "{status:#}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        (
            &status["usage"]["input_tokens"],
            &status["usage"]["output_tokens"]
        ),
        (&serde_json::json!(200), &serde_json::json!(40)),
        "{status:#}"
    );
    let mut seen = c.command(&Method::Resume).await.unwrap();
    if !seen.iter().any(is_run_end) {
        seen.extend(events_until(&mut c, is_run_end).await);
    }
    assert!(
        seen.contains(&Event::RunEnd {
            result: TurnResult::Finished
        }),
        "{family}: {seen:#?}"
    );
    let rebuilt = server.requests()[3].body.to_string();
    assert!(
        rebuilt == live,
        "{family}: the restored request differs from the live one\nlive:\n{live}\nrestored:\n{rebuilt}"
    );

    // A clean stop and restore: the next request is accepted as well.
    c.command(&Method::Shutdown).await.unwrap();
    restored.wait_exit();
    server.push(sse(Turn::new().text("Third.")));
    let again = TestPod::restore(&home, &server, "hist");
    let mut d = again.connect().await;
    let (_, mut seen) = d.request(&run("third")).await.unwrap();
    if !seen.iter().any(is_run_end) {
        seen.extend(events_until(&mut d, is_run_end).await);
    }
    assert!(
        seen.contains(&Event::RunEnd {
            result: TurnResult::Finished
        }),
        "{family}: {seen:#?}"
    );
}

#[tokio::test]
async fn restored_request_is_the_live_one_openai_chat() {
    restored_request_is_the_live_one(Family::OpenaiChat).await;
}

#[tokio::test]
async fn restored_request_is_the_live_one_openai_responses() {
    restored_request_is_the_live_one(Family::OpenaiResponses).await;
}

#[tokio::test]
async fn restored_request_is_the_live_one_anthropic() {
    restored_request_is_the_live_one(Family::Anthropic).await;
}

#[tokio::test]
async fn restored_request_is_the_live_one_gemini() {
    restored_request_is_the_live_one(Family::Gemini).await;
}

/// The pod keeps its own log in its runtime dir: its start, each invocation
/// (in a span with its turn) and each tool call with its outcome.
#[tokio::test]
async fn the_pod_log_has_the_invocation_and_its_tool_calls() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(Scripted::sse(
        Turn::new()
            .call("g1", "Glob", r#"{"pattern":"*"}"#)
            .sse(Family::OpenaiChat),
    ));
    server.push(text_turn("Nothing here."));
    let pod = TestPod::start(&home, &server, "logged", &[]);
    let mut client = pod.connect().await;
    let (_, seen) = client.request(&run("list the files")).await.unwrap();
    if !seen.iter().any(is_run_end) {
        events_until(&mut client, is_run_end).await;
    }
    let log = std::fs::read_to_string(home.path("runtime/logged/pod.log")).unwrap();
    for needle in [
        "pod serving name=logged",
        "invocation{turn=1 from_parent=false}: invocation started",
        "tool{name=Glob id=g1}: tool call done",
        "invocation ended",
    ] {
        assert!(
            log.contains(needle),
            "{needle:?} not in the pod log:\n{log}"
        );
    }
}
