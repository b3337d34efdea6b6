//! The scope registry: one file per runtime dir (`<runtime>/pods.json`, i.e. per user)
//! recording every pod that runs and the write rules it was granted, so that no two pods
//! write the same directory.
//!
//! - [`LockFileGuard`] holds the registry's lock (`pods.json.lock`, never the data file)
//!   and reads and writes the document crash-safely ([`document`]).
//! - A top-level pod claims its write rules ([`LockFileGuard::claim`]); a claim that
//!   overlaps another pod's rules — by canonical path or by directory identity, so `..`,
//!   symlinks and bind mounts do not get around it (`overlap`) — is refused naming the
//!   holder.
//! - A pod delegates a subtree to a child ([`LockFileGuard::delegate`]), and gets it back
//!   when the child is released or found dead ([`LockFileGuard::release`],
//!   [`reclaim_stale`]); see [`grants`] for the rules.
//! - A pod is alive while it holds the flock on `<runtime>/<full name>/lock`
//!   ([`liveness`]). A dead pod with live descendants stays as `suspended`.
//!
//! Every function here is synchronous and may wait up to the lock timeout (5 s by
//! default): call it from async code through `tokio::task::spawn_blocking`. Only
//! [`default_registry_path`] reads the process environment (and a save, the chaos
//! test's failpoint [`lock::FAILPOINT_VAR`]); everything else takes paths.
//!
//! What conflicts: two write rules conflict when the sets of paths they cover meet. A
//! recursive rule covers its root and everything below; a non-recursive rule covers its
//! directory and that directory's direct children (as `manifest::Scope` reads it). So
//! two recursive roots conflict when equal or one is an ancestor of the other; a
//! non-recursive `D` conflicts with a non-recursive rule on `D`, on its parent or on a
//! direct child, and with a recursive root at `D`, above `D`, or directly inside `D`
//! (which the non-recursive rule could rename or remove). Read rules never conflict and
//! are not stored. Comparison is on canonical paths and on the (device, inode) of every
//! existing directory along both roots, plus mount points inside a recursive root; a
//! mount inside one root whose source lies strictly inside (not above) another root is
//! not detected.
//!
//! A pod must take its own lock (`<runtime>/<full name>/lock`) before it claims or is
//! delegated to: a registered pod whose lock file exists but is not held counts as dead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use manifest::ScopeRule;

use crate::dir::{DIR_VARS, DirEnv, DirError, Places, current_uid};

pub mod document;
pub mod grants;
pub mod health;
pub mod liveness;
pub mod lock;
mod overlap;

pub use document::{PodEntry, PodState, REGISTRY_VERSION, Registry};
pub use grants::{RebuildReport, ReclaimReport, ReclaimedPod, ReleaseOutcome};
pub use liveness::{DeathReason, ProcessIdentity, Verdict, new_instance_id};
pub use lock::{DEFAULT_LOCK_TIMEOUT, LockFileGuard, LockHolder, LockOptions};

use document::PodState as State;
use liveness::{HostFacts, judge, judge_by_pid};

