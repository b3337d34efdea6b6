#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Gemini `streamGenerateContent` scheme: every recorded stream, chunk-boundary
//! independence, and the request body.

use crate::common;

use llm_types::{Item, ProviderFamily, Role, ToolCallKind, Usage};
use llm_worker::llm_client::error::ClientError;
use llm_worker::llm_client::gemini::Gemini;
use llm_worker::llm_client::scheme::WireScheme;
use llm_worker::llm_client::sse::SseParser;
use llm_worker::llm_client::stream::{Assembler, Completion, Flow, StopReason, StreamEvent};
use std::sync::Arc;
use test_support::{Family, fixture, fixtures_of};

/// Feeds `bytes` in slices of `slice` bytes (0 = whole) through the SSE parser,
/// a fresh decoder and an assembler.
fn decode_events(
    bytes: &[u8],
    cuts: &[usize],
) -> (Result<Completion, ClientError>, Vec<StreamEvent>) {
    let mut parser = SseParser::new();
    let mut dec = Gemini.decoder();
    let mut asm = Assembler::new(ProviderFamily::Gemini);
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut start = 0;
    let mut bounds: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < bytes.len())
        .collect();
    bounds.push(bytes.len());
    let mut done = false;
    for end in bounds {
        parser.push(&bytes[start..end], &mut events);
        start = end;
        for ev in events.drain(..) {
            if done {
                continue;
            }
            match dec.feed(&ev, &mut asm) {
                Ok(Flow::Done) => done = true,
                Ok(Flow::Continue) => {}
                Err(e) => return (Err(e), asm.drain_events().collect()),
            }
            out.extend(asm.drain_events());
        }
    }
    parser.finish(&mut events);
    for ev in events.drain(..) {
        if done {
            continue;
        }
        if let Err(e) = dec.feed(&ev, &mut asm) {
            return (Err(e), out);
        }
    }
    if let Err(e) = dec.finish(&mut asm) {
        return (Err(e), out);
    }
    out.extend(asm.drain_events());
    (Ok(asm.completion()), out)
}

fn decode(bytes: &[u8], cuts: &[usize]) -> Result<Completion, ClientError> {
    decode_events(bytes, cuts).0
}

fn body_of(name: &str) -> Vec<u8> {
    fixture(Family::Gemini, name).unwrap().wire_body().unwrap()
}

fn run(name: &str) -> Completion {
    decode(&body_of(name), &[]).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
    }
}

fn call(item: &Item) -> (&str, &str, &str, Option<&str>) {
    match item {
        Item::ToolCall {
            id,
            name,
            arguments,
            signature,
            ..
        } => (id, name, arguments, signature.as_deref()),
        other => panic!("not a tool call: {other:?}"),
    }
}

fn reasoning(item: &Item) -> (&str, Option<&str>) {
    match item {
        Item::Reasoning {
            provider: ProviderFamily::Gemini,
            text,
            signature,
            ..
        } => (text, signature.as_deref()),
        other => panic!("not Gemini reasoning: {other:?}"),
    }
}

#[test]
fn every_fixture_decodes() {
    let all = fixtures_of(Family::Gemini).unwrap();
    assert_eq!(all.len(), 13);
    for f in all {
        decode(&f.wire_body().unwrap(), &[]).unwrap_or_else(|e| panic!("{}: {e}", f.name));
    }
}

