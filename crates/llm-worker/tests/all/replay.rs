//! Every recorded provider stream, replayed as its real wire bytes by the fake
//! provider over TCP (in small slices) through the real `ProviderClient`, must
//! give exactly what decoding the same bytes in-process gives. The per-scheme test
//! files assert what each recording must decode to; this file proves the network
//! path changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use llm_worker::llm_client::anthropic::Anthropic;
use llm_worker::llm_client::error::ClientError;
use llm_worker::llm_client::gemini::Gemini;
use llm_worker::llm_client::http::{ClientConfig, LlmClient, ProviderClient};
use llm_worker::llm_client::openai_chat::OpenaiChat;
use llm_worker::llm_client::openai_responses::OpenaiResponses;
use llm_worker::llm_client::request::LlmRequest;
use llm_worker::llm_client::scheme::WireScheme;
use llm_worker::llm_client::sse::SseParser;
use llm_worker::llm_client::stream::{Assembler, Completion, Flow, StreamEvent};
use llm_worker::llm_client::types::{Item, Role};
use test_support::Family;
use test_support::fake_provider::{FakeProvider, Scripted};
use tokio_util::sync::CancellationToken;

fn schemes() -> Vec<(Family, Arc<dyn WireScheme>, &'static str)> {
    vec![
        (Family::Anthropic, Arc::new(Anthropic), "/v1/messages"),
        (
            Family::OpenaiChat,
            Arc::new(OpenaiChat),
            "/v1/chat/completions",
        ),
        (
            Family::Gemini,
            Arc::new(Gemini),
            "/v1/models/m:streamGenerateContent?alt=sse",
        ),
        (
            Family::OpenaiResponses,
            Arc::new(OpenaiResponses),
            "/v1/responses",
        ),
    ]
}

/// In-process decoding with the transport's rules: events after `Done` are
/// ignored, `finish` runs at the end.
fn decode_in_process(scheme: &dyn WireScheme, body: &[u8]) -> Result<Completion, ClientError> {
    let mut parser = SseParser::new();
    let mut decoder = scheme.decoder();
    let mut asm = Assembler::new(scheme.family());
    let mut events = Vec::new();
    parser.push(body, &mut events);
    parser.finish(&mut events);
    for ev in &events {
        if decoder.feed(ev, &mut asm)? == Flow::Done {
            break;
        }
    }
    decoder.finish(&mut asm)?;
    Ok(asm.completion())
}

#[tokio::test]
async fn every_fixture_replays_over_tcp_like_in_process() {
    let server = FakeProvider::start().await;
    let mut replayed = 0;
    for (family, scheme, path) in schemes() {
        let client = ProviderClient::new(
            Arc::clone(&scheme),
            ClientConfig::for_base_url(server.base_url(), None, Some(10)),
        );
        for fixture in test_support::fixtures_of(family).unwrap() {
            let body = fixture.wire_body().unwrap();
            let want = decode_in_process(scheme.as_ref(), &body);
            server.push(Scripted::sse_chunked(body, 7, Duration::ZERO));
            let request = LlmRequest::new("m", vec![Item::text(Role::User, "hi")]);
            let mut streamed = Vec::new();
            let got = tokio::time::timeout(
                Duration::from_secs(30),
                client.stream(
                    &request,
                    &CancellationToken::new(),
                    &mut |e: StreamEvent| streamed.push(e),
                ),
            )
            .await
            .expect("replay timed out");
            match (&want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g, "{}", fixture.name),
                (Err(w), Err(g)) => assert_eq!(w, &g.error, "{}", fixture.name),
                _ => panic!("{}: in-process {want:?} but over TCP {got:?}", fixture.name),
            }
            let last = server.requests().pop().unwrap();
            assert_eq!(last.path, path, "{}", fixture.name);
            replayed += 1;
        }
    }
    assert!(replayed >= 55, "only {replayed} fixtures replayed");
}
