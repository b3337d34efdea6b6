//! OpenAI Responses (`POST {base}/responses`, streaming).
//!
//! The request is stateless (`store: false`): the whole history travels in
//! `input` every time, with reasoning items echoed back by id and
//! `encrypted_content` (requested through `include`). The stream is a sequence
//! of typed events; every block is keyed by its `output_index`, which stays
//! stable even on servers whose `item_id` changes on every event (GitHub
//! Copilot).

use std::borrow::Cow;
use std::collections::HashMap;

use llm_types::{ContentPart, Item, ProviderFamily, Role, ToolCallKind, Usage};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::llm_client::error::ClientError;
use crate::llm_client::request::{self, LlmRequest, ToolChoice};
use crate::llm_client::schema;
use crate::llm_client::scheme::WireScheme;
use crate::llm_client::sse::SseEvent;
use crate::llm_client::stream::{Assembler, Flow, StopReason, StreamDecoder};

const FAMILY: ProviderFamily = ProviderFamily::OpenaiResponses;

/// The OpenAI Responses wire scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenaiResponses;

impl WireScheme for OpenaiResponses {
    fn family(&self) -> ProviderFamily {
        FAMILY
    }

    fn endpoint(&self, base_url: &str, _model: &str) -> String {
        format!("{}/responses", base_url.trim_end_matches('/'))
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
        if !request.system.is_empty() {
            body.insert("instructions".into(), Value::String(request.system.clone()));
        }
        body.insert("input".into(), Value::Array(input_items(&request.history)));
        if !request.tools.is_empty() {
            let tools = request
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "name": t.name,
                        "description": t.description,
                        "parameters": normalize_schema(&t.input_schema),
                        "strict": false,
                    })
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
            let choice = match &request.tool_choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Tool(name) => json!({"type": "function", "name": name}),
            };
            body.insert("tool_choice".into(), choice);
        }
        body.insert("max_output_tokens".into(), json!(request.max_tokens));
        if let Some(t) = request.temperature {
            body.insert("temperature".into(), json!(t));
        }
        // No seed: the Responses API does not accept one.
        body.insert("stream".into(), Value::Bool(true));
        body.insert("store".into(), Value::Bool(false));
        body.insert("include".into(), json!(["reasoning.encrypted_content"]));
        if let Some(key) = &request.cache_key {
            body.insert("prompt_cache_key".into(), Value::String(key.clone()));
        }
        let mut body = Value::Object(body);
        request::apply_extra(&mut body, &request.extra);
        body
    }

    fn decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(ResponsesDecoder::default())
    }
}

fn text_of(content: &[ContentPart]) -> String {
    let mut out = String::new();
    for part in content {
        let ContentPart::Text { text } = part;
        out.push_str(text);
    }
    out
}