#[test]
fn plain_text_takes_the_last_usage() {
    let c = run("gemini20flash-text.sse");
    assert_eq!(
        c.items,
        vec![Item::text(
            Role::Assistant,
            "The capital of France is Paris.\n"
        )]
    );
    assert_eq!(c.usage, usage(13, 8));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn usage_shift_is_replaced_not_summed() {
    let c = run("gemini20flash-text-after-tool-usage-shift.sse");
    assert_eq!(
        c.items,
        vec![Item::text(
            Role::Assistant,
            "The temperature in Paris is 30°C.\n"
        )]
    );
    assert_eq!(c.usage, usage(79, 12));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn usage_every_chunk_counts_thoughts_as_output() {
    let (c, events) = decode_events(&body_of("gemini25flash-usage-every-chunk.sse"), &[]);
    let c = c.unwrap();
    let want: String = (1..=30)
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(c.items, vec![Item::text(Role::Assistant, want)]);
    assert_eq!(c.usage, usage(18, 80 + 35));
    let live: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Usage(u) => Some(u.output_tokens),
            _ => None,
        })
        .collect();
    assert_eq!(live, vec![31 + 35, 79 + 35, 80 + 35]);
}

#[test]
fn empty_signature_part_after_text_becomes_reasoning() {
    for (name, text, input, output) in [
        (
            "gemini3pro-text-empty-signature-part.chunks.txt",
            "There are **3** \"r\"s in strawberry.\n\nst**r**awbe**rr**y",
            9,
            23 + 185,
        ),
        (
            "gemini3pro-reasoning-signature.chunks.txt",
            "There are **3** \"r\"s in strawberry.\n\nSt**r**awbe**rr**y",
            9,
            23 + 302,
        ),
    ] {
        let c = run(name);
        assert_eq!(c.items.len(), 2, "{name}: {:?}", c.items);
        assert_eq!(c.items[0], Item::text(Role::Assistant, text), "{name}");
        let (rtext, sig) = reasoning(&c.items[1]);
        assert_eq!(rtext, "");
        assert!(sig.unwrap().starts_with("E"), "{name}");
        assert_eq!(c.usage, usage(input, output), "{name}");
        assert_eq!(c.stop, StopReason::End);
    }
}

