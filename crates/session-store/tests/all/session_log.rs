//! End-to-end tests of the session log on real files: round trips, torn tails,
//! corruption, concurrent reading, locking, segments and scale.

// Test code: a panic is the failure report (clippy.toml allows this only inside
// `#[test]` functions, not in this file's helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};

use common::{Traffic, items_of};
use llm_types::{Item, Role};
use session_store::{
    Corruption, EntryBody, Error, GENESIS_PREV, LogEntry, LogLine, SessionReader, SessionWriter,
    line_hash, read_session, replay, segment_file_name,
};

pub(crate) fn session_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sessions").join("main");
    (tmp, dir)
}

/// Writes `n` entries of realistic traffic; returns the bodies and committed lines.
pub(crate) fn write_traffic(dir: &Path, n: usize, seed: u64) -> (Vec<EntryBody>, Vec<LogLine>) {
    let (mut writer, _) = SessionWriter::open(dir).unwrap();
    let bodies: Vec<EntryBody> = Traffic::new(seed).take(n).collect();
    let mut lines = Vec::new();
    for body in &bodies {
        let committed = writer.append(body.clone()).unwrap();
        assert_eq!(committed.seq, lines.len() as u64 + 1);
        lines.push(committed.line);
    }
    writer.sync().unwrap();
    (bodies, lines)
}

pub(crate) fn segment(dir: &Path, number: u32) -> PathBuf {
    dir.join(segment_file_name(number))
}

pub(crate) fn text_body(text: &str) -> EntryBody {
    EntryBody::AssistantItem {
        item: Item::text(Role::Assistant, text).into(),
    }
}

#[test]
fn round_trip_preserves_lines_chain_and_history() {
    let (_tmp, dir) = session_dir();
    let (writer, report) = SessionWriter::open(&dir).unwrap();
    assert!(report.created_dir);
    assert_eq!((report.entries, report.next_seq), (0, 1));
    assert!(report.cuts.is_empty());
    assert!(writer.current_lines().is_empty() && writer.history().is_empty());
    drop(writer);

    let (bodies, lines) = write_traffic(&dir, 300, 1);

    // The file is exactly the committed lines, each followed by `\n`.
    let on_disk = std::fs::read_to_string(segment(&dir, 1)).unwrap();
    let expected: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(on_disk, expected);

    let (writer, report) = SessionWriter::open(&dir).unwrap();
    assert!(!report.created_dir);
    assert_eq!((report.entries, report.next_seq), (300, 301));
    assert!(report.cuts.is_empty() && report.removed.is_empty());
    assert_eq!(writer.current_lines(), &lines[..]);
    assert_eq!(writer.history(), &items_of(&bodies)[..]);
    drop(writer);

    let log = read_session(&dir).unwrap();
    assert_eq!(log.lines().cloned().collect::<Vec<_>>(), lines);
    assert_eq!(log.last_seq(), 300);
    let entries: Vec<&LogEntry> = log.entries().collect();
    assert_eq!(entries[0].prev(), GENESIS_PREV);
    for (i, pair) in entries.windows(2).enumerate() {
        assert_eq!(pair[1].prev(), line_hash(lines[i].as_bytes()));
        assert_eq!(pair[1].seq(), pair[0].seq() + 1);
    }
    for (entry, body) in entries.iter().zip(&bodies) {
        assert_eq!(entry.kind_name(), body.kind_name());
    }
    assert_eq!(log.history(), items_of(&bodies));
    assert_eq!(log.into_history(), items_of(&bodies));
}

#[test]
fn appended_bytes_are_visible_to_readers_immediately() {
    let (_tmp, dir) = session_dir();
    let (mut writer, _) = SessionWriter::open(&dir).unwrap();
    for i in 1..=5u64 {
        let committed = writer.append(text_body(&format!("entry {i}"))).unwrap();
        let log = read_session(&dir).unwrap();
        assert_eq!(log.last_seq(), i);
        assert_eq!(log.lines().last().unwrap(), &committed.line);
    }
}

