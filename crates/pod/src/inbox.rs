//! What reaches a pod's controller, on its one channel: methods clients sent
//! over connections, and the pod's own events (a child process that failed, a
//! signal). The pod's own events are typed here, never dressed up as wire
//! methods, so every [`protocol::Method`] the controller sees came from a
//! connection. The channel is created before anything that sends on it.

use protocol::{Event, Method};
use tokio::sync::oneshot;

/// Who sent a method, from the socket's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Peer {
    /// The sender's process id, if known.
    pub pid: Option<u32>,
    /// The sender is this pod's parent (as spawned, or restored since):
    /// checked once per connection, off the controller.
    pub(crate) is_parent: bool,
}

/// A method from a connection.
#[derive(Debug)]
pub(crate) struct Command {
    /// The decoded method.
    pub method: Method,
    /// Who sent it.
    pub peer: Peer,
    /// Where the answer for the sender goes (`ack` or `error`), if any.
    pub reply: oneshot::Sender<Option<Event>>,
}

/// How the controller took a child's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureTaken {
    /// Recorded (the agent is told if it waits for the child), or not needed.
    Done,
    /// The child is not recorded yet (`SpawnPod` is still finishing): try again.
    NotRecordedYet,
}

/// Everything the controller acts on.
#[derive(Debug)]
pub(crate) enum Input {
    /// A method a client sent.
    Method(Command),
    /// A child's process ended with an error before it reported (it could not
    /// start, or it crashed): taken as that child's `errored` report.
    ChildFailed {
        /// The child's short name.
        pod_name: String,
        /// Its process id (a later child of the same name is not it).
        pid: u32,
        /// What happened (exit status and the end of its `pod.log`).
        message: String,
        /// Whether it was taken.
        reply: oneshot::Sender<FailureTaken>,
    },
    /// SIGTERM or SIGINT: shut down as for a `shutdown` method.
    Shutdown,
}