#[test]
fn single_tool_call_with_stop_is_tool_use() {
    let c = run("gemini20flash-single-tool-call.sse");
    assert_eq!(c.items.len(), 1);
    let (id, name, args, sig) = call(&c.items[0]);
    assert!(!id.is_empty());
    assert_eq!(name, "get_capital");
    assert_eq!(args, r#"{"country":"France"}"#);
    assert_eq!(sig, None);
    assert_eq!(c.usage, usage(52, 5));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn no_arg_tool_call_keeps_its_signature() {
    let c = run("gemini3pro-tool-call-no-args-signature.sse");
    assert_eq!(c.items.len(), 1);
    let (_, name, args, sig) = call(&c.items[0]);
    assert_eq!(name, "get_country");
    assert_eq!(args, "{}");
    assert!(sig.unwrap().starts_with("EpwICpkIAXLI2nx"));
    let Item::ToolCall { provider, .. } = &c.items[0] else {
        unreachable!()
    };
    assert_eq!(*provider, Some(ProviderFamily::Gemini));
    assert_eq!(c.usage, usage(29, 10 + 202));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn vertex_parallel_streamed_calls() {
    let c = run("vertex-gemini3flash-parallel-calls-no-args-thoughts.chunks.txt");
    assert_eq!(c.items.len(), 5, "{:?}", c.items);
    let (text, sig) = reasoning(&c.items[0]);
    assert!(text.starts_with("**Processing User Requests**"));
    assert_eq!(sig, None);
    let (_, name, args, sig) = call(&c.items[1]);
    assert_eq!((name, args), ("read_theme", "{}"));
    assert!(sig.unwrap().starts_with("AY89a18a8/"));
    let mut ids = vec![call(&c.items[1]).0];
    for (item, screen) in c.items[2..].iter().zip(["A", "B", "C"]) {
        let (id, name, args, sig) = call(item);
        assert_eq!(name, "read_screen");
        assert_eq!(args, format!(r#"{{"id":"{screen}"}}"#));
        assert_eq!(sig, None);
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "ids are unique");
    assert_eq!(c.usage, usage(249, 58 + 183));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn vertex_missing_terminal_function_call_completes_at_finish() {
    let c = run("vertex-gemini3flash-missing-terminal-function-call.chunks.txt");
    assert_eq!(c.items.len(), 1);
    let (_, name, args, sig) = call(&c.items[0]);
    assert_eq!(name, "writeItems");
    let args: serde_json::Value = serde_json::from_str(args).unwrap();
    assert_eq!(
        args,
        serde_json::json!({"operations": [
            {"action": "add", "description": "Fresh red apple", "itemid": "apple_001", "price": 0.5},
            {"action": "add", "description": "Ripe yellow banana", "itemid": "banana_001", "price": 0.3},
        ]})
    );
    assert!(sig.unwrap().starts_with("AY89a19Zk"));
    assert_eq!(c.usage, usage(54, 74 + 121));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn thought_summaries_are_sealed_by_the_answer_signature() {
    let c = run("gemini25pro-thought-summaries.sse");
    assert_eq!(c.items.len(), 2);
    let (text, sig) = reasoning(&c.items[0]);
    assert!(text.starts_with("**Clarifying User Goals**"));
    assert!(text.contains("**Crafting Safe Instructions**"));
    assert!(sig.unwrap().starts_with("CiIB0e2Kb6Syj1a961"));
    let answer = c.items[1].message_text();
    assert!(answer.starts_with("This is a great question! Safely crossing"));
    assert!(answer.ends_with("Always assume a driver might not see you."));
    assert_eq!(c.usage, usage(34, 469 + 787));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn finish_safety_is_content_filter() {
    let c = run("vertex-gemini15flash-finish-safety.sse");
    assert_eq!(c.items, vec![Item::text(Role::Assistant, "<redacted>")]);
    assert_eq!(c.usage, usage(10, 66));
    assert_eq!(c.stop, StopReason::ContentFilter);
}

#[test]
fn blocked_prompt_is_content_filter_and_kept() {
    let c = run("vertex-prompt-blocked-safety.sse");
    assert_eq!(
        c.items,
        vec![Item::ProviderItem {
            provider: ProviderFamily::Gemini,
            value: serde_json::json!({"promptFeedback": {"blockReason": "SAFETY"}}),
        }]
    );
    assert_eq!(c.usage, Usage::default());
    assert_eq!(c.stop, StopReason::ContentFilter);
}

#[test]
fn url_context_and_grounding_are_kept() {
    let c = run("gemini25flash-url-context-grounding.sse");
    assert_eq!(c.items.len(), 3);
    assert_eq!(
        c.items[0].message_text(),
        "Pydantic AI Gateway is now available!"
    );
    let Item::ProviderItem { provider, value } = &c.items[1] else {
        panic!("{:?}", c.items[1])
    };
    assert_eq!(*provider, ProviderFamily::Gemini);
    assert_eq!(
        value["urlContextMetadata"]["urlMetadata"][0]["retrievedUrl"],
        "https://ai.pydantic.dev"
    );
    let Item::ProviderItem { value, .. } = &c.items[2] else {
        panic!("{:?}", c.items[2])
    };
    assert_eq!(
        value["groundingMetadata"]["groundingChunks"][0]["web"]["title"],
        "Pydantic AI"
    );
    // toolUsePromptTokenCount (the fetched page) is billed as input.
    assert_eq!(c.usage, usage(32 + 4610, 25 + 37));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn every_chunk_boundary_gives_the_same_result() {
    for name in [
        "vertex-gemini3flash-parallel-calls-no-args-thoughts.chunks.txt",
        "gemini3pro-tool-call-no-args-signature.sse",
    ] {
        let body = body_of(name);
        let whole = decode(&body, &[]).unwrap();
        let bytes: Vec<usize> = (1..body.len()).collect();
        assert_eq!(
            decode(&body, &bytes).unwrap(),
            whole,
            "{name}: 1-byte slices"
        );
        for cut in 1..body.len() {
            assert_eq!(
                decode(&body, &[cut]).unwrap(),
                whole,
                "{name}: cut at {cut}"
            );
        }
    }
}

#[test]
fn eof_without_finish_reason_is_broken() {
    let body = body_of("gemini20flash-text.sse");
    let text = String::from_utf8(body).unwrap();
    let cut = text.rfind("data:").unwrap();
    let err = decode(&text.as_bytes()[..cut], &[]).unwrap_err();
    assert!(matches!(err, ClientError::StreamBroken(_)), "{err:?}");
    // Cut in the middle of the last event's JSON: a decode error.
    let err = decode(&text.as_bytes()[..cut + 40], &[]).unwrap_err();
    assert!(matches!(err, ClientError::Decode(_)), "{err:?}");
    assert!(matches!(
        decode(b"", &[]).unwrap_err(),
        ClientError::StreamBroken(_)
    ));
}

#[test]
fn in_band_error_is_a_provider_error() {
    let body = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}],\"role\":\"model\"}}]}\r\n\r\ndata: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n";
    assert_eq!(
        decode(body, &[]).unwrap_err(),
        ClientError::Provider {
            code: Some("UNAVAILABLE".into()),
            message: "The model is overloaded.".into()
        }
    );
}

#[test]
fn other_finish_reasons() {
    for (reason, stop) in [
        ("MAX_TOKENS", StopReason::MaxTokens),
        ("RECITATION", StopReason::ContentFilter),
        ("PROHIBITED_CONTENT", StopReason::ContentFilter),
        (
            "MALFORMED_FUNCTION_CALL",
            StopReason::Other("MALFORMED_FUNCTION_CALL".into()),
        ),
    ] {
        let body = format!(
            "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"x\"}}]}},\"finishReason\":\"{reason}\"}}]}}\n\n"
        );
        assert_eq!(decode(body.as_bytes(), &[]).unwrap().stop, stop, "{reason}");
    }
}

#[test]
fn endpoint_and_headers() {
    assert_eq!(
        Gemini.endpoint(
            "https://generativelanguage.googleapis.com/v1beta",
            "gemini-2.5-pro"
        ),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    );
    assert_eq!(
        Gemini.headers(Some("k")),
        vec![
            ("x-goog-api-key".to_string(), "k".to_string()),
            ("content-type".to_string(), "application/json".to_string())
        ]
    );
    assert_eq!(Gemini.headers(None).len(), 1);
}

fn gemini_call(id: &str, name: &str, args: &str, sig: Option<&str>) -> Item {
    Item::ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.into(),
        kind: ToolCallKind::Function,
        signature: sig.map(str::to_string),
        provider: sig.map(|_| ProviderFamily::Gemini),
        item_id: None,
    }
}

#[tokio::test]
async fn request_body_shape() {
    use llm_worker::llm_client::request::{LlmRequest, ToolChoice, ToolSpec};
    use serde_json::json;
    let history = vec![
        Item::text(Role::User, "Read a and b"),
        Item::Reasoning {
            provider: ProviderFamily::Gemini,
            text: "summary not echoed".into(),
            signature: Some("SIG_R".into()),
            redacted: None,
            encrypted: None,
            id: None,
        },
        Item::text(Role::Assistant, "Reading both."),
        gemini_call("c1", "Read", r#"{"path":"a"}"#, Some("SIG_C")),
        gemini_call("c2", "Read", r#"{"path":"b"}"#, None),
        Item::tool_result("c1", "1 line", Some("alpha".into()), false),
        Item::tool_result("c2", "no such file", None, true),
        Item::text(Role::System, "Note: b is missing."),
        Item::text(Role::User, "Thanks"),
    ];
    let mut req = LlmRequest::new("gemini-3-pro", history);
    req.system = "Be brief.".into();
    req.max_tokens = 1000;
    req.temperature = Some(0.5);
    req.seed = Some(7);
    req.cache_key = Some("ignored".into());
    req.tool_choice = ToolChoice::Tool("Read".into());
    req.tools = vec![ToolSpec {
        name: "Read".into(),
        description: "Read a file".into(),
        input_schema: json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "ReadArgs",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "path": {"type": "string", "description": "File path", "format": "path"},
                "limit": {"type": ["integer", "null"], "format": "uint32", "minimum": 0},
                "mode": {"$ref": "#/$defs/Mode"},
                "kind": {"const": "file"},
                "since": {"type": "string", "format": "date-time"},
                "opt": {"anyOf": [{"$ref": "#/$defs/Mode"}, {"type": "null"}]},
            },
            "required": ["path"],
            "$defs": {
                "Mode": {"title": "Mode", "type": "string", "enum": ["text", "bytes"]}
            }
        }),
    }];
    req.extra.insert("safetySettings".into(), json!([]));
    req.extra
        .insert("generationConfig".into(), json!({"maxOutputTokens": 5}));
    let body = common::recorded_request(Arc::new(Gemini), &req).await.body;
    assert_eq!(
        body,
        json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Read a and b"}]},
                {"role": "model", "parts": [
                    {"text": "", "thoughtSignature": "SIG_R"},
                    {"text": "Reading both."},
                    {"functionCall": {"name": "Read", "args": {"path": "a"}}, "thoughtSignature": "SIG_C"},
                    {"functionCall": {"name": "Read", "args": {"path": "b"}}},
                ]},
                // Text after the responses joins their turn: roles must alternate.
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "Read", "response": {"output": "1 line\n\nalpha"}}},
                    {"functionResponse": {"name": "Read", "response": {"error": "no such file"}}},
                    {"text": "Note: b is missing."},
                    {"text": "Thanks"},
                ]},
            ],
            "generationConfig": {"maxOutputTokens": 5},
            "tools": [{"functionDeclarations": [{
                "name": "Read",
                "description": "Read a file",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "File path"},
                        "limit": {"type": "integer", "nullable": true, "minimum": 0},
                        "mode": {"type": "string", "enum": ["text", "bytes"]},
                        "kind": {"type": "string", "enum": ["file"]},
                        "since": {"type": "string", "format": "date-time"},
                        "opt": {"type": "string", "enum": ["text", "bytes"], "nullable": true},
                    },
                    "required": ["path"],
                },
            }]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["Read"]}},
            "safetySettings": [],
        })
    );
    // Without extra, the sampling settings are all there.
    req.extra.clear();
    assert_eq!(
        Gemini.body(&req)["generationConfig"],
        json!({"maxOutputTokens": 1000, "temperature": 0.5, "seed": 7})
    );
    req.tool_choice = ToolChoice::Auto;
    assert_eq!(
        Gemini.body(&req)["toolConfig"]["functionCallingConfig"],
        json!({"mode": "AUTO"})
    );
    req.tool_choice = ToolChoice::None;
    assert_eq!(
        Gemini.body(&req)["toolConfig"]["functionCallingConfig"],
        json!({"mode": "NONE"})
    );
    req.tool_choice = ToolChoice::Required;
    assert_eq!(
        Gemini.body(&req)["toolConfig"]["functionCallingConfig"],
        json!({"mode": "ANY"})
    );
}

