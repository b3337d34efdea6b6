//! The helper process (`pod-sandbox`, or `pod __sandbox-exec` when that binary is not
//! installed): sets up the sandbox for one command, runs it, relays its exit status.
//!
//! The pod starts it with posix_spawn and talks to it over its standard streams:
//!
//! - **stdin**: one JSON line, a [`HelperRequest`]; then the pod keeps the pipe open while
//!   the command runs. End of file means "stop": the helper kills the command (and with
//!   it the whole pid namespace). So a pod that dies, or gives up on a timeout, never
//!   leaves a command behind.
//! - **stdout**: one JSON line at the end, a [`HelperReport`].
//! - **stderr**: the command's output. The command gets it as both stdout and stderr, so
//!   the pod reads one interleaved stream, as a terminal would show it.
//!
//! The helper is single-threaded (it runs before anything could start a thread), so it
//! may `unshare(CLONE_NEWUSER)` and fork freely.
//!
//! Setup at level `full`, in this order (each step's failure is reported with its errno):
//! 1. `unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC)`, plus
//!    `CLONE_NEWNET` (loopback brought up) when the policy turns the network off;
//!    `setgroups` denied, uid and gid mapped to our own;
//! 2. the mount tree made private (nothing propagates back to the host);
//! 3. detached copies (`open_tree`) of every tree that must stay reachable at its real
//!    path: the pod's tmp dir, the write roots, the shared paths, and the cwd when it lies
//!    under `/tmp` — taken first, because `/tmp` is about to be covered;
//! 4. `/` made read-only recursively (`mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)`);
//! 5. the pod's tmp dir attached on `/tmp`;
//! 6. write roots, then shared paths, attached read-write (shortest path first, so nested
//!    ones land on top; mountpoints missing under the new `/tmp` are created in it);
//!    non-recursive roots get their existing subdirectories read-only;
//! 7. delegated (created when missing), denied and protected paths that overlap a
//!    writable tree: read-only copies attached on top;
//! 8. paths denied for reading covered (a directory by an empty read-only tmpfs, a file
//!    by an empty read-only file from a staging tmpfs briefly stacked on `/dev/shm`, else
//!    `/dev/null`), every Unix socket found under the socket dirs (bounded search, not
//!    crossing filesystems) covered the same way, so connecting is refused; then each
//!    hidden dir covered by an empty read-only tmpfs (last, so no bind uncovers it);
//! 9. a fresh tmpfs on `/dev/shm`;
//! 10. a Landlock ruleset prepared: writes only beneath `/tmp`, the write roots, the shared
//!     paths and `/dev/shm`, plus writing (not creating) a few device files (`/dev/null`,
//!     ...); signals and abstract Unix sockets scoped (ABI ≥ 6);
//! 11. fork once; the child is pid 1 of the new pid namespace: it dies with the helper
//!     (`PR_SET_PDEATHSIG`), mounts a fresh read-only `/proc` (when the kernel lets it),
//!     starts a new session (no controlling terminal) with a new session keyring (the
//!     pod's keys are not possessed, so not readable), enters the cwd, sets `no_new_privs`, enforces Landlock, drops every capability
//!     (uid 0 inside the namespace would otherwise keep them and could undo the mounts)
//!     and execs `bash -c <command>` with stdin `/dev/null`, `TMPDIR=/tmp` and provider
//!     keys removed from the environment.
//!
//! When pid 1 exits the kernel kills everything else in its namespace, so background
//! processes (`nohup`, `setsid`, `&`) die when the command returns.
//!
//! At level `landlock` (no user namespaces) steps 1-9 are skipped; the helper becomes a
//! child subreaper instead and, when bash exits, kills every descendant left over.

use std::convert::Infallible;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::Access;
use rustix::io::Errno;
use rustix::mount::MountFlags;
use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};
use serde::{Deserialize, Serialize};

use super::cover;
use super::detect::Level;
use super::policy::SandboxPolicy;
use super::sys::{self, SetupError, access};

/// Largest request the helper reads (the command text dominates).
const MAX_REQUEST: u64 = 64 * 1024 * 1024;

/// Exit code of the helper when the sandbox could not be set up.
const EXIT_SETUP_FAILED: i32 = 125;

/// Exit code of the probe child when everything worked but `/proc` could not be mounted.
const PROBE_NO_FRESH_PROC: i32 = 3;

/// What the pod asks of the helper (one JSON line on its stdin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum HelperRequest {
    /// Try the namespace and mount steps and report whether they work.
    Probe,
    /// Run `command` confined by `policy` at `level`.
    Run {
        /// The level to enforce (from detection); the helper never falls back silently.
        level: Level,
        /// What the command may touch.
        policy: Box<SandboxPolicy>,
        /// The `bash -c` script.
        command: String,
    },
    /// Run a long-lived program (a stdio server) confined by `policy` at `level`, on
    /// the helper's own stdin and stdout: see [`SERVING`].
    Serve {
        /// The level to enforce.
        level: Level,
        /// What the program may touch.
        policy: Box<SandboxPolicy>,
        /// The program (found on `PATH` when it has no `/`) and its arguments.
        argv: Vec<String>,
        /// Variables set on top of what commands get.
        #[serde(default)]
        env: Vec<(String, String)>,
    },
}

