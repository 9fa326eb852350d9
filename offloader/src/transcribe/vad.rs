//! Energy-based voice activity detection with hangover.
//!
//! Audio is cut into 20 ms frames. A frame is loud when its level is above
//! both an absolute floor and the tracked noise floor plus a margin.
//! Speech starts after [`ONSET_FRAMES`] loud frames in a row (with
//! [`PRE_ROLL_FRAMES`] of audio before, so soft word onsets survive), and
//! ends after [`HANGOVER_FRAMES`] of quiet (pauses between words do not
//! split an utterance); the trailing quiet beyond [`TAIL_FRAMES`] is
//! trimmed. No utterance is longer than [`MAX_UTTERANCE_MS`], Whisper's
//! window: a long one is split at its quietest frame near the limit.

use std::ops::Range;

use super::SAMPLE_RATE;

/// Samples per 20 ms frame at 16 kHz.
pub const FRAME: usize = (SAMPLE_RATE as usize) / 50;
/// Loud frames in a row that start an utterance (40 ms).
pub const ONSET_FRAMES: usize = 2;
/// Quiet frames that end one (400 ms).
pub const HANGOVER_FRAMES: usize = 20;
/// Audio kept before the onset (200 ms).
pub const PRE_ROLL_FRAMES: usize = 10;
/// Quiet kept after the last loud frame (200 ms).
pub const TAIL_FRAMES: usize = 10;
/// Whisper's window; longer utterances are split.
pub const MAX_UTTERANCE_MS: u64 = 30_000;
const MAX_FRAMES: usize = (MAX_UTTERANCE_MS / 20) as usize;
/// Where in a too-long utterance a split may fall (its last 3 s).
const SPLIT_SEARCH_FRAMES: usize = 150;
/// Below this level (dBFS) a frame is never speech.
const ABSOLUTE_FLOOR_DB: f32 = -50.0;
/// Speech is this far above the noise floor.
const MARGIN_DB: f32 = 12.0;
/// The noise floor falls at once to a quieter frame and rises slowly
/// (per frame), so speech does not lift it much.
const FLOOR_RISE_DB: f32 = 0.01;

/// Level of a frame in dBFS (full-scale sine ≈ −3 dB).
pub fn frame_db(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return -120.0;
    }
    let energy: f32 = frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32;
    10.0 * (energy + 1e-12).log10()
}

/// What a frame did to the utterance in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VadEvent {
    /// An utterance began at this frame index (pre-roll included).
    Start(usize),
    /// The utterance ended; it covers frames up to this index (exclusive).
    End(usize),
}

/// Streaming detector: feed frame levels in order.
#[derive(Clone, Debug)]
pub struct Vad {
    frame: usize,
    noise_floor_db: f32,
    loud_run: usize,
    in_speech: Option<usize>,
    last_loud: usize,
    levels: Vec<f32>,
}

impl Default for Vad {
    fn default() -> Self {
        Vad::new()
    }
}

impl Vad {
    /// A detector at frame 0.
    pub fn new() -> Vad {
        Vad {
            frame: 0,
            noise_floor_db: ABSOLUTE_FLOOR_DB,
            loud_run: 0,
            in_speech: None,
            last_loud: 0,
            levels: Vec::new(),
        }
    }

    /// Whether an utterance is in progress.
    pub fn in_speech(&self) -> bool {
        self.in_speech.is_some()
    }

    /// Takes the next frame's level (see [`frame_db`]); returns at most two
    /// events (a forced split ends one utterance and starts the next).
    pub fn push(&mut self, db: f32) -> Vec<VadEvent> {
        let i = self.frame;
        self.frame += 1;
        if db < self.noise_floor_db {
            self.noise_floor_db = db.max(-100.0);
        } else {
            self.noise_floor_db += FLOOR_RISE_DB;
        }
        let loud = db > ABSOLUTE_FLOOR_DB && db > self.noise_floor_db + MARGIN_DB;
        self.loud_run = if loud { self.loud_run + 1 } else { 0 };
        let mut events = Vec::new();
        match self.in_speech {
            None => {
                if self.loud_run >= ONSET_FRAMES {
                    let start = (i + 1).saturating_sub(ONSET_FRAMES + PRE_ROLL_FRAMES);
                    self.in_speech = Some(start);
                    self.last_loud = i;
                    self.levels.clear();
                    events.push(VadEvent::Start(start));
                }
            }
            Some(start) => {
                self.levels.push(db);
                if loud {
                    self.last_loud = i;
                }
                if i - self.last_loud >= HANGOVER_FRAMES {
                    let end = (self.last_loud + 1 + TAIL_FRAMES).min(i + 1);
                    self.in_speech = None;
                    events.push(VadEvent::End(end));
                } else if i + 1 - start >= MAX_FRAMES {
                    let split = self.quietest_recent(i + 1);
                    events.push(VadEvent::End(split));
                    events.push(VadEvent::Start(split));
                    self.in_speech = Some(split);
                    let keep = (i + 1) - split;
                    let drop = self.levels.len().saturating_sub(keep);
                    self.levels.drain(..drop);
                }
            }
        }
        events
    }

