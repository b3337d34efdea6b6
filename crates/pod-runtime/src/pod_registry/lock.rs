//! The registry lock: an exclusive `flock` on `pods.json.lock`, a file beside the registry
//! that is never renamed or deleted (locking the data file itself would break on every
//! rename). Attempts are non-blocking with jittered backoff up to a short deadline; on
//! timeout the error names the holder. Network filesystems are refused, since flock there
//! is emulated or local to one client.
//!
//! Everything here blocks the calling thread for up to the deadline: async callers run
//! it under `tokio::task::spawn_blocking`.

use std::ffi::OsString;
use std::fs::TryLockError;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::RegistryError;
use super::document::{Registry, read_registry, write_atomically};
use crate::dir::{current_uid, ensure_private_dir};

/// How long [`LockFileGuard::open`] waits for the lock by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Size of the holder record written at the start of the lock file: one `pwrite` of a
/// fixed size, so a reader never sees a shorter, stale tail after a longer one.
const HOLDER_RECORD_LEN: usize = 128;

/// First and longest pause between two lock attempts.
const FIRST_BACKOFF: Duration = Duration::from_micros(100);
const MAX_BACKOFF: Duration = Duration::from_millis(2);

/// How to take the registry lock.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Give up after this long.
    pub timeout: Duration,
    /// Who we are, as a waiting process's error will name us (e.g. `pod "api"`);
    /// `None` names the program (`/proc/self/comm`).
    pub holder: Option<String>,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            timeout: DEFAULT_LOCK_TIMEOUT,
            holder: None,
        }
    }
}

impl LockOptions {
    /// Options naming the holder as pod `full_name`.
    pub fn for_pod(full_name: &str) -> Self {
        LockOptions {
            holder: Some(format!("pod \"{full_name}\"")),
            ..LockOptions::default()
        }
    }

    /// The same options with another timeout.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        LockOptions { timeout, ..self }
    }
}

/// The process that held the registry lock when we gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// Its pid (from `/proc/locks`, else from the lock file's record).
    pub pid: u32,
    /// What it called itself in the lock file (`pod "api"`), when that record is its own.
    pub label: Option<String>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if let Some(label) = &self.label {
            write!(f, " ({label})")?;
        }
        Ok(())
    }
}

/// Holds the registry's exclusive lock until dropped, and gives access to the document
/// under it: [`LockFileGuard::load`], then [`LockFileGuard::save`] (or one of the
/// operations that do both, such as [`LockFileGuard::claim`]).
#[derive(Debug)]
pub struct LockFileGuard {
    /// The open lock file; the flock lives exactly as long as this descriptor.
    _lock_file: File,
    lock_path: PathBuf,
    registry_path: PathBuf,
    runtime_dir: PathBuf,
}

impl LockFileGuard {
    /// Takes the lock of the registry at `registry_path` (locking `registry_path` +
    /// `.lock`), waiting up to [`DEFAULT_LOCK_TIMEOUT`]. Creates the runtime directory
    /// (0700) and the lock file if needed.
    pub fn open(registry_path: &Path) -> Result<LockFileGuard, RegistryError> {
        Self::open_with(registry_path, &LockOptions::default())
    }

