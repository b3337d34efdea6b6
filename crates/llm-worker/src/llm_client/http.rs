//! The transport: sends a [`WireScheme`]'s request over HTTP, retries what may be
//! retried, enforces timeouts, honours cancellation and streams the response
//! through the SSE parser and the scheme's decoder.
//!
//! Policy, in one place:
//! - **Retries** (at most [`RetryPolicy::max_retries`]) on connect errors
//!   (including the connect timeout), on a connection lost before any response
//!   byte, and on HTTP 408, 409, 425, 429, 5xx (529 included). The delay is full
//!   jitter, `random(0, min(max_delay, base_delay * 2^attempt))`, unless the
//!   server sent `retry-after-ms` or `Retry-After` (seconds): that delay is
//!   honoured exactly up to [`RetryPolicy::retry_after_cap`] (60 s by default); a
//!   longer one is not waited for — the call fails at once with
//!   [`ClientError::Http`] carrying `retry_after`, so the caller can decide
//!   (pause, switch model). HTTP-date `Retry-After` values fall back to jitter.
//! - **Never** a retry once a body byte was received: a failure after that is a
//!   [`StreamFailure`] with the partial [`Completion`].
//! - Other statuses (400, 401, 403, 404, ...) fail at once with
//!   [`ClientError::Http`] and the body truncated to 2 KiB.
//! - **Timeouts**: connect (reqwest's `connect_timeout`), first byte (from sending
//!   to the first body chunk, response head included), idle (longest silence
//!   between two body chunks).
//! - **Cancellation** is checked at every await (sending, each read, retry
//!   sleeps) and returns [`ClientError::Cancelled`] at once, with the partial
//!   completion.
//!
//! The reqwest client (and its TLS configuration) is built on first use, so
//! creating a [`ProviderClient`] costs nothing at pod start.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use llm_types::ProviderFamily;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::llm_client::error::{ClientError, StreamFailure, TimeoutKind};
use crate::llm_client::request::LlmRequest;
use crate::llm_client::scheme::WireScheme;
use crate::llm_client::sse::{SseEvent, SseParser};
use crate::llm_client::stream::{Assembler, Completion, Flow, StreamDecoder, StreamEvent};

/// How failed attempts are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = never retry).
    pub max_retries: u32,
    /// Backoff base: the cap of the first retry's random delay.
    pub base_delay: Duration,
    /// Upper bound of a jittered delay.
    pub max_delay: Duration,
    /// Longest server-requested `Retry-After` that is waited for; a longer one
    /// ends the call with [`ClientError::Http`] and its `retry_after`.
    pub retry_after_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The full-jitter cap for retry number `attempt` (0-based):
    /// `min(max_delay, base_delay * 2^attempt)`.
    pub(crate) fn backoff_cap(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// Connect timeout default.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First-byte and idle timeout default for remote providers.
pub(crate) const DEFAULT_STREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// First-byte and idle timeout default for loopback servers (a small local
/// model on 2 cores may take a minute before its first token).
pub(crate) const LOOPBACK_STREAM_TIMEOUT: Duration = Duration::from_secs(300);
/// How long an idle connection to a loopback server is kept for reuse. Local
/// servers close idle keep-alive connections early (llama.cpp's after 5 s); a
/// request sent on one it just closed fails and is retried with a warning,
/// while a new loopback connection costs well under a millisecond.
pub(crate) const LOOPBACK_POOL_IDLE: Duration = Duration::from_secs(2);
/// How much of an error response body is kept.
pub(crate) const ERROR_BODY_LIMIT: usize = 2048;

/// Where and how to reach one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Everything before the scheme's own path, without a trailing slash
    /// (`https://api.openai.com/v1`, `http://127.0.0.1:11434/v1`).
    pub base_url: String,
    /// The key, or `None` for servers that need none.
    pub api_key: Option<String>,
    /// TCP + TLS connection establishment.
    pub connect_timeout: Duration,
    /// From sending the request to the first body chunk.
    pub first_byte_timeout: Duration,
    /// Longest silence between body chunks.
    pub idle_timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// Defaults for `base_url`: connect 10 s; first byte and idle 60 s, or 300 s
    /// for loopback URLs; the default retry policy; no key.
    pub fn new(base_url: impl Into<String>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_string();
        let stream = if is_loopback_url(&base_url) {
            LOOPBACK_STREAM_TIMEOUT
        } else {
            DEFAULT_STREAM_TIMEOUT
        };
        ClientConfig {
            base_url,
            api_key: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            first_byte_timeout: stream,
            idle_timeout: stream,
            retry: RetryPolicy::default(),
        }
    }

    /// Defaults for `base_url` with a key, and the manifest's `timeout_s` (when
    /// set) as both the first-byte and the idle timeout.
    pub fn for_base_url(
        base_url: impl Into<String>,
        api_key: Option<String>,
        timeout_s: Option<u64>,
    ) -> Self {
        let mut config = ClientConfig::new(base_url);
        config.api_key = api_key;
        if let Some(s) = timeout_s {
            let t = Duration::from_secs(s.max(1));
            config.first_byte_timeout = t;
            config.idle_timeout = t;
        }
        config
    }

    /// Whether the base URL points at this machine.
    pub fn is_loopback(&self) -> bool {
        is_loopback_url(&self.base_url)
    }
}

