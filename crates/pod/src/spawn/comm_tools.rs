//! The tools a pod uses to talk to the pods it spawned: `SendToPod`,
//! `ReadPodOutput`, `StopPod` and `ListPods`. Each is one short exchange over
//! the child's socket (connect, read up to the snapshot, act, disconnect),
//! with every socket operation bounded, so a stuck child never blocks its
//! spawner. Only children in the spawner's [`SpawnedPodRegistry`] are
//! reachable: there is no machine-wide lookup.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use llm_worker::tool::{Tool, ToolDefinition, ToolError, ToolMeta, ToolOutput};
use pod_client::client::RunAnswer;
use protocol::stream::{JsonLineReader, JsonLineWriter};
use protocol::{Event, Method};
use serde::Deserialize;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::runtime::dir::SpawnedPodRecord;
use crate::runtime::pod_registry::{self, LockFileGuard};
use crate::spawn::registry::SpawnedPodRegistry;

/// Bound on every connect, write and read with a child.
const SOCKET_OP_TIMEOUT: Duration = Duration::from_secs(5);

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}

async fn bounded<T>(
    what: &str,
    fut: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(SOCKET_OP_TIMEOUT, fut)
        .await
        .map_err(|_| timed_out(what))?
}

async fn open(
    socket: &Path,
) -> std::io::Result<(
    JsonLineReader<tokio::io::BufReader<OwnedReadHalf>>,
    JsonLineWriter<OwnedWriteHalf>,
)> {
    let stream = bounded("connect", UnixStream::connect(socket)).await?;
    let (r, w) = stream.into_split();
    Ok((JsonLineReader::new(r), JsonLineWriter::new(w)))
}

/// Reads events until the connect-time snapshot, returning its entries.
async fn read_to_snapshot<R>(
    reader: &mut JsonLineReader<R>,
) -> std::io::Result<Vec<serde_json::Value>>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    loop {
        match bounded("read", reader.next::<Event>()).await? {
            Some(Event::Snapshot { entries, .. }) => return Ok(entries),
            Some(_) => {}
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the pod closed the connection before its snapshot",
                ));
            }
        }
    }
}

/// Connects, reads up to the snapshot (a client that only sends must, or a
/// large snapshot could hold the pod's writer back), writes `method`, and
/// disconnects.
pub(crate) async fn connect_and_send(socket: &Path, method: &Method) -> std::io::Result<()> {
    let (mut reader, mut writer) = open(socket).await?;
    read_to_snapshot(&mut reader).await?;
    bounded("write", writer.write(method)).await
}

/// How `SendToPod` can fail.
#[derive(Debug)]
pub(crate) enum SendRunError {
    /// The child is running an invocation; retry after it ends.
    AlreadyRunning,
    /// Connecting, writing or reading failed, or the child refused otherwise.
    Io(String),
}

/// Sends `run` with `input` and waits until the child accepts it (its
/// `user_message`, `turn_start` or `invoke_start{user_send}`) or refuses it.
pub(crate) async fn send_run_and_confirm(socket: &Path, input: String) -> Result<(), SendRunError> {
    let io = |e: std::io::Error| SendRunError::Io(e.to_string());
    let (mut reader, mut writer) = open(socket).await.map_err(io)?;
    let run = Method::Run {
        input: vec![protocol::Segment::text(input)],
    };
    bounded("write", writer.write(&run)).await.map_err(io)?;
    loop {
        let Some(event) = bounded("read", reader.next::<Event>()).await.map_err(io)? else {
            return Err(SendRunError::Io(
                "the pod closed the connection before answering".into(),
            ));
        };
        match pod_client::client::run_answer(event) {
            Some(RunAnswer::Accepted) => return Ok(()),
            Some(RunAnswer::Busy) => return Err(SendRunError::AlreadyRunning),
            Some(RunAnswer::Refused { code, message }) => {
                return Err(SendRunError::Io(format!(
                    "the pod refused ({code:?}): {message}"
                )));
            }
            None => {}
        }
    }
}

/// Whether the child accepts a connection.
async fn is_reachable(socket: &Path) -> bool {
    matches!(
        tokio::time::timeout(SOCKET_OP_TIMEOUT, UnixStream::connect(socket)).await,
        Ok(Ok(_))
    )
}

