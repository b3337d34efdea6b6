//! The resolved manifest: every value filled in, scope targets absolute, and where each
//! value came from. Reading files and merging layers is [`crate::cascade`]'s job; the raw,
//! all-optional form of one file is [`crate::layer`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::hooks::{SourcedHook, SourcedPermission};
use crate::rule::ScopeRule;

/// The wire scheme a model speaks; it decides the request path, body and default endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Anthropic Messages API: `{base}/messages`.
    Anthropic,
    /// OpenAI Chat Completions (also llama.cpp, Ollama, vLLM): `{base}/chat/completions`.
    OpenaiChat,
    /// OpenAI Responses API: `{base}/responses`.
    OpenaiResponses,
    /// Google Gemini: `{base}/models/{model}:streamGenerateContent?alt=sse`.
    Gemini,
}

impl Scheme {
    /// The manifest spelling, e.g. `openai_chat`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Anthropic => "anthropic",
            Scheme::OpenaiChat => "openai_chat",
            Scheme::OpenaiResponses => "openai_responses",
            Scheme::Gemini => "gemini",
        }
    }

    /// The base URL used when no layer sets `model.base_url` (everything before the
    /// scheme's own path).
    pub fn default_base_url(self) -> &'static str {
        match self {
            Scheme::Anthropic => "https://api.anthropic.com/v1",
            Scheme::OpenaiChat | Scheme::OpenaiResponses => "https://api.openai.com/v1",
            Scheme::Gemini => "https://generativelanguage.googleapis.com/v1beta",
        }
    }

    /// The environment variable holding the API key when no layer sets `model.api_key_env`.
    pub fn default_api_key_env(self) -> &'static str {
        match self {
            Scheme::Anthropic => "ANTHROPIC_API_KEY",
            Scheme::OpenaiChat | Scheme::OpenaiResponses => "OPENAI_API_KEY",
            Scheme::Gemini => "GEMINI_API_KEY",
        }
    }

    /// The model used when no layer sets `model.model`; a starting point, not a promise
    /// that the provider still serves it.
    pub fn default_model(self) -> &'static str {
        match self {
            Scheme::Anthropic => "claude-sonnet-4-5",
            Scheme::OpenaiChat | Scheme::OpenaiResponses => "gpt-5",
            Scheme::Gemini => "gemini-2.5-pro",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether commands run in the sandbox (rule 5 of the architecture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// The strongest level the host supports (namespaces + Landlock, else Landlock alone).
    #[default]
    Auto,
    /// No command sandbox; the file tools still check the scope.
    Off,
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SandboxMode::Auto => "auto",
            SandboxMode::Off => "off",
        })
    }
}

/// A pod's short name: `[a-z0-9][a-z0-9_-]{0,31}`.
///
/// Validated on construction (and so while parsing, where a bad name is reported with its
/// line and column), so holders never re-check.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(extend("pattern" = "^[a-z0-9][a-z0-9_-]{0,31}$"))]
pub struct PodName(String);

/// A string that is not a valid [`PodName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid pod name {0:?}: use 1 to 32 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit"
)]
pub struct InvalidPodName(pub String);

