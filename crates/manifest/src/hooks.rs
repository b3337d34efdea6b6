//! `[[hooks]]` and `[[permissions]]`: the user's own checks around the pod's
//! work, as written in a layer and as resolved (paths absolute, defaults
//! filled in, globs checked). Running hooks and matching rules is the `hooks`
//! crate's job.

use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manifest::Origin;
use crate::path::{TildeError, resolve_target};

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookEvent {
    /// The pod process started (fresh, restored, or a child's first start).
    SessionStart,
    /// A user's input arrived, before it becomes a turn (exit 2 refuses it).
    UserPrompt,
    /// A tool call is about to run (exit 2 blocks it; may rewrite its input).
    PreTool,
    /// A tool call has run (may add a note to its result).
    PostTool,
    /// A turn ended.
    TurnEnd,
    /// A compaction is about to summarise the history.
    PreCompact,
}

impl HookEvent {
    /// The manifest spelling, e.g. `pre_tool`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::SessionStart => "session_start",
            HookEvent::UserPrompt => "user_prompt",
            HookEvent::PreTool => "pre_tool",
            HookEvent::PostTool => "post_tool",
            HookEvent::TurnEnd => "turn_end",
            HookEvent::PreCompact => "pre_compact",
        }
    }

    /// Whether the event concerns one tool call (so `match` applies).
    pub fn is_tool_event(self) -> bool {
        matches!(self, HookEvent::PreTool | HookEvent::PostTool)
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The command a hook runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HookCommand {
    /// A program and its arguments, run as they are (a relative program path
    /// with a `/` is resolved against the layer's base directory).
    Argv(Vec<String>),
    /// A script run by `sh -c` in the pod's working directory.
    Shell(String),
}

impl fmt::Display for HookCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookCommand::Argv(argv) => f.write_str(&argv.join(" ")),
            HookCommand::Shell(script) => f.write_str(script),
        }
    }
}

/// What a hook that fails (an exit code other than 0 and 2, a timeout, a
/// command that cannot start) means for what it guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// An alert, and the call (or input) goes on.
    #[default]
    Continue,
    /// Treated as a block.
    Block,
}

/// `[[hooks]]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HookLayer {
    /// When it runs: `session_start`, `user_prompt`, `pre_tool`, `post_tool`,
    /// `turn_end` or `pre_compact`.
    pub event: HookEvent,
    /// For `pre_tool` and `post_tool`: a glob on the tool name (`Bash`,
    /// `mcp__*`); every tool when absent.
    #[serde(default, rename = "match")]
    pub matcher: Option<String>,
    /// An argv list, or a string run by `sh -c`.
    pub command: HookCommand,
    /// How long it may run, in milliseconds (default 10000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `continue` (default: an alert, and the work goes on) or `block`.
    #[serde(default)]
    pub on_error: Option<OnError>,
    /// Whether it runs in the pod's command sandbox (default true; `false`
    /// only in the user manifest).
    #[serde(default)]
    pub sandbox: Option<bool>,
}

/// A hook as the pod runs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Hook {
    /// When it runs.
    pub event: HookEvent,
    /// The tool-name glob, for tool events.
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<String>,
    /// What it runs (a relative program path already made absolute).
    pub command: HookCommand,
    /// How long it may run, in milliseconds.
    pub timeout_ms: u64,
    /// What a failure means.
    pub on_error: OnError,
    /// Whether it runs in the pod's command sandbox.
    pub sandbox: bool,
}

/// A hook together with the layer that contributed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SourcedHook {
    /// The hook.
    #[serde(flatten)]
    pub hook: Hook,
    /// Where it came from.
    pub origin: Origin,
}

/// What a permission rule decides for the calls it matches.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PermissionDecision {
    /// The call runs (within the scope, as always).
    Allow,
    /// The call waits for a person's answer.
    Ask,
    /// The call is refused with the rule named.
    Deny,
}

impl PermissionDecision {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionDecision::Allow => "allow",
            PermissionDecision::Ask => "ask",
            PermissionDecision::Deny => "deny",
        }
    }
}

