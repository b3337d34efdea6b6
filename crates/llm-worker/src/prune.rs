//! Keeping requests inside the model's context window without losing anything:
//! old tool outputs are replaced by one-line stubs *in the request only* (the
//! history, and so the session log, keeps them whole).
//!
//! Pruning moves in steps: when the estimated request passes the threshold,
//! every tool output older than the latest `keep_calls` LLM calls is stubbed at
//! once and that boundary only ever moves forward, so consecutive requests
//! share the longest possible prefix and provider prompt caches stay warm.

use std::collections::HashMap;

use llm_types::{Item, Role};

/// Outputs at most this long stay (a stub would save nothing).
const KEEP_SHORT: usize = 256;

/// Bytes per token assumed before a call has been measured.
const BYTES_PER_TOKEN: f64 = 4.0;

/// How the worker keeps requests inside the model's window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContextPolicy {
    /// Whether the worker prunes and compacts by itself (when `false`, only a
    /// client's `compact` compacts, and requests are sent whole).
    pub auto: bool,
    /// The tokens a request may take: the model's context window less the
    /// room kept for a response.
    pub window: u64,
    /// Prune when the estimated request passes this fraction of the window.
    pub prune_at: f64,
    /// The latest LLM calls whose tool outputs are never pruned.
    pub keep_calls: usize,
    /// Compact when the request, pruned, is still estimated above this fraction.
    pub compact_at: f64,
    /// The most tokens a compaction's summary may take.
    pub summary_tokens: u32,
}

impl ContextPolicy {
    /// The estimated request size (tokens) above which old outputs are pruned.
    pub fn prune_threshold(&self) -> u64 {
        (self.window as f64 * self.prune_at) as u64
    }

    /// The estimated request size (tokens) above which the history is compacted.
    pub fn compact_threshold(&self) -> u64 {
        (self.window as f64 * self.compact_at) as u64
    }
}

/// What the last measured call tells about the next request's size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Calibration {
    /// Input tokens of the last call, as the provider counted them.
    tokens: u64,
    /// Bytes of that call's history, as [`history_bytes`] counts them.
    bytes: usize,
    /// Tokens per history byte, from the growth between measured calls.
    per_byte: f64,
}

impl Calibration {
    /// A new measurement after `previous`.
    pub(crate) fn observe(previous: Option<Calibration>, tokens: u64, bytes: usize) -> Calibration {
        let default = 1.0 / BYTES_PER_TOKEN;
        let per_byte = match previous {
            Some(p) if bytes > p.bytes + 1024 && tokens > p.tokens => {
                let slope = (tokens - p.tokens) as f64 / (bytes - p.bytes) as f64;
                // Smoothed, and kept within what text can be (1–8 bytes a token).
                (0.5 * p.per_byte + 0.5 * slope).clamp(0.125, 1.0)
            }
            Some(p) => p.per_byte,
            None => default,
        };
        Calibration {
            tokens,
            bytes,
            per_byte,
        }
    }
}

/// The estimated input tokens of a request whose history is `bytes` long.
pub(crate) fn estimate(bytes: usize, calibration: Option<Calibration>) -> u64 {
    match calibration {
        Some(c) => {
            let delta = (bytes as f64 - c.bytes as f64) * c.per_byte;
            (c.tokens as f64 + delta).max(0.0) as u64
        }
        None => (bytes as f64 / BYTES_PER_TOKEN) as u64,
    }
}

/// The size of `history` as the estimate counts it (its JSON).
pub(crate) fn history_bytes(history: &[Item]) -> usize {
    history
        .iter()
        .map(|item| serde_json::to_vec(item).map_or(0, |v| v.len()))
        .sum()
}

/// Whether the model produced `item` (it belongs to an LLM call's output).
pub(crate) fn from_model(item: &Item) -> bool {
    match item {
        Item::Message { role, .. } => *role == Role::Assistant,
        Item::ToolCall { .. } | Item::Reasoning { .. } | Item::ProviderItem { .. } => true,
        Item::ToolResult { .. } => false,
    }
}

