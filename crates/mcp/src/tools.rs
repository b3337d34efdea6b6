//! A server's tools as pod tools: named `mcp__<server>__<tool>` within the
//! providers' limits, called through the normal tool framework (output caps,
//! cancel, parallel calls, hooks and permission rules), their results turned
//! into text the model reads.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, ResourceContents};
use sha2::{Digest, Sha256};
use tool::{Tool, ToolError, ToolMeta, ToolOutput, ToolSource};

use crate::server::{Server, ServerEnv};

/// The longest tool name providers take.
pub const MAX_TOOL_NAME: usize = 64;

/// The name the model calls `tool` of `server` by: `mcp__<server>__<tool>`,
/// characters providers refuse replaced by `_`; past [`MAX_TOOL_NAME`] cut,
/// ending in a short hash of the whole name so cut names stay distinct.
pub fn tool_name(server: &str, tool: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let name = format!("mcp__{}__{}", clean(server), clean(tool));
    if name.len() <= MAX_TOOL_NAME {
        return name;
    }
    with_hash(&name, &format!("{server}\0{tool}"))
}

/// `name`, cut to fit, with `_` and 8 hex digits of the hash of `key`.
fn with_hash(name: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}_{hash}", &name[..name.len().min(MAX_TOOL_NAME - 9)])
}

/// One tool of one server.
struct McpTool {
    server: Arc<Server>,
    tool: String,
}

#[async_trait]
impl Tool for McpTool {
    async fn execute(&self, input_json: &str) -> Result<ToolOutput, ToolError> {
        let arguments = if input_json.trim().is_empty() {
            None
        } else {
            match serde_json::from_str::<serde_json::Value>(input_json) {
                Ok(serde_json::Value::Object(map)) => Some(map),
                Ok(serde_json::Value::Null) => None,
                Ok(other) => {
                    return Err(ToolError::InvalidArgument(format!(
                        "the arguments must be a JSON object, not {other}"
                    )));
                }
                Err(e) => {
                    return Err(ToolError::InvalidArgument(format!(
                        "the arguments are not JSON: {e}"
                    )));
                }
            }
        };
        let result = self
            .server
            .call(&self.tool, arguments)
            .await
            .map_err(ToolError::ExecutionFailed)?;
        output(result)
    }
}

/// One content block as text.
fn block_text(block: &ContentBlock) -> String {
    match block {
        ContentBlock::Text(t) => t.text.clone(),
        ContentBlock::Image(i) => {
            format!("[image {}, {} bytes of base64]", i.mime_type, i.data.len())
        }
        ContentBlock::Audio(a) => {
            format!("[audio {}, {} bytes of base64]", a.mime_type, a.data.len())
        }
        ContentBlock::Resource(r) => match &r.resource {
            ResourceContents::TextResourceContents { uri, text, .. } => {
                format!("[resource {uri}]\n{text}")
            }
            ResourceContents::BlobResourceContents { uri, blob, .. } => {
                format!("[resource {uri}, {} bytes of base64]", blob.len())
            }
            _ => "[a resource of a kind this version does not know]".into(),
        },
        ContentBlock::ResourceLink(link) => format!("[resource link {} ({})]", link.uri, link.name),
        _ => "[content of a kind this version does not know]".into(),
    }
}

/// A tool's result as the model reads it: its content blocks as text (the
/// structured content when there are none); an error result is a tool error.
pub fn output(result: CallToolResult) -> Result<ToolOutput, ToolError> {
    let mut text: Vec<String> = result.content.iter().map(block_text).collect();
    if text.is_empty()
        && let Some(structured) = &result.structured_content
    {
        text.push(structured.to_string());
    }
    let text = text.join("\n");
    if result.is_error == Some(true) {
        let text = if text.is_empty() {
            "the tool failed (no message)".into()
        } else {
            text
        };
        return Err(ToolError::ExecutionFailed(text));
    }
    let first = text.lines().next().unwrap_or_default();
    let summary: String = if first.is_empty() {
        "done (no output)".into()
    } else if first.chars().count() > 120 {
        first.chars().take(120).collect::<String>() + "…"
    } else {
        first.to_owned()
    };
    let content = (text.lines().count() > 1 || text.len() > summary.len()).then_some(text);
    Ok(ToolOutput { summary, content })
}

/// A pod's servers.
#[derive(Debug, Default)]
pub struct McpServers {
    servers: Vec<Arc<Server>>,
    /// The name each (server, tool) was offered under: a name, once given,
    /// stays with its tool while the session lasts, whatever lists change.
    given: std::sync::Mutex<std::collections::HashMap<(String, String), String>>,
}

impl McpServers {
    /// Stops every server whose scope is no longer the pod's (see
    /// [`Server::refresh`]); awaited after the pod gave part of its scope away.
    pub async fn refresh(&self) {
        for server in &self.servers {
            server.refresh().await;
        }
    }

