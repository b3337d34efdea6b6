//! The agent loop against the scripted fake provider, in every wire scheme:
//! multi-step tool loops with parallel calls, cancel and pause at every kind of
//! point, a stream cut inside a tool call, the call budget, sink failures and
//! notifications joining mid-invocation. After every ending the history must be
//! valid: each tool call answered exactly once, and every scheme able to build a
//! request from it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use llm_worker::llm_client::anthropic::Anthropic;
use llm_worker::llm_client::error::ClientError;
use llm_worker::llm_client::gemini::Gemini;
use llm_worker::llm_client::http::{ClientConfig, ProviderClient, RetryPolicy};
use llm_worker::llm_client::openai_chat::OpenaiChat;
use llm_worker::llm_client::openai_responses::OpenaiResponses;
use llm_worker::llm_client::scheme::WireScheme;
use llm_worker::llm_client::stream::{StopReason, StreamEvent};
use llm_worker::llm_client::types::{ContentPart, Item, Role, Usage};
use llm_worker::tool::{Tool, ToolDefinition, ToolError, ToolMeta, ToolOutput};
use llm_worker::tool_server::{INTERRUPTED, ToolServer};
use llm_worker::worker::{
    AppendKind, Control, Outcome, REPEATED, SinkError, Worker, WorkerConfig, WorkerError,
    WorkerEvent, WorkerSink,
};
use test_support::Family;
use test_support::fake_provider::{FakeProvider, Scripted};
use test_support::script::Turn;
use tokio::sync::Barrier;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

fn scheme(family: Family) -> Arc<dyn WireScheme> {
    match family {
        Family::Anthropic => Arc::new(Anthropic),
        Family::OpenaiChat => Arc::new(OpenaiChat),
        Family::OpenaiResponses => Arc::new(OpenaiResponses),
        Family::Gemini => Arc::new(Gemini),
    }
}

fn all_schemes() -> Vec<Arc<dyn WireScheme>> {
    Family::ALL.into_iter().map(scheme).collect()
}

/// `Echo {text}` answers with its text; `Meet {}` waits until a second `Meet`
/// call is running too (so two calls only finish if they run concurrently);
/// `Hang {}` never returns.
struct TestTool {
    kind: &'static str,
    barrier: Arc<Barrier>,
    started: Arc<AtomicUsize>,
}

#[async_trait]
impl Tool for TestTool {
    async fn execute(&self, input_json: &str) -> Result<ToolOutput, ToolError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let v: serde_json::Value = serde_json::from_str(input_json)
            .map_err(|e| ToolError::InvalidArgument(e.to_string()))?;
        match self.kind {
            "Echo" => Ok(ToolOutput {
                summary: format!("echo: {}", v["text"].as_str().unwrap_or("")),
                content: None,
            }),
            "Meet" => match timeout(Duration::from_secs(10), self.barrier.wait()).await {
                Ok(_) => Ok(ToolOutput {
                    summary: "met".into(),
                    content: None,
                }),
                Err(_) => Err(ToolError::ExecutionFailed("ran alone".into())),
            },
            _ => {
                std::future::pending::<()>().await;
                unreachable!()
            }
        }
    }
}

struct Tools {
    server: Arc<ToolServer>,
    started: Arc<AtomicUsize>,
}

fn tools() -> Tools {
    let barrier = Arc::new(Barrier::new(2));
    let started = Arc::new(AtomicUsize::new(0));
    let defs: Vec<ToolDefinition> = ["Echo", "Meet", "Hang"]
        .into_iter()
        .map(|kind| {
            let barrier = Arc::clone(&barrier);
            let started = Arc::clone(&started);
            let def: ToolDefinition = Arc::new(move || {
                let meta = ToolMeta::new(kind).description(format!("test tool {kind}"));
                let tool: Arc<dyn Tool> = Arc::new(TestTool {
                    kind,
                    barrier: Arc::clone(&barrier),
                    started: Arc::clone(&started),
                });
                (meta, tool)
            });
            def
        })
        .collect();
    Tools {
        server: Arc::new(ToolServer::new(&defs, 64 * 1024).unwrap()),
        started,
    }
}

