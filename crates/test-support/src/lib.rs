//! Test support shared by the workspace's tests: the recorded provider streams
//! (copied from real traffic, see `fixtures/providers/README.md` for origins and
//! licenses) and their conversion into the exact bytes a server sends.
//!
//! The fixtures live inside this crate so that tests pass on a fresh clone with
//! nothing beside it.
//!
//! Beside them: [`script`] writes scripted model turns in every scheme, and
//! [`fake_provider`] serves them on loopback, refusing (HTTP 400, the provider's
//! real error body) any request whose history the real API would refuse, by the
//! rules in [`strict`].

#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

pub mod fake_provider;
pub mod procs;
pub mod script;
pub mod strict;
pub mod tmux;

/// Writes `text` to the test process's stderr past libtest's capture (which
/// takes only the print macros): a skipped case must be seen in CI's log.
pub fn loud(text: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr();
    let _ = writeln!(err, "{text}");
    let _ = err.flush();
}

/// The wire protocol a recorded stream belongs to (one fixture directory each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// OpenAI Chat Completions SSE.
    OpenaiChat,
    /// Anthropic Messages SSE.
    Anthropic,
    /// OpenAI Responses SSE.
    OpenaiResponses,
    /// Gemini `streamGenerateContent?alt=sse`.
    Gemini,
}

impl Family {
    /// Every family, in a fixed order.
    pub const ALL: [Family; 4] = [
        Family::OpenaiChat,
        Family::Anthropic,
        Family::OpenaiResponses,
        Family::Gemini,
    ];

    /// The fixture directory name, as used in `MANIFEST.tsv`.
    pub(crate) fn dir_name(self) -> &'static str {
        match self {
            Family::OpenaiChat => "openai-chat",
            Family::Anthropic => "anthropic",
            Family::OpenaiResponses => "openai-responses",
            Family::Gemini => "gemini",
        }
    }

    fn from_dir_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.dir_name() == name)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// One recorded response, as listed in `MANIFEST.tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    /// The wire protocol.
    pub family: Family,
    /// File name inside the family directory.
    pub name: String,
    /// Absolute path of the file.
    pub path: PathBuf,
    /// What the recording covers, from the manifest.
    pub covers: String,
}

/// Why a fixture could not be loaded.
#[derive(Debug)]
pub enum FixtureError {
    /// The file or manifest could not be read.
    Io(PathBuf, std::io::Error),
    /// The manifest or a `.chunks.txt` line is malformed.
    Malformed(String),
}

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FixtureError::Io(path, e) => write!(f, "fixture {}: {e}", path.display()),
            FixtureError::Malformed(msg) => write!(f, "fixture: {msg}"),
        }
    }
}

impl std::error::Error for FixtureError {}

/// The directory holding the recorded provider streams.
pub(crate) fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/providers")
}

/// Every fixture listed in the manifest, in manifest order.
pub(crate) fn all_fixtures() -> Result<Vec<Fixture>, FixtureError> {
    let dir = fixtures_dir();
    let manifest = dir.join("MANIFEST.tsv");
    let text =
        std::fs::read_to_string(&manifest).map_err(|e| FixtureError::Io(manifest.clone(), e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(file), Some(family), Some(covers)) = (cols.first(), cols.get(4), cols.get(5))
        else {
            return Err(FixtureError::Malformed(format!(
                "MANIFEST.tsv line {}: expected 6 tab-separated columns",
                n + 1
            )));
        };
        let family = Family::from_dir_name(family).ok_or_else(|| {
            FixtureError::Malformed(format!(
                "MANIFEST.tsv line {}: unknown family {family:?}",
                n + 1
            ))
        })?;
        let name = file
            .strip_prefix(&format!("{}/", family.dir_name()))
            .ok_or_else(|| {
                FixtureError::Malformed(format!(
                    "MANIFEST.tsv line {}: {file} is not under {}/",
                    n + 1,
                    family.dir_name()
                ))
            })?
            .to_string();
        out.push(Fixture {
            family,
            path: dir.join(file),
            name,
            covers: (*covers).to_string(),
        });
    }
    Ok(out)
}

/// The fixtures of one family.
pub fn fixtures_of(family: Family) -> Result<Vec<Fixture>, FixtureError> {
    Ok(all_fixtures()?
        .into_iter()
        .filter(|f| f.family == family)
        .collect())
}

/// One fixture by family and file name.
pub fn fixture(family: Family, name: &str) -> Result<Fixture, FixtureError> {
    fixtures_of(family)?
        .into_iter()
        .find(|f| f.name == name)
        .ok_or_else(|| {
            FixtureError::Malformed(format!("no fixture {family}/{name} in MANIFEST.tsv"))
        })
}

