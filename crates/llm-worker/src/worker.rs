//! The agent loop of one pod: append the input, ask the model, run the tool calls
//! it makes, append the results, and ask again — until the model stops, the call
//! budget runs out, or the caller cancels or pauses.
//!
//! The worker owns the conversation history and nothing else: it does not write
//! logs or talk to sockets. Every step is reported to a [`WorkerSink`] *before*
//! the worker moves on, and every history append is reported as
//! [`WorkerEvent::Appended`] right after it happens, so the pod can persist an
//! entry and then broadcast it (ARCHITECTURE.md: persist before broadcast). A
//! sink error stops the invocation: an entry that could not be persisted must
//! not be followed by more.
//!
//! Whatever ends an invocation, the history stays valid for every provider:
//! every tool call in it is answered, those cut short with
//! [`INTERRUPTED`](crate::tool_server::INTERRUPTED).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use llm_types::{Item, ToolCallKind, Usage};
use tokio_util::sync::CancellationToken;

use crate::compact;
use crate::llm_client::error::ClientError;
use crate::llm_client::http::{LlmClient, RetryNotice};
use crate::llm_client::request::{LlmRequest, ToolChoice};
use crate::llm_client::stream::{Completion, StopReason, StreamEvent};
use crate::nudge;
use crate::prune::{self, Calibration, ContextPolicy};
use crate::tool_server::{CallInfo, ToolServer, interrupted_result};

/// The request settings that stay the same for every LLM call of a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Model name as the provider knows it.
    pub model: String,
    /// System prompt.
    pub system: String,
    /// Output token limit per call.
    pub max_tokens: u32,
    /// Sampling temperature (`None`: the provider's default).
    pub temperature: Option<f64>,
    /// Sampling seed, where the provider supports one.
    pub seed: Option<i64>,
    /// Which tools the model may or must call.
    pub tool_choice: ToolChoice,
    /// Extra top-level request fields (the manifest's `extra` table).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Prompt-cache key (enables Anthropic `cache_control`, OpenAI `prompt_cache_key`).
    pub cache_key: Option<String>,
    /// Most LLM calls one invocation may make before it ends as `limit_reached`.
    pub max_llm_calls: u32,
    /// Answer a call identical (name and arguments) to one that succeeded in
    /// the step just before with [`REPEATED`] instead of running it again. Small
    /// models loop on their last successful call; big ones may legitimately
    /// poll, so this is off by default.
    pub skip_repeated_calls: bool,
    /// Appended (after a blank line) to the content of every successful tool
    /// result: a nudge for small models, which otherwise keep calling tools
    /// after they have what they need.
    pub result_note: Option<String>,
    /// In place of `result_note` after a successful Write or Edit: small
    /// models told to reply once one file is changed stop there, when the
    /// request needed more (a rename across files).
    pub change_note: Option<String>,
    /// How requests are kept inside the window (`None`: sent whole).
    pub context: Option<ContextPolicy>,
    /// Small models' nudges ([`crate::nudge`]): remind the model once to
    /// apply a requested change with the tools when it answers with advice
    /// instead, and cut a reply that repeats itself and ask again.
    pub small_model_nudges: bool,
}

/// The start of the result a skipped repeated call gets (see
/// [`WorkerConfig::skip_repeated_calls`]).
pub const REPEATED: &str = "Not run: you made this exact call just before and it succeeded";

impl WorkerConfig {
    /// Settings for `model` with the manifest's defaults (8192 output tokens,
    /// 200 calls per invocation) and no system prompt.
    pub fn new(model: impl Into<String>) -> Self {
        WorkerConfig {
            model: model.into(),
            system: String::new(),
            max_tokens: 8192,
            temperature: None,
            seed: None,
            tool_choice: ToolChoice::Auto,
            extra: serde_json::Map::new(),
            cache_key: None,
            max_llm_calls: 200,
            skip_repeated_calls: false,
            result_note: None,
            change_note: None,
            context: None,
            small_model_nudges: false,
        }
    }
}

/// Why an item joined the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendKind {
    /// Input given to [`Worker::invoke`].
    Input,
    /// Produced by the model (message, reasoning, tool call, provider block).
    Assistant,
    /// The result of a tool call (including `[interrupted]` answers).
    ToolResult,
}

