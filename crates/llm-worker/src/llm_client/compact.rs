//! Tool definitions shortened for models with a small context window.
//!
//! A 1.5B model with an 8k window pays ~2k tokens for six full tool
//! definitions, and every request of a cold invocation reads them again at
//! ~85 tokens/s on two cores. The compact form keeps what a model needs to call
//! a tool right (names, types, required fields, enum values, the first sentence
//! of each description) and drops the rest: the long explanations, defaults,
//! numeric bounds, and the descriptions of optional parameters. The tool still
//! checks every argument and explains a mistake in its result.

use serde_json::{Map, Value};

use super::request::ToolSpec;
use super::schema::inline_refs;

/// Marks a parameter the compact form leaves out (`#[schemars(extend("x-pods-advanced"
/// = true))]`): an optional one a small model fills with guesses when offered
/// (it passed `"model": "rust"` to `SpawnPod`).
pub(crate) const ADVANCED: &str = "x-pods-advanced";

/// The compact form of `spec`: its description cut to the first sentence, its
/// schema to [`compact_schema`].
pub(crate) fn compact_spec(spec: &ToolSpec) -> ToolSpec {
    ToolSpec {
        name: spec.name.clone(),
        description: first_sentence(&spec.description).to_string(),
        input_schema: compact_schema(&spec.input_schema),
    }
}

/// `text` up to and including its first full stop that ends a sentence (one
/// followed by white space and a capital letter or a backtick, not `e.g.` or
/// `i.e.`), or all of it.
pub(crate) fn first_sentence(text: &str) -> &str {
    let text = text.trim();
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices(". ") {
        let before = &text[..i];
        if before.ends_with("e.g") || before.ends_with("i.e") || before.ends_with("etc") {
            continue;
        }
        let next = text[i + 2..].trim_start();
        if next
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_uppercase() || b == b'`')
        {
            return &text[..=i];
        }
    }
    // A description may end its first sentence at a line break.
    match bytes.iter().position(|&b| b == b'\n') {
        Some(nl) if nl > 0 && bytes[nl - 1] == b'.' => &text[..nl],
        _ => text,
    }
}

/// Keywords that bound or illustrate a value but do not change how to call.
const DROPPED: [&str; 10] = [
    "default",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "examples",
    "additionalProperties",
];

/// The schema without [`ADVANCED`] properties, with local `$ref`s inlined,
/// optional properties undescribed,
/// required ones described by their first sentence, `[T, "null"]` types and
/// `anyOf [X, null]` unions reduced to `T`/`X`, unions of string constants
/// turned into `enum`s, and [`DROPPED`] keywords (and the root's description,
/// which repeats the tool's) removed.
pub(crate) fn compact_schema(schema: &Value) -> Value {
    let mut out = node(&inline_refs(&without_advanced(schema)));
    if let Value::Object(root) = &mut out {
        root.remove("description");
    }
    out
}

fn node(value: &Value) -> Value {
    let Value::Object(obj) = value else {
        return value.clone();
    };
    if let Some(inner) = non_null_variant(obj) {
        // `anyOf [X, null]`: the siblings describe this use of X, so they win.
        let mut merged = match node(inner) {
            Value::Object(m) => m,
            other => return other,
        };
        for (k, v) in obj {
            if k != "anyOf" && k != "oneOf" && !DROPPED.contains(&k.as_str()) {
                merged.insert(k.clone(), short(k, v));
            }
        }
        return Value::Object(merged);
    }
    let required: Vec<&str> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = Map::with_capacity(obj.len());
    for (k, v) in obj {
        match k.as_str() {
            key if DROPPED.contains(&key) => {}
            "type" => {
                out.insert(k.clone(), without_null(v));
            }
            "properties" => {
                let Value::Object(props) = v else {
                    out.insert(k.clone(), v.clone());
                    continue;
                };
                let props = props
                    .iter()
                    .map(|(name, s)| {
                        let mut s = node(s);
                        if !required.contains(&name.as_str())
                            && let Value::Object(m) = &mut s
                        {
                            m.remove("description");
                        }
                        (name.clone(), s)
                    })
                    .collect();
                out.insert(k.clone(), Value::Object(props));
            }
            "oneOf" | "anyOf" => match string_constants(v) {
                Some(values) => {
                    out.insert("type".into(), Value::String("string".into()));
                    out.insert("enum".into(), Value::Array(values));
                }
                None => {
                    out.insert(k.clone(), node(v));
                }
            },
            "description" => {
                out.insert(k.clone(), short(k, v));
            }
            "enum" | "const" | "required" => {
                out.insert(k.clone(), v.clone());
            }
            _ => {
                out.insert(
                    k.clone(),
                    match v {
                        Value::Array(items) => Value::Array(items.iter().map(node).collect()),
                        other => node(other),
                    },
                );
            }
        }
    }
    Value::Object(out)
}

