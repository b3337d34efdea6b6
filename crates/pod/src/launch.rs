//! From command-line options and the environment to what a pod runs: the
//! resolved manifest (with the provider picked from the environment when no
//! manifest names one, and the default scope of "write the working
//! directory"), the pod's name, and its LLM client.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use llm_worker::llm_client::anthropic::Anthropic;
use llm_worker::llm_client::gemini::Gemini;
use llm_worker::llm_client::http::{ClientConfig, LlmClient, ProviderClient, is_loopback_url};
use llm_worker::llm_client::openai_chat::OpenaiChat;
use llm_worker::llm_client::openai_responses::OpenaiResponses;
use llm_worker::llm_client::scheme::WireScheme;
use manifest::{
    Manifest, ManifestLoader, ModelConfig, Origin, Permission, PodName, SandboxMode, Scheme,
    ScopeRule, SourcedRule,
};

/// Reads one environment variable (unset and empty are the same).
pub(crate) type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment as [`Vars`].
pub fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchOptions {
    /// `--name`: the pod's short name.
    pub name: Option<String>,
    /// `--manifest FILE`: an extra manifest layer.
    pub manifest: Option<PathBuf>,
    /// `--cwd DIR` (absolute), else the current directory.
    pub cwd: PathBuf,
    /// `--scope PATH`: write scopes (absolute or relative to the cwd).
    pub scope: Vec<PathBuf>,
    /// `--overlay TOML`: the top manifest layer.
    pub overlay: Option<String>,
    /// `--no-sandbox`: run commands without the sandbox.
    pub no_sandbox: bool,
    /// Leave out the project manifest: a child pod takes its settings from its
    /// parent (the overlay) and its scope from the grant, never from a `.pods/` in its
    /// directory, which an agent may have written.
    pub no_project: bool,
}

/// Why a pod cannot be launched as asked.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The manifest cascade failed.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    /// The working directory cannot be used.
    #[error("working directory {}: {reason}", path.display())]
    Cwd {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The pod name is not valid.
    #[error(transparent)]
    Name(#[from] manifest::InvalidPodName),
    /// `--name` is not a valid (full) pod name.
    #[error(
        "invalid pod name {name:?}: {reason}; a name is 1 to 32 characters of a-z, 0-9, `_` and `-`, \
         starting with a letter or digit (a `.` only joins a child's name to its parent's)"
    )]
    BadName {
        /// The whole value given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--scope` path does not exist.
    #[error(
        "--scope {}: {} does not exist; create it first (mkdir -p {}) or fix the path",
        given.display(), path.display(), path.display()
    )]
    ScopeMissing {
        /// The path as given.
        given: PathBuf,
        /// The path it resolves to.
        path: PathBuf,
    },
    /// No provider is configured and none can be found in the environment.
    #[error(
        "no model provider configured: set ANTHROPIC_API_KEY, OPENAI_API_KEY or GEMINI_API_KEY, \
         or POD_BASE_URL and POD_MODEL for an OpenAI-compatible server (e.g. \
         POD_BASE_URL=http://127.0.0.1:8080/v1 for llama.cpp), or name one in a manifest ([model] scheme), \
         or run `pod model up` to serve a local model (no key needed)"
    )]
    NoProvider,
    /// Only one of `POD_BASE_URL` and `POD_MODEL` is set: an OpenAI-compatible server
    /// needs both (the URL to send to, the model name it serves).
    #[error(
        "{set} is set but {missing} is not: an OpenAI-compatible server needs both \
         (e.g. POD_BASE_URL=http://127.0.0.1:8080/v1 POD_MODEL=qwen); set {missing}, or unset {set}"
    )]
    HalfBaseUrl {
        /// The variable that is set.
        set: &'static str,
        /// The variable that is missing.
        missing: &'static str,
    },
    /// The provider needs a key that is not set.
    #[error(
        "the {scheme} provider at {base_url} needs an API key: set {var} (or change [model] api_key_env)"
    )]
    MissingKey {
        /// The scheme.
        scheme: Scheme,
        /// The endpoint.
        base_url: String,
        /// The variable that should hold the key.
        var: String,
    },
}

