//! The no-sandbox path (`[sandbox] mode = "off"`): plain `bash -c` in its own process
//! group, killed as a group when bash exits or times out. The sandboxed path needs the
//! pod binary as its helper and is tested in `crates/pod/tests/all/sandbox_escape.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use sandbox::{CommandStatus, RunOptions, SandboxPolicy, WriteRoot, run_unconfined};
use test_support::procs::{gone_within, process_with, sleep_token};

/// A canonical temp dir with `work/` (cwd) and `tmp/` (the pod's tmp dir).
struct Fixture {
    _dir: tempfile::TempDir,
    work: PathBuf,
    tmp: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let work = root.join("work");
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        Fixture {
            _dir: dir,
            work,
            tmp,
        }
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
}

fn options(timeout: Duration) -> RunOptions {
    RunOptions {
        timeout,
        ..RunOptions::default()
    }
}

#[tokio::test]
async fn runs_in_the_cwd_with_tmpdir_and_interleaved_output() {
    let fx = Fixture::new();
    let out = run_unconfined(
        &fx.policy(),
        "pwd; echo \"$TMPDIR\"; echo to-stderr >&2; read -r line; echo \"stdin:[$line]\"; exit 3",
        &options(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    assert_eq!(out.status, CommandStatus::Exited(3));
    assert!(!out.timed_out);
    assert_eq!(out.level, None);
    assert_eq!(
        out.output.text(),
        format!(
            "{}\n{}\nto-stderr\nstdin:[]\n",
            fx.work.display(),
            fx.tmp.display()
        )
    );
}

#[tokio::test]
async fn background_jobs_die_when_bash_exits() {
    let fx = Fixture::new();
    let token = sleep_token(12);
    let out = run_unconfined(
        &fx.policy(),
        &format!("echo early > early; (sleep {token}; echo late > late) & nohup sh -c 'sleep {token}; echo late2 > late2' >/dev/null 2>&1 & echo started"),
        &options(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(fx.work.join("early").exists());
    // They would sleep 30 s: any still there after 10 s outlived bash.
    assert!(
        gone_within(&token, Duration::from_secs(10)),
        "a background job outlived bash"
    );
}

#[tokio::test]
async fn timeout_kills_the_whole_group_promptly() {
    let fx = Fixture::new();
    let token = sleep_token(1);
    let started = std::time::Instant::now();
    let out = run_unconfined(
        &fx.policy(),
        &format!("echo begun; sleep {token} & sleep {token}"),
        &options(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert!(out.timed_out);
    assert_eq!(out.status, CommandStatus::Signaled(libc::SIGKILL));
    assert_eq!(out.output.text(), "begun\n");
    // Generous bound: the point is "not 30 s".
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !process_with(&token),
        "a sleep of the timed-out command survived"
    );
}

#[tokio::test]
async fn large_output_is_spilled_and_its_tail_kept() {
    let fx = Fixture::new();
    let spill = fx.tmp.join("spill");
    let out = run_unconfined(
        &fx.policy(),
        "seq 1 20000",
        &RunOptions {
            timeout: Duration::from_secs(30),
            output_limit: 1000,
            spill_dir: Some(spill.clone()),
        },
    )
    .await
    .unwrap();
    let expected: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    assert!(out.output.truncated);
    assert_eq!(out.output.total_bytes, expected.len() as u64);
    assert_eq!(out.output.bytes.len(), 1000);
    assert!(expected.ends_with(&out.output.text()));
    let file = out.output.spill_path.unwrap();
    assert!(file.starts_with(&spill));
    assert_eq!(std::fs::read_to_string(file).unwrap(), expected);
}

#[tokio::test]
async fn a_missing_cwd_is_a_clear_error() {
    let fx = Fixture::new();
    let mut policy = fx.policy();
    policy.cwd = fx.work.join("missing");
    let err = run_unconfined(&policy, "true", &options(Duration::from_secs(30)))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("cannot start bash: "), "{msg}");
    assert!(msg.contains(&policy.cwd.display().to_string()), "{msg}");
}
