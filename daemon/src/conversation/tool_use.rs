//! Tool use inside a turn, independent of where tools come from.
//!
//! The turn pipeline sees tools through [`ToolRunner`] (implemented for the MCP manager
//! where the daemon is wired together, in `daemon.rs`, and by fakes in tests). Models
//! with native tool calling get the tool list in the request; models without it (such
//! as the small embedded one) get a prompt that asks for a JSON object, and
//! [`detect_json_call`] finds such an object in their reply, tolerating code fences,
//! surrounding prose and the usual key spellings.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use vtuber_shared::ToolOutcome;

use crate::llm::ToolSpec;

/// One call the LLM asked for.
#[derive(Debug, Clone)]
pub struct ToolInvocation {
    pub turn_id: u64,
    pub call_id: String,
    pub character: String,
    /// The exposed name (`server__tool`).
    pub name: String,
    /// Raw JSON text of the arguments, as the model wrote it.
    pub arguments: String,
    pub cancel: CancellationToken,
}

/// What goes back to the LLM.
#[derive(Debug, Clone)]
pub struct ToolReply {
    pub outcome: ToolOutcome,
    pub content: String,
    pub duration: Duration,
}

/// A source of tools for the turn pipeline.
pub trait ToolRunner: Send + Sync {
    /// Tools to offer now (servers come and go).
    fn specs(&self) -> Vec<ToolSpec>;
    /// Runs one call to completion: policy, approval, timeout and audit included.
    fn call(&self, invocation: ToolInvocation) -> BoxFuture<'static, ToolReply>;
}

/// System-prompt section for models without native tool calling.
pub fn json_mode_prompt(tools: &[ToolSpec]) -> String {
    let mut out = String::from(
        "\n\nYou can use tools. To use one, reply with ONLY a JSON object and nothing else:\n\
         {\"tool\": \"<tool name>\", \"arguments\": {<arguments>}}\n\
         You will then receive the result and can answer the user. Use a tool only when it \
         helps; otherwise answer normally. Tools:\n",
    );
    for t in tools {
        out.push_str(&format!(
            "- {}: {} Arguments schema: {}\n",
            t.name,
            t.description.trim(),
            t.parameters
        ));
    }
    out
}

/// Whether text so far could be the start of a JSON tool call, so streaming it to
/// clients should wait until the reply is complete.
pub fn may_be_json_call(text: &str) -> bool {
    let t = text.trim_start();
    t.is_empty() || t.starts_with('{') || t.starts_with("```")
}

/// A tool call found in a reply: (tool name, arguments JSON text).
pub fn detect_json_call(text: &str, tools: &[ToolSpec]) -> Option<(String, String)> {
    let start = text.find('{')?;
    let object = balanced_object(&text[start..])?;
    let value: serde_json::Value = serde_json::from_str(object).ok()?;
    let map = value.as_object()?;
    let name = ["tool", "name", "function", "tool_name"]
        .iter()
        .find_map(|k| map.get(*k).and_then(|v| v.as_str()))?;
    let args = ["arguments", "args", "parameters", "input"]
        .iter()
        .find_map(|k| map.get(*k))
        .cloned()
        .unwrap_or(serde_json::Value::Object(Default::default()));
    // Some models write the arguments as a JSON string.
    let args = match args {
        serde_json::Value::String(s) => serde_json::from_str(&s).ok()?,
        other => other,
    };
    let name = resolve_name(name, tools)?;
    Some((name, args.to_string()))
}

/// Exact name, else case-insensitive, else a unique match on the part after `__`.
fn resolve_name(name: &str, tools: &[ToolSpec]) -> Option<String> {
    if let Some(t) = tools.iter().find(|t| t.name == name) {
        return Some(t.name.clone());
    }
    if let Some(t) = tools.iter().find(|t| t.name.eq_ignore_ascii_case(name)) {
        return Some(t.name.clone());
    }
    let mut short = tools
        .iter()
        .filter(|t| t.name.rsplit("__").next() == Some(name));
    match (short.next(), short.next()) {
        (Some(t), None) => Some(t.name.clone()),
        _ => None,
    }
}

/// The first balanced `{...}` at the start of `s`, respecting JSON strings.
fn balanced_object(s: &str) -> Option<&str> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(&s[..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "time__get_current_time".into(),
                description: "Current time.".into(),
                parameters: serde_json::json!({"type": "object"}),
            },
            ToolSpec {
                name: "calc__add".into(),
                description: "Adds.".into(),
                parameters: serde_json::json!({"type": "object"}),
            },
        ]
    }

    #[test]
    fn finds_plain_fenced_and_prose_wrapped_calls() {
        let t = tools();
        let plain = r#"{"tool": "calc__add", "arguments": {"a": 1, "b": 2}}"#;
        assert_eq!(
            detect_json_call(plain, &t),
            Some(("calc__add".into(), r#"{"a":1,"b":2}"#.into()))
        );
        let fenced = "```json\n{\"name\": \"add\", \"args\": \"{\\\"a\\\": 1}\"}\n```";
        assert_eq!(
            detect_json_call(fenced, &t),
            Some(("calc__add".into(), r#"{"a":1}"#.into()))
        );
        let prose = "Sure! {\"function\": \"TIME__GET_CURRENT_TIME\"} one moment";
        assert_eq!(
            detect_json_call(prose, &t),
            Some(("time__get_current_time".into(), "{}".into()))
        );
    }

    #[test]
    fn ignores_non_calls() {
        let t = tools();
        assert_eq!(detect_json_call("Hello there!", &t), None);
        assert_eq!(detect_json_call("{\"tool\": \"nope\"}", &t), None);
        assert_eq!(detect_json_call("{\"tool\": \"calc__add\"", &t), None);
        assert_eq!(detect_json_call("{\"a\": \"}\"}", &t), None);
    }

    #[test]
    fn holding_back_only_what_may_be_json() {
        assert!(may_be_json_call("  {\"to"));
        assert!(may_be_json_call("```"));
        assert!(may_be_json_call(""));
        assert!(!may_be_json_call("Hi"));
    }
}
