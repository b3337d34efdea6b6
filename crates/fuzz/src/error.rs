//! [`FuzzError`]: why a run could not go on. A broken invariant is not one of
//! these: it is a panic, caught and reported as a [`crate::Failure`].

use std::io;
use std::path::PathBuf;

/// A failure of the fuzzing environment (files, threads, seeds), as opposed to
/// a finding in the code under test.
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    /// A file or directory the harness needs could not be used.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "create directory", ...).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A harness could not be set up (a fixture missing, a seed session not written).
    #[error("target {target}: {message}")]
    Setup {
        /// The target's name.
        target: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The thread that runs the inputs could not be started.
    #[error("cannot start the fuzzing thread: {0}")]
    Thread(#[source] io::Error),
    /// The thread that runs the inputs ended without a report (it panicked
    /// outside an input, e.g. while building its harness).
    #[error("the fuzzing thread of {0} ended without a report")]
    WorkerDied(&'static str),
    /// No target has this name.
    #[error("unknown target {name:?}; known targets: {known}")]
    UnknownTarget {
        /// The name given.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
}

impl FuzzError {
    /// An [`FuzzError::Io`] for `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        FuzzError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// A [`FuzzError::Setup`] of `target`.
    pub fn setup(target: &'static str, message: impl Into<String>) -> Self {
        FuzzError::Setup {
            target,
            message: message.into(),
        }
    }
}
