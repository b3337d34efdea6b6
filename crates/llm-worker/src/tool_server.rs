//! Runs the tool calls of one model response: concurrently, each result capped
//! to what the model's context can take, and every failure — bad arguments, an
//! unknown tool, an error, a panic, a policy refusal — turned into a result the
//! model can read. The model always gets exactly one result per call.

use std::collections::HashMap;
use std::sync::Arc;

use llm_types::Item;
use tokio_util::sync::CancellationToken;

use crate::llm_client::compact::compact_spec;
use crate::llm_client::request::ToolSpec;
use crate::tool::{Tool, ToolDefinition, ToolError, ToolMeta, ToolOutput, ToolSource};

/// What a pre-call interceptor decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run the call as the model wrote it.
    Allow,
    /// Do not run it; the model reads this reason as the result.
    Deny(String),
    /// Run it with these arguments instead.
    Rewrite(String),
}

/// A tool call about to run or just run, as interceptors see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// Call id.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments (JSON text).
    pub arguments: String,
}

/// A check around every tool call: permission rules and the user's hooks.
#[async_trait::async_trait]
pub trait ToolInterceptor: Send + Sync {
    /// Decides whether (and with which arguments) the call runs.
    async fn before(&self, call: &CallInfo) -> Decision {
        let _ = call;
        Decision::Allow
    }

    /// Sees (and may change) the result of a call that ran, before the model does.
    async fn after(&self, call: &CallInfo, result: &mut Result<ToolOutput, ToolError>) {
        let _ = (call, result);
    }

    /// The call was cut short by a cancel (between `before` and `after`, or
    /// during either): forget what was kept for it.
    fn cancelled(&self, call_id: &str) {
        let _ = call_id;
    }
}

/// Why a tool server could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolServerError {
    /// Two tools share a name: the model could not tell them apart.
    #[error("two tools are named `{0}`; tool names must be unique")]
    DuplicateName(String),
}

/// The tools of one worker and the limits on their output.
pub struct ToolServer {
    tools: HashMap<String, (ToolMeta, Arc<dyn Tool>)>,
    order: Vec<String>,
    /// Tools that come and go, after the fixed ones (a name a fixed tool has
    /// is not offered again).
    sources: Vec<Arc<dyn ToolSource>>,
    output_limit: usize,
    interceptors: Vec<Arc<dyn ToolInterceptor>>,
    compact: bool,
}

impl std::fmt::Debug for ToolServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolServer")
            .field("tools", &self.order)
            .field("output_limit", &self.output_limit)
            .finish_non_exhaustive()
    }
}

/// The byte cap on one tool result: the manifest's `tool_output_limit`, but never
/// more than a quarter of the context window (at a conservative 4 bytes per
/// token, a quarter of the window in tokens is `context_window` bytes).
pub fn output_limit(tool_output_limit: u64, context_window: u64) -> usize {
    let cap = tool_output_limit.min(context_window.max(1024));
    usize::try_from(cap).unwrap_or(usize::MAX)
}

impl ToolServer {
    /// Instantiates every definition; `output_limit` is the byte cap per result
    /// (see [`output_limit`]).
    pub fn new(
        definitions: &[ToolDefinition],
        output_limit: usize,
    ) -> Result<Self, ToolServerError> {
        let mut tools = HashMap::new();
        let mut order = Vec::new();
        for def in definitions {
            let (meta, tool) = def();
            if tools.contains_key(&meta.name) {
                return Err(ToolServerError::DuplicateName(meta.name));
            }
            order.push(meta.name.clone());
            tools.insert(meta.name.clone(), (meta, tool));
        }
        Ok(ToolServer {
            tools,
            order,
            sources: Vec::new(),
            output_limit,
            interceptors: Vec::new(),
            compact: false,
        })
    }

    /// Adds an interceptor; they run in the order added.
    pub fn intercept(&mut self, interceptor: Arc<dyn ToolInterceptor>) {
        self.interceptors.push(interceptor);
    }

    /// Adds tools whose set can change (asked at each step).
    pub fn add_source(&mut self, source: Arc<dyn ToolSource>) {
        self.sources.push(source);
    }

