//! Processes and descriptors: detaching a command from our session, waiting
//! for a child, taking over descriptors a parent handed us, and starting a
//! child from a multi-threaded process with `posix_spawn` and a descriptor map.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions};

/// Makes `command` start its child in a session (and process group) of its
/// own, `setsid(2)` between fork and exec: a Ctrl-C or a hangup aimed at our
/// terminal does not reach it, and it outlives our session. A failing
/// `setsid` fails the spawn with its error.
pub fn detach_from_session(command: &mut Command) -> &mut Command {
    // SAFETY: `setsid_in_child` runs in the child between fork and exec, where
    // only async-signal-safe work is sound: it makes one setsid(2) call (which
    // is async-signal-safe) and reads errno; it allocates nothing and takes no
    // lock, so it is sound even if other threads held locks at the fork.
    unsafe { command.pre_exec(setsid_in_child) }
}

fn setsid_in_child() -> io::Result<()> {
    rustix::process::setsid()?;
    Ok(())
}

/// The descriptor numbers taken over by [`adopt_inherited_fd`] so far: each
/// is owned once, never twice.
static ADOPTED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// Takes ownership of descriptor `fd`, which the process that started us left
/// open for us (a child pod finds its liveness lock and its listening socket
/// at fixed numbers), and marks it close-on-exec so that the commands we run
/// do not inherit it.
///
/// Call it at startup, for a descriptor this process inherited across exec and
/// that no other code here has wrapped. What can be checked is: `fd` must be
/// open (else `EBADF`), must not be stdin, stdout or stderr (std owns those;
/// `InvalidInput`), and each number is adopted at most once per process
/// (`AlreadyExists`), so two owners never close it twice.
pub fn adopt_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd <= libc::STDERR_FILENO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not an inherited descriptor (std owns 0 to 2)"),
        ));
    }
    let mut adopted = ADOPTED.lock().unwrap_or_else(PoisonError::into_inner);
    if adopted.contains(&fd) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("fd {fd} was already taken over"),
        ));
    }
    // SAFETY: F_GETFD only reads the flags of a descriptor number; no memory
    // is passed, and a closed number fails with EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    adopted.push(fd);
    // SAFETY: `fd` is open (checked above), is not one of std's stdio
    // descriptors, was never adopted before, and per this function's contract
    // was inherited for us with nothing else in this process owning it; the
    // OwnedFd is its only owner from now on.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(owned.as_fd())?;
    Ok(owned)
}

/// Marks `fd` close-on-exec (`fcntl(F_SETFD, FD_CLOEXEC)`), so that programs
/// this process runs do not inherit it.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(())
}

/// Waits until child `pid` ends (waitpid(2), blocking; retried when a signal
/// interrupts it) and returns its wait status, to be read with
/// `libc::WIFEXITED` and friends. `pid` must be positive: this never waits
/// for "any child" or a process group by accident.
pub fn wait_pid(pid: u32) -> io::Result<i32> {
    let pid = i32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("not a pid: {pid}")))?;
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((got, status))) if got == pid => return Ok(status.as_raw()),
            Ok(other) => {
                return Err(io::Error::other(format!(
                    "waitpid({}) returned {other:?}",
                    pid.as_raw_nonzero()
                )));
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A descriptor a child started by [`spawn_in_new_group`] gets at a fixed number.
#[derive(Debug, Clone, Copy)]
pub struct ChildFd<'a> {
    /// The descriptor in this process.
    pub fd: BorrowedFd<'a>,
    /// The number the child finds it at (3 or more: 0 to 2 are its stdio).
    pub at: RawFd,
    /// What passing it means, for the error message if that fails ("pass the lock").
    pub what: &'static str,
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", s.to_string_lossy()),
        )
    })
}

/// An error of a posix_spawn* call, which returns the error number instead of
/// setting errno, prefixed with `what` was being done.
fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::new(
            io::Error::from_raw_os_error(rc).kind(),
            format!("{what}: {}", io::Error::from_raw_os_error(rc)),
        ))
    }
}

/// A close-on-exec duplicate of `fd` numbered `min` or above.
fn dup_above(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, min)?)
}

/// posix_spawn's file actions, destroyed when dropped. Boxed: initialised in
/// place and never moved afterwards.
struct FileActions(Box<libc::posix_spawn_file_actions_t>);

