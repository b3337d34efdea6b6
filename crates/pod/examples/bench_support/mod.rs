//! What the whole-process benchmarks share: a private pods home in a temp
//! dir, the `pod` command pointed at the fake provider, and small statistics.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A pods home (runtime, state, config dirs) and the binary under test.
pub(crate) struct Env {
    /// The temp dir everything lives in.
    pub dir: tempfile::TempDir,
    /// The release `pod` binary.
    pub bin: PathBuf,
    /// The fake provider's base URL.
    pub base_url: String,
}

impl Env {
    /// A fresh home for `bin` (made absolute), talking to `base_url`.
    pub(crate) fn new(bin: &str, base_url: String) -> Env {
        let bin = PathBuf::from(bin)
            .canonicalize()
            .expect("the pod binary must exist");
        let dir = tempfile::tempdir().unwrap();
        for sub in ["runtime", "state", "config", "home", "work"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::set_permissions(
            dir.path().join("runtime"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        Env { dir, bin, base_url }
    }

    /// The `pod` command with this home's environment only.
    pub(crate) fn command(&self) -> Command {
        let p = |s: &str| self.dir.path().join(s);
        let mut c = Command::new(&self.bin);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", p("home"))
            .env("POD_RUNTIME_DIR", p("runtime"))
            .env("POD_HOME", p("state"))
            .env("POD_CONFIG_DIR", p("config"))
            .env("POD_MODEL_DIR", p("models"))
            .env("POD_BASE_URL", &self.base_url)
            .env("POD_MODEL", "bench")
            .current_dir(p("work"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// The socket of pod `name`.
    pub(crate) fn socket(&self, name: &str) -> PathBuf {
        self.dir.path().join("runtime").join(name).join("sock")
    }

    /// `pod start --foreground` for `name` in a work dir of its own (each pod
    /// needs its own scope), its ready line on the child's stdout.
    pub(crate) fn spawn(&self, name: &str, extra: &[&str]) -> Child {
        let work = self.dir.path().join("work").join(name);
        std::fs::create_dir_all(&work).unwrap();
        let mut c = self.command();
        c.args(["start", "--foreground", "--name", name, "--cwd"])
            .arg(&work)
            .args(extra)
            .stdout(Stdio::piped());
        c.spawn().unwrap()
    }

    /// [`Env::spawn`], then waits for the ready line.
    pub(crate) fn start(&self, name: &str) -> Child {
        use std::io::BufRead;
        let mut child = self.spawn(name, &[]);
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        child
    }
}

/// The median (sorts `v`).
pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// SIGTERM, then wait.
pub(crate) fn stop(child: &mut Child) {
    let _ = sys::terminate(child.id());
    let _ = child.wait();
}
