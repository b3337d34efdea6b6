//! The pods on this machine as files show them, without asking any pod: the
//! rows of `pod ls` (from each pod's `status.json`, the scope registry and the
//! session logs' times), which names have a session or a runtime dir, and the
//! tree a full name puts a pod in.

use std::path::Path;

use pod_runtime::dir::Places;
use pod_runtime::pod_registry::{Registry, registry_path_in};
use pod_runtime::status::StatusRecord;
use serde::Serialize;

/// Whether pod `name` has a session with at least one entry.
pub fn session_exists(places: &Places, name: &str) -> bool {
    std::fs::metadata(places.session_dir(name).join("000001.jsonl")).is_ok_and(|m| m.len() > 0)
}

/// One row of `pod ls`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodRow {
    /// Full name.
    pub name: String,
    /// Depth in the tree (0 for a top-level pod).
    pub depth: usize,
    /// Whether it is alive.
    pub alive: bool,
    /// Its recorded status (`stopped` when not alive).
    pub status: String,
    /// Process id (of the last run).
    pub pid: u32,
    /// Model.
    pub model: String,
    /// Parent instance id.
    pub parent: Option<String>,
    /// Its write scope (and what it delegated away), from its status file.
    pub scope: String,
    /// Seconds since it started (0 when stopped).
    pub uptime_s: u64,
    /// When it stopped (Unix milliseconds; `None` while it runs): its last
    /// sign of life, the later of its last status and its last log write.
    pub stopped_at_ms: Option<u64>,
    /// Tokens used (input incl. cache, plus output).
    pub tokens: u64,
    /// Tokens of it and all its descendants.
    pub subtree_tokens: u64,
    /// Its instance id (what a child's `parent` refers to).
    pub instance_id: String,
    /// Its parent's full name (`parent` is the parent's instance id).
    pub parent_name: Option<String>,
    /// Whether it failed: its last invocation failed, or its process ended in
    /// the middle of one (its last recorded status is running).
    pub failed: bool,
    /// Tokens its model's context takes now.
    pub context_tokens: u64,
    /// Its model's context window (0 when its status file does not say).
    pub context_window: u64,
    /// Its token prices, when its manifest gives them (for showing cost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prices: Option<pod_runtime::status::Prices>,
}

impl PodRow {
    /// How full its context is, in percent (`None` when the window is unknown).
    pub fn context_percent(&self) -> Option<u64> {
        (self.context_window > 0).then(|| self.context_tokens * 100 / self.context_window)
    }
}

