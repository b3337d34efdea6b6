//! The definitions the worker registers: names, descriptions and input schemas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::Fixture;
use tools::file_tools;

#[test]
fn five_tools_with_plain_object_schemas() {
    let fx = Fixture::new();
    let metas: Vec<_> = file_tools(fx.ctx()).iter().map(|def| def().0).collect();
    let names: Vec<_> = metas.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["Read", "Write", "Edit", "Glob", "Grep"]);
    for meta in &metas {
        assert!(!meta.description.is_empty(), "{}", meta.name);
        assert_eq!(meta.input_schema["type"], "object", "{}", meta.name);
        assert!(meta.input_schema.get("$schema").is_none(), "{}", meta.name);
        assert!(meta.input_schema.get("$defs").is_none(), "{}", meta.name);
    }
    let props = |i: usize| {
        let mut keys: Vec<String> = metas[i].input_schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(props(0), ["limit", "offset", "path"]);
    assert_eq!(props(1), ["content", "path", "whole"]);
    assert_eq!(
        props(2),
        ["new_string", "old_string", "path", "replace_all"]
    );
    assert_eq!(props(3), ["path", "pattern"]);
    assert_eq!(
        props(4),
        ["context", "glob", "output_mode", "path", "pattern", "type"]
    );
    let required = |i: usize| metas[i].input_schema["required"].clone();
    assert_eq!(required(0), serde_json::json!(["path"]));
    assert_eq!(required(4), serde_json::json!(["pattern"]));
    let modes = serde_json::to_string(&metas[4].input_schema["properties"]["output_mode"]).unwrap();
    for mode in ["files_with_matches", "content", "count"] {
        assert!(modes.contains(mode), "{modes}");
    }
}
