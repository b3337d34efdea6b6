//! The one actor that owns a pod's state machine (idle / running / paused).
//!
//! Connections send it [`Command`]s; it answers each on a oneshot channel, so
//! it never waits for a client (a reader that cannot deliver its answer blocks
//! only itself). Accepted methods are committed to the session log before they
//! are answered (ARCHITECTURE.md rule 1). An invocation runs in a task of its
//! own that owns the [`Worker`] and hands it back when it ends; meanwhile the
//! controller keeps taking methods (`cancel`, `pause`, `notify`, ...).

use std::sync::Arc;

use llm_types::{Item, Role};
use llm_worker::worker::{Control, Outcome, Worker, WorkerError};
use protocol::{
    AlertLevel, AlertSource, ErrorCode, Event, InvokeKind, Method, PodEvent, PodStatus, Segment,
    TurnResult,
};
use session_store::{EntryBody, LoggedItem};
use tokio::sync::mpsc;
use tools::grounding::Grounder;

/// How long a pod on its way out waits for its parent to take its last report.
const LAST_REPORT: std::time::Duration = std::time::Duration::from_secs(2);

use crate::inbox::{Command, FailureTaken, Input};
use crate::parent::Reporter;
use crate::sink::PodSink;
use crate::spawn::registry::SpawnedPodRegistry;
use crate::state::{SharedState, StateError, lock};

/// The running invocation.
struct Running {
    control: Control,
    turn: u64,
    /// Started by this pod's parent (its `run`, or the task it was spawned
    /// with): the parent is told when it ends.
    from_parent: bool,
    /// Ends the invocation's task at once (a stop that keeps a call waiting
    /// for approval leaves the turn as a crash would).
    task: Option<tokio::task::AbortHandle>,
}

/// The pod's state machine.
pub(crate) struct Controller {
    state: SharedState,
    worker: Option<Worker>,
    running: Option<Running>,
    paused: bool,
    turn: u64,
    done_tx: mpsc::Sender<(Worker, Outcome)>,
    done_rx: mpsc::Receiver<(Worker, Outcome)>,
    children: Arc<SpawnedPodRegistry>,
    parent: Option<Reporter>,
    /// `shutdown` arrived: no new invocation starts (a notification or a
    /// child's report is still committed and acknowledged, and waits in the
    /// log for the next start of the session).
    stopping: bool,
    grounder: Grounder,
}

/// How a method was answered.
type Answer = Option<Event>;

fn error(code: ErrorCode, message: impl Into<String>) -> Answer {
    Some(Event::Error {
        code,
        message: message.into(),
    })
}

fn internal(e: &StateError) -> Answer {
    error(ErrorCode::Internal, format!("cannot record it: {e}"))
}

/// The text a child pod's report becomes in the parent's conversation.
fn pod_event_text(event: &PodEvent) -> String {
    match event {
        PodEvent::TurnEnded { pod_name } => {
            format!("[pod event] child pod `{pod_name}` finished its turn")
        }
        PodEvent::Errored { pod_name, message } => {
            format!("[pod event] child pod `{pod_name}` failed: {message}")
        }
        PodEvent::ShutDown { pod_name } => format!("[pod event] child pod `{pod_name}` shut down"),
        PodEvent::ScopeSubDelegated {
            parent_pod,
            sub_pod,
            scope,
            ..
        } => {
            let paths: Vec<&str> = scope.iter().map(|g| g.target.as_str()).collect();
            format!(
                "[pod event] `{parent_pod}` delegated {} to its child `{sub_pod}`",
                paths.join(", ")
            )
        }
        PodEvent::Unknown => "[pod event] (a kind this pod does not know)".into(),
    }
}

impl Controller {
    /// A controller over `state`, with `worker` idle. `turns` is the number of
    /// invocations the session already had (restored pods continue counting).
    pub(crate) fn new(state: SharedState, worker: Worker, turns: u64, grounder: Grounder) -> Self {
        let (done_tx, done_rx) = mpsc::channel(1);
        Controller {
            state,
            worker: Some(worker),
            running: None,
            paused: false,
            turn: turns,
            done_tx,
            done_rx,
            children: Arc::new(SpawnedPodRegistry::new()),
            parent: None,
            stopping: false,
            grounder,
        }
    }

    /// The children this pod spawned (their `pod_event`s are accepted).
    pub(crate) fn with_children(mut self, children: Arc<SpawnedPodRegistry>) -> Self {
        self.children = children;
        self
    }

