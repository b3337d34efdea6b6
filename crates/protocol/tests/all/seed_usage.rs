//! The reader and writer used the way the seed's `comm_tools` uses them: over the
//! halves of a Unix stream, with a server that sends `hello`, alerts and a
//! snapshot (one of several MiB) before it reads the client's method.

// Helpers here are test code too: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::time::Duration;

use protocol::stream::{JsonLineReader, JsonLineWriter};
use protocol::{
    Alert, AlertLevel, AlertSource, ErrorCode, Event, Greeting, InvokeKind, Method,
    PROTOCOL_VERSION, PodEvent, PodStatus, Segment,
};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

const SOCKET_OP_TIMEOUT: Duration = Duration::from_secs(5);

fn snapshot(entries: Vec<serde_json::Value>) -> Event {
    Event::Snapshot {
        entries,
        greeting: Greeting {
            pod_name: "server".into(),
            cwd: "/tmp".into(),
            provider: "test".into(),
            model: "test".into(),
            scope_summary: String::new(),
            tools: Vec::new(),
            context_window: 200_000,
            context_tokens: 0,
        },
        status: PodStatus::Idle,
    }
}

fn alert() -> Event {
    Event::Alert(Alert {
        level: AlertLevel::Warn,
        source: AlertSource::Pod,
        message: "replayed alert".into(),
        timestamp_ms: 0,
    })
}

/// Sends `events`, reads one method, answers it with `reply` if given.
fn serve(
    stream: UnixStream,
    events: Vec<Event>,
    reply: Option<Event>,
) -> JoinHandle<Option<Method>> {
    tokio::spawn(async move {
        let (r, w) = stream.into_split();
        let mut reader = JsonLineReader::new(r);
        let mut writer = JsonLineWriter::new(w);
        for event in events {
            writer.write(&event).await.ok()?;
        }
        let method = reader.next::<Method>().await.ok().flatten()?;
        if let Some(reply) = reply {
            writer.write(&reply).await.ok()?;
        }
        Some(method)
    })
}

async fn read_event<R>(reader: &mut JsonLineReader<R>) -> io::Result<Option<Event>>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    tokio::time::timeout(SOCKET_OP_TIMEOUT, reader.next::<Event>())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timed out"))?
}

/// As the seed: generic over the buffered reader, stops at the snapshot.
async fn drain_initial_snapshot<R>(
    reader: &mut JsonLineReader<R>,
) -> io::Result<Vec<serde_json::Value>>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    loop {
        match read_event(reader).await? {
            Some(Event::Snapshot { entries, .. }) => return Ok(entries),
            Some(_) => continue,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "pod closed connection before Snapshot event",
                ));
            }
        }
    }
}

async fn connect_and_send(
    stream: UnixStream,
    method: &Method,
) -> io::Result<Vec<serde_json::Value>> {
    let (r, w) = stream.into_split();
    let mut reader = JsonLineReader::new(r);
    let mut writer = JsonLineWriter::new(w);
    let entries = drain_initial_snapshot(&mut reader).await?;
    tokio::time::timeout(SOCKET_OP_TIMEOUT, writer.write(method))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))??;
    Ok(entries)
}

#[derive(Debug)]
enum SendRunError {
    AlreadyRunning,
    Other(String),
}

async fn send_run_and_confirm(stream: UnixStream, input: String) -> Result<(), SendRunError> {
    let (r, w) = stream.into_split();
    let mut writer = JsonLineWriter::new(w);
    let mut reader = JsonLineReader::new(r);
    writer
        .write(&Method::Run {
            input: vec![Segment::text(input)],
        })
        .await
        .map_err(|e| SendRunError::Other(format!("write: {e}")))?;
    loop {
        let event = read_event(&mut reader)
            .await
            .map_err(|e| SendRunError::Other(format!("read: {e}")))?;
        match event {
            Some(Event::Error {
                code: ErrorCode::AlreadyRunning,
                ..
            }) => return Err(SendRunError::AlreadyRunning),
            Some(Event::Error { code, message }) => {
                return Err(SendRunError::Other(format!(
                    "pod returned {code:?}: {message}"
                )));
            }
            Some(Event::InvokeStart {
                kind: InvokeKind::UserSend,
            })
            | Some(Event::UserMessage { .. })
            | Some(Event::TurnStart { .. }) => return Ok(()),
            Some(_) => continue,
            None => return Err(SendRunError::Other("closed before response".into())),
        }
    }
}

