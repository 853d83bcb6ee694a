//! How tool calls read in one line, shared by the chat view and `say`.

use vtuber_shared::{ApprovalDecision, ApprovalResolution, ToolOutcome};

/// Arguments as compact JSON on one line, cut to `max` characters with `…`;
/// empty for no arguments.
pub fn args_inline(args: &serde_json::Value, max: usize) -> String {
    let text = match args {
        serde_json::Value::Null => return String::new(),
        serde_json::Value::Object(map) if map.is_empty() => return String::new(),
        other => other.to_string(),
    };
    truncate(&text, max)
}

/// `text` cut to `max` characters, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `40%`, `3/10 files` style progress: a percentage when the total is known.
pub fn progress_text(progress: f64, total: Option<f64>, message: Option<&str>) -> String {
    let amount = match total {
        Some(total) if total > 0.0 && progress.is_finite() => {
            format!("{:.0}%", (progress / total * 100.0).clamp(0.0, 100.0))
        }
        _ if progress.is_finite() && progress > 0.0 => format!("{progress}"),
        _ => String::new(),
    };
    match message.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) if amount.is_empty() => m.to_owned(),
        Some(m) => format!("{amount} {m}"),
        None => amount,
    }
}

/// The glyph a finished call is shown with.
pub fn outcome_glyph(outcome: ToolOutcome) -> &'static str {
    match outcome {
        ToolOutcome::Ok => "✓",
        ToolOutcome::Error => "✗",
        ToolOutcome::Denied => "⊘",
        ToolOutcome::TimedOut => "⏱",
        ToolOutcome::Cancelled => "⊖",
    }
}

/// What follows the call's name once it ended: `120 ms · 12:00 UTC`,
/// `error: no such file`, `denied`, `timed out`, `cancelled`.
pub fn outcome_text(outcome: ToolOutcome, duration_ms: u64, summary: &str) -> String {
    let summary = summary.trim();
    let with = |head: String| {
        if summary.is_empty() {
            head
        } else {
            format!("{head} · {summary}")
        }
    };
    match outcome {
        ToolOutcome::Ok => with(format!("{duration_ms} ms")),
        ToolOutcome::Error if summary.is_empty() => "error".to_owned(),
        ToolOutcome::Error => format!("error: {summary}"),
        ToolOutcome::Denied => with("denied".to_owned()),
        ToolOutcome::TimedOut => with("timed out".to_owned()),
        ToolOutcome::Cancelled => "cancelled".to_owned(),
    }
}

pub fn resolution_text(resolution: ApprovalResolution) -> &'static str {
    match resolution {
        ApprovalResolution::Approved => "allowed once",
        ApprovalResolution::ApprovedForSession => "allowed for this session",
        ApprovalResolution::Denied => "denied",
        ApprovalResolution::TimedOut => "timed out (denied)",
        ApprovalResolution::Cancelled => "cancelled",
    }
}

/// A typed answer to `allow tool X? [y]es/[s]ession/[N]o`; anything else denies.
pub fn parse_answer(line: &str) -> ApprovalDecision {
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "a" | "allow" => ApprovalDecision::AllowOnce,
        "s" | "session" => ApprovalDecision::AllowForSession,
        _ => ApprovalDecision::Deny,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_line_forms() {
        assert_eq!(args_inline(&json!({}), 10), "");
        assert_eq!(args_inline(&json!({"tz": "UTC"}), 40), r#"{"tz":"UTC"}"#);
        assert_eq!(
            args_inline(&json!({"path": "/a/long/path"}), 10),
            r#"{"path":"…"#
        );
        assert_eq!(
            progress_text(2.0, Some(5.0), Some("reading")),
            "40% reading"
        );
        assert_eq!(progress_text(3.0, None, None), "3");
        assert_eq!(progress_text(0.0, None, Some(" waiting ")), "waiting");
        assert_eq!(
            outcome_text(ToolOutcome::Ok, 120, "12:00"),
            "120 ms · 12:00"
        );
        assert_eq!(outcome_text(ToolOutcome::Error, 5, "boom"), "error: boom");
        assert_eq!(outcome_text(ToolOutcome::Denied, 0, ""), "denied");
        assert_eq!(outcome_text(ToolOutcome::TimedOut, 0, ""), "timed out");
        assert_eq!(parse_answer("Y\n"), ApprovalDecision::AllowOnce);
        assert_eq!(parse_answer("session"), ApprovalDecision::AllowForSession);
        assert_eq!(parse_answer(""), ApprovalDecision::Deny);
        assert_eq!(parse_answer("maybe"), ApprovalDecision::Deny);
    }
}
