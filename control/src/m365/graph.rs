//! Microsoft Graph, app-only: a client-credentials token per tenant from
//! Entra's token endpoint, cached until shortly before it expires, and
//! `sendActivityNotification` to one user's Teams activity feed.
//!
//! Hosts are the cloud's (`[m365] cloud`) unless `[m365.notifications]
//! login_url`/`graph_url` override them (a proxy, or a test's fake). The
//! token's scope always names the cloud's own Graph: a proxy forwards the
//! token to the real service, whose audience it must be.
//!
//! Time comes in as a parameter (`now_ms`): the cache follows the app's
//! clock, so tests move it by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openidconnect::http::{Method, Request, header};
use serde::Serialize;

use super::M365Config;
use crate::oidc::http::HttpClient;
use crate::oidc::is_guid;

/// A token is fetched again this long before Entra says it expires (or at
/// half its life, if that is shorter), so none expires in flight.
const TOKEN_MARGIN_MS: i64 = 5 * 60 * 1000;
/// The longest `Retry-After` obeyed; a longer one is cut to this.
pub const MAX_RETRY_AFTER_MS: i64 = 60 * 60 * 1000;
/// Most bytes of an error code kept from a response (it lands in logs).
const MAX_CODE: usize = 80;

/// The body of `POST /users/{id}/teamwork/sendActivityNotification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityNotification {
    pub topic: Topic,
    /// A type the app manifest declares ([`super::ACTIVITY_TYPES`]).
    pub activity_type: String,
    pub preview_text: PreviewText,
    pub template_parameters: Vec<KeyValue>,
}

/// What the notification is about: free text and the deep link Teams
/// opens (`source: "text"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Topic {
    pub source: &'static str,
    pub value: String,
    pub web_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewText {
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub name: String,
    pub value: String,
}

/// Why a call to Entra or Graph did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Worth trying again (timeout, 5xx, 429, a token Graph refused);
    /// `after_ms` is what `Retry-After` asked for, if anything.
    #[error("{why}")]
    Retry { why: String, after_ms: Option<i64> },
    /// Never worth repeating (bad tenant or user id, 4xx).
    #[error("{0}")]
    Final(String),
}

struct Token {
    bearer: String,
    /// App clock time after which it is fetched again.
    renew_at_ms: i64,
}

/// One tenant's token, behind a lock of its own: concurrent sends to one
/// tenant fetch it once, other tenants do not wait.
type Slot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// The Graph client of one node: one HTTP client, one token cache.
pub struct Graph {
    http: HttpClient,
    login_url: String,
    graph_url: String,
    scope: String,
    client_id: String,
    client_secret: String,
    timeout: Duration,
    tokens: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("login_url", &self.login_url)
            .field("graph_url", &self.graph_url)
            .finish_non_exhaustive()
    }
}

impl Graph {
    /// From `[m365]`; `http` is the node's client, built once.
    pub fn new(cfg: &M365Config, http: HttpClient) -> Graph {
        Graph {
            http,
            login_url: cfg.login_url().to_owned(),
            graph_url: cfg.graph_url().to_owned(),
            scope: format!("{}/.default", cfg.cloud.hosts().graph_url),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.notifications.client_secret.clone(),
            timeout: Duration::from_millis(cfg.notifications.timeout_ms),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Entra's token endpoint for `tenant` (a GUID, checked by the caller).
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.login_url)
    }

    /// `sendActivityNotification` for the user `object_id` (a GUID).
    pub fn notification_url(&self, object_id: &str) -> String {
        format!(
            "{}/v1.0/users/{object_id}/teamwork/sendActivityNotification",
            self.graph_url
        )
    }

