//! Child pods: the spawner's list of its children (`registry`), the tools to
//! talk to them (`comm_tools`), and `SpawnPod` itself (`tool`), which moves
//! part of the spawner's write scope to a new pod process (`process`).

pub(crate) mod comm_tools;
pub mod process;
pub mod registry;
pub mod tool;
