//! The Bash tool with the sandbox off (arguments, results, spilling, the gate, the policy
//! source), and its refusal to run when the helper cannot be started. The sandboxed runs
//! are tested with the pod binary in `crates/pod/tests/all/sandbox_escape.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use manifest::SandboxMode;
use tool::{Tool, ToolError};
use tools::bash::{Bash, BashConfig, PolicySource, SPILL_DIR_NAME, bash_tool};
use tools::sandbox::{HelperCommand, SandboxPolicy, WriteRoot};

/// A canonical temp dir with `work/` (cwd), `tmp/` and `rt/` (the output dir).
struct Fixture {
    _dir: tempfile::TempDir,
    work: PathBuf,
    tmp: PathBuf,
    rt: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let fx = Fixture {
            work: root.join("work"),
            tmp: root.join("tmp"),
            rt: root.join("rt"),
            _dir: dir,
        };
        for d in [&fx.work, &fx.tmp, &fx.rt] {
            std::fs::create_dir_all(d).unwrap();
        }
        fx
    }

    fn policy(&self) -> SandboxPolicy {
        SandboxPolicy {
            cwd: self.work.clone(),
            write_roots: vec![WriteRoot {
                path: self.work.clone(),
                recursive: true,
            }],
            tmp_dir: self.tmp.clone(),
            ..SandboxPolicy::default()
        }
    }

    fn config(&self, mode: SandboxMode) -> BashConfig {
        let policy = self.policy();
        let source: Arc<dyn PolicySource> = Arc::new(move || policy.clone());
        BashConfig::new(
            HelperCommand::new("/nonexistent/pod", ["__sandbox-exec"]),
            source,
            mode,
            &self.rt,
        )
    }

    fn bash(&self) -> Bash {
        Bash::new(self.config(SandboxMode::Off))
    }
}

fn call(command: &str) -> String {
    serde_json::json!({ "command": command }).to_string()
}

#[tokio::test]
async fn factory_gives_meta_and_a_working_tool() {
    let fx = Fixture::new();
    let def = bash_tool(fx.config(SandboxMode::Off));
    let (meta, tool) = def();
    assert_eq!(meta.name, "Bash");
    assert!(meta.description.contains("sandbox is off"));
    let out = tool.execute(&call("echo hi")).await.unwrap();
    assert_eq!(out.summary, "exit code 0");
    assert_eq!(out.content.as_deref(), Some("hi\n"));
}

#[tokio::test]
async fn a_failing_command_is_a_normal_result_with_its_code_and_output() {
    let fx = Fixture::new();
    let out = fx
        .bash()
        .execute(&call("echo oops >&2; exit 4"))
        .await
        .unwrap();
    assert_eq!(out.summary, "exit code 4");
    assert_eq!(out.content.as_deref(), Some("oops\n"));
}

#[tokio::test]
async fn bad_arguments_are_refused_before_anything_runs() {
    let fx = Fixture::new();
    let bash = fx.bash();
    let cases = [
        ("not json", "expected {\"command\": string"),
        (r#"{"timeout_ms": 5}"#, "missing field `command`"),
        (r#"{"command": 5}"#, "invalid type"),
        (r#"{"command": "   "}"#, "command is empty"),
        (r#"{"command": "a\u0000b"}"#, "NUL byte"),
        (r#"{"command": "true", "timeout_ms": 0}"#, "at least 1"),
        (r#"{"command": "true", "timeout_ms": -5}"#, "invalid value"),
        (r#"{"command": "true", "timeout_ms": "5"}"#, "invalid type"),
    ];
    for (input, expected) in cases {
        match bash.execute(input).await {
            Err(ToolError::InvalidArgument(msg)) => {
                assert!(msg.contains(expected), "{input}: {msg}")
            }
            other => panic!("{input}: got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_timeout_above_the_maximum_is_clamped_with_a_note() {
    let fx = Fixture::new();
    let out = fx
        .bash()
        .execute(r#"{"command": "echo ok", "timeout_ms": 900000}"#)
        .await
        .unwrap();
    assert_eq!(
        out.content.as_deref(),
        Some(
            "[timeout_ms 900000 is above the maximum of 600000; the command ran with 600000 ms]\nok\n"
        )
    );
}

#[tokio::test]
async fn a_timed_out_command_says_so_and_keeps_its_output() {
    let fx = Fixture::new();
    let out = fx
        .bash()
        .execute(r#"{"command": "echo before; sleep 20", "timeout_ms": 300}"#)
        .await
        .unwrap();
    assert_eq!(
        out.summary,
        "timed out after 300 ms and was killed, with everything it started"
    );
    assert_eq!(out.content.as_deref(), Some("before\n"));
}

#[tokio::test]
async fn output_over_30_kib_is_spilled_to_bash_output_and_the_tail_returned() {
    let fx = Fixture::new();
    let out = fx
        .bash()
        .execute(&call("seq 1 20000; echo END"))
        .await
        .unwrap();
    let expected: String = (1..=20000)
        .map(|i| format!("{i}\n"))
        .chain(std::iter::once("END\n".to_owned()))
        .collect();
    let spill_dir = fx.rt.join(SPILL_DIR_NAME);
    let files: Vec<PathBuf> = std::fs::read_dir(&spill_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), expected);
    assert_eq!(
        out.summary,
        format!("exit code 0; output saved to {}", files[0].display())
    );
    let content = out.content.unwrap();
    let (header, tail) = content.split_once('\n').unwrap();
    assert_eq!(
        header,
        format!(
            "[{} bytes of output; all of it is in {} (read it with the Read tool); the last 30720 bytes follow]",
            expected.len(),
            files[0].display()
        )
    );
    assert_eq!(tail.len(), 30 * 1024);
    assert!(expected.ends_with(tail));
}

#[tokio::test]
async fn the_policy_is_asked_for_every_command() {
    let fx = Fixture::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let policy = fx.policy();
    let counted = calls.clone();
    let source: Arc<dyn PolicySource> = Arc::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        policy.clone()
    });
    let mut config = fx.config(SandboxMode::Off);
    config.policy = source;
    let bash = Bash::new(config);
    bash.execute(&call("true")).await.unwrap();
    bash.execute(&call("true")).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_command_waits_for_a_delegation_in_progress() {
    let fx = Fixture::new();
    let config = fx.config(SandboxMode::Off);
    let gate = config.gate.clone();
    let bash = Bash::new(config);
    let delegation = gate.delegation().await;
    let running = tokio::spawn(async move { bash.execute(&call("echo ran > ran")).await });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(!running.is_finished());
    assert!(!fx.work.join("ran").exists(), "ran during a delegation");
    drop(delegation);
    let out = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(out.summary, "exit code 0, no output");
    assert!(fx.work.join("ran").exists());
}

#[tokio::test]
async fn with_the_sandbox_on_a_missing_helper_is_an_execution_error() {
    let fx = Fixture::new();
    let bash = Bash::new(fx.config(SandboxMode::Auto));
    match bash.execute(&call("echo ran > ran")).await {
        Err(ToolError::ExecutionFailed(msg)) => assert!(msg.contains("/nonexistent/pod"), "{msg}"),
        other => panic!("got {other:?}"),
    }
    assert!(!fx.work.join("ran").exists());
}
