//! Property tests standing in for a fuzz target (issue 19): whatever a tool server
//! sends back as a call's result, the text made of it for the prompt is bounded, keeps
//! every text part, and the one-line summary is one line of at most 200 characters.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z é世🎉\n\t\"\\\\]{0,40}",
        (1usize..3000).prop_map(|n| "é世x".repeat(n)),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A content block as a server might send it: the kinds MCP defines, with odd fields.
fn block() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(|t| json!({"type": "text", "text": t})),
        (text(), text()).prop_map(|(d, m)| json!({"type": "image", "data": d, "mimeType": m})),
        (text(), text()).prop_map(|(d, m)| json!({"type": "audio", "data": d, "mimeType": m})),
        (text(), text(), text()).prop_map(|(u, m, t)| {
            json!({"type": "resource", "resource": {"uri": u, "mimeType": m, "text": t}})
        }),
        (text(), text())
            .prop_map(|(u, b)| { json!({"type": "resource", "resource": {"uri": u, "blob": b}}) }),
        (text(), text()).prop_map(|(u, n)| json!({"type": "resource_link", "uri": u, "name": n})),
        any_json(),
    ]
}

proptest! {
    #[test]
    fn any_tool_result_becomes_bounded_prompt_text(
        blocks in prop::collection::vec(block(), 0..6),
        structured in prop::option::of(any_json()),
        is_error in prop::option::of(any::<bool>()),
    ) {
        let mut raw = json!({"content": blocks});
        if let Some(s) = &structured {
            raw["structuredContent"] = s.clone();
        }
        if let Some(e) = is_error {
            raw["isError"] = json!(e);
        }
        // What the server sent may not be a valid result at all: then the call fails
        // with a message, which is covered elsewhere.
        let Ok(result) = serde_json::from_value::<CallToolResult>(raw) else {
            return Ok(());
        };
        let text = result_text(&result.content, result.structured_content.as_ref());
        for block in &result.content {
            if let ContentBlock::Text(t) = block {
                prop_assert!(text.contains(t.text.as_str()));
            }
        }
        let prompt = truncate(&text, MAX_RESULT_BYTES);
        prop_assert!(prompt.len() <= MAX_RESULT_BYTES + 64);
        prop_assert!(text.starts_with(prompt.split("\n[truncated: ").next().unwrap_or("")));
        let summary = summarise(&prompt, 200);
        prop_assert!(summary.chars().count() <= 200);
        prop_assert!(!summary.contains('\n'));
    }
}
