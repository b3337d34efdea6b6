//! The registry document `pods.json`: its JSON shape (`{"version":1,"pods":[...]}`),
//! strict reading (a corrupt file is reported, never replaced), and crash-safe writing
//! (temp file in the same directory, fsync, rename, fsync of the directory).
//!
//! Fields this version does not know are kept in `extra` and written back, so an older
//! pods does not strip what a newer one recorded.

use std::io;
use std::path::{Path, PathBuf};

use manifest::ScopeRule;
use serde::{Deserialize, Serialize};

use super::RegistryError;
use super::liveness::{ProcessIdentity, new_instance_id};

/// The document version this code reads and writes.
pub const REGISTRY_VERSION: u32 = 1;

/// Whether a registered pod runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PodState {
    /// Its process runs and holds its lock.
    Live,
    /// Its process is gone but child pods it delegated to still run, so it keeps what is
    /// left of its grant until they are gone too.
    Suspended,
}

/// One pod in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodEntry {
    /// Full name (`parent.child`); also names its runtime directory.
    pub full_name: String,
    /// This incarnation's UUID; parent links use it, never the name.
    pub instance_id: String,
    /// The instance id of the pod that delegated this pod's grant, if any.
    #[serde(default)]
    pub parent_instance_id: Option<String>,
    /// Process id of the pod.
    pub pid: u32,
    /// Process start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub(crate) start_time: u64,
    /// Host name when it registered.
    pub host: String,
    /// Boot id when it registered.
    pub boot_id: String,
    /// Its socket, connectable as is.
    pub socket_path: PathBuf,
    /// Write rules granted to it, canonical targets; delegated subtrees stay listed here
    /// (see `delegated`).
    #[serde(default)]
    pub write_rules: Vec<ScopeRule>,
    /// Canonical roots carved out of `write_rules` and delegated to child pods: still
    /// this pod's as far as third pods are concerned, no longer writable by it.
    #[serde(default)]
    pub delegated: Vec<PathBuf>,
    /// Live or suspended.
    pub state: PodState,
    /// Fields written by a newer pods, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl PodEntry {
    /// A live entry for the process `identity`, with a fresh instance id, no parent and
    /// no grants yet.
    pub fn new(
        full_name: impl Into<String>,
        socket_path: impl Into<PathBuf>,
        identity: ProcessIdentity,
    ) -> Result<Self, RegistryError> {
        Ok(PodEntry {
            full_name: full_name.into(),
            instance_id: new_instance_id()?,
            parent_instance_id: None,
            pid: identity.pid,
            start_time: identity.start_time,
            host: identity.host,
            boot_id: identity.boot_id,
            socket_path: socket_path.into(),
            write_rules: Vec::new(),
            delegated: Vec::new(),
            state: PodState::Live,
            extra: serde_json::Map::new(),
        })
    }

    /// The same entry with `rules` as its write rules (read rules are dropped on claim).
    pub fn with_write_rules(mut self, rules: impl IntoIterator<Item = ScopeRule>) -> Self {
        self.write_rules = rules.into_iter().collect();
        self
    }

    /// `pod "name" (pid N)`, as messages name a pod.
    pub fn describe(&self) -> String {
        format!("pod \"{}\" (pid {})", self.full_name, self.pid)
    }
}

/// The whole registry document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    /// Document version; this code handles [`REGISTRY_VERSION`].
    pub version: u32,
    /// Every registered pod, in registration order.
    pub pods: Vec<PodEntry>,
    /// Fields written by a newer pods, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            version: REGISTRY_VERSION,
            pods: Vec::new(),
            extra: serde_json::Map::new(),
        }
    }
}

/// Just the version, to tell a newer document from a broken one.
#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

impl Registry {
    /// Parses a registry document; `path` only names it in errors.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Self, RegistryError> {
        let version_error = |found: u32| RegistryError::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
        };
        match serde_json::from_slice::<Registry>(bytes) {
            Ok(registry) if registry.version == REGISTRY_VERSION => Ok(registry),
            Ok(registry) => Err(version_error(registry.version)),
            Err(err) => match serde_json::from_slice::<VersionOnly>(bytes) {
                Ok(v) if v.version != REGISTRY_VERSION => Err(version_error(v.version)),
                _ => Err(RegistryError::Corrupt {
                    path: path.to_path_buf(),
                    line: err.line(),
                    column: err.column(),
                    message: strip_position(&err.to_string()),
                }),
            },
        }
    }

    /// The document as written to disk: pretty JSON with a final newline.
    pub(crate) fn to_json(&self) -> Result<Vec<u8>, RegistryError> {
        let mut bytes =
            serde_json::to_vec_pretty(self).map_err(|e| RegistryError::Encode(e.to_string()))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// The entry with instance id `instance`.
    pub fn get(&self, instance: &str) -> Option<&PodEntry> {
        self.pods.iter().find(|p| p.instance_id == instance)
    }
}

