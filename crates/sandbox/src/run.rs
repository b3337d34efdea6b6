//! Running one command from the (async, multi-threaded) pod: through the helper, or —
//! with the sandbox off — as a plain `bash -c` in its own process group.
//!
//! The pod never forks itself: both paths spawn with `std::process::Command` (through
//! tokio), which uses posix_spawn as long as no `pre_exec` closure, uid/gid or groups
//! are set and the program is an absolute path. Keep it that way.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;

use super::detect::{Level, SandboxReport, cached, detect};
use super::helper::{HelperReport, HelperRequest, find_bash};
use super::output::{CapturedOutput, OutputCapture};
use super::policy::SandboxPolicy;
use super::{HelperCommand, SandboxError};

/// How long output is still read after the process we wait for has exited. Everything
/// that could hold the pipe is dead by then (namespace, subreaper or process group
/// killed); this only bounds a pathological case.
const DRAIN: Duration = Duration::from_millis(500);

/// How long the helper gets to kill the command after its stdin closes, before the pod
/// kills the helper itself (whose child then dies with it, `PR_SET_PDEATHSIG`).
const KILL_GRACE: Duration = Duration::from_secs(2);

/// How long the helper's report may take once it has exited.
const REPORT_WAIT: Duration = Duration::from_secs(1);

/// Limits for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Wall-clock limit; past it the command and everything it started are killed.
    pub timeout: Duration,
    /// Output kept in memory; past it only the tail is kept.
    pub output_limit: usize,
    /// Where the whole output goes when it exceeds `output_limit` (none: dropped).
    pub spill_dir: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            timeout: Duration::from_secs(120),
            output_limit: 30 * 1024,
            spill_dir: None,
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl CommandStatus {
    /// The shell-style code: the exit code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            CommandStatus::Exited(code) => code,
            CommandStatus::Signaled(signal) => 128 + signal,
        }
    }

    /// Whether it exited with 0.
    pub fn success(self) -> bool {
        self == CommandStatus::Exited(0)
    }
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// How it ended.
    pub status: CommandStatus,
    /// Its stdout and stderr, interleaved as written.
    pub output: CapturedOutput,
    /// Whether it was killed for running past the timeout.
    pub timed_out: bool,
    /// From start to the end of reading its output.
    pub elapsed: Duration,
    /// The sandbox level it ran at (`None`: unconfined).
    pub level: Option<Level>,
}

/// [`detect`] without blocking the async workers (the first call runs the probe).
pub async fn detect_async(helper: &HelperCommand) -> Arc<SandboxReport> {
    if let Some(report) = cached(helper) {
        return report;
    }
    let helper = helper.clone();
    let fallback = helper.clone();
    match tokio::task::spawn_blocking(move || detect(&helper)).await {
        Ok(report) => report,
        // The blocking pool is shutting down; probe on this thread rather than guess.
        Err(_) => detect(&fallback),
    }
}

/// Runs `command` with `bash -c` in the sandbox the policy describes, at the strongest
/// level this host supports. Refuses ([`SandboxError::Unavailable`]) when none works.
pub async fn run(
    helper: &HelperCommand,
    policy: &SandboxPolicy,
    command: &str,
    options: &RunOptions,
) -> Result<CommandOutput, SandboxError> {
    let report = detect_async(helper).await;
    if report.level == Level::None {
        return Err(SandboxError::Unavailable {
            detail: report.detail.clone(),
        });
    }
    run_at(helper, report.level, policy, command, options).await
}