    /// Frame index (exclusive end) of the quietest frame among the last
    /// [`SPLIT_SEARCH_FRAMES`] before `end`.
    fn quietest_recent(&self, end: usize) -> usize {
        let n = self.levels.len().min(SPLIT_SEARCH_FRAMES);
        let recent = &self.levels[self.levels.len() - n..];
        let (at, _) = recent
            .iter()
            .enumerate()
            .fold((n - 1, f32::INFINITY), |best, (j, &l)| {
                if l < best.1 { (j, l) } else { best }
            });
        end - (n - at) + 1
    }

    /// Ends an utterance in progress at `frames` (end of input).
    pub fn finish(&mut self, frames: usize) -> Option<VadEvent> {
        self.in_speech
            .take()
            .map(|_| VadEvent::End((self.last_loud + 1 + TAIL_FRAMES).min(frames)))
    }
}

/// Sample ranges of the utterances in `pcm16k`.
pub fn segment(pcm16k: &[f32]) -> Vec<Range<usize>> {
    let mut vad = Vad::new();
    let mut out = Vec::new();
    let mut start = 0;
    let frames = pcm16k.len().div_ceil(FRAME);
    let mut on_event = |e: VadEvent, out: &mut Vec<Range<usize>>| match e {
        VadEvent::Start(f) => start = f,
        VadEvent::End(f) => {
            let r = start * FRAME..(f * FRAME).min(pcm16k.len());
            if !r.is_empty() {
                out.push(r);
            }
        }
    };
    for frame in pcm16k.chunks(FRAME) {
        for e in vad.push(frame_db(frame)) {
            on_event(e, &mut out);
        }
    }
    if let Some(e) = vad.finish(frames) {
        on_event(e, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(ms: usize, amp: f32) -> Vec<f32> {
        (0..ms * 16)
            .map(|i| amp * (i as f32 * 2.0 * std::f32::consts::PI * 220.0 / 16_000.0).sin())
            .collect()
    }

    #[test]
    fn silence_has_no_utterance() {
        assert!(segment(&vec![0.0; 16_000 * 5]).is_empty());
        assert!(segment(&tone(5000, 0.001)).is_empty());
    }

    #[test]
    fn two_bursts_with_a_long_pause_are_two_utterances() {
        let mut pcm = tone(1000, 0.0);
        pcm.extend(tone(1000, 0.3));
        pcm.extend(tone(2000, 0.0));
        pcm.extend(tone(500, 0.3));
        pcm.extend(tone(1000, 0.0));
        let s = segment(&pcm);
        assert_eq!(s.len(), 2, "{s:?}");
        // First burst 1.0–2.0 s: pre-roll before, tail after.
        assert!(
            s[0].start <= 16_000 && s[0].start >= 16_000 - 13 * FRAME,
            "{s:?}"
        );
        assert!(
            s[0].end >= 32_000 && s[0].end <= 32_000 + 12 * FRAME,
            "{s:?}"
        );
    }

    #[test]
    fn a_short_pause_does_not_split() {
        let mut pcm = tone(1000, 0.3);
        pcm.extend(tone(200, 0.0));
        pcm.extend(tone(1000, 0.3));
        assert_eq!(segment(&pcm).len(), 1);
    }

    #[test]
    fn long_speech_is_split_within_whisper_window() {
        // Syllables: 200 ms voiced, 60 ms nearly quiet, for 70 s.
        let mut pcm = Vec::new();
        while pcm.len() < 16 * 70_000 {
            pcm.extend(tone(200, 0.3));
            pcm.extend(tone(60, 0.002));
        }
        let s = segment(&pcm);
        assert!(s.len() >= 3, "{s:?}");
        for r in &s {
            assert!(r.len() <= 16 * MAX_UTTERANCE_MS as usize, "{r:?}");
        }
        // Contiguous: nothing lost at the splits.
        for w in s.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
    }
}
