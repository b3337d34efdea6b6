//! `SpawnPod`: hand part of this pod's work, and exactly that part of its
//! write scope, to a new pod in its own process.
//!
//! The order makes the move safe and the task impossible to lose:
//! 1. check the request (name, limits, scope inside ours) and create missing dirs;
//! 2. wait for this pod's running commands (a Landlock domain cannot be
//!    revoked, so a command started before the move could still write there);
//! 3. reserve the grant in the per-user registry and take it out of our live
//!    scope (our tools refuse it, our next commands see it read-only);
//! 4. prepare the child: its runtime dir, its liveness lock and its listening
//!    socket (taken and bound here), its launch options, and its session log
//!    with the task already committed as its first invocation;
//! 5. start it with `posix_spawn`, handing it the lock and the socket, and
//!    close our copies at once (a lock or socket shared with us would make a
//!    dead child look alive). Connections queue on the socket until the child
//!    accepts, so there is no readiness polling.
//!
//! Any failure rolls the reservation back and kills a half-started child.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use llm_types::{Item, Role};
use llm_worker::tool::{Tool, ToolDefinition, ToolError, ToolMeta, ToolOutput};
use manifest::{Manifest, Permission, PodName, Refusal, Scope, ScopeError, ScopeRule};
use protocol::{InvokeKind, Segment};
use serde::Deserialize;
use session_store::{EntryBody, LoggedItem, SessionWriter};
use tokio::sync::{mpsc, oneshot};
use tools::sandbox::CommandGate;

use crate::inbox::{FailureTaken, Input};
use crate::ipc::listener::{self, PodLock};
use crate::launch::{ChildSpec, StoredLaunch, launch_file};
use crate::runtime::dir::{Places, SpawnedPodRecord, ensure_private_dir};
use crate::runtime::pod_registry::{
    self, LockFileGuard, PodEntry, PodState, ProcessIdentity, RegistryError,
};
use crate::spawn::process::{exit_report, reap_later, spawn_child};
use crate::spawn::registry::SpawnedPodRegistry;
use crate::state::now_ms;

/// How far pods may spawn pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpawnLimits {
    /// Deepest full name (a top-level pod is depth 1).
    pub depth: usize,
    /// Live children per pod.
    pub children: usize,
    /// Live spawned pods per user (top-level pods not counted).
    pub(crate) per_user: usize,
}

impl Default for SpawnLimits {
    fn default() -> Self {
        SpawnLimits {
            depth: 3,
            children: 8,
            per_user: 64,
        }
    }
}

/// Everything `SpawnPod` needs from the pod that calls it.
#[derive(Clone)]
pub(crate) struct SpawnSetup {
    /// Where pods keeps its files.
    pub places: Places,
    /// This pod's full name.
    pub parent_name: String,
    /// This pod's instance id.
    pub parent_instance: String,
    /// This pod's socket (children report to it).
    pub(crate) parent_socket: PathBuf,
    /// This pod's working directory (relative scope targets start there).
    pub cwd: PathBuf,
    /// This pod's live scope.
    pub scope: Arc<RwLock<Scope>>,
    /// Held by this pod's running commands.
    pub gate: CommandGate,
    /// This pod's resolved manifest (children inherit its model settings).
    pub manifest: Manifest,
    /// This pod's children.
    pub children: Arc<SpawnedPodRegistry>,
    /// The `pod` binary.
    pub exe: PathBuf,
    /// Limits.
    pub limits: SpawnLimits,
    /// Our uid.
    pub uid: u32,
    /// Where a child's unexpected exit is reported.
    pub exits: ChildExits,
    /// This pod's hooks (`user_prompt` checks a child's task).
    pub hooks: Arc<hooks::Hooks>,
    /// This pod's MCP servers (restarted when scope moves to a child).
    pub mcp: Arc<mcp::McpServers>,
}

