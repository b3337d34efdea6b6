//! Provider-neutral conversation items.
//!
//! This crate owns the shape of a conversation as pods keep it: the session log
//! stores these types verbatim, so their JSON encoding is an on-disk format and is
//! frozen. Add fields only with `#[serde(default)]`; never rename or remove.
//!
//! It does not know any provider's wire format: the clients in `llm_worker`
//! translate between these items and each scheme's requests and streams. Provider
//! state that must be echoed back (signatures, encrypted reasoning, server-side
//! blocks) travels in [`Item::Reasoning`], [`Item::ProviderItem`] and
//! [`Item::ToolCall::signature`] so that no provider ever loses what it needs.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions from the pod itself (system prompt, notifications it injects).
    System,
    /// The person or program driving the pod.
    User,
    /// The model.
    Assistant,
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Plain text.
    Text {
        /// The text itself.
        text: String,
    },
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }
}

/// Which provider family produced an opaque piece of state; echoed back only there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderFamily {
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI Chat Completions and compatible servers.
    OpenaiChat,
    /// OpenAI Responses.
    OpenaiResponses,
    /// Gemini `streamGenerateContent`.
    Gemini,
}

/// How a tool call was expressed by the provider, so the answer can use the same form.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallKind {
    /// A JSON-arguments function call (every provider).
    #[default]
    Function,
    /// An OpenAI Responses `custom_tool_call` with free-form text input.
    Custom,
}

impl ToolCallKind {
    fn is_function(&self) -> bool {
        matches!(self, ToolCallKind::Function)
    }
}

/// One entry of a conversation history.
///
/// Variants are struct variants so that new optional fields can be added without
/// breaking old logs; every optional field is omitted from the JSON when empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    /// A message of text from a role.
    Message {
        /// Author of the message.
        role: Role,
        /// Content parts, in order.
        content: Vec<ContentPart>,
        /// The provider's id for this message, where it has one worth echoing
        /// (OpenAI Responses message items).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Provider that produced `id`; the id is only echoed to that family.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider: Option<ProviderFamily>,
    },
    /// The model asks for a tool to run.
    ToolCall {
        /// Call id, unique within the conversation; results refer to it.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments as JSON text (free-form text for [`ToolCallKind::Custom`]).
        arguments: String,
        /// Function call or custom (free-form) call.
        #[serde(default, skip_serializing_if = "ToolCallKind::is_function")]
        kind: ToolCallKind,
        /// Opaque signature the provider attached to the call (Gemini's
        /// `thoughtSignature`), echoed back with it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
        /// Provider that produced `signature` / a provider-scoped item id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider: Option<ProviderFamily>,
        /// The provider's own item id where it differs from the call id
        /// (OpenAI Responses `fc_...` item ids).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item_id: Option<String>,
    },
    /// What a tool returned for a call.
    ToolResult {
        /// The id of the call this answers.
        call_id: String,
        /// One-line summary (always present; what a person sees first).
        summary: String,
        /// Full output, when there is more than the summary.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        /// Whether the tool failed; the model reads the failure as the result.
        #[serde(default)]
        is_error: bool,
    },
    /// The model's reasoning, with whatever the provider needs echoed back.
    Reasoning {
        /// Provider that produced it; opaque parts are echoed only to that family.
        provider: ProviderFamily,
        /// Readable thinking text or summary (may be empty).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
        /// Signature over the thinking (Anthropic) or thought signature (Gemini).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
        /// Anthropic `redacted_thinking` data: the whole block is opaque.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        redacted: Option<String>,
        /// OpenAI Responses `encrypted_content`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted: Option<String>,
        /// The provider's id for the reasoning item (OpenAI Responses `rs_...`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// A block only its provider understands (server-side tool use and results,
    /// compaction blocks, web search calls), kept verbatim and echoed back only to
    /// the same provider family; other families skip it.
    ProviderItem {
        /// Family that produced it.
        provider: ProviderFamily,
        /// The block exactly as the provider sent it (completed form).
        value: serde_json::Value,
    },
}

