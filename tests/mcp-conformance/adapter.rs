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
    eprintln!("scenario {scenario:?} against {url}");
    let session = probe::connect_http(&url, true)
        .await
        .context("connecting")?;
    let tools = session.tools().await.context("listing tools")?;
    for tool in &tools {
        let schema = Value::Object((*tool.input_schema).clone());
        let args = arguments_for(&schema);
        match session.call(&tool.name, args).await {
            Ok(result) => eprintln!("{}: {result}", tool.name),
            // A failing tool is the server's answer, not the client's failure.
            Err(e) => eprintln!("{}: {e}", tool.name),
        }
    }
    session.close().await.context("closing")?;
    Ok(())
}

/// Plausible arguments for an input schema: each property's default, else a small value
/// of its type.
fn arguments_for(schema: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return out;
    };
    for (name, prop) in props {
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