/// Whether a URL's host is `localhost`, in 127.0.0.0/8 or `::1`.
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A retry about to happen, for the agent loop's event stream.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryNotice {
    /// Which retry this is (1 for the first).
    pub retry: u32,
    /// How long the client waits before it.
    pub delay: Duration,
    /// What failed.
    pub error: ClientError,
}

/// A streaming LLM client, object-safe so the agent loop can hold a boxed one.
#[async_trait]
pub trait LlmClient: Send + Sync {
    /// The provider family of the responses (for provider-scoped items).
    fn family(&self) -> ProviderFamily;

    /// Runs one call, reporting each retry to `on_retry` before waiting for it.
    async fn stream_observed(
        &self,
        request: &LlmRequest,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
        on_retry: &mut (dyn FnMut(RetryNotice) + Send),
    ) -> Result<Completion, StreamFailure>;

    /// Runs one call: stream events go to `on_event` as they arrive; the result
    /// is the completed response, or the failure with what was produced before.
    async fn stream(
        &self,
        request: &LlmRequest,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Completion, StreamFailure> {
        self.stream_observed(request, cancel, on_event, &mut |_| {})
            .await
    }
}

/// One provider endpoint spoken to in one wire scheme.
pub struct ProviderClient {
    scheme: Arc<dyn WireScheme>,
    config: ClientConfig,
    http: OnceLock<reqwest::Client>,
}

impl std::fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderClient")
            .field("family", &self.scheme.family())
            .field("base_url", &self.config.base_url)
            .field("api_key", &self.config.api_key.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

/// Why one attempt failed.
enum AttemptError {
    /// Nothing was received: another attempt may follow.
    Retryable {
        error: ClientError,
        retry_after: Option<Duration>,
    },
    /// Final.
    Final(ClientError),
}

impl ProviderClient {
    /// A client; the HTTP client behind it is built on the first call.
    pub fn new(scheme: Arc<dyn WireScheme>, config: ClientConfig) -> Self {
        ProviderClient {
            scheme,
            config,
            http: OnceLock::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The wire scheme.
    pub fn scheme(&self) -> &Arc<dyn WireScheme> {
        &self.scheme
    }

    fn http(&self) -> Result<&reqwest::Client, ClientError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let mut builder = reqwest::Client::builder().connect_timeout(self.config.connect_timeout);
        if self.config.is_loopback() {
            builder = builder.pool_idle_timeout(LOOPBACK_POOL_IDLE);
        }
        let client = builder
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?;
        // A concurrent first call may have won the race: either client will do.
        let _ = self.http.set(client);
        self.http
            .get()
            .ok_or_else(|| ClientError::Config("HTTP client unavailable".into()))
    }

    /// Sends once and waits for the status and the first body chunk.
    async fn open(
        &self,
        http: &reqwest::Client,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        cancel: &CancellationToken,
    ) -> Result<(reqwest::Response, Option<Vec<u8>>), AttemptError> {
        let deadline = Instant::now() + self.config.first_byte_timeout;
        let mut builder = http.post(url);
        let mut has_type = false;
        let mut has_accept = false;
        for (name, value) in headers {
            has_type |= name.eq_ignore_ascii_case("content-type");
            has_accept |= name.eq_ignore_ascii_case("accept");
            builder = builder.header(name.as_str(), value.as_str());
        }
        if !has_type {
            builder = builder.header("content-type", "application/json");
        }
        if !has_accept {
            builder = builder.header("accept", "text/event-stream");
        }
        let send = builder.body(body.to_vec()).send();
        let response = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(AttemptError::Final(ClientError::Cancelled)),
            r = tokio::time::timeout_at(deadline, send) => match r {
                Err(_) => return Err(AttemptError::Final(ClientError::Timeout(TimeoutKind::FirstByte))),
                Ok(Err(e)) => return Err(send_error(e)),
                Ok(Ok(resp)) => resp,
            },
        };
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = retry_after(response.headers());
            let text = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(AttemptError::Final(ClientError::Cancelled)),
                r = tokio::time::timeout(self.config.idle_timeout, response.text()) => match r {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => format!("(error body unreadable: {e})"),
                    Err(_) => "(error body timed out)".to_string(),
                },
            };
            let error = ClientError::Http {
                status,
                body: truncate(text, ERROR_BODY_LIMIT),
                retry_after,
            };
            // The same request gets the same malformed output back: the
            // worker retries it changed instead.
            return Err(
                if is_retryable_status(status) && !error.is_malformed_output() {
                    AttemptError::Retryable { error, retry_after }
                } else {
                    AttemptError::Final(error)
                },
            );
        }
        let mut response = response;
        let first = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(AttemptError::Final(ClientError::Cancelled)),
            r = tokio::time::timeout_at(deadline, response.chunk()) => match r {
                Err(_) => return Err(AttemptError::Final(ClientError::Timeout(TimeoutKind::FirstByte))),
                // Nothing received yet: as safe to retry as a failed connect.
                Ok(Err(e)) => return Err(AttemptError::Retryable {
                    error: ClientError::StreamBroken(error_chain(&e)),
                    retry_after: None,
                }),
                Ok(Ok(c)) => c.map(|b| b.to_vec()),
            },
        };
        Ok((response, first))
    }

    /// Reads the body to its end, the decoder's `Done`, a failure or a cancel.
    async fn read_stream(
        &self,
        mut response: reqwest::Response,
        first: Option<Vec<u8>>,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Completion, StreamFailure> {
        let mut asm = Assembler::new(self.scheme.family());
        let mut decoder = self.scheme.decoder();
        let mut parser = SseParser::new();
        let mut events: Vec<SseEvent> = Vec::new();
        let fail = |error: ClientError, asm: &Assembler| StreamFailure {
            error,
            partial: asm.completion(),
        };
        let eof = match first {
            None => true,
            Some(bytes) => {
                parser.push(&bytes, &mut events);
                match dispatch(&mut events, decoder.as_mut(), &mut asm, on_event) {
                    Err(e) => return Err(fail(e, &asm)),
                    Ok(Flow::Done) => false,
                    Ok(Flow::Continue) => self
                        .read_rest(
                            &mut response,
                            &mut parser,
                            &mut events,
                            decoder.as_mut(),
                            &mut asm,
                            cancel,
                            on_event,
                        )
                        .await
                        .map_err(|e| fail(e, &asm))?,
                }
            }
        };
        if eof {
            parser.finish(&mut events);
            if let Err(e) = dispatch(&mut events, decoder.as_mut(), &mut asm, on_event) {
                return Err(fail(e, &asm));
            }
        }
        drop(response);
        let finished = decoder.finish(&mut asm);
        for ev in asm.drain_events() {
            on_event(ev);
        }
        match finished {
            Ok(()) => Ok(asm.completion()),
            Err(e) => Err(fail(e, &asm)),
        }
    }
}

