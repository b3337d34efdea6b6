//! The `Glob` tool: files under a directory whose path matches a glob pattern, newest
//! first, honouring `.gitignore` like ripgrep and never showing what the scope hides.

use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use globset::GlobBuilder;
use ignore::WalkBuilder;
use sandbox::beneath::BeneathError;
use schemars::JsonSchema;
use serde::Deserialize;
use tool::ToolOutput;

use crate::context::ToolContext;
use crate::error::FileToolError;
use crate::scoped_fs;
use crate::walk::{may_read, readable_filter};

/// How many paths one call lists at most.
pub(crate) const MAX_RESULTS: usize = 100;

/// Arguments of `Glob`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct GlobInput {
    /// The pattern, e.g. `**/*.rs` or `src/**/mod.rs`. It is matched against paths relative
    /// to `path`: `*` and `?` stay within one directory, `**` crosses directories, `{a,b}`
    /// and `[a-z]` as usual.
    pub pattern: String,
    /// The directory to search (default: the working directory).
    #[serde(default)]
    pub path: Option<String>,
}

/// What `Glob` tells the model.
pub const DESCRIPTION: &str = "Finds files by name pattern inside this pod's readable scope. \
`pattern` is matched against paths relative to `path` (default: the working directory): \
`*` and `?` stay within one directory, `**` crosses directories (e.g. `**/*.rs`, \
`src/**/test_*.py`, `*.{json,toml}`). Files ignored by .gitignore and the .git directory are \
skipped; hidden files are included. Returns absolute paths, most recently modified first, \
at most 100.";

/// Whether a path component holds glob syntax.
fn has_glob_syntax(component: &str) -> bool {
    component.contains(['*', '?', '[', ']', '{', '}'])
}

/// Splits an absolute pattern into its literal directory prefix and the glob below it.
fn split_absolute(pattern: &str) -> (PathBuf, String) {
    let mut base = PathBuf::from("/");
    let mut rest = Vec::new();
    for component in Path::new(pattern).components() {
        match component {
            Component::Normal(c) if rest.is_empty() && !has_glob_syntax(&c.to_string_lossy()) => {
                base.push(c);
            }
            Component::RootDir => {}
            other => rest.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    // The last literal component may be the file name itself (`/a/b/c.rs`).
    if rest.is_empty()
        && let Some(name) = base.file_name().map(|n| n.to_string_lossy().into_owned())
    {
        base.pop();
        rest.push(name);
    }
    (base, rest.join("/"))
}

/// Runs `Glob`.
pub fn glob(ctx: &ToolContext, input: &GlobInput) -> Result<ToolOutput, FileToolError> {
    let (base, pattern) = if input.pattern.starts_with('/') {
        if input.path.is_some() {
            return Err(FileToolError::BadInput(
                "pattern is absolute and path is given; give either an absolute pattern or a relative pattern with path".into(),
            ));
        }
        split_absolute(&input.pattern)
    } else {
        let base = input
            .path
            .as_deref()
            .map_or_else(|| ctx.cwd().to_path_buf(), PathBuf::from);
        (base, input.pattern.clone())
    };
    if pattern.is_empty() {
        return Err(FileToolError::BadInput("pattern is empty".into()));
    }
    let matcher = GlobBuilder::new(&pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| FileToolError::BadInput(format!("invalid glob pattern `{pattern}`: {e}")))?
        .compile_matcher();

    let checked = scoped_fs::check_read(ctx, &base)?;
    let root = checked.canonical().to_path_buf();
    // Opening it proves it is a directory reachable without symlinks, and serves to
    // re-check the results below.
    let dir = checked.open_dir()?;
    let scope = ctx.scope_now();

    let mut found: Vec<(Option<SystemTime>, PathBuf)> = Vec::new();
    let walker = WalkBuilder::new(&root)
        .hidden(false)
        .follow_links(false)
        .filter_entry({
            let keep = readable_filter(ctx);
            move |entry| entry.file_name() != ".git" && keep(entry)
        })
        .build();
    for entry in walker.flatten() {
        if entry.depth() == 0 || entry.file_type().is_none_or(|t| t.is_dir()) {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(&root) else {
            continue;
        };
        if !matcher.is_match(rel) || !may_read(&scope, entry.path()) {
            continue;
        }
        let modified = entry.metadata().ok().and_then(|m| m.modified().ok());
        found.push((modified, entry.into_path()));
    }
    // Newest first; ties (and unknown times) by path, so the order is stable.
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));

    let total = found.len();
    if total == 0 {
        return Ok(ToolOutput {
            summary: format!("No files match `{pattern}` under {}", root.display()),
            content: None,
        });
    }
    let budget = ctx.output_limit().saturating_sub(128);
    let mut out = String::new();
    let mut shown = 0usize;
    for (_, path) in &found {
        if shown == MAX_RESULTS {
            break;
        }
        // A directory swapped for a symlink during the walk could have shown names from
        // elsewhere: list only what still opens beneath the root without symlinks.
        let Ok(rel) = path.strip_prefix(&root) else {
            continue;
        };
        if let Err(BeneathError::Raced { .. }) = dir.open_dir(rel.parent().unwrap_or(Path::new("")))
        {
            continue;
        }
        let line = format!("{}\n", path.display());
        if out.len() + line.len() > budget && shown > 0 {
            break;
        }
        out.push_str(&line);
        shown += 1;
    }
    let mut summary = format!(
        "Found {total} file{} matching `{pattern}` under {}",
        if total == 1 { "" } else { "s" },
        root.display()
    );
    if shown < total {
        summary.push_str(&format!(", showing the {shown} newest"));
        out.push_str(&format!(
            "[{} more not shown; narrow the pattern or the path]\n",
            total - shown
        ));
    }
    Ok(ToolOutput {
        summary,
        content: Some(out),
    })
}
