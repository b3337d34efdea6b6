//! `pod-sandbox`: the command sandbox helper alone (`sandbox::helper_main`).
//!
//! The pod starts it once per command. It is the same code as `pod __sandbox-exec`, in
//! a binary that links the `sandbox` crate alone, so it starts in a fraction of the
//! time: the full `pod` binary spends most of its start-up relocating data the helper
//! never uses. Keep it that way: name nothing here but `sandbox` and std.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let code = sandbox::helper_main(&args);
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
