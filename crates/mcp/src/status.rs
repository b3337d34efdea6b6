//! What a pod's MCP servers are doing, kept in a file beside the pod's socket
//! (`mcp.json` in its runtime directory) for `pod mcp list` and `pod doctor`:
//! rewritten whole at each change (start, failure, exit, stop).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// The name of the file in a pod's runtime directory.
pub const STATUS_FILE: &str = "mcp.json";

/// Where a server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Being started.
    Starting,
    /// Started and serving.
    Running,
    /// Not running; started on the next call to one of its tools (lazy, or
    /// stopped when the pod's scope changed).
    Stopped,
    /// It exited unasked; started again on the next call.
    Exited,
    /// It could not start (the error says why).
    Failed,
}

impl ServerState {
    /// How the state reads in a listing.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Starting => "starting",
            ServerState::Running => "running",
            ServerState::Stopped => "stopped",
            ServerState::Exited => "exited",
            ServerState::Failed => "failed",
        }
    }
}

/// One server's line in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Its `[[mcp]]` name.
    pub name: String,
    /// Its program and arguments (empty for a `url` server).
    pub command: Vec<String>,
    /// A remote server's endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Started on first use.
    pub lazy: bool,
    /// Where it is.
    pub state: ServerState,
    /// The tools it offers (its own names); empty until listed.
    pub tools: Vec<String>,
    /// The last error, if it failed or exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The servers of one pod, written to `file` at each change.
#[derive(Debug)]
pub struct Board {
    file: Option<PathBuf>,
    servers: Mutex<BTreeMap<String, ServerStatus>>,
}

impl Board {
    /// A board kept in `file` (none: kept in memory only).
    pub fn new(file: Option<PathBuf>) -> Board {
        Board {
            file,
            servers: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds or changes server `name`'s line (`first` when it has none yet) and
    /// rewrites the file.
    pub(crate) fn update(
        &self,
        name: &str,
        first: impl FnOnce() -> ServerStatus,
        change: impl FnOnce(&mut ServerStatus),
    ) {
        let mut servers = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = servers.entry(name.to_string()).or_insert_with(first);
        change(entry);
        let list: Vec<&ServerStatus> = servers.values().collect();
        let (Some(file), Ok(bytes)) = (&self.file, serde_json::to_vec_pretty(&list)) else {
            return;
        };
        // Written under the lock: servers start side by side, and two writers
        // of the one temp file could leave a damaged or an older file.
        // Best effort: a listing that lags is no reason to fail a tool call.
        if let Err(e) = sys::replace_file(file, &bytes) {
            tracing::warn!(file = %file.display(), error = %e, "cannot write the MCP status file");
        }
    }

    /// Every server's line, by name.
    pub fn snapshot(&self) -> Vec<ServerStatus> {
        self.servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

/// Why a status file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Reading it failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not what a pod writes.
    #[error("{} is damaged: {source}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// Reads the servers of the pod whose runtime directory is `dir`: `None`
/// when it has no file (no `[[mcp]]` servers).
pub fn read_status(dir: &Path) -> Result<Option<Vec<ServerStatus>>, StatusError> {
    let path = dir.join(STATUS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StatusError::Io { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StatusError::Damaged { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str) -> ServerStatus {
        ServerStatus {
            name: name.into(),
            command: vec!["node".into(), "x.js".into()],
            url: None,
            lazy: false,
            state: ServerState::Starting,
            tools: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn changes_are_written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let board = Board::new(Some(dir.path().join(STATUS_FILE)));
        assert!(read_status(dir.path()).unwrap().is_none());
        board.update("b", || line("b"), |_| {});
        board.update(
            "a",
            || line("a"),
            |s| {
                s.state = ServerState::Running;
                s.tools = vec!["echo".into()];
            },
        );
        board.update(
            "b",
            || line("b"),
            |s| {
                s.state = ServerState::Failed;
                s.error = Some("no node".into());
            },
        );
        let read = read_status(dir.path()).unwrap().unwrap();
        assert_eq!(read, board.snapshot());
        assert_eq!(read[0].name, "a");
        assert_eq!(read[0].tools, ["echo"]);
        assert_eq!(read[1].state, ServerState::Failed);
    }

    #[test]
    fn a_damaged_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATUS_FILE), b"{nope").unwrap();
        let e = read_status(dir.path()).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}
