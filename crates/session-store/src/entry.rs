//! The log line format: [`LogEntry`] (one line of a segment), [`EntryBody`] (what a
//! caller appends), and [`LoggedItem`] (a conversation item as stored).
//!
//! Every kind is declared once, in the `log_entries!` invocation below; the macro
//! generates the `LogEntry` variant, the matching `EntryBody` variant, the JSON
//! encoding in both directions and the accessors. Adding a kind is one more block
//! there plus a line in [`crate::Replay::apply`] (whose match is exhaustive on
//! purpose, so a new kind cannot be forgotten there).
//!
//! Encoding: a flat JSON object `{"kind":..,"seq":..,"prev":..,"ts":..,<fields>}`, keys
//! in exactly that order, one per line (serde_json escapes every newline inside
//! strings, so an entry never spans lines). Decoding accepts the keys in any order
//! and ignores unknown ones; when `kind` comes first, as we always write it, the
//! fields are decoded straight from the input with no intermediate buffering (serde's
//! derived internally-tagged enums buffer the whole object first, which costs about
//! as much as the parse itself). A `kind` this build does not know decodes to
//! [`LogEntry::Unknown`] so old readers can still show new logs.
//!
//! Field-evolution rule: new fields on an existing kind must be `Option<_>` marked
//! `[optional]` (absent in old logs decodes as `None`, and `None` is not written, so
//! old entries keep their bytes); never rename or remove a field or a kind.

use std::fmt;

use llm_types::Item;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use protocol::{ApprovalRequest, ApprovalResolved, HookRun, InvokeKind, Segment, TurnResult};

/// A conversation item as stored in the log.
///
/// Transparent: its JSON is exactly the JSON of [`llm_types::Item`], whose encoding
/// `llm_types` keeps frozen. It exists so the log's type can evolve (e.g. gain a
/// compatibility shim for an old item shape) without touching `Item` itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LoggedItem(pub Item);

impl From<Item> for LoggedItem {
    fn from(item: Item) -> Self {
        LoggedItem(item)
    }
}

impl From<LoggedItem> for Item {
    fn from(logged: LoggedItem) -> Self {
        logged.0
    }
}

impl LoggedItem {
    /// The item, borrowed.
    #[cfg(test)]
    pub(crate) fn as_item(&self) -> &Item {
        &self.0
    }
}

/// Writes one field of an entry; `optional` fields (`Option<_>`, marked
/// `[optional]` in `log_entries!`) are left out when `None`, so adding one does not
/// change the bytes of the entries that do not use it.
macro_rules! serialize_field {
    ($map:ident, $field:ident) => {
        $map.serialize_entry(stringify!($field), $field)?;
    };
    ($map:ident, $field:ident, optional) => {
        if let Some(value) = $field {
            $map.serialize_entry(stringify!($field), value)?;
        }
    };
}

