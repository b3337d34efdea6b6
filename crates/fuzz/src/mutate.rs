//! Byte-level mutations of an input: what turns real data into the near misses
//! and oddities that parsers get wrong.
//!
//! Without coverage feedback the mutations have to be good guesses: besides
//! random bit and byte changes they insert what input-facing code treats
//! specially (line ends, JSON and TOML punctuation, NULs, invalid UTF-8, numbers
//! at type limits, deep nesting, long runs) and move whole lines around, since
//! every format fuzzed here is line-based.

use crate::rng::Rng;

/// Single bytes that delimiters, escapes and UTF-8 decoding treat specially.
const INTERESTING_BYTES: &[u8] = &[
    0x00, b'\n', b'\r', b' ', b'\t', b'{', b'}', b'[', b']', b'"', b'\\', b':', b',', b'=', b'.',
    b'-', b'0', b'9', b'e', b'#', b'\'', 0x7f, 0x80, 0xbf, 0xc0, 0xe0, 0xf0, 0xff,
];

/// Tokens worth inserting whole: JSON/TOML/SSE syntax, numbers at the edges of
/// `u32`/`u64`/`i64`/`f64`, escapes and byte sequences that are not UTF-8.
const TOKENS: &[&[u8]] = &[
    b"\0",
    b"\n",
    b"\r\n",
    b"\r",
    b"\n\n",
    b"\r\n\r\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\"\"",
    b"\\",
    b":",
    b",",
    b"null",
    b"true",
    b"false",
    b"{}",
    b"[]",
    b"-0",
    b"0",
    b"-1",
    b"1e999999",
    b"-1e999999",
    b"1.7976931348623157e309",
    b"4.9e-325",
    b"0.30000000000000004",
    b"4294967295",
    b"4294967296",
    b"9007199254740993",
    b"9223372036854775807",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"18446744073709551616",
    b"340282366920938463463374607431768211456",
    b"\\u0000",
    b"\\ud800",
    b"\\udfff\\ud800",
    b"\\uffff",
    b"\\u00e9",
    b"\xef\xbb\xbf",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\xf0\x9f\x8c\x8d",
    b"data: ",
    b"data:",
    b"event: ",
    b"event: error\n",
    b": keep-alive\n",
    b"id: 1\n",
    b"[DONE]",
    b"data: [DONE]\n\n",
    b"\"type\":",
    b"\"kind\":",
    b"\"method\":",
    b"\"event\":",
    b"\"params\":",
    b"\"data\":",
    b"\"seq\":",
    b"\"index\":",
    b"\"id\":",
    b"\"error\":",
    b"[[",
    b"]]",
    b" = ",
    b"'''",
    b"\"\"\"",
    b"inf",
    b"nan",
    b"-inf",
    b"1979-05-27T07:32:00Z",
    b"0x7fffffffffffffff",
    b"~/",
    b"~root/",
    b"../",
    b"/",
    b".",
];

/// Numbers that replace a run of digits: the limits integer fields are checked
/// against, and the first values past them.
const NUMBERS: &[&[u8]] = &[
    b"0",
    b"1",
    b"2",
    b"-1",
    b"255",
    b"256",
    b"65535",
    b"65536",
    b"2147483647",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"9007199254740993",
    b"9223372036854775807",
    b"9223372036854775808",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999999999",
    b"1e308",
    b"1.5",
    b"0.0",
];

/// Nesting depths around the limits parsers use (serde_json's 128, toml's) and far past them.
const DEPTHS: &[usize] = &[64, 127, 128, 129, 256, 1000, 5000];

/// How many mutation kinds [`mutate_once`] chooses from.
const KINDS: usize = 20;

/// Applies 1 to 8 stacked random mutations to `data` (more often few), taking
/// splice material from `corpus`, and keeps it at most `max_len` bytes long.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>], max_len: usize) {
    let rounds = rng.len_up_to(8);
    for _ in 0..rounds {
        mutate_once(rng, data, corpus, max_len);
    }
    data.truncate(max_len);
}