    /// The scope the token is asked for.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Sends one activity notification to `object_id` of `tenant`.
    pub async fn send_activity(
        &self,
        now_ms: i64,
        tenant: &str,
        object_id: &str,
        body: &ActivityNotification,
    ) -> Result<(), GraphError> {
        // Both go into URLs: anything but a GUID is refused, never escaped.
        if !is_guid(tenant) {
            return Err(GraphError::Final(format!(
                "tenant {tenant:?} is not a GUID"
            )));
        }
        if !is_guid(object_id) {
            return Err(GraphError::Final(format!(
                "object id {object_id:?} is not a GUID"
            )));
        }
        let bearer = self.token(now_ms, tenant).await?;
        let json = serde_json::to_vec(body).map_err(|e| GraphError::Final(e.to_string()))?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.notification_url(object_id))
            .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(json)
            .map_err(|e| GraphError::Final(e.to_string()))?;
        let resp = self.exchange(req).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let code = graph_error_code(resp.body());
        let why = format!("Graph answered {status} {code}");
        if status.as_u16() == 401 {
            // Revoked or rotated early: a fresh token may do.
            self.forget(tenant);
            return Err(GraphError::Retry {
                why,
                after_ms: None,
            });
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(GraphError::Retry {
                why,
                after_ms: retry_after_ms(resp.headers(), now_ms),
            });
        }
        Err(GraphError::Final(why))
    }

    /// The cached token for `tenant`, or a new one.
    async fn token(&self, now_ms: i64, tenant: &str) -> Result<String, GraphError> {
        let slot = {
            // Poisoning needs a panic while held; the map stays usable.
            let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(tenant.to_owned()).or_default().clone()
        };
        let mut token = slot.lock().await;
        if let Some(t) = &*token
            && now_ms < t.renew_at_ms
        {
            return Ok(t.bearer.clone());
        }
        let fresh = self.fetch_token(now_ms, tenant).await?;
        let bearer = fresh.bearer.clone();
        *token = Some(fresh);
        Ok(bearer)
    }

    fn forget(&self, tenant: &str) {
        let map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = map.get(tenant)
            && let Ok(mut t) = slot.try_lock()
        {
            *t = None;
        }
    }

    async fn fetch_token(&self, now_ms: i64, tenant: &str) -> Result<Token, GraphError> {
        let form = serde_urlencoded::to_string([
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
            ("scope", self.scope.as_str()),
        ])
        .map_err(|e| GraphError::Final(e.to_string()))?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.token_url(tenant))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(form.into_bytes())
            .map_err(|e| GraphError::Final(e.to_string()))?;
        let resp = self.exchange(req).await?;
        let status = resp.status();
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        if !status.is_success() {
            let code = short(body["error"].as_str().unwrap_or(""));
            let why = format!("token endpoint answered {status} {code}");
            return if status.as_u16() == 429 || status.is_server_error() {
                Err(GraphError::Retry {
                    why,
                    after_ms: retry_after_ms(resp.headers(), now_ms),
                })
            } else {
                // invalid_client, unauthorized_client, no consent: an
                // operator must act; repeating it changes nothing.
                Err(GraphError::Final(why))
            };
        }
        let bearer = body["access_token"].as_str().unwrap_or("");
        // v2 answers a number; some proxies a string.
        let expires_in = body["expires_in"]
            .as_i64()
            .or_else(|| body["expires_in"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0);
        if bearer.is_empty() || expires_in <= 0 {
            return Err(GraphError::Retry {
                why: "token endpoint answered no access_token or expires_in".into(),
                after_ms: None,
            });
        }
        let life = expires_in.saturating_mul(1000);
        Ok(Token {
            bearer: bearer.to_owned(),
            renew_at_ms: now_ms + life - TOKEN_MARGIN_MS.min(life / 2),
        })
    }

    async fn exchange(
        &self,
        req: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, GraphError> {
        tokio::time::timeout(self.timeout, self.http.send(req))
            .await
            .map_err(|_| GraphError::Retry {
                why: "timed out".into(),
                after_ms: None,
            })?
            .map_err(|e| GraphError::Retry {
                why: e.to_string(),
                after_ms: None,
            })
    }
}

