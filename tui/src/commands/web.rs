//! `vtuber web`: the browser page's address.

use std::process::ExitCode;

use anyhow::{Result, bail};
use vtuber_shared::{Reply, Request, Status};

use super::{ask, print_json, query, unexpected};
use crate::cli::WebCommand;
use crate::launcher::Target;

pub async fn web(target: &Target, cmd: WebCommand) -> Result<ExitCode> {
    match cmd {
        WebCommand::Url { json } => web_url(target, json).await,
    }
}

/// The page's address as the daemon reports it (it alone knows the token).
async fn web_url(target: &Target, json: bool) -> Result<ExitCode> {
    let conn = query(target, 1).await?;
    let status = match ask(&conn.client, Request::Status).await? {
        Reply::Status(status) => status,
        other => return Err(unexpected(&other)),
    };
    let url = web_url_of(&status)?;
    if json {
        print_json(&serde_json::json!({
            "web_url": url,
            "web_auth": status.web_auth,
        }))?;
    } else {
        println!("{url}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The address from a status, or why there is none and what to do.
pub fn web_url_of(status: &Status) -> Result<&str> {
    match (&status.web_url, &status.web_error) {
        (Some(url), _) => Ok(url),
        (None, Some(err)) => bail!("the web page is unavailable: {err}"),
        (None, None) => bail!(
            "vtuberd serves no web page: web.enabled is false in its config (set web.enabled: true and run `vtuber daemon restart`), or it is still starting (try again)"
        ),
    }
}
