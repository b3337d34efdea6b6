//! The local model as pods use it: the `local_model` crate (fetching, assembling
//! and serving the model) re-exported, the `pod model` commands, and the pods'
//! policy for a small model — how it is sampled and prompted (`apply_local_defaults`).

pub mod command;

pub use local_model::*;

/// `[model] max_tokens` for the local model: enough for a file, small next to the window.
pub const LOCAL_MAX_TOKENS: u32 = 2048;
/// `[model] temperature` for the local model: greedy decoding; at the server's
/// default (0.8) the 1.5B model often wraps its tool calls in prose, which
/// llama.cpp cannot parse.
pub const LOCAL_TEMPERATURE: f64 = 0.0;
/// `[model] timeout_s` for the local model: a full 8k prompt takes ~100 s on 2 cores.
pub const LOCAL_TIMEOUT_S: u64 = 600;
/// `[worker] max_llm_calls` for the local model: when the 1.5B model goes wrong it
/// tends to repeat the same failing call; 30 calls (~2-3 min) bound that.
pub const LOCAL_MAX_LLM_CALLS: u32 = 30;
/// Tokens the local model may not produce (`logit_bias`): the Markdown fences it
/// otherwise wraps its JSON tool calls in (llama.cpp then fails to parse the call).
/// Each is one token of its vocabulary. Side effect: its plain-text answers cannot
/// use fenced code blocks either (files are written with tools anyway).
pub const FENCE_TOKENS: [&str; 6] = ["```", "``", " ```", " ``", "``\n", " ```\n"];
/// Where the local model's reply is cut (`stop`): asked for one call, it often
/// writes its whole plan as several JSON objects, one a line, or closes a call
/// with a fence spelt in single backticks; llama.cpp then fails to parse the
/// reply (HTTP 500). Cut there, the reply is the first call, which parses. A
/// newline inside a JSON string is `\n`, so file contents never match.
pub const STOP_SEQUENCES: [&str; 2] = ["\n{\"name\"", "\n```"];

/// The `logit_bias` that keeps the local model from fencing its tool calls.
pub fn fence_logit_bias() -> serde_json::Value {
    serde_json::Value::Array(
        FENCE_TOKENS
            .iter()
            .map(|t| serde_json::json!([t, false]))
            .collect(),
    )
}

/// Sets the small-model values on `m` where no manifest layer chose them:
/// context window, max tokens, temperature, timeout, LLM-call budget, the
/// fence ban and the stop sequences.
pub fn apply_local_defaults(m: &mut manifest::Manifest) {
    let builtin = |m: &manifest::Manifest, key: &str| {
        m.provenance
            .get(key)
            .is_none_or(|o| *o == manifest::Origin::BuiltIn)
    };
    let origin = manifest::Origin::Overlay;
    if builtin(m, "model.context_window") {
        m.model.context_window = LOCAL_CONTEXT_WINDOW;
        m.provenance
            .insert("model.context_window".into(), origin.clone());
    }
    if builtin(m, "model.max_tokens") {
        m.model.max_tokens = LOCAL_MAX_TOKENS;
        m.provenance
            .insert("model.max_tokens".into(), origin.clone());
    }
    if builtin(m, "model.temperature") {
        m.model.temperature = Some(LOCAL_TEMPERATURE);
        m.provenance
            .insert("model.temperature".into(), origin.clone());
    }
    if builtin(m, "worker.max_llm_calls") {
        m.worker.max_llm_calls = LOCAL_MAX_LLM_CALLS;
        m.provenance
            .insert("worker.max_llm_calls".into(), origin.clone());
    }
    if builtin(m, "model.timeout_s") {
        m.model.timeout_s = LOCAL_TIMEOUT_S;
        m.provenance
            .insert("model.timeout_s".into(), origin.clone());
    }
    if !m.model.extra.contains_key("logit_bias") {
        m.model
            .extra
            .insert("logit_bias".into(), fence_logit_bias());
        m.provenance
            .insert("model.extra.logit_bias".into(), origin.clone());
    }
    if !m.model.extra.contains_key("stop") {
        m.model
            .extra
            .insert("stop".into(), serde_json::json!(STOP_SEQUENCES));
        m.provenance.insert("model.extra.stop".into(), origin);
    }
}

/// The same values as [`apply_local_defaults`] as a manifest overlay, for a pod
/// that reaches the local server through `POD_BASE_URL` (the real-model tests);
/// `model_lines` go into its `[model]` table too (e.g. `temperature = 0.0`).
pub fn local_overlay(model_lines: &str) -> String {
    let bans: Vec<String> = FENCE_TOKENS
        .iter()
        .map(|t| format!("[{}, false]", serde_json::Value::from(*t)))
        .collect();
    let stops: Vec<String> = STOP_SEQUENCES
        .iter()
        .map(|t| serde_json::Value::from(*t).to_string())
        .collect();
    // The caller's lines come first so that they may set the temperature.
    let model_lines = model_lines.trim();
    let temperature = if model_lines.contains("temperature") {
        String::new()
    } else {
        format!("temperature = {LOCAL_TEMPERATURE:?}\n")
    };
    format!(
        "[worker]\nmax_llm_calls = {LOCAL_MAX_LLM_CALLS}\n\n\
         [model]\n{model_lines}\ncontext_window = {LOCAL_CONTEXT_WINDOW}\nmax_tokens = {LOCAL_MAX_TOKENS}\n\
         {temperature}timeout_s = {LOCAL_TIMEOUT_S}\n\n[model.extra]\nlogit_bias = [{}]\nstop = [{}]\n",
        bans.join(", "),
        stops.join(", ")
    )
}
