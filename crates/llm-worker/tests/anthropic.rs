#![allow(clippy::unwrap_used, clippy::expect_used)]

use llm_types::ProviderFamily;
use llm_worker::llm_client::anthropic::Anthropic;
use llm_worker::llm_client::error::ClientError;
use llm_worker::llm_client::scheme::WireScheme;
use llm_worker::llm_client::sse::SseParser;
use llm_worker::llm_client::stream::{Assembler, Completion, Flow};
use test_support::{Family, fixture, fixtures_of};

/// Feeds `bytes` in slices of the sizes `cuts` gives through the SSE parser, the
/// decoder and an assembler.
fn decode_sliced(bytes: &[u8], slices: &[&[u8]]) -> Result<Completion, ClientError> {
    let _ = bytes;
    let mut parser = SseParser::new();
    let mut dec = Anthropic.decoder();
    let mut asm = Assembler::new(ProviderFamily::Anthropic);
    let mut events = Vec::new();
    let mut done = false;
    for s in slices {
        parser.push(s, &mut events);
        for ev in events.drain(..) {
            if !done && dec.feed(&ev, &mut asm)? == Flow::Done {
                done = true;
            }
        }
    }
    parser.finish(&mut events);
    for ev in events.drain(..) {
        if !done && dec.feed(&ev, &mut asm)? == Flow::Done {
            done = true;
        }
    }
    dec.finish(&mut asm)?;
    Ok(asm.completion())
}

fn decode(bytes: &[u8]) -> Result<Completion, ClientError> {
    decode_sliced(bytes, &[bytes])
}

fn body(name: &str) -> Vec<u8> {
    fixture(Family::Anthropic, name)
        .unwrap()
        .wire_body()
        .unwrap()
}

#[test]
fn dump_all() {
    for f in fixtures_of(Family::Anthropic).unwrap() {
        let c = decode(&f.wire_body().unwrap());
        println!("== {}\n{c:#?}", f.name);
    }
    let _ = body;
}
