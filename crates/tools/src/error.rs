//! Why a file tool call failed, worded for the model that made it: what happened, to
//! which path, and what to do next.

use std::io;
use std::path::PathBuf;

use tool::ToolError;

use crate::scoped_fs::AccessError;

/// A failed file tool call.
#[derive(Debug, thiserror::Error)]
pub enum FileToolError {
    /// The arguments did not parse or are out of range.
    #[error("{0}")]
    BadInput(String),
    /// The scope, a protected directory or the filesystem refused the access.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Read of a file that is neither text nor a recognised image.
    #[error("{} is a binary file ({reason}); Read shows text files only", path.display())]
    Binary {
        /// The file.
        path: PathBuf,
        /// Where the binary data was found.
        reason: String,
    },
    /// Edit of a file that is not UTF-8 text.
    #[error(
        "{} is not UTF-8 text ({reason}); Edit changes text files only (use Write to replace it whole)",
        path.display()
    )]
    NotText {
        /// The file.
        path: PathBuf,
        /// Where the problem was found.
        reason: String,
    },
    /// An overwrite or edit of an existing file this pod has not read.
    #[error(
        "{} exists and this pod has not read it: Read it first, then write it (so that nothing in it is lost unseen)",
        path.display()
    )]
    NotRead {
        /// The file.
        path: PathBuf,
    },
    /// An overwrite or edit of a file that changed since this pod read it.
    #[error(
        "{} changed since your last Read ({what}); Read it again and redo the change on its current content",
        path.display()
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// What differs (size, content).
        what: String,
    },
    /// Edit of a file that does not exist.
    #[error("{} does not exist; use Write to create it", path.display())]
    EditMissing {
        /// The file.
        path: PathBuf,
    },
    /// Edit whose `old_string` is not in the file.
    #[error(
        "old_string was not found in {}; it must match the file exactly, including whitespace and indentation; Read the file and copy the text",
        path.display()
    )]
    NoMatch {
        /// The file.
        path: PathBuf,
    },
    /// Edit whose `old_string` occurs more than once, without `replace_all`.
    #[error(
        "old_string matches {count} times in {}; include more surrounding lines to make it unique, or set replace_all to change all {count}",
        path.display()
    )]
    NotUnique {
        /// The file.
        path: PathBuf,
        /// How many times it occurs.
        count: usize,
    },
    /// Reading a file that was opened failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A blocking task running the tool died.
    #[error("the tool's worker thread failed: {0}")]
    Task(String),
}

impl From<FileToolError> for ToolError {
    fn from(err: FileToolError) -> Self {
        match err {
            FileToolError::BadInput(_) => ToolError::InvalidArgument(err.to_string()),
            _ => ToolError::ExecutionFailed(err.to_string()),
        }
    }
}
