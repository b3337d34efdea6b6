//! [`SessionWriter`]: the one writer of a session, and everything that makes its
//! appends crash-safe.
//!
//! Invariants while a writer is open:
//! - it holds an exclusive flock on `<dir>/lock` (released when the process exits,
//!   however it exits), so no other process writes the session;
//! - the current segment holds exactly `len` bytes, all of them complete, verified
//!   lines, and `chain` is what the next entry must carry;
//! - `lines` and `history` mirror the current segment (the snapshot sent to clients
//!   and the replayed conversation);
//! - an append is one `write(2)` of a prebuilt line; if it fails or is short the file
//!   is truncated back to `len` and the entry did not happen. If even that fails, the
//!   writer is poisoned and refuses all further writes (reopening repairs the tail).
//!
//! Durability: after `append` returns, the line is in the kernel (nothing is buffered
//! in userspace), which survives kill -9. [`SessionWriter::sync`] (fdatasync) makes it
//! survive power loss; the pod calls it at every invocation end and on shutdown. Each
//! sync then records the chain head (`head.rs`), so that an edit of the last synced
//! line, which nothing chains to, is caught on the next open.
//!
//! Privacy: segments hold whole conversations, so the writer creates the session
//! directory 0700 and every file 0600, and tightens older ones when it opens them.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use llm_types::Item;

use crate::chain::{self, ChainPoint, SegmentCheck};
use crate::entry::{EntryBody, LogEntry, LoggedItem};
use crate::error::{Error, Result};
use crate::files::{
    self, DIR_MODE, FILE_MODE, HEAD_FILE_NAME, LOCK_FILE_NAME, TEMP_SUFFIX, segment_file_name,
};
use crate::head::{self, Head};
use crate::line::LogLine;
use crate::replay::Replay;
use sys::now_ms;

/// An entry that is now in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Its sequence number.
    pub seq: u64,
    /// The logged line exactly as written, without its `\n`: what to broadcast.
    pub line: LogLine,
}

/// A torn tail that [`SessionWriter::open`] cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailCut {
    /// The segment file.
    pub file: PathBuf,
    /// Its length after the cut (the end of its last complete line).
    pub kept_bytes: u64,
    /// How many bytes were cut (an incomplete line and/or a run of NUL bytes).
    pub cut_bytes: u64,
}

/// What [`SessionWriter::open`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Whether the session directory was created.
    pub created_dir: bool,
    /// The current segment file.
    pub segment: PathBuf,
    /// Complete entries in the current segment.
    pub entries: usize,
    /// The sequence number the next entry will get.
    pub next_seq: u64,
    /// Torn tails that were cut (at most one in practice).
    pub cuts: Vec<TailCut>,
    /// Files removed: a leftover `*.jsonl.tmp` of an interrupted `start_segment`, or
    /// a later segment a crash left empty (or holding only the start of its first line).
    pub removed: Vec<PathBuf>,
    /// The session directory and files whose permissions let group or others in and
    /// were tightened to 0700 (the directory) or 0600 (files).
    pub tightened: Vec<PathBuf>,
}

/// The single writer of a session log. See the module docs for its invariants.
pub struct SessionWriter {
    dir: PathBuf,
    /// Holds the flock for the writer's life; closing it releases the lock.
    _lock: File,
    /// The current segment, opened with `O_APPEND`.
    file: File,
    segment: u32,
    segment_path: PathBuf,
    /// Committed length of the current segment.
    len: u64,
    chain: ChainPoint,
    lines: Vec<LogLine>,
    replay: Replay,
    /// The seq the head file records, when known to be the current one: a sync with
    /// nothing appended since then need not rewrite it.
    recorded_head: Option<u64>,
    poisoned: Option<String>,
}

