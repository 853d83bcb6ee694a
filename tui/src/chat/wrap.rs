//! Line wrapping measured in terminal cells.
//!
//! The chat computes its own wrapping (instead of `Paragraph::wrap`) so the number of
//! lines a message takes is known exactly, which scrolling depends on. Widths come
//! from the same function ratatui draws with, per grapheme cluster, so a CJK
//! character or an emoji counts as the two cells it occupies.

use ratatui::buffer::CellWidth;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_segmentation::UnicodeSegmentation;

/// Cell width of one grapheme cluster, as ratatui's buffer counts it.
pub fn grapheme_width(g: &str) -> usize {
    if g.contains(char::is_control) {
        // ratatui drops graphemes with control characters; so do we.
        0
    } else {
        g.cell_width() as usize
    }
}

/// Cell width of a string.
pub fn str_width(s: &str) -> usize {
    s.graphemes(true).map(grapheme_width).sum()
}

/// Makes untrusted text safe to draw: tabs become spaces, other control characters
/// (which could drive the terminal or break the cell math) are dropped. Newlines stay.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push('\n'),
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[derive(Clone)]
struct Cell<'a> {
    g: &'a str,
    width: usize,
    style: Style,
}

fn is_space(g: &str) -> bool {
    g.chars().all(|c| c.is_whitespace() && c != '\u{a0}')
}