/// `[[permissions]]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionLayer {
    /// The tool: a name or a glob (`Bash`, `mcp__*`, `*`).
    pub tool: String,
    /// A glob on a `command` argument (Bash), e.g. `git push*`.
    #[serde(default)]
    pub command: Option<String>,
    /// A glob on a `path` argument (Write, Edit, Read, ...), relative to the
    /// layer's base directory unless absolute or under `~`.
    #[serde(default)]
    pub path: Option<String>,
    /// `allow`, `ask` or `deny`.
    pub decision: PermissionDecision,
}

/// A permission rule as the pod applies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PermissionRule {
    /// The tool-name glob.
    pub tool: String,
    /// The command glob, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The path glob, absolute, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What it decides.
    pub decision: PermissionDecision,
}

impl fmt::Display for PermissionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tool = {:?}", self.tool)?;
        if let Some(c) = &self.command {
            write!(f, ", command = {c:?}")?;
        }
        if let Some(p) = &self.path {
            write!(f, ", path = {p:?}")?;
        }
        write!(f, ", decision = {:?}", self.decision.as_str())
    }
}

/// A permission rule together with the layer that contributed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SourcedPermission {
    /// The rule.
    #[serde(flatten)]
    pub rule: PermissionRule,
    /// Where it came from.
    pub origin: Origin,
}

/// `timeout_ms` when a hook gives none.
pub const DEFAULT_HOOK_TIMEOUT_MS: u64 = 10_000;
/// The longest a hook may be given.
pub const MAX_HOOK_TIMEOUT_MS: u64 = 600_000;

/// Whether `pattern` is a glob the matcher accepts (`*`, `?`, `[...]`,
/// `{a,b}`, `**`); the reason when not.
pub fn check_glob(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("the pattern is empty".into());
    }
    globset::Glob::new(pattern)
        .map(|_| ())
        .map_err(|e| e.kind().to_string())
}

/// A `[[hooks]]` entry resolved; the reason when it is not valid. `user` says
/// whether it comes from the user manifest (only there may `sandbox = false`).
pub(crate) fn resolve_hook(
    layer: HookLayer,
    base: &Path,
    home: Option<&Path>,
    user: bool,
) -> Result<Hook, String> {
    if let Some(m) = &layer.matcher {
        if !layer.event.is_tool_event() {
            return Err(format!(
                "`match` applies to pre_tool and post_tool hooks only, not {}",
                layer.event
            ));
        }
        check_glob(m).map_err(|e| format!("match {m:?}: {e}"))?;
    }
    let command = match layer.command {
        HookCommand::Argv(argv) => {
            let Some(program) = argv.first() else {
                return Err("command is an empty list; give a program and its arguments".into());
            };
            if program.is_empty() {
                return Err("command's program is an empty string".into());
            }
            let mut argv = argv.clone();
            // `./check.sh` or `.pods/hooks/fmt`: the layer's own file, wherever the
            // pod runs; a bare name is looked up in PATH.
            if program.contains('/') {
                argv[0] = resolve_target(Path::new(program), base, home)
                    .map_err(|e| tilde_reason(&e))?
                    .display()
                    .to_string();
            }
            HookCommand::Argv(argv)
        }
        HookCommand::Shell(script) if script.trim().is_empty() => {
            return Err("command is an empty string".into());
        }
        shell => shell,
    };
    let timeout_ms = layer.timeout_ms.unwrap_or(DEFAULT_HOOK_TIMEOUT_MS);
    if timeout_ms == 0 || timeout_ms > MAX_HOOK_TIMEOUT_MS {
        return Err(format!(
            "timeout_ms = {timeout_ms} is out of range: give 1 to {MAX_HOOK_TIMEOUT_MS}"
        ));
    }
    let sandbox = layer.sandbox.unwrap_or(true);
    if !sandbox && !user {
        return Err(
            "sandbox = false is allowed only in the user manifest (a project could otherwise \
             run anything unconfined)"
                .into(),
        );
    }
    Ok(Hook {
        event: layer.event,
        matcher: layer.matcher,
        command,
        timeout_ms,
        on_error: layer.on_error.unwrap_or_default(),
        sandbox,
    })
}