    /// [`LockFileGuard::open`] with explicit options (timeout, holder name).
    pub fn open_with(
        registry_path: &Path,
        options: &LockOptions,
    ) -> Result<LockFileGuard, RegistryError> {
        let runtime_dir = match registry_path.parent() {
            Some(dir) if registry_path.is_absolute() && registry_path.file_name().is_some() => {
                dir.to_path_buf()
            }
            _ => return Err(RegistryError::BadRegistryPath(registry_path.to_path_buf())),
        };
        ensure_private_dir(&runtime_dir, current_uid())?;
        let lock_path = lock_path_for(registry_path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .map_err(|source| RegistryError::Io {
                action: "open the registry lock",
                path: lock_path.clone(),
                source,
            })?;
        refuse_network_fs(&file, &lock_path)?;
        acquire(&file, &lock_path, options.timeout)?;
        // Best effort: the record only improves a waiter's error message.
        let _ = write_holder_record(&file, options.holder.as_deref());
        Ok(LockFileGuard {
            _lock_file: file,
            lock_path,
            registry_path: registry_path.to_path_buf(),
            runtime_dir,
        })
    }

    /// The registry file this guard protects.
    pub fn registry_path(&self) -> &Path {
        &self.registry_path
    }

    /// The lock file held.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// The runtime directory the registry lives in (pods' lock files are below it).
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// Reads the registry (empty when the file does not exist yet). A corrupt file is an
    /// error naming it; it is never replaced behind the caller's back.
    pub fn load(&self) -> Result<Registry, RegistryError> {
        read_registry(&self.registry_path)
    }

    /// Writes `registry` crash-safely (temp file, fsync, rename, fsync of the directory).
    pub fn save(&mut self, registry: &Registry) -> Result<(), RegistryError> {
        self.save_with_pre_rename_hook(registry, &mut |_| failpoint_mid_save())
    }

    /// [`LockFileGuard::save`] calling `hook` with the temp file's path after it is
    /// written and fsynced and before it is renamed into place: the crash point that
    /// tests kill a writer at.
    pub fn save_with_pre_rename_hook(
        &mut self,
        registry: &Registry,
        hook: &mut dyn FnMut(&Path),
    ) -> Result<(), RegistryError> {
        let bytes = registry.to_json()?;
        write_atomically(&self.registry_path, &bytes, hook)
    }
}

/// The environment variable of the test-only failpoint below, and its value.
pub const FAILPOINT_VAR: (&str, &str) = ("POD_FAILPOINT", "registry-mid-save");

/// A test-only failpoint: with `POD_FAILPOINT=registry-mid-save` the process
/// kills itself (SIGKILL) after writing the new registry and before renaming
/// it into place, as a crash there would; the chaos test sets it, nothing
/// else does.
fn failpoint_mid_save() {
    if std::env::var_os(FAILPOINT_VAR.0).is_some_and(|v| v == FAILPOINT_VAR.1) {
        let _ = sys::kill(std::process::id());
    }
}

/// `pods.json` → `pods.json.lock`.
fn lock_path_for(registry_path: &Path) -> PathBuf {
    let mut name: OsString = registry_path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Tries `LOCK_EX | LOCK_NB` until it succeeds or `timeout` passes.
fn acquire(file: &File, lock_path: &Path, timeout: Duration) -> Result<(), RegistryError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut backoff = FIRST_BACKOFF;
    let mut jitter = Jitter::seeded();
    loop {
        // flock(2) LOCK_EX | LOCK_NB on Linux.
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(TryLockError::Error(source)) => {
                return Err(RegistryError::Io {
                    action: "lock",
                    path: lock_path.to_path_buf(),
                    source,
                });
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(RegistryError::LockTimeout {
                path: lock_path.to_path_buf(),
                waited: timeout,
                holder: find_holder(file),
            });
        }
        // Sleep between half and all of the current backoff, so that many waiters
        // released at once do not retry in lockstep.
        let pause = jitter.between(backoff / 2, backoff).min(deadline - now);
        std::thread::sleep(pause);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A small xorshift generator for backoff jitter; quality does not matter, only that
/// processes differ.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Jitter {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Jitter((u64::from(std::process::id()) << 32 | u64::from(nanos)) | 1)
    }

    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let span = high.saturating_sub(low).as_nanos().max(1);
        let offset = u128::from(self.0) % span;
        low + Duration::from_nanos(u64::try_from(offset).unwrap_or(0))
    }
}

/// Writes `<pid>\t<label>\n` padded to [`HOLDER_RECORD_LEN`] at the start of the lock
/// file.
fn write_holder_record(file: &File, holder: Option<&str>) -> io::Result<()> {
    let label = match holder {
        Some(label) => label.to_owned(),
        None => std::fs::read_to_string("/proc/self/comm")
            .map(|comm| format!("process \"{}\"", comm.trim()))
            .unwrap_or_default(),
    };
    let mut record = format!("{}\t{}", std::process::id(), label.replace('\n', " "));
    if record.len() > HOLDER_RECORD_LEN - 1 {
        let mut cut = HOLDER_RECORD_LEN - 1;
        while !record.is_char_boundary(cut) {
            cut -= 1;
        }
        record.truncate(cut);
    }
    let mut bytes = record.into_bytes();
    bytes.resize(HOLDER_RECORD_LEN - 1, b' ');
    bytes.push(b'\n');
    file.write_all_at(&bytes, 0)
}

/// Parses a holder record: `(pid, label)`.
fn parse_holder_record(text: &str) -> Option<(u32, Option<String>)> {
    let line = text.lines().next()?.trim_end();
    let (pid, label) = match line.split_once('\t') {
        Some((pid, label)) => (pid, Some(label.trim().to_owned()).filter(|l| !l.is_empty())),
        None => (line, None),
    };
    Some((pid.trim().parse().ok()?, label))
}

/// Who holds the flock on `file`: the pid from `/proc/locks` (the kernel's truth), named
/// by the lock file's record when the record is that pid's; else the record alone.
fn find_holder(file: &File) -> Option<LockHolder> {
    let mut text = String::new();
    let mut buf = [0u8; HOLDER_RECORD_LEN];
    if let Ok(n) = file.read_at(&mut buf, 0) {
        text = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
    let record = parse_holder_record(&text);
    let from_kernel = file.metadata().ok().and_then(|meta| {
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        flock_holder_pid(&locks, meta.dev(), meta.ino())
    });
    match (from_kernel, record) {
        (Some(pid), Some((rpid, label))) if pid == rpid => Some(LockHolder { pid, label }),
        (Some(pid), _) => Some(LockHolder { pid, label: None }),
        (None, Some((pid, label))) => Some(LockHolder { pid, label }),
        (None, None) => None,
    }
}

/// The pid holding an FLOCK on (dev, ino) in `/proc/locks` text. Lines look like
/// `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF`, the device as hex
/// `major:minor`; lines of blocked waiters (`1: -> FLOCK ...`) are skipped.
fn flock_holder_pid(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    let want_ino = format!(":{ino}");
    let mut inode_only = None;
    for line in locks.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            continue;
        }
        let (Some(pid), Some(id)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if *id == want {
            return Some(pid);
        }
        // Some filesystems (overlayfs) report another device than stat does.
        if id.ends_with(&want_ino) && inode_only.is_none() {
            inode_only = Some(pid);
        }
    }
    inode_only
}

