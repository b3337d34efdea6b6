//! The `Read` tool: a text file's lines, numbered like `cat -n`, within the scope.
//!
//! Images are named (type, size, dimensions) rather than dumped; other binary files are
//! refused. Reading records the file's content hash, which is what later lets this pod
//! overwrite or edit it (see [`crate::read_before_write`]).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tool::ToolOutput;

use crate::context::{ReadRecord, ToolContext};
use crate::error::FileToolError;
use crate::scoped_fs;
use crate::sniff::{SNIFF_LEN, Sniffed, sniff};

/// Lines shown when the call gives no `limit`.
pub(crate) const DEFAULT_LIMIT: usize = 2000;
/// Characters of one line shown before it is cut.
pub(crate) const MAX_LINE_CHARS: usize = 2000;
/// Bytes of the output cap kept free for the closing notes.
const NOTE_ROOM: usize = 256;

/// Arguments of `Read`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ReadInput {
    /// The file to read: absolute, or relative to the pod's working directory.
    pub path: String,
    /// The first line to show, counting from 1 (default 1).
    #[serde(default)]
    #[schemars(extend("x-pods-advanced" = true))]
    pub offset: Option<usize>,
    /// How many lines to show (default 2000).
    #[serde(default)]
    #[schemars(extend("x-pods-advanced" = true))]
    pub limit: Option<usize>,
}

/// What `Read` tells the model.
pub const DESCRIPTION: &str = "Reads a text file inside this pod's scope and shows its lines \
numbered like `cat -n` (number, tab, text). `path` is absolute or relative to the working \
directory. By default the first 2000 lines are shown; use `offset` (first line, 1-based) and \
`limit` to page through longer files. Lines longer than 2000 characters are cut. Images \
(PNG, JPEG, GIF, WebP) are reported by type and size; other binary files are refused. A file \
must be Read before Write or Edit may change it.";

/// Cuts a line to `max_chars` characters, saying how much was cut (borrowed when uncut).
pub(crate) fn cut_line(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => text.into(),
        Some((end, _)) => {
            let rest = text[end..].chars().count();
            format!("{}… [line cut: {rest} more characters]", &text[..end]).into()
        }
    }
}

/// Runs `Read`.
pub fn read(ctx: &ToolContext, input: &ReadInput) -> Result<ToolOutput, FileToolError> {
    if input.limit == Some(0) {
        return Err(FileToolError::BadInput(
            "limit must be at least 1 (it is the number of lines to show)".into(),
        ));
    }
    // Line numbers start at 1; an offset of 0 means the start too.
    let first = input.offset.unwrap_or(1).max(1);
    let limit = input.limit.unwrap_or(DEFAULT_LIMIT);
    let checked = scoped_fs::check_read(ctx, Path::new(&input.path))?;
    let path = checked.canonical().to_path_buf();
    let shown_path = path.display().to_string();
    let mut file = checked.open_read()?;
    let read_err = |source| FileToolError::Read {
        path: path.clone(),
        source,
    };
    let meta = file.metadata().map_err(read_err)?;

    // The head decides what the file is.
    let mut head = Vec::with_capacity(SNIFF_LEN);
    (&mut file)
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    let kind = sniff(&head);
    if let Sniffed::Nul(at) = kind {
        return Err(FileToolError::Binary {
            path,
            reason: format!("NUL byte at offset {at}"),
        });
    }
    if let Sniffed::NotUtf8(at) = kind {
        return Err(FileToolError::Binary {
            path,
            reason: format!("not UTF-8 at offset {at}"),
        });
    }

    let mut hasher = Sha256::new();
    let mut reader = BufReader::with_capacity(64 * 1024, std::io::Cursor::new(head).chain(file));
    if let Sniffed::Image(image, dims) = kind {
        let mut size = 0u64;
        loop {
            let buf = reader.fill_buf().map_err(read_err)?;
            if buf.is_empty() {
                break;
            }
            hasher.update(buf);
            let n = buf.len();
            size += n as u64;
            reader.consume(n);
        }
        ctx.record_read(
            path.clone(),
            ReadRecord {
                hash: hasher.finalize().into(),
                modified: meta.modified().ok(),
                size,
            },
        );
        let dims = dims
            .map(|(w, h)| format!(", {w}x{h} pixels"))
            .unwrap_or_default();
        return Ok(ToolOutput {
            summary: format!(
                "{shown_path} is a {image} image{dims}, {size} bytes; Read shows text only"
            ),
            content: None,
        });
    }

    let budget = ctx.output_limit().saturating_sub(NOTE_ROOM).max(1);
    let mut out = String::new();
    let mut line = Vec::new();
    let mut total = 0usize;
    let mut size = 0u64;
    let mut last_shown = None;
    let mut cut_by_budget = false;
    let mut cut_lines = 0usize;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&line);
        size += n as u64;
        total += 1;
        if total < first || total - first >= limit || cut_by_budget {
            continue;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let text = String::from_utf8_lossy(text);
        let text = cut_line(&text, MAX_LINE_CHARS);
        // cut_line allocates only when it cuts.
        if matches!(text, Cow::Owned(_)) {
            cut_lines += 1;
        }
        let entry = format!("{total:>6}\t{text}\n");
        if out.len() + entry.len() > budget && last_shown.is_some() {
            cut_by_budget = true;
            continue;
        }
        out.push_str(&entry);
        last_shown = Some(total);
    }
    ctx.record_read(
        path.clone(),
        ReadRecord {
            hash: hasher.finalize().into(),
            modified: meta.modified().ok(),
            size,
        },
    );

    if total == 0 {
        return Ok(ToolOutput {
            summary: format!("{shown_path} is empty (0 lines)"),
            content: None,
        });
    }
    let Some(last) = last_shown else {
        return Ok(ToolOutput {
            summary: format!(
                "{shown_path} has {total} lines; offset {first} is past the end, so nothing is shown"
            ),
            content: None,
        });
    };
    let remaining = total - last;
    let mut summary = format!("Read {shown_path}: lines {first}-{last} of {total}");
    if remaining > 0 {
        let why = if cut_by_budget {
            " (output limit reached)"
        } else {
            ""
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "[{remaining} more lines{why}; call Read with offset={} to continue]",
            last + 1
        );
        let _ = write!(summary, ", {remaining} more");
    }
    if cut_lines > 0 {
        let _ = writeln!(
            out,
            "[{cut_lines} lines longer than {MAX_LINE_CHARS} characters were cut]"
        );
    }
    Ok(ToolOutput {
        summary,
        content: Some(out),
    })
}
