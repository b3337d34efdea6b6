//! `docs/protocol.md` must show every method and event, and every example in it
//! must decode to a known (not `unknown`) variant that re-encodes to the same line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use protocol::{Event, Method};

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every line inside a ```json block of the document.
fn example_lines() -> Vec<String> {
    let doc = read("../../docs/protocol.md");
    let mut in_json = false;
    let mut out = Vec::new();
    for line in doc.lines() {
        match line.trim() {
            "```json" => in_json = true,
            "```" => in_json = false,
            l if in_json && !l.is_empty() => out.push(l.to_string()),
            _ => {}
        }
    }
    out
}

/// The wire names a generated schema lists (its variants' `const` names).
fn schema_names(file: &str, tag: &str) -> BTreeSet<String> {
    let schema: serde_json::Value = serde_json::from_str(&read(file)).unwrap();
    schema["anyOf"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.pointer(&format!("/properties/{tag}/const")))
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_example_decodes_and_every_name_is_documented() {
    let mut methods = BTreeSet::new();
    let mut events = BTreeSet::new();
    for line in example_lines() {
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {line}: {e}"));
        if value.get("method").is_some() {
            let m: Method = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert!(
                !matches!(m, Method::Unknown { .. }),
                "unknown method in {line}"
            );
            assert_eq!(serde_json::to_string(&m).unwrap(), line, "re-encoding");
            methods.insert(m.name().to_string());
        } else {
            let e: Event = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert!(
                !matches!(e, Event::Unknown { .. }),
                "unknown event in {line}"
            );
            assert_eq!(serde_json::to_string(&e).unwrap(), line, "re-encoding");
            events.insert(e.name().to_string());
        }
    }
    let want_methods = schema_names("schema/method.json", "method");
    let want_events = schema_names("schema/event.json", "event");
    assert!(want_methods.len() >= 7 && want_events.len() >= 26);
    let missing: Vec<_> = want_methods.difference(&methods).collect();
    assert!(
        missing.is_empty(),
        "methods without an example: {missing:?}"
    );
    let missing: Vec<_> = want_events.difference(&events).collect();
    assert!(missing.is_empty(), "events without an example: {missing:?}");
}
