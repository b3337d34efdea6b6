//! `manifest`: manifest TOML through [`ManifestLayer::parse`],
//! [`ManifestLayer::parse_overlay`] and the whole cascade
//! ([`ManifestLoader::load`]), then into a [`Scope`].
//!
//! An input is up to three layers separated by a `#%%` comment line: the user
//! manifest, the project manifest (or, for half of the inputs, a `--manifest`
//! file) and the overlay. They are written where the loader looks for them,
//! in a private directory with its own home and config dir, raw bytes and all
//! (so invalid UTF-8 reaches the loader's own reading).
//!
//! Invariants: nothing panics; parsing fails only with the typed parse errors,
//! whose line and column lie inside the text; `parse_overlay` reads text that
//! `parse` accepts the same way; a loaded manifest's scope targets are
//! absolute; its scope builds or fails with a typed error.

use std::fs;
use std::path::{Path, PathBuf};

use manifest::{Env, ManifestError, ManifestLayer, ManifestLoader, Scope};

use crate::driver::{Feedback, Harness};
use crate::error::FuzzError;
use crate::rng::fnv1a;
use crate::targets::{scratch_dir, shorten, variant_name};

/// Separates the layers of one input; a TOML comment line, so a whole seed is TOML too.
const SEPARATOR: &[u8] = b"\n#%%\n";

/// Builds the harness and its directories.
pub(super) fn build() -> Result<Box<dyn Harness>, FuzzError> {
    let tmp = scratch_dir("pod-fuzz-manifest-")?;
    let root = tmp.path().to_path_buf();
    let harness = ManifestHarness {
        home: root.join("home"),
        config: root.join("config"),
        project: root.join("project"),
        cwd: root.join("project").join("src"),
        file: root.join("elsewhere").join("pod.toml"),
        _tmp: tmp,
    };
    for dir in [
        &harness.home,
        &harness.config,
        &harness.project.join(".pods"),
        &harness.cwd,
        &root.join("elsewhere"),
    ] {
        fs::create_dir_all(dir).map_err(|e| FuzzError::io("create directory", dir, e))?;
    }
    Ok(Box::new(harness))
}

struct ManifestHarness {
    home: PathBuf,
    /// `$POD_CONFIG_DIR`: holds the user manifest.
    config: PathBuf,
    /// Holds `.pods/manifest.toml`.
    project: PathBuf,
    /// The working directory, inside the project.
    cwd: PathBuf,
    /// Where a `--manifest` file is written.
    file: PathBuf,
    /// Removed with the harness.
    _tmp: tempfile::TempDir,
}

/// Manifests from the crate's own tests (besides the documented example).
const TEST_MANIFESTS: &[&str] = &[
    "[model]\nmodel = \"from-project\"\nmax_tokens = 10\n",
    "[model]\nmodel = \"from-file\"\ntimeout_s = 7\n[[scope.allow]]\ntarget = \"out\"\npermission = \"write\"\n",
    "[worker]\nmax_llm_calls = 11\n\n[sandbox]\nmode = \"off\"\n\n[[scope.allow]]\ntarget = \"build\"\npermission = \"read\"\nrecursive = false\n",
    "[pod]\nname = \"api-1\"\n\n[model]\nscheme = \"openai_chat\"\nseed = -7\nextra = { top_k = 40, nested = { a = 1 } }\n\n[[scope.allow]]\ntarget = \"~/notes\"\npermission = \"write\"\n\n[[scope.shared]]\ntarget = \"~/.cache/pip\"\n",
    "[sandbox]\nenv_remove = [\"AWS_*\", \"_X1\"]",
    "[sandbox]\nnetwork = false",
    "[[hooks]]\nevent = \"pre_tool\"\nmatch = \"{Write,Edit}\"\ncommand = [\"./fmt.sh\", \"-q\"]\ntimeout_ms = 500\non_error = \"block\"\n\n[[hooks]]\nevent = \"turn_end\"\ncommand = \"cat >> log\"\n\n[[permissions]]\ntool = \"Bash\"\ncommand = \"git push*\"\ndecision = \"deny\"\n\n[[permissions]]\ntool = \"*\"\npath = \"~/secrets/**\"\ndecision = \"allow\"\n",
    "[[scope.allow]]\ntarget = \"~/x\"\npermission = \"read\"",
    "[model]\nextra = { penalty = nan }",
    "[context]\nprune_at = 0.4\nauto = false",
    "[context]\ncompact_at = 1.5",
    "[model] max_tokens = 4096",
    "model.max_tokens = 4096",
    "[model] max_tokens = 10\n[worker] max_llm_calls = 3",
    "[model]\nextra = { a = [\n[1, 2],\n] }",
    "[model] max_tokns = 1",
    "[[scope.deny]]\ntarget = \"vendor\"\npermission = \"write\"\n[[scope.deny]]\ntarget = \"/etc\"\npermission = \"read\"\nrecursive = false\n",
];

