//! One manifest file as written: every key optional, unknown keys refused, and parse
//! errors located to a line and column. Merging layers is [`crate::cascade`]'s job.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::ManifestError;
use crate::hooks::{HookLayer, PermissionLayer};
use crate::manifest::{PodName, SandboxMode, Scheme};
use crate::rule::ScopeRule;

/// One layer of the cascade (a `manifest.toml` or an overlay): says only what it sets.
///
/// Its JSON Schema ([`schemars::schema_for!`]) is the schema of a manifest file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ManifestLayer {
    /// `[pod]`.
    pub pod: PodLayer,
    /// `[model]`.
    pub model: ModelLayer,
    /// `[worker]`.
    pub worker: WorkerLayer,
    /// `[sandbox]`.
    pub sandbox: SandboxLayer,
    /// `[scope]`.
    pub scope: ScopeLayer,
    /// `[context]`.
    pub context: ContextLayer,
    /// `[approvals]`.
    pub approvals: ApprovalsLayer,
    /// `[[hooks]]`: commands run around the pod's work (added to lower layers').
    pub hooks: Vec<HookLayer>,
    /// `[[permissions]]`: allow/ask/deny rules on tool calls (added to lower layers').
    pub permissions: Vec<PermissionLayer>,
    /// `[[mcp]]`: MCP servers whose tools the pod offers (a name given by a
    /// lower layer is replaced).
    pub mcp: Vec<crate::mcp::McpLayer>,
}

/// `[pod]` as written.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PodLayer {
    /// The pod's short name.
    pub name: Option<PodName>,
}

/// `[model]` as written.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ModelLayer {
    /// `anthropic`, `openai_chat`, `openai_responses` or `gemini`.
    pub scheme: Option<Scheme>,
    /// The provider's model name.
    pub model: Option<String>,
    /// Everything before the scheme's own path, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: Option<String>,
    /// The environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// The context window in tokens.
    pub context_window: Option<u64>,
    /// The most tokens one response may produce.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Sampling seed.
    pub seed: Option<i64>,
    /// Bound in seconds on waiting for the provider.
    pub timeout_s: Option<u64>,
    /// Price of a million input tokens (for the cost clients show).
    pub price_in: Option<f64>,
    /// Price of a million output tokens.
    pub price_out: Option<f64>,
    /// Price of a million input tokens read from the provider's cache (default: `price_in`).
    pub price_cache_read: Option<f64>,
    /// Fields merged into every request body (tables merge key-wise across layers).
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub extra: Option<toml::Table>,
}

/// `[worker]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerLayer {
    /// Instructions added to the system prompt.
    pub instruction: Option<String>,
    /// The most LLM calls per invocation.
    pub max_llm_calls: Option<u32>,
    /// The most bytes of one tool's output passed to the model.
    pub tool_output_limit: Option<u64>,
}

/// `[context]` as written: how the pod keeps its requests inside the window.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ContextLayer {
    /// Whether the pod manages its context by itself.
    pub auto: Option<bool>,
    /// The fraction of the context window above which old tool outputs are pruned from requests.
    pub prune_at: Option<f64>,
    /// How many of the latest LLM calls keep their tool outputs whole.
    pub keep_calls: Option<u32>,
    /// The fraction of the window above which the pruned history is compacted into a summary.
    pub compact_at: Option<f64>,
    /// The most tokens a compaction's summary may take.
    pub summary_tokens: Option<u32>,
}

/// `[approvals]` as written: how long a tool call an `ask` rule paused
/// waits for a person's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsLayer {
    /// Seconds before an unanswered request is denied (default 600).
    pub timeout_s: Option<u64>,
}

/// `[sandbox]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxLayer {
    /// `auto` or `off`.
    pub mode: Option<SandboxMode>,
    /// Whether commands may use the network (the pod's own LLM requests always may).
    pub network: Option<bool>,
    /// Environment variables kept from commands, besides provider keys: names, or
    /// prefixes ending in `*` (`AWS_*`). Added to those of lower layers.
    pub env_remove: Vec<String>,
}

/// `[scope]` as written: lists that add to those of lower layers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScopeLayer {
    /// `[[scope.allow]]`.
    pub allow: Vec<ScopeRule>,
    /// `[[scope.deny]]`.
    pub deny: Vec<ScopeRule>,
    /// `[[scope.shared]]`.
    pub shared: Vec<SharedPath>,
}

