//! Gemini `streamGenerateContent?alt=sse` (Google AI Studio and Vertex AI).
//!
//! # Request
//! `POST {base}/models/{model}:streamGenerateContent?alt=sse` with `x-goog-api-key`.
//! The body holds `systemInstruction` (omitted when empty), `contents` (turns of
//! role `user` / `model`), `generationConfig`, `tools[].functionDeclarations` and
//! `toolConfig.functionCallingConfig`. History translation:
//! - user and system messages become `user` text parts, assistant messages `model`
//!   text parts; consecutive items of the same role share one turn (parallel
//!   function calls stay in one `model` turn). The function responses of a step
//!   open a `user` turn of their own; user text right after them (a notification,
//!   the next prompt) joins that turn after the responses, because Gemini wants
//!   `user` and `model` turns to alternate ("Please ensure that multiturn requests
//!   alternate between user and model"). User text *before* responses is not
//!   moved behind them: that history is invalid and should fail visibly.
//! - a tool call becomes `{"functionCall":{"name","args"}}` with its
//!   `thoughtSignature` as a sibling of `functionCall` when the call came from
//!   Gemini. Arguments that are not a JSON object are wrapped as `{"input": ...}`.
//!   A call id Gemini itself sent (`functionCall.id`) is echoed as `id`, in the
//!   call and in its response; ids we generated are not sent.
//! - a tool result becomes `{"functionResponse":{"name","response"}}`, the name
//!   looked up from the call id in the history (Gemini matches responses by
//!   name, or by id where it gave one). `response` is `{"output": text}`, or `{"error": text}` when the tool
//!   failed; text is the summary, then a blank line and the full content.
//! - a Gemini reasoning item is echoed only through its signature, as a part
//!   `{"text":"","thoughtSignature":sig}` at its place in the turn (the form Gemini
//!   itself sends for a signature that is not on a function call). Thought-summary
//!   text is never sent back; a Gemini reasoning item without a signature and any
//!   foreign reasoning item produce nothing.
//! - Gemini provider items of the form `{"part": {...}}` (parts this client does
//!   not model, e.g. `executableCode`) are echoed as that part in the `model`
//!   turn; metadata items (`groundingMetadata`, `urlContextMetadata`) are kept in
//!   the history for the record but are not part of any turn and are not sent.
//!
//! Gemini has no explicit prompt-cache key (its implicit caching is automatic),
//! so `cache_key` is ignored.
//!
//! # Stream
//! Each `data:` is a whole `GenerateContentResponse`. There is no end marker: a
//! stream that ends after a `finishReason` (or a prompt block) is complete, one
//! that ends before is [`ClientError::StreamBroken`]. `usageMetadata` is
//! cumulative and replaces earlier figures. A prompt blocked before generation
//! (`promptFeedback.blockReason`, no candidates) stops with
//! [`StopReason::ContentFilter`].

use std::borrow::Cow;
use std::collections::HashMap;

use llm_types::{ContentPart, Item, ProviderFamily, Role, ToolCallKind, Usage};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::llm_client::error::ClientError;
use crate::llm_client::request::{self, LlmRequest, ToolChoice};
use crate::llm_client::scheme::WireScheme;
use crate::llm_client::sse::SseEvent;
use crate::llm_client::stream::{Assembler, Flow, StopReason, StreamDecoder};

/// The Gemini `streamGenerateContent` wire scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gemini;

impl WireScheme for Gemini {
    fn family(&self) -> ProviderFamily {
        ProviderFamily::Gemini
    }

    fn endpoint(&self, base_url: &str, model: &str) -> String {
        format!(
            "{}/models/{model}:streamGenerateContent?alt=sse",
            base_url.trim_end_matches('/')
        )
    }

    fn headers(&self, api_key: Option<&str>) -> Vec<(String, String)> {
        let mut h = Vec::with_capacity(2);
        if let Some(key) = api_key {
            h.push(("x-goog-api-key".to_string(), key.to_string()));
        }
        h.push(("content-type".to_string(), "application/json".to_string()));
        h
    }

