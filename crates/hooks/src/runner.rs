//! Running one hook: its JSON input written to a file in the pod's private
//! tmp dir and given as stdin (commands in the sandbox otherwise read
//! /dev/null), stderr to a second file, stdout captured; inside the pod's
//! command sandbox unless the hook says `sandbox = false` (user manifest only).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use manifest::{Hook, HookCommand, SandboxMode};
use sandbox::{CommandGate, HelperCommand, RunOptions};
use serde_json::Value;
use tools::bash::PolicySource;

/// Stdout kept from a hook (its answer is a small JSON object).
const STDOUT_LIMIT: usize = 256 * 1024;
/// Stderr kept from a hook (a reason for the model or the user).
const STDERR_LIMIT: usize = 16 * 1024;

/// What the runner needs from the pod.
#[derive(Clone)]
pub struct HookEnv {
    /// The pod's full name.
    pub pod: String,
    /// The pod's session (its log's id).
    pub session: String,
    /// The pod's working directory (hooks run there).
    pub cwd: PathBuf,
    /// The pod's private tmp dir as the pod sees it (commands see it as `$TMPDIR`).
    pub tmp_dir: PathBuf,
    /// How to start the sandbox helper.
    pub helper: HelperCommand,
    /// The pod's command policy, as for Bash.
    pub policy: Arc<dyn PolicySource>,
    /// Whether the pod's commands are sandboxed.
    pub mode: SandboxMode,
    /// Shared with Bash and delegation: no delegation under a running hook.
    pub gate: CommandGate,
}

impl std::fmt::Debug for HookEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookEnv")
            .field("pod", &self.pod)
            .field("cwd", &self.cwd)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// How one hook run ended, before `on_error` is applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Exit 0: go on, with the input it gave (`{"input": ...}`) and its note.
    Continue {
        /// A replacement for the tool input.
        input: Option<Value>,
        /// A note for the model.
        note: Option<String>,
    },
    /// Exit 2: block, with its stderr as the reason.
    Block(String),
    /// Anything else: another exit code, a timeout, a command that could not
    /// start, stdout that starts like JSON but is not an object.
    Failed(String),
}

/// One finished hook run.
#[derive(Debug, Clone, PartialEq)]
pub struct Ran {
    /// Its exit code (`None` when it timed out or did not start).
    pub exit_code: Option<i32>,
    /// How long it took.
    pub duration: Duration,
    /// What it answered.
    pub answer: Answer,
}

/// Quotes `word` for bash.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The bash script that runs `command` with `stdin` and `stderr` files from `$TMPDIR`.
fn script(command: &HookCommand, stdin: &str, stderr: &str) -> String {
    let run = match command {
        HookCommand::Argv(argv) => argv.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" "),
        HookCommand::Shell(text) => format!("sh -c {}", quote(text)),
    };
    // The newline before `}` keeps a trailing comment from swallowing it.
    format!("{{ {run}\n}} < \"$TMPDIR\"/{stdin} 2> \"$TMPDIR\"/{stderr}")
}

/// A file name no other run of this process uses.
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(".pod-hook-{}-{n}-{nanos:x}", std::process::id())
}

/// Removes the hook's files when the run is over, however it ended.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Writes `bytes` to a new file readable only by this user.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// Reads at most `limit` bytes of a file as text (missing, or not a regular
/// file: empty; a link is not followed, as the pod reads it unconfined).
fn read_capped(path: &Path, limit: usize) -> String {
    let regular = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
    if !regular {
        return String::new();
    }
    let bytes = std::fs::read(path).unwrap_or_default();
    let cut = bytes.len().min(limit);
    String::from_utf8_lossy(&bytes[..cut]).trim().to_string()
}

/// What exit 0's stdout says: nothing, a JSON object with `input` and/or
/// `note`, or other text (ignored).
fn parse_stdout(stdout: &str) -> Answer {
    let text = stdout.trim();
    if !text.starts_with('{') {
        return Answer::Continue {
            input: None,
            note: None,
        };
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Answer::Failed(format!(
                "exited 0 but its stdout is not valid JSON ({e}); print a JSON object like \
                 {{\"note\": \"...\"}}, or nothing"
            ));
        }
    };
    let Value::Object(map) = value else {
        return Answer::Failed("exited 0 but its stdout is not a JSON object".into());
    };
    let note = match map.get("note") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Answer::Failed(format!("its `note` must be a string, not {other}"));
        }
    };
    Answer::Continue {
        input: map.get("input").filter(|v| !v.is_null()).cloned(),
        note,
    }
}

