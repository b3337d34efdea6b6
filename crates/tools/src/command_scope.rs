//! What a command may touch, from the pod's scope: the mapping from a [`Scope`] to the
//! sandbox's own [`SandboxPolicy`], and the search for project `.pods` directories to
//! protect. It lives here, not in the `sandbox` crate, so the sandbox (and its helper
//! binary) depends on no manifest types.

use std::path::{Path, PathBuf};

use manifest::{Permission, Scope};
use sandbox::{SandboxPolicy, Unreadable, WriteRoot};

/// The sandbox policy for `scope`: its write roots, shared paths, denied and delegated
/// subtrees, with `cwd` and the pod's private `tmp_dir`, plus every `<write root>/.pods`
/// that exists (protected). Add the runtime dirs with [`SandboxPolicy::hide`] and the
/// state, config and model dirs with [`SandboxPolicy::protect`].
pub fn policy_for(
    scope: &Scope,
    cwd: impl Into<PathBuf>,
    tmp_dir: impl Into<PathBuf>,
) -> SandboxPolicy {
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

        let policy = policy_for(&scope, &repo, root.join("tmp"))
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
