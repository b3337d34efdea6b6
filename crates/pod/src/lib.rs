//! The pod process: where its files live, its controller and socket server,
//! the session it keeps, and the `pod` commands. The `pod` binary is a thin
//! shell over this library.

#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod controller;
pub mod doctor;
pub mod inbox;
pub mod ipc;
pub mod launch;
pub mod logging;
pub mod model;
pub mod names;
pub mod parent;
pub mod render;
pub mod runtime;
pub mod server;
pub mod sink;
pub mod spawn;
pub mod state;
pub mod toolset;
pub mod transcript;
pub mod trust;
