//! Pods spawning pods, end to end: the real binary, every pod scripted
//! through the fake provider by its own name. A parent gives two children
//! disjoint subtrees; each writes its own and fails to write its sibling's or
//! the parent's; the parent hears both finish, reads their output, lists
//! them, stops one and writes there again; a spawn over a live child is a
//! scope conflict. Then the tree survives `kill -9` of the parent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Home, TestPod, WAIT, log_of, run, wait_for};
use protocol::{Event, Method, TurnResult};
use session_store::LogEntry;
use test_support::Family;
use test_support::fake_provider::{FakeProvider, Scripted};
use test_support::script::Turn;

const F: Family = Family::OpenaiChat;

fn key(name: &str) -> String {
    format!("You are `{name}`")
}

fn sse(turn: Turn) -> Scripted {
    Scripted::sse(turn.sse(F))
}

fn json(v: serde_json::Value) -> String {
    v.to_string()
}

fn turn_ends(entries: &[LogEntry]) -> usize {
    entries
        .iter()
        .filter(|e| matches!(e, LogEntry::TurnEnd { .. }))
        .count()
}

fn pod_event_items(entries: &[LogEntry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| match e {
            LogEntry::SystemItem { origin, item, .. } if origin == "pod_event" => {
                Some(serde_json::to_value(&item.0).unwrap().to_string())
            }
            _ => None,
        })
        .collect()
}