/// In `serve` mode the helper's stdin and stdout become the program's once it
/// runs, so the helper speaks on stderr instead, each line starting with
/// [`SERVING`]: `ready` when the program was started (the pod writes nothing
/// to stdin before it: the helper has read exactly its request), `failed:
/// <message>` when the sandbox could not be set up, `exited <report JSON>` at
/// the end. Everything else on stderr is the program's. The pod stops it by
/// closing stdin (a stdio server exits on end of file) and, after a grace
/// period, killing the helper, whose pid namespace dies with it.
pub(crate) const SERVING: &str = "pod-sandbox: ";

impl HelperRequest {
    /// A probe request.
    pub fn probe() -> Self {
        HelperRequest::Probe
    }

    /// The request as the JSON line the helper reads (fails for paths that are not UTF-8,
    /// which JSON cannot carry).
    pub(crate) fn to_line(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut line = serde_json::to_vec(self)?;
        line.push(b'\n');
        Ok(line)
    }
}

/// What the helper answers (one JSON line on its stdout, at the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum HelperReport {
    /// The command exited with this code.
    Exited {
        /// Its exit code.
        code: i32,
    },
    /// The command was killed by this signal.
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// The pod closed the helper's stdin; the command was killed.
    Cancelled,
    /// The sandbox could not be set up; nothing ran.
    SetupFailed {
        /// What failed, e.g. `sandbox: cannot make / read-only (mount_setattr): EPERM (...)`.
        message: String,
    },
    /// The probe worked.
    Probe {
        /// Whether a fresh `/proc` could be mounted in the pid namespace.
        fresh_proc: bool,
    },
}

impl HelperReport {
    /// The last report line in `text`, if any parses.
    pub(crate) fn parse_last(text: &str) -> Option<Self> {
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| serde_json::from_str(l).ok())
    }

    /// The helper's own exit code for this report (the command's, 128 + signal for a
    /// signal, as a shell does).
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            HelperReport::Exited { code } => *code,
            HelperReport::Signaled { signal } => 128 + signal,
            HelperReport::Cancelled => 128 + libc::SIGKILL,
            HelperReport::SetupFailed { .. } => EXIT_SETUP_FAILED,
            HelperReport::Probe { .. } => 0,
        }
    }
}

/// The helper's entry point (`pod __sandbox-exec`); returns the process exit code. Takes
/// no arguments: the request comes on stdin (see the module docs).
pub fn helper_main(args: &[OsString]) -> i32 {
    if let Some(arg) = args.first() {
        eprintln!(
            "pod __sandbox-exec: unexpected argument {:?}; this mode is started by the pod itself and reads its request on stdin",
            arg
        );
        return 2;
    }
    let report = match read_request() {
        Err(e) => HelperReport::SetupFailed {
            message: e.to_string(),
        },
        Ok(HelperRequest::Probe) => probe().unwrap_or_else(|e| HelperReport::SetupFailed {
            message: e.to_string(),
        }),
        Ok(HelperRequest::Run {
            level,
            policy,
            command,
        }) => run(level, &policy, &Program::Command(command)).unwrap_or_else(|e| {
            HelperReport::SetupFailed {
                message: e.to_string(),
            }
        }),
        Ok(HelperRequest::Serve {
            level,
            policy,
            argv,
            env,
        }) => {
            let report = run(level, &policy, &Program::Serve { argv, env }).unwrap_or_else(|e| {
                HelperReport::SetupFailed {
                    message: e.to_string(),
                }
            });
            let mut err = io::stderr().lock();
            let _ = match &report {
                HelperReport::SetupFailed { message } => {
                    writeln!(err, "{SERVING}failed: {message}")
                }
                other => writeln!(
                    err,
                    "{SERVING}exited {}",
                    serde_json::to_string(other).unwrap_or_default()
                ),
            };
            return report.exit_code();
        }
    };
    let mut out = io::stdout().lock();
    if let Ok(line) = serde_json::to_string(&report) {
        // The pod may be gone; the exit code still says what happened.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    report.exit_code()
}

/// Why the helper has no request to act on.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    /// Reading stdin failed.
    #[error("sandbox: cannot read the request on stdin: {0}")]
    Read(#[source] io::Error),
    /// Stdin ended before a request line.
    #[error("sandbox: no request on stdin; this mode is started by the pod itself")]
    Empty,
    /// The line is not a [`HelperRequest`].
    #[error("sandbox: malformed request on stdin: {0}")]
    Malformed(#[source] serde_json::Error),
}

/// Reads the request line from stdin.
fn read_request() -> Result<HelperRequest, RequestError> {
    let mut line = Vec::new();
    io::stdin()
        .lock()
        .take(MAX_REQUEST)
        .read_until(b'\n', &mut line)
        .map_err(RequestError::Read)?;
    if line.is_empty() {
        return Err(RequestError::Empty);
    }
    serde_json::from_slice(&line).map_err(RequestError::Malformed)
}

/// Why a run did not get to report the command's status.
#[derive(Debug)]
enum HelperError {
    /// A setup step failed.
    Setup(SetupError),
    /// Something else, already phrased.
    Other(String),
}

impl std::fmt::Display for HelperError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelperError::Setup(e) => e.fmt(f),
            HelperError::Other(m) => f.write_str(m),
        }
    }
}

impl From<SetupError> for HelperError {
    fn from(e: SetupError) -> Self {
        HelperError::Setup(e)
    }
}

