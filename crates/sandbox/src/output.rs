//! Collecting a command's output without holding all of it: up to a limit it stays in
//! memory; past it, everything goes to a spill file (when a spill dir is given) and only
//! the tail is kept in memory.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why the whole output could not be saved (the text of [`CapturedOutput::spill_error`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpillError {
    /// The spill dir cannot be created.
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        /// The spill dir.
        dir: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The spill file cannot be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateFile {
        /// The spill file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing to the spill file failed.
    #[error("writing {} failed: {source}", path.display())]
    Write {
        /// The spill file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Flushing the spill file failed.
    #[error("flushing the spill file failed: {0}")]
    Flush(#[source] io::Error),
}

/// What a command printed, as far as it was kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedOutput {
    /// All of the output when it fit the limit, else its last `limit` bytes.
    pub bytes: Vec<u8>,
    /// How many bytes the command printed in all.
    pub total_bytes: u64,
    /// Whether `bytes` is only the tail.
    pub truncated: bool,
    /// The file holding the whole output, when it was spilled.
    pub spill_path: Option<PathBuf>,
    /// Why the whole output could not be saved, when spilling failed.
    pub spill_error: Option<String>,
}

impl CapturedOutput {
    /// The kept bytes as text (invalid UTF-8 replaced, a split first character dropped).
    pub fn text(&self) -> String {
        let mut start = 0;
        if self.truncated {
            // The tail may begin inside a multi-byte character.
            while start < self.bytes.len().min(3) && (self.bytes[start] & 0xC0) == 0x80 {
                start += 1;
            }
        }
        String::from_utf8_lossy(&self.bytes[start..]).into_owned()
    }
}

/// Numbers spill files of one process apart.
static SPILL_SEQ: AtomicU64 = AtomicU64::new(0);

/// Accumulates output chunks (see the module docs).
#[derive(Debug)]
pub(crate) struct OutputCapture {
    limit: usize,
    spill_dir: Option<PathBuf>,
    buf: Vec<u8>,
    total: u64,
    truncated: bool,
    file: Option<File>,
    spill_path: Option<PathBuf>,
    spill_error: Option<String>,
}

impl OutputCapture {
    /// A capture keeping `limit` bytes in memory, spilling into `spill_dir` past that.
    pub(crate) fn new(limit: usize, spill_dir: Option<PathBuf>) -> Self {
        OutputCapture {
            limit,
            spill_dir,
            buf: Vec::new(),
            total: 0,
            truncated: false,
            file: None,
            spill_path: None,
            spill_error: None,
        }
    }

    /// Adds a chunk.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if !self.truncated && self.buf.len() + chunk.len() <= self.limit {
            self.buf.extend_from_slice(chunk);
            return;
        }
        if !self.truncated {
            self.truncated = true;
            self.start_spill();
        }
        if let Some(file) = &mut self.file
            && let Err(e) = file.write_all(chunk)
        {
            self.spill_error = Some(
                SpillError::Write {
                    path: self.spill_path.clone().unwrap_or_default(),
                    source: e,
                }
                .to_string(),
            );
            self.file = None;
        }
        self.buf.extend_from_slice(chunk);
        // Trim only now and then, so appending stays amortised O(1).
        if self.buf.len() > self.limit.saturating_mul(2).max(64 * 1024) {
            let cut = self.buf.len() - self.limit;
            self.buf.drain(..cut);
        }
    }

    /// Opens the spill file and writes what is in memory so far.
    fn start_spill(&mut self) {
        let Some(dir) = &self.spill_dir else {
            return;
        };
        match open_spill_file(dir) {
            Ok((path, mut file)) => match file.write_all(&self.buf) {
                Ok(()) => {
                    self.file = Some(file);
                    self.spill_path = Some(path);
                }
                Err(source) => {
                    self.spill_error = Some(
                        SpillError::Write {
                            path: path.clone(),
                            source,
                        }
                        .to_string(),
                    );
                    self.spill_path = Some(path);
                }
            },
            Err(e) => self.spill_error = Some(e.to_string()),
        }
    }

    /// The captured output.
    pub(crate) fn finish(mut self) -> CapturedOutput {
        if let Some(file) = &mut self.file
            && let Err(e) = file.flush()
        {
            self.spill_error = Some(SpillError::Flush(e).to_string());
        }
        if self.truncated && self.buf.len() > self.limit {
            let cut = self.buf.len() - self.limit;
            self.buf.drain(..cut);
        }
        CapturedOutput {
            bytes: self.buf,
            total_bytes: self.total,
            truncated: self.truncated,
            spill_path: self.spill_path,
            spill_error: self.spill_error,
        }
    }
}

/// Creates the spill dir (0700) and a new file (0600) named after the time, pid and a
/// sequence number.
fn open_spill_file(dir: &Path) -> Result<(PathBuf, File), SpillError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| SpillError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let name = format!(
        "{millis}-{}-{}.txt",
        std::process::id(),
        SPILL_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match file {
        Ok(file) => Ok((path, file)),
        Err(source) => Err(SpillError::CreateFile { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_stays_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut cap = OutputCapture::new(10, Some(dir.path().join("spill")));
        cap.push(b"hello ");
        cap.push(b"you!");
        let out = cap.finish();
        assert_eq!(out.bytes, b"hello you!");
        assert_eq!(out.total_bytes, 10);
        assert!(!out.truncated);
        assert_eq!(out.spill_path, None);
        assert!(!dir.path().join("spill").exists());
    }

    #[test]
    fn large_output_spills_whole_and_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join("bash-output");
        let mut cap = OutputCapture::new(8, Some(spill.clone()));
        let mut all = Vec::new();
        for i in 0..50_000u32 {
            let chunk = format!("{i},");
            all.extend_from_slice(chunk.as_bytes());
            cap.push(chunk.as_bytes());
        }
        let out = cap.finish();
        assert!(out.truncated);
        assert_eq!(out.total_bytes, all.len() as u64);
        assert_eq!(out.bytes, &all[all.len() - 8..]);
        let path = out.spill_path.unwrap();
        assert!(path.starts_with(&spill));
        assert_eq!(std::fs::read(&path).unwrap(), all);
        assert_eq!(out.spill_error, None);
    }

    #[test]
    fn without_a_spill_dir_only_the_tail_is_kept() {
        let mut cap = OutputCapture::new(4, None);
        cap.push(b"abcdefgh");
        let out = cap.finish();
        assert_eq!(out.bytes, b"efgh");
        assert!(out.truncated);
        assert_eq!(out.spill_path, None);
        assert_eq!(out.spill_error, None);
    }

    #[test]
    fn an_unusable_spill_dir_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let mut cap = OutputCapture::new(2, Some(file.join("sub")));
        cap.push(b"abc");
        let out = cap.finish();
        assert_eq!(out.bytes, b"bc");
        assert!(out.spill_error.unwrap().contains("cannot create"));
    }

    #[test]
    fn text_of_a_tail_drops_a_split_character() {
        let out = CapturedOutput {
            bytes: "é!".as_bytes()[1..].to_vec(),
            truncated: true,
            ..CapturedOutput::default()
        };
        assert_eq!(out.text(), "!");
    }
}