/// The registry's file name inside the runtime dir.
pub(crate) const REGISTRY_FILE_NAME: &str = "pods.json";

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The runtime dir could not be located or is unsafe.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// The registry path has no parent directory or is relative.
    #[error("{} is not a usable registry path: it must be an absolute path to a file in the runtime dir", .0.display())]
    BadRegistryPath(PathBuf),
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `rename the new registry onto`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The lock file is on a network filesystem, where flock cannot be trusted.
    #[error(
        "refusing the registry lock {}: it is on a network filesystem ({fs}), where flock is unreliable; set POD_RUNTIME_DIR to a local directory",
        path.display()
    )]
    NetworkFilesystem {
        /// The lock file.
        path: PathBuf,
        /// The filesystem's name.
        fs: &'static str,
    },
    /// Another process held the lock for the whole timeout.
    #[error(
        "registry lock {} held by {} for more than {}; if that process is stuck, stop it and retry",
        path.display(),
        holder.as_ref().map_or_else(|| "another process".to_owned(), ToString::to_string),
        human_duration(*waited)
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// Who held it when we gave up, if known.
        holder: Option<LockHolder>,
    },
    /// The registry file does not parse. It is left untouched.
    #[error(
        "registry {} is corrupt at line {line}, column {column}: {message}; it was left as it is: run `pod doctor --repair` to rebuild it from the running pods",
        path.display()
    )]
    Corrupt {
        /// The registry file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// The registry was written by a newer pods with another format.
    #[error(
        "registry {} has format version {found}, this pod understands version {REGISTRY_VERSION}; upgrade pods, or stop the newer pods and run `pod doctor --repair`",
        path.display()
    )]
    UnsupportedVersion {
        /// The registry file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// The document could not be encoded (should not happen).
    #[error("cannot encode the registry: {0}")]
    Encode(String),
    /// A fact about a process or this machine could not be read from `/proc`.
    #[error("cannot read {what}: {source}")]
    Identity {
        /// What was being read.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An entry that cannot be registered as given.
    #[error("cannot register pod \"{full_name}\": {reason}")]
    InvalidEntry {
        /// Its full name.
        full_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A rule that cannot be registered as given.
    #[error("cannot register rule {rule}: {reason}")]
    InvalidRule {
        /// The rule.
        rule: ScopeRule,
        /// What is wrong.
        reason: String,
    },
    /// The requested write scope overlaps one held by another pod.
    #[error("{}", conflict_message(requested, held, holder, *holder_pid, *holder_state, *via_alias))]
    ScopeConflict {
        /// The requested root (canonical).
        requested: PathBuf,
        /// The holder's root it overlaps (canonical).
        held: PathBuf,
        /// The holder's full name.
        holder: String,
        /// The holder's pid.
        holder_pid: u32,
        /// Whether the holder runs or is kept for its child pods.
        holder_state: PodState,
        /// True when only directory identities show the overlap (a bind mount or other
        /// alias), not the paths.
        via_alias: bool,
    },
    /// Another registered pod has this full name.
    #[error(
        "pod name \"{full_name}\" is taken by a registered pod (pid {pid}); choose another name or stop that pod"
    )]
    NameInUse {
        /// The full name.
        full_name: String,
        /// The pid of the pod holding it.
        pid: u32,
    },
    /// Another entry has this instance id.
    #[error("instance id {instance_id} is already registered; generate a fresh one")]
    DuplicateInstance {
        /// The instance id.
        instance_id: String,
    },
    /// No entry has this instance id.
    #[error(
        "no pod with instance id {instance_id} is registered; it may have stopped and been reclaimed"
    )]
    UnknownPod {
        /// The instance id asked for.
        instance_id: String,
    },
    /// A suspended pod (its process is gone) was asked to delegate.
    #[error(
        "pod \"{parent}\" is suspended (its process is gone), so it cannot delegate; restart it first"
    )]
    ParentSuspended {
        /// The parent's full name.
        parent: String,
    },
    /// Only recursive write rules can be delegated.
    #[error(
        "cannot delegate {rule}: only recursive write rules are delegated; make it `recursive = true`, `permission = \"write\"`"
    )]
    NotDelegable {
        /// The rule as given.
        rule: ScopeRule,
    },
    /// A delegation outside what the parent may write.
    #[error(
        "cannot delegate {} from pod \"{parent}\": it is not inside that pod's recursive write rules ({parent_scope}); delegate a directory it writes",
        grant.display()
    )]
    OutsideParentScope {
        /// The requested root (canonical).
        grant: PathBuf,
        /// The parent's full name.
        parent: String,
        /// The parent's write rules.
        parent_scope: String,
    },
    /// A delegation overlapping one the parent already made.
    #[error(
        "cannot delegate {}: it overlaps {}, already delegated{}; stop that child pod first or choose a disjoint directory",
        grant.display(),
        existing.display(),
        holder.as_ref().map(|h| format!(" to pod \"{h}\"")).unwrap_or_default()
    )]
    AlreadyDelegated {
        /// The requested root (canonical).
        grant: PathBuf,
        /// The delegated root it overlaps.
        existing: PathBuf,
        /// The child pod holding that root, if known.
        holder: Option<String>,
    },
}

/// `5 s`, `250 ms`.
fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

impl RegistryError {
    /// The error as a starting pod reports it: a scope conflict with what to
    /// do about it, anything else as it is (a hint about `--scope` would mislead).
    pub fn with_hint(&self) -> String {
        match self {
            RegistryError::ScopeConflict { .. } => format!(
                "{self} (start the pod with --scope on a part of the tree no other pod writes)"
            ),
            _ => self.to_string(),
        }
    }
}

/// The message of [`RegistryError::ScopeConflict`]: what is taken, by whom, what to do.
fn conflict_message(
    requested: &Path,
    held: &Path,
    holder: &str,
    pid: u32,
    state: PodState,
    via_alias: bool,
) -> String {
    let (who, remedy) = match state {
        State::Live => (
            format!("pod \"{holder}\" (pid {pid})"),
            format!("stop \"{holder}\""),
        ),
        State::Suspended => (
            format!("pod \"{holder}\" (pid {pid}, suspended while its child pods run)"),
            format!("stop the child pods of \"{holder}\""),
        ),
    };
    let what = if requested == held && !via_alias {
        format!("{} is already written by {who}", requested.display())
    } else {
        let alias = if via_alias {
            " (the same directory through a bind mount or another alias)"
        } else {
            ""
        };
        format!(
            "{} overlaps {}{alias}, which {who} writes",
            requested.display(),
            held.display()
        )
    };
    format!("scope conflict: {what}; choose another path or {remedy}")
}

