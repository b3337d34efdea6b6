//! The UI's side of the pods: one connection per pod viewed (kept while the
//! UI runs, so switching back is instant), the session log of a stopped pod,
//! and starting, restoring and stopping pods through the `pod` command and the
//! client library. Nothing here reaches into a pod process's internals.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use pod_client::client::PodLocation;
use pod_client::snapshot::{Greeted, connect_streaming};
use pod_runtime::dir::Places;
use protocol::{Event, Method};
use tokio::sync::mpsc;

use crate::conversation::Conversation;

/// Events queued from all pods to the UI. Bounded: when the UI falls behind,
/// the readers wait, the socket fills, and the pod marks this client lagging
/// and later replays committed entries; the pod itself never waits for us.
pub(crate) const QUEUE: usize = 4096;

/// Why the UI could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UiError {
    /// The pod has no open connection.
    #[error("{0} is not connected (stopped or restarting); try again in a moment")]
    NotConnected(String),
}

/// What the network side tells the UI.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A connection opened: the conversation built from its snapshot, and
    /// the greeting, status and replayed alerts.
    Connected(String, Box<Conversation>, Greeted),
    /// A live event.
    Event(String, Event),
    /// The connection closed (the pod stopped or restarts).
    Closed(String),
    /// A connection could not be opened.
    Unreachable(String, String),
    /// A stopped pod's session log.
    Loaded(String, Vec<session_store::LogEntry>),
    /// A stopped pod's session log could not be read.
    LoadFailed(String, String),
    /// A pod was started (its full name).
    Started(String),
    /// A command (start, restore, stop, send) finished: what to tell the person.
    Done(String),
    /// A command failed: what to tell the person.
    Failed(String),
}

/// The open connections, by pod.
pub(crate) struct Links {
    places: Places,
    tx: mpsc::Sender<Msg>,
    senders: HashMap<String, mpsc::UnboundedSender<Method>>,
    /// Pods with a connection being opened or open.
    open: HashSet<String>,
    /// Stopped pods whose log was loaded.
    loaded: HashSet<String>,
}

impl Links {
    /// Links that report on `tx`.
    pub(crate) fn new(places: Places, tx: mpsc::Sender<Msg>) -> Links {
        Links {
            places,
            tx,
            senders: HashMap::new(),
            open: HashSet::new(),
            loaded: HashSet::new(),
        }
    }

    /// The directories pods live in.
    pub(crate) fn places(&self) -> &Places {
        &self.places
    }

    /// Makes sure pod `name` is being watched: a connection when it is alive,
    /// its session log when it is stopped.
    pub(crate) fn watch(&mut self, name: &str, alive: bool) {
        if alive {
            self.loaded.remove(name);
            if self.open.contains(name) {
                return;
            }
            self.open.insert(name.to_string());
            let (method_tx, method_rx) = mpsc::unbounded_channel();
            self.senders.insert(name.to_string(), method_tx);
            let location = PodLocation::of(&self.places, name);
            tokio::task::spawn_local(connection(
                name.to_string(),
                location.socket,
                self.tx.clone(),
                method_rx,
            ));
        } else if !self.open.contains(name) && !self.loaded.contains(name) {
            self.loaded.insert(name.to_string());
            let dir = self.places.session_dir(name);
            let tx = self.tx.clone();
            let name = name.to_string();
            tokio::task::spawn_local(async move {
                let read =
                    tokio::task::spawn_blocking(move || session_store::read_session(&dir)).await;
                let msg = match read {
                    Ok(Ok(log)) => Msg::Loaded(name, log.entries().cloned().collect()),
                    Ok(Err(e)) => Msg::LoadFailed(name, e.to_string()),
                    Err(e) => Msg::LoadFailed(name, e.to_string()),
                };
                let _sent = tx.send(msg).await;
            });
        }
    }

    /// The connection to `name` is gone: the next `watch` opens a new one.
    pub(crate) fn closed(&mut self, name: &str) {
        self.open.remove(name);
        self.senders.remove(name);
    }

    /// Sends `method` to `name` over its connection.
    pub(crate) fn send(&mut self, name: &str, method: Method) -> Result<(), UiError> {
        match self.senders.get(name) {
            Some(tx) if tx.send(method).is_ok() => Ok(()),
            _ => Err(UiError::NotConnected(name.to_string())),
        }
    }

