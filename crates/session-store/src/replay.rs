//! Replay: the pure fold from log entries to the conversation history.
//!
//! The fold gives the history the live worker had, in the same order. The one
//! place where log order and history order differ is a notification: the pod
//! commits it on receipt (so its sender gets an `ack`), possibly while the model
//! streams or a tool runs, but the worker takes it in only before its next LLM
//! call, after every tool result of the step (providers reject a message between a
//! tool call and its result). Such entries are written `queued`, and a
//! `queue_joined` entry records the moment they joined; the fold keeps them aside
//! until then.

use llm_types::Item;

use crate::entry::LogEntry;

/// The state a log leaves behind: the history and the notifications still queued.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replay {
    /// The conversation as the worker had it after the last entry.
    pub history: Vec<Item>,
    /// Queued notifications that have not joined the history yet, with their seqs,
    /// in log order: the next invocation takes them in.
    pub queued: Vec<(u64, Item)>,
}

impl Replay {
    /// Applies one entry: `segment_start` replaces the history with its own;
    /// `user_input`, `assistant_item`, `tool_result` and `system_item` push their
    /// item, except a queued `system_item`, which waits for the `queue_joined` that
    /// lists it; every other kind leaves the history unchanged.
    pub fn apply(&mut self, entry: LogEntry) {
        // Exhaustive on purpose: a new kind must decide here whether it changes history.
        match entry {
            LogEntry::SegmentStart { history: start, .. } => {
                // Queued items are not part of a segment's history: they stay queued.
                self.history.clear();
                self.history.extend(start.into_iter().map(Item::from));
            }
            LogEntry::SystemItem {
                seq,
                item,
                queued: Some(true),
                ..
            } => self.queued.push((seq, item.into())),
            LogEntry::QueueJoined { seqs, .. } => {
                for seq in seqs {
                    // A seq it cannot find was queued before the segment this replay
                    // started from; nothing of it is left to place.
                    if let Some(at) = self.queued.iter().position(|(s, _)| *s == seq) {
                        let (_, item) = self.queued.remove(at);
                        self.history.push(item);
                    }
                }
            }
            LogEntry::UserInput { item, .. }
            | LogEntry::AssistantItem { item, .. }
            | LogEntry::ToolResult { item, .. }
            | LogEntry::SystemItem { item, .. } => self.history.push(item.into()),
            LogEntry::InvokeStart { .. }
            | LogEntry::Usage { .. }
            | LogEntry::TurnEnd { .. }
            | LogEntry::RunError { .. }
            | LogEntry::ChildSpawned { .. }
            | LogEntry::ChildRemoved { .. }
            | LogEntry::ChildCursor { .. }
            | LogEntry::Hook { .. }
            | LogEntry::ApprovalRequest { .. }
            | LogEntry::ApprovalAnswer { .. }
            | LogEntry::CompactionStart { .. }
            | LogEntry::CompactionEnd { .. }
            | LogEntry::Unknown { .. } => {}
        }
    }

    /// The fold of `entries`, in log order.
    pub fn of(entries: impl IntoIterator<Item = LogEntry>) -> Replay {
        let mut replay = Replay::default();
        for entry in entries {
            replay.apply(entry);
        }
        replay
    }
}

