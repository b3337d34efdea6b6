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
//! open.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use manifest::{Permission, Scope, ScopeError};

use crate::context::{Protection, ToolContext};

/// `openat2` resolve flag: no `/proc/*/fd`-style magic links.
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// `openat2` resolve flag: no symlinks at all.
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// `openat2` resolve flag: never leave the directory the lookup starts from.
const RESOLVE_BENEATH: u64 = 0x08;
/// How every lookup below a handle resolves.
const BENEATH: u64 = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
/// How a handle's own (absolute, canonical) path resolves.
const NO_LINKS: u64 = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
/// How often an `openat2` that reports a concurrent rename (`EAGAIN`) is retried.
const EAGAIN_RETRIES: usize = 16;
/// How many temporary names a write tries before giving up.
const TEMP_NAME_TRIES: usize = 16;

/// The kernel's `struct open_how` (openat2(2)).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

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

/// Turns an `openat2` (or other *at call) failure into an [`AccessError`].
fn open_error(err: io::Error, path: &Path, op: &'static str) -> AccessError {
    let path = path.to_path_buf();
    match err.raw_os_error() {
        Some(libc::ENOSYS) => AccessError::NoOpenat2 { path },
        // The path was canonical when checked, so it had no symlink and no `..`: a
        // symlink found now (ELOOP) or an escape (EXDEV) means it changed since.
        Some(libc::ELOOP | libc::EXDEV) => AccessError::Raced { path },
        Some(libc::ENOENT) => AccessError::NotFound { path },
        Some(libc::ENOTDIR) => AccessError::NotADirectory { path },
        Some(libc::EISDIR) => AccessError::IsDirectory { path },
        _ => AccessError::Io {
            op,
            path,
            source: err,
        },
    }
}

/// A path as a C string for the *at calls.
fn c_path(path: &Path) -> io::Result<CString> {
    let bytes = path.as_os_str().as_bytes();
    let bytes = if bytes.is_empty() {
        b".".as_slice()
    } else {
        bytes
    };
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte"))
}

