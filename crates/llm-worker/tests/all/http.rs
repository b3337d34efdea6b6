#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The transport against the fake provider over real TCP: replay, retries,
//! timeouts, broken streams and cancellation. A tiny test-only wire scheme
//! (`data: {"t":"text"}` → text, `data: {"done":true}` → end,
//! `data: {"error":"..."}` → provider error) drives it, independent of the real
//! provider schemes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llm_types::{Item, ProviderFamily, Role};
use llm_worker::llm_client::error::{ClientError, StreamFailure, TimeoutKind};
use llm_worker::llm_client::http::{
    ClientConfig, LlmClient, ProviderClient, RetryNotice, RetryPolicy,
};
use llm_worker::llm_client::request::LlmRequest;
use llm_worker::llm_client::scheme::WireScheme;
use llm_worker::llm_client::sse::SseEvent;
use llm_worker::llm_client::stream::{Assembler, Completion, Flow, StreamDecoder, StreamEvent};
use test_support::fake_provider::{Chunking, FakeProvider, Scripted};
use tokio_util::sync::CancellationToken;

struct TestScheme;

impl WireScheme for TestScheme {
    fn family(&self) -> ProviderFamily {
        ProviderFamily::OpenaiChat
    }
    fn endpoint(&self, base_url: &str, model: &str) -> String {
        format!("{base_url}/models/{model}/stream?alt=sse")
    }
    fn headers(&self, api_key: Option<&str>) -> Vec<(String, String)> {
        let mut h = vec![("x-test-scheme".to_string(), "1".to_string())];
        if let Some(k) = api_key {
            h.push(("authorization".into(), format!("Bearer {k}")));
        }
        h
    }
    fn body(&self, request: &LlmRequest) -> serde_json::Value {
        serde_json::json!({"model": request.model, "stream": true, "n": request.history.len()})
    }
    fn decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(TestDecoder { done: false })
    }
}

struct TestDecoder {
    done: bool,
}

impl StreamDecoder for TestDecoder {
    fn feed(&mut self, event: &SseEvent, asm: &mut Assembler) -> Result<Flow, ClientError> {
        let v: serde_json::Value = serde_json::from_str(&event.data)
            .map_err(|e| ClientError::Decode(format!("{e}: {}", event.data)))?;
        if let Some(t) = v.get("t").and_then(|t| t.as_str()) {
            asm.text_delta("0", t);
        }
        if let Some(m) = v.get("error").and_then(|t| t.as_str()) {
            return Err(ClientError::Provider {
                code: None,
                message: m.to_string(),
            });
        }
        if v.get("done").is_some() {
            self.done = true;
            return Ok(Flow::Done);
        }
        Ok(Flow::Continue)
    }
    fn finish(&mut self, _asm: &mut Assembler) -> Result<(), ClientError> {
        if self.done {
            Ok(())
        } else {
            Err(ClientError::StreamBroken("no end marker".into()))
        }
    }
}

fn text(t: &str) -> String {
    format!("data: {}\n\n", serde_json::json!({ "t": t }))
}

const DONE: &str = "data: {\"done\":true}\n\n";

fn ok_body(parts: &[&str]) -> Vec<u8> {
    let mut s: String = parts.iter().map(|p| text(p)).collect();
    s.push_str(DONE);
    s.into_bytes()
}

fn config(server: &FakeProvider) -> ClientConfig {
    let mut c = ClientConfig::for_base_url(server.base_url(), Some("sk-test".into()), None);
    c.connect_timeout = Duration::from_secs(5);
    c.first_byte_timeout = Duration::from_secs(10);
    c.idle_timeout = Duration::from_secs(10);
    c.retry = RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        retry_after_cap: Duration::from_secs(5),
    };
    c
}

fn client(config: ClientConfig) -> Box<dyn LlmClient> {
    Box::new(ProviderClient::new(Arc::new(TestScheme), config))
}

fn request() -> LlmRequest {
    LlmRequest::new("m1", vec![Item::text(Role::User, "hi")])
}

struct Run {
    result: Result<Completion, StreamFailure>,
    events: Vec<StreamEvent>,
    retries: Vec<RetryNotice>,
}

