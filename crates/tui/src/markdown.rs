//! Markdown (the model's text) to styled lines: headings, emphasis, lists,
//! quotes, inline code and fenced code blocks with a light syntax colouring.
//!
//! The colouring is a small tokenizer (comments, strings, numbers, keywords)
//! rather than a grammar engine: it costs nothing at start-up and no
//! dependency, and reads well for the languages agents write most.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

use crate::theme::Theme;
use crate::wrap::wrap;

/// Renders `text` at `width` columns.
pub(crate) fn render(text: &str, width: usize, theme: Theme) -> Vec<Line<'static>> {
    let mut r = Renderer {
        theme,
        width,
        out: Vec::new(),
        spans: Vec::new(),
        styles: vec![theme.text()],
        lists: Vec::new(),
        quote: 0,
        code: None,
        pending_item: None,
        link: None,
    };
    for event in Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES) {
        r.event(event);
    }
    r.flush();
    while r.out.last().is_some_and(|l| l.width() == 0) {
        r.out.pop();
    }
    r.out
}

struct Renderer {
    theme: Theme,
    width: usize,
    out: Vec<Line<'static>>,
    spans: Vec<Span<'static>>,
    styles: Vec<Style>,
    /// Open lists: the next number, or `None` for bullets.
    lists: Vec<Option<u64>>,
    quote: usize,
    /// Inside a fenced or indented code block: its language and text so far.
    code: Option<(String, String)>,
    /// The marker of a list item whose first line is not written yet.
    pending_item: Option<String>,
    /// The destination of the link being written.
    link: Option<String>,
}

impl Renderer {
    fn style(&self) -> Style {
        self.styles.last().copied().unwrap_or_default()
    }

    fn push_style(&mut self, f: impl FnOnce(Style) -> Style) {
        let s = f(self.style());
        self.styles.push(s);
    }

    fn prefix(&self) -> String {
        let mut p = "▎ ".repeat(self.quote);
        p.push_str(&"  ".repeat(self.lists.len().saturating_sub(1)));
        p
    }

    /// Ends the current line of text (a paragraph's, an item's) and wraps it.
    fn flush(&mut self) {
        if self.spans.is_empty() && self.pending_item.is_none() {
            return;
        }
        let mut prefix = self.prefix();
        let mut indent = prefix.clone();
        if let Some(marker) = self.pending_item.take() {
            indent.push_str(&" ".repeat(marker.chars().count()));
            prefix.push_str(&marker);
        }
        let mut spans = Vec::with_capacity(self.spans.len() + 1);
        if !prefix.is_empty() {
            spans.push(Span::styled(prefix, self.theme.dim()));
        }
        spans.append(&mut self.spans);
        self.out
            .extend(wrap(Line::from(spans), self.width, &indent));
    }

    fn blank(&mut self) {
        if self.out.last().is_some_and(|l| l.width() > 0) {
            self.out.push(Line::default());
        }
    }

