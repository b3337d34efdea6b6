//! The built-in agent tools, confined to the pod's scope.
//!
//! The file tools (`Read`, `Write`, `Edit`, `Glob`, `Grep`) check every path against the
//! pod's live scope and open it beneath a directory handle ([`scoped_fs`]), so a symlink
//! swapped in after the check cannot lead them out. [`file_tools`] builds them over a
//! [`ToolContext`]. The `Bash` tool ([`bash`]) runs commands in the command sandbox
//! ([`sandbox`]): namespaces, mounts and Landlock built by a helper mode of the `pod`
//! binary.

pub mod bash;
pub mod catalog;
pub mod context;
pub mod edit;
pub mod error;
pub mod glob;
pub mod grep;
pub mod read;
mod read_before_write;
pub mod sandbox;
pub mod scoped_fs;
pub mod sniff;
mod walk;
pub mod write;

pub use catalog::file_tools;
pub use context::ToolContext;
