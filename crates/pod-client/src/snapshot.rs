//! Connecting with the snapshot's entries handed over one at a time as they are
//! decoded, never held as JSON values: a UI showing a 50k-entry pod then needs
//! the memory of what it shows, not of the snapshot line several times over.

use std::fmt;
use std::path::Path;

use protocol::stream::{JsonLineReader, JsonLineWriter};
use protocol::{Alert, Event, Greeting, PodStatus};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use session_store::LogEntry;
use tokio::net::UnixStream;

use crate::client::{ClientError, MAX_EVENT_LINE, PodEvents, PodSender, timed};

/// What a connection says before its live events, besides the entries.
#[derive(Debug, Clone)]
pub struct Greeted {
    /// The pod's static facts.
    pub greeting: Greeting,
    /// Its status at connect time.
    pub status: PodStatus,
    /// Alerts replayed on connect.
    pub alerts: Vec<Alert>,
}

/// Connects to the pod at `socket`, calls `on_entry` with each entry of its
/// snapshot in log order as it is decoded, and returns the greeting and the
/// two halves of the connection.
pub async fn connect_streaming(
    socket: &Path,
    mut on_entry: impl FnMut(LogEntry),
) -> Result<(Greeted, PodEvents, PodSender), ClientError> {
    let stream = timed(socket, UnixStream::connect(socket)).await?;
    let (read, write) = stream.into_split();
    let mut reader = JsonLineReader::with_max_line_len(read, MAX_EVENT_LINE);
    let mut alerts = Vec::new();
    loop {
        let line = timed(socket, reader.next_line())
            .await?
            .ok_or(ClientError::Closed)?;
        let tag: Tag = serde_json::from_slice(line).map_err(|e| {
            ClientError::Protocol(format!("undecodable line before the snapshot: {e}"))
        })?;
        if tag.event == "snapshot" {
            let mut de = serde_json::Deserializer::from_slice(line);
            let (greeting, status) = EnvelopeSeed(&mut on_entry)
                .deserialize(&mut de)
                .map_err(|e| ClientError::Protocol(format!("undecodable snapshot: {e}")))?;
            let greeted = Greeted {
                greeting,
                status,
                alerts,
            };
            return Ok((
                greeted,
                PodEvents::new(socket, reader),
                PodSender::new(socket, JsonLineWriter::new(write)),
            ));
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(Event::Hello { .. }) => {}
            Ok(Event::Alert(alert)) => alerts.push(alert),
            Ok(Event::Error { code, message }) => {
                return Err(ClientError::Refused { code, message });
            }
            Ok(other) => {
                return Err(ClientError::Protocol(format!(
                    "expected hello, alerts and a snapshot first, got {other:?}"
                )));
            }
            Err(e) => return Err(ClientError::Protocol(format!("undecodable event: {e}"))),
        }
    }
}

/// Just the event's name (its data is skipped without being kept).
#[derive(Deserialize)]
struct Tag {
    event: String,
}

/// `{"event":"snapshot","data":{...}}`, the data decoded by [`DataSeed`].
struct EnvelopeSeed<'a, F>(&'a mut F);

impl<'de, F: FnMut(LogEntry)> DeserializeSeed<'de> for EnvelopeSeed<'_, F> {
    type Value = (Greeting, PodStatus);

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(LogEntry)> Visitor<'de> for EnvelopeSeed<'_, F> {
    type Value = (Greeting, PodStatus);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a snapshot event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut data = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "data" {
                data = Some(map.next_value_seed(DataSeed(&mut *self.0))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        data.ok_or_else(|| de::Error::missing_field("data"))
    }
}

/// The snapshot's data: entries handed to the callback, greeting and status kept.
struct DataSeed<'a, F>(&'a mut F);

impl<'de, F: FnMut(LogEntry)> DeserializeSeed<'de> for DataSeed<'_, F> {
    type Value = (Greeting, PodStatus);

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(LogEntry)> Visitor<'de> for DataSeed<'_, F> {
    type Value = (Greeting, PodStatus);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("snapshot data")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut greeting, mut status) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "entries" => map.next_value_seed(EntriesSeed(&mut *self.0))?,
                "greeting" => greeting = Some(map.next_value()?),
                "status" => status = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((
            greeting.ok_or_else(|| de::Error::missing_field("greeting"))?,
            status.ok_or_else(|| de::Error::missing_field("status"))?,
        ))
    }
}

