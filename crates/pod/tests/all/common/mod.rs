//! A pod process under test: the real binary, started in the foreground with
//! its own runtime, state and config dirs, talking to the fake provider.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pod::client::PodClient;
use protocol::{Event, Method, Segment};
use tempfile::TempDir;
use test_support::fake_provider::FakeProvider;

/// Bounds every wait in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// Where a [`Home`] lives.
pub(crate) enum HomeDir {
    /// A fresh temp dir, removed on drop.
    Temp(TempDir),
    /// A fixed path (emptied first, removed on drop), for the real-model tests:
    /// paths reach the model's prompt, and a small model's answers change
    /// with them.
    Fixed(PathBuf),
}

impl HomeDir {
    pub(crate) fn path(&self) -> &Path {
        match self {
            HomeDir::Temp(t) => t.path(),
            HomeDir::Fixed(p) => p,
        }
    }
}

/// Directories of one test's pods.
pub(crate) struct Home {
    pub dir: HomeDir,
}

impl Home {
    pub(crate) fn new() -> Home {
        Home::in_dir(HomeDir::Temp(tempfile::tempdir().unwrap()))
    }

    /// A home at `path`, which is emptied first. The caller makes sure that no
    /// other test uses it at the same time.
    pub(crate) fn fixed(path: &Path) -> Home {
        if path.exists() {
            std::fs::remove_dir_all(path).unwrap();
        }
        std::fs::create_dir_all(path).unwrap();
        Home::in_dir(HomeDir::Fixed(path.to_path_buf()))
    }

