//! Provider clients and the conversation types they speak in.

/// The provider-neutral conversation types, re-exported from `llm_types` at the
/// path the rest of the system (and the seed module) imports them from.
pub mod types {
    pub use llm_types::*;
}

pub mod sse;
