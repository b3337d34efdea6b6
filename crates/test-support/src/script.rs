//! Scripted model turns, written as each scheme's real wire bytes.
//!
//! Agent-loop tests need responses the recordings do not contain ("call `Read`
//! and `Grep` in parallel, then answer"), in every wire scheme. A [`Turn`] says
//! what the model does — think, write text, call tools — and [`Turn::sse`] renders
//! it as the SSE body that scheme's endpoint would stream, with tool-call
//! arguments split across two deltas so assemblers are exercised as with real
//! providers. [`Turn::sse_cut_in_call`] stops in the middle of the first call's
//! arguments, for mid-tool-call disconnect tests.
//!
//! ```ignore
//! let turn = Turn::new().text("Reading both.").call("c1", "Read", r#"{"path":"a"}"#);
//! server.push(Scripted::sse(turn.sse(Family::Anthropic)));
//! ```

use serde_json::{Value, json};

use crate::Family;

/// One tool call the scripted model makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Call id (Gemini gets it as `functionCall.id`).
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as JSON text (must be a JSON object).
    pub arguments: String,
}

/// An input token count that [`crate::fake_provider::FakeProvider`] replaces in
/// the response with its own count of the request it answers: ⌈bytes / 4⌉.
pub const COUNTED_INPUT: u64 = 987_654_321;

/// What the scripted model does in one response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Turn {
    thinking: Option<String>,
    text: Option<String>,
    calls: Vec<Call>,
    /// Text deltas the text is streamed in (1 unless set).
    pieces: usize,
    input_tokens: u64,
    output_tokens: u64,
}

/// One SSE event before framing: its `event:` name (if the scheme uses names) and data.
struct WireEvent {
    name: Option<&'static str>,
    data: Value,
    /// Marks the first arguments fragment of the first call (where a cut falls).
    first_args: bool,
}

impl WireEvent {
    fn named(name: &'static str, data: Value) -> Self {
        WireEvent {
            name: Some(name),
            data,
            first_args: false,
        }
    }

    fn data(data: Value) -> Self {
        WireEvent {
            name: None,
            data,
            first_args: false,
        }
    }

    fn frame(&self, out: &mut Vec<u8>) {
        if let Some(name) = self.name {
            out.extend_from_slice(format!("event: {name}\n").as_bytes());
        }
        match &self.data {
            // A sentinel such as `[DONE]` goes out as bare text, not a JSON string.
            Value::String(raw) => out.extend_from_slice(format!("data: {raw}\n\n").as_bytes()),
            json => out.extend_from_slice(format!("data: {json}\n\n").as_bytes()),
        }
    }
}

/// Splits arguments into two fragments (at a char boundary near the middle).
fn halves(s: &str) -> (&str, &str) {
    let mut mid = s.len() / 2;
    while !s.is_char_boundary(mid) {
        mid += 1;
    }
    s.split_at(mid)
}

impl Turn {
    /// An empty turn (the model says nothing; add text or calls).
    pub fn new() -> Self {
        Turn {
            pieces: 1,
            input_tokens: 100,
            output_tokens: 20,
            ..Turn::default()
        }
    }

    /// Reasoning text before the answer.
    pub fn thinking(mut self, text: impl Into<String>) -> Self {
        self.thinking = Some(text.into());
        self
    }

    /// Assistant text (before any calls).
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Streams the text in `n` deltas (as equal as character boundaries allow),
    /// for tests that need many deltas.
    pub fn in_pieces(mut self, n: usize) -> Self {
        self.pieces = n.max(1);
        self
    }

    /// The text split into the configured number of deltas.
    fn text_pieces(&self) -> Vec<&str> {
        let Some(text) = self.text.as_deref() else {
            return Vec::new();
        };
        let n = self.pieces.max(1);
        let mut out = Vec::with_capacity(n);
        let mut rest = text;
        for i in 0..n {
            let left = n - i;
            let mut cut = rest.len().div_ceil(left);
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            let (head, tail) = rest.split_at(cut);
            if !head.is_empty() {
                out.push(head);
            }
            rest = tail;
        }
        out
    }

    /// A tool call; several calls are made in parallel, in the order added.
    pub fn call(
        mut self,
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        self.calls.push(Call {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        });
        self
    }

