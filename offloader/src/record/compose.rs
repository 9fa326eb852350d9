//! The composed recording: everyone's audio mixed, and a picture of the
//! active speaker and the screen share, encoded as WebM (VP8 + Opus) or MP4
//! (H.264 + AAC).
//!
//! One pass over the wall timeline at the profile's frame rate: for each
//! output frame, each speaker's audio for that frame's span is decoded and
//! mixed, the video tracks are decoded up to the frame's time, and the frame
//! is painted. Audio sample `n` and video frame `i` both count from the same
//! wall-clock origin, which is what keeps them in sync.

use std::path::Path;

use ffmpeg_next as ff;
use signaling::jobs::{QualityProfile, RecordingFormat};

use super::encode::{AudioSettings, Output, VideoSettings};
use super::layout::{Shown, VideoTrack, paint};
use super::mix::SpeakerAudio;
use super::opus::OPUS_RATE;
use super::{Capture, MediaKind, RecordError, Source, audio_sessions, init_ffmpeg};

/// A speaker stays the active one at least this long.
const SPEAKER_HOLD_US: i64 = 1_500_000;
/// Below this mean square a speaker is silent.
const SILENCE_ENERGY: f32 = 1e-5;
/// Another speaker takes over when louder than the active one by this factor.
const TAKEOVER: f32 = 2.0;

/// How to compose.
#[derive(Debug, Clone, Copy)]
pub struct ComposeOptions {
    /// `Webm` (VP8 + Opus) or `Mp4` (H.264 + AAC); `Audio` is not composed.
    pub format: RecordingFormat,
    pub profile: QualityProfile,
    /// One extra audio stream per speaker after the mix.
    pub speaker_tracks: bool,
}

/// What a composed file holds.
#[derive(Debug, Clone, Default)]
pub struct ComposeReport {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub video_frames: u64,
    /// The mix first, then one per speaker if asked.
    pub audio_streams: usize,
    /// Wall clock (unix µs) of the file's time 0.
    pub start_us: i64,
    pub duration_us: i64,
    /// Captured frames that did not decode and were played as loss.
    pub bad_frames: u64,
    /// Times the active speaker changed.
    pub speaker_changes: u64,
}

/// Frames per second of a profile.
pub fn profile_fps(profile: QualityProfile) -> u32 {
    match profile {
        QualityProfile::Low => 15,
        QualityProfile::Standard => 20,
        QualityProfile::High => 25,
    }
}

fn settings(
    opts: &ComposeOptions,
) -> Result<(&'static str, VideoSettings, AudioSettings), RecordError> {
    let (width, height) = opts.profile.size();
    let fps = profile_fps(opts.profile);
    let bit_rate = match opts.profile {
        QualityProfile::Low => 600_000,
        QualityProfile::Standard => 1_500_000,
        QualityProfile::High => 3_000_000,
    };
    use ff::format::sample::Type::{Packed, Planar};
    Ok(match opts.format {
        RecordingFormat::Webm => (
            "webm",
            VideoSettings {
                codec: "libvpx",
                width,
                height,
                fps,
                bit_rate,
                options: vec![
                    ("deadline", "realtime".into()),
                    ("cpu-used", "10".into()),
                    ("lag-in-frames", "0".into()),
                    ("threads", "1".into()),
                ],
            },
            AudioSettings {
                codec: "libopus",
                bit_rate: 64_000,
                format: ff::format::Sample::F32(Packed),
                default_frame: 960,
            },
        ),
        RecordingFormat::Mp4 => (
            "mp4",
            VideoSettings {
                codec: "libx264",
                width,
                height,
                fps,
                bit_rate: 0,
                options: vec![
                    ("preset", "veryfast".into()),
                    ("crf", "23".into()),
                    ("threads", "1".into()),
                    ("maxrate", bit_rate.to_string()),
                    ("bufsize", (bit_rate * 2).to_string()),
                ],
            },
            AudioSettings {
                codec: "aac",
                bit_rate: 96_000,
                format: ff::format::Sample::F32(Planar),
                default_frame: 1024,
            },
        ),
        RecordingFormat::Audio => {
            return Err(RecordError::Unsupported(
                "an audio-only recording is not composed: use write_audio_only".into(),
            ));
        }
    })
}

