//! Hooks and permission rules around every tool call of the worker: the rules
//! first (a `deny` refuses the call naming the rule), then the `pre_tool`
//! hooks (which may block it or rewrite its input, checked against the rules
//! again), then after the call the `post_tool` hooks (which may add a note or
//! turn the result into an error).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use llm_worker::tool::{ToolError, ToolOutput};
use llm_worker::tool_server::{CallInfo, Decision, ToolInterceptor};
use manifest::{HookEvent, PermissionDecision};
use serde_json::{Map, Value};

use crate::{Hooks, Rules};

/// The interceptor of one pod.
#[derive(Debug)]
pub struct HookInterceptor {
    hooks: Arc<Hooks>,
    rules: Rules,
    /// Notes of `pre_tool` hooks, by call id, until the result is built.
    notes: Mutex<HashMap<String, Vec<String>>>,
}

impl HookInterceptor {
    /// Applies `rules` and `hooks` to every call.
    pub fn new(hooks: Arc<Hooks>, rules: Rules) -> Self {
        HookInterceptor {
            hooks,
            rules,
            notes: Mutex::new(HashMap::new()),
        }
    }

    /// The refusal of a call a rule denies, if one does.
    fn denied(&self, tool: &str, input: &Value) -> Option<String> {
        let ruling = self.rules.decide(tool, input, self.hooks.cwd())?;
        (ruling.decision == PermissionDecision::Deny)
            .then(|| format!("the rule {} denies this call", ruling.describe()))
    }

    fn notes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.notes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The arguments as JSON (malformed ones as `null`: the tool reports them).
fn arguments(call: &CallInfo) -> Value {
    serde_json::from_str(&call.arguments).unwrap_or(Value::Null)
}

#[async_trait]
impl ToolInterceptor for HookInterceptor {
    async fn before(&self, call: &CallInfo) -> Decision {
        let hooked = self.hooks.any_for(HookEvent::PreTool, Some(&call.name));
        if self.rules.is_empty() && !hooked {
            return Decision::Allow;
        }
        let input = arguments(call);
        if let Some(refusal) = self.denied(&call.name, &input) {
            return Decision::Deny(refusal);
        }
        if !hooked {
            return Decision::Allow;
        }
        let mut fields = Map::new();
        fields.insert("tool".into(), call.name.clone().into());
        fields.insert("input".into(), input);
        let verdict = self
            .hooks
            .run(HookEvent::PreTool, Some(&call.name), fields)
            .await;
        if let Some(reason) = verdict.blocked {
            return Decision::Deny(format!("a pre_tool hook blocked this call: {reason}"));
        }
        if !verdict.notes.is_empty() {
            self.notes().insert(call.id.clone(), verdict.notes);
        }
        match verdict.input {
            Some(new) => {
                // A hook's input obeys the same rules as the model's.
                if let Some(refusal) = self.denied(&call.name, &new) {
                    self.notes().remove(&call.id);
                    return Decision::Deny(format!("as a pre_tool hook rewrote it, {refusal}"));
                }
                Decision::Rewrite(new.to_string())
            }
            None => Decision::Allow,
        }
    }

    async fn after(&self, call: &CallInfo, result: &mut Result<ToolOutput, ToolError>) {
        let mut notes = self.notes().remove(&call.id).unwrap_or_default();
        if self.hooks.any_for(HookEvent::PostTool, Some(&call.name)) {
            let mut fields = Map::new();
            fields.insert("tool".into(), call.name.clone().into());
            fields.insert("input".into(), arguments(call));
            let shown = match &*result {
                Ok(out) => serde_json::json!({
                    "is_error": false,
                    "summary": out.summary,
                    "content": out.content,
                }),
                Err(e) => serde_json::json!({"is_error": true, "summary": e.to_string()}),
            };
            fields.insert("result".into(), shown);
            let verdict = self
                .hooks
                .run(HookEvent::PostTool, Some(&call.name), fields)
                .await;
            notes.extend(verdict.notes);
            if let Some(reason) = verdict.blocked {
                let said = match &*result {
                    Ok(out) => out.summary.clone(),
                    Err(e) => e.to_string(),
                };
                *result = Err(ToolError::ExecutionFailed(format!(
                    "the call ran ({said}), but a post_tool hook reported a problem: {reason}"
                )));
            }
        }
        if notes.is_empty() {
            return;
        }
        let text: Vec<String> = notes.iter().map(|n| format!("[hook: {n}]")).collect();
        match result {
            Ok(out) => {
                let content = out.content.get_or_insert_with(String::new);
                if !content.is_empty() {
                    content.push('\n');
                }
                content.push_str(&text.join("\n"));
            }
            Err(ToolError::InvalidArgument(m) | ToolError::ExecutionFailed(m)) => {
                m.push('\n');
                m.push_str(&text.join("\n"));
            }
        }
    }
}
