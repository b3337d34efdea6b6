//! Trusted project manifests (the store; `pod trust` itself is in `pod-client`). A project manifest (`.pods/manifest.toml`) can widen a
//! pod's scope, turn its sandbox off and choose where requests, and which API key, go;
//! anyone who can write the project can write it: a cloned repository, or an agent (a
//! command can create a `.pods/` that did not exist when it started, and the sandbox
//! cannot stop the creation of a path that does not exist). So a pod loads a project
//! manifest only when the user trusted its exact text with `pod trust`.
//!
//! `<config>/trusted.json` maps each trusted manifest (canonical path) to the sha256 of
//! the text trusted. The config dir is protected from agents (file tools and sandbox),
//! so only the user changes it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use manifest::ProjectGate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The trust file's name in the config dir.
pub(crate) const TRUST_FILE: &str = "trusted.json";

/// The trust file's format version.
const TRUST_VERSION: u32 = 1;

/// What `trusted.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct TrustFile {
    version: u32,
    /// Canonical manifest path → lowercase hex sha256 of the trusted text.
    manifests: BTreeMap<PathBuf, String>,
}

/// Why the trust file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// Reading, locking or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is not a trust file this version understands.
    #[error("{}: {message}; fix it or remove it (then trust your projects again)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The trust file of one config dir.
#[derive(Debug, Clone)]
pub struct TrustStore {
    path: PathBuf,
}

/// The lowercase hex sha256 of `text`.
pub fn text_hash(text: &str) -> String {
    sys::hex(&Sha256::digest(text.as_bytes()))
}

/// `path` canonicalised when it exists.
pub fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The key trust is recorded under for `<root>/.pods/manifest.toml`: the project root
/// canonicalised (so a symlinked checkout needs trusting once), the last two parts
/// not resolved. Resolving them would let a command that symlinks `.pods` (or the
/// file) to another project's borrow that project's trust: with the key fixed to the
/// place, only text trusted for this very place passes.
fn manifest_key(manifest: &Path) -> PathBuf {
    match (manifest.parent(), manifest.file_name()) {
        (Some(pods_dir), Some(file)) => match (pods_dir.parent(), pods_dir.file_name()) {
            (Some(root), Some(pods)) => canonical(root).join(pods).join(file),
            _ => manifest.to_path_buf(),
        },
        _ => manifest.to_path_buf(),
    }
}

/// The project root of a manifest path (`<root>/.pods/manifest.toml`), for messages.
pub fn root_of(manifest: &Path) -> &Path {
    manifest.parent().and_then(Path::parent).unwrap_or(manifest)
}

impl TrustStore {
    /// The trust file in config dir `dir`.
    pub fn in_config_dir(dir: &Path) -> Self {
        TrustStore {
            path: dir.join(TRUST_FILE),
        }
    }

    /// The trust file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: io::Error) -> TrustError {
        TrustError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The file's contents; a missing file trusts nothing.
    fn load(&self) -> Result<TrustFile, TrustError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TrustFile::default()),
            Err(e) => return Err(self.io(e)),
        };
        let file: TrustFile = serde_json::from_slice(&bytes).map_err(|e| TrustError::Corrupt {
            path: self.path.clone(),
            message: format!("not a trust file ({e})"),
        })?;
        if file.version != TRUST_VERSION {
            return Err(TrustError::Corrupt {
                path: self.path.clone(),
                message: format!(
                    "version {} (this pod reads version {TRUST_VERSION})",
                    file.version
                ),
            });
        }
        Ok(file)
    }

    /// The sha256 trusted for `manifest`, if any.
    pub(crate) fn trusted_hash(&self, manifest: &Path) -> Result<Option<String>, TrustError> {
        Ok(self.load()?.manifests.remove(&manifest_key(manifest)))
    }

    /// Whether `text`, read from `manifest`, may be used; `Err` says why not and what to
    /// do, ready for the user.
    pub fn check(&self, manifest: &Path, text: &str) -> Result<(), Untrusted> {
        let root = root_of(manifest).display().to_string();
        match self.trusted_hash(manifest) {
            Err(e) => Err(Untrusted::Unknown(e)),
            Ok(None) => Err(Untrusted::Never { root }),
            Ok(Some(hash)) if hash == text_hash(text) => Ok(()),
            Ok(Some(hash)) => Err(Untrusted::Changed {
                then: hash[..hash.len().min(12)].to_string(),
                now: text_hash(text)[..12].to_string(),
                root,
            }),
        }
    }

    /// Records `text` as the trusted content of `manifest`; returns its sha256.
    pub fn trust(&self, manifest: &Path, text: &str) -> Result<String, TrustError> {
        let hash = text_hash(text);
        self.update(|manifests| {
            manifests.insert(manifest_key(manifest), hash.clone());
        })?;
        Ok(hash)
    }

    /// Forgets `manifest`; returns whether it was trusted.
    pub fn revoke(&self, manifest: &Path) -> Result<bool, TrustError> {
        let mut was = false;
        self.update(|manifests| was = manifests.remove(&manifest_key(manifest)).is_some())?;
        Ok(was)
    }

    /// Every trusted manifest with the sha256 trusted.
    pub fn list(&self) -> Result<BTreeMap<PathBuf, String>, TrustError> {
        Ok(self.load()?.manifests)
    }

    /// Changes the trusted set with `change`, holding an flock on `trusted.json.lock`
    /// so concurrent calls lose no entry; the file is replaced atomically (temp file +
    /// rename, fsynced).
    fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<PathBuf, String>),
    ) -> Result<(), TrustError> {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| self.io(e))?;
        let lock_path = self.path.with_extension("json.lock");
        let lock = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| self.io(e))?;
        lock.lock().map_err(|e| self.io(e))?;
        let mut file = self.load()?;
        file.version = TRUST_VERSION;
        change(&mut file.manifests);
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| TrustError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            File::open(dir)?.sync_all()
        };
        write().map_err(|e| self.io(e))
    }

    /// The loader gate that lets through only trusted project manifests.
    pub fn gate(&self) -> ProjectGate {
        let store = self.clone();
        ProjectGate::new(move |path, text| Ok(store.check(path, text)?))
    }
}

