//! The web client (`control/web/`), compiled into the binary so a node
//! serves it with no files beside it: the page at `/`, its modules and
//! styles at `/app/{file}`, vendored libraries at `/app/vendor/{file}`.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles
//! and connections only from this origin), `nosniff`, and an ETag so
//! browsers revalidate cheaply (`no-cache`: a new binary's files are
//! picked up on the next load without versioned names). No page may be
//! framed (`frame-ancestors 'none'`, `X-Frame-Options: DENY`) except the
//! Microsoft 365 tab's, whose hosts [`crate::m365::tab`] names.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::AppError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $ty:expr) => {
        Asset {
            name: $name,
            content_type: $ty,
            body: include_bytes!(concat!("../web/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// The page and what it loads. A file added to `control/web/` is served
/// once it is listed here.
static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("socket.js", JS),
    asset!("login.js", JS),
    asset!("sidebar.js", JS),
    asset!("posts.js", JS),
    asset!("channels.js", JS),
    asset!("dialog.js", JS),
    asset!("people.js", JS),
    asset!("mention.js", JS),
    asset!("call.js", JS),
    asset!("callview.js", JS),
    asset!("media.js", JS),
    asset!("captions.js", JS),
    asset!("review.js", JS),
    asset!("vtt.js", JS),
    asset!("m365.html", HTML),
    asset!("m365.js", JS),
    asset!("vendor/MicrosoftTeams.min.js", JS),
];

/// Pages served at a route of their own, never under `/app/`: one URL per
/// file keeps caches simple.
const PAGES: [&str; 2] = ["index.html", "m365.html"];

/// Who may show a page in a frame.
#[derive(Debug, Clone, Copy)]
pub enum Framing<'a> {
    Nobody,
    /// These sources (`https://*.cloud.microsoft`, `http://127.0.0.1:9`),
    /// checked by the caller: they go into the policy as they are.
    Hosts(&'a [String]),
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// A strong validator per file, computed once: the bytes never change
/// while the process runs.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, a.body);
                format!("\"{}\"", hex::encode(&digest.as_ref()[..12]))
            })
            .collect()
    });
    let i = ASSETS
        .iter()
        .position(|a| std::ptr::eq(a, asset))
        .expect("assets come from ASSETS");
    &tags[i]
}

/// `Host` as sent, if it is a plain host\[:port\]: it is echoed into the
/// policy, where a `;` or a space would smuggle in a directive.
fn plain_host(headers: &HeaderMap) -> Option<&str> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    ok.then_some(host)
}

/// `'self'` covers ws(s) of this origin only in newer browsers; naming the
/// socket's origin keeps older ones (and embedded webviews) working.
fn content_security_policy(headers: &HeaderMap, framing: Framing) -> String {
    let sockets = plain_host(headers)
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    let ancestors = match framing {
        Framing::Hosts(hosts) if !hosts.is_empty() => hosts.join(" "),
        _ => "'none'".to_owned(),
    };
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; \
         connect-src 'self'{sockets}; media-src 'self' blob:; img-src 'self' blob: data:; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
    )
}

fn serve(asset: &'static Asset, headers: &HeaderMap, framing: Framing) -> Response {
    let tag = etag(asset);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_static(tag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // XFO knows no list of hosts: a page that some may frame goes without
    // it, and browsers follow `frame-ancestors` instead.
    if !matches!(framing, Framing::Hosts(h) if !h.is_empty()) {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if let Ok(v) = HeaderValue::from_str(&content_security_policy(headers, framing)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// A page (one of [`PAGES`]) that the given hosts may frame.
pub fn page(name: &str, headers: &HeaderMap, framing: Framing) -> Response {
    debug_assert!(PAGES.contains(&name), "{name} is not a page");
    match find(name) {
        Some(a) => serve(a, headers, framing),
        None => AppError::NotFound.into_response(),
    }
}

/// `GET /`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    page("index.html", &headers, Framing::Nobody)
}

/// `GET /app/{file}`: one of the page's files.
pub async fn file(Path(name): Path<String>, headers: HeaderMap) -> Result<Response, AppError> {
    match find(&name).filter(|a| !PAGES.contains(&a.name)) {
        Some(a) => Ok(serve(a, &headers, Framing::Nobody)),
        None => Err(AppError::NotFound),
    }
}

/// `GET /app/vendor/{file}`: a library kept as published (see
/// `control/web/vendor/README.md`).
pub async fn vendor(Path(name): Path<String>, headers: HeaderMap) -> Result<Response, AppError> {
    match find(&format!("vendor/{name}")) {
        Some(a) => Ok(serve(a, &headers, Framing::Nobody)),
        None => Err(AppError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_with_directive_is_not_echoed() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a.example:8065"));
        assert!(
            content_security_policy(&h, Framing::Nobody)
                .contains("ws://a.example:8065 wss://a.example:8065;")
        );
        h.insert(header::HOST, HeaderValue::from_static("x; script-src *"));
        let csp = content_security_policy(&h, Framing::Nobody);
        assert!(!csp.contains("script-src *"), "{csp}");
        assert!(csp.contains("connect-src 'self';"), "{csp}");
    }

    #[test]
    fn an_empty_host_list_frames_nothing() {
        let csp = content_security_policy(&HeaderMap::new(), Framing::Hosts(&[]));
        assert!(csp.ends_with("frame-ancestors 'none'"), "{csp}");
    }

    #[test]
    fn every_asset_has_a_distinct_tag() {
        let mut tags: Vec<_> = ASSETS.iter().map(etag).collect();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
    }
}