    fn event(&mut self, event: Event<'_>) {
        if let Some((_, code)) = &mut self.code {
            match event {
                Event::Text(t) => code.push_str(&t),
                Event::End(TagEnd::CodeBlock) => {
                    if let Some((lang, code)) = self.code.take() {
                        self.code_block(&lang, &code);
                    }
                }
                _ => {}
            }
            return;
        }
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => self.spans.push(Span::styled(t.into_string(), self.style())),
            Event::Code(t) => self
                .spans
                .push(Span::styled(t.into_string(), self.theme.code())),
            Event::SoftBreak => self.spans.push(Span::styled(" ", self.style())),
            Event::HardBreak => self.flush(),
            Event::Rule => {
                self.flush();
                self.blank();
                let w = self.width.min(40);
                self.out.push(Line::styled("─".repeat(w), self.theme.dim()));
                self.blank();
            }
            Event::TaskListMarker(done) => self.spans.push(Span::styled(
                if done { "[x] " } else { "[ ] " },
                self.theme.dim(),
            )),
            Event::Html(t) | Event::InlineHtml(t) => {
                self.spans
                    .push(Span::styled(t.into_string(), self.theme.dim()));
            }
            Event::FootnoteReference(t) | Event::InlineMath(t) | Event::DisplayMath(t) => {
                self.spans.push(Span::styled(t.into_string(), self.style()));
            }
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => {
                if self.lists.is_empty() {
                    self.blank();
                }
            }
            Tag::Heading { level, .. } => {
                self.flush();
                self.blank();
                let marks = match level {
                    HeadingLevel::H1 => "# ",
                    HeadingLevel::H2 => "## ",
                    _ => "### ",
                };
                self.spans.push(Span::styled(marks, self.theme.dim()));
                let heading = self.theme.heading();
                self.push_style(|_| heading);
            }
            Tag::BlockQuote(_) => {
                self.flush();
                self.quote += 1;
            }
            Tag::CodeBlock(kind) => {
                self.flush();
                let lang = match kind {
                    CodeBlockKind::Fenced(l) => {
                        l.split([',', ' ']).next().unwrap_or("").to_string()
                    }
                    CodeBlockKind::Indented => String::new(),
                };
                self.code = Some((lang, String::new()));
            }
            Tag::List(start) => {
                self.flush();
                if self.lists.is_empty() {
                    self.blank();
                }
                self.lists.push(start);
            }
            Tag::Item => {
                self.flush();
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "• ".to_string(),
                };
                self.pending_item = Some(marker);
            }
            Tag::Emphasis => self.push_style(|s| s.add_modifier(Modifier::ITALIC)),
            Tag::Strong => self.push_style(|s| s.add_modifier(Modifier::BOLD)),
            Tag::Strikethrough => self.push_style(|s| s.add_modifier(Modifier::CROSSED_OUT)),
            Tag::Link { dest_url, .. } => {
                self.link = Some(dest_url.into_string());
                self.push_style(|s| s.add_modifier(Modifier::UNDERLINED));
            }
            Tag::Image { dest_url, .. } => {
                self.spans.push(Span::styled(
                    format!("[image {dest_url}] "),
                    self.theme.dim(),
                ));
                self.push_style(|s| s);
            }
            Tag::Table(_) | Tag::TableHead | Tag::TableRow => self.flush(),
            Tag::TableCell => self.spans.push(Span::styled("│ ", self.theme.dim())),
            Tag::HtmlBlock
            | Tag::FootnoteDefinition(_)
            | Tag::DefinitionList
            | Tag::DefinitionListTitle
            | Tag::DefinitionListDefinition
            | Tag::Superscript
            | Tag::Subscript
            | Tag::MetadataBlock(_) => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => self.flush(),
            TagEnd::Heading(_) => {
                self.styles.pop();
                self.flush();
            }
            TagEnd::BlockQuote(_) => {
                self.flush();
                self.quote = self.quote.saturating_sub(1);
            }
            TagEnd::List(_) => {
                self.flush();
                self.lists.pop();
                if self.lists.is_empty() {
                    self.blank();
                }
            }
            TagEnd::Item => self.flush(),
            TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough | TagEnd::Image => {
                self.styles.pop();
            }
            TagEnd::Link => {
                self.styles.pop();
                if let Some(url) = self.link.take() {
                    let shown = self
                        .spans
                        .iter()
                        .map(|s| s.content.as_ref())
                        .collect::<String>();
                    if !shown.ends_with(url.as_str()) {
                        self.spans
                            .push(Span::styled(format!(" ({url})"), self.theme.dim()));
                    }
                }
            }
            TagEnd::TableRow | TagEnd::TableHead | TagEnd::Table => self.flush(),
            _ => {}
        }
    }

    fn code_block(&mut self, lang: &str, code: &str) {
        self.blank();
        let gutter = format!("{}  ", self.prefix());
        for line in code.trim_end_matches('\n').lines() {
            let mut spans = vec![Span::styled(gutter.clone(), self.theme.dim())];
            spans.extend(highlight(line, lang, self.theme));
            self.out
                .extend(wrap(Line::from(spans), self.width, &gutter));
        }
        self.blank();
    }
}

/// Words coloured as keywords, across the languages agents write most.
const KEYWORDS: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "case",
    "class",
    "const",
    "continue",
    "def",
    "default",
    "defer",
    "do",
    "elif",
    "else",
    "enum",
    "esac",
    "export",
    "extern",
    "false",
    "fi",
    "fn",
    "for",
    "from",
    "func",
    "function",
    "go",
    "if",
    "impl",
    "import",
    "in",
    "interface",
    "let",
    "loop",
    "match",
    "mod",
    "mut",
    "new",
    "nil",
    "None",
    "null",
    "package",
    "pub",
    "raise",
    "return",
    "self",
    "Self",
    "static",
    "struct",
    "switch",
    "then",
    "this",
    "throw",
    "trait",
    "true",
    "True",
    "False",
    "try",
    "type",
    "typeof",
    "use",
    "var",
    "where",
    "while",
    "with",
    "yield",
];

