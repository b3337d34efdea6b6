//! session-store's integration tests, one binary (`cargo test -p session-store --test all`): linking one
//! test binary instead of one per file is most of what a test build costs on two cores.
//! Each former `tests/<name>.rs` is the module `<name>` here, so its tests are named
//! `<name>::<test>`.

mod common;

mod head;
mod killed;
mod permissions;
mod session_log;
