//! Approvals end to end: the real binary, the scripted fake provider, an
//! `ask` rule on `git push`, and a person answering from the root of a tree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Home, TestPod, events_until, key, log_of, nth_request, run, sse, wait_for};
use pod::client::PodClient;
use protocol::{ApprovalRequest, Event, Method};
use session_store::LogEntry;
use test_support::fake_provider::FakeProvider;
use test_support::script::Turn;

/// The push the rule asks about; the `echo` shows whether (and how often) it ran.
const PUSH: &str = "git push origin main 2>/dev/null; echo pushed >> pushed.txt";

fn push(id: &str) -> Turn {
    Turn::new().call(
        id,
        "Bash",
        serde_json::json!({ "command": PUSH }).to_string(),
    )
}

fn spawn(id: &str, name: &str, target: &std::path::Path) -> Turn {
    Turn::new().call(
        id,
        "SpawnPod",
        serde_json::json!({
            "name": name,
            "task": "push the branch",
            "scope": [{"target": target, "permission": "write"}],
        })
        .to_string(),
    )
}

fn overlay(timeout_s: u64) -> String {
    format!(
        "[[permissions]]\ntool = \"Bash\"\ncommand = \"git push*\"\ndecision = \"ask\"\n\n[approvals]\ntimeout_s = {timeout_s}\n"
    )
}

/// Reads events until an approval request arrives.
async fn next_request(client: &mut PodClient) -> ApprovalRequest {
    let events = events_until(client, |e| matches!(e, Event::ApprovalRequest(_))).await;
    match events.into_iter().last() {
        Some(Event::ApprovalRequest(r)) => r,
        other => panic!("{other:?}"),
    }
}

/// The pending requests the pod lists (`approvals`).
async fn list(client: &mut PodClient) -> Vec<ApprovalRequest> {
    client.send(&Method::Approvals).await.unwrap();
    let events = events_until(client, |e| matches!(e, Event::Approvals { .. })).await;
    match events.into_iter().last() {
        Some(Event::Approvals { requests }) => requests,
        other => panic!("{other:?}"),
    }
}

/// Approves request `id` (without `remember`); the answer's seq.
async fn approve(client: &mut PodClient, id: &str) -> u64 {
    let method = Method::Approve {
        id: id.to_owned(),
        remember: false,
    };
    client.request(&method).await.unwrap().0
}

/// How many times the push ran in `dir`.
fn pushes(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("pushed.txt")).map_or(0, |t| t.lines().count())
}

/// A root `main` whose child `c` spawns `g`, which runs the push; a client
/// watching approvals on the root only. Returns the pod, the client and
/// `g`'s directory.
async fn tree(home: &Home, server: &FakeProvider) -> (TestPod, PodClient, std::path::PathBuf) {
    let c_dir = home.path("work/c");
    let g_dir = c_dir.join("g");
    std::fs::create_dir_all(&g_dir).unwrap();
    server.push_for(&key("main"), sse(spawn("s1", "c", &c_dir)));
    server.push_for(&key("main.c"), sse(spawn("s2", "g", &g_dir)));
    server.push_for(&key("main.c.g"), sse(push("p1")));
    server.push_for(&key("main.c.g"), sse(Turn::new().text("done")));
    for _ in 0..3 {
        server.push_for(&key("main"), sse(Turn::new().text("ok")));
        server.push_for(&key("main.c"), sse(Turn::new().text("ok")));
    }
    let pod = TestPod::start(home, server, "main", &["--overlay", &overlay(600)]);
    let mut client = pod.connect().await;
    let (seq, _) = client.request(&Method::WatchApprovals).await.unwrap();
    assert_eq!(seq, 0);
    client.request(&run("have your child push")).await.unwrap();
    (pod, client, g_dir)
}

/// A pod `solo` whose push waits for approval (`timeout_s`), watched by
/// the client returned with the request.
async fn solo(
    home: &Home,
    server: &FakeProvider,
    timeout_s: u64,
) -> (TestPod, PodClient, ApprovalRequest) {
    server.push(sse(push("p1")));
    server.push(sse(Turn::new().text("understood")));
    let pod = TestPod::start(home, server, "solo", &["--overlay", &overlay(timeout_s)]);
    let mut client = pod.connect().await;
    client.request(&Method::WatchApprovals).await.unwrap();
    client.request(&run("push")).await.unwrap();
    let request = next_request(&mut client).await;
    (pod, client, request)
}