/// Loads the manifest for `opts`, then fills in what the command line and the
/// environment decide: the provider (when no layer names a scheme), the write
/// scope (`--scope`, else the cwd when no layer grants a write), the sandbox mode.
pub fn load_manifest(
    opts: &LaunchOptions,
    env: manifest::Env,
    vars: Vars<'_>,
) -> Result<Manifest, LaunchError> {
    load_manifest_sourced(opts, env, vars).map(|(m, _)| m)
}

/// As [`load_manifest`], also saying where the provider came from (for `pod doctor`).
pub fn load_manifest_sourced(
    opts: &LaunchOptions,
    env: manifest::Env,
    vars: Vars<'_>,
) -> Result<(Manifest, ProviderSource), LaunchError> {
    if !opts.cwd.is_absolute() || !opts.cwd.is_dir() {
        return Err(LaunchError::Cwd {
            path: opts.cwd.clone(),
            reason: "not an existing absolute directory".into(),
        });
    }
    check_scope_paths(opts)?;
    // A project manifest is used only when the user trusted its exact text.
    let gate = match env.config_dir() {
        Some(dir) => crate::trust::TrustStore::in_config_dir(&dir).gate(),
        None => crate::trust::no_config_gate(),
    };
    let mut loader = ManifestLoader::new(opts.cwd.clone(), env).project_gate(gate);
    if opts.no_project {
        loader = loader.without_project();
    }
    if let Some(file) = &opts.manifest {
        loader = loader.file(file);
    }
    if let Some(overlay) = &opts.overlay {
        loader = loader.overlay(overlay.clone());
    }
    let mut m = loader.load()?;
    let source = choose_provider_sourced(&mut m, vars)?;
    for path in &opts.scope {
        let target = if path.is_absolute() {
            path.clone()
        } else {
            opts.cwd.join(path)
        };
        m.scope.allow.push(SourcedRule {
            rule: ScopeRule::recursive(target, Permission::Write),
            origin: Origin::Overlay,
        });
    }
    let grants_write = m
        .scope
        .allow_rules()
        .any(|r| r.permission == Permission::Write);
    if !grants_write {
        m.scope.allow.push(SourcedRule {
            rule: ScopeRule::recursive(opts.cwd.clone(), Permission::Write),
            origin: Origin::BuiltIn,
        });
    }
    if opts.no_sandbox {
        m.sandbox.mode = SandboxMode::Off;
        m.provenance.insert("sandbox.mode".into(), Origin::Overlay);
    }
    Ok((m, source))
}

/// Refuses a `--scope` path that does not exist. Refused rather than warned about:
/// `pod start` detaches and a warning scrolls by unseen, a typo (`--scope sr`) would
/// leave the pod unable to write where the user meant while it seemed to start fine,
/// and the sandbox can only bind write roots that exist, so commands could not write
/// there anyway.
fn check_scope_paths(opts: &LaunchOptions) -> Result<(), LaunchError> {
    for given in &opts.scope {
        let path = if given.is_absolute() {
            given.clone()
        } else {
            opts.cwd.join(given)
        };
        if !path.exists() {
            return Err(LaunchError::ScopeMissing {
                given: given.clone(),
                path,
            });
        }
    }
    Ok(())
}

/// Where the provider of a pod was chosen: what `pod doctor` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderSource {
    /// A manifest layer named `[model] scheme`.
    Layer(Origin),
    /// A manifest layer pointed `[model] base_url` at a server on this machine.
    LoopbackLayer(Origin),
    /// A provider key in the environment (the variable's name).
    KeyVar(&'static str),
    /// `POD_BASE_URL` and `POD_MODEL`.
    BaseUrlVars,
    /// The local model server `pod model up` started.
    LocalModel {
        /// The server's process id.
        pid: u32,
    },
}

impl std::fmt::Display for ProviderSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderSource::Layer(origin) => write!(f, "[model] scheme in the {origin}"),
            ProviderSource::LoopbackLayer(origin) => {
                write!(f, "[model] base_url in the {origin}")
            }
            ProviderSource::KeyVar(var) => write!(f, "{var} in the environment"),
            ProviderSource::BaseUrlVars => f.write_str("POD_BASE_URL and POD_MODEL"),
            ProviderSource::LocalModel { pid } => {
                write!(f, "the local model (`pod model up`, pid {pid})")
            }
        }
    }
}

