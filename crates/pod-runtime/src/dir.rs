//! Where pods keep things: the runtime dir (sockets, locks, status, the scope
//! registry), the state dir (session logs), the config dir (user manifest) and
//! the local model cache, resolved from the environment as ARCHITECTURE.md
//! "Names, places and files" fixes them.
//!
//! Resolution takes an explicit environment so that tests never touch the
//! process-global one.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variables that decide where pods keep their files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirEnv {
    vars: HashMap<String, String>,
    uid: u32,
}

/// Variables consulted by [`Places::resolve`], so callers can capture just these.
pub const DIR_VARS: [&str; 9] = [
    "POD_RUNTIME_DIR",
    "XDG_RUNTIME_DIR",
    "POD_HOME",
    "XDG_DATA_HOME",
    "POD_CONFIG_DIR",
    "XDG_CONFIG_HOME",
    "POD_MODEL_DIR",
    "XDG_CACHE_HOME",
    "HOME",
];

impl DirEnv {
    /// The current process's values of [`DIR_VARS`] and its real uid.
    pub fn from_process() -> Self {
        let vars = DIR_VARS
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        DirEnv {
            vars,
            uid: current_uid(),
        }
    }

    /// An environment built from explicit pairs (for tests and child processes).
    pub fn from_pairs<'a>(uid: u32, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        DirEnv {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            uid,
        }
    }

    /// A variable's value, treating empty as unset (as the XDG spec does).
    fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The real uid of this process.
pub fn current_uid() -> u32 {
    sys::uid()
}

/// Why the directories could not be resolved or prepared.
#[derive(Debug)]
pub enum DirError {
    /// Neither the variable nor `HOME` is set, so there is nowhere to put it.
    NoHome(&'static str),
    /// A directory could not be created or inspected.
    Io(PathBuf, io::Error),
    /// The runtime dir is unsafe to use (symlink, other owner, loose mode).
    Unsafe(PathBuf, String),
}

impl fmt::Display for DirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirError::NoHome(what) => write!(
                f,
                "cannot locate the pods {what} directory: HOME is not set; set HOME or the POD_* variable for it"
            ),
            DirError::Io(path, e) => write!(f, "{}: {e}", path.display()),
            DirError::Unsafe(path, why) => write!(
                f,
                "refusing to use runtime dir {}: {why}; remove it or set POD_RUNTIME_DIR to a private directory",
                path.display()
            ),
        }
    }
}

impl std::error::Error for DirError {}

/// The four places pods keep files, resolved but not yet created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    /// Sockets, locks, status files, the scope registry (`$POD_RUNTIME_DIR`).
    pub runtime: PathBuf,
    /// Session logs and per-pod metadata (`$POD_HOME`).
    pub state: PathBuf,
    /// The user manifest (`$POD_CONFIG_DIR`).
    pub config: PathBuf,
    /// The local model cache (`$POD_MODEL_DIR`).
    pub models: PathBuf,
    /// Where commands' Unix sockets must not be reached: `/run`, `$XDG_RUNTIME_DIR` and
    /// `~/.docker` (the D-Bus buses run programs outside any sandbox; container
    /// engines' sockets are root on the host).
    pub socket_dirs: Vec<PathBuf>,
}

impl Places {
    /// Resolves every place from `env`, following the documented fallbacks.
    pub fn resolve(env: &DirEnv) -> Result<Places, DirError> {
        let home = env.get("HOME").map(PathBuf::from);
        let under_home = |rel: &str, what: &'static str| {
            home.as_ref()
                .map(|h| h.join(rel))
                .ok_or(DirError::NoHome(what))
        };
        let runtime = match (env.get("POD_RUNTIME_DIR"), env.get("XDG_RUNTIME_DIR")) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Some(xdg)) => Path::new(xdg).join("pods"),
            (None, None) => PathBuf::from(format!("/tmp/pods-{}", env.uid)),
        };
        let state = match (env.get("POD_HOME"), env.get("XDG_DATA_HOME")) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Some(xdg)) => Path::new(xdg).join("pods"),
            (None, None) => under_home(".local/share/pods", "state")?,
        };
        let config = match (env.get("POD_CONFIG_DIR"), env.get("XDG_CONFIG_HOME")) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Some(xdg)) => Path::new(xdg).join("pods"),
            (None, None) => under_home(".config/pods", "config")?,
        };
        let models = match (env.get("POD_MODEL_DIR"), env.get("XDG_CACHE_HOME")) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Some(xdg)) => Path::new(xdg).join("pods/models"),
            (None, None) => under_home(".cache/pods/models", "model cache")?,
        };
        let mut socket_dirs = vec![PathBuf::from("/run")];
        // Its own root even under /run: it is usually a tmpfs of its own, and the
        // search does not cross into other filesystems.
        if let Some(xdg) = env.get("XDG_RUNTIME_DIR").map(PathBuf::from)
            && xdg.is_absolute()
        {
            socket_dirs.push(xdg);
        }
        // Docker Desktop keeps its engine's socket (root on the host) there.
        if let Some(home) = home.as_ref().filter(|h| h.is_absolute()) {
            socket_dirs.push(home.join(".docker"));
        }
        Ok(Places {
            runtime,
            state,
            config,
            models,
            socket_dirs,
        })
    }

    /// The session directory of a pod, by full name.
    pub fn session_dir(&self, full_name: &str) -> PathBuf {
        self.state.join("sessions").join(full_name)
    }

    /// A pod's own runtime directory (socket, lock, status), by full name.
    pub fn pod_runtime_dir(&self, full_name: &str) -> PathBuf {
        self.runtime.join(full_name)
    }
}

