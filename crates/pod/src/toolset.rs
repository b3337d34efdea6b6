//! The six built-in tools of a pod, wired to its live scope: the file tools
//! (checked by path, opened beneath directory handles) and `Bash` (run in the
//! command sandbox, whose policy is rebuilt from the live scope per command).

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use llm_worker::tool::ToolDefinition;
use llm_worker::tool_server::output_limit;
use manifest::{Manifest, SandboxMode, Scope};
use sandbox::{CommandGate, HelperCommand, SandboxPolicy, detect};
use tools::bash::{BashConfig, bash_tool};
use tools::command_scope::{find_pods_dirs, policy_for};
use tools::grounding::Grounder;
use tools::{ToolContext, file_tools};

use crate::runtime::dir::{Places, ensure_private_dir};

/// A pod's tools and what confines them.
pub(crate) struct Toolset {
    /// Read, Write, Edit, Glob, Grep, Bash.
    pub tools: Vec<ToolDefinition>,
    /// The sandbox level, as the greeting and `pod doctor` say it.
    pub level: String,
    /// The live scope the tools check (delegation changes it).
    pub scope: Arc<RwLock<Scope>>,
    /// Commands hold it while they run; delegation waits for it.
    pub gate: CommandGate,
    /// Attaches the files a user's message names (its own names too for a small model).
    pub grounder: Grounder,
    /// What the user's hooks run with: Bash's sandbox, policy and gate (the
    /// session is filled in once the log is open).
    pub hook_env: hooks::HookEnv,
}

/// Why the tools could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ToolsetError {
    /// The runtime dirs are unusable.
    #[error(transparent)]
    Dir(#[from] crate::runtime::dir::DirError),
    /// The file tools' context was refused.
    #[error("file tools: {0}")]
    Context(String),
    /// The sandbox helper cannot be found.
    #[error("sandbox: {0}")]
    Sandbox(String),
}

/// The dirs no agent may write, whatever its scope: the pods state, config,
/// model and runtime dirs.
pub(crate) fn protected_dirs(places: &Places) -> Vec<PathBuf> {
    vec![
        places.runtime.clone(),
        places.state.clone(),
        places.config.clone(),
        places.models.clone(),
    ]
}

/// Directories looked at per write root when searching for `.pods/` at start.
const PODS_DIR_SEARCH: usize = 20_000;

/// The sandbox policy for the current scope; `pods_dirs` are the `.pods/`
/// directories found under the write roots when the pod started.
fn policy(
    scope: &RwLock<Scope>,
    cwd: &Path,
    tmp: &Path,
    places: &Places,
    pods_dirs: &[PathBuf],
) -> SandboxPolicy {
    let scope = scope.read().unwrap_or_else(PoisonError::into_inner);
    let mut policy = policy_for(&scope, cwd, tmp)
        .hide(places.runtime.clone())
        .protect(places.state.clone())
        .protect(places.config.clone())
        .protect(places.models.clone());
    for dir in pods_dirs {
        policy = policy.protect(dir.clone());
    }
    for dir in &places.socket_dirs {
        policy = policy.cover_sockets_in(dir.clone());
    }
    policy
}

/// What the level cache in the runtime dir records: the level found by
/// probing, valid for this boot and this exact binary.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct CachedLevel {
    boot_id: String,
    exe: String,
    exe_len: u64,
    exe_mtime_ns: i128,
    level: String,
}

/// The key a cached level must match: boot id and the binary's identity.
fn level_key(helper: &HelperCommand) -> Option<(String, String, u64, i128)> {
    use std::os::unix::fs::MetadataExt;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let exe = helper.program().to_path_buf();
    let meta = std::fs::metadata(&exe).ok()?;
    let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    Some((
        boot_id.trim().to_string(),
        exe.display().to_string(),
        meta.len(),
        mtime,
    ))
}