    /// Reports as input tokens what the fake provider counts for the request
    /// it answers (⌈bytes / 4⌉, see [`COUNTED_INPUT`]), as a real provider's
    /// usage would.
    pub fn counted_usage(self, output_tokens: u64) -> Self {
        self.usage(COUNTED_INPUT, output_tokens)
    }

    /// Token usage the response reports.
    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        self.input_tokens = input_tokens;
        self.output_tokens = output_tokens;
        self
    }

    /// The calls of this turn.
    pub fn calls(&self) -> &[Call] {
        &self.calls
    }

    /// The complete SSE body in `family`'s wire scheme.
    pub fn sse(&self, family: Family) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in self.events(family) {
            ev.frame(&mut out);
        }
        out
    }

    /// The SSE body up to and including the first fragment of the first call's
    /// arguments: a stream cut inside a tool call. Without calls, the whole body
    /// minus its final event.
    pub fn sse_cut_in_call(&self, family: Family) -> Vec<u8> {
        let events = self.events(family);
        let end = match events.iter().position(|e| e.first_args) {
            Some(i) => i + 1,
            None => events.len().saturating_sub(1),
        };
        let mut out = Vec::new();
        for ev in &events[..end] {
            ev.frame(&mut out);
        }
        out
    }

    fn events(&self, family: Family) -> Vec<WireEvent> {
        match family {
            Family::Anthropic => self.anthropic(),
            Family::OpenaiChat => self.openai_chat(),
            Family::OpenaiResponses => self.openai_responses(),
            Family::Gemini => self.gemini(),
        }
    }

    fn anthropic(&self) -> Vec<WireEvent> {
        let mut evs = vec![WireEvent::named(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": "msg_scripted", "type": "message", "role": "assistant",
                "model": "scripted", "content": [], "stop_reason": null,
                "usage": {"input_tokens": self.input_tokens, "output_tokens": 1}}}),
        )];
        let mut index = 0;
        if let Some(thinking) = &self.thinking {
            evs.push(WireEvent::named(
                "content_block_start",
                json!({"type": "content_block_start", "index": index,
                       "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            ));
            evs.push(WireEvent::named(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "thinking_delta", "thinking": thinking}}),
            ));
            evs.push(WireEvent::named(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "signature_delta", "signature": "c2NyaXB0ZWQ="}}),
            ));
            evs.push(WireEvent::named(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
            index += 1;
        }
        if self.text.is_some() {
            evs.push(WireEvent::named(
                "content_block_start",
                json!({"type": "content_block_start", "index": index,
                       "content_block": {"type": "text", "text": ""}}),
            ));
            for piece in self.text_pieces() {
                evs.push(WireEvent::named(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                           "delta": {"type": "text_delta", "text": piece}}),
                ));
            }
            evs.push(WireEvent::named(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
            index += 1;
        }
        for (n, call) in self.calls.iter().enumerate() {
            evs.push(WireEvent::named(
                "content_block_start",
                json!({"type": "content_block_start", "index": index,
                       "content_block": {"type": "tool_use", "id": call.id,
                                         "name": call.name, "input": {}}}),
            ));
            let (a, b) = halves(&call.arguments);
            for (k, part) in [a, b].into_iter().enumerate() {
                let mut ev = WireEvent::named(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                           "delta": {"type": "input_json_delta", "partial_json": part}}),
                );
                ev.first_args = n == 0 && k == 0;
                evs.push(ev);
            }
            evs.push(WireEvent::named(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
            index += 1;
        }
        let stop = if self.calls.is_empty() {
            "end_turn"
        } else {
            "tool_use"
        };
        evs.push(WireEvent::named(
            "message_delta",
            json!({"type": "message_delta",
                   "delta": {"stop_reason": stop, "stop_sequence": null},
                   "usage": {"output_tokens": self.output_tokens}}),
        ));
        evs.push(WireEvent::named(
            "message_stop",
            json!({"type": "message_stop"}),
        ));
        evs
    }

    fn openai_chat(&self) -> Vec<WireEvent> {
        let chunk = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
                   "created": 1, "model": "scripted",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let mut evs = vec![WireEvent::data(chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        ))];
        if let Some(thinking) = &self.thinking {
            evs.push(WireEvent::data(chunk(
                json!({"reasoning_content": thinking}),
                Value::Null,
            )));
        }
        for piece in self.text_pieces() {
            evs.push(WireEvent::data(chunk(
                json!({"content": piece}),
                Value::Null,
            )));
        }
        for (n, call) in self.calls.iter().enumerate() {
            evs.push(WireEvent::data(chunk(
                json!({"tool_calls": [{"index": n, "id": call.id, "type": "function",
                                       "function": {"name": call.name, "arguments": ""}}]}),
                Value::Null,
            )));
            let (a, b) = halves(&call.arguments);
            for (k, part) in [a, b].into_iter().enumerate() {
                let mut ev = WireEvent::data(chunk(
                    json!({"tool_calls": [{"index": n, "function": {"arguments": part}}]}),
                    Value::Null,
                ));
                ev.first_args = n == 0 && k == 0;
                evs.push(ev);
            }
        }
        let finish = if self.calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        evs.push(WireEvent::data(chunk(json!({}), json!(finish))));
        evs.push(WireEvent::data(json!({
            "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1,
            "model": "scripted", "choices": [],
            "usage": {"prompt_tokens": self.input_tokens,
                      "completion_tokens": self.output_tokens,
                      "total_tokens": self.input_tokens + self.output_tokens}})));
        evs.push(WireEvent {
            name: None,
            data: Value::String("[DONE]".into()),
            first_args: false,
        });
        evs
    }

    fn openai_responses(&self) -> Vec<WireEvent> {
        let ev = |name: &'static str, mut data: Value| {
            if let Some(obj) = data.as_object_mut() {
                obj.insert("type".into(), json!(name));
            }
            WireEvent::named(name, data)
        };
        let mut evs = vec![ev(
            "response.created",
            json!({"response": {"id": "resp_scripted", "status": "in_progress", "output": []}}),
        )];
        let mut output: Vec<Value> = Vec::new();
        if let Some(thinking) = &self.thinking {
            let index = output.len();
            let item = json!({"type": "reasoning", "id": "rs_scripted", "summary": [
                {"type": "summary_text", "text": thinking}]});
            evs.push(ev(
                "response.output_item.added",
                json!({"output_index": index,
                       "item": {"type": "reasoning", "id": "rs_scripted", "summary": []}}),
            ));
            evs.push(ev(
                "response.reasoning_summary_text.delta",
                json!({"output_index": index, "item_id": "rs_scripted",
                       "summary_index": 0, "delta": thinking}),
            ));
            evs.push(ev(
                "response.output_item.done",
                json!({"output_index": index, "item": item}),
            ));
            output.push(item);
        }
        if let Some(text) = &self.text {
            let index = output.len();
            let item = json!({"type": "message", "id": "msg_scripted", "role": "assistant",
                              "status": "completed", "content": [
                                  {"type": "output_text", "text": text, "annotations": []}]});
            evs.push(ev(
                "response.output_item.added",
                json!({"output_index": index,
                       "item": {"type": "message", "id": "msg_scripted", "role": "assistant",
                                "status": "in_progress", "content": []}}),
            ));
            for piece in self.text_pieces() {
                evs.push(ev(
                    "response.output_text.delta",
                    json!({"output_index": index, "item_id": "msg_scripted",
                           "content_index": 0, "delta": piece}),
                ));
            }
            evs.push(ev(
                "response.output_item.done",
                json!({"output_index": index, "item": item}),
            ));
            output.push(item);
        }
        for (n, call) in self.calls.iter().enumerate() {
            let index = output.len();
            let item_id = format!("fc_{}", call.id);
            evs.push(ev(
                "response.output_item.added",
                json!({"output_index": index,
                       "item": {"type": "function_call", "id": item_id, "call_id": call.id,
                                "name": call.name, "arguments": "", "status": "in_progress"}}),
            ));
            let (a, b) = halves(&call.arguments);
            for (k, part) in [a, b].into_iter().enumerate() {
                let mut delta = ev(
                    "response.function_call_arguments.delta",
                    json!({"output_index": index, "item_id": item_id, "delta": part}),
                );
                delta.first_args = n == 0 && k == 0;
                evs.push(delta);
            }
            evs.push(ev(
                "response.function_call_arguments.done",
                json!({"output_index": index, "item_id": item_id,
                       "arguments": call.arguments}),
            ));
            let item = json!({"type": "function_call", "id": item_id, "call_id": call.id,
                              "name": call.name, "arguments": call.arguments,
                              "status": "completed"});
            evs.push(ev(
                "response.output_item.done",
                json!({"output_index": index, "item": item}),
            ));
            output.push(item);
        }
        evs.push(ev(
            "response.completed",
            json!({"response": {"id": "resp_scripted", "status": "completed", "output": output,
                   "usage": {"input_tokens": self.input_tokens,
                             "output_tokens": self.output_tokens,
                             "total_tokens": self.input_tokens + self.output_tokens}}}),
        ));
        evs
    }

    fn gemini(&self) -> Vec<WireEvent> {
        let chunk = |parts: Value, finish: Option<&str>, usage: bool| {
            let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
            if let (Some(f), Some(obj)) = (finish, candidate.as_object_mut()) {
                obj.insert("finishReason".into(), json!(f));
            }
            let mut chunk = json!({"candidates": [candidate], "modelVersion": "scripted"});
            if let (true, Some(obj)) = (usage, chunk.as_object_mut()) {
                obj.insert(
                    "usageMetadata".into(),
                    json!({"promptTokenCount": self.input_tokens,
                           "candidatesTokenCount": self.output_tokens,
                           "totalTokenCount": self.input_tokens + self.output_tokens}),
                );
            }
            WireEvent::data(chunk)
        };
        let mut evs = Vec::new();
        if let Some(thinking) = &self.thinking {
            evs.push(chunk(
                json!([{"text": thinking, "thought": true}]),
                None,
                false,
            ));
        }
        for piece in self.text_pieces() {
            evs.push(chunk(json!([{"text": piece}]), None, false));
        }
        // Gemini sends each call whole; the cut for a disconnect falls after the
        // first call's chunk.
        for (n, call) in self.calls.iter().enumerate() {
            let args: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
            let mut ev = chunk(
                json!([{"functionCall": {"id": call.id, "name": call.name, "args": args}}]),
                None,
                false,
            );
            ev.first_args = n == 0;
            evs.push(ev);
        }
        evs.push(chunk(json!([{"text": ""}]), Some("STOP"), true));
        evs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_calls() -> Turn {
        Turn::new()
            .thinking("plan")
            .text("Looking.")
            .call("c1", "Read", r#"{"path":"a.txt"}"#)
            .call("c2", "Grep", r#"{"pattern":"fn main"}"#)
    }

    #[test]
    fn every_scheme_frames_valid_sse_with_json_data() {
        for family in Family::ALL {
            let body = String::from_utf8(two_calls().sse(family)).unwrap();
            assert!(body.ends_with("\n\n"), "{family:?}");
            for block in body.split("\n\n").filter(|b| !b.is_empty()) {
                let data = block
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap_or_else(|| panic!("{family:?}: block without data: {block}"));
                if data != "[DONE]" {
                    serde_json::from_str::<Value>(data)
                        .unwrap_or_else(|e| panic!("{family:?}: {e}: {data}"));
                }
            }
        }
    }

    #[test]
    fn cut_in_call_is_a_strict_prefix_ending_inside_the_first_call() {
        for family in Family::ALL {
            let turn = two_calls();
            let whole = turn.sse(family);
            let cut = turn.sse_cut_in_call(family);
            assert!(cut.len() < whole.len(), "{family:?}");
            assert!(whole.starts_with(&cut), "{family:?}");
            let cut = String::from_utf8(cut).unwrap();
            assert!(cut.contains("c1"), "{family:?}: the first call has started");
            assert!(!cut.contains("\"c2\""), "{family:?}: the second has not");
        }
    }

    #[test]
    fn text_in_pieces_keeps_the_text() {
        let turn = Turn::new().text("héllo wörld, long enough").in_pieces(7);
        let pieces = turn.text_pieces();
        assert_eq!(pieces.len(), 7);
        assert_eq!(pieces.concat(), "héllo wörld, long enough");
        for family in Family::ALL {
            let body = String::from_utf8(turn.sse(family)).unwrap();
            if family == Family::OpenaiResponses {
                // The completed item repeats the whole text; count the deltas.
                assert_eq!(body.matches("\"response.output_text.delta\"").count(), 7);
            } else {
                assert!(body.matches("wörld").count() <= 1, "{family:?}");
            }
        }
    }

    #[test]
    fn arguments_are_split_into_two_fragments() {
        let (a, b) = halves(r#"{"path":"é"}"#);
        assert!(!a.is_empty() && !b.is_empty());
        assert_eq!(format!("{a}{b}"), r#"{"path":"é"}"#);
    }
}
