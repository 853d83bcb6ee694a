//! Keeping each server running: a supervisor task per server connects, re-lists tools on
//! `tools/list_changed`, and restarts a crashed server with capped exponential backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vtuber_shared::McpServerState;

use super::connect::connect;
use super::lock;
use super::registry::list_tools;
use super::server::{Conn, Servers, Slot};

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lived this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

pub(super) fn spawn_supervisor(servers: &Arc<Servers>, slot: &Arc<Slot>) {
    let stop = servers.shutdown.child_token();
    let handle = tokio::spawn(supervise(servers.clone(), slot.clone(), stop.clone()));
    *lock(&slot.task) = Some((stop, handle));
}

pub(super) async fn stop_supervisor(slot: &Slot) {
    let task = lock(&slot.task).take();
    if let Some((stop, handle)) = task {
        stop.cancel();
        let _ = handle.await;
    }
}

fn backoff(attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    BACKOFF_START.saturating_mul(factor).min(BACKOFF_MAX)
}

async fn supervise(servers: Arc<Servers>, slot: Arc<Slot>, stop: CancellationToken) {
    let mut attempt = 0u32;
    let mut ever_ready = false;
    servers.set_state(&slot, McpServerState::Starting);
    loop {
        let connected_at = Instant::now();
        let (relist_tx, mut relist_rx) = mpsc::unbounded_channel();
        let result = tokio::select! {
            r = connect(&servers, &slot, relist_tx) => r,
            _ = stop.cancelled() => return,
        };
        let reason = match result {
            Err(reason) if !ever_ready => {
                tracing::warn!(target: "mcp", server = %slot.name, %reason, "MCP server failed to start");
                servers.set_state(&slot, McpServerState::Failed { reason });
                return;
            }
            Err(reason) => reason,
            Ok((running, tools)) => {
                ever_ready = true;
                let peer = running.peer().clone();
                tracing::info!(target: "mcp", server = %slot.name, tools = tools.len(), "MCP server ready");
                servers.set_conn(
                    &slot,
                    Some(Conn {
                        peer: peer.clone(),
                        tools,
                    }),
                );
                servers.set_state(&slot, McpServerState::Ready);
                let closer = running.cancellation_token();
                let mut waiting = std::pin::pin!(running.waiting());
                let reason = loop {
                    tokio::select! {
                        _ = stop.cancelled() => {
                            servers.set_conn(&slot, None);
                            closer.cancel();
                            let _ = tokio::time::timeout(Duration::from_secs(8), waiting).await;
                            return;
                        }
                        r = &mut waiting => break match r {
                            Ok(q) => format!("connection closed ({q:?})"),
                            Err(e) => format!("connection task failed: {e}"),
                        },
                        Some(()) = relist_rx.recv() => {
                            match list_tools(&peer, &slot.cfg.policy).await {
                                Ok(tools) => {
                                    tracing::info!(target: "mcp", server = %slot.name, tools = tools.len(), "tool list changed");
                                    servers.set_conn(&slot, Some(Conn { peer: peer.clone(), tools }));
                                    servers.emit_info(&slot);
                                }
                                Err(e) => tracing::warn!(target: "mcp", server = %slot.name, error = %e, "re-listing tools failed"),
                            }
                        }
                    }
                };
                servers.set_conn(&slot, None);
                if connected_at.elapsed() >= HEALTHY_AFTER {
                    attempt = 0;
                }
                reason
            }
        };
        attempt += 1;
        let delay = backoff(attempt);
        tracing::warn!(target: "mcp", server = %slot.name, %reason, attempt, delay_ms = delay.as_millis() as u64, "MCP server stopped; restarting");
        servers.set_state(
            &slot,
            McpServerState::Restarting {
                attempt,
                in_ms: delay.as_millis() as u64,
                reason,
            },
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return,
        }
        servers.set_state(&slot, McpServerState::Starting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(1000), BACKOFF_MAX);
    }
}
