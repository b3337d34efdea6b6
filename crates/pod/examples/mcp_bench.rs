//! MCP start-up cost: a pod's cold start (exec → ready line) with no MCP
//! server and with the two reference servers (`server-everything`,
//! `server-filesystem`) configured, each started in the pod's sandbox before
//! the pod is ready. Run through `benches/mcp_bench.sh`, which installs the
//! servers and builds the release binary this drives.
//!
//! Usage: `mcp_bench <path to release pod binary> <mcp servers dir> [runs]`

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_support;

use std::io::BufRead;
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
}