#[test]
fn foreign_reasoning_and_provider_items_are_skipped() {
    use llm_worker::llm_client::request::LlmRequest;
    use serde_json::json;
    let history = vec![
        Item::text(Role::User, "hi"),
        Item::Reasoning {
            provider: ProviderFamily::Anthropic,
            text: "hmm".into(),
            signature: Some("ANTHROPIC".into()),
            redacted: None,
            encrypted: None,
            id: None,
        },
        Item::Reasoning {
            provider: ProviderFamily::Gemini,
            text: "unsigned summary".into(),
            signature: None,
            redacted: None,
            encrypted: None,
            id: None,
        },
        Item::ProviderItem {
            provider: ProviderFamily::OpenaiResponses,
            value: json!({"type": "web_search_call"}),
        },
        Item::ProviderItem {
            provider: ProviderFamily::Gemini,
            value: json!({"groundingMetadata": {"groundingChunks": []}}),
        },
        Item::ProviderItem {
            provider: ProviderFamily::Gemini,
            value: json!({"part": {"executableCode": {"language": "PYTHON", "code": "1+1"}}}),
        },
        Item::ToolCall {
            id: "x".into(),
            name: "Run".into(),
            arguments: "{}".into(),
            kind: ToolCallKind::Function,
            signature: Some("OTHER".into()),
            provider: Some(ProviderFamily::OpenaiResponses),
            item_id: Some("fc_1".into()),
        },
        Item::tool_result("x", "done", None, false),
    ];
    let body = Gemini.body(&LlmRequest::new("m", history));
    assert_eq!(
        body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [
                {"executableCode": {"language": "PYTHON", "code": "1+1"}},
                {"functionCall": {"name": "Run", "args": {}}},
            ]},
            {"role": "user", "parts": [{"functionResponse": {"name": "Run", "response": {"output": "done"}}}]},
        ])
    );
    assert!(body.get("systemInstruction").is_none());
    assert!(body.get("tools").is_none());
    assert!(body.get("toolConfig").is_none());
}

