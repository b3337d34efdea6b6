//! Views of the UI drawn on ratatui's `TestBackend` and compared with insta
//! snapshots (`src/snapshots/`), plus what keys do to the state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use pod_client::pods::PodRow;
use pod_client::snapshot::Greeted;
use protocol::{Greeting, PodStatus};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Value, json};

use crate::app::{Action, App, Focus, Overlay};
use crate::conversation::Conversation;
use crate::theme::Theme;
use crate::ui;

fn row(name: &str, status: &str, tokens: u64, subtree: u64) -> PodRow {
    PodRow {
        name: name.into(),
        depth: name.matches('.').count(),
        alive: status != "stopped",
        status: status.into(),
        pid: 1,
        model: "test-model".into(),
        parent: None,
        scope: format!("write:/work/{}", name.replace('.', "/")),
        uptime_s: 10,
        stopped_at_ms: None,
        tokens,
        subtree_tokens: subtree,
        instance_id: format!("id-{name}"),
        parent_name: name.rsplit_once('.').map(|(p, _)| p.to_string()),
        failed: false,
        context_tokens: tokens / 2,
        context_window: 128_000,
        prices: Some(pod_runtime::status::Prices {
            input: 3.0,
            output: 15.0,
            cache_read: 0.3,
        }),
    }
}

fn entry(seq: u64, kind: &str, rest: Value) -> Value {
    let mut v = json!({"kind": kind, "seq": seq, "prev": "0".repeat(64), "ts": 1});
    v.as_object_mut()
        .unwrap()
        .extend(rest.as_object().unwrap().clone());
    v
}

fn user(seq: u64, text: &str) -> Value {
    entry(
        seq,
        "user_input",
        json!({"segments": [{"kind": "text", "content": text}],
               "item": {"type": "message", "role": "user", "content": [{"type": "text", "text": text}]}}),
    )
}

fn assistant(seq: u64, text: &str) -> Value {
    entry(
        seq,
        "assistant_item",
        json!({"item": {"type": "message", "role": "assistant", "content": [{"type": "text", "text": text}]}}),
    )
}

fn call(seq: u64, id: &str, name: &str, args: Value) -> Value {
    entry(
        seq,
        "assistant_item",
        json!({"item": {"type": "tool_call", "id": id, "name": name, "arguments": args.to_string()}}),
    )
}

fn result(seq: u64, id: &str, summary: &str, content: &str) -> Value {
    entry(
        seq,
        "tool_result",
        json!({"item": {"type": "tool_result", "call_id": id, "summary": summary, "content": content}}),
    )
}

fn greeting(name: &str) -> Greeting {
    Greeting {
        pod_name: name.into(),
        cwd: "/work".into(),
        provider: "openai_chat".into(),
        model: "test-model".into(),
        scope_summary: "write: /work (sandbox: full)".into(),
        tools: vec![],
        context_window: 128_000,
        context_tokens: 0,
    }
}

/// A parent with two children; the parent's conversation has a question, an
/// edit, a command and an answer.
fn team() -> App {
    let mut app = App::new(Theme { color: false }, Some("boss".into()));
    app.set_rows(vec![
        row("boss", "running", 12_400, 20_100),
        row("boss.api", "idle", 5_200, 5_200),
        row("boss.docs", "stopped", 2_500, 2_500),
    ]);
    let entries = vec![
        user(1, "Fix the failing parse test and tell me why it failed."),
        call(
            2,
            "c1",
            "Edit",
            json!({"path": "src/parse.rs", "old_string": "let n = s.len();\nparse(n)", "new_string": "let n = s.trim().len();\nparse(n)"}),
        ),
        result(3, "c1", "edited src/parse.rs (1 replacement)", ""),
        call(4, "c2", "Bash", json!({"command": "cargo test parse"})),
        result(
            5,
            "c2",
            "exit code 0",
            "running 3 tests\ntest parse::empty ... ok\ntest parse::spaces ... ok\ntest parse::unicode ... ok\n\ntest result: ok. 3 passed",
        ),
        entry(
            6,
            "usage",
            json!({"llm_call": 1, "usage": {"input_tokens": 12000, "output_tokens": 400, "cache_read_tokens": 30000, "cache_write_tokens": 0}}),
        ),
        assistant(
            7,
            "Fixed. The input kept its **trailing newline**, so `len()` counted it:\n\n```rust\nlet n = s.trim().len(); // ignore the newline\n```\n\n- one edit\n- tests pass",
        ),
    ];
    let mut conv = Box::new(Conversation::new());
    for e in entries {
        conv.apply_json(e);
    }
    let greeted = Greeted {
        greeting: greeting("boss"),
        status: PodStatus::Running,
        alerts: vec![],
    };
    app.connected("boss", conv, greeted);
    app
}

