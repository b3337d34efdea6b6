//! Wire types of the pod socket protocol and its JSON-lines codec.
//!
//! A pod speaks JSON lines over a Unix socket: clients send [`Method`]s
//! (`{"method":"<name>","params":{...}}`) and the pod answers with [`Event`]s
//! (`{"event":"<name>","data":{...}}`). This crate owns those types, the
//! shared pieces they carry ([`Segment`], [`PodEvent`], [`Greeting`], ...)
//! and the line framing in [`stream`]; [`raw`] builds the events that carry
//! session-log lines verbatim.
//!
//! Forward compatibility: unknown method names, event names, segment kinds and
//! pod-event kinds decode to an `Unknown` variant instead of failing, and
//! unknown fields are ignored everywhere. A known name with malformed params
//! is still an error, so a server can tell the client what was wrong.
//!
//! The JSON Schemas of [`Method`] and [`Event`] are checked in under
//! `crates/protocol/schema/` and kept current by a test.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod adjacent;
mod approval;
mod event;
mod method;
mod pod_event;
pub mod raw;
mod schema;
mod segment;
pub mod stream;

pub use approval::{ApprovalRequest, ApprovalResolved, ApprovalUpdate, approval_owner};
pub use event::{
    Alert, AlertLevel, AlertSource, ErrorCode, Event, Greeting, HookRun, InvokeKind,
    PROTOCOL_VERSION, PodStatus, TurnResult,
};
pub use method::{Method, MethodError, decode_method};
pub use pod_event::{GrantPermission, PodEvent, ScopeGrant};
pub use segment::Segment;
