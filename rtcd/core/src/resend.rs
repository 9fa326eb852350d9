//! How long a subscriber's video stays available for resends.
//!
//! Each outgoing video stream keeps its own copy of every packet's
//! bookkeeping (str0m's per-stream resend cache, ~432 bytes a packet), so
//! the window times the stream's packet rate is most of what a subscriber
//! costs. A receiver asks for a lost packet about one round trip after the
//! gap and retries each round trip after that, so the window only has to
//! outlast a few of the subscriber's round trips: a subscriber on the same
//! network needs a fraction of what one across an ocean needs. The window
//! starts at the floor and follows the round trip str0m measures from the
//! subscriber's receiver reports.
//!
//! str0m has no way to resize a cache in place: a new window starts an
//! empty cache, and a NACK for a packet sent just before that goes
//! unanswered (the receiver then asks for a keyframe). So the window
//! changes only when it is too short for the round trip or more than twice
//! what it needs, not on every sample.

use std::time::Duration;

/// A request and two retries.
const ROUND_TRIPS_NEEDED: u32 = 3;
/// When resizing, room for the round trip to grow by a third before the
/// next resize.
const ROUND_TRIPS_KEPT: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResendPolicy {
    floor: Duration,
    ceiling: Duration,
}

impl ResendPolicy {
    /// A floor at or above the ceiling gives a fixed window of `ceiling`.
    pub(crate) fn new(floor: Duration, ceiling: Duration) -> Self {
        ResendPolicy {
            floor: floor.min(ceiling),
            ceiling,
        }
    }

    /// The window before any round trip is known.
    pub(crate) fn initial(&self) -> Duration {
        self.floor
    }

    /// The window to switch to for a measured round trip, or `None` to keep
    /// `current`.
    pub(crate) fn adjust(&self, current: Duration, rtt: Duration) -> Option<Duration> {
        let next = (rtt * ROUND_TRIPS_KEPT).clamp(self.floor, self.ceiling);
        let too_short = current < (rtt * ROUND_TRIPS_NEEDED).min(self.ceiling);
        let far_too_long = next * 2 <= current;
        (next != current && (too_short || far_too_long)).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy() -> ResendPolicy {
        ResendPolicy::new(ms(250), ms(1000))
    }

    #[test]
    fn a_nearby_subscriber_stays_at_the_floor() {
        let p = policy();
        assert_eq!(p.initial(), ms(250));
        assert_eq!(p.adjust(ms(250), ms(1)), None);
        assert_eq!(p.adjust(ms(250), ms(80)), None, "3 × 80 ms fits in 250");
    }

    #[test]
    fn a_long_round_trip_grows_the_window_with_headroom() {
        let p = policy();
        assert_eq!(p.adjust(ms(250), ms(100)), Some(ms(400)));
        // Jitter around the same round trip changes nothing.
        assert_eq!(p.adjust(ms(400), ms(90)), None);
        assert_eq!(p.adjust(ms(400), ms(130)), None);
        assert_eq!(p.adjust(ms(400), ms(140)), Some(ms(560)));
    }

    #[test]
    fn the_ceiling_bounds_the_window() {
        let p = policy();
        assert_eq!(p.adjust(ms(250), ms(600)), Some(ms(1000)));
        assert_eq!(p.adjust(ms(1000), ms(900)), None, "nothing longer to give");
    }

    #[test]
    fn a_shorter_round_trip_shrinks_only_a_window_twice_too_long() {
        let p = policy();
        assert_eq!(p.adjust(ms(1000), ms(200)), None, "800 ms is needed");
        assert_eq!(p.adjust(ms(1000), ms(100)), Some(ms(400)));
        assert_eq!(p.adjust(ms(560), ms(1)), Some(ms(250)));
        assert_eq!(p.adjust(ms(400), ms(1)), None, "250 ms is not half of it");
    }

    #[test]
    fn a_floor_at_the_ceiling_is_a_fixed_window() {
        let p = ResendPolicy::new(ms(1000), ms(1000));
        assert_eq!(p.initial(), ms(1000));
        assert_eq!(p.adjust(ms(1000), ms(1)), None);
        assert_eq!(p.adjust(ms(1000), ms(900)), None);
        let p = ResendPolicy::new(ms(2000), ms(300));
        assert_eq!(p.initial(), ms(300), "the ceiling wins");
    }
}
