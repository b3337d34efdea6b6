//! The cascade: finding the user and project manifests, reading them, and merging
//! built-in defaults < user < project < overlay into one [`Manifest`].
//!
//! Scalars replace, scope lists union (exact duplicates dropped), `model.extra` tables
//! merge key by key. Relative scope targets resolve against their own layer's base
//! directory and `~` against [`Env::home`]. The process environment is read only by
//! [`Env::from_process`], so tests (and embedders) pass their own.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::ManifestError;
use crate::hooks::{SourcedHook, SourcedPermission, resolve_hook, resolve_permission};
use crate::layer::ManifestLayer;
use crate::manifest::{
    ApprovalsConfig, ContextConfig, Manifest, ModelConfig, Origin, PodConfig, SandboxConfig,
    ScopeConfig, SourcedRule, WorkerConfig,
};
use crate::path::{TildeError, resolve_target};
use crate::rule::{Permission, ScopeRule};

/// The longest `approvals.timeout_s` (a week).
const MAX_APPROVAL_TIMEOUT_S: u64 = 7 * 24 * 3600;

/// The directory that marks a project root, and holds its manifest.
pub const PROJECT_DIR: &str = ".pods";
/// The manifest's file name, in the config dir and in `.pods/`.
pub const MANIFEST_FILE: &str = "manifest.toml";

/// Built-in defaults for values no layer sets (those that depend on the scheme are
/// [`Scheme`](crate::Scheme)'s methods).
pub mod defaults {
    use crate::manifest::{SandboxMode, Scheme};

    /// The scheme when no layer sets one.
    pub(crate) const SCHEME: Scheme = Scheme::Anthropic;
    /// `model.context_window`.
    pub(crate) const CONTEXT_WINDOW: u64 = 200_000;
    /// `model.max_tokens`.
    pub const MAX_TOKENS: u32 = 8_192;
    /// `model.timeout_s`: generous, because local servers can be slow to first byte.
    pub(crate) const TIMEOUT_S: u64 = 600;
    /// `worker.max_llm_calls`.
    pub(crate) const MAX_LLM_CALLS: u32 = 200;
    /// `worker.tool_output_limit` in bytes.
    pub(crate) const TOOL_OUTPUT_LIMIT: u64 = 64 * 1024;
    /// `context.auto`.
    pub(crate) const CONTEXT_AUTO: bool = true;
    /// `context.prune_at`: prune well before the window, so a long tool output
    /// arriving next still fits.
    pub(crate) const PRUNE_AT: f64 = 0.6;
    /// `context.keep_calls`.
    pub(crate) const KEEP_CALLS: u32 = 3;
    /// `context.compact_at`: late enough that pruning gets its chance, early
    /// enough that the summary call itself still fits.
    pub(crate) const COMPACT_AT: f64 = 0.8;
    /// `context.summary_tokens`.
    pub(crate) const SUMMARY_TOKENS: u32 = 2_048;
    /// `approvals.timeout_s`: ten minutes, long enough to notice and answer.
    pub(crate) const APPROVAL_TIMEOUT_S: u64 = 600;
    /// `sandbox.mode`.
    pub(crate) const SANDBOX_MODE: SandboxMode = SandboxMode::Auto;
    /// `sandbox.network`: commands fetch dependencies and run tests against services.
    pub(crate) const SANDBOX_NETWORK: bool = true;

    /// `[[scope.shared]]` every pod gets: package caches that builds write to.
    ///
    /// Not `~/.cache`: it holds the default model dir (`$XDG_CACHE_HOME/pods/models`),
    /// which agents must never write, and other programs' caches that run code later
    /// outside any sandbox. Add narrower cache dirs (`~/.cache/pip`, `~/.cache/go-build`)
    /// in a manifest where they are wanted.
    pub(crate) const SHARED: &[&str] = &["~/.cargo/registry", "~/.cargo/git", "~/.npm"];

    /// `[[scope.allow]]` every pod gets: reading the whole filesystem.
    ///
    /// Commands see all of `/` read-only anyway (architecture rule 5), so the read tools
    /// refusing it would only get in the way; keep things private with
    /// `[[scope.deny]] permission = "read"`.
    pub(crate) const READ_ROOT: &str = "/";
}