/// `[[scope.shared]]`: a path every pod may write without claiming it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SharedPath {
    /// The path (absolute, `~/...`, or relative to the layer's base directory).
    pub target: PathBuf,
    /// Whether the whole subtree is shared (default) or only direct children.
    #[serde(default = "default_true")]
    pub recursive: bool,
}

/// Shared paths are subtrees unless they say otherwise.
fn default_true() -> bool {
    true
}

impl ManifestLayer {
    /// Parses one layer; `file` names it in errors (a path, or `overlay`).
    pub fn parse(text: &str, file: &str) -> Result<Self, ManifestError> {
        toml::from_str(text).map_err(|err| {
            let message = err.message().trim_end().to_owned();
            match err.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    ManifestError::Parse {
                        file: file.to_owned(),
                        line,
                        column,
                        message,
                    }
                }
                None => ManifestError::ParseUnlocated {
                    file: file.to_owned(),
                    message,
                },
            }
        })
    }
}

impl ManifestLayer {
    /// Parses an overlay given on a command line, where a one-line form reads
    /// naturally: `[model] max_tokens = 4096` (a table header and a key on one line,
    /// which TOML does not allow) is read as the header, then the key. Text that is
    /// valid TOML is read as is; when neither form parses, the error is the original's.
    pub fn parse_overlay(text: &str) -> Result<Self, ManifestError> {
        let err = match ManifestLayer::parse(text, "overlay") {
            Ok(layer) => return Ok(layer),
            Err(err) => err,
        };
        match split_inline_headers(text) {
            Some(split) => ManifestLayer::parse(&split, "overlay").map_err(|_| err),
            None => Err(err),
        }
    }
}

/// `text` with a line break after every table header that has more on its line, or
/// `None` if there is none.
fn split_inline_headers(text: &str) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.split_inclusive('\n') {
        let body = line.trim_start();
        let close = if body.starts_with("[[") {
            body.find("]]").map(|i| i + 2)
        } else if body.starts_with('[') {
            body.find(']').map(|i| i + 1)
        } else {
            None
        };
        let Some(close) = close else {
            out.push_str(line);
            continue;
        };
        let (header, rest) = body.split_at(close);
        let rest = rest.trim_start();
        if rest.is_empty() || rest.starts_with('#') {
            out.push_str(line);
            continue;
        }
        changed = true;
        out.push_str(header);
        out.push('\n');
        out.push_str(rest);
    }
    changed.then_some(out)
}