/// Applies one random mutation to `data`.
pub fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>], max_len: usize) {
    let room = max_len.saturating_sub(data.len());
    match rng.below(KINDS) {
        0 | 1 => flip_bit(rng, data),
        2 => set_byte(rng, data, None),
        3 => {
            let value = rng_pick_byte(rng);
            set_byte(rng, data, value);
        }
        4 => {
            let len = rng.len_up_to(16).min(room);
            let bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            insert(rng, data, &bytes);
        }
        5 | 6 => {
            if let Some(&token) = rng.pick(TOKENS)
                && token.len() <= room
            {
                insert(rng, data, token);
            }
        }
        7 => insert_nesting(rng, data, room),
        8 => insert_run(rng, data, room),
        9 => delete_range(rng, data),
        10 => duplicate_chunk(rng, data, room),
        11 => overwrite_chunk(rng, data),
        12 => splice(rng, data, corpus),
        13 => {
            let at = rng.below(data.len() + 1);
            data.truncate(at);
        }
        14 => swap_lines(rng, data),
        15 => duplicate_line(rng, data, room),
        16 => delete_line(rng, data),
        17 => replace_number(rng, data),
        18 => swap_bytes(rng, data),
        _ => insert_line_from(rng, data, corpus, room),
    }
}

/// One of the interesting single bytes.
fn rng_pick_byte(rng: &mut Rng) -> Option<u8> {
    rng.pick(INTERESTING_BYTES).copied()
}

fn flip_bit(rng: &mut Rng, data: &mut [u8]) {
    let at = rng.below(data.len());
    let bit = rng.below(8);
    if let Some(b) = data.get_mut(at) {
        *b ^= 1 << bit;
    }
}

/// Sets one byte to `value`, or to a random byte when `None`.
fn set_byte(rng: &mut Rng, data: &mut [u8], value: Option<u8>) {
    let at = rng.below(data.len());
    let value = value.unwrap_or_else(|| rng.byte());
    if let Some(b) = data.get_mut(at) {
        *b = value;
    }
}

/// Inserts `bytes` at a random position.
fn insert(rng: &mut Rng, data: &mut Vec<u8>, bytes: &[u8]) {
    let at = rng.below(data.len() + 1);
    data.splice(at..at, bytes.iter().copied());
}

/// Inserts deep nesting: JSON arrays or objects, TOML inline arrays or
/// tables, closed or left open.
fn insert_nesting(rng: &mut Rng, data: &mut Vec<u8>, room: usize) {
    let Some(&depth) = rng.pick(DEPTHS) else {
        return;
    };
    let (open, close): (&[u8], &[u8]) = match rng.below(4) {
        0 => (b"[", b"]"),
        1 => (b"{\"a\":", b"}"),
        2 => (b"{ a = ", b" }"),
        _ => (b"[[", b"]]"),
    };
    let closed = rng.one_in(2);
    let len = depth * (open.len() + if closed { close.len() } else { 0 }) + 1;
    if len > room {
        return;
    }
    let mut bytes = open.repeat(depth);
    bytes.push(b'1');
    if closed {
        bytes.extend(close.repeat(depth));
    }
    insert(rng, data, &bytes);
}

/// Inserts a run of one byte: long lines, long strings, long whitespace.
fn insert_run(rng: &mut Rng, data: &mut Vec<u8>, room: usize) {
    let len = if rng.one_in(8) {
        // Past the small line limits and the readers' 64 KiB buffer.
        rng.below(70_000)
    } else {
        rng.len_up_to(300)
    }
    .min(room);
    let byte = match rng.below(4) {
        0 => b' ',
        1 => b'a',
        2 => b'\n',
        _ => rng_pick_byte(rng).unwrap_or(b'x'),
    };
    let bytes = vec![byte; len];
    insert(rng, data, &bytes);
}

/// A random non-empty range of `data`, or `None` when it is empty.
fn range(rng: &mut Rng, data: &[u8]) -> Option<(usize, usize)> {
    if data.is_empty() {
        return None;
    }
    let start = rng.below(data.len());
    let len = rng.len_up_to(data.len() - start);
    Some((start, start + len))
}

fn delete_range(rng: &mut Rng, data: &mut Vec<u8>) {
    if let Some((start, end)) = range(rng, data) {
        data.drain(start..end);
    }
}

/// Copies a chunk of the input to another place in it.
fn duplicate_chunk(rng: &mut Rng, data: &mut Vec<u8>, room: usize) {
    if let Some((start, end)) = range(rng, data) {
        let chunk: Vec<u8> = data[start..end.min(start + room)].to_vec();
        insert(rng, data, &chunk);
    }
}

/// Copies a chunk of the input over another part of it, keeping the length.
fn overwrite_chunk(rng: &mut Rng, data: &mut [u8]) {
    if let Some((start, end)) = range(rng, data) {
        let chunk = data[start..end].to_vec();
        let to = rng.below(data.len());
        let n = chunk.len().min(data.len() - to);
        data[to..to + n].copy_from_slice(&chunk[..n]);
    }
}

