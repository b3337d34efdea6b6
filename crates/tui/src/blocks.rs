//! How each conversation block reads on screen: a tool call is one line until
//! unfolded (then a diff for Write/Edit, the output tail for Bash, the output
//! for the rest), reasoning folds to one line, the model's text is markdown.

use ratatui::text::{Line, Span};
use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use crate::conversation::{
    Block, BlockKind, STREAM_SHOWN, Streaming, ToolCall, floor_char_boundary,
};
use crate::markdown;
use crate::theme::Theme;
use crate::wrap::{truncate, wrap};

/// Lines of a Bash output shown when unfolded.
const BASH_TAIL: usize = 20;

/// Lines of any other output shown when unfolded.
const OUTPUT_SHOWN: usize = 40;

/// Diff lines shown for one Write or Edit.
const DIFF_SHOWN: usize = 60;

/// The lines of `block` at `width` columns.
pub(crate) fn render(block: &Block, width: usize, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = match &block.kind {
        BlockKind::User(text) => prefixed(text, "› ", theme.user(), theme.text(), width),
        BlockKind::Assistant(text) => markdown::render(text, width, theme),
        BlockKind::Thinking(text) => {
            if block.folded {
                let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                vec![Line::from(vec![
                    Span::styled("▸ thinking ", theme.dim()),
                    Span::styled(truncate(first, width.saturating_sub(12)), theme.dim()),
                ])]
            } else {
                prefixed(text, "▾ ", theme.dim(), theme.dim(), width)
            }
        }
        BlockKind::Tool(call) => tool(call, block.folded, width, theme),
        BlockKind::Report(text) => prefixed(text, "◆ ", theme.report(), theme.report(), width),
        BlockKind::Notification(text) => prefixed(text, "✉ ", theme.report(), theme.text(), width),
        BlockKind::Marker(text) => vec![Line::styled(
            truncate(&format!("── {text} ──"), width),
            theme.dim(),
        )],
        BlockKind::Alert(level, text) => {
            let style = match level {
                protocol::AlertLevel::Error => theme.error(),
                _ => theme.warn(),
            };
            prefixed(text, "⚠ ", style, style, width)
        }
        BlockKind::Error(text) => prefixed(text, "✗ ", theme.error(), theme.error(), width),
    };
    // A gap between blocks, except between the steps of one piece of work.
    if !matches!(
        block.kind,
        BlockKind::Tool(_) | BlockKind::Thinking(_) | BlockKind::Marker(_)
    ) {
        lines.push(Line::default());
    }
    lines
}

/// What is streaming, as lines (the tail only while it streams).
pub(crate) fn render_streaming(s: &Streaming, width: usize, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if !s.thinking.is_empty() {
        let tail = tail_of(&s.thinking);
        let last = tail.lines().last().unwrap_or("");
        lines.push(Line::from(vec![
            Span::styled("▸ thinking… ", theme.dim()),
            Span::styled(truncate(last, width.saturating_sub(13)), theme.dim()),
        ]));
    }
    if !s.text.is_empty() {
        lines.extend(markdown::render(tail_of(&s.text), width, theme));
    }
    for name in &s.tools {
        lines.push(Line::from(vec![
            Span::styled("● ", theme.tool()),
            Span::styled(name.clone(), theme.tool()),
            Span::styled(" …", theme.dim()),
        ]));
    }
    lines
}

fn tail_of(text: &str) -> &str {
    if text.len() <= STREAM_SHOWN {
        return text;
    }
    let cut = floor_char_boundary(text, text.len() - STREAM_SHOWN);
    let rest = &text[cut..];
    // Start at a line so markdown is not cut mid-construct.
    rest.find('\n').map_or(rest, |nl| &rest[nl + 1..])
}

/// `text` with `mark` before its first line and the rest indented under it.
fn prefixed(
    text: &str,
    mark: &str,
    mark_style: ratatui::style::Style,
    style: ratatui::style::Style,
    width: usize,
) -> Vec<Line<'static>> {
    let indent = " ".repeat(mark.chars().count());
    let mut out = Vec::new();
    for (i, line) in text.trim_end().lines().enumerate() {
        let lead = if i == 0 {
            mark.to_string()
        } else {
            indent.clone()
        };
        let l = Line::from(vec![
            Span::styled(lead, mark_style),
            Span::styled(line.to_string(), style),
        ]);
        out.extend(wrap(l, width, &indent));
    }
    if out.is_empty() {
        out.push(Line::from(Span::styled(mark.to_string(), mark_style)));
    }
    out
}

