//! Which enforcement level this host supports, found by trying: the helper is started in
//! probe mode and performs the real namespace and mount steps, and the Landlock ABI is
//! asked of the kernel. Never by reading sysctls, which lie in containers.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::HelperCommand;
use super::helper::{HelperReport, HelperRequest};
use super::sys;

/// How long the probe helper may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How strongly commands are confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Nothing works: commands cannot be confined.
    None,
    /// Landlock alone (no user namespaces): writes outside the scope are refused, with
    /// the gaps listed in the report.
    Landlock,
    /// User, mount, pid and IPC namespaces without Landlock (old kernel or Landlock disabled).
    Namespaces,
    /// Namespaces and Landlock: the whole of architecture rule 5.
    Full,
}

impl Level {
    /// The name shown by `pod doctor` and in greetings.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Landlock => "landlock",
            Level::Namespaces => "namespaces",
            Level::Full => "full",
        }
    }

    /// Whether this level uses user, mount, pid and IPC namespaces.
    pub(crate) fn uses_namespaces(self) -> bool {
        matches!(self, Level::Full | Level::Namespaces)
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`detect`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    /// The strongest level that works here.
    pub level: Level,
    /// The Landlock ABI version, when Landlock is available.
    pub landlock_abi: Option<u32>,
    /// What the level does not cover, one sentence each.
    pub gaps: Vec<String>,
    /// How it was found: what worked and what failed, with errors.
    pub detail: String,
}