impl SessionWriter {
    /// Opens (creating if needed) the session in `dir` for writing.
    ///
    /// Takes the session's lock (failing with [`Error::Locked`] if another process
    /// holds it), verifies every complete line of the last segment (and its link to
    /// the previous segment) and that the line the head recorded at the last sync is
    /// unchanged, then cuts a torn tail and tightens loose permissions. A complete
    /// line that does not parse or chain, or a segment holding bytes that are neither
    /// lines nor a torn first line, fails with [`Error::Corrupt`]; a synced line that
    /// was edited or removed fails with [`Error::Tampered`]; either way nothing is
    /// modified.
    pub fn open(dir: impl AsRef<Path>) -> Result<(SessionWriter, OpenReport)> {
        let dir = dir.as_ref().to_owned();
        let created_dir = files::create_dir_durably(&dir)?;
        let lock = take_lock(&dir)?;
        let listing = files::list_segments(&dir)?;

        // Find the current segment and verify it before modifying anything, so a
        // refused open leaves the directory exactly as it was.
        let mut segments = listing.segments;
        let mut to_remove = listing.temps;
        let found = loop {
            let Some(&number) = segments.last() else {
                break None;
            };
            let path = dir.join(segment_file_name(number));
            let mut bytes = files::read_segment(&path)?;
            let on_disk = bytes.len() as u64;
            let complete = chain::complete_len(&bytes);
            if complete == 0 {
                // Only what a crash can leave is cut or removed below.
                chain::check_incomplete_segment(&bytes, &path)?;
            }
            if complete == 0 && number > 1 {
                // A later segment without even its segment_start holds nothing
                // committed (start_segment renames it into place only after writing
                // and fsyncing that line), so the session continues in the previous one.
                to_remove.push(path);
                segments.pop();
                continue;
            }
            bytes.truncate(complete);
            let loaded = load_segment(&dir, number, &path, bytes)?;
            break Some((loaded, on_disk));
        };
        let recorded_head = check_head(&dir, found.as_ref().map(|(loaded, _)| loaded))?;

        // Verified. Now tighten permissions, remove leftovers (temporary files of an
        // interrupted start_segment, empty later segments) and cut the torn tail.
        let tightened = tighten(&dir, &lock, &segments)?;
        for path in &to_remove {
            std::fs::remove_file(path).map_err(|e| Error::io("remove leftover", path, e))?;
        }
        if !to_remove.is_empty() {
            files::fsync_dir(&dir)?;
        }
        let mut cuts = Vec::new();
        let current = match found {
            None => new_first_segment(&dir)?,
            Some((loaded, on_disk)) => {
                if on_disk > loaded.len {
                    cut_tail(&loaded.path, loaded.len)?;
                    cuts.push(TailCut {
                        file: loaded.path.clone(),
                        kept_bytes: loaded.len,
                        cut_bytes: on_disk - loaded.len,
                    });
                }
                loaded
            }
        };

        let file = OpenOptions::new()
            .append(true)
            .open(&current.path)
            .map_err(|e| Error::io("open segment for appending", &current.path, e))?;
        let report = OpenReport {
            created_dir,
            segment: current.path.clone(),
            entries: current.lines.len(),
            next_seq: current.chain.next_seq,
            cuts,
            removed: to_remove,
            tightened,
        };
        let writer = SessionWriter {
            dir,
            _lock: lock,
            file,
            segment: current.number,
            segment_path: current.path,
            len: current.len,
            chain: current.chain,
            lines: current.lines,
            replay: current.replay,
            recorded_head,
            poisoned: None,
        };
        Ok((writer, report))
    }

    /// Appends one entry, filling in `seq`, `prev` and `ts`.
    ///
    /// On success the line is in the kernel (not necessarily on disk: see
    /// [`SessionWriter::sync`]) and is returned for broadcasting. On failure nothing
    /// was logged.
    pub fn append(&mut self, body: EntryBody) -> Result<Committed> {
        self.check_poisoned()?;
        let entry = body.into_entry(self.chain.next_seq, self.chain.prev(), now_ms());
        let encoded = encode(&entry)?;
        if let Err(e) = write_once(&self.file, encoded.as_bytes()) {
            self.roll_back(&e);
            return Err(Error::io("append to segment", &self.segment_path, e));
        }
        self.len += encoded.len() as u64;
        Ok(self.commit(encoded, entry))
    }

    /// Starts the next segment with a `segment_start` holding `history` (chained to
    /// the current last line), and makes it current.
    ///
    /// The current segment is fdatasynced first; the new one is written to a
    /// temporary file, fsynced, renamed into place, and the directory fsynced, so a
    /// segment file never exists without its first line.
    pub fn start_segment(&mut self, history: Vec<Item>) -> Result<Committed> {
        self.check_poisoned()?;
        self.sync()?;
        let number = self.segment + 1;
        let name = segment_file_name(number);
        let path = self.dir.join(&name);
        let temp = self.dir.join(format!("{name}{TEMP_SUFFIX}"));
        let entry = LogEntry::SegmentStart {
            seq: self.chain.next_seq,
            prev: self.chain.prev(),
            ts: now_ms(),
            format_version: crate::FORMAT_VERSION,
            history: history.into_iter().map(LoggedItem).collect(),
            previous_segment: Some(segment_file_name(self.segment)),
        };
        let encoded = encode(&entry)?;

        let created = (|| {
            match std::fs::remove_file(&temp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let file = OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&temp)?;
            write_once(&file, encoded.as_bytes())?;
            file.sync_data()?;
            std::fs::rename(&temp, &path)?;
            Ok(file)
        })();
        let file = match created {
            Ok(file) => file,
            Err(e) => {
                // Best effort: a leftover temp file is also removed by the next open.
                let _ = std::fs::remove_file(&temp);
                return Err(Error::io("create segment", &path, e));
            }
        };

        // The new segment is in place: it is current from here on, whatever happens.
        self.file = file;
        self.segment = number;
        self.segment_path = path;
        self.len = encoded.len() as u64;
        self.lines.clear();
        let committed = self.commit(encoded, entry);
        if let Err(e) = files::fsync_dir(&self.dir) {
            self.poisoned = Some(e.to_string());
            return Err(e);
        }
        Ok(committed)
    }

