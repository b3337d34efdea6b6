//! Multi-pod benchmarks (issue 6), against the fake provider:
//! - `SpawnPod` → the child at work: from the parent's `tool_call_done` of
//!   `SpawnPod` (the tool starts right after) to the child's first LLM request
//!   reaching the provider (just after its `turn_start`), and whether every
//!   task was delivered;
//! - `pod ls --json` with 500 idle top-level pods.
//!
//! Run through `benches/tree_bench.sh`. Usage: `tree_bench <pod binary> [spawns] [idle pods]`

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bench_support::{Env, median, stop};
use test_support::Family;
use test_support::fake_provider::{FakeProvider, Scripted};
use test_support::script::Turn;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

fn sse(turn: Turn) -> Scripted {
    Scripted::sse(turn.sse(Family::OpenaiChat))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let bin = args
        .next()
        .expect("usage: tree_bench <pod binary> [spawns] [idle pods]");
    let spawns: usize = args.next().map_or(20, |n| n.parse().unwrap());
    let idle: usize = args.next().map_or(500, |n| n.parse().unwrap());
    let server = FakeProvider::start().await;
    server.hold_requests(Duration::from_secs(30));
    let env = Env::new(&bin, server.base_url());

    // 1. SpawnPod → child at work, `spawns` times. The parent's next answer
    // (stop the child, spawn the next) is given only once the child has
    // reached its model, so stopping never races the measured start.
    let parent_key = "You are `bench`";
    let work = env.dir.path().join("work").join("bench");
    let spawn_turn = |i: usize, stop_previous: bool| {
        let dir = work.join(format!("c{i}"));
        let spawn = serde_json::json!({"name": format!("c{i}"), "task": "go", "scope": [{"target": dir, "permission": "write"}]});
        let mut turn = Turn::new();
        if stop_previous {
            turn = turn.call(
                format!("x{}", i - 1),
                "StopPod",
                serde_json::json!({"name": format!("c{}", i - 1)}).to_string(),
            );
        }
        sse(turn.call(format!("s{i}"), "SpawnPod", spawn.to_string()))
    };
    for i in 0..spawns {
        server.push_for(
            &format!("You are `bench.c{i}`"),
            sse(Turn::new().text("ok")),
        );
    }
    server.push_for(parent_key, spawn_turn(0, false));
    let mut parent = env.start("bench");
    let socket = env.dir.path().join("runtime/bench/sock");
    let stream = UnixStream::connect(&socket).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    w.write_all(b"{\"method\":\"run\",\"params\":{\"input\":[{\"kind\":\"text\",\"content\":\"spawn\"}]}}\n")
        .await
        .unwrap();
    let mut spawn_started = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut next = 1;
    while let Some(line) = tokio::time::timeout_at(deadline.into(), lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        if line.contains("\"tool_call_done\"") && line.contains("\"SpawnPod\"") {
            spawn_started.push(Instant::now());
        }
        if line.contains("\"tool_result\"") && line.contains(&format!("\"s{}\"", next - 1)) {
            // Wait for that child to reach its model, then answer the parent.
            let key = format!("You are `bench.c{}`", next - 1);
            let until = Instant::now() + Duration::from_secs(20);
            while !server
                .requests()
                .iter()
                .any(|r| r.body.to_string().contains(&key))
                && Instant::now() < until
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            if next < spawns {
                server.push_for(parent_key, spawn_turn(next, true));
            } else {
                server.push_for(
                    parent_key,
                    sse(Turn::new().call(
                        "last",
                        "StopPod",
                        serde_json::json!({"name": format!("c{}", spawns - 1)}).to_string(),
                    )),
                );
                server.push_for(parent_key, sse(Turn::new().text("done")));
            }
            next += 1;
        }
        if line.starts_with("{\"event\":\"run_end\"") || line.starts_with("{\"event\":\"error\"") {
            break;
        }
    }
    let requests = server.requests();
    let mut latencies = Vec::new();
    let mut delivered = 0;
    for (i, started) in spawn_started.iter().enumerate() {
        let key = format!("You are `bench.c{i}`");
        if let Some(r) = requests.iter().find(|r| r.body.to_string().contains(&key)) {
            delivered += 1;
            latencies.push(r.received.saturating_duration_since(*started).as_secs_f64() * 1e3);
        }
    }
    println!(
        "SpawnPod → child's first LLM request: median {:.2} ms, max {:.2} ms; tasks delivered {delivered}/{spawns}",
        median(&mut latencies.clone()),
        latencies.iter().cloned().fold(0.0, f64::max),
    );
    stop(&mut parent);

    // 2. `pod ls --json` with many idle top-level pods.
    let t0 = Instant::now();
    let mut pods: Vec<Child> = (0..idle).map(|i| env.start(&format!("idle{i}"))).collect();
    let started = t0.elapsed();
    let mut times = Vec::new();
    let mut count = 0;
    for _ in 0..10 {
        let t = Instant::now();
        let out = env
            .command()
            .args(["ls", "--json"])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        count = rows
            .as_array()
            .map_or(0, |a| a.iter().filter(|r| r["alive"] == true).count());
    }
    println!(
        "pod ls --json with {idle} idle pods ({count} listed alive; started in {:.1} s): median {:.1} ms over 10",
        started.as_secs_f64(),
        median(&mut times)
    );
    for p in &mut pods {
        let _ = sys::terminate(p.id());
    }
    for p in &mut pods {
        let _ = p.wait();
    }
}
