//! What an offloader job's bot does in its call, with its `enj_…`
//! credential (the extractor already holds it to this call's routes):
//! join receive-only, send live captions, hand back results.
//!
//! And what a host does to start and stop those jobs.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use signaling::call::JoinInfo;
use signaling::events::{FileInfo, Post, ServerMessage};
use signaling::jobs::{BotView, Caption, JobKind};

use super::auth::Client;
use super::json::{Json, created};
use crate::AppState;
use crate::auth::{AuthVia, CurrentUser};
use crate::bus::{Audience, Ephemeral};
use crate::calls::{jobs, join as calls_join};
use crate::db::call_jobs;
use crate::db::calls;
use crate::db::posts::{self, Created, Mentions, NewPost};
use crate::error::AppError;

/// The job behind a bot credential; anything else is refused.
fn job_of(user: &CurrentUser) -> Result<(&str, &str), AppError> {
    match &user.via {
        AuthVia::CallJob { job_id, call_id } => Ok((job_id, call_id)),
        _ => Err(AppError::Forbidden(
            "only an offloader job's bot may do this",
        )),
    }
}

/// `POST /calls/{id}/bot`: the job's bot joins the call, receive-only.
pub async fn join(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(call_id): Path<String>,
) -> Result<Json<JoinInfo>, AppError> {
    let (job_id, job_call) = job_of(&user)?;
    debug_assert_eq!(job_call, call_id, "the extractor scopes job credentials");
    if call_jobs::get(&state.db, job_id)
        .await?
        .stopped_at
        .is_some()
    {
        return Err(AppError::refused(
            StatusCode::CONFLICT,
            "job_stopped",
            "this job was stopped: its bot may not join again",
        ));
    }
    let call = jobs::running_call(&state, &call_id).await?;
    let info = calls_join::join_bot(&state, user.id(), &call).await?;
    call_jobs::set_session(&state.db, job_id, info.session_id.as_str()).await?;
    Ok(Json(info))
}

/// `GET /calls/{id}/bot`: the call as its bot sees it.
pub async fn view(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(call_id): Path<String>,
) -> Result<Json<BotView>, AppError> {
    let (job_id, _) = job_of(&user)?;
    let job = call_jobs::get(&state.db, job_id).await?;
    let max = state.config.calls.max_participants;
    let call = calls::info_of(&state.db, &call_id, max).await?;
    let session = match &job.session_id {
        Some(id) => calls::session(&state.db, id).await?,
        None => None,
    };
    let in_call = job.stopped_at.is_none()
        && call.ended_at.is_none()
        && session.as_ref().is_some_and(|s| s.live());
    let names = calls::participant_names(&state.db, &call_id).await?;
    Ok(Json(BotView {
        call,
        session_id: session.map(|s| s.participant.session_id),
        in_call,
        names,
    }))
}

/// `POST /calls/{id}/captions`: one caption, relayed to the call.
pub async fn caption(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(call_id): Path<String>,
    Json(c): Json<Caption>,
) -> Result<StatusCode, AppError> {
    job_of(&user)?;
    if c.text.trim().is_empty() || c.text.len() > 2000 || c.end_ms < c.start_ms {
        return Err(AppError::Invalid(
            "invalid_caption",
            "a caption has 1 to 2000 bytes of text and ends after it starts".into(),
        ));
    }
    let call = jobs::running_call(&state, &call_id).await?;
    let speaker = calls::session(&state.db, c.session_id.as_str())
        .await?
        .filter(|s| s.call_id == call.id && s.live() && !s.participant.bot)
        .ok_or_else(|| {
            AppError::Invalid(
                "unknown_speaker",
                format!("{} is no participant of this call", c.session_id),
            )
        })?;
    let msg = ServerMessage::CallCaption {
        call_id: call.id.clone(),
        session_id: c.session_id,
        user_id: speaker.participant.user_id,
        start_ms: c.start_ms,
        end_ms: c.end_ms,
        text: c.text,
    };
    state.bus.publish_ephemeral(Ephemeral {
        audience: Audience::Call {
            call_id: call.id.to_string(),
        },
        except_conn: None,
        kind: "call_caption".into(),
        message: serde_json::to_string(&msg).map_err(AppError::internal)?,
    });
    Ok(StatusCode::ACCEPTED)
}

#[derive(Serialize)]
pub struct HandedBack {
    pub post: Post,
    pub file_infos: Vec<FileInfo>,
}

