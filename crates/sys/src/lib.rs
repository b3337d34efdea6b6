//! Small OS helpers that several pods crates need, written once: wall-clock
//! time, lowercase hex, replacing a file so that readers see the old or the
//! new content, never a mix, and safe wrappers for the few system calls std
//! does not wrap: signals, waiting for a child, detaching a command from the
//! session, taking over inherited descriptors, and `posix_spawn` with a
//! descriptor map (the only `unsafe` outside the sandbox crate lives here;
//! every other crate says `#![forbid(unsafe_code)]`).
//!
//! It owns no policy: callers decide what an error means to the user.

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::io::Errno;
use rustix::process::{Pid, Signal};
use rustix::rand::GetRandomFlags;

mod process;

pub use process::{ChildFd, adopt_inherited_fd, detach_from_session, spawn_in_new_group, wait_pid};

/// Wall-clock unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Lowercase hex of `bytes` (digests, random ids).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The temp file a replacement of `path` writes first: `<path>.tmp`. Only one
/// writer replaces a given file at a time (the caller's lock or ownership), so a
/// temp file a killed writer left is simply overwritten by the next one.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// A failed file operation: what was done, to which path, and why it failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct FileError {
    /// What was attempted ("write", "rename onto", ...).
    pub action: &'static str,
    /// The file it was attempted on.
    pub path: PathBuf,
    /// The operating system's error.
    pub source: io::Error,
}

fn failed(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError {
        action,
        path,
        source,
    }
}

/// Replaces `path` with `bytes` through a temp file and a rename, so readers
/// see the old or the new content, never a mix. Not fsynced: for advisory files
/// (status, launch options, caches) that the next run rewrites.
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let tmp = temp_path(path);
    // 0600 whatever the umask: these are launch records, status and caches of
    // one user's pods.
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(failed("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(failed("rename onto", path))
}

/// Replaces `path` with `bytes` so that a crash at any point leaves either the
/// old or the new file: a temp file created with `mode` (never through a
/// symlink), fsync, `before_rename` (a test's crash point), rename, then an
/// fsync of the directory so the rename itself is durable.
pub fn replace_file_durably(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    before_rename: &mut dyn FnMut(&Path),
) -> Result<(), FileError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = temp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(failed("create", &tmp))?;
    file.write_all(bytes).map_err(failed("write", &tmp))?;
    file.sync_all().map_err(failed("fsync", &tmp))?;
    drop(file);
    before_rename(&tmp);
    std::fs::rename(&tmp, path).map_err(failed("rename onto", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed("fsync directory", dir))
}

/// The real user id of this process.
pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Fills `buf` from the kernel's random pool (getrandom(2), blocking until
/// the pool is initialised; retried on EINTR).
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The pid of the process at the other end of a connected Unix socket (for a
/// listening socket, the one that bound it): who serves a pod's socket.
pub fn peer_pid(stream: &std::os::unix::net::UnixStream) -> io::Result<u32> {
    let cred = rustix::net::sockopt::socket_peercred(stream)?;
    u32::try_from(cred.pid.as_raw_nonzero().get())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Sends SIGKILL to process `pid` (kill(2)); `pid` must be positive, so this
/// never signals a process group or every process by accident.
pub fn kill(pid: u32) -> io::Result<()> {
    signal(pid, Signal::KILL, false)
}

/// Sends SIGTERM to process `pid` (kill(2)); `pid` must be positive, as for [`kill`].
pub fn terminate(pid: u32) -> io::Result<()> {
    signal(pid, Signal::TERM, false)
}

/// A pidfd of process `pid` (pidfd_open(2)): it turns readable when that
/// process exits, and never stands for another process that gets the pid later.
pub fn pidfd(pid: u32) -> io::Result<std::os::fd::OwnedFd> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("not a pid: {pid}")))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// Blocks until the process of `pidfd` (from [`pidfd`]) exits.
pub fn wait_pidfd(pidfd: &std::os::fd::OwnedFd) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    loop {
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends SIGKILL to the process group led by `pgid` (kill(2) of `-pgid`).
pub fn kill_group(pgid: u32) -> io::Result<()> {
    signal(pgid, Signal::KILL, true)
}

fn signal(id: u32, sig: Signal, group: bool) -> io::Result<()> {
    // A positive pid only (Pid cannot be 0), so this never means "our own group" or,
    // as -1, "every process".
    let pid = i32::try_from(id)
        .ok()
        .filter(|&id| id > 0)
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("not a pid: {id}")))?;
    if group {
        rustix::process::kill_process_group(pid, sig)?;
    } else {
        rustix::process::kill_process(pid, sig)?;
    }
    Ok(())
}

/// The magic number of the filesystem `file` is on (`statfs.f_type`, low 32
/// bits: the magics are 32-bit, the field's width varies by platform).
pub fn filesystem_magic(file: &File) -> io::Result<u32> {
    let st = rustix::fs::fstatfs(file)?;
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    Ok(st.f_type as u32)
}

#[cfg(test)]
mod tests {

    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_pidfd_turns_readable_when_its_process_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.05")
            .spawn()
            .unwrap();
        let fd = pidfd(child.id()).unwrap();
        wait_pidfd(&fd).unwrap();
        assert!(child.try_wait().unwrap().is_some(), "it has exited");
        assert!(pidfd(0).is_err());
    }

    #[test]
    fn hex_is_lowercase_and_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn random_bytes_differ_between_calls() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        fill_random(&mut a).unwrap();
        fill_random(&mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn the_filesystem_of_proc_is_procfs() {
        let f = File::open("/proc/self/stat").unwrap();
        assert_eq!(filesystem_magic(&f).unwrap(), 0x9fa0);
    }

    #[test]
    fn uid_matches_the_owner_of_our_own_proc_dir() {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(uid(), std::fs::metadata("/proc/self").unwrap().uid());
    }

    #[test]
    fn kill_ends_a_process_and_refuses_what_is_not_a_pid() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        kill(child.id()).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(kill(0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            kill_group(u32::MAX).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn terminate_sends_sigterm() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        terminate(child.id()).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
        assert_eq!(
            terminate(0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn kill_group_ends_the_whole_group() {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        kill_group(child.id()).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }

    #[test]
    fn replace_file_swaps_the_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        replace_file(&path, b"old").unwrap();
        replace_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn a_failed_replacement_names_what_and_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir/file");
        let e = replace_file(&path, b"x").unwrap_err();
        assert_eq!(e.action, "write");
        assert!(e.to_string().contains("missing-dir/file.tmp"), "{e}");
    }

    #[test]
    fn a_durable_replacement_keeps_the_old_file_until_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        replace_file_durably(&path, b"old", 0o600, &mut |_| {}).unwrap();
        let mut seen = None;
        replace_file_durably(&path, b"new", 0o600, &mut |tmp| {
            seen = Some((std::fs::read(&path).unwrap(), std::fs::read(tmp).unwrap()));
        })
        .unwrap();
        assert_eq!(seen, Some((b"old".to_vec(), b"new".to_vec())));
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_durable_replacement_never_writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, temp_path(&path)).unwrap();
        let e = replace_file_durably(&path, b"x", 0o600, &mut |_| {}).unwrap_err();
        assert_eq!(e.action, "create");
        assert!(!elsewhere.exists());
    }
}
