//! A local stand-in for Entra's token endpoint and Microsoft Graph's
//! `sendActivityNotification`, on a loopback port, speaking their wire
//! protocol: the token endpoint checks the grant type, client id, secret
//! and scope and answers a bearer token with `expires_in`; the
//! notification endpoint checks that bearer and the body's shape (a
//! declared activity type, its template's parameters, a preview of at most
//! 150 characters, a deep link of the app's notification tab) and answers
//! 204. It records every request, and can be told to answer the next
//! notifications with a status (429 with `Retry-After`, 503, 403).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// What the fake expects of its client.
#[derive(Debug, Clone)]
pub struct Expect {
    pub client_id: String,
    pub client_secret: String,
    pub scope: String,
    /// Deep links must start `https://{teams_host}/l/entity/{app_id}/`.
    pub teams_host: String,
    pub app_id: String,
    pub expires_in: i64,
}

/// One token request as received.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub tenant: String,
    pub form: HashMap<String, String>,
    pub raw: String,
}

/// One notification request as received, and what the fake answered.
#[derive(Debug, Clone)]
pub struct Notification {
    pub object_id: String,
    /// The tenant the bearer token was issued for.
    pub tenant: Option<String>,
    pub raw: String,
    pub body: Value,
    pub status: u16,
}

impl Notification {
    pub fn activity_type(&self) -> &str {
        self.body["activityType"].as_str().unwrap_or("")
    }

    pub fn preview(&self) -> &str {
        self.body["previewText"]["content"].as_str().unwrap_or("")
    }

    pub fn web_url(&self) -> &str {
        self.body["topic"]["webUrl"].as_str().unwrap_or("")
    }

    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.body["templateParameters"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)?["value"]
            .as_str()
    }

    /// `subEntityId` from the deep link's `context`.
    pub fn sub_entity_id(&self) -> String {
        let ctx = self.web_url().split_once("?context=").map_or("", |x| x.1);
        let json = percent_encoding::percent_decode_str(ctx).decode_utf8_lossy();
        let v: Value = serde_json::from_str(&json).unwrap_or_default();
        v["subEntityId"].as_str().unwrap_or("").to_owned()
    }
}

#[derive(Default)]
struct Seen {
    tokens: Vec<TokenRequest>,
    notifications: Vec<Notification>,
    /// Why requests were refused as malformed (never expected).
    rejected: Vec<String>,
    issued: HashMap<String, String>,
    /// Answers for the next notifications: status and Retry-After.
    script: VecDeque<(u16, Option<String>)>,
}

struct Inner {
    expect: Expect,
    seen: Mutex<Seen>,
}

#[derive(Clone)]
pub struct FakeGraph {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl FakeGraph {
    pub async fn start(expect: Expect) -> FakeGraph {
        let inner = Arc::new(Inner {
            expect,
            seen: Mutex::new(Seen::default()),
        });
        let app = axum::Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route(
                "/v1.0/users/{oid}/teamwork/sendActivityNotification",
                post(notify),
            )
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGraph {
            addr,
            inner,
            task: Arc::new(task),
        }
    }

    /// The base URL both endpoints live under.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `n` notifications are answered `status` (with
    /// `Retry-After: retry_after` when given).
    pub fn fail_next(&self, n: usize, status: u16, retry_after: Option<&str>) {
        let mut s = self.inner.seen.lock().unwrap();
        for _ in 0..n {
            s.script.push_back((status, retry_after.map(str::to_owned)));
        }
    }

    pub fn tokens(&self) -> Vec<TokenRequest> {
        self.inner.seen.lock().unwrap().tokens.clone()
    }

    /// Every notification request, answered or refused.
    pub fn requests(&self) -> Vec<Notification> {
        self.inner.seen.lock().unwrap().notifications.clone()
    }

    /// The notifications the fake accepted (204).
    pub fn delivered(&self) -> Vec<Notification> {
        self.requests()
            .into_iter()
            .filter(|n| n.status == 204)
            .collect()
    }

    pub fn rejected(&self) -> Vec<String> {
        self.inner.seen.lock().unwrap().rejected.clone()
    }

    /// Every byte any client sent, token requests included.
    pub fn all_bodies(&self) -> String {
        let s = self.inner.seen.lock().unwrap();
        let mut all: Vec<&str> = s.tokens.iter().map(|t| t.raw.as_str()).collect();
        all.extend(s.notifications.iter().map(|n| n.raw.as_str()));
        all.join("\n")
    }