/// `POST /calls/{id}/results` (multipart, parts named `files`): the job's
/// files, posted in the call's thread by the recorder. Each may be up to
/// `[calls] max_recording_bytes`, streamed to the store (multipart upload
/// on S3), never held whole.
pub async fn results(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(call_id): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, AppError> {
    let (job_id, _) = job_of(&user)?;
    let job = call_jobs::get(&state.db, job_id).await?;
    let call = calls::get(&state.db, &call_id).await?;
    let max = state.config.calls.max_recording_bytes;
    let files =
        super::files::store_upload(&state, &client, &user, &call.channel_id, multipart, max)
            .await?;
    let ids: Vec<String> = files.iter().map(|f| f.id.clone()).collect();
    let message = match job.kind.as_str() {
        "recording" => "Recording of the call",
        "transcription" => "Transcript of the call",
        _ => "Captions of the call",
    };
    let post = posts::create(
        &state.db,
        NewPost {
            channel_id: &call.channel_id,
            user_id: user.id(),
            root_id: Some(&call.post_id),
            message,
            file_ids: &ids,
            ..Default::default()
        },
        &Mentions::default(),
        state.clock.now_ms(),
    )
    .await?;
    let (Created::New(post) | Created::Existing(post)) = post;
    for f in files.iter().filter(|f| f.name.ends_with(".txt")) {
        transcript_posts(&state, user.id(), &call, &f.id).await?;
    }
    state.announce();
    state.metrics.posts_created.inc();
    Ok(created(HandedBack {
        post,
        file_infos: files,
    }))
}

/// The results route's body limit: a recording, its transcript and its
/// speaker tracks at their largest.
pub fn body_limit(state: &AppState) -> usize {
    usize::try_from(state.config.calls.max_recording_bytes.saturating_mul(4)).unwrap_or(usize::MAX)
}

/// Largest transcript put into posts (a longer one stays a file only).
const MAX_TRANSCRIPT_BYTES: u64 = 4 << 20;

/// Puts a transcript's text into the call's thread as posts (each within
/// the post size limit), so chat search finds what was said; its
/// `[hh:mm:ss] Name:` lines let a client open the recording at a hit.
async fn transcript_posts(
    state: &AppState,
    bot: &str,
    call: &calls::CallRow,
    file_id: &str,
) -> Result<(), AppError> {
    let row = crate::db::files::get(&state.db, file_id).await?;
    let key = crate::storage::ObjectKey::new(row.storage_key).map_err(AppError::internal)?;
    let obj = state
        .store
        .get(&key, None)
        .await
        .map_err(AppError::internal)?;
    if obj.meta.size > MAX_TRANSCRIPT_BYTES {
        return Ok(());
    }
    let bytes = crate::storage::collect(obj.body, MAX_TRANSCRIPT_BYTES)
        .await
        .map_err(AppError::internal)?;
    let text = String::from_utf8_lossy(&bytes);
    let max = state
        .config
        .limits
        .max_post_chars
        .saturating_sub(64)
        .max(64);
    let mut parts: Vec<String> = vec![String::new()];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let line: String = line.chars().take(max).collect();
        let full = parts.last().is_some_and(|last| {
            !last.is_empty() && last.chars().count() + line.chars().count() + 1 > max
        });
        if full {
            parts.push(String::new());
        }
        let last = parts.last_mut().expect("one part at least");
        if !last.is_empty() {
            last.push('\n');
        }
        last.push_str(&line);
    }
    parts.retain(|p| !p.is_empty());
    let n = parts.len();
    for (i, body) in parts.into_iter().enumerate() {
        let head = if n > 1 {
            format!("Transcript ({}/{n})", i + 1)
        } else {
            "Transcript".to_owned()
        };
        let message = format!("{head}\n{body}");
        posts::create(
            &state.db,
            NewPost {
                channel_id: &call.channel_id,
                user_id: bot,
                root_id: Some(&call.post_id),
                message: &message,
                ..Default::default()
            },
            &Mentions::default(),
            state.clock.now_ms(),
        )
        .await?;
    }
    Ok(())
}

/// `POST /calls/{id}/jobs` (a host): what to run; `{}` records.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartJob {
    /// `recording` (default), `transcription` or `captions`, with their
    /// options as in the offloader's job spec.
    #[serde(default)]
    pub job: Option<JobKind>,
}

#[derive(Serialize)]
pub struct JobStarted {
    pub id: String,
    pub kind: String,
    pub offloader_job: Option<String>,
}

/// `POST /calls/{id}/jobs`: a host starts a recording, a transcription
/// or captions.
pub async fn start(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(call_id): Path<String>,
    Json(body): Json<StartJob>,
) -> Result<Response, AppError> {
    let call = super::calls::hosted_call(&state, &user, &call_id).await?;
    let kind = body.job.unwrap_or(JobKind::Recording {
        format: Default::default(),
        profile: Default::default(),
        speaker_tracks: false,
        transcribe: false,
        language: None,
    });
    let job = jobs::start(&state, &call, user.id(), kind).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(JobStarted {
            id: job.id,
            kind: job.kind,
            offloader_job: job.offloader_job,
        }),
    )
        .into_response())
}

/// `POST /calls/{id}/jobs/{kind}/stop`: a host stops one; its bot leaves
/// and hands back what it captured.
pub async fn stop(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((call_id, kind)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    let call = super::calls::hosted_call(&state, &user, &call_id).await?;
    jobs::stop(&state, &call.id, &kind).await?;
    Ok(StatusCode::NO_CONTENT)
}
