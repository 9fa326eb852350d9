//! OpenID Connect login end to end against a real provider: each test
//! starts `node tests/idp/provider.mjs` (the certified `oidc-provider`
//! package) on a free loopback port with its own clients, key and, for the
//! failure tests, misbehaviour; then drives the browser's part over HTTP
//! (authorize → login form → consent form → callback) and lets
//! [`OidcClient`] finish the login.
//!
//! Needs `node` (or `ENCLAVE_NODE`) and `npm ci` in tests/idp, which
//! `scripts/setup` does. Without them the tests are skipped with a message,
//! unless `ENCLAVE_REQUIRE_SERVICES=1`, which makes that a failure.

use std::collections::BTreeMap;
use std::sync::Arc;

use control::oidc::{Callback, MemoryLoginStates, OidcClient, OidcConfig, OidcError};
use serde_json::json;

const REDIRECT: &str = "http://127.0.0.1:18099/oidc/callback";

#[path = "common/idp.rs"]
mod idp;

use idp::{Provider, free_port};

async fn client(p: &Provider, client_id: &str, secret: Option<&str>) -> OidcClient {
    let mut config = OidcConfig::new(&p.issuer, client_id, secret, REDIRECT);
    config.scopes = ["openid", "profile", "email"].map(String::from).to_vec();
    OidcClient::discover(config, Arc::new(MemoryLoginStates::default()))
        .await
        .unwrap()
}

async fn confidential(p: &Provider) -> OidcClient {
    client(p, "enclave", Some("enclave-secret")).await
}

/// Signs `user` in through the provider's pages (the shared test browser)
/// and reads the callback's query parameters.
async fn sign_in(authorize_url: &str, user: &str) -> Callback {
    let back = idp::Browser::new()
        .sign_in(authorize_url, user, REDIRECT)
        .await;
    let q = openidconnect::url::Url::parse(&back).unwrap();
    let pairs: BTreeMap<String, String> = q.query_pairs().into_owned().collect();
    serde_json::from_value(serde_json::to_value(pairs).unwrap()).unwrap()
}

async fn login(rp: &OidcClient) -> Callback {
    let start = rp
        .begin_login(Some("/channels/town-square".into()))
        .await
        .unwrap();
    sign_in(&start.authorize_url, "alice").await
}

#[tokio::test]
async fn login_with_authorization_code_and_pkce() {
    let Some(p) = idp::provider(REDIRECT, json!({})).await else {
        return;
    };
    let rp = confidential(&p).await;
    let start = rp
        .begin_login(Some("/channels/town-square".into()))
        .await
        .unwrap();
    let url = openidconnect::url::Url::parse(&start.authorize_url).unwrap();
    let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q.contains_key("nonce") && q["state"] == start.state);

    let callback = sign_in(&start.authorize_url, "alice").await;
    assert_eq!(callback.iss.as_deref(), Some(p.issuer.as_str()));
    let done = rp.complete_login(&callback).await.unwrap();
    assert_eq!(done.return_to.as_deref(), Some("/channels/town-square"));
    let id = done.identity;
    assert_eq!(id.issuer, p.issuer);
    assert_eq!(id.subject, "alice");
    assert_eq!(id.tenant, None);
    assert_eq!(id.email.as_deref(), Some("alice@example.test"));
    assert_eq!(id.name.as_deref(), Some("Alice Example"));
    assert_eq!(id.groups, ["staff", "ops"]);
    assert_eq!(id.account_key(), format!("iss:{}:alice", p.issuer));
}

#[tokio::test]
async fn public_client_logs_in_with_pkce_alone() {
    let Some(p) = idp::provider(REDIRECT, json!({})).await else {
        return;
    };
    let rp = client(&p, "enclave-public", None).await;
    let callback = login(&rp).await;
    assert_eq!(
        rp.complete_login(&callback).await.unwrap().identity.subject,
        "alice"
    );
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    // The provider's metadata names another issuer than configured.
    let Some(p) = idp::provider(REDIRECT, json!({})).await else {
        return;
    };
    let mut config = OidcConfig::new(
        &format!("{}/elsewhere", p.issuer),
        "enclave",
        Some("enclave-secret"),
        REDIRECT,
    );
    config.discovery_url = Some(format!("{}/.well-known/openid-configuration", p.issuer));
    let err = OidcClient::discover(config, Arc::new(MemoryLoginStates::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::WrongIssuer(_)), "{err}");

    // The ID token names another issuer than the provider.
    let Some(p) = idp::provider(
        REDIRECT,
        json!({"id_token_overrides": {"iss": "http://127.0.0.1:9/evil"}}),
    )
    .await
    else {
        return;
    };
    let rp = confidential(&p).await;
    let callback = login(&rp).await;
    let err = rp.complete_login(&callback).await.unwrap_err();
    assert!(matches!(err, OidcError::WrongIssuer(_)), "{err}");

    // The callback says another provider answered (RFC 9207 mix-up).
    let Some(p) = idp::provider(REDIRECT, json!({})).await else {
        return;
    };
    let rp = confidential(&p).await;
    let mut callback = login(&rp).await;
    callback.iss = Some("http://127.0.0.1:9/evil".into());
    let err = rp.complete_login(&callback).await.unwrap_err();
    assert!(matches!(err, OidcError::WrongIssuer(_)), "{err}");
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    let Some(p) = idp::provider(
        REDIRECT,
        json!({"id_token_overrides": {"aud": "some-other-app"}}),
    )
    .await
    else {
        return;
    };
    let rp = confidential(&p).await;
    let callback = login(&rp).await;
    let err = rp.complete_login(&callback).await.unwrap_err();
    assert!(matches!(err, OidcError::WrongAudience(_)), "{err}");
}