/// One step of an invocation, reported as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerEvent<'a> {
    /// An LLM call is about to be sent.
    LlmCallStart {
        /// The call's number (counts across invocations, from 1).
        llm_call: u64,
    },
    /// The call failed before any content and will be retried after a delay.
    Retry {
        /// The call's number.
        llm_call: u64,
        /// What failed and how long the client waits.
        notice: &'a RetryNotice,
    },
    /// A live delta of the streaming response (not yet in the history).
    Stream(&'a StreamEvent),
    /// An item was appended to the history.
    Appended {
        /// Why it was appended.
        kind: AppendKind,
        /// The item.
        item: &'a Item,
    },
    /// Final token usage of a call (also after a failed call, if it reported any).
    Usage {
        /// The call's number.
        llm_call: u64,
        /// Its usage.
        usage: Usage,
    },
    /// The history is about to be compacted: a summary call runs (it is not
    /// an LLM call of the invocation: no `LlmCallStart`, not counted).
    CompactionStart {
        /// The estimated tokens of the request that called for it (pruned).
        tokens_before: u64,
    },
    /// The history was compacted: it is now `history` (a summary and the
    /// user's latest message). The sink persists it as a new segment.
    Compacted {
        /// The new history.
        history: &'a [Item],
        /// The estimated tokens before.
        tokens_before: u64,
        /// The estimated tokens of the next request.
        tokens_after: u64,
    },
    /// A compaction could not be done; the worker goes on with the pruned history.
    CompactionFailed {
        /// What went wrong.
        error: &'a str,
    },
    /// The call ended (its items are appended).
    LlmCallEnd {
        /// The call's number.
        llm_call: u64,
        /// Why the model stopped (`None`: the call failed or was cancelled).
        stop: Option<&'a StopReason>,
    },
}

/// Why a sink refused an event (the pod could not persist an entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError(pub String);

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SinkError {}

/// Where a worker reports its steps; the pod persists and broadcasts them.
pub trait WorkerSink: Send {
    /// Handles one event. An error ends the invocation as failed (after the
    /// worker has answered any open tool calls in its own history).
    fn on_event(&mut self, event: WorkerEvent<'_>) -> Result<(), SinkError>;

    /// Items the caller has already committed (notifications, child-pod
    /// events that arrived meanwhile) to join the history before the next LLM
    /// call. They are not reported back as `Appended`.
    fn pending_input(&mut self) -> Vec<Item> {
        Vec::new()
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The model stopped on its own (finished, refused, hit `max_tokens`...).
    Finished {
        /// Why it stopped.
        stop: StopReason,
    },
    /// Paused at a step boundary; [`Worker::invoke`] with no input resumes.
    Paused,
    /// Cancelled; cut tool calls are answered `[interrupted]`.
    Cancelled,
    /// `max_llm_calls` calls were made and the model still wanted tools.
    LimitReached,
    /// The invocation failed.
    Failed(WorkerError),
}

/// Why an invocation failed.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerError {
    /// The LLM call failed (after the client's retries).
    Llm(ClientError),
    /// The sink could not take an event (persisting failed).
    Sink(SinkError),
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerError::Llm(e) => e.fmt(f),
            WorkerError::Sink(e) => write!(f, "cannot record the session: {e}"),
        }
    }
}

impl std::error::Error for WorkerError {}

/// The caller's handles on a running invocation.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Cancels at once: the stream is aborted, running tools are dropped.
    pub cancel: CancellationToken,
    /// Pauses at the next step boundary: after the current LLM call and the
    /// tool calls it made, before the next LLM call. Nothing is cut short.
    pub pause: CancellationToken,
    /// Compacts the history at the next step boundary (set by a client's
    /// `compact`; taken, so it compacts once).
    pub compact: Arc<AtomicBool>,
}

impl Control {
    /// Fresh, untriggered handles.
    pub fn new() -> Self {
        Control::default()
    }
}

/// The agent loop for one pod: a client, tools, settings and the history.
pub struct Worker {
    client: Arc<dyn LlmClient>,
    tools: Arc<ToolServer>,
    config: WorkerConfig,
    history: Vec<Item>,
    llm_calls: u64,
    /// The calls of the last step that succeeded: (name, arguments as
    /// canonical JSON, result summary).
    last_ok: Vec<(String, String, String)>,
    /// Tool outputs before this history index are stubbed in requests (see
    /// [`crate::prune`]); it only moves forward.
    pruned_before: usize,
    /// The last call's measured size, for estimating the next request.
    calibration: Option<Calibration>,
    /// History bytes of the request being answered.
    request_bytes: usize,
    /// A length refusal was answered by compacting and retrying; a second one
    /// in a row fails the invocation.
    overflow_retried: bool,
    /// Calls in a row the server could not parse (the model's malformed tool
    /// calls); the next request is changed to get past it.
    malformed: u32,
    /// Replies in a row cut for repeating themselves.
    repeated: u32,
    /// The last step's calls (name, canonical arguments) and how many steps
    /// in a row made exactly them again.
    prev_calls: Vec<(String, String)>,
    repeats: u32,
    /// Told before each compaction (the user's `pre_compact` hooks).
    before_compaction: Option<Arc<dyn BeforeCompaction>>,
}

/// Told before a compaction starts, and awaited (the user's `pre_compact` hooks).
#[async_trait::async_trait]
pub trait BeforeCompaction: Send + Sync {
    /// A compaction of a request of about `tokens_before` tokens is about to
    /// start; `trigger` is `auto`, `asked` or `overflow`.
    async fn before_compaction(&self, tokens_before: u64, trigger: &'static str);
}

/// How many times in a row a call whose output the server could not parse is
/// tried again (changed) before the invocation fails.
const MALFORMED_RETRIES: u32 = 2;

/// Added (to the request only) when the model's last output could not be
/// parsed: small models mostly get it right once told.
const MALFORMED_NOTE: &str = "[Your last reply could not be read: a tool call must be one call with its \
arguments as a JSON object. Call one tool now, with valid JSON arguments, or answer in plain text.]";

/// `arguments` with its keys sorted and no spacing, so that equal calls
/// compare equal however the model spaced them.
fn canonical_args(arguments: &str) -> String {
    serde_json::from_str::<serde_json::Value>(arguments)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| arguments.to_string())
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("family", &self.client.family())
            .field("tools", &self.tools)
            .field("config", &self.config)
            .field("history_len", &self.history.len())
            .field("llm_calls", &self.llm_calls)
            .finish()
    }
}

