//! `session-log`: damaged session directories through the session store's
//! readers and its writer's open.
//!
//! An input is a whole session directory as an "image" (see [`encode_image`]).
//! Seeds are real sessions written by [`SessionWriter`] (entries of every
//! kind, `start_segment`, syncs, a torn tail); besides the byte mutations, the
//! harness mutates them the way disks and people damage logs: truncated files,
//! NUL runs, flipped bits, lines duplicated, swapped, deleted or moved to
//! another segment, files deleted or renamed, a head from elsewhere.
//!
//! Each image is written to a fresh directory and then:
//! - [`read_session`]: nothing panics; a log it accepts has seqs 1, 2, 3, ...;
//! - [`SessionReader::read_last`]: likewise, consecutive seqs; and it
//!   accepts what `read_session` accepts, with the same current segment;
//! - [`SessionWriter::open`]: if it refuses, every file is byte for byte as
//!   before (the store promises "either way nothing is modified"); if it
//!   accepts, the lines it holds have consecutive seqs ending just before
//!   `next_seq` and are what `read_last` then reads, a second open finds
//!   nothing more to repair and the same state, and an append and sync work
//!   and survive a third open.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use llm_types::{Item, Role, Usage};
use protocol::{InvokeKind, Segment, TurnResult};
use serde_json::Value;
use session_store::{
    EntryBody, GENESIS_PREV, HEAD_FILE_NAME, LOCK_FILE_NAME, LogEntry, SessionLog, SessionReader,
    SessionWriter, line_hash, read_session, segment_file_name,
};

use crate::driver::{Feedback, Harness};
use crate::error::FuzzError;
use crate::rng::Rng;
use crate::targets::{scratch_dir, shorten};

const NAME: &str = "session-log";

/// Builds the harness: a private directory (see [`scratch_dir`]) holding
/// the seed sessions and the directory each input is written to.
pub(super) fn build() -> Result<Box<dyn Harness>, FuzzError> {
    let tmp = scratch_dir("pod-fuzz-session-")?;
    Ok(Box::new(SessionHarness {
        work: tmp.path().join("session"),
        tmp,
    }))
}

struct SessionHarness {
    /// Holds the seeds' directories and `work`; removed with the harness.
    tmp: tempfile::TempDir,
    /// Where each input is written.
    work: PathBuf,
}

/// The files of a session directory, by name.
type Files = Vec<(String, Vec<u8>)>;

impl Harness for SessionHarness {
    fn seeds(&mut self) -> Result<Vec<Vec<u8>>, FuzzError> {
        let mut seeds = Vec::new();
        for shape in 0..4 {
            let dir = self.tmp.path().join(format!("seed-{shape}"));
            write_seed_session(&dir, shape)
                .and_then(|()| pin_timestamps(&dir))
                .map_err(|e| FuzzError::setup(NAME, e))?;
            seeds.push(encode_image(&read_files(&dir)?));
        }
        Ok(seeds)
    }

    fn check(&mut self, input: &[u8]) -> Result<Feedback, FuzzError> {
        let files = decode_image(input);
        reset_dir(&self.work, &files)?;
        let dir = self.work.as_path();

        let all = read_session(dir);
        let read = match &all {
            Ok(log) => {
                assert_consecutive("read_session", log, true);
                let _ = log.history();
                format!("read ok {}", log.segments.len())
            }
            Err(e) => format!("read error {}", first_words(&e.to_string())),
        };

        let last = match SessionReader::new(dir).read_last() {
            Ok(log) => {
                assert_consecutive("SessionReader::read_last", &log, false);
                let _ = log.replay();
                if let Ok(all) = &all {
                    assert_eq!(
                        segment_lines(&log),
                        current_segment(all),
                        "read_last and read_session disagree on the current segment"
                    );
                }
                "last ok".to_owned()
            }
            Err(e) => {
                if all.is_ok() {
                    panic!("read_session accepts the log but read_last refuses it: {e}");
                }
                format!("last error {}", first_words(&e.to_string()))
            }
        };

        let before = snapshot(dir)?;
        let open = match SessionWriter::open(dir) {
            Err(e) => {
                let after = snapshot(dir)?;
                if after != before {
                    panic!(
                        "SessionWriter::open refused the log ({e}) but changed its files: {}",
                        describe_change(&before, &after)
                    );
                }
                format!("open error {}", first_words(&e.to_string()))
            }
            Ok((writer, report)) => {
                let lines = writer_lines(&writer);
                assert_writer_state("SessionWriter::open", &lines, writer.next_seq());
                assert_eq!(
                    report.next_seq,
                    writer.next_seq(),
                    "report and writer disagree"
                );
                assert_eq!(report.entries, lines.len(), "report and writer disagree");
                let repaired = !report.cuts.is_empty() || !report.removed.is_empty();
                let next_seq = writer.next_seq();
                let held: Vec<String> = writer
                    .current_lines()
                    .iter()
                    .map(|l| l.as_str().to_owned())
                    .collect();
                drop(writer);
                // The writer checks more than the readers (the head, unknown
                // kinds); what it accepts (and repaired) they must read alike.
                match SessionReader::new(dir).read_last() {
                    Ok(log) => assert_eq!(
                        segment_lines(&log),
                        held,
                        "read_last and the writer disagree on the current segment"
                    ),
                    Err(e) => panic!("the writer accepts the log but read_last refuses it: {e}"),
                }
                reopen_and_append(dir, next_seq, lines.len());
                format!("open ok repaired {repaired}")
            }
        };
        Ok(Feedback::of(&read)
            .and(Feedback::of(&last))
            .and(Feedback::of(&open)))
    }

