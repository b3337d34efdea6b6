//! Scoped file access: every path a file tool touches is resolved against the pod's
//! working directory, canonicalised, checked against the live scope (and, for writes,
//! against the protected directories), and then opened *beneath a directory handle* with
//! `openat2(2)`.
//!
//! The open is what makes the check hold. The canonical path has no symlinks in it, so it
//! is opened from a handle on its allowed ancestor (the scope rule's root, or its parent)
//! with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: if a symlink was
//! swapped into the path after the check, the kernel refuses the open instead of
//! following it out of the scope (or into a denied subtree inside it). Writes go to a
//! temporary file in the same directory handle, are fsynced and renamed over the target,
//! so a reader never sees half a file and a crash leaves the old or the new content.
//!
//! Kernels without `openat2` (before Linux 5.6) get a clear error, never an unchecked
//! open. The `openat2` primitives themselves ([`DirHandle`], the atomic replace) are the
//! `sandbox` crate's (`sandbox::beneath`), which holds the workspace's unsafe code; this
//! module owns the scope and protection checks and the order of the steps.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use manifest::{Permission, Scope, ScopeError};
use sandbox::beneath::{BeneathError, WritableDir};
pub use sandbox::beneath::{DirHandle, Written};

use crate::context::{Protection, ToolContext};

/// Why a scoped access failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The scope refuses it (outside the scope, denied, delegated) or cannot judge it.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// A write inside a protected directory (pods state, config, runtime, model dirs).
    #[error(
        "write access to {} refused: it is inside {}, which pods keeps for itself (state, config, runtime or model files); agents never write there",
        path.display(), dir.display()
    )]
    Protected {
        /// The canonical path asked for.
        path: PathBuf,
        /// The protected directory it lies in.
        dir: PathBuf,
    },
    /// A path inside another pod's private files (the runtime dir).
    #[error(
        "access to {} refused: it is inside {}, where pods keep their private files (spilled outputs, tmp); a pod reads only its own there",
        path.display(), dir.display()
    )]
    Hidden {
        /// The canonical path asked for.
        path: PathBuf,
        /// The hidden directory it lies in.
        dir: PathBuf,
    },
    /// A write inside a `.pods` directory.
    #[error(
        "write access to {} refused: it is inside a `.pods` directory, which is protected (pod manifests and settings); a person edits those by hand",
        path.display()
    )]
    PodsDir {
        /// The canonical path asked for.
        path: PathBuf,
    },
    /// The path changed between the check and the open (a symlink appeared in it).
    #[error(
        "{} changed while it was being opened (a symlink appeared in its path after the scope check); nothing was read or written; try again",
        path.display()
    )]
    Raced {
        /// The canonical path that was checked.
        path: PathBuf,
    },
    /// The kernel has no `openat2`, so a race-free open is impossible.
    #[error(
        "cannot open {} safely: this kernel lacks openat2(2) (Linux 5.6 or later), which the file tools need to open files beneath the scope without symlink races; run pods on a newer kernel",
        path.display()
    )]
    NoOpenat2 {
        /// The path being opened.
        path: PathBuf,
    },
    /// The path does not exist.
    #[error("{} does not exist", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// A file was expected and the path is a directory.
    #[error("{} is a directory, not a file", path.display())]
    IsDirectory {
        /// The path.
        path: PathBuf,
    },
    /// A directory was expected and the path (or one of its parents) is not one.
    #[error("{} (or one of its parents) is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The path is a device, FIFO or socket.
    #[error(
        "{} is not a regular file (a device, FIFO or socket); the file tools handle regular files only",
        path.display()
    )]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// Any other I/O failure.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// To which path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl From<BeneathError> for AccessError {
    /// The same refusal, variant for variant: the file tools' callers match on these.
    fn from(e: BeneathError) -> Self {
        match e {
            BeneathError::Raced { path } => AccessError::Raced { path },
            BeneathError::NoOpenat2 { path } => AccessError::NoOpenat2 { path },
            BeneathError::NotFound { path } => AccessError::NotFound { path },
            BeneathError::IsDirectory { path } => AccessError::IsDirectory { path },
            BeneathError::NotADirectory { path } => AccessError::NotADirectory { path },
            BeneathError::NotRegular { path } => AccessError::NotRegular { path },
            BeneathError::Io { op, path, source } => AccessError::Io { op, path, source },
        }
    }
}

/// A path the scope allowed, in its canonical form, with the directory to open it beneath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPath {
    requested: PathBuf,
    canonical: PathBuf,
    anchor: PathBuf,
    wanted: Permission,
}

/// Checks `wanted` access to `path` (absolute, or relative to the pod's cwd) against the
/// live scope, and for writes against the protected directories. Returns the canonical
/// path to open.
pub fn check(
    ctx: &ToolContext,
    path: &Path,
    wanted: Permission,
) -> Result<CheckedPath, AccessError> {
    let requested = ctx.absolute(path);
    let (canonical, anchor) = {
        let scope = ctx.scope().read().unwrap_or_else(PoisonError::into_inner);
        let canonical = scope.check(&requested, wanted)?;
        let anchor = anchor_for(&scope, &canonical);
        (canonical, anchor)
    };
    if let Some(dir) = ctx.hidden_dir(&canonical) {
        return Err(AccessError::Hidden {
            path: canonical,
            dir: dir.to_path_buf(),
        });
    }
    if wanted == Permission::Write {
        refuse_protected(ctx, &canonical)?;
    }
    Ok(CheckedPath {
        requested,
        canonical,
        anchor,
        wanted,
    })
}