/// The head of this input joined to the tail of another (or of itself).
fn splice(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let Some(other) = rng.pick(corpus) else {
        return;
    };
    let cut = rng.below(data.len() + 1);
    let from = rng.below(other.len() + 1);
    data.truncate(cut);
    data.extend_from_slice(&other[from..]);
}

/// Byte ranges of the lines of `data`, each with its `\n` if it has one.
fn lines(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < data.len() {
        out.push((start, data.len()));
    }
    out
}

fn swap_lines(rng: &mut Rng, data: &mut Vec<u8>) {
    let ranges = lines(data);
    if ranges.len() < 2 {
        return;
    }
    let a = rng.below(ranges.len());
    let b = rng.below(ranges.len());
    if a == b {
        return;
    }
    let mut out = Vec::with_capacity(data.len());
    for (i, &(s, e)) in ranges.iter().enumerate() {
        let (s, e) = if i == a {
            ranges[b]
        } else if i == b {
            ranges[a]
        } else {
            (s, e)
        };
        out.extend_from_slice(&data[s..e]);
    }
    *data = out;
}

fn duplicate_line(rng: &mut Rng, data: &mut Vec<u8>, room: usize) {
    let ranges = lines(data);
    let Some(&(s, e)) = rng.pick(&ranges) else {
        return;
    };
    if e - s > room {
        return;
    }
    let line = data[s..e].to_vec();
    // Right after itself (a replayed line) or anywhere at a line start.
    let at = if rng.one_in(2) {
        e
    } else {
        rng.pick(&ranges).map_or(0, |&(start, _)| start)
    };
    data.splice(at..at, line);
}

fn delete_line(rng: &mut Rng, data: &mut Vec<u8>) {
    let ranges = lines(data);
    if let Some(&(s, e)) = rng.pick(&ranges) {
        data.drain(s..e);
    }
}

/// Inserts a whole line of another corpus entry at a line start of this one.
fn insert_line_from(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>], room: usize) {
    let Some(other) = rng.pick(corpus) else {
        return;
    };
    let theirs = lines(other);
    let Some(&(s, e)) = rng.pick(&theirs) else {
        return;
    };
    if e - s > room {
        return;
    }
    let mut line = other[s..e].to_vec();
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    let ours = lines(data);
    let at = rng.pick(&ours).map_or(data.len(), |&(start, _)| start);
    data.splice(at..at, line);
}

/// Replaces a run of ASCII digits (a number: a seq, an index, a length) with a limit value.
fn replace_number(rng: &mut Rng, data: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let from = rng.below(data.len());
    let Some(start) = data[from..]
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| from + p)
    else {
        return;
    };
    let end = data[start..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(data.len(), |p| start + p);
    let Some(&number) = rng.pick(NUMBERS) else {
        return;
    };
    data.splice(start..end, number.iter().copied());
}

fn swap_bytes(rng: &mut Rng, data: &mut [u8]) {
    let a = rng.below(data.len());
    let b = rng.below(data.len());
    if a < data.len() && b < data.len() {
        data.swap(a, b);
    }
}

/// Replaces one node of the JSON on one line of `data` (the line's own text,
/// or what follows an SSE `data:`) with a value of another type or at a
/// limit, keeping the JSON valid, so the change reaches the decoders' logic
/// instead of their syntax errors. False when no line it tried holds JSON.
pub fn mutate_json_line(rng: &mut Rng, data: &mut Vec<u8>) -> bool {
    /// Where the JSON of a line starts: after an SSE `data:` and one space.
    fn body_start(line: &[u8]) -> usize {
        if line.starts_with(b"data: ") {
            6
        } else if line.starts_with(b"data:") {
            5
        } else {
            0
        }
    }
    // Only lines that look like JSON objects or arrays are parsed.
    let candidates: Vec<(usize, usize)> = lines(data)
        .into_iter()
        .filter(|&(s, e)| matches!(data[s..e].get(body_start(&data[s..e])), Some(b'{' | b'[')))
        .collect();
    for _ in 0..8 {
        let Some(&(start, end)) = rng.pick(&candidates) else {
            return false;
        };
        let line = &data[start..end];
        let body_end = line.len() - usize::from(line.ends_with(b"\n"));
        let body_end = body_end - usize::from(line[..body_end].ends_with(b"\r"));
        let prefix = body_start(line);
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&line[prefix..body_end])
        else {
            continue;
        };
        let nodes = count_nodes(&value);
        let mut index = rng.below(nodes);
        replace_node(rng, &mut value, &mut index);
        let Ok(json) = serde_json::to_vec(&value) else {
            continue;
        };
        data.splice(start + prefix..start + body_end, json);
        return true;
    }
    false
}