    fn mutate(&mut self, rng: &mut Rng, input: &mut Vec<u8>) -> bool {
        let mut files = decode_image(input);
        for _ in 0..rng.len_up_to(3) {
            mutate_files(rng, &mut files);
        }
        *input = encode_image(&files);
        true
    }

    fn max_len(&self) -> usize {
        256 * 1024
    }
}

/// A second open of a log the writer accepted: nothing more to repair, the
/// same state; then an append and a sync, and a third open that sees it.
fn reopen_and_append(dir: &Path, next_seq: u64, entries: usize) {
    let (mut writer, report) = SessionWriter::open(dir).unwrap_or_else(|e| {
        panic!("SessionWriter::open accepted the log once, then refused it: {e}")
    });
    assert!(
        report.cuts.is_empty() && report.removed.is_empty(),
        "a second open repaired again: {report:?}"
    );
    assert_eq!(
        (writer.next_seq(), report.entries),
        (next_seq, entries),
        "a second open sees another log"
    );
    let committed = writer
        .append(EntryBody::RunError {
            message: "fuzz".to_owned(),
        })
        .unwrap_or_else(|e| panic!("append to an accepted log failed: {e}"));
    assert_eq!(committed.seq, next_seq, "append took the wrong seq");
    writer
        .sync()
        .unwrap_or_else(|e| panic!("sync of an accepted log failed: {e}"));
    drop(writer);
    let (writer, _) = SessionWriter::open(dir)
        .unwrap_or_else(|e| panic!("the log no longer opens after an append and a sync: {e}"));
    let lines = writer_lines(&writer);
    assert_writer_state("open after append", &lines, writer.next_seq());
    assert_eq!(
        writer.next_seq(),
        next_seq + 1,
        "the appended entry is lost"
    );
}

/// The lines of the one segment `read_last` returned (none if it returned none).
fn segment_lines(log: &SessionLog) -> Vec<String> {
    log.lines().map(|l| l.as_str().to_owned()).collect()
}

/// The lines of the segment `read_last` should pick from a whole read: the
/// last one, skipping later segments without a complete line.
fn current_segment(log: &SessionLog) -> Vec<String> {
    log.segments
        .iter()
        .rev()
        .find(|s| !s.lines.is_empty() || s.number == 1)
        .map(|s| s.lines.iter().map(|l| l.as_str().to_owned()).collect())
        .unwrap_or_default()
}

/// The seqs of a writer's current lines, decoded again from their text.
fn writer_lines(writer: &SessionWriter) -> Vec<u64> {
    writer
        .current_lines()
        .iter()
        .map(|line| {
            serde_json::from_str::<LogEntry>(line.as_str())
                .unwrap_or_else(|e| {
                    panic!(
                        "the writer holds a line that does not decode ({e}): {}",
                        shorten(line.as_str(), 200)
                    )
                })
                .seq()
        })
        .collect()
}

