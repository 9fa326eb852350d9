//! `GET /api/v1/m365/app-package`: the Teams app package for this site,
//! for a system admin to upload in the Teams admin center.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::Client;
use crate::AppState;
use crate::audit::{self, Actor};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::m365::package::{self, PackageError};

pub async fn download(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
) -> Result<Response, AppError> {
    let actor = Actor {
        user_id: user.id(),
        username: &user.user.username,
        ip: &client.ip,
    };
    if !user.is_admin() {
        audit::record("m365_app_package", &actor, "denied", "");
        return Err(AppError::Forbidden(
            "only system admins download the Teams app package",
        ));
    }
    let c = &state.config.m365;
    let zip = match package::build(c) {
        Ok(z) => z,
        Err(PackageError::Disabled) => {
            return Err(AppError::refused(
                StatusCode::NOT_FOUND,
                "m365_disabled",
                "the Microsoft 365 integration is off ([m365] enabled = false)",
            ));
        }
        Err(e @ PackageError::Invalid(_)) => {
            return Err(AppError::refused(
                StatusCode::CONFLICT,
                "m365_package_invalid",
                e.to_string(),
            ));
        }
        Err(e) => return Err(AppError::internal(e)),
    };
    audit::record(
        "m365_app_package",
        &actor,
        "success",
        &format!(
            "app {} version {} manifest {}",
            c.app_id(),
            c.app.version,
            c.app.manifest_version
        ),
    );
    let disposition = format!("attachment; filename=\"{}\"", package::file_name(c));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).map_err(AppError::internal)?,
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        zip,
    )
        .into_response())
}