impl Fixture {
    /// The response body exactly as a server sends it.
    ///
    /// `.sse` files are the recorded bytes. `.chunks.txt` files hold one JSON
    /// payload per line; they are framed as the family frames them on the wire
    /// (see the fixtures README), including OpenAI Chat's final `[DONE]`.
    pub fn wire_body(&self) -> Result<Vec<u8>, FixtureError> {
        let raw = std::fs::read(&self.path).map_err(|e| FixtureError::Io(self.path.clone(), e))?;
        if !self.name.ends_with(".chunks.txt") {
            return Ok(raw);
        }
        let text = String::from_utf8(raw)
            .map_err(|e| FixtureError::Malformed(format!("{}: {e}", self.path.display())))?;
        let mut out = String::new();
        for line in text
            .split('\n')
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
        {
            match self.family {
                Family::OpenaiChat => {
                    out.push_str("data: ");
                    out.push_str(line);
                    out.push_str("\n\n");
                }
                Family::Anthropic | Family::OpenaiResponses => {
                    let payload = event_type(line).ok_or_else(|| {
                        FixtureError::Malformed(format!(
                            "{}: line without a \"type\": {line}",
                            self.path.display()
                        ))
                    })?;
                    out.push_str("event: ");
                    out.push_str(&payload);
                    out.push_str("\ndata: ");
                    out.push_str(line);
                    out.push_str("\n\n");
                }
                Family::Gemini => {
                    out.push_str("data: ");
                    out.push_str(line);
                    out.push_str("\r\n\r\n");
                }
            }
        }
        if self.family == Family::OpenaiChat {
            out.push_str("data: [DONE]\n\n");
        }
        Ok(out.into_bytes())
    }

    /// The JSON payloads of the stream, in order, as text (one per SSE `data:`
    /// field, `[DONE]` excluded): what the provider meant to say, for assertions.
    pub fn payloads(&self) -> Result<Vec<String>, FixtureError> {
        let body = String::from_utf8(self.wire_body()?)
            .map_err(|e| FixtureError::Malformed(format!("{}: {e}", self.path.display())))?;
        let mut out = Vec::new();
        let mut data = String::new();
        // A minimal SSE reader, only for test expectations: events end at a blank line.
        for line in body.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
            if line.is_empty() {
                if !data.is_empty() && data != "[DONE]" {
                    out.push(std::mem::take(&mut data));
                }
                data.clear();
            } else if let Some(rest) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            }
        }
        if !data.is_empty() && data != "[DONE]" {
            out.push(data);
        }
        Ok(out)
    }
}

/// The top-level `"type"` of a JSON payload: Anthropic and OpenAI Responses name
/// each SSE event after it.
fn event_type(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(value.get("type")?.as_str()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_manifest_entry_exists_and_every_file_is_listed() {
        let fixtures = all_fixtures().unwrap();
        assert!(fixtures.len() >= 50, "only {} fixtures", fixtures.len());
        for f in &fixtures {
            assert!(f.path.is_file(), "{} missing", f.path.display());
        }
        for family in Family::ALL {
            for entry in std::fs::read_dir(fixtures_dir().join(family.dir_name())).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                assert!(
                    fixtures
                        .iter()
                        .any(|f| f.family == family && f.name == name),
                    "{family}/{name} is not in MANIFEST.tsv"
                );
            }
        }
    }

    #[test]
    fn every_fixture_yields_json_payloads() {
        for f in all_fixtures().unwrap() {
            let payloads = f.payloads().unwrap();
            assert!(!payloads.is_empty(), "{} has no payloads", f.name);
            for p in payloads {
                assert!(
                    p.trim_start().starts_with('{'),
                    "{}: payload is not a JSON object: {p}",
                    f.name
                );
            }
        }
    }

    #[test]
    fn chunks_files_are_framed_per_family() {
        let chat = fixture(
            Family::OpenaiChat,
            "xai-grok3mini-reasoning-tool-call-cached.chunks.txt",
        )
        .unwrap();
        let body = String::from_utf8(chat.wire_body().unwrap()).unwrap();
        assert!(body.starts_with("data: {"));
        assert!(body.ends_with("data: [DONE]\n\n"));

        let anthropic = fixture(Family::Anthropic, "anthropic-sonnet45-text.chunks.txt").unwrap();
        let body = String::from_utf8(anthropic.wire_body().unwrap()).unwrap();
        assert!(body.starts_with("event: message_start\ndata: {"), "{body}");
        assert!(body.contains("event: ping\n"));

        let gemini = fixture(Family::Gemini, "gemini3pro-reasoning-signature.chunks.txt").unwrap();
        let body = String::from_utf8(gemini.wire_body().unwrap()).unwrap();
        assert!(body.ends_with("}\r\n\r\n"));
    }

    #[test]
    fn sse_files_are_served_byte_for_byte() {
        let f = fixture(Family::Gemini, "gemini20flash-text.sse").unwrap();
        assert_eq!(f.wire_body().unwrap(), std::fs::read(&f.path).unwrap());
    }

    #[test]
    fn event_type_reads_only_the_top_level_key() {
        assert_eq!(
            event_type(r#"{"index":0,"delta":{"type":"text_delta"},"type":"content_block_delta"}"#)
                .as_deref(),
            Some("content_block_delta")
        );
        assert_eq!(event_type(r#"{"a":{"type":"x"}}"#), None);
        assert_eq!(event_type("not json"), None);
    }

    #[test]
    fn unknown_fixture_is_a_clear_error() {
        let err = fixture(Family::Gemini, "nope.sse").unwrap_err();
        assert!(err.to_string().contains("no fixture gemini/nope.sse"));
    }
}
