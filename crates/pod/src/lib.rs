//! The pod process: where its files live, and (as the issues land) its
//! controller, socket server, scope registry and child pods. The `pod` binary is a
//! thin shell over this library.

pub mod doctor;
pub mod runtime;
