//! [`Method`]: what a client asks of a pod.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::adjacent::{self, AdjacentlyTagged};
use crate::{PodEvent, Segment};

/// A request from a client to a pod, one per line.
///
/// Wire form: `{"method":"<name>","params":{...}}`; unit methods carry no
/// `params` (and ignore any they are given). An unknown name decodes to
/// [`Method::Unknown`] whatever its params; a known name with malformed params
/// is an error whose message names the method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Method {
    /// Start an invocation with this user input; refused with `already_running` while one runs.
    Run {
        /// The user message, in the pieces the client composed it from.
        input: Vec<Segment>,
    },
    /// Deliver a notification to the model: with the next LLM request, or in a new invocation when idle.
    Notify {
        /// The notification text.
        message: String,
    },
    /// A report from another pod (a child); params are the [`PodEvent`] itself.
    PodEvent(PodEvent),
    /// Continue a paused invocation.
    Resume,
    /// Stop the running invocation.
    Cancel,
    /// Pause the running invocation at the next safe point.
    Pause,
    /// Shut the pod down.
    Shutdown,
    /// Compact the context now: when idle as an invocation of kind `compact`,
    /// while running at the next step boundary (as `pause` stops).
    Compact,
    /// A method this version does not know; a server answers it with `invalid_request`.
    ///
    /// Encodes as `{"method":"<name>"}`, without params.
    #[serde(untagged)]
    Unknown {
        /// The method name as received.
        method: String,
    },
}

impl Method {
    /// The method's wire name (for an unknown method, the name it arrived with).
    pub fn name(&self) -> &str {
        match self {
            Method::Run { .. } => "run",
            Method::Notify { .. } => "notify",
            Method::PodEvent(_) => "pod_event",
            Method::Resume => "resume",
            Method::Cancel => "cancel",
            Method::Pause => "pause",
            Method::Shutdown => "shutdown",
            Method::Compact => "compact",
            Method::Unknown { method } => method,
        }
    }
}

/// Externally tagged mirror of the known [`Method`] variants, for serde's derived
/// per-variant decoding; `remote` makes the compiler check it against `Method`.
#[derive(Deserialize)]
#[serde(remote = "Method", rename_all = "snake_case")]
#[allow(dead_code)] // Only the generated `deserialize` is used.
enum MethodDef {
    Run { input: Vec<Segment> },
    Notify { message: String },
    PodEvent(PodEvent),
    Resume,
    Cancel,
    Pause,
    Shutdown,
    Compact,
}

impl AdjacentlyTagged for Method {
    const WHAT: &'static str = "method";
    const TAG: &'static str = "method";
    const CONTENT: &'static str = "params";

    fn deserialize_known<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        MethodDef::deserialize(deserializer)
    }

    fn unknown(name: String) -> Self {
        Method::Unknown { method: name }
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        adjacent::deserialize(deserializer)
    }
}
