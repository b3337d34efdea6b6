//! The spawner's own list of its children: how to reach each, what scope it
//! holds, how far its output has been read, and how many reports it owes.
//!
//! Every change is journaled in the spawner's session log (`child_spawned`,
//! `child_removed`, `child_cursor`) before it takes effect in memory, so a
//! restored spawner gets its children back. Removing a child stops it for
//! real — shutdown, then a kill of its process group, checked through its
//! liveness lock — before its scope moves back to the spawner: a scope must
//! never be writable by two processes.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use manifest::{Scope, ScopeRule};
use protocol::Method;
use session_store::{EntryBody, LogEntry};

use crate::runtime::dir::SpawnedPodRecord;
use crate::runtime::liveness::is_alive;
use crate::runtime::pod_registry::{LockFileGuard, ReleaseOutcome};
use crate::state::{SharedState, StateError, lock};

/// How long a child gets to exit after `shutdown` before it is killed.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

/// Records the registry's changes in the spawner's session log.
pub(crate) trait ChildJournal: Send + Sync {
    /// Commits one entry; an error means it is not in the log.
    fn record(&self, body: EntryBody) -> Result<(), StateError>;
}

/// The pod's own session log is the journal of its children.
impl ChildJournal for SharedState {
    fn record(&self, body: EntryBody) -> Result<(), StateError> {
        lock(self).commit(body).map(|_| ())
    }
}

/// Why a child could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// Its record does not encode.
    #[error("cannot encode the child's record: {0}")]
    Encode(#[from] serde_json::Error),
    /// The journal refused it.
    #[error("cannot journal the child: {0}")]
    Journal(#[from] StateError),
}

/// Where a child's scope goes back to: the spawner's live scope and the
/// per-user registry file.
#[derive(Debug, Clone)]
pub(crate) struct ScopeHome {
    /// The spawner's live scope (its tools and commands check it).
    pub scope: Arc<RwLock<Scope>>,
    /// `<runtime>/pods.json`.
    pub registry_path: PathBuf,
    /// The runtime dir (children's liveness locks are under it).
    pub runtime: PathBuf,
}

/// Why a child could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// No child of that name.
    #[error("no spawned pod named `{0}`")]
    Unknown(String),
    /// It exited on its own but its lock is still held.
    #[error("pod `{0}` still runs; stop it to get its scope back")]
    StillRuns(String),
    /// Neither shutdown nor SIGKILL ended it.
    #[error(
        "pod `{name}` (pid {pid}) did not exit after shutdown and SIGKILL; its scope stays delegated"
    )]
    WontExit {
        /// Its short name.
        name: String,
        /// Its process id.
        pid: u32,
    },
    /// The registry task could not run.
    #[error("scope registry task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The registry refused the release.
    #[error("scope registry: {0}")]
    Registry(#[from] crate::runtime::pod_registry::RegistryError),
    /// The removal could not be journaled.
    #[error("cannot journal the removal: {0}")]
    Journal(#[from] StateError),
}

#[derive(Debug, Default)]
struct Inner {
    /// In spawn order.
    records: Vec<SpawnedPodRecord>,
    cursors: HashMap<String, usize>,
    /// The seq of the last entry read of each child (this process's reads
    /// only): tells a child's compaction (a new segment) from new output.
    read_seqs: HashMap<String, u64>,
    /// Reports (`turn_ended`/`errored`) each child owes for invocations this
    /// pod started in it.
    owed: HashMap<String, u32>,
    /// Children this pod is stopping itself (their `shut_down` wakes nobody).
    stopping: HashSet<String>,
}

/// The spawner's children. `Send + Sync`; the async methods never hold a lock
/// across an await.
#[derive(Default)]
pub struct SpawnedPodRegistry {
    inner: Mutex<Inner>,
    journal: Option<Arc<dyn ChildJournal>>,
    home: Option<ScopeHome>,
}

impl fmt::Debug for SpawnedPodRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnedPodRegistry")
            .field("children", &self.lock().records.len())
            .finish_non_exhaustive()
    }
}

/// The child's runtime dir (its liveness lock is there).
fn child_dir(runtime: &Path, record: &SpawnedPodRecord) -> PathBuf {
    runtime.join(&record.full_name)
}

