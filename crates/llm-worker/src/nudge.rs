//! Nudges for small models (their profile only): a request to change code
//! answered with advice or a code block instead of an edit gets one reminder
//! to apply the change with the tools, and a reply that repeats itself is cut
//! short and asked again with a note.

use llm_types::{Item, Role};

/// The reminder, added to the history as a user message.
pub const ACT_NUDGE: &str = "[You have not changed any file yet. Make the change yourself now with the \
Edit or Write tool (Read the file first if you have not), then reply in one short sentence.]";

/// Words of a request that asks for a change (lower case, whole words).
const CHANGE_WORDS: &[&str] = &[
    "add",
    "append",
    "bump",
    "change",
    "create",
    "delegate",
    "delete",
    "edit",
    "fix",
    "implement",
    "insert",
    "instead",
    "make",
    "modify",
    "move",
    "refactor",
    "remove",
    "rename",
    "replace",
    "set",
    "spawn",
    "update",
    "write",
];

/// Tools whose use means the model acted rather than advised.
const ACTING_TOOLS: &[&str] = &["Write", "Edit", "Bash", "SpawnPod", "SendToPod"];

/// The user's latest request in `history` (not a bracketed note, event or
/// summary), with its index.
fn latest_request(history: &[Item]) -> Option<(usize, String)> {
    history
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, item)| match item {
            Item::Message {
                role: Role::User, ..
            } => {
                // The user's own words: files attached to them may say anything
                // ("# TODO rename" made a question about TODOs a change request).
                let text = item.own_words();
                (!text.trim_start().starts_with('[')).then(|| (i, text.to_string()))
            }
            _ => None,
        })
}

/// Whether `text` asks for a change (one of [`CHANGE_WORDS`] as a word).
pub(crate) fn asks_for_change(text: &str) -> bool {
    text.to_lowercase()
        .split(|c: char| !c.is_ascii_alphabetic())
        .any(|w| CHANGE_WORDS.contains(&w))
}

/// Whether a model that just answered `history` without a tool call should be
/// reminded to act: the latest request asks for a change, no tool that
/// changes anything was called since, and no reminder was given since.
pub(crate) fn should_nudge(history: &[Item]) -> bool {
    let Some((at, request)) = latest_request(history) else {
        return false;
    };
    if !asks_for_change(&request) {
        return false;
    }
    let since = &history[at + 1..];
    // Acting is a call of an acting tool that succeeded (a refused Edit
    // changed nothing).
    let acting: Vec<&str> = since
        .iter()
        .filter_map(|item| match item {
            Item::ToolCall { id, name, .. } if ACTING_TOOLS.contains(&name.as_str()) => {
                Some(id.as_str())
            }
            _ => None,
        })
        .collect();
    !since.iter().any(|item| match item {
        Item::ToolResult {
            call_id, is_error, ..
        } => !is_error && acting.contains(&call_id.as_str()),
        Item::Message {
            role: Role::User, ..
        } => item.message_text() == ACT_NUDGE,
        _ => false,
    })
}

/// Added (to the request only) after a reply was cut for repeating itself.
pub const REPEAT_NOTE: &str = "[Your last reply kept repeating the same text and was cut off. Do not \
repeat yourself: call a tool, or answer briefly.]";

/// Watches a reply's text as it streams and tells when it has started going
/// round in circles: the same stretch of text, again and again.
#[derive(Debug, Default)]
pub(crate) struct Repetition {
    text: String,
    checked_at: usize,
}

/// The stretch compared (bytes at the end of the text so far).
const PROBE: usize = 64;
/// Occurrences of the probe that make a loop.
const LOOPS: usize = 5;
/// Text shorter than this is never a loop (a few repeated sentences are
/// style; a loop runs on until the token cap).
const MIN_LOOP_TEXT: usize = 1024;