/// The longest socket path `sun_path` takes (108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Where the socket of a pod with runtime dir `pod_dir` lives: `<pod_dir>/sock`,
/// or, when that is longer than `sun_path` allows, `<runtime>/s/<name hash>.sock`.
pub fn socket_path(runtime: &Path, pod_dir: &Path, full_name: &str) -> PathBuf {
    let direct = pod_dir.join("sock");
    if direct.as_os_str().len() <= MAX_SOCKET_PATH {
        return direct;
    }
    // FNV-1a: stable across builds, and short.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in full_name.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    runtime.join("s").join(format!("{hash:016x}.sock"))
}

/// Creates `path` with mode 0700 (and missing parents) unless it exists; its
/// metadata, not following a symlink.
fn create_0700(path: &Path) -> Result<std::fs::Metadata, DirError> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(DirError::Io(path.to_path_buf(), e)),
    }
    std::fs::symlink_metadata(path).map_err(|e| DirError::Io(path.to_path_buf(), e))
}

/// Creates `path` (mode 0700, with missing parents) or, when it exists as our
/// own directory with a looser mode, tightens it to 0700: the state dir holds
/// every conversation, so it is private whatever the umask was.
pub fn make_private_dir(path: &Path, uid: u32) -> Result<(), DirError> {
    let meta = create_0700(path)?;
    if meta.is_dir() && meta.uid() == uid && meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| DirError::Io(path.to_path_buf(), e))?;
    }
    Ok(())
}