/// Filesystem magic numbers (`statfs.f_type`) of network and cluster filesystems, where
/// flock is not a reliable mutual exclusion between processes on one machine.
const NETWORK_FILESYSTEMS: [(u32, &str); 12] = [
    (0x6969, "NFS"),
    (0x517b, "SMB"),
    (0xff53_4d42, "CIFS"),
    (0xfe53_4d42, "SMB2"),
    (0x7375_7245, "Coda"),
    (0x5346_414f, "AFS"),
    (0x6b41_4653, "AFS"),
    (0x564c, "NCP"),
    (0x00c3_6400, "Ceph"),
    (0x0102_1997, "9p"),
    (0x0116_1970, "GFS2"),
    (0x0bd0_0bd0, "Lustre"),
];

/// The name of the network filesystem with magic `f_type`, if it is one.
pub(crate) fn network_fs_name(f_type: u32) -> Option<&'static str> {
    NETWORK_FILESYSTEMS
        .iter()
        .find(|(magic, _)| *magic == f_type)
        .map(|(_, name)| *name)
}

/// Refuses a lock file on a network filesystem.
fn refuse_network_fs(file: &File, path: &Path) -> Result<(), RegistryError> {
    let magic = sys::filesystem_magic(file).map_err(|source| RegistryError::Io {
        action: "statfs",
        path: path.to_path_buf(),
        source,
    })?;
    match network_fs_name(magic) {
        Some(fs) => Err(RegistryError::NetworkFilesystem {
            path: path.to_path_buf(),
            fs,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_filesystems_are_recognised_and_local_ones_not() {
        assert_eq!(network_fs_name(0x6969), Some("NFS"));
        assert_eq!(network_fs_name(0xff53_4d42), Some("CIFS"));
        assert_eq!(network_fs_name(0xfe53_4d42), Some("SMB2"));
        assert_eq!(network_fs_name(0x0102_1997), Some("9p"));
        // ext4, tmpfs, btrfs, xfs, overlayfs
        for local in [0xef53, 0x0102_1994, 0x9123_683e, 0x5846_5342, 0x794c_7630] {
            assert_eq!(network_fs_name(local), None, "{local:#x}");
        }
    }

    #[test]
    fn proc_locks_lines_give_the_holder() {
        let locks = "1: POSIX  ADVISORY  WRITE 11 fd:01:777 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 5555 fd:01:1234 0 EOF\n";
        let dev = libc::makedev(0xfd, 0x01);
        assert_eq!(flock_holder_pid(locks, dev, 1234), Some(4242));
        assert_eq!(flock_holder_pid(locks, dev, 777), None);
        // Device mismatch (overlayfs): fall back to the inode alone.
        assert_eq!(
            flock_holder_pid(locks, libc::makedev(0, 0x33), 1234),
            Some(4242)
        );
    }

    #[test]
    fn holder_records_round_trip_and_stay_fixed_size() {
        let dir = tempfile::tempdir().unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.path().join("l"))
            .unwrap();
        write_holder_record(&file, Some(&format!("pod \"{}\"", "x".repeat(300)))).unwrap();
        write_holder_record(&file, Some("pod \"api\"")).unwrap();
        let text = std::fs::read_to_string(dir.path().join("l")).unwrap();
        assert_eq!(text.len(), HOLDER_RECORD_LEN);
        assert_eq!(
            parse_holder_record(&text),
            Some((std::process::id(), Some("pod \"api\"".into())))
        );
        assert_eq!(parse_holder_record("12\n"), Some((12, None)));
        assert_eq!(parse_holder_record(""), None);
        assert_eq!(parse_holder_record("garbage\tx"), None);
    }

    #[test]
    fn lock_is_exclusive_and_times_out_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        // tempfile's dirs follow the umask; the guard creates its runtime dir 0700.
        let path = dir.path().join("runtime/pods.json");
        let first = LockFileGuard::open_with(&path, &LockOptions::for_pod("api")).unwrap();
        let short = LockOptions::default().with_timeout(Duration::from_millis(50));
        // A second open file description in this process conflicts like another process.
        let err = LockFileGuard::open_with(&path, &short).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "registry lock {} held by pid {} (pod \"api\") for more than 50 ms",
                first.lock_path().display(),
                std::process::id()
            )),
            "{text}"
        );
        drop(first);
        let again = LockFileGuard::open_with(&path, &short).unwrap();
        assert!(again.lock_path().ends_with("pods.json.lock"));
    }

    #[test]
    fn bad_registry_paths_are_refused() {
        for bad in ["/", "pods.json", ""] {
            let err = LockFileGuard::open(Path::new(bad)).unwrap_err();
            assert!(
                matches!(err, RegistryError::BadRegistryPath(_)),
                "{bad}: {err:?}"
            );
        }
    }
}
