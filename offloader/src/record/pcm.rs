//! PCM for transcription: each speaker alone, 16 kHz mono.

use super::mix::SpeakerAudio;
use super::opus::{Decimator, OPUS_RATE};
use super::{Capture, RecordError, audio_sessions};

/// One speaker's audio for transcription.
#[derive(Debug, Clone)]
pub struct SpeakerPcm {
    pub session_id: String,
    pub speaker: String,
    /// Wall clock (unix µs) of the first sample.
    pub start_us: u64,
    /// 16 kHz mono; gaps (not speaking, loss, downtime) are silence.
    pub pcm16k: Vec<f32>,
}

/// Each speaker's tracks decoded and joined on the wall clock, at 16 kHz.
pub fn speaker_pcm16k(capture: &Capture) -> Result<Vec<SpeakerPcm>, RecordError> {
    let mut out = Vec::new();
    for (session_id, speaker) in audio_sessions(capture) {
        let mut audio = SpeakerAudio::new(capture, &session_id, 0);
        let (Some(first), Some(end)) = (audio.first_us(), audio.end_us()) else {
            continue;
        };
        audio = SpeakerAudio::new(capture, &session_id, first);
        let total = (end - first) * i64::from(OPUS_RATE) / 1_000_000;
        let mut dec = Decimator::new(3);
        let mut pcm16k = Vec::with_capacity(total as usize / 3 + 1);
        let mut chunk = Vec::with_capacity(48_000);
        let mut pos = 0;
        while pos < total {
            let to = (pos + 48_000).min(total);
            chunk.clear();
            audio.fill_until(to, &mut chunk)?;
            pcm16k.extend(dec.run(&chunk));
            pos = to;
        }
        out.push(SpeakerPcm {
            session_id,
            speaker,
            start_us: first.max(0) as u64,
            pcm16k,
        });
    }
    Ok(out)
}