    fn body(&self, request: &LlmRequest) -> Value {
        let mut body = Map::new();
        if !request.system.is_empty() {
            body.insert(
                "systemInstruction".into(),
                json!({"parts": [{"text": request.system}]}),
            );
        }
        body.insert("contents".into(), Value::Array(contents(&request.history)));
        let mut gen_cfg = Map::new();
        gen_cfg.insert("maxOutputTokens".into(), json!(request.max_tokens));
        if let Some(t) = request.temperature {
            gen_cfg.insert("temperature".into(), json!(t));
        }
        if let Some(s) = request.seed {
            gen_cfg.insert("seed".into(), json!(s));
        }
        body.insert("generationConfig".into(), Value::Object(gen_cfg));
        if !request.tools.is_empty() {
            let decls: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "description": t.description,
                        "parameters": normalize_schema(&t.input_schema),
                    })
                })
                .collect();
            body.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
            let cfg = match &request.tool_choice {
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
            };
            body.insert("toolConfig".into(), json!({ "functionCallingConfig": cfg }));
        }
        let mut body = Value::Object(body);
        request::apply_extra(&mut body, &request.extra);
        body
    }

    fn decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(GeminiDecoder::default())
    }
}

// ---------------------------------------------------------------------------
// Request body
// ---------------------------------------------------------------------------

/// Which kind of turn a part belongs to: function responses start a turn of their
/// own (never appended to user text before them), user text may follow them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    User,
    Model,
    FunctionResponses,
}

struct Contents {
    out: Vec<Value>,
    last: Option<Turn>,
}

impl Contents {
    fn push(&mut self, turn: Turn, part: Value) {
        // User text after the responses shares their turn, so the roles alternate.
        let joins = self.last == Some(turn)
            || (self.last == Some(Turn::FunctionResponses) && turn == Turn::User);
        if joins
            && let Some(parts) = self
                .out
                .last_mut()
                .and_then(|c| c.get_mut("parts"))
                .and_then(Value::as_array_mut)
        {
            parts.push(part);
            self.last = Some(turn);
            return;
        }
        let role = if turn == Turn::Model { "model" } else { "user" };
        self.out.push(json!({"role": role, "parts": [part]}));
        self.last = Some(turn);
    }
}

/// The id Gemini itself gave a call (kept as the call's `item_id`), if any:
/// only such ids are sent back; ids we generated are not Gemini's to see.
fn gemini_call_id(provider: Option<ProviderFamily>, item_id: &Option<String>) -> Option<&str> {
    match provider {
        Some(ProviderFamily::Gemini) => item_id.as_deref(),
        _ => None,
    }
}

