//! Chaos: a tree of 3 levels and 8 pods on the scripted fake provider, each
//! having run tools (spawns, writes, commands); then, round after round, one
//! pod chosen at random is killed with SIGKILL in the middle of a command
//! (in some rounds its restore is killed too, in the middle of saving the
//! registry: the `POD_FAILPOINT` failpoint) and restored with `pod restore`.
//! After every round: no two live pods hold overlapping write scopes, every
//! live pod is registered, every log verifies, no entry that was in a log
//! before the kill is gone, every registered pod answers (or is reclaimed
//! once dead) and `pod doctor` is clean.
//!
//! Seeded: `POD_CHAOS_SEED` (default a fixed one) and `POD_CHAOS_ROUNDS`
//! (default 6); the seed is printed, so a failure reproduces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Home, TestPod, WAIT, pod, run, text};
use pod_runtime::pod_registry::{self, LockFileGuard, PodState, Registry};
use test_support::Family;
use test_support::fake_provider::{FakeProvider, Scripted};
use test_support::procs::{appears_within, gone_within};
use test_support::script::Turn;

/// The tree: each pod's name and the names of the children it spawns.
const TREE: [(&str, &[&str]); 8] = [
    ("ch", &["a", "b"]),
    ("ch.a", &["x", "y"]),
    ("ch.b", &["x", "y", "z"]),
    ("ch.a.x", &[]),
    ("ch.a.y", &[]),
    ("ch.b.x", &[]),
    ("ch.b.y", &[]),
    ("ch.b.z", &[]),
];

fn key(name: &str) -> String {
    format!("You are `{name}`")
}

fn sse(turn: Turn) -> Scripted {
    Scripted::sse(turn.sse(Family::OpenaiChat))
}

/// splitmix64: a seeded generator, so a failing run reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The directory a pod writes: `work/` for the root, then one level per name part.
fn dir_of(home: &Home, name: &str) -> PathBuf {
    let mut dir = home.path("work");
    for part in name.split('.').skip(1) {
        dir.push(part);
    }
    dir
}

/// Scripts a pod's first turn: spawn its children over their directories,
/// write a file and run a command; then a closing answer.
fn script_tree(home: &Home, server: &FakeProvider) {
    for (name, children) in TREE {
        let mut turn = Turn::new()
            .call(
                format!("{name}-w"),
                "Write",
                serde_json::json!({"path": "mine.txt", "content": format!("{name}\n")}).to_string(),
            )
            .call(
                format!("{name}-b"),
                "Bash",
                serde_json::json!({"command": "echo ran >> ran.txt"}).to_string(),
            );
        for child in children.iter() {
            let dir = dir_of(home, &format!("{name}.{child}"));
            std::fs::create_dir_all(&dir).unwrap();
            turn = turn.call(
                format!("{name}-s-{child}"),
                "SpawnPod",
                serde_json::json!({
                    "name": child,
                    "task": "do your part",
                    "scope": [{"target": dir, "permission": "write", "recursive": true}],
                })
                .to_string(),
            );
        }
        server.push_for(&key(name), sse(turn));
        server.push_for(&key(name), sse(Turn::new().text(format!("{name} done"))));
    }
}

fn alive(home: &Home, name: &str) -> bool {
    pod::ipc::listener::is_alive(&home.path("runtime").join(name))
}