/// Tells this pod when a child's process ends with an error before it reported
/// (it could not start, or it crashed), so the agent is not left waiting for a
/// report that will never come: an [`Input::ChildFailed`] on the controller's
/// inbox, which exists before the tools are built.
#[derive(Debug, Clone)]
pub(crate) struct ChildExits(mpsc::WeakSender<Input>);

impl ChildExits {
    /// Reports to `inbox`, weakly: it must not keep the controller up.
    pub(crate) fn new(inbox: &mpsc::Sender<Input>) -> Self {
        ChildExits(inbox.downgrade())
    }

    /// Reports child `pod_name` (process `pid`) as failed with `message`. Called
    /// from the reaper thread; retries (for 30 s) while the child is not recorded yet
    /// (a child can fail before `SpawnPod` has finished recording it) and
    /// `still_ours` holds.
    fn report(&self, pid: u32, pod_name: &str, message: &str, still_ours: impl Fn() -> bool) {
        // Recording the child can wait on the registry lock (5 s at most): retry past it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline && still_ours() {
            let Some(inbox) = self.0.upgrade() else {
                return;
            };
            let (reply, answer) = oneshot::channel();
            let input = Input::ChildFailed {
                pod_name: pod_name.to_string(),
                pid,
                message: message.to_string(),
                reply,
            };
            if inbox.blocking_send(input).is_err() {
                return;
            }
            drop(inbox);
            match answer.blocking_recv() {
                Ok(FailureTaken::NotRecordedYet) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                _ => return,
            }
        }
    }
}

/// One rule of a `SpawnPod` request.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub(crate) struct RuleInput {
    /// The directory (absolute, or relative to your working directory).
    pub target: PathBuf,
    /// `write` (moved to the child) or `read`.
    pub permission: Permission,
    /// The whole subtree (required for `write`).
    #[serde(default = "yes")]
    #[schemars(extend("x-pods-advanced" = true))]
    pub recursive: bool,
}

fn yes() -> bool {
    true
}

/// The `SpawnPod` input.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub(crate) struct SpawnPodInput {
    /// The child's name: lowercase letters, digits, `-` and `_`, at most 32.
    pub name: String,
    /// What the child should do (its first user message).
    pub task: String,
    /// The directories to give it: write rules move from you to it.
    pub scope: Vec<RuleInput>,
    /// A model for the child (default: yours).
    #[serde(default)]
    #[schemars(extend("x-pods-advanced" = true))]
    pub model: Option<String>,
    /// Extra instruction for the child's system prompt.
    #[serde(default)]
    #[schemars(extend("x-pods-advanced" = true))]
    pub instruction: Option<String>,
    /// Permission rules for the child besides yours (it keeps all of yours:
    /// these can only make it stricter), e.g. `{"tool": "Bash", "command":
    /// "git push*", "decision": "deny"}`; a relative `path` is from your
    /// working directory.
    #[serde(default)]
    #[schemars(extend("x-pods-advanced" = true))]
    pub permissions: Vec<manifest::hooks::PermissionLayer>,
    /// Which of your MCP servers the child gets, by name (default: all of
    /// them); each runs in the child's own sandbox with the child's scope.
    #[serde(default)]
    #[schemars(extend("x-pods-advanced" = true))]
    pub mcp: Option<Vec<String>>,
}

const DESCRIPTION: &str = "Start a child pod (an agent in its own process) on a sub-task, \
giving it a directory to write in. The `write` paths move to it (created if missing) and \
you cannot write them until you stop it. Its working directory is its first write path. It \
starts on `task` at once; it tells you when it finishes. Use ReadPodOutput for its answer, \
SendToPod for more work, StopPod to stop it and get the paths back.";

fn failed(message: impl Into<String>) -> ToolError {
    ToolError::ExecutionFailed(message.into())
}

