//! [`ApiError`]: every refusal of the job API, as a [`JobError`] body with a
//! stable `code`. A 5xx never carries an internal message: the detail is
//! logged and the body says only that something went wrong.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use signaling::jobs::{JobError, JobState};

use super::metrics::state_name;
use super::queue::{CancelError, CreateError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("send Authorization: Bearer <the offloader's API key>")]
    Unauthorized,
    /// The body is not a job spec; carries the parser's message.
    #[error("{0}")]
    InvalidSpec(String),
    #[error("send the job spec as application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than this offloader accepts")]
    PayloadTooLarge,
    #[error("{0}")]
    InvalidQuery(String),
    #[error("no such job")]
    NotFound,
    #[error("the job has {} already", state_name(*.0))]
    AlreadyFinished(JobState),
    #[error("{0} jobs are waiting already; try again later")]
    QueueFull(usize),
    #[error("the offloader is stopping")]
    Stopping,
    /// The runner refused the spec (e.g. `unknown_call`).
    #[error("{}", .0.message)]
    Rejected(JobError),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::InvalidSpec(_) | ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::AlreadyFinished(_) => StatusCode::CONFLICT,
            ApiError::QueueFull(_) | ApiError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::InvalidSpec(_) => "invalid_spec",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::NotFound => "not_found",
            ApiError::AlreadyFinished(_) => "already_finished",
            ApiError::QueueFull(_) => "queue_full",
            ApiError::Stopping => "stopping",
            ApiError::Rejected(e) => &e.code,
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(detail, "job API internal error");
        }
        let body = JobError {
            code: self.code().to_string(),
            message: self.to_string(),
        };
        let mut resp = (self.status(), Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
            _ => ApiError::InvalidSpec(r.body_text()),
        }
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::QueueFull(n) => ApiError::QueueFull(n),
            CreateError::Stopping => ApiError::Stopping,
            CreateError::Io(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(e: CancelError) -> Self {
        match e {
            CancelError::NotFound => ApiError::NotFound,
            CancelError::AlreadyFinished(s) => ApiError::AlreadyFinished(s),
        }
    }
}
