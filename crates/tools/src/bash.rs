//! The `Bash` tool: runs one `bash -c` command in the sandbox ([`crate::sandbox`]) and
//! returns its interleaved stdout and stderr.
//!
//! A command that exits non-zero is a normal result (the summary says `exit code N` and
//! the output follows), because the output is what the model needs to fix things and an
//! error result carries no content. A command that could not be started at all (no
//! sandbox, helper failure) is a [`ToolError::ExecutionFailed`].
//!
//! Output over the cap (30 KiB by default) is written whole to a file in `bash-output/`
//! under the dir the caller gives; the result carries the file's path and the last 30
//! KiB. The policy is asked for anew for every command, under a [`CommandGate`] permit,
//! so a delegation never overlaps a running command.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use manifest::SandboxMode;
use serde::Deserialize;
use tool::{Tool, ToolDefinition, ToolError, ToolMeta, ToolOutput};

use sandbox::{
    self, CommandGate, CommandOutput, CommandStatus, HelperCommand, RunOptions, SandboxPolicy,
};

/// The tool's name, as the model calls it.
pub const NAME: &str = "Bash";

/// Timeout when the call gives none.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest timeout a call may ask for; larger ones are clamped (with a note).
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Output returned inline; more is spilled to a file.
pub(crate) const DEFAULT_OUTPUT_CAP: usize = 30 * 1024;

/// The directory (under [`BashConfig::output_dir`]) that holds spilled outputs.
pub const SPILL_DIR_NAME: &str = "bash-output";

/// Gives the sandbox policy in force right now (the scope changes while the pod runs).
pub trait PolicySource: Send + Sync {
    /// The current policy.
    fn current_policy(&self) -> SandboxPolicy;
}

impl<F> PolicySource for F
where
    F: Fn() -> SandboxPolicy + Send + Sync,
{
    fn current_policy(&self) -> SandboxPolicy {
        self()
    }
}

/// What the Bash tool needs from the pod.
#[derive(Clone)]
pub struct BashConfig {
    /// How to start the sandbox helper (the pod binary, `__sandbox-exec`).
    pub helper: HelperCommand,
    /// The current policy, asked for each command.
    pub policy: Arc<dyn PolicySource>,
    /// `auto` (sandbox required) or `off` (`[sandbox] mode = "off"`, `--no-sandbox`).
    pub mode: SandboxMode,
    /// The dir under which `bash-output/` is created (the pod's runtime dir).
    pub output_dir: PathBuf,
    /// Output returned inline, in bytes.
    pub output_cap: usize,
    /// Shared with the pod's delegation code.
    pub gate: CommandGate,
}

impl BashConfig {
    /// A config with the default output cap and a fresh gate.
    pub fn new(
        helper: HelperCommand,
        policy: Arc<dyn PolicySource>,
        mode: SandboxMode,
        output_dir: impl Into<PathBuf>,
    ) -> Self {
        BashConfig {
            helper,
            policy,
            mode,
            output_dir: output_dir.into(),
            output_cap: DEFAULT_OUTPUT_CAP,
            gate: CommandGate::new(),
        }
    }

    /// Where spilled outputs go.
    pub fn spill_dir(&self) -> PathBuf {
        self.output_dir.join(SPILL_DIR_NAME)
    }
}

impl fmt::Debug for BashConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BashConfig")
            .field("helper", &self.helper)
            .field("mode", &self.mode)
            .field("output_dir", &self.output_dir)
            .field("output_cap", &self.output_cap)
            .finish_non_exhaustive()
    }
}