/// serde_json appends ` at line L column C`; the error shows them separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Reads the registry at `path`; a missing file is an empty registry.
pub(crate) fn read_registry(path: &Path) -> Result<Registry, RegistryError> {
    match std::fs::read(path) {
        Ok(bytes) => Registry::from_json(&bytes, path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Registry::default()),
        Err(source) => Err(RegistryError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Replaces `path` with `bytes` so that a crash at any point leaves either the old or the
/// new document (see [`sys::replace_file_durably`]; `before_rename` is a test's crash point).
pub(crate) fn write_atomically(
    path: &Path,
    bytes: &[u8],
    before_rename: &mut dyn FnMut(&Path),
) -> Result<(), RegistryError> {
    sys::replace_file_durably(path, bytes, 0o600, before_rename).map_err(|e| RegistryError::Io {
        action: e.action,
        path: e.path,
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PodEntry {
        PodEntry {
            full_name: "api".into(),
            instance_id: "7d0f6f1e-2b0a-4c43-9a53-7d8f1f0c2b11".into(),
            parent_instance_id: None,
            pid: 4242,
            start_time: 12345,
            host: "box".into(),
            boot_id: "b".into(),
            socket_path: "/run/pods/api/sock".into(),
            write_rules: vec![ScopeRule::recursive("/repo", manifest::Permission::Write)],
            delegated: vec![],
            state: PodState::Live,
            extra: serde_json::Map::new(),
        }
    }

    #[test]
    fn round_trips_and_keeps_unknown_fields() {
        let text = r#"{"version":1,"future":true,"pods":[{"full_name":"api",
            "instance_id":"7d0f6f1e-2b0a-4c43-9a53-7d8f1f0c2b11","pid":4242,"start_time":12345,
            "host":"box","boot_id":"b","socket_path":"/run/pods/api/sock",
            "write_rules":[{"target":"/repo","permission":"write","recursive":true}],
            "state":"live","color":"blue"}]}"#;
        let reg = Registry::from_json(text.as_bytes(), Path::new("/r/pods.json")).unwrap();
        let mut expected = sample();
        expected.extra.insert("color".into(), "blue".into());
        assert_eq!(reg.pods, vec![expected]);
        assert_eq!(
            reg.extra.get("future"),
            Some(&serde_json::Value::Bool(true))
        );
        let again = Registry::from_json(&reg.to_json().unwrap(), Path::new("x")).unwrap();
        assert_eq!(again, reg);
    }

    #[test]
    fn corrupt_document_names_file_line_and_column() {
        let err = Registry::from_json(b"{\"version\":1,\n\"pods\":[,]}", Path::new("/r/pods.json"))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                RegistryError::Corrupt {
                    line: 2,
                    column: 9,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(text.contains("/r/pods.json"), "{text}");
        assert!(text.contains("line 2, column 9"), "{text}");
        assert!(text.contains("pod doctor --repair"), "{text}");
    }

    #[test]
    fn wrong_shapes_are_corrupt_too() {
        for bad in [
            &b""[..],
            b"[]",
            b"{\"version\":1}",
            b"{\"version\":1,\"pods\":[{\"full_name\":\"a\"}]}",
            b"{\"version\":1,\"pods\":[],}",
            b"{\"version\":\"1\",\"pods\":[]}",
        ] {
            let err = Registry::from_json(bad, Path::new("/r/pods.json")).unwrap_err();
            assert!(
                matches!(err, RegistryError::Corrupt { .. }),
                "{:?}: {err:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn newer_version_is_not_called_corrupt() {
        for doc in [
            &b"{\"version\":2,\"pods\":[]}"[..],
            b"{\"version\":2,\"pods\":{\"new\":\"shape\"}}",
        ] {
            let err = Registry::from_json(doc, Path::new("/r/pods.json")).unwrap_err();
            assert!(
                matches!(err, RegistryError::UnsupportedVersion { found: 2, .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains("version 2"), "{err}");
        }
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        std::fs::write(&path, "old").unwrap();
        let mut saw_temp = false;
        write_atomically(&path, b"new", &mut |tmp| {
            saw_temp = std::fs::read(tmp).unwrap() == b"new";
            assert_eq!(std::fs::read(&path).unwrap(), b"old");
        })
        .unwrap();
        assert!(saw_temp);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(!sys::temp_path(&path).exists());
    }

    #[test]
    fn missing_file_is_an_empty_registry() {
        let dir = tempfile::tempdir().unwrap();
        let reg = read_registry(&dir.path().join("pods.json")).unwrap();
        assert_eq!(reg, Registry::default());
    }
}