/// The environment values the cascade depends on; unset and empty mean the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// `$HOME`: expands `~` and is the last resort for the config dir.
    pub home: Option<PathBuf>,
    /// `$POD_CONFIG_DIR`: the config dir, if set.
    pub pod_config_dir: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`: the config dir is `$XDG_CONFIG_HOME/pods` if set (and absolute).
    pub xdg_config_home: Option<PathBuf>,
}

/// An environment value that counts as set: present and not empty.
fn set(value: Option<&PathBuf>) -> Option<&Path> {
    value
        .map(PathBuf::as_path)
        .filter(|p| !p.as_os_str().is_empty())
}

impl Env {
    /// Reads `HOME`, `POD_CONFIG_DIR` and `XDG_CONFIG_HOME` from this process (for binaries).
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
        Env {
            home: var("HOME"),
            pod_config_dir: var("POD_CONFIG_DIR"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
        }
    }

    /// `$HOME`, if set.
    pub fn home(&self) -> Option<&Path> {
        set(self.home.as_ref())
    }

    /// The config dir: `$POD_CONFIG_DIR`, else `$XDG_CONFIG_HOME/pods`, else
    /// `~/.config/pods`; `None` if none of them is set.
    ///
    /// A relative `XDG_CONFIG_HOME` is ignored, as the XDG spec says.
    pub fn config_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = set(self.pod_config_dir.as_ref()) {
            return Some(dir.to_path_buf());
        }
        if let Some(xdg) = set(self.xdg_config_home.as_ref()).filter(|p| p.is_absolute()) {
            return Some(xdg.join("pods"));
        }
        self.home().map(|home| home.join(".config").join("pods"))
    }

    /// The user manifest's path (which need not exist).
    pub fn user_manifest_path(&self) -> Option<PathBuf> {
        self.config_dir().map(|dir| dir.join(MANIFEST_FILE))
    }
}

/// The nearest directory at or above `cwd` holding a `.pods/` directory.
pub fn find_project_root(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .find(|dir| dir.join(PROJECT_DIR).is_dir())
        .map(Path::to_path_buf)
}

/// Reads a manifest file; a missing file is `None`, any other failure an error.
fn read_optional(path: &Path) -> Result<Option<String>, ManifestError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ManifestError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// One parsed layer, ready to merge.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInput {
    /// What the layer says.
    pub layer: ManifestLayer,
    /// Where it came from.
    pub origin: Origin,
    /// What its relative scope targets are relative to.
    pub(crate) base_dir: PathBuf,
}

/// Loads the manifest for a working directory: finds and reads the layers, then merges.
///
/// ```no_run
/// use manifest::{Env, ManifestLoader};
/// let manifest = ManifestLoader::new("/repo/src", Env::from_process())
///     .overlay("[worker]\nmax_llm_calls = 5")
///     .load()?;
/// # Ok::<(), manifest::ManifestError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ManifestLoader {
    cwd: PathBuf,
    env: Env,
    file: Option<PathBuf>,
    overlay: Option<String>,
    project_gate: Option<ProjectGate>,
    no_project: bool,
}

/// Decides whether a project manifest may be used, given its path and the text read
/// (the very text that is then parsed, so it cannot change in between); `Err` says why
/// not. A project manifest can widen the scope and pick where requests go, and anyone
/// who can write the project (an agent, a cloned repository) can write it.
#[derive(Clone)]
pub struct ProjectGate(Arc<GateFn>);

/// Why a [`ProjectGate`] refused a manifest: the gate's own error (its text says
/// why and what to do).
pub type GateError = Box<dyn std::error::Error + Send + Sync>;

/// What a [`ProjectGate`] calls: manifest path and text → allowed, or why not.
type GateFn = dyn Fn(&Path, &str) -> Result<(), GateError> + Send + Sync;

impl ProjectGate {
    /// A gate deciding with `check`.
    pub fn new(
        check: impl Fn(&Path, &str) -> Result<(), GateError> + Send + Sync + 'static,
    ) -> Self {
        ProjectGate(Arc::new(check))
    }
}

impl fmt::Debug for ProjectGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProjectGate(..)")
    }
}

impl ManifestLoader {
    /// A loader for `cwd` (absolute) with the given environment and no overlay.
    pub fn new(cwd: impl Into<PathBuf>, env: Env) -> Self {
        ManifestLoader {
            cwd: cwd.into(),
            env,
            file: None,
            overlay: None,
            project_gate: None,
            no_project: false,
        }
    }

    /// Leaves out the project manifest, whatever `.pods/` lies above the working
    /// directory.
    pub fn without_project(mut self) -> Self {
        self.no_project = true;
        self
    }

    /// Has `gate` decide whether the project manifest, if one is found, may be used;
    /// without a gate it always is.
    pub fn project_gate(mut self, gate: ProjectGate) -> Self {
        self.project_gate = Some(gate);
        self
    }

    /// Adds a layer read from `path` (e.g. `--manifest FILE`), above the project
    /// manifest and below the overlay; its relative targets resolve against the
    /// file's directory. Unlike the user and project manifests it must exist.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Adds a top layer from TOML text (e.g. `--overlay`); its relative targets resolve
    /// against the working directory.
    pub fn overlay(mut self, toml: impl Into<String>) -> Self {
        self.overlay = Some(toml.into());
        self
    }

    /// Reads the user and project manifests that exist, parses the overlay, and merges.
    pub fn load(&self) -> Result<Manifest, ManifestError> {
        if !self.cwd.is_absolute() {
            return Err(ManifestError::RelativeCwd {
                cwd: self.cwd.clone(),
            });
        }
        let mut layers = Vec::new();

        if let Some(config_dir) = self.env.config_dir() {
            let path = config_dir.join(MANIFEST_FILE);
            if let Some(text) = read_optional(&path)? {
                layers.push(LayerInput {
                    layer: ManifestLayer::parse(&text, &path.display().to_string())?,
                    origin: Origin::User { path },
                    base_dir: config_dir,
                });
            }
        }

        let project_root = if self.no_project {
            None
        } else {
            find_project_root(&self.cwd)
        };
        if let Some(root) = &project_root {
            let path = root.join(PROJECT_DIR).join(MANIFEST_FILE);
            if let Some(text) = read_optional(&path)? {
                if let Some(gate) = &self.project_gate {
                    (gate.0)(&path, &text).map_err(|reason| ManifestError::ProjectRefused {
                        path: path.clone(),
                        reason,
                    })?;
                }
                layers.push(LayerInput {
                    layer: ManifestLayer::parse(&text, &path.display().to_string())?,
                    origin: Origin::Project { path },
                    base_dir: root.clone(),
                });
            }
        }

        if let Some(path) = &self.file {
            let path = if path.is_absolute() {
                path.clone()
            } else {
                self.cwd.join(path)
            };
            let text = fs::read_to_string(&path).map_err(|source| ManifestError::Read {
                path: path.clone(),
                source,
            })?;
            let base_dir = path
                .parent()
                .map_or_else(|| self.cwd.clone(), Path::to_path_buf);
            layers.push(LayerInput {
                layer: ManifestLayer::parse(&text, &path.display().to_string())?,
                origin: Origin::File { path },
                base_dir,
            });
        }

        if let Some(text) = &self.overlay {
            layers.push(LayerInput {
                layer: ManifestLayer::parse_overlay(text)?,
                origin: Origin::Overlay,
                base_dir: self.cwd.clone(),
            });
        }

        merge_layers(layers, self.env.home(), project_root)
    }
}

