//! Cleans reply text into what a TTS engine should read: reasoning, markup, code, emoji,
//! actions and tags removed per the character's [`CleanOptions`].

use serde::Deserialize;

use super::markers::{THINK_CLOSE, THINK_OPEN, run_len};

/// What to do with inline code (`` `like_this` ``) when speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InlineCode {
    /// Read the code as words, without the backticks.
    #[default]
    Keep,
    /// Leave it out.
    Drop,
}

/// What [`clean_for_speech`] removes; per character, so it deserializes with defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CleanOptions {
    /// Drop fenced code blocks entirely (nobody wants code read aloud); when false, their
    /// content is read without the fences and info string.
    pub drop_code_blocks: bool,
    pub inline_code: InlineCode,
    /// Drop emoji: TTS engines read their names or stumble.
    pub drop_emoji: bool,
    /// Drop `(asides)`, nested ones included. Off by default: parentheses often carry
    /// real content.
    pub drop_parentheticals: bool,
    /// Drop `*actions*` (single-asterisk spans, the role-play convention). `**bold**`
    /// always keeps its text. When false, single-asterisk spans are read as emphasis.
    pub drop_actions: bool,
    /// Drop `[bracketed]` text: expression tags like `[joy]`, `[laughs]`, `[1]`.
    /// Markdown links are turned into their text first.
    pub drop_bracketed: bool,
    /// Drop `<angle bracketed>` spans (`<laugh>`, `<break/>`, stray HTML), as
    /// Open-LLM-VTuber's `ignore_angle_brackets` does: an SSML engine would otherwise
    /// get markup, and others read the tag's name.
    pub drop_angle_brackets: bool,
}

impl Default for CleanOptions {
    fn default() -> Self {
        Self {
            drop_code_blocks: true,
            inline_code: InlineCode::Keep,
            drop_emoji: true,
            drop_parentheticals: false,
            drop_actions: true,
            drop_bracketed: true,
            drop_angle_brackets: true,
        }
    }
}

/// What the TTS engine should read for `text`: reasoning, markup, code, emoji and tags
/// removed per `opts`, whitespace collapsed to single spaces.
///
/// With `drop_bracketed`, the result never contains a `[` before a `]`, so no expression
/// tag can survive, however the removals interact.
pub fn clean_for_speech(text: &str, opts: &CleanOptions) -> String {
    let text = strip_think(text);
    let text = strip_code(&text, opts);
    let text = if opts.drop_angle_brackets {
        strip_balanced(&text, |c| c == '<', |c| c == '>')
    } else {
        text
    };
    let text = strip_block_markup(&text);
    let text = strip_links(&text);
    let text = strip_emphasis(&text, opts.drop_actions);
    let text = if opts.drop_parentheticals {
        strip_parentheticals(&text)
    } else {
        text
    };
    let text: String = if opts.drop_emoji {
        text.chars().filter(|&c| !is_emoji(c)).collect()
    } else {
        text
    };
    let text = collapse_ws(&text);
    let text = if opts.drop_bracketed {
        collapse_ws(&strip_brackets(&text))
    } else {
        text
    };
    tidy_punctuation(&text)
}

/// Drops `<think>…</think>` blocks (an unclosed one runs to the end). A `</think>` with no
/// opening before it means the template opened the block in the prompt: everything before
/// it is reasoning.
fn strip_think(text: &str) -> String {
    // ASCII lowercasing keeps byte offsets, so positions in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    let mut pos = 0;
    if let Some(close) = lower.find(THINK_CLOSE)
        && !lower[..close].contains(THINK_OPEN)
    {
        pos = close + THINK_CLOSE.len();
    }
    let mut out = String::new();
    while let Some(open) = lower[pos..].find(THINK_OPEN) {
        out.push_str(&text[pos..pos + open]);
        let after = pos + open + THINK_OPEN.len();
        match lower[after..].find(THINK_CLOSE) {
            Some(close) => pos = after + close + THINK_CLOSE.len(),
            None => return out,
        }
    }
    out.push_str(&text[pos..]);
    // Stray closers left after complete blocks.
    remove_ci(&out, THINK_CLOSE)
}

