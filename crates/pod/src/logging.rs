//! The pod process's own log: `tracing` events and spans (an invocation, a tool
//! call) appended to `<runtime>/<name>/pod.log`, where a detached pod's stderr
//! goes too, at the level `POD_LOG` names (`error`, `warn`, `info`, `debug`,
//! `trace`; default `info`). One subscriber per process: a pod process runs
//! one pod.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;

/// The level when `POD_LOG` is unset.
pub(crate) const DEFAULT_LEVEL: LevelFilter = LevelFilter::INFO;

/// Why the log could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogError {
    /// `POD_LOG` is not a level.
    #[error("POD_LOG={0:?} is not a log level; use error, warn, info, debug or trace")]
    BadLevel(String),
    /// The log file cannot be opened.
    #[error("cannot open the pod log {}: {source}", path.display())]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The level a `POD_LOG` value names (`None`: the default).
pub(crate) fn level(value: Option<&str>) -> Result<LevelFilter, LogError> {
    match value.map(str::trim) {
        None | Some("") => Ok(DEFAULT_LEVEL),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "off" => Ok(LevelFilter::OFF),
            "error" => Ok(LevelFilter::ERROR),
            "warn" | "warning" => Ok(LevelFilter::WARN),
            "info" => Ok(LevelFilter::INFO),
            "debug" => Ok(LevelFilter::DEBUG),
            "trace" => Ok(LevelFilter::TRACE),
            _ => Err(LogError::BadLevel(v.to_string())),
        },
    }
}

/// Sends this process's `tracing` events to `pod_dir/pod.log` (mode 0600,
/// appended) at `level`. A second call in the same process keeps the first
/// subscriber (tests start several pods in one process only through the binary,
/// so that does not happen in practice).
pub(crate) fn init(pod_dir: &Path, level: LevelFilter) -> Result<(), LogError> {
    let path = pod_dir.join("pod.log");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| LogError::Open { path, source })?;
    let _ = tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_target(false)
        .with_max_level(level)
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn levels_are_read_case_blind_and_a_bad_one_is_named() {
        assert_eq!(level(None).unwrap(), LevelFilter::INFO);
        assert_eq!(level(Some("")).unwrap(), LevelFilter::INFO);
        assert_eq!(level(Some("DEBUG")).unwrap(), LevelFilter::DEBUG);
        assert_eq!(level(Some(" warn ")).unwrap(), LevelFilter::WARN);
        assert_eq!(level(Some("off")).unwrap(), LevelFilter::OFF);
        let e = level(Some("loud")).unwrap_err().to_string();
        assert!(e.contains("POD_LOG=\"loud\"") && e.contains("debug"), "{e}");
    }
}
