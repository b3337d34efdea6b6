//! The manifest's JSON Schema (`schema/manifest.json`, for editors and validators) is
//! generated from [`manifest::ManifestLayer`] and checked in; `docs/manifest.md`
//! documents every key the schema has, and its examples parse.
//!
//! Regenerate the schema with `UPDATE_SCHEMA=1 cargo test -p manifest --test all schema`.

// Helpers here are test code too: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use manifest::ManifestLayer;
use schemars::schema_for;
use serde_json::Value;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_checked_in_schema_is_current() {
    let path = crate_dir().join("schema/manifest.json");
    let fresh = serde_json::to_string_pretty(&schema_for!(ManifestLayer)).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "{} is stale (or missing): the manifest types changed. Regenerate it with \
         `UPDATE_SCHEMA=1 cargo test -p manifest --test all schema` and review the diff.",
        path.display()
    );
}

/// Every `table.key` of the schema (e.g. `model.base_url`, `scope.allow.target`).
fn schema_keys() -> Vec<String> {
    let schema = serde_json::to_value(schema_for!(ManifestLayer)).unwrap();
    let defs = &schema["$defs"];
    // A property's definition, through `$ref`, `anyOf` (options) and `items` (lists).
    fn target<'a>(defs: &'a Value, v: &'a Value) -> Option<&'a Value> {
        if let Some(r) = v.get("$ref").and_then(Value::as_str) {
            return defs.get(r.trim_start_matches("#/$defs/"));
        }
        if let Some(items) = v.get("items") {
            return target(defs, items);
        }
        v.get("anyOf")?
            .as_array()?
            .iter()
            .find_map(|alt| target(defs, alt))
    }
    let mut keys = Vec::new();
    for (table, table_schema) in schema["properties"].as_object().unwrap() {
        let def = target(defs, table_schema).unwrap();
        for (key, key_schema) in def["properties"].as_object().unwrap() {
            keys.push(format!("{table}.{key}"));
            if let Some(rule) = target(defs, key_schema).and_then(|d| d.get("properties")) {
                for field in rule.as_object().unwrap().keys() {
                    keys.push(format!("{table}.{key}.{field}"));
                }
            }
        }
    }
    keys
}

fn doc() -> String {
    std::fs::read_to_string(crate_dir().join("../../docs/manifest.md")).unwrap()
}

#[test]
fn the_reference_documents_every_key() {
    let doc = doc();
    let keys = schema_keys();
    assert!(keys.len() > 20, "{keys:?}");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !doc.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/manifest.md does not document {missing:?}"
    );
}

#[test]
fn the_references_examples_parse() {
    let doc = doc();
    let mut blocks = 0;
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").unwrap();
        ManifestLayer::parse(&body[..end], "docs/manifest.md")
            .unwrap_or_else(|e| panic!("example {} does not parse: {e}", blocks + 1));
        blocks += 1;
        rest = &body[end..];
    }
    assert!(blocks >= 1, "no toml example in docs/manifest.md");
}
