//! The scrollback of the message list: which lines the viewport shows, and the cache
//! of wrapped lines of settled messages. The state owns it; the view fills and reads it.

use std::collections::HashMap;
use std::sync::Arc;

use ratatui::text::Line;

/// What the last render measured, for scrolling by pages.
#[derive(Debug, Default, Clone, Copy)]
pub struct Viewport {
    pub height: usize,
    pub total_lines: usize,
}

impl Viewport {
    pub fn max_top(&self) -> usize {
        self.total_lines.saturating_sub(self.height)
    }
}

/// Rendered lines of settled messages, keyed by everything that shapes them, so a
/// long history is not re-wrapped on every streamed delta.
#[derive(Default)]
pub struct LineCache {
    pub(super) map: HashMap<u64, Arc<Vec<Line<'static>>>>,
}

/// Line count of the list: each block plus a blank line between blocks.
pub fn total_lines(blocks: &[Arc<Vec<Line<'static>>>]) -> usize {
    blocks.iter().map(|b| b.len()).sum::<usize>() + blocks.len().saturating_sub(1)
}

/// Lines `top..top + height` of the list, built without materialising the rest.
pub fn window(blocks: &[Arc<Vec<Line<'static>>>], top: usize, height: usize) -> Vec<Line<'static>> {
    let mut out = Vec::with_capacity(height.min(4096));
    // Index in the whole list of the next line to consider.
    let mut line = 0;
    for (i, block) in blocks.iter().enumerate() {
        if out.len() >= height {
            break;
        }
        let separator = usize::from(i > 0);
        if line + separator + block.len() <= top {
            line += separator + block.len();
            continue;
        }
        if separator == 1 {
            if line >= top {
                out.push(Line::default());
            }
            line += 1;
        }
        let skip = top.saturating_sub(line);
        for l in block.iter().skip(skip) {
            if out.len() >= height {
                break;
            }
            out.push(l.clone());
        }
        line += block.len();
    }
    out
}
