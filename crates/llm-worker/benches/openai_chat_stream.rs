//! OpenAI Chat stream decoding throughput: a 100k-delta response built from the
//! real content-delta lines of `openai-gpt4o-text.sse`, fed in 4 KiB slices
//! through `SseParser` + the OpenAI Chat decoder + `Assembler` (events drained as
//! a client would), reported in deltas per second.

#![forbid(unsafe_code)]
// Benchmark code: a panic is the failure report. Built as a libtest target
// (no `[[bench]]` stanza) the criterion `main` is unused.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(dead_code))]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use llm_types::ProviderFamily;
use llm_worker::llm_client::openai_chat::OpenaiChat;
use llm_worker::llm_client::scheme::WireScheme;
use llm_worker::llm_client::sse::SseParser;
use llm_worker::llm_client::stream::{Assembler, Flow, StreamEvent};
use test_support::{Family, fixture};

/// Deltas in the benchmarked stream.
pub(crate) const DELTAS: usize = 100_000;

/// The recorded `data:` lines carrying non-empty `delta.content`, each with the
/// length of its text.
pub(crate) fn content_deltas() -> Vec<(String, usize)> {
    let body = fixture(Family::OpenaiChat, "openai-gpt4o-text.sse")
        .unwrap()
        .wire_body()
        .unwrap();
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .filter_map(|l| {
            let data = l.strip_prefix("data: ")?;
            let v: serde_json::Value = serde_json::from_str(data).ok()?;
            let content = v["choices"][0]["delta"]["content"].as_str()?;
            (!content.is_empty()).then(|| (l.to_string(), content.len()))
        })
        .collect()
}

/// A stream of `n` recorded content deltas (repeated), then a finish chunk, a
/// usage chunk and `[DONE]`.
pub(crate) fn build_stream(n: usize) -> Vec<u8> {
    let lines = content_deltas();
    let mut out = String::with_capacity(n * 240);
    for i in 0..n {
        out.push_str(&lines[i % lines.len()].0);
        out.push_str("\n\n");
    }
    out.push_str(
        "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1,\
         \"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{},\
         \"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    );
    out.push_str(
        "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1,\
         \"model\":\"gpt-4o-2024-08-06\",\"choices\":[],\"usage\":{\"prompt_tokens\":14,\
         \"completion_tokens\":100000,\"total_tokens\":100014}}\n\n",
    );
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

/// Parses, decodes and assembles `body` fed in `slice`-byte pieces, draining
/// events; returns the number of text deltas and the final text length.
pub(crate) fn decode_body(body: &[u8], slice: usize) -> (usize, usize) {
    let mut parser = SseParser::new();
    let mut dec = OpenaiChat.decoder();
    let mut asm = Assembler::new(ProviderFamily::OpenaiChat);
    let mut events = Vec::new();
    let mut deltas = 0usize;
    let mut done = false;
    for piece in body.chunks(slice) {
        parser.push(piece, &mut events);
        for ev in events.drain(..) {
            if dec.feed(&ev, &mut asm).unwrap() == Flow::Done {
                done = true;
            }
        }
        for e in asm.drain_events() {
            if matches!(e, StreamEvent::TextDelta { .. }) {
                deltas += 1;
            }
        }
        if done {
            break;
        }
    }
    if !done {
        dec.finish(&mut asm).unwrap();
    }
    let completion = asm.completion();
    let len = completion
        .items
        .first()
        .map(|i| i.message_text().len())
        .unwrap_or(0);
    (deltas, len)
}

fn stream(c: &mut Criterion) {
    let body = build_stream(DELTAS);
    let mut group = c.benchmark_group("openai_chat_stream");
    group.throughput(Throughput::Elements(DELTAS as u64));
    group.sample_size(10);
    group.bench_function("decode_100k_deltas_4k_slices", |b| {
        b.iter(|| black_box(decode_body(black_box(&body), 4096)))
    });
    group.finish();
}

criterion_group!(benches, stream);
criterion_main!(benches);
