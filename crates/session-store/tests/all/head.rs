//! The chain head recorded at each sync: edits or removals of synced lines, which the
//! chain alone cannot see at the end of the log, are refused as tampering; what a
//! crash leaves is not.

// Test code: a panic is the failure report (clippy.toml allows this only inside
// `#[test]` functions, not in this file's helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use protocol::TurnResult;
use session_store::{
    EntryBody, Error, HEAD_FILE_NAME, SessionWriter, Tampering, line_hash, read_session,
};

use crate::session_log::{segment, session_dir, text_body, write_traffic};

fn head_path(dir: &Path) -> PathBuf {
    dir.join(HEAD_FILE_NAME)
}

/// The head file a sync records after the line `line` with seq `seq`.
fn head_of(seq: u64, line: &str) -> String {
    format!(
        "{{\"seq\":{seq},\"hash\":\"{}\"}}\n",
        line_hash(line.as_bytes())
    )
}

/// Replaces the last line of `path` with `edit(last line)`.
fn edit_last_line(path: &Path, edit: impl FnOnce(&str) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    let body = text.strip_suffix('\n').unwrap();
    let (before, last) = body.rsplit_once('\n').unwrap_or(("", body));
    let edited = edit(last);
    assert_ne!(edited, last, "the edit changed nothing");
    let before = if before.is_empty() {
        String::new()
    } else {
        format!("{before}\n")
    };
    std::fs::write(path, format!("{before}{edited}\n")).unwrap();
}

/// Opens `dir` expecting tampering; checks that nothing in the directory changed.
fn expect_tampered(dir: &Path) -> (Tampering, String) {
    let snapshot = || {
        let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        files.sort();
        files
    };
    let before = snapshot();
    let err = SessionWriter::open(dir).unwrap_err();
    assert_eq!(snapshot(), before, "a refused open changed the session");
    let message = err.to_string();
    match err {
        Error::Tampered { dir: d, problem } => {
            assert_eq!(d, dir);
            let head = head_path(dir).display().to_string();
            assert!(
                message.contains(&format!("recorded at its last sync ({head})")),
                "{message}"
            );
            assert!(message.contains("Nothing was changed"), "{message}");
            assert!(
                message.contains("restore the session from a backup"),
                "{message}"
            );
            (problem, message)
        }
        other => panic!("expected tampering, got {other}"),
    }
}

#[test]
fn sync_records_the_head_and_open_accepts_it() {
    let (_tmp, dir) = session_dir();
    let (_, lines) = write_traffic(&dir, 10, 21);
    assert_eq!(
        std::fs::read_to_string(head_path(&dir)).unwrap(),
        head_of(10, &lines[9])
    );
    let (mut writer, report) = SessionWriter::open(&dir).unwrap();
    assert_eq!(report.next_seq, 11);
    let last = writer.append(text_body("eleven")).unwrap();
    writer.sync().unwrap();
    assert_eq!(
        std::fs::read_to_string(head_path(&dir)).unwrap(),
        head_of(11, &last.line)
    );
    drop(writer);

    // Sessions written before heads existed (or never synced) have none: accepted,
    // and the next sync records one.
    std::fs::remove_file(head_path(&dir)).unwrap();
    let (mut writer, report) = SessionWriter::open(&dir).unwrap();
    assert_eq!(report.next_seq, 12);
    writer.sync().unwrap();
    assert_eq!(
        std::fs::read_to_string(head_path(&dir)).unwrap(),
        head_of(11, &last.line)
    );
}

#[test]
fn editing_the_ts_of_the_last_synced_line_is_refused() {
    let (_tmp, dir) = session_dir();
    let (_, lines) = write_traffic(&dir, 10, 22);
    let path = segment(&dir, 1);
    edit_last_line(&path, |line| {
        let at = line.find("\"ts\":").unwrap() + 5;
        let end = at + line[at..].find(|c: char| !c.is_ascii_digit()).unwrap();
        let ts: u64 = line[at..end].parse().unwrap();
        format!("{}{}{}", &line[..at], ts - 3_600_000, &line[end..])
    });
    // The chain cannot see it: nothing chains to the last line.
    assert_eq!(read_session(&dir).unwrap().last_seq(), 10);

    let (problem, message) = expect_tampered(&dir);
    let edited = std::fs::read_to_string(&path).unwrap();
    let Tampering::Edited {
        seq,
        file,
        line,
        recorded,
        found,
    } = problem
    else {
        panic!("expected an edit, got {problem:?}");
    };
    assert_eq!((seq, line, file), (10, Some(10), path.clone()));
    assert_eq!(recorded, line_hash(lines[9].as_bytes()));
    assert_eq!(found, line_hash(edited.lines().last().unwrap().as_bytes()));
    assert!(
        message.contains(&format!("line 10 of {} (seq 10) hashes to", path.display())),
        "{message}"
    );
    assert!(message.contains("it was edited"), "{message}");
}

#[test]
fn turning_a_finished_turn_end_into_cancelled_is_refused() {
    let (_tmp, dir) = session_dir();
    let (mut writer, _) = SessionWriter::open(&dir).unwrap();
    writer.append(text_body("the answer")).unwrap();
    writer
        .append(EntryBody::TurnEnd {
            turn: 1,
            result: TurnResult::Finished,
        })
        .unwrap();
    writer.sync().unwrap();
    drop(writer);

    edit_last_line(&segment(&dir, 1), |line| {
        line.replace("\"result\":\"finished\"", "\"result\":\"cancelled\"")
    });
    let (problem, _) = expect_tampered(&dir);
    assert!(
        matches!(
            problem,
            Tampering::Edited {
                seq: 2,
                line: Some(2),
                ..
            }
        ),
        "{problem:?}"
    );
}

