//! Fuzzing on stable Rust for the code that reads input from outside: the
//! JSON-lines codec and protocol decoding, the SSE parser with each
//! provider's decoder, the manifest parser and cascade, and the session-log
//! reader and writer's open.
//!
//! There is no coverage-guided engine here (that needs nightly); instead a
//! small seeded mutation fuzzer: each [`Target`] starts from real inputs
//! (recorded provider streams, documented wire lines and manifests, sessions
//! written by the real writer), the [`driver`] mutates them with a SplitMix64
//! [`Rng`] ([`mutate`]), runs each under `catch_unwind` with a time budget,
//! and reports panics, hangs and memory blow-ups as [`Failure`]s. The targets
//! check invariants beyond "no panic" (round trips, slicing independence, a
//! reference framing, files untouched by a refused open): see each target's
//! `about` and `docs/reliability.md`.
//!
//! The `pod-fuzz` binary runs targets for a time budget and saves failing
//! inputs under `regressions/<target>/`; the crate's tests replay those and run
//! every target briefly with a fixed seed.

#![forbid(unsafe_code)]

pub mod driver;
pub mod error;
pub mod mutate;
mod panic_capture;
pub mod regress;
pub mod rng;
mod targets;

pub use driver::{
    Budget, Config, Failure, FailureKind, Feedback, Harness, Report, Target, fuzz, minimize, replay,
};
pub use error::FuzzError;
pub use regress::{findings_dir, load_inputs, regressions_dir, save_input};
pub use rng::Rng;
pub use targets::{TARGETS, scratch_base, target};
