//! Context management: old tool outputs are pruned from requests once they
//! pass the threshold, in one step, while the session log keeps them whole.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Home, TestPod, events_until, run};
use protocol::{Event, TurnResult};
use test_support::Family;
use test_support::fake_provider::{FakeProvider, Scripted};
use test_support::script::Turn;

fn sse(turn: Turn) -> Scripted {
    Scripted::sse(turn.sse(Family::OpenaiChat))
}

#[tokio::test]
async fn old_tool_outputs_are_pruned_from_requests_and_kept_in_the_log() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    // Eight files of 3,000 bytes each, read one per LLM call.
    for i in 0..8 {
        let line = format!("file {i} marker-{i} ");
        std::fs::write(
            home.path("work").join(format!("f{i}.txt")),
            line.repeat(3000 / line.len()),
        )
        .unwrap();
        server.push(sse(Turn::new()
            .call(
                format!("r{i}"),
                "Read",
                serde_json::json!({"path": format!("f{i}.txt")}).to_string(),
            )
            .counted_usage(20)));
    }
    server.push(sse(Turn::new().text("Read them all.").counted_usage(5)));
    // Room for requests: 9,000 - 1,000 tokens; pruning above half of it
    // (4,000 tokens ≈ 16 KB of history), keeping the latest two calls whole.
    let overlay = "[model]\ncontext_window = 9000\nmax_tokens = 1000\n[context]\nprune_at = 0.5\nkeep_calls = 2";
    let pod = TestPod::start(&home, &server, "ctx", &["--overlay", overlay]);
    let mut client = pod.connect().await;
    client
        .request(&run("read the eight files, one at a time"))
        .await
        .unwrap();
    let events = events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    assert!(
        events.contains(&Event::RunEnd {
            result: TurnResult::Finished
        }),
        "{events:#?}"
    );

    let bodies: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.body.to_string())
        .collect();
    assert_eq!(bodies.len(), 9);
    let pruned: Vec<bool> = bodies
        .iter()
        .map(|b| b.contains("pruned from the context"))
        .collect();
    let first = pruned
        .iter()
        .position(|p| *p)
        .expect("some request was pruned");
    assert!(
        first >= 4,
        "nothing is pruned while the history is small: {pruned:?}"
    );
    assert!(
        pruned[first..].iter().all(|p| *p),
        "once pruned, the boundary stays: {pruned:?}"
    );
    let last = &bodies[8];
    // The latest two calls' outputs are whole; the first file's is a stub.
    assert!(
        last.contains("marker-7") && last.contains("marker-6"),
        "latest outputs whole"
    );
    assert!(!last.contains("marker-0"), "the oldest output is pruned");
    assert!(
        last.contains("[output of Read (call r0) pruned from the context"),
        "{last}"
    );
    assert!(
        last.len() < bodies[first - 1].len() + 6000,
        "pruning keeps the request small"
    );

    // The log keeps every output whole.
    let log = std::fs::read_to_string(home.path("state/sessions/ctx/000001.jsonl")).unwrap();
    for i in 0..8 {
        assert!(
            log.contains(&format!("marker-{i}")),
            "output {i} is in the log"
        );
    }
    assert!(!log.contains("pruned from the context"));
}

