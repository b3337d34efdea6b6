//! Covering what a command must not reach, inside the helper's mount namespace: paths
//! denied for reading, and Unix sockets (a socket on a read-only mount still accepts
//! connections, and some of them, like the D-Bus user bus, run commands for the caller
//! outside any sandbox).

use std::collections::VecDeque;
use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::helper::{c, step};
use super::policy::Unreadable;
use rustix::mount::MountFlags;

use super::sys::{self, SetupError};

/// Most directory entries looked at per command when searching for sockets: a busy
/// desktop `/run` holds a few thousand (mostly `/run/udev/data`).
pub(crate) const SOCKET_SEARCH_ENTRIES: usize = 20_000;

/// Unix sockets beneath `dirs`, breadth first, looking at no more than `budget` entries;
/// symlinks are not followed, directories beneath any of `skip` that lies inside the dir
/// searched are not entered (a write root holding the whole dir, e.g. `~` around
/// `~/.docker`, does not exempt it), and
/// neither are other filesystems mounted below a dir (a FUSE or network mount such as
/// `/run/user/<uid>/gvfs` could be slow or hang; sockets live on the dir's own tmpfs).
pub(crate) fn find_sockets(dirs: &[PathBuf], skip: &[&Path], budget: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    // Each entry: a dir to list, its filesystem, and the dir searched it lies in.
    let mut queue: VecDeque<(PathBuf, u64, &Path)> = dirs
        .iter()
        .filter_map(|d| d.metadata().ok().map(|m| (d.clone(), m.dev(), d.as_path())))
        .collect();
    let mut seen = 0usize;
    let skipped =
        |p: &Path, root: &Path| skip.iter().any(|s| s.starts_with(root) && p.starts_with(s));
    while let Some((dir, dev, root)) = queue.pop_front() {
        if skipped(&dir, root) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > budget {
                return found;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_socket() {
                let path = entry.path();
                if !skipped(&path, root) {
                    found.push(path);
                }
            } else if kind.is_dir() && entry.metadata().is_ok_and(|m| m.dev() == dev) {
                queue.push_back((entry.path(), dev, root));
            }
        }
    }
    // Overlapping dirs on one filesystem find a socket twice.
    found.sort();
    found.dedup();
    found
}

/// Where covering files come from: an empty regular file on a small tmpfs of the
/// helper's own, or `/dev/null` where that cannot be had. The tmpfs is mounted on
/// `/dev/shm` (no path to cover lies there: a private tmpfs replaces it later) only
/// while covers are made, then detached: the covers keep it alive, nothing else
/// reaches it.
#[derive(Default)]
pub(crate) struct EmptySource {
    /// Whether the tmpfs is stacked on `/dev/shm` (else `/dev/null` is used); set on
    /// the first cover, so commands with no file to cover mount nothing.
    stacked: std::cell::OnceCell<bool>,
}

/// The tmpfs mountpoint used while covering.
const STAGING: &CStr = c"/dev/shm";
/// The empty file on it.
const EMPTY_FILE: &CStr = c"/dev/shm/empty";

impl EmptySource {
    /// Mounts the staging tmpfs with its empty file; false when that cannot be had and
    /// `/dev/null` stands in (reading it gives nothing too, but writes to a covered
    /// file are then discarded rather than refused).
    fn stage() -> bool {
        if !Path::new("/dev/shm").is_dir() {
            return false;
        }
        let mounted = sys::mount_fs(
            c"tmpfs",
            STAGING,
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            Some(c"size=4k,mode=0755"),
        );
        if mounted.is_err() {
            return false;
        }
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(Path::new(OsStr::from_bytes(EMPTY_FILE.to_bytes())));
        if created.is_err() {
            detach_staging();
        }
        created.is_ok()
    }

    /// The file covers are copies of (staged on first use).
    fn file(&self) -> &'static CStr {
        if *self.stacked.get_or_init(EmptySource::stage) {
            EMPTY_FILE
        } else {
            c"/dev/null"
        }
    }

    /// Detaches the staging tmpfs if it was mounted (the covers made from it stay).
    pub(crate) fn finish(&self) {
        if self.stacked.get() == Some(&true) {
            detach_staging();
        }
    }
}

