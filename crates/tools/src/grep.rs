//! The `Grep` tool: a regex search over files in the scope, built on ripgrep's own
//! libraries (`grep-regex`, `grep-searcher`, `ignore`) and walking in parallel like `rg`.
//!
//! It behaves like `rg` by default (gitignore honoured, hidden files and binary files
//! skipped) with two differences that come from the scope: unreadable subtrees are
//! pruned silently, and every file is opened beneath the search root's handle without
//! following symlinks, so nothing outside what was checked can be searched.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use grep_regex::{RegexMatcher, RegexMatcherBuilder};
use grep_searcher::{
    BinaryDetection, Searcher, SearcherBuilder, Sink, SinkContext, SinkContextKind, SinkMatch,
};
use ignore::overrides::OverrideBuilder;
use ignore::types::TypesBuilder;
use ignore::{WalkBuilder, WalkState};
use schemars::JsonSchema;
use serde::Deserialize;
use tool::ToolOutput;

use crate::context::ToolContext;
use crate::error::FileToolError;
use crate::read::cut_line;
use crate::scoped_fs::{self, DirHandle};
use crate::walk::readable_filter;

/// Characters of one matching line shown before it is cut.
pub(crate) const MAX_LINE_CHARS: usize = 500;
/// Bytes of the output cap kept free for the closing note.
const NOTE_ROOM: usize = 256;

/// What `Grep` returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// The paths of files with at least one match (the default).
    #[default]
    FilesWithMatches,
    /// Matching lines as `path:line:text` (context lines as `path-line-text`).
    Content,
    /// The number of matching lines per file, as `path:count`.
    Count,
}

/// Arguments of `Grep`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct GrepInput {
    /// The regular expression (Rust regex syntax, like ripgrep; `(?i)` for case-insensitive).
    pub pattern: String,
    /// The file or directory to search (default: the working directory), or a glob
    /// such as `src/**/*.py` for the files it matches.
    #[serde(default)]
    pub path: Option<String>,
    /// Only search files whose path matches this glob (e.g. `*.rs`, `src/**/*.ts`).
    #[serde(default)]
    #[schemars(extend("x-pods-advanced" = true))]
    pub glob: Option<String>,
    /// Only search files of this ripgrep file type (e.g. `rust`, `py`, `js`, `md`).
    #[serde(default, rename = "type")]
    #[schemars(extend("x-pods-advanced" = true))]
    pub file_type: Option<String>,
    /// `files_with_matches` (default), `content` or `count`.
    #[serde(default)]
    pub output_mode: Option<OutputMode>,
    /// Lines of context shown before and after each match (content mode only).
    #[serde(default)]
    #[schemars(extend("x-pods-advanced" = true))]
    pub context: Option<usize>,
}

/// What `Grep` tells the model.
pub const DESCRIPTION: &str = "Searches file contents with a regular expression (ripgrep \
syntax and speed) inside this pod's readable scope. `path` is a file or directory (default: \
the working directory); `glob` filters file paths (e.g. `*.rs`), `type` selects a ripgrep file \
type (e.g. `rust`, `py`). `output_mode`: `files_with_matches` (default) lists matching files, \
`content` shows `path:line:text` with `context` lines around each match, `count` gives matches \
per file. Like ripgrep, .gitignore'd, hidden and binary files are skipped. Output is capped; \
narrow the search if it is cut.";

/// One file's results.
#[derive(Debug)]
struct FileHit {
    path: PathBuf,
    count: u64,
    lines: String,
}

/// Collects one file's results for the chosen mode.
struct Collect<'a> {
    mode: OutputMode,
    path: &'a str,
    count: u64,
    lines: String,
    /// Per-file byte cap on `lines`: a single huge file stops here.
    cap: usize,
    cut: bool,
}