fn unknown_pod(name: &str) -> ToolError {
    ToolError::InvalidArgument(format!("no spawned pod named `{name}`"))
}

fn parse<T: serde::de::DeserializeOwned>(tool: &str, input: &str) -> Result<T, ToolError> {
    serde_json::from_str(input)
        .map_err(|e| ToolError::InvalidArgument(format!("invalid {tool} input: {e}")))
}

fn definition(
    name: &'static str,
    description: &'static str,
    schema: schemars::Schema,
    tool: Arc<dyn Tool>,
) -> (ToolMeta, Arc<dyn Tool>) {
    let schema =
        serde_json::to_value(schema).unwrap_or_else(|_| serde_json::json!({"type": "object"}));
    (
        ToolMeta::new(name)
            .description(description)
            .input_schema(schema),
        tool,
    )
}

/// `write:/path`, ` [non-recursive]` where not recursive, comma-separated.
fn scope_summary(record: &SpawnedPodRecord) -> String {
    if record.scope_delegated.is_empty() {
        return "(none)".into();
    }
    pod_client::pods::rules_summary(&record.scope_delegated)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct NameInput {
    /// Name of a pod this pod spawned.
    name: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SendToPodInput {
    /// Name of a pod this pod spawned.
    name: String,
    /// The message, delivered as the pod's next user input.
    message: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EmptyInput {}

const SEND_TO_POD_DESCRIPTION: &str = "Send a message to a pod you spawned; it runs it as a new \
user turn. Fails if that pod is busy with a turn (retry when it finishes). Returns at once; \
read the result later with ReadPodOutput.";

struct SendToPod {
    registry: Arc<SpawnedPodRegistry>,
}

#[async_trait]
impl Tool for SendToPod {
    async fn execute(&self, input_json: &str) -> Result<ToolOutput, ToolError> {
        let input: SendToPodInput = parse("SendToPod", input_json)?;
        let record = self
            .registry
            .get(&input.name)
            .await
            .ok_or_else(|| unknown_pod(&input.name))?;
        match send_run_and_confirm(&record.socket_path, input.message).await {
            Ok(()) => {
                self.registry.expect_report(&record.pod_name);
                Ok(ToolOutput {
                    summary: format!("sent message to `{}`", input.name),
                    content: None,
                })
            }
            Err(SendRunError::AlreadyRunning) => Err(ToolError::ExecutionFailed(format!(
                "pod `{}` is busy with a turn; retry when it finishes",
                input.name
            ))),
            Err(SendRunError::Io(e)) => Err(ToolError::ExecutionFailed(format!(
                "cannot send to `{}`: {e}",
                input.name
            ))),
        }
    }
}

/// `SendToPod`: a run in a child (or a notification while it is busy).
pub(crate) fn send_to_pod_tool(registry: Arc<SpawnedPodRegistry>) -> ToolDefinition {
    Arc::new(move || {
        let tool = Arc::new(SendToPod {
            registry: Arc::clone(&registry),
        });
        definition(
            "SendToPod",
            SEND_TO_POD_DESCRIPTION,
            schemars::schema_for!(SendToPodInput),
            tool,
        )
    })
}

const READ_POD_OUTPUT_DESCRIPTION: &str = "Read what a pod you spawned has answered since your \
last read of it. A cursor per pod; the result also says whether the pod is still reachable.";

struct ReadPodOutput {
    registry: Arc<SpawnedPodRegistry>,
}

async fn snapshot_entries(socket: &Path) -> std::io::Result<Vec<serde_json::Value>> {
    let (mut reader, _writer) = open(socket).await?;
    read_to_snapshot(&mut reader).await
}

#[async_trait]
impl Tool for ReadPodOutput {
    async fn execute(&self, input_json: &str) -> Result<ToolOutput, ToolError> {
        let input: NameInput = parse("ReadPodOutput", input_json)?;
        let record = self
            .registry
            .get(&input.name)
            .await
            .ok_or_else(|| unknown_pod(&input.name))?;
        let Ok(entries) = snapshot_entries(&record.socket_path).await else {
            return Ok(ToolOutput {
                summary: format!("pod `{}` is stopped (unreachable)", input.name),
                content: None,
            });
        };
        let seqs: Vec<Option<u64>> = entries
            .iter()
            .map(|e| e.get("seq").and_then(serde_json::Value::as_u64))
            .collect();
        let index = self.registry.cursor(&input.name).await;
        let cursor = self.registry.resume_at(&input.name, &seqs, index);
        let text = pod_client::snapshot::assistant_text(&entries[cursor..]);
        self.registry.set_cursor(&input.name, entries.len()).await;
        if let Some(last) = seqs.last().copied().flatten() {
            self.registry.set_read_seq(&input.name, last);
        }
        if text.is_empty() {
            return Ok(ToolOutput {
                summary: format!("pod `{}` running; no new assistant text", input.name),
                content: None,
            });
        }
        Ok(ToolOutput {
            summary: format!(
                "pod `{}`: {} new line(s) of assistant text",
                input.name,
                text.lines().count()
            ),
            content: Some(text),
        })
    }
}

/// `ReadPodOutput`: a child's assistant text since the last read.
pub(crate) fn read_pod_output_tool(registry: Arc<SpawnedPodRegistry>) -> ToolDefinition {
    Arc::new(move || {
        let tool = Arc::new(ReadPodOutput {
            registry: Arc::clone(&registry),
        });
        definition(
            "ReadPodOutput",
            READ_POD_OUTPUT_DESCRIPTION,
            schemars::schema_for!(NameInput),
            tool,
        )
    })
}

const STOP_POD_DESCRIPTION: &str = "Stop a pod you spawned and take back the scope you gave it. \
The pod shuts down, and its paths become writable by you again (and can be given to a new pod).";

struct StopPod {
    registry: Arc<SpawnedPodRegistry>,
}

#[async_trait]
impl Tool for StopPod {
    async fn execute(&self, input_json: &str) -> Result<ToolOutput, ToolError> {
        let input: NameInput = parse("StopPod", input_json)?;
        let record = self
            .registry
            .get(&input.name)
            .await
            .ok_or_else(|| unknown_pod(&input.name))?;
        // Best effort: `remove` below stops it for real whatever happens here.
        let _ = connect_and_send(&record.socket_path, &Method::Shutdown).await;
        let scope = scope_summary(&record);
        self.registry.remove(&record.pod_name).await.map_err(|e| {
            ToolError::ExecutionFailed(format!("cannot stop `{}`: {e}", input.name))
        })?;
        Ok(ToolOutput {
            summary: format!(
                "stopped pod `{}`; reclaimed scope: {scope}",
                record.pod_name
            ),
            content: None,
        })
    }
}

/// `StopPod`: stops a child for real and takes its scope back.
pub(crate) fn stop_pod_tool(registry: Arc<SpawnedPodRegistry>) -> ToolDefinition {
    Arc::new(move || {
        let tool = Arc::new(StopPod {
            registry: Arc::clone(&registry),
        });
        definition(
            "StopPod",
            STOP_POD_DESCRIPTION,
            schemars::schema_for!(NameInput),
            tool,
        )
    })
}

const LIST_PODS_DESCRIPTION: &str = "List the pods you spawned, with their state and scope. \
For each: its name, whether it is reachable (`alive` or `stopped`) and the scope you gave it. \
The scope of stopped ones comes back to you.";

struct ListPods {
    registry: Arc<SpawnedPodRegistry>,
}

#[async_trait]
impl Tool for ListPods {
    async fn execute(&self, _input_json: &str) -> Result<ToolOutput, ToolError> {
        let records = self.registry.list().await;
        if records.is_empty() {
            return Ok(ToolOutput {
                summary: "no spawned pods".into(),
                // Asked to "list the JSON files", a small model called ListPods
                // and answered that the project has no pods.
                content: Some(
                    "ListPods lists the child pods you spawned, not files: to list files, \
                     use Glob (e.g. pattern \"**/*.json\")."
                        .into(),
                ),
            });
        }
        let mut lines = Vec::with_capacity(records.len());
        let mut gone = Vec::new();
        for record in &records {
            let alive = is_reachable(&record.socket_path).await;
            let status = if alive { "alive" } else { "stopped" };
            lines.push(format!(
                "{} [{status}] scope={}",
                record.pod_name,
                scope_summary(record)
            ));
            if !alive {
                gone.push(record.pod_name.clone());
            }
        }
        if !gone.is_empty() {
            // Free the grants of dead pods in the per-user registry, then take
            // their subtrees back here.
            let _ = tokio::task::spawn_blocking(|| {
                if let Ok(path) = pod_registry::default_registry_path()
                    && let Ok(mut guard) = LockFileGuard::open(&path)
                {
                    pod_registry::reclaim_stale(&mut guard);
                }
            })
            .await;
            for name in &gone {
                if let Ok(Some(_)) = self
                    .registry
                    .forget(name, "found unreachable by ListPods")
                    .await
                {
                    lines.push(format!("{name}: reclaimed its scope"));
                }
            }
        }
        Ok(ToolOutput {
            summary: format!("{} pod(s) known", records.len()),
            content: Some(lines.join("\n")),
        })
    }
}

/// `ListPods`: this pod's children, with their scopes and states.
pub(crate) fn list_pods_tool(registry: Arc<SpawnedPodRegistry>) -> ToolDefinition {
    Arc::new(move || {
        let tool = Arc::new(ListPods {
            registry: Arc::clone(&registry),
        });
        definition(
            "ListPods",
            LIST_PODS_DESCRIPTION,
            schemars::schema_for!(EmptyInput),
            tool,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Alert, AlertLevel, AlertSource, ErrorCode, Greeting, PodEvent, PodStatus};
    use tokio::net::UnixListener;

    fn snapshot(entries: Vec<serde_json::Value>) -> Event {
        Event::Snapshot {
            entries,
            greeting: Greeting::default(),
            status: PodStatus::Idle,
        }
    }

    fn alert() -> Event {
        Event::Alert(Alert {
            level: AlertLevel::Warn,
            source: AlertSource::Pod,
            message: "an old alert".into(),
            timestamp_ms: 1,
        })
    }

    /// A one-connection server: sends `first`, reads one method, then sends `then`.
    fn serve(
        first: Vec<Event>,
        then: Vec<Event>,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        tokio::task::JoinHandle<Option<Method>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.ok()?;
            let (r, w) = stream.into_split();
            let (mut reader, mut writer) = (JsonLineReader::new(r), JsonLineWriter::new(w));
            for e in &first {
                writer.write(e).await.ok()?;
            }
            let method = reader.next::<Method>().await.ok().flatten();
            for e in &then {
                writer.write(e).await.ok()?;
            }
            method
        });
        (dir, socket, task)
    }

    #[tokio::test]
    async fn a_run_counts_as_sent_once_the_pod_accepts_it() {
        let accepted = Event::TurnStart { turn: 1 };
        let (_dir, socket, task) = serve(vec![alert(), snapshot(vec![])], vec![accepted]);
        send_run_and_confirm(&socket, "do it".into()).await.unwrap();
        match task.await.unwrap() {
            Some(Method::Run { input }) => {
                assert_eq!(protocol::Segment::flatten_to_text(&input), "do it")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_busy_pod_is_reported_as_such() {
        let busy = Event::Error {
            code: ErrorCode::AlreadyRunning,
            message: "busy".into(),
        };
        let (_dir, socket, _task) = serve(vec![snapshot(vec![])], vec![busy]);
        assert!(matches!(
            send_run_and_confirm(&socket, "x".into()).await,
            Err(SendRunError::AlreadyRunning)
        ));
    }

    #[tokio::test]
    async fn sending_reads_past_alerts_and_a_large_snapshot_first() {
        let big = serde_json::json!({"kind": "x", "blob": "y".repeat(3 << 20)});
        let (_dir, socket, task) = serve(vec![alert(), snapshot(vec![big])], vec![]);
        let event = Method::PodEvent(PodEvent::TurnEnded {
            pod_name: "kid".into(),
        });
        connect_and_send(&socket, &event).await.unwrap();
        assert_eq!(task.await.unwrap(), Some(event));
    }

    #[tokio::test]
    async fn an_absent_pod_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let err = connect_and_send(&dir.path().join("none"), &Method::Shutdown)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(!is_reachable(&dir.path().join("none")).await);
    }

    #[tokio::test]
    async fn no_children_is_said_with_where_files_are_listed() {
        let tools = ListPods {
            registry: Arc::new(SpawnedPodRegistry::new()),
        };
        let out = tools.execute("{}").await.unwrap();
        assert_eq!(out.summary, "no spawned pods");
        assert!(out.content.unwrap().contains("use Glob"));
    }
}