impl SpawnedPodRegistry {
    /// An in-memory registry (nothing journaled, no scope to give back).
    pub fn new() -> Self {
        SpawnedPodRegistry::default()
    }

    /// A registry journaled in the spawner's log that gives scope back to `home`.
    pub(crate) fn journaled(journal: Arc<dyn ChildJournal>, home: ScopeHome) -> Self {
        SpawnedPodRegistry {
            inner: Mutex::new(Inner::default()),
            journal: Some(journal),
            home: Some(home),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, body: EntryBody) -> Result<(), StateError> {
        match &self.journal {
            Some(j) => j.record(body),
            None => Ok(()),
        }
    }

    /// Rebuilds the list from the spawner's log entries (restore). Records
    /// that do not decode are skipped and named in the returned messages.
    pub fn replay<'a>(&self, entries: impl IntoIterator<Item = &'a LogEntry>) -> Vec<String> {
        let mut problems = Vec::new();
        let mut inner = self.lock();
        for entry in entries {
            match entry {
                LogEntry::ChildSpawned { name, record, .. } => {
                    match serde_json::from_value::<SpawnedPodRecord>(record.clone()) {
                        Ok(r) => {
                            inner.records.retain(|x| x.pod_name != r.pod_name);
                            // Whether its report came before a crash is not
                            // logged: accept one more from it, at most.
                            inner.owed.insert(r.pod_name.clone(), 1);
                            inner.records.push(r);
                        }
                        Err(e) => problems.push(format!("child `{name}`: unreadable record: {e}")),
                    }
                }
                LogEntry::ChildRemoved { name, .. } => {
                    inner.records.retain(|x| &x.pod_name != name);
                    inner.cursors.remove(name);
                    inner.owed.remove(name);
                }
                LogEntry::ChildCursor { name, cursor, .. } => {
                    let cursor = usize::try_from(*cursor).unwrap_or(usize::MAX);
                    inner.cursors.insert(name.clone(), cursor);
                }
                _ => {}
            }
        }
        problems
    }

    /// Adds a child (journaled first). It owes one report: its first task.
    pub fn insert(&self, record: SpawnedPodRecord) -> Result<(), InsertError> {
        let value = serde_json::to_value(&record)?;
        self.record(EntryBody::ChildSpawned {
            name: record.pod_name.clone(),
            record: value,
        })?;
        let mut inner = self.lock();
        *inner.owed.entry(record.pod_name.clone()).or_default() += 1;
        inner.records.retain(|x| x.pod_name != record.pod_name);
        inner.records.push(record);
        Ok(())
    }

    /// The child named `name`.
    pub async fn get(&self, name: &str) -> Option<SpawnedPodRecord> {
        self.lock()
            .records
            .iter()
            .find(|r| r.pod_name == name)
            .cloned()
    }

    /// Every child, in spawn order.
    pub async fn list(&self) -> Vec<SpawnedPodRecord> {
        self.lock().records.clone()
    }

    /// How many snapshot entries of `name` were already read.
    pub async fn cursor(&self, name: &str) -> usize {
        self.lock().cursors.get(name).copied().unwrap_or(0)
    }

    /// Moves the read cursor of `name` (journaled when it changes).
    pub async fn set_cursor(&self, name: &str, cursor: usize) {
        if self.lock().cursors.get(name) == Some(&cursor) {
            return;
        }
        let journaled = self.record(EntryBody::ChildCursor {
            name: name.to_string(),
            cursor: cursor as u64,
        });
        // A cursor that could not be journaled still moves: at worst a restored
        // pod re-reads some output.
        let _ = journaled;
        self.lock().cursors.insert(name.to_string(), cursor);
    }

    /// Where to go on reading `name`'s snapshot, whose entries have `seqs`
    /// (see [`pod_client::snapshot::resume_at`]); `index` is the journaled cursor.
    pub(crate) fn resume_at(&self, name: &str, seqs: &[Option<u64>], index: usize) -> usize {
        let read_seq = self.lock().read_seqs.get(name).copied();
        pod_client::snapshot::resume_at(seqs, read_seq, index)
    }

    /// Records the seq of the last entry of `name` read.
    pub(crate) fn set_read_seq(&self, name: &str, seq: u64) {
        self.lock().read_seqs.insert(name.to_string(), seq);
    }

