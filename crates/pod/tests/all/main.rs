//! pod's integration tests, one binary (`cargo test -p pod --test all`): linking one test
//! binary instead of one per file is most of what a test build costs on two cores. Each
//! former `tests/<name>.rs` is the module `<name>` here, so its tests are named
//! `<name>::<test>`. The real-model suite stays its own binary (`tests/real_model.rs`).

mod common;
mod registry_support;

mod approvals;
mod chaos;
mod cli;
mod context;
mod doctor;
mod hardening;
mod hooks;
mod launch;
mod mcp;
mod mcp_serve;
mod model;
mod multi_pod;
mod pod_process;
mod pod_streaming;
mod registry_overlap;
mod registry_processes;
mod sandbox_escape;
mod small_model;