fn remove_ci(text: &str, marker: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::new();
    let mut pos = 0;
    while let Some(p) = lower[pos..].find(marker) {
        out.push_str(&text[pos..pos + p]);
        pos += p + marker.len();
    }
    out.push_str(&text[pos..]);
    out
}

/// Fenced blocks (3+ backticks, closed by a run at least as long; unclosed runs to the
/// end) and inline code (1–2 backticks, closed by the same run; unclosed loses its
/// backticks).
fn strip_code(text: &str, opts: &CleanOptions) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let r = run_len(&chars, i, '`');
        let body = i + r;
        if r >= 3 {
            let (end, close) = match find_run(&chars, body, |len| len >= r) {
                Some((p, len)) => (p, p + len),
                None => (chars.len(), chars.len()),
            };
            out.push('\n');
            if !opts.drop_code_blocks {
                let content = &chars[body..end];
                // The first line is the info string (`rust`), unless the block is one line.
                let code = match content.iter().position(|&c| c == '\n') {
                    Some(nl) => &content[nl + 1..],
                    None => content,
                };
                out.extend(code.iter());
                out.push('\n');
            }
            i = close;
        } else {
            match find_run(&chars, body, |len| len == r) {
                Some((p, len)) => {
                    if opts.inline_code == InlineCode::Keep {
                        out.extend(chars[body..p].iter());
                    } else {
                        out.push(' ');
                    }
                    i = p + len;
                }
                None => i = body,
            }
        }
    }
    out
}

/// The next backtick run from `from` whose length satisfies `ok`: (start, length).
fn find_run(chars: &[char], from: usize, ok: impl Fn(usize) -> bool) -> Option<(usize, usize)> {
    let mut p = from;
    while p < chars.len() {
        if chars[p] == '`' {
            let r = run_len(chars, p, '`');
            if ok(r) {
                return Some((p, r));
            }
            p += r;
        } else {
            p += 1;
        }
    }
    None
}

/// Line-level markdown: headings, block quotes, bullets, horizontal rules, table pipes.
fn strip_block_markup(text: &str) -> String {
    let mut lines = Vec::new();
    for line in text.split('\n') {
        let mut l = line.trim_start();
        let rule: String = l.chars().filter(|c| !c.is_whitespace()).collect();
        if rule.len() >= 3
            && (rule.chars().all(|c| c == '-')
                || rule.chars().all(|c| c == '*')
                || rule.chars().all(|c| c == '_'))
        {
            lines.push(String::new());
            continue;
        }
        while let Some(rest) = l.strip_prefix('>') {
            l = rest.trim_start();
        }
        let hashes = l.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) {
            let rest = &l[hashes..];
            if rest.is_empty() || rest.starts_with(char::is_whitespace) {
                l = rest.trim_start();
            }
        }
        for bullet in ["- ", "* ", "+ ", "• "] {
            if let Some(rest) = l.strip_prefix(bullet) {
                l = rest.trim_start();
                break;
            }
        }
        lines.push(l.replace('|', " "));
    }
    lines.join("\n")
}