/// Composes the capture into `out`.
pub fn compose(
    capture: &Capture,
    out: &Path,
    opts: &ComposeOptions,
) -> Result<ComposeReport, RecordError> {
    init_ffmpeg()?;
    let (format, vset, aset) = settings(opts)?;
    let mut videos = Vec::new();
    for t in capture
        .tracks
        .iter()
        .filter(|t| t.meta.kind == MediaKind::Video)
    {
        match VideoTrack::new(t, t.segment < capture.segments) {
            Ok(v) => videos.push(v),
            Err(e) => {
                tracing::warn!(track = t.meta.id, error = %e, "recording: video track left out")
            }
        }
    }
    let sessions = audio_sessions(capture);
    let probe: Vec<SpeakerAudio<'_>> = sessions
        .iter()
        .map(|(s, _)| SpeakerAudio::new(capture, s, 0))
        .collect();
    let spans = probe
        .iter()
        .filter_map(|a| Some((a.first_us()?, a.end_us()?)))
        .chain(videos.iter().filter_map(|v| v.span()));
    let (start_us, end_us) = spans
        .fold(None, |acc: Option<(i64, i64)>, (a, b)| {
            Some(acc.map_or((a, b), |(x, y)| (x.min(a), y.max(b))))
        })
        .ok_or(RecordError::Empty("media"))?;
    let mut speakers: Vec<SpeakerAudio<'_>> = sessions
        .iter()
        .map(|(s, _)| SpeakerAudio::new(capture, s, start_us))
        .collect();

    let mut names = vec!["mix".to_string()];
    if opts.speaker_tracks {
        names.extend(sessions.iter().map(|(_, n)| n.clone()));
    }
    let mut output = Output::create(out, format, &vset, &aset, &names)?;
    let fps = i64::from(vset.fps);
    let frames = (((end_us - start_us) * fps + 999_999) / 1_000_000).max(1);
    let mut canvas = ff::frame::Video::new(ff::format::Pixel::YUV420P, vset.width, vset.height);
    let mut active = ActiveSpeaker::new(sessions.len());
    let mut chunks: Vec<Vec<f32>> = vec![Vec::new(); sessions.len()];
    let mut mix = Vec::new();
    let mut report = ComposeReport {
        width: vset.width,
        height: vset.height,
        fps: vset.fps,
        audio_streams: names.len(),
        start_us,
        ..Default::default()
    };
    for i in 0..frames {
        let now = start_us + i * 1_000_000 / fps;
        // Audio for this frame's span, by sample count so rounding never drifts.
        let a_end = (i + 1) * i64::from(OPUS_RATE) / fps;
        mix.clear();
        for (s, sp) in speakers.iter_mut().enumerate() {
            chunks[s].clear();
            sp.fill_until(a_end, &mut chunks[s])?;
            if mix.is_empty() {
                mix.resize(chunks[s].len(), 0.0);
            }
            for (m, x) in mix.iter_mut().zip(&chunks[s]) {
                *m += x;
            }
        }
        if mix.is_empty() {
            let a_start = i * i64::from(OPUS_RATE) / fps;
            mix.resize((a_end - a_start) as usize, 0.0);
        }
        mix.iter_mut().for_each(|x| *x = limit(*x));
        output.audio_samples(0, &mix)?;
        if opts.speaker_tracks {
            for (s, c) in chunks.iter().enumerate() {
                output.audio_samples(s + 1, c)?;
            }
        }
        let energy: Vec<f32> = chunks
            .iter()
            .map(|c| c.iter().map(|x| x * x).sum::<f32>() / c.len().max(1) as f32)
            .collect();
        active.update(&energy, now);

        for v in videos.iter_mut() {
            v.advance(now);
        }
        let shown = choose(&videos, &sessions, &active, now);
        paint(&mut canvas, &mut videos, shown)?;
        output.video_frame(&mut canvas, i)?;
        report.video_frames += 1;
    }
    output.finish()?;
    report.duration_us = frames * 1_000_000 / fps;
    report.bad_frames = speakers.iter().map(|s| s.bad_frames).sum::<u64>()
        + videos.iter().map(|v| v.bad_frames).sum::<u64>();
    report.speaker_changes = active.changes;
    Ok(report)
}

/// Soft knee above 0.9 so a loud mix never wraps or clips hard.
fn limit(x: f32) -> f32 {
    let a = x.abs();
    if a <= 0.9 {
        x
    } else {
        x.signum() * (0.9 + 0.1 * ((a - 0.9) / 0.1).tanh())
    }
}

/// The loudest speaker lately, held so the picture does not flicker.
struct ActiveSpeaker {
    smooth: Vec<f32>,
    current: Option<usize>,
    since: i64,
    /// When each speaker was last the active one (picks a camera when the
    /// active speaker has none).
    last_active: Vec<i64>,
    changes: u64,
}

impl ActiveSpeaker {
    fn new(n: usize) -> Self {
        ActiveSpeaker {
            smooth: vec![0.0; n],
            current: None,
            since: i64::MIN,
            last_active: vec![i64::MIN; n],
            changes: 0,
        }
    }

    fn update(&mut self, energy: &[f32], now: i64) {
        for (s, e) in self.smooth.iter_mut().zip(energy) {
            *s = 0.7 * *s + 0.3 * e;
        }
        let loudest = (0..self.smooth.len())
            .filter(|&i| self.smooth[i] > SILENCE_ENERGY)
            .max_by(|&a, &b| self.smooth[a].total_cmp(&self.smooth[b]));
        let switch = match (self.current, loudest) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(c), Some(l)) => {
                l != c
                    && now - self.since >= SPEAKER_HOLD_US
                    && self.smooth[l] > TAKEOVER * self.smooth[c]
            }
        };
        if switch {
            self.current = loudest;
            self.since = now;
            self.changes += 1;
        }
        if let Some(c) = self.current {
            self.last_active[c] = now;
        }
    }
}

/// The layout at `now`: the newest live screen share large with the active
/// speaker's camera small; else the active speaker's camera (or the camera
/// of whoever spoke last, or any) full; else dark.
fn choose(
    videos: &[VideoTrack<'_>],
    sessions: &[(String, String)],
    active: &ActiveSpeaker,
    now: i64,
) -> Shown {
    let live = |i: &usize| videos[*i].live(now);
    let screen = (0..videos.len())
        .filter(|i| videos[*i].source == Source::Screen)
        .rfind(live);
    let camera_of = |s: usize| {
        (0..videos.len())
            .filter(|i| {
                videos[*i].source != Source::Screen && videos[*i].session_id == sessions[s].0
            })
            .rfind(live)
    };
    let mut by_recency: Vec<usize> = (0..sessions.len()).collect();
    by_recency.sort_by_key(|&s| std::cmp::Reverse(active.last_active[s]));
    let camera = active
        .current
        .and_then(camera_of)
        .or_else(|| by_recency.iter().find_map(|&s| camera_of(s)))
        .or_else(|| {
            (0..videos.len())
                .filter(|i| videos[*i].source != Source::Screen)
                .rfind(live)
        });
    match (screen, camera) {
        (Some(s), c) => Shown::ScreenAndSpeaker(s, c),
        (None, Some(c)) => Shown::Full(c),
        (None, None) => Shown::Dark,
    }
}
