//! pods as an MCP client, end to end: the real binary, the scripted fake
//! provider, and the real reference servers from npm
//! (`scripts/mcp-test-servers.sh` puts them in target/mcp-servers), each run
//! in the pod's command sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use crate::common;

use common::{
    Home, TestPod, events_until, key, log_of, nth_request, requests_of, run, sse, wait_for,
};
use protocol::{Event, Method};
use session_store::LogEntry;
use test_support::fake_provider::FakeProvider;
use test_support::script::Turn;

/// A reference server's entry point, or `None` (said loudly) when the servers
/// are not installed; with `POD_REQUIRE_MCP_SERVERS=1` (CI) a missing one fails.
fn server_js(package: &str) -> Option<PathBuf> {
    let js = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/mcp-servers/node_modules/@modelcontextprotocol")
        .join(package)
        .join("dist/index.js");
    if js.is_file() {
        return Some(std::fs::canonicalize(js).unwrap());
    }
    assert!(
        std::env::var("POD_REQUIRE_MCP_SERVERS").as_deref() != Ok("1"),
        "{} is missing and POD_REQUIRE_MCP_SERVERS=1: run scripts/mcp-test-servers.sh",
        js.display()
    );
    test_support::loud(&format!(
        "!!! SKIPPED an MCP test: {} is not installed; run scripts/mcp-test-servers.sh",
        js.display()
    ));
    None
}

/// An `[[mcp]]` entry running `node <js> <args...>`.
fn entry(name: &str, js: &Path, args: &[&str]) -> String {
    let mut all = vec![format!("{:?}", js.display().to_string())];
    all.extend(args.iter().map(|a| format!("{a:?}")));
    format!(
        "[[mcp]]\nname = \"{name}\"\ncommand = \"node\"\nargs = [{}]\n",
        all.join(", ")
    )
}

fn call(id: &str, tool: &str, args: serde_json::Value) -> Turn {
    Turn::new().call(id, tool, args.to_string())
}

/// A directory outside every pod's scope that the sandbox still shows (not
/// under /tmp, which it replaces), with nothing in it.
fn outside_dir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