#[test]
fn torn_tail_at_every_offset_of_the_last_entry_is_cut_and_the_chain_continues() {
    let (tmp, dir) = session_dir();
    let (bodies, lines) = write_traffic(&dir, 12, 2);
    let full = std::fs::read(segment(&dir, 1)).unwrap();
    let last_start = full.len() - lines[11].len() - 1;

    for keep in last_start..full.len() {
        let case = tmp.path().join(format!("case-{keep}"));
        std::fs::create_dir_all(&case).unwrap();
        std::fs::write(segment(&case, 1), &full[..keep]).unwrap();

        let (mut writer, report) = SessionWriter::open(&case).unwrap();
        let torn = (keep - last_start) as u64;
        if torn == 0 {
            assert!(report.cuts.is_empty());
        } else {
            assert_eq!(report.cuts.len(), 1, "offset {keep}");
            assert_eq!(report.cuts[0].file, segment(&case, 1));
            assert_eq!(report.cuts[0].cut_bytes, torn);
            assert_eq!(report.cuts[0].kept_bytes, last_start as u64);
        }
        assert_eq!((report.entries, report.next_seq), (11, 12));
        assert_eq!(writer.current_lines(), &lines[..11]);
        assert_eq!(writer.history(), &items_of(&bodies[..11])[..]);
        assert_eq!(
            std::fs::metadata(segment(&case, 1)).unwrap().len(),
            last_start as u64
        );

        let committed = writer.append(text_body("after the crash")).unwrap();
        assert_eq!(committed.seq, 12);
        drop(writer);

        let (writer, report) = SessionWriter::open(&case).unwrap();
        assert!(report.cuts.is_empty());
        assert_eq!(report.next_seq, 13);
        assert_eq!(writer.current_lines()[11], committed.line);
        assert_eq!(
            writer.history().last(),
            Some(&Item::text(Role::Assistant, "after the crash"))
        );
        drop(writer);
        assert_eq!(read_session(&case).unwrap().last_seq(), 12);
        std::fs::remove_dir_all(&case).unwrap();
    }
}

#[test]
fn trailing_nul_bytes_are_cut() {
    let (tmp, dir) = session_dir();
    let (_, lines) = write_traffic(&dir, 10, 3);
    let full = std::fs::read(segment(&dir, 1)).unwrap();
    let last_start = full.len() - lines[9].len() - 1;

    // NULs after the last complete line, and NULs after a partial last line.
    for (name, content, kept, entries) in [
        (
            "after-complete",
            [&full[..], &[0u8; 4096][..]].concat(),
            full.len(),
            10,
        ),
        (
            "after-partial",
            [&full[..last_start + 7], &[0u8; 100][..]].concat(),
            last_start,
            9,
        ),
        (
            "nul-block-replacing-last",
            [&full[..last_start], &vec![0u8; full.len() - last_start][..]].concat(),
            last_start,
            9,
        ),
    ] {
        let case = tmp.path().join(name);
        std::fs::create_dir_all(&case).unwrap();
        std::fs::write(segment(&case, 1), &content).unwrap();
        let (mut writer, report) = SessionWriter::open(&case).unwrap();
        assert_eq!(report.cuts.len(), 1, "{name}");
        assert_eq!(report.cuts[0].kept_bytes, kept as u64, "{name}");
        assert_eq!(report.cuts[0].cut_bytes, (content.len() - kept) as u64);
        assert_eq!(report.entries, entries, "{name}");
        writer.append(text_body("next")).unwrap();
        drop(writer);
        assert_eq!(read_session(&case).unwrap().last_seq(), entries as u64 + 1);
    }
}

/// Appends `n` entries without syncing (so no head is recorded), like a pod killed
/// before its first invocation ended.
fn write_unsynced(dir: &Path, n: usize) {
    let (mut writer, _) = SessionWriter::open(dir).unwrap();
    for i in 0..n {
        writer.append(text_body(&format!("entry {i}"))).unwrap();
    }
    assert!(!dir.join(session_store::HEAD_FILE_NAME).exists());
}

