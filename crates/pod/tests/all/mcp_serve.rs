//! pods as an MCP server, end to end: `pod mcp serve` (the real binary) driven
//! by an rmcp client over stdio, its pods answering from the scripted fake
//! provider; and the HTTP transport's gate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig};
use rmcp::model::{ContentBlock, Implementation};
use rmcp::service::{RoleClient, RunningService};
use test_support::fake_provider::FakeProvider;
use test_support::script::Turn;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::common::{self, Home, WAIT, key, sse, wait_for};

type Client = RunningService<RoleClient, ClientConfig>;

/// `pod mcp serve ARGS` with the home's environment, and an rmcp client on its stdio.
async fn serve(
    home: &Home,
    server: &FakeProvider,
    args: &[&str],
) -> (Client, tokio::process::Child) {
    serve_env(home, server, args, &[]).await
}

/// [`serve`] with variables `env` set for the server.
async fn serve_env(
    home: &Home,
    server: &FakeProvider,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Client, tokio::process::Child) {
    let mut command = home.command(&server.base_url());
    command.envs(env.iter().copied());
    command
        .args(["mcp", "serve"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("pods-test", "1"),
    );
    let client = tokio::time::timeout(WAIT, config.serve((stdout, stdin)))
        .await
        .expect("the server must answer initialize")
        .unwrap();
    (client, child)
}

/// The text of a tool result, and whether it is an error.
fn text_of(result: &CallToolResult) -> (bool, String) {
    let text = result
        .content
        .iter()
        .filter_map(|c| match c {
            ContentBlock::Text(t) => Some(t.text.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    (result.is_error == Some(true), text)
}

/// Calls `tool` with `args`; returns (is_error, text).
async fn call(client: &Client, tool: &'static str, args: serde_json::Value) -> (bool, String) {
    let serde_json::Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    let params = CallToolRequestParams::new(tool).with_arguments(args);
    let result = tokio::time::timeout(WAIT, client.peer().call_tool(params))
        .await
        .unwrap_or_else(|_| panic!("{tool} timed out"))
        .unwrap();
    text_of(&result)
}

/// Reads pod `name`'s output until it holds `want` (the pod answers on its own time).
async fn read_until(client: &Client, name: &str, want: &str) -> String {
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (error, text) = call(
            client,
            "read_pod_output",
            serde_json::json!({ "name": name }),
        )
        .await;
        assert!(!error, "{text}");
        seen.push_str(&text);
        seen.push('\n');
        if text.contains(want) {
            return seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {want:?} from {name}; read: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `spawn_pod` of `name` with `scope`.
async fn spawn(client: &Client, name: &str, scope: serde_json::Value) -> (bool, String) {
    let input =
        serde_json::json!({"name": name, "task": format!("the task of {name}"), "scope": scope});
    call(client, "spawn_pod", input).await
}

/// Ends the session and waits for the server to exit.
async fn end(client: Client, child: &mut tokio::process::Child) -> std::process::ExitStatus {
    client.cancel().await.unwrap();
    tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap()
}

/// `spawn_pod` of `name` writing `target`, and nothing else.
async fn spawn_writing(client: &Client, name: &str, target: &str) -> (bool, String) {
    let scope = serde_json::json!([{"target": target, "permission": "write"}]);
    spawn(client, name, scope).await
}

fn alive(home: &Home, name: &str) -> bool {
    pod::ipc::listener::is_alive(&home.path("runtime").join(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_host_spawns_messages_reads_lists_and_stops_confined_pods() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push_for(&key("alpha"), sse(Turn::new().text("alpha did its part")));
    server.push_for(&key("beta"), sse(Turn::new().text("beta done")));
    server.push_for(&key("gamma"), sse(Turn::new().text("gamma done")));
    let work = home.path("work");
    std::fs::create_dir_all(work.join("docs")).unwrap();
    let (client, mut child) = serve(&home, &server, &[]).await;

    let tools = client.peer().list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "list_pods",
            "read_pod_output",
            "send_to_pod",
            "spawn_pod",
            "stop_pod"
        ]
    );

    // Two pods with disjoint scopes.
    let (error, text) = spawn_writing(&client, "alpha", "a").await;
    assert!(!error, "{text}");
    assert!(text.contains("started pod `alpha`"), "{text}");
    let scope = serde_json::json!([{"target": "b", "permission": "write"},
        {"target": "docs", "permission": "read", "recursive": false}]);
    let (error, text) = spawn(&client, "beta", scope).await;
    assert!(!error, "{text}");
    assert!(text.contains("read:"), "{text}");
    assert!(alive(&home, "alpha") && alive(&home, "beta"));

    // An overlapping scope fails and names the pod that holds it.
    let (error, text) = spawn_writing(&client, "gamma", "a/inner").await;
    assert!(error, "{text}");
    assert!(
        text.contains("scope conflict") && text.contains("alpha"),
        "the holder must be named: {text}"
    );
    assert!(!text.contains("pod.log"), "{text}");
    assert!(!alive(&home, "gamma"));
    // Outside the server's scope: refused before any pod starts.
    let (error, text) = spawn_writing(&client, "delta", "../elsewhere").await;
    assert!(
        error && text.contains("outside this server's scope"),
        "{text}"
    );
    assert!(!home.path("elsewhere").exists());
    // Bad input is a tool error the model can read.
    let (error, text) = call(&client, "spawn_pod", serde_json::json!({"name": "x"})).await;
    assert!(error && text.contains("invalid spawn_pod input"), "{text}");

    // Reading: the answer once, then nothing new.
    let seen = read_until(&client, "alpha", "alpha did its part").await;
    assert!(seen.contains("idle"), "{seen}");
    let (_, again) = call(
        &client,
        "read_pod_output",
        serde_json::json!({"name": "alpha"}),
    )
    .await;
    assert!(again.contains("no new assistant text"), "{again}");
    // More work, whose answer comes later: the provider holds the request
    // until it is scripted, and one `read_pod_output` with `wait_s` waits
    // for the turn to end.
    server.hold_requests(WAIT);
    let (error, text) = call(
        &client,
        "send_to_pod",
        serde_json::json!({"name": "alpha", "message": "and once more"}),
    )
    .await;
    assert!(!error, "{text}");
    let waited = call(
        &client,
        "read_pod_output",
        serde_json::json!({"name": "alpha", "wait_s": 30}),
    );
    let answer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let turn = Turn::new().text("alpha's second answer");
        server.push_for(&key("alpha"), sse(turn));
    };
    let ((error, seen), ()) = tokio::join!(waited, answer);
    assert!(!error, "{seen}");
    assert!(seen.contains("alpha's second answer"), "{seen}");
    assert!(seen.contains("idle"), "{seen}");
    assert!(!seen.contains("alpha did its part"), "{seen}");
    read_until(&client, "beta", "beta done").await;
    let (error, text) = call(
        &client,
        "send_to_pod",
        serde_json::json!({"name": "nobody", "message": "hi"}),
    )
    .await;
    assert!(error && text.contains("no pod named `nobody`"), "{text}");

    // Listing: both, with their scopes; and `pod ls` shows them as the user's pods.
    let (_, list) = call(&client, "list_pods", serde_json::json!({})).await;
    assert!(list.contains("alpha [alive"), "{list}");
    assert!(list.contains("beta [alive"), "{list}");
    assert!(
        list.contains(&format!("write:{}", work.join("a").display())),
        "{list}"
    );
    let ls = common::pod(&home, &server, &["ls"]).await;
    let ls = String::from_utf8_lossy(&ls.stdout).to_string();
    assert!(ls.contains("alpha") && ls.contains("beta"), "{ls}");

    // Stopping frees the scope for another pod.
    let (error, text) = call(&client, "stop_pod", serde_json::json!({"name": "beta"})).await;
    assert!(!error && text.contains("stopped pod `beta`"), "{text}");
    assert!(!alive(&home, "beta"));
    let (_, list) = call(&client, "list_pods", serde_json::json!({})).await;
    assert!(!list.contains("beta"), "{list}");
    let (error, text) = spawn_writing(&client, "gamma", "b").await;
    assert!(!error, "{text}");

    // The session ends: its pods stop with it.
    let status = end(client, &mut child).await;
    assert!(status.success(), "{status}");
    assert!(!alive(&home, "alpha") && !alive(&home, "gamma"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keep_the_pods_outlive_the_session() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push_for(&key("kept"), sse(Turn::new().text("ok")));
    let (client, mut child) = serve(&home, &server, &["--keep", "--scope", "."]).await;
    let (error, text) = spawn_writing(&client, "kept", "k").await;
    assert!(!error, "{text}");
    end(client, &mut child).await;
    assert!(alive(&home, "kept"));
    let out = common::pod(&home, &server, &["stop", "kept"]).await;
    assert!(out.status.success(), "{}", common::text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_a_manifest_would_let_write_outside_the_servers_scope_is_stopped() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let elsewhere = home.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    // The user manifest grants every pod a write outside the server's scope.
    std::fs::write(
        home.path("config/manifest.toml"),
        format!(
            "[[scope.allow]]\ntarget = {:?}\npermission = \"write\"\n",
            elsewhere.display().to_string()
        ),
    )
    .unwrap();
    let (client, mut child) = serve(&home, &server, &[]).await;
    let (error, text) = spawn_writing(&client, "wide", "w").await;
    assert!(error, "{text}");
    assert!(
        text.contains("was stopped") && text.contains(&elsewhere.display().to_string()),
        "{text}"
    );
    assert!(!alive(&home, "wide"));
    let (_, list) = call(&client, "list_pods", serde_json::json!({})).await;
    assert!(list.contains("no pods started by this server"), "{list}");
    end(client, &mut child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_never_sees_the_servers_token_and_a_taken_name_says_so() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push_for(&key("tok"), sse(Turn::new().text("ok")));
    let secret = "a-token-of-the-mcp-server-0123";
    let (client, mut child) = serve_env(&home, &server, &[], &[("POD_MCP_TOKEN", secret)]).await;
    let (error, text) = spawn_writing(&client, "tok", "t").await;
    assert!(!error, "{text}");
    let pid = std::fs::read_to_string(home.path("runtime/tok/pid")).unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", pid.trim())).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains("POD_BASE_URL="),
        "the pod's environment was read"
    );
    assert!(!environ.contains(secret), "the pod got the server's token");
    // Stopped, its session stays the user's: the name is taken.
    let (error, text) = call(&client, "stop_pod", serde_json::json!({"name": "tok"})).await;
    assert!(!error, "{text}");
    let (error, text) = spawn_writing(&client, "tok", "t").await;
    assert!(error && text.contains("choose another name"), "{text}");
    assert!(!text.contains("pod restore"), "{text}");
    end(client, &mut child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pods_stop_when_the_server_is_killed() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push_for(&key("orphan"), sse(Turn::new().text("ok")));
    let (client, mut child) = serve(&home, &server, &[]).await;
    let (error, text) = spawn_writing(&client, "orphan", "o").await;
    assert!(!error, "{text}");
    assert!(alive(&home, "orphan"));
    // No goodbye: the pod notices the server's end itself.
    child.start_kill().unwrap();
    tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    wait_for("the pod to stop", || !alive(&home, "orphan")).await;
    drop(client);
}

/// Sends one HTTP request to `port` and returns what came back until `until`
/// shows up or the connection closes.
async fn http(port: u16, headers: &[(&str, &str)], body: &str, until: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&got).contains(until) {
                return;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_a_request_needs_the_token_and_no_foreign_origin() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let mut command = home.command(&server.base_url());
    command
        .args(["mcp", "serve", "--http", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    let url = next().await;
    let token = next().await;
    let url = url.strip_prefix("url: http://127.0.0.1:").unwrap();
    let port: u16 = url.strip_suffix("/mcp").unwrap().parse().unwrap();
    let token = token.strip_prefix("token: ").unwrap().to_string();
    assert_eq!(token.len(), 32, "{token}");
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}})
    .to_string();
    let bearer = format!("Bearer {token}");

    let none = http(port, &[], &init, "\r\n\r\n").await;
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    let wrong = http(port, &[("Authorization", "Bearer 0000")], &init, "\r\n\r\n").await;
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let page = http(
        port,
        &[
            ("Authorization", &bearer),
            ("Origin", "https://evil.example"),
        ],
        &init,
        "\r\n\r\n",
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 403"), "{page}");
    let ok = http(port, &[("Authorization", &bearer)], &init, "serverInfo").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("\"name\":\"pods\""), "{ok}");

    // SIGTERM ends it cleanly.
    // SAFETY: kill(2) of the server this test started.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_is_refused() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    for addr in ["0.0.0.0:0", "127.0.0.2:0"] {
        let out = common::pod(&home, &server, &["mcp", "serve", "--http", addr]).await;
        assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("only a loopback address"),
            "{}",
            common::text(&out)
        );
    }
    // A token from the environment must not be guessable by its length alone.
    let mut command = home.command(&server.base_url());
    command
        .args(["mcp", "serve", "--http", "127.0.0.1:0"])
        .env("POD_MCP_TOKEN", "short");
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 16"),
        "{}",
        common::text(&out)
    );
}