fn contents(history: &[Item]) -> Vec<Value> {
    // Each call's name, and the id Gemini gave it (echoed in the response part).
    let names: HashMap<&str, (&str, Option<&str>)> = history
        .iter()
        .filter_map(|i| match i {
            Item::ToolCall {
                id,
                name,
                provider,
                item_id,
                ..
            } => Some((
                id.as_str(),
                (name.as_str(), gemini_call_id(*provider, item_id)),
            )),
            _ => None,
        })
        .collect();
    let mut c = Contents {
        out: Vec::new(),
        last: None,
    };
    for item in history {
        match item {
            Item::Message { role, content, .. } => {
                let turn = if *role == Role::Assistant {
                    Turn::Model
                } else {
                    Turn::User
                };
                for part in content {
                    let ContentPart::Text { text } = part;
                    if !text.is_empty() {
                        c.push(turn, json!({ "text": text }));
                    }
                }
            }
            Item::ToolCall {
                name,
                arguments,
                kind,
                signature,
                provider,
                item_id,
                ..
            } => {
                let args = match (kind, serde_json::from_str::<Value>(arguments)) {
                    (ToolCallKind::Function, Ok(v @ Value::Object(_))) => v,
                    (ToolCallKind::Function, Ok(other)) => json!({ "input": other }),
                    _ => json!({ "input": arguments }),
                };
                let mut part = Map::new();
                let mut call = json!({ "name": name, "args": args });
                if let Some(id) = gemini_call_id(*provider, item_id) {
                    call["id"] = json!(id);
                }
                part.insert("functionCall".into(), call);
                if *provider == Some(ProviderFamily::Gemini)
                    && let Some(sig) = signature
                {
                    part.insert("thoughtSignature".into(), json!(sig));
                }
                c.push(Turn::Model, Value::Object(part));
            }
            Item::ToolResult {
                call_id,
                summary,
                content,
                is_error,
            } => {
                let (name, gemini_id) = names
                    .get(call_id.as_str())
                    .copied()
                    .unwrap_or((call_id.as_str(), None));
                let text = match content.as_deref() {
                    Some(body) if !body.is_empty() && !summary.is_empty() && body != summary => {
                        format!("{summary}\n\n{body}")
                    }
                    Some(body) if !body.is_empty() => body.to_string(),
                    _ => summary.clone(),
                };
                let key = if *is_error { "error" } else { "output" };
                let mut response = json!({"name": name, "response": { key: text }});
                if let Some(id) = gemini_id {
                    response["id"] = json!(id);
                }
                c.push(
                    Turn::FunctionResponses,
                    json!({ "functionResponse": response }),
                );
            }
            Item::Reasoning {
                provider: ProviderFamily::Gemini,
                signature: Some(sig),
                ..
            } => {
                c.push(Turn::Model, json!({"text": "", "thoughtSignature": sig}));
            }
            Item::Reasoning { .. } => {}
            Item::ProviderItem {
                provider: ProviderFamily::Gemini,
                value,
            } => {
                if let Some(part) = value.get("part") {
                    c.push(Turn::Model, part.clone());
                }
            }
            Item::ProviderItem { .. } => {}
        }
    }
    c.out
}

// ---------------------------------------------------------------------------
// Schema normalisation
// ---------------------------------------------------------------------------

/// Keys of a Gemini `Schema` object that are passed through as they are.
const KEEP: &[&str] = &[
    "description",
    "nullable",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "default",
    "minProperties",
    "maxProperties",
    "propertyOrdering",
];

/// Nesting depth of `$ref` expansions beyond which a reference is cut to a
/// bare object (a safety net; recursion itself is cut at its first repeat).
const MAX_REF_DEPTH: usize = 32;

/// Rewrites a schemars JSON Schema into the OpenAPI subset Gemini accepts:
/// `$ref`s inlined from `$defs`/`definitions`, `$schema`/`title`/
/// `additionalProperties` and other unknown keywords dropped, `const` as a
/// one-value `enum`, type arrays and null variants as `nullable`, `oneOf` as
/// `anyOf`, single-element `allOf` merged, and only the `format`s Gemini knows.
pub fn normalize_schema(schema: &Value) -> Value {
    let empty = Map::new();
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .or_else(|| schema.get("definitions").and_then(Value::as_object))
        .unwrap_or(&empty);
    let mut out = norm(schema, defs, &mut Vec::new());
    if out.get("type").is_none()
        && out.get("anyOf").is_none()
        && let Some(o) = out.as_object_mut()
    {
        o.insert("type".into(), json!("object"));
    }
    out
}

fn resolve<'a>(reference: &str, defs: &'a Map<String, Value>) -> Option<&'a Value> {
    let name = reference
        .strip_prefix("#/$defs/")
        .or_else(|| reference.strip_prefix("#/definitions/"))?;
    defs.get(name)
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
}

