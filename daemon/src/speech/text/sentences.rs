//! Splits a streaming reply into sentences, so speech can start before the reply ends.
//!
//! # Sentence rules ([`SentenceSplitter`])
//!
//! * `!`, `?`, `…` and `.` (and runs of them, like `?!` or `...`) end a sentence when
//!   followed, after any closing quotes/brackets, by whitespace. So `3.14`, `a.b.c`,
//!   `https://x.org/a?b=1` and `"Hi."she` never split.
//! * A run made only of `.`/`…` does not end the sentence when the next word starts with a
//!   lowercase letter (`U.S.A. is`, `Well… maybe`), nor when a single `.` follows a known
//!   abbreviation (`Mr.`, `Dr.`, `e.g.`, `i.e.`, `etc.`, …), a single capital initial other
//!   than `I` (`John F. Kennedy`), or a number that opens the line (`1. First`).
//! * CJK `。！？` end a sentence right away (CJK text has no spaces).
//! * A line break ends a sentence (once it has any content).
//! * Closing quotes/brackets after the terminator stay in the sentence; whitespace after a
//!   sentence belongs to it too, so the next sentence starts at its first visible character
//!   — except after `!`/`?`, where the sentence ends with the first whitespace character
//!   (the next word cannot change the decision, so waiting for it would only add a token
//!   of latency) and further whitespace leads the next sentence.
//! * The first sentence of a reply may be cut early, after `,`/`;`/`:` + whitespace or
//!   after `、`/`，`/`；`/`：`, once it is [`SplitterConfig::first_min_chars`] long: the first
//!   audio starts sooner.
//! * A sentence longer than [`SplitterConfig::max_chars`] (counted from its first visible
//!   character) is cut at the last word start within the limit, or hard at the limit when
//!   there is no word break.
//! * Code fences (```` ``` ````…```` ``` ````) and `<think>`…`</think>` blocks are kept whole
//!   as their own sentence (the cleaner drops them), even past `max_chars`.
//!
//! A cut is only made once the text after it can no longer change the decision, so the
//! sentences do not depend on how the reply was chunked, and the sentences' `raw` texts
//! concatenate to exactly the input.

use serde::Deserialize;

use super::markers::{THINK_CLOSE, THINK_OPEN, run_len};

/// One piece of the reply, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    /// The exact input text, trailing whitespace included: joining every `raw` in order
    /// gives back the whole reply.
    pub raw: String,
    /// 0 for the first sentence of a reply, then 1, 2, …
    pub index: usize,
}

/// Tuning for [`SentenceSplitter`]; characters may configure it later.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitterConfig {
    /// The first sentence may end at a comma once it has this many characters, so the
    /// first audio starts sooner. 0 disables early cuts entirely.
    pub first_min_chars: usize,
    /// Longest sentence (in characters, leading whitespace not counted) before it is cut
    /// at a word boundary; TTS engines slow down or fail on very long input.
    pub max_chars: usize,
}

impl Default for SplitterConfig {
    fn default() -> Self {
        Self {
            first_min_chars: 24,
            max_chars: 300,
        }
    }
}

/// Streaming sentence splitter: feed it LLM text deltas, get sentences as soon as they
/// are certain. See the module docs for the rules.
#[derive(Debug, Clone, Default)]
pub struct SentenceSplitter {
    config: SplitterConfig,
    /// Text not yet emitted; always starts at a sentence start.
    pending: String,
    /// Index the next sentence gets.
    next_index: usize,
}

impl SentenceSplitter {
    pub fn new(config: SplitterConfig) -> Self {
        Self {
            config,
            pending: String::new(),
            next_index: 0,
        }
    }

