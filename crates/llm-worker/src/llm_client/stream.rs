//! What a client yields while a response streams, and how the pieces are put
//! back together into conversation items.
//!
//! Every scheme decoder speaks to one [`Assembler`]: it names each block of the
//! response by a *key* taken from the provider (a content-block index, an output
//! index, a tool-call index or id), so that parallel tool calls and interleaved
//! blocks never mix. The assembler emits [`StreamEvent`]s as deltas arrive and
//! builds the final items in the order blocks first appeared.

use std::collections::HashMap;

use llm_types::{ContentPart, Item, ProviderFamily, Role, ToolCallKind, Usage};

use crate::llm_client::error::ClientError;
use crate::llm_client::sse::SseEvent;

/// Why the model stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StopReason {
    /// Finished its answer (or hit a stop sequence).
    #[default]
    End,
    /// Wants tool results.
    ToolUse,
    /// Ran out of output tokens.
    MaxTokens,
    /// Refused; the provider's explanation where it gave one.
    Refusal(String),
    /// The provider's content filter stopped it.
    ContentFilter,
    /// Anything else, with the provider's own word for it.
    Other(String),
}

/// One thing that happened in a streaming response, for live display.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Assistant text.
    TextDelta {
        /// The new text.
        text: String,
    },
    /// A reasoning block began.
    ThinkingStart,
    /// Reasoning text.
    ThinkingDelta {
        /// The new text.
        text: String,
    },
    /// A tool call began.
    ToolCallStart {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
    },
    /// A fragment of a tool call's arguments.
    ToolCallArgsDelta {
        /// Call id.
        id: String,
        /// The new JSON text.
        json: String,
    },
    /// A tool call is complete.
    ToolCallDone {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Complete arguments (JSON text; `{}` when the model sent none).
        arguments: String,
    },
    /// Token usage of this call so far (replaces any earlier figure).
    Usage(Usage),
}

/// The result of one LLM call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    /// Items the model produced, in order.
    pub items: Vec<Item>,
    /// Token usage of the call.
    pub usage: Usage,
    /// Why it stopped.
    pub stop: StopReason,
}

impl Completion {
    /// The tool calls among the items.
    pub fn tool_calls(&self) -> impl Iterator<Item = &Item> {
        self.items
            .iter()
            .filter(|i| matches!(i, Item::ToolCall { .. }))
    }
}

/// What a decoder says after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// The provider marked the end of the response (`[DONE]`, `message_stop`,
    /// `response.completed`); anything after it is ignored.
    Done,
}

/// Decodes one scheme's SSE events into assembler calls.
pub trait StreamDecoder: Send {
    /// Handles one event. An in-band provider error is returned as
    /// [`ClientError::Provider`].
    fn feed(&mut self, event: &SseEvent, asm: &mut Assembler) -> Result<Flow, ClientError>;

    /// Called at end of stream; returns an error if the stream ended somewhere a
    /// complete response cannot end (schemes without an end marker accept EOF).
    fn finish(&mut self, asm: &mut Assembler) -> Result<(), ClientError>;
}

#[derive(Debug)]
enum Block {
    Text {
        text: String,
        id: Option<String>,
        provider: Option<ProviderFamily>,
    },
    Reasoning {
        provider: ProviderFamily,
        text: String,
        signature: Option<String>,
        redacted: Option<String>,
        encrypted: Option<String>,
        id: Option<String>,
    },
    ToolCall {
        id: String,
        name: String,
        arguments: String,
        kind: ToolCallKind,
        signature: Option<String>,
        provider: Option<ProviderFamily>,
        item_id: Option<String>,
        done: bool,
    },
    Provider {
        provider: ProviderFamily,
        value: serde_json::Value,
    },
}

/// Accumulates a response's blocks by provider key and emits stream events.
#[derive(Debug)]
pub struct Assembler {
    family: ProviderFamily,
    blocks: Vec<Block>,
    by_key: HashMap<String, usize>,
    events: Vec<StreamEvent>,
    usage: Usage,
    stop: Option<StopReason>,
    next_call: u32,
}

