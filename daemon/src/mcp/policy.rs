//! Whether a tool runs without asking, asks a person, or never runs.
//!
//! Order, first hit wins:
//! 1. `policy.tools` of the server. An exact tool name beats any glob; among globs that
//!    match, the most specific wins: the most literal (non-wildcard) characters, then the
//!    longer pattern, then the alphabetically first, so the choice never depends on file
//!    order.
//! 2. `policy.default` of the server.
//! 3. The tool's annotations: `readOnlyHint: true` → allow; anything else (destructive,
//!    not read-only, or unannotated) → ask. Annotations are the server's own claim, so
//!    they may relax only to `allow` for read-only tools.

use globset::Glob;
use vtuber_shared::ToolPolicy;

use crate::config::PolicyConfig;

/// What the server says about a tool (MCP tool annotations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
}

/// The policy for `tool` of a server configured with `cfg`.
pub fn decide(cfg: &PolicyConfig, tool: &str, hints: Hints) -> ToolPolicy {
    if let Some(p) = cfg.tools.get(tool) {
        return *p;
    }
    let best = cfg
        .tools
        .iter()
        .filter(|(pattern, _)| {
            Glob::new(pattern)
                .map(|g| g.compile_matcher().is_match(tool))
                .unwrap_or(false)
        })
        .max_by(|(a, _), (b, _)| {
            literal_chars(a)
                .cmp(&literal_chars(b))
                .then(a.len().cmp(&b.len()))
                // Reversed so that, all else equal, the alphabetically first wins.
                .then(b.cmp(a))
        });
    if let Some((_, p)) = best {
        return *p;
    }
    if let Some(p) = cfg.default {
        return p;
    }
    match hints {
        Hints {
            read_only: Some(true),
            ..
        } => ToolPolicy::Allow,
        _ => ToolPolicy::Ask,
    }
}

fn literal_chars(pattern: &str) -> usize {
    pattern
        .chars()
        .filter(|c| !matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | ',' | '!'))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ToolPolicy::*;

    fn cfg(default: Option<ToolPolicy>, tools: &[(&str, ToolPolicy)]) -> PolicyConfig {
        PolicyConfig {
            default,
            tools: tools.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    const RO: Hints = Hints {
        read_only: Some(true),
        destructive: None,
    };

    #[test]
    fn annotations_when_nothing_configured() {
        let c = cfg(None, &[]);
        assert_eq!(decide(&c, "t", RO), Allow);
        assert_eq!(decide(&c, "t", Hints::default()), Ask);
        let destructive = Hints {
            read_only: Some(false),
            destructive: Some(true),
        };
        assert_eq!(decide(&c, "t", destructive), Ask);
        let harmless = Hints {
            read_only: Some(false),
            destructive: Some(false),
        };
        assert_eq!(decide(&c, "t", harmless), Ask);
    }

    #[test]
    fn default_beats_annotations_and_globs_beat_default() {
        let c = cfg(Some(Deny), &[("read_*", Allow)]);
        assert_eq!(decide(&c, "delete", RO), Deny);
        assert_eq!(decide(&c, "read_file", Hints::default()), Allow);
    }

    #[test]
    fn exact_beats_glob_and_specific_beats_general() {
        let c = cfg(
            None,
            &[
                ("*", Deny),
                ("write_*", Ask),
                ("write_file", Allow),
                ("write_f*", Deny),
            ],
        );
        assert_eq!(decide(&c, "write_file", Hints::default()), Allow);
        assert_eq!(decide(&c, "write_fax", RO), Deny);
        assert_eq!(decide(&c, "write_x", RO), Ask);
        assert_eq!(decide(&c, "other", RO), Deny);
    }
}
