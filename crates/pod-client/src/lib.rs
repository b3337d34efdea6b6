//! Everything that talks to pods from outside: connecting to a pod's socket
//! ([`client`]), which pod a typed name means ([`names`]), the pods as their
//! files show them (the `pod ls` rows, [`pods`]), showing events and session
//! logs in a terminal ([`render`], [`transcript`]), and the client-side `pod`
//! commands ([`cli`], [`stop`], [`trust`]). The `pod` command uses it, and so
//! will the interactive UI. It never starts a pod process: that is the `pod`
//! crate's, which builds on this one.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod approve;
pub mod cli;
pub mod client;
pub mod exchange;
pub mod names;
pub mod parent;
pub mod pods;
pub mod render;
pub mod snapshot;
pub mod stop;
pub mod transcript;
pub mod trust;

/// What the unit tests of several modules share.
#[cfg(test)]
mod testing {
    use std::path::Path;

    use pod_runtime::dir::{DirEnv, Places, current_uid};

    /// The places of a pods home in `dir` (runtime `rt/`, state `state/`).
    pub(crate) fn places_in(dir: &Path) -> Places {
        let env = DirEnv::from_pairs(
            current_uid(),
            [
                ("POD_RUNTIME_DIR", dir.join("rt").to_str().unwrap()),
                ("POD_HOME", dir.join("state").to_str().unwrap()),
                ("HOME", dir.to_str().unwrap()),
            ],
        );
        Places::resolve(&env).unwrap()
    }
}
