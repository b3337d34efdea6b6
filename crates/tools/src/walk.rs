//! What the directory walks of Glob and Grep may see: only paths the scope lets this pod
//! read. Unreadable subtrees are pruned without a word (their names are not this pod's
//! to see), hidden directories (other pods' private files) are never entered, and a directory is entered only if it is readable or an allow rule lies
//! somewhere below it.

use std::path::Path;
use std::sync::Arc;

use ignore::DirEntry;
use manifest::Scope;

use crate::context::ToolContext;

/// Whether any allow or shared rule targets a path strictly below `dir`.
fn rule_below(scope: &Scope, dir: &Path) -> bool {
    scope
        .allow_rules()
        .iter()
        .chain(scope.shared())
        .any(|rule| rule.target != dir && rule.target.starts_with(dir))
}

/// A `WalkBuilder::filter_entry` predicate keeping what `scope` lets this pod read.
///
/// Walks start at a canonical directory and never follow symlinks, so every path they
/// yield is canonical as far as the scope is concerned (a symlink entry is judged where
/// it sits, and is never searched through).
pub(crate) fn readable_filter(
    ctx: &ToolContext,
) -> impl Fn(&DirEntry) -> bool + Send + Sync + 'static {
    let scope = Arc::new(ctx.scope_now());
    let ctx = ctx.clone();
    move |entry: &DirEntry| {
        let path = entry.path();
        if ctx.hidden_dir(path).is_some() {
            return false;
        }
        if scope.permission_resolved(path).is_some() {
            return true;
        }
        entry.file_type().is_some_and(|t| t.is_dir()) && rule_below(&scope, path)
    }
}

/// Whether a walked entry itself may be read (a directory kept only for what lies below
/// it may not be listed as a result).
pub(crate) fn may_read(scope: &Scope, path: &Path) -> bool {
    scope.permission_resolved(path).is_some()
}
