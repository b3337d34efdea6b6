#![allow(clippy::unwrap_used, clippy::expect_used)]

//! OpenAI Responses scheme: every recorded stream, chunk-boundary invariance,
//! and the request body.

use crate::common;

use llm_types::{ContentPart, Item, ProviderFamily, Role, ToolCallKind, Usage};
use llm_worker::llm_client::error::ClientError;
use llm_worker::llm_client::openai_responses::{OpenaiResponses, normalize_schema};
use llm_worker::llm_client::request::{LlmRequest, ToolChoice, ToolSpec};
use llm_worker::llm_client::scheme::WireScheme;
use llm_worker::llm_client::sse::{SseEvent, SseParser};
use llm_worker::llm_client::stream::{Assembler, Completion, Flow, StopReason, StreamEvent};
use serde_json::json;
use std::sync::Arc;
use test_support::{Family, fixture, fixtures_of};

const FAM: ProviderFamily = ProviderFamily::OpenaiResponses;

/// Runs `bytes`, cut into the given slices, through the parser, the decoder and
/// an assembler; returns the completion and the stream events.
fn decode_slices(slices: &[&[u8]]) -> (Result<Completion, ClientError>, Vec<StreamEvent>) {
    let scheme = OpenaiResponses;
    let mut dec = scheme.decoder();
    let mut asm = Assembler::new(scheme.family());
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let mut out: Vec<SseEvent> = Vec::new();
    let mut done = false;
    let mut feed_all = |out: &mut Vec<SseEvent>,
                        asm: &mut Assembler,
                        done: &mut bool|
     -> Result<(), ClientError> {
        for ev in out.drain(..) {
            if *done {
                continue;
            }
            if dec.feed(&ev, asm)? == Flow::Done {
                *done = true;
            }
        }
        Ok(())
    };
    for s in slices {
        parser.push(s, &mut out);
        if let Err(e) = feed_all(&mut out, &mut asm, &mut done) {
            return (Err(e), asm.drain_events().collect());
        }
    }
    parser.finish(&mut out);
    if let Err(e) = feed_all(&mut out, &mut asm, &mut done) {
        return (Err(e), asm.drain_events().collect());
    }
    let res = dec.finish(&mut asm).map(|()| asm.completion());
    events.extend(asm.drain_events());
    (res, events)
}

fn decode(bytes: &[u8], slice: usize) -> Result<Completion, ClientError> {
    let slices: Vec<&[u8]> = bytes.chunks(slice.max(1)).collect();
    decode_slices(&slices).0
}

fn body_of(name: &str) -> Vec<u8> {
    fixture(Family::OpenaiResponses, name)
        .unwrap()
        .wire_body()
        .unwrap()
}

fn run(name: &str) -> Completion {
    decode(&body_of(name), usize::MAX).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn usage(input: u64, output: u64, read: u64, write: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: read,
        cache_write_tokens: write,
    }
}

fn msg(text: &str, id: &str) -> Item {
    Item::Message {
        role: Role::Assistant,
        content: vec![ContentPart::text(text)],
        id: Some(id.into()),
        provider: Some(FAM),
    }
}

fn call(id: &str, name: &str, args: &str, item_id: &str) -> Item {
    Item::ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.into(),
        kind: ToolCallKind::Function,
        signature: None,
        provider: Some(FAM),
        item_id: Some(item_id.into()),
    }
}

fn reasoning(item: &Item) -> (&str, Option<&str>, Option<&str>) {
    match item {
        Item::Reasoning {
            provider,
            text,
            encrypted,
            id,
            signature: None,
            redacted: None,
        } => {
            assert_eq!(*provider, FAM);
            (text.as_str(), encrypted.as_deref(), id.as_deref())
        }
        other => panic!("not a reasoning item: {other:?}"),
    }
}

