//! MCP start-up cost: a pod's cold start (exec → ready line) with no MCP
//! server and with the two reference servers (`server-everything`,
//! `server-filesystem`) configured, each started in the pod's sandbox before
//! the pod is ready; and `pod mcp serve` as a host sees it (its start, then
//! `spawn_pod`, `list_pods` and `stop_pod` calls). Run through `benches/mcp_bench.sh`, which installs the
//! servers and builds the release binary this drives.
//!
//! Usage: `mcp_bench <path to release pod binary> <mcp servers dir> [runs]`

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_support;

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

use bench_support::{Env, median, stop};

/// `[[mcp]]` entries for the reference servers under `dir` (`lazy`: started
/// on first use).
fn overlay(dir: &Path, lazy: bool) -> String {
    let js = |p: &str| {
        dir.join("node_modules/@modelcontextprotocol")
            .join(p)
            .join("dist/index.js")
            .display()
            .to_string()
    };
    format!(
        "[[mcp]]\nname = \"everything\"\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\nlazy = {lazy}\n\n[[mcp]]\nname = \"fs\"\ncommand = \"node\"\nargs = [{:?}, \"/\"]\nlazy = {lazy}\n",
        js("server-everything"),
        js("server-filesystem")
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(bin), Some(servers)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: mcp_bench <pod binary> <mcp servers dir> [runs]");
        std::process::exit(2);
    };
    let runs: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(10);
    let servers = Path::new(servers).canonicalize().expect("the servers dir");
    let env = Env::new(bin, "http://127.0.0.1:9".into());
    let eager = overlay(&servers, false);
    let lazy = overlay(&servers, true);
    // The eager runs keep the servers' tool lists, which the lazy runs use.
    for (label, extra) in [
        ("no MCP server", Vec::new()),
        ("2 stdio MCP servers", vec!["--overlay", eager.as_str()]),
        (
            "2 lazy stdio MCP servers, tools kept from an earlier start",
            vec!["--overlay", lazy.as_str()],
        ),
    ] {
        let mut times = Vec::new();
        for i in 0..runs {
            let name = format!("m{}x{i}", label.len());
            let t0 = Instant::now();
            let mut child = env.spawn(&name, &extra);
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(!line.is_empty(), "the pod did not start");
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            stop(&mut child);
        }
        println!(
            "cold start to ready ({label}): median {:.1} ms over {runs}",
            median(&mut times)
        );
    }
    serve_bench(&env, runs);
}

/// `pod mcp serve` over stdio, driven with JSON-RPC lines as a host would:
/// exec to the `initialize` answer, then each tool call to its result.
fn serve_bench(env: &Env, runs: usize) {
    let mut command = env.command();
    command
        .args(["mcp", "serve"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let t0 = Instant::now();
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut next_id = 0u64;
    let mut rpc = |method: &str, params: serde_json::Value| -> serde_json::Value {
        next_id += 1;
        let line = serde_json::json!({"jsonrpc": "2.0", "id": next_id, "method": method, "params": params});
        writeln!(input, "{line}").unwrap();
        loop {
            let mut answer = String::new();
            assert!(
                output.read_line(&mut answer).unwrap() > 0,
                "the server ended"
            );
            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
            if answer["id"] == next_id {
                assert!(answer.get("error").is_none(), "{answer}");
                return answer["result"].clone();
            }
        }
    };
    rpc(
        "initialize",
        serde_json::json!({"protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "mcp_bench", "version": "1"}}),
    );
    let start = t0.elapsed().as_secs_f64() * 1e3;
    let call = |rpc: &mut dyn FnMut(&str, serde_json::Value) -> serde_json::Value,
                name: &str,
                arguments: serde_json::Value| {
        let t = Instant::now();
        let result = rpc(
            "tools/call",
            serde_json::json!({"name": name, "arguments": arguments}),
        );
        assert_ne!(result["isError"], true, "{name}: {result}");
        t.elapsed().as_secs_f64() * 1e3
    };
    let (mut spawns, mut lists, mut stops) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let arguments = serde_json::json!({"name": format!("s{i}"), "task": "bench",
            "scope": [{"target": format!("p{i}"), "permission": "write"}]});
        spawns.push(call(&mut rpc, "spawn_pod", arguments));
    }
    for _ in 0..runs {
        lists.push(call(&mut rpc, "list_pods", serde_json::json!({})));
    }
    for i in 0..runs {
        stops.push(call(
            &mut rpc,
            "stop_pod",
            serde_json::json!({"name": format!("s{i}")}),
        ));
    }
    drop(input);
    let _ = child.wait();
    println!("pod mcp serve: exec to the initialize answer {start:.1} ms");
    println!(
        "pod mcp serve: spawn_pod (pod started, task accepted) median {:.1} ms over {runs}",
        median(&mut spawns)
    );
    println!(
        "pod mcp serve: list_pods with {runs} pods median {:.1} ms over {runs}",
        median(&mut lists)
    );
    println!(
        "pod mcp serve: stop_pod median {:.1} ms over {runs}",
        median(&mut stops)
    );
}
