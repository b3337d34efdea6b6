//! `pod trust [DIR]`, `pod trust --revoke [DIR]` and `pod trust --list`: the
//! user's side of the trusted project manifests (the store itself, which the
//! pod process's manifest loader also reads, is `pod_runtime::trust`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use pod_runtime::trust::{
    TrustStore, canonical, manifest_at, project_manifest, root_of, text_hash,
};

/// `pod trust [DIR]`: records the text of the project manifest that pods started in
/// `dir` would load as trusted, after checking that it parses; prints it.
pub fn trust_command(dir: &Path, env: &manifest::Env, json: bool) -> anyhow::Result<u8> {
    existing_dir(dir)?;
    let dir = canonical(dir);
    let Some(path) = project_manifest(&dir) else {
        anyhow::bail!(
            "no project manifest at or above {}: pods started there load none, so there is nothing to trust",
            dir.display()
        );
    };
    let text = fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let hash = record_trust(&path, &text, env)?;
    let store = store_of(env)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"manifest": path, "sha256": hash, "trust_file": store.path()})
        );
    } else {
        println!(
            "trusted {} (sha256 {}); pods started under {} load it until it changes:",
            path.display(),
            &hash[..12],
            root_of(&path).display()
        );
        for line in text.lines() {
            println!("  {line}");
        }
    }
    Ok(0)
}

/// Records `text`, the project manifest at `path`, as trusted in `env`'s
/// config dir after checking that it parses; returns its sha256. What `pod
/// trust` and the UI's trust prompt do.
pub fn record_trust(path: &Path, text: &str, env: &manifest::Env) -> anyhow::Result<String> {
    manifest::ManifestLayer::parse(text, &path.display().to_string())
        .map_err(|e| anyhow::anyhow!("{e}; fix it before trusting it"))?;
    Ok(store_of(env)?.trust(path, text)?)
}

/// Refuses a `pod trust DIR` that is not a directory (a typo would otherwise read as
/// "no project manifest there").
fn existing_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => anyhow::bail!(
            "{} is not a directory; give a directory in the project",
            dir.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            anyhow::bail!("no such directory: {}", dir.display())
        }
        Err(e) => anyhow::bail!("cannot use {}: {e}", dir.display()),
    }
}

/// The trust store of `env`'s config dir, or an error saying how to get one.
fn store_of(env: &manifest::Env) -> anyhow::Result<TrustStore> {
    let config = env.config_dir().ok_or_else(|| {
        anyhow::anyhow!("no config dir to record trust in; set HOME or POD_CONFIG_DIR")
    })?;
    Ok(TrustStore::in_config_dir(&config))
}

/// `pod trust --revoke [DIR]`: forgets the project manifest of `dir` (also when the
/// file is gone or changed).
pub fn revoke_command(dir: &Path, env: &manifest::Env, json: bool) -> anyhow::Result<u8> {
    existing_dir(dir)?;
    let dir = canonical(dir);
    let Some(root) = manifest::find_project_root(&dir) else {
        anyhow::bail!(
            "no project (no `.pods/` directory) at or above {}",
            dir.display()
        );
    };
    let path = manifest_at(&root);
    let was = store_of(env)?.revoke(&path)?;
    if json {
        println!("{}", serde_json::json!({"manifest": path, "revoked": was}));
    } else if was {
        println!(
            "no longer trusted: {}; pods refuse to start under {} until you trust it again",
            path.display(),
            root_of(&path).display()
        );
    } else {
        println!("{} was not trusted; nothing changed", path.display());
    }
    Ok(0)
}

/// `pod trust --list`: every trusted manifest and whether it still has the text trusted.
pub fn list_command(env: &manifest::Env, json: bool) -> anyhow::Result<u8> {
    let store = store_of(env)?;
    let rows: Vec<(PathBuf, String, &'static str)> = store
        .list()?
        .into_iter()
        .map(|(path, hash)| {
            let state = match fs::read_to_string(&path) {
                Ok(text) if text_hash(&text) == hash => "trusted",
                Ok(_) => "changed since trusted",
                Err(_) => "missing",
            };
            (path, hash, state)
        })
        .collect();
    if json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(path, hash, state)| serde_json::json!({"manifest": path, "sha256": hash, "state": state}))
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else if rows.is_empty() {
        println!("no trusted project manifests ({})", store.path().display());
    } else {
        for (path, hash, state) in &rows {
            println!(
                "{:<22} {}  (sha256 {})",
                state,
                path.display(),
                &hash[..hash.len().min(12)]
            );
        }
    }
    Ok(0)
}
