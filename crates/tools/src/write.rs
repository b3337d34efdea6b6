//! The `Write` tool: creates a file, or replaces one this pod has read and that has not
//! changed since, atomically (temporary file, fsync, rename) and within the scope.

use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;
use tool::ToolOutput;

use crate::context::ToolContext;
use crate::error::FileToolError;
use crate::read_before_write::{current_if_read, record_written};
use crate::scoped_fs;

/// Arguments of `Write`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct WriteInput {
    /// The file to write: absolute, or relative to the pod's working directory.
    pub path: String,
    /// The complete new content of the file.
    pub content: String,
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
