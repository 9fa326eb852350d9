//! Sign-in through the configured OpenID Connect provider, and the list of
//! sign-in methods for the login page.
//!
//! `GET /auth/oidc/login` stores a fresh state, nonce and PKCE verifier
//! (shared store: any node may take the callback), binds the state to the
//! browser in an HttpOnly cookie scoped to `/api/v1/auth/oidc`, and
//! redirects to the provider. `GET /auth/oidc/callback` requires that
//! cookie to match the state (so nobody can finish a sign-in in someone
//! else's browser), uses the state up, lets [`crate::oidc`] exchange the
//! code and check the ID token, applies our rules (group, provisioning,
//! disabled account), then opens a session exactly as a password login
//! does and redirects to where the user was going. Every refusal has its
//! own code, is audited, and opens no session.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Client, account_disabled, start_session};
use super::json::{Json, Query};
use crate::AppState;
use crate::audit::{self, Actor};
use crate::auth::tokens::secrets_equal;
use crate::config::Provisioning;
use crate::db::identities;
use crate::db::users::check_username;
use crate::error::AppError;
use crate::oidc::{Callback, ExternalIdentity, OidcError};

pub const STATE_COOKIE: &str = "enclave_oidc_state";
const STATE_COOKIE_PATH: &str = "/api/v1/auth/oidc";
pub const LOGIN_PATH: &str = "/api/v1/auth/oidc/login";
const MAX_RETURN_TO: usize = 512;

#[derive(Serialize)]
pub struct Methods {
    pub password: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcMethod>,
}

#[derive(Serialize)]
pub struct OidcMethod {
    pub login_url: &'static str,
    pub button_text: String,
}

pub async fn methods(State(state): State<AppState>) -> Json<Methods> {
    Json(Methods {
        password: true,
        oidc: state.oidc.as_ref().map(|p| OidcMethod {
            login_url: LOGIN_PATH,
            button_text: p.settings.button_text.clone(),
        }),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginQuery {
    /// A path on this server to land on after signing in.
    #[serde(default)]
    pub return_to: Option<String>,
}

/// Only a local path: an open redirect would lend our name to phishing.
fn check_return_to(r: &str) -> Result<(), AppError> {
    let local = r.starts_with('/')
        && !r.starts_with("//")
        && !r.contains('\\')
        && !r.chars().any(char::is_control)
        && r.len() <= MAX_RETURN_TO;
    if local {
        Ok(())
    } else {
        Err(AppError::BadRequest(format!(
            "return_to must be a path on this server (starting with one '/', at most {MAX_RETURN_TO} bytes)"
        )))
    }
}

fn not_configured() -> AppError {
    AppError::refused(
        StatusCode::NOT_FOUND,
        "oidc_disabled",
        "sign-in with OpenID Connect is not configured",
    )
}

fn unavailable(e: &OidcError) -> AppError {
    tracing::warn!(error = %e, "OpenID Connect provider unavailable");
    AppError::refused(
        StatusCode::BAD_GATEWAY,
        "oidc_provider_unavailable",
        "the identity provider cannot be reached; try again shortly",
    )
}

fn state_cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.auth.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    // Lax: the provider's redirect back is a top-level GET, which carries it.
    let v = format!(
        "{STATE_COOKIE}={value}; Path={STATE_COOKIE_PATH}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn see_other(location: &str) -> Result<Response, AppError> {
    let loc = HeaderValue::from_str(location).map_err(AppError::internal)?;
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, loc)]).into_response())
}

pub async fn login(
    State(state): State<AppState>,
    client: Client,
    Query(q): Query<LoginQuery>,
) -> Result<Response, AppError> {
    let provider = state.oidc.clone().ok_or_else(not_configured)?;
    if let Some(r) = &q.return_to {
        check_return_to(r)?;
    }
    if let Err(wait) = state.login_limiter.check(&client.ip, state.clock.now_ms()) {
        audit::record("login", &anon(&client), "rate_limited", "oidc");
        return Err(AppError::RateLimited(wait));
    }
    let rp = provider.client().await.map_err(|e| unavailable(&e))?;
    let start = rp.begin_login(q.return_to).await.map_err(|e| match e {
        OidcError::State(e) => AppError::internal(e),
        other => unavailable(&other),
    })?;
    let mut resp = see_other(&start.authorize_url)?;
    resp.headers_mut().insert(
        header::SET_COOKIE,
        state_cookie(&state, &start.state, provider.settings.login_timeout_secs),
    );
    Ok(resp)
}