/// The history as Responses `input` items.
fn input_items(history: &[Item]) -> Vec<Value> {
    let call_kinds: HashMap<&str, ToolCallKind> = history
        .iter()
        .filter_map(|i| match i {
            Item::ToolCall { id, kind, .. } => Some((id.as_str(), *kind)),
            _ => None,
        })
        .collect();
    let mut out = Vec::with_capacity(history.len());
    for item in history {
        match item {
            Item::Message {
                role,
                content,
                id,
                provider,
            } => {
                let text = text_of(content);
                match role {
                    Role::Assistant => {
                        let own_id = id.as_ref().filter(|_| *provider == Some(FAMILY));
                        if text.is_empty() && own_id.is_none() {
                            continue;
                        }
                        let mut m = Map::new();
                        m.insert("type".into(), json!("message"));
                        m.insert("role".into(), json!("assistant"));
                        m.insert(
                            "content".into(),
                            json!([{"type": "output_text", "text": text}]),
                        );
                        if let Some(id) = own_id {
                            m.insert("id".into(), json!(id));
                        }
                        out.push(Value::Object(m));
                    }
                    Role::User | Role::System => {
                        let role = if *role == Role::User {
                            "user"
                        } else {
                            "system"
                        };
                        out.push(json!({
                            "type": "message",
                            "role": role,
                            "content": [{"type": "input_text", "text": text}],
                        }));
                    }
                }
            }
            Item::ToolCall {
                id,
                name,
                arguments,
                kind,
                provider,
                item_id,
                ..
            } => {
                let mut m = Map::new();
                match kind {
                    ToolCallKind::Function => {
                        m.insert("type".into(), json!("function_call"));
                        m.insert("call_id".into(), json!(id));
                        m.insert("name".into(), json!(name));
                        let args = if arguments.trim().is_empty() {
                            "{}"
                        } else {
                            arguments.as_str()
                        };
                        m.insert("arguments".into(), json!(args));
                    }
                    ToolCallKind::Custom => {
                        m.insert("type".into(), json!("custom_tool_call"));
                        m.insert("call_id".into(), json!(id));
                        m.insert("name".into(), json!(name));
                        m.insert("input".into(), json!(arguments));
                    }
                }
                if let Some(item_id) = item_id.as_ref().filter(|_| *provider == Some(FAMILY)) {
                    m.insert("id".into(), json!(item_id));
                }
                out.push(Value::Object(m));
            }
            Item::ToolResult {
                call_id,
                summary,
                content,
                is_error,
            } => {
                let mut output = match content.as_deref() {
                    Some(c) if !c.is_empty() && !summary.is_empty() && c != summary => {
                        format!("{summary}\n\n{c}")
                    }
                    Some(c) if !c.is_empty() => c.to_string(),
                    _ => summary.clone(),
                };
                // The Responses API has no error flag on outputs: say it in the text.
                if *is_error {
                    output = format!("Error: {output}");
                }
                let kind = match call_kinds.get(call_id.as_str()) {
                    Some(ToolCallKind::Custom) => "custom_tool_call_output",
                    _ => "function_call_output",
                };
                out.push(json!({"type": kind, "call_id": call_id, "output": output}));
            }
            Item::Reasoning {
                provider,
                text,
                encrypted,
                id,
                ..
            } => {
                // Reasoning items are only accepted with their id, and only
                // from the family that produced them.
                let (FAMILY, Some(id)) = (*provider, id) else {
                    continue;
                };
                let summary = if text.is_empty() {
                    json!([])
                } else {
                    json!([{"type": "summary_text", "text": text}])
                };
                let mut m = Map::new();
                m.insert("type".into(), json!("reasoning"));
                m.insert("id".into(), json!(id));
                m.insert("summary".into(), summary);
                if let Some(e) = encrypted {
                    m.insert("encrypted_content".into(), json!(e));
                }
                out.push(Value::Object(m));
            }
            Item::ProviderItem { provider, value } => {
                if *provider == FAMILY {
                    out.push(value.clone());
                }
            }
        }
    }
    out
}

/// Normalises a schemars JSON Schema for OpenAI: `$ref`s into `$defs` /
/// `definitions` are inlined, and `$schema`, `$defs`, `definitions` and
/// `title` are dropped; the top level is always an object schema.
pub fn normalize_schema(schema: &Value) -> Value {
    schema::object_root(schema::inline_refs(schema), true)
}

// ---------------------------------------------------------------------------
// Stream decoding.

/// A string that borrows from the event data when it has no escapes.
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// One event payload: only the fields this decoder reads.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(default, borrow)]
    item_id: Option<Str<'a>>,
    #[serde(default, borrow)]
    delta: Option<Str<'a>>,
    #[serde(default, borrow)]
    arguments: Option<Str<'a>>,
    #[serde(default)]
    summary_index: Option<u64>,
    #[serde(default)]
    item: Option<Value>,
    #[serde(default)]
    response: Option<WireResponse>,
    #[serde(default)]
    error: Option<WireError>,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireResponse {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<WireError>,
    #[serde(default)]
    incomplete_details: Option<Incomplete>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Incomplete {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

impl WireUsage {
    fn to_usage(&self) -> Usage {
        let details = self.input_tokens_details.as_ref();
        let cached = details.and_then(|d| d.cached_tokens).unwrap_or(0);
        let written = details.and_then(|d| d.cache_write_tokens).unwrap_or(0);
        Usage {
            // `input_tokens` counts every prompt token, cached ones included.
            input_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_sub(cached)
                .saturating_sub(written),
            output_tokens: self.output_tokens.unwrap_or(0),
            cache_read_tokens: cached,
            cache_write_tokens: written,
        }
    }
}

fn code_string(code: &Option<Value>) -> Option<String> {
    match code {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    }
}

fn provider_error(err: Option<&WireError>, fallback: &str) -> ClientError {
    match err {
        Some(e) => ClientError::Provider {
            code: code_string(&e.code).or_else(|| e.kind.clone()),
            message: e.message.clone().unwrap_or_else(|| fallback.to_string()),
        },
        None => ClientError::Provider {
            code: None,
            message: fallback.to_string(),
        },
    }
}

fn str_field<'v>(item: &'v Value, key: &str) -> Option<&'v str> {
    item.get(key).and_then(Value::as_str)
}