/// The TOML blocks of `docs/manifest.md`: the documented example manifest.
fn documented_manifests() -> Vec<String> {
    let doc = include_str!("../../../../docs/manifest.md");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match &mut current {
            None if line.trim_start().starts_with("```toml") => current = Some(String::new()),
            Some(block) if line.trim_start().starts_with("```") => {
                out.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

impl Harness for ManifestHarness {
    fn seeds(&mut self) -> Result<Vec<Vec<u8>>, FuzzError> {
        let documented = documented_manifests();
        let Some(example) = documented.first().cloned() else {
            return Err(FuzzError::setup(
                "manifest",
                "docs/manifest.md has no ```toml block",
            ));
        };
        let mut seeds: Vec<Vec<u8>> = documented.into_iter().map(String::into_bytes).collect();
        seeds.extend(TEST_MANIFESTS.iter().map(|m| m.as_bytes().to_vec()));
        // Whole cascades: user, project, overlay.
        let sep = String::from_utf8_lossy(SEPARATOR).into_owned();
        for (user, project, overlay) in [
            (TEST_MANIFESTS[3], example.as_str(), TEST_MANIFESTS[10]),
            (example.as_str(), TEST_MANIFESTS[1], TEST_MANIFESTS[2]),
            (TEST_MANIFESTS[0], TEST_MANIFESTS[15], TEST_MANIFESTS[12]),
        ] {
            seeds.push(format!("{user}{sep}{project}{sep}{overlay}").into_bytes());
        }
        Ok(seeds)
    }

    fn check(&mut self, input: &[u8]) -> Result<Feedback, FuzzError> {
        let parts = split_layers(input);
        let mut feedback = Feedback::default();
        for part in &parts {
            let text = String::from_utf8_lossy(part);
            let layer = ManifestLayer::parse(&text, "fuzz.toml");
            let overlay = ManifestLayer::parse_overlay(&text);
            // "Text that is valid TOML is read as is."
            if let Ok(layer) = &layer {
                match &overlay {
                    // Debug, not ==: a `nan` in model.extra is not equal to itself.
                    Ok(o) => assert_eq!(
                        format!("{o:?}"),
                        format!("{layer:?}"),
                        "parse_overlay read valid TOML differently"
                    ),
                    Err(e) => panic!("parse_overlay refused a layer parse accepts: {e}"),
                }
            }
            feedback = feedback
                .and(check_parse(&text, layer))
                .and(check_parse(&text, overlay));
        }
        Ok(feedback.and(self.cascade(&parts, fnv1a(input) & 1 == 1)?))
    }

    fn max_len(&self) -> usize {
        64 * 1024
    }
}

impl ManifestHarness {
    /// Writes the layers where the loader finds them, loads, and checks the result.
    fn cascade(&self, parts: &[&[u8]], as_file: bool) -> Result<Feedback, FuzzError> {
        let user = self.config.join("manifest.toml");
        let project = self.project.join(".pods").join("manifest.toml");
        put(&user, parts.first().copied())?;
        put(&project, if as_file { None } else { parts.get(1).copied() })?;
        put(
            &self.file,
            if as_file { parts.get(1).copied() } else { None },
        )?;

        let env = Env {
            home: Some(self.home.clone()),
            pod_config_dir: Some(self.config.clone()),
            xdg_config_home: None,
        };
        let mut loader = ManifestLoader::new(&self.cwd, env);
        if as_file && parts.len() > 1 {
            loader = loader.file(&self.file);
        }
        if let Some(overlay) = parts.get(2) {
            loader = loader.overlay(String::from_utf8_lossy(overlay).into_owned());
        }
        let manifest = match loader.load() {
            Ok(manifest) => manifest,
            Err(e) => return Ok(Feedback::of(&format!("load error {}", kind_of(&e)))),
        };
        for (list, rules) in [
            ("allow", &manifest.scope.allow),
            ("deny", &manifest.scope.deny),
            ("shared", &manifest.scope.shared),
        ] {
            for sourced in rules {
                assert!(
                    sourced.rule.target.is_absolute(),
                    "a loaded manifest has a relative scope.{list} target {:?} (from the {})",
                    sourced.rule.target,
                    sourced.origin
                );
            }
        }
        let scope = match Scope::from_config(&manifest.scope) {
            Ok(scope) => scope,
            Err(e) => return Ok(Feedback::of(&format!("scope error {e:?}"))),
        };
        let permission = scope.permission(&self.cwd);
        let _ = scope.summary_without(&[]);
        Ok(Feedback::of(&format!(
            "loaded {:?} {permission:?}",
            manifest.model.scheme
        )))
    }
}

/// The layers of an input: up to three, split at the separator lines.
fn split_layers(input: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = input;
    while parts.len() < 2 {
        let Some(at) = rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) else {
            break;
        };
        parts.push(&rest[..at]);
        rest = &rest[at + SEPARATOR.len()..];
    }
    parts.push(rest);
    parts
}

/// Writes `bytes` to `path`, or removes `path` when `None`.
fn put(path: &Path, bytes: Option<&[u8]>) -> Result<(), FuzzError> {
    match bytes {
        Some(bytes) => fs::write(path, bytes).map_err(|e| FuzzError::io("write", path, e)),
        None => match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(FuzzError::io("remove", path, e))
            }
            _ => Ok(()),
        },
    }
}

