//! pods as an MCP client: a pod's `[[mcp]]` servers, each started in the
//! pod's command sandbox with the pod's scope (so a server writes only where
//! the pod may), spoken to with the official SDK (`rmcp`), their tools offered
//! to the model as `mcp__<server>__<tool>`. See docs/mcp.md.

#![forbid(unsafe_code)]

mod http;
mod server;
pub mod status;
mod tools;

pub use server::{Confinement, EnvLookup, Server, ServerEnv};
pub use status::{Board, ServerState, ServerStatus, read_status};
pub use tools::{MAX_TOOL_NAME, McpServers, output, start_all, tool_name};
