//! Provider clients and the conversation types they speak in.
//!
//! A client turns an [`request::LlmRequest`] into one streaming HTTP request
//! in its provider's wire scheme, and the provider's event stream back into
//! [`stream::StreamEvent`]s (for live display) and a final
//! [`stream::Completion`] (the items to append to the history). The pieces:
//! [`sse`] frames bytes into events; each scheme module ([`anthropic`],
//! [`openai_chat`], [`openai_responses`], [`gemini`]) builds request bodies and
//! decodes its events through the shared [`stream::Assembler`]; [`http`] sends,
//! retries and enforces timeouts.

/// The provider-neutral conversation types, re-exported from `llm_types` at the
/// path the rest of the system (and the seed module) imports them from.
pub mod types {
    pub use llm_types::*;
}

pub mod anthropic;
pub(crate) mod compact;
pub mod error;
pub mod gemini;
pub mod http;
pub mod openai_chat;
pub mod openai_responses;
pub mod request;
pub mod schema;
pub mod scheme;
pub mod sse;
pub mod stream;
