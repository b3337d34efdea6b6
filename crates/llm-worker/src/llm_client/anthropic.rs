//! Anthropic Messages (`POST {base}/messages`, `stream: true`).
//!
//! Request translation (see [`Anthropic::body`]):
//! - the system prompt is sent as `system: [{type: text, text}]`;
//! - the history becomes alternating `user` / `assistant` messages of content
//!   blocks; consecutive items of one role share a message, so parallel tool
//!   calls form one assistant turn and all their results one user turn (results
//!   first in that turn, as the API requires);
//! - System-role messages inside the history (notifications the pod injects)
//!   become **user text**: Anthropic has no system role inside `messages`;
//! - Anthropic reasoning is echoed as `thinking {thinking, signature}` or
//!   `redacted_thinking {data}` (a thinking block without a signature cannot be
//!   verified by the API and is dropped); reasoning and provider items of other
//!   families are skipped; Anthropic provider items (server tool use and results,
//!   compaction blocks) are echoed verbatim as assistant content blocks;
//! - tool-call arguments that are not a JSON object (a cut-off call, a custom
//!   call's free text) are sent as `{"_unparsed_arguments": "<text>"}` (empty
//!   text as `{}`), so the model still sees what it sent and the tool result,
//!   which reported the failure, makes sense;
//! - a tool call left without any result (should not happen: the worker answers
//!   every call) gets a synthetic error result, and a result whose call is not in
//!   the preceding assistant turn becomes user text, so the history is always
//!   valid;
//! - when `cache_key` is set, `cache_control: {type: ephemeral}` marks the
//!   stable prefix: the system block, the last tool and the last content block of
//!   the last user message;
//! - Anthropic has no sampling seed: `seed` is not sent.
//!
//! Stream decoding (see [`AnthropicDecoder`]): blocks are keyed by their
//! `index`. Usage: `input_tokens` already excludes cache reads and writes; the
//! fields of `message_delta.usage` that are present override those of
//! `message_start` (they are cumulative), and when `usage.iterations` is present
//! (server-side compaction) the call's usage is the sum over iterations, since
//! the top-level figures then cover only the final iteration.

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

/// The `anthropic-version` header value.
pub(crate) const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The Anthropic Messages wire scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anthropic;

impl WireScheme for Anthropic {
    fn family(&self) -> ProviderFamily {
        ProviderFamily::Anthropic
    }

    fn endpoint(&self, base_url: &str, _model: &str) -> String {
        format!("{}/messages", base_url.trim_end_matches('/'))
    }

    fn headers(&self, api_key: Option<&str>) -> Vec<(String, String)> {
        let mut h = Vec::with_capacity(3);
        if let Some(key) = api_key {
            h.push(("x-api-key".to_string(), key.to_string()));
        }
        h.push((
            "anthropic-version".to_string(),
            ANTHROPIC_VERSION.to_string(),
        ));
        h.push(("content-type".to_string(), "application/json".to_string()));
        h
    }

    fn body(&self, request: &LlmRequest) -> Value {
        build_body(request)
    }

    fn decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(AnthropicDecoder::default())
    }
}

// ---------------------------------------------------------------------------
// Request body
// ---------------------------------------------------------------------------

fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

struct Msg {
    role: &'static str,
    content: Vec<Value>,
}

#[derive(Default)]
struct History {
    messages: Vec<Msg>,
    /// Tool-use ids of the last assistant turn not yet answered.
    pending: Vec<String>,
}

impl History {
    fn last_role(&self) -> Option<&'static str> {
        self.messages.last().map(|m| m.role)
    }

    fn push(&mut self, role: &'static str, block: Value) {
        if role == "assistant" && self.last_role() == Some("user") {
            self.answer_pending();
        }
        match self.messages.last_mut() {
            Some(m) if m.role == role => m.content.push(block),
            _ => self.messages.push(Msg {
                role,
                content: vec![block],
            }),
        }
    }

    /// Puts a tool result into the user turn, after earlier results and before
    /// any text (the API wants results first).
    fn push_result(&mut self, block: Value) {
        match self.messages.last_mut() {
            Some(m) if m.role == "user" => {
                let at = m
                    .content
                    .iter()
                    .position(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"))
                    .unwrap_or(m.content.len());
                m.content.insert(at, block);
            }
            _ => self.messages.push(Msg {
                role: "user",
                content: vec![block],
            }),
        }
    }

    /// Synthesises error results for calls that never got one.
    fn answer_pending(&mut self) {
        for id in std::mem::take(&mut self.pending) {
            self.push_result(json!({
                "type": "tool_result",
                "tool_use_id": id,
                "content": "(no result was recorded for this call)",
                "is_error": true,
            }));
        }
    }
}

