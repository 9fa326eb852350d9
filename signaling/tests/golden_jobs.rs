//! The control ⇄ offloader job API, pinned as JSON.

mod common;

use serde::Serialize;
use serde::de::DeserializeOwned;
use signaling::jobs::{
    Caption, ControlAccess, JobError, JobInfo, JobKind, JobResult, JobSpec, JobSpecSummary,
    JobState, QualityProfile, RecordingFormat, ResultKind,
};
use signaling::{CallId, JobId, SessionId};

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, value: T) {
    common::check("jobs", name, value)
}

fn spec(job: JobKind) -> JobSpec {
    JobSpec {
        call_id: CallId::new("call-1").unwrap(),
        control: ControlAccess {
            url: "http://127.0.0.1:8065".into(),
            token: "bot-token".into(),
        },
        job,
        max_duration_secs: Some(7200),
    }
}

#[test]
fn job_specs() {
    check(
        "spec_recording",
        spec(JobKind::Recording {
            format: RecordingFormat::Mp4,
            profile: QualityProfile::Standard,
            speaker_tracks: true,
            transcribe: true,
            language: Some("en".into()),
        }),
    );
    check(
        "spec_transcription",
        spec(JobKind::Transcription { language: None }),
    );
    check("spec_captions", spec(JobKind::Captions { language: None }));
}

#[test]
fn defaults_fill_a_short_recording_spec() {
    let s: JobSpec = serde_json::from_str(
        r#"{"call_id":"c","control":{"url":"http://x","token":"t"},"job":{"kind":"recording"}}"#,
    )
    .unwrap();
    assert_eq!(
        s.job,
        JobKind::Recording {
            format: RecordingFormat::Webm,
            profile: QualityProfile::Standard,
            speaker_tracks: false,
            transcribe: false,
            language: None,
        }
    );
}

#[test]
fn malformed_specs_are_refused() {
    for bad in [
        r#"{"call_id":"c","control":{"url":"http://x","token":"t"},"job":{"kind":"dance"}}"#,
        r#"{"call_id":"c d","control":{"url":"http://x","token":"t"},"job":{"kind":"captions"}}"#,
        r#"{"call_id":"c","control":{"url":"http://x"},"job":{"kind":"captions"}}"#,
        r#"{"call_id":"c","control":{"url":"http://x","token":"t"},"job":{"kind":"captions"},"extra":1}"#,
        r#"{"call_id":"c","control":{"url":"http://x","token":"t"},"job":{"kind":"recording","format":"avi"}}"#,
    ] {
        assert!(serde_json::from_str::<JobSpec>(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_token_never_shows_in_debug_output() {
    let s = spec(JobKind::Captions { language: None });
    let shown = format!("{s:?}");
    assert!(!shown.contains("bot-token"), "{shown}");
}

#[test]
fn job_info_and_errors() {
    let s = spec(JobKind::Recording {
        format: RecordingFormat::Webm,
        profile: QualityProfile::Low,
        speaker_tracks: false,
        transcribe: false,
        language: None,
    });
    check(
        "info_succeeded",
        JobInfo {
            id: JobId::new("job-1").unwrap(),
            spec: JobSpecSummary::from(&s),
            state: JobState::Succeeded,
            created_at: 1_700_000_000_000,
            started_at: Some(1_700_000_000_100),
            finished_at: Some(1_700_000_060_000),
            attempts: 2,
            captured_ms: 59_000,
            error: None,
            results: vec![JobResult {
                kind: ResultKind::Recording,
                name: "call-1.webm".into(),
                content_type: "video/webm".into(),
                bytes: 123_456,
                duration_ms: Some(59_000),
                file_id: Some("file-1".into()),
            }],
        },
    );
    check(
        "error_unknown_call",
        JobError {
            code: "unknown_call".into(),
            message: "control knows no running call call-1".into(),
        },
    );
    check(
        "caption",
        Caption {
            session_id: SessionId::new("s-1").unwrap(),
            start_ms: 1200,
            end_ms: 2900,
            text: "hello world".into(),
        },
    );
    assert!(JobState::Cancelled.is_final() && !JobState::Processing.is_final());
}
