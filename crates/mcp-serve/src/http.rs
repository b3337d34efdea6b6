//! `pod mcp serve --http`: Streamable HTTP on a loopback port. Any local user
//! can reach a TCP port, so every request must carry the bearer token, and a
//! request from a web page (an `Origin` other than this server's own) is
//! refused; rmcp checks the `Host` header (DNS rebinding).

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::fleet::Fleet;
use crate::handler::PodsServer;

/// The environment variable that gives the token instead of a fresh one.
pub(crate) const TOKEN_VAR: &str = "POD_MCP_TOKEN";

/// The shortest token taken from the environment.
const MIN_TOKEN: usize = 16;

/// Connections served at once (a local user without the token could
/// otherwise hold file descriptors until the server has none).
const MAX_CONNECTIONS: usize = 64;

/// How long a connection may take to send a request's headers.
const HEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A fresh token: 32 hex digits from the kernel's random source.
fn fresh_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equal without returning early at the first difference (a timing probe
/// learns nothing of the token).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type Body = BoxBody<Bytes, Infallible>;

fn refuse(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_string())).boxed());
    *response.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// Why a request may not reach the MCP service, if it may not.
fn gate<B>(request: &Request<B>, token: &str, port: u16) -> Option<Response<Body>> {
    if let Some(origin) = request.headers().get(hyper::header::ORIGIN) {
        let own = [
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
            format!("http://[::1]:{port}"),
        ];
        if !own.iter().any(|o| origin.as_bytes() == o.as_bytes()) {
            return Some(refuse(
                StatusCode::FORBIDDEN,
                "Forbidden: requests from web pages (another Origin) are refused",
            ));
        }
    }
    let given = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match given {
        Some(given) if same(given.as_bytes(), token.as_bytes()) => None,
        Some(_) => Some(refuse(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: wrong bearer token",
        )),
        None => Some(refuse(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: send `Authorization: Bearer TOKEN` (the token `pod mcp serve` printed, or POD_MCP_TOKEN)",
        )),
    }
}

/// Serves MCP over Streamable HTTP at `addr` until SIGINT or SIGTERM.
pub(crate) async fn serve(addr: SocketAddr, fleet: Arc<Fleet>) -> anyhow::Result<()> {
    let (token, from_env) = match std::env::var(TOKEN_VAR) {
        Ok(t) if !t.trim().is_empty() => (t.trim().to_string(), true),
        _ => (fresh_token()?, false),
    };
    if token.len() < MIN_TOKEN {
        anyhow::bail!(
            "{TOKEN_VAR} is {} characters long; give at least {MIN_TOKEN} (or unset it for a fresh one)",
            token.len()
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let config =
        StreamableHttpServerConfig::default().with_cancellation_token(cancel.child_token());
    let service = StreamableHttpService::new(
        move || Ok(PodsServer::new(Arc::clone(&fleet))),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    // The URL (and a generated token) on stdout, for a person or a script to
    // pick up; the rest of what the server says goes to stderr. A reader that
    // took the URL and closed the pipe must not bring the server down.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "url: http://{local}/mcp");
    let _ = if from_env {
        writeln!(out, "token: (from {TOKEN_VAR})")
    } else {
        writeln!(out, "token: {token}")
    };
    let _ = out.flush();
    eprintln!("pod mcp serve: serving Streamable HTTP on http://{local}/mcp");
    let token = Arc::new(token);
    let port = local.port();
    let stop = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            crate::wait_for_signal().await;
            cancel.cancel();
        }
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = cancel.cancelled() => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = cancel.cancelled() => break,
        };
        let service = service.clone();
        let token = Arc::clone(&token);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let handler = hyper::service::service_fn(move |request: Request<Incoming>| {
                let service = service.clone();
                let token = Arc::clone(&token);
                async move {
                    if let Some(refused) = gate(&request, &token, port) {
                        return Ok::<_, Infallible>(refused);
                    }
                    Ok(service.handle(request).await)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_WAIT)
                .serve_connection(TokioIo::new(stream), handler);
            tokio::select! {
                _ = connection => {}
                () = cancel.cancelled() => {}
            }
        });
    }
    stop.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: Option<&str>, auth: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri("http://127.0.0.1:9/mcp");
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_gate_wants_the_token_and_no_foreign_origin() {
        assert!(gate(&request(None, Some("Bearer t0k")), "t0k", 9).is_none());
        assert!(gate(&request(None, Some("bearer t0k")), "t0k", 9).is_none());
        assert!(
            gate(
                &request(Some("http://127.0.0.1:9"), Some("Bearer t0k")),
                "t0k",
                9
            )
            .is_none()
        );
        let r = gate(&request(None, None), "t0k", 9).unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = gate(&request(None, Some("Bearer t0x")), "t0k", 9).unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = gate(&request(None, Some("Bearer t0k2")), "t0k", 9).unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = gate(
            &request(Some("https://evil.example"), Some("Bearer t0k")),
            "t0k",
            9,
        )
        .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = gate(
            &request(Some("http://127.0.0.1:10"), Some("Bearer t0k")),
            "t0k",
            9,
        )
        .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn fresh_tokens_differ() {
        let a = fresh_token().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, fresh_token().unwrap());
    }
}
