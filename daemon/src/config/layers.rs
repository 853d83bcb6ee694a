//! The configuration as layers: `conf.yaml`, then every `conf.d/*.yaml` beside it in name
//! order, then `conf.NAME.yaml` for the profile (`--profile NAME` or `$VTUBER_PROFILE`).
//! A later layer overrides the keys it sets and keeps the rest: sections merge key by key,
//! lists are replaced whole, and so is one tool server (`mcp.servers.NAME`), which must
//! be complete in every file that names it.
//!
//! Each file is validated on its own first, so a mistake is reported with its own file,
//! line and key; the merge then works on already-typed values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::load::{ConfigError, ConfigProblem, key_path_at, substitute_env};
use super::schema::Config;

/// The environment variable naming the profile when `--profile` is not given.
pub const PROFILE_ENV: &str = "VTUBER_PROFILE";

/// A parsed config and the files it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// `conf.yaml` (or `--config`); `None`: no base file, built-in defaults under any
    /// overlays.
    pub source: Option<PathBuf>,
    /// Every file read, in the order applied (base, `conf.d/*.yaml`, the profile's).
    pub layers: Vec<Layer>,
}

impl LoadedConfig {
    /// The files read, in order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.layers.iter().map(|l| l.path.as_path())
    }

    /// The effective configuration with where each value came from, secrets masked;
    /// `only_set`: only what the files set.
    pub fn render_effective(&self, only_set: bool) -> String {
        render_effective(&self.config, &self.layers, only_set)
    }

    /// The effective configuration as one JSON object, secrets masked.
    pub fn effective_json(&self) -> String {
        effective_json(&self.config)
    }
}

/// Base file lookup order: `explicit` (`--config`), `$VTUBER_CONFIG`,
/// `$XDG_CONFIG_HOME/vtuber/conf.yaml`, else built-in defaults. Then the overlays beside
/// it (`conf.d/*.yaml`) and the profile's file (`conf.NAME.yaml`); see [`super::layers`].
pub fn load(explicit: Option<&Path>, profile: Option<&str>) -> Result<LoadedConfig, ConfigError> {
    let base = explicit
        .map(Path::to_path_buf)
        .or_else(vtuber_shared::paths::user_config_file);
    if let Some(path) = &base
        && !path.is_file()
    {
        let shown = path.display().to_string();
        let why = match std::fs::metadata(path) {
            Ok(_) => "it is not a file".to_owned(),
            Err(e) => e.to_string(),
        };
        return Err(ConfigError::single(
            &shown,
            format!(
                "cannot read the config file: {why} (check the path given with --config or $VTUBER_CONFIG)"
            ),
        ));
    }
    let files = layer_files(
        base.as_deref(),
        &vtuber_shared::paths::config_dir(),
        profile,
    )?;
    let (config, layers) = load_layers(&files, &|name| std::env::var(name).ok())?;
    Ok(LoadedConfig {
        config,
        source: base,
        layers,
    })
}

/// One file of the configuration and the keys it sets.
#[derive(Debug, Clone)]
pub struct Layer {
    pub path: PathBuf,
    /// Dotted key path → the 1-based line setting it (when found).
    pub keys: BTreeMap<String, Option<u64>>,
    /// Every key written in the file → its line, for finer provenance inside whole values.
    lines: BTreeMap<String, u64>,
    /// The typed values of the keys this file sets (validated).
    values: Value,
}

