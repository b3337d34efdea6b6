//! `pod stop`: stopping a pod and its whole subtree, leaves first — a
//! `shutdown` on the socket, then SIGKILL for a pod that does not exit in time.

use std::time::{Duration, Instant};

use anyhow::bail;
use pod_runtime::dir::Places;
use pod_runtime::pod_registry::{LockFileGuard, registry_path_in};
use pod_runtime::status::StatusRecord;
use protocol::Method;

use crate::cli::{current_thread, places};
use crate::client::{PodClient, PodLocation};
use crate::pods::parent_name;

/// How long `pod stop` waits for a clean exit before signalling.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a pod could not be stopped cleanly.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StopError {
    /// No runtime to talk to the pod could be built.
    #[error("{0}")]
    Runtime(std::io::Error),
    /// It did not exit in time after `shutdown` and was sent SIGKILL.
    #[error("pod `{name}` did not exit within {} s and was killed ({asked})", timeout.as_secs())]
    Killed {
        /// Its full name.
        name: String,
        /// How long it was given.
        timeout: Duration,
        /// Why asking it failed, if it did (empty otherwise).
        asked: String,
    },
}

/// Asks pod `name` to shut down and waits up to `timeout` for it to exit
/// (then kills it); a pod stops its own children before it exits. Returns
/// whether it was running.
pub(crate) fn stop_pod_within(
    places: &Places,
    name: &str,
    timeout: Duration,
) -> Result<bool, StopError> {
    let loc = PodLocation::of(places, name);
    if !loc.is_alive() {
        return Ok(false);
    }
    let runtime = current_thread().map_err(StopError::Runtime)?;
    let asked = runtime.block_on(async {
        let mut client = PodClient::connect_to(&loc).await?;
        client.send(&Method::Shutdown).await?;
        // Drain until the pod closes the connection.
        let _ = tokio::time::timeout(timeout, async {
            while let Ok(Some(_)) = client.next_event().await {}
        })
        .await;
        Ok::<(), crate::client::ClientError>(())
    });
    let deadline = Instant::now() + timeout;
    while loc.is_alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if loc.is_alive() {
        if let Some(record) = StatusRecord::read(&loc.dir) {
            // Best effort: the lock says below whether it is gone.
            let _ = sys::kill(record.pid);
        }
        return Err(StopError::Killed {
            name: name.to_string(),
            timeout,
            asked: asked.err().map_or_else(String::new, |e| e.to_string()),
        });
    }
    Ok(true)
}

/// `pod stop N` (`--tree` is the same): stops N and its whole subtree, printing
/// each pod that stopped, leaves first.
pub fn stop(name: &str, json: bool) -> anyhow::Result<u8> {
    let (stopped, failures) = stop_subtree(&places()?, name);
    if json {
        println!("{}", serde_json::json!({ "stopped": stopped }));
    } else {
        for pod in &stopped {
            println!("stopped {pod}");
        }
    }
    if !failures.is_empty() {
        bail!("some pods could not be stopped:\n{}", failures.join("\n"));
    }
    if stopped.is_empty() {
        bail!("no pod named `{name}` is running; `pod ls` lists the pods");
    }
    Ok(0)
}

/// Stops a pod's whole tree without printing.
pub fn stop_tree_quietly(name: &str) -> anyhow::Result<()> {
    let (_, failures) = stop_subtree(&places()?, name);
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("some pods could not be stopped:\n{}", failures.join("\n"))
    }
}

/// `pod stop --tree N`: the same as `pod stop N`.
pub fn stop_tree(name: &str, json: bool) -> anyhow::Result<u8> {
    stop(name, json)
}

/// Pod `name` and its descendants, leaves first: those the registry links
/// to it (grandchildren of a dead middle pod included) and every runtime dir
/// named `name.*` (a child's name extends its parent's).
pub fn subtree(places: &Places, name: &str) -> Vec<String> {
    let mut members = vec![name.to_string()];
    let path = registry_path_in(&places.runtime);
    match LockFileGuard::open(&path).and_then(|g| g.load()) {
        Ok(registry) => {
            let mut ids: Vec<String> = registry
                .pods
                .iter()
                .filter(|p| p.full_name == name)
                .map(|p| p.instance_id.clone())
                .collect();
            let mut i = 0;
            while i < ids.len() {
                let parent = ids[i].clone();
                for pod in registry
                    .pods
                    .iter()
                    .filter(|p| p.parent_instance_id.as_deref() == Some(parent.as_str()))
                {
                    ids.push(pod.instance_id.clone());
                    members.push(pod.full_name.clone());
                }
                i += 1;
            }
        }
        Err(e) => eprintln!(
            "warning: cannot read the scope registry ({e}); stopping `{name}` and the pods named `{name}.*`"
        ),
    }
    let prefix = format!("{name}.");
    if let Ok(dir) = std::fs::read_dir(&places.runtime) {
        members.extend(
            dir.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.starts_with(&prefix)),
        );
    }
    members.sort_by(|a, b| {
        let depth = |n: &str| n.matches('.').count();
        depth(b).cmp(&depth(a)).then_with(|| a.cmp(b))
    });
    members.dedup();
    members
}

/// Stops pod `name` and its subtree: `shutdown` to `name` only (a pod stops
/// its own children first, leaves first, before it exits), then whatever of
/// the subtree is still alive, each pod only once its parent is gone (a live
/// parent told that its child shut down would start a model turn). Returns
/// the pods that stopped, leaves first, and the failures.
pub(crate) fn stop_subtree(places: &Places, name: &str) -> (Vec<String>, Vec<String>) {
    let members = subtree(places, name);
    let alive = |n: &str| PodLocation::of(places, n).is_alive();
    // A snapshot: stopping changes what `alive` says.
    #[allow(clippy::needless_collect)]
    let was_alive: Vec<&String> = members.iter().filter(|m| alive(m)).collect();
    let within = |n: &str| {
        let prefix = format!("{n}.");
        let size = members
            .iter()
            .filter(|m| *m == n || m.starts_with(&prefix))
            .count();
        STOP_TIMEOUT.saturating_mul(u32::try_from(size).unwrap_or(u32::MAX))
    };
    let mut failures = Vec::new();
    let mut asked = std::collections::HashSet::new();
    let mut next = vec![name.to_string()];
    // Each round stops the topmost survivors; their children go in a later
    // round. Every pod is asked once, so this ends.
    while !next.is_empty() {
        for pod in next {
            if let Err(e) = stop_pod_within(places, &pod, within(&pod)) {
                failures.push(format!("{pod}: {e}"));
            }
            asked.insert(pod);
        }
        next = members
            .iter()
            .filter(|m| !asked.contains(*m) && alive(m))
            .filter(|m| parent_name(m).is_none_or(|p| !alive(p)))
            .cloned()
            .collect();
    }
    let stopped = was_alive
        .into_iter()
        .filter(|m| !alive(m))
        .cloned()
        .collect();
    (stopped, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subtree_lists_leaves_first_and_stopping_dead_pods_stops_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let places = crate::testing::places_in(dir.path());
        for name in ["boss", "boss.a", "boss.a.deep", "boss.b", "bossy"] {
            std::fs::create_dir_all(places.pod_runtime_dir(name)).unwrap();
        }
        assert_eq!(
            subtree(&places, "boss"),
            ["boss.a.deep", "boss.a", "boss.b", "boss"]
        );
        let (stopped, failures) = stop_subtree(&places, "boss");
        assert!(stopped.is_empty() && failures.is_empty());
        assert!(!stop_pod_within(&places, "boss", Duration::from_millis(10)).unwrap());
    }
}
