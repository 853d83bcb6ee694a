//! A one-off session with one streamable-HTTP MCP server through the daemon's own client
//! side (the same [`Handler`], transport and handshake a configured server gets), without
//! a running daemon. The conformance adapter (`vtuber-mcp-conformance`) drives it, so the
//! official suite tests the code the daemon really runs.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, Tool};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::client::{Elicit, Handler};
use super::connect::{Running, http_transport, http_transport_with_auth};
use super::oauth::{ClientIdentity, Consent, OAuthError, authorize, authorize_client_credentials};
use super::progress::ProgressRoutes;

/// What went wrong talking to the server; the text says which step failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("MCP handshake with {url} failed: {reason}")]
    Handshake { url: String, reason: String },
    #[error("{what} failed: {reason}")]
    Request { what: String, reason: String },
    #[error(transparent)]
    OAuth(#[from] OAuthError),
}

/// How to connect.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    /// Answer form elicitations with their defaults (else the capability is not
    /// announced).
    pub accept_elicitation: bool,
    /// Authorize when the server demands it (401, or 403 `insufficient_scope`).
    pub oauth: Option<(ClientIdentity, Consent)>,
    /// Authorize up front with client credentials (`client_id`, `client_secret`).
    pub client_credentials: Option<(String, String)>,
}

/// One connected session.
pub struct Probe {
    url: String,
    options: ProbeOptions,
    running: Running,
}

/// How many times one request re-authorizes for a server that keeps refusing it: a
/// server that never accepts a token must not loop the client.
const MAX_REAUTHORIZE: usize = 2;

/// Connects to `url` and handshakes, authorizing when the server demands it.
pub async fn connect_http(url: &str, options: ProbeOptions) -> Result<Probe, ProbeError> {
    let mut auth = match &options.client_credentials {
        Some((id, secret)) => Some(authorize_client_credentials(url, id, secret).await?),
        None => None,
    };
    let mut attempts = 0;
    loop {
        let handler = handler(&options);
        let served = match auth.take() {
            Some(manager) => {
                let transport = http_transport_with_auth(url, HashMap::new(), manager);
                handler.serve(transport).await
            }
            None => handler.serve(http_transport(url, HashMap::new())).await,
        };
        match served {
            Ok(running) => {
                return Ok(Probe {
                    url: url.to_owned(),
                    options,
                    running,
                });
            }
            Err(e) => {
                let challenge = e.auth_challenge().map(str::to_owned);
                match (challenge, &options.oauth) {
                    (Some(challenge), Some((who, consent))) if attempts < MAX_REAUTHORIZE => {
                        attempts += 1;
                        auth = Some(authorize(url, Some(&challenge), who, *consent).await?);
                    }
                    _ => {
                        return Err(ProbeError::Handshake {
                            url: url.to_owned(),
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
    }
}

fn handler(options: &ProbeOptions) -> Handler {
    let (relist, _) = mpsc::unbounded_channel();
    Handler {
        server: "probe".into(),
        roots: Vec::new(),
        relist,
        progress: Arc::new(ProgressRoutes::new(crate::events::EventBus::new(16))),
        elicit: if options.accept_elicitation {
            Elicit::AcceptDefaults
        } else {
            Elicit::Unsupported
        },
    }
}

impl Probe {
    /// Every tool the server lists (all pages).
    pub async fn tools(&mut self) -> Result<Vec<Tool>, ProbeError> {
        let mut attempts = 0;
        loop {
            match self.running.peer().list_all_tools().await {
                Ok(tools) => return Ok(tools),
                Err(e) => self.reauthorize_or(e, "tools/list", &mut attempts).await?,
            }
        }
    }

    /// Calls `name` with `arguments`; the result as JSON. A 403 for more scope
    /// authorizes again with the scope the server names (step-up) and retries.
    pub async fn call(
        &mut self,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<Value, ProbeError> {
        let mut attempts = 0;
        loop {
            let params =
                CallToolRequestParams::new(name.to_owned()).with_arguments(arguments.clone());
            match self.running.peer().call_tool(params).await {
                Ok(result) => return Ok(serde_json::to_value(result).unwrap_or_default()),
                Err(e) => {
                    self.reauthorize_or(e, &format!("tools/call {name}"), &mut attempts)
                        .await?
                }
            }
        }
    }

    /// On an authorization challenge (and OAuth configured, under the attempt limit):
    /// authorizes again from it and reconnects. Otherwise `e` as the error of `what`.
    async fn reauthorize_or(
        &mut self,
        e: rmcp::ServiceError,
        what: &str,
        attempts: &mut usize,
    ) -> Result<(), ProbeError> {
        let fail = |e: &rmcp::ServiceError| ProbeError::Request {
            what: what.to_owned(),
            reason: e.to_string(),
        };
        let Some(challenge) = e.auth_challenge().map(str::to_owned) else {
            return Err(fail(&e));
        };
        let Some((who, consent)) = self.options.oauth.clone() else {
            return Err(fail(&e));
        };
        if *attempts >= MAX_REAUTHORIZE {
            return Err(fail(&e));
        }
        *attempts += 1;
        let manager = authorize(&self.url, Some(&challenge), &who, consent).await?;
        let transport = http_transport_with_auth(&self.url, HashMap::new(), manager);
        let running =
            handler(&self.options)
                .serve(transport)
                .await
                .map_err(|e| ProbeError::Handshake {
                    url: self.url.clone(),
                    reason: e.to_string(),
                })?;
        let old = std::mem::replace(&mut self.running, running);
        let _ = old.cancel().await;
        Ok(())
    }

    /// Ends the session (for HTTP: the transport's `DELETE`).
    pub async fn close(self) -> Result<(), ProbeError> {
        self.running
            .cancel()
            .await
            .map(|_| ())
            .map_err(|e| ProbeError::Request {
                what: "closing the session".into(),
                reason: e.to_string(),
            })
    }
}