#[test]
fn every_fixture_is_tested_here() {
    let names: Vec<String> = fixtures_of(Family::OpenaiResponses)
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    let tested = [
        "responses-gpt4o-text.sse",
        "responses-gpt4o-function-call.sse",
        "responses-bedrock-mantle-function-call-empty-args.sse",
        "responses-gpt5-reasoning-function-call.sse",
        "responses-gpt5nano-error-insufficient-quota.chunks.txt",
        "responses-phase-two-messages-cached.chunks.txt",
        "responses-gpt5-web-search-reasoning-cached.sse",
        "responses-copilot-rotating-item-ids.chunks.txt",
        "responses-openrouter-raw-cot-done-sentinel.sse",
        "responses-deepseek-reasoning-function-call-cached.sse",
        "responses-gpt52codex-custom-tool-call.chunks.txt",
        "responses-gpt55-reasoning-message-function-call.sse",
    ];
    for n in &names {
        assert!(tested.contains(&n.as_str()), "fixture {n} has no test");
    }
    assert_eq!(names.len(), tested.len());
}

#[test]
fn gpt4o_text() {
    let c = run("responses-gpt4o-text.sse");
    assert_eq!(
        c.items,
        vec![msg(
            "The capital of France is Paris.",
            "msg_67e554a28bec8191b56d3e2331eff88006c52f0e511c76ed"
        )]
    );
    assert_eq!(c.usage, usage(278, 9, 0, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn gpt4o_function_call() {
    let c = run("responses-gpt4o-function-call.sse");
    assert_eq!(
        c.items,
        vec![call(
            "call_kL0PCQV7M2WMoVX8V8OtYSAL",
            "get_capital",
            r#"{"country":"France"}"#,
            "fc_67e554a1de488191af0831d35cbe082e0794405d35281ae2"
        )]
    );
    assert_eq!(c.usage, usage(255, 16, 0, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn bedrock_function_call_empty_args() {
    let c = run("responses-bedrock-mantle-function-call-empty-args.sse");
    assert_eq!(
        c.items,
        vec![call(
            "call_0",
            "first_tool",
            "{}",
            "fc_8189b908df5d54828dd1a219b8f647cb"
        )]
    );
    assert_eq!(c.usage, usage(88, 14, 0, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn gpt5_encrypted_reasoning_then_function_call() {
    let c = run("responses-gpt5-reasoning-function-call.sse");
    assert_eq!(c.items.len(), 2);
    let (text, enc, id) = reasoning(&c.items[0]);
    assert_eq!(text, "");
    assert!(enc.unwrap().starts_with("gAAAAABoyX"));
    assert_eq!(
        id,
        Some("rs_0050471a34b36ae60068c97bac4dcc819595fd0f80d6b3c405")
    );
    assert_eq!(
        c.items[1],
        call(
            "call_CWXgs68YprAjp6t0371hiPOI",
            "final_result",
            r#"{"result":6666}"#,
            "fc_0050471a34b36ae60068c97bf19d9c819590eaf42c0edc1042"
        )
    );
    assert_eq!(c.usage, usage(53, 469, 0, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn insufficient_quota_error_is_a_provider_error() {
    let err = decode(
        &body_of("responses-gpt5nano-error-insufficient-quota.chunks.txt"),
        usize::MAX,
    )
    .unwrap_err();
    let ClientError::Provider { code, message } = err else {
        panic!("{err:?}")
    };
    assert_eq!(code.as_deref(), Some("insufficient_quota"));
    assert!(
        message.starts_with("You exceeded your current quota"),
        "{message}"
    );
}

#[test]
fn response_failed_alone_is_a_provider_error() {
    let body = "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n";
    assert_eq!(
        decode(body.as_bytes(), usize::MAX),
        Err(ClientError::Provider {
            code: Some("server_error".into()),
            message: "boom".into()
        })
    );
    // The documented flat shape of an `error` event.
    let body = "event: error\ndata: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\",\"message\":\"slow down\",\"param\":null}\n\n";
    assert_eq!(
        decode(body.as_bytes(), usize::MAX),
        Err(ClientError::Provider {
            code: Some("rate_limit_exceeded".into()),
            message: "slow down".into()
        })
    );
}

#[test]
fn phase_two_messages_stay_apart() {
    let c = run("responses-phase-two-messages-cached.chunks.txt");
    assert_eq!(c.items.len(), 2);
    assert_eq!(
        c.items[0],
        msg(
            "Got it \u{2014} I\u{2019}ll quickly check reliable, up-to-date sources for AI headlines from **today (February 25, 2026)** and then summarize the key items with links.",
            "msg_0a63f40a2632b74300699f8819a5e08196ac270722d369af5a"
        )
    );
    let Item::Message { id, .. } = &c.items[1] else {
        panic!()
    };
    assert_eq!(
        id.as_deref(),
        Some("msg_0a63f40a2632b74300699f881bfbc88196aec38f30c3dd24b0")
    );
    let second = c.items[1].message_text();
    assert!(second.starts_with("Here are a few **AI headlines for today"));
    assert!(second.ends_with("investor-grade morning brief with timestamps."));
    assert_eq!(c.usage, usage(7112 - 3072, 463, 3072, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn gpt5_web_search_is_kept_as_provider_item() {
    let c = run("responses-gpt5-web-search-reasoning-cached.sse");
    assert_eq!(c.items.len(), 4, "{:#?}", c.items);
    let (_, enc, id) = reasoning(&c.items[0]);
    assert!(enc.is_some());
    assert_eq!(
        id,
        Some("rs_00a60507bf41223d0068c9d2fc927081a088e0b920cdfe3866")
    );
    let Item::ProviderItem { provider, value } = &c.items[1] else {
        panic!("{:?}", c.items[1])
    };
    assert_eq!(*provider, FAM);
    assert_eq!(value["type"], "web_search_call");
    assert_eq!(value["status"], "completed");
    assert_eq!(value["action"]["query"], "weather: San Francisco, CA");
    let (_, enc, id) = reasoning(&c.items[2]);
    assert!(enc.is_some());
    assert_eq!(
        id,
        Some("rs_00a60507bf41223d0068c9d300b23481a0b77a03d911213220")
    );
    let Item::Message { id, .. } = &c.items[3] else {
        panic!()
    };
    assert_eq!(
        id.as_deref(),
        Some("msg_00a60507bf41223d0068c9d30b055481a0b0ee28a021919c94")
    );
    assert!(
        c.items[3]
            .message_text()
            .starts_with("San Francisco weather today (Tuesday, September 16, 2025)")
    );
    assert_eq!(c.usage, usage(9463 - 8320, 582, 8320, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn copilot_rotating_item_ids_keyed_by_output_index() {
    let c = run("responses-copilot-rotating-item-ids.chunks.txt");
    assert_eq!(c.items.len(), 2, "{:#?}", c.items);
    let (text, enc, id) = reasoning(&c.items[0]);
    assert_eq!(text, "**Counting character occurrences**");
    assert_eq!(enc, None);
    // The completed item's id (the last word on this server).
    assert_eq!(id, Some("capture-id-8"));
    assert_eq!(
        c.items[1],
        msg(
            "There are **3** letter **\u{201c}r\u{201d}**s in **\u{201c}strawberry.\u{201d}**\n\nBreakdown: **s t r a w b e r r y**  \nYou can see **r** at positions **3, 8, and 9**.",
            "capture-id-68"
        )
    );
    assert_eq!(c.usage, usage(19, 105, 0, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn openrouter_raw_reasoning_and_done_sentinel() {
    let c = run("responses-openrouter-raw-cot-done-sentinel.sse");
    assert_eq!(c.items.len(), 2, "{:#?}", c.items);
    let (text, enc, id) = reasoning(&c.items[0]);
    assert_eq!(
        text,
        "The user asks: \"What is 2+2?\" They expect a straightforward answer: 4. Just answer 4."
    );
    assert_eq!(enc, None);
    assert_eq!(id, Some("rs_tmp_2kbe7x16sax"));
    assert_eq!(c.items[1], msg("4", "msg_tmp_8cjof4f6zpw"));
    assert_eq!(c.usage, usage(78, 37, 0, 0));
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn done_sentinel_alone_ends_the_stream() {
    let body = "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"m\"}}\n\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"delta\":\"hi\"}\n\ndata: [DONE]\n\n";
    let c = decode(body.as_bytes(), usize::MAX).unwrap();
    assert_eq!(c.items, vec![msg("hi", "m")]);
    assert_eq!(c.stop, StopReason::End);
}

#[test]
fn deepseek_reasoning_then_function_call_cached() {
    let c = run("responses-deepseek-reasoning-function-call-cached.sse");
    assert_eq!(c.items.len(), 2, "{:#?}", c.items);
    let (text, _, id) = reasoning(&c.items[0]);
    assert_eq!(
        text,
        "The user asks about temperature in Tokyo. I'll call the tool."
    );
    assert_eq!(id, Some("fa6f3a83-5d25-46e8-9d03-1a89ce5cf2ba"));
    assert_eq!(
        c.items[1],
        call(
            "call_00_xjY8Z2BvSlzgEmmw0DtH0464",
            "get_temperature",
            r#"{"city": "Tokyo"}"#,
            "62bf2bb7-56af-4e3a-883b-83d4aad54da1"
        )
    );
    assert_eq!(c.usage, usage(366 - 256, 59, 256, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn custom_tool_call_input_streams_without_done_event() {
    let (res, events) =
        decode_slices(&[&body_of("responses-gpt52codex-custom-tool-call.chunks.txt")]);
    let c = res.unwrap();
    assert_eq!(
        c.items,
        vec![Item::ToolCall {
            id: "call_custom_sql_001".into(),
            name: "write_sql".into(),
            arguments: "SELECT * FROM users WHERE age > 25".into(),
            kind: ToolCallKind::Custom,
            signature: None,
            provider: Some(FAM),
            item_id: Some("ct_abc123def456".into()),
        }]
    );
    assert_eq!(c.usage, usage(50, 20, 0, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
    assert!(events.contains(&StreamEvent::ToolCallDone {
        id: "call_custom_sql_001".into(),
        name: "write_sql".into(),
        arguments: "SELECT * FROM users WHERE age > 25".into(),
    }));
}

#[test]
fn gpt55_reasoning_message_and_function_call() {
    let c = run("responses-gpt55-reasoning-message-function-call.sse");
    assert_eq!(c.items.len(), 3, "{:#?}", c.items);
    let (text, enc, id) = reasoning(&c.items[0]);
    assert_eq!(text, "");
    assert!(enc.unwrap().starts_with("gAAAAABqaR"));
    assert_eq!(
        id,
        Some("rs_0fabc13af1ee0049006a691dfe60b081a1baa444d3cf19afba")
    );
    assert_eq!(
        c.items[1],
        msg(
            "I\u{2019}ll check the capital lookup tool for \u{201c}PotatoLand.\u{201d}",
            "msg_0fabc13af1ee0049006a691dfebdc881a1ae18d027c313d8ce"
        )
    );
    assert_eq!(
        c.items[2],
        call(
            "call_LabG58Uhrq9kZvR52BYKjToD",
            "get_capital",
            r#"{"country":"PotatoLand"}"#,
            "fc_0fabc13af1ee0049006a691dff0c1481a1b4a0eec7e3c753bb"
        )
    );
    assert_eq!(c.usage, usage(63, 69, 0, 0));
    assert_eq!(c.stop, StopReason::ToolUse);
}

#[test]
fn every_chunk_boundary_gives_the_same_result() {
    for name in [
        "responses-gpt55-reasoning-message-function-call.sse",
        "responses-gpt52codex-custom-tool-call.chunks.txt",
    ] {
        let body = body_of(name);
        let (want, want_events) = decode_slices(&[&body]);
        let want = want.unwrap();
        let (one, one_events) = decode_slices(&body.chunks(1).collect::<Vec<_>>());
        assert_eq!(one.unwrap(), want, "{name}: 1-byte slices");
        assert_eq!(one_events, want_events, "{name}: 1-byte slices");
        for cut in 1..body.len() {
            let (got, _) = decode_slices(&[&body[..cut], &body[cut..]]);
            assert_eq!(got.as_ref(), Ok(&want), "{name}: cut at {cut}");
        }
    }
}

#[test]
fn truncated_stream_is_broken_and_malformed_json_is_a_decode_error() {
    let body = body_of("responses-gpt4o-function-call.sse");
    let text = String::from_utf8(body).unwrap();
    let cut = text.find("event: response.output_item.done").unwrap();
    let err = decode(&text.as_bytes()[..cut], usize::MAX).unwrap_err();
    assert!(matches!(err, ClientError::StreamBroken(_)), "{err:?}");

    let err = decode(
        b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\n\n",
        usize::MAX,
    )
    .unwrap_err();
    let ClientError::Decode(m) = err else {
        panic!("{err:?}")
    };
    assert!(m.contains("response.output_text.delta"), "{m}");
}

fn completed(extra: &str) -> String {
    format!(
        "data: {{\"type\":\"response.incomplete\",\"response\":{{\"status\":\"incomplete\",{extra}\"usage\":{{\"input_tokens\":10,\"input_tokens_details\":{{\"cached_tokens\":4,\"cache_write_tokens\":2}},\"output_tokens\":5}}}}}}\n\n"
    )
}

#[test]
fn incomplete_reasons_and_refusal_map_to_stop_reasons() {
    let text =
        "data: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"delta\":\"par\"}\n\n";
    let c = decode(
        format!(
            "{text}{}",
            completed("\"incomplete_details\":{\"reason\":\"max_output_tokens\"},")
        )
        .as_bytes(),
        7,
    )
    .unwrap();
    assert_eq!(c.stop, StopReason::MaxTokens);
    assert_eq!(c.items, vec![Item::text(Role::Assistant, "par")]);
    assert_eq!(c.usage, usage(4, 5, 4, 2));

    let c = decode(
        completed("\"incomplete_details\":{\"reason\":\"content_filter\"},").as_bytes(),
        usize::MAX,
    )
    .unwrap();
    assert_eq!(c.stop, StopReason::ContentFilter);

    let refusal = "data: {\"type\":\"response.refusal.delta\",\"output_index\":0,\"delta\":\"I can't \"}\n\ndata: {\"type\":\"response.refusal.delta\",\"output_index\":0,\"delta\":\"help.\"}\n\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\"}}\n\n";
    let c = decode(refusal.as_bytes(), usize::MAX).unwrap();
    assert_eq!(c.stop, StopReason::Refusal("I can't help.".into()));
}

#[test]
fn summary_parts_are_separated() {
    let body = "data: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[]}}\n\n\
data: {\"type\":\"response.reasoning_summary_text.delta\",\"output_index\":0,\"summary_index\":0,\"delta\":\"one\"}\n\n\
data: {\"type\":\"response.reasoning_summary_text.delta\",\"output_index\":0,\"summary_index\":1,\"delta\":\"two\"}\n\n\
data: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":\"reasoning\",\"id\":\"rs_1\",\"encrypted_content\":\"ENC\",\"summary\":[]}}\n\n\
data: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\"}}\n\n";
    let c = decode(body.as_bytes(), usize::MAX).unwrap();
    assert_eq!(
        reasoning(&c.items[0]),
        ("one\n\ntwo", Some("ENC"), Some("rs_1"))
    );
}

fn schemars_like_schema() -> serde_json::Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ReadArgs",
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path"},
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

fn normalized_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path"},
            "title": {"type": "string"},
            "range": {
                "type": "object",
                "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}},
                "description": "Lines"
            }
        },
        "required": ["path"]
    })
}

#[test]
fn schema_normalisation_inlines_refs_and_drops_keywords() {
    assert_eq!(
        normalize_schema(&schemars_like_schema()),
        normalized_schema()
    );
    assert_eq!(
        normalize_schema(&json!({"$schema": "x", "title": "Empty", "type": "object"})),
        json!({"type": "object", "properties": {}})
    );
    // A recursive type terminates.
    let rec = json!({"type":"object","properties":{"n":{"$ref":"#/$defs/N"}},
        "$defs":{"N":{"type":"object","properties":{"next":{"$ref":"#/$defs/N"}}}}});
    let out = normalize_schema(&rec);
    assert_eq!(out["properties"]["n"]["type"], "object");
}

#[tokio::test]
async fn request_body_shape() {
    let history = vec![
        Item::text(Role::User, "Read two files"),
        Item::Reasoning {
            provider: FAM,
            text: "Need both.".into(),
            signature: None,
            redacted: None,
            encrypted: Some("ENC".into()),
            id: Some("rs_1".into()),
        },
        msg("Reading.", "msg_1"),
        call("call_a", "Read", r#"{"path":"a"}"#, "fc_a"),
        Item::tool_call("call_b", "Read", r#"{"path":"b"}"#),
        Item::tool_result("call_a", "read a (1 line)", Some("A".into()), false),
        Item::tool_result("call_b", "no such file", None, true),
        Item::text(Role::User, "Thanks"),
    ];
    let mut req = LlmRequest::new("gpt-5", history);
    req.system = "You are terse.".into();
    req.tools = vec![ToolSpec {
        name: "Read".into(),
        description: "Reads a file".into(),
        input_schema: schemars_like_schema(),
    }];
    req.tool_choice = ToolChoice::Tool("Read".into());
    req.max_tokens = 1000;
    req.temperature = Some(0.5);
    req.seed = Some(42);
    req.cache_key = Some("pod-7".into());
    req.extra.insert("store".into(), json!(true));
    req.extra
        .insert("reasoning".into(), json!({"effort": "high"}));
    let body = common::recorded_request(Arc::new(OpenaiResponses), &req)
        .await
        .body;
    assert_eq!(
        body,
        json!({
            "model": "gpt-5",
            "instructions": "You are terse.",
            "input": [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Read two files"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Need both."}], "encrypted_content": "ENC"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Reading."}], "id": "msg_1"},
                {"type": "function_call", "call_id": "call_a", "name": "Read", "arguments": "{\"path\":\"a\"}", "id": "fc_a"},
                {"type": "function_call", "call_id": "call_b", "name": "Read", "arguments": "{\"path\":\"b\"}"},
                {"type": "function_call_output", "call_id": "call_a", "output": "read a (1 line)\n\nA"},
                {"type": "function_call_output", "call_id": "call_b", "output": "Error: no such file"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks"}]}
            ],
            "tools": [{
                "type": "function",
                "name": "Read",
                "description": "Reads a file",
                "parameters": normalized_schema(),
                "strict": false
            }],
            "tool_choice": {"type": "function", "name": "Read"},
            "max_output_tokens": 1000,
            "temperature": 0.5,
            "stream": true,
            "store": true,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "pod-7",
            "reasoning": {"effort": "high"}
        })
    );
    assert!(body.get("seed").is_none());
    assert_eq!(
        OpenaiResponses.endpoint("https://api.openai.com/v1", "gpt-5"),
        "https://api.openai.com/v1/responses"
    );
    assert_eq!(
        OpenaiResponses.headers(Some("sk-1")),
        vec![
            ("authorization".to_string(), "Bearer sk-1".to_string()),
            ("content-type".to_string(), "application/json".to_string())
        ]
    );
    assert_eq!(OpenaiResponses.headers(None).len(), 1);
}

#[test]
fn tool_choice_variants_and_no_tools() {
    let mut req = LlmRequest::new("m", vec![Item::text(Role::User, "hi")]);
    let body = OpenaiResponses.body(&req);
    assert!(body.get("tools").is_none() && body.get("tool_choice").is_none());
    assert!(body.get("instructions").is_none());
    assert!(body.get("prompt_cache_key").is_none());
    assert_eq!(body["store"], false);
    req.tools = vec![ToolSpec {
        name: "t".into(),
        description: "d".into(),
        input_schema: json!({}),
    }];
    for (choice, want) in [
        (ToolChoice::Auto, json!("auto")),
        (ToolChoice::None, json!("none")),
        (ToolChoice::Required, json!("required")),
    ] {
        req.tool_choice = choice;
        let body = OpenaiResponses.body(&req);
        assert_eq!(body["tool_choice"], want);
        assert_eq!(
            body["tools"][0]["parameters"],
            json!({"type": "object", "properties": {}})
        );
    }
}

#[test]
fn foreign_state_is_skipped_and_own_state_echoed() {
    let history = vec![
        Item::Reasoning {
            provider: ProviderFamily::Anthropic,
            text: "thinking".into(),
            signature: Some("sig".into()),
            redacted: None,
            encrypted: None,
            id: None,
        },
        Item::ProviderItem {
            provider: ProviderFamily::Anthropic,
            value: json!({"type": "server_tool_use", "id": "srv"}),
        },
        Item::ProviderItem {
            provider: FAM,
            value: json!({"type": "web_search_call", "id": "ws_1", "status": "completed"}),
        },
        Item::Message {
            role: Role::Assistant,
            content: vec![ContentPart::text("hello")],
            id: Some("msg_foreign".into()),
            provider: Some(ProviderFamily::OpenaiChat),
        },
        Item::ToolCall {
            id: "c1".into(),
            name: "apply".into(),
            arguments: "*** patch".into(),
            kind: ToolCallKind::Custom,
            signature: Some("gem".into()),
            provider: Some(ProviderFamily::Gemini),
            item_id: Some("foreign".into()),
        },
        Item::tool_result("c1", "applied", None, false),
        Item::Reasoning {
            provider: FAM,
            text: String::new(),
            signature: None,
            redacted: None,
            encrypted: Some("E".into()),
            id: Some("rs_2".into()),
        },
        Item::text(Role::System, "note"),
    ];
    let body = OpenaiResponses.body(&LlmRequest::new("m", history));
    assert_eq!(
        body["input"],
        json!([
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
            {"type": "custom_tool_call", "call_id": "c1", "name": "apply", "input": "*** patch"},
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "applied"},
            {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "E"},
            {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "note"}]}
        ])
    );
}

#[test]
fn decoded_items_round_trip_into_the_next_request() {
    let c = run("responses-gpt55-reasoning-message-function-call.sse");
    let mut history = vec![Item::text(Role::User, "capital of PotatoLand?")];
    history.extend(c.items);
    history.push(Item::tool_result(
        "call_LabG58Uhrq9kZvR52BYKjToD",
        "unknown",
        None,
        false,
    ));
    let body = OpenaiResponses.body(&LlmRequest::new("gpt-5.5", history));
    let input = body["input"].as_array().unwrap();
    let types: Vec<&str> = input.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "message",
            "reasoning",
            "message",
            "function_call",
            "function_call_output"
        ]
    );
    assert!(
        input[1]["encrypted_content"]
            .as_str()
            .unwrap()
            .starts_with("gAAAAABqaR")
    );
    assert_eq!(
        input[3]["id"],
        "fc_0fabc13af1ee0049006a691dff0c1481a1b4a0eec7e3c753bb"
    );
}

#[test]
fn interleaved_parallel_calls_never_mix() {
    let ev = |s: &str| format!("data: {s}\n\n");
    let mut body = String::new();
    for (i, id) in [(0, "call_a"), (1, "call_b")] {
        body += &ev(&format!(
            r#"{{"type":"response.output_item.added","output_index":{i},"item":{{"type":"function_call","id":"fc_{i}","call_id":"{id}","name":"Read","arguments":""}}}}"#
        ));
    }
    for (i, frag) in [
        (1, r#"{\"path\":"#),
        (0, r#"{\"path\":"#),
        (0, r#"\"a\"}"#),
        (1, r#"\"b\"}"#),
    ] {
        body += &ev(&format!(
            r#"{{"type":"response.function_call_arguments.delta","output_index":{i},"item_id":"fc_{i}","delta":"{frag}"}}"#
        ));
    }
    for i in [1, 0] {
        body += &ev(&format!(
            r#"{{"type":"response.output_item.done","output_index":{i},"item":{{"type":"function_call","id":"fc_{i}","call_id":"{}","name":"Read"}}}}"#,
            if i == 0 { "call_a" } else { "call_b" }
        ));
    }
    // No `event:` line and no `type` would be an error; here the name comes from `event:`.
    body += "event: response.completed\ndata: {\"response\":{\"status\":\"completed\"}}\n\n";
    let c = decode(body.as_bytes(), 5).unwrap();
    assert_eq!(
        c.items,
        vec![
            call("call_a", "Read", r#"{"path":"a"}"#, "fc_0"),
            call("call_b", "Read", r#"{"path":"b"}"#, "fc_1"),
        ]
    );
    assert_eq!(c.stop, StopReason::ToolUse);
}
