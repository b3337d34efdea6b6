//! `protocol::raw` builds the same lines as `Event`, with entries copied verbatim.

// Helpers here are test code too: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use protocol::{Event, Greeting, PodStatus, raw};
use serde_json::json;

#[test]
fn entry_line_embeds_the_log_line_verbatim() {
    // Keys deliberately unsorted: a Value round trip could reorder them.
    let log_line = "{\"seq\":4,\"kind\":\"assistant_item\",\"item\":{\"z\":1,\"a\":2.50}}\n";
    let line = raw::entry_line(log_line).unwrap();
    assert_eq!(
        line,
        r#"{"event":"entry","data":{"seq":4,"kind":"assistant_item","item":{"z":1,"a":2.50}}}"#
    );
    let decoded: Event = serde_json::from_str(&line).unwrap();
    assert_eq!(
        decoded,
        Event::Entry(json!({"seq": 4, "kind": "assistant_item", "item": {"z": 1, "a": 2.5}}))
    );
}

#[test]
fn snapshot_line_matches_the_typed_encoding() {
    let greeting = Greeting {
        pod_name: "main".into(),
        tools: vec!["Read".into()],
        context_window: 1000,
        ..Greeting::default()
    };
    let log_lines = ["{\"a\":1,\"kind\":\"x\"}\n", "{\"b\":[true,null]}"];
    let line = raw::snapshot_line(log_lines, &greeting, PodStatus::Paused).unwrap();
    let typed = Event::Snapshot {
        entries: vec![json!({"a": 1, "kind": "x"}), json!({"b": [true, null]})],
        greeting,
        status: PodStatus::Paused,
    };
    assert_eq!(line, serde_json::to_string(&typed).unwrap());
    assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), typed);

    let empty = raw::snapshot_line([], &Greeting::default(), PodStatus::Idle).unwrap();
    assert!(empty.starts_with(r#"{"event":"snapshot","data":{"entries":[],"greeting":"#));
}

#[test]
fn lines_that_are_not_one_json_value_are_refused() {
    assert!(raw::entry_line("{\"a\":").is_err());
    assert!(raw::entry_line("{} {}").is_err());
    assert!(raw::entry_line("").is_err());
    assert!(raw::snapshot_line(["{}", "nope"], &Greeting::default(), PodStatus::Idle).is_err());
}
