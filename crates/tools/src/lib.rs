//! The built-in agent tools, confined to the pod's scope: the `Bash` tool ([`bash`]) and
//! the command sandbox it runs in ([`sandbox`]).

pub mod bash;
pub mod sandbox;
