//! Whole-process benchmarks of the pod (issue 5), against the fake provider:
//! cold start, idle memory, invocation overhead, and one 100k-delta invocation
//! streamed to 1 and to 16 clients. Run through `benches/pod_bench.sh`, which
//! builds the release binary this drives.
//!
//! Usage: `pod_bench <path to release pod binary> [runs]`

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_support::{Env, median, stop};
use llm_worker::llm_client::http::{ClientConfig, LlmClient, ProviderClient};
use llm_worker::llm_client::openai_chat::OpenaiChat;
use llm_worker::llm_client::request::LlmRequest;
use llm_worker::llm_client::types::{Item, Role};
use test_support::Family;
use test_support::fake_provider::{FakeProvider, Scripted};
use test_support::script::Turn;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

/// Connects (retrying until the socket serves) and reads up to the snapshot.
async fn connect_to_snapshot(socket: &Path) -> BufReader<UnixStream> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match UnixStream::connect(socket).await {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => tokio::task::yield_now().await,
            Err(e) => panic!("{}: {e}", socket.display()),
        }
    };
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).await.unwrap() > 0,
            "closed before the snapshot"
        );
        if line.starts_with("{\"event\":\"snapshot\"") {
            return reader;
        }
    }
}

async fn send(reader: &mut BufReader<UnixStream>, line: &str) {
    let s = reader.get_mut();
    s.write_all(line.as_bytes()).await.unwrap();
    s.write_all(b"\n").await.unwrap();
}

/// Reads lines until one contains `needle`.
async fn until(reader: &mut BufReader<UnixStream>, needle: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).await.unwrap() > 0,
            "closed before {needle}"
        );
        if line.contains(needle) {
            return;
        }
    }
}

const RUN: &str = r#"{"method":"run","params":{"input":[{"kind":"text","content":"go"}]}}"#;

