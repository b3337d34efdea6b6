//! Event lines that embed session-log lines verbatim, without parsing them into values.
//!
//! `snapshot` and `entry` carry log entries "exactly as their log line". Going
//! through [`Event::Snapshot`](crate::Event::Snapshot) would parse every line
//! into a `serde_json::Value` and print it again (reordering keys unless
//! serde_json's `preserve_order` is on); these builders copy the bytes instead,
//! so a pod can serialise a snapshot once from its log and share the line.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::{Greeting, PodStatus};

/// The wire shape of the two events, with borrowed raw entries.
#[derive(Serialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
enum RawEvent<'a> {
    Snapshot {
        entries: Vec<&'a RawValue>,
        greeting: &'a Greeting,
        status: PodStatus,
    },
    Entry(&'a RawValue),
}

/// Checks that `log_line` is one JSON value (surrounding whitespace, such as its `\n`, is dropped).
fn raw(log_line: &str) -> serde_json::Result<&RawValue> {
    serde_json::from_str(log_line)
}

/// Builds the `entry` event line (without `\n`) for one committed log line.
pub fn entry_line(log_line: &str) -> serde_json::Result<String> {
    serde_json::to_string(&RawEvent::Entry(raw(log_line)?))
}

/// Builds the `snapshot` event line (without `\n`) from the log lines of the current segment.
pub fn snapshot_line<'a>(
    log_lines: impl IntoIterator<Item = &'a str>,
    greeting: &Greeting,
    status: PodStatus,
) -> serde_json::Result<String> {
    let entries = log_lines
        .into_iter()
        .map(raw)
        .collect::<serde_json::Result<Vec<_>>>()?;
    serde_json::to_string(&RawEvent::Snapshot {
        entries,
        greeting,
        status,
    })
}
