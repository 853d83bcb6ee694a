//! One tool call from start to end: lookup, arguments, policy and approval, the request
//! with its timeout, cancellation and progress, then the `ToolCallEnded` event, the
//! audit row and the text the LLM gets back.

use std::time::Instant;

use rmcp::ServiceError;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotification,
    CancelledNotificationParam, ClientRequest, ContentBlock, RequestId, ServerResult,
};
use rmcp::service::PeerRequestOptions;
use rmcp::{Peer, RoleClient};
use serde_json::Value;
use vtuber_shared::{ApprovalResolution, Event, ToolOutcome, ToolPolicy};

use super::approval::Approvals;
use super::audit::{self, AuditRecord, Redactor};
use super::server::{Servers, call_timeout};
use super::{ToolCallRequest, ToolCallResult};
use crate::store::{Store, now_ms};

/// Longest tool result handed to the LLM.
const MAX_RESULT_BYTES: usize = 16 * 1024;

/// What a call needs from the manager.
pub(super) struct Caller<'a> {
    pub servers: &'a Servers,
    pub store: &'a Store,
    pub redactor: &'a Redactor,
    pub approvals: &'a Approvals,
}

impl Caller<'_> {
    pub async fn run(&self, req: ToolCallRequest) -> ToolCallResult {
        let started = Instant::now();
        let found = self
            .servers
            .registry
            .snapshot()
            .into_iter()
            .find(|t| t.exposed == req.exposed_name);
        let Some(found) = found else {
            let names: Vec<String> = self
                .servers
                .registry
                .snapshot()
                .into_iter()
                .map(|t| t.exposed)
                .collect();
            let content = format!(
                "There is no tool named `{}`. Available tools: {}.",
                req.exposed_name,
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            );
            let arguments = match parse_arguments(&req.arguments) {
                Ok(a) => self.redactor.redact(&Value::Object(a)).to_string(),
                Err(_) => self.redactor.redact_text(&req.arguments),
            };
            return self
                .finish(
                    &req,
                    "",
                    &req.exposed_name,
                    arguments,
                    "auto",
                    ToolOutcome::Error,
                    content,
                    started,
                )
                .await;
        };
        let server = found.server.clone();
        let tool = found.tool.clone();
        let arguments = match parse_arguments(&req.arguments) {
            Ok(a) => a,
            Err(msg) => {
                let redacted_raw = self.redactor.redact_text(&req.arguments);
                let content = format!(
                    "The arguments for `{}` were not a JSON object ({msg}); call it again with valid JSON arguments.",
                    req.exposed_name
                );
                return self
                    .finish(
                        &req,
                        &server,
                        &tool.name,
                        redacted_raw,
                        "auto",
                        ToolOutcome::Error,
                        content,
                        started,
                    )
                    .await;
            }
        };
        let redacted = self.redactor.redact(&Value::Object(arguments.clone()));
        let redacted_text = redacted.to_string();

        let session_ok = self.approvals.allowed_for_session(&server, &tool.name);
        let decision = match (tool.policy, session_ok) {
            (ToolPolicy::Deny, _) => {
                let content = format!(
                    "The tool `{}` is not allowed by the user's policy and did not run; do not try it again.",
                    req.exposed_name
                );
                return self
                    .finish(
                        &req,
                        &server,
                        &tool.name,
                        redacted_text,
                        "denied",
                        ToolOutcome::Denied,
                        content,
                        started,
                    )
                    .await;
            }
            (ToolPolicy::Allow, _) | (ToolPolicy::Ask, true) => "auto",
            (ToolPolicy::Ask, false) => {
                let resolution = self
                    .approvals
                    .ask(&req, &server, &tool, redacted.clone())
                    .await;
                let (decision, refusal) = match resolution {
                    ApprovalResolution::Approved => ("approved", None),
                    ApprovalResolution::ApprovedForSession => {
                        self.approvals.allow_for_session(&server, &tool.name);
                        ("approved_for_session", None)
                    }
                    ApprovalResolution::Denied => (
                        "denied",
                        Some((
                            ToolOutcome::Denied,
                            format!(
                                "The user declined the call to `{}`; it did not run.",
                                req.exposed_name
                            ),
                        )),
                    ),
                    ApprovalResolution::TimedOut => (
                        "timed_out",
                        Some((
                            ToolOutcome::Denied,
                            format!(
                                "Nobody approved the call to `{}` within {} s, so it did not run.",
                                req.exposed_name,
                                self.servers.cfg().approval_timeout_secs
                            ),
                        )),
                    ),
                    ApprovalResolution::Cancelled => (
                        "cancelled",
                        Some((
                            ToolOutcome::Cancelled,
                            format!(
                                "The call to `{}` was cancelled before it ran.",
                                req.exposed_name
                            ),
                        )),
                    ),
                };
                if let Some((outcome, content)) = refusal {
                    return self
                        .finish(
                            &req,
                            &server,
                            &tool.name,
                            redacted_text,
                            decision,
                            outcome,
                            content,
                            started,
                        )
                        .await;
                }
                decision
            }
        };

        let peer = self.servers.peer(&server);
        let Some(peer) = peer else {
            let content =
                format!("The tool server `{server}` is not running right now; try again later.");
            return self
                .finish(
                    &req,
                    &server,
                    &tool.name,
                    redacted_text,
                    decision,
                    ToolOutcome::Error,
                    content,
                    started,
                )
                .await;
        };
        self.servers.bus.emit(Event::ToolCallStarted {
            turn_id: req.turn_id,
            call_id: req.call_id.clone(),
            server: server.clone(),
            tool: tool.name.clone(),
            arguments: redacted,
        });
        let params = CallToolRequestParams::new(tool.name.clone()).with_arguments(arguments);
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let timeout = call_timeout(&self.servers.cfg(), &self.servers.slot_cfg(&server));
        let result = match peer
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await
        {
            Err(e) => Some(Err(e)),
            Ok(mut handle) => {
                // rmcp puts its own progress token on every request: route that one.
                let token = self
                    .servers
                    .progress
                    .route(&handle.progress_token, req.call_id.clone());
                let mut guard = CancelOnDrop {
                    peer: Some(peer.clone()),
                    id: handle.id.clone(),
                };
                let stopped: Result<_, String> = tokio::select! {
                    r = tokio::time::timeout(timeout, &mut handle.rx) => match r {
                        Ok(r) => {
                            guard.disarm();
                            Ok(Some(r.unwrap_or(Err(ServiceError::TransportClosed))))
                        }
                        Err(_) => Ok(None),
                    },
                    _ = req.cancel.cancelled() => {
                        Err(format!("The call to `{}` was cancelled.", req.exposed_name))
                    }
                    _ = self.servers.shutdown.cancelled() => {
                        Err("The call was cancelled because the daemon is shutting down.".to_owned())
                    }
                };
                self.servers.progress.unroute(&token);
                // Sends `notifications/cancelled` unless the server answered.
                drop(guard);
                match stopped {
                    Ok(r) => r.map(|r| r.and_then(into_call_result)),
                    Err(content) => {
                        return self
                            .finish(
                                &req,
                                &server,
                                &tool.name,
                                redacted_text,
                                decision,
                                ToolOutcome::Cancelled,
                                content,
                                started,
                            )
                            .await;
                    }
                }
            }
        };
        let (outcome, content) = match result {
            None => (
                ToolOutcome::TimedOut,
                format!(
                    "The tool `{}` did not finish within {} s and was cancelled.",
                    req.exposed_name,
                    timeout.as_secs()
                ),
            ),
            Some(Ok(r)) => {
                let text = result_text(&r.content, r.structured_content.as_ref());
                if r.is_error == Some(true) {
                    (
                        ToolOutcome::Error,
                        format!("The tool reported an error: {text}"),
                    )
                } else {
                    (ToolOutcome::Ok, text)
                }
            }
            Some(Err(e)) => {
                let crashed = matches!(
                    e,
                    ServiceError::TransportClosed | ServiceError::TransportSend(_)
                ) || peer.is_transport_closed();
                if crashed {
                    (
                        ToolOutcome::Error,
                        format!(
                            "The tool server `{server}` crashed during the call; it is being restarted."
                        ),
                    )
                } else {
                    (ToolOutcome::Error, format!("The tool call failed: {e}"))
                }
            }
        };
        self.finish(
            &req,
            &server,
            &tool.name,
            redacted_text,
            decision,
            outcome,
            content,
            started,
        )
        .await
    }

    /// Emits `ToolCallEnded`, writes the audit row and builds the result.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        req: &ToolCallRequest,
        server: &str,
        tool: &str,
        arguments: String,
        decision: &'static str,
        outcome: ToolOutcome,
        content: String,
        started: Instant,
    ) -> ToolCallResult {
        let content = truncate(&content, MAX_RESULT_BYTES);
        let duration = started.elapsed();
        let summary = summarise(&self.redactor.redact_text(&content), 200);
        self.servers.bus.emit(Event::ToolCallEnded {
            turn_id: req.turn_id,
            call_id: req.call_id.clone(),
            outcome,
            duration_ms: duration.as_millis() as u64,
            summary: summary.clone(),
        });
        let record = AuditRecord {
            time_ms: now_ms(),
            character: req.character.clone(),
            server: server.to_owned(),
            tool: tool.to_owned(),
            arguments,
            decision,
            duration_ms: duration.as_millis() as u64,
            outcome,
            detail: summary,
        };
        if let Err(e) = audit::insert(self.store, record).await {
            tracing::error!(target: "mcp", error = %e, "tool call not written to the audit log");
        }
        ToolCallResult {
            outcome,
            content,
            duration,
        }
    }
}

