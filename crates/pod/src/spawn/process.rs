//! Starting a child pod process from a multi-threaded pod: `posix_spawn` with
//! file actions (never `fork` plus code in the child), so the child gets
//! exactly the descriptors it should — its liveness lock and its listening
//! socket at fixed numbers, its log as stdout and stderr — in a process group
//! of its own (so it can be stopped as a group, and a Ctrl-C aimed at the
//! spawner does not reach it).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The descriptor number the child finds its liveness lock at.
pub const CHILD_LOCK_FD: RawFd = 3;
/// The descriptor number the child finds its listening socket at.
pub const CHILD_LISTEN_FD: RawFd = 4;

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", s.to_string_lossy()),
        )
    })
}

fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        // posix_spawn* return the error number instead of setting errno.
        Err(io::Error::new(
            io::Error::from_raw_os_error(rc).kind(),
            format!("{what}: {}", io::Error::from_raw_os_error(rc)),
        ))
    }
}

/// A duplicate of `fd` numbered above the ones the child expects (so that
/// `dup2` onto 3 and 4 never meets a source already there), close-on-exec.
fn high_dup(fd: RawFd) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: fcntl on a descriptor the caller owns; the result is a new one we own.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor returned to us.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(new) })
}

/// Spawns `program args` with `lock` at fd 3, `listener` at fd 4, stdin from
/// `/dev/null`, stdout and stderr to `log`, in a new process group, with this
/// process's environment. Returns the child's pid.
pub fn spawn_child(
    program: &Path,
    args: &[String],
    lock: &impl AsRawFd,
    listener: &impl AsRawFd,
    log: &impl AsRawFd,
) -> io::Result<u32> {
    let lock = high_dup(lock.as_raw_fd())?;
    let listener = high_dup(listener.as_raw_fd())?;
    let log = high_dup(log.as_raw_fd())?;

    let mut argv_owned = vec![cstring(program.as_os_str())?];
    for a in args {
        argv_owned.push(cstring(OsStr::new(a))?);
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
    let dev_null = c"/dev/null";

    // SAFETY: the attribute and file-action objects are initialised before use
    // and destroyed on every path; every pointer handed to posix_spawn (argv,
    // envp, paths) outlives the call.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        check(
            libc::posix_spawn_file_actions_init(&mut actions),
            "posix_spawn_file_actions_init",
        )?;
        if let Err(e) = check(
            libc::posix_spawnattr_init(&mut attr),
            "posix_spawnattr_init",
        ) {
            libc::posix_spawn_file_actions_destroy(&mut actions);
            return Err(e);
        }
        let result = (|| {
            check(
                libc::posix_spawn_file_actions_addopen(
                    &mut actions,
                    0,
                    dev_null.as_ptr(),
                    libc::O_RDONLY,
                    0,
                ),
                "redirect stdin",
            )?;
            check(
                libc::posix_spawn_file_actions_adddup2(&mut actions, log.as_raw_fd(), 1),
                "redirect stdout",
            )?;
            check(
                libc::posix_spawn_file_actions_adddup2(&mut actions, log.as_raw_fd(), 2),
                "redirect stderr",
            )?;
            check(
                libc::posix_spawn_file_actions_adddup2(
                    &mut actions,
                    lock.as_raw_fd(),
                    CHILD_LOCK_FD,
                ),
                "pass the lock",
            )?;
            check(
                libc::posix_spawn_file_actions_adddup2(
                    &mut actions,
                    listener.as_raw_fd(),
                    CHILD_LISTEN_FD,
                ),
                "pass the socket",
            )?;
            let mut default_signals: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut default_signals);
            libc::sigaddset(&mut default_signals, libc::SIGPIPE);
            libc::sigaddset(&mut default_signals, libc::SIGINT);
            libc::sigaddset(&mut default_signals, libc::SIGTERM);
            let mut no_mask: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut no_mask);
            check(
                libc::posix_spawnattr_setsigdefault(&mut attr, &default_signals),
                "signal defaults",
            )?;
            check(
                libc::posix_spawnattr_setsigmask(&mut attr, &no_mask),
                "signal mask",
            )?;
            check(
                libc::posix_spawnattr_setpgroup(&mut attr, 0),
                "process group",
            )?;
            let flags = libc::POSIX_SPAWN_SETPGROUP
                | libc::POSIX_SPAWN_SETSIGMASK
                | libc::POSIX_SPAWN_SETSIGDEF;
            check(
                libc::posix_spawnattr_setflags(&mut attr, flags as libc::c_short),
                "spawn flags",
            )?;
            let mut pid: libc::pid_t = 0;
            check(
                libc::posix_spawn(
                    &mut pid,
                    argv_owned[0].as_ptr(),
                    &actions,
                    &attr,
                    argv.as_mut_ptr(),
                    envp.as_mut_ptr(),
                ),
                &format!("start {}", program.display()),
            )?;
            u32::try_from(pid).map_err(|_| io::Error::other("posix_spawn returned a negative pid"))
        })();
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        result
    }
}

/// Waits for child `pid` on a thread of its own (so it never lingers as a zombie),
/// then calls `on_exit` with its wait status.
pub fn reap_later(pid: u32, on_exit: impl FnOnce(i32) + Send + 'static) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name(format!("reap-{pid}"))
        .spawn(move || {
            let mut status = 0;
            // SAFETY: waitpid on our own child; `status` is a valid out pointer.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            if rc == pid {
                on_exit(status);
            }
        });
}

/// What to tell the parent about a child that ended with wait `status`, or `None`
/// for a clean exit (code 0: it was stopped, or stopped itself after reporting).
/// The message ends with the tail of its output in `log`, where startup errors go.
pub fn exit_report(status: i32, log: &Path) -> Option<String> {
    let how = if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => return None,
            code => format!("its process exited with code {code}"),
        }
    } else if libc::WIFSIGNALED(status) {
        format!(
            "its process was killed by signal {}",
            libc::WTERMSIG(status)
        )
    } else {
        return None;
    };
    /// The most of the log's end quoted.
    const TAIL: usize = 2_000;
    let text = std::fs::read(log).unwrap_or_default();
    let tail = String::from_utf8_lossy(&text[text.len().saturating_sub(TAIL)..]);
    let tail = tail.trim();
    Some(if tail.is_empty() {
        format!("{how} (nothing in {})", log.display())
    } else {
        format!("{how}; the end of its output ({}):\n{tail}", log.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_child_gets_its_descriptors_and_its_own_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let lock = std::fs::File::create(dir.path().join("lock")).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
        let log_path = dir.path().join("log");
        let log = std::fs::File::create(&log_path).unwrap();
        // The child reports what fds 3 and 4 are and its process group.
        let script =
            "ls -l /proc/$$/fd/3 /proc/$$/fd/4 | sed 's/.*-> //'; ps -o pgid= -p $$; echo pid $$";
        let pid = spawn_child(
            Path::new("/bin/sh"),
            &["-c".into(), script.into()],
            &lock,
            &listener,
            &log,
        )
        .unwrap();
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid as i32, &mut status, 0) };
        let mut out = String::new();
        std::fs::File::open(&log_path)
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(
            out.contains(&dir.path().join("lock").display().to_string()),
            "{out}"
        );
        assert!(out.contains("socket:["), "{out}");
        let pgid: u32 = out.lines().nth(2).unwrap().trim().parse().unwrap();
        assert_eq!(pgid, pid, "{out}");
    }

    #[test]
    fn a_missing_program_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("x")).unwrap();
        let err = spawn_child(Path::new("/nonexistent/pod"), &[], &f, &f, &f).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pod"), "{err}");
    }
}