/// Shorthand for a failed step.
pub(super) fn step(
    what: impl Into<String>,
    call: &'static str,
) -> impl FnOnce(io::Error) -> SetupError {
    let what = what.into();
    move |e| SetupError::new(what, call, e)
}

/// A path as a C string, or a setup error naming it.
pub(super) fn c(path: &Path) -> Result<CString, SetupError> {
    sys::cpath(path).map_err(step(format!("use path {}", path.display()), "path"))
}

// ---------------------------------------------------------------------------------------
// Runs.

/// What runs in the sandbox.
enum Program {
    /// A `bash -c` script, on `/dev/null` and the output pipe.
    Command(String),
    /// A program on the helper's own stdin and stdout (`serve`).
    Serve {
        argv: Vec<String>,
        env: Vec<(String, String)>,
    },
}

/// Runs one command (or serves one program) at `level`.
fn run(
    level: Level,
    policy: &SandboxPolicy,
    program: &Program,
) -> Result<HelperReport, HelperError> {
    if let Some(rel) = policy.relative_path() {
        return Err(HelperError::Other(format!(
            "sandbox: policy path {} is relative; the pod must pass absolute paths",
            rel.display()
        )));
    }
    let tmp_in_sandbox = if level.uses_namespaces() {
        PathBuf::from("/tmp")
    } else {
        policy.tmp_dir.clone()
    };
    let exec = Exec::prepare(policy, program, &tmp_in_sandbox)?;
    let serving = matches!(program, Program::Serve { .. });
    let abi = sys::landlock_abi().ok().filter(|v| *v >= 1);
    match level {
        Level::None => {
            return Err(HelperError::Other(
                "sandbox: level none cannot confine a command".to_owned(),
            ));
        }
        Level::Full | Level::Namespaces => {
            enter_namespaces(policy.no_network)?;
            build_view(policy)?;
        }
        Level::Landlock => {
            sys::set_child_subreaper().map_err(step(
                "become the reaper of the command's descendants",
                "prctl",
            ))?;
        }
    }
    // Without a network namespace, Landlock (ABI 4) is what keeps the network away.
    let deny_tcp = policy.no_network && level == Level::Landlock;
    if deny_tcp && abi.is_none_or(|v| v < 4) {
        return Err(HelperError::Other(format!(
            "sandbox: network off needs user namespaces or Landlock ABI 4 (here: level {level}, {}); allow the network for commands ([sandbox] network = true)",
            abi.map_or("no Landlock".to_owned(), |v| format!("Landlock ABI {v}"))
        )));
    }
    let ruleset = match (level, abi) {
        (Level::Full | Level::Landlock, Some(abi)) => Some(landlock_rules(
            policy,
            &tmp_in_sandbox,
            abi,
            level.uses_namespaces(),
            deny_tcp,
        )?),
        (Level::Full | Level::Landlock, None) => {
            return Err(HelperError::Other(format!(
                "sandbox: level {level} needs Landlock, which this kernel does not offer now"
            )));
        }
        _ => None,
    };
    let child = fork_child(&ChildTask::Exec(&exec), ruleset, level)?;
    if serving {
        // The program runs (its exec succeeded): the pod may talk to it now.
        let _ = writeln!(io::stderr().lock(), "{SERVING}ready");
    }
    // A served program owns stdin: the pod stops it by closing stdin or
    // killing the helper.
    let report = wait_for(child, !serving)?;
    if level == Level::Landlock {
        reap_descendants();
    }
    Ok(report)
}

/// Tries the steps of a real run (without a command) and reports whether they work.
fn probe() -> Result<HelperReport, HelperError> {
    enter_namespaces(false)?;
    let policy = SandboxPolicy {
        cwd: PathBuf::from("/"),
        tmp_dir: PathBuf::from("/tmp"),
        ..SandboxPolicy::default()
    };
    build_view(&policy)?;
    let ruleset = match sys::landlock_abi().ok().filter(|v| *v >= 1) {
        Some(abi) => Some(landlock_rules(
            &policy,
            Path::new("/tmp"),
            abi,
            true,
            false,
        )?),
        None => None,
    };
    let child = fork_child(&ChildTask::Probe, ruleset, Level::Full)?;
    // The prober closes our stdin right after the request: do not take that as "stop".
    match wait_for(child, false)? {
        HelperReport::Exited { code: 0 } => Ok(HelperReport::Probe { fresh_proc: true }),
        HelperReport::Exited {
            code: PROBE_NO_FRESH_PROC,
        } => Ok(HelperReport::Probe { fresh_proc: false }),
        other => Err(HelperError::Other(format!(
            "sandbox: the probe child ended with {other:?}"
        ))),
    }
}

/// Everything `execve` needs, prepared before the namespaces change (the environment and
/// `PATH` lookup read the real filesystem).
struct Exec {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    /// The command's stdin; `None` keeps the helper's stdin and stdout (`serve`).
    devnull: Option<OwnedFd>,
}

/// A string as a C string, or an error naming what it is.
fn c_text(text: &str, what: &str) -> Result<CString, HelperError> {
    CString::new(text)
        .map_err(|_| HelperError::Other(format!("sandbox: the {what} contains a NUL byte")))
}