fn worker(server: &FakeProvider, family: Family, tools: &Tools) -> Worker {
    let mut config = ClientConfig::for_base_url(server.base_url(), None, Some(10));
    config.retry = RetryPolicy {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    let client = Arc::new(ProviderClient::new(scheme(family), config));
    let mut config = WorkerConfig::new("m");
    config.system = "You are a test.".into();
    Worker::new(client, Arc::clone(&tools.server), config)
}

/// An event as the test records it (owned).
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    CallStart(u64),
    Retry(u64),
    Delta(StreamEvent),
    Appended(AppendKind, Item),
    Usage(u64, Usage),
    CallEnd(u64, Option<StopReason>),
    CompactionStart(u64),
    Compacted(Vec<Item>, u64, u64),
    CompactionFailed(String),
}

/// Records events; can cancel, pause or fail when a predicate matches, and
/// hands out pending input once.
#[derive(Default)]
struct Recorder {
    seen: Vec<Seen>,
    control: Control,
    cancel_when: Option<fn(&Seen) -> bool>,
    pause_when: Option<fn(&Seen) -> bool>,
    fail_when: Option<fn(&Seen) -> bool>,
    pending: Vec<Item>,
}

impl WorkerSink for Recorder {
    fn on_event(&mut self, event: WorkerEvent<'_>) -> Result<(), SinkError> {
        let seen = match event {
            WorkerEvent::LlmCallStart { llm_call } => Seen::CallStart(llm_call),
            WorkerEvent::Retry { llm_call, .. } => Seen::Retry(llm_call),
            WorkerEvent::Stream(e) => Seen::Delta(e.clone()),
            WorkerEvent::Appended { kind, item } => Seen::Appended(kind, item.clone()),
            WorkerEvent::Usage { llm_call, usage } => Seen::Usage(llm_call, usage),
            WorkerEvent::LlmCallEnd { llm_call, stop } => Seen::CallEnd(llm_call, stop.cloned()),
            WorkerEvent::CompactionStart { tokens_before } => Seen::CompactionStart(tokens_before),
            WorkerEvent::Compacted {
                history,
                tokens_before,
                tokens_after,
            } => Seen::Compacted(history.to_vec(), tokens_before, tokens_after),
            WorkerEvent::CompactionFailed { error } => Seen::CompactionFailed(error.into()),
        };
        if self.fail_when.is_some_and(|f| f(&seen)) {
            return Err(SinkError("disk full".into()));
        }
        if self.cancel_when.is_some_and(|f| f(&seen)) {
            self.control.cancel.cancel();
        }
        if self.pause_when.is_some_and(|f| f(&seen)) {
            self.control.pause.cancel();
        }
        self.seen.push(seen);
        Ok(())
    }

    fn pending_input(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.pending)
    }
}

impl Recorder {
    fn appended(&self) -> Vec<Item> {
        self.seen
            .iter()
            .filter_map(|s| match s {
                Seen::Appended(_, i) => Some(i.clone()),
                _ => None,
            })
            .collect()
    }
}

async fn invoke(worker: &mut Worker, input: Vec<Item>, sink: &mut Recorder) -> Outcome {
    let control = sink.control.clone();
    timeout(WAIT, worker.invoke(input, sink, &control))
        .await
        .expect("the invocation must end")
}

/// Every tool call answered exactly once, after it; no result without a call;
/// every scheme can build a request from the history.
fn assert_valid(history: &[Item]) {
    let mut open: Vec<&str> = Vec::new();
    let mut answered: Vec<&str> = Vec::new();
    for item in history {
        match item {
            Item::ToolCall { id, arguments, .. } => {
                assert!(!open.contains(&id.as_str()), "call {id} made twice");
                assert!(
                    serde_json::from_str::<serde_json::Value>(arguments).is_ok(),
                    "call {id} has arguments that are not JSON: {arguments}"
                );
                open.push(id);
            }
            Item::ToolResult { call_id, .. } => {
                assert!(
                    open.contains(&call_id.as_str()),
                    "result for unknown call {call_id}"
                );
                assert!(
                    !answered.contains(&call_id.as_str()),
                    "call {call_id} answered twice"
                );
                answered.push(call_id);
            }
            _ => {}
        }
    }
    for id in &open {
        assert!(
            answered.contains(id),
            "call {id} has no result: {history:#?}"
        );
    }
    for scheme in all_schemes() {
        let mut req = llm_worker::llm_client::request::LlmRequest::new("m", history.to_vec());
        req.system = "s".into();
        let body = scheme.body(&req);
        assert!(body.is_object(), "{:?}", scheme.family());
    }
}

