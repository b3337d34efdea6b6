//! The pod's committed state and its audience, behind one lock.
//!
//! [`PodState`] owns the session log writer and the client [`Hub`]. Every
//! change goes through it under a `std::sync::Mutex` (held for one write(2)
//! and a few `try_send`s, never across an await): append the entry to the log,
//! *then* offer its line to the clients (persist before broadcast). Because a
//! new client's snapshot is built and its subscription made under the same
//! lock, it sees every committed entry exactly once: in the snapshot or as a
//! live `entry` event.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use llm_types::{Item, Usage};
use protocol::{Alert, AlertLevel, AlertSource, Event, Greeting, PROTOCOL_VERSION, PodStatus};
use session_store::{EntryBody, LoggedItem, SessionWriter};

use crate::ipc::hub::{Hub, Lag, Line, Subscription};

/// Alerts kept for replay to new connections (the oldest go first).
const ALERTS_KEPT: usize = 32;

/// How often usage updates may rewrite `status.json` during an invocation.
const STATUS_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Entries a lagging client is sent per lock acquisition during replay.
const REPLAY_BATCH: usize = 512;

/// Why the state could not take a change.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The session log refused the entry (disk full, I/O error, poisoned writer).
    #[error("session log: {0}")]
    Log(#[from] session_store::Error),
    /// An event could not be serialised (a bug).
    #[error("cannot encode an event: {0}")]
    Encode(#[from] serde_json::Error),
    /// The worker is still in use by an invocation (a bug in the caller).
    #[error("the worker is busy with another invocation")]
    Busy,
}

/// The pod's state shared between the controller, the running invocation and
/// the connections.
pub(crate) type SharedState = Arc<Mutex<PodState>>;

/// Locks the state; a panic elsewhere while holding the lock does not make the
/// state unusable (every change is one log append plus queue offers).
pub(crate) fn lock(state: &SharedState) -> MutexGuard<'_, PodState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) use crate::runtime::status::StatusRecord;

/// One step of a lagging client's catch-up.
#[derive(Debug)]
pub(crate) enum ReplayStep {
    /// Write these `entry` lines, then ask again.
    Lines(Vec<Line>),
    /// Nothing left: the client is in step again; write this `status` line.
    CaughtUp(Line),
}

pub(crate) use sys::now_ms;

/// Serialises an event into a shareable line.
pub(crate) fn event_line(event: &Event) -> Result<Line, serde_json::Error> {
    serde_json::to_string(event).map(Line::from)
}

/// The committed state of one pod and the clients watching it.
#[derive(Debug)]
pub(crate) struct PodState {
    log: SessionWriter,
    hub: Hub,
    status: PodStatus,
    greeting: Greeting,
    hello: Line,
    alerts: VecDeque<Line>,
    /// The snapshot line of the current committed state, built on demand.
    snapshot: Option<Line>,
    /// Assistant text streamed since the last completed text block, for
    /// clients that attach mid-message.
    partial: String,
    /// Committed (queued) notifications not yet given to the model, with their
    /// seqs: a restored pod starts with those its log left queued.
    pending: Vec<(u64, Item)>,
    usage: Usage,
    record: Option<(PathBuf, StatusRecord)>,
    status_writer: Option<StatusWriter>,
    /// Connection writers still running (they outlive the client list at
    /// shutdown, while they flush the final lines).
    writers: usize,
    /// When `status.json` was last written.
    status_written: std::time::Instant,
    /// The user's hooks (connections check `run` inputs with them).
    hooks: Option<Arc<hooks::Hooks>>,
    /// Approvals (connections answer their methods).
    approvals: Option<Arc<crate::approvals::Approvals>>,
}

impl PodState {
    /// State over an opened session log.
    pub(crate) fn new(log: SessionWriter, greeting: Greeting) -> Result<Self, StateError> {
        let hello = event_line(&Event::Hello {
            protocol_version: PROTOCOL_VERSION,
            pod_name: greeting.pod_name.clone(),
        })?;
        let pending = log.queued().to_vec();
        Ok(PodState {
            log,
            hub: Hub::new(),
            status: PodStatus::Idle,
            greeting,
            hello,
            alerts: VecDeque::new(),
            snapshot: None,
            partial: String::new(),
            pending,
            usage: Usage::default(),
            record: None,
            status_writer: None,
            writers: 0,
            status_written: std::time::Instant::now(),
            hooks: None,
            approvals: None,
        })
    }

    /// Keeps `status.json` at `path` current from now on (written now).
    pub(crate) fn keep_status_file(&mut self, path: PathBuf, record: StatusRecord) {
        self.record = Some((path.clone(), record));
        // The first one is written before this returns (`pod ls` finds a pod
        // by its status file, and the pod may finish a turn within
        // milliseconds); later ones by a thread of their own.
        self.write_status_file();
        self.status_writer = StatusWriter::start(path);
    }

    /// Writes the last `status.json` and stops its writer (at exit).
    pub(crate) fn finish_status_file(&mut self) {
        self.write_status_file();
        if let Some(writer) = self.status_writer.take() {
            writer.finish();
        }
    }

    /// The session log writer (read access: history, lines).
    pub(crate) fn log(&self) -> &SessionWriter {
        &self.log
    }

    /// Replaces the pod's static facts (set once the tools exist, before the
    /// socket accepts anyone).
    pub(crate) fn set_greeting(&mut self, greeting: Greeting) {
        self.greeting = greeting;
        self.snapshot = None;
    }

    /// The pod's static facts, as sent in every snapshot.
    pub(crate) fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// Appends an entry to the log, then offers its `entry` line to the clients.
    /// Returns the entry's sequence number.
    pub(crate) fn commit(&mut self, body: EntryBody) -> Result<u64, StateError> {
        if let (EntryBody::TurnEnd { result, .. }, Some((_, record))) = (&body, &mut self.record) {
            // Written with the status change to idle that follows.
            record.last_result = Some(*result);
        }
        let committed = self.log.append(body)?;
        let line: Line = Line::from(protocol::raw::entry_line(&committed.line)?);
        self.snapshot = None;
        self.hub.entry(committed.seq, &line);
        Ok(committed.seq)
    }

    /// Starts a new log segment from `history` (a compaction): the segment
    /// file appears whole or not at all; its `segment_start` line is offered
    /// to the clients like any entry, and later snapshots start from it.
    pub(crate) fn start_segment(&mut self, history: Vec<Item>) -> Result<u64, StateError> {
        let committed = self.log.start_segment(history)?;
        let line: Line = Line::from(protocol::raw::entry_line(&committed.line)?);
        self.snapshot = None;
        self.hub.entry(committed.seq, &line);
        Ok(committed.seq)
    }

    /// Flushes the log to stable storage (invocation end, shutdown).
    pub(crate) fn sync(&mut self) -> Result<(), StateError> {
        self.log.sync()?;
        Ok(())
    }

    /// Offers a live event to the clients.
    pub(crate) fn broadcast(&mut self, event: &Event) -> Result<(), StateError> {
        let line = event_line(event)?;
        self.hub.live(&line, self.log.next_seq());
        Ok(())
    }

    /// Sets the user's hooks, for the connections' `user_prompt` checks.
    pub(crate) fn set_hooks(&mut self, hooks: Arc<hooks::Hooks>) {
        self.hooks = Some(hooks);
    }

    /// The user's hooks, once the pod is assembled.
    pub(crate) fn hooks(&self) -> Option<Arc<hooks::Hooks>> {
        self.hooks.clone()
    }

    /// Sets the pod's approvals (before the socket accepts anyone).
    pub(crate) fn set_approvals(&mut self, approvals: Arc<crate::approvals::Approvals>) {
        self.approvals = Some(approvals);
    }

    /// The pod's approvals, once the pod is assembled.
    pub(crate) fn approvals(&self) -> Option<Arc<crate::approvals::Approvals>> {
        self.approvals.clone()
    }

    /// Makes connection `id` one that answers approvals; `pending` is queued
    /// for it now.
    pub(crate) fn watch_approvals(
        &mut self,
        id: u64,
        pending: Vec<protocol::ApprovalRequest>,
    ) -> Result<(), StateError> {
        let lines = pending
            .into_iter()
            .map(|r| event_line(&Event::ApprovalRequest(r)))
            .collect::<Result<Vec<_>, _>>()?;
        self.hub.watch(id, &lines);
        Ok(())
    }

    /// Sends `event` to the connections that answer approvals; whether one
    /// took it.
    pub(crate) fn show_watchers(&mut self, event: &Event) -> bool {
        event_line(event).is_ok_and(|line| self.hub.show_watchers(&line))
    }

    /// Changes the status: broadcast, and written to `status.json`.
    pub(crate) fn set_status(&mut self, status: PodStatus) -> Result<(), StateError> {
        if status == self.status {
            return Ok(());
        }
        self.status = status;
        self.snapshot = None;
        self.broadcast(&Event::Status { status })?;
        self.write_status_file();
        Ok(())
    }

    /// Raises an alert: broadcast now and replayed to later connections.
    pub(crate) fn alert(
        &mut self,
        level: AlertLevel,
        source: AlertSource,
        message: impl Into<String>,
    ) -> Result<(), StateError> {
        let line = event_line(&Event::Alert(Alert {
            level,
            source,
            message: message.into(),
            timestamp_ms: now_ms(),
        }))?;
        if self.alerts.len() == ALERTS_KEPT {
            self.alerts.pop_front();
        }
        self.alerts.push_back(Line::clone(&line));
        self.hub.live(&line, self.log.next_seq());
        Ok(())
    }

    /// Records streamed assistant text (for clients attaching mid-message).
    pub(crate) fn stream_text(&mut self, text: &str) {
        self.partial.push_str(text);
    }

    /// The streamed text is complete (or abandoned).
    pub(crate) fn end_stream_text(&mut self) {
        self.partial.clear();
    }

    /// Adds token usage to the totals.
    pub(crate) fn add_usage(&mut self, usage: Usage, context_tokens: u64) {
        self.usage += usage;
        self.greeting.context_tokens = context_tokens;
        self.snapshot = None;
    }

    /// Commits a notification as queued (its seq is what the sender is
    /// acknowledged with) and keeps it for the next LLM request.
    pub(crate) fn queue(&mut self, origin: &str, item: Item) -> Result<u64, StateError> {
        let seq = self.commit(EntryBody::SystemItem {
            origin: origin.into(),
            item: LoggedItem(item.clone()),
            queued: Some(true),
        })?;
        self.pending.push((seq, item));
        Ok(seq)
    }

    /// Takes the queued notifications into the history: commits the
    /// `queue_joined` entry that records where they joined (so a replay puts
    /// them exactly there) and returns them. Under the one state lock, so none
    /// can arrive between the entry and the take.
    pub(crate) fn join_pending(&mut self) -> Result<Vec<Item>, StateError> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let seqs = self.pending.iter().map(|(seq, _)| *seq).collect();
        self.commit(EntryBody::QueueJoined { seqs })?;
        Ok(std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(_, item)| item)
            .collect())
    }

    /// Whether notifications wait for the model.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn snapshot_line(&mut self) -> Result<Line, StateError> {
        if let Some(line) = &self.snapshot {
            return Ok(Line::clone(line));
        }
        let lines = self.log.current_lines();
        let line = Line::from(protocol::raw::snapshot_line(
            lines.iter().map(|l| l.as_str()),
            &self.greeting,
            self.status,
        )?);
        self.snapshot = Some(Line::clone(&line));
        Ok(line)
    }

    /// Adds a client: its queue starts with `hello`, the kept alerts, the
    /// snapshot and the partial message, and live lines follow.
    pub(crate) fn subscribe(&mut self) -> Result<Subscription, StateError> {
        let mut first = Vec::with_capacity(self.alerts.len() + 3);
        first.push(Line::clone(&self.hello));
        first.extend(self.alerts.iter().cloned());
        first.push(self.snapshot_line()?);
        if !self.partial.is_empty() {
            first.push(event_line(&Event::TextDelta {
                text: self.partial.clone(),
            })?);
        }
        self.writers += 1;
        Ok(self.hub.subscribe(first))
    }

    /// A connection's writer finished.
    pub(crate) fn writer_done(&mut self) {
        self.writers = self.writers.saturating_sub(1);
    }

    /// Connection writers still running.
    pub(crate) fn writers(&self) -> usize {
        self.writers
    }

    /// Removes a client.
    pub(crate) fn unsubscribe(&mut self, id: u64) -> bool {
        self.hub.unsubscribe(id)
    }

    /// Drops every client's queue: writers send what is queued, then close.
    pub(crate) fn close_clients(&mut self) {
        self.hub = Hub::new();
    }

    /// The next batch of a lagging client's catch-up; clears its lag mark when
    /// nothing is left (under this lock, so no entry is missed in between).
    pub(crate) fn replay_step(&mut self, lag: &Lag) -> Result<ReplayStep, StateError> {
        let Some(from) = lag.missed_from() else {
            return Ok(ReplayStep::CaughtUp(event_line(&Event::Status {
                status: self.status,
            })?));
        };
        let lines = self.log.lines_from(from);
        if lines.is_empty() {
            lag.clear();
            return Ok(ReplayStep::CaughtUp(event_line(&Event::Status {
                status: self.status,
            })?));
        }
        let batch = &lines[..lines.len().min(REPLAY_BATCH)];
        let out = batch
            .iter()
            .map(|l| protocol::raw::entry_line(l).map(Line::from))
            .collect::<Result<Vec<_>, _>>()?;
        lag.advance(from + batch.len() as u64);
        Ok(ReplayStep::Lines(out))
    }

    /// Hands the current `status.json` to its writer thread (temp file +
    /// rename, off the invocation's path); failures go to the pod's log: the
    /// file is advisory.
    fn write_status_file(&mut self) {
        let Some((path, record)) = &mut self.record else {
            return;
        };
        self.status_written = std::time::Instant::now();
        record.status = self.status;
        record.usage = self.usage;
        record.context_tokens = self.greeting.context_tokens;
        record.context_window = self.greeting.context_window;
        let Ok(bytes) = serde_json::to_vec_pretty(&*record) else {
            return;
        };
        match &self.status_writer {
            Some(writer) => writer.send(bytes),
            None => {
                if let Err(e) = sys::replace_file(path, &bytes) {
                    tracing::warn!("cannot write {}: {e}", path.display());
                }
            }
        }
    }

    /// Refreshes `status.json` after usage changed, at most once a second (a
    /// status change always writes it).
    pub(crate) fn refresh_status_file(&mut self) {
        if self.status_written.elapsed() >= STATUS_REFRESH {
            self.write_status_file();
        }
    }
}

/// A thread that writes the latest `status.json` it was given (older versions
/// still queued are skipped), so status changes cost the invocation nothing.
#[derive(Debug)]
struct StatusWriter {
    tx: std::sync::mpsc::Sender<Vec<u8>>,
    thread: std::thread::JoinHandle<()>,
}

impl StatusWriter {
    fn start(path: PathBuf) -> Option<StatusWriter> {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let thread = std::thread::Builder::new()
            .name("status.json".into())
            .spawn(move || {
                while let Ok(mut latest) = rx.recv() {
                    while let Ok(newer) = rx.try_recv() {
                        latest = newer;
                    }
                    if let Err(e) = sys::replace_file(&path, &latest) {
                        tracing::warn!("cannot write {}: {e}", path.display());
                    }
                }
            })
            .ok()?;
        Some(StatusWriter { tx, thread })
    }

    fn send(&self, bytes: Vec<u8>) {
        let _ = self.tx.send(bytes);
    }

    /// Writes what is queued, then stops.
    fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}
