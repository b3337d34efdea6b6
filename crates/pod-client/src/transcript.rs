//! A session log as a readable transcript, for `pod logs`.

use std::io::{self, Write};

use llm_types::{ContentPart, Item, Role};
use session_store::LogEntry;

/// Longest tool-call arguments shown.
const ARGS_SHOWN: usize = 200;

/// How many of a tool output's last lines the transcript shows (all with `--full`).
pub(crate) const OUTPUT_LINES_SHOWN: usize = 5;

/// Longest output line shown unless the whole output is asked for.
const OUTPUT_LINE_SHOWN: usize = 200;

/// Writes what a tool gave the model (its `content`) under the result's line: the
/// last [`OUTPUT_LINES_SHOWN`] lines, after a count of those left out, or all of it
/// when `full`. Shared by `pod logs` and the live renderer, so both read the same.
pub(crate) fn write_output(out: &mut dyn Write, content: &str, full: bool) -> io::Result<()> {
    let lines: Vec<&str> = content.lines().collect();
    let shown = if full {
        0
    } else {
        lines.len().saturating_sub(OUTPUT_LINES_SHOWN)
    };
    if shown > 0 {
        let s = if shown == 1 { "" } else { "s" };
        writeln!(out, "    │ … {shown} more line{s}")?;
    }
    for line in &lines[shown..] {
        if full {
            writeln!(out, "    │ {line}")?;
        } else {
            writeln!(out, "    │ {}", one_line(line, OUTPUT_LINE_SHOWN))?;
        }
    }
    Ok(())
}

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

fn write_item(out: &mut dyn Write, item: &Item, full: bool) -> io::Result<()> {
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
            summary,
            is_error,
            content,
            ..
        } => {
            let mark = if *is_error { "✗" } else { "←" };
            writeln!(out, "  {mark} {}", one_line(summary, ARGS_SHOWN))?;
            if let Some(content) = content {
                write_output(out, content, full)?;
            }
        }
        Item::ProviderItem { provider, .. } => {
            writeln!(out, "({provider:?} server-side block)")?;
        }
    }
    Ok(())
}

/// Writes one log entry as transcript lines (usage and segment marks are
/// summarised or skipped).
pub(crate) fn write_entry(out: &mut dyn Write, entry: &LogEntry) -> io::Result<()> {
    write_entry_full(out, entry, false)
}

/// One line for a hook run: `[hook pre_tool Bash: ./check.sh → block (exit 2, 12 ms): no curl]`.
pub fn hook_line(run: &protocol::HookRun) -> String {
    let tool = run
        .tool
        .as_deref()
        .map(|t| format!(" {t}"))
        .unwrap_or_default();
    let exit = run
        .exit_code
        .map_or_else(|| "no exit code".to_string(), |c| format!("exit {c}"));
    let mut line = format!(
        "[hook {}{tool}: {} → {} ({exit}, {} ms)",
        run.event, run.command, run.decision, run.duration_ms
    );
    if let Some(m) = &run.message {
        line.push_str(": ");
        line.push_str(m.lines().next().unwrap_or_default());
    }
    line.push(']');
    line
}

/// One line for an approval request: `[approval root.c/1 asked: Bash git push
/// (rule …); /approve root.c/1 or /deny root.c/1 REASON]`.
pub fn approval_request_line(r: &protocol::ApprovalRequest) -> String {
    let what = match r.input.get("command").and_then(|c| c.as_str()) {
        Some(command) => command.to_owned(),
        None => r.input.to_string(),
    };
    format!(
        "[approval {} asked by {}: {} {} — {}; /approve {} or /deny {} REASON]",
        r.id, r.pod, r.tool, what, r.rule, r.id, r.id
    )
}

/// One line for how an approval request ended.
pub fn approval_resolved_line(r: &protocol::ApprovalResolved) -> String {
    let verdict = if r.approved { "approved" } else { "denied" };
    let remembered = if r.remember { " (remembered)" } else { "" };
    let reason = r
        .reason
        .as_deref()
        .map(|why| format!(": {why}"))
        .unwrap_or_default();
    format!(
        "[approval {} {verdict} by {}{remembered}{reason}]",
        r.id, r.by
    )
}

/// As [`write_entry`]; `full` shows tool outputs whole instead of their last lines.
pub(crate) fn write_entry_full(
    out: &mut dyn Write,
    entry: &LogEntry,
    full: bool,
) -> io::Result<()> {
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
        LogEntry::UserInput { item, .. } => write_item(out, &item.0, full)?,
        LogEntry::AssistantItem { item, .. } | LogEntry::ToolResult { item, .. } => {
            write_item(out, &item.0, full)?;
        }
        LogEntry::SystemItem { item, .. } => write_item(out, &item.0, full)?,
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
        LogEntry::CompactionStart { tokens_before, .. } => {
            writeln!(
                out,
                "── compacting the context (≈ {tokens_before} tokens) ──"
            )?;
        }
        LogEntry::CompactionEnd {
            tokens_before,
            tokens_after,
            ..
        } => writeln!(
            out,
            "── context compacted: ≈ {tokens_before} → {tokens_after} tokens; a new segment goes on from a summary ──"
        )?,
        LogEntry::Hook { run, .. } => writeln!(out, "{}", hook_line(run))?,
        LogEntry::ApprovalRequest { request, .. } => {
            writeln!(out, "{}", approval_request_line(request))?;
        }
        LogEntry::ApprovalAnswer { resolved, .. } => {
            writeln!(out, "{}", approval_resolved_line(resolved))?;
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
    fn a_tool_output_shows_its_last_lines_or_all_of_them() {
        let content: String = (1..=47).map(|i| format!("line {i}\n")).collect();
        let item = Item::tool_result("c1", "exit code 3", Some(content), false);
        let mut out = Vec::new();
        write_item(&mut out, &item, false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "  ← exit code 3\n    │ … 42 more lines\n    │ line 43\n    │ line 44\n    │ line 45\n    │ line 46\n    │ line 47\n"
        );
        let mut out = Vec::new();
        write_item(&mut out, &item, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 48, "{text}");
        assert!(text.contains("    │ line 1\n") && !text.contains("more line"));
        // A short output is shown whole, a long line is cut unless asked for.
        let mut out = Vec::new();
        write_output(&mut out, &format!("a\n{}", "x".repeat(300)), false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("    │ a\n    │ xxx"), "{text}");
        assert!(
            text.ends_with("…\n") && text.chars().count() < 230,
            "{text}"
        );
    }

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