/// The local model server `pod model up` recorded in the model dir that `vars`
/// resolve to, if it runs.
fn local_model(vars: Vars<'_>) -> Option<crate::model::record::ServerRecord> {
    let pairs: Vec<(&str, String)> = crate::runtime::dir::DIR_VARS
        .iter()
        .filter_map(|k| vars(k).map(|v| (*k, v)))
        .collect();
    let env = crate::runtime::dir::DirEnv::from_pairs(
        crate::runtime::dir::current_uid(),
        pairs.iter().map(|(k, v)| (*k, v.as_str())),
    );
    let places = crate::runtime::dir::Places::resolve(&env).ok()?;
    crate::model::running(&places.models)
}

/// Picks the provider from the environment when no manifest layer chose a
/// scheme: `ANTHROPIC_API_KEY`, else `OPENAI_API_KEY` (Responses), else
/// `GEMINI_API_KEY`, else `POD_BASE_URL` + `POD_MODEL` (OpenAI-compatible), else
/// the local model if `pod model up` started it (with small-model defaults).
pub fn choose_provider(m: &mut Manifest, vars: Vars<'_>) -> Result<(), LaunchError> {
    choose_provider_sourced(m, vars).map(|_| ())
}

/// As [`choose_provider`], also saying where the provider came from.
pub(crate) fn choose_provider_sourced(
    m: &mut Manifest,
    vars: Vars<'_>,
) -> Result<ProviderSource, LaunchError> {
    let layer_scheme = m
        .provenance
        .get("model.scheme")
        .filter(|o| **o != Origin::BuiltIn);
    if let Some(origin) = layer_scheme {
        return Ok(ProviderSource::Layer(origin.clone()));
    }
    let mut local = false;
    let (scheme, base_url, model, source) = if vars("ANTHROPIC_API_KEY").is_some() {
        let source = ProviderSource::KeyVar("ANTHROPIC_API_KEY");
        (Scheme::Anthropic, None, None, source)
    } else if vars("OPENAI_API_KEY").is_some() {
        let source = ProviderSource::KeyVar("OPENAI_API_KEY");
        (Scheme::OpenaiResponses, None, None, source)
    } else if vars("GEMINI_API_KEY").is_some() {
        let source = ProviderSource::KeyVar("GEMINI_API_KEY");
        (Scheme::Gemini, None, None, source)
    } else if let (Some(url), Some(model)) = (vars("POD_BASE_URL"), vars("POD_MODEL")) {
        let source = ProviderSource::BaseUrlVars;
        (Scheme::OpenaiChat, Some(url), Some(model), source)
    } else if vars("POD_BASE_URL").is_some() {
        // The user meant a server of their own: falling back on another provider
        // would hide the mistake.
        return Err(half_base_url(vars).unwrap_or(LaunchError::NoProvider));
    } else if let Some(origin) = m
        .provenance
        .get("model.base_url")
        .filter(|o| **o != Origin::BuiltIn && is_loopback_url(&m.model.base_url))
    {
        // A layer pointed at a local server without naming the scheme.
        return Ok(ProviderSource::LoopbackLayer(origin.clone()));
    } else if let Some(server) = local_model(vars) {
        local = true;
        let source = ProviderSource::LocalModel { pid: server.pid };
        (
            Scheme::OpenaiChat,
            Some(server.base_url),
            Some(server.model),
            source,
        )
    } else {
        return Err(half_base_url(vars).unwrap_or(LaunchError::NoProvider));
    };
    let builtin = |key: &str| m.provenance.get(key).is_none_or(|o| *o == Origin::BuiltIn);
    let (set_url, set_model, set_key) = (
        builtin("model.base_url"),
        builtin("model.model"),
        builtin("model.api_key_env"),
    );
    let env_origin = Origin::Overlay;
    m.model.scheme = scheme;
    m.provenance.insert("model.scheme".into(), env_origin);
    if set_url {
        m.model.base_url = base_url.unwrap_or_else(|| scheme.default_base_url().to_string());
    }
    if set_model {
        m.model.model = model.unwrap_or_else(|| scheme.default_model().to_string());
    }
    if set_key {
        m.model.api_key_env = match scheme {
            // An OpenAI-compatible server found through POD_BASE_URL takes an
            // optional key of its own.
            Scheme::OpenaiChat => "POD_API_KEY".to_string(),
            _ => scheme.default_api_key_env().to_string(),
        };
    }
    if local {
        crate::model::apply_local_defaults(m);
    }
    Ok(source)
}

