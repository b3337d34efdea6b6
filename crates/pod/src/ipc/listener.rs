//! The pod's socket: liveness lock, binding, who may connect, and the accept loop.
//!
//! A pod is alive exactly while it holds an flock on `<pod runtime dir>/lock`
//! (ARCHITECTURE.md rule 6). Binding takes that lock first, so a socket file
//! left by a dead pod is replaced, and a live pod's socket is never stolen.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::stream::LineBudget;
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::inbox::{Input, Peer};
use crate::ipc::conn;
use crate::parent::ParentIdentity;
use crate::state::{SharedState, lock};

pub use crate::runtime::dir::{MAX_SOCKET_PATH, socket_path};

/// Why the pod could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another live process holds the pod's lock.
    #[error("pod `{name}` is already running (pid {pid}); attach to it, or stop it first")]
    AlreadyRunning {
        /// The pod's full name.
        name: String,
        /// The holder's pid as it recorded it (`?` if unknown).
        pid: String,
    },
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// To which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ListenError + 'a {
    move |source| ListenError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The liveness lock of one pod, held for the process's life (closed on exec,
/// so commands the pod runs do not inherit it).
#[derive(Debug)]
pub(crate) struct PodLock {
    _file: File,
}

impl PodLock {
    /// Takes the lock in `dir` (the pod's runtime dir), writing our pid beside
    /// it; fails at once if a live pod holds it.
    pub(crate) fn take(dir: &Path, name: &str) -> Result<PodLock, ListenError> {
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err("cannot open the lock file", &path))?;
        // flock(2) LOCK_EX | LOCK_NB on Linux, like the liveness check.
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(dir.join("pid"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "?".into());
                return Err(ListenError::AlreadyRunning {
                    name: name.to_string(),
                    pid,
                });
            }
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(io_err("cannot lock", &path)(err));
            }
        }
        let pid_path = dir.join("pid");
        std::fs::write(&pid_path, format!("{}\n", std::process::id()))
            .map_err(io_err("cannot write", &pid_path))?;
        Ok(PodLock { _file: file })
    }

    /// The locked file (to hand it to a child process).
    pub(crate) fn file(&self) -> &File {
        &self._file
    }

    /// A lock inherited from the process that started us (at descriptor `fd`,
    /// which nothing else in this process owns), already held; from now on
    /// closed on exec, so our commands do not inherit it.
    pub(crate) fn inherited(fd: std::os::fd::RawFd, dir: &Path) -> Result<PodLock, ListenError> {
        let file = File::from(
            sys::adopt_inherited_fd(fd).map_err(|source| ListenError::Io {
                what: "cannot use the inherited lock",
                path: PathBuf::from(format!("fd {fd}")),
                source,
            })?,
        );
        let pid_path = dir.join("pid");
        std::fs::write(&pid_path, format!("{}\n", std::process::id()))
            .map_err(io_err("cannot write", &pid_path))?;
        Ok(PodLock { _file: file })
    }
}

pub use crate::runtime::liveness::is_alive;

/// Binds the socket at `path` as a std listener (to serve it, or to hand it to a
/// child process), replacing a leftover file, with mode 0600.
pub(crate) fn bind_std(path: &Path) -> Result<std::os::unix::net::UnixListener, ListenError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot remove the old socket", path)(e)),
    }
    let listener =
        std::os::unix::net::UnixListener::bind(path).map_err(io_err("cannot bind", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("cannot set the mode of", path))?;
    Ok(listener)
}

/// A listening socket inherited from the process that started us (at
/// descriptor `fd`, which nothing else in this process owns); from now on
/// closed on exec, so our commands do not inherit it.
pub(crate) fn inherited_listener(fd: std::os::fd::RawFd) -> Result<UnixListener, ListenError> {
    let wrap = |source| ListenError::Io {
        what: "cannot use the inherited socket",
        path: PathBuf::from(format!("fd {fd}")),
        source,
    };
    let std_listener =
        std::os::unix::net::UnixListener::from(sys::adopt_inherited_fd(fd).map_err(wrap)?);
    std_listener.set_nonblocking(true).map_err(wrap)?;
    UnixListener::from_std(std_listener).map_err(wrap)
}