    /// This pod started an invocation in `name`: it owes one more report.
    pub(crate) fn expect_report(&self, name: &str) {
        *self.lock().owed.entry(name.to_string()).or_default() += 1;
    }

    /// A report from `name` arrived: true if one was owed (the first of it
    /// counts, repeats are ignored).
    pub(crate) fn take_report(&self, name: &str) -> bool {
        let mut inner = self.lock();
        match inner.owed.get_mut(name) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// The short name of the child whose process is `pid`.
    pub(crate) fn name_of_pid(&self, pid: u32) -> Option<String> {
        self.lock()
            .records
            .iter()
            .find(|r| r.pid == pid)
            .map(|r| r.pod_name.clone())
    }

    /// The short name of the child whose full name is `full_name`.
    pub(crate) fn name_of(&self, full_name: &str) -> Option<String> {
        self.lock()
            .records
            .iter()
            .find(|r| r.full_name == full_name || r.pod_name == full_name)
            .map(|r| r.pod_name.clone())
    }

    /// The child holding the delegated subtree `root`.
    pub(crate) fn holder_of(&self, root: &Path) -> Option<String> {
        self.lock()
            .records
            .iter()
            .find(|r| r.scope_delegated.iter().any(|g| g.target == root))
            .map(|r| r.pod_name.clone())
    }

    /// Whether this pod is stopping `name` itself.
    pub(crate) fn is_stopping(&self, name: &str) -> bool {
        self.lock().stopping.contains(name)
    }

    /// Children listed.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lock().records.is_empty()
    }

    /// Stops child `name` for real and gives its scope back to this pod.
    /// Returns its record.
    pub async fn remove(&self, name: &str) -> Result<SpawnedPodRecord, RemoveError> {
        self.remove_because(name, "stopped by its spawner").await
    }

    /// Stops every child, in spawn order, and gives each one's scope back (this
    /// pod is shutting down; a child stops its own children before it exits).
    /// All are marked stopping first, so none of their last reports wakes this
    /// pod. Returns what could not be stopped, one message each.
    pub(crate) async fn stop_all(&self, reason: &str) -> Vec<String> {
        let names: Vec<String> = self
            .lock()
            .records
            .iter()
            .map(|r| r.pod_name.clone())
            .collect();
        self.lock().stopping.extend(names.iter().cloned());
        let mut failures = Vec::new();
        for name in names {
            if let Err(e) = self.remove_because(&name, reason).await {
                failures.push(format!("`{name}`: {e}"));
            }
        }
        failures
    }

    async fn remove_because(
        &self,
        name: &str,
        reason: &str,
    ) -> Result<SpawnedPodRecord, RemoveError> {
        let record = self
            .get(name)
            .await
            .ok_or_else(|| RemoveError::Unknown(name.to_string()))?;
        self.lock().stopping.insert(name.to_string());
        let stopped = self.stop_process(&record).await;
        if let Err(e) = stopped {
            self.lock().stopping.remove(name);
            return Err(e);
        }
        self.give_back(&record, reason).await?;
        Ok(record)
    }

    /// Forgets a child that exited (or was found gone) on its own and gives
    /// its scope back; nothing to stop.
    pub async fn forget(
        &self,
        name: &str,
        reason: &str,
    ) -> Result<Option<SpawnedPodRecord>, RemoveError> {
        let Some(record) = self.get(name).await else {
            return Ok(None);
        };
        if let Some(home) = &self.home
            && is_alive(&child_dir(&home.runtime, &record))
        {
            return Err(RemoveError::StillRuns(name.to_string()));
        }
        self.give_back(&record, reason).await?;
        Ok(Some(record))
    }

    /// Moves `rules` out of this pod's live scope (for a child about to get
    /// them) and returns the roots delegated, in order. This registry is the
    /// only writer of the live scope: delegating, giving back and restoring
    /// all happen here. On an error the rules already moved stay moved; the
    /// caller gives them back with [`SpawnedPodRegistry::give_back_roots`].
    pub(crate) fn delegate_rules(
        &self,
        rules: &[ScopeRule],
        delegated: &mut Vec<PathBuf>,
    ) -> Result<(), (PathBuf, manifest::ScopeError)> {
        let Some(home) = &self.home else {
            return Ok(());
        };
        let mut scope = home.scope.write().unwrap_or_else(PoisonError::into_inner);
        for rule in rules {
            let root = scope
                .delegate_rule(rule)
                .map_err(|e| (rule.target.clone(), e))?;
            delegated.push(root);
        }
        Ok(())
    }