/// The error for `POD_BASE_URL` without `POD_MODEL` (or the reverse), if so.
fn half_base_url(vars: Vars<'_>) -> Option<LaunchError> {
    match (vars("POD_BASE_URL"), vars("POD_MODEL")) {
        (Some(_), None) => Some(LaunchError::HalfBaseUrl {
            set: "POD_BASE_URL",
            missing: "POD_MODEL",
        }),
        (None, Some(_)) => Some(LaunchError::HalfBaseUrl {
            set: "POD_MODEL",
            missing: "POD_BASE_URL",
        }),
        _ => None,
    }
}

/// The wire scheme of a manifest scheme.
pub(crate) fn wire_scheme(scheme: Scheme) -> Arc<dyn WireScheme> {
    match scheme {
        Scheme::Anthropic => Arc::new(Anthropic),
        Scheme::OpenaiChat => Arc::new(OpenaiChat),
        Scheme::OpenaiResponses => Arc::new(OpenaiResponses),
        Scheme::Gemini => Arc::new(Gemini),
    }
}

/// The LLM client for a model section; the key comes from `api_key_env`, and
/// is optional only for servers on this machine.
pub fn client_for(model: &ModelConfig, vars: Vars<'_>) -> Result<Arc<dyn LlmClient>, LaunchError> {
    let key = vars(&model.api_key_env);
    if key.is_none() && !is_loopback_url(&model.base_url) {
        return Err(LaunchError::MissingKey {
            scheme: model.scheme,
            base_url: model.base_url.clone(),
            var: model.api_key_env.clone(),
        });
    }
    let config = ClientConfig::for_base_url(model.base_url.clone(), key, Some(model.timeout_s));
    Ok(Arc::new(ProviderClient::new(
        wire_scheme(model.scheme),
        config,
    )))
}

/// The default pod name for a working directory: its base name lower-cased,
/// other characters mapped to `-`, cut to fit, plus `-` and `suffix`.
pub(crate) fn default_name(cwd: &Path, suffix: &str) -> String {
    let base = cwd
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name_room = 32usize.saturating_sub(suffix.len() + 1);
    name.truncate(name_room);
    let name = name.trim_start_matches(['-', '_']).to_string();
    let name = if name.is_empty() {
        "pod".to_string()
    } else {
        name
    };
    format!("{name}-{suffix}")
}

/// A short random suffix for default names (4 hex digits).
pub(crate) fn name_suffix() -> String {
    let mut bytes = [0u8; 2];
    if sys::fill_random(&mut bytes).is_err() {
        // Extremely unlikely; fall back on the pid, which is unique enough here.
        let pid = std::process::id();
        bytes = [(pid >> 8) as u8, pid as u8];
    }
    format!("{:02x}{:02x}", bytes[0], bytes[1])
}

/// The pod's name: `--name`, else the manifest's `[pod] name`, else the
/// default for the cwd. A child's full name (`parent.child`) is valid when
/// each of its parts is.
pub fn pod_name(opts: &LaunchOptions, m: &Manifest) -> Result<String, LaunchError> {
    if let Some(name) = &opts.name {
        if let Some(reason) = name_problem(name) {
            return Err(LaunchError::BadName {
                name: name.clone(),
                reason,
            });
        }
        return Ok(name.clone());
    }
    if let Some(name) = &m.pod.name {
        return Ok(name.to_string());
    }
    Ok(PodName::new(default_name(&opts.cwd, &name_suffix()))?.to_string())
}

/// What is wrong with a full pod name (each dot-separated part a [`PodName`]), in
/// words, or `None` if it is valid.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    for part in name.split('.') {
        if PodName::new(part).is_ok() {
            continue;
        }
        let n = part.chars().count();
        let bad = part
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'));
        let reason = match (part.chars().next(), bad) {
            (None, _) => "it has an empty part (two dots, or a dot at an end)".to_string(),
            (_, Some(c)) if c.is_uppercase() => {
                format!("`{part}` has the upper-case letter `{c}` (names are lower-case)")
            }
            (_, Some(c)) => format!("`{part}` contains `{c}`"),
            (Some(c), None) if c == '_' || c == '-' => format!("`{part}` starts with `{c}`"),
            _ if n > 32 => format!("`{part}` is {n} characters long"),
            _ => format!("`{part}` is not a valid name"),
        };
        return Some(reason);
    }
    None
}