    /// Stops `name` and its subtree (in the background).
    pub(crate) fn stop(&self, name: &str) {
        let tx = self.tx.clone();
        let name = name.to_string();
        tokio::task::spawn_local(async move {
            let n = name.clone();
            let done =
                tokio::task::spawn_blocking(move || pod_client::stop::stop_tree_quietly(&n)).await;
            let msg = match done {
                Ok(Ok(())) => Msg::Done(format!("stopped {name}")),
                Ok(Err(e)) => Msg::Failed(format!("cannot stop {name}: {e:#}")),
                Err(e) => Msg::Failed(format!("cannot stop {name}: {e}")),
            };
            let _sent = tx.send(msg).await;
        });
    }

    /// Runs `pod ARGS…` (start, restore) in the background and reports how it went.
    pub(crate) fn pod_command(&self, args: Vec<String>, what: String) {
        let tx = self.tx.clone();
        tokio::task::spawn_local(async move {
            let run_args = args.clone();
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(pod_binary())
                    .args(&run_args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .output()
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            let msg = match out {
                Ok(o) if o.status.success() && args.first().is_some_and(|a| a == "start") => {
                    // `pod start` prints NAME<TAB>SOCKET once the pod serves.
                    let stdout = String::from_utf8_lossy(&o.stdout);
                    let name = stdout.split('\t').next().unwrap_or("").trim().to_string();
                    Msg::Started(name)
                }
                Ok(o) if o.status.success() => Msg::Done(format!("{what}: done")),
                Ok(o) => {
                    let err = String::from_utf8_lossy(&o.stderr);
                    let last = err
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("");
                    Msg::Failed(format!("{what} failed: {last}"))
                }
                Err(e) => Msg::Failed(format!(
                    "{what} failed: cannot run {}: {e}",
                    pod_binary().display()
                )),
            };
            let _sent = tx.send(msg).await;
        });
    }
}

/// The `pod` command: `POD_BIN` when set (the `pod` that started this UI sets
/// it), else the `pod` next to this binary, else `pod` on the PATH.
pub(crate) fn pod_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("POD_BIN") {
        return PathBuf::from(bin);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("pod")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("pod"))
}

/// One pod's connection: forwards its events, sends the methods queued for it.
async fn connection(
    name: String,
    socket: PathBuf,
    tx: mpsc::Sender<Msg>,
    mut methods: mpsc::UnboundedReceiver<Method>,
) {
    // The conversation is built while the snapshot is decoded, entry by
    // entry, so a long one never exists as JSON values.
    let mut conv = Box::new(Conversation::new());
    let connected = connect_streaming(&socket, |entry| conv.apply_entry(&entry)).await;
    let (greeted, mut events, mut sender) = match connected {
        Ok(c) => c,
        Err(e) => {
            let _sent = tx.send(Msg::Unreachable(name, e.to_string())).await;
            return;
        }
    };
    if tx
        .send(Msg::Connected(name.clone(), conv, greeted))
        .await
        .is_err()
    {
        return;
    }
    // A person is looking: requests for approval from this pod's subtree come
    // here (and no longer go up past it).
    if let Err(e) = sender.send(&Method::WatchApprovals).await {
        let _sent = tx
            .send(Msg::Failed(format!("cannot send to {name}: {e}")))
            .await;
    }
    let writer_tx = tx.clone();
    let writer_name = name.clone();
    let writer = tokio::task::spawn_local(async move {
        while let Some(method) = methods.recv().await {
            if let Err(e) = sender.send(&method).await {
                let _sent = writer_tx
                    .send(Msg::Failed(format!("cannot send to {writer_name}: {e}")))
                    .await;
                return;
            }
        }
    });
    while let Ok(Some(event)) = events.next_event().await {
        if tx.send(Msg::Event(name.clone(), event)).await.is_err() {
            break;
        }
    }
    writer.abort();
    let _sent = tx.send(Msg::Closed(name)).await;
}

/// The project manifest pods started in `dir` would load, when it is not
/// trusted yet: its path and text.
pub(crate) fn untrusted_manifest(dir: &Path, env: &manifest::Env) -> Option<(PathBuf, String)> {
    let path = pod_runtime::trust::project_manifest(dir)?;
    let text = std::fs::read_to_string(&path).ok()?;
    let config = env.config_dir()?;
    let store = pod_runtime::trust::TrustStore::in_config_dir(&config);
    store.check(&path, &text).is_err().then_some((path, text))
}
