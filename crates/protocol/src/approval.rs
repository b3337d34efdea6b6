//! Approvals: a tool call an `ask` permission rule paused, waiting for a
//! person's answer, and how requests and answers travel up and down a tree
//! of pods.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The pod part of an approval request's id (`root.child/3` → `root.child`).
pub fn approval_owner(id: &str) -> &str {
    id.rsplit_once('/').map_or(id, |(pod, _)| pod)
}

/// A paused tool call waiting for a person's `approve` or `deny`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRequest {
    /// Unique across the tree: `<full name of the asking pod>/<n>`.
    pub id: String,
    /// Full name of the pod whose call it is.
    pub pod: String,
    /// The tool called.
    pub tool: String,
    /// The call's input (as the `pre_tool` hooks left it).
    pub input: serde_json::Value,
    /// The `ask` rule that matched, with the layer it came from.
    pub rule: String,
    /// When it was asked (Unix milliseconds).
    pub requested_ms: u64,
    /// When it is denied if nobody answers (Unix milliseconds).
    pub expires_ms: u64,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalResolved {
    /// The request's id.
    pub id: String,
    /// Whether the call runs.
    pub approved: bool,
    /// Who decided: `client` (an `approve`/`deny`), `timeout`, `remembered`
    /// or `pod` (the call was cancelled or the pod could not keep it).
    pub by: String,
    /// Why it was denied, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The approval also allows later calls matching the same rule, for the
    /// rest of the asking pod's session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remember: bool,
}

/// What a child pod tells its parent about requests in its subtree
/// (`approval_update`), so a person attached higher up sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApprovalUpdate {
    /// A request nobody watching below this pod can answer.
    Requested {
        /// The request.
        request: ApprovalRequest,
    },
    /// A request ended (answered, timed out, cancelled).
    Resolved {
        /// How.
        resolved: ApprovalResolved,
    },
}
