//! The hash chain and the verification of a segment's lines, shared by the writer
//! and the reader.
//!
//! Invariants checked for every complete line, in file order: it is UTF-8 JSON of a
//! [`LogEntry`]; its `seq` is the previous entry's plus one (the first entry of a
//! session has 1); its `prev` is the lowercase hex SHA-256 of the raw bytes of the
//! previous line without its `\n` (64 zeros for the first entry; the first line of
//! segment N > 1 chains to the last line of segment N-1); a `segment_start` appears
//! only as a segment's first line, and segments after the first begin with one that
//! names the previous segment's file.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::entry::LogEntry;
use crate::error::{Corruption, Error, Result};
use crate::files::segment_file_name;
use crate::line::LogLine;

/// `prev` of a session's very first entry.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Segments smaller than this are verified on the calling thread only.
const PARALLEL_MIN_BYTES: usize = 256 * 1024;

/// At most this many threads verify one segment.
const MAX_THREADS: usize = 4;

/// A hash as the 64 lowercase hex digits stored in `prev`.
pub(crate) type HexHash = [u8; 64];

/// Lowercase hex SHA-256 of one line (without its `\n`), as stored in `prev`.
pub fn line_hash(line: &[u8]) -> String {
    String::from_utf8_lossy(&hex_hash(line)).into_owned()
}

/// Lowercase hex SHA-256 of one line (without its `\n`), as ASCII bytes.
pub(crate) fn hex_hash(line: &[u8]) -> HexHash {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest: [u8; 32] = Sha256::digest(line).into();
    let mut out = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

/// Where the chain stands: what the next entry must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainPoint {
    /// `seq` of the next entry.
    pub next_seq: u64,
    /// `prev` of the next entry (hex hash of the last line), as ASCII.
    prev: HexHash,
}

impl ChainPoint {
    /// The start of a session.
    pub(crate) fn genesis() -> Self {
        ChainPoint {
            next_seq: 1,
            prev: [b'0'; 64],
        }
    }

    /// The point after `line`, which holds `entry`.
    pub(crate) fn after(line: &str, entry: &LogEntry) -> Self {
        ChainPoint {
            next_seq: entry.seq().saturating_add(1),
            prev: hex_hash(line.as_bytes()),
        }
    }

    /// `prev` of the next entry.
    pub(crate) fn prev(&self) -> String {
        String::from_utf8_lossy(&self.prev).into_owned()
    }

    /// `prev` of the next entry, as ASCII bytes: the hash of the line with seq
    /// `next_seq - 1`.
    pub(crate) fn prev_bytes(&self) -> &HexHash {
        &self.prev
    }
}

/// How to check one segment.
pub(crate) struct SegmentCheck<'a> {
    /// The file, for error messages.
    pub file: &'a Path,
    /// Its number (1 for `000001.jsonl`).
    pub number: u32,
    /// Whether entries of unknown kinds ([`LogEntry::Unknown`]) and segments of a
    /// newer format version are acceptable. Readers: yes, they show what they can.
    /// The writer: no, because continuing a log it does not fully understand could
    /// lose history.
    pub(crate) accept_newer: bool,
}

/// Length of the complete part of a segment: up to and including the last `\n`.
/// Everything after it is an incomplete (torn) tail, including a run of NULs.
pub(crate) fn complete_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// Checks a segment that has no complete line (`complete_len(bytes) == 0`). A crash
/// can leave it empty, or holding the start of its first line: a prefix of JSON that
/// begins with `{`, with no NUL and no newline. Any other bytes (a block of NULs,
/// text that is not a log line) cannot come from a torn write; treating them as one
/// would cut a damaged log to nothing, so they are refused as corruption of line 1.
pub(crate) fn check_incomplete_segment(bytes: &[u8], file: &Path) -> Result<()> {
    let torn_first_line = bytes.first() == Some(&b'{') && !bytes.contains(&0);
    if bytes.is_empty() || torn_first_line {
        return Ok(());
    }
    Err(Error::Corrupt {
        file: file.to_owned(),
        line: 1,
        problem: Corruption::NoCompleteLine {
            bytes: bytes.len() as u64,
            nuls: bytes.iter().filter(|&&b| b == 0).count() as u64,
        },
    })
}

