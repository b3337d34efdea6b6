//! Files attached to a user's message, the way @-mentions and chat files work
//! in other coding agents: the files the message names (its `file_ref`
//! segments always; with `auto`, also file names and code symbols in its
//! text) are read through the scope checks and their contents given to the
//! model with the message, and the first message of a session gets a short
//! listing of the working directory (and, when it names no file and the
//! project has at most three, those files). A small model then works from the file
//! instead of guessing it, and may Edit an attached file without a Read first
//! (the attachment counts as one).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use ignore::WalkBuilder;
use sha2::{Digest, Sha256};

use crate::context::{ReadRecord, ToolContext};
use crate::scoped_fs;
use crate::sniff::{Sniffed, sniff};
use crate::walk::readable_filter;

/// Files of the working directory looked at for names and symbols.
const WALK_FILES: usize = 400;
/// Bytes of one file searched for a symbol.
const SEARCH_BYTES: u64 = 64 * 1024;
/// Files attached to one message at most.
const MAX_FILES: usize = 3;
/// Entries of the first message's listing at most.
const LISTING_ENTRIES: usize = 40;

/// How much may be attached: less for a small model's window.
#[derive(Debug, Clone, Copy)]
struct Caps {
    /// Bytes of one file (a longer one gets the region around the symbol, or
    /// its head).
    file: usize,
    /// Bytes of all attachments of one message.
    total: usize,
}

/// Attaches files to user messages for one pod.
#[derive(Debug, Clone)]
pub struct Grounder {
    ctx: ToolContext,
    auto: bool,
    caps: Caps,
}

/// A user message with its attachments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grounded {
    /// The attached files, relative to the working directory when inside it.
    pub attached: Vec<String>,
    /// What the model gets: the message, then the listing and the files.
    pub text: String,
    /// Where the message's own words end in `text` (what follows is the
    /// attached context), so that the two can be kept apart in the history.
    pub words: usize,
}

impl Grounder {
    /// A grounder for the pod whose file tools use `ctx`; `auto` (the small-
    /// model profile) also finds the files a message names in its text.
    pub fn new(ctx: ToolContext, auto: bool) -> Grounder {
        let caps = if auto {
            Caps {
                file: 4 * 1024,
                total: 6 * 1024,
            }
        } else {
            Caps {
                file: 32 * 1024,
                total: 64 * 1024,
            }
        };
        Grounder { ctx, auto, caps }
    }

    /// `text` (the message) with the files it names attached: `explicit`
    /// (its `file_ref` paths) and, with `auto`, the files its words name and
    /// the files defining or using its code symbols; `first` adds a listing
    /// of the working directory (with `auto`).
    pub fn ground(&self, text: &str, explicit: &[String], first: bool) -> Grounded {
        // The walk is for the listing, file names and symbols: a message
        // with none of them ("and now?") costs no directory walk.
        let could_name = symbols(text).len() + text.matches(['.', '/']).count() > 0;
        let files = if self.auto && (first || could_name) {
            self.project_files()
        } else {
            Vec::new()
        };
        let mut wanted: Vec<(PathBuf, Option<String>)> = explicit
            .iter()
            .map(|p| (self.ctx.absolute(Path::new(p)), None))
            .collect();
        if self.auto {
            for path in named_files(text, self.ctx.cwd(), &files) {
                wanted.push((path, None));
            }
            for symbol in symbols(text) {
                for path in files_with_symbol(&symbol, self.ctx.cwd(), &files) {
                    wanted.push((path, Some(symbol.clone())));
                }
            }
        }
        if self.auto && first && wanted.is_empty() && files.len() <= MAX_FILES {
            // A project this small is shown whole (what fits), as if named.
            wanted.extend(files.iter().map(|f| (self.ctx.cwd().join(f), None)));
        }
        let mut seen = BTreeSet::new();
        let mut attached = Vec::new();
        let mut blocks = String::new();
        for (path, symbol) in wanted {
            if attached.len() >= MAX_FILES || !seen.insert(path.clone()) {
                continue;
            }
            let room = self
                .caps
                .total
                .saturating_sub(blocks.len())
                .min(self.caps.file);
            if room < 256 {
                break;
            }
            if let Some((shown, block)) = self.attach(&path, symbol.as_deref(), room) {
                attached.push(shown);
                blocks.push_str(&block);
            }
        }
        let mut out = text.to_string();
        if self.auto && first && !files.is_empty() {
            out.push_str("\n\n");
            out.push_str(&self.listing(&files));
        }
        if !blocks.is_empty() {
            out.push_str("\n\n[Files this message names, attached as they are now:]\n");
            out.push_str(&blocks);
        }
        Grounded {
            attached,
            text: out,
            words: text.len(),
        }
    }

