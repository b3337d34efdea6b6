//! The scope model: what a pod may read and write, as the file tools check it and the
//! sandbox binds it.
//!
//! A [`Scope`] holds allow, deny and shared rules with canonical targets, plus the
//! subtrees delegated away to child pods. Every query canonicalises the path first
//! ([`canonicalize_lenient`]: symlinks followed, dangling ones too, `..` applied to the
//! real path), so a symlink or `..` cannot smuggle a path in or out. The effective
//! permission is the strongest matching allow (or shared) rule, capped by every matching
//! deny (`read` removes all access, `write` leaves read) and by delegations (read only).
//!
//! This module decides; it does not enforce. Tools must still open beneath directory
//! handles (a symlink swapped in after the check would otherwise redirect them), and the
//! sandbox binds [`Scope::write_roots`], [`Scope::shared`], [`Scope::denied`] and
//! [`Scope::delegated`]. The machine-wide registry of who writes where lives in `pod`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::manifest::ScopeConfig;
use crate::path::canonicalize_lenient;
use crate::rule::{Permission, ScopeRule};

/// Why a scope could not be built, a delegation changed, or an access was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// A rule target is relative; scopes are built from resolved (absolute) rules.
    #[error("scope rule target {} is relative; resolve it against its manifest first", target.display())]
    RelativeTarget {
        /// The target as given.
        target: PathBuf,
    },
    /// A path could not be canonicalised (permission denied on a lookup, symlink loop,
    /// relative path).
    #[error("cannot resolve {}: {source}; check the path and its parents' permissions", path.display())]
    Resolve {
        /// The path as given.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An access outside what the scope allows.
    #[error("{wanted} access to {} refused: {}{reason}", path.display(), resolved_note(path, resolved))]
    Refused {
        /// The path as asked for.
        path: PathBuf,
        /// Its canonical form, which the rules were checked against.
        resolved: PathBuf,
        /// The access asked for.
        wanted: Permission,
        /// Which rule (or lack of one) refused it.
        reason: Refusal,
    },
    /// A delegation whose subtree this pod cannot write (as a whole).
    #[error(
        "cannot delegate {}: {} is not inside this pod's recursive write scope ({scope}); delegate a directory this pod can write",
        path.display(), resolved.display()
    )]
    DelegationOutsideWriteScope {
        /// The path as asked for.
        path: PathBuf,
        /// Its canonical form.
        resolved: PathBuf,
        /// The scope summary, to show what could be delegated.
        scope: String,
    },
    /// A delegation overlapping one already made.
    #[error(
        "cannot delegate {}: it overlaps {}, which is already delegated; give that back first or choose a disjoint directory",
        path.display(), existing.display()
    )]
    DelegationOverlap {
        /// The path as asked for.
        path: PathBuf,
        /// The delegated root it overlaps.
        existing: PathBuf,
    },
    /// A delegation of a rule that is not a recursive write rule.
    #[error(
        "cannot delegate {rule}: only recursive write rules are delegated (read access is never taken away); make it `recursive = true`, `permission = \"write\"`"
    )]
    DelegationNotRecursiveWrite {
        /// The rule as given.
        rule: ScopeRule,
    },
    /// `give_back` of a path that is not delegated.
    #[error("cannot give back {}: it is not delegated (delegated: {delegated})", path.display())]
    NotDelegated {
        /// The path as given.
        path: PathBuf,
        /// The delegated roots, for the message.
        delegated: String,
    },
}

/// The subject of a refusal: `it`, or `it resolves to /x, which` when the canonical path
/// differs from the one asked for (so a symlink or `..` escape is visible).
fn resolved_note(path: &Path, resolved: &Path) -> String {
    if path == resolved {
        "it ".to_owned()
    } else {
        format!("it resolves to {}, which ", resolved.display())
    }
}

