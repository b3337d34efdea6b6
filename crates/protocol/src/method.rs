//! [`Method`]: what a client asks of a pod.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::adjacent::{self, AdjacentlyTagged};
use crate::{ApprovalUpdate, PodEvent, Segment};

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
    /// Makes this connection one that answers approvals: it gets every
    /// pending `approval_request` of this pod and its subtree now and as they
    /// come, and `approval_resolved` when they end. Answered `ack`.
    WatchApprovals,
    /// Lists the pending approval requests of this pod and its subtree;
    /// answered with an `approvals` event.
    Approvals,
    /// Approves a pending request (of this pod or one below it).
    Approve {
        /// The request's id.
        id: String,
        /// Also allow later calls matching the same rule, for the rest of the
        /// asking pod's session.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        remember: bool,
    },
    /// Denies a pending request (of this pod or one below it); the model
    /// reads the reason.
    Deny {
        /// The request's id.
        id: String,
        /// Why (the model reads it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A child's news about approval requests in its subtree; accepted only
    /// from this pod's own children.
    ApprovalUpdate(ApprovalUpdate),
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
            Method::WatchApprovals => "watch_approvals",
            Method::Approvals => "approvals",
            Method::Approve { .. } => "approve",
            Method::Deny { .. } => "deny",
            Method::ApprovalUpdate(_) => "approval_update",
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
    Run {
        input: Vec<Segment>,
    },
    Notify {
        message: String,
    },
    PodEvent(PodEvent),
    Resume,
    Cancel,
    Pause,
    Shutdown,
    Compact,
    WatchApprovals,
    Approvals,
    Approve {
        id: String,
        #[serde(default)]
        remember: bool,
    },
    Deny {
        id: String,
        #[serde(default)]
        reason: Option<String>,
    },
    ApprovalUpdate(ApprovalUpdate),
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

/// Why a method line was refused; its text is the `invalid_request` message.
#[derive(Debug, thiserror::Error)]
pub enum MethodError {
    /// Not UTF-8.
    #[error("the line is not UTF-8 (invalid byte at offset {0})")]
    NotUtf8(usize),
    /// Not JSON.
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),
    /// A known method with parameters that do not fit.
    #[error("wrong params for `{name}`: {source}")]
    Params {
        /// The method's name.
        name: String,
        /// What did not fit.
        source: serde_json::Error,
    },
    /// JSON, but not a method object.
    #[error("not a method (expected {{\"method\":...,\"params\":...}}): {0}")]
    NotAMethod(serde_json::Error),
    /// A `run` whose input is only segments of kinds this pod does not know.
    #[error(
        "`run` input has only segments of a kind this pod does not know ({}); it knows text, file_ref and paste",
        .0.join(", ")
    )]
    UnknownSegments(Vec<String>),
}

/// Decodes one method line as a pod reads it from a client; the error's text
/// is the message of the `invalid_request` it answers.
pub fn decode_method(line: &[u8]) -> Result<Method, MethodError> {
    let text = std::str::from_utf8(line).map_err(|e| MethodError::NotUtf8(e.valid_up_to()))?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(MethodError::Json)?;
    let name = value
        .get("method")
        .and_then(|m| m.as_str())
        .map(str::to_owned);
    // Unknown segment kinds decode to `Segment::Unknown` (forward
    // compatibility); their names are kept here for the error below.
    let unknown: Vec<String> = match (name.as_deref(), value.pointer("/params/input")) {
        (Some("run"), Some(serde_json::Value::Array(input))) => input
            .iter()
            .filter_map(|s| s.get("kind")?.as_str())
            .filter(|k| !matches!(*k, "text" | "file_ref" | "paste"))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let method = serde_json::from_value::<Method>(value).map_err(|source| match name {
        Some(name) => MethodError::Params { name, source },
        None => MethodError::NotAMethod(source),
    })?;
    match &method {
        Method::Run { input }
            if !unknown.is_empty() && Segment::flatten_to_text(input).trim().is_empty() =>
        {
            Err(MethodError::UnknownSegments(unknown))
        }
        _ => Ok(method),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_say_what_is_wrong() {
        assert!(
            decode_method(b"\xff\xfe")
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
        assert!(
            decode_method(b"{nope")
                .unwrap_err()
                .to_string()
                .starts_with("invalid JSON")
        );
        assert!(
            decode_method(br#"{"method":"run","params":{"input":"x"}}"#)
                .unwrap_err()
                .to_string()
                .starts_with("wrong params for `run`")
        );
        assert!(
            decode_method(br#"[1,2]"#)
                .unwrap_err()
                .to_string()
                .starts_with("not a method")
        );
        assert_eq!(
            decode_method(br#"{"method":"frobnicate"}"#).unwrap(),
            Method::Unknown {
                method: "frobnicate".into()
            }
        );
        assert_eq!(
            decode_method(br#"{"method":"cancel"}"#).unwrap(),
            Method::Cancel
        );
    }

    #[test]
    fn a_run_of_unknown_segment_kinds_names_them() {
        let e =
            decode_method(br#"{"method":"run","params":{"input":[{"kind":"image","url":"x"}]}}"#)
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("does not know (image)") && e.contains("text, file_ref and paste"),
            "{e}"
        );
        // With text beside it the unknown segment renders as nothing.
        let ok = decode_method(
            br#"{"method":"run","params":{"input":[{"kind":"text","content":"hi"},{"kind":"image"}]}}"#,
        )
        .unwrap();
        assert!(matches!(ok, Method::Run { input } if input.len() == 2));
    }
}
