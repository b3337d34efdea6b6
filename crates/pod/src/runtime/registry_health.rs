//! The scope registry as `pod doctor` sees it: whether `pods.json` reads, how
//! many pods it holds, and — with `--repair` — a registry rebuilt from the
//! status files of the pods that run, for when the file is corrupt.

use std::path::Path;

use crate::doctor::Check;
use crate::ipc::listener::is_alive;
use crate::runtime::dir::Places;
use crate::runtime::pod_registry::{
    LockFileGuard, PodEntry, ProcessIdentity, RebuildReport, Registry, RegistryError,
    registry_path_in,
};
use crate::state::StatusRecord;

/// The `registry` line of `pod doctor`.
pub fn check(places: &Places) -> Check {
    let path = registry_path_in(&places.runtime);
    let detail_ok = |registry: &Registry| {
        let live = registry
            .pods
            .iter()
            .filter(|p| is_alive(&places.pod_runtime_dir(&p.full_name)))
            .count();
        format!(
            "{}: {} pod(s) registered, {live} alive",
            path.display(),
            registry.pods.len()
        )
    };
    match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Check {
            name: "registry".into(),
            ok: true,
            detail: format!("{} (empty: no pod has started yet)", path.display()),
        },
        Err(e) => Check {
            name: "registry".into(),
            ok: false,
            detail: format!("cannot read {}: {e}", path.display()),
        },
        Ok(bytes) => match Registry::from_json(&bytes, &path) {
            Ok(registry) => Check {
                name: "registry".into(),
                ok: true,
                detail: detail_ok(&registry),
            },
            Err(e) => Check {
                name: "registry".into(),
                ok: false,
                detail: format!("{e}; `pod doctor --repair` rebuilds it from the running pods"),
            },
        },
    }
}

/// The registry entry a running pod's status file describes.
fn entry_from_status(dir: &Path) -> Option<PodEntry> {
    if !is_alive(dir) {
        return None;
    }
    let bytes = std::fs::read(dir.join("status.json")).ok()?;
    let status: StatusRecord = serde_json::from_slice(&bytes).ok()?;
    let identity = ProcessIdentity::of(status.pid).ok()?;
    let mut entry = PodEntry::new(status.name, &status.socket, identity)
        .ok()?
        .with_write_rules(status.write_rules);
    entry.instance_id = status.instance_id;
    entry.parent_instance_id = status.parent;
    Some(entry)
}

/// Rebuilds `pods.json` from the status files of the pods that run (the
/// corrupt file is replaced without being read).
pub fn repair(places: &Places) -> Result<(usize, RebuildReport), RegistryError> {
    let entries: Vec<PodEntry> = std::fs::read_dir(&places.runtime)
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| entry_from_status(&e.path()))
                .collect()
        })
        .unwrap_or_default();
    let count = entries.len();
    let path = registry_path_in(&places.runtime);
    let report = LockFileGuard::open(&path)?.rebuild(entries)?;
    Ok((count, report))
}