impl ProviderClient {
    /// Reads chunks after the first until EOF (`Ok(true)`) or `Done` (`Ok(false)`).
    #[allow(clippy::too_many_arguments)]
    async fn read_rest(
        &self,
        response: &mut reqwest::Response,
        parser: &mut SseParser,
        events: &mut Vec<SseEvent>,
        decoder: &mut dyn StreamDecoder,
        asm: &mut Assembler,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<bool, ClientError> {
        loop {
            let chunk = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(ClientError::Cancelled),
                r = tokio::time::timeout(self.config.idle_timeout, response.chunk()) => match r {
                    Err(_) => return Err(ClientError::Timeout(TimeoutKind::Idle)),
                    Ok(Err(e)) => return Err(ClientError::StreamBroken(error_chain(&e))),
                    Ok(Ok(c)) => c,
                },
            };
            let Some(bytes) = chunk else {
                return Ok(true);
            };
            parser.push(&bytes, events);
            if dispatch(events, decoder, asm, on_event)? == Flow::Done {
                return Ok(false);
            }
        }
    }
}

/// Feeds parsed events to the decoder, forwarding the assembler's stream events.
/// Stops at `Done` (later events are dropped) or the first error.
fn dispatch(
    events: &mut Vec<SseEvent>,
    decoder: &mut dyn StreamDecoder,
    asm: &mut Assembler,
    on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Result<Flow, ClientError> {
    let mut flow = Flow::Continue;
    for ev in events.drain(..) {
        let r = decoder.feed(&ev, asm);
        for se in asm.drain_events() {
            on_event(se);
        }
        match r {
            Err(e) => return Err(e),
            Ok(Flow::Done) => {
                flow = Flow::Done;
                break;
            }
            Ok(Flow::Continue) => {}
        }
    }
    events.clear();
    Ok(flow)
}

#[async_trait]
impl LlmClient for ProviderClient {
    fn family(&self) -> ProviderFamily {
        self.scheme.family()
    }

    async fn stream_observed(
        &self,
        request: &LlmRequest,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
        on_retry: &mut (dyn FnMut(RetryNotice) + Send),
    ) -> Result<Completion, StreamFailure> {
        if cancel.is_cancelled() {
            return Err(StreamFailure::empty(ClientError::Cancelled));
        }
        let http = self.http().map_err(StreamFailure::empty)?;
        let url = self.scheme.endpoint(&self.config.base_url, &request.model);
        let headers = self.scheme.headers(self.config.api_key.as_deref());
        let body = serde_json::to_vec(&self.scheme.body(request)).map_err(|e| {
            StreamFailure::empty(ClientError::Config(format!(
                "cannot serialise the request: {e}"
            )))
        })?;
        let policy = &self.config.retry;
        let mut retries = 0u32;
        loop {
            let (error, retry_after) = match self.open(http, &url, &headers, &body, cancel).await {
                Ok((response, first)) => {
                    return self.read_stream(response, first, cancel, on_event).await;
                }
                Err(AttemptError::Final(e)) => return Err(StreamFailure::empty(e)),
                Err(AttemptError::Retryable { error, retry_after }) => (error, retry_after),
            };
            if retries >= policy.max_retries {
                return Err(StreamFailure::empty(error));
            }
            let delay = match retry_after {
                Some(d) if d > policy.retry_after_cap => return Err(StreamFailure::empty(error)),
                Some(d) => d,
                None => jitter(policy.backoff_cap(retries)),
            };
            retries += 1;
            let notice = RetryNotice {
                retry: retries,
                delay,
                error,
            };
            on_retry(notice);
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(StreamFailure::empty(ClientError::Cancelled)),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// Whether an HTTP status is worth another attempt.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429 | 500..=599)
}

fn send_error(e: reqwest::Error) -> AttemptError {
    if e.is_builder() {
        return AttemptError::Final(ClientError::Config(error_chain(&e)));
    }
    let error = if e.is_connect() && e.is_timeout() {
        ClientError::Timeout(TimeoutKind::Connect)
    } else {
        ClientError::Connect(error_chain(&e))
    };
    // Connect failures and connections lost before any response byte.
    AttemptError::Retryable {
        error,
        retry_after: None,
    }
}

/// The error and its sources, `: `-joined (reqwest's top-level message alone
/// rarely says what happened).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

/// `retry-after-ms` (OpenAI) or `Retry-After` in (possibly fractional) seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let parse = |name: &str| -> Option<f64> {
        let v: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
        (v.is_finite() && v >= 0.0).then_some(v)
    };
    if let Some(ms) = parse("retry-after-ms") {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    parse("retry-after").map(Duration::from_secs_f64)
}

fn truncate(mut s: String, limit: usize) -> String {
    if s.len() > limit {
        let mut end = limit;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// A uniformly random duration in `[0, max]` (xorshift64*, seeded from the clock).
fn jitter(max: Duration) -> Duration {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64);
        x = nanos | 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    STATE.store(x, Ordering::Relaxed);
    let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    let max_ns = max.as_nanos().min(u128::from(u64::MAX)) as u64;
    if max_ns == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(r % (max_ns + 1).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for url in [
            "http://127.0.0.1:11434/v1",
            "http://127.1.2.3/v1",
            "http://localhost:8080",
            "http://LOCALHOST/v1",
            "http://[::1]:8000/v1",
            "http://user@localhost/v1",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "https://api.openai.com/v1",
            "http://10.0.0.1/v1",
            "http://localhost.evil.com/v1",
            "http://[2001:db8::1]/v1",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn config_defaults_depend_on_loopback_and_timeout_s_overrides() {
        let remote = ClientConfig::new("https://api.anthropic.com/");
        assert_eq!(remote.base_url, "https://api.anthropic.com");
        assert_eq!(remote.first_byte_timeout, Duration::from_secs(60));
        assert_eq!(remote.idle_timeout, Duration::from_secs(60));
        assert_eq!(remote.connect_timeout, Duration::from_secs(10));
        let local = ClientConfig::for_base_url("http://127.0.0.1:11434/v1", None, None);
        assert_eq!(local.first_byte_timeout, Duration::from_secs(300));
        assert_eq!(local.idle_timeout, Duration::from_secs(300));
        let custom =
            ClientConfig::for_base_url("https://x.example/v1", Some("k".into()), Some(120));
        assert_eq!(custom.first_byte_timeout, Duration::from_secs(120));
        assert_eq!(custom.idle_timeout, Duration::from_secs(120));
        assert_eq!(custom.api_key.as_deref(), Some("k"));
    }

    #[test]
    fn backoff_caps_grow_and_jitter_stays_within_them() {
        let p = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            retry_after_cap: Duration::from_secs(60),
        };
        assert_eq!(p.backoff_cap(0), Duration::from_millis(100));
        assert_eq!(p.backoff_cap(1), Duration::from_millis(200));
        assert_eq!(p.backoff_cap(3), Duration::from_millis(800));
        assert_eq!(p.backoff_cap(4), Duration::from_secs(1));
        assert_eq!(p.backoff_cap(40), Duration::from_secs(1));
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..200 {
            let d = jitter(Duration::from_millis(100));
            assert!(d <= Duration::from_millis(100));
            distinct.insert(d);
        }
        assert!(distinct.len() > 100);
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 409, 425, 429, 500, 502, 503, 504, 529] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn retry_after_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(
            "retry-after",
            reqwest::header::HeaderValue::from_static("2"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            "retry-after-ms",
            reqwest::header::HeaderValue::from_static("250"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "retry-after",
            reqwest::header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_bodies_are_truncated_on_a_char_boundary() {
        let s = "é".repeat(2000);
        let t = truncate(s, ERROR_BODY_LIMIT);
        assert!(t.len() <= ERROR_BODY_LIMIT + '…'.len_utf8());
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short".into(), 10), "short");
    }
}
