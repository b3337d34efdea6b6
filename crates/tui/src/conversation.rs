//! One pod's conversation as the UI shows it: blocks built from committed log
//! entries (a snapshot, live `entry` events, or the session log of a stopped
//! pod), plus what is streaming right now.
//!
//! Committed entries are the truth: streamed deltas are shown only until the
//! item they belong to is committed, so a `lagged` replay or a reconnect never
//! shows text twice. Entries are applied once each (by `seq`).

use llm_types::{Item, Role, Usage};
use protocol::{AlertLevel, Event, Greeting, InvokeKind, PodStatus, TurnResult};
use session_store::LogEntry;

/// Longest tool output kept per call (its tail): the UI shows a tail anyway,
/// and a long session must not hold every output whole.
const OUTPUT_KEPT: usize = 4096;

/// Longest streaming text rendered while it streams (its tail): the block is
/// rendered whole once committed.
pub(crate) const STREAM_SHOWN: usize = 8192;

/// What a block shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BlockKind {
    /// The user's input (or a notification the user sent).
    User(String),
    /// The model's text (markdown).
    Assistant(String),
    /// The model's reasoning.
    Thinking(String),
    /// A tool call and, once it came, its result.
    Tool(ToolCall),
    /// A child pod's report or another pod event.
    Report(String),
    /// A notification sent while the pod was busy.
    Notification(String),
    /// A marker line: a turn that did not start with user input, a child
    /// spawned, a turn that did not finish normally.
    Marker(String),
    /// An alert from the pod.
    Alert(AlertLevel, String),
    /// An error (a failed invocation, a refused method).
    Error(String),
}

/// A tool call as shown.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    /// Call id (results refer to it).
    pub(crate) id: String,
    /// Tool name.
    pub(crate) name: String,
    /// Arguments as JSON text.
    pub(crate) arguments: String,
    /// The result, once it came.
    pub(crate) result: Option<ToolOutcome>,
}

/// A tool's result as shown.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolOutcome {
    /// One-line summary.
    pub(crate) summary: String,
    /// The tail of the output (at most [`OUTPUT_KEPT`] bytes).
    pub(crate) output: Option<String>,
    /// Lines of the whole output.
    pub(crate) output_lines: usize,
    /// Whether the tool failed.
    pub(crate) is_error: bool,
}

/// A block and how it is shown.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Block {
    /// What it shows.
    pub(crate) kind: BlockKind,
    /// Folded blocks show one line (tool calls and reasoning start folded).
    pub(crate) folded: bool,
    /// Bumped on every change, so cached renderings know they are stale.
    pub(crate) version: u64,
}

impl Block {
    fn new(kind: BlockKind) -> Block {
        let folded = matches!(kind, BlockKind::Tool(_) | BlockKind::Thinking(_));
        Block {
            kind,
            folded,
            version: 0,
        }
    }

    /// Whether Enter can fold or unfold it.
    pub(crate) fn foldable(&self) -> bool {
        matches!(self.kind, BlockKind::Tool(_) | BlockKind::Thinking(_))
    }
}

/// What is streaming now (not committed yet).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Streaming {
    /// Assistant text so far.
    pub(crate) text: String,
    /// Reasoning so far.
    pub(crate) thinking: String,
    /// Tool calls started (names), in order.
    pub(crate) tools: Vec<String>,
}

impl Streaming {
    /// Whether nothing is streaming.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.text.is_empty() && self.thinking.is_empty() && self.tools.is_empty()
    }
}

/// One pod's conversation.
#[derive(Debug, Default)]
pub(crate) struct Conversation {
    /// The blocks, oldest first.
    pub(crate) blocks: Vec<Block>,
    /// What is streaming now.
    pub(crate) streaming: Streaming,
    /// The last entry applied.
    last_seq: u64,
    /// Token totals from the entries seen.
    pub(crate) usage: Usage,
    /// The pod's facts (from its snapshot).
    pub(crate) greeting: Option<Greeting>,
    /// The pod's status as its connection reports it.
    pub(crate) status: Option<PodStatus>,
    /// How its last invocation ended.
    pub(crate) last_result: Option<TurnResult>,
    /// Approval requests shown (from the log or as events), by id.
    asked: std::collections::HashSet<String>,
    /// Approval answers shown, by id.
    answered: std::collections::HashSet<String>,
}

