//! One `[[mcp]]` server of a pod: started in the pod's command sandbox with
//! the pod's scope as it is at that moment, spoken to with the official SDK
//! (`rmcp`), restarted (a bounded number of times) when it died or when the
//! pod's scope changed since it started: a Landlock domain cannot shrink, so
//! a server that could write what the pod gave away must not serve again.

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use manifest::mcp::{McpServer, expand_env};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    JsonObject, ProtocolVersion, Tool,
};
use rmcp::service::{Peer, RoleClient, RunningService};
use rmcp::{ServiceError, ServiceExt};
use sandbox::{HelperCommand, SandboxPolicy, Served};

use crate::status::{Board, ServerState, ServerStatus};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Mutex;

/// How long a server may take to answer `initialize`.
const INIT_WAIT: Duration = Duration::from_secs(30);

/// How long a server gets to exit after its stdin closes.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Failures (a start that failed, an exit nobody asked for) allowed within
/// [`FAILURE_WINDOW`]; past them the server is not started again until the
/// window has moved on.
const MAX_FAILURES: usize = 3;

/// The window [`MAX_FAILURES`] counts in.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// How long `tools/list` may take.
const LIST_WAIT: Duration = Duration::from_secs(30);

/// How a pod's servers are confined.
#[derive(Debug, Clone)]
pub enum Confinement {
    /// In the command sandbox, through this helper (the pod's default).
    Sandbox(HelperCommand),
    /// Unconfined, as commands are with `[sandbox] mode = "off"`: in the
    /// policy's working directory, provider keys removed.
    Unconfined,
}

/// Looks a variable up in the pod's environment.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What a pod gives its servers.
#[derive(Clone)]
pub struct ServerEnv {
    /// How they are confined.
    pub confinement: Confinement,
    /// The sandbox policy of the pod's scope now (its commands' policy).
    pub policy: Arc<dyn Fn() -> SandboxPolicy + Send + Sync>,
    /// Told when a server fails or dies (the pod raises an alert).
    pub alert: Arc<dyn Fn(String) + Send + Sync>,
    /// The pod's environment, for `${VAR}` in a server's `env`.
    pub lookup: EnvLookup,
    /// Where servers' tool lists are kept between starts (a lazy server's
    /// tools are offered from there without starting it).
    pub cache: Option<std::path::PathBuf>,
    /// Where the servers' states are kept for `pod mcp list` and `pod doctor`.
    pub board: Arc<Board>,
}

impl std::fmt::Debug for ServerEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerEnv")
            .field("confinement", &self.confinement)
            .finish_non_exhaustive()
    }
}

/// The server's process.
enum Process {
    Served(Served),
    Plain(Child),
    /// A `url` server: no process of ours.
    Remote,
}

impl Process {
    fn has_exited(&mut self) -> bool {
        match self {
            Process::Served(s) => s.has_exited(),
            Process::Plain(c) => !matches!(c.try_wait(), Ok(None)),
            Process::Remote => false,
        }
    }

    /// Turns true when the process exits (a sandboxed server only).
    fn exit_signal(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        match self {
            Process::Served(s) => Some(s.exit_signal()),
            Process::Plain(_) | Process::Remote => None,
        }
    }

    fn stderr_tail(&self) -> String {
        match self {
            Process::Served(s) => s.stderr_tail(),
            Process::Plain(_) | Process::Remote => String::new(),
        }
    }

    async fn stop(self) {
        match self {
            Process::Served(s) => s.stop(STOP_GRACE).await,
            Process::Plain(mut c) => {
                drop(c.stdin.take());
                if tokio::time::timeout(STOP_GRACE, c.wait()).await.is_err() {
                    let _ = c.kill().await;
                }
            }
            Process::Remote => {}
        }
    }
}

/// A started server.
struct Running {
    client: RunningService<RoleClient, Listener>,
    process: Process,
    /// The policy it was started with.
    policy: SandboxPolicy,
    /// Set when the pod stops it (its exit is then no news).
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Default)]
struct State {
    running: Option<Running>,
    /// When it failed, within the last [`FAILURE_WINDOW`].
    failures: Vec<Instant>,
}

/// One MCP server of a pod.
pub struct Server {
    config: McpServer,
    env: ServerEnv,
    state: Mutex<State>,
    /// Its tools as last listed (shared with its session's [`Listener`]).
    listed: Arc<std::sync::Mutex<Vec<Tool>>>,
}