/// Why an access was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No allow or shared rule grants enough.
    OutsideScope {
        /// The scope summary, to show what is allowed.
        scope: String,
    },
    /// A deny rule covers it.
    Denied {
        /// The deny rule.
        rule: ScopeRule,
    },
    /// It lies in a subtree delegated to a child pod.
    Delegated {
        /// The delegated root.
        root: PathBuf,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::OutsideScope { scope } => {
                write!(f, "is outside this pod's scope ({scope})")
            }
            Refusal::Denied { rule } => write!(
                f,
                "is under {}, which the manifest denies ({} access)",
                rule.target.display(),
                rule.permission
            ),
            Refusal::Delegated { root } => write!(
                f,
                "is under {}, which is delegated to a child pod; ask that pod, or stop it to get the directory back",
                root.display()
            ),
        }
    }
}

/// A subtree delegated away: its canonical root and the path it was asked for by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delegation {
    root: PathBuf,
    requested: PathBuf,
}

/// A pod's live scope. Cheap to clone; `Send + Sync`, so callers share it as
/// `Arc<RwLock<Scope>>` and take the write lock only to delegate or give back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    allow: Vec<ScopeRule>,
    deny: Vec<ScopeRule>,
    shared: Vec<ScopeRule>,
    delegations: Vec<Delegation>,
}

/// Whether `rule` covers the canonical `path`: its target and (recursive) everything
/// below, or (non-recursive) its direct children.
fn covers(rule: &ScopeRule, path: &Path) -> bool {
    if rule.recursive {
        path.starts_with(&rule.target)
    } else {
        path == rule.target || path.parent() == Some(rule.target.as_path())
    }
}

/// The rules with canonical targets, exact duplicates dropped.
fn canonical_rules(
    rules: impl IntoIterator<Item = ScopeRule>,
) -> Result<Vec<ScopeRule>, ScopeError> {
    let mut out: Vec<ScopeRule> = Vec::new();
    for rule in rules {
        if !rule.target.is_absolute() {
            return Err(ScopeError::RelativeTarget {
                target: rule.target,
            });
        }
        let target = canonicalize_lenient(&rule.target).map_err(|source| ScopeError::Resolve {
            path: rule.target.clone(),
            source,
        })?;
        let rule = ScopeRule { target, ..rule };
        if !out.contains(&rule) {
            out.push(rule);
        }
    }
    Ok(out)
}

/// Canonicalises a path for a query or delegation.
fn resolve(path: &Path) -> Result<PathBuf, ScopeError> {
    canonicalize_lenient(path).map_err(|source| ScopeError::Resolve {
        path: path.to_path_buf(),
        source,
    })
}

impl Scope {
    /// A scope from absolute allow and deny rules; targets are canonicalised now (a rule
    /// whose target is a symlink covers where it points).
    pub fn new(
        allow: impl IntoIterator<Item = ScopeRule>,
        deny: impl IntoIterator<Item = ScopeRule>,
    ) -> Result<Self, ScopeError> {
        Ok(Scope {
            allow: canonical_rules(allow)?,
            deny: canonical_rules(deny)?,
            shared: Vec::new(),
            delegations: Vec::new(),
        })
    }

    /// Adds shared paths: writable by this pod like its own, but not its to claim or
    /// delegate (every pod has them). Their permission is taken as `write`.
    pub fn with_shared(
        mut self,
        shared: impl IntoIterator<Item = ScopeRule>,
    ) -> Result<Self, ScopeError> {
        let rules = shared.into_iter().map(|rule| ScopeRule {
            permission: Permission::Write,
            ..rule
        });
        for rule in canonical_rules(rules)? {
            if !self.shared.contains(&rule) {
                self.shared.push(rule);
            }
        }
        Ok(self)
    }

    /// The scope a resolved manifest describes.
    pub fn from_config(config: &ScopeConfig) -> Result<Self, ScopeError> {
        Scope::new(config.allow_rules().cloned(), config.deny_rules().cloned())?
            .with_shared(config.shared_rules().cloned())
    }

    /// The effective permission for `path` (`None`: no access, or the path cannot be
    /// resolved).
    pub fn permission(&self, path: &Path) -> Option<Permission> {
        let resolved = canonicalize_lenient(path).ok()?;
        self.permission_resolved(&resolved)
    }

    /// As [`Scope::permission`], for a path already canonical (from
    /// [`canonicalize_lenient`]); cheaper, no filesystem access.
    pub fn permission_resolved(&self, canonical: &Path) -> Option<Permission> {
        self.judge(canonical).0
    }

