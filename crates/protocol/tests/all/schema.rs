//! The checked-in JSON Schemas under `schema/` match the types.
//!
//! Regenerate them with `UPDATE_SCHEMA=1 cargo test -p protocol --test all schema`.

// Helpers here are test code too: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use protocol::{Event, Method};
use schemars::{Schema, schema_for};
use serde_json::Value;

fn check_schema_file(file: &str, schema: &Schema) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(file);
    let fresh = serde_json::to_string_pretty(schema).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "{} is stale (or missing): the wire types changed. Regenerate it with \
         `UPDATE_SCHEMA=1 cargo test -p protocol --test all schema` and review the diff.",
        path.display()
    );
}

#[test]
fn method_schema_is_current() {
    check_schema_file("method.json", &schema_for!(Method));
}

#[test]
fn event_schema_is_current() {
    check_schema_file("event.json", &schema_for!(Event));
}

/// The names a tagged schema lists as `const` under `tag`, and whether it has an open fallback.
fn tag_names(schema: &Schema, tag: &str) -> (BTreeSet<String>, bool) {
    let variants = schema
        .get("anyOf")
        .and_then(Value::as_array)
        .expect("a tagged enum with a fallback is an anyOf");
    let mut names = BTreeSet::new();
    let mut open = false;
    for variant in variants {
        let name = &variant["properties"][tag];
        assert_eq!(name["type"], "string", "{variant}");
        match name.get("const").and_then(Value::as_str) {
            Some(n) => {
                names.insert(n.to_owned());
            }
            None => open = true,
        }
    }
    (names, open)
}

#[test]
fn method_schema_lists_every_name_and_an_open_fallback() {
    let (names, open) = tag_names(&schema_for!(Method), "method");
    let expected: BTreeSet<String> = [
        "run",
        "notify",
        "pod_event",
        "resume",
        "cancel",
        "pause",
        "shutdown",
        "compact",
        "watch_approvals",
        "approvals",
        "approve",
        "deny",
        "approval_update",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, expected);
    assert!(open, "unknown methods must be allowed by the schema");
}

#[test]
fn event_schema_lists_every_name_and_an_open_fallback() {
    let (names, open) = tag_names(&schema_for!(Event), "event");
    assert_eq!(names.len(), 33, "{names:?}");
    for name in [
        "hello",
        "snapshot",
        "entry",
        "tool_result",
        "shutdown",
        "ack",
        "hook",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    assert!(open, "unknown events must be allowed by the schema");
}

#[test]
fn fallback_kinds_are_open_in_the_schema() {
    let schema = serde_json::to_value(schema_for!(Method)).unwrap();
    for def in ["Segment", "PodEvent"] {
        let variants = schema["$defs"][def]["anyOf"]
            .as_array()
            .unwrap_or_else(|| panic!("{def} is an anyOf"));
        let open = variants
            .iter()
            .filter(|v| v["properties"]["kind"].get("const").is_none())
            .count();
        assert_eq!(open, 1, "{def} has one open fallback");
    }
    let schema = serde_json::to_value(schema_for!(Event)).unwrap();
    let codes = schema["$defs"]["ErrorCode"]["anyOf"].as_array().unwrap();
    assert_eq!(codes.iter().filter(|v| v.get("const").is_none()).count(), 1);
}
