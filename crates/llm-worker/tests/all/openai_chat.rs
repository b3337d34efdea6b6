#![allow(clippy::unwrap_used, clippy::expect_used)]

//! OpenAI Chat Completions: every recorded stream decoded, chunk-boundary
//! independence, and the exact request body.

use crate::common;

use llm_types::{Item, ProviderFamily, Role, Usage};
use llm_worker::llm_client::error::ClientError;
use llm_worker::llm_client::openai_chat::OpenaiChat;
use llm_worker::llm_client::request::{LlmRequest, ToolChoice, ToolSpec};
use llm_worker::llm_client::scheme::WireScheme;
use llm_worker::llm_client::sse::{SseEvent, SseParser};
use llm_worker::llm_client::stream::{Assembler, Completion, Flow, StopReason, StreamEvent};
use serde_json::json;
use std::sync::Arc;
use test_support::{Family, fixture, fixtures_of};

#[path = "../../benches/openai_chat_stream.rs"]
mod bench_src;

/// Feeds `bytes` in slices of `slice` bytes (0 = all at once) through the SSE
/// parser, the decoder and an assembler.
fn decode_with_events(
    bytes: &[u8],
    slice: usize,
) -> (Result<Completion, ClientError>, Vec<StreamEvent>) {
    let mut parser = SseParser::new();
    let mut dec = OpenaiChat.decoder();
    let mut asm = Assembler::new(ProviderFamily::OpenaiChat);
    let mut events: Vec<SseEvent> = Vec::new();
    let mut out_events = Vec::new();
    let step = if slice == 0 {
        bytes.len().max(1)
    } else {
        slice
    };
    let mut done = false;
    for piece in bytes.chunks(step) {
        parser.push(piece, &mut events);
        for ev in events.drain(..) {
            if done {
                continue;
            }
            match dec.feed(&ev, &mut asm) {
                Ok(Flow::Done) => done = true,
                Ok(Flow::Continue) => {}
                Err(e) => return (Err(e), out_events),
            }
            out_events.extend(asm.drain_events());
        }
    }
    parser.finish(&mut events);
    for ev in events.drain(..) {
        if done {
            continue;
        }
        match dec.feed(&ev, &mut asm) {
            Ok(Flow::Done) => done = true,
            Ok(Flow::Continue) => {}
            Err(e) => return (Err(e), out_events),
        }
    }
    if !done && let Err(e) = dec.finish(&mut asm) {
        return (Err(e), out_events);
    }
    out_events.extend(asm.drain_events());
    (Ok(asm.completion()), out_events)
}

fn decode(bytes: &[u8], slice: usize) -> Result<Completion, ClientError> {
    decode_with_events(bytes, slice).0
}

fn body_of(name: &str) -> Vec<u8> {
    fixture(Family::OpenaiChat, name)
        .unwrap()
        .wire_body()
        .unwrap()
}

fn run(name: &str) -> Completion {
    decode(&body_of(name), 0).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn usage(input: u64, output: u64, cache_read: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_write_tokens: 0,
    }
}

fn reasoning_text(c: &Completion) -> Option<(String, Option<String>)> {
    c.items.iter().find_map(|i| match i {
        Item::Reasoning {
            provider,
            text,
            signature,
            ..
        } => {
            assert_eq!(*provider, ProviderFamily::OpenaiChat);
            Some((text.clone(), signature.clone()))
        }
        _ => None,
    })
}

