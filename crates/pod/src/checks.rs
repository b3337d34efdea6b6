//! The user's hooks wired into the pod: every hook run committed to the log
//! (a `hook` entry) and then broadcast (`hook` event), failures raised as
//! alerts. Where each event runs: `hooks::points`. See docs/hooks.md.

use std::sync::Arc;

use hooks::{HookObserver, Hooks};
use protocol::{AlertLevel, AlertSource, Event, HookRun};
use session_store::EntryBody;

use crate::state::{SharedState, lock};

/// Persists each hook run, then tells the pod's clients.
struct Observer {
    state: SharedState,
}

impl HookObserver for Observer {
    fn ran(&self, run: HookRun) {
        let mut state = lock(&self.state);
        let done = state
            .commit(EntryBody::Hook { run: run.clone() })
            .and_then(|_| state.broadcast(&Event::Hook(run)));
        if let Err(e) = done {
            tracing::error!(error = %e, "cannot record a hook run");
            let _ = state.alert(
                AlertLevel::Error,
                AlertSource::Pod,
                format!("a hook run could not be recorded: {e}"),
            );
        }
    }

    fn alert(&self, message: &str) {
        tracing::warn!(message, "hook failed");
        let _ = lock(&self.state).alert(AlertLevel::Warn, AlertSource::Tool, message);
    }
}

/// The pod's hooks, reporting to `state`.
pub(crate) fn build(
    manifest: &manifest::Manifest,
    env: hooks::HookEnv,
    state: &SharedState,
) -> Result<Arc<Hooks>, String> {
    let observer = Arc::new(Observer {
        state: state.clone(),
    });
    Hooks::new(&manifest.hooks, env, observer).map(Arc::new)
}

pub(crate) use hooks::points::{PreCompact, check_prompt, check_task, tell};