fn norm(schema: &Value, defs: &Map<String, Value>, stack: &mut Vec<String>) -> Value {
    let Some(obj) = schema.as_object() else {
        // `true` / `{}`: anything; Gemini needs some type.
        return json!({});
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        // A recursive reference (already being expanded) is cut to a bare
        // object: Gemini schemas cannot refer to themselves.
        let mut base = match resolve(r, defs) {
            Some(target) if !stack.iter().any(|s| s == r) && stack.len() < MAX_REF_DEPTH => {
                stack.push(r.to_string());
                let v = norm(target, defs, stack);
                stack.pop();
                v
            }
            _ => json!({"type": "object"}),
        };
        // Siblings of `$ref` (e.g. a description) override the target's.
        let mut rest = obj.clone();
        rest.remove("$ref");
        if let (Some(b), Value::Object(r)) = (base.as_object_mut(), norm_obj(&rest, defs, stack)) {
            for (k, v) in r {
                b.insert(k, v);
            }
        }
        return base;
    }
    norm_obj(obj, defs, stack)
}

fn norm_obj(obj: &Map<String, Value>, defs: &Map<String, Value>, stack: &mut Vec<String>) -> Value {
    let mut out = Map::new();
    let mut nullable = false;

    // Merge a single-element allOf (schemars wraps described `$ref`s in one).
    if let Some(Value::Array(all)) = obj.get("allOf") {
        for sub in all {
            if let Value::Object(m) = norm(sub, defs, stack) {
                out.extend(m);
            }
        }
    }

    match obj.get("type") {
        Some(Value::String(t)) if t == "null" => {
            nullable = true;
        }
        Some(Value::String(t)) => {
            out.insert("type".into(), json!(t));
        }
        Some(Value::Array(types)) => {
            let non_null: Vec<&Value> = types
                .iter()
                .filter(|t| t.as_str() != Some("null"))
                .collect();
            nullable |= non_null.len() < types.len();
            match non_null.as_slice() {
                [] => {}
                [one] => {
                    out.insert("type".into(), (*one).clone());
                }
                many => {
                    out.insert(
                        "anyOf".into(),
                        Value::Array(many.iter().map(|t| json!({ "type": t })).collect()),
                    );
                }
            }
        }
        _ => {}
    }

    for (k, v) in obj {
        match k.as_str() {
            "properties" => {
                if let Value::Object(props) = v {
                    let props: Map<String, Value> = props
                        .iter()
                        .map(|(name, s)| (name.clone(), norm(s, defs, stack)))
                        .collect();
                    out.insert("properties".into(), Value::Object(props));
                }
            }
            "items" => {
                out.insert("items".into(), norm(v, defs, stack));
            }
            "required" => {
                out.insert("required".into(), v.clone());
            }
            "anyOf" | "oneOf" => {
                if let Value::Array(vars) = v {
                    let mut kept = Vec::new();
                    for var in vars {
                        if is_null_schema(var) {
                            nullable = true;
                        } else {
                            kept.push(norm(var, defs, stack));
                        }
                    }
                    if kept.len() == 1 {
                        if let Some(Value::Object(m)) = kept.pop() {
                            for (mk, mv) in m {
                                out.entry(mk).or_insert(mv);
                            }
                        }
                    } else if !kept.is_empty() {
                        out.insert("anyOf".into(), Value::Array(kept));
                    }
                }
            }
            "enum" => {
                if let Value::Array(vals) = v {
                    let kept: Vec<Value> = vals.iter().filter(|x| !x.is_null()).cloned().collect();
                    nullable |= kept.len() < vals.len();
                    out.insert("enum".into(), Value::Array(kept));
                }
            }
            "const" => {
                if v.is_null() {
                    nullable = true;
                } else {
                    out.insert("enum".into(), json!([v]));
                }
            }
            "format" => {
                let ty = obj.get("type").map(|t| match t {
                    Value::Array(a) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .find(|s| *s != "null")
                        .unwrap_or("")
                        .to_string(),
                    other => other.as_str().unwrap_or("").to_string(),
                });
                let keep = matches!(
                    (ty.as_deref(), v.as_str()),
                    (Some("string"), Some("enum" | "date-time"))
                        | (Some("integer"), Some("int32" | "int64"))
                        | (Some("number"), Some("float" | "double"))
                );
                if keep {
                    out.insert("format".into(), v.clone());
                }
            }
            k if KEEP.contains(&k) => {
                out.insert(k.to_string(), v.clone());
            }
            // $schema, title, additionalProperties, $defs, definitions, $id,
            // examples, type (handled above), allOf (merged above), ...
            _ => {}
        }
    }
    if out.contains_key("enum") && !out.contains_key("type") {
        out.insert("type".into(), json!("string"));
    }
    if nullable {
        out.insert("nullable".into(), json!(true));
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------
// Stream decoder
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chunk<'a> {
    #[serde(borrow, default)]
    candidates: Vec<Candidate<'a>>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    finish_message: Option<String>,
    #[serde(default)]
    grounding_metadata: Option<Value>,
    #[serde(default)]
    url_context_metadata: Option<Value>,
    #[serde(default)]
    citation_metadata: Option<Value>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow, default)]
    parts: Vec<Part<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    thought: bool,
    #[serde(borrow, default)]
    thought_signature: Option<Cow<'a, str>>,
    #[serde(default)]
    function_call: Option<FunctionCall>,
    #[serde(default)]
    executable_code: Option<Value>,
    #[serde(default)]
    code_execution_result: Option<Value>,
    #[serde(default)]
    inline_data: Option<Value>,
    #[serde(default)]
    file_data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    partial_args: Vec<PartialArg>,
    #[serde(default)]
    will_continue: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartialArg {
    #[serde(default)]
    json_path: String,
    #[serde(default)]
    string_value: Option<String>,
    #[serde(default)]
    number_value: Option<serde_json::Number>,
    #[serde(default)]
    bool_value: Option<bool>,
    #[serde(default)]
    null_value: Option<Value>,
    #[serde(default)]
    will_continue: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
    tool_use_prompt_token_count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
    #[serde(default)]
    block_reason_message: Option<String>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: Option<String>,
}