/// The registry path of this user: `<runtime dir>/pods.json`, the runtime dir resolved
/// from the process environment (`POD_RUNTIME_DIR`, `XDG_RUNTIME_DIR`, `/tmp/pods-$UID`).
pub fn default_registry_path() -> Result<PathBuf, RegistryError> {
    let places = match Places::resolve(&DirEnv::from_process()) {
        Ok(places) => places,
        // Only the state, config and model places need HOME, never the runtime dir: a
        // process without HOME still finds the registry.
        Err(DirError::NoHome(_)) => {
            let vars: Vec<(&str, String)> = DIR_VARS
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v)))
                .collect();
            let pairs = vars
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .chain([("HOME", "/")]);
            Places::resolve(&DirEnv::from_pairs(current_uid(), pairs))?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(registry_path_in(&places.runtime))
}

/// The registry path inside an explicit runtime dir.
pub fn registry_path_in(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(REGISTRY_FILE_NAME)
}

/// Drops the entries of pods that are gone and returns their grants up the tree (a dead
/// pod with live descendants is kept as suspended). Best-effort: a failure (corrupt file,
/// I/O) is reported in [`ReclaimReport::failure`] and changes nothing.
pub fn reclaim_stale(guard: &mut LockFileGuard) -> ReclaimReport {
    match try_reclaim_stale(guard) {
        Ok(report) => report,
        Err(e) => ReclaimReport {
            failure: Some(e),
            ..ReclaimReport::default()
        },
    }
}

/// [`reclaim_stale`] with its failure as an error.
pub(crate) fn try_reclaim_stale(guard: &mut LockFileGuard) -> Result<ReclaimReport, RegistryError> {
    reclaimed_registry(guard).map(|(_, report)| report)
}

/// Reclaims stale entries (saving only when something changed) and returns the
/// registry as saved, so a caller that reads it next needs no second load.
pub fn reclaimed_registry(
    guard: &mut LockFileGuard,
) -> Result<(Registry, ReclaimReport), RegistryError> {
    let mut registry = guard.load()?;
    let before = registry.clone();
    let here = HostFacts::current()?;
    let runtime = guard.runtime_dir().to_path_buf();
    let report = registry.reclaim(|entry| judge(entry, &runtime, &here));
    if registry != before {
        guard.save(&registry)?;
    }
    Ok((registry, report))
}

impl LockFileGuard {
    /// Reclaims stale entries (as [`reclaim_stale`]; an earlier incarnation of `name`
    /// whose process is gone counts as stale even while the new one holds the name's
    /// lock), then lets `change` edit the registry, then saves it if `change` succeeded.
    fn reclaim_then<T>(
        &mut self,
        name: &str,
        instance: &str,
        change: impl FnOnce(&mut Registry) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut registry = self.load()?;
        let here = HostFacts::current()?;
        let runtime = self.runtime_dir().to_path_buf();
        // A registry file deleted or rebuilt while pods run would let a claim
        // overlap them: each running pod holds its lock and records its grant
        // in its status file, so they are put back before anything is decided.
        health::restore_unlisted(&mut registry, &runtime, name);
        registry.reclaim(|entry| {
            let earlier_self = entry.full_name == name && entry.instance_id != instance;
            match judge(entry, &runtime, &here) {
                Verdict::Alive if earlier_self && judge_by_pid(entry) != Verdict::Alive => {
                    Verdict::Dead(DeathReason::Superseded)
                }
                verdict => verdict,
            }
        });
        let out = change(&mut registry)?;
        self.save(&registry)?;
        Ok(out)
    }

    /// Registers top-level pod `entry` with its write rules after reclaiming stale
    /// entries; refuses an overlap with another pod's rules
    /// ([`RegistryError::ScopeConflict`] names the holder). See [`Registry::claim`].
    pub fn claim(&mut self, entry: PodEntry) -> Result<(), RegistryError> {
        let (name, id) = (entry.full_name.clone(), entry.instance_id.clone());
        self.reclaim_then(&name, &id, |registry| registry.claim(entry))
    }

