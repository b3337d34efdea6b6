//! `[[permissions]]`: which rule decides a tool call. Across all layers the
//! most restrictive matching rule wins (deny > ask > allow); a call no rule
//! matches is allowed (within the scope, which the tools enforce anyway).
//!
//! The command glob is a convenience for the user's policy, not a security
//! boundary (the sandbox is): it is matched against the whole command and
//! against each simple command in it (`cd repo && git push` matches
//! `git push*`), with leading `VAR=value` assignments dropped.

use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobMatcher};
use manifest::{PermissionDecision, SourcedPermission};
use serde_json::Value;

/// One rule, its globs compiled.
#[derive(Debug, Clone)]
struct Compiled {
    rule: SourcedPermission,
    tool: GlobMatcher,
    command: Option<GlobMatcher>,
    path: Option<GlobMatcher>,
}

/// The permission rules of one pod.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Compiled>,
}

/// A rule that matched a call, and what it decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruling {
    /// The decision.
    pub decision: PermissionDecision,
    /// The rule that made it (the first of the most restrictive ones).
    pub rule: SourcedPermission,
}

impl Ruling {
    /// The rule as the model and the user read it: its keys and its layer.
    pub fn describe(&self) -> String {
        format!("[[permissions]] {} ({})", self.rule.rule, self.rule.origin)
    }
}

/// A glob as a matcher; patterns were checked when the manifest was loaded.
fn matcher(pattern: &str) -> Result<GlobMatcher, String> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("{pattern:?}: {}", e.kind()))
}

