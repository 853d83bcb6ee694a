//! Just enough Markdown for chat replies: fenced code blocks, headings, and inline
//! `code`, *emphasis* and **strong**. Anything else shows as written, which for
//! lists and quotes already reads well in a terminal.
//!
//! A reply is rendered again on every delta, so an unclosed fence or emphasis
//! simply shows as code / plain text until its closing marker streams in.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use super::wrap::{wrap_hard, wrap_spans};

/// Style for inline `code` and code blocks.
pub const CODE: Style = Style::new().fg(Color::Yellow);
/// Style for the gutter and labels of code blocks.
pub const CODE_FRAME: Style = Style::new().fg(Color::DarkGray);

/// Whether `line` opens or closes a fence; returns the fence marker and info string.
fn fence(line: &str) -> Option<(&str, &str)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    for marker in ["```", "~~~"] {
        if let Some(info) = rest.strip_prefix(marker) {
            let info = info.trim_start_matches(marker.chars().next().unwrap_or('`'));
            return Some((marker, info.trim()));
        }
    }
    None
}

/// Renders `text` (already sanitised) to lines at most `width` cells wide.
pub fn render(text: &str, base: Style, width: usize) -> Vec<Line<'static>> {
    let width = width.max(4);
    let mut out = Vec::new();
    let mut open_fence: Option<&str> = None;
    for line in text.split('\n') {
        match (open_fence, fence(line)) {
            (None, Some((marker, info))) => {
                open_fence = Some(marker);
                let label = if info.is_empty() {
                    "╭─".to_owned()
                } else {
                    format!("╭─ {info}")
                };
                out.extend(wrap_hard(&[Span::styled(label, CODE_FRAME)], width));
            }
            (Some(open), Some((marker, info))) if marker == open && info.is_empty() => {
                open_fence = None;
                out.push(Line::from(Span::styled("╰─", CODE_FRAME)));
            }
            (Some(_), _) => {
                for wrapped in wrap_hard(&[Span::styled(line.to_owned(), CODE)], width - 2) {
                    let mut spans = vec![Span::styled("│ ", CODE_FRAME)];
                    spans.extend(wrapped.spans);
                    out.push(Line::from(spans));
                }
            }
            (None, None) => out.extend(render_prose_line(line, base, width)),
        }
    }
    out
}

fn render_prose_line(line: &str, base: Style, width: usize) -> Vec<Line<'static>> {
    let hashes = line.len() - line.trim_start_matches('#').len();
    if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
        let style = base.add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
        return wrap_spans(&inline(line[hashes..].trim(), style), width);
    }
    wrap_spans(&inline(line, base), width)
}

/// Finds the closing `marker` for an opening that ends at `from`: the text between
/// must be non-empty and not start or end with a space, as in CommonMark. Runs of
/// the delimiter are taken whole: a single `*` never closes inside `**`, and `**`
/// closes with the last two of a `***` run (so `**a *b***` nests).
fn closing(s: &str, from: usize, marker: &str) -> Option<usize> {
    let first = s[from..].chars().next()?;
    if first.is_whitespace() {
        return None;
    }
    let ch = marker.chars().next()?;
    let mut search = from;
    while let Some(rel) = s[search..].find(ch) {
        let run_start = search + rel;
        let run = s[run_start..].len() - s[run_start..].trim_start_matches(ch).len();
        let at = match (marker.len(), run) {
            (1, 1) => Some(run_start),
            (2, r) if r >= 2 => Some(run_start + r - 2),
            _ => None,
        };
        if let Some(at) = at {
            let inner = &s[from..at];
            let next = s[at + marker.len()..].chars().next();
            let ok_end = !inner.is_empty() && !inner.ends_with(char::is_whitespace);
            // `_` closes only at a word end (snake_case stays as written).
            let ok_word = ch != '_' || !next.is_some_and(char::is_alphanumeric);
            if ok_end && ok_word {
                return Some(at);
            }
        }
        search = run_start + run;
    }
    None
}

