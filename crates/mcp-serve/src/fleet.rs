//! The pods one `pod mcp serve` session started, and what an MCP host may do
//! with them: the seed's comm tools (`SendToPod`, `ReadPodOutput`, `StopPod`,
//! `ListPods`) and `SpawnPod`, for a host that is not a pod.
//!
//! A pod is started as a top-level pod of the user by the `pod` binary itself
//! (`pod start`), so it claims its write scope in the per-user registry like
//! any other (two pods never write the same files) and shows in `pod ls` and
//! the UI. The server reaches only the pods it started: there is no
//! machine-wide lookup, as for a pod's own children.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use manifest::{Permission, PodName, ScopeRule};
use pod_client::client::{ClientError, PodClient, PodLocation, RunAnswer, run_answer};
use pod_runtime::dir::Places;
use pod_runtime::pod_registry::{self, LockFileGuard};
use pod_runtime::status::StatusRecord;
use protocol::{ErrorCode, Event, Method, PodStatus, Segment};
use serde::Deserialize;

/// How long a pod's answer to `run` is waited for.
const ACCEPT_WAIT: Duration = Duration::from_secs(10);

/// Why an operation on the fleet failed: what the host's model reads.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The input is wrong: fixing it is the caller's part.
    #[error("{0}")]
    Invalid(String),
    /// The input was fine, the operation failed.
    #[error("{0}")]
    Failed(String),
}

/// One scope rule of a `spawn_pod` request.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    /// A directory: absolute, or relative to the server's working directory;
    /// it must lie within the server's `--scope`.
    pub target: PathBuf,
    /// `write` (claimed by the new pod: no other pod may write there until it
    /// stops) or `read`.
    pub permission: Permission,
    /// The whole subtree (default; required for `write`) or the directory and
    /// its direct children.
    #[serde(default = "yes")]
    pub recursive: bool,
}

fn yes() -> bool {
    true
}

/// The `spawn_pod` input: the same as a pod's `SpawnPod` tool.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnInput {
    /// The pod's name: lowercase letters, digits, `-` and `_`, at most 32;
    /// unique among the user's pods.
    pub name: String,
    /// What the pod should do (its first user message).
    pub task: String,
    /// The directories it may use; at least one `write` rule. Its working
    /// directory is its first write path (created if missing).
    pub scope: Vec<RuleInput>,
    /// A model for the pod (default: what `pod start` would choose).
    #[serde(default)]
    pub model: Option<String>,
    /// Extra instruction for the pod's system prompt.
    #[serde(default)]
    pub instruction: Option<String>,
}

/// `send_to_pod`'s input.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendInput {
    /// Name of a pod this server started.
    pub name: String,
    /// The message, delivered as the pod's next user input.
    pub message: String,
}

/// The input of `read_pod_output` and `stop_pod`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NameInput {
    /// Name of a pod this server started.
    pub name: String,
}

/// `read_pod_output`'s input.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadInput {
    /// Name of a pod this server started.
    pub name: String,
    /// Wait up to this many seconds (at most 300) for the pod to finish its
    /// turn before reading, instead of asking again and again (default: read
    /// now). Keep it under your MCP client's tool timeout.
    #[serde(default)]
    pub wait_s: Option<u64>,
}

/// The longest `wait_s` of `read_pod_output`.
const MAX_WAIT_S: u64 = 300;

/// `list_pods`'s input (none).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyInput {}

/// What the server knows of a pod it started.
#[derive(Debug, Clone)]
struct Owned {
    /// The rules it was given (targets resolved).
    rules: Vec<ScopeRule>,
    /// Where its files are.
    location: PodLocation,
    /// Snapshot index up to which its output was read.
    index: usize,
    /// Seq of the last entry read (survives a compaction's new segment).
    read_seq: Option<u64>,
}