fn anon(client: &Client) -> Actor<'_> {
    Actor {
        user_id: "",
        username: "",
        ip: &client.ip,
    }
}

/// The stable code and status for each way a callback can fail.
fn refusal(e: &OidcError) -> AppError {
    use OidcError as E;
    let (status, code) = match e {
        E::StateMismatch => (StatusCode::BAD_REQUEST, "oidc_state_invalid"),
        E::StateExpired => (StatusCode::BAD_REQUEST, "oidc_state_expired"),
        E::ProviderError(_) => (StatusCode::UNAUTHORIZED, "oidc_provider_refused"),
        E::CodeRejected(_) => (StatusCode::UNAUTHORIZED, "oidc_code_rejected"),
        E::WrongIssuer(_) => (StatusCode::UNAUTHORIZED, "oidc_wrong_issuer"),
        E::WrongAudience(_) => (StatusCode::UNAUTHORIZED, "oidc_wrong_audience"),
        E::Expired(_) => (StatusCode::UNAUTHORIZED, "oidc_token_expired"),
        E::NonceMismatch(_) => (StatusCode::UNAUTHORIZED, "oidc_nonce_mismatch"),
        E::BadSignature(_) | E::UnknownKey | E::InvalidToken(_) => {
            (StatusCode::UNAUTHORIZED, "oidc_invalid_token")
        }
        E::TenantNotAllowed(_) => (StatusCode::FORBIDDEN, "oidc_tenant_not_allowed"),
        E::GroupsOverage => (StatusCode::FORBIDDEN, "oidc_groups_overage"),
        E::Config(_) | E::Discovery(_) | E::TokenEndpoint(_) | E::State(_) => {
            return unavailable(e);
        }
    };
    AppError::refused(status, code, e.to_string())
}

pub async fn callback(
    State(state): State<AppState>,
    client: Client,
    parts: axum::http::request::Parts,
) -> Response {
    let result = finish(&state, &client, &parts).await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if e.status().is_client_error() {
                state.metrics.logins.with_label_values(&["failure"]).inc();
                audit::record(
                    "login",
                    &anon(&client),
                    "refused",
                    &format!("oidc {}: {e}", e.code()),
                );
            }
            e.into_response()
        }
    };
    // The state is good for one try either way.
    resp.headers_mut()
        .append(header::SET_COOKIE, state_cookie(&state, "", 0));
    resp
}

