//! Reading and validating one config file (the layers are merged in `layers`).
//!
//! Validation reports every problem it can, not just the first: each top-level section is
//! checked on its own (other lines blanked so line numbers stay true), so a typo under
//! `llm:` does not hide one under `history:`.

use std::fmt;

use serde::de::DeserializeOwned;

use super::schema::Config;

/// One thing wrong with a config file, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// Dotted key path such as `llm.temperature`, when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// All problems found in one file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    pub(super) fn single(file: &str, message: impl Into<String>) -> Self {
        Self {
            problems: vec![ConfigProblem {
                file: file.to_owned(),
                line: None,
                column: None,
                key: None,
                message: message.into(),
            }],
        }
    }
}

/// Parses config text. `file` is only used in messages.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    parse_with_env(text, file, &|name| std::env::var(name).ok())
}

/// [`parse`] with an explicit environment, for tests.
pub fn parse_with_env(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let text = substitute_env(text, file, env)?;
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    match from_yaml::<Config>(&text) {
        Ok(config) => Ok(config),
        Err(first) => {
            let mut problems = section_problems(&text, file);
            if problems.is_empty() {
                problems.push(problem_from(&first, &text, file));
            }
            Err(ConfigError { problems })
        }
    }
}

fn from_yaml<T: DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::from_str(text)
}

/// Checks each top-level block section alone so that every section's first problem is
/// reported. Returns nothing when the layout is not plain block style.
fn section_problems(text: &str, file: &str) -> Vec<ConfigProblem> {
    let lines: Vec<&str> = text.lines().collect();
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_top_level_key(l))
        .map(|(i, _)| i)
        .collect();
    let mut problems = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(lines.len());
        let isolated: String = lines
            .iter()
            .enumerate()
            .map(|(i, l)| if i >= start && i < end { *l } else { "" })
            .collect::<Vec<_>>()
            .join("\n");
        if let Err(e) = from_yaml::<Config>(&isolated) {
            problems.push(problem_from(&e, &isolated, file));
        }
    }
    problems
}

fn is_top_level_key(line: &str) -> bool {
    let Some(first) = line.chars().next() else {
        return false;
    };
    !first.is_whitespace() && first != '#' && first != '-' && line.contains(':')
}

fn problem_from(err: &serde_saphyr::Error, text: &str, file: &str) -> ConfigProblem {
    let loc = err.location();
    let line = loc.as_ref().map(|l| l.line()).filter(|l| *l > 0);
    let column = loc.as_ref().map(|l| l.column()).filter(|c| *c > 0);
    let key = line.and_then(|l| key_path_at(text, l as usize));
    ConfigProblem {
        file: file.to_owned(),
        line,
        column,
        key,
        message: friendly_message(&err.to_string()),
    }
}

/// First line of the parser's message (it appends a source snippet we do not need),
/// with serde's wording made a little plainer.
fn friendly_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw).trim();
    let first = first
        .strip_prefix("error: ")
        .unwrap_or(first)
        .trim_end_matches(|c: char| c == ':' || c.is_whitespace());
    let first = strip_location_suffix(first);
    if let Some(rest) = first.strip_prefix("unknown field ") {
        return format!("unknown key {rest}");
    }
    first.to_owned()
}

fn strip_location_suffix(s: &str) -> &str {
    match s.rfind(" at line ") {
        Some(i) => &s[..i],
        None => s,
    }
}

/// Dotted path of the key on 1-based `line`, found from indentation.
pub(super) fn key_path_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let idx = line.checked_sub(1)?;
    let mut path = Vec::new();
    let mut indent_limit = usize::MAX;
    for l in lines.get(..=idx)?.iter().rev() {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = l.len() - trimmed.len();
        if indent >= indent_limit {
            continue;
        }
        let entry = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        if let Some((key, _)) = entry.split_once(':') {
            let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
            if !key.is_empty() && !key.contains(' ') {
                path.push(key.to_owned());
            }
        }
        indent_limit = indent;
        if indent == 0 {
            break;
        }
    }
    if path.is_empty() {
        return None;
    }
    path.reverse();
    Some(path.join("."))
}