/// Scope rules as a spawner reports them: `write:/path`, ` [non-recursive]`
/// where not recursive, comma-separated.
pub fn rules_summary(rules: &[manifest::ScopeRule]) -> String {
    rules
        .iter()
        .map(|rule| {
            let shape = if rule.recursive {
                ""
            } else {
                " [non-recursive]"
            };
            format!("{}:{}{shape}", rule.permission, rule.target.display())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The write part of a scope summary (`write:` and `delegated:` rules).
pub fn write_scope(summary: &str) -> String {
    let parts: Vec<&str> = summary
        .split(", ")
        .filter(|p| p.starts_with("write:") || p.starts_with("delegated:"))
        .collect();
    if parts.is_empty() {
        "(read-only)".into()
    } else {
        parts.join(", ")
    }
}

/// Unix milliseconds of a file's last change (0 if unknown).
pub(crate) fn modified_ms(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// When a stopped pod stopped, as well as the files tell: a clean exit
/// rewrites `status.json` last; a killed pod's last sign of life is the later
/// of that and its session log's last write.
pub fn stopped_at_ms(places: &Places, name: &str, runtime_dir: &Path) -> u64 {
    let log = std::fs::read_dir(places.session_dir(name))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| modified_ms(&p))
        .max()
        .unwrap_or(0);
    log.max(modified_ms(&runtime_dir.join("status.json")))
}

/// How long ago, in one unit (`42s`, `5m`, `3h`, `2d`).
pub fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The pods with a runtime dir, from their status files (no socket round
/// trips), in tree order: each pod followed by its descendants.
pub fn list_pods(places: &Places) -> Vec<PodRow> {
    let Ok(dir) = std::fs::read_dir(&places.runtime) else {
        return Vec::new();
    };
    let now = sys::now_ms();
    // Write scopes as the registry has them now (delegations change them);
    // the file is replaced atomically, so reading it without the lock is safe.
    let registry_path = registry_path_in(&places.runtime);
    let scopes: std::collections::HashMap<String, String> = std::fs::read(&registry_path)
        .ok()
        .and_then(|b| Registry::from_json(&b, &registry_path).ok())
        .map(|r| {
            r.pods
                .iter()
                .map(|p| {
                    let mut parts: Vec<String> =
                        p.write_rules.iter().map(ToString::to_string).collect();
                    parts.extend(
                        p.delegated
                            .iter()
                            .map(|d| format!("delegated:{}", d.display())),
                    );
                    (p.full_name.clone(), parts.join(", "))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut rows: Vec<PodRow> = dir
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let record = StatusRecord::read(&path)?;
            let alive = pod_runtime::liveness::is_alive(&path);
            let u = record.usage;
            let tokens =
                u.input_tokens + u.cache_read_tokens + u.cache_write_tokens + u.output_tokens;
            let stopped_at_ms = (!alive).then(|| stopped_at_ms(places, &record.name, &path));
            let scope = scopes
                .get(&record.name)
                .filter(|s| !s.is_empty())
                .cloned()
                .unwrap_or_else(|| write_scope(&record.scope));
            Some(PodRow {
                depth: record.name.matches('.').count(),
                parent_name: parent_name(&record.name).map(str::to_string),
                name: record.name,
                alive,
                status: if alive {
                    format!("{:?}", record.status).to_lowercase()
                } else {
                    "stopped".into()
                },
                pid: record.pid,
                model: record.model,
                parent: record.parent,
                scope,
                uptime_s: if alive {
                    now.saturating_sub(record.started_ms) / 1000
                } else {
                    0
                },
                stopped_at_ms,
                tokens,
                subtree_tokens: tokens,
                instance_id: record.instance_id,
                prices: record.prices,
                context_tokens: record.context_tokens,
                context_window: record.context_window,
                failed: record.last_result == Some(protocol::TurnResult::Failed)
                    || (!alive && record.status == protocol::PodStatus::Running),
            })
        })
        .collect();
    rows.sort_by(|a, b| a.name.split('.').cmp(b.name.split('.')));
    let totals: Vec<u64> = rows
        .iter()
        .map(|r| {
            let prefix = format!("{}.", r.name);
            rows.iter()
                .filter(|o| o.name == r.name || o.name.starts_with(&prefix))
                .map(|o| o.tokens)
                .sum()
        })
        .collect();
    for (row, total) in rows.iter_mut().zip(totals) {
        row.subtree_tokens = total;
    }
    rows
}

/// Whether `name` is a full pod name (dot-separated valid parts), so that it
/// names a directory under the state and runtime dirs and nothing else.
pub(crate) fn is_pod_name(name: &str) -> bool {
    name.split('.')
        .all(|part| manifest::manifest::PodName::new(part).is_ok())
}

/// The pods with a session dir or a runtime dir (a directory holding pod files),
/// by full name, sorted: what `pod rm` may remove.
pub(crate) fn pods_on_disk(places: &Places) -> Vec<String> {
    let sessions = std::fs::read_dir(places.state.join("sessions"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir());
    let runtime = std::fs::read_dir(&places.runtime)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let dir = e.path();
            ["status.json", "lock", "pod.log"]
                .iter()
                .any(|f| dir.join(f).exists())
        });
    let mut names: Vec<String> = sessions
        .chain(runtime)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| is_pod_name(n))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The parent of a pod, by name (`a.b` for `a.b.c`).
pub fn parent_name(name: &str) -> Option<&str> {
    name.rsplit_once('.').map(|(parent, _)| parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::places_in as places;

    fn status(name: &str, tokens: u64) -> StatusRecord {
        StatusRecord {
            name: name.into(),
            instance_id: format!("id-{name}"),
            pid: 1,
            status: protocol::PodStatus::Idle,
            provider: "p".into(),
            model: "m".into(),
            scope: "read:/, write:/w, deny:/d".into(),
            parent: None,
            socket: String::new(),
            started_ms: 0,
            usage: llm_types::Usage {
                output_tokens: tokens,
                ..Default::default()
            },
            write_rules: Vec::new(),
            last_result: None,
            context_tokens: 0,
            context_window: 0,
            prices: None,
        }
    }

    #[test]
    fn the_write_scope_keeps_write_and_delegated_rules() {
        assert_eq!(
            write_scope("read:/, write:/a, delegated:/a/b, deny:/x"),
            "write:/a, delegated:/a/b"
        );
        assert_eq!(write_scope("read:/"), "(read-only)");
    }

    #[test]
    fn ago_uses_one_unit() {
        assert_eq!(ago(42_000), "42s");
        assert_eq!(ago(5 * 60_000), "5m");
        assert_eq!(ago(3 * 3_600_000), "3h");
        assert_eq!(ago(2 * 86_400_000), "2d");
    }

    #[test]
    fn stopped_pods_are_listed_in_tree_order_with_subtree_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let places = places(dir.path());
        for (name, tokens) in [("boss.kid", 5), ("boss", 10), ("alone", 1)] {
            let pod_dir = places.pod_runtime_dir(name);
            std::fs::create_dir_all(&pod_dir).unwrap();
            let record = serde_json::to_vec(&status(name, tokens)).unwrap();
            std::fs::write(pod_dir.join("status.json"), record).unwrap();
        }
        let rows = list_pods(&places);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["alone", "boss", "boss.kid"]);
        let boss = &rows[1];
        assert_eq!((boss.tokens, boss.subtree_tokens), (10, 15));
        assert!(!boss.alive);
        assert_eq!(boss.status, "stopped");
        assert!(boss.stopped_at_ms.is_some());
        assert_eq!(boss.scope, "write:/w");
        assert_eq!(rows[2].parent_name.as_deref(), Some("boss"));
        assert_eq!(rows[2].depth, 1);
        assert_eq!(pods_on_disk(&places), ["alone", "boss", "boss.kid"]);
    }

    #[test]
    fn pod_names_are_dot_joined_valid_parts() {
        assert!(is_pod_name("boss.kid-1"));
        assert!(!is_pod_name("../etc"));
        assert!(!is_pod_name("boss..kid"));
        assert_eq!(parent_name("a.b.c"), Some("a.b"));
        assert_eq!(parent_name("a"), None);
    }
}
