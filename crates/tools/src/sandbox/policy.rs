//! What one command may touch: the [`SandboxPolicy`] the pod hands to the helper, built
//! from its live [`Scope`] plus the places pods keep for itself.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use manifest::{Permission, Scope};
use serde::{Deserialize, Serialize};

/// Provider key variables always removed from a command's environment (besides every
/// `*_API_KEY`).
pub const PROVIDER_KEY_VARS: [&str; 4] = [
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
];

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
    /// The policy for `scope`: its write roots, shared paths, denied and delegated
    /// subtrees, with `cwd` and the pod's private `tmp_dir`, plus every `<write root>/.pods`
    /// that exists (protected). Add the runtime dirs with [`SandboxPolicy::hide`] and the
    /// state, config and model dirs with [`SandboxPolicy::protect`].
    pub fn from_scope(scope: &Scope, cwd: impl Into<PathBuf>, tmp_dir: impl Into<PathBuf>) -> Self {
        let write_roots: Vec<WriteRoot> = scope
            .write_roots()
            .map(|rule| WriteRoot {
                path: rule.target.clone(),
                recursive: rule.recursive,
            })
            .collect();
        let protected = write_roots
            .iter()
            .map(|root| root.path.join(".pods"))
            .filter(|dir| dir.symlink_metadata().is_ok())
            .collect();
        SandboxPolicy {
            cwd: cwd.into(),
            shared: scope.shared().iter().map(|r| r.target.clone()).collect(),
            delegated: scope.delegated().map(Path::to_path_buf).collect(),
            denied: scope.denied().iter().map(|r| r.target.clone()).collect(),
            unreadable: scope
                .denied()
                .iter()
                .filter(|r| r.permission == Permission::Read)
                .map(|r| Unreadable {
                    path: r.target.clone(),
                    recursive: r.recursive,
                })
                .collect(),
            socket_dirs: Vec::new(),
            protected,
            write_roots,
            hidden: Vec::new(),
            tmp_dir: tmp_dir.into(),
            env_remove: Vec::new(),
            no_network: false,
        }
    }

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

    /// Whether `name` must not reach the command: a provider key, any `*_API_KEY`, or a
    /// variable the policy lists.
    pub fn removes_env(&self, name: &OsStr) -> bool {
        let Some(name) = name.to_str() else {
            return false;
        };
        PROVIDER_KEY_VARS.contains(&name)
            || name.ends_with("_API_KEY")
            || self.env_remove.iter().any(|v| match v.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => v == name,
            })
    }
}

/// Every `.pods` directory under `root`, breadth first, looking at no more than
/// `max_dirs` directories (symlinks, `.git`, `target` and `node_modules` are not entered).
/// For the pod to protect project manifests deeper than a write root's top level; it is
/// too slow to run per command on a large tree, so cache the result.
pub fn find_pods_dirs(root: &Path, max_dirs: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut queue = std::collections::VecDeque::from([root.to_path_buf()]);
    let mut seen = 0usize;
    while let Some(dir) = queue.pop_front() {
        if seen >= max_dirs {
            break;
        }
        seen += 1;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            let name = entry.file_name();
            if name == ".pods" {
                found.push(entry.path());
            } else if name != ".git" && name != "target" && name != "node_modules" {
                queue.push_back(entry.path());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use manifest::ScopeRule;

    #[test]
    fn from_scope_maps_every_part_of_the_scope() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let repo = root.join("repo");
        std::fs::create_dir_all(repo.join(".pods")).unwrap();
        std::fs::create_dir_all(repo.join("src")).unwrap();
        let mut scope = Scope::new(
            [
                ScopeRule::recursive(&repo, Permission::Write),
                ScopeRule::non_recursive(root.join("flat"), Permission::Write),
                ScopeRule::recursive("/", Permission::Read),
            ],
            [
                ScopeRule::recursive(repo.join("secrets"), Permission::Read),
                ScopeRule::non_recursive(repo.join("keys"), Permission::Read),
                ScopeRule::recursive(repo.join("vendor"), Permission::Write),
            ],
        )
        .unwrap()
        .with_shared([ScopeRule::recursive(root.join("cache"), Permission::Write)])
        .unwrap();
        scope.delegate_away(&repo.join("src")).unwrap();

        let policy = SandboxPolicy::from_scope(&scope, &repo, root.join("tmp"))
            .hide(root.join("run"))
            .protect(root.join("home"))
            .cover_sockets_in("/run");
        assert_eq!(
            policy,
            SandboxPolicy {
                cwd: repo.clone(),
                write_roots: vec![
                    WriteRoot {
                        path: repo.clone(),
                        recursive: true
                    },
                    WriteRoot {
                        path: root.join("flat"),
                        recursive: false
                    },
                ],
                shared: vec![root.join("cache")],
                delegated: vec![repo.join("src")],
                denied: vec![repo.join("secrets"), repo.join("keys"), repo.join("vendor")],
                unreadable: vec![
                    Unreadable {
                        path: repo.join("secrets"),
                        recursive: true
                    },
                    Unreadable {
                        path: repo.join("keys"),
                        recursive: false
                    },
                ],
                socket_dirs: vec!["/run".into()],
                protected: vec![repo.join(".pods"), root.join("home")],
                hidden: vec![root.join("run")],
                tmp_dir: root.join("tmp"),
                env_remove: vec![],
                no_network: false,
            }
        );
        assert_eq!(policy.relative_path(), None);
    }

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

    #[test]
    fn pods_dirs_are_found_below_a_root_within_budget() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in [
            "a/.pods",
            "a/b/c/.pods",
            "node_modules/x/.pods",
            ".git/.pods",
        ] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let mut found = find_pods_dirs(root, 100);
        found.sort();
        assert_eq!(found, vec![root.join("a/.pods"), root.join("a/b/c/.pods")]);
        // Budget of one directory: only the root is listed.
        assert!(find_pods_dirs(root, 1).is_empty());
    }
}
