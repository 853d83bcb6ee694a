//! Names and schemas as the LLM sees them: OpenAI-style APIs accept tool names of
//! `[a-zA-Z0-9_-]{1,64}` and want an object schema with `properties`.

use std::collections::HashSet;

use serde_json::{Map, Value};

const MAX_NAME: usize = 64;

fn sanitise(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `server__tool`, sanitised, at most 64 characters, and not in `taken` (a numeric
/// suffix is added on collision). The result is added to `taken`.
pub fn exposed_name(server: &str, tool: &str, taken: &mut HashSet<String>) -> String {
    let base = sanitise(&format!("{server}__{tool}"));
    // Sanitised text is ASCII, so byte truncation is safe.
    let mut name: String = base.chars().take(MAX_NAME).collect();
    let mut n = 2u32;
    while taken.contains(&name) {
        let suffix = format!("_{n}");
        let keep = MAX_NAME.saturating_sub(suffix.len());
        name = format!("{}{suffix}", base.chars().take(keep).collect::<String>());
        n += 1;
    }
    taken.insert(name.clone());
    name
}

/// The input schema with `$schema` removed and `type: object` / `properties` ensured.
pub fn sanitise_schema(schema: &Map<String, Value>) -> Value {
    let mut s = schema.clone();
    s.remove("$schema");
    s.insert("type".into(), Value::String("object".into()));
    if !matches!(s.get("properties"), Some(Value::Object(_))) {
        s.insert("properties".into(), Value::Object(Map::new()));
    }
    Value::Object(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_clean_short_and_unique() {
        let mut taken = HashSet::new();
        assert_eq!(
            exposed_name("time", "get_current_time", &mut taken),
            "time__get_current_time"
        );
        assert_eq!(
            exposed_name("my.srv", "tool/x y", &mut taken),
            "my_srv__tool_x_y"
        );
        assert_eq!(
            exposed_name("my_srv", "tool_x_y", &mut taken),
            "my_srv__tool_x_y_2"
        );
        let long = "t".repeat(100);
        let a = exposed_name("s", &long, &mut taken);
        let b = exposed_name("s", &long, &mut taken);
        assert_eq!(a.len(), 64);
        assert_eq!(b.len(), 64);
        assert_ne!(a, b);
        assert!(b.ends_with("_2"));
        assert!(exposed_name("ü", "ö", &mut taken).is_ascii());
    }

    #[test]
    fn schema_is_an_object_with_properties() {
        let raw = json!({"$schema": "http://json-schema.org/draft-07/schema#", "required": ["a"]});
        let out = sanitise_schema(raw.as_object().unwrap());
        assert_eq!(
            out,
            json!({"type": "object", "properties": {}, "required": ["a"]})
        );
        let keep = json!({"type": "object", "properties": {"a": {"type": "number"}}});
        assert_eq!(sanitise_schema(keep.as_object().unwrap()), keep);
    }
}
