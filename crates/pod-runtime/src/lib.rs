//! The pods' footprint on the machine: the directories pods use and where a
//! pod's socket is ([`dir`]), whether a pod is alive ([`liveness`]: it holds
//! its lock), what a running pod says of itself ([`status`]: `status.json`),
//! the per-user scope registry that keeps write scopes from overlapping
//! ([`pod_registry`]), and the trusted project manifests ([`trust`]). Both the
//! pod process and its clients (the CLI, the UI) read these; only pod
//! processes write the registry and the status files.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dir;
pub mod instructions;
pub mod liveness;
pub mod pod_registry;
pub mod status;
pub mod trust;

/// Set for a pod that a `pod mcp serve` session owns: the pid of that
/// server, whose end (however it ends) stops the pod.
pub const OWNER_PID_VAR: &str = "POD_OWNER_PID";
