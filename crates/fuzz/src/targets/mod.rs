//! The fuzz targets: one harness per piece of input-facing code.

use std::path::{Path, PathBuf};

use crate::driver::Target;
use crate::error::FuzzError;
use crate::rng::Rng;

mod json_lines;
mod manifest;
mod protocol;
mod session;
mod sse;

/// Every target, in the order `all` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "json-lines",
        about: "bytes through protocol::stream::JsonLineReader (small line limits, random \
                read sizes, futures dropped mid-line), compared with a reference framing; \
                each line decoded as Method and Event",
        build: json_lines::build,
    },
    Target {
        name: "protocol",
        about: "JSON lines decoded as protocol::Method and protocol::Event; what decodes \
                must re-encode and decode to the same value",
        build: protocol::build,
    },
    Target {
        name: "sse-openai-chat",
        about: "recorded OpenAI Chat streams through SseParser + the OpenAI Chat decoder + \
                Assembler, whole and sliced at random points: same events, same outcome",
        build: sse::build_openai_chat,
    },
    Target {
        name: "sse-openai-responses",
        about: "recorded OpenAI Responses streams through SseParser + the Responses decoder \
                + Assembler, whole and sliced",
        build: sse::build_openai_responses,
    },
    Target {
        name: "sse-anthropic",
        about: "recorded Anthropic streams through SseParser + the Anthropic decoder + \
                Assembler, whole and sliced",
        build: sse::build_anthropic,
    },
    Target {
        name: "sse-gemini",
        about: "recorded Gemini streams through SseParser + the Gemini decoder + Assembler, \
                whole and sliced",
        build: sse::build_gemini,
    },
    Target {
        name: "manifest",
        about: "manifest TOML through ManifestLayer::parse/parse_overlay and the cascade \
                (user, project or --manifest file, overlay layers) into Scope: typed errors \
                with valid positions, absolute scope targets",
        build: manifest::build,
    },
    Target {
        name: "session-log",
        about: "mutated session directories (bit flips, torn tails, moved lines, deleted \
                files) through read_session, SessionReader::read_last and SessionWriter::open: \
                consecutive seqs when accepted, files untouched when refused",
        build: session::build,
    },
];

/// Where harnesses (and the binary) make their temporary directories:
/// `$POD_FUZZ_TMPDIR` if set (the binary points its child processes into its
/// own scratch directory, so even a crashed child leaves nothing behind),
/// else `/dev/shm` (RAM: the session writer fsyncs, which a disk makes slow),
/// else the system's temporary directory.
pub fn scratch_base() -> PathBuf {
    if let Some(dir) = std::env::var_os("POD_FUZZ_TMPDIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        return shm.to_path_buf();
    }
    std::env::temp_dir()
}

/// A new temporary directory under [`scratch_base`] (the system's if that fails).
fn scratch_dir(prefix: &str) -> Result<tempfile::TempDir, FuzzError> {
    let base = scratch_base();
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .or_else(|_| tempfile::Builder::new().prefix(prefix).tempdir())
        .map_err(|e| FuzzError::io("create a temporary directory under", base, e))
}

/// The target called `name`.
pub fn target(name: &str) -> Result<Target, FuzzError> {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .copied()
        .ok_or_else(|| FuzzError::UnknownTarget {
            name: name.to_owned(),
            known: TARGETS
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The method and event lines documented in `docs/protocol.md`: real wire
/// lines, kept current with the protocol by its own tests.
fn documented_protocol_lines() -> Vec<&'static str> {
    include_str!("../../../../docs/protocol.md")
        .lines()
        .filter(|l| l.starts_with("{\"method\"") || l.starts_with("{\"event\""))
        .collect()
}

/// The size of the next read: single bytes, small and large pieces, as a
/// socket delivers them.
fn read_size(rng: &mut Rng) -> usize {
    match rng.below(4) {
        0 => 1,
        1 => rng.len_up_to(16),
        2 => rng.len_up_to(512),
        _ => rng.len_up_to(16 * 1024),
    }
}

/// `text` cut to at most `max` characters for a panic message.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}… ({} bytes in all)", &text[..at], text.len()),
        None => text.to_owned(),
    }
}

/// A variant's name from its `Debug` text (`Foo { .. }` → `Foo`): outcome kinds for feedback.
fn variant_name(debug: &str) -> &str {
    let end = debug
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(debug.len());
    &debug[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_are_unique_and_found() {
        for t in TARGETS {
            assert_eq!(target(t.name).unwrap().name, t.name);
            assert_eq!(TARGETS.iter().filter(|u| u.name == t.name).count(), 1);
        }
        assert!(target("nope").is_err());
    }

    #[test]
    fn the_protocol_doc_has_method_and_event_lines() {
        let lines = documented_protocol_lines();
        assert!(lines.iter().any(|l| l.starts_with("{\"method\"")));
        assert!(lines.iter().any(|l| l.starts_with("{\"event\"")));
    }

    #[test]
    fn helpers() {
        assert_eq!(variant_name("TextDelta { text: \"a\" }"), "TextDelta");
        assert_eq!(variant_name("Cancelled"), "Cancelled");
        assert_eq!(shorten("héllo", 2), "hé… (6 bytes in all)");
        assert_eq!(shorten("ab", 5), "ab");
    }
}