/// The `[model]`/`[worker]`/`[sandbox]` overlay that gives a child the
/// parent's settings (and the request's overrides). Fails only when a
/// `[model.extra]` value has no TOML form (a JSON null).
fn child_overlay(m: &Manifest, input: &SpawnPodInput, cwd: &Path) -> Result<String, ToolError> {
    let mut model = toml::Table::new();
    model.insert("scheme".into(), m.model.scheme.as_str().into());
    model.insert(
        "model".into(),
        input
            .model
            .clone()
            .unwrap_or_else(|| m.model.model.clone())
            .into(),
    );
    model.insert("base_url".into(), m.model.base_url.clone().into());
    model.insert("api_key_env".into(), m.model.api_key_env.clone().into());
    model.insert(
        "context_window".into(),
        toml::Value::Integer(i64::try_from(m.model.context_window).unwrap_or(i64::MAX)),
    );
    model.insert(
        "max_tokens".into(),
        toml::Value::Integer(i64::from(m.model.max_tokens)),
    );
    model.insert(
        "timeout_s".into(),
        toml::Value::Integer(i64::try_from(m.model.timeout_s).unwrap_or(i64::MAX)),
    );
    if let Some(t) = m.model.temperature {
        model.insert("temperature".into(), toml::Value::Float(t));
    }
    if let Some(seed) = m.model.seed {
        model.insert("seed".into(), toml::Value::Integer(seed));
    }
    // Provider options such as the local model's fence ban: without them a
    // child of the same model behaves differently from its parent.
    if !m.model.extra.is_empty() {
        let mut extra = toml::Table::new();
        for (key, value) in &m.model.extra {
            let value = toml::Value::try_from(value).map_err(|e| {
                failed(format!(
                    "cannot pass [model.extra] `{key}` on to the child: {e}"
                ))
            })?;
            extra.insert(key.clone(), value);
        }
        model.insert("extra".into(), toml::Value::Table(extra));
    }
    let mut worker = toml::Table::new();
    worker.insert(
        "max_llm_calls".into(),
        toml::Value::Integer(i64::from(m.worker.max_llm_calls)),
    );
    worker.insert(
        "tool_output_limit".into(),
        toml::Value::Integer(i64::try_from(m.worker.tool_output_limit).unwrap_or(i64::MAX)),
    );
    if let Some(instruction) = &input.instruction {
        worker.insert("instruction".into(), instruction.clone().into());
    }
    let mut sandbox = toml::Table::new();
    let mode = serde_json::to_value(m.sandbox.mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "auto".into());
    sandbox.insert("mode".into(), mode.into());
    sandbox.insert("network".into(), m.sandbox.network.into());
    // The child leaves out the project manifest, so what it says goes in here.
    if !m.sandbox.env_remove.is_empty() {
        let names = m.sandbox.env_remove.iter().cloned().map(toml::Value::from);
        sandbox.insert("env_remove".into(), toml::Value::Array(names.collect()));
    }
    let mut top = toml::Table::new();
    top.insert("model".into(), toml::Value::Table(model));
    top.insert("worker".into(), toml::Value::Table(worker));
    top.insert("sandbox".into(), toml::Value::Table(sandbox));
    let mut approvals = toml::Table::new();
    let timeout = i64::try_from(m.approvals.timeout_s).unwrap_or(i64::MAX);
    approvals.insert("timeout_s".into(), toml::Value::Integer(timeout));
    top.insert("approvals".into(), toml::Value::Table(approvals));
    // The child's checks are exactly the parent's (those of its user manifest
    // it reads itself, the rest come from here), plus the request's rules.
    let mut rules = m.permissions.clone();
    for layer in &input.permissions {
        let rule = manifest::hooks::resolve_permission(layer.clone(), cwd, None)
            .map_err(|e| ToolError::InvalidArgument(format!("permissions: {e}")))?;
        rules.push(manifest::SourcedPermission {
            rule,
            origin: manifest::Origin::Overlay,
        });
    }
    top.extend(manifest::hooks::inherited_checks(&m.hooks, &rules));
    if let Some(names) = &input.mcp
        && let Some(unknown) = names
            .iter()
            .find(|n| !m.mcp.iter().any(|s| &s.server.name == *n))
    {
        let have: Vec<&str> = m.mcp.iter().map(|s| s.server.name.as_str()).collect();
        return Err(ToolError::InvalidArgument(format!(
            "mcp: you have no MCP server `{unknown}` (yours: {})",
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        )));
    }
    let servers = manifest::mcp::inherited_servers(&m.mcp, input.mcp.as_deref());
    if !servers.is_empty() {
        top.insert("mcp".into(), toml::Value::Array(servers));
    }
    toml::to_string(&top).map_err(|e| failed(format!("cannot write the child's settings: {e}")))
}