fn count_nodes(value: &serde_json::Value) -> usize {
    1 + match value {
        serde_json::Value::Array(items) => items.iter().map(count_nodes).sum(),
        serde_json::Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Walks to the `index`-th node in pre-order and changes it.
fn replace_node(rng: &mut Rng, value: &mut serde_json::Value, index: &mut usize) -> bool {
    use serde_json::Value;
    if *index == 0 {
        change_node(rng, value);
        return true;
    }
    *index -= 1;
    match value {
        Value::Array(items) => items.iter_mut().any(|v| replace_node(rng, v, index)),
        Value::Object(map) => map.values_mut().any(|v| replace_node(rng, v, index)),
        _ => false,
    }
}

/// One change to one JSON node: another type, a limit value, a removed or
/// duplicated member.
fn change_node(rng: &mut Rng, value: &mut serde_json::Value) {
    use serde_json::{Value, json};
    match (rng.below(4), &mut *value) {
        (0, Value::Object(map)) if !map.is_empty() => {
            let at = rng.below(map.len());
            if let Some(key) = map.keys().nth(at).cloned() {
                map.shift_remove(&key);
            }
        }
        (0, Value::Array(items)) if !items.is_empty() => {
            let at = rng.below(items.len());
            let item = items[at].clone();
            items.insert(at, item);
        }
        (1, Value::Array(items)) if !items.is_empty() => {
            items.remove(rng.below(items.len()));
        }
        (1, Value::Object(map)) => {
            map.insert(String::new(), Value::Null);
        }
        _ => {
            *value = match rng.below(16) {
                0 => Value::Null,
                1 => json!(true),
                2 => json!(0),
                3 => json!(-1),
                4 => json!(u64::MAX),
                5 => json!(i64::MIN),
                6 => json!(1e308),
                7 => json!(0.5),
                8 => json!(""),
                9 => json!("x".repeat(rng.len_up_to(5000))),
                10 => json!("\u{0}\u{feff}é🌍\n"),
                11 => json!([]),
                12 => json!({}),
                13 => json!(u32::MAX),
                14 => json!([value.clone(), value.clone()]),
                _ => json!(4_294_967_296_u64),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_mutations_keep_json_and_sse_framing() {
        let mut rng = Rng::new(5);
        let mut changed = 0;
        for _ in 0..500 {
            let mut data = b"event: x\ndata: {\"a\":[1,{\"b\":\"c\"}],\"d\":null}\r\n\r\n".to_vec();
            assert!(mutate_json_line(&mut rng, &mut data));
            let text = String::from_utf8(data).unwrap();
            let payload = text
                .strip_prefix("event: x\ndata: ")
                .and_then(|t| t.strip_suffix("\r\n\r\n"))
                .unwrap();
            serde_json::from_str::<serde_json::Value>(payload).unwrap();
            changed += usize::from(payload != r#"{"a":[1,{"b":"c"}],"d":null}"#);
        }
        assert!(changed > 400, "{changed}");
        assert!(!mutate_json_line(&mut rng, &mut b"not json\n".to_vec()));
    }

    #[test]
    fn mutations_stay_within_the_length_limit_and_handle_empty_inputs() {
        let corpus = vec![b"{\"a\":1}\n{\"b\":[2,3]}\n".to_vec(), Vec::new()];
        let mut rng = Rng::new(42);
        for i in 0..20_000 {
            let mut data = corpus[i % 2].clone();
            mutate(&mut rng, &mut data, &corpus, 4096);
            assert!(data.len() <= 4096);
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_mutants() {
        let corpus = vec![b"data: {\"x\":12}\n\n".to_vec()];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..200)
                .map(|_| {
                    let mut d = corpus[0].clone();
                    mutate(&mut rng, &mut d, &corpus, 1 << 16);
                    d
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn line_operations_keep_the_bytes_of_whole_lines() {
        let mut rng = Rng::new(9);
        for _ in 0..100 {
            let mut data = b"a\nbb\nccc\n".to_vec();
            swap_lines(&mut rng, &mut data);
            let mut sorted = data.split(|&b| b == b'\n').collect::<Vec<_>>();
            sorted.sort();
            assert_eq!(sorted, vec![&b""[..], b"a", b"bb", b"ccc"]);
        }
        let mut data = b"x=1234;".to_vec();
        replace_number(&mut Rng::new(1), &mut data);
        assert!(data.starts_with(b"x=") && data.ends_with(b";"), "{data:?}");
    }
}
