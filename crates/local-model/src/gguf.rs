//! Reads one string from a GGUF file's metadata (the chat template), walking the
//! key/value section as the format lays it out: magic `GGUF`, version (2 or 3),
//! tensor count, key/value count, then each key (length-prefixed UTF-8), its
//! type and its value; arrays (the vocabulary is a 150k-string array) are skipped
//! element by element without being kept.

use std::io::{self, BufRead, Read};
use std::string::FromUtf8Error;

/// The metadata key holding the Jinja chat template.
pub(crate) const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// Longest key or string value accepted (a guard against a corrupt length).
const MAX_STRING: u64 = 64 << 20;

/// Why the metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Reading the file failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The first bytes cannot be read.
    #[error("cannot read the header: {0}")]
    Header(#[source] io::Error),
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file (bad magic)")]
    BadMagic,
    /// A format version other than 2 or 3.
    #[error("GGUF version {0} is not supported (2 or 3)")]
    Version(u32),
    /// A value type this reader does not know.
    #[error("unknown value type {0}")]
    UnknownType(u32),
    /// The file ends before the metadata does.
    #[error("the file ends inside the metadata")]
    Truncated,
    /// A string's length prefix cannot be read.
    #[error("cannot read a string length: {0}")]
    StringLength(#[source] io::Error),
    /// A string's length is beyond [`MAX_STRING`].
    #[error("a string claims {0} bytes; the file is corrupt")]
    StringTooLong(u64),
    /// A string's bytes cannot be read.
    #[error("cannot read a string: {0}")]
    String(#[source] io::Error),
    /// A string's bytes are not UTF-8.
    #[error("a string is not UTF-8")]
    NotUtf8(#[source] FromUtf8Error),
    /// An array's byte size does not fit in 64 bits.
    #[error("an array's size overflows; the file is corrupt")]
    ArrayOverflow,
    /// An array of arrays (GGUF allows it; models do not use it).
    #[error("nested arrays are not supported")]
    NestedArray,
    /// The key holds something other than a string.
    #[error("{key} is of type {kind}, not a string")]
    NotAString {
        /// The key.
        key: String,
        /// Its value type.
        kind: u32,
    },
    /// The file has no such key (for callers that require it).
    #[error("it has no {key}")]
    MissingKey {
        /// The key.
        key: String,
    },
}

const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;

/// The byte size of a fixed-size value type, or `None` for strings and arrays.
fn fixed_size(kind: u32) -> Result<Option<u64>, GgufError> {
    Ok(Some(match kind {
        0 | 1 | 7 => 1, // u8, i8, bool
        2 | 3 => 2,     // u16, i16
        4..=6 => 4,     // u32, i32, f32
        10..=12 => 8,   // u64, i64, f64
        T_STRING | T_ARRAY => return Ok(None),
        other => return Err(GgufError::UnknownType(other)),
    }))
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn skip(r: &mut impl BufRead, mut n: u64) -> Result<(), GgufError> {
    while n > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(GgufError::Truncated);
        }
        let take = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        r.consume(take);
        n -= take as u64;
    }
    Ok(())
}

fn string_len(r: &mut impl Read) -> Result<u64, GgufError> {
    let len = read_u64(r).map_err(GgufError::StringLength)?;
    if len > MAX_STRING {
        return Err(GgufError::StringTooLong(len));
    }
    Ok(len)
}

fn read_string(r: &mut impl Read) -> Result<String, GgufError> {
    let len = string_len(r)?;
    let mut bytes = vec![0u8; len as usize];
    r.read_exact(&mut bytes).map_err(GgufError::String)?;
    String::from_utf8(bytes).map_err(GgufError::NotUtf8)
}

fn skip_value(r: &mut impl BufRead, kind: u32) -> Result<(), GgufError> {
    if let Some(size) = fixed_size(kind)? {
        return skip(r, size);
    }
    if kind == T_STRING {
        let len = string_len(r)?;
        return skip(r, len);
    }
    let elem = read_u32(r)?;
    let count = read_u64(r)?;
    match fixed_size(elem)? {
        Some(size) => skip(r, size.checked_mul(count).ok_or(GgufError::ArrayOverflow)?),
        None if elem == T_STRING => {
            for _ in 0..count {
                let len = string_len(r)?;
                skip(r, len)?;
            }
            Ok(())
        }
        None => Err(GgufError::NestedArray),
    }
}

/// The string value of metadata `key`, `Ok(None)` if the file has no such key.
pub(crate) fn read_string_value(
    r: &mut impl BufRead,
    key: &str,
) -> Result<Option<String>, GgufError> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(GgufError::Header)?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic);
    }
    let version = read_u32(r)?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version(version));
    }
    let _tensors = read_u64(r)?;
    let kv_count = read_u64(r)?;
    for _ in 0..kv_count {
        let name = read_string(r)?;
        let kind = read_u32(r)?;
        if name == key {
            if kind != T_STRING {
                return Err(GgufError::NotAString {
                    key: key.to_owned(),
                    kind,
                });
            }
            return read_string(r).map(Some);
        }
        skip_value(r, kind)?;
    }
    Ok(None)
}

