//! Opening files *beneath a directory handle* with `openat2(2)`: the primitives the file
//! tools build their scoped access on (the scope check itself is theirs).
//!
//! A [`DirHandle`] is opened at a canonical path, which has no symlinks in it, so every
//! lookup below it uses `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`:
//! if a symlink was swapped into the path after the caller checked it, the kernel refuses
//! the open instead of following it elsewhere. [`WritableDir::replace_file`] writes a
//! temporary file in the same directory, fsyncs it and renames it over the target, so a
//! reader never sees half a file and a crash leaves the old or the new content.
//!
//! Kernels without `openat2` (before Linux 5.6) get a clear error, never an unchecked
//! open.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use rustix::fs::{AtFlags, CWD, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// How every lookup below a handle resolves: never leave the directory the lookup starts
/// from, no symlinks at all, no `/proc/*/fd`-style magic links.
const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);
/// How a handle's own (absolute, canonical) path resolves.
const NO_LINKS: ResolveFlags = ResolveFlags::NO_SYMLINKS.union(ResolveFlags::NO_MAGICLINKS);
/// How often an `openat2` that reports a concurrent rename (`EAGAIN`) is retried.
const EAGAIN_RETRIES: usize = 16;
/// How many temporary names a write tries before giving up.
const TEMP_NAME_TRIES: usize = 16;

/// Why an open (or a write) beneath a handle failed.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
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

