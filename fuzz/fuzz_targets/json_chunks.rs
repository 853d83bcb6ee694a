//! Long replies are cut into pieces that fit a frame (`json_chunks`): the pieces must
//! join back to the text, each fit the budget, and no character may be split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vtuber_shared::framing::{json_chunks, json_str_len};

fuzz_target!(|data: &[u8]| {
    let Some((budget, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let budget = usize::from(*budget);
    let pieces: Vec<&str> = json_chunks(text, budget).collect();
    assert_eq!(pieces.concat(), text);
    for piece in &pieces {
        assert!(!piece.is_empty());
        assert!(json_str_len(piece) <= budget.max(6), "piece over budget");
    }
    assert_eq!(
        json_str_len(text),
        serde_json::to_string(text).expect("text encodes").len() - 2
    );
});