/// `openat2(2)`: opens `path` relative to `dirfd` (or `AT_FDCWD`) with `resolve` flags.
/// `O_CLOEXEC` is always added.
fn openat2(
    dirfd: RawFd,
    path: &Path,
    flags: libc::c_int,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    let how = OpenHow {
        flags: u64::from((flags | libc::O_CLOEXEC).cast_unsigned()),
        mode: u64::from(mode),
        resolve,
    };
    for _ in 0..EAGAIN_RETRIES {
        // SAFETY: `c` is a valid NUL-terminated string and `how` a valid `open_how` of
        // the size passed; both outlive the call. The kernel reads them and returns a
        // new descriptor or -1.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &raw const how,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if ret >= 0 {
            let fd = RawFd::try_from(ret)
                .map_err(|_| io::Error::other("openat2 returned an out-of-range descriptor"))?;
            // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        // With RESOLVE_BENEATH the kernel answers EAGAIN when a rename raced the lookup;
        // trying again is what openat2(2) recommends.
        if err.raw_os_error() != Some(libc::EAGAIN) {
            return Err(err);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

/// Runs a libc *at call that returns 0 or -1 and turns -1 into the errno.
fn cvt(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `mkdirat(2)` beneath a handle; the name is a single component.
fn mkdirat(dirfd: RawFd, name: &Path, mode: u32) -> io::Result<()> {
    let c = c_path(name)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    cvt(unsafe { libc::mkdirat(dirfd, c.as_ptr(), mode) })
}

/// `renameat(2)` within one directory handle.
fn renameat(dirfd: RawFd, from: &Path, to: &Path) -> io::Result<()> {
    let from = c_path(from)?;
    let to = c_path(to)?;
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    cvt(unsafe { libc::renameat(dirfd, from.as_ptr(), dirfd, to.as_ptr()) })
}

/// `unlinkat(2)` of a file within a directory handle.
fn unlinkat(dirfd: RawFd, name: &Path) -> io::Result<()> {
    let c = c_path(name)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    cvt(unsafe { libc::unlinkat(dirfd, c.as_ptr(), 0) })
}

/// An open directory whose canonical path was checked: files are opened beneath it only.
#[derive(Debug)]
pub struct DirHandle {
    path: PathBuf,
    fd: OwnedFd,
}

impl DirHandle {
    /// Opens the directory at an absolute canonical path (an `O_PATH` handle). Refuses a
    /// path with any symlink in it: canonical paths have none, so one means a race.
    pub fn open_canonical(path: &Path) -> Result<Self, AccessError> {
        let fd = openat2(
            libc::AT_FDCWD,
            path,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            NO_LINKS,
        )
        .map_err(|e| open_error(e, path, "open directory"))?;
        Ok(DirHandle {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// The canonical path this handle was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the subdirectory `rel` (relative, no symlinks, no `..`) beneath this one.
    pub fn open_dir(&self, rel: &Path) -> Result<DirHandle, AccessError> {
        let path = self.path.join(rel);
        let fd = openat2(
            self.fd.as_raw_fd(),
            rel,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            BENEATH,
        )
        .map_err(|e| open_error(e, &path, "open directory"))?;
        Ok(DirHandle { path, fd })
    }

    /// Opens the regular file `rel` beneath this directory for reading. Refuses
    /// directories, devices, FIFOs and sockets (opened non-blocking, so a FIFO cannot
    /// hang the call).
    pub fn open_file(&self, rel: &Path) -> Result<File, AccessError> {
        let file = self.open_file_unverified(rel)?;
        let path = || self.path.join(rel);
        let meta = file.metadata().map_err(|source| AccessError::Io {
            op: "inspect",
            path: path(),
            source,
        })?;
        if meta.is_dir() {
            return Err(AccessError::IsDirectory { path: path() });
        }
        if !meta.is_file() {
            return Err(AccessError::NotRegular { path: path() });
        }
        Ok(file)
    }

    /// Opens `rel` beneath this directory for reading without checking its type: for
    /// entries a directory walk already saw as regular files (saves an `fstat` per file;
    /// a FIFO swapped in meanwhile reads as empty, since the open is non-blocking).
    pub fn open_file_unverified(&self, rel: &Path) -> Result<File, AccessError> {
        openat2(
            self.fd.as_raw_fd(),
            rel,
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
            0,
            BENEATH,
        )
        .map(File::from)
        .map_err(|e| open_error(e, &self.path.join(rel), "open"))
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

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Whether the file was created (it did not exist before).
    pub created: bool,
    /// Bytes written.
    pub size: u64,
    /// The new file's modification time.
    pub modified: Option<SystemTime>,
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

/// A unique-enough suffix for temporary file names (with `O_EXCL`, a clash only retries).
fn temp_name() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    PathBuf::from(format!(".pods-tmp.{}.{n}.{nanos}", std::process::id()))
}

/// Removes a temporary file unless disarmed (after the rename that makes it the target).
struct TempGuard<'a> {
    dirfd: RawFd,
    name: &'a Path,
    armed: bool,
}

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: a leftover temp file is harmless, and the write already failed.
            let _ = unlinkat(self.dirfd, self.name);
        }
    }
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
        DirHandle::open_canonical(&self.anchor)?.open_file(self.relative())
    }

    /// Opens the checked directory (for a walk), beneath its anchor.
    pub fn open_dir(&self) -> Result<DirHandle, AccessError> {
        let rel = self.relative();
        let anchor = DirHandle::open_canonical(&self.anchor)?;
        if rel == Path::new(".") {
            return Ok(anchor);
        }
        anchor.open_dir(rel)
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
        let dirfd = parent.as_raw_fd();
        let io_err = |op, source| AccessError::Io {
            op,
            path: self.canonical.clone(),
            source,
        };

        // The existing file, looked at without following anything.
        let existing_mode = match openat2(dirfd, name, libc::O_PATH, 0, BENEATH) {
            Ok(fd) => {
                let meta = File::from(fd)
                    .metadata()
                    .map_err(|e| io_err("inspect", e))?;
                if meta.is_dir() {
                    return Err(AccessError::IsDirectory {
                        path: self.canonical.clone(),
                    });
                }
                if !meta.is_file() {
                    return Err(AccessError::NotRegular {
                        path: self.canonical.clone(),
                    });
                }
                // Permission bits only: a rewritten file never keeps setuid/setgid.
                Some(meta.permissions().mode() & 0o777)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(open_error(e, &self.canonical, "inspect")),
        };

        let mut opened = None;
        for _ in 0..TEMP_NAME_TRIES {
            let tmp = temp_name();
            match openat2(
                dirfd,
                &tmp,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                0o666,
                BENEATH,
            ) {
                Ok(fd) => {
                    opened = Some((tmp, File::from(fd)));
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => {
                    return Err(open_error(
                        e,
                        &self.canonical,
                        "create a temporary file for",
                    ));
                }
            }
        }
        let Some((tmp, mut file)) = opened else {
            return Err(io_err(
                "create a temporary file for",
                io::Error::from_raw_os_error(libc::EEXIST),
            ));
        };
        let mut guard = TempGuard {
            dirfd,
            name: &tmp,
            armed: true,
        };
        file.write_all(bytes).map_err(|e| io_err("write", e))?;
        if let Some(mode) = existing_mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| io_err("keep the mode of", e))?;
        }
        file.sync_all().map_err(|e| io_err("fsync", e))?;
        let meta = file.metadata().map_err(|e| io_err("inspect", e))?;
        renameat(dirfd, &tmp, name).map_err(|e| io_err("rename the temporary file onto", e))?;
        guard.armed = false;
        parent
            .sync_all()
            .map_err(|e| io_err("fsync the directory of", e))?;
        Ok(Written {
            created: existing_mode.is_none(),
            size: meta.len(),
            modified: meta.modified().ok(),
        })
    }

    /// Opens (creating as needed) the parent directory of the checked path, readable so
    /// it can be fsynced. Every lookup is beneath a handle and refuses symlinks; every
    /// directory created is checked writable first.
    fn open_parent_for_write(&self, ctx: &ToolContext) -> Result<File, AccessError> {
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
                Err(AccessError::NotFound { .. }) => match start.parent() {
                    Some(up) => start = up,
                    None => {
                        return Err(AccessError::NotFound {
                            path: self.anchor.clone(),
                        });
                    }
                },
                Err(e) => return Err(e),
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
                Err(AccessError::NotFound { path }) => {
                    // Creating a directory writes it: it must be writable on its own
                    // (a non-recursive or denied parent may allow the file's path only).
                    check_write(ctx, &path)?;
                    match mkdirat(dir.fd.as_raw_fd(), name, 0o777) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => return Err(open_error(e, &path, "create directory")),
                    }
                    dir.open_dir(name)?
                }
                Err(e) => return Err(e),
            }
        }
        openat2(
            dir.fd.as_raw_fd(),
            Path::new("."),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            BENEATH,
        )
        .map(File::from)
        .map_err(|e| open_error(e, parent, "open directory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_errors_map_to_clear_refusals() {
        let path = Path::new("/s/f");
        let kind = |errno| open_error(io::Error::from_raw_os_error(errno), path, "open");
        assert!(matches!(kind(libc::ENOSYS), AccessError::NoOpenat2 { .. }));
        assert!(kind(libc::ENOSYS).to_string().contains("lacks openat2(2)"));
        assert!(matches!(kind(libc::ELOOP), AccessError::Raced { .. }));
        assert!(matches!(kind(libc::EXDEV), AccessError::Raced { .. }));
        assert!(matches!(kind(libc::ENOENT), AccessError::NotFound { .. }));
        assert!(matches!(
            kind(libc::ENOTDIR),
            AccessError::NotADirectory { .. }
        ));
        assert!(matches!(
            kind(libc::EISDIR),
            AccessError::IsDirectory { .. }
        ));
        let other = kind(libc::EACCES).to_string();
        assert!(other.starts_with("cannot open /s/f: "), "{other}");
    }

    #[test]
    fn paths_with_nul_bytes_are_refused() {
        assert!(c_path(Path::new("a\0b")).is_err());
        assert_eq!(c_path(Path::new("")).unwrap().as_bytes(), b".");
    }
}