/// What is reserved, for rollback.
struct Reserved {
    instance: String,
    delegated: Vec<PathBuf>,
    pid: Option<u32>,
}

struct SpawnPod {
    setup: SpawnSetup,
}

impl SpawnPod {
    /// Room for one more child: under the live-children limit, and no child
    /// of that name yet.
    fn check_room(&self, input: &SpawnPodInput) -> Result<(), ToolError> {
        let s = &self.setup;
        if s.children.len() >= s.limits.children {
            return Err(failed(format!(
                "limit_exceeded: at most {} live child pods per pod; stop one (StopPod) first",
                s.limits.children
            )));
        }
        if s.children.name_of(&input.name).is_some() {
            return Err(ToolError::InvalidArgument(format!(
                "you already have a child named `{}`; choose another name or stop it first",
                input.name
            )));
        }
        Ok(())
    }

    /// Validates the request; returns the child's full name and its grants.
    fn check(
        &self,
        input: &SpawnPodInput,
    ) -> Result<(String, Vec<ScopeRule>, Vec<ScopeRule>), ToolError> {
        let name = PodName::new(input.name.clone())
            .map_err(|e| ToolError::InvalidArgument(e.to_string()))?;
        if input.task.trim().is_empty() {
            return Err(ToolError::InvalidArgument(
                "`task` must say what the child should do".into(),
            ));
        }
        let s = &self.setup;
        let depth = s.parent_name.split('.').count() + 1;
        if depth > s.limits.depth {
            return Err(failed(format!(
                "limit_exceeded: pods may nest {} deep; `{}` is already at depth {}",
                s.limits.depth,
                s.parent_name,
                depth - 1
            )));
        }
        self.check_room(input)?;
        let full = format!("{}.{}", s.parent_name, name);
        let scope = s.scope.read().unwrap_or_else(PoisonError::into_inner);
        let mut grants = Vec::new();
        let mut reads = Vec::new();
        for rule in &input.scope {
            if rule.target.as_os_str().is_empty() {
                return Err(ToolError::InvalidArgument(
                    "a scope target is empty: give a directory (absolute, or relative to your working directory)".into(),
                ));
            }
            let rule = RuleInput {
                target: s.cwd.join(&rule.target),
                ..rule.clone()
            };
            match rule.permission {
                Permission::Write if !rule.recursive => {
                    return Err(ToolError::InvalidArgument(format!(
                        "a delegated write scope must be recursive (the whole subtree of {})",
                        rule.target.display()
                    )));
                }
                Permission::Write => {
                    let resolved = scope.check(&rule.target, Permission::Write).map_err(|e| {
                        match &e {
                            ScopeError::Refused {
                                reason: Refusal::Delegated { root },
                                ..
                            } => failed(format!(
                                "scope_conflict: {} overlaps {}, which your child pod `{}` holds; stop it first (StopPod) or choose another path",
                                rule.target.display(),
                                root.display(),
                                s.children.holder_of(root).unwrap_or_else(|| "?".into())
                            )),
                            _ => failed(format!("cannot give {}: {e}", rule.target.display())),
                        }
                    })?;
                    grants.push(ScopeRule::recursive(resolved, Permission::Write));
                }
                Permission::Read => {
                    let resolved = scope.check(&rule.target, Permission::Read).map_err(|e| {
                        failed(format!(
                            "cannot give read access to {}: {e}",
                            rule.target.display()
                        ))
                    })?;
                    reads.push(ScopeRule {
                        target: resolved,
                        permission: Permission::Read,
                        recursive: rule.recursive,
                    });
                }
            }
        }
        if grants.is_empty() {
            return Err(ToolError::InvalidArgument(
                "`scope` needs at least one `write` rule: the part of your scope the child works in".into(),
            ));
        }
        Ok((full, grants, reads))
    }