    /// The readable files under the working directory (relative paths, at
    /// most [`WALK_FILES`], hidden and ignored ones skipped), sorted.
    fn project_files(&self) -> Vec<PathBuf> {
        let root = self.ctx.cwd().to_path_buf();
        let walker = WalkBuilder::new(&root)
            .follow_links(false)
            .max_depth(Some(6))
            .filter_entry(readable_filter(&self.ctx))
            .build();
        let mut files: Vec<PathBuf> = walker
            .flatten()
            .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
            .filter_map(|e| e.path().strip_prefix(&root).ok().map(Path::to_path_buf))
            .take(WALK_FILES)
            .collect();
        files.sort();
        files
    }

    /// A short listing of the working directory.
    fn listing(&self, files: &[PathBuf]) -> String {
        let mut out = String::from("[Files in the working directory:");
        for f in files.iter().take(LISTING_ENTRIES) {
            let _ = write!(out, " {}", f.display());
        }
        if files.len() > LISTING_ENTRIES {
            let _ = write!(out, " … and {} more", files.len() - LISTING_ENTRIES);
        }
        out.push(']');
        out
    }

    /// The block attaching `path` (at most `room` bytes of it: the region
    /// around `symbol` when the whole file does not fit), and the path as
    /// shown; `None` when it cannot be read as text within the scope. A file
    /// attached whole counts as Read.
    fn attach(&self, path: &Path, symbol: Option<&str>, room: usize) -> Option<(String, String)> {
        let checked = scoped_fs::check_read(&self.ctx, path).ok()?;
        let canonical = checked.canonical().to_path_buf();
        let mut file = checked.open_read().ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        if !matches!(sniff(&bytes), Sniffed::Text) {
            return None;
        }
        let text = String::from_utf8(bytes).ok()?;
        let shown = canonical
            .strip_prefix(self.ctx.cwd())
            .unwrap_or(&canonical)
            .display()
            .to_string();
        let lines = text.lines().count();
        let lang = canonical.extension().and_then(|e| e.to_str()).unwrap_or("");
        let body = if text.len() + shown.len() + 64 <= room {
            self.ctx.record_read(
                canonical.clone(),
                ReadRecord {
                    hash: Sha256::digest(text.as_bytes()).into(),
                    modified: meta.modified().ok(),
                    size: meta.len(),
                },
            );
            format!(
                "{shown} ({lines} lines):\n```{lang}\n{}\n```\n",
                text.trim_end()
            )
        } else {
            let (from, part) = region(&text, symbol, room.saturating_sub(shown.len() + 128));
            let to = from + part.lines().count().saturating_sub(1);
            format!(
                "{shown}, lines {}-{} of {lines} (Read it for the rest):\n```{lang}\n{}\n```\n",
                from + 1,
                to + 1,
                part.trim_end()
            )
        };
        Some((shown, body))
    }
}

/// A child's task with the paths its parent wrote relative to the parent's
/// directory made relative to the child's, which is `dir` below the parent's:
/// "create docs/README.md" for a child working in `docs` becomes "create
/// README.md" (small models wrote docs/docs/README.md). Only `dir/` at the
/// start of a word is taken off.
pub fn task_for_child(task: &str, dir: &Path) -> String {
    let Some(dir) = dir.to_str().filter(|d| !d.is_empty()) else {
        return task.to_string();
    };
    let once = strip_at_word_start(task, &format!("./{dir}/"));
    strip_at_word_start(&once, &format!("{dir}/"))
}

/// `text` without `prefix` wherever it starts a word.
fn strip_at_word_start(text: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for (at, _) in text.match_indices(prefix) {
        let before = text[..at].chars().next_back();
        if at >= from
            && before.is_none_or(|c| c.is_whitespace() || matches!(c, '`' | '"' | '\'' | '('))
        {
            out.push_str(&text[from..at]);
            from = at + prefix.len();
        }
    }
    out.push_str(&text[from..]);
    out
}