#[test]
fn every_fixture_of_the_family_is_covered() {
    let names: Vec<String> = fixtures_of(Family::OpenaiChat)
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    let covered = [
        "openai-gpt4o-text.sse",
        "openai-gpt4o-mini-single-tool-call.sse",
        "openai-gpt4o-parallel-tool-calls-empty-args.sse",
        "openai-gpt4o-refusal.sse",
        "openai-gpt4o-finish-length.sse",
        "openai-gpt4o-n3-multiple-choices.sse",
        "openrouter-minimax-error-mid-stream.sse",
        "groq-gpt-oss-event-error-tool-use-failed.sse",
        "deepseek-reasoner-reasoning-then-tool-call-cached.chunks.txt",
        "azure-gpt5nano-empty-first-chunk.chunks.txt",
        "openrouter-claude-reasoning-details.sse",
        "xai-grok3mini-reasoning-tool-call-cached.chunks.txt",
        "vllm-crusoe-llama-text.sse",
        "gateway-anthropic-fallback-tool-index-1.sse",
        "mistral-tool-call-no-index.chunks.txt",
        "mistral-glm-incremental-tool-call-cached.chunks.txt",
        "alibaba-qwen3max-tool-call-empty-id-continuation.chunks.txt",
        "snowflake-cortex-claude-no-finish-reason.sse",
        "mistral-magistral-thinking-content-array.chunks.txt",
    ];
    for n in &names {
        assert!(covered.contains(&n.as_str()), "fixture {n} has no test");
    }
    assert_eq!(names.len(), covered.len());
}

