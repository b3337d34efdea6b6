//! Shared by the registry integration tests: helper processes that re-run this test
//! binary as the ignored test `child_role` of the calling module (`registry_processes` and
//! `registry_overlap` each have one) with a role in the environment (set on the child
//! only), and timeouts on every wait.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use manifest::{Permission, ScopeRule};
use pod::runtime::pod_registry::{PodEntry, ProcessIdentity};

/// Environment variable naming the role a helper process plays.
pub(crate) const ROLE_VAR: &str = "POD_REGISTRY_TEST_ROLE";

/// Generous bound on any wait for a helper; a healthy one answers in milliseconds.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// The role this process was started in, if it is a helper.
pub(crate) fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// An environment variable a helper needs.
pub(crate) fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("helper started without {name}"))
}

/// A canonical temp dir with a private runtime dir (`run/`, mode 0700) in it.
pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    /// Canonical root of the temp dir.
    pub root: PathBuf,
    /// The runtime dir.
    pub runtime: PathBuf,
    /// `runtime/pods.json`.
    pub registry: PathBuf,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let runtime = root.join("run");
        std::fs::create_dir(&runtime).unwrap();
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let registry = runtime.join("pods.json");
        Fixture {
            _dir: dir,
            root,
            runtime,
            registry,
        }
    }

    /// `root/rel`, created as a directory.
    pub(crate) fn dir(&self, rel: &str) -> PathBuf {
        let path = self.root.join(rel);
        std::fs::create_dir_all(&path).unwrap();
        path
    }
}

/// A recursive write rule.
pub(crate) fn write(path: impl Into<PathBuf>) -> ScopeRule {
    ScopeRule::recursive(path, Permission::Write)
}

/// An entry for this process named `name` with `rules`.
pub(crate) fn entry_for_me(name: &str, rules: Vec<ScopeRule>) -> PodEntry {
    entry_for(name, std::process::id(), rules)
}

/// An entry for process `pid` named `name` with `rules`.
pub(crate) fn entry_for(name: &str, pid: u32, rules: Vec<ScopeRule>) -> PodEntry {
    PodEntry::new(
        name,
        format!("/nonexistent/{name}/sock"),
        ProcessIdentity::of(pid).unwrap(),
    )
    .unwrap()
    .with_write_rules(rules)
}

/// Takes the pod lock `<runtime>/<name>/lock` as a pod does; held while the file lives.
pub(crate) fn hold_pod_lock(runtime: &Path, name: &str) -> File {
    let dir = runtime.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = File::create(dir.join("lock")).unwrap();
    // SAFETY: flock on a descriptor this process owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0, "pod lock of {name} is already held");
    file
}

/// In a helper: blocks until the parent writes one byte (or closes stdin).
pub(crate) fn wait_for_go() {
    let mut byte = [0u8; 1];
    let _ = std::io::stdin().read(&mut byte);
}

/// In a helper: blocks until the parent closes stdin (or kills us).
pub(crate) fn wait_for_eof() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

/// In a helper: reports a line the parent waits for.
pub(crate) fn report(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// A helper process and its stdout lines.
pub(crate) struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Helper {
    /// Re-runs this test binary as the test `child_role` of `module` (the caller's
    /// `module_path!()`) in `role`, with `envs` set on it only.
    pub(crate) fn spawn(module: &str, role: &str, envs: &[(&str, &Path)]) -> Helper {
        Helper::spawn_without(module, role, envs, &[])
    }

    /// [`Helper::spawn`] with the variables in `remove` taken out of its environment.
    pub(crate) fn spawn_without(
        module: &str,
        role: &str,
        envs: &[(&str, &Path)],
        remove: &[&str],
    ) -> Helper {
        // Test names leave out the crate: `all::registry_processes` -> `registry_processes`.
        let module = module.split_once("::").map_or(module, |(_, rest)| rest);
        let entry = format!("{module}::child_role");
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            &entry,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_VAR, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for k in remove {
            cmd.env_remove(k);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Helper {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// Its pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line containing `prefix` and returns what follows it.
    pub(crate) fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    // The harness prints `test <module>::child_role ... ` before our first line.
                    if let Some(at) = line.find(prefix) {
                        return line[at + prefix.len()..].trim().to_owned();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("helper {} did not print {prefix:?} in {WAIT:?}", self.pid())
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "helper {} exited ({:?}) before printing {prefix:?}",
                    self.pid(),
                    self.child.try_wait()
                ),
            }
        }
    }

    /// Lets a helper blocked in [`wait_for_go`] continue.
    pub(crate) fn go(&mut self) {
        if let Some(stdin) = self.stdin.as_mut() {
            stdin.write_all(b"g").unwrap();
            stdin.flush().unwrap();
        }
    }

    /// Closes its stdin (ends [`wait_for_eof`]) and waits for it to exit.
    pub(crate) fn finish(&mut self) -> ExitStatus {
        self.stdin = None;
        self.wait()
    }

    /// SIGKILLs it and reaps it.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.wait();
    }

    /// Waits for it to exit, at most [`WAIT`].
    pub(crate) fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("helper {} did not exit in {WAIT:?}", self.pid());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
