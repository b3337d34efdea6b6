//! What every file tool of one pod shares: the pod's working directory, its live scope,
//! the directories no tool may write, the record of files this pod has read (for the
//! read-before-write rule) and the byte cap on a tool's output.
//!
//! The context decides nothing about a single access itself; [`crate::scoped_fs`] checks
//! and performs accesses against it.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use manifest::{Scope, canonicalize_lenient};

/// Why a [`ToolContext`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// The working directory must be absolute: relative tool paths are joined onto it.
    #[error(
        "the pod's working directory {} is relative; pass an absolute path",
        .0.display()
    )]
    RelativeCwd(PathBuf),
    /// A protected directory must be absolute to be compared with canonical paths.
    #[error(
        "protected directory {} is relative; pass an absolute path",
        .0.display()
    )]
    RelativeProtectedDir(PathBuf),
    /// The context was configured after it was shared with tools.
    #[error("the file tools' context is already shared; configure it before handing it out")]
    AlreadyShared,
}

/// What this pod saw of a file when it last read (or wrote) it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadRecord {
    /// SHA-256 of the whole file's bytes.
    pub hash: [u8; 32],
    /// Modification time then, if the filesystem reports one.
    pub modified: Option<SystemTime>,
    /// Size in bytes then.
    pub size: u64,
}

/// Why a path may never be written, whatever the scope says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Protection {
    /// It lies inside one of the protected directories given to [`ToolContext::new`].
    Dir(PathBuf),
    /// It has a `.pods` component (project manifests and pod settings).
    PodsDir,
}

/// The state shared by all clones of one [`ToolContext`].
#[derive(Debug)]
struct ContextInner {
    cwd: PathBuf,
    scope: Arc<RwLock<Scope>>,
    protected: Vec<PathBuf>,
    reads: Mutex<HashMap<PathBuf, ReadRecord>>,
    output_limit: usize,
    /// Directories no tool may read or list (other pods' private files),
    /// each with the one subtree of it this pod may (its own).
    hidden: Vec<(PathBuf, PathBuf)>,
    /// Whether `Write` merges content that is only part of a file into it
    /// (small-model profile; see `partial_write`).
    merge_partial_writes: bool,
}

/// The per-pod state the file tools share. Cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct ToolContext {
    inner: Arc<ContextInner>,
}

impl ToolContext {
    /// A context for one pod: `cwd` (absolute) resolves relative tool paths, `scope` is
    /// the pod's live scope (queried afresh on every access), `protected_dirs` are never
    /// writable (pods state, config, runtime and model dirs; they need not exist), and
    /// `output_limit` is the byte cap on one tool result (see
    /// `llm_worker::tool_server::output_limit`).
    pub fn new(
        cwd: impl Into<PathBuf>,
        scope: Arc<RwLock<Scope>>,
        protected_dirs: impl IntoIterator<Item = PathBuf>,
        output_limit: usize,
    ) -> Result<Self, ContextError> {
        let cwd = cwd.into();
        if !cwd.is_absolute() {
            return Err(ContextError::RelativeCwd(cwd));
        }
        let mut protected = Vec::new();
        for dir in protected_dirs {
            if !dir.is_absolute() {
                return Err(ContextError::RelativeProtectedDir(dir));
            }
            // Compare canonical with canonical; keep the lexical form as well so that a
            // directory whose ancestors cannot be resolved is still protected as named.
            if let Ok(canonical) = canonicalize_lenient(&dir)
                && !protected.contains(&canonical)
            {
                protected.push(canonical);
            }
            let lexical: PathBuf = dir.components().collect();
            if !protected.contains(&lexical) {
                protected.push(lexical);
            }
        }
        Ok(ToolContext {
            inner: Arc::new(ContextInner {
                cwd,
                scope,
                protected,
                reads: Mutex::new(HashMap::new()),
                output_limit,
                hidden: Vec::new(),
                merge_partial_writes: false,
            }),
        })
    }

