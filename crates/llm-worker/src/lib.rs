//! Everything between "here is a history and a tool list" and "here are the items
//! the model produced": the streaming provider clients, the tool framework and the
//! agent loop. This crate knows nothing of sockets, sessions or scopes; the pod
//! wires it to those.

#![forbid(unsafe_code)]

pub mod compact;
pub mod llm_client;
pub mod nudge;
pub mod prune;
/// The tool trait and its types (the `tool` crate), at the path tools and the seed use.
pub use tool;
pub mod tool_server;
pub mod worker;
