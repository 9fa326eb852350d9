//! The web client (`control/web/`), compiled into the binary so a node
//! serves it with no files beside it: the page at `/`, its modules and
//! styles at `/app/{file}`.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles
//! and connections only from this origin; no framing), `nosniff`, and an
//! ETag so browsers revalidate cheaply (`no-cache`: a new binary's files
//! are picked up on the next load without versioned names).

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

/// The page and what it loads. A file added to `control/web/` is served
/// once it is listed here.
static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("socket.js", JS),
    asset!("login.js", JS),
    asset!("sidebar.js", JS),
    asset!("posts.js", JS),
    asset!("call.js", JS),
    asset!("callview.js", JS),
    asset!("media.js", JS),
    asset!("captions.js", JS),
    asset!("review.js", JS),
    asset!("vtt.js", JS),
];

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
fn content_security_policy(headers: &HeaderMap) -> String {
    let sockets = plain_host(headers)
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; \
         connect-src 'self'{sockets}; media-src 'self' blob:; img-src 'self' blob: data:; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

fn serve(asset: &'static Asset, headers: &HeaderMap) -> Response {
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
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(&content_security_policy(headers)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// `GET /`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve(find("index.html").expect("index.html is listed"), &headers)
}

/// `GET /app/{file}`: one of the page's files.
pub async fn file(Path(name): Path<String>, headers: HeaderMap) -> Result<Response, AppError> {
    // The page itself lives at `/`; one URL per file keeps caches simple.
    match find(&name).filter(|a| a.name != "index.html") {
        Some(a) => Ok(serve(a, &headers)),
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
        assert!(content_security_policy(&h).contains("ws://a.example:8065 wss://a.example:8065;"));
        h.insert(header::HOST, HeaderValue::from_static("x; script-src *"));
        let csp = content_security_policy(&h);
        assert!(!csp.contains("script-src *"), "{csp}");
        assert!(csp.contains("connect-src 'self';"), "{csp}");
    }

    #[test]
    fn every_asset_has_a_distinct_tag() {
        let mut tags: Vec<_> = ASSETS.iter().map(etag).collect();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
    }
}