#[test]
fn a_first_segment_of_nul_bytes_is_refused_not_taken_for_a_torn_tail() {
    let (_tmp, dir) = session_dir();
    write_unsynced(&dir, 4);
    let path = segment(&dir, 1);
    // What `open(LOG, 'r+b').write(b'\0' * 2053)` leaves of a short log.
    std::fs::write(&path, vec![0u8; 2053]).unwrap();
    let (line, problem, message) = expect_corrupt(&dir, &path);
    assert_eq!(line, 1);
    assert_eq!(
        problem,
        Corruption::NoCompleteLine {
            bytes: 2053,
            nuls: 2053
        }
    );
    assert!(
        message.contains(
            "no complete first line: 2053 bytes that are not the start of a log line (all of \
             them NUL bytes)"
        ),
        "{message}"
    );
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(std::fs::read(&path).unwrap(), vec![0u8; 2053]);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "only lock and the segment"
    );

    // The readers report the same damage instead of an empty session.
    for result in [read_session(&dir), SessionReader::new(&dir).read_last()] {
        match result {
            Err(Error::Corrupt {
                line: 1,
                problem: Corruption::NoCompleteLine { bytes: 2053, .. },
                ..
            }) => {}
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}

#[test]
fn garbage_without_a_newline_is_refused_but_a_torn_first_line_is_cut() {
    let (_tmp, dir) = session_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = segment(&dir, 1);
    for garbage in [
        &b"random garbage \x8f\x01 without a newline"[..],
        b" {\"kind\":\"user_input\"",
        b"{\"kind\":\"user_input\",\"seq\":1\0\0\0\0",
    ] {
        std::fs::write(&path, garbage).unwrap();
        let (line, problem, _) = expect_corrupt(&dir, &path);
        assert_eq!(line, 1);
        assert!(
            matches!(problem, Corruption::NoCompleteLine { bytes, .. } if bytes == garbage.len() as u64),
            "{problem:?}"
        );
        assert!(read_session(&dir).is_err());
    }

    // A crash in the middle of the very first write leaves the start of a line: cut.
    let torn = format!(r#"{{"seq":1,"prev":"{}"#, &GENESIS_PREV[..20]);
    std::fs::write(&path, &torn).unwrap();
    assert!(read_session(&dir).unwrap().segments[0].lines.is_empty());
    let (mut writer, report) = SessionWriter::open(&dir).unwrap();
    assert_eq!(report.cuts.len(), 1);
    assert_eq!(report.cuts[0].kept_bytes, 0);
    assert_eq!(report.cuts[0].cut_bytes, torn.len() as u64);
    assert_eq!(report.next_seq, 1);
    assert_eq!(writer.append(text_body("first")).unwrap().seq, 1);
    drop(writer);
    assert_eq!(read_session(&dir).unwrap().last_seq(), 1);
}

#[test]
fn a_later_segment_of_nul_bytes_is_refused_not_removed() {
    let (_tmp, dir) = session_dir();
    write_unsynced(&dir, 3);
    let (mut writer, _) = SessionWriter::open(&dir).unwrap();
    writer.start_segment(Vec::new()).unwrap();
    drop(writer);
    let path = segment(&dir, 2);

    std::fs::write(&path, vec![0u8; 700]).unwrap();
    let (line, problem, _) = expect_corrupt(&dir, &path);
    assert_eq!(line, 1);
    assert_eq!(
        problem,
        Corruption::NoCompleteLine {
            bytes: 700,
            nuls: 700
        }
    );
    assert!(path.exists());
    assert!(matches!(
        SessionReader::new(&dir).read_last(),
        Err(Error::Corrupt { line: 1, .. })
    ));
    assert!(matches!(
        read_session(&dir),
        Err(Error::Corrupt { line: 1, .. })
    ));

    // The start of its segment_start is what a crash could leave: still removed.
    std::fs::write(&path, br#"{"kind":"segment_start","seq":4,"#).unwrap();
    let (writer, report) = SessionWriter::open(&dir).unwrap();
    assert_eq!(report.removed, vec![path]);
    assert_eq!((writer.segment_number(), report.next_seq), (1, 4));
}

/// Opens `dir` expecting corruption; checks the error and that nothing was modified.
pub(crate) fn expect_corrupt(dir: &Path, file: &Path) -> (u64, Corruption, String) {
    let before = std::fs::read(file).unwrap();
    let err = SessionWriter::open(dir).unwrap_err();
    assert_eq!(
        std::fs::read(file).unwrap(),
        before,
        "a refused open changed the file"
    );
    let message = err.to_string();
    match err {
        Error::Corrupt {
            file: f,
            line,
            problem,
        } => {
            assert_eq!(f, file);
            assert!(message.contains(&file.display().to_string()), "{message}");
            assert!(message.contains(&format!("line {line}")), "{message}");
            (line, problem, message)
        }
        other => panic!("expected corruption, got {other}"),
    }
}

#[test]
fn flipped_byte_mid_file_names_the_line() {
    let (_tmp, dir) = session_dir();
    let (_, lines) = write_traffic(&dir, 20, 4);
    let path = segment(&dir, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    // Line 8: turn its `"kind"` key's opening quote into garbage.
    let offset: usize = lines[..7].iter().map(|l| l.len() + 1).sum();
    bytes[offset + 1] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let (line, problem, message) = expect_corrupt(&dir, &path);
    assert_eq!(line, 8);
    assert!(matches!(problem, Corruption::BadJson(_)), "{problem:?}");
    assert!(message.contains("bad JSON"), "{message}");
    // The reader refuses it too.
    assert!(matches!(
        read_session(&dir),
        Err(Error::Corrupt { line: 8, .. })
    ));
}

#[test]
fn corruption_in_a_large_segment_names_the_first_bad_line() {
    // Large enough to be verified by several threads: the report must still name
    // the first bad line in file order.
    let (_tmp, dir) = session_dir();
    let (_, lines) = write_traffic(&dir, 3000, 10);
    let path = segment(&dir, 1);
    let clean = std::fs::read(&path).unwrap();
    assert!(clean.len() > 1 << 20);
    let offset_of = |line: usize| -> usize { lines[..line - 1].iter().map(|l| l.len() + 1).sum() };

    // Bad JSON late in the file only.
    let mut bytes = clean.clone();
    bytes[offset_of(2900)] = b'[';
    std::fs::write(&path, &bytes).unwrap();
    let (line, problem, _) = expect_corrupt(&dir, &path);
    assert_eq!(line, 2900);
    assert!(matches!(problem, Corruption::BadJson(_)));

    // A broken chain early and bad JSON late: the early one is reported.
    let seq_at = |line: usize| offset_of(line) + r#"{"kind":""#.len();
    let mut bytes = clean.clone();
    let at = seq_at(100) + lines[99].split('"').nth(3).unwrap().len();
    assert_eq!(&bytes[at..at + 8], br#"","seq":"#);
    bytes[at + 8] = if bytes[at + 8] == b'9' { b'8' } else { b'9' };
    bytes[offset_of(2900)] = b'[';
    std::fs::write(&path, &bytes).unwrap();
    let (line, problem, _) = expect_corrupt(&dir, &path);
    assert_eq!(line, 100);
    assert!(
        matches!(problem, Corruption::WrongSeq { .. }),
        "{problem:?}"
    );
    std::fs::write(&path, &clean).unwrap();
    assert_eq!(SessionWriter::open(&dir).unwrap().1.entries, 3000);
}

#[test]
fn lines_from_returns_what_a_lagging_client_missed() {
    let (_tmp, dir) = session_dir();
    let (_, lines) = write_traffic(&dir, 10, 11);
    let (mut writer, _) = SessionWriter::open(&dir).unwrap();
    assert_eq!(writer.lines_from(0), &lines[..]);
    assert_eq!(writer.lines_from(4), &lines[3..]);
    assert!(writer.lines_from(11).is_empty());
    assert!(writer.lines_from(99).is_empty());
    let start = writer.start_segment(Vec::new()).unwrap();
    let next = writer.append(text_body("x")).unwrap();
    assert_eq!(writer.lines_from(3), &[start.line, next.line.clone()][..]);
    assert_eq!(writer.lines_from(12), &[next.line][..]);
    let debug = format!("{writer:?}");
    assert!(debug.contains("next_seq: 13"), "{debug}");
}

#[test]
fn json_valid_flip_breaks_the_chain_on_the_next_line() {
    let (_tmp, dir) = session_dir();
    let (mut writer, _) = SessionWriter::open(&dir).unwrap();
    for i in 0..10 {
        writer
            .append(text_body(&format!("line {i}: total 12345")))
            .unwrap();
    }
    drop(writer);
    let path = segment(&dir, 1);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[4] = lines[4].replace("12345", "12845");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let (line, problem, message) = expect_corrupt(&dir, &path);
    assert_eq!(line, 6);
    assert!(
        matches!(problem, Corruption::BrokenChain { .. }),
        "{problem:?}"
    );
    assert!(message.contains("broken chain"), "{message}");
}

/// Writes hand-made lines (chained correctly unless the caller breaks it).
fn write_raw(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn raw_line(seq: u64, prev: &str, rest: &str) -> String {
    format!(r#"{{"kind":"run_error","seq":{seq},"prev":"{prev}","ts":0,"message":"{rest}"}}"#)
}

#[test]
fn wrong_seq_and_misplaced_kinds_are_refused() {
    let (_tmp, dir) = session_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = segment(&dir, 1);

    let first = raw_line(1, GENESIS_PREV, "a");
    let skipping = raw_line(3, &line_hash(first.as_bytes()), "b");
    write_raw(&path, &[first.clone(), skipping]);
    let (line, problem, message) = expect_corrupt(&dir, &path);
    assert_eq!(line, 2);
    assert_eq!(
        problem,
        Corruption::WrongSeq {
            expected: 2,
            found: 3
        }
    );
    assert!(message.contains("wrong seq"), "{message}");

    let misplaced = format!(
        r#"{{"kind":"segment_start","seq":2,"prev":"{}","ts":0,"format_version":1,"history":[],"previous_segment":null}}"#,
        line_hash(first.as_bytes())
    );
    write_raw(&path, &[first.clone(), misplaced]);
    let (line, problem, _) = expect_corrupt(&dir, &path);
    assert_eq!((line, problem), (2, Corruption::MisplacedSegmentStart));

    // Unknown kinds and newer formats: the reader shows them, the writer refuses.
    let unknown = format!(
        r#"{{"kind":"spawn_record","seq":2,"prev":"{}","ts":0,"child":"w"}}"#,
        line_hash(first.as_bytes())
    );
    write_raw(&path, &[first, unknown]);
    let (line, problem, message) = expect_corrupt(&dir, &path);
    assert_eq!(line, 2);
    assert_eq!(problem, Corruption::UnknownKind("spawn_record".into()));
    assert!(message.contains("newer version"), "{message}");
    let log = read_session(&dir).unwrap();
    assert_eq!(log.entries().nth(1).unwrap().kind_name(), "spawn_record");

    let newer = r#"{"kind":"segment_start","seq":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000","ts":0,"format_version":99,"history":[],"previous_segment":null}"#;
    write_raw(&path, &[newer.to_owned()]);
    let (line, problem, message) = expect_corrupt(&dir, &path);
    assert_eq!((line, problem), (1, Corruption::NewerFormat(99)));
    assert!(message.contains("newer version"), "{message}");
    assert_eq!(read_session(&dir).unwrap().last_seq(), 1);
}

#[test]
fn reader_never_sees_a_partial_entry_while_the_writer_appends() {
    const N: usize = 1500;
    let (_tmp, dir) = session_dir();
    let (writer, _) = SessionWriter::open(&dir).unwrap();
    let bodies: Vec<EntryBody> = Traffic::new(5).take(N).collect();
    let appender = std::thread::spawn(move || {
        let mut writer = writer;
        let mut lines = Vec::new();
        for body in bodies {
            lines.push(writer.append(body).unwrap().line);
        }
        lines
    });

    let reader = SessionReader::new(&dir);
    let mut seen_lines: Vec<LogLine> = Vec::new();
    loop {
        // Checked before reading, so the last read happens after the last append
        // (and a panicking appender cannot leave this loop spinning).
        let finished = appender.is_finished();
        // Every read is a verified chain prefix starting at seq 1.
        let log = reader.read_last().unwrap();
        let lines: Vec<LogLine> = log.lines().cloned().collect();
        assert!(lines.len() >= seen_lines.len(), "the log shrank");
        assert_eq!(
            &lines[..seen_lines.len()],
            &seen_lines[..],
            "a committed line changed"
        );
        assert_eq!(log.last_seq(), lines.len() as u64);
        seen_lines = lines;
        if finished {
            break;
        }
    }
    let written = appender.join().unwrap();
    assert_eq!(written.len(), N);
    assert_eq!(seen_lines, written);
}

#[test]
fn second_writer_is_refused_while_readers_work() {
    let (_tmp, dir) = session_dir();
    let (mut writer, _) = SessionWriter::open(&dir).unwrap();
    writer.append(text_body("hello")).unwrap();

    let err = SessionWriter::open(&dir).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "session {} is already open by another pod",
            dir.display()
        )),
        "{message}"
    );

    let log = read_session(&dir).unwrap();
    assert_eq!(log.last_seq(), 1);
    assert_eq!(SessionReader::new(&dir).read_last().unwrap().last_seq(), 1);

    // The lock file is never a segment and stays after the writer closes.
    drop(writer);
    assert!(dir.join(session_store::LOCK_FILE_NAME).exists());
    let (writer, report) = SessionWriter::open(&dir).unwrap();
    assert_eq!(report.next_seq, 2);
    drop(writer);
}

#[test]
fn segments_chain_across_files_and_replay_from_the_new_history() {
    let (_tmp, dir) = session_dir();
    let (bodies, _) = write_traffic(&dir, 40, 6);
    let (mut writer, _) = SessionWriter::open(&dir).unwrap();
    let old_history = items_of(&bodies);
    let summary = vec![Item::text(Role::User, "summary: we fixed the parser")];
    let start = writer.start_segment(summary.clone()).unwrap();
    assert_eq!(start.seq, 41);
    assert_eq!(writer.segment_number(), 2);
    assert_eq!(writer.segment_path(), segment(&dir, 2));
    assert_eq!(writer.current_lines(), std::slice::from_ref(&start.line));
    assert_eq!(writer.history(), &summary[..]);
    let more: Vec<EntryBody> = Traffic::new(7).take(25).collect();
    for body in &more {
        writer.append(body.clone()).unwrap();
    }
    writer.sync().unwrap();
    drop(writer);

    let mut expected = summary;
    expected.extend(items_of(&more));

    let (writer, report) = SessionWriter::open(&dir).unwrap();
    assert_eq!(report.segment, segment(&dir, 2));
    assert_eq!((report.entries, report.next_seq), (26, 67));
    assert_eq!(writer.history(), &expected[..]);
    assert_eq!(writer.current_lines()[0], start.line);
    drop(writer);

    // segment_start chains to the last line of segment 1.
    let seg1 = std::fs::read_to_string(segment(&dir, 1)).unwrap();
    let last1 = seg1.lines().last().unwrap();
    let LogEntry::SegmentStart {
        prev,
        previous_segment,
        history,
        format_version,
        ..
    } = serde_json::from_str::<LogEntry>(&start.line).unwrap()
    else {
        panic!("not a segment_start: {}", start.line);
    };
    assert_eq!(prev, line_hash(last1.as_bytes()));
    assert_eq!(previous_segment.as_deref(), Some("000001.jsonl"));
    assert_eq!(format_version, session_store::FORMAT_VERSION);
    assert_eq!(history.len(), 1);

    let all = read_session(&dir).unwrap();
    assert_eq!(all.segments.len(), 2);
    assert_eq!(all.last_seq(), 66);
    assert_eq!(all.history(), expected);
    assert_eq!(replay(all.segments[0].entries.clone()), old_history);
    let last = SessionReader::new(&dir).read_last().unwrap();
    assert_eq!(last.segments.len(), 1);
    assert_eq!(last.segments[0].number, 2);
    assert_eq!(last.into_history(), expected);

    // Altering segment 1's last line (keeping it valid JSON) breaks the link.
    let mut seg1_lines: Vec<String> = seg1.lines().map(str::to_owned).collect();
    let last = seg1_lines.last_mut().unwrap();
    *last = last.replacen("\"ts\":", "\"ts\": ", 1);
    write_raw(&segment(&dir, 1), &seg1_lines);
    let (line, problem, _) = expect_corrupt(&dir, &segment(&dir, 2));
    assert_eq!(line, 1);
    assert!(matches!(problem, Corruption::BrokenChain { .. }));
    assert!(matches!(
        read_session(&dir),
        Err(Error::Corrupt { line: 1, .. })
    ));
}

#[test]
fn interrupted_segment_creation_leaves_nothing_behind() {
    let (_tmp, dir) = session_dir();
    write_traffic(&dir, 10, 8);
    // A crash inside start_segment can leave the temp file (before the rename).
    std::fs::write(dir.join("000002.jsonl.tmp"), b"{\"kind\":\"segm").unwrap();
    let (mut writer, report) = SessionWriter::open(&dir).unwrap();
    assert_eq!(report.removed, vec![dir.join("000002.jsonl.tmp")]);
    assert_eq!(report.segment, segment(&dir, 1));
    writer.start_segment(Vec::new()).unwrap();
    drop(writer);

    // An empty later segment (as a crash on a filesystem that lost the data could
    // leave) holds nothing committed: it is removed and segment 2 continues.
    std::fs::write(segment(&dir, 3), b"").unwrap();
    assert_eq!(
        SessionReader::new(&dir).read_last().unwrap().segments[0].number,
        2
    );
    let (writer, report) = SessionWriter::open(&dir).unwrap();
    assert_eq!(report.removed, vec![segment(&dir, 3)]);
    assert_eq!(writer.segment_number(), 2);
    assert_eq!(report.next_seq, 12);
    drop(writer);

    // A later segment must begin with segment_start.
    let last = read_session(&dir).unwrap().lines().last().unwrap().clone();
    let stray = raw_line(12, &line_hash(last.as_bytes()), "x");
    write_raw(&segment(&dir, 3), &[stray]);
    let (line, problem, _) = expect_corrupt(&dir, &segment(&dir, 3));
    assert_eq!(line, 1);
    assert!(
        matches!(problem, Corruption::BadSegmentStart(_)),
        "{problem:?}"
    );
}

#[test]
fn missing_middle_segment_is_reported() {
    let (_tmp, dir) = session_dir();
    write_traffic(&dir, 3, 9);
    let (mut writer, _) = SessionWriter::open(&dir).unwrap();
    writer.start_segment(Vec::new()).unwrap();
    writer.start_segment(Vec::new()).unwrap();
    drop(writer);
    std::fs::remove_file(segment(&dir, 2)).unwrap();
    let err = SessionWriter::open(&dir).unwrap_err();
    assert!(matches!(&err, Error::MissingSegment { name, .. } if name == "000002.jsonl"));
    assert!(err.to_string().contains("000002.jsonl is missing"), "{err}");
}

#[test]
fn hundred_thousand_entries_open_verify_and_replay() {
    const N: usize = 100_000;
    let (_tmp, dir) = session_dir();
    let (mut writer, _) = SessionWriter::open(&dir).unwrap();
    let mut expected_items = 0;
    for i in 0..N {
        let body = match i % 4 {
            0 => EntryBody::UserInput {
                segments: vec![protocol::Segment::text(format!("question {i}"))],
                item: Item::text(Role::User, format!("question {i}")).into(),
            },
            1 => EntryBody::AssistantItem {
                item: Item::tool_call(format!("c{i}"), "Read", r#"{"path":"src/lib.rs"}"#).into(),
            },
            2 => EntryBody::ToolResult {
                item: Item::tool_result(
                    format!("c{}", i - 1),
                    "ok",
                    Some("fn main() {}\n".into()),
                    false,
                )
                .into(),
            },
            _ => EntryBody::Usage {
                llm_call: i as u64,
                usage: llm_types::Usage::default(),
            },
        };
        if i % 4 != 3 {
            expected_items += 1;
        }
        writer.append(body).unwrap();
    }
    drop(writer);

    let (writer, report) = SessionWriter::open(&dir).unwrap();
    assert_eq!(report.next_seq, N as u64 + 1);
    assert_eq!(writer.current_lines().len(), N);
    assert_eq!(writer.history().len(), expected_items);
    drop(writer);
    assert_eq!(
        read_session(&dir).unwrap().into_history().len(),
        expected_items
    );
}