impl Assembler {
    /// An empty response from `family`.
    pub fn new(family: ProviderFamily) -> Self {
        Assembler {
            family,
            blocks: Vec::new(),
            by_key: HashMap::new(),
            events: Vec::new(),
            usage: Usage::default(),
            stop: None,
            next_call: 0,
        }
    }

    /// The provider family this response comes from.
    pub fn family(&self) -> ProviderFamily {
        self.family
    }

    /// Takes the events emitted since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, StreamEvent> {
        self.events.drain(..)
    }

    /// Whether a block with this key exists.
    pub fn has(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    fn slot(&mut self, key: &str, make: impl FnOnce() -> Block) -> &mut Block {
        let idx = match self.by_key.get(key) {
            Some(&i) => i,
            None => {
                self.blocks.push(make());
                let i = self.blocks.len() - 1;
                self.by_key.insert(key.to_string(), i);
                i
            }
        };
        &mut self.blocks[idx]
    }

    /// Appends text to the text block `key` (creating it).
    pub fn text_delta(&mut self, key: &str, text: &str) {
        if let Block::Text { text: t, .. } = self.slot(key, || Block::Text {
            text: String::new(),
            id: None,
            provider: None,
        }) {
            t.push_str(text);
        }
        if !text.is_empty() {
            self.events.push(StreamEvent::TextDelta {
                text: text.to_string(),
            });
        }
    }

    /// Records the provider's id of the text block `key` (echoed back only to
    /// the same family).
    pub(crate) fn text_id(&mut self, key: &str, id: &str) {
        let family = self.family;
        if let Block::Text {
            id: slot, provider, ..
        } = self.slot(key, || Block::Text {
            text: String::new(),
            id: None,
            provider: None,
        }) {
            *slot = Some(id.to_string());
            *provider = Some(family);
        }
    }

    fn reasoning(&mut self, key: &str) -> &mut Block {
        let family = self.family;
        let is_new = !self.by_key.contains_key(key);
        if is_new {
            self.events.push(StreamEvent::ThinkingStart);
        }
        self.slot(key, || Block::Reasoning {
            provider: family,
            text: String::new(),
            signature: None,
            redacted: None,
            encrypted: None,
            id: None,
        })
    }

    /// Starts (or continues) the reasoning block `key`.
    pub fn thinking_start(&mut self, key: &str) {
        self.reasoning(key);
    }

    /// Appends reasoning text to the block `key`.
    pub fn thinking_delta(&mut self, key: &str, text: &str) {
        if let Block::Reasoning { text: t, .. } = self.reasoning(key) {
            t.push_str(text);
        }
        if !text.is_empty() {
            self.events.push(StreamEvent::ThinkingDelta {
                text: text.to_string(),
            });
        }
    }

    /// Sets the signature of the reasoning block `key` (appends: Anthropic may
    /// stream it in pieces).
    pub(crate) fn thinking_signature(&mut self, key: &str, signature: &str) {
        if let Block::Reasoning { signature: s, .. } = self.reasoning(key) {
            s.get_or_insert_with(String::new).push_str(signature);
        }
    }

    /// Sets the opaque parts of the reasoning block `key`: redacted data,
    /// encrypted content, provider id (each only when `Some`).
    pub(crate) fn reasoning_opaque(
        &mut self,
        key: &str,
        redacted_data: Option<&str>,
        encrypted_content: Option<&str>,
        item_id: Option<&str>,
    ) {
        if let Block::Reasoning {
            redacted,
            encrypted,
            id,
            ..
        } = self.reasoning(key)
        {
            if let Some(r) = redacted_data {
                *redacted = Some(r.to_string());
            }
            if let Some(e) = encrypted_content {
                *encrypted = Some(e.to_string());
            }
            if let Some(i) = item_id {
                *id = Some(i.to_string());
            }
        }
    }

    /// Starts the tool call `key`. An empty `id` gets a generated one (some
    /// servers send none) so results can always refer to the call.
    pub fn tool_call_start(&mut self, key: &str, id: &str, name: &str, kind: ToolCallKind) {
        if self.has(key) {
            return;
        }
        let id = if id.is_empty() {
            self.next_call += 1;
            format!("call_{}_{}", key, self.next_call)
        } else {
            id.to_string()
        };
        self.events.push(StreamEvent::ToolCallStart {
            id: id.clone(),
            name: name.to_string(),
        });
        self.slot(key, || Block::ToolCall {
            id,
            name: name.to_string(),
            arguments: String::new(),
            kind,
            signature: None,
            provider: None,
            item_id: None,
            done: false,
        });
    }

    /// Appends an arguments fragment to the tool call `key`.
    pub(crate) fn tool_call_args(&mut self, key: &str, fragment: &str) {
        if fragment.is_empty() {
            return;
        }
        let Some(&idx) = self.by_key.get(key) else {
            return;
        };
        if let Block::ToolCall { id, arguments, .. } = &mut self.blocks[idx] {
            arguments.push_str(fragment);
            self.events.push(StreamEvent::ToolCallArgsDelta {
                id: id.clone(),
                json: fragment.to_string(),
            });
        }
    }

    /// Replaces the arguments of the tool call `key` with their complete text
    /// (schemes that send whole arguments at the end, or in one piece).
    pub(crate) fn tool_call_set_args(&mut self, key: &str, full: &str) {
        let Some(&idx) = self.by_key.get(key) else {
            return;
        };
        if let Block::ToolCall { arguments, .. } = &mut self.blocks[idx] {
            *arguments = full.to_string();
        }
    }

    /// Fills in a tool call's name if it arrived late or empty.
    pub(crate) fn tool_call_name(&mut self, key: &str, name: &str) {
        let Some(&idx) = self.by_key.get(key) else {
            return;
        };
        if let Block::ToolCall { name: n, .. } = &mut self.blocks[idx]
            && n.is_empty()
        {
            *n = name.to_string();
        }
    }

    /// Records provider state on the tool call `key`: a signature (Gemini's
    /// `thoughtSignature`) and/or the provider's own item id.
    pub(crate) fn tool_call_meta(
        &mut self,
        key: &str,
        signature: Option<&str>,
        item_id: Option<&str>,
    ) {
        let family = self.family;
        let Some(&idx) = self.by_key.get(key) else {
            return;
        };
        if let Block::ToolCall {
            signature: s,
            item_id: i,
            provider,
            ..
        } = &mut self.blocks[idx]
        {
            if let Some(sig) = signature {
                *s = Some(sig.to_string());
                *provider = Some(family);
            }
            if let Some(id) = item_id {
                *i = Some(id.to_string());
                *provider = Some(family);
            }
        }
    }

    /// Marks the tool call `key` complete and emits `ToolCallDone` (once).
    pub fn tool_call_done(&mut self, key: &str) {
        let Some(&idx) = self.by_key.get(key) else {
            return;
        };
        if let Block::ToolCall {
            id,
            name,
            arguments,
            done,
            kind,
            ..
        } = &mut self.blocks[idx]
        {
            if *done {
                return;
            }
            *done = true;
            if arguments.trim().is_empty() && *kind == ToolCallKind::Function {
                *arguments = "{}".to_string();
            }
            self.events.push(StreamEvent::ToolCallDone {
                id: id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
            });
        }
    }

    /// Keeps a block only this provider understands (server-side tool use,
    /// compaction, web search), to echo back to the same family.
    pub fn provider_item(&mut self, value: serde_json::Value) {
        self.blocks.push(Block::Provider {
            provider: self.family,
            value,
        });
    }

    /// Keeps a provider block under a key, so a later event can replace it with
    /// its completed form.
    pub(crate) fn provider_item_keyed(&mut self, key: &str, value: serde_json::Value) {
        let family = self.family;
        let slot = self.slot(key, || Block::Provider {
            provider: family,
            value: serde_json::Value::Null,
        });
        if let Block::Provider { value: v, .. } = slot {
            *v = value;
        }
    }

    /// Sets the call's usage so far (providers report cumulative figures).
    pub(crate) fn set_usage(&mut self, usage: Usage) {
        self.usage = usage;
        self.events.push(StreamEvent::Usage(usage));
    }

    /// The usage recorded so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Records why the model stopped (the last word wins).
    pub(crate) fn set_stop(&mut self, stop: StopReason) {
        self.stop = Some(stop);
    }

    /// Whether a stop reason has been recorded.
    pub(crate) fn has_stop(&self) -> bool {
        self.stop.is_some()
    }

    /// Completes every open tool call (emitting `ToolCallDone`) — for schemes
    /// that end calls implicitly at the end of the response.
    pub(crate) fn finish_open_tool_calls(&mut self) {
        let mut keys: Vec<(usize, String)> = self
            .by_key
            .iter()
            .filter(|(_, i)| matches!(self.blocks[**i], Block::ToolCall { done: false, .. }))
            .map(|(k, &i)| (i, k.clone()))
            .collect();
        keys.sort();
        for (_, k) in keys {
            self.tool_call_done(&k);
        }
    }

    /// The response so far as items, usage and stop reason. Adjacent text blocks
    /// form one message; empty text blocks without an id are dropped. When no
    /// stop reason was reported, a response with tool calls stopped for tool use.
    pub fn completion(&self) -> Completion {
        let mut items: Vec<Item> = Vec::new();
        for block in &self.blocks {
            match block {
                Block::Text { text, id, provider } => {
                    if text.is_empty() && id.is_none() {
                        continue;
                    }
                    if let Some(Item::Message {
                        role: Role::Assistant,
                        content,
                        id: None,
                        ..
                    }) = items.last_mut()
                        && id.is_none()
                    {
                        content.push(ContentPart::text(text.clone()));
                        continue;
                    }
                    items.push(Item::Message {
                        role: Role::Assistant,
                        content: vec![ContentPart::text(text.clone())],
                        id: id.clone(),
                        provider: *provider,
                    });
                }
                Block::Reasoning {
                    provider,
                    text,
                    signature,
                    redacted,
                    encrypted,
                    id,
                } => items.push(Item::Reasoning {
                    provider: *provider,
                    text: text.clone(),
                    signature: signature.clone(),
                    redacted: redacted.clone(),
                    encrypted: encrypted.clone(),
                    id: id.clone(),
                }),
                Block::ToolCall {
                    id,
                    name,
                    arguments,
                    kind,
                    signature,
                    provider,
                    item_id,
                    done,
                } => items.push(Item::ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: if !done && arguments.trim().is_empty() {
                        "{}".to_string()
                    } else {
                        arguments.clone()
                    },
                    kind: *kind,
                    signature: signature.clone(),
                    provider: *provider,
                    item_id: item_id.clone(),
                }),
                Block::Provider { provider, value } => {
                    if !value.is_null() {
                        items.push(Item::ProviderItem {
                            provider: *provider,
                            value: value.clone(),
                        });
                    }
                }
            }
        }
        let stop = match &self.stop {
            Some(s) => s.clone(),
            None if items.iter().any(|i| matches!(i, Item::ToolCall { .. })) => StopReason::ToolUse,
            None => StopReason::End,
        };
        Completion {
            items,
            usage: self.usage,
            stop,
        }
    }

    /// Whether any tool call was started but not completed (the stream was cut
    /// inside it).
    pub(crate) fn has_open_tool_call(&self) -> bool {
        self.blocks
            .iter()
            .any(|b| matches!(b, Block::ToolCall { done: false, .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_calls_keyed_by_index_never_mix() {
        let mut a = Assembler::new(ProviderFamily::OpenaiChat);
        a.text_delta("t", "Let me look.");
        a.tool_call_start("0", "c0", "Read", ToolCallKind::Function);
        a.tool_call_start("1", "c1", "Grep", ToolCallKind::Function);
        a.tool_call_args("1", "{\"pattern\":");
        a.tool_call_args("0", "{\"path\":");
        a.tool_call_args("0", "\"a\"}");
        a.tool_call_args("1", "\"x\"}");
        a.finish_open_tool_calls();
        let c = a.completion();
        assert_eq!(
            c.items,
            vec![
                Item::text(Role::Assistant, "Let me look."),
                Item::tool_call("c0", "Read", "{\"path\":\"a\"}"),
                Item::tool_call("c1", "Grep", "{\"pattern\":\"x\"}"),
            ]
        );
        assert_eq!(c.stop, StopReason::ToolUse);
        let done = a
            .drain_events()
            .filter(|e| matches!(e, StreamEvent::ToolCallDone { .. }))
            .count();
        assert_eq!(done, 2);
    }

    #[test]
    fn empty_arguments_become_an_empty_object_and_empty_ids_are_generated() {
        let mut a = Assembler::new(ProviderFamily::Anthropic);
        a.tool_call_start("0", "", "ListPods", ToolCallKind::Function);
        a.tool_call_done("0");
        let c = a.completion();
        let Item::ToolCall { id, arguments, .. } = &c.items[0] else {
            panic!("{c:?}")
        };
        assert_eq!(arguments, "{}");
        assert!(!id.is_empty());
    }

    #[test]
    fn reasoning_keeps_signature_and_opaque_parts() {
        let mut a = Assembler::new(ProviderFamily::Anthropic);
        a.thinking_delta("0", "hmm");
        a.thinking_signature("0", "sig");
        a.reasoning_opaque("1", Some("REDACTED"), None, None);
        a.text_delta("2", "ok");
        a.set_stop(StopReason::End);
        let c = a.completion();
        assert_eq!(c.items.len(), 3);
        assert_eq!(
            c.items[0],
            Item::Reasoning {
                provider: ProviderFamily::Anthropic,
                text: "hmm".into(),
                signature: Some("sig".into()),
                redacted: None,
                encrypted: None,
                id: None
            }
        );
        let events: Vec<_> = a.drain_events().collect();
        assert_eq!(events[0], StreamEvent::ThinkingStart);
        assert_eq!(
            events
                .iter()
                .filter(|e| **e == StreamEvent::ThinkingStart)
                .count(),
            2
        );
    }

    #[test]
    fn adjacent_text_blocks_merge_but_ids_keep_messages_apart() {
        let mut a = Assembler::new(ProviderFamily::OpenaiResponses);
        a.text_delta("0", "a");
        a.text_delta("1", "b");
        a.text_id("2", "msg_2");
        a.text_delta("2", "c");
        let c = a.completion();
        assert_eq!(c.items.len(), 2);
        assert_eq!(c.items[0].message_text(), "ab");
        assert_eq!(c.items[1].message_text(), "c");
    }

    #[test]
    fn provider_items_are_kept_and_replaced_by_key() {
        let mut a = Assembler::new(ProviderFamily::Anthropic);
        a.provider_item_keyed(
            "3",
            serde_json::json!({"type":"server_tool_use","input":{}}),
        );
        a.provider_item_keyed(
            "3",
            serde_json::json!({"type":"server_tool_use","input":{"q":1}}),
        );
        let c = a.completion();
        assert_eq!(
            c.items,
            vec![Item::ProviderItem {
                provider: ProviderFamily::Anthropic,
                value: serde_json::json!({"type":"server_tool_use","input":{"q":1}})
            }]
        );
    }
}
