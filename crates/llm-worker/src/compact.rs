//! Compaction: when pruning old tool outputs is not enough, the model (or a
//! cheaper one) summarises the conversation and the history starts over from
//! that summary, the user's latest message and as much of the work since that
//! message as fits. The caller persists the new history as a new session
//! segment; the old one keeps everything.
//!
//! The summary is asked for as one more user message after the very request
//! the next call would send ([`continuation_request`]), so that a prompt cache
//! (llama.cpp's, a provider's) serves everything but the question, and the
//! model writes it having seen every tool output whole. Only when that does
//! not fit (or the model answers with a tool call) is it written from a
//! plain-text transcript cut to fit ([`transcript_request`]).

use llm_types::{Item, Role};

use crate::llm_client::request::{LlmRequest, ToolChoice};
use crate::prune;

/// What a summary must keep; in both kinds of summary request, and how the
/// fake provider in tests tells a summary request apart.
pub const SUMMARY_INSTRUCTIONS: &str = "Summarize this coding agent's conversation so that the agent can go on \
with its work from the summary alone. Keep what matters for going on: the task as the user gave it, \
decisions made and why, facts found that the task needs (names, values, places), every file created or \
changed (with its path) and what changed, commands that matter and their outcome, errors still open, and \
what the user asked last. Leave out greetings, repeated tool output and anything already superseded. \
Write plain text, at most the length you are given.";

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

/// Tokens kept free for the question of a [`continuation_request`].
pub(crate) const ASK_TOKENS: u64 = 256;

/// The summary asked for after `base` (the request the next call would send),
/// sharing its whole prefix; at most `max_tokens` of answer.
pub(crate) fn continuation_request(base: &LlmRequest, max_tokens: u32) -> LlmRequest {
    let ask = format!(
        "[Context compaction: the conversation is about to be cut here.] Do not call any tool now. \
         {SUMMARY_INSTRUCTIONS} Write the summary now, in at most {} words.",
        max_tokens * 3 / 4
    );
    let mut request = base.clone();
    request.history.push(Item::text(Role::User, ask));
    request.max_tokens = max_tokens;
    request
}

