//! Who may talk to rtcd: control nodes with an API key, WHIP/WHEP clients
//! with a short-lived token signed by the node's token secret.
//!
//! Keys are compared in constant time. Tokens are
//! `v1.<call>.<role>.<expiry unix seconds>.<hex HMAC-SHA256>`, so an
//! operator (or control) mints them without rtcd storing anything.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{constant_time, hmac};
use signaling::CallId;

/// What a WHIP/WHEP token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publish,
    Play,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Publish => "publish",
            Role::Play => "play",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization: Bearer header")]
    Missing,
    #[error("unknown API key")]
    BadKey,
    #[error("malformed token")]
    Malformed,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token is for another call or role")]
    WrongScope,
    #[error("WHIP/WHEP are disabled: no api.token_secret configured")]
    Disabled,
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let h = header.ok_or(AuthError::Missing)?;
    let (scheme, token) = h.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token.trim())
}

/// Checks a control node's key against every configured key, each in
/// constant time.
pub fn check_api_key(keys: &[String], presented: &str) -> Result<(), AuthError> {
    let mut ok = false;
    for k in keys {
        ok |= constant_time::verify_slices_are_equal(k.as_bytes(), presented.as_bytes()).is_ok();
    }
    if ok { Ok(()) } else { Err(AuthError::BadKey) }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn mint_token(secret: &str, call: &CallId, role: Role, ttl: Duration) -> String {
    let body = format!("v1.{call}.{}.{}", role.as_str(), unix_now() + ttl.as_secs());
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, body.as_bytes());
    format!("{body}.{}", hex(tag.as_ref()))
}

/// Verifies a token for `call` and `role`.
pub fn verify_token(secret: &str, token: &str, call: &CallId, role: Role) -> Result<(), AuthError> {
    if secret.is_empty() {
        return Err(AuthError::Disabled);
    }
    let (body, sig_hex) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
    let sig = unhex(sig_hex).ok_or(AuthError::Malformed)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, body.as_bytes(), &sig).map_err(|_| AuthError::BadSignature)?;
    let parts: Vec<&str> = body.split('.').collect();
    let [version, token_call, token_role, expiry] = parts[..] else {
        return Err(AuthError::Malformed);
    };
    if version != "v1" {
        return Err(AuthError::Malformed);
    }
    let expiry: u64 = expiry.parse().map_err(|_| AuthError::Malformed)?;
    if expiry < unix_now() {
        return Err(AuthError::Expired);
    }
    if token_call != call.as_str() || token_role != role.as_str() {
        return Err(AuthError::WrongScope);
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn tokens_verify_only_for_their_scope() {
        let call = CallId::new("c1").unwrap();
        let other = CallId::new("c2").unwrap();
        let t = mint_token(SECRET, &call, Role::Publish, Duration::from_secs(60));
        assert_eq!(verify_token(SECRET, &t, &call, Role::Publish), Ok(()));
        assert_eq!(
            verify_token(SECRET, &t, &call, Role::Play),
            Err(AuthError::WrongScope)
        );
        assert_eq!(
            verify_token(SECRET, &t, &other, Role::Publish),
            Err(AuthError::WrongScope)
        );
        let forged = t.replace("publish", "play");
        assert_eq!(
            verify_token(SECRET, &forged, &call, Role::Play),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_token("x".repeat(32).as_str(), &t, &call, Role::Publish),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_token(SECRET, "garbage", &call, Role::Publish),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            verify_token("", &t, &call, Role::Publish),
            Err(AuthError::Disabled)
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let call = CallId::new("c1").unwrap();
        let body = format!("v1.c1.play.{}", unix_now() - 10);
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
        let t = format!("{body}.{}", hex(hmac::sign(&key, body.as_bytes()).as_ref()));
        assert_eq!(
            verify_token(SECRET, &t, &call, Role::Play),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn api_keys_and_bearer_headers() {
        let keys = vec![SECRET.to_string()];
        assert_eq!(check_api_key(&keys, SECRET), Ok(()));
        assert_eq!(check_api_key(&keys, "nope"), Err(AuthError::BadKey));
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some("Basic abc")), Err(AuthError::Missing));
        assert_eq!(bearer(None), Err(AuthError::Missing));
    }
}
