//! Pulls `[tag]` expression tags (keys of the avatar's emotion map) out of reply text,
//! so the avatar can show them while the text is spoken.

use std::collections::BTreeMap;

/// Pulls `[tag]` expression tags (keys of the avatar's emotion map, matched
/// case-insensitively, surrounding spaces inside the brackets ignored) out of `text`.
///
/// Returns the text without the tags, and the tags in order, spelled as the map's keys so
/// they can be looked up. Removing a tag also removes one space it would leave doubled (or
/// leading/trailing); other bracketed text is left alone.
pub fn extract_expressions(text: &str, known: &BTreeMap<String, i64>) -> (String, Vec<String>) {
    let mut by_lower: BTreeMap<String, &str> = BTreeMap::new();
    for key in known.keys() {
        by_lower
            .entry(key.trim().to_lowercase())
            .or_insert(key.as_str());
    }
    let mut out = String::with_capacity(text.len());
    let mut tags = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let tag = after
            .find([']', '[', '\n'])
            .filter(|&close| after[close..].starts_with(']'))
            .and_then(|close| {
                let key = by_lower.get(&after[..close].trim().to_lowercase())?;
                Some((*key, close))
            });
        match tag {
            Some((key, close)) => {
                out.push_str(&rest[..open]);
                tags.push(key.to_owned());
                rest = &after[close + 1..];
                let before_space = out.is_empty() || out.ends_with(char::is_whitespace);
                if before_space && rest.starts_with(' ') {
                    rest = &rest[1..];
                } else if out.ends_with(' ') && (rest.is_empty() || rest.starts_with('\n')) {
                    out.pop();
                }
            }
            None => {
                out.push_str(&rest[..open + 1]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    (out, tags)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::speech::text::test_text::tricky_text;

    fn emotions(keys: &[&str]) -> BTreeMap<String, i64> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| ((*k).to_owned(), i as i64))
            .collect()
    }

    #[test]
    fn extract_finds_known_tags_in_order() {
        let map = emotions(&["joy", "Sad", "surprise"]);
        let (text, tags) = extract_expressions("[JOY] Hello [sad] there. [surprise]", &map);
        assert_eq!(text, "Hello there.");
        assert_eq!(tags, ["joy", "Sad", "surprise"]);
    }

    #[test]
    fn extract_leaves_unknown_brackets_and_links() {
        let map = emotions(&["joy"]);
        let (text, tags) = extract_expressions("See [1] and [docs](x) [ joy ]then [joy", &map);
        assert_eq!(text, "See [1] and [docs](x) then [joy");
        assert_eq!(tags, ["joy"]);
        let (text, tags) = extract_expressions("no tags", &BTreeMap::new());
        assert_eq!((text.as_str(), tags.len()), ("no tags", 0));
    }

    #[test]
    fn extract_leaves_no_doubled_spaces() {
        let map = emotions(&["joy"]);
        assert_eq!(extract_expressions("a [joy] b", &map).0, "a b");
        assert_eq!(extract_expressions("a[joy]b", &map).0, "ab");
        assert_eq!(extract_expressions("a [joy]\nb", &map).0, "a\nb");
        assert_eq!(extract_expressions("[joy][joy] x", &map).0, "x");
    }

    proptest! {
        #[test]
        fn extract_keeps_all_non_tag_text(
            parts in prop::collection::vec(("[^\\[\\]]{0,12}", prop::option::of(0usize..3)), 0..12),
            upper in any::<bool>(),
        ) {
            let keys = ["joy", "sad", "big smile"];
            let map = emotions(&keys);
            let mut text = String::new();
            let mut plain = String::new();
            let mut expected = Vec::new();
            for (words, tag) in &parts {
                text.push_str(words);
                plain.push_str(words);
                if let Some(t) = tag {
                    let written = if upper { keys[*t].to_uppercase() } else { keys[*t].to_owned() };
                    text.push_str(&format!("[{written}]"));
                    expected.push(keys[*t].to_owned());
                }
            }
            let (out, tags) = extract_expressions(&text, &map);
            let visible = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            prop_assert_eq!(visible(&out), visible(&plain));
            prop_assert_eq!(tags, expected);
        }

        #[test]
        fn extract_only_removes_tags(text in prop_oneof![tricky_text(), any::<String>()]) {
            let map = emotions(&["joy", "a", "Ω"]);
            let (out, tags) = extract_expressions(&text, &map);
            let visible = |s: &str| s.chars().filter(|c| !c.is_whitespace()).count();
            let removed: usize = tags.iter().map(|t| t.chars().count() + 2).sum();
            prop_assert_eq!(visible(&out) + removed, visible(&text));
            // What is left is the input with pieces taken out, in order.
            let mut source = text.chars();
            prop_assert!(out.chars().all(|c| source.any(|s| s == c)));
        }
    }
}
