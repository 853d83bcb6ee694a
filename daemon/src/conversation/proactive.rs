//! When the character may speak up on its own: after a quiet spell, never while
//! anyone talks or a turn runs, less and less often while nobody answers.

use std::time::{Duration, Instant};

use crate::characters::Proactive;

/// Origin of a turn the character started itself (events, history, web clients).
pub const ORIGIN_PROACTIVE: &str = "proactive";

/// The actor's memory for proactive speech.
#[derive(Debug, Default)]
pub(super) struct ProactiveClock {
    /// When the current quiet spell began; `None` while something is going on.
    quiet_since: Option<Instant>,
    /// Proactive turns since the user last said something.
    unanswered: u32,
    /// Whether anyone has spoken to this daemon yet: a daemon started at boot does not
    /// talk into an empty room.
    user_seen: bool,
}

impl ProactiveClock {
    /// The user said something: the count starts again; quiet starts after the reply.
    pub(super) fn user_spoke(&mut self) {
        self.user_seen = true;
        self.unanswered = 0;
        self.quiet_since = None;
    }

    /// The character speaks up now.
    pub(super) fn spoke_up(&mut self) {
        self.unanswered = self.unanswered.saturating_add(1);
        self.quiet_since = None;
    }

    /// Something is going on (a turn, speech, someone talking): no quiet spell.
    pub(super) fn busy(&mut self) {
        self.quiet_since = None;
    }

    /// Everything went quiet at `now` (kept if it already was).
    pub(super) fn quiet(&mut self, now: Instant) {
        self.quiet_since.get_or_insert(now);
    }

    /// When to speak up, if at all: `after_secs` of quiet, times `backoff` for each
    /// attempt nobody answered, until `max_in_a_row`.
    pub(super) fn deadline(&self, settings: &Proactive) -> Option<Instant> {
        if settings.after_secs == 0 || !self.user_seen || self.unanswered >= settings.max_in_a_row {
            return None;
        }
        let since = self.quiet_since?;
        let factor = settings.backoff.max(1.0).powi(self.unanswered as i32);
        let wait = Duration::from_secs(settings.after_secs).mul_f64(factor.min(1e6));
        Some(since + wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(after_secs: u64) -> Proactive {
        Proactive {
            after_secs,
            max_in_a_row: 2,
            backoff: 3.0,
            ..Proactive::default()
        }
    }

    #[test]
    fn off_by_default_and_silent_until_someone_spoke() {
        let now = Instant::now();
        let mut clock = ProactiveClock::default();
        clock.quiet(now);
        assert_eq!(
            clock.deadline(&Proactive::default()),
            None,
            "off by default"
        );
        assert_eq!(clock.deadline(&settings(10)), None, "nobody spoke yet");
        clock.user_spoke();
        assert_eq!(
            clock.deadline(&settings(10)),
            None,
            "the reply is not quiet"
        );
        clock.quiet(now);
        assert_eq!(
            clock.deadline(&settings(10)),
            Some(now + Duration::from_secs(10))
        );
    }

    #[test]
    fn unanswered_attempts_back_off_then_stop_until_the_user_answers() {
        let now = Instant::now();
        let s = settings(10);
        let mut clock = ProactiveClock::default();
        clock.user_spoke();
        clock.quiet(now);
        clock.spoke_up();
        assert_eq!(clock.deadline(&s), None, "its own turn is not quiet");
        clock.quiet(now);
        assert_eq!(clock.deadline(&s), Some(now + Duration::from_secs(30)));
        // Quiet that began earlier is kept: a repeated `quiet` does not restart it.
        clock.quiet(now + Duration::from_secs(5));
        assert_eq!(clock.deadline(&s), Some(now + Duration::from_secs(30)));
        clock.spoke_up();
        clock.quiet(now);
        assert_eq!(clock.deadline(&s), None, "the cap: two in a row");
        clock.user_spoke();
        clock.quiet(now);
        assert_eq!(clock.deadline(&s), Some(now + Duration::from_secs(10)));
        clock.busy();
        assert_eq!(clock.deadline(&s), None, "someone is talking");
    }
}