/// Creates the runtime dir (mode 0700) if missing and checks that it is safe:
/// a real directory (not a symlink), owned by `uid`, reachable by nobody else.
///
/// Rule 4 of the architecture: sockets in it are the pods' only door, so a
/// directory another user controls or can enter is refused rather than fixed.
pub fn ensure_private_dir(path: &Path, uid: u32) -> Result<(), DirError> {
    let meta = create_0700(path)?;
    if meta.file_type().is_symlink() {
        return Err(DirError::Unsafe(path.into(), "it is a symlink".into()));
    }
    if !meta.is_dir() {
        return Err(DirError::Unsafe(
            path.into(),
            "it is not a directory".into(),
        ));
    }
    if meta.uid() != uid {
        return Err(DirError::Unsafe(
            path.into(),
            format!("it is owned by uid {}, not by us (uid {uid})", meta.uid()),
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(DirError::Unsafe(
            path.into(),
            format!("its mode is {mode:o}; it must be 700 (chmod 700 it)"),
        ));
    }
    Ok(())
}

/// What a pod knows of a child it spawned: how to reach it, what scope it
/// was given, and enough to find and stop its process. Logged in the parent's
/// session (`child_spawned`), so a restored parent gets its children back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpawnedPodRecord {
    /// The child's short name (the key the spawner uses).
    pub pod_name: String,
    /// Its socket, connectable as recorded (at most 107 bytes).
    pub socket_path: PathBuf,
    /// The write scope moved to it (recursive rules).
    pub scope_delegated: Vec<manifest::ScopeRule>,
    /// Its full name (`<parent>.<name>`).
    pub full_name: String,
    /// Its instance id in the scope registry.
    pub instance_id: String,
    /// Its process id (the leader of its process group).
    pub pid: u32,
    /// The task it was started with.
    pub task: String,
    /// When it was spawned (Unix milliseconds).
    pub created_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_socket_paths_move_to_a_short_alias() {
        let runtime = Path::new("/run/user/1000/pods");
        let short = socket_path(runtime, &runtime.join("main"), "main");
        assert_eq!(short, runtime.join("main/sock"));
        let name = "a".repeat(32) + "." + &"b".repeat(32) + "." + &"c".repeat(32);
        let long = socket_path(runtime, &runtime.join(&name), &name);
        assert!(long.starts_with(runtime.join("s")));
        assert!(long.as_os_str().len() <= MAX_SOCKET_PATH);
        assert_eq!(long, socket_path(runtime, &runtime.join(&name), &name));
    }

    #[test]
    fn pod_variables_win_over_xdg_and_home() {
        let env = DirEnv::from_pairs(
            1000,
            [
                ("POD_RUNTIME_DIR", "/r"),
                ("XDG_RUNTIME_DIR", "/xr"),
                ("POD_HOME", "/s"),
                ("XDG_DATA_HOME", "/xs"),
                ("POD_CONFIG_DIR", "/c"),
                ("XDG_CONFIG_HOME", "/xc"),
                ("POD_MODEL_DIR", "/m"),
                ("XDG_CACHE_HOME", "/xm"),
                ("HOME", "/h"),
            ],
        );
        let p = Places::resolve(&env).unwrap();
        assert_eq!(
            p,
            Places {
                runtime: "/r".into(),
                state: "/s".into(),
                config: "/c".into(),
                models: "/m".into(),
                socket_dirs: vec!["/run".into(), "/xr".into(), "/h/.docker".into()],
            }
        );
    }

    #[test]
    fn xdg_then_home_then_tmp() {
        let env = DirEnv::from_pairs(
            1000,
            [
                ("XDG_RUNTIME_DIR", "/run/user/1000"),
                ("XDG_DATA_HOME", "/xs"),
                ("XDG_CONFIG_HOME", "/xc"),
                ("XDG_CACHE_HOME", "/xm"),
            ],
        );
        let p = Places::resolve(&env).unwrap();
        assert_eq!(p.runtime, PathBuf::from("/run/user/1000/pods"));
        assert_eq!(p.state, PathBuf::from("/xs/pods"));
        assert_eq!(p.config, PathBuf::from("/xc/pods"));
        assert_eq!(p.models, PathBuf::from("/xm/pods/models"));
        assert_eq!(
            p.socket_dirs,
            vec![PathBuf::from("/run"), PathBuf::from("/run/user/1000")],
            "no HOME"
        );
        let elsewhere = DirEnv::from_pairs(7, [("HOME", "/h"), ("XDG_RUNTIME_DIR", "/xr")]);
        assert_eq!(
            Places::resolve(&elsewhere).unwrap().socket_dirs,
            vec![
                PathBuf::from("/run"),
                PathBuf::from("/xr"),
                PathBuf::from("/h/.docker")
            ]
        );

        let env = DirEnv::from_pairs(42, [("HOME", "/h"), ("XDG_DATA_HOME", "")]);
        let p = Places::resolve(&env).unwrap();
        assert_eq!(p.runtime, PathBuf::from("/tmp/pods-42"));
        assert_eq!(p.state, PathBuf::from("/h/.local/share/pods"));
        assert_eq!(p.config, PathBuf::from("/h/.config/pods"));
        assert_eq!(p.models, PathBuf::from("/h/.cache/pods/models"));
        assert_eq!(
            p.session_dir("a.b"),
            PathBuf::from("/h/.local/share/pods/sessions/a.b")
        );
        assert_eq!(p.pod_runtime_dir("a.b"), PathBuf::from("/tmp/pods-42/a.b"));
    }

    #[test]
    fn no_home_is_a_clear_error() {
        let err = Places::resolve(&DirEnv::from_pairs(1, [])).unwrap_err();
        assert!(err.to_string().contains("HOME is not set"), "{err}");
    }

    #[test]
    fn private_dir_is_created_0700_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let uid = current_uid();
        let dir = tmp.path().join("a/runtime");
        ensure_private_dir(&dir, uid).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Idempotent.
        ensure_private_dir(&dir, uid).unwrap();

        let err = ensure_private_dir(&dir, uid + 1).unwrap_err();
        assert!(err.to_string().contains("owned by uid"), "{err}");

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private_dir(&dir, uid).unwrap_err();
        assert!(err.to_string().contains("mode is 755"), "{err}");

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = ensure_private_dir(&link, uid).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");

        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = ensure_private_dir(&file, uid).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
