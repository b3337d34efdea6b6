//! `pod mcp list NAME` and the MCP lines of `pod doctor`: a pod's `[[mcp]]`
//! servers, their state and tools, read from the status file the pod keeps
//! (`mcp.json` in its runtime directory).

use mcp::{ServerStatus, read_status};
use pod_client::client::PodLocation;
use pod_client::names::{Want, resolve_cli};
use pod_runtime::dir::Places;

/// One server as a listing line: name, state, tool count, error.
pub fn server_line(s: &ServerStatus) -> String {
    let lazy = if s.lazy { ", lazy" } else { "" };
    let tools = match s.tools.len() {
        1 => "1 tool".to_string(),
        n => format!("{n} tools"),
    };
    let mut line = format!("{}: {} ({tools}{lazy})", s.name, s.state.as_str());
    if let Some(error) = &s.error {
        line.push_str(&format!(": {error}"));
    }
    line
}

/// `pod mcp list NAME`.
pub fn list(asked: &str, json: bool) -> anyhow::Result<u8> {
    let name = resolve_cli(asked, Want::Running)?;
    let places = pod_client::cli::places()?;
    let location = PodLocation::of(&places, &name);
    let servers = read_status(&location.dir)?.unwrap_or_default();
    if json {
        println!("{}", serde_json::to_string(&servers)?);
        return Ok(0);
    }
    if servers.is_empty() {
        println!("pod `{name}` has no MCP servers ([[mcp]] in a manifest adds them; docs/mcp.md)");
        return Ok(0);
    }
    for s in &servers {
        println!("{}", server_line(s));
        match &s.url {
            Some(url) => println!("  url: {url}"),
            None => println!("  command: {}", s.command.join(" ")),
        }
        for tool in &s.tools {
            println!("  {}", mcp::tool_name(&s.name, tool));
        }
    }
    Ok(0)
}

/// The MCP servers of every running pod, one line each (`pod doctor`):
/// (whether it is well, the line).
pub fn running_servers(places: &Places) -> Vec<(bool, String)> {
    let mut lines = Vec::new();
    for row in pod_client::pods::list_pods(places) {
        if !row.alive {
            continue;
        }
        let location = PodLocation::of(places, &row.name);
        match read_status(&location.dir) {
            Ok(Some(servers)) => {
                for s in servers {
                    let well = !matches!(s.state, mcp::ServerState::Failed);
                    lines.push((well, format!("pod {}: {}", row.name, server_line(&s))));
                }
            }
            Ok(None) => {}
            Err(e) => lines.push((false, format!("pod {}: {e}", row.name))),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp::ServerState;

    #[test]
    fn lines_say_state_tools_and_error() {
        let mut s = ServerStatus {
            name: "everything".into(),
            command: vec!["node".into()],
            url: None,
            lazy: true,
            state: ServerState::Running,
            tools: vec!["echo".into(), "get-sum".into()],
            error: None,
        };
        assert_eq!(server_line(&s), "everything: running (2 tools, lazy)");
        s.state = ServerState::Failed;
        s.lazy = false;
        s.tools.truncate(1);
        s.error = Some("no node".into());
        assert_eq!(server_line(&s), "everything: failed (1 tool): no node");
    }
}
