//! [`Event`]: what a pod tells its clients, and the small types events carry.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::adjacent::{self, AdjacentlyTagged};
use crate::{ApprovalRequest, ApprovalResolved, Segment};

/// Version of this protocol, sent in [`Event::Hello`]; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// A message from a pod to a client, one per line.
///
/// Wire form: `{"event":"<name>","data":{...}}`; unit events carry no `data`.
/// Every connection starts `hello`, then replayed `alert`s, then one
/// `snapshot`, then live events. An unknown name decodes to
/// [`Event::Unknown`] whatever its data; a known name with malformed data is an
/// error whose message names the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// First line on every connection.
    Hello {
        /// The server's [`PROTOCOL_VERSION`].
        protocol_version: u32,
        /// Full name of the pod.
        pod_name: String,
    },
    /// A problem worth a human's attention; recent ones are replayed to new connections.
    Alert(Alert),
    /// One of the user's hooks ran (also in the log, as a `hook` entry).
    Hook(HookRun),
    /// A tool call waits for a person's answer (sent to connections that
    /// sent `watch_approvals`).
    ApprovalRequest(ApprovalRequest),
    /// A request ended (sent to connections that sent `watch_approvals`).
    ApprovalResolved(ApprovalResolved),
    /// The answer to `approvals`: the pending requests of the pod and its
    /// subtree, oldest first.
    Approvals {
        /// The requests.
        requests: Vec<ApprovalRequest>,
    },
    /// The committed state on connect: everything since the current segment started.
    Snapshot {
        /// Log entries of the current session segment, each exactly as its log line.
        entries: Vec<serde_json::Value>,
        /// Static facts about the pod.
        greeting: Greeting,
        /// What the pod is doing now.
        status: PodStatus,
    },
    /// The pod's status changed.
    Status {
        /// The new status.
        status: PodStatus,
    },
    /// An invocation started; exactly one per invocation, before its `turn_start`.
    InvokeStart {
        /// What caused it.
        kind: InvokeKind,
    },
    /// The user input of a `run` was accepted and logged.
    UserMessage {
        /// The input as the client sent it.
        segments: Vec<Segment>,
    },
    /// An invocation's first LLM call is about to start.
    TurnStart {
        /// Invocation counter of this pod, from 1.
        turn: u64,
    },
    /// An invocation ended.
    TurnEnd {
        /// The counter from the matching `turn_start`.
        turn: u64,
        /// How it ended.
        result: TurnResult,
    },
    /// One LLM request inside an invocation started.
    LlmCallStart {
        /// LLM call counter.
        llm_call: u64,
    },
    /// One LLM request inside an invocation ended.
    LlmCallEnd {
        /// The counter from the matching `llm_call_start`.
        llm_call: u64,
    },
    /// A piece of assistant text as it streams in.
    TextDelta {
        /// The new text.
        text: String,
    },
    /// An assistant text block is complete.
    TextDone {
        /// The whole block.
        text: String,
    },
    /// The model started thinking.
    ThinkingStart,
    /// A piece of the model's thinking as it streams in.
    ThinkingDelta {
        /// The new text.
        text: String,
    },
    /// A thinking block is complete.
    ThinkingDone {
        /// The whole block.
        text: String,
    },
    /// The model started a tool call.
    ToolCallStart {
        /// Call id, unique within the invocation.
        id: String,
        /// Tool name.
        name: String,
    },
    /// A piece of a tool call's arguments as they stream in.
    ToolCallArgsDelta {
        /// Call id.
        id: String,
        /// The new piece of the arguments' JSON text.
        json: String,
    },
    /// A tool call's arguments are complete.
    ToolCallDone {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// The arguments as JSON text.
        arguments: String,
    },
    /// A tool call finished.
    ToolResult {
        /// Call id.
        id: String,
        /// One-line summary for humans.
        summary: String,
        /// The full output given to the model, if any; omitted when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        /// Whether the tool failed.
        is_error: bool,
    },
    /// Token usage of one LLM call.
    Usage {
        /// Uncached input tokens.
        input_tokens: u64,
        /// Output tokens.
        output_tokens: u64,
        /// Input tokens read from the provider's cache.
        cache_read_tokens: u64,
        /// Input tokens written to the provider's cache.
        cache_write_tokens: u64,
    },
    /// How full the model's context is, after each LLM call (and on restore):
    /// the same numbers as the greeting's.
    Context {
        /// Tokens the current context takes (the last call's input and output).
        context_tokens: u64,
        /// The model's context window, in tokens.
        context_window: u64,
    },
    /// The pod began compacting its context (a summary call runs).
    CompactionStart {
        /// The estimated tokens of the request that called for it.
        tokens_before: u64,
    },
    /// The context was compacted: a new session segment starts from a summary.
    CompactionEnd {
        /// The estimated tokens before.
        tokens_before: u64,
        /// The estimated tokens after.
        tokens_after: u64,
    },
    /// A committed log entry, exactly as its log line.
    Entry(serde_json::Value),
    /// The invocation ended without error; a failed one ends with `error` instead.
    RunEnd {
        /// How it ended.
        result: TurnResult,
    },
    /// This client fell behind; committed entries from `from_seq` follow as `entry` events.
    Lagged {
        /// Sequence number of the first replayed entry.
        from_seq: u64,
    },
    /// The sender's `run`, `notify` or `pod_event` is in the log; for
    /// `approve`/`deny`, the answer is in the asking pod's log (`seq` there);
    /// `watch_approvals` and `approval_update` log nothing (`seq` 0).
    Ack {
        /// Sequence number of the logged entry.
        seq: u64,
    },
    /// A method failed, or an invocation failed.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// The pod is shutting down; the connection closes after this.
    Shutdown,
    /// An event this version does not know; clients skip it.
    ///
    /// Encodes as `{"event":"<name>"}`, without data.
    #[serde(untagged)]
    Unknown {
        /// The event name as received.
        event: String,
    },
}

