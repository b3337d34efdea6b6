//! `sse-*`: provider response bodies through [`SseParser`], the scheme's
//! stream decoder and the [`Assembler`], exactly as the HTTP client drives them
//! (`ProviderClient::read_stream`: feed each chunk, stop at `Done` or the
//! first error, otherwise `finish` the parser, then the decoder, then take the
//! completion, which is also the partial result of a failed call).
//!
//! Seeds are every recorded stream of the family (`test_support::fixture`),
//! a scripted turn with thinking, text and parallel calls (whole and cut in a
//! call), and one recording of each other family (a wrong provider).
//!
//! Invariants: nothing panics; the outcome is a completion or a typed
//! `ClientError`; and slicing does not matter: the body fed whole and the body
//! fed in random pieces (single bytes, cuts between `\r` and `\n`, cuts inside
//! UTF-8 characters) give the same SSE events and the same outcome, stream
//! events and completion, as the parser promises "whatever the slicing".

use llm_worker::llm_client::anthropic::Anthropic;
use llm_worker::llm_client::error::ClientError;
use llm_worker::llm_client::gemini::Gemini;
use llm_worker::llm_client::openai_chat::OpenaiChat;
use llm_worker::llm_client::openai_responses::OpenaiResponses;
use llm_worker::llm_client::scheme::WireScheme;
use llm_worker::llm_client::sse::{SseEvent, SseParser};
use llm_worker::llm_client::stream::{Assembler, Completion, Flow, StreamDecoder, StreamEvent};
use test_support::script::Turn;
use test_support::{Family, fixtures_of};

use crate::driver::{Feedback, Harness};
use crate::error::FuzzError;
use crate::mutate::mutate_json_line;
use crate::rng::{Rng, fnv1a};
use crate::targets::{read_size, shorten, variant_name};

/// Builds the OpenAI Chat harness.
pub(super) fn build_openai_chat() -> Result<Box<dyn Harness>, FuzzError> {
    Ok(Box::new(Sse::new(
        "sse-openai-chat",
        Family::OpenaiChat,
        Box::new(OpenaiChat),
    )))
}

/// Builds the OpenAI Responses harness.
pub(super) fn build_openai_responses() -> Result<Box<dyn Harness>, FuzzError> {
    Ok(Box::new(Sse::new(
        "sse-openai-responses",
        Family::OpenaiResponses,
        Box::new(OpenaiResponses),
    )))
}

/// Builds the Anthropic harness.
pub(super) fn build_anthropic() -> Result<Box<dyn Harness>, FuzzError> {
    Ok(Box::new(Sse::new(
        "sse-anthropic",
        Family::Anthropic,
        Box::new(Anthropic),
    )))
}

/// Builds the Gemini harness.
pub(super) fn build_gemini() -> Result<Box<dyn Harness>, FuzzError> {
    Ok(Box::new(Sse::new(
        "sse-gemini",
        Family::Gemini,
        Box::new(Gemini),
    )))
}

struct Sse {
    name: &'static str,
    family: Family,
    scheme: Box<dyn WireScheme>,
}

impl Sse {
    fn new(name: &'static str, family: Family, scheme: Box<dyn WireScheme>) -> Self {
        Sse {
            name,
            family,
            scheme,
        }
    }
}

/// Everything observable of one decoded response.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// `Ok` when the stream ended in a complete response.
    result: Result<(), ClientError>,
    /// The completion (the partial result when `result` is an error).
    completion: Completion,
    /// The stream events a client would have been shown.
    events: Vec<StreamEvent>,
}

