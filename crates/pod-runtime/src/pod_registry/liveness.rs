//! Who a pod process is and whether it still runs: the identity recorded in its registry
//! entry (pid, start time, host, boot id), fresh instance ids, and the liveness probe that
//! [`super::reclaim_stale`] relies on.
//!
//! A pod is alive exactly while someone holds an `flock` on `<runtime>/<full name>/lock`
//! (ARCHITECTURE.md rule 6). The pid, start time and boot id are the fallback for a pod
//! whose lock file is missing, and they tell a pod's earlier incarnation (same full name,
//! process gone) from the pod holding the name now.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::RegistryError;
use super::document::PodEntry;

/// The facts that identify one process across pid reuse and reboots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// Process id, as seen in the registry owner's pid namespace.
    pub pid: u32,
    /// Start time in clock ticks after boot (`/proc/<pid>/stat` field 22); a reused pid
    /// gets a different one.
    pub(crate) start_time: u64,
    /// Host name (`/proc/sys/kernel/hostname`), for people reading the registry.
    pub host: String,
    /// Boot id (`/proc/sys/kernel/random/boot_id`); no process outlives its boot.
    pub boot_id: String,
}

impl ProcessIdentity {
    /// The identity of the calling process.
    pub fn current() -> Result<Self, RegistryError> {
        Self::of(std::process::id())
    }

    /// The identity of a running process by pid (e.g. a child the caller just spawned).
    pub fn of(pid: u32) -> Result<Self, RegistryError> {
        let start_time = process_start_time(pid).map_err(|source| RegistryError::Identity {
            what: format!("the start time of pid {pid}"),
            source,
        })?;
        let facts = HostFacts::current()?;
        Ok(ProcessIdentity {
            pid,
            start_time,
            host: facts.host,
            boot_id: facts.boot_id,
        })
    }
}

/// This machine's host name and boot id, read once per registry operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostFacts {
    pub(crate) host: String,
    pub(crate) boot_id: String,
}

impl HostFacts {
    pub(crate) fn current() -> Result<Self, RegistryError> {
        let read = |path: &str, what: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|source| RegistryError::Identity {
                    what: format!("{what} ({path})"),
                    source,
                })
        };
        Ok(HostFacts {
            host: read("/proc/sys/kernel/hostname", "the host name")?,
            boot_id: read("/proc/sys/kernel/random/boot_id", "the boot id")?,
        })
    }
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat`.
pub(crate) fn process_start_time(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected format of /proc/{pid}/stat"),
        )
    })
}

/// Parses `starttime` out of a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may itself contain spaces and `)`, so fields are counted from the last
/// `)`: field 3 is the first after it, field 22 the twentieth.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// A fresh random (version 4) UUID in its usual text form, for instance ids.
pub fn new_instance_id() -> Result<String, RegistryError> {
    let mut bytes = [0u8; 16];
    sys::fill_random(&mut bytes).map_err(|source| RegistryError::Identity {
        what: "random bytes for an instance id (getrandom)".into(),
        source,
    })?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex = sys::hex(&bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// What a probe of a pod's lock file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockProbe {
    /// Someone holds an flock on it: the pod is alive.
    Held,
    /// It exists and nobody holds it: the pod is gone.
    Free,
    /// There is no lock file.
    Missing,
}

/// Tests whether anyone holds an flock on `path`, without waiting: an exclusive
/// non-blocking attempt on a fresh open file description, released at once if it
/// succeeds. Our own lock on the same file (a different description) counts as held.
pub(crate) fn probe_lock(path: &Path) -> io::Result<LockProbe> {
    let file: File = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LockProbe::Missing),
        Err(e) => return Err(e),
    };
    loop {
        match file.try_lock() {
            // Dropping the file closes the descriptor and releases the lock at once.
            Ok(()) => return Ok(LockProbe::Free),
            Err(std::fs::TryLockError::WouldBlock) => return Ok(LockProbe::Held),
            Err(std::fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Why an entry's pod counts as gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeathReason {
    /// Its lock file exists and nobody holds it.
    LockReleased,
    /// It was recorded during another boot.
    OtherBoot,
    /// No lock file, and no process with its pid is running.
    ProcessGone,
    /// No lock file, and its pid now belongs to a younger process.
    PidReused,
    /// A new pod with the same full name holds the name now and its process is gone.
    Superseded,
    /// It was already suspended and no descendant of it is left.
    NoDescendantsLeft,
}

impl fmt::Display for DeathReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeathReason::LockReleased => "its lock is no longer held",
            DeathReason::OtherBoot => "it was recorded before the last reboot",
            DeathReason::ProcessGone => "its lock file is missing and its process is gone",
            DeathReason::PidReused => {
                "its lock file is missing and its pid now belongs to another process"
            }
            DeathReason::Superseded => "a new pod with the same name replaced it",
            DeathReason::NoDescendantsLeft => "it was suspended and its last child pod is gone",
        })
    }
}

/// The verdict of a liveness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The pod runs.
    Alive,
    /// The pod is gone, and why.
    Dead(DeathReason),
}

/// Judges whether an entry's pod is alive, as rule 6 defines it: the lock file decides
/// when it exists (a probe that cannot open it falls back to the pid); without one, the
/// pid must still belong to a process with the recorded start time. An entry from another
/// boot is dead either way.
pub(crate) fn judge(entry: &PodEntry, runtime_dir: &Path, here: &HostFacts) -> Verdict {
    if entry.boot_id != here.boot_id {
        return Verdict::Dead(DeathReason::OtherBoot);
    }
    match probe_lock(&runtime_dir.join(&entry.full_name).join("lock")) {
        Ok(LockProbe::Held) => Verdict::Alive,
        Ok(LockProbe::Free) => Verdict::Dead(DeathReason::LockReleased),
        Ok(LockProbe::Missing) | Err(_) => judge_by_pid(entry),
    }
}

/// The fallback check: is the recorded pid still the recorded process?
pub(crate) fn judge_by_pid(entry: &PodEntry) -> Verdict {
    match process_start_time(entry.pid) {
        Ok(start) if start == entry.start_time => Verdict::Alive,
        Ok(_) => Verdict::Dead(DeathReason::PidReused),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Verdict::Dead(DeathReason::ProcessGone),
        // Unreadable (e.g. hidepid): we cannot tell, so keep the entry.
        Err(_) => Verdict::Alive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let stat = "4242 (we) ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("4242 (x) S 1"), None);
        assert_eq!(parse_start_time("no parenthesis"), None);
    }

    #[test]
    fn own_identity_is_readable_and_stable() {
        let a = ProcessIdentity::current().unwrap();
        let b = ProcessIdentity::current().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.pid, std::process::id());
        assert_eq!(a.boot_id.len(), 36, "{a:?}");
    }

    #[test]
    fn instance_ids_are_v4_uuids_and_differ() {
        let a = new_instance_id().unwrap();
        let b = new_instance_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(
            matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "{a}"
        );
    }

    #[test]
    fn probe_sees_missing_free_and_held_locks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        assert_eq!(probe_lock(&path).unwrap(), LockProbe::Missing);
        let file = File::create(&path).unwrap();
        assert_eq!(probe_lock(&path).unwrap(), LockProbe::Free);
        file.try_lock().unwrap();
        assert_eq!(probe_lock(&path).unwrap(), LockProbe::Held);
        drop(file);
        assert_eq!(probe_lock(&path).unwrap(), LockProbe::Free);
    }
}