    /// fdatasyncs the current segment, so everything appended so far survives power
    /// loss, then records the chain head (the last line's seq and hash) in `head`.
    ///
    /// If only recording the head fails, the error is returned but the writer goes
    /// on: the previous head still names a line that is on disk unchanged.
    pub fn sync(&mut self) -> Result<()> {
        self.check_poisoned()?;
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages, so what
            // is on disk is unknown: refuse to go on as if nothing happened.
            self.poisoned = Some(format!("fdatasync failed: {e}"));
            return Err(Error::io("fdatasync segment", &self.segment_path, e));
        }
        // Only now: the head must never name a line that is not on disk.
        let head = Head::of(&self.chain);
        if self.recorded_head != Some(head.seq) {
            self.recorded_head = None;
            head::write_head(&self.dir, &head)?;
            self.recorded_head = Some(head.seq);
        }
        Ok(())
    }

    /// The current segment's committed lines, in order, each exactly as logged
    /// (without `\n`): the `entries` of a snapshot.
    pub fn current_lines(&self) -> &[LogLine] {
        &self.lines
    }

    /// The current segment's lines with `seq >= from_seq` (all of them when
    /// `from_seq` is older than the segment): what a lagging client missed.
    pub fn lines_from(&self, from_seq: u64) -> &[LogLine] {
        let first = self.chain.next_seq.saturating_sub(self.lines.len() as u64);
        let skip = from_seq.saturating_sub(first).min(self.lines.len() as u64);
        &self.lines[usize::try_from(skip).unwrap_or(self.lines.len())..]
    }

    /// The conversation history as of the last committed entry.
    pub fn history(&self) -> &[Item] {
        &self.replay.history
    }

    /// Notifications committed as queued that have not joined the history yet
    /// (with their seqs, in log order): the next invocation takes them in.
    pub fn queued(&self) -> &[(u64, Item)] {
        &self.replay.queued
    }

    /// The sequence number the next entry will get.
    pub fn next_seq(&self) -> u64 {
        self.chain.next_seq
    }

    /// The session directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current segment file.
    pub fn segment_path(&self) -> &Path {
        &self.segment_path
    }

    /// The current segment's number (1 for `000001.jsonl`).
    pub fn segment_number(&self) -> u32 {
        self.segment
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            None => Ok(()),
            Some(reason) => Err(Error::Poisoned {
                dir: self.dir.clone(),
                reason: reason.clone(),
            }),
        }
    }

    /// Truncates the segment back to its committed length after a failed write.
    fn roll_back(&mut self, cause: &io::Error) {
        if let Err(e) = self.file.set_len(self.len) {
            self.poisoned = Some(format!(
                "an append failed ({cause}) and truncating it away failed too ({e})"
            ));
        }
    }

    /// Records a written entry (`encoded` is its line plus `\n`) in the in-memory state.
    fn commit(&mut self, encoded: String, entry: LogEntry) -> Committed {
        let seq = entry.seq();
        let end = encoded.len() - 1;
        let line = LogLine::new(Arc::new(encoded), 0, end);
        self.chain = ChainPoint::after(&line, &entry);
        self.lines.push(line.clone());
        self.replay.apply(entry);
        Committed { seq, line }
    }
}

impl std::fmt::Debug for SessionWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the lines or the history: they can be many megabytes.
        f.debug_struct("SessionWriter")
            .field("segment_path", &self.segment_path)
            .field("len", &self.len)
            .field("next_seq", &self.chain.next_seq)
            .field("lines", &self.lines.len())
            .field("history", &self.replay.history.len())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Serializes `entry` as one line followed by `\n`.
fn encode(entry: &LogEntry) -> Result<String> {
    let kind = || entry.kind_name().to_owned();
    let mut buf = Vec::with_capacity(1024);
    serde_json::to_writer(&mut buf, entry).map_err(|source| Error::Encode {
        kind: kind(),
        source,
    })?;
    // serde_json escapes control characters inside strings and writes no
    // whitespace, so the encoding is one line; and its output is UTF-8.
    debug_assert!(!buf.contains(&b'\n'));
    buf.push(b'\n');
    String::from_utf8(buf).map_err(|e| Error::Encode {
        kind: kind(),
        source: serde::ser::Error::custom(e),
    })
}