/// A `[[permissions]]` entry resolved against `base` (relative paths) and
/// `home` (`~`); the reason when it is not valid.
pub fn resolve_permission(
    layer: PermissionLayer,
    base: &Path,
    home: Option<&Path>,
) -> Result<PermissionRule, String> {
    check_glob(&layer.tool).map_err(|e| format!("tool {:?}: {e}", layer.tool))?;
    if let Some(c) = &layer.command {
        check_glob(c).map_err(|e| format!("command {c:?}: {e}"))?;
    }
    let path = match layer.path {
        Some(p) => {
            check_glob(&p).map_err(|e| format!("path {p:?}: {e}"))?;
            Some(absolute_glob(&p, base, home)?)
        }
        None => None,
    };
    Ok(PermissionRule {
        tool: layer.tool,
        command: layer.command,
        path,
        decision: layer.decision,
    })
}

/// The `[[hooks]]` and `[[permissions]]` a child pod is given in its overlay
/// (as a TOML table with those two arrays): every one not from the user
/// manifest, which the child reads itself. Paths are absolute already, so
/// they mean the same from the child's directory.
pub fn inherited_checks(hooks: &[SourcedHook], permissions: &[SourcedPermission]) -> toml::Table {
    let passed_on = |origin: &Origin| !matches!(origin, Origin::User { .. } | Origin::BuiltIn);
    let mut out = toml::Table::new();
    let hooks: Vec<toml::Value> = hooks
        .iter()
        .filter(|h| passed_on(&h.origin))
        .map(|h| {
            let h = &h.hook;
            let mut t = toml::Table::new();
            t.insert("event".into(), h.event.as_str().into());
            if let Some(m) = &h.matcher {
                t.insert("match".into(), m.clone().into());
            }
            let command = match &h.command {
                HookCommand::Argv(argv) => {
                    toml::Value::Array(argv.iter().cloned().map(toml::Value::from).collect())
                }
                HookCommand::Shell(script) => script.clone().into(),
            };
            t.insert("command".into(), command);
            let ms = i64::try_from(h.timeout_ms).unwrap_or(i64::MAX);
            t.insert("timeout_ms".into(), toml::Value::Integer(ms));
            let on_error = match h.on_error {
                OnError::Continue => "continue",
                OnError::Block => "block",
            };
            t.insert("on_error".into(), on_error.into());
            toml::Value::Table(t)
        })
        .collect();
    let permissions: Vec<toml::Value> = permissions
        .iter()
        .filter(|p| passed_on(&p.origin))
        .map(|p| {
            let p = &p.rule;
            let mut t = toml::Table::new();
            t.insert("tool".into(), p.tool.clone().into());
            if let Some(c) = &p.command {
                t.insert("command".into(), c.clone().into());
            }
            if let Some(path) = &p.path {
                t.insert("path".into(), path.clone().into());
            }
            t.insert("decision".into(), p.decision.as_str().into());
            toml::Value::Table(t)
        })
        .collect();
    if !hooks.is_empty() {
        out.insert("hooks".into(), toml::Value::Array(hooks));
    }
    if !permissions.is_empty() {
        out.insert("permissions".into(), toml::Value::Array(permissions));
    }
    out
}

/// A path glob made absolute: its literal leading directories (the layer's
/// base directory, `~`, the pattern's own plain components) resolved through
/// symlinks as far as they exist — calls are matched by their real path too —
/// and escaped, so a `[` in a directory name is not a character class.
fn absolute_glob(pattern: &str, base: &Path, home: Option<&Path>) -> Result<String, String> {
    let is_glob = |c: &std::path::Component<'_>| {
        c.as_os_str()
            .to_string_lossy()
            .contains(['*', '?', '[', ']', '{', '}', '\\'])
    };
    let relative = Path::new(pattern);
    // What the pattern says before its first glob component is plain text.
    let literal: PathBuf = relative.components().take_while(|c| !is_glob(c)).collect();
    let rest: Vec<String> = relative
        .components()
        .skip_while(|c| !is_glob(c))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let prefix = resolve_target(&literal, base, home).map_err(|e| tilde_reason(&e))?;
    let prefix = crate::path::canonicalize_lenient(&prefix).unwrap_or(prefix);
    let mut glob = globset::escape(&prefix.display().to_string());
    for part in rest {
        if !glob.ends_with('/') {
            glob.push('/');
        }
        glob.push_str(&part);
    }
    Ok(glob)
}