    /// The changing tools now, without names a fixed tool has.
    fn changing(&self) -> Vec<(ToolMeta, Arc<dyn Tool>)> {
        self.sources
            .iter()
            .flat_map(|s| s.tools())
            .filter(|(meta, _)| !self.tools.contains_key(&meta.name))
            .collect()
    }

    /// Offers the tools in their compact form (see [`compact_spec`]), for
    /// models with a small context window.
    pub fn set_compact(&mut self, compact: bool) {
        self.compact = compact;
    }

    /// The tools as offered to the model, in definition order.
    pub(crate) fn specs(&self) -> Vec<ToolSpec> {
        let changing = self.changing();
        self.order
            .iter()
            .filter_map(|n| self.tools.get(n))
            .map(|(meta, _)| meta)
            .chain(changing.iter().map(|(meta, _)| meta))
            .map(|meta| {
                let spec = ToolSpec {
                    name: meta.name.clone(),
                    description: meta.description.clone(),
                    input_schema: meta.input_schema.clone(),
                };
                if self.compact {
                    compact_spec(&spec)
                } else {
                    spec
                }
            })
            .collect()
    }

    /// Tool names, in the order offered: the fixed ones, then those of the
    /// sources now.
    pub fn names(&self) -> Vec<String> {
        let mut names = self.order.clone();
        names.extend(self.changing().into_iter().map(|(meta, _)| meta.name));
        names
    }

    /// Runs every call concurrently and returns one `Item::ToolResult` per call,
    /// in the calls' order.
    #[cfg(test)]
    pub(crate) async fn run_all(&self, calls: &[CallInfo]) -> Vec<Item> {
        self.run_all_until(calls, &CancellationToken::new()).await
    }

    /// Like [`ToolServer::run_all`], but when `cancel` fires the calls still
    /// running are aborted (their tasks dropped) and answered with
    /// [`INTERRUPTED`], so the model still gets one result per call.
    pub(crate) async fn run_all_until(
        &self,
        calls: &[CallInfo],
        cancel: &CancellationToken,
    ) -> Vec<Item> {
        let mut results: Vec<Option<Item>> = vec![None; calls.len()];
        let mut set = tokio::task::JoinSet::new();
        let mut task_index = HashMap::new();
        let changing = if self.sources.is_empty() {
            Vec::new()
        } else {
            self.changing()
        };
        for (index, call) in calls.iter().enumerate() {
            let found = self.tools.get(&call.name).map(|(_, t)| t).or_else(|| {
                changing
                    .iter()
                    .find(|(meta, _)| meta.name == call.name)
                    .map(|(_, t)| t)
            });
            let Some(tool) = found else {
                let err = ToolError::InvalidArgument(format!(
                    "there is no tool named `{}`; available tools: {}",
                    call.name,
                    self.names().join(", ")
                ));
                results[index] = Some(self.finish(call, Err(err)));
                continue;
            };
            let tool = Arc::clone(tool);
            let interceptors = self.interceptors.clone();
            let mut info = call.clone();
            // A task per call: calls overlap, their checks too (a call waiting
            // for a person's approval holds up no other), and a panic stays
            // inside its task. A cancel aborts the task, checks included.
            let span = tracing::info_span!("tool", name = %call.name, id = %call.id);
            let handle = set.spawn(tracing::Instrument::instrument(
                async move {
                    for interceptor in &interceptors {
                        match interceptor.before(&info).await {
                            Decision::Allow => {}
                            Decision::Deny(reason) => {
                                return Err(ToolError::ExecutionFailed(format!(
                                    "refused by policy: {reason}"
                                )));
                            }
                            Decision::Rewrite(args) => info.arguments = args,
                        }
                    }
                    let started = std::time::Instant::now();
                    let mut out = tool.execute(&info.arguments).await;
                    tracing::info!(
                        ms = started.elapsed().as_millis() as u64,
                        ok = out.is_ok(),
                        "tool call done"
                    );
                    for interceptor in &interceptors {
                        interceptor.after(&info, &mut out).await;
                    }
                    out
                },
                span,
            ));
            task_index.insert(handle.id(), index);
        }
        loop {
            let joined = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    set.abort_all();
                    break;
                }
                joined = set.join_next_with_id() => joined,
            };
            let Some(joined) = joined else { break };
            let (id, out) = match joined {
                Ok((id, out)) => (id, out),
                Err(e) => {
                    let id = e.id();
                    (
                        id,
                        Err(ToolError::ExecutionFailed(format!(
                            "the tool crashed: {}",
                            panic_message(e)
                        ))),
                    )
                }
            };
            if let Some(&index) = task_index.get(&id) {
                results[index] = Some(self.finish(&calls[index], out));
            }
        }
        results
            .into_iter()
            .zip(calls)
            .map(|(r, call)| match r {
                Some(item) => item,
                None if cancel.is_cancelled() => {
                    for interceptor in &self.interceptors {
                        interceptor.cancelled(&call.id);
                    }
                    interrupted_result(&call.id)
                }
                None => {
                    let err = ToolError::ExecutionFailed("the tool produced no result".into());
                    self.finish(call, Err(err))
                }
            })
            .collect()
    }

    /// Applies the output cap and builds the item.
    fn finish(&self, call: &CallInfo, out: Result<ToolOutput, ToolError>) -> Item {
        match out {
            Ok(ToolOutput { summary, content }) => Item::ToolResult {
                call_id: call.id.clone(),
                summary: cap(&summary, self.output_limit.min(2048)),
                content: content.map(|c| cap(&c, self.output_limit)),
                is_error: false,
            },
            Err(e) => Item::ToolResult {
                call_id: call.id.clone(),
                summary: cap(&e.to_string(), self.output_limit),
                content: None,
                is_error: true,
            },
        }
    }
}

