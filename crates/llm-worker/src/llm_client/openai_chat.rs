//! OpenAI Chat Completions (`POST {base}/chat/completions`, `stream: true`).
//!
//! The most widely imitated scheme: besides OpenAI and Azure it is what Ollama,
//! vLLM, llama.cpp, OpenRouter, Groq, DeepSeek, xAI, Mistral and most gateways
//! speak, each with quirks. The decoder is lenient where recordings prove servers
//! differ (see `test-support/fixtures/providers/openai-chat`):
//!
//! - chunks with `choices: []` (usage-only final chunk, Azure's empty first
//!   chunk) and chunks without `finish_reason`;
//! - `n > 1`: only choice 0 is kept, the others are ignored;
//! - `delta.content` as a string, or (Mistral Magistral) an array of
//!   `{type:"text"}` and `{type:"thinking", thinking:[{type:"text"}]}` parts;
//! - reasoning as `delta.reasoning_content` (DeepSeek, xAI) or `delta.reasoning`
//!   (OpenRouter, Groq, vLLM); OpenRouter's `reasoning_details` signatures are
//!   kept on the reasoning item;
//! - `delta.refusal` is accumulated; a response that stops with refusal text
//!   stops with [`StopReason::Refusal`] (the refusal is not an item);
//! - tool-call deltas keyed by `index` (which may start at 1); without `index`
//!   (Mistral) by id, else by position in the array; continuation deltas with
//!   `id: ""` / `name: ""` continue the call, and a whole call may arrive in one
//!   chunk. Calls are completed at `finish_reason` (or at the end);
//! - `finish_reason` `stop` with tool calls present (some local servers) is read
//!   as tool use; no `finish_reason` at all is inferred from the content;
//! - usage: `prompt_tokens` includes cached tokens (`prompt_tokens_details.
//!   cached_tokens`, DeepSeek `prompt_cache_hit_tokens`), so input = prompt −
//!   cached. Output is `completion_tokens`, plus `reasoning_tokens` when the
//!   server (xAI) evidently left them out (`total = prompt + completion +
//!   reasoning`);
//! - in-band errors: `{"error":{..}}` in place of (or beside) a chunk, and an
//!   `event: error` SSE event (Groq), become [`ClientError::Provider`];
//! - `data: [DONE]` ends the response; a stream that ends without it is accepted
//!   when a `finish_reason` was seen (some servers omit `[DONE]`), otherwise it
//!   is [`ClientError::StreamBroken`].
//!
//! Request choices: `max_tokens` rather than `max_completion_tokens` (every
//! compatible server knows the former; OpenAI still accepts it for non-reasoning
//! models, and manifests can override through `extra`); `tools`/`tool_choice`
//! only when tools are offered (OpenAI rejects a `tool_choice` without tools);
//! `prompt_cache_key` whenever the request has a cache key (servers that do not
//! know it ignore unknown fields); failed tool results are sent with an
//! `"error: "` prefix, since the scheme has no error flag.

use std::borrow::Cow;
use std::fmt;

use llm_types::{Item, ProviderFamily, Role, ToolCallKind, Usage};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};

use crate::llm_client::error::ClientError;
use crate::llm_client::request::{self, LlmRequest, ToolChoice};
use crate::llm_client::schema;
use crate::llm_client::scheme::WireScheme;
use crate::llm_client::sse::SseEvent;
use crate::llm_client::stream::{Assembler, Flow, StopReason, StreamDecoder};

/// The OpenAI Chat Completions wire scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenaiChat;

impl WireScheme for OpenaiChat {
    fn family(&self) -> ProviderFamily {
        ProviderFamily::OpenaiChat
    }

    fn endpoint(&self, base_url: &str, _model: &str) -> String {
        format!("{}/chat/completions", base_url.trim_end_matches('/'))
    }

    fn headers(&self, api_key: Option<&str>) -> Vec<(String, String)> {
        let mut h = Vec::with_capacity(2);
        if let Some(key) = api_key {
            h.push(("authorization".to_string(), format!("Bearer {key}")));
        }
        h.push(("content-type".to_string(), "application/json".to_string()));
        h
    }

