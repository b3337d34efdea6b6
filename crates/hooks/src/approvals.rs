//! Approvals: a tool call an `ask` rule matched waits for a person's answer.
//!
//! A pod's [`Broker`] holds its own pending requests (ids `<pod>/<n>`) and the
//! ones its children passed up from their subtrees. What a request does on the
//! way is the pod's business, behind [`Outlet`]: it is logged in the asking
//! pod's session (so a restored pod asks again), shown to the connections
//! that answer approvals, and passed to the parent when none does. An answer
//! is logged before the call runs; an unanswered request is denied after
//! `[approvals] timeout_s`. Lock order: the broker never holds its lock while
//! it calls the outlet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use protocol::{ApprovalRequest, ApprovalResolved, ApprovalUpdate, Event};
use serde_json::Value;
use sys::now_ms;
use tokio::sync::oneshot;

use crate::Ruling;

/// The answer a paused call gets: run it, or the reason it may not run.
pub type Verdict = Result<(), String>;

/// Who waits for a person's answer on calls an `ask` rule matched.
#[async_trait]
pub trait Approver: Send + Sync {
    /// Waits for the answer on call `call_id` of `tool` with `input`, which
    /// `ruling` (an `ask`) paused.
    async fn ask(&self, call_id: &str, tool: &str, input: &Value, ruling: &Ruling) -> Verdict;

    /// Call `call_id` was decided without asking.
    fn settle(&self, call_id: &str) {
        let _ = call_id;
    }
}

/// Where a pod's broker sends what happens to requests.
pub trait Outlet: Send + Sync {
    /// Logs a new request of this pod (before anyone sees it).
    fn record_request(&self, request: &ApprovalRequest, call_id: &str) -> Result<(), String>;
    /// Logs how a request of this pod ended; the entry's sequence number.
    fn record_answer(&self, resolved: &ApprovalResolved) -> Result<u64, String>;
    /// Sends an event to the connections that answer approvals; whether any did.
    fn show(&self, event: &Event) -> bool;
    /// Passes news about requests up to the parent pod (nothing for a top pod).
    fn forward(&self, update: ApprovalUpdate);
}

/// Why an answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// No pending request of this pod has that id.
    NotPending(String),
    /// The answer could not be logged (the call stays paused).
    Log(String),
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::NotPending(id) => write!(
                f,
                "no pending approval request `{id}` (answered already, timed out, or never asked); \
                 `pod approvals` lists the pending ones"
            ),
            AnswerError::Log(e) => write!(f, "cannot log the answer: {e}"),
        }
    }
}

impl std::error::Error for AnswerError {}

/// One of this pod's own pending requests.
#[derive(Debug)]
struct Own {
    request: ApprovalRequest,
    call_id: String,
    /// The paused call's waiter; `None` for a request restored from the log
    /// whose call has not been run again yet.
    waiter: Option<oneshot::Sender<Verdict>>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    own: BTreeMap<String, Own>,
    /// Answers that came for restored requests before their call ran again,
    /// by call id, with the input and rule the person saw.
    early: HashMap<String, (Value, String, Verdict)>,
    /// Requests of pods below this one, by id.
    subtree: BTreeMap<String, ApprovalRequest>,
    /// `ask` rules a `remember` approval turned into allows (as described).
    remembered: HashSet<String>,
}

