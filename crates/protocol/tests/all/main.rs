//! protocol's integration tests, one binary (`cargo test -p protocol --test all`): linking one
//! test binary instead of one per file is most of what a test build costs on two cores.
//! Each former `tests/<name>.rs` is the module `<name>` here, so its tests are named
//! `<name>::<test>`. `tests/stream_memory.rs` stays its own binary: it counts the heap
//! with a global allocator, which tests running alongside would disturb.

mod protocol_doc;
mod raw;
mod schema;
mod seed_usage;
mod stream;
mod wire;