/// Unmounts the staging tmpfs from `/dev/shm`.
fn detach_staging() {
    // Best effort: a staging tmpfs left stacked on /dev/shm is covered by the fresh one.
    let _ = sys::detach_mount(STAGING);
}

/// Puts a read-only copy of the empty file of `source` on top of the non-directory
/// `path`: reading it gives nothing, writing fails (read-only file system),
/// connecting to it is refused. A path that vanished meanwhile is skipped.
pub(crate) fn cover_file(path: &Path, source: &EmptySource) -> Result<(), SetupError> {
    let what = || format!("cover {}", path.display());
    let tree = sys::clone_tree(source.file()).map_err(step(what(), "open_tree"))?;
    sys::set_tree_readonly(&tree).map_err(step(what(), "mount_setattr"))?;
    match sys::attach(&tree, &c(path)?) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other.map_err(step(what(), "move_mount")),
    }
}

/// Covers the directory `dir` with an empty read-only tmpfs.
pub(crate) fn cover_dir(dir: &Path, why: &str) -> Result<(), SetupError> {
    sys::mount_fs(
        c"tmpfs",
        &c(dir)?,
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        Some(c"size=4k,mode=0755"),
    )
    .map_err(step(
        format!("{why}: cover {} with an empty tmpfs", dir.display()),
        "mount tmpfs",
    ))
}

/// Makes `rule`'s path unreadable: a file or a whole directory is covered; a
/// non-recursive rule on a directory covers the files directly in it (its
/// subdirectories stay readable, as the rule says). Missing paths are skipped.
pub(crate) fn cover_unreadable(rule: &Unreadable, source: &EmptySource) -> Result<(), SetupError> {
    let Ok(meta) = rule.path.symlink_metadata() else {
        return Ok(());
    };
    if !meta.is_dir() {
        return cover_file(&rule.path, source);
    }
    if rule.recursive {
        return cover_dir(&rule.path, "deny reading");
    }
    let Ok(entries) = std::fs::read_dir(&rule.path) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| !t.is_dir()) {
            cover_file(&entry.path(), source)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn sockets_are_found_breadth_first_skipping_what_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["a/b", "skip", "c"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let _l1 = UnixListener::bind(root.join("top.sock")).unwrap();
        let _l2 = UnixListener::bind(root.join("a/b/deep.sock")).unwrap();
        let _l3 = UnixListener::bind(root.join("skip/hidden.sock")).unwrap();
        std::fs::write(root.join("c/file"), "not a socket").unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("c/link")).unwrap();

        let skip = root.join("skip");
        let mut found = find_sockets(&[root.to_path_buf()], &[skip.as_path()], 1_000);
        found.sort();
        assert_eq!(
            found,
            vec![root.join("a/b/deep.sock"), root.join("top.sock")]
        );
        // A skipped path around the dir searched does not exempt it.
        let mut inside = find_sockets(&[root.join("a")], &[root], 1_000);
        inside.sort();
        assert_eq!(inside, vec![root.join("a/b/deep.sock")]);
        // A missing dir is no error.
        assert!(find_sockets(&[root.join("missing")], &[], 1_000).is_empty());
        // The budget bounds the search: the root's own four entries, nothing deeper.
        let shallow = find_sockets(&[root.to_path_buf()], &[], 4);
        assert_eq!(shallow, vec![root.join("top.sock")]);
    }

    #[test]
    fn other_filesystems_below_a_dir_are_not_entered() {
        // /dev/shm is a tmpfs of its own below devtmpfs' /dev on Linux.
        let dev = std::fs::metadata("/dev").unwrap().dev();
        let shm = Path::new("/dev/shm");
        assert_ne!(
            std::fs::metadata(shm).unwrap().dev(),
            dev,
            "/dev/shm is not a mount here"
        );
        let dir = tempfile::tempdir_in(shm).unwrap();
        let sock = dir.path().join("s.sock");
        let _l = UnixListener::bind(&sock).unwrap();
        assert!(!find_sockets(&["/dev".into()], &[], 100_000).contains(&sock));
        assert!(find_sockets(&[shm.to_path_buf()], &[], 100_000).contains(&sock));
    }
}