/// A scalar being merged: the value of the highest layer that set it so far.
type Slot<T> = Option<(T, Origin)>;

/// Takes `value` into `slot` if the layer set it.
fn take<T>(slot: &mut Slot<T>, value: Option<T>, origin: &Origin) {
    if let Some(value) = value {
        *slot = Some((value, origin.clone()));
    }
}

/// The merged value, or `default` from the built-in layer; records where it came from.
fn finish<T>(
    slot: Slot<T>,
    key: &str,
    provenance: &mut BTreeMap<String, Origin>,
    default: impl FnOnce() -> T,
) -> T {
    let (value, origin) = slot.unwrap_or_else(|| (default(), Origin::BuiltIn));
    provenance.insert(key.to_owned(), origin);
    value
}

/// Like [`finish`] for values without a default (`None` stays `None`, and unrecorded).
fn finish_optional<T>(
    slot: Slot<T>,
    key: &str,
    provenance: &mut BTreeMap<String, Origin>,
) -> Option<T> {
    slot.map(|(value, origin)| {
        provenance.insert(key.to_owned(), origin);
        value
    })
}

/// Adds `rule` to `list` unless an identical rule is already there (the first keeps its
/// origin).
fn push_unique(list: &mut Vec<SourcedRule>, rule: ScopeRule, origin: &Origin) {
    if !list.iter().any(|existing| existing.rule == rule) {
        list.push(SourcedRule {
            rule,
            origin: origin.clone(),
        });
    }
}

