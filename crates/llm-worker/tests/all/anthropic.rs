#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The Anthropic Messages scheme against every recorded Anthropic stream, plus
//! the request body it writes.

use crate::common;

use llm_types::{Item, ProviderFamily, Role, ToolCallKind, Usage};
use llm_worker::llm_client::anthropic::Anthropic;
use llm_worker::llm_client::error::ClientError;
use llm_worker::llm_client::request::{LlmRequest, ToolChoice, ToolSpec};
use llm_worker::llm_client::scheme::WireScheme;
use llm_worker::llm_client::sse::SseParser;
use llm_worker::llm_client::stream::{Assembler, Completion, Flow, StopReason, StreamEvent};
use serde_json::json;
use std::sync::Arc;
use test_support::{Family, fixture, fixtures_of};

/// Feeds the slices through the SSE parser, the decoder and an assembler; also
/// returns the stream events emitted.
fn decode_slices(slices: &[&[u8]]) -> (Result<Completion, ClientError>, Vec<StreamEvent>) {
    let mut parser = SseParser::new();
    let mut dec = Anthropic.decoder();
    let mut asm = Assembler::new(ProviderFamily::Anthropic);
    let mut events = Vec::new();
    let mut done = false;
    let mut run = |events: &mut Vec<_>, asm: &mut Assembler, done: &mut bool| {
        for ev in events.drain(..) {
            if !*done && dec.feed(&ev, asm)? == Flow::Done {
                *done = true;
            }
        }
        Ok::<(), ClientError>(())
    };
    let result = (|| {
        for s in slices {
            parser.push(s, &mut events);
            run(&mut events, &mut asm, &mut done)?;
        }
        parser.finish(&mut events);
        run(&mut events, &mut asm, &mut done)?;
        Ok(())
    })();
    let result = result
        .and_then(|()| dec.finish(&mut asm))
        .map(|()| asm.completion());
    let stream_events = asm.drain_events().collect();
    (result, stream_events)
}

/// Decodes a whole body, or in slices of `slicing` bytes.
fn decode(bytes: &[u8], slicing: Option<usize>) -> Result<Completion, ClientError> {
    match slicing {
        None => decode_slices(&[bytes]).0,
        Some(n) => decode_slices(&bytes.chunks(n).collect::<Vec<_>>()).0,
    }
}

fn body(name: &str) -> Vec<u8> {
    fixture(Family::Anthropic, name)
        .unwrap()
        .wire_body()
        .unwrap()
}

fn run(name: &str) -> Completion {
    decode(&body(name), None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn usage(input: u64, output: u64, read: u64, write: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: read,
        cache_write_tokens: write,
    }
}

fn call(item: &Item) -> (&str, &str, &str) {
    match item {
        Item::ToolCall {
            id,
            name,
            arguments,
            kind,
            ..
        } => {
            assert_eq!(*kind, ToolCallKind::Function);
            (id, name, arguments)
        }
        other => panic!("not a tool call: {other:?}"),
    }
}

fn reasoning(item: &Item) -> (&str, Option<&str>, Option<&str>) {
    match item {
        Item::Reasoning {
            provider,
            text,
            signature,
            redacted,
            encrypted,
            id,
        } => {
            assert_eq!(*provider, ProviderFamily::Anthropic);
            assert!(encrypted.is_none() && id.is_none());
            (text, signature.as_deref(), redacted.as_deref())
        }
        other => panic!("not reasoning: {other:?}"),
    }
}

fn provider_value(item: &Item) -> &serde_json::Value {
    match item {
        Item::ProviderItem { provider, value } => {
            assert_eq!(*provider, ProviderFamily::Anthropic);
            value
        }
        other => panic!("not a provider item: {other:?}"),
    }
}

fn assistant_text(item: &Item) -> String {
    match item {
        Item::Message {
            role: Role::Assistant,
            ..
        } => item.message_text(),
        other => panic!("not an assistant message: {other:?}"),
    }
}

#[test]
fn every_fixture_is_covered_and_decodes() {
    let names: Vec<String> = fixtures_of(Family::Anthropic)
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        names.len(),
        15,
        "{names:?}: a new fixture needs its own test"
    );
    for name in names {
        run(&name);
    }
}