/// What pods tells a server about itself, and what it does with the
/// server's notifications: a `tools/list_changed` lists the tools again, so
/// the model's next request offers the new set.
struct Listener {
    config: ClientConfig,
    name: String,
    listed: Arc<std::sync::Mutex<Vec<Tool>>>,
    board: Arc<Board>,
    /// Its line on the board, should it have none.
    line: ServerStatus,
    cache: Option<std::path::PathBuf>,
    /// A listing of changed tools runs.
    busy: Arc<std::sync::atomic::AtomicBool>,
    /// The tools changed again since the running listing began.
    again: Arc<std::sync::atomic::AtomicBool>,
}

impl rmcp::ClientHandler for Listener {
    fn get_info(&self) -> ClientConfig {
        self.config.clone()
    }

    async fn on_tool_list_changed(&self, context: rmcp::service::NotificationContext<RoleClient>) {
        use std::sync::atomic::Ordering::SeqCst;
        self.again.store(true, SeqCst);
        if self.busy.swap(true, SeqCst) {
            // A listing runs: it lists once more when it is done.
            return;
        }
        let (peer, name, listed, board, line, cache) = (
            context.peer,
            self.name.clone(),
            Arc::clone(&self.listed),
            Arc::clone(&self.board),
            self.line.clone(),
            self.cache.clone(),
        );
        let (busy, again) = (Arc::clone(&self.busy), Arc::clone(&self.again));
        // Listed from a task of its own: the session must go on reading
        // while it waits for the answer. One listing at a time, however many
        // notifications come: the last list wins, never an older one.
        tokio::spawn(async move {
            loop {
                again.store(false, SeqCst);
                match tokio::time::timeout(LIST_WAIT, peer.list_all_tools()).await {
                    Ok(Ok(tools)) => {
                        tracing::info!(server = %name, count = tools.len(), "MCP server's tools changed");
                        let names = tools.iter().map(|t| t.name.to_string()).collect();
                        if let Some(file) = &cache {
                            write_cache(file, &tools);
                        }
                        *listed
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = tools;
                        board.update(&name, || line.clone(), |s| s.tools = names);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(server = %name, error = %e, "listing changed tools failed");
                    }
                    Err(_) => tracing::warn!(server = %name, "listing changed tools timed out"),
                }
                if !again.load(SeqCst) {
                    busy.store(false, SeqCst);
                    // A notification that came between the check and the
                    // store saw `busy` and left the listing to this task.
                    if !again.load(SeqCst) || busy.swap(true, SeqCst) {
                        break;
                    }
                }
            }
        });
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

/// The last lines of a server's stderr, for a message.
fn said(tail: &str) -> String {
    let tail = tail.trim();
    if tail.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = tail.lines().collect();
    let last = &lines[lines.len().saturating_sub(5)..];
    format!("; its stderr ends: {}", last.join(" | "))
}

impl Server {
    /// Server `config`, not started yet.
    pub fn new(config: McpServer, env: ServerEnv) -> Self {
        Server {
            config,
            env,
            state: Mutex::new(State::default()),
            listed: Arc::default(),
        }
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Its tools as last listed (at start, from the cache for a lazy one, or
    /// after it said they changed).
    pub fn listed(&self) -> Vec<Tool> {
        self.listed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_listed(&self, tools: &[Tool]) {
        *self
            .listed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tools.to_vec();
    }

    /// How the session with this server is set up.
    fn listener(&self) -> Listener {
        Listener {
            config: client_config(),
            name: self.config.name.clone(),
            listed: Arc::clone(&self.listed),
            board: Arc::clone(&self.env.board),
            line: self.status_line(ServerState::Running),
            cache: self.cache_file(),
            busy: Arc::default(),
            again: Arc::default(),
        }
    }

    /// The server's first line on the board.
    fn status_line(&self, state: ServerState) -> ServerStatus {
        let c = &self.config;
        ServerStatus {
            name: c.name.clone(),
            command: if c.url.is_some() {
                Vec::new()
            } else {
                std::iter::once(c.command.clone())
                    .chain(c.args.iter().cloned())
                    .collect()
            },
            url: c.url.as_deref().map(shown_url),
            lazy: c.lazy,
            state,
            tools: Vec::new(),
            error: None,
        }
    }

    /// Puts the server's state (and what else `change` sets) on the board.
    pub(crate) fn report(&self, state: ServerState, change: impl FnOnce(&mut ServerStatus)) {
        self.env.board.update(
            &self.config.name,
            || self.status_line(state),
            |s| {
                s.state = state;
                change(s);
            },
        );
    }

    /// Starts the server (when it is not running, died, or the scope changed)
    /// and lists its tools.
    pub async fn tools(&self) -> Result<Vec<Tool>, String> {
        let peer = self.peer().await?;
        match tokio::time::timeout(LIST_WAIT, peer.list_all_tools()).await {
            Ok(Ok(tools)) => {
                self.set_listed(&tools);
                self.report(ServerState::Running, |s| {
                    s.tools = tools.iter().map(|t| t.name.to_string()).collect();
                });
                Ok(tools)
            }
            Ok(Err(e)) => Err(self.failed("list its tools", &e)),
            Err(_) => Err(format!(
                "MCP server `{}` did not list its tools within {} s",
                self.config.name,
                LIST_WAIT.as_secs()
            )),
        }
    }

    /// The tools to offer at pod start: a lazy server's from the cache when
    /// it has them (the server is not started), else the server's own (a lazy
    /// one is stopped again after), kept in the cache for next time.
    pub async fn tools_at_start(&self) -> Result<Vec<Tool>, String> {
        let file = self.cache_file();
        if self.config.lazy
            && let Some(tools) = file.as_deref().and_then(read_cache)
        {
            self.set_listed(&tools);
            self.report(ServerState::Stopped, |s| {
                s.tools = tools.iter().map(|t| t.name.to_string()).collect();
            });
            return Ok(tools);
        }
        let tools = self.tools().await?;
        if let Some(file) = &file {
            write_cache(file, &tools);
        }
        if self.config.lazy {
            self.stop().await;
        }
        Ok(tools)
    }

    /// Where its tool list is kept between starts.
    fn cache_file(&self) -> Option<std::path::PathBuf> {
        self.env
            .cache
            .as_ref()
            .map(|dir| dir.join(self.cache_name()))
    }

    /// The cache file's name: the server's name and a hash of how it starts.
    fn cache_name(&self) -> String {
        use sha2::{Digest, Sha256};
        let c = &self.config;
        let key = match &c.url {
            None => serde_json::json!([c.name, c.command, c.args, c.env]),
            Some(url) => serde_json::json!([c.name, url, c.headers]),
        }
        .to_string();
        let digest = Sha256::digest(key.as_bytes());
        let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{hash}.json", c.name)
    }

    /// Calls `tool` with `arguments`, starting the server first when needed.
    pub async fn call(
        &self,
        tool: &str,
        arguments: Option<JsonObject>,
    ) -> Result<CallToolResult, String> {
        let peer = self.peer().await?;
        let mut params = CallToolRequestParams::new(tool.to_owned());
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        // Dropping this future (a cancel) tells the server the request is cancelled.
        peer.call_tool(params)
            .await
            .map_err(|e| self.failed(&format!("call `{tool}`"), &e))
    }

    /// Stops the server if it runs with another policy than the pod's scope
    /// gives now (it starts again, with the new one, on the next call): a
    /// scope the pod gave a child must not stay writable by its servers.
    pub async fn refresh(&self) {
        let policy = (self.env.policy)();
        let mut state = self.state.lock().await;
        // A remote server writes nothing here: the scope is not its business.
        if self.config.url.is_none()
            && state.running.as_ref().is_some_and(|r| r.policy != policy)
            && let Some(old) = state.running.take()
        {
            tracing::info!(server = %self.config.name, "the scope changed: MCP server stopped");
            stop(old).await;
            self.report(ServerState::Stopped, |_| {});
        }
    }

    /// Stops the server if it runs.
    pub async fn stop(&self) {
        let running = self.state.lock().await.running.take();
        if let Some(running) = running {
            stop(running).await;
            self.report(ServerState::Stopped, |_| {});
        }
    }

    /// What went wrong talking to the server.
    fn failed(&self, what: &str, e: &ServiceError) -> String {
        let name = &self.config.name;
        match e {
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => format!(
                "MCP server `{name}` is gone (it exited or closed its output) while asked to {what}; it is started again on the next call"
            ),
            ServiceError::McpError(e) => {
                format!(
                    "MCP server `{name}` refused to {what}: {} (code {})",
                    e.message, e.code.0
                )
            }
            other => format!("MCP server `{name}` could not {what}: {other}"),
        }
    }

    /// A client of the running server, started (again) when needed.
    async fn peer(&self) -> Result<Peer<RoleClient>, String> {
        let policy = (self.env.policy)();
        let mut state = self.state.lock().await;
        if let Some(running) = &mut state.running {
            let exited = running.process.has_exited() || running.client.is_closed();
            if !exited && (running.policy == policy || self.config.url.is_some()) {
                return Ok(running.client.peer().clone());
            }
            let tail = running.process.stderr_tail();
            if let Some(old) = state.running.take() {
                stop(old).await;
            }
            if exited {
                tracing::info!(server = %self.config.name, tail = %said(&tail), "MCP server exited; starting it again");
                state.failures.push(Instant::now());
            }
        }
        let now = Instant::now();
        state
            .failures
            .retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        if state.failures.len() >= MAX_FAILURES {
            let e = format!(
                "MCP server `{}` failed {MAX_FAILURES} times in the last minute; it is not started again until a minute has passed",
                self.config.name
            );
            self.report(ServerState::Failed, |s| s.error = Some(e.clone()));
            return Err(e);
        }
        self.report(ServerState::Starting, |_| {});
        match self.start(policy).await {
            Ok(running) => {
                let peer = running.client.peer().clone();
                state.running = Some(running);
                self.report(ServerState::Running, |s| s.error = None);
                Ok(peer)
            }
            Err(e) => {
                state.failures.push(Instant::now());
                self.report(ServerState::Failed, |s| s.error = Some(e.clone()));
                (self.env.alert)(e.clone());
                Err(e)
            }
        }
    }

    /// Connects to a `url` server and initializes the session (`policy` is
    /// kept only to compare, like a local server's).
    async fn connect(&self, endpoint: &str, policy: SandboxPolicy) -> Result<Running, String> {
        let url = shown_url(endpoint);
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        let name = &self.config.name;
        let mut headers = std::collections::HashMap::new();
        for (key, value) in &self.config.headers {
            let value = expand_env(value, |k| (self.env.lookup)(k))
                .map_err(|e| format!("MCP server `{name}` not connected: header {key}: {e}"))?;
            let header = reqwest::header::HeaderName::from_bytes(key.as_bytes())
                .map_err(|e| format!("MCP server `{name}`: header {key:?}: {e}"))?;
            let value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                format!("MCP server `{name}`: header {key}: its value is not a valid header value")
            })?;
            headers.insert(header, value);
        }
        let http = crate::http::HttpClient::new()
            .map_err(|e| format!("MCP server `{name}`: cannot build an HTTP client: {e}"))?;
        let config = StreamableHttpClientTransportConfig::with_uri(endpoint.to_string())
            .custom_headers(headers);
        let transport = StreamableHttpClientTransport::with_client(http, config);
        let client = match tokio::time::timeout(INIT_WAIT, self.listener().serve(transport)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(format!(
                    "MCP server `{name}` at {url} did not start a session: {}",
                    transport_reason(&e.to_string())
                ));
            }
            Err(_) => {
                return Err(format!(
                    "MCP server `{name}` at {url} did not answer `initialize` within {} s",
                    INIT_WAIT.as_secs()
                ));
            }
        };
        tracing::info!(server = %name, %url, "MCP server connected");
        Ok(Running {
            client,
            process: Process::Remote,
            policy,
            stopping: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    /// Starts the server under `policy` and initializes the session.
    async fn start(&self, policy: SandboxPolicy) -> Result<Running, String> {
        if let Some(url) = &self.config.url {
            return self.connect(url, policy).await;
        }
        let name = &self.config.name;
        let mut env = Vec::with_capacity(self.config.env.len());
        for (key, value) in &self.config.env {
            let value = expand_env(value, |k| (self.env.lookup)(k))
                .map_err(|e| format!("MCP server `{name}` not started: env {key}: {e}"))?;
            env.push((key.clone(), value));
        }
        let argv: Vec<String> = std::iter::once(self.config.command.clone())
            .chain(self.config.args.iter().cloned())
            .collect();
        let (process, stdout, stdin) = match &self.env.confinement {
            Confinement::Sandbox(helper) => {
                let mut served =
                    sandbox::serve(helper, &policy, &argv, &env)
                        .await
                        .map_err(|e| {
                            format!("MCP server `{name}` could not start in the sandbox: {e}")
                        })?;
                let (stdout, stdin) = served
                    .take_io()
                    .ok_or_else(|| format!("MCP server `{name}`: no stdio"))?;
                (Process::Served(served), stdout, stdin)
            }
            Confinement::Unconfined => {
                let (child, stdout, stdin) = spawn_plain(&argv, &env, &policy)
                    .map_err(|e| format!("MCP server `{name}` could not start: {e}"))?;
                (Process::Plain(child), stdout, stdin)
            }
        };
        let client =
            match tokio::time::timeout(INIT_WAIT, self.listener().serve((stdout, stdin))).await {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => {
                    let tail = process.stderr_tail();
                    process.stop().await;
                    return Err(format!(
                        "MCP server `{name}` did not start a session: {e}{}",
                        said(&tail)
                    ));
                }
                Err(_) => {
                    let tail = process.stderr_tail();
                    process.stop().await;
                    return Err(format!(
                        "MCP server `{name}` did not answer `initialize` within {} s{}",
                        INIT_WAIT.as_secs(),
                        said(&tail)
                    ));
                }
            };
        tracing::info!(server = %name, "MCP server started");
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(mut exited) = process.exit_signal() {
            // The user hears of a server that died when it dies, not at the
            // next call.
            let (alert, name, stopping, board) = (
                Arc::clone(&self.env.alert),
                name.clone(),
                Arc::clone(&stopping),
                Arc::clone(&self.env.board),
            );
            let first = self.status_line(ServerState::Exited);
            tokio::spawn(async move {
                if exited.wait_for(|e| *e).await.is_ok()
                    && !stopping.load(std::sync::atomic::Ordering::SeqCst)
                {
                    let message = format!(
                        "MCP server `{name}` exited; it is started again on the next call to one of its tools"
                    );
                    board.update(
                        &name,
                        || first,
                        |s| {
                            s.state = ServerState::Exited;
                            s.error = Some(message.clone());
                        },
                    );
                    alert(message);
                }
            });
        }
        Ok(Running {
            client,
            process,
            policy,
            stopping,
        })
    }
}

/// What a transport failure says, without the transport's type name that
/// rmcp puts in front (`Send message error Transport [<type>] error: ...`).
fn transport_reason(message: &str) -> &str {
    let reason = message
        .split_once("] error: ")
        .map_or(message, |(_, reason)| reason);
    reason
        .strip_suffix(", when send initialize request")
        .unwrap_or(reason)
}

/// A server's endpoint as pods shows it (alerts, `pod mcp list`, its log):
/// without its query, which may hold a key.
fn shown_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

/// How pods introduces itself to a server.
fn client_config() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("pods", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(ProtocolVersion::V_2025_11_25)
}

/// A cached tool list, if there is a readable one.
fn read_cache(file: &std::path::Path) -> Option<Vec<Tool>> {
    let bytes = std::fs::read(file).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Keeps a tool list for the next start (best effort: without it a lazy
/// server is started once more to list its tools).
fn write_cache(file: &std::path::Path, tools: &[Tool]) {
    let Some(dir) = file.parent() else { return };
    let written = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| e.to_string())
        .and_then(|()| serde_json::to_vec(tools).map_err(|e| e.to_string()))
        .and_then(|bytes| sys::replace_file(file, &bytes).map_err(|e| e.to_string()));
    if let Err(e) = written {
        tracing::warn!(file = %file.display(), error = %e, "cannot keep an MCP server's tool list");
    }
}

/// Ends a session and its process.
async fn stop(running: Running) {
    let Running {
        client,
        process,
        stopping,
        ..
    } = running;
    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = tokio::time::timeout(STOP_GRACE, client.cancel()).await;
    process.stop().await;
}

/// Starts a server without the sandbox (`[sandbox] mode = "off"`).
fn spawn_plain(
    argv: &[String],
    env: &[(String, String)],
    policy: &SandboxPolicy,
) -> std::io::Result<(Child, ChildStdout, ChildStdin)> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&policy.cwd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if policy.removes_env(&key) {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn()?;
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err(std::io::Error::other("no stdio"));
    };
    Ok((child, stdout, stdin))
}

#[cfg(test)]
mod tests {
    use super::transport_reason;

    #[test]
    fn transport_failures_read_without_type_names() {
        let raw = "Send message error Transport [rmcp::transport::worker::WorkerTransport<X<Y>>] \
                   error: unexpected server response: HTTP 401 Unauthorized: wrong bearer token, \
                   when send initialize request";
        assert_eq!(
            transport_reason(raw),
            "unexpected server response: HTTP 401 Unauthorized: wrong bearer token"
        );
        assert_eq!(transport_reason("connection refused"), "connection refused");
    }

    #[test]
    fn shown_urls_leave_the_query_out() {
        assert_eq!(
            super::shown_url("https://x.example/mcp?api_key=abc"),
            "https://x.example/mcp?…"
        );
        assert_eq!(
            super::shown_url("https://x.example/mcp"),
            "https://x.example/mcp"
        );
    }
}