/// The files that apply, in order. `base` is `conf.yaml` (or `--config`), when there is one.
pub fn layer_files(
    base: Option<&Path>,
    default_dir: &Path,
    profile: Option<&str>,
) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = base.and_then(Path::parent).unwrap_or(default_dir);
    let mut files: Vec<PathBuf> = base.map(Path::to_path_buf).into_iter().collect();
    let overlay_dir = dir.join("conf.d");
    match std::fs::read_dir(&overlay_dir) {
        Ok(entries) => {
            let mut overlays: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml") && p.is_file())
                .collect();
            overlays.sort();
            files.extend(overlays);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(single(
                &overlay_dir,
                format!("cannot read the overlay folder: {e} (fix its permissions or remove it)"),
            ));
        }
    }
    if let Some(name) = profile.map(str::trim).filter(|n| !n.is_empty()) {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(single(
                &dir.join(format!("conf.{name}.yaml")),
                format!(
                    "profile `{name}`: a profile name is letters, digits, - and _ (set by --profile or ${PROFILE_ENV})"
                ),
            ));
        }
        let path = dir.join(format!("conf.{name}.yaml"));
        if !path.is_file() {
            return Err(single(
                &path,
                format!(
                    "profile `{name}` has no file: create {} or choose another profile (--profile or ${PROFILE_ENV})",
                    path.display()
                ),
            ));
        }
        files.push(path);
    }
    Ok(files)
}

/// Reads and validates one file as a layer.
pub fn read_layer(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        single(
            path,
            format!("cannot read the config file: {e} (check the path and its permissions)"),
        )
    })?;
    layer_from_text(&text, path, env)
}

/// [`read_layer`] on text already read.
pub fn layer_from_text(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Layer, ConfigError> {
    let shown = path.display().to_string();
    let typed = super::load::parse_with_env(text, &shown, env)?;
    // Which keys the file sets: its own tree, after the same substitution.
    let substituted = substitute_env(text, &shown, env)?;
    let raw: Value = if substituted.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        serde_saphyr::from_str(&substituted)
            .map_err(|e| single(path, format!("cannot read the file's structure: {e}")))?
    };
    let typed = serde_json::to_value(&typed)
        .map_err(|e| single(path, format!("cannot represent the file's values: {e}")))?;
    let mut paths = Vec::new();
    leaf_paths(&raw, &mut Vec::new(), &mut paths);
    let lines = key_lines(text);
    let mut keys = BTreeMap::new();
    let mut values = Value::Object(Map::new());
    for p in paths {
        let dotted = p.join(".");
        if let Some(v) = lookup(&typed, &p) {
            set(&mut values, &p, v.clone());
        }
        let line = lines.get(&dotted).copied();
        keys.insert(dotted, line);
    }
    Ok(Layer {
        path: path.to_path_buf(),
        keys,
        lines,
        values,
    })
}

/// Merges the layers over the built-in defaults.
pub fn merge(layers: &[Layer]) -> Result<Config, ConfigError> {
    let mut merged = serde_json::to_value(Config::default())
        .map_err(|e| single(Path::new("(defaults)"), e.to_string()))?;
    for layer in layers {
        overlay(&mut merged, &layer.values, &mut Vec::new());
    }
    serde_json::from_value(merged).map_err(|e| {
        let files: Vec<String> = layers
            .iter()
            .map(|l| l.path.display().to_string())
            .collect();
        ConfigError {
            problems: vec![ConfigProblem {
                file: files.join(" + "),
                line: None,
                column: None,
                key: None,
                message: format!("the files are valid alone but not together: {e}"),
            }],
        }
    })
}

