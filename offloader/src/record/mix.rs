//! One speaker's audio on the wall clock: their Opus tracks decoded and laid
//! end to end at 48 kHz, gaps as silence. Streaming, so an hour-long call
//! never sits decoded in memory.

use std::collections::HashMap;

use super::opus::{OPUS_RATE, OpusDecoder};
use super::timeline::{TimedFrame, timed_frames};
use super::{Capture, Codec, MediaKind, RecordError};

/// A packet up to this many samples from where the previous one ended joins
/// it seamlessly (clock jitter the anchor did not remove); past it, the gap
/// is silence.
const JOIN_TOLERANCE: i64 = 480;
/// A packet this far behind the end of the previous one overlaps it (two
/// tracks of one speaker at once) and is left out.
const MAX_OVERLAP: i64 = 4800;

/// A speaker's PCM at 48 kHz, produced in order.
pub(crate) struct SpeakerAudio<'a> {
    frames: Vec<(u32, TimedFrame<'a>)>,
    next: usize,
    decoders: HashMap<u32, OpusDecoder>,
    origin_us: i64,
    /// Decoded samples not yet handed out, starting at `buf_start`.
    buf: Vec<f32>,
    buf_start: i64,
    /// Frames that did not decode (corrupt): played as loss.
    pub(crate) bad_frames: u64,
}

impl<'a> SpeakerAudio<'a> {
    /// The speaker's audio, sample 0 at `origin_us` on the wall clock.
    pub(crate) fn new(capture: &'a Capture, session_id: &str, origin_us: i64) -> Self {
        let mut frames: Vec<(u32, TimedFrame<'a>)> = capture
            .tracks
            .iter()
            .filter(|t| {
                t.meta.kind == MediaKind::Audio
                    && t.meta.codec == Codec::Opus
                    && t.meta.session_id == session_id
            })
            .flat_map(|t| timed_frames(t).into_iter().map(move |f| (t.meta.id, f)))
            .collect();
        frames.sort_by_key(|(_, f)| f.wall_us);
        SpeakerAudio {
            frames,
            next: 0,
            decoders: HashMap::new(),
            origin_us,
            buf: Vec::new(),
            buf_start: 0,
            bad_frames: 0,
        }
    }

    /// Wall clock of the speaker's first frame.
    pub(crate) fn first_us(&self) -> Option<i64> {
        self.frames.first().map(|(_, f)| f.wall_us)
    }

    /// Wall clock just after the speaker's last frame (assuming 20 ms).
    pub(crate) fn end_us(&self) -> Option<i64> {
        self.frames.last().map(|(_, f)| f.wall_us + 20_000)
    }

    /// Appends the samples `[self.position(), end)` to `out`.
    pub(crate) fn fill_until(&mut self, end: i64, out: &mut Vec<f32>) -> Result<(), RecordError> {
        while self.buf_start + self.buf.len() as i64 <= end && self.next < self.frames.len() {
            self.place_next()?;
        }
        let want = (end - self.buf_start).max(0) as usize;
        let have = want.min(self.buf.len());
        out.extend_from_slice(&self.buf[..have]);
        out.extend(std::iter::repeat_n(0.0, want - have));
        self.buf.drain(..have);
        self.buf_start = self.buf_start.max(end);
        Ok(())
    }

    fn place_next(&mut self) -> Result<(), RecordError> {
        let (track, f) = self.frames[self.next];
        self.next += 1;
        let pos = (f.wall_us - self.origin_us) * i64::from(OPUS_RATE) / 1_000_000;
        let end = self.buf_start + self.buf.len() as i64;
        if pos < end - MAX_OVERLAP {
            return Ok(());
        }
        let dec = match self.decoders.entry(track) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(OpusDecoder::new(OPUS_RATE)?),
        };
        if let Err(e) = dec.decode_48k(f.data) {
            self.bad_frames += 1;
            tracing::warn!(track, error = %e, "recording: audio frame left out as a loss");
            dec.take_48k();
            return Ok(());
        }
        let pcm = dec.take_48k();
        if pos > end + JOIN_TOLERANCE {
            if self.buf.is_empty() && pos > self.buf_start {
                self.buf_start = pos;
            } else {
                self.buf
                    .extend(std::iter::repeat_n(0.0, (pos - end) as usize));
            }
        }
        self.buf.extend_from_slice(&pcm);
        Ok(())
    }
}