/// The history that `entries`, in log order, leave behind (queued notifications
/// that never joined are not part of it; [`Replay::of`] keeps them).
pub fn replay(entries: impl IntoIterator<Item = LogEntry>) -> Vec<Item> {
    Replay::of(entries).history
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{EntryBody, LoggedItem};
    use llm_types::{Role, Usage};
    use protocol::{InvokeKind, Segment, TurnResult};

    fn entries(bodies: Vec<EntryBody>) -> Vec<LogEntry> {
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, b)| b.into_entry(i as u64 + 1, String::new(), 0))
            .collect()
    }

    #[test]
    fn items_are_pushed_and_the_rest_ignored() {
        let user = Item::text(Role::User, "list files");
        let call = Item::tool_call("c1", "Glob", r#"{"pattern":"*"}"#);
        let result = Item::tool_result("c1", "2 files", Some("a\nb".into()), false);
        let answer = Item::text(Role::Assistant, "a and b");
        let note = Item::text(Role::System, "child finished");
        let log = entries(vec![
            EntryBody::InvokeStart {
                invoke_kind: InvokeKind::UserSend,
                turn: 1,
            },
            EntryBody::UserInput {
                segments: vec![Segment::text("list files")],
                item: user.clone().into(),
            },
            EntryBody::AssistantItem {
                item: call.clone().into(),
            },
            EntryBody::Usage {
                llm_call: 1,
                usage: Usage::default(),
            },
            EntryBody::ToolResult {
                item: result.clone().into(),
            },
            EntryBody::AssistantItem {
                item: answer.clone().into(),
            },
            EntryBody::TurnEnd {
                turn: 1,
                result: TurnResult::Finished,
            },
            EntryBody::SystemItem {
                origin: "pod_event".into(),
                item: note.clone().into(),
                queued: None,
            },
            EntryBody::RunError {
                message: "provider down".into(),
            },
        ]);
        assert_eq!(replay(log), vec![user, call, result, answer, note]);
    }

    #[test]
    fn queued_notifications_join_where_the_worker_took_them_in() {
        // Live: the notification arrived while the tool ran (so it is logged before
        // the result) and the worker took it in before its next LLM call.
        let user = Item::text(Role::User, "sleep");
        let call = Item::tool_call("c1", "Bash", r#"{"command":"sleep 1"}"#);
        let result = Item::tool_result("c1", "exit 0", None, false);
        let note = Item::text(Role::User, "[notification] note");
        let answer = Item::text(Role::Assistant, "slept");
        let late = Item::text(Role::User, "[notification] after the end");
        let log = entries(vec![
            EntryBody::UserInput {
                segments: vec![Segment::text("sleep")],
                item: user.clone().into(),
            },
            EntryBody::AssistantItem {
                item: call.clone().into(),
            },
            EntryBody::SystemItem {
                origin: "notify".into(),
                item: note.clone().into(),
                queued: Some(true),
            },
            EntryBody::ToolResult {
                item: result.clone().into(),
            },
            EntryBody::QueueJoined { seqs: vec![3] },
            EntryBody::AssistantItem {
                item: answer.clone().into(),
            },
            EntryBody::SystemItem {
                origin: "notify".into(),
                item: late.clone().into(),
                queued: Some(true),
            },
        ]);
        let replayed = Replay::of(log.clone());
        assert_eq!(
            replayed.history,
            vec![user, call, result, note, answer.clone()]
        );
        assert_eq!(replayed.queued, vec![(7, late)]);
        assert_eq!(replay(log).last(), Some(&answer));
    }

    #[test]
    fn queue_joined_keeps_its_own_order_and_skips_unknown_seqs() {
        let a = Item::text(Role::User, "a");
        let b = Item::text(Role::User, "b");
        let queued = |item: &Item| EntryBody::SystemItem {
            origin: "pod_event".into(),
            item: item.clone().into(),
            queued: Some(true),
        };
        let log = entries(vec![
            queued(&a),
            queued(&b),
            EntryBody::QueueJoined {
                seqs: vec![2, 99, 1],
            },
        ]);
        let replayed = Replay::of(log);
        assert_eq!(replayed.history, vec![b, a]);
        assert!(replayed.queued.is_empty());
    }

    #[test]
    fn a_segment_start_keeps_what_is_still_queued() {
        let note = Item::text(Role::User, "[notification] n");
        let kept = Item::text(Role::User, "summary");
        let mut log = entries(vec![EntryBody::SystemItem {
            origin: "notify".into(),
            item: note.clone().into(),
            queued: Some(true),
        }]);
        log.push(LogEntry::SegmentStart {
            seq: 2,
            prev: String::new(),
            ts: 0,
            format_version: 1,
            history: vec![LoggedItem(kept.clone())],
            previous_segment: Some("000001.jsonl".into()),
        });
        log.push(EntryBody::QueueJoined { seqs: vec![1] }.into_entry(3, String::new(), 0));
        assert_eq!(Replay::of(log).history, vec![kept, note]);
    }

    #[test]
    fn segment_start_resets_history() {
        let kept = Item::text(Role::User, "summary of earlier work");
        let mut log = entries(vec![EntryBody::AssistantItem {
            item: Item::text(Role::Assistant, "old").into(),
        }]);
        log.push(LogEntry::SegmentStart {
            seq: 2,
            prev: String::new(),
            ts: 0,
            format_version: 1,
            history: vec![LoggedItem(kept.clone())],
            previous_segment: Some("000001.jsonl".into()),
        });
        log.push(
            EntryBody::AssistantItem {
                item: Item::text(Role::Assistant, "new").into(),
            }
            .into_entry(3, String::new(), 0),
        );
        assert_eq!(replay(log), vec![kept, Item::text(Role::Assistant, "new")]);
    }

    #[test]
    fn unknown_entries_do_not_change_history() {
        let log = vec![LogEntry::Unknown {
            seq: 1,
            prev: String::new(),
            ts: 0,
            kind: "spawn_record".into(),
            fields: serde_json::Map::new(),
        }];
        assert!(replay(log).is_empty());
    }
}
