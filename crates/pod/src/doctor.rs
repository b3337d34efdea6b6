//! `pod doctor`: what a person needs to know when pods does not behave — where
//! its files live, whether those places are usable, and which providers it can
//! reach. Each check reports a verdict instead of failing on the first problem.

use sandbox::{Level, SandboxReport};
use serde::Serialize;

use llm_worker::llm_client::http::is_loopback_url;

use crate::launch::{LaunchError, LaunchOptions, Vars, client_for, load_manifest_sourced};
use crate::runtime::dir::{DirEnv, Places, ensure_private_dir};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it is usable.
    pub ok: bool,
    /// What was found, or what is wrong and what to do.
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every check, in the order it ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// True when every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// Runs the checks of pods' own places against `env` (the provider's are
/// [`provider_checks`]).
pub fn run(env: &DirEnv, uid: u32) -> Report {
    let mut checks = Vec::new();
    match Places::resolve(env) {
        Err(e) => checks.push(Check {
            name: "places".into(),
            ok: false,
            detail: e.to_string(),
        }),
        Ok(places) => {
            checks.push(match ensure_private_dir(&places.runtime, uid) {
                Ok(()) => Check {
                    name: "runtime dir".into(),
                    ok: true,
                    detail: format!("{} (private, 0700)", places.runtime.display()),
                },
                Err(e) => Check {
                    name: "runtime dir".into(),
                    ok: false,
                    detail: e.to_string(),
                },
            });
            for (name, path) in [
                ("state dir", &places.state),
                ("config dir", &places.config),
                ("model dir", &places.models),
            ] {
                let exists = path.is_dir();
                checks.push(Check {
                    name: name.into(),
                    ok: true,
                    detail: format!(
                        "{}{}",
                        path.display(),
                        if exists { "" } else { " (not created yet)" }
                    ),
                });
            }
            checks.push(model_check(&places.models));
            for (ok, detail) in mcp_serve::list::running_servers(&places) {
                let name = "mcp server".into();
                checks.push(Check { name, ok, detail });
            }
        }
    }
    Report { checks }
}

/// How long `pod doctor` waits for a server on this machine to accept a connection.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The manifest layers a pod started with `opts` would read (user, project behind its
/// trust, `--manifest`, `--overlay`), each parsed, then the provider it would use:
/// scheme, URL, model, where that choice came from and its key. No provider at all is
/// an error. The only network request is a connection to a server on this machine
/// (a remote provider is not contacted: doctor must not spend or leak anything).
pub fn provider_checks(opts: &LaunchOptions, env: &manifest::Env, vars: Vars<'_>) -> Vec<Check> {
    let mut checks = vec![user_manifest_check(env)];
    let project = crate::trust::doctor_check(&opts.cwd, env);
    checks.push(Check {
        name: "project".into(),
        ok: project.ok,
        detail: project.detail,
    });
    checks.push(Check {
        name: "instructions".into(),
        ok: true,
        detail: pod_runtime::instructions::describe(&opts.cwd),
    });
    if let Some(file) = &opts.manifest {
        let path = if file.is_absolute() {
            file.clone()
        } else {
            opts.cwd.join(file)
        };
        checks.push(match std::fs::read_to_string(&path) {
            Err(e) => Check {
                name: "manifest file".into(),
                ok: false,
                detail: format!("cannot read {}: {e}", path.display()),
            },
            Ok(text) => layer_check("manifest file", &text, &path.display().to_string()),
        });
    }
    if let Some(overlay) = &opts.overlay {
        checks.push(match manifest::ManifestLayer::parse_overlay(overlay) {
            Ok(_) => Check {
                name: "overlay".into(),
                ok: true,
                detail: "overlay (parses)".into(),
            },
            Err(e) => Check {
                name: "overlay".into(),
                ok: false,
                detail: e.to_string(),
            },
        });
    }
    let layers_ok = checks.iter().all(|c| c.ok);
    checks.push(provider_check(opts, env, vars, layers_ok));
    checks
}

/// One manifest layer's text, parsed: ok, or the parse error (file, line, column).
fn layer_check(name: &str, text: &str, file: &str) -> Check {
    match manifest::ManifestLayer::parse(text, file) {
        Ok(_) => Check {
            name: name.into(),
            ok: true,
            detail: format!("{file} (parses)"),
        },
        Err(e) => Check {
            name: name.into(),
            ok: false,
            detail: e.to_string(),
        },
    }
}

