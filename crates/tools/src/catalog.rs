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
        let input: I = serde_json::from_str(input_json)
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