    /// The parent of this pod, told when invocations it started end.
    pub(crate) fn with_parent(mut self, parent: Reporter) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Continues invocation `turn`, whose `invoke_start` and input are already
    /// in the log (the task a parent wrote before starting this pod).
    pub(crate) fn continue_pending(&mut self, turn: u64) -> Result<(), StateError> {
        let Some(worker) = self.worker.take() else {
            return Err(StateError::Busy);
        };
        {
            let mut state = lock(&self.state);
            state.broadcast(&Event::TurnStart { turn })?;
            state.set_status(PodStatus::Running)?;
        }
        self.turn = self.turn.max(turn);
        self.launch(worker, turn, true, false);
        Ok(())
    }

    /// Marks the pod paused (a restored session whose last invocation was cut).
    pub(crate) fn set_paused(&mut self) -> Result<(), StateError> {
        self.paused = true;
        lock(&self.state).set_status(PodStatus::Paused)
    }

    /// Runs until a `shutdown` (method or signal) arrives or every sender is
    /// gone, then shuts down (see [`Controller::shut_down`]).
    pub(crate) async fn run(mut self, mut inbox: mpsc::Receiver<Input>) {
        loop {
            tokio::select! {
                done = self.done_rx.recv() => {
                    if let Some((worker, outcome)) = done {
                        self.finished(worker, outcome);
                    }
                }
                input = inbox.recv() => match input {
                    None | Some(Input::Shutdown) => break,
                    Some(Input::Method(Command { method: Method::Shutdown, reply, .. })) => {
                        let _ = reply.send(None);
                        break;
                    }
                    Some(input) => self.take(input),
                },
            }
        }
        self.shut_down(inbox).await;
    }

    /// Acts on one input (other than a shutdown).
    fn take(&mut self, input: Input) {
        match input {
            Input::Method(Command {
                method,
                peer,
                reply,
            }) => {
                let answer = match method {
                    Method::Shutdown => None,
                    method => self.handle(method, peer),
                };
                let _ = reply.send(answer);
            }
            Input::ChildFailed {
                pod_name,
                pid,
                message,
                reply,
            } => {
                let _ = reply.send(self.child_failed(pod_name, pid, message));
            }
            Input::Shutdown => {}
        }
    }

    /// Stops starting invocations, cancels the running one, stops this pod's
    /// children (each stops its own first, so leaves go first) while still
    /// answering methods (a child's last report must be acknowledged, not left
    /// waiting), then syncs the log and tells clients and the parent.
    async fn shut_down(&mut self, mut inbox: mpsc::Receiver<Input>) {
        tracing::info!(children = self.children.len(), "shutting down");
        self.stopping = true;
        // A turn waiting for a person's approval is left as a crash would
        // leave it (request pending, call open): `pod restore` asks again.
        let held = lock(&self.state)
            .approvals()
            .is_some_and(|a| a.broker.hold_for_restore());
        if let Some(running) = &self.running {
            match (&running.task, held) {
                (Some(task), true) => task.abort(),
                _ => running.control.cancel.cancel(),
            }
        }
        let children = Arc::clone(&self.children);
        let stop_children = children.stop_all("stopped with its parent");
        tokio::pin!(stop_children);
        let mut listening = true;
        let failures = loop {
            tokio::select! {
                failures = &mut stop_children => break failures,
                done = self.done_rx.recv() => {
                    if let Some((worker, outcome)) = done {
                        self.finished(worker, outcome);
                    }
                }
                input = inbox.recv(), if listening => match input {
                    Some(input) => self.take(input),
                    None => listening = false,
                },
            }
        };
        for failure in failures {
            self.alert_error(format!("cannot stop a child pod: {failure}"));
        }
        if self.running.is_some()
            && !held
            && let Some((worker, outcome)) = self.done_rx.recv().await
        {
            self.finished(worker, outcome);
        }
        {
            let mut state = lock(&self.state);
            if let Err(e) = state.sync() {
                let _ = state.alert(
                    AlertLevel::Error,
                    AlertSource::Pod,
                    format!("cannot flush the session log: {e}"),
                );
            }
            let _ = state.broadcast(&Event::Shutdown);
            state.close_clients();
        }
        if let Some(parent) = &self.parent {
            // Bounded: the parent may be gone too.
            let event = PodEvent::ShutDown {
                pod_name: parent.short_name().to_string(),
            };
            parent.report_last(event, LAST_REPORT).await;
        }
    }

