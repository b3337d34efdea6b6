//! Wire-format tests: every method and event against its literal JSON line.

// Helpers here are test code too: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Debug;

use protocol::{
    Alert, AlertLevel, AlertSource, ErrorCode, Event, GrantPermission, Greeting, HookRun,
    InvokeKind, Method, PROTOCOL_VERSION, PodEvent, PodStatus, ScopeGrant, Segment, TurnResult,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Asserts `line` decodes to `value` and `value` encodes to exactly `line`.
fn assert_wire<T>(line: &str, value: T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let decoded: T =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("decoding {line} failed: {e}"));
    assert_eq!(decoded, value, "decoding {line}");
    let encoded = serde_json::to_string(&value).unwrap();
    assert_eq!(encoded, line, "encoding {value:?}");
}

fn decode<T: DeserializeOwned>(line: &str) -> T {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("decoding {line} failed: {e}"))
}

fn decode_err<T: DeserializeOwned + Debug>(line: &str) -> String {
    match serde_json::from_str::<T>(line) {
        Ok(value) => panic!("decoding {line} should fail, got {value:?}"),
        Err(e) => e.to_string(),
    }
}

fn greeting() -> Greeting {
    Greeting {
        pod_name: "main".into(),
        cwd: "/home/u/proj".into(),
        provider: "anthropic".into(),
        model: "claude".into(),
        scope_summary: "write:/home/u/proj (full)".into(),
        tools: vec!["Read".into(), "Bash".into()],
        context_window: 200_000,
        context_tokens: 1234,
    }
}

// ---------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------

#[test]
fn method_run() {
    assert_wire(
        r#"{"method":"run","params":{"input":[{"kind":"text","content":"hello "},{"kind":"file_ref","path":"src/lib.rs"},{"kind":"paste","content":"a\nb"}]}}"#,
        Method::Run {
            input: vec![
                Segment::text("hello "),
                Segment::FileRef {
                    path: "src/lib.rs".into(),
                },
                Segment::Paste {
                    content: "a\nb".into(),
                },
            ],
        },
    );
}

#[test]
fn method_notify() {
    assert_wire(
        r#"{"method":"notify","params":{"message":"build finished"}}"#,
        Method::Notify {
            message: "build finished".into(),
        },
    );
}

#[test]
fn method_pod_event_turn_ended() {
    assert_wire(
        r#"{"method":"pod_event","params":{"kind":"turn_ended","pod_name":"child"}}"#,
        Method::PodEvent(PodEvent::TurnEnded {
            pod_name: "child".into(),
        }),
    );
}

#[test]
fn method_pod_event_errored() {
    assert_wire(
        r#"{"method":"pod_event","params":{"kind":"errored","pod_name":"child","message":"provider down"}}"#,
        Method::PodEvent(PodEvent::Errored {
            pod_name: "child".into(),
            message: "provider down".into(),
        }),
    );
}

#[test]
fn method_pod_event_shut_down() {
    assert_wire(
        r#"{"method":"pod_event","params":{"kind":"shut_down","pod_name":"child"}}"#,
        Method::PodEvent(PodEvent::ShutDown {
            pod_name: "child".into(),
        }),
    );
}

#[test]
fn method_pod_event_scope_sub_delegated() {
    assert_wire(
        r#"{"method":"pod_event","params":{"kind":"scope_sub_delegated","parent_pod":"main.child","sub_pod":"main.child.grand","sub_socket":"/run/pods/main.child.grand/sock","scope":[{"target":"/p/src","permission":"write","recursive":true},{"target":"/p/docs","permission":"read","recursive":false}]}}"#,
        Method::PodEvent(PodEvent::ScopeSubDelegated {
            parent_pod: "main.child".into(),
            sub_pod: "main.child.grand".into(),
            sub_socket: "/run/pods/main.child.grand/sock".into(),
            scope: vec![
                ScopeGrant {
                    target: "/p/src".into(),
                    permission: GrantPermission::Write,
                    recursive: true,
                },
                ScopeGrant {
                    target: "/p/docs".into(),
                    permission: GrantPermission::Read,
                    recursive: false,
                },
            ],
        }),
    );
}