#[test]
fn removing_the_last_synced_line_is_refused() {
    let (_tmp, dir) = session_dir();
    let (_, lines) = write_traffic(&dir, 10, 23);
    let path = segment(&dir, 1);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - lines[9].len() as u64 - 1).unwrap();
    drop(file);

    let (problem, message) = expect_tampered(&dir);
    assert_eq!(problem, Tampering::Removed { seq: 10, last: 9 });
    assert!(
        message.contains("the entry with seq 10 was synced, but the log now ends at seq 9"),
        "{message}"
    );

    // Removing every line, down to a torn first line that open would cut, too.
    std::fs::write(&path, &lines[0].as_bytes()[..30]).unwrap();
    let (problem, _) = expect_tampered(&dir);
    assert_eq!(problem, Tampering::Removed { seq: 10, last: 0 });
}

#[test]
fn unsynced_lines_after_the_head_are_a_crash_tail_and_accepted() {
    let (_tmp, dir) = session_dir();
    let (_, lines) = write_traffic(&dir, 10, 24);
    let (mut writer, _) = SessionWriter::open(&dir).unwrap();
    for i in 0..5 {
        writer.append(text_body(&format!("unsynced {i}"))).unwrap();
    }
    // The process dies: no sync, so the head still names seq 10.
    drop(writer);
    assert_eq!(
        std::fs::read_to_string(head_path(&dir)).unwrap(),
        head_of(10, &lines[9])
    );
    // ... in the middle of a write.
    let path = segment(&dir, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(br#"{"kind":"assistant_item","seq":16,"#);
    std::fs::write(&path, bytes).unwrap();

    let (mut writer, report) = SessionWriter::open(&dir).unwrap();
    assert_eq!(report.next_seq, 16);
    assert_eq!(report.cuts.len(), 1);
    let last = writer.append(text_body("after the crash")).unwrap();
    writer.sync().unwrap();
    drop(writer);
    assert_eq!(
        std::fs::read_to_string(head_path(&dir)).unwrap(),
        head_of(16, &last.line)
    );
    assert_eq!(SessionWriter::open(&dir).unwrap().1.next_seq, 17);
}

#[test]
fn a_head_just_before_the_current_segment_is_accepted_only_if_it_matches() {
    let (_tmp, dir) = session_dir();
    let (_, lines) = write_traffic(&dir, 10, 25);
    let (mut writer, _) = SessionWriter::open(&dir).unwrap();
    let start = writer.start_segment(Vec::new()).unwrap();
    writer.append(text_body("in segment 2")).unwrap();
    // A crash between start_segment's rename and the next sync: the head still names
    // the last line of segment 1, which segment 2's segment_start chains to.
    drop(writer);
    assert_eq!(
        std::fs::read_to_string(head_path(&dir)).unwrap(),
        head_of(10, &lines[9])
    );
    let (mut writer, report) = SessionWriter::open(&dir).unwrap();
    assert_eq!((report.segment, report.next_seq), (segment(&dir, 2), 13));
    writer.sync().unwrap();
    drop(writer);

    // Naming that line with another hash (the head, or segment 1's last line and the
    // segment_start's prev, were edited) is tampering.
    std::fs::write(head_path(&dir), head_of(10, "another line")).unwrap();
    let (problem, message) = expect_tampered(&dir);
    assert!(
        matches!(
            &problem,
            Tampering::Edited { seq: 10, line: None, file, .. } if *file == segment(&dir, 2)
        ),
        "{problem:?}"
    );
    assert!(
        message.contains("the last entry before") && message.contains("segment_start chains to"),
        "{message}"
    );

    // A head older than that: the current segment cannot follow the synced log.
    std::fs::write(head_path(&dir), head_of(9, &lines[8])).unwrap();
    let (problem, _) = expect_tampered(&dir);
    assert_eq!(
        problem,
        Tampering::BeforeSegment {
            seq: 9,
            file: segment(&dir, 2),
            first: 11
        }
    );

    // The first line of the segment itself is checked like any other.
    std::fs::write(head_path(&dir), head_of(11, &start.line)).unwrap();
    assert_eq!(SessionWriter::open(&dir).unwrap().1.next_seq, 13);
}

#[test]
fn a_head_that_is_not_a_head_is_refused() {
    let (_tmp, dir) = session_dir();
    write_traffic(&dir, 5, 26);
    let good = std::fs::read(head_path(&dir)).unwrap();
    for garbage in [
        &b""[..],
        b"\0\0\0\0",
        b"{\"seq\":5,\"hash\":\"not hex\"}\n",
        b"{\"seq\":\"five\"}",
    ] {
        std::fs::write(head_path(&dir), garbage).unwrap();
        let (problem, message) = expect_tampered(&dir);
        assert!(matches!(problem, Tampering::Unreadable(_)), "{problem:?}");
        assert!(
            message.contains("the head file is not a valid head"),
            "{message}"
        );
    }

    // Every segment removed, the head kept: the synced lines are gone.
    std::fs::write(head_path(&dir), good).unwrap();
    std::fs::remove_file(segment(&dir, 1)).unwrap();
    let (problem, _) = expect_tampered(&dir);
    assert_eq!(problem, Tampering::Removed { seq: 5, last: 0 });
}
