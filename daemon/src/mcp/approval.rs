//! Asking a person before a tool runs: the pending requests by id, their answers, the
//! tools allowed for the rest of the session, and the wait with its timeout.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use vtuber_shared::{ApprovalDecision, ApprovalResolution, Event};

use super::registry::ToolEntry;
use super::{ToolCallRequest, lock};
use crate::events::EventBus;

pub(super) struct Approvals {
    bus: EventBus,
    /// `mcp.approval_timeout_secs`.
    timeout_secs: u64,
    shutdown: CancellationToken,
    pending: Mutex<HashMap<u64, oneshot::Sender<ApprovalDecision>>>,
    session_allowed: Mutex<HashSet<(String, String)>>,
    next_request: AtomicU64,
}

impl Approvals {
    pub fn new(bus: EventBus, timeout_secs: u64, shutdown: CancellationToken) -> Self {
        Self {
            bus,
            timeout_secs,
            shutdown,
            pending: Mutex::new(HashMap::new()),
            session_allowed: Mutex::new(HashSet::new()),
            next_request: AtomicU64::new(0),
        }
    }

    /// Whether a person allowed `tool` of `server` for the rest of the session.
    pub fn allowed_for_session(&self, server: &str, tool: &str) -> bool {
        lock(&self.session_allowed).contains(&(server.to_owned(), tool.to_owned()))
    }

    pub fn allow_for_session(&self, server: &str, tool: &str) {
        lock(&self.session_allowed).insert((server.to_owned(), tool.to_owned()));
    }

    /// Settles an approval request. `false` when the id is unknown or already settled.
    pub fn answer(&self, request_id: u64, decision: ApprovalDecision) -> bool {
        let tx = lock(&self.pending).remove(&request_id);
        match tx {
            Some(tx) => tx.send(decision).is_ok(),
            None => false,
        }
    }

    /// Asks the clients whether `tool` may run with `arguments` (already redacted) and
    /// waits for the answer, the timeout, the call's cancellation or shutdown.
    pub async fn ask(
        &self,
        req: &ToolCallRequest,
        server: &str,
        tool: &ToolEntry,
        arguments: Value,
    ) -> ApprovalResolution {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(request_id, tx);
        self.bus.emit(Event::ApprovalRequested {
            request_id,
            turn_id: req.turn_id,
            call_id: req.call_id.clone(),
            server: server.to_owned(),
            tool: tool.name.clone(),
            description: tool.description.clone(),
            arguments,
            timeout_secs: self.timeout_secs,
        });
        let timeout = Duration::from_secs(self.timeout_secs);
        let resolution = tokio::select! {
            answer = rx => match answer {
                Ok(ApprovalDecision::AllowOnce) => ApprovalResolution::Approved,
                Ok(ApprovalDecision::AllowForSession) => ApprovalResolution::ApprovedForSession,
                Ok(ApprovalDecision::Deny) => ApprovalResolution::Denied,
                Err(_) => ApprovalResolution::Cancelled,
            },
            _ = tokio::time::sleep(timeout) => ApprovalResolution::TimedOut,
            _ = req.cancel.cancelled() => ApprovalResolution::Cancelled,
            _ = self.shutdown.cancelled() => ApprovalResolution::Cancelled,
        };
        lock(&self.pending).remove(&request_id);
        self.bus.emit(Event::ApprovalResolved {
            request_id,
            resolution,
        });
        resolution
    }
}