/// The writer's lines have consecutive seqs, the last one just before `next_seq`.
fn assert_writer_state(what: &str, seqs: &[u64], next_seq: u64) {
    assert_steps(what, seqs);
    if let Some(&last) = seqs.last() {
        assert_eq!(
            last.checked_add(1),
            Some(next_seq),
            "{what}: next_seq {next_seq} does not follow the last line's seq {last}"
        );
    }
}

/// A read log's seqs are consecutive (and start at 1 for a whole session).
fn assert_consecutive(what: &str, log: &SessionLog, from_one: bool) {
    let seqs: Vec<u64> = log.entries().map(LogEntry::seq).collect();
    assert_eq!(
        seqs.len(),
        log.lines().count(),
        "{what}: entries and lines differ in number"
    );
    if from_one && let Some(&first) = seqs.first() {
        assert_eq!(first, 1, "{what}: a whole session starts at seq {first}");
    }
    assert_steps(what, &seqs);
}

fn assert_steps(what: &str, seqs: &[u64]) {
    for pair in seqs.windows(2) {
        assert_eq!(
            pair[0].checked_add(1),
            Some(pair[1]),
            "{what}: accepted a log whose seqs go {} then {}",
            pair[0],
            pair[1]
        );
    }
}

/// An error message's first few words, without the paths and numbers that differ per input.
fn first_words(message: &str) -> String {
    message
        .split_whitespace()
        .filter(|w| !w.contains('/'))
        .take(8)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every regular file of `dir` but the lock (the writer may create that before
/// it reads anything), with its bytes.
fn snapshot(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, FuzzError> {
    let mut files = BTreeMap::new();
    for (name, bytes) in read_files(dir)? {
        if name != LOCK_FILE_NAME {
            files.insert(name, bytes);
        }
    }
    Ok(files)
}

/// What differs between two snapshots, briefly.
fn describe_change(
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
) -> String {
    let mut changes = Vec::new();
    for (name, bytes) in before {
        match after.get(name) {
            None => changes.push(format!("{name} removed")),
            Some(now) if now != bytes => changes.push(format!(
                "{name} changed ({} -> {} bytes)",
                bytes.len(),
                now.len()
            )),
            Some(_) => {}
        }
    }
    for name in after.keys() {
        if !before.contains_key(name) {
            changes.push(format!("{name} created"));
        }
    }
    changes.join(", ")
}

/// The regular files of `dir`, sorted by name.
fn read_files(dir: &Path) -> Result<Files, FuzzError> {
    let mut files = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| FuzzError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| FuzzError::io("list", dir, e))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let bytes = fs::read(&path).map_err(|e| FuzzError::io("read", &path, e))?;
        files.push((entry.file_name().to_string_lossy().into_owned(), bytes));
    }
    files.sort();
    Ok(files)
}

/// Empties `dir` (creating it) and writes `files` into it.
fn reset_dir(dir: &Path, files: &Files) -> Result<(), FuzzError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(FuzzError::io("remove", dir, e));
        }
        _ => {}
    }
    fs::create_dir(dir).map_err(|e| FuzzError::io("create directory", dir, e))?;
    for (name, bytes) in files {
        let path = dir.join(name);
        fs::write(&path, bytes).map_err(|e| FuzzError::io("write", &path, e))?;
    }
    Ok(())
}

/// A name that stays inside the directory: letters, digits, `.`, `_`, `-`.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// A session directory as bytes: per file, one byte of name length, the name,
/// four bytes (little endian) of content length, the content. Byte mutations
/// then mostly hit contents, and lengths they break are taken leniently.
fn encode_image(files: &Files) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        let name = &name.as_bytes()[..name.len().min(255)];
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// The files of an image; a length past the end takes what is left, files
/// with names that are not plain file names are dropped, the first of two
/// same-named files wins.
fn decode_image(mut bytes: &[u8]) -> Files {
    let mut files: Files = Vec::new();
    while let Some((&name_len, rest)) = bytes.split_first() {
        let name_len = usize::from(name_len).min(rest.len());
        let (name, rest) = rest.split_at(name_len);
        let mut len = [0u8; 4];
        let header = rest.len().min(4);
        len[..header].copy_from_slice(&rest[..header]);
        let rest = &rest[header..];
        let len = (u32::from_le_bytes(len) as usize).min(rest.len());
        let (content, rest) = rest.split_at(len);
        bytes = rest;
        let name = String::from_utf8_lossy(name).into_owned();
        if valid_name(&name) && !files.iter().any(|(n, _)| *n == name) {
            files.push((name, content.to_vec()));
        }
    }
    files
}

