//! The UI's state and what every key does. Pure: keys and pod events go in,
//! [`Action`]s (things to do to pods) come out, so all of it is tested without
//! a terminal or a pod.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pod_client::pods::PodRow;
use pod_client::snapshot::Greeted;
use protocol::{ErrorCode, Event, Method, PodStatus, Segment};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui_textarea::TextArea;

use crate::conversation::Conversation;
use crate::theme::Theme;
use crate::view::ConvView;

/// Two Esc presses within this cancel the running invocation (one stray key
/// must not kill work).
const ESC_ESC: Duration = Duration::from_secs(1);

/// How long a transient message stays in the status bar.
const NOTE_FOR: Duration = Duration::from_secs(6);

/// Which pane takes the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Focus {
    /// The message editor.
    Composer,
    /// The tree of pods.
    Tree,
    /// The conversation (select blocks, fold and unfold them).
    Conversation,
}

/// A dialog over everything, taking the keys while it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Overlay {
    /// Every key, by pane.
    Help,
    /// Stop a pod and its descendants? (name, descendants)
    ConfirmStop(String, Vec<String>),
    /// Start a pod: its name as typed so far (empty: the default name).
    NewPod(String),
    /// A project manifest that is not trusted yet: trust it and start?
    Trust {
        /// The manifest's path.
        path: PathBuf,
        /// Its text, as it would be trusted.
        text: String,
        /// The name to start the pod with.
        name: String,
    },
}

/// Something to do to a pod (or to start one), for the runtime to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send a method over the pod's connection.
    Send(String, Method),
    /// Stop a pod and its subtree.
    Stop(String),
    /// Restore a stopped pod.
    Restore(String),
    /// Start a new top-level pod in the UI's directory (None: default name),
    /// after checking the project manifest's trust.
    Start(Option<String>),
    /// Record trust in a project manifest, then start the pod.
    TrustAndStart {
        /// The manifest.
        path: PathBuf,
        /// Its text.
        text: String,
        /// The pod's name (empty: default).
        name: String,
    },
}

/// One pod's conversation and the view onto it.
#[derive(Debug, Default)]
pub(crate) struct PodPane {
    /// The conversation.
    pub(crate) conv: Conversation,
    /// Scroll, selection, render cache.
    pub(crate) view: ConvView,
    /// Whether a connection to it is open.
    pub(crate) connected: bool,
    /// A `run` sent and not acknowledged yet (to resend it as a notification
    /// if the pod turned out busy).
    pending_run: Option<String>,
}

/// The whole UI state.
pub(crate) struct App {
    /// Styles.
    pub(crate) theme: Theme,
    /// The pods, in tree order.
    pub(crate) rows: Vec<PodRow>,
    /// The selected pod's full name.
    pub(crate) selected: Option<String>,
    /// Which pane takes the keys.
    pub(crate) focus: Focus,
    /// The message editor.
    pub(crate) composer: TextArea<'static>,
    /// Conversations of the pods viewed so far.
    pub(crate) panes: HashMap<String, PodPane>,
    /// The dialog showing, if any.
    pub(crate) overlay: Option<Overlay>,
    /// A transient message for the status bar.
    pub(crate) note: Option<(String, Instant)>,
    /// When Esc was last pressed in the composer.
    last_esc: Option<Instant>,
    /// Set when the person quit.
    pub(crate) quit: bool,
    /// Frame counter for spinners.
    pub(crate) tick: u64,
    /// The conversation area as last drawn (width, height), for scrolling.
    pub(crate) conv_area: (usize, usize),
}

impl App {
    /// An empty UI; `want` is the pod to select first (`pod ui NAME`).
    pub(crate) fn new(theme: Theme, want: Option<String>) -> App {
        let mut composer = TextArea::default();
        composer.set_placeholder_text(
            "Type a message; Enter sends, Alt-Enter adds a line, ? in the tree for keys",
        );
        App {
            theme,
            rows: Vec::new(),
            selected: want,
            focus: Focus::Composer,
            composer,
            panes: HashMap::new(),
            overlay: None,
            note: None,
            last_esc: None,
            quit: false,
            tick: 0,
            conv_area: (80, 20),
        }
    }

