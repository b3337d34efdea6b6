//! JSON-lines framing over async byte streams: [`JsonLineReader`] and [`JsonLineWriter`].
//!
//! One JSON value per line, `\n`-terminated (`\r\n` accepted). The reader
//! bounds line length without ever buffering an over-long line, and reports
//! per-line failures as [`io::ErrorKind::InvalidData`] errors wrapping a
//! [`LineError`]; after such an error the stream stays usable and the next
//! call reads the following line.
//!
//! Readers may also share a [`LineBudget`], which caps the memory their
//! unfinished lines hold in all: a server bounds each connection's line, and
//! the budget bounds what many connections holding long half lines add up to.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Default [`JsonLineReader`] line limit: 1 GiB, enough for snapshots of long sessions.
pub const DEFAULT_MAX_LINE_LEN: usize = 1 << 30;

/// Line buffers larger than this are released after use rather than kept.
///
/// A reader may keep this much between lines anyway, so a [`LineBudget`] only
/// counts line buffer capacity past it: ordinary short lines never touch the
/// budget, and are still read when long half lines have used it all up.
const KEEP_BUFFER: usize = 64 * 1024;

/// A cap on the bytes the unfinished lines of several readers hold in all.
///
/// Shared as an `Arc` by readers made with [`JsonLineReader::with_limits`]. Each
/// reader holds a share for its line buffer's capacity past the first 64 KiB
/// (what every reader may keep between lines anyway) and gives it back when
/// the line is done, discarded, or the reader is dropped. A line that would
/// take the readers past the limit is refused at once with
/// [`LineError::OverBudget`], rather than when its end arrives, since its end
/// may never come.
#[derive(Debug)]
pub struct LineBudget {
    limit: usize,
    in_use: AtomicUsize,
}