/// Why a `~` path could not be expanded.
pub(crate) fn tilde_reason(e: &TildeError) -> String {
    match e {
        TildeError::NoHome => "`~` needs HOME, which is not set".into(),
        TildeError::OtherUser => "`~user` paths are not supported; write the path out".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(toml: &str) -> HookLayer {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn hooks_resolve_with_defaults_and_absolute_programs() {
        let h = resolve_hook(
            hook("event = \"pre_tool\"\nmatch = \"Bash\"\ncommand = [\"./check.sh\", \"-q\"]"),
            Path::new("/repo/.pods/.."),
            None,
            false,
        )
        .unwrap();
        assert_eq!(h.timeout_ms, DEFAULT_HOOK_TIMEOUT_MS);
        assert_eq!(h.on_error, OnError::Continue);
        assert!(h.sandbox);
        let HookCommand::Argv(argv) = &h.command else {
            panic!("{:?}", h.command)
        };
        assert_eq!(argv, &["/repo/.pods/../check.sh", "-q"]);
        let h = resolve_hook(
            hook("event = \"turn_end\"\ncommand = \"echo done\""),
            Path::new("/r"),
            None,
            false,
        )
        .unwrap();
        assert_eq!(h.command, HookCommand::Shell("echo done".into()));
    }

    #[test]
    fn bad_hooks_are_refused_with_the_reason() {
        for (toml, user, reason) in [
            (
                "event = \"turn_end\"\nmatch = \"Bash\"\ncommand = \"x\"",
                false,
                "`match` applies to pre_tool",
            ),
            ("event = \"pre_tool\"\ncommand = []", false, "empty list"),
            (
                "event = \"pre_tool\"\ncommand = \"  \"",
                false,
                "empty string",
            ),
            (
                "event = \"pre_tool\"\ncommand = \"x\"\ntimeout_ms = 0",
                false,
                "out of range",
            ),
            (
                "event = \"pre_tool\"\ncommand = \"x\"\nsandbox = false",
                false,
                "only in the user manifest",
            ),
            (
                "event = \"pre_tool\"\nmatch = \"[B\"\ncommand = \"x\"",
                false,
                "match \"[B\"",
            ),
        ] {
            let e = resolve_hook(hook(toml), Path::new("/r"), None, user).unwrap_err();
            assert!(e.contains(reason), "{toml}: {e}");
        }
        assert!(
            resolve_hook(
                hook("event = \"pre_tool\"\ncommand = \"x\"\nsandbox = false"),
                Path::new("/r"),
                None,
                true
            )
            .is_ok()
        );
    }

    /// A layer of the cascade from TOML.
    fn layer(toml: &str, origin: Origin, base: &str) -> crate::cascade::LayerInput {
        crate::cascade::LayerInput {
            layer: crate::layer::ManifestLayer::parse(toml, "test").unwrap(),
            origin,
            base_dir: PathBuf::from(base),
        }
    }

    #[test]
    fn layers_add_up_in_order_without_duplicates_and_children_get_all_but_the_users() {
        let user = Origin::User {
            path: "/home/u/.config/pods/manifest.toml".into(),
        };
        let project = Origin::Project {
            path: "/repo/.pods/manifest.toml".into(),
        };
        let hooks = "[[hooks]]\nevent = \"turn_end\"\ncommand = \"echo a\"\n\n\
                     [[permissions]]\ntool = \"Bash\"\ncommand = \"rm *\"\ndecision = \"deny\"\n";
        let m = crate::cascade::merge_layers(
            vec![
                layer(hooks, user.clone(), "/home/u"),
                layer(
                    &format!("{hooks}\n[[hooks]]\nevent = \"pre_tool\"\ncommand = [\"./chk\"]\n"),
                    project,
                    "/repo",
                ),
            ],
            None,
            None,
        )
        .unwrap();
        // The project's copy of the user's hook and rule is dropped; order is kept.
        let commands: Vec<String> = m.hooks.iter().map(|h| h.hook.command.to_string()).collect();
        assert_eq!(commands, ["echo a", "/repo/chk"]);
        assert_eq!(m.hooks[0].origin, user);
        assert_eq!(m.permissions.len(), 1);
        // A child reads the user manifest itself: only the project's hook is passed on.
        let passed = inherited_checks(&m.hooks, &m.permissions);
        let hooks = passed["hooks"].as_array().unwrap();
        assert_eq!(hooks.len(), 1);
        assert_eq!(
            hooks[0]["command"].as_array().unwrap()[0].as_str(),
            Some("/repo/chk")
        );
        assert!(passed.get("permissions").is_none());
        // What is passed on parses as a layer and resolves to the same hook.
        let text = toml::to_string(&passed).unwrap();
        let again = crate::cascade::merge_layers(
            vec![layer(&text, Origin::Overlay, "/elsewhere")],
            None,
            None,
        )
        .unwrap();
        assert_eq!(again.hooks[0].hook, m.hooks[1].hook);
    }

    #[test]
    fn bad_permission_entries_name_the_entry_and_layer() {
        for (toml, want) in [
            (
                "[[permissions]]\ntool = \"[\"\ndecision = \"deny\"",
                "[[permissions]] entry 1 of the overlay: tool \"[\"",
            ),
            (
                "[[permissions]]\ntool = \"Read\"\npath = \"~bob/x\"\ndecision = \"deny\"",
                "`~user` paths are not supported",
            ),
            (
                "[[permissions]]\ntool = \"Read\"\npath = \"~/x\"\ndecision = \"deny\"",
                "`~` needs HOME",
            ),
        ] {
            let e =
                crate::cascade::merge_layers(vec![layer(toml, Origin::Overlay, "/r")], None, None)
                    .unwrap_err()
                    .to_string();
            assert!(e.contains(want), "{toml}: {e}");
        }
    }

    #[test]
    fn permission_paths_resolve_against_the_layer() {
        let p: PermissionLayer =
            toml::from_str("tool = \"Write\"\npath = \"secrets/**\"\ndecision = \"deny\"").unwrap();
        let r = resolve_permission(p, Path::new("/repo"), None).unwrap();
        assert_eq!(r.path.as_deref(), Some("/repo/secrets/**"));
        // A `[` in the base directory is a character, not a class; the base's
        // symlinks are resolved.
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("app[v2]");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let p2: PermissionLayer =
            toml::from_str("tool = \"Write\"\npath = \"secrets/*.key\"\ndecision = \"deny\"")
                .unwrap();
        let r2 = resolve_permission(p2, &dir.path().join("link"), None).unwrap();
        let real = crate::path::canonicalize_lenient(&real).unwrap();
        let want = format!(
            "{}/secrets/*.key",
            globset::escape(&real.display().to_string())
        );
        assert_eq!(r2.path.as_deref(), Some(want.as_str()));
        let m = globset::Glob::new(&want).unwrap().compile_matcher();
        assert!(m.is_match(real.join("secrets/a.key")));
        assert_eq!(
            r.to_string(),
            "tool = \"Write\", path = \"/repo/secrets/**\", decision = \"deny\""
        );
        let p: PermissionLayer =
            toml::from_str("tool = \"Bash\"\ncommand = \"git {push\"\ndecision = \"ask\"").unwrap();
        assert!(resolve_permission(p, Path::new("/repo"), None).is_err());
        assert!(PermissionDecision::Deny > PermissionDecision::Ask);
        assert!(PermissionDecision::Ask > PermissionDecision::Allow);
    }
}