    fn handle(&mut self, method: Method, peer: crate::inbox::Peer) -> Answer {
        match method {
            Method::Run { input } => self.run_input(input, peer.is_parent),
            Method::Notify { message } => {
                let item = Item::text(Role::User, format!("[notification] {message}"));
                self.notification("notify", item, InvokeKind::Notify)
            }
            Method::PodEvent(event) => self.pod_event(event, peer.pid),
            Method::Resume => {
                if self.stopping {
                    return error(
                        ErrorCode::InvalidRequest,
                        "the pod is shutting down; `pod restore` it to continue",
                    );
                }
                if self.running.is_some() || !self.paused {
                    let message = if self.running.is_some() {
                        "the pod is running, not paused"
                    } else {
                        "the pod is not paused; send `run` to start an invocation"
                    };
                    return error(ErrorCode::NotPaused, message);
                }
                match self.start(InvokeKind::Resume, None, false) {
                    Ok(_) => None,
                    Err(e) => internal(&e),
                }
            }
            Method::Cancel | Method::Pause => {
                let Some(running) = &self.running else {
                    return error(
                        ErrorCode::NotRunning,
                        format!("nothing to {}: the pod is not running", method.name()),
                    );
                };
                if matches!(method, Method::Cancel) {
                    running.control.cancel.cancel();
                } else {
                    running.control.pause.cancel();
                }
                None
            }
            Method::Shutdown => None,
            Method::Compact => {
                if self.stopping {
                    return error(ErrorCode::InvalidRequest, "the pod is shutting down");
                }
                if let Some(running) = &self.running {
                    // At the next step boundary, as a pause would stop there.
                    running
                        .control
                        .compact
                        .store(true, std::sync::atomic::Ordering::Release);
                    return None;
                }
                if self.paused {
                    return error(
                        ErrorCode::InvalidRequest,
                        "the pod is paused: `resume` it (a `compact` sent while it runs takes effect at its next step) or `cancel` first",
                    );
                }
                match self.start(InvokeKind::Compact, None, false) {
                    Ok(_) => None,
                    Err(e) => internal(&e),
                }
            }
            Method::WatchApprovals
            | Method::Approvals
            | Method::Approve { .. }
            | Method::Deny { .. }
            | Method::ApprovalUpdate(_) => error(
                ErrorCode::Internal,
                "approval methods are answered on the connection, not by the controller",
            ),
            Method::Unknown { method } => error(
                ErrorCode::InvalidRequest,
                format!(
                    "unknown method `{method}`; known: run, notify, pod_event, resume, cancel, pause, shutdown, compact, watch_approvals, approvals, approve, deny, approval_update"
                ),
            ),
        }
    }

    fn run_input(&mut self, input: Vec<Segment>, from_parent: bool) -> Answer {
        if self.stopping {
            return error(
                ErrorCode::InvalidRequest,
                "the pod is shutting down; `pod restore` it to continue",
            );
        }
        if let Some(running) = &self.running {
            return error(
                ErrorCode::AlreadyRunning,
                format!(
                    "already running turn {}; wait for turn_end, or send cancel",
                    running.turn
                ),
            );
        }
        let text = Segment::flatten_to_text(&input);
        if text.trim().is_empty() {
            return error(ErrorCode::InvalidRequest, "`run` needs non-empty input");
        }
        // The files it names go with it, as `file_ref` segments in the log.
        let refs: Vec<String> = input.iter().filter_map(Segment::file_ref).collect();
        let grounded = self.grounder.ground(&text, &refs, self.turn == 0);
        let mut input = input;
        for path in grounded.attached.into_iter().filter(|p| !refs.contains(p)) {
            input.extend([Segment::text(" "), Segment::FileRef { path }]);
        }
        let (words, context) = grounded.text.split_at(grounded.words);
        let item = Item::user_with_context(words, context);
        match self.start(InvokeKind::UserSend, Some((input, item)), from_parent) {
            Ok(seq) => Some(Event::Ack { seq }),
            Err(e) => internal(&e),
        }
    }

    /// Commits a notification (answering `ack`), queues it for the next LLM
    /// request, and starts an invocation for it if the pod is idle.
    fn notification(&mut self, origin: &str, item: Item, kind: InvokeKind) -> Answer {
        let seq = match lock(&self.state).queue(origin, item) {
            Ok(seq) => seq,
            Err(e) => return internal(&e),
        };
        if self.running.is_none()
            && !self.paused
            && !self.stopping
            && let Err(e) = self.start(kind, None, false)
        {
            self.alert_error(format!(
                "cannot start an invocation for a notification: {e}"
            ));
        }
        Some(Event::Ack { seq })
    }

