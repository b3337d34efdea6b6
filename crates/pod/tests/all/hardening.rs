//! Regression tests for the defects an outside attack on the runtime found
//! (issue 18): each reproduces the attack through the `pod` binary.

use crate::common;

use common::{Home, TestPod, doctor_line, events_until, pod, run, text};
use protocol::Event;
use test_support::Family;
use test_support::fake_provider::{FakeProvider, Scripted};
use test_support::script::Turn;

/// Another pod's spilled Bash output and private tmp (in the runtime dir) are
/// out of reach of this pod's file tools; its own spilled output is not.
#[tokio::test]
async fn file_tools_cannot_read_another_pods_runtime_files() {
    let home = Home::new();
    let runtime = home.path("runtime");
    for (path, text) in [
        ("victim/bash-output/1.txt", "SECRET-SPILL of the victim\n"),
        ("victim/tmp/note", "SECRET-TMP of the victim\n"),
    ] {
        let path = runtime.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let server = FakeProvider::start().await;
    let args = |v: serde_json::Value| v.to_string();
    server.push(Scripted::sse(
        Turn::new()
            .call(
                "c1",
                "Grep",
                args(serde_json::json!({"pattern": "SECRET", "path": runtime})),
            )
            .call(
                "c2",
                "Read",
                args(serde_json::json!({"path": runtime.join("victim/tmp/note")})),
            )
            .call(
                "c3",
                "Glob",
                args(serde_json::json!({"pattern": "**/*", "path": runtime.join("victim")})),
            )
            .call(
                "c4",
                "Read",
                args(serde_json::json!({"path": runtime.join("atk/bash-output/7.txt")})),
            )
            .sse(Family::OpenaiChat),
    ));
    server.push(Scripted::sse(
        Turn::new().text("done").sse(Family::OpenaiChat),
    ));
    let pod = TestPod::start(&home, &server, "atk", &[]);
    // Its own runtime dir exists once it runs (private, made by the pod).
    let own = runtime.join("atk/bash-output");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(own.join("7.txt"), "OWN-SPILL line\n").unwrap();
    let mut client = pod.connect().await;
    client.request(&run("look around")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    let requests = server.requests();
    let last = requests.last().expect("a second request").body.to_string();
    assert!(
        !last.contains("SECRET-"),
        "another pod's files leaked: {last}"
    );
    assert!(last.contains("OWN-SPILL line"), "its own spill: {last}");
    assert_eq!(
        last.matches("where pods keep their private files").count(),
        3,
        "{last}"
    );
}

/// Deleting `pods.json` while a pod runs must not let a second pod claim an
/// overlapping scope: the running pods are put back from their status files
/// before any claim, and `pod doctor` names a running pod the file lacks.
#[tokio::test]
async fn a_deleted_registry_does_not_let_scopes_overlap() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    std::fs::create_dir_all(home.path("work/w1/sub")).unwrap();
    let out = pod(&home, &server, &["start", "--name", "ra", "--scope", "w1"]).await;
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_file(home.path("runtime/pods.json")).unwrap();

    let out = pod(&home, &server, &["doctor", "--json"]).await;
    let line = doctor_line(&out, "registry");
    assert_eq!(line["ok"], false, "{line}");
    let detail = line["detail"].as_str().unwrap();
    assert!(detail.contains("without being registered (ra)"), "{detail}");

    let out = pod(
        &home,
        &server,
        &["start", "--name", "rc", "--scope", "w1/sub"],
    )
    .await;
    assert!(
        !out.status.success(),
        "an overlapping claim: {}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"ra\""), "{stderr}");
    // ra is registered again, and a disjoint claim still works.
    std::fs::create_dir_all(home.path("work/w2")).unwrap();
    let out = pod(&home, &server, &["start", "--name", "rd", "--scope", "w2"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = pod(&home, &server, &["doctor", "--json"]).await;
    let doctor = String::from_utf8_lossy(&out.stdout);
    assert!(doctor.contains("2 pod(s) registered, 2 alive"), "{doctor}");
    for name in ["ra", "rd"] {
        let out = pod(&home, &server, &["stop", name]).await;
        assert!(out.status.success(), "{}", text(&out));
    }
}

/// Twelve `pod start --name same` at once, each with its own cwd and scope:
/// exactly one succeeds and reports its own pod, the others fail naming the
/// running one, and the winner's launch options are what was recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_of_one_name_have_one_winner() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    for round in 0..10 {
        #[expect(
            clippy::needless_collect,
            reason = "all twelve start before any is joined"
        )]
        let racers: Vec<
            std::thread::JoinHandle<(std::path::PathBuf, std::process::Output)>,
        > = (0..12)
            .map(|i| {
                let dir = home.path(&format!("work/r{round}d{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                let mut c = home.command(&server.base_url());
                c.args(["start", "--name", "same", "--cwd"])
                    .arg(&dir)
                    .arg("--scope")
                    .arg(&dir);
                std::thread::spawn(move || (dir, c.output().unwrap()))
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter(|(_, o)| o.status.success()).collect();
        let all: Vec<String> = results.iter().map(|(_, o)| text(o)).collect();
        assert_eq!(winners.len(), 1, "round {round}: {all:#?}");
        let (winner_dir, _) = winners[0];
        for (_, out) in results.iter().filter(|(_, o)| !o.status.success()) {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("`same`"), "round {round}: {stderr}");
        }
        // The pod that runs is the winner's, and so are its recorded options.
        let status: serde_json::Value =
            serde_json::from_slice(&std::fs::read(home.path("runtime/same/status.json")).unwrap())
                .unwrap();
        let pid = status["pid"].as_u64().unwrap();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
        assert_eq!(&cwd, winner_dir, "round {round}");
        let launch: serde_json::Value = serde_json::from_slice(
            &std::fs::read(home.path("state/sessions/same/launch.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            launch["cwd"],
            serde_json::json!(winner_dir),
            "round {round}"
        );
        for args in [&["stop", "same"][..], &["rm", "--yes", "same"][..]] {
            let out = pod(&home, &server, args).await;
            assert!(out.status.success(), "{}", text(&out));
        }
    }
}
/// The mode of `path` (permission bits).
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Session logs hold whole conversations: at umask 000, and with a state dir
/// left world-writable, the state dirs end up 0700 and the files 0600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let home = Home::new();
    let server = FakeProvider::start().await;
    let state = home.path("state");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut c = home.command(&server.base_url());
    c.args(["start", "--name", "priv"]);
    // SAFETY: umask(2) is async-signal-safe and touches only the child.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    server.push(Scripted::sse(
        Turn::new().text("hi").sse(Family::OpenaiChat),
    ));
    let out = pod(&home, &server, &["send", "--wait", "priv", "hello"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let session = state.join("sessions/priv");
    for dir in [&state, &state.join("sessions"), &session] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    for file in ["000001.jsonl", "launch.json", "lock", "head"] {
        assert_eq!(mode(&session.join(file)), 0o600, "{file}");
    }
    let out = pod(&home, &server, &["stop", "priv"]).await;
    assert!(out.status.success(), "{}", text(&out));
    // Loosened by hand, they are tightened when the pod opens them again.
    for (path, loose) in [(&session, 0o777), (&session.join("000001.jsonl"), 0o666)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(loose)).unwrap();
    }
    let out = pod(&home, &server, &["restore", "priv"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mode(&session), 0o700);
    assert_eq!(mode(&session.join("000001.jsonl")), 0o600);
    let out = pod(&home, &server, &["stop", "priv"]).await;
    assert!(out.status.success(), "{}", text(&out));
}