/// The block the last part went into, so that runs of text / thought parts
/// grow one block and a change of kind starts the next.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Current {
    None,
    Text(String),
    Thought { key: String, signed: bool },
    Call,
}

/// A Vertex `streamFunctionCallArguments` call being assembled from
/// `partialArgs` chunks.
#[derive(Debug)]
struct Streaming {
    key: String,
    args: Value,
    /// The path whose string value continues in the next chunk.
    open_string: Option<String>,
}

/// Decodes Gemini `GenerateContentResponse` chunks.
#[derive(Debug)]
pub(crate) struct GeminiDecoder {
    next_block: u32,
    current: Current,
    streaming: Option<Streaming>,
    made_calls: bool,
    finished: bool,
    /// A streamed argument the decoder refused; the chunk ends in its error.
    malformed: Option<String>,
}

impl Default for GeminiDecoder {
    fn default() -> Self {
        GeminiDecoder {
            next_block: 0,
            current: Current::None,
            streaming: None,
            made_calls: false,
            finished: false,
            malformed: None,
        }
    }
}

impl GeminiDecoder {
    fn new_key(&mut self, prefix: &str) -> String {
        let k = format!("{prefix}{}", self.next_block);
        self.next_block += 1;
        k
    }

    fn text_key(&mut self) -> String {
        if let Current::Text(k) = &self.current {
            return k.clone();
        }
        let k = self.new_key("t");
        self.current = Current::Text(k.clone());
        k
    }

    fn thought_key(&mut self) -> String {
        if let Current::Thought { key, signed: false } = &self.current {
            return key.clone();
        }
        let k = self.new_key("r");
        self.current = Current::Thought {
            key: k.clone(),
            signed: false,
        };
        k
    }