fn text_blocks(content: &[ContentPart]) -> impl Iterator<Item = Value> + '_ {
    content.iter().filter_map(|p| {
        let ContentPart::Text { text } = p;
        // The API rejects empty and whitespace-only text blocks.
        (!text.trim().is_empty()).then(|| json!({"type": "text", "text": text}))
    })
}

fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"_unparsed_arguments": arguments}),
    }
}

fn result_text(summary: &str, content: Option<&str>) -> String {
    match content {
        Some(c) if !c.is_empty() && c != summary => {
            if summary.is_empty() {
                c.to_string()
            } else {
                format!("{summary}\n\n{c}")
            }
        }
        _ => summary.to_string(),
    }
}

fn build_messages(history: &[Item]) -> Vec<Value> {
    let mut h = History::default();
    for item in history {
        match item {
            Item::Message { role, content, .. } => {
                let role = match role {
                    Role::Assistant => "assistant",
                    Role::User | Role::System => "user",
                };
                for block in text_blocks(content) {
                    h.push(role, block);
                }
            }
            Item::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                h.push(
                    "assistant",
                    json!({"type": "tool_use", "id": id, "name": name, "input": tool_input(arguments)}),
                );
                h.pending.push(id.clone());
            }
            Item::ToolResult {
                call_id,
                summary,
                content,
                is_error,
            } => {
                let text = result_text(summary, content.as_deref());
                if let Some(pos) = h.pending.iter().position(|p| p == call_id) {
                    h.pending.remove(pos);
                    h.push_result(json!({
                        "type": "tool_result",
                        "tool_use_id": call_id,
                        "content": text,
                        "is_error": is_error,
                    }));
                } else {
                    let marker = if *is_error { " (error)" } else { "" };
                    h.push(
                        "user",
                        json!({"type": "text", "text": format!("[result of tool call {call_id}{marker}]\n{text}")}),
                    );
                }
            }
            Item::Reasoning {
                provider: ProviderFamily::Anthropic,
                text,
                signature,
                redacted,
                ..
            } => {
                if let Some(data) = redacted {
                    h.push(
                        "assistant",
                        json!({"type": "redacted_thinking", "data": data}),
                    );
                } else if let Some(sig) = signature {
                    h.push(
                        "assistant",
                        json!({"type": "thinking", "thinking": text, "signature": sig}),
                    );
                }
            }
            Item::ProviderItem {
                provider: ProviderFamily::Anthropic,
                value,
            } => h.push("assistant", value.clone()),
            Item::Reasoning { .. } | Item::ProviderItem { .. } => {}
        }
    }
    h.answer_pending();
    h.messages
        .into_iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect()
}

fn build_body(req: &LlmRequest) -> Value {
    let cache = req.cache_key.is_some();
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("max_tokens".into(), json!(req.max_tokens));
    body.insert("stream".into(), json!(true));
    if !req.system.is_empty() {
        let mut block = json!({"type": "text", "text": req.system});
        if cache {
            block["cache_control"] = ephemeral();
        }
        body.insert("system".into(), json!([block]));
    }
    let mut messages = build_messages(&req.history);
    if cache
        && let Some(last_user) = messages.iter_mut().rev().find(|m| m["role"] == "user")
        && let Some(Value::Array(content)) = last_user.get_mut("content")
        && let Some(Value::Object(block)) = content.last_mut()
    {
        block.insert("cache_control".into(), ephemeral());
    }
    body.insert("messages".into(), Value::Array(messages));
    if !req.tools.is_empty() {
        let mut tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": normalize_schema(&t.input_schema),
                })
            })
            .collect();
        if cache && let Some(Value::Object(last)) = tools.last_mut() {
            last.insert("cache_control".into(), ephemeral());
        }
        body.insert("tools".into(), Value::Array(tools));
        let choice = match &req.tool_choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
        };
        body.insert("tool_choice".into(), choice);
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    let mut body = Value::Object(body);
    request::apply_extra(&mut body, &req.extra);
    body
}

/// Normalises a schemars JSON Schema for Anthropic's `input_schema`: local
/// `$ref`s inlined (siblings of the `$ref` win), `$defs`/`definitions`,
/// `$schema` and `title` dropped, and the top level an object schema.
pub fn normalize_schema(schema: &Value) -> Value {
    schema::object_root(schema::inline_refs(schema), false)
}

// ---------------------------------------------------------------------------
// Stream decoder
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    content_block: Option<Value>,
    #[serde(default)]
    message: Option<MessageStart>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    // message_delta fields
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    stop_details: Option<StopDetails>,
}

#[derive(Deserialize)]
struct StopDetails {
    #[serde(default)]
    explanation: Option<String>,
    #[serde(default)]
    category: Option<String>,
}