impl Exec {
    /// Resolves the program, builds argv and the scrubbed environment, opens
    /// `/dev/null` for a command.
    fn prepare(policy: &SandboxPolicy, program: &Program, tmp: &Path) -> Result<Exec, HelperError> {
        let mut envp = child_env(std::env::vars_os(), policy, tmp);
        let (path, argv, devnull) = match program {
            Program::Command(command) => {
                let bash = find_bash().ok_or_else(|| {
                    HelperError::Other(
                        "sandbox: cannot find bash in PATH or /bin/bash; install bash".to_owned(),
                    )
                })?;
                let devnull = File::open("/dev/null")
                    .map_err(step("open /dev/null for the command's stdin", "open"))?;
                let argv = vec![
                    c"bash".to_owned(),
                    c"-c".to_owned(),
                    c_text(command, "command")?,
                ];
                (bash, argv, Some(devnull.into()))
            }
            Program::Serve { argv, env } => {
                let Some(first) = argv.first() else {
                    return Err(HelperError::Other(
                        "sandbox: no program to serve".to_owned(),
                    ));
                };
                let path = find_program(first).ok_or_else(|| {
                    HelperError::Other(format!(
                        "sandbox: cannot find `{first}` (not an executable file, nor one on PATH)"
                    ))
                })?;
                for (k, v) in env {
                    envp.retain(|e| !e.as_bytes().starts_with(format!("{k}=").as_bytes()));
                    envp.push(c_text(&format!("{k}={v}"), "environment")?);
                }
                let argv = argv
                    .iter()
                    .map(|a| c_text(a, "program's arguments"))
                    .collect::<Result<_, _>>()?;
                (path, argv, None)
            }
        };
        Ok(Exec {
            program: c(&path)?,
            argv,
            envp,
            cwd: c(&policy.cwd)?,
            devnull,
        })
    }
}

/// `name` itself when it has a `/`, else the first executable `name` on `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_absolute() && is_executable(p))
}

/// The command's environment: ours without what the policy removes, with `TMPDIR`.
fn child_env(
    vars: impl Iterator<Item = (OsString, OsString)>,
    policy: &SandboxPolicy,
    tmp: &Path,
) -> Vec<CString> {
    let mut env: Vec<CString> = vars
        .filter(|(k, _)| k != "TMPDIR" && !policy.removes_env(k))
        .filter_map(|(k, v)| {
            let mut pair = k.into_vec();
            pair.push(b'=');
            pair.extend_from_slice(v.as_bytes());
            CString::new(pair).ok()
        })
        .collect();
    let mut tmpdir = b"TMPDIR=".to_vec();
    tmpdir.extend_from_slice(tmp.as_os_str().as_bytes());
    if let Ok(tmpdir) = CString::new(tmpdir) {
        env.push(tmpdir);
    }
    env
}

/// bash from `PATH`, else `/bin/bash`.
pub(crate) fn find_bash() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("bash"))
        .chain(std::iter::once(PathBuf::from("/bin/bash")))
        .find(|p| p.is_absolute() && is_executable(p))
}

/// Whether `path` is a file we may execute.
fn is_executable(path: &Path) -> bool {
    path.is_file() && rustix::fs::access(path, Access::EXEC_OK).is_ok()
}

// ---------------------------------------------------------------------------------------
// Namespaces and mounts.

/// Enters new user, mount, pid and IPC namespaces, mapping our uid and gid to themselves, and
/// makes the mount tree private.
fn enter_namespaces(private_network: bool) -> Result<(), SetupError> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    // A new IPC namespace too: System V queues, semaphores and shared memory of the
    // user's other programs would otherwise be open to the command (same uid).
    let mut flags =
        libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC;
    if private_network {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare with flag constants; the helper is single-threaded.
    if unsafe { libc::unshare(flags) } < 0 {
        return Err(SetupError::new(
            "enter new user, mount, pid and IPC namespaces",
            "unshare",
            io::Error::last_os_error(),
        ));
    }
    std::fs::write("/proc/self/setgroups", "deny").map_err(step(
        "deny setgroups in the user namespace",
        "write /proc/self/setgroups",
    ))?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1\n")).map_err(step(
        format!("map uid {uid} in the user namespace"),
        "write /proc/self/uid_map",
    ))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1\n")).map_err(step(
        format!("map gid {gid} in the user namespace"),
        "write /proc/self/gid_map",
    ))?;
    sys::make_private(c"/").map_err(step("make the mount tree private", "mount MS_PRIVATE"))?;
    if private_network {
        // Local servers a command starts (tests, dev servers) still work.
        sys::bring_up_loopback().map_err(step(
            "bring up loopback in the command's network namespace",
            "ioctl SIOCSIFFLAGS",
        ))?;
    }
    Ok(())
}

/// Whether one of the two paths contains the other.
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Creates `path` (and parents) when it is missing: a mountpoint that vanished under the
/// new `/tmp`, or a delegated directory not created yet.
fn ensure_dir(path: &Path, why: &str) -> Result<(), SetupError> {
    if path.symlink_metadata().is_ok() {
        return Ok(());
    }
    std::fs::create_dir_all(path)
        .map_err(step(format!("create {} ({why})", path.display()), "mkdir"))
}