#[test]
fn plain_text() {
    let c = run("anthropic-sonnet45-text.chunks.txt");
    assert_eq!(c.items.len(), 1);
    assert_eq!(
        assistant_text(&c.items[0]),
        "Hello! I'm doing well, thank you for asking. How are you doing today? Is there anything I can help you with?"
    );
    assert_eq!(c.usage, usage(12, 30, 0, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn single_tool_with_json_fragments_and_pings() {
    let c = run("anthropic-haiku45-single-tool.chunks.txt");
    assert_eq!(c.items.len(), 1);
    assert_eq!(
        call(&c.items[0]),
        (
            "toolu_019Zvehfe1XQWweT1pm7okyt",
            "weather",
            "{\"location\": \"San Francisco\"}"
        )
    );
    assert_eq!(c.usage, usage(843, 28, 0, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn parallel_tools_without_arguments() {
    let bytes = body("anthropic-haiku45-parallel-tools-empty-args.sse");
    let (c, events) = decode_slices(&[&bytes]);
    let c = c.unwrap();
    assert_eq!(c.items.len(), 2);
    assert_eq!(
        call(&c.items[0]),
        (
            "toolu_01LtHJmixrs9NcWQkK8hu8hj",
            "pelican_name_generator",
            "{}"
        )
    );
    assert_eq!(
        call(&c.items[1]),
        (
            "toolu_01N8a4jWyf116qKTMqKKmjyt",
            "pelican_name_generator",
            "{}"
        )
    );
    assert_eq!(c.usage, usage(542, 62, 0, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
    let done: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallDone { id, arguments, .. } => {
                Some((id.as_str(), arguments.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        done,
        vec![
            ("toolu_01LtHJmixrs9NcWQkK8hu8hj", "{}"),
            ("toolu_01N8a4jWyf116qKTMqKKmjyt", "{}")
        ]
    );
}

#[test]
fn text_then_tool_without_arguments() {
    let c = run("anthropic-sonnet45-text-then-tool-no-args.chunks.txt");
    assert_eq!(c.items.len(), 2);
    assert_eq!(
        assistant_text(&c.items[0]),
        "I'll update the issue list for you."
    );
    assert_eq!(
        call(&c.items[1]),
        ("toolu_01QE1WLsSVp5hy5Q3GmGTmjP", "updateIssueList", "{}")
    );
    assert_eq!(c.usage, usage(565, 48, 0, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn thinking_with_signature_then_text() {
    let c = run("anthropic-sonnet45-thinking-signature.chunks.txt");
    assert_eq!(c.items.len(), 2);
    let (text, sig, redacted) = reasoning(&c.items[0]);
    assert_eq!(
        text,
        "The previous result was 925. Now I need to divide that by 5.\n\n925 ÷ 5 = 185"
    );
    assert!(
        sig.unwrap()
            .starts_with("EvQBCkYICxgCKkAxhD4NUKFzudtZ6NzbZdEiBACI")
    );
    assert!(redacted.is_none());
    assert_eq!(assistant_text(&c.items[1]), "925 ÷ 5 = 185");
    assert_eq!(c.usage, usage(69, 53, 0, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn redacted_thinking_blocks() {
    let c = run("anthropic-sonnet45-redacted-thinking.sse");
    assert_eq!(c.items.len(), 3);
    let (t0, s0, r0) = reasoning(&c.items[0]);
    let (t1, s1, r1) = reasoning(&c.items[1]);
    assert_eq!((t0, s0, t1, s1), ("", None, "", None));
    assert!(r0.unwrap().starts_with("EqkECkYIBxgCKkA8AZ4noDfV5VcOJe"));
    assert!(r1.unwrap().starts_with("EtgBCkYIBxgCKkDQfGkwzflEJP5asG"));
    assert!(assistant_text(&c.items[2]).starts_with("I notice that you've sent what appears"));
    assert_eq!(c.usage, usage(92, 189, 0, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn compaction_block_and_iteration_usage() {
    let c = run("anthropic-sonnet46-cache-read-compaction.sse");
    assert_eq!(c.items.len(), 2);
    let v = provider_value(&c.items[0]);
    assert_eq!(v["type"], "compaction");
    assert!(
        v["content"]
            .as_str()
            .unwrap()
            .starts_with("The user provided a very long context")
    );
    assert!(
        v["content"]
            .as_str()
            .unwrap()
            .ends_with("Next step: Say hello to the user.")
    );
    assert_eq!(assistant_text(&c.items[1]), "Hello! 👋");
    // Summed over the compaction and message iterations.
    assert_eq!(c.usage, usage(100 + 181, 83 + 8, 55096, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn prompt_cache_usage_and_server_tools() {
    let c = run("anthropic-sonnet5-prompt-cache-server-tools.chunks.txt");
    assert_eq!(c.items.len(), 5);
    let v0 = provider_value(&c.items[0]);
    assert_eq!(v0["type"], "server_tool_use");
    assert_eq!(v0["id"], "srvtoolu_011fxGj786xCAh2kPk9GMxQw");
    assert_eq!(
        v0["input"],
        json!({"command": "for n in $(seq 1 12); do echo \"$n: $((n*n))\"; done"})
    );
    let v1 = provider_value(&c.items[1]);
    assert_eq!(v1["type"], "bash_code_execution_tool_result");
    assert_eq!(v1["tool_use_id"], "srvtoolu_011fxGj786xCAh2kPk9GMxQw");
    assert_eq!(v1["content"]["return_code"], 0);
    let v2 = provider_value(&c.items[2]);
    assert_eq!(v2["id"], "srvtoolu_013eUksWZnfcjFk1iarJsYgM");
    assert!(
        v2["input"]["command"]
            .as_str()
            .unwrap()
            .starts_with("sum=0; for n in $(seq 1 12)")
    );
    let v3 = provider_value(&c.items[3]);
    assert_eq!(v3["content"]["stdout"], "Sum: 650\n");
    assert_eq!(
        assistant_text(&c.items[4]),
        "The sum of the squares of the numbers 1 through 12 is **650**."
    );
    // message_delta's cumulative figures replace message_start's (2 / 3068 / 0).
    assert_eq!(c.usage, usage(6, 198, 6289, 3337));
    assert_eq!(c.stop, StopReason::End);
    assert_eq!(c.tool_calls().count(), 0);
}

#[test]
fn refusal_carries_the_explanation() {
    let c = run("anthropic-fable-refusal.sse");
    assert!(c.items.is_empty());
    let StopReason::Refusal(why) = &c.stop else {
        panic!("{:?}", c.stop)
    };
    assert!(why.starts_with("This request was blocked as it seems to violate Anthropic's Terms"));
    assert_eq!(c.usage.input_tokens, 97);
    assert_eq!(c.usage.cache_read_tokens, 0);
}

#[test]
fn stop_sequence_is_a_normal_end() {
    let c = run("anthropic-haiku45-stop-sequence.sse");
    assert_eq!(c.items.len(), 1);
    assert_eq!(
        assistant_text(&c.items[0]),
        "\ndef pelican():\n    return \"A large waterbird with a long bill and a throat pouch for catching fish.\"\n"
    );
    assert_eq!(c.usage, usage(16, 28, 0, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn message_delta_input_tokens_override_message_start() {
    let bytes = body("anthropic-compat-message-delta-input-tokens.chunks.txt");
    let (c, events) = decode_slices(&[&bytes]);
    let c = c.unwrap();
    assert_eq!(c.items.len(), 1);
    assert_eq!(assistant_text(&c.items[0]), "pong");
    assert_eq!(c.usage, usage(61, 2, 0, 0));
    assert_eq!(c.stop, StopReason::End);
    let usages: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Usage(u) => Some(*u),
            _ => None,
        })
        .collect();
    assert_eq!(usages, vec![usage(43, 1, 0, 0), usage(61, 2, 0, 0)]);
}

#[test]
fn long_thinking_then_text() {
    let c = run("anthropic-sonnet4-thinking-long.sse");
    assert_eq!(c.items.len(), 2);
    let (text, sig, _) = reasoning(&c.items[0]);
    assert!(text.starts_with("This is a straightforward question about pedestrian safety."));
    assert!(text.ends_with("help prevent accidents."));
    assert!(
        sig.unwrap()
            .starts_with("EvMCCkYICxgCKkCHP2cSuEdcJK/0rFwqES/ecn+VurRpNTwI4XNyM")
    );
    let answer = assistant_text(&c.items[1]);
    assert!(answer.starts_with("Here are the basic steps for safely crossing the street:"));
    assert!(answer.ends_with("Always prioritize safety over speed when crossing streets."));
    assert_eq!(c.usage, usage(43, 282, 0, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn thinking_then_tool() {
    let c = run("anthropic-haiku45-thinking-then-tool.sse");
    assert_eq!(c.items.len(), 2);
    let (text, sig, _) = reasoning(&c.items[0]);
    assert!(text.starts_with("The user wants me to:\n1. Use the fixed_version tool"));
    assert!(
        sig.unwrap()
            .starts_with("EoQDCm0IDhgCKkCDzGs2kL2PgnDCZU/nM2wG2P1VIXCRHVnh")
    );
    assert_eq!(
        call(&c.items[1]),
        ("toolu_01825dXWLSoJwCst1qTsiWdb", "fixed_version", "{}")
    );
    assert_eq!(c.usage, usage(598, 92, 0, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn mixed_blocks_with_tool_search() {
    let c = run("anthropic-sonnet46-tool-search-mixed-blocks.sse");
    assert_eq!(c.items.len(), 5);
    assert_eq!(
        assistant_text(&c.items[0]),
        "Let me search for a tool that can provide current exchange rate information."
    );
    let v1 = provider_value(&c.items[1]);
    assert_eq!(v1["type"], "server_tool_use");
    assert_eq!(v1["name"], "tool_search_tool_bm25");
    assert!(v1["input"].is_object() && v1["input"].as_object().unwrap().len() == 1);
    let v2 = provider_value(&c.items[2]);
    assert_eq!(
        v2,
        &json!({"type":"tool_search_tool_result","tool_use_id":"srvtoolu_01S5swZdBmTzLDVzwcT5LbHp","content":{"type":"tool_search_tool_search_result","tool_references":[{"type":"tool_reference","tool_name":"get_exchange_rate"}]}})
    );
    assert_eq!(
        assistant_text(&c.items[3]),
        "I found the right tool! Let me fetch the current USD to EUR exchange rate for you."
    );
    assert_eq!(
        call(&c.items[4]),
        (
            "toolu_01EFn5wTNBYA8Reni8rbmnHT",
            "get_exchange_rate",
            "{\"from_currency\": \"USD\", \"to_currency\": \"EUR\"}"
        )
    );
    assert_eq!(c.usage, usage(1591, 175, 0, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn mcp_tool_use_and_result_are_kept() {
    let c = run("anthropic-sonnet45-mcp-tool.chunks.txt");
    assert_eq!(c.items.len(), 3);
    assert_eq!(
        provider_value(&c.items[0]),
        &json!({"type":"mcp_tool_use","id":"mcptoolu_017CuqaJcXe5ZHJjaz3KS1AT","name":"echo","input":{"message":"hello world"},"server_name":"echo"})
    );
    assert_eq!(
        provider_value(&c.items[1]),
        &json!({"type":"mcp_tool_result","tool_use_id":"mcptoolu_017CuqaJcXe5ZHJjaz3KS1AT","is_error":false,"content":[{"type":"text","text":"Tool echo: hello world"}]})
    );
    assert!(
        assistant_text(&c.items[2])
            .starts_with("The echo tool responded back with: **hello world**")
    );
    assert_eq!(c.usage, usage(1250, 83, 0, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn every_chunk_boundary_gives_the_same_result() {
    for name in [
        "anthropic-sonnet46-tool-search-mixed-blocks.sse",
        "anthropic-haiku45-thinking-then-tool.sse",
    ] {
        let bytes = body(name);
        let want = decode(&bytes, None).unwrap();
        assert_eq!(
            decode(&bytes, Some(1)).unwrap(),
            want,
            "{name}: 1-byte slices"
        );
        for cut in 1..bytes.len() {
            let got = decode_slices(&[&bytes[..cut], &bytes[cut..]]).0.unwrap();
            assert_eq!(got, want, "{name}: cut at {cut}");
        }
    }
}

#[test]
fn in_band_error_is_a_provider_error() {
    let body = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
                event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    assert_eq!(
        decode(body.as_bytes(), None),
        Err(ClientError::Provider {
            code: Some("overloaded_error".into()),
            message: "Overloaded".into()
        })
    );
}

#[test]
fn stream_without_message_stop_is_broken() {
    let bytes = body("anthropic-haiku45-single-tool.chunks.txt");
    let text = String::from_utf8(bytes).unwrap();
    let cut = text.find("event: message_stop").unwrap();
    assert!(matches!(
        decode(&text.as_bytes()[..cut], None),
        Err(ClientError::StreamBroken(_))
    ));
}

#[test]
fn malformed_json_is_a_decode_error() {
    let body =
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\n\n";
    let Err(ClientError::Decode(msg)) = decode(body.as_bytes(), None) else {
        panic!("expected a decode error")
    };
    assert!(msg.contains("content_block_delta"), "{msg}");
}

#[test]
fn stop_reasons_map() {
    let stream = |reason: &str| {
        format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"usage\":{{\"input_tokens\":1,\"output_tokens\":1}}}}}}\n\n\
             event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{reason}\"}},\"usage\":{{\"output_tokens\":3}}}}\n\n\
             event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        )
    };
    let stop = |r: &str| decode(stream(r).as_bytes(), None).unwrap().stop;
    assert_eq!(stop("end_turn"), StopReason::End);
    assert_eq!(stop("stop_sequence"), StopReason::End);
    assert_eq!(stop("tool_use"), StopReason::ToolUse);
    assert_eq!(stop("max_tokens"), StopReason::MaxTokens);
    assert_eq!(stop("refusal"), StopReason::Refusal(String::new()));
    assert_eq!(stop("pause_turn"), StopReason::Other("pause_turn".into()));
    let c = decode(stream("end_turn").as_bytes(), None).unwrap();
    assert_eq!(c.usage, usage(1, 3, 0, 0));
}

#[test]
fn endpoint_and_headers() {
    assert_eq!(
        Anthropic.endpoint("https://api.anthropic.com/v1", "claude-x"),
        "https://api.anthropic.com/v1/messages"
    );
    assert_eq!(Anthropic.family(), ProviderFamily::Anthropic);
    let h = Anthropic.headers(Some("sk-ant"));
    assert_eq!(
        h,
        vec![
            ("x-api-key".to_string(), "sk-ant".to_string()),
            ("anthropic-version".to_string(), "2023-06-01".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ]
    );
    assert!(
        !Anthropic
            .headers(None)
            .iter()
            .any(|(k, _)| k == "x-api-key")
    );
}

fn schemars_like_schema() -> serde_json::Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ReadArgs",
        "type": "object",
        "properties": {
            "path": {"type": "string", "title": "Path", "description": "File to read"},
            "title": {"type": "string"},
            "range": {"$ref": "#/$defs/Range", "description": "Lines"}
        },
        "required": ["path"],
        "$defs": {
            "Range": {
                "title": "Range",
                "type": "object",
                "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}}
            }
        }
    })
}

fn full_request() -> LlmRequest {
    let history = vec![
        Item::text(Role::User, "Read a and grep b"),
        Item::Reasoning {
            provider: ProviderFamily::Anthropic,
            text: "Two tools at once.".into(),
            signature: Some("SIG".into()),
            redacted: None,
            encrypted: None,
            id: None,
        },
        Item::text(Role::Assistant, "Doing both."),
        Item::tool_call("toolu_1", "Read", r#"{"path":"a"}"#),
        Item::tool_call("toolu_2", "Grep", r#"{"pattern":"b"}"#),
        Item::tool_result("toolu_1", "read 3 lines", Some("l1\nl2\nl3".into()), false),
        Item::tool_result("toolu_2", "no such file", None, true),
        Item::text(Role::User, "Thanks"),
    ];
    let mut req = LlmRequest::new("claude-sonnet-4-5", history);
    req.system = "You are a pod.".into();
    req.tools = vec![
        ToolSpec {
            name: "Read".into(),
            description: "Reads a file".into(),
            input_schema: schemars_like_schema(),
        },
        ToolSpec {
            name: "Grep".into(),
            description: "Searches".into(),
            input_schema: json!({"type":"object","properties":{"pattern":{"type":"string"}}}),
        },
    ];
    req.tool_choice = ToolChoice::Tool("Read".into());
    req.max_tokens = 1000;
    req.temperature = Some(0.5);
    req.seed = Some(7);
    req.cache_key = Some("pod-1".into());
    req.extra.insert("top_k".into(), json!(5));
    req.extra.insert("max_tokens".into(), json!(2000));
    req
}

#[tokio::test]
async fn request_body_shape() {
    let body = common::recorded_request(Arc::new(Anthropic), &full_request())
        .await
        .body;
    let eph = json!({"type": "ephemeral"});
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 2000,
            "stream": true,
            "system": [{"type": "text", "text": "You are a pod.", "cache_control": eph}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Read a and grep b"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Two tools at once.", "signature": "SIG"},
                    {"type": "text", "text": "Doing both."},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "Grep", "input": {"pattern": "b"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "read 3 lines\n\nl1\nl2\nl3", "is_error": false},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no such file", "is_error": true},
                    {"type": "text", "text": "Thanks", "cache_control": eph}
                ]}
            ],
            "tools": [
                {"name": "Read", "description": "Reads a file", "input_schema": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "File to read"},
                        "title": {"type": "string"},
                        "range": {"type": "object", "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}}, "description": "Lines"}
                    },
                    "required": ["path"]
                }},
                {"name": "Grep", "description": "Searches", "input_schema": {"type":"object","properties":{"pattern":{"type":"string"}}}, "cache_control": eph}
            ],
            "tool_choice": {"type": "tool", "name": "Read"},
            "temperature": 0.5,
            "top_k": 5
        })
    );
}

#[test]
fn no_cache_hints_without_cache_key_and_choices_map() {
    let mut req = full_request();
    req.cache_key = None;
    req.extra.clear();
    let body = Anthropic.body(&req);
    assert!(!body.to_string().contains("cache_control"));
    assert!(body.get("seed").is_none());
    for (choice, want) in [
        (ToolChoice::Auto, json!({"type": "auto"})),
        (ToolChoice::None, json!({"type": "none"})),
        (ToolChoice::Required, json!({"type": "any"})),
    ] {
        req.tool_choice = choice;
        assert_eq!(Anthropic.body(&req)["tool_choice"], want);
    }
    req.tools.clear();
    let body = Anthropic.body(&req);
    assert!(body.get("tools").is_none() && body.get("tool_choice").is_none());
}

#[test]
fn foreign_reasoning_and_provider_items_are_skipped_own_are_echoed() {
    let history = vec![
        Item::text(Role::User, "hi"),
        Item::Reasoning {
            provider: ProviderFamily::OpenaiResponses,
            text: "foreign".into(),
            signature: None,
            redacted: None,
            encrypted: Some("ENC".into()),
            id: Some("rs_1".into()),
        },
        Item::ProviderItem {
            provider: ProviderFamily::OpenaiResponses,
            value: json!({"type": "web_search_call", "id": "ws_1"}),
        },
        Item::Reasoning {
            provider: ProviderFamily::Anthropic,
            text: String::new(),
            signature: None,
            redacted: Some("REDACTED".into()),
            encrypted: None,
            id: None,
        },
        Item::ProviderItem {
            provider: ProviderFamily::Anthropic,
            value: json!({"type": "compaction", "content": "summary"}),
        },
        Item::text(Role::Assistant, "hello"),
        Item::text(Role::System, "A child pod finished."),
    ];
    let body = Anthropic.body(&LlmRequest::new("m", history));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [
                {"type": "redacted_thinking", "data": "REDACTED"},
                {"type": "compaction", "content": "summary"},
                {"type": "text", "text": "hello"}
            ]},
            {"role": "user", "content": [{"type": "text", "text": "A child pod finished."}]}
        ])
    );
    assert!(body.get("system").is_none());
    assert!(body.get("temperature").is_none());
}

#[test]
fn odd_histories_stay_valid() {
    let history = vec![
        Item::text(Role::User, " \n"),
        Item::text(Role::User, "go"),
        Item::tool_call("t1", "Read", "{\"path\": \"a\""),
        Item::tool_call("t2", "Read", ""),
        // A notification between the call and its result.
        Item::text(Role::System, "note"),
        Item::tool_result("t2", "ok", None, false),
        // A result for a call that is not in the history.
        Item::tool_result("ghost", "lost", None, true),
    ];
    let body = Anthropic.body(&LlmRequest::new("m", history));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "go"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "Read", "input": {"_unparsed_arguments": "{\"path\": \"a\""}},
                {"type": "tool_use", "id": "t2", "name": "Read", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t2", "content": "ok", "is_error": false},
                {"type": "tool_result", "tool_use_id": "t1", "content": "(no result was recorded for this call)", "is_error": true},
                {"type": "text", "text": "note"},
                {"type": "text", "text": "[result of tool call ghost (error)]\nlost"}
            ]}
        ])
    );
}
