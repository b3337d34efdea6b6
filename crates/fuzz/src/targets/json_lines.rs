//! `json-lines`: arbitrary bytes through [`JsonLineReader`], the framing every
//! pod connection reads client methods with.
//!
//! Each input is read with a small line limit and random read sizes three
//! ways: awaited on a current-thread runtime (reads that return `Pending`
//! first), polled by hand with the `next_line` future dropped at every
//! `Pending` (the reader promises to be cancel-safe), and decoded with `next`
//! as [`Method`] and as [`Event`]. All must agree with a few lines of
//! reference framing written from the module's documentation: lines end at
//! `\n` with one `\r` before it dropped, blank lines are skipped, a final line
//! without `\n` counts, and a line over the limit is a `TooLong` error after
//! which reading goes on. Every error must be a typed `LineError`.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use protocol::stream::{JsonLineReader, LineError};
use protocol::{Event, Method};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, ReadBuf};

use crate::driver::{Feedback, Harness};
use crate::error::FuzzError;
use crate::mutate::mutate_json_line;
use crate::rng::{Rng, fnv1a};
use crate::targets::{documented_protocol_lines, read_size, shorten};

/// Line limits small enough that seeds and mutants cross them.
const LIMITS: &[usize] = &[1, 8, 32, 64, 100, 256, 1024];

/// Builds the harness.
pub(super) fn build() -> Result<Box<dyn Harness>, FuzzError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| FuzzError::setup("json-lines", format!("no tokio runtime: {e}")))?;
    Ok(Box::new(JsonLines { runtime }))
}

struct JsonLines {
    runtime: tokio::runtime::Runtime,
}

impl Harness for JsonLines {
    fn mutate(&mut self, rng: &mut Rng, input: &mut Vec<u8>) -> bool {
        // Valid JSON of the wrong shape: what gets past framing to decoding.
        rng.one_in(2) && mutate_json_line(rng, input)
    }

    fn seeds(&mut self) -> Result<Vec<Vec<u8>>, FuzzError> {
        let lines = documented_protocol_lines();
        let methods: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("{\"method\""))
            .collect();
        let events: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("{\"event\""))
            .collect();
        let mut seeds = vec![
            format!("{}\n", methods.join("\n")).into_bytes(),
            format!("{}\n", events.join("\n")).into_bytes(),
            // `\r\n` ends, blank and whitespace-only lines, no final `\n`.
            format!(
                "{}\r\n\r\n  \t\n{}",
                methods.join("\r\n"),
                events.join("\n\n")
            )
            .into_bytes(),
        ];
        seeds.extend(lines.iter().map(|l| format!("{l}\n").into_bytes()));
        Ok(seeds)
    }

    fn check(&mut self, input: &[u8]) -> Result<Feedback, FuzzError> {
        // Per-input choices come from the input's hash, so a replay repeats them.
        let mut rng = Rng::new(fnv1a(input));
        let limit = rng.below(LIMITS.len());
        let max = LIMITS[limit];
        let want = reference_lines(input, max);

        let got = self.runtime.block_on(read_lines(
            Chunked::new(input, rng.next_u64(), true),
            max,
            input.len(),
        ));
        assert_same("next_line awaited", &got, &want, max);

        let got = poll_dropping(Chunked::new(input, rng.next_u64(), false), max, input.len());
        assert_same(
            "next_line with futures dropped at Pending",
            &got,
            &want,
            max,
        );

        let mut kinds = BTreeSet::new();
        let methods = self.runtime.block_on(read_values::<Method>(
            Chunked::new(input, rng.next_u64(), true),
            max,
            input.len(),
        ));
        let want_methods = reference_values::<Method>(&want);
        assert_same("next::<Method>", &methods, &want_methods, max);
        for m in &methods {
            kinds.insert(match m {
                Decoded::Value(Method::Unknown { .. }) => "method unknown".to_owned(),
                Decoded::Value(m) => format!("method {}", m.name()),
                other => format!("method {other:?}"),
            });
        }

        let events = self.runtime.block_on(read_values::<Event>(
            Chunked::new(input, rng.next_u64(), true),
            max,
            input.len(),
        ));
        let want_events = reference_values::<Event>(&want);
        assert_same("next::<Event>", &events, &want_events, max);
        for e in &events {
            kinds.insert(match e {
                Decoded::Value(Event::Unknown { .. }) => "event unknown".to_owned(),
                Decoded::Value(e) => format!("event {}", e.name()),
                other => format!("event {other:?}"),
            });
        }

        Ok(kinds.iter().fold(
            Feedback::of(&format!("limit {}", char::from(b'a' + limit as u8))),
            |f, k| f.and(Feedback::of(k)),
        ))
    }
}

/// What reading one line gave.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Framed {
    /// A line, without its terminator.
    Line(Vec<u8>),
    /// `LineError::TooLong`.
    TooLong,
}

/// What decoding one line gave.
#[derive(Debug, Clone, PartialEq)]
enum Decoded<T> {
    Value(T),
    TooLong,
    NotUtf8,
    NotJson,
}

/// The framing the reader documents, written the simplest way.
fn reference_lines(input: &[u8], max: usize) -> Vec<Framed> {
    let mut out = Vec::new();
    for raw in input.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.len() > max {
            out.push(Framed::TooLong);
        } else if !line.iter().all(u8::is_ascii_whitespace) {
            out.push(Framed::Line(line.to_vec()));
        }
    }
    out
}

