//! WHIP (RFC 9725) ingest and WHEP egress over HTTP.
//!
//! POST an SDP offer to `/whip/{call}` (publish) or `/whep/{call}` (play,
//! optionally `?publisher=<session>`) with `Authorization: Bearer <token>`;
//! the answer comes back with `201 Created` and a `Location` for the
//! session. PATCH that resource with `application/trickle-ice-sdpfrag` to
//! trickle candidates, DELETE it to leave. Offers without candidates work:
//! rtcd is ICE-lite and learns the client's address from its checks.

// Handlers return a ready `Response` as their error; it is built once per
// refused request, never on a hot path, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rtcd_core::{CoreError, WhepRequest, WhipAnswer};
use serde::Deserialize;
use signaling::media::IceCandidate;
use signaling::{CallId, SessionId};
use tokio::sync::oneshot;

use crate::auth::{Role, bearer, verify_token};
use crate::node::Node;
use crate::worker::WorkerMsg;

const WORKER_REPLY_TIMEOUT: Duration = Duration::from_secs(5);
pub const SDP: &str = "application/sdp";
pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

fn plain(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into() + "\n",
    )
        .into_response()
}

fn core_error(e: CoreError) -> Response {
    let status = match e {
        CoreError::BadSdp(_) | CoreError::BadCandidate(_) => StatusCode::BAD_REQUEST,
        CoreError::UnknownCall(_) | CoreError::UnknownSession(_) => StatusCode::NOT_FOUND,
        CoreError::Conflict(_) => StatusCode::CONFLICT,
        CoreError::Limit(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    plain(status, e.to_string())
}

fn authorize(node: &Node, headers: &HeaderMap, call: &CallId, role: Role) -> Result<(), Response> {
    let token = bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok()),
    );
    match token.and_then(|t| verify_token(&node.config.api.token_secret, t, call, role)) {
        Ok(()) => Ok(()),
        Err(e) => {
            node.rejections
                .unauthenticated
                .fetch_add(1, Ordering::Relaxed);
            let mut r = plain(StatusCode::UNAUTHORIZED, e.to_string());
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(r)
        }
    }
}

fn bad_request(node: &Node, status: StatusCode, msg: impl Into<String>) -> Response {
    node.rejections
        .whip_bad_request
        .fetch_add(1, Ordering::Relaxed);
    plain(status, msg)
}

fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

async fn ask<T>(
    node: &Node,
    worker: usize,
    make: impl FnOnce(oneshot::Sender<Result<T, CoreError>>) -> WorkerMsg,
) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    if node.workers[worker].send(make(tx)).is_err() {
        return Err(plain(StatusCode::SERVICE_UNAVAILABLE, "worker busy; retry"));
    }
    match tokio::time::timeout(WORKER_REPLY_TIMEOUT, rx).await {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e))) => Err(core_error(e)),
        _ => Err(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "worker did not answer; retry",
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct WhepQuery {
    publisher: Option<String>,
}

pub async fn whip_post(
    State(node): State<Arc<Node>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    offer(node, call, None, headers, body, Role::Publish).await
}

pub async fn whep_post(
    State(node): State<Arc<Node>>,
    Path(call): Path<String>,
    Query(q): Query<WhepQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    offer(node, call, Some(q.publisher), headers, body, Role::Play).await
}

async fn offer(
    node: Arc<Node>,
    call: String,
    publisher: Option<Option<String>>,
    headers: HeaderMap,
    body: Bytes,
    role: Role,
) -> Response {
    let call = match CallId::new(call) {
        Ok(c) => c,
        Err(e) => return bad_request(&node, StatusCode::BAD_REQUEST, format!("call id: {e}")),
    };
    if let Err(r) = authorize(&node, &headers, &call, role) {
        return r;
    }
    if !content_type_is(&headers, SDP) {
        return bad_request(
            &node,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be {SDP}"),
        );
    }
    let Ok(sdp) = String::from_utf8(body.to_vec()) else {
        return bad_request(&node, StatusCode::BAD_REQUEST, "offer is not UTF-8");
    };
    let Some(worker) = node.worker_for_call(&call) else {
        let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "this node is draining");
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    };
    let (kind, answer) = match publisher {
        None => (
            "whip",
            ask(&node, worker, |reply| WorkerMsg::Whip {
                call: call.clone(),
                offer: sdp,
                reply,
            })
            .await,
        ),
        Some(p) => {
            let publisher = match p.map(SessionId::new).transpose() {
                Ok(p) => p,
                Err(e) => {
                    return bad_request(&node, StatusCode::BAD_REQUEST, format!("publisher: {e}"));
                }
            };
            let req = WhepRequest {
                call_id: call.clone(),
                publisher,
                offer: sdp,
            };
            (
                "whep",
                ask(&node, worker, |reply| WorkerMsg::Whep { req, reply }).await,
            )
        }
    };
    let WhipAnswer { session_id, sdp } = match answer {
        Ok(a) => a,
        Err(r) => {
            if r.status() == StatusCode::BAD_REQUEST {
                node.rejections
                    .whip_bad_request
                    .fetch_add(1, Ordering::Relaxed);
            }
            return r;
        }
    };
    node.record_session(session_id.clone(), worker, call.clone());
    let location = format!("/{kind}/{call}/{session_id}");
    let etag = format!("\"{session_id}\"");
    let mut r = (StatusCode::CREATED, [(header::CONTENT_TYPE, SDP)], sdp).into_response();
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("ids are header-safe"),
    );
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("ids are header-safe"),
    );
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    r
}