    /// Moves `grants` from pod `parent_instance` to the new child pod `child`. See
    /// [`Registry::delegate`].
    pub fn delegate(
        &mut self,
        parent_instance: &str,
        child: PodEntry,
        grants: &[ScopeRule],
    ) -> Result<(), RegistryError> {
        let (name, id) = (child.full_name.clone(), child.instance_id.clone());
        self.reclaim_then(&name, &id, |registry| {
            registry.delegate(parent_instance, child, grants)
        })
    }

    /// Removes pod `instance` and returns its grant to its parent (or keeps it suspended
    /// while its children run). See [`Registry::release`].
    pub fn release(&mut self, instance: &str) -> Result<ReleaseOutcome, RegistryError> {
        let mut registry = self.load()?;
        let outcome = registry.release(instance)?;
        self.save(&registry)?;
        Ok(outcome)
    }

    /// Records that pod `instance` now runs as the process `identity` with its socket
    /// at `socket`, and is live: for a child started after its grant was reserved,
    /// and for a restored pod taking its suspended entry (and its children) back.
    pub fn adopt(
        &mut self,
        instance: &str,
        identity: ProcessIdentity,
        socket: &Path,
    ) -> Result<(), RegistryError> {
        let mut registry = self.load()?;
        let Some(entry) = registry.pods.iter_mut().find(|p| p.instance_id == instance) else {
            return Err(RegistryError::UnknownPod {
                instance_id: instance.to_owned(),
            });
        };
        entry.pid = identity.pid;
        entry.start_time = identity.start_time;
        entry.host = identity.host;
        entry.boot_id = identity.boot_id;
        entry.socket_path = socket.to_path_buf();
        entry.state = PodState::Live;
        self.save(&registry)
    }

    /// Replaces the registry — even a corrupt one, without reading it — with one rebuilt
    /// from the entries of the pods that run. See [`Registry::rebuild`].
    pub fn rebuild(&mut self, live: Vec<PodEntry>) -> Result<RebuildReport, RegistryError> {
        let (registry, report) = Registry::rebuild(live);
        self.save(&registry)?;
        Ok(report)
    }
}

#[cfg(test)]
mod hint_tests {
    use super::*;

    #[test]
    fn only_a_scope_conflict_gets_the_scope_hint() {
        let conflict = RegistryError::ScopeConflict {
            requested: PathBuf::from("/w/a"),
            held: PathBuf::from("/w"),
            holder: "ra".into(),
            holder_pid: 7,
            holder_state: PodState::Live,
            via_alias: false,
        };
        assert!(
            conflict.with_hint().ends_with(
                "(start the pod with --scope on a part of the tree no other pod writes)"
            )
        );
        let other = RegistryError::UnknownPod {
            instance_id: "x".into(),
        };
        assert_eq!(other.with_hint(), other.to_string());
        assert!(!other.with_hint().contains("--scope"));
    }
}

/// The pod (full name) whose process `pid` is or descends from, per the
/// registry file at `path`: a process a pod started (its commands, its MCP
/// servers) is the pod's, not a person's. Walks `/proc/<pid>/stat` parent ids
/// up to init; reads the file without the lock (it is replaced atomically).
pub fn pod_of_process(pid: u32, path: &Path) -> Option<String> {
    let registry = std::fs::read(path)
        .ok()
        .and_then(|b| Registry::from_json(&b, path).ok())?;
    let mut current = pid;
    for _ in 0..64 {
        if let Some(entry) = registry.pods.iter().find(|p| p.pid == current) {
            return Some(entry.full_name.clone());
        }
        current = parent_pid(current)?;
        if current <= 1 {
            return None;
        }
    }
    None
}

/// The parent process id of `pid`, from `/proc/<pid>/stat`.
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields follow the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod process_tests {
    use super::*;

    #[test]
    fn a_process_is_traced_to_the_pod_that_started_it() {
        assert_eq!(
            parent_pid(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        assert_eq!(
            pod_of_process(std::process::id(), &path),
            None,
            "no registry"
        );
        // A child of ours is ours: with this process registered as pod `boss`,
        // a `sleep` it started is traced to it.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut registry = Registry::default();
        let me = ProcessIdentity::current().unwrap();
        registry
            .pods
            .push(PodEntry::new("boss", dir.path().join("sock"), me).unwrap());
        std::fs::write(&path, registry.to_json().unwrap()).unwrap();
        assert_eq!(pod_of_process(child.id(), &path).as_deref(), Some("boss"));
        assert_eq!(
            pod_of_process(std::process::id(), &path).as_deref(),
            Some("boss")
        );
        let _ = child.kill();
        let _ = child.wait();
        // Our parent (the test runner's) is no pod's.
        assert_eq!(
            pod_of_process(std::os::unix::process::parent_id(), &path),
            None
        );
    }
}
