//! Recordings, transcripts and live captions of calls: control asks the
//! offloader (`[calls] offloader_url`) to run a job for a call. The job's
//! bot joins through control like any client, receive-only, with an
//! `enj_…` credential good for that one call. Stopping a job takes its bot
//! out of the call, which is the bot's signal to finish and hand back.

use axum::http::StatusCode;
use signaling::call::LeaveReason;
use signaling::ids::CallId;
use signaling::jobs::{ControlAccess, JobError, JobInfo, JobKind, JobSpec};

use crate::AppState;
use crate::auth::JOB_TOKEN_PREFIX;
use crate::auth::tokens::{hash_secret, random_secret};
use crate::db::call_jobs::{self, CallJob};
use crate::db::calls::{self, CallRow};
use crate::db::{DbError, new_id};
use crate::error::AppError;
use crate::oidc::http::HttpClient;

/// The name a job kind is stored and addressed under.
pub fn kind_name(kind: &JobKind) -> &'static str {
    match kind {
        JobKind::Recording { .. } => "recording",
        JobKind::Transcription { .. } => "transcription",
        JobKind::Captions { .. } => "captions",
    }
}

fn unavailable(message: String) -> AppError {
    AppError::refused(StatusCode::BAD_GATEWAY, "offloader_unavailable", message)
}

/// Starts a job of `kind` for the running call. Refused when calls cannot
/// be recorded here, when one of that kind already runs, or when the
/// offloader refuses (its code is passed on).
pub async fn start(
    state: &AppState,
    call: &CallRow,
    by: &str,
    kind: JobKind,
) -> Result<CallJob, AppError> {
    let cfg = &state.config.calls;
    let offloader = cfg.offloader_url.trim_end_matches('/');
    if offloader.is_empty() {
        return Err(AppError::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "recording_unavailable",
            "no offloader is configured ([calls] offloader_url): calls cannot be recorded here",
        ));
    }
    let token = random_secret(JOB_TOKEN_PREFIX);
    let job = CallJob {
        id: new_id(),
        call_id: call.id.to_string(),
        kind: kind_name(&kind).to_owned(),
        started_by: by.to_owned(),
        created_at: state.clock.now_ms(),
        offloader_job: None,
        session_id: None,
        stopped_at: None,
    };
    call_jobs::create(&state.db, &job, &hash_secret(&token))
        .await
        .map_err(|e| match e {
            DbError::Conflict(code) => AppError::refused(
                StatusCode::CONFLICT,
                code,
                format!("a {} already runs for this call", job.kind),
            ),
            e => e.into(),
        })?;
    let spec = JobSpec {
        call_id: call.id.clone(),
        control: ControlAccess {
            url: bot_url(state),
            token,
        },
        job: kind,
        max_duration_secs: None,
    };
    match submit(offloader, &cfg.offloader_api_key, &spec).await {
        Ok(info) => {
            call_jobs::set_offloader_job(&state.db, &job.id, info.id.as_str()).await?;
            Ok(CallJob {
                offloader_job: Some(info.id.to_string()),
                ..job
            })
        }
        Err(e) => {
            call_jobs::stop(&state.db, &job.id, state.clock.now_ms()).await?;
            Err(e)
        }
    }
}

/// Where the offloader's bots reach this node.
fn bot_url(state: &AppState) -> String {
    let configured = state.config.calls.bot_url.trim_end_matches('/');
    if configured.is_empty() {
        format!("http://{}", state.config.server.listen)
    } else {
        configured.to_owned()
    }
}

async fn submit(offloader: &str, key: &str, spec: &JobSpec) -> Result<JobInfo, AppError> {
    let client = HttpClient::new().map_err(|e| unavailable(e.to_string()))?;
    let body = serde_json::to_vec(spec).map_err(AppError::internal)?;
    let req = axum::http::Request::post(format!("{offloader}/v1/jobs"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(body)
        .map_err(AppError::internal)?;
    let resp = client
        .send(req)
        .await
        .map_err(|e| unavailable(format!("the offloader cannot be reached: {e}")))?;
    let status = resp.status();
    if status.is_success() {
        return serde_json::from_slice(resp.body())
            .map_err(|e| unavailable(format!("the offloader answered something else: {e}")));
    }
    match serde_json::from_slice::<JobError>(resp.body()) {
        // The offloader's own refusal (an unknown call, a full queue) is
        // the caller's answer; its authentication failing is ours.
        Ok(e) if status.is_client_error() && status != StatusCode::UNAUTHORIZED => {
            Err(AppError::refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "offloader_refused",
                format!("{}: {}", e.code, e.message),
            ))
        }
        Ok(e) => Err(unavailable(format!("{status}: {}: {}", e.code, e.message))),
        Err(_) => Err(unavailable(format!("the offloader answered {status}"))),
    }
}

/// Stops the call's running job of `kind`: its bot leaves the call, and
/// finishes with what it captured.
pub async fn stop(state: &AppState, call_id: &CallId, kind: &str) -> Result<(), AppError> {
    let running = call_jobs::running(&state.db, call_id.as_str()).await?;
    let Some(job) = running.into_iter().find(|j| j.kind == kind) else {
        return Err(AppError::refused(
            StatusCode::CONFLICT,
            "not_running",
            format!("no {kind} runs for this call"),
        ));
    };
    stop_job(state, &job).await
}

async fn stop_job(state: &AppState, job: &CallJob) -> Result<(), AppError> {
    call_jobs::stop(&state.db, &job.id, state.clock.now_ms()).await?;
    let Some(session) = &job.session_id else {
        return Ok(());
    };
    let now = state.clock.now_ms();
    match calls::leave(&state.db, &job.call_id, session, LeaveReason::Left, now).await {
        Ok(left) => {
            state.announce();
            super::join::end_on_node(state, &left);
            Ok(())
        }
        // Already out: it left, or the call ended.
        Err(DbError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The call ended: its jobs stop (their bots' sessions closed with it).
pub async fn call_ended(state: AppState, call_id: CallId) {
    match call_jobs::running(&state.db, call_id.as_str()).await {
        Ok(jobs) => {
            for j in jobs {
                if let Err(e) = call_jobs::stop(&state.db, &j.id, state.clock.now_ms()).await {
                    tracing::warn!(error = %e, job = %j.id, "stopping a job of an ended call");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, call = %call_id, "jobs of an ended call"),
    }
}

/// The call a job credential is for, if it still runs.
pub async fn running_call(state: &AppState, call_id: &str) -> Result<CallRow, AppError> {
    let call = calls::get(&state.db, call_id).await?;
    if call.ended_at.is_some() {
        return Err(AppError::refused(
            StatusCode::CONFLICT,
            "call_ended",
            "the call has ended",
        ));
    }
    Ok(call)
}