/// Reads every file (all problems of all files are reported) and merges them.
pub fn load_layers(
    files: &[PathBuf],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<Layer>), ConfigError> {
    let mut layers = Vec::new();
    let mut problems = Vec::new();
    for f in files {
        match read_layer(f, env) {
            Ok(l) => layers.push(l),
            Err(e) => problems.extend(e.problems),
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let config = merge(&layers)?;
    Ok((config, layers))
}

/// The effective configuration as YAML, each value followed by where it came from
/// (`file:line` or `default`). Secrets (tokens, environment values and headers of tool
/// servers) are masked unless they are `secret:NAME` references. `only_set` leaves out
/// the values no file sets.
pub fn render_effective(config: &Config, layers: &[Layer], only_set: bool) -> String {
    let value = serde_json::to_value(config).unwrap_or(Value::Null);
    let mut out = String::new();
    let mut path = Vec::new();
    let r = Renderer { layers, only_set };
    r.render(&value, &mut path, 0, &mut out);
    out
}

/// The effective configuration as JSON, secrets masked as in [`render_effective`].
pub fn effective_json(config: &Config) -> String {
    let mut value = serde_json::to_value(config).unwrap_or(Value::Null);
    mask_json(&mut value, &mut Vec::new());
    value.to_string()
}

fn mask_json(value: &mut Value, path: &mut Vec<String>) {
    if is_secret(path) {
        let keep = matches!(value, Value::Null)
            || matches!(value, Value::String(s) if s.starts_with("secret:"))
            || matches!(value, Value::Object(m) if m.is_empty());
        if !keep && !value.is_object() {
            *value = Value::String("********".to_owned());
            return;
        }
    }
    if let Value::Object(map) = value {
        for (k, v) in map.iter_mut() {
            path.push(k.clone());
            mask_json(v, path);
            path.pop();
        }
    }
}

struct Renderer<'a> {
    layers: &'a [Layer],
    only_set: bool,
}

impl Renderer<'_> {
    /// Renders the map at `path`; false when nothing in it was written.
    fn render(
        &self,
        value: &Value,
        path: &mut Vec<String>,
        indent: usize,
        out: &mut String,
    ) -> bool {
        let Value::Object(map) = value else {
            return false;
        };
        let mut any = false;
        for (key, v) in map {
            path.push(key.clone());
            let pad = "  ".repeat(indent);
            match v {
                Value::Object(inner) if !inner.is_empty() => {
                    let mut inner_out = String::new();
                    if self.render(v, path, indent + 1, &mut inner_out) {
                        out.push_str(&format!("{pad}{}:\n{inner_out}", yaml_key(key)));
                        any = true;
                    }
                }
                _ => {
                    let from = provenance(path, self.layers);
                    if !(self.only_set && from == "default") {
                        let shown = if is_secret(path) {
                            mask(v)
                        } else {
                            yaml_scalar(v)
                        };
                        out.push_str(&format!("{pad}{}: {shown}  # {from}\n", yaml_key(key)));
                        any = true;
                    }
                }
            }
            path.pop();
        }
        any
    }
}

/// The last layer that set this key or a key above it (a whole list or map).
fn provenance(path: &[String], layers: &[Layer]) -> String {
    for layer in layers.iter().rev() {
        for n in (1..=path.len()).rev() {
            let dotted = path[..n].join(".");
            if let Some(line) = layer.keys.get(&dotted) {
                let file = layer.path.display();
                let written = layer.lines.get(&path.join(".")).copied();
                // A key the file left out of a whole value (a server) is a default.
                if n < path.len() && is_whole(&path[..n]) && written.is_none() {
                    return "default".to_owned();
                }
                let line = written.or(*line);
                return match line {
                    Some(l) => format!("{file}:{l}"),
                    None => file.to_string(),
                };
            }
        }
    }
    "default".to_owned()
}

fn is_secret(path: &[String]) -> bool {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    matches!(p.as_slice(), ["web", "token"])
        || matches!(p.as_slice(), ["mcp", "servers", _, "env" | "headers", ..])
}

fn mask(v: &Value) -> String {
    match v {
        Value::String(s) if s.starts_with("secret:") => yaml_scalar(v),
        Value::Null => "null".to_owned(),
        Value::Object(m) if m.is_empty() => "{}".to_owned(),
        _ => "\"********\"".to_owned(),
    }
}

fn yaml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

/// JSON is YAML: strings are double-quoted, lists and maps in flow style.
fn yaml_scalar(v: &Value) -> String {
    v.to_string()
}

/// Whether a layer sets this map as one value rather than key by key.
fn is_whole(path: &[String]) -> bool {
    matches!(path, [a, b, _] if a == "mcp" && b == "servers")
}