/// Makes `path` (under `/tmp`, by now the pod's private tmp dir) a directory
/// without following a symlink in it. A command may have swapped a component
/// for a symlink (to a read-only place) or a file, which would make every later
/// command of the pod fail: a symlink there is removed (it holds nothing), any
/// other non-directory moved aside, and the directory made.
fn ensure_dir_in_tmp(path: &Path, why: &str) -> Result<(), SetupError> {
    use rustix::fs::{
        AtFlags, FileType, Mode, OFlags, mkdirat, openat, renameat, statat, unlinkat,
    };
    use std::path::Component;

    let what = || format!("create {} ({why})", path.display());
    let rel = path
        .strip_prefix("/tmp")
        .map_err(|_| SetupError::new(what(), "path", io::Error::from(Errno::INVAL)))?;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open("/tmp", flags, Mode::empty())
        .map_err(|e| SetupError::new(what(), "open", e.into()))?;
    for component in rel.components() {
        let Component::Normal(name) = component else {
            return Err(SetupError::new(what(), "path", Errno::INVAL.into()));
        };
        match openat(&dir, name, flags, Mode::empty()) {
            Ok(next) => {
                dir = next;
                continue;
            }
            Err(Errno::NOENT) => {}
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let stat = statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| SetupError::new(what(), "fstatat", e.into()))?;
                if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
                    unlinkat(&dir, name, AtFlags::empty())
                        .map_err(|e| SetupError::new(what(), "unlinkat", e.into()))?;
                } else {
                    let mut aside = name.to_os_string();
                    aside.push(format!(".moved-aside-by-pods-{}", std::process::id()));
                    renameat(&dir, name, &dir, aside.as_os_str())
                        .map_err(|e| SetupError::new(what(), "renameat", e.into()))?;
                }
            }
            Err(e) => return Err(SetupError::new(what(), "openat", e.into())),
        }
        match mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(SetupError::new(what(), "mkdirat", e.into())),
        }
        dir = openat(&dir, name, flags, Mode::empty())
            .map_err(|e| SetupError::new(what(), "openat", e.into()))?;
    }
    Ok(())
}

/// Puts a read-only copy of `path` on top of it.
fn read_only_overlay(path: &Path) -> Result<(), SetupError> {
    let cpath = c(path)?;
    let what = || format!("make {} read-only", path.display());
    let tree = sys::clone_tree(&cpath).map_err(step(what(), "open_tree"))?;
    sys::set_tree_readonly(&tree).map_err(step(what(), "mount_setattr"))?;
    sys::attach(&tree, &cpath).map_err(step(what(), "move_mount"))
}

/// Builds the command's view of the filesystem (steps 3-9 of the module docs).
fn build_view(policy: &SandboxPolicy) -> Result<(), SetupError> {
    let tmp = Path::new("/tmp");
    let tmp_tree = sys::clone_tree(&c(&policy.tmp_dir)?).map_err(step(
        format!("copy the pod's tmp dir {}", policy.tmp_dir.display()),
        "open_tree",
    ))?;

    // Writable trees, copied before anything is covered; missing paths are skipped.
    let mut writable: Vec<(PathBuf, bool, OwnedFd)> = Vec::new();
    let roots = policy
        .write_roots
        .iter()
        .map(|r| (&r.path, r.recursive))
        .chain(policy.shared.iter().map(|p| (p, true)));
    for (path, recursive) in roots {
        if path.symlink_metadata().is_err() || writable.iter().any(|(p, _, _)| p == path) {
            continue;
        }
        let tree = sys::clone_tree(&c(path)?).map_err(step(
            format!("copy {} to bind it read-write", path.display()),
            "open_tree",
        ))?;
        writable.push((path.clone(), recursive, tree));
    }
    writable.sort_by_key(|(p, _, _)| p.components().count());

    // The cwd must stay reachable even when /tmp covers it and it is not writable.
    let cwd_tree = if policy.cwd.starts_with(tmp)
        && !writable.iter().any(|(p, _, _)| policy.cwd.starts_with(p))
        && policy.cwd.is_dir()
    {
        Some(sys::clone_tree(&c(&policy.cwd)?).map_err(step(
            format!("copy the working directory {}", policy.cwd.display()),
            "open_tree",
        ))?)
    } else {
        None
    };

    sys::set_readonly(c"/").map_err(step("make / read-only", "mount_setattr"))?;
    sys::attach(&tmp_tree, c"/tmp").map_err(step(
        format!(
            "bind the pod's tmp dir {} as /tmp",
            policy.tmp_dir.display()
        ),
        "move_mount",
    ))?;

    for (path, recursive, tree) in &writable {
        if path.starts_with(tmp) {
            ensure_dir_in_tmp(path, "a mountpoint under the private /tmp")?;
        }
        sys::attach(tree, &c(path)?).map_err(step(
            format!("bind {} read-write", path.display()),
            "move_mount",
        ))?;
        if !recursive && let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    read_only_overlay(&entry.path())?;
                }
            }
        }
    }
    let cwd_bound = cwd_tree.is_some();
    if let Some(tree) = cwd_tree {
        ensure_dir_in_tmp(&policy.cwd, "the working directory under the private /tmp")?;
        let what = || {
            format!(
                "bind the working directory {} read-only",
                policy.cwd.display()
            )
        };
        sys::set_tree_readonly(&tree).map_err(step(what(), "mount_setattr"))?;
        sys::attach(&tree, &c(&policy.cwd)?).map_err(step(what(), "move_mount"))?;
    }

    // Read-only overlays matter only where something writable overlaps them.
    let writable_paths: Vec<&Path> = std::iter::once(tmp)
        .chain(writable.iter().map(|(p, _, _)| p.as_path()))
        .collect();
    let overlaps_writable = |p: &Path| writable_paths.iter().any(|w| overlaps(p, w));
    for path in &policy.delegated {
        if overlaps_writable(path) {
            if path.starts_with("/tmp") {
                ensure_dir_in_tmp(path, "a delegated directory")?;
            } else {
                ensure_dir(path, "a delegated directory")?;
            }
            read_only_overlay(path)?;
        }
    }
    for path in policy.denied.iter().chain(&policy.protected) {
        if overlaps_writable(path) && path.symlink_metadata().is_ok() {
            read_only_overlay(path)?;
        }
    }

    // Sockets are searched before anything below changes the view; the writable
    // trees hold the command's own sockets, the hidden dirs are covered whole.
    let mut skip: Vec<&Path> = writable_paths.clone();
    skip.extend(policy.hidden.iter().map(PathBuf::as_path));
    let sockets = cover::find_sockets(&policy.socket_dirs, &skip, cover::SOCKET_SEARCH_ENTRIES);
    let empty = cover::EmptySource::default();
    let covered = cover_all(policy, &writable, cwd_bound, &sockets, &empty);
    empty.finish();
    covered?;
    for dir in &policy.hidden {
        if dir.is_dir() {
            cover::cover_dir(dir, "hide the runtime dir")?;
        }
    }
    if Path::new("/dev/shm").is_dir() {
        sys::mount_fs(
            c"tmpfs",
            c"/dev/shm",
            MountFlags::NOSUID | MountFlags::NODEV,
            Some(c"mode=1777"),
        )
        .map_err(step("mount a private tmpfs on /dev/shm", "mount tmpfs"))?;
    }
    Ok(())
}

