//! `<pod runtime dir>/status.json`: what a running pod says of itself (name,
//! pid, status, model, scope, usage). The pod rewrites it; `pod ls`, `pod
//! doctor` and the UI read it instead of asking each pod over its socket.

use std::path::Path;

use llm_types::Usage;
use protocol::PodStatus;
use serde::{Deserialize, Serialize};

/// The status file's name in a pod's runtime dir.
pub(crate) const STATUS_FILE: &str = "status.json";

/// What the pod writes to `status.json` for `pod ls` and `pod doctor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// Full pod name.
    pub name: String,
    /// This process's instance id.
    pub instance_id: String,
    /// Process id.
    pub pid: u32,
    /// What the pod is doing.
    pub status: PodStatus,
    /// Provider scheme.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Scope summary.
    pub scope: String,
    /// Instance id of the parent pod, if any.
    pub parent: Option<String>,
    /// Socket path.
    pub socket: String,
    /// When the pod started (Unix milliseconds).
    pub started_ms: u64,
    /// Token totals of this process's life.
    pub usage: Usage,
    /// Its write rules (for `pod doctor --repair`).
    #[serde(default)]
    pub write_rules: Vec<manifest::ScopeRule>,
    /// How its last invocation ended (absent before the first one ends, and in
    /// files written by older versions): lets `pod ls` and the UI show a failed pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<protocol::TurnResult>,
    /// Tokens the model's context takes now (the last call's input and output).
    #[serde(default)]
    pub context_tokens: u64,
    /// The model's context window in tokens (0 in files of older versions).
    #[serde(default)]
    pub context_window: u64,
    /// Token prices from the pod's manifest, when it gives them (clients show
    /// the cost); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<Prices>,
}

/// Prices of a million tokens, from `[model] price_in`, `price_out` and
/// `price_cache_read`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    /// Input tokens (uncached, and written to the cache).
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Input tokens read from the cache.
    pub cache_read: f64,
}

impl Prices {
    /// The prices `model` gives, if it gives an input and an output price.
    pub fn of(model: &manifest::ModelConfig) -> Option<Prices> {
        let (input, output) = (model.price_in?, model.price_out?);
        Some(Prices {
            input,
            output,
            cache_read: model.price_cache_read.unwrap_or(input),
        })
    }

    /// The cost of `usage` at these prices.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let m = 1e6;
        (usage.input_tokens + usage.cache_write_tokens) as f64 * self.input / m
            + usage.output_tokens as f64 * self.output / m
            + usage.cache_read_tokens as f64 * self.cache_read / m
    }
}

impl StatusRecord {
    /// The record in pod runtime dir `dir`, if there is a readable one (a pod
    /// that has not written it yet, or a torn read, gives `None`).
    pub fn read(dir: &Path) -> Option<StatusRecord> {
        let bytes = std::fs::read(dir.join(STATUS_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
