//! The event bus: one ordered stream of [`Event`]s fanned out to every client.
//!
//! Each event is numbered and encoded once, then shared by all subscribers. A subscriber
//! that falls behind by more than the queue loses the oldest events and is told how many
//! (tokio's broadcast semantics), so one slow client never stalls the daemon or others.

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use vtuber_shared::{ErrorBody, ErrorCode, Event, ServerFrame, framing};

/// An event ready to write: its sequence number and its encoded line.
#[derive(Debug)]
pub struct EncodedEvent {
    pub seq: u64,
    pub line: Vec<u8>,
    /// The event itself, for clients that speak another protocol (the web page).
    pub event: Event,
}

pub type EventReceiver = broadcast::Receiver<Arc<EncodedEvent>>;

#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    tx: broadcast::Sender<Arc<EncodedEvent>>,
    /// Last sequence number issued; the lock also keeps numbering and sending in step.
    seq: Mutex<u64>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Self {
            inner: Arc::new(Inner {
                tx,
                seq: Mutex::new(0),
            }),
        }
    }

    /// Numbers, encodes and broadcasts `event`. Returns its sequence number.
    pub fn emit(&self, event: Event) -> u64 {
        let Ok(mut seq) = self.inner.seq.lock() else {
            return 0;
        };
        *seq += 1;
        let frame = ServerFrame::Event { seq: *seq, event };
        match framing::encode(&frame) {
            Ok(line) => {
                let ServerFrame::Event { event, .. } = frame else {
                    return *seq;
                };
                // No subscribers is fine: the event simply has no audience.
                let _ = self.inner.tx.send(Arc::new(EncodedEvent {
                    seq: *seq,
                    line,
                    event,
                }));
            }
            Err(e) => {
                // Senders keep events small (replies go out in pieces); should one slip
                // through anyway, clients hear about it instead of missing it silently.
                tracing::error!(error = %e, "event could not be encoded; sending an error instead");
                let note = Event::Error {
                    error: ErrorBody::new(
                        ErrorCode::Internal,
                        format!("an event could not be sent: {e}"),
                    )
                    .with_hint("re-read the conversation with `vtuber history show`"),
                };
                if let Ok(line) = framing::encode(&ServerFrame::Event {
                    seq: *seq,
                    event: note.clone(),
                }) {
                    let _ = self.inner.tx.send(Arc::new(EncodedEvent {
                        seq: *seq,
                        line,
                        event: note,
                    }));
                }
            }
        }
        *seq
    }

    /// A new subscription and the last sequence number sent before it began.
    pub fn subscribe(&self) -> (EventReceiver, u64) {
        match self.inner.seq.lock() {
            Ok(seq) => (self.inner.tx.subscribe(), *seq),
            Err(_) => (self.inner.tx.subscribe(), 0),
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.inner.seq.lock().map(|s| *s).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn numbered_in_order_and_lag_is_reported() {
        let bus = EventBus::new(16);
        let (mut rx, last) = bus.subscribe();
        assert_eq!(last, 0);
        for _ in 0..3 {
            bus.emit(Event::ShuttingDown);
        }
        for want in 1..=3 {
            assert_eq!(rx.recv().await.unwrap().seq, want);
        }
        for _ in 0..40 {
            bus.emit(Event::ShuttingDown);
        }
        match rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 24),
            other => panic!("expected lag, got {other:?}"),
        }
        assert_eq!(rx.recv().await.unwrap().seq, 28);
    }

    #[tokio::test]
    async fn an_event_too_large_for_a_frame_becomes_an_error_event() {
        let bus = EventBus::new(16);
        let (mut rx, _) = bus.subscribe();
        let seq = bus.emit(Event::Delta {
            turn_id: 1,
            text: "x".repeat(framing::MAX_FRAME_BYTES + 1),
        });
        let got = rx.recv().await.unwrap();
        assert_eq!(got.seq, seq);
        assert!(got.line.len() < 1024);
        assert!(
            matches!(&got.event, Event::Error { error } if error.code == ErrorCode::Internal),
            "{:?}",
            got.event
        );
    }
}
