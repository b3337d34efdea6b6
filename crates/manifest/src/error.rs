//! The error of loading a manifest: reading, parsing and resolving its layers. Scope
//! errors (delegation, refusals) are [`crate::scope::ScopeError`].

use std::io;
use std::path::PathBuf;

use crate::manifest::Origin;

/// What went wrong loading a manifest, naming the file (and line) to fix.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A manifest file exists but cannot be read.
    #[error("cannot read manifest {}: {source}; fix its permissions or remove it", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A manifest is not valid TOML or does not fit the schema (unknown key, wrong type,
    /// bad pod name, ...), at a known place.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// The file (or `overlay`).
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// As [`ManifestError::Parse`], when the parser could not say where.
    #[error("{file}: {message}")]
    ParseUnlocated {
        /// The file (or `overlay`).
        file: String,
        /// What the parser said.
        message: String,
    },
    /// A scope target starts with `~` but no home directory is known.
    #[error(
        "cannot expand `~` in scope target {} from the {origin}: HOME is not set; set HOME or write an absolute path",
        target.display()
    )]
    NoHome {
        /// The target as written.
        target: PathBuf,
        /// The layer it came from.
        origin: Origin,
    },
    /// A scope target starts with `~name`, which pods does not expand.
    #[error(
        "scope target {} from the {origin} starts with `~name`, which is not supported; write an absolute path or `~/...`",
        target.display()
    )]
    OtherUserHome {
        /// The target as written.
        target: PathBuf,
        /// The layer it came from.
        origin: Origin,
    },
    /// A `model.extra` value has no JSON form (TOML `nan` or `inf`).
    #[error(
        "model.extra.{key} from the {origin} contains {value}, which a JSON request body cannot carry; use a finite number"
    )]
    ExtraNotJson {
        /// The top-level key under `model.extra`.
        key: String,
        /// The layer it came from.
        origin: Origin,
        /// The offending value.
        value: String,
    },
    /// A `sandbox.env_remove` entry is not a variable name or `PREFIX*`.
    #[error(
        "sandbox.env_remove entry {name:?} from the {origin} is not an environment variable name; write a name like `GITHUB_TOKEN` or a prefix like `AWS_*`"
    )]
    BadEnvName {
        /// The entry as written.
        name: String,
        /// The layer it came from.
        origin: Origin,
    },
    /// A `[[hooks]]` entry is not valid.
    #[error("[[hooks]] entry {index} of the {origin}: {reason}")]
    BadHook {
        /// 1-based position among that layer's hooks.
        index: usize,
        /// The layer it came from.
        origin: Origin,
        /// What is wrong, and how to fix it.
        reason: String,
    },
    /// An `[[mcp]]` entry is not valid.
    #[error("[[mcp]] entry {index} of the {origin}: {reason}")]
    BadMcp {
        /// 1-based position among that layer's servers.
        index: usize,
        /// The layer it came from.
        origin: Origin,
        /// What is wrong, and how to fix it.
        reason: String,
    },
    /// A `[[permissions]]` entry is not valid.
    #[error("[[permissions]] entry {index} of the {origin}: {reason}")]
    BadPermission {
        /// 1-based position among that layer's rules.
        index: usize,
        /// The layer it came from.
        origin: Origin,
        /// What is wrong, and how to fix it.
        reason: String,
    },
    /// The project manifest was refused by the loader's gate (e.g. not trusted).
    #[error("project manifest {}: {reason}", path.display())]
    ProjectRefused {
        /// The file.
        path: PathBuf,
        /// Why, and what to do.
        reason: crate::GateError,
    },
    /// A value outside the range its key allows.
    #[error("{key} = {value} is out of range: {expected}")]
    OutOfRange {
        /// The dotted key.
        key: &'static str,
        /// The value as written.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// The loader was given a relative working directory.
    #[error("working directory {} is not absolute; pass an absolute path", cwd.display())]
    RelativeCwd {
        /// The path given.
        cwd: PathBuf,
    },
}
