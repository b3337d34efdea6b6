//! Fan-out of event lines to every connected client, without ever waiting for one.
//!
//! Each client has a bounded queue. A line is offered with `try_send`: a client
//! whose queue is full is marked *lagging* from the first committed entry it
//! missed, and gets nothing more from the hub until its writer has replayed the
//! missed entries from the session log (ARCHITECTURE.md rule 2). Live deltas it
//! missed are gone; committed entries never are. The hub is only touched under
//! the pod state's lock, which is also what makes "catching up" atomic: the
//! writer clears the lag mark under that lock once nothing is left to replay.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, mpsc};

/// One serialised event line (without `\n`), shared by every client it goes to.
pub(crate) type Line = Arc<str>;

/// Lines a client's queue holds before the client counts as lagging.
pub(crate) const CLIENT_QUEUE: usize = 8192;

/// A client's lag mark, shared between the hub and the client's writer.
#[derive(Debug, Default)]
pub(crate) struct Lag {
    /// The first committed sequence number the client missed; 0 when in step.
    from_seq: AtomicU64,
    /// Wakes the writer when the client starts lagging.
    wake: Notify,
}

impl Lag {
    /// The first missed sequence number, if the client is lagging.
    pub(crate) fn missed_from(&self) -> Option<u64> {
        match self.from_seq.load(Ordering::Acquire) {
            0 => None,
            seq => Some(seq),
        }
    }

    /// Waits until the client is marked lagging (returns at once if a mark was
    /// set since the last wait).
    pub(crate) async fn marked(&self) {
        self.wake.notified().await;
    }

    /// Clears the mark (the writer has replayed everything); call under the
    /// state lock so no broadcast slips between the last replayed entry and this.
    pub(crate) fn clear(&self) {
        self.from_seq.store(0, Ordering::Release);
    }

    /// Moves the replay point forward after a batch was written.
    pub(crate) fn advance(&self, next_seq: u64) {
        self.from_seq.store(next_seq.max(1), Ordering::Release);
    }

    fn mark(&self, from_seq: u64) {
        self.from_seq.store(from_seq.max(1), Ordering::Release);
        self.wake.notify_one();
    }
}

struct Client {
    id: u64,
    queue: mpsc::Sender<Line>,
    lag: Arc<Lag>,
    /// It sent `watch_approvals`.
    watching: bool,
}

/// The set of connected clients.
#[derive(Default)]
pub(crate) struct Hub {
    clients: Vec<Client>,
    next_id: u64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("clients", &self.clients.len())
            .finish()
    }
}

/// What a new client gets: its id, its queue's receiving end and its lag mark.
pub(crate) struct Subscription {
    /// The client's id (to unsubscribe).
    pub id: u64,
    /// Lines to write to the client, in order.
    pub queue: mpsc::Receiver<Line>,
    /// The client's lag mark.
    pub(crate) lag: Arc<Lag>,
}

impl Hub {
    /// An empty hub.
    pub(crate) fn new() -> Self {
        Hub::default()
    }

