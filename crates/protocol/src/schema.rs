//! Schema adjustments for enums whose `#[serde(other)]` fallback accepts any name.

use schemars::Schema;
use serde_json::Value;

/// Makes the `"unknown"` fallback variant of a `#[serde(other)]` enum accept any name.
///
/// schemars describes the fallback as the literal name `"unknown"`, but
/// decoding maps every name it does not know to it; so its `const` is
/// dropped and, since the fallback now overlaps the other variants, `oneOf`
/// becomes `anyOf`. Works both for string enums and for enums tagged with
/// `"kind"`.
pub(crate) fn open_fallback(schema: &mut Schema) {
    let Some(mut variants) = schema.remove("oneOf") else {
        return;
    };
    if let Some(list) = variants.as_array_mut() {
        for variant in list {
            let name = match variant.pointer_mut("/properties/kind") {
                Some(kind) => kind,
                None => variant,
            };
            if let Some(name) = name.as_object_mut()
                && name.get("const") == Some(&Value::from("unknown"))
            {
                name.remove("const");
                name.insert(
                    "description".into(),
                    "Any name this version does not know; decodes to the `unknown` fallback."
                        .into(),
                );
            }
        }
    }
    schema.insert("anyOf".into(), variants);
}
