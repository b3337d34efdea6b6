//! What a tool is, how it describes itself to the model, and what it returns. Tools
//! are built by factories ([`ToolDefinition`]) so that each worker gets fresh
//! instances while sharing whatever state the factory captured.
//!
//! This crate owns only that contract (and [`cap`], the one output rule tools apply
//! themselves), so the tools can be built without the provider clients' HTTP stack;
//! `llm-worker` runs them and re-exports this crate as `llm_worker::tool`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

/// A tool the model can call: takes the call's JSON arguments, returns its output.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Runs one call. `input_json` is the arguments exactly as the model sent them.
    async fn execute(&self, input_json: &str) -> Result<ToolOutput, ToolError>;
}

/// A factory producing a tool's description and an instance of it.
pub type ToolDefinition = Arc<dyn Fn() -> (ToolMeta, Arc<dyn Tool>) + Send + Sync>;

/// How a tool presents itself to the model: name, description and input schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolMeta {
    /// The name the model calls it by (unique within a worker).
    pub name: String,
    /// What the tool does and when to use it, for the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub input_schema: serde_json::Value,
}

impl ToolMeta {
    /// Starts a description with a name, an empty description and an empty-object schema.
    pub fn new(name: impl Into<String>) -> Self {
        ToolMeta {
            name: name.into(),
            description: String::new(),
            input_schema: serde_json::json!({"type": "object", "properties": {}}),
        }
    }

    /// Sets the description shown to the model.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the JSON Schema of the arguments.
    pub fn input_schema(mut self, schema: serde_json::Value) -> Self {
        self.input_schema = schema;
        self
    }
}

/// What a successful call returns: a one-line summary and optional full content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// One line saying what happened; always shown.
    pub summary: String,
    /// The full output, when there is more than the summary.
    pub content: Option<String>,
}

/// Why a call failed; the model reads the message as the call's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    /// The arguments were malformed or out of range: the model should fix its call.
    InvalidArgument(String),
    /// The arguments were fine but the work failed.
    ExecutionFailed(String),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
            ToolError::ExecutionFailed(msg) => write!(f, "execution failed: {msg}"),
        }
    }
}

impl std::error::Error for ToolError {}

/// Cuts `text` to at most `limit` bytes (on character boundaries), keeping the
/// head and the tail — errors and summaries tend to sit at either end — with a
/// note in the middle saying how much was cut.
pub fn cap(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let note_room = 64;
    let keep = limit.saturating_sub(note_room);
    let mut head_end = keep * 2 / 3;
    while !text.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = text.len() - (keep - keep * 2 / 3);
    while !text.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    let cut = tail_start - head_end;
    format!(
        "{}\n[... {cut} of {} bytes cut to fit the model's context ...]\n{}",
        &text[..head_end],
        text.len(),
        &text[tail_start..]
    )
}

/// Tools whose set can change while a worker runs (an MCP server's, after its
/// `tools/list_changed`): asked at each step what they are now.
pub trait ToolSource: Send + Sync {
    /// The tools now, in the order they are offered.
    fn tools(&self) -> Vec<(ToolMeta, std::sync::Arc<dyn Tool>)>;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    #[async_trait]
    impl Tool for Echo {
        async fn execute(&self, input_json: &str) -> Result<ToolOutput, ToolError> {
            let v: serde_json::Value = serde_json::from_str(input_json)
                .map_err(|e| ToolError::InvalidArgument(e.to_string()))?;
            Ok(ToolOutput {
                summary: "echoed".into(),
                content: Some(v.to_string()),
            })
        }
    }

    fn echo_tool() -> ToolDefinition {
        Arc::new(|| {
            let meta = ToolMeta::new("Echo")
                .description("echoes its input")
                .input_schema(serde_json::json!({"type": "object"}));
            let tool: Arc<dyn Tool> = Arc::new(Echo);
            (meta, tool)
        })
    }

    #[tokio::test]
    async fn factory_builds_meta_and_a_working_tool() {
        let def = echo_tool();
        let (meta, tool) = def();
        assert_eq!(meta.name, "Echo");
        assert_eq!(meta.description, "echoes its input");
        assert_eq!(meta.input_schema, serde_json::json!({"type": "object"}));
        let out = tool.execute(r#"{"a":1}"#).await.unwrap();
        assert_eq!(
            out,
            ToolOutput {
                summary: "echoed".into(),
                content: Some(r#"{"a":1}"#.into())
            }
        );
        let err = tool.execute("not json").await.unwrap_err();
        assert!(matches!(err, ToolError::InvalidArgument(_)));
        assert!(err.to_string().starts_with("invalid argument: "));
    }

    #[test]
    fn meta_defaults_to_an_empty_object_schema() {
        let meta = ToolMeta::new("X");
        assert_eq!(meta.input_schema["type"], "object");
        assert!(meta.description.is_empty());
    }
}
