//! Drawing one frame: the tree on the left, the selected pod's conversation on
//! the right, the composer and the status bar below, a dialog over them.

use std::time::Instant;

use pod_client::pods::PodRow;
use protocol::PodStatus;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::app::{App, Focus, Overlay};
use crate::theme::Theme;
use crate::wrap::truncate;

/// Spinner frames for a running pod.
const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// Every key, for the help dialog.
pub(crate) const HELP: &[(&str, &str)] = &[
    ("Anywhere", ""),
    (
        "Tab / Shift-Tab",
        "move between composer, tree and conversation",
    ),
    ("PgUp / PgDn", "scroll the conversation"),
    ("F1", "this help"),
    ("Ctrl-D", "quit (pods keep running)"),
    ("Ctrl-C", "clear the composer; on an empty one, quit"),
    ("Composer", ""),
    (
        "Enter",
        "send: a run when the pod is idle, else a notification",
    ),
    (
        "Alt-Enter, Ctrl-J",
        "new line (Shift-Enter too where the terminal reports it)",
    ),
    ("Esc Esc", "cancel the running invocation (within 1 s)"),
    (
        "/approve ID",
        "approve a call waiting for you (--remember: its rule too)",
    ),
    ("/deny ID REASON", "deny it; the model reads REASON"),
    ("Tree", ""),
    ("↑ ↓", "select a pod"),
    ("Enter", "write to the selected pod"),
    ("p", "pause or resume"),
    ("n", "start a new pod here"),
    ("x", "stop the pod and its children (asks first)"),
    ("r", "restore a stopped pod"),
    ("?", "this help"),
    ("Conversation", ""),
    ("↑ ↓  Home End", "select a block"),
    ("Enter / Space", "fold or unfold a tool call or reasoning"),
    ("Esc", "back to the composer"),
];

/// Draws the whole UI.
pub(crate) fn draw(frame: &mut Frame<'_>, app: &mut App, now: Instant) {
    let theme = app.theme;
    let area = frame.area();
    let composer_lines = app.composer.lines().len().clamp(1, 6) as u16;
    let [main, composer, bar] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(composer_lines + 2),
        Constraint::Length(1),
    ])
    .areas(area);
    let tree_width = (area.width * 32 / 100).clamp(20, 40);
    let [tree, conv] =
        Layout::horizontal([Constraint::Length(tree_width), Constraint::Min(10)]).areas(main);
    draw_tree(frame, app, tree, theme);
    draw_conversation(frame, app, conv, theme);
    draw_composer(frame, app, composer, theme);
    draw_bar(frame, app, bar, theme, now);
    if let Some(overlay) = app.overlay.clone() {
        draw_overlay(frame, app, &overlay, theme);
    }
}