impl Event {
    /// The event's wire name (for an unknown event, the name it arrived with).
    pub fn name(&self) -> &str {
        match self {
            Event::Hello { .. } => "hello",
            Event::Alert(_) => "alert",
            Event::Hook(_) => "hook",
            Event::ApprovalRequest(_) => "approval_request",
            Event::ApprovalResolved(_) => "approval_resolved",
            Event::Approvals { .. } => "approvals",
            Event::Snapshot { .. } => "snapshot",
            Event::Status { .. } => "status",
            Event::InvokeStart { .. } => "invoke_start",
            Event::UserMessage { .. } => "user_message",
            Event::TurnStart { .. } => "turn_start",
            Event::TurnEnd { .. } => "turn_end",
            Event::LlmCallStart { .. } => "llm_call_start",
            Event::LlmCallEnd { .. } => "llm_call_end",
            Event::TextDelta { .. } => "text_delta",
            Event::TextDone { .. } => "text_done",
            Event::ThinkingStart => "thinking_start",
            Event::ThinkingDelta { .. } => "thinking_delta",
            Event::ThinkingDone { .. } => "thinking_done",
            Event::ToolCallStart { .. } => "tool_call_start",
            Event::ToolCallArgsDelta { .. } => "tool_call_args_delta",
            Event::ToolCallDone { .. } => "tool_call_done",
            Event::ToolResult { .. } => "tool_result",
            Event::Usage { .. } => "usage",
            Event::Context { .. } => "context",
            Event::CompactionStart { .. } => "compaction_start",
            Event::CompactionEnd { .. } => "compaction_end",
            Event::Entry(_) => "entry",
            Event::RunEnd { .. } => "run_end",
            Event::Lagged { .. } => "lagged",
            Event::Ack { .. } => "ack",
            Event::Error { .. } => "error",
            Event::Shutdown => "shutdown",
            Event::Unknown { event } => event,
        }
    }
}

/// Externally tagged mirror of the known [`Event`] variants, for serde's derived
/// per-variant decoding; `remote` makes the compiler check it against `Event`.
#[derive(Deserialize)]
#[serde(remote = "Event", rename_all = "snake_case")]
#[allow(dead_code)] // Only the generated `deserialize` is used.
enum EventDef {
    Hello {
        protocol_version: u32,
        pod_name: String,
    },
    Alert(Alert),
    Hook(HookRun),
    ApprovalRequest(ApprovalRequest),
    ApprovalResolved(ApprovalResolved),
    Approvals {
        requests: Vec<ApprovalRequest>,
    },
    Snapshot {
        entries: Vec<serde_json::Value>,
        greeting: Greeting,
        status: PodStatus,
    },
    Status {
        status: PodStatus,
    },
    InvokeStart {
        kind: InvokeKind,
    },
    UserMessage {
        segments: Vec<Segment>,
    },
    TurnStart {
        turn: u64,
    },
    TurnEnd {
        turn: u64,
        result: TurnResult,
    },
    LlmCallStart {
        llm_call: u64,
    },
    LlmCallEnd {
        llm_call: u64,
    },
    TextDelta {
        text: String,
    },
    TextDone {
        text: String,
    },
    ThinkingStart,
    ThinkingDelta {
        text: String,
    },
    ThinkingDone {
        text: String,
    },
    ToolCallStart {
        id: String,
        name: String,
    },
    ToolCallArgsDelta {
        id: String,
        json: String,
    },
    ToolCallDone {
        id: String,
        name: String,
        arguments: String,
    },
    ToolResult {
        id: String,
        summary: String,
        #[serde(default)]
        content: Option<String>,
        is_error: bool,
    },
    Usage {
        input_tokens: u64,
        output_tokens: u64,
        cache_read_tokens: u64,
        cache_write_tokens: u64,
    },
    Context {
        context_tokens: u64,
        context_window: u64,
    },
    CompactionStart {
        tokens_before: u64,
    },
    CompactionEnd {
        tokens_before: u64,
        tokens_after: u64,
    },
    Entry(serde_json::Value),
    RunEnd {
        result: TurnResult,
    },
    Lagged {
        from_seq: u64,
    },
    Ack {
        seq: u64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Shutdown,
}

impl AdjacentlyTagged for Event {
    const WHAT: &'static str = "event";
    const TAG: &'static str = "event";
    const CONTENT: &'static str = "data";