#[tokio::test]
async fn expired_id_token_is_refused() {
    let Some(p) = idp::provider(REDIRECT, json!({"id_token_expired": true})).await else {
        return;
    };
    let rp = confidential(&p).await;
    let callback = login(&rp).await;
    let err = rp.complete_login(&callback).await.unwrap_err();
    assert!(matches!(err, OidcError::Expired(_)), "{err}");
}

#[tokio::test]
async fn bad_nonce_is_refused() {
    let Some(p) = idp::provider(
        REDIRECT,
        json!({"id_token_overrides": {"nonce": "not-the-login-nonce"}}),
    )
    .await
    else {
        return;
    };
    let rp = confidential(&p).await;
    let callback = login(&rp).await;
    let err = rp.complete_login(&callback).await.unwrap_err();
    assert!(matches!(err, OidcError::NonceMismatch(_)), "{err}");
}

#[tokio::test]
async fn replayed_code_is_refused() {
    let Some(p) = idp::provider(REDIRECT, json!({})).await else {
        return;
    };
    let rp = confidential(&p).await;
    let callback = login(&rp).await;
    rp.complete_login(&callback).await.unwrap();
    // The same callback again: its state is used up.
    let err = rp.complete_login(&callback).await.unwrap_err();
    assert!(matches!(err, OidcError::StateMismatch), "{err}");
    // The used code under a fresh, valid state: the provider refuses it.
    let fresh = rp.begin_login(None).await.unwrap();
    let replay = Callback {
        state: Some(fresh.state),
        ..callback.clone()
    };
    let err = rp.complete_login(&replay).await.unwrap_err();
    assert!(
        matches!(err, OidcError::CodeRejected(ref m) if m.contains("invalid_grant")),
        "{err}"
    );
}

#[tokio::test]
async fn state_mismatch_is_refused() {
    let Some(p) = idp::provider(REDIRECT, json!({})).await else {
        return;
    };
    let rp = confidential(&p).await;
    let callback = login(&rp).await;
    for forged in [Some("forged-state".to_owned()), None] {
        let bad = Callback {
            state: forged,
            ..callback.clone()
        };
        let err = rp.complete_login(&bad).await.unwrap_err();
        assert!(matches!(err, OidcError::StateMismatch), "{err}");
    }
    // The forged attempts did not use up the real login.
    assert_eq!(
        rp.complete_login(&callback).await.unwrap().identity.subject,
        "alice"
    );

    // A state from another relying party instance (another store) is
    // unknown here.
    let other = confidential(&p).await;
    let callback = login(&other).await;
    assert!(matches!(
        rp.complete_login(&callback).await,
        Err(OidcError::StateMismatch)
    ));
}

#[tokio::test]
async fn provider_error_in_callback_is_reported() {
    let Some(p) = idp::provider(REDIRECT, json!({})).await else {
        return;
    };
    let rp = confidential(&p).await;
    let start = rp.begin_login(None).await.unwrap();
    let cb = Callback {
        state: Some(start.state),
        error: Some("access_denied".into()),
        error_description: Some("the user said no".into()),
        ..Callback::default()
    };
    let err = rp.complete_login(&cb).await.unwrap_err();
    assert!(
        matches!(err, OidcError::ProviderError(ref m) if m.contains("access_denied")),
        "{err}"
    );
}

#[tokio::test]
async fn rotated_signing_key_is_fetched_on_demand() {
    // The same provider restarted on the same port with a new signing key.
    let port = free_port();
    let Some(before) = idp::provider(REDIRECT, json!({"port": port})).await else {
        return;
    };
    let rp = confidential(&before).await;
    let issuer = before.issuer.clone();
    before.stop().await;
    let rotated =
        json!([{"kid": "rotated-key", "pem": include_str!("fixtures/oidc_other_rsa.pem")}]);
    let Some(after) = idp::provider(REDIRECT, json!({"port": port, "keys": rotated})).await else {
        return;
    };
    assert_eq!(after.issuer, issuer);

    // The token names a key the client has never seen: it fetches the
    // provider's keys again and accepts it.
    let callback = login(&rp).await;
    assert_eq!(
        rp.complete_login(&callback).await.unwrap().identity.subject,
        "alice"
    );
    // And the next login needs no refresh.
    let callback = login(&rp).await;
    assert_eq!(
        rp.complete_login(&callback).await.unwrap().identity.subject,
        "alice"
    );
}