    /// Whether `path` may be read.
    #[cfg(test)]
    pub(crate) fn can_read(&self, path: &Path) -> bool {
        self.permission(path).is_some()
    }

    /// Whether `path` may be written (created, changed, removed).
    #[cfg(test)]
    pub(crate) fn can_write(&self, path: &Path) -> bool {
        self.permission(path) == Some(Permission::Write)
    }

    /// Checks `wanted` access to `path`; returns the canonical path to use, or an error
    /// saying which rule refused it.
    pub fn check(&self, path: &Path, wanted: Permission) -> Result<PathBuf, ScopeError> {
        let resolved = resolve(path)?;
        let (granted, refusal) = self.judge(&resolved);
        if granted >= Some(wanted) {
            return Ok(resolved);
        }
        Err(ScopeError::Refused {
            path: path.to_path_buf(),
            resolved,
            wanted,
            reason: refusal.unwrap_or_else(|| Refusal::OutsideScope {
                scope: self.to_string(),
            }),
        })
    }

    /// The effective permission for a canonical path, and (when it is capped) the reason.
    fn judge(&self, path: &Path) -> (Option<Permission>, Option<Refusal>) {
        let mut granted = self
            .allow
            .iter()
            .chain(&self.shared)
            .filter(|rule| covers(rule, path))
            .map(|rule| rule.permission)
            .max();
        let mut refusal = None;
        for rule in self.deny.iter().filter(|rule| covers(rule, path)) {
            let cap = match rule.permission {
                Permission::Read => None,
                Permission::Write => Some(Permission::Read),
            };
            if cap < granted {
                granted = cap;
                refusal = Some(Refusal::Denied { rule: rule.clone() });
            }
        }
        if granted == Some(Permission::Write)
            && let Some(d) = self.delegations.iter().find(|d| path.starts_with(&d.root))
        {
            granted = Some(Permission::Read);
            refusal = Some(Refusal::Delegated {
                root: d.root.clone(),
            });
        }
        (granted, refusal)
    }

    /// Takes write access to the subtree at `path` away from this pod (a child pod gets
    /// it), leaving read access. Returns the canonical root recorded.
    ///
    /// The subtree must be writable as a whole: covered by a recursive allow-write rule
    /// (shared paths are not this pod's to give), not denied, and not overlapping an
    /// existing delegation. It need not exist yet.
    pub fn delegate_away(&mut self, path: &Path) -> Result<PathBuf, ScopeError> {
        let root = resolve(path)?;
        if let Some(existing) = self
            .delegations
            .iter()
            .find(|d| d.root.starts_with(&root) || root.starts_with(&d.root))
        {
            return Err(ScopeError::DelegationOverlap {
                path: path.to_path_buf(),
                existing: existing.root.clone(),
            });
        }
        let owned = self.allow.iter().any(|rule| {
            rule.permission == Permission::Write && rule.recursive && root.starts_with(&rule.target)
        });
        // A deny on the root or above caps the whole subtree. (Denies strictly inside it
        // stay denied: the pod crate passes them on to the child.)
        let denied = self.deny.iter().any(|rule| covers(rule, &root));
        if !owned || denied {
            return Err(ScopeError::DelegationOutsideWriteScope {
                path: path.to_path_buf(),
                resolved: root,
                scope: self.to_string(),
            });
        }
        self.delegations.push(Delegation {
            root: root.clone(),
            requested: path.to_path_buf(),
        });
        Ok(root)
    }

    /// [`Scope::delegate_away`] for a rule granted to a child; it must be a recursive
    /// write rule.
    pub fn delegate_rule(&mut self, rule: &ScopeRule) -> Result<PathBuf, ScopeError> {
        if rule.permission != Permission::Write || !rule.recursive {
            return Err(ScopeError::DelegationNotRecursiveWrite { rule: rule.clone() });
        }
        self.delegate_away(&rule.target)
    }