/// Turns `complete` (the complete part of a segment, see [`complete_len`]) into text,
/// or names the first line that is not valid UTF-8.
pub(crate) fn into_text(complete: Vec<u8>, file: &Path) -> Result<String> {
    String::from_utf8(complete).map_err(|e| {
        let bytes = e.as_bytes();
        let before = &bytes[..e.utf8_error().valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        Error::Corrupt {
            file: file.to_owned(),
            line,
            problem: Corruption::NotUtf8,
        }
    })
}

/// The lines of one chunk of a segment, hashed and decoded (the parallel part).
struct Parsed {
    /// Per line: its byte range in the segment text, its hash, its entry.
    lines: Vec<(usize, usize, HexHash, LogEntry)>,
    /// The first line that failed to decode: its index in this chunk, the error.
    error: Option<(usize, String)>,
}

/// Hashes and decodes the lines of `text[range]` (whole lines).
fn parse_chunk(text: &str, range: std::ops::Range<usize>) -> Parsed {
    let mut parsed = Parsed {
        lines: Vec::new(),
        error: None,
    };
    let mut at = range.start;
    for line in text[range].split_terminator('\n') {
        let start = at;
        at += line.len() + 1;
        match serde_json::from_str::<LogEntry>(line) {
            Ok(entry) => {
                let hash = hex_hash(line.as_bytes());
                parsed.lines.push((start, start + line.len(), hash, entry));
            }
            Err(e) => {
                parsed.error = Some((parsed.lines.len(), e.to_string()));
                break;
            }
        }
    }
    parsed
}

/// Splits `text` into up to `n` ranges of whole lines of similar size.
fn chunks(text: &str, n: usize) -> Vec<std::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let mut ranges = Vec::with_capacity(n);
    let mut start = 0;
    for i in 1..n {
        let target = (bytes.len() * i / n).max(start);
        let end = match bytes[target..].iter().position(|&b| b == b'\n') {
            Some(p) => target + p + 1,
            None => bytes.len(),
        };
        if end > start {
            ranges.push(start..end);
        }
        start = end;
    }
    if start < bytes.len() {
        ranges.push(start..bytes.len());
    }
    ranges
}

/// Verifies every line of `text` (complete lines, each ending in `\n`), starting from
/// `chain`, and hands each line and its entry to `visit` in order. Returns the chain
/// point after the last line.
///
/// Hashing and decoding, nearly all of the work, run on several threads for large
/// segments; the chain checks and `visit` then run in order on the calling thread,
/// so errors are reported for the first bad line exactly as a sequential pass would.
pub(crate) fn verify_lines(
    text: Arc<String>,
    check: &SegmentCheck<'_>,
    mut chain: ChainPoint,
    mut visit: impl FnMut(LogLine, LogEntry),
) -> Result<ChainPoint> {
    let threads = if text.len() < PARALLEL_MIN_BYTES {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
    };
    let ranges = chunks(&text, threads);
    let parsed: Vec<Parsed> = if ranges.len() <= 1 {
        ranges.into_iter().map(|r| parse_chunk(&text, r)).collect()
    } else {
        std::thread::scope(|scope| {
            let text = text.as_str();
            let mut ranges = ranges.into_iter();
            let first = ranges.next();
            // If a thread cannot be started, its chunk is parsed here instead.
            let others: Vec<_> = ranges
                .map(|range| {
                    let spawned = std::thread::Builder::new()
                        .name("session-verify".into())
                        .spawn_scoped(scope, {
                            let range = range.clone();
                            move || parse_chunk(text, range)
                        });
                    spawned.map_err(|_| range)
                })
                .collect();
            let mut parsed: Vec<Parsed> = first.into_iter().map(|r| parse_chunk(text, r)).collect();
            for other in others {
                parsed.push(match other {
                    Ok(handle) => match handle.join() {
                        Ok(chunk) => chunk,
                        // A panic while decoding is a bug, not a property of the file.
                        Err(panic) => std::panic::resume_unwind(panic),
                    },
                    Err(range) => parse_chunk(text, range),
                });
            }
            parsed
        })
    };

    let mut index = 0usize;
    for chunk in parsed {
        for (start, end, hash, entry) in chunk.lines {
            check_entry(check, index, &entry, &chain)?;
            chain = ChainPoint {
                next_seq: entry.seq().saturating_add(1),
                prev: hash,
            };
            visit(LogLine::new(text.clone(), start, end), entry);
            index += 1;
        }
        if let Some((_, message)) = chunk.error {
            return Err(Error::Corrupt {
                file: check.file.to_owned(),
                line: index as u64 + 1,
                problem: Corruption::BadJson(message),
            });
        }
    }
    Ok(chain)
}

