//! Names and places inside a session directory, and the small filesystem helpers
//! (listing segments, reading a segment's last line, fsyncing a directory).
//!
//! A session directory holds `lock` (the writer's flock target; never a segment,
//! never deleted), the segments `000001.jsonl`, `000002.jsonl`, ... (six digits at
//! least, more once past 999999), `head` (the chain head recorded at the last sync,
//! see `head.rs`), and transiently `<segment>.tmp` while a new segment is being
//! created (written, fsynced, then renamed into place so a segment file never exists
//! without its `segment_start`) and `head.tmp` while the head is replaced.
//!
//! Segments hold whole conversations, so the directory is private to its owner:
//! created 0700, its files 0600, with explicit modes so the umask cannot widen them
//! (it can only take bits away).

use std::fs::{DirBuilder, File, Permissions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name of the writer's lock file inside a session directory.
pub const LOCK_FILE_NAME: &str = "lock";

/// Name of the file inside a session directory that records the chain head (seq and
/// hash of the last line) as of the writer's last sync.
pub const HEAD_FILE_NAME: &str = "head";

/// Mode of a session directory (and of the parents the writer creates for it).
pub(crate) const DIR_MODE: u32 = 0o700;

/// Mode of every file in a session directory.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Suffix of a segment being created.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// File name of segment `number`, e.g. `000001.jsonl`.
pub fn segment_file_name(number: u32) -> String {
    format!("{number:06}.jsonl")
}

/// The number of a segment file name, if `name` is one.
fn parse_segment_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".jsonl")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n >= 1)
}

/// What a session directory holds.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Segment numbers, ascending.
    pub segments: Vec<u32>,
    /// Leftover temporary segment files.
    pub(crate) temps: Vec<PathBuf>,
}

/// Lists the segments of `dir` and checks they are numbered 1..=N without gaps.
pub(crate) fn list_segments(dir: &Path) -> Result<Listing> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::io("list session directory", dir, e))?;
    let mut listing = Listing::default();
    for dirent in read {
        let dirent = dirent.map_err(|e| Error::io("list session directory", dir, e))?;
        let name = dirent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(number) = parse_segment_name(name) {
            listing.segments.push(number);
        } else if name
            .strip_suffix(TEMP_SUFFIX)
            .and_then(parse_segment_name)
            .is_some()
        {
            listing.temps.push(dirent.path());
        }
    }
    listing.segments.sort_unstable();
    for (i, &number) in listing.segments.iter().enumerate() {
        let expected = i as u32 + 1;
        if number != expected {
            return Err(Error::MissingSegment {
                dir: dir.to_owned(),
                name: segment_file_name(expected),
            });
        }
    }
    Ok(listing)
}

/// Reads a whole segment file.
pub(crate) fn read_segment(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("read segment", path, e))
}

/// The last complete line (without `\n`) of a segment, reading only its tail.
/// `None` when the file has no complete line.
pub(crate) fn last_complete_line(path: &Path) -> Result<Option<String>> {
    let err = |e| Error::io("read the last line of segment", path, e);
    let mut file = File::open(path).map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    let mut window: u64 = 64 * 1024;
    loop {
        let take = window.min(len);
        file.seek(SeekFrom::Start(len - take)).map_err(err)?;
        let mut buf = Vec::with_capacity(usize::try_from(take).unwrap_or(0));
        (&mut file).take(take).read_to_end(&mut buf).map_err(err)?;
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            if take == len {
                return Ok(None);
            }
            window = window.saturating_mul(2);
            continue;
        };
        let start = match buf[..end].iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if take == len => 0,
            None => {
                window = window.saturating_mul(2);
                continue;
            }
        };
        buf.truncate(end);
        buf.drain(..start);
        return match String::from_utf8(buf) {
            Ok(line) => Ok(Some(line)),
            Err(_) => Err(Error::Corrupt {
                file: path.to_owned(),
                line: complete_line_count(path)?,
                problem: crate::error::Corruption::NotUtf8,
            }),
        };
    }
}

/// The number of complete lines of a segment (reads it all: for error messages only).
pub(crate) fn complete_line_count(path: &Path) -> Result<u64> {
    let bytes = read_segment(path)?;
    Ok(bytes.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// fsyncs a directory, making the creation, removal or renaming of its entries durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Creates `dir` and any missing parents (mode 0700: the parents are usually the
/// `sessions` directory, which lists who talked to what), fsyncing the parent of
/// each one created. Returns whether anything was created.
pub(crate) fn create_dir_durably(dir: &Path) -> Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at {
        if path.as_os_str().is_empty() || path.exists() {
            break;
        }
        missing.push(path);
        at = path.parent();
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| Error::io("create session directory", dir, e))?;
    for path in missing.iter().rev() {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fsync_dir(parent)?;
    }
    Ok(true)
}

/// Sets `file` (open at `path`) to `mode` if group or others have any access to
/// it, which a file made by an older version or by hand under a loose umask may
/// give. Returns whether it changed anything.
pub(crate) fn restrict(file: &File, path: &Path, mode: u32) -> Result<bool> {
    let current = file
        .metadata()
        .map_err(|e| Error::io("read the permissions of", path, e))?
        .permissions()
        .mode();
    if current & 0o077 == 0 {
        return Ok(false);
    }
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| Error::io("restrict the permissions of", path, e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(1), "000001.jsonl");
        assert_eq!(segment_file_name(1_234_567), "1234567.jsonl");
        assert_eq!(parse_segment_name("000002.jsonl"), Some(2));
        assert_eq!(parse_segment_name("1234567.jsonl"), Some(1_234_567));
        assert_eq!(parse_segment_name("00002.jsonl"), None);
        assert_eq!(parse_segment_name("000000.jsonl"), None);
        assert_eq!(parse_segment_name("000002.jsonl.tmp"), None);
        assert_eq!(parse_segment_name("lock"), None);
    }

    #[test]
    fn last_complete_line_reads_across_window_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000001.jsonl");
        let long = "x".repeat(200_000);
        for (content, expected) in [
            ("".to_owned(), None),
            ("partial".to_owned(), None),
            ("one\n".to_owned(), Some("one".to_owned())),
            ("one\ntwo\npart".to_owned(), Some("two".to_owned())),
            (format!("a\n{long}\n"), Some(long.clone())),
            (format!("{long}\n{long}"), Some(long)),
        ] {
            std::fs::write(&path, &content).unwrap();
            assert_eq!(last_complete_line(&path).unwrap(), expected);
        }
    }

    #[test]
    fn list_segments_reports_gaps_and_temps() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["000001.jsonl", "000002.jsonl", "000003.jsonl.tmp", "lock"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let listing = list_segments(dir.path()).unwrap();
        assert_eq!(listing.segments, vec![1, 2]);
        assert_eq!(listing.temps, vec![dir.path().join("000003.jsonl.tmp")]);
        std::fs::write(dir.path().join("000004.jsonl"), "").unwrap();
        let err = list_segments(dir.path()).unwrap_err();
        assert!(err.to_string().contains("000003.jsonl is missing"), "{err}");
    }
}