#[test]
fn text_after_function_responses_joins_their_turn_but_text_before_them_does_not() {
    use llm_worker::llm_client::request::LlmRequest;
    use serde_json::json;
    let call = || gemini_call("c1", "Read", r#"{"path":"a"}"#, None);
    let response = json!({"functionResponse": {"name": "Read", "response": {"output": "ok"}}});
    // A notification after the results: one user turn, responses first.
    let history = vec![
        Item::text(Role::User, "go"),
        call(),
        Item::tool_result("c1", "ok", None, false),
        Item::text(Role::System, "note"),
    ];
    let body = Gemini.body(&LlmRequest::new("m", history));
    let roles: Vec<&str> = body["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "model", "user"]);
    assert_eq!(
        body["contents"][2]["parts"],
        json!([response, {"text": "note"}])
    );
    // Text between the call and its result is an invalid history: it is not
    // moved behind the response, so the provider (or the strict fake) says so.
    let history = vec![
        Item::text(Role::User, "go"),
        call(),
        Item::text(Role::User, "between"),
        Item::tool_result("c1", "ok", None, false),
    ];
    let body = Gemini.body(&LlmRequest::new("m", history));
    assert_eq!(body["contents"][2]["parts"], json!([{"text": "between"}]));
    assert_eq!(body["contents"][3]["parts"], json!([response]));
}

#[test]
fn decoded_history_round_trips_into_a_request() {
    use llm_worker::llm_client::request::LlmRequest;
    let mut history = vec![Item::text(Role::User, "go")];
    history.extend(run("vertex-gemini3flash-parallel-calls-no-args-thoughts.chunks.txt").items);
    let body = Gemini.body(&LlmRequest::new("m", history));
    let model = &body["contents"][1];
    assert_eq!(model["role"], "model");
    let parts = model["parts"].as_array().unwrap();
    // The unsigned thought summary is not echoed; four calls, the first signed.
    assert_eq!(parts.len(), 4);
    assert!(
        parts[0]["thoughtSignature"]
            .as_str()
            .unwrap()
            .starts_with("AY89a18a8/")
    );
    assert_eq!(parts[3]["functionCall"]["args"]["id"], "C");
}

#[test]
fn recursive_refs_are_cut() {
    use llm_worker::llm_client::gemini::normalize_schema;
    use serde_json::json;
    let schema = json!({
        "$ref": "#/$defs/Node",
        "$defs": {"Node": {"type": "object", "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
        }}}
    });
    assert_eq!(
        normalize_schema(&schema),
        json!({"type": "object", "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"type": "object"}},
        }})
    );
}
