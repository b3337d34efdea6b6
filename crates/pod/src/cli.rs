//! What each `pod` command does. `main.rs` parses arguments and calls these;
//! they print results and return the process exit code.
//!
//! Exit codes: 0 ok, 1 error, 2 usage error (clap), 3 the invocation failed or
//! was cancelled.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command as ProcessCommand, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use protocol::{Event, Method, PodStatus, Segment, TurnResult};
use serde::Serialize;
use tokio::signal::unix::Signal;

use crate::client::{PodClient, PodLocation};
use crate::launch::{self, LaunchOptions, StoredLaunch, launch_file, process_var};
use crate::render::Renderer;
use crate::runtime::dir::{DirEnv, Places, current_uid, ensure_private_dir};
use crate::server::{self, PodSpec, Ready};
use crate::state::StatusRecord;

/// The invocation failed or was cancelled.
pub const EXIT_INVOCATION: u8 = 3;

/// How long `pod start` waits for a detached pod to serve.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long `pod stop` waits for a clean exit before signalling.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// An error and its causes on one line, as `{e:#}` writes it, but leaving out a
/// cause whose text is already there: many error types include their source in
/// their own message (`cannot read X: No such file`), and repeating it reads as
/// two errors.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}

/// The places of this process's environment.
pub fn places() -> anyhow::Result<Places> {
    Ok(Places::resolve(&DirEnv::from_process())?)
}

/// Whether pod `name` has a session with at least one entry.
fn session_exists(places: &Places, name: &str) -> bool {
    std::fs::metadata(places.session_dir(name).join("000001.jsonl")).is_ok_and(|m| m.len() > 0)
}

/// How a foreground pod process starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// `pod start --foreground`: a new session.
    Fresh,
    /// The foreground half of `pod restore`: an existing session.
    Restore,
    /// A child started by its parent, with its lock and socket handed over
    /// and its first task in its log.
    Child,
}