/// The sandbox level as shown to users. Probing spawns the helper (a few ms),
/// so the result is cached in `<runtime>/sandbox-level.json` for this boot and
/// binary: a kernel or binary change means a new boot or a new key.
pub(crate) fn sandbox_level(runtime: &Path, helper: &HelperCommand) -> String {
    let path = runtime.join("sandbox-level.json");
    let key = level_key(helper);
    if let (Some((boot_id, exe, exe_len, exe_mtime_ns)), Ok(bytes)) = (&key, std::fs::read(&path))
        && let Ok(cached) = serde_json::from_slice::<CachedLevel>(&bytes)
        && cached.boot_id == *boot_id
        && cached.exe == *exe
        && cached.exe_len == *exe_len
        && cached.exe_mtime_ns == *exe_mtime_ns
    {
        return cached.level;
    }
    let report = detect(helper);
    let level = match report.landlock_abi {
        Some(abi) => format!("{} (Landlock ABI {abi})", report.level.as_str()),
        None => report.level.as_str().to_string(),
    };
    if let Some((boot_id, exe, exe_len, exe_mtime_ns)) = key {
        let cached = CachedLevel {
            boot_id,
            exe,
            exe_len,
            exe_mtime_ns,
            level: level.clone(),
        };
        if let Ok(bytes) = serde_json::to_vec(&cached) {
            // Best effort: without the cache the next pod probes again.
            let _ = sys::replace_file(&path, &bytes);
        }
    }
    level
}

/// The pod's private tmp dir (commands see it as `/tmp` and `$TMPDIR`).
fn tmp_dir_of(places: &Places, name: &str) -> PathBuf {
    places.pod_runtime_dir(name).join("tmp")
}

/// Builds the tools of pod `name` over `scope`.
pub(crate) fn builtin(
    places: &Places,
    name: &str,
    cwd: &Path,
    scope: Scope,
    manifest: &Manifest,
    uid: u32,
) -> Result<Toolset, ToolsetError> {
    ensure_private_dir(&places.runtime, uid)?;
    let pod_dir = places.pod_runtime_dir(name);
    ensure_private_dir(&pod_dir, uid)?;
    let tmp = tmp_dir_of(places, name);
    ensure_private_dir(&tmp, uid)?;

    let limit = output_limit(
        manifest.worker.tool_output_limit,
        manifest.model.context_window,
    );
    let scope = Arc::new(RwLock::new(scope));
    // Other pods' spilled outputs and tmp files are theirs: the file tools
    // read only this pod's part of the runtime dir (commands see none of it).
    let small = manifest.model.context_window < crate::server::COMPACT_TOOLS_BELOW;
    let ctx = ToolContext::new(cwd, Arc::clone(&scope), protected_dirs(places), limit)
        .and_then(|ctx| ctx.hiding(&places.runtime, &pod_dir))
        .and_then(|ctx| {
            if small {
                ctx.merging_partial_writes()
            } else {
                Ok(ctx)
            }
        })
        .map_err(|e| ToolsetError::Context(e.to_string()))?;
    let grounder = Grounder::new(ctx.clone(), small);
    let mut tools = file_tools(ctx);

    let helper = HelperCommand::current_exe().map_err(|e| ToolsetError::Sandbox(e.to_string()))?;
    let mode = manifest.sandbox.mode;
    let level = match mode {
        SandboxMode::Off => "off (commands are not sandboxed)".to_string(),
        _ => sandbox_level(&places.runtime, &helper),
    };
    // Project manifests deeper than a write root's top level are protected too;
    // the search is bounded and done once (too slow per command on a big tree).
    let pods_dirs: Vec<PathBuf> = {
        let s = scope.read().unwrap_or_else(PoisonError::into_inner);
        s.write_roots()
            .flat_map(|r| find_pods_dirs(&r.target, PODS_DIR_SEARCH))
            .collect()
    };
    let (policy_scope, policy_cwd, policy_places) =
        (Arc::clone(&scope), cwd.to_path_buf(), places.clone());
    let (env_remove, no_network) = (
        manifest.sandbox.env_remove.clone(),
        !manifest.sandbox.network,
    );
    let source = move || {
        let mut p = policy(&policy_scope, &policy_cwd, &tmp, &policy_places, &pods_dirs);
        p.env_remove.clone_from(&env_remove);
        p.no_network = no_network;
        p
    };
    let source: Arc<dyn tools::bash::PolicySource> = Arc::new(source);
    let mut config = BashConfig::new(helper.clone(), Arc::clone(&source), mode, pod_dir);
    config.output_cap = config.output_cap.min(limit);
    let gate = config.gate.clone();
    tools.push(bash_tool(config));
    let hook_env = hooks::HookEnv {
        pod: name.to_string(),
        session: String::new(),
        cwd: cwd.to_path_buf(),
        tmp_dir: tmp_dir_of(places, name),
        helper,
        policy: source,
        mode,
        gate: gate.clone(),
    };
    Ok(Toolset {
        tools,
        level,
        scope,
        gate,
        grounder,
        hook_env,
    })
}