    /// Commits the start of an invocation (and its user input), broadcasts
    /// it and spawns the worker. Returns the sequence number of the input entry
    /// (or of `invoke_start` when there is none).
    fn start(
        &mut self,
        kind: InvokeKind,
        input: Option<(Vec<Segment>, Item)>,
        from_parent: bool,
    ) -> Result<u64, StateError> {
        let Some(mut worker) = self.worker.take() else {
            // Unreachable while `running` is None; refuse rather than panic.
            return Err(StateError::Busy);
        };
        let turn = self.turn + 1;
        let committed = (|| {
            let mut state = lock(&self.state);
            let mut seq = state.commit(EntryBody::InvokeStart {
                invoke_kind: kind,
                turn,
            })?;
            if let Some((segments, item)) = &input {
                seq = state.commit(EntryBody::UserInput {
                    segments: segments.clone(),
                    item: LoggedItem(item.clone()),
                })?;
            }
            state.broadcast(&Event::InvokeStart { kind })?;
            if let Some((segments, _)) = &input {
                state.broadcast(&Event::UserMessage {
                    segments: segments.clone(),
                })?;
            }
            state.broadcast(&Event::TurnStart { turn })?;
            state.set_status(PodStatus::Running)?;
            Ok(seq)
        })();
        let seq = match committed {
            Ok(seq) => seq,
            Err(e) => {
                self.worker = Some(worker);
                return Err(e);
            }
        };
        self.turn = turn;
        if let Some((_, item)) = input {
            worker.push_committed(item);
        }
        self.launch(worker, turn, from_parent, kind == InvokeKind::Compact);
        Ok(seq)
    }