async fn run(client: &dyn LlmClient, cancel: &CancellationToken) -> Run {
    let mut events = Vec::new();
    let mut retries = Vec::new();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        client.stream_observed(&request(), cancel, &mut |e| events.push(e), &mut |r| {
            retries.push(r)
        }),
    )
    .await
    .expect("call did not finish within 20 s");
    Run {
        result,
        events,
        retries,
    }
}

fn text_of(c: &Completion) -> String {
    c.items.iter().map(Item::message_text).collect()
}

#[tokio::test]
async fn replays_over_tcp_in_one_byte_chunks_and_sends_the_scheme_request() {
    let server = FakeProvider::start().await;
    server.push(Scripted::Sse {
        body: ok_body(&["Hel", "lo, ", "wörld"]),
        chunking: Chunking::Fixed(1),
        pause: Duration::ZERO,
    });
    let c = client(config(&server));
    assert_eq!(c.family(), ProviderFamily::OpenaiChat);
    let mut events = Vec::new();
    let completion = tokio::time::timeout(
        Duration::from_secs(20),
        c.stream(&request(), &CancellationToken::new(), &mut |e| {
            events.push(e)
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(text_of(&completion), "Hello, wörld");
    assert_eq!(
        events,
        vec![
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta {
                text: "lo, ".into()
            },
            StreamEvent::TextDelta {
                text: "wörld".into()
            },
        ]
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/models/m1/stream?alt=sse");
    assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(r.header("x-test-scheme"), Some("1"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("accept"), Some("text/event-stream"));
    assert_eq!(
        r.body,
        serde_json::json!({"model":"m1","stream":true,"n":1})
    );
}

#[tokio::test]
async fn odd_chunk_sizes_and_pauses_give_the_same_result() {
    let server = FakeProvider::start().await;
    let body = ok_body(&["a", "bc", "def", "\u{1F600}"]);
    server.push(Scripted::Sse {
        body: body.clone(),
        chunking: Chunking::Sizes(vec![3, 1, 7, 2]),
        pause: Duration::from_millis(2),
    });
    server.push(Scripted::sse(body));
    let c = client(config(&server));
    let a = run(c.as_ref(), &CancellationToken::new()).await;
    let b = run(c.as_ref(), &CancellationToken::new()).await;
    let (a, b) = (a.result.unwrap(), b.result.unwrap());
    assert_eq!(text_of(&a), "abcdef\u{1F600}");
    assert_eq!(a, b);
}

#[tokio::test]
async fn data_after_done_is_ignored() {
    let server = FakeProvider::start().await;
    let mut body = ok_body(&["x"]);
    body.extend_from_slice(text("ignored").as_bytes());
    server.push(Scripted::sse(body));
    let run = run(client(config(&server)).as_ref(), &CancellationToken::new()).await;
    assert_eq!(text_of(&run.result.unwrap()), "x");
    assert_eq!(
        run.events,
        vec![StreamEvent::TextDelta { text: "x".into() }]
    );
}

#[tokio::test]
async fn honours_429_retry_after_then_succeeds() {
    let server = FakeProvider::start().await;
    server.push(Scripted::too_many_requests(1));
    server.push(Scripted::sse(ok_body(&["ok"])));
    let c = client(config(&server));
    let start = Instant::now();
    let run = run(c.as_ref(), &CancellationToken::new()).await;
    let elapsed = start.elapsed();
    assert_eq!(text_of(&run.result.unwrap()), "ok");
    assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(server.requests().len(), 2);
    assert_eq!(run.retries.len(), 1);
    assert_eq!(run.retries[0].retry, 1);
    assert_eq!(run.retries[0].delay, Duration::from_secs(1));
    assert!(matches!(
        run.retries[0].error,
        ClientError::Http {
            status: 429,
            retry_after: Some(d),
            ..
        } if d == Duration::from_secs(1)
    ));
}

#[tokio::test]
async fn retry_after_beyond_the_cap_fails_at_once_with_the_delay() {
    let server = FakeProvider::start().await;
    server.push(Scripted::too_many_requests(3600));
    server.push(Scripted::sse(ok_body(&["never"])));
    let run = run(client(config(&server)).as_ref(), &CancellationToken::new()).await;
    let err = run.result.unwrap_err();
    assert!(
        matches!(err.error, ClientError::Http { status: 429, retry_after: Some(d), .. } if d == Duration::from_secs(3600)),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.pending(), 1);
}

#[tokio::test]
async fn server_error_then_success() {
    let server = FakeProvider::start().await;
    server.push(Scripted::status(500, r#"{"error":"oops"}"#));
    server.push(Scripted::Status {
        code: 529,
        headers: vec![],
        body: b"overloaded".to_vec(),
    });
    server.push(Scripted::sse(ok_body(&["fine"])));
    let run = run(client(config(&server)).as_ref(), &CancellationToken::new()).await;
    assert_eq!(text_of(&run.result.unwrap()), "fine");
    assert_eq!(server.requests().len(), 3);
    assert_eq!(run.retries.len(), 2);
    for r in &run.retries {
        assert!(r.delay <= Duration::from_millis(50), "{r:?}");
    }
}

#[tokio::test]
async fn retries_are_bounded_and_report_the_last_status() {
    let server = FakeProvider::start().await;
    for _ in 0..4 {
        server.push(Scripted::status(503, "unavailable"));
    }
    server.push(Scripted::sse(ok_body(&["too late"])));
    let run = run(client(config(&server)).as_ref(), &CancellationToken::new()).await;
    let err = run.result.unwrap_err();
    assert_eq!(
        err.error,
        ClientError::Http {
            status: 503,
            body: "unavailable".into(),
            retry_after: None
        }
    );
    assert_eq!(server.requests().len(), 4, "1 attempt + 3 retries");
    assert_eq!(server.pending(), 1);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_bodies_are_truncated() {
    let server = FakeProvider::start().await;
    server.push(Scripted::status(
        400,
        format!(r#"{{"error":"bad","pad":"{}"}}"#, "x".repeat(5000)),
    ));
    server.push(Scripted::sse(ok_body(&["never"])));
    let run = run(client(config(&server)).as_ref(), &CancellationToken::new()).await;
    let err = run.result.unwrap_err();
    let ClientError::Http {
        status,
        body,
        retry_after,
    } = &err.error
    else {
        panic!("{err:?}")
    };
    assert_eq!(*status, 400);
    assert!(body.starts_with(r#"{"error":"bad""#));
    assert!(body.len() <= 2048 + 3, "{}", body.len());
    assert_eq!(*retry_after, None);
    assert_eq!(err.partial, Completion::default());
    assert!(run.retries.is_empty());
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.pending(), 1);
}

#[tokio::test]
async fn unauthorized_is_not_retried() {
    let server = FakeProvider::start().await;
    server.push(Scripted::status(401, "no key"));
    let run = run(client(config(&server)).as_ref(), &CancellationToken::new()).await;
    assert!(matches!(
        run.result.unwrap_err().error,
        ClientError::Http { status: 401, .. }
    ));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn connect_refused_fails_after_retries_quickly() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = ClientConfig::for_base_url(format!("http://127.0.0.1:{port}/v1"), None, None);
    cfg.retry = RetryPolicy {
        max_retries: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        retry_after_cap: Duration::from_secs(1),
    };
    let start = Instant::now();
    let run = run(client(cfg).as_ref(), &CancellationToken::new()).await;
    let err = run.result.unwrap_err();
    assert!(matches!(err.error, ClientError::Connect(_)), "{err:?}");
    assert_eq!(run.retries.len(), 2);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn connection_lost_before_any_byte_is_retried() {
    let server = FakeProvider::start().await;
    server.push(Scripted::disconnect(Vec::new()));
    server.push(Scripted::sse(ok_body(&["second try"])));
    let run = run(client(config(&server)).as_ref(), &CancellationToken::new()).await;
    assert_eq!(text_of(&run.result.unwrap()), "second try");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn stall_past_the_idle_timeout_keeps_the_partial_text() {
    let server = FakeProvider::start().await;
    server.push(Scripted::stall(format!("{}{}", text("par"), text("tial"))));
    server.push(Scripted::sse(ok_body(&["never"])));
    let mut cfg = config(&server);
    cfg.idle_timeout = Duration::from_millis(300);
    let start = Instant::now();
    let run = run(client(cfg).as_ref(), &CancellationToken::new()).await;
    let err = run.result.unwrap_err();
    assert_eq!(err.error, ClientError::Timeout(TimeoutKind::Idle));
    assert_eq!(text_of(&err.partial), "partial");
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.pending(), 1);
}

#[tokio::test]
async fn stall_before_the_first_byte_times_out() {
    let server = FakeProvider::start().await;
    server.push(Scripted::stall(Vec::new()));
    let mut cfg = config(&server);
    cfg.first_byte_timeout = Duration::from_millis(300);
    let start = Instant::now();
    let run = run(client(cfg).as_ref(), &CancellationToken::new()).await;
    let err = run.result.unwrap_err();
    assert_eq!(err.error, ClientError::Timeout(TimeoutKind::FirstByte));
    assert_eq!(err.partial, Completion::default());
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn disconnect_mid_stream_is_broken_with_partial_and_never_retried() {
    let server = FakeProvider::start().await;
    server.push(Scripted::disconnect(format!(
        "{}{}",
        text("cut "),
        text("here")
    )));
    server.push(Scripted::sse(ok_body(&["must not be consumed"])));
    let run = run(client(config(&server)).as_ref(), &CancellationToken::new()).await;
    let err = run.result.unwrap_err();
    assert!(matches!(err.error, ClientError::StreamBroken(_)), "{err:?}");
    assert_eq!(text_of(&err.partial), "cut here");
    assert!(run.retries.is_empty());
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.pending(), 1);
}

#[tokio::test]
async fn clean_eof_without_end_marker_is_the_decoders_call() {
    let server = FakeProvider::start().await;
    server.push(Scripted::sse(text("no end")));
    server.push(Scripted::sse(ok_body(&["must not be consumed"])));
    let run = run(client(config(&server)).as_ref(), &CancellationToken::new()).await;
    let err = run.result.unwrap_err();
    assert_eq!(err.error, ClientError::StreamBroken("no end marker".into()));
    assert_eq!(text_of(&err.partial), "no end");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn in_band_provider_error_is_not_retried() {
    let server = FakeProvider::start().await;
    server.push(Scripted::sse(format!(
        "{}data: {{\"error\":\"overloaded\"}}\n\n",
        text("so far")
    )));
    server.push(Scripted::sse(ok_body(&["must not be consumed"])));
    let run = run(client(config(&server)).as_ref(), &CancellationToken::new()).await;
    let err = run.result.unwrap_err();
    assert_eq!(
        err.error,
        ClientError::Provider {
            code: None,
            message: "overloaded".into()
        }
    );
    assert_eq!(text_of(&err.partial), "so far");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn cancel_mid_stream_returns_promptly_with_partial() {
    let server = FakeProvider::start().await;
    server.push(Scripted::stall(text("first")));
    let c = client(config(&server));
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            rx.recv().await;
            let at = Instant::now();
            cancel.cancel();
            at
        })
    };
    let mut events = Vec::new();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        c.stream(&request(), &cancel, &mut |e| {
            events.push(e);
            let _ = tx.send(());
        }),
    )
    .await
    .unwrap();
    let returned = Instant::now();
    let cancelled_at = canceller.await.unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.error, ClientError::Cancelled);
    assert_eq!(text_of(&err.partial), "first");
    assert!(returned.duration_since(cancelled_at) < Duration::from_secs(1));
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn cancel_during_a_retry_sleep_returns_at_once() {
    let server = FakeProvider::start().await;
    server.push(Scripted::Status {
        code: 503,
        headers: vec![("Retry-After".into(), "4".into())],
        body: b"busy".to_vec(),
    });
    let c = client(config(&server));
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            rx.recv().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        })
    };
    let start = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        c.stream_observed(&request(), &cancel, &mut |_| {}, &mut |_| {
            let _ = tx.send(());
        }),
    )
    .await
    .unwrap();
    canceller.await.unwrap();
    assert_eq!(result.unwrap_err().error, ClientError::Cancelled);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn an_already_cancelled_token_sends_nothing() {
    let server = FakeProvider::start().await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let run = run(client(config(&server)).as_ref(), &cancel).await;
    assert_eq!(run.result.unwrap_err().error, ClientError::Cancelled);
    assert!(server.requests().is_empty());
}