fn pane(title: Line<'static>, focused: bool, theme: Theme) -> Block<'static> {
    let style = if focused { theme.focus() } else { theme.dim() };
    Block::default()
        .borders(Borders::ALL)
        .border_style(style)
        .title(title)
}

/// Tokens in a short form: 950, 12.3k, 4.1M.
pub(crate) fn tokens(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// A cost, with the precision a person reads: 0.0123, 1.23, 123.
pub(crate) fn cost(amount: f64) -> String {
    if amount < 1.0 {
        format!("{amount:.4}")
    } else if amount < 100.0 {
        format!("{amount:.2}")
    } else {
        format!("{amount:.0}")
    }
}

/// A pod's state glyph and word.
fn state(app: &App, row: &PodRow, theme: Theme) -> (String, ratatui::style::Style, &'static str) {
    if row.failed && !matches!(app.status_of(&row.name), Some(PodStatus::Running)) {
        return ("✗".into(), theme.error(), "failed");
    }
    match app.status_of(&row.name) {
        Some(PodStatus::Running) => {
            let frame = SPINNER[(app.tick / 4) as usize % SPINNER.len()];
            (frame.into(), theme.running(), "running")
        }
        Some(PodStatus::Paused) => ("‖".into(), theme.paused(), "paused"),
        Some(PodStatus::Idle) => ("○".into(), theme.text(), "idle"),
        None => ("·".into(), theme.dim(), "stopped"),
    }
}

fn draw_tree(frame: &mut Frame<'_>, app: &App, area: Rect, theme: Theme) {
    let block = pane(
        Line::from(format!(" pods ({}) ", app.rows.len())),
        app.focus == Focus::Tree,
        theme,
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = inner.width as usize;
    // The detail line of the selected pod takes the last two rows.
    let detail_rows = 2.min(inner.height.saturating_sub(1)) as usize;
    let list_rows = (inner.height as usize).saturating_sub(detail_rows);
    let selected_at = app
        .selected
        .as_deref()
        .and_then(|s| app.rows.iter().position(|r| r.name == s))
        .unwrap_or(0);
    let first = selected_at.saturating_sub(list_rows.saturating_sub(1));
    let mut lines: Vec<Line<'static>> = Vec::new();
    for row in app.rows.iter().skip(first).take(list_rows) {
        let (glyph, glyph_style, _) = state(app, row, theme);
        let has_children = app
            .rows
            .iter()
            .any(|r| r.parent_name.as_deref() == Some(row.name.as_str()));
        let mut count = tokens(row.tokens);
        if let Some(pct) = row.context_percent().filter(|_| row.alive) {
            count.push_str(&format!(" {pct}%"));
        }
        if has_children && row.subtree_tokens != row.tokens {
            count.push_str(&format!(" Σ{}", tokens(row.subtree_tokens)));
        }
        let indent = "  ".repeat(row.depth);
        let short = pod_client::names::short_name(&row.name).to_string();
        let room = width.saturating_sub(indent.len() + 2 + count.chars().count() + 1);
        let name = truncate(&short, room);
        let pad = room.saturating_sub(name.chars().count());
        let name_style = if row.alive { theme.text() } else { theme.dim() };
        let mut line = Line::from(vec![
            Span::raw(indent),
            Span::styled(glyph, glyph_style),
            Span::raw(" "),
            Span::styled(name, name_style),
            Span::raw(" ".repeat(pad + 1)),
            Span::styled(count, theme.dim()),
        ]);
        if app.selected.as_deref() == Some(row.name.as_str()) {
            line = line.style(theme.selected());
        }
        lines.push(line);
    }
    if app.rows.is_empty() {
        lines.push(Line::styled("no pods yet", theme.dim()));
        lines.push(Line::styled("n: start one here", theme.dim()));
    }
    let [list, detail] = Layout::vertical([
        Constraint::Length(list_rows as u16),
        Constraint::Length(detail_rows as u16),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(lines), list);
    if let Some(row) = app.selected_row() {
        let (_, style, word) = state(app, row, theme);
        let text = vec![
            Line::from(vec![
                Span::styled(word, style),
                Span::styled(format!(" · {}", row.model), theme.dim()),
                Span::styled(
                    row.context_percent()
                        .map(|p| format!(" · ctx {p}% of {}", tokens(row.context_window)))
                        .unwrap_or_default(),
                    theme.dim(),
                ),
            ]),
            Line::styled(truncate(&row.scope, width), theme.dim()),
        ];
        frame.render_widget(Paragraph::new(text), detail);
    }
}

fn draw_conversation(frame: &mut Frame<'_>, app: &mut App, area: Rect, theme: Theme) {
    let focused = app.focus == Focus::Conversation;
    let title = match app.selected_row() {
        Some(row) => {
            let (_, style, word) = state(app, row, theme);
            Line::from(vec![
                Span::raw(format!(" {} ", row.name)),
                Span::styled(word, style),
                Span::raw(" "),
            ])
        }
        None => Line::from(" conversation "),
    };
    let block = pane(title, focused, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let (w, h) = (inner.width as usize, inner.height as usize);
    app.conv_area = (w, h);
    let Some(pane) = app.selected_pane() else {
        return;
    };
    let lines = pane.view.visible(&pane.conv, w, h, theme);
    let scrolled = pane.view.scroll;
    frame.render_widget(Paragraph::new(lines), inner);
    if scrolled > 0 && inner.height > 0 {
        let hint = format!(" ↓ {scrolled} lines below (PgDn) ");
        let width = (hint.chars().count() as u16).min(inner.width);
        let at = Rect::new(
            inner.right().saturating_sub(width),
            inner.bottom() - 1,
            width,
            1,
        );
        frame.render_widget(Paragraph::new(Line::styled(hint, theme.bar())), at);
    }
}

fn draw_composer(frame: &mut Frame<'_>, app: &mut App, area: Rect, theme: Theme) {
    let focused = app.focus == Focus::Composer;
    let target = app.selected.clone().unwrap_or_else(|| "(no pod)".into());
    let verb = match app.selected.as_deref().and_then(|n| app.status_of(n)) {
        Some(PodStatus::Idle) => "run on",
        Some(_) => "notify",
        None => "stopped:",
    };
    let title = Line::from(vec![
        Span::raw(format!(" {verb} {target} ")),
        Span::styled(
            "Enter send · Alt-Enter newline · Esc Esc cancel ",
            theme.dim(),
        ),
    ]);
    app.composer.set_block(pane(title, focused, theme));
    app.composer.set_cursor_line_style(theme.text());
    app.composer.set_cursor_style(if focused {
        theme.selected()
    } else {
        theme.text()
    });
    frame.render_widget(&app.composer, area);
}

fn draw_bar(frame: &mut Frame<'_>, app: &mut App, area: Rect, theme: Theme, now: Instant) {
    let text = if let Some(note) = app.current_note(now) {
        format!(" {note}")
    } else if let Some(name) = app.selected.clone() {
        let pane = app.panes.get(&name);
        let greeting = pane.and_then(|p| p.conv.greeting.as_ref());
        let (model, provider, sandbox) = greeting.map_or_else(
            || {
                let model = app
                    .selected_row()
                    .map(|r| r.model.clone())
                    .unwrap_or_default();
                (model, String::new(), String::new())
            },
            |g| {
                (
                    g.model.clone(),
                    g.provider.clone(),
                    sandbox_level(&g.scope_summary),
                )
            },
        );
        let usage = pane.map(|p| p.conv.usage).unwrap_or_default();
        // (priority, text) in display order; the lowest priorities go first
        // when the bar is too narrow for all of them.
        let mut parts: Vec<(u8, String)> = vec![(0, format!(" {name}")), (1, model)];
        if !provider.is_empty() {
            parts.push((4, provider));
        }
        if !sandbox.is_empty() {
            parts.push((3, format!("sandbox {sandbox}")));
        }
        parts.push((
            0,
            format!(
                "in {} out {} cached {}",
                tokens(usage.input_tokens + usage.cache_write_tokens),
                tokens(usage.output_tokens),
                tokens(usage.cache_read_tokens)
            ),
        ));
        if let Some(prices) = app.selected_row().and_then(|r| r.prices) {
            parts.push((2, format!("cost {}", cost(prices.cost(&usage)))));
        }
        parts.push((5, "F1 help".into()));
        let width = area.width as usize;
        let fits = |parts: &[(u8, String)]| {
            parts
                .iter()
                .map(|(_, p)| crate::wrap::width_of(p) + 3)
                .sum::<usize>()
                <= width
        };
        while !fits(&parts) && parts.len() > 1 {
            let Some(drop) = parts
                .iter()
                .enumerate()
                .max_by_key(|(i, (prio, _))| (*prio, *i))
                .map(|(i, _)| i)
            else {
                break;
            };
            parts.remove(drop);
        }
        parts
            .into_iter()
            .map(|(_, p)| p)
            .collect::<Vec<_>>()
            .join(" │ ")
    } else {
        " no pod · n in the tree starts one · F1 help".into()
    };
    let text = truncate(&text, area.width as usize);
    let pad = (area.width as usize).saturating_sub(crate::wrap::width_of(&text));
    frame.render_widget(
        Paragraph::new(Line::styled(
            format!("{text}{}", " ".repeat(pad)),
            theme.bar(),
        )),
        area,
    );
}

/// The sandbox level named in a scope summary (`…, sandbox: full`), if any.
fn sandbox_level(summary: &str) -> String {
    summary
        .split([',', ';', '(', ')'])
        .map(str::trim)
        .find_map(|p| {
            p.strip_prefix("sandbox")
                .map(|r| r.trim_start_matches([':', ' ', '=']))
        })
        .unwrap_or("")
        .to_string()
}

/// A centred rectangle of at most `w` × `h` inside `area`.
fn centred(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn draw_overlay(frame: &mut Frame<'_>, app: &App, overlay: &Overlay, theme: Theme) {
    let area = frame.area();
    let (title, lines): (&str, Vec<Line<'static>>) = match overlay {
        Overlay::Help => {
            let lines = HELP
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        Line::styled((*k).to_string(), theme.heading())
                    } else {
                        Line::from(vec![
                            Span::styled(format!("  {k:<18}"), theme.tool()),
                            Span::raw((*v).to_string()),
                        ])
                    }
                })
                .chain([
                    Line::default(),
                    Line::styled("any key closes this", theme.dim()),
                ])
                .collect();
            (" keys ", lines)
        }
        Overlay::ConfirmStop(name, below) => {
            let mut lines = vec![Line::from(format!("Stop {name}?"))];
            if !below.is_empty() {
                lines.push(Line::from(format!(
                    "Its {} descendant pod(s) stop too: {}",
                    below.len(),
                    below.join(", ")
                )));
            }
            lines.push(Line::default());
            lines.push(Line::styled(
                "y / Enter: stop   any other key: keep it",
                theme.dim(),
            ));
            (" stop ", lines)
        }
        Overlay::NewPod(name) => {
            let cwd = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            let mut lines = Vec::new();
            if app.rows.is_empty() {
                lines.push(Line::from("No pods yet. Start one here?"));
                lines.push(Line::default());
            }
            lines.extend([
                Line::from(format!("directory: {cwd} (its write scope)")),
                Line::from(vec![
                    Span::raw("name: "),
                    Span::styled(format!("{name}▏"), theme.user()),
                    Span::styled(
                        if name.is_empty() {
                            " (empty: the default name)"
                        } else {
                            ""
                        },
                        theme.dim(),
                    ),
                ]),
                Line::default(),
                Line::styled("Enter: start   Esc: cancel", theme.dim()),
            ]);
            (" new pod ", lines)
        }
        Overlay::Trust { path, text, .. } => {
            let mut lines = vec![
                Line::from(format!("{} is not trusted yet.", path.display())),
                Line::from("Pods started here would load it:"),
                Line::default(),
            ];
            lines.extend(
                text.lines()
                    .take(area.height.saturating_sub(10) as usize)
                    .map(|l| Line::styled(format!("  {l}"), theme.code())),
            );
            lines.push(Line::default());
            lines.push(Line::styled(
                "y: trust it and start   any other key: cancel",
                theme.dim(),
            ));
            (" project manifest ", lines)
        }
    };
    let height = lines.len() as u16 + 2;
    let width = lines
        .iter()
        .map(Line::width)
        .max()
        .unwrap_or(20)
        .clamp(30, 90) as u16
        + 4;
    let rect = centred(area, width, height);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(pane(
            Line::from(title),
            true,
            theme,
        )),
        rect,
    );
}