impl Item {
    /// A message holding one text part.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Item::Message {
            role,
            content: vec![ContentPart::text(text)],
            id: None,
            provider: None,
        }
    }

    /// A user message whose own words are followed by context the pod
    /// attached to them (a listing, the files it names): two parts, so that
    /// the words can be quoted without the files ([`Item::own_words`]).
    pub fn user_with_context(words: impl Into<String>, context: impl Into<String>) -> Self {
        let context = context.into();
        let mut content = vec![ContentPart::text(words)];
        if !context.is_empty() {
            content.push(ContentPart::text(context));
        }
        Item::Message {
            role: Role::User,
            content,
            id: None,
            provider: None,
        }
    }

    /// A function tool call with JSON arguments and no provider state.
    pub fn tool_call(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Item::ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
            kind: ToolCallKind::Function,
            signature: None,
            provider: None,
            item_id: None,
        }
    }

    /// A tool result.
    pub fn tool_result(
        call_id: impl Into<String>,
        summary: impl Into<String>,
        content: Option<String>,
        is_error: bool,
    ) -> Self {
        Item::ToolResult {
            call_id: call_id.into(),
            summary: summary.into(),
            content,
            is_error,
        }
    }

    /// A message's first part: a user's own words without what the pod
    /// attached to them (empty for other items).
    pub fn own_words(&self) -> &str {
        match self {
            Item::Message { content, .. } => content.first().map_or("", |part| {
                let ContentPart::Text { text } = part;
                text
            }),
            _ => "",
        }
    }

    /// Whether context was attached to a user's words ([`Item::user_with_context`]).
    pub fn has_context(&self) -> bool {
        matches!(self, Item::Message { content, .. } if content.len() > 1)
    }

    /// The concatenated text of a message (empty for other items).
    pub fn message_text(&self) -> String {
        match self {
            Item::Message { content, .. } => {
                let mut out = String::new();
                for part in content {
                    let ContentPart::Text { text } = part;
                    out.push_str(text);
                }
                out
            }
            _ => String::new(),
        }
    }
}

/// Token counts of one LLM call (or a sum of several).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Usage {
    /// Prompt tokens billed at the normal rate (excluding cache reads and writes).
    #[serde(default)]
    pub input_tokens: u64,
    /// Generated tokens, reasoning included.
    #[serde(default)]
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the provider's cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
}

impl Usage {
    /// All prompt tokens: normal, cache reads and cache writes.
    pub fn total_input(&self) -> u64 {
        // Saturating everywhere here: the counts come from providers.
        self.input_tokens
            .saturating_add(self.cache_read_tokens)
            .saturating_add(self.cache_write_tokens)
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, rhs: Self) {
        self.input_tokens = self.input_tokens.saturating_add(rhs.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(rhs.output_tokens);
        self.cache_read_tokens = self.cache_read_tokens.saturating_add(rhs.cache_read_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(rhs.cache_write_tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The on-disk encoding is frozen: these literals are what old logs contain.
    #[test]
    fn encodings_are_frozen() {
        let cases: Vec<(Item, &str)> = vec![
            (
                Item::text(Role::User, "hi"),
                r#"{"type":"message","role":"user","content":[{"type":"text","text":"hi"}]}"#,
            ),
            (
                Item::tool_call("c1", "Read", r#"{"path":"a"}"#),
                r#"{"type":"tool_call","id":"c1","name":"Read","arguments":"{\"path\":\"a\"}"}"#,
            ),
            (
                Item::ToolCall {
                    id: "c2".into(),
                    name: "apply".into(),
                    arguments: "raw".into(),
                    kind: ToolCallKind::Custom,
                    signature: Some("sig".into()),
                    provider: Some(ProviderFamily::Gemini),
                    item_id: Some("fc_1".into()),
                },
                r#"{"type":"tool_call","id":"c2","name":"apply","arguments":"raw","kind":"custom","signature":"sig","provider":"gemini","item_id":"fc_1"}"#,
            ),
            (
                Item::tool_result("c1", "ok", None, false),
                r#"{"type":"tool_result","call_id":"c1","summary":"ok","is_error":false}"#,
            ),
            (
                Item::Reasoning {
                    provider: ProviderFamily::Anthropic,
                    text: "think".into(),
                    signature: Some("s".into()),
                    redacted: None,
                    encrypted: None,
                    id: None,
                },
                r#"{"type":"reasoning","provider":"anthropic","text":"think","signature":"s"}"#,
            ),
            (
                Item::ProviderItem {
                    provider: ProviderFamily::OpenaiResponses,
                    value: serde_json::json!({"type":"web_search_call","id":"ws_1"}),
                },
                r#"{"type":"provider_item","provider":"openai_responses","value":{"type":"web_search_call","id":"ws_1"}}"#,
            ),
        ];
        for (item, json) in cases {
            assert_eq!(serde_json::to_string(&item).unwrap(), json);
            let back: Item = serde_json::from_str(json).unwrap();
            assert_eq!(back, item);
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_defaults_fill_in() {
        let item: Item = serde_json::from_str(
            r#"{"type":"tool_result","call_id":"x","summary":"s","future_field":1}"#,
        )
        .unwrap();
        assert_eq!(item, Item::tool_result("x", "s", None, false));
    }

    #[test]
    fn usage_adds_and_totals() {
        let mut u = Usage {
            input_tokens: 1,
            output_tokens: 2,
            cache_read_tokens: 3,
            cache_write_tokens: 4,
        };
        u += u;
        assert_eq!(u.total_input(), 16);
        assert_eq!(u.output_tokens, 4);
    }

    #[test]
    fn message_text_joins_parts() {
        let m = Item::Message {
            role: Role::Assistant,
            content: vec![ContentPart::text("a"), ContentPart::text("b")],
            id: None,
            provider: None,
        };
        assert_eq!(m.message_text(), "ab");
        assert_eq!(Item::tool_call("1", "x", "{}").message_text(), "");
    }
}