fn draw(app: &mut App, w: u16, h: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    let now = Instant::now();
    terminal.draw(|f| ui::draw(f, app, now)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let mut line = String::new();
        for x in 0..buffer.area.width {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn press(app: &mut App, code: KeyCode) -> Vec<Action> {
    app.key(KeyEvent::new(code, KeyModifiers::NONE), Instant::now())
}

#[test]
fn a_parent_with_two_children_at_100x30() {
    insta::assert_snapshot!(draw(&mut team(), 100, 30));
}

#[test]
fn the_whole_ui_fits_80x24() {
    insta::assert_snapshot!(draw(&mut team(), 80, 24));
}

#[test]
fn a_tool_call_unfolds_to_its_output_and_an_edit_to_a_diff() {
    let mut app = team();
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.focus, Focus::Conversation);
    // From the last block up to the Bash call, unfold it, then the Edit.
    press(&mut app, KeyCode::Up);
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Up);
    press(&mut app, KeyCode::Enter);
    insta::assert_snapshot!(draw(&mut app, 100, 36));
}

#[test]
fn the_help_lists_every_key() {
    let mut app = team();
    app.overlay = Some(Overlay::Help);
    insta::assert_snapshot!(draw(&mut app, 100, 34));
}

#[test]
fn tab_then_down_selects_a_child() {
    let mut app = team();
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Focus::Tree);
    press(&mut app, KeyCode::Down);
    assert_eq!(app.selected.as_deref(), Some("boss.api"));
}

#[test]
fn enter_sends_a_run_to_an_idle_pod_and_a_notification_to_a_busy_one() {
    let mut app = team();
    for c in "check the docs".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    let actions = press(&mut app, KeyCode::Enter);
    assert_eq!(
        actions,
        vec![Action::Send(
            "boss".into(),
            protocol::Method::Notify {
                message: "check the docs".into()
            }
        )]
    );
    assert!(app.composer.is_empty());
}

#[test]
fn approve_and_deny_typed_in_the_composer_answer_requests() {
    let mut app = team();
    let mut typed = |text: &str| {
        for c in text.chars() {
            press(&mut app, KeyCode::Char(c));
        }
        press(&mut app, KeyCode::Enter)
    };
    assert_eq!(
        typed("/approve boss.api/1"),
        vec![Action::Send(
            "boss".into(),
            protocol::Method::Approve {
                id: "boss.api/1".into(),
                remember: false
            }
        )]
    );
    assert_eq!(
        typed("/deny boss.api/2 use staging"),
        vec![Action::Send(
            "boss".into(),
            protocol::Method::Deny {
                id: "boss.api/2".into(),
                reason: Some("use staging".into())
            }
        )]
    );
    assert!(typed("/approve").is_empty(), "a bad answer is not sent");
    let note = app
        .current_note(Instant::now())
        .unwrap_or_default()
        .to_string();
    assert!(note.contains("usage: /approve ID"), "{note}");
    assert_eq!(app.composer.lines().join(""), "/approve", "kept to fix");
}

#[test]
fn esc_esc_cancels_but_one_esc_does_not() {
    let mut app = team();
    let t0 = Instant::now();
    let esc = KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE);
    assert!(app.key(esc, t0).is_empty());
    let later = t0 + std::time::Duration::from_secs(2);
    assert!(
        app.key(esc, later).is_empty(),
        "a second Esc 2 s later is a new first"
    );
    let actions = app.key(esc, later + std::time::Duration::from_millis(300));
    assert_eq!(
        actions,
        vec![Action::Send("boss".into(), protocol::Method::Cancel)]
    );
}

