//! The `pod` command: argument parsing and wiring only; every behaviour lives in
//! the `pod` library.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use pod::doctor;
use pod::runtime::dir::{DirEnv, current_uid};

/// Exit code for a usage error (clap uses it too).
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "pod",
    version,
    about = "Run teams of LLM coding agents, each in its own process and scope.",
    after_help = "Exit codes: 0 ok, 1 error, 2 usage error."
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check where pods keeps its files and which providers it can use.
    #[command(after_help = "Example:\n  pod doctor\n  pod doctor --json")]
    Doctor,
    /// Internal: the command sandbox helper, started by the pod itself.
    #[command(name = "__sandbox-exec", hide = true)]
    SandboxExec {
        /// Unused: the request comes on stdin.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pod: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::SandboxExec { args } => {
            let code = tools::sandbox::helper_main(&args);
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)))
        }
        Command::Doctor => {
            let mut report = doctor::run(&DirEnv::from_process(), current_uid(), &|k| {
                std::env::var_os(k).is_some_and(|v| !v.is_empty())
            });
            report
                .checks
                .push(match tools::sandbox::HelperCommand::current_exe() {
                    Ok(helper) => doctor::sandbox_check(&tools::sandbox::detect(&helper)),
                    Err(e) => doctor::sandbox_unknown(&e.to_string()),
                });
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for c in &report.checks {
                    let mark = if c.ok { "ok " } else { "ERR" };
                    println!("{mark} {:<14} {}", c.name, c.detail);
                }
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
