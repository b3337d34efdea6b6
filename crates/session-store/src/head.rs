//! The chain head recorded at each sync: `<dir>/head`, one JSON line
//! `{"seq":N,"hash":"<64 hex digits>"}` naming the last line that was durable then.
//!
//! Why: the hash chain protects every line but the last, because nothing chains to
//! it yet, so its `ts` or a `turn_end` result could be edited undetected. Once the
//! line is synced its hash is recorded here, and [`SessionWriter::open`] checks that
//! the line still has it.
//!
//! A crash cannot make the check fail: the head is replaced (temp file, fdatasync,
//! rename) only after the segment's fdatasync, so whichever head a crash leaves (the
//! new one, or the old one if the rename did not reach the disk) names a line that is
//! on disk with that hash; lines after it are a normal unsynced tail. `start_segment`
//! syncs (recording the old segment's last line) and then fsyncs the directory, which
//! also makes that head durable, so the head is never older than the line the
//! current segment's `segment_start` chains to.
//!
//! It is a tripwire against edits of a log at rest, not authentication: whoever can
//! rewrite the log can rewrite the head as well.
//!
//! [`SessionWriter::open`]: crate::SessionWriter::open

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Deserialize;

use crate::chain::{self, ChainPoint, GENESIS_PREV, HexHash};
use crate::error::{Error, Result, Tampering};
use crate::files::{FILE_MODE, HEAD_FILE_NAME};
use crate::line::LogLine;

/// A head file longer than this is not one (a real one is about 90 bytes).
const MAX_HEAD_BYTES: u64 = 4096;

/// Name of the temp file a new head is written to before it is renamed over `head`.
const HEAD_TEMP_NAME: &str = "head.tmp";

/// A recorded chain head: the line with `seq` hashed to `hash` when it was synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// Sequence number of the last synced line (0: the session had no entry yet).
    pub(crate) seq: u64,
    /// Lowercase hex SHA-256 of that line (64 zeros for seq 0).
    pub(crate) hash: HexHash,
}

/// The head file as stored; unknown fields are ignored so a later version may add some.
#[derive(Deserialize)]
struct HeadFile {
    seq: u64,
    hash: String,
}

impl Head {
    /// The head naming the line just before `chain` (what a sync makes durable).
    pub(crate) fn of(chain: &ChainPoint) -> Self {
        Head {
            seq: chain.next_seq.saturating_sub(1),
            hash: *chain.prev_bytes(),
        }
    }

    /// Decodes a head file's content, or says why it is not one.
    fn parse(bytes: &[u8]) -> std::result::Result<Head, String> {
        let file: HeadFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let hash: HexHash = file
            .hash
            .as_bytes()
            .try_into()
            .ok()
            .filter(|h: &HexHash| h.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .ok_or_else(|| {
                format!(
                    "hash {:?} is not 64 lowercase hex digits",
                    file.hash.chars().take(80).collect::<String>()
                )
            })?;
        if file.seq == 0 && hash != *GENESIS_PREV.as_bytes() {
            return Err("seq 0 names no entry, so its hash must be 64 zeros".to_owned());
        }
        Ok(Head {
            seq: file.seq,
            hash,
        })
    }

    /// The file's content: one JSON line.
    fn encode(&self) -> String {
        format!(
            "{{\"seq\":{},\"hash\":\"{}\"}}\n",
            self.seq,
            String::from_utf8_lossy(&self.hash)
        )
    }
}

/// Reads the head of the session in `dir`: `None` when there is none (a session
/// written before heads existed, or not synced yet). A file that is not a head is
/// reported as tampering: the writer only ever renames complete, synced heads into
/// place.
pub(crate) fn read_head(dir: &Path) -> Result<Option<Head>> {
    let path = dir.join(HEAD_FILE_NAME);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open the chain head", &path, e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_HEAD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read the chain head", &path, e))?;
    let parsed = if bytes.len() as u64 > MAX_HEAD_BYTES {
        Err(format!("it is longer than {MAX_HEAD_BYTES} bytes"))
    } else {
        Head::parse(&bytes)
    };
    parsed.map(Some).map_err(|why| Error::Tampered {
        dir: dir.to_owned(),
        problem: Tampering::Unreadable(why),
    })
}

