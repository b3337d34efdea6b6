//! Helpers shared by the per-scheme test files.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use llm_worker::llm_client::http::{ClientConfig, LlmClient, ProviderClient};
use llm_worker::llm_client::request::LlmRequest;
use llm_worker::llm_client::scheme::WireScheme;
use test_support::fake_provider::{FakeProvider, RecordedRequest, Scripted};
use tokio_util::sync::CancellationToken;

/// Sends `request` through the real client to the fake provider and returns
/// the request as the server received it (so shape tests assert on what went
/// over the wire, not on what the builder returned in-process).
pub(crate) async fn recorded_request(
    scheme: Arc<dyn WireScheme>,
    request: &LlmRequest,
) -> RecordedRequest {
    let server = FakeProvider::start().await;
    // Any answer will do: only the request matters here.
    server.push(Scripted::status(400, "shape test"));
    let client = ProviderClient::new(
        scheme,
        ClientConfig::for_base_url(server.base_url(), Some("test-key".into()), Some(10)),
    );
    let sent = tokio::time::timeout(
        Duration::from_secs(20),
        client.stream(request, &CancellationToken::new(), &mut |_| {}),
    )
    .await
    .expect("the request must be answered");
    assert!(sent.is_err(), "the fake answered 400");
    let mut requests = server.requests();
    assert_eq!(requests.len(), 1, "one request, no retry of a 400");
    let request = requests.remove(0);
    // The 400 must be the scripted one: a body the real API would refuse is a
    // client bug even when its shape is what the test expects.
    assert_eq!(
        request.rejected, None,
        "the real API would refuse this request body"
    );
    request
}
