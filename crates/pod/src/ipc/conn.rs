//! One client connection: a reader that decodes methods and hands them to the
//! controller, and an independent writer that sends the connection's queue
//! (hello, alerts, snapshot, live events), the answers to its own methods, and
//! — when the client fell behind — the replay of what it missed.
//!
//! The reader never depends on the writer (ARCHITECTURE.md rule 1): a method
//! line fully written is processed even if the client is gone by then, and a
//! huge snapshot being written does not delay reading methods.

use std::sync::Arc;
use std::time::Duration;

use protocol::stream::{JsonLineReader, LineBudget, LineError};
use protocol::{ErrorCode, Event, decode_method};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::inbox::{Command, Input, Peer};
use crate::ipc::hub::{Line, Subscription};
use crate::state::{ReplayStep, SharedState, event_line, lock};

/// The longest method line a pod reads (16 MiB); longer lines are discarded as
/// they stream in and answered with `invalid_request`.
pub(crate) const MAX_METHOD_LINE: usize = 16 * 1024 * 1024;

/// What the unfinished method lines of all of a pod's connections may hold in
/// all (64 MiB): without it, many clients each holding a half line just under
/// [`MAX_METHOD_LINE`] grow the pod without bound. A line that would pass it
/// is answered with `invalid_request` at once and skipped.
pub(crate) const MAX_UNFINISHED_METHODS: usize = 64 * 1024 * 1024;

/// Answers the writer holds before the reader waits (per connection).
const REPLY_QUEUE: usize = 64;

/// Bytes gathered from the queue before they are written.
const WRITE_BATCH: usize = 256 * 1024;

/// How long the writer may take to flush the final answers after the client
/// stopped sending, before the connection is closed anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

fn invalid(message: String) -> Event {
    Event::Error {
        code: ErrorCode::InvalidRequest,
        message,
    }
}

