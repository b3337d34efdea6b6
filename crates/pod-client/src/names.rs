//! The pod a user means by the name they typed. `pod ls` shows a child by its short
//! name (`sleepy` under `boss`), so every command that takes a pod name accepts the
//! full name (`boss.sleepy`) or, when only one pod has it, the short one (the last
//! dot-separated part). Running pods and stopped sessions both count.

use std::collections::BTreeMap;

use pod_runtime::dir::Places;

/// What the command needs of the pod it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Any pod with a runtime dir or a session (logs, restore, stop --tree).
    Any,
    /// A running pod (send, attach, stop).
    Running,
}

/// Why a typed name names no single pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The short name belongs to more than one pod.
    #[error("`{asked}` could be any of {}; give the full name", quoted(.candidates))]
    Ambiguous {
        /// What was typed.
        asked: String,
        /// The full names it could mean.
        candidates: Vec<String>,
    },
    /// No pod has that name (full or short).
    #[error("no pod named `{asked}`{}; `pod ls` lists the pods", .suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    Unknown {
        /// What was typed.
        asked: String,
        /// The closest known name, if one is close.
        suggestion: Option<String>,
    },
    /// The command needs a running pod and this one is stopped.
    #[error(
        "no pod named `{name}` is running: `{name}` is stopped — `pod restore {name}` continues it"
    )]
    Stopped {
        /// Its full name.
        name: String,
    },
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The last dot-separated part of a full name.
pub fn short_name(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

/// The full name `asked` means among `known` (full names): itself if known, else
/// the one pod whose short name it is.
pub(crate) fn resolve_among<'a>(
    known: impl IntoIterator<Item = &'a str> + Clone,
    asked: &str,
) -> Result<String, NameError> {
    if known.clone().into_iter().any(|n| n == asked) {
        return Ok(asked.to_string());
    }
    let mut candidates: Vec<String> = known
        .clone()
        .into_iter()
        .filter(|n| short_name(n) == asked)
        .map(str::to_string)
        .collect();
    candidates.sort();
    candidates.dedup();
    match candidates.len() {
        1 => Ok(candidates.remove(0)),
        0 => Err(NameError::Unknown {
            asked: asked.to_string(),
            suggestion: closest(known, asked),
        }),
        _ => Err(NameError::Ambiguous {
            asked: asked.to_string(),
            candidates,
        }),
    }
}

/// The known name closest to `asked`: one its full or short name starts with `asked`
/// (or the reverse), else the nearest within an edit distance of a third of its
/// length (at least 1); ties go to the first in name order.
fn closest<'a>(known: impl IntoIterator<Item = &'a str>, asked: &str) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    let mut names: Vec<&str> = known.into_iter().collect();
    names.sort_unstable();
    let limit = (asked.chars().count() / 3).max(1);
    for name in names {
        let short = short_name(name);
        let prefix = [name, short]
            .iter()
            .any(|n| n.starts_with(asked) || asked.starts_with(*n));
        let distance = if prefix {
            0
        } else {
            edit_distance(asked, name).min(edit_distance(asked, short))
        };
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, name));
        }
    }
    best.map(|(_, name)| name.to_string())
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Every pod under `places` by full name, with whether it is running: each runtime
/// dir (what `pod ls` lists) and each session (a stopped pod whose runtime dir is gone).
pub(crate) fn known_pods(places: &Places) -> BTreeMap<String, bool> {
    let mut pods = BTreeMap::new();
    for entry in std::fs::read_dir(&places.runtime).into_iter().flatten() {
        let Ok(entry) = entry else { continue };
        // A pod's dir holds its lock (`s/`, for long socket paths, does not).
        if !entry.file_type().is_ok_and(|t| t.is_dir()) || !entry.path().join("lock").exists() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let alive = pod_runtime::liveness::is_alive(&entry.path());
        pods.insert(name, alive);
    }
    let sessions = places.state.join("sessions");
    for entry in std::fs::read_dir(sessions).into_iter().flatten() {
        let Ok(entry) = entry else { continue };
        if entry.path().join("000001.jsonl").is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            pods.entry(name).or_insert(false);
        }
    }
    pods
}

/// The full name of the pod `asked` means under `places`, checked against `want`.
pub fn resolve(places: &Places, asked: &str, want: Want) -> Result<String, NameError> {
    let pods = known_pods(places);
    let name = resolve_among(pods.keys().map(String::as_str), asked)?;
    if want == Want::Running && pods.get(&name) == Some(&false) {
        return Err(NameError::Stopped { name });
    }
    Ok(name)
}

/// [`resolve`] in this process's places, for the `pod` commands.
pub fn resolve_cli(asked: &str, want: Want) -> anyhow::Result<String> {
    Ok(resolve(&crate::cli::places()?, asked, want)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: [&str; 5] = ["boss", "boss.sleepy", "boss.sleepy.deep", "api", "web.api"];

    #[test]
    fn full_names_and_unique_short_names_resolve() {
        assert_eq!(resolve_among(KNOWN, "boss.sleepy").unwrap(), "boss.sleepy");
        assert_eq!(resolve_among(KNOWN, "sleepy").unwrap(), "boss.sleepy");
        assert_eq!(resolve_among(KNOWN, "deep").unwrap(), "boss.sleepy.deep");
        // A full name wins over another pod's short name.
        assert_eq!(resolve_among(KNOWN, "api").unwrap(), "api");
    }

    #[test]
    fn an_ambiguous_short_name_lists_the_candidates() {
        let known = ["a.kid", "b.kid", "c"];
        let err = resolve_among(known, "kid").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`kid` could be any of `a.kid`, `b.kid`; give the full name"
        );
    }

    #[test]
    fn an_unknown_name_suggests_the_closest() {
        let err = |asked| resolve_among(KNOWN, asked).unwrap_err().to_string();
        assert_eq!(
            err("sleep"),
            "no pod named `sleep` (did you mean `boss.sleepy`?); `pod ls` lists the pods"
        );
        assert!(
            err("slepy").contains("did you mean `boss.sleepy`?"),
            "{}",
            err("slepy")
        );
        assert!(err("bos.sleepy").contains("did you mean `boss.sleepy`?"));
        assert_eq!(
            err("zzzzzz"),
            "no pod named `zzzzzz`; `pod ls` lists the pods"
        );
        assert_eq!(
            resolve_among([], "x").unwrap_err(),
            NameError::Unknown {
                asked: "x".into(),
                suggestion: None
            }
        );
    }

    #[test]
    fn edit_distance_counts_characters() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("ü", "u"), 1);
    }

    #[test]
    fn running_and_stopped_pods_are_found_and_a_stopped_one_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let places = crate::testing::places_in(dir.path());
        std::fs::create_dir_all(places.pod_runtime_dir("boss.sleepy")).unwrap();
        std::fs::write(places.pod_runtime_dir("boss.sleepy").join("lock"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("rt/s")).unwrap();
        let session = places.session_dir("gone.kid");
        std::fs::create_dir_all(&session).unwrap();
        std::fs::write(session.join("000001.jsonl"), "{}\n").unwrap();
        assert_eq!(
            resolve(&places, "sleepy", Want::Any).unwrap(),
            "boss.sleepy"
        );
        assert_eq!(resolve(&places, "kid", Want::Any).unwrap(), "gone.kid");
        assert!(resolve(&places, "s", Want::Any).is_err());
        assert_eq!(
            resolve(&places, "kid", Want::Running)
                .unwrap_err()
                .to_string(),
            "no pod named `gone.kid` is running: `gone.kid` is stopped — `pod restore gone.kid` continues it"
        );
    }
}