impl PodName {
    /// Checks `name` against `[a-z0-9][a-z0-9_-]{0,31}`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidPodName> {
        let name = name.into();
        let bytes = name.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
        if first_ok && rest_ok && bytes.len() <= 32 {
            Ok(PodName(name))
        } else {
            Err(InvalidPodName(name))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PodName {
    type Error = InvalidPodName;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        PodName::new(name)
    }
}

impl From<PodName> for String {
    fn from(name: PodName) -> String {
        name.0
    }
}

impl fmt::Display for PodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which layer of the cascade a value came from, for `pod doctor` and `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "layer", rename_all = "snake_case")]
pub enum Origin {
    /// Compiled into pods.
    BuiltIn,
    /// The user manifest at `path`.
    User {
        /// The file the value was read from.
        path: PathBuf,
    },
    /// The project manifest at `path`.
    Project {
        /// The file the value was read from.
        path: PathBuf,
    },
    /// A manifest file named explicitly (`--manifest FILE`).
    File {
        /// The file the value was read from.
        path: PathBuf,
    },
    /// The programmatic overlay (e.g. `--overlay`).
    Overlay,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built-in default"),
            Origin::User { path } => write!(f, "user manifest {}", path.display()),
            Origin::Project { path } => write!(f, "project manifest {}", path.display()),
            Origin::File { path } => write!(f, "manifest file {}", path.display()),
            Origin::Overlay => f.write_str("overlay"),
        }
    }
}

/// A scope rule together with the layer that contributed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SourcedRule {
    /// The rule, its target absolute (but not yet canonical).
    #[serde(flatten)]
    pub rule: ScopeRule,
    /// Where it came from.
    pub origin: Origin,
}

/// `[pod]`: the pod itself.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct PodConfig {
    /// The pod's short name, if a layer gave one (the CLI may give it instead).
    pub name: Option<PodName>,
}

/// `[model]`: which model to call and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    /// The wire scheme.
    pub scheme: Scheme,
    /// The provider's model name.
    pub model: String,
    /// Everything before the scheme's own path, without a trailing `/`.
    pub base_url: String,
    /// The environment variable holding the API key.
    pub api_key_env: String,
    /// The model's context window in tokens.
    pub context_window: u64,
    /// The most tokens one response may produce.
    pub max_tokens: u32,
    /// Sampling temperature; `None` leaves the provider's default.
    pub temperature: Option<f64>,
    /// Sampling seed; `None` leaves the provider's default.
    pub seed: Option<i64>,
    /// Bound in seconds on waiting for the provider (connect, first byte, each chunk).
    pub timeout_s: u64,
    /// Price of a million input tokens, when the manifest gives one.
    pub price_in: Option<f64>,
    /// Price of a million output tokens, when the manifest gives one.
    pub price_out: Option<f64>,
    /// Price of a million cached input tokens (`None`: `price_in`).
    pub price_cache_read: Option<f64>,
    /// Extra fields merged into every request body as they are.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `[worker]`: the agent loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerConfig {
    /// Instructions added to the system prompt (empty: none).
    pub instruction: String,
    /// The most LLM calls one invocation may make before it ends as `limit_reached`.
    pub max_llm_calls: u32,
    /// The most bytes of one tool's output passed to the model.
    pub tool_output_limit: u64,
}

/// `[context]`: how the pod keeps its requests inside the model's window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextConfig {
    /// Whether the pod manages its context by itself (pruning).
    pub auto: bool,
    /// Above this fraction of the window, old tool outputs are pruned from requests.
    pub prune_at: f64,
    /// How many of the latest LLM calls keep their tool outputs whole.
    pub keep_calls: u32,
    /// Above this fraction of the window, the pruned history is compacted.
    pub compact_at: f64,
    /// The most tokens a compaction's summary may take.
    pub summary_tokens: u32,
}

/// `[approvals]`: how long an `ask` waits for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalsConfig {
    /// Seconds before an unanswered request is denied.
    pub timeout_s: u64,
}

/// `[sandbox]`: how commands are confined.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SandboxConfig {
    /// `auto` or `off`.
    pub mode: SandboxMode,
    /// Whether commands may use the network.
    pub network: bool,
    /// Variables kept from commands besides provider keys (names, or `PREFIX*`), every
    /// layer's, in order.
    pub env_remove: Vec<String>,
}

/// `[scope]`: the rules of every layer, unioned, with absolute targets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ScopeConfig {
    /// `[[scope.allow]]`: what the pod may read or write.
    pub allow: Vec<SourcedRule>,
    /// `[[scope.deny]]`: carve-outs from `allow` (and from `shared`).
    pub deny: Vec<SourcedRule>,
    /// `[[scope.shared]]`: paths every pod may write without claiming them (package caches).
    pub shared: Vec<SourcedRule>,
}

impl ScopeConfig {
    /// The allow rules without their origins.
    pub fn allow_rules(&self) -> impl Iterator<Item = &ScopeRule> {
        self.allow.iter().map(|s| &s.rule)
    }

    /// The deny rules without their origins.
    pub fn deny_rules(&self) -> impl Iterator<Item = &ScopeRule> {
        self.deny.iter().map(|s| &s.rule)
    }

    /// The shared rules without their origins (all `write`).
    pub(crate) fn shared_rules(&self) -> impl Iterator<Item = &ScopeRule> {
        self.shared.iter().map(|s| &s.rule)
    }
}

/// A manifest after the cascade: what a pod runs with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// `[pod]`.
    pub pod: PodConfig,
    /// `[model]`.
    pub model: ModelConfig,
    /// `[worker]`.
    pub worker: WorkerConfig,
    /// `[sandbox]`.
    pub sandbox: SandboxConfig,
    /// `[scope]`.
    pub scope: ScopeConfig,
    /// `[context]`.
    pub context: ContextConfig,
    /// `[approvals]`.
    pub approvals: ApprovalsConfig,
    /// `[[hooks]]` of every layer, lowest first (exact duplicates dropped).
    pub hooks: Vec<SourcedHook>,
    /// `[[permissions]]` of every layer, lowest first (exact duplicates dropped).
    pub permissions: Vec<SourcedPermission>,
    /// `[[mcp]]` servers, by name (a higher layer's replaces a lower one's).
    pub mcp: Vec<crate::mcp::SourcedMcp>,
    /// The directory holding `.pods/`, if one was found above the working directory.
    pub(crate) project_root: Option<PathBuf>,
    /// The layers that were read, lowest first (built-in defaults always first).
    pub layers: Vec<Origin>,
    /// Where each scalar came from, keyed by dotted name (`model.scheme`,
    /// `model.extra.<key>`); scope rules carry their origin themselves.
    pub provenance: BTreeMap<String, Origin>,
}
