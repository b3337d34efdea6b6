//! Times the `Grep` tool over a directory tree, in process, for `benches/grep_vs_rg.sh`.
//!
//! Usage: `grep_bench <dir> <pattern> [files_with_matches|content|count] [runs]`.
//! Prints one wall time in milliseconds per run (stdout), and a summary of the last
//! result (stderr). The scope is read access to `<dir>`, so every scope check and
//! open-beneath of the real tool is part of the time.

#![forbid(unsafe_code)]

use std::error::Error;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use manifest::{Permission, Scope, ScopeRule};
use tools::ToolContext;
use tools::grep::{GrepInput, OutputMode, grep};

/// Big enough that no listing is cut: the benchmark compares searching, not capping.
const OUTPUT_LIMIT: usize = 16 * 1024 * 1024;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: grep_bench <dir> <pattern> [files_with_matches|content|count] [runs]";
    let dir = PathBuf::from(args.next().ok_or(usage)?);
    let dir = std::fs::canonicalize(&dir)?;
    let pattern = args.next().ok_or(usage)?;
    let mode = match args.next().as_deref() {
        None | Some("files_with_matches") => OutputMode::FilesWithMatches,
        Some("content") => OutputMode::Content,
        Some("count") => OutputMode::Count,
        Some(other) => return Err(format!("unknown mode {other}; {usage}").into()),
    };
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(1);

    let scope = Scope::new([ScopeRule::recursive(&dir, Permission::Read)], [])?;
    let ctx = ToolContext::new(&dir, Arc::new(RwLock::new(scope)), [], OUTPUT_LIMIT)?;
    let input = GrepInput {
        pattern,
        path: None,
        glob: None,
        file_type: None,
        output_mode: Some(mode),
        context: None,
    };
    let mut summary = String::new();
    for _ in 0..runs {
        let start = Instant::now();
        let out = grep(&ctx, &input)?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        println!("{ms:.1}");
        summary = out.summary;
    }
    eprintln!("{summary}");
    Ok(())
}