impl FileActions {
    fn new() -> io::Result<Self> {
        // SAFETY: a C struct for which all-zero is a valid (not yet
        // initialised) value; posix_spawn_file_actions_init overwrites it.
        let mut raw: Box<libc::posix_spawn_file_actions_t> =
            Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `raw` is valid, writable memory for the object.
        let rc = unsafe { libc::posix_spawn_file_actions_init(&mut *raw) };
        check(rc, "posix_spawn_file_actions_init")?;
        Ok(FileActions(raw))
    }

    fn open_read_only(&mut self, fd: RawFd, path: &std::ffi::CStr, what: &str) -> io::Result<()> {
        // SAFETY: the object was initialised in `new`; the path is a valid C
        // string, copied by the call.
        let rc = unsafe {
            libc::posix_spawn_file_actions_addopen(
                &mut *self.0,
                fd,
                path.as_ptr(),
                libc::O_RDONLY,
                0,
            )
        };
        check(rc, what)
    }

    fn dup2(&mut self, from: RawFd, to: RawFd, what: &str) -> io::Result<()> {
        // SAFETY: the object was initialised in `new`; the call takes integers.
        let rc = unsafe { libc::posix_spawn_file_actions_adddup2(&mut *self.0, from, to) };
        check(rc, what)
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and destroyed only here, once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut *self.0) };
    }
}

/// posix_spawn's attributes, destroyed when dropped. Boxed like [`FileActions`].
struct Attributes(Box<libc::posix_spawnattr_t>);

impl Attributes {
    fn new() -> io::Result<Self> {
        // SAFETY: a C struct for which all-zero is a valid (not yet
        // initialised) value; posix_spawnattr_init overwrites it.
        let mut raw: Box<libc::posix_spawnattr_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `raw` is valid, writable memory for the object.
        let rc = unsafe { libc::posix_spawnattr_init(&mut *raw) };
        check(rc, "posix_spawnattr_init")?;
        Ok(Attributes(raw))
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and destroyed only here, once.
        unsafe { libc::posix_spawnattr_destroy(&mut *self.0) };
    }
}

/// A signal set holding `signals`.
fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it below.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &signal in signals {
        // SAFETY: `set` is an initialised sigset_t; a bad signal number only
        // makes the call fail (EINVAL), and ours are constants.
        unsafe { libc::sigaddset(&mut set, signal) };
    }
    set
}