/// The pid of the `node` process whose command line holds `token` (the pod's
/// own command line holds it too, in its `--overlay`).
fn pid_with(token: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let node = args
            .first()
            .is_some_and(|a| a == "node" || a.ends_with("/node"));
        (node && args.iter().any(|a| a == token)).then_some(pid)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_calls_the_everything_servers_echo_and_get_sum() {
    let Some(js) = server_js("server-everything") else {
        return;
    };
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(sse(call(
        "e1",
        "mcp__everything__echo",
        serde_json::json!({"message": "hi there"}),
    )
    .call(
        "s1",
        "mcp__everything__get-sum",
        serde_json::json!({"a": 2, "b": 3}).to_string(),
    )));
    server.push(sse(Turn::new().text("done")));
    let overlay = entry("everything", &js, &["stdio"]);
    let pod = TestPod::start(&home, &server, "mc", &["--overlay", &overlay]);
    let mut client = pod.connect().await;
    let tools = &client.greeting.tools;
    assert!(
        tools.iter().any(|t| t == "mcp__everything__get-sum"),
        "{tools:?}"
    );
    client.request(&run("use the server")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    let second = nth_request(&server, "mc", 2).await;
    assert!(second.contains("Echo: hi there"), "{second}");
    assert!(second.contains("The sum of 2 and 3 is 5."), "{second}");
    // The first request offered the tools with their schemas.
    let first = nth_request(&server, "mc", 1).await;
    assert!(first.contains("mcp__everything__echo"), "{first}");
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_refuses_a_filesystem_servers_write_outside_the_scope() {
    let Some(js) = server_js("server-filesystem") else {
        return;
    };
    let home = Home::new();
    let outside = outside_dir();
    let inside = home.path("work/inside.txt");
    let evil = outside.path().join("evil.txt");
    let server = FakeProvider::start().await;
    server.push(sse(call(
        "w1",
        "mcp__fs__write_file",
        serde_json::json!({"path": inside, "content": "written by the server\n"}),
    )
    .call(
        "w2",
        "mcp__fs__write_file",
        serde_json::json!({"path": evil, "content": "escaped\n"}).to_string(),
    )));
    server.push(sse(Turn::new().text("done")));
    // The server itself may write anywhere under `/`.
    let overlay = entry("fs", &js, &["/"]);
    let pod = TestPod::start(&home, &server, "fsp", &["--overlay", &overlay]);
    let mut client = pod.connect().await;
    client.request(&run("write both")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    assert_eq!(
        std::fs::read_to_string(&inside).unwrap(),
        "written by the server\n"
    );
    assert!(!evil.exists(), "the server wrote outside the pod's scope");
    let second = nth_request(&server, "fsp", 2).await;
    assert!(second.contains("Successfully wrote to"), "{second}");
    assert!(
        second.contains("EROFS") || second.contains("read-only file system"),
        "the refusal is the sandbox's: {second}"
    );
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_session_is_started_again_on_the_next_call() {
    let Some(js) = server_js("server-everything") else {
        return;
    };
    let home = Home::new();
    let server = FakeProvider::start().await;
    let token = format!("pods-mcp-test-{}", std::process::id());
    let echo = |id: &str, text: &str| {
        call(
            id,
            "mcp__everything__echo",
            serde_json::json!({"message": text}),
        )
    };
    server.push(sse(echo("e1", "first")));
    server.push(sse(Turn::new().text("one")));
    server.push(sse(echo("e2", "second")));
    server.push(sse(Turn::new().text("two")));
    let overlay = entry("everything", &js, &["stdio", &token]);
    let pod = TestPod::start(&home, &server, "mk", &["--overlay", &overlay]);
    let mut client = pod.connect().await;
    client.request(&run("echo once")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    assert!(nth_request(&server, "mk", 2).await.contains("Echo: first"));
    let pid = pid_with(&token).expect("the server runs");
    // SAFETY-free: kill(2) through the command line tool.
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The pod tells its clients at once.
    events_until(
        &mut client,
        |e| matches!(e, Event::Alert(a) if a.message.contains("MCP server `everything` exited")),
    )
    .await;
    let listed = common::pod(&home, &server, &["mcp", "list", "mk"]).await;
    let listed = common::text(&listed);
    assert!(listed.contains("everything: exited"), "{listed}");
    client.request(&run("echo again")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    let fourth = nth_request(&server, "mk", 4).await;
    assert!(fourth.contains("Echo: second"), "{fourth}");
    assert_ne!(pid_with(&token), Some(pid), "a new server answered");
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_inherits_a_server_which_it_runs_within_its_own_scope() {
    let Some(js) = server_js("server-filesystem") else {
        return;
    };
    // Not under /tmp: commands and servers see their pod's private /tmp there,
    // so a write to the parent's files would land in it instead of failing.
    let base =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mcp-child-{}", std::process::id()));
    let home = Home::fixed(&base);
    let sub = home.path("work/sub");
    std::fs::create_dir_all(&sub).unwrap();
    let parents = home.path("work/parents.txt");
    let server = FakeProvider::start().await;
    server.push_for(
        &key("main"),
        sse(call(
            "s1",
            "SpawnPod",
            serde_json::json!({
                "name": "c",
                "task": "write the files",
                "scope": [{"target": sub, "permission": "write"}],
            }),
        )),
    );
    server.push_for(&key("main"), sse(Turn::new().text("Spawned.")));
    server.push_for(&key("main"), sse(Turn::new().text("Done.")));
    server.push_for(
        &key("main.c"),
        sse(call(
            "w1",
            "mcp__fs__write_file",
            serde_json::json!({"path": sub.join("mine.txt"), "content": "child\n"}),
        )
        .call(
            "w2",
            "mcp__fs__write_file",
            serde_json::json!({"path": parents, "content": "child\n"}).to_string(),
        )),
    );
    server.push_for(&key("main.c"), sse(Turn::new().text("done")));
    let overlay = entry("fs", &js, &["/"]);
    let mut pod = TestPod::start(&home, &server, "main", &["--overlay", &overlay]);
    let mut client = pod.connect().await;
    client.request(&run("delegate")).await.unwrap();
    let second = nth_request(&server, "main.c", 2).await;
    assert_eq!(
        std::fs::read_to_string(sub.join("mine.txt")).unwrap(),
        "child\n"
    );
    assert!(
        !parents.exists(),
        "the child's server wrote in its parent's scope"
    );
    assert!(
        second.contains("EROFS") || second.contains("read-only file system"),
        "{second}"
    );
    // The child started the server itself (it is in its tools).
    assert!(
        log_of(&home, "main.c")
            .iter()
            .any(|e| matches!(e, LogEntry::ToolResult { .. }))
    );
    drop(client);
    stop_pod(&mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_given_to_a_child_is_no_longer_writable_by_the_parents_server() {
    let Some(js) = server_js("server-filesystem") else {
        return;
    };
    let base =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mcp-refresh-{}", std::process::id()));
    let home = Home::fixed(&base);
    let sub = home.path("work/sub");
    std::fs::create_dir_all(&sub).unwrap();
    // A second allowed directory whose path marks this test's server process.
    let token_dir = home.path("mcp-token");
    std::fs::create_dir_all(&token_dir).unwrap();
    let token = token_dir.display().to_string();
    let write = |id: &str, file: &str| {
        call(
            id,
            "mcp__fs__write_file",
            serde_json::json!({"path": sub.join(file), "content": "parent\n"}),
        )
    };
    let server = FakeProvider::start().await;
    server.push_for(&key("main"), sse(write("w1", "before.txt")));
    server.push_for(
        &key("main"),
        sse(call(
            "s1",
            "SpawnPod",
            serde_json::json!({
                "name": "c",
                "task": "wait",
                "scope": [{"target": sub, "permission": "write"}],
            }),
        )),
    );
    server.push_for(&key("main"), sse(Turn::new().text("Spawned.")));
    server.push_for(&key("main.c"), sse(Turn::new().text("waiting")));
    let overlay = entry("fs", &js, &["/", &token]);
    let mut pod = TestPod::start(&home, &server, "main", &["--overlay", &overlay]);
    let mut client = pod.connect().await;
    let started = pid_with(&token).expect("the server runs");
    client.request(&run("write, then delegate")).await.unwrap();
    nth_request(&server, "main", 3).await;
    assert_eq!(
        std::fs::read_to_string(sub.join("before.txt")).unwrap(),
        "parent\n"
    );
    // Giving `sub` away stopped the server that could write it, before any
    // further call.
    wait_for("the old server to stop", || {
        pid_with(&token) != Some(started)
    })
    .await;
    server.push_for(&key("main"), sse(write("w2", "after.txt")));
    server.push_for(&key("main"), sse(Turn::new().text("Done.")));
    server.push_for(&key("main"), sse(Turn::new().text("Noted.")));
    wait_for("the first run to end", || {
        requests_of(&server, "main").len() >= 3
    })
    .await;
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    client.request(&run("write again")).await.unwrap();
    let fourth = nth_request(&server, "main", 5).await;
    assert!(
        !sub.join("after.txt").exists(),
        "the parent's server wrote in the child's scope"
    );
    assert!(
        fourth.contains("EROFS") || fourth.contains("read-only file system"),
        "{fourth}"
    );
    drop(client);
    stop_pod(&mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_server_starts_on_first_use_offering_the_tools_it_listed_before() {
    let Some(js) = server_js("server-everything") else {
        return;
    };
    let home = Home::new();
    let server = FakeProvider::start().await;
    let token = format!("pods-mcp-lazy-{}", std::process::id());
    let overlay = format!(
        "{}lazy = true\n",
        entry("everything", &js, &["stdio", &token])
    );
    // The first start ever lists the tools (and keeps them), then stops it.
    let mut first = TestPod::start(&home, &server, "la", &["--overlay", &overlay]);
    let client = first.connect().await;
    assert!(
        client
            .greeting
            .tools
            .iter()
            .any(|t| t == "mcp__everything__echo")
    );
    wait_for("the listing server to stop", || pid_with(&token).is_none()).await;
    drop(client);
    stop_pod(&mut first).await;
    // Later starts offer the kept tools without starting the server.
    server.push_for(
        &key("lb"),
        sse(call(
            "e1",
            "mcp__everything__echo",
            serde_json::json!({"message": "lazy"}),
        )),
    );
    server.push_for(&key("lb"), sse(Turn::new().text("done")));
    let mut second = TestPod::start(&home, &server, "lb", &["--overlay", &overlay]);
    let mut client = second.connect().await;
    assert!(
        client
            .greeting
            .tools
            .iter()
            .any(|t| t == "mcp__everything__echo")
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(pid_with(&token), None, "a lazy server started with its pod");
    client.request(&run("echo")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    assert!(nth_request(&server, "lb", 2).await.contains("Echo: lazy"));
    assert!(pid_with(&token).is_some(), "the first call started it");
    drop(client);
    stop_pod(&mut second).await;
}

/// Stops a pod and waits for it to exit.
async fn stop_pod(pod: &mut TestPod) {
    let mut client = pod.connect().await;
    client.send(&Method::Shutdown).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::Shutdown)).await;
    assert!(pod.wait_exit().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_list_and_doctor_show_each_server_its_state_and_tools() {
    let Some(js) = server_js("server-everything") else {
        return;
    };
    let home = Home::new();
    let server = FakeProvider::start().await;
    let overlay = format!(
        "{}[[mcp]]\nname = \"broken\"\ncommand = \"no-such-mcp-program\"\n",
        entry("everything", &js, &["stdio"])
    );
    let _pod = TestPod::start(&home, &server, "ml", &["--overlay", &overlay]);
    let elsewhere = home.path("plain");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let cwd = elsewhere.display().to_string();
    let _plain = TestPod::start(&home, &server, "plain", &["--cwd", &cwd]);

    let out = common::pod(&home, &server, &["mcp", "list", "ml"]).await;
    assert!(out.status.success(), "{}", common::text(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("everything: running ("), "{text}");
    assert!(text.contains("  mcp__everything__get-sum"), "{text}");
    assert!(text.contains("broken: failed (0 tools): "), "{text}");
    assert!(text.contains("no-such-mcp-program"), "{text}");

    let out = common::pod(&home, &server, &["mcp", "list", "ml", "--json"]).await;
    let servers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let everything = servers
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "everything")
        .unwrap();
    assert_eq!(everything["state"], "running");
    assert!(
        everything["tools"].as_array().unwrap().len() > 3,
        "{servers}"
    );

    let out = common::pod(&home, &server, &["mcp", "list", "plain"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("has no MCP servers"),
        "{}",
        common::text(&out)
    );
    let out = common::pod(&home, &server, &["mcp", "list", "ghost"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));

    // Doctor: a line per server; the failed one is an error.
    let out = common::pod(&home, &server, &["doctor", "--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines: Vec<&serde_json::Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "mcp server")
        .collect();
    assert_eq!(lines.len(), 2, "{report}");
    assert!(lines.iter().any(|c| {
        c["ok"] == true
            && c["detail"]
                .as_str()
                .unwrap()
                .starts_with("pod ml: everything: running")
    }));
    assert!(lines.iter().any(|c| {
        c["ok"] == false
            && c["detail"]
                .as_str()
                .unwrap()
                .starts_with("pod ml: broken: failed")
    }));
    assert!(!out.status.success(), "{}", common::text(&out));
}

/// A port nothing listens on now (bound and released: the reference server
/// takes its port from `PORT` and cannot be told to pick one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
async fn listening(port: u16) {
    wait_for(&format!("a server on port {port}"), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_uses_streamable_http_servers_with_headers_from_its_environment() {
    let Some(js) = server_js("server-everything") else {
        return;
    };
    let home = Home::new();
    let server = FakeProvider::start().await;
    let token = format!("pods-test-token-{}", std::process::id());
    // Two real Streamable HTTP servers: pods' own (rmcp, behind a token) and the
    // TypeScript SDK's reference server.
    let mut serve = home.command(&server.base_url());
    serve
        .args(["mcp", "serve", "--http", "127.0.0.1:0"])
        .env("POD_MCP_TOKEN", &token)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    let mut serve = common::Reaped(serve.spawn().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.0.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    // The pipe closes here, before the server writes its token line: it must
    // go on serving.
    let pods_url = first.trim().strip_prefix("url: ").unwrap().to_string();
    let port = free_port();
    let everything = std::process::Command::new("node")
        .arg(&js)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _everything = common::Reaped(everything);
    listening(port).await;

    server.push(sse(call(
        "l1",
        "mcp__pods__list_pods",
        serde_json::json!({}),
    )
    .call(
        "e1",
        "mcp__everything__echo",
        serde_json::json!({"message": "over http"}).to_string(),
    )));
    server.push(sse(Turn::new().text("done")));
    let overlay = format!(
        "[[mcp]]\nname = \"pods\"\nurl = \"{pods_url}\"\n\
         headers = {{ Authorization = \"Bearer ${{POD_MCP_TOKEN}}\" }}\n\
         [[mcp]]\nname = \"everything\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n\
         [[mcp]]\nname = \"denied\"\nurl = \"{pods_url}\"\n\
         headers = {{ Authorization = \"Bearer ${{WRONG_TOKEN}}\" }}\n"
    );
    let pod = TestPod::start_with_env(
        &home,
        &server,
        "mh",
        &["--overlay", &overlay],
        &[("POD_MCP_TOKEN", token.as_str()), ("WRONG_TOKEN", "nope")],
    );
    let mut client = pod.connect().await;
    client.request(&run("use both")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    let second = nth_request(&server, "mh", 2).await;
    assert!(
        second.contains("no pods started by this server"),
        "{second}"
    );
    assert!(second.contains("Echo: over http"), "{second}");

    let out = common::pod(&home, &server, &["mcp", "list", "mh"]).await;
    let listed = common::text(&out);
    assert!(listed.contains("pods: running (5 tools)"), "{listed}");
    assert!(listed.contains(&format!("  url: {pods_url}")), "{listed}");
    assert!(listed.contains("everything: running"), "{listed}");
    assert!(listed.contains("denied: failed (0 tools)"), "{listed}");
    assert!(
        listed.contains("HTTP 401 Unauthorized: Unauthorized: wrong bearer token"),
        "the refusal is named: {listed}"
    );
    assert!(!listed.contains("WorkerTransport"), "{listed}");
    drop(client);
}

/// A stdio server written with the TypeScript SDK (the one the reference
/// servers use) whose tool `grow` adds a tool `grown`: the SDK then sends
/// `notifications/tools/list_changed`. Written where the sandbox shows it.
fn growing_server(dir: &Path) -> Option<PathBuf> {
    let everything = server_js("server-everything")?;
    let sdk = everything
        .ancestors()
        .nth(3)
        .unwrap()
        .join("sdk/dist/esm/server");
    let script = dir.join("growing.mjs");
    std::fs::write(
        &script,
        format!(
            r#"import {{ McpServer }} from "{mcp}";
import {{ StdioServerTransport }} from "{stdio}";
const server = new McpServer({{ name: "growing", version: "1.0.0" }});
server.registerTool("grow", {{ description: "Adds the tool `grown`." }}, async () => {{
  server.registerTool("grown", {{ description: "Appeared after grow." }}, async () => ({{
    content: [{{ type: "text", text: "grown answers" }}],
  }}));
  return {{ content: [{{ type: "text", text: "added a tool" }}] }};
}});
await server.connect(new StdioServerTransport());
"#,
            mcp = sdk.join("mcp.js").display(),
            stdio = sdk.join("stdio.js").display(),
        ),
    )
    .unwrap();
    Some(script)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_changes_its_tools_is_listed_again_and_the_model_gets_them() {
    let dir = outside_dir();
    let Some(script) = growing_server(dir.path()) else {
        return;
    };
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(sse(call("g1", "mcp__growing__grow", serde_json::json!({}))));
    server.push(sse(Turn::new().text("grew")));
    server.push(sse(call(
        "g2",
        "mcp__growing__grown",
        serde_json::json!({}),
    )));
    server.push(sse(Turn::new().text("done")));
    let overlay = entry("growing", &script, &[]);
    let pod = TestPod::start(&home, &server, "mg", &["--overlay", &overlay]);
    let mut client = pod.connect().await;
    let first_tools = client.greeting.tools.clone();
    assert!(
        !first_tools.iter().any(|t| t == "mcp__growing__grown"),
        "{first_tools:?}"
    );
    client.request(&run("grow")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    assert!(nth_request(&server, "mg", 2).await.contains("added a tool"));
    // The pod lists the tools again on the server's notification.
    let mut listed = String::new();
    for _ in 0..200 {
        let out = common::pod(&home, &server, &["mcp", "list", "mg"]).await;
        listed = common::text(&out);
        if listed.contains("mcp__growing__grown") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(listed.contains("growing: running (2 tools)"), "{listed}");
    // The next request offers the new tool, and a call of it reaches the server.
    client.request(&run("use it")).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await;
    let third = nth_request(&server, "mg", 3).await;
    assert!(
        third.contains("\"name\":\"mcp__growing__grown\""),
        "{third}"
    );
    let fourth = nth_request(&server, "mg", 4).await;
    assert!(fourth.contains("grown answers"), "{fourth}");
    drop(client);
}