pub async fn whip_patch(
    State(node): State<Arc<Node>>,
    Path((call, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    patch(node, call, session, headers, body, Role::Publish).await
}

pub async fn whep_patch(
    State(node): State<Arc<Node>>,
    Path((call, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    patch(node, call, session, headers, body, Role::Play).await
}

fn resource(
    node: &Node,
    call: String,
    session: String,
) -> Result<(CallId, SessionId, usize), Response> {
    let (Ok(call), Ok(session)) = (CallId::new(call), SessionId::new(session)) else {
        return Err(plain(StatusCode::NOT_FOUND, "no such session"));
    };
    match node.worker_for_session(&call, &session) {
        Some(w) => Ok((call, session, w)),
        None => Err(plain(StatusCode::NOT_FOUND, "no such session")),
    }
}

async fn patch(
    node: Arc<Node>,
    call: String,
    session: String,
    headers: HeaderMap,
    body: Bytes,
    role: Role,
) -> Response {
    let (call, session, worker) = match resource(&node, call, session) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = authorize(&node, &headers, &call, role) {
        return r;
    }
    if !content_type_is(&headers, SDPFRAG) {
        return bad_request(
            &node,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be {SDPFRAG}"),
        );
    }
    if let Some(tag) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
        && tag != "*"
        && tag.trim() != format!("\"{session}\"")
    {
        return plain(
            StatusCode::PRECONDITION_FAILED,
            "ETag does not match this session",
        );
    }
    let Ok(frag) = std::str::from_utf8(&body) else {
        return bad_request(&node, StatusCode::BAD_REQUEST, "body is not UTF-8");
    };
    // Every trickle fragment carries the client's ICE credentials (RFC 8840);
    // only `If-Match: *` marks an ICE restart (RFC 9725 §4.3.2), which rtcd
    // does not do over PATCH.
    let restart = headers
        .get(header::IF_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    let mut candidates = Vec::new();
    for line in frag.lines().map(str::trim) {
        if restart && line.starts_with("a=ice-ufrag:") {
            return bad_request(
                &node,
                StatusCode::UNPROCESSABLE_ENTITY,
                "ICE restart over PATCH is not supported; DELETE and POST a new offer",
            );
        }
        if let Some(c) = line.strip_prefix("a=candidate:") {
            candidates.push(format!("candidate:{c}"));
        }
    }
    for c in candidates {
        let candidate = IceCandidate {
            candidate: c,
            sdp_mid: None,
            sdp_m_line_index: None,
        };
        let session = session.clone();
        if let Err(r) = ask(&node, worker, |reply| WorkerMsg::Candidate {
            session,
            candidate,
            reply,
        })
        .await
        {
            return r;
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

pub async fn whip_delete(
    State(node): State<Arc<Node>>,
    Path((call, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    delete(node, call, session, headers, Role::Publish).await
}

pub async fn whep_delete(
    State(node): State<Arc<Node>>,
    Path((call, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    delete(node, call, session, headers, Role::Play).await
}

async fn delete(
    node: Arc<Node>,
    call: String,
    session: String,
    headers: HeaderMap,
    role: Role,
) -> Response {
    let (call, session, worker) = match resource(&node, call, session) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = authorize(&node, &headers, &call, role) {
        return r;
    }
    match ask(&node, worker, |reply| WorkerMsg::Remove { session, reply }).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(r) => r,
    }
}