/// Ends the stream at once when the sink fails, remembering the first error.
struct GuardedSink<'s> {
    sink: &'s mut dyn WorkerSink,
    failed: Option<SinkError>,
    stop_stream: CancellationToken,
    /// Watches the reply's text when small-model nudges are on.
    repetition: Option<nudge::Repetition>,
    /// The reply was cut for repeating itself.
    repeating: bool,
}

impl GuardedSink<'_> {
    fn send(&mut self, event: WorkerEvent<'_>) {
        if self.failed.is_some() || self.repeating {
            return;
        }
        if let (WorkerEvent::Stream(StreamEvent::TextDelta { text }), Some(r)) =
            (&event, self.repetition.as_mut())
            && r.push(text)
        {
            self.repeating = true;
            self.stop_stream.cancel();
            return;
        }
        if let Err(e) = self.sink.on_event(event) {
            self.failed = Some(e);
            self.stop_stream.cancel();
        }
    }
}

impl Worker {
    /// A worker with an empty history.
    pub fn new(client: Arc<dyn LlmClient>, tools: Arc<ToolServer>, config: WorkerConfig) -> Self {
        Worker {
            client,
            tools,
            config,
            history: Vec::new(),
            llm_calls: 0,
            last_ok: Vec::new(),
            pruned_before: 0,
            calibration: None,
            request_bytes: 0,
            overflow_retried: false,
            malformed: 0,
            repeated: 0,
            prev_calls: Vec::new(),
            repeats: 0,
            before_compaction: None,
        }
    }

    /// Awaits `hook` before every compaction.
    pub fn before_compaction(&mut self, hook: Arc<dyn BeforeCompaction>) {
        self.before_compaction = Some(hook);
    }

    /// Restores a history (from a replayed session log) and the number of LLM
    /// calls made so far, so call numbers continue where they stopped.
    pub fn restore(&mut self, history: Vec<Item>, llm_calls: u64) {
        self.history = history;
        self.llm_calls = llm_calls;
    }

    /// Appends an item the caller has already committed (not reported).
    pub fn push_committed(&mut self, item: Item) {
        self.history.push(item);
    }

    /// The conversation so far.
    pub fn history(&self) -> &[Item] {
        &self.history
    }

    /// LLM calls made so far (the last call's number).
    pub fn llm_calls(&self) -> u64 {
        self.llm_calls
    }

    /// The settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Changes the settings (they apply from the next LLM call).
    pub fn config_mut(&mut self) -> &mut WorkerConfig {
        &mut self.config
    }

    /// The tools.
    pub fn tools(&self) -> &Arc<ToolServer> {
        &self.tools
    }

    /// The request the next LLM call would send (with the tool outputs pruned
    /// so far stubbed).
    pub fn request(&self) -> LlmRequest {
        let history = if self.config.context.is_some_and(|p| p.auto) {
            prune::project(&self.history, self.pruned_before)
        } else {
            self.history.clone()
        };
        self.request_with(history)
    }

    /// The request for the next LLM call: pruned further first when the
    /// estimate passes the policy's threshold.
    fn prepare_request(&mut self) -> (LlmRequest, u64) {
        let Some(policy) = self.config.context.filter(|p| p.auto) else {
            let request = self.request();
            let bytes = prune::history_bytes(&request.history);
            self.request_bytes = bytes;
            return (request, prune::estimate(bytes, self.calibration));
        };
        let mut history = prune::project(&self.history, self.pruned_before);
        let mut bytes = prune::history_bytes(&history);
        let before = prune::estimate(bytes, self.calibration);
        if before > policy.prune_threshold() {
            let boundary = prune::keep_boundary(&self.history, policy.keep_calls);
            if boundary > self.pruned_before {
                self.pruned_before = boundary;
                history = prune::project(&self.history, boundary);
                bytes = prune::history_bytes(&history);
                let after = prune::estimate(bytes, self.calibration);
                tracing::info!(
                    before,
                    after,
                    window = policy.window,
                    kept_calls = policy.keep_calls,
                    "pruned old tool outputs from the request (the log keeps them)"
                );
            } else {
                tracing::warn!(
                    estimate = before,
                    window = policy.window,
                    "the request is above the pruning threshold with nothing left to prune"
                );
            }
        }
        self.request_bytes = bytes;
        let estimate = prune::estimate(bytes, self.calibration);
        (self.request_with(history), estimate)
    }

