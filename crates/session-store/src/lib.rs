//! Append-only, hash-chained session logs: crash-safe writing, read-only reading,
//! replay.
//!
//! A pod's conversation lives in a session directory (`sessions/<full name>/`, the
//! caller passes the path) as segment files `000001.jsonl`, `000002.jsonl`, ...; a
//! new segment starts when the conversation is compacted and begins with a
//! `segment_start` entry holding the history so far. Each line is one [`LogEntry`]:
//! a flat JSON object tagged by `"kind"` carrying `seq` (global, from 1), `prev` (hex
//! SHA-256 of the previous line's raw bytes) and `ts` (unix ms).
//!
//! - [`SessionWriter`]: the one writer (an exclusive flock on `<dir>/lock`); verifies
//!   the log on open, cuts only a torn tail, appends each entry with one `write(2)`,
//!   fdatasyncs on [`SessionWriter::sync`] and then records the chain head in
//!   `<dir>/head` (so an edit of the last synced line, which nothing chains to, is
//!   caught on the next open), starts segments. The directory is kept 0700 and its
//!   files 0600: they hold whole conversations.
//! - [`SessionReader`] / [`read_session`]: read-only, lock-free, verifying.
//! - [`replay()`]: the pure fold from entries to the conversation history.
//!
//! Crash safety (ARCHITECTURE.md rule 6): entries are written before they are
//! acknowledged; a complete line that does not parse or chain, bytes that are neither
//! lines nor a torn first line, or a synced line that no longer matches the head, are
//! refused with an error naming the file, never repaired.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod chain;
mod entry;
mod error;
mod files;
mod head;
mod line;
mod reader;
mod replay;
mod writer;

pub use chain::{GENESIS_PREV, line_hash};
pub use entry::{EntryBody, LogEntry, LoggedItem};
pub use error::{Corruption, Error, Result, Tampering};
pub use files::{HEAD_FILE_NAME, LOCK_FILE_NAME, segment_file_name};
pub use line::LogLine;
pub use reader::{SegmentLog, SessionLog, SessionReader, read_session};
pub use replay::{Replay, replay};
pub use writer::{Committed, OpenReport, SessionWriter, TailCut};

/// Version of the log format written in `segment_start` entries. The writer refuses
/// to continue a segment whose `segment_start` carries a larger number (readers read
/// whatever of it they can decode).
pub const FORMAT_VERSION: u32 = 1;
