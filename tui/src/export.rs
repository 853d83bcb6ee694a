//! Conversation exports: a Markdown transcript for people, JSON for programs.

use std::fmt::Write as _;

use vtuber_shared::{ConversationSummary, CutReason, Role, StoredMessage};

use crate::time::format_ms;

/// A title fit for one Markdown heading line.
pub fn display_title(conversation: &ConversationSummary) -> String {
    let title = conversation
        .title
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if title.is_empty() {
        format!("Conversation {}", conversation.id)
    } else {
        title
    }
}

fn speaker(role: Role, character: &str) -> &str {
    match role {
        Role::User => "You",
        Role::Assistant => character,
        Role::System => "System",
        Role::Tool => "Tool",
    }
}

/// A readable transcript: a header with the metadata, then one section per message.
/// Message text is kept as written (it is usually Markdown already).
/// Where the daemon keeps a stored picture: `images/<sha256>.<ext>` beside the
/// history database (the default place; a `history.database` set elsewhere moves it).
pub fn image_path(image: &vtuber_shared::StoredImage) -> std::path::PathBuf {
    let ext = if image.mime_type == "image/png" {
        "png"
    } else {
        "jpg"
    };
    vtuber_shared::paths::data_dir()
        .join("images")
        .join(format!("{}.{ext}", image.sha256))
}

pub fn markdown(conversation: &ConversationSummary, messages: &[StoredMessage]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", display_title(conversation));
    let _ = writeln!(out, "- Character: {}", conversation.character);
    let _ = writeln!(out, "- Conversation: {}", conversation.id);
    let _ = writeln!(out, "- Started: {}", format_ms(conversation.created_ms));
    let _ = writeln!(out, "- Updated: {}", format_ms(conversation.updated_ms));
    let _ = writeln!(out, "- Messages: {}", messages.len());
    for message in messages {
        let _ = write!(
            out,
            "\n---\n\n### {} · {}\n\n",
            speaker(message.role, &conversation.character),
            format_ms(message.created_ms)
        );
        let text = message.text.trim_end();
        if !text.is_empty() {
            let _ = writeln!(out, "{text}");
            // An unclosed fence in a cut-off reply would swallow the rest of the file.
            if text
                .lines()
                .filter(|l| l.trim_start().starts_with("```"))
                .count()
                % 2
                == 1
            {
                let _ = writeln!(out, "```");
            }
        }
        for image in &message.images {
            let _ = writeln!(out, "\n![image]({})", image_path(image).display());
        }
        if message.interrupted {
            if !text.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(out, "*(interrupted)*");
        }
        if let Some(cut) = message.cut {
            if !text.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(out, "*(cut at the {} limit)*", cut_word(cut));
        }
    }
    out
}

fn cut_word(cut: CutReason) -> &'static str {
    match cut {
        CutReason::Length => "reply length",
        CutReason::Time => "reply time",
    }
}

/// The conversation and its messages, as the daemon sent them.
pub fn json(
    conversation: &ConversationSummary,
    messages: &[StoredMessage],
) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&serde_json::json!({
        "conversation": conversation,
        "messages": messages,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation(title: &str) -> ConversationSummary {
        ConversationSummary {
            id: 12,
            character: "aria".into(),
            title: title.into(),
            created_ms: 1_700_000_000_000,
            updated_ms: 1_700_000_060_000,
            message_count: 3,
        }
    }

    fn message(id: i64, role: Role, text: &str, interrupted: bool) -> StoredMessage {
        StoredMessage {
            interrupted,
            ..StoredMessage::new(id, role, text, 1_700_000_000_000 + id * 1000)
        }
    }

    #[test]
    fn markdown_transcript_has_header_speakers_and_marks() {
        let md = markdown(
            &conversation("Trip\nplanning"),
            &[
                message(1, Role::User, "Where should we go?", false),
                message(
                    2,
                    Role::Assistant,
                    "Kyoto! Here is a plan:\n\n1. Temples",
                    false,
                ),
                message(3, Role::User, "and food?", false),
                message(4, Role::Assistant, "Try the", true),
            ],
        );
        let expected = "\
# Trip planning

- Character: aria
- Conversation: 12
- Started: 2023-11-14 22:13:20 UTC
- Updated: 2023-11-14 22:14:20 UTC
- Messages: 4

---

### You · 2023-11-14 22:13:21 UTC

Where should we go?

---

### aria · 2023-11-14 22:13:22 UTC

Kyoto! Here is a plan:

1. Temples

---

### You · 2023-11-14 22:13:23 UTC

and food?

---

### aria · 2023-11-14 22:13:24 UTC

Try the

*(interrupted)*
";
        assert_eq!(md, expected);
    }

    #[test]
    fn markdown_closes_a_fence_left_open_by_an_interruption() {
        let md = markdown(
            &conversation(""),
            &[message(1, Role::Assistant, "```rust\nfn main() {", true)],
        );
        assert!(md.starts_with("# Conversation 12\n"));
        assert!(
            md.ends_with("fn main() {\n```\n\n*(interrupted)*\n"),
            "{md}"
        );
    }

    #[test]
    fn json_export_round_trips() {
        let conv = conversation("t");
        let msgs = vec![message(1, Role::User, "hi", false)];
        let text = json(&conv, &msgs).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let back: ConversationSummary = serde_json::from_value(v["conversation"].clone()).unwrap();
        let back_msgs: Vec<StoredMessage> = serde_json::from_value(v["messages"].clone()).unwrap();
        assert_eq!(back, conv);
        assert_eq!(back_msgs, msgs);
    }

    #[test]
    fn markdown_links_the_pictures() {
        let mut m = message(1, Role::User, "look", false);
        m.images = vec![m_image()];
        let md = markdown(&conversation("t"), &[m]);
        let line = format!("![image]({})", image_path(&m_image()).display());
        assert!(md.contains(&line), "{md}");
        assert!(
            line.ends_with(&format!("images/{}.jpg)", "ab".repeat(32))),
            "{line}"
        );
    }

    fn m_image() -> vtuber_shared::StoredImage {
        vtuber_shared::StoredImage {
            sha256: "ab".repeat(32),
            mime_type: "image/jpeg".into(),
        }
    }
}
