//! How an LLM call fails, typed so the agent loop can decide what to do.

use std::fmt;
use std::time::Duration;

use crate::llm_client::stream::Completion;

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// Establishing the TCP/TLS connection.
    Connect,
    /// Waiting for the response head and first body bytes.
    FirstByte,
    /// Silence in the middle of a stream.
    Idle,
}

/// Why an LLM call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// The request could not be built or sent as configured (missing key, bad URL).
    Config(String),
    /// Connecting failed (after retries).
    Connect(String),
    /// The provider answered with an HTTP error status (after retries, where the
    /// status is retryable).
    Http {
        /// HTTP status code.
        status: u16,
        /// The response body (truncated), usually the provider's JSON error.
        body: String,
        /// The provider's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// A timeout fired.
    Timeout(TimeoutKind),
    /// The provider reported an error inside the stream (`{"error":...}` in place
    /// of a chunk, `event: error`, `response.failed`).
    Provider {
        /// The provider's error code or type, if any.
        code: Option<String>,
        /// The provider's message.
        message: String,
    },
    /// The stream broke off after content had started (connection reset, EOF
    /// before the provider's end marker). Never retried: content was delivered.
    StreamBroken(String),
    /// The stream could not be understood.
    Decode(String),
    /// The caller cancelled the call.
    Cancelled,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Config(m) => write!(f, "provider configuration: {m}"),
            ClientError::Connect(m) => write!(f, "cannot connect to the provider: {m}"),
            ClientError::Http { status, body, .. } => {
                write!(f, "provider answered HTTP {status}: {body}")
            }
            ClientError::Timeout(TimeoutKind::Connect) => {
                f.write_str("timed out connecting to the provider")
            }
            ClientError::Timeout(TimeoutKind::FirstByte) => f.write_str(
                "timed out waiting for the provider's first byte (raise [model] timeout_s for slow local models)",
            ),
            ClientError::Timeout(TimeoutKind::Idle) => {
                f.write_str("the provider's stream went silent past the idle timeout")
            }
            ClientError::Provider { code: Some(c), message } => {
                write!(f, "provider error {c}: {message}")
            }
            ClientError::Provider { code: None, message } => write!(f, "provider error: {message}"),
            ClientError::StreamBroken(m) => write!(f, "provider stream broke off: {m}"),
            ClientError::Decode(m) => write!(f, "cannot decode the provider's stream: {m}"),
            ClientError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A failed call together with whatever it had produced before failing, so the
/// caller can keep a valid history (answering cut tool calls as interrupted).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamFailure {
    /// What went wrong.
    pub error: ClientError,
    /// Items, usage and stop reason gathered before the failure.
    pub partial: Completion,
}

impl StreamFailure {
    /// A failure before anything was produced.
    pub fn empty(error: ClientError) -> Self {
        StreamFailure {
            error,
            partial: Completion::default(),
        }
    }
}

impl fmt::Display for StreamFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for StreamFailure {}
