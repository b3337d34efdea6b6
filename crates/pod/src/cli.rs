//! What each `pod` command does. `main.rs` parses arguments and calls these;
//! they print results and return the process exit code. The commands that
//! start a pod process (`start`, `run`, `restore`, the internal foreground
//! modes) are here; those that only talk to pods (`send`, `attach`, `logs`,
//! `ls`, `stop`, `rm`) are `pod_client`'s, re-exported.
//!
//! Exit codes: 0 ok, 1 error, 2 usage error (clap), 3 the invocation failed or
//! was cancelled.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command as ProcessCommand, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use protocol::{Method, PodStatus, Segment};

use crate::client::{PodClient, PodLocation};
use crate::launch::{self, LaunchOptions, StoredLaunch, launch_file, process_var};
use crate::runtime::dir::{current_uid, ensure_private_dir};
use crate::server::{self, PodSpec, Ready};
use crate::state::StatusRecord;
use pod_client::render::Renderer;

pub use pod_client::cli::{
    EXIT_INVOCATION, TreeWatch, attach, compact, current_thread, error_text, exit_for, follow,
    logs, ls, places, rm, send,
};
pub use pod_client::pods::{PodRow, list_pods, session_exists};
pub use pod_client::stop::{stop, stop_tree, stop_tree_quietly};

/// How long `pod start` waits for a detached pod to serve.
const START_TIMEOUT: Duration = Duration::from_secs(20);

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
            opts.name.unwrap_or_default()
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
    let name = launch::pod_name(&opts, &manifest)?;
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
    // Recorded once the pod holds its lock: a `pod start` racing for the same
    // name must not overwrite the winner's options.
    let launch_record = match mode {
        StartMode::Fresh => Some(serde_json::to_vec_pretty(&StoredLaunch::of(&opts))?),
        _ => None,
    };
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
        cwd: opts.cwd,
        manifest,
        client,
        tools: toolset.tools,
        live_scope: toolset.scope,
        gate: toolset.gate,
        grounder: toolset.grounder,
        hook_env: toolset.hook_env,
        child,
        inherited: (mode == StartMode::Child).then_some(server::Inherited {
            lock_fd: crate::spawn::process::CHILD_LOCK_FD,
            listen_fd: crate::spawn::process::CHILD_LISTEN_FD,
        }),
        continue_pending: mode == StartMode::Child,
        limits: crate::spawn::tool::SpawnLimits::default(),
        sandbox_level: toolset.level,
        uid: current_uid(),
        log_level: crate::logging::level(std::env::var("POD_LOG").ok().as_deref())?,
        launch_record,
    };
    // One thread: every hop of a turn (connection → controller → invocation →
    // clients) is a task switch, not a cross-thread wake-up, and the pod's work
    // is I/O; tools and registry calls that block run on the blocking pool.
    // (benchmarks: invocation overhead and delta throughput both improved.)
    let runtime = tokio::runtime::Builder::new_current_thread()
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
    let name = launch::pod_name(opts, &manifest)?;
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
    sys::detach_from_session(&mut command);
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
        if let Some(server) = serves(&loc.socket) {
            if server != child.id() {
                // Another `pod start` of this name won the race: ours fails on
                // the name's lock; it is not the pod the user asked for.
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "pod `{name}` is already running (pid {server}, started at the same moment by another `pod start`); `pod attach {name}` or `pod stop {name}`"
                );
            }
            let instance_id = StatusRecord::read(&loc.dir)
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

/// The pid of the pod that answers `hello` on `socket`, if one does.
fn serves(socket: &Path) -> Option<u32> {
    let stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    let pid = sys::peer_pid(&stream).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let hello = BufReader::new(stream).read_line(&mut line).is_ok() && line.contains("\"hello\"");
    hello.then_some(pid)
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
        let tree = TreeWatch::new(places()?, &ready.name);
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
