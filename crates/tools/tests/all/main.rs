//! tools's integration tests, one binary (`cargo test -p tools --test all`): linking one
//! test binary instead of one per file is most of what a test build costs on two cores.
//! Each former `tests/<name>.rs` is the module `<name>` here, so its tests are named
//! `<name>::<test>`.

mod common;

mod catalog;
mod glob;
mod grep;
mod grounding;
mod open_beneath;
mod read;
mod sandbox_bash_tool;
mod scope;
mod write_edit;