/// An environment variable name (`[A-Za-z_][A-Za-z0-9_]*`), optionally ending in `*`
/// to match a prefix.
fn valid_env_pattern(pattern: &str) -> bool {
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Resolves a layer's target to an absolute path, naming the layer on failure.
fn absolute_target(
    target: &Path,
    base: &Path,
    home: Option<&Path>,
    origin: &Origin,
) -> Result<PathBuf, ManifestError> {
    resolve_target(target, base, home).map_err(|err| match err {
        TildeError::NoHome => ManifestError::NoHome {
            target: target.to_path_buf(),
            origin: origin.clone(),
        },
        TildeError::OtherUser => ManifestError::OtherUserHome {
            target: target.to_path_buf(),
            origin: origin.clone(),
        },
    })
}

/// Merges `b` into `a`: tables merge key by key (recursively), anything else replaces.
fn merge_table(a: &mut toml::Table, b: toml::Table) {
    for (key, value) in b {
        match (a.get_mut(&key), value) {
            (Some(toml::Value::Table(old)), toml::Value::Table(new)) => merge_table(old, new),
            (_, value) => {
                a.insert(key, value);
            }
        }
    }
}

/// The JSON form of a TOML value; `None` for a float JSON cannot carry. Datetimes become
/// their RFC 3339 text.
fn toml_to_json(value: toml::Value) -> Option<serde_json::Value> {
    Some(match value {
        toml::Value::String(s) => serde_json::Value::String(s),
        toml::Value::Integer(i) => serde_json::Value::from(i),
        toml::Value::Float(f) => serde_json::Value::Number(serde_json::Number::from_f64(f)?),
        toml::Value::Boolean(b) => serde_json::Value::Bool(b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(items) => serde_json::Value::Array(
            items
                .into_iter()
                .map(toml_to_json)
                .collect::<Option<Vec<_>>>()?,
        ),
        toml::Value::Table(table) => serde_json::Value::Object(
            table
                .into_iter()
                .map(|(k, v)| toml_to_json(v).map(|v| (k, v)))
                .collect::<Option<serde_json::Map<_, _>>>()?,
        ),
    })
}

/// Merges parsed layers (lowest first) over the built-in defaults.
///
/// `home` expands `~` (built-in shared paths under `~` are skipped without it);
/// `project_root` is recorded in the result.
pub fn merge_layers(
    layers: Vec<LayerInput>,
    home: Option<&Path>,
    project_root: Option<PathBuf>,
) -> Result<Manifest, ManifestError> {
    let mut name = None;
    let mut scheme = None;
    let mut model = None;
    let mut base_url = None;
    let mut api_key_env = None;
    let mut context_window = None;
    let mut max_tokens = None;
    let mut temperature = None;
    let mut seed = None;
    let mut timeout_s = None;
    let mut price_in = None;
    let mut price_out = None;
    let mut price_cache_read = None;
    let mut extra = toml::Table::new();
    let mut extra_origins: BTreeMap<String, Origin> = BTreeMap::new();
    let mut instruction = None;
    let mut max_llm_calls = None;
    let mut tool_output_limit = None;
    let mut mode = None;
    let mut network = None;
    let mut env_remove: Vec<String> = Vec::new();
    let mut context_auto = None;
    let mut prune_at = None;
    let mut keep_calls = None;
    let mut compact_at = None;
    let mut summary_tokens = None;
    let mut approval_timeout = None;

    let mut hooks: Vec<SourcedHook> = Vec::new();
    let mut permissions: Vec<SourcedPermission> = Vec::new();
    let mut mcp: Vec<crate::mcp::SourcedMcp> = Vec::new();
    let mut scope = ScopeConfig::default();
    let built_in = Origin::BuiltIn;
    push_unique(
        &mut scope.allow,
        ScopeRule::recursive(defaults::READ_ROOT, Permission::Read),
        &built_in,
    );
    if let Some(home) = home {
        for shared in defaults::SHARED {
            let target = absolute_target(Path::new(shared), home, Some(home), &built_in)?;
            push_unique(
                &mut scope.shared,
                ScopeRule::recursive(target, Permission::Write),
                &built_in,
            );
        }
    }

    let mut origins = vec![Origin::BuiltIn];
    for LayerInput {
        layer,
        origin,
        base_dir,
    } in layers
    {
        let o = &origin;
        take(&mut name, layer.pod.name, o);

        let m = layer.model;
        take(&mut scheme, m.scheme, o);
        take(&mut model, m.model, o);
        take(&mut base_url, m.base_url, o);
        take(&mut api_key_env, m.api_key_env, o);
        take(&mut context_window, m.context_window, o);
        take(&mut max_tokens, m.max_tokens, o);
        take(&mut temperature, m.temperature, o);
        take(&mut seed, m.seed, o);
        take(&mut timeout_s, m.timeout_s, o);
        take(&mut price_in, m.price_in, o);
        take(&mut price_out, m.price_out, o);
        take(&mut price_cache_read, m.price_cache_read, o);
        if let Some(table) = m.extra {
            for key in table.keys() {
                extra_origins.insert(key.clone(), origin.clone());
            }
            merge_table(&mut extra, table);
        }

        let c = layer.context;
        take(&mut context_auto, c.auto, o);
        take(&mut prune_at, c.prune_at, o);
        take(&mut keep_calls, c.keep_calls, o);
        take(&mut compact_at, c.compact_at, o);
        take(&mut summary_tokens, c.summary_tokens, o);
        take(&mut approval_timeout, layer.approvals.timeout_s, o);

        let w = layer.worker;
        take(&mut instruction, w.instruction, o);
        take(&mut max_llm_calls, w.max_llm_calls, o);
        take(&mut tool_output_limit, w.tool_output_limit, o);
        take(&mut mode, layer.sandbox.mode, o);
        take(&mut network, layer.sandbox.network, o);
        for name in layer.sandbox.env_remove {
            if !valid_env_pattern(&name) {
                return Err(ManifestError::BadEnvName {
                    name,
                    origin: origin.clone(),
                });
            }
            if !env_remove.contains(&name) {
                env_remove.push(name);
            }
        }

        for (i, hook) in layer.hooks.into_iter().enumerate() {
            let user = matches!(origin, Origin::User { .. });
            let hook = resolve_hook(hook, &base_dir, home, user).map_err(|reason| {
                ManifestError::BadHook {
                    index: i + 1,
                    origin: origin.clone(),
                    reason,
                }
            })?;
            if !hooks.iter().any(|h: &SourcedHook| h.hook == hook) {
                hooks.push(SourcedHook {
                    hook,
                    origin: origin.clone(),
                });
            }
        }
        for (i, server) in layer.mcp.into_iter().enumerate() {
            let name = server.name.clone();
            let server = crate::mcp::resolve_mcp(server, &base_dir, home).map_err(|reason| {
                ManifestError::BadMcp {
                    index: i + 1,
                    origin: origin.clone(),
                    reason,
                }
            })?;
            match server {
                Some(server) => {
                    mcp.retain(|s: &crate::mcp::SourcedMcp| s.server.name != server.name);
                    mcp.push(crate::mcp::SourcedMcp {
                        server,
                        origin: origin.clone(),
                    });
                }
                // `enabled = false`: a lower layer's server of that name is gone.
                None => mcp.retain(|s: &crate::mcp::SourcedMcp| s.server.name != name),
            }
        }
        for (i, rule) in layer.permissions.into_iter().enumerate() {
            let bad = |reason: String| ManifestError::BadPermission {
                index: i + 1,
                origin: origin.clone(),
                reason,
            };
            let rule = resolve_permission(rule, &base_dir, home).map_err(bad)?;
            if !permissions
                .iter()
                .any(|p: &SourcedPermission| p.rule == rule)
            {
                permissions.push(SourcedPermission {
                    rule,
                    origin: origin.clone(),
                });
            }
        }

        let s = layer.scope;
        for rule in s.allow {
            let target = absolute_target(&rule.target, &base_dir, home, o)?;
            push_unique(&mut scope.allow, ScopeRule { target, ..rule }, o);
        }
        for rule in s.deny {
            let target = absolute_target(&rule.target, &base_dir, home, o)?;
            push_unique(&mut scope.deny, ScopeRule { target, ..rule }, o);
        }
        for shared in s.shared {
            let target = absolute_target(&shared.target, &base_dir, home, o)?;
            let rule = ScopeRule {
                target,
                permission: Permission::Write,
                recursive: shared.recursive,
            };
            push_unique(&mut scope.shared, rule, o);
        }
        origins.push(origin);
    }

    let mut provenance = BTreeMap::new();
    let p = &mut provenance;
    let scheme = finish(scheme, "model.scheme", p, || defaults::SCHEME);

    let mut extra_json = serde_json::Map::new();
    for (key, value) in extra {
        let origin = extra_origins.remove(&key).unwrap_or(Origin::BuiltIn);
        let json = toml_to_json(value.clone()).ok_or_else(|| ManifestError::ExtraNotJson {
            key: key.clone(),
            origin: origin.clone(),
            value: value.to_string(),
        })?;
        p.insert(format!("model.extra.{key}"), origin);
        extra_json.insert(key, json);
    }

    let model = ModelConfig {
        scheme,
        model: finish(model, "model.model", p, || {
            scheme.default_model().to_owned()
        }),
        // Providers append their own path (`/messages`, ...), so a trailing `/` would
        // double it.
        base_url: finish(base_url, "model.base_url", p, || {
            scheme.default_base_url().to_owned()
        })
        .trim_end_matches('/')
        .to_owned(),
        api_key_env: finish(api_key_env, "model.api_key_env", p, || {
            scheme.default_api_key_env().to_owned()
        }),
        context_window: finish(context_window, "model.context_window", p, || {
            defaults::CONTEXT_WINDOW
        }),
        max_tokens: finish(max_tokens, "model.max_tokens", p, || defaults::MAX_TOKENS),
        temperature: finish_optional(temperature, "model.temperature", p),
        seed: finish_optional(seed, "model.seed", p),
        timeout_s: finish(timeout_s, "model.timeout_s", p, || defaults::TIMEOUT_S),
        price_in: finish_optional(price_in, "model.price_in", p),
        price_out: finish_optional(price_out, "model.price_out", p),
        price_cache_read: finish_optional(price_cache_read, "model.price_cache_read", p),
        extra: extra_json,
    };
    let worker = WorkerConfig {
        instruction: finish(instruction, "worker.instruction", p, String::new),
        max_llm_calls: finish(max_llm_calls, "worker.max_llm_calls", p, || {
            defaults::MAX_LLM_CALLS
        }),
        tool_output_limit: finish(tool_output_limit, "worker.tool_output_limit", p, || {
            defaults::TOOL_OUTPUT_LIMIT
        }),
    };
    let sandbox = SandboxConfig {
        mode: finish(mode, "sandbox.mode", p, || defaults::SANDBOX_MODE),
        network: finish(network, "sandbox.network", p, || defaults::SANDBOX_NETWORK),
        env_remove,
    };
    let pod = PodConfig {
        name: finish_optional(name, "pod.name", p),
    };
    let context = ContextConfig {
        auto: finish(context_auto, "context.auto", p, || defaults::CONTEXT_AUTO),
        prune_at: finish(prune_at, "context.prune_at", p, || defaults::PRUNE_AT),
        keep_calls: finish(keep_calls, "context.keep_calls", p, || defaults::KEEP_CALLS),
        compact_at: finish(compact_at, "context.compact_at", p, || defaults::COMPACT_AT),
        summary_tokens: finish(summary_tokens, "context.summary_tokens", p, || {
            defaults::SUMMARY_TOKENS
        }),
    };
    if !(context.compact_at > 0.0 && context.compact_at <= 1.0) {
        return Err(ManifestError::OutOfRange {
            key: "context.compact_at",
            value: context.compact_at.to_string(),
            expected: "a fraction of the window, above 0 and at most 1",
        });
    }
    if context.summary_tokens < 128 {
        return Err(ManifestError::OutOfRange {
            key: "context.summary_tokens",
            value: context.summary_tokens.to_string(),
            expected: "at least 128",
        });
    }
    if !(context.prune_at > 0.0 && context.prune_at <= 1.0) {
        return Err(ManifestError::OutOfRange {
            key: "context.prune_at",
            value: context.prune_at.to_string(),
            expected: "a fraction of the window, above 0 and at most 1",
        });
    }
    if context.keep_calls == 0 {
        return Err(ManifestError::OutOfRange {
            key: "context.keep_calls",
            value: "0".into(),
            expected: "at least 1 (the latest call's outputs are what the model works on)",
        });
    }

    let approvals = ApprovalsConfig {
        timeout_s: finish(approval_timeout, "approvals.timeout_s", p, || {
            defaults::APPROVAL_TIMEOUT_S
        }),
    };
    if !(1..=MAX_APPROVAL_TIMEOUT_S).contains(&approvals.timeout_s) {
        return Err(ManifestError::OutOfRange {
            key: "approvals.timeout_s",
            value: approvals.timeout_s.to_string(),
            expected: "1 to 604800 seconds (a week)",
        });
    }

    Ok(Manifest {
        pod,
        model,
        worker,
        sandbox,
        scope,
        context,
        approvals,
        hooks,
        permissions,
        mcp,
        project_root,
        layers: origins,
        provenance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{SandboxMode, Scheme};
    use std::fs;

    /// A temp dir laid out as a home with a config dir and a project.
    struct Fixture {
        _dir: tempfile::TempDir,
        home: PathBuf,
        config: PathBuf,
        project: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root = fs::canonicalize(dir.path()).unwrap();
            let home = root.join("home");
            let config = home.join(".config/pods");
            let project = root.join("repo");
            fs::create_dir_all(&config).unwrap();
            fs::create_dir_all(project.join(".pods")).unwrap();
            fs::create_dir_all(project.join("src/deep")).unwrap();
            Fixture {
                _dir: dir,
                home,
                config,
                project,
            }
        }

        fn env(&self) -> Env {
            Env {
                home: Some(self.home.clone()),
                ..Env::default()
            }
        }

        fn write_user(&self, text: &str) {
            fs::write(self.config.join("manifest.toml"), text).unwrap();
        }

        fn write_project(&self, text: &str) {
            fs::write(self.project.join(".pods/manifest.toml"), text).unwrap();
        }

        fn user_path(&self) -> PathBuf {
            self.config.join("manifest.toml")
        }

        fn project_path(&self) -> PathBuf {
            self.project.join(".pods/manifest.toml")
        }
    }

    fn rule(target: impl Into<PathBuf>, permission: Permission) -> ScopeRule {
        ScopeRule::recursive(target, permission)
    }

    #[test]
    fn no_files_gives_built_in_defaults() {
        let fx = Fixture::new();
        let m = ManifestLoader::new(fx.home.clone(), fx.env())
            .load()
            .unwrap();
        assert_eq!(m.model.scheme, Scheme::Anthropic);
        assert_eq!(m.model.base_url, "https://api.anthropic.com/v1");
        assert_eq!(m.model.api_key_env, "ANTHROPIC_API_KEY");
        assert_eq!(m.model.max_tokens, defaults::MAX_TOKENS);
        assert_eq!(m.model.temperature, None);
        assert_eq!(m.sandbox.mode, SandboxMode::Auto);
        assert_eq!(m.project_root, None);
        assert_eq!(m.layers, vec![Origin::BuiltIn]);
        assert_eq!(m.provenance["model.scheme"], Origin::BuiltIn);
        assert_eq!(
            m.scope.allow_rules().cloned().collect::<Vec<_>>(),
            vec![rule("/", Permission::Read)]
        );
        assert_eq!(
            m.scope.shared_rules().cloned().collect::<Vec<_>>(),
            vec![
                rule(fx.home.join(".cargo/registry"), Permission::Write),
                rule(fx.home.join(".cargo/git"), Permission::Write),
                rule(fx.home.join(".npm"), Permission::Write),
            ]
        );
    }

    #[test]
    fn a_named_file_sits_between_project_and_overlay() {
        let fx = Fixture::new();
        fx.write_project("[model]\nmodel = \"from-project\"\nmax_tokens = 10\n");
        let file = fx.project.join("alt/pod.toml");
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(
            &file,
            "[model]\nmodel = \"from-file\"\ntimeout_s = 7\n[[scope.allow]]\ntarget = \"out\"\npermission = \"write\"\n",
        )
        .unwrap();
        let m = ManifestLoader::new(fx.project.clone(), fx.env())
            .file(&file)
            .overlay("[model]\ntimeout_s = 9\n")
            .load()
            .unwrap();
        assert_eq!(m.model.model, "from-file");
        assert_eq!(m.model.max_tokens, 10);
        assert_eq!(m.model.timeout_s, 9);
        assert_eq!(m.provenance["model.model"], Origin::File { path: file });
        // Relative targets resolve against the file's directory.
        assert!(
            m.scope
                .allow_rules()
                .any(|r| r.target == fx.project.join("alt/out"))
        );

        let missing = ManifestLoader::new(fx.project.clone(), fx.env())
            .file(fx.project.join("nope.toml"))
            .load()
            .unwrap_err();
        assert!(missing.to_string().contains("nope.toml"), "{missing}");
    }

    #[test]
    fn scheme_defaults_follow_the_final_scheme() {
        for (scheme, url, key) in [
            ("openai_chat", "https://api.openai.com/v1", "OPENAI_API_KEY"),
            (
                "openai_responses",
                "https://api.openai.com/v1",
                "OPENAI_API_KEY",
            ),
            (
                "gemini",
                "https://generativelanguage.googleapis.com/v1beta",
                "GEMINI_API_KEY",
            ),
        ] {
            let fx = Fixture::new();
            let m = ManifestLoader::new(fx.project.clone(), fx.env())
                .overlay(format!("[model]\nscheme = \"{scheme}\""))
                .load()
                .unwrap();
            assert_eq!(m.model.base_url, url);
            assert_eq!(m.model.api_key_env, key);
            assert_eq!(m.provenance["model.base_url"], Origin::BuiltIn);
            assert_eq!(m.provenance["model.scheme"], Origin::Overlay);
        }
    }

    #[test]
    fn env_remove_lists_union_and_bad_names_are_refused() {
        let fx = Fixture::new();
        fx.write_user("[sandbox]\nenv_remove = [\"GITHUB_TOKEN\", \"AWS_*\"]\n");
        let m = ManifestLoader::new(fx.project.clone(), fx.env())
            .overlay("[sandbox]\nenv_remove = [\"AWS_*\", \"_X1\"]")
            .load()
            .unwrap();
        assert_eq!(m.sandbox.env_remove, ["GITHUB_TOKEN", "AWS_*", "_X1"]);
        assert!(m.sandbox.network, "on by default");
        let off = ManifestLoader::new(fx.project.clone(), fx.env())
            .overlay("[sandbox]\nnetwork = false")
            .load()
            .unwrap();
        assert!(!off.sandbox.network);
        assert_eq!(off.provenance["sandbox.network"], Origin::Overlay);

        for bad in ["", "*", "1ABC", "A-B", "A*B", "PATH=x"] {
            let err = ManifestLoader::new(fx.project.clone(), fx.env())
                .overlay(format!("[sandbox]\nenv_remove = [{bad:?}]"))
                .load()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!(
                    "sandbox.env_remove entry {bad:?} from the overlay"
                )),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn layers_cascade_scalars_replace_and_lists_union() {
        let fx = Fixture::new();
        fx.write_user(
            r#"
[model]
scheme = "openai_chat"
model = "user-model"
base_url = "http://127.0.0.1:8080/v1/"
temperature = 0.5
extra = { top_k = 40, reasoning = { effort = "high", summary = "auto" } }

[worker]
max_llm_calls = 7
instruction = "from user"

[[scope.allow]]
target = "~/notes"
permission = "write"

[[scope.deny]]
target = "secrets"
permission = "read"
"#,
        );
        fx.write_project(
            r#"
[pod]
name = "api"

[model]
model = "project-model"
extra = { reasoning = { effort = "low" }, stream_options = { include_usage = true } }

[worker]
max_llm_calls = 9

[[scope.allow]]
target = "."
permission = "write"

[[scope.allow]]
target = "~/notes"
permission = "write"

[[scope.shared]]
target = "~/.cache/pip"
"#,
        );
        let overlay = r#"
[worker]
max_llm_calls = 11

[sandbox]
mode = "off"

[[scope.allow]]
target = "build"
permission = "read"
recursive = false
"#;
        let cwd = fx.project.join("src/deep");
        let m = ManifestLoader::new(cwd.clone(), fx.env())
            .overlay(overlay)
            .load()
            .unwrap();

        let user = Origin::User {
            path: fx.user_path(),
        };
        let project = Origin::Project {
            path: fx.project_path(),
        };
        assert_eq!(
            m.layers,
            vec![
                Origin::BuiltIn,
                user.clone(),
                project.clone(),
                Origin::Overlay
            ]
        );
        assert_eq!(m.project_root.as_deref(), Some(fx.project.as_path()));

        // Scalars: the highest layer that sets a value wins.
        assert_eq!(m.pod.name.as_ref().map(|n| n.as_str()), Some("api"));
        assert_eq!(m.model.scheme, Scheme::OpenaiChat);
        assert_eq!(m.model.model, "project-model");
        assert_eq!(m.model.base_url, "http://127.0.0.1:8080/v1");
        assert_eq!(m.model.api_key_env, "OPENAI_API_KEY");
        assert_eq!(m.model.temperature, Some(0.5));
        assert_eq!(m.worker.max_llm_calls, 11);
        assert_eq!(m.worker.instruction, "from user");
        assert_eq!(m.sandbox.mode, SandboxMode::Off);
        assert_eq!(m.provenance["model.scheme"], user);
        assert_eq!(m.provenance["model.model"], project);
        assert_eq!(m.provenance["worker.max_llm_calls"], Origin::Overlay);
        assert_eq!(m.provenance["model.context_window"], Origin::BuiltIn);
        assert!(!m.provenance.contains_key("model.seed"));

        // `extra` merges key by key, nested tables too.
        assert_eq!(
            serde_json::Value::Object(m.model.extra.clone()),
            serde_json::json!({
                "top_k": 40,
                "reasoning": { "effort": "low", "summary": "auto" },
                "stream_options": { "include_usage": true },
            })
        );
        assert_eq!(m.provenance["model.extra.top_k"], user);
        assert_eq!(m.provenance["model.extra.reasoning"], project);

        // Lists union in layer order; relative targets resolve per layer; `~` expands;
        // the duplicate `~/notes` keeps its first origin.
        let allow: Vec<(ScopeRule, Origin)> = m
            .scope
            .allow
            .iter()
            .map(|s| (s.rule.clone(), s.origin.clone()))
            .collect();
        assert_eq!(
            allow,
            vec![
                (rule("/", Permission::Read), Origin::BuiltIn),
                (rule(fx.home.join("notes"), Permission::Write), user.clone()),
                (rule(fx.project.clone(), Permission::Write), project.clone()),
                (
                    ScopeRule::non_recursive(cwd.join("build"), Permission::Read),
                    Origin::Overlay
                ),
            ]
        );
        assert_eq!(
            m.scope.deny,
            vec![SourcedRule {
                rule: rule(fx.config.join("secrets"), Permission::Read),
                origin: user,
            }]
        );
        let last_shared = m.scope.shared.last().unwrap();
        assert_eq!(
            last_shared.rule,
            rule(fx.home.join(".cache/pip"), Permission::Write)
        );
        assert_eq!(last_shared.origin, project);
    }

    #[test]
    fn config_dir_prefers_pod_config_dir_then_xdg_then_home() {
        let home = Some(PathBuf::from("/h"));
        let env = Env {
            home,
            pod_config_dir: Some("/pcd".into()),
            xdg_config_home: Some("/xdg".into()),
        };
        assert_eq!(env.config_dir(), Some(PathBuf::from("/pcd")));
        let env = Env {
            pod_config_dir: Some("".into()),
            ..env
        };
        assert_eq!(env.config_dir(), Some(PathBuf::from("/xdg/pods")));
        let env = Env {
            xdg_config_home: Some("relative".into()),
            ..env
        };
        assert_eq!(env.config_dir(), Some(PathBuf::from("/h/.config/pods")));
        assert_eq!(
            env.user_manifest_path(),
            Some(PathBuf::from("/h/.config/pods/manifest.toml"))
        );
        assert_eq!(Env::default().config_dir(), None);
    }

    #[test]
    fn pod_config_dir_layer_resolves_relative_targets_against_it() {
        let fx = Fixture::new();
        let other = fx.home.join("other-config");
        fs::create_dir_all(&other).unwrap();
        fs::write(
            other.join("manifest.toml"),
            "[[scope.allow]]\ntarget = \"data\"\npermission = \"read\"\n",
        )
        .unwrap();
        // The default config dir's manifest must be ignored.
        fx.write_user("[model]\nmodel = \"ignored\"\n");
        let env = Env {
            pod_config_dir: Some(other.clone()),
            ..fx.env()
        };
        let m = ManifestLoader::new(fx.home, env).load().unwrap();
        assert_ne!(m.model.model, "ignored");
        assert!(
            m.scope
                .allow_rules()
                .any(|r| *r == rule(other.join("data"), Permission::Read))
        );
    }

    #[test]
    fn project_root_is_the_nearest_dir_holding_dot_pods() {
        let fx = Fixture::new();
        assert_eq!(
            find_project_root(&fx.project.join("src/deep")),
            Some(fx.project.clone())
        );
        fs::create_dir_all(fx.project.join("src/.pods")).unwrap();
        assert_eq!(
            find_project_root(&fx.project.join("src/deep")),
            Some(fx.project.join("src"))
        );
        assert_eq!(find_project_root(&fx.home), None);
    }

    #[test]
    fn the_project_gate_sees_the_text_and_can_refuse_it() {
        let fx = Fixture::new();
        fx.write_project("[worker]\nmax_llm_calls = 7\n");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let gate = ProjectGate::new(move |path, text| {
            log.lock()
                .unwrap()
                .push((path.to_path_buf(), text.to_owned()));
            if text.contains("= 7") {
                Err("not trusted; run `pod trust`".into())
            } else {
                Ok(())
            }
        });
        let err = ManifestLoader::new(fx.project.clone(), fx.env())
            .project_gate(gate.clone())
            .load()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "project manifest {}: not trusted; run `pod trust`",
                fx.project_path().display()
            )
        );
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            &[(
                fx.project_path(),
                "[worker]\nmax_llm_calls = 7\n".to_owned()
            )]
        );
        fx.write_project("[worker]\nmax_llm_calls = 8\n");
        let m = ManifestLoader::new(fx.project.clone(), fx.env())
            .project_gate(gate)
            .load()
            .unwrap();
        assert_eq!(m.worker.max_llm_calls, 8);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let fx = Fixture::new();
        fx.write_project("[model]\nscheme = \"gemini\"\n\n[worker]\nmax_llm_cals = 3\n");
        let err = ManifestLoader::new(fx.project.clone(), fx.env())
            .load()
            .unwrap_err();
        let msg = err.to_string();
        let expected = format!(
            "{}:5:1: unknown field `max_llm_cals`",
            fx.project_path().display()
        );
        assert!(msg.starts_with(&expected), "got: {msg}");

        fx.write_project("");
        fx.write_user("[model]\nmodel = \"x\"\nmodel = \"y\"\n");
        let msg = ManifestLoader::new(fx.project.clone(), fx.env())
            .load()
            .unwrap_err()
            .to_string();
        let expected = format!("{}:3:", fx.user_path().display());
        assert!(msg.starts_with(&expected), "got: {msg}");

        fx.write_user("");
        let msg = ManifestLoader::new(fx.project.clone(), fx.env())
            .overlay("[sandbox]\nmode = \"on\"")
            .load()
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("overlay:2:8:"), "got: {msg}");
    }

    #[test]
    fn unreadable_manifest_is_an_error() {
        let fx = Fixture::new();
        // A directory where the file should be cannot be read, whoever runs the test.
        fs::create_dir(fx.project_path()).unwrap();
        let err = ManifestLoader::new(fx.project.clone(), fx.env())
            .load()
            .unwrap_err();
        assert!(
            matches!(&err, ManifestError::Read { path, .. } if *path == fx.project_path()),
            "got: {err}"
        );
    }

    #[test]
    fn tilde_without_home_is_an_error_naming_the_layer() {
        let fx = Fixture::new();
        let err = ManifestLoader::new(fx.project.clone(), Env::default())
            .overlay("[[scope.allow]]\ntarget = \"~/x\"\npermission = \"read\"")
            .load()
            .unwrap_err();
        assert!(
            matches!(
                &err,
                ManifestError::NoHome {
                    origin: Origin::Overlay,
                    ..
                }
            ),
            "got: {err}"
        );
        // Without HOME the built-in `~` shared paths are simply absent.
        let m = ManifestLoader::new(fx.project, Env::default())
            .load()
            .unwrap();
        assert!(m.scope.shared.is_empty());
    }

    #[test]
    fn non_finite_extra_is_refused() {
        let fx = Fixture::new();
        let err = ManifestLoader::new(fx.project.clone(), fx.env())
            .overlay("[model]\nextra = { penalty = nan }")
            .load()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("model.extra.penalty from the overlay"),
            "got: {err}"
        );
    }

    #[test]
    fn relative_cwd_is_refused() {
        let err = ManifestLoader::new("rel", Env::default())
            .load()
            .unwrap_err();
        assert!(matches!(err, ManifestError::RelativeCwd { .. }));
    }

    #[test]
    fn context_keys_default_merge_and_refuse_out_of_range_values() {
        let fx = Fixture::new();
        let m = ManifestLoader::new(fx.project.clone(), fx.env())
            .load()
            .unwrap();
        assert!(m.context.auto);
        assert!((m.context.prune_at - 0.6).abs() < 1e-9);
        assert_eq!(m.context.keep_calls, 3);
        fx.write_user("[context]\nkeep_calls = 5\n");
        let m = ManifestLoader::new(fx.project.clone(), fx.env())
            .overlay("[context]\nprune_at = 0.4\nauto = false")
            .load()
            .unwrap();
        assert_eq!((m.context.keep_calls, m.context.auto), (5, false));
        assert_eq!(m.provenance["context.prune_at"], Origin::Overlay);
        for (bad, key) in [
            ("prune_at = 1.5", "context.prune_at"),
            ("prune_at = 0.0", "context.prune_at"),
            ("keep_calls = 0", "context.keep_calls"),
        ] {
            let err = ManifestLoader::new(fx.project.clone(), fx.env())
                .overlay(format!("[context]\n{bad}"))
                .load()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(key) && err.contains("out of range"),
                "{bad}: {err}"
            );
        }
    }
}