/// Covers the paths denied for reading and the sockets found (step 8, before the
/// hidden dirs), each from `empty`.
fn cover_all(
    policy: &SandboxPolicy,
    writable: &[(PathBuf, bool, OwnedFd)],
    cwd_bound: bool,
    sockets: &[PathBuf],
    empty: &cover::EmptySource,
) -> Result<(), SetupError> {
    let tmp = Path::new("/tmp");
    for rule in &policy.unreadable {
        // Under /tmp only the trees bound there (write roots, a read-only cwd) are the
        // real ones; the rest is the pod's tmp.
        let real = writable.iter().any(|(w, _, _)| rule.path.starts_with(w))
            || (cwd_bound && rule.path.starts_with(&policy.cwd));
        if rule.path.starts_with(tmp) && !real {
            continue;
        }
        cover::cover_unreadable(rule, empty)?;
    }
    for socket in sockets {
        cover::cover_file(socket, empty)?;
    }
    Ok(())
}

/// Device files a command may write (not create): the usual sinks and terminals.
const WRITABLE_DEVICES: [&str; 8] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
];

/// The Landlock ruleset: writes beneath the writable paths only.
fn landlock_rules(
    policy: &SandboxPolicy,
    tmp: &Path,
    abi: u32,
    private_shm: bool,
    deny_tcp: bool,
) -> Result<sys::Ruleset, SetupError> {
    let mut ruleset = sys::Ruleset::new(abi, deny_tcp)
        .map_err(step("create a Landlock ruleset", "landlock_create_ruleset"))?;
    let all = access::writes(abi);
    let mut dirs: Vec<&Path> = vec![tmp];
    dirs.extend(policy.write_roots.iter().map(|r| r.path.as_path()));
    dirs.extend(policy.shared.iter().map(PathBuf::as_path));
    if private_shm {
        dirs.push(Path::new("/dev/shm"));
    }
    let rules = dirs.into_iter().map(|p| (p, all)).chain(
        WRITABLE_DEVICES
            .iter()
            .map(|d| (Path::new(*d), access::FILE_RIGHTS)),
    );
    for (path, rights) in rules {
        match ruleset.allow(&c(path)?, rights) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                return Err(SetupError::new(
                    format!("allow writes beneath {} in Landlock", path.display()),
                    "landlock_add_rule",
                    e,
                ));
            }
        }
    }
    Ok(ruleset)
}

// ---------------------------------------------------------------------------------------
// The child.

/// What the forked child does once confined.
enum ChildTask<'a> {
    /// Exec the command.
    Exec(&'a Exec),
    /// Exit 0 (or [`PROBE_NO_FRESH_PROC`]): the probe.
    Probe,
}

/// A forked child, seen from the helper.
struct Child {
    pid: Pid,
    pidfd: OwnedFd,
}

/// Forks the child, lets it go, and waits until it has exec'd (or reports why not).
fn fork_child(
    task: &ChildTask<'_>,
    ruleset: Option<sys::Ruleset>,
    level: Level,
) -> Result<Child, HelperError> {
    let (go_r, go_w) = sys::pipe().map_err(step("create a pipe", "pipe2"))?;
    let (err_r, err_w) = sys::pipe().map_err(step("create a pipe", "pipe2"))?;
    // SAFETY: the helper is single-threaded, so the child may run ordinary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(
            SetupError::new("start the command", "fork", io::Error::last_os_error()).into(),
        );
    }
    if pid == 0 {
        drop(go_w);
        drop(err_r);
        let code = match child_main(task, ruleset, level, go_r) {
            Ok(code) => code,
            Err(e) => {
                let mut err = File::from(err_w);
                let _ = err.write_all(e.to_string().as_bytes());
                127
            }
        };
        // SAFETY: _exit ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(go_r);
    drop(err_w);
    // The child enforces its own copy; the helper has no use for the ruleset any more.
    drop(ruleset);
    let Some(pid) = Pid::from_raw(pid) else {
        return Err(HelperError::Other(format!(
            "sandbox: fork returned pid {pid}"
        )));
    };
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            // pid is our unreaped child, so it cannot have been reused.
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            let _ = wait_pid(pid);
            return Err(SetupError::new("watch the command", "pidfd_open", e).into());
        }
    };
    let mut go = File::from(go_w);
    // The child exits by itself if this fails (it reads end of file).
    let _ = go.write_all(&[1]);
    drop(go);
    let mut message = Vec::new();
    let _ = File::from(err_r).read_to_end(&mut message);
    if !message.is_empty() {
        let _ = wait_pid(pid);
        return Err(HelperError::Other(
            String::from_utf8_lossy(&message).into_owned(),
        ));
    }
    Ok(Child { pid, pidfd })
}

