//! The scope registry as `pod doctor` sees it: whether `pods.json` reads, how
//! many pods it holds, and — with `--repair` — a registry rebuilt from the
//! status files of the pods that run, for when the file is corrupt.

use std::path::Path;

use crate::dir::Places;
use crate::liveness::is_alive;
use crate::pod_registry::{
    LockFileGuard, PodEntry, ProcessIdentity, RebuildReport, Registry, RegistryError,
    registry_path_in,
};
use crate::status::StatusRecord;

/// The verdict on the registry file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Whether it is usable.
    pub ok: bool,
    /// What was found, or what is wrong and what to do.
    pub detail: String,
}

/// The `registry` line of `pod doctor`.
pub fn check(places: &Places) -> Health {
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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Health {
            ok: true,
            detail: format!("{} (empty: no pod has started yet)", path.display()),
        },
        Err(e) => Health {
            ok: false,
            detail: format!("cannot read {}: {e}", path.display()),
        },
        Ok(bytes) => match Registry::from_json(&bytes, &path) {
            Ok(registry) => Health {
                ok: true,
                detail: detail_ok(&registry),
            },
            Err(e) => Health {
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
    let status = StatusRecord::read(dir)?;
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
