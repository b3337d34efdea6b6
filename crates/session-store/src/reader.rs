//! [`SessionReader`]: read-only access to a session log, for `pod logs` and for
//! snapshots of other pods.
//!
//! A reader never modifies anything and takes no lock, so it works while the
//! session's writer is appending. It sees a prefix of the log: every append is one
//! `write(2)` ending in `\n`, so a line is either complete or (while being written)
//! an incomplete tail, which the reader ignores (a segment with no complete line must
//! be empty or a torn first line, as for the writer). Complete lines are verified exactly
//! as the writer verifies them, except that entries of unknown kinds and segments of
//! a newer format version are accepted (shown as far as they decode).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use llm_types::Item;

use crate::chain::{self, ChainPoint, SegmentCheck};
use crate::entry::LogEntry;
use crate::error::{Corruption, Error, Result};
use crate::files::{self, segment_file_name};
use crate::line::LogLine;
use crate::replay;

/// One verified segment as read.
#[derive(Debug, Clone)]
pub struct SegmentLog {
    /// Its number (1 for `000001.jsonl`).
    pub number: u32,
    /// The file.
    pub path: PathBuf,
    /// Its complete lines, exactly as logged (without `\n`).
    pub lines: Vec<LogLine>,
    /// The same lines, decoded (`entries[i]` is `lines[i]`).
    pub entries: Vec<LogEntry>,
}

/// Verified segments of a session, oldest first.
#[derive(Debug, Clone, Default)]
pub struct SessionLog {
    /// The segments read.
    pub segments: Vec<SegmentLog>,
}

impl SessionLog {
    /// All entries read, in log order.
    pub fn entries(&self) -> impl Iterator<Item = &LogEntry> {
        self.segments.iter().flat_map(|s| s.entries.iter())
    }

    /// All lines read, in log order.
    pub fn lines(&self) -> impl Iterator<Item = &LogLine> {
        self.segments.iter().flat_map(|s| s.lines.iter())
    }

    /// The sequence number of the last entry read (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.segments
            .iter()
            .rev()
            .find_map(|s| s.entries.last())
            .map_or(0, LogEntry::seq)
    }

    /// The conversation history the entries read leave behind (cloning the items).
    pub fn history(&self) -> Vec<Item> {
        replay::replay(self.entries().cloned())
    }

    /// The history and the notifications still queued (cloning the items).
    pub fn replay(&self) -> replay::Replay {
        replay::Replay::of(self.entries().cloned())
    }

    /// The conversation history, consuming the log (no clones).
    pub fn into_history(self) -> Vec<Item> {
        replay::replay(self.segments.into_iter().flat_map(|s| s.entries))
    }
}

/// Read-only access to the session in one directory.
#[derive(Debug, Clone)]
pub struct SessionReader {
    dir: PathBuf,
}

impl SessionReader {
    /// A reader of the session in `dir` (nothing is opened until a read).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SessionReader { dir: dir.into() }
    }

    /// The session directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads and verifies every segment, chaining each to the one before.
    pub fn read_all(&self) -> Result<SessionLog> {
        let listing = files::list_segments(&self.dir)?;
        let mut chain = ChainPoint::genesis();
        let mut log = SessionLog::default();
        for number in listing.segments {
            let (segment, after) = read_segment(&self.dir, number, chain)?;
            chain = after;
            log.segments.push(segment);
        }
        Ok(log)
    }

    /// Reads and verifies only the current (last) segment, checking its link to the
    /// previous segment's last line. That is all a snapshot or the current history
    /// needs. A later segment with no complete line yet (a crash leftover the writer
    /// has not removed) is skipped in favour of the one before it.
    pub fn read_last(&self) -> Result<SessionLog> {
        let listing = files::list_segments(&self.dir)?;
        let mut segments = listing.segments;
        while let Some(&number) = segments.last() {
            let start = chain_before(&self.dir, number)?;
            let (segment, _) = read_segment(&self.dir, number, start)?;
            if segment.lines.is_empty() && number > 1 {
                segments.pop();
                continue;
            }
            return Ok(SessionLog {
                segments: vec![segment],
            });
        }
        Ok(SessionLog::default())
    }
}

/// Reads and verifies every segment of the session in `dir`.
pub fn read_session(dir: impl AsRef<Path>) -> Result<SessionLog> {
    SessionReader::new(dir.as_ref()).read_all()
}

/// Reads and verifies one segment starting from `start`.
fn read_segment(dir: &Path, number: u32, start: ChainPoint) -> Result<(SegmentLog, ChainPoint)> {
    let path = dir.join(segment_file_name(number));
    let mut bytes = files::read_segment(&path)?;
    let complete = chain::complete_len(&bytes);
    if complete == 0 {
        // Not an empty segment: bytes no writer or crash leaves are damage, which the
        // writer refuses too.
        chain::check_incomplete_segment(&bytes, &path)?;
    }
    bytes.truncate(complete);
    let text = Arc::new(chain::into_text(bytes, &path)?);
    let check = SegmentCheck {
        file: &path,
        number,
        accept_newer: true,
    };
    let mut lines = Vec::new();
    let mut entries = Vec::new();
    let after = chain::verify_lines(text, &check, start, |line, entry| {
        lines.push(line);
        entries.push(entry);
    })?;
    let segment = SegmentLog {
        number,
        path,
        lines,
        entries,
    };
    Ok((segment, after))
}

/// Where the chain stands at the start of segment `number`: the session's start for
/// segment 1, else just after the last complete line of the latest earlier segment
/// that has one (reading only that line, from the end of its file).
pub(crate) fn chain_before(dir: &Path, number: u32) -> Result<ChainPoint> {
    let mut earlier = number;
    while earlier > 1 {
        earlier -= 1;
        let path = dir.join(segment_file_name(earlier));
        if !path.exists() {
            return Err(Error::MissingSegment {
                dir: dir.to_owned(),
                name: segment_file_name(earlier),
            });
        }
        let Some(line) = files::last_complete_line(&path)? else {
            // Skipped only if it really holds nothing (segment 1 of a session compacted
            // before its first entry): damage must not be passed over.
            chain::check_incomplete_segment(&files::read_segment(&path)?, &path)?;
            continue;
        };
        let entry: LogEntry = serde_json::from_str(&line).map_err(|e| {
            let line_no = files::complete_line_count(&path);
            match line_no {
                Ok(line) => Error::Corrupt {
                    file: path.clone(),
                    line,
                    problem: Corruption::BadJson(e.to_string()),
                },
                Err(io) => io,
            }
        })?;
        return Ok(ChainPoint::after(&line, &entry));
    }
    Ok(ChainPoint::genesis())
}
