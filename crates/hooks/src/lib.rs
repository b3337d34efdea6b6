//! The user's own checks around a pod's work: `[[hooks]]` (commands run at
//! six points, which may block, rewrite a tool's input or add a note) and
//! `[[permissions]]` (rules that allow or deny tool calls).
//!
//! [`Hooks`] runs the hooks of one event in manifest order ([`runner`]) and
//! reports every run to a [`HookObserver`] (the pod logs it and tells its
//! clients); [`rules::Rules`] decides tool calls; [`approvals`] holds the
//! calls an `ask` rule paused until a person answers; [`interceptor`]
//! applies all of it around every tool call of the worker.

#![forbid(unsafe_code)]

pub mod approvals;
pub mod interceptor;
pub mod points;
pub mod rules;
pub mod runner;

use std::sync::Arc;
use std::time::Duration;

use globset::{Glob, GlobMatcher};
use manifest::{Hook, HookEvent, OnError, SourcedHook};
use protocol::HookRun;
use serde_json::{Map, Value};

pub use approvals::{Approver, Broker, Outlet};
pub use interceptor::HookInterceptor;
pub use rules::{Rules, Ruling};
pub use runner::{Answer, HookEnv, Ran};

/// Who is told about hook runs.
pub trait HookObserver: Send + Sync {
    /// A hook ran (persist it, then tell clients).
    fn ran(&self, run: HookRun);
    /// A hook failed and the work went on: the user should know.
    fn alert(&self, message: &str);
}

/// What the hooks of one event decided together.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// Why the work is blocked, when a hook blocked it (later hooks did not run).
    pub blocked: Option<String>,
    /// The tool input as the hooks left it, when one replaced it.
    pub input: Option<Value>,
    /// Notes for the model, in order.
    pub notes: Vec<String>,
}

/// The hooks of one pod, ready to run.
pub struct Hooks {
    hooks: Vec<(Hook, Option<GlobMatcher>)>,
    env: HookEnv,
    observer: Arc<dyn HookObserver>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("hooks", &self.hooks.len())
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl Hooks {
    /// The manifest's hooks for a pod (fails only on a `match` glob the
    /// manifest check would have refused).
    pub fn new(
        hooks: &[SourcedHook],
        env: HookEnv,
        observer: Arc<dyn HookObserver>,
    ) -> Result<Self, String> {
        let mut compiled = Vec::with_capacity(hooks.len());
        for h in hooks {
            let matcher = match &h.hook.matcher {
                Some(m) => Some(
                    Glob::new(m)
                        .map_err(|e| format!("hook match {m:?}: {}", e.kind()))?
                        .compile_matcher(),
                ),
                None => None,
            };
            compiled.push((h.hook.clone(), matcher));
        }
        Ok(Hooks {
            hooks: compiled,
            env,
            observer,
        })
    }

    /// Whether any hook runs for `event` (and `tool`, for tool events).
    pub fn any_for(&self, event: HookEvent, tool: Option<&str>) -> bool {
        self.matching(event, tool).next().is_some()
    }

    /// The hooks for `event` (and `tool`), in manifest order.
    fn matching(&self, event: HookEvent, tool: Option<&str>) -> impl Iterator<Item = &Hook> {
        self.hooks
            .iter()
            .filter(move |(h, m)| {
                h.event == event
                    && match (m, tool) {
                        (None, _) => true,
                        (Some(m), Some(tool)) => m.is_match(tool),
                        (Some(_), None) => false,
                    }
            })
            .map(|(h, _)| h)
    }

    /// The pod's working directory.
    pub fn cwd(&self) -> &std::path::Path {
        &self.env.cwd
    }

    /// Runs the hooks of `event` in order with `fields` (plus the pod, session,
    /// cwd and event) as their input. A block stops the rest; a replaced
    /// `input` is what the next hook sees.
    pub async fn run(
        &self,
        event: HookEvent,
        tool: Option<&str>,
        fields: Map<String, Value>,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        let mut input = Map::new();
        input.insert("pod".into(), self.env.pod.clone().into());
        input.insert("session".into(), self.env.session.clone().into());
        input.insert("cwd".into(), self.env.cwd.display().to_string().into());
        input.insert("event".into(), event.as_str().into());
        input.extend(fields);
        let mut input = Value::Object(input);
        for hook in self.matching(event, tool) {
            let mut cut = CutShort {
                observer: Some(self.observer.as_ref()),
                event,
                hook,
                tool,
                started: std::time::Instant::now(),
            };
            let ran = runner::run(&self.env, hook, &input).await;
            cut.observer = None;
            let (decision, message) = match ran.answer {
                Answer::Continue { input: new, note } => {
                    let rewrote = new.is_some() && event == HookEvent::PreTool;
                    if let Some(new) = new.filter(|_| event == HookEvent::PreTool) {
                        input["input"] = new.clone();
                        verdict.input = Some(new);
                    }
                    if let Some(n) = &note {
                        verdict.notes.push(n.clone());
                    }
                    let decision = if rewrote {
                        "rewrite"
                    } else if note.is_some() {
                        "note"
                    } else {
                        "continue"
                    };
                    (decision, note)
                }
                Answer::Block(reason) => {
                    verdict.blocked = Some(reason.clone());
                    ("block", Some(reason))
                }
                Answer::Failed(error) => {
                    let what = format!("{} hook `{}` {error}", event, hook.command);
                    if hook.on_error == OnError::Block {
                        verdict.blocked = Some(format!("{what} (on_error = \"block\")"));
                        ("block", Some(error))
                    } else {
                        self.observer.alert(&format!("{what}; going on"));
                        ("error", Some(error))
                    }
                }
            };
            self.observer.ran(HookRun {
                event: event.as_str().to_owned(),
                command: hook.command.to_string(),
                tool: tool.map(str::to_owned),
                exit_code: ran.exit_code,
                duration_ms: millis(ran.duration),
                decision: decision.to_owned(),
                message,
            });
            if verdict.blocked.is_some() {
                break;
            }
        }
        verdict
    }
}

/// Records a hook run that was cut short (its work was cancelled, so the
/// future running it was dropped): every run is in the log, this one too.
struct CutShort<'a> {
    observer: Option<&'a dyn HookObserver>,
    event: HookEvent,
    hook: &'a Hook,
    tool: Option<&'a str>,
    started: std::time::Instant,
}

impl Drop for CutShort<'_> {
    fn drop(&mut self) {
        if let Some(observer) = self.observer.take() {
            observer.ran(HookRun {
                event: self.event.as_str().to_owned(),
                command: self.hook.command.to_string(),
                tool: self.tool.map(str::to_owned),
                exit_code: None,
                duration_ms: millis(self.started.elapsed()),
                decision: "cancelled".to_owned(),
                message: Some("cut short: the work it guarded was cancelled".to_owned()),
            });
        }
    }
}

/// Whole milliseconds, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
