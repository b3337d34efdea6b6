//! Starting, probing and stopping the model server process.
//!
//! The server is a small Python script (`serve.py`, written beside the model) run
//! by the venv's interpreter, detached: its own session, stdin from /dev/null,
//! stdout and stderr appended to the log in the model dir, so that it outlives
//! `pod model up` and no terminal hang-up reaches it. It picks its own port
//! and writes `{"url", "pid"}` to a ready file once it listens; then `/health`
//! must answer 200 (it answers 503 while the model loads).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::ModelError;
use super::pip::tail_lines;

/// Why `/health` could not be asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HealthError {
    /// The URL is not `http://...`.
    #[error("`{url}` is not an http:// URL")]
    NotHttp {
        /// The URL.
        url: String,
    },
    /// The host name cannot be resolved.
    #[error(transparent)]
    Resolve(std::io::Error),
    /// The host name resolves to nothing.
    #[error("`{authority}` has no address")]
    NoAddress {
        /// `host:port`.
        authority: String,
    },
    /// No connection within the timeout.
    #[error(transparent)]
    Connect(std::io::Error),
    /// The request cannot be sent.
    #[error(transparent)]
    Send(std::io::Error),
    /// The answer cannot be received.
    #[error(transparent)]
    Receive(std::io::Error),
    /// The answer does not start with an HTTP status line.
    #[error("not an HTTP answer: {line:?}")]
    NotHttpAnswer {
        /// What came back.
        line: String,
    },
}

/// How the server process is started.
#[derive(Debug, Clone)]
pub(crate) struct ServerCommand {
    /// The interpreter (the venv's python).
    pub python: PathBuf,
    /// Its arguments (the script and its options).
    pub args: Vec<OsString>,
    /// The log file for its stdout and stderr.
    pub log: PathBuf,
    /// The file it writes `{"url", "pid"}` to when it listens.
    pub ready: PathBuf,
}

/// What the ready file says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Ready {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The server's pid.
    pub pid: u32,
}

/// Starts the server detached; returns the child (for noticing an early death).
pub(crate) fn spawn(cmd: &ServerCommand) -> Result<Child, ModelError> {
    let _ = std::fs::remove_file(&cmd.ready);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cmd.log)
        .map_err(|e| ModelError::io("cannot open", &cmd.log, e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| ModelError::io("cannot open", &cmd.log, e))?;
    let mut command = Command::new(&cmd.python);
    command
        .args(&cmd.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    sys::detach_from_session(&mut command);
    command.spawn().map_err(|e| ModelError::ServerStart {
        reason: format!("cannot run {}: {e}", cmd.python.display()),
        log: cmd.log.clone(),
        tail: String::new(),
    })
}

/// The last lines of the log, for error messages.
pub(crate) fn log_tail(log: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        let _ = f.read_to_end(&mut bytes);
    }
    tail_lines(&String::from_utf8_lossy(&bytes), 20)
}

/// Waits until the server has written its ready file and `/health` answers 200.
/// Fails if the process exits first or `timeout` passes (and then kills it).
pub(crate) fn wait_ready(
    child: &mut Child,
    cmd: &ServerCommand,
    timeout: Duration,
) -> Result<Ready, ModelError> {
    let deadline = Instant::now() + timeout;
    let mut ready: Option<Ready> = None;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ModelError::ServerStart {
                reason: format!("the server exited before it was ready ({status})"),
                log: cmd.log.clone(),
                tail: log_tail(&cmd.log),
            });
        }
        if ready.is_none() {
            ready = std::fs::read_to_string(&cmd.ready)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        }
        if let Some(r) = &ready
            && matches!(health(&r.url), Ok(200))
        {
            return Ok(r.clone());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ModelError::ServerStart {
                reason: format!(
                    "the server was not ready within {} s{}",
                    timeout.as_secs(),
                    if ready.is_some() {
                        " (it listens, but /health never answered 200)"
                    } else {
                        ""
                    }
                ),
                log: cmd.log.clone(),
                tail: log_tail(&cmd.log),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `host:port` of an `http://host:port[/...]` URL.
fn authority(url: &str) -> Result<&str, HealthError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HealthError::NotHttp { url: url.into() })?;
    Ok(rest.split('/').next().unwrap_or(rest))
}