/// The child's side: confine, then exec (never returns `Ok` for [`ChildTask::Exec`]).
fn child_main(
    task: &ChildTask<'_>,
    ruleset: Option<sys::Ruleset>,
    level: Level,
    go: OwnedFd,
) -> Result<i32, SetupError> {
    sys::kill_me_when_parent_dies().map_err(step(
        "tie the command to the helper",
        "prctl PR_SET_PDEATHSIG",
    ))?;
    // The helper may have died before the line above; then the go pipe reads empty.
    let mut byte = [0u8; 1];
    if File::from(go).read(&mut byte).unwrap_or(0) == 0 {
        // SAFETY: ends the orphaned child at once.
        unsafe { libc::_exit(1) };
    }
    let mut fresh_proc = false;
    if level.uses_namespaces() {
        fresh_proc = sys::mount_fs(
            c"proc",
            c"/proc",
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None,
        )
        .is_ok();
    }
    // A new session: no controlling terminal to inject keystrokes into (TIOCSTI).
    rustix::process::setsid()
        .map_err(|e| SetupError::new("start a new session", "setsid", e.into()))?;
    sys::join_new_session_keyring().map_err(step(
        "leave the pod's session keyring",
        "keyctl KEYCTL_JOIN_SESSION_KEYRING",
    ))?;
    let cwd = match task {
        ChildTask::Exec(exec) => exec.cwd.clone(),
        ChildTask::Probe => c"/".to_owned(),
    };
    rustix::process::chdir(cwd.as_c_str()).map_err(|e| {
        SetupError::new(
            format!("enter the working directory {}", cwd.to_string_lossy()),
            "chdir",
            e.into(),
        )
    })?;
    sys::set_no_new_privs().map_err(step("set no_new_privs", "prctl PR_SET_NO_NEW_PRIVS"))?;
    if let Some(ruleset) = ruleset {
        ruleset.restrict_self().map_err(step(
            "enforce the Landlock ruleset",
            "landlock_restrict_self",
        ))?;
    }
    sys::drop_all_capabilities().map_err(step("drop capabilities", "capset"))?;
    let exec = match task {
        ChildTask::Probe => return Ok(if fresh_proc { 0 } else { PROBE_NO_FRESH_PROC }),
        ChildTask::Exec(exec) => exec,
    };
    exec_command(exec)?;
    Ok(127)
}

/// Points stdin at /dev/null and stdout at the output pipe (our stderr) for a command
/// (a served program keeps ours), restores default signal handling, and execs. Returns
/// only on failure.
fn exec_command(exec: &Exec) -> Result<Infallible, SetupError> {
    // SAFETY: dup2 on fds we hold; signal/sigprocmask with valid arguments; execve with
    // NULL-terminated arrays of valid C strings that outlive the call.
    unsafe {
        let redirect = match &exec.devnull {
            Some(devnull) => libc::dup2(devnull.as_raw_fd(), 0) < 0 || libc::dup2(2, 1) < 0,
            None => false,
        };
        if redirect {
            return Err(SetupError::new(
                "connect the command's stdin and stdout",
                "dup2",
                io::Error::last_os_error(),
            ));
        }
        // Whatever the pod leaked without close-on-exec stays out of the command.
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) < 0
        {
            return Err(SetupError::new(
                "close inherited file descriptors",
                "close_range",
                io::Error::last_os_error(),
            ));
        }
        // Rust ignores SIGPIPE in its own processes; the command must not inherit that.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let argv: Vec<*const libc::c_char> = exec
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp: Vec<*const libc::c_char> = exec
            .envp
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        libc::execve(exec.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
    }
    Err(SetupError::new(
        format!("run {}", exec.program.to_string_lossy()),
        "execve",
        io::Error::last_os_error(),
    ))
}

// ---------------------------------------------------------------------------------------
// Waiting.