    /// A signature on a text or thought part: it seals the reasoning block just
    /// before it (thought summaries), or becomes a reasoning block of its own.
    fn signature(&mut self, sig: &str, asm: &mut Assembler) {
        let key = self.thought_key();
        asm.thinking_signature(&key, sig);
        self.current = Current::Thought { key, signed: true };
    }

    fn close_streaming(&mut self, asm: &mut Assembler) {
        if let Some(s) = self.streaming.take() {
            let args = s.args.to_string();
            asm.tool_call_args(&s.key, &args);
            asm.tool_call_done(&s.key);
        }
    }

    fn function_call(&mut self, fc: FunctionCall, sig: Option<&str>, asm: &mut Assembler) {
        let has_name = fc.name.as_deref().is_some_and(|n| !n.is_empty());
        if self.streaming.is_some() && has_name {
            // A new call begins: the previous one ended without its terminator.
            self.close_streaming(asm);
        }
        if has_name {
            let name = fc.name.unwrap_or_default();
            let key = self.new_key("c");
            asm.tool_call_start(
                &key,
                fc.id.as_deref().unwrap_or(""),
                &name,
                ToolCallKind::Function,
            );
            let gemini_id = fc.id.as_deref().filter(|id| !id.is_empty());
            if sig.is_some() || gemini_id.is_some() {
                asm.tool_call_meta(&key, sig, gemini_id);
            }
            self.current = Current::Call;
            self.made_calls = true;
            if fc.will_continue || !fc.partial_args.is_empty() {
                let mut s = Streaming {
                    key,
                    args: Value::Object(Map::new()),
                    open_string: None,
                };
                if let Err(e) = apply_partial(&mut s, &fc.partial_args) {
                    self.malformed.get_or_insert(e);
                }
                self.streaming = Some(s);
                if !fc.will_continue {
                    self.close_streaming(asm);
                }
            } else {
                let args = match fc.args {
                    Some(v @ Value::Object(_)) => v.to_string(),
                    Some(Value::Null) | None => "{}".to_string(),
                    Some(other) => other.to_string(),
                };
                asm.tool_call_args(&key, &args);
                asm.tool_call_done(&key);
            }
            return;
        }
        if let Some(s) = &mut self.streaming {
            if let Some(sig) = sig {
                asm.tool_call_meta(&s.key, Some(sig), None);
            }
            if let Err(e) = apply_partial(s, &fc.partial_args) {
                self.malformed.get_or_insert(e);
            }
            if !fc.will_continue {
                // `{}` terminator, or the last partialArgs chunk without
                // willContinue.
                self.close_streaming(asm);
            }
        }
        // A stray `{}` with no open call carries nothing.
    }

    fn finish_reason(&mut self, reason: &str, message: Option<String>, asm: &mut Assembler) {
        self.close_streaming(asm);
        asm.finish_open_tool_calls();
        self.finished = true;
        let stop = match reason {
            "STOP" if self.made_calls => StopReason::ToolUse,
            "STOP" => StopReason::End,
            "MAX_TOKENS" => StopReason::MaxTokens,
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII"
            | "IMAGE_SAFETY" => StopReason::ContentFilter,
            "FINISH_REASON_UNSPECIFIED" if self.made_calls => StopReason::ToolUse,
            other => StopReason::Other(match message {
                Some(m) if !m.is_empty() => format!("{other}: {m}"),
                _ => other.to_string(),
            }),
        };
        asm.set_stop(stop);
    }
}

/// The largest array index a streamed argument path may create: the
/// provider's index sizes the array, and `$[4294967295]` must not allocate
/// hundreds of gigabytes (found by fuzzing).
const MAX_PARTIAL_INDEX: usize = 65_536;