    async fn spawn(&self, input: SpawnPodInput) -> Result<ToolOutput, ToolError> {
        let (full, grants, reads) = self.check(&input)?;
        let s = &self.setup;
        // Count spawned pods of this user against the limit.
        let registry_path = pod_registry::registry_path_in(&s.places.runtime);
        let per_user = s.limits.per_user;
        let count_path = registry_path.clone();
        // Pods that died without releasing (kill -9, a crash) are reclaimed first:
        // counting them would block spawning for good.
        let spawned = tokio::task::spawn_blocking(move || {
            let mut guard = LockFileGuard::open(&count_path)?;
            let (registry, _) = pod_registry::reclaimed_registry(&mut guard)?;
            Ok::<_, RegistryError>(
                registry
                    .pods
                    .iter()
                    .filter(|p| p.parent_instance_id.is_some() && p.state == PodState::Live)
                    .count(),
            )
        })
        .await
        .map_err(|e| failed(format!("scope registry task failed: {e}")))?
        .map_err(|e| failed(format!("scope registry: {e}")))?;
        if spawned >= per_user {
            return Err(failed(format!(
                "limit_exceeded: {spawned} spawned pods already run for this user (limit {per_user}); stop some first"
            )));
        }
        for g in &grants {
            std::fs::create_dir_all(&g.target)
                .map_err(|e| failed(format!("cannot create {}: {e}", g.target.display())))?;
        }
        // Nothing of ours may still be writing where the child will. The
        // permit also serialises spawns, so the checks that depend on what
        // other spawns did are made again under it.
        let _permit = s.gate.delegation().await;
        self.check_room(&input)?;
        let mut reserved = Reserved {
            instance: String::new(),
            delegated: Vec::new(),
            pid: None,
        };
        match self
            .start(
                &input,
                &full,
                &grants,
                &reads,
                &registry_path,
                &mut reserved,
            )
            .await
        {
            Ok(out) => Ok(out),
            Err(e) => {
                self.roll_back(&reserved, &registry_path).await;
                Err(e)
            }
        }
    }

