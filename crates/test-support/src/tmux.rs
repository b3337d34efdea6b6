//! A real terminal for tests: a tmux server of the test's own (its socket in a
//! temp dir), driven with `send-keys` and read with `capture-pane`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server with one session, `t`, killed on drop.
pub struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts a detached `width` × `height` session running `shell`.
    ///
    /// # Panics
    /// Without tmux: the terminal behaviour is tested nowhere else, so a
    /// missing tmux fails loudly instead of skipping.
    pub fn start(shell: &str, width: u16, height: u16) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let tmux = Tmux {
            socket: dir.path().join("tmux.sock"),
            _dir: dir,
        };
        let status = tmux
            .command()
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "t", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(shell)
            .status()
            .expect("tmux is needed for the terminal tests (apt-get install -y tmux)");
        assert!(status.success(), "tmux new-session failed: {status:?}");
        tmux
    }

    /// `tmux` talking to this server.
    pub fn command(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }

    /// Sends keys (tmux key names, or literal text).
    ///
    /// # Panics
    /// If tmux refuses them.
    pub fn keys(&self, keys: &[&str]) {
        let status = self
            .command()
            .args(["send-keys", "-t", "t"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success(), "tmux send-keys {keys:?} failed");
    }

    /// The pane's text, with `history` lines of scrollback.
    ///
    /// # Panics
    /// If tmux cannot be run.
    pub fn capture(&self, history: u32) -> String {
        let out = self
            .command()
            .args(["capture-pane", "-p", "-t", "t", "-S"])
            .arg(format!("-{history}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The pane's text, history included.
    pub fn screen(&self) -> String {
        self.capture(500)
    }

    /// A tmux format evaluated for the pane (e.g. `#{alternate_on}`).
    ///
    /// # Panics
    /// If tmux cannot be run.
    pub fn display(&self, format: &str) -> String {
        let out = self
            .command()
            .args(["display-message", "-p", "-t", "t", format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits up to `timeout` until `done` holds for the screen.
    ///
    /// # Panics
    /// On timeout, showing the screen.
    pub async fn wait(&self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _killed = self.command().arg("kill-server").status();
    }
}