    /// The request for the next LLM call, the history compacted first when
    /// the request, pruned, is still estimated above the policy's threshold
    /// or a client asked for it. `Err` ends the invocation (cancelled, or the
    /// sink failed); a failed summary call does not.
    async fn compacted_request(
        &mut self,
        sink: &mut dyn WorkerSink,
        control: &Control,
    ) -> Result<LlmRequest, Outcome> {
        let asked = control.compact.swap(false, Ordering::AcqRel);
        let (request, before) = self.prepare_request();
        let trigger = if asked { Trigger::Asked } else { Trigger::Due };
        if self
            .compact_with(sink, control, trigger, &request, before)
            .await?
        {
            return Ok(self.prepare_request().0);
        }
        Ok(request)
    }

    /// An invocation that only compacts the history (a client's `compact`
    /// while idle). Ends `Finished` whether or not there was anything to
    /// compact (the sink saw `compaction_end` when there was).
    pub async fn compact_now(&mut self, sink: &mut dyn WorkerSink, control: &Control) -> Outcome {
        match self.compact(sink, control, Trigger::Asked).await {
            Ok(_) => Outcome::Finished {
                stop: StopReason::End,
            },
            Err(outcome) => outcome,
        }
    }

    /// Compacts the history into a summary when `trigger` says so. Returns
    /// whether it did.
    async fn compact(
        &mut self,
        sink: &mut dyn WorkerSink,
        control: &Control,
        trigger: Trigger,
    ) -> Result<bool, Outcome> {
        let (request, before) = self.prepare_request();
        self.compact_with(sink, control, trigger, &request, before)
            .await
    }

    /// [`Worker::compact`] given the request the next call would send and its
    /// estimated tokens (so a step prepares its request once).
    async fn compact_with(
        &mut self,
        sink: &mut dyn WorkerSink,
        control: &Control,
        trigger: Trigger,
        base: &LlmRequest,
        before: u64,
    ) -> Result<bool, Outcome> {
        let Some(mut policy) = self.config.context else {
            return Ok(false);
        };
        // A history of one message has nothing to compact.
        let due = policy.auto && before > policy.compact_threshold();
        if !(trigger != Trigger::Due || due) || self.history.len() < 2 {
            return Ok(false);
        }
        if trigger == Trigger::Overflow {
            // The provider counts more than the estimate: in the estimate's
            // terms the window is smaller than the refused request.
            policy.window = policy.window.min(before);
        }
        if let Some(hook) = &self.before_compaction {
            let name = match trigger {
                Trigger::Due => "auto",
                Trigger::Asked => "asked",
                Trigger::Overflow => "overflow",
            };
            hook.before_compaction(before, name).await;
        }
        let sink_failed = |e| Outcome::Failed(WorkerError::Sink(e));
        sink.on_event(WorkerEvent::CompactionStart {
            tokens_before: before,
        })
        .map_err(sink_failed)?;
        let ask_first = trigger != Trigger::Overflow;
        let summary = match self
            .summarize(policy, base, before, ask_first, control)
            .await
        {
            Ok(summary) => summary,
            Err(SummaryError::Cancelled) => return Err(Outcome::Cancelled),
            Err(SummaryError::Failed(error)) => {
                tracing::warn!(%error, "compaction failed; going on with the pruned history");
                sink.on_event(WorkerEvent::CompactionFailed { error: &error })
                    .map_err(sink_failed)?;
                return Ok(false);
            }
        };
        // The seed stays at half the threshold at most, so that many steps
        // go by before the next compaction (each costs a summary call).
        let target = policy.compact_threshold() / 2;
        let calibration = self.calibration;
        let seed = compact::seed_history(&self.history, &summary, |seed| {
            prune::estimate(prune::history_bytes(seed), calibration) <= target
        });
        let after = prune::estimate(prune::history_bytes(&seed), self.calibration);
        sink.on_event(WorkerEvent::Compacted {
            history: &seed,
            tokens_before: before,
            tokens_after: after,
        })
        .map_err(sink_failed)?;
        tracing::info!(before, after, "compacted the history into a summary");
        self.history = seed;
        self.pruned_before = 0;
        self.last_ok.clear();
        Ok(true)
    }

    /// The summary of the conversation `base` would send: asked after `base`
    /// itself when `ask_first` and that fits the window (the prompt cache
    /// serves all but the question), else, or when the model answers with a
    /// tool call or the provider refuses, from a transcript cut to fit.
    async fn summarize(
        &self,
        policy: ContextPolicy,
        base: &LlmRequest,
        before: u64,
        ask_first: bool,
        control: &Control,
    ) -> Result<String, SummaryError> {
        let cap = policy
            .summary_tokens
            .min(u32::try_from(policy.window / 4).unwrap_or(u32::MAX))
            .max(128);
        // The policy's window leaves room for a whole response; a summary
        // call needs room for the summary only.
        let room = (policy.window + u64::from(self.config.max_tokens))
            .saturating_sub(before.saturating_add(compact::ASK_TOKENS));
        if ask_first && room >= 256 {
            let max_tokens = u32::try_from(room).unwrap_or(u32::MAX).min(cap);
            let request = compact::continuation_request(base, max_tokens);
            match self.summary_call(&request, control).await {
                Ok(text) if !text.trim().is_empty() => return Ok(text),
                Ok(_) => tracing::info!(
                    "the model answered the summary question without text; summarising a transcript"
                ),
                Err(SummaryError::Failed(error)) => {
                    tracing::info!(%error, "the summary question failed; summarising a transcript");
                }
                Err(cancelled) => return Err(cancelled),
            }
        }
        // The transcript takes at most ~60 % of the window (4 bytes a token).
        let budget = (policy.window as f64 * 0.6 * 4.0) as usize;
        let text = compact::transcript(&base.history, budget);
        let request = compact::transcript_request(base, &text, cap);
        let summary = self.summary_call(&request, control).await?;
        if summary.trim().is_empty() {
            return Err(SummaryError::Failed(
                "the summary call returned no text".into(),
            ));
        }
        Ok(summary)
    }

