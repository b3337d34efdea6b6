//! [`LogLine`]: one committed line, exactly as logged, cheap to clone and share.
//!
//! Lines loaded from a segment share the one buffer the segment was read into (one
//! allocation for the whole file instead of one per line, which matters when a long
//! session is opened); an appended line owns the buffer it was serialized into.
//! Either way a clone is a reference-count increment, so the pod can keep the
//! current segment's lines for snapshots and broadcast each new line to every
//! client without copying.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// One log line (without its `\n`), dereferencing to `&str`.
#[derive(Clone)]
pub struct LogLine {
    buf: Arc<String>,
    /// Byte range of the line in `buf`; always on char boundaries (the ends of
    /// lines in valid UTF-8 text).
    start: usize,
    end: usize,
}

impl LogLine {
    /// A line that is `buf[start..end]`.
    pub(crate) fn new(buf: Arc<String>, start: usize, end: usize) -> Self {
        debug_assert!(buf.get(start..end).is_some());
        LogLine { buf, start, end }
    }

    /// The line as a string slice.
    pub fn as_str(&self) -> &str {
        // `start..end` is in bounds and on char boundaries by construction, so this
        // never falls back.
        self.buf.get(self.start..self.end).unwrap_or_default()
    }
}

impl Deref for LogLine {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for LogLine {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for LogLine {
    fn from(line: String) -> Self {
        let end = line.len();
        LogLine::new(Arc::new(line), 0, end)
    }
}

impl From<&str> for LogLine {
    fn from(line: &str) -> Self {
        LogLine::from(line.to_owned())
    }
}

impl PartialEq for LogLine {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for LogLine {}

impl PartialEq<str> for LogLine {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for LogLine {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::hash::Hash for LogLine {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_a_buffer_and_compares_by_text() {
        let buf = Arc::new("{\"a\":1}\n{\"b\":2}\n".to_owned());
        let first = LogLine::new(buf.clone(), 0, 7);
        let second = LogLine::new(buf, 8, 15);
        assert_eq!(&*first, "{\"a\":1}");
        assert_eq!(second, "{\"b\":2}");
        assert_eq!(second, LogLine::from("{\"b\":2}"));
        assert_ne!(first, second);
        assert_eq!(format!("{first}"), "{\"a\":1}");
        assert_eq!(format!("{second:?}"), "\"{\\\"b\\\":2}\"");
    }
}