fn leaf_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) if !m.is_empty() && !is_whole(prefix) => {
            for (k, inner) in m {
                prefix.push(k.clone());
                leaf_paths(inner, prefix, out);
                prefix.pop();
            }
        }
        _ if !prefix.is_empty() => out.push(prefix.clone()),
        _ => {}
    }
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn set(root: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = root;
    for k in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else { return };
        cur = m
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let Value::Object(m) = cur {
        m.insert(last.clone(), value);
    }
}

/// Deep merge: maps key by key (except [`is_whole`] ones), anything else replaced.
fn overlay(base: &mut Value, top: &Value, path: &mut Vec<String>) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) if !is_whole(path) => {
            for (k, tv) in t {
                match b.get_mut(k) {
                    Some(bv) if bv.is_object() && tv.is_object() => {
                        path.push(k.clone());
                        overlay(bv, tv, path);
                        path.pop();
                    }
                    _ => {
                        b.insert(k.clone(), tv.clone());
                    }
                }
            }
        }
        (b, t) => *b = t.clone(),
    }
}

/// Dotted key path → first line where it is set.
fn key_lines(text: &str) -> BTreeMap<String, u64> {
    let mut lines = BTreeMap::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') || !t.contains(':') {
            continue;
        }
        if let Some(path) = key_path_at(text, i + 1) {
            lines.entry(path).or_insert(i as u64 + 1);
        }
    }
    lines
}

