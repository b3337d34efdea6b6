//! One pod process from start to exit: take the pod's liveness lock, open (or
//! restore) its session, bind its socket, serve until `shutdown` or a signal,
//! and leave a log that a later `pod restore` continues.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use llm_types::Item;
use llm_worker::llm_client::http::LlmClient;
use llm_worker::tool::ToolDefinition;
use llm_worker::tool_server::{ToolServer, interrupted_result, output_limit};
use llm_worker::worker::{Worker, WorkerConfig};
use manifest::{Manifest, Permission, Scope};
use protocol::{AlertLevel, AlertSource, Greeting, PodStatus, TurnResult};
use session_store::{EntryBody, LogEntry, LoggedItem, SessionWriter};
use tokio::sync::mpsc;

use tools::sandbox::CommandGate;

use crate::controller::Controller;
use crate::inbox::Input;
use crate::ipc::listener::{self, PodLock};
use crate::launch::ChildSpec;
use crate::parent::{ParentIdentity, ParentLink, Reporter};
use crate::runtime::dir::{Places, ensure_private_dir};
use crate::runtime::pod_registry::{self, LockFileGuard, PodEntry, ProcessIdentity, RegistryError};
use crate::spawn::comm_tools::{
    list_pods_tool, read_pod_output_tool, send_to_pod_tool, stop_pod_tool,
};
use crate::spawn::registry::{ScopeHome, SpawnedPodRegistry};
use crate::spawn::tool::{ChildExits, SpawnLimits, SpawnSetup, spawn_pod_tool};
use crate::state::{PodState, SharedState, StatusRecord, lock, now_ms};

/// Everything a pod process needs to run.
pub(crate) struct PodSpec {
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
    /// The built-in tools (file tools, Bash); the pod adds the spawn tools.
    pub tools: Vec<ToolDefinition>,
    /// The live scope the tools check (delegation changes it).
    pub(crate) live_scope: Arc<RwLock<Scope>>,
    /// Held by running commands; delegation waits for it.
    pub gate: CommandGate,
    /// Attaches the files a user's message names.
    pub grounder: tools::grounding::Grounder,
    /// What the user's hooks run with (Bash's sandbox, policy and gate).
    pub(crate) hook_env: hooks::HookEnv,
    /// For a child pod: its parent and reserved registry entry.
    pub child: Option<ChildSpec>,
    /// Lock and listening socket handed over by the parent (child pods).
    pub inherited: Option<Inherited>,
    /// Continue the invocation already in the log (a child's first task).
    pub(crate) continue_pending: bool,
    /// Limits on spawning.
    pub limits: SpawnLimits,
    /// How commands are confined (shown in the greeting's scope summary).
    pub(crate) sandbox_level: String,
    /// Our uid (only it may connect).
    pub uid: u32,
    /// What goes to `pod.log` (from `POD_LOG`).
    pub(crate) log_level: tracing::level_filters::LevelFilter,
    /// The launch options to record once the lock is held (a fresh start).
    pub(crate) launch_record: Option<Vec<u8>>,
}