    /// One summary call: the text the model wrote.
    async fn summary_call(
        &self,
        request: &LlmRequest,
        control: &Control,
    ) -> Result<String, SummaryError> {
        let cancel = control.cancel.child_token();
        match self
            .client
            .stream_observed(request, &cancel, &mut |_| {}, &mut |_| {})
            .await
        {
            Ok(completion) => Ok(compact::summary_text(&completion.items)),
            Err(failure) if failure.error == ClientError::Cancelled => Err(SummaryError::Cancelled),
            Err(failure) => Err(SummaryError::Failed(failure.error.to_string())),
        }
    }

    fn request_with(&self, history: Vec<Item>) -> LlmRequest {
        let c = &self.config;
        LlmRequest {
            model: c.model.clone(),
            system: c.system.clone(),
            history,
            tools: self.tools.specs(),
            tool_choice: c.tool_choice.clone(),
            max_tokens: c.max_tokens,
            temperature: c.temperature,
            seed: c.seed,
            extra: c.extra.clone(),
            cache_key: c.cache_key.clone(),
        }
    }

    fn append(
        &mut self,
        sink: &mut dyn WorkerSink,
        kind: AppendKind,
        item: Item,
    ) -> Result<(), SinkError> {
        self.history.push(item);
        match self.history.last() {
            Some(item) => sink.on_event(WorkerEvent::Appended { kind, item }),
            None => Ok(()),
        }
    }

    /// Runs one invocation: runs the calls a restored history left open,
    /// appends `input` (empty to resume after a pause or to answer
    /// notifications), then calls the model and runs its tools until
    /// the model stops, the call budget is spent, or `control` ends it.
    pub async fn invoke(
        &mut self,
        input: Vec<Item>,
        sink: &mut dyn WorkerSink,
        control: &Control,
    ) -> Outcome {
        // Calls a restored history kept open (they wait for a person's
        // approval) run first: their results must follow them.
        let open = open_calls(&self.history);
        if !open.is_empty() {
            let calls: Vec<CallInfo> = self
                .history
                .iter()
                .filter_map(call_info)
                .filter(|c| open.contains(&c.id))
                .collect();
            for item in self.run_calls(&calls, control).await {
                if let Err(e) = self.append(sink, AppendKind::ToolResult, item) {
                    self.answer_open_calls();
                    return Outcome::Failed(WorkerError::Sink(e));
                }
            }
            if control.cancel.is_cancelled() {
                return Outcome::Cancelled;
            }
        }
        for item in input {
            if let Err(e) = self.append(sink, AppendKind::Input, item) {
                return Outcome::Failed(WorkerError::Sink(e));
            }
        }
        let mut calls_made: u32 = 0;
        self.last_ok.clear();
        self.prev_calls.clear();
        self.repeats = 0;
        loop {
            if control.cancel.is_cancelled() {
                return Outcome::Cancelled;
            }
            if control.pause.is_cancelled() {
                return Outcome::Paused;
            }
            self.history.extend(sink.pending_input());
            if calls_made >= self.config.max_llm_calls {
                return Outcome::LimitReached;
            }
            calls_made += 1;
            match self.step(sink, control).await {
                Step::Continue => {}
                Step::End(outcome) => return outcome,
            }
        }
    }

