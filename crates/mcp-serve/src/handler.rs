//! The MCP face of a [`Fleet`]: five tools (`spawn_pod`, `send_to_pod`,
//! `read_pod_output`, `stop_pod`, `list_pods`) through rmcp's server handler.

use std::sync::Arc;

use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use serde::de::DeserializeOwned;

use crate::fleet::{EmptyInput, Fleet, FleetError, NameInput, ReadInput, SendInput, SpawnInput};

/// What the host's model reads about the server as a whole.
const INSTRUCTIONS: &str = "pods runs coding agents as separate, kernel-confined processes. \
spawn_pod starts one on a task with the directories it may write (no two pods ever write the \
same files); it works on its own while you go on. read_pod_output returns what it has answered \
since your last read and whether it is still running; send_to_pod gives it more work; stop_pod \
stops it and frees its directories; list_pods shows yours.";

/// The tools, their descriptions and input types.
const TOOLS: [(&str, &str); 5] = [
    (
        "spawn_pod",
        "Start a pod (a coding agent in its own confined process) on a task, giving it the \
         directories it may write: no other pod can write there until it stops, and its \
         commands cannot write anywhere else. Its working directory is its first write path \
         (created if missing). It starts on `task` at once; use read_pod_output for its answer.",
    ),
    (
        "send_to_pod",
        "Send a message to a pod you started; it runs it as a new user turn. Fails if the pod \
         is busy with a turn (retry when read_pod_output says it is idle). Returns at once.",
    ),
    (
        "read_pod_output",
        "Read what a pod you started has answered since your last read of it, and whether it \
         is still running or idle. With `wait_s`, first wait (up to that many seconds) for it \
         to finish its turn.",
    ),
    (
        "stop_pod",
        "Stop a pod you started (and any pods it started); its directories become free for \
         other pods.",
    ),
    (
        "list_pods",
        "List the pods you started: name, state (alive and idle or running, or stopped) and \
         scope.",
    ),
];

/// The schema of `T` as a JSON object.
fn schema_of<T: schemars::JsonSchema>() -> Arc<JsonObject> {
    let value = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    match value {
        serde_json::Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// The tool list the server offers.
pub fn tools() -> Vec<Tool> {
    TOOLS
        .iter()
        .map(|(name, description)| {
            let schema = match *name {
                "spawn_pod" => schema_of::<SpawnInput>(),
                "send_to_pod" => schema_of::<SendInput>(),
                "read_pod_output" => schema_of::<ReadInput>(),
                "list_pods" => schema_of::<EmptyInput>(),
                _ => schema_of::<NameInput>(),
            };
            Tool::new(*name, *description, schema)
        })
        .collect()
}

/// One MCP session's handler; every session of a server shares its fleet.
#[derive(Debug, Clone)]
pub struct PodsServer {
    fleet: Arc<Fleet>,
}

impl PodsServer {
    /// A handler over `fleet`.
    pub fn new(fleet: Arc<Fleet>) -> PodsServer {
        PodsServer { fleet }
    }

    /// Runs tool `name` on `arguments`; a failure is the tool's error text.
    pub async fn call(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Result<String, FleetError> {
        fn input<T: DeserializeOwned>(
            tool: &str,
            arguments: Option<JsonObject>,
        ) -> Result<T, FleetError> {
            let value = serde_json::Value::Object(arguments.unwrap_or_default());
            serde_json::from_value(value)
                .map_err(|e| FleetError::Invalid(format!("invalid {tool} input: {e}")))
        }
        let fleet = &self.fleet;
        match name {
            "spawn_pod" => match input(name, arguments) {
                // In a task of its own: a host that gives up on the call (or
                // a session that ends) must not leave a started pod unknown
                // to the fleet, which stops its pods when the session ends.
                Ok(i) => {
                    let fleet = Arc::clone(fleet);
                    tokio::spawn(async move { fleet.spawn(i).await })
                        .await
                        .unwrap_or_else(|e| {
                            Err(FleetError::Failed(format!("spawn_pod failed: {e}")))
                        })
                }
                Err(e) => Err(e),
            },
            "send_to_pod" => match input(name, arguments) {
                Ok(i) => fleet.send(i).await,
                Err(e) => Err(e),
            },
            "read_pod_output" => match input(name, arguments) {
                Ok(i) => fleet.read(i).await,
                Err(e) => Err(e),
            },
            "stop_pod" => match input(name, arguments) {
                Ok(i) => fleet.stop(i).await,
                Err(e) => Err(e),
            },
            "list_pods" => match input::<EmptyInput>(name, arguments) {
                Ok(_) => Ok(fleet.list().await),
                Err(e) => Err(e),
            },
            other => Err(FleetError::Invalid(format!(
                "no tool named `{other}`; the tools are spawn_pod, send_to_pod, read_pod_output, stop_pod and list_pods"
            ))),
        }
    }
}

impl ServerHandler for PodsServer {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("pods", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, rmcp::ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, rmcp::ErrorData> {
        if !TOOLS.iter().any(|(name, _)| *name == request.name) {
            return Err(rmcp::ErrorData::invalid_params(
                format!(
                    "no tool named `{}`; the tools are spawn_pod, send_to_pod, read_pod_output, stop_pod and list_pods",
                    request.name
                ),
                None,
            ));
        }
        // Failures are tool results, not protocol errors: hosts show the
        // model a tool result's text, and it can act on it.
        let result = match self.call(&request.name, request.arguments).await {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        };
        Ok(CallToolResponse::Complete(result))
    }
}