impl Conversation {
    /// An empty conversation.
    pub(crate) fn new() -> Conversation {
        Conversation::default()
    }

    /// A conversation from a snapshot (or a session log): starts over.
    pub(crate) fn reset(&mut self) {
        *self = Conversation::default();
    }

    /// Applies a log entry given as its JSON line (snapshot or `entry` event).
    /// Malformed entries become an error block rather than vanishing.
    pub(crate) fn apply_json(&mut self, value: serde_json::Value) {
        match serde_json::from_value::<LogEntry>(value) {
            Ok(entry) => self.apply_entry(&entry),
            Err(e) => self.push(BlockKind::Error(format!("unreadable log entry: {e}"))),
        }
    }

    /// Applies a committed entry once (entries at or below the last seq seen
    /// are replays and are skipped).
    pub(crate) fn apply_entry(&mut self, entry: &LogEntry) {
        let seq = entry.seq();
        if seq != 0 && seq <= self.last_seq {
            return;
        }
        self.last_seq = seq;
        match entry {
            LogEntry::SegmentStart { history, .. } => {
                if !history.is_empty() {
                    self.push(BlockKind::Marker(format!(
                        "history of {} items carried over",
                        history.len()
                    )));
                    for item in history {
                        self.item(&item.0);
                    }
                }
            }
            LogEntry::UserInput { item, .. } => self.item(&item.0),
            LogEntry::InvokeStart {
                invoke_kind, turn, ..
            } => {
                self.last_result = None;
                let why = match invoke_kind {
                    InvokeKind::UserSend => None,
                    InvokeKind::Resume => Some("resumed"),
                    InvokeKind::Notify => Some("started by a notification"),
                    InvokeKind::PodEvent => Some("started by a pod report"),
                    InvokeKind::Compact => Some("compacting on request"),
                };
                if let Some(why) = why {
                    self.push(BlockKind::Marker(format!("turn {turn} {why}")));
                }
            }
            LogEntry::AssistantItem { item, .. } => {
                self.clear_streaming();
                self.item(&item.0);
            }
            LogEntry::ToolResult { item, .. } => self.item(&item.0),
            LogEntry::SystemItem { origin, item, .. } => {
                let text = item_text(&item.0);
                match origin.as_str() {
                    "pod_event" => self.push(BlockKind::Report(text)),
                    "notify" => self.push(BlockKind::Notification(text)),
                    other => self.push(BlockKind::Marker(format!("{other}: {text}"))),
                }
            }
            LogEntry::Usage { usage, .. } => add_usage(&mut self.usage, usage),
            LogEntry::TurnEnd { turn, result, .. } => {
                self.clear_streaming();
                self.last_result = Some(*result);
                let what = match result {
                    TurnResult::Finished => None,
                    TurnResult::Paused => Some("paused"),
                    TurnResult::Cancelled => Some("cancelled"),
                    TurnResult::LimitReached => Some("stopped by a limit"),
                    TurnResult::Failed => Some("failed"),
                };
                if let Some(what) = what {
                    self.push(BlockKind::Marker(format!("turn {turn} {what}")));
                }
            }
            LogEntry::RunError { message, .. } => self.push(BlockKind::Error(message.clone())),
            LogEntry::ChildSpawned { name, .. } => {
                self.push(BlockKind::Marker(format!("spawned child pod {name}")));
            }
            LogEntry::ChildRemoved { name, reason, .. } => {
                self.push(BlockKind::Marker(format!(
                    "child pod {name} removed: {reason}"
                )));
            }
            LogEntry::CompactionStart { tokens_before, .. } => {
                self.push(BlockKind::Marker(format!(
                    "compacting the context ({} tokens)",
                    crate::ui::tokens(*tokens_before)
                )));
            }
            LogEntry::CompactionEnd {
                tokens_before,
                tokens_after,
                ..
            } => {
                self.push(BlockKind::Marker(format!(
                    "context compacted: {} → {} tokens",
                    crate::ui::tokens(*tokens_before),
                    crate::ui::tokens(*tokens_after)
                )));
            }
            LogEntry::Hook { run, .. } => {
                let line = pod_client::transcript::hook_line(run);
                self.push(BlockKind::Marker(line.trim_matches(['[', ']']).to_string()));
            }
            LogEntry::ApprovalRequest { request, .. } => {
                self.asked.insert(request.id.clone());
                let line = pod_client::transcript::approval_request_line(request);
                self.push(BlockKind::Marker(line.trim_matches(['[', ']']).to_string()));
            }
            LogEntry::ApprovalAnswer { resolved, .. } => {
                self.answered.insert(resolved.id.clone());
                let line = pod_client::transcript::approval_resolved_line(resolved);
                self.push(BlockKind::Marker(line.trim_matches(['[', ']']).to_string()));
            }
            LogEntry::ChildCursor { .. } | LogEntry::QueueJoined { .. } => {}
            LogEntry::Unknown { kind, .. } => {
                self.push(BlockKind::Marker(format!(
                    "an entry of kind `{kind}` this version does not know"
                )));
            }
        }
    }