/// Launch options as stored beside a session (`sessions/<name>/launch.json`),
/// so `pod restore` starts the pod the way it was first started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredLaunch {
    /// `--manifest`.
    pub manifest: Option<PathBuf>,
    /// The working directory.
    pub cwd: PathBuf,
    /// `--scope`.
    pub scope: Vec<PathBuf>,
    /// `--overlay`.
    pub overlay: Option<String>,
    /// `--no-sandbox`.
    pub no_sandbox: bool,
    /// For a child pod: its parent and its exact scope.
    #[serde(default)]
    pub child: Option<ChildSpec>,
}

/// What makes a pod a child: who spawned it, its reserved registry entry,
/// and its exact scope (never widened by any manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChildSpec {
    /// The parent's full name.
    pub parent_name: String,
    /// The parent's instance id.
    pub parent_instance: String,
    /// The parent's process id when it spawned this pod.
    pub(crate) parent_pid: u32,
    /// The parent's socket.
    pub(crate) parent_socket: PathBuf,
    /// This pod's instance id, reserved in the registry by the parent.
    pub instance_id: String,
    /// Allow rules: the grant (recursive writes) plus the parent's reads.
    pub allow: Vec<ScopeRule>,
    /// The parent's deny rules.
    pub deny: Vec<ScopeRule>,
    /// The parent's shared cache paths.
    pub shared: Vec<ScopeRule>,
}

impl StoredLaunch {
    /// The options these were stored from.
    pub(crate) fn of(opts: &LaunchOptions) -> Self {
        StoredLaunch {
            manifest: opts.manifest.clone(),
            cwd: opts.cwd.clone(),
            scope: opts.scope.clone(),
            overlay: opts.overlay.clone(),
            no_sandbox: opts.no_sandbox,
            child: None,
        }
    }

    /// The options to start pod `name` with.
    pub(crate) fn options(&self, name: &str) -> LaunchOptions {
        LaunchOptions {
            name: Some(name.to_string()),
            manifest: self.manifest.clone(),
            cwd: self.cwd.clone(),
            scope: self.scope.clone(),
            overlay: self.overlay.clone(),
            no_sandbox: self.no_sandbox,
            no_project: self.child.is_some(),
        }
    }

    /// Reads the stored options of pod `name`.
    pub(crate) fn read(places: &crate::runtime::dir::Places, name: &str) -> Option<StoredLaunch> {
        let bytes = std::fs::read(launch_file(places, name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Where the launch options of pod `name` are kept.
pub(crate) fn launch_file(places: &crate::runtime::dir::Places, name: &str) -> PathBuf {
    places.session_dir(name).join("launch.json")
}

/// Replaces the manifest's scope with a child's exact rules.
pub(crate) fn apply_child_scope(m: &mut Manifest, child: &ChildSpec) {
    let sourced = |rules: &[ScopeRule]| -> Vec<SourcedRule> {
        rules
            .iter()
            .map(|rule| SourcedRule {
                rule: rule.clone(),
                origin: Origin::Overlay,
            })
            .collect()
    };
    m.scope.allow = sourced(&child.allow);
    m.scope.deny = sourced(&child.deny);
    m.scope.shared = sourced(&child.shared);
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn default_names_are_valid_pod_names() {
        for (dir, want) in [
            ("/home/u/My Project", "my-project-ab12"),
            ("/", "pod-ab12"),
            ("/x/--weird", "weird-ab12"),
            ("/x/ÜberTool", "-bertool"),
        ] {
            let name = default_name(Path::new(dir), "ab12");
            assert!(PodName::new(name.clone()).is_ok(), "{name}");
            if !want.starts_with('-') {
                assert_eq!(name, want);
            }
        }
        let long = default_name(Path::new(&format!("/{}", "a".repeat(80))), "ab12");
        assert!(long.len() <= 32 && PodName::new(long).is_ok());
        assert_eq!(name_suffix().len(), 4);
    }
}
