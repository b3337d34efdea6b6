//! The pod's footprint on the machine: the directories it uses and the
//! machine-wide records kept in them.

pub mod dir;
pub mod liveness;
pub mod pod_registry;
pub mod registry_health;