/// Replaces `${VAR}` and `${VAR:-default}`; `$$` stands for a literal `$`.
/// Substitution keeps line structure so parser line numbers stay true.
pub fn substitute_env(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    for (lineno, full_line) in text.split_inclusive('\n').enumerate() {
        // References inside comments are documentation, not substitutions.
        let (line, comment) = full_line.split_at(comment_start(full_line));
        let problem_here = |column: Option<u64>, message: String| ConfigProblem {
            file: file.to_owned(),
            line: Some(lineno as u64 + 1),
            column,
            key: key_path_at(text, lineno + 1),
            message,
        };
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
                continue;
            }
            let Some(body_and_tail) = after.strip_prefix('{') else {
                out.push('$');
                rest = after;
                continue;
            };
            let Some(close) = body_and_tail.find('}') else {
                problems.push(problem_here(
                    Some((line.len() - rest.len() + pos + 1) as u64),
                    "unterminated `${`: write ${NAME} or ${NAME:-default}".into(),
                ));
                out.push_str(&rest[pos..]);
                rest = "";
                break;
            };
            let body = &body_and_tail[..close];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            let valid_name = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            match (valid_name, env(name).filter(|v| !v.is_empty()), default) {
                (false, _, _) => problems.push(problem_here(
                    None,
                    format!(
                        "`${{{body}}}` is not a valid variable reference: names are letters, digits and _"
                    ),
                )),
                (true, Some(value), _) => out.push_str(&value),
                (true, None, Some(default)) => out.push_str(default),
                (true, None, None) => problems.push(problem_here(
                    None,
                    format!(
                        "environment variable {name} is not set: set it, or write ${{{name}:-default}}"
                    ),
                )),
            }
            rest = &body_and_tail[close + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ConfigError { problems })
    }
}

