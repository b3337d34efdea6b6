//! Trusted project manifests: the store and the loader's gate are
//! `pod_runtime::trust` (the pod process gates project manifests on it), the
//! `pod trust` commands are `pod_client::trust`; both are re-exported here.

pub use pod_client::trust::{list_command, revoke_command, trust_command};
pub use pod_runtime::trust::*;
