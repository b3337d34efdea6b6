//! The pod process: where its files live, its controller and socket server,
//! the session it keeps, and the `pod` commands. The `pod` binary is a thin
//! shell over this library.

#![forbid(unsafe_code)]

pub(crate) mod approvals;
pub(crate) mod checks;
pub mod cli;
pub mod client;
pub(crate) mod controller;
pub mod doctor;
pub(crate) mod inbox;
pub mod ipc;
pub mod launch;
pub(crate) mod logging;
pub mod model;
pub mod names;
/// A child's way back to its parent: `pod_client::parent`.
pub(crate) use pod_client::parent;
pub mod runtime;
pub(crate) mod server;
pub(crate) mod sink;
pub mod spawn;
pub(crate) mod state;
pub(crate) mod toolset;
pub mod trust;