    /// Applies a live event (a snapshot arrives only on connect, decoded
    /// straight into a new conversation: `pod_client::snapshot`).
    pub(crate) fn apply_event(&mut self, event: Event) {
        match event {
            Event::Entry(value) => self.apply_json(value),
            Event::Context {
                context_tokens,
                context_window,
            } => {
                if let Some(g) = &mut self.greeting {
                    g.context_tokens = context_tokens;
                    g.context_window = context_window;
                }
            }
            Event::Status { status } => self.status = Some(status),
            Event::TextDelta { text } => {
                self.streaming.text.push_str(&text);
                self.streamed();
            }
            Event::ThinkingDelta { text } => {
                self.streaming.thinking.push_str(&text);
                self.streamed();
            }
            Event::ToolCallStart { name, .. } => {
                self.streaming.tools.push(name);
                self.streamed();
            }
            Event::Lagged { .. } => {
                // Committed entries follow; what streamed meanwhile is lost,
                // and the entries carry it.
                self.clear_streaming();
            }
            Event::Alert(alert) => self.push(BlockKind::Alert(alert.level, alert.message)),
            Event::ApprovalRequest(r) => {
                // Shown once: a pod's own requests come first as log
                // entries, and requests are sent again after a restart.
                if self.asked.insert(r.id.clone()) {
                    let line = pod_client::transcript::approval_request_line(&r);
                    let text = line.trim_matches(['[', ']']).to_string();
                    self.push(BlockKind::Alert(AlertLevel::Warn, text));
                }
            }
            Event::ApprovalResolved(r) => {
                if self.answered.insert(r.id.clone()) {
                    let line = pod_client::transcript::approval_resolved_line(&r);
                    self.push(BlockKind::Marker(line.trim_matches(['[', ']']).to_string()));
                }
            }
            Event::Error { message, .. } => {
                // An invocation's failure is also logged (`run_error`); a
                // refused method is not: show it either way, once.
                let duplicate = matches!(
                    self.blocks.last(),
                    Some(Block { kind: BlockKind::Error(m), .. }) if *m == message
                );
                if !duplicate {
                    self.push(BlockKind::Error(message));
                }
            }
            Event::Usage { .. }
            | Event::CompactionStart { .. }
            | Event::CompactionEnd { .. }
            // Shown from its `hook` log entry, which comes with it.
            | Event::Hook(_)
            // The answer to `watch_approvals`; requests come as events.
            | Event::Approvals { .. }
            | Event::Hello { .. }
            | Event::InvokeStart { .. }
            | Event::UserMessage { .. }
            | Event::TurnStart { .. }
            | Event::TurnEnd { .. }
            | Event::LlmCallStart { .. }
            | Event::LlmCallEnd { .. }
            | Event::TextDone { .. }
            | Event::ThinkingStart
            | Event::ThinkingDone { .. }
            | Event::ToolCallArgsDelta { .. }
            | Event::ToolCallDone { .. }
            | Event::ToolResult { .. }
            | Event::RunEnd { .. }
            | Event::Ack { .. }
            | Event::Shutdown
            | Event::Snapshot { .. }
            | Event::Unknown { .. } => {}
        }
    }

    fn streamed(&mut self) {
        // Keep memory flat however long the stream: only the tail is shown.
        for text in [&mut self.streaming.text, &mut self.streaming.thinking] {
            if text.len() > 4 * STREAM_SHOWN {
                let cut = floor_char_boundary(text, text.len() - STREAM_SHOWN);
                text.replace_range(..cut, "");
            }
        }
    }

    fn clear_streaming(&mut self) {
        self.streaming = Streaming::default();
    }

