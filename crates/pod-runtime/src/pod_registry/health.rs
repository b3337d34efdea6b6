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
    // Pods that run but are not listed: the file was deleted or replaced
    // while they ran, and nothing would keep a new pod off their scopes.
    let unlisted = |registry: &Registry| -> Option<Health> {
        let mut names = restore_unlisted(&mut registry.clone(), &places.runtime, "");
        if names.is_empty() {
            return None;
        }
        names.sort();
        Some(Health {
            ok: false,
            detail: format!(
                "{}: {} pod(s) run without being registered ({}); the next `pod start` puts them back, or run `pod doctor --repair`",
                path.display(),
                names.len(),
                names.join(", ")
            ),
        })
    };
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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => unlisted(&Registry::default())
            .unwrap_or_else(|| Health {
                ok: true,
                detail: format!("{} (empty: no pod has started yet)", path.display()),
            }),
        Err(e) => Health {
            ok: false,
            detail: format!("cannot read {}: {e}", path.display()),
        },
        Ok(bytes) => match Registry::from_json(&bytes, &path) {
            Ok(registry) => unlisted(&registry).unwrap_or_else(|| Health {
                ok: true,
                detail: detail_ok(&registry),
            }),
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

/// The registry entries of the pods that run under `runtime`, from their
/// status files (a pod is running while it holds its liveness lock).
pub(crate) fn live_entries(runtime: &Path) -> Vec<PodEntry> {
    std::fs::read_dir(runtime)
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| entry_from_status(&e.path()))
                .collect()
        })
        .unwrap_or_default()
}

/// Puts back into `registry` the pods that run under `runtime` but that it
/// does not list (its file was deleted, or rebuilt without them), except
/// `claimant` (the pod asking); each child's roots count as delegated by its
/// parent. Returns the names put back.
pub(crate) fn restore_unlisted(
    registry: &mut Registry,
    runtime: &Path,
    claimant: &str,
) -> Vec<String> {
    let missing: Vec<PodEntry> = live_entries(runtime)
        .into_iter()
        .filter(|e| e.full_name != claimant)
        .filter(|e| !registry.pods.iter().any(|p| p.full_name == e.full_name))
        .collect();
    let names: Vec<String> = missing.iter().map(|e| e.full_name.clone()).collect();
    registry.pods.extend(missing.iter().cloned());
    for child in &missing {
        let Some(parent_id) = &child.parent_instance_id else {
            continue;
        };
        if let Some(parent) = registry
            .pods
            .iter_mut()
            .find(|p| &p.instance_id == parent_id)
        {
            for rule in &child.write_rules {
                if !parent.delegated.contains(&rule.target) {
                    parent.delegated.push(rule.target.clone());
                }
            }
        }
    }
    names
}

/// Rebuilds `pods.json` from the status files of the pods that run (the
/// corrupt file is replaced without being read).
pub fn repair(places: &Places) -> Result<(usize, RebuildReport), RegistryError> {
    let entries = live_entries(&places.runtime);
    let count = entries.len();
    let path = registry_path_in(&places.runtime);
    let report = LockFileGuard::open(&path)?.rebuild(entries)?;
    Ok((count, report))
}
