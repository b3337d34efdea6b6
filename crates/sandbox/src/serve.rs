//! A long-lived program (an MCP stdio server) inside the sandbox: the helper's
//! `serve` mode, with the program on the helper's own stdin and stdout (see
//! [`crate::helper`]'s `SERVING`). The program lives until it exits, the pod
//! stops it ([`Served::stop`]) or the [`Served`] is dropped (the helper is
//! killed, and with it the program's pid namespace).

use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use super::detect::Level;
use super::helper::{HelperReport, HelperRequest, SERVING};
use super::policy::SandboxPolicy;
use super::run::detect_async;
use super::{HelperCommand, SandboxError};

/// How much of the program's stderr is kept (its last lines), for errors.
const TAIL: usize = 8 * 1024;

/// How long the sandbox may take to start the program.
const READY_WAIT: Duration = Duration::from_secs(30);

/// A program serving on its stdin and stdout inside the sandbox.
#[derive(Debug)]
pub struct Served {
    helper: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Arc<Mutex<String>>,
    level: Level,
    exited: tokio::sync::watch::Receiver<bool>,
}

impl Served {
    /// The program's stdin and stdout, to talk to it (taken once).
    pub fn take_io(&mut self) -> Option<(ChildStdout, ChildStdin)> {
        Some((self.stdout.take()?, self.stdin.take()?))
    }

    /// The last lines the program wrote on stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The level the program is confined at.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Whether the program has exited (its helper is gone, or about to be:
    /// nothing holds its stderr any more).
    pub fn has_exited(&mut self) -> bool {
        *self.exited.borrow() || !matches!(self.helper.try_wait(), Ok(None))
    }

    /// Turns true when the program has exited (for a watcher that must not
    /// hold the [`Served`]).
    pub fn exit_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.exited.clone()
    }

    /// Stops the program: closes its stdin (a stdio server exits on end of
    /// file), waits up to `grace`, then kills the helper and with it
    /// everything the program started.
    pub async fn stop(mut self, grace: Duration) {
        drop(self.stdin.take());
        if tokio::time::timeout(grace, self.helper.wait())
            .await
            .is_err()
        {
            let _ = self.helper.kill().await;
        }
    }
}

/// Appends `line` to the tail, keeping its last [`TAIL`] bytes.
fn keep(tail: &Mutex<String>, line: &str) {
    let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
    tail.push_str(line);
    tail.push('\n');
    if tail.len() > TAIL {
        let mut cut = tail.len() - TAIL;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail.drain(..cut);
    }
}

/// Starts `argv` (the program found on `PATH` when it has no `/`) confined by
/// `policy` at the strongest level this host supports, with `env` on top of
/// what commands get; returns once it runs.
pub async fn serve(
    helper: &HelperCommand,
    policy: &SandboxPolicy,
    argv: &[String],
    env: &[(String, String)],
) -> Result<Served, SandboxError> {
    let report = detect_async(helper).await;
    if report.level == Level::None {
        return Err(SandboxError::Unavailable {
            detail: report.detail.clone(),
        });
    }
    let level = report.level;
    let request = HelperRequest::Serve {
        level,
        policy: Box::new(policy.clone()),
        argv: argv.to_vec(),
        env: env.to_vec(),
    }
    .to_line()
    .map_err(|e| SandboxError::Io {
        what: "encode the sandbox request".into(),
        reason: format!("{e} (are all paths UTF-8?)"),
    })?;
    let mut child = helper
        .tokio_command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SandboxError::SpawnHelper {
            program: helper.program().to_path_buf(),
            reason: e.to_string(),
        })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(SandboxError::Io {
            what: "connect to the sandbox helper".into(),
            reason: "a standard stream is missing".into(),
        });
    };
    let write = stdin.write_all(&request).await;
    let tail = Arc::new(Mutex::new(String::new()));
    let mut lines = BufReader::new(stderr).lines();
    let started = tokio::time::timeout(READY_WAIT, async {
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => match line.strip_prefix(SERVING) {
                    Some("ready") => return Ok(()),
                    Some(said) => {
                        let message = said.strip_prefix("failed: ").unwrap_or(said);
                        return Err(SandboxError::Setup {
                            message: message.to_owned(),
                        });
                    }
                    None => keep(&tail, &line),
                },
                Ok(None) | Err(_) => {
                    let status = child
                        .wait()
                        .await
                        .map_or_else(|e| e.to_string(), |s| s.to_string());
                    return Err(SandboxError::HelperDied {
                        program: helper.program().to_path_buf(),
                        status,
                    });
                }
            }
        }
    })
    .await;
    match started {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(SandboxError::Io {
                what: format!("start `{}` in the sandbox", argv.join(" ")),
                reason: format!(
                    "not running after {} s{}",
                    READY_WAIT.as_secs(),
                    write
                        .err()
                        .map(|e| format!(" (request: {e})"))
                        .unwrap_or_default()
                ),
            });
        }
    }
    let kept = Arc::clone(&tail);
    let (exited_tx, exited) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        drain(lines, &kept).await;
        // End of stderr: the helper and everything of the program are gone.
        let _ = exited_tx.send(true);
    });
    Ok(Served {
        helper: child,
        stdin: Some(stdin),
        stdout: Some(stdout),
        stderr: tail,
        level,
        exited,
    })
}

/// Keeps the program's stderr (the helper's last line says how it ended).
async fn drain(mut lines: tokio::io::Lines<BufReader<ChildStderr>>, tail: &Mutex<String>) {
    while let Ok(Some(line)) = lines.next_line().await {
        match line.strip_prefix(SERVING) {
            Some(said) => {
                let ended = said
                    .strip_prefix("exited ")
                    .and_then(|r| serde_json::from_str::<HelperReport>(r).ok());
                let text = match ended {
                    Some(HelperReport::Exited { code }) => format!("(exited with code {code})"),
                    Some(HelperReport::Signaled { signal }) => {
                        format!("(killed by signal {signal})")
                    }
                    _ => format!("({said})"),
                };
                keep(tail, &text);
            }
            None => keep(tail, &line),
        }
    }
}
