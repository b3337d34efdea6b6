//! A writer killed with SIGKILL in the middle of its appends, as a crash
//! would kill it: a helper process (this test binary, re-run as the ignored
//! test `killed::child_role`) appends entries of up to 4 MiB — big enough
//! that a kill can land inside one `write(2)` — and prints each seq once its
//! append returned; the test kills it at a seeded moment, then reopens the
//! session. It opens (a torn tail, if any, is cut), the chain verifies, and
//! every acknowledged entry is there, byte for byte what was appended.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use llm_types::{Item, Role};
use session_store::{EntryBody, LogEntry, SessionWriter, read_session};

use crate::common::Rng;

/// The session directory the helper writes (set on the helper only).
const ROLE_VAR: &str = "SESSION_STORE_KILLED_WRITER_DIR";

/// The text of entry `i`: recognisable, and long for every third one.
fn text_of(i: u64) -> String {
    let len = if i % 3 == 2 { 4 << 20 } else { 200 };
    format!("entry {i} {}", "z".repeat(len))
}

#[test]
#[ignore = "the helper process of a_writer_killed_mid_append_keeps_every_acknowledged_entry"]
fn child_role() {
    let Ok(dir) = std::env::var(ROLE_VAR) else {
        return;
    };
    let (mut writer, _) = SessionWriter::open(&dir).unwrap();
    let mut out = std::io::stdout();
    for i in 0.. {
        let committed = writer
            .append(EntryBody::AssistantItem {
                item: Item::text(Role::Assistant, text_of(i)).into(),
            })
            .unwrap();
        writeln!(out, "acked {i} {}", committed.seq).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn a_writer_killed_mid_append_keeps_every_acknowledged_entry() {
    for seed in 1..=4u64 {
        let mut rng = Rng::new(seed);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "killed::child_role", "--ignored", "--nocapture"])
            .env(ROLE_VAR, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Kill after a seeded number of acknowledgements plus a seeded delay,
        // so the kill falls anywhere in the next appends.
        let wanted = rng.range(3, 12);
        let mut acked: Vec<(u64, u64)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.len() < wanted {
            assert!(Instant::now() < deadline, "the helper stalled");
            let line = lines.next().expect("the helper exited").unwrap();
            if let Some(rest) = line.strip_prefix("acked ") {
                let (i, seq) = rest.split_once(' ').unwrap();
                acked.push((i.parse().unwrap(), seq.parse().unwrap()));
            }
        }
        std::thread::sleep(Duration::from_micros(rng.range(0, 20_000) as u64));
        child.kill().unwrap();
        child.wait().unwrap();
        // Acknowledgements already printed before the kill count too.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("acked ") {
                let (i, seq) = rest.split_once(' ').unwrap();
                acked.push((i.parse().unwrap(), seq.parse().unwrap()));
            }
        }

        let (writer, report) = SessionWriter::open(&dir)
            .unwrap_or_else(|e| panic!("seed {seed}: the killed session does not open: {e}"));
        drop(writer);
        let log = read_session(&dir).unwrap();
        let texts: std::collections::HashMap<u64, String> = log
            .entries()
            .filter_map(|e| match e {
                LogEntry::AssistantItem { seq, item, .. } => Some((*seq, item.0.message_text())),
                _ => None,
            })
            .collect();
        for (i, seq) in &acked {
            assert_eq!(
                texts.get(seq).map(String::as_str),
                Some(text_of(*i).as_str()),
                "seed {seed}: acknowledged entry {i} (seq {seq}) is missing or changed; report {report:?}"
            );
        }
    }
}
