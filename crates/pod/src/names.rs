//! Which pod a typed name means: `pod_client::names`, re-exported.

pub use pod_client::names::*;
