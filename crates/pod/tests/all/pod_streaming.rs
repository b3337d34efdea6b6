//! Streaming under load against the real binary: clients attaching at random
//! points of a long invocation, a thousand fire-and-forget notifications
//! against a large snapshot, slow and stuck clients, clients holding long half
//! lines, and the peer-uid check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Home, TestPod, WAIT, run};
use pod::client::PodClient;
use protocol::{ErrorCode, Event, Method, TurnResult};
use test_support::Family;
use test_support::fake_provider::{Chunking, FakeProvider, Scripted};
use test_support::script::Turn;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

fn paced(body: Vec<u8>, slice: usize, pause_ms: u64) -> Scripted {
    Scripted::Sse {
        body,
        chunking: Chunking::Fixed(slice),
        pause: Duration::from_millis(pause_ms),
    }
}

/// What one client saw of the committed log: sequence numbers in arrival
/// order, and whether it lagged.
#[derive(Debug, Default)]
struct Seen {
    seqs: Vec<u64>,
    deltas: usize,
    lagged: bool,
    ended: bool,
}

/// Follows a client until the entry of the invocation's `turn_end` arrives.
async fn follow(mut client: PodClient) -> Seen {
    let mut seen = Seen::default();
    for e in &client.entries {
        seen.seqs.push(e["seq"].as_u64().unwrap());
        if e["kind"] == "turn_end" {
            seen.ended = true;
        }
    }
    while !seen.ended {
        let Some(event) = client.next_event().await.unwrap() else {
            break;
        };
        match event {
            Event::Entry(e) => {
                seen.seqs.push(e["seq"].as_u64().unwrap());
                seen.ended |= e["kind"] == "turn_end";
            }
            Event::TextDelta { .. } => seen.deltas += 1,
            Event::Lagged { .. } => seen.lagged = true,
            _ => {}
        }
    }
    seen
}

/// Sequence numbers `1..=last`, each exactly once, in order.
fn assert_exactly_once(seqs: &[u64], last: u64, who: &str) {
    let want: Vec<u64> = (1..=last).collect();
    assert_eq!(seqs, want.as_slice(), "{who}");
}

async fn final_log(pod: &TestPod) -> Vec<serde_json::Value> {
    pod.connect().await.entries
}

#[tokio::test]
async fn clients_attaching_mid_invocation_see_every_entry_exactly_once() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let family = Family::OpenaiChat;
    // 20 steps of 500 deltas and a tool call each, then 500 more: 10,500 deltas
    // with entries committed all along.
    for step in 0..20 {
        let turn = Turn::new().text("word ".repeat(500)).in_pieces(500).call(
            format!("c{step}"),
            "Read",
            format!(r#"{{"path":"missing-{step}"}}"#),
        );
        server.push(paced(turn.sse(family), 8 * 1024, 2));
    }
    server.push(paced(
        Turn::new()
            .text("end ".repeat(500))
            .in_pieces(500)
            .sse(family),
        8 * 1024,
        2,
    ));
    let pod = TestPod::start(&home, &server, "many", &[]);
    let mut starter = pod.connect().await;
    starter.request(&run("go")).await.unwrap();

    let mut clients = Vec::new();
    for i in 0..12u64 {
        // Spread over the invocation (pseudo-random, deterministic offsets).
        let delay = Duration::from_millis((i * 7919) % 900);
        let socket = pod.socket.clone();
        clients.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let client = PodClient::connect(&socket).await.unwrap();
            tokio::time::timeout(WAIT, follow(client)).await.unwrap()
        }));
    }
    let mut seen = Vec::new();
    for c in clients {
        seen.push(c.await.unwrap());
    }
    let log = final_log(&pod).await;
    let last = log.last().unwrap()["seq"].as_u64().unwrap();
    assert!(last > 60, "{last} entries");
    for (i, s) in seen.iter().enumerate() {
        assert!(s.ended, "client {i}");
        assert_exactly_once(&s.seqs, last, &format!("client {i}"));
    }
    // Some attached early (many deltas seen), some later: the attach points
    // spread over the invocation.
    assert!(seen.iter().any(|s| s.deltas > 5_000), "an early client");
    let fewest = seen.iter().map(|s| s.deltas).min().unwrap_or(0);
    let most = seen.iter().map(|s| s.deltas).max().unwrap_or(0);
    assert!(fewest < most, "clients attached at different points");
}