/// A gate for when no config dir is known: nothing can be trusted.
pub fn no_config_gate() -> ProjectGate {
    ProjectGate::new(|_, _| Err(Box::new(Untrusted::NoConfigDir)))
}

/// Why a project manifest may not be used; the text says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    /// The trust store cannot be read.
    #[error("cannot tell whether it is trusted: {0}")]
    Unknown(TrustError),
    /// Never trusted.
    #[error("not trusted: {WHY_TRUST}. Read it, then run `pod trust {root}`")]
    Never {
        /// The project's root.
        root: String,
    },
    /// Trusted, but its text changed since.
    #[error(
        "changed since you trusted it (sha256 {then} then, {now} now): {WHY_TRUST}. Read it, then run `pod trust {root}` again"
    )]
    Changed {
        /// The start of the trusted text's hash.
        then: String,
        /// The start of the current text's hash.
        now: String,
        /// The project's root.
        root: String,
    },
    /// No config dir to record trust in.
    #[error(
        "not trusted: no config dir to record trust in; set HOME or POD_CONFIG_DIR, then run `pod trust`"
    )]
    NoConfigDir,
}

/// Why a project manifest needs the user's trust at all.
const WHY_TRUST: &str = "a project manifest can widen a pod's scope, turn its sandbox off and choose where requests and API keys go, and anyone who can write the project can write it (agents included)";

/// The project manifest that pods started in `dir` would load: the nearest
/// `.pods/manifest.toml` at or above it, if any.
pub fn project_manifest(dir: &Path) -> Option<PathBuf> {
    manifest::find_project_root(dir)
        .map(|root| manifest_at(&root))
        .filter(|p| p.is_file())
}

/// `<root>/.pods/manifest.toml`.
pub fn manifest_at(root: &Path) -> PathBuf {
    root.join(manifest::cascade::PROJECT_DIR)
        .join(manifest::cascade::MANIFEST_FILE)
}

/// What `pod doctor` says of the project manifest of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectCheck {
    /// Usable: none, or trusted and parsed.
    pub ok: bool,
    /// What was found, or what is wrong and what to do.
    pub detail: String,
}