/// Writes a GGUF header with the given metadata, for tests.
#[cfg(test)]
pub(crate) mod build {
    /// A metadata value.
    pub(crate) enum Value<'a> {
        /// Type 4.
        U32(u32),
        /// Type 8.
        Str(&'a str),
        /// Type 9 of type 8.
        Strings(&'a [&'a str]),
        /// Type 9 of type 5 (i32).
        I32s(&'a [i32]),
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    /// The header bytes.
    pub(crate) fn header(kvs: &[(&str, Value<'_>)]) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(0u64.to_le_bytes());
        out.extend((kvs.len() as u64).to_le_bytes());
        for (key, value) in kvs {
            string(&mut out, key);
            match value {
                Value::U32(v) => {
                    out.extend(4u32.to_le_bytes());
                    out.extend(v.to_le_bytes());
                }
                Value::Str(s) => {
                    out.extend(8u32.to_le_bytes());
                    string(&mut out, s);
                }
                Value::Strings(items) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(8u32.to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    for s in *items {
                        string(&mut out, s);
                    }
                }
                Value::I32s(items) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(5u32.to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    for v in *items {
                        out.extend(v.to_le_bytes());
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::{Value, header};
    use super::*;

    #[test]
    fn finds_the_template_after_arrays_and_numbers() {
        let bytes = header(&[
            ("general.architecture", Value::Str("qwen2")),
            ("qwen2.block_count", Value::U32(28)),
            ("tokenizer.ggml.tokens", Value::Strings(&["a", "``", "```"])),
            ("tokenizer.ggml.token_type", Value::I32s(&[1, 1, 1])),
            (CHAT_TEMPLATE_KEY, Value::Str("{{ messages }}")),
            ("general.quantization_version", Value::U32(2)),
        ]);
        let got = read_string_value(&mut &bytes[..], CHAT_TEMPLATE_KEY).unwrap();
        assert_eq!(got.as_deref(), Some("{{ messages }}"));
        assert_eq!(read_string_value(&mut &bytes[..], "nope").unwrap(), None);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        assert!(
            read_string_value(&mut &b"GGML0000"[..], "k")
                .unwrap_err()
                .to_string()
                .contains("bad magic")
        );
        let mut v1 = b"GGUF".to_vec();
        v1.extend(1u32.to_le_bytes());
        assert!(
            read_string_value(&mut &v1[..], "k")
                .unwrap_err()
                .to_string()
                .contains("version 1")
        );
        let bytes = header(&[("a", Value::Strings(&["x"; 10])), ("k", Value::Str("v"))]);
        let cut = &bytes[..bytes.len() - 20];
        assert!(read_string_value(&mut &cut[..], "k").is_err());
        let typed = header(&[("k", Value::U32(1))]);
        assert!(
            read_string_value(&mut &typed[..], "k")
                .unwrap_err()
                .to_string()
                .contains("not a string")
        );
    }
}
