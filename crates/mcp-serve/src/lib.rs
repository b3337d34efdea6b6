//! `pod mcp`: pods as an MCP server (`pod mcp serve`, over stdio or Streamable
//! HTTP) so any MCP host can start kernel-confined pods, message, read and
//! stop them; and `pod mcp list NAME`, a pod's own MCP servers and tools.

#![forbid(unsafe_code)]

pub mod fleet;
pub mod handler;
mod http;
pub mod list;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use rmcp::ServiceExt;

use crate::fleet::Fleet;
use crate::handler::PodsServer;

/// `pod mcp ...`.
#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Serve pods to an MCP host (Claude Code, Codex, ...) on stdin/stdout, or
    /// over Streamable HTTP with --http.
    #[command(
        after_help = "Tools: spawn_pod, send_to_pod, read_pod_output, stop_pod, list_pods.\n\
                      The pods it starts are your top-level pods (`pod ls`, the UI), with write \
                      scopes within --scope; they are stopped when the session ends unless --keep.\n\n\
                      Examples:\n  claude mcp add pods -- pod mcp serve --scope ~/src/app\n  \
                      pod mcp serve --http 127.0.0.1:8765   # prints the URL and a bearer token"
    )]
    Serve(ServeArgs),
    /// Show a pod's MCP servers: their state and tools.
    List {
        /// The pod's name.
        name: String,
    },
}

/// `pod mcp serve`'s options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A directory the pods may be given (repeatable); default: the working directory.
    #[arg(long, value_name = "DIR")]
    pub scope: Vec<PathBuf>,
    /// Serve Streamable HTTP at this loopback address (e.g. 127.0.0.1:8765; port 0
    /// picks one) instead of stdio. Clients need the bearer token printed at start,
    /// or the one in POD_MCP_TOKEN.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Leave the pods running when the session ends.
    #[arg(long)]
    pub keep: bool,
}

/// Runs a `pod mcp` command; returns the exit code.
pub fn main(command: McpCommand, json: bool) -> anyhow::Result<u8> {
    match command {
        McpCommand::Serve(args) => serve(args),
        McpCommand::List { name } => list::list(&name, json),
    }
}

/// `pod mcp serve`.
fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    // 127.0.0.1 and ::1 only: other loopback addresses are not among the
    // `Host` values the transport accepts (DNS rebinding protection).
    if let Some(addr) = args.http
        && addr.ip() != std::net::Ipv4Addr::LOCALHOST
        && addr.ip() != std::net::Ipv6Addr::LOCALHOST
    {
        anyhow::bail!(
            "--http {addr}: only a loopback address (127.0.0.1:PORT or [::1]:PORT) is served; \
             anyone who reaches the port and has the token can start pods as you"
        );
    }
    let exe = std::env::current_exe().context("cannot find the pod binary")?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let places = pod_client::cli::places()?;
    let fleet = Arc::new(Fleet::new(exe, cwd, &args.scope, places, args.keep)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let served = match args.http {
            Some(addr) => http::serve(addr, Arc::clone(&fleet)).await,
            None => serve_stdio(Arc::clone(&fleet)).await,
        };
        if args.keep {
            let names = fleet.names();
            if !names.is_empty() {
                eprintln!("pod mcp serve: leaving running: {}", names.join(", "));
            }
        } else {
            fleet.stop_all().await;
        }
        served
    })?;
    Ok(0)
}

/// Serves one session on stdin/stdout until the host closes it or a signal.
async fn serve_stdio(fleet: Arc<Fleet>) -> anyhow::Result<()> {
    let bounds: Vec<String> = fleet
        .bounds()
        .iter()
        .map(|b| b.display().to_string())
        .collect();
    eprintln!(
        "pod mcp serve: serving on stdio; pods may be given directories within {}",
        bounds.join(", ")
    );
    let running = PodsServer::new(fleet)
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP session did not start")?;
    let cancel = running.cancellation_token();
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        cancel.cancel();
    });
    let ended = running.waiting().await;
    signals.abort();
    ended.context("the MCP session failed")?;
    Ok(())
}

/// Waits for SIGINT or SIGTERM (a host stopping the server).
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        // Without handlers the default action ends the process anyway.
        _ => std::future::pending().await,
    }
}
