//! Wrapping styled lines to a width ourselves (rather than letting a
//! `Paragraph` do it), so the conversation knows every block's height and
//! renders only the lines on screen.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthChar;

/// Characters with their styles: a line being wrapped.
type Cells = Vec<(char, Style)>;

/// Wraps `line` to `width` columns, breaking after spaces where it can and
/// inside a word only when the word alone is wider than the line. Every
/// continuation line starts with `indent` (e.g. a list's hanging indent).
pub(crate) fn wrap(line: Line<'static>, width: usize, indent: &str) -> Vec<Line<'static>> {
    let width = width.max(4);
    let indent_w = indent.chars().count().min(width / 2);
    let mut out: Vec<Line<'static>> = Vec::new();
    let mut cur: Vec<(char, Style)> = Vec::new();
    let mut cur_w = 0usize;
    // Index in `cur` just after the last space, where a break may go.
    let mut last_break: Option<usize> = None;
    let mut first = true;
    let line_style = line.style;
    let start_line = |first: bool| -> (Vec<(char, Style)>, usize) {
        if first {
            (Vec::new(), 0)
        } else {
            (
                indent
                    .chars()
                    .take(indent_w)
                    .map(|c| (c, Style::default()))
                    .collect(),
                indent_w,
            )
        }
    };
    for span in line.spans {
        for ch in span.content.chars() {
            let w = ch.width().unwrap_or(0);
            if ch == ' ' && cur_w + w > width && cur_w > 0 {
                // A space at the edge ends the line and is dropped.
                out.push(to_line(std::mem::take(&mut cur), line_style));
                first = false;
                let (next, next_w) = start_line(false);
                cur = next;
                cur_w = next_w;
                last_break = None;
                continue;
            }
            if cur_w + w > width && cur_w > 0 {
                let (head, rest): (Cells, Cells) = match last_break {
                    Some(at) if at > indent_w.min(cur.len()) || (first && at > 0) => {
                        let rest = cur.split_off(at);
                        (std::mem::take(&mut cur), rest)
                    }
                    _ => (std::mem::take(&mut cur), Vec::new()),
                };
                let mut head = head;
                while head.last().is_some_and(|(c, _)| *c == ' ') {
                    head.pop();
                }
                out.push(to_line(head, line_style));
                first = false;
                let (mut next, mut next_w) = start_line(false);
                for (c, s) in rest {
                    next_w += c.width().unwrap_or(0);
                    next.push((c, s));
                }
                cur = next;
                cur_w = next_w;
                last_break = None;
            }
            cur.push((ch, span.style));
            cur_w += w;
            if ch == ' ' {
                last_break = Some(cur.len());
            }
        }
    }
    out.push(to_line(cur, line_style));
    out
}

/// Joins runs of equal style back into spans.
fn to_line(chars: Vec<(char, Style)>, style: Style) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut text = String::new();
    let mut span_style: Option<Style> = None;
    for (c, s) in chars {
        if span_style != Some(s) {
            if let Some(prev) = span_style {
                spans.push(Span::styled(std::mem::take(&mut text), prev));
            }
            span_style = Some(s);
        }
        text.push(c);
    }
    if let Some(prev) = span_style {
        spans.push(Span::styled(text, prev));
    }
    Line::from(spans).style(style)
}

/// The display width of `text`.
pub(crate) fn width_of(text: &str) -> usize {
    text.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// `text` cut to `max` columns, with `…` when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if width_of(text) <= max {
        return text.to_string();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in text.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw + 1 > max {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[Line<'static>]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn breaks_after_spaces_and_inside_long_words() {
        let got = wrap(Line::from("the quick brown fox"), 10, "");
        assert_eq!(texts(&got), ["the quick", "brown fox"]);
        let got = wrap(Line::from("abcdefghijklmn"), 5, "");
        assert_eq!(texts(&got), ["abcde", "fghij", "klmn"]);
    }

    #[test]
    fn continuation_lines_take_the_indent() {
        let got = wrap(Line::from("• one two three four"), 10, "  ");
        assert_eq!(texts(&got), ["• one two", "  three", "  four"]);
    }

    #[test]
    fn wide_characters_count_double() {
        let got = wrap(Line::from("日本語テキスト"), 6, "");
        assert_eq!(texts(&got), ["日本語", "テキス", "ト"]);
        assert_eq!(truncate("日本語テキスト", 5), "日本…");
    }
}