/// Waits for the child to exit, killing it when stdin reaches end of file (when
/// `watch_stdin`).
fn wait_for(child: Child, watch_stdin: bool) -> Result<HelperReport, HelperError> {
    let stdin = io::stdin();
    let mut watching = watch_stdin;
    let mut cancelled = false;
    loop {
        let mut fds = [
            PollFd::new(&child.pidfd, PollFlags::IN),
            PollFd::new(&stdin, PollFlags::IN),
        ];
        // Stdin only while it can still say "stop".
        let fds = if watching {
            &mut fds[..]
        } else {
            &mut fds[..1]
        };
        match rustix::event::poll(fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => {
                // pid is our unreaped child, so it cannot have been reused.
                let _ = rustix::process::kill_process(child.pid, Signal::KILL);
                let _ = wait_pid(child.pid);
                return Err(SetupError::new("wait for the command", "poll", e.into()).into());
            }
        }
        if !fds[0].revents().is_empty() {
            break;
        }
        if watching && !fds[1].revents().is_empty() {
            let mut buf = [0u8; 512];
            // An error counts as end of file: either way the pod can no longer say "stop".
            if rustix::io::read(&stdin, &mut buf).unwrap_or(0) == 0 {
                // The pod closed our stdin (timeout, cancellation, or it died).
                let _ = rustix::process::kill_process(child.pid, Signal::KILL);
                cancelled = true;
                watching = false;
            }
        }
    }
    let status = wait_pid(child.pid).map_err(|e| {
        HelperError::Setup(SetupError::new(
            "collect the command's status",
            "waitpid",
            e,
        ))
    })?;
    Ok(if cancelled {
        HelperReport::Cancelled
    } else if let Some(signal) = status.terminating_signal() {
        HelperReport::Signaled { signal }
    } else {
        HelperReport::Exited {
            code: status.exit_status().unwrap_or(0),
        }
    })
}

/// `waitpid(pid)`, retried on EINTR.
fn wait_pid(pid: Pid) -> io::Result<WaitStatus> {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => return Ok(status),
            Ok(None) => return Err(io::Error::other("waitpid returned no status")),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Kills and reaps every descendant left over (level `landlock`: they were reparented to
/// us as the child subreaper).
fn reap_descendants() {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    // Each round kills every current child; their orphans become our children next round.
    for _ in 0..10_000 {
        let kids = children_of(me);
        for kid in kids.iter().filter_map(|k| Pid::from_raw(*k)) {
            // Each is our unreaped child (a zombie at worst), so not reused.
            let _ = rustix::process::kill_process(kid, Signal::KILL);
        }
        let flags = if kids.is_empty() {
            WaitOptions::NOHANG
        } else {
            WaitOptions::empty()
        };
        match rustix::process::wait(flags) {
            Err(Errno::INTR) => continue,
            Err(_) => return, // ECHILD: nothing left.
            Ok(Some(_)) => {}
            Ok(None) => {
                // Children exist that the listing missed (just forked): look again.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

/// The pids whose parent is `pid`.
fn children_of(pid: libc::pid_t) -> Vec<libc::pid_t> {
    if let Ok(text) = std::fs::read_to_string(format!("/proc/self/task/{pid}/children")) {
        return text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|p| parent_of(*p) == Some(pid))
        .collect()
}

/// The parent pid of `pid`, from `/proc/<pid>/stat` (field 4, after the command name).
fn parent_of(pid: libc::pid_t) -> Option<libc::pid_t> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_reports_round_trip() {
        let request = HelperRequest::Run {
            level: Level::Full,
            policy: Box::new(SandboxPolicy {
                cwd: "/w".into(),
                tmp_dir: "/t".into(),
                ..SandboxPolicy::default()
            }),
            command: "echo hi".into(),
        };
        let line = request.to_line().unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let back: HelperRequest = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, request);
        assert_eq!(
            String::from_utf8(HelperRequest::probe().to_line().unwrap()).unwrap(),
            "{\"mode\":\"probe\"}\n"
        );

        let text = "noise\n{\"report\":\"exited\",\"code\":3}\n\n";
        assert_eq!(
            HelperReport::parse_last(text),
            Some(HelperReport::Exited { code: 3 })
        );
        assert_eq!(HelperReport::parse_last(""), None);
        assert_eq!(HelperReport::Signaled { signal: 9 }.exit_code(), 137);
        assert_eq!(HelperReport::Cancelled.exit_code(), 137);
        assert_eq!(
            HelperReport::SetupFailed {
                message: String::new()
            }
            .exit_code(),
            EXIT_SETUP_FAILED
        );
    }

    #[test]
    fn child_env_scrubs_keys_and_sets_tmpdir() {
        let policy = SandboxPolicy {
            env_remove: vec!["SECRET".into()],
            ..SandboxPolicy::default()
        };
        let vars = [
            ("PATH", "/usr/bin"),
            ("OPENAI_API_KEY", "sk"),
            ("X_API_KEY", "x"),
            ("SECRET", "s"),
            ("TMPDIR", "/elsewhere"),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env: Vec<String> = child_env(vars, &policy, Path::new("/tmp"))
            .into_iter()
            .map(|c| c.into_string().unwrap())
            .collect();
        assert_eq!(env, vec!["PATH=/usr/bin", "TMPDIR=/tmp"]);
    }

    #[test]
    fn overlap_is_containment_either_way() {
        assert!(overlaps(Path::new("/a/b"), Path::new("/a")));
        assert!(overlaps(Path::new("/a"), Path::new("/a/b")));
        assert!(!overlaps(Path::new("/a/bc"), Path::new("/a/b")));
    }

    #[test]
    fn parent_of_reads_proc() {
        // SAFETY: getpid/getppid cannot fail.
        let (me, parent) = unsafe { (libc::getpid(), libc::getppid()) };
        assert_eq!(parent_of(me), Some(parent));
    }

    #[test]
    fn bash_is_found() {
        let bash = find_bash().unwrap();
        assert!(
            bash.is_absolute() && bash.ends_with("bash"),
            "{}",
            bash.display()
        );
    }
}
