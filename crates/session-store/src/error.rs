//! The crate's error type: every failure names the file (and line, for damage) and
//! says what to do about it.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong opening, reading or appending to a session log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process holds the session's writer lock.
    #[error(
        "session {} is already open by another pod (it holds the lock on {}); stop that pod \
         first, or read the session with a SessionReader, which takes no lock",
        dir.display(),
        lock.display()
    )]
    Locked {
        /// The session directory.
        dir: PathBuf,
        /// The lock file inside it.
        lock: PathBuf,
    },

    /// A system call on a session file or directory failed.
    #[error("session log: cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "read segment".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A complete line of a segment is damaged or out of place. Nothing was modified.
    #[error(
        "session log {}, line {line}: {problem}. {advice}",
        file.display(),
        advice = problem.advice()
    )]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// 1-based line number within `file`.
        line: u64,
        /// What is wrong with the line.
        problem: Corruption,
    },

    /// A segment file the chain needs is not there.
    #[error(
        "session {}: segment file {name} is missing, but a later segment exists; restore it \
         from a backup (segments are never deleted by pods)",
        dir.display()
    )]
    MissingSegment {
        /// The session directory.
        dir: PathBuf,
        /// The missing file's name, e.g. `000002.jsonl`.
        name: String,
    },

    /// An entry could not be encoded as JSON (a bug in the caller's data, e.g. a
    /// non-finite float inside a provider item). The entry was not written.
    #[error(
        "session log: cannot encode a {kind} entry as JSON: {source}; the entry was not written"
    )]
    Encode {
        /// Kind name of the entry.
        kind: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },

    /// The log no longer matches the chain head recorded at the last sync: a line that
    /// was synced has been edited or removed since. Nothing was modified.
    #[error(
        "session {}: the log does not match the head recorded at its last sync ({}): {problem}. \
         A crash cannot cause this: the session was changed after it was synced. Nothing was \
         changed; inspect the log, then restore the session from a backup or move the \
         session directory aside (if you edited the log on purpose and want to keep it, \
         delete {} and open it again)",
        dir.display(),
        dir.join(crate::HEAD_FILE_NAME).display(),
        dir.join(crate::HEAD_FILE_NAME).display()
    )]
    Tampered {
        /// The session directory (the head is its file `head`).
        dir: PathBuf,
        /// What differs.
        problem: Tampering,
    },

    /// An earlier failure left the writer in an unknown state; it refuses further writes.
    #[error(
        "session writer for {} refuses to write after an earlier failure ({reason}); close it \
         and open the session again, which verifies the log and cuts any torn tail",
        dir.display()
    )]
    Poisoned {
        /// The session directory.
        dir: PathBuf,
        /// The failure that poisoned it.
        reason: String,
    },
}

/// What is wrong with one complete line of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Corruption {
    /// The line is not valid UTF-8.
    NotUtf8,
    /// The line is not a JSON log entry.
    BadJson(String),
    /// The sequence number does not follow the previous entry's.
    WrongSeq {
        /// The sequence number the chain requires here.
        expected: u64,
        /// The one the line carries.
        found: u64,
    },
    /// `prev` is not the hash of the previous line: this line or the one before it
    /// (possibly the last line of the previous segment) was altered.
    BrokenChain {
        /// Hex SHA-256 of the previous line (64 zeros for the first entry).
        expected: String,
        /// The `prev` the line carries.
        found: String,
    },
    /// The first line of a later segment is not a `segment_start`, or names the wrong
    /// previous segment.
    BadSegmentStart(String),
    /// A `segment_start` anywhere but on a segment's first line.
    MisplacedSegmentStart,
    /// A `segment_start` with a format version newer than this build understands.
    NewerFormat(u32),
    /// An entry kind this build does not know (only the writer refuses these).
    UnknownKind(String),
    /// The file has bytes but no complete line, and they are not the start of a log
    /// line (a crash during the first write leaves `{` and no NUL or newline).
    NoCompleteLine {
        /// Length of the file.
        bytes: u64,
        /// How many of those bytes are NUL.
        nuls: u64,
    },
}

