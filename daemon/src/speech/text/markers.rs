//! Markers that both the sentence splitter and the speech cleaner recognise: `<think>`
//! blocks and backtick runs (code fences and inline code).

pub(super) const THINK_OPEN: &str = "<think>";
pub(super) const THINK_CLOSE: &str = "</think>";

/// Length of the run of `c` starting at `i`.
pub(super) fn run_len(chars: &[char], i: usize, c: char) -> usize {
    chars[i..].iter().take_while(|&&x| x == c).count()
}