#[derive(Deserialize)]
struct MessageStart {
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize, Default)]
struct RawUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    iterations: Option<Vec<RawUsage>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// What the decoder tracks per open content block.
enum Open {
    Text,
    Thinking,
    ToolUse {
        /// `input` of `content_block_start` when it was a non-empty object
        /// (servers that send whole arguments up front).
        initial: Option<String>,
        got_delta: bool,
    },
    Provider {
        value: Value,
        json: String,
    },
    Other,
}

/// Decodes one Anthropic Messages event stream.
#[derive(Default)]
pub(crate) struct AnthropicDecoder {
    open: HashMap<u64, Open>,
    usage: Usage,
    done: bool,
    started: bool,
}

/// The assembler key of a content block: its index as text (the common small
/// indexes without allocating).
fn key(index: u64) -> Cow<'static, str> {
    const KEYS: [&str; 16] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
    ];
    match KEYS.get(index as usize) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(index.to_string()),
    }
}

fn decode_err(what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Decode(format!("anthropic {what} event: {e}"))
}

impl AnthropicDecoder {
    fn apply_usage(&mut self, u: &RawUsage, asm: &mut Assembler) {
        let mut usage = self.usage;
        if let Some(iters) = u.iterations.as_ref().filter(|i| !i.is_empty()) {
            usage = Usage::default();
            // Saturating: provider-sent counts must not panic the pod (fuzzing).
            for it in iters {
                let add = |total: &mut u64, v: Option<u64>| {
                    *total = total.saturating_add(v.unwrap_or(0));
                };
                add(&mut usage.input_tokens, it.input_tokens);
                add(&mut usage.output_tokens, it.output_tokens);
                add(&mut usage.cache_read_tokens, it.cache_read_input_tokens);
                add(
                    &mut usage.cache_write_tokens,
                    it.cache_creation_input_tokens,
                );
            }
        } else {
            if let Some(v) = u.input_tokens {
                usage.input_tokens = v;
            }
            if let Some(v) = u.output_tokens {
                usage.output_tokens = v;
            }
            if let Some(v) = u.cache_read_input_tokens {
                usage.cache_read_tokens = v;
            }
            if let Some(v) = u.cache_creation_input_tokens {
                usage.cache_write_tokens = v;
            }
        }
        if usage != self.usage || !self.started {
            self.usage = usage;
            asm.set_usage(usage);
        }
    }

    fn block_start(&mut self, index: u64, block: Value, asm: &mut Assembler) {
        let key = key(index);
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        let s = |f: &str| block.get(f).and_then(Value::as_str).unwrap_or("");
        let open = match kind {
            "text" => {
                asm.text_delta(&key, s("text"));
                Open::Text
            }
            "thinking" => {
                asm.thinking_start(&key);
                asm.thinking_delta(&key, s("thinking"));
                if !s("signature").is_empty() {
                    asm.thinking_signature(&key, s("signature"));
                }
                Open::Thinking
            }
            "redacted_thinking" => {
                asm.reasoning_opaque(&key, Some(s("data")), None, None);
                Open::Other
            }
            "tool_use" => {
                asm.tool_call_start(&key, s("id"), s("name"), ToolCallKind::Function);
                let initial = match block.get("input") {
                    Some(Value::Object(o)) if !o.is_empty() => {
                        Some(Value::Object(o.clone()).to_string())
                    }
                    _ => None,
                };
                Open::ToolUse {
                    initial,
                    got_delta: false,
                }
            }
            _ => {
                asm.provider_item_keyed(&key, block.clone());
                Open::Provider {
                    value: block,
                    json: String::new(),
                }
            }
        };
        self.open.insert(index, open);
    }

    fn block_delta(
        &mut self,
        index: u64,
        delta: &Delta<'_>,
        data: &str,
        asm: &mut Assembler,
    ) -> Result<(), ClientError> {
        let key = key(index);
        let kind = delta.kind.as_deref().unwrap_or("");
        match kind {
            "text_delta" => asm.text_delta(&key, delta.text.as_deref().unwrap_or("")),
            "thinking_delta" => asm.thinking_delta(&key, delta.thinking.as_deref().unwrap_or("")),
            "signature_delta" => {
                asm.thinking_signature(&key, delta.signature.as_deref().unwrap_or(""));
            }
            "input_json_delta" => {
                let frag = delta.partial_json.as_deref().unwrap_or("");
                match self.open.get_mut(&index) {
                    Some(Open::ToolUse { got_delta, .. }) => {
                        if !frag.is_empty() {
                            *got_delta = true;
                        }
                        asm.tool_call_args(&key, frag);
                    }
                    Some(Open::Provider { json, .. }) => json.push_str(frag),
                    _ => {}
                }
            }
            // Citations annotate text; the provider-neutral message has no place
            // for them.
            "citations_delta" => {}
            _ => {
                // A delta of a server-side block (compaction_delta, ...): merge
                // its fields into the kept block — strings append, others replace.
                if let Some(Open::Provider { value, .. }) = self.open.get_mut(&index) {
                    let full: Value = serde_json::from_str(data)
                        .map_err(|e| decode_err("content_block_delta", e))?;
                    if let (Some(Value::Object(d)), Value::Object(v)) =
                        (full.get("delta"), &mut *value)
                    {
                        for (k, dv) in d {
                            if k == "type" {
                                continue;
                            }
                            match (v.get_mut(k), dv) {
                                (Some(Value::String(cur)), Value::String(add)) => cur.push_str(add),
                                _ => {
                                    v.insert(k.clone(), dv.clone());
                                }
                            }
                        }
                    }
                    let value = value.clone();
                    asm.provider_item_keyed(&key, value);
                }
            }
        }
        Ok(())
    }

