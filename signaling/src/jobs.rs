//! control ⇄ offloader: the job API.
//!
//! Control asks an offloader to record, transcribe or caption a call over
//! HTTP (`/v1/jobs`, `Authorization: Bearer <key>`). The job's bot joins the
//! call through control's own signaling with the [`ControlAccess`] it is
//! given, receive-only, so it works whichever rtcd node holds the call. The
//! offloader hands its results back to control, which stores them and posts
//! them in the call's thread; control sees progress by reading the job.
//!
//! Errors are [`JobError`] bodies with a stable `code` and a human message.

use serde::{Deserialize, Serialize};

use crate::ids::{CallId, JobId};

/// `POST /v1/jobs`: what to do, for which call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub call_id: CallId,
    /// How the job's bot reaches the call.
    pub control: ControlAccess,
    pub job: JobKind,
    /// Stop capturing after this long even if the call goes on (the
    /// offloader's own limit applies when absent or larger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_secs: Option<u64>,
}

/// Control's base URL (`http://host:port`, no trailing `/api/v1`) and a
/// token that admits a receive-only bot to this one call and lets it hand
/// back results. Never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlAccess {
    pub url: String,
    pub token: String,
}

impl std::fmt::Debug for ControlAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlAccess")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobKind {
    /// A file of the call, and a transcript when `transcribe` is set.
    Recording {
        #[serde(default)]
        format: RecordingFormat,
        #[serde(default)]
        profile: QualityProfile,
        /// Also keep each speaker's audio as its own track.
        #[serde(default)]
        speaker_tracks: bool,
        #[serde(default)]
        transcribe: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
    },
    /// A transcript only (WebVTT with speaker names, and plain text).
    Transcription {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
    },
    /// Captions sent to the participants while the call runs.
    Captions {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingFormat {
    /// VP8 + Opus in WebM, composed.
    #[default]
    Webm,
    /// H.264 + AAC in MP4, composed.
    Mp4,
    /// The call's audio only, Opus in Ogg, never re-encoded (one track per
    /// speaker, mixed on playback).
    Audio,
}

/// Size and bit rate of a composed recording.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityProfile {
    /// 640×360.
    Low,
    /// 1280×720.
    #[default]
    Standard,
    /// 1920×1080.
    High,
}

impl QualityProfile {
    pub fn size(self) -> (u32, u32) {
        match self {
            QualityProfile::Low => (640, 360),
            QualityProfile::Standard => (1280, 720),
            QualityProfile::High => (1920, 1080),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a free worker.
    Queued,
    /// The bot is in the call, capturing.
    Running,
    /// Capture is over; composing, transcribing, handing back.
    Processing,
    Succeeded,
    /// Gave up: `error` says why; the logs are kept.
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A job as the offloader sees it (`GET /v1/jobs/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: JobId,
    pub spec: JobSpecSummary,
    pub state: JobState,
    /// Unix milliseconds.
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// Runs started so far (a retry or a restart after a crash adds one).
    pub attempts: u32,
    /// Media captured so far, in milliseconds of call time.
    #[serde(default)]
    pub captured_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<JobResult>,
}

/// The spec without its secret, as shown back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpecSummary {
    pub call_id: CallId,
    pub control_url: String,
    pub job: JobKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_secs: Option<u64>,
}

impl From<&JobSpec> for JobSpecSummary {
    fn from(s: &JobSpec) -> Self {
        JobSpecSummary {
            call_id: s.call_id.clone(),
            control_url: s.control.url.clone(),
            job: s.job.clone(),
            max_duration_secs: s.max_duration_secs,
        }
    }
}

/// One file a job produced and handed back to control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    pub kind: ResultKind,
    pub name: String,
    pub content_type: String,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Control's file id once handed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    Recording,
    SpeakerTrack,
    TranscriptVtt,
    TranscriptText,
}

/// `GET /v1/jobs`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobInfo>,
}

/// An error body from the job API, or why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// Stable, `snake_case`: `unknown_call`, `invalid_spec`, `not_found`,
    /// `unauthorized`, `deadline_exceeded`, `capture_failed`, …
    pub code: String,
    pub message: String,
}

/// A live caption: the offloader sends it to control
/// (`POST /api/v1/calls/{id}/captions`), which relays it to the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caption {
    /// The speaker's session; control adds the user.
    pub session_id: crate::ids::SessionId,
    /// Call time, milliseconds since the bot joined.
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// What a job's bot reads about its call (`GET /api/v1/calls/{id}/bot`):
/// the call, whether the bot's own session still stands (false: stop and
/// hand back), and the participants' display names for speaker labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotView {
    pub call: crate::call::CallInfo,
    /// The bot's session in the call and whether it is still in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<crate::ids::SessionId>,
    pub in_call: bool,
    /// User id → display name, for everyone who was in the call.
    pub names: std::collections::BTreeMap<String, String>,
}
