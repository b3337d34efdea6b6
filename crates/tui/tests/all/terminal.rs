//! Drives `pod-ui` in tmux: type a task and see the answer stream, see a
//! spawned child appear in the tree and read its conversation, cancel a long
//! run with Esc Esc, quit and find the terminal restored.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use test_support::Family;
use test_support::fake_provider::{FakeProvider, Scripted};
use test_support::script::Turn;
use test_support::tmux::Tmux;

/// Bounds every wait.
const WAIT: Duration = Duration::from_secs(30);

/// The `pod` binary, built next to `pod-ui` (`cargo test --workspace` builds
/// both; `cargo test -p pod-tui` alone does not build `pod`).
fn pod_bin() -> PathBuf {
    let ui = Path::new(env!("CARGO_BIN_EXE_pod-ui"));
    let pod = ui.with_file_name("pod");
    assert!(
        pod.exists(),
        "{} is missing: build it first (cargo build -p pod), or run cargo test --workspace",
        pod.display()
    );
    pod
}

fn sse(turn: Turn) -> Scripted {
    Scripted::sse(turn.sse(Family::OpenaiChat))
}

fn key(name: &str) -> String {
    format!("You are `{name}`")
}

/// A pods home: runtime, state, config dirs and a work dir, all temporary.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["runtime", "state", "config", "home", "work"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::set_permissions(
            dir.path().join("runtime"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        Home { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn env(&self, server: &FakeProvider) -> Vec<(&'static str, String)> {
        vec![
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("HOME", self.path("home").display().to_string()),
            (
                "POD_RUNTIME_DIR",
                self.path("runtime").display().to_string(),
            ),
            ("POD_HOME", self.path("state").display().to_string()),
            ("POD_CONFIG_DIR", self.path("config").display().to_string()),
            ("POD_MODEL_DIR", self.path("models").display().to_string()),
            ("POD_BASE_URL", server.base_url()),
            ("POD_MODEL", "test-model".to_string()),
        ]
    }

    fn pod(&self, server: &FakeProvider) -> Command {
        let mut c = Command::new(pod_bin());
        c.env_clear()
            .envs(self.env(server))
            .current_dir(self.path("work"));
        c
    }
}

impl Drop for Home {
    /// Stops every pod this test started (they are detached).
    fn drop(&mut self) {
        for dir in std::fs::read_dir(self.path("runtime"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Some(pid) = std::fs::read_to_string(dir.path().join("pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            {
                let _killed = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
    }
}

#[tokio::test]
async fn the_ui_streams_shows_children_cancels_and_restores_the_terminal() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(WAIT);
    let out = home
        .pod(&server)
        .args(["start", "--name", "boss"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pod start: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let env: Vec<String> = home
        .env(&server)
        .into_iter()
        .chain([
            ("TERM", "xterm-256color".to_string()),
            ("POD_BIN", pod_bin().display().to_string()),
        ])
        .map(|(k, v)| format!("{k}='{v}'"))
        .collect();
    // The UI runs under a shell that outlives it, so the terminal's state
    // after it quits can be read (a dead pane reports no cursor state).
    let tmux = Tmux::start(
        &format!(
            "cd '{}' && env -i {} sh -c \"'{}'; echo ui-exit=\\$?; exec sleep 120\"",
            home.path("work").display(),
            env.join(" "),
            env!("CARGO_BIN_EXE_pod-ui")
        ),
        100,
        30,
    );
    tmux.wait("the UI on boss", WAIT, |s| s.contains("run on boss"))
        .await;
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "1",
        "the UI uses the alternate screen"
    );

    // A task typed in the composer streams its answer into the conversation.
    server.push_for(
        &key("boss"),
        sse(Turn::new()
            .text("Hello from the fake model, in pieces.")
            .in_pieces(6)),
    );
    tmux.keys(&["say hello"]);
    tmux.keys(&["Enter"]);
    tmux.wait("the streamed answer", WAIT, |s| {
        s.contains("Hello from the fake model, in pieces.")
    })
    .await;
    tmux.wait("boss idle again", WAIT, |s| s.contains("○ boss"))
        .await;

    // A scripted SpawnPod makes a child appear in the tree.
    let kid_dir = home.path("work").join("kid");
    std::fs::create_dir_all(&kid_dir).unwrap();
    server.push_for(
        &key("boss"),
        sse(Turn::new().call(
            "s1",
            "SpawnPod",
            serde_json::json!({"name": "kid", "task": "count the files",
                               "scope": [{"target": kid_dir, "permission": "write"}]})
            .to_string(),
        )),
    );
    server.push_for(&key("boss"), sse(Turn::new().text("Spawned kid.")));
    server.push_for(&key("boss"), sse(Turn::new().text("Noted the report.")));
    server.push_for(
        &key("boss.kid"),
        sse(Turn::new().text("kid here: there are no files.")),
    );
    tmux.keys(&["spawn a kid"]);
    tmux.keys(&["Enter"]);
    tmux.wait("the child in the tree", WAIT, |s| {
        s.contains("pods (2)")
            && s.lines()
                .any(|l| l.chars().take(32).collect::<String>().contains(" kid "))
    })
    .await;
    tmux.wait("boss noting the report", WAIT, |s| {
        s.contains("Noted the report.")
    })
    .await;

    // The README shows this screen.
    if let Some(path) = std::env::var_os("POD_UI_CAPTURE") {
        std::fs::write(path, tmux.capture(0)).unwrap();
    }

    // Select the child in the tree: its conversation shows.
    tmux.keys(&["Tab"]);
    tmux.keys(&["Down"]);
    tmux.wait("the child's conversation", WAIT, |s| {
        s.contains("boss.kid") && s.contains("kid here: there are no files.")
    })
    .await;

    // Back to boss and the composer; a run that hangs is cancelled with Esc Esc.
    tmux.keys(&["Up"]);
    tmux.keys(&["Tab"]);
    tmux.keys(&["Tab"]);
    tmux.wait("the composer on boss", WAIT, |s| s.contains("run on boss"))
        .await;
    let partial = Turn::new().text("Working on it").sse(Family::OpenaiChat);
    server.push_for(
        &key("boss"),
        Scripted::stall(partial[..partial.len() / 2].to_vec()),
    );
    tmux.keys(&["do something long"]);
    tmux.keys(&["Enter"]);
    tmux.wait("boss running", WAIT, |s| s.contains("notify boss"))
        .await;
    tmux.keys(&["Escape"]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    tmux.keys(&["Escape"]);
    tmux.wait("the cancelled turn", WAIT, |s| s.contains("cancelled"))
        .await;

    // Ctrl-D quits and gives the terminal back.
    tmux.keys(&["C-d"]);
    tmux.wait("the UI to quit", WAIT, |s| s.contains("ui-exit="))
        .await;
    assert!(tmux.screen().contains("ui-exit=0"), "{}", tmux.screen());
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "0",
        "the alternate screen is left"
    );
    assert_eq!(
        tmux.display("#{cursor_flag}"),
        "1",
        "the cursor is shown again"
    );
}