/// Checks one decoded entry, the `index`-th line of its segment, against the chain.
fn check_entry(
    check: &SegmentCheck<'_>,
    index: usize,
    entry: &LogEntry,
    chain: &ChainPoint,
) -> Result<()> {
    let corrupt = |problem| Error::Corrupt {
        file: check.file.to_owned(),
        line: index as u64 + 1,
        problem,
    };
    if entry.seq() != chain.next_seq {
        return Err(corrupt(Corruption::WrongSeq {
            expected: chain.next_seq,
            found: entry.seq(),
        }));
    }
    if entry.prev().as_bytes() != chain.prev {
        return Err(corrupt(Corruption::BrokenChain {
            expected: chain.prev(),
            found: entry.prev().to_owned(),
        }));
    }
    match entry {
        LogEntry::SegmentStart {
            format_version,
            previous_segment,
            ..
        } => {
            if index != 0 {
                return Err(corrupt(Corruption::MisplacedSegmentStart));
            }
            if *format_version > crate::FORMAT_VERSION && !check.accept_newer {
                return Err(corrupt(Corruption::NewerFormat(*format_version)));
            }
            let expected = (check.number > 1).then(|| segment_file_name(check.number - 1));
            if *previous_segment != expected {
                return Err(corrupt(Corruption::BadSegmentStart(format!(
                    "previous_segment is {previous_segment:?}, expected {expected:?}"
                ))));
            }
        }
        LogEntry::Unknown { kind, .. } if !check.accept_newer => {
            return Err(corrupt(Corruption::UnknownKind(kind.clone())));
        }
        _ if index == 0 && check.number > 1 => {
            return Err(corrupt(Corruption::BadSegmentStart(format!(
                "a later segment must begin with segment_start, found {}",
                entry.kind_name()
            ))));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_hash_is_lowercase_hex_sha256() {
        assert_eq!(
            line_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(GENESIS_PREV.len(), 64);
    }

    #[test]
    fn complete_len_stops_after_last_newline() {
        assert_eq!(complete_len(b""), 0);
        assert_eq!(complete_len(b"abc"), 0);
        assert_eq!(complete_len(b"a\nb"), 2);
        assert_eq!(complete_len(b"a\nb\n"), 4);
        assert_eq!(complete_len(b"a\n\0\0\0"), 2);
    }

    #[test]
    fn only_empty_or_a_torn_first_line_may_lack_a_complete_line() {
        let file = Path::new("000001.jsonl");
        for ok in [
            &b""[..],
            b"{",
            br#"{"kind":"user_input","seq":1,"pr"#,
            b"{\xe2\x82",
        ] {
            assert!(check_incomplete_segment(ok, file).is_ok(), "{ok:?}");
        }
        for (bad, nuls) in [
            (&[0u8; 2053][..], 2053),
            (b"{\"kind\"\0\0\0", 3),
            (b"garbage without a newline", 0),
            (b" {", 0),
        ] {
            let err = check_incomplete_segment(bad, file).unwrap_err();
            let Error::Corrupt { line, problem, .. } = &err else {
                panic!("not corruption: {err}");
            };
            assert_eq!(*line, 1);
            assert_eq!(
                *problem,
                Corruption::NoCompleteLine {
                    bytes: bad.len() as u64,
                    nuls
                }
            );
        }
        let message = check_incomplete_segment(&[0u8; 2053], file)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(
                "line 1: no complete first line: 2053 bytes that are not the start of a log \
                 line (all of them NUL bytes)"
            ),
            "{message}"
        );
        assert!(message.contains("nothing was changed"), "{message}");
    }

    #[test]
    fn chunks_cover_whole_lines() {
        let text = "aaaa\nbb\ncccccc\nd\neeeeeeee\n";
        for n in 1..8 {
            let ranges = chunks(text, n);
            assert!(ranges.len() <= n);
            assert_eq!(ranges.first().unwrap().start, 0);
            assert_eq!(ranges.last().unwrap().end, text.len());
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
            for r in &ranges {
                assert!(r.end > r.start && text[r.clone()].ends_with('\n'));
            }
        }
        assert!(chunks("", 2).is_empty());
    }
}