/// As [`run`], at a given level (which must work on this host; the helper fails with a
/// clear error otherwise).
pub async fn run_at(
    helper: &HelperCommand,
    level: Level,
    policy: &SandboxPolicy,
    command: &str,
    options: &RunOptions,
) -> Result<CommandOutput, SandboxError> {
    let request = HelperRequest::Run {
        level,
        policy: Box::new(policy.clone()),
        command: command.to_owned(),
    }
    .to_line()
    .map_err(|e| SandboxError::Io {
        what: "encode the sandbox request".into(),
        reason: format!("{e} (are all paths UTF-8?)"),
    })?;
    let start = Instant::now();
    let deadline = start + options.timeout;
    let (out_write, out_read) = output_pipe()?;
    let mut child = {
        let mut cmd = helper.tokio_command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(out_write))
            .kill_on_drop(true);
        cmd.spawn().map_err(|e| SandboxError::SpawnHelper {
            program: helper.program().to_path_buf(),
            reason: e.to_string(),
        })?
        // `cmd` (and its copy of the pipe's write end) is dropped here, so the output
        // reaches end of file once the helper and the command are gone.
    };
    let mut stdin = child.stdin.take();
    let report_reader = child.stdout.take().map(|mut out| {
        tokio::spawn(async move {
            let mut text = Vec::new();
            let _ = out.read_to_end(&mut text).await;
            text
        })
    });
    if let Some(w) = stdin.as_mut() {
        // A helper that dies early closes the pipe; its report or status says why.
        let _ = tokio::time::timeout_at(deadline.into(), w.write_all(&request)).await;
    }
    let mut capture = OutputCapture::new(options.output_limit, options.spill_dir.clone());
    let waited = wait_reading(
        &mut child,
        out_read,
        &mut capture,
        deadline,
        |child, stage| match stage {
            // Closing the helper's stdin asks it to kill the whole namespace.
            Stage::Timeout => {
                stdin = None;
                Some(Instant::now() + KILL_GRACE)
            }
            Stage::Grace => {
                let _ = child.start_kill();
                None
            }
            Stage::Exited => None,
        },
    )
    .await?;
    let text = match report_reader {
        Some(task) => tokio::time::timeout(REPORT_WAIT, task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let status = match HelperReport::parse_last(&String::from_utf8_lossy(&text)) {
        Some(HelperReport::SetupFailed { message }) => {
            return Err(SandboxError::Setup { message });
        }
        Some(HelperReport::Exited { code }) => CommandStatus::Exited(code),
        Some(HelperReport::Signaled { signal }) => CommandStatus::Signaled(signal),
        Some(HelperReport::Cancelled) => CommandStatus::Signaled(libc::SIGKILL),
        Some(HelperReport::Probe { .. }) | None if waited.timed_out => {
            CommandStatus::Signaled(libc::SIGKILL)
        }
        Some(HelperReport::Probe { .. }) | None => {
            return Err(SandboxError::HelperDied {
                program: helper.program().to_path_buf(),
                status: waited.status,
            });
        }
    };
    Ok(CommandOutput {
        status,
        output: capture.finish(),
        timed_out: waited.timed_out,
        elapsed: start.elapsed(),
        level: Some(level),
    })
}

/// Runs `command` with `bash -c` and no sandbox (`[sandbox] mode = "off"`): in its own
/// process group, in the policy's cwd, with `TMPDIR` = the policy's tmp dir and provider
/// keys removed. The whole group is killed when bash exits or times out (a process that
/// leaves the group with `setsid` survives: there is no sandbox).
pub async fn run_unconfined(
    policy: &SandboxPolicy,
    command: &str,
    options: &RunOptions,
) -> Result<CommandOutput, SandboxError> {
    let bash = find_bash().ok_or_else(|| SandboxError::SpawnBash {
        reason: "bash is neither in PATH nor /bin/bash; install bash".into(),
    })?;
    let start = Instant::now();
    let deadline = start + options.timeout;
    let (out_write, out_read) = output_pipe()?;
    let mut child = {
        let out_write2 = out_write.try_clone().map_err(|e| SandboxError::Io {
            what: "duplicate the output pipe".into(),
            reason: e.to_string(),
        })?;
        let mut cmd = tokio::process::Command::new(&bash);
        cmd.arg("-c")
            .arg(command)
            .current_dir(&policy.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_write))
            .stderr(Stdio::from(out_write2))
            .process_group(0)
            .kill_on_drop(true);
        for (name, _) in std::env::vars_os() {
            if policy.removes_env(&name) {
                cmd.env_remove(name);
            }
        }
        if policy.tmp_dir.is_dir() {
            cmd.env("TMPDIR", &policy.tmp_dir);
        }
        cmd.spawn().map_err(|e| SandboxError::SpawnBash {
            reason: format!("{}: {e} (cwd {})", bash.display(), policy.cwd.display()),
        })?
    };
    // With process_group(0) the group id is bash's pid.
    let group = child
        .id()
        .and_then(|pid| rustix::process::Pid::from_raw(pid.cast_signed()));
    let kill_group = move || {
        if let Some(pgid) = group {
            // The group id cannot be reused while any member lives, and after that the
            // call fails with ESRCH.
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    };
    let mut capture = OutputCapture::new(options.output_limit, options.spill_dir.clone());
    let waited = wait_reading(&mut child, out_read, &mut capture, deadline, |_, stage| {
        match stage {
            Stage::Timeout => {
                kill_group();
                Some(Instant::now() + KILL_GRACE)
            }
            Stage::Grace => None,
            // Background processes left in the group die with the command.
            Stage::Exited => {
                kill_group();
                None
            }
        }
    })
    .await?;
    let status = waited.exit.ok_or_else(|| SandboxError::Io {
        what: "collect bash's exit status".into(),
        reason: waited.status.clone(),
    })?;
    Ok(CommandOutput {
        status,
        output: capture.finish(),
        timed_out: waited.timed_out,
        elapsed: start.elapsed(),
        level: None,
    })
}

/// A pipe for the command's output: the write end for the child (blocking, as a child
/// expects), the read end registered with tokio.
fn output_pipe() -> Result<(OwnedFd, tokio::net::unix::pipe::Receiver), SandboxError> {
    let io_err = |what: &str| {
        let what = what.to_owned();
        move |e: std::io::Error| SandboxError::Io {
            what,
            reason: e.to_string(),
        }
    };
    let (tx, rx) = tokio::net::unix::pipe::pipe().map_err(io_err("create the output pipe"))?;
    let fd = tx
        .into_blocking_fd()
        .map_err(io_err("prepare the output pipe"))?;
    Ok((fd, rx))
}

/// Where [`wait_reading`] is, for its caller's reaction.
enum Stage {
    /// The deadline passed: start killing; return when to escalate.
    Timeout,
    /// The escalation time passed.
    Grace,
    /// The process exited.
    Exited,
}

/// What [`wait_reading`] saw.
struct Waited {
    /// The process's status, as a command status.
    exit: Option<CommandStatus>,
    /// The process's status, described (for errors).
    status: String,
    /// Whether the deadline passed.
    timed_out: bool,
}

/// Reads output into `capture` until the process has exited and the output is at end of
/// file (or [`DRAIN`] after the exit), calling `react` at the deadline, at the
/// escalation time it returns, and at the exit.
async fn wait_reading(
    child: &mut Child,
    mut out: impl AsyncRead + Unpin,
    capture: &mut OutputCapture,
    deadline: Instant,
    mut react: impl FnMut(&mut Child, Stage) -> Option<Instant>,
) -> Result<Waited, SandboxError> {
    let far = || tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let mut buf = vec![0u8; 64 * 1024];
    let mut eof = false;
    let mut exit: Option<std::process::ExitStatus> = None;
    let mut timed_out = false;
    let mut escalate: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    loop {
        if eof && exit.is_some() {
            break;
        }
        tokio::select! {
            read = out.read(&mut buf), if !eof => match read {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => capture.push(&buf[..n]),
            },
            status = child.wait(), if exit.is_none() => {
                let status = status.map_err(|e| SandboxError::Io {
                    what: "wait for the command".into(),
                    reason: e.to_string(),
                })?;
                exit = Some(status);
                react(child, Stage::Exited);
                drain_until = Some(Instant::now() + DRAIN);
            },
            _ = tokio::time::sleep_until(deadline.into()), if !timed_out && exit.is_none() => {
                timed_out = true;
                escalate = react(child, Stage::Timeout);
            },
            _ = tokio::time::sleep_until(escalate.map_or_else(far, Into::into)), if escalate.is_some() && exit.is_none() => {
                escalate = react(child, Stage::Grace);
            },
            _ = tokio::time::sleep_until(drain_until.map_or_else(far, Into::into)), if drain_until.is_some() => break,
        }
    }
    let exit_status = exit.map(|status| {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => CommandStatus::Exited(code),
            (None, Some(signal)) => CommandStatus::Signaled(signal),
            (None, None) => CommandStatus::Exited(-1),
        }
    });
    Ok(Waited {
        exit: exit_status,
        status: exit.map_or_else(|| "still running".to_owned(), |s| s.to_string()),
        timed_out,
    })
}