/// Descriptors a child pod inherits from its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inherited {
    /// Its liveness lock, already held.
    pub(crate) lock_fd: std::os::fd::RawFd,
    /// Its listening socket, already bound.
    pub(crate) listen_fd: std::os::fd::RawFd,
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
pub(crate) enum ServeError {
    /// The runtime dir is unusable.
    #[error(transparent)]
    Dir(#[from] crate::runtime::dir::DirError),
    /// Locking or binding failed (e.g. the pod is already running).
    #[error(transparent)]
    Listen(#[from] listener::ListenError),
    /// The manifest's hooks or permission rules cannot be set up.
    #[error("hooks: {0}")]
    Checks(String),
    /// The session log cannot be opened.
    #[error("session {}: {source}", dir.display())]
    Session {
        /// The session directory.
        dir: PathBuf,
        /// What the store said (boxed: it is large, and the error is rare).
        source: Box<session_store::Error>,
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
    #[error("{}", .0.with_hint())]
    Registry(pod_registry::RegistryError),
    /// The pod's log cannot be written.
    #[error(transparent)]
    Log(#[from] crate::logging::LogError),
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
    /// Token usage of every LLM call in the log, so a restored pod's totals
    /// continue rather than start from 0.
    usage: llm_types::Usage,
    /// The context size of the last LLM call.
    context_tokens: u64,
}

fn scan(entries: &[LogEntry]) -> Restored {
    let mut r = Restored::default();
    for entry in entries {
        match *entry {
            LogEntry::InvokeStart { turn, .. } => {
                r.turns = r.turns.max(turn);
                r.cut_turn = Some(turn);
            }
            LogEntry::TurnEnd { .. } => r.cut_turn = None,
            LogEntry::Usage {
                llm_call, usage, ..
            } => {
                r.llm_calls = r.llm_calls.max(llm_call);
                r.usage += usage;
                r.context_tokens = usage.total_input() + usage.output_tokens;
            }
            _ => {}
        }
    }
    r
}

/// Answers (in the log) every tool call of `history` that has none, and ends
/// the cut invocation as paused, so `resume` continues from a valid history.
/// Calls in `kept` (waiting for a person's approval) stay open instead, and
/// the turn goes on (`true`): it runs them, which asks again.
fn repair_cut_invocation(
    state: &mut PodState,
    history: &mut Vec<Item>,
    turn: u64,
    kept: &[String],
) -> Result<bool, crate::state::StateError> {
    let open = llm_worker::worker::open_calls(history);
    let goes_on = open.iter().any(|id| kept.contains(id));
    for id in open.iter().filter(|id| !kept.contains(id)) {
        let item = interrupted_result(id);
        state.commit(EntryBody::ToolResult {
            item: LoggedItem(item.clone()),
        })?;
        history.push(item);
    }
    let message = if goes_on {
        format!(
            "turn {turn} was cut short while a call waited for approval; it goes on and asks again"
        )
    } else {
        state.commit(EntryBody::TurnEnd {
            turn,
            result: TurnResult::Paused,
        })?;
        format!(
            "turn {turn} was cut short when the pod stopped; its history is repaired and `resume` continues it"
        )
    };
    state.sync()?;
    state.alert(AlertLevel::Warn, AlertSource::Pod, message)?;
    Ok(goes_on)
}

/// The system prompt: a short default, the manifest's instruction, then the
/// project's instructions files.
fn system_prompt(spec: &PodSpec, scope: &Scope) -> String {
    let instruction = spec.manifest.worker.instruction.trim();
    // The built-in read deny of the state dir says nothing about where to write, and
    // small models answer differently to every extra path in their prompt.
    let state = manifest::canonicalize_lenient(&spec.places.state)
        .unwrap_or_else(|_| spec.places.state.clone());
    let scope_text = scope.summary_without(&[state.as_path()]);
    let base = format!(
        "You are `{}`, a coding agent working in {}. You may write only within your scope: {}. \
         Use the tools to read, search, edit and run commands; keep answers short and say what you changed.",
        spec.name,
        spec.cwd.display(),
        scope_text
    );
    let mut prompt = base;
    if !instruction.is_empty() {
        prompt = format!("{prompt}\n\n{instruction}");
    }
    // AGENTS.md files of the project, read at each start (a child's from its
    // own directory), last: the prompt's fixed part stays first.
    let files = pod_runtime::instructions::load(&spec.cwd);
    if !files.is_empty() {
        tracing::info!(files = %pod_runtime::instructions::describe_files(&files), "project instructions");
        prompt = format!(
            "{prompt}\n\n{}",
            pod_runtime::instructions::prompt_section(&files)
        );
    }
    prompt
}

/// The previous instance id of a top-level pod, from its `status.json`.
fn previous_instance(pod_dir: &std::path::Path, name: &str) -> Option<String> {
    StatusRecord::read(pod_dir).and_then(|r| (r.name == name).then_some(r.instance_id))
}

/// Runs a registry operation off the async workers (the lock is a blocking
/// flock with backoff).
async fn blocking_registry(
    f: impl FnOnce() -> Result<String, RegistryError> + Send + 'static,
) -> Result<String, ServeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServeError::Io {
            what: "registering the scope".into(),
            source: std::io::Error::other(e),
        })?
        .map_err(ServeError::Registry)
}

/// Takes this pod's place in the per-user registry: a child adopts the
/// entry its parent reserved; a top-level pod takes back its previous entry
/// (kept, with its children, while it was down) or claims its scope anew.
async fn register(
    spec: &PodSpec,
    pod_dir: &std::path::Path,
    socket: &std::path::Path,
) -> Result<String, ServeError> {
    let registry = pod_registry::registry_path_in(&spec.places.runtime);
    let socket = socket.to_path_buf();
    if let Some(child) = &spec.child {
        let instance = child.instance_id.clone();
        return blocking_registry(move || {
            let identity = ProcessIdentity::current()?;
            LockFileGuard::open(&registry)?.adopt(&instance, identity, &socket)?;
            Ok(instance)
        })
        .await;
    }
    let rules: Vec<manifest::ScopeRule> = spec
        .manifest
        .scope
        .allow_rules()
        .filter(|r| r.permission == Permission::Write)
        .cloned()
        .collect();
    let name = spec.name.clone();
    let previous = previous_instance(pod_dir, &name);
    blocking_registry(move || {
        let identity = ProcessIdentity::current()?;
        let mut guard = LockFileGuard::open(&registry)?;
        if let Some(prev) = previous
            && guard
                .load()?
                .get(&prev)
                .is_some_and(|e| e.full_name == name)
        {
            guard.adopt(&prev, identity, &socket)?;
            return Ok(prev);
        }
        let entry = PodEntry::new(name, &socket, identity)?.with_write_rules(rules);
        let id = entry.instance_id.clone();
        guard.claim(entry)?;
        Ok(id)
    })
    .await
}

/// Below this context window (tokens) the pod assumes a small model: tools
/// are offered in their compact form (`llm_client::compact`; the full six-tool
/// set alone cost a 1.5B model ~2k tokens, read again on every cold request,
/// and it filled in optional parameters it did not need), a repeated
/// successful call is not run again, and results carry
/// [`SMALL_MODEL_RESULT_NOTE`].
pub(crate) const COMPACT_TOOLS_BELOW: u64 = 32_000;

/// Appended to successful tool results for small models. Without it the 1.5B
/// local model, having found the answer to a question with Grep, went on to
/// rewrite the file it found; with it, it answered (docs/benchmarks.md).
pub(crate) const SMALL_MODEL_RESULT_NOTE: &str =
    "Reply to the user in plain text if this is enough to answer them.";

/// Appended instead after a successful Write or Edit for small models: with
/// the note above, the 1.5B model renamed a function in one of two files and
/// replied (docs/benchmarks.md, the corpus section).
pub(crate) const SMALL_MODEL_CHANGE_NOTE: &str = "If the request needs more changes (other places, \
other files), make them now; when everything is done, reply to the user in one short sentence.";

/// `SpawnPod` and the four tools to talk to children.
fn spawn_tools(
    spec: &PodSpec,
    (hooks, mcp): (&Arc<hooks::Hooks>, Arc<mcp::McpServers>),
    instance_id: &str,
    socket: &std::path::Path,
    children: &Arc<SpawnedPodRegistry>,
    exits: &ChildExits,
) -> Result<Vec<ToolDefinition>, ServeError> {
    Ok(vec![
        spawn_pod_tool(SpawnSetup {
            places: spec.places.clone(),
            parent_name: spec.name.clone(),
            parent_instance: instance_id.to_string(),
            parent_socket: socket.to_path_buf(),
            cwd: spec.cwd.clone(),
            scope: Arc::clone(&spec.live_scope),
            gate: spec.gate.clone(),
            manifest: spec.manifest.clone(),
            children: Arc::clone(children),
            exe: std::env::current_exe().map_err(|source| ServeError::Io {
                what: "finding the pod binary".into(),
                source,
            })?,
            limits: spec.limits,
            uid: spec.uid,
            exits: exits.clone(),
            hooks: Arc::clone(hooks),
            mcp,
        }),
        send_to_pod_tool(Arc::clone(children)),
        read_pod_output_tool(Arc::clone(children)),
        stop_pod_tool(Arc::clone(children)),
        list_pods_tool(Arc::clone(children)),
    ])
}

/// A pod whose session is open and whose lock is held, before anything runs.
struct Opened {
    pod_dir: PathBuf,
    pod_lock: PodLock,
    log: SessionWriter,
    report: session_store::OpenReport,
    restored: Restored,
    history: Vec<Item>,
    entries: Vec<LogEntry>,
}

/// Takes the pod's liveness lock and opens its session, reading what earlier
/// runs left (a pure scan: nothing is written yet).
fn open_session(spec: &PodSpec) -> Result<Opened, ServeError> {
    ensure_private_dir(&spec.places.runtime, spec.uid)?;
    let pod_dir = spec.places.pod_runtime_dir(&spec.name);
    ensure_private_dir(&pod_dir, spec.uid)?;
    crate::logging::init(&pod_dir, spec.log_level)?;
    let pod_lock = match spec.inherited {
        // The parent passed the lock at this descriptor for us alone.
        Some(fds) => PodLock::inherited(fds.lock_fd, &pod_dir)?,
        None => PodLock::take(&pod_dir, &spec.name)?,
    };
    // Conversations are private whatever the umask (the session store makes
    // its own dirs and files so).
    crate::runtime::dir::make_private_dir(&spec.places.state, spec.uid)?;
    let session_dir = spec.places.session_dir(&spec.name);
    let (log, report) =
        SessionWriter::open(&session_dir).map_err(|source| ServeError::Session {
            dir: session_dir.clone(),
            source: Box::new(source),
        })?;
    if let Some(bytes) = &spec.launch_record {
        sys::replace_file(&crate::launch::launch_file(&spec.places, &spec.name), bytes).map_err(
            |e| ServeError::Io {
                what: format!("cannot record the launch options in {}", e.path.display()),
                source: e.source,
            },
        )?;
    }
    // Parsed once, for both the scan and the children's replay.
    let entries: Vec<LogEntry> = log
        .current_lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let restored = scan(&entries);
    let history = log.history().to_vec();
    Ok(Opened {
        pod_dir,
        pod_lock,
        log,
        report,
        restored,
        history,
        entries,
    })
}

/// A pod put together, ready to serve.
struct Assembled {
    pod_lock: PodLock,
    socket: PathBuf,
    instance_id: String,
    state: SharedState,
    controller: Controller,
}

/// Puts the pod together: its registry entry, state, children (the live ones
/// keep their subtrees), tools, worker and controller; repairs a cut
/// invocation. `inbox` is the controller's channel (the spawner reports a
/// child's failure on it).
async fn assemble(
    spec: &PodSpec,
    opened: Opened,
    inbox: &mpsc::Sender<Input>,
) -> Result<Assembled, ServeError> {
    let Opened {
        pod_dir,
        pod_lock,
        log,
        report,
        restored,
        mut history,
        entries,
    } = opened;
    let socket = listener::socket_path(&spec.places.runtime, &pod_dir, &spec.name);
    let instance_id = register(spec, &pod_dir, &socket).await?;

    // The greeting is complete once the tools exist; nobody connects before.
    let mut pod_state = PodState::new(
        log,
        Greeting {
            pod_name: spec.name.clone(),
            ..Greeting::default()
        },
    )?;
    pod_state.add_usage(restored.usage, restored.context_tokens);
    let state: SharedState = Arc::new(Mutex::new(pod_state));

    // Children: replayed from the log (journaled in it from now on); the live
    // ones keep their subtrees.
    let children = Arc::new(SpawnedPodRegistry::journaled(
        Arc::new(state.clone()),
        ScopeHome {
            scope: Arc::clone(&spec.live_scope),
            registry_path: pod_registry::registry_path_in(&spec.places.runtime),
            runtime: spec.places.runtime.clone(),
        },
    ));
    let problems = children.replay(&entries);
    let gone = children.redelegate_live().await;

    let scope = spec
        .live_scope
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let m = &spec.manifest;
    let mut hook_env = spec.hook_env.clone();
    hook_env.session = spec.places.session_dir(&spec.name).display().to_string();
    let hooks = crate::checks::build(m, hook_env, &state).map_err(ServeError::Checks)?;
    let mut tool_defs = spec.tools.clone();
    let mcp = mcp_tools(spec, &state).await;
    tool_defs.extend(spawn_tools(
        spec,
        (&hooks, Arc::clone(&mcp)),
        &instance_id,
        &socket,
        &children,
        &ChildExits::new(inbox),
    )?);
    let mut tools = ToolServer::new(
        &tool_defs,
        output_limit(m.worker.tool_output_limit, m.model.context_window),
    )?;
    // Asked at each step: a server's `tools/list_changed` reaches the next request.
    tools.add_source(mcp);
    let compact = m.model.context_window < COMPACT_TOOLS_BELOW;
    tools.set_compact(compact);
    let rules = hooks::Rules::new(&m.permissions).map_err(ServeError::Checks)?;
    let timeout = std::time::Duration::from_secs(m.approvals.timeout_s);
    let registry = pod_registry::registry_path_in(&spec.places.runtime);
    let approvals =
        crate::approvals::Approvals::new(&spec.name, timeout, &state, &children, registry);
    // A `remember` holds for the session: after a compaction its answer is
    // in an earlier segment.
    let session = spec.places.session_dir(&spec.name);
    match session.join(session_store::segment_file_name(2)).exists() {
        true => approvals.replay(
            session_store::read_session(&session)
                .map_err(|e| ServeError::Session {
                    dir: session.clone(),
                    source: Box::new(e),
                })?
                .entries(),
        ),
        false => approvals.replay(&entries),
    }
    let approver: Arc<dyn hooks::Approver> = approvals.broker.clone();
    tools.intercept(Arc::new(hooks::HookInterceptor::new(
        Arc::clone(&hooks),
        rules,
        Some(approver),
    )));
    lock(&state).set_hooks(Arc::clone(&hooks));
    lock(&state).set_approvals(Arc::clone(&approvals));
    let tools = Arc::new(tools);
    let mut config = WorkerConfig::new(m.model.model.clone());
    config.system = system_prompt(spec, &scope);
    config.max_tokens = m.model.max_tokens;
    config.temperature = m.model.temperature;
    config.seed = m.model.seed;
    config.extra = m.model.extra.clone();
    config.max_llm_calls = m.worker.max_llm_calls;
    config.skip_repeated_calls = compact;
    if compact {
        config.result_note = Some(SMALL_MODEL_RESULT_NOTE.into());
        config.change_note = Some(SMALL_MODEL_CHANGE_NOTE.into());
        config.small_model_nudges = true;
    }
    config.cache_key = Some(spec.name.clone());
    // The request must also leave room for the response.
    let room = m
        .model
        .context_window
        .saturating_sub(u64::from(m.model.max_tokens))
        .max(1);
    config.context = Some(llm_worker::prune::ContextPolicy {
        auto: m.context.auto,
        window: room,
        prune_at: m.context.prune_at,
        keep_calls: m.context.keep_calls as usize,
        compact_at: m.context.compact_at,
        summary_tokens: m.context.summary_tokens,
    });

    // The parent hears of requests from now on (those ending just below too).
    let reporter = parent_link(spec).map(|link| {
        let warn_state = state.clone();
        Reporter::spawn(link, move |message| {
            let _ = lock(&warn_state).alert(AlertLevel::Warn, AlertSource::Pod, message);
        })
    });
    if let Some(reporter) = &reporter {
        approvals.set_parent(reporter.clone());
    }
    // Requests whose call is no longer open end; the others' calls stay open.
    approvals
        .broker
        .drop_unless_open(&llm_worker::worker::open_calls(&history));
    let kept = approvals.broker.restored_calls();
    let pending_turn = {
        let mut st = lock(&state);
        let context_tokens = st.greeting().context_tokens;
        st.set_greeting(Greeting {
            pod_name: spec.name.clone(),
            cwd: spec.cwd.display().to_string(),
            provider: m.model.scheme.to_string(),
            model: m.model.model.clone(),
            scope_summary: format!("{scope}; sandbox: {}", spec.sandbox_level),
            tools: tools.names(),
            context_window: m.model.context_window,
            context_tokens,
        });
        for cut in &report.cuts {
            st.alert(
                AlertLevel::Warn,
                AlertSource::Pod,
                format!(
                    "the session log {} ended in a torn write ({} bytes); it was cut back to its last complete entry",
                    cut.file.display(),
                    cut.cut_bytes
                ),
            )?;
        }
        for problem in problems {
            st.alert(AlertLevel::Warn, AlertSource::Pod, problem)?;
        }
        // A child's first task, written by its parent, runs now; any other cut
        // invocation is repaired and waits for `resume`.
        match restored.cut_turn {
            Some(turn) if spec.continue_pending && restored.llm_calls == 0 => Some(turn),
            Some(turn) => {
                repair_cut_invocation(&mut st, &mut history, turn, &kept)?.then_some(turn)
            }
            None => None,
        }
    };
    for name in gone {
        // Children that died while this pod was down: their subtrees come back.
        let text = match children
            .forget(&name, "gone when its parent restarted")
            .await
        {
            Ok(_) => format!(
                "[pod event] child pod `{name}` was gone when this pod restarted; its scope is back"
            ),
            Err(e) => {
                format!("[pod event] child pod `{name}` was gone when this pod restarted: {e}")
            }
        };
        let item = Item::text(llm_types::Role::User, text);
        lock(&state).queue("pod_event", item)?;
    }

    let mut worker = Worker::new(Arc::clone(&spec.client), tools, config);
    worker.restore(history, restored.llm_calls);
    worker.before_compaction(Arc::new(crate::checks::PreCompact(Arc::clone(&hooks))));
    lock(&state).keep_status_file(
        pod_dir.join("status.json"),
        StatusRecord {
            name: spec.name.clone(),
            instance_id: instance_id.clone(),
            pid: std::process::id(),
            status: PodStatus::Idle,
            provider: m.model.scheme.to_string(),
            model: m.model.model.clone(),
            scope: scope.to_string(),
            parent: spec.child.as_ref().map(|c| c.parent_instance.clone()),
            socket: socket.display().to_string(),
            started_ms: now_ms(),
            usage: Default::default(),
            write_rules: m
                .scope
                .allow_rules()
                .filter(|r| r.permission == Permission::Write)
                .cloned()
                .collect(),
            last_result: None,
            context_tokens: 0,
            context_window: m.model.context_window,
            prices: pod_runtime::status::Prices::of(&m.model),
        },
    );
    let mut controller =
        Controller::new(state.clone(), worker, restored.turns, spec.grounder.clone())
            .with_children(Arc::clone(&children));
    if let Some(reporter) = reporter {
        controller = controller.with_parent(reporter);
    }
    approvals.adopt_children();
    let start = if spec.launch_record.is_some() {
        "fresh"
    } else if spec.continue_pending {
        "child"
    } else {
        "restore"
    };
    let mut fields = serde_json::Map::new();
    fields.insert("start".into(), start.into());
    crate::checks::tell(&hooks, manifest::HookEvent::SessionStart, fields).await;
    match pending_turn {
        Some(turn) => controller.continue_pending(turn)?,
        None if restored.cut_turn.is_some() => controller.set_paused()?,
        None => {}
    }
    Ok(Assembled {
        pod_lock,
        socket,
        instance_id,
        state,
        controller,
    })
}

/// The pod's `[[mcp]]` servers, started now in its sandbox (a server that
/// cannot start is an alert and offers no tools); the worker asks them for
/// their tools at each step.
async fn mcp_tools(spec: &PodSpec, state: &SharedState) -> Arc<mcp::McpServers> {
    let servers: Vec<_> = spec.manifest.mcp.iter().map(|s| s.server.clone()).collect();
    if servers.is_empty() {
        return Arc::default();
    }
    let policy = Arc::clone(&spec.hook_env.policy);
    let alert_state = state.clone();
    let env = mcp::ServerEnv {
        confinement: match spec.hook_env.mode {
            manifest::SandboxMode::Off => mcp::Confinement::Unconfined,
            _ => mcp::Confinement::Sandbox(spec.hook_env.helper.clone()),
        },
        policy: Arc::new(move || policy.current_policy()),
        alert: Arc::new(move |message| {
            let _ = lock(&alert_state).alert(AlertLevel::Warn, AlertSource::Tool, message);
        }),
        lookup: Arc::new(|key| std::env::var(key).ok()),
        cache: Some(spec.places.state.join("mcp-tools")),
        board: Arc::new(mcp::Board::new(Some(
            (spec.places.pod_runtime_dir(&spec.name)).join(mcp::status::STATUS_FILE),
        ))),
    };
    Arc::new(mcp::start_all(&servers, &env).await)
}

/// A child pod's link to its parent.
fn parent_link(spec: &PodSpec) -> Option<ParentLink> {
    let child = spec.child.as_ref()?;
    let short = spec.name.rsplit('.').next().unwrap_or(&spec.name);
    Some(ParentLink {
        short_name: short.to_string(),
        socket: child.parent_socket.clone(),
        dir: spec.places.pod_runtime_dir(&child.parent_name),
        identity: Arc::new(ParentIdentity {
            pid: child.parent_pid,
            instance: child.parent_instance.clone(),
            registry: pod_registry::registry_path_in(&spec.places.runtime),
        }),
    })
}

/// Runs the pod: returns after `shutdown`, SIGTERM or SIGINT, with the log
/// flushed. `on_ready` is called once the socket accepts connections.
pub(crate) async fn serve(spec: PodSpec, on_ready: impl FnOnce(&Ready)) -> Result<(), ServeError> {
    let opened = open_session(&spec)?;
    // The controller's inbox exists before anything that reports on it.
    let (inbox, inbox_rx) = mpsc::channel::<Input>(256);
    let pod = assemble(&spec, opened, &inbox).await?;
    let listener = match spec.inherited {
        // The parent bound this socket for us alone.
        Some(fds) => listener::inherited_listener(fds.listen_fd)?,
        None => listener::bind(&pod.socket)?,
    };
    let parent = parent_link(&spec).map(|link| link.identity);
    let accept = tokio::spawn(listener::accept_loop(
        listener,
        pod.state.clone(),
        inbox.clone(),
        spec.uid,
        parent,
    ));
    shutdown_with_owner(inbox.clone());
    let signals = tokio::spawn(shutdown_on_signal(inbox));
    tracing::info!(
        name = %spec.name,
        instance = %pod.instance_id,
        pid = std::process::id(),
        socket = %pod.socket.display(),
        "pod serving"
    );
    on_ready(&Ready {
        name: spec.name.clone(),
        socket: pod.socket.clone(),
        pid: std::process::id(),
        instance_id: pod.instance_id.clone(),
    });

    pod.controller.run(inbox_rx).await;
    tracing::info!(name = %spec.name, "pod stopped");

    accept.abort();
    signals.abort();
    let _ = std::fs::remove_file(&pod.socket);
    release_scope(&spec, &pod.instance_id, &pod.state).await;
    lock(&pod.state).finish_status_file();
    // Give writers a moment to deliver `shutdown` to the clients.
    for _ in 0..100 {
        if lock(&pod.state).writers() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(pod.pod_lock);
    Ok(())
}

/// Gives the pod's scope back at exit (a crash leaves it to `reclaim_stale`).
async fn release_scope(spec: &PodSpec, instance_id: &str, state: &crate::state::SharedState) {
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

/// Stops a pod a `pod mcp serve` session owns when that server ends, however
/// it ends (`kill -9` too): a thread waits on a pidfd of it.
fn shutdown_with_owner(inbox: mpsc::Sender<Input>) {
    let var = pod_runtime::OWNER_PID_VAR;
    let Some(pid) = std::env::var(var).ok().and_then(|p| p.parse::<u32>().ok()) else {
        return;
    };
    let fd = match sys::pidfd(pid) {
        Ok(fd) => Some(fd),
        // It ended before we looked.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => None,
        Err(e) => return tracing::warn!(owner = pid, error = %e, "cannot watch the owner"),
    };
    let watch = move || {
        if let Some(fd) = fd
            && sys::wait_pidfd(&fd).is_err()
        {
            return;
        }
        tracing::info!(owner = pid, "the server that owns this pod ended: stopping");
        let _ = inbox.blocking_send(Input::Shutdown);
    };
    let thread = std::thread::Builder::new()
        .name("owner".into())
        .stack_size(64 << 10);
    if let Err(e) = thread.spawn(watch) {
        tracing::warn!(owner = pid, error = %e, "cannot watch the owner");
    }
}

/// Turns SIGTERM and SIGINT into the controller's [`Input::Shutdown`].
async fn shutdown_on_signal(inbox: mpsc::Sender<Input>) {
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
    let _ = inbox.send(Input::Shutdown).await;
}
