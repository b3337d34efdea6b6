//! The pod's Unix socket: binding and liveness (`listener`), one task pair per
//! connection (`conn`), and the fan-out of events to clients (`hub`).

pub(crate) mod conn;
pub(crate) mod hub;
pub mod listener;
