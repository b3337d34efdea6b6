//! Compaction: when pruning old tool outputs is not enough, the model (or a
//! cheaper one) summarises the conversation and the history starts over from
//! that summary plus the user's latest message. The caller persists the new
//! history as a new session segment; the old one keeps everything.

use llm_types::{Item, Role};

use crate::llm_client::request::{LlmRequest, ToolChoice};

/// The system prompt of a summary call; also how the fake provider in tests
/// tells a summary request apart.
pub const SUMMARY_SYSTEM: &str = "You summarize a coding agent's conversation so that the agent can go on \
with its work from the summary alone. Keep what matters for going on: the task as the user gave it, \
decisions made and why, every file created or changed (with its path) and what changed, commands that \
matter and their outcome, errors still open, and what the user asked last. Leave out greetings, \
repeated tool output and anything already superseded. Write plain text, at most the length you are given.";

/// The start of the message a compacted history begins with.
pub const SUMMARY_HEADER: &str = "[This conversation was compacted to fit the context window. \
Summary of everything before this point:]";

/// Longest text of one item kept in the transcript the summary is written from.
const ITEM_CHARS: usize = 2_000;

/// The conversation as plain text for the summary call, keeping the most
/// recent part that fits in `max_bytes`.
pub(crate) fn transcript(history: &[Item], max_bytes: usize) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut total = 0;
    for item in history.iter().rev() {
        let line = match item {
            Item::Message { role, .. } => {
                let who = match role {
                    Role::User => "User",
                    Role::Assistant => "Assistant",
                    Role::System => "System",
                };
                format!("{who}: {}", cut(&item.message_text()))
            }
            Item::Reasoning { text, .. } if !text.is_empty() => {
                format!("Assistant (thinking): {}", cut(text))
            }
            Item::Reasoning { .. } | Item::ProviderItem { .. } => continue,
            Item::ToolCall {
                name, arguments, ..
            } => format!("Assistant called {name} {}", cut(arguments)),
            Item::ToolResult {
                summary,
                content,
                is_error,
                ..
            } => {
                let mark = if *is_error { "failed" } else { "result" };
                match content {
                    Some(c) => format!("Tool {mark}: {summary}\n{}", cut(c)),
                    None => format!("Tool {mark}: {summary}"),
                }
            }
        };
        if total + line.len() > max_bytes && !parts.is_empty() {
            parts.push("[… earlier conversation left out …]".into());
            break;
        }
        total += line.len() + 2;
        parts.push(line);
    }
    parts.reverse();
    parts.join("\n\n")
}

fn cut(text: &str) -> String {
    if text.chars().count() <= ITEM_CHARS {
        return text.to_string();
    }
    let head: String = text.chars().take(ITEM_CHARS).collect();
    format!("{head} […]")
}

/// The summary request: no tools, the transcript as one user message.
pub(crate) fn summary_request(base: &LlmRequest, transcript: &str, max_tokens: u32) -> LlmRequest {
    let ask = format!(
        "Here is the conversation so far:\n\n{transcript}\n\n---\nWrite the summary now, in at most \
         {} words.",
        max_tokens * 3 / 4
    );
    LlmRequest {
        model: base.model.clone(),
        system: SUMMARY_SYSTEM.to_string(),
        history: vec![Item::text(Role::User, ask)],
        tools: Vec::new(),
        tool_choice: ToolChoice::Auto,
        max_tokens,
        temperature: base.temperature,
        seed: base.seed,
        extra: base.extra.clone(),
        cache_key: None,
    }
}

/// The history a compacted conversation goes on from: the summary, then the
/// user's latest message (so the task in hand is in the user's own words).
pub(crate) fn seed_history(history: &[Item], summary: &str) -> Vec<Item> {
    let latest = history.iter().rev().find_map(|item| match item {
        Item::Message {
            role: Role::User, ..
        } => Some(item.message_text()),
        _ => None,
    });
    let mut text = format!("{SUMMARY_HEADER}\n\n{}", summary.trim());
    if let Some(latest) = latest.filter(|l| !l.starts_with(SUMMARY_HEADER)) {
        text.push_str(&format!(
            "\n\n[The user's latest message, for reference:]\n\n{latest}"
        ));
    }
    text.push_str("\n\n[Go on with the work from here.]");
    vec![Item::text(Role::User, text)]
}

/// The summary's text from the items of a summary call.
pub(crate) fn summary_text(items: &[Item]) -> String {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Message {
                role: Role::Assistant,
                ..
            } => Some(item.message_text()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, text: &str) -> Item {
        Item::text(role, text)
    }

    #[test]
    fn the_transcript_keeps_the_latest_part_and_says_what_it_left_out() {
        let mut h = vec![msg(Role::User, "fix the parser")];
        for i in 0..50 {
            h.push(Item::tool_call(
                format!("c{i}"),
                "Read",
                format!("{{\"path\":\"f{i}.rs\"}}"),
            ));
            h.push(Item::tool_result(
                format!("c{i}"),
                format!("read f{i}.rs"),
                Some("x".repeat(500)),
                false,
            ));
        }
        let t = transcript(&h, 5_000);
        assert!(t.len() < 6_000, "{}", t.len());
        assert!(t.starts_with("[… earlier conversation left out …]"));
        assert!(t.contains("f49.rs") && !t.contains("f0.rs"));
        let whole = transcript(&h[..3], 100_000);
        assert!(whole.starts_with("User: fix the parser\n\nAssistant called Read"));
    }

    #[test]
    fn the_seed_is_one_user_message_with_the_summary_and_the_latest_request() {
        let h = vec![
            msg(Role::User, "first task"),
            msg(Role::Assistant, "done"),
            msg(Role::User, "now add tests"),
        ];
        let seed = seed_history(&h, "Parser fixed in src/parse.rs.");
        assert_eq!(seed.len(), 1);
        let Item::Message { role, .. } = &seed[0] else {
            panic!("{seed:?}")
        };
        assert_eq!(*role, Role::User);
        let text = seed[0].message_text();
        assert!(text.starts_with(SUMMARY_HEADER));
        assert!(text.contains("Parser fixed") && text.contains("now add tests"));
        assert!(!text.contains("first task"));
        // Compacting a compacted history does not quote the old seed as the request.
        let again = seed_history(&seed, "Still on the tests.");
        assert_eq!(again[0].message_text().matches(SUMMARY_HEADER).count(), 1);
    }
}