/// `Retry-After` as milliseconds from `now_ms`: delay-seconds or an
/// HTTP date, capped at [`MAX_RETRY_AFTER_MS`].
pub fn retry_after_ms(headers: &header::HeaderMap, now_ms: i64) -> Option<i64> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let ms = match v.parse::<i64>() {
        Ok(secs) => secs.checked_mul(1000)?,
        Err(_) => chrono::DateTime::parse_from_rfc2822(v)
            .ok()?
            .timestamp_millis()
            .saturating_sub(now_ms),
    };
    Some(ms.clamp(0, MAX_RETRY_AFTER_MS))
}

/// Graph's `{"error": {"code": …}}`, short and printable.
fn graph_error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    short(v["error"]["code"].as_str().unwrap_or(""))
}

fn short(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_CODE)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::m365::Cloud;

    fn graph(cloud: Cloud, login: &str, graph: &str) -> Graph {
        let mut c = M365Config {
            cloud,
            client_id: "00000000-1111-2222-3333-444444444444".into(),
            ..M365Config::default()
        };
        c.notifications.login_url = login.into();
        c.notifications.graph_url = graph.into();
        Graph::new(&c, HttpClient::new().expect("client"))
    }

    #[test]
    fn each_cloud_uses_its_own_hosts_unless_overridden() {
        let t = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let oid = "9a0c2b7e-5d41-4f2a-8e3b-1c6d7f8a9b0c";
        for (cloud, login, graph_host) in [
            (
                Cloud::Commercial,
                "https://login.microsoftonline.com",
                "https://graph.microsoft.com",
            ),
            (
                Cloud::GccHigh,
                "https://login.microsoftonline.us",
                "https://graph.microsoft.us",
            ),
            (
                Cloud::Dod,
                "https://login.microsoftonline.us",
                "https://dod-graph.microsoft.us",
            ),
        ] {
            let g = graph(cloud, "", "");
            assert_eq!(
                g.token_url(t),
                format!("{login}/{t}/oauth2/v2.0/token"),
                "{cloud:?}"
            );
            assert_eq!(
                g.notification_url(oid),
                format!("{graph_host}/v1.0/users/{oid}/teamwork/sendActivityNotification"),
                "{cloud:?}"
            );
            assert_eq!(g.scope(), format!("{graph_host}/.default"));

            // An override moves the requests, not the token's audience.
            let g = graph(cloud, "http://127.0.0.1:9/", "http://127.0.0.1:9/graph/");
            assert_eq!(
                g.token_url(t),
                format!("http://127.0.0.1:9/{t}/oauth2/v2.0/token")
            );
            assert!(
                g.notification_url(oid)
                    .starts_with("http://127.0.0.1:9/graph/v1.0/users/")
            );
            assert_eq!(g.scope(), format!("{graph_host}/.default"));
        }
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_and_capped() {
        let at = |v: &str, now: i64| {
            let mut h = header::HeaderMap::new();
            h.insert(header::RETRY_AFTER, v.parse().unwrap());
            retry_after_ms(&h, now)
        };
        assert_eq!(at("3", 0), Some(3000));
        assert_eq!(at("0", 0), Some(0));
        assert_eq!(at("999999", 0), Some(MAX_RETRY_AFTER_MS));
        // 2026-01-01T00:00:10Z, ten seconds after "now".
        let now = 1_767_225_600_000;
        assert_eq!(at("Thu, 01 Jan 2026 00:00:10 GMT", now), Some(10_000));
        assert_eq!(at("soon", now), None);
        assert_eq!(retry_after_ms(&header::HeaderMap::new(), now), None);
    }

    #[tokio::test]
    async fn ids_that_are_not_guids_never_reach_a_url() {
        let g = graph(
            Cloud::Commercial,
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
        );
        let body = ActivityNotification {
            topic: Topic {
                source: "text",
                value: "x".into(),
                web_url: "https://teams.microsoft.com/l/entity/a/b".into(),
            },
            activity_type: "mention".into(),
            preview_text: PreviewText {
                content: "New message".into(),
            },
            template_parameters: Vec::new(),
        };
        let good = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        for (tenant, oid) in [("../common", good), (good, "x/../../me")] {
            let e = g.send_activity(0, tenant, oid, &body).await.unwrap_err();
            assert!(matches!(e, GraphError::Final(_)), "{e:?}");
        }
    }
}