    /// Adds `delta` and returns the sentences it completed (possibly none).
    pub fn push(&mut self, delta: &str) -> Vec<Sentence> {
        self.pending.push_str(delta);
        let mut out = Vec::new();
        while let Some(cut) = find_cut(&self.pending, self.next_index == 0, &self.config) {
            if cut == 0 || cut > self.pending.len() {
                // Defensive: find_cut never does this; never loop or panic on it.
                break;
            }
            let rest = self.pending.split_off(cut);
            let raw = std::mem::replace(&mut self.pending, rest);
            out.push(self.sentence(raw));
        }
        out
    }

    /// Ends the reply: returns whatever is left as the last sentence (`None` if nothing
    /// is). The splitter is then ready for the next reply, starting again at index 0.
    pub fn finish(&mut self) -> Option<Sentence> {
        let raw = std::mem::take(&mut self.pending);
        let last = (!raw.is_empty()).then(|| self.sentence(raw));
        self.next_index = 0;
        last
    }

    fn sentence(&mut self, raw: String) -> Sentence {
        let index = self.next_index;
        self.next_index += 1;
        Sentence { raw, index }
    }
}

/// Abbreviations (lowercase, without the final dot) whose `.` never ends a sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "mx", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "eg",
    "ie", "cf", "approx", "fig", "no", "vol",
];

fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？' | '‼' | '⁉')
}

fn is_cjk_terminator(c: char) -> bool {
    matches!(c, '。' | '！' | '？')
}

/// Closing quotes and brackets that stay with the sentence they close.
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\''
            | '”'
            | '’'
            | '»'
            | ')'
            | ']'
            | '}'
            | '」'
            | '』'
            | '）'
            | '】'
            | '〕'
            | '〉'
            | '》'
            | '*'
    )
}