/// Why a probe found a mechanism unusable (the text `pod doctor` shows in the detail).
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    /// The kernel refused the Landlock version query.
    #[error("{}", sys::errno_text(.0))]
    Landlock(#[source] io::Error),
    /// The probe request cannot be encoded.
    #[error("cannot encode the probe request: {0}")]
    Encode(#[source] serde_json::Error),
    /// The helper cannot be started.
    #[error("cannot start the helper {}: {}", program.display(), sys::errno_text(.source))]
    Spawn {
        /// The helper binary.
        program: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The helper did not finish in time (it was killed).
    #[error("the probe helper did not finish within {} s", PROBE_TIMEOUT.as_secs())]
    Timeout,
    /// Waiting for the helper failed.
    #[error("cannot wait for the probe helper: {0}")]
    Wait(#[source] io::Error),
    /// The helper reports that a setup step failed (its message, verbatim).
    #[error("{0}")]
    Setup(String),
    /// The helper answered something other than a probe report.
    #[error("unexpected probe answer {0:?}")]
    Unexpected(HelperReport),
    /// The helper printed no report.
    #[error("the probe helper {} gave no answer ({status}); is it a pod binary?", program.display())]
    NoAnswer {
        /// The helper binary.
        program: PathBuf,
        /// How it exited.
        status: ExitStatus,
    },
}

/// The gaps of Landlock without namespaces (architecture rule 5).
const LANDLOCK_ONLY_GAPS: [&str; 5] = [
    "chmod, chown and utimes on files outside the scope are not refused (Landlock does not cover metadata)",
    "Unix sockets can be connected to, including pod sockets in the runtime dir (nothing can be hidden)",
    "deny holes: delegated, denied and protected paths inside a write root stay writable by commands, and paths denied for reading stay readable (Landlock cannot subtract from a rule)",
    "non-recursive write rules become recursive for commands",
    "the user keyring (@u) stays reachable (it is per user namespace)",
];

/// Combines the probe results into a report.
fn report_from(
    abi: Result<u32, ProbeError>,
    namespaces: Result<bool, ProbeError>,
) -> SandboxReport {
    let abi_ok = abi.as_ref().ok().copied().filter(|v| *v >= 1);
    let mut gaps: Vec<String> = Vec::new();
    let level = match (&namespaces, abi_ok) {
        (Ok(_), Some(_)) => Level::Full,
        (Ok(_), None) => Level::Namespaces,
        (Err(_), Some(_)) => Level::Landlock,
        (Err(_), None) => Level::None,
    };
    match level {
        Level::Landlock => gaps.extend(LANDLOCK_ONLY_GAPS.iter().map(|g| g.to_string())),
        Level::Namespaces => {
            gaps.push("abstract Unix sockets (outside the runtime dir) can be connected to".into());
            gaps.push(
                "when pods run as root, device files such as /dev/sda stay writable (no Landlock)"
                    .into(),
            );
        }
        Level::Full | Level::None => {}
    }
    if let Some(v) = abi_ok
        && v < 6
    {
        gaps.push(format!(
            "Landlock ABI {v} < 6: abstract Unix sockets{} are not scoped",
            if level == Level::Landlock {
                " and signals"
            } else {
                ""
            }
        ));
    }
    if level.uses_namespaces() {
        gaps.push(
            "Unix sockets outside /run, $XDG_RUNTIME_DIR and ~/.docker stay connectable; those in them are covered when a command starts (the first 20,000 entries searched), not ones created while it runs"
                .into(),
        );
        gaps.push(
            "where /dev/mqueue is mounted, the POSIX message queues of the user's other programs stay reachable through it"
                .into(),
        );
    }
    if level == Level::Landlock {
        gaps.push(
            "background processes survive if the pod is killed with SIGKILL while the command runs"
                .into(),
        );
    }
    let abi_text = match &abi {
        Ok(v) => format!("Landlock ABI {v}"),
        Err(e) => format!("Landlock unavailable: {e}"),
    };
    let ns_text = match &namespaces {
        Ok(true) => "user, mount, pid and IPC namespaces work (fresh /proc)".to_owned(),
        Ok(false) => {
            "user, mount, pid and IPC namespaces work (no fresh /proc: the host's stays)".to_owned()
        }
        Err(e) => format!("namespaces unavailable: {e}"),
    };
    SandboxReport {
        level,
        landlock_abi: abi_ok,
        gaps,
        detail: format!("{ns_text}; {abi_text}"),
    }
}

/// Probes the host now (no cache): asks the kernel for the Landlock ABI and runs the
/// helper in probe mode, which performs the namespace and mount steps of a real command.
/// Blocks for as long as the probe takes (a few milliseconds, at most 10 s).
pub fn probe(helper: &HelperCommand) -> SandboxReport {
    let abi = sys::landlock_abi().map_err(ProbeError::Landlock);
    let namespaces = probe_namespaces(helper);
    report_from(abi, namespaces)
}

/// Reports of earlier probes, per helper.
static CACHE: Mutex<Vec<(HelperCommand, Arc<SandboxReport>)>> = Mutex::new(Vec::new());

/// The host's level, probed once per process and helper (see [`probe`]); later calls
/// return the cached report. Blocks on the first call.
pub fn detect(helper: &HelperCommand) -> Arc<SandboxReport> {
    if let Some(report) = cached(helper) {
        return report;
    }
    let report = Arc::new(probe(helper));
    if let Ok(mut cache) = CACHE.lock() {
        if let Some((_, earlier)) = cache.iter().find(|(h, _)| h == helper) {
            return earlier.clone();
        }
        cache.push((helper.clone(), report.clone()));
    }
    report
}

/// The cached report for `helper`, if it was probed already (never blocks on a probe).
pub(crate) fn cached(helper: &HelperCommand) -> Option<Arc<SandboxReport>> {
    let cache = CACHE.lock().ok()?;
    cache
        .iter()
        .find(|(h, _)| h == helper)
        .map(|(_, report)| report.clone())
}

/// Runs the helper in probe mode; `Ok(fresh_proc)` when the namespaces work.
fn probe_namespaces(helper: &HelperCommand) -> Result<bool, ProbeError> {
    let request = HelperRequest::probe()
        .to_line()
        .map_err(ProbeError::Encode)?;
    let mut child = helper
        .std_command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| ProbeError::Spawn {
            program: helper.program().to_path_buf(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that fails early closes its stdin; its report says why.
        let _ = stdin.write_all(&request);
    }
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProbeError::Timeout);
            }
            Err(e) => return Err(ProbeError::Wait(e)),
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    match HelperReport::parse_last(&out) {
        Some(HelperReport::Probe { fresh_proc }) => Ok(fresh_proc),
        Some(HelperReport::SetupFailed { message }) => Err(ProbeError::Setup(message)),
        Some(other) => Err(ProbeError::Unexpected(other)),
        None => Err(ProbeError::NoAnswer {
            program: helper.program().to_path_buf(),
            status,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_what_works() {
        let full = report_from(Ok(7), Ok(true));
        assert_eq!(full.level, Level::Full);
        assert_eq!(full.landlock_abi, Some(7));
        assert!(full.gaps.iter().all(|g| !g.contains("deny holes")));
        assert!(full.detail.contains("Landlock ABI 7"), "{}", full.detail);

        let old = report_from(Ok(3), Ok(false));
        assert_eq!(old.level, Level::Full);
        assert!(
            old.gaps.iter().any(|g| g.contains("ABI 3 < 6")),
            "{:?}",
            old.gaps
        );
        assert!(old.detail.contains("no fresh /proc"), "{}", old.detail);

        let ll = report_from(Ok(6), Err(ProbeError::Setup("unshare: EPERM".into())));
        assert_eq!(ll.level, Level::Landlock);
        for gap in ["chmod", "Unix sockets", "deny holes", "non-recursive"] {
            assert!(
                ll.gaps.iter().any(|g| g.contains(gap)),
                "{gap}: {:?}",
                ll.gaps
            );
        }
        assert!(ll.detail.contains("unshare: EPERM"), "{}", ll.detail);

        let enosys = || ProbeError::Landlock(io::Error::from_raw_os_error(libc::ENOSYS));
        let ns = report_from(Err(enosys()), Ok(true));
        assert_eq!(ns.level, Level::Namespaces);
        assert_eq!(ns.landlock_abi, None);

        let none = report_from(Err(enosys()), Err(ProbeError::Setup("EPERM".into())));
        assert_eq!(none.level, Level::None);
        assert!(none.detail.contains("ENOSYS") && none.detail.contains("EPERM"));
    }

    #[test]
    fn levels_are_ordered_by_strength() {
        assert!(Level::None < Level::Landlock);
        assert!(Level::Landlock < Level::Namespaces);
        assert!(Level::Namespaces < Level::Full);
        assert_eq!(Level::Full.to_string(), "full");
    }

    #[test]
    fn a_missing_helper_leaves_landlock_at_most() {
        let report = probe(&HelperCommand::new("/nonexistent/pod", ["__sandbox-exec"]));
        assert!(report.level <= Level::Landlock, "{report:?}");
        assert!(
            report.detail.contains("cannot start the helper"),
            "{}",
            report.detail
        );
    }
}