/// Per-response decoding state.
#[derive(Debug, Default)]
struct ResponsesDecoder {
    done: bool,
    /// Whether the response contains a tool call.
    saw_call: bool,
    /// Refusal text streamed so far.
    refusal: String,
    /// Bytes of text streamed so far per block key, so that a completed item
    /// only adds what the deltas did not carry (some servers skip deltas).
    streamed: HashMap<String, usize>,
    /// The last summary part index seen per reasoning key.
    summary_part: HashMap<String, u64>,
}

impl ResponsesDecoder {
    fn key(ev: &Event<'_>) -> String {
        match (ev.output_index, &ev.item_id) {
            (Some(i), _) => i.to_string(),
            (None, Some(id)) => id.0.to_string(),
            (None, None) => String::new(),
        }
    }

    fn item_added(&mut self, key: &str, item: Value, asm: &mut Assembler) {
        match str_field(&item, "type").unwrap_or("") {
            "message" => {
                if let Some(id) = str_field(&item, "id") {
                    asm.text_id(key, id);
                }
            }
            "function_call" | "custom_tool_call" => {
                let custom = str_field(&item, "type") == Some("custom_tool_call");
                let kind = if custom {
                    ToolCallKind::Custom
                } else {
                    ToolCallKind::Function
                };
                let call_id = str_field(&item, "call_id").unwrap_or("");
                let name = str_field(&item, "name").unwrap_or("");
                asm.tool_call_start(key, call_id, name, kind);
                asm.tool_call_meta(key, None, str_field(&item, "id"));
                self.saw_call = true;
            }
            "reasoning" => {
                asm.thinking_start(key);
                asm.reasoning_opaque(
                    key,
                    None,
                    str_field(&item, "encrypted_content"),
                    str_field(&item, "id"),
                );
            }
            _ => asm.provider_item_keyed(key, item),
        }
    }

    fn item_done(&mut self, key: &str, item: Value, asm: &mut Assembler) {
        match str_field(&item, "type").unwrap_or("") {
            "message" => {
                if let Some(id) = str_field(&item, "id") {
                    asm.text_id(key, id);
                }
                let mut full = String::new();
                let parts = item.get("content").and_then(Value::as_array);
                for part in parts.into_iter().flatten() {
                    match str_field(part, "type") {
                        Some("output_text") => full.push_str(str_field(part, "text").unwrap_or("")),
                        Some("refusal") if self.refusal.is_empty() => {
                            self.refusal = str_field(part, "refusal").unwrap_or("").to_string();
                        }
                        _ => {}
                    }
                }
                self.complete_text(key, &full, asm, false);
            }
            kind @ ("function_call" | "custom_tool_call") => {
                if !asm.has(key) {
                    self.item_added(key, item.clone(), asm);
                }
                let field = if kind == "custom_tool_call" {
                    "input"
                } else {
                    "arguments"
                };
                if let Some(full) = str_field(&item, field).filter(|a| !a.is_empty()) {
                    asm.tool_call_set_args(key, full);
                }
                if let Some(name) = str_field(&item, "name") {
                    asm.tool_call_name(key, name);
                }
                asm.tool_call_meta(key, None, str_field(&item, "id"));
                asm.tool_call_done(key);
            }
            "reasoning" => {
                {
                    // The readable text of the completed item.
                    let mut texts = Vec::new();
                    for field in ["summary", "content"] {
                        let parts = item.get(field).and_then(Value::as_array);
                        for part in parts.into_iter().flatten() {
                            if let Some(t) = str_field(part, "text").filter(|t| !t.is_empty()) {
                                texts.push(t);
                            }
                        }
                        if !texts.is_empty() {
                            break;
                        }
                    }
                    self.complete_text(key, &texts.join("\n\n"), asm, true);
                }
                asm.reasoning_opaque(
                    key,
                    None,
                    str_field(&item, "encrypted_content"),
                    str_field(&item, "id"),
                );
            }
            _ => asm.provider_item_keyed(key, item),
        }
    }

    /// Adds the part of a completed item's text that its deltas did not carry.
    fn complete_text(&mut self, key: &str, full: &str, asm: &mut Assembler, thinking: bool) {
        let seen = self.streamed.get(key).copied().unwrap_or(0);
        if full.len() > seen && full.is_char_boundary(seen) {
            if thinking {
                asm.thinking_delta(key, &full[seen..]);
            } else {
                asm.text_delta(key, &full[seen..]);
            }
            self.streamed.insert(key.to_string(), full.len());
        }
    }

