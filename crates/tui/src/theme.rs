//! The UI's styles, in one place, with and without colour (`NO_COLOR`).

use ratatui::style::{Color, Modifier, Style};

/// Every style the UI draws with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Theme {
    /// Whether colours are used at all (`NO_COLOR` unset).
    pub(crate) color: bool,
}

impl Theme {
    /// The theme for this environment: no colour when `NO_COLOR` is set to
    /// anything non-empty (<https://no-color.org>).
    pub(crate) fn from_env() -> Theme {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Theme { color: !no_color }
    }

    /// A colour, or nothing without colours.
    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::default().fg(color)
        } else {
            Style::default()
        }
    }

    /// Plain text.
    pub(crate) fn text(self) -> Style {
        Style::default()
    }
    /// Secondary text (markers, hints, folded details).
    pub(crate) fn dim(self) -> Style {
        Style::default().add_modifier(Modifier::DIM)
    }
    /// The user's messages.
    pub(crate) fn user(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
    /// Tool call names.
    pub(crate) fn tool(self) -> Style {
        self.fg(Color::Blue).add_modifier(Modifier::BOLD)
    }
    /// A successful result.
    pub(crate) fn ok(self) -> Style {
        self.fg(Color::Green)
    }
    /// Errors and failures.
    pub(crate) fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    /// Warnings.
    pub(crate) fn warn(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }
    /// Pod reports and notifications.
    pub(crate) fn report(self) -> Style {
        self.fg(Color::Magenta)
    }
    /// Added lines of a diff.
    pub(crate) fn added(self) -> Style {
        self.fg(Color::Green)
    }
    /// Removed lines of a diff.
    pub(crate) fn removed(self) -> Style {
        self.fg(Color::Red)
    }
    /// Markdown headings.
    pub(crate) fn heading(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }
    /// Inline code.
    pub(crate) fn code(self) -> Style {
        self.fg(Color::LightYellow)
    }
    /// Keywords in code blocks.
    pub(crate) fn keyword(self) -> Style {
        self.fg(Color::Magenta).add_modifier(Modifier::BOLD)
    }
    /// String literals in code blocks.
    pub(crate) fn string(self) -> Style {
        self.fg(Color::Green)
    }
    /// Numbers in code blocks.
    pub(crate) fn number(self) -> Style {
        self.fg(Color::Cyan)
    }
    /// Comments in code blocks.
    pub(crate) fn comment(self) -> Style {
        self.fg(Color::DarkGray).add_modifier(Modifier::ITALIC)
    }
    /// The selected row or block.
    pub(crate) fn selected(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    /// Borders of the focused pane.
    pub(crate) fn focus(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
    /// A running pod.
    pub(crate) fn running(self) -> Style {
        self.fg(Color::Green).add_modifier(Modifier::BOLD)
    }
    /// A paused pod.
    pub(crate) fn paused(self) -> Style {
        self.fg(Color::Yellow)
    }
    /// The status bar.
    pub(crate) fn bar(self) -> Style {
        if self.color {
            Style::default().bg(Color::DarkGray).fg(Color::White)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        }
    }
}