/// Stops the tree (the root stops its children first).
async fn stop(pod: &mut TestPod) {
    let mut client = pod.connect().await;
    client.send(&Method::Shutdown).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::Shutdown)).await;
    assert!(pod.wait_exit().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchilds_push_is_approved_from_the_root_and_runs_once() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let (mut pod, mut client, g_dir) = tree(&home, &server).await;
    let request = next_request(&mut client).await;
    assert!(request.id.starts_with("main.c.g/"), "{request:?}");
    assert_eq!(request.pod, "main.c.g");
    assert_eq!(request.tool, "Bash");
    assert_eq!(request.input["command"], PUSH);
    assert!(request.rule.contains("git push*"), "{}", request.rule);
    assert_eq!(pushes(&g_dir), 0, "nothing runs before the answer");
    // Listed at the root, answered at the root: it travels down to `g`.
    let before = list(&mut client).await;
    assert_eq!(before, vec![request.clone()]);
    let seq = approve(&mut client, &request.id).await;
    assert!(seq > 0);
    let events = events_until(&mut client, |e| matches!(e, Event::ApprovalResolved(_))).await;
    let Some(Event::ApprovalResolved(resolved)) = events.last() else {
        unreachable!()
    };
    assert!(resolved.approved && resolved.by == "client", "{resolved:?}");
    let second = nth_request(&server, "main.c.g", 2).await;
    assert!(!second.contains("not approved"), "{second}");
    assert_eq!(pushes(&g_dir), 1);
    // A second answer finds nothing pending.
    let again = client
        .request(&Method::Approve {
            id: request.id.clone(),
            remember: false,
        })
        .await
        .unwrap_err();
    assert!(
        again.to_string().contains("no pending approval request"),
        "{again}"
    );
    let log = log_of(&home, "main.c.g");
    assert!(
        log.iter()
            .any(|e| matches!(e, LogEntry::ApprovalRequest { .. }))
    );
    assert!(
        log.iter()
            .any(|e| matches!(e, LogEntry::ApprovalAnswer { resolved, .. } if resolved.approved))
    );
    assert_eq!(pushes(&g_dir), 1, "ran once");
    stop(&mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchilds_push_denied_from_the_root_does_not_run_and_the_model_sees_why() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let (mut pod, mut client, g_dir) = tree(&home, &server).await;
    let request = next_request(&mut client).await;
    client
        .request(&Method::Deny {
            id: request.id.clone(),
            reason: Some("not on a Friday".into()),
        })
        .await
        .unwrap();
    let second = nth_request(&server, "main.c.g", 2).await;
    assert!(second.contains("not approved: not on a Friday"), "{second}");
    assert_eq!(pushes(&g_dir), 0);
    stop(&mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_is_denied_after_the_timeout() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let (mut pod, mut client, request) = solo(&home, &server, 1).await;
    let events = events_until(&mut client, |e| matches!(e, Event::ApprovalResolved(_))).await;
    let Some(Event::ApprovalResolved(resolved)) = events.last() else {
        unreachable!()
    };
    assert_eq!(resolved.id, request.id);
    assert!(!resolved.approved);
    assert_eq!(resolved.by, "timeout");
    let second = nth_request(&server, "solo", 2).await;
    assert!(
        second.contains("nobody answered the approval request solo/1 within 1 s"),
        "{second}"
    );
    assert_eq!(pushes(&home.path("work")), 0);
    stop(&mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_request_survives_a_restart_of_the_pod_and_can_be_answered() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let (mut pod, client, request) = solo(&home, &server, 600).await;
    drop(client);
    pod.kill9();
    let mut pod = TestPod::restore(&home, &server, "solo");
    let mut client = pod.connect().await;
    // Still pending, with the same id; the call was not answered `[interrupted]`.
    let listed = list(&mut client).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, request.id);
    approve(&mut client, &request.id).await;
    let second = nth_request(&server, "solo", 2).await;
    assert!(!second.contains("[interrupted]"), "{second}");
    assert_eq!(pushes(&home.path("work")), 1);
    stop(&mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_request_survives_a_stop_and_restore_of_the_pod() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let (mut pod, client, request) = solo(&home, &server, 600).await;
    drop(client);
    stop(&mut pod).await;
    let log = log_of(&home, "solo");
    assert!(
        !log.iter().any(|e| matches!(
            e,
            LogEntry::ApprovalAnswer { .. } | LogEntry::TurnEnd { .. }
        )),
        "a stop leaves the request pending and the turn open: {log:#?}"
    );
    let mut pod = TestPod::restore(&home, &server, "solo");
    let mut client = pod.connect().await;
    let listed = list(&mut client).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (&listed[0].id, &listed[0].input),
        (&request.id, &request.input)
    );
    // Asked again: a fresh wait from now.
    assert!(listed[0].expires_ms >= request.expires_ms);
    approve(&mut client, &request.id).await;
    let second = nth_request(&server, "solo", 2).await;
    assert!(!second.contains("[interrupted]"), "{second}");
    assert_eq!(pushes(&home.path("work")), 1);
    stop(&mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchilds_request_is_listed_again_at_a_restored_root() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let (mut pod, mut client, g_dir) = tree(&home, &server).await;
    let request = next_request(&mut client).await;
    drop(client);
    // The root dies; its children live on, `g` still waiting.
    pod.kill9();
    let mut pod = TestPod::restore(&home, &server, "main");
    let mut client = pod.connect().await;
    client.request(&Method::WatchApprovals).await.unwrap();
    let again = next_request(&mut client).await;
    assert_eq!(again.id, request.id);
    approve(&mut client, &request.id).await;
    wait_for("the push", || pushes(&g_dir) == 1).await;
    stop(&mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_requests_and_answers_them() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let (mut pod, _client, request) = solo(&home, &server, 600).await;
    let listed = common::pod(&home, &server, &["approvals"]).await;
    let out = common::text(&listed);
    assert!(listed.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "[approval {} asked by solo: Bash {PUSH}",
            request.id
        )),
        "{out}"
    );
    let json = common::pod(&home, &server, &["approvals", "solo", "--json"]).await;
    let stdout = String::from_utf8_lossy(&json.stdout);
    let line: ApprovalRequest = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line, request);
    let unknown = common::pod(&home, &server, &["approve", "solo/99"]).await;
    assert!(!unknown.status.success());
    assert!(
        common::text(&unknown).contains("no pending approval request `solo/99`"),
        "{}",
        common::text(&unknown)
    );
    let denied = common::pod(&home, &server, &["deny", &request.id, "not", "now"]).await;
    assert!(denied.status.success(), "{}", common::text(&denied));
    assert_eq!(
        String::from_utf8_lossy(&denied.stdout).trim(),
        format!("denied {}", request.id)
    );
    let second = nth_request(&server, "solo", 2).await;
    assert!(second.contains("not approved: not now"), "{second}");
    assert_eq!(pushes(&home.path("work")), 0);
    let none = common::pod(&home, &server, &["approvals", "solo"]).await;
    assert!(common::text(&none).contains("no pending approval requests"));
    stop(&mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_turn_ends_its_request_and_the_call_does_not_run() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let (mut pod, mut client, request) = solo(&home, &server, 600).await;
    client.send(&Method::Cancel).await.unwrap();
    let events = events_until(&mut client, |e| matches!(e, Event::ApprovalResolved(_))).await;
    let Some(Event::ApprovalResolved(resolved)) = events.last() else {
        unreachable!()
    };
    assert_eq!(resolved.id, request.id);
    assert!(!resolved.approved);
    assert_eq!(resolved.by, "pod");
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    assert!(list(&mut client).await.is_empty());
    assert_eq!(pushes(&home.path("work")), 0);
    stop(&mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_calls_go_on_and_remember_allows_the_rule_for_the_session() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let echo = serde_json::json!({"command": "echo ok > ok.txt"}).to_string();
    server.push(sse(push("p1").call("c2", "Bash", echo)));
    server.push(sse(push("p2")));
    server.push(sse(Turn::new().text("pushed twice")));
    let mut pod = TestPod::start(&home, &server, "solo", &["--overlay", &overlay(600)]);
    let mut client = pod.connect().await;
    client.request(&Method::WatchApprovals).await.unwrap();
    client.request(&run("push twice")).await.unwrap();
    let request = next_request(&mut client).await;
    // The other call of the step runs while the push waits.
    wait_for("the other call", || home.path("work/ok.txt").exists()).await;
    assert_eq!(pushes(&home.path("work")), 0);
    client
        .request(&Method::Approve {
            id: request.id.clone(),
            remember: true,
        })
        .await
        .unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    assert_eq!(
        pushes(&home.path("work")),
        2,
        "the second push was not asked"
    );
    let asked = log_of(&home, "solo")
        .into_iter()
        .filter(|e| matches!(e, LogEntry::ApprovalRequest { .. }))
        .count();
    assert_eq!(asked, 1);
    stop(&mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_own_command_cannot_approve_its_request() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    // Unconfined commands can reach the pod's socket (the sandbox would hide it).
    let approve = format!(
        "{pod} approve solo/1 2>&1; echo rc=$?; {pod} approvals solo --wait 2>&1; echo rc=$?; touch tried.txt",
        pod = env!("CARGO_BIN_EXE_pod")
    );
    server.push(sse(push("p1").call(
        "c2",
        "Bash",
        serde_json::json!({ "command": approve }).to_string(),
    )));
    server.push(sse(Turn::new().text("understood")));
    let mut pod = TestPod::start(
        &home,
        &server,
        "solo",
        &["--no-sandbox", "--overlay", &overlay(600)],
    );
    let mut client = pod.connect().await;
    client.request(&Method::WatchApprovals).await.unwrap();
    client.request(&run("push")).await.unwrap();
    let request = next_request(&mut client).await;
    // The command ran (and was refused) while the push waited.
    wait_for("the approve command", || {
        home.path("work/tried.txt").exists()
    })
    .await;
    assert_eq!(
        list(&mut client).await,
        vec![request.clone()],
        "still pending"
    );
    client
        .request(&Method::Deny {
            id: request.id.clone(),
            reason: None,
        })
        .await
        .unwrap();
    let second = nth_request(&server, "solo", 2).await;
    assert!(
        second
            .matches("approvals are for a person, not for a process of pod `solo`")
            .count()
            == 2,
        "refused to answer and to watch: {second}"
    );
    assert!(second.contains("rc=1"), "{second}");
    assert_eq!(pushes(&home.path("work")), 0);
    stop(&mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_allow_holds_after_a_compaction_and_a_restore() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(sse(push("p1")));
    server.push(sse(Turn::new().text("pushed")));
    server.push(sse(Turn::new().text("The user asked for a push; it ran.")));
    server.push(sse(push("p2")));
    server.push(sse(Turn::new().text("pushed again")));
    let mut pod = TestPod::start(&home, &server, "solo", &["--overlay", &overlay(600)]);
    let mut client = pod.connect().await;
    client.request(&Method::WatchApprovals).await.unwrap();
    client.request(&run("push")).await.unwrap();
    let request = next_request(&mut client).await;
    let remember = Method::Approve {
        id: request.id.clone(),
        remember: true,
    };
    client.request(&remember).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    // The answer is in the first segment once the session is compacted.
    client.send(&Method::Compact).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::CompactionEnd { .. })).await;
    drop(client);
    stop(&mut pod).await;
    let mut pod = TestPod::restore(&home, &server, "solo");
    let mut client = pod.connect().await;
    client.request(&Method::WatchApprovals).await.unwrap();
    client.request(&run("push again")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    assert_eq!(pushes(&home.path("work")), 2, "the remembered allow held");
    let asked = log_of(&home, "solo")
        .into_iter()
        .filter(|e| matches!(e, LogEntry::ApprovalRequest { .. }))
        .count();
    assert_eq!(asked, 1);
    stop(&mut pod).await;
}
