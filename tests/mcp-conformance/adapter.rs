//! `vtuber-mcp-conformance`: the client the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`) drives, run by `scripts/mcp-conformance.sh`.
//! The suite starts a test server for one scenario and runs this program with the
//! server's URL as the last argument, the scenario's name in `MCP_CONFORMANCE_SCENARIO`
//! and its data (if any) as JSON in `MCP_CONFORMANCE_CONTEXT`. Everything MCP goes
//! through the daemon's own client (`vtuberd::mcp::probe`), so the suite checks the code
//! the daemon runs. What a scenario wants from a client is what a character does with a
//! server: connect, list the tools, call them, and close.

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use vtuberd::mcp::oauth::{ClientIdentity, Consent};
use vtuberd::mcp::probe;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("vtuber-mcp-conformance: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let Some(url) = std::env::args().nth(1) else {
        bail!("usage: vtuber-mcp-conformance SERVER_URL (run by the MCP conformance suite)");
    };
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    let context: Value = std::env::var("MCP_CONFORMANCE_CONTEXT")
        .ok()
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or(Value::Null);
    eprintln!("scenario {scenario:?} against {url}");
    let text = |k: &str| context.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut options = probe::ProbeOptions {
        accept_elicitation: true,
        ..Default::default()
    };
    if scenario.starts_with("auth/client-credentials") {
        let (Some(id), Some(secret)) = (text("client_id"), text("client_secret")) else {
            bail!("{scenario}: the context has no client_id and client_secret");
        };
        options.client_credentials = Some((id, secret));
    } else {
        options.oauth = Some((
            ClientIdentity {
                // The suite's authorization server approves at once; nothing listens here.
                redirect_uri: "http://localhost:3000/callback".into(),
                client_name: Some("vtuber-mcp-conformance".into()),
                client_metadata_url: Some(CLIENT_METADATA_URL.into()),
                client_id: text("client_id"),
                client_secret: text("client_secret"),
            },
            Consent::Headless,
        ));
    }
    let mut session = probe::connect_http(&url, options)
        .await
        .context("connecting")?;
    let tools = session.tools().await.context("listing tools")?;
    // The calls the scenario asks for (`toolCalls` in its context), else every tool
    // with arguments made up from its schema.
    let calls: Vec<(String, Map<String, Value>)> = match context.get("toolCalls") {
        Some(Value::Array(calls)) => calls
            .iter()
            .filter_map(|c| {
                let name = c.get("name")?.as_str()?.to_owned();
                let args = c.get("arguments").and_then(Value::as_object).cloned();
                Some((name, args.unwrap_or_default()))
            })
            .collect(),
        _ => tools
            .iter()
            .map(|tool| {
                let schema = Value::Object((*tool.input_schema).clone());
                let mut args = arguments_for(&schema);
                // This scenario checks that a tool's schema reaches the client intact:
                // its echo tool asks for another tool's (the one declaring `$schema`).
                if scenario == "json-schema-2020-12-preservation" && args.contains_key("schema") {
                    let focal = tools
                        .iter()
                        .find(|t| t.name != tool.name && t.input_schema.contains_key("$schema"));
                    if let Some(focal) = focal {
                        args.insert(
                            "schema".into(),
                            Value::Object((*focal.input_schema).clone()),
                        );
                    }
                }
                (tool.name.to_string(), args)
            })
            .collect(),
    };
    for (name, args) in calls {
        match session.call(&name, args).await {
            Ok(result) => eprintln!("{name}: {result}"),
            // A failing tool is the server's answer, not the client's failure.
            Err(e) => eprintln!("{name}: {e}"),
        }
    }
    session.close().await.context("closing")?;
    Ok(())
}

/// The client ID metadata document the suite's authorization server accepts.
const CLIENT_METADATA_URL: &str = "https://conformance-test.local/client-metadata.json";

/// Plausible arguments for an input schema: each (required) property's default, else a
/// small value of its type.
fn arguments_for(schema: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return out;
    };
    // Only the required ones when the schema says which: an optional argument left out
    // is what a caller usually does.
    let required: Option<Vec<&str>> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect());
    for (name, prop) in props {
        if required
            .as_ref()
            .is_some_and(|r| !r.contains(&name.as_str()))
        {
            continue;
        }
        let value = if let Some(d) = prop.get("default") {
            d.clone()
        } else if let Some(first) = prop.get("enum").and_then(|e| e.get(0)) {
            first.clone()
        } else {
            match prop.get("type").and_then(Value::as_str) {
                Some("number") | Some("integer") => json!(1),
                Some("boolean") => json!(true),
                Some("array") => json!([]),
                Some("object") => json!({}),
                _ => json!("test"),
            }
        };
        out.insert(name.clone(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::arguments_for;
    use serde_json::json;

    /// Required properties only, each its default, its first enum value or a value of its
    /// type; without `required`, every property.
    #[test]
    fn arguments_follow_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "a": {"type": "number"},
                "mode": {"type": "string", "enum": ["fast", "slow"]},
                "name": {"type": "string", "default": "x"},
                "verbose": {"type": "boolean"}
            },
            "required": ["a", "mode", "name"]
        });
        let args = arguments_for(&schema);
        assert_eq!(
            serde_json::Value::Object(args),
            json!({"a": 1, "mode": "fast", "name": "x"})
        );
        let all = arguments_for(&json!({"properties": {"on": {"type": "boolean"}}}));
        assert_eq!(serde_json::Value::Object(all), json!({"on": true}));
    }
}