impl LineBudget {
    /// A budget of `limit` bytes, none of them in use.
    pub fn new(limit: usize) -> Self {
        LineBudget {
            limit,
            in_use: AtomicUsize::new(0),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The bytes readers hold now (a snapshot: other readers may change it at once).
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if the total stays within the limit.
    fn take(&self, bytes: usize) -> bool {
        // A compare-and-swap loop, so racing readers never pass the limit together.
        self.in_use
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Gives back `bytes` taken earlier.
    fn give_back(&self, bytes: usize) {
        self.in_use.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// The share of a [`LineBudget`] one reader holds; a separate type so that
/// dropping it gives the share back even when the reader is taken apart by
/// [`JsonLineReader::into_inner`].
#[derive(Debug, Default)]
struct Charge {
    budget: Option<Arc<LineBudget>>,
    held: usize,
}

impl Charge {
    /// Holds exactly `bytes` of the budget, taking or giving back the
    /// difference; false, holding what it held, if the budget lacks the room.
    fn hold(&mut self, bytes: usize) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        if bytes > self.held {
            if !budget.take(bytes - self.held) {
                return false;
            }
        } else {
            budget.give_back(self.held - bytes);
        }
        self.held = bytes;
        true
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.hold(0);
    }
}

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
    /// The line would take the unfinished lines of the readers sharing a
    /// [`LineBudget`] past its limit. Reported as soon as that happens, not at
    /// the end of the line; the line is discarded up to its `\n` without a
    /// second error.
    #[error(
        "unfinished lines would hold more than their shared limit of {limit} bytes; this line was discarded"
    )]
    OverBudget {
        /// The budget's limit in bytes.
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
    /// Whether the rest of the current line is dropped up to `\n`, and why.
    discard: Discard,
    max_line_len: usize,
    /// The budget share `line` holds, if the reader has a budget.
    charge: Charge,
}

/// What happens to the bytes of the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Discard {
    /// They are kept.
    No,
    /// Dropped: the line is over the length limit, reported when it ends.
    TooLong,
    /// Dropped: the line went over the budget, which was reported already.
    Refused,
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

    /// Wraps `reader` in a [`BufReader`] with a line limit of `max_line_len`
    /// bytes, its unfinished line counted against `budget`.
    pub fn with_limits(reader: R, max_line_len: usize, budget: Arc<LineBudget>) -> Self {
        let mut this = Self::with_max_line_len(reader, max_line_len);
        this.charge.budget = Some(budget);
        this
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
            discard: Discard::No,
            max_line_len,
            charge: Charge::default(),
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

    /// Returns the underlying reader; a partly read line is lost (and its budget share given back).
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncBufRead + Unpin> JsonLineReader<R> {
    /// Reads the next non-blank line, without its `\n` or `\r\n`; `None` at EOF.
    ///
    /// The bytes are not checked for UTF-8 or JSON. A line over the limit is
    /// consumed and reported as [`LineError::TooLong`]; one over the budget is
    /// reported as [`LineError::OverBudget`] as soon as it is, then skipped.
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
            let mut refused = false;
            if self.discard == Discard::No {
                if self.line.len().saturating_add(chunk_len) > buffer_limit {
                    self.reset_line();
                    self.discard = Discard::TooLong;
                } else if make_room(&mut self.line, &mut self.charge, chunk_len, buffer_limit) {
                    self.line.extend_from_slice(&available[..chunk_len]);
                } else {
                    self.reset_line();
                    refused = true;
                }
            }
            self.inner.consume(chunk_len + usize::from(terminated));
            if refused {
                if !terminated && !at_eof {
                    self.discard = Discard::Refused;
                }
                // At once, not at the end of the line: a client holding a half
                // line may never send the rest, and must learn why it failed.
                let limit = self.charge.budget.as_ref().map_or(0, |b| b.limit());
                return Err(LineError::OverBudget { limit }.into());
            }
            if !terminated && !at_eof {
                continue;
            }
            // The line is complete: ended by `\n`, or by EOF (then it is the final line).
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            // A refused line was reported already and `line` is empty: it is
            // skipped below like a blank line.
            let discarded = std::mem::replace(&mut self.discard, Discard::No);
            if discarded == Discard::TooLong || self.line.len() > self.max_line_len {
                self.reset_line();
                return Err(LineError::TooLong {
                    limit: self.max_line_len,
                }
                .into());
            }
            if is_blank(&self.line) {
                // Reset, not just cleared: a long run of blanks must not keep
                // its buffer (or budget share) while the client idles.
                self.reset_line();
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
        // What capacity is left is within KEEP_BUFFER, which is not charged.
        self.charge.hold(0);
    }
}

/// Makes room in `line` for `extra` more bytes (`limit` at most in all),
/// holding the budget share the larger buffer needs; false if the budget
/// cannot give it. Without a budget, `line` grows as any `Vec` does.
fn make_room(line: &mut Vec<u8>, charge: &mut Charge, extra: usize, limit: usize) -> bool {
    let needed = line.len().saturating_add(extra);
    if needed <= line.capacity() || charge.budget.is_none() {
        return true;
    }
    // Doubling, like `Vec`, keeps appending linear; the budget is charged
    // for the capacity actually allocated, not just the bytes read. When
    // the budget cannot cover doubling, just what is needed will do.
    let doubled = line.capacity().saturating_mul(2).min(limit).max(needed);
    for target in [doubled, needed] {
        if charge.hold(target.saturating_sub(KEEP_BUFFER)) {
            line.reserve_exact(target - line.len());
            return true;
        }
    }
    false
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::pin::{Pin, pin};
    use std::task::{Context, Poll, Waker};

    use tokio::io::ReadBuf;

    use super::*;

    /// Serves the bytes pushed into it, then waits (pending) for more, or ends
    /// once `eof` is set: a socket whose client holds a half line.
    #[derive(Default)]
    struct Feed {
        data: Vec<u8>,
        pos: usize,
        eof: bool,
    }

    impl AsyncRead for Feed {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let rest = &self.data[self.pos..];
            if rest.is_empty() && !self.eof {
                // Nothing wakes us: the tests poll by hand.
                return Poll::Pending;
            }
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    type Reader = JsonLineReader<BufReader<Feed>>;

    fn reader(budget: &Arc<LineBudget>, max_line_len: usize) -> Reader {
        JsonLineReader::with_limits(Feed::default(), max_line_len, budget.clone())
    }

    fn push(reader: &mut Reader, bytes: &[u8]) {
        reader.get_mut().get_mut().data.extend_from_slice(bytes);
    }

    fn end(reader: &mut Reader) {
        reader.get_mut().get_mut().eof = true;
    }

    /// Polls `next_line` once: what it returns without waiting for more input.
    fn poll_line(reader: &mut Reader) -> Poll<io::Result<Option<Vec<u8>>>> {
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(reader.next_line()).as_mut().poll(&mut cx) {
            Poll::Ready(r) => Poll::Ready(r.map(|line| line.map(<[u8]>::to_vec))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn line_of(len: usize, fill: u8) -> Vec<u8> {
        let mut line = b"{\"s\":\"".to_vec();
        line.resize(len, fill);
        line
    }

    #[test]
    fn a_half_line_past_the_shared_budget_is_refused_at_once_and_skipped() {
        let limit = 4 * KEEP_BUFFER;
        let budget = Arc::new(LineBudget::new(limit));
        let mut a = reader(&budget, 1 << 20);
        let mut b = reader(&budget, 1 << 20);

        // `a` holds a long half line: within the budget, so it waits for more.
        let a_line = line_of(3 * KEEP_BUFFER, b'a');
        push(&mut a, &a_line);
        assert!(poll_line(&mut a).is_pending());
        let held_by_a = budget.in_use();
        assert!(held_by_a > 0 && held_by_a <= limit, "{held_by_a}");

        // `b`'s half line would pass the budget: refused before its end arrives.
        push(&mut b, &line_of(3 * KEEP_BUFFER, b'b'));
        let Poll::Ready(Err(err)) = poll_line(&mut b) else {
            panic!("the half line over the budget was not refused at once");
        };
        assert!(
            matches!(LineError::from_io(&err), Some(LineError::OverBudget { limit: l }) if *l == limit),
            "{err}"
        );
        assert_eq!(budget.in_use(), held_by_a, "b gave its share back");

        // The rest of `b`'s line is dropped without a second error; the next line reads fine.
        push(&mut b, &[b'b'; 1000]);
        assert!(poll_line(&mut b).is_pending());
        push(&mut b, b"\"}\n{\"n\":2}\n");
        assert_eq!(
            poll_line(&mut b).map(Result::unwrap),
            Poll::Ready(Some(b"{\"n\":2}".to_vec()))
        );

        // `a` was not disturbed: its line arrives whole.
        push(&mut a, b"\"}\n");
        let mut want = a_line;
        want.extend_from_slice(b"\"}");
        assert_eq!(
            poll_line(&mut a).map(Result::unwrap),
            Poll::Ready(Some(want))
        );

        // Both done: nothing is held any more.
        end(&mut a);
        end(&mut b);
        assert_eq!(poll_line(&mut a).map(Result::unwrap), Poll::Ready(None));
        assert_eq!(poll_line(&mut b).map(Result::unwrap), Poll::Ready(None));
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn the_budget_is_given_back_after_lines_errors_and_drops() {
        let budget = Arc::new(LineBudget::new(8 * KEEP_BUFFER));
        let long = line_of(3 * KEEP_BUFFER, b'x');

        // A complete long line: held while it is handed out, given back once consumed.
        let mut r = reader(&budget, 1 << 20);
        push(&mut r, &long);
        push(&mut r, b"\n{}\n");
        assert_eq!(
            poll_line(&mut r).map(Result::unwrap),
            Poll::Ready(Some(long.clone()))
        );
        assert!(budget.in_use() > 0);
        assert_eq!(
            poll_line(&mut r).map(Result::unwrap),
            Poll::Ready(Some(b"{}".to_vec()))
        );
        assert_eq!(budget.in_use(), 0, "after a complete line");

        // A line over the length limit: nothing held after its error.
        let mut r = reader(&budget, 2 * KEEP_BUFFER);
        push(&mut r, &long);
        push(&mut r, b"\n");
        let Poll::Ready(Err(err)) = poll_line(&mut r) else {
            panic!("an over-long line was accepted");
        };
        assert!(matches!(
            LineError::from_io(&err),
            Some(LineError::TooLong { .. })
        ));
        assert_eq!(budget.in_use(), 0, "after a too-long line");

        // A line over the budget: nothing held after its error.
        let small = Arc::new(LineBudget::new(KEEP_BUFFER));
        let mut r = reader(&small, 1 << 20);
        push(&mut r, &long);
        let Poll::Ready(Err(err)) = poll_line(&mut r) else {
            panic!("a line over the budget was accepted");
        };
        assert!(matches!(
            LineError::from_io(&err),
            Some(LineError::OverBudget { .. })
        ));
        assert_eq!(small.in_use(), 0, "after a refused line");

        // A reader dropped, or taken apart, in the middle of a long line.
        let mut r = reader(&budget, 1 << 20);
        push(&mut r, &long);
        assert!(poll_line(&mut r).is_pending());
        assert!(budget.in_use() > 0);
        drop(r);
        assert_eq!(budget.in_use(), 0, "after a drop mid-line");
        let mut r = reader(&budget, 1 << 20);
        push(&mut r, &long);
        assert!(poll_line(&mut r).is_pending());
        assert!(budget.in_use() > 0);
        drop(r.into_inner());
        assert_eq!(budget.in_use(), 0, "after into_inner mid-line");
    }

    #[test]
    fn short_lines_never_touch_the_budget() {
        // Even with the budget used up by others, lines within KEEP_BUFFER are read.
        let budget = Arc::new(LineBudget::new(0));
        let mut r = reader(&budget, 1 << 20);
        let line = line_of(KEEP_BUFFER - 1, b'x');
        push(&mut r, &line);
        push(&mut r, b"\n");
        assert_eq!(
            poll_line(&mut r).map(Result::unwrap),
            Poll::Ready(Some(line))
        );
        assert_eq!(budget.in_use(), 0);
    }
}
