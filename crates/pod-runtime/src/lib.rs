//! The pods' footprint on the machine: the directories pods use ([`dir`]),
//! whether a pod is alive ([`liveness`]: it holds its lock), and the per-user
//! scope registry that keeps write scopes from overlapping ([`pod_registry`]).
//! Both the pod process and its clients (the CLI, the UI) read these; only pod
//! processes write the registry.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dir;
pub mod liveness;
pub mod pod_registry;