    /// Adds a client whose queue already holds `first` (hello, alerts, snapshot),
    /// with room for [`CLIENT_QUEUE`] more lines.
    pub(crate) fn subscribe(&mut self, first: Vec<Line>) -> Subscription {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE + first.len());
        for line in first {
            // Cannot fail: the queue is new and has room for all of them.
            let _ = tx.try_send(line);
        }
        self.next_id += 1;
        let lag = Arc::new(Lag::default());
        self.clients.push(Client {
            id: self.next_id,
            queue: tx,
            lag: Arc::clone(&lag),
            watching: false,
        });
        Subscription {
            id: self.next_id,
            queue: rx,
            lag,
        }
    }

    /// Removes a client (its writer ended); whether it was the last one that
    /// answered approvals.
    pub(crate) fn unsubscribe(&mut self, id: u64) -> bool {
        let watched = self.clients.iter().any(|c| c.id == id && c.watching);
        self.clients.retain(|c| c.id != id);
        watched && !self.clients.iter().any(|c| c.watching)
    }

    /// Makes client `id` one that answers approvals, with `lines` (the
    /// pending requests) queued for it now.
    pub(crate) fn watch(&mut self, id: u64, lines: &[Line]) {
        if let Some(c) = self.clients.iter_mut().find(|c| c.id == id) {
            c.watching = true;
            for line in lines {
                let _ = c.queue.try_send(Arc::clone(line));
            }
        }
    }

    /// Offers a line to the clients that answer approvals only; whether one
    /// took it.
    pub(crate) fn show_watchers(&mut self, line: &Line) -> bool {
        let mut taken = false;
        for c in self.clients.iter().filter(|c| c.watching) {
            taken |= c.queue.try_send(Arc::clone(line)).is_ok();
        }
        taken
    }

    /// Offers the `entry` line of committed entry `seq` to every client in step.
    pub(crate) fn entry(&mut self, seq: u64, line: &Line) {
        self.offer(line, seq);
    }

    /// Offers a live line (a delta, a state event) to every client in step; one
    /// that cannot take it lags from `next_seq`, the next entry to be committed.
    pub(crate) fn live(&mut self, line: &Line, next_seq: u64) {
        self.offer(line, next_seq);
    }

    fn offer(&mut self, line: &Line, lag_from: u64) {
        self.clients.retain(|c| {
            if c.lag.missed_from().is_some() {
                return true;
            }
            match c.queue.try_send(Arc::clone(line)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    c.lag.mark(lag_from);
                    true
                }
                // The writer is gone: the client disconnected.
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Line {
        Arc::from(s)
    }

    #[tokio::test]
    async fn lines_reach_every_client_in_order() {
        let mut hub = Hub::new();
        let mut a = hub.subscribe(vec![line("hello")]);
        let mut b = hub.subscribe(vec![]);
        hub.entry(1, &line("e1"));
        hub.live(&line("d"), 2);
        assert_eq!(&*a.queue.recv().await.unwrap(), "hello");
        assert_eq!(&*a.queue.recv().await.unwrap(), "e1");
        assert_eq!(&*a.queue.recv().await.unwrap(), "d");
        assert_eq!(&*b.queue.recv().await.unwrap(), "e1");
        assert_eq!(&*b.queue.recv().await.unwrap(), "d");
    }

    #[tokio::test]
    async fn a_full_queue_marks_the_client_lagging_from_the_first_missed_entry() {
        let mut hub = Hub::new();
        let slow = hub.subscribe(vec![]);
        let mut fast = hub.subscribe(vec![]);
        for i in 0..CLIENT_QUEUE as u64 {
            hub.live(&line("d"), 1 + i / 100);
            // The fast client keeps up.
            assert!(fast.queue.recv().await.is_some());
        }
        assert_eq!(slow.lag.missed_from(), None);
        hub.entry(7, &line("e7"));
        assert_eq!(slow.lag.missed_from(), Some(7));
        // Nothing more is offered to it, even when there is room again.
        hub.entry(8, &line("e8"));
        assert_eq!(slow.lag.missed_from(), Some(7));
        assert_eq!(&*fast.queue.recv().await.unwrap(), "e7");
        assert_eq!(&*fast.queue.recv().await.unwrap(), "e8");
        // The writer is woken.
        tokio::time::timeout(std::time::Duration::from_secs(5), slow.lag.marked())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_dropped_live_line_lags_from_the_next_entry() {
        let mut hub = Hub::new();
        let slow = hub.subscribe(vec![]);
        for _ in 0..CLIENT_QUEUE {
            hub.live(&line("d"), 5);
        }
        hub.live(&line("d"), 5);
        assert_eq!(slow.lag.missed_from(), Some(5));
        slow.lag.clear();
        assert_eq!(slow.lag.missed_from(), None);
    }

    #[test]
    fn a_closed_client_is_dropped_on_the_next_offer() {
        let mut hub = Hub::new();
        let sub = hub.subscribe(vec![]);
        let _kept = hub.subscribe(vec![]);
        drop(sub.queue);
        hub.live(&line("x"), 1);
        assert_eq!(hub.clients.len(), 1);
        hub.unsubscribe(sub.id + 1);
        assert!(hub.clients.is_empty());
    }
}