/// Records `head` as the session's head: a 0600 temp file, written, fdatasynced, then
/// renamed over `head`, so a crash leaves the old head or the new one, never a mix.
pub(crate) fn write_head(dir: &Path, head: &Head) -> Result<()> {
    let temp = dir.join(HEAD_TEMP_NAME);
    let path = dir.join(HEAD_FILE_NAME);
    let written = (|| {
        // A leftover temp file (a crash mid-write) is replaced rather than reused, so
        // the new file gets FILE_MODE whatever the old one had.
        match std::fs::remove_file(&temp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&temp)?;
        file.write_all(head.encode().as_bytes())?;
        file.sync_data()?;
        std::fs::rename(&temp, &path)
    })();
    written.map_err(|e| {
        // Best effort: the next write removes a leftover temp file too.
        let _ = std::fs::remove_file(&temp);
        Error::io("record the chain head in", &path, e)
    })
}

/// Checks `head` against the current segment (`file`, whose lines start after
/// `start` and are `lines`): the line it names must still hash as recorded. It may
/// name any line of the segment, or the line just before it (the one the segment's
/// `segment_start` chains to, when no sync has happened since `start_segment`);
/// later lines are an unsynced tail, which a crash legitimately leaves.
pub(crate) fn verify_head(
    dir: &Path,
    head: &Head,
    file: &Path,
    start: &ChainPoint,
    lines: &[LogLine],
) -> Result<()> {
    let first = start.next_seq;
    let last = first.saturating_sub(1).saturating_add(lines.len() as u64);
    let tampered = |problem| Error::Tampered {
        dir: dir.to_owned(),
        problem,
    };
    if head.seq > last {
        return Err(tampered(Tampering::Removed {
            seq: head.seq,
            last,
        }));
    }
    let (found, line) = if head.seq.saturating_add(1) == first {
        (*start.prev_bytes(), None)
    } else {
        let index = head
            .seq
            .checked_sub(first)
            .and_then(|i| usize::try_from(i).ok());
        match index.and_then(|i| Some((i, lines.get(i)?))) {
            Some((i, line)) => (chain::hex_hash(line.as_bytes()), Some(i as u64 + 1)),
            None => {
                return Err(tampered(Tampering::BeforeSegment {
                    seq: head.seq,
                    file: file.to_owned(),
                    first,
                }));
            }
        }
    };
    if found != head.hash {
        return Err(tampered(Tampering::Edited {
            seq: head.seq,
            file: file.to_owned(),
            line,
            recorded: String::from_utf8_lossy(&head.hash).into_owned(),
            found: String::from_utf8_lossy(&found).into_owned(),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_parses_one_json_line() {
        let head = Head {
            seq: 42,
            hash: chain::hex_hash(b"a line"),
        };
        let text = head.encode();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.starts_with("{\"seq\":42,\"hash\":\""), "{text}");
        assert_eq!(Head::parse(text.as_bytes()), Ok(head));
        let genesis = Head::of(&ChainPoint::genesis());
        assert_eq!(genesis.seq, 0);
        assert_eq!(Head::parse(genesis.encode().as_bytes()), Ok(genesis));
    }

    #[test]
    fn refuses_what_is_not_a_head() {
        let zeros = "0".repeat(64);
        for (bad, why) in [
            ("", "EOF"),
            ("garbage", "expected value"),
            (r#"{"seq":3}"#, "missing field `hash`"),
            (r#"{"seq":3,"hash":"abc"}"#, "not 64 lowercase hex digits"),
            (
                &format!(r#"{{"seq":3,"hash":"{}"}}"#, "A".repeat(64)),
                "lowercase",
            ),
            (
                &format!(r#"{{"seq":-1,"hash":"{zeros}"}}"#),
                "invalid value",
            ),
            (
                &format!(r#"{{"seq":0,"hash":"{}"}}"#, "1".repeat(64)),
                "64 zeros",
            ),
        ] {
            let err = Head::parse(bad.as_bytes()).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