    /// One LLM call and the tool calls it makes.
    async fn step(&mut self, sink: &mut dyn WorkerSink, control: &Control) -> Step {
        let mut request = match self.compacted_request(sink, control).await {
            Ok(request) => request,
            Err(outcome) => return Step::End(outcome),
        };
        if self.malformed > 0 {
            // Greedy decoding would produce the same output again: sample a
            // little, with a note on what went wrong.
            request
                .history
                .push(Item::text(llm_types::Role::User, MALFORMED_NOTE));
            request.temperature = Some(0.3 * f64::from(self.malformed));
            request.seed = Some(request.seed.unwrap_or(0) + i64::from(self.malformed));
        } else if self.repeated > 0 {
            request
                .history
                .push(Item::text(llm_types::Role::User, nudge::REPEAT_NOTE));
            request.temperature = Some(0.3);
        }
        self.llm_calls += 1;
        let llm_call = self.llm_calls;
        if let Err(e) = sink.on_event(WorkerEvent::LlmCallStart { llm_call }) {
            return Step::End(Outcome::Failed(WorkerError::Sink(e)));
        }
        let stream_cancel = control.cancel.child_token();
        let guarded = Mutex::new(GuardedSink {
            sink: &mut *sink,
            failed: None,
            stop_stream: stream_cancel.clone(),
            repetition: self
                .config
                .small_model_nudges
                .then(nudge::Repetition::default),
            repeating: false,
        });
        let result = {
            let lock = || guarded.lock().unwrap_or_else(PoisonError::into_inner);
            self.client
                .stream_observed(
                    &request,
                    &stream_cancel,
                    &mut |event| lock().send(WorkerEvent::Stream(&event)),
                    &mut |notice| {
                        lock().send(WorkerEvent::Retry {
                            llm_call,
                            notice: &notice,
                        })
                    },
                )
                .await
        };
        let guarded = guarded.into_inner().unwrap_or_else(PoisonError::into_inner);
        let (sink_failed, repeating) = (guarded.failed, guarded.repeating);
        drop(request);
        if repeating && !control.cancel.is_cancelled() {
            return self.cut_repetition(sink, llm_call);
        }
        match result {
            Ok(completion) => {
                self.overflow_retried = false;
                self.malformed = 0;
                self.repeated = 0;
                self.completed(sink, control, llm_call, completion, sink_failed)
                    .await
            }
            Err(failure)
                if sink_failed.is_none()
                    && failure.error.is_context_overflow()
                    && self.config.context.is_some_and(|p| p.auto)
                    && !self.overflow_retried =>
            {
                // The provider counts differently than the estimate: compact
                // now and send the call again, once.
                tracing::warn!(error = %failure.error, "the provider refused the request as too long; compacting and retrying once");
                self.overflow_retried = true;
                if let Err(e) = sink.on_event(WorkerEvent::LlmCallEnd {
                    llm_call,
                    stop: None,
                }) {
                    return Step::End(Outcome::Failed(WorkerError::Sink(e)));
                }
                match self.compact(sink, control, Trigger::Overflow).await {
                    Ok(true) => Step::Continue,
                    Ok(false) => Step::End(Outcome::Failed(WorkerError::Llm(failure.error))),
                    Err(outcome) => Step::End(outcome),
                }
            }
            Err(failure)
                if sink_failed.is_none()
                    && failure.error.is_malformed_output()
                    && self.malformed < MALFORMED_RETRIES =>
            {
                self.malformed += 1;
                tracing::warn!(error = %failure.error, retry = self.malformed, "the model's output was not a valid tool call; asking again");
                let end = sink.on_event(WorkerEvent::LlmCallEnd {
                    llm_call,
                    stop: None,
                });
                match end {
                    Ok(()) => asking_again(sink, llm_call, self.malformed, failure.error),
                    Err(e) => Step::End(Outcome::Failed(WorkerError::Sink(e))),
                }
            }
            Err(failure) => {
                let error = match sink_failed {
                    Some(e) => WorkerError::Sink(e),
                    None if failure.error == ClientError::Cancelled => {
                        return self.cut_short(sink, llm_call, failure.partial, Outcome::Cancelled);
                    }
                    None if failure.error.is_malformed_output() => {
                        let tries = self.malformed + 1;
                        self.malformed = 0;
                        WorkerError::Llm(ClientError::Provider {
                            code: Some("malformed_output".into()),
                            message: format!(
                                "the model's output was not a valid tool call {tries} times in a row \
                                 (the server said: {})",
                                failure.error
                            ),
                        })
                    }
                    None => WorkerError::Llm(failure.error),
                };
                self.cut_short(sink, llm_call, failure.partial, Outcome::Failed(error))
            }
        }
    }

    /// After a reply was cut for repeating itself: asks again once, with a
    /// note; a second loop in a row ends the invocation.
    fn cut_repetition(&mut self, sink: &mut dyn WorkerSink, llm_call: u64) -> Step {
        self.repeated += 1;
        let error = ClientError::Provider {
            code: Some("repetition".into()),
            message: "the model's reply kept repeating the same text and was cut off".into(),
        };
        tracing::warn!(repeated = self.repeated, "{error}");
        if let Err(e) = sink.on_event(WorkerEvent::LlmCallEnd {
            llm_call,
            stop: None,
        }) {
            return Step::End(Outcome::Failed(WorkerError::Sink(e)));
        }
        if self.repeated > 1 {
            self.repeated = 0;
            return Step::End(Outcome::Failed(WorkerError::Llm(error)));
        }
        asking_again(sink, llm_call, self.repeated, error)
    }

