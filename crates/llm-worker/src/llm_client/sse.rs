//! An incremental Server-Sent Events parser.
//!
//! Bytes arrive in arbitrary slices (a TCP read can end anywhere: inside a UTF-8
//! character, between `\r` and `\n`, in the middle of a field name), so the parser
//! keeps the unfinished line between calls and only decodes complete lines. It
//! follows the WHATWG event-stream rules that matter for LLM providers: `\n`, `\r\n`
//! and `\r` line ends; `:` comment lines (keep-alives such as
//! `: OPENROUTER PROCESSING`); `event:` names; multi-line `data:` joined with `\n`;
//! one optional space after the colon; an event dispatched at a blank line, and
//! never when it has no data. Unlike a browser, a final event without its blank
//! line is still delivered at end of stream ([`SseParser::finish`]): several
//! servers close the connection right after the last `data:` line.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` name, if the server sent one.
    pub event: Option<String>,
    /// The data lines, joined with `\n`.
    pub data: String,
}

/// Turns a byte stream into [`SseEvent`]s, whatever the slicing.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line not yet terminated.
    line: Vec<u8>,
    /// The previous slice ended in `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next slice of bytes, appending every completed event to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (head, tail) = bytes.split_at(pos);
            let is_cr = tail[0] == b'\r';
            bytes = &tail[1..];
            if is_cr {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if self.line.is_empty() {
                self.process_line(head, out);
            } else {
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, out);
                // Keep the allocation for the next split line.
                self.line = line;
                self.line.clear();
            }
        }
        self.line.extend_from_slice(bytes);
    }

    /// Ends the stream: an unterminated last line is processed and a pending event
    /// (data without its closing blank line) is delivered.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
        }
        self.dispatch(out);
        self.after_cr = false;
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            // `id` and `retry` steer browser reconnection; providers' streams are
            // not resumable, so they carry nothing for us.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
            });
        }
        self.event = None;
        self.data.clear();
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_slices(body: &[u8], sizes: &mut dyn FnMut() -> usize) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let n = sizes().clamp(1, rest.len());
            p.push(&rest[..n], &mut out);
            rest = &rest[n..];
        }
        p.finish(&mut out);
        out
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
        }
    }

    /// The same events whatever the slicing: whole, every single byte, and every
    /// two-way split point.
    fn assert_all_slicings(body: &str, want: &[SseEvent]) {
        let bytes = body.as_bytes();
        assert_eq!(parse_in_slices(bytes, &mut || usize::MAX), want, "whole");
        assert_eq!(parse_in_slices(bytes, &mut || 1), want, "1-byte slices");
        for cut in 1..bytes.len() {
            let mut p = SseParser::new();
            let mut out = Vec::new();
            p.push(&bytes[..cut], &mut out);
            p.push(&bytes[cut..], &mut out);
            p.finish(&mut out);
            assert_eq!(out, want, "cut at {cut}");
        }
    }

    #[test]
    fn lf_crlf_and_cr_framing() {
        let want = [ev(None, "a"), ev(Some("e"), "b")];
        assert_all_slicings("data: a\n\nevent: e\ndata: b\n\n", &want);
        assert_all_slicings("data: a\r\n\r\nevent: e\r\ndata: b\r\n\r\n", &want);
        assert_all_slicings("data: a\r\revent: e\rdata: b\r\r", &want);
    }

    #[test]
    fn comments_are_skipped_and_multiline_data_joined() {
        assert_all_slicings(
            ": OPENROUTER PROCESSING\n\ndata: one\ndata: two\n: ping\n\ndata:no-space\n\n",
            &[ev(None, "one\ntwo"), ev(None, "no-space")],
        );
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        assert_all_slicings(
            "event: ping\n\nevent: x\ndata: 1\n\n",
            &[ev(Some("x"), "1")],
        );
    }

    #[test]
    fn last_event_without_blank_line_is_delivered_at_finish() {
        assert_all_slicings(
            "data: a\n\ndata: [DONE]",
            &[ev(None, "a"), ev(None, "[DONE]")],
        );
        assert_all_slicings("data: a\n\ndata: b\n", &[ev(None, "a"), ev(None, "b")]);
    }

    #[test]
    fn multibyte_characters_split_across_slices_survive() {
        assert_all_slicings("data: héllo 🌍\n\n", &[ev(None, "héllo 🌍")]);
    }

    #[test]
    fn only_one_leading_space_is_stripped_and_unknown_fields_ignored() {
        assert_all_slicings(
            "id: 7\nretry: 100\ndata:  two spaces\nfoo: bar\ndata\n\n",
            &[ev(None, " two spaces\n")],
        );
    }

    #[test]
    fn random_slicing_of_a_long_stream() {
        let mut body = String::new();
        let mut want = Vec::new();
        for i in 0..500 {
            body.push_str(&format!("event: e{i}\r\ndata: {{\"i\":{i}}}\r\n\r\n"));
            want.push(ev(Some(&format!("e{i}")), &format!("{{\"i\":{i}}}")));
        }
        // Deterministic pseudo-random slice sizes (xorshift).
        let mut state = 0x2545_f491_u64;
        let got = parse_in_slices(body.as_bytes(), &mut || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 17) as usize + 1
        });
        assert_eq!(got, want);
    }
}