/// Binds the socket at `path` (replacing a leftover file: the caller holds the
/// pod's lock, so no live pod serves it) with mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, ListenError> {
    let listener = bind_std(path)?;
    listener
        .set_nonblocking(true)
        .and_then(|()| UnixListener::from_std(listener))
        .map_err(io_err("cannot listen on", path))
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PeerRefused {
    /// Another user.
    #[error("connection refused: peer uid {peer} is not this pod's uid {ours}")]
    OtherUser {
        /// The peer's uid.
        peer: u32,
        /// Ours.
        ours: u32,
    },
    /// The kernel did not say who it is.
    #[error("connection refused: the peer's credentials are unavailable")]
    Unknown,
}

/// Whether a peer with `peer_uid` may connect to a pod run by `our_uid`.
pub(crate) fn check_peer(peer_uid: Option<u32>, our_uid: u32) -> Result<(), PeerRefused> {
    match peer_uid {
        Some(uid) if uid == our_uid => Ok(()),
        Some(peer) => Err(PeerRefused::OtherUser {
            peer,
            ours: our_uid,
        }),
        None => Err(PeerRefused::Unknown),
    }
}

/// Accepts connections until the listener fails or the controller's inbox
/// closes. `parent`: this pod's parent, if it is a child (whether a peer is the
/// parent is checked once per connection, in the connection's own task).
pub(crate) async fn accept_loop(
    listener: UnixListener,
    state: SharedState,
    inbox: mpsc::Sender<Input>,
    our_uid: u32,
    parent: Option<Arc<ParentIdentity>>,
) {
    // One for the pod: it caps what all connections' half lines hold together.
    let budget = Arc::new(LineBudget::new(conn::MAX_UNFINISHED_METHODS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: back off rather than spin.
                let _ = lock(&state).alert(
                    protocol::AlertLevel::Warn,
                    protocol::AlertSource::Pod,
                    format!("accept failed: {e}"),
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if inbox.is_closed() {
            return;
        }
        let cred = stream.peer_cred().ok();
        let peer_uid = cred.map(|c| c.uid());
        let peer_pid = cred
            .and_then(|c| c.pid())
            .and_then(|p| u32::try_from(p).ok());
        if let Err(refused) = check_peer(peer_uid, our_uid) {
            let message = refused.to_string();
            tokio::spawn(refuse(stream, message));
            continue;
        }
        let subscription = match lock(&state).subscribe() {
            Ok(s) => s,
            Err(e) => {
                tokio::spawn(refuse(stream, format!("cannot serve: {e}")));
                continue;
            }
        };
        let state = state.clone();
        let inbox = inbox.clone();
        let parent = parent.clone();
        let budget = budget.clone();
        tokio::spawn(async move {
            let is_parent = match (parent, peer_pid) {
                // It may read the registry file: off the async workers.
                (Some(parent), Some(pid)) => {
                    tokio::task::spawn_blocking(move || parent.is_parent(pid))
                        .await
                        .unwrap_or(false)
                }
                _ => false,
            };
            let peer = Peer {
                pid: peer_pid,
                is_parent,
            };
            let (read, write) = stream.into_split();
            conn::serve(read, write, state, inbox, subscription, peer, budget).await;
        });
    }
}

async fn refuse(mut stream: tokio::net::UnixStream, message: String) {
    use tokio::io::AsyncWriteExt;
    let event = protocol::Event::Error {
        code: protocol::ErrorCode::InvalidRequest,
        message,
    };
    if let Ok(mut line) = serde_json::to_vec(&event) {
        line.push(b'\n');
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), stream.write_all(&line)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_uid_may_connect() {
        assert!(check_peer(Some(1000), 1000).is_ok());
        let err = check_peer(Some(0), 1000).unwrap_err().to_string();
        assert!(err.contains("peer uid 0"), "{err}");
        assert!(check_peer(None, 1000).is_err());
    }

    #[test]
    fn the_lock_says_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_alive(dir.path()));
        let held = PodLock::take(dir.path(), "main").unwrap();
        assert!(is_alive(dir.path()));
        let err = PodLock::take(dir.path(), "main").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("already running"), "{text}");
        assert!(text.contains(&std::process::id().to_string()), "{text}");
        drop(held);
        assert!(!is_alive(dir.path()));
        assert!(PodLock::take(dir.path(), "main").is_ok());
    }
}
