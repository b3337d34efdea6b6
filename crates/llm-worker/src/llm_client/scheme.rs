//! What differs between providers' wire protocols, behind one trait: where to
//! send, which headers, how to write the body, how to read the stream.

use llm_types::ProviderFamily;

use crate::llm_client::request::LlmRequest;
use crate::llm_client::stream::StreamDecoder;

/// One provider wire protocol (Anthropic Messages, OpenAI Chat, OpenAI
/// Responses, Gemini). Implementations are stateless; per-response state lives
/// in the decoder they create.
pub trait WireScheme: Send + Sync {
    /// The family, for provider-scoped state in items.
    fn family(&self) -> ProviderFamily;

    /// The full URL for a streaming call. `base_url` is everything before the
    /// scheme's own path (no trailing slash), as ARCHITECTURE.md "Providers" fixes.
    fn endpoint(&self, base_url: &str, model: &str) -> String;

    /// Authentication and protocol headers (name, value). `api_key` is `None` for
    /// servers that need none (loopback).
    fn headers(&self, api_key: Option<&str>) -> Vec<(String, String)>;

    /// The JSON request body, streaming enabled, with `request.extra` applied last.
    fn body(&self, request: &LlmRequest) -> serde_json::Value;

    /// A fresh decoder for one response.
    fn decoder(&self) -> Box<dyn StreamDecoder>;
}