    fn body(&self, request: &LlmRequest) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(request.model.clone()));
        body.insert("messages".into(), Value::Array(messages(request)));
        body.insert("stream".into(), Value::Bool(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
        body.insert("max_tokens".into(), json!(request.max_tokens));
        if let Some(t) = request.temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(s) = request.seed {
            body.insert("seed".into(), json!(s));
        }
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": normalize_schema(&t.input_schema),
                        }
                    })
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
            let choice = match &request.tool_choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
            };
            body.insert("tool_choice".into(), choice);
        }
        if let Some(key) = &request.cache_key {
            body.insert("prompt_cache_key".into(), Value::String(key.clone()));
        }
        let mut body = Value::Object(body);
        request::apply_extra(&mut body, &request.extra);
        body
    }

    fn decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(OpenaiChatDecoder::new())
    }
}

// ---------------------------------------------------------------------------
// Request body
// ---------------------------------------------------------------------------

/// The assistant message being built from consecutive assistant items.
#[derive(Default)]
struct PendingAssistant {
    content: Option<String>,
    reasoning: Option<String>,
    signature: Option<String>,
    tool_calls: Vec<Value>,
    extra: Map<String, Value>,
}

impl PendingAssistant {
    fn is_empty(&self) -> bool {
        self.content.is_none()
            && self.reasoning.is_none()
            && self.tool_calls.is_empty()
            && self.extra.is_empty()
    }

    fn into_message(self) -> Value {
        let mut m = Map::new();
        m.insert("role".into(), json!("assistant"));
        let content = match self.content {
            Some(c) if !c.is_empty() || self.tool_calls.is_empty() => Value::String(c),
            None if self.tool_calls.is_empty() => Value::String(String::new()),
            _ => Value::Null,
        };
        m.insert("content".into(), content);
        if let Some(r) = &self.reasoning {
            m.insert("reasoning_content".into(), Value::String(r.clone()));
        }
        if let (Some(sig), Some(text)) = (self.signature, &self.reasoning) {
            // OpenRouter wants signed reasoning back as `reasoning_details`.
            m.insert(
                "reasoning_details".into(),
                json!([{"type": "reasoning.text", "text": text, "signature": sig}]),
            );
        }
        if !self.tool_calls.is_empty() {
            m.insert("tool_calls".into(), Value::Array(self.tool_calls));
        }
        for (k, v) in self.extra {
            m.insert(k, v);
        }
        Value::Object(m)
    }
}