/// Where the pending text `text` can be cut, as a byte offset, or `None` while the
/// decision still depends on text not seen yet. Must be monotonic: once it returns
/// `Some(k)` for some text, it returns `Some(k)` for every extension of that text. That is
/// what makes the split independent of chunking; every look-ahead below returns `None`
/// when it runs into the end of the text.
fn find_cut(text: &str, first: bool, config: &SplitterConfig) -> Option<usize> {
    let chars: Vec<char> = text.chars().collect();
    let offsets: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
    let byte = |p: usize| offsets.get(p).copied().unwrap_or(text.len());
    let n = chars.len();
    let max_chars = config.max_chars.max(1);
    // Index of the first visible character, once seen.
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < n {
        if let Some(s) = start
            && i - s >= max_chars
        {
            return max_cut(&chars, s, max_chars).map(byte);
        }
        let c = chars[i];
        if c == '`' {
            let r = run_len(&chars, i, '`');
            if i + r == n {
                return None;
            }
            if r >= 3 {
                if start.is_some() {
                    return Some(byte(i));
                }
                let end = find_fence_close(&chars, i + r, r)?;
                return absorb_ws(&chars, end).map(byte);
            }
            start.get_or_insert(i);
            i += r;
            continue;
        }
        if c == '<' {
            match match_ci(&chars, i, THINK_OPEN) {
                Match::Partial => return None,
                Match::Yes => {
                    if start.is_some() {
                        return Some(byte(i));
                    }
                    let end = find_ci(&chars, i + THINK_OPEN.len(), THINK_CLOSE)?;
                    return absorb_ws(&chars, end).map(byte);
                }
                Match::No => {}
            }
        }
        if c == '\n' && start.is_some() {
            return absorb_ws(&chars, i + 1).map(byte);
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let s = *start.get_or_insert(i);
        if is_terminator(c) {
            match terminator(&chars, s, i) {
                Step::Cut(p) => return Some(byte(p)),
                Step::NeedMore => return None,
                Step::Skip(next) => {
                    i = next;
                    continue;
                }
            }
        }
        if first && config.first_min_chars > 0 && i + 1 - s >= config.first_min_chars {
            let clause = match c {
                ',' | ';' | ':' => match chars.get(i + 1) {
                    None => return None,
                    Some(next) => next.is_whitespace(),
                },
                '、' | '，' | '；' | '：' => true,
                _ => false,
            };
            if clause {
                return absorb_ws(&chars, i + 1).map(byte);
            }
        }
        i += 1;
    }
    None
}

/// What to do at a terminator.
enum Step {
    /// The sentence ends at this char index.
    Cut(usize),
    /// Not a sentence end; continue scanning at this index.
    Skip(usize),
    NeedMore,
}

/// Decides a run of terminators starting at `i`; `start` is the sentence's first visible
/// character.
fn terminator(chars: &[char], start: usize, i: usize) -> Step {
    let n = chars.len();
    let mut j = i;
    while j < n && is_terminator(chars[j]) {
        j += 1;
    }
    let mut k = j;
    while k < n && is_closer(chars[k]) {
        k += 1;
    }
    if k == n {
        return Step::NeedMore;
    }
    let run = &chars[i..j];
    let cjk = run.iter().any(|&c| is_cjk_terminator(c));
    if !cjk && !chars[k].is_whitespace() {
        return Step::Skip(j);
    }
    let soft = run.iter().all(|&c| c == '.' || c == '…');
    if !cjk && !soft {
        // `!` and `?` end the sentence whatever comes next: cut after the first space
        // instead of waiting for the next word (that wait is a whole LLM token).
        return Step::Cut(k + 1);
    }
    let Some(m) = absorb_ws(chars, k) else {
        return Step::NeedMore;
    };
    if !cjk {
        if soft && chars[m].is_lowercase() {
            return Step::Skip(j);
        }
        if run == ['.'] && non_final_word(chars, start, i) {
            return Step::Skip(j);
        }
    }
    Step::Cut(m)
}

/// Whether the word before the `.` at `dot` is one whose dot does not end a sentence:
/// an abbreviation, a capital initial, or a list number at the start of the line.
fn non_final_word(chars: &[char], start: usize, dot: usize) -> bool {
    let mut w = dot;
    while w > start && !chars[w - 1].is_whitespace() {
        w -= 1;
    }
    let raw = &chars[w..dot];
    let trimmed: Vec<char> = raw
        .iter()
        .copied()
        .skip_while(|c| !c.is_alphanumeric())
        .collect();
    let word: String = trimmed.iter().collect::<String>().to_lowercase();
    if ABBREVIATIONS.contains(&word.as_str()) {
        return true;
    }
    if let [c] = trimmed.as_slice()
        && c.is_uppercase()
        && *c != 'I'
    {
        return true;
    }
    !trimmed.is_empty() && trimmed.iter().all(char::is_ascii_digit) && w == start
}

/// Skips whitespace from `p`; `None` if that reaches the end (more may follow).
fn absorb_ws(chars: &[char], p: usize) -> Option<usize> {
    let m = p + chars[p.min(chars.len())..]
        .iter()
        .take_while(|c| c.is_whitespace())
        .count();
    (m < chars.len()).then_some(m)
}

/// The cut for a sentence that reached `max` visible characters: the last word start
/// within the limit, else a hard cut at the limit (plus any whitespace there).
fn max_cut(chars: &[char], start: usize, max: usize) -> Option<usize> {
    let limit = start + max;
    for p in (start + 1..=limit).rev() {
        if chars[p - 1].is_whitespace() && !chars[p].is_whitespace() {
            return Some(p);
        }
    }
    absorb_ws(chars, limit)
}

/// End (exclusive) of the closing fence: the next run of at least `len` backticks after
/// `from`. `None` if there is none yet, or it touches the end (it may grow).
fn find_fence_close(chars: &[char], from: usize, len: usize) -> Option<usize> {
    let mut p = from;
    while p < chars.len() {
        if chars[p] == '`' {
            let r = run_len(chars, p, '`');
            if p + r == chars.len() {
                return None;
            }
            if r >= len {
                return Some(p + r);
            }
            p += r;
        } else {
            p += 1;
        }
    }
    None
}

enum Match {
    Yes,
    No,
    /// The text ends inside what could still become the marker.
    Partial,
}

/// ASCII-case-insensitive match of `marker` at `i`.
fn match_ci(chars: &[char], i: usize, marker: &str) -> Match {
    for (k, m) in marker.chars().enumerate() {
        match chars.get(i + k) {
            None => return Match::Partial,
            Some(c) if c.eq_ignore_ascii_case(&m) => {}
            Some(_) => return Match::No,
        }
    }
    Match::Yes
}

/// End (exclusive) of the first case-insensitive `marker` at or after `from`.
fn find_ci(chars: &[char], from: usize, marker: &str) -> Option<usize> {
    let len = marker.chars().count();
    (from..chars.len())
        .find(|&p| matches!(match_ci(chars, p, marker), Match::Yes))
        .map(|p| p + len)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::speech::text::test_text::tricky_text;

    fn split_with(config: SplitterConfig, chunks: &[&str]) -> Vec<String> {
        let mut s = SentenceSplitter::new(config);
        let mut out: Vec<Sentence> = Vec::new();
        for c in chunks {
            out.extend(s.push(c));
        }
        out.extend(s.finish());
        for (k, sentence) in out.iter().enumerate() {
            assert_eq!(sentence.index, k);
        }
        out.into_iter().map(|s| s.raw).collect()
    }

    /// Splits with early cuts off, so single rules can be tested alone.
    fn split(text: &str) -> Vec<String> {
        let config = SplitterConfig {
            first_min_chars: 0,
            ..SplitterConfig::default()
        };
        split_with(config, &[text])
    }

    #[test]
    fn splits_at_terminators_and_keeps_whitespace_with_the_sentence() {
        assert_eq!(
            split("Hello there.  How are you? Great!  Bye"),
            ["Hello there.  ", "How are you? ", "Great! ", " Bye"]
        );
    }

    #[test]
    fn exclamations_and_questions_end_at_the_first_space_without_waiting() {
        let mut s = SentenceSplitter::new(SplitterConfig::default());
        assert_eq!(s.push("Hello there, my friend!"), vec![]);
        let got = s.push(" ");
        assert_eq!(got.len(), 1, "cut as soon as the space arrives");
        assert_eq!(got[0].raw, "Hello there, my friend! ");
        // A period still waits for the next word (`U.S.A. is` must not split).
        assert_eq!(s.push("It is the U.S.A. "), vec![]);
        assert_eq!(s.push("is"), vec![]);
    }

    #[test]
    fn sentence_is_emitted_once_the_next_one_starts() {
        let mut s = SentenceSplitter::default();
        assert!(s.push("Hi.").is_empty());
        assert!(s.push(" ").is_empty());
        let got = s.push("Yo");
        assert_eq!(
            got,
            [Sentence {
                raw: "Hi. ".into(),
                index: 0
            }]
        );
        assert_eq!(s.finish().map(|s| (s.raw, s.index)), Some(("Yo".into(), 1)));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn finish_resets_the_index_for_the_next_reply() {
        let mut s = SentenceSplitter::default();
        s.push("One. Two. ");
        s.finish();
        assert_eq!(s.push("Three. Four").first().map(|s| s.index), Some(0));
    }

    #[test]
    fn decimals_and_dotted_words_do_not_split() {
        assert_eq!(
            split("Pi is 3.14 today. It costs 3.50. Next."),
            ["Pi is 3.14 today. ", "It costs 3.50. ", "Next."]
        );
        assert_eq!(split("Use file.txt now."), ["Use file.txt now."]);
    }

    #[test]
    fn abbreviations_do_not_split() {
        assert_eq!(
            split("Mr. Smith met Dr. Who, e.g. today, i.e. now, etc. and more. Done."),
            [
                "Mr. Smith met Dr. Who, e.g. today, i.e. now, etc. and more. ",
                "Done."
            ]
        );
    }

    #[test]
    fn initialisms_and_initials() {
        assert_eq!(split("The U.S.A. is big."), ["The U.S.A. is big."]);
        assert_eq!(
            split("I love the U.S.A. It is big."),
            ["I love the U.S.A. ", "It is big."]
        );
        assert_eq!(split("John F. Kennedy spoke."), ["John F. Kennedy spoke."]);
        assert_eq!(split("So do I. Yes."), ["So do I. ", "Yes."]);
    }

    #[test]
    fn numbered_list_marker_is_not_a_sentence() {
        assert_eq!(
            split("1. First item\n2. Second"),
            ["1. First item\n", "2. Second"]
        );
        assert_eq!(
            split("Born in 1990. Then more."),
            ["Born in 1990. ", "Then more."]
        );
    }

    #[test]
    fn ellipsis_and_lowercase_continuation() {
        assert_eq!(split("Well… maybe. Okay."), ["Well… maybe. ", "Okay."]);
        assert_eq!(split("Hmm... I see."), ["Hmm... ", "I see."]);
        assert_eq!(split("What?! No way."), ["What?! ", "No way."]);
    }

    #[test]
    fn urls_do_not_split() {
        assert_eq!(
            split("See https://example.com/a.b?x=1&y=2!z. Then go."),
            ["See https://example.com/a.b?x=1&y=2!z. ", "Then go."]
        );
        assert_eq!(
            split("Visit www.example.org. Thanks!"),
            ["Visit www.example.org. ", "Thanks!"]
        );
    }

    #[test]
    fn cjk_terminators_split_without_spaces() {
        assert_eq!(
            split("こんにちは。元気ですか？はい！"),
            ["こんにちは。", "元気ですか？", "はい！"]
        );
    }

    #[test]
    fn closing_quotes_stay_with_the_sentence() {
        assert_eq!(
            split("She said \"Hi!\" Then left. (Really.) Yes. 「はい。」次"),
            [
                "She said \"Hi!\" ",
                "Then left. ",
                "(Really.) ",
                "Yes. ",
                "「はい。」",
                "次"
            ]
        );
        assert_eq!(split("\"Hi.\"she said."), ["\"Hi.\"she said."]);
    }

    #[test]
    fn line_breaks_split_and_blank_lines_are_not_sentences() {
        assert_eq!(
            split("\n\nTitle\n\nBody text\nmore"),
            ["\n\nTitle\n\n", "Body text\n", "more"]
        );
    }

    #[test]
    fn first_sentence_is_cut_early_at_a_clause() {
        let config = SplitterConfig {
            first_min_chars: 10,
            max_chars: 300,
        };
        assert_eq!(
            split_with(
                config.clone(),
                &["Oh, well, that is a fine idea, really. And, so, yes, it is."]
            ),
            [
                "Oh, well, that is a fine idea, ",
                "really. ",
                "And, so, yes, it is."
            ]
        );
        assert_eq!(
            split_with(config.clone(), &["ええと、それはいい考え、だね。"]),
            ["ええと、それはいい考え、", "だね。"]
        );
        // No cut inside numbers or times.
        assert_eq!(
            split_with(config, &["It costs 1,000,000 dollars at 10:30."]),
            ["It costs 1,000,000 dollars at 10:30."]
        );
    }

    #[test]
    fn default_first_cut_needs_24_chars() {
        assert_eq!(
            split_with(
                SplitterConfig::default(),
                &["Hi, there. Hmm, let me think about it, okay?"]
            ),
            ["Hi, there. ", "Hmm, let me think about it, okay?"]
        );
        assert_eq!(
            split_with(
                SplitterConfig::default(),
                &["Well, let me think about this one, okay? Sure."]
            ),
            ["Well, let me think about this one, ", "okay? ", "Sure."]
        );
    }

    #[test]
    fn long_sentence_is_cut_at_a_word_boundary() {
        let config = SplitterConfig {
            first_min_chars: 0,
            max_chars: 12,
        };
        assert_eq!(
            split_with(config.clone(), &["one two three four five six."]),
            ["one two ", "three four ", "five six."]
        );
        assert_eq!(
            split_with(config, &["abcdefghijklmnopqrstuvwxyz end"]),
            ["abcdefghijkl", "mnopqrstuvwx", "yz end"]
        );
    }

    #[test]
    fn code_fence_is_one_unit() {
        let text = "Here:\n```rust\nlet x = 1. Oh! y;\n\nfn f() {}\n```\nDone. Yes.";
        assert_eq!(
            split(text),
            [
                "Here:\n",
                "```rust\nlet x = 1. Oh! y;\n\nfn f() {}\n```\n",
                "Done. ",
                "Yes."
            ]
        );
        let config = SplitterConfig {
            first_min_chars: 0,
            max_chars: 5,
        };
        assert_eq!(
            split_with(config, &["Run ```a b c d e f g h``` ok"]),
            ["Run ", "```a b c d e f g h``` ", "ok"]
        );
        assert_eq!(
            split("Look ```open. Never closed."),
            ["Look ", "```open. Never closed."]
        );
    }

    #[test]
    fn think_block_is_one_unit() {
        assert_eq!(
            split("<think>Hmm. Let me see.\nOk.</think>\n\nHello! Bye."),
            [
                "<think>Hmm. Let me see.\nOk.</think>\n\n",
                "Hello! ",
                "Bye."
            ]
        );
        assert_eq!(split("a <b> c. d"), ["a <b> c. d"]);
    }

    #[test]
    fn streaming_char_by_char_matches_one_push() {
        let text = "<think>x</think> Hello, world, this is a test! 3.14 is pi. \
                    Mr. Smith said \"hi.\" ```code. x``` end。次へ！ok";
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let chunks: Vec<&str> = chars.iter().map(String::as_str).collect();
        let whole = split_with(SplitterConfig::default(), &[text]);
        assert_eq!(split_with(SplitterConfig::default(), &chunks), whole);
        assert_eq!(whole.concat(), text);
        assert!(whole.len() > 5, "{whole:?}");
    }

    #[test]
    fn empty_input_gives_nothing() {
        let mut s = SentenceSplitter::default();
        assert!(s.push("").is_empty());
        assert_eq!(s.finish(), None);
    }

    /// Cuts `text` at the given fractions (on char boundaries).
    fn chunk(text: &str, cuts: &[usize]) -> Vec<String> {
        let bounds: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        let mut points: Vec<usize> = cuts
            .iter()
            .filter(|_| !bounds.is_empty())
            .map(|&c| bounds[c % bounds.len()])
            .collect();
        points.sort_unstable();
        points.dedup();
        let mut out = Vec::new();
        let mut prev = 0;
        for p in points {
            out.push(text[prev..p].to_owned());
            prev = p;
        }
        out.push(text[prev..].to_owned());
        out
    }

    fn configs() -> impl Strategy<Value = SplitterConfig> {
        (0usize..40, 1usize..80).prop_map(|(first_min_chars, max_chars)| SplitterConfig {
            first_min_chars,
            max_chars,
        })
    }

    fn check_split(text: &str, cuts: &[usize], config: SplitterConfig) {
        let chunks = chunk(text, cuts);
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let streamed = split_with(config.clone(), &refs);
        assert_eq!(streamed.concat(), text);
        assert!(streamed.iter().all(|s| !s.is_empty()));
        let whole = split_with(config, &[text]);
        assert_eq!(streamed, whole);
    }

    proptest! {
        #[test]
        fn split_loses_nothing_and_ignores_chunking_unicode(
            text in any::<String>(),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
            config in configs(),
        ) {
            check_split(&text, &cuts, config);
        }

        #[test]
        fn split_loses_nothing_and_ignores_chunking_tricky(
            text in tricky_text(),
            cuts in prop::collection::vec(any::<usize>(), 0..40),
            config in configs(),
        ) {
            check_split(&text, &cuts, config);
        }
    }
}
