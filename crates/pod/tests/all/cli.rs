//! The `pod` commands as a user runs them: `start` (detached), `send`, `ls`
//! (tree, scopes, tokens), `logs`, `stop --tree`, `restore` and `run`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::{Home, WAIT, doctor_line, pod, text, wait_for};
use test_support::Family;
use test_support::fake_provider::{FakeProvider, Scripted};
use test_support::script::Turn;
use test_support::tmux::Tmux;

fn sse(turn: Turn) -> Scripted {
    Scripted::sse(turn.sse(Family::OpenaiChat))
}

fn turn_ends(home: &Home, name: &str) -> usize {
    session_store::read_session(home.path("state/sessions").join(name))
        .map(|log| {
            log.entries()
                .filter(|e| matches!(e, session_store::LogEntry::TurnEnd { .. }))
                .count()
        })
        .unwrap_or(0)
}

fn alive(home: &Home, name: &str) -> bool {
    pod::ipc::listener::is_alive(&home.path("runtime").join(name))
}

#[tokio::test]
async fn start_send_ls_logs_stop_tree_and_restore() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(Duration::from_secs(20));
    let kid_dir = home.path("work/kid");
    server.push_for(
        "You are `top`",
        sse(Turn::new().call(
            "s",
            "SpawnPod",
            serde_json::json!({"name": "kid", "task": "say ok", "scope": [{"target": kid_dir, "permission": "write"}]})
                .to_string(),
        )),
    );
    server.push_for("You are `top`", sse(Turn::new().text("Spawned.")));
    server.push_for("You are `top.kid`", sse(Turn::new().text("kid ok")));

    let out = pod(&home, &server, &["start", "--name", "top"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (name, socket) = stdout.trim().split_once('\t').unwrap();
    assert_eq!(name, "top");
    assert!(std::path::Path::new(socket).exists());

    let out = pod(&home, &server, &["send", "top", "spawn a kid"]).await;
    assert!(out.status.success(), "{}", text(&out));
    wait_for("the kid to finish", || turn_ends(&home, "top.kid") >= 1).await;
    wait_for("the parent's first turn", || turn_ends(&home, "top") >= 1).await;

    let out = pod(&home, &server, &["ls", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["top", "top.kid"]);
    assert_eq!(rows[1]["depth"], 1);
    assert_eq!(rows[1]["scope"], format!("write:{}", kid_dir.display()));
    assert!(
        rows[0]["scope"]
            .as_str()
            .unwrap()
            .contains(&format!("delegated:{}", kid_dir.display()))
    );
    assert!(rows.iter().all(|r| r["alive"] == true));
    assert!(rows[0]["subtree_tokens"].as_u64() >= rows[0]["tokens"].as_u64());

    let out = pod(&home, &server, &["ls", "--tree"]).await;
    let tree = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(tree.lines().any(|l| l.starts_with("  kid")), "{tree}");

    let out = pod(&home, &server, &["logs", "top"]).await;
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        log.contains("> spawn a kid") && log.contains("spawned child pod `kid`"),
        "{log}"
    );

    let out = pod(&home, &server, &["stop", "--tree", "top"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!alive(&home, "top") && !alive(&home, "top.kid"));

    // Stopped, the pod cannot be started again under its name, only restored.
    let out = pod(&home, &server, &["start", "--name", "top"]).await;
    assert!(!out.status.success());
    let out = pod(&home, &server, &["restore", "top"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(alive(&home, "top"));
    let out = pod(&home, &server, &["stop", "top"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = pod(&home, &server, &["stop", "top"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pod named `top` is running"));
}

#[tokio::test]
async fn run_streams_a_task_and_stops_the_pod() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(sse(Turn::new().text("Hello from the pod.").usage(120, 7)));
    let out = pod(&home, &server, &["run", "--name", "once", "say hello"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("Hello from the pod."), "{stdout}");
    assert!(stdout.contains("tokens: 120 in, 7 out"), "{stdout}");
    assert!(!alive(&home, "once"), "stopped afterwards");

    // A failed invocation exits 3.
    server.push(Scripted::status(
        400,
        "{\"error\":{\"message\":\"bad request\"}}",
    ));
    let out = pod(&home, &server, &["run", "--name", "twice", "fail please"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad request"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn run_waits_for_the_whole_tree_then_stops_it() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(Duration::from_secs(20));
    let kid_dir = home.path("work/kid");
    let boss = "You are `boss`";
    server.push_for(
        boss,
        sse(Turn::new().call(
            "s",
            "SpawnPod",
            serde_json::json!({"name": "kid", "task": "write it", "scope": [{"target": kid_dir, "permission": "write"}]})
                .to_string(),
        )),
    );
    server.push_for(boss, sse(Turn::new().text("Waiting for kid.")));
    server.push_for(
        "You are `boss.kid`",
        sse(Turn::new().call(
            "w",
            "Write",
            serde_json::json!({"path": "made.txt", "content": "by kid\n"}).to_string(),
        )),
    );
    server.push_for("You are `boss.kid`", sse(Turn::new().text("kid wrote it")));
    // Woken by the kid's report, the boss answers once more.
    server.push_for(boss, sse(Turn::new().text("The kid is done.")));
    let out = pod(
        &home,
        &server,
        &["run", "--name", "boss", "delegate the file"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("The kid is done."), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(kid_dir.join("made.txt")).unwrap(),
        "by kid\n"
    );
    assert!(
        !alive(&home, "boss") && !alive(&home, "boss.kid"),
        "the whole tree stopped"
    );
}

#[tokio::test]
async fn attach_shows_the_session_and_sends_typed_lines() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(sse(Turn::new().text("First answer.")));
    server.push(sse(Turn::new().text("Second answer.")));
    let out = pod(&home, &server, &["start", "--name", "chat"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = pod(
        &home,
        &server,
        &["send", "--wait", "chat", "first question"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("First answer."));

    let mut c = home.command(&server.base_url());
    c.args(["attach", "chat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"second question\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.contains("> first question") && stdout.contains("First answer."),
        "{stdout}"
    );
    assert!(stdout.contains("Second answer."), "{stdout}");
    assert!(alive(&home, "chat"), "detaching leaves the pod running");
    let out = pod(&home, &server, &["stop", "chat"]).await;
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn doctor_reports_a_corrupt_registry_and_repair_rebuilds_it() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let out = pod(&home, &server, &["start", "--name", "keeper"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let registry = home.path("runtime/pods.json");
    std::fs::write(&registry, "{\"version\":1,\"pods\":[{\"trunc").unwrap();

    let out = pod(&home, &server, &["doctor", "--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let line = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "registry")
        .unwrap()
        .clone();
    assert_eq!(line["ok"], false, "{line}");
    assert!(
        line["detail"].as_str().unwrap().contains("--repair"),
        "{line}"
    );
    assert!(!out.status.success());

    let out = pod(&home, &server, &["doctor", "--repair", "--json"]).await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("from 1 running pod"),
        "{}",
        text(&out)
    );
    let rebuilt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&registry).unwrap()).unwrap();
    let pods = rebuilt["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["full_name"], "keeper");
    assert_eq!(
        pods[0]["write_rules"][0]["target"],
        serde_json::json!(home.path("work"))
    );
    // The scope is claimed again: a second pod on the same tree conflicts.
    let out = pod(&home, &server, &["start", "--name", "other"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"keeper\""),
        "{}",
        text(&out)
    );
    let out = pod(&home, &server, &["stop", "keeper"]).await;
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn a_project_manifest_an_agent_wrote_is_refused_until_trusted() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    // The agent's command creates `.pods/` (absent when it started, so the sandbox
    // could not protect it) with a manifest that would turn the sandbox off.
    server.push(sse(Turn::new().call(
        "b1",
        "Bash",
        r#"{"command":"mkdir .pods && printf '[sandbox]\\nmode = \"off\"\\n' > .pods/manifest.toml && echo made"}"#,
    )));
    server.push(sse(Turn::new().text("Configured.")));
    let out = pod(
        &home,
        &server,
        &["run", "--name", "agent", "configure pods"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let manifest = home.path("work/.pods/manifest.toml");
    assert!(
        manifest.exists(),
        "the command could not write: {}",
        text(&out)
    );

    // The next pod started there refuses it, says why and what to do.
    let work = std::fs::canonicalize(home.path("work")).unwrap();
    let out = pod(&home, &server, &["run", "--name", "next", "hello"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("not trusted"), "{stderr}");
    assert!(
        stderr.contains(&format!("pod trust {}", work.display())),
        "{stderr}"
    );
    assert!(!alive(&home, "next"));
    let doctor = pod(&home, &server, &["doctor", "--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let project = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "project")
        .unwrap()
        .clone();
    assert_eq!(project["ok"], false, "{project}");

    // The user reads it and trusts it: pods load it (here: their sandbox is off).
    let out = pod(&home, &server, &["trust"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("mode = \"off\""), "{stdout}");
    server.push(sse(Turn::new().text("Hi.")));
    let out = pod(&home, &server, &["run", "--name", "trusted", "hello"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let doctor = pod(&home, &server, &["doctor", "--json"]).await;
    assert!(
        String::from_utf8_lossy(&doctor.stdout).contains("(trusted)"),
        "{}",
        text(&doctor)
    );

    // Changed afterwards: refused again, and the list says so.
    std::fs::write(&manifest, "[sandbox]\nmode = \"auto\"\n").unwrap();
    let out = pod(&home, &server, &["run", "--name", "changed", "hello"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("changed since you trusted it"),
        "{}",
        text(&out)
    );
    let out = pod(&home, &server, &["trust", "--list"]).await;
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.starts_with("changed since trusted"),
        "{}",
        text(&out)
    );

    // Trusted again, then revoked: refused.
    assert!(pod(&home, &server, &["trust"]).await.status.success());
    let out = pod(&home, &server, &["trust", "--list", "--json"]).await;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["state"], "trusted", "{list}");
    let out = pod(&home, &server, &["trust", "--revoke"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("no longer trusted"),
        "{}",
        text(&out)
    );
    let out = pod(&home, &server, &["run", "--name", "revoked", "hello"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not trusted"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn trust_without_a_project_manifest_says_so() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let out = pod(&home, &server, &["trust"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to trust"),
        "{}",
        text(&out)
    );
    std::fs::create_dir_all(home.path("work/.pods")).unwrap();
    std::fs::write(
        home.path("work/.pods/manifest.toml"),
        "[worker]\nbogus = 1\n",
    )
    .unwrap();
    let out = pod(&home, &server, &["trust"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fix it before trusting it"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn agents_cannot_read_session_logs() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(sse(Turn::new().text("SECRET-IN-A-SESSION")));
    let out = pod(&home, &server, &["run", "--name", "first", "remember this"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let log = std::fs::canonicalize(home.path("state/sessions/first/000001.jsonl")).unwrap();
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("SECRET-IN-A-SESSION")
    );

    // Another pod's agent tries the file tools and a command on it.
    let read = serde_json::json!({"path": log}).to_string();
    let grep = serde_json::json!({"pattern": "SECRET", "path": log.parent().unwrap()}).to_string();
    let cat = serde_json::json!({"command": format!("cat {} || echo unreadable", log.display())})
        .to_string();
    server.push(sse(Turn::new()
        .call("r", "Read", read)
        .call("g", "Grep", grep)
        .call("c", "Bash", cat)));
    server.push(sse(Turn::new().text("Tried.")));
    let out = pod(
        &home,
        &server,
        &["run", "--name", "second", "read the other session"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let second = std::fs::read_to_string(home.path("state/sessions/second/000001.jsonl")).unwrap();
    let results: Vec<serde_json::Value> = second
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "tool_result")
        .collect();
    assert_eq!(results.len(), 3, "{second}");
    for result in &results {
        let text = result.to_string();
        assert!(!text.contains("SECRET-IN-A-SESSION"), "{text}");
    }
    let bash = results
        .iter()
        .find(|r| r.to_string().contains("unreadable"));
    assert!(bash.is_some(), "{results:?}");
    // The rule is not in the system prompt: that says where the pod may write.
    let first = &server.requests()[0].body;
    let system = first["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("You may write only within your scope: read:/, write:"),
        "{system}"
    );
    assert!(!system.contains("deny:"), "{system}");
}

/// Runs `pod ARGS` with some variables changed (`None` removes one).
async fn pod_env(
    home: &Home,
    server: &FakeProvider,
    args: &[&str],
    vars: &[(&str, Option<&str>)],
) -> Output {
    let mut c = home.command(&server.base_url());
    c.args(args);
    for (k, v) in vars {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn doctor_names_the_provider_checks_every_layer_and_fails_without_one() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    // POD_BASE_URL + POD_MODEL: named, with where it came from (the fake answers).
    let out = pod(&home, &server, &["doctor", "--json"]).await;
    let line = doctor_line(&out, "provider");
    let detail = line["detail"].as_str().unwrap();
    assert_eq!(line["ok"], true, "{line}");
    for part in [
        "openai_chat",
        server.base_url().as_str(),
        "model test-model",
        "from POD_BASE_URL and POD_MODEL",
    ] {
        assert!(detail.contains(part), "{part}: {detail}");
    }

    // No provider at all: an error, and exit 1.
    let none = [("POD_BASE_URL", None), ("POD_MODEL", None)];
    let out = pod_env(&home, &server, &["doctor"], &none).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ERR provider") && l.contains("no model provider")),
        "{stdout}"
    );
    let out = pod_env(&home, &server, &["doctor", "--json"], &none).await;
    assert_eq!(doctor_line(&out, "provider")["ok"], false);

    // POD_BASE_URL without POD_MODEL: doctor and start name the missing variable.
    let half = [("POD_MODEL", None)];
    let out = pod_env(&home, &server, &["doctor", "--json"], &half).await;
    let line = doctor_line(&out, "provider");
    assert_eq!(line["ok"], false, "{line}");
    assert!(
        line["detail"]
            .as_str()
            .unwrap()
            .contains("POD_BASE_URL is set but POD_MODEL is not"),
        "{line}"
    );
    let out = pod_env(&home, &server, &["start", "--name", "half"], &half).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("set POD_MODEL"),
        "{}",
        text(&out)
    );

    // A key names its variable; a remote provider is not contacted.
    let key = [
        ("POD_BASE_URL", None),
        ("POD_MODEL", None),
        ("GEMINI_API_KEY", Some("k")),
    ];
    let out = pod_env(&home, &server, &["doctor", "--json"], &key).await;
    let line = doctor_line(&out, "provider");
    assert_eq!(line["ok"], true, "{line}");
    assert!(
        line["detail"]
            .as_str()
            .unwrap()
            .contains("gemini at https://generativelanguage.googleapis.com/v1beta, model gemini-2.5-pro (from GEMINI_API_KEY in the environment)"),
        "{line}"
    );

    // A typo in the user manifest: its line names file and line, and doctor fails.
    let user = home.path("config/manifest.toml");
    std::fs::write(&user, "[model]\nmax_tokns = 4096\n").unwrap();
    let out = pod(&home, &server, &["doctor", "--json"]).await;
    let line = doctor_line(&out, "user manifest");
    assert_eq!(line["ok"], false, "{line}");
    assert!(
        line["detail"].as_str().unwrap().starts_with(&format!(
            "{}:2:1: unknown field `max_tokns`",
            user.display()
        )),
        "{line}"
    );
    assert!(!out.status.success());
    std::fs::remove_file(&user).unwrap();

    // So does a bad overlay given to doctor.
    let out = pod(
        &home,
        &server,
        &["doctor", "--json", "--overlay", "[model]\nbogus = 1"],
    )
    .await;
    let line = doctor_line(&out, "overlay");
    assert_eq!(line["ok"], false, "{line}");
    assert!(
        line["detail"].as_str().unwrap().starts_with("overlay:2:1:"),
        "{line}"
    );
}

#[tokio::test]
async fn a_child_answers_to_its_short_name_and_unknown_names_get_a_suggestion() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(Duration::from_secs(20));
    let kid_dir = home.path("work/sleepy");
    server.push_for(
        "You are `boss`",
        sse(Turn::new().call(
            "s",
            "SpawnPod",
            serde_json::json!({"name": "sleepy", "task": "nap", "scope": [{"target": kid_dir, "permission": "write"}]})
                .to_string(),
        )),
    );
    server.push_for("You are `boss`", sse(Turn::new().text("Spawned.")));
    server.push_for("You are `boss.sleepy`", sse(Turn::new().text("zzz done")));
    let out = pod(&home, &server, &["start", "--name", "boss"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = pod(&home, &server, &["send", "boss", "spawn sleepy"]).await;
    assert!(out.status.success(), "{}", text(&out));
    wait_for("the child's turn", || turn_ends(&home, "boss.sleepy") >= 1).await;

    // `ls --json`: each entry carries its instance id and its parent's name.
    let out = pod(&home, &server, &["ls", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows[1]["name"], "boss.sleepy", "{rows:?}");
    assert_eq!(rows[1]["parent_name"], "boss");
    assert_eq!(rows[0]["parent_name"], serde_json::Value::Null);
    assert_eq!(rows[1]["parent"], rows[0]["instance_id"], "{rows:?}");
    assert!(!rows[0]["instance_id"].as_str().unwrap().is_empty());

    // The short name `ls` shows works for logs and attach.
    let out = pod(&home, &server, &["logs", "sleepy"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("zzz done"),
        "{}",
        text(&out)
    );
    let out = pod(&home, &server, &["attach", "sleepy"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("attached to `boss.sleepy`"),
        "{}",
        text(&out)
    );

    // A typo gets the closest name.
    let out = pod(&home, &server, &["logs", "sleepi"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did you mean `boss.sleepy`?"),
        "{}",
        text(&out)
    );

    // Stopped by its short name, it still answers to it, and says how to continue.
    let out = pod(&home, &server, &["stop", "sleepy"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!alive(&home, "boss.sleepy"));
    let out = pod(&home, &server, &["send", "sleepy", "wake up"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("`boss.sleepy` is stopped — `pod restore boss.sleepy`"),
        "{}",
        text(&out)
    );
    let out = pod(&home, &server, &["logs", "sleepy"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = pod(&home, &server, &["stop", "--tree", "boss"]).await;
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn run_and_logs_show_the_end_of_a_commands_output() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(sse(Turn::new().call(
        "b",
        "Bash",
        r#"{"command":"seq 1 47; exit 3"}"#,
    )));
    server.push(sse(Turn::new().text("It failed.")));
    let out = pod(&home, &server, &["run", "--name", "seq", "count"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let tail = "  ← exit code 3\n    │ … 42 more lines\n    │ 43\n    │ 44\n    │ 45\n    │ 46\n    │ 47\n";
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains(tail), "{stdout}");

    let out = pod(&home, &server, &["logs", "seq"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains(tail), "{stdout}");
    let out = pod(&home, &server, &["logs", "--full", "seq"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let whole: String = (1..=47).map(|i| format!("    │ {i}\n")).collect();
    assert!(
        stdout.contains(&format!("  ← exit code 3\n{whole}")),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_overlay_example_of_the_help_works() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let help = pod(&home, &server, &["run", "--help"]).await;
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("'[model] max_tokens = 4096'"),
        "{}",
        text(&help)
    );
    server.push(sse(Turn::new().text("ok")));
    let args = [
        "run",
        "--name",
        "ov",
        "--overlay",
        "[model] max_tokens = 4096",
        "hi",
    ];
    let out = pod(&home, &server, &args).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server.requests()[0].body["max_tokens"], 4096);
}

#[tokio::test]
async fn a_failed_start_shows_only_what_it_wrote() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let out = pod(&home, &server, &["start", "--name", "holder"]).await;
    assert!(out.status.success(), "{}", text(&out));
    // Twice the same conflict: the second report must not repeat the first's log.
    for attempt in 1..=2 {
        let out = pod(&home, &server, &["start", "--name", "late"]).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            stderr.matches("scope conflict").count(),
            1,
            "attempt {attempt}: {stderr}"
        );
    }
    let out = pod(&home, &server, &["stop", "holder"]).await;
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn an_error_says_its_cause_once() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let missing = home.path("missing.toml");
    let out = pod(
        &home,
        &server,
        &["start", "--manifest", missing.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

#[tokio::test]
async fn trust_of_a_missing_directory_says_so() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let missing = home.path("nonexistent");
    for args in [vec!["trust"], vec!["trust", "--revoke"]] {
        let mut args = args;
        args.push(missing.to_str().unwrap());
        let out = pod(&home, &server, &args).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("pod: no such directory: {}\n", missing.display())
        );
    }
}

#[tokio::test]
async fn a_bad_name_or_a_missing_scope_is_refused_with_the_reason() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let out = pod(&home, &server, &["start", "--name", "Bad.Name"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr
            .starts_with("pod: invalid pod name \"Bad.Name\": `Bad` has the upper-case letter `B`"),
        "{stderr}"
    );
    let out = pod(&home, &server, &["start", "--name", "sc", "--scope", "sr"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.starts_with(&format!(
            "pod: --scope sr: {} does not exist",
            home.path("work/sr").display()
        )),
        "{stderr}"
    );
    assert!(!alive(&home, "sc"));
}

/// The status a pod last wrote to its `status.json` (`running`, `idle`, ...).
fn recorded_status(home: &Home, name: &str) -> String {
    std::fs::read(home.path("runtime").join(name).join("status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["status"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Starts pod `name` detached and leaves it mid-invocation: its LLM request
/// stalls (the fake never answers it) until the server is dropped.
async fn busy_pod(home: &Home, server: &FakeProvider, name: &str) {
    server.push(Scripted::stall(Vec::new()));
    let out = pod(home, server, &["start", "--name", name]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = pod(home, server, &["send", name, "work for a long time"]).await;
    assert!(out.status.success(), "{}", text(&out));
    wait_for("the pod's LLM request", || !server.requests().is_empty()).await;
    // status.json is written by a thread of its own: it follows shortly.
    wait_for("the pod to record that it runs", || {
        recorded_status(home, name) == "running"
    })
    .await;
}

/// A `pod` process whose stdout and stderr are collected as they come.
struct Watched {
    child: common::Reaped,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Watched {
    fn spawn(home: &Home, server: &FakeProvider, args: &[&str]) -> Watched {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        let mut c = home.command(&server.base_url());
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A test run started as a shell's background job inherits SIGINT
        // ignored; a Ctrl-C that lands before `pod run` installs its handler
        // would then be lost, where a terminal's would end the process.
        // SAFETY: signal(2) only, between fork and exec.
        unsafe {
            c.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = c.spawn().unwrap();
        let collect = |mut from: Box<dyn std::io::Read + Send>| {
            let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let into = text.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    into.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
            text
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Watched {
            child: common::Reaped(child),
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.0.id()).unwrap();
        // SAFETY: kill(2) of a process this test started and has not reaped.
        unsafe { libc::kill(pid, signal) };
    }

    /// Waits (bounded by WAIT) for the process to exit.
    async fn exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn attach_detaches_at_once_on_ctrl_c_or_end_of_input_while_the_pod_runs() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    busy_pod(&home, &server, "busy").await;

    // Ctrl-C, with the input still open.
    let mut attach = Watched::spawn(&home, &server, &["attach", "busy"]);
    wait_for("attach to connect", || {
        attach.stderr().contains("attached to")
    })
    .await;
    attach.signal(libc::SIGINT);
    let status = attach.exit().await;
    assert!(status.success(), "{status:?}\n{}", attach.stderr());
    assert!(
        attach.stderr().contains("detached from `busy`"),
        "{}",
        attach.stderr()
    );
    assert!(alive(&home, "busy"));
    assert_eq!(recorded_status(&home, "busy"), "running");

    // End of input.
    let mut attach = Watched::spawn(&home, &server, &["attach", "busy"]);
    wait_for("attach to connect", || {
        attach.stderr().contains("attached to")
    })
    .await;
    drop(attach.child.0.stdin.take());
    let status = attach.exit().await;
    assert!(status.success(), "{status:?}\n{}", attach.stderr());
    assert!(
        attach.stderr().contains("detached from `busy`"),
        "{}",
        attach.stderr()
    );
    assert!(alive(&home, "busy"));
    assert_eq!(recorded_status(&home, "busy"), "running");
}

const PROMPT: &str = "pods-test$";

/// A bash in tmux with the environment of `home.command`, at its prompt.
async fn shell(home: &Home, server: &FakeProvider) -> Tmux {
    let env: Vec<String> = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", home.path("home").display().to_string()),
        (
            "POD_RUNTIME_DIR",
            home.path("runtime").display().to_string(),
        ),
        ("POD_HOME", home.path("state").display().to_string()),
        ("POD_CONFIG_DIR", home.path("config").display().to_string()),
        ("POD_MODEL_DIR", home.path("models").display().to_string()),
        ("POD_BASE_URL", server.base_url()),
        ("POD_MODEL", "test-model".to_string()),
        ("TERM", "screen".to_string()),
        ("PS1", format!("{PROMPT}\\n")),
    ]
    .iter()
    .map(|(k, v)| format!("{k}='{v}'"))
    .collect();
    let tmux = Tmux::start(
        &format!(
            "cd '{}' && env -i {} bash --norc --noprofile",
            home.path("work").display(),
            env.join(" ")
        ),
        200,
        50,
    );
    tmux.wait("the shell", WAIT, |s| s.contains(PROMPT)).await;
    tmux
}

/// Whether the shell's prompt is back after the last `what` on the screen.
fn prompt_after(screen: &str, what: &str) -> bool {
    screen
        .rfind(what)
        .is_some_and(|at| screen[at..].lines().skip(1).any(|l| l.trim_end() == PROMPT))
}

#[tokio::test]
async fn attach_in_a_terminal_detaches_on_ctrl_c_and_ctrl_d() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    busy_pod(&home, &server, "term").await;
    let tmux = shell(&home, &server).await;
    let attach = format!("{} attach term", env!("CARGO_BIN_EXE_pod"));

    tmux.keys(&[&attach, "Enter"]);
    tmux.wait("attach", WAIT, |s| s.contains("attached to `term`"))
        .await;
    tmux.keys(&["C-c"]);
    tmux.wait("the prompt after Ctrl-C", WAIT, |s| {
        prompt_after(s, "detached from `term`")
    })
    .await;
    assert!(alive(&home, "term"));
    assert_eq!(recorded_status(&home, "term"), "running");

    // A line typed (a notification: the pod is busy), then Ctrl-D.
    tmux.keys(&[&attach, "Enter"]);
    tmux.wait("attach", WAIT, |s| {
        s.matches("attached to `term`").count() == 2
    })
    .await;
    tmux.keys(&["also check the docs", "Enter"]);
    wait_for("the notification", || {
        std::fs::read_to_string(home.path("state/sessions/term/000001.jsonl"))
            .is_ok_and(|log| log.contains("also check the docs"))
    })
    .await;
    tmux.keys(&["C-d"]);
    tmux.wait("the prompt after Ctrl-D", WAIT, |s| {
        s.matches("detached from `term`").count() == 2 && prompt_after(s, "detached from `term`")
    })
    .await;
    assert!(alive(&home, "term"));
    assert_eq!(recorded_status(&home, "term"), "running");
}

/// The pods alive under `home`.
fn alive_pods(home: &Home) -> Vec<String> {
    std::fs::read_dir(home.path("runtime"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir() && pod::ipc::listener::is_alive(&e.path()))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect()
}

#[tokio::test]
async fn ctrl_c_at_any_early_moment_of_run_stops_the_pod() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(Duration::from_secs(20));
    // When `pod run NAME` gets SIGINT.
    type Reached<'a> = &'a dyn Fn(&str) -> bool;
    let moments: [(&str, Reached); 4] = [
        ("right after spawn", &|_| true),
        ("once its runtime dir exists", &|name| {
            home.path("runtime").join(name).join("pod.log").exists()
        }),
        ("once its socket serves", &|name| {
            home.path("runtime").join(name).join("status.json").exists()
        }),
        ("mid-invocation", &|name| {
            server
                .requests()
                .iter()
                .any(|r| r.body.to_string().contains(&format!("You are `{name}`")))
        }),
    ];
    for (i, (moment, reached)) in moments.iter().enumerate() {
        let name = format!("early{i}");
        server.push_for(&format!("You are `{name}`"), Scripted::stall(Vec::new()));
        let mut run = Watched::spawn(&home, &server, &["run", "--name", &name, "a long task"]);
        wait_for(moment, || reached(&name)).await;
        run.signal(libc::SIGINT);
        let status = run.exit().await;
        let stderr = run.stderr();
        assert!(alive_pods(&home).is_empty(), "{moment}: {stderr}");
        assert!(!stderr.contains("nothing to cancel"), "{moment}: {stderr}");
        if i > 0 {
            assert_eq!(status.code(), Some(3), "{moment}: {stderr}");
            assert!(stderr.contains(&format!("pod {name}: started")), "{stderr}");
        }
        // The directory's scope is free again.
        let after = format!("after{i}");
        server.push_for(
            &format!("You are `{after}`"),
            sse(Turn::new().text("Done.")),
        );
        let out = pod(&home, &server, &["run", "--name", &after, "hello"]).await;
        assert!(out.status.success(), "{moment}: {}", text(&out));
    }
}

#[tokio::test]
async fn ctrl_c_after_the_root_finished_cancels_the_tree_quietly() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(Duration::from_secs(20));
    let kid_dir = home.path("work/kid");
    let boss = "You are `lead`";
    server.push_for(
        boss,
        sse(Turn::new().call(
            "s",
            "SpawnPod",
            serde_json::json!({"name": "kid", "task": "work slowly", "scope": [{"target": kid_dir, "permission": "write"}]})
                .to_string(),
        )),
    );
    server.push_for(boss, sse(Turn::new().text("Waiting for kid.")));
    server.push_for("You are `lead.kid`", Scripted::stall(Vec::new()));
    // Told that the kid was cancelled, the lead may answer once more.
    server.push_for(boss, sse(Turn::new().text("Kid cancelled.")));
    let mut run = Watched::spawn(&home, &server, &["run", "--name", "lead", "delegate"]);
    wait_for("the lead's turn to end while the kid works", || {
        turn_ends(&home, "lead") >= 1
            && recorded_status(&home, "lead") == "idle"
            && recorded_status(&home, "lead.kid") == "running"
    })
    .await;
    run.signal(libc::SIGINT);
    let _ = run.exit().await;
    let stderr = run.stderr();
    assert!(!stderr.contains("nothing to cancel"), "{stderr}");
    assert!(alive_pods(&home).is_empty(), "{stderr}");
}

/// Starts `root` in `cwd` and has it spawn `root.mid`, which spawns
/// `root.mid.leaf`, whose LLM request then stalls: the leaf runs, the others
/// are idle (or answering reports) when this returns.
async fn three_levels(home: &Home, server: &FakeProvider, root: &str, cwd: &std::path::Path) {
    std::fs::create_dir_all(cwd).unwrap();
    let spawn = |name: &str, dir: std::path::PathBuf| {
        sse(Turn::new().call(
            "s",
            "SpawnPod",
            serde_json::json!({"name": name, "task": "work", "scope": [{"target": dir, "permission": "write"}]})
                .to_string(),
        ))
    };
    let top = format!("You are `{root}`");
    let mid = format!("You are `{root}.mid`");
    server.push_for(&top, spawn("mid", cwd.join("mid")));
    server.push_for(&mid, spawn("leaf", cwd.join("mid/leaf")));
    for key in [&top, &mid] {
        for answer in ["Spawned.", "Noted.", "Noted again."] {
            server.push_for(key, sse(Turn::new().text(answer)));
        }
    }
    server.push_for(
        &format!("You are `{root}.mid.leaf`"),
        Scripted::stall(Vec::new()),
    );
    let cwd = cwd.display().to_string();
    let out = pod(home, server, &["start", "--name", root, "--cwd", &cwd]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = pod(home, server, &["send", root, "spawn"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let leaf = format!("{root}.mid.leaf");
    wait_for("the leaf to run", || {
        recorded_status(home, &leaf) == "running"
    })
    .await;
    let mid = format!("{root}.mid");
    wait_for("the middle pod's turn", || turn_ends(home, &mid) >= 1).await;
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn stop_takes_the_subtree_along_leaves_first_and_says_so() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.hold_requests(Duration::from_secs(20));
    three_levels(&home, &server, "lead", &home.path("work/lead")).await;

    let out = pod(&home, &server, &["stop", "lead"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        lines(&out),
        ["stopped lead.mid.leaf", "stopped lead.mid", "stopped lead"],
        "{}",
        text(&out)
    );
    assert!(alive_pods(&home).is_empty(), "{:?}", alive_pods(&home));
    // No parent was left alive to hear that its child shut down (it would
    // have started a model turn).
    let heard: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.body.to_string())
        .filter(|b| b.contains("shut down"))
        .collect();
    assert!(heard.is_empty(), "{heard:?}");

    // A dead middle pod: its child is still found and stopped; `--tree` is the same.
    three_levels(&home, &server, "boss", &home.path("work/boss")).await;
    let pid: i32 = std::fs::read_to_string(home.path("runtime/boss.mid/pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) of a pod this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for("the middle pod to die", || !alive(&home, "boss.mid")).await;
    let out = pod(&home, &server, &["stop", "--tree", "boss"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        lines(&out),
        ["stopped boss.mid.leaf", "stopped boss"],
        "{}",
        text(&out)
    );
    assert!(alive_pods(&home).is_empty(), "{:?}", alive_pods(&home));

    let out = pod(&home, &server, &["stop", "boss"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no pod named `boss` is running"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn send_says_what_it_did() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(Scripted::stall(Vec::new()));
    let out = pod(&home, &server, &["start", "--name", "talk"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = pod(&home, &server, &["send", "talk", "first"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let said = lines(&out);
    assert_eq!(said.len(), 1, "{}", text(&out));
    assert!(
        said[0].starts_with("sent to talk (seq ") && said[0].ends_with(')'),
        "{}",
        text(&out)
    );
    wait_for("the run", || recorded_status(&home, "talk") == "running").await;
    let out = pod(&home, &server, &["send", "talk", "second"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let said = lines(&out);
    assert!(
        said.len() == 1 && said[0].starts_with("notified talk (busy; seq "),
        "{}",
        text(&out)
    );
    let out = pod(&home, &server, &["stop", "talk"]).await;
    assert_eq!(lines(&out), ["stopped talk"], "{}", text(&out));
}

/// Sets a file's modification time to `ago` before now.
fn backdate(path: &std::path::Path, ago: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

fn ls_json(out: &Output) -> Vec<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(out)))
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn ls_shows_stopped_pods_for_a_day_with_their_stop_time() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    for name in ["old", "fresh"] {
        server.push(sse(Turn::new().text("Done.")));
        let out = pod(&home, &server, &["run", "--name", name, "hello"]).await;
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with(&format!("pod {name}: started\n")),
            "the name comes first: {}",
            text(&out)
        );
    }
    let two_days = Duration::from_secs(2 * 24 * 3600);
    backdate(&home.path("runtime/old/status.json"), two_days);
    backdate(&home.path("state/sessions/old/000001.jsonl"), two_days);
    let out = pod(&home, &server, &["start", "--name", "live"]).await;
    assert!(out.status.success(), "{}", text(&out));

    let out = pod(&home, &server, &["ls", "--json"]).await;
    let rows = ls_json(&out);
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["fresh", "live"], "{}", text(&out));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let fresh = rows[0]["stopped_at_ms"].as_u64().unwrap();
    assert!(now - fresh < 3600 * 1000, "{}", text(&out));
    assert!(rows[1]["stopped_at_ms"].is_null(), "{}", text(&out));

    let out = pod(&home, &server, &["ls", "--all", "--json"]).await;
    let rows = ls_json(&out);
    let old = rows.iter().find(|r| r["name"] == "old").unwrap();
    let stopped = old["stopped_at_ms"].as_u64().unwrap();
    assert!(now - stopped >= two_days.as_millis() as u64, "{old}");

    let out = pod(&home, &server, &["ls"]).await;
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let fresh_line = listing.lines().find(|l| l.starts_with("fresh")).unwrap();
    let fields: Vec<&str> = fresh_line.split_whitespace().collect();
    assert_eq!(fields[4], "-", "no uptime for a stopped pod: {listing}");
    assert!(fresh_line.ends_with(" ago"), "{listing}");
    assert!(!listing.lines().any(|l| l.starts_with("old")), "{listing}");
    assert!(
        listing.contains("1 pod(s) stopped more than 24 h ago"),
        "{listing}"
    );
    let out = pod(&home, &server, &["ls", "--all"]).await;
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let old_line = listing.lines().find(|l| l.starts_with("old")).unwrap();
    assert!(old_line.trim_end().ends_with("2d ago"), "{listing}");
    let out = pod(&home, &server, &["stop", "live"]).await;
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn rm_deletes_stopped_sessions_and_a_taken_name_says_how_to_free_it() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    // A manifest that names the pod: every run uses the same name.
    let manifest = home.path("named.toml");
    std::fs::write(&manifest, "[pod]\nname = \"named\"\n").unwrap();
    let manifest = manifest.display().to_string();
    server.push(sse(Turn::new().text("Done.")));
    let out = pod(&home, &server, &["run", "--manifest", &manifest, "hello"]).await;
    assert!(out.status.success(), "{}", text(&out));
    for args in [
        &["run", "--manifest", &manifest, "again"][..],
        &["start", "--name", "named"][..],
    ] {
        let out = pod(&home, &server, args).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            stderr.contains("`pod restore named`") && stderr.contains("`pod rm named`"),
            "{stderr}"
        );
        assert!(!stderr.contains("exited before serving"), "{stderr}");
    }
    assert!(!alive(&home, "named"));

    // Without a terminal, rm asks for --yes; a running pod is refused.
    let out = pod(&home, &server, &["rm", "named"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --yes"),
        "{}",
        text(&out)
    );
    assert!(home.path("state/sessions/named").exists());
    let other = home.path("other");
    std::fs::create_dir_all(&other).unwrap();
    let other = other.display().to_string();
    let out = pod(
        &home,
        &server,
        &["start", "--name", "busy", "--cwd", &other],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = pod(&home, &server, &["rm", "--yes", "busy"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`pod stop busy` first"),
        "{}",
        text(&out)
    );
    assert!(alive(&home, "busy"));
    for bad in ["nosuch", "../state"] {
        let out = pod(&home, &server, &["rm", "--yes", bad]).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    }

    let out = pod(&home, &server, &["rm", "--yes", "named"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines(&out), ["removed named"]);
    assert!(!home.path("state/sessions/named").exists());
    assert!(!home.path("runtime/named").exists());
    server.push(sse(Turn::new().text("Fresh start.")));
    let out = pod(&home, &server, &["run", "--manifest", &manifest, "again"]).await;
    assert!(out.status.success(), "{}", text(&out));

    // --stopped takes every stopped pod, never a running one.
    let out = pod(&home, &server, &["rm", "--stopped", "--yes"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines(&out), ["removed named"]);
    assert!(alive(&home, "busy"));
    let out = pod(&home, &server, &["stop", "busy"]).await;
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn rm_asks_on_the_terminal() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(sse(Turn::new().text("Done.")));
    let out = pod(&home, &server, &["run", "--name", "asked", "hello"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let tmux = shell(&home, &server).await;
    let rm = format!("{} rm asked", env!("CARGO_BIN_EXE_pod"));
    tmux.keys(&[&rm, "Enter"]);
    tmux.wait("the question", WAIT, |s| s.contains("asked? [y/N]"))
        .await;
    tmux.keys(&["n", "Enter"]);
    tmux.wait("the refusal", WAIT, |s| prompt_after(s, "nothing removed"))
        .await;
    assert!(home.path("state/sessions/asked").exists());
    tmux.keys(&[&rm, "Enter"]);
    tmux.wait("the question again", WAIT, |s| {
        s.matches("asked? [y/N]").count() == 2
    })
    .await;
    tmux.keys(&["y", "Enter"]);
    tmux.wait("the removal", WAIT, |s| prompt_after(s, "removed asked"))
        .await;
    assert!(!home.path("state/sessions/asked").exists());
}

#[tokio::test]
async fn model_status_into_a_closed_pipe_is_not_a_crash() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    // A reader that stopped at once (`pod model status | head -0`): every write
    // meets a closed pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut c = home.command(&server.base_url());
    c.args(["model", "status"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped());
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
