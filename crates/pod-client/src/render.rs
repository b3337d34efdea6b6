//! How `pod run`, `pod send --wait` and `pod attach` show a pod's events in a
//! terminal: text as it streams, one compact line per tool call and result,
//! alerts and errors, and the token usage at the end of an invocation.

use std::io::{self, Write};

use llm_types::Usage;
use protocol::{AlertLevel, Event, TurnResult};

/// Longest tool-call arguments shown on a call's line.
const ARGS_SHOWN: usize = 120;

/// Turns events into terminal text.
#[derive(Debug, Default)]
pub struct Renderer {
    at_line_start: bool,
    thinking: bool,
    usage: Usage,
}

fn shorten(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut out: String = one_line.chars().take(max).collect();
    out.push('…');
    out
}

impl Renderer {
    /// A renderer at the start of a line.
    pub fn new() -> Self {
        Renderer {
            at_line_start: true,
            ..Renderer::default()
        }
    }

    /// Token usage added up over the events seen.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    fn line(&mut self, out: &mut dyn Write, text: &str) -> io::Result<()> {
        if !self.at_line_start {
            writeln!(out)?;
        }
        writeln!(out, "{text}")?;
        self.at_line_start = true;
        Ok(())
    }

    /// Writes what `event` shows; `err` takes alerts and errors.
    pub fn event(
        &mut self,
        event: &Event,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<()> {
        match event {
            Event::TextDelta { text } => {
                if self.thinking {
                    self.thinking = false;
                }
                out.write_all(text.as_bytes())?;
                self.at_line_start = text.ends_with('\n');
                out.flush()?;
            }
            Event::TextDone { .. } if !self.at_line_start => {
                writeln!(out)?;
                self.at_line_start = true;
            }
            Event::ThinkingStart => {
                self.thinking = true;
                self.line(out, "· thinking")?;
            }
            Event::ToolCallDone {
                name, arguments, ..
            } => {
                let text = format!("→ {name} {}", shorten(arguments, ARGS_SHOWN));
                self.line(out, &text)?;
            }
            Event::ToolResult {
                summary,
                is_error,
                content,
                ..
            } => {
                let mark = if *is_error { "✗" } else { "←" };
                let text = format!("  {mark} {}", shorten(summary, ARGS_SHOWN));
                self.line(out, &text)?;
                if let Some(content) = content {
                    crate::transcript::write_output(out, content, false)?;
                }
            }
            Event::Usage {
                input_tokens,
                output_tokens,
                cache_read_tokens,
                cache_write_tokens,
            } => {
                self.usage.input_tokens += input_tokens;
                self.usage.output_tokens += output_tokens;
                self.usage.cache_read_tokens += cache_read_tokens;
                self.usage.cache_write_tokens += cache_write_tokens;
            }
            Event::Alert(alert) => {
                let level = match alert.level {
                    AlertLevel::Warn => "warning",
                    AlertLevel::Error => "error",
                };
                if !self.at_line_start {
                    writeln!(out)?;
                    self.at_line_start = true;
                }
                writeln!(err, "{level}: {}", alert.message)?;
            }
            Event::ApprovalRequest(r) => {
                self.line(out, &crate::transcript::approval_request_line(r))?;
            }
            Event::ApprovalResolved(r) => {
                self.line(out, &crate::transcript::approval_resolved_line(r))?;
            }
            Event::Error { message, .. } => {
                if !self.at_line_start {
                    writeln!(out)?;
                    self.at_line_start = true;
                }
                writeln!(err, "error: {message}")?;
            }
            Event::RunEnd { result } if *result != TurnResult::Finished => {
                let word = match result {
                    TurnResult::Paused => "paused",
                    TurnResult::Cancelled => "cancelled",
                    TurnResult::LimitReached => "stopped: the LLM call limit was reached",
                    _ => "ended",
                };
                self.line(out, &format!("[{word}]"))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The closing usage line.
    pub fn finish(&mut self, out: &mut dyn Write) -> io::Result<()> {
        let u = self.usage;
        let cached = if u.cache_read_tokens > 0 {
            format!(" ({} cached)", u.cache_read_tokens)
        } else {
            String::new()
        };
        let text = format!(
            "tokens: {} in{cached}, {} out",
            u.input_tokens + u.cache_read_tokens + u.cache_write_tokens,
            u.output_tokens
        );
        self.line(out, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(events: &[Event]) -> (String, String) {
        let mut r = Renderer::new();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        for e in events {
            r.event(e, &mut out, &mut err).unwrap();
        }
        r.finish(&mut out).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn text_streams_and_tools_get_a_line_each() {
        let (out, err) = render(&[
            Event::TextDelta {
                text: "Let me ".into(),
            },
            Event::TextDelta {
                text: "look.".into(),
            },
            Event::TextDone {
                text: "Let me look.".into(),
            },
            Event::ToolCallDone {
                id: "c1".into(),
                name: "Read".into(),
                arguments: "{\"path\":\"a.rs\"}".into(),
            },
            Event::ToolResult {
                id: "c1".into(),
                summary: "read 3 lines".into(),
                content: None,
                is_error: false,
            },
            Event::Usage {
                input_tokens: 10,
                output_tokens: 5,
                cache_read_tokens: 100,
                cache_write_tokens: 0,
            },
            Event::Error {
                code: protocol::ErrorCode::ProviderError,
                message: "boom".into(),
            },
        ]);
        assert_eq!(
            out,
            "Let me look.\n→ Read {\"path\":\"a.rs\"}\n  ← read 3 lines\ntokens: 110 in (100 cached), 5 out\n"
        );
        assert_eq!(err, "error: boom\n");
    }

    #[test]
    fn a_result_shows_the_end_of_its_output() {
        let content: String = (1..=8).map(|i| format!("out {i}\n")).collect();
        let (out, _) = render(&[Event::ToolResult {
            id: "b".into(),
            summary: "exit code 3".into(),
            content: Some(content),
            is_error: false,
        }]);
        assert_eq!(
            out,
            "  ← exit code 3\n    │ … 3 more lines\n    │ out 4\n    │ out 5\n    │ out 6\n    │ out 7\n    │ out 8\ntokens: 0 in, 0 out\n"
        );
    }

    #[test]
    fn long_arguments_are_cut() {
        let long = "x".repeat(500);
        let (out, _) = render(&[Event::ToolCallDone {
            id: "c".into(),
            name: "Write".into(),
            arguments: long,
        }]);
        assert!(out.lines().next().unwrap().chars().count() < 140);
        assert!(out.contains('…'));
    }
}