/// The one-line gist of a call's arguments: the path, the command, the pattern.
fn gist(call: &ToolCall) -> String {
    let Ok(Value::Object(args)) = serde_json::from_str::<Value>(&call.arguments) else {
        return call.arguments.replace('\n', " ");
    };
    for key in [
        "command",
        "path",
        "file_path",
        "pattern",
        "name",
        "task",
        "message",
        "url",
    ] {
        if let Some(Value::String(s)) = args.get(key) {
            return s.replace('\n', " ");
        }
    }
    call.arguments.replace('\n', " ")
}

fn tool(call: &ToolCall, folded: bool, width: usize, theme: Theme) -> Vec<Line<'static>> {
    let (mark, mark_style) = match &call.result {
        None => ("● ", theme.tool()),
        Some(r) if r.is_error => ("✗ ", theme.error()),
        Some(_) => ("✓ ", theme.ok()),
    };
    let fold = if folded { "▸" } else { "▾" };
    let summary = call.result.as_ref().map_or("running…".to_string(), |r| {
        let extra = match r.output_lines {
            0 | 1 => String::new(),
            n => format!(" · {n} lines"),
        };
        format!("{}{extra}", r.summary.replace('\n', " "))
    });
    let head_w = call.name.chars().count() + 4;
    let room = width.saturating_sub(head_w + 3);
    let gist_room = room.saturating_sub(summary.chars().count().min(room / 2) + 3);
    let gist = truncate(&gist(call), gist_room.max(8));
    let result_style = match &call.result {
        Some(r) if r.is_error => theme.error(),
        _ => theme.dim(),
    };
    let head = Line::from(vec![
        Span::styled(mark, mark_style),
        Span::styled(call.name.clone(), theme.tool()),
        Span::styled(format!(" {gist} "), theme.text()),
        Span::styled(
            truncate(
                &format!("→ {summary}"),
                room.saturating_sub(gist.chars().count() + 2).max(10),
            ),
            result_style,
        ),
        Span::styled(format!(" {fold}"), theme.dim()),
    ]);
    let mut lines = vec![head];
    if folded {
        return lines;
    }
    let body: Vec<Line<'static>> = match call.name.as_str() {
        "Write" | "Edit" => diff(call, theme),
        _ => output(call, theme),
    };
    for line in body {
        let mut spans = vec![Span::styled("  │ ", theme.dim())];
        spans.extend(line.spans);
        lines.extend(wrap(Line::from(spans), width, "  │ "));
    }
    lines
}

fn output(call: &ToolCall, theme: Theme) -> Vec<Line<'static>> {
    let Some(result) = &call.result else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if call.name == "Bash" {
        out.push(Line::styled(format!("$ {}", gist(call)), theme.text()));
    }
    let Some(text) = &result.output else {
        return out;
    };
    let shown = if call.name == "Bash" {
        BASH_TAIL
    } else {
        OUTPUT_SHOWN
    };
    let lines: Vec<&str> = text.lines().collect();
    let skip = result
        .output_lines
        .saturating_sub(shown)
        .max(lines.len().saturating_sub(shown));
    if skip > 0 {
        out.push(Line::styled(format!("… {skip} more lines"), theme.dim()));
    }
    let start = lines.len().saturating_sub(shown);
    out.extend(
        lines[start..]
            .iter()
            .map(|l| Line::styled((*l).to_string(), theme.text())),
    );
    out
}

fn diff(call: &ToolCall, theme: Theme) -> Vec<Line<'static>> {
    let Ok(Value::Object(args)) = serde_json::from_str::<Value>(&call.arguments) else {
        return output(call, theme);
    };
    let text = |k: &str| {
        args.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (old, new) = if call.name == "Edit" {
        (text("old_string"), text("new_string"))
    } else {
        (String::new(), text("content"))
    };
    let diff = TextDiff::from_lines(&old, &new);
    let mut out = Vec::new();
    let mut total = 0;
    for change in diff.iter_all_changes() {
        let (sign, style) = match change.tag() {
            ChangeTag::Delete => ("-", theme.removed()),
            ChangeTag::Insert => ("+", theme.added()),
            ChangeTag::Equal => (" ", theme.dim()),
        };
        total += 1;
        if out.len() < DIFF_SHOWN {
            let value = change.value().trim_end_matches('\n');
            out.push(Line::styled(format!("{sign} {value}"), style));
        }
    }
    if total > DIFF_SHOWN {
        out.push(Line::styled(
            format!("… {} more lines", total - DIFF_SHOWN),
            theme.dim(),
        ));
    }
    if let Some(r) = &call.result
        && r.is_error
    {
        out.push(Line::styled(r.summary.clone(), theme.error()));
    }
    out
}