#[tokio::test]
async fn agents_md_files_reach_the_system_prompt_and_doctor_names_them() {
    let home = Home::new();
    let work = home.path("work");
    std::fs::create_dir_all(work.join(".git")).unwrap();
    std::fs::create_dir_all(work.join("app")).unwrap();
    std::fs::write(
        work.join("AGENTS.md"),
        "Always run `make check` before finishing.",
    )
    .unwrap();
    std::fs::write(work.join("app/CLAUDE.md"), "In app/, use tabs.").unwrap();
    let server = FakeProvider::start().await;
    server.push(sse(Turn::new().text("ok")));
    let app = work.join("app");
    let pod = TestPod::start(&home, &server, "inst", &["--cwd", app.to_str().unwrap()]);
    let mut client = pod.connect().await;
    client.request(&run("hi")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    let body = server.requests()[0].body.to_string();
    let general = body
        .find("Always run `make check`")
        .expect("the root's AGENTS.md");
    let nearest = body.find("In app/, use tabs.").expect("app's CLAUDE.md");
    assert!(general < nearest, "the nearest file comes last");

    let out = home
        .command(&server.base_url())
        .args(["doctor"])
        .current_dir(&app)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("instructions"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("AGENTS.md") && line.contains("app/CLAUDE.md"),
        "{line}"
    );
}

/// Routes the summary calls of compactions (their system prompt).
const SUMMARY_KEY: &str = "Summarize this coding agent's conversation";

/// A long tool session with a small window in `family`'s scheme: it compacts
/// (more than once), no request exceeds the window (the fake refuses those with
/// the real error), the log keeps everything, and a restore goes on from the
/// summary.
async fn long_session(family: Family, steps: usize) {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let sse = |turn: Turn| Scripted::sse(turn.sse(family));
    for i in 0..steps {
        let line = format!("file {i} marker-{i}-end ");
        std::fs::write(
            home.path("work").join(format!("f{i}.txt")),
            line.repeat(2000 / line.len()),
        )
        .unwrap();
        let thought =
            format!("Step {i}: reading the next file and noting what it says. ").repeat(8);
        server.push(sse(Turn::new()
            .text(thought)
            .call(
                format!("r{i}"),
                "Read",
                serde_json::json!({"path": format!("f{i}.txt")}).to_string(),
            )
            .counted_usage(120)));
    }
    server.push(sse(Turn::new().text("All files read.").counted_usage(10)));
    for n in 0..steps {
        server.push_for(
            SUMMARY_KEY,
            sse(Turn::new()
                .text(format!("SUMMARY-{n}: files read so far, nothing open."))
                .counted_usage(40)),
        );
    }
    let window: u64 = 8192;
    server.context_window(window);
    let overlay = format!(
        "{}\nmodel.context_window = {window}\nmodel.max_tokens = 1024\ncontext.prune_at = 0.5\ncontext.compact_at = 0.7\ncontext.keep_calls = 1\ncontext.summary_tokens = 256\nworker.max_llm_calls = 1000",
        crate::pod_process::scheme_overlay(family, &server)
    );
    let pod = TestPod::start(&home, &server, "long", &["--overlay", &overlay]);
    let mut client = pod.connect().await;
    client
        .request(&run("read every file, one per step"))
        .await
        .unwrap();
    let events = events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    assert!(
        events.contains(&Event::RunEnd {
            result: TurnResult::Finished
        }),
        "{events:#?}"
    );
    let compactions = events
        .iter()
        .filter(|e| matches!(e, Event::CompactionEnd { .. }))
        .count();
    assert!(compactions >= 1, "the session compacted");

    // No request went over the window (the fake counts ⌈bytes / 4⌉ and would
    // have refused it).
    assert!(
        server.rejections().is_empty(),
        "{family:?}: {:?}",
        server.rejections()
    );
    let requests = server.requests();
    for r in &requests {
        let tokens = r.body.to_string().len().div_ceil(4) as u64;
        assert!(tokens <= window, "a request of {tokens} tokens");
    }
    // The summaries were asked for after the conversation itself, sharing its
    // prefix (the pod's system prompt and tools), not from a transcript.
    let asks: Vec<&serde_json::Value> = requests
        .iter()
        .map(|r| &r.body)
        .filter(|b| b.to_string().contains(SUMMARY_KEY))
        .collect();
    assert!(!asks.is_empty());
    for ask in &asks {
        let text = ask.to_string();
        assert!(
            text.contains("You are `long`") && text.contains("marker-"),
            "{family:?}: a transcript summary: {text}"
        );
    }
    // Requests after the first compaction go on from the summary.
    let last = requests.last().unwrap().body.to_string();
    assert!(
        last.contains("This conversation was compacted") && last.contains("SUMMARY-"),
        "{last}"
    );
    assert!(
        !last.contains("marker-0-end"),
        "the first file is only in the log now"
    );

    // The log keeps every original entry: each file's output is in some segment.
    let dir = home.path("state/sessions/long");
    let mut log = String::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().ends_with(".jsonl") {
            log.push_str(&std::fs::read_to_string(entry.path()).unwrap());
        }
    }
    assert!(
        dir.join("000002.jsonl").exists(),
        "compaction started a segment"
    );
    for i in 0..steps {
        assert!(
            log.contains(&format!("marker-{i}-end")),
            "output {i} is in the log"
        );
    }
    assert_eq!(
        log.matches("\"kind\":\"compaction_end\"").count(),
        compactions
    );

    // Stopped and restored, the pod goes on from the compacted segment.
    client.send(&protocol::Method::Shutdown).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::Shutdown)).await;
    let mut pod = pod;
    assert!(pod.wait_exit().success());
    drop(pod);
    server.push(sse(Turn::new().text("Going on.").counted_usage(5)));
    let restored = TestPod::restore(&home, &server, "long");
    let mut client = restored.connect().await;
    client.request(&run("what did you read?")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    let body = server.requests().last().unwrap().body.to_string();
    assert!(
        body.contains("SUMMARY-") && body.contains("what did you read?"),
        "{body}"
    );
    assert!(!body.contains("marker-0-end"));
}

