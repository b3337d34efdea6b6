//! A child pod's way back to its parent: who the parent is (a `run` from it
//! counts as the parent's: its reports are owed), and a reporter task that
//! delivers those reports, so the controller never waits on the parent's socket
//! and reports arrive in the order they were made.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pod_runtime::liveness::is_alive;
use protocol::{Event, Method, PodEvent};
use tokio::sync::{mpsc, oneshot};

use crate::exchange::{ExchangeError, exchange};

/// Bounds each step of one delivery attempt (connect, write, the answer).
const STEP: Duration = Duration::from_secs(5);

/// Who this pod's parent is.
#[derive(Debug, Clone)]
pub struct ParentIdentity {
    /// The parent's process id when it spawned this pod.
    pub pid: u32,
    /// The parent's instance id: a restored parent runs as another process,
    /// found through the registry.
    pub instance: String,
    /// The per-user registry file.
    pub registry: PathBuf,
}

impl ParentIdentity {
    /// Whether process `pid` is the parent (as spawned, or restored since).
    /// May read the registry file: call it off the controller.
    pub fn is_parent(&self, pid: u32) -> bool {
        if pid == self.pid {
            return true;
        }
        // Reading the file without the lock is safe: it is replaced atomically.
        std::fs::read(&self.registry)
            .ok()
            .and_then(|b| pod_runtime::pod_registry::Registry::from_json(&b, &self.registry).ok())
            .and_then(|r| r.get(&self.instance).map(|e| e.pid == pid))
            .unwrap_or(false)
    }
}

/// Where this pod's reports go.
#[derive(Debug, Clone)]
pub struct ParentLink {
    /// This pod's short name (as the parent knows it).
    pub short_name: String,
    /// The parent's socket.
    pub socket: PathBuf,
    /// The parent's runtime dir (its liveness lock).
    pub dir: PathBuf,
    /// Who the parent is.
    pub identity: Arc<ParentIdentity>,
}

/// One report for the reporter task.
struct Report {
    method: Method,
    attempts: u32,
    /// What to say in this pod's alert if it cannot be delivered.
    on_failure: String,
    /// Told when the delivery ended, either way.
    done: Option<oneshot::Sender<()>>,
}

/// The controller's handle on the reporter task; dropping every handle ends it.
#[derive(Debug, Clone)]
pub struct Reporter {
    short_name: String,
    reports: mpsc::UnboundedSender<Report>,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report")
            .field("method", &self.method.name())
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl Reporter {
    /// Starts the reporter task for `link`; `warn` gets what could not be
    /// delivered (the pod raises it as an alert).
    pub fn spawn(link: ParentLink, warn: impl Fn(String) + Send + 'static) -> Reporter {
        let (reports, mut queue) = mpsc::unbounded_channel::<Report>();
        let short_name = link.short_name.clone();
        tokio::spawn(async move {
            while let Some(report) = queue.recv().await {
                if let Err(e) = deliver(&link, &report.method, report.attempts).await {
                    warn(format!("{}: {e}", report.on_failure));
                }
                if let Some(done) = report.done {
                    let _ = done.send(());
                }
            }
        });
        Reporter {
            short_name,
            reports,
        }
    }

    /// This pod's short name, as its parent knows it.
    pub fn short_name(&self) -> &str {
        &self.short_name
    }

    /// Queues `event` (retried up to `attempts` times while the parent lives);
    /// if it cannot be delivered, `on_failure` and the reason become an alert.
    pub fn report(&self, event: PodEvent, attempts: u32, on_failure: String) {
        self.send(Method::PodEvent(event), attempts, on_failure);
    }

    /// Queues any method for the parent, like [`Reporter::report`].
    pub fn send(&self, method: Method, attempts: u32, on_failure: String) {
        let _ = self.reports.send(Report {
            method,
            attempts,
            on_failure,
            done: None,
        });
    }

    /// Queues `event` (one attempt) and waits until it was delivered or failed,
    /// at most `within`: the last report of a pod on its way out.
    pub async fn report_last(&self, event: PodEvent, within: Duration) {
        let (done, delivered) = oneshot::channel();
        let queued = self.reports.send(Report {
            method: Method::PodEvent(event),
            attempts: 1,
            on_failure: "cannot tell the parent pod that this pod shut down".into(),
            done: Some(done),
        });
        if queued.is_ok() {
            let _ = tokio::time::timeout(within, delivered).await;
        }
    }
}

/// Why a report did not reach the parent.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("{0}")]
    Exchange(#[from] ExchangeError),
    #[error("the parent refused it: {0}")]
    Refused(String),
    #[error("the parent is gone ({0})")]
    Gone(Box<DeliveryError>),
}

/// Sends `method` to the parent and waits for its `ack`; retries (up to
/// `attempts`, half a second apart) while the parent is alive and has not
/// acknowledged. An `error` answer is final.
async fn deliver(parent: &ParentLink, method: &Method, attempts: u32) -> Result<(), DeliveryError> {
    let mut last = None;
    for attempt in 0..attempts.max(1) {
        if attempt > 0 {
            if !is_alive(&parent.dir) {
                return Err(DeliveryError::Gone(Box::new(
                    last.unwrap_or(DeliveryError::Exchange(ExchangeError::Closed)),
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        match exchange(&parent.socket, method, STEP).await {
            Ok(Event::Error { message, .. }) => return Err(DeliveryError::Refused(message)),
            Ok(_) => return Ok(()),
            Err(e) => last = Some(DeliveryError::Exchange(e)),
        }
    }
    Err(last.unwrap_or(DeliveryError::Exchange(ExchangeError::Closed)))
}