/// Starts `program` (a path; no `PATH` lookup) with `args` from a process
/// that may have many threads: `posix_spawn` with file actions, never `fork`
/// plus code in the child. The child gets stdin from `/dev/null`, stdout and
/// stderr on `output`, each of `fds` at its number and no other descriptor of
/// ours (ours are close-on-exec), this process's environment, an empty signal
/// mask with SIGPIPE, SIGINT and SIGTERM at their defaults, and a process
/// group of its own (so it can be stopped as a group, and a Ctrl-C aimed at
/// us does not reach it). Returns the child's pid; reap it with [`wait_pid`].
///
/// An error names the step that failed: "redirect stdin", "redirect stdout",
/// "redirect stderr", a [`ChildFd::what`], "start <program>", ...
pub fn spawn_in_new_group(
    program: &Path,
    args: &[impl AsRef<OsStr>],
    output: BorrowedFd<'_>,
    fds: &[ChildFd<'_>],
) -> io::Result<u32> {
    for (i, f) in fds.iter().enumerate() {
        if f.at <= libc::STDERR_FILENO || fds[..i].iter().any(|g| g.at == f.at) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: fd {} is stdio or given twice", f.what, f.at),
            ));
        }
    }
    // Duplicates numbered above every target, so that a dup2 onto one target
    // never meets the source of another already there.
    let min = fds.iter().map(|f| f.at + 1).max().unwrap_or(0).max(10);
    let output = dup_above(output, min)?;
    let sources = fds
        .iter()
        .map(|f| dup_above(f.fd, min))
        .collect::<io::Result<Vec<_>>>()?;

    let mut argv_owned = vec![cstring(program.as_os_str())?];
    for a in args {
        argv_owned.push(cstring(a.as_ref())?);
    }
    let mut argv: Vec<*mut libc::c_char> =
        argv_owned.iter().map(|c| c.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    let env_owned: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let mut envp: Vec<*mut libc::c_char> =
        env_owned.iter().map(|c| c.as_ptr().cast_mut()).collect();
    envp.push(std::ptr::null_mut());

    let mut actions = FileActions::new()?;
    let mut attr = Attributes::new()?;
    actions.open_read_only(0, c"/dev/null", "redirect stdin")?;
    actions.dup2(output.as_raw_fd(), 1, "redirect stdout")?;
    actions.dup2(output.as_raw_fd(), 2, "redirect stderr")?;
    for (f, source) in fds.iter().zip(&sources) {
        actions.dup2(source.as_raw_fd(), f.at, f.what)?;
    }
    let default_signals = sigset(&[libc::SIGPIPE, libc::SIGINT, libc::SIGTERM]);
    let no_mask = sigset(&[]);
    // SAFETY: `attr` was initialised; the sigset is read (copied) by the call.
    let rc = unsafe { libc::posix_spawnattr_setsigdefault(&mut *attr.0, &default_signals) };
    check(rc, "signal defaults")?;
    // SAFETY: as above.
    let rc = unsafe { libc::posix_spawnattr_setsigmask(&mut *attr.0, &no_mask) };
    check(rc, "signal mask")?;
    // SAFETY: `attr` was initialised; the call takes an integer.
    let rc = unsafe { libc::posix_spawnattr_setpgroup(&mut *attr.0, 0) };
    check(rc, "process group")?;
    let flags =
        libc::POSIX_SPAWN_SETPGROUP | libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
    #[allow(clippy::cast_possible_truncation)]
    // SAFETY: `attr` was initialised; the flags (small constants) fit a short.
    let rc = unsafe { libc::posix_spawnattr_setflags(&mut *attr.0, flags as libc::c_short) };
    check(rc, "spawn flags")?;
    let mut pid: libc::pid_t = 0;
    // SAFETY: `pid` is writable; the path, argv and envp are NUL-terminated
    // strings in NULL-terminated arrays, all owned above and alive past the
    // call; `actions` and `attr` are initialised; the descriptors the actions
    // name (`output`, `sources`) stay open until after the call.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            argv_owned[0].as_ptr(),
            &*actions.0,
            &*attr.0,
            argv.as_mut_ptr(),
            envp.as_mut_ptr(),
        )
    };
    check(rc, &format!("start {}", program.display()))?;
    u32::try_from(pid).map_err(|_| io::Error::other("posix_spawn returned a negative pid"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::io::Read;
    use std::os::fd::IntoRawFd;
    use std::os::unix::process::ExitStatusExt;

    /// Fields 5 and 6 of /proc/<pid>/stat as a program printed them: its
    /// process group and session.
    fn group_and_session(stat: &str) -> (u32, u32) {
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        (fields[2].parse().unwrap(), fields[3].parse().unwrap())
    }

    #[test]
    fn a_detached_command_leads_its_own_session() {
        let mut command = Command::new("cat");
        command.arg("/proc/self/stat");
        let out = detach_from_session(&mut command).output().unwrap();
        let (_, session) = group_and_session(&String::from_utf8_lossy(&out.stdout));
        let (_, ours) = group_and_session(&std::fs::read_to_string("/proc/self/stat").unwrap());
        assert_ne!(session, ours);
        // The session's id is its leader's pid, which exited: compare with a
        // second detached child the other way round.
        let mut child = detach_from_session(Command::new("sleep").arg("30"))
            .spawn()
            .unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
        crate::kill(child.id()).unwrap();
        child.wait().unwrap();
        assert_eq!(group_and_session(&stat), (child.id(), child.id()));
    }

    fn cloexec(fd: BorrowedFd<'_>) -> bool {
        // SAFETY: F_GETFD on a borrowed, open descriptor; no memory is passed.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        flags >= 0 && flags & libc::FD_CLOEXEC != 0
    }

    fn clear_cloexec(fd: BorrowedFd<'_>) {
        // SAFETY: F_SETFD on a borrowed, open descriptor; no memory is passed.
        let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
        assert_eq!(rc, 0);
        assert!(!cloexec(fd));
    }

    #[test]
    fn an_adopted_descriptor_is_owned_once_and_closed_on_exec() {
        let file = tempfile::tempfile().unwrap();
        clear_cloexec(file.as_fd());
        let raw = file.into_raw_fd();
        let owned = adopt_inherited_fd(raw).unwrap();
        assert_eq!(owned.as_raw_fd(), raw);
        assert!(cloexec(owned.as_fd()));
        let again = adopt_inherited_fd(raw).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            adopt_inherited_fd(1).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let closed = adopt_inherited_fd(i32::MAX).unwrap_err();
        assert_eq!(closed.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn set_cloexec_sets_the_flag() {
        let file = tempfile::tempfile().unwrap();
        clear_cloexec(file.as_fd());
        set_cloexec(file.as_fd()).unwrap();
        assert!(cloexec(file.as_fd()));
    }

    #[test]
    fn wait_pid_returns_the_status_and_refuses_what_is_not_a_pid() {
        #[allow(clippy::zombie_processes)] // reaped by wait_pid
        let child = Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
        let status = wait_pid(child.id()).unwrap();
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 7);
        assert_eq!(std::process::ExitStatus::from_raw(status).code(), Some(7));
        assert_eq!(wait_pid(0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            wait_pid(u32::MAX).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn a_spawned_child_gets_its_descriptors_and_its_own_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let lock = std::fs::File::create(dir.path().join("lock")).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
        let log_path = dir.path().join("log");
        let log = std::fs::File::create(&log_path).unwrap();
        // The child reports what fds 3 and 4 are, what 0 is, and its process group.
        let script = "readlink /proc/$$/fd/3 /proc/$$/fd/4 /proc/$$/fd/0; \
                      ps -o pgid= -p $$; echo err >&2";
        let pid = spawn_in_new_group(
            Path::new("/bin/sh"),
            &["-c", script],
            log.as_fd(),
            &[
                ChildFd {
                    fd: lock.as_fd(),
                    at: 3,
                    what: "pass the lock",
                },
                ChildFd {
                    fd: listener.as_fd(),
                    at: 4,
                    what: "pass the socket",
                },
            ],
        )
        .unwrap();
        let status = wait_pid(pid).unwrap();
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        let mut out = String::new();
        std::fs::File::open(&log_path)
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            dir.path().join("lock").display().to_string(),
            "{out}"
        );
        assert!(lines[1].starts_with("socket:["), "{out}");
        assert_eq!(lines[2], "/dev/null", "{out}");
        let pgid: u32 = lines[3].trim().parse().unwrap();
        assert_eq!(pgid, pid, "{out}");
        assert_eq!(lines[4], "err", "{out}");
    }

    #[test]
    fn a_spawned_child_has_default_signals_and_an_empty_mask() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let pid = spawn_in_new_group(
            Path::new("/bin/cat"),
            &["/proc/self/status"],
            log.as_fd(),
            &[],
        )
        .unwrap();
        wait_pid(pid).unwrap();
        let out = std::fs::read_to_string(&log_path).unwrap();
        assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
        let ignored = out
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:\t"))
            .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
            .unwrap();
        for signal in [libc::SIGPIPE, libc::SIGINT, libc::SIGTERM] {
            assert_eq!(ignored & (1 << (signal - 1)), 0, "{signal}: {out}");
        }
    }

    #[test]
    fn spawn_errors_name_what_failed() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("x")).unwrap();
        let none: &[&str] = &[];
        let err =
            spawn_in_new_group(Path::new("/nonexistent/pod"), none, f.as_fd(), &[]).unwrap_err();
        assert!(
            err.to_string().starts_with("start /nonexistent/pod: "),
            "{err}"
        );
        let err =
            spawn_in_new_group(Path::new("/bin/true"), &["a\0b"], f.as_fd(), &[]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let stdio = ChildFd {
            fd: f.as_fd(),
            at: 2,
            what: "pass",
        };
        let err =
            spawn_in_new_group(Path::new("/bin/true"), none, f.as_fd(), &[stdio]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_spawned_child_is_killed_by_a_signal_status() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("log")).unwrap();
        let pid = spawn_in_new_group(Path::new("/bin/sleep"), &["30"], f.as_fd(), &[]).unwrap();
        crate::kill_group(pid).unwrap();
        let status = wait_pid(pid).unwrap();
        assert_eq!(
            std::process::ExitStatus::from_raw(status).signal(),
            Some(libc::SIGKILL)
        );
    }
}