impl Collect<'_> {
    /// Appends one line in ripgrep's `path<sep>number<sep>text` form.
    fn push_line(&mut self, sep: char, number: Option<u64>, bytes: &[u8]) -> bool {
        let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let text = String::from_utf8_lossy(text);
        let text = cut_line(&text, MAX_LINE_CHARS);
        let number = number.unwrap_or(0);
        self.lines
            .push_str(&format!("{}{sep}{number}{sep}{text}\n", self.path));
        if self.lines.len() > self.cap {
            self.cut = true;
            return false;
        }
        true
    }
}

impl Sink for Collect<'_> {
    type Error = io::Error;

    fn matched(&mut self, _: &Searcher, found: &SinkMatch<'_>) -> Result<bool, io::Error> {
        self.count += 1;
        Ok(match self.mode {
            // One match is enough to list the file.
            OutputMode::FilesWithMatches => false,
            OutputMode::Count => true,
            OutputMode::Content => self.push_line(':', found.line_number(), found.bytes()),
        })
    }

    fn context(&mut self, _: &Searcher, line: &SinkContext<'_>) -> Result<bool, io::Error> {
        if matches!(line.kind(), SinkContextKind::Other) {
            return Ok(true);
        }
        Ok(self.push_line('-', line.line_number(), line.bytes()))
    }

    fn context_break(&mut self, _: &Searcher) -> Result<bool, io::Error> {
        self.lines.push_str("--\n");
        Ok(true)
    }

    fn binary_data(&mut self, _: &Searcher, _: u64) -> Result<bool, io::Error> {
        // Like ripgrep: stop at the first NUL; matches found before it are kept.
        Ok(false)
    }
}

/// What one search looks for and how much of it it keeps.
struct Plan {
    matcher: RegexMatcher,
    mode: OutputMode,
    /// Context lines around each match (content mode).
    context: usize,
    /// Byte cap on the collected output.
    cap: usize,
}

impl Plan {
    /// The searcher for the plan: ripgrep's defaults (quit on NUL, no memory maps), line
    /// numbers only where they are shown.
    fn searcher(&self) -> Searcher {
        let mut builder = SearcherBuilder::new();
        builder
            .binary_detection(BinaryDetection::quit(b'\0'))
            .line_number(self.mode == OutputMode::Content);
        if self.mode == OutputMode::Content {
            builder
                .before_context(self.context)
                .after_context(self.context);
        }
        builder.build()
    }

    /// An empty collector for one file.
    fn collector<'a>(&self, path: &'a str) -> Collect<'a> {
        Collect {
            mode: self.mode,
            path,
            count: 0,
            lines: String::new(),
            cap: self.cap,
            cut: false,
        }
    }
}

/// The results gathered by a search, and whether it stopped early at the output cap.
struct Gathered {
    hits: Vec<FileHit>,
    stopped: bool,
}

/// Searches one file (the path named a file).
fn search_one(plan: &Plan, checked: &scoped_fs::CheckedPath) -> Result<Gathered, FileToolError> {
    let file = checked.open_read()?;
    let path = checked.canonical().to_path_buf();
    let shown = path.display().to_string();
    let mut sink = plan.collector(&shown);
    plan.searcher()
        .search_file(&plan.matcher, &file, &mut sink)
        .map_err(|source| FileToolError::Read {
            path: path.clone(),
            source,
        })?;
    let (count, lines, stopped) = (sink.count, sink.lines, sink.cut);
    let hits = if count > 0 {
        vec![FileHit { path, count, lines }]
    } else {
        Vec::new()
    };
    Ok(Gathered { hits, stopped })
}