    /// Shows a message in the status bar for a while.
    pub(crate) fn note(&mut self, text: impl Into<String>, now: Instant) {
        self.note = Some((text.into(), now));
    }

    /// The status-bar message, if still fresh.
    pub(crate) fn current_note(&self, now: Instant) -> Option<&str> {
        self.note
            .as_ref()
            .filter(|(_, at)| now.duration_since(*at) < NOTE_FOR)
            .map(|(t, _)| t.as_str())
    }

    /// The selected pod's row.
    pub(crate) fn selected_row(&self) -> Option<&PodRow> {
        let name = self.selected.as_deref()?;
        self.rows.iter().find(|r| r.name == name)
    }

    /// The selected pod's pane, created on first view.
    pub(crate) fn selected_pane(&mut self) -> Option<&mut PodPane> {
        let name = self.selected.clone()?;
        Some(self.panes.entry(name).or_default())
    }

    /// Replaces the rows (a refresh of the tree); keeps the selection, or picks
    /// the most recently active pod when there is none yet.
    pub(crate) fn set_rows(&mut self, rows: Vec<PodRow>) {
        self.rows = rows;
        let known = self
            .selected
            .as_deref()
            .is_some_and(|s| self.rows.iter().any(|r| r.name == s));
        if !known && (self.selected.is_none() || !self.rows.is_empty()) {
            self.selected = most_recently_active(&self.rows).map(|r| r.name.clone());
        }
        if self.selected.is_none() && self.rows.is_empty() && self.overlay.is_none() {
            self.overlay = Some(Overlay::NewPod(String::new()));
        }
    }

    /// The status of pod `name`: its connection's when connected, else its
    /// status file's.
    pub(crate) fn status_of(&self, name: &str) -> Option<PodStatus> {
        let row = self.rows.iter().find(|r| r.name == name)?;
        if !row.alive {
            return None;
        }
        self.panes
            .get(name)
            .filter(|p| p.connected)
            .and_then(|p| p.conv.status)
            .or(match row.status.as_str() {
                "running" => Some(PodStatus::Running),
                "paused" => Some(PodStatus::Paused),
                _ => Some(PodStatus::Idle),
            })
    }

    /// A connection to `pod` opened: `conv` is its snapshot's conversation.
    pub(crate) fn connected(&mut self, pod: &str, mut conv: Box<Conversation>, greeted: Greeted) {
        conv.greeting = Some(greeted.greeting);
        conv.status = Some(greeted.status);
        for alert in greeted.alerts {
            conv.apply_event(Event::Alert(alert));
        }
        let pane = self.panes.entry(pod.to_string()).or_default();
        pane.connected = true;
        pane.conv = *conv;
        pane.view.invalidate();
    }

    /// The connection to `pod` closed.
    pub(crate) fn disconnected(&mut self, pod: &str) {
        if let Some(pane) = self.panes.get_mut(pod) {
            pane.connected = false;
            pane.conv.status = None;
        }
    }

    /// A stopped pod's session log was read.
    pub(crate) fn loaded(&mut self, pod: &str, entries: Vec<session_store::LogEntry>) {
        let pane = self.panes.entry(pod.to_string()).or_default();
        pane.conv.reset();
        pane.view.invalidate();
        for entry in &entries {
            pane.conv.apply_entry(entry);
        }
    }

    /// A live event from `pod`; returns actions it calls for (a busy pod's
    /// refused run goes again as a notification).
    pub(crate) fn event(&mut self, pod: &str, event: Event) -> Vec<Action> {
        let Some(pane) = self.panes.get_mut(pod) else {
            return Vec::new();
        };
        match &event {
            Event::Ack { .. } => pane.pending_run = None,
            Event::Error {
                code: ErrorCode::AlreadyRunning,
                ..
            } => {
                if let Some(text) = pane.pending_run.take() {
                    return vec![Action::Send(
                        pod.to_string(),
                        Method::Notify { message: text },
                    )];
                }
            }
            _ => {}
        }
        pane.conv.apply_event(event);
        Vec::new()
    }