impl Corruption {
    /// What the user should do about it.
    pub(crate) fn advice(&self) -> &'static str {
        match self {
            Corruption::NewerFormat(_) | Corruption::UnknownKind(_) => {
                "The session was written by a newer version of pods; use that version to \
                 continue it (this one can still read it with a SessionReader). Nothing was changed."
            }
            Corruption::NoCompleteLine { .. } => {
                "A crash leaves at most the start of a line (`{` and no NUL byte), so this is \
                 damage or a file that is not a session log, and it is never repaired \
                 automatically; nothing was changed. Inspect the file, then restore it from a \
                 backup or move the session directory aside (some filesystems zero-fill a new \
                 file whose first writes were not synced yet when the machine lost power; then \
                 nothing in it had been synced)."
            }
            _ => {
                "The line is complete, so this is damage, not a torn write, and it is never \
                 repaired automatically; nothing was changed. Inspect the line, then restore the \
                 file from a backup or move the session directory aside."
            }
        }
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Corruption::NotUtf8 => write!(f, "bad JSON: the line is not valid UTF-8"),
            Corruption::BadJson(e) => write!(f, "bad JSON: {e}"),
            Corruption::WrongSeq { expected, found } => {
                write!(f, "wrong seq: expected {expected}, found {found}")
            }
            Corruption::BrokenChain { expected, found } => write!(
                f,
                "broken chain: prev is {found} but the previous line hashes to {expected} \
                 (this line or the previous one was altered)"
            ),
            Corruption::BadSegmentStart(why) => write!(f, "bad segment start: {why}"),
            Corruption::MisplacedSegmentStart => write!(
                f,
                "misplaced segment_start: it may only be the first line of a segment"
            ),
            Corruption::NewerFormat(v) => write!(
                f,
                "segment format version {v} is newer than the {} this build understands",
                crate::FORMAT_VERSION
            ),
            Corruption::UnknownKind(kind) => write!(f, "unknown entry kind `{kind}`"),
            Corruption::NoCompleteLine { bytes, nuls } => {
                write!(
                    f,
                    "no complete first line: {bytes} bytes that are not the start of a log line"
                )?;
                match *nuls {
                    0 => Ok(()),
                    n if n == *bytes => write!(f, " (all of them NUL bytes)"),
                    n => write!(f, " ({n} of them NUL bytes)"),
                }
            }
        }
    }
}

/// How a session log differs from the chain head its writer recorded at the last
/// sync (see [`Error::Tampered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tampering {
    /// The line the head names hashes differently now: it was edited.
    Edited {
        /// Its sequence number.
        seq: u64,
        /// The current segment file.
        file: PathBuf,
        /// The line's 1-based number in `file`, or `None` when it is the last line
        /// of an earlier segment (the one `file`'s `segment_start` chains to).
        line: Option<u64>,
        /// The hash recorded in the head.
        recorded: String,
        /// The hash of the line as it is now.
        found: String,
    },
    /// The head names a line past the end of the log: synced lines were removed.
    Removed {
        /// The sequence number the head names.
        seq: u64,
        /// The sequence number of the log's last complete line (0 if none).
        last: u64,
    },
    /// The head names a line before the current segment's start, so the current
    /// segment was replaced or the head is stale.
    BeforeSegment {
        /// The sequence number the head names.
        seq: u64,
        /// The current segment file.
        file: PathBuf,
        /// The sequence number of its first line.
        first: u64,
    },
    /// The head file cannot be read as a head.
    Unreadable(String),
}

impl std::fmt::Display for Tampering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tampering::Edited {
                seq,
                file,
                line,
                recorded,
                found,
            } => {
                match line {
                    Some(line) => write!(f, "line {line} of {} (seq {seq})", file.display())?,
                    None => write!(
                        f,
                        "the last entry before {} (seq {seq}, the line its segment_start \
                         chains to)",
                        file.display()
                    )?,
                }
                write!(
                    f,
                    " hashes to {found}, but it hashed to {recorded} when it was synced: it \
                     was edited"
                )
            }
            Tampering::Removed { seq, last } => write!(
                f,
                "the entry with seq {seq} was synced, but the log now ends at seq {last}: \
                 entries were removed"
            ),
            Tampering::BeforeSegment { seq, file, first } => write!(
                f,
                "the head names seq {seq}, but the current segment {} starts at seq {first}, \
                 so it cannot follow the synced log",
                file.display()
            ),
            Tampering::Unreadable(why) => write!(f, "the head file is not a valid head: {why}"),
        }
    }
}

impl Error {
    /// Shorthand for an [`Error::Io`].
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