/// Checks what parsing one layer gave: a layer, or a parse error placed inside the text.
fn check_parse(text: &str, parsed: Result<ManifestLayer, ManifestError>) -> Feedback {
    let error = match parsed {
        Ok(layer) => return Feedback::of(&format!("layer {:?}", layer.model.scheme)),
        Err(error) => error,
    };
    match &error {
        ManifestError::Parse { line, column, .. } => {
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(
                *line >= 1 && *line <= lines.len(),
                "parse error at line {line} of a {}-line text: {error}",
                lines.len()
            );
            let chars = lines[*line - 1].chars().count();
            assert!(
                *column >= 1 && *column <= chars + 1,
                "parse error at column {column} of a {chars}-character line: {error}; line {}",
                shorten(lines[*line - 1], 200)
            );
        }
        ManifestError::ParseUnlocated { .. } => {}
        other => panic!("parsing gave an error that is not a parse error: {other}"),
    }
    Feedback::of(&format!("parse error {}", kind_of(&error)))
}

/// What kind of error this is, without what varies with the input (keys,
/// file names, values): the parser's message, or the variant.
fn kind_of(error: &ManifestError) -> String {
    match error {
        ManifestError::Parse { message, .. } | ManifestError::ParseUnlocated { message, .. } => {
            message.lines().next().unwrap_or_default().to_owned()
        }
        other => variant_name(&format!("{other:?}")).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_split_at_separator_lines() {
        assert_eq!(split_layers(b"a"), vec![&b"a"[..]]);
        assert_eq!(
            split_layers(b"a\n#%%\nb\n#%%\nc\n#%%\nd"),
            vec![&b"a"[..], b"b", b"c\n#%%\nd"]
        );
    }

    #[test]
    fn the_documented_example_is_found() {
        let docs = documented_manifests();
        assert!(
            docs.iter().any(|d| d.contains("[[scope.allow]]")),
            "{docs:?}"
        );
    }
}
