//! A fake LLM provider on `127.0.0.1` (port 0) for transport and agent-loop tests.
//!
//! Hand-written HTTP/1.1 over a tokio `TcpListener`: every connection serves one
//! request (`Connection: close`). The server reads the request head and its body
//! (by `Content-Length`), records it ([`RecordedRequest`]) and answers with the next
//! [`Scripted`] response from a FIFO queue; with the queue empty it answers 500
//! with the body `fake provider: no scripted response left`.
//!
//! The fake is as strict as the real APIs: before answering, it checks the body of
//! every request to a generation endpoint against the history rules of that
//! endpoint's scheme ([`crate::strict`]: tool calls answered in order, roles
//! alternating, ...). A request that breaks one is answered 400 with the provider's
//! real error body, naming the index that broke which rule; it is still recorded
//! (with [`RecordedRequest::rejected`] set) and takes no scripted response.
//! [`FakeProvider::start_lenient`] turns the check off, for tests that send an
//! invalid history on purpose.
//!
//! ```ignore
//! let server = FakeProvider::start().await;
//! server.push(Scripted::sse(fixture.wire_body()?));
//! let base = server.url("/v1"); // http://127.0.0.1:PORT/v1
//! // ... run the client ...
//! assert_eq!(server.requests()[0].path, "/v1/chat/completions");
//! ```
//!
//! Dropping the server aborts the accept loop and every connection task
//! (stalled connections are closed then).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::script::COUNTED_INPUT;
use crate::strict;

/// How an SSE body is cut into writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunking {
    /// One write.
    Whole,
    /// Slices of this many bytes (0 is treated as 1).
    Fixed(usize),
    /// Slices of these sizes, cycling (zeros are treated as 1; empty = whole).
    Sizes(Vec<usize>),
}

impl Chunking {
    /// Splits `body` into slices.
    pub fn slices<'a>(&self, body: &'a [u8]) -> Vec<&'a [u8]> {
        let sizes: Vec<usize> = match self {
            Chunking::Whole => return if body.is_empty() { vec![] } else { vec![body] },
            Chunking::Fixed(n) => vec![(*n).max(1)],
            Chunking::Sizes(v) if v.is_empty() => {
                return if body.is_empty() { vec![] } else { vec![body] };
            }
            Chunking::Sizes(v) => v.iter().map(|n| (*n).max(1)).collect(),
        };
        let mut out = Vec::new();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            let (head, tail) = rest.split_at(n);
            out.push(head);
            rest = tail;
            i += 1;
        }
        out
    }
}

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    /// 200, `Content-Type: text/event-stream`, the body written in slices with
    /// `pause` between them, then the connection closes.
    Sse {
        /// The wire bytes.
        body: Vec<u8>,
        /// How to slice them.
        chunking: Chunking,
        /// Pause between slices.
        pause: Duration,
    },
    /// Any status with headers and a body (e.g. 429 with `Retry-After`, 500, 400).
    Status {
        /// HTTP status code.
        code: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// A 200 SSE head and `after` bytes, then silence; the connection stays open
    /// until the server is dropped.
    Stall {
        /// Bytes sent before the silence.
        after: Vec<u8>,
    },
    /// A 200 SSE head and `after` bytes, then the connection is closed abruptly
    /// (reset where the OS allows it).
    Disconnect {
        /// Bytes sent before closing.
        after: Vec<u8>,
    },
}

impl Scripted {
    /// An SSE body in one write.
    pub fn sse(body: impl Into<Vec<u8>>) -> Scripted {
        Scripted::Sse {
            body: body.into(),
            chunking: Chunking::Whole,
            pause: Duration::ZERO,
        }
    }

    /// An SSE body in slices of `n` bytes with `pause` between them.
    pub fn sse_chunked(body: impl Into<Vec<u8>>, n: usize, pause: Duration) -> Scripted {
        Scripted::Sse {
            body: body.into(),
            chunking: Chunking::Fixed(n),
            pause,
        }
    }

