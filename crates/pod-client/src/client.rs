//! A client of one pod's socket, for the `pod` commands and the UI: connect and read up
//! to the snapshot, send methods and wait for their `ack` or `error` (which go
//! only to us, so they cannot be confused with another client's invocation),
//! and read events.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::stream::{JsonLineReader, JsonLineWriter};
use protocol::{ErrorCode, Event, Greeting, InvokeKind, Method, PodStatus};
use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use pod_runtime::dir::{Places, socket_path};
use pod_runtime::liveness;

/// Snapshots can be large (a long session); the reader takes lines up to this.
pub(crate) const MAX_EVENT_LINE: usize = 1 << 30;

/// Every socket operation of a command is bounded by this.
pub(crate) const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// Why talking to a pod failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No pod of that name is running.
    #[error("no pod named `{name}` is running (no live lock in {}); `pod ls` lists the pods", dir.display())]
    NotRunning {
        /// The name asked for.
        name: String,
        /// Its runtime dir.
        dir: PathBuf,
    },
    /// Connecting or reading failed.
    #[error("pod socket {}: {source}", socket.display())]
    Io {
        /// The socket.
        socket: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The pod did not answer in time.
    #[error("pod socket {}: no answer within {} s", socket.display(), SOCKET_TIMEOUT.as_secs())]
    Timeout {
        /// The socket.
        socket: PathBuf,
    },
    /// The pod closed the connection before the expected answer.
    #[error("the pod closed the connection")]
    Closed,
    /// The pod sent something other than the protocol says.
    #[error("unexpected from the pod: {0}")]
    Protocol(String),
    /// The pod refused the method.
    #[error("{message} ({code:?})")]
    Refused {
        /// Its error code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
}

/// How a pod answered a `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAnswer {
    /// It took the input (its `user_message`, `turn_start` or
    /// `invoke_start{user_send}`).
    Accepted,
    /// It is in a turn and takes no new run (`already_running`).
    Busy,
    /// It refused for another reason.
    Refused {
        /// Its error code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
}

/// `event` as the answer to a `run` sent on its connection, if it is one
/// (other events come before it and are passed over).
pub fn run_answer(event: Event) -> Option<RunAnswer> {
    match event {
        Event::Error {
            code: ErrorCode::AlreadyRunning,
            ..
        } => Some(RunAnswer::Busy),
        Event::Error { code, message } => Some(RunAnswer::Refused { code, message }),
        Event::UserMessage { .. }
        | Event::TurnStart { .. }
        | Event::InvokeStart {
            kind: InvokeKind::UserSend,
        } => Some(RunAnswer::Accepted),
        _ => None,
    }
}

/// Where a pod's files are, by full name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLocation {
    /// Full name.
    pub name: String,
    /// `<runtime>/<name>/`.
    pub dir: PathBuf,
    /// The socket path.
    pub socket: PathBuf,
}

impl PodLocation {
    /// The location of pod `name` under `places`.
    pub fn of(places: &Places, name: &str) -> PodLocation {
        let dir = places.pod_runtime_dir(name);
        let socket = socket_path(&places.runtime, &dir, name);
        PodLocation {
            name: name.to_string(),
            dir,
            socket,
        }
    }

    /// Whether the pod is alive (holds its lock).
    pub fn is_alive(&self) -> bool {
        liveness::is_alive(&self.dir)
    }
}

/// An open connection that has read the pod's greeting.
pub struct PodClient {
    events: PodEvents,
    sender: PodSender,
    /// The greeting from the snapshot.
    pub greeting: Greeting,
    /// The status at connect time.
    pub status: PodStatus,
    /// The snapshot's log entries, each as its log line's JSON.
    pub entries: Vec<serde_json::Value>,
    /// Alerts replayed on connect.
    pub alerts: Vec<protocol::Alert>,
}

impl std::fmt::Debug for PodClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodClient")
            .field("socket", &self.events.socket)
            .field("pod", &self.greeting.pod_name)
            .finish_non_exhaustive()
    }
}

pub(crate) async fn timed<T>(
    socket: &Path,
    fut: impl Future<Output = io::Result<T>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(SOCKET_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(ClientError::Io {
            socket: socket.to_path_buf(),
            source,
        }),
        Err(_) => Err(ClientError::Timeout {
            socket: socket.to_path_buf(),
        }),
    }
}

impl PodClient {
    /// Connects to a live pod and reads up to its snapshot.
    pub(crate) async fn connect_to(location: &PodLocation) -> Result<PodClient, ClientError> {
        if !location.is_alive() {
            return Err(ClientError::NotRunning {
                name: location.name.clone(),
                dir: location.dir.clone(),
            });
        }
        PodClient::connect(&location.socket).await
    }