/// Runs a pod in this process until it shuts down.
pub fn start_foreground(opts: LaunchOptions, json: bool, mode: StartMode) -> anyhow::Result<u8> {
    let places = places()?;
    // A restored or child pod starts the way it was first started.
    let stored = match mode {
        StartMode::Fresh => None,
        StartMode::Restore | StartMode::Child => {
            let name = opts.name.clone().unwrap_or_default();
            StoredLaunch::read(&places, &name)
        }
    };
    if mode == StartMode::Child && stored.as_ref().and_then(|s| s.child.as_ref()).is_none() {
        bail!(
            "no child launch options for `{}`",
            opts.name.clone().unwrap_or_default()
        );
    }
    let opts = match (&stored, &opts.name) {
        (Some(stored), Some(name)) => stored.options(name),
        _ => opts,
    };
    let child = stored.and_then(|s| s.child);
    let mut manifest = launch::load_manifest(&opts, manifest::Env::from_process(), &process_var)?;
    if let Some(child) = &child {
        launch::apply_child_scope(&mut manifest, child);
    }
    let name = launch::pod_name(&opts, &manifest)?.to_string();
    if mode == StartMode::Fresh && session_exists(&places, &name) && opts.name.is_some() {
        // Only an explicit name can collide; a default name is fresh each time.
        let loc = PodLocation::of(&places, &name);
        if !loc.is_alive() {
            bail!(
                "pod `{name}` has a stopped session in {}: `pod restore {name}` continues it, `pod rm {name}` deletes it, or choose another --name",
                places.session_dir(&name).display()
            );
        }
    }
    if mode == StartMode::Restore && !session_exists(&places, &name) {
        bail!(
            "pod `{name}` has no session to restore in {}",
            places.session_dir(&name).display()
        );
    }
    let client = launch::client_for(&manifest.model, &process_var)?;
    if mode == StartMode::Fresh {
        std::fs::create_dir_all(places.session_dir(&name))
            .with_context(|| format!("cannot create {}", places.session_dir(&name).display()))?;
        let stored = serde_json::to_vec_pretty(&StoredLaunch::of(&opts))?;
        crate::state::write_atomically(&launch_file(&places, &name), &stored)
            .context("cannot record the launch options")?;
    }
    // Session logs hold every pod's conversation, whatever was pasted into it: no
    // agent reads them directly (a parent reads its children with ReadPodOutput).
    let state = manifest::SourcedRule {
        rule: manifest::ScopeRule::recursive(&places.state, manifest::Permission::Read),
        origin: manifest::Origin::BuiltIn,
    };
    if !manifest.scope.deny_rules().any(|r| *r == state.rule) {
        manifest.scope.deny.push(state);
    }
    let scope = manifest::Scope::from_config(&manifest.scope)?;
    let toolset =
        crate::toolset::builtin(&places, &name, &opts.cwd, scope, &manifest, current_uid())?;
    let spec = PodSpec {
        name,
        places,
        cwd: opts.cwd.clone(),
        manifest,
        client,
        tools: toolset.tools,
        live_scope: toolset.scope,
        gate: toolset.gate,
        child,
        inherited: (mode == StartMode::Child).then_some(server::Inherited {
            lock_fd: crate::spawn::process::CHILD_LOCK_FD,
            listen_fd: crate::spawn::process::CHILD_LISTEN_FD,
        }),
        continue_pending: mode == StartMode::Child,
        limits: crate::spawn::tool::SpawnLimits::default(),
        sandbox_level: toolset.level,
        uid: current_uid(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(server::serve(spec, |ready| print_ready(ready, json)))?;
    Ok(0)
}

fn print_ready(ready: &Ready, json: bool) {
    let mut out = std::io::stdout();
    let _ = if json {
        serde_json::to_writer(&mut out, ready)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        writeln!(out, "{}\t{}", ready.name, ready.socket.display())
    };
    let _ = out.flush();
}

/// The arguments that start the same pod in the foreground.
fn foreground_args(opts: &LaunchOptions, name: &str, restoring: bool) -> Vec<String> {
    let mut args = vec![
        if restoring {
            "__restore-foreground"
        } else {
            "start"
        }
        .to_string(),
        "--name".into(),
        name.into(),
        "--cwd".into(),
        opts.cwd.display().to_string(),
    ];
    if !restoring {
        args.push("--foreground".into());
    }
    if let Some(m) = &opts.manifest {
        args.extend(["--manifest".into(), m.display().to_string()]);
    }
    for s in &opts.scope {
        args.extend(["--scope".into(), s.display().to_string()]);
    }
    if let Some(o) = &opts.overlay {
        args.extend(["--overlay".into(), o.clone()]);
    }
    if opts.no_sandbox {
        args.push("--no-sandbox".into());
    }
    args
}

/// `pod start` (detached): starts the pod as its own session, logging to
/// `pod.log`, and returns once its socket serves.
pub fn start_detached(opts: &LaunchOptions, restoring: bool) -> anyhow::Result<Ready> {
    let places = places()?;
    // Resolve the name (and fail on configuration errors) here, where the user sees them.
    let manifest = launch::load_manifest(opts, manifest::Env::from_process(), &process_var)?;
    launch::client_for(&manifest.model, &process_var)?;
    let name = launch::pod_name(opts, &manifest)?.to_string();
    let loc = PodLocation::of(&places, &name);
    if loc.is_alive() {
        bail!("pod `{name}` is already running; `pod attach {name}` or `pod stop {name}`");
    }
    if !restoring && session_exists(&places, &name) {
        bail!(
            "pod `{name}` has a stopped session in {}: `pod restore {name}` continues it, \
             `pod rm {name}` deletes it, or choose another --name",
            places.session_dir(&name).display()
        );
    }
    ensure_private_dir(&places.runtime, current_uid())?;
    ensure_private_dir(&loc.dir, current_uid())?;
    let log_path = loc.dir.join("pod.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    // The log keeps earlier runs: a failure shows only what this start wrote.
    let log_start = log.metadata().map_or(0, |m| m.len());
    let exe = std::env::current_exe().context("cannot find the pod binary")?;
    let mut command = ProcessCommand::new(exe);
    command
        .args(foreground_args(opts, &name, restoring))
        .current_dir(&opts.cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and allocates nothing; this process
    // is single-threaded here (no runtime has started), so the fork is plain.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().context("cannot start the pod process")?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the pod exited before serving ({status}); its log {} says:\n{}",
                log_path.display(),
                tail_since(&log_path, log_start, 20)
            );
        }
        if serves(&loc.socket) {
            let instance_id = read_status(&loc.dir)
                .map(|s| s.instance_id)
                .unwrap_or_default();
            return Ok(Ready {
                name,
                socket: loc.socket,
                pid: child.id(),
                instance_id,
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "the pod did not serve within {} s; see {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether a pod answers `hello` on `socket`.
fn serves(socket: &Path) -> bool {
    let Ok(stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.contains("\"hello\"")
}

/// The last `lines` lines of `path` written after byte `start`.
fn tail_since(path: &Path, start: u64, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path)
        && file.seek(SeekFrom::Start(start)).is_ok()
    {
        let _ = file.read_to_end(&mut text);
    }
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn read_status(dir: &Path) -> Option<StatusRecord> {
    let bytes = std::fs::read(dir.join("status.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Prints a started pod as `NAME<TAB>SOCKET` or JSON.
pub fn report_started(ready: &Ready, json: bool) -> anyhow::Result<u8> {
    print_ready(ready, json);
    Ok(0)
}

/// `pod restore N`: starts a stopped pod from its session (resuming a cut
/// invocation) and prints it like `pod start`.
pub fn restore(name: &str, json: bool) -> anyhow::Result<u8> {
    let places = places()?;
    if !session_exists(&places, name) {
        bail!(
            "pod `{name}` has no session in {}",
            places.session_dir(name).display()
        );
    }
    let stored: StoredLaunch = std::fs::read(launch_file(&places, name))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| anyhow!("the launch options of `{name}` are missing; start it again with `pod start --name {name}` after moving its session away"))?;
    let ready = start_detached(&stored.options(name), true)?;
    // A pod whose last invocation was cut comes back paused: continue it.
    let runtime = current_thread()?;
    runtime.block_on(async {
        let mut client = PodClient::connect(&ready.socket).await?;
        if client.status == PodStatus::Paused {
            client.command(&Method::Resume).await?;
        }
        anyhow::Ok(())
    })?;
    report_started(&ready, json)
}

fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Streams events of the invocation the sender's method started until it
/// ends; returns its result (`None` if the pod closed first).
async fn follow(
    client: &mut PodClient,
    first: Vec<Event>,
    json: bool,
    renderer: &mut Renderer,
    tree: Option<&TreeWatch>,
    mut interrupt: Option<&mut Signal>,
) -> anyhow::Result<Option<TurnResult>> {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let mut result = None;
    let mut cancelled = false;
    let mut own_idle = false;
    let mut quiet_ticks = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut first = first.into_iter();
    loop {
        let event = match first.next() {
            Some(event) => Some(event),
            None => tokio::select! {
                event = client.next_event() => event?,
                () = interrupted(&mut interrupt), if !cancelled => {
                    cancelled = true;
                    // Its own invocation over, the pod has nothing to cancel.
                    if result.is_none() {
                        client.send(&Method::Cancel).await?;
                    }
                    if let Some(tree) = tree {
                        tree.cancel_descendants().await;
                    }
                    if own_idle {
                        break;
                    }
                    continue;
                }
                _ = tick.tick(), if own_idle && tree.is_some() => {
                    // Done when the whole tree has stayed idle for two ticks
                    // (a child's report may wake the pod again meanwhile).
                    let idle = tree.is_some_and(TreeWatch::idle);
                    quiet_ticks = if idle { quiet_ticks + 1 } else { 0 };
                    if quiet_ticks >= 2 {
                        break;
                    }
                    continue;
                }
            },
        };
        let Some(event) = event else { break };
        if cancelled
            && matches!(
                event,
                Event::Error {
                    code: protocol::ErrorCode::NotRunning,
                    ..
                }
            )
        {
            // The invocation ended just before our cancel reached it.
            continue;
        }
        if json {
            serde_json::to_writer(&mut out, &event)?;
            writeln!(out)?;
        } else {
            renderer.event(&event, &mut out, &mut err)?;
        }
        match event {
            Event::TurnEnd { result: r, .. } => result = Some(r),
            Event::Status {
                status: PodStatus::Idle | PodStatus::Paused,
            } if result.is_some() => {
                if tree.is_none() || cancelled {
                    break;
                }
                own_idle = true;
            }
            Event::Status {
                status: PodStatus::Running,
            } => own_idle = false,
            Event::Shutdown => break,
            _ => {}
        }
    }
    Ok(result)
}

/// Resolves when `signal` arrives; never without one.
async fn interrupted(signal: &mut Option<&mut Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// A pod and its descendants, watched through their status files.
pub struct TreeWatch {
    places: Places,
    name: String,
}

impl TreeWatch {
    fn members(&self) -> Vec<PodRow> {
        let prefix = format!("{}.", self.name);
        list_pods(&self.places)
            .into_iter()
            .filter(|r| r.name == self.name || r.name.starts_with(&prefix))
            .collect()
    }

    /// Whether every live member is idle or paused.
    fn idle(&self) -> bool {
        // A child holds its lock (taken by its parent) before it has written
        // its first status: starting is not idle.
        let prefix = format!("{}.", self.name);
        let starting = std::fs::read_dir(&self.places.runtime)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let path = e.path();
                e.file_name().to_string_lossy().starts_with(&prefix)
                    && !path.join("status.json").exists()
                    && crate::ipc::listener::is_alive(&path)
            });
        !starting
            && self
                .members()
                .iter()
                .all(|r| !r.alive || r.status == "idle" || r.status == "paused")
    }

    /// Cancels whatever the descendants are running (best effort).
    async fn cancel_descendants(&self) {
        for r in self
            .members()
            .into_iter()
            .filter(|r| r.alive && r.name != self.name)
        {
            let loc = PodLocation::of(&self.places, &r.name);
            let _ = crate::spawn::comm_tools::connect_and_send(&loc.socket, &Method::Cancel).await;
        }
    }
}

fn exit_for(result: Option<TurnResult>) -> u8 {
    match result {
        Some(TurnResult::Finished | TurnResult::Paused | TurnResult::LimitReached) => 0,
        _ => EXIT_INVOCATION,
    }
}

/// `pod run "task"`: starts a pod, runs the task, streams it, then stops the
/// pod unless `keep`.
pub fn run(opts: &LaunchOptions, task: &str, keep: bool, json: bool) -> anyhow::Result<u8> {
    let runtime = current_thread()?;
    // Handled before the pod is started: a Ctrl-C at any moment from here on is
    // remembered (not fatal) and seen at the next await, so the pod is stopped.
    // The process stays single-threaded while `start_detached` forks.
    let mut interrupt = {
        let _entered = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?
    };
    let ready = start_detached(opts, false)?;
    eprintln!("pod {}: started", ready.name);
    // `None`: interrupted before the task was sent.
    let outcome = runtime.block_on(async {
        let sent = async {
            let mut client = PodClient::connect(&ready.socket).await?;
            let input = vec![Segment::text(task)];
            let (_, first) = client.request(&Method::Run { input }).await?;
            anyhow::Ok((client, first))
        };
        let (mut client, first) = tokio::select! {
            biased;
            _ = interrupt.recv() => return anyhow::Ok(None),
            sent = sent => sent?,
        };
        let mut renderer = Renderer::new();
        let tree = TreeWatch {
            places: places()?,
            name: ready.name.clone(),
        };
        let result = follow(
            &mut client,
            first,
            json,
            &mut renderer,
            Some(&tree),
            Some(&mut interrupt),
        )
        .await?;
        if !json {
            renderer.finish(&mut std::io::stdout())?;
        }
        anyhow::Ok(Some(result))
    });
    if matches!(outcome, Ok(None)) {
        // Cancelled before it began: nothing of the pod is worth keeping.
        stop_tree_quietly(&ready.name)?;
        eprintln!("cancelled; pod `{}` stopped", ready.name);
        return Ok(EXIT_INVOCATION);
    }
    let stopped = if keep {
        Ok(())
    } else {
        stop_tree_quietly(&ready.name)
    };
    let result = outcome?.flatten();
    stopped?;
    if keep && !json {
        eprintln!(
            "pod `{}` keeps running: `pod attach {}`, `pod stop {}`",
            ready.name, ready.name, ready.name
        );
    }
    Ok(exit_for(result))
}

/// `pod send N "message"`: a `run` when the pod is idle, else a `notify`
/// (delivered in its next LLM request); returns on `ack`, or with `wait`
/// streams until the pod is idle.
pub fn send(name: &str, message: &str, wait: bool, json: bool) -> anyhow::Result<u8> {
    let loc = PodLocation::of(&places()?, name);
    let runtime = current_thread()?;
    runtime.block_on(async {
        let mut client = PodClient::connect_to(&loc).await?;
        let run = Method::Run {
            input: vec![Segment::text(message)],
        };
        // Busy: sent as a notification instead.
        let mut busy = false;
        let (seq, first) = match client.request(&run).await {
            Ok(answer) => answer,
            Err(crate::client::ClientError::Refused {
                code: protocol::ErrorCode::AlreadyRunning,
                ..
            }) => {
                let notify = Method::Notify {
                    message: message.to_string(),
                };
                busy = true;
                client.request(&notify).await?
            }
            Err(e) => return Err(e.into()),
        };
        if !wait {
            if json {
                println!("{}", serde_json::json!({"seq": seq, "notified": busy}));
            } else if busy {
                println!("notified {name} (busy; seq {seq})");
            } else {
                println!("sent to {name} (seq {seq})");
            }
            return Ok(0);
        }
        if busy && !json {
            eprintln!("`{name}` is busy: the message joins its next LLM request");
        }
        let mut renderer = Renderer::new();
        let result = follow(&mut client, first, json, &mut renderer, None, None).await?;
        if !json {
            renderer.finish(&mut std::io::stdout())?;
        }
        Ok(exit_for(result))
    })
}

/// Asks pod `name` to shut down and waits up to `timeout` for it to exit
/// (then signals it); a pod stops its own children before it exits.
fn stop_pod_within(name: &str, timeout: Duration) -> anyhow::Result<bool> {
    let places = places()?;
    let loc = PodLocation::of(&places, name);
    if !loc.is_alive() {
        return Ok(false);
    }
    let runtime = current_thread()?;
    let asked = runtime.block_on(async {
        let mut client = PodClient::connect_to(&loc).await?;
        client.send(&Method::Shutdown).await?;
        // Drain until the pod closes the connection.
        let _ = tokio::time::timeout(timeout, async {
            while let Ok(Some(_)) = client.next_event().await {}
        })
        .await;
        anyhow::Ok(())
    });
    let deadline = Instant::now() + timeout;
    while loc.is_alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if loc.is_alive() {
        let pid = read_status(&loc.dir).map(|s| s.pid);
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: plain kill(2) on the pid the pod recorded.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        bail!(
            "pod `{name}` did not exit within {} s and was killed ({})",
            timeout.as_secs(),
            asked.err().map_or_else(String::new, |e| e.to_string())
        );
    }
    Ok(true)
}

/// `pod stop N` (`--tree` is the same): stops N and its whole subtree, printing
/// each pod that stopped, leaves first.
pub fn stop(name: &str, json: bool) -> anyhow::Result<u8> {
    let (stopped, failures) = stop_subtree(name)?;
    if json {
        println!("{}", serde_json::json!({ "stopped": stopped }));
    } else {
        for pod in &stopped {
            println!("stopped {pod}");
        }
    }
    if !failures.is_empty() {
        bail!("some pods could not be stopped:\n{}", failures.join("\n"));
    }
    if stopped.is_empty() {
        bail!("no pod named `{name}` is running; `pod ls` lists the pods");
    }
    Ok(0)
}

/// One row of `pod ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodRow {
    /// Full name.
    pub name: String,
    /// Depth in the tree (0 for a top-level pod).
    pub depth: usize,
    /// Whether it is alive.
    pub alive: bool,
    /// Its recorded status (`stopped` when not alive).
    pub status: String,
    /// Process id (of the last run).
    pub pid: u32,
    /// Model.
    pub model: String,
    /// Parent instance id.
    pub parent: Option<String>,
    /// Its write scope (and what it delegated away), from its status file.
    pub scope: String,
    /// Seconds since it started (0 when stopped).
    pub uptime_s: u64,
    /// When it stopped (Unix milliseconds; `None` while it runs): its last
    /// sign of life, the later of its last status and its last log write.
    pub stopped_at_ms: Option<u64>,
    /// Tokens used (input incl. cache, plus output).
    pub tokens: u64,
    /// Tokens of it and all its descendants.
    pub subtree_tokens: u64,
    /// Its instance id (what a child's `parent` refers to).
    pub instance_id: String,
    /// Its parent's full name (`parent` is the parent's instance id).
    pub parent_name: Option<String>,
}

/// The write part of a scope summary (`write:` and `delegated:` rules).
fn write_scope(summary: &str) -> String {
    let parts: Vec<&str> = summary
        .split(", ")
        .filter(|p| p.starts_with("write:") || p.starts_with("delegated:"))
        .collect();
    if parts.is_empty() {
        "(read-only)".into()
    } else {
        parts.join(", ")
    }
}

/// Unix milliseconds of a file's last change (0 if unknown).
fn modified_ms(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// When a stopped pod stopped, as well as the files tell: a clean exit
/// rewrites `status.json` last; a killed pod's last sign of life is the later
/// of that and its session log's last write.
fn stopped_at_ms(places: &Places, name: &str, runtime_dir: &Path) -> u64 {
    let log = std::fs::read_dir(places.session_dir(name))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| modified_ms(&p))
        .max()
        .unwrap_or(0);
    log.max(modified_ms(&runtime_dir.join("status.json")))
}

/// How long ago, in one unit (`42s`, `5m`, `3h`, `2d`).
fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The pods with a runtime dir, from their status files (no socket round
/// trips), in tree order: each pod followed by its descendants.
pub fn list_pods(places: &Places) -> Vec<PodRow> {
    let Ok(dir) = std::fs::read_dir(&places.runtime) else {
        return Vec::new();
    };
    let now = crate::state::now_ms();
    // Write scopes as the registry has them now (delegations change them);
    // the file is replaced atomically, so reading it without the lock is safe.
    let registry_path = crate::runtime::pod_registry::registry_path_in(&places.runtime);
    let scopes: std::collections::HashMap<String, String> = std::fs::read(&registry_path)
        .ok()
        .and_then(|b| crate::runtime::pod_registry::Registry::from_json(&b, &registry_path).ok())
        .map(|r| {
            r.pods
                .iter()
                .map(|p| {
                    let mut parts: Vec<String> =
                        p.write_rules.iter().map(ToString::to_string).collect();
                    parts.extend(
                        p.delegated
                            .iter()
                            .map(|d| format!("delegated:{}", d.display())),
                    );
                    (p.full_name.clone(), parts.join(", "))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut rows: Vec<PodRow> = dir
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let record = read_status(&path)?;
            let alive = crate::ipc::listener::is_alive(&path);
            let u = record.usage;
            let tokens =
                u.input_tokens + u.cache_read_tokens + u.cache_write_tokens + u.output_tokens;
            let stopped_at_ms = (!alive).then(|| stopped_at_ms(places, &record.name, &path));
            let scope = scopes
                .get(&record.name)
                .filter(|s| !s.is_empty())
                .cloned()
                .unwrap_or_else(|| write_scope(&record.scope));
            Some(PodRow {
                depth: record.name.matches('.').count(),
                parent_name: parent_name(&record.name).map(str::to_string),
                name: record.name,
                alive,
                status: if alive {
                    format!("{:?}", record.status).to_lowercase()
                } else {
                    "stopped".into()
                },
                pid: record.pid,
                model: record.model,
                parent: record.parent,
                scope,
                uptime_s: if alive {
                    now.saturating_sub(record.started_ms) / 1000
                } else {
                    0
                },
                stopped_at_ms,
                tokens,
                subtree_tokens: tokens,
                instance_id: record.instance_id,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.name.split('.').cmp(b.name.split('.')));
    let totals: Vec<u64> = rows
        .iter()
        .map(|r| {
            let prefix = format!("{}.", r.name);
            rows.iter()
                .filter(|o| o.name == r.name || o.name.starts_with(&prefix))
                .map(|o| o.tokens)
                .sum()
        })
        .collect();
    for (row, total) in rows.iter_mut().zip(totals) {
        row.subtree_tokens = total;
    }
    rows
}

/// How long `pod ls` keeps showing a stopped pod (`--all` shows them all).
const LS_STOPPED_FOR_MS: u64 = 24 * 3600 * 1000;

/// `pod ls` (`tree`: with scopes and per-subtree token totals): running
/// pods and those stopped in the last 24 h (`all`: every pod).
pub fn ls(json: bool, tree: bool, all: bool) -> anyhow::Result<u8> {
    let now = crate::state::now_ms();
    let (rows, hidden): (Vec<PodRow>, Vec<PodRow>) =
        list_pods(&places()?).into_iter().partition(|r| {
            all || r
                .stopped_at_ms
                .is_none_or(|at| now.saturating_sub(at) < LS_STOPPED_FOR_MS)
        });
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let older = if hidden.is_empty() {
        String::new()
    } else {
        format!(
            "{} pod(s) stopped more than 24 h ago: `pod ls --all` lists them, `pod rm --stopped` deletes every stopped session",
            hidden.len()
        )
    };
    if rows.is_empty() {
        println!("no pods; `pod start` starts one");
        if !older.is_empty() {
            println!("{older}");
        }
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    if tree {
        writeln!(
            out,
            "{:<32} {:>8} {:<8} {:>10} {:>10}  SCOPE",
            "NAME", "PID", "STATUS", "TOKENS", "SUBTREE"
        )?;
    } else {
        writeln!(
            out,
            "{:<32} {:>8} {:<8} {:<24} {:>8} {:>10}  STOPPED",
            "NAME", "PID", "STATUS", "MODEL", "UPTIME", "TOKENS"
        )?;
    }
    for r in rows {
        let pid = if r.alive {
            r.pid.to_string()
        } else {
            "-".into()
        };
        let short = r.name.rsplit('.').next().unwrap_or(&r.name);
        let name = format!(
            "{}{}",
            "  ".repeat(r.depth),
            if r.depth > 0 { short } else { &r.name }
        );
        if tree {
            writeln!(
                out,
                "{name:<32} {pid:>8} {:<8} {:>10} {:>10}  {}",
                r.status, r.tokens, r.subtree_tokens, r.scope
            )?;
        } else {
            let (uptime, stopped) = match r.stopped_at_ms {
                None => (format!("{}s", r.uptime_s), String::new()),
                Some(at) => (
                    "-".to_string(),
                    format!("{} ago", ago(now.saturating_sub(at))),
                ),
            };
            writeln!(
                out,
                "{name:<32} {pid:>8} {:<8} {:<24} {uptime:>8} {:>10}  {stopped}",
                r.status, r.model, r.tokens
            )?;
        }
    }
    if !older.is_empty() {
        writeln!(out, "{older}")?;
    }
    Ok(0)
}

/// Whether `name` is a full pod name (dot-separated valid parts), so that it
/// names a directory under the state and runtime dirs and nothing else.
fn is_pod_name(name: &str) -> bool {
    name.split('.')
        .all(|part| manifest::manifest::PodName::new(part).is_ok())
}

/// The pods with a session dir or a runtime dir (a directory holding pod files).
fn known_pods(places: &Places) -> Vec<String> {
    let sessions = std::fs::read_dir(places.state.join("sessions"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir());
    let runtime = std::fs::read_dir(&places.runtime)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let dir = e.path();
            ["status.json", "lock", "pod.log"]
                .iter()
                .any(|f| dir.join(f).exists())
        });
    let mut names: Vec<String> = sessions
        .chain(runtime)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| is_pod_name(n))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `pod rm NAME…` / `pod rm --stopped`: deletes stopped pods' sessions and
/// runtime leftovers (NAME's descendants' too), after a confirmation on the
/// terminal unless `yes`; refuses running pods.
pub fn rm(names: &[String], stopped: bool, yes: bool, json: bool) -> anyhow::Result<u8> {
    let places = places()?;
    let known = known_pods(&places);
    let alive = |n: &str| PodLocation::of(&places, n).is_alive();
    let mut targets: Vec<String> = Vec::new();
    if stopped {
        targets.extend(known.iter().filter(|n| !alive(n)).cloned());
    }
    for name in names {
        if !is_pod_name(name) {
            bail!(
                "`{name}` is not a pod name (parts of [a-z0-9][a-z0-9_-]{{0,31}} joined by dots); `pod ls --all` lists the pods"
            );
        }
        let prefix = format!("{name}.");
        let mine: Vec<&String> = known
            .iter()
            .filter(|n| *n == name || n.starts_with(&prefix))
            .collect();
        if !mine.contains(&name) {
            bail!(
                "no pod named `{name}`: no session in {} and no runtime dir; `pod ls --all` lists the pods",
                places.session_dir(name).display()
            );
        }
        let running: Vec<&str> = mine
            .iter()
            .filter(|n| alive(n))
            .map(|n| n.as_str())
            .collect();
        if !running.is_empty() {
            bail!(
                "pod `{}` is running; `pod stop {name}` first (nothing was removed)",
                running.join("`, `")
            );
        }
        targets.extend(mine.into_iter().cloned());
    }
    targets.sort();
    targets.dedup();
    if targets.is_empty() {
        if json {
            println!("{}", serde_json::json!({ "removed": [] }));
        } else {
            println!("no stopped pods to remove");
        }
        return Ok(0);
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "not removing {} without a confirmation, and stdin is not a terminal to ask on; pass --yes to remove them",
                targets.join(", ")
            );
        }
        eprint!(
            "remove {} stopped pod(s) and their sessions for good: {}? [y/N] ",
            targets.len(),
            targets.join(", ")
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("nothing removed");
            return Ok(1);
        }
    }
    let mut removed = Vec::new();
    let mut failures = Vec::new();
    for name in &targets {
        // It may have been restored since the check.
        if alive(name) {
            failures.push(format!("{name}: it is running again"));
            continue;
        }
        let loc = PodLocation::of(&places, name);
        let mut result = Ok(());
        for dir in [places.session_dir(name), loc.dir.clone()] {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => result = Err(format!("{name}: cannot remove {}: {e}", dir.display())),
            }
        }
        // A long path puts the socket outside the pod's dir.
        if !loc.socket.starts_with(&loc.dir) {
            let _ = std::fs::remove_file(&loc.socket);
        }
        match result {
            Ok(()) => removed.push(name.clone()),
            Err(e) => failures.push(e),
        }
    }
    if json {
        println!("{}", serde_json::json!({ "removed": removed }));
    } else {
        for name in &removed {
            println!("removed {name}");
        }
    }
    if !failures.is_empty() {
        bail!("some pods were not removed:\n{}", failures.join("\n"));
    }
    Ok(0)
}

/// Stops a pod's whole tree without printing.
fn stop_tree_quietly(name: &str) -> anyhow::Result<()> {
    let (_, failures) = stop_subtree(name)?;
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("some pods could not be stopped:\n{}", failures.join("\n"))
    }
}

/// `pod stop --tree N`: the same as `pod stop N`.
pub fn stop_tree(name: &str, json: bool) -> anyhow::Result<u8> {
    stop(name, json)
}

/// The parent of a pod, by name (`a.b` for `a.b.c`).
fn parent_name(name: &str) -> Option<&str> {
    name.rsplit_once('.').map(|(parent, _)| parent)
}

/// Pod `name` and its descendants, leaves first: those the registry links
/// to it (grandchildren of a dead middle pod included) and every runtime dir
/// named `name.*` (a child's name extends its parent's).
fn subtree(places: &Places, name: &str) -> Vec<String> {
    let mut members = vec![name.to_string()];
    let path = crate::runtime::pod_registry::registry_path_in(&places.runtime);
    match crate::runtime::pod_registry::LockFileGuard::open(&path).and_then(|g| g.load()) {
        Ok(registry) => {
            let mut ids: Vec<String> = registry
                .pods
                .iter()
                .filter(|p| p.full_name == name)
                .map(|p| p.instance_id.clone())
                .collect();
            let mut i = 0;
            while i < ids.len() {
                let parent = ids[i].clone();
                for pod in registry
                    .pods
                    .iter()
                    .filter(|p| p.parent_instance_id.as_deref() == Some(parent.as_str()))
                {
                    ids.push(pod.instance_id.clone());
                    members.push(pod.full_name.clone());
                }
                i += 1;
            }
        }
        Err(e) => eprintln!(
            "warning: cannot read the scope registry ({e}); stopping `{name}` and the pods named `{name}.*`"
        ),
    }
    let prefix = format!("{name}.");
    if let Ok(dir) = std::fs::read_dir(&places.runtime) {
        members.extend(
            dir.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.starts_with(&prefix)),
        );
    }
    members.sort_by(|a, b| {
        let depth = |n: &str| n.matches('.').count();
        depth(b).cmp(&depth(a)).then_with(|| a.cmp(b))
    });
    members.dedup();
    members
}

/// Stops pod `name` and its subtree: `shutdown` to `name` only (a pod stops
/// its own children first, leaves first, before it exits), then whatever of
/// the subtree is still alive, each pod only once its parent is gone (a live
/// parent told that its child shut down would start a model turn). Returns
/// the pods that stopped, leaves first, and the failures.
fn stop_subtree(name: &str) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let places = places()?;
    let members = subtree(&places, name);
    let alive = |n: &str| PodLocation::of(&places, n).is_alive();
    let was_alive: Vec<&String> = members.iter().filter(|m| alive(m)).collect();
    let within = |n: &str| {
        let prefix = format!("{n}.");
        let size = members
            .iter()
            .filter(|m| *m == n || m.starts_with(&prefix))
            .count();
        STOP_TIMEOUT.saturating_mul(u32::try_from(size).unwrap_or(u32::MAX))
    };
    let mut failures = Vec::new();
    let mut asked = std::collections::HashSet::new();
    let mut next = vec![name.to_string()];
    // Each round stops the topmost survivors; their children go in a later
    // round. Every pod is asked once, so this ends.
    while !next.is_empty() {
        for pod in next {
            if let Err(e) = stop_pod_within(&pod, within(&pod)) {
                failures.push(format!("{pod}: {e:#}"));
            }
            asked.insert(pod);
        }
        next = members
            .iter()
            .filter(|m| !asked.contains(*m) && alive(m))
            .filter(|m| parent_name(m).is_none_or(|p| !alive(p)))
            .cloned()
            .collect();
    }
    let stopped = was_alive
        .into_iter()
        .filter(|m| !alive(m))
        .cloned()
        .collect();
    Ok((stopped, failures))
}

/// `pod attach N`: the session so far, then live events; each line typed is a
/// `run` (or a notification while the pod is busy). Ctrl-C or end of input
/// detaches; the pod keeps running.
pub fn attach(name: &str, json: bool) -> anyhow::Result<u8> {
    let loc = PodLocation::of(&places()?, name);
    let runtime = current_thread()?;
    runtime.block_on(async {
        // Before anything is shown: a Ctrl-C from then on detaches cleanly.
        let mut ctrl_c = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut client = PodClient::connect_to(&loc).await?;
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        for value in &client.entries {
            if json {
                writeln!(out, "{value}")?;
            } else if let Ok(entry) = serde_json::from_value::<session_store::LogEntry>(value.clone()) {
                crate::transcript::write_entry(&mut out, &entry)?;
            }
        }
        if !json {
            writeln!(
                err,
                "attached to `{name}` ({:?}); type a message and Enter to send it, Ctrl-C to detach",
                client.status
            )?;
        }
        let mut renderer = Renderer::new();
        // Typed at a terminal, end of input (Ctrl-D) means "detach now"; piped,
        // it means "that was all": stream what the lines started until idle.
        let interactive = std::io::stdin().is_terminal();
        let mut input = stdin_lines();
        let mut input_open = true;
        let mut sent = 0usize;
        loop {
            tokio::select! {
                _ = ctrl_c.recv() => break,
                line = input.recv(), if input_open => match line.transpose()? {
                    Some(line) if line.trim().is_empty() => {}
                    Some(line) => {
                        let busy = matches!(client.status, PodStatus::Running);
                        let method = if busy {
                            Method::Notify { message: line }
                        } else {
                            Method::Run { input: vec![Segment::text(line)] }
                        };
                        client.send(&method).await?;
                        sent += 1;
                    }
                    None => {
                        input_open = false;
                        if sent == 0 || interactive {
                            break;
                        }
                    }
                },
                event = client.next_event() => {
                    let Some(event) = event? else {
                        writeln!(err, "the pod closed the connection")?;
                        break;
                    };
                    if let Event::Status { status } = &event {
                        client.status = *status;
                    }
                    if let Event::Error { code: protocol::ErrorCode::AlreadyRunning, .. } = &event {
                        writeln!(err, "(busy: send again to add it to the running turn as a notification)")?;
                    }
                    if json {
                        serde_json::to_writer(&mut out, &event)?;
                        writeln!(out)?;
                    } else {
                        renderer.event(&event, &mut out, &mut err)?;
                    }
                    if !input_open && matches!(event, Event::Status { status: PodStatus::Idle }) {
                        break;
                    }
                    if matches!(event, Event::Shutdown) {
                        break;
                    }
                }
            }
        }
        if !json && loc.is_alive() {
            writeln!(err, "detached from `{name}`; it keeps running")?;
        }
        anyhow::Ok(0)
    })
}

/// Lines of stdin, read on a thread of their own: a read blocked on a
/// terminal cannot be cancelled, and a runtime's blocking pool would wait for
/// it at shutdown (Ctrl-C would detach only once Enter was pressed). A plain
/// thread does not keep the process alive; `None` ends the input.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let failed = line.is_err();
                if tx.blocking_send(line).is_err() || failed {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        // Without the thread there is no input: report it as the first line's error.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.try_send(Err(e));
        return rx;
    }
    rx
}

/// `pod logs N`: the session as a readable transcript (read-only; works while
/// the pod runs); `full` shows tool outputs whole.
pub fn logs(name: &str, json: bool, full: bool) -> anyhow::Result<u8> {
    let places = places()?;
    let dir = places.session_dir(name);
    if !session_exists(&places, name) {
        bail!("pod `{name}` has no session in {}", dir.display());
    }
    let log = session_store::SessionReader::new(&dir).read_all()?;
    let mut out = std::io::stdout().lock();
    for (line, entry) in log
        .segments
        .iter()
        .flat_map(|s| s.lines.iter().zip(&s.entries))
    {
        if json {
            writeln!(out, "{}", line.as_str())?;
        } else {
            crate::transcript::write_entry_full(&mut out, entry, full)?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod error_text_tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let read = manifest::ManifestError::Read {
            path: "/m.toml".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let e = anyhow::Error::new(read);
        assert_eq!(e.chain().count(), 2);
        assert_eq!(
            error_text(&e),
            "cannot read manifest /m.toml: entity not found; fix its permissions or remove it"
        );
        // A context that does not say the cause still gets it.
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound))
            .context("cannot open /x");
        assert_eq!(error_text(&e), "cannot open /x: entity not found");
    }
}