/// A provider's length refusal makes the pod compact and send the call again,
/// once: the fake refuses requests over a window the estimate does not know.
async fn a_length_refusal_compacts_and_retries_once(family: Family) {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(common::WAIT);
    let line = "0123456789 the quick brown fox jumps over it\n";
    std::fs::write(
        home.path("work").join("big.txt"),
        line.repeat(12_000 / line.len()),
    )
    .unwrap();
    let overlay = crate::pod_process::scheme_overlay(family, &server);
    let pod = TestPod::start(&home, &server, "over", &["--overlay", &overlay]);
    let mut client = pod.connect().await;
    client.request(&run("read big.txt")).await.unwrap();
    // The first request sets the window: it fits, the next (with the file) does not.
    let deadline = std::time::Instant::now() + common::WAIT;
    while server.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no request");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let first = server.requests()[0].body.to_string().len().div_ceil(4) as u64;
    server.context_window(first + 1_500);
    server.push_for(
        SUMMARY_KEY,
        Scripted::sse(
            Turn::new()
                .text("SUMMARY: big.txt was read; it repeats one line.")
                .sse(family),
        ),
    );
    server.push(Scripted::sse(
        Turn::new()
            .call("r1", "Read", r#"{"path":"big.txt"}"#)
            .sse(family),
    ));
    server.push(Scripted::sse(
        Turn::new().text("It repeats one line.").sse(family),
    ));
    let events = events_until(&mut client, |e| {
        matches!(e, Event::RunEnd { .. } | Event::Error { .. })
    })
    .await;
    assert!(
        events.contains(&Event::RunEnd {
            result: TurnResult::Finished
        }),
        "{family:?}: {events:#?}"
    );
    let sizes: Vec<usize> = server
        .requests()
        .iter()
        .map(|r| r.body.to_string().len().div_ceil(4))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::CompactionEnd { .. })),
        "{family:?}: window {}, requests {sizes:?}, rejections {:?}",
        first + 1_500,
        server.rejections()
    );
    let refused = server.rejections();
    assert_eq!(
        refused.len(),
        1,
        "{family:?}: one refusal, then the compacted retry: {refused:?}"
    );
    let last = server.requests().last().unwrap().body.to_string();
    assert!(
        last.contains("SUMMARY: big.txt was read"),
        "{family:?}: {last}"
    );
}

#[tokio::test]
async fn a_length_refusal_compacts_and_retries_openai_chat() {
    a_length_refusal_compacts_and_retries_once(Family::OpenaiChat).await;
}

#[tokio::test]
async fn a_length_refusal_compacts_and_retries_openai_responses() {
    a_length_refusal_compacts_and_retries_once(Family::OpenaiResponses).await;
}

#[tokio::test]
async fn a_length_refusal_compacts_and_retries_anthropic() {
    a_length_refusal_compacts_and_retries_once(Family::Anthropic).await;
}

#[tokio::test]
async fn a_length_refusal_compacts_and_retries_gemini() {
    a_length_refusal_compacts_and_retries_once(Family::Gemini).await;
}