    /// Connects to the socket and reads `hello`, alerts and the `snapshot`.
    pub async fn connect(socket: &Path) -> Result<PodClient, ClientError> {
        let stream = timed(socket, UnixStream::connect(socket)).await?;
        let (read, write) = stream.into_split();
        let mut client = PodClient {
            events: PodEvents::new(
                socket,
                JsonLineReader::with_max_line_len(read, MAX_EVENT_LINE),
            ),
            sender: PodSender::new(socket, JsonLineWriter::new(write)),
            greeting: Greeting::default(),
            status: PodStatus::Idle,
            entries: Vec::new(),
            alerts: Vec::new(),
        };
        loop {
            match client.next_timed().await? {
                Event::Hello { .. } => {}
                Event::Alert(alert) => client.alerts.push(alert),
                Event::Snapshot {
                    entries,
                    greeting,
                    status,
                } => {
                    client.entries = entries;
                    client.greeting = greeting;
                    client.status = status;
                    return Ok(client);
                }
                Event::Error { code, message } => {
                    return Err(ClientError::Refused { code, message });
                }
                other => {
                    return Err(ClientError::Protocol(format!(
                        "expected hello, alerts and a snapshot first, got {other:?}"
                    )));
                }
            }
        }
    }

    pub(crate) async fn next_timed(&mut self) -> Result<Event, ClientError> {
        let events = &mut self.events;
        timed(&events.socket, events.reader.next::<Event>())
            .await?
            .ok_or(ClientError::Closed)
    }

    /// Sends a method.
    pub async fn send(&mut self, method: &Method) -> Result<(), ClientError> {
        self.sender.send(method).await
    }

    /// Sends a method and waits for its `ack`, returning the sequence number
    /// and the events that arrived before it (an accepted `run`'s first events
    /// may precede its `ack`), or the `error`.
    pub async fn request(&mut self, method: &Method) -> Result<(u64, Vec<Event>), ClientError> {
        self.send(method).await?;
        let mut before = Vec::new();
        loop {
            match self.next_timed().await? {
                Event::Ack { seq } => return Ok((seq, before)),
                Event::Error { code, message } => {
                    return Err(ClientError::Refused { code, message });
                }
                event => before.push(event),
            }
        }
    }

    /// Sends a method that has no `ack` (cancel, pause, resume, shutdown) and
    /// waits briefly for an `error`; on success returns the events that arrived
    /// meanwhile.
    pub async fn command(&mut self, method: &Method) -> Result<Vec<Event>, ClientError> {
        self.send(method).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.events.reader.next::<Event>()).await {
                Err(_) | Ok(Ok(None)) => return Ok(seen),
                Ok(Ok(Some(Event::Error { code, message }))) => {
                    return Err(ClientError::Refused { code, message });
                }
                Ok(Ok(Some(event))) => seen.push(event),
                Ok(Err(source)) => {
                    return Err(ClientError::Io {
                        socket: self.events.socket.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Splits the connection so one task can read events while another sends
    /// methods (an interactive client does both at once).
    pub fn into_split(self) -> (PodEvents, PodSender) {
        (self.events, self.sender)
    }

    /// The next event, without a timeout (an invocation may take long);
    /// `None` when the pod closed the connection.
    pub async fn next_event(&mut self) -> Result<Option<Event>, ClientError> {
        self.events.next_event().await
    }
}

/// The reading half of a split [`PodClient`].
pub struct PodEvents {
    socket: PathBuf,
    reader: JsonLineReader<BufReader<OwnedReadHalf>>,
}

impl PodEvents {
    /// The reading half over `reader` (already past the snapshot).
    pub(crate) fn new(
        socket: &Path,
        reader: JsonLineReader<BufReader<OwnedReadHalf>>,
    ) -> PodEvents {
        PodEvents {
            socket: socket.to_path_buf(),
            reader,
        }
    }

    /// The next event, without a timeout; `None` when the pod closed the connection.
    pub async fn next_event(&mut self) -> Result<Option<Event>, ClientError> {
        self.reader
            .next::<Event>()
            .await
            .map_err(|source| ClientError::Io {
                socket: self.socket.clone(),
                source,
            })
    }
}

/// The sending half of a split [`PodClient`]; answers (`ack`, `error`) arrive on
/// the [`PodEvents`] half.
pub struct PodSender {
    socket: PathBuf,
    writer: JsonLineWriter<OwnedWriteHalf>,
}

impl PodSender {
    /// The sending half over `writer`.
    pub(crate) fn new(socket: &Path, writer: JsonLineWriter<OwnedWriteHalf>) -> PodSender {
        PodSender {
            socket: socket.to_path_buf(),
            writer,
        }
    }

    /// Sends a method.
    pub async fn send(&mut self, method: &Method) -> Result<(), ClientError> {
        let socket = self.socket.clone();
        timed(&socket, self.writer.write(method)).await
    }
}