/// A pod's approvals: its own pending requests and its subtree's.
pub struct Broker {
    pod: String,
    timeout: Duration,
    outlet: Arc<dyn Outlet>,
    inner: Mutex<Inner>,
    /// The pod is stopping with calls still waiting: they stay pending in
    /// the log (asked again after `pod restore`), not cancelled.
    held: AtomicBool,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("pod", &self.pod)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The pod part of a request id (`root.child/3` → `root.child`).
pub use protocol::approval_owner as owner_of;

/// Whether `full_name` is pod `pod` or one of its descendants.
pub fn within(full_name: &str, pod: &str) -> bool {
    full_name == pod
        || full_name
            .strip_prefix(pod)
            .is_some_and(|rest| rest.starts_with('.'))
}

impl Broker {
    /// The broker of pod `pod` (its full name); unanswered requests are denied
    /// after `timeout`.
    pub fn new(pod: impl Into<String>, timeout: Duration, outlet: Arc<dyn Outlet>) -> Self {
        Broker {
            pod: pod.into(),
            timeout,
            outlet,
            inner: Mutex::new(Inner {
                next: 1,
                ..Inner::default()
            }),
            held: AtomicBool::new(false),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pod's full name.
    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// Whether request `id` is this pod's own (not one of its subtree's).
    pub fn is_own(&self, id: &str) -> bool {
        owner_of(id) == self.pod
    }

    /// Replays a logged request of this pod (a restored pod): pending until
    /// its answer is replayed or its call runs again.
    pub fn replay_request(&self, request: ApprovalRequest, call_id: String) {
        let mut inner = self.inner();
        if let Some(n) = request
            .id
            .rsplit_once('/')
            .and_then(|(_, n)| n.parse::<u64>().ok())
        {
            inner.next = inner.next.max(n.saturating_add(1));
        }
        inner.own.insert(
            request.id.clone(),
            Own {
                request,
                call_id,
                waiter: None,
            },
        );
    }

    /// Replays a logged answer: its request is no longer pending, and a
    /// remembered approval allows its rule again.
    pub fn replay_answer(&self, resolved: &ApprovalResolved) {
        let mut inner = self.inner();
        if let Some(own) = inner.own.remove(&resolved.id)
            && resolved.approved
            && resolved.remember
        {
            inner.remembered.insert(own.request.rule);
        }
    }

    /// The calls whose requests are still pending after a replay: a restored
    /// pod keeps them open and runs them again (which asks again).
    pub fn restored_calls(&self) -> Vec<String> {
        self.inner()
            .own
            .values()
            .filter(|o| o.waiter.is_none())
            .map(|o| o.call_id.clone())
            .collect()
    }

    /// Ends the restored requests whose call is not among `open` (it was
    /// answered while the pod stopped): denied, logged, passed on.
    pub fn drop_unless_open(&self, open: &[String]) {
        let stale: Vec<String> = self
            .inner()
            .own
            .iter()
            .filter(|(_, o)| o.waiter.is_none() && !open.contains(&o.call_id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            let reason = "the call ended without an answer when the pod stopped".to_owned();
            let _ = self.answer(&id, false, "pod", Some(reason), false);
        }
    }

    /// The pod is stopping: if calls wait for an answer, they are held as they
    /// are (pending in the log, their calls open) for `pod restore` to ask
    /// again, and `true` says so: the turn must not be cancelled.
    pub fn hold_for_restore(&self) -> bool {
        let waiting = self.inner().own.values().any(|o| o.waiter.is_some());
        if waiting {
            self.held.store(true, Ordering::SeqCst);
        }
        waiting
    }

    /// Every pending request of this pod and its subtree, oldest first.
    pub fn list(&self) -> Vec<ApprovalRequest> {
        let inner = self.inner();
        let mut all: Vec<ApprovalRequest> = inner
            .own
            .values()
            .map(|o| o.request.clone())
            .chain(inner.subtree.values().cloned())
            .collect();
        all.sort_by(|a, b| (a.requested_ms, &a.id).cmp(&(b.requested_ms, &b.id)));
        all
    }

    /// News from a child about its subtree: shown here, and passed further up
    /// when nobody here answers approvals.
    pub fn child_update(&self, update: ApprovalUpdate) {
        match update {
            ApprovalUpdate::Requested { request } => {
                self.inner()
                    .subtree
                    .insert(request.id.clone(), request.clone());
                if !self.outlet.show(&Event::ApprovalRequest(request.clone())) {
                    self.outlet.forward(ApprovalUpdate::Requested { request });
                }
            }
            ApprovalUpdate::Resolved { resolved } => {
                let known = self.inner().subtree.remove(&resolved.id).is_some();
                if known {
                    self.outlet.show(&Event::ApprovalResolved(resolved.clone()));
                    self.outlet.forward(ApprovalUpdate::Resolved { resolved });
                }
            }
        }
    }

    /// Forgets the subtree requests of pod `child` (and below), e.g. before
    /// taking its current list again; returns them.
    pub fn forget_subtree(&self, child: &str) -> Vec<ApprovalRequest> {
        let mut inner = self.inner();
        let gone: Vec<String> = inner
            .subtree
            .keys()
            .filter(|id| within(owner_of(id), child))
            .cloned()
            .collect();
        gone.iter()
            .filter_map(|id| inner.subtree.remove(id))
            .collect()
    }

    /// Pod `child` (and its subtree) is gone: its requests end here and above
    /// (`by: "pod"`), for whoever was shown them.
    pub fn drop_subtree(&self, child: &str) {
        for request in self.forget_subtree(child) {
            let resolved = ApprovalResolved {
                id: request.id,
                approved: false,
                by: "pod".into(),
                reason: Some(format!("`{child}` stopped before anyone answered")),
                remember: false,
            };
            self.outlet.show(&Event::ApprovalResolved(resolved.clone()));
            self.outlet.forward(ApprovalUpdate::Resolved { resolved });
        }
    }

    /// The last connection that answered approvals here left: every pending
    /// request goes up to the parent again (a person may be attached there).
    pub fn reforward(&self) {
        for request in self.list() {
            self.outlet.forward(ApprovalUpdate::Requested { request });
        }
    }

    /// Answers one of this pod's own requests (`by`: who decided): logged,
    /// shown, passed on, then the call told; the sequence number of the
    /// logged answer.
    pub fn answer(
        &self,
        id: &str,
        approved: bool,
        by: &str,
        reason: Option<String>,
        remember: bool,
    ) -> Result<u64, AnswerError> {
        let Some(own) = self.inner().own.remove(id) else {
            return Err(AnswerError::NotPending(id.to_owned()));
        };
        let reason = if approved {
            None
        } else {
            Some(reason.unwrap_or_else(|| "denied without a reason".into()))
        };
        let resolved = ApprovalResolved {
            id: id.to_owned(),
            approved,
            by: by.to_owned(),
            reason: reason.clone(),
            remember: approved && remember,
        };
        let seq = match self.outlet.record_answer(&resolved) {
            Ok(seq) => seq,
            Err(e) => {
                // Nothing happened: the request stays pending.
                self.inner().own.insert(id.to_owned(), own);
                return Err(AnswerError::Log(e));
            }
        };
        let verdict = match reason {
            None => Ok(()),
            Some(reason) => Err(reason),
        };
        {
            let mut inner = self.inner();
            if resolved.remember {
                inner.remembered.insert(own.request.rule.clone());
            }
            if own.waiter.is_none() && by == "client" {
                let seen = (own.request.input.clone(), own.request.rule.clone());
                inner
                    .early
                    .insert(own.call_id.clone(), (seen.0, seen.1, verdict.clone()));
            }
        }
        self.outlet.show(&Event::ApprovalResolved(resolved.clone()));
        self.outlet.forward(ApprovalUpdate::Resolved { resolved });
        if let Some(waiter) = own.waiter {
            let _ = waiter.send(verdict);
        }
        Ok(seq)
    }

    /// Registers a request for the call (or takes back the restored one) and
    /// the receiver its answer comes on.
    fn register(
        &self,
        call_id: &str,
        tool: &str,
        input: &Value,
        ruling: &Ruling,
    ) -> (ApprovalRequest, bool, oneshot::Receiver<Verdict>) {
        let (tx, rx) = oneshot::channel();
        let rule = ruling.describe();
        let now = now_ms();
        let timeout = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut stale = None;
        let request = {
            let mut inner = self.inner();
            let restored = inner
                .own
                .iter()
                .find(|(_, o)| o.call_id == call_id && o.waiter.is_none())
                .map(|(id, _)| id.clone());
            if let Some(id) = restored
                && let Some(own) = inner.own.get_mut(&id)
            {
                if own.request.input == *input && own.request.rule == rule {
                    // Asked again after a restart: a fresh wait.
                    own.waiter = Some(tx);
                    own.request.expires_ms = now.saturating_add(timeout);
                    return (own.request.clone(), false, rx);
                }
                stale = Some(id);
            }
            let id = format!("{}/{}", self.pod, inner.next);
            inner.next += 1;
            let request = ApprovalRequest {
                id: id.clone(),
                pod: self.pod.clone(),
                tool: tool.to_owned(),
                input: input.clone(),
                rule,
                requested_ms: now,
                expires_ms: now.saturating_add(timeout),
            };
            inner.own.insert(
                id,
                Own {
                    request: request.clone(),
                    call_id: call_id.to_owned(),
                    waiter: Some(tx),
                },
            );
            request
        };
        if let Some(id) = stale {
            let reason = "the call changed after the pod restarted; it is asked again".to_owned();
            let _ = self.answer(&id, false, "pod", Some(reason), false);
        }
        (request, true, rx)
    }

    /// Call `call_id` was decided without asking (a restored pod whose rules
    /// or hooks changed): its restored request, if any, ends.
    pub fn settle(&self, call_id: &str) {
        let restored: Vec<String> = {
            let mut inner = self.inner();
            inner.early.remove(call_id);
            inner
                .own
                .iter()
                .filter(|(_, o)| o.call_id == call_id && o.waiter.is_none())
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in restored {
            let reason = "after the pod restarted, the call was decided without asking".to_owned();
            let _ = self.answer(&id, false, "pod", Some(reason), false);
        }
    }
}

/// Ends a request whose call stopped waiting (the turn was cancelled or the
/// pod stopped) unless it was answered.
struct Abandoned<'a> {
    broker: &'a Broker,
    id: Option<String>,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if self.broker.held.load(Ordering::SeqCst) {
            return;
        }
        if let Some(id) = self.id.take() {
            let reason = "the call was cancelled before anyone answered".to_owned();
            let _ = self.broker.answer(&id, false, "pod", Some(reason), false);
        }
    }
}

#[async_trait]
impl Approver for Broker {
    fn settle(&self, call_id: &str) {
        Broker::settle(self, call_id);
    }

    async fn ask(&self, call_id: &str, tool: &str, input: &Value, ruling: &Ruling) -> Verdict {
        let rule = ruling.describe();
        {
            let mut inner = self.inner();
            // An answer given after a restart, before the call ran again,
            // holds (over a remembered rule too) only for the call as the
            // person saw it.
            if let Some((seen_input, seen_rule, verdict)) = inner.early.remove(call_id)
                && seen_input == *input
                && seen_rule == rule
            {
                return verdict;
            }
        }
        if self.inner().remembered.contains(&rule) {
            self.settle(call_id);
            return Ok(());
        }
        let (request, new, rx) = self.register(call_id, tool, input, ruling);
        if new && let Err(e) = self.outlet.record_request(&request, call_id) {
            self.inner().own.remove(&request.id);
            return Err(format!(
                "the rule {} asks for a person's approval, but the request could not be logged: {e}",
                ruling.describe()
            ));
        }
        // Sent again after a restore: whoever lost it sees it anew.
        if !self.outlet.show(&Event::ApprovalRequest(request.clone())) {
            self.outlet.forward(ApprovalUpdate::Requested {
                request: request.clone(),
            });
        }
        let mut guard = Abandoned {
            broker: self,
            id: Some(request.id.clone()),
        };
        let left = request.expires_ms.saturating_sub(now_ms());
        let mut rx = rx;
        let verdict = tokio::select! {
            answer = &mut rx => answer.unwrap_or_else(|_| Err("the approval request was dropped".into())),
            () = tokio::time::sleep(Duration::from_millis(left)) => {
                let secs = self.timeout.as_secs();
                let reason = format!(
                    "nobody answered the approval request {} within {secs} s ([approvals] timeout_s)",
                    request.id
                );
                match self.answer(&request.id, false, "timeout", Some(reason.clone()), false) {
                    Ok(_) => Err(reason),
                    // Answered in the meantime: that answer stands.
                    Err(AnswerError::NotPending(_)) => {
                        tokio::time::timeout(Duration::from_secs(10), rx)
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .unwrap_or(Err(reason))
                    }
                    Err(AnswerError::Log(e)) => Err(format!("{reason} (not logged: {e})")),
                }
            }
        };
        guard.id = None;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use manifest::{Origin, PermissionDecision, PermissionRule, SourcedPermission};

    /// An outlet that records what the broker did; `watched` says whether a
    /// connection answers approvals.
    #[derive(Default)]
    struct Record {
        watched: bool,
        logged: Mutex<Vec<String>>,
        shown: Mutex<Vec<Event>>,
        forwarded: Mutex<Vec<ApprovalUpdate>>,
    }

    impl Outlet for Record {
        fn record_request(&self, request: &ApprovalRequest, call_id: &str) -> Result<(), String> {
            self.logged
                .lock()
                .unwrap()
                .push(format!("request {} {call_id}", request.id));
            Ok(())
        }
        fn record_answer(&self, resolved: &ApprovalResolved) -> Result<u64, String> {
            let mut logged = self.logged.lock().unwrap();
            logged.push(format!("answer {} {}", resolved.id, resolved.approved));
            Ok(logged.len() as u64)
        }
        fn show(&self, event: &Event) -> bool {
            self.shown.lock().unwrap().push(event.clone());
            self.watched
        }
        fn forward(&self, update: ApprovalUpdate) {
            self.forwarded.lock().unwrap().push(update);
        }
    }

    fn ask_rule() -> Ruling {
        Ruling {
            decision: PermissionDecision::Ask,
            rule: SourcedPermission {
                rule: PermissionRule {
                    tool: "Bash".into(),
                    command: Some("git push*".into()),
                    path: None,
                    decision: PermissionDecision::Ask,
                },
                origin: Origin::Overlay,
            },
        }
    }

    fn broker(watched: bool, timeout: Duration) -> (Arc<Broker>, Arc<Record>) {
        let record = Arc::new(Record {
            watched,
            ..Record::default()
        });
        let broker = Arc::new(Broker::new("main.c", timeout, record.clone()));
        (broker, record)
    }

    async fn pending(broker: &Broker) -> ApprovalRequest {
        for _ in 0..500 {
            if let Some(r) = broker.list().into_iter().next() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("no request came");
    }

    #[tokio::test]
    async fn an_unwatched_request_goes_up_and_a_remembered_rule_asks_no_more() {
        let (broker, record) = broker(false, Duration::from_secs(60));
        let input = serde_json::json!({"command": "git push"});
        let asking = {
            let broker = Arc::clone(&broker);
            let input = input.clone();
            tokio::spawn(async move { broker.ask("c1", "Bash", &input, &ask_rule()).await })
        };
        let request = pending(&broker).await;
        assert_eq!(request.id, "main.c/1");
        assert!(broker.is_own("main.c/1") && !broker.is_own("main.c.g/1"));
        assert!(matches!(
            &record.forwarded.lock().unwrap()[..],
            [ApprovalUpdate::Requested { request: r }] if r.id == "main.c/1"
        ));
        assert_eq!(
            broker.answer("main.c/9", true, "client", None, false),
            Err(AnswerError::NotPending("main.c/9".into()))
        );
        broker
            .answer("main.c/1", true, "client", None, true)
            .unwrap();
        assert_eq!(asking.await.unwrap(), Ok(()));
        // Remembered: the same rule allows the next call without a request.
        assert_eq!(broker.ask("c2", "Bash", &input, &ask_rule()).await, Ok(()));
        assert_eq!(
            *record.logged.lock().unwrap(),
            ["request main.c/1 c1", "answer main.c/1 true"]
        );
        assert!(broker.list().is_empty());
    }

    #[tokio::test]
    async fn a_watched_request_stays_here_and_times_out_denied() {
        let (broker, record) = broker(true, Duration::from_millis(50));
        let input = serde_json::json!({"command": "git push"});
        let verdict = broker.ask("c1", "Bash", &input, &ask_rule()).await;
        let reason = verdict.unwrap_err();
        assert!(
            reason.contains("nobody answered the approval request main.c/1 within 0 s"),
            "{reason}"
        );
        assert!(
            record
                .forwarded
                .lock()
                .unwrap()
                .iter()
                .all(|u| matches!(u, ApprovalUpdate::Resolved { .. }))
        );
        assert!(matches!(
            record.shown.lock().unwrap().last(),
            Some(Event::ApprovalResolved(r)) if r.by == "timeout" && !r.approved
        ));
    }

    #[tokio::test]
    async fn a_replayed_request_is_asked_again_with_its_id_and_an_early_answer_waits_for_it() {
        let (broker, record) = broker(true, Duration::from_secs(60));
        let input = serde_json::json!({"command": "git push"});
        let old = ApprovalRequest {
            id: "main.c/4".into(),
            pod: "main.c".into(),
            tool: "Bash".into(),
            input: input.clone(),
            rule: ask_rule().describe(),
            requested_ms: 1,
            expires_ms: u64::MAX,
        };
        broker.replay_request(old.clone(), "c4".into());
        broker.replay_request(
            ApprovalRequest {
                id: "main.c/5".into(),
                ..old.clone()
            },
            "c5".into(),
        );
        broker.replay_answer(&ApprovalResolved {
            id: "main.c/5".into(),
            approved: true,
            by: "client".into(),
            reason: None,
            remember: true,
        });
        assert_eq!(broker.restored_calls(), ["c4"]);
        // Answered before the call ran again: the answer waits for it.
        broker
            .answer("main.c/4", false, "client", Some("no".into()), false)
            .unwrap();
        let other_rule = Ruling {
            rule: SourcedPermission {
                origin: Origin::BuiltIn,
                ..ask_rule().rule
            },
            ..ask_rule()
        };
        assert_eq!(
            broker.ask("c4", "Bash", &input, &ask_rule()).await,
            Err("no".into())
        );
        // The remembered answer of the replayed log still allows its rule.
        assert_eq!(broker.ask("c6", "Bash", &input, &ask_rule()).await, Ok(()));
        // New requests number on from the log.
        let asking = {
            let broker = Arc::clone(&broker);
            let input = input.clone();
            tokio::spawn(async move { broker.ask("c7", "Bash", &input, &other_rule).await })
        };
        assert_eq!(pending(&broker).await.id, "main.c/6");
        asking.abort();
        let _ = asking.await;
        assert!(
            broker.list().is_empty(),
            "an abandoned call ends its request"
        );
        assert!(
            record
                .logged
                .lock()
                .unwrap()
                .iter()
                .any(|l| l == "answer main.c/6 false")
        );
    }

    #[tokio::test]
    async fn restored_requests_whose_call_was_answered_end_and_subtrees_are_kept_apart() {
        let (broker, _record) = broker(false, Duration::from_secs(60));
        let request = |id: &str, pod: &str| ApprovalRequest {
            id: id.into(),
            pod: pod.into(),
            tool: "Bash".into(),
            input: serde_json::Value::Null,
            rule: String::new(),
            requested_ms: 1,
            expires_ms: 2,
        };
        broker.replay_request(request("main.c/1", "main.c"), "c1".into());
        broker.drop_unless_open(&["other".into()]);
        assert!(broker.list().is_empty());
        for (id, pod) in [("main.c.g/1", "main.c.g"), ("main.c.gx/1", "main.c.gx")] {
            broker.child_update(ApprovalUpdate::Requested {
                request: request(id, pod),
            });
        }
        assert_eq!(broker.list().len(), 2);
        broker.forget_subtree("main.c.g");
        let left: Vec<String> = broker.list().into_iter().map(|r| r.id).collect();
        assert_eq!(left, ["main.c.gx/1"]);
        assert_eq!(owner_of("main.c.gx/1"), "main.c.gx");
        assert!(within("main.c.g.h", "main.c.g") && !within("main.c.gx", "main.c.g"));
    }

    #[tokio::test]
    async fn a_held_broker_leaves_an_abandoned_request_pending() {
        let (broker, record) = broker(true, Duration::from_secs(60));
        let asking = {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move {
                broker
                    .ask("c1", "Bash", &serde_json::Value::Null, &ask_rule())
                    .await
            })
        };
        pending(&broker).await;
        assert!(broker.hold_for_restore());
        asking.abort();
        let _ = asking.await;
        assert_eq!(broker.list().len(), 1);
        assert_eq!(*record.logged.lock().unwrap(), ["request main.c/1 c1"]);
    }

    #[tokio::test]
    async fn a_restored_request_gets_a_fresh_wait_unless_its_call_changed() {
        let (broker, record) = broker(true, Duration::from_secs(60));
        let input = serde_json::json!({"command": "git push"});
        let old = ApprovalRequest {
            id: "main.c/1".into(),
            pod: "main.c".into(),
            tool: "Bash".into(),
            input: input.clone(),
            rule: ask_rule().describe(),
            requested_ms: 1,
            // Long past: the pod was down for a while.
            expires_ms: 2,
        };
        broker.replay_request(old.clone(), "c1".into());
        broker.replay_request(
            ApprovalRequest {
                id: "main.c/2".into(),
                ..old.clone()
            },
            "c2".into(),
        );
        broker.replay_request(
            ApprovalRequest {
                id: "main.c/3".into(),
                ..old.clone()
            },
            "c3".into(),
        );
        // Same call: asked again with the same id, and not timed out at once.
        let asking = {
            let broker = Arc::clone(&broker);
            let input = input.clone();
            tokio::spawn(async move { broker.ask("c1", "Bash", &input, &ask_rule()).await })
        };
        for _ in 0..500 {
            if broker
                .list()
                .iter()
                .any(|r| r.id == "main.c/1" && r.expires_ms > 2)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(
            broker
                .list()
                .iter()
                .any(|r| r.id == "main.c/1" && r.expires_ms > now_ms())
        );
        broker
            .answer("main.c/1", true, "client", None, false)
            .unwrap();
        assert_eq!(asking.await.unwrap(), Ok(()));
        // Changed call: the old request ends, a new one is asked.
        let changed = serde_json::json!({"command": "git push --force"});
        let asking = {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move { broker.ask("c2", "Bash", &changed, &ask_rule()).await })
        };
        for _ in 0..500 {
            if broker.list().iter().any(|r| r.id == "main.c/4") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let ids: Vec<String> = broker.list().into_iter().map(|r| r.id).collect();
        assert!(
            ids.contains(&"main.c/4".to_string()) && !ids.contains(&"main.c/2".to_string()),
            "{ids:?}"
        );
        asking.abort();
        let _ = asking.await;
        // Decided without asking (the rules changed): the request ends.
        broker.settle("c3");
        assert!(broker.list().is_empty(), "{:?}", broker.list());
        let logged = record.logged.lock().unwrap().clone();
        for id in ["main.c/2", "main.c/3"] {
            assert!(logged.contains(&format!("answer {id} false")), "{logged:?}");
        }
    }

    #[tokio::test]
    async fn a_stopped_childs_requests_end_above_and_requests_go_up_again_when_nobody_watches() {
        let (broker, record) = broker(true, Duration::from_secs(60));
        let request = ApprovalRequest {
            id: "main.c.g/1".into(),
            pod: "main.c.g".into(),
            tool: "Bash".into(),
            input: serde_json::Value::Null,
            rule: String::new(),
            requested_ms: 1,
            expires_ms: 2,
        };
        broker.child_update(ApprovalUpdate::Requested { request });
        assert!(record.forwarded.lock().unwrap().is_empty(), "watched here");
        broker.reforward();
        assert!(matches!(
            &record.forwarded.lock().unwrap()[..],
            [ApprovalUpdate::Requested { request: r }] if r.id == "main.c.g/1"
        ));
        broker.drop_subtree("main.c");
        assert!(broker.list().is_empty());
        assert!(matches!(
            record.shown.lock().unwrap().last(),
            Some(Event::ApprovalResolved(r)) if r.id == "main.c.g/1" && r.by == "pod"
        ));
        assert!(matches!(
            record.forwarded.lock().unwrap().last(),
            Some(ApprovalUpdate::Resolved { resolved }) if resolved.id == "main.c.g/1"
        ));
    }
}
