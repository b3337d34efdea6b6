//! Tool input schemas (from schemars) made portable: local `$ref`s inlined and
//! the keywords no provider needs dropped. Anthropic and both OpenAI schemes
//! take the result as is; Gemini, which accepts only an OpenAPI subset, has a
//! stricter rewrite of its own (`gemini::normalize_schema`).

use serde_json::{Map, Value, json};

/// `$ref` expansions nested deeper than this are cut to "anything" (`{}`): a
/// recursive type cannot be inlined forever.
pub(crate) const MAX_REF_DEPTH: usize = 32;

/// The prefix of the schema keywords pods adds for itself (e.g.
/// [`super::compact::ADVANCED`]); no provider is sent them.
pub(crate) const POD_KEYWORD_PREFIX: &str = "x-pods-";

/// Keywords whose values are data, not schemas: copied verbatim (a default
/// value may well contain a key called `title`).
const VERBATIM: [&str; 4] = ["default", "const", "enum", "examples"];

/// The definitions a schema's local `$ref`s point into (`$defs` and
/// `definitions`, the latter from older generators).
fn definitions(schema: &Value) -> Map<String, Value> {
    let mut defs = Map::new();
    for key in ["definitions", "$defs"] {
        if let Some(Value::Object(d)) = schema.get(key) {
            defs.extend(d.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    defs
}

/// Inlines local `$ref`s (`#/$defs/X`, `#/definitions/X`; the `$ref`'s
/// siblings win over the target's keywords) and drops `$schema`, `$defs`,
/// `definitions`, `title` and pods' own `x-pods-*` keywords. Property names are
/// kept whatever they are.
pub(crate) fn inline_refs(schema: &Value) -> Value {
    node(schema, &definitions(schema), 0)
}

fn node(value: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    match value {
        Value::Object(obj) => {
            let mut out = Map::with_capacity(obj.len());
            if let Some(Value::String(r)) = obj.get("$ref") {
                let target = r
                    .strip_prefix("#/$defs/")
                    .or_else(|| r.strip_prefix("#/definitions/"))
                    .and_then(|name| defs.get(name));
                if let Some(target) = target
                    && depth < MAX_REF_DEPTH
                    && let Value::Object(t) = node(target, defs, depth + 1)
                {
                    out = t;
                }
                // An unknown or too deep reference accepts anything.
            }
            for (k, v) in obj {
                match k.as_str() {
                    "$ref" | "$schema" | "$defs" | "definitions" => {}
                    // Our own annotations (`compact::ADVANCED`), for us only.
                    key if key.starts_with(POD_KEYWORD_PREFIX) => {}
                    // The keyword is a string; anything else would be data.
                    "title" if v.is_string() => {}
                    "properties" | "patternProperties" => {
                        let props = match v {
                            Value::Object(p) => Value::Object(
                                p.iter()
                                    .map(|(name, s)| (name.clone(), node(s, defs, depth)))
                                    .collect(),
                            ),
                            other => other.clone(),
                        };
                        out.insert(k.clone(), props);
                    }
                    key if VERBATIM.contains(&key) => {
                        out.insert(k.clone(), v.clone());
                    }
                    _ => {
                        out.insert(k.clone(), node(v, defs, depth));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| node(v, defs, depth)).collect()),
        other => other.clone(),
    }
}

/// Makes `schema` a valid function-parameters root: an object schema with
/// `properties` (a schema that is not an object becomes the empty object
/// schema; a root union `anyOf`/`oneOf` is left alone when `allow_union`).
pub(crate) fn object_root(mut schema: Value, allow_union: bool) -> Value {
    let Some(obj) = schema.as_object_mut() else {
        return json!({"type": "object", "properties": {}});
    };
    let keep_union = allow_union && (obj.contains_key("anyOf") || obj.contains_key("oneOf"));
    if !obj.contains_key("type") && !keep_union {
        obj.insert("type".into(), json!("object"));
    }
    if obj.get("type") == Some(&json!("object")) && !obj.contains_key("properties") {
        obj.insert("properties".into(), json!({}));
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_inlined_with_their_siblings_winning() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Input",
            "type": "object",
            "properties": {
                "title": {"type": "string", "title": "Title"},
                "range": {"$ref": "#/$defs/Range", "description": "Lines"},
                "old": {"$ref": "#/definitions/Old"}
            },
            "$defs": {"Range": {"title": "Range", "type": "object", "description": "a range",
                                "properties": {"start": {"type": "integer", "default": {"title": 1}}}}},
            "definitions": {"Old": {"type": "string"}}
        });
        assert_eq!(
            inline_refs(&schema),
            json!({
                "type": "object",
                "properties": {
                    "title": {"type": "string"},
                    "range": {"type": "object", "description": "Lines",
                              "properties": {"start": {"type": "integer", "default": {"title": 1}}}},
                    "old": {"type": "string"}
                }
            })
        );
    }

    #[test]
    fn recursion_and_unknown_refs_accept_anything() {
        let schema = json!({"$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
                            "$ref": "#/$defs/Node"});
        let out = inline_refs(&schema);
        let mut depth = 0;
        let mut cursor = &out;
        while let Some(next) = cursor.get("properties").and_then(|p| p.get("next")) {
            cursor = next;
            depth += 1;
        }
        assert_eq!(depth, MAX_REF_DEPTH);
        assert_eq!(inline_refs(&json!({"$ref": "#/$defs/Missing"})), json!({}));
    }

    #[test]
    fn roots_become_object_schemas() {
        assert_eq!(
            object_root(json!(true), false),
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(
            object_root(json!({}), false),
            json!({"type": "object", "properties": {}})
        );
        let union = json!({"anyOf": [{"type": "string"}]});
        assert_eq!(object_root(union.clone(), true), union);
        assert_eq!(object_root(union, false)["type"], "object");
    }
}