/// `value` without the properties marked [`ADVANCED`] (nor their names in
/// `required`), at any depth and in `$defs`.
fn without_advanced(value: &Value) -> Value {
    match value {
        Value::Object(obj) => {
            let advanced: Vec<&String> = obj
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| {
                    p.iter()
                        .filter(|(_, s)| s.get(ADVANCED) == Some(&Value::Bool(true)))
                        .map(|(name, _)| name)
                        .collect()
                })
                .unwrap_or_default();
            let mut out = Map::with_capacity(obj.len());
            for (k, v) in obj {
                let v = match (k.as_str(), v) {
                    ("properties", Value::Object(props)) => Value::Object(
                        props
                            .iter()
                            .filter(|(name, _)| !advanced.contains(name))
                            .map(|(name, s)| (name.clone(), without_advanced(s)))
                            .collect(),
                    ),
                    ("required", Value::Array(names)) => Value::Array(
                        names
                            .iter()
                            .filter(|n| !advanced.iter().any(|a| n.as_str() == Some(a.as_str())))
                            .cloned()
                            .collect(),
                    ),
                    ("enum" | "const" | "default" | "examples", _) => v.clone(),
                    _ => without_advanced(v),
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(without_advanced).collect()),
        other => other.clone(),
    }
}

/// A description cut to its first sentence; any other value unchanged.
fn short(key: &str, value: &Value) -> Value {
    match (key, value) {
        ("description", Value::String(s)) => Value::String(first_sentence(s).to_string()),
        _ => value.clone(),
    }
}

/// `["T", "null"]` → `"T"` (a property that may be null is simply optional).
fn without_null(ty: &Value) -> Value {
    match ty {
        Value::Array(types) => {
            let rest: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
            match rest.as_slice() {
                [one] => (*one).clone(),
                _ => Value::Array(rest.into_iter().cloned().collect()),
            }
        }
        other => other.clone(),
    }
}

/// X of an `anyOf`/`oneOf` holding exactly X and `{"type": "null"}`.
fn non_null_variant(obj: &Map<String, Value>) -> Option<&Value> {
    let variants = obj.get("anyOf").or_else(|| obj.get("oneOf"))?.as_array()?;
    let is_null = |v: &Value| v.get("type").is_some_and(|t| t == "null");
    match variants.as_slice() {
        [a, b] if is_null(b) && !is_null(a) => Some(a),
        [a, b] if is_null(a) && !is_null(b) => Some(b),
        _ => None,
    }
}

/// The values of a union whose every variant is a string constant.
fn string_constants(variants: &Value) -> Option<Vec<Value>> {
    let variants = variants.as_array()?;
    if variants.is_empty() {
        return None;
    }
    variants
        .iter()
        .map(|v| {
            let c = v.get("const").or_else(|| {
                v.get("enum")
                    .and_then(Value::as_array)
                    .filter(|e| e.len() == 1)
                    .and_then(|e| e.first())
            })?;
            c.is_string().then(|| c.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_sentences() {
        assert_eq!(
            first_sentence("Reads a file. `path` is relative. More."),
            "Reads a file."
        );
        assert_eq!(
            first_sentence("Finds files (e.g. `**/*.rs`). Returns paths."),
            "Finds files (e.g. `**/*.rs`)."
        );
        assert_eq!(
            first_sentence("Version 1.2 of it. done"),
            "Version 1.2 of it. done"
        );
        assert_eq!(first_sentence("One line.\nSecond line"), "One line.");
        assert_eq!(first_sentence("  No stop at all  "), "No stop at all");
        assert_eq!(first_sentence(""), "");
    }

    #[test]
    fn a_schemars_schema_keeps_what_a_call_needs() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "GrepInput",
            "description": "Arguments of `Grep`.",
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "The regex. Rust syntax."},
                "path": {"type": ["string", "null"], "description": "Where.", "default": null},
                "context": {"type": ["integer", "null"], "format": "uint", "minimum": 0,
                            "description": "Lines around.", "default": null},
                "mode": {
                    "anyOf": [{"$ref": "#/$defs/Mode"}, {"type": "null"}],
                    "description": "What to return. Long story."
                }
            },
            "required": ["pattern", "mode"],
            "$defs": {"Mode": {"oneOf": [
                {"type": "string", "const": "files", "description": "Paths."},
                {"type": "string", "const": "content", "description": "Lines."}
            ], "description": "What Grep returns."}}
        });
        assert_eq!(
            compact_schema(&schema),
            json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string", "description": "The regex."},
                    "path": {"type": "string"},
                    "context": {"type": "integer"},
                    "mode": {"type": "string", "enum": ["files", "content"],
                             "description": "What to return."}
                },
                "required": ["pattern", "mode"]
            })
        );
    }

    #[test]
    fn nested_objects_and_arrays_are_compacted_and_other_unions_kept() {
        let schema = json!({
            "type": "object",
            "properties": {
                "rules": {"type": "array", "description": "Rules. Many.", "items": {
                    "type": "object",
                    "description": "One rule.",
                    "properties": {
                        "target": {"type": "string", "description": "Path. Absolute or not."},
                        "recursive": {"type": "boolean", "default": true, "description": "Subtree."}
                    },
                    "required": ["target"]
                }},
                "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]}
            },
            "required": ["rules"]
        });
        assert_eq!(
            compact_schema(&schema),
            json!({
                "type": "object",
                "properties": {
                    "rules": {"type": "array", "description": "Rules.", "items": {
                        "type": "object",
                        "description": "One rule.",
                        "properties": {
                            "target": {"type": "string", "description": "Path."},
                            "recursive": {"type": "boolean"}
                        },
                        "required": ["target"]
                    }},
                    "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]}
                },
                "required": ["rules"]
            })
        );
    }

    #[test]
    fn advanced_parameters_are_left_out_and_the_marker_never_sent() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "model": {"type": ["string", "null"], "x-pods-advanced": true},
                "inner": {"$ref": "#/$defs/Inner"}
            },
            "required": ["name", "model"],
            "$defs": {"Inner": {"type": "object", "properties": {
                "deep": {"type": "integer", "x-pods-advanced": true},
                "kept": {"type": "integer"}
            }}}
        });
        assert_eq!(
            compact_schema(&schema),
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "inner": {"type": "object", "properties": {"kept": {"type": "integer"}}}
                },
                "required": ["name"]
            })
        );
        // The full form keeps the parameter but not the marker.
        let full = inline_refs(&schema);
        assert_eq!(
            full["properties"]["model"],
            json!({"type": ["string", "null"]})
        );
        assert!(!full.to_string().contains("x-pods-"), "{full}");
    }

    #[test]
    fn a_spec_gets_its_first_sentence() {
        let spec = ToolSpec {
            name: "Write".into(),
            description: "Writes a file. Missing dirs are created.".into(),
            input_schema: json!({"type": "object", "properties": {}}),
        };
        let c = compact_spec(&spec);
        assert_eq!(c.name, "Write");
        assert_eq!(c.description, "Writes a file.");
        assert_eq!(c.input_schema, json!({"type": "object", "properties": {}}));
    }
}