/// A pod's `status.json`, if it has one.
fn status(home: &Home, name: &str) -> Option<serde_json::Value> {
    let bytes = std::fs::read(home.path("runtime").join(name).join("status.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The pods alive now.
fn alive_pods(home: &Home) -> Vec<&'static str> {
    TREE.iter()
        .map(|(n, _)| *n)
        .filter(|n| alive(home, n))
        .collect()
}

/// Waits until every live pod is idle and no request came for a while.
async fn settle(home: &Home, server: &FakeProvider, what: &str) {
    let deadline = Instant::now() + WAIT * 2;
    let mut quiet_since = Instant::now();
    let mut seen = server.requests().len();
    loop {
        let now = server.requests().len();
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
        let idle = alive_pods(home)
            .iter()
            .all(|n| status(home, n).is_some_and(|s| s["status"] == "idle"));
        if idle && quiet_since.elapsed() > Duration::from_millis(300) {
            return;
        }
        let states: Vec<String> = TREE
            .iter()
            .map(|(n, _)| {
                format!(
                    "{n}: alive {} {:?}",
                    alive(home, n),
                    status(home, n).map(|s| s["status"].clone())
                )
            })
            .collect();
        assert!(
            Instant::now() < deadline,
            "{what}: the tree did not settle: {states:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every complete line of every segment of every session: what was
/// acknowledged (written whole to the log) so far, per pod.
fn logged_lines(home: &Home) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for (name, _) in TREE {
        let dir = home.path("state/sessions").join(name);
        let mut lines = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "jsonl") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let complete = text.rfind('\n').map_or("", |i| &text[..i]);
                lines.extend(complete.lines().map(str::to_string));
            }
        }
        out.insert(name.to_string(), lines);
    }
    out
}

/// Whether a pod answers `hello` on the socket its registry entry names.
fn answers(socket: &Path) -> bool {
    use std::io::{BufRead, BufReader};
    let Ok(stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.contains("\"hello\"")
}

/// The invariants that must hold after every round.
async fn check_invariants(
    home: &Home,
    server: &FakeProvider,
    before: &BTreeMap<String, BTreeSet<String>>,
    round: &str,
) {
    // No entry that was in a log is gone, and every log verifies.
    let after = logged_lines(home);
    for (name, lines) in before {
        let now = &after[name];
        let lost: Vec<&String> = lines.difference(now).collect();
        assert!(
            lost.is_empty(),
            "{round}: {name} lost {} entries: {lost:#?}",
            lost.len()
        );
        if !lines.is_empty() {
            let dir = home.path("state/sessions").join(name);
            if let Err(e) = session_store::read_session(&dir) {
                panic!("{round}: the log of {name} does not verify: {e}");
            }
        }
    }
    // Dead pods are reclaimed (as the next claim would); then every entry is
    // a live, answering pod or a suspended one with live descendants, no two
    // pods outside one line of descent overlap, and every live pod is listed.
    let registry_path = pod_registry::registry_path_in(&home.path("runtime"));
    let mut guard = LockFileGuard::open(&registry_path).unwrap();
    let report = pod_registry::reclaim_stale(&mut guard);
    assert!(report.failure.is_none(), "{round}: {:?}", report.failure);
    let registry: Registry = guard.load().unwrap();
    drop(guard);
    let conflicts = registry.conflicts();
    assert!(conflicts.is_empty(), "{round}: {conflicts:#?}");
    for entry in &registry.pods {
        match entry.state {
            PodState::Live => assert!(
                alive(home, &entry.full_name) && answers(&entry.socket_path),
                "{round}: {} is registered live but does not answer",
                entry.full_name
            ),
            PodState::Suspended => {
                let prefix = format!("{}.", entry.full_name);
                assert!(
                    alive_pods(home).iter().any(|n| n.starts_with(&prefix)),
                    "{round}: {} is suspended with no live descendant",
                    entry.full_name
                );
            }
        }
    }
    for name in alive_pods(home) {
        assert!(
            registry.pods.iter().any(|p| p.full_name == name),
            "{round}: {name} runs but is not registered: {registry:#?}"
        );
    }
    let out = pod(home, server, &["doctor", "--json"]).await;
    assert!(out.status.success(), "{round}: pod doctor: {}", text(&out));
}

/// Kills pod `name` (SIGKILL) and waits until its lock is free.
async fn kill9(home: &Home, name: &str) {
    let pid = status(home, name).unwrap()["pid"].as_u64().unwrap();
    // Already gone (the foreground root, killed through its handle) is fine.
    if let Err(e) = sys::kill(pid as u32) {
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH), "kill {name}: {e}");
    }
    let deadline = Instant::now() + WAIT;
    while alive(home, name) {
        assert!(Instant::now() < deadline, "{name} did not die");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_of_pods_survives_kill_9_round_after_round() {
    let seed: u64 = std::env::var("POD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_206);
    let rounds: u32 = std::env::var("POD_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    test_support::loud(&format!(
        "chaos: seed {seed}, {rounds} rounds (POD_CHAOS_SEED, POD_CHAOS_ROUNDS)"
    ));
    let mut rng = Rng(seed);
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.answer_unscripted_with(sse(Turn::new().text("ok")));
    script_tree(&home, &server);

    let root = TestPod::start(&home, &server, "ch", &[]);
    let mut client = root.connect().await;
    client.request(&run("build the tree")).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while alive_pods(&home).len() < TREE.len() {
        assert!(
            Instant::now() < deadline,
            "the tree was not built: {:?}",
            alive_pods(&home)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(client);
    settle(&home, &server, "the tree").await;
    // The root runs in the foreground of this test; from the first round on
    // every pod is a detached process restored with `pod restore`.
    let mut root = Some(root);
    check_invariants(&home, &server, &logged_lines(&home), "start").await;

    let mut killed = 0;
    let mut mid_save = 0;
    let mut reclaimed = 0;
    for round in 0..rounds {
        let live = alive_pods(&home);
        let Some(&victim) = live.get(rng.below(live.len().max(1))) else {
            break;
        };
        let label = format!("round {round} (seed {seed}): {victim}");
        // The victim is in the middle of a command when it dies.
        let token = test_support::procs::sleep_token(100 + round);
        server.push_for(
            &key(victim),
            sse(Turn::new().call(
                format!("r{round}"),
                "Bash",
                serde_json::json!({"command": format!("echo {round} >> rounds.txt; sleep {token}")})
                    .to_string(),
            )),
        );
        let socket = status(&home, victim).unwrap()["socket"]
            .as_str()
            .unwrap()
            .to_string();
        let mut client = pod::client::PodClient::connect(Path::new(&socket))
            .await
            .unwrap();
        client
            .request(&run(&format!("round {round}")))
            .await
            .unwrap();
        assert!(
            appears_within(&token, WAIT),
            "{label}: the command never ran"
        );
        let before = logged_lines(&home);
        if victim == "ch"
            && let Some(mut foreground) = root.take()
        {
            foreground.kill9();
        }
        kill9(&home, victim).await;
        drop(client);
        killed += 1;
        assert!(
            gone_within(&token, Duration::from_secs(10)),
            "{label}: the command outlived its pod"
        );
        if rng.below(3) == 0 {
            // The restore dies between writing the registry and renaming it.
            let (var, value) = pod_registry::lock::FAILPOINT_VAR;
            let mut c = home.command(&server.base_url());
            c.args(["restore", victim]).env(var, value);
            let out = tokio::task::spawn_blocking(move || c.output().unwrap())
                .await
                .unwrap();
            assert!(
                !out.status.success(),
                "{label}: the failpoint did not fire: {}",
                text(&out)
            );
            mid_save += 1;
        }
        let out = pod(&home, &server, &["restore", victim]).await;
        if !out.status.success() {
            // A child whose entry its parent reclaimed cannot come back; it
            // must then be gone from the registry (checked below).
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                victim.contains('.'),
                "{label}: restore failed: {}",
                text(&out)
            );
            assert!(!stderr.is_empty(), "{label}: a failed restore says why");
            reclaimed += 1;
        }
        settle(&home, &server, &label).await;
        check_invariants(&home, &server, &before, &label).await;
    }
    test_support::loud(&format!(
        "chaos: seed {seed}: {rounds} rounds, {killed} pods killed mid-command, {mid_save} restores killed mid-save, {reclaimed} not restorable (reclaimed); invariants held after every round"
    ));
    for name in alive_pods(&home) {
        let _ = pod(&home, &server, &["stop", name]).await;
    }
}