/// Searches a directory tree in parallel.
fn search_tree(
    ctx: &ToolContext,
    plan: &Plan,
    input: &GrepInput,
    dir: &DirHandle,
) -> Result<Gathered, FileToolError> {
    let root = dir.path();
    let mut builder = WalkBuilder::new(root);
    builder
        .follow_links(false)
        .filter_entry(readable_filter(ctx));
    if let Some(name) = &input.file_type {
        let types = TypesBuilder::new()
            .add_defaults()
            .select(name)
            .build()
            .map_err(|e| {
                FileToolError::BadInput(format!(
                    "unknown file type `{name}` ({e}); use a ripgrep type such as rust, py, js, ts, go, c, cpp, java, md, json, toml, yaml"
                ))
            })?;
        builder.types(types);
    }
    if let Some(glob) = &input.glob {
        let overrides = OverrideBuilder::new(root)
            .add(glob)
            .and_then(|b| b.build())
            .map_err(|e| FileToolError::BadInput(format!("invalid glob `{glob}`: {e}")))?;
        builder.overrides(overrides);
    }

    let hits = Mutex::new(Vec::new());
    let collected = AtomicUsize::new(0);
    let stopped = AtomicBool::new(false);
    builder.build_parallel().run(|| {
        let mut searcher = plan.searcher();
        let matcher = plan.matcher.clone();
        let (hits, collected, stopped) = (&hits, &collected, &stopped);
        Box::new(move |result| {
            let Ok(entry) = result else {
                // Unreadable directories and vanished files are skipped, like rg -s.
                return WalkState::Continue;
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                return WalkState::Continue;
            }
            let Ok(rel) = entry.path().strip_prefix(root) else {
                return WalkState::Continue;
            };
            let Ok(file) = dir.open_file_unverified(rel) else {
                return WalkState::Continue;
            };
            // Only content lines carry the path; the listing modes format it at the end.
            let shown = if plan.mode == OutputMode::Content {
                entry.path().display().to_string()
            } else {
                String::new()
            };
            let mut sink = plan.collector(&shown);
            if searcher.search_file(&matcher, &file, &mut sink).is_err() || sink.count == 0 {
                return WalkState::Continue;
            }
            let size = sink.lines.len() + shown.len() + 24;
            let hit = FileHit {
                path: entry.into_path(),
                count: sink.count,
                lines: sink.lines,
            };
            hits.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(hit);
            // Content beyond the cap cannot be shown: stop instead of reading on.
            if plan.mode == OutputMode::Content
                && collected.fetch_add(size, Ordering::Relaxed) + size > plan.cap
            {
                stopped.store(true, Ordering::Relaxed);
                return WalkState::Quit;
            }
            WalkState::Continue
        })
    });
    Ok(Gathered {
        hits: hits.into_inner().unwrap_or_else(PoisonError::into_inner),
        stopped: stopped.load(Ordering::Relaxed),
    })
}