/// `pod compact` on an idle pod, in `family`'s scheme (the strict fake checks
/// that the history going on from the summary is valid there).
async fn pod_compact_on_request(family: Family) {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let overlay = crate::pod_process::scheme_overlay(family, &server);
    let pod = TestPod::start(&home, &server, "cmp", &["--overlay", &overlay]);
    let sse = |turn: Turn| Scripted::sse(turn.sse(family));
    let compact = || {
        home.command(&server.base_url())
            .args(["compact", "cmp"])
            .output()
            .unwrap()
    };
    // A fresh pod has nothing to compact.
    let out = compact();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing was compacted"));

    server.push(sse(Turn::new().text("The answer is 42.")));
    let mut client = pod.connect().await;
    client.request(&run("what is the answer?")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    // Asked after the conversation itself, the model calls a tool instead of
    // summarising: the summary is then written from a transcript.
    server.push_for(
        SUMMARY_KEY,
        sse(Turn::new().call("x1", "Read", r#"{"path":"answer.txt"}"#)),
    );
    server.push_for(
        SUMMARY_KEY,
        sse(Turn::new().text("SUMMARY: the answer is 42.")),
    );
    let out = compact();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("compacted cmp: ≈ ") && stdout.contains(" → "),
        "{stdout}"
    );
    assert!(home.path("state/sessions/cmp/000002.jsonl").exists());
    let asks: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.body.to_string())
        .filter(|b| b.contains(SUMMARY_KEY))
        .collect();
    assert_eq!(asks.len(), 2, "{family:?}: {asks:#?}");
    // First the question after the whole request (same system prompt, same
    // tools: a prompt cache serves it), then the transcript without tools.
    assert!(
        asks[0].contains("You are `cmp`") && asks[0].contains("\"Read\""),
        "{family:?}: {}",
        asks[0]
    );
    assert!(
        !asks[1].contains("You are `cmp`")
            && !asks[1].contains("\"Read\"")
            && asks[1].contains("User: what is the answer?"),
        "{family:?}: {}",
        asks[1]
    );

    // The next run goes on from the summary.
    server.push(sse(Turn::new().text("Still 42.")));
    client.request(&run("and now?")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    let body = server.requests().last().unwrap().body.to_string();
    // It starts from the summary; the answer after the latest request is kept
    // whole (it fits), the request itself only quoted in the summary message.
    assert!(
        body.contains("SUMMARY: the answer is 42.") && body.contains("The answer is 42."),
        "{family:?}: {body}"
    );
    assert_eq!(
        body.matches("what is the answer?").count(),
        1,
        "{family:?}: {body}"
    );
    assert!(
        server.rejections().is_empty(),
        "{family:?}: {:?}",
        server.rejections()
    );
}

// Multi-threaded: `pod compact` runs as a blocking child process while the
// fake provider answers its summary call on this runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_compact_on_request_openai_chat() {
    pod_compact_on_request(Family::OpenaiChat).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_compact_on_request_openai_responses() {
    pod_compact_on_request(Family::OpenaiResponses).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_compact_on_request_anthropic() {
    pod_compact_on_request(Family::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_compact_on_request_gemini() {
    pod_compact_on_request(Family::Gemini).await;
}

#[tokio::test]
async fn a_200_step_session_stays_inside_the_window_openai_chat() {
    long_session(Family::OpenaiChat, 200).await;
}

#[tokio::test]
async fn a_200_step_session_stays_inside_the_window_openai_responses() {
    long_session(Family::OpenaiResponses, 200).await;
}

#[tokio::test]
async fn a_200_step_session_stays_inside_the_window_anthropic() {
    long_session(Family::Anthropic, 200).await;
}

#[tokio::test]
async fn a_200_step_session_stays_inside_the_window_gemini() {
    long_session(Family::Gemini, 200).await;
}

/// Where a `kill -9` lands in a compaction.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// While the summary call waits for its first byte.
    SummaryRequested,
    /// With half of the summary streamed.
    SummaryHalfStreamed,
    /// After the new segment and `compaction_end`, in the next LLM call.
    AfterCompaction,
}

/// A pod killed at `at` during a compaction restores to a valid history: the
/// old segment whole (before the new one exists) or the new one, and goes on.
async fn killed_during_compaction(at: KillAt) {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(common::WAIT);
    let family = Family::OpenaiChat;
    let sse = |turn: Turn| Scripted::sse(turn.sse(family));
    for i in 0..6 {
        let line = format!("file {i} marker-{i}-end\n");
        std::fs::write(
            home.path("work").join(format!("f{i}.txt")),
            line.repeat(3000 / line.len()),
        )
        .unwrap();
        server.push(sse(Turn::new()
            .call(
                format!("r{i}"),
                "Read",
                serde_json::json!({"path": format!("f{i}.txt")}).to_string(),
            )
            .counted_usage(50)));
    }
    let summary = Turn::new()
        .text("SUMMARY-K: six files read.")
        .counted_usage(20)
        .sse(family);
    match at {
        KillAt::SummaryRequested => server.push_for(SUMMARY_KEY, Scripted::stall(Vec::new())),
        KillAt::SummaryHalfStreamed => {
            server.push_for(
                SUMMARY_KEY,
                Scripted::stall(summary[..summary.len() / 2].to_vec()),
            );
        }
        KillAt::AfterCompaction => {
            server.push_for(SUMMARY_KEY, Scripted::sse(summary.clone()));
            server.push_for("SUMMARY-K", Scripted::stall(Vec::new()));
        }
    }
    let overlay = "model.context_window = 6000\nmodel.max_tokens = 500\ncontext.prune_at = 0.9\ncontext.compact_at = 0.6\ncontext.keep_calls = 1\ncontext.summary_tokens = 200";
    let mut pod = TestPod::start(&home, &server, "kill", &["--overlay", overlay]);
    let mut client = pod.connect().await;
    client.request(&run("read the six files")).await.unwrap();
    let kind = match at {
        KillAt::AfterCompaction => "compaction_end",
        _ => "compaction_start",
    };
    crate::pod_process::wait_for_log(&home, "kill", |entries| {
        entries.iter().any(|e| e.kind_name() == kind)
    })
    .await;
    // The call the kill interrupts is on the wire: the summary call (held or
    // half streamed), or after compacting the next call (held), which must
    // take the stall scripted for it before the kill, else the restored pod
    // would get it.
    let on_the_wire = match at {
        KillAt::AfterCompaction => "SUMMARY-K",
        _ => SUMMARY_KEY,
    };
    let deadline = std::time::Instant::now() + common::WAIT;
    while !server
        .requests()
        .iter()
        .any(|r| r.body.to_string().contains(on_the_wire))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no call with {on_the_wire}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    pod.kill9();
    drop(client);
    drop(pod);

    // The log reads back whole, and the segment is the old one or the new one.
    let log = session_store::read_session(home.path("state/sessions/kill")).expect("a valid log");
    let new_segment = home.path("state/sessions/kill/000002.jsonl").exists();
    assert_eq!(new_segment, matches!(at, KillAt::AfterCompaction), "{at:?}");
    assert!(log.entries().count() > 6);

    // Restored, it goes on: answered from the summary, or compacting again.
    server.push_for(SUMMARY_KEY, Scripted::sse(summary));
    // The restored pod's requests carry "go on" (and, after a compaction, the
    // summary); scripted reads left over from before the kill stay unused.
    let done = || sse(Turn::new().text("Done reading.").counted_usage(5));
    server.push_for("SUMMARY-K", done());
    server.push_for("go on", done());
    let restored = TestPod::restore(&home, &server, "kill");
    let mut client = restored.connect().await;
    client.request(&run("go on")).await.unwrap();
    let events = events_until(&mut client, |e| {
        matches!(e, Event::RunEnd { .. } | Event::Error { .. })
    })
    .await;
    assert!(
        events.contains(&Event::RunEnd {
            result: TurnResult::Finished
        }),
        "{at:?}: {events:#?}"
    );
    let last = server.requests().last().unwrap().body.to_string();
    assert!(last.contains("go on"), "{at:?}: {last}");
    if matches!(at, KillAt::AfterCompaction) {
        // It goes on from the summary, not from the old segment.
        assert!(
            last.contains("SUMMARY-K") && !last.contains("marker-0-end"),
            "{last}"
        );
    }
    assert!(server.rejections().is_empty(), "{:?}", server.rejections());
}

#[tokio::test]
async fn killed_while_the_summary_is_requested_restores_the_old_segment() {
    killed_during_compaction(KillAt::SummaryRequested).await;
}

#[tokio::test]
async fn killed_with_half_a_summary_restores_the_old_segment() {
    killed_during_compaction(KillAt::SummaryHalfStreamed).await;
}

#[tokio::test]
async fn killed_after_compacting_restores_from_the_summary() {
    killed_during_compaction(KillAt::AfterCompaction).await;
}

#[tokio::test]
async fn a_compaction_can_be_cancelled_and_changes_nothing() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(common::WAIT);
    let sse = |turn: Turn| Scripted::sse(turn.sse(Family::OpenaiChat));
    server.push(sse(Turn::new().text("The answer is 42.")));
    server.push_for(SUMMARY_KEY, Scripted::stall(Vec::new()));
    let pod = TestPod::start(&home, &server, "cnc", &[]);
    let mut client = pod.connect().await;
    client.request(&run("what is the answer?")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    client.send(&protocol::Method::Compact).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::CompactionStart { .. })).await;
    client.send(&protocol::Method::Cancel).await.unwrap();
    let events = events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    assert!(
        events.contains(&Event::RunEnd {
            result: TurnResult::Cancelled
        }),
        "{events:#?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::CompactionEnd { .. }))
    );
    assert!(!home.path("state/sessions/cnc/000002.jsonl").exists());
    // The history is as it was: the next request carries the first exchange.
    server.push(sse(Turn::new().text("Still 42.")));
    client.request(&run("and now?")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    let body = server.requests().last().unwrap().body.to_string();
    assert!(
        body.contains("The answer is 42.") && !body.contains("compacted"),
        "{body}"
    );
}

/// `messages` of an Anthropic request body without the cache markers.
fn unmarked_messages(body: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut messages = body["messages"].as_array().cloned().unwrap_or_default();
    for m in &mut messages {
        if let Some(content) = m["content"].as_array_mut() {
            for block in content {
                if let Some(b) = block.as_object_mut() {
                    b.remove("cache_control");
                }
            }
        }
    }
    messages
}

#[tokio::test]
async fn anthropic_cache_marks_stay_on_the_longest_shared_prefix_while_pruning() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let family = Family::Anthropic;
    for i in 0..8 {
        let line = format!("file {i} marker-{i}\n");
        std::fs::write(
            home.path("work").join(format!("f{i}.txt")),
            line.repeat(3000 / line.len()),
        )
        .unwrap();
        server.push(Scripted::sse(
            Turn::new()
                .call(
                    format!("r{i}"),
                    "Read",
                    serde_json::json!({"path": format!("f{i}.txt")}).to_string(),
                )
                .counted_usage(20)
                .sse(family),
        ));
    }
    server.push(Scripted::sse(
        Turn::new()
            .text("Read them all.")
            .counted_usage(5)
            .sse(family),
    ));
    let overlay = format!(
        "{}\nmodel.context_window = 16000\nmodel.max_tokens = 1000\ncontext.prune_at = 0.5\ncontext.keep_calls = 2",
        crate::pod_process::scheme_overlay(family, &server)
    );
    let pod = TestPod::start(&home, &server, "cache", &["--overlay", &overlay]);
    let mut client = pod.connect().await;
    client.request(&run("read the eight files")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;

    let bodies: Vec<serde_json::Value> = server.requests().iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies.len(), 9);
    let mut prefix_breaks = 0;
    for (i, body) in bodies.iter().enumerate() {
        // The stable prefix is marked: the system block, the last tool, and the
        // last block of the last user message.
        assert_eq!(
            body["system"][0]["cache_control"]["type"], "ephemeral",
            "request {i}"
        );
        let tools = body["tools"].as_array().unwrap();
        assert_eq!(tools.last().unwrap()["cache_control"]["type"], "ephemeral");
        let messages = body["messages"].as_array().unwrap();
        let last_user = messages.iter().rev().find(|m| m["role"] == "user").unwrap();
        let last_block = last_user["content"].as_array().unwrap().last().unwrap();
        assert_eq!(
            last_block["cache_control"]["type"], "ephemeral",
            "request {i}"
        );
        let marks = body.to_string().matches("\"cache_control\"").count();
        assert_eq!(marks, 3, "request {i} marks exactly three places");
        if i > 0 {
            let (before, now) = (unmarked_messages(&bodies[i - 1]), unmarked_messages(body));
            if now.len() < before.len() || now[..before.len()] != before[..] {
                prefix_breaks += 1;
            }
        }
    }
    // Each request extends the one before, except where pruning moved its
    // boundary: in one step, not one result at a time.
    assert_eq!(prefix_breaks, 1, "pruning breaks the cached prefix once");
}