/// `[text](url)` → `text`, `![alt](url)` → `alt`.
fn strip_links(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if let Some((label, end)) = link_at(&chars, i) {
            if out.ends_with('!') {
                out.pop();
            }
            out.extend(label.iter());
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// A markdown link starting at `i`: its label and the index after `)`.
fn link_at(chars: &[char], i: usize) -> Option<(&[char], usize)> {
    if chars.get(i) != Some(&'[') {
        return None;
    }
    let close = i
        + 1
        + chars[i + 1..]
            .iter()
            .position(|&c| matches!(c, ']' | '[' | '\n'))?;
    if chars[close] != ']' || chars.get(close + 1) != Some(&'(') {
        return None;
    }
    let paren = close
        + 2
        + chars[close + 2..]
            .iter()
            .position(|&c| c == ')' || c.is_whitespace())?;
    (chars[paren] == ')').then(|| (&chars[i + 1..close], paren + 1))
}

/// Emphasis markers (`*`, `**`, `__`, `~~`, `_` at word edges) go; with `drop_actions`,
/// `*action*` spans go whole.
fn strip_emphasis(text: &str, drop_actions: bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' => {
                let r = run_len(&chars, i, '*');
                if r == 1
                    && drop_actions
                    && let Some(end) = action_end(&chars, i)
                {
                    i = end;
                } else {
                    i += r;
                }
            }
            '_' | '~' => {
                let r = run_len(&chars, i, c);
                let prev_word = i > 0 && chars[i - 1].is_alphanumeric();
                let next_word = chars.get(i + r).is_some_and(|c| c.is_alphanumeric());
                let marker = r >= 2 || (c == '_' && !(prev_word && next_word));
                if !marker {
                    out.extend(&chars[i..i + r]);
                }
                i += r;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Index after the closing `*` of a `*action*` opened at `i`, if there is one on the line.
fn action_end(chars: &[char], i: usize) -> Option<usize> {
    let first = *chars.get(i + 1)?;
    if first.is_whitespace() || first == '*' {
        return None;
    }
    let mut p = i + 1;
    while p < chars.len() && chars[p] != '\n' {
        if chars[p] == '*' {
            let r = run_len(chars, p, '*');
            if r == 1 && !chars[p - 1].is_whitespace() {
                return Some(p + 1);
            }
            p += r;
        } else {
            p += 1;
        }
    }
    None
}

/// Drops balanced `(…)`/`（…）`, nested ones included; unbalanced parentheses stay.
fn strip_parentheticals(text: &str) -> String {
    strip_balanced(
        text,
        |c| matches!(c, '(' | '（'),
        |c| matches!(c, ')' | '）'),
    )
}

/// Drops balanced `[…]` (and the full-width `【…】`, `［…］` of CJK replies). Afterwards no
/// `[` precedes a `]`: every `]` that found an open `[` removed it.
fn strip_brackets(text: &str) -> String {
    strip_balanced(
        text,
        |c| matches!(c, '[' | '【' | '［'),
        |c| matches!(c, ']' | '】' | '］'),
    )
}

fn strip_balanced(text: &str, open: impl Fn(char) -> bool, close: impl Fn(char) -> bool) -> String {
    let mut out = String::new();
    let mut opens: Vec<usize> = Vec::new();
    for c in text.chars() {
        if open(c) {
            opens.push(out.len());
            out.push(c);
        } else if close(c) {
            match opens.pop() {
                Some(at) => out.truncate(at),
                None => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Emoji and the joiners/selectors/modifiers that build them.
fn is_emoji(c: char) -> bool {
    matches!(
        c as u32,
        0x1F000..=0x1FAFF   // pictographs, emoticons, transport, flags, skin tones, …
            | 0x2600..=0x27BF   // misc symbols, dingbats
            | 0x2B00..=0x2BFF   // arrows & stars like ⭐
            | 0x2300..=0x23FF   // ⌚ ⏰ …
            | 0xFE00..=0xFE0F   // variation selectors
            | 0x200D            // zero-width joiner
            | 0x20E3            // keycap
            | 0xE0020..=0xE007F // tag sequences
            | 0x3030
            | 0x303D
            | 0x3297
            | 0x3299
    )
}

fn collapse_ws(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Removes the space removals leave before punctuation (`Hi [joy] !` → `Hi!`).
fn tidy_punctuation(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' '
            && chars
                .peek()
                .is_some_and(|n| ",.!?;:…。、，！？".contains(*n))
        {
            continue;
        }
        out.push(c);
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::speech::text::sentences::SplitterConfig;
    use crate::speech::text::test_text::tricky_text;

    fn clean(text: &str) -> String {
        clean_for_speech(text, &CleanOptions::default())
    }

    #[test]
    fn clean_strips_emphasis_headings_bullets_quotes_rules() {
        assert_eq!(
            clean(
                "# Title\n\n- **bold** and __under__ ~~gone~~\n* item\n> quoted\n---\nsnake_case _it_"
            ),
            "Title bold and under gone item quoted snake_case it"
        );
    }

    #[test]
    fn clean_turns_links_into_their_text() {
        assert_eq!(
            clean("See [the docs](https://x.org/a_b) and ![a cat](cat.png)."),
            "See the docs and a cat."
        );
    }

    #[test]
    fn clean_inline_code_per_option() {
        assert_eq!(clean("Run `cargo test` now"), "Run cargo test now");
        let opts = CleanOptions {
            inline_code: InlineCode::Drop,
            ..CleanOptions::default()
        };
        assert_eq!(clean_for_speech("Run `cargo test` now", &opts), "Run now");
        assert_eq!(clean("a ` b"), "a b");
    }

    #[test]
    fn clean_code_blocks_per_option() {
        let text = "Try:\n```rust\nlet x = 1;\n```\nDone.";
        assert_eq!(clean(text), "Try: Done.");
        let opts = CleanOptions {
            drop_code_blocks: false,
            ..CleanOptions::default()
        };
        assert_eq!(clean_for_speech(text, &opts), "Try: let x = 1; Done.");
        assert_eq!(clean("Look ```never closed"), "Look");
    }

    #[test]
    fn clean_drops_think_blocks() {
        assert_eq!(clean("<think>plan. more</think>Hello!"), "Hello!");
        assert_eq!(clean("A <THINK>x</Think> B"), "A B");
        assert_eq!(clean("Hi <think>still thinking"), "Hi");
        assert_eq!(clean("reasoning here</think> Answer."), "Answer.");
    }

    #[test]
    fn clean_emoji_per_option() {
        assert_eq!(clean("Hi 😀! 👍🏽 ❤️ 👨‍👩‍👧 done ⭐"), "Hi! done");
        let opts = CleanOptions {
            drop_emoji: false,
            ..CleanOptions::default()
        };
        assert_eq!(clean_for_speech("Hi 😀", &opts), "Hi 😀");
        assert_eq!(clean("café 日本語 ©"), "café 日本語 ©");
    }

    #[test]
    fn clean_actions_and_parentheticals_per_option() {
        assert_eq!(
            clean("*waves* Hello (smiling) there *softly*."),
            "Hello (smiling) there."
        );
        let opts = CleanOptions {
            drop_actions: false,
            drop_parentheticals: true,
            ..CleanOptions::default()
        };
        assert_eq!(
            clean_for_speech("*waves* Hello (smiling (a lot)) there（笑）. (open", &opts),
            "waves Hello there. (open"
        );
        assert_eq!(clean("2 * 3 is six"), "2 3 is six");
    }

    #[test]
    fn clean_drops_tags_and_collapses_whitespace() {
        assert_eq!(clean("[joy]  Hello\n\tthere [wink] !"), "Hello there!");
        assert_eq!(clean("[jo[x]y] ok [unclosed"), "ok [unclosed");
        assert_eq!(clean("a ] b"), "a ] b");
        let opts = CleanOptions {
            drop_bracketed: false,
            ..CleanOptions::default()
        };
        assert_eq!(clean_for_speech("[joy] Hi", &opts), "[joy] Hi");
    }

    #[test]
    fn clean_drops_angle_tags_and_full_width_brackets_per_option() {
        let opts = CleanOptions::default();
        assert_eq!(
            clean_for_speech("Hi <laugh> there【笑】, friend<br/>.", &opts),
            "Hi there, friend."
        );
        // Unbalanced comparisons are kept.
        assert_eq!(
            clean_for_speech("If a < b, stop.", &opts),
            "If a < b, stop."
        );
        let keep = CleanOptions {
            drop_angle_brackets: false,
            ..CleanOptions::default()
        };
        assert_eq!(
            clean_for_speech("Hi <laugh> there.", &keep),
            "Hi <laugh> there."
        );
    }

    #[test]
    fn clean_options_deserialize_with_defaults() {
        let opts: CleanOptions =
            toml::from_str("drop_emoji = false\ninline_code = \"drop\"").expect("valid");
        assert_eq!(
            opts,
            CleanOptions {
                drop_emoji: false,
                inline_code: InlineCode::Drop,
                ..CleanOptions::default()
            }
        );
        assert!(toml::from_str::<CleanOptions>("bogus = 1").is_err());
        let config: SplitterConfig = toml::from_str("max_chars = 80").expect("valid");
        assert_eq!(config.first_min_chars, 24);
    }

    proptest! {
        #[test]
        fn cleaned_text_has_no_known_tag(
            text in prop_oneof![tricky_text(), any::<String>()],
            keys in prop::collection::vec("[a-zA-Z ]{0,8}", 1..5),
        ) {
            let cleaned = clean(&text).to_lowercase();
            for key in keys {
                let tag = format!("[{}]", key.to_lowercase());
                prop_assert!(!cleaned.contains(&tag), "{cleaned:?} contains {tag:?}");
            }
        }
    }
}