    fn end(&mut self, resp: Option<&WireResponse>, asm: &mut Assembler) {
        self.done = true;
        if let Some(u) = resp.and_then(|r| r.usage.as_ref()) {
            asm.set_usage(u.to_usage());
        }
        asm.finish_open_tool_calls();
        let status = resp
            .and_then(|r| r.status.as_deref())
            .unwrap_or("completed");
        let reason = resp
            .and_then(|r| r.incomplete_details.as_ref())
            .and_then(|d| d.reason.as_deref());
        let stop = if !self.refusal.is_empty() {
            StopReason::Refusal(std::mem::take(&mut self.refusal))
        } else if status == "incomplete" || reason.is_some() {
            match reason {
                Some("max_output_tokens") => StopReason::MaxTokens,
                Some("content_filter") => StopReason::ContentFilter,
                Some(other) => StopReason::Other(other.to_string()),
                None => StopReason::Other("incomplete".to_string()),
            }
        } else if self.saw_call {
            StopReason::ToolUse
        } else {
            StopReason::End
        };
        asm.set_stop(stop);
    }
}

impl StreamDecoder for ResponsesDecoder {
    fn feed(&mut self, event: &SseEvent, asm: &mut Assembler) -> Result<Flow, ClientError> {
        if self.done {
            return Ok(Flow::Done);
        }
        let data = event.data.trim();
        if data == "[DONE]" {
            // OpenRouter's end sentinel (after response.completed).
            self.end(None, asm);
            return Ok(Flow::Done);
        }
        let ev: Event<'_> = serde_json::from_str(data).map_err(|e| {
            let name = event.event.as_deref().unwrap_or("(unnamed)");
            ClientError::Decode(format!("Responses event {name}: invalid JSON payload: {e}"))
        })?;
        // The payload's `type` names the event; the SSE `event:` line repeats it.
        let kind = match &ev.kind {
            Some(k) => k.0.as_ref(),
            None => event.event.as_deref().unwrap_or(""),
        };
        match kind {
            "response.output_text.delta" => {
                let key = Self::key(&ev);
                if let Some(d) = &ev.delta {
                    asm.text_delta(&key, &d.0);
                    *self.streamed.entry(key).or_default() += d.0.len();
                }
            }
            "response.reasoning_summary_text.delta"
            | "response.reasoning_text.delta"
            | "response.reasoning.delta" => {
                let key = Self::key(&ev);
                if let Some(part) = ev.summary_index {
                    let prev = self.summary_part.insert(key.clone(), part);
                    if prev.is_some_and(|p| p != part) {
                        asm.thinking_delta(&key, "\n\n");
                        *self.streamed.entry(key.clone()).or_default() += 2;
                    }
                }
                if let Some(d) = &ev.delta {
                    asm.thinking_delta(&key, &d.0);
                    *self.streamed.entry(key).or_default() += d.0.len();
                }
            }
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                if let Some(d) = &ev.delta {
                    asm.tool_call_args(&Self::key(&ev), &d.0);
                }
            }
            "response.function_call_arguments.done" => {
                if let Some(a) = ev.arguments.as_ref().filter(|a| !a.0.is_empty()) {
                    asm.tool_call_set_args(&Self::key(&ev), &a.0);
                }
            }
            "response.refusal.delta" => {
                if let Some(d) = &ev.delta {
                    self.refusal.push_str(&d.0);
                }
            }
            "response.output_item.added" => {
                let key = Self::key(&ev);
                if let Some(item) = ev.item {
                    self.item_added(&key, item, asm);
                }
            }
            "response.output_item.done" => {
                let key = Self::key(&ev);
                if let Some(item) = ev.item {
                    self.item_done(&key, item, asm);
                }
            }
            "response.completed" | "response.incomplete" | "response.done" => {
                self.end(ev.response.as_ref(), asm);
                return Ok(Flow::Done);
            }
            "response.failed" => {
                self.done = true;
                let resp = ev.response.unwrap_or_default();
                if let Some(u) = &resp.usage {
                    asm.set_usage(u.to_usage());
                }
                return Err(provider_error(resp.error.as_ref(), "the response failed"));
            }
            "error" => {
                self.done = true;
                if ev.error.is_some() {
                    return Err(provider_error(ev.error.as_ref(), "stream error"));
                }
                return Err(ClientError::Provider {
                    code: code_string(&ev.code),
                    message: ev.message.unwrap_or_else(|| "stream error".to_string()),
                });
            }
            // response.created / in_progress / queued, content_part.*, *.done
            // repeats of streamed text, web search progress, annotations.
            _ => {}
        }
        Ok(Flow::Continue)
    }

    fn finish(&mut self, _asm: &mut Assembler) -> Result<(), ClientError> {
        if self.done {
            Ok(())
        } else {
            Err(ClientError::StreamBroken(
                "the stream ended before response.completed".to_string(),
            ))
        }
    }
}