    /// A key press; returns what to do to pods.
    pub(crate) fn key(&mut self, key: KeyEvent, now: Instant) -> Vec<Action> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('d') {
            self.quit = true;
            return Vec::new();
        }
        if let Some(overlay) = self.overlay.clone() {
            return self.overlay_key(overlay, key);
        }
        if ctrl && key.code == KeyCode::Char('c') {
            if !self.composer.is_empty() {
                self.composer = fresh_composer(&self.composer);
            } else if self.selected_status() == Some(PodStatus::Running) {
                self.note(
                    "a pod is running: Esc Esc cancels it, Ctrl-D quits (pods keep running)",
                    now,
                );
            } else {
                self.quit = true;
            }
            return Vec::new();
        }
        if key.code == KeyCode::Tab || key.code == KeyCode::BackTab {
            let forward = key.code == KeyCode::Tab;
            self.focus = match (self.focus, forward) {
                (Focus::Composer, true) | (Focus::Conversation, false) => Focus::Tree,
                (Focus::Tree, true) | (Focus::Composer, false) => Focus::Conversation,
                (Focus::Conversation, true) | (Focus::Tree, false) => Focus::Composer,
            };
            let width = self.conv_area;
            let theme = self.theme;
            let focus = self.focus;
            if let Some(pane) = self.selected_pane() {
                if focus == Focus::Conversation {
                    let PodPane { conv, view, .. } = pane;
                    if view.selected.is_none() {
                        view.select_by(conv, 0, width.0, width.1, theme);
                    }
                } else {
                    pane.view.selected = None;
                }
            }
            return Vec::new();
        }
        match key.code {
            KeyCode::PageUp => return self.scroll(self.conv_area.1 as isize - 2),
            KeyCode::PageDown => return self.scroll(-(self.conv_area.1 as isize - 2)),
            KeyCode::F(1) => {
                self.overlay = Some(Overlay::Help);
                return Vec::new();
            }
            _ => {}
        }
        match self.focus {
            Focus::Composer => self.composer_key(key, now),
            Focus::Tree => self.tree_key(key),
            Focus::Conversation => self.conversation_key(key),
        }
    }

    fn selected_status(&self) -> Option<PodStatus> {
        self.selected.as_deref().and_then(|n| self.status_of(n))
    }

    fn scroll(&mut self, lines: isize) -> Vec<Action> {
        if let Some(pane) = self.selected_pane() {
            pane.view.scroll_by(lines);
        }
        Vec::new()
    }

    fn composer_key(&mut self, key: KeyEvent, now: Instant) -> Vec<Action> {
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let shift = key.modifiers.contains(KeyModifiers::SHIFT);
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => {
                let double = self
                    .last_esc
                    .is_some_and(|t| now.duration_since(t) <= ESC_ESC);
                if double {
                    self.last_esc = None;
                    return self.cancel(now);
                }
                self.last_esc = Some(now);
                if self.selected_status() == Some(PodStatus::Running) {
                    self.note("press Esc again to cancel the running invocation", now);
                }
                Vec::new()
            }
            KeyCode::Enter if alt || shift => {
                self.composer.insert_newline();
                Vec::new()
            }
            KeyCode::Char('j') if ctrl => {
                self.composer.insert_newline();
                Vec::new()
            }
            KeyCode::Enter => self.submit(now),
            _ => {
                self.composer.input(key);
                Vec::new()
            }
        }
    }

    /// Sends the composer's text: a run when the pod is idle, a notification
    /// when it is busy (as `pod send` does).
    fn submit(&mut self, now: Instant) -> Vec<Action> {
        let text = self.composer.lines().join("\n");
        if text.trim().is_empty() {
            return Vec::new();
        }
        let Some(name) = self.selected.clone() else {
            self.note(
                "no pod selected: press n in the tree (Tab) to start one",
                now,
            );
            return Vec::new();
        };
        let Some(status) = self.status_of(&name) else {
            self.note(
                format!("{name} is stopped: select it in the tree (Tab) and press r to restore it"),
                now,
            );
            return Vec::new();
        };
        // `/approve ID` and `/deny ID REASON` answer a request (of this pod
        // or one below it: the pod passes the answer down).
        match pod_client::approve::typed_answer(&text) {
            Some(Ok(answer)) => {
                self.composer = fresh_composer(&self.composer);
                return vec![Action::Send(name, answer)];
            }
            Some(Err(usage)) => {
                self.note(usage, now);
                return Vec::new();
            }
            None => {}
        }
        self.composer = fresh_composer(&self.composer);
        let pane = self.panes.entry(name.clone()).or_default();
        pane.view.scroll = 0;
        let method = if status == PodStatus::Idle {
            pane.pending_run = Some(text.clone());
            Method::Run {
                input: vec![Segment::text(text)],
            }
        } else {
            Method::Notify { message: text }
        };
        vec![Action::Send(name, method)]
    }

    fn cancel(&mut self, now: Instant) -> Vec<Action> {
        let Some(name) = self.selected.clone() else {
            return Vec::new();
        };
        match self.status_of(&name) {
            Some(PodStatus::Running | PodStatus::Paused) => {
                self.note(format!("cancelling {name}…"), now);
                vec![Action::Send(name, Method::Cancel)]
            }
            _ => {
                self.note(format!("{name} is not running anything"), now);
                Vec::new()
            }
        }
    }

    fn tree_key(&mut self, key: KeyEvent) -> Vec<Action> {
        let now = Instant::now();
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::Home => self.selected = self.rows.first().map(|r| r.name.clone()),
            KeyCode::End => self.selected = self.rows.last().map(|r| r.name.clone()),
            KeyCode::Enter => self.focus = Focus::Composer,
            KeyCode::Char('?') => self.overlay = Some(Overlay::Help),
            KeyCode::Char('n') => self.overlay = Some(Overlay::NewPod(String::new())),
            KeyCode::Char('p') => {
                let Some(name) = self.selected.clone() else {
                    return Vec::new();
                };
                return match self.status_of(&name) {
                    Some(PodStatus::Running) => vec![Action::Send(name, Method::Pause)],
                    Some(PodStatus::Paused) => vec![Action::Send(name, Method::Resume)],
                    Some(PodStatus::Idle) => {
                        self.note(format!("{name} is idle: nothing to pause"), now);
                        Vec::new()
                    }
                    None => {
                        self.note(format!("{name} is stopped"), now);
                        Vec::new()
                    }
                };
            }
            KeyCode::Char('x') => {
                let Some(row) = self.selected_row() else {
                    return Vec::new();
                };
                if !row.alive {
                    let name = row.name.clone();
                    self.note(format!("{name} is already stopped"), now);
                    return Vec::new();
                }
                let name = row.name.clone();
                let prefix = format!("{name}.");
                let below: Vec<String> = self
                    .rows
                    .iter()
                    .filter(|r| r.alive && r.name.starts_with(&prefix))
                    .map(|r| r.name.clone())
                    .collect();
                self.overlay = Some(Overlay::ConfirmStop(name, below));
            }
            KeyCode::Char('r') => {
                let Some(row) = self.selected_row() else {
                    return Vec::new();
                };
                let name = row.name.clone();
                if row.alive {
                    self.note(format!("{name} is running already"), now);
                    return Vec::new();
                }
                if row.parent_name.is_some() {
                    self.note(format!("{name} is a child pod: restore its top-level pod, which brings its children back"), now);
                    return Vec::new();
                }
                self.note(format!("restoring {name}…"), now);
                return vec![Action::Restore(name)];
            }
            _ => {}
        }
        Vec::new()
    }

    fn move_selection(&mut self, delta: isize) {
        if self.rows.is_empty() {
            return;
        }
        let at = self
            .selected
            .as_deref()
            .and_then(|s| self.rows.iter().position(|r| r.name == s))
            .unwrap_or(0);
        let next = at.saturating_add_signed(delta).min(self.rows.len() - 1);
        self.selected = Some(self.rows[next].name.clone());
    }

    fn conversation_key(&mut self, key: KeyEvent) -> Vec<Action> {
        let (width, height) = self.conv_area;
        let theme = self.theme;
        let Some(PodPane { conv, view, .. }) = self.selected_pane() else {
            return Vec::new();
        };
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => view.select_by(conv, -1, width, height, theme),
            KeyCode::Down | KeyCode::Char('j') => view.select_by(conv, 1, width, height, theme),
            KeyCode::Home => view.select_by(conv, isize::MIN / 2, width, height, theme),
            KeyCode::End => {
                view.selected = None;
                view.scroll = 0;
                view.select_by(conv, 0, width, height, theme);
            }
            KeyCode::Enter | KeyCode::Char(' ') => {
                if let Some(block) = view.selected.and_then(|i| conv.blocks.get_mut(i))
                    && block.foldable()
                {
                    block.folded = !block.folded;
                }
            }
            KeyCode::Char('?') => self.overlay = Some(Overlay::Help),
            KeyCode::Esc => {
                self.focus = Focus::Composer;
                if let Some(pane) = self.selected_pane() {
                    pane.view.selected = None;
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn overlay_key(&mut self, overlay: Overlay, key: KeyEvent) -> Vec<Action> {
        match overlay {
            Overlay::Help => {
                self.overlay = None;
                Vec::new()
            }
            Overlay::ConfirmStop(name, _) => {
                self.overlay = None;
                if matches!(key.code, KeyCode::Char('y' | 'Y') | KeyCode::Enter) {
                    self.note(format!("stopping {name}…"), Instant::now());
                    vec![Action::Stop(name)]
                } else {
                    Vec::new()
                }
            }
            Overlay::NewPod(mut name) => {
                match key.code {
                    KeyCode::Esc => {
                        self.overlay = None;
                        if self.rows.is_empty() {
                            // Nothing to show without a pod: leaving means quitting.
                            self.quit = true;
                        }
                    }
                    KeyCode::Enter => {
                        self.overlay = None;
                        let name = name.trim().to_string();
                        return vec![Action::Start((!name.is_empty()).then_some(name))];
                    }
                    KeyCode::Backspace => {
                        name.pop();
                        self.overlay = Some(Overlay::NewPod(name));
                    }
                    KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                        if name.len() < 32 {
                            name.push(c);
                        }
                        self.overlay = Some(Overlay::NewPod(name));
                    }
                    _ => {}
                }
                Vec::new()
            }
            Overlay::Trust { path, text, name } => {
                self.overlay = None;
                if matches!(key.code, KeyCode::Char('y' | 'Y')) {
                    vec![Action::TrustAndStart { path, text, name }]
                } else {
                    self.note("not trusted: the pod was not started", Instant::now());
                    Vec::new()
                }
            }
        }
    }
}

/// An empty composer with the settings of `old`.
fn fresh_composer(old: &TextArea<'static>) -> TextArea<'static> {
    let mut composer = TextArea::default();
    composer.set_placeholder_text(old.placeholder_text().to_string());
    composer
}

/// The pod a person most likely wants to see: a running one, else the most
/// recently started live one, else the most recently stopped one.
fn most_recently_active(rows: &[PodRow]) -> Option<&PodRow> {
    rows.iter()
        .filter(|r| r.alive && r.status == "running")
        .max_by_key(|r| r.depth)
        .or_else(|| rows.iter().filter(|r| r.alive).min_by_key(|r| r.uptime_s))
        .or_else(|| rows.iter().max_by_key(|r| r.stopped_at_ms.unwrap_or(0)))
}