/// [`check`] for reading.
pub fn check_read(ctx: &ToolContext, path: &Path) -> Result<CheckedPath, AccessError> {
    check(ctx, path, Permission::Read)
}

/// [`check`] for writing.
pub fn check_write(ctx: &ToolContext, path: &Path) -> Result<CheckedPath, AccessError> {
    check(ctx, path, Permission::Write)
}

/// Refuses a canonical path the context protects from writing.
fn refuse_protected(ctx: &ToolContext, canonical: &Path) -> Result<(), AccessError> {
    match ctx.protection(canonical) {
        None => Ok(()),
        Some(Protection::PodsDir) => Err(AccessError::PodsDir {
            path: canonical.to_path_buf(),
        }),
        Some(Protection::Dir(dir)) => Err(AccessError::Protected {
            path: canonical.to_path_buf(),
            dir,
        }),
    }
}

/// The directory to open `canonical` beneath: the root of the deepest allow (or shared)
/// rule that covers it and is a proper ancestor, else its parent.
fn anchor_for(scope: &Scope, canonical: &Path) -> PathBuf {
    scope
        .allow_rules()
        .iter()
        .chain(scope.shared())
        .filter(|rule| {
            canonical != rule.target
                && canonical.starts_with(&rule.target)
                && (rule.recursive || canonical.parent() == Some(rule.target.as_path()))
        })
        .map(|rule| rule.target.as_path())
        .max_by_key(|target| target.components().count())
        .or_else(|| canonical.parent())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

impl CheckedPath {
    /// The path as asked for (absolute).
    pub fn requested(&self) -> &Path {
        &self.requested
    }

    /// The canonical path the scope allowed.
    pub fn canonical(&self) -> &Path {
        &self.canonical
    }

    /// The directory the path is opened beneath.
    pub fn anchor(&self) -> &Path {
        &self.anchor
    }

    /// The path relative to the anchor (`.` for the anchor itself).
    fn relative(&self) -> &Path {
        match self.canonical.strip_prefix(&self.anchor) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel,
            _ => Path::new("."),
        }
    }

    /// Opens the checked regular file for reading, beneath its anchor.
    pub fn open_read(&self) -> Result<File, AccessError> {
        Ok(DirHandle::open_canonical(&self.anchor)?.open_file(self.relative())?)
    }

    /// Opens the checked directory (for a walk), beneath its anchor.
    pub fn open_dir(&self) -> Result<DirHandle, AccessError> {
        let rel = self.relative();
        let anchor = DirHandle::open_canonical(&self.anchor)?;
        if rel == Path::new(".") {
            return Ok(anchor);
        }
        Ok(anchor.open_dir(rel)?)
    }

    /// Replaces (or creates) the checked file with `bytes`: a temporary file in the same
    /// directory, fsynced, renamed over the target, then the directory fsynced. An
    /// existing file keeps its permission bits. Missing parent directories are created,
    /// each checked against the live scope first.
    pub fn write_atomic(&self, ctx: &ToolContext, bytes: &[u8]) -> Result<Written, AccessError> {
        if self.wanted != Permission::Write {
            // A read check must not be used to write; check again, for writing.
            return check_write(ctx, &self.requested)?.write_atomic(ctx, bytes);
        }
        let Some(name) = self.canonical.file_name().map(Path::new) else {
            return Err(AccessError::IsDirectory {
                path: self.canonical.clone(),
            });
        };
        let parent = self.open_parent_for_write(ctx)?;
        Ok(parent.replace_file(name, bytes)?)
    }

    /// Opens (creating as needed) the parent directory of the checked path, readable so
    /// it can be fsynced. Every lookup is beneath a handle and refuses symlinks; every
    /// directory created is checked writable first.
    fn open_parent_for_write(&self, ctx: &ToolContext) -> Result<WritableDir, AccessError> {
        let parent = self
            .canonical
            .parent()
            .ok_or_else(|| AccessError::IsDirectory {
                path: self.canonical.clone(),
            })?;
        // Start at the anchor, or (when the scope root itself is still missing) at its
        // nearest existing ancestor; the directories below are created one by one.
        let mut start = self.anchor.as_path();
        let mut dir = loop {
            match DirHandle::open_canonical(start) {
                Ok(dir) => break dir,
                Err(BeneathError::NotFound { .. }) => match start.parent() {
                    Some(up) => start = up,
                    None => {
                        return Err(AccessError::NotFound {
                            path: self.anchor.clone(),
                        });
                    }
                },
                Err(e) => return Err(e.into()),
            }
        };
        let rest = parent
            .strip_prefix(start)
            .map_err(|_| AccessError::Raced {
                path: self.canonical.clone(),
            })?
            .to_path_buf();
        for component in rest.components() {
            let name = Path::new(component.as_os_str());
            dir = match dir.open_dir(name) {
                Ok(next) => next,
                Err(BeneathError::NotFound { path }) => {
                    // Creating a directory writes it: it must be writable on its own
                    // (a non-recursive or denied parent may allow the file's path only).
                    check_write(ctx, &path)?;
                    dir.create_dir(name)?;
                    dir.open_dir(name)?
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(dir.open_writable()?)
    }
}
