//! The record of a running model server (`server.json` in the model dir): where it
//! listens and which process it is. A pid alone can be reused, so the record also
//! keeps the process's start time (field 22 of `/proc/PID/stat`), and the server
//! counts as running only while both match and the process is not a zombie.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ModelError;

/// Why a server record cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// It is not the JSON of a record (or the record cannot be encoded).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Its base URL is not `http://...`.
    #[error("base_url `{base_url}` is not an http URL")]
    NotHttp {
        /// The recorded URL.
        base_url: String,
    },
    /// Its pid is 0.
    #[error("pid 0")]
    ZeroPid,
}

/// A running model server, as `pod model up` recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// The OpenAI-compatible base URL (`http://127.0.0.1:PORT/v1`).
    pub base_url: String,
    /// The model name to send (the server's alias).
    pub model: String,
    /// The server's process id.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
    /// The GGUF it serves.
    pub gguf: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// When it started (seconds since the Unix epoch).
    pub started_at: u64,
}

/// Reads the record at `path`: `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<ServerRecord>, ModelError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ModelError::io("cannot read", path, e)),
    };
    parse(&text).map(Some).map_err(|source| ModelError::Record {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses a record's text.
pub fn parse(text: &str) -> Result<ServerRecord, RecordError> {
    let record: ServerRecord = serde_json::from_str(text)?;
    if !record.base_url.starts_with("http://") {
        return Err(RecordError::NotHttp {
            base_url: record.base_url,
        });
    }
    if record.pid == 0 {
        return Err(RecordError::ZeroPid);
    }
    Ok(record)
}

/// Writes the record atomically (temp file, rename).
pub fn write(path: &Path, record: &ServerRecord) -> Result<(), ModelError> {
    let text = serde_json::to_vec_pretty(record).map_err(|e| ModelError::Record {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    super::write_atomically(path, &text)
}

/// The start time (clock ticks since boot) of process `pid`, or `None` if there is
/// no such process or it is a zombie (exited, not yet reaped).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Field 22 of a `/proc/PID/stat` line, `None` for a zombie or a line it cannot read.
/// The command name (field 2) is in parentheses and may hold spaces and `)`, so
/// fields are counted from the last `)`.
pub(crate) fn parse_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field 22 is fields[19].
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the recorded server process still runs.
pub fn is_alive(record: &ServerRecord) -> bool {
    start_ticks(record.pid) == Some(record.start_ticks)
}

/// The resident memory of process `pid` in bytes (`VmRSS`).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss(&status)
}

/// `VmRSS` of a `/proc/PID/status` text, in bytes.
pub(crate) fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ServerRecord {
        ServerRecord {
            base_url: "http://127.0.0.1:41234/v1".into(),
            model: "qwen".into(),
            pid: 4242,
            start_ticks: 987_654,
            gguf: "/m/gguf/abc.gguf".into(),
            log: "/m/server.log".into(),
            started_at: 1_800_000_000,
        }
    }

    #[test]
    fn records_round_trip_and_bad_ones_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.json");
        assert_eq!(read(&path).unwrap(), None);
        write(&path, &sample()).unwrap();
        assert_eq!(read(&path).unwrap(), Some(sample()));

        std::fs::write(&path, "{not json").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("server.json"), "{err}");
        assert!(err.contains("pod model down"), "{err}");
        let mut bad = sample();
        bad.base_url = "ftp://x".into();
        let text = serde_json::to_string(&bad).unwrap();
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("not an http URL")
        );
        bad = sample();
        bad.pid = 0;
        assert!(parse(&serde_json::to_string(&bad).unwrap()).is_err());
        // Unknown fields are ignored (a newer pods may add some).
        let mut value = serde_json::to_value(sample()).unwrap();
        value["future"] = serde_json::json!(1);
        assert_eq!(parse(&value.to_string()).unwrap(), sample());
    }

    #[test]
    fn stat_lines_give_the_start_time_and_zombies_count_as_gone() {
        let line = "123 (my (odd) prog) S 1 123 123 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 5550123 2453580 500 18446744073709551615";
        assert_eq!(parse_stat(line), Some(5_550_123));
        assert_eq!(parse_stat(&line.replace(") S ", ") Z ")), None);
        assert_eq!(parse_stat("garbage"), None);
        // This process is alive, with a start time.
        let me = std::process::id();
        let ticks = start_ticks(me).unwrap();
        let mut r = sample();
        r.pid = me;
        r.start_ticks = ticks;
        assert!(is_alive(&r));
        r.start_ticks = ticks + 1;
        assert!(!is_alive(&r), "a reused pid has another start time");
        assert!(rss_bytes(me).unwrap() > 0);
    }

    #[test]
    fn rss_is_read_in_bytes() {
        let status = "Name:\tpython\nVmPeak:\t 100 kB\nVmRSS:\t 2025476 kB\n";
        assert_eq!(parse_rss(status), Some(2_025_476 * 1024));
        assert_eq!(parse_rss("Name: x\n"), None);
    }
}
