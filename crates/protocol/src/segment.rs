//! [`Segment`]: one piece of a user message as the client composed it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One inline piece of a user message; a message is the concatenation of its segments.
///
/// Wire form: internally tagged with `"kind"`, e.g.
/// `{"kind":"text","content":"hello"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[schemars(transform = crate::schema::open_fallback)]
pub enum Segment {
    /// Text the user typed.
    Text {
        /// The text itself.
        content: String,
    },
    /// A reference to a file: `@<path>` in the text, and the pod attaches the
    /// file's content (capped) to the message the model sees.
    FileRef {
        /// The path as the user wrote it (relative to the pod's working directory or absolute).
        path: String,
    },
    /// A block the user pasted, kept apart from typed text so clients can fold it.
    Paste {
        /// The pasted text.
        content: String,
    },
    /// A segment kind this version does not know; it renders as nothing.
    ///
    /// Any other `kind` decodes to this (its other fields are dropped), and it
    /// encodes as `{"kind":"unknown"}`.
    #[serde(other)]
    Unknown,
}

impl Segment {
    /// Builds a [`Segment::Text`].
    pub fn text(content: impl Into<String>) -> Segment {
        Segment::Text {
            content: content.into(),
        }
    }

    /// The path of a [`Segment::FileRef`].
    pub fn file_ref(&self) -> Option<String> {
        match self {
            Segment::FileRef { path } => Some(path.clone()),
            _ => None,
        }
    }

    /// Renders segments as the plain text of one message.
    ///
    /// Segments are inline pieces, so they are concatenated without separators
    /// (the client puts whatever whitespace it wants into the text segments).
    /// Text and pastes contribute their content, a file reference becomes
    /// `@<path>`, and unknown segments contribute nothing.
    pub fn flatten_to_text(segments: &[Segment]) -> String {
        let mut out = String::new();
        for segment in segments {
            match segment {
                Segment::Text { content } | Segment::Paste { content } => out.push_str(content),
                Segment::FileRef { path } => {
                    out.push('@');
                    out.push_str(path);
                }
                Segment::Unknown => {}
            }
        }
        out
    }
}
