//! Hooks and permission rules around every tool call of the worker: the rules
//! first (a `deny` refuses the call naming the rule), then the `pre_tool`
//! hooks (which may block it or rewrite its input, checked against the rules
//! again), then for an `ask` a person's approval of the input as it will run;
//! after the call the `post_tool` hooks (which may add a note or turn the
//! result into an error).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use llm_worker::tool::{ToolError, ToolOutput};
use llm_worker::tool_server::{CallInfo, Decision, ToolInterceptor};
use manifest::{HookEvent, PermissionDecision};
use serde_json::{Map, Value};

use crate::approvals::Approver;
use crate::{Hooks, Rules, Ruling};

/// The interceptor of one pod.
#[derive(Debug)]
pub struct HookInterceptor {
    hooks: Arc<Hooks>,
    rules: Rules,
    /// Who answers `ask` rulings (none: they are refused).
    approver: Option<Arc<dyn Approver>>,
    /// Notes of `pre_tool` hooks, by call id, until the result is built.
    notes: Mutex<HashMap<String, Vec<String>>>,
}

impl std::fmt::Debug for dyn Approver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Approver")
    }
}

impl HookInterceptor {
    /// Applies `rules` and `hooks` to every call; `approver` answers the
    /// calls an `ask` rule matches.
    pub fn new(hooks: Arc<Hooks>, rules: Rules, approver: Option<Arc<dyn Approver>>) -> Self {
        HookInterceptor {
            hooks,
            rules,
            approver,
            notes: Mutex::new(HashMap::new()),
        }
    }

    /// What the rules say of a call: the refusal of a `deny`, or the `ask`
    /// ruling that needs a person.
    fn ruling(&self, tool: &str, input: &Value) -> Result<Option<Ruling>, String> {
        match self.rules.decide(tool, input, self.hooks.cwd()) {
            Some(r) if r.decision == PermissionDecision::Deny => {
                Err(format!("the rule {} denies this call", r.describe()))
            }
            Some(r) if r.decision == PermissionDecision::Ask => Ok(Some(r)),
            _ => Ok(None),
        }
    }

    /// Asks for a person's approval of `call` with `input`.
    async fn approval(&self, call: &CallInfo, input: &Value, ruling: &Ruling) -> Option<String> {
        let Some(approver) = &self.approver else {
            return Some(format!(
                "the rule {} asks for a person's approval, and this pod has nobody to ask",
                ruling.describe()
            ));
        };
        let verdict = approver.ask(&call.id, &call.name, input, ruling).await;
        verdict.err().map(|reason| {
            format!(
                "the rule {} asked for a person's approval, and the call was not approved: {reason}",
                ruling.describe()
            )
        })
    }

    fn notes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.notes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The decision on a call, and whether a person was asked.
    async fn check(&self, call: &CallInfo) -> (Decision, bool) {
        let hooked = self.hooks.any_for(HookEvent::PreTool, Some(&call.name));
        if self.rules.is_empty() && !hooked {
            return (Decision::Allow, false);
        }
        let input = arguments(call);
        let ask = match self.ruling(&call.name, &input) {
            Ok(ask) => ask,
            Err(refusal) => return (Decision::Deny(refusal), false),
        };
        if !hooked {
            return match ask {
                Some(ruling) => match self.approval(call, &input, &ruling).await {
                    Some(refusal) => (Decision::Deny(refusal), true),
                    None => (Decision::Allow, true),
                },
                None => (Decision::Allow, false),
            };
        }
        let mut fields = Map::new();
        fields.insert("tool".into(), call.name.clone().into());
        fields.insert("input".into(), input.clone());
        let verdict = self
            .hooks
            .run(HookEvent::PreTool, Some(&call.name), fields)
            .await;
        if let Some(reason) = verdict.blocked {
            let refusal = format!("a pre_tool hook blocked this call: {reason}");
            return (Decision::Deny(refusal), false);
        }
        let (decision, input, ask) = match verdict.input {
            Some(new) => {
                // A hook's input obeys the same rules as the model's.
                match self.ruling(&call.name, &new) {
                    Ok(ask) => (Decision::Rewrite(new.to_string()), new, ask),
                    Err(refusal) => {
                        let refusal = format!("as a pre_tool hook rewrote it, {refusal}");
                        return (Decision::Deny(refusal), false);
                    }
                }
            }
            None => (Decision::Allow, input, ask),
        };
        // The person approves the input as it will run.
        let asked = ask.is_some();
        if let Some(ruling) = ask
            && let Some(refusal) = self.approval(call, &input, &ruling).await
        {
            return (Decision::Deny(refusal), true);
        }
        if !verdict.notes.is_empty() {
            self.notes().insert(call.id.clone(), verdict.notes);
        }
        (decision, asked)
    }
}

/// The arguments as JSON (malformed ones as `null`: the tool reports them).
fn arguments(call: &CallInfo) -> Value {
    serde_json::from_str(&call.arguments).unwrap_or(Value::Null)
}

#[async_trait]
impl ToolInterceptor for HookInterceptor {
    async fn before(&self, call: &CallInfo) -> Decision {
        let (decision, asked) = self.check(call).await;
        if !asked && let Some(approver) = &self.approver {
            approver.settle(&call.id);
        }
        decision
    }

    fn cancelled(&self, call_id: &str) {
        self.notes().remove(call_id);
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
