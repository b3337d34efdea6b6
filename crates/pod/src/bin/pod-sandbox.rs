//! `pod-sandbox`: the command sandbox helper alone (see `tools::sandbox::helper`).
//!
//! The pod starts it once per command. It is the same code as `pod __sandbox-exec`, in
//! a binary that holds little else, so it starts in a fraction of the time: the full
//! `pod` binary spends most of its start-up relocating data the helper never uses.

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let code = tools::sandbox::helper_main(&args);
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
