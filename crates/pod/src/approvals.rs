//! Approvals wired into the pod (the broker is `hooks::approvals`): requests
//! and answers committed to the log, then shown to the connections that sent
//! `watch_approvals`; passed to the parent when none did; the approval
//! methods answered on the connection (never by the controller) and passed
//! down to the child whose subtree asked. See docs/hooks.md.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hooks::approvals::{AnswerError, Broker, Outlet, owner_of, within};
use pod_client::exchange::exchange;
use pod_runtime::pod_registry::pod_of_process;
use protocol::{ApprovalRequest, ApprovalResolved, ApprovalUpdate, ErrorCode, Event, Method};
use session_store::{EntryBody, LogEntry};

use crate::inbox::Peer;
use crate::parent::Reporter;
use crate::spawn::registry::SpawnedPodRegistry;
use crate::state::{SharedState, lock};

/// Bounds each step of a method passed to a child.
const STEP: Duration = Duration::from_secs(10);

/// How often news for the parent is tried while it lives.
const ATTEMPTS: u32 = 20;

/// The pod's side of its broker.
struct PodOutlet {
    state: SharedState,
    parent: OnceLock<Reporter>,
}

impl Outlet for PodOutlet {
    fn record_request(&self, request: &ApprovalRequest, call_id: &str) -> Result<(), String> {
        let body = EntryBody::ApprovalRequest {
            request: request.clone(),
            call_id: call_id.to_owned(),
        };
        lock(&self.state)
            .commit(body)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn record_answer(&self, resolved: &ApprovalResolved) -> Result<u64, String> {
        let body = EntryBody::ApprovalAnswer {
            resolved: resolved.clone(),
        };
        let mut state = lock(&self.state);
        let seq = state.commit(body).map_err(|e| e.to_string())?;
        // The call runs on this answer: it must survive a crash.
        state.sync().map_err(|e| e.to_string())?;
        Ok(seq)
    }

    fn show(&self, event: &Event) -> bool {
        lock(&self.state).show_watchers(event)
    }

    fn forward(&self, update: ApprovalUpdate) {
        if let Some(parent) = self.parent.get() {
            parent.send(
                Method::ApprovalUpdate(update),
                ATTEMPTS,
                "cannot pass an approval request on to the parent pod".into(),
            );
        }
    }
}

/// A pod's approvals: its broker, and its children to pass answers down to.
pub(crate) struct Approvals {
    /// The broker (the worker's interceptor asks it).
    pub broker: Arc<Broker>,
    outlet: Arc<PodOutlet>,
    children: Arc<SpawnedPodRegistry>,
    /// The per-user registry (who answers: a person, or a pod's process).
    registry: PathBuf,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.broker.fmt(f)
    }
}

impl Approvals {
    /// The approvals of pod `name` (full name), its requests denied unanswered
    /// after `timeout`.
    pub(crate) fn new(
        name: &str,
        timeout: Duration,
        state: &SharedState,
        children: &Arc<SpawnedPodRegistry>,
        registry: PathBuf,
    ) -> Arc<Self> {
        let outlet = Arc::new(PodOutlet {
            state: state.clone(),
            parent: OnceLock::new(),
        });
        let broker = Arc::new(Broker::new(name, timeout, outlet.clone()));
        Arc::new(Approvals {
            broker,
            outlet,
            children: Arc::clone(children),
            registry,
        })
    }

    /// From now on, requests nobody here answers go to this pod's parent.
    pub(crate) fn set_parent(&self, parent: Reporter) {
        let _ = self.outlet.parent.set(parent);
    }

    /// Takes the requests and answers of a replayed log.
    pub(crate) fn replay<'a>(&self, entries: impl IntoIterator<Item = &'a LogEntry>) {
        for entry in entries {
            match entry {
                LogEntry::ApprovalRequest {
                    request, call_id, ..
                } => self.broker.replay_request(request.clone(), call_id.clone()),
                LogEntry::ApprovalAnswer { resolved, .. } => self.broker.replay_answer(resolved),
                _ => {}
            }
        }
    }

    /// Asks each live child for the pending requests of its subtree (a
    /// restored pod lost what they had passed up).
    pub(crate) fn adopt_children(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            for child in this.children.list().await {
                // A child gone, or too old to know approvals, has none to adopt.
                if let Ok(Event::Approvals { requests }) =
                    exchange(&child.socket_path, &Method::Approvals, STEP).await
                {
                    this.broker.forget_subtree(&child.full_name);
                    for request in requests {
                        this.broker
                            .child_update(ApprovalUpdate::Requested { request });
                    }
                }
            }
        });
    }
}