/// Takes the session's exclusive, non-blocking flock. std opens files close-on-exec,
/// so commands the pod runs do not inherit it.
fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            dir: dir.to_owned(),
            lock: path,
        }),
        Err(TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
    }
}

/// A verified segment, ready to continue.
struct Loaded {
    number: u32,
    path: PathBuf,
    len: u64,
    /// Where the chain stood before its first line.
    start: ChainPoint,
    chain: ChainPoint,
    lines: Vec<LogLine>,
    replay: Replay,
}

/// Creates `000001.jsonl` for a new session.
fn new_first_segment(dir: &Path) -> Result<Loaded> {
    let path = dir.join(segment_file_name(1));
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(|e| Error::io("create segment", &path, e))?;
    files::fsync_dir(dir)?;
    Ok(Loaded {
        number: 1,
        path,
        len: 0,
        start: ChainPoint::genesis(),
        chain: ChainPoint::genesis(),
        lines: Vec::new(),
        replay: Replay::default(),
    })
}

/// Verifies `complete` (the complete lines of segment `number`) and replays it.
fn load_segment(dir: &Path, number: u32, path: &Path, complete: Vec<u8>) -> Result<Loaded> {
    let start = crate::reader::chain_before(dir, number)?;
    let len = complete.len() as u64;
    let text = Arc::new(chain::into_text(complete, path)?);
    let check = SegmentCheck {
        file: path,
        number,
        accept_newer: false,
    };
    let mut lines = Vec::new();
    let mut replay = Replay::default();
    let chain = chain::verify_lines(text, &check, start.clone(), |line, entry| {
        lines.push(line);
        replay.apply(entry);
    })?;
    Ok(Loaded {
        number,
        path: path.to_owned(),
        len,
        start,
        chain,
        lines,
        replay,
    })
}

/// Checks the head recorded at the last sync, if any, against the verified current
/// segment (`None`: the session has no segment yet). Returns the recorded seq when it
/// names the segment's last line, so the next sync need not rewrite it.
fn check_head(dir: &Path, current: Option<&Loaded>) -> Result<Option<u64>> {
    let Some(recorded) = head::read_head(dir)? else {
        // Written before heads existed, or never synced: nothing to compare with.
        return Ok(None);
    };
    let genesis = ChainPoint::genesis();
    let first_segment = dir.join(segment_file_name(1));
    let (file, start, lines, chain) = match current {
        Some(loaded) => (
            loaded.path.as_path(),
            &loaded.start,
            &loaded.lines[..],
            &loaded.chain,
        ),
        None => (first_segment.as_path(), &genesis, &[][..], &genesis),
    };
    head::verify_head(dir, &recorded, file, start, lines)?;
    Ok((recorded == Head::of(chain)).then_some(recorded.seq))
}

/// Tightens the permissions of the session directory, its lock, its segments
/// `1..=last` and its head to 0700 / 0600 where group or others have access (a
/// session written by an older version, or created by hand). Returns what changed.
fn tighten(dir: &Path, lock: &File, segments: &[u32]) -> Result<Vec<PathBuf>> {
    let mut tightened = Vec::new();
    let handle = File::open(dir).map_err(|e| Error::io("open session directory", dir, e))?;
    if files::restrict(&handle, dir, DIR_MODE)? {
        tightened.push(dir.to_owned());
    }
    let lock_path = dir.join(LOCK_FILE_NAME);
    if files::restrict(lock, &lock_path, FILE_MODE)? {
        tightened.push(lock_path);
    }
    let head_path = dir.join(HEAD_FILE_NAME);
    let others = segments
        .iter()
        .map(|&number| (dir.join(segment_file_name(number)), true))
        .chain([(head_path, false)]);
    for (path, must_exist) in others {
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if !must_exist && e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open to check the permissions of", &path, e)),
        };
        if files::restrict(&file, &path, FILE_MODE)? {
            tightened.push(path);
        }
    }
    Ok(tightened)
}

/// Cuts a segment back to `len` bytes and makes the cut durable.
fn cut_tail(path: &Path, len: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open segment to cut its torn tail", path, e))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("cut torn tail of segment", path, e))
}

/// One `write(2)` of the whole buffer (retried only if interrupted before writing
/// anything). A short write is an error: the caller truncates it away.
fn write_once(mut file: &File, buf: &[u8]) -> io::Result<()> {
    loop {
        match file.write(buf) {
            Ok(n) if n == buf.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write: {n} of {} bytes", buf.len()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