/// The pods of one server session.
#[derive(Debug)]
pub struct Fleet {
    /// The `pod` binary that starts pods.
    exe: PathBuf,
    /// Relative targets start here.
    cwd: PathBuf,
    /// `--scope`: every target lies within one of these (canonical).
    bounds: Vec<PathBuf>,
    /// Where pods keeps its files.
    places: Places,
    /// Whether the pods outlive the session (`--keep`); if not, each watches
    /// this process and stops when it ends, even by `kill -9`.
    keep: bool,
    /// The pods started, by name.
    pods: Mutex<BTreeMap<String, Owned>>,
    /// Set when the session ends: no pod is started after it.
    closing: std::sync::atomic::AtomicBool,
    /// Held (shared) by each `spawn_pod` while it runs; [`Fleet::stop_all`]
    /// takes it whole, so a pod still being started is stopped too.
    starting: tokio::sync::RwLock<()>,
}

/// The most of a pod's text one `read_pod_output` returns (its end is kept).
const MAX_READ: usize = 64 * 1024;

/// `path` with `.` and `..` taken out lexically (`..` at the root stays at the root).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl Fleet {
    /// A fleet whose pods are started by `exe`, with relative targets from
    /// `cwd` and every target within `bounds` (canonicalised here: a bound
    /// that does not exist is an error); `keep`: its pods outlive it.
    pub fn new(
        exe: PathBuf,
        cwd: PathBuf,
        bounds: &[PathBuf],
        places: Places,
        keep: bool,
    ) -> anyhow::Result<Fleet> {
        let mut canonical = Vec::new();
        for bound in bounds {
            let path = cwd.join(bound);
            let real = std::fs::canonicalize(&path).map_err(|e| {
                anyhow::anyhow!(
                    "--scope {}: {e}; give an existing directory",
                    path.display()
                )
            })?;
            canonical.push(real);
        }
        if canonical.is_empty() {
            canonical.push(std::fs::canonicalize(&cwd)?);
        }
        Ok(Fleet {
            exe,
            cwd,
            bounds: canonical,
            places,
            keep,
            pods: Mutex::new(BTreeMap::new()),
            closing: std::sync::atomic::AtomicBool::new(false),
            starting: tokio::sync::RwLock::new(()),
        })
    }

    /// The directories pods may be given (canonical).
    pub fn bounds(&self) -> &[PathBuf] {
        &self.bounds
    }

    fn within_bounds(&self, path: &Path) -> bool {
        self.bounds.iter().any(|b| path.starts_with(b))
    }

    fn bounds_text(&self) -> String {
        self.bounds
            .iter()
            .map(|b| b.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn owned(&self, name: &str) -> Result<Owned, FleetError> {
        self.pods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| {
                FleetError::Invalid(format!(
                    "no pod named `{name}` was started by this server (list_pods lists them)"
                ))
            })
    }

    /// Names of the pods started (alive or not).
    pub fn names(&self) -> Vec<String> {
        self.pods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Checks a request's rules: resolved, within bounds, writes recursive and
    /// at least one. Returns (writes, reads) with targets made canonical (write
    /// directories are created).
    fn check_rules(
        &self,
        rules: &[RuleInput],
    ) -> Result<(Vec<ScopeRule>, Vec<ScopeRule>), FleetError> {
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        for rule in rules {
            if rule.target.as_os_str().is_empty() {
                return Err(FleetError::Invalid(
                    "a scope target is empty: give a directory (absolute, or relative to the server's working directory)".into(),
                ));
            }
            let target = lexical(&self.cwd.join(&rule.target));
            // Checked before anything is created, and again once symlinks are resolved.
            if !self.within_bounds(&target) {
                return Err(FleetError::Invalid(format!(
                    "{} is outside this server's scope ({}); `pod mcp serve --scope DIR` widens it",
                    target.display(),
                    self.bounds_text()
                )));
            }
            if rule.permission == Permission::Write {
                if !rule.recursive {
                    return Err(FleetError::Invalid(format!(
                        "a write scope must be recursive (the whole subtree of {})",
                        target.display()
                    )));
                }
                self.create_within(&target)?;
            }
            let real = std::fs::canonicalize(&target).map_err(|e| {
                FleetError::Invalid(format!("scope target {}: {e}", target.display()))
            })?;
            if !self.within_bounds(&real) {
                return Err(FleetError::Invalid(format!(
                    "{} resolves to {}, outside this server's scope ({})",
                    target.display(),
                    real.display(),
                    self.bounds_text()
                )));
            }
            let rule = ScopeRule {
                target: real,
                permission: rule.permission,
                recursive: rule.recursive,
            };
            match rule.permission {
                Permission::Write => writes.push(rule),
                Permission::Read => reads.push(rule),
            }
        }
        if writes.is_empty() {
            return Err(FleetError::Invalid(
                "`scope` needs at least one `write` rule: the directory the pod works in".into(),
            ));
        }
        Ok((writes, reads))
    }

    /// Creates directory `target` (lexically within bounds) after checking
    /// that the deepest part of it that exists is within bounds once symlinks
    /// are resolved: a symlink must not make it create a directory elsewhere.
    fn create_within(&self, target: &Path) -> Result<(), FleetError> {
        let mut existing = target;
        while !existing.exists() {
            existing = existing.parent().unwrap_or(Path::new("/"));
        }
        let real = std::fs::canonicalize(existing).map_err(|e| {
            FleetError::Invalid(format!("scope target {}: {e}", existing.display()))
        })?;
        if !self.within_bounds(&real) {
            return Err(FleetError::Invalid(format!(
                "{} resolves to {}, outside this server's scope ({})",
                target.display(),
                real.join(target.strip_prefix(existing).unwrap_or(Path::new("")))
                    .display(),
                self.bounds_text()
            )));
        }
        let rest = target.strip_prefix(existing).unwrap_or(Path::new(""));
        std::fs::create_dir_all(real.join(rest))
            .map_err(|e| FleetError::Failed(format!("cannot create {}: {e}", target.display())))
    }

    /// `spawn_pod`: starts a pod with the request's scope and sends it its task.
    pub async fn spawn(&self, input: SpawnInput) -> Result<String, FleetError> {
        let _starting = self.starting.read().await;
        if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(FleetError::Failed(
                "this server is closing: it starts no more pods".into(),
            ));
        }
        let name = PodName::new(input.name.clone())
            .map_err(|e| FleetError::Invalid(e.to_string()))?
            .to_string();
        if input.task.trim().is_empty() {
            return Err(FleetError::Invalid(
                "`task` must say what the pod should do".into(),
            ));
        }
        if let Ok(owned) = self.owned(&name)
            && owned.location.is_alive()
        {
            return Err(FleetError::Invalid(format!(
                "this server already runs a pod named `{name}`; stop_pod it first or choose another name"
            )));
        }
        let (writes, reads) = self.check_rules(&input.scope)?;
        let args = start_args(&name, &writes, &reads, &input)?;
        let mut command = std::process::Command::new(&self.exe);
        command
            .args(&args)
            // The server's token would let the pod's commands drive it.
            .env_remove(crate::http::TOKEN_VAR)
            .stdin(std::process::Stdio::null());
        if self.keep {
            command.env_remove(pod_runtime::OWNER_PID_VAR);
        } else {
            command.env(pod_runtime::OWNER_PID_VAR, std::process::id().to_string());
        }
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .map_err(|e| FleetError::Failed(format!("the start task failed: {e}")))?
            .map_err(|e| FleetError::Failed(format!("cannot run the pod binary: {e}")))?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            // A scope conflict is found by the pod process, whose log `pod
            // start` quotes: its line is the one the host's model needs.
            let said = if said.contains("has a stopped session") {
                // `pod restore`/`pod rm` are for the user, not for the host.
                format!(
                    "a stopped pod named `{name}` exists (its session is kept for the user); choose another name"
                )
            } else {
                said.lines()
                    .find_map(|l| l.trim().strip_prefix("pod: scope conflict: "))
                    .map(|l| format!("scope conflict: {l}"))
                    .unwrap_or_else(|| said.trim().trim_start_matches("error: ").to_string())
            };
            return Err(FleetError::Failed(format!(
                "cannot start pod `{name}`: {said}"
            )));
        }
        let location = PodLocation::of(&self.places, &name);
        let mut rules = writes;
        rules.extend(reads);
        // A user or trusted project manifest may add write rules of its own:
        // a pod of this server never writes outside the server's scope.
        let outside = match StatusRecord::read(&location.dir) {
            None => Some("(its status file cannot be read)".to_string()),
            Some(status) => status
                .write_rules
                .iter()
                .map(|r| std::fs::canonicalize(&r.target).unwrap_or_else(|_| r.target.clone()))
                .find(|t| !self.within_bounds(t))
                .map(|t| t.display().to_string()),
        };
        if let Some(outside) = outside {
            self.stop_location(&name).await;
            return Err(FleetError::Failed(format!(
                "pod `{name}` was stopped: a manifest gave it write access to {outside}, outside this server's scope ({})",
                self.bounds_text()
            )));
        }
        self.pods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                name.clone(),
                Owned {
                    rules: rules.clone(),
                    location: location.clone(),
                    index: 0,
                    read_seq: None,
                },
            );
        if let Err(e) = send_run(&location, input.task).await {
            self.stop_location(&name).await;
            self.pods
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&name);
            return Err(FleetError::Failed(format!(
                "pod `{name}` started but did not take its task ({e}); it was stopped"
            )));
        }
        Ok(format!(
            "started pod `{name}` (scope: {}); it is working on its task. read_pod_output `{name}` for its answer, send_to_pod for more work, stop_pod to stop it and free its scope.",
            pod_client::pods::rules_summary(&rules)
        ))
    }

    /// `send_to_pod`: a new user turn in a pod of this server.
    pub async fn send(&self, input: SendInput) -> Result<String, FleetError> {
        let owned = self.owned(&input.name)?;
        match send_run(&owned.location, input.message).await {
            Ok(()) => Ok(format!("sent message to `{}`", input.name)),
            Err(RunRefused::Busy) => Err(FleetError::Failed(format!(
                "pod `{}` is busy with a turn; retry when it finishes (read_pod_output says when it is idle)",
                input.name
            ))),
            Err(e) => Err(FleetError::Failed(format!(
                "cannot send to `{}`: {e}",
                input.name
            ))),
        }
    }

    /// `read_pod_output`: the assistant text since the last read, and whether
    /// the pod is still working.
    pub async fn read(&self, input: ReadInput) -> Result<String, FleetError> {
        let owned = self.owned(&input.name)?;
        if let Some(wait) = input.wait_s.filter(|w| *w > 0) {
            let wait = Duration::from_secs(wait.min(MAX_WAIT_S));
            // A connection's snapshot is taken under the pod's state lock, so
            // its status is the pod's own (a turn just sent shows running);
            // the invocation's end is its `run_end` event.
            if let Ok(mut client) = PodClient::connect(&owned.location.socket).await
                && client.status != PodStatus::Idle
            {
                let _ = tokio::time::timeout(wait, async {
                    while let Ok(Some(event)) = client.next_event().await {
                        if matches!(event, Event::RunEnd { .. }) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        let Ok(client) = PodClient::connect(&owned.location.socket).await else {
            return Ok(format!("pod `{}` is stopped (unreachable)", input.name));
        };
        let seqs: Vec<Option<u64>> = client
            .entries
            .iter()
            .map(|e| e.get("seq").and_then(serde_json::Value::as_u64))
            .collect();
        let from = pod_client::snapshot::resume_at(&seqs, owned.read_seq, owned.index);
        let text = pod_client::snapshot::assistant_text(&client.entries[from..]);
        if let Some(o) = self
            .pods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&input.name)
        {
            o.index = seqs.len();
            if let Some(last) = seqs.last().copied().flatten() {
                o.read_seq = Some(last);
            }
        }
        let state = match client.status {
            PodStatus::Idle => "idle (its turn is over)",
            PodStatus::Running => "running",
            PodStatus::Paused => "paused",
        };
        if text.is_empty() {
            return Ok(format!(
                "pod `{}` is {state}; no new assistant text",
                input.name
            ));
        }
        if text.len() > MAX_READ {
            let mut cut = text.len() - MAX_READ;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            return Ok(format!(
                "pod `{}` is {state}; the last {} bytes of its assistant text since the last read ({cut} earlier bytes left out; `pod logs {}` has everything):\n\n{}",
                input.name,
                text.len() - cut,
                input.name,
                &text[cut..]
            ));
        }
        Ok(format!(
            "pod `{}` is {state}; its assistant text since the last read:\n\n{text}",
            input.name
        ))
    }

    /// `stop_pod`: stops a pod of this server (and any pods it spawned); its
    /// write scope is free again.
    pub async fn stop(&self, input: NameInput) -> Result<String, FleetError> {
        let owned = self.owned(&input.name)?;
        let failure = self.stop_location(&input.name).await;
        if !owned.location.is_alive() {
            self.pods
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&input.name);
        }
        let scope = pod_client::pods::rules_summary(&owned.rules);
        match failure {
            None => Ok(format!(
                "stopped pod `{}`; its scope is free again: {scope}",
                input.name
            )),
            Some(e) => Err(FleetError::Failed(format!(
                "pod `{}` did not stop cleanly: {e}",
                input.name
            ))),
        }
    }

    /// `list_pods`: the pods of this server, alive or stopped, with their
    /// scopes; stopped ones are forgotten (their scope is free).
    pub async fn list(&self) -> String {
        let pods: Vec<(String, Owned)> = self
            .pods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if pods.is_empty() {
            return "no pods started by this server; spawn_pod starts one".into();
        }
        let mut lines = Vec::new();
        let mut gone = Vec::new();
        for (name, owned) in &pods {
            // The lock, not a connection, says whether it is gone: a pod that
            // is slow to answer is still there, with its scope.
            let state = if owned.location.is_alive() {
                match StatusRecord::read(&owned.location.dir).map(|s| s.status) {
                    Some(PodStatus::Idle) => "alive, idle",
                    Some(PodStatus::Running) => "alive, running",
                    Some(PodStatus::Paused) => "alive, paused",
                    None => "alive",
                }
            } else {
                gone.push(name.clone());
                "stopped"
            };
            lines.push(format!(
                "{name} [{state}] scope={}",
                pod_client::pods::rules_summary(&owned.rules)
            ));
        }
        if !gone.is_empty() {
            // Free the registry entries of pods that died without releasing them.
            let runtime = self.places.runtime.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let path = pod_registry::registry_path_in(&runtime);
                if let Ok(mut guard) = LockFileGuard::open(&path) {
                    pod_registry::reclaim_stale(&mut guard);
                }
            })
            .await;
            let mut pods = self.pods.lock().unwrap_or_else(PoisonError::into_inner);
            for name in &gone {
                pods.remove(name);
                lines.push(format!("{name}: stopped; its scope is free again"));
            }
        }
        lines.join("\n")
    }

    /// Stops every pod of this server (and their subtrees); called when the
    /// session ends, unless `--keep`.
    pub async fn stop_all(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Waits for spawns under way: their pods are in the list after it.
        let _no_more = self.starting.write().await;
        for name in self.names() {
            self.stop_location(&name).await;
        }
        self.pods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Stops pod `name`'s tree; returns why it did not stop cleanly, if so.
    async fn stop_location(&self, name: &str) -> Option<String> {
        let name = name.to_string();
        match tokio::task::spawn_blocking(move || pod_client::stop::stop_tree_quietly(&name)).await
        {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(pod_client::cli::error_text(&e)),
            Err(e) => Some(format!("the stop task failed: {e}")),
        }
    }
}

/// The `pod start` arguments for a pod with these rules.
fn start_args(
    name: &str,
    writes: &[ScopeRule],
    reads: &[ScopeRule],
    input: &SpawnInput,
) -> Result<Vec<String>, FleetError> {
    let cwd = &writes[0].target;
    let mut args = vec![
        "start".to_string(),
        "--name".into(),
        name.into(),
        "--cwd".into(),
        cwd.display().to_string(),
    ];
    for w in writes {
        args.push("--scope".into());
        args.push(w.target.display().to_string());
    }
    let mut overlay = toml::Table::new();
    if !reads.is_empty() {
        let rules: Vec<toml::Value> = reads
            .iter()
            .map(|r| {
                let mut t = toml::Table::new();
                t.insert("target".into(), r.target.display().to_string().into());
                t.insert("permission".into(), "read".into());
                t.insert("recursive".into(), r.recursive.into());
                toml::Value::Table(t)
            })
            .collect();
        let mut scope = toml::Table::new();
        scope.insert("allow".into(), toml::Value::Array(rules));
        overlay.insert("scope".into(), toml::Value::Table(scope));
    }
    if let Some(model) = &input.model {
        let mut t = toml::Table::new();
        t.insert("model".into(), model.clone().into());
        overlay.insert("model".into(), toml::Value::Table(t));
    }
    if let Some(instruction) = &input.instruction {
        let mut t = toml::Table::new();
        t.insert("instruction".into(), instruction.clone().into());
        overlay.insert("worker".into(), toml::Value::Table(t));
    }
    if !overlay.is_empty() {
        let text = toml::to_string(&overlay)
            .map_err(|e| FleetError::Invalid(format!("cannot express the request as TOML: {e}")))?;
        args.push("--overlay".into());
        args.push(text);
    }
    Ok(args)
}

/// How a `run` can fail.
#[derive(Debug, thiserror::Error)]
enum RunRefused {
    /// The pod is in a turn.
    #[error("the pod is busy with a turn")]
    Busy,
    /// It refused for another reason.
    #[error("the pod refused ({code:?}): {message}")]
    Refused {
        /// Its error code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The socket failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// No answer in time, or the connection closed first.
    #[error("the pod did not accept the message within {} s", ACCEPT_WAIT.as_secs())]
    NoAnswer,
}

/// Sends `run` and waits until the pod accepts it (its `user_message`,
/// `turn_start` or `invoke_start{user_send}`) or refuses it.
async fn send_run(location: &PodLocation, text: String) -> Result<(), RunRefused> {
    let mut client = PodClient::connect(&location.socket).await?;
    client
        .send(&Method::Run {
            input: vec![Segment::text(text)],
        })
        .await?;
    let answer = tokio::time::timeout(ACCEPT_WAIT, async {
        while let Some(event) = client.next_event().await? {
            match run_answer(event) {
                Some(RunAnswer::Accepted) => return Ok(()),
                Some(RunAnswer::Busy) => return Err(RunRefused::Busy),
                Some(RunAnswer::Refused { code, message }) => {
                    return Err(RunRefused::Refused { code, message });
                }
                None => {}
            }
        }
        Err(RunRefused::NoAnswer)
    })
    .await;
    answer.unwrap_or(Err(RunRefused::NoAnswer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(dir: &Path) -> Places {
        let home = dir.display().to_string();
        let env = pod_runtime::dir::DirEnv::from_pairs(
            pod_runtime::dir::current_uid(),
            [("HOME", home.as_str()), ("POD_RUNTIME_DIR", home.as_str())],
        );
        Places::resolve(&env).unwrap()
    }

    fn fleet(dir: &Path) -> Fleet {
        let places = places(dir);
        std::fs::create_dir_all(dir.join("work")).unwrap();
        Fleet::new(
            PathBuf::from("/nonexistent/pod"),
            dir.join("work"),
            &[PathBuf::from(".")],
            places,
            false,
        )
        .unwrap()
    }

    fn rule(target: &str, permission: Permission, recursive: bool) -> RuleInput {
        RuleInput {
            target: target.into(),
            permission,
            recursive,
        }
    }

    #[test]
    fn lexical_takes_out_dots() {
        assert_eq!(lexical(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
        assert_eq!(lexical(Path::new("/a/../../..")), PathBuf::from("/"));
    }

    #[test]
    fn targets_outside_the_bounds_are_refused_before_anything_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let f = fleet(dir.path());
        let e = f
            .check_rules(&[rule("../escape", Permission::Write, true)])
            .unwrap_err();
        assert!(e.to_string().contains("outside this server's scope"), "{e}");
        assert!(!dir.path().join("escape").exists());
    }

    #[test]
    fn a_symlink_out_of_the_bounds_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = fleet(dir.path());
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), dir.path().join("work/link"))
            .unwrap();
        let e = f
            .check_rules(&[rule("link", Permission::Write, true)])
            .unwrap_err();
        assert!(e.to_string().contains("resolves to"), "{e}");
        // Nothing is created through the link either.
        let e = f
            .check_rules(&[rule("link/inner", Permission::Write, true)])
            .unwrap_err();
        assert!(e.to_string().contains("resolves to"), "{e}");
        assert!(!dir.path().join("outside/inner").exists());
    }

    #[test]
    fn rules_need_a_recursive_write() {
        let dir = tempfile::tempdir().unwrap();
        let f = fleet(dir.path());
        std::fs::create_dir_all(dir.path().join("work/docs")).unwrap();
        let e = f
            .check_rules(&[rule("docs", Permission::Read, true)])
            .unwrap_err();
        assert!(e.to_string().contains("at least one `write` rule"), "{e}");
        let e = f
            .check_rules(&[rule("a", Permission::Write, false)])
            .unwrap_err();
        assert!(e.to_string().contains("must be recursive"), "{e}");
        let e = f
            .check_rules(&[rule("", Permission::Write, true)])
            .unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let (writes, reads) = f
            .check_rules(&[
                rule("a", Permission::Write, true),
                rule("docs", Permission::Read, false),
            ])
            .unwrap();
        assert!(writes[0].target.ends_with("work/a") && writes[0].target.is_dir());
        assert!(!reads[0].recursive);
    }

    #[test]
    fn a_missing_bound_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let places = places(dir.path());
        let e = Fleet::new(
            PathBuf::from("pod"),
            dir.path().to_path_buf(),
            &[PathBuf::from("nope")],
            places,
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("--scope"), "{e}");
    }

    #[test]
    fn start_args_carry_reads_model_and_instruction_as_toml() {
        let input = SpawnInput {
            name: "a".into(),
            task: "t".into(),
            scope: vec![],
            model: Some("m\"1".into()),
            instruction: Some("be \"brief\"\n".into()),
        };
        let args = start_args(
            "a",
            &[ScopeRule::recursive("/w/a", Permission::Write)],
            &[ScopeRule::non_recursive("/w/docs", Permission::Read)],
            &input,
        )
        .unwrap();
        assert_eq!(&args[..5], ["start", "--name", "a", "--cwd", "/w/a"]);
        assert_eq!(&args[5..7], ["--scope", "/w/a"]);
        let overlay: toml::Table = args[8].parse().unwrap();
        assert_eq!(overlay["model"]["model"].as_str(), Some("m\"1"));
        assert_eq!(
            overlay["worker"]["instruction"].as_str(),
            Some("be \"brief\"\n")
        );
        assert_eq!(
            overlay["scope"]["allow"][0]["recursive"].as_bool(),
            Some(false)
        );
    }

    #[test]
    fn unknown_pods_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = fleet(dir.path());
        let e = f.owned("ghost").unwrap_err();
        assert!(e.to_string().contains("`ghost`"), "{e}");
    }
}