#[test]
fn stopping_asks_first_and_names_the_subtree() {
    let mut app = team();
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Char('x'));
    assert_eq!(
        app.overlay,
        Some(Overlay::ConfirmStop("boss".into(), vec!["boss.api".into()]))
    );
    assert!(press(&mut app, KeyCode::Char('n')).is_empty());
    press(&mut app, KeyCode::Char('x'));
    assert_eq!(
        press(&mut app, KeyCode::Char('y')),
        vec![Action::Stop("boss".into())]
    );
}

#[test]
fn ctrl_c_clears_the_composer_then_warns_while_a_pod_runs() {
    let mut app = team();
    press(&mut app, KeyCode::Char('a'));
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    app.key(ctrl_c, Instant::now());
    assert!(app.composer.is_empty() && !app.quit);
    app.key(ctrl_c, Instant::now());
    assert!(!app.quit, "the selected pod is running");
    let ctrl_d = KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL);
    app.key(ctrl_d, Instant::now());
    assert!(app.quit);
}

#[test]
fn a_restarted_pod_replaces_its_conversation_in_one_step() {
    let mut app = team();
    app.disconnected("boss");
    assert!(!app.panes["boss"].connected);
    // The old conversation stays on screen until the new snapshot is in.
    assert!(draw(&mut app, 100, 30).contains("Fix the failing parse test"));
    let mut conv = Box::new(Conversation::new());
    conv.apply_json(user(1, "after the restart"));
    let greeted = Greeted {
        greeting: greeting("boss"),
        status: PodStatus::Idle,
        alerts: vec![],
    };
    app.connected("boss", conv, greeted);
    let screen = draw(&mut app, 100, 30);
    assert!(screen.contains("after the restart") && !screen.contains("Fix the failing"));
}

#[test]
fn an_untrusted_manifest_is_shown_and_trusted_only_on_y() {
    let mut app = team();
    let trust = Overlay::Trust {
        path: "/p/.pods/manifest.toml".into(),
        text: "[model]\nbase_url = \"http://example\"\n".into(),
        name: "new".into(),
    };
    app.overlay = Some(trust.clone());
    let screen = draw(&mut app, 100, 30);
    assert!(
        screen.contains("is not trusted yet") && screen.contains("base_url"),
        "{screen}"
    );
    assert!(press(&mut app, KeyCode::Char('n')).is_empty());
    assert_eq!(app.overlay, None);
    app.overlay = Some(trust);
    assert_eq!(
        press(&mut app, KeyCode::Char('y')),
        vec![Action::TrustAndStart {
            path: "/p/.pods/manifest.toml".into(),
            text: "[model]\nbase_url = \"http://example\"\n".into(),
            name: "new".into(),
        }]
    );
}

#[test]
fn the_trust_store_is_asked_before_a_project_manifest_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join(".pods")).unwrap();
    let manifest = project.join(".pods/manifest.toml");
    std::fs::write(&manifest, "[model]\nmax_tokens = 100\n").unwrap();
    let env = manifest::Env {
        home: Some(dir.path().join("home")),
        pod_config_dir: Some(dir.path().join("config")),
        xdg_config_home: None,
    };
    let (path, text) = crate::net::untrusted_manifest(&project, &env).expect("untrusted at first");
    assert!(text.contains("max_tokens"));
    pod_client::trust::record_trust(&path, &text, &env).unwrap();
    assert_eq!(crate::net::untrusted_manifest(&project, &env), None);
    // A changed manifest must be trusted again; a broken one cannot be.
    std::fs::write(&manifest, "[model\n").unwrap();
    let (path, text) = crate::net::untrusted_manifest(&project, &env).unwrap();
    let err = pod_client::trust::record_trust(&path, &text, &env).unwrap_err();
    assert!(
        err.to_string().contains("fix it before trusting it"),
        "{err}"
    );
}

#[test]
fn new_pod_asks_for_a_name_and_starts_it() {
    let mut app = team();
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Char('n'));
    for c in "api2".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    assert_eq!(app.overlay, Some(Overlay::NewPod("api2".into())));
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        vec![Action::Start(Some("api2".into()))]
    );
}