    /// Appends a complete response, then runs its tool calls.
    async fn completed(
        &mut self,
        sink: &mut dyn WorkerSink,
        control: &Control,
        llm_call: u64,
        completion: Completion,
        sink_failed: Option<SinkError>,
    ) -> Step {
        if let Some(e) = sink_failed {
            return self.cut_short(
                sink,
                llm_call,
                completion,
                Outcome::Failed(WorkerError::Sink(e)),
            );
        }
        let Completion { items, usage, stop } = completion;
        if usage.total_input() > 0 {
            self.calibration = Some(Calibration::observe(
                self.calibration,
                usage.total_input(),
                self.request_bytes,
            ));
        }
        let calls: Vec<CallInfo> = items.iter().filter_map(call_info).collect();
        let mut failure = None;
        for item in items {
            if let Err(e) = self.append(sink, AppendKind::Assistant, item) {
                failure = Some(e);
                break;
            }
        }
        if failure.is_none() {
            failure = sink
                .on_event(WorkerEvent::Usage { llm_call, usage })
                .and_then(|()| {
                    sink.on_event(WorkerEvent::LlmCallEnd {
                        llm_call,
                        stop: Some(&stop),
                    })
                })
                .err();
        }
        if let Some(e) = failure {
            self.answer_open_calls();
            return Step::End(Outcome::Failed(WorkerError::Sink(e)));
        }
        if calls.is_empty() {
            if self.config.small_model_nudges && nudge::should_nudge(&self.history) {
                tracing::info!("the model advised instead of acting; reminding it once");
                let reminder = Item::text(llm_types::Role::User, nudge::ACT_NUDGE);
                return match self.append(sink, AppendKind::Input, reminder) {
                    Ok(()) => Step::Continue,
                    Err(e) => Step::End(Outcome::Failed(WorkerError::Sink(e))),
                };
            }
            return Step::End(Outcome::Finished { stop });
        }
        let results = self.run_calls(&calls, control).await;
        for item in results {
            if let Err(e) = self.append(sink, AppendKind::ToolResult, item) {
                self.answer_open_calls();
                return Step::End(Outcome::Failed(WorkerError::Sink(e)));
            }
        }
        if control.cancel.is_cancelled() {
            return Step::End(Outcome::Cancelled);
        }
        if self.config.small_model_nudges && self.stuck_on(&calls) {
            // The same calls a third step in a row, answered "not run" or
            // failed each time: more steps only spend the call budget.
            let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
            return Step::End(Outcome::Failed(WorkerError::Llm(ClientError::Provider {
                code: Some("stuck".into()),
                message: format!(
                    "the model made the same call ({}) three steps in a row; stopped",
                    names.join(", ")
                ),
            })));
        }
        Step::Continue
    }

    /// Whether this step's `calls` are the previous step's again, the third
    /// time in a row.
    fn stuck_on(&mut self, calls: &[CallInfo]) -> bool {
        let keys: Vec<(String, String)> = calls
            .iter()
            .map(|c| (c.name.clone(), canonical_args(&c.arguments)))
            .collect();
        self.repeats = if keys == self.prev_calls {
            self.repeats + 1
        } else {
            0
        };
        self.prev_calls = keys;
        self.repeats >= 2
    }

    /// Runs this step's calls; with `skip_repeated_calls`, a call that
    /// repeats one that succeeded in the step before is answered instead.
    async fn run_calls(&mut self, calls: &[CallInfo], control: &Control) -> Vec<Item> {
        let key = |c: &CallInfo| (c.name.clone(), canonical_args(&c.arguments));
        let repeat_of = |c: &CallInfo| {
            let (name, args) = key(c);
            self.last_ok
                .iter()
                .find(|(n, a, _)| *n == name && *a == args)
                .map(|(_, _, summary)| summary.clone())
        };
        let skipped: Vec<Option<String>> = calls
            .iter()
            .map(|c| {
                if self.config.skip_repeated_calls {
                    repeat_of(c)
                } else {
                    None
                }
            })
            .collect();
        let to_run: Vec<CallInfo> = calls
            .iter()
            .zip(&skipped)
            .filter(|(_, s)| s.is_none())
            .map(|(c, _)| c.clone())
            .collect();
        let mut ran = self
            .tools
            .run_all_until(&to_run, &control.cancel)
            .await
            .into_iter();
        let mut results = Vec::with_capacity(calls.len());
        let mut last_ok = Vec::new();
        for (call, skip) in calls.iter().zip(skipped) {
            let (name, args) = key(call);
            let item = match skip {
                Some(summary) => {
                    // Still counts as done, so a third identical call is skipped too.
                    last_ok.push((name, args, summary.clone()));
                    Item::ToolResult {
                        call_id: call.id.clone(),
                        summary: format!(
                            "{REPEATED} ({summary}). Do not repeat it: if the task is done, reply in plain text."
                        ),
                        content: None,
                        is_error: true,
                    }
                }
                None => match ran.next() {
                    Some(mut item) => {
                        if let Item::ToolResult {
                            summary,
                            content,
                            is_error: false,
                            ..
                        } = &mut item
                        {
                            let changed = matches!(name.as_str(), "Write" | "Edit");
                            last_ok.push((name, args, summary.clone()));
                            let note = match &self.config.change_note {
                                Some(note) if changed => Some(note),
                                _ => self.config.result_note.as_ref(),
                            };
                            if let Some(note) = note {
                                let text = content.get_or_insert_with(String::new);
                                if !text.is_empty() {
                                    text.push_str("\n\n");
                                }
                                text.push_str(note);
                            }
                        }
                        item
                    }
                    None => interrupted_result(&call.id),
                },
            };
            results.push(item);
        }
        self.last_ok = last_ok;
        results
    }