    fn in_dir(dir: HomeDir) -> Home {
        for sub in ["runtime", "state", "config", "home", "work"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let runtime = dir.path().join("runtime");
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        Home { dir }
    }

    pub(crate) fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// The `pod` command with this home's environment and a provider at `base_url`.
    pub(crate) fn command(&self, base_url: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pod"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("POD_RUNTIME_DIR", self.path("runtime"))
            .env("POD_HOME", self.path("state"))
            .env("POD_CONFIG_DIR", self.path("config"))
            .env("POD_MODEL_DIR", self.path("models"))
            .env("POD_BASE_URL", base_url)
            .env("POD_MODEL", "test-model")
            .current_dir(self.path("work"));
        c
    }
}

impl Drop for Home {
    /// Kills every pod still alive under this home (detached pods and child
    /// pods outlive a failed test otherwise).
    fn drop(&mut self) {
        let dirs = std::fs::read_dir(self.path("runtime"));
        for dir in dirs.into_iter().flatten().flatten() {
            let path = dir.path();
            if !pod::ipc::listener::is_alive(&path) {
                continue;
            }
            let pid = std::fs::read_to_string(path.join("pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            if let Some(pid) = pid {
                // SAFETY: kill(2) of a pod process this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let HomeDir::Fixed(path) = &self.dir {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// A pod running in the foreground.
pub(crate) struct TestPod {
    pub child: Child,
    pub name: String,
    pub socket: PathBuf,
}

impl TestPod {
    /// Starts `pod start --foreground --name NAME` and waits for its ready line.
    pub(crate) fn start(home: &Home, server: &FakeProvider, name: &str, extra: &[&str]) -> TestPod {
        TestPod::start_with_env(home, server, name, extra, &[])
    }

    /// Restarts a stopped pod from its session in the foreground (the mode
    /// `pod restore` starts detached).
    pub(crate) fn restore(home: &Home, server: &FakeProvider, name: &str) -> TestPod {
        TestPod::spawn(
            home,
            server,
            name,
            &["__restore-foreground", "--name", name],
        )
    }

    /// As [`TestPod::start`], with variables `env` set for the pod.
    pub(crate) fn start_with_env(
        home: &Home,
        server: &FakeProvider,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> TestPod {
        let mut args = vec!["start", "--foreground", "--name", name];
        args.extend(extra);
        TestPod::spawn_env(home, server, name, &args, env)
    }

    fn spawn(home: &Home, server: &FakeProvider, name: &str, args: &[&str]) -> TestPod {
        TestPod::spawn_env(home, server, name, args, &[])
    }

    fn spawn_env(
        home: &Home,
        server: &FakeProvider,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> TestPod {
        let mut c = home.command(&server.base_url());
        c.envs(env.iter().copied());
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(WAIT)
            .expect("the pod must print its ready line");
        let (got_name, socket) = line
            .trim_end()
            .split_once('\t')
            .unwrap_or_else(|| panic!("ready line: {line:?}"));
        assert_eq!(got_name, name);
        TestPod {
            child,
            name: name.to_string(),
            socket: PathBuf::from(socket),
        }
    }

    pub(crate) async fn connect(&self) -> PodClient {
        tokio::time::timeout(WAIT, PodClient::connect(&self.socket))
            .await
            .unwrap()
            .unwrap()
    }

    /// Waits for the process to exit.
    pub(crate) fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the pod did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestPod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `run` with text input.
pub(crate) fn run(text: &str) -> Method {
    Method::Run {
        input: vec![Segment::text(text)],
    }
}

/// Reads events until `stop` matches one (included); bounded by [`WAIT`].
pub(crate) async fn events_until(
    client: &mut PodClient,
    stop: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(event) = client.next_event().await.unwrap() {
            let done = stop(&event);
            seen.push(event);
            if done {
                return;
            }
        }
        panic!("the pod closed the connection; seen: {seen:#?}");
    })
    .await
    .unwrap_or_else(|_| panic!("timed out"));
    seen
}

/// The `kind`s of log entries (as JSON values).
pub(crate) fn kinds(entries: &[serde_json::Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Whether a path exists (for readable assertions).
pub(crate) fn exists(p: &Path) -> bool {
    p.exists()
}

/// A child process killed and reaped when dropped (so a failing test leaves
/// no pod behind holding the test's output pipes).
pub(crate) struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `pod ARGS` to completion (off the test's runtime, which serves the fake).
pub(crate) async fn pod(home: &Home, server: &FakeProvider, args: &[&str]) -> Output {
    let mut c = home.command(&server.base_url());
    c.args(args);
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

/// A command's exit code, stdout and stderr, for assertion messages.
pub(crate) fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The doctor line called `name` from `pod doctor --json`.
pub(crate) fn doctor_line(out: &Output, name: &str) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    let all_ok = checks.iter().all(|c| c["ok"] == true);
    assert_eq!(out.status.success(), all_ok, "{}", text(out));
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no `{name}` line: {}", text(out)))
        .clone()
}

/// Entries of a pod's session log (read-only, while it runs).
pub(crate) fn log_of(home: &Home, name: &str) -> Vec<session_store::LogEntry> {
    match session_store::read_session(home.path("state/sessions").join(name)) {
        Ok(log) => log.entries().cloned().collect(),
        Err(_) => Vec::new(),
    }
}

/// Polls `done` (without blocking the test's runtime, which serves the fake
/// provider) until it holds.
pub(crate) async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A scripted turn as an OpenAI Chat stream.
pub(crate) fn sse(turn: test_support::script::Turn) -> test_support::fake_provider::Scripted {
    test_support::fake_provider::Scripted::sse(turn.sse(test_support::Family::OpenaiChat))
}

/// What the system prompt of pod `name` says, to script and find its requests.
pub(crate) fn key(name: &str) -> String {
    format!("You are `{name}`")
}

/// The bodies of the requests pod `name` made, in order.
pub(crate) fn requests_of(server: &FakeProvider, name: &str) -> Vec<String> {
    let key = key(name);
    server
        .requests()
        .iter()
        .map(|r| r.body.to_string())
        .filter(|b| b.contains(&key))
        .collect()
}

/// Pod `name`'s request number `n` (from 1), once it was made.
pub(crate) async fn nth_request(server: &FakeProvider, name: &str, n: usize) -> String {
    wait_for(&format!("{name}'s request {n}"), || {
        requests_of(server, name).len() >= n
    })
    .await;
    requests_of(server, name).swap_remove(n - 1)
}
