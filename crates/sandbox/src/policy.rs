//! What one command may touch: the [`SandboxPolicy`] the pod hands to the helper. Its
//! callers build it (the pod from its live scope, `tools::command_scope`, plus the
//! places pods keeps for itself); this crate knows nothing of manifests.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Provider key variables always removed from a command's environment (besides every
/// `*_API_KEY`).
pub const PROVIDER_KEY_VARS: [&str; 4] = [
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
];

/// Secrets of pods itself that no command may see: the bearer token of `pod
/// mcp serve --http` (with it a command could start pods with any scope).
pub const POD_SECRET_VARS: [&str; 1] = ["POD_MCP_TOKEN"];

/// A directory the command may write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRoot {
    /// Canonical absolute path.
    pub path: PathBuf,
    /// Whole subtree (`true`) or the directory and its direct children (`false`; at level
    /// `full` existing subdirectories are made read-only, new ones stay writable).
    #[serde(default = "default_true")]
    pub recursive: bool,
}

/// Rules cover whole subtrees unless they say otherwise.
fn default_true() -> bool {
    true
}

/// A path a command must not read (`[[scope.deny]]` with `permission = "read"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreadable {
    /// Canonical absolute path (a directory or a file).
    pub path: PathBuf,
    /// A directory's whole subtree (`true`), or only the files directly in it (`false`).
    #[serde(default = "default_true")]
    pub recursive: bool,
}

/// Everything the helper needs to confine one command. Paths are absolute and should be
/// canonical (the scope canonicalises them); paths that do not exist are skipped, except
/// delegated directories, which are created so they can be covered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPolicy {
    /// The command's working directory.
    pub cwd: PathBuf,
    /// The pod's own writable roots (bound read-write).
    #[serde(default)]
    pub write_roots: Vec<WriteRoot>,
    /// Shared cache paths (`[[scope.shared]]`), writable too.
    #[serde(default)]
    pub shared: Vec<PathBuf>,
    /// Subtrees delegated to child pods: read-only on top of the write roots.
    #[serde(default)]
    pub delegated: Vec<PathBuf>,
    /// Denied subtrees (`[[scope.deny]]`): read-only on top of the write roots.
    #[serde(default)]
    pub denied: Vec<PathBuf>,
    /// Denied for reading too: at level `full` a directory is covered by an empty
    /// read-only tmpfs and a file by an empty read-only one.
    #[serde(default)]
    pub unreadable: Vec<Unreadable>,
    /// Directories searched (bounded, when each command starts) for Unix sockets; every
    /// socket found outside the writable paths is covered so it cannot be connected to
    /// (the D-Bus buses in `/run` and `$XDG_RUNTIME_DIR` would run commands outside).
    #[serde(default)]
    pub socket_dirs: Vec<PathBuf>,
    /// Pods' own places (`POD_HOME`, config and model dirs, every `.pods/`): read-only.
    #[serde(default)]
    pub protected: Vec<PathBuf>,
    /// Directories replaced by an empty read-only tmpfs (the runtime dirs, so no pod
    /// socket can be reached).
    #[serde(default)]
    pub hidden: Vec<PathBuf>,
    /// The pod's private tmp dir, bound read-write as `/tmp` (`TMPDIR=/tmp`).
    pub tmp_dir: PathBuf,
    /// No network for the command: at level `full` a network namespace of its own
    /// (loopback only); at level `landlock`, TCP bind and connect refused (ABI ≥ 4;
    /// UDP stays open there).
    #[serde(default)]
    pub no_network: bool,
    /// Extra variables to remove from the command's environment: names, or prefixes
    /// ending in `*`.
    #[serde(default)]
    pub env_remove: Vec<String>,
}

impl SandboxPolicy {
    /// Adds a directory to cover with an empty tmpfs.
    pub fn hide(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hidden.push(dir.into());
        self
    }

    /// Adds a directory whose Unix sockets commands must not reach.
    pub fn cover_sockets_in(mut self, dir: impl Into<PathBuf>) -> Self {
        self.socket_dirs.push(dir.into());
        self
    }

    /// Adds a path to keep read-only even inside a write root.
    pub fn protect(mut self, path: impl Into<PathBuf>) -> Self {
        self.protected.push(path.into());
        self
    }

    /// Every path the policy names, for validation.
    pub(crate) fn all_paths(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.cwd.as_path())
            .chain(std::iter::once(self.tmp_dir.as_path()))
            .chain(self.write_roots.iter().map(|r| r.path.as_path()))
            .chain(self.shared.iter().map(PathBuf::as_path))
            .chain(self.delegated.iter().map(PathBuf::as_path))
            .chain(self.denied.iter().map(PathBuf::as_path))
            .chain(self.unreadable.iter().map(|u| u.path.as_path()))
            .chain(self.socket_dirs.iter().map(PathBuf::as_path))
            .chain(self.protected.iter().map(PathBuf::as_path))
            .chain(self.hidden.iter().map(PathBuf::as_path))
    }

    /// The first path that is not absolute, if any (the helper refuses such a policy).
    pub fn relative_path(&self) -> Option<&Path> {
        self.all_paths().find(|p| !p.is_absolute())
    }

    /// Whether `name` must not reach the command: a provider key, any `*_API_KEY`, a
    /// secret of pods itself ([`POD_SECRET_VARS`]), or a variable the policy lists.
    pub fn removes_env(&self, name: &OsStr) -> bool {
        let Some(name) = name.to_str() else {
            return false;
        };
        PROVIDER_KEY_VARS.contains(&name)
            || POD_SECRET_VARS.contains(&name)
            || name.ends_with("_API_KEY")
            || self.env_remove.iter().any(|v| match v.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => v == name,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_round_trips_through_json_and_defaults_lists() {
        let policy = SandboxPolicy {
            cwd: "/w".into(),
            write_roots: vec![WriteRoot {
                path: "/w".into(),
                recursive: true,
            }],
            tmp_dir: "/t".into(),
            env_remove: vec!["SECRET".into()],
            ..SandboxPolicy::default()
        };
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(
            serde_json::from_str::<SandboxPolicy>(&json).unwrap(),
            policy
        );
        let minimal: SandboxPolicy =
            serde_json::from_str(r#"{"cwd":"/w","tmp_dir":"/t","write_roots":[{"path":"/w"}]}"#)
                .unwrap();
        assert!(minimal.write_roots[0].recursive);
        assert!(minimal.hidden.is_empty());
    }

    #[test]
    fn relative_paths_are_found() {
        let policy = SandboxPolicy {
            cwd: "/w".into(),
            tmp_dir: "/t".into(),
            hidden: vec!["run".into()],
            ..SandboxPolicy::default()
        };
        assert_eq!(policy.relative_path(), Some(Path::new("run")));
    }

    #[test]
    fn provider_keys_and_listed_vars_are_removed() {
        let policy = SandboxPolicy {
            env_remove: vec!["MY_TOKEN".into(), "AWS_*".into()],
            ..SandboxPolicy::default()
        };
        for name in [
            "ANTHROPIC_API_KEY",
            "OPENAI_API_KEY",
            "GEMINI_API_KEY",
            "GOOGLE_API_KEY",
            "MISTRAL_API_KEY",
            "POD_MCP_TOKEN",
            "MY_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_",
        ] {
            assert!(policy.removes_env(OsStr::new(name)), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "API_KEY_HINT",
            "MY_TOKEN2",
            "AWS",
            "XAWS_KEY",
        ] {
            assert!(!policy.removes_env(OsStr::new(name)), "{name}");
        }
    }
}
