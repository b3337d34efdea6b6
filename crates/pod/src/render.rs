//! Events shown in a terminal: `pod_client::render`, re-exported.

pub use pod_client::render::*;
