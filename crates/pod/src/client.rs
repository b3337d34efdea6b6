//! A client of one pod's socket: `pod_client::client`, re-exported.

pub use pod_client::client::*;