fn flush(pending: &mut Option<PendingAssistant>, out: &mut Vec<Value>) {
    if let Some(p) = pending.take()
        && !p.is_empty()
    {
        out.push(p.into_message());
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// The text sent for a tool result: summary, then the full content; failures
/// are prefixed with `error: ` (the scheme has no error flag).
pub(crate) fn tool_result_text(summary: &str, content: Option<&str>, is_error: bool) -> String {
    let mut text = String::new();
    if is_error {
        text.push_str("error: ");
    }
    text.push_str(summary);
    if let Some(c) = content.filter(|c| !c.is_empty() && *c != summary) {
        if !summary.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(c);
    }
    text
}

fn messages(request: &LlmRequest) -> Vec<Value> {
    let mut out = Vec::with_capacity(request.history.len() + 1);
    if !request.system.is_empty() {
        out.push(json!({"role": "system", "content": request.system}));
    }
    let mut pending: Option<PendingAssistant> = None;
    for item in &request.history {
        match item {
            Item::Message {
                role: Role::Assistant,
                ..
            } => {
                let text = item.message_text();
                let p = pending.get_or_insert_with(PendingAssistant::default);
                if p.content.is_some() || !p.tool_calls.is_empty() {
                    flush(&mut pending, &mut out);
                }
                pending
                    .get_or_insert_with(PendingAssistant::default)
                    .content = Some(text);
            }
            Item::Message { role, .. } => {
                flush(&mut pending, &mut out);
                out.push(json!({"role": role_name(*role), "content": item.message_text()}));
            }
            Item::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                pending
                    .get_or_insert_with(PendingAssistant::default)
                    .tool_calls
                    .push(json!({
                        "id": id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }));
            }
            Item::ToolResult {
                call_id,
                summary,
                content,
                is_error,
            } => {
                flush(&mut pending, &mut out);
                out.push(json!({
                    "role": "tool",
                    "tool_call_id": call_id,
                    "content": tool_result_text(summary, content.as_deref(), *is_error),
                }));
            }
            Item::Reasoning {
                provider: ProviderFamily::OpenaiChat,
                text,
                signature,
                ..
            } => {
                if let Some(p) = &pending
                    && (p.content.is_some() || !p.tool_calls.is_empty())
                {
                    flush(&mut pending, &mut out);
                }
                let p = pending.get_or_insert_with(PendingAssistant::default);
                match &mut p.reasoning {
                    Some(r) => r.push_str(text),
                    None => p.reasoning = Some(text.clone()),
                }
                if signature.is_some() {
                    p.signature.clone_from(signature);
                }
            }
            Item::ProviderItem {
                provider: ProviderFamily::OpenaiChat,
                value,
            } => match value {
                // A whole message kept verbatim.
                Value::Object(obj) if obj.contains_key("role") => {
                    flush(&mut pending, &mut out);
                    out.push(value.clone());
                }
                // Fields to carry on the assistant message (e.g. `reasoning_details`).
                Value::Object(obj) => {
                    let p = pending.get_or_insert_with(PendingAssistant::default);
                    for (k, v) in obj {
                        p.extra.insert(k.clone(), v.clone());
                    }
                }
                _ => {}
            },
            // Other families' opaque state means nothing here.
            Item::Reasoning { .. } | Item::ProviderItem { .. } => {}
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Normalises a schemars JSON Schema for OpenAI function parameters: inlines
/// `$ref`s into `$defs`/`definitions`, drops `$schema`, `title`, `$defs` and
/// `definitions`, and makes sure the root object has `properties`.
pub fn normalize_schema(schema: &Value) -> Value {
    schema::object_root(schema::inline_refs(schema), true)
}

// ---------------------------------------------------------------------------
// Stream decoding
// ---------------------------------------------------------------------------

/// A string that may also arrive as a JSON value (tool arguments as an object
/// from some servers): borrowed when the JSON text has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(n.to_string())))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(n.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// `delta.content`: a string, or Mistral's array of typed parts.
enum Content<'a> {
    Str(Cow<'a, str>),
    Parts(Vec<ContentPartWire>),
}

#[derive(Deserialize)]
struct ContentPartWire {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<ThinkingWire>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ThinkingWire {
    Str(String),
    Parts(Vec<ContentPartWire>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Content::Str(Cow::Owned(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Content::Str(Cow::Owned(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                let parts = Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Content::Parts(parts))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<UsageWire>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Text<'a>>,
    #[serde(borrow, default)]
    reasoning: Option<Text<'a>>,
    #[serde(borrow, default)]
    refusal: Option<Text<'a>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
    #[serde(borrow, default)]
    reasoning_details: Option<Vec<ReasoningDetail<'a>>>,
}

#[derive(Deserialize)]
struct ReasoningDetail<'a> {
    #[serde(borrow, default)]
    signature: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(borrow, default)]
    name: Option<Text<'a>>,
    #[serde(borrow, default)]
    arguments: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct UsageWire {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl UsageWire {
    fn to_usage(&self) -> Usage {
        let prompt = self.prompt_tokens.unwrap_or(0);
        let completion = self.completion_tokens.unwrap_or(0);
        let cached = self
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .filter(|&c| c > 0)
            .or(self.prompt_cache_hit_tokens)
            .unwrap_or(0)
            .min(prompt);
        let reasoning = self
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0);
        // xAI reports reasoning outside completion_tokens; its total shows it.
        let sum = prompt.saturating_add(completion).saturating_add(reasoning);
        let output = if reasoning > 0 && self.total_tokens == Some(sum) {
            completion + reasoning
        } else {
            completion
        };
        Usage {
            input_tokens: prompt - cached,
            output_tokens: output,
            cache_read_tokens: cached,
            cache_write_tokens: 0,
        }
    }
}

const TEXT_KEY: &str = "text";
const REASONING_KEY: &str = "reasoning";

/// Per-response state of the OpenAI Chat decoder.
#[derive(Debug, Default)]
pub(crate) struct OpenaiChatDecoder {
    /// Tool calls seen: (wire index if any, id, assembler key).
    calls: Vec<(Option<u64>, String, String)>,
    refusal: String,
    finish: Option<String>,
    done: bool,
}

impl OpenaiChatDecoder {
    /// A decoder at the start of a response.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn call_key(&mut self, pos: usize, tc: &ToolCallDelta<'_>) -> (String, bool) {
        let id = tc.id.as_ref().map(|t| t.0.as_ref()).unwrap_or("");
        if let Some(ix) = tc.index {
            // The latest call at this index, unless a different id shows that a
            // server reuses the index for every call.
            if let Some((_, known, key)) = self.calls.iter().rev().find(|(i, _, _)| *i == Some(ix))
                && (id.is_empty() || known.is_empty() || known == id)
            {
                return (key.clone(), false);
            }
            let key = format!("call{ix}_{}", self.calls.len());
            self.calls.push((Some(ix), id.to_string(), key.clone()));
            return (key, true);
        }
        // No index (Mistral): by id, else by position in the array.
        if !id.is_empty() {
            if let Some((_, _, key)) = self.calls.iter().find(|(_, i, _)| i == id) {
                return (key.clone(), false);
            }
        } else if let Some((_, _, key)) = self.calls.get(pos) {
            return (key.clone(), false);
        } else if let Some((_, _, key)) = self.calls.last() {
            return (key.clone(), false);
        }
        let key = format!("call_pos{}", self.calls.len());
        self.calls.push((None, id.to_string(), key.clone()));
        (key, true)
    }

    fn choice(&mut self, choice: Choice<'_>, asm: &mut Assembler) {
        if let Some(delta) = choice.delta {
            if let Some(r) = delta
                .reasoning_content
                .as_ref()
                .or(delta.reasoning.as_ref())
                && !r.0.is_empty()
            {
                asm.thinking_delta(REASONING_KEY, &r.0);
            }
            if let Some(details) = &delta.reasoning_details {
                for d in details {
                    if let Some(sig) = &d.signature
                        && !sig.0.is_empty()
                    {
                        asm.thinking_signature(REASONING_KEY, &sig.0);
                    }
                }
            }
            match delta.content {
                Some(Content::Str(s)) if !s.is_empty() => asm.text_delta(TEXT_KEY, &s),
                Some(Content::Parts(parts)) => content_parts(&parts, asm),
                _ => {}
            }
            if let Some(r) = &delta.refusal {
                self.refusal.push_str(&r.0);
            }
            if let Some(calls) = &delta.tool_calls {
                for (pos, tc) in calls.iter().enumerate() {
                    let (key, new) = self.call_key(pos, tc);
                    let name = tc
                        .function
                        .as_ref()
                        .and_then(|f| f.name.as_ref())
                        .map(|n| n.0.as_ref())
                        .unwrap_or("");
                    if new {
                        let id = tc.id.as_ref().map(|t| t.0.as_ref()).unwrap_or("");
                        asm.tool_call_start(&key, id, name, ToolCallKind::Function);
                    } else if !name.is_empty() {
                        asm.tool_call_name(&key, name);
                    }
                    if let Some(args) = tc.function.as_ref().and_then(|f| f.arguments.as_ref()) {
                        asm.tool_call_args(&key, &args.0);
                    }
                }
            }
        }
        if let Some(reason) = choice.finish_reason
            && !reason.is_empty()
        {
            self.finish = Some(reason.into_owned());
            self.conclude(asm);
        }
    }

    /// Completes open tool calls and records the stop reason (from
    /// `finish_reason`, else inferred from the content).
    fn conclude(&mut self, asm: &mut Assembler) {
        asm.finish_open_tool_calls();
        let has_calls = !self.calls.is_empty();
        let stop = match self.finish.as_deref() {
            Some("stop") | Some("end_turn") | Some("eos") | None => {
                if !self.refusal.is_empty() {
                    StopReason::Refusal(self.refusal.clone())
                } else if has_calls {
                    StopReason::ToolUse
                } else {
                    StopReason::End
                }
            }
            Some("tool_calls") | Some("function_call") | Some("tool_use") => StopReason::ToolUse,
            Some("length") | Some("max_tokens") => StopReason::MaxTokens,
            Some("content_filter") => StopReason::ContentFilter,
            Some(other) => StopReason::Other(other.to_string()),
        };
        asm.set_stop(stop);
    }
}

fn content_parts(parts: &[ContentPartWire], asm: &mut Assembler) {
    for part in parts {
        match part.kind.as_str() {
            "thinking" => match &part.thinking {
                Some(ThinkingWire::Str(s)) => asm.thinking_delta(REASONING_KEY, s),
                Some(ThinkingWire::Parts(inner)) => {
                    for p in inner {
                        if let Some(t) = &p.text {
                            asm.thinking_delta(REASONING_KEY, t);
                        }
                    }
                }
                None => {}
            },
            _ => {
                if let Some(t) = &part.text {
                    asm.text_delta(TEXT_KEY, t);
                }
            }
        }
    }
}

/// A provider error from an `{"error": ...}` value (object or string).
fn provider_error(err: &Value) -> ClientError {
    let as_text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    match err {
        Value::Object(obj) => {
            let code = obj
                .get("code")
                .and_then(as_text)
                .or_else(|| obj.get("type").and_then(as_text));
            let message = obj
                .get("message")
                .and_then(as_text)
                .unwrap_or_else(|| err.to_string());
            ClientError::Provider { code, message }
        }
        other => ClientError::Provider {
            code: None,
            message: as_text(other).unwrap_or_else(|| "unknown error".to_string()),
        },
    }
}

impl StreamDecoder for OpenaiChatDecoder {
    fn feed(&mut self, event: &SseEvent, asm: &mut Assembler) -> Result<Flow, ClientError> {
        if self.done {
            return Ok(Flow::Done);
        }
        let data = event.data.trim();
        if event.event.as_deref() == Some("error") {
            let value: Value =
                serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_string()));
            let err = value.get("error").unwrap_or(&value);
            return Err(provider_error(err));
        }
        if data == "[DONE]" {
            self.done = true;
            if !asm.has_stop() || asm.has_open_tool_call() {
                self.conclude(asm);
            }
            return Ok(Flow::Done);
        }
        if data.is_empty() {
            return Ok(Flow::Continue);
        }
        let chunk: Chunk<'_> = serde_json::from_str(data).map_err(|e| {
            let preview: String = data.chars().take(120).collect();
            ClientError::Decode(format!("invalid OpenAI Chat chunk ({e}): {preview}"))
        })?;
        if let Some(usage) = &chunk.usage {
            asm.set_usage(usage.to_usage());
        }
        if let Some(err) = &chunk.error
            && !err.is_null()
        {
            return Err(provider_error(err));
        }
        if let Some(choices) = chunk.choices {
            for choice in choices {
                // n > 1: only the first choice becomes the response.
                if choice.index.unwrap_or(0) == 0 {
                    self.choice(choice, asm);
                }
            }
        }
        Ok(Flow::Continue)
    }

    fn finish(&mut self, asm: &mut Assembler) -> Result<(), ClientError> {
        if self.done {
            return Ok(());
        }
        if self.finish.is_some() {
            // Some servers close the stream after the finish chunk, without [DONE].
            self.conclude(asm);
            return Ok(());
        }
        Err(ClientError::StreamBroken(
            "the OpenAI Chat stream ended before a finish_reason or [DONE]".to_string(),
        ))
    }
}
