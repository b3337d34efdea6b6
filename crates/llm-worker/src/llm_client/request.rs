//! What one LLM call asks for, independent of the provider's wire scheme.

use llm_types::Item;

/// A tool as offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of the arguments object (as schemars produced it; each scheme
    /// normalises it for its provider).
    pub input_schema: serde_json::Value,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides (the default).
    #[default]
    Auto,
    /// The model must not call tools.
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Tool(String),
}

/// One LLM call: system prompt, history, tools and sampling settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    /// Model id as the provider names it.
    pub model: String,
    /// System instruction (empty for none).
    pub system: String,
    /// The conversation so far, oldest first.
    pub history: Vec<Item>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Tool-calling constraint.
    pub tool_choice: ToolChoice,
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
    /// Sampling temperature (provider default when `None`).
    pub temperature: Option<f64>,
    /// Sampling seed, where the provider supports one.
    pub seed: Option<i64>,
    /// Extra top-level body fields from the manifest's `[model.extra]`; they
    /// override what the client would otherwise send.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// A stable key for provider prompt caching (OpenAI `prompt_cache_key`;
    /// Anthropic marks its stable prefix with `cache_control` whenever this is
    /// set). `None` disables caching hints.
    pub cache_key: Option<String>,
}

impl LlmRequest {
    /// A request with the given model and history and every other field empty or
    /// default (max_tokens 4096).
    pub fn new(model: impl Into<String>, history: Vec<Item>) -> Self {
        LlmRequest {
            model: model.into(),
            system: String::new(),
            history,
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            max_tokens: 4096,
            temperature: None,
            seed: None,
            extra: serde_json::Map::new(),
            cache_key: None,
        }
    }
}

/// Merges the manifest's `extra` table into a request body: its keys win.
pub(crate) fn apply_extra(
    body: &mut serde_json::Value,
    extra: &serde_json::Map<String, serde_json::Value>,
) {
    if let Some(obj) = body.as_object_mut() {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
}