/// The `user manifest` line: absent (fine), or parsed.
fn user_manifest_check(env: &manifest::Env) -> Check {
    let name = "user manifest";
    let Some(path) = env.user_manifest_path() else {
        return Check {
            name: name.into(),
            ok: true,
            detail: "none (no config dir: HOME and POD_CONFIG_DIR are unset)".into(),
        };
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => layer_check(name, &text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Check {
            name: name.into(),
            ok: true,
            detail: format!("none at {}", path.display()),
        },
        Err(e) => Check {
            name: name.into(),
            ok: false,
            detail: format!("cannot read {}: {e}", path.display()),
        },
    }
}

/// The `provider` line, resolved exactly as a starting pod resolves it.
fn provider_check(
    opts: &LaunchOptions,
    env: &manifest::Env,
    vars: Vars<'_>,
    layers_ok: bool,
) -> Check {
    let check = |ok: bool, detail: String| Check {
        name: "provider".into(),
        ok,
        detail,
    };
    let (m, source) = match load_manifest_sourced(opts, env.clone(), vars) {
        Ok(found) => found,
        // The failing layer has its own line above; saying it again adds nothing.
        Err(LaunchError::Manifest(_)) if !layers_ok => {
            return check(
                false,
                "unknown: the manifest layers above do not load; fix them first".into(),
            );
        }
        Err(e) => return check(false, e.to_string()),
    };
    let model = &m.model;
    let what = format!(
        "{} at {}, model {} (from {source})",
        model.scheme, model.base_url, model.model
    );
    if let Err(e) = client_for(model, vars) {
        return check(false, format!("{e} (provider from {source})"));
    }
    let key = if vars(&model.api_key_env).is_some() {
        format!("key from {}", model.api_key_env)
    } else {
        "no key (a server on this machine)".to_string()
    };
    if !is_loopback_url(&model.base_url) {
        return check(true, format!("{what}; {key}; not contacted (remote)"));
    }
    match probe_loopback(&model.base_url) {
        Ok(addr) => check(true, format!("{what}; {key}; {addr} accepts connections")),
        Err(why) => check(
            false,
            format!(
                "{what}; nothing answers: {why}; start the server (`pod model up` for the local model)"
            ),
        ),
    }
}

/// Why nothing answered at a loopback URL.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("cannot resolve {target}: {source}")]
    Resolve {
        target: String,
        source: std::io::Error,
    },
    #[error("{0} resolves to no loopback address")]
    NoLoopback(String),
    #[error("{addr}: {source}")]
    Connect {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Connects to the host and port of a loopback `url` (default port from its scheme).
fn probe_loopback(url: &str) -> Result<std::net::SocketAddr, ProbeError> {
    use std::net::ToSocketAddrs;
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let has_port = match host_port.rfind(']') {
        Some(end) => host_port[end..].contains(':'),
        None => host_port.contains(':'),
    };
    let target = if has_port {
        host_port.to_string()
    } else {
        let port = if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        format!("{host_port}:{port}")
    };
    let addrs: Vec<_> = target
        .to_socket_addrs()
        .map_err(|source| ProbeError::Resolve {
            target: target.clone(),
            source,
        })?
        .filter(|a| a.ip().is_loopback())
        .collect();
    let mut last = ProbeError::NoLoopback(target);
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
            Ok(_) => return Ok(addr),
            Err(source) => last = ProbeError::Connect { addr, source },
        }
    }
    Err(last)
}

/// The `local model` line: not downloaded, downloaded, or running (URL, pid, RSS).
/// Always ok: a machine without the local model is a valid setup.
pub(crate) fn model_check(models: &std::path::Path) -> Check {
    let detail = match crate::model::ModelSpec::pinned() {
        Ok(spec) => crate::model::status(&spec, &crate::model::ModelDir::new(models)).summary(),
        Err(e) => e.to_string(),
    };
    Check {
        name: "local model".into(),
        ok: true,
        detail,
    }
}

/// The `sandbox` line: the enforcement level commands get, what it leaves open, and how
/// it was found. Fails only at level `none` (commands then need `[sandbox] mode = "off"`).
pub fn sandbox_check(report: &SandboxReport) -> Check {
    let mut detail = match report.level {
        Level::None => format!(
            "none: {}; commands refuse to run unless the manifest sets [sandbox] mode = \"off\" or the pod starts with --no-sandbox",
            report.detail
        ),
        level => format!("{level} ({})", report.detail),
    };
    if !report.gaps.is_empty() {
        detail.push_str("; gaps: ");
        detail.push_str(&report.gaps.join("; "));
    }
    Check {
        name: "sandbox".into(),
        ok: report.level != Level::None,
        detail,
    }
}

/// The `sandbox` line when the level could not even be probed (no path to this binary).
pub fn sandbox_unknown(reason: &str) -> Check {
    Check {
        name: "sandbox".into(),
        ok: false,
        detail: format!("unknown: {reason}"),
    }
}