/// The call's arguments.
#[derive(Debug, Deserialize)]
struct BashInput {
    command: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// The Bash tool.
#[derive(Debug, Clone)]
pub struct Bash {
    config: Arc<BashConfig>,
}

impl Bash {
    /// A Bash tool over `config`.
    pub fn new(config: BashConfig) -> Self {
        Bash {
            config: Arc::new(config),
        }
    }
}

/// How the tool presents itself; the description says whether commands are sandboxed.
pub fn meta(mode: SandboxMode) -> ToolMeta {
    let confinement = match mode {
        SandboxMode::Auto => {
            "Commands run in a sandbox: they can write only inside the pod's write scope and \
             its shared cache dirs; the rest of the filesystem is read-only; stdin is empty; \
             provider API keys are not in the environment; and every process the command \
             started, including background jobs (`&`, nohup, setsid), is killed when it \
             returns, so do not start servers expecting them to keep running. setuid programs \
             such as sudo do not work. /tmp (TMPDIR) is private to your commands: the file \
             tools, other pods and the user never see files written there."
        }
        SandboxMode::Off => {
            "The sandbox is off for this pod: commands are not confined, so keep them to the \
             pod's scope. stdin is empty, provider API keys are not in the environment, and \
             background jobs in the command's process group are killed when it returns."
        }
    };
    ToolMeta::new(NAME)
        .description(format!(
            "Runs a bash command (`bash -c`) in the pod's working directory and returns its \
             combined stdout and stderr. {confinement} The timeout defaults to {} ms and is at \
             most {} ms. Output over {} KiB is saved whole to a file whose path is returned \
             with the last {} KiB; read the file with the Read tool. A non-zero exit code is a \
             normal result: the summary gives the code.",
            DEFAULT_TIMEOUT.as_millis(),
            MAX_TIMEOUT.as_millis(),
            DEFAULT_OUTPUT_CAP / 1024,
            DEFAULT_OUTPUT_CAP / 1024,
        ))
        .input_schema(serde_json::json!({
            "type": "object",
            "properties": {
                "command": {
                    "type": "string",
                    "description": "The bash script to run."
                },
                "timeout_ms": {
                    "type": "integer",
                    "minimum": 1,
                    // Not offered to small models (`llm_client::compact`).
                    "x-pods-advanced": true,
                    "description": format!(
                        "Timeout in milliseconds (default {}, at most {}).",
                        DEFAULT_TIMEOUT.as_millis(),
                        MAX_TIMEOUT.as_millis()
                    )
                }
            },
            "required": ["command"]
        }))
}

/// The Bash tool's factory.
pub fn bash_tool(config: BashConfig) -> ToolDefinition {
    let tool = Arc::new(Bash::new(config));
    Arc::new(move || {
        let meta = meta(tool.config.mode);
        let tool: Arc<dyn Tool> = tool.clone();
        (meta, tool)
    })
}

/// The timeout to use and, when the asked one was clamped, a note saying so.
fn timeout_for(asked_ms: Option<u64>) -> Result<(Duration, Option<String>), ToolError> {
    match asked_ms {
        None => Ok((DEFAULT_TIMEOUT, None)),
        Some(0) => Err(ToolError::InvalidArgument(
            "timeout_ms must be at least 1".into(),
        )),
        Some(ms) if Duration::from_millis(ms) > MAX_TIMEOUT => Ok((
            MAX_TIMEOUT,
            Some(format!(
                "[timeout_ms {ms} is above the maximum of {}; the command ran with {} ms]",
                MAX_TIMEOUT.as_millis(),
                MAX_TIMEOUT.as_millis()
            )),
        )),
        Some(ms) => Ok((Duration::from_millis(ms), None)),
    }
}

/// `1.5 s`, `500 ms`.
fn human(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The result the model sees.
fn render(out: &CommandOutput, timeout: Duration, note: Option<String>) -> ToolOutput {
    let mut summary = if out.timed_out {
        format!(
            "timed out after {} and was killed, with everything it started",
            human(timeout)
        )
    } else {
        match out.status {
            CommandStatus::Exited(code) => format!("exit code {code}"),
            CommandStatus::Signaled(signal) => {
                format!("killed by signal {signal}, exit code {}", out.status.code())
            }
        }
    };
    let captured = &out.output;
    if captured.total_bytes == 0 {
        summary.push_str(", no output");
    }
    let mut parts: Vec<String> = note.into_iter().collect();
    if captured.truncated {
        let kept = captured.bytes.len();
        parts.push(match (&captured.spill_path, &captured.spill_error) {
            (Some(path), None) => format!(
                "[{} bytes of output; all of it is in {} (read it with the Read tool); the last {kept} bytes follow]",
                captured.total_bytes,
                path.display()
            ),
            (_, Some(err)) => format!(
                "[{} bytes of output; the whole output could not be saved ({err}); the last {kept} bytes follow]",
                captured.total_bytes
            ),
            (None, None) => format!(
                "[{} bytes of output; the last {kept} bytes follow]",
                captured.total_bytes
            ),
        });
        if let Some(path) = &captured.spill_path
            && captured.spill_error.is_none()
        {
            summary.push_str(&format!("; output saved to {}", path.display()));
        }
    }
    if captured.total_bytes > 0 {
        parts.push(captured.text());
    }
    ToolOutput {
        summary,
        content: if parts.is_empty() {
            None
        } else {
            Some(parts.join("\n"))
        },
    }
}

#[async_trait]
impl Tool for Bash {
    async fn execute(&self, input_json: &str) -> Result<ToolOutput, ToolError> {
        let input: BashInput = serde_json::from_str(input_json).map_err(|e| {
            ToolError::InvalidArgument(format!(
                "expected {{\"command\": string, \"timeout_ms\"?: integer}}: {e}"
            ))
        })?;
        if input.command.trim().is_empty() {
            return Err(ToolError::InvalidArgument("command is empty".into()));
        }
        if input.command.contains('\0') {
            return Err(ToolError::InvalidArgument(
                "command contains a NUL byte, which bash cannot receive".into(),
            ));
        }
        let (timeout, note) = timeout_for(input.timeout_ms)?;
        let config = &self.config;
        let options = RunOptions {
            timeout,
            output_limit: config.output_cap,
            spill_dir: Some(config.spill_dir()),
        };
        // Held until the command is over, so no delegation happens under its feet.
        let _permit = config.gate.command().await;
        let policy = config.policy.current_policy();
        let watched = unguarded_paths(&policy);
        let result = match config.mode {
            SandboxMode::Off => sandbox::run_unconfined(&policy, &input.command, &options).await,
            SandboxMode::Auto => {
                sandbox::run(&config.helper, &policy, &input.command, &options).await
            }
        };
        let out = result.map_err(|e| ToolError::ExecutionFailed(e.to_string()))?;
        let mut rendered = render(&out, timeout, note);
        let created: Vec<&PathBuf> = watched
            .iter()
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
        if !created.is_empty() {
            let list: Vec<String> = created.iter().map(|p| p.display().to_string()).collect();
            rendered
                .summary
                .push_str("; it created paths this pod may not write");
            let warning = format!(
                "[pods: this command created {}, where this pod may not write (a deny rule, or pods' own files; the sandbox can only protect what exists when a command starts). It was left in place: remove it unless the user wants it.]",
                list.join(", ")
            );
            rendered.content = Some(match rendered.content.take() {
                Some(text) => format!("{warning}\n{text}"),
                None => warning,
            });
        }
        Ok(rendered)
    }
}

/// Paths this pod may not write that do not exist yet but lie in a tree the command
/// may write: denied and protected paths, and a `.pods/` in a write root or the working
/// directory. The sandbox can only cover what exists, so these are checked after the
/// command instead, and a creation is reported.
fn unguarded_paths(policy: &SandboxPolicy) -> Vec<PathBuf> {
    let writable: Vec<&Path> = policy
        .write_roots
        .iter()
        .map(|r| r.path.as_path())
        .chain(policy.shared.iter().map(PathBuf::as_path))
        .collect();
    let pods_dirs = policy
        .write_roots
        .iter()
        .map(|r| r.path.join(".pods"))
        .chain(std::iter::once(policy.cwd.join(".pods")));
    let mut paths: Vec<PathBuf> = policy
        .denied
        .iter()
        .chain(&policy.protected)
        .cloned()
        .chain(pods_dirs)
        .filter(|p| writable.iter().any(|w| p.starts_with(w)))
        .filter(|p| p.symlink_metadata().is_err())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox::CapturedOutput;

    fn output(status: CommandStatus, text: &str) -> CommandOutput {
        CommandOutput {
            status,
            output: CapturedOutput {
                bytes: text.as_bytes().to_vec(),
                total_bytes: text.len() as u64,
                ..CapturedOutput::default()
            },
            timed_out: false,
            elapsed: Duration::ZERO,
            level: None,
        }
    }

    #[test]
    fn timeouts_default_clamp_and_refuse_zero() {
        assert_eq!(timeout_for(None).unwrap(), (DEFAULT_TIMEOUT, None));
        assert_eq!(
            timeout_for(Some(500)).unwrap(),
            (Duration::from_millis(500), None)
        );
        let (t, note) = timeout_for(Some(700_000)).unwrap();
        assert_eq!(t, MAX_TIMEOUT);
        assert!(note.unwrap().contains("above the maximum of 600000"));
        assert!(matches!(
            timeout_for(Some(0)),
            Err(ToolError::InvalidArgument(_))
        ));
    }

    #[test]
    fn render_reports_code_signal_and_output() {
        let ok = render(
            &output(CommandStatus::Exited(0), "hi\n"),
            DEFAULT_TIMEOUT,
            None,
        );
        assert_eq!(ok.summary, "exit code 0");
        assert_eq!(ok.content.as_deref(), Some("hi\n"));

        let failed = render(&output(CommandStatus::Exited(2), ""), DEFAULT_TIMEOUT, None);
        assert_eq!(failed.summary, "exit code 2, no output");
        assert_eq!(failed.content, None);

        let killed = render(
            &output(CommandStatus::Signaled(15), "x"),
            DEFAULT_TIMEOUT,
            None,
        );
        assert_eq!(killed.summary, "killed by signal 15, exit code 143");

        let mut slow = output(CommandStatus::Signaled(9), "partial");
        slow.timed_out = true;
        let slow = render(&slow, Duration::from_millis(500), Some("[note]".into()));
        assert_eq!(
            slow.summary,
            "timed out after 500 ms and was killed, with everything it started"
        );
        assert_eq!(slow.content.as_deref(), Some("[note]\npartial"));
    }

    #[test]
    fn render_points_to_the_spill_file() {
        let mut out = output(CommandStatus::Exited(0), "tail");
        out.output.total_bytes = 100_000;
        out.output.truncated = true;
        out.output.spill_path = Some(PathBuf::from("/rt/p/bash-output/1.txt"));
        let r = render(&out, DEFAULT_TIMEOUT, None);
        assert_eq!(
            r.summary,
            "exit code 0; output saved to /rt/p/bash-output/1.txt"
        );
        assert_eq!(
            r.content.as_deref(),
            Some(
                "[100000 bytes of output; all of it is in /rt/p/bash-output/1.txt (read it with the Read tool); the last 4 bytes follow]\ntail"
            )
        );
        out.output.spill_error = Some("disk full".into());
        let r = render(&out, DEFAULT_TIMEOUT, None);
        assert!(
            r.content
                .unwrap()
                .contains("could not be saved (disk full)")
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_millis(500)), "500 ms");
        assert_eq!(human(Duration::from_secs(120)), "120 s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn meta_describes_the_mode_and_requires_a_command() {
        let on = meta(SandboxMode::Auto);
        assert_eq!(on.name, "Bash");
        assert!(on.description.contains("sandbox"));
        assert_eq!(on.input_schema["required"], serde_json::json!(["command"]));
        // A file left in /tmp is lost to everyone else: the model must know.
        assert!(
            on.description.contains(
                "/tmp (TMPDIR) is private to your commands: the file tools, other pods and the user never see files written there."
            ),
            "{}",
            on.description
        );
        let off = meta(SandboxMode::Off);
        assert!(off.description.contains("sandbox is off"));
    }
}