/// Whether a path component holds a glob wildcard.
fn is_wild(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// `input` with a glob given as `path` (`src/**/*.py`, which models often
/// write) split into the directory before its first wildcard component
/// (`path`) and the rest (`glob`); `None` when `path` is no glob or names an
/// existing file whose name merely holds a wildcard character.
fn path_as_glob(ctx: &ToolContext, input: &GrepInput) -> Result<Option<GrepInput>, FileToolError> {
    let Some(path) = input.path.as_deref() else {
        return Ok(None);
    };
    if !is_wild(path) || std::fs::symlink_metadata(ctx.absolute(Path::new(path))).is_ok() {
        return Ok(None);
    }
    if input.glob.is_some() {
        return Err(FileToolError::BadInput(format!(
            "`path` {path} is a glob and `glob` is set too: give the directory as `path` and the pattern as `glob`"
        )));
    }
    let mut base = PathBuf::new();
    let mut rest: Vec<String> = Vec::new();
    for part in Path::new(path).components() {
        let text = part.as_os_str().to_string_lossy();
        if rest.is_empty() && !is_wild(&text) {
            base.push(part);
        } else {
            rest.push(text.into_owned());
        }
    }
    Ok(Some(GrepInput {
        path: (!base.as_os_str().is_empty()).then(|| base.display().to_string()),
        glob: Some(rest.join("/")),
        ..input.clone()
    }))
}

/// Runs `Grep`.
pub fn grep(ctx: &ToolContext, input: &GrepInput) -> Result<ToolOutput, FileToolError> {
    let split = path_as_glob(ctx, input)?;
    let input = split.as_ref().unwrap_or(input);
    let matcher = RegexMatcherBuilder::new()
        .line_terminator(Some(b'\n'))
        .build(&input.pattern)
        .map_err(|e| FileToolError::BadInput(format!("invalid regex `{}`: {e}", input.pattern)))?;
    let mode = input.output_mode.unwrap_or_default();
    let context = input.context.unwrap_or(0);
    let budget = ctx.output_limit().saturating_sub(NOTE_ROOM).max(1);
    let base = input
        .path
        .as_deref()
        .map_or_else(|| ctx.cwd().to_path_buf(), PathBuf::from);
    let checked = scoped_fs::check_read(ctx, &base)?;
    let root = checked.canonical().to_path_buf();
    let is_dir = std::fs::symlink_metadata(&root).is_ok_and(|m| m.is_dir());
    let plan = Plan {
        matcher,
        mode,
        context,
        cap: budget,
    };
    let Gathered { mut hits, stopped } = if is_dir {
        search_tree(ctx, &plan, input, &checked.open_dir()?)?
    } else {
        search_one(&plan, &checked)?
    };
    hits.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(render(input, mode, context, budget, &root, hits, stopped))
}

/// Formats the results within the byte budget.
fn render(
    input: &GrepInput,
    mode: OutputMode,
    context: usize,
    budget: usize,
    root: &Path,
    hits: Vec<FileHit>,
    stopped: bool,
) -> ToolOutput {
    let files = hits.len();
    let matches: u64 = hits.iter().map(|h| h.count).sum();
    let pattern = &input.pattern;
    if files == 0 {
        // Say what narrowed the search: a model that guessed a filter (say
        // `*.rs` in a Python tree) needs to see that it was one.
        let mut filters = Vec::new();
        if let Some(glob) = &input.glob {
            filters.push(format!("files matching `{glob}`"));
        }
        if let Some(t) = &input.file_type {
            filters.push(format!("files of type `{t}`"));
        }
        let among = if filters.is_empty() {
            String::new()
        } else {
            format!(" (searched only {})", filters.join(" and "))
        };
        return ToolOutput {
            summary: format!("No matches for `{pattern}` in {}{among}", root.display()),
            content: None,
        };
    }
    let mut out = String::new();
    let mut shown = 0usize;
    let mut cut = stopped;
    for hit in &hits {
        let piece = match mode {
            OutputMode::FilesWithMatches => format!("{}\n", hit.path.display()),
            OutputMode::Count => format!("{}:{}\n", hit.path.display(), hit.count),
            OutputMode::Content => {
                let sep = if context > 0 && shown > 0 { "--\n" } else { "" };
                format!("{sep}{}", hit.lines)
            }
        };
        if out.len() + piece.len() > budget {
            cut = true;
            if shown == 0 && mode == OutputMode::Content {
                // Show the start of one huge file rather than nothing.
                let mut end = budget.min(piece.len());
                while !piece.is_char_boundary(end) {
                    end -= 1;
                }
                out.push_str(&piece[..end]);
                out.push('\n');
                shown = 1;
            }
            break;
        }
        out.push_str(&piece);
        shown += 1;
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let summary = match mode {
        OutputMode::FilesWithMatches => format!(
            "Found {files} file{} matching `{pattern}` in {}",
            plural(files),
            root.display()
        ),
        OutputMode::Count | OutputMode::Content => format!(
            "{matches} matching line{} in {files} file{} for `{pattern}` in {}",
            if matches == 1 { "" } else { "s" },
            plural(files),
            root.display()
        ),
    };
    let summary = if stopped {
        format!("{summary} so far (the search stopped at the output cap)")
    } else {
        summary
    };
    if cut {
        let rest = if stopped {
            "the search stopped early".to_owned()
        } else {
            format!(
                "{} more file{} not shown",
                files - shown,
                plural(files - shown)
            )
        };
        out.push_str(&format!(
            "[output capped at {budget} bytes; {rest}; narrow the search with path, glob or type]\n"
        ));
    }
    ToolOutput {
        summary,
        content: Some(out),
    }
}
