//! The history rules the real provider APIs enforce, checked on a request body.
//!
//! The fake provider runs [`check`] on every request (unless started lenient), so a
//! client or pod that sends a history the real API would refuse with HTTP 400 gets
//! that 400 in tests too, instead of a scripted success. The scheme is chosen by the
//! request path, as the clients build it (`crates/llm-worker/src/llm_client/*.rs`):
//!
//! | path ends with | scheme | what is checked |
//! | --- | --- | --- |
//! | `/chat/completions` | OpenAI Chat | every `tool` message answers a `tool_calls` id of the assistant message before its run of tool messages; all calls answered before any other message; call ids unique |
//! | `/responses` | OpenAI Responses | each `function_call_output` follows its `function_call`; every call has its output before the next message item; call ids unique |
//! | `/messages` | Anthropic | roles alternate, starting with `user`; the message after `tool_use` blocks begins with one `tool_result` per id, none unknown |
//! | `:streamGenerateContent`, `:generateContent` | Gemini | roles alternate `user`/`model`; a function-call turn follows a user turn; the next turn holds one `functionResponse` per call (by id when ids are sent, else by name) |
//!
//! Any other path is not checked. Messages start with the real API's wording (looked
//! up from real error bodies) and add which index broke the rule, so a failing test
//! says where the history went wrong.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use crate::Family;

/// The wire scheme a request path belongs to, if it is a generation endpoint.
pub(crate) fn family_for_path(path: &str) -> Option<Family> {
    let path = path.split('?').next().unwrap_or(path);
    if path.ends_with("/chat/completions") {
        Some(Family::OpenaiChat)
    } else if path.ends_with("/responses") {
        Some(Family::OpenaiResponses)
    } else if path.ends_with("/messages") {
        Some(Family::Anthropic)
    } else if path.ends_with(":streamGenerateContent") || path.ends_with(":generateContent") {
        Some(Family::Gemini)
    } else {
        None
    }
}

/// Why the real API would answer a request with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The scheme whose rules were broken (decides the error body's shape).
    pub family: Family,
    /// The error message: the real API's wording plus where the history broke it.
    pub message: String,
    /// OpenAI's `param` (e.g. `messages.[3].role`); unused by the other schemes.
    pub param: Option<String>,
}

impl Rejection {
    /// The 400 body in the provider's real error shape.
    pub fn body(&self) -> Value {
        match self.family {
            Family::OpenaiChat | Family::OpenaiResponses => json!({"error": {
                "message": self.message,
                "type": "invalid_request_error",
                "param": self.param,
                "code": null,
            }}),
            Family::Anthropic => json!({"type": "error", "error": {
                "type": "invalid_request_error",
                "message": self.message,
            }}),
            Family::Gemini => json!({"error": {
                "code": 400,
                "message": self.message,
                "status": "INVALID_ARGUMENT",
            }}),
        }
    }
}

/// A broken rule before the scheme is attached: message and OpenAI `param`.
type Broken = (String, Option<String>);

