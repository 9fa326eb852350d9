//! `GET /api/v1/openapi.json`: the API's OpenAPI 3.1 document.
//!
//! The document is checked in (`control/openapi.json`) and embedded at
//! build time rather than derived from annotations: it costs no proc-macro
//! build time and reads as one reviewable file. Drift is caught by
//! `tests/openapi.rs`, which fails when a route of the router is missing
//! from the document, the document names a route or method that does not
//! exist, a schema is not valid JSON Schema, or a real response does not
//! match its documented schema.

use axum::http::header;
use axum::response::IntoResponse;

pub const DOCUMENT: &str = include_str!("../../openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
