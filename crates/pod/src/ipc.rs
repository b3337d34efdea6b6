//! The pod's Unix socket: binding and liveness (`listener`), one task pair per
//! connection (`conn`), and the fan-out of events to clients (`hub`).

pub mod conn;
pub mod hub;
pub mod listener;
