//! Who is connected: connection ids (for per-connection state such as a client's audio
//! stream), the count of attached clients, and how many of them play the reply's audio
//! ([`Listeners`](crate::speech::listeners::Listeners)), for the socket and the web server alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use vtuber_shared::Event;

use crate::events::EventBus;
use crate::speech::listeners::Listeners;
use crate::voice_input::VoiceInput;

/// The registry of connections; cheap to clone.
#[derive(Clone)]
pub struct Clients {
    inner: Arc<Inner>,
}

struct Inner {
    next_id: AtomicU64,
    attached: AtomicUsize,
    bus: EventBus,
    /// Forgets a closed connection's audio stream.
    voice: Option<VoiceInput>,
    listeners: Listeners,
}

impl Clients {
    /// `listeners` is the count the speech output reads; made first, since speech is
    /// set up before the clients.
    pub fn new(bus: EventBus, voice: Option<VoiceInput>, listeners: Listeners) -> Self {
        Self {
            inner: Arc::new(Inner {
                next_id: AtomicU64::new(1),
                attached: AtomicUsize::new(0),
                bus,
                voice,
                listeners,
            }),
        }
    }

    /// Clients attached now.
    pub fn count(&self) -> usize {
        self.inner.attached.load(Ordering::Relaxed)
    }

    /// A new connection, with an id no other connection (socket or web) has; not yet
    /// counted as a client.
    pub fn connect(&self) -> Connection {
        Connection {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            attached: false,
            listening: false,
            clients: self.clone(),
        }
    }
}

/// One open connection. Dropping it forgets its audio stream and, when it was attached,
/// counts it out and tells every client.
pub struct Connection {
    id: u64,
    attached: bool,
    /// Counted in [`Listeners`].
    listening: bool,
    clients: Clients,
}

impl Connection {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Counts this connection as a client and tells every client; returns the new count.
    pub fn attach(&mut self) -> usize {
        if self.attached {
            return self.clients.count();
        }
        self.attached = true;
        let inner = &self.clients.inner;
        let n = inner.attached.fetch_add(1, Ordering::Relaxed) + 1;
        inner.bus.emit(Event::ClientsChanged { clients: n });
        n
    }

    /// Counts this connection as one that plays the reply's audio, until it closes.
    pub fn listen(&mut self) {
        if !self.listening {
            self.listening = true;
            self.clients.inner.listeners.join();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let inner = &self.clients.inner;
        if let Some(voice) = &inner.voice {
            voice.client_gone(self.id);
        }
        if self.listening {
            inner.listeners.leave();
        }
        if self.attached {
            let n = inner.attached.fetch_sub(1, Ordering::Relaxed) - 1;
            inner.bus.emit(Event::ClientsChanged { clients: n });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_get_distinct_ids_and_only_attached_ones_count() {
        let bus = EventBus::new(16);
        let (mut rx, _) = bus.subscribe();
        let listeners = Listeners::default();
        let clients = Clients::new(bus, None, listeners.clone());
        let mut a = clients.connect();
        let mut b = clients.connect();
        b.listen();
        b.listen();
        assert_eq!(listeners.count(), 1, "listening twice counts once");
        assert_ne!(a.id(), b.id());
        assert_eq!(clients.count(), 0);
        assert_eq!(a.attach(), 1);
        assert_eq!(a.attach(), 1, "attaching twice counts once");
        drop(b);
        assert_eq!(listeners.count(), 0);
        assert_eq!(clients.count(), 1);
        drop(a);
        assert_eq!(clients.count(), 0);
        let counts: Vec<usize> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|e| match e.event {
                Event::ClientsChanged { clients } => Some(clients),
                _ => None,
            })
            .collect();
        assert_eq!(counts, [1, 0]);
    }
}
