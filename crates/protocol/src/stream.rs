//! JSON-lines framing over async byte streams: [`JsonLineReader`] and [`JsonLineWriter`].
//!
//! One JSON value per line, `\n`-terminated (`\r\n` accepted). The reader
//! bounds line length without ever buffering an over-long line, and reports
//! per-line failures as [`io::ErrorKind::InvalidData`] errors wrapping a
//! [`LineError`]; after such an error the stream stays usable and the next
//! call reads the following line.

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Default [`JsonLineReader`] line limit: 1 GiB, enough for snapshots of long sessions.
pub const DEFAULT_MAX_LINE_LEN: usize = 1 << 30;

/// Line buffers larger than this are released after use rather than kept.
const KEEP_BUFFER: usize = 64 * 1024;

/// Why one line could not be read; the inner error of an `InvalidData` [`io::Error`].
///
/// Find it with `err.get_ref().and_then(|e| e.downcast_ref::<LineError>())`, or
/// with [`LineError::from_io`].
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The line exceeded the reader's limit; it was discarded.
    #[error("line longer than the limit of {limit} bytes")]
    TooLong {
        /// The limit in bytes, not counting the line terminator.
        limit: usize,
    },
    /// The line is not valid UTF-8.
    #[error("line is not valid UTF-8: {0}")]
    InvalidUtf8(#[from] std::str::Utf8Error),
    /// The line is not valid JSON, or not the JSON the caller expected.
    #[error("invalid JSON line: {0}")]
    InvalidJson(#[from] serde_json::Error),
}

impl LineError {
    /// The `LineError` inside `err`, if it is one of this module's per-line errors.
    pub fn from_io(err: &io::Error) -> Option<&LineError> {
        err.get_ref().and_then(|e| e.downcast_ref::<LineError>())
    }
}

impl From<LineError> for io::Error {
    fn from(err: LineError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }
}

/// Reads JSON values, one per line, from a buffered async reader.
///
/// Blank lines are skipped, a final line without `\n` at EOF is returned, and a
/// line over the limit is discarded as it streams in. `next_line` and `next`
/// are cancel-safe: a partly read line is kept and the next call continues it.
#[derive(Debug)]
pub struct JsonLineReader<R> {
    inner: R,
    /// The line being assembled, without its terminator.
    line: Vec<u8>,
    /// `line` was handed out by the previous call and must be cleared first.
    line_returned: bool,
    /// The current line went over the limit; its remaining bytes are dropped up to `\n`.
    discarding: bool,
    max_line_len: usize,
}

impl<R: AsyncRead> JsonLineReader<BufReader<R>> {
    /// Wraps `reader` in a [`BufReader`] with the default 1 GiB line limit.
    pub fn new(reader: R) -> Self {
        Self::with_max_line_len(reader, DEFAULT_MAX_LINE_LEN)
    }

    /// Wraps `reader` in a [`BufReader`] with a line limit of `max_line_len` bytes.
    pub fn with_max_line_len(reader: R, max_line_len: usize) -> Self {
        JsonLineReader::from_buf_read_with_max_line_len(BufReader::new(reader), max_line_len)
    }
}

impl<R> JsonLineReader<R> {
    /// Reads from an already buffered reader with the default 1 GiB line limit.
    pub fn from_buf_read(reader: R) -> Self {
        Self::from_buf_read_with_max_line_len(reader, DEFAULT_MAX_LINE_LEN)
    }

    /// Reads from an already buffered reader with a line limit of `max_line_len` bytes.
    pub(crate) fn from_buf_read_with_max_line_len(reader: R, max_line_len: usize) -> Self {
        JsonLineReader {
            inner: reader,
            line: Vec::new(),
            line_returned: false,
            discarding: false,
            max_line_len,
        }
    }

    /// The line limit in bytes, not counting the terminator.
    pub fn max_line_len(&self) -> usize {
        self.max_line_len
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The underlying reader; reading from it directly desynchronises the framing.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Returns the underlying reader; a partly read line is lost.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncBufRead + Unpin> JsonLineReader<R> {
    /// Reads the next non-blank line, without its `\n` or `\r\n`; `None` at EOF.
    ///
    /// The bytes are not checked for UTF-8 or JSON. A line over the limit is
    /// consumed and reported as [`LineError::TooLong`].
    pub async fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        if self.line_returned {
            self.reset_line();
            self.line_returned = false;
        }
        // One spare byte, because a `\r` before the `\n` does not count.
        let buffer_limit = self.max_line_len.saturating_add(1);
        loop {
            let available = self.inner.fill_buf().await?;
            let at_eof = available.is_empty();
            let (chunk_len, terminated) = match find_newline(available) {
                Some(i) => (i, true),
                None => (available.len(), false),
            };
            if self.discarding || self.line.len().saturating_add(chunk_len) > buffer_limit {
                self.reset_line();
                self.discarding = true;
            } else {
                self.line.extend_from_slice(&available[..chunk_len]);
            }
            self.inner.consume(chunk_len + usize::from(terminated));
            if !terminated && !at_eof {
                continue;
            }
            // The line is complete: ended by `\n`, or by EOF (then it is the final line).
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            if self.discarding || self.line.len() > self.max_line_len {
                self.discarding = false;
                self.reset_line();
                return Err(LineError::TooLong {
                    limit: self.max_line_len,
                }
                .into());
            }
            if is_blank(&self.line) {
                self.line.clear();
                if at_eof {
                    return Ok(None);
                }
                continue;
            }
            self.line_returned = true;
            return Ok(Some(&self.line));
        }
    }

    /// Reads and decodes the next non-blank line; `None` at EOF.
    ///
    /// A line that is too long, not UTF-8 or not the expected JSON is consumed
    /// and reported as an `InvalidData` error wrapping a [`LineError`].
    pub async fn next<T: DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        let Some(line) = self.next_line().await? else {
            return Ok(None);
        };
        // Checked separately so callers can tell bad UTF-8 from bad JSON.
        let text = std::str::from_utf8(line).map_err(LineError::InvalidUtf8)?;
        let value = serde_json::from_str(text).map_err(LineError::InvalidJson)?;
        Ok(Some(value))
    }

    /// Empties the line buffer, releasing it after an unusually large line (a
    /// big snapshot) instead of holding that memory for the connection's life.
    fn reset_line(&mut self) {
        if self.line.capacity() > KEEP_BUFFER {
            self.line = Vec::new();
        } else {
            self.line.clear();
        }
    }
}

fn find_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Writes JSON values, one per line, each flushed as soon as it is written.
///
/// Not cancel-safe: dropping a `write` future mid-way may leave a partial line,
/// after which the stream should be closed.
#[derive(Debug)]
pub struct JsonLineWriter<W> {
    inner: W,
    /// Reused serialisation buffer, so a line goes out in one `write_all`.
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> JsonLineWriter<W> {
    /// Writes lines to `writer`.
    pub fn new(writer: W) -> Self {
        JsonLineWriter {
            inner: writer,
            buf: Vec::new(),
        }
    }

    /// Serialises `value` as one line plus `\n`, and flushes.
    pub async fn write<T: Serialize + ?Sized>(&mut self, value: &T) -> io::Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, value)?;
        self.buf.push(b'\n');
        self.inner.write_all(&self.buf).await?;
        self.inner.flush().await?;
        self.shrink_buf();
        Ok(())
    }

    /// Writes an already serialised line, appending `\n` if it lacks one, and flushes.
    ///
    /// A line with a `\n` anywhere but at its end is refused with `InvalidInput`,
    /// since it would split into several lines on the wire.
    pub async fn write_raw_line(&mut self, line: &[u8]) -> io::Result<()> {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        if find_newline(body).is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "raw line contains a newline",
            ));
        }
        self.inner.write_all(body).await?;
        self.inner.write_all(b"\n").await?;
        self.inner.flush().await
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The underlying writer; writing to it directly may interleave with lines.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Releases the buffer after an unusually large line, like the reader does.
    fn shrink_buf(&mut self) {
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
        }
    }
}
