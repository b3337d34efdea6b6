//! One method to one pod, without a session: connect, send, read until the
//! answer (`ack`, `error`, `approvals`), each step bounded. What pods say to
//! each other (a child's reports to its parent, approvals passed along the
//! tree) goes this way.

use std::path::Path;
use std::time::Duration;

use protocol::stream::{JsonLineReader, JsonLineWriter};
use protocol::{Event, Method};
use tokio::net::UnixStream;

use crate::client::MAX_EVENT_LINE;

/// Why an exchange got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Connecting took longer than the step.
    #[error("connecting timed out")]
    ConnectTimedOut,
    /// Connecting failed.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// Writing took longer than the step.
    #[error("writing timed out")]
    WriteTimedOut,
    /// Writing failed.
    #[error("cannot write: {0}")]
    Write(std::io::Error),
    /// No answer within the step.
    #[error("no answer in time")]
    NoAnswer,
    /// Reading failed.
    #[error("cannot read the answer: {0}")]
    Read(std::io::Error),
    /// The pod closed the connection before answering.
    #[error("the pod closed the connection")]
    Closed,
}

/// Sends `method` to the pod at `socket` and returns its answer: `ack`,
/// `error` or `approvals` (what the pod sends every connection first is
/// skipped). Each step (connect, write, each event read) is bounded by `step`.
pub async fn exchange(
    socket: &Path,
    method: &Method,
    step: Duration,
) -> Result<Event, ExchangeError> {
    let stream = tokio::time::timeout(step, UnixStream::connect(socket))
        .await
        .map_err(|_| ExchangeError::ConnectTimedOut)?
        .map_err(ExchangeError::Connect)?;
    let (r, w) = stream.into_split();
    let mut reader = JsonLineReader::with_max_line_len(r, MAX_EVENT_LINE);
    let mut writer = JsonLineWriter::new(w);
    tokio::time::timeout(step, writer.write(method))
        .await
        .map_err(|_| ExchangeError::WriteTimedOut)?
        .map_err(ExchangeError::Write)?;
    loop {
        let event = tokio::time::timeout(step, reader.next::<Event>())
            .await
            .map_err(|_| ExchangeError::NoAnswer)?
            .map_err(ExchangeError::Read)?;
        match event {
            Some(e @ (Event::Ack { .. } | Event::Error { .. } | Event::Approvals { .. })) => {
                return Ok(e);
            }
            Some(_) => {}
            None => return Err(ExchangeError::Closed),
        }
    }
}