/// One damage of the kind disks, crashes and people do to a session directory.
fn mutate_files(rng: &mut Rng, files: &mut Files) {
    if files.is_empty() {
        files.push((segment_file_name(1), Vec::new()));
    }
    let pick = rng.below(files.len());
    let other = rng.below(files.len());
    match rng.below(14) {
        // A torn tail: the file cut anywhere.
        0 => {
            let content = &mut files[pick].1;
            let at = rng.below(content.len() + 1);
            content.truncate(at);
        }
        // What a crash leaves after a line: NULs, or the start of a line.
        1 => {
            let content = &mut files[pick].1;
            if rng.one_in(2) {
                let n = rng.len_up_to(4096);
                content.extend(std::iter::repeat_n(0u8, n));
            } else {
                content.extend_from_slice(b"{\"kind\":\"run_error\",\"seq\":");
            }
        }
        2 => {
            let content = &mut files[pick].1;
            if !content.is_empty() {
                let at = rng.below(content.len());
                content[at] ^= 1 << rng.below(8);
            }
        }
        3 => {
            let content = &mut files[pick].1;
            let at = rng.below(content.len() + 1);
            content.insert(at, 0);
        }
        // Lines duplicated, swapped, deleted, moved to another file.
        4 => edit_lines(rng, &mut files[pick].1, LineEdit::Duplicate),
        5 => edit_lines(rng, &mut files[pick].1, LineEdit::Swap),
        6 => edit_lines(rng, &mut files[pick].1, LineEdit::Delete),
        7 => {
            let mut lines = split_lines(&files[pick].1);
            if !lines.is_empty() {
                let line = lines.remove(rng.below(lines.len()));
                files[pick].1 = lines.concat();
                let target = &mut files[other].1;
                let mut others = split_lines(target);
                let at = rng.below(others.len() + 1);
                others.insert(at, line);
                *target = others.concat();
            }
        }
        // A file deleted.
        8 => {
            files.remove(pick);
        }
        // A file renamed: to another segment number, a temp file, the head.
        9 => {
            let names = [
                segment_file_name(1),
                segment_file_name(2),
                segment_file_name(3),
                segment_file_name(5),
                format!("{}.tmp", segment_file_name(2)),
                format!("{}.tmp", segment_file_name(4)),
                "0000001.jsonl".to_owned(),
                HEAD_FILE_NAME.to_owned(),
                format!("{HEAD_FILE_NAME}.tmp"),
            ];
            if let Some(name) = rng.pick(&names) {
                files.retain(|(n, _)| n != name);
                let index = pick.min(files.len().saturating_sub(1));
                if let Some(file) = files.get_mut(index) {
                    file.0 = name.clone();
                }
            }
        }
        // Two files' contents exchanged (segments out of order, a segment as the head).
        10 => {
            let a = std::mem::take(&mut files[pick].1);
            let b = std::mem::replace(&mut files[other].1, a);
            files[pick].1 = b;
        }
        // One file's content copied over another.
        11 => {
            let content = files[other].1.clone();
            files[pick].1 = content;
        }
        // A number in a line (a seq, a length) changed by one.
        12 => {
            let content = &mut files[pick].1;
            if let Some(at) = (0..8)
                .map(|_| rng.below(content.len()))
                .find(|&i| content.get(i).is_some_and(u8::is_ascii_digit))
            {
                content[at] = if content[at] == b'9' {
                    b'0'
                } else {
                    content[at] + 1
                };
            }
        }
        // A head naming another seq.
        _ => {
            let head = format!(
                "{{\"seq\":{},\"hash\":\"{}\"}}\n",
                rng.below(40),
                "0".repeat(64)
            );
            files.retain(|(n, _)| n != HEAD_FILE_NAME);
            files.push((HEAD_FILE_NAME.to_owned(), head.into_bytes()));
        }
    }
}

/// The lines of `bytes`, each with its `\n` if it has one.
fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

enum LineEdit {
    Duplicate,
    Swap,
    Delete,
}