/// The result text of a tool call cut short by cancellation (or never run
/// because the stream broke inside it).
pub const INTERRUPTED: &str = "[interrupted]";

/// The result that answers a call that was cut short, keeping the history valid.
pub fn interrupted_result(call_id: &str) -> Item {
    Item::ToolResult {
        call_id: call_id.to_string(),
        summary: INTERRUPTED.to_string(),
        content: None,
        is_error: true,
    }
}

/// The panic payload of a crashed tool task, as text.
fn panic_message(e: tokio::task::JoinError) -> String {
    if e.is_cancelled() {
        return "it was cancelled".into();
    }
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".into()
    }
}

/// Cuts `text` to at most `limit` bytes, keeping head and tail (defined with the tool
/// trait, so tools can cap their own output without this crate).
pub use tool::cap;

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::time::Duration;

    struct Sleepy(Duration, &'static str);

    #[async_trait]
    impl Tool for Sleepy {
        async fn execute(&self, input: &str) -> Result<ToolOutput, ToolError> {
            tokio::time::sleep(self.0).await;
            match self.1 {
                "panic" => panic!("boom"),
                "fail" => Err(ToolError::ExecutionFailed("disk full".into())),
                "big" => Ok(ToolOutput {
                    summary: "big".into(),
                    content: Some("é".repeat(10_000)),
                }),
                _ => Ok(ToolOutput {
                    summary: format!("{} got {input}", self.1),
                    content: None,
                }),
            }
        }
    }

    fn def(name: &'static str, delay_ms: u64, mode: &'static str) -> ToolDefinition {
        Arc::new(move || {
            let tool: Arc<dyn Tool> = Arc::new(Sleepy(Duration::from_millis(delay_ms), mode));
            (ToolMeta::new(name).description(mode), tool)
        })
    }

    fn call(id: &str, name: &str, args: &str) -> CallInfo {
        CallInfo {
            id: id.into(),
            name: name.into(),
            arguments: args.into(),
        }
    }

    fn summary(item: &Item) -> (&str, bool) {
        match item {
            Item::ToolResult {
                summary, is_error, ..
            } => (summary.as_str(), *is_error),
            other => panic!("not a result: {other:?}"),
        }
    }

    /// Each call waits until all three are running: only concurrent execution
    /// can finish (the timeout turns a sequential run into a failure, not a hang).
    struct Meet(Arc<tokio::sync::Barrier>);

    #[async_trait]
    impl Tool for Meet {
        async fn execute(&self, input: &str) -> Result<ToolOutput, ToolError> {
            self.0.wait().await;
            Ok(ToolOutput {
                summary: format!("met {input}"),
                content: None,
            })
        }
    }

    #[tokio::test]
    async fn calls_run_concurrently_and_results_keep_call_order() {
        let barrier = Arc::new(tokio::sync::Barrier::new(3));
        let meet: ToolDefinition = Arc::new(move || {
            let tool: Arc<dyn Tool> = Arc::new(Meet(Arc::clone(&barrier)));
            (ToolMeta::new("Meet"), tool)
        });
        let server = ToolServer::new(&[meet, def("Fast", 0, "fast")], 1000).unwrap();
        let calls = [
            call("a", "Meet", "1"),
            call("b", "Fast", "2"),
            call("c", "Meet", "3"),
            call("d", "Meet", "4"),
        ];
        let out = tokio::time::timeout(Duration::from_secs(20), server.run_all(&calls))
            .await
            .expect("calls did not run concurrently");
        let summaries: Vec<_> = out.iter().map(|i| summary(i).0).collect();
        assert_eq!(summaries, ["met 1", "fast got 2", "met 3", "met 4"]);
        let ids: Vec<_> = out
            .iter()
            .map(|i| match i {
                Item::ToolResult { call_id, .. } => call_id.as_str(),
                _ => "",
            })
            .collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
    }

    #[tokio::test]
    async fn errors_panics_and_unknown_tools_become_readable_results() {
        let server =
            ToolServer::new(&[def("Boom", 0, "panic"), def("Fail", 0, "fail")], 1000).unwrap();
        let out = server
            .run_all(&[
                call("1", "Boom", "{}"),
                call("2", "Fail", "{}"),
                call("3", "Nope", "{}"),
            ])
            .await;
        assert_eq!(out.len(), 3);
        let (s, err) = summary(&out[0]);
        assert!(err && s.contains("panicked: boom"), "{s}");
        let (s, err) = summary(&out[1]);
        assert!(err && s.contains("disk full"), "{s}");
        let (s, err) = summary(&out[2]);
        assert!(
            err && s.contains("no tool named `Nope`") && s.contains("Boom, Fail"),
            "{s}"
        );
    }

    #[tokio::test]
    async fn output_is_capped_on_char_boundaries_with_a_note() {
        let server = ToolServer::new(&[def("Big", 0, "big")], 1000).unwrap();
        let out = server.run_all(&[call("1", "Big", "{}")]).await;
        let Item::ToolResult {
            content: Some(c), ..
        } = &out[0]
        else {
            panic!("{out:?}")
        };
        assert!(c.len() <= 1000, "{}", c.len());
        assert!(c.contains("bytes cut to fit"), "{c}");
        assert!(c.starts_with('é') && c.ends_with('é'));
    }

    #[test]
    fn cap_leaves_short_text_alone_and_limit_follows_the_context() {
        assert_eq!(cap("short", 100), "short");
        assert_eq!(output_limit(1_000_000, 8192), 8192);
        assert_eq!(output_limit(4096, 200_000), 4096);
    }

    struct Policy;
    #[async_trait::async_trait]
    impl ToolInterceptor for Policy {
        async fn before(&self, call: &CallInfo) -> Decision {
            match call.id.as_str() {
                "deny" => Decision::Deny("writes to /etc are not allowed".into()),
                "rewrite" => Decision::Rewrite("rewritten".into()),
                _ => Decision::Allow,
            }
        }
        async fn after(&self, _call: &CallInfo, result: &mut Result<ToolOutput, ToolError>) {
            if let Ok(out) = result {
                out.summary.push_str(" (audited)");
            }
        }
    }

    #[tokio::test]
    async fn interceptors_allow_deny_and_rewrite() {
        let mut server = ToolServer::new(&[def("T", 0, "t")], 1000).unwrap();
        server.intercept(Arc::new(Policy));
        let out = server
            .run_all(&[
                call("ok", "T", "orig"),
                call("deny", "T", "x"),
                call("rewrite", "T", "orig"),
            ])
            .await;
        assert_eq!(summary(&out[0]), ("t got orig (audited)", false));
        let (s, err) = summary(&out[1]);
        assert!(
            err && s.contains("refused by policy: writes to /etc"),
            "{s}"
        );
        assert_eq!(summary(&out[2]), ("t got rewritten (audited)", false));
    }

    /// A check that never decides (a hung hook).
    struct Hung;
    #[async_trait::async_trait]
    impl ToolInterceptor for Hung {
        async fn before(&self, _call: &CallInfo) -> Decision {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_cancel_during_a_check_answers_every_call_as_interrupted() {
        let mut server = ToolServer::new(&[def("T", 0, "t")], 1000).unwrap();
        server.intercept(Arc::new(Hung));
        let cancel = CancellationToken::new();
        let calls = [call("a", "T", "x"), call("b", "T", "y")];
        let run = server.run_all_until(&calls, &cancel);
        let cancel_soon = async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            cancel.cancel();
        };
        let (out, ()) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(run, cancel_soon)
        })
        .await
        .expect("the cancel ends the wait");
        assert_eq!(out.len(), 2);
        for item in &out {
            assert_eq!(summary(item), (INTERRUPTED, true));
        }
    }

    /// Holds call `a` forever (a request nobody answers); records the rest.
    #[derive(Default)]
    struct HoldA {
        done: std::sync::Mutex<Vec<String>>,
        cancelled: std::sync::Mutex<Vec<String>>,
    }
    #[async_trait::async_trait]
    impl ToolInterceptor for HoldA {
        async fn before(&self, call: &CallInfo) -> Decision {
            if call.id == "a" {
                std::future::pending().await
            }
            Decision::Allow
        }
        async fn after(&self, call: &CallInfo, _result: &mut Result<ToolOutput, ToolError>) {
            self.done.lock().unwrap().push(call.id.clone());
        }
        fn cancelled(&self, call_id: &str) {
            self.cancelled.lock().unwrap().push(call_id.to_owned());
        }
    }

    #[tokio::test]
    async fn a_call_held_by_its_check_holds_up_no_other_and_a_cancel_is_told() {
        let mut server = ToolServer::new(&[def("T", 0, "t")], 1000).unwrap();
        let hold = Arc::new(HoldA::default());
        server.intercept(hold.clone());
        let cancel = CancellationToken::new();
        let calls = [call("a", "T", "x"), call("b", "T", "y")];
        let run = server.run_all_until(&calls, &cancel);
        let cancel_after_b = async {
            while hold.done.lock().unwrap().is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            cancel.cancel();
        };
        let (out, ()) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(run, cancel_after_b)
        })
        .await
        .expect("b runs while a waits");
        assert_eq!(summary(&out[0]), (INTERRUPTED, true));
        assert_eq!(summary(&out[1]), ("t got y", false));
        assert_eq!(*hold.cancelled.lock().unwrap(), ["a"]);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let err = ToolServer::new(&[def("T", 0, "a"), def("T", 0, "b")], 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "two tools are named `T`; tool names must be unique"
        );
    }

    #[tokio::test]
    async fn tools_of_a_source_come_and_go_between_steps() {
        struct Source(std::sync::Mutex<Vec<ToolDefinition>>);
        impl ToolSource for Source {
            fn tools(&self) -> Vec<(ToolMeta, Arc<dyn Tool>)> {
                self.0.lock().unwrap().iter().map(|d| d()).collect()
            }
        }
        let source = Arc::new(Source(std::sync::Mutex::new(vec![def("late", 0, "ok")])));
        let mut server = ToolServer::new(&[def("fixed", 0, "ok")], 1000).unwrap();
        server.add_source(Arc::clone(&source) as Arc<dyn ToolSource>);
        let names = |s: &ToolServer| s.specs().into_iter().map(|t| t.name).collect::<Vec<_>>();
        assert_eq!(names(&server), ["fixed", "late"]);
        let out = server.run_all(&[call("1", "late", "{}")]).await;
        assert!(!summary(&out[0]).1, "{out:?}");
        // The source dropped its tool and offers one named like a fixed tool.
        *source.0.lock().unwrap() = vec![def("fixed", 0, "ok")];
        assert_eq!(names(&server), ["fixed"]);
        assert_eq!(server.names(), ["fixed"]);
        let out = server.run_all(&[call("2", "late", "{}")]).await;
        let (text, is_error) = summary(&out[0]);
        assert!(is_error && text.contains("no tool named `late`"), "{text}");
    }

    #[test]
    fn specs_follow_definition_order() {
        let server = ToolServer::new(&[def("B", 0, "b"), def("A", 0, "a")], 10).unwrap();
        let names: Vec<_> = server.specs().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["B", "A"]);
        assert_eq!(server.names(), ["B", "A"]);
    }
}