    fn push(&mut self, kind: BlockKind) {
        self.blocks.push(Block::new(kind));
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Message { role, .. } => {
                let text = item.message_text();
                match role {
                    Role::User => self.push(BlockKind::User(text)),
                    Role::Assistant => {
                        if !text.trim().is_empty() {
                            self.push(BlockKind::Assistant(text));
                        }
                    }
                    Role::System => self.push(BlockKind::Marker(format!("system: {text}"))),
                }
            }
            Item::Reasoning { text, .. } => {
                if !text.trim().is_empty() {
                    self.push(BlockKind::Thinking(text.clone()));
                }
            }
            Item::ToolCall {
                id,
                name,
                arguments,
                ..
            } => self.push(BlockKind::Tool(ToolCall {
                id: id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
                result: None,
            })),
            Item::ToolResult {
                call_id,
                summary,
                content,
                is_error,
            } => {
                let outcome = ToolOutcome {
                    summary: summary.clone(),
                    output_lines: content.as_deref().map_or(0, |c| c.lines().count()),
                    output: content.as_deref().map(tail),
                    is_error: *is_error,
                };
                // Results follow their calls closely: search from the end.
                let call = self
                    .blocks
                    .iter_mut()
                    .rev()
                    .find_map(|b| match &mut b.kind {
                        BlockKind::Tool(call) if call.id == *call_id && call.result.is_none() => {
                            Some((call, &mut b.version))
                        }
                        _ => None,
                    });
                match call {
                    Some((call, version)) => {
                        call.result = Some(outcome);
                        *version += 1;
                    }
                    None => self.push(BlockKind::Tool(ToolCall {
                        id: call_id.clone(),
                        name: "(result)".into(),
                        arguments: String::new(),
                        result: Some(outcome),
                    })),
                }
            }
            Item::ProviderItem { provider, .. } => {
                self.push(BlockKind::Marker(format!("{provider:?} server-side block")));
            }
        }
    }
}

fn add_usage(total: &mut Usage, u: &Usage) {
    total.input_tokens += u.input_tokens;
    total.output_tokens += u.output_tokens;
    total.cache_read_tokens += u.cache_read_tokens;
    total.cache_write_tokens += u.cache_write_tokens;
}

fn item_text(item: &Item) -> String {
    match item {
        Item::Message { .. } => item.message_text(),
        Item::Reasoning { text, .. } => text.clone(),
        Item::ToolCall {
            name, arguments, ..
        } => format!("{name} {arguments}"),
        Item::ToolResult { summary, .. } => summary.clone(),
        Item::ProviderItem { provider, .. } => format!("{provider:?} block"),
    }
}

/// The last [`OUTPUT_KEPT`] bytes of `text`, starting at a line.
fn tail(text: &str) -> String {
    if text.len() <= OUTPUT_KEPT {
        return text.to_string();
    }
    let cut = floor_char_boundary(text, text.len() - OUTPUT_KEPT);
    let rest = &text[cut..];
    match rest.find('\n') {
        Some(nl) => rest[nl + 1..].to_string(),
        None => rest.to_string(),
    }
}