#[test]
fn unit_methods() {
    assert_wire(r#"{"method":"resume"}"#, Method::Resume);
    assert_wire(r#"{"method":"cancel"}"#, Method::Cancel);
    assert_wire(r#"{"method":"pause"}"#, Method::Pause);
    assert_wire(r#"{"method":"shutdown"}"#, Method::Shutdown);
}

#[test]
fn unit_method_ignores_params() {
    assert_eq!(
        decode::<Method>(r#"{"method":"shutdown","params":{"now":true}}"#),
        Method::Shutdown
    );
    assert_eq!(
        decode::<Method>(r#"{"method":"cancel","params":null}"#),
        Method::Cancel
    );
}

#[test]
fn unknown_method_decodes_with_or_without_params() {
    let unknown = Method::Unknown {
        method: "frobnicate".into(),
    };
    assert_wire(r#"{"method":"frobnicate"}"#, unknown.clone());
    assert_eq!(
        decode::<Method>(r#"{"method":"frobnicate","params":{"a":[1,{"b":null}],"c":"d"}}"#),
        unknown
    );
    assert_eq!(
        decode::<Method>(r#"{"params":[1,2,3],"method":"frobnicate"}"#),
        unknown
    );
    assert_eq!(
        decode::<Method>(r#"{"method":"frobnicate","params":"text"}"#),
        unknown
    );
    assert_eq!(unknown.name(), "frobnicate");
}

#[test]
fn wrong_params_for_known_method_is_an_error_naming_it() {
    let err = decode_err::<Method>(r#"{"method":"run","params":{"input":"hello"}}"#);
    assert!(err.contains("`params`"), "{err}");
    assert!(err.contains("method `run`"), "{err}");
    // serde_json's own position is kept once, not repeated for the inner error.
    assert_eq!(err.matches(" at line ").count(), 1, "{err}");

    let err = decode_err::<Method>(r#"{"method":"notify","params":{}}"#);
    assert!(err.contains("method `notify`"), "{err}");
    assert!(err.contains("missing field `message`"), "{err}");

    let err = decode_err::<Method>(r#"{"method":"run"}"#);
    assert!(err.contains("missing `params` for method `run`"), "{err}");

    // Content before the name takes the buffered path; same verdict.
    let err = decode_err::<Method>(r#"{"params":{"input":5},"method":"run"}"#);
    assert!(err.contains("method `run`"), "{err}");

    let err = decode_err::<Method>(r#"{"method":"pod_event","params":{"kind":"turn_ended"}}"#);
    assert!(err.contains("method `pod_event`"), "{err}");
}

#[test]
fn malformed_method_objects_are_errors() {
    let err = decode_err::<Method>(r#"{"params":{}}"#);
    assert!(err.contains("missing field `method`"), "{err}");
    decode_err::<Method>(r#"{"method":"run","method":"run","params":{"input":[]}}"#);
    decode_err::<Method>(r#"{"method":"notify","params":{"message":"a"},"params":{}}"#);
    decode_err::<Method>(r#"{"method":7}"#);
    decode_err::<Method>(r#"["run"]"#);
    decode_err::<Method>(r#""shutdown""#);
}

#[test]
fn method_accepts_params_before_name_and_extra_fields() {
    assert_eq!(
        decode::<Method>(r#"{"params":{"message":"m"},"method":"notify"}"#),
        Method::Notify {
            message: "m".into()
        }
    );
    assert_eq!(
        decode::<Method>(
            r#"{"id":7,"method":"notify","params":{"message":"m","priority":"high"},"trace":{"x":1}}"#
        ),
        Method::Notify {
            message: "m".into()
        }
    );
    assert_eq!(
        decode::<Method>(
            r#"{"method":"run","params":{"input":[{"kind":"text","content":"x","style":"bold"}],"mode":"fast"}}"#
        ),
        Method::Run {
            input: vec![Segment::text("x")]
        }
    );
}

#[test]
fn method_names() {
    let cases = [
        (Method::Run { input: vec![] }, "run"),
        (
            Method::Notify {
                message: String::new(),
            },
            "notify",
        ),
        (
            Method::PodEvent(PodEvent::TurnEnded {
                pod_name: "c".into(),
            }),
            "pod_event",
        ),
        (Method::Resume, "resume"),
        (Method::Cancel, "cancel"),
        (Method::Pause, "pause"),
        (Method::Shutdown, "shutdown"),
    ];
    for (method, name) in cases {
        assert_eq!(method.name(), name);
        let encoded = serde_json::to_value(&method).unwrap();
        assert_eq!(encoded["method"], name, "name() agrees with the wire");
    }
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

#[test]
fn event_hello() {
    assert_wire(
        r#"{"event":"hello","data":{"protocol_version":1,"pod_name":"main"}}"#,
        Event::Hello {
            protocol_version: PROTOCOL_VERSION,
            pod_name: "main".into(),
        },
    );
}

#[test]
fn event_hook() {
    assert_wire(
        r#"{"event":"hook","data":{"event":"pre_tool","command":"./check.sh","tool":"Bash","exit_code":2,"duration_ms":14,"decision":"block","message":"no curl"}}"#,
        Event::Hook(HookRun {
            event: "pre_tool".into(),
            command: "./check.sh".into(),
            tool: Some("Bash".into()),
            exit_code: Some(2),
            duration_ms: 14,
            decision: "block".into(),
            message: Some("no curl".into()),
        }),
    );
    // A run that timed out has no exit code, and nothing optional is sent empty.
    assert_wire(
        r#"{"event":"hook","data":{"event":"turn_end","command":"sleep 9","duration_ms":300,"decision":"error"}}"#,
        Event::Hook(HookRun {
            event: "turn_end".into(),
            command: "sleep 9".into(),
            tool: None,
            exit_code: None,
            duration_ms: 300,
            decision: "error".into(),
            message: None,
        }),
    );
}

#[test]
fn event_alert() {
    assert_wire(
        r#"{"event":"alert","data":{"level":"warn","source":"registry","message":"lock slow","timestamp_ms":1700000000000}}"#,
        Event::Alert(Alert {
            level: AlertLevel::Warn,
            source: AlertSource::Registry,
            message: "lock slow".into(),
            timestamp_ms: 1_700_000_000_000,
        }),
    );
    for (level, text) in [(AlertLevel::Warn, "warn"), (AlertLevel::Error, "error")] {
        assert_eq!(serde_json::to_value(level).unwrap(), json!(text));
    }
    for (source, text) in [
        (AlertSource::Pod, "pod"),
        (AlertSource::Worker, "worker"),
        (AlertSource::Tool, "tool"),
        (AlertSource::Registry, "registry"),
    ] {
        assert_eq!(serde_json::to_value(source).unwrap(), json!(text));
    }
}

#[test]
fn event_snapshot() {
    assert_wire(
        r#"{"event":"snapshot","data":{"entries":[{"kind":"segment_start","seq":1},{"item":{"text":"hi"},"kind":"assistant_item","seq":2}],"greeting":{"pod_name":"main","cwd":"/home/u/proj","provider":"anthropic","model":"claude","scope_summary":"write:/home/u/proj (full)","tools":["Read","Bash"],"context_window":200000,"context_tokens":1234},"status":"running"}}"#,
        Event::Snapshot {
            entries: vec![
                json!({"kind": "segment_start", "seq": 1}),
                json!({"item": {"text": "hi"}, "kind": "assistant_item", "seq": 2}),
            ],
            greeting: greeting(),
            status: PodStatus::Running,
        },
    );
}

#[test]
fn event_status() {
    for (status, text) in [
        (PodStatus::Idle, "idle"),
        (PodStatus::Running, "running"),
        (PodStatus::Paused, "paused"),
    ] {
        assert_wire(
            &format!(r#"{{"event":"status","data":{{"status":"{text}"}}}}"#),
            Event::Status { status },
        );
    }
}

#[test]
fn event_invoke_start() {
    for (kind, text) in [
        (InvokeKind::UserSend, "user_send"),
        (InvokeKind::Resume, "resume"),
        (InvokeKind::Notify, "notify"),
        (InvokeKind::PodEvent, "pod_event"),
    ] {
        assert_wire(
            &format!(r#"{{"event":"invoke_start","data":{{"kind":"{text}"}}}}"#),
            Event::InvokeStart { kind },
        );
    }
}

#[test]
fn event_user_message() {
    assert_wire(
        r#"{"event":"user_message","data":{"segments":[{"kind":"text","content":"hello"}]}}"#,
        Event::UserMessage {
            segments: vec![Segment::text("hello")],
        },
    );
}

#[test]
fn event_turn_start_and_end() {
    assert_wire(
        r#"{"event":"turn_start","data":{"turn":3}}"#,
        Event::TurnStart { turn: 3 },
    );
    for (result, text) in [
        (TurnResult::Finished, "finished"),
        (TurnResult::Paused, "paused"),
        (TurnResult::Cancelled, "cancelled"),
        (TurnResult::LimitReached, "limit_reached"),
        (TurnResult::Failed, "failed"),
    ] {
        assert_wire(
            &format!(r#"{{"event":"turn_end","data":{{"turn":3,"result":"{text}"}}}}"#),
            Event::TurnEnd { turn: 3, result },
        );
    }
}

#[test]
fn event_llm_calls() {
    assert_wire(
        r#"{"event":"llm_call_start","data":{"llm_call":7}}"#,
        Event::LlmCallStart { llm_call: 7 },
    );
    assert_wire(
        r#"{"event":"llm_call_end","data":{"llm_call":7}}"#,
        Event::LlmCallEnd { llm_call: 7 },
    );
}

#[test]
fn event_text_and_thinking() {
    assert_wire(
        r#"{"event":"text_delta","data":{"text":"Hel"}}"#,
        Event::TextDelta { text: "Hel".into() },
    );
    assert_wire(
        r#"{"event":"text_done","data":{"text":"Hello \"world\"\n"}}"#,
        Event::TextDone {
            text: "Hello \"world\"\n".into(),
        },
    );
    assert_wire(r#"{"event":"thinking_start"}"#, Event::ThinkingStart);
    assert_wire(
        r#"{"event":"thinking_delta","data":{"text":"hm"}}"#,
        Event::ThinkingDelta { text: "hm".into() },
    );
    assert_wire(
        r#"{"event":"thinking_done","data":{"text":"hmm"}}"#,
        Event::ThinkingDone { text: "hmm".into() },
    );
}

#[test]
fn event_tool_calls() {
    assert_wire(
        r#"{"event":"tool_call_start","data":{"id":"call_1","name":"Read"}}"#,
        Event::ToolCallStart {
            id: "call_1".into(),
            name: "Read".into(),
        },
    );
    assert_wire(
        r#"{"event":"tool_call_args_delta","data":{"id":"call_1","json":"{\"pa"}}"#,
        Event::ToolCallArgsDelta {
            id: "call_1".into(),
            json: "{\"pa".into(),
        },
    );
    assert_wire(
        r#"{"event":"tool_call_done","data":{"id":"call_1","name":"Read","arguments":"{\"path\":\"a.rs\"}"}}"#,
        Event::ToolCallDone {
            id: "call_1".into(),
            name: "Read".into(),
            arguments: r#"{"path":"a.rs"}"#.into(),
        },
    );
}

#[test]
fn event_tool_result_with_and_without_content() {
    assert_wire(
        r#"{"event":"tool_result","data":{"id":"call_1","summary":"read 3 lines","content":"a\nb\nc","is_error":false}}"#,
        Event::ToolResult {
            id: "call_1".into(),
            summary: "read 3 lines".into(),
            content: Some("a\nb\nc".into()),
            is_error: false,
        },
    );
    assert_wire(
        r#"{"event":"tool_result","data":{"id":"call_2","summary":"denied","is_error":true}}"#,
        Event::ToolResult {
            id: "call_2".into(),
            summary: "denied".into(),
            content: None,
            is_error: true,
        },
    );
    assert_eq!(
        decode::<Event>(
            r#"{"event":"tool_result","data":{"id":"c","summary":"s","content":null,"is_error":false}}"#
        ),
        Event::ToolResult {
            id: "c".into(),
            summary: "s".into(),
            content: None,
            is_error: false,
        }
    );
}

#[test]
fn event_usage() {
    assert_wire(
        r#"{"event":"usage","data":{"input_tokens":10,"output_tokens":20,"cache_read_tokens":30,"cache_write_tokens":40}}"#,
        Event::Usage {
            input_tokens: 10,
            output_tokens: 20,
            cache_read_tokens: 30,
            cache_write_tokens: 40,
        },
    );
}

#[test]
fn event_entry_is_the_log_line_itself() {
    assert_wire(
        r#"{"event":"entry","data":{"hash":"ab12","item":{"content":[{"text":"hi","type":"text"}],"role":"assistant"},"kind":"assistant_item","seq":5}}"#,
        Event::Entry(json!({
            "hash": "ab12",
            "item": {"content": [{"text": "hi", "type": "text"}], "role": "assistant"},
            "kind": "assistant_item",
            "seq": 5,
        })),
    );
    let err = decode_err::<Event>(r#"{"event":"entry"}"#);
    assert!(err.contains("missing `data` for event `entry`"), "{err}");
}

#[test]
fn event_run_end_lagged_ack() {
    assert_wire(
        r#"{"event":"run_end","data":{"result":"limit_reached"}}"#,
        Event::RunEnd {
            result: TurnResult::LimitReached,
        },
    );
    assert_wire(
        r#"{"event":"lagged","data":{"from_seq":42}}"#,
        Event::Lagged { from_seq: 42 },
    );
    assert_wire(
        r#"{"event":"ack","data":{"seq":43}}"#,
        Event::Ack { seq: 43 },
    );
}

#[test]
fn event_error_every_code() {
    for (code, text) in [
        (ErrorCode::AlreadyRunning, "already_running"),
        (ErrorCode::NotRunning, "not_running"),
        (ErrorCode::NotPaused, "not_paused"),
        (ErrorCode::InvalidRequest, "invalid_request"),
        (ErrorCode::ProviderError, "provider_error"),
        (ErrorCode::ToolError, "tool_error"),
        (ErrorCode::ScopeConflict, "scope_conflict"),
        (ErrorCode::LimitExceeded, "limit_exceeded"),
        (ErrorCode::Internal, "internal"),
        (ErrorCode::Unknown, "unknown"),
    ] {
        assert_wire(
            &format!(r#"{{"event":"error","data":{{"code":"{text}","message":"..."}}}}"#),
            Event::Error {
                code,
                message: "...".into(),
            },
        );
    }
}

#[test]
fn unknown_error_code_decodes() {
    assert_eq!(
        decode::<Event>(r#"{"event":"error","data":{"code":"quota_exhausted","message":"m"}}"#),
        Event::Error {
            code: ErrorCode::Unknown,
            message: "m".into(),
        }
    );
}

#[test]
fn event_shutdown() {
    assert_wire(r#"{"event":"shutdown"}"#, Event::Shutdown);
}

#[test]
fn unknown_event_decodes_with_or_without_data() {
    let unknown = Event::Unknown {
        event: "compaction_progress".into(),
    };
    assert_wire(r#"{"event":"compaction_progress"}"#, unknown.clone());
    assert_eq!(
        decode::<Event>(r#"{"event":"compaction_progress","data":{"percent":40,"detail":[1,2]}}"#),
        unknown
    );
    assert_eq!(
        decode::<Event>(r#"{"data":{"percent":40},"event":"compaction_progress"}"#),
        unknown
    );
    assert_eq!(unknown.name(), "compaction_progress");
}

#[test]
fn wrong_data_for_known_event_is_an_error_naming_it() {
    let err = decode_err::<Event>(r#"{"event":"text_delta","data":{"text":5}}"#);
    assert!(
        err.contains("invalid `data` for event `text_delta`"),
        "{err}"
    );
    let err = decode_err::<Event>(r#"{"event":"usage"}"#);
    assert!(err.contains("missing `data` for event `usage`"), "{err}");
}

#[test]
fn event_ignores_extra_fields_and_reads_escaped_names() {
    assert_eq!(
        decode::<Event>(
            r#"{"event":"text_delta","seq":9,"data":{"text":"a","block":2},"ts":"now"}"#
        ),
        Event::TextDelta { text: "a".into() }
    );
    // An escaped name cannot be borrowed from the input; it must still match.
    assert_eq!(
        decode::<Event>(r#"{"event":"text\u005fdelta","data":{"text":"a"}}"#),
        Event::TextDelta { text: "a".into() }
    );
    assert_eq!(
        decode::<Event>(
            r#"{"event":"snapshot","data":{"entries":[],"greeting":{"pod_name":"main","cwd":"/home/u/proj","provider":"anthropic","model":"claude","scope_summary":"write:/home/u/proj (full)","tools":["Read","Bash"],"context_window":200000,"context_tokens":1234,"theme":"dark"},"status":"idle","compacted":true}}"#
        ),
        Event::Snapshot {
            entries: vec![],
            greeting: greeting(),
            status: PodStatus::Idle,
        }
    );
}

#[test]
fn events_decode_from_a_reader_and_a_value() {
    // `from_reader` cannot borrow names; `from_value` goes through serde_json's Value deserializer.
    let line = r#"{"event":"tool_result","data":{"id":"c","summary":"s","is_error":true}}"#;
    let expected: Event = decode(line);
    let from_reader: Event = serde_json::from_reader(line.as_bytes()).unwrap();
    assert_eq!(from_reader, expected);
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    let from_value: Event = serde_json::from_value(value).unwrap();
    assert_eq!(from_value, expected);
    let unknown: Event = serde_json::from_value(json!({"event": "new", "data": 1})).unwrap();
    assert_eq!(
        unknown,
        Event::Unknown {
            event: "new".into()
        }
    );
}

#[test]
fn event_names_agree_with_the_wire() {
    let events = [
        Event::Hello {
            protocol_version: 1,
            pod_name: "p".into(),
        },
        Event::Alert(Alert {
            level: AlertLevel::Error,
            source: AlertSource::Tool,
            message: "m".into(),
            timestamp_ms: 0,
        }),
        Event::Hook(HookRun {
            event: "turn_end".into(),
            command: "true".into(),
            tool: None,
            exit_code: Some(0),
            duration_ms: 1,
            decision: "continue".into(),
            message: None,
        }),
        Event::Snapshot {
            entries: vec![],
            greeting: Greeting::default(),
            status: PodStatus::Idle,
        },
        Event::Status {
            status: PodStatus::Paused,
        },
        Event::InvokeStart {
            kind: InvokeKind::Notify,
        },
        Event::UserMessage { segments: vec![] },
        Event::TurnStart { turn: 1 },
        Event::TurnEnd {
            turn: 1,
            result: TurnResult::Failed,
        },
        Event::LlmCallStart { llm_call: 1 },
        Event::LlmCallEnd { llm_call: 1 },
        Event::TextDelta { text: "t".into() },
        Event::TextDone { text: "t".into() },
        Event::ThinkingStart,
        Event::ThinkingDelta { text: "t".into() },
        Event::ThinkingDone { text: "t".into() },
        Event::ToolCallStart {
            id: "i".into(),
            name: "n".into(),
        },
        Event::ToolCallArgsDelta {
            id: "i".into(),
            json: "{".into(),
        },
        Event::ToolCallDone {
            id: "i".into(),
            name: "n".into(),
            arguments: "{}".into(),
        },
        Event::ToolResult {
            id: "i".into(),
            summary: "s".into(),
            content: None,
            is_error: false,
        },
        Event::Usage {
            input_tokens: 1,
            output_tokens: 2,
            cache_read_tokens: 3,
            cache_write_tokens: 4,
        },
        Event::Entry(json!({"seq": 1})),
        Event::RunEnd {
            result: TurnResult::Finished,
        },
        Event::Lagged { from_seq: 1 },
        Event::Ack { seq: 1 },
        Event::Error {
            code: ErrorCode::Internal,
            message: "m".into(),
        },
        Event::Shutdown,
    ];
    for event in events {
        let encoded = serde_json::to_value(&event).unwrap();
        assert_eq!(encoded["event"], event.name(), "{event:?}");
        let decoded: Event = serde_json::from_value(encoded).unwrap();
        assert_eq!(decoded, event);
    }
}

// ---------------------------------------------------------------------------
// Segments and pod events on their own
// ---------------------------------------------------------------------------

#[test]
fn unknown_segment_kind_decodes() {
    assert_eq!(
        decode::<Segment>(r#"{"kind":"image","url":"https://x/y.png","size":{"w":3,"h":4}}"#),
        Segment::Unknown
    );
    assert_eq!(decode::<Segment>(r#"{"kind":"image"}"#), Segment::Unknown);
    assert_wire(r#"{"kind":"unknown"}"#, Segment::Unknown);
    // Inside a method, an unknown segment does not spoil the known ones.
    assert_eq!(
        decode::<Method>(
            r#"{"method":"run","params":{"input":[{"kind":"image","url":"u"},{"kind":"text","content":"see"}]}}"#
        ),
        Method::Run {
            input: vec![Segment::Unknown, Segment::text("see")]
        }
    );
}

#[test]
fn segment_with_a_known_kind_and_wrong_fields_is_an_error() {
    decode_err::<Segment>(r#"{"kind":"text"}"#);
    decode_err::<Segment>(r#"{"content":"no kind"}"#);
}

#[test]
fn unknown_pod_event_kind_decodes() {
    assert_eq!(
        decode::<PodEvent>(r#"{"kind":"budget_low","pod_name":"child","remaining":[1,2]}"#),
        PodEvent::Unknown
    );
    assert_eq!(
        decode::<Method>(r#"{"method":"pod_event","params":{"kind":"budget_low","x":1}}"#),
        Method::PodEvent(PodEvent::Unknown)
    );
    assert_wire(r#"{"kind":"unknown"}"#, PodEvent::Unknown);
}

#[test]
fn flatten_to_text() {
    let segments = [
        Segment::text("compare "),
        Segment::FileRef {
            path: "a.rs".into(),
        },
        Segment::text(" with "),
        Segment::Paste {
            content: "fn main() {}".into(),
        },
        Segment::Unknown,
        Segment::text(String::from("!")),
    ];
    assert_eq!(
        Segment::flatten_to_text(&segments),
        "compare @a.rs with fn main() {}!"
    );
    assert_eq!(Segment::flatten_to_text(&[]), "");
    assert_eq!(Segment::flatten_to_text(&[Segment::text("hello")]), "hello");
}