fn smaps_rollup(pid: u32) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let rss = field("Rss:");
    let uss = field("Private_Clean:") + field("Private_Dirty:");
    (rss, uss, field("Anonymous:"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let bin = args.next().expect("usage: pod_bench <pod binary> [runs]");
    let runs: usize = args.next().map_or(20, |r| r.parse().unwrap());
    let server = FakeProvider::start().await;
    let env = Env::new(&bin, server.base_url());
    let family = Family::OpenaiChat;

    // 1. Cold start: exec → snapshot received, fresh pod each time.
    for (label, extra) in [
        ("sandbox probe", &[][..]),
        ("--no-sandbox", &["--no-sandbox"][..]),
    ] {
        let mut times = Vec::new();
        for i in 0..runs {
            let name = format!("cold{}{i}", extra.len());
            let t0 = Instant::now();
            let mut child = env.spawn(&name, extra);
            // The ready line says the socket serves: connect only then (polling
            // would compete with the starting pod for the two cores).
            let stdout = child.stdout.take().unwrap();
            tokio::task::spawn_blocking(move || {
                use std::io::BufRead;
                let mut line = String::new();
                std::io::BufReader::new(stdout)
                    .read_line(&mut line)
                    .unwrap();
            })
            .await
            .unwrap();
            let reader = connect_to_snapshot(&env.socket(&name)).await;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            drop(reader);
            stop(&mut child);
        }
        println!(
            "cold start ({label}): median {:.2} ms over {runs}",
            median(&mut times)
        );
    }

    // 2. Idle memory after one invocation.
    server.push(Scripted::sse(Turn::new().text("Hello.").sse(family)));
    let mut child = env.spawn("mem", &[]);
    let mut r = connect_to_snapshot(&env.socket("mem")).await;
    send(&mut r, RUN).await;
    until(&mut r, "\"run_end\"").await;
    until(&mut r, "\"idle\"").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss, uss, anon) = smaps_rollup(child.id());
    // With another pod running, the binary's code pages are shared, not private.
    let mut second = env.spawn("mem2", &[]);
    let _r2 = connect_to_snapshot(&env.socket("mem2")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, uss_shared, _) = smaps_rollup(child.id());
    println!(
        "idle memory after one invocation: USS {:.2} MiB alone, {:.2} MiB with a second pod running (code pages shared); anonymous {:.2} MiB; RSS {:.2} MiB",
        uss as f64 / 1024.0,
        uss_shared as f64 / 1024.0,
        anon as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    stop(&mut second);

    // 3. Invocation overhead against an instant fake provider.
    let answer = Turn::new().text("ok").sse(family);
    let n = runs * 10;
    let mut times = Vec::new();
    for _ in 0..n {
        server.push(Scripted::sse(answer.clone()));
        let t0 = Instant::now();
        send(&mut r, RUN).await;
        until(&mut r, "\"run_end\"").await;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let invocation = median(&mut times);
    // The same provider call made directly, to subtract.
    let client = ProviderClient::new(
        Arc::new(OpenaiChat),
        ClientConfig::for_base_url(server.base_url(), None, Some(10)),
    );
    // With the history the pod sends on its n-th run (it grows by a question
    // and an answer per run), so encoding and parsing a longer request is in
    // both figures and only the pod's own work is left in the difference.
    let mut history = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..n {
        history.push(Item::text(Role::User, "go"));
        let request = LlmRequest::new("bench", history.clone());
        server.push(Scripted::sse(answer.clone()));
        let t0 = Instant::now();
        client
            .stream(&request, &CancellationToken::new(), &mut |_| {})
            .await
            .unwrap();
        direct.push(t0.elapsed().as_secs_f64() * 1e3);
        history.push(Item::text(Role::Assistant, "ok"));
    }
    let direct = median(&mut direct);
    println!(
        "invocation: median {invocation:.3} ms run→run_end; the provider call alone {direct:.3} ms; overhead {:.3} ms ({n} runs)",
        invocation - direct
    );
    drop(r);
    stop(&mut child);

    // 4. One 100k-delta invocation to 1 and to 16 line-counting clients.
    let body = Turn::new()
        .text("abcd ".repeat(100_000))
        .in_pieces(100_000)
        .sse(family);
    for clients in [1usize, 16] {
        let name = format!("stream{clients}");
        let mut child = env.spawn(&name, &[]);
        let socket = env.socket(&name);
        let mut counters = Vec::new();
        for _ in 0..clients {
            let mut reader = connect_to_snapshot(&socket).await;
            counters.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 20];
                let mut deltas = 0u64;
                let mut carry: Vec<u8> = Vec::new();
                let mut ended = None;
                let t0 = Instant::now();
                'read: loop {
                    let got = reader.read(&mut buf).await.unwrap();
                    if got == 0 {
                        break;
                    }
                    carry.extend_from_slice(&buf[..got]);
                    let mut start = 0;
                    while let Some(nl) = carry[start..].iter().position(|&b| b == b'\n') {
                        let line = &carry[start..start + nl];
                        if line.starts_with(b"{\"event\":\"text_delta\"") {
                            deltas += 1;
                        } else if line.starts_with(b"{\"event\":\"run_end\"") {
                            ended = Some(t0.elapsed());
                            break 'read;
                        }
                        start += nl + 1;
                    }
                    carry.drain(..start);
                }
                (deltas, ended)
            }));
        }
        server.push(Scripted::sse(body.clone()));
        let mut r = connect_to_snapshot(&socket).await;
        let t0 = Instant::now();
        send(&mut r, RUN).await;
        until(&mut r, "\"run_end\"").await;
        let pod_time = t0.elapsed();
        let mut lost = 0;
        let mut slowest = Duration::ZERO;
        for c in counters {
            let (deltas, ended) = c.await.unwrap();
            lost += 100_000u64.saturating_sub(deltas);
            slowest = slowest.max(ended.unwrap_or_default());
        }
        println!(
            "100k deltas to {clients} client(s): {:.0} deltas/s (run→run_end {:.0} ms, slowest client done after {:.0} ms), {lost} lost",
            100_000.0 / pod_time.as_secs_f64(),
            pod_time.as_secs_f64() * 1e3,
            slowest.as_secs_f64() * 1e3
        );
        drop(r);
        stop(&mut child);
    }
}
