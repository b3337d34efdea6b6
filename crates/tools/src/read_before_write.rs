//! The read-before-write rule: a pod may overwrite or edit an existing file only if it has
//! read it and the file has not changed since. Creating a new file needs no read.
//!
//! "Changed" is judged by content (a SHA-256 of the bytes), not by timestamps: a file
//! touched but not changed is still the one the model saw, and a file changed within the
//! same timestamp tick is still caught.

use std::io::Read as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::context::{ReadRecord, ToolContext};
use crate::error::FileToolError;
use crate::scoped_fs::{AccessError, CheckedPath, Written};

/// A file's bytes as they are now, and the record of having seen them.
pub(crate) struct Snapshot {
    /// The whole content.
    pub bytes: Vec<u8>,
    /// Hash, size and modification time of that content.
    pub record: ReadRecord,
}

/// SHA-256 of `bytes`.
pub(crate) fn content_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Reads the whole checked file beneath its anchor; `None` when it does not exist.
pub(crate) fn read_whole(checked: &CheckedPath) -> Result<Option<Snapshot>, FileToolError> {
    let mut file = match checked.open_read() {
        Ok(file) => file,
        Err(AccessError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let read_err = |source| FileToolError::Read {
        path: checked.canonical().to_path_buf(),
        source,
    };
    let meta = file.metadata().map_err(read_err)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(read_err)?;
    let record = ReadRecord {
        hash: content_hash(&bytes),
        modified: meta.modified().ok(),
        size: bytes.len() as u64,
    };
    Ok(Some(Snapshot { bytes, record }))
}

/// Enforces the rule for a write to `checked`: returns the file's current bytes when it
/// exists (and this pod read exactly them), `None` when it does not exist.
pub(crate) fn current_if_read(
    ctx: &ToolContext,
    checked: &CheckedPath,
) -> Result<Option<Vec<u8>>, FileToolError> {
    let Some(now) = read_whole(checked)? else {
        return Ok(None);
    };
    let path = checked.canonical().to_path_buf();
    let Some(seen) = ctx.read_record(&path) else {
        return Err(FileToolError::NotRead { path });
    };
    if seen.hash != now.record.hash {
        let what = if seen.size == now.record.size {
            format!("same size, {} bytes, different content", seen.size)
        } else {
            format!("it was {} bytes, now {}", seen.size, now.record.size)
        };
        return Err(FileToolError::Changed { path, what });
    }
    Ok(Some(now.bytes))
}

/// Records that this pod knows the file it just wrote: it may write it again without
/// another Read.
pub(crate) fn record_written(ctx: &ToolContext, canonical: &Path, bytes: &[u8], written: &Written) {
    ctx.record_read(
        canonical.to_path_buf(),
        ReadRecord {
            hash: content_hash(bytes),
            modified: written.modified,
            size: written.size,
        },
    );
}
