//! The command sandbox (architecture rule 5): every `Bash` command runs confined to the
//! pod's scope. This crate owns confinement and nothing else: it takes a
//! [`SandboxPolicy`] its callers build (the pod from its scope, `tools::command_scope`),
//! depends on no other pods crate, and holds the workspace's `unsafe` system calls
//! (namespaces, mounts, Landlock, `openat2`).
//!
//! - [`detect`] finds the strongest [`Level`] this host supports, by trying.
//! - [`run`] starts the helper (`pod __sandbox-exec`, [`helper_main`]) with posix_spawn,
//!   hands it a [`SandboxPolicy`] and the command, and collects the output; the helper
//!   builds the namespaces, mounts and Landlock ruleset and relays the exit status (its
//!   protocol and the mount order are documented in the `helper` module source).
//!   [`run_unconfined`] is the path for `[sandbox] mode = "off"`.
//! - [`CommandGate`] keeps commands and delegations apart (a Landlock domain cannot be
//!   revoked).
//! - [`beneath`] opens files beneath a directory handle with `openat2`, for the file
//!   tools' scoped access.
//! - [`helper_main`] is the helper itself: the `pod-sandbox` binary and
//!   `pod __sandbox-exec` are thin mains around it, so the helper binary links this
//!   crate alone and starts fast.
//!
//! Setuid programs (`sudo`, `ping` on some systems) cannot work inside: `no_new_privs` is
//! set and every capability is dropped.

#![warn(missing_docs)]

pub mod beneath;
mod cover;
mod detect;
mod gate;
mod helper;
mod output;
mod policy;
mod run;
mod serve;
mod sys;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use detect::{Level, SandboxReport, detect, probe};
pub use gate::{CommandGate, CommandPermit, DelegationPermit};
pub use helper::{HelperReport, HelperRequest, helper_main};
pub use output::CapturedOutput;
pub use policy::{POD_SECRET_VARS, PROVIDER_KEY_VARS, SandboxPolicy, Unreadable, WriteRoot};
pub use run::{
    CommandOutput, CommandStatus, RunOptions, detect_async, run, run_at, run_unconfined,
};
pub use serve::{Served, serve};

/// The hidden `pod` subcommand that runs [`helper_main`].
pub const HELPER_SUBCOMMAND: &str = "__sandbox-exec";

/// The dedicated helper binary, installed next to `pod` (the same code as
/// `pod __sandbox-exec`, in a small binary).
pub(crate) const HELPER_BINARY: &str = "pod-sandbox";

/// Why a command could not be run (its own failure is a normal [`CommandOutput`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// No sandbox works on this host and the pod's config does not turn it off.
    #[error(
        "commands cannot run: no sandbox works on this host ({detail}); set `[sandbox] mode = \"off\"` in the manifest or start the pod with --no-sandbox to run them unconfined"
    )]
    Unavailable {
        /// What the detection found.
        detail: String,
    },
    /// The helper could not be started.
    #[error(
        "cannot start the sandbox helper {}: {reason}; check that the pod binary is installed and executable",
        program.display()
    )]
    SpawnHelper {
        /// The helper program.
        program: PathBuf,
        /// The spawn error.
        reason: String,
    },
    /// bash could not be started (no sandbox).
    #[error("cannot start bash: {reason}")]
    SpawnBash {
        /// What went wrong.
        reason: String,
    },
    /// The helper could not set the sandbox up; nothing ran.
    #[error("{message}")]
    Setup {
        /// The helper's message, e.g. `sandbox: cannot make / read-only (mount_setattr): EPERM (...)`.
        message: String,
    },
    /// The helper ended without saying how the command ended.
    #[error(
        "the sandbox helper {} ended without a report ({status}); the command may not have run",
        program.display()
    )]
    HelperDied {
        /// The helper program.
        program: PathBuf,
        /// Its exit status.
        status: String,
    },
    /// A local operation failed (pipes, waiting).
    #[error("cannot {what}: {reason}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        reason: String,
    },
}

/// How to start the helper: a program and its leading arguments (normally the pod
/// binary and [`HELPER_SUBCOMMAND`]), plus environment variables to set on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HelperCommand {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl HelperCommand {
    /// A helper started as `program args...`; `program` should be absolute (posix_spawn
    /// is used only then).
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        HelperCommand {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
        }
    }

    /// The helper for this very binary: what the pod uses (see [`HelperCommand::for_exe`]).
    pub fn current_exe() -> Result<Self, SandboxError> {
        let exe = std::env::current_exe().map_err(|e| SandboxError::Io {
            what: "find the pod binary to use as the sandbox helper".into(),
            reason: e.to_string(),
        })?;
        Ok(HelperCommand::for_exe(&exe))
    }

    /// The helper for pod binary `exe`: the dedicated [`HELPER_BINARY`] next to it when
    /// there is one (it starts in ~0.9 ms, the whole pod binary in ~1.3 ms: most of that
    /// is relocating data the helper never uses), else `exe` with [`HELPER_SUBCOMMAND`].
    /// Both come from one build; a stale `pod-sandbox` fails loudly on the request.
    pub fn for_exe(exe: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let sibling = exe.with_file_name(HELPER_BINARY);
        let executable = std::fs::metadata(&sibling)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if executable {
            HelperCommand::new(sibling, Vec::<OsString>::new())
        } else {
            HelperCommand::new(exe, [HELPER_SUBCOMMAND])
        }
    }

    /// Sets a variable in the helper's environment (which the command inherits unless
    /// the policy removes it).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The helper program.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Its leading arguments.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// A std command for it (no stdio set).
    fn std_command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// A tokio command for it (no stdio set).
    fn tokio_command(&self) -> tokio::process::Command {
        tokio::process::Command::from(self.std_command())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_says_why_and_how_to_run_without_the_sandbox() {
        let msg = SandboxError::Unavailable {
            detail: "namespaces unavailable: EPERM; Landlock unavailable: ENOSYS".into(),
        }
        .to_string();
        assert!(
            msg.starts_with(
                "commands cannot run: no sandbox works on this host (namespaces unavailable: EPERM"
            ),
            "{msg}"
        );
        assert!(msg.contains("[sandbox] mode = \"off\""), "{msg}");
        assert!(msg.contains("--no-sandbox"), "{msg}");
    }

    #[test]
    fn the_helper_is_the_dedicated_binary_next_to_the_pod_else_the_subcommand() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join("pod");
        std::fs::write(&pod, "").unwrap();
        let alone = HelperCommand::for_exe(&pod);
        assert_eq!(alone.program(), pod);
        assert_eq!(alone.args(), [OsString::from(HELPER_SUBCOMMAND)]);

        let sibling = dir.path().join(HELPER_BINARY);
        std::fs::write(&sibling, "").unwrap();
        // Not executable: not used.
        assert_eq!(HelperCommand::for_exe(&pod), alone);
        std::fs::set_permissions(&sibling, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dedicated = HelperCommand::for_exe(&pod);
        assert_eq!(dedicated.program(), sibling);
        assert!(dedicated.args().is_empty());

        let helper = HelperCommand::current_exe().unwrap().env("K", "V");
        assert!(helper.program().is_absolute());
        let cmd = helper.std_command();
        assert_eq!(
            cmd.get_envs().collect::<Vec<_>>(),
            vec![(std::ffi::OsStr::new("K"), Some(std::ffi::OsStr::new("V")))]
        );
    }
}
