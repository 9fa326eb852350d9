//! The Teams tab: the page Teams, Outlook and the Microsoft 365 app frame
//! (`GET /m365/tab`), the web client as the tab opens it (`GET /m365/app`)
//! and what the page reads first (`GET /api/v1/m365/tab-config`).
//!
//! One list of host origins serves two checks: the browser's, through
//! `frame-ancestors` (who may frame the pages), and TeamsJS's, through
//! `app.initialize(validOrigins)` (whose messages the page believes).
//! Everything here answers 404 unless `[m365] enabled`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;

use super::M365Config;
use crate::AppState;
use crate::error::AppError;
use crate::web::{self, Framing};

/// The web client as the tab opens it.
pub const APP_PATH: &str = "/m365/app";

/// The origins that may host the tab: the selected cloud's Teams, Outlook
/// and Microsoft 365 hosts (https only, as Microsoft serves them), then
/// `extra_host_origins` as configured.
pub fn host_origins(m365: &M365Config) -> Vec<String> {
    m365.cloud
        .hosts()
        .frame_ancestors
        .iter()
        .map(|h| format!("https://{h}"))
        .chain(m365.extra_host_origins.iter().cloned())
        .collect()
}

fn enabled(state: &AppState) -> Result<&M365Config, AppError> {
    let m365 = &state.config.m365;
    if m365.enabled {
        Ok(m365)
    } else {
        Err(AppError::NotFound)
    }
}

/// `GET /m365/tab`: the tab page (`control/web/m365.html`).
pub async fn page(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    let origins = host_origins(enabled(&state)?);
    Ok(web::page("m365.html", &headers, Framing::Hosts(&origins)))
}

/// `GET /m365/app`: the web client, framed by the same hosts once the tab
/// has signed in.
pub async fn app(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    let origins = host_origins(enabled(&state)?);
    Ok(web::page("index.html", &headers, Framing::Hosts(&origins)))
}

#[derive(Debug, Serialize)]
pub struct TabConfig {
    /// The Entra app's client id.
    pub client_id: String,
    /// For TeamsJS `app.initialize`: the hosts whose messages count.
    pub valid_origins: Vec<String>,
    /// Where the web client lives inside the tab.
    pub app_path: &'static str,
}

/// `GET /api/v1/m365/tab-config`: public, as the page needs it before
/// anyone has signed in; it holds nothing the app package does not.
pub async fn config(State(state): State<AppState>) -> Result<Json<TabConfig>, AppError> {
    let m365 = enabled(&state)?;
    Ok(Json(TabConfig {
        client_id: m365.client_id.clone(),
        valid_origins: host_origins(m365),
        app_path: APP_PATH,
    }))
}