/// The tool result for call `id` in a log: (summary + content, is_error).
fn result_of(entries: &[LogEntry], id: &str) -> (String, bool) {
    entries
        .iter()
        .find_map(|e| match e {
            LogEntry::ToolResult { item, .. } => match &item.0 {
                llm_types::Item::ToolResult {
                    call_id,
                    summary,
                    content,
                    is_error,
                } if call_id == id => Some((
                    format!("{summary}\n{}", content.clone().unwrap_or_default()),
                    *is_error,
                )),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or_else(|| panic!("no result for {id}"))
}

fn alive(home: &Home, name: &str) -> bool {
    pod::ipc::listener::is_alive(&home.path("runtime").join(name))
}

/// Scripts one child: it writes its file, tries the sibling and the parent
/// (file tool and command), then reports.
fn script_child(server: &FakeProvider, name: &str, sibling: &str) {
    let k = key(&format!("main.{name}"));
    server.push_for(
        &k,
        sse(Turn::new()
            .call(format!("{name}-own"), "Write", json(serde_json::json!({"path": format!("{name}.txt"), "content": format!("from {name}\n")})))
            .call(format!("{name}-sib"), "Write", json(serde_json::json!({"path": format!("../{sibling}/intruder-{name}.txt"), "content": "no"})))
            .call(format!("{name}-par"), "Write", json(serde_json::json!({"path": format!("../parent-{name}.txt"), "content": "no"})))
            .call(
                format!("{name}-bash"),
                "Bash",
                json(serde_json::json!({"command": format!("echo x > ../{sibling}/bash-{name}.txt; echo y > ../bash-{name}.txt; echo ok > {name}-bash.txt")})),
            )),
    );
    server.push_for(&k, sse(Turn::new().text(format!("{name} done"))));
}

/// A turn calling `SpawnPod` (call `id`) for child `name` with write access to `target`.
fn spawn_call(id: &str, name: &str, target: &Path) -> Turn {
    Turn::new().call(
        id,
        "SpawnPod",
        json(serde_json::json!({
            "name": name,
            "task": "do your part",
            "scope": [{"target": target, "permission": "write"}],
        })),
    )
}

fn stop_quietly(socket: &Path) {
    if let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) {
        use std::io::Write;
        let _ = s.write_all(b"{\"method\":\"shutdown\"}\n");
    }
}

#[tokio::test]
async fn a_parent_delegates_to_two_children_and_gets_its_scope_back() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(Duration::from_secs(20));
    let work = home.path("work");
    let (dir_a, dir_b) = (work.join("a"), work.join("b"));

    script_child(&server, "a", "b");
    script_child(&server, "b", "a");
    let spawn = |name: &str, dir: &PathBuf| {
        json(serde_json::json!({
            "name": name,
            "task": format!("write {name}.txt"),
            "scope": [{"target": dir, "permission": "write", "recursive": true}],
        }))
    };
    let parent = key("main");
    server.push_for(
        &parent,
        sse(Turn::new()
            .text("Delegating.")
            .call("s-a", "SpawnPod", spawn("a", &dir_a))
            .call("s-b", "SpawnPod", spawn("b", &dir_b))),
    );
    server.push_for(&parent, sse(Turn::new().text("Both started.")));

    // Provider options reach the children too (the local model's fence ban is one).
    let overlay = "[model.extra]\nprobe = [\"parent-extra\", false]\n";
    let pod = TestPod::start(&home, &server, "main", &["--overlay", overlay]);
    let mut client = pod.connect().await;
    let (_, mut seen) = client.request(&run("split the work")).await.unwrap();
    while !seen
        .iter()
        .any(|e| matches!(e, Event::RunEnd { .. } | Event::Error { .. }))
    {
        seen.push(
            tokio::time::timeout(WAIT, client.next_event())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    assert!(
        seen.contains(&Event::RunEnd {
            result: TurnResult::Finished
        }),
        "{seen:#?}"
    );
    let main_log = log_of(&home, "main");
    let (spawned_a, err) = result_of(&main_log, "s-a");
    assert!(!err, "{spawned_a}");
    assert!(spawned_a.contains("spawned pod `a`"), "{spawned_a}");

    let logs = |home: &Home| {
        ["main.a", "main.b"]
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(home.path("runtime").join(n).join("pod.log"))
                    .unwrap_or_default();
                format!("{n} pod.log:\n{log}\nsession: {:?}", log_of(home, n).len())
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Both children finish (their logs say so; on a timeout, show what they logged).
    let deadline = Instant::now() + WAIT;
    while !(turn_ends(&log_of(&home, "main.a")) >= 1 && turn_ends(&log_of(&home, "main.b")) >= 1) {
        assert!(
            Instant::now() < deadline,
            "the children did not finish:\n{}",
            logs(&home)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for child in ["main.a", "main.b"] {
        let body = server
            .requests()
            .into_iter()
            .find(|r| r.body.to_string().contains(&key(child)))
            .unwrap_or_else(|| panic!("no request from {child}"))
            .body;
        assert_eq!(
            body["probe"],
            serde_json::json!(["parent-extra", false]),
            "{child}"
        );
    }
    wait_for("both reports", || {
        pod_event_items(&log_of(&home, "main")).len() >= 2
    })
    .await;
    let reports = pod_event_items(&log_of(&home, "main"));
    assert!(
        reports.iter().any(|r| r.contains("`a` finished")),
        "{reports:?}"
    );
    assert!(
        reports.iter().any(|r| r.contains("`b` finished")),
        "{reports:?}"
    );

    // Each wrote its own subtree, and nothing outside it.
    for (name, sibling, dir) in [("a", "b", &dir_a), ("b", "a", &dir_b)] {
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("{name}.txt"))).unwrap(),
            format!("from {name}\n")
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("{name}-bash.txt"))).unwrap(),
            "ok\n"
        );
        assert!(
            !work
                .join(sibling)
                .join(format!("intruder-{name}.txt"))
                .exists()
        );
        assert!(!work.join(format!("parent-{name}.txt")).exists());
        assert!(!work.join(sibling).join(format!("bash-{name}.txt")).exists());
        assert!(!work.join(format!("bash-{name}.txt")).exists());
        let child_log = log_of(&home, &format!("main.{name}"));
        for call in [format!("{name}-sib"), format!("{name}-par")] {
            let (text, is_error) = result_of(&child_log, &call);
            assert!(is_error, "{call}: {text}");
        }
    }

    // The parent, woken by the reports, reads, lists, stops `a`, writes in
    // `a`'s subtree again, and cannot spawn over `b`.
    server.push_for(
        &parent,
        sse(Turn::new()
            .call(
                "r-a",
                "ReadPodOutput",
                json(serde_json::json!({"name": "a"})),
            )
            .call(
                "r-b",
                "ReadPodOutput",
                json(serde_json::json!({"name": "b"})),
            )
            .call("l", "ListPods", "{}")),
    );
    server.push_for(
        &parent,
        sse(Turn::new().call("stop-a", "StopPod", json(serde_json::json!({"name": "a"})))),
    );
    server.push_for(
        &parent,
        sse(Turn::new()
            .call(
                "w-a",
                "Write",
                json(
                    serde_json::json!({"path": dir_a.join("after.txt"), "content": "mine again\n"}),
                ),
            )
            .call("s-c", "SpawnPod", spawn("c", &dir_b.join("sub")))),
    );
    server.push_for(&parent, sse(Turn::new().text("All done.")));
    wait_for("the parent's last answer", || {
        log_of(&home, "main").iter().any(|e| {
            matches!(e, LogEntry::AssistantItem { item, .. } if serde_json::to_string(&item.0).unwrap().contains("All done."))
        })
    }).await;
    wait_for("the parent to be idle", || {
        turn_ends(&log_of(&home, "main")) >= 2
    })
    .await;
    let main_log = log_of(&home, "main");
    let (read_a, _) = result_of(&main_log, "r-a");
    assert!(read_a.contains("a done"), "{read_a}");
    let (read_b, _) = result_of(&main_log, "r-b");
    assert!(read_b.contains("b done"), "{read_b}");
    let (list, _) = result_of(&main_log, "l");
    assert!(
        list.contains(&format!("a [alive] scope=write:{}", dir_a.display())),
        "{list}"
    );
    assert!(
        list.contains(&format!("b [alive] scope=write:{}", dir_b.display())),
        "{list}"
    );
    let (stopped, is_error) = result_of(&main_log, "stop-a");
    assert!(
        !is_error && stopped.contains("stopped pod `a`"),
        "{stopped}"
    );
    assert!(!alive(&home, "main.a"), "a's process is gone");
    let (wrote, is_error) = result_of(&main_log, "w-a");
    assert!(!is_error, "{wrote}");
    assert_eq!(
        std::fs::read_to_string(dir_a.join("after.txt")).unwrap(),
        "mine again\n"
    );
    let (conflict, is_error) = result_of(&main_log, "s-c");
    assert!(
        is_error && conflict.contains("scope_conflict"),
        "{conflict}"
    );
    assert!(alive(&home, "main.b"));

    // Cleanup: `b` outlives the test otherwise (orphans keep running).
    let mut c = pod.connect().await;
    c.send(&Method::Shutdown).await.unwrap();
    stop_quietly(&home.path("runtime/main.b/sock"));
    wait_for("b to stop", || !alive(&home, "main.b")).await;
}

fn registry_json(home: &Home) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(home.path("runtime/pods.json")).unwrap()).unwrap()
}