/// Where the output of the latest `keep` LLM calls starts in `history`
/// (0 when there are no more calls than that).
pub(crate) fn keep_boundary(history: &[Item], keep: usize) -> usize {
    let starts: Vec<usize> = (0..history.len())
        .filter(|&i| from_model(&history[i]) && (i == 0 || !from_model(&history[i - 1])))
        .collect();
    if starts.len() <= keep {
        return 0;
    }
    starts[starts.len() - keep]
}

/// `history` with the long tool outputs before `boundary` replaced by stubs
/// naming the tool, the call and the size.
pub(crate) fn project(history: &[Item], boundary: usize) -> Vec<Item> {
    if boundary == 0 {
        return history.to_vec();
    }
    let names: HashMap<&str, &str> = history[..boundary]
        .iter()
        .filter_map(|item| match item {
            Item::ToolCall { id, name, .. } => Some((id.as_str(), name.as_str())),
            _ => None,
        })
        .collect();
    history
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Item::ToolResult {
                call_id,
                summary,
                content: Some(content),
                is_error,
            } if i < boundary && content.len() > KEEP_SHORT => Item::ToolResult {
                call_id: call_id.clone(),
                summary: summary.clone(),
                content: Some(stub(
                    names.get(call_id.as_str()).copied(),
                    call_id,
                    content.len(),
                )),
                is_error: *is_error,
            },
            other => other.clone(),
        })
        .collect()
}

/// The text that stands in for a pruned output.
fn stub(tool: Option<&str>, call_id: &str, bytes: usize) -> String {
    let size = if bytes >= 10 * 1024 {
        format!("{} KB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    };
    format!(
        "[output of {} (call {call_id}) pruned from the context, {size}; run it again if you need it]",
        tool.unwrap_or("the tool")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> Item {
        Item::tool_call(id, "Grep", "{}")
    }

    fn result(id: &str, len: usize) -> Item {
        Item::tool_result(id, format!("{len} bytes"), Some("x".repeat(len)), false)
    }

    fn user(text: &str) -> Item {
        Item::text(Role::User, text)
    }

    fn session(calls: usize) -> Vec<Item> {
        let mut h = vec![user("go")];
        for i in 0..calls {
            h.push(call(&format!("c{i}")));
            h.push(result(&format!("c{i}"), 4000));
        }
        h
    }

    #[test]
    fn the_latest_calls_keep_their_outputs_and_older_ones_get_stubs() {
        let h = session(5);
        let boundary = keep_boundary(&h, 3);
        assert_eq!(boundary, 5, "the third call from the end starts at index 5");
        let p = project(&h, boundary);
        assert_eq!(p.len(), h.len(), "nothing is removed");
        let stubbed: Vec<bool> = p
            .iter()
            .filter_map(|i| match i {
                Item::ToolResult { content, .. } => {
                    content.as_deref().map(|c| c.contains("pruned"))
                }
                _ => None,
            })
            .collect();
        assert_eq!(stubbed, [true, true, false, false, false]);
        let Item::ToolResult {
            content: Some(c),
            summary,
            ..
        } = &p[2]
        else {
            panic!("{:?}", p[2])
        };
        assert_eq!(
            c,
            "[output of Grep (call c0) pruned from the context, 4000 bytes; run it again if you need it]"
        );
        assert_eq!(summary, "4000 bytes", "the summary stays");
        assert!(history_bytes(&p) < history_bytes(&h) * 2 / 3);
    }

    #[test]
    fn short_outputs_and_few_calls_stay_whole() {
        let h = session(2);
        assert_eq!(keep_boundary(&h, 3), 0);
        let mut h = session(5);
        h[2] = result("c0", 100);
        let p = project(&h, keep_boundary(&h, 3));
        assert_eq!(p[2], h[2]);
    }

    #[test]
    fn the_estimate_follows_the_measured_growth() {
        assert_eq!(estimate(4000, None), 1000);
        let first = Calibration::observe(None, 1000, 2000);
        // 2,000 more bytes at the default 4 bytes a token.
        assert_eq!(estimate(4000, Some(first)), 1500);
        // The provider then counts 2,500 tokens for 6,000 bytes: 2.67 bytes a
        // token since the first call, averaged with what was assumed before.
        let second = Calibration::observe(Some(first), 2500, 6000);
        assert!((second.per_byte - 0.3125).abs() < 1e-9, "{second:?}");
        assert_eq!(estimate(9000, Some(second)), 2500 + 937);
    }
}