#[test]
fn gpt4o_text() {
    let c = run("openai-gpt4o-text.sse");
    assert_eq!(
        c.items,
        vec![Item::text(
            Role::Assistant,
            "I'm unable to provide real-time weather updates. To get the current weather in San \
             Francisco, I recommend checking a reliable weather website or a weather app."
        )]
    );
    assert_eq!(c.usage, usage(14, 30, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn gpt4o_single_tool_call() {
    let (c, events) = decode_with_events(&body_of("openai-gpt4o-mini-single-tool-call.sse"), 0);
    let c = c.unwrap();
    assert_eq!(
        c.items,
        vec![Item::tool_call(
            "call_ZR5UUuTt3pf61kjwAJIYdVMj",
            "get_capital",
            r#"{"country":"UK"}"#
        )]
    );
    assert_eq!(c.usage, usage(53, 15, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
    let done: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::ToolCallDone { .. }))
        .collect();
    assert_eq!(
        done,
        vec![&StreamEvent::ToolCallDone {
            id: "call_ZR5UUuTt3pf61kjwAJIYdVMj".into(),
            name: "get_capital".into(),
            arguments: r#"{"country":"UK"}"#.into()
        }]
    );
}

#[test]
fn gpt4o_parallel_tool_calls_with_empty_args() {
    let c = run("openai-gpt4o-parallel-tool-calls-empty-args.sse");
    assert_eq!(
        c.items,
        vec![
            Item::tool_call("call_q2UyBRP7eXNTzAoR8lEhjc9Z", "get_country", "{}"),
            Item::tool_call("call_b51ijcpFkDiTQG1bQzsrmtW5", "get_product_name", "{}"),
        ]
    );
    assert_eq!(c.usage, usage(364, 40, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn gpt4o_refusal() {
    let c = run("openai-gpt4o-refusal.sse");
    assert!(c.items.is_empty(), "{:?}", c.items);
    assert_eq!(
        c.stop,
        StopReason::Refusal("I'm sorry, I can't assist with that request.".into())
    );
    assert_eq!(c.usage, usage(79, 11, 0));
}

#[test]
fn gpt4o_finish_length() {
    let c = run("openai-gpt4o-finish-length.sse");
    assert_eq!(c.items, vec![Item::text(Role::Assistant, "{\"")]);
    assert_eq!(c.stop, StopReason::MaxTokens);
    assert_eq!(c.usage, usage(79, 1, 0));
}

#[test]
fn gpt4o_n3_keeps_only_the_first_choice() {
    let c = run("openai-gpt4o-n3-multiple-choices.sse");
    assert_eq!(
        c.items,
        vec![Item::text(
            Role::Assistant,
            r#"{"city":"San Francisco","temperature":65,"units":"f"}"#
        )]
    );
    assert_eq!(c.stop, StopReason::End);
    assert_eq!(c.usage, usage(79, 42, 0));
}

#[test]
fn openrouter_error_mid_stream_is_a_provider_error() {
    let err = run_err("openrouter-minimax-error-mid-stream.sse");
    assert_eq!(
        err,
        ClientError::Provider {
            code: Some("400".into()),
            message: "Token limit reached".into()
        }
    );
}

fn run_err(name: &str) -> ClientError {
    match decode(&body_of(name), 0) {
        Err(e) => e,
        Ok(c) => panic!("{name}: expected an error, got {c:?}"),
    }
}

#[test]
fn groq_event_error_is_a_provider_error() {
    let err = run_err("groq-gpt-oss-event-error-tool-use-failed.sse");
    let ClientError::Provider { code, message } = err else {
        panic!("{err:?}")
    };
    assert_eq!(code.as_deref(), Some("tool_use_failed"));
    assert!(
        message.starts_with("Tool call validation failed"),
        "{message}"
    );
}

#[test]
fn deepseek_reasoning_then_tool_call_with_cache_hits() {
    let c = run("deepseek-reasoner-reasoning-then-tool-call-cached.chunks.txt");
    assert_eq!(c.items.len(), 2, "{:?}", c.items);
    let (text, sig) = reasoning_text(&c).unwrap();
    assert!(text.starts_with("The user is asking for the weather in San Francisco."));
    assert!(sig.is_none());
    assert_eq!(
        c.items[1],
        Item::tool_call(
            "call_00_ioIn7yN9p1ZOMNpDLwd4MgAF",
            "weather",
            r#"{"location": "San Francisco"}"#
        )
    );
    assert_eq!(c.usage, usage(19, 83, 320));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn azure_empty_first_chunk() {
    let c = run("azure-gpt5nano-empty-first-chunk.chunks.txt");
    assert_eq!(
        c.items,
        vec![Item::text(Role::Assistant, "Capital of Denmark.")]
    );
    // completion_tokens already include the 64 reasoning tokens (15 + 78 = 93).
    assert_eq!(c.usage, usage(15, 78, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn openrouter_reasoning_details_keep_the_signature() {
    let c = run("openrouter-claude-reasoning-details.sse");
    assert_eq!(c.items.len(), 2, "{:?}", c.items);
    let (text, sig) = reasoning_text(&c).unwrap();
    assert_eq!(text, "This is a simple arithmetic question. 2+2 equals 4.");
    assert!(sig.unwrap().starts_with("Et0BCkgIChACGAIqQA2s7h7t"));
    assert_eq!(c.items[1], Item::text(Role::Assistant, "2 + 2 = 4"));
    assert_eq!(c.usage, usage(43, 36, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn xai_reasoning_then_whole_tool_call_in_one_chunk() {
    let c = run("xai-grok3mini-reasoning-tool-call-cached.chunks.txt");
    let (text, _) = reasoning_text(&c).unwrap();
    assert!(text.starts_with("First, the user is"), "{text}");
    assert_eq!(
        c.items.last().unwrap(),
        &Item::tool_call(
            "call_55117580",
            "weather",
            r#"{"location":"San Francisco"}"#
        )
    );
    // xAI leaves the 196 reasoning tokens out of completion_tokens (total 513).
    assert_eq!(c.usage, usage(1, 26 + 196, 290));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn vllm_text() {
    let c = run("vllm-crusoe-llama-text.sse");
    assert_eq!(c.items, vec![Item::text(Role::Assistant, "1, 2, 3, 4, 5")]);
    assert_eq!(c.usage, usage(46, 14, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn gateway_tool_call_with_first_index_one() {
    let c = run("gateway-anthropic-fallback-tool-index-1.sse");
    assert_eq!(
        c.items,
        vec![
            Item::text(Role::Assistant, "Reading it."),
            Item::tool_call("toolu_sanitized", "read_file", r#"{"path": "a.txt"}"#),
        ]
    );
    assert_eq!(c.usage, Usage::default());
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn mistral_tool_call_without_index() {
    let c = run("mistral-tool-call-no-index.chunks.txt");
    assert_eq!(
        c.items,
        vec![Item::tool_call(
            "gSIMJiOkT",
            "weather",
            r#"{"location": "San Francisco"}"#
        )]
    );
    assert_eq!(c.usage, usage(124, 22, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn glm_incremental_tool_call_with_empty_name_continuation() {
    let c = run("mistral-glm-incremental-tool-call-cached.chunks.txt");
    assert_eq!(
        c.items,
        vec![Item::tool_call(
            "chatcmpl-tool-9f149c74c42f265b",
            "webSearchTool",
            r#"{"query": "current Berlin weather"}"#
        )]
    );
    assert_eq!(c.usage, usage(43, 14, 128));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn alibaba_continuations_with_empty_ids() {
    let c = run("alibaba-qwen3max-tool-call-empty-id-continuation.chunks.txt");
    assert_eq!(
        c.items,
        vec![Item::tool_call(
            "call_eee11723464a4b9eb8cee71d",
            "weather",
            r#"{"location": "San Francisco"}"#
        )]
    );
    assert_eq!(c.usage, usage(295, 22, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn snowflake_without_finish_reason_infers_end() {
    let c = run("snowflake-cortex-claude-no-finish-reason.sse");
    assert_eq!(c.items, vec![Item::text(Role::Assistant, "4")]);
    assert_eq!(c.usage, usage(22, 5, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn magistral_content_array_with_thinking_parts() {
    let c = run("mistral-magistral-thinking-content-array.chunks.txt");
    assert_eq!(c.items.len(), 2, "{:?}", c.items);
    let (text, _) = reasoning_text(&c).unwrap();
    assert_eq!(
        text,
        "The user is asking for 2+2. This is basic arithmetic. 2+2=4."
    );
    assert_eq!(c.items[1], Item::text(Role::Assistant, "2 + 2 = 4"));
    assert_eq!(c.usage, usage(10, 46, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn every_chunk_boundary_gives_the_same_result() {
    for name in [
        "deepseek-reasoner-reasoning-then-tool-call-cached.chunks.txt",
        "openrouter-claude-reasoning-details.sse",
    ] {
        let body = body_of(name);
        let whole = decode(&body, 0).unwrap();
        assert_eq!(decode(&body, 1).unwrap(), whole, "{name}: 1-byte slices");
        for cut in 1..body.len() {
            let mut parser = SseParser::new();
            let mut dec = OpenaiChat.decoder();
            let mut asm = Assembler::new(ProviderFamily::OpenaiChat);
            let mut events = Vec::new();
            parser.push(&body[..cut], &mut events);
            parser.push(&body[cut..], &mut events);
            parser.finish(&mut events);
            let mut done = false;
            for ev in &events {
                if dec.feed(ev, &mut asm).unwrap() == Flow::Done {
                    done = true;
                    break;
                }
            }
            assert!(done, "{name}: no [DONE] at cut {cut}");
            assert_eq!(asm.completion(), whole, "{name}: cut at {cut}");
        }
    }
}

#[test]
fn missing_done_is_accepted_after_a_finish_reason_only() {
    let body = String::from_utf8(body_of("openai-gpt4o-mini-single-tool-call.sse")).unwrap();
    let cut = body.replace("data: [DONE]", "");
    let c = decode(cut.as_bytes(), 7).unwrap();
    assert_eq!(c.stop, StopReason::ToolUse);
    assert_eq!(c.tool_calls().count(), 1);
    // Cut before the finish chunk: the stream broke off.
    let pos = body.find("\"finish_reason\":\"tool_calls\"").unwrap();
    let start = body[..pos].rfind("data:").unwrap();
    let err = decode(&body.as_bytes()[..start], 0).unwrap_err();
    assert!(matches!(err, ClientError::StreamBroken(_)), "{err:?}");
}

#[test]
fn malformed_json_is_a_decode_error() {
    let err = decode(b"data: {\"choices\":[{\"delta\":\n\n", 0).unwrap_err();
    let ClientError::Decode(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("OpenAI Chat chunk"), "{msg}");
}

#[test]
fn stop_with_tool_calls_and_other_finish_reasons() {
    let body = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{\"name\":\"Read\",\"arguments\":{\"path\":\"a\"}}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n"
    );
    let c = decode(body.as_bytes(), 0).unwrap();
    assert_eq!(
        c.items,
        vec![Item::tool_call("c1", "Read", r#"{"path":"a"}"#)]
    );
    assert_eq!(c.stop, StopReason::ToolUse);
    for (word, stop) in [
        ("content_filter", StopReason::ContentFilter),
        ("weird", StopReason::Other("weird".into())),
    ] {
        let body = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"x\"}},\"finish_reason\":\"{word}\"}}]}}\n\n"
        );
        assert_eq!(decode(body.as_bytes(), 0).unwrap().stop, stop);
    }
}

#[test]
fn a_reused_index_with_a_new_id_is_a_new_call() {
    let body = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"Read\",\"arguments\":\"{}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"b\",\"function\":{\"name\":\"Grep\",\"arguments\":\"{\\\"p\\\":1}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    );
    let c = decode(body.as_bytes(), 0).unwrap();
    assert_eq!(
        c.items,
        vec![
            Item::tool_call("a", "Read", "{}"),
            Item::tool_call("b", "Grep", r#"{"p":1}"#),
        ]
    );
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn endpoint_and_headers() {
    assert_eq!(
        OpenaiChat.endpoint("http://127.0.0.1:11434/v1", "llama3"),
        "http://127.0.0.1:11434/v1/chat/completions"
    );
    assert_eq!(
        OpenaiChat.headers(Some("sk-1")),
        vec![
            ("authorization".to_string(), "Bearer sk-1".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ]
    );
    assert_eq!(
        OpenaiChat.headers(None),
        vec![("content-type".to_string(), "application/json".to_string())]
    );
    assert_eq!(OpenaiChat.family(), ProviderFamily::OpenaiChat);
}

fn reasoning(provider: ProviderFamily, text: &str) -> Item {
    Item::Reasoning {
        provider,
        text: text.into(),
        signature: None,
        redacted: None,
        encrypted: None,
        id: None,
    }
}

#[tokio::test]
async fn request_body_shape() {
    let history = vec![
        Item::text(Role::User, "Read a and grep x."),
        reasoning(ProviderFamily::OpenaiChat, "I should read and grep."),
        Item::text(Role::Assistant, "Let me look."),
        Item::tool_call("c0", "Read", r#"{"path":"a"}"#),
        Item::tool_call("c1", "Grep", r#"{"pattern":"x"}"#),
        Item::tool_result("c0", "read 1 line", Some("hello".into()), false),
        Item::tool_result("c1", "no such pattern", None, true),
        Item::text(Role::User, "Thanks."),
    ];
    let mut req = LlmRequest::new("gpt-4o", history);
    req.system = "You are helpful.".into();
    req.tools = vec![ToolSpec {
        name: "Read".into(),
        description: "Reads a file.".into(),
        input_schema: json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "ReadArgs",
            "type": "object",
            "properties": {
                "path": {"type": "string", "title": "Path"},
                "range": {"$ref": "#/$defs/Range", "description": "Lines"},
                "title": {"type": "string"}
            },
            "required": ["path"],
            "$defs": {
                "Range": {
                    "title": "Range",
                    "type": "object",
                    "properties": {"start": {"type": "integer"}}
                }
            }
        }),
    }];
    req.tool_choice = ToolChoice::Tool("Read".into());
    req.max_tokens = 1000;
    req.temperature = Some(0.5);
    req.seed = Some(7);
    req.cache_key = Some("pod-1".into());
    req.extra.insert("temperature".into(), json!(0.2));
    req.extra.insert("top_p".into(), json!(0.9));
    let body = common::recorded_request(Arc::new(OpenaiChat), &req)
        .await
        .body;
    assert_eq!(
        body,
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": "Read a and grep x."},
                {
                    "role": "assistant",
                    "content": "Let me look.",
                    "reasoning_content": "I should read and grep.",
                    "tool_calls": [
                        {"id": "c0", "type": "function", "function": {"name": "Read", "arguments": "{\"path\":\"a\"}"}},
                        {"id": "c1", "type": "function", "function": {"name": "Grep", "arguments": "{\"pattern\":\"x\"}"}}
                    ]
                },
                {"role": "tool", "tool_call_id": "c0", "content": "read 1 line\n\nhello"},
                {"role": "tool", "tool_call_id": "c1", "content": "error: no such pattern"},
                {"role": "user", "content": "Thanks."}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 1000,
            "temperature": 0.2,
            "top_p": 0.9,
            "seed": 7,
            "tools": [{
                "type": "function",
                "function": {
                    "name": "Read",
                    "description": "Reads a file.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string"},
                            "range": {
                                "type": "object",
                                "properties": {"start": {"type": "integer"}},
                                "description": "Lines"
                            },
                            "title": {"type": "string"}
                        },
                        "required": ["path"]
                    }
                }
            }],
            "tool_choice": {"type": "function", "function": {"name": "Read"}},
            "prompt_cache_key": "pod-1"
        })
    );
}

#[test]
fn minimal_body_has_no_tools_or_optional_fields() {
    let body = OpenaiChat.body(&LlmRequest::new(
        "llama3",
        vec![Item::text(Role::User, "hi")],
    ));
    assert_eq!(
        body,
        json!({
            "model": "llama3",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 4096
        })
    );
}

#[test]
fn foreign_reasoning_and_provider_items_are_skipped_own_are_echoed() {
    let history = vec![
        Item::text(Role::User, "q"),
        reasoning(ProviderFamily::Anthropic, "foreign thought"),
        Item::ProviderItem {
            provider: ProviderFamily::OpenaiResponses,
            value: json!({"type": "web_search_call", "id": "ws_1"}),
        },
        Item::tool_call("c0", "Read", "{}"),
        Item::tool_result("c0", "ok", None, false),
        Item::Reasoning {
            provider: ProviderFamily::OpenaiChat,
            text: "own thought".into(),
            signature: Some("sig".into()),
            redacted: None,
            encrypted: None,
            id: None,
        },
        Item::ProviderItem {
            provider: ProviderFamily::OpenaiChat,
            value: json!({"annotations": []}),
        },
        Item::text(Role::Assistant, "done"),
        Item::ProviderItem {
            provider: ProviderFamily::OpenaiChat,
            value: json!({"role": "user", "content": "verbatim"}),
        },
    ];
    let body = OpenaiChat.body(&LlmRequest::new("m", history));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c0", "type": "function", "function": {"name": "Read", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "c0", "content": "ok"},
            {
                "role": "assistant",
                "content": "done",
                "reasoning_content": "own thought",
                "reasoning_details": [{"type": "reasoning.text", "text": "own thought", "signature": "sig"}],
                "annotations": []
            },
            {"role": "user", "content": "verbatim"}
        ])
    );
}

#[test]
fn decoded_response_round_trips_into_a_valid_history() {
    let c = run("deepseek-reasoner-reasoning-then-tool-call-cached.chunks.txt");
    let mut history = vec![Item::text(Role::User, "weather?")];
    history.extend(c.items);
    history.push(Item::tool_result(
        "call_00_ioIn7yN9p1ZOMNpDLwd4MgAF",
        "sunny",
        None,
        false,
    ));
    let body = OpenaiChat.body(&LlmRequest::new("deepseek-reasoner", history));
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[1]["content"], serde_json::Value::Null);
    assert!(
        msgs[1]["reasoning_content"]
            .as_str()
            .unwrap()
            .starts_with("The user")
    );
    assert_eq!(msgs[1]["tool_calls"][0]["function"]["name"], "weather");
}

#[test]
fn bench_stream_decodes_correctly_at_small_size() {
    let body = bench_src::build_stream(1_000);
    let (deltas, text_len) = bench_src::decode_body(&body, 4096);
    assert_eq!(deltas, 1_000);
    let per_round: usize = bench_src::content_deltas().iter().map(|d| d.1).sum();
    assert!(text_len > 0 && per_round > 0);
    let whole = decode(&body, 0).unwrap();
    assert_eq!(whole.stop, StopReason::End);
    assert_eq!(whole.items.len(), 1);
    assert_eq!(whole.items[0].message_text().len(), text_len);
}

#[test]
#[ignore = "timing; run with --release --ignored"]
fn bench_stream_throughput() {
    let n = 100_000;
    let body = bench_src::build_stream(n);
    let start = std::time::Instant::now();
    let rounds = 5;
    for _ in 0..rounds {
        let (deltas, _) = bench_src::decode_body(&body, 4096);
        assert_eq!(deltas, n);
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = (n * rounds) as f64 / secs;
    println!(
        "openai_chat_stream: {rate:.0} deltas/s ({} bytes per stream)",
        body.len()
    );
}