fn refused(code: ErrorCode, message: impl Into<String>) -> Event {
    Event::Error {
        code,
        message: message.into(),
    }
}

/// Answers an approval method on connection `conn`; `None` when `method` is
/// not one (the controller takes it).
pub(crate) async fn answer(
    state: &SharedState,
    method: &Method,
    conn: u64,
    peer: &Peer,
) -> Option<Event> {
    let approvals = match method {
        Method::WatchApprovals
        | Method::Approvals
        | Method::Approve { .. }
        | Method::Deny { .. }
        | Method::ApprovalUpdate(_) => lock(state).approvals()?,
        _ => return None,
    };
    let broker = &approvals.broker;
    Some(match method {
        Method::Approvals => Event::Approvals {
            requests: broker.list(),
        },
        Method::Approve { .. } | Method::Deny { .. } | Method::WatchApprovals
            if !peer.is_parent
                && let Some(pod) = peer
                    .pid
                    .and_then(|pid| pod_of_process(pid, &approvals.registry)) =>
        {
            refused(
                ErrorCode::InvalidRequest,
                format!(
                    "approvals are for a person, not for a process of pod `{pod}` (its commands and MCP servers can neither answer nor watch them)"
                ),
            )
        }
        Method::WatchApprovals => {
            let mut st = lock(state);
            match st.watch_approvals(conn, broker.list()) {
                Ok(()) => Event::Ack { seq: 0 },
                Err(e) => refused(ErrorCode::Internal, e.to_string()),
            }
        }
        Method::Approve { id, remember } if broker.is_own(id) => {
            own_answer(broker.answer(id, true, "client", None, *remember))
        }
        Method::Deny { id, reason } if broker.is_own(id) => {
            let reason = reason
                .clone()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| "a person denied it (no reason given)".into());
            own_answer(broker.answer(id, false, "client", Some(reason), false))
        }
        Method::Approve { id, .. } | Method::Deny { id, .. } => {
            pass_down(&approvals.children, id, method).await
        }
        Method::ApprovalUpdate(update) => {
            // A child speaks for its own subtree only.
            let child = peer.pid.and_then(|pid| approvals.children.name_of_pid(pid));
            let id = match update {
                ApprovalUpdate::Requested { request } => &request.id,
                ApprovalUpdate::Resolved { resolved } => &resolved.id,
            };
            let full = child.map(|c| format!("{}.{c}", broker.pod()));
            if full.is_some_and(|f| within(owner_of(id), &f)) {
                broker.child_update(update.clone());
                Event::Ack { seq: 0 }
            } else {
                refused(
                    ErrorCode::InvalidRequest,
                    "approval_update is accepted only from this pod's own children, about their own subtrees",
                )
            }
        }
        _ => return None,
    })
}

fn own_answer(answered: Result<u64, AnswerError>) -> Event {
    match answered {
        Ok(seq) => Event::Ack { seq },
        Err(e @ AnswerError::NotPending(_)) => refused(ErrorCode::InvalidRequest, e.to_string()),
        Err(e @ AnswerError::Log(_)) => refused(ErrorCode::Internal, e.to_string()),
    }
}

/// An answer to a request of a pod below this one, passed to the child whose
/// subtree it is (which passes it on or takes it).
async fn pass_down(children: &SpawnedPodRegistry, id: &str, method: &Method) -> Event {
    let owner = owner_of(id);
    let child = children
        .list()
        .await
        .into_iter()
        .find(|c| within(owner, &c.full_name));
    let Some(child) = child else {
        return refused(
            ErrorCode::InvalidRequest,
            format!(
                "no pending approval request `{id}` here: `{owner}` is neither this pod nor below it; `pod approvals` lists the pending ones"
            ),
        );
    };
    match exchange(&child.socket_path, method, STEP).await {
        Ok(answer) => answer,
        Err(e) => refused(
            ErrorCode::Internal,
            format!("cannot pass the answer on to `{}`: {e}", child.full_name),
        ),
    }
}