/// Runs `hook` with `input` as its stdin.
pub async fn run(env: &HookEnv, hook: &Hook, input: &Value) -> Ran {
    let started = Instant::now();
    let failed = |message: String| Ran {
        exit_code: None,
        duration: started.elapsed(),
        answer: Answer::Failed(message),
    };
    let name = unique_name();
    let (stdin_name, stderr_name) = (format!("{name}.json"), format!("{name}.err"));
    let (stdin_path, stderr_path) = (
        env.tmp_dir.join(&stdin_name),
        env.tmp_dir.join(&stderr_name),
    );
    let bytes = serde_json::to_vec(input).unwrap_or_default();
    let options = RunOptions {
        timeout: Duration::from_millis(hook.timeout_ms),
        output_limit: STDOUT_LIMIT,
        spill_dir: None,
    };
    let script = script(&hook.command, &stdin_name, &stderr_name);
    let (out, stderr) = {
        // Alone: no command of the pod runs beside a hook, so none can change
        // its input file or swap its stderr file for a link meanwhile (the
        // pod's commands share its tmp dir).
        let _permit = env.gate.delegation().await;
        let _cleanup = Cleanup(vec![stdin_path.clone(), stderr_path.clone()]);
        if let Err(e) = write_private(&stdin_path, &bytes) {
            return failed(format!(
                "could not write its input to {}: {e}",
                stdin_path.display()
            ));
        }
        let policy = env.policy.current_policy();
        let out = if hook.sandbox && env.mode == SandboxMode::Auto {
            sandbox::run(&env.helper, &policy, &script, &options).await
        } else {
            sandbox::run_unconfined(&policy, &script, &options).await
        };
        (out, read_capped(&stderr_path, STDERR_LIMIT))
    };
    let out = match out {
        Ok(out) => out,
        Err(e) => return failed(format!("could not start: {e}")),
    };
    let duration = started.elapsed();
    if out.timed_out {
        return Ran {
            exit_code: None,
            duration,
            answer: Answer::Failed(format!(
                "timed out after {} ms and was killed",
                hook.timeout_ms
            )),
        };
    }
    let code = out.status.code();
    let answer = match code {
        0 => parse_stdout(&out.output.text()),
        2 if stderr.is_empty() => {
            Answer::Block("blocked (exit 2, no reason given on stderr)".into())
        }
        2 => Answer::Block(stderr),
        _ => {
            let mut message = format!("exited with code {code}");
            if !stderr.is_empty() {
                message.push_str(": ");
                message.push_str(&stderr);
            }
            Answer::Failed(message)
        }
    };
    Ran {
        exit_code: Some(code),
        duration,
        answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_quote_argv_and_run_strings_with_sh() {
        let argv = HookCommand::Argv(vec!["/bin/echo".into(), "it's".into()]);
        assert_eq!(
            script(&argv, "a.json", "a.err"),
            "{ '/bin/echo' 'it'\\''s'\n} < \"$TMPDIR\"/a.json 2> \"$TMPDIR\"/a.err"
        );
        let shell = HookCommand::Shell("grep -q curl # no".into());
        assert!(script(&shell, "a", "b").starts_with("{ sh -c 'grep -q curl # no'\n}"));
    }

    #[test]
    fn stdout_answers_are_read_or_refused() {
        assert_eq!(
            parse_stdout(""),
            Answer::Continue {
                input: None,
                note: None
            }
        );
        assert_eq!(
            parse_stdout("formatted 2 files"),
            Answer::Continue {
                input: None,
                note: None
            }
        );
        assert_eq!(
            parse_stdout(r#"{"note": "ran black", "input": {"command": "ls"}}"#),
            Answer::Continue {
                input: Some(serde_json::json!({"command": "ls"})),
                note: Some("ran black".into())
            }
        );
        assert!(
            matches!(parse_stdout("{not json"), Answer::Failed(m) if m.contains("not valid JSON"))
        );
        assert!(
            matches!(parse_stdout(r#"{"note": 5}"#), Answer::Failed(m) if m.contains("must be a string"))
        );
    }
}
