//! `protocol`: each line of the input decoded as a [`Method`] (what a client
//! sends a pod) and as an [`Event`] (what a pod sends a client), the way
//! `JsonLineReader::next` decodes them (UTF-8 first, then `serde_json::from_str`).
//!
//! Invariants: decoding returns a value or an error, never panics; a decoded
//! value has a name, encodes, and decodes back to the same value. The one
//! exception allowed is an event carrying a JSON float inside a raw value
//! (`entry`, `snapshot`): serde_json is built without `float_roundtrip`, so a
//! float's last digit may change on the way, which is serde_json's, not ours.

use protocol::{Event, Method};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::driver::{Feedback, Harness};
use crate::error::FuzzError;
use crate::mutate::mutate_json_line;
use crate::rng::Rng;
use crate::targets::{documented_protocol_lines, shorten, variant_name};

/// Builds the harness.
pub(super) fn build() -> Result<Box<dyn Harness>, FuzzError> {
    Ok(Box::new(ProtocolDecode))
}

struct ProtocolDecode;

/// Lines beyond the documented ones: shapes the decoder treats specially.
const EXTRA_SEEDS: &[&str] = &[
    // Content before the name: the buffered path of the adjacent-tag decoder.
    r#"{"params":{"message":"later"},"method":"notify"}"#,
    r#"{"data":{"seq":3},"event":"ack"}"#,
    // Unknown names, with and without content; unit variants given content.
    r#"{"method":"future_thing","params":{"x":[1,2]}}"#,
    r#"{"event":"future_event"}"#,
    r#"{"method":"cancel","params":null}"#,
    r#"{"method":"run","params":{"input":[{"kind":"future_kind","x":1}]}}"#,
    // Raw values with floats, escapes and big integers.
    r#"{"event":"entry","data":{"kind":"usage","seq":18446744073709551615,"f":1.5e300,"s":"\u00e9\ud83c\udf0d"}}"#,
];

impl Harness for ProtocolDecode {
    fn seeds(&mut self) -> Result<Vec<Vec<u8>>, FuzzError> {
        let mut seeds: Vec<Vec<u8>> = documented_protocol_lines()
            .into_iter()
            .chain(EXTRA_SEEDS.iter().copied())
            .map(|l| l.as_bytes().to_vec())
            .collect();
        seeds.push(EXTRA_SEEDS.join("\n").into_bytes());
        Ok(seeds)
    }

    fn check(&mut self, input: &[u8]) -> Result<Feedback, FuzzError> {
        let mut feedback = Feedback::default();
        // Blank lines are skipped by the reader; decoding them only costs time.
        for line in input
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        {
            let method = decode_and_round_trip::<Method>(line, "method", Method::name, |_| false);
            let event = decode_and_round_trip::<Event>(line, "event", Event::name, has_float);
            feedback = feedback
                .and(Feedback::of(&method))
                .and(Feedback::of(&event));
        }
        Ok(feedback)
    }

    fn mutate(&mut self, rng: &mut Rng, input: &mut Vec<u8>) -> bool {
        mutate_json_line(rng, input)
    }

    fn max_len(&self) -> usize {
        64 * 1024
    }
}

/// Decodes `line` as a `T`; if it decodes, checks its name and the round trip
/// (unless `may_differ` excuses the value). Returns a summary for feedback.
fn decode_and_round_trip<T>(
    line: &[u8],
    what: &str,
    name_of: fn(&T) -> &str,
    may_differ: fn(&T) -> bool,
) -> String
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(text) = std::str::from_utf8(line) else {
        // Not what the reader decodes, but a decoder must not panic on it either.
        let slice = serde_json::from_slice::<T>(line);
        return format!("{what} not utf8 {}", slice.is_ok());
    };
    let value: T = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => return format!("{what} error {e}"),
    };
    // Feedback: the variant, not the name an unknown one arrived with.
    let name = variant_name(&format!("{value:?}")).to_owned();
    // Every value has a wire name (an unknown one keeps its own).
    let _ = name_of(&value);
    let encoded = serde_json::to_string(&value)
        .unwrap_or_else(|e| panic!("a decoded {what} does not encode: {e}; value {value:?}"));
    let again: T = serde_json::from_str(&encoded).unwrap_or_else(|e| {
        panic!(
            "a decoded {what} re-encodes as {} which does not decode: {e}",
            shorten(&encoded, 300)
        )
    });
    if again != value && !may_differ(&value) {
        panic!(
            "a {what} changed on a round trip: decoded {}, re-encoded {}, decoded again {}",
            shorten(&format!("{value:?}"), 300),
            shorten(&encoded, 300),
            shorten(&format!("{again:?}"), 300)
        );
    }
    format!("{what} {name}")
}

/// Whether an event carries a JSON float anywhere (see the module docs).
fn has_float(event: &Event) -> bool {
    fn walk(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(n) => n.is_f64(),
            serde_json::Value::Array(items) => items.iter().any(walk),
            serde_json::Value::Object(map) => map.values().any(walk),
            _ => false,
        }
    }
    serde_json::to_value(event).is_ok_and(|v| walk(&v))
}