/// At most `max` bytes of whole lines of `text`: from a little before the
/// first line defining (else naming) `symbol`, else from the start; the index
/// of its first line.
fn region(text: &str, symbol: Option<&str>, max: usize) -> (usize, String) {
    let lines: Vec<&str> = text.lines().collect();
    let at = symbol
        .and_then(|s| {
            lines
                .iter()
                .position(|l| defines(l, s))
                .or_else(|| lines.iter().position(|l| has_word(l, s)))
        })
        .map_or(0, |i| i.saturating_sub(3));
    let mut out = String::new();
    for line in &lines[at..] {
        if out.len() + line.len() + 1 > max {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    (at, out)
}

/// Characters that end a word of a message around a file name or symbol.
fn is_edge(c: char) -> bool {
    !(c.is_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
}

/// The words of `text` that name files: paths relative to `cwd` that exist,
/// or names (with an extension) of exactly one of `files` (a file named
/// without its directory).
fn named_files(text: &str, cwd: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for word in text.split(is_edge) {
        let word = word.trim_matches(|c| c == '.' || c == '-' || c == '/');
        let has_ext = word.rsplit_once('.').is_some_and(|(stem, ext)| {
            !stem.is_empty()
                && (1..=8).contains(&ext.len())
                && ext.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if !has_ext && !word.contains('/') {
            continue;
        }
        let direct = cwd.join(word);
        if files.iter().any(|f| cwd.join(f) == direct) {
            out.push(direct);
            continue;
        }
        let by_name: Vec<&PathBuf> = files
            .iter()
            .filter(|f| f.file_name().and_then(|n| n.to_str()) == Some(word))
            .collect();
        if let [one] = by_name.as_slice() {
            out.push(cwd.join(one));
        }
    }
    out
}

/// Words of `text` that look like code symbols: identifiers of 4 or more
/// characters with an underscore or an inner capital (`get_total`,
/// `formatDate`, `UserStore`), or followed by `(` (`area()`).
fn symbols(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !(chars[i].is_alphabetic() || chars[i] == '_')
            || (i > 0
                && (chars[i - 1].is_alphanumeric() || matches!(chars[i - 1], '_' | '.' | '/')))
        {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        // A file name's stem is not a symbol.
        if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(|c| c.is_alphabetic()) {
            continue;
        }
        let called = chars.get(i) == Some(&'(');
        let inner_capital =
            word.chars().skip(1).any(char::is_uppercase) && word.chars().any(char::is_lowercase);
        let looks_like_code = word.contains('_') || inner_capital || called;
        if word.chars().count() >= 4 && looks_like_code && !out.contains(&word) {
            out.push(word);
        }
    }
    out
}

/// Whether `line` holds `word` as a whole word.
fn has_word(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// Whether `line` defines `symbol` (a function, class, type or variable).
fn defines(line: &str, symbol: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "def",
        "class",
        "function",
        "fn",
        "struct",
        "enum",
        "trait",
        "type",
        "interface",
        "const",
        "let",
        "var",
        "func",
    ];
    let t = line.trim_start();
    let t = t.strip_prefix("export ").unwrap_or(t);
    let t = t.strip_prefix("pub ").unwrap_or(t);
    let t = t.strip_prefix("async ").unwrap_or(t);
    KEYWORDS.iter().any(|k| {
        t.strip_prefix(k)
            .and_then(|rest| rest.strip_prefix(' '))
            .is_some_and(|rest| {
                has_word(
                    rest.split(['(', ':', '<', '=', '{']).next().unwrap_or(""),
                    symbol,
                )
            })
    }) || t.strip_prefix(symbol).is_some_and(|rest| {
        rest.trim_start().starts_with('=') && !rest.trim_start().starts_with("==")
    })
}

/// The files among `files` (relative to `cwd`, all readable: they come from
/// the scope-filtered walk) that hold `symbol` as a word, those defining it
/// first; absolute.
fn files_with_symbol(symbol: &str, cwd: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    let mut defining = Vec::new();
    let mut using = Vec::new();
    for rel in files {
        let path = cwd.join(rel);
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let mut bytes = Vec::new();
        if file.take(SEARCH_BYTES).read_to_end(&mut bytes).is_err() {
            continue;
        }
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        if text.lines().any(|l| defines(l, symbol)) {
            defining.push(path);
        } else if text.lines().any(|l| has_word(l, symbol)) {
            using.push(path);
        }
    }
    defining.extend(using);
    defining
}
