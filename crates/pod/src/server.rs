//! One pod process from start to exit: take the pod's liveness lock, open (or
//! restore) its session, bind its socket, serve until `shutdown` or a signal,
//! and leave a log that a later `pod restore` continues.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use llm_types::Item;
use llm_worker::llm_client::http::LlmClient;
use llm_worker::tool::ToolDefinition;
use llm_worker::tool_server::{ToolServer, interrupted_result, output_limit};
use llm_worker::worker::{Worker, WorkerConfig};
use manifest::{Manifest, Permission, Scope};
use protocol::{AlertLevel, AlertSource, Greeting, Method, PodStatus, TurnResult};
use session_store::{EntryBody, LogEntry, LoggedItem, SessionWriter};
use tokio::sync::{mpsc, oneshot};

use crate::controller::{Command, Controller};
use crate::ipc::listener::{self, PodLock};
use crate::runtime::dir::{Places, ensure_private_dir};
use crate::runtime::pod_registry::{self, LockFileGuard, PodEntry, ProcessIdentity};
use crate::state::{PodState, StatusRecord, lock, now_ms};

/// Everything a pod process needs to run.
pub struct PodSpec {
    /// Full name (`parent.child` for children).
    pub name: String,
    /// Where pods keeps its files.
    pub places: Places,
    /// Working directory of the agent.
    pub cwd: PathBuf,
    /// The resolved manifest.
    pub manifest: Manifest,
    /// The model client.
    pub client: Arc<dyn LlmClient>,
    /// The tools the model may call.
    pub tools: Vec<ToolDefinition>,
    /// Instance id of the parent pod, for children.
    pub parent: Option<String>,
    /// How commands are confined (shown in the greeting's scope summary).
    pub sandbox_level: String,
    /// Our uid (only it may connect).
    pub uid: u32,
}

/// What a started pod tells its launcher.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ready {
    /// Full name.
    pub name: String,
    /// The socket to connect to.
    pub socket: PathBuf,
    /// Process id.
    pub pid: u32,
    /// This run's instance id.
    pub instance_id: String,
}

