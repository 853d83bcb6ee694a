//! The one-shot subcommands, one module per family: each connects, asks, prints, and
//! exits. The helpers here are what every family shares.

pub mod character_import;
pub mod characters;
pub mod config;
pub mod daemon;
pub mod history;
pub mod logs;
pub mod mcp;
pub mod models;
pub mod ollama_pull;
pub mod say;
pub mod service_unit;
pub mod socket_units;
pub mod status;
pub mod system_unit;
pub mod turn_stream;
pub mod web;

use anyhow::{Context, Result, anyhow};
use vtuber_shared::client::{Client, Connection, Hello, REQUEST_TIMEOUT, reply_kind};
use vtuber_shared::{Reply, Request};

use crate::launcher::{self, Target};

/// Sends `request`, turning a daemon error into an error that carries its hint.
async fn ask(client: &Client, request: Request) -> Result<Reply> {
    client
        .request_timeout(request, REQUEST_TIMEOUT)
        .await
        .map_err(|e| anyhow!("{e}"))
}

fn unexpected(reply: &Reply) -> anyhow::Error {
    anyhow!(
        "vtuberd sent an unexpected reply ({}); are vtuber and vtuberd the same version?",
        reply_kind(reply)
    )
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    println!("{text}");
    Ok(())
}

/// A query connection: no events, no autostart.
async fn query(target: &Target, code: u8) -> Result<Connection> {
    launcher::connect_existing(target, Hello::new("cli", false), code).await
}