    /// Runs the worker for invocation `turn` in a task of its own.
    fn launch(&mut self, mut worker: Worker, turn: u64, from_parent: bool, compact_only: bool) {
        self.paused = false;
        let control = Control::new();
        self.running = Some(Running {
            control: control.clone(),
            turn,
            from_parent,
            task: None,
        });
        let mut sink = PodSink::new(self.state.clone());
        let done = self.done_tx.clone();
        let hooks = lock(&self.state).hooks();
        let span = tracing::info_span!("invocation", turn, from_parent);
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let started = std::time::Instant::now();
                tracing::info!("invocation started");
                let outcome = if compact_only {
                    worker.compact_now(&mut sink, &control).await
                } else {
                    worker.invoke(Vec::new(), &mut sink, &control).await
                };
                tracing::info!(
                    ms = started.elapsed().as_millis() as u64,
                    outcome = ?outcome,
                    "invocation ended"
                );
                // Before `turn_end` is committed: a one-shot `pod run` stops the
                // pod right after it.
                if let Some(hooks) = hooks {
                    let result = match &outcome {
                        Outcome::Finished { .. } => "finished",
                        Outcome::Paused => "paused",
                        Outcome::Cancelled => "cancelled",
                        Outcome::LimitReached => "limit_reached",
                        Outcome::Failed(_) => "failed",
                    };
                    let mut fields = serde_json::Map::new();
                    fields.insert("turn".into(), turn.into());
                    fields.insert("result".into(), result.into());
                    crate::checks::tell(&hooks, manifest::HookEvent::TurnEnd, fields).await;
                }
                let _ = done.send((worker, outcome)).await;
            },
            span,
        ));
        if let Some(running) = &mut self.running {
            running.task = Some(task.abort_handle());
        }
    }

    /// A child's report: accepted only over a connection from one of this
    /// pod's children; the first `turn_ended`/`errored` for an invocation this
    /// pod started there wakes it, repeats are acknowledged and ignored;
    /// `shut_down` wakes it only when it did not stop the child itself.
    fn pod_event(&mut self, event: PodEvent, peer_pid: Option<u32>) -> Answer {
        let Some(child) = peer_pid.and_then(|pid| self.children.name_of_pid(pid)) else {
            return error(
                ErrorCode::InvalidRequest,
                "pod_event is accepted only from this pod's own children",
            );
        };
        let wake = match &event {
            // A child being stopped may fail on its way out: this pod asked for that.
            PodEvent::TurnEnded { .. } | PodEvent::Errored { .. } => {
                !self.children.is_stopping(&child) && self.children.take_report(&child)
            }
            PodEvent::ShutDown { .. } => {
                // Not under the state lock: the broker shows and logs through it.
                let approvals = lock(&self.state).approvals();
                if let Some(approvals) = approvals {
                    let pod = approvals.broker.pod().to_owned();
                    approvals.broker.drop_subtree(&format!("{pod}.{child}"));
                }
                let stopping = self.children.is_stopping(&child);
                if !stopping {
                    // It left on its own: take its scope back (once its lock is free).
                    let children = Arc::clone(&self.children);
                    let state = self.state.clone();
                    let name = child;
                    tokio::spawn(async move {
                        if let Err(e) = children.forget_once_exited(&name, "it shut down").await {
                            let _ = lock(&state).alert(
                                AlertLevel::Warn,
                                AlertSource::Registry,
                                format!("child pod `{name}` reported shutting down: {e}"),
                            );
                        }
                    });
                }
                !stopping
            }
            PodEvent::ScopeSubDelegated { .. } | PodEvent::Unknown => false,
        };
        if !wake {
            let seq = lock(&self.state).log().next_seq().saturating_sub(1);
            return Some(Event::Ack { seq });
        }
        let item = Item::text(Role::User, pod_event_text(&event));
        self.notification("pod_event", item, InvokeKind::PodEvent)
    }

    /// A child's process failed before it reported: taken as its `errored`
    /// report if one is owed (the agent waits for it), unless this pod is
    /// stopping the child itself.
    fn child_failed(&mut self, pod_name: String, pid: u32, message: String) -> FailureTaken {
        if self.children.name_of_pid(pid).as_deref() != Some(pod_name.as_str()) {
            return FailureTaken::NotRecordedYet;
        }
        if self.children.is_stopping(&pod_name) || !self.children.take_report(&pod_name) {
            return FailureTaken::Done;
        }
        let item = Item::text(
            Role::User,
            pod_event_text(&PodEvent::Errored { pod_name, message }),
        );
        if let Some(Event::Error { message, .. }) =
            self.notification("pod_event", item, InvokeKind::PodEvent)
        {
            self.alert_error(format!("cannot record a child's failure: {message}"));
        }
        FailureTaken::Done
    }

    /// Commits the end of the invocation and moves to idle or paused; starts
    /// the next invocation if notifications arrived after its last LLM call.
    fn finished(&mut self, worker: Worker, outcome: Outcome) {
        self.worker = Some(worker);
        let (turn, from_parent) = self
            .running
            .take()
            .map_or((self.turn, false), |r| (r.turn, r.from_parent));
        if from_parent && let Some(parent) = &self.parent {
            let pod_name = parent.short_name().to_string();
            let event = match &outcome {
                Outcome::Failed(e) => PodEvent::Errored {
                    pod_name,
                    message: e.to_string(),
                },
                _ => PodEvent::TurnEnded { pod_name },
            };
            parent.report(
                event,
                20,
                format!("cannot tell the parent pod that turn {turn} ended"),
            );
        }
        let (result, failure) = match &outcome {
            Outcome::Finished { .. } => (TurnResult::Finished, None),
            Outcome::Paused => (TurnResult::Paused, None),
            Outcome::Cancelled => (TurnResult::Cancelled, None),
            Outcome::LimitReached => (TurnResult::LimitReached, None),
            Outcome::Failed(e) => {
                let code = match e {
                    WorkerError::Llm(_) => ErrorCode::ProviderError,
                    WorkerError::Sink(_) => ErrorCode::Internal,
                };
                (TurnResult::Failed, Some((code, e.to_string())))
            }
        };
        self.paused = result == TurnResult::Paused;
        let recorded = (|| {
            let mut state = lock(&self.state);
            if let Some((_, message)) = &failure {
                state.commit(EntryBody::RunError {
                    message: message.clone(),
                })?;
            }
            state.commit(EntryBody::TurnEnd { turn, result })?;
            state.sync()?;
            state.broadcast(&Event::TurnEnd { turn, result })?;
            match &failure {
                Some((code, message)) => state.broadcast(&Event::Error {
                    code: *code,
                    message: message.clone(),
                })?,
                None => state.broadcast(&Event::RunEnd { result })?,
            }
            let status = if self.paused {
                PodStatus::Paused
            } else {
                PodStatus::Idle
            };
            state.set_status(status)?;
            Ok::<bool, StateError>(state.has_pending())
        })();
        match recorded {
            Ok(true) if !self.paused && !self.stopping => {
                if let Err(e) = self.start(InvokeKind::Notify, None, false) {
                    self.alert_error(format!("cannot start an invocation for notifications: {e}"));
                }
            }
            Ok(_) => {}
            Err(e) => self.alert_error(format!("cannot record the end of turn {turn}: {e}")),
        }
    }

    fn alert_error(&self, message: String) {
        tracing::error!("{message}");
        let _ = lock(&self.state).alert(AlertLevel::Error, AlertSource::Pod, message);
    }
}