impl Rules {
    /// Compiles the manifest's rules (fails only on a glob the manifest check
    /// would have refused).
    pub fn new(rules: &[SourcedPermission]) -> Result<Self, String> {
        let mut compiled = Vec::with_capacity(rules.len());
        for r in rules {
            compiled.push(Compiled {
                tool: matcher(&r.rule.tool)?,
                command: r.rule.command.as_deref().map(matcher).transpose()?,
                path: r.rule.path.as_deref().map(matcher).transpose()?,
                rule: r.clone(),
            });
        }
        Ok(Rules { rules: compiled })
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The most restrictive rule matching a call of `tool` with `arguments`
    /// (a relative `path` argument is taken from `cwd`); `None` when no rule
    /// matches.
    pub fn decide(&self, tool: &str, arguments: &Value, cwd: &Path) -> Option<Ruling> {
        let command = arguments.get("command").and_then(Value::as_str);
        let path = arguments
            .get("path")
            .and_then(Value::as_str)
            .map(|p| normalize(&cwd.join(p)));
        let mut best: Option<&Compiled> = None;
        for c in &self.rules {
            if !c.tool.is_match(tool) {
                continue;
            }
            if let Some(m) = &c.command {
                let Some(command) = command else { continue };
                if !command_matches(m, command) {
                    continue;
                }
            }
            if let Some(m) = &c.path {
                let Some(path) = &path else { continue };
                let canonical = manifest::canonicalize_lenient(path).ok();
                if !m.is_match(path) && !canonical.is_some_and(|p| m.is_match(p)) {
                    continue;
                }
            }
            if best.is_none_or(|b| c.rule.rule.decision > b.rule.rule.decision) {
                best = Some(c);
            }
        }
        best.map(|c| Ruling {
            decision: c.rule.rule.decision,
            rule: c.rule.clone(),
        })
    }
}

/// `path` with `.` and `..` resolved lexically (a `..` that would climb above
/// the root stays at the root), so `secrets/../secrets/key` is `secrets/key`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether the glob matches the whole command or one of its simple commands.
fn command_matches(m: &GlobMatcher, command: &str) -> bool {
    let whole = command.trim();
    if m.is_match(whole) {
        return true;
    }
    simple_commands(whole).iter().any(|c| m.is_match(c))
}

/// Words that run the command after them (`sudo git push`, `then git push`).
const PREFIXES: [&str; 16] = [
    "then", "do", "else", "elif", "if", "while", "until", "!", "time", "exec", "command",
    "builtin", "env", "nohup", "sudo", "xargs",
];

/// The simple commands of a shell command line, roughly: line continuations
/// joined; split at `;`, `&`, `|`, newlines, parentheses, braces and
/// backticks; `$(` openers, leading `VAR=value` words, words that run the
/// rest (`sudo`, `then`, `timeout 60`, ...) and their options dropped; white
/// space collapsed.
fn simple_commands(command: &str) -> Vec<String> {
    let joined = command.replace("\\\n", " ");
    joined
        .split([';', '&', '|', '\n', '(', ')', '`', '{', '}'])
        .filter_map(|part| {
            let part = part.trim().trim_start_matches('$');
            let mut words: Vec<&str> = part.split_whitespace().collect();
            while let Some(first) = words.first().copied() {
                let is_assignment = first.split_once('=').is_some_and(|(name, _)| {
                    !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')
                });
                if is_assignment || PREFIXES.contains(&first) || first.starts_with('-') {
                    words.remove(0);
                } else if first == "timeout" {
                    // `timeout 60 git push`: its duration goes with it.
                    words.drain(..words.len().min(2));
                } else {
                    break;
                }
            }
            (!words.is_empty()).then(|| words.join(" "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use manifest::{Origin, PermissionRule};
    use serde_json::json;

    fn rule(
        tool: &str,
        command: Option<&str>,
        path: Option<&str>,
        d: PermissionDecision,
    ) -> SourcedPermission {
        SourcedPermission {
            rule: PermissionRule {
                tool: tool.into(),
                command: command.map(Into::into),
                path: path.map(Into::into),
                decision: d,
            },
            origin: Origin::Overlay,
        }
    }

    #[test]
    fn the_most_restrictive_matching_rule_wins() {
        use PermissionDecision::*;
        let rules = Rules::new(&[
            rule("*", None, None, Allow),
            rule("Bash", Some("git push*"), None, Deny),
            rule("Bash", Some("git *"), None, Allow),
        ])
        .unwrap();
        let cwd = Path::new("/repo");
        let decide = |tool: &str, args: Value| rules.decide(tool, &args, cwd).map(|r| r.decision);
        assert_eq!(
            decide("Bash", json!({"command": "git push origin main"})),
            Some(Deny)
        );
        assert_eq!(
            decide("Bash", json!({"command": "cd sub && git push"})),
            Some(Deny)
        );
        assert_eq!(
            decide("Bash", json!({"command": "X=1 git push -f"})),
            Some(Deny)
        );
        assert_eq!(
            decide("Bash", json!({"command": "echo $(git push)"})),
            Some(Deny)
        );
        for wrapped in [
            "if true; then git push; fi",
            "for r in a b; do git push $r; done",
            "timeout 60 git push",
            "env X=1 git push",
            "sudo -E git push",
            "command git push",
            "git  push",
            "git \
push",
        ] {
            assert_eq!(
                decide("Bash", json!({"command": wrapped})),
                Some(Deny),
                "{wrapped}"
            );
        }
        assert_eq!(
            decide("Bash", json!({"command": "git status"})),
            Some(Allow)
        );
        assert_eq!(decide("Read", json!({"path": "a"})), Some(Allow));
        let r = rules
            .decide("Bash", &json!({"command": "git push"}), cwd)
            .unwrap();
        assert!(
            r.describe()
                .contains("command = \"git push*\", decision = \"deny\""),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn path_rules_match_the_resolved_path_argument_only() {
        use PermissionDecision::*;
        let rules =
            Rules::new(&[rule("{Write,Edit}", None, Some("/repo/secrets/**"), Deny)]).unwrap();
        let cwd = Path::new("/repo");
        let decide = |tool: &str, args: Value| rules.decide(tool, &args, cwd).map(|r| r.decision);
        assert_eq!(decide("Write", json!({"path": "secrets/key"})), Some(Deny));
        assert_eq!(
            decide("Edit", json!({"path": "/repo/secrets/a/b"})),
            Some(Deny)
        );
        assert_eq!(
            decide("Write", json!({"path": "src/../secrets/key"})),
            Some(Deny)
        );
        assert_eq!(decide("Write", json!({"path": "src/key"})), None);
        assert_eq!(decide("Read", json!({"path": "secrets/key"})), None);
        // A rule with a path does not match a call without one.
        assert_eq!(decide("Write", json!({"content": "x"})), None);
    }

    #[test]
    fn no_rules_decide_nothing() {
        let rules = Rules::new(&[]).unwrap();
        assert!(rules.is_empty());
        assert_eq!(
            rules.decide("Bash", &json!({"command": "rm -rf /"}), Path::new("/")),
            None
        );
    }
}
