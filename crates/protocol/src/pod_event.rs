//! [`PodEvent`]: what a child pod reports to its parent, and the scope grants it carries.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A notification one pod sends another (a child to its parent) as `Method::PodEvent`.
///
/// Wire form: internally tagged with `"kind"`, e.g.
/// `{"kind":"turn_ended","pod_name":"child"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[schemars(transform = crate::schema::open_fallback)]
pub enum PodEvent {
    /// The named pod finished an invocation.
    TurnEnded {
        /// Short name of the reporting pod.
        pod_name: String,
    },
    /// The named pod's invocation failed.
    Errored {
        /// Short name of the reporting pod.
        pod_name: String,
        /// What went wrong, for the parent's model to read.
        message: String,
    },
    /// The named pod shut down.
    ShutDown {
        /// Short name of the reporting pod.
        pod_name: String,
    },
    /// A child handed part of its scope on to a pod of its own.
    ScopeSubDelegated {
        /// Full name of the pod that delegated.
        parent_pod: String,
        /// Full name of the pod that received the scope.
        sub_pod: String,
        /// Socket path of the receiving pod, connectable as recorded.
        sub_socket: String,
        /// The rules that were delegated.
        scope: Vec<ScopeGrant>,
    },
    /// A pod-event kind this version does not know.
    ///
    /// Any other `kind` decodes to this (its other fields are dropped), and it
    /// encodes as `{"kind":"unknown"}`.
    #[serde(other)]
    Unknown,
}

/// Wire form of one scope rule; the protocol does not depend on the manifest crate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct ScopeGrant {
    /// The path the rule covers.
    pub target: String,
    /// What the rule allows on `target`.
    pub permission: GrantPermission,
    /// Whether the rule covers everything beneath `target`.
    ///
    /// Required on the wire: defaulting it would silently widen a grant.
    pub recursive: bool,
}

/// Access a [`ScopeGrant`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantPermission {
    /// Read only.
    Read,
    /// Read and write.
    Write,
}