    fn block_stop(&mut self, index: u64, asm: &mut Assembler) {
        let key = key(index);
        match self.open.remove(&index) {
            Some(Open::ToolUse {
                initial: Some(initial),
                got_delta: false,
            }) => {
                asm.tool_call_set_args(&key, &initial);
                asm.tool_call_done(&key);
            }
            Some(Open::ToolUse { .. }) => asm.tool_call_done(&key),
            Some(Open::Provider { mut value, json }) => {
                if !json.trim().is_empty() {
                    let input = match serde_json::from_str::<Value>(&json) {
                        Ok(v) => v,
                        Err(_) => json!({"_unparsed_arguments": json}),
                    };
                    if let Value::Object(v) = &mut value {
                        v.insert("input".into(), input);
                    }
                }
                asm.provider_item_keyed(&key, value);
            }
            _ => {}
        }
    }
}

fn map_stop(reason: &str, details: Option<&StopDetails>) -> StopReason {
    match reason {
        "end_turn" | "stop_sequence" => StopReason::End,
        "tool_use" => StopReason::ToolUse,
        "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
        "refusal" => StopReason::Refusal(
            details
                .and_then(|d| d.explanation.clone().or_else(|| d.category.clone()))
                .unwrap_or_default(),
        ),
        other => StopReason::Other(other.to_string()),
    }
}

impl StreamDecoder for AnthropicDecoder {
    fn feed(&mut self, event: &SseEvent, asm: &mut Assembler) -> Result<Flow, ClientError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(Flow::Continue);
        }
        let what = event.event.as_deref().unwrap_or("data");
        let ev: Event<'_> = serde_json::from_str(data).map_err(|e| decode_err(what, e))?;
        let kind = ev.kind.as_deref().or(event.event.as_deref()).unwrap_or("");
        let need_index = |i: Option<u64>| {
            i.ok_or_else(|| ClientError::Decode(format!("anthropic {kind} event without an index")))
        };
        match kind {
            "message_start" => {
                if let Some(u) = ev.message.as_ref().and_then(|m| m.usage.as_ref()) {
                    self.apply_usage(u, asm);
                }
                self.started = true;
            }
            "content_block_start" => {
                let index = need_index(ev.index)?;
                let block = ev.content_block.unwrap_or(Value::Null);
                self.block_start(index, block, asm);
            }
            "content_block_delta" => {
                let index = need_index(ev.index)?;
                if let Some(d) = &ev.delta {
                    self.block_delta(index, d, data, asm)?;
                }
            }
            "content_block_stop" => self.block_stop(need_index(ev.index)?, asm),
            "message_delta" => {
                if let Some(d) = &ev.delta
                    && let Some(reason) = d.stop_reason.as_deref()
                {
                    asm.set_stop(map_stop(reason, d.stop_details.as_ref()));
                }
                if let Some(u) = &ev.usage {
                    self.started = true;
                    self.apply_usage(u, asm);
                }
            }
            "message_stop" => {
                asm.finish_open_tool_calls();
                self.done = true;
                return Ok(Flow::Done);
            }
            "error" => {
                let (code, message) = match ev.error {
                    Some(e) => (e.kind, e.message.unwrap_or_default()),
                    None => (None, data.to_string()),
                };
                return Err(ClientError::Provider { code, message });
            }
            // `ping` and event types added later carry nothing for us.
            _ => {}
        }
        Ok(Flow::Continue)
    }

    fn finish(&mut self, _asm: &mut Assembler) -> Result<(), ClientError> {
        if self.done {
            Ok(())
        } else {
            Err(ClientError::StreamBroken(
                "the Anthropic stream ended before message_stop".to_string(),
            ))
        }
    }
}