/// The HTTP status of `GET {url}/health` (url without `/v1`), with short timeouts.
pub(crate) fn health(url: &str) -> Result<u16, HealthError> {
    let authority = authority(url)?;
    let addr = authority
        .to_socket_addrs()
        .map_err(HealthError::Resolve)?
        .next()
        .ok_or_else(|| HealthError::NoAddress {
            authority: authority.into(),
        })?;
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(HealthError::Connect)?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /health HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(HealthError::Send)?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(HealthError::Receive)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| HealthError::NotHttpAnswer {
            line: line.to_string(),
        })
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// It exited on SIGTERM.
    Clean,
    /// It had to be killed.
    Killed,
}

/// Stops the server `pid` (started at `start_ticks`): SIGTERM, then after
/// `grace` SIGKILL. Does nothing if that process is already gone.
pub(crate) fn stop(pid: u32, start_ticks: u64, grace: Duration) -> Result<Stopped, ModelError> {
    let same = || super::record::start_ticks(pid) == Some(start_ticks);
    if i32::try_from(pid).is_err() {
        return Err(ModelError::Stop {
            pid,
            reason: "pid out of range".into(),
        });
    }
    let term: fn(u32) -> std::io::Result<()> = sys::terminate;
    for (signal, wait, outcome) in [
        (term, grace, Stopped::Clean),
        (sys::kill, Duration::from_secs(5), Stopped::Killed),
    ] {
        if !same() {
            return Ok(Stopped::Clean);
        }
        // The start time check above makes sure the pid still names our server.
        if let Err(e) = signal(pid)
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            return Err(ModelError::Stop {
                pid,
                reason: e.to_string(),
            });
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if !same() {
                return Ok(outcome);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Err(ModelError::Stop {
        pid,
        reason: "it is still running after SIGKILL".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_their_authority() {
        assert_eq!(
            authority("http://127.0.0.1:8080/v1").unwrap(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            authority("http://127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080"
        );
        assert!(authority("https://x").is_err());
    }

    #[test]
    fn health_reads_the_status_code() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            for answer in ["HTTP/1.1 503 Loading\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n{}"] {
                let (mut s, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 256];
                while !request.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "the request ended early");
                    request.extend(&buf[..n]);
                }
                assert!(request.starts_with(b"GET /health HTTP/1.0\r\n"));
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        assert_eq!(health(&url).ok(), Some(503));
        assert_eq!(health(&url).ok(), Some(200));
        server.join().unwrap();
        // Nothing listens there any more.
        assert!(health(&url).is_err());
    }

    fn script(dir: &Path, body: &str) -> ServerCommand {
        ServerCommand {
            python: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), body.into()],
            log: dir.join("server.log"),
            ready: dir.join("ready.json"),
        }
    }

    #[test]
    fn a_server_that_dies_before_health_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = script(
            dir.path(),
            "echo 'error: cannot load model x.gguf' >&2; exit 7",
        );
        let mut child = spawn(&cmd).unwrap();
        let err = wait_ready(&mut child, &cmd, Duration::from_secs(20))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exited before it was ready"), "{err}");
        assert!(err.contains("cannot load model x.gguf"), "{err}");
        assert!(err.contains("server.log"), "{err}");
    }

    #[test]
    fn a_server_that_never_gets_ready_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = script(dir.path(), "echo loading; exec sleep 30");
        let mut child = spawn(&cmd).unwrap();
        let pid = child.id();
        let err = wait_ready(&mut child, &cmd, Duration::from_millis(500))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not ready within"), "{err}");
        assert!(err.contains("loading"), "{err}");
        assert_eq!(
            super::super::record::start_ticks(pid),
            None,
            "killed and reaped"
        );
    }

    #[test]
    fn stop_terms_then_kills_and_ignores_a_gone_process() {
        let dir = tempfile::tempdir().unwrap();
        // Ignores SIGTERM, so only SIGKILL stops it.
        let cmd = script(dir.path(), "trap '' TERM; while :; do sleep 0.05; done");
        let mut child = spawn(&cmd).unwrap();
        let pid = child.id();
        let ticks = loop {
            if let Some(t) = super::super::record::start_ticks(pid) {
                break t;
            }
        };
        // Reap in the background, as init would for a detached server.
        let reaper = std::thread::spawn(move || child.wait());
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            stop(pid, ticks, Duration::from_millis(300)).unwrap(),
            Stopped::Killed
        );
        reaper.join().unwrap().unwrap();
        assert_eq!(
            stop(pid, ticks, Duration::from_millis(300)).unwrap(),
            Stopped::Clean
        );
    }
}
