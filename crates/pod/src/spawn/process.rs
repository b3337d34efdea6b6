//! Starting a child pod process from a multi-threaded pod: `posix_spawn` with
//! file actions (never `fork` plus code in the child), so the child gets
//! exactly the descriptors it should — its liveness lock and its listening
//! socket at fixed numbers, its log as stdout and stderr — in a process group
//! of its own (so it can be stopped as a group, and a Ctrl-C aimed at the
//! spawner does not reach it).

use std::io;
use std::os::fd::{AsFd, RawFd};
use std::path::Path;

/// The descriptor number the child finds its liveness lock at.
pub(crate) const CHILD_LOCK_FD: RawFd = 3;
/// The descriptor number the child finds its listening socket at.
pub(crate) const CHILD_LISTEN_FD: RawFd = 4;

/// Spawns `program args` with `lock` at fd 3, `listener` at fd 4, stdin from
/// `/dev/null`, stdout and stderr to `log`, in a new process group, with this
/// process's environment (`sys::spawn_in_new_group`). Returns the child's pid.
pub(crate) fn spawn_child(
    program: &Path,
    args: &[String],
    lock: &impl AsFd,
    listener: &impl AsFd,
    log: &impl AsFd,
) -> io::Result<u32> {
    sys::spawn_in_new_group(
        program,
        args,
        log.as_fd(),
        &[
            sys::ChildFd {
                fd: lock.as_fd(),
                at: CHILD_LOCK_FD,
                what: "pass the lock",
            },
            sys::ChildFd {
                fd: listener.as_fd(),
                at: CHILD_LISTEN_FD,
                what: "pass the socket",
            },
        ],
    )
}

/// Waits for child `pid` on a thread of its own (so it never lingers as a zombie),
/// then calls `on_exit` with its wait status.
pub(crate) fn reap_later(pid: u32, on_exit: impl FnOnce(i32) + Send + 'static) {
    if libc::pid_t::try_from(pid).is_err() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name(format!("reap-{pid}"))
        .spawn(move || {
            if let Ok(status) = sys::wait_pid(pid) {
                on_exit(status);
            }
        });
}

/// What to tell the parent about a child that ended with wait `status`, or `None`
/// for a clean exit (code 0: it was stopped, or stopped itself after reporting).
/// The message ends with the tail of its output in `log`, where startup errors go.
pub(crate) fn exit_report(status: i32, log: &Path) -> Option<String> {
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
        sys::wait_pid(pid).unwrap();
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
