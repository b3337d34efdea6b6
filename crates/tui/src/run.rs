//! The terminal and the event loop: keys from a reader thread, pod events from
//! the connections, the tree from the pods' status files; redraws coalesced to
//! at most one per frame interval. The terminal is restored on every way out
//! (quit, error, panic, SIGTERM, SIGHUP).

use std::io::{self, Stdout};
use std::time::{Duration, Instant};

use pod_client::pods::list_pods;
use pod_runtime::dir::Places;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self as ct, Event as TermEvent};
use ratatui::crossterm::{execute, terminal};
use tokio::sync::mpsc;

use crate::app::{Action, App, Overlay};
use crate::net::{Links, Msg, QUEUE, untrusted_manifest};
use crate::theme::Theme;
use crate::ui;

/// Shortest time between two frames (≈ 60 per second).
const FRAME: Duration = Duration::from_millis(16);

/// How often the tree is read again from the status files.
const TREE_EVERY: Duration = Duration::from_millis(250);

/// Options of the UI.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The pod to select first.
    pub pod: Option<String>,
}

/// Runs the UI on this terminal until the person quits.
pub fn run(options: Options) -> anyhow::Result<()> {
    let places = pod_client::cli::places()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let mut term = TermGuard::enter()?;
    let result = local.block_on(&rt, event_loop(&mut term.terminal, places, options));
    drop(term);
    result
}

/// The terminal in raw mode on the alternate screen; put back when dropped
/// (and by the panic hook, which runs before unwinding drops anything).
struct TermGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    enhanced: bool,
}

impl TermGuard {
    fn enter() -> io::Result<TermGuard> {
        terminal::enable_raw_mode()?;
        let mut stdout = io::stdout();
        execute!(stdout, terminal::EnterAlternateScreen)?;
        // Shift-Enter is only told apart where the terminal speaks the kitty
        // keyboard protocol; elsewhere Alt-Enter and Ctrl-J do the same.
        let enhanced = terminal::supports_keyboard_enhancement().unwrap_or(false);
        if enhanced {
            execute!(
                stdout,
                ct::PushKeyboardEnhancementFlags(
                    ct::KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES
                )
            )?;
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal(enhanced);
            previous(info);
        }));
        let terminal = Terminal::new(CrosstermBackend::new(stdout))?;
        Ok(TermGuard { terminal, enhanced })
    }
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        restore_terminal(self.enhanced);
        let _shown = self.terminal.show_cursor();
    }
}