    /// Their tools as the model sees them now: each server's last list (a
    /// server that sends `tools/list_changed` is listed again), named
    /// `mcp__<server>__<tool>`, a collision given a short hash. Asked at each
    /// step, so a changed list reaches the model's next request.
    pub fn catalog(&self) -> Vec<(ToolMeta, Arc<dyn Tool>)> {
        let mut given = self
            .given
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lists: Vec<(Arc<Server>, Vec<rmcp::model::Tool>)> = self
            .servers
            .iter()
            .map(|s| (Arc::clone(s), s.listed()))
            .collect();
        // Names given before are kept first; new tools take what is free.
        let mut names: HashSet<String> = lists
            .iter()
            .flat_map(|(s, tools)| {
                tools
                    .iter()
                    .filter_map(|t| given.get(&(s.name().to_string(), t.name.to_string())))
            })
            .cloned()
            .collect();
        let mut out: Vec<(ToolMeta, Arc<dyn Tool>)> = Vec::new();
        for (server, tools) in &lists {
            for t in tools {
                let key = (server.name().to_string(), t.name.to_string());
                let name = match given.get(&key) {
                    Some(name) => name.clone(),
                    None => {
                        let mut name = tool_name(server.name(), &t.name);
                        if !names.insert(name.clone()) {
                            name = with_hash(&name, &format!("{}\0{}", server.name(), t.name));
                            names.insert(name.clone());
                        }
                        given.insert(key, name.clone());
                        name
                    }
                };
                let description = format!(
                    "{} (tool `{}` of MCP server `{}`)",
                    t.description.as_deref().unwrap_or("").trim(),
                    t.name,
                    server.name()
                );
                let schema = serde_json::Value::Object(JsonObject::clone(&t.input_schema));
                let meta = ToolMeta::new(name)
                    .description(description.trim_start())
                    .input_schema(schema);
                let tool: Arc<dyn Tool> = Arc::new(McpTool {
                    server: Arc::clone(server),
                    tool: t.name.to_string(),
                });
                out.push((meta, tool));
            }
        }
        out
    }
}

/// The servers' tools, for the worker to ask at each step.
impl ToolSource for McpServers {
    fn tools(&self) -> Vec<(ToolMeta, Arc<dyn Tool>)> {
        self.catalog()
    }
}

/// Starts every server (at once, side by side) and lists its tools (the
/// servers' [`McpServers::catalog`]). A server that cannot start is reported
/// through the environment's alert and offers no tools.
pub async fn start_all(servers: &[manifest::mcp::McpServer], env: &ServerEnv) -> McpServers {
    let servers: Vec<Arc<Server>> = servers
        .iter()
        .map(|s| Arc::new(Server::new(s.clone(), env.clone())))
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for server in &servers {
        let server = Arc::clone(server);
        set.spawn(async move { server.tools_at_start().await });
    }
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(_)) => {}
            // The server's own start reported why.
            Ok(Err(e)) => tracing::warn!(error = %e, "MCP server offers no tools"),
            Err(e) => (env.alert)(format!("starting MCP servers failed: {e}")),
        }
    }
    McpServers {
        servers,
        given: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str) -> Arc<Server> {
        let config = manifest::mcp::McpServer {
            name: name.into(),
            command: "true".into(),
            url: None,
            headers: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            lazy: false,
        };
        let env = ServerEnv {
            confinement: crate::Confinement::Unconfined,
            policy: Arc::new(sandbox::SandboxPolicy::default),
            alert: Arc::new(|_| {}),
            lookup: Arc::new(|_| None),
            cache: None,
            board: Arc::new(crate::Board::new(None)),
        };
        Arc::new(Server::new(config, env))
    }

    fn listed(names: &[&str]) -> Vec<rmcp::model::Tool> {
        names
            .iter()
            .map(|n| rmcp::model::Tool::new(n.to_string(), "d", Arc::new(JsonObject::new())))
            .collect()
    }

    #[test]
    fn a_name_stays_with_its_tool_when_the_list_changes() {
        let s = server("s");
        let servers = McpServers {
            servers: vec![Arc::clone(&s)],
            given: Default::default(),
        };
        let names = |m: &McpServers| -> Vec<String> {
            m.catalog().into_iter().map(|(meta, _)| meta.name).collect()
        };
        s.set_listed(&listed(&["get_x"]));
        assert_eq!(names(&servers), ["mcp__s__get_x"]);
        // A new tool that cleans to the same name comes first in the list: the
        // old name keeps calling the old tool.
        s.set_listed(&listed(&["get.x", "get_x"]));
        let now = names(&servers);
        assert_eq!(now[1], "mcp__s__get_x");
        assert_ne!(now[0], "mcp__s__get_x");
        assert!(now[0].starts_with("mcp__s__get_x_"), "{now:?}");
    }

    #[test]
    fn names_fit_the_providers() {
        assert_eq!(
            tool_name("everything", "get-sum"),
            "mcp__everything__get-sum"
        );
        assert_eq!(tool_name("fs", "read file.v2"), "mcp__fs__read_file_v2");
        let long = "a".repeat(80);
        let a = tool_name("srv", &long);
        let b = tool_name("srv", &format!("{long}b"));
        assert_eq!(a.len(), MAX_TOOL_NAME);
        assert_ne!(a, b, "cut names stay distinct");
        assert!(a.starts_with("mcp__srv__aaa"));
    }

    #[test]
    fn results_become_text_and_error_results_tool_errors() {
        let text = |s: &str| ContentBlock::text(s);
        let ok = CallToolResult::success(vec![text("The sum of 2 and 3 is 5.")]);
        let out = output(ok).unwrap();
        assert_eq!(out.summary, "The sum of 2 and 3 is 5.");
        assert_eq!(out.content, None);
        let many = CallToolResult::success(vec![text("line one"), text("line two")]);
        assert_eq!(
            output(many).unwrap().content.as_deref(),
            Some("line one\nline two")
        );
        let err = CallToolResult::error(vec![text("no such file")]);
        assert_eq!(
            output(err),
            Err(ToolError::ExecutionFailed("no such file".into()))
        );
        let empty = CallToolResult::success(vec![]);
        assert_eq!(output(empty).unwrap().summary, "done (no output)");
    }
}
