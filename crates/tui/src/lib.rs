//! The interactive terminal UI over a user's tree of pods: the tree on the
//! left, the selected pod's conversation on the right, a composer to write to
//! it. It is one more client of the pods (their sockets and status files,
//! through `pod-client`); it never reaches into a pod process.

#![forbid(unsafe_code)]

mod app;
mod blocks;
mod conversation;
mod markdown;
mod net;
mod run;
mod theme;
mod ui;
mod view;
mod wrap;

pub use run::{Options, run};

#[cfg(test)]
mod snapshots;
