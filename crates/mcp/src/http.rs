//! Streamable HTTP for `[[mcp]]` entries with a `url`: rmcp's transport over
//! the reqwest (rustls, webpki roots) that pods already links for its
//! providers. rmcp's own reqwest client is for another reqwest major version;
//! this is the small part of HTTP the transport asks of a client: POST a
//! message (the answer is JSON, an SSE stream, or "accepted"), GET the
//! server's stream, DELETE the session.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Sse, SseStream};

/// The session header of Streamable HTTP.
const SESSION: &str = "mcp-session-id";
/// What a client accepts from a POST.
const ACCEPTS: &str = "application/json, text/event-stream";
/// How much of an error body is kept for the message.
const ERROR_BODY: usize = 2048;
/// The largest JSON answer, and the largest event of an SSE stream, read.
const MAX_JSON: usize = 16 << 20;

/// An HTTP client for rmcp's Streamable HTTP transport.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient(reqwest::Client);

impl HttpClient {
    /// A client that follows no redirects (a redirect must not carry the
    /// server's headers, which hold its token, to another host).
    pub(crate) fn new() -> Result<HttpClient, reqwest::Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map(HttpClient)
    }
}

type Error = StreamableHttpError<reqwest::Error>;

fn with_headers(
    mut request: reqwest::RequestBuilder,
    session: Option<&str>,
    auth: Option<String>,
    headers: HashMap<HeaderName, HeaderValue>,
) -> reqwest::RequestBuilder {
    if let Some(session) = session {
        request = request.header(SESSION, session);
    }
    if let Some(token) = auth {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request
}

/// The media type of a response, lower-cased, without parameters.
fn media_type(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// Up to `max` bytes of the body.
async fn body_prefix(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(StreamableHttpError::Client)?
    {
        let room = max.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= max {
            break;
        }
    }
    Ok(body)
}

/// The whole body, refused past `max` bytes (a cut JSON would only fail to
/// parse, saying nothing of why).
async fn whole_body(response: reqwest::Response, max: usize) -> Result<Vec<u8>, Error> {
    let body = body_prefix(response, max + 1).await?;
    if body.len() > max {
        return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
            format!("the server's answer is larger than {} MiB", max >> 20),
        )));
    }
    Ok(body)
}

/// Where the last event of `chunk` ends (after its blank line), if one does.
fn last_event_end(chunk: &[u8]) -> Option<usize> {
    (1..chunk.len())
        .rev()
        .find(|&i| {
            chunk[i] == b'\n' && (chunk[i - 1] == b'\n' || (i >= 2 && chunk[i - 2..i] == *b"\n\r"))
        })
        .map(|i| i + 1)
}

/// A failed response as an error that says what the server said.
async fn refused(response: reqwest::Response) -> Error {
    let status = response.status();
    let said = body_prefix(response, ERROR_BODY).await.unwrap_or_default();
    let said = String::from_utf8_lossy(&said);
    let said = said.trim();
    StreamableHttpError::UnexpectedServerResponse(Cow::Owned(if said.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {said}")
    }))
}

/// The response's body as a stream of SSE events; an event larger than
/// [`MAX_JSON`] ends it with an error (a server must not make the pod hold an
/// endless event in memory).
fn events(response: reqwest::Response) -> BoxStream<'static, Result<Sse, SseError>> {
    let chunks = futures::stream::unfold(
        (response, 0usize, false),
        |(mut response, pending, done)| async move {
            if done {
                return None;
            }
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let pending = match last_event_end(&chunk) {
                        Some(end) => chunk.len() - end,
                        None => pending + chunk.len(),
                    };
                    if pending > MAX_JSON {
                        let e = std::io::Error::other(format!(
                            "an event of the server's stream is larger than {} MiB",
                            MAX_JSON >> 20
                        ));
                        return Some((Err(e), (response, pending, true)));
                    }
                    Some((Ok(chunk), (response, pending, false)))
                }
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e)), (response, pending, true))),
            }
        },
    );
    SseStream::from_bytes_stream(chunks).boxed()
}

impl StreamableHttpClient for HttpClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let request = self.0.post(uri.as_ref()).header(ACCEPT, ACCEPTS);
        let request = with_headers(request, session_id.as_deref(), auth_header, custom_headers);
        let body = serde_json::to_vec(&message)?;
        let response = request
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(StreamableHttpError::Client)?;
        let status = response.status();
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        let session = response
            .headers()
            .get(SESSION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let media = media_type(&response);
        if !status.is_success() {
            // A JSON-RPC error in a failed response is the server's answer.
            if media.as_deref() == Some("application/json") {
                let body = whole_body(response, MAX_JSON).await?;
                if let Ok(message) = serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                    return Ok(StreamableHttpPostResponse::Json(message, session));
                }
                let said = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY)]);
                return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                    format!("HTTP {status}: {}", said.trim()),
                )));
            }
            return Err(refused(response).await);
        }
        match media.as_deref() {
            Some("text/event-stream") => {
                Ok(StreamableHttpPostResponse::Sse(events(response), session))
            }
            Some("application/json") => {
                let body = whole_body(response, MAX_JSON).await?;
                if body.is_empty() && !matches!(message, ClientJsonRpcMessage::Request(_)) {
                    return Ok(StreamableHttpPostResponse::Accepted);
                }
                let message = serde_json::from_slice(&body)?;
                Ok(StreamableHttpPostResponse::Json(message, session))
            }
            // Some servers answer a notification with an empty 200.
            _ if !matches!(message, ClientJsonRpcMessage::Request(_)) => {
                Ok(StreamableHttpPostResponse::Accepted)
            }
            other => Err(StreamableHttpError::UnexpectedContentType(
                other.map(str::to_string),
            )),
        }
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        let request = self.0.delete(uri.as_ref());
        let request = with_headers(request, Some(&session_id), auth_header, custom_headers);
        let response = request.send().await.map_err(StreamableHttpError::Client)?;
        let status = response.status();
        if status.is_success() || status == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(());
        }
        Err(refused(response).await)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let mut request = self.0.get(uri.as_ref()).header(ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let request = with_headers(request, session_id.as_deref(), auth_header, custom_headers);
        let response = request.send().await.map_err(StreamableHttpError::Client)?;
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if !status.is_success() {
            return Err(refused(response).await);
        }
        match media_type(&response).as_deref() {
            Some("text/event-stream") => Ok(events(response)),
            other => Err(StreamableHttpError::UnexpectedContentType(
                other.map(str::to_string),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::last_event_end;

    #[test]
    fn event_ends_are_found_with_either_line_ending() {
        assert_eq!(last_event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(last_event_end(b"data: a\r\n\r\nda"), Some(11));
        assert_eq!(last_event_end(b"data: a\ndata: b\n"), None);
        assert_eq!(last_event_end(b""), None);
    }
}
