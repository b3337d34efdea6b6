//! Where the hooks of each event run in a pod: `user_prompt` on a `run`
//! before the controller sees it (and on a child's first task),
//! `session_start` and `turn_end` as told, `pre_compact` before the worker
//! compacts.

use std::sync::Arc;

use llm_worker::worker::BeforeCompaction;
use manifest::HookEvent;
use protocol::{ErrorCode, Event, Method, Segment};
use serde_json::{Map, Value};

use crate::Hooks;

/// Runs the hooks of an event that cannot be blocked (`session_start`,
/// `turn_end`); a block is recorded and the pod goes on.
pub async fn tell(hooks: &Hooks, event: HookEvent, fields: Map<String, Value>) {
    if hooks.any_for(event, None) {
        let _ = hooks.run(event, None, fields).await;
    }
}

/// `user_prompt`: a `run`'s input checked before the controller sees it. A
/// hook's block refuses the input (nothing is logged: the client gets only
/// the error); its notes go with the input for the model.
pub async fn check_prompt(hooks: Option<&Hooks>, method: Method) -> Result<Method, Event> {
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
pub async fn check_task(hooks: &Hooks, task: String) -> Result<String, String> {
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
pub struct PreCompact(pub Arc<Hooks>);

#[async_trait::async_trait]
impl BeforeCompaction for PreCompact {
    async fn before_compaction(&self, tokens_before: u64, trigger: &'static str) {
        let mut fields = Map::new();
        fields.insert("tokens".into(), tokens_before.into());
        fields.insert("trigger".into(), trigger.into());
        tell(&self.0, HookEvent::PreCompact, fields).await;
    }
}