/// The entries array, one entry at a time.
struct EntriesSeed<'a, F>(&'a mut F);

impl<'de, F: FnMut(LogEntry)> DeserializeSeed<'de> for EntriesSeed<'_, F> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(LogEntry)> Visitor<'de> for EntriesSeed<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of log entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(entry) = seq.next_element::<LogEntry>()? {
            (self.0)(entry);
        }
        Ok(())
    }
}

/// The assistant text in snapshot entries (messages, and the history a
/// compacted segment starts from), blocks separated by a blank line: what
/// `ReadPodOutput` and `read_pod_output` return.
pub fn assistant_text(entries: &[serde_json::Value]) -> String {
    use llm_types::{ContentPart, Item, Role};
    let mut out = String::new();
    let mut push = |item: Item| {
        if let Item::Message {
            role: Role::Assistant,
            content,
            ..
        } = item
        {
            for ContentPart::Text { text } in content {
                if !out.is_empty() {
                    out.push_str("\n\n");
                }
                out.push_str(&text);
            }
        }
    };
    for value in entries {
        match serde_json::from_value::<LogEntry>(value.clone()) {
            Ok(LogEntry::AssistantItem { item, .. }) => push(item.into()),
            Ok(LogEntry::SegmentStart { history, .. }) => {
                history.into_iter().for_each(|i| push(i.into()))
            }
            _ => {}
        }
    }
    out
}

/// Where to go on reading a child's snapshot whose entries have `seqs`: after
/// the entry with seq `read_seq` when it is there; from the start when the
/// snapshot begins after it (the child compacted: a new segment, whose start
/// the cursor moves to); else at the journaled index `index`.
pub fn resume_at(seqs: &[Option<u64>], read_seq: Option<u64>, index: usize) -> usize {
    let len = seqs.len();
    let Some(seen) = read_seq else {
        return index.min(len);
    };
    if let Some(k) = seqs.iter().position(|s| *s == Some(seen)) {
        return k + 1;
    }
    match seqs.first().copied().flatten() {
        Some(first) if first > seen => 0,
        _ => index.min(len),
    }
}

#[cfg(test)]
mod resume_tests {
    use super::resume_at;

    #[test]
    fn reading_resumes_after_the_last_entry_read_or_at_a_new_segment() {
        let seqs: Vec<Option<u64>> = (1..=10).map(Some).collect();
        assert_eq!(resume_at(&seqs, Some(4), 0), 4, "after seq 4");
        assert_eq!(
            resume_at(&seqs, None, 7),
            7,
            "the journaled index after a restore"
        );
        assert_eq!(resume_at(&seqs, None, 70), 10, "never past the end");
        // The child compacted: its snapshot is a new segment starting at seq 31.
        let compacted: Vec<Option<u64>> = (31..=33).map(Some).collect();
        assert_eq!(
            resume_at(&compacted, Some(30), 30),
            0,
            "from the new segment's start"
        );
        assert_eq!(resume_at(&compacted, Some(32), 30), 2);
    }

    #[test]
    fn assistant_text_comes_from_assistant_items_only() {
        let entries = vec![
            serde_json::json!({"kind":"user_input","seq":1,"prev":"","ts":0,"segments":[],"item":{"type":"message","role":"user","content":[{"type":"text","text":"hi"}]}}),
            serde_json::json!({"kind":"assistant_item","seq":2,"prev":"","ts":0,"item":{"type":"message","role":"assistant","content":[{"type":"text","text":"one"}]}}),
            serde_json::json!({"kind":"assistant_item","seq":3,"prev":"","ts":0,"item":{"type":"message","role":"assistant","content":[{"type":"text","text":"two"}]}}),
        ];
        assert_eq!(super::assistant_text(&entries), "one\n\ntwo");
        assert_eq!(super::assistant_text(&entries[2..]), "two");
    }
}
