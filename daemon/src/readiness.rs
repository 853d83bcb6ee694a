//! What the daemon tells the service manager while it runs: `READY=1` once clients can be
//! served and the LLM has loaded (or failed to), `STATUS=` kept current, and the watchdog
//! pings while the conversation still answers. The protocol itself is in
//! `service_manager`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vtuber_shared::{Event, ModelLoad};

use crate::service_manager::{Notifier, status_line};
use crate::services::Services;

/// Tells the service manager the daemon is ready once the LLM has loaded or failed to
/// (listeners already accept when this starts), then keeps `STATUS=` current until
/// `stop`. Runs the watchdog when one is asked for.
pub async fn report(notifier: Arc<Notifier>, services: Arc<Services>, stop: CancellationToken) {
    if !notifier.active() {
        return;
    }
    if let Some(every) = notifier.watchdog_every() {
        tokio::spawn(watchdog(
            notifier.clone(),
            services.clone(),
            every,
            stop.clone(),
        ));
    }
    let (mut events, _) = services.bus.subscribe();
    // Ready when the model is no longer loading (ready, failed or remote).
    while services.conversation.view().model_load == ModelLoad::Loading {
        tokio::select! {
            _ = stop.cancelled() => return,
            e = events.recv() => if let Err(tokio::sync::broadcast::error::RecvError::Closed) = e {
                return;
            },
        }
    }
    let mut last = status_line(&services.status());
    notifier.send(&format!("READY=1\nSTATUS={last}"));
    tracing::info!(status = %last, "told the service manager the daemon is ready");
    loop {
        let changed = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.recv() => match e {
                Ok(e) => matters(&e.event),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        if changed {
            let line = status_line(&services.status());
            if line != last {
                notifier.send(&format!("STATUS={line}"));
                last = line;
            }
        }
    }
}

/// Events that change the status line.
fn matters(event: &Event) -> bool {
    matches!(
        event,
        Event::ClientsChanged { .. } | Event::ModelLoad { .. } | Event::CharacterChanged { .. }
    )
}

/// `WATCHDOG=1` every `every` while the conversation actor answers within it; a stuck
/// actor stops the pings and the service manager restarts the daemon.
async fn watchdog(
    notifier: Arc<Notifier>,
    services: Arc<Services>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tokio::time::timeout(every, services.conversation.ping()).await {
            Ok(Ok(())) => notifier.send("WATCHDOG=1"),
            Ok(Err(_)) => return,
            Err(_) => tracing::warn!(
                waited_ms = every.as_millis() as u64,
                "the conversation did not answer the watchdog's probe; not pinging the service manager"
            ),
        }
    }
}