    /// Restores write access to a delegated subtree. `path` is matched as it was
    /// delegated or by its canonical form.
    pub fn give_back(&mut self, path: &Path) -> Result<PathBuf, ScopeError> {
        let position = match self.delegations.iter().position(|d| d.requested == path) {
            Some(i) => Some(i),
            None => {
                let root = canonicalize_lenient(path).ok();
                self.delegations
                    .iter()
                    .position(|d| Some(&d.root) == root.as_ref())
            }
        };
        match position {
            Some(i) => Ok(self.delegations.remove(i).root),
            None => Err(ScopeError::NotDelegated {
                path: path.to_path_buf(),
                delegated: self.delegated_list(),
            }),
        }
    }

    /// The delegated roots joined for messages.
    fn delegated_list(&self) -> String {
        if self.delegations.is_empty() {
            return "none".to_owned();
        }
        self.delegations
            .iter()
            .map(|d| d.root.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The canonical roots delegated away (the sandbox binds them read-only).
    pub fn delegated(&self) -> impl Iterator<Item = &Path> {
        self.delegations.iter().map(|d| d.root.as_path())
    }

    /// All allow rules, canonical.
    pub fn allow_rules(&self) -> &[ScopeRule] {
        &self.allow
    }

    /// The allow-write rules: this pod's own writable roots (what it claims in the
    /// registry, and the sandbox binds read-write), delegations not subtracted.
    pub fn write_roots(&self) -> impl Iterator<Item = &ScopeRule> {
        self.allow
            .iter()
            .filter(|rule| rule.permission == Permission::Write)
    }

    /// The allow-read rules.
    pub fn read_roots(&self) -> impl Iterator<Item = &ScopeRule> {
        self.allow
            .iter()
            .filter(|rule| rule.permission == Permission::Read)
    }

    /// The shared rules (all `write`): writable, never claimed or delegated.
    pub fn shared(&self) -> &[ScopeRule] {
        &self.shared
    }

    /// The deny rules (the sandbox binds them read-only, and covers those denying reads).
    pub fn denied(&self) -> &[ScopeRule] {
        &self.deny
    }

    /// The [`Display`](fmt::Display) summary leaving out the deny rules on
    /// `hidden_denies` (e.g. a built-in one the reader has no use for).
    pub fn summary_without(&self, hidden_denies: &[&Path]) -> String {
        let mut parts: Vec<String> = self.allow.iter().map(ToString::to_string).collect();
        parts.extend(self.shared.iter().map(|rule| {
            let mut s = format!("shared:{}", rule.target.display());
            if !rule.recursive {
                s.push_str(" [non-recursive]");
            }
            s
        }));
        let shown = self
            .deny
            .iter()
            .filter(|rule| !hidden_denies.contains(&rule.target.as_path()));
        parts.extend(shown.map(|rule| {
            let kind = match rule.permission {
                Permission::Read => "deny",
                Permission::Write => "deny-write",
            };
            let mut s = format!("{kind}:{}", rule.target.display());
            if !rule.recursive {
                s.push_str(" [non-recursive]");
            }
            s
        }));
        parts.extend(
            self.delegations
                .iter()
                .map(|d| format!("delegated:{}", d.root.display())),
        );
        if parts.is_empty() {
            "no access".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// A compact summary: `write:/repo, read:/usr [non-recursive], shared:/home/u/.npm,
/// deny:/repo/secrets, deny-write:/repo/vendor, delegated:/repo/sub`; `no access` when
/// empty.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary_without(&[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::{Read, Write};
    use std::fs;
    use std::os::unix::fs::symlink;

    /// A canonical temp dir with `scope/` (the pod's write scope) and `outside/` beside it.
    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        scope: PathBuf,
        outside: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root = fs::canonicalize(dir.path()).unwrap();
            let scope = root.join("scope");
            let outside = root.join("outside");
            fs::create_dir_all(scope.join("src")).unwrap();
            fs::create_dir_all(&outside).unwrap();
            fs::write(outside.join("file"), "x").unwrap();
            Fixture {
                _dir: dir,
                root,
                scope,
                outside,
            }
        }

        /// Write access to `scope/` only.
        fn write_scope(&self) -> Scope {
            Scope::new([ScopeRule::recursive(&self.scope, Write)], []).unwrap()
        }
    }

    #[test]
    fn recursive_allow_covers_the_subtree_only() {
        let fx = Fixture::new();
        let scope = fx.write_scope();
        assert_eq!(scope.permission(&fx.scope), Some(Write));
        assert_eq!(scope.permission(&fx.scope.join("src")), Some(Write));
        assert_eq!(scope.permission(&fx.outside.join("file")), None);
        assert_eq!(scope.permission(&fx.root), None);
        // A sibling whose name merely starts with the scope's name is outside.
        assert_eq!(scope.permission(&fx.root.join("scope2/x")), None);
        // Relative paths cannot be judged, so they are refused.
        assert_eq!(scope.permission(Path::new("scope/src")), None);
    }

    #[test]
    fn strongest_allow_wins() {
        let fx = Fixture::new();
        let scope = Scope::new(
            [
                ScopeRule::recursive(&fx.root, Read),
                ScopeRule::recursive(&fx.scope, Write),
            ],
            [],
        )
        .unwrap();
        assert_eq!(scope.permission(&fx.scope.join("src/a.rs")), Some(Write));
        assert_eq!(scope.permission(&fx.outside.join("file")), Some(Read));
    }

    #[test]
    fn not_yet_existing_paths_in_and_out_of_scope() {
        let fx = Fixture::new();
        let scope = fx.write_scope();
        assert!(scope.can_write(&fx.scope.join("new/a/b/c/file.rs")));
        assert!(scope.can_write(&fx.scope.join("src/new/deeper/x")));
        assert!(!scope.can_read(&fx.outside.join("new/a/b/c/file.rs")));
        assert!(!scope.can_read(&fx.root.join("missing/a/b")));
        // `..` inside the missing part stays inside when it does not climb out.
        assert!(scope.can_write(&fx.scope.join("new/a/../b/./c")));
    }

    #[test]
    fn dotdot_cannot_climb_out() {
        let fx = Fixture::new();
        let scope = fx.write_scope();
        let escape = fx.scope.join("newdir/../../outside/file");
        assert_eq!(
            canonicalize_lenient(&escape).unwrap(),
            fx.outside.join("file")
        );
        assert!(!scope.can_read(&escape));
        let existing = fx.scope.join("src/../../outside/new");
        assert!(!scope.can_read(&existing));
        // Climbing from a missing dir past the root lands on `/etc/passwd`.
        let deep = fx
            .scope
            .join("newdir")
            .join("../".repeat(40))
            .join("etc/passwd");
        assert_eq!(
            canonicalize_lenient(&deep).unwrap(),
            PathBuf::from("/etc/passwd")
        );
        assert!(!scope.can_write(&deep));
        let err = scope.check(&deep, Write).unwrap_err();
        assert!(
            matches!(&err, ScopeError::Refused { resolved, reason: Refusal::OutsideScope { .. }, .. }
                if resolved == Path::new("/etc/passwd")),
            "got: {err}"
        );
        assert!(
            err.to_string().contains("resolves to /etc/passwd"),
            "got: {err}"
        );
    }

    #[test]
    fn symlinked_dir_escape_is_refused() {
        let fx = Fixture::new();
        symlink(&fx.outside, fx.scope.join("link")).unwrap();
        let scope = fx.write_scope();
        assert!(!scope.can_write(&fx.scope.join("link/file")));
        assert!(!scope.can_write(&fx.scope.join("link/new/deep.txt")));
        assert!(!scope.can_read(&fx.scope.join("link")));
        assert_eq!(
            scope
                .check(&fx.scope.join("link/file"), Read)
                .map_err(|e| e.to_string()),
            Err(format!(
                "read access to {} refused: it resolves to {}, which is outside this pod's scope (write:{})",
                fx.scope.join("link/file").display(),
                fx.outside.join("file").display(),
                fx.scope.display()
            ))
        );
    }

    #[test]
    fn symlinked_file_escape_is_refused() {
        let fx = Fixture::new();
        symlink(fx.outside.join("file"), fx.scope.join("file-link")).unwrap();
        let scope = fx.write_scope();
        assert!(!scope.can_write(&fx.scope.join("file-link")));
        // A link that stays inside is fine.
        fs::write(fx.scope.join("src/real"), "").unwrap();
        symlink("src/real", fx.scope.join("inner-link")).unwrap();
        assert!(scope.can_write(&fx.scope.join("inner-link")));
    }

    #[test]
    fn dangling_symlink_pointing_outside_is_refused() {
        let fx = Fixture::new();
        // Writing through it would create `outside/created-later`.
        symlink(fx.outside.join("created-later"), fx.scope.join("dangling")).unwrap();
        symlink(fx.outside.join("nodir/x"), fx.scope.join("dangling-deep")).unwrap();
        let scope = fx.write_scope();
        assert!(!scope.can_write(&fx.scope.join("dangling")));
        assert!(!scope.can_write(&fx.scope.join("dangling-deep")));
        // A dangling link that points inside the scope is a normal new file.
        symlink(fx.scope.join("src/not-yet"), fx.scope.join("dangling-in")).unwrap();
        assert!(scope.can_write(&fx.scope.join("dangling-in")));
    }

    #[test]
    fn rule_target_that_is_a_symlink_covers_where_it_points() {
        let fx = Fixture::new();
        symlink(&fx.outside, fx.root.join("alias")).unwrap();
        let scope = Scope::new([ScopeRule::recursive(fx.root.join("alias"), Write)], []).unwrap();
        assert_eq!(scope.write_roots().next().unwrap().target, fx.outside);
        assert!(scope.can_write(&fx.outside.join("file")));
        assert!(scope.can_write(&fx.root.join("alias/new")));
    }

    #[test]
    fn non_recursive_rule_covers_direct_children_only() {
        let fx = Fixture::new();
        let scope = Scope::new([ScopeRule::non_recursive(&fx.scope, Write)], []).unwrap();
        assert!(scope.can_write(&fx.scope));
        assert!(scope.can_write(&fx.scope.join("src")));
        assert!(scope.can_write(&fx.scope.join("new-file")));
        assert!(!scope.can_read(&fx.scope.join("src/grandchild")));
        assert!(!scope.can_read(&fx.scope.join("new/grandchild")));
    }

    #[test]
    fn deny_write_leaves_read_and_deny_read_removes_all() {
        let fx = Fixture::new();
        let scope = Scope::new(
            [ScopeRule::recursive(&fx.scope, Write)],
            [
                ScopeRule::recursive(fx.scope.join("vendor"), Write),
                ScopeRule::recursive(fx.scope.join("secrets"), Read),
            ],
        )
        .unwrap();
        assert_eq!(
            scope.permission(&fx.scope.join("vendor/lib.rs")),
            Some(Read)
        );
        assert_eq!(scope.permission(&fx.scope.join("secrets/key")), None);
        assert_eq!(scope.permission(&fx.scope.join("secrets")), None);
        assert_eq!(scope.permission(&fx.scope.join("src/main.rs")), Some(Write));
        let err = scope
            .check(&fx.scope.join("vendor/lib.rs"), Write)
            .unwrap_err();
        assert!(
            matches!(&err, ScopeError::Refused { reason: Refusal::Denied { rule }, .. }
                if rule.target == fx.scope.join("vendor")),
            "got: {err}"
        );
        assert_eq!(
            scope.check(&fx.scope.join("vendor/lib.rs"), Read).unwrap(),
            fx.scope.join("vendor/lib.rs")
        );
    }

    #[test]
    fn deny_reached_through_a_symlink_still_applies() {
        let fx = Fixture::new();
        fs::create_dir(fx.scope.join("secrets")).unwrap();
        symlink(fx.scope.join("secrets"), fx.scope.join("src/peek")).unwrap();
        let scope = Scope::new(
            [ScopeRule::recursive(&fx.scope, Write)],
            [ScopeRule::recursive(fx.scope.join("secrets"), Read)],
        )
        .unwrap();
        assert!(!scope.can_read(&fx.scope.join("src/peek/key")));
    }

    #[test]
    fn shared_paths_are_writable_but_not_delegable() {
        let fx = Fixture::new();
        let cache = fx.root.join("cache");
        let mut scope = fx
            .write_scope()
            .with_shared([ScopeRule::recursive(&cache, Read)])
            .unwrap();
        assert_eq!(scope.shared()[0].permission, Write);
        assert!(scope.can_write(&cache.join("pkg/x")));
        assert!(matches!(
            scope.delegate_away(&cache.join("pkg")),
            Err(ScopeError::DelegationOutsideWriteScope { .. })
        ));
    }

    #[test]
    fn delegate_away_then_give_back() {
        let fx = Fixture::new();
        let mut scope = fx.write_scope();
        let sub = fx.scope.join("src");
        let file = sub.join("lib.rs");

        let root = scope.delegate_away(&sub).unwrap();
        assert_eq!(root, sub);
        assert_eq!(scope.delegated().collect::<Vec<_>>(), vec![sub.as_path()]);
        assert!(!scope.can_write(&file));
        assert!(!scope.can_write(&sub));
        assert!(scope.can_read(&file));
        assert!(scope.can_write(&fx.scope.join("other.rs")));
        let err = scope.check(&file, Write).unwrap_err();
        assert!(
            matches!(&err, ScopeError::Refused { reason: Refusal::Delegated { root }, .. } if *root == sub),
            "got: {err}"
        );
        assert!(
            scope
                .to_string()
                .contains(&format!("delegated:{}", sub.display()))
        );

        assert_eq!(scope.give_back(&sub).unwrap(), sub);
        assert!(scope.can_write(&file));
        assert_eq!(scope.delegated().count(), 0);
        assert!(matches!(
            scope.give_back(&sub),
            Err(ScopeError::NotDelegated { .. })
        ));
    }

    #[test]
    fn delegation_of_a_missing_dir_and_give_back_by_either_spelling() {
        let fx = Fixture::new();
        symlink(&fx.scope, fx.root.join("alias")).unwrap();
        let mut scope = fx.write_scope();
        let asked = fx.root.join("alias/child/work");
        let root = scope.delegate_away(&asked).unwrap();
        assert_eq!(root, fx.scope.join("child/work"));
        assert!(!scope.can_write(&fx.scope.join("child/work/new.txt")));
        assert!(scope.can_write(&fx.scope.join("child/other")));
        assert_eq!(scope.give_back(&root).unwrap(), root);
        scope.delegate_away(&asked).unwrap();
        assert_eq!(scope.give_back(&asked).unwrap(), root);
    }

    #[test]
    fn delegation_outside_write_scope_is_refused() {
        let fx = Fixture::new();
        let mut scope = Scope::new(
            [
                ScopeRule::recursive(&fx.scope, Write),
                ScopeRule::recursive(&fx.outside, Read),
                ScopeRule::non_recursive(fx.root.join("flat"), Write),
            ],
            [ScopeRule::recursive(fx.scope.join("vendor"), Write)],
        )
        .unwrap();
        for path in [
            fx.outside.join("x"),
            fx.root.clone(),
            fx.root.join("flat/child"),
            fx.scope.join("vendor"),
            fx.scope.join("vendor/deep"),
            fx.scope.join("../outside"),
        ] {
            let err = scope.delegate_away(&path).unwrap_err();
            assert!(
                matches!(err, ScopeError::DelegationOutsideWriteScope { .. }),
                "{}: got {err}",
                path.display()
            );
        }
        symlink(&fx.outside, fx.scope.join("escape")).unwrap();
        assert!(matches!(
            scope.delegate_away(&fx.scope.join("escape")),
            Err(ScopeError::DelegationOutsideWriteScope { .. })
        ));
        assert_eq!(scope.delegated().count(), 0);
    }

    #[test]
    fn overlapping_delegations_are_refused() {
        let fx = Fixture::new();
        let mut scope = fx.write_scope();
        let src = fx.scope.join("src");
        scope.delegate_away(&src).unwrap();
        for path in [src.clone(), src.join("inner"), fx.scope.clone()] {
            let err = scope.delegate_away(&path).unwrap_err();
            assert!(
                matches!(&err, ScopeError::DelegationOverlap { existing, .. } if *existing == src),
                "{}: got {err}",
                path.display()
            );
        }
        // A disjoint sibling is fine, including one whose name extends `src`.
        scope.delegate_away(&fx.scope.join("src2")).unwrap();
        assert_eq!(scope.delegated().count(), 2);
    }

    #[test]
    fn delegate_rule_takes_recursive_write_rules_only() {
        let fx = Fixture::new();
        let mut scope = fx.write_scope();
        let src = fx.scope.join("src");
        for rule in [
            ScopeRule::non_recursive(&src, Write),
            ScopeRule::recursive(&src, Read),
        ] {
            assert!(matches!(
                scope.delegate_rule(&rule),
                Err(ScopeError::DelegationNotRecursiveWrite { .. })
            ));
        }
        assert_eq!(
            scope
                .delegate_rule(&ScopeRule::recursive(&src, Write))
                .unwrap(),
            src
        );
    }

    #[test]
    fn roots_and_summary_describe_the_scope() {
        let fx = Fixture::new();
        let mut scope = Scope::new(
            [
                ScopeRule::recursive(&fx.scope, Write),
                ScopeRule::non_recursive(&fx.outside, Read),
            ],
            [
                ScopeRule::recursive(fx.scope.join("secrets"), Read),
                ScopeRule::recursive(fx.scope.join("vendor"), Write),
            ],
        )
        .unwrap()
        .with_shared([ScopeRule::recursive(fx.root.join("cache"), Write)])
        .unwrap();
        scope.delegate_away(&fx.scope.join("src")).unwrap();
        assert_eq!(
            scope.write_roots().map(|r| &r.target).collect::<Vec<_>>(),
            vec![&fx.scope]
        );
        assert_eq!(
            scope.read_roots().map(|r| &r.target).collect::<Vec<_>>(),
            vec![&fx.outside]
        );
        assert_eq!(scope.denied().len(), 2);
        let d = |p: &Path| p.display().to_string();
        assert_eq!(
            scope.to_string(),
            format!(
                "write:{}, read:{} [non-recursive], shared:{}, deny:{}, deny-write:{}, delegated:{}",
                d(&fx.scope),
                d(&fx.outside),
                d(&fx.root.join("cache")),
                d(&fx.scope.join("secrets")),
                d(&fx.scope.join("vendor")),
                d(&fx.scope.join("src")),
            )
        );
        assert_eq!(Scope::default().to_string(), "no access");
        let secrets = fx.scope.join("secrets");
        assert_eq!(
            scope.summary_without(&[secrets.as_path()]),
            scope
                .to_string()
                .replace(&format!(", deny:{}", d(&secrets)), "")
        );
    }

    #[test]
    fn relative_rule_targets_are_refused() {
        assert!(matches!(
            Scope::new([ScopeRule::recursive("rel", Write)], []),
            Err(ScopeError::RelativeTarget { .. })
        ));
    }

    #[test]
    fn duplicate_rules_collapse_after_canonicalisation() {
        let fx = Fixture::new();
        symlink(&fx.scope, fx.root.join("alias")).unwrap();
        let scope = Scope::new(
            [
                ScopeRule::recursive(&fx.scope, Write),
                ScopeRule::recursive(fx.root.join("alias"), Write),
            ],
            [],
        )
        .unwrap();
        assert_eq!(scope.allow_rules().len(), 1);
    }

    #[test]
    fn scope_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Scope>();
        let fx = Fixture::new();
        let shared = std::sync::Arc::new(std::sync::RwLock::new(fx.write_scope()));
        let src = fx.scope.join("src");
        let writer = {
            let shared = shared.clone();
            let src = src.clone();
            std::thread::spawn(move || shared.write().unwrap().delegate_away(&src).map(|_| ()))
        };
        writer.join().unwrap().unwrap();
        assert!(!shared.read().unwrap().can_write(&src.join("x")));
    }

    #[test]
    fn from_config_uses_allow_deny_and_shared() {
        let fx = Fixture::new();
        let sourced = |rule| crate::manifest::SourcedRule {
            rule,
            origin: crate::manifest::Origin::BuiltIn,
        };
        let config = ScopeConfig {
            allow: vec![sourced(ScopeRule::recursive(&fx.scope, Write))],
            deny: vec![sourced(ScopeRule::recursive(fx.scope.join("src"), Write))],
            shared: vec![sourced(ScopeRule::recursive(&fx.outside, Write))],
        };
        let scope = Scope::from_config(&config).unwrap();
        assert_eq!(scope.permission(&fx.scope.join("src/x")), Some(Read));
        assert!(scope.can_write(&fx.outside.join("file")));
    }
}