/// Byte offset where a YAML comment starts on this line (its length if none): a `#` at
/// the start or after whitespace, outside quotes.
fn comment_start(line: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev_space => return i,
            None => {}
        }
        prev_space = c.is_whitespace();
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::ProviderKind;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("10.0.0.5".into()),
            _ => None,
        }
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(
            parse_with_env("", "c.yaml", &env).unwrap(),
            Config::default()
        );
        assert_eq!(
            parse_with_env("# only a comment\n", "c.yaml", &env).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn the_documented_openai_shape_parses() {
        let text = "llm:\n  provider: openai_compatible\n  base_url: http://127.0.0.1:11434/v1\n  model: qwen2.5:7b\n  api_key_env: OPENAI_API_KEY   # optional\n";
        let c = parse_with_env(text, "c.yaml", &env).unwrap();
        assert_eq!(c.llm.provider, ProviderKind::OpenaiCompatible);
        assert_eq!(c.llm.model.as_deref(), Some("qwen2.5:7b"));
        assert_eq!(c.llm.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(c.history, Default::default());
    }

    #[test]
    fn the_stop_timeout_is_at_least_a_second() {
        let c = parse_with_env("daemon:\n  stop_timeout_secs: 12\n", "c.yaml", &env).unwrap();
        assert_eq!(c.daemon.stop_timeout_secs, 12);
        assert_eq!(Config::default().daemon.stop_timeout_secs, 5);
        let err = parse_with_env("daemon:\n  stop_timeout_secs: 0\n", "c.yaml", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("stop_timeout_secs"), "{err}");
        assert!(err.contains("at least 1 (default 5)"), "{err}");
    }

    #[test]
    fn env_substitution() {
        let text = "llm:\n  base_url: http://${HOST}:${PORT:-8080}/v1\n  model: \"$$5\"\n";
        let c = parse_with_env(text, "c.yaml", &env).unwrap();
        assert_eq!(c.llm.base_url, "http://10.0.0.5:8080/v1");
        assert_eq!(c.llm.model.as_deref(), Some("$5"));
    }

    #[test]
    fn comments_are_not_substituted() {
        let text = "# uses ${UNSET}\nllm:\n  model: \"a#b\" # ${ALSO_UNSET}\n";
        let c = parse_with_env(text, "c.yaml", &env).unwrap();
        assert_eq!(c.llm.model.as_deref(), Some("a#b"));
    }

    #[test]
    fn missing_env_var_names_line_and_key() {
        let err = parse_with_env("llm:\n  model: ${NOPE}\n", "c.yaml", &env).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        let p = &err.problems[0];
        assert_eq!(p.line, Some(2));
        assert_eq!(p.key.as_deref(), Some("llm.model"));
        assert!(p.message.contains("NOPE"), "{p}");
    }

    #[test]
    fn every_section_problem_is_reported() {
        let text = "llm:\n  provider: embedded\n  temprature: 0.5\nhistory:\n  token_budget: lots\nbogus: 1\n";
        let err = parse_with_env(text, "conf.yaml", &env).unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.problems.len(), 3, "{shown}");
        assert_eq!(err.problems[0].line, Some(3), "{shown}");
        assert_eq!(
            err.problems[0].key.as_deref(),
            Some("llm.temprature"),
            "{shown}"
        );
        assert!(err.problems[0].message.contains("temprature"), "{shown}");
        assert_eq!(err.problems[1].line, Some(5), "{shown}");
        assert_eq!(err.problems[1].key.as_deref(), Some("history.token_budget"));
        assert_eq!(err.problems[2].line, Some(6), "{shown}");
        assert!(shown.starts_with("conf.yaml:3"), "{shown}");
    }

    #[test]
    fn reply_limits_must_be_positive_and_default_from_max_tokens() {
        for (key, want) in [
            ("max_reply_tokens: 0", "at least 1"),
            ("max_reply_bytes: 0", "at least 1"),
            ("max_reply_secs: 0", "at least 1"),
            ("max_reply_secs: soon", ""),
        ] {
            let text = format!("llm:\n  provider: embedded\n  {key}\n");
            let err = parse_with_env(&text, "conf.yaml", &env).unwrap_err();
            let p = &err.problems[0];
            let name = key.split(':').next().unwrap();
            assert_eq!(
                p.key.as_deref(),
                Some(format!("llm.{name}").as_str()),
                "{p}"
            );
            assert_eq!(p.line, Some(3), "{p}");
            assert!(p.message.contains(want), "{p}");
        }
        let c = parse_with_env("llm:\n  max_tokens: 100\n", "conf.yaml", &env).unwrap();
        let limits = c.llm.reply_limits();
        assert_eq!(
            (limits.tokens, limits.bytes, limits.time.as_secs()),
            (400, 6400, 300)
        );
        let c = parse_with_env(
            "llm:\n  max_tokens: null\n  max_reply_bytes: 7\n  max_reply_secs: 9\n",
            "conf.yaml",
            &env,
        )
        .unwrap();
        let limits = c.llm.reply_limits();
        assert_eq!(
            (limits.tokens, limits.bytes, limits.time.as_secs()),
            (2048, 7, 9)
        );
    }

    #[test]
    fn key_path_from_indentation() {
        let text = "a:\n  b:\n    c: 1\n  d: 2\n";
        assert_eq!(key_path_at(text, 3).as_deref(), Some("a.b.c"));
        assert_eq!(key_path_at(text, 4).as_deref(), Some("a.d"));
    }
}

#[cfg(test)]
mod documented_defaults {
    use super::*;

    /// The repository's `conf.yaml` documents the defaults; it must say exactly what the
    /// code does.
    #[test]
    fn repo_conf_yaml_equals_built_in_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let parsed = parse_with_env(&text, "conf.yaml", &|_| None).unwrap();
        assert_eq!(parsed, Config::default());
    }
}