/// Colours one line of code in `lang` (a fence's info string).
pub(crate) fn highlight(line: &str, lang: &str, theme: Theme) -> Vec<Span<'static>> {
    let hash_comments = matches!(
        lang,
        "python"
            | "py"
            | "sh"
            | "bash"
            | "shell"
            | "zsh"
            | "toml"
            | "yaml"
            | "yml"
            | "ruby"
            | "rb"
            | "console"
            | "dockerfile"
            | "make"
            | "makefile"
            | "r"
    );
    let mut spans = Vec::new();
    let chars: Vec<char> = line.chars().collect();
    let mut plain = String::new();
    let flush = |plain: &mut String, spans: &mut Vec<Span<'static>>| {
        if !plain.is_empty() {
            spans.push(Span::styled(std::mem::take(plain), theme.text()));
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let rest_starts = |s: &str| {
            s.chars()
                .enumerate()
                .all(|(k, sc)| chars.get(i + k) == Some(&sc))
        };
        if (hash_comments && c == '#')
            || (!hash_comments && (rest_starts("//") || rest_starts("--") && lang == "sql"))
        {
            flush(&mut plain, &mut spans);
            spans.push(Span::styled(
                chars[i..].iter().collect::<String>(),
                theme.comment(),
            ));
            return spans;
        }
        if c == '"' || c == '\'' || c == '`' {
            // A lone apostrophe in Rust is a lifetime, not a string.
            let closing = chars[i + 1..].iter().position(|&d| d == c);
            if let Some(len) = closing
                .filter(|_| !(c == '\'' && lang == "rust" && chars.get(i + 2) != Some(&'\'')))
            {
                flush(&mut plain, &mut spans);
                let s: String = chars[i..=i + 1 + len].iter().collect();
                spans.push(Span::styled(s, theme.string()));
                i += len + 2;
                continue;
            }
        }
        if c.is_ascii_digit() && (i == 0 || !chars[i - 1].is_alphanumeric() && chars[i - 1] != '_')
        {
            flush(&mut plain, &mut spans);
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
            {
                i += 1;
            }
            spans.push(Span::styled(
                chars[start..i].iter().collect::<String>(),
                theme.number(),
            ));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if KEYWORDS.contains(&word.as_str()) {
                flush(&mut plain, &mut spans);
                spans.push(Span::styled(word, theme.keyword()));
            } else {
                plain.push_str(&word);
            }
            continue;
        }
        plain.push(c);
        i += 1;
    }
    flush(&mut plain, &mut spans);
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(lines: &[Line<'static>]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    const THEME: Theme = Theme { color: true };

    #[test]
    fn headings_lists_and_code_read_as_text() {
        let md = "# Plan\n\nDo **this**:\n\n1. read `a.rs`\n2. fix it\n\n```rust\nfn main() {} // ok\n```\n";
        let got = plain(&render(md, 40, THEME));
        assert_eq!(
            got,
            [
                "# Plan",
                "",
                "Do this:",
                "",
                "1. read a.rs",
                "2. fix it",
                "",
                "  fn main() {} // ok"
            ]
        );
    }

    #[test]
    fn code_is_coloured_by_token() {
        let spans = highlight("let x = \"hi\"; // note", "rust", THEME);
        let styled: Vec<(String, Style)> = spans
            .iter()
            .map(|s| (s.content.to_string(), s.style))
            .collect();
        assert_eq!(styled[0], ("let".into(), THEME.keyword()));
        assert!(
            styled
                .iter()
                .any(|(t, s)| t == "\"hi\"" && *s == THEME.string())
        );
        assert!(
            styled
                .iter()
                .any(|(t, s)| t == "// note" && *s == THEME.comment())
        );
        let py = highlight("x = 1  # count", "python", THEME);
        assert!(
            py.iter()
                .any(|s| s.content == "1" && s.style == THEME.number())
        );
        assert!(py.iter().any(|s| s.content == "# count"));
    }

    #[test]
    fn long_paragraphs_wrap_and_list_items_hang() {
        let got = plain(&render("- alpha beta gamma delta", 12, THEME));
        assert_eq!(got, ["• alpha beta", "  gamma", "  delta"]);
    }
}
