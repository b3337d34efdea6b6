//! Saved inputs: `regressions/<target>/<hash>.bin` (replayed by the tests, so a
//! fixed crash stays fixed) and `findings/<target>/` (crashes not fixed yet,
//! kept out of the replay until their fix lands).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::FuzzError;
use crate::rng::fnv1a;

/// This crate's `regressions/` directory, where the binary saves failing inputs.
pub fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions")
}

/// This crate's `findings/` directory: known crashes awaiting a fix, not replayed.
pub fn findings_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("findings")
}

/// The file name an input is saved under: its FNV-1a hash in hex, so saving
/// the same input twice keeps one file.
pub fn input_file_name(input: &[u8]) -> String {
    format!("{:016x}.bin", fnv1a(input))
}

/// Saves `input` as `<dir>/<target>/<hash>.bin`, creating directories as needed.
pub fn save_input(dir: &Path, target: &str, input: &[u8]) -> Result<PathBuf, FuzzError> {
    let target_dir = dir.join(target);
    fs::create_dir_all(&target_dir)
        .map_err(|e| FuzzError::io("create directory", &target_dir, e))?;
    let path = target_dir.join(input_file_name(input));
    fs::write(&path, input).map_err(|e| FuzzError::io("write", &path, e))?;
    Ok(path)
}

/// The `.bin` files in `<dir>/<target>/`, sorted by name, with their bytes;
/// none if the directory does not exist.
pub fn load_inputs(dir: &Path, target: &str) -> Result<Vec<(PathBuf, Vec<u8>)>, FuzzError> {
    let target_dir = dir.join(target);
    let entries = match fs::read_dir(&target_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FuzzError::io("list", &target_dir, e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| FuzzError::io("list", &target_dir, e))?
            .path();
        if path.extension().is_some_and(|ext| ext == "bin") {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).map_err(|e| FuzzError::io("read", &path, e))?;
            Ok((path, bytes))
        })
        .collect()
}

/// The subdirectories of `dir` (target names, in a regressions or findings
/// directory), sorted; none if `dir` does not exist.
pub fn target_dirs(dir: &Path) -> Result<Vec<String>, FuzzError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FuzzError::io("list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FuzzError::io("list", dir, e))?;
        if entry.path().is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_inputs_load_back_under_their_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let path = save_input(tmp.path(), "t", b"abc").unwrap();
        assert_eq!(path, tmp.path().join("t").join(input_file_name(b"abc")));
        save_input(tmp.path(), "t", b"abc").unwrap();
        let loaded = load_inputs(tmp.path(), "t").unwrap();
        assert_eq!(loaded, vec![(path, b"abc".to_vec())]);
        assert!(load_inputs(tmp.path(), "none").unwrap().is_empty());
        assert_eq!(target_dirs(tmp.path()).unwrap(), vec!["t".to_owned()]);
    }
}
