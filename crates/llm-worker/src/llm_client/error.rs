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

/// How providers say a request is longer than the model's context window
/// (lower-cased fragments of their error messages and codes).
const CONTEXT_OVERFLOW: &[&str] = &[
    // Anthropic: "prompt is too long: 215000 tokens > 200000 maximum".
    "prompt is too long",
    // OpenAI Chat and Responses: code `context_length_exceeded`; messages
    // "maximum context length is …", "Your input exceeds the context window …".
    "context_length_exceeded",
    "maximum context length",
    "exceeds the context window",
    // Gemini: "The input token count (…) exceeds the maximum number of tokens allowed (…)".
    "exceeds the maximum number of tokens",
    // llama.cpp: type `exceed_context_size_error`, "the request exceeds the available context size".
    "exceed_context_size_error",
    "exceeds the available context size",
];

/// How llama.cpp says the model's output was not a well-formed tool call
/// (lower-cased fragments): "The model produced output that does not match the
/// expected peg-native format", "Failed to parse tool call arguments as JSON".
const MALFORMED_OUTPUT: &[&str] = &["does not match the expected", "failed to parse tool call"];

impl ClientError {
    /// Whether the server could not parse the model's own output as a tool
    /// call (a small local model's near miss): sending the same request
    /// again yields the same output, a changed one may not.
    pub fn is_malformed_output(&self) -> bool {
        let text = match self {
            ClientError::Http { status, body, .. } if *status >= 500 => body.to_lowercase(),
            ClientError::Provider { code, message } => {
                format!("{} {message}", code.as_deref().unwrap_or("")).to_lowercase()
            }
            _ => return false,
        };
        MALFORMED_OUTPUT.iter().any(|needle| text.contains(needle))
    }

    /// Whether the provider refused the request for being longer than the
    /// model's context window (what compaction can fix).
    pub fn is_context_overflow(&self) -> bool {
        let text = match self {
            ClientError::Http { status, body, .. } if (400..500).contains(status) => {
                body.to_lowercase()
            }
            ClientError::Provider { code, message } => {
                format!("{} {message}", code.as_deref().unwrap_or("")).to_lowercase()
            }
            _ => return false,
        };
        CONTEXT_OVERFLOW.iter().any(|needle| text.contains(needle))
    }
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

#[cfg(test)]
mod overflow_tests {
    use super::*;

    fn http(status: u16, body: &str) -> ClientError {
        ClientError::Http {
            status,
            body: body.into(),
            retry_after: None,
        }
    }

    #[test]
    fn each_providers_length_error_is_recognised() {
        for body in [
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 215000 tokens > 200000 maximum"}}"#,
            r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
            r#"{"error":{"message":"Your input exceeds the context window of this model. Please adjust your input and try again.","type":"invalid_request_error","param":"input","code":"context_length_exceeded"}}"#,
            r#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
            r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":9000,"n_ctx":8192}}"#,
        ] {
            assert!(http(400, body).is_context_overflow(), "{body}");
        }
        let in_stream = ClientError::Provider {
            code: Some("context_length_exceeded".into()),
            message: "too long".into(),
        };
        assert!(in_stream.is_context_overflow());
    }

    #[test]
    fn other_errors_are_not_overflows() {
        assert!(
            !http(400, r#"{"error":{"message":"tools[0].name is invalid"}}"#).is_context_overflow()
        );
        assert!(
            !http(500, "prompt is too long").is_context_overflow(),
            "a server error is not the prompt's fault"
        );
        assert!(!ClientError::Cancelled.is_context_overflow());
    }

    #[test]
    fn llama_cpp_format_errors_are_malformed_output() {
        let body = r#"{"error":{"code":500,"message":"The model produced output that does not match the expected peg-native format","type":"server_error"}}"#;
        assert!(http(500, body).is_malformed_output());
        assert!(
            ClientError::Provider {
                code: Some("500".into()),
                message: "Failed to parse tool call arguments as JSON: [json.exception]".into(),
            }
            .is_malformed_output()
        );
        // Other server errors, and client errors, are not.
        assert!(!http(500, "internal error").is_malformed_output());
        assert!(!http(400, body).is_malformed_output());
        assert!(!ClientError::Cancelled.is_malformed_output());
    }
}