/// The largest char boundary at or below `at`.
pub(crate) fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(seq: u64, kind: &str, rest: serde_json::Value) -> serde_json::Value {
        let mut v = json!({"kind": kind, "seq": seq, "prev": "0".repeat(64), "ts": 1});
        if let (Some(m), Some(r)) = (v.as_object_mut(), rest.as_object()) {
            m.extend(r.clone());
        }
        v
    }

    fn user(seq: u64, text: &str) -> serde_json::Value {
        entry(
            seq,
            "user_input",
            json!({"segments": [{"kind": "text", "content": text}],
                   "item": {"type": "message", "role": "user", "content": [{"type": "text", "text": text}]}}),
        )
    }

    #[test]
    fn approval_requests_show_once_whether_logged_here_or_sent_from_below() {
        let request = protocol::ApprovalRequest {
            id: "boss.api/1".into(),
            pod: "boss.api".into(),
            tool: "Bash".into(),
            input: json!({"command": "git push"}),
            rule: "[[permissions]] tool = \"Bash\" (overlay)".into(),
            requested_ms: 1,
            expires_ms: 2,
        };
        let mut c = Conversation::new();
        // From a pod below: an alert that says how to answer, once.
        c.apply_event(Event::ApprovalRequest(request.clone()));
        c.apply_event(Event::ApprovalRequest(request.clone()));
        assert_eq!(c.blocks.len(), 1);
        let BlockKind::Alert(AlertLevel::Warn, text) = &c.blocks[0].kind else {
            panic!("{:?}", c.blocks)
        };
        assert!(text.contains("/approve boss.api/1"), "{text}");
        let resolved = protocol::ApprovalResolved {
            id: "boss.api/1".into(),
            approved: true,
            by: "client".into(),
            reason: None,
            remember: false,
        };
        c.apply_event(Event::ApprovalResolved(resolved.clone()));
        assert_eq!(c.blocks.len(), 2);
        // This pod's own: its log entries come first; the events add nothing.
        let mut own = Conversation::new();
        own.apply_json(entry(
            1,
            "approval_request",
            json!({"request": request, "call_id": "c1"}),
        ));
        own.apply_event(Event::ApprovalRequest(request));
        own.apply_json(entry(2, "approval_answer", json!({"resolved": resolved})));
        own.apply_event(Event::ApprovalResolved(resolved));
        assert_eq!(own.blocks.len(), 2, "{:?}", own.blocks);
    }

    #[test]
    fn replayed_entries_apply_once() {
        let mut c = Conversation::new();
        c.apply_json(user(1, "hi"));
        c.apply_json(user(1, "hi"));
        c.apply_json(user(2, "again"));
        assert_eq!(c.blocks.len(), 2);
    }

    #[test]
    fn a_result_joins_its_call_and_streaming_ends_when_the_item_is_committed() {
        let mut c = Conversation::new();
        c.apply_event(Event::TextDelta {
            text: "Look".into(),
        });
        assert_eq!(c.streaming.text, "Look");
        c.apply_json(entry(
            1,
            "assistant_item",
            json!({"item": {"type": "tool_call", "id": "c1", "name": "Bash", "arguments": "{\"command\":\"ls\"}"}}),
        ));
        assert!(c.streaming.is_empty());
        c.apply_json(entry(
            2,
            "tool_result",
            json!({"item": {"type": "tool_result", "call_id": "c1", "summary": "exit code 0", "content": "a\nb"}}),
        ));
        assert_eq!(c.blocks.len(), 1);
        let BlockKind::Tool(call) = &c.blocks[0].kind else {
            panic!("{:?}", c.blocks)
        };
        let result = call.result.as_ref().unwrap();
        assert_eq!(
            (result.summary.as_str(), result.output_lines),
            ("exit code 0", 2)
        );
        assert!(c.blocks[0].folded);
    }

    #[test]
    fn a_malformed_entry_is_shown_not_dropped() {
        let mut c = Conversation::new();
        c.apply_json(json!({"kind": "user_input", "seq": "x"}));
        assert!(matches!(&c.blocks[0].kind, BlockKind::Error(m) if m.contains("unreadable")));
    }

    #[test]
    fn a_long_stream_keeps_only_its_tail() {
        let mut c = Conversation::new();
        for _ in 0..100_000 {
            c.apply_event(Event::TextDelta {
                text: "word ".into(),
            });
        }
        assert!(c.streaming.text.len() <= 4 * STREAM_SHOWN + 5);
    }

    #[test]
    fn long_outputs_keep_their_tail() {
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        let kept = tail(&text);
        assert!(kept.len() <= OUTPUT_KEPT);
        assert!(kept.starts_with("line ") && kept.ends_with("line 1999\n"));
    }

    #[test]
    fn a_lagged_replay_shows_each_entry_once_and_drops_the_stale_stream() {
        let mut c = Conversation::new();
        c.apply_json(user(1, "one"));
        c.apply_event(Event::TextDelta {
            text: "partial ans".into(),
        });
        c.apply_event(Event::Lagged { from_seq: 1 });
        assert!(c.streaming.is_empty());
        // The replay starts at the first missed entry, which may repeat seen ones.
        c.apply_json(user(1, "one"));
        c.apply_json(entry(
            2,
            "assistant_item",
            json!({"item": {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "partial answer"}]}}),
        ));
        let kinds: Vec<&BlockKind> = c.blocks.iter().map(|b| &b.kind).collect();
        assert_eq!(
            kinds,
            [
                &BlockKind::User("one".into()),
                &BlockKind::Assistant("partial answer".into())
            ]
        );
    }
}