    /// Waits (up to 10 s) until `n` notifications were accepted.
    pub async fn wait_delivered(&self, n: usize) -> Vec<Notification> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let d = self.delivered();
            if d.len() >= n {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} notifications arrived",
                d.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

fn oauth_error(code: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": code, "error_description": code})),
    )
        .into_response()
}

async fn token(
    State(inner): State<Arc<Inner>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    raw: String,
) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&raw).unwrap_or_default();
    let e = &inner.expect;
    let mut s = inner.seen.lock().unwrap();
    s.tokens.push(TokenRequest {
        tenant: tenant.clone(),
        form: form.clone(),
        raw: raw.clone(),
    });
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let refusal = if ct != "application/x-www-form-urlencoded" {
        Some(("invalid_request", format!("content type {ct:?}")))
    } else if field("grant_type") != "client_credentials" {
        Some(("unsupported_grant_type", raw.clone()))
    } else if field("client_id") != e.client_id || field("client_secret") != e.client_secret {
        Some(("invalid_client", "client id or secret".into()))
    } else if field("scope") != e.scope {
        Some(("invalid_scope", field("scope").to_owned()))
    } else {
        None
    };
    if let Some((code, why)) = refusal {
        s.rejected.push(format!("token: {code}: {why}"));
        return oauth_error(code);
    }
    let bearer = format!("fake-token-{}-{}", s.issued.len() + 1, tenant);
    s.issued.insert(bearer.clone(), tenant);
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": e.expires_in,
        "ext_expires_in": e.expires_in,
        "access_token": bearer,
    }))
    .into_response()
}

/// Why `body` is not a notification Graph would take, if it is not.
fn check_body(e: &Expect, body: &Value) -> Result<(), String> {
    let obj = body.as_object().ok_or("the body is not an object")?;
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys != ["activityType", "previewText", "templateParameters", "topic"] {
        return Err(format!("unexpected fields {keys:?}"));
    }
    let kind = body["activityType"].as_str().unwrap_or("");
    let declared = control::m365::ACTIVITY_TYPES
        .iter()
        .find(|a| a.name == kind)
        .ok_or_else(|| format!("activityType {kind:?} is not in the manifest"))?;
    let topic = &body["topic"];
    if topic["source"] != "text" || topic["value"].as_str().is_none_or(str::is_empty) {
        return Err(format!("topic {topic}"));
    }
    let url = topic["webUrl"].as_str().unwrap_or("");
    let prefix = format!(
        "https://{}/l/entity/{}/{}?context=",
        e.teams_host,
        e.app_id,
        control::m365::NOTIFICATION_ENTITY_ID
    );
    let ctx = url
        .strip_prefix(&prefix)
        .ok_or_else(|| format!("webUrl {url:?} is not {prefix}…"))?;
    if ctx.contains(['{', '}', '"', ' ']) {
        return Err(format!("context {ctx:?} is not URL-encoded"));
    }
    let ctx: Value =
        serde_json::from_str(&percent_encoding::percent_decode_str(ctx).decode_utf8_lossy())
            .map_err(|e| format!("context is not JSON: {e}"))?;
    let sub = ctx["subEntityId"].as_str().unwrap_or("");
    if !(sub.starts_with("post_") || sub.starts_with("call_")) {
        return Err(format!("subEntityId {sub:?}"));
    }
    let preview = body["previewText"]["content"]
        .as_str()
        .ok_or("previewText.content is missing")?;
    let n = preview.chars().count();
    if n == 0 || n > 150 {
        return Err(format!("previewText.content has {n} characters"));
    }
    let params = body["templateParameters"]
        .as_array()
        .ok_or("templateParameters is not a list")?;
    let mut names = Vec::new();
    for p in params {
        match (p["name"].as_str(), p["value"].as_str()) {
            (Some(name), Some(_)) => names.push(name),
            _ => return Err(format!("template parameter {p}")),
        }
    }
    for placeholder in ["actor", "place"] {
        let used = declared.template.contains(&format!("{{{placeholder}}}"));
        if used != names.contains(&placeholder) {
            return Err(format!(
                "template parameter {placeholder} (names {names:?})"
            ));
        }
    }
    Ok(())
}

async fn notify(
    State(inner): State<Arc<Inner>>,
    Path(oid): Path<String>,
    headers: HeaderMap,
    raw: String,
) -> Response {
    let mut s = inner.seen.lock().unwrap();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let tenant = s.issued.get(bearer).cloned();
    let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let mut record = Notification {
        object_id: oid,
        tenant: tenant.clone(),
        raw,
        body,
        status: 0,
    };
    let (status, retry_after, error) = if tenant.is_none() {
        (401, None, Some("InvalidAuthenticationToken"))
    } else if let Some((status, after)) = s.script.pop_front() {
        (status, after, Some("Scripted"))
    } else if let Err(why) = check_body(&inner.expect, &record.body) {
        s.rejected.push(format!("notification: {why}"));
        (400, None, Some("BadRequest"))
    } else {
        (204, None, None)
    };
    record.status = status;
    s.notifications.push(record);
    let status = StatusCode::from_u16(status).unwrap();
    let mut resp = match error {
        None => status.into_response(),
        Some(code) => (
            status,
            axum::Json(json!({"error": {"code": code, "message": code}})),
        )
            .into_response(),
    };
    if let Some(a) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, a.parse().unwrap());
    }
    resp
}
