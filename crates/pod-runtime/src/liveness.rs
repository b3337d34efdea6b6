//! Whether a pod is alive: it holds an flock on `<pod runtime dir>/lock` for its
//! whole life (ARCHITECTURE.md rule 6), so a free lock means it is gone, however
//! it ended. A leaf module: the socket server, the spawner and the CLI all ask it.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Whether a pod whose runtime dir is `dir` is alive (someone holds its lock).
pub fn is_alive(dir: &Path) -> bool {
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(dir.join("lock"))
    else {
        return false;
    };
    // A free lock is taken here and released when `file` closes.
    !matches!(file.try_lock(), Ok(()))
}
