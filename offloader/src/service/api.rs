//! The job API: `/v1/jobs…` behind a bearer key, `/healthz` and
//! `/metrics` open (they carry counts, never specs).

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use signaling::ids::JobId;
use signaling::jobs::{JobList, JobSpec, JobState};
use subtle::ConstantTimeEq as _;

use super::error::ApiError;
use super::queue::Scheduler;

/// A spec is a few hundred bytes; this leaves room and no more.
const MAX_BODY_BYTES: usize = 64 << 10;

pub(crate) struct ApiState {
    pub sched: Arc<Scheduler>,
    pub api_key: String,
}

pub(crate) fn router(state: Arc<ApiState>) -> Router {
    let v1 = Router::new()
        .route("/v1/jobs", post(create).get(list))
        .route("/v1/jobs/{id}", get(show))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/logs", get(logs))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(v1)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn authenticate(
    State(st): State<Arc<ApiState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // ct_eq answers early only on a length mismatch, which tells an
    // attacker the key's length and nothing of its bytes.
    if !bool::from(given.as_bytes().ct_eq(st.api_key.as_bytes())) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(req).await)
}

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    // A string that cannot be an id names no job.
    JobId::new(raw).map_err(|_| ApiError::NotFound)
}

async fn create(
    State(st): State<Arc<ApiState>>,
    body: Result<Json<JobSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(spec) = body?;
    st.sched
        .runner
        .validate(&spec)
        .await
        .map_err(ApiError::Rejected)?;
    let info = st.sched.create(spec)?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<JobState>,
}

async fn list(
    State(st): State<Arc<ApiState>>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    Ok(Json(JobList {
        jobs: st.sched.list(q.state),
    }))
}

async fn show(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let info = st.sched.get(&job_id(&id)?).ok_or(ApiError::NotFound)?;
    Ok(Json(info).into_response())
}

async fn cancel(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let info = st.sched.cancel(&job_id(&id)?)?;
    Ok(Json(info).into_response())
}

async fn logs(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let bytes = st
        .sched
        .log(&job_id(&id)?)
        .ok_or(ApiError::NotFound)?
        .map_err(|e| ApiError::Internal(format!("job log does not read: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response())
}

async fn metrics(State(st): State<Arc<ApiState>>) -> Response {
    let text = st.sched.metrics.render(st.sched.snapshot());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