    /// Hides `dir` (e.g. the runtime dir, where every pod keeps its spilled
    /// outputs and private tmp) from the file tools, all but `own` (this pod's
    /// part of it). Both absolute; called before the context is cloned.
    pub fn hiding(mut self, dir: &Path, own: &Path) -> Result<Self, ContextError> {
        for path in [dir, own] {
            if !path.is_absolute() {
                return Err(ContextError::RelativeProtectedDir(path.to_path_buf()));
            }
        }
        let inner = Arc::get_mut(&mut self.inner).ok_or(ContextError::AlreadyShared)?;
        // As for protected dirs: canonical and lexical forms both.
        for (d, o) in [
            (canonicalize_lenient(dir), canonicalize_lenient(own)),
            (
                Ok(dir.components().collect()),
                Ok(own.components().collect()),
            ),
        ] {
            if let (Ok(d), Ok(o)) = (d, o)
                && !inner.hidden.contains(&(d.clone(), o.clone()))
            {
                inner.hidden.push((d, o));
            }
        }
        Ok(self)
    }

    /// Makes `Write` merge content that is only part of a file (new or changed
    /// definitions, changed setting lines) into it: for small models, which
    /// write only the new function when asked to add one. Called before the
    /// context is cloned.
    pub fn merging_partial_writes(mut self) -> Result<Self, ContextError> {
        Arc::get_mut(&mut self.inner)
            .ok_or(ContextError::AlreadyShared)?
            .merge_partial_writes = true;
        Ok(self)
    }

    /// Whether `Write` merges partial content (see [`Self::merging_partial_writes`]).
    pub(crate) fn merges_partial_writes(&self) -> bool {
        self.inner.merge_partial_writes
    }

    /// The hidden directory a canonical path lies in (outside this pod's own
    /// part of it), if any.
    pub(crate) fn hidden_dir(&self, canonical: &Path) -> Option<&Path> {
        self.inner
            .hidden
            .iter()
            .find(|(dir, own)| canonical.starts_with(dir) && !canonical.starts_with(own))
            .map(|(dir, _)| dir.as_path())
    }

    /// The pod's working directory.
    pub fn cwd(&self) -> &Path {
        &self.inner.cwd
    }

    /// The live scope, as shared with whoever delegates subtrees away and back.
    pub fn scope(&self) -> &Arc<RwLock<Scope>> {
        &self.inner.scope
    }

    /// A copy of the scope as it is now (for a walk that checks many paths).
    pub(crate) fn scope_now(&self) -> Scope {
        // A writer that panicked mid-update cannot leave a `Scope` half-changed (its
        // methods validate before they mutate), so a poisoned lock is still usable.
        self.inner
            .scope
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The protected directories (canonical and as given).
    pub fn protected_dirs(&self) -> &[PathBuf] {
        &self.inner.protected
    }

    /// The byte cap on one tool result.
    pub fn output_limit(&self) -> usize {
        self.inner.output_limit
    }

    /// `path` made absolute: joined onto the working directory when relative.
    pub fn absolute(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.inner.cwd.join(path)
        }
    }

    /// Whether a canonical path is protected from writing, and why.
    pub(crate) fn protection(&self, canonical: &Path) -> Option<Protection> {
        if canonical
            .components()
            .any(|c| c == Component::Normal(".pods".as_ref()))
        {
            return Some(Protection::PodsDir);
        }
        self.inner
            .protected
            .iter()
            .find(|dir| canonical.starts_with(dir))
            .map(|dir| Protection::Dir(dir.clone()))
    }

    /// What this pod last saw of the file at a canonical path, if it read it.
    pub(crate) fn read_record(&self, canonical: &Path) -> Option<ReadRecord> {
        self.reads().get(canonical).cloned()
    }

    /// Records that this pod has seen the file at a canonical path as `record`.
    pub(crate) fn record_read(&self, canonical: PathBuf, record: ReadRecord) {
        self.reads().insert(canonical, record);
    }

    /// The files this pod has seen (read, written, attached), sorted.
    pub(crate) fn seen_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.reads().keys().cloned().collect();
        files.sort();
        files
    }

    /// The read records, locked. A panic while holding the lock leaves at worst one
    /// stale record, which only makes a later write ask for a fresh Read.
    fn reads(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, ReadRecord>> {
        self.inner
            .reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