/// Applies streamed argument pieces; an error names a path past
/// [`MAX_PARTIAL_INDEX`].
fn apply_partial(s: &mut Streaming, partials: &[PartialArg]) -> Result<(), String> {
    for p in partials {
        let value = if let Some(text) = &p.string_value {
            let appending = s.open_string.as_deref() == Some(p.json_path.as_str());
            if appending && let Some(Value::String(prev)) = lookup_mut(&mut s.args, &p.json_path) {
                prev.push_str(text);
                s.open_string = p.will_continue.then(|| p.json_path.clone());
                continue;
            }
            Value::String(text.clone())
        } else if let Some(n) = &p.number_value {
            Value::Number(n.clone())
        } else if let Some(b) = p.bool_value {
            Value::Bool(b)
        } else if p.null_value.is_some() {
            Value::Null
        } else {
            continue;
        };
        s.open_string = (p.will_continue && value.is_string()).then(|| p.json_path.clone());
        if let Some(slot) = path_slot(&mut s.args, &p.json_path)? {
            *slot = value;
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Parses a JSONPath as Gemini writes it: `$.a.b[0]['c d']`.
fn parse_path(path: &str) -> Option<Vec<Seg>> {
    let mut rest = path.strip_prefix('$')?;
    let mut segs = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            segs.push(Seg::Key(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            segs.push(Seg::Key(r[..end].to_string()));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            segs.push(Seg::Index(r[..end].trim().parse().ok()?));
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(segs)
}

/// The slot at `path`, creating objects and arrays on the way; `None` for a
/// path this parser does not read (the piece is skipped, as before), an error
/// for an index past [`MAX_PARTIAL_INDEX`].
fn path_slot<'v>(root: &'v mut Value, path: &str) -> Result<Option<&'v mut Value>, String> {
    let Some(segs) = parse_path(path) else {
        return Ok(None);
    };
    let mut cur = root;
    for seg in segs {
        cur = match seg {
            Seg::Key(k) => {
                if !cur.is_object() {
                    *cur = Value::Object(Map::new());
                }
                let Some(map) = cur.as_object_mut() else {
                    return Ok(None);
                };
                map.entry(k).or_insert(Value::Null)
            }
            Seg::Index(i) => {
                if i >= MAX_PARTIAL_INDEX {
                    return Err(format!(
                        "Gemini streamed a function argument at `{path}`, an array index past {MAX_PARTIAL_INDEX}"
                    ));
                }
                if !cur.is_array() {
                    *cur = Value::Array(Vec::new());
                }
                let Some(arr) = cur.as_array_mut() else {
                    return Ok(None);
                };
                if arr.len() <= i {
                    arr.resize(i + 1, Value::Null);
                }
                &mut arr[i]
            }
        };
    }
    Ok(Some(cur))
}

fn lookup_mut<'v>(root: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    let mut cur = root;
    for seg in parse_path(path)? {
        cur = match seg {
            Seg::Key(k) => cur.get_mut(k.as_str())?,
            Seg::Index(i) => cur.get_mut(i)?,
        };
    }
    Some(cur)
}

impl StreamDecoder for GeminiDecoder {
    fn feed(&mut self, event: &SseEvent, asm: &mut Assembler) -> Result<Flow, ClientError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(Flow::Continue);
        }
        let chunk: Chunk<'_> = serde_json::from_str(data).map_err(|e| {
            ClientError::Decode(format!(
                "Gemini stream chunk is not a GenerateContentResponse: {e}"
            ))
        })?;
        if let Some(err) = chunk.error {
            let code = err.status.or_else(|| {
                err.code.map(|c| match c {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
            });
            return Err(ClientError::Provider {
                code,
                message: err.message,
            });
        }
        for cand in chunk.candidates.into_iter().take(1) {
            if let Some(content) = cand.content {
                for part in content.parts {
                    self.part(part, asm);
                }
            }
            if let Some(problem) = self.malformed.take() {
                return Err(ClientError::Decode(problem));
            }
            if let Some(m) = cand.url_context_metadata.filter(non_empty) {
                asm.provider_item_keyed("url_context", json!({ "urlContextMetadata": m }));
            }
            if let Some(m) = cand.grounding_metadata.filter(non_empty) {
                asm.provider_item_keyed("grounding", json!({ "groundingMetadata": m }));
            }
            if let Some(m) = cand.citation_metadata.filter(non_empty) {
                asm.provider_item_keyed("citations", json!({ "citationMetadata": m }));
            }
            if let Some(reason) = cand.finish_reason {
                self.finish_reason(&reason, cand.finish_message, asm);
            }
        }
        if let Some(fb) = chunk.prompt_feedback
            && let Some(reason) = fb.block_reason
        {
            self.close_streaming(asm);
            asm.finish_open_tool_calls();
            self.finished = true;
            let mut feedback = Map::new();
            feedback.insert("blockReason".into(), json!(reason));
            if let Some(m) = fb.block_reason_message {
                feedback.insert("blockReasonMessage".into(), json!(m));
            }
            asm.provider_item(json!({ "promptFeedback": feedback }));
            asm.set_stop(StopReason::ContentFilter);
        }
        if let Some(u) = chunk.usage_metadata {
            let any = u.prompt_token_count.is_some()
                || u.candidates_token_count.is_some()
                || u.thoughts_token_count.is_some();
            if any {
                let cached = u.cached_content_token_count.unwrap_or(0);
                // Saturating: the counts are the provider's, and a bogus one
                // must not panic the pod (found by fuzzing).
                let prompt = u
                    .prompt_token_count
                    .unwrap_or(0)
                    .saturating_add(u.tool_use_prompt_token_count.unwrap_or(0));
                asm.set_usage(Usage {
                    input_tokens: prompt.saturating_sub(cached),
                    output_tokens: u
                        .candidates_token_count
                        .unwrap_or(0)
                        .saturating_add(u.thoughts_token_count.unwrap_or(0)),
                    cache_read_tokens: cached,
                    cache_write_tokens: 0,
                });
            }
        }
        Ok(Flow::Continue)
    }

    fn finish(&mut self, _asm: &mut Assembler) -> Result<(), ClientError> {
        if self.finished {
            return Ok(());
        }
        Err(ClientError::StreamBroken(
            "Gemini stream ended before a finishReason".to_string(),
        ))
    }
}