/// Tells the server to stop a request this side no longer waits for (timeout, barge-in,
/// or the caller dropping the call future).
struct CancelOnDrop {
    peer: Option<Peer<RoleClient>>,
    id: RequestId,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.peer = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let note = CancelledNotification::new(CancelledNotificationParam::new(
            Some(self.id.clone()),
            Some("cancelled by vtuberd".into()),
        ));
        rt.spawn(async move {
            if let Err(e) = peer.send_notification(note.into()).await {
                tracing::debug!(target: "mcp", error = %e, "notifications/cancelled not sent");
            }
        });
    }
}

fn into_call_result(r: ServerResult) -> Result<CallToolResult, ServiceError> {
    match r {
        ServerResult::CallToolResult(r) => Ok(r),
        _ => Err(ServiceError::UnexpectedResponse),
    }
}

fn parse_arguments(raw: &str) -> Result<serde_json::Map<String, Value>, String> {
    if raw.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Null) => Ok(serde_json::Map::new()),
        Ok(other) => Err(format!("got {}", type_name(&other))),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Text parts joined; other parts summarised in brackets.
fn result_text(content: &[ContentBlock], structured: Option<&Value>) -> String {
    let mut parts = Vec::new();
    for block in content {
        match block {
            ContentBlock::Text(t) => parts.push(t.text.clone()),
            other => {
                let v = serde_json::to_value(other).unwrap_or(Value::Null);
                let kind = v.get("type").and_then(Value::as_str).unwrap_or("content");
                let mime = v
                    .get("mimeType")
                    .or_else(|| v.pointer("/resource/mimeType"))
                    .and_then(Value::as_str);
                let uri = v
                    .get("uri")
                    .or_else(|| v.pointer("/resource/uri"))
                    .and_then(Value::as_str);
                if let Some(text) = v.pointer("/resource/text").and_then(Value::as_str) {
                    parts.push(text.to_owned());
                    continue;
                }
                let mut s = format!("[{kind}");
                if let Some(m) = mime {
                    s.push_str(&format!(" {m}"));
                }
                if let Some(u) = uri {
                    s.push_str(&format!(" {u}"));
                }
                s.push(']');
                parts.push(s);
            }
        }
    }
    if parts.is_empty()
        && let Some(v) = structured
    {
        return v.to_string();
    }
    parts.join("\n")
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[truncated: {} more bytes]", &s[..end], s.len() - end)
}

