//! The file tools as the worker sees them: one [`ToolDefinition`] each for `Read`,
//! `Write`, `Edit`, `Glob` and `Grep`, sharing one [`ToolContext`].
//!
//! Each call parses its arguments (unknown fields are ignored), then runs on tokio's
//! blocking pool: file I/O and directory walks must not stall the async workers.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::de::DeserializeOwned;
use tool::{Tool, ToolDefinition, ToolError, ToolMeta, ToolOutput};

use crate::context::ToolContext;
use crate::edit::{self, EditInput};
use crate::error::FileToolError;
use crate::glob::{self, GlobInput};
use crate::grep::{self, GrepInput};
use crate::read::{self, ReadInput};
use crate::write::{self, WriteInput};

/// The JSON Schema of a tool's arguments, inlined and without a `$schema` key (providers
/// want a plain object schema).
pub fn input_schema<T: JsonSchema>() -> serde_json::Value {
    SchemaSettings::draft2020_12()
        .with(|s| {
            s.meta_schema = None;
            s.inline_subschemas = true;
        })
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// A tool's arguments from the model's JSON. Arguments that do not parse
/// as they are get one repair, used only when it makes them parse: string
/// values that spell a boolean or an integer (`"replace_all": "true"`, a
/// small model's near miss) become one. The error is the original's.
fn parse_arguments<I: DeserializeOwned>(input_json: &str) -> Result<I, serde_json::Error> {
    let first = match serde_json::from_str(input_json) {
        Ok(input) => return Ok(input),
        Err(e) => e,
    };
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(input_json) else {
        return Err(first);
    };
    // Booleans first, then integers too: a string field holding digits
    // (an Edit of "1" to "2") stays a string when booleans were the mistake.
    for numbers in [false, true] {
        let mut fields = fields.clone();
        let mut changed = false;
        for value in fields.values_mut() {
            let serde_json::Value::String(s) = value else {
                continue;
            };
            let fixed = match s.trim() {
                "true" => serde_json::Value::Bool(true),
                "false" => serde_json::Value::Bool(false),
                t if numbers => match t.parse::<u64>() {
                    Ok(n) => serde_json::Value::from(n),
                    Err(_) => continue,
                },
                _ => continue,
            };
            *value = fixed;
            changed = true;
        }
        if changed && let Ok(input) = serde_json::from_value(serde_json::Value::Object(fields)) {
            return Ok(input);
        }
    }
    Err(first)
}

/// A file tool: its arguments type and the function that runs it.
struct FileTool<I> {
    ctx: ToolContext,
    run: fn(&ToolContext, &I) -> Result<ToolOutput, FileToolError>,
}

#[async_trait]
impl<I> Tool for FileTool<I>
where
    I: DeserializeOwned + Send + 'static,
{
    async fn execute(&self, input_json: &str) -> Result<ToolOutput, ToolError> {
        let input: I = parse_arguments(input_json)
            .map_err(|e| ToolError::InvalidArgument(format!("arguments do not parse: {e}")))?;
        let ctx = self.ctx.clone();
        let run = self.run;
        tokio::task::spawn_blocking(move || run(&ctx, &input))
            .await
            .map_err(|e| ToolError::from(FileToolError::Task(e.to_string())))?
            .map_err(ToolError::from)
    }
}

/// A definition building fresh instances of one file tool over a shared context.
fn definition<I>(
    ctx: &ToolContext,
    name: &'static str,
    description: &'static str,
    run: fn(&ToolContext, &I) -> Result<ToolOutput, FileToolError>,
) -> ToolDefinition
where
    I: JsonSchema + DeserializeOwned + Send + Sync + 'static,
{
    let ctx = ctx.clone();
    let schema = input_schema::<I>();
    Arc::new(move || {
        let meta = ToolMeta::new(name)
            .description(description)
            .input_schema(schema.clone());
        let tool: Arc<dyn Tool> = Arc::new(FileTool {
            ctx: ctx.clone(),
            run,
        });
        (meta, tool)
    })
}

/// The file tools `Read`, `Write`, `Edit`, `Glob` and `Grep`, all confined to the scope
/// of `ctx` and sharing its read records.
pub fn file_tools(ctx: ToolContext) -> Vec<ToolDefinition> {
    vec![
        definition::<ReadInput>(&ctx, "Read", read::DESCRIPTION, read::read),
        definition::<WriteInput>(&ctx, "Write", write::DESCRIPTION, write::write),
        definition::<EditInput>(&ctx, "Edit", edit::DESCRIPTION, edit::edit),
        definition::<GlobInput>(&ctx, "Glob", glob::DESCRIPTION, glob::glob),
        definition::<GrepInput>(&ctx, "Grep", grep::DESCRIPTION, grep::grep),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::EditInput;
    use crate::read::ReadInput;

    #[test]
    fn booleans_and_integers_sent_as_strings_are_repaired() {
        let e: EditInput = parse_arguments(
            r#"{"path":"a.py","old_string":"tmo","new_string":"t","replace_all":"true"}"#,
        )
        .unwrap();
        assert_eq!(e.replace_all, Some(true));
        let r: ReadInput =
            parse_arguments(r#"{"path":"a.py","offset":"10","limit":" 5 "}"#).unwrap();
        assert_eq!((r.offset, r.limit), (Some(10), Some(5)));
        let e: EditInput = parse_arguments(
            r#"{"path":"a.py","old_string":"1","new_string":"2","replace_all":"true"}"#,
        )
        .unwrap();
        assert_eq!((e.old_string.as_str(), e.replace_all), ("1", Some(true)));
    }

    #[test]
    fn other_mistakes_keep_their_original_error() {
        // A string where a string belongs is never turned into a number.
        let r: ReadInput = parse_arguments(r#"{"path":"10"}"#).unwrap();
        assert_eq!(r.path, "10");
        let err = parse_arguments::<EditInput>(r#"{"path":"a.py","replace_all":"yes"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("old_string") || err.contains("yes"), "{err}");
        assert!(parse_arguments::<ReadInput>("not json").is_err());
    }
}