/// The error body each family's real API answers a request longer than the
/// model's context window with (HTTP 400), for `tokens` over `window`.
pub(crate) fn length_error(family: Family, tokens: u64, window: u64) -> String {
    match family {
        Family::Anthropic => serde_json::json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": format!("prompt is too long: {tokens} tokens > {window} maximum")}}),
        Family::OpenaiChat => serde_json::json!({"error": {"message": format!(
            "This model's maximum context length is {window} tokens. However, your messages resulted in {tokens} tokens. Please reduce the length of the messages."),
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
        Family::OpenaiResponses => serde_json::json!({"error": {"message":
            "Your input exceeds the context window of this model. Please adjust your input and try again.",
            "type": "invalid_request_error", "param": "input", "code": "context_length_exceeded"}}),
        Family::Gemini => serde_json::json!({"error": {"code": 400, "message": format!(
            "The input token count ({tokens}) exceeds the maximum number of tokens allowed ({window})."),
            "status": "INVALID_ARGUMENT"}}),
    }
    .to_string()
}

/// Checks a request body against the rules of the scheme its path belongs to;
/// paths of no known scheme pass.
pub fn check(path: &str, body: &Value) -> Result<(), Rejection> {
    let Some(family) = family_for_path(path) else {
        return Ok(());
    };
    let result = if body.is_object() {
        match family {
            Family::OpenaiChat => openai_chat(body),
            Family::OpenaiResponses => openai_responses(body),
            Family::Anthropic => anthropic(body),
            Family::Gemini => gemini(body),
        }
    } else {
        Err((
            "The request body is not a JSON object: the fake provider received something \
             the real API could not parse."
                .to_string(),
            None,
        ))
    };
    result.map_err(|(message, param)| Rejection {
        family,
        message,
        param,
    })
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn join(ids: &[&str]) -> String {
    ids.join(", ")
}

// ---------------------------------------------------------------------------
// OpenAI Chat Completions
// ---------------------------------------------------------------------------

/// The calls of the last assistant message with `tool_calls`, while its run of
/// tool messages lasts.
struct OpenCalls<'a> {
    at: usize,
    ids: Vec<&'a str>,
    answered: HashSet<&'a str>,
}

impl OpenCalls<'_> {
    fn unanswered(&self) -> Vec<&str> {
        self.ids
            .iter()
            .copied()
            .filter(|id| !self.answered.contains(id))
            .collect()
    }
}

fn chat_unanswered(open: &OpenCalls<'_>, where_: String) -> Broken {
    (
        format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding \
             to each 'tool_call_id'. The following tool_call_ids did not have response messages: \
             {} (the calls are in messages.[{}]; {where_})",
            join(&open.unanswered()),
            open.at
        ),
        Some(format!("messages.[{}].role", open.at)),
    )
}

fn openai_chat(body: &Value) -> Result<(), Broken> {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err((
            "Missing required parameter: 'messages'.".into(),
            Some("messages".into()),
        ));
    };
    let mut open: Option<OpenCalls<'_>> = None;
    let mut call_ids: HashMap<&str, usize> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let role = str_field(m, "role").unwrap_or("");
        if role == "tool" {
            let Some(id) = str_field(m, "tool_call_id") else {
                return Err((
                    format!(
                        "Missing parameter 'tool_call_id': messages with role 'tool' must have a \
                         'tool_call_id' (messages.[{i}] has none)."
                    ),
                    Some(format!("messages.[{i}].tool_call_id")),
                ));
            };
            let Some(calls) = open.as_mut() else {
                return Err((
                    format!(
                        "Invalid parameter: messages with role 'tool' must be a response to a \
                         preceeding message with 'tool_calls'. (messages.[{i}] answers '{id}', but \
                         the message before its run of tool messages is not an assistant message \
                         with 'tool_calls')"
                    ),
                    Some(format!("messages.[{i}].role")),
                ));
            };
            if !calls.ids.contains(&id) {
                return Err((
                    format!(
                        "Invalid parameter: 'tool_call_id' of '{id}' not found in 'tool_calls' of \
                         previous message. (messages.[{i}] answers it; the calls of messages.[{}] \
                         are: {})",
                        calls.at,
                        join(&calls.ids)
                    ),
                    Some(format!("messages.[{i}].tool_call_id")),
                ));
            }
            if !calls.answered.insert(id) {
                return Err((
                    format!(
                        "Invalid parameter: 'tool_call_id' of '{id}' is answered twice (again by \
                         messages.[{i}]); each call of messages.[{}] takes exactly one tool message.",
                        calls.at
                    ),
                    Some(format!("messages.[{i}].tool_call_id")),
                ));
            }
            continue;
        }
        // Any other message ends the run of tool messages: every call must be answered.
        if let Some(calls) = open.take()
            && !calls.unanswered().is_empty()
        {
            return Err(chat_unanswered(
                &calls,
                format!("messages.[{i}] is a '{role}' message before they were all answered"),
            ));
        }
        if role == "assistant"
            && let Some(tool_calls) = m.get("tool_calls").and_then(Value::as_array)
            && !tool_calls.is_empty()
        {
            let mut ids = Vec::with_capacity(tool_calls.len());
            for (k, call) in tool_calls.iter().enumerate() {
                let id = str_field(call, "id").filter(|id| !id.is_empty());
                let Some(id) = id else {
                    return Err((
                        format!(
                            "Missing required parameter: 'messages.[{i}].tool_calls.[{k}].id'."
                        ),
                        Some(format!("messages.[{i}].tool_calls.[{k}].id")),
                    ));
                };
                if let Some(first) = call_ids.insert(id, i) {
                    return Err((
                        format!(
                            "Invalid parameter: duplicate tool call id '{id}' in \
                             messages.[{i}].tool_calls.[{k}] (already used in messages.[{first}]); \
                             tool call ids must be unique."
                        ),
                        Some(format!("messages.[{i}].tool_calls.[{k}].id")),
                    ));
                }
                ids.push(id);
            }
            open = Some(OpenCalls {
                at: i,
                ids,
                answered: HashSet::new(),
            });
        }
    }
    match open {
        Some(calls) if !calls.unanswered().is_empty() => Err(chat_unanswered(
            &calls,
            format!("the messages end at messages.[{}]", messages.len() - 1),
        )),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// OpenAI Responses
// ---------------------------------------------------------------------------

fn openai_responses(body: &Value) -> Result<(), Broken> {
    let input = match body.get("input") {
        // A plain-text input (or none, with `previous_response_id`) has no calls.
        None | Some(Value::String(_)) => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err((
                "Invalid type for 'input': expected a string or an array of input items.".into(),
                Some("input".into()),
            ));
        }
    };
    let input_param = Some("input".to_string());
    let mut calls: HashMap<&str, usize> = HashMap::new();
    let mut answered: HashSet<&str> = HashSet::new();
    // Calls without output so far, in input order.
    let mut pending: Vec<&str> = Vec::new();
    for (i, item) in input.iter().enumerate() {
        let kind = match str_field(item, "type") {
            Some(t) => t,
            // An "easy" input message: `{role, content}` without `type`.
            None if item.get("role").is_some() => "message",
            None => "",
        };
        match kind {
            "function_call" | "custom_tool_call" => {
                let Some(id) = str_field(item, "call_id").filter(|id| !id.is_empty()) else {
                    return Err((
                        format!("Missing required parameter: 'input[{i}].call_id'."),
                        Some(format!("input[{i}].call_id")),
                    ));
                };
                if let Some(first) = calls.insert(id, i) {
                    return Err((
                        format!(
                            "Duplicate function call with call_id {id}: input[{i}] repeats \
                             input[{first}]; call ids must be unique."
                        ),
                        input_param,
                    ));
                }
                pending.push(id);
            }
            "function_call_output" | "custom_tool_call_output" => {
                let Some(id) = str_field(item, "call_id") else {
                    return Err((
                        format!("Missing required parameter: 'input[{i}].call_id'."),
                        Some(format!("input[{i}].call_id")),
                    ));
                };
                if !calls.contains_key(id) {
                    return Err((
                        format!(
                            "No tool call found for function call output with call_id {id}. \
                             (input[{i}] is the output; no function_call before it has this \
                             call_id)"
                        ),
                        input_param,
                    ));
                }
                if !answered.insert(id) {
                    return Err((
                        format!(
                            "Duplicate function call output for call_id {id}: input[{i}] answers \
                             a call that already has an output."
                        ),
                        input_param,
                    ));
                }
                pending.retain(|p| *p != id);
            }
            "message" => {
                if let Some(id) = pending.first() {
                    let role = str_field(item, "role").unwrap_or("?");
                    return Err((
                        format!(
                            "No tool output found for function call {id}. (the call is input[{}]; \
                             input[{i}] is a '{role}' message before its function_call_output)",
                            calls.get(id).copied().unwrap_or(0)
                        ),
                        input_param,
                    ));
                }
            }
            _ => {}
        }
    }
    match pending.first() {
        Some(id) => Err((
            format!(
                "No tool output found for function call {id}. (the call is input[{}]; the input \
                 ends at input[{}] without its function_call_output)",
                calls.get(id).copied().unwrap_or(0),
                input.len() - 1
            ),
            input_param,
        )),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Anthropic Messages
// ---------------------------------------------------------------------------

/// The blocks of a message: `content` as an array; a string has none.
fn blocks(message: &Value) -> &[Value] {
    message
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn block_type(block: &Value) -> &str {
    str_field(block, "type").unwrap_or("")
}

fn anthropic_missing(at: usize, ids: &[&str], where_: String) -> Broken {
    (
        format!(
            "messages.{at}: `tool_use` ids were found without `tool_result` blocks immediately \
             after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the \
             next message. ({where_})",
            join(ids)
        ),
        None,
    )
}

fn anthropic(body: &Value) -> Result<(), Broken> {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err(("messages: Field required".into(), None));
    };
    if messages.is_empty() {
        return Err(("messages: at least one message is required".into(), None));
    }
    let mut tool_use_ids: HashMap<&str, usize> = HashMap::new();
    // The `tool_use` ids of the previous message, when it was an assistant message.
    let mut expected: Vec<&str> = Vec::new();
    let mut prev_role: Option<&str> = None;
    for (i, m) in messages.iter().enumerate() {
        let role = str_field(m, "role").unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err((
                format!("messages.{i}.role: Input should be 'user' or 'assistant'"),
                None,
            ));
        }
        if i == 0 && role != "user" {
            return Err((
                "messages: first message must use the \"user\" role (messages.0 is an \
                 \"assistant\" message)"
                    .into(),
                None,
            ));
        }
        if prev_role == Some(role) {
            return Err((
                format!(
                    "messages: roles must alternate between \"user\" and \"assistant\", but found \
                     multiple \"{role}\" roles in a row (messages.{} and messages.{i})",
                    i - 1
                ),
                None,
            ));
        }
        let content = blocks(m);
        if role == "user" {
            let mut results: Vec<(usize, &str)> = Vec::new();
            for (j, b) in content.iter().enumerate() {
                if block_type(b) != "tool_result" {
                    continue;
                }
                let id = str_field(b, "tool_use_id").unwrap_or("");
                if !expected.contains(&id) {
                    return Err((
                        format!(
                            "messages.{i}.content.{j}: unexpected `tool_use_id` found in \
                             `tool_result` blocks: {id}. Each `tool_result` block must have a \
                             corresponding `tool_use` block in the previous message."
                        ),
                        None,
                    ));
                }
                if results.iter().any(|(_, r)| *r == id) {
                    return Err((
                        format!(
                            "messages.{i}.content.{j}: multiple `tool_result` blocks answer \
                             `tool_use` id {id}; each `tool_use` takes exactly one."
                        ),
                        None,
                    ));
                }
                results.push((j, id));
            }
            let missing: Vec<&str> = expected
                .iter()
                .copied()
                .filter(|id| !results.iter().any(|(_, r)| r == id))
                .collect();
            if !missing.is_empty() {
                return Err(anthropic_missing(
                    i - 1,
                    &missing,
                    format!("messages.{i} is the next message"),
                ));
            }
            if let Some((j, _)) = results.iter().find(|(j, _)| *j >= results.len()) {
                return Err((
                    format!(
                        "messages.{i}: Did not find {} `tool_result` block(s) at the beginning of \
                         this message. Messages following `tool_use` blocks must begin with a \
                         matching number of `tool_result` blocks. (messages.{i}.content.{j} is a \
                         `tool_result` after other blocks)",
                        results.len()
                    ),
                    None,
                ));
            }
            expected.clear();
        } else {
            expected.clear();
            for (j, b) in content.iter().enumerate() {
                if block_type(b) != "tool_use" {
                    continue;
                }
                let id = str_field(b, "id").unwrap_or("");
                if let Some(first) = tool_use_ids.insert(id, i) {
                    return Err((
                        format!(
                            "messages.{i}.content.{j}: `tool_use` ids must be unique ({id} is \
                             already used in messages.{first})"
                        ),
                        None,
                    ));
                }
                expected.push(id);
            }
        }
        prev_role = Some(role);
    }
    if !expected.is_empty() {
        let last = messages.len() - 1;
        return Err(anthropic_missing(
            last,
            &expected,
            format!("messages.{last} is the last message"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Gemini
// ---------------------------------------------------------------------------

/// One `functionCall` or `functionResponse`: its id (when sent) and name.
struct Fn<'a> {
    part: usize,
    id: Option<&'a str>,
    name: &'a str,
}

fn fn_parts<'a>(parts: &'a [Value], key: &str) -> Vec<Fn<'a>> {
    parts
        .iter()
        .enumerate()
        .filter_map(|(p, part)| {
            let f = part.get(key)?;
            Some(Fn {
                part: p,
                id: str_field(f, "id"),
                name: str_field(f, "name").unwrap_or(""),
            })
        })
        .collect()
}

const GEMINI_COUNT: &str = "Please ensure that the number of function response parts is equal to \
                            the number of function call parts of the function call turn.";

/// Checks that `responses` (in `contents[at]`) answer `calls` (in `contents[at - 1]`)
/// one to one: by id when every call has one, else by name.
fn gemini_match(at: usize, calls: &[Fn<'_>], responses: &[Fn<'_>]) -> Result<(), Broken> {
    if responses.len() != calls.len() {
        return Err((
            format!(
                "{GEMINI_COUNT} (contents[{}] has {} function call(s), contents[{at}] has {} \
                 function response(s))",
                at - 1,
                calls.len(),
                responses.len()
            ),
            None,
        ));
    }
    let by_id = calls.iter().all(|c| c.id.is_some());
    let mut open: Vec<&Fn<'_>> = calls.iter().collect();
    for r in responses {
        let found = open.iter().position(|c| {
            if by_id {
                c.id == r.id
            } else {
                c.name == r.name
            }
        });
        match found {
            Some(k) => {
                open.remove(k);
            }
            None => {
                let what = match (by_id, r.id) {
                    (true, Some(id)) => format!("id '{id}'"),
                    (true, None) => format!("no id (the calls have ids) and name '{}'", r.name),
                    (false, _) => format!("name '{}'", r.name),
                };
                return Err((
                    format!(
                        "Please ensure that every function response part answers a function call \
                         part of the function call turn: contents[{at}].parts[{}].functionResponse \
                         has {what}, which no unanswered functionCall of contents[{}] has.",
                        r.part,
                        at - 1
                    ),
                    None,
                ));
            }
        }
    }
    Ok(())
}

fn gemini(body: &Value) -> Result<(), Broken> {
    let contents = match body.get("contents").and_then(Value::as_array) {
        Some(c) if !c.is_empty() => c,
        _ => {
            return Err((
                "* GenerateContentRequest.contents: contents is not specified".into(),
                None,
            ));
        }
    };
    let mut prev: Option<(&str, Vec<Fn<'_>>)> = None;
    for (i, c) in contents.iter().enumerate() {
        // The role may be left out of a single-turn request; it is then the user's.
        let role = str_field(c, "role").unwrap_or("user");
        if role != "user" && role != "model" {
            return Err((
                format!("Please use a valid role: user, model. (contents[{i}] has role '{role}')"),
                None,
            ));
        }
        let parts = match c.get("parts").and_then(Value::as_array) {
            Some(p) if !p.is_empty() => p.as_slice(),
            _ => {
                return Err((
                    format!(
                        "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be \
                         empty."
                    ),
                    None,
                ));
            }
        };
        let calls = fn_parts(parts, "functionCall");
        let responses = fn_parts(parts, "functionResponse");
        if let Some((prev_role, _)) = &prev
            && *prev_role == role
        {
            return Err((
                format!(
                    "Please ensure that multiturn requests alternate between user and model. \
                     (contents[{}] and contents[{i}] both have role '{role}')",
                    i - 1
                ),
                None,
            ));
        }
        if role == "user" {
            match &prev {
                Some((_, prev_calls)) if !prev_calls.is_empty() => {
                    gemini_match(i, prev_calls, &responses)?;
                }
                _ if !responses.is_empty() => {
                    return Err((
                        format!(
                            "Please ensure that function response turn comes immediately after a \
                             function call turn. (contents[{i}] has function responses; the \
                             content before it has no function calls)"
                        ),
                        None,
                    ));
                }
                _ => {}
            }
        } else if !responses.is_empty() {
            return Err((
                format!(
                    "Please ensure that function response turn comes immediately after a function \
                     call turn. (contents[{i}] is a model turn with function responses)"
                ),
                None,
            ));
        } else if !calls.is_empty() && prev.is_none() {
            return Err((
                "Please ensure that function call turn comes immediately after a user turn or \
                 after a function response turn. (contents[0] is a function call turn)"
                    .into(),
                None,
            ));
        }
        let calls = if role == "model" { calls } else { Vec::new() };
        prev = Some((role, calls));
    }
    if let Some((_, calls)) = &prev
        && !calls.is_empty()
    {
        let last = contents.len() - 1;
        return Err((
            format!(
                "{GEMINI_COUNT} (contents[{last}] has {} function call(s) and is the last content; \
                 no function response turn follows)",
                calls.len()
            ),
            None,
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::fake_provider::{FakeProvider, Scripted};

    const CHAT: &str = "/v1/chat/completions";
    const RESPONSES: &str = "/v1/responses";
    const MESSAGES: &str = "/v1/messages";
    const GEMINI: &str = "/v1beta/models/gemini-x:streamGenerateContent?alt=sse";

    /// POSTs `body` as JSON and returns the status and the response body.
    async fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Vec<u8>) {
        let body = body.to_string();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .expect("the fake answers")
            .unwrap();
        let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&out[..end]).into_owned();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, out[end + 4..].to_vec())
    }

    /// A broken history, the words its error message must contain and the
    /// OpenAI `param` it must name (`None` for the other schemes).
    struct Broken {
        what: &'static str,
        body: Value,
        says: Vec<&'static str>,
        param: Option<&'static str>,
    }

    /// Sends the valid history (must get the scripted 200) and each broken one
    /// (must get 400 in `family`'s real error shape, be recorded with the
    /// reason, and leave the scripted response queued).
    async fn exercise(family: Family, path: &str, valid: Value, broken: Vec<Broken>) {
        assert_eq!(check(path, &valid), Ok(()), "{family}: valid history");
        let server = FakeProvider::start().await;
        server.push(Scripted::sse(b"data: ok\n\n".to_vec()));
        let (status, body) = post(server.addr(), path, &valid).await;
        assert_eq!(status, 200, "{family}: {}", String::from_utf8_lossy(&body));
        assert_eq!(body, b"data: ok\n\n");
        server.push(Scripted::sse(b"data: unused\n\n".to_vec()));
        for case in &broken {
            let (status, body) = post(server.addr(), path, &case.body).await;
            assert_eq!(status, 400, "{family} / {}", case.what);
            let body: Value = serde_json::from_slice(&body).unwrap();
            let message = match family {
                Family::OpenaiChat | Family::OpenaiResponses => {
                    let error = body["error"].as_object().unwrap();
                    assert_eq!(error.len(), 4, "{body}");
                    assert_eq!(error["type"], "invalid_request_error");
                    assert_eq!(error["code"], Value::Null);
                    assert_eq!(error["param"], json!(case.param), "{} / {body}", case.what);
                    error["message"].as_str().unwrap()
                }
                Family::Anthropic => {
                    assert_eq!(body["type"], "error");
                    assert_eq!(body["error"]["type"], "invalid_request_error");
                    assert_eq!(body["error"].as_object().unwrap().len(), 2);
                    body["error"]["message"].as_str().unwrap()
                }
                Family::Gemini => {
                    assert_eq!(body["error"]["code"], 400);
                    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
                    assert_eq!(body["error"].as_object().unwrap().len(), 3);
                    body["error"]["message"].as_str().unwrap()
                }
            };
            for word in &case.says {
                assert!(
                    message.contains(word),
                    "{family} / {}: {message:?} lacks {word:?}",
                    case.what
                );
            }
            let recorded = server.requests().pop().unwrap();
            assert_eq!(recorded.body, case.body, "the refused request is recorded");
            assert_eq!(recorded.rejected.as_deref(), Some(message));
        }
        assert_eq!(server.rejections().len(), broken.len());
        assert_eq!(server.pending(), 1, "refused requests take no response");
        // The lenient fake lets the same bodies through to the script.
        let lenient = FakeProvider::start_lenient().await;
        for case in &broken {
            lenient.push(Scripted::sse(b"data: ok\n\n".to_vec()));
            let (status, _) = post(lenient.addr(), path, &case.body).await;
            assert_eq!(status, 200, "{family} / {} (lenient)", case.what);
        }
        assert!(lenient.rejections().is_empty());
    }

    fn chat_call(id: &str) -> Value {
        json!({"id": id, "type": "function", "function": {"name": "Read", "arguments": "{}"}})
    }

    fn chat_calls(ids: &[&str]) -> Value {
        let calls: Vec<Value> = ids.iter().map(|id| chat_call(id)).collect();
        json!({"role": "assistant", "content": null, "tool_calls": calls})
    }

    fn tool(id: &str) -> Value {
        json!({"role": "tool", "tool_call_id": id, "content": "ok"})
    }

    fn chat(messages: Vec<Value>) -> Value {
        json!({"model": "m", "stream": true, "messages": messages})
    }

    #[tokio::test]
    async fn openai_chat_accepts_answered_parallel_calls_and_refuses_misordered_ones() {
        let system = json!({"role": "system", "content": "be brief"});
        let user = json!({"role": "user", "content": "go"});
        let valid = chat(vec![
            system.clone(),
            user.clone(),
            chat_calls(&["c1", "c2"]),
            tool("c2"),
            tool("c1"),
            chat_calls(&["c3"]),
            tool("c3"),
            json!({"role": "assistant", "content": "done"}),
            user.clone(),
        ]);
        let broken = vec![
            Broken {
                what: "a user message between the calls and their results",
                body: chat(vec![
                    system.clone(),
                    user.clone(),
                    chat_calls(&["c1", "c2"]),
                    tool("c1"),
                    user.clone(),
                    tool("c2"),
                ]),
                says: vec![
                    "must be followed by tool messages responding to each 'tool_call_id'",
                    "did not have response messages: c2",
                    "messages.[2]",
                    "messages.[4] is a 'user' message",
                ],
                param: Some("messages.[2].role"),
            },
            Broken {
                what: "a missing result",
                body: chat(vec![
                    user.clone(),
                    chat_calls(&["c1", "c2"]),
                    tool("c1"),
                    json!({"role": "assistant", "content": "done"}),
                ]),
                says: vec!["did not have response messages: c2", "messages.[3]"],
                param: Some("messages.[1].role"),
            },
            Broken {
                what: "an unknown result id",
                body: chat(vec![
                    user.clone(),
                    chat_calls(&["c1"]),
                    tool("c1"),
                    tool("c9"),
                ]),
                says: vec!["'tool_call_id' of 'c9' not found in 'tool_calls'"],
                param: Some("messages.[3].tool_call_id"),
            },
            Broken {
                what: "a result with no call before it",
                body: chat(vec![user.clone(), tool("c1")]),
                says: vec![
                    "messages with role 'tool' must be a response to a preceeding message with \
                     'tool_calls'",
                    "messages.[1]",
                ],
                param: Some("messages.[1].role"),
            },
            Broken {
                what: "a repeated call id",
                body: chat(vec![
                    user.clone(),
                    chat_calls(&["c1"]),
                    tool("c1"),
                    chat_calls(&["c1"]),
                    tool("c1"),
                ]),
                says: vec!["duplicate tool call id 'c1'", "messages.[1]"],
                param: Some("messages.[3].tool_calls.[0].id"),
            },
        ];
        exercise(Family::OpenaiChat, CHAT, valid, broken).await;
    }

    fn call(id: &str) -> Value {
        json!({"type": "function_call", "call_id": id, "name": "Read", "arguments": "{}"})
    }

    fn output(id: &str) -> Value {
        json!({"type": "function_call_output", "call_id": id, "output": "ok"})
    }

    fn responses(input: Vec<Value>) -> Value {
        json!({"model": "m", "stream": true, "store": false, "input": input})
    }

    #[tokio::test]
    async fn openai_responses_accepts_answered_parallel_calls_and_refuses_misordered_ones() {
        let user = json!({"type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": "go"}]});
        let assistant = json!({"type": "message", "role": "assistant",
                               "content": [{"type": "output_text", "text": "done"}]});
        let valid = responses(vec![
            user.clone(),
            json!({"type": "reasoning", "id": "rs_1", "summary": []}),
            call("c1"),
            call("c2"),
            output("c2"),
            output("c1"),
            call("c3"),
            output("c3"),
            assistant.clone(),
            json!({"role": "user", "content": "next"}),
        ]);
        let broken = vec![
            Broken {
                what: "a user message between the calls and their results",
                body: responses(vec![
                    user.clone(),
                    call("c1"),
                    call("c2"),
                    output("c1"),
                    user.clone(),
                    output("c2"),
                ]),
                says: vec![
                    "No tool output found for function call c2.",
                    "input[2]",
                    "input[4] is a 'user' message",
                ],
                param: Some("input"),
            },
            Broken {
                what: "a missing result",
                body: responses(vec![user.clone(), call("c1"), call("c2"), output("c1")]),
                says: vec!["No tool output found for function call c2.", "input[3]"],
                param: Some("input"),
            },
            Broken {
                what: "an unknown result id",
                body: responses(vec![user.clone(), call("c1"), output("c1"), output("c9")]),
                says: vec![
                    "No tool call found for function call output with call_id c9.",
                    "input[3]",
                ],
                param: Some("input"),
            },
            Broken {
                what: "an output before its call",
                body: responses(vec![user.clone(), output("c1"), call("c1")]),
                says: vec!["No tool call found for function call output with call_id c1."],
                param: Some("input"),
            },
        ];
        exercise(Family::OpenaiResponses, RESPONSES, valid, broken).await;
    }

    fn tool_use(id: &str) -> Value {
        json!({"type": "tool_use", "id": id, "name": "Read", "input": {}})
    }

    fn tool_result(id: &str) -> Value {
        json!({"type": "tool_result", "tool_use_id": id, "content": "ok"})
    }

    fn text(t: &str) -> Value {
        json!({"type": "text", "text": t})
    }

    fn msg(role: &str, content: Vec<Value>) -> Value {
        json!({"role": role, "content": content})
    }

    fn anthropic(messages: Vec<Value>) -> Value {
        json!({"model": "m", "max_tokens": 10, "stream": true, "messages": messages})
    }

    #[tokio::test]
    async fn anthropic_accepts_answered_parallel_calls_and_refuses_misordered_ones() {
        let go = json!({"role": "user", "content": "go"});
        let valid = anthropic(vec![
            go.clone(),
            msg(
                "assistant",
                vec![text("both"), tool_use("t1"), tool_use("t2")],
            ),
            msg(
                "user",
                vec![tool_result("t2"), tool_result("t1"), text("note")],
            ),
            msg(
                "assistant",
                vec![
                    json!({"type": "thinking", "thinking": "x", "signature": "s"}),
                    tool_use("t3"),
                ],
            ),
            msg("user", vec![tool_result("t3")]),
            json!({"role": "assistant", "content": "done"}),
            go.clone(),
        ]);
        let broken = vec![
            Broken {
                what: "a user message between the calls and their results",
                body: anthropic(vec![
                    go.clone(),
                    msg("assistant", vec![tool_use("t1"), tool_use("t2")]),
                    msg("user", vec![text("between")]),
                    msg("assistant", vec![text("ok")]),
                    msg("user", vec![tool_result("t1"), tool_result("t2")]),
                ]),
                says: vec![
                    "messages.1: `tool_use` ids were found without `tool_result` blocks \
                     immediately after: t1, t2.",
                    "messages.2 is the next message",
                ],
                param: None,
            },
            Broken {
                what: "a missing result",
                body: anthropic(vec![
                    go.clone(),
                    msg("assistant", vec![tool_use("t1"), tool_use("t2")]),
                    msg("user", vec![tool_result("t1")]),
                ]),
                says: vec![
                    "messages.1: `tool_use` ids were found without `tool_result` \
                            blocks immediately after: t2.",
                ],
                param: None,
            },
            Broken {
                what: "an unknown result id",
                body: anthropic(vec![
                    go.clone(),
                    msg("assistant", vec![tool_use("t1")]),
                    msg("user", vec![tool_result("t1"), tool_result("t9")]),
                ]),
                says: vec![
                    "messages.2.content.1: unexpected `tool_use_id` found in \
                            `tool_result` blocks: t9.",
                ],
                param: None,
            },
            Broken {
                what: "results after text",
                body: anthropic(vec![
                    go.clone(),
                    msg("assistant", vec![tool_use("t1")]),
                    msg("user", vec![text("first"), tool_result("t1")]),
                ]),
                says: vec![
                    "messages.2: Did not find 1 `tool_result` block(s) at the beginning",
                    "messages.2.content.1",
                ],
                param: None,
            },
            Broken {
                what: "two user messages in a row",
                body: anthropic(vec![go.clone(), go.clone()]),
                says: vec![
                    "roles must alternate between \"user\" and \"assistant\"",
                    "messages.0 and messages.1",
                ],
                param: None,
            },
            Broken {
                what: "an assistant message first",
                body: anthropic(vec![json!({"role": "assistant", "content": "hi"}), go]),
                says: vec!["first message must use the \"user\" role"],
                param: None,
            },
        ];
        exercise(Family::Anthropic, MESSAGES, valid, broken).await;
    }

    fn content(role: &str, parts: Vec<Value>) -> Value {
        json!({"role": role, "parts": parts})
    }

    fn fn_call(name: &str, id: Option<&str>) -> Value {
        let mut call = json!({"name": name, "args": {}});
        if let Some(id) = id {
            call["id"] = json!(id);
        }
        json!({"functionCall": call})
    }

    fn fn_response(name: &str, id: Option<&str>) -> Value {
        let mut response = json!({"name": name, "response": {"output": "ok"}});
        if let Some(id) = id {
            response["id"] = json!(id);
        }
        json!({"functionResponse": response})
    }

    fn gemini(contents: Vec<Value>) -> Value {
        json!({"contents": contents, "generationConfig": {"maxOutputTokens": 10}})
    }

    #[tokio::test]
    async fn gemini_accepts_answered_parallel_calls_and_refuses_misordered_ones() {
        let go = content("user", vec![json!({"text": "go"})]);
        let calls = content(
            "model",
            vec![
                json!({"text": "both"}),
                fn_call("Read", Some("g1")),
                fn_call("Grep", Some("g2")),
            ],
        );
        let valid = gemini(vec![
            go.clone(),
            calls.clone(),
            content(
                "user",
                vec![
                    fn_response("Grep", Some("g2")),
                    fn_response("Read", Some("g1")),
                    json!({"text": "note"}),
                ],
            ),
            // Without ids, responses are matched by name.
            content("model", vec![fn_call("Read", None), fn_call("Read", None)]),
            content(
                "user",
                vec![fn_response("Read", None), fn_response("Read", None)],
            ),
            content("model", vec![json!({"text": "done"})]),
            go.clone(),
        ]);
        let broken = vec![
            Broken {
                what: "a user message between the calls and their results",
                body: gemini(vec![
                    go.clone(),
                    calls.clone(),
                    go.clone(),
                    content(
                        "user",
                        vec![
                            fn_response("Read", Some("g1")),
                            fn_response("Grep", Some("g2")),
                        ],
                    ),
                ]),
                says: vec![
                    "Please ensure that the number of function response parts is equal to the \
                     number of function call parts of the function call turn.",
                    "contents[1] has 2 function call(s), contents[2] has 0",
                ],
                param: None,
            },
            Broken {
                what: "a missing result",
                body: gemini(vec![
                    go.clone(),
                    calls.clone(),
                    content("user", vec![fn_response("Read", Some("g1"))]),
                ]),
                says: vec![
                    "the number of function response parts is equal",
                    "contents[2] has 1",
                ],
                param: None,
            },
            Broken {
                what: "an unknown result id",
                body: gemini(vec![
                    go.clone(),
                    calls.clone(),
                    content(
                        "user",
                        vec![
                            fn_response("Read", Some("g1")),
                            fn_response("Grep", Some("g9")),
                        ],
                    ),
                ]),
                says: vec!["contents[2].parts[1].functionResponse has id 'g9'"],
                param: None,
            },
            Broken {
                what: "an unknown result name (no ids)",
                body: gemini(vec![
                    go.clone(),
                    content("model", vec![fn_call("Read", None)]),
                    content("user", vec![fn_response("Grep", None)]),
                ]),
                says: vec!["has name 'Grep'"],
                param: None,
            },
            Broken {
                what: "two user turns in a row",
                body: gemini(vec![go.clone(), go.clone()]),
                says: vec![
                    "Please ensure that multiturn requests alternate between user and model.",
                    "contents[0] and contents[1]",
                ],
                param: None,
            },
            Broken {
                what: "responses with no call turn before them",
                body: gemini(vec![
                    content("user", vec![fn_response("Read", None)]),
                    calls.clone(),
                ]),
                says: vec!["function response turn comes immediately after a function call turn"],
                param: None,
            },
        ];
        exercise(Family::Gemini, GEMINI, valid, broken).await;
    }

    #[test]
    fn paths_choose_the_scheme_and_other_paths_are_not_checked() {
        assert_eq!(family_for_path(CHAT), Some(Family::OpenaiChat));
        assert_eq!(family_for_path(RESPONSES), Some(Family::OpenaiResponses));
        assert_eq!(family_for_path(MESSAGES), Some(Family::Anthropic));
        assert_eq!(family_for_path(GEMINI), Some(Family::Gemini));
        assert_eq!(
            family_for_path("/v1/models/g:generateContent"),
            Some(Family::Gemini)
        );
        assert_eq!(family_for_path("/v1/x"), None);
        assert_eq!(check("/v1/x", &json!("not json")), Ok(()));
        // A generation endpoint without its list is refused, as by the real API.
        let missing = check(CHAT, &json!({"model": "m"})).unwrap_err();
        assert_eq!(missing.param.as_deref(), Some("messages"));
        assert!(check(MESSAGES, &json!({"messages": []})).is_err());
        assert!(check(GEMINI, &json!({"contents": []})).is_err());
        assert!(check(CHAT, &json!("text")).is_err());
        // Responses accepts plain-text input.
        assert_eq!(check(RESPONSES, &json!({"input": "hi"})), Ok(()));
    }
}