/// Why a pod could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The runtime dir is unusable.
    #[error(transparent)]
    Dir(#[from] crate::runtime::dir::DirError),
    /// Locking or binding failed (e.g. the pod is already running).
    #[error(transparent)]
    Listen(#[from] listener::ListenError),
    /// The session log cannot be opened.
    #[error("session {}: {source}", dir.display())]
    Session {
        /// The session directory.
        dir: PathBuf,
        /// What the store said.
        source: session_store::Error,
    },
    /// The manifest's scope is invalid.
    #[error(transparent)]
    Scope(#[from] manifest::ScopeError),
    /// The tools cannot be served together.
    #[error(transparent)]
    Tools(#[from] llm_worker::tool_server::ToolServerError),
    /// Recording the restored state failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The scope registry refused the pod's claim (a scope conflict names the
    /// holder) or could not be used.
    #[error("{0} (start the pod with --scope on a part of the tree no other pod writes)")]
    Registry(pod_registry::RegistryError),
    /// Another I/O step failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What the log says about earlier runs of this session.
#[derive(Debug, Default, PartialEq, Eq)]
struct Restored {
    turns: u64,
    llm_calls: u64,
    /// The last invocation started but never ended (the pod died mid-way).
    cut_turn: Option<u64>,
}

fn scan(log: &SessionWriter) -> Restored {
    let mut r = Restored::default();
    for line in log.current_lines() {
        match serde_json::from_str::<LogEntry>(line) {
            Ok(LogEntry::InvokeStart { turn, .. }) => {
                r.turns = r.turns.max(turn);
                r.cut_turn = Some(turn);
            }
            Ok(LogEntry::TurnEnd { .. }) => r.cut_turn = None,
            Ok(LogEntry::Usage { llm_call, .. }) => r.llm_calls = r.llm_calls.max(llm_call),
            _ => {}
        }
    }
    r
}

/// Answers (in the log) every tool call of `history` that has none, and ends
/// the cut invocation as paused, so `resume` continues from a valid history.
fn repair_cut_invocation(
    state: &mut PodState,
    history: &mut Vec<Item>,
    turn: u64,
) -> Result<(), crate::state::StateError> {
    let answered: HashSet<String> = history
        .iter()
        .filter_map(|i| match i {
            Item::ToolResult { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    let open: Vec<String> = history
        .iter()
        .filter_map(|i| match i {
            Item::ToolCall { id, .. } if !answered.contains(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    for id in open {
        let item = interrupted_result(&id);
        state.commit(EntryBody::ToolResult {
            item: LoggedItem(item.clone()),
        })?;
        history.push(item);
    }
    state.commit(EntryBody::TurnEnd {
        turn,
        result: TurnResult::Paused,
    })?;
    state.sync()?;
    state.alert(
        AlertLevel::Warn,
        AlertSource::Pod,
        format!(
            "turn {turn} was cut short when the pod stopped; its history is repaired and `resume` continues it"
        ),
    )
}

/// The system prompt: the manifest's instruction, else a short default.
fn system_prompt(spec: &PodSpec, scope: &Scope) -> String {
    let instruction = spec.manifest.worker.instruction.trim();
    let base = format!(
        "You are `{}`, a coding agent working in {}. You may write only within your scope: {}. \
         Use the tools to read, search, edit and run commands; keep answers short and say what you changed.",
        spec.name,
        spec.cwd.display(),
        scope
    );
    if instruction.is_empty() {
        base
    } else {
        format!("{base}\n\n{instruction}")
    }
}

/// Runs the pod: returns after `shutdown`, SIGTERM or SIGINT, with the log
/// flushed. `on_ready` is called once the socket accepts connections.
pub async fn serve(spec: PodSpec, on_ready: impl FnOnce(&Ready)) -> Result<(), ServeError> {
    ensure_private_dir(&spec.places.runtime, spec.uid)?;
    let pod_dir = spec.places.pod_runtime_dir(&spec.name);
    ensure_private_dir(&pod_dir, spec.uid)?;
    let pod_lock = PodLock::take(&pod_dir, &spec.name)?;

    let session_dir = spec.places.session_dir(&spec.name);
    let (log, report) =
        SessionWriter::open(&session_dir).map_err(|source| ServeError::Session {
            dir: session_dir.clone(),
            source,
        })?;
    let restored = scan(&log);
    let mut history = log.history().to_vec();

    let scope = Scope::from_config(&spec.manifest.scope)?;
    let m = &spec.manifest;
    let tools = Arc::new(ToolServer::new(
        &spec.tools,
        output_limit(m.worker.tool_output_limit, m.model.context_window),
    )?);
    let mut config = WorkerConfig::new(m.model.model.clone());
    config.system = system_prompt(&spec, &scope);
    config.max_tokens = m.model.max_tokens;
    config.temperature = m.model.temperature;
    config.seed = m.model.seed;
    config.extra = m.model.extra.clone();
    config.max_llm_calls = m.worker.max_llm_calls;
    config.cache_key = Some(spec.name.clone());

    let greeting = Greeting {
        pod_name: spec.name.clone(),
        cwd: spec.cwd.display().to_string(),
        provider: m.model.scheme.to_string(),
        model: m.model.model.clone(),
        scope_summary: format!("{scope}; sandbox: {}", spec.sandbox_level),
        tools: tools.names().to_vec(),
        context_window: m.model.context_window,
        context_tokens: 0,
    };
    let mut pod_state = PodState::new(log, greeting)?;
    for cut in &report.cuts {
        pod_state.alert(
            AlertLevel::Warn,
            AlertSource::Pod,
            format!(
                "the session log {} ended in a torn write ({} bytes); it was cut back to its last complete entry",
                cut.file.display(),
                cut.cut_bytes
            ),
        )?;
    }
    if let Some(turn) = restored.cut_turn {
        repair_cut_invocation(&mut pod_state, &mut history, turn)?;
    }
    let mut worker = Worker::new(Arc::clone(&spec.client), tools, config);
    worker.restore(history, restored.llm_calls);

    let socket = listener::socket_path(&spec.places.runtime, &pod_dir, &spec.name);
    let instance_id = claim_scope(&spec, &socket).await?;
    let started_ms = now_ms();
    pod_state.keep_status_file(
        pod_dir.join("status.json"),
        StatusRecord {
            name: spec.name.clone(),
            instance_id: instance_id.clone(),
            pid: std::process::id(),
            status: PodStatus::Idle,
            provider: m.model.scheme.to_string(),
            model: m.model.model.clone(),
            scope: scope.to_string(),
            parent: spec.parent.clone(),
            socket: socket.display().to_string(),
            started_ms,
            usage: Default::default(),
        },
    );
    let state = Arc::new(Mutex::new(pod_state));
    let mut controller = Controller::new(state.clone(), worker, restored.turns);
    if restored.cut_turn.is_some() {
        controller.set_paused()?;
    }

    let listener = listener::bind(&socket)?;
    let (commands_tx, commands_rx) = mpsc::channel::<Command>(256);
    let accept = tokio::spawn(listener::accept_loop(
        listener,
        state.clone(),
        commands_tx.clone(),
        spec.uid,
    ));
    let signals = tokio::spawn(shutdown_on_signal(commands_tx.clone()));
    drop(commands_tx);
    on_ready(&Ready {
        name: spec.name.clone(),
        socket: socket.clone(),
        pid: std::process::id(),
        instance_id: instance_id.clone(),
    });

    controller.run(commands_rx).await;

    accept.abort();
    signals.abort();
    let _ = std::fs::remove_file(&socket);
    release_scope(&spec, &instance_id, &state).await;
    // Give writers a moment to deliver `shutdown` to the clients.
    for _ in 0..100 {
        if lock(&state).writers() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(pod_lock);
    Ok(())
}

/// Claims the pod's write scope in the per-user registry (top-level pods;
/// children get theirs by delegation). Returns the pod's instance id.
async fn claim_scope(spec: &PodSpec, socket: &std::path::Path) -> Result<String, ServeError> {
    let registry = pod_registry::registry_path_in(&spec.places.runtime);
    let rules: Vec<manifest::ScopeRule> = spec
        .manifest
        .scope
        .allow_rules()
        .filter(|r| r.permission == Permission::Write)
        .cloned()
        .collect();
    let entry = ProcessIdentity::current()
        .and_then(|id| PodEntry::new(spec.name.clone(), socket, id))
        .map_err(ServeError::Registry)?
        .with_write_rules(rules);
    let instance_id = entry.instance_id.clone();
    if spec.parent.is_some() {
        return Ok(instance_id);
    }
    // The registry lock is a blocking flock with backoff: keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let mut guard = LockFileGuard::open(&registry)?;
        guard.claim(entry)
    })
    .await
    .map_err(|e| ServeError::Io {
        what: "claiming the scope".into(),
        source: std::io::Error::other(e),
    })?
    .map_err(ServeError::Registry)?;
    Ok(instance_id)
}

/// Gives the pod's scope back at exit (a crash leaves it to `reclaim_stale`).
async fn release_scope(spec: &PodSpec, instance_id: &str, state: &crate::state::SharedState) {
    if spec.parent.is_some() {
        return;
    }
    let registry = pod_registry::registry_path_in(&spec.places.runtime);
    let id = instance_id.to_string();
    let released = tokio::task::spawn_blocking(move || {
        let mut guard = LockFileGuard::open(&registry)?;
        guard.release(&id)
    })
    .await;
    if let Ok(Err(e)) = released {
        let _ = lock(state).alert(
            AlertLevel::Warn,
            AlertSource::Registry,
            format!("cannot release the scope at exit: {e}; `pod ls` reclaims it later"),
        );
    }
}

/// Turns SIGTERM and SIGINT into a `shutdown` method.
async fn shutdown_on_signal(commands: mpsc::Sender<Command>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let (reply, _) = oneshot::channel();
    let _ = commands
        .send(Command {
            method: Method::Shutdown,
            reply,
        })
        .await;
}
