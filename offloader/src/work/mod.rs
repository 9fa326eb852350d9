//! What a job does: its bot captures the call, then the capture becomes
//! the files the job asked for (a recording, a transcript), handed back to
//! control, which posts them in the call's thread.
//!
//! A capture survives the attempt that made it: an attempt after a crash
//! or a transient failure continues the same capture log, so the result
//! holds the media from before and after, with a gap of the downtime.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use signaling::jobs::{
    JobError, JobKind, JobResult, JobSpec, JobState, RecordingFormat, ResultKind,
};

mod config;

pub use config::WorkConfig;

use crate::bot::{self, BotError, ControlClient};
use crate::record::{self, ComposeOptions, read_capture};
use futures_util::future::BoxFuture;

use crate::service::{JobContext, RunError, Runner, job_error};
use crate::transcribe::{self, Engine, SpeakerAudio};

/// The offloader's own work, as the job service runs it.
pub struct CallWork {
    /// The address the bots' media sockets bind, which rtcd must reach.
    pub media_ip: IpAddr,
    /// A whisper.cpp model; transcripts are refused without one.
    pub model: Option<PathBuf>,
    /// Whisper threads per transcription.
    pub threads: usize,
    /// Kept for the time processing takes after capture.
    pub processing: Duration,
}

fn from_bot(e: BotError) -> RunError {
    match e {
        BotError::CallGone(m) => RunError::Permanent(job_error("unknown_call", m)),
        BotError::Refused(m) => RunError::Permanent(job_error("control_refused", m)),
        e if e.transient() => RunError::Transient(job_error("capture_failed", e.to_string())),
        e => RunError::Permanent(job_error("capture_failed", e.to_string())),
    }
}

impl Runner for CallWork {
    fn validate<'a>(&'a self, spec: &'a JobSpec) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let wants_model = match &spec.job {
                JobKind::Recording { transcribe, .. } => *transcribe,
                JobKind::Transcription { .. } | JobKind::Captions { .. } => true,
            };
            if wants_model && self.model.is_none() {
                return Err(job_error(
                    "no_model",
                    "this offloader has no Whisper model configured (model = …)",
                ));
            }
            let client = ControlClient::new(&spec.control)
                .map_err(|e| job_error("invalid_spec", e.to_string()))?;
            match client.view(&spec.call_id).await {
                Ok(v) if v.call.ended_at.is_none() => Ok(()),
                Ok(_) => Err(job_error(
                    "unknown_call",
                    format!("call {} has ended", spec.call_id),
                )),
                Err(BotError::CallGone(m)) => Err(job_error(
                    "unknown_call",
                    format!("control knows no running call {}: {m}", spec.call_id),
                )),
                Err(BotError::Refused(m)) => Err(job_error("control_refused", m)),
                Err(e) => Err(job_error("control_unreachable", e.to_string())),
            }
        })
    }

    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<Vec<JobResult>, RunError>> {
        let ip = self.media_ip;
        let model = self.model.clone();
        let threads = self.threads;
        let processing = self.processing;
        Box::pin(async move {
            let capture_dir = ctx.work_dir.join("capture");
            ctx.progress.set_state(JobState::Running);
            ctx.log.line(format!(
                "attempt {}: joining call {}",
                ctx.attempt, ctx.spec.call_id
            ));
            let limit = ctx
                .deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .saturating_sub(processing);
            let live = match &ctx.spec.job {
                JobKind::Captions { language } => {
                    let model = model.clone().ok_or_else(|| {
                        RunError::Permanent(job_error("no_model", "no Whisper model configured"))
                    })?;
                    let loaded = tokio::task::spawn_blocking(move || Engine::load(&model, threads))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()))
                        .map_err(|m| RunError::Permanent(job_error("captions_failed", m)))?;
                    Some(bot::LiveSetup {
                        engine: Arc::new(loaded),
                        language: language.clone(),
                    })
                }
                _ => None,
            };
            let captured =
                bot::capture(&ctx.spec, &capture_dir, ip, ctx.cancel.clone(), limit, live).await;
            // Stopping the offloader: leave the capture for the next attempt.
            if ctx.shutdown.is_cancelled() {
                return Err(RunError::Transient(job_error(
                    "shutdown",
                    "the offloader stopped; the job resumes when it is back",
                )));
            }
            match captured {
                Ok(c) => ctx.log.line(format!(
                    "capture ended ({}): {} frames, {} live captions this attempt",
                    c.ended_by, c.frames, c.captions
                )),
                Err(e) => {
                    ctx.log.line(format!("capture failed: {e}"));
                    return Err(from_bot(e));
                }
            }
            ctx.progress.set_state(JobState::Processing);
            let spec = ctx.spec.clone();
            let out_dir = ctx.work_dir.join("out");
            let dir = capture_dir.clone();
            let made = tokio::task::spawn_blocking(move || {
                produce(&spec, &dir, &out_dir, model.as_deref(), threads)
            })
            .await
            .map_err(|e| RunError::Permanent(job_error("processing_failed", e.to_string())))??;
            for r in &made.results {
                ctx.log.line(format!("made {} ({} bytes)", r.name, r.bytes));
            }
            ctx.progress.set_captured_ms(made.captured_ms);
            if made.files.is_empty() {
                return Ok(made.results);
            }
            let client = ControlClient::new(&ctx.spec.control).map_err(from_bot)?;
            let paths: Vec<&Path> = made.files.iter().map(PathBuf::as_path).collect();
            client
                .hand_back(&ctx.spec.call_id, &paths)
                .await
                .map_err(|e| match e {
                    e if e.transient() => {
                        RunError::Transient(job_error("hand_back_failed", e.to_string()))
                    }
                    e => RunError::Permanent(job_error("hand_back_failed", e.to_string())),
                })?;
            ctx.log.line("handed back to control");
            Ok(made.results)
        })
    }
}