fn entry_of<'a>(registry: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    registry["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["full_name"] == name)
        .unwrap_or_else(|| panic!("no registry entry for {name}: {registry:#}"))
}

#[tokio::test]
async fn the_tree_survives_a_kill_9_of_the_parent() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(Duration::from_secs(25));
    let work = home.path("work");
    let dir_k = work.join("k");
    let parent = key("main");
    let spawn_k = json(serde_json::json!({
        "name": "k",
        "task": "say hi",
        "scope": [{"target": dir_k, "permission": "write"}],
    }));
    // The parent spawns `k`, then its next request waits: it dies there.
    server.push_for(&parent, sse(Turn::new().call("s-k", "SpawnPod", spawn_k)));
    let mut pod = TestPod::start(&home, &server, "main", &[]);
    let mut client = pod.connect().await;
    client.request(&run("delegate")).await.unwrap();
    wait_for("k to be spawned and asking its model", || {
        server
            .requests()
            .iter()
            .any(|r| r.body.to_string().contains(&key("main.k")))
            && server
                .requests()
                .iter()
                .filter(|r| r.body.to_string().contains(&parent))
                .count()
                >= 2
    })
    .await;
    let before = registry_json(&home);
    let main_id = entry_of(&before, "main")["instance_id"].clone();
    pod.kill9();
    drop(client);
    assert!(alive(&home, "main.k"), "the child outlives its parent");

    // Restored, the parent takes its entry back and re-adopts `k`.
    let pod = TestPod::restore(&home, &server, "main");
    let mut client = pod.connect().await;
    assert_eq!(client.status, protocol::PodStatus::Paused);
    let after = registry_json(&home);
    assert_eq!(entry_of(&after, "main")["instance_id"], main_id);
    assert_eq!(entry_of(&after, "main")["state"], "live");
    assert_eq!(entry_of(&after, "main.k")["parent_instance_id"], main_id);
    assert_eq!(
        entry_of(&after, "main")["delegated"],
        serde_json::json!([dir_k]),
        "the scope is accounted exactly"
    );

    // `k` finishes now; its report reaches the restored parent.
    server.push_for(&key("main.k"), sse(Turn::new().text("hi from k")));
    wait_for("k's report", || {
        pod_event_items(&log_of(&home, "main"))
            .iter()
            .any(|r| r.contains("`k` finished"))
    })
    .await;

    // The restored parent (another process now) sends `k` more work; `k`
    // knows it for its parent through the registry and reports back.
    server.push_for(
        &parent,
        sse(Turn::new().call(
            "again",
            "SendToPod",
            json(serde_json::json!({"name": "k", "message": "once more"})),
        )),
    );
    server.push_for(&parent, sse(Turn::new().text("Sent.")));
    server.push_for(&key("main.k"), sse(Turn::new().text("again from k")));
    let mut seen = client.command(&Method::Resume).await.unwrap();
    while !seen
        .iter()
        .any(|e| matches!(e, Event::RunEnd { .. } | Event::Error { .. }))
    {
        seen.push(
            tokio::time::timeout(WAIT, client.next_event())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    wait_for("k's second report", || {
        pod_event_items(&log_of(&home, "main"))
            .iter()
            .filter(|r| r.contains("`k` finished"))
            .count()
            >= 2
    })
    .await;

    // `k` dies; the parent (woken by the report) lists its pods next, which
    // takes k's subtree back, and writes there.
    let k_pid = entry_of(&registry_json(&home), "main.k")["pid"]
        .as_i64()
        .unwrap() as i32;
    // SAFETY: kill(2) of the child pod process this test started (through its parent).
    unsafe { libc::kill(k_pid, libc::SIGKILL) };
    wait_for("k to die", || !alive(&home, "main.k")).await;
    server.push_for(&parent, sse(Turn::new().call("l", "ListPods", "{}")));
    server.push_for(
        &parent,
        sse(Turn::new().call(
            "w",
            "Write",
            json(serde_json::json!({"path": dir_k.join("mine.txt"), "content": "back\n"})),
        )),
    );
    server.push_for(&parent, sse(Turn::new().text("Recovered.")));
    let mut seen: Vec<Event> = Vec::new();
    while !seen
        .iter()
        .any(|e| matches!(e, Event::RunEnd { .. } | Event::Error { .. }))
    {
        seen.push(
            tokio::time::timeout(WAIT, client.next_event())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    assert!(
        seen.contains(&Event::RunEnd {
            result: TurnResult::Finished
        }),
        "{seen:#?}"
    );
    let main_log = log_of(&home, "main");
    let (list, _) = result_of(&main_log, "l");
    assert!(
        list.contains("k [stopped]") && list.contains("reclaimed"),
        "{list}"
    );
    let (wrote, is_error) = result_of(&main_log, "w");
    assert!(!is_error, "{wrote}");
    assert_eq!(
        std::fs::read_to_string(dir_k.join("mine.txt")).unwrap(),
        "back\n"
    );
    let last = registry_json(&home);
    assert!(
        last["pods"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["full_name"] != "main.k"),
        "{last:#}"
    );
    assert_eq!(entry_of(&last, "main")["delegated"], serde_json::json!([]));
}

#[tokio::test]
async fn spawn_requests_outside_the_rules_are_refused() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(Duration::from_secs(20));
    let work = home.path("work");
    let elsewhere = home.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let rule = |target: &Path, recursive: bool| serde_json::json!({"target": target, "permission": "write", "recursive": recursive});
    let spawn = |name: &str, scope: serde_json::Value| {
        json(serde_json::json!({"name": name, "task": "t", "scope": scope}))
    };
    let parent = key("main");
    server.push_for(
        &parent,
        sse(Turn::new()
            .call(
                "outside",
                "SpawnPod",
                spawn("o", serde_json::json!([rule(&elsewhere, true)])),
            )
            .call(
                "flat",
                "SpawnPod",
                spawn("f", serde_json::json!([rule(&work.join("f"), false)])),
            )
            .call(
                "readonly",
                "SpawnPod",
                spawn(
                    "r",
                    serde_json::json!([{"target": work, "permission": "read"}]),
                ),
            )
            .call(
                "badname",
                "SpawnPod",
                spawn("Bad Name", serde_json::json!([rule(&work.join("n"), true)])),
            )
            .call(
                "x",
                "SpawnPod",
                spawn("x", serde_json::json!([rule(&work.join("x"), true)])),
            )
            // Relative targets start at the parent's working directory.
            .call(
                "relative",
                "SpawnPod",
                spawn("rel", serde_json::json!([rule(Path::new("rel"), true)])),
            )
            .call(
                "up",
                "SpawnPod",
                spawn(
                    "up",
                    serde_json::json!([rule(Path::new("../elsewhere"), true)]),
                ),
            )
            .call(
                "empty",
                "SpawnPod",
                spawn("e", serde_json::json!([rule(Path::new(""), true)])),
            )),
    );
    server.push_for(&key("main.rel"), sse(Turn::new().text("rel done")));
    server.push_for(
        &parent,
        sse(Turn::new().call(
            "overlap",
            "SpawnPod",
            spawn("y", serde_json::json!([rule(&work.join("x/inner"), true)])),
        )),
    );
    server.push_for(&parent, sse(Turn::new().text("Checked.")));
    // x spawns a grandchild y, which may not spawn a fourth level.
    server.push_for(
        &key("main.x"),
        sse(Turn::new().call(
            "gy",
            "SpawnPod",
            spawn("y", serde_json::json!([rule(&work.join("x/y"), true)])),
        )),
    );
    server.push_for(&key("main.x"), sse(Turn::new().text("x done")));
    server.push_for(
        &key("main.x.y"),
        sse(Turn::new().call(
            "gz",
            "SpawnPod",
            spawn("z", serde_json::json!([rule(&work.join("x/y/z"), true)])),
        )),
    );
    server.push_for(&key("main.x.y"), sse(Turn::new().text("y done")));

    let pod = TestPod::start(&home, &server, "main", &[]);
    let mut client = pod.connect().await;
    client.request(&run("try spawning")).await.unwrap();
    wait_for("the grandchild to finish", || {
        turn_ends(&log_of(&home, "main.x.y")) >= 1
    })
    .await;
    wait_for("the parent to finish", || {
        turn_ends(&log_of(&home, "main")) >= 1
    })
    .await;
    let log = log_of(&home, "main");
    for (call, want) in [
        ("outside", "outside this pod's scope"),
        ("flat", "must be recursive"),
        ("readonly", "at least one `write` rule"),
        ("badname", "invalid pod name"),
        ("overlap", "scope_conflict"),
        ("up", "outside this pod's scope"),
        ("empty", "a scope target is empty"),
    ] {
        let (text, is_error) = result_of(&log, call);
        assert!(is_error && text.contains(want), "{call}: {text}");
    }
    let (ok, is_error) = result_of(&log, "x");
    assert!(!is_error, "{ok}");
    let (ok, is_error) = result_of(&log, "relative");
    assert!(
        !is_error && ok.contains(&work.join("rel").display().to_string()),
        "{ok}"
    );
    assert!(work.join("rel").is_dir());
    let (depth, is_error) = result_of(&log_of(&home, "main.x.y"), "gz");
    assert!(is_error && depth.contains("limit_exceeded"), "{depth}");
    assert!(!elsewhere.join("o").exists() && !work.join("f").exists());

    // Stop the tree: the children would outlive the test.
    for name in ["main.x.y", "main.x", "main.rel", "main"] {
        stop_quietly(&home.path("runtime").join(name).join("sock"));
        wait_for("the pod to stop", || !alive(&home, name)).await;
    }
}

#[tokio::test]
async fn at_most_eight_live_children_per_pod() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(Duration::from_secs(20));
    let work = home.path("work");
    let mut turn = Turn::new();
    for i in 0..9 {
        let spawn = json(serde_json::json!({
            "name": format!("c{i}"),
            "task": "wait",
            "scope": [{"target": work.join(format!("c{i}")), "permission": "write"}],
        }));
        turn = turn.call(format!("s{i}"), "SpawnPod", spawn);
        server.push_for(&key(&format!("main.c{i}")), sse(Turn::new().text("ok")));
    }
    server.push_for(&key("main"), sse(turn));
    server.push_for(&key("main"), sse(Turn::new().text("Spawned.")));
    let pod = TestPod::start(&home, &server, "main", &[]);
    let mut client = pod.connect().await;
    client.request(&run("spawn nine")).await.unwrap();
    wait_for("the spawns", || {
        (0..9).all(|i| {
            log_of(&home, "main").iter().any(|e| {
                matches!(e, LogEntry::ToolResult { item, .. }
                    if matches!(&item.0, llm_types::Item::ToolResult { call_id, .. } if *call_id == format!("s{i}")))
            })
        })
    })
    .await;
    let log = log_of(&home, "main");
    let refused: Vec<String> = (0..9)
        .map(|i| result_of(&log, &format!("s{i}")))
        .filter(|(_, is_error)| *is_error)
        .map(|(text, _)| text)
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("limit_exceeded") && refused[0].contains("8"),
        "{refused:?}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pod"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path("home"))
        .env("POD_RUNTIME_DIR", home.path("runtime"))
        .env("POD_HOME", home.path("state"))
        .env("POD_CONFIG_DIR", home.path("config"))
        .args(["stop", "--tree", "main"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!((0..9).all(|i| !alive(&home, &format!("main.c{i}"))));
}

#[tokio::test]
async fn the_per_user_limit_counts_live_spawned_pods_only() {
    use pod::runtime::pod_registry::{self, LockFileGuard, PodEntry, ProcessIdentity};
    use std::os::unix::fs::DirBuilderExt;

    let home = Home::new();
    let runtime = home.path("runtime");
    let private_dir = |p: &Path| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(p)
            .unwrap()
    };
    private_dir(&runtime);
    // 64 spawned pods of other trees, alive as far as the registry can tell: each
    // one's liveness lock is held (by this test).
    let mut locks = Vec::new();
    let mut guard = LockFileGuard::open(&pod_registry::registry_path_in(&runtime)).unwrap();
    let mut registry = guard.load().unwrap();
    for i in 0..64 {
        let name = format!("ghost.g{i}");
        private_dir(&runtime.join(&name));
        let lock = std::fs::File::create(runtime.join(&name).join("lock")).unwrap();
        lock.lock().unwrap();
        locks.push(lock);
        let mut entry = PodEntry::new(
            &name,
            runtime.join(&name).join("sock"),
            ProcessIdentity::current().unwrap(),
        )
        .unwrap();
        entry.parent_instance_id = Some(format!("ghost-parent-{i}"));
        registry.pods.push(entry);
    }
    guard.save(&registry).unwrap();
    drop(guard);

    let server = FakeProvider::start().await;
    let work = home.path("work");
    let spawn = |id: &str, child: &str| spawn_call(id, child, &work.join(child));
    server.push_for(&key("main"), sse(spawn("s0", "c0")));
    server.push_for(&key("main"), sse(Turn::new().text("Refused.")));
    server.push_for(&key("main"), sse(spawn("s1", "c1")));
    server.push_for(&key("main"), sse(Turn::new().text("Spawned.")));
    server.push_for(&key("main.c1"), sse(Turn::new().text("ok")));
    let pod = TestPod::start(&home, &server, "main", &[]);
    let mut client = pod.connect().await;

    client.request(&run("spawn while 64 run")).await.unwrap();
    wait_for("the first turn", || turn_ends(&log_of(&home, "main")) >= 1).await;
    let (refused, is_error) = result_of(&log_of(&home, "main"), "s0");
    assert!(
        is_error && refused.contains("limit_exceeded") && refused.contains("limit 64"),
        "{refused}"
    );
    assert!(!alive(&home, "main.c0"));

    // The 64 die without a word (their locks are released): they no longer count.
    drop(locks);
    client.request(&run("spawn again")).await.unwrap();
    wait_for("the second turn", || turn_ends(&log_of(&home, "main")) >= 2).await;
    let (spawned, is_error) = result_of(&log_of(&home, "main"), "s1");
    assert!(!is_error, "{spawned}");
    let registry = registry_json(&home);
    let names: Vec<&str> = registry["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["full_name"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with("ghost.")),
        "dead pods were not reclaimed: {names:?}"
    );
    stop_quietly(&runtime.join("main.c1").join("sock"));
    stop_quietly(&runtime.join("main").join("sock"));
    wait_for("the tree to stop", || {
        !alive(&home, "main") && !alive(&home, "main.c1")
    })
    .await;
}

#[tokio::test]
async fn a_child_ignores_a_project_manifest_and_keeps_the_parents_sandbox_rules() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let sub = home.path("work/sub");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    // Untrusted, and it would turn the child's sandbox off: an agent could have
    // written it. The child takes its settings from its parent instead.
    std::fs::create_dir_all(sub.join(".pods")).unwrap();
    std::fs::write(
        sub.join(".pods/manifest.toml"),
        "[sandbox]\nmode = \"off\"\n",
    )
    .unwrap();
    server.push_for(&key("main"), sse(spawn_call("s0", "c", &sub)));
    server.push_for(&key("main"), sse(Turn::new().text("Spawned.")));
    server.push_for(
        &key("main.c"),
        sse(Turn::new().call(
            "w",
            "Bash",
            json(serde_json::json!({"command": format!("echo from-child > out.txt; echo x > ../escaped.txt; echo \"[$POD_MODEL][$POD_HOME][${{HOME:+home}}]\" > env.txt; (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo reached > net.txt || echo refused > net.txt")})),
        )),
    );
    server.push_for(&key("main.c"), sse(Turn::new().text("written")));
    server.push_for(&key("main"), sse(Turn::new().text("Done.")));
    // Variables the parent keeps from commands are kept from the child's too, and
    // so is the network.
    let pod = TestPod::start(
        &home,
        &server,
        "main",
        &[
            "--overlay",
            "[sandbox]\nnetwork = false\nenv_remove = [\"POD_MODEL\", \"POD_HO*\"]",
        ],
    );
    let mut client = pod.connect().await;
    client.request(&run("delegate")).await.unwrap();
    wait_for("the child's report", || {
        pod_event_items(&log_of(&home, "main"))
            .iter()
            .any(|e| e.contains("child pod `c` finished its turn"))
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(sub.join("out.txt")).unwrap(),
        "from-child\n"
    );
    // Its commands ran sandboxed: the parent's directory stayed out of reach.
    assert!(!home.path("work/escaped.txt").exists());
    assert_eq!(
        std::fs::read_to_string(sub.join("env.txt")).unwrap(),
        "[][][home]\n"
    );
    assert_eq!(
        std::fs::read_to_string(sub.join("net.txt")).unwrap(),
        "refused\n"
    );
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    stop_quietly(&home.path("runtime").join("main.c").join("sock"));
    stop_quietly(&home.path("runtime").join("main").join("sock"));
    wait_for("the tree to stop", || {
        !alive(&home, "main") && !alive(&home, "main.c")
    })
    .await;
}

#[tokio::test]
async fn a_child_that_cannot_start_is_reported_with_its_error() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let work = home.path("work");
    server.push_for(&key("main"), sse(spawn_call("s0", "c", &work.join("c"))));
    server.push_for(&key("main"), sse(Turn::new().text("Spawned.")));
    server.push_for(&key("main"), sse(Turn::new().text("Noted.")));
    let pod = TestPod::start(&home, &server, "main", &[]);
    // The user manifest breaks after the parent started: the child, which reads it
    // when it starts, exits at once.
    std::fs::write(
        home.path("config/manifest.toml"),
        "[worker]\nmax_llm_calls = \"many\"\n",
    )
    .unwrap();
    let mut client = pod.connect().await;
    client.request(&run("delegate")).await.unwrap();
    wait_for("the failure report", || {
        pod_event_items(&log_of(&home, "main"))
            .iter()
            .any(|e| e.contains("child pod `c` failed"))
    })
    .await;
    let events = pod_event_items(&log_of(&home, "main"));
    let report = events.iter().find(|e| e.contains("failed")).unwrap();
    assert!(
        report.contains("exited with code 1") && report.contains("manifest.toml:2:"),
        "{report}"
    );
    // The parent's model is told (in its first turn or in one of its own,
    // depending on when the report lands) and answers; the child's scope is
    // its own again.
    wait_for("the parent's answer", || {
        let told = server.requests().iter().any(|r| {
            let body = r.body.to_string();
            body.contains("You are `main`") && body.contains("child pod `c` failed")
        });
        let log = log_of(&home, "main");
        let starts = log
            .iter()
            .filter(|e| matches!(e, LogEntry::InvokeStart { .. }))
            .count();
        told && starts == turn_ends(&log) && session_store::Replay::of(log).queued.is_empty()
    })
    .await;
    wait_for("the scope back", || {
        registry_json(&home)["pods"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["full_name"] != "main.c")
    })
    .await;
    stop_quietly(&home.path("runtime").join("main").join("sock"));
    wait_for("the pod to stop", || !alive(&home, "main")).await;
}