    /// A status answer with a body and no extra headers.
    pub fn status(code: u16, body: impl Into<Vec<u8>>) -> Scripted {
        Scripted::Status {
            code,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// 429 with `Retry-After: <secs>`.
    pub fn too_many_requests(retry_after_secs: u64) -> Scripted {
        Scripted::Status {
            code: 429,
            headers: vec![("Retry-After".into(), retry_after_secs.to_string())],
            body: br#"{"error":{"type":"rate_limit_error","message":"slow down"}}"#.to_vec(),
        }
    }

    /// A stall after `after` bytes.
    pub fn stall(after: impl Into<Vec<u8>>) -> Scripted {
        Scripted::Stall {
            after: after.into(),
        }
    }

    /// A disconnect after `after` bytes.
    pub fn disconnect(after: impl Into<Vec<u8>>) -> Scripted {
        Scripted::Disconnect {
            after: after.into(),
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `POST`, `GET`, ...
    pub method: String,
    /// Path and query, as sent (`/v1/chat/completions`, `/v1beta/...?alt=sse`).
    pub path: String,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Value::String` of the text when it is not JSON,
    /// `Null` when empty).
    pub body: serde_json::Value,
    /// When the request was read completely (for latency measurements).
    pub received: std::time::Instant,
    /// Why a strict fake answered it 400 (the error message sent), if it did.
    pub rejected: Option<String>,
}

impl RecordedRequest {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Scripted>,
    requests: Vec<RecordedRequest>,
    /// Queues for requests whose body contains the key, checked in order.
    routes: Vec<(String, VecDeque<Scripted>)>,
    /// How long a request waits for a response to be queued.
    hold: Duration,
    /// Answer requests that break their scheme's history rules with 400.
    strict: bool,
    /// The answer to a request nothing was queued for (after its hold).
    fallback: Option<Scripted>,
    /// Answer requests over this many tokens (⌈bytes / 4⌉) with the scheme's
    /// real length error.
    window: Option<u64>,
}

impl State {
    /// The next response for `body`: from the first route whose key it
    /// contains (even if that queue is empty: it waits for that route), else
    /// from the FIFO queue. `None` when nothing is queued for it.
    fn take_for(&mut self, body: &str) -> Option<Scripted> {
        match self
            .routes
            .iter_mut()
            .find(|(key, _)| body.contains(key.as_str()))
        {
            Some((_, queue)) => queue.pop_front(),
            None => self.queue.pop_front(),
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running fake server; dropping it stops it.
pub struct FakeProvider {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    /// Binds `127.0.0.1:0` and starts serving, checking every request as strictly
    /// as the real API would (see the module docs).
    ///
    /// # Panics
    /// If the loopback listener cannot be bound (a broken test environment).
    pub async fn start() -> FakeProvider {
        Self::start_with(true).await
    }

    /// Like [`FakeProvider::start`], but without the history checks: every request
    /// gets its scripted response. Only for tests that deliberately send a
    /// history the real API would refuse (e.g. to see how a client copes with it).
    ///
    /// # Panics
    /// If the loopback listener cannot be bound (a broken test environment).
    pub async fn start_lenient() -> FakeProvider {
        Self::start_with(false).await
    }

    #[allow(clippy::expect_used)]
    async fn start_with(strict: bool) -> FakeProvider {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake provider: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake provider: local address");
        let state = Arc::new(Mutex::new(State {
            strict,
            ..State::default()
        }));
        let st = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            // Connection tasks live in this set: aborting the accept task drops it,
            // which aborts them all (closing stalled connections).
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        conns.spawn(serve(stream, Arc::clone(&st)));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        FakeProvider {
            addr,
            state,
            accept,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`, the usual OpenAI-style base URL.
    pub fn base_url(&self) -> String {
        self.url("/v1")
    }

    /// The root URL followed by `suffix` (e.g. `/v1beta`, or `""`).
    pub fn url(&self, suffix: &str) -> String {
        format!("{}{}", self.root_url(), suffix)
    }

    /// Queues a response (answered in FIFO order).
    pub fn push(&self, response: Scripted) {
        lock(&self.state).queue.push_back(response);
    }

    /// Queues a response for the requests whose body contains `key` (e.g. a
    /// pod's name in its system prompt), so several clients can be scripted
    /// independently; other requests use the FIFO queue.
    pub fn push_for(&self, key: &str, response: Scripted) {
        let mut st = lock(&self.state);
        match st.routes.iter_mut().find(|(k, _)| k == key) {
            Some((_, queue)) => queue.push_back(response),
            None => st
                .routes
                .push((key.to_string(), VecDeque::from([response]))),
        }
    }

    /// Makes the fake a model with a `window`-token context: a request over it
    /// (⌈bytes / 4⌉ tokens) gets HTTP 400 with its scheme's real length error,
    /// and uses up no scripted response.
    pub fn context_window(&self, window: u64) {
        lock(&self.state).window = Some(window);
    }

    /// Lets a request with no response queued wait up to `hold` for one to
    /// be pushed (default: answer 500 at once).
    pub fn hold_requests(&self, hold: Duration) {
        lock(&self.state).hold = hold;
    }

    /// Answers every request that finds nothing queued for it (after the
    /// hold) with `response` instead of an error: for tests where pods make
    /// requests at moments the test cannot script (reports waking a parent).
    pub fn answer_unscripted_with(&self, response: Scripted) {
        lock(&self.state).fallback = Some(response);
    }

    /// How many scripted responses are still queued.
    pub fn pending(&self) -> usize {
        let st = lock(&self.state);
        st.queue.len() + st.routes.iter().map(|(_, q)| q.len()).sum::<usize>()
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// The error messages of the requests answered 400 for breaking their
    /// scheme's history rules, in order of arrival.
    pub fn rejections(&self) -> Vec<String> {
        lock(&self.state)
            .requests
            .iter()
            .filter_map(|r| r.rejected.clone())
            .collect()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

const NO_SCRIPT: &[u8] = b"fake provider: no scripted response left";

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let Some(mut request) = read_request(&mut stream).await else {
        return;
    };
    let body = request.body.to_string();
    // Checked, recorded and matched to a response under one lock, so the order
    // of `requests()` is the order responses were taken in.
    let (rejection, too_long, mut scripted, hold) = {
        let mut st = lock(&state);
        let rejection = if st.strict {
            strict::check(&request.path, &request.body).err()
        } else {
            None
        };
        let tokens = body.len().div_ceil(4) as u64;
        let too_long = match (st.window, strict::family_for_path(&request.path)) {
            (Some(window), Some(family)) if tokens > window && rejection.is_none() => {
                Some(strict::length_error(family, tokens, window))
            }
            _ => None,
        };
        request.rejected = rejection
            .as_ref()
            .map(|r| r.message.clone())
            .or_else(|| too_long.clone());
        st.requests.push(request);
        // A refused request uses up no scripted response: the real API refuses
        // before generating anything, and the test's script stays as it was.
        let scripted = match (&rejection, &too_long) {
            (None, None) => st.take_for(&body),
            _ => None,
        };
        (rejection, too_long, scripted, st.hold)
    };
    if let Some(rejection) = rejection {
        let body = rejection.body().to_string();
        let _ = write_status(&mut stream, 400, &[], body.as_bytes()).await;
        return;
    }
    if let Some(refusal) = too_long {
        let _ = write_status(&mut stream, 400, &[], refusal.as_bytes()).await;
        return;
    }
    let deadline = tokio::time::Instant::now() + hold;
    while scripted.is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        // A client that went away (a killed pod) must not take a response.
        if let Ok(0) = stream.try_read(&mut [0u8; 1]) {
            return;
        }
        scripted = lock(&state).take_for(&body);
    }
    let scripted = scripted
        .or_else(|| lock(&state).fallback.clone())
        .map(|s| s.count_input(body.len()));
    let _ = answer(&mut stream, scripted).await;
}

impl Scripted {
    /// Replaces [`COUNTED_INPUT`] in a streamed body with the request's size
    /// in tokens as the fake counts them: ⌈bytes / 4⌉.
    fn count_input(self, request_bytes: usize) -> Scripted {
        let Scripted::Sse {
            body,
            chunking,
            pause,
        } = self
        else {
            return self;
        };
        let sentinel = COUNTED_INPUT.to_string();
        let text = String::from_utf8_lossy(&body);
        if !text.contains(&sentinel) {
            return Scripted::Sse {
                body,
                chunking,
                pause,
            };
        }
        let counted = request_bytes.div_ceil(4).to_string();
        Scripted::Sse {
            body: text.replace(&sentinel, &counted).into_bytes(),
            chunking,
            pause,
        }
    }
}

fn sse_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        .to_vec()
}

async fn answer(stream: &mut TcpStream, scripted: Option<Scripted>) -> std::io::Result<()> {
    match scripted {
        None => {
            write_status(stream, 500, &[], NO_SCRIPT).await?;
        }
        Some(Scripted::Status {
            code,
            headers,
            body,
        }) => {
            write_status(stream, code, &headers, &body).await?;
        }
        Some(Scripted::Sse {
            body,
            chunking,
            pause,
        }) => {
            stream.write_all(&sse_head()).await?;
            stream.flush().await?;
            for (i, slice) in chunking.slices(&body).into_iter().enumerate() {
                if i > 0 && !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                stream.write_all(slice).await?;
                stream.flush().await?;
            }
            stream.shutdown().await?;
        }
        Some(Scripted::Stall { after }) => {
            stream.write_all(&sse_head()).await?;
            stream.write_all(&after).await?;
            stream.flush().await?;
            // Never answer more; the task is aborted when the server drops.
            std::future::pending::<()>().await;
        }
        Some(Scripted::Disconnect { after }) => {
            stream.write_all(&sse_head()).await?;
            stream.write_all(&after).await?;
            stream.flush().await?;
            // Give the client a moment to read the bytes, then reset.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = stream.set_zero_linger();
        }
    }
    Ok(())
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        425 => "Too Early",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Status",
    }
}

async fn write_status(
    stream: &mut TcpStream,
    code: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {code} {}\r\n", reason(code));
    let has_type = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    if !has_type {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    stream.shutdown().await
}

/// Reads one request: head up to `\r\n\r\n`, then `Content-Length` body bytes.
async fn read_request(stream: &mut TcpStream) -> Option<RecordedRequest> {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = stream.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf.split_off(head_end + 4);
    while body.len() < len {
        let n = stream.read(&mut tmp).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    body.truncate(len);
    let body = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
        })
    };
    Some(RecordedRequest {
        method,
        path,
        headers,
        body,
        received: std::time::Instant::now(),
        rejected: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    async fn post(addr: SocketAddr, path: &str, body: &str) -> Vec<u8> {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nX-Api-Key: k\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        out
    }

    fn split(resp: &[u8]) -> (String, Vec<u8>) {
        let p = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8_lossy(&resp[..p]).into_owned(),
            resp[p + 4..].to_vec(),
        )
    }

    #[test]
    fn chunking_slices() {
        let b = b"abcdefg";
        assert_eq!(Chunking::Whole.slices(b), vec![&b[..]]);
        assert_eq!(
            Chunking::Fixed(3).slices(b),
            vec![&b"abc"[..], &b"def"[..], &b"g"[..]]
        );
        assert_eq!(
            Chunking::Sizes(vec![1, 2]).slices(b),
            vec![&b"a"[..], &b"bc"[..], &b"d"[..], &b"ef"[..], &b"g"[..]]
        );
        assert_eq!(Chunking::Fixed(0).slices(b).len(), 7);
    }

    #[tokio::test]
    async fn records_requests_and_replays_sse_in_order() {
        let server = FakeProvider::start().await;
        assert!(server.base_url().ends_with("/v1"));
        server.push(Scripted::sse_chunked(
            b"data: 1\n\n".to_vec(),
            1,
            Duration::from_millis(1),
        ));
        server.push(Scripted::sse(b"data: 2\n\n".to_vec()));
        let r1 = post(server.addr(), "/v1/x?alt=sse", r#"{"a":1}"#).await;
        let (head, body) = split(&r1);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/event-stream"));
        assert_eq!(body, b"data: 1\n\n");
        let r2 = post(server.addr(), "/v1/y", "not json").await;
        assert_eq!(split(&r2).1, b"data: 2\n\n");
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].path, "/v1/x?alt=sse");
        assert_eq!(reqs[0].header("x-api-key"), Some("k"));
        assert_eq!(reqs[0].body, serde_json::json!({"a":1}));
        assert_eq!(reqs[1].body, serde_json::json!("not json"));
        assert_eq!(server.pending(), 0);
    }

    #[tokio::test]
    async fn empty_queue_answers_500_and_status_carries_headers() {
        let server = FakeProvider::start().await;
        server.push(Scripted::too_many_requests(1));
        let (head, _) = split(&post(server.addr(), "/", "{}").await);
        assert!(head.starts_with("HTTP/1.1 429"), "{head}");
        assert!(head.contains("Retry-After: 1"));
        let (head, body) = split(&post(server.addr(), "/", "{}").await);
        assert!(head.starts_with("HTTP/1.1 500"));
        assert_eq!(body, NO_SCRIPT);
    }

    #[tokio::test]
    async fn stall_keeps_the_connection_open_and_disconnect_closes_it() {
        let server = FakeProvider::start().await;
        server.push(Scripted::stall(b"data: a\n\n".to_vec()));
        server.push(Scripted::disconnect(b"data: b\n\n".to_vec()));
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut tmp = [0u8; 1024];
        // Read until the stalled bytes arrived, then expect silence.
        while !got.ends_with(b"data: a\n\n") {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0);
            got.extend_from_slice(&tmp[..n]);
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut tmp))
                .await
                .is_err()
        );
        let r = post(server.addr(), "/", "").await;
        assert!(split(&r).1.starts_with(b"data: b"));
        // Dropping the server closes the stalled connection.
        drop(server);
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn routed_responses_go_to_matching_requests_and_held_ones_wait() {
        let server = FakeProvider::start().await;
        server.hold_requests(Duration::from_secs(5));
        server.push_for("alice", Scripted::status(201, "for alice"));
        server.push(Scripted::status(202, "for anyone"));
        let addr = server.addr();
        let bob = post(addr, "/v1/x", r#"{"who":"bob"}"#).await;
        assert!(String::from_utf8_lossy(&bob).contains("for anyone"));
        let alice = post(addr, "/v1/x", r#"{"who":"alice"}"#).await;
        assert!(String::from_utf8_lossy(&alice).contains("for alice"));
        // Nothing queued for alice now: her request waits until one is pushed.
        let waiting = tokio::spawn(async move { post(addr, "/v1/x", r#"{"who":"alice"}"#).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        server.push_for("alice", Scripted::status(203, "late"));
        let late = waiting.await.unwrap();
        assert!(String::from_utf8_lossy(&late).contains("late"));
        assert_eq!(server.pending(), 0);
    }

    #[tokio::test]
    async fn a_client_that_left_does_not_take_a_held_response() {
        let server = FakeProvider::start().await;
        server.hold_requests(Duration::from_secs(5));
        let mut gone = TcpStream::connect(server.addr()).await.unwrap();
        let body = r#"{"who":"carol"}"#;
        let head = format!(
            "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        gone.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(gone);
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.push(Scripted::status(200, "kept"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            server.pending(),
            1,
            "the response is still there for the next client"
        );
    }
}
