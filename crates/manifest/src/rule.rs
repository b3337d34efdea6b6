//! One scope rule as written in a manifest (`[[scope.allow]]`, `[[scope.deny]]`) and as
//! recorded for a child pod: a target path, a permission and whether it covers the whole
//! subtree. What a set of rules means together lives in [`crate::scope`].

use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Access to a path: `Read` lets a pod look, `Write` also lets it change (write implies read).
///
/// Ordered `Read < Write`, so the strongest of several permissions is their `max`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read files and list directories.
    Read,
    /// Create, change and remove files (and read them).
    Write,
}

impl Permission {
    /// The manifest spelling: `read` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A path with a permission: in `allow` it grants, in `deny` it takes away.
///
/// `recursive` (default `true`) covers the target and everything below it; `false` covers
/// the target and its direct children only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeRule {
    /// The path the rule is about; relative and `~` forms are resolved when layers merge.
    pub target: PathBuf,
    /// What the rule grants (allow) or takes away (deny).
    pub permission: Permission,
    /// Whether the rule covers the whole subtree (`true`) or only direct children.
    #[serde(default = "default_recursive")]
    pub recursive: bool,
}

/// Rules cover whole subtrees unless they say otherwise.
fn default_recursive() -> bool {
    true
}

impl ScopeRule {
    /// A recursive rule for `target`.
    pub fn recursive(target: impl Into<PathBuf>, permission: Permission) -> Self {
        ScopeRule {
            target: target.into(),
            permission,
            recursive: true,
        }
    }

    /// A rule for `target` and its direct children only.
    pub fn non_recursive(target: impl Into<PathBuf>, permission: Permission) -> Self {
        ScopeRule {
            target: target.into(),
            permission,
            recursive: false,
        }
    }
}

/// `write:/repo`, or `read:/usr [non-recursive]` (the seed's `ListPods` spelling).
impl fmt::Display for ScopeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.permission, self.target.display())?;
        if !self.recursive {
            f.write_str(" [non-recursive]")?;
        }
        Ok(())
    }
}
