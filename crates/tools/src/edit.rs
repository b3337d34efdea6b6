//! The `Edit` tool: replaces an exact piece of text in a file this pod has read, and
//! shows the change as a unified diff.

use std::borrow::Cow;
use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;
use similar::TextDiff;
use tool::ToolOutput;

use crate::context::ToolContext;
use crate::error::FileToolError;
use crate::read_before_write::{current_if_read, record_written};
use crate::scoped_fs;

/// Lines of unchanged context around each change in the diff.
const DIFF_CONTEXT: usize = 3;

/// Arguments of `Edit`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct EditInput {
    /// The file to change: absolute, or relative to the pod's working directory.
    pub path: String,
    /// The exact text to replace (whitespace and indentation included).
    pub old_string: String,
    /// The text to put in its place.
    pub new_string: String,
    /// Replace every occurrence instead of requiring exactly one (default false).
    #[serde(default)]
    #[schemars(extend("x-pods-advanced" = true))]
    pub replace_all: Option<bool>,
}

/// What `Edit` tells the model.
pub const DESCRIPTION: &str = "Replaces text in a file inside this pod's write scope. \
`old_string` must match the file exactly (including whitespace and indentation) and occur \
exactly once, unless `replace_all` is true. The file must have been Read by this pod first \
and not changed since. Returns a unified diff of the change.";

/// The strings to replace with, in the file's line endings: Read shows CRLF lines
/// without their `\r`, so a multi-line `old_string` copied from it has bare `\n`. When
/// that does not match as given but matches with CRLF endings, both strings are
/// converted.
fn line_endings_of<'a>(
    file: &str,
    old_string: &'a str,
    new_string: &'a str,
) -> (Cow<'a, str>, Cow<'a, str>) {
    let bare_lf = old_string.contains('\n') && !old_string.contains("\r\n");
    if bare_lf && file.contains("\r\n") && !file.contains(old_string) {
        let crlf = old_string.replace('\n', "\r\n");
        if file.contains(&crlf) {
            return (crlf.into(), new_string.replace('\n', "\r\n").into());
        }
    }
    (old_string.into(), new_string.into())
}

/// Runs `Edit`.
pub fn edit(ctx: &ToolContext, input: &EditInput) -> Result<ToolOutput, FileToolError> {
    if input.old_string.is_empty() {
        return Err(FileToolError::BadInput(
            "old_string is empty; give the exact text to replace (use Write to create a file)"
                .into(),
        ));
    }
    if input.old_string == input.new_string {
        return Err(FileToolError::BadInput(
            "old_string and new_string are the same; there is nothing to change".into(),
        ));
    }
    let checked = scoped_fs::check_write(ctx, Path::new(&input.path))?;
    let path = checked.canonical().to_path_buf();
    let Some(bytes) = current_if_read(ctx, &checked)? else {
        return Err(FileToolError::EditMissing { path });
    };
    let old = String::from_utf8(bytes).map_err(|e| FileToolError::NotText {
        path: path.clone(),
        reason: format!("invalid byte at offset {}", e.utf8_error().valid_up_to()),
    })?;
    let (old_string, new_string) = line_endings_of(&old, &input.old_string, &input.new_string);
    let count = old.matches(old_string.as_ref()).count();
    let replace_all = input.replace_all.unwrap_or(false);
    match count {
        0 => return Err(FileToolError::NoMatch { path }),
        1 => {}
        _ if replace_all => {}
        _ => return Err(FileToolError::NotUnique { path, count }),
    }
    let new = if replace_all {
        old.replace(old_string.as_ref(), &new_string)
    } else {
        old.replacen(old_string.as_ref(), &new_string, 1)
    };
    let written = checked.write_atomic(ctx, new.as_bytes())?;
    record_written(ctx, &path, new.as_bytes(), &written);

    let name = path.display().to_string();
    let Diff {
        unified: mut content,
        added,
        removed,
    } = diff_of(&name, &old, &new, ctx.output_limit());
    let occurrences = if count == 1 {
        "1 occurrence".to_owned()
    } else {
        format!("{count} occurrences")
    };
    if let Some(left) = names_left(ctx, &input.old_string, &input.new_string) {
        content.push_str(&left);
    }
    Ok(ToolOutput {
        summary: format!("Edited {name}: replaced {occurrences} (+{added} -{removed} lines)"),
        content: Some(content),
    })
}

/// A change to a file as the model is shown it.
pub(crate) struct Diff {
    /// The unified diff, capped at the tool output limit.
    pub unified: String,
    /// Lines added.
    pub added: usize,
    /// Lines removed.
    pub removed: usize,
}

/// The diff from `old` to `new` of the file called `name`.
pub(crate) fn diff_of(name: &str, old: &str, new: &str, limit: usize) -> Diff {
    let diff = TextDiff::from_lines(old, new);
    let (mut added, mut removed) = (0usize, 0usize);
    for change in diff.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Insert => added += 1,
            similar::ChangeTag::Delete => removed += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    let unified = diff
        .unified_diff()
        .context_radius(DIFF_CONTEXT)
        .header(name, name)
        .to_string();
    Diff {
        unified: tool::cap(&unified, limit),
        added,
        removed,
    }
}

/// The names (identifiers of 3 or more characters) `old` had and `new` has
/// not, where they are still found in the files this pod has seen (read,
/// written or had attached): so a rename done in one place points at the
/// rest of it. `None` when there are none.
fn names_left(ctx: &ToolContext, old: &str, new: &str) -> Option<String> {
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| {
                w.chars().count() >= 3 && w.starts_with(|c: char| c.is_alphabetic() || c == '_')
            })
            .map(str::to_owned)
            .collect()
    };
    let kept = words(new);
    let mut gone: Vec<String> = Vec::new();
    for w in words(old) {
        if !kept.contains(&w) && !gone.contains(&w) {
            gone.push(w);
        }
    }
    if gone.is_empty() {
        return None;
    }
    let mut found = Vec::new();
    for path in ctx.seen_files() {
        // What the pod has seen is bounded by what it read: a big file is
        // skipped rather than searched.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if text.len() > 256 * 1024 {
            continue;
        }
        for word in &gone {
            let n = text
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .filter(|w| w == word)
                .count();
            if n > 0 {
                let shown = path
                    .strip_prefix(ctx.cwd())
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                found.push(format!("`{word}` in {shown} ({n}×)"));
            }
        }
    }
    (!found.is_empty()).then(|| format!("\nStill there: {}.", found.join(", ")))
}