    /// Gives delegated `roots` back to this pod's live scope (a spawn that
    /// failed half-way).
    pub(crate) fn give_back_roots(&self, roots: &[PathBuf]) {
        if let Some(home) = &self.home {
            let mut scope = home.scope.write().unwrap_or_else(PoisonError::into_inner);
            for root in roots {
                let _ = scope.give_back(root);
            }
        }
    }

    /// After a restart: takes the subtrees of the children still alive out of
    /// the live scope again, and returns the names of those that are gone.
    pub(crate) async fn redelegate_live(&self) -> Vec<String> {
        let mut gone = Vec::new();
        let Some(home) = &self.home else {
            return gone;
        };
        for record in self.list().await {
            if is_alive(&child_dir(&home.runtime, &record)) {
                let mut scope = home.scope.write().unwrap_or_else(PoisonError::into_inner);
                for rule in &record.scope_delegated {
                    let _ = scope.delegate_rule(rule);
                }
            } else {
                gone.push(record.pod_name.clone());
            }
        }
        gone
    }

    /// Forgets a child that said it shut down, once its process is gone (its
    /// lock is free within [`STOP_GRACE`]), giving its scope back.
    pub(crate) async fn forget_once_exited(
        &self,
        name: &str,
        reason: &str,
    ) -> Result<(), RemoveError> {
        if let Some(home) = &self.home
            && let Some(record) = self.get(name).await
        {
            wait_dead(&child_dir(&home.runtime, &record), STOP_GRACE).await;
        }
        self.forget(name, reason).await.map(|_| ())
    }

    /// Shutdown, then kill the process group, until the liveness lock is free.
    async fn stop_process(&self, record: &SpawnedPodRecord) -> Result<(), RemoveError> {
        let Some(home) = &self.home else {
            return Ok(());
        };
        let dir = child_dir(&home.runtime, record);
        if !is_alive(&dir) {
            return Ok(());
        }
        // Best effort: if it cannot be asked, it is killed below.
        if let Ok(mut client) = crate::client::PodClient::connect(&record.socket_path).await {
            let _ = client.send(&Method::Shutdown).await;
        }
        if wait_dead(&dir, STOP_GRACE).await {
            return Ok(());
        }
        // The child leads its own process group.
        let _ = sys::kill_group(record.pid);
        if wait_dead(&dir, STOP_GRACE).await {
            return Ok(());
        }
        Err(RemoveError::WontExit {
            name: record.pod_name.clone(),
            pid: record.pid,
        })
    }

