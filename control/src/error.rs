//! [`AppError`]: every failure an HTTP handler can return, with a stable
//! JSON body `{"code": "...", "message": "..."}`. `code` is the contract
//! clients match on; `message` is for people. A 5xx never carries an
//! internal message: the detail is logged with an incident id, and only the
//! id is returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// Input that parsed but makes no sense; the message says what.
    #[error("{0}")]
    BadRequest(String),
    /// A body that is not the JSON expected; carries the parser's message.
    #[error("{0}")]
    InvalidJson(String),
    #[error("authentication required")]
    Unauthenticated,
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("missing or wrong CSRF token (send the X-CSRF-Token header from login)")]
    Csrf,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    /// A uniqueness rule; the code names it.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("the request body is larger than this server accepts")]
    PayloadTooLarge,
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    #[error("the account is locked after repeated failed logins; try again later")]
    Locked,
    #[error("too many requests; retry in {0} s")]
    RateLimited(u64),
    #[error("the server is not ready")]
    Unavailable,
    /// A refusal with its own stable code (sign-in refusals, mostly).
    #[error("{message}")]
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// Input refused for a reason with its own code (400).
    #[error("{1}")]
    Invalid(&'static str, String),
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    incident: Option<String>,
}

impl AppError {
    pub fn refused(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError::Refused {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) | AppError::InvalidJson(_) | AppError::Invalid(..) => {
                StatusCode::BAD_REQUEST
            }
            AppError::Unauthenticated | AppError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            AppError::Csrf | AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Locked => StatusCode::LOCKED,
            AppError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Refused { status, .. } => *status,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::InvalidJson(_) => "invalid_json",
            AppError::Unauthenticated => "unauthenticated",
            AppError::InvalidCredentials => "invalid_credentials",
            AppError::Csrf => "csrf_failed",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound => "not_found",
            AppError::Conflict(code) => code,
            AppError::PayloadTooLarge => "payload_too_large",
            AppError::UnsupportedMediaType => "unsupported_media_type",
            AppError::Locked => "account_locked",
            AppError::RateLimited(_) => "rate_limited",
            AppError::Unavailable => "unavailable",
            AppError::Refused { code, .. } => code,
            AppError::Internal(_) => "internal",
            AppError::Invalid(code, _) => code,
        }
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound => AppError::NotFound,
            DbError::Conflict(c) => AppError::Conflict(c),
            other => AppError::Internal(other.into()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (message, incident) = match &self {
            AppError::Internal(e) => {
                let incident = crate::db::new_id();
                tracing::error!(incident = %incident, error = format!("{e:#}"), "internal error");
                ("internal error".to_owned(), Some(incident))
            }
            AppError::Unavailable => {
                tracing::warn!("answered 503: not ready");
                (self.to_string(), None)
            }
            other => (other.to_string(), None),
        };
        let mut resp = (
            status,
            axum::Json(Body {
                code: self.code(),
                message,
                incident,
            }),
        )
            .into_response();
        if let AppError::RateLimited(secs) = self
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