#[tokio::test]
async fn method_is_delivered_after_a_large_snapshot() {
    let (server, client) = UnixStream::pair().unwrap();
    let large_payload = "x".repeat(2 * 1024 * 1024);
    let received = serve(
        server,
        vec![
            Event::Hello {
                protocol_version: PROTOCOL_VERSION,
                pod_name: "server".into(),
            },
            alert(),
            snapshot(vec![serde_json::json!({ "payload": large_payload })]),
        ],
        None,
    );
    let expected = Method::PodEvent(PodEvent::TurnEnded {
        pod_name: "child".into(),
    });

    let entries = connect_and_send(client, &expected).await.unwrap();

    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0]["payload"].as_str().map(str::len),
        Some(2 * 1024 * 1024)
    );
    let method = received.await.unwrap().expect("expected method");
    match method {
        Method::PodEvent(PodEvent::TurnEnded { pod_name }) => assert_eq!(pod_name, "child"),
        other => panic!("expected TurnEnded PodEvent, got {other:?}"),
    }
}

#[tokio::test]
async fn shutdown_is_delivered_after_alert_and_snapshot() {
    let (server, client) = UnixStream::pair().unwrap();
    let received = serve(server, vec![alert(), snapshot(Vec::new())], None);
    connect_and_send(client, &Method::Shutdown).await.unwrap();
    assert_eq!(received.await.unwrap(), Some(Method::Shutdown));
}

#[tokio::test]
async fn run_is_confirmed_by_user_message() {
    let (server, client) = UnixStream::pair().unwrap();
    let received = serve(
        server,
        vec![alert(), snapshot(Vec::new())],
        Some(Event::UserMessage {
            segments: vec![Segment::text("hello")],
        }),
    );
    send_run_and_confirm(client, "hello".into()).await.unwrap();
    match received.await.unwrap() {
        Some(Method::Run { input }) => assert_eq!(Segment::flatten_to_text(&input), "hello"),
        other => panic!("expected Run, got {other:?}"),
    }
}

#[tokio::test]
async fn run_rejection_is_reported() {
    let (server, client) = UnixStream::pair().unwrap();
    let received = serve(
        server,
        vec![snapshot(Vec::new())],
        Some(Event::Error {
            code: ErrorCode::AlreadyRunning,
            message: "busy".into(),
        }),
    );
    let err = send_run_and_confirm(client, "hello".into())
        .await
        .expect_err("expected AlreadyRunning");
    assert!(matches!(err, SendRunError::AlreadyRunning), "{err:?}");
    assert!(matches!(received.await.unwrap(), Some(Method::Run { .. })));
}

#[tokio::test]
async fn closed_connection_before_snapshot_is_an_error() {
    let (server, client) = UnixStream::pair().unwrap();
    drop(server);
    let err = connect_and_send(client, &Method::Shutdown)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn other_errors_are_failures_naming_the_code() {
    let (server, client) = UnixStream::pair().unwrap();
    let _received = serve(
        server,
        vec![snapshot(Vec::new())],
        Some(Event::Error {
            code: ErrorCode::Internal,
            message: "boom".into(),
        }),
    );
    match send_run_and_confirm(client, "hello".into()).await {
        Err(SendRunError::Other(message)) => {
            assert_eq!(message, "pod returned Internal: boom");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}
