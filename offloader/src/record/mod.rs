//! Recording: the capture log and the files made from it.
//!
//! Driving it:
//! 1. The bot opens a [`CaptureWriter`] on the job's capture directory, calls
//!    [`CaptureWriter::track`] for each track it receives, then
//!    [`CaptureWriter::frame`] for each depacketized frame, and
//!    [`CaptureWriter::flush`] about once a second. After a crash the bot
//!    opens the same directory again (a new segment) and numbers new tracks
//!    from [`Capture::next_track_id`].
//! 2. At the end the job reads the log ([`read_capture`]) and writes
//!    [`write_audio_only`] (Opus copied, never re-encoded) or [`compose`]
//!    (mixed audio, active speaker and screen share layout, WebM or MP4), and
//!    [`speaker_pcm16k`] for transcription. [`OpusDecoder`] decodes live.
//!
//! Every frame is placed on one wall clock ([`timeline`]): gaps from loss or
//! downtime become silence or a frozen picture and never shift what follows.

pub mod audio;
pub mod capture;
pub mod compose;
mod encode;
mod layout;
mod mix;
pub mod opus;
pub mod pcm;
pub mod timeline;

pub use audio::{AudioOnlyReport, SpeakerStream, write_audio_only};
pub use capture::{
    Capture, CaptureError, CaptureWriter, CapturedFrame, CapturedTrack, Codec, MediaKind, Source,
    SpeakingEvent, TrackMeta, read_capture,
};
pub use compose::{ComposeOptions, ComposeReport, compose, profile_fps};
pub use opus::OpusDecoder;
pub use pcm::{SpeakerPcm, speaker_pcm16k};

use std::path::PathBuf;
use std::sync::OnceLock;

use ffmpeg_next as ff;

/// Errors of making files from a capture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("FFmpeg: {0}")]
    Ffmpeg(#[from] ff::Error),
    #[error("FFmpeg: {what}: {source}")]
    FfmpegAt {
        what: &'static str,
        #[source]
        source: ff::Error,
    },
    #[error("bad frame: {0}")]
    BadFrame(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("the capture holds no {0}")]
    Empty(&'static str),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// FFmpeg's one-time global setup; its log is quieted to errors so a
/// corrupt frame does not flood the job's output (we log it ourselves).
pub(crate) fn init_ffmpeg() -> Result<(), RecordError> {
    static INIT: OnceLock<Result<(), ff::Error>> = OnceLock::new();
    INIT.get_or_init(|| {
        ff::init()?;
        ff::log::set_level(ff::log::Level::Fatal);
        Ok(())
    })
    .map_err(|source| RecordError::FfmpegAt {
        what: "init",
        source,
    })
}

/// The sessions that have audio, in order of first appearance: one stream per
/// speaker in the files.
pub(crate) fn audio_sessions(capture: &Capture) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for t in &capture.tracks {
        if t.meta.kind == MediaKind::Audio
            && t.meta.codec == Codec::Opus
            && !out.iter().any(|(s, _)| *s == t.meta.session_id)
        {
            out.push((t.meta.session_id.clone(), t.meta.speaker.clone()));
        }
    }
    out
}
