//! The built-in agent tools, confined to the pod's scope.
//!
//! The file tools (`Read`, `Write`, `Edit`, `Glob`, `Grep`) check every path against the
//! pod's live scope and open it beneath a directory handle ([`scoped_fs`]), so a symlink
//! swapped in after the check cannot lead them out. [`file_tools`] builds them over a
//! [`ToolContext`]. The `Bash` tool ([`bash`]) runs commands in the command sandbox
//! (the `sandbox` crate, re-exported as [`sandbox`]) under a policy built from the scope
//! ([`command_scope`]).
//!
//! The system calls behind both (openat2, namespaces, mounts, Landlock) live in the
//! `sandbox` crate; this crate has no `unsafe`.

#![forbid(unsafe_code)]

pub mod bash;
pub mod catalog;
pub mod command_scope;
pub mod context;
pub mod edit;
pub mod error;
pub mod glob;
pub mod grep;
pub mod grounding;
mod partial_write;
pub mod read;
mod read_before_write;
pub mod scoped_fs;
pub(crate) mod sniff;
mod walk;
pub mod write;

pub use catalog::file_tools;
pub use context::ToolContext;
/// The command sandbox the `Bash` tool runs in, for callers that configure the tool
/// (helper, gate, detection).
pub use sandbox;