impl Harness for Sse {
    fn seeds(&mut self) -> Result<Vec<Vec<u8>>, FuzzError> {
        let fixture_error =
            |e: test_support::FixtureError| FuzzError::setup(self.name, e.to_string());
        let mut seeds = Vec::new();
        for fixture in fixtures_of(self.family).map_err(fixture_error)? {
            seeds.push(fixture.wire_body().map_err(fixture_error)?);
        }
        if seeds.is_empty() {
            return Err(FuzzError::setup(
                self.name,
                "no recorded streams for this family",
            ));
        }
        let turn = Turn::new()
            .thinking("Look at both files first.")
            .text("Reading them — ünïcödé 🌍.")
            .call("call_1", "Read", r#"{"path":"src/lib.rs"}"#)
            .call("call_2", "Grep", r#"{"pattern":"fn main","path":"."}"#)
            .usage(120, 45);
        seeds.push(turn.sse(self.family));
        seeds.push(turn.sse_cut_in_call(self.family));
        for other in Family::ALL {
            if other != self.family
                && let Some(first) = fixtures_of(other).map_err(fixture_error)?.first()
            {
                seeds.push(first.wire_body().map_err(fixture_error)?);
            }
        }
        Ok(seeds)
    }

    fn check(&mut self, input: &[u8]) -> Result<Feedback, FuzzError> {
        let mut rng = Rng::new(fnv1a(input));
        let pieces = slice(input, &mut rng);

        let whole_events = parse(&[input]);
        let sliced_events = parse(&pieces);
        if whole_events != sliced_events {
            let at = whole_events
                .iter()
                .zip(&sliced_events)
                .position(|(a, b)| a != b)
                .unwrap_or(whole_events.len().min(sliced_events.len()));
            panic!(
                "SseParser gives other events when the body is sliced: event {at} whole {}, \
                 sliced {} ({} vs {} events, {} pieces)",
                shorten(&format!("{:?}", whole_events.get(at)), 200),
                shorten(&format!("{:?}", sliced_events.get(at)), 200),
                whole_events.len(),
                sliced_events.len(),
                pieces.len()
            );
        }

        let whole = drive(self.scheme.as_ref(), &[input]);
        let sliced = drive(self.scheme.as_ref(), &pieces);
        if whole != sliced {
            panic!(
                "the decoded response depends on the slicing: whole {}, sliced {}",
                shorten(&format!("{whole:?}"), 400),
                shorten(&format!("{sliced:?}"), 400)
            );
        }
        Ok(feedback(&whole))
    }

    fn mutate(&mut self, rng: &mut Rng, input: &mut Vec<u8>) -> bool {
        mutate_json_line(rng, input)
    }

    fn max_len(&self) -> usize {
        // The longest recordings are tens of KiB; leave room to grow them.
        512 * 1024
    }
}

/// Cuts `input` into pieces: single bytes (short inputs), random sizes, or
/// right after every `\r` and inside every multi-byte character.
fn slice<'a>(input: &'a [u8], rng: &mut Rng) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    match rng.below(3) {
        0 if input.len() <= 4096 => pieces.extend(input.chunks(1)),
        1 => {
            let mut start = 0;
            for (i, &b) in input.iter().enumerate() {
                // After a `\r` (is a `\n` next?) and after a UTF-8 lead byte.
                if b == b'\r' || b >= 0xc0 {
                    pieces.push(&input[start..=i]);
                    start = i + 1;
                }
            }
            pieces.push(&input[start..]);
        }
        _ => {
            let mut rest = input;
            while !rest.is_empty() {
                let (head, tail) = rest.split_at(read_size(rng).min(rest.len()));
                pieces.push(head);
                rest = tail;
            }
        }
    }
    pieces
}

/// The SSE events of a body fed in `pieces`, the final event included.
fn parse(pieces: &[&[u8]]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    for piece in pieces {
        parser.push(piece, &mut events);
    }
    parser.finish(&mut events);
    events
}

/// Drives a body fed in `pieces` as `ProviderClient::read_stream` does.
fn drive(scheme: &dyn WireScheme, pieces: &[&[u8]]) -> Outcome {
    let mut asm = Assembler::new(scheme.family());
    let mut decoder = scheme.decoder();
    let mut parser = SseParser::new();
    let mut sse = Vec::new();
    let mut shown = Vec::new();
    let mut failed = None;
    let mut done = false;
    for piece in pieces {
        parser.push(piece, &mut sse);
        match dispatch(&mut sse, decoder.as_mut(), &mut asm, &mut shown) {
            Err(e) => {
                failed = Some(e);
                break;
            }
            Ok(Flow::Done) => {
                done = true;
                break;
            }
            Ok(Flow::Continue) => {}
        }
    }
    if failed.is_none() && !done {
        parser.finish(&mut sse);
        if let Err(e) = dispatch(&mut sse, decoder.as_mut(), &mut asm, &mut shown) {
            failed = Some(e);
        }
    }
    let result = match failed {
        Some(e) => Err(e),
        None => {
            let finished = decoder.finish(&mut asm);
            shown.extend(asm.drain_events());
            finished
        }
    };
    if let Err(e) = &result {
        // Shown to users and logged: must format.
        let _ = e.to_string();
    }
    Outcome {
        result,
        completion: asm.completion(),
        events: shown,
    }
}

/// Feeds parsed events to the decoder until `Done` or an error (as the client's `dispatch`).
fn dispatch(
    events: &mut Vec<SseEvent>,
    decoder: &mut dyn StreamDecoder,
    asm: &mut Assembler,
    shown: &mut Vec<StreamEvent>,
) -> Result<Flow, ClientError> {
    let mut flow = Flow::Continue;
    for event in events.drain(..) {
        let fed = decoder.feed(&event, asm);
        shown.extend(asm.drain_events());
        match fed {
            Err(e) => return Err(e),
            Ok(Flow::Done) => {
                flow = Flow::Done;
                break;
            }
            Ok(Flow::Continue) => {}
        }
    }
    events.clear();
    Ok(flow)
}

/// What kind of outcome this was: the error, or the kinds of items and events.
fn feedback(outcome: &Outcome) -> Feedback {
    let mut f = match &outcome.result {
        Ok(()) => Feedback::of(&format!("ok {:?}", outcome.completion.stop)),
        // Debug, not Display: the message may start with the provider's words.
        Err(e) => Feedback::of(&format!("error {e:?}")),
    };
    for item in &outcome.completion.items {
        f = f.and(Feedback::of(variant_name(&format!("{item:?}"))));
    }
    let mut kinds: Vec<String> = outcome
        .events
        .iter()
        .map(|e| variant_name(&format!("{e:?}")).to_owned())
        .collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        f = f.and(Feedback::of(&kind));
    }
    f
}