fn non_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(m) => !m.is_empty(),
        _ => true,
    }
}

impl GeminiDecoder {
    fn part(&mut self, part: Part<'_>, asm: &mut Assembler) {
        let sig = part.thought_signature.as_deref();
        if let Some(fc) = part.function_call {
            self.function_call(fc, sig, asm);
            return;
        }
        let opaque = [
            ("executableCode", part.executable_code),
            ("codeExecutionResult", part.code_execution_result),
            ("inlineData", part.inline_data),
            ("fileData", part.file_data),
        ];
        for (name, value) in opaque {
            if let Some(v) = value {
                let mut p = Map::new();
                p.insert(name.to_string(), v);
                if let Some(s) = sig {
                    p.insert("thoughtSignature".into(), json!(s));
                }
                asm.provider_item(json!({ "part": p }));
                self.current = Current::None;
                return;
            }
        }
        let text = part.text.as_deref().unwrap_or("");
        if part.thought {
            if !text.is_empty() {
                let key = self.thought_key();
                asm.thinking_delta(&key, text);
            }
            if let Some(s) = sig {
                self.signature(s, asm);
            }
            return;
        }
        if let Some(s) = sig {
            match &self.current {
                // A signature on the first answer part after thought summaries
                // seals those summaries.
                Current::Thought { key, signed: false } => {
                    let key = key.clone();
                    asm.thinking_signature(&key, s);
                    self.current = Current::Thought { key, signed: true };
                }
                _ => self.signature(s, asm),
            }
        }
        if !text.is_empty() {
            let key = self.text_key();
            asm.text_delta(&key, text);
        }
    }
}
