//! A whole call: each speaker's track → utterances → cues on one timeline.

use super::{Engine, SAMPLE_RATE, TranscribeError, vad};

/// One speaker's audio, 16 kHz mono, starting `start_ms` into the call.
#[derive(Clone, Debug)]
pub struct SpeakerAudio {
    pub speaker: String,
    pub start_ms: u64,
    pub pcm16k: Vec<f32>,
}

/// A line of the transcript: who said what, when (ms from the call's start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cue {
    pub start_ms: u64,
    pub end_ms: u64,
    pub speaker: String,
    pub text: String,
}

fn samples_to_ms(n: usize) -> u64 {
    n as u64 * 1000 / u64::from(SAMPLE_RATE)
}

/// Transcribes every speaker's speech (silence is never sent to Whisper)
/// and returns the cues sorted by start time across speakers.
pub fn transcribe_call(
    engine: &Engine,
    tracks: &[SpeakerAudio],
    language: Option<&str>,
) -> Result<Vec<Cue>, TranscribeError> {
    let mut cues = Vec::new();
    for track in tracks {
        for range in vad::segment(&track.pcm16k) {
            let base = track.start_ms + samples_to_ms(range.start);
            let limit = track.start_ms + samples_to_ms(range.end);
            for seg in engine.transcribe(&track.pcm16k[range], language)? {
                // Whisper's times may overshoot the audio it was given.
                let start_ms = (base + seg.start_ms).min(limit);
                cues.push(Cue {
                    start_ms,
                    end_ms: (base + seg.end_ms).clamp(start_ms, limit),
                    speaker: track.speaker.clone(),
                    text: seg.text,
                });
            }
        }
    }
    cues.sort_by(|a, b| {
        (a.start_ms, a.end_ms, &a.speaker).cmp(&(b.start_ms, b.end_ms, &b.speaker))
    });
    Ok(cues)
}
