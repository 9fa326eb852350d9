//! Voice activity from the RFC 6464 audio-level header extension.
//!
//! Levels are -dBov (0 loudest, 127 silence). A speaker starts when enough
//! loud packets arrive within a short window and stops after a hang-over of
//! quiet, so a pause between words does not flicker the indicator.

use std::time::{Duration, Instant};

/// Louder than -50 dBov counts as voice.
const LOUD_DBOV: i8 = 50;
const WINDOW: Duration = Duration::from_millis(400);
/// Loud packets needed in the window to start (20 ms frames: 8 ≈ 40%).
const START_PACKETS: u32 = 8;
const HANGOVER: Duration = Duration::from_millis(1200);

#[derive(Debug, Default)]
pub(crate) struct Vad {
    window_start: Option<Instant>,
    loud_in_window: u32,
    last_loud: Option<Instant>,
    speaking: bool,
}

impl Vad {
    /// Observes one packet's level (str0m gives it as a negative dBov or
    /// positive -dBov depending on the sender; the magnitude is what counts).
    /// Returns `Some(new_state)` on a change.
    pub fn observe(&mut self, now: Instant, level: i8) -> Option<bool> {
        let loud = level.unsigned_abs() < LOUD_DBOV as u8;
        if self
            .window_start
            .is_none_or(|s| now.saturating_duration_since(s) > WINDOW)
        {
            self.window_start = Some(now);
            self.loud_in_window = 0;
        }
        if loud {
            self.loud_in_window += 1;
            self.last_loud = Some(now);
        }
        if !self.speaking && self.loud_in_window >= START_PACKETS {
            self.speaking = true;
            return Some(true);
        }
        self.check_silence(now)
    }

    /// Ends speech after the hang-over, also when DTX stops the packets.
    pub fn check_silence(&mut self, now: Instant) -> Option<bool> {
        if self.speaking
            && self
                .last_loud
                .is_none_or(|t| now.saturating_duration_since(t) > HANGOVER)
        {
            self.speaking = false;
            return Some(false);
        }
        None
    }

    /// When [`Vad::check_silence`] may next flip the state.
    pub fn deadline(&self) -> Option<Instant> {
        if self.speaking {
            self.last_loud
                .map(|t| t + HANGOVER + Duration::from_millis(1))
        } else {
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_speech_and_stops_after_hangover() {
        let t0 = Instant::now();
        let mut vad = Vad::default();
        let mut changes = Vec::new();
        for i in 0..50u64 {
            let now = t0 + Duration::from_millis(20 * i);
            if let Some(c) = vad.observe(now, -20) {
                changes.push((i, c));
            }
        }
        assert_eq!(changes, vec![(7, true)]);
        // Silence: quiet packets for a while.
        for i in 50..200u64 {
            let now = t0 + Duration::from_millis(20 * i);
            if let Some(c) = vad.observe(now, -127) {
                changes.push((i, c));
            }
        }
        assert_eq!(changes.len(), 2);
        assert!(!changes[1].1);
        let stopped_at = changes[1].0;
        assert!((108..=112).contains(&stopped_at), "{stopped_at}");
    }

    #[test]
    fn a_cough_is_not_speech() {
        let t0 = Instant::now();
        let mut vad = Vad::default();
        for i in 0..100u64 {
            let level = if i % 20 == 0 { -10 } else { -120 };
            assert_eq!(vad.observe(t0 + Duration::from_millis(20 * i), level), None);
        }
    }
}