/// One line, at most `max` characters.
fn summarise(s: &str, max: usize) -> String {
    let line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut out: String = line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_and_results() {
        assert!(parse_arguments("").unwrap().is_empty());
        assert!(parse_arguments("null").unwrap().is_empty());
        assert_eq!(parse_arguments(r#"{"a":1}"#).unwrap()["a"], 1);
        assert!(parse_arguments("[1]").unwrap_err().contains("array"));
        assert!(
            parse_arguments("{oops")
                .unwrap_err()
                .contains("invalid JSON")
        );
        let blocks = vec![
            ContentBlock::text("one"),
            ContentBlock::image("AAAA", "image/png"),
        ];
        assert_eq!(result_text(&blocks, None), "one\n[image image/png]");
        assert_eq!(
            result_text(&[], Some(&serde_json::json!({"x": 1}))),
            r#"{"x":1}"#
        );
        let long = "é".repeat(20_000);
        let t = truncate(&long, MAX_RESULT_BYTES);
        assert!(t.len() < MAX_RESULT_BYTES + 64 && t.contains("[truncated"));
        assert_eq!(summarise("a\n b  c", 200), "a b c");
        assert_eq!(summarise(&"x".repeat(300), 200).chars().count(), 200);
    }
}

#[cfg(test)]
#[path = "call_fuzz_props.rs"]
mod fuzz_props;
