//! When audio that arrived during a video fan-out is sent.
//!
//! Audio is written to its subscribers as it arrives, but str0m sends a
//! written packet only after a pass over its session, and a pass costs per
//! session whatever it sends. Flushing between two video slices for each
//! audio packet puts audio ahead of a long fan-out, at the price of a pass
//! over every session written to so far. A worker that keeps up has the
//! time. One that has not caught up for a while has not: with a screen
//! share to 1000 listeners those passes held a worker to 227–254 k
//! forwarded packets/s, with 1–18 % loss, where it carries 276–280 k and
//! loses nothing once it holds audio back (`bench/RESULTS.md`). So a
//! saturated worker lets audio wait for the video's own flush (every
//! `FLUSH_AFTER_FORWARDS` packets), or `SATURATED_AUDIO_HOLD` at most.

use std::time::{Duration, Instant};

/// A worker that has not caught up for this long is saturated. Longer than
/// the fan-out of a slide change to 1000 listeners (~150 ms), so a burst on
/// a worker that keeps up on average does not count.
pub const SATURATED_AFTER: Duration = Duration::from_millis(250);
/// Longest a saturated worker holds audio back between video slices.
pub const SATURATED_AUDIO_HOLD: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy)]
pub struct AudioRelease {
    caught_up_at: Instant,
}

impl AudioRelease {
    pub fn new(now: Instant) -> Self {
        AudioRelease { caught_up_at: now }
    }

    /// The worker has handled everything it read: no datagram left in the
    /// socket and no video waiting.
    pub fn caught_up(&mut self, now: Instant) {
        self.caught_up_at = now;
    }

    pub fn saturated(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.caught_up_at) >= SATURATED_AFTER
    }

    /// Whether audio written since `unflushed_since` (`None`: none) is to
    /// be sent now, before the rest of the video.
    pub fn due(&self, now: Instant, unflushed_since: Option<Instant>) -> bool {
        let Some(since) = unflushed_since else {
            return false;
        };
        !self.saturated(now) || now.saturating_duration_since(since) >= SATURATED_AUDIO_HOLD
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_worker_that_keeps_up_sends_audio_at_once() {
        let t0 = Instant::now();
        let mut r = AudioRelease::new(t0);
        assert!(!r.due(t0, None), "no audio, nothing to send");
        assert!(r.due(t0, Some(t0)));
        // Busy for a while, but less than SATURATED_AFTER: still at once.
        let t1 = t0 + SATURATED_AFTER - ms(1);
        assert!(r.due(t1, Some(t1)));
        r.caught_up(t1);
        let t2 = t1 + SATURATED_AFTER - ms(1);
        assert!(!r.saturated(t2));
        assert!(r.due(t2, Some(t2)));
    }

    #[test]
    fn a_saturated_worker_holds_audio_for_a_bounded_time() {
        let t0 = Instant::now();
        let mut r = AudioRelease::new(t0);
        let t1 = t0 + SATURATED_AFTER;
        assert!(r.saturated(t1));
        assert!(
            !r.due(t1, Some(t1)),
            "fresh audio waits for the video's flush"
        );
        assert!(!r.due(t1 + SATURATED_AUDIO_HOLD - ms(1), Some(t1)));
        assert!(
            r.due(t1 + SATURATED_AUDIO_HOLD, Some(t1)),
            "but not longer than the hold"
        );
        // Catching up once ends it.
        r.caught_up(t1 + ms(5));
        assert!(!r.saturated(t1 + ms(6)));
        assert!(r.due(t1 + ms(6), Some(t1 + ms(6))));
    }
}