/// The summary request written from a transcript: no tools, the transcript
/// as one user message.
pub(crate) fn transcript_request(
    base: &LlmRequest,
    transcript: &str,
    max_tokens: u32,
) -> LlmRequest {
    let ask = format!(
        "Here is the conversation so far:\n\n{transcript}\n\n---\nWrite the summary now, in at most \
         {} words.",
        max_tokens * 3 / 4
    );
    LlmRequest {
        model: base.model.clone(),
        system: SUMMARY_INSTRUCTIONS.to_string(),
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

/// The history a compacted conversation goes on from: the summary and the
/// user's latest message (so the task in hand is in the user's own words) in
/// one user message, then the longest run of whole LLM calls (each with its
/// tool results) since that message for which `fits` holds, so that the work
/// in hand goes on from what it just read rather than from a summary of it.
pub(crate) fn seed_history(
    history: &[Item],
    summary: &str,
    fits: impl Fn(&[Item]) -> bool,
) -> Vec<Item> {
    let latest_at = history.iter().rposition(|item| {
        matches!(
            item,
            Item::Message {
                role: Role::User,
                ..
            }
        )
    });
    let mut text = format!("{SUMMARY_HEADER}\n\n{}", summary.trim());
    // The user's own words, without the files the pod attached to them: the
    // seed must stay small, or the next step compacts again. The whole message
    // stays in the log.
    if let Some(latest) = latest_at
        .map(|i| &history[i])
        .filter(|l| !l.own_words().starts_with(SUMMARY_HEADER))
    {
        let quote = |words: &str| {
            let mut quoted =
                format!("{text}\n\n[The user's latest message, for reference:]\n\n{words}");
            if latest.has_context() {
                quoted
                    .push_str("\n\n[Files were attached to it; read them again if you need them.]");
            }
            quoted
        };
        let words = latest.own_words();
        let whole = quote(words);
        text = if fits(&[Item::text(Role::User, whole.as_str())]) {
            whole
        } else {
            quote(&cut(words))
        };
    }
    let mut seed = vec![Item::text(Role::User, text)];
    let since = latest_at.map_or(0, |i| i + 1);
    let starts = (since..history.len()).filter(|&i| {
        prune::from_model(&history[i]) && (i == since || !prune::from_model(&history[i - 1]))
    });
    for start in starts {
        let mut candidate = seed.clone();
        candidate.extend_from_slice(&history[start..]);
        if fits(&candidate) {
            seed = candidate;
            break;
        }
    }
    seed
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
        let seed = seed_history(&h, "Parser fixed in src/parse.rs.", |_| true);
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
        let again = seed_history(&seed, "Still on the tests.", |_| true);
        assert_eq!(again[0].message_text().matches(SUMMARY_HEADER).count(), 1);
    }

    #[test]
    fn the_seed_quotes_the_users_words_without_the_attached_files() {
        let log = "ERROR host=kestrel\n".repeat(500);
        let h = vec![Item::user_with_context(
            "on which host did part1.log's error happen?",
            format!("\n\n[Files this message names, attached as they are now:]\n{log}"),
        )];
        let seed = seed_history(&h, "Three logs were read.", |_| true);
        let text = seed[0].message_text();
        assert!(text.contains("on which host did part1.log's error happen?"));
        assert!(text.contains("Files were attached to it"));
        assert!(!text.contains("host=kestrel"), "{}", text.len());
        // A message too long to quote whole is cut to fit.
        let long = vec![msg(Role::User, &"word ".repeat(4_000))];
        let seed = seed_history(&long, "s", |items| prune::history_bytes(items) < 8_000);
        let text = seed[0].message_text();
        assert!(
            text.len() < 3_000 && text.contains("word word"),
            "{}",
            text.len()
        );
        assert!(!text.contains("Files were attached"));
    }

    /// A turn in progress: the user's request, then two calls with results.
    fn turn_in_progress() -> Vec<Item> {
        vec![
            msg(Role::User, "old task"),
            msg(Role::Assistant, "old answer"),
            msg(Role::User, "read a.txt then b.txt"),
            Item::tool_call("c1", "Read", r#"{"path":"a.txt"}"#),
            Item::tool_result("c1", "read a.txt", Some("A".repeat(400)), false),
            msg(Role::Assistant, "now b"),
            Item::tool_call("c2", "Read", r#"{"path":"b.txt"}"#),
            Item::tool_result("c2", "read b.txt", Some("B".repeat(400)), false),
        ]
    }

    #[test]
    fn the_seed_keeps_the_latest_whole_calls_that_fit() {
        let h = turn_in_progress();
        // Everything since the request fits: both calls follow the summary.
        let all = seed_history(&h, "S", |_| true);
        assert_eq!(all.len(), 1 + 5, "{all:?}");
        assert_eq!(&all[1..], &h[3..]);
        // Room for one call only: the latest, whole (its text, call and result).
        let one = seed_history(&h, "S", |seed| seed.len() <= 4);
        assert_eq!(&one[1..], &h[5..]);
        // No room: the summary message alone, never half a call.
        let none = seed_history(&h, "S", |seed| seed.len() == 1);
        assert_eq!(none.len(), 1);
        // Nothing after the latest user message: nothing to keep.
        let idle = seed_history(&h[..3], "S", |_| true);
        assert_eq!(idle.len(), 1);
    }

    #[test]
    fn the_continuation_request_is_the_next_request_plus_the_question() {
        let base = LlmRequest {
            model: "m".into(),
            system: "You are pod x.".into(),
            history: turn_in_progress(),
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            max_tokens: 4096,
            temperature: Some(0.0),
            seed: Some(1),
            extra: serde_json::Map::new(),
            cache_key: Some("k".into()),
        };
        let r = continuation_request(&base, 700);
        // The whole prefix is the next request's, for the prompt cache.
        assert_eq!(r.system, base.system);
        assert_eq!(r.cache_key, base.cache_key);
        assert_eq!(&r.history[..base.history.len()], &base.history[..]);
        assert_eq!(r.history.len(), base.history.len() + 1);
        let ask = r.history[base.history.len()].message_text();
        assert!(
            ask.contains(SUMMARY_INSTRUCTIONS) && ask.contains("525 words"),
            "{ask}"
        );
        assert_eq!(r.max_tokens, 700);
        // The transcript form has its own system prompt and no tools.
        let t = transcript_request(&base, "User: hi", 700);
        assert_eq!(t.system, SUMMARY_INSTRUCTIONS);
        assert!(t.tools.is_empty() && t.cache_key.is_none());
    }
}
