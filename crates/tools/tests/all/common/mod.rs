//! Shared fixture for the file tool tests: a canonical temp dir holding `scope/` (the
//! pod's write scope) and `outside/` (never in scope), and helpers to call the tools
//! through the same `Tool` API the worker uses.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use manifest::{Permission, Scope, ScopeRule};
use tool::{ToolError, ToolOutput};
use tools::{ToolContext, file_tools};

/// A temp dir with `scope/` and `outside/`, both canonical paths.
pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    /// The temp dir itself.
    pub root: PathBuf,
    /// The pod's write scope.
    pub scope: PathBuf,
    /// A sibling directory outside the scope, holding `secret.txt`.
    pub outside: PathBuf,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let scope = root.join("scope");
        let outside = root.join("outside");
        fs::create_dir(&scope).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret.txt"), "TOP SECRET\n").unwrap();
        Fixture {
            _dir: dir,
            root,
            scope,
            outside,
        }
    }

    /// `scope/<rel>` with `content`, parents created.
    pub(crate) fn file(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.scope.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        path
    }

    /// The default scope: `scope/` writable, recursively.
    pub(crate) fn write_scope(&self) -> Scope {
        Scope::new([ScopeRule::recursive(&self.scope, Permission::Write)], []).unwrap()
    }

    /// A context over `scope` with cwd `scope/`, no protected dirs and a roomy cap.
    pub(crate) fn ctx(&self) -> ToolContext {
        self.ctx_with(self.write_scope(), Vec::new(), 256 * 1024)
    }

    /// A context with everything chosen.
    pub(crate) fn ctx_with(
        &self,
        scope: Scope,
        protected: Vec<PathBuf>,
        limit: usize,
    ) -> ToolContext {
        ToolContext::new(&self.scope, Arc::new(RwLock::new(scope)), protected, limit).unwrap()
    }
}

/// Calls the tool `name` of `ctx` with JSON arguments, as the worker would.
pub(crate) fn call(
    ctx: &ToolContext,
    name: &str,
    args: serde_json::Value,
) -> Result<ToolOutput, ToolError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tool = file_tools(ctx.clone())
        .into_iter()
        .map(|def| def())
        .find(|(meta, _)| meta.name == name)
        .unwrap_or_else(|| panic!("no tool named {name}"))
        .1;
    let json = args.to_string();
    runtime.block_on(async move {
        tokio::time::timeout(std::time::Duration::from_secs(60), tool.execute(&json))
            .await
            .expect("tool call timed out")
    })
}

/// The call's output, or a panic naming the error.
pub(crate) fn ok(result: Result<ToolOutput, ToolError>) -> ToolOutput {
    match result {
        Ok(out) => out,
        Err(e) => panic!("expected success, got: {e}"),
    }
}

/// The call's error message; panics when it succeeded.
pub(crate) fn err(result: Result<ToolOutput, ToolError>) -> String {
    match result {
        Ok(out) => panic!("expected an error, got: {out:?}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts that `message` contains every one of `parts`.
#[track_caller]
pub(crate) fn assert_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "expected {part:?} in:\n{message}");
    }
}

/// The content of a call's output (empty when none).
pub(crate) fn content(out: &ToolOutput) -> &str {
    out.content.as_deref().unwrap_or("")
}

/// Whether `dir` holds a leftover temporary file of an atomic write.
pub(crate) fn has_temp_files(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".pods-tmp")
    })
}
