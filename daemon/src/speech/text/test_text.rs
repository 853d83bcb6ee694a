//! Test input shared by the text modules' property tests.

use proptest::prelude::*;

/// Text rich in the characters the rules look at, so proptest hits them often.
pub(super) fn tricky_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(". ".to_owned()),
        Just("...".to_owned()),
        Just("! ".to_owned()),
        Just("?".to_owned()),
        Just("…".to_owned()),
        Just("。".to_owned()),
        Just("！".to_owned()),
        Just("、".to_owned()),
        Just(", ".to_owned()),
        Just(":".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("  ".to_owned()),
        Just("\"".to_owned()),
        Just("」".to_owned()),
        Just(")".to_owned()),
        Just("`".to_owned()),
        Just("```".to_owned()),
        Just("<think>".to_owned()),
        Just("</think>".to_owned()),
        Just("<thi".to_owned()),
        Just("Mr.".to_owned()),
        Just("e.g.".to_owned()),
        Just("3.14".to_owned()),
        Just("1. ".to_owned()),
        Just("https://a.b/c?d=e".to_owned()),
        Just("[joy]".to_owned()),
        Just("😀".to_owned()),
        "[a-zA-Z]{1,8}",
        "[a-z]{1,3}",
        ".{1,3}",
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}
