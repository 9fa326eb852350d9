//! A sender's pacer: how a browser spreads its video over time.
//!
//! A browser does not put a video frame on the wire all at once. Its pacer
//! sends media at 2.5 times the encoders' target rate, a few milliseconds'
//! worth at a time, and lets audio go ahead of the queue. A frame larger
//! than that (a keyframe, a slide change) waits in the queue and leaves
//! over tens of milliseconds. An SFU between browsers sees that shape, not
//! frame-sized bursts, and its queues and delay depend on it, so the
//! generator paces video the same way unless a run asks for bursts.
//!
//! The model is a leaky bucket: the queue's head may leave once the bytes
//! sent before it have drained at the pacing rate, less one step of
//! slack, so packets go out in groups of at most one step's worth.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Pacing rate over the encoders' target rate (what a browser uses).
const PACING_FACTOR_PERCENT: u64 = 250;
/// How much earlier than its turn a packet may leave: the pacer sends in
/// steps of about this long.
pub const PACING_STEP: Duration = Duration::from_millis(5);

/// Video waiting to leave, in the order it was queued.
#[derive(Debug)]
pub struct Pacer<T> {
    bytes_per_sec: u64,
    queue: VecDeque<(T, usize)>,
    /// When everything sent so far has drained at the pacing rate.
    drained_at: Option<Instant>,
}

impl<T> Pacer<T> {
    /// A pacer for a sender whose video targets `video_kbps` in all.
    pub fn new(video_kbps: u64) -> Self {
        Pacer {
            bytes_per_sec: (video_kbps * 1000 / 8 * PACING_FACTOR_PERCENT / 100).max(1),
            queue: VecDeque::new(),
            drained_at: None,
        }
    }

    pub fn push(&mut self, item: T, bytes: usize) {
        self.queue.push_back((item, bytes));
    }

    /// When the head of the queue may leave; `None` when nothing waits.
    pub fn ready_at(&self, now: Instant) -> Option<Instant> {
        self.queue.front()?;
        let at = match self.drained_at {
            Some(d) => d.checked_sub(PACING_STEP).unwrap_or(d),
            None => now,
        };
        Some(at)
    }

    /// The head of the queue, if its turn has come at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.ready_at(now)? > now {
            return None;
        }
        let (item, bytes) = self.queue.pop_front()?;
        let from = self.drained_at.map_or(now, |d| d.max(now));
        let cost = Duration::from_nanos(bytes as u64 * 1_000_000_000 / self.bytes_per_sec);
        self.drained_at = Some(from + cost);
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything due by `until`, stepping as the worker's timer would.
    fn drain(p: &mut Pacer<usize>, start: Instant, until: Instant) -> Vec<(usize, Duration)> {
        let mut out = Vec::new();
        let mut now = start;
        while now <= until {
            while let Some(i) = p.pop_due(now) {
                out.push((i, now - start));
            }
            match p.ready_at(now) {
                Some(at) => now = at.max(now),
                None => break,
            }
        }
        out
    }

    #[test]
    fn a_keyframe_leaves_at_two_and_a_half_times_the_target_rate() {
        // 1500 kbps paced at 3750 kbps: 468,750 bytes/s. 50 packets of
        // 1,000 bytes take 106.7 ms on the wire at that rate.
        let mut p = Pacer::new(1500);
        for i in 0..50 {
            p.push(i, 1000);
        }
        let start = Instant::now();
        let sent = drain(&mut p, start, start + Duration::from_secs(1));
        assert_eq!(sent.len(), 50, "all leave, in order");
        assert!(sent.iter().enumerate().all(|(i, (j, _))| i == *j));
        let last = sent.last().unwrap().1;
        assert!(
            (Duration::from_millis(95)..=Duration::from_millis(106)).contains(&last),
            "the last packet leaves after {last:?}"
        );
        // Never more than one step's worth (2,344 bytes) plus a packet at once.
        for w in sent.windows(4) {
            assert!(
                w[3].1 > w[0].1,
                "four packets left together at {:?}",
                w[0].1
            );
        }
    }

    #[test]
    fn a_small_frame_after_a_quiet_spell_leaves_at_once() {
        let mut p = Pacer::new(1500);
        let start = Instant::now();
        p.push(0, 1000);
        assert_eq!(p.pop_due(start), Some(0));
        assert_eq!(p.ready_at(start), None, "nothing waits");
        // Long after the first drained, the next goes straight out.
        let later = start + Duration::from_millis(100);
        p.push(1, 1000);
        assert!(
            p.ready_at(later).unwrap() <= later,
            "nothing is left to drain"
        );
        assert_eq!(p.pop_due(later), Some(1));
    }

    #[test]
    fn a_packet_waits_for_the_bytes_before_it() {
        let mut p = Pacer::new(800); // 250,000 bytes/s
        let start = Instant::now();
        p.push(0, 5000); // 20 ms on the wire
        p.push(1, 100);
        assert_eq!(p.pop_due(start), Some(0));
        assert_eq!(p.pop_due(start), None, "the second waits");
        let at = p.ready_at(start).unwrap();
        assert_eq!(
            at - start,
            Duration::from_millis(15),
            "one step before the first drains"
        );
        assert_eq!(p.pop_due(at), Some(1));
    }
}