struct Made {
    files: Vec<PathBuf>,
    results: Vec<JobResult>,
    captured_ms: u64,
}

fn failed(code: &str) -> impl Fn(String) -> RunError + '_ {
    move |m| RunError::Permanent(job_error(code, m))
}

/// The job's files from its capture (blocking: decoding, encoding,
/// transcribing).
fn produce(
    spec: &JobSpec,
    capture_dir: &Path,
    out: &Path,
    model: Option<&Path>,
    threads: usize,
) -> Result<Made, RunError> {
    std::fs::create_dir_all(out).map_err(|e| failed("processing_failed")(e.to_string()))?;
    let capture =
        read_capture(capture_dir).map_err(|e| failed("capture_unreadable")(e.to_string()))?;
    let mut made = Made {
        files: Vec::new(),
        results: Vec::new(),
        captured_ms: 0,
    };
    let base = format!("call-{}", spec.call_id);
    let (transcribe, language) = match &spec.job {
        JobKind::Recording {
            format,
            transcribe,
            language,
            profile,
            speaker_tracks,
        } => {
            let (path, content_type, duration_us) = match format {
                RecordingFormat::Audio => {
                    let path = out.join(format!("{base}.ogg"));
                    let r = record::write_audio_only(&capture, &path)
                        .map_err(|e| failed("recording_failed")(e.to_string()))?;
                    (path, "audio/ogg", r.duration_us)
                }
                RecordingFormat::Webm | RecordingFormat::Mp4 => {
                    let (ext, content_type) = if *format == RecordingFormat::Mp4 {
                        ("mp4", "video/mp4")
                    } else {
                        ("webm", "video/webm")
                    };
                    let path = out.join(format!("{base}.{ext}"));
                    let opts = ComposeOptions {
                        format: *format,
                        profile: *profile,
                        speaker_tracks: *speaker_tracks,
                    };
                    let r = record::compose(&capture, &path, &opts)
                        .map_err(|e| failed("recording_failed")(e.to_string()))?;
                    (path, content_type, r.duration_us)
                }
            };
            made.captured_ms = (duration_us.max(0) / 1000) as u64;
            let ms = Some(made.captured_ms);
            push(&mut made, path, ResultKind::Recording, content_type, ms)?;
            (*transcribe, language.clone())
        }
        JobKind::Transcription { language } => (true, language.clone()),
        // Captions went out live; there is nothing to hand back.
        JobKind::Captions { .. } => (false, None),
    };
    if transcribe {
        let model =
            model.ok_or_else(|| failed("no_model")("no Whisper model configured".into()))?;
        let engine = Engine::load(model, threads)
            .map_err(|e| failed("transcription_failed")(e.to_string()))?;
        let speakers = record::speaker_pcm16k(&capture)
            .map_err(|e| failed("transcription_failed")(e.to_string()))?;
        let t0 = speakers.iter().map(|s| s.start_us).min().unwrap_or(0);
        let audio: Vec<SpeakerAudio> = speakers
            .into_iter()
            .map(|s| SpeakerAudio {
                start_ms: (s.start_us - t0) / 1000,
                speaker: s.speaker,
                pcm16k: s.pcm16k,
            })
            .collect();
        let cues = transcribe::transcribe_call(&engine, &audio, language.as_deref())
            .map_err(|e| failed("transcription_failed")(e.to_string()))?;
        let vtt = out.join(format!("{base}.vtt"));
        let txt = out.join(format!("{base}.txt"));
        write(&vtt, &transcribe::webvtt(&cues))?;
        write(&txt, &transcribe::plain_text(&cues))?;
        push(&mut made, vtt, ResultKind::TranscriptVtt, "text/vtt", None)?;
        push(
            &mut made,
            txt,
            ResultKind::TranscriptText,
            "text/plain",
            None,
        )?;
    }
    Ok(made)
}

fn write(path: &Path, text: &str) -> Result<(), RunError> {
    std::fs::write(path, text)
        .map_err(|e| failed("processing_failed")(format!("{}: {e}", path.display())))
}

fn push(
    made: &mut Made,
    path: PathBuf,
    kind: ResultKind,
    content_type: &str,
    duration_ms: Option<u64>,
) -> Result<(), RunError> {
    let bytes = std::fs::metadata(&path)
        .map_err(|e| failed("processing_failed")(e.to_string()))?
        .len();
    made.results.push(JobResult {
        kind,
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        content_type: content_type.into(),
        bytes,
        duration_ms,
        file_id: None,
    });
    made.files.push(path);
    Ok(())
}

/// Shared so the service and tests build it the same way.
pub fn runner(media_ip: IpAddr, model: Option<PathBuf>, threads: usize) -> Arc<CallWork> {
    Arc::new(CallWork {
        media_ip,
        model,
        threads,
        processing: Duration::from_secs(30 * 60),
    })
}