fn edit_lines(rng: &mut Rng, content: &mut Vec<u8>, edit: LineEdit) {
    let mut lines = split_lines(content);
    if lines.is_empty() {
        return;
    }
    let a = rng.below(lines.len());
    let b = rng.below(lines.len());
    match edit {
        LineEdit::Duplicate => {
            let line = lines[a].clone();
            lines.insert(b, line);
        }
        LineEdit::Swap => lines.swap(a, b),
        LineEdit::Delete => {
            lines.remove(a);
        }
    }
    *content = lines.concat();
}

/// Writes one of the seed sessions (`shape` 0 to 3) into `dir`, through the
/// real writer.
fn write_seed_session(dir: &Path, shape: u32) -> Result<(), String> {
    let (mut w, _) = SessionWriter::open(dir).map_err(|e| e.to_string())?;
    if shape == 3 {
        // An empty session: opened once, nothing appended.
        return Ok(());
    }
    let append = |w: &mut SessionWriter, body: EntryBody| {
        w.append(body).map(|c| c.seq).map_err(|e| e.to_string())
    };
    append(
        &mut w,
        EntryBody::UserInput {
            segments: vec![
                Segment::text("fix the test in "),
                Segment::FileRef {
                    path: "src/lib.rs".to_owned(),
                },
            ],
            item: Item::text(Role::User, "fix the test in @src/lib.rs").into(),
        },
    )?;
    append(
        &mut w,
        EntryBody::InvokeStart {
            invoke_kind: InvokeKind::UserSend,
            turn: 1,
        },
    )?;
    append(
        &mut w,
        EntryBody::AssistantItem {
            item: Item::tool_call("call_1", "Read", r#"{"path":"src/lib.rs"}"#).into(),
        },
    )?;
    append(
        &mut w,
        EntryBody::ToolResult {
            item: Item::tool_result(
                "call_1",
                "read 3 lines",
                Some("fn main() {}\n".into()),
                false,
            )
            .into(),
        },
    )?;
    let queued = append(
        &mut w,
        EntryBody::SystemItem {
            origin: "notify".to_owned(),
            item: Item::text(Role::User, "CI finished: 2 tests failed").into(),
            queued: Some(true),
        },
    )?;
    append(&mut w, EntryBody::QueueJoined { seqs: vec![queued] })?;
    append(
        &mut w,
        EntryBody::Usage {
            llm_call: 1,
            usage: Usage {
                input_tokens: 1200,
                output_tokens: 85,
                cache_read_tokens: 18_000,
                cache_write_tokens: 0,
            },
        },
    )?;
    append(
        &mut w,
        EntryBody::AssistantItem {
            item: Item::text(Role::Assistant, "The fixture moved — fixed ✓").into(),
        },
    )?;
    append(
        &mut w,
        EntryBody::TurnEnd {
            turn: 1,
            result: TurnResult::Finished,
        },
    )?;
    w.sync().map_err(|e| e.to_string())?;
    if shape == 1 {
        // Appended after the last sync (the head is older), then a torn line.
        append(
            &mut w,
            EntryBody::RunError {
                message: "provider error: 529 overloaded".to_owned(),
            },
        )?;
        let path = w.segment_path().to_path_buf();
        drop(w);
        let mut bytes = fs::read(&path).map_err(|e| e.to_string())?;
        bytes.extend_from_slice(b"{\"kind\":\"turn_end\",\"seq\":11,\"pr");
        fs::write(&path, bytes).map_err(|e| e.to_string())?;
        return Ok(());
    }
    append(
        &mut w,
        EntryBody::CompactionStart {
            tokens_before: 6120,
        },
    )?;
    let history = w.history().to_vec();
    w.start_segment(history).map_err(|e| e.to_string())?;
    append(
        &mut w,
        EntryBody::CompactionEnd {
            tokens_before: 6120,
            tokens_after: 910,
        },
    )?;
    append(
        &mut w,
        EntryBody::ChildSpawned {
            name: "worker".to_owned(),
            record: serde_json::json!({"socket": "/run/pods/main.worker/sock", "scope": [{"target": "/repo/tests", "permission": "write"}]}),
        },
    )?;
    append(
        &mut w,
        EntryBody::ChildCursor {
            name: "worker".to_owned(),
            cursor: 3,
        },
    )?;
    append(
        &mut w,
        EntryBody::Hook {
            run: protocol::HookRun {
                event: "pre_tool".to_owned(),
                command: "./check.sh".to_owned(),
                tool: Some("Bash".to_owned()),
                exit_code: Some(2),
                duration_ms: 12,
                decision: "block".to_owned(),
                message: Some("no curl here".to_owned()),
            },
        },
    )?;
    if shape == 2 {
        w.start_segment(Vec::new()).map_err(|e| e.to_string())?;
        append(
            &mut w,
            EntryBody::ChildRemoved {
                name: "worker".to_owned(),
                reason: "stopped by this pod".to_owned(),
            },
        )?;
    }
    w.sync().map_err(|e| e.to_string())
}

/// Rewrites a seed session with fixed timestamps (`ts` = 1764000000000 + seq),
/// its hash chain and head recomputed to match, so the seeds, and with them
/// every run's inputs, are the same bytes on every run (a seed reproduces).
fn pin_timestamps(dir: &Path) -> Result<(), String> {
    let mut segments: Vec<String> = read_files(dir)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.ends_with(".jsonl"))
        .collect();
    segments.sort();
    let mut prev = GENESIS_PREV.to_owned();
    let mut hashes = BTreeMap::new();
    for name in segments {
        let path = dir.join(&name);
        let text = fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        let mut out = String::with_capacity(text.len());
        for piece in text.split_inclusive('\n') {
            let Some(line) = piece.strip_suffix('\n') else {
                // A torn tail stays as it is.
                out.push_str(piece);
                continue;
            };
            let mut entry: Value =
                serde_json::from_str(line).map_err(|e| format!("{name}: {e}"))?;
            let fields = entry
                .as_object_mut()
                .ok_or_else(|| format!("{name}: a line is not an object"))?;
            let seq = fields
                .get("seq")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("{name}: a line without a seq"))?;
            // Replacing values keeps the keys in place (preserve_order).
            fields.insert("ts".to_owned(), Value::from(1_764_000_000_000_u64 + seq));
            fields.insert("prev".to_owned(), Value::from(prev.clone()));
            let line = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
            prev = line_hash(line.as_bytes());
            hashes.insert(seq, prev.clone());
            out.push_str(&line);
            out.push('\n');
        }
        fs::write(&path, out).map_err(|e| format!("{name}: {e}"))?;
    }
    let head_path = dir.join(HEAD_FILE_NAME);
    if let Ok(head) = fs::read_to_string(&head_path) {
        let seq = serde_json::from_str::<Value>(&head)
            .ok()
            .and_then(|h| h.get("seq").and_then(Value::as_u64))
            .ok_or("the head has no seq")?;
        let hash = match seq {
            0 => GENESIS_PREV.to_owned(),
            _ => hashes.get(&seq).cloned().ok_or("the head names no line")?,
        };
        fs::write(
            &head_path,
            format!("{{\"seq\":{seq},\"hash\":\"{hash}\"}}\n"),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_are_valid_sessions_and_the_same_bytes_every_time() {
        let mut harness = SessionHarness {
            work: PathBuf::new(),
            tmp: tempfile::tempdir().unwrap(),
        };
        let seeds = harness.seeds().unwrap();
        for (shape, seed) in seeds.iter().enumerate() {
            let dir = harness.tmp.path().join(format!("check-{shape}"));
            reset_dir(&dir, &decode_image(seed)).unwrap();
            let (writer, report) = SessionWriter::open(&dir)
                .unwrap_or_else(|e| panic!("seed {shape} does not open: {e}"));
            assert_eq!(report.cuts.len(), usize::from(shape == 1), "{report:?}");
            assert!(shape == 3 || writer.next_seq() > 5, "seed {shape} is short");
        }
        let mut again = SessionHarness {
            work: PathBuf::new(),
            tmp: tempfile::tempdir().unwrap(),
        };
        assert_eq!(again.seeds().unwrap(), seeds);
    }

    #[test]
    fn images_round_trip_and_decode_leniently() {
        let files: Files = vec![
            ("000001.jsonl".to_owned(), b"{}\n".to_vec()),
            ("head".to_owned(), Vec::new()),
        ];
        assert_eq!(decode_image(&encode_image(&files)), files);
        let mut cut = encode_image(&files);
        cut.truncate(15); // The whole name, half its length field.
        assert_eq!(
            decode_image(&cut),
            vec![("000001.jsonl".to_owned(), Vec::new())]
        );
        let bad = encode_image(&vec![("../x".to_owned(), b"x".to_vec())]);
        assert!(decode_image(&bad).is_empty());
    }
}