    async fn start(
        &self,
        input: &SpawnPodInput,
        full: &str,
        grants: &[ScopeRule],
        reads: &[ScopeRule],
        registry_path: &std::path::Path,
        reserved: &mut Reserved,
    ) -> Result<ToolOutput, ToolError> {
        let s = &self.setup;
        let overlay = child_overlay(&s.manifest, input, &s.cwd)?;
        let places = &s.places;
        let pod_dir = places.pod_runtime_dir(full);
        ensure_private_dir(&pod_dir, s.uid).map_err(|e| failed(e.to_string()))?;
        let socket = listener::socket_path(&places.runtime, &pod_dir, full);

        // Reserve the grant (the registry refuses overlaps with anyone but us).
        let entry = ProcessIdentity::current()
            .and_then(|id| PodEntry::new(full.to_string(), &socket, id))
            .map_err(|e| failed(format!("scope registry: {e}")))?
            .with_write_rules(grants.to_vec());
        reserved.instance = entry.instance_id.clone();
        let parent_instance = s.parent_instance.clone();
        let path = registry_path.to_path_buf();
        let grant_list = grants.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut guard = LockFileGuard::open(&path)?;
            guard.delegate(&parent_instance, entry, &grant_list)
        })
        .await
        .map_err(|e| failed(format!("scope registry task failed: {e}")))?
        .map_err(|e| match e {
            RegistryError::ScopeConflict { .. } => failed(format!("scope_conflict: {e}")),
            other => failed(format!("scope registry: {other}")),
        })?;
        s.children
            .delegate_rules(grants, &mut reserved.delegated)
            .map_err(|(target, e)| {
                failed(format!(
                    "cannot move {} to the child: {e}",
                    target.display()
                ))
            })?;
        // A server keeps the scope it started with: none may write the child's.
        s.mcp.refresh().await;

        // The child's scope: exactly the grant, our reads, our denies and shared paths.
        let (allow, deny, shared) = {
            let scope = s.scope.read().unwrap_or_else(PoisonError::into_inner);
            let mut allow: Vec<ScopeRule> = grants.to_vec();
            allow.extend(scope.read_roots().cloned());
            allow.extend(reads.iter().cloned());
            (allow, scope.denied().to_vec(), scope.shared().to_vec())
        };
        let cwd = grants[0].target.clone();
        let stored = StoredLaunch {
            manifest: None,
            cwd: cwd.clone(),
            scope: Vec::new(),
            overlay: Some(overlay),
            no_sandbox: false,
            child: Some(ChildSpec {
                parent_name: s.parent_name.clone(),
                parent_instance: s.parent_instance.clone(),
                parent_pid: std::process::id(),
                parent_socket: s.parent_socket.clone(),
                instance_id: reserved.instance.clone(),
                allow,
                deny,
                shared,
            }),
        };
        let session_dir = places.session_dir(full);
        std::fs::create_dir_all(&session_dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", session_dir.display())))?;
        let bytes = serde_json::to_vec_pretty(&stored).map_err(|e| failed(e.to_string()))?;
        sys::replace_file(&launch_file(places, full), &bytes)
            .map_err(|e| failed(format!("cannot write the child's launch options: {e}")))?;

        // The task is the first invocation of the child's log before it runs.
        {
            let (mut log, report) = SessionWriter::open(&session_dir)
                .map_err(|e| failed(format!("child session {}: {e}", session_dir.display())))?;
            if report.entries > 0 {
                return Err(failed(format!(
                    "a session for `{full}` already exists in {}; choose another name",
                    session_dir.display()
                )));
            }
            // Paths the parent wrote from its directory, made the child's.
            let rel = cwd.strip_prefix(&s.cwd).unwrap_or(Path::new(""));
            let task = tools::grounding::task_for_child(&input.task, rel);
            let segments = vec![Segment::text(task.clone())];
            log.append(EntryBody::InvokeStart {
                invoke_kind: InvokeKind::UserSend,
                turn: 1,
            })
            .and_then(|_| {
                log.append(EntryBody::UserInput {
                    segments,
                    item: LoggedItem(Item::text(Role::User, task)),
                })
            })
            .and_then(|_| log.sync())
            .map_err(|e| failed(format!("cannot write the child's task: {e}")))?;
        }

        // Its lock and socket, taken here and handed over.
        let lock = PodLock::take(&pod_dir, full).map_err(|e| failed(e.to_string()))?;
        let listener = listener::bind_std(&socket).map_err(|e| failed(e.to_string()))?;
        let log_path = pod_dir.join("pod.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| failed(format!("cannot open {}: {e}", log_path.display())))?;
        let _ = std::fs::set_permissions(&log_path, std::fs::Permissions::from_mode(0o600));
        let args = vec!["__child".to_string(), "--name".into(), full.to_string()];
        let pid = spawn_child(&s.exe, &args, lock.file(), &listener, &log_file)
            .map_err(|e| failed(format!("cannot start the child: {e}")))?;
        reserved.pid = Some(pid);
        tracing::info!(child = %full, pid, "child pod started");
        // Our copies go now: the child alone holds its lock and socket.
        drop(lock);
        drop(listener);
        drop(log_file);
        let (exits, short, log) = (s.exits.clone(), input.name.clone(), log_path.clone());
        let (children, runtime) = (Arc::clone(&s.children), tokio::runtime::Handle::current());
        // Set once recording the child succeeded or failed: from then on a child no
        // longer listed was stopped, forgotten or rolled back, and is not reported.
        let settled = Arc::new(AtomicBool::new(false));
        let settled_seen = Arc::clone(&settled);
        reap_later(pid, move |status| {
            // A child this pod is stopping was killed on purpose: nothing to report, and
            // the stop gives its scope back itself.
            if children.is_stopping(&short) {
                return;
            }
            if let Some(message) = exit_report(status, &log) {
                let still_ours =
                    || !settled_seen.load(Ordering::Acquire) || children.name_of_pid(pid).is_some();
                exits.report(pid, &short, &message, still_ours);
                // Its scope comes back now rather than at the next ListPods. A child
                // that was stopped meanwhile is forgotten by the stop itself.
                let _ =
                    runtime.block_on(children.forget(&short, "its process ended with an error"));
            }
        });

        // The registry names the child's own process from now on.
        let instance = reserved.instance.clone();
        let path = registry_path.to_path_buf();
        let socket_for_registry = socket.clone();
        // Best effort: the lock file tells liveness right even if this fails;
        // only the recorded pid would be off.
        let _ = tokio::task::spawn_blocking(move || {
            let identity = ProcessIdentity::of(pid)?;
            LockFileGuard::open(&path)?.adopt(&instance, identity, &socket_for_registry)
        })
        .await;

        let record = SpawnedPodRecord {
            pod_name: input.name.clone(),
            socket_path: socket.clone(),
            scope_delegated: grants.to_vec(),
            full_name: full.to_string(),
            instance_id: reserved.instance.clone(),
            pid,
            task: input.task.clone(),
            created_ms: now_ms(),
        };
        let inserted = s.children.insert(record);
        settled.store(true, Ordering::Release);
        inserted.map_err(|e| failed(format!("cannot record the child in the session: {e}")))?;
        let scope_text = grants
            .iter()
            .map(|g| format!("write:{}", g.target.display()))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(ToolOutput {
            summary: format!("spawned pod `{}` ({full}); scope: {scope_text}", input.name),
            content: Some(format!(
                "name: {}\nsocket: {}\nscope: {scope_text}\ncwd: {}\nIt is working on its task now; do not send it the task again. \
                 When it finishes, a [pod event] message tells you, and ReadPodOutput shows its answer.",
                input.name,
                socket.display(),
                cwd.display()
            )),
        })
    }

    /// Undoes a reservation: kills a started child, releases its registry
    /// entry and gives the subtrees back.
    async fn roll_back(&self, reserved: &Reserved, registry_path: &std::path::Path) {
        if let Some(pid) = reserved.pid {
            // The child leads the process group we just created.
            let _ = sys::kill_group(pid);
        }
        if !reserved.instance.is_empty() {
            let instance = reserved.instance.clone();
            let path = registry_path.to_path_buf();
            let _ = tokio::task::spawn_blocking(move || {
                LockFileGuard::open(&path).and_then(|mut g| g.release(&instance))
            })
            .await;
        }
        self.setup.children.give_back_roots(&reserved.delegated);
    }
}

#[async_trait]
impl Tool for SpawnPod {
    async fn execute(&self, input_json: &str) -> Result<ToolOutput, ToolError> {
        let mut input: SpawnPodInput = serde_json::from_str(input_json)
            .map_err(|e| ToolError::InvalidArgument(format!("invalid SpawnPod input: {e}")))?;
        input.task = crate::checks::check_task(&self.setup.hooks, input.task)
            .await
            .map_err(|reason| failed(format!("refused by a user_prompt hook: {reason}")))?;
        self.spawn(input).await
    }
}

/// The `SpawnPod` tool over `setup`.
pub(crate) fn spawn_pod_tool(setup: SpawnSetup) -> ToolDefinition {
    Arc::new(move || {
        let schema = serde_json::to_value(schemars::schema_for!(SpawnPodInput))
            .unwrap_or_else(|_| serde_json::json!({"type": "object"}));
        let meta = ToolMeta::new("SpawnPod")
            .description(DESCRIPTION)
            .input_schema(schema);
        let tool: Arc<dyn Tool> = Arc::new(SpawnPod {
            setup: setup.clone(),
        });
        (meta, tool)
    })
}