    /// Keeps what a cut-short response produced and answers its tool calls as
    /// interrupted, so the history stays valid; then ends with `outcome`.
    fn cut_short(
        &mut self,
        sink: &mut dyn WorkerSink,
        llm_call: u64,
        partial: Completion,
        outcome: Outcome,
    ) -> Step {
        // After a sink failure nothing more is reported (it could not be
        // persisted), but the in-memory history is still completed.
        let mut report = !matches!(outcome, Outcome::Failed(WorkerError::Sink(_)));
        // Collected first: the items are moved out of `partial` right below.
        #[allow(clippy::needless_collect)]
        let answers: Vec<Item> = partial
            .items
            .iter()
            .filter_map(|i| match i {
                Item::ToolCall { id, .. } => Some(interrupted_result(id)),
                _ => None,
            })
            .collect();
        let items = partial
            .items
            .into_iter()
            .map(repair_cut_call)
            .map(|i| (AppendKind::Assistant, i))
            .chain(answers.into_iter().map(|i| (AppendKind::ToolResult, i)));
        let mut error = None;
        for (kind, item) in items {
            if !report {
                self.history.push(item);
            } else if let Err(e) = self.append(sink, kind, item) {
                error = Some(e);
                report = false;
            }
        }
        if report {
            let usage = partial.usage;
            let ended = if usage == Usage::default() {
                Ok(())
            } else {
                sink.on_event(WorkerEvent::Usage { llm_call, usage })
            }
            .and_then(|()| {
                sink.on_event(WorkerEvent::LlmCallEnd {
                    llm_call,
                    stop: None,
                })
            });
            error = ended.err();
        }
        match error {
            Some(e) => Step::End(Outcome::Failed(WorkerError::Sink(e))),
            None => Step::End(outcome),
        }
    }

    /// Answers, without reporting, every tool call at the end of the history
    /// that has no result (used when the sink failed mid-step: nothing more can
    /// be persisted, but the in-memory history must stay valid).
    fn answer_open_calls(&mut self) {
        for id in open_calls(&self.history) {
            self.history.push(interrupted_result(&id));
        }
    }
}

/// A tool call item as the tool server takes it.
fn call_info(item: &Item) -> Option<CallInfo> {
    match item {
        Item::ToolCall {
            id,
            name,
            arguments,
            ..
        } => Some(CallInfo {
            id: id.clone(),
            name: name.clone(),
            arguments: arguments.clone(),
        }),
        _ => None,
    }
}

/// The ids of the tool calls in `history` that have no result yet, in order:
/// what must be answered (`[interrupted]`) before the history is valid again,
/// after a cut in the worker or a crash of the process that ran it.
pub fn open_calls(history: &[Item]) -> Vec<String> {
    let answered: std::collections::HashSet<&str> = history
        .iter()
        .filter_map(|i| match i {
            Item::ToolResult { call_id, .. } => Some(call_id.as_str()),
            _ => None,
        })
        .collect();
    history
        .iter()
        .filter_map(|i| match i {
            Item::ToolCall { id, .. } if !answered.contains(id.as_str()) => Some(id.clone()),
            _ => None,
        })
        .collect()
}

/// A function call cut inside its arguments keeps `{}` as arguments: the
/// fragment is not JSON, and providers reject a history whose call arguments
/// do not parse. Its `[interrupted]` result tells the model what happened.
fn repair_cut_call(item: Item) -> Item {
    match item {
        Item::ToolCall {
            id,
            name,
            arguments,
            kind: kind @ ToolCallKind::Function,
            signature,
            provider,
            item_id,
        } => {
            let parses =
                serde_json::from_str::<serde_json::Value>(&arguments).is_ok_and(|v| v.is_object());
            Item::ToolCall {
                id,
                name,
                arguments: if parses { arguments } else { "{}".to_string() },
                kind,
                signature,
                provider,
                item_id,
            }
        }
        other => other,
    }
}

/// What a step leads to.
/// Tells the sink that call `llm_call` is asked again at once, changed (its
/// `retry`-th time, after `error`), and goes on to the next step.
fn asking_again(sink: &mut dyn WorkerSink, llm_call: u64, retry: u32, error: ClientError) -> Step {
    let notice = RetryNotice {
        retry,
        delay: std::time::Duration::ZERO,
        error,
    };
    match sink.on_event(WorkerEvent::Retry {
        llm_call,
        notice: &notice,
    }) {
        Ok(()) => Step::Continue,
        Err(e) => Step::End(Outcome::Failed(WorkerError::Sink(e))),
    }
}

/// What asks for a compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The estimate before a call: compacts only above the threshold.
    Due,
    /// A client's `compact`: compacts whatever the estimate.
    Asked,
    /// The provider refused the request as too long.
    Overflow,
}

/// Why a compaction's summary could not be had.
enum SummaryError {
    /// The invocation was cancelled.
    Cancelled,
    /// The call failed or returned no text; what happened.
    Failed(String),
}

enum Step {
    Continue,
    End(Outcome),
}