fn user(text: &str) -> Item {
    Item::text(Role::User, text)
}

fn result_summary(history: &[Item], call: &str) -> String {
    history
        .iter()
        .find_map(|i| match i {
            Item::ToolResult {
                call_id, summary, ..
            } if call_id == call => Some(summary.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no result for {call}"))
}

#[tokio::test]
async fn three_step_loop_with_two_parallel_calls_ends_in_text_in_every_scheme() {
    for family in Family::ALL {
        let server = FakeProvider::start().await;
        let tools = tools();
        let mut worker = worker(&server, family, &tools);
        server.push(Scripted::sse_chunked(
            Turn::new()
                .thinking("Two things at once.")
                .text("Meeting twice.")
                .call("c1", "Meet", "{}")
                .call("c2", "Meet", "{}")
                .usage(100, 10)
                .sse(family),
            11,
            Duration::ZERO,
        ));
        server.push(Scripted::sse(
            Turn::new()
                .call("c3", "Echo", r#"{"text":"again"}"#)
                .usage(200, 5)
                .sse(family),
        ));
        server.push(Scripted::sse(
            Turn::new().text("All done.").usage(300, 7).sse(family),
        ));
        let mut sink = Recorder::default();
        let outcome = invoke(&mut worker, vec![user("go")], &mut sink).await;
        assert_eq!(
            outcome,
            Outcome::Finished {
                stop: StopReason::End
            },
            "{family:?}"
        );

        // The calls met: they ran concurrently.
        let h = worker.history();
        assert_eq!(result_summary(h, "c1"), "met", "{family:?}");
        assert_eq!(result_summary(h, "c2"), "met", "{family:?}");
        assert_eq!(result_summary(h, "c3"), "echo: again", "{family:?}");
        assert_valid(h);

        // History: input, step 1 (reasoning, text, two calls, two results),
        // step 2 (call, result), step 3 (text).
        let shape: Vec<String> = h
            .iter()
            .map(|i| match i {
                Item::Message { role, content, .. } => format!(
                    "{role:?}:{}",
                    content
                        .iter()
                        .map(|ContentPart::Text { text }| text.as_str())
                        .collect::<String>()
                ),
                Item::Reasoning { text, .. } => format!("reasoning:{text}"),
                Item::ToolCall { id, name, .. } => format!("call:{id}:{name}"),
                Item::ToolResult { call_id, .. } => format!("result:{call_id}"),
                Item::ProviderItem { .. } => "provider".into(),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "User:go",
                "reasoning:Two things at once.",
                "Assistant:Meeting twice.",
                "call:c1:Meet",
                "call:c2:Meet",
                "result:c1",
                "result:c2",
                "call:c3:Echo",
                "result:c3",
                "Assistant:All done.",
            ],
            "{family:?}"
        );
        // Everything in the history was reported as appended, in order.
        assert_eq!(sink.appended(), h, "{family:?}");

        // Three calls, each bracketed, with its usage, in order.
        let frame: Vec<&Seen> = sink
            .seen
            .iter()
            .filter(|s| matches!(s, Seen::CallStart(_) | Seen::CallEnd(..) | Seen::Usage(..)))
            .collect();
        assert_eq!(frame.len(), 9, "{family:?}: {frame:?}");
        for (n, want_stop) in [
            (1, StopReason::ToolUse),
            (2, StopReason::ToolUse),
            (3, StopReason::End),
        ] {
            let i = (n as usize - 1) * 3;
            assert_eq!(frame[i], &Seen::CallStart(n), "{family:?}");
            assert!(
                matches!(frame[i + 1], Seen::Usage(m, u) if *m == n && u.input_tokens == 100 * n),
                "{family:?}: {:?}",
                frame[i + 1]
            );
            assert_eq!(
                frame[i + 2],
                &Seen::CallEnd(n, Some(want_stop)),
                "{family:?}"
            );
        }
        // Deltas streamed before the items were appended.
        let first_delta = sink
            .seen
            .iter()
            .position(|s| matches!(s, Seen::Delta(StreamEvent::TextDelta { .. })))
            .unwrap();
        let first_assistant = sink
            .seen
            .iter()
            .position(|s| matches!(s, Seen::Appended(AppendKind::Assistant, _)))
            .unwrap();
        assert!(first_delta < first_assistant, "{family:?}");

        // What was sent: three requests; the second carries both results, the
        // third the Echo result.
        let requests = server.requests();
        assert_eq!(requests.len(), 3, "{family:?}");
        let second = requests[1].body.to_string();
        assert!(
            second.contains("c1") && second.contains("c2") && second.contains("met"),
            "{family:?}: {second}"
        );
        let third = requests[2].body.to_string();
        assert!(third.contains("echo: again"), "{family:?}: {third}");
        assert_eq!(worker.llm_calls(), 3);
    }
}

#[tokio::test]
async fn cancel_mid_stream_returns_promptly_with_a_valid_history() {
    for family in Family::ALL {
        let server = FakeProvider::start().await;
        let tools = tools();
        let mut worker = worker(&server, family, &tools);
        let turn = Turn::new()
            .text("Starting.")
            .call("c1", "Echo", r#"{"text":"a long argument"}"#)
            .call("c2", "Echo", r#"{"text":"b"}"#);
        // The stream stops inside the first call and then stays silent.
        server.push(Scripted::stall(turn.sse_cut_in_call(family)));
        let mut sink = Recorder {
            cancel_when: Some(|s| matches!(s, Seen::Delta(StreamEvent::ToolCallStart { .. }))),
            ..Recorder::default()
        };
        let started = std::time::Instant::now();
        let outcome = invoke(&mut worker, vec![user("go")], &mut sink).await;
        assert_eq!(outcome, Outcome::Cancelled, "{family:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{family:?}: cancel took {:?}",
            started.elapsed()
        );
        let h = worker.history().to_vec();
        assert_valid(&h);
        assert_eq!(result_summary(&h, "c1"), INTERRUPTED, "{family:?}");
        assert!(
            h.iter().any(|i| matches!(
                i,
                Item::Message {
                    role: Role::Assistant,
                    ..
                }
            )),
            "{family:?}: the partial text is kept"
        );
        assert_eq!(
            tools.started.load(Ordering::SeqCst),
            0,
            "{family:?}: no tool ran"
        );
        // The cut is reported like any append, and the call is closed.
        assert!(
            matches!(sink.seen.last(), Some(Seen::CallEnd(1, None))),
            "{family:?}: {:?}",
            sink.seen.last()
        );
        assert_eq!(sink.appended(), h, "{family:?}");

        // The next invocation sends the repaired history and works.
        server.push(Scripted::sse(Turn::new().text("Fine.").sse(family)));
        let mut sink = Recorder::default();
        let outcome = invoke(&mut worker, vec![user("again")], &mut sink).await;
        assert_eq!(
            outcome,
            Outcome::Finished {
                stop: StopReason::End
            },
            "{family:?}"
        );
        let body = server.requests()[1].body.to_string();
        assert!(body.contains(INTERRUPTED), "{family:?}: {body}");
        assert_valid(worker.history());
    }
}

#[tokio::test]
async fn cancel_while_tools_run_answers_the_unfinished_ones_interrupted() {
    let family = Family::Anthropic;
    let server = FakeProvider::start().await;
    let tools = tools();
    let mut worker = worker(&server, family, &tools);
    server.push(Scripted::sse(
        Turn::new()
            .call("fast", "Echo", r#"{"text":"x"}"#)
            .call("slow", "Hang", "{}")
            .sse(family),
    ));
    let mut sink = Recorder::default();
    let cancel = sink.control.cancel.clone();
    let started = Arc::clone(&tools.started);
    // Cancel once both tools have started.
    tokio::spawn(async move {
        while started.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancel.cancel();
    });
    let outcome = invoke(&mut worker, vec![user("go")], &mut sink).await;
    assert_eq!(outcome, Outcome::Cancelled);
    let h = worker.history();
    assert_valid(h);
    assert_eq!(result_summary(h, "fast"), "echo: x");
    assert_eq!(result_summary(h, "slow"), INTERRUPTED);
    assert_eq!(server.requests().len(), 1, "no call after the cancel");
}

#[tokio::test]
async fn disconnect_mid_tool_call_fails_typed_and_keeps_the_history_valid() {
    for family in Family::ALL {
        let server = FakeProvider::start().await;
        let tools = tools();
        let mut worker = worker(&server, family, &tools);
        let turn = Turn::new()
            .text("Let me check.")
            .call("c1", "Echo", r#"{"text":"first"}"#)
            .call("c2", "Echo", r#"{"text":"second"}"#);
        server.push(Scripted::disconnect(turn.sse_cut_in_call(family)));
        let mut sink = Recorder::default();
        let outcome = invoke(&mut worker, vec![user("go")], &mut sink).await;
        match &outcome {
            Outcome::Failed(WorkerError::Llm(ClientError::StreamBroken(_))) => {}
            other => panic!("{family:?}: want a broken stream, got {other:?}"),
        }
        assert_eq!(
            server.requests().len(),
            1,
            "{family:?}: no retry after content"
        );
        let h = worker.history();
        assert_valid(h);
        assert_eq!(
            tools.started.load(Ordering::SeqCst),
            0,
            "{family:?}: the cut call never ran"
        );
        // Gemini sends calls whole: its cut falls after the first call, which is
        // complete; the others are cut inside the call. Either way it is answered.
        assert_eq!(result_summary(h, "c1"), INTERRUPTED, "{family:?}");
        assert!(
            !h.iter()
                .any(|i| matches!(i, Item::ToolCall { id, .. } if id == "c2")),
            "{family:?}"
        );
        assert_eq!(sink.appended(), h, "{family:?}");
    }
}

#[tokio::test]
async fn the_call_budget_ends_the_invocation_as_limit_reached() {
    let family = Family::OpenaiChat;
    let server = FakeProvider::start().await;
    let tools = tools();
    let mut worker = worker(&server, family, &tools);
    worker.config_mut().max_llm_calls = 2;
    for n in 0..3 {
        server.push(Scripted::sse(
            Turn::new()
                .call(format!("c{n}"), "Echo", r#"{"text":"more"}"#)
                .sse(family),
        ));
    }
    let mut sink = Recorder::default();
    let outcome = invoke(&mut worker, vec![user("loop")], &mut sink).await;
    assert_eq!(outcome, Outcome::LimitReached);
    assert_eq!(server.requests().len(), 2);
    assert_valid(worker.history());
    // The budget is per invocation: the next one may call again.
    let mut sink = Recorder::default();
    server.push(Scripted::sse(Turn::new().text("ok").sse(family)));
    let outcome = invoke(&mut worker, vec![], &mut sink).await;
    // The leftover scripted tool turn comes first, then the text.
    assert_eq!(
        outcome,
        Outcome::Finished {
            stop: StopReason::End
        }
    );
    assert_eq!(worker.llm_calls(), 4);
}

#[tokio::test]
async fn a_call_repeating_the_last_successful_one_is_answered_not_run() {
    let family = Family::OpenaiChat;
    let server = FakeProvider::start().await;
    let tools = tools();
    let mut worker = worker(&server, family, &tools);
    worker.config_mut().skip_repeated_calls = true;
    // The same call three times (spaced differently once), then another one.
    for (id, args) in [
        ("c0", r#"{"text":"x"}"#),
        ("c1", r#"{ "text": "x" }"#),
        ("c2", r#"{"text":"x"}"#),
        ("c3", r#"{"text":"y"}"#),
    ] {
        server.push(Scripted::sse(
            Turn::new().call(id, "Echo", args).sse(family),
        ));
    }
    server.push(Scripted::sse(Turn::new().text("done").sse(family)));
    let mut sink = Recorder::default();
    let outcome = invoke(&mut worker, vec![user("go")], &mut sink).await;
    assert_eq!(
        outcome,
        Outcome::Finished {
            stop: StopReason::End
        }
    );
    assert_valid(worker.history());
    // Only the first and the different call ran.
    assert_eq!(tools.started.load(Ordering::SeqCst), 2);
    for id in ["c1", "c2"] {
        let summary = result_summary(worker.history(), id);
        assert!(summary.starts_with(REPEATED), "{id}: {summary}");
    }
    assert!(!result_summary(worker.history(), "c3").starts_with(REPEATED));
    // A new invocation starts afresh: the same call runs again.
    server.push(Scripted::sse(
        Turn::new()
            .call("c4", "Echo", r#"{"text":"y"}"#)
            .sse(family),
    ));
    server.push(Scripted::sse(Turn::new().text("again").sse(family)));
    let mut sink = Recorder::default();
    invoke(&mut worker, vec![user("once more")], &mut sink).await;
    assert_eq!(tools.started.load(Ordering::SeqCst), 3);

    // Off (the default), repeats run.
    let server = FakeProvider::start().await;
    let tools = self::tools();
    let mut worker = self::worker(&server, family, &tools);
    for id in ["d0", "d1"] {
        server.push(Scripted::sse(
            Turn::new().call(id, "Echo", r#"{"text":"x"}"#).sse(family),
        ));
    }
    server.push(Scripted::sse(Turn::new().text("done").sse(family)));
    let mut sink = Recorder::default();
    invoke(&mut worker, vec![user("go")], &mut sink).await;
    assert_eq!(tools.started.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_result_note_follows_successful_results_only() {
    let family = Family::OpenaiChat;
    let server = FakeProvider::start().await;
    let tools = tools();
    let mut worker = worker(&server, family, &tools);
    worker.config_mut().result_note = Some("Reply if done.".into());
    server.push(Scripted::sse(
        Turn::new()
            .call("ok", "Echo", r#"{"text":"x"}"#)
            .call("bad", "Echo", r#"{"text": oops}"#)
            .sse(family),
    ));
    server.push(Scripted::sse(Turn::new().text("done").sse(family)));
    let mut sink = Recorder::default();
    invoke(&mut worker, vec![user("go")], &mut sink).await;
    let content = |id: &str| {
        worker
            .history()
            .iter()
            .find_map(|i| match i {
                Item::ToolResult {
                    call_id,
                    content,
                    is_error,
                    ..
                } if call_id == id => Some((content.clone().unwrap_or_default(), *is_error)),
                _ => None,
            })
            .unwrap()
    };
    let (ok, is_error) = content("ok");
    assert!(
        !is_error && ok.ends_with("\n\nReply if done.") || ok == "Reply if done.",
        "{ok}"
    );
    let (bad, is_error) = content("bad");
    assert!(is_error && !bad.contains("Reply if done."), "{bad}");
    // The note reached the model with the result.
    let second = server.requests()[1].body.to_string();
    assert!(second.contains("Reply if done."), "{second}");
}

#[tokio::test]
async fn pause_stops_at_the_step_boundary_and_resume_continues() {
    let family = Family::OpenaiResponses;
    let server = FakeProvider::start().await;
    let tools = tools();
    let mut worker = worker(&server, family, &tools);
    server.push(Scripted::sse(
        Turn::new()
            .call("c1", "Echo", r#"{"text":"one"}"#)
            .sse(family),
    ));
    server.push(Scripted::sse(Turn::new().text("resumed").sse(family)));
    let mut sink = Recorder {
        // Paused while the first response streams: the response and its tool
        // call still complete.
        pause_when: Some(|s| matches!(s, Seen::Delta(StreamEvent::ToolCallStart { .. }))),
        ..Recorder::default()
    };
    let outcome = invoke(&mut worker, vec![user("go")], &mut sink).await;
    assert_eq!(outcome, Outcome::Paused);
    assert_eq!(result_summary(worker.history(), "c1"), "echo: one");
    assert_eq!(server.requests().len(), 1);
    assert_valid(worker.history());

    let mut sink = Recorder::default();
    let outcome = invoke(&mut worker, vec![], &mut sink).await;
    assert_eq!(
        outcome,
        Outcome::Finished {
            stop: StopReason::End
        }
    );
    assert_eq!(server.requests().len(), 2);
    assert!(server.requests()[1].body.to_string().contains("echo: one"));
}

#[tokio::test]
async fn a_sink_failure_stops_the_invocation_and_keeps_memory_valid() {
    let family = Family::Anthropic;
    let server = FakeProvider::start().await;
    let tools = tools();
    let mut worker = worker(&server, family, &tools);
    server.push(Scripted::sse(
        Turn::new()
            .call("c1", "Echo", r#"{"text":"a"}"#)
            .call("c2", "Echo", r#"{"text":"b"}"#)
            .sse(family),
    ));
    let mut sink = Recorder {
        fail_when: Some(
            |s| matches!(s, Seen::Appended(AppendKind::Assistant, Item::ToolCall { id, .. }) if id == "c2"),
        ),
        ..Recorder::default()
    };
    let outcome = invoke(&mut worker, vec![user("go")], &mut sink).await;
    assert_eq!(
        outcome,
        Outcome::Failed(WorkerError::Sink(SinkError("disk full".into())))
    );
    assert_eq!(
        tools.started.load(Ordering::SeqCst),
        0,
        "no tool runs after a failed append"
    );
    assert_eq!(server.requests().len(), 1);
    assert_valid(worker.history());
    // Nothing was reported after the failure.
    assert!(
        matches!(sink.seen.last(), Some(Seen::Appended(_, Item::ToolCall { id, .. })) if id == "c1")
    );
}

#[tokio::test]
async fn a_sink_failure_mid_stream_aborts_the_stream() {
    let family = Family::OpenaiChat;
    let server = FakeProvider::start().await;
    let tools = tools();
    let mut worker = worker(&server, family, &tools);
    let turn = Turn::new()
        .text("hello")
        .call("c1", "Echo", r#"{"text":"a"}"#);
    server.push(Scripted::stall(turn.sse_cut_in_call(family)));
    let mut sink = Recorder {
        fail_when: Some(|s| matches!(s, Seen::Delta(StreamEvent::TextDelta { .. }))),
        ..Recorder::default()
    };
    let outcome = invoke(&mut worker, vec![user("go")], &mut sink).await;
    assert_eq!(
        outcome,
        Outcome::Failed(WorkerError::Sink(SinkError("disk full".into())))
    );
    assert_valid(worker.history());
}

#[tokio::test]
async fn notifications_join_the_next_request_and_retries_are_reported() {
    let family = Family::Gemini;
    let server = FakeProvider::start().await;
    let tools = tools();
    let mut worker = worker(&server, family, &tools);
    server.push(Scripted::too_many_requests(0));
    server.push(Scripted::sse(
        Turn::new()
            .call("c1", "Echo", r#"{"text":"x"}"#)
            .sse(family),
    ));
    server.push(Scripted::sse(Turn::new().text("noted").sse(family)));
    let mut sink = Recorder::default();
    let control = sink.control.clone();
    // The first pending_input call happens before the first request; the
    // notification arrives "during" the first call.
    sink.pending = vec![];
    let mut first = true;
    struct Late<'a> {
        inner: &'a mut Recorder,
        first: &'a mut bool,
    }
    impl WorkerSink for Late<'_> {
        fn on_event(&mut self, event: WorkerEvent<'_>) -> Result<(), SinkError> {
            self.inner.on_event(event)
        }
        fn pending_input(&mut self) -> Vec<Item> {
            if std::mem::take(self.first) {
                return Vec::new();
            }
            std::mem::take(&mut self.inner.pending)
        }
    }
    sink.pending = vec![Item::text(Role::User, "[notification] child finished")];
    let mut late = Late {
        inner: &mut sink,
        first: &mut first,
    };
    let outcome = timeout(WAIT, worker.invoke(vec![user("go")], &mut late, &control))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Outcome::Finished {
            stop: StopReason::End
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "429, then two calls");
    assert!(!requests[1].body.to_string().contains("child finished"));
    assert!(requests[2].body.to_string().contains("child finished"));
    assert!(sink.seen.contains(&Seen::Retry(1)));
    // Committed input is in the history but was not reported again.
    assert!(
        worker
            .history()
            .iter()
            .any(|i| i == &Item::text(Role::User, "[notification] child finished"))
    );
    assert!(
        !sink
            .appended()
            .iter()
            .any(|i| i == &Item::text(Role::User, "[notification] child finished"))
    );
    assert_valid(worker.history());
}

#[test]
fn the_invocation_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let tools = tools();
    let client = Arc::new(ProviderClient::new(
        scheme(Family::Anthropic),
        ClientConfig::new("http://127.0.0.1:9"),
    ));
    let mut worker = Worker::new(client, tools.server, WorkerConfig::new("m"));
    let mut sink = Recorder::default();
    let control = Control::new();
    let fut = worker.invoke(vec![], &mut sink, &control);
    assert_send(&fut);
}