/// What `next::<T>` must give for the reference lines.
fn reference_values<T: DeserializeOwned>(lines: &[Framed]) -> Vec<Decoded<T>> {
    lines
        .iter()
        .map(|framed| match framed {
            Framed::TooLong => Decoded::TooLong,
            Framed::Line(bytes) => match std::str::from_utf8(bytes) {
                Err(_) => Decoded::NotUtf8,
                Ok(text) => match serde_json::from_str(text) {
                    Ok(value) => Decoded::Value(value),
                    Err(_) => Decoded::NotJson,
                },
            },
        })
        .collect()
}

/// The typed line error inside `err`; a panic if there is none (an untyped
/// error would reach a client as a bare I/O failure).
fn line_error(err: &io::Error, max: usize) -> &LineError {
    let Some(line_error) = LineError::from_io(err) else {
        panic!("the reader returned an untyped error: {err:?}");
    };
    assert_eq!(
        err.kind(),
        io::ErrorKind::InvalidData,
        "a line error of the wrong kind: {err:?}"
    );
    if let LineError::TooLong { limit } = line_error {
        assert_eq!(*limit, max, "TooLong names the wrong limit");
    }
    // Shown to clients: must format.
    let _ = line_error.to_string();
    line_error
}

/// Reads every line with `next_line`, awaiting.
async fn read_lines(source: Chunked<'_>, max: usize, len: usize) -> Vec<Framed> {
    let mut reader = JsonLineReader::with_max_line_len(source, max);
    let mut out = Vec::new();
    loop {
        match reader.next_line().await {
            Ok(None) => return out,
            Ok(Some(line)) => out.push(Framed::Line(line.to_vec())),
            Err(err) => match line_error(&err, max) {
                LineError::TooLong { .. } => out.push(Framed::TooLong),
                other => panic!("next_line gave a decoding error: {other}"),
            },
        }
        assert!(
            out.len() <= len + 1,
            "more lines than bytes: the reader loops"
        );
    }
}

/// Reads every line with `next_line` polled by hand, dropping the future
/// whenever it is pending and starting a new one.
fn poll_dropping(source: Chunked<'_>, max: usize, len: usize) -> Vec<Framed> {
    let mut reader = JsonLineReader::with_max_line_len(source, max);
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut stalls = 0usize;
    loop {
        let polled = {
            let future = pin!(reader.next_line());
            match future.poll(&mut cx) {
                Poll::Pending => None,
                Poll::Ready(result) => Some(result.map(|line| line.map(<[u8]>::to_vec))),
            }
        };
        match polled {
            None => {
                stalls += 1;
                assert!(stalls <= len + 2, "the reader makes no progress");
            }
            Some(Ok(None)) => return out,
            Some(Ok(Some(line))) => out.push(Framed::Line(line)),
            Some(Err(err)) => match line_error(&err, max) {
                LineError::TooLong { .. } => out.push(Framed::TooLong),
                other => panic!("next_line gave a decoding error: {other}"),
            },
        }
        assert!(
            out.len() <= len + 1,
            "more lines than bytes: the reader loops"
        );
    }
}

/// Reads every line with `next::<T>`.
async fn read_values<T: DeserializeOwned>(
    source: Chunked<'_>,
    max: usize,
    len: usize,
) -> Vec<Decoded<T>> {
    let mut reader = JsonLineReader::with_max_line_len(source, max);
    let mut out = Vec::new();
    loop {
        match reader.next::<T>().await {
            Ok(None) => return out,
            Ok(Some(value)) => out.push(Decoded::Value(value)),
            Err(err) => {
                let e = line_error(&err, max);
                out.push(if matches!(e, LineError::TooLong { .. }) {
                    Decoded::TooLong
                } else if matches!(e, LineError::InvalidUtf8(_)) {
                    Decoded::NotUtf8
                } else if matches!(e, LineError::InvalidJson(_)) {
                    Decoded::NotJson
                } else {
                    panic!("unexpected line error without a budget: {e}")
                });
            }
        }
        assert!(
            out.len() <= len + 1,
            "more lines than bytes: the reader loops"
        );
    }
}

/// Panics, naming the first difference, unless `got` is `want`.
fn assert_same<T: PartialEq + Debug>(how: &str, got: &[T], want: &[T], max: usize) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{how} differs from the documented framing (line limit {max}) at outcome {at} of \
         {} (reference {}): got {}, want {}",
        got.len(),
        want.len(),
        shorten(&format!("{:?}", got.get(at)), 200),
        shorten(&format!("{:?}", want.get(at)), 200),
    );
}

/// An in-memory socket: serves its bytes in random read sizes, and returns
/// `Pending` before about half of them (waking the task first when `wake`,
/// else leaving it to a caller that polls by hand).
struct Chunked<'a> {
    data: &'a [u8],
    pos: usize,
    rng: Rng,
    pending_next: bool,
    wake: bool,
}

impl<'a> Chunked<'a> {
    fn new(data: &'a [u8], seed: u64, wake: bool) -> Self {
        let mut rng = Rng::new(seed);
        let pending_next = rng.one_in(2);
        Chunked {
            data,
            pos: 0,
            rng,
            pending_next,
            wake,
        }
    }
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending_next && this.pos < this.data.len() {
            this.pending_next = false;
            if this.wake {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        let rest = &this.data[this.pos..];
        let n = read_size(&mut this.rng)
            .min(rest.len())
            .min(buf.remaining());
        buf.put_slice(&rest[..n]);
        this.pos += n;
        this.pending_next = this.rng.one_in(2);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_framing_follows_the_documentation() {
        let lines = reference_lines(b"a\r\n\n \t\r\n0123456789\nlast\r", 4);
        assert_eq!(
            lines,
            vec![
                Framed::Line(b"a".to_vec()),
                Framed::TooLong,
                Framed::Line(b"last".to_vec())
            ]
        );
    }
}