/// Parses inline markup into styled spans.
pub fn inline(s: &str, base: Style) -> Vec<Span<'static>> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut plain = String::new();
    let mut i = 0;
    let flush = |plain: &mut String, spans: &mut Vec<Span<'static>>| {
        if !plain.is_empty() {
            spans.push(Span::styled(std::mem::take(plain), base));
        }
    };
    while i < s.len() {
        let rest = &s[i..];
        let prev = s[..i].chars().next_back();
        if let Some(escaped) = rest.strip_prefix('\\')
            && let Some(c) = escaped.chars().next()
            && c.is_ascii_punctuation()
        {
            plain.push(c);
            i += 1 + c.len_utf8();
            continue;
        }
        if rest.starts_with('`') {
            let ticks = rest.len() - rest.trim_start_matches('`').len();
            let marker = &rest[..ticks];
            if let Some(end) = s[i + ticks..].find(marker) {
                let code = &s[i + ticks..i + ticks + end];
                if !code.is_empty() {
                    flush(&mut plain, &mut spans);
                    let code = if code.starts_with(' ') && code.ends_with(' ') && code.len() > 1 {
                        &code[1..code.len() - 1]
                    } else {
                        code
                    };
                    spans.push(Span::styled(code.to_owned(), base.patch(CODE)));
                    i += ticks + end + ticks;
                    continue;
                }
            }
            plain.push_str(marker);
            i += ticks;
            continue;
        }
        let delimiter = ["**", "__", "*", "_"]
            .into_iter()
            .find(|m| rest.starts_with(m));
        if let Some(marker) = delimiter {
            let word_start = !marker.starts_with('_') || !prev.is_some_and(char::is_alphanumeric);
            if word_start && let Some(end) = closing(s, i + marker.len(), marker) {
                flush(&mut plain, &mut spans);
                let modifier = if marker.len() == 2 {
                    Modifier::BOLD
                } else {
                    Modifier::ITALIC
                };
                let inner = &s[i + marker.len()..end];
                spans.extend(inline(inner, base.add_modifier(modifier)));
                i = end + marker.len();
                continue;
            }
            plain.push_str(marker);
            i += marker.len();
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        plain.push(c);
        i += c.len_utf8();
    }
    flush(&mut plain, &mut spans);
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn styled(s: &str) -> Vec<(String, Modifier, bool)> {
        inline(s, Style::new())
            .into_iter()
            .map(|sp| {
                (
                    sp.content.to_string(),
                    sp.style.add_modifier,
                    sp.style.fg == CODE.fg,
                )
            })
            .collect()
    }

    fn t(s: &str, m: Modifier, code: bool) -> (String, Modifier, bool) {
        (s.to_owned(), m, code)
    }

    #[test]
    fn inline_markup() {
        let none = Modifier::empty();
        assert_eq!(
            styled("a *b* **c** `d` e"),
            [
                t("a ", none, false),
                t("b", Modifier::ITALIC, false),
                t(" ", none, false),
                t("c", Modifier::BOLD, false),
                t(" ", none, false),
                t("d", none, true),
                t(" e", none, false),
            ]
        );
        assert_eq!(
            styled("**bold *both***"),
            [
                t("bold ", Modifier::BOLD, false),
                t("both", Modifier::BOLD | Modifier::ITALIC, false),
            ]
        );
    }

    #[test]
    fn things_that_are_not_markup_stay_literal() {
        let none = Modifier::empty();
        for s in [
            "2 * 3 * 4",
            "snake_case_name",
            "a ** b",
            "unclosed *emphasis",
            "lone ` tick",
            "**",
        ] {
            assert_eq!(styled(s), [t(s, none, false)], "{s}");
        }
        assert_eq!(styled(r"\*not\*"), [t("*not*", none, false)]);
    }

    #[test]
    fn code_spans_do_not_parse_emphasis() {
        assert_eq!(styled("`a*b*c`"), [t("a*b*c", Modifier::empty(), true)]);
        assert_eq!(styled("``a`b``"), [t("a`b", Modifier::empty(), true)]);
    }

    fn text(lines: &[Line<'_>]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn fenced_code_blocks_get_a_frame_and_keep_spacing() {
        let lines = render(
            "Look:\n```rust\nfn main() {\n    go();\n}\n```\nDone",
            Style::new(),
            30,
        );
        assert_eq!(
            text(&lines),
            [
                "Look:",
                "╭─ rust",
                "│ fn main() {",
                "│     go();",
                "│ }",
                "╰─",
                "Done"
            ]
        );
        assert_eq!(lines[2].spans[1].style, CODE);
    }

    #[test]
    fn an_unclosed_fence_renders_the_rest_as_code() {
        let lines = render("```\nlet x = 1;", Style::new(), 30);
        assert_eq!(text(&lines), ["╭─", "│ let x = 1;"]);
    }

    #[test]
    fn headings_lose_their_hashes() {
        let lines = render("## Plan", Style::new(), 30);
        assert_eq!(text(&lines), ["Plan"]);
        assert!(
            lines[0].spans[0]
                .style
                .add_modifier
                .contains(Modifier::BOLD)
        );
        assert_eq!(text(&render("#hashtag", Style::new(), 30)), ["#hashtag"]);
    }
}

/// The character's emotion tags (`[joy]`, `[surprise]`, Open-LLM-VTuber's form) drive the
/// avatar; in the terminal they become a small marker (`‹joy›`) instead of raw brackets.
/// A tag is 3 to 20 lowercase letters or `_` in brackets, not followed by `(` (a link),
/// outside code blocks.
pub fn emotion_markers(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('[') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_code = !in_code;
            out.push_str(line);
        } else if in_code {
            out.push_str(line);
        } else {
            markers_in_line(line, &mut out);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn markers_in_line(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let tag = after
            .find(']')
            .map(|close| (&after[..close], &after[close + 1..]))
            .filter(|(name, tail)| {
                (3..=20).contains(&name.len())
                    && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    && !tail.starts_with('(')
            });
        match tag {
            Some((name, tail)) => {
                out.push('‹');
                out.push_str(name);
                out.push('›');
                rest = tail;
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod emotion_tests {
    use super::emotion_markers;

    #[test]
    fn tags_become_markers_and_other_brackets_stay() {
        assert_eq!(emotion_markers("Hi! [joy] Nice."), "Hi! ‹joy› Nice.");
        assert_eq!(emotion_markers("[surprise]Oh"), "‹surprise›Oh");
        assert_eq!(
            emotion_markers("see [docs](http://x)"),
            "see [docs](http://x)"
        );
        assert_eq!(
            emotion_markers("- [x] done, a[0], [Joy]"),
            "- [x] done, a[0], [Joy]"
        );
        assert_eq!(emotion_markers("open [joy"), "open [joy");
        assert_eq!(emotion_markers("no tags"), "no tags");
        assert_eq!(
            emotion_markers("[joy] code:\n```rust\n#[test]\n```\n[calm]"),
            "‹joy› code:\n```rust\n#[test]\n```\n‹calm›"
        );
    }
}
