//! How the agent loop's steps become log entries and events: each history
//! append is committed to the session log and then broadcast (as its `entry`
//! line and as the matching state event); deltas are broadcast live only.

use llm_types::{ContentPart, Item, Role};
use llm_worker::llm_client::stream::StreamEvent;
use llm_worker::worker::{AppendKind, SinkError, WorkerEvent, WorkerSink};
use protocol::{AlertLevel, AlertSource, Event};
use session_store::{EntryBody, LoggedItem};

use crate::state::{PodState, SharedState, StateError, lock};

/// The [`WorkerSink`] of a pod: writes through the shared state.
#[derive(Debug, Clone)]
pub(crate) struct PodSink {
    state: SharedState,
    /// Why queued notifications could not join (their `queue_joined` entry was
    /// not written); the next event fails the invocation with it.
    join_failed: Option<String>,
}

impl PodSink {
    /// A sink writing to `state`.
    pub(crate) fn new(state: SharedState) -> Self {
        PodSink {
            state,
            join_failed: None,
        }
    }
}

fn text_of(content: &[ContentPart]) -> String {
    content
        .iter()
        .map(|ContentPart::Text { text }| text.as_str())
        .collect()
}

/// The state event that accompanies a committed item, if any.
fn item_event(kind: AppendKind, item: &Item) -> Option<Event> {
    match (kind, item) {
        (
            AppendKind::Assistant,
            Item::Message {
                role: Role::Assistant,
                content,
                ..
            },
        ) => Some(Event::TextDone {
            text: text_of(content),
        }),
        (AppendKind::Assistant, Item::Reasoning { text, .. }) => {
            Some(Event::ThinkingDone { text: text.clone() })
        }
        (
            AppendKind::ToolResult,
            Item::ToolResult {
                call_id,
                summary,
                content,
                is_error,
            },
        ) => Some(Event::ToolResult {
            id: call_id.clone(),
            summary: summary.clone(),
            content: content.clone(),
            is_error: *is_error,
        }),
        _ => None,
    }
}

fn stream_event(event: &StreamEvent) -> Option<Event> {
    Some(match event {
        StreamEvent::TextDelta { text } => Event::TextDelta { text: text.clone() },
        StreamEvent::ThinkingStart => Event::ThinkingStart,
        StreamEvent::ThinkingDelta { text } => Event::ThinkingDelta { text: text.clone() },
        StreamEvent::ToolCallStart { id, name } => Event::ToolCallStart {
            id: id.clone(),
            name: name.clone(),
        },
        StreamEvent::ToolCallArgsDelta { id, json } => Event::ToolCallArgsDelta {
            id: id.clone(),
            json: json.clone(),
        },
        StreamEvent::ToolCallDone {
            id,
            name,
            arguments,
        } => Event::ToolCallDone {
            id: id.clone(),
            name: name.clone(),
            arguments: arguments.clone(),
        },
        // The call's final usage is committed at its end.
        StreamEvent::Usage(_) => return None,
    })
}

fn handle(state: &mut PodState, event: WorkerEvent<'_>) -> Result<(), StateError> {
    match event {
        WorkerEvent::LlmCallStart { llm_call } => {
            tracing::debug!(llm_call, "LLM call started");
            state.broadcast(&Event::LlmCallStart { llm_call })?;
        }
        WorkerEvent::Retry { llm_call, notice } => {
            let message = format!(
                "LLM call {llm_call} failed ({}); retry {} in {:.1} s",
                notice.error,
                notice.retry,
                notice.delay.as_secs_f64()
            );
            tracing::warn!("{message}");
            state.alert(AlertLevel::Warn, AlertSource::Worker, message)?;
        }
        WorkerEvent::Stream(delta) => {
            if let StreamEvent::TextDelta { text } = delta {
                state.stream_text(text);
            }
            if let Some(event) = stream_event(delta) {
                state.broadcast(&event)?;
            }
        }
        WorkerEvent::Appended { kind, item } => {
            let logged = LoggedItem(item.clone());
            let body = match kind {
                AppendKind::Assistant => EntryBody::AssistantItem { item: logged },
                AppendKind::ToolResult => EntryBody::ToolResult { item: logged },
                // The pod commits inputs itself and passes none to the worker;
                // anything else given as input is kept as a system item.
                AppendKind::Input => EntryBody::SystemItem {
                    origin: "input".into(),
                    item: logged,
                    queued: None,
                },
            };
            state.commit(body)?;
            if matches!(item, Item::Message { .. }) {
                state.end_stream_text();
            }
            if let Some(event) = item_event(kind, item) {
                state.broadcast(&event)?;
            }
        }
        WorkerEvent::Usage { llm_call, usage } => {
            tracing::debug!(
                llm_call,
                input = usage.input_tokens,
                cached = usage.cache_read_tokens,
                output = usage.output_tokens,
                "LLM call usage"
            );
            state.commit(EntryBody::Usage { llm_call, usage })?;
            state.add_usage(usage, usage.total_input() + usage.output_tokens);
            state.broadcast(&Event::Usage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cache_read_tokens: usage.cache_read_tokens,
                cache_write_tokens: usage.cache_write_tokens,
            })?;
            let greeting = state.greeting();
            let context = Event::Context {
                context_tokens: greeting.context_tokens,
                context_window: greeting.context_window,
            };
            state.broadcast(&context)?;
        }
        WorkerEvent::CompactionStart { tokens_before } => {
            tracing::info!(tokens_before, "compacting the context");
            state.commit(EntryBody::CompactionStart { tokens_before })?;
            state.broadcast(&Event::CompactionStart { tokens_before })?;
        }
        WorkerEvent::Compacted {
            history,
            tokens_before,
            tokens_after,
        } => {
            // The new segment first: a crash after it restores from the
            // summary; `compaction_end` only records that it happened.
            state.start_segment(history.to_vec())?;
            state.commit(EntryBody::CompactionEnd {
                tokens_before,
                tokens_after,
            })?;
            state.sync()?;
            tracing::info!(tokens_before, tokens_after, "compacted the context");
            state.broadcast(&Event::CompactionEnd {
                tokens_before,
                tokens_after,
            })?;
        }
        WorkerEvent::CompactionFailed { error } => {
            let message = format!("compacting the context failed ({error}); going on without it");
            tracing::warn!("{message}");
            state.alert(AlertLevel::Warn, AlertSource::Worker, message)?;
        }
        WorkerEvent::LlmCallEnd { llm_call, .. } => {
            state.end_stream_text();
            state.broadcast(&Event::LlmCallEnd { llm_call })?;
            state.refresh_status_file();
        }
    }
    Ok(())
}

impl WorkerSink for PodSink {
    fn on_event(&mut self, event: WorkerEvent<'_>) -> Result<(), SinkError> {
        if let Some(e) = self.join_failed.take() {
            return Err(SinkError(e));
        }
        handle(&mut lock(&self.state), event).map_err(|e| SinkError(e.to_string()))
    }

    fn pending_input(&mut self) -> Vec<Item> {
        match lock(&self.state).join_pending() {
            Ok(items) => items,
            Err(e) => {
                // They stay queued (nothing was taken); the invocation ends at
                // the next event rather than call the model without them.
                self.join_failed = Some(format!("cannot record queued notifications: {e}"));
                Vec::new()
            }
        }
    }
}
