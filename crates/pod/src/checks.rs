//! The user's hooks and permission rules, wired into the pod: every hook run
//! committed to the log (a `hook` entry) and then broadcast (`hook` event),
//! failures raised as alerts; `user_prompt` checked on each connection before
//! its `run` reaches the controller; `session_start`, `turn_end` and
//! `pre_compact` run where those happen. See docs/hooks.md.

use std::sync::Arc;

use hooks::{HookObserver, Hooks};
use llm_worker::worker::BeforeCompaction;
use manifest::HookEvent;
use protocol::{AlertLevel, AlertSource, ErrorCode, Event, HookRun, Method, Segment};
use serde_json::{Map, Value};
use session_store::EntryBody;

use crate::state::{SharedState, lock};

/// Persists each hook run, then tells the pod's clients.
struct Observer {
    state: SharedState,
}

impl HookObserver for Observer {
    fn ran(&self, run: HookRun) {
        let mut state = lock(&self.state);
        let done = state
            .commit(EntryBody::Hook { run: run.clone() })
            .and_then(|_| state.broadcast(&Event::Hook(run)));
        if let Err(e) = done {
            tracing::error!(error = %e, "cannot record a hook run");
            let _ = state.alert(
                AlertLevel::Error,
                AlertSource::Pod,
                format!("a hook run could not be recorded: {e}"),
            );
        }
    }

    fn alert(&self, message: &str) {
        tracing::warn!(message, "hook failed");
        let _ = lock(&self.state).alert(AlertLevel::Warn, AlertSource::Tool, message);
    }
}

/// The pod's hooks, reporting to `state`.
pub(crate) fn build(
    manifest: &manifest::Manifest,
    env: hooks::HookEnv,
    state: &SharedState,
) -> Result<Arc<Hooks>, String> {
    let observer = Arc::new(Observer {
        state: state.clone(),
    });
    Hooks::new(&manifest.hooks, env, observer).map(Arc::new)
}

/// Runs the hooks of an event that cannot be blocked (`session_start`,
/// `turn_end`); a block is recorded and the pod goes on.
pub(crate) async fn tell(hooks: &Hooks, event: HookEvent, fields: Map<String, Value>) {
    if hooks.any_for(event, None) {
        let _ = hooks.run(event, None, fields).await;
    }
}

/// `user_prompt`: a `run`'s input checked before the controller sees it. A
/// hook's block refuses the input (nothing is logged: the client gets only
/// the error); its notes go with the input for the model.
pub(crate) async fn check_prompt(hooks: Option<&Hooks>, method: Method) -> Result<Method, Event> {
    let Some(hooks) = hooks.filter(|h| h.any_for(HookEvent::UserPrompt, None)) else {
        return Ok(method);
    };
    let Method::Run { mut input } = method else {
        return Ok(method);
    };
    match user_prompt(hooks, &Segment::flatten_to_text(&input)).await {
        Ok(notes) => {
            input.extend(notes.into_iter().map(Segment::text));
            Ok(Method::Run { input })
        }
        Err(reason) => Err(Event::Error {
            code: ErrorCode::InvalidRequest,
            message: format!("refused by a user_prompt hook: {reason}"),
        }),
    }
}

/// `user_prompt` on a child's first task, which its parent writes into the
/// child's log (it never arrives as a `run`): the task with the hooks' notes,
/// or why it is refused.
pub(crate) async fn check_task(hooks: &Hooks, task: String) -> Result<String, String> {
    if !hooks.any_for(HookEvent::UserPrompt, None) {
        return Ok(task);
    }
    let notes = user_prompt(hooks, &task).await?;
    Ok(task + &notes.concat())
}

/// Runs the `user_prompt` hooks on `prompt`: the notes to add to it, or the
/// reason it is refused.
async fn user_prompt(hooks: &Hooks, prompt: &str) -> Result<Vec<String>, String> {
    let mut fields = Map::new();
    fields.insert("prompt".into(), prompt.into());
    let verdict = hooks.run(HookEvent::UserPrompt, None, fields).await;
    if let Some(reason) = verdict.blocked {
        return Err(reason);
    }
    Ok(verdict
        .notes
        .into_iter()
        .map(|note| format!("\n\n[hook: {note}]"))
        .collect())
}

/// `pre_compact` hooks, awaited by the worker before it compacts.
pub(crate) struct PreCompact(pub Arc<Hooks>);

#[async_trait::async_trait]
impl BeforeCompaction for PreCompact {
    async fn before_compaction(&self, tokens_before: u64, trigger: &'static str) {
        let mut fields = Map::new();
        fields.insert("tokens".into(), tokens_before.into());
        fields.insert("trigger".into(), trigger.into());
        tell(&self.0, HookEvent::PreCompact, fields).await;
    }
}