fn single(path: &Path, message: String) -> ConfigError {
    ConfigError {
        problems: vec![ConfigProblem {
            file: path.display().to_string(),
            line: None,
            column: None,
            key: None,
            message,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn layer(text: &str, name: &str) -> Layer {
        layer_from_text(text, Path::new(name), &no_env).unwrap()
    }

    #[test]
    fn later_layers_override_only_what_they_set() {
        let base = layer(
            "llm:\n  provider: openai_compatible\n  base_url: http://a/v1\n  model: small\nhistory:\n  token_budget: 1000\n",
            "conf.yaml",
        );
        let top = layer("llm:\n  model: big\n", "conf.d/10-big.yaml");
        let c = merge(&[base.clone(), top.clone()]).unwrap();
        assert_eq!(c.llm.model.as_deref(), Some("big"));
        assert_eq!(c.llm.base_url, "http://a/v1");
        assert_eq!(c.history.token_budget, 1000);
        let shown = render_effective(&c, &[base.clone(), top.clone()], false);
        let set_only = render_effective(&c, &[base, top], true);
        assert_eq!(
            set_only,
            "history:\n  token_budget: 1000  # conf.yaml:6\nllm:\n  base_url: \"http://a/v1\"  # conf.yaml:3\n  model: \"big\"  # conf.d/10-big.yaml:2\n  provider: \"openai_compatible\"  # conf.yaml:2\n"
        );
        assert!(
            shown.contains("  model: \"big\"  # conf.d/10-big.yaml:2\n"),
            "{shown}"
        );
        assert!(
            shown.contains("  base_url: \"http://a/v1\"  # conf.yaml:3\n"),
            "{shown}"
        );
        assert!(
            shown.contains("  temperature: null  # default\n"),
            "{shown}"
        );
    }

    #[test]
    fn servers_merge_by_name_and_each_is_replaced_whole() {
        let base = layer(
            "mcp:\n  servers:\n    a:\n      command: a-server\n      args: [\"--one\", \"--two\"]\n      env:\n        X: \"1\"\n    c:\n      command: c-server\n",
            "conf.yaml",
        );
        let top = layer(
            "mcp:\n  servers:\n    a:\n      command: a2-server\n      args: [\"--three\"]\n    b:\n      command: b-server\n",
            "conf.d/mcp.yaml",
        );
        let c = merge(&[base.clone(), top.clone()]).unwrap();
        let a = &c.mcp.servers["a"];
        assert_eq!(a.command.as_deref(), Some("a2-server"));
        assert_eq!(a.args, vec!["--three".to_owned()]);
        assert!(a.env.is_empty(), "{a:?}");
        assert!(c.mcp.servers.contains_key("b"));
        assert_eq!(c.mcp.servers["c"].command.as_deref(), Some("c-server"));
        let shown = render_effective(&c, &[base, top], false);
        assert!(
            shown.contains("command: \"c-server\"  # conf.yaml:9"),
            "{shown}"
        );
        assert!(
            shown.contains("command: \"a2-server\"  # conf.d/mcp.yaml:4"),
            "{shown}"
        );
    }

    #[test]
    fn an_explicit_null_overrides() {
        let base = layer("llm:\n  max_tokens: 100\n", "conf.yaml");
        let top = layer("llm:\n  max_tokens: null\n", "conf.d/x.yaml");
        assert_eq!(merge(&[base, top]).unwrap().llm.max_tokens, None);
    }

    #[test]
    fn secrets_are_masked_but_references_shown() {
        let base = layer(
            "web:\n  token: hunter2hunter2hunter2\nmcp:\n  servers:\n    s:\n      command: x\n      env:\n        API_KEY: abc123\n        REF: \"secret:github\"\n",
            "conf.yaml",
        );
        let c = merge(std::slice::from_ref(&base)).unwrap();
        let shown = render_effective(&c, &[base], false);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("abc123"), "{shown}");
        assert!(shown.contains("REF: \"secret:github\""), "{shown}");
        assert!(
            shown.contains("token: \"********\"  # conf.yaml:2"),
            "{shown}"
        );
        let json = effective_json(&c);
        assert!(
            !json.contains("hunter2") && !json.contains("abc123"),
            "{json}"
        );
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["mcp"]["servers"]["s"]["env"]["REF"], "secret:github");
        assert_eq!(v["web"]["token"], "********");
    }

    #[test]
    fn the_rendering_is_yaml_that_reads_back_the_same() {
        let base = layer(
            "llm:\n  model: \"quote\\\" and # hash\"\nmcp:\n  servers:\n    odd-name:\n      command: \"x: y\"\n      args: [\"a b\", \"c\"]\n      env:\n        \"K.V\": \"secret:k\"\n",
            "conf.yaml",
        );
        let c = merge(std::slice::from_ref(&base)).unwrap();
        let shown = render_effective(&c, &[base], false);
        let back = crate::config::load::parse_with_env(&shown, "effective", &no_env).unwrap();
        assert_eq!(back, c, "{shown}");
    }

    #[test]
    fn each_file_is_checked_alone_with_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("conf.yaml");
        std::fs::write(&base, "llm:\n  model: a\n").unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(dir.path().join("conf.d/20-b.yaml"), "llm:\n  modle: b\n").unwrap();
        std::fs::write(
            dir.path().join("conf.d/10-a.yml"),
            "history:\n  token_budget: x\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("conf.d/notes.txt"), "not yaml").unwrap();
        std::fs::write(dir.path().join("conf.work.yaml"), "llm:\n  model: w\n").unwrap();
        let files = layer_files(Some(&base), dir.path(), Some("work")).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "conf.yaml",
                "conf.d/10-a.yml",
                "conf.d/20-b.yaml",
                "conf.work.yaml"
            ]
        );
        let err = load_layers(&files, &no_env).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.problems[0].file.ends_with("conf.d/10-a.yml"), "{err}");
        assert_eq!(err.problems[0].key.as_deref(), Some("history.token_budget"));
        assert!(err.problems[1].file.ends_with("conf.d/20-b.yaml"), "{err}");
        assert_eq!(err.problems[1].line, Some(2));

        let missing = layer_files(Some(&base), dir.path(), Some("nope")).unwrap_err();
        assert!(
            missing.to_string().contains("profile `nope` has no file"),
            "{missing}"
        );
        let bad = layer_files(Some(&base), dir.path(), Some("../x")).unwrap_err();
        assert!(bad.to_string().contains("letters, digits"), "{bad}");
    }

    #[test]
    fn the_default_config_survives_the_round_trip() {
        let v = serde_json::to_value(Config::default()).unwrap();
        let back: Config = serde_json::from_value(v).unwrap();
        assert_eq!(back, Config::default());
    }
}
