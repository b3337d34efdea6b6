//! The conversation pane's window onto a conversation: anchored at the bottom
//! (new output stays in view unless the person scrolled up), rendering only the
//! blocks on screen and caching their lines, so a 50k-block transcript costs a
//! frame no more than a short one.

use std::collections::HashMap;

use ratatui::text::{Line, Span};

use crate::blocks;
use crate::conversation::Conversation;
use crate::theme::Theme;

/// Rendered blocks kept; more are dropped (the ones on screen are re-rendered
/// at once, the rest when scrolled to).
const CACHE_BLOCKS: usize = 4096;

/// What a rendering depends on: the block's version, the width, the fold state.
type RenderKey = (u64, usize, bool);

/// A block's rendering as of a version, width and fold state.
#[derive(Debug)]
struct Cached {
    key: RenderKey,
    lines: Vec<Line<'static>>,
}

/// Scroll position, selection and render cache of one pod's conversation.
#[derive(Debug, Default)]
pub(crate) struct ConvView {
    /// Lines scrolled up from the end (0: following new output).
    pub(crate) scroll: usize,
    /// The selected block, when the conversation has the focus.
    pub(crate) selected: Option<usize>,
    /// Block heights as of `(version, width, folded)`.
    heights: Vec<Option<(RenderKey, usize)>>,
    cache: HashMap<usize, Cached>,
}

impl ConvView {
    /// Forgets every cached rendering (the conversation started over).
    pub(crate) fn invalidate(&mut self) {
        self.heights.clear();
        self.cache.clear();
        self.selected = None;
    }

    fn key(conv: &Conversation, i: usize, width: usize) -> RenderKey {
        let b = &conv.blocks[i];
        (b.version, width, b.folded)
    }

    /// The height of block `i` at `width`.
    fn height(&mut self, conv: &Conversation, i: usize, width: usize, theme: Theme) -> usize {
        let key = Self::key(conv, i, width);
        if self.heights.len() < conv.blocks.len() {
            self.heights.resize(conv.blocks.len(), None);
        }
        if let Some((k, h)) = self.heights[i]
            && k == key
        {
            return h;
        }
        self.lines(conv, i, width, theme).len()
    }

    /// The lines of block `i` at `width` (cached).
    fn lines(
        &mut self,
        conv: &Conversation,
        i: usize,
        width: usize,
        theme: Theme,
    ) -> &[Line<'static>] {
        let key = Self::key(conv, i, width);
        let fresh = self.cache.get(&i).is_some_and(|c| c.key == key);
        if !fresh {
            if self.cache.len() >= CACHE_BLOCKS {
                self.cache.clear();
            }
            let lines = blocks::render(&conv.blocks[i], width, theme);
            if self.heights.len() < conv.blocks.len() {
                self.heights.resize(conv.blocks.len(), None);
            }
            self.heights[i] = Some((key, lines.len()));
            self.cache.insert(i, Cached { key, lines });
        }
        self.cache.get(&i).map_or(&[], |c| c.lines.as_slice())
    }

    /// The lines to draw in a `width` × `height` area (one column is the
    /// selection gutter).
    pub(crate) fn visible(
        &mut self,
        conv: &Conversation,
        width: usize,
        height: usize,
        theme: Theme,
    ) -> Vec<Line<'static>> {
        let inner = width.saturating_sub(1).max(8);
        let streaming = blocks::render_streaming(&conv.streaming, inner, theme);
        // Walk back from the end until the window (plus the scroll) is filled.
        let want = self.scroll + height;
        let mut have = streaming.len();
        let mut first = conv.blocks.len();
        while first > 0 && have < want {
            first -= 1;
            have += self.height(conv, first, inner, theme);
        }
        if first == 0 && have < want {
            // Scrolled past the top: clamp.
            self.scroll = have.saturating_sub(height);
        }
        let mut lines: Vec<Line<'static>> = Vec::with_capacity(have);
        for i in first..conv.blocks.len() {
            let selected = self.selected == Some(i);
            let gutter = if selected { "▌" } else { " " };
            let style = if selected {
                theme.focus()
            } else {
                theme.text()
            };
            let block_lines = self.lines(conv, i, inner, theme).to_vec();
            for line in block_lines {
                let mut spans = vec![Span::styled(gutter, style)];
                spans.extend(line.spans);
                lines.push(Line::from(spans).style(line.style));
            }
        }
        for line in streaming {
            let mut spans = vec![Span::raw(" ")];
            spans.extend(line.spans);
            lines.push(Line::from(spans));
        }
        let end = lines.len().saturating_sub(self.scroll);
        let start = end.saturating_sub(height);
        lines.truncate(end);
        lines.drain(..start);
        lines
    }

    /// Scrolls up (positive) or down by `lines`.
    pub(crate) fn scroll_by(&mut self, lines: isize) {
        self.scroll = self.scroll.saturating_add_signed(lines);
    }

    /// Moves the selection by `delta` blocks (starting from the last one) and
    /// scrolls it into view.
    pub(crate) fn select_by(
        &mut self,
        conv: &Conversation,
        delta: isize,
        width: usize,
        height: usize,
        theme: Theme,
    ) {
        if conv.blocks.is_empty() {
            self.selected = None;
            return;
        }
        let last = conv.blocks.len() - 1;
        let next = match self.selected {
            None => last,
            Some(i) => i.saturating_add_signed(delta).min(last),
        };
        self.selected = Some(next);
        self.reveal(conv, next, width, height, theme);
    }

    /// Scrolls so block `i` is on screen.
    fn reveal(&mut self, conv: &Conversation, i: usize, width: usize, height: usize, theme: Theme) {
        let inner = width.saturating_sub(1).max(8);
        let below: usize = blocks::render_streaming(&conv.streaming, inner, theme).len()
            + (i + 1..conv.blocks.len())
                .map(|j| self.height(conv, j, inner, theme))
                .sum::<usize>();
        let own = self.height(conv, i, inner, theme);
        if below < self.scroll {
            self.scroll = below;
        } else if below + own > self.scroll + height {
            self.scroll = (below + own).saturating_sub(height);
        }
    }
}