    fn deserialize_known<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        EventDef::deserialize(deserializer)
    }

    fn unknown(name: String) -> Self {
        Event::Unknown { event: name }
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        adjacent::deserialize(deserializer)
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TurnResult {
    /// The model stopped on its own.
    Finished,
    /// A client paused it; `resume` continues it.
    Paused,
    /// A client cancelled it.
    Cancelled,
    /// A configured limit (turns, tokens, time) stopped it.
    LimitReached,
    /// It failed; an `error` event says why.
    Failed,
}

/// Machine-readable reason of an [`Event::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = crate::schema::open_fallback)]
pub enum ErrorCode {
    /// `run` while an invocation is running.
    AlreadyRunning,
    /// `cancel` or `pause` with nothing running.
    NotRunning,
    /// `resume` while not paused.
    NotPaused,
    /// Bad JSON, unknown method, wrong params or a line too long; the message says which.
    InvalidRequest,
    /// The LLM provider failed.
    ProviderError,
    /// A tool failed in a way that ended the invocation.
    ToolError,
    /// A requested scope overlaps one held by another pod.
    ScopeConflict,
    /// A configured limit was exceeded.
    LimitExceeded,
    /// A bug or an unexpected failure inside the pod.
    Internal,
    /// A code this version does not know (from a newer server); encodes as `"unknown"`.
    #[serde(other)]
    Unknown,
}

/// A problem reported to humans, outside the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    /// How serious it is.
    pub level: AlertLevel,
    /// Which part of the pod raised it.
    pub source: AlertSource,
    /// What happened.
    pub message: String,
    /// When, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// One run of a user's hook (`[[hooks]]` in the manifest).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct HookRun {
    /// The event it ran for: `session_start`, `user_prompt`, `pre_tool`,
    /// `post_tool`, `turn_end` or `pre_compact`.
    pub event: String,
    /// Its command, as the manifest gives it.
    pub command: String,
    /// The tool, for `pre_tool` and `post_tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Its exit code; absent when it timed out or could not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
    /// What came of it: `continue`, `note`, `rewrite`, `block`, `error` (it
    /// failed and the work went on), or `cancelled` (the work it guarded was
    /// cancelled while it ran, and it was killed).
    pub decision: String,
    /// Its reason, note or error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Severity of an [`Alert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    /// Degraded but working.
    Warn,
    /// Something failed.
    Error,
}

/// Part of the pod that raised an [`Alert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertSource {
    /// The pod process itself (controller, sockets, session log).
    Pod,
    /// The agent loop and its LLM client.
    Worker,
    /// A tool.
    Tool,
    /// The scope registry.
    Registry,
}

/// Static facts about a pod, sent in every [`Event::Snapshot`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Greeting {
    /// Full name of the pod.
    pub pod_name: String,
    /// Working directory of the pod.
    pub cwd: String,
    /// Provider scheme or name of the model's provider.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// One-line description of the scope and the sandbox level enforcing it.
    pub scope_summary: String,
    /// Names of the tools the model may call.
    pub tools: Vec<String>,
    /// Context window of the model, in tokens.
    pub context_window: u64,
    /// Tokens the current context takes.
    pub context_tokens: u64,
}

/// What a pod is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PodStatus {
    /// No invocation.
    Idle,
    /// An invocation is running.
    Running,
    /// An invocation is paused.
    Paused,
}

/// What caused an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvokeKind {
    /// A client's `run`.
    UserSend,
    /// A client's `resume`.
    Resume,
    /// Notifications arriving while idle.
    Notify,
    /// Reports from other pods arriving while idle.
    PodEvent,
    /// A client's `compact` while idle: the invocation only compacts.
    Compact,
}