/// Turns an `openat2` (or other *at call) failure into a [`BeneathError`].
fn open_error(err: io::Error, path: &Path, op: &'static str) -> BeneathError {
    let path = path.to_path_buf();
    match err.raw_os_error() {
        Some(libc::ENOSYS) => BeneathError::NoOpenat2 { path },
        // The path was canonical when checked, so it had no symlink and no `..`: a
        // symlink found now (ELOOP) or an escape (EXDEV) means it changed since.
        Some(libc::ELOOP | libc::EXDEV) => BeneathError::Raced { path },
        Some(libc::ENOENT) => BeneathError::NotFound { path },
        Some(libc::ENOTDIR) => BeneathError::NotADirectory { path },
        Some(libc::EISDIR) => BeneathError::IsDirectory { path },
        _ => BeneathError::Io {
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

/// `openat2(2)`: opens `path` relative to `dirfd` (or [`CWD`]) with `resolve` flags.
/// `O_CLOEXEC` is always added.
fn openat2(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    mode: u32,
    resolve: ResolveFlags,
) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    let mode = Mode::from_raw_mode(mode);
    for _ in 0..EAGAIN_RETRIES {
        match rustix::fs::openat2(dirfd, c.as_c_str(), flags | OFlags::CLOEXEC, mode, resolve) {
            Ok(fd) => return Ok(fd),
            // With RESOLVE_BENEATH the kernel answers EAGAIN when a rename raced the
            // lookup; trying again is what openat2(2) recommends.
            Err(Errno::AGAIN) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(Errno::AGAIN.into())
}

/// `mkdirat(2)` beneath a handle; the name is a single component.
fn mkdirat(dirfd: BorrowedFd<'_>, name: &Path, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::mkdirat(
        dirfd,
        c_path(name)?.as_c_str(),
        Mode::from_raw_mode(mode),
    )?)
}

/// `renameat(2)` within one directory handle.
fn renameat(dirfd: BorrowedFd<'_>, from: &Path, to: &Path) -> io::Result<()> {
    Ok(rustix::fs::renameat(
        dirfd,
        c_path(from)?.as_c_str(),
        dirfd,
        c_path(to)?.as_c_str(),
    )?)
}

/// `unlinkat(2)` of a file within a directory handle.
fn unlinkat(dirfd: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(
        dirfd,
        c_path(name)?.as_c_str(),
        AtFlags::empty(),
    )?)
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
    pub fn open_canonical(path: &Path) -> Result<Self, BeneathError> {
        let fd = openat2(CWD, path, OFlags::PATH | OFlags::DIRECTORY, 0, NO_LINKS)
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
    pub fn open_dir(&self, rel: &Path) -> Result<DirHandle, BeneathError> {
        let path = self.path.join(rel);
        let fd = openat2(
            self.fd.as_fd(),
            rel,
            OFlags::PATH | OFlags::DIRECTORY,
            0,
            BENEATH,
        )
        .map_err(|e| open_error(e, &path, "open directory"))?;
        Ok(DirHandle { path, fd })
    }

    /// Opens the regular file `rel` beneath this directory for reading. Refuses
    /// directories, devices, FIFOs and sockets (opened non-blocking, so a FIFO cannot
    /// hang the call).
    pub fn open_file(&self, rel: &Path) -> Result<File, BeneathError> {
        let file = self.open_file_unverified(rel)?;
        let path = || self.path.join(rel);
        let meta = file.metadata().map_err(|source| BeneathError::Io {
            op: "inspect",
            path: path(),
            source,
        })?;
        if meta.is_dir() {
            return Err(BeneathError::IsDirectory { path: path() });
        }
        if !meta.is_file() {
            return Err(BeneathError::NotRegular { path: path() });
        }
        Ok(file)
    }

    /// Opens `rel` beneath this directory for reading without checking its type: for
    /// entries a directory walk already saw as regular files (saves an `fstat` per file;
    /// a FIFO swapped in meanwhile reads as empty, since the open is non-blocking).
    pub fn open_file_unverified(&self, rel: &Path) -> Result<File, BeneathError> {
        openat2(
            self.fd.as_fd(),
            rel,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            0,
            BENEATH,
        )
        .map(File::from)
        .map_err(|e| open_error(e, &self.path.join(rel), "open"))
    }

    /// Creates the subdirectory `name` (one component) beneath this one; one that
    /// already exists (a concurrent creation) is fine.
    pub fn create_dir(&self, name: &Path) -> Result<(), BeneathError> {
        match mkdirat(self.fd.as_fd(), name, 0o777) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(open_error(e, &self.path.join(name), "create directory")),
        }
    }

    /// Opens this directory itself for writing into it: readable, so it can be fsynced.
    pub fn open_writable(&self) -> Result<WritableDir, BeneathError> {
        let file = openat2(
            self.fd.as_fd(),
            Path::new("."),
            OFlags::RDONLY | OFlags::DIRECTORY,
            0,
            BENEATH,
        )
        .map(File::from)
        .map_err(|e| open_error(e, &self.path, "open directory"))?;
        Ok(WritableDir {
            path: self.path.clone(),
            file,
        })
    }
}

/// A directory opened to replace files in it ([`DirHandle::open_writable`]).
#[derive(Debug)]
pub struct WritableDir {
    path: PathBuf,
    file: File,
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
    dirfd: BorrowedFd<'a>,
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

impl WritableDir {
    /// The canonical path of the directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces (or creates) the regular file `name` (one component) with `bytes`: a
    /// temporary file in this directory, fsynced, renamed over the target, then the
    /// directory fsynced. An existing file keeps its permission bits (never setuid or
    /// setgid); a directory, device, FIFO or socket there is refused.
    pub fn replace_file(&self, name: &Path, bytes: &[u8]) -> Result<Written, BeneathError> {
        let target = self.path.join(name);
        let dirfd = self.file.as_fd();
        let io_err = |op, source| BeneathError::Io {
            op,
            path: target.clone(),
            source,
        };

        // The existing file, looked at without following anything.
        let existing_mode = match openat2(dirfd, name, OFlags::PATH, 0, BENEATH) {
            Ok(fd) => {
                let meta = File::from(fd)
                    .metadata()
                    .map_err(|e| io_err("inspect", e))?;
                if meta.is_dir() {
                    return Err(BeneathError::IsDirectory { path: target });
                }
                if !meta.is_file() {
                    return Err(BeneathError::NotRegular { path: target });
                }
                // Permission bits only: a rewritten file never keeps setuid/setgid.
                Some(meta.permissions().mode() & 0o777)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(open_error(e, &target, "inspect")),
        };

        let mut opened = None;
        for _ in 0..TEMP_NAME_TRIES {
            let tmp = temp_name();
            match openat2(
                dirfd,
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
                0o666,
                BENEATH,
            ) {
                Ok(fd) => {
                    opened = Some((tmp, File::from(fd)));
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => {
                    return Err(open_error(e, &target, "create a temporary file for"));
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
        self.file
            .sync_all()
            .map_err(|e| io_err("fsync the directory of", e))?;
        Ok(Written {
            created: existing_mode.is_none(),
            size: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_errors_map_to_clear_refusals() {
        let path = Path::new("/s/f");
        let kind = |errno| open_error(io::Error::from_raw_os_error(errno), path, "open");
        assert!(matches!(kind(libc::ENOSYS), BeneathError::NoOpenat2 { .. }));
        assert!(kind(libc::ENOSYS).to_string().contains("lacks openat2(2)"));
        assert!(matches!(kind(libc::ELOOP), BeneathError::Raced { .. }));
        assert!(matches!(kind(libc::EXDEV), BeneathError::Raced { .. }));
        assert!(matches!(kind(libc::ENOENT), BeneathError::NotFound { .. }));
        assert!(matches!(
            kind(libc::ENOTDIR),
            BeneathError::NotADirectory { .. }
        ));
        assert!(matches!(
            kind(libc::EISDIR),
            BeneathError::IsDirectory { .. }
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
