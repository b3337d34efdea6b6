//! The `Write` tool: creates a file, or replaces one this pod has read and that has not
//! changed since, atomically (temporary file, fsync, rename) and within the scope.

use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;
use tool::ToolOutput;

use crate::context::ToolContext;
use crate::edit::diff_of;
use crate::error::FileToolError;
use crate::partial_write::{self, Merged};
use crate::read_before_write::{current_if_read, record_written};
use crate::scoped_fs::{self, CheckedPath};

/// Arguments of `Write`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct WriteInput {
    /// The file to write: absolute, or relative to the pod's working directory.
    pub path: String,
    /// The complete new content of the file.
    pub content: String,
    /// Replace the file whole even when `content` looks like only a part of it
    /// (in the small-model profile such a part is merged into the file).
    #[serde(default)]
    #[schemars(extend("x-pods-advanced" = true))]
    pub whole: Option<bool>,
}

/// What `Write` tells the model.
pub const DESCRIPTION: &str = "Writes a file inside this pod's write scope, replacing it \
whole. `path` is absolute or relative to the working directory; missing parent directories \
are created. A new file can be written directly; an existing file must have been Read by \
this pod first and not changed since (otherwise Read it again). The write is atomic and \
keeps the file's permissions. Prefer Edit for changing part of a file.";

/// Runs `Write`.
pub fn write(ctx: &ToolContext, input: &WriteInput) -> Result<ToolOutput, FileToolError> {
    let checked = scoped_fs::check_write(ctx, Path::new(&input.path))?;
    let before = current_if_read(ctx, &checked)?;
    if ctx.merges_partial_writes()
        && !input.whole.unwrap_or(false)
        && let Some(old) = before.as_deref()
        && let Ok(old) = std::str::from_utf8(old)
        && let Some(merged) = partial_write::merge(old, &input.content)
    {
        return write_merged(ctx, &checked, old, merged);
    }
    let bytes = input.content.as_bytes();
    let written = checked.write_atomic(ctx, bytes)?;
    record_written(ctx, checked.canonical(), bytes, &written);
    let lines = input.content.lines().count();
    let verb = if written.created || before.is_none() {
        "Created"
    } else {
        "Overwrote"
    };
    let content = before
        .as_ref()
        .and_then(|old| lines_lost(&String::from_utf8_lossy(old), &input.content));
    Ok(ToolOutput {
        summary: format!(
            "{verb} {} ({} bytes, {lines} lines)",
            checked.canonical().display(),
            written.size
        ),
        content,
    })
}

/// Writes a partial write merged into the file, and says so with the diff.
fn write_merged(
    ctx: &ToolContext,
    checked: &CheckedPath,
    old: &str,
    merged: Merged,
) -> Result<ToolOutput, FileToolError> {
    let name = checked.canonical().display().to_string();
    if merged.content == old {
        return Ok(ToolOutput {
            summary: format!("Left {name} as it was"),
            content: Some(merged.note),
        });
    }
    let bytes = merged.content.as_bytes();
    let written = checked.write_atomic(ctx, bytes)?;
    record_written(ctx, checked.canonical(), bytes, &written);
    let diff = diff_of(&name, old, &merged.content, ctx.output_limit());
    Ok(ToolOutput {
        summary: format!(
            "Merged into {name} (+{} -{} lines)",
            diff.added, diff.removed
        ),
        content: Some(format!(
            "{}\n{} (To replace the file whole instead, call Write with \"whole\": true.)",
            diff.unified, merged.note
        )),
    })
}

/// Lines shown of what an overwrite dropped.
const LOST_SHOWN: usize = 5;

/// What an overwrite dropped: the non-blank lines of `old` that `new` no
/// longer has (a model asked to add a function that writes only the new one
/// loses the rest; told, it can write the file again). `None` when nothing was.
fn lines_lost(old: &str, new: &str) -> Option<String> {
    let kept: std::collections::HashSet<&str> = new.lines().map(str::trim_end).collect();
    let lost: Vec<&str> = old
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !kept.contains(l))
        .collect();
    if lost.is_empty() {
        return None;
    }
    let mut text = format!(
        "The file no longer has {} of its lines, e.g.:\n",
        lost.len()
    );
    for line in lost.iter().take(LOST_SHOWN) {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(
        "If they should stay, write the file again with them (or use Edit to add to it).",
    );
    Some(text)
}