/// Splits styled text into break units: runs of spaces, and words. A wide grapheme
/// (CJK, emoji) is a unit of its own, since such text may break between any two.
fn units<'a>(spans: &'a [Span<'a>]) -> Vec<(bool, Vec<Cell<'a>>)> {
    let mut out: Vec<(bool, Vec<Cell<'a>>)> = Vec::new();
    for span in spans {
        for g in span.content.graphemes(true) {
            let width = grapheme_width(g);
            if width == 0 && g.contains(char::is_control) {
                continue;
            }
            let cell = Cell {
                g,
                width,
                style: span.style,
            };
            let space = is_space(g);
            let wide = width >= 2;
            match out.last_mut() {
                Some((last_space, cells))
                    if *last_space == space
                        && !wide
                        && cells.last().is_some_and(|c| c.width < 2) =>
                {
                    cells.push(cell);
                }
                _ => out.push((space, vec![cell])),
            }
        }
    }
    out
}

fn to_line(cells: &[Cell<'_>]) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut text = String::new();
    let mut style = cells.first().map(|c| c.style).unwrap_or_default();
    for c in cells {
        if c.style != style {
            spans.push(Span::styled(std::mem::take(&mut text), style));
            style = c.style;
        }
        text.push_str(c.g);
    }
    if !text.is_empty() {
        spans.push(Span::styled(text, style));
    }
    Line::from(spans)
}

/// Word-wraps one paragraph (no `\n` inside) of styled text to `width` cells.
///
/// Breaks at spaces (the space at a break is dropped) and around wide characters;
/// a word longer than the width is split between graphemes. Leading indentation is
/// kept. Every line fits in `width` unless `width` is 1 and a 2-cell grapheme must
/// go somewhere: it then gets a line of its own.
pub fn wrap_spans(spans: &[Span<'_>], width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let mut lines: Vec<Vec<Cell<'_>>> = Vec::new();
    let mut cur: Vec<Cell<'_>> = Vec::new();
    let mut cur_w = 0;
    let mut pending: Vec<Cell<'_>> = Vec::new();
    let mut pending_w = 0;
    let mut at_start = true;

    for (space, cells) in units(spans) {
        let w: usize = cells.iter().map(|c| c.width).sum();
        if space {
            if at_start {
                // Indentation: keep what fits.
                for c in cells {
                    if cur_w + c.width <= width {
                        cur_w += c.width;
                        cur.push(c);
                    }
                }
            } else {
                pending_w += w;
                pending.extend(cells);
            }
            continue;
        }
        at_start = false;
        if cur_w + pending_w + w <= width {
            cur.append(&mut pending);
            cur.extend(cells);
            cur_w += pending_w + w;
            pending_w = 0;
            continue;
        }
        pending.clear();
        pending_w = 0;
        if w <= width {
            if !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
            }
            cur = cells;
            cur_w = w;
            continue;
        }
        // Longer than a whole line: start it on a fresh line and cut it up.
        if !cur.is_empty() {
            lines.push(std::mem::take(&mut cur));
            cur_w = 0;
        }
        for c in cells {
            if cur_w + c.width > width && !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
                cur_w = 0;
            }
            cur_w += c.width;
            cur.push(c);
        }
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines.iter().map(|l| to_line(l)).collect()
}

/// Hard-wraps one paragraph at exactly `width` cells, keeping every grapheme
/// (for code, where spaces matter and words are not prose).
pub fn wrap_hard(spans: &[Span<'_>], width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut cur: Vec<Cell<'_>> = Vec::new();
    let mut cur_w = 0;
    for span in spans {
        for g in span.content.graphemes(true) {
            let w = grapheme_width(g);
            if w == 0 && g.contains(char::is_control) {
                continue;
            }
            if cur_w + w > width && !cur.is_empty() {
                lines.push(to_line(&std::mem::take(&mut cur)));
                cur_w = 0;
            }
            cur_w += w;
            cur.push(Cell {
                g,
                width: w,
                style: span.style,
            });
        }
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(to_line(&cur));
    }
    lines
}

#[cfg(test)]
/// Plain-text convenience: wraps each `\n`-separated paragraph to `width`.
pub fn wrap_str(text: &str, width: usize) -> Vec<String> {
    text.split('\n')
        .flat_map(|para| wrap_spans(&[Span::raw(para)], width))
        .map(|line| line.spans.iter().map(|s| s.content.as_ref()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn non_space(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    /// Samples covering ASCII, CJK, emoji (including ZWJ sequences and flags),
    /// combining marks, long words and odd spacing.
    const SAMPLES: &[&str] = &[
        "The quick brown fox jumps over the lazy dog.",
        "こんにちは、世界！今日はいい天気ですね。",
        "Mixed 日本語 and English text, with 한국어 too.",
        "emoji 👋🏽 family 👨‍👩‍👧‍👦 flag 🇯🇵 done",
        "supercalifragilisticexpialidocious-and-then-some",
        "  indented   with   many    spaces  ",
        "e\u{301}te\u{301} cafe\u{301} nai\u{308}ve",
        "a",
        "",
        "中文中文中文中文中文中文中文中文中文中文中文中文中文中文",
        "https://example.com/a/very/long/path/that/never/ends/at/all?query=yes",
    ];

    #[test]
    fn no_line_exceeds_the_width_and_no_character_is_lost() {
        for text in SAMPLES {
            for width in 2..=40 {
                let lines = wrap_str(text, width);
                for line in &lines {
                    assert!(
                        str_width(line) <= width,
                        "{line:?} is wider than {width} (from {text:?})"
                    );
                }
                assert_eq!(
                    non_space(&lines.concat()),
                    non_space(text),
                    "characters lost wrapping {text:?} at {width}"
                );
            }
        }
    }

    #[test]
    fn lines_are_filled_greedily() {
        // For single-spaced text: no line could have taken the next line's first word.
        for text in [
            "The quick brown fox jumps over the lazy dog.",
            "a bb ccc dddd eeeee f",
        ] {
            for width in 5..=30 {
                let lines = wrap_str(text, width);
                for pair in lines.windows(2) {
                    let next = pair[1].split(' ').next().unwrap_or("");
                    assert!(
                        str_width(&pair[0]) + 1 + str_width(next) > width,
                        "{next:?} would have fit after {:?} at width {width}",
                        pair[0]
                    );
                }
            }
        }
    }

    #[test]
    fn wraps_at_spaces_and_between_wide_characters() {
        assert_eq!(wrap_str("hello big world", 9), ["hello big", "world"]);
        assert_eq!(
            wrap_str("日本語のテキスト", 6),
            ["日本語", "のテキ", "スト"]
        );
        // An odd width cannot fit a third wide character; it moves down whole.
        assert_eq!(wrap_str("日本語の", 5), ["日本", "語の"]);
        assert_eq!(wrap_str("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap_str("say 日本語", 6), ["say 日", "本語"]);
        assert_eq!(wrap_str("  code", 10), ["  code"]);
        assert_eq!(wrap_str("a\n\nb", 10), ["a", "", "b"]);
    }

    #[test]
    fn emoji_sequences_stay_whole() {
        let lines = wrap_str("👨‍👩‍👧‍👦👨‍👩‍👧‍👦👨‍👩‍👧‍👦", 4);
        assert_eq!(lines, ["👨‍👩‍👧‍👦👨‍👩‍👧‍👦", "👨‍👩‍👧‍👦"]);
    }

    #[test]
    fn width_one_gives_wide_graphemes_their_own_line() {
        assert_eq!(wrap_str("a日b", 1), ["a", "日", "b"]);
    }

    #[test]
    fn hard_wrap_keeps_spaces() {
        let lines = wrap_hard(&[Span::raw("  fn main() {}")], 6);
        let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(text, ["  fn m", "ain() ", "{}"]);
        for width in 2..12 {
            let lines = wrap_hard(&[Span::raw("let 変数 = \"値\"; // 🎉")], width);
            let joined: String = lines.iter().map(|l| l.to_string()).collect();
            assert_eq!(joined, "let 変数 = \"値\"; // 🎉");
            assert!(lines.iter().all(|l| str_width(&l.to_string()) <= width));
        }
    }

    #[test]
    fn styles_survive_wrapping() {
        let bold = Style::new().bold();
        let lines = wrap_spans(&[Span::raw("plain "), Span::styled("bold words", bold)], 10);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].spans[0].content, "plain ");
        assert_eq!(lines[0].spans[1], Span::styled("bold", bold));
        assert_eq!(lines[1].spans[0], Span::styled("words", bold));
    }

    #[test]
    fn sanitize_strips_control_characters() {
        assert_eq!(sanitize("a\tb\x1b[31mc\r\nd"), "a    b[31mc\nd");
    }
}