    /// Releases the child's grant in the per-user registry, restores the
    /// spawner's write access, journals the removal and drops the record.
    async fn give_back(&self, record: &SpawnedPodRecord, reason: &str) -> Result<(), RemoveError> {
        let mut returned = true;
        if let Some(home) = &self.home {
            let path = home.registry_path.clone();
            let instance = record.instance_id.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                let mut guard = LockFileGuard::open(&path)?;
                guard.release(&instance)
            })
            .await?;
            match outcome {
                Ok(ReleaseOutcome::Suspended { .. }) => returned = false,
                Ok(ReleaseOutcome::Removed { .. }) => {}
                // Already gone from the registry (reclaimed): the grant is free.
                Err(crate::runtime::pod_registry::RegistryError::UnknownPod { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if returned {
                let mut scope = home.scope.write().unwrap_or_else(PoisonError::into_inner);
                for rule in &record.scope_delegated {
                    let _ = scope.give_back(&rule.target);
                }
            }
        }
        tracing::info!(child = %record.pod_name, reason, returned, "child pod removed");
        let reason = if returned {
            reason.to_string()
        } else {
            format!("{reason}; its grandchildren still run, so its scope stays with them")
        };
        self.record(EntryBody::ChildRemoved {
            name: record.pod_name.clone(),
            reason,
        })?;
        let mut inner = self.lock();
        inner.records.retain(|r| r.pod_name != record.pod_name);
        inner.cursors.remove(&record.pod_name);
        inner.owed.remove(&record.pod_name);
        inner.stopping.remove(&record.pod_name);
        Ok(())
    }
}

/// Polls the liveness lock until it is free or `within` passes.
async fn wait_dead(dir: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if !is_alive(dir) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use manifest::{Permission, ScopeRule};

    fn record(name: &str, pid: u32) -> SpawnedPodRecord {
        SpawnedPodRecord {
            pod_name: name.into(),
            socket_path: PathBuf::from(format!("/nonexistent/{name}/sock")),
            scope_delegated: vec![ScopeRule::recursive(
                format!("/repo/{name}"),
                Permission::Write,
            )],
            full_name: format!("main.{name}"),
            instance_id: format!("id-{name}"),
            pid,
            task: "t".into(),
            created_ms: 1,
        }
    }

    #[derive(Default)]
    struct Log(Mutex<Vec<EntryBody>>);

    impl ChildJournal for Log {
        fn record(&self, body: EntryBody) -> Result<(), StateError> {
            self.0.lock().unwrap().push(body);
            Ok(())
        }
    }

    #[tokio::test]
    async fn records_cursors_and_reports() {
        let reg = SpawnedPodRegistry::new();
        reg.insert(record("a", 10)).unwrap();
        reg.insert(record("b", 11)).unwrap();
        assert_eq!(reg.list().await.len(), 2);
        assert_eq!(reg.get("a").await.unwrap().pid, 10);
        assert_eq!(reg.name_of_pid(11).as_deref(), Some("b"));
        assert_eq!(reg.cursor("a").await, 0);
        reg.set_cursor("a", 5).await;
        assert_eq!(reg.cursor("a").await, 5);
        // The first task's report is owed once; repeats are ignored.
        assert!(reg.take_report("a"));
        assert!(!reg.take_report("a"));
        reg.expect_report("a");
        assert!(reg.take_report("a"));
        assert!(!reg.take_report("zzz"));
    }

    #[tokio::test]
    async fn every_change_is_journaled_and_replays() {
        let log = Arc::new(Log::default());
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let home = ScopeHome {
            scope: Arc::new(RwLock::new(Scope::default())),
            registry_path: dir.path().join("pods.json"),
            runtime: dir.path().to_path_buf(),
        };
        let reg = SpawnedPodRegistry::journaled(log.clone(), home);
        reg.insert(record("a", 10)).unwrap();
        reg.insert(record("b", 11)).unwrap();
        reg.set_cursor("b", 3).await;
        reg.set_cursor("b", 3).await;
        // `a` is not running (no lock): forgetting it gives its scope back.
        reg.forget("a", "exited").await.unwrap();
        let bodies = log.0.lock().unwrap().clone();
        let kinds: Vec<&str> = bodies
            .iter()
            .map(|b| match b {
                EntryBody::ChildSpawned { .. } => "spawned",
                EntryBody::ChildCursor { .. } => "cursor",
                EntryBody::ChildRemoved { .. } => "removed",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["spawned", "spawned", "cursor", "removed"]);

        // Replaying those entries (as a restored pod would) gives the same state.
        let entries: Vec<LogEntry> = {
            let sdir = tempfile::tempdir().unwrap();
            let (mut w, _) = session_store::SessionWriter::open(sdir.path()).unwrap();
            for b in bodies {
                w.append(b).unwrap();
            }
            drop(w);
            session_store::read_session(sdir.path())
                .unwrap()
                .entries()
                .cloned()
                .collect()
        };
        let restored = SpawnedPodRegistry::new();
        assert!(restored.replay(&entries).is_empty());
        let names: Vec<String> = restored
            .list()
            .await
            .into_iter()
            .map(|r| r.pod_name)
            .collect();
        assert_eq!(names, ["b"]);
        assert_eq!(restored.cursor("b").await, 3);
    }

    #[tokio::test]
    async fn removing_an_unknown_child_is_a_clear_error() {
        let reg = SpawnedPodRegistry::new();
        let err = reg.remove("ghost").await.unwrap_err();
        assert_eq!(err.to_string(), "no spawned pod named `ghost`");
    }
}
