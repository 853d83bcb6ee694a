//! Who can hear the character: the count of attached clients that play the reply's
//! audio. The client registry keeps it; the speaker reads it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many attached clients play (or keep) the reply's audio; cheap to clone. Speech
/// is only synthesized for someone: with no local speaker and no listening client, a
/// reply is text only, and synthesis stops mid-reply when the last listener leaves.
#[derive(Clone, Default)]
pub struct Listeners(Arc<AtomicUsize>);

impl Listeners {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// One more client plays audio.
    pub fn join(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// A client that played audio left.
    pub fn leave(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