/// `shutdown` of a parent stops its subtree first (the child while it works)
/// and starts no model turn on the way out: not for the child's last reports,
/// not for a notification queued while it ran. The notification stays queued
/// in the log for the next start.
#[tokio::test]
async fn a_stopping_parent_stops_its_children_and_starts_no_turn() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let kid_dir = home.path("work/kid");
    server.push_for(&key("lead"), sse(spawn_call("s", "kid", &kid_dir)));
    // Both keep working until stopped: their next answers never come.
    server.push_for(&key("lead"), Scripted::stall(Vec::new()));
    server.push_for(&key("lead.kid"), Scripted::stall(Vec::new()));

    let mut pod = TestPod::start(&home, &server, "lead", &[]);
    let mut client = pod.connect().await;
    client.request(&run("delegate")).await.unwrap();
    wait_for("the kid's request and the lead's second one", || {
        let bodies: Vec<String> = server
            .requests()
            .iter()
            .map(|r| r.body.to_string())
            .collect();
        bodies.iter().any(|b| b.contains("You are `lead.kid`"))
            && bodies
                .iter()
                .filter(|b| b.contains("You are `lead`"))
                .count()
                == 2
    })
    .await;
    assert!(alive(&home, "lead.kid"));
    client
        .request(&Method::Notify {
            message: "while you work".into(),
        })
        .await
        .unwrap();
    let requests_before = server.requests().len();

    stop_quietly(&pod.socket);
    pod.wait_exit();
    assert!(!alive(&home, "lead.kid"), "the child outlived its parent");
    assert_eq!(
        server.requests().len(),
        requests_before,
        "a turn was started"
    );

    let log = log_of(&home, "lead");
    let starts = log
        .iter()
        .filter(|e| matches!(e, LogEntry::InvokeStart { .. }))
        .count();
    assert_eq!((starts, turn_ends(&log)), (1, 1), "{log:#?}");
    assert!(
        log.iter()
            .any(|e| matches!(e, LogEntry::ChildRemoved { name, reason, .. }
            if name == "kid" && reason.contains("stopped with its parent"))),
        "{log:#?}"
    );
    let queued = session_store::Replay::of(log.clone()).queued;
    assert_eq!(queued.len(), 1, "{log:#?}");
    let kid = log_of(&home, "lead.kid");
    assert!(
        matches!(kid.last(), Some(LogEntry::TurnEnd { .. })),
        "{kid:#?}"
    );
}