async fn finish(
    state: &AppState,
    client: &Client,
    parts: &axum::http::request::Parts,
) -> Result<Response, AppError> {
    let provider = state.oidc.clone().ok_or_else(not_configured)?;
    if let Err(wait) = state.login_limiter.check(&client.ip, state.clock.now_ms()) {
        return Err(AppError::RateLimited(wait));
    }
    let cb: Callback = serde_urlencoded_query(parts.uri.query().unwrap_or(""))?;
    let bound = crate::auth::extract::cookie(parts, STATE_COOKIE).unwrap_or("");
    let echoed = cb.state.as_deref().unwrap_or("");
    if bound.is_empty() || echoed.is_empty() || !secrets_equal(bound, echoed) {
        return Err(AppError::refused(
            StatusCode::BAD_REQUEST,
            "oidc_state_mismatch",
            "this sign-in was not started in this browser; start again",
        ));
    }
    let rp = provider.client().await.map_err(|e| unavailable(&e))?;
    let outcome = rp.complete_login(&cb).await.map_err(|e| refusal(&e))?;
    let identity = outcome.identity;
    let settings = &provider.settings;
    let who = format!(
        "{} ({})",
        identity.account_key(),
        identity.email.as_deref().unwrap_or("no email")
    );
    if !settings.required_groups.is_empty()
        && !identity
            .groups
            .iter()
            .any(|g| settings.required_groups.contains(g))
    {
        return Err(AppError::refused(
            StatusCode::FORBIDDEN,
            "oidc_missing_group",
            format!("{who} is in none of the groups allowed to sign in"),
        ));
    }
    let now = state.clock.now_ms();
    let display = display_name(&identity);
    let user = match identities::user_for(&state.db, &identity.account_key()).await? {
        Some((_, true)) => return Err(account_disabled()),
        Some((user, false)) => {
            identities::record_login(&state.db, &user.id, &identity, Some(&display), now).await?;
            crate::db::users::get(&state.db, &user.id).await?
        }
        None if settings.provisioning == Provisioning::Refuse => {
            return Err(AppError::refused(
                StatusCode::FORBIDDEN,
                "oidc_unknown_user",
                format!("{who} has no account here and accounts are not created on sign-in"),
            ));
        }
        None => provision(state, client, &identity, &display, now, "").await?,
    };
    let (_, cookies) = start_session(state, client, user, "oidc").await?;
    let mut resp = see_other(outcome.return_to.as_deref().unwrap_or("/"))?;
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// Creates the account of an identity signing in for the first time, and
/// audits it; `via` names the sign-in path in the record (" from
/// Microsoft 365", or "" for this one).
pub(crate) async fn provision(
    state: &AppState,
    client: &Client,
    identity: &ExternalIdentity,
    display: &str,
    now: i64,
    via: &str,
) -> crate::db::DbResult<crate::db::users::User> {
    let user = identities::provision(
        &state.db,
        identity,
        &suggest_username(identity),
        display,
        now,
    )
    .await?;
    audit::record(
        "user_create",
        &Actor {
            user_id: &user.id,
            username: &user.username,
            ip: &client.ip,
        },
        "success",
        &format!(
            "provisioned at first sign-in{via} for {}",
            identity.account_key()
        ),
    );
    Ok(user)
}

fn serde_urlencoded_query<T: serde::de::DeserializeOwned>(q: &str) -> Result<T, AppError> {
    let pairs: serde_json::Map<String, serde_json::Value> =
        openidconnect::url::form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
            .collect();
    serde_json::from_value(serde_json::Value::Object(pairs))
        .map_err(|e| AppError::BadRequest(format!("callback query: {e}")))
}

fn display_name(identity: &ExternalIdentity) -> String {
    identity
        .name
        .clone()
        .or_else(|| identity.username.clone())
        .unwrap_or_default()
        .chars()
        .take(128)
        .collect()
}

/// A username for a new account from what the provider suggests: the
/// username claim, else the email's local part, squeezed into our
/// alphabet. Taken names get a number in [`identities::provision`].
pub fn suggest_username(identity: &ExternalIdentity) -> String {
    let raw = identity
        .username
        .as_deref()
        .or(identity.email.as_deref())
        .or(identity.name.as_deref())
        .unwrap_or("user");
    let local = raw.split('@').next().unwrap_or(raw);
    let mut name: String = local
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(56)
        .collect();
    if name.len() < 3 {
        name = format!("user-{name}").trim_end_matches('-').to_owned();
    }
    if check_username(&name).is_err() {
        name = "user".into();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(username: Option<&str>, email: Option<&str>) -> ExternalIdentity {
        ExternalIdentity {
            issuer: "https://idp".into(),
            tenant: None,
            subject: "s".into(),
            email: email.map(String::from),
            name: None,
            username: username.map(String::from),
            groups: Vec::new(),
        }
    }

    #[test]
    fn usernames_are_squeezed_into_our_alphabet() {
        assert_eq!(
            suggest_username(&id(Some("Ada.Lovelace@contoso.example"), None)),
            "ada.lovelace"
        );
        assert_eq!(suggest_username(&id(None, Some("Jörg Groß@x"))), "j-rg-gro");
        assert_eq!(suggest_username(&id(Some("__x"), None)), "user-x");
        assert_eq!(suggest_username(&id(None, None)), "user");
        for n in ["ada.lovelace", "j-rg-gro", "user-x", "user"] {
            assert!(check_username(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn return_to_is_a_local_path() {
        assert!(check_return_to("/channels/x?y=1").is_ok());
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "x",
            "/a\nb",
        ] {
            assert!(check_return_to(bad).is_err(), "{bad}");
        }
    }
}