/// Declares every entry kind. See the module docs for what it generates.
///
/// `start` holds the one kind callers never append themselves (`segment_start`,
/// written only by [`crate::SessionWriter::start_segment`]), so it gets no
/// [`EntryBody`] variant; `bodies` holds the rest.
macro_rules! log_entries {
    (
        start {
            $(#[doc = $sdoc:literal])*
            $SVariant:ident = $skind:literal {
                $( $(#[doc = $sfdoc:literal])* $sfield:ident : $sty:ty ),* $(,)?
            }
        }
        bodies {
            $(
                $(#[doc = $vdoc:literal])*
                $Variant:ident = $kind:literal {
                    $( $(#[doc = $fdoc:literal])* $field:ident : $ty:ty $([$omit:ident])? ),* $(,)?
                }
            )*
        }
    ) => {
        /// One line of a session log: a flat JSON object tagged by `"kind"`.
        ///
        /// Every variant carries the chain fields: `seq` (global across segments,
        /// from 1, +1 per entry), `prev` (lowercase hex SHA-256 of the raw bytes of
        /// the previous line without its `\n`; 64 zeros for a session's first entry)
        /// and `ts` (unix milliseconds when it was written).
        #[derive(Debug, Clone, PartialEq)]
        pub enum LogEntry {
            $(#[doc = $sdoc])*
            $SVariant {
                /// Sequence number.
                seq: u64,
                /// Hex SHA-256 of the previous line.
                prev: String,
                /// Unix milliseconds when written.
                ts: u64,
                $( $(#[doc = $sfdoc])* $sfield: $sty, )*
            },
            $(
                $(#[doc = $vdoc])*
                $Variant {
                    /// Sequence number.
                    seq: u64,
                    /// Hex SHA-256 of the previous line.
                    prev: String,
                    /// Unix milliseconds when written.
                    ts: u64,
                    $( $(#[doc = $fdoc])* $field: $ty, )*
                },
            )*
            /// An entry of a kind this build does not know (written by a newer
            /// version). Readers keep it; the writer refuses to continue such a log.
            Unknown {
                /// Sequence number.
                seq: u64,
                /// Hex SHA-256 of the previous line.
                prev: String,
                /// Unix milliseconds when written.
                ts: u64,
                /// The unknown kind name.
                kind: String,
                /// Its other fields, in their original order.
                fields: Map<String, Value>,
            },
        }

        /// What a caller appends: an entry without its chain fields, which
        /// [`crate::SessionWriter::append`] fills in, so they cannot be wrong.
        #[derive(Debug, Clone, PartialEq)]
        pub enum EntryBody {
            $(
                $(#[doc = $vdoc])*
                $Variant {
                    $( $(#[doc = $fdoc])* $field: $ty, )*
                },
            )*
        }

        /// A kind name decoded from `"kind"`.
        enum Kind {
            $SVariant,
            $( $Variant, )*
            Unknown(String),
        }

        impl Kind {
            fn from_name(name: &str) -> Kind {
                match name {
                    $skind => Kind::$SVariant,
                    $( $kind => Kind::$Variant, )*
                    other => Kind::Unknown(other.to_owned()),
                }
            }
        }

        impl LogEntry {
            /// Sequence number (global across segments, from 1).
            pub fn seq(&self) -> u64 {
                match self {
                    LogEntry::$SVariant { seq, .. } => *seq,
                    $( LogEntry::$Variant { seq, .. } => *seq, )*
                    LogEntry::Unknown { seq, .. } => *seq,
                }
            }

            /// Hex SHA-256 of the previous line (64 zeros for the first entry).
            pub fn prev(&self) -> &str {
                match self {
                    LogEntry::$SVariant { prev, .. } => prev,
                    $( LogEntry::$Variant { prev, .. } => prev, )*
                    LogEntry::Unknown { prev, .. } => prev,
                }
            }

            /// Unix milliseconds when the entry was written.
            pub fn ts(&self) -> u64 {
                match self {
                    LogEntry::$SVariant { ts, .. } => *ts,
                    $( LogEntry::$Variant { ts, .. } => *ts, )*
                    LogEntry::Unknown { ts, .. } => *ts,
                }
            }

            /// The `"kind"` tag, e.g. `"assistant_item"`.
            pub fn kind_name(&self) -> &str {
                match self {
                    LogEntry::$SVariant { .. } => $skind,
                    $( LogEntry::$Variant { .. } => $kind, )*
                    LogEntry::Unknown { kind, .. } => kind,
                }
            }
        }

        impl EntryBody {
            /// The `"kind"` tag this body will be written with.
            pub fn kind_name(&self) -> &'static str {
                match self {
                    $( EntryBody::$Variant { .. } => $kind, )*
                }
            }

            /// The full entry, with its chain fields.
            pub(crate) fn into_entry(self, seq: u64, prev: String, ts: u64) -> LogEntry {
                match self {
                    $( EntryBody::$Variant { $($field),* } => {
                        LogEntry::$Variant { seq, prev, ts, $($field),* }
                    } )*
                }
            }
        }

        impl Serialize for LogEntry {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                // A map rather than a struct so `Unknown` can write its dynamic keys;
                // serde_json encodes both identically.
                let mut map = serializer.serialize_map(None)?;
                match self {
                    LogEntry::$SVariant { seq, prev, ts, $($sfield),* } => {
                        map.serialize_entry("kind", $skind)?;
                        map.serialize_entry("seq", seq)?;
                        map.serialize_entry("prev", prev)?;
                        map.serialize_entry("ts", ts)?;
                        $( map.serialize_entry(stringify!($sfield), $sfield)?; )*
                    }
                    $( LogEntry::$Variant { seq, prev, ts, $($field),* } => {
                        map.serialize_entry("kind", $kind)?;
                        map.serialize_entry("seq", seq)?;
                        map.serialize_entry("prev", prev)?;
                        map.serialize_entry("ts", ts)?;
                        $( serialize_field!(map, $field $(, $omit)?); )*
                    } )*
                    LogEntry::Unknown { seq, prev, ts, kind, fields } => {
                        map.serialize_entry("kind", kind)?;
                        map.serialize_entry("seq", seq)?;
                        map.serialize_entry("prev", prev)?;
                        map.serialize_entry("ts", ts)?;
                        for (key, value) in fields {
                            map.serialize_entry(key, value)?;
                        }
                    }
                }
                map.end()
            }
        }

        /// Decodes the fields of a `kind` from the rest of the object.
        fn deserialize_fields<'de, D: Deserializer<'de>>(
            kind: Kind,
            rest: D,
        ) -> Result<LogEntry, D::Error> {
            match kind {
                Kind::$SVariant => {
                    #[derive(Deserialize)]
                    struct Fields {
                        seq: u64,
                        prev: String,
                        ts: u64,
                        $( $sfield: $sty, )*
                    }
                    let Fields { seq, prev, ts, $($sfield),* } = Fields::deserialize(rest)?;
                    Ok(LogEntry::$SVariant { seq, prev, ts, $($sfield),* })
                }
                $( Kind::$Variant => {
                    #[derive(Deserialize)]
                    struct Fields {
                        seq: u64,
                        prev: String,
                        ts: u64,
                        $( $field: $ty, )*
                    }
                    let Fields { seq, prev, ts, $($field),* } = Fields::deserialize(rest)?;
                    Ok(LogEntry::$Variant { seq, prev, ts, $($field),* })
                } )*
                Kind::Unknown(kind) => {
                    #[derive(Deserialize)]
                    struct Fields {
                        seq: u64,
                        prev: String,
                        ts: u64,
                        #[serde(flatten)]
                        fields: Map<String, Value>,
                    }
                    let Fields { seq, prev, ts, fields } = Fields::deserialize(rest)?;
                    Ok(LogEntry::Unknown { seq, prev, ts, kind, fields })
                }
            }
        }
    };
}

log_entries! {
    start {
        /// First line of every segment after the first (and allowed as the first line
        /// of the first): the history the segment starts from, e.g. after compaction.
        SegmentStart = "segment_start" {
            /// Log format version of this segment ([`crate::FORMAT_VERSION`]).
            format_version: u32,
            /// The conversation history so far; replay starts over from it.
            history: Vec<LoggedItem>,
            /// File name of the previous segment (e.g. `000001.jsonl`), if any.
            previous_segment: Option<String>,
        }
    }
    bodies {
        /// What the user sent, and the message as the model sees it.
        UserInput = "user_input" {
            /// The input segments exactly as received.
            segments: Vec<Segment>,
            /// The resulting conversation item.
            item: LoggedItem,
        }
        /// An invocation began.
        InvokeStart = "invoke_start" {
            /// What started it. (Named `invoke_kind` because `kind` is the tag.)
            invoke_kind: InvokeKind,
            /// Invocation counter, from 1.
            turn: u64,
        }
        /// A completed item from the model (message, tool call, reasoning, ...).
        AssistantItem = "assistant_item" {
            /// The item.
            item: LoggedItem,
        }
        /// A tool's result.
        ToolResult = "tool_result" {
            /// The `ToolResult` item.
            item: LoggedItem,
        }
        /// An item the pod injects itself: notifications, child pod events.
        SystemItem = "system_item" {
            /// Where it came from, e.g. `"notify"`, `"pod_event"`.
            origin: String,
            /// The item.
            item: LoggedItem,
            /// `Some(true)`: a notification committed on receipt that waits for the
            /// next LLM call; it joins the history where a later `queue_joined` entry
            /// lists its seq (never between a tool call and its result). Absent: it
            /// joined the history here (logs written before queueing was recorded).
            queued: Option<bool> [optional],
        }
        /// Queued items (`system_item` with `queued`) joined the history here, in
        /// this order: the worker took them in before an LLM call.
        QueueJoined = "queue_joined" {
            /// The seqs of the queued `system_item` entries that joined.
            seqs: Vec<u64>,
        }
        /// Token usage of one LLM call.
        Usage = "usage" {
            /// LLM call counter.
            llm_call: u64,
            /// The counts.
            usage: llm_types::Usage,
        }
        /// An invocation ended.
        TurnEnd = "turn_end" {
            /// Invocation counter.
            turn: u64,
            /// How it ended.
            result: TurnResult,
        }
        /// An invocation failed with an error.
        RunError = "run_error" {
            /// What went wrong.
            message: String,
        }
        /// This pod spawned a child pod (so a restored pod gets its children back).
        ChildSpawned = "child_spawned" {
            /// The child's short name.
            name: String,
            /// The spawner's record of the child (socket, scope, instance id, ...),
            /// as the pod crate defines it.
            record: Value,
        }
        /// A child pod was stopped or found gone; its scope is back.
        ChildRemoved = "child_removed" {
            /// The child's short name.
            name: String,
            /// Why (stopped by this pod, exited, unreachable at restore, ...).
            reason: String,
        }
        /// The pod began compacting its context (a summary call follows; if the
        /// pod stops before `compaction_end`, nothing changed).
        CompactionStart = "compaction_start" {
            /// The estimated tokens of the request that called for it.
            tokens_before: u64,
        }
        /// The context was compacted: this segment's `segment_start` holds the
        /// summary the conversation goes on from (the previous segment keeps
        /// everything).
        CompactionEnd = "compaction_end" {
            /// The estimated tokens before.
            tokens_before: u64,
            /// The estimated tokens of the new segment's history.
            tokens_after: u64,
        }
        /// One of the user's hooks ran (`[[hooks]]`): what for, how it ended
        /// and what it decided.
        Hook = "hook" {
            /// The run.
            run: HookRun,
        }
        /// A tool call of this pod waits for a person's answer (an `ask`
        /// permission rule): until its `approval_answer`, a restored pod keeps
        /// the call open and asks again.
        ApprovalRequest = "approval_request" {
            /// The request.
            request: ApprovalRequest,
            /// The tool call it holds.
            call_id: String,
        }
        /// How a request of this pod ended.
        ApprovalAnswer = "approval_answer" {
            /// The answer.
            resolved: ApprovalResolved,
        }
        /// How far this pod has read a child's output (`ReadPodOutput`).
        ChildCursor = "child_cursor" {
            /// The child's short name.
            name: String,
            /// Entries of the child's snapshot already read.
            cursor: u64,
        }
    }
}

impl<'de> Deserialize<'de> for LogEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = LogEntry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a session log entry (a JSON object with a \"kind\")")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LogEntry, A::Error> {
        match map.next_key_seed(FirstKeySeed)? {
            None => Err(de::Error::missing_field("kind")),
            // Fast path: the kind is known before any field, so the remaining keys
            // decode directly into the variant's fields.
            Some(FirstKey::Kind) => {
                let kind = map.next_value_seed(KindSeed)?;
                deserialize_fields(kind, MapAccessDeserializer::new(map))
            }
            // Slow path for objects that were reordered on the way (not ours).
            Some(FirstKey::Other(first)) => {
                let mut object = Map::new();
                object.insert(first, map.next_value()?);
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    object.insert(key, value);
                }
                let kind = match object.shift_remove("kind") {
                    Some(Value::String(name)) => Kind::from_name(&name),
                    Some(other) => {
                        return Err(de::Error::invalid_type(
                            unexpected(&other),
                            &"a kind name string",
                        ));
                    }
                    None => return Err(de::Error::missing_field("kind")),
                };
                deserialize_fields(kind, Value::Object(object)).map_err(de::Error::custom)
            }
        }
    }
}

/// The first key of an entry object: `kind` (no allocation) or anything else.
enum FirstKey {
    Kind,
    Other(String),
}

struct FirstKeySeed;

impl<'de> DeserializeSeed<'de> for FirstKeySeed {
    type Value = FirstKey;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<FirstKey, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for FirstKeySeed {
    type Value = FirstKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<FirstKey, E> {
        Ok(if key == "kind" {
            FirstKey::Kind
        } else {
            FirstKey::Other(key.to_owned())
        })
    }
}

struct KindSeed;

impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = Kind;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Kind, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KindSeed {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a kind name string")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Kind, E> {
        Ok(Kind::from_name(name))
    }
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("a number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_types::Role;

    fn user_input() -> EntryBody {
        EntryBody::UserInput {
            segments: vec![Segment::text("hi")],
            item: Item::text(Role::User, "hi").into(),
        }
    }

    #[test]
    fn keys_are_written_in_order_kind_seq_prev_ts_fields() {
        let entry = user_input().into_entry(7, "ab".repeat(32), 1_700_000_000_000);
        let json = serde_json::to_string(&entry).unwrap();
        let prefix = format!(
            r#"{{"kind":"user_input","seq":7,"prev":"{}","ts":1700000000000,"segments":["#,
            "ab".repeat(32)
        );
        assert!(json.starts_with(&prefix), "{json}");
        assert!(json.ends_with(
            r#""item":{"type":"message","role":"user","content":[{"type":"text","text":"hi"}]}}"#
        ));
        let back: LogEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, entry);
        assert_eq!(back.seq(), 7);
        assert_eq!(back.ts(), 1_700_000_000_000);
        assert_eq!(back.prev(), "ab".repeat(32));
        assert_eq!(back.kind_name(), "user_input");
    }

    #[test]
    fn every_body_kind_round_trips() {
        let bodies = vec![
            user_input(),
            EntryBody::InvokeStart {
                invoke_kind: InvokeKind::UserSend,
                turn: 1,
            },
            EntryBody::AssistantItem {
                item: Item::tool_call("c1", "Read", r#"{"path":"a\nb"}"#).into(),
            },
            EntryBody::ToolResult {
                item: Item::tool_result("c1", "ok", Some("l1\nl2".into()), false).into(),
            },
            EntryBody::SystemItem {
                origin: "notify".into(),
                item: Item::text(Role::System, "note").into(),
                queued: None,
            },
            EntryBody::SystemItem {
                origin: "notify".into(),
                item: Item::text(Role::User, "[notification] later").into(),
                queued: Some(true),
            },
            EntryBody::QueueJoined { seqs: vec![6, 9] },
            EntryBody::Usage {
                llm_call: 3,
                usage: llm_types::Usage {
                    input_tokens: 1,
                    output_tokens: 2,
                    cache_read_tokens: 3,
                    cache_write_tokens: 4,
                },
            },
            EntryBody::TurnEnd {
                turn: 1,
                result: TurnResult::Finished,
            },
            EntryBody::RunError {
                message: "boom".into(),
            },
        ];
        for (i, body) in bodies.into_iter().enumerate() {
            let kind = body.kind_name();
            let entry = body.into_entry(i as u64 + 1, "0".repeat(64), 5);
            assert_eq!(entry.kind_name(), kind);
            let json = serde_json::to_string(&entry).unwrap();
            assert!(!json.contains('\n'));
            assert!(json.starts_with(&format!(r#"{{"kind":"{kind}","seq":"#)));
            let back: LogEntry = serde_json::from_str(&json).unwrap();
            assert_eq!(back, entry, "{json}");
            // The seed decodes snapshot entries from `serde_json::Value`.
            let value: Value = serde_json::from_str(&json).unwrap();
            let back: LogEntry = serde_json::from_value(value).unwrap();
            assert_eq!(back, entry);
        }
    }

    #[test]
    fn invoke_start_uses_invoke_kind_field() {
        let entry = EntryBody::InvokeStart {
            invoke_kind: InvokeKind::Notify,
            turn: 2,
        }
        .into_entry(1, "0".repeat(64), 0);
        let json = serde_json::to_string(&entry).unwrap();
        assert!(
            json.ends_with(r#","invoke_kind":"notify","turn":2}"#),
            "{json}"
        );
    }

    #[test]
    fn an_absent_optional_field_is_not_written_and_decodes_as_none() {
        let item: LoggedItem = Item::text(Role::User, "[notification] hi").into();
        let plain = EntryBody::SystemItem {
            origin: "notify".into(),
            item: item.clone(),
            queued: None,
        }
        .into_entry(1, "0".repeat(64), 0);
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("queued"), "{json}");
        // A line written before the field existed still decodes.
        assert_eq!(serde_json::from_str::<LogEntry>(&json).unwrap(), plain);
        let queued = EntryBody::SystemItem {
            origin: "notify".into(),
            item,
            queued: Some(true),
        }
        .into_entry(1, "0".repeat(64), 0);
        let json = serde_json::to_string(&queued).unwrap();
        assert!(json.ends_with(r#","queued":true}"#), "{json}");
    }

    #[test]
    fn segment_start_round_trips_and_seed_pattern_matches() {
        let entry = LogEntry::SegmentStart {
            seq: 10,
            prev: "f".repeat(64),
            ts: 1,
            format_version: 1,
            history: vec![Item::text(Role::Assistant, "earlier").into()],
            previous_segment: Some("000001.jsonl".into()),
        };
        let value = serde_json::to_value(&entry).unwrap();
        match serde_json::from_value::<LogEntry>(value).unwrap() {
            LogEntry::SegmentStart { history, .. } => {
                let items: Vec<Item> = history.into_iter().map(Into::into).collect();
                assert_eq!(items, vec![Item::text(Role::Assistant, "earlier")]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn keys_in_any_order_and_unknown_fields_are_accepted() {
        let json = r#"{"item":{"type":"message","role":"assistant","content":[]},"future":1,"ts":3,"prev":"x","seq":2,"kind":"assistant_item"}"#;
        let entry: LogEntry = serde_json::from_str(json).unwrap();
        assert_eq!(
            entry,
            LogEntry::AssistantItem {
                seq: 2,
                prev: "x".into(),
                ts: 3,
                item: LoggedItem(Item::Message {
                    role: Role::Assistant,
                    content: vec![],
                    id: None,
                    provider: None,
                }),
            }
        );
        let json = r#"{"kind":"run_error","seq":1,"prev":"p","ts":0,"message":"m","extra":[1]}"#;
        let entry: LogEntry = serde_json::from_str(json).unwrap();
        assert_eq!(entry.kind_name(), "run_error");
    }

    #[test]
    fn unknown_kinds_decode_to_unknown_and_reencode_identically() {
        for json in [
            r#"{"kind":"spawn_record","seq":4,"prev":"p","ts":9,"child":"w","n":[1,2]}"#,
            r#"{"seq":4,"kind":"spawn_record","prev":"p","ts":9,"child":"w"}"#,
        ] {
            let entry: LogEntry = serde_json::from_str(json).unwrap();
            let LogEntry::Unknown {
                kind, seq, fields, ..
            } = &entry
            else {
                panic!("{entry:?}");
            };
            assert_eq!((kind.as_str(), *seq), ("spawn_record", 4));
            assert_eq!(fields["child"], "w");
            assert_eq!(entry.kind_name(), "spawn_record");
        }
        let json = r#"{"kind":"spawn_record","seq":4,"prev":"p","ts":9,"child":"w","n":[1,2]}"#;
        let entry: LogEntry = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&entry).unwrap(), json);
    }

    #[test]
    fn malformed_entries_are_rejected() {
        for json in [
            r#"{}"#,
            r#"{"kind":1,"seq":1,"prev":"p","ts":0}"#,
            r#"{"seq":1,"kind":1,"prev":"p","ts":0}"#,
            r#"{"kind":"run_error","seq":1,"prev":"p","ts":0}"#,
            r#"{"kind":"run_error","seq":"1","prev":"p","ts":0,"message":"m"}"#,
            r#"[1]"#,
        ] {
            assert!(serde_json::from_str::<LogEntry>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn logged_item_is_transparent() {
        let item = Item::tool_result("c", "s", None, true);
        let logged = LoggedItem::from(item.clone());
        assert_eq!(
            serde_json::to_string(&logged).unwrap(),
            serde_json::to_string(&item).unwrap()
        );
        assert_eq!(logged.as_item(), &item);
        let back: Item = logged.into();
        assert_eq!(back, item);
    }
}
