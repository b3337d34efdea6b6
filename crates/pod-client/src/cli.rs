//! The client-side `pod` commands — `send`, `attach`, `logs`, `ls`, `rm` (and
//! `stop`, in [`crate::stop`]) — and what the pod-starting commands share with
//! them: following an invocation to its end, exit codes, one-line errors. Each
//! command prints its result and returns the process exit code.
//!
//! Exit codes: 0 ok, 1 error, 2 usage error (clap), 3 the invocation failed or
//! was cancelled.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::bail;
use pod_runtime::dir::{DirEnv, Places};
use protocol::{Event, Method, PodStatus, Segment, TurnResult};
use tokio::signal::unix::Signal;

use crate::client::{PodClient, PodLocation};
use crate::pods::{PodRow, ago, is_pod_name, list_pods, pods_on_disk, session_exists};
use crate::render::Renderer;

/// The invocation failed or was cancelled.
pub const EXIT_INVOCATION: u8 = 3;

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

/// A single-threaded runtime for one command's socket work.
pub fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Streams events of the invocation the sender's method started until it
/// ends (with `tree`, until the pod's whole tree is idle; `interrupt` cancels
/// it and the descendants' work); returns its result (`None` if the pod
/// closed first).
pub async fn follow(
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

/// How long cancelling one descendant may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// A pod and its descendants, watched through their status files.
pub struct TreeWatch {
    places: Places,
    name: String,
}

impl TreeWatch {
    /// Watches pod `name` and its descendants under `places`.
    pub fn new(places: Places, name: &str) -> TreeWatch {
        TreeWatch {
            places,
            name: name.to_string(),
        }
    }

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
                    && pod_runtime::liveness::is_alive(&path)
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
            let cancel = async {
                let mut client = PodClient::connect(&loc.socket).await?;
                client.send(&Method::Cancel).await
            };
            // A stuck descendant must not hold the others' cancel back.
            let _ = tokio::time::timeout(CANCEL_TIMEOUT, cancel).await;
        }
    }
}

/// The exit code for how an invocation ended (`None`: the pod closed first).
pub fn exit_for(result: Option<TurnResult>) -> u8 {
    match result {
        Some(TurnResult::Finished | TurnResult::Paused | TurnResult::LimitReached) => 0,
        _ => EXIT_INVOCATION,
    }
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

/// How long `pod ls` keeps showing a stopped pod (`--all` shows them all).
const LS_STOPPED_FOR_MS: u64 = 24 * 3600 * 1000;

/// `pod ls` (`tree`: with scopes and per-subtree token totals): running
/// pods and those stopped in the last 24 h (`all`: every pod).
pub fn ls(json: bool, tree: bool, all: bool) -> anyhow::Result<u8> {
    let now = sys::now_ms();
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
            "{:<32} {:>8} {:<8} {:<24} {:>8} {:>10} {:>4}  STOPPED",
            "NAME", "PID", "STATUS", "MODEL", "UPTIME", "TOKENS", "CTX"
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
            let ctx = r
                .context_percent()
                .map_or_else(|| "-".to_string(), |p| format!("{p}%"));
            writeln!(
                out,
                "{name:<32} {pid:>8} {:<8} {:<24} {uptime:>8} {:>10} {ctx:>4}  {stopped}",
                r.status, r.model, r.tokens
            )?;
        }
    }
    if !older.is_empty() {
        writeln!(out, "{older}")?;
    }
    Ok(0)
}

/// `pod compact NAME`: asks the pod to compact its context and waits until it
/// did (at once when idle; at the next step boundary while it runs), then
/// prints the tokens before and after.
pub fn compact(name: &str, json: bool) -> anyhow::Result<u8> {
    let loc = PodLocation::of(&places()?, name);
    let runtime = current_thread()?;
    runtime.block_on(async {
        let mut client = PodClient::connect_to(&loc).await?;
        client.send(&Method::Compact).await?;
        loop {
            match client.next_event().await? {
                Some(Event::CompactionEnd {
                    tokens_before,
                    tokens_after,
                }) => {
                    if json {
                        let out = serde_json::json!({"pod": name, "compacted": true,
                            "tokens_before": tokens_before, "tokens_after": tokens_after});
                        println!("{out}");
                    } else {
                        println!("compacted {name}: ≈ {tokens_before} → {tokens_after} tokens");
                    }
                    return Ok(0);
                }
                Some(Event::Error { message, .. }) => bail!("{name}: {message}"),
                Some(Event::Alert(alert)) if alert.message.contains("compacting the context failed") => {
                    bail!("{name}: {}", alert.message)
                }
                Some(Event::RunEnd { .. }) => {
                    if json {
                        println!("{}", serde_json::json!({"pod": name, "compacted": false}));
                    } else {
                        println!(
                            "{name}: nothing was compacted (an empty history, or the invocation ended before its next step; try again now that it is idle)"
                        );
                    }
                    return Ok(0);
                }
                Some(_) => {}
                None => bail!("{name} closed the connection before compacting"),
            }
        }
    })
}

/// `pod rm NAME…` / `pod rm --stopped`: deletes stopped pods' sessions and
/// runtime leftovers (NAME's descendants' too), after a confirmation on the
/// terminal unless `yes`; refuses running pods.
pub fn rm(names: &[String], stopped: bool, yes: bool, json: bool) -> anyhow::Result<u8> {
    let places = places()?;
    let known = pods_on_disk(&places);
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
        // A person is here: requests for approval from the whole subtree come to us.
        client.send(&Method::WatchApprovals).await?;
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
                "attached to `{name}` ({:?}); type a message and Enter to send it, /approve ID or /deny ID REASON to answer a request, Ctrl-C to detach",
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
                    Some(line) if line.trim_start().starts_with("/approve") || line.trim_start().starts_with("/deny") => {
                        match crate::approve::typed_answer(&line) {
                            Some(Ok(answer)) => client.send(&answer).await?,
                            Some(Err(usage)) => writeln!(err, "{usage}")?,
                            None => writeln!(err, "usage: /approve ID [--remember], /deny ID [REASON]")?,
                        }
                    }
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