/// The `pod doctor` line for the project manifest of `dir`: none, trusted, or not
/// (which makes pods started there fail).
pub fn doctor_check(dir: &Path, env: &manifest::Env) -> ProjectCheck {
    let check = |ok: bool, detail: String| ProjectCheck { ok, detail };
    let Some(path) = project_manifest(dir) else {
        return check(
            true,
            format!("no project manifest at or above {}", dir.display()),
        );
    };
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => return check(false, format!("cannot read {}: {e}", path.display())),
    };
    let verdict = match env.config_dir() {
        Some(config) => TrustStore::in_config_dir(&config).check(&path, &text),
        None => Err(Untrusted::NoConfigDir),
    };
    // Parsing is inert, so an untrusted manifest is checked too: the user learns of
    // a mistake before trusting it.
    let parsed = manifest::ManifestLayer::parse(&text, &path.display().to_string());
    match (verdict, parsed) {
        (Ok(()), Ok(_)) => check(true, format!("{} (trusted)", path.display())),
        (Ok(()), Err(e)) => check(
            false,
            format!("{e} (trusted, but this pod cannot parse it)"),
        ),
        (Err(why), Ok(_)) => check(false, format!("{}: {why}", path.display())),
        (Err(why), Err(e)) => check(false, format!("{}: {why}; and: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fx {
        _dir: tempfile::TempDir,
        store: TrustStore,
        manifest: PathBuf,
    }

    impl Fx {
        /// The temp dir holding `repo/` (and room for other projects).
        fn root(&self) -> &Path {
            self.manifest.ancestors().nth(3).unwrap()
        }
    }

    fn fx() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("repo/.pods")).unwrap();
        let manifest = root.join("repo/.pods/manifest.toml");
        fs::write(&manifest, "[worker]\n").unwrap();
        Fx {
            store: TrustStore::in_config_dir(&root.join("config")),
            manifest,
            _dir: dir,
        }
    }

    #[test]
    fn the_doctor_line_reports_a_parse_error_even_when_untrusted() {
        let fx = fx();
        fs::write(&fx.manifest, "[worker]\nbogus = 1\n").unwrap();
        let env = manifest::Env {
            pod_config_dir: Some(fx.root().join("config")),
            ..manifest::Env::default()
        };
        let line = doctor_check(&fx.root().join("repo"), &env);
        assert!(!line.ok);
        let at = format!("{}:2:1: unknown field `bogus`", fx.manifest.display());
        assert!(
            line.detail.contains("not trusted") && line.detail.contains(&at),
            "{}",
            line.detail
        );
    }

    #[test]
    fn only_the_exact_trusted_text_passes() {
        let f = fx();
        let err = f
            .store
            .check(&f.manifest, "[worker]\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("not trusted: "), "{err}");
        let root = f.manifest.parent().unwrap().parent().unwrap();
        assert!(
            err.contains(&format!("run `pod trust {}`", root.display())),
            "{err}"
        );

        let hash = f.store.trust(&f.manifest, "[worker]\n").unwrap();
        assert_eq!(hash, text_hash("[worker]\n"));
        assert_eq!(hash.len(), 64);
        f.store.check(&f.manifest, "[worker]\n").unwrap();

        let err = f
            .store
            .check(&f.manifest, "[sandbox]\nmode = \"off\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("changed since you trusted it"), "{err}");
        assert!(err.contains(&hash[..12]), "{err}");
    }

    #[test]
    fn trust_is_recorded_by_real_path_and_keeps_other_entries() {
        let f = fx();
        let root = f.root();
        std::os::unix::fs::symlink(root.join("repo"), root.join("alias")).unwrap();
        let via_link = root.join("alias/.pods/manifest.toml");
        f.store.trust(&via_link, "a").unwrap();
        f.store.check(&f.manifest, "a").unwrap();

        fs::create_dir_all(root.join("other/.pods")).unwrap();
        let other = root.join("other/.pods/manifest.toml");
        fs::write(&other, "b").unwrap();
        f.store.trust(&other, "b").unwrap();
        f.store.check(&f.manifest, "a").unwrap();
        f.store.check(&other, "b").unwrap();
        let mode = fs::metadata(f.store.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_symlinked_pods_dir_does_not_borrow_another_projects_trust() {
        let f = fx();
        let root = f.root();
        f.store
            .trust(&f.manifest, "[sandbox]\nmode = \"off\"\n")
            .unwrap();
        // Another project whose `.pods` an agent replaced by a link to the trusted one.
        fs::create_dir_all(root.join("victim")).unwrap();
        std::os::unix::fs::symlink(root.join("repo/.pods"), root.join("victim/.pods")).unwrap();
        let linked = root.join("victim/.pods/manifest.toml");
        let text =
            fs::read_to_string(&linked).unwrap_or_else(|_| "[sandbox]\nmode = \"off\"\n".into());
        let err = f.store.check(&linked, &text).unwrap_err().to_string();
        assert!(err.starts_with("not trusted"), "{err}");
        f.store
            .check(&f.manifest, "[sandbox]\nmode = \"off\"\n")
            .unwrap();
    }

    #[test]
    fn a_corrupt_trust_file_refuses_and_names_itself() {
        let f = fx();
        f.store.trust(&f.manifest, "a").unwrap();
        fs::write(f.store.path(), "{ not json").unwrap();
        let err = f.store.check(&f.manifest, "a").unwrap_err().to_string();
        assert!(err.contains("cannot tell whether it is trusted"), "{err}");
        assert!(err.contains(&f.store.path().display().to_string()), "{err}");
        let err = f.store.trust(&f.manifest, "a").unwrap_err();
        assert!(err.to_string().contains("fix it or remove it"), "{err}");

        fs::write(f.store.path(), r#"{"version":9,"manifests":{}}"#).unwrap();
        let err = f.store.check(&f.manifest, "a").unwrap_err().to_string();
        assert!(err.contains("version 9"), "{err}");
    }

    #[test]
    fn without_a_config_dir_nothing_is_trusted() {
        let f = fx();
        let loaded = manifest::ManifestLoader::new(
            f.manifest.parent().unwrap().parent().unwrap(),
            manifest::Env::default(),
        )
        .project_gate(no_config_gate())
        .load()
        .unwrap_err();
        assert!(
            loaded.to_string().contains("set HOME or POD_CONFIG_DIR"),
            "{loaded}"
        );
    }
}
