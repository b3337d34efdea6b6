//! A session log as a readable transcript, for `pod logs`.

use std::io::{self, Write};

use llm_types::{ContentPart, Item, Role};
use session_store::LogEntry;

/// Longest tool-call arguments shown.
const ARGS_SHOWN: usize = 200;

fn text_of(content: &[ContentPart]) -> String {
    content
        .iter()
        .map(|ContentPart::Text { text }| text.as_str())
        .collect()
}

fn one_line(s: &str, max: usize) -> String {
    let flat = s.replace('\n', " ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut out: String = flat.chars().take(max).collect();
        out.push('…');
        out
    }
}

fn write_item(out: &mut dyn Write, item: &Item) -> io::Result<()> {
    match item {
        Item::Message { role, content, .. } => {
            let text = text_of(content);
            match role {
                Role::User => {
                    for line in text.lines() {
                        writeln!(out, "> {line}")?;
                    }
                }
                Role::System => writeln!(out, "[system] {}", one_line(&text, ARGS_SHOWN))?,
                Role::Assistant => writeln!(out, "{text}")?,
            }
        }
        Item::Reasoning { text, .. } => {
            if !text.is_empty() {
                writeln!(out, "· thinking: {}", one_line(text, ARGS_SHOWN))?;
            }
        }
        Item::ToolCall {
            name, arguments, ..
        } => writeln!(out, "→ {name} {}", one_line(arguments, ARGS_SHOWN))?,
        Item::ToolResult {
            summary, is_error, ..
        } => {
            let mark = if *is_error { "✗" } else { "←" };
            writeln!(out, "  {mark} {}", one_line(summary, ARGS_SHOWN))?;
        }
        Item::ProviderItem { provider, .. } => {
            writeln!(out, "({provider:?} server-side block)")?;
        }
    }
    Ok(())
}

/// Writes one log entry as transcript lines (usage and segment marks are
/// summarised or skipped).
pub fn write_entry(out: &mut dyn Write, entry: &LogEntry) -> io::Result<()> {
    match entry {
        LogEntry::SegmentStart { history, .. } => {
            if !history.is_empty() {
                writeln!(
                    out,
                    "── new segment (history of {} items carried over) ──",
                    history.len()
                )?;
            }
        }
        LogEntry::InvokeStart {
            invoke_kind, turn, ..
        } => {
            let kind = serde_json::to_value(invoke_kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            writeln!(out, "── turn {turn} ({kind}) ──")?;
        }
        LogEntry::UserInput { item, .. } => write_item(out, &item.0)?,
        LogEntry::AssistantItem { item, .. } | LogEntry::ToolResult { item, .. } => {
            write_item(out, &item.0)?;
        }
        LogEntry::SystemItem { item, .. } => write_item(out, &item.0)?,
        LogEntry::Usage { .. } => {}
        LogEntry::TurnEnd { turn, result, .. } => {
            let result = serde_json::to_value(result)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            writeln!(out, "── turn {turn}: {result} ──")?;
        }
        LogEntry::RunError { message, .. } => writeln!(out, "error: {message}")?,
        LogEntry::ChildSpawned { name, .. } => writeln!(out, "── spawned child pod `{name}` ──")?,
        LogEntry::ChildRemoved { name, reason, .. } => {
            writeln!(out, "── child pod `{name}` removed: {reason} ──")?;
        }
        // Shown where they arrived; when the model took them in is bookkeeping.
        LogEntry::ChildCursor { .. } | LogEntry::QueueJoined { .. } => {}
        LogEntry::Unknown { kind, .. } => writeln!(
            out,
            "(an entry of kind `{kind}` this version does not know)"
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{InvokeKind, Segment, TurnResult};
    use session_store::{EntryBody, LoggedItem, SessionWriter, read_session};

    #[test]
    fn a_turn_reads_like_a_conversation() {
        let bodies = [
            (EntryBody::InvokeStart {
                invoke_kind: InvokeKind::UserSend,
                turn: 1,
            }),
            (EntryBody::UserInput {
                segments: vec![Segment::text("fix it")],
                item: LoggedItem(Item::text(Role::User, "fix it")),
            }),
            (EntryBody::AssistantItem {
                item: LoggedItem(Item::tool_call("c1", "Read", r#"{"path":"a"}"#)),
            }),
            (EntryBody::ToolResult {
                item: LoggedItem(Item::tool_result("c1", "read 3 lines", None, false)),
            }),
            (EntryBody::AssistantItem {
                item: LoggedItem(Item::text(Role::Assistant, "Done.")),
            }),
            (EntryBody::TurnEnd {
                turn: 1,
                result: TurnResult::Finished,
            }),
        ];
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SessionWriter::open(dir.path()).unwrap();
        for body in bodies {
            log.append(body).unwrap();
        }
        drop(log);
        let entries: Vec<LogEntry> = read_session(dir.path())
            .unwrap()
            .entries()
            .cloned()
            .collect();
        let mut out = Vec::new();
        for e in &entries {
            write_entry(&mut out, e).unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "── turn 1 (user_send) ──\n> fix it\n→ Read {\"path\":\"a\"}\n  ← read 3 lines\nDone.\n── turn 1: finished ──\n"
        );
    }
}