/// Serves a connection until the client closes it (or the pod shuts down).
/// `budget`: the pod's cap on unfinished method lines, shared by all its
/// connections.
pub(crate) async fn serve<R, W>(
    read: R,
    write: W,
    state: SharedState,
    inbox: mpsc::Sender<Input>,
    subscription: Subscription,
    peer: Peer,
    budget: Arc<LineBudget>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (reply_tx, reply_rx) = mpsc::channel::<Line>(REPLY_QUEUE);
    let id = subscription.id;
    let writer_state = state.clone();
    let writer = tokio::spawn(async move {
        write_loop(write, subscription, reply_rx, writer_state.clone()).await;
        lock(&writer_state).writer_done();
    });
    read_loop(read, reply_tx, inbox, (id, peer), budget, &state).await;
    // The client sent its last method: give the writer a moment to deliver the
    // answers, then close.
    let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
    let last_watcher = lock(&state).unsubscribe(id);
    // Requests that waited for this person go up to whoever is attached above.
    let approvals = lock(&state).approvals();
    if last_watcher && let Some(approvals) = approvals {
        approvals.broker.reforward();
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    read: R,
    replies: mpsc::Sender<Line>,
    inbox: mpsc::Sender<Input>,
    (conn, peer): (u64, Peer),
    budget: Arc<LineBudget>,
    state: &SharedState,
) {
    let mut reader = JsonLineReader::with_limits(read, MAX_METHOD_LINE, budget);
    // Set while the pod is assembled, before any connection is accepted.
    let hooks = lock(state).hooks();
    loop {
        let answer = match reader.next_line().await {
            Ok(None) => break,
            Ok(Some(line)) => match decode_method(line) {
                Ok(method) => {
                    // Approvals are answered here: a person's answer never
                    // waits for the controller (the turn waits for it).
                    if let Some(answer) =
                        crate::approvals::answer(state, &method, conn, &peer).await
                    {
                        send_answer(&replies, answer).await;
                        continue;
                    }
                    // The user's `user_prompt` hooks see a `run` first (only
                    // this connection waits for them).
                    let checked = crate::checks::check_prompt(hooks.as_deref(), method).await;
                    let method = match checked {
                        Ok(method) => method,
                        Err(refusal) => {
                            send_answer(&replies, refusal).await;
                            continue;
                        }
                    };
                    let (tx, rx) = oneshot::channel();
                    let command = Command {
                        method,
                        peer,
                        reply: tx,
                    };
                    if inbox.send(Input::Method(command)).await.is_err() {
                        // The controller is gone: the pod is shutting down.
                        break;
                    }
                    rx.await.ok().flatten()
                }
                Err(e) => Some(invalid(e.to_string())),
            },
            Err(e) => match LineError::from_io(&e) {
                Some(LineError::TooLong { limit }) => Some(invalid(format!(
                    "line too long: methods are limited to {limit} bytes; the line was skipped"
                ))),
                Some(LineError::OverBudget { limit }) => Some(invalid(format!(
                    "the pod is holding too many unfinished method lines from its connections \
                     (limit {} MiB in all); this line was discarded: send methods as complete lines",
                    limit / (1024 * 1024)
                ))),
                Some(other) => Some(invalid(other.to_string())),
                // The connection failed (reset): nothing more will arrive.
                None => break,
            },
        };
        if let Some(event) = answer {
            send_answer(&replies, event).await;
        }
    }
}

/// Queues an answer for the connection's writer.
async fn send_answer(replies: &mpsc::Sender<Line>, event: Event) {
    if let Ok(line) = event_line(&event) {
        // The writer may be gone (client stopped reading); the method was
        // processed all the same.
        let _ = replies.send(line).await;
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    write: W,
    mut sub: Subscription,
    mut replies: mpsc::Receiver<Line>,
    state: SharedState,
) {
    let mut out = Outbox::new(write);
    loop {
        let first = tokio::select! {
            biased;
            reply = replies.recv() => match reply {
                Some(line) => Some(line),
                // The reader is done: deliver what remains and close.
                None => break,
            },
            line = sub.queue.recv() => match line {
                Some(line) => Some(line),
                // The pod closed the client list (shutdown).
                None => break,
            },
            () = sub.lag.marked() => None,
        };
        let mut sent = match first {
            Some(line) => out.line(&line).await,
            None => Ok(()),
        };
        // Gather what is already queued into as few writes as possible.
        while sent.is_ok() {
            match sub.queue.try_recv() {
                Ok(line) => sent = out.line(&line).await,
                Err(_) => break,
            }
        }
        if sent.is_err() || out.flush().await.is_err() {
            return;
        }
        if sub.lag.missed_from().is_some()
            && sub.queue.is_empty()
            && catch_up(&mut out, &sub, &state).await.is_err()
        {
            return;
        }
    }
    // Final answers (the client may still be reading them) and queued lines.
    let mut sent = Ok(());
    while let (Ok(()), Ok(line)) = (&sent, replies.try_recv()) {
        sent = out.line(&line).await;
    }
    while let (Ok(()), Ok(line)) = (&sent, sub.queue.try_recv()) {
        sent = out.line(&line).await;
    }
    if sent.is_ok() {
        let _ = out.flush().await;
    }
    let _ = out.write.shutdown().await;
}

/// Lines on their way to one client: small ones gathered into one buffer,
/// large ones (a snapshot) written straight from the shared line, never copied
/// per connection.
struct Outbox<W> {
    write: W,
    buf: Vec<u8>,
}

/// Lines at least this long are written directly instead of buffered.
const DIRECT_LINE: usize = 64 * 1024;

impl<W: AsyncWrite + Unpin> Outbox<W> {
    fn new(write: W) -> Self {
        Outbox {
            write,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    async fn line(&mut self, line: &str) -> std::io::Result<()> {
        if line.len() >= DIRECT_LINE {
            self.flush().await?;
            self.write.write_all(line.as_bytes()).await?;
            return self.write.write_all(b"\n").await;
        }
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        if self.buf.len() >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.write.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Sends `lagged{from_seq}` and the committed entries the client missed, in
/// batches, until it is in step again (one replay in flight per client).
async fn catch_up<W: AsyncWrite + Unpin>(
    out: &mut Outbox<W>,
    sub: &Subscription,
    state: &SharedState,
) -> std::io::Result<()> {
    let Some(from_seq) = sub.lag.missed_from() else {
        return Ok(());
    };
    let lagged = event_line(&Event::Lagged { from_seq }).map_err(std::io::Error::other)?;
    out.line(&lagged).await?;
    loop {
        let step = lock(state)
            .replay_step(&sub.lag)
            .map_err(std::io::Error::other)?;
        match step {
            ReplayStep::Lines(lines) => {
                for line in &lines {
                    out.line(line).await?;
                }
                out.flush().await?;
            }
            ReplayStep::CaughtUp(status) => {
                out.line(&status).await?;
                return out.flush().await;
            }
        }
    }
}