/// The 1-based line and character column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    // A span inside a multi-byte character still names that character.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        ManifestLayer::parse(text, "/repo/.pods/manifest.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_overlay_may_put_a_table_header_and_a_key_on_one_line() {
        let layer = ManifestLayer::parse_overlay("[model] max_tokens = 4096").unwrap();
        assert_eq!(layer.model.max_tokens, Some(4096));
        let layer = ManifestLayer::parse_overlay("model.max_tokens = 4096").unwrap();
        assert_eq!(layer.model.max_tokens, Some(4096));
        let layer =
            ManifestLayer::parse_overlay("[model] max_tokens = 10\n[worker] max_llm_calls = 3")
                .unwrap();
        assert_eq!(layer.model.max_tokens, Some(10));
        assert_eq!(layer.worker.max_llm_calls, Some(3));
        let layer = ManifestLayer::parse_overlay(
            "[[scope.allow]] target = \"/tmp\"\npermission = \"read\"",
        )
        .unwrap();
        assert_eq!(layer.scope.allow.len(), 1);
        // Valid TOML whose lines start with `[` inside an array is read as is.
        let layer = ManifestLayer::parse_overlay("[model]\nextra = { a = [\n[1, 2],\n] }").unwrap();
        assert!(layer.model.extra.is_some());
        // A mistake is reported where the user wrote it.
        let err = ManifestLayer::parse_overlay("[model] max_tokns = 1")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("overlay:1:"), "{err}");
    }

    #[test]
    fn empty_text_is_an_empty_layer() {
        assert_eq!(
            ManifestLayer::parse("", "x").unwrap(),
            ManifestLayer::default()
        );
    }

    #[test]
    fn full_layer_parses() {
        let text = r#"
[pod]
name = "api-1"

[model]
scheme = "openai_chat"
model = "qwen"
base_url = "http://127.0.0.1:8080/v1"
api_key_env = "LOCAL_KEY"
context_window = 32768
max_tokens = 4096
temperature = 0.2
seed = -7
timeout_s = 900
extra = { top_k = 40, nested = { a = 1 } }

[worker]
instruction = "be brief"
max_llm_calls = 10
tool_output_limit = 1000

[sandbox]
mode = "off"

[[scope.allow]]
target = "."
permission = "write"

[[scope.allow]]
target = "/usr"
permission = "read"
recursive = false

[[scope.deny]]
target = "secrets"
permission = "read"

[[scope.shared]]
target = "~/.cache/pip"
"#;
        let layer = ManifestLayer::parse(text, "x").unwrap();
        assert_eq!(layer.pod.name, Some(PodName::new("api-1").unwrap()));
        assert_eq!(layer.model.scheme, Some(Scheme::OpenaiChat));
        assert_eq!(layer.model.seed, Some(-7));
        assert_eq!(layer.model.max_tokens, Some(4096));
        assert_eq!(
            layer.model.extra.as_ref().unwrap()["top_k"],
            toml::Value::Integer(40)
        );
        assert_eq!(layer.worker.max_llm_calls, Some(10));
        assert_eq!(layer.sandbox.mode, Some(SandboxMode::Off));
        assert_eq!(
            layer.scope.allow,
            vec![
                ScopeRule::recursive(".", crate::Permission::Write),
                ScopeRule::non_recursive("/usr", crate::Permission::Read),
            ]
        );
        assert_eq!(
            layer.scope.deny,
            vec![ScopeRule::recursive("secrets", crate::Permission::Read)]
        );
        assert_eq!(
            layer.scope.shared,
            vec![SharedPath {
                target: "~/.cache/pip".into(),
                recursive: true
            }]
        );
    }

    #[test]
    fn unknown_top_level_key_names_file_line_and_column() {
        let text = "[pod]\nname = \"a\"\n\n[modle]\nscheme = \"gemini\"\n";
        let msg = parse_err(text);
        assert!(
            msg.starts_with("/repo/.pods/manifest.toml:4:"),
            "got: {msg}"
        );
        assert!(msg.contains("unknown field `modle`"), "got: {msg}");
        assert!(
            msg.contains("`model`"),
            "should list the expected keys: {msg}"
        );
    }

    #[test]
    fn unknown_nested_key_names_its_line() {
        let text = "[model]\nscheme = \"gemini\"\n\n\n\n\nmodle = \"x\"\n";
        let msg = parse_err(text);
        assert!(
            msg.starts_with("/repo/.pods/manifest.toml:7:1: unknown field `modle`"),
            "got: {msg}"
        );
    }

    #[test]
    fn unknown_key_in_a_scope_rule_names_its_line() {
        let text = "[[scope.allow]]\ntarget = \"/x\"\npermission = \"write\"\nrecursiv = false\n";
        let msg = parse_err(text);
        assert!(
            msg.starts_with("/repo/.pods/manifest.toml:4:1:"),
            "got: {msg}"
        );
        assert!(msg.contains("recursiv"), "got: {msg}");
    }

    #[test]
    fn bad_toml_names_its_line_and_column() {
        let text = "[model]\nscheme = \"anthropic\"\nmodel = \n";
        let msg = parse_err(text);
        assert!(
            msg.starts_with("/repo/.pods/manifest.toml:3:"),
            "got: {msg}"
        );
    }

    #[test]
    fn wrong_enum_value_names_its_line() {
        let text = "\n[model]\nscheme = \"openai\"\n";
        let msg = parse_err(text);
        assert!(
            msg.starts_with("/repo/.pods/manifest.toml:3:10:"),
            "got: {msg}"
        );
        assert!(
            msg.contains("openai_chat"),
            "should list the schemes: {msg}"
        );
    }

    #[test]
    fn bad_pod_name_is_refused_with_its_line() {
        let text = "[pod]\nname = \"Bad Name\"\n";
        let msg = parse_err(text);
        assert!(
            msg.starts_with("/repo/.pods/manifest.toml:2:8:"),
            "got: {msg}"
        );
        assert!(msg.contains("invalid pod name \"Bad Name\""), "got: {msg}");
    }

    #[test]
    fn pod_names_follow_the_pattern() {
        for ok in ["a", "0", "a-b_c", "x".repeat(32).as_str()] {
            assert!(PodName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "A",
            "a.b",
            "a b",
            "x".repeat(33).as_str(),
            "é",
        ] {
            assert!(PodName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé d", 7), (2, 4));
        assert_eq!(line_column("x", 99), (1, 2));
    }
}