#[tokio::test]
async fn a_thousand_notifications_sent_and_closed_at_once_are_all_logged() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let family = Family::OpenaiChat;
    // An 8 MiB answer makes the snapshot every new connection gets 8 MiB.
    server.push(Scripted::sse(
        Turn::new().text("x".repeat(8 << 20)).sse(family),
    ));
    for _ in 0..200 {
        server.push(Scripted::sse(Turn::new().text("noted").sse(family)));
    }
    let pod = TestPod::start(&home, &server, "busy", &[]);
    let mut a = pod.connect().await;
    let (_, mut first) = a.request(&run("write a lot")).await.unwrap();
    while !first.iter().any(|e| matches!(e, Event::RunEnd { .. })) {
        first.push(
            tokio::time::timeout(WAIT, a.next_event())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    drop(a);

    let mut senders = Vec::new();
    for i in 0..1000 {
        let socket = pod.socket.clone();
        senders.push(tokio::spawn(async move {
            let mut stream = loop {
                match UnixStream::connect(&socket).await {
                    Ok(s) => break s,
                    // A full accept backlog: try again.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            };
            let line =
                format!("{{\"method\":\"notify\",\"params\":{{\"message\":\"note {i}\"}}}}\n");
            stream.write_all(line.as_bytes()).await.unwrap();
            // Close at once, without reading anything.
        }));
    }
    for s in senders {
        tokio::time::timeout(WAIT, s).await.unwrap().unwrap();
    }
    let session = home.path("state/sessions/busy");
    let deadline = Instant::now() + WAIT;
    let notes = loop {
        let log = session_store::read_session(&session).unwrap();
        let notes: BTreeSet<String> = log
            .entries()
            .filter_map(|e| match e {
                session_store::LogEntry::SystemItem { item, .. } => {
                    serde_json::to_value(&item.0).ok().map(|v| v.to_string())
                }
                _ => None,
            })
            .collect();
        if notes.len() >= 1000 || Instant::now() > deadline {
            break notes;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(notes.len(), 1000);
    for i in [0, 499, 999] {
        assert!(
            notes.iter().any(|n| n.contains(&format!("note {i}\""))),
            "note {i}"
        );
    }
    // Memory stayed bounded: the 8 MiB snapshot was shared, not copied per connection.
    let status = std::fs::read_to_string(format!("/proc/{}/status", pod.child.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert!(peak_kib < 300 * 1024, "peak RSS {peak_kib} KiB");
}

#[tokio::test]
async fn slow_and_stuck_clients_never_stall_the_pod() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let family = Family::OpenaiChat;
    let turn = Turn::new().text("abcd ".repeat(100_000)).in_pieces(100_000);
    // Paced like a fast real stream (≈ 25k deltas/s), so the normal client,
    // a debug build sharing two cores with the pod, keeps up.
    server.push(paced(turn.sse(family), 16 * 1024, 4));
    let pod = TestPod::start(&home, &server, "slow", &[]);

    // Stuck: connects and never reads.
    let _stuck = UnixStream::connect(&pod.socket).await.unwrap();
    // Slow: reads a little, then naps (≤ 1k lines/s, far below the stream's
    // 25k/s even when a loaded machine slows the pod down).
    let slow_socket = pod.socket.clone();
    let slow = tokio::spawn(async move {
        let stream = UnixStream::connect(&slow_socket).await.unwrap();
        let mut lines = BufReader::new(stream).lines();
        let mut seen = Seen::default();
        let mut n = 0u64;
        while let Some(line) = lines.next_line().await.unwrap() {
            n += 1;
            if n.is_multiple_of(20) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let event: Event = serde_json::from_str(&line).unwrap();
            match event {
                Event::Snapshot { entries, .. } => {
                    seen.seqs
                        .extend(entries.iter().map(|e| e["seq"].as_u64().unwrap()));
                }
                Event::Entry(e) => {
                    seen.seqs.push(e["seq"].as_u64().unwrap());
                    if e["kind"] == "turn_end" {
                        seen.ended = true;
                        break;
                    }
                }
                Event::Lagged { from_seq } => {
                    seen.lagged = true;
                    // The replay starts right after what was delivered.
                    assert_eq!(seen.seqs.last().map_or(1, |s| s + 1), from_seq);
                }
                Event::TextDelta { .. } => seen.deltas += 1,
                _ => {}
            }
        }
        seen
    });
    let normal_client = pod.connect().await;
    let normal = tokio::spawn(async move { follow(normal_client).await });

    let mut a = pod.connect().await;
    let (_, mut events) = a.request(&run("stream a lot")).await.unwrap();
    while !events.iter().any(|e| matches!(e, Event::RunEnd { .. })) {
        events.push(
            tokio::time::timeout(WAIT, a.next_event())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    assert!(events.contains(&Event::RunEnd {
        result: TurnResult::Finished
    }));

    let normal = tokio::time::timeout(WAIT, normal).await.unwrap().unwrap();
    assert!(!normal.lagged, "the normal client kept up");
    assert_eq!(normal.deltas, 100_000, "the normal client got every delta");
    let log = final_log(&pod).await;
    let last = log.last().unwrap()["seq"].as_u64().unwrap();
    assert_exactly_once(&normal.seqs, last, "normal");

    let slow = tokio::time::timeout(WAIT, slow).await.unwrap().unwrap();
    assert!(
        slow.lagged,
        "the slow client fell behind ({} deltas seen)",
        slow.deltas
    );
    assert!(slow.deltas < 100_000);
    assert_exactly_once(&slow.seqs, last, "slow");
    // The stuck client did not hold the invocation back: it finished (above)
    // while that client never read a byte.
    // And the pod still answers: a new client's `cancel` gets the pod's own
    // answer (nothing runs), not a broken connection.
    let mut b = pod.connect().await;
    match b.command(&Method::Cancel).await {
        Err(pod::client::ClientError::Refused { code, .. }) => {
            assert_eq!(code, protocol::ErrorCode::NotRunning);
        }
        other => panic!("the pod did not answer `cancel`: {other:?}"),
    }
}

/// A method line of `len` bytes without its end: `"}\n` completes it into a
/// `cancel` carrying a long unknown field.
fn half_cancel(len: usize) -> Vec<u8> {
    let mut line = br#"{"method":"cancel","pad":""#.to_vec();
    line.resize(len, b'x');
    line
}

/// The `error` events each client got, gathered until `done` says enough.
async fn gather_errors(
    events: &mut mpsc::UnboundedReceiver<(usize, Event)>,
    errors: &mut [Vec<(ErrorCode, String)>],
    done: impl Fn(&[Vec<(ErrorCode, String)>]) -> bool,
) {
    while !done(errors) {
        let (client, event) = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no more errors came; so far: {errors:?}"))
            .unwrap();
        if let Event::Error { code, message } = event {
            errors[client].push((code, message));
        }
    }
}

#[tokio::test]
async fn half_lines_past_the_pod_wide_cap_are_refused_and_the_connections_live_on() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let pod = TestPod::start(&home, &server, "halves", &[]);
    // Five clients each hold a 15 MiB half line (each within the 16 MiB line
    // limit): 75 MiB, past the 64 MiB the pod holds for all connections.
    const CLIENTS: usize = 5;
    let half = half_cancel(15 << 20);
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut writers = Vec::new();
    for client in 0..CLIENTS {
        let (read, write) = UnixStream::connect(&pod.socket).await.unwrap().into_split();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let event: Event = serde_json::from_str(&line).unwrap();
                if tx.send((client, event)).is_err() {
                    break;
                }
            }
        });
        writers.push(write);
    }
    for write in &mut writers {
        write.write_all(&half).await.unwrap();
    }
    // The client whose half line passed the cap is told at once, while no line has ended.
    let mut errors = vec![Vec::new(); CLIENTS];
    gather_errors(&mut events, &mut errors, |e| {
        e.iter().any(|e| !e.is_empty())
    })
    .await;

    // Every client ends its line and sends another `cancel`: the refused
    // line's rest is dropped silently, the kept ones are whole methods, and the
    // second `cancel` is answered normally everywhere (`not_running`).
    for write in &mut writers {
        write
            .write_all(b"\"}\n{\"method\":\"cancel\"}\n")
            .await
            .unwrap();
    }
    gather_errors(&mut events, &mut errors, |e| e.iter().all(|e| e.len() >= 2)).await;
    let mut refused = 0;
    for (client, got) in errors.iter().enumerate() {
        let codes: Vec<ErrorCode> = got.iter().map(|(code, _)| *code).collect();
        if codes[0] == ErrorCode::InvalidRequest {
            refused += 1;
            let message = &got[0].1;
            assert!(
                message.contains("unfinished method lines") && message.contains("64 MiB"),
                "client {client}: {message}"
            );
            assert_eq!(
                codes,
                [ErrorCode::InvalidRequest, ErrorCode::NotRunning],
                "client {client}: {got:?}"
            );
        } else {
            assert_eq!(
                codes,
                [ErrorCode::NotRunning, ErrorCode::NotRunning],
                "client {client}: {got:?}"
            );
        }
    }
    assert!(refused >= 1, "{errors:?}");
    assert!(
        refused < CLIENTS,
        "other connections kept their lines: {errors:?}"
    );
    // And a new client is served as usual.
    let mut late = pod.connect().await;
    late.command(&Method::Cancel).await.unwrap_err();
}

#[tokio::test]
async fn another_uid_is_refused_even_when_the_socket_is_open_to_all() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        panic!("this test runs as root (as CI does): it connects as another uid");
    }
    let home = Home::new();
    let server = FakeProvider::start().await;
    let pod = TestPod::start(&home, &server, "guarded", &[]);
    // Loosen every permission on the way to the socket.
    use std::os::unix::fs::PermissionsExt;
    let mut dir = pod.socket.parent().unwrap().to_path_buf();
    std::fs::set_permissions(&pod.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    while dir.starts_with(home.dir.path()) {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir.pop();
    }
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\ns.settimeout(10)\nprint(s.recv(4096).decode())",
        pod.socket.display().to_string()
    );
    let out = tokio::task::spawn_blocking(move || {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("python3")
            .args(["-c", &script])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("peer uid 65534") && !stdout.contains("\"hello\""),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The owner still gets in.
    assert_eq!(pod.connect().await.greeting.pod_name, "guarded");
}