/// Leaves raw mode and the alternate screen (best effort: on the way out there
/// is nobody left to tell).
fn restore_terminal(enhanced: bool) {
    let mut stdout = io::stdout();
    if enhanced {
        let _popped = execute!(stdout, ct::PopKeyboardEnhancementFlags);
    }
    let _left = execute!(
        stdout,
        terminal::LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
    let _raw = terminal::disable_raw_mode();
}

/// Reads terminal events on a thread of its own (crossterm's reads block).
fn spawn_input() -> mpsc::Receiver<io::Result<TermEvent>> {
    let (tx, rx) = mpsc::channel(256);
    std::thread::spawn(move || {
        loop {
            let event = ct::read();
            let failed = event.is_err();
            if tx.blocking_send(event).is_err() || failed {
                return;
            }
        }
    });
    rx
}

async fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    places: Places,
    options: Options,
) -> anyhow::Result<()> {
    let mut app = App::new(Theme::from_env(), options.pod);
    let mut trace = Trace::from_env();
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let mut links = Links::new(places, tx);
    let mut input = spawn_input();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let env = manifest::Env::from_process();
    refresh_tree(&mut app, &mut links);
    let mut dirty = true;
    let mut last_frame = Instant::now() - FRAME;
    let mut next_tree = Instant::now() + TREE_EVERY;
    loop {
        if app.quit {
            trace.finish();
            return Ok(());
        }
        let now = Instant::now();
        // Checked on every pass, not only when the loop is idle: a streaming
        // pod keeps the loop busy, and its tree must stay current meanwhile.
        if now >= next_tree {
            refresh_tree(&mut app, &mut links);
            next_tree = now + TREE_EVERY;
            dirty = true;
        }
        if dirty && now >= last_frame + FRAME {
            app.tick += 1;
            terminal.draw(|f| ui::draw(f, &mut app, now))?;
            trace.frame(now.elapsed());
            last_frame = now;
            dirty = false;
        }
        let wake = if dirty {
            last_frame + FRAME
        } else {
            // Spinners move while a pod runs.
            let running = app.rows.iter().any(|r| r.alive && r.status == "running");
            let idle_redraw = if running {
                Duration::from_millis(100)
            } else {
                TREE_EVERY
            };
            (last_frame + idle_redraw).min(next_tree)
        };
        tokio::select! {
            key = input.recv() => {
                match key {
                    Some(Ok(TermEvent::Key(key))) => {
                        trace.key_at.get_or_insert_with(Instant::now);
                        let actions = app.key(key, Instant::now());
                        perform(&mut app, &mut links, &env, actions);
                    }
                    Some(Ok(TermEvent::Resize(..))) => terminal.autoresize()?,
                    Some(Ok(TermEvent::Paste(text))) => {
                        app.composer.insert_str(text);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(anyhow::anyhow!("cannot read the terminal: {e}")),
                    None => return Ok(()),
                }
                dirty = true;
            }
            msg = rx.recv() => {
                if let Some(msg) = msg {
                    trace.events += 1;
                    handle(&mut app, &mut links, msg);
                    // Take whatever else is queued before drawing again.
                    let mut more = 0;
                    while more < QUEUE {
                        let Ok(msg) = rx.try_recv() else { break };
                        trace.events += 1;
                        handle(&mut app, &mut links, msg);
                        more += 1;
                    }
                    dirty = true;
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => dirty = true,
            _ = sigterm.recv() => {
                trace.finish();
                return Ok(());
            }
            _ = sighup.recv() => {
                trace.finish();
                return Ok(());
            }
        }
    }
}

/// Reads the tree again and makes sure the selected pod is watched.
fn refresh_tree(app: &mut App, links: &mut Links) {
    app.set_rows(list_pods(links.places()));
    if let Some(row) = app.selected_row() {
        let (name, alive) = (row.name.clone(), row.alive);
        links.watch(&name, alive);
    }
}

fn handle(app: &mut App, links: &mut Links, msg: Msg) {
    let now = Instant::now();
    match msg {
        Msg::Connected(pod, conv, greeted) => app.connected(&pod, conv, greeted),
        Msg::Event(pod, event) => {
            let actions = app.event(&pod, event);
            for action in actions {
                if let Action::Send(pod, method) = action
                    && let Err(e) = links.send(&pod, method)
                {
                    app.note(e.to_string(), now);
                }
            }
        }
        Msg::Closed(pod) => {
            links.closed(&pod);
            app.disconnected(&pod);
        }
        Msg::Unreachable(pod, why) => {
            links.closed(&pod);
            app.disconnected(&pod);
            app.note(format!("cannot connect to {pod}: {why}"), now);
        }
        Msg::Loaded(pod, entries) => app.loaded(&pod, entries),
        Msg::LoadFailed(pod, why) => app.note(format!("cannot read {pod}'s session: {why}"), now),
        Msg::Started(pod) => {
            app.note(format!("started {pod}"), now);
            app.selected = Some(pod);
            app.focus = crate::app::Focus::Composer;
            refresh_tree(app, links);
        }
        Msg::Done(text) | Msg::Failed(text) => app.note(text, now),
    }
}

fn perform(app: &mut App, links: &mut Links, env: &manifest::Env, actions: Vec<Action>) {
    let now = Instant::now();
    // A newly selected pod is watched at once, not at the next tree refresh.
    if let Some(row) = app.selected_row() {
        let (name, alive) = (row.name.clone(), row.alive);
        links.watch(&name, alive);
    }
    for action in actions {
        match action {
            Action::Send(pod, method) => {
                if let Err(e) = links.send(&pod, method) {
                    app.note(e.to_string(), now);
                }
            }
            Action::Stop(pod) => links.stop(&pod),
            Action::Restore(pod) => {
                links.pod_command(
                    vec!["restore".into(), pod.clone()],
                    format!("restore {pod}"),
                );
            }
            Action::Start(name) => {
                let here = std::env::current_dir().unwrap_or_else(|_| ".".into());
                if let Some((path, text)) = untrusted_manifest(&here, env) {
                    app.overlay = Some(Overlay::Trust {
                        path,
                        text,
                        name: name.unwrap_or_default(),
                    });
                    continue;
                }
                start(app, links, name);
            }
            Action::TrustAndStart { path, text, name } => {
                match pod_client::trust::record_trust(&path, &text, env) {
                    Ok(_) => start(app, links, (!name.is_empty()).then_some(name)),
                    Err(e) => app.note(format!("cannot trust {}: {e}", path.display()), now),
                }
            }
        }
    }
}

fn start(app: &mut App, links: &Links, name: Option<String>) {
    let mut args = vec!["start".to_string()];
    if let Some(name) = &name {
        args.extend(["--name".to_string(), name.clone()]);
        app.selected = Some(name.clone());
    }
    let what = format!("start {}", name.as_deref().unwrap_or("a pod"));
    app.note(format!("{what}…"), Instant::now());
    links.pod_command(args, what);
}

/// Figures for the benchmarks (`benches/ui_bench.sh`): with `POD_UI_TRACE=FILE`
/// the UI writes when its first frame was drawn and, when it quits, how many
/// frames and pod events it handled and how long drawing took.
#[derive(Default)]
struct Trace {
    file: Option<std::fs::File>,
    frames: u64,
    events: u64,
    draw_total: Duration,
    draw_max: Duration,
    /// When a key came that no frame has shown yet.
    key_at: Option<Instant>,
    /// Key to frame, the longest and the last.
    key_max: Duration,
    key_last: Duration,
}

impl Trace {
    fn from_env() -> Trace {
        let file = std::env::var_os("POD_UI_TRACE").and_then(|p| std::fs::File::create(p).ok());
        Trace {
            file,
            ..Trace::default()
        }
    }

    fn write(&self, line: &str) {
        use std::io::Write;
        if let Some(mut file) = self.file.as_ref() {
            // Best effort: the trace is for benchmarks only.
            let _written = writeln!(file, "{line}");
        }
    }

    fn frame(&mut self, took: Duration) {
        if self.frames == 0 {
            self.write(&format!("{{\"first_frame_unix_ms\":{}}}", sys::now_ms()));
        }
        self.frames += 1;
        if let Some(at) = self.key_at.take() {
            self.key_last = at.elapsed();
            self.key_max = self.key_max.max(self.key_last);
        }
        self.draw_total += took;
        self.draw_max = self.draw_max.max(took);
    }

    fn finish(&self) {
        self.write(&format!(
            "{{\"frames\":{},\"events\":{},\"draw_ms_total\":{:.1},\"draw_ms_max\":{:.2},\"key_ms_max\":{:.2},\"key_ms_last\":{:.2},\"end_unix_ms\":{}}}",
            self.frames,
            self.events,
            self.draw_total.as_secs_f64() * 1e3,
            self.draw_max.as_secs_f64() * 1e3,
            self.key_max.as_secs_f64() * 1e3,
            self.key_last.as_secs_f64() * 1e3,
            sys::now_ms()
        ));
    }
}
