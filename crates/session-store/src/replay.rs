//! Replay: the pure fold from log entries to the conversation history.

use llm_types::Item;

use crate::entry::LogEntry;

/// Applies one entry to `history`: `segment_start` replaces it with its own history;
/// `user_input`, `assistant_item`, `tool_result` and `system_item` push their item;
/// every other kind leaves it unchanged.
pub fn apply(history: &mut Vec<Item>, entry: LogEntry) {
    // Exhaustive on purpose: a new kind must decide here whether it changes history.
    match entry {
        LogEntry::SegmentStart { history: start, .. } => {
            history.clear();
            history.extend(start.into_iter().map(Item::from));
        }
        LogEntry::UserInput { item, .. }
        | LogEntry::AssistantItem { item, .. }
        | LogEntry::ToolResult { item, .. }
        | LogEntry::SystemItem { item, .. } => history.push(item.into()),
        LogEntry::InvokeStart { .. }
        | LogEntry::Usage { .. }
        | LogEntry::TurnEnd { .. }
        | LogEntry::RunError { .. }
        | LogEntry::ChildSpawned { .. }
        | LogEntry::ChildRemoved { .. }
        | LogEntry::ChildCursor { .. }
        | LogEntry::Unknown { .. } => {}
    }
}

/// The history that `entries`, in log order, leave behind.
pub fn replay(entries: impl IntoIterator<Item = LogEntry>) -> Vec<Item> {
    let mut history = Vec::new();
    for entry in entries {
        apply(&mut history, entry);
    }
    history
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
            },
            EntryBody::RunError {
                message: "provider down".into(),
            },
        ]);
        assert_eq!(replay(log), vec![user, call, result, answer, note]);
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
