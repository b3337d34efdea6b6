//! The pod's footprint on the machine (the `pod-runtime` crate: directories,
//! liveness, the scope registry) and what `pod doctor` checks of it.

pub use pod_runtime::{dir, liveness, pod_registry, status};