impl Repetition {
    /// Adds streamed text; true once the text repeats itself.
    pub(crate) fn push(&mut self, delta: &str) -> bool {
        self.text.push_str(delta);
        // Checked every so often, and only once there is enough to repeat.
        if self.text.len() < MIN_LOOP_TEXT || self.text.len() < self.checked_at + PROBE {
            return false;
        }
        self.checked_at = self.text.len();
        let mut start = self.text.len() - PROBE;
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let probe = &self.text[start..];
        // Loops of whitespace or punctuation (a long rule, a table's
        // separators) are not what this is for.
        if probe.chars().filter(|c| c.is_alphanumeric()).count() < PROBE / 4 {
            return false;
        }
        self.text.matches(probe).count() >= LOOPS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Item {
        Item::text(Role::User, text)
    }

    fn answer(text: &str) -> Item {
        Item::text(Role::Assistant, text)
    }

    #[test]
    fn change_requests_are_told_from_questions() {
        assert!(asks_for_change("Rename get_total to compute_total"));
        assert!(asks_for_change("fix area() in rect.py"));
        assert!(asks_for_change("can you write an is_even(n) function?"));
        assert!(!asks_for_change("Which file defines parse_header?"));
        assert!(!asks_for_change("what does label() return"));
        // Whole words only: "settings" is not "set", "address" not "add".
        assert!(!asks_for_change("what is in settings.py at this address?"));
    }

    #[test]
    fn words_in_attached_files_do_not_make_a_question_a_change_request() {
        let h = vec![
            Item::user_with_context(
                "Count the TODO comments in the code.",
                "two.py (1 lines):\n```py\ny = 2  # TODO rename\n```",
            ),
            answer("There are 2 TODO comments."),
        ];
        assert!(!should_nudge(&h));
        let h = vec![
            Item::user_with_context("fix two.py", "two.py (1 lines):\n```py\ny = 2\n```"),
            answer("Change it to 3."),
        ];
        assert!(should_nudge(&h));
    }

    #[test]
    fn advice_instead_of_an_edit_is_nudged_once() {
        let mut h = vec![
            user("fix the bug in rect.py"),
            answer("Change `+` to `*` in rect.py:\n```py\nreturn w * h\n```"),
        ];
        assert!(should_nudge(&h));
        h.push(user(ACT_NUDGE));
        h.push(answer("Done."));
        assert!(!should_nudge(&h), "only once per request");
    }

    #[test]
    fn an_edit_a_question_or_an_event_is_not_nudged() {
        let edited = vec![
            user("fix the bug in rect.py"),
            Item::tool_call("c1", "Edit", "{}"),
            Item::tool_result("c1", "edited", None, false),
            answer("Fixed."),
        ];
        assert!(!should_nudge(&edited));
        // A refused Edit changed nothing: still advice.
        let refused = vec![
            user("the server should listen on 8080 instead of 3000"),
            Item::tool_call("c1", "Edit", "{}"),
            Item::tool_result("c1", "not read yet", None, true),
            answer("It should listen on 8080."),
        ];
        assert!(should_nudge(&refused));
        let question = vec![user("what does area() return?"), answer("w + h")];
        assert!(!should_nudge(&question));
        // A child's report is not the user's request: the request before it
        // (a delegation, done with SpawnPod) decides.
        let delegated = vec![
            user("create docs/README.md through a child pod"),
            Item::tool_call("c1", "SpawnPod", "{}"),
            Item::tool_result("c1", "spawned", None, false),
            answer("Started."),
            user("[pod event] child pod `docs` finished its turn"),
            answer("done"),
        ];
        assert!(!should_nudge(&delegated));
    }

    fn feed(text: &str) -> bool {
        let mut r = Repetition::default();
        // In small deltas, as a stream brings it.
        let chars: Vec<char> = text.chars().collect();
        chars
            .chunks(7)
            .any(|c| r.push(&c.iter().collect::<String>()))
    }

    #[test]
    fn a_paragraph_said_over_and_over_is_a_loop() {
        let para = "To fix the condition, you should check whether the age is at least 18 \
                    and return True in that case, otherwise False.\n\n";
        assert!(feed(&para.repeat(12)));
        assert!(!feed(&para.repeat(4)), "a few times is not a loop yet");
    }

    #[test]
    fn ordinary_replies_are_not_loops() {
        let answer: String = (0..60)
            .map(|i| format!("Line {i}: the file src/mod_{i}.rs defines function f{i}.\n"))
            .collect();
        assert!(!feed(&answer), "similar lines that differ are fine");
        let table = format!("| a | b |\n{}", "|---|---|\n".repeat(80));
        assert!(!feed(&table), "punctuation is not a loop");
        assert!(!feed("short"));
    }
}
