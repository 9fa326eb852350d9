//! `[[calls.ice_servers]]`: the STUN and TURN servers a client's peer
//! connection uses, handed out in every join answer.
//!
//! None by default: rtcd is reached directly (UDP, or ICE-TCP on the same
//! port), and no public server is ever named for the operator. A TURN
//! server inside the operator's network helps clients whose network only
//! lets them out through a relay.
//!
//! A server's credential is either static (`username`, `credential`) or
//! made per join from a secret shared with the TURN server, as coturn's
//! `use-auth-secret` / `static-auth-secret` expects (the "TURN REST API"
//! scheme): the username is `<expiry unix seconds>:<user id>` and the
//! credential is base64(HMAC-SHA1(secret, username)). The TURN server
//! recomputes it and refuses it once the expiry has passed, so a
//! credential that leaks from a page stops working on its own.

use aws_lc_rs::hmac;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use signaling::call::IceServer;

/// Longest lifetime of a made credential: a week. A call that outlasts
/// its credential keeps its relay only until the TURN server asks it to
/// authenticate again, so the default covers a working day.
pub const MAX_CREDENTIAL_TTL_SECS: u64 = 7 * 24 * 3600;
pub const MIN_CREDENTIAL_TTL_SECS: u64 = 60;

/// One `RTCIceServer`, as the operator writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServerConfig {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URLs of one server.
    pub urls: Vec<String>,
    /// A static TURN username (with `credential`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// The secret shared with the TURN server (coturn's
    /// `static-auth-secret`): each join gets a credential of its own that
    /// expires after `credential_ttl_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<String>,
    #[serde(default = "default_ttl")]
    pub credential_ttl_secs: u64,
}

fn default_ttl() -> u64 {
    12 * 3600
}

const SCHEMES: [&str; 4] = ["stun:", "stuns:", "turn:", "turns:"];

fn is_turn(url: &str) -> bool {
    url.starts_with("turn:") || url.starts_with("turns:")
}

/// Checks one URL as the browser will (RFC 7064 and 7065): a known
/// scheme, a host, and for TURN at most a `transport` of udp or tcp.
fn check_url(url: &str) -> Result<(), String> {
    let Some(scheme) = SCHEMES.iter().find(|s| url.starts_with(**s)) else {
        let got = url.split(':').next().unwrap_or("");
        return Err(format!(
            "{url:?} has scheme {got:?}; use stun:, stuns:, turn: or turns:"
        ));
    };
    let rest = &url[scheme.len()..];
    let (host_port, query) = rest.split_once('?').unwrap_or((rest, ""));
    if host_port.is_empty()
        || host_port.starts_with('/')
        || host_port.contains('@')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{url:?} must be {scheme}host or {scheme}host:port, with no path, user or spaces"
        ));
    }
    if let Some((_, port)) = host_port
        .rsplit_once(':')
        .filter(|_| !host_port.ends_with(']'))
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(format!("{url:?} has a bad port {port:?}"));
    }
    match query {
        "" => Ok(()),
        "transport=udp" | "transport=tcp" if is_turn(url) => Ok(()),
        _ if is_turn(url) => Err(format!(
            "{url:?}: the only query a TURN URL takes is ?transport=udp or ?transport=tcp"
        )),
        _ => Err(format!("{url:?}: a STUN URL takes no query")),
    }
}

impl IceServerConfig {
    pub(crate) fn validate(&self, at: usize, errors: &mut Vec<String>) {
        let name = format!("calls.ice_servers[{at}]");
        if self.urls.is_empty() {
            errors.push(format!("{name}.urls must list at least one URL"));
        }
        for url in &self.urls {
            if let Err(e) = check_url(url) {
                errors.push(format!("{name}.urls: {e}"));
            }
        }
        let turn = self.urls.iter().any(|u| is_turn(u));
        let fixed = self.username.is_some() || self.credential.is_some();
        match (&self.auth_secret, fixed) {
            (Some(_), true) => errors.push(format!(
                "{name}: give auth_secret or username and credential, not both"
            )),
            (Some(s), false) if s.is_empty() => {
                errors.push(format!("{name}.auth_secret must not be empty"))
            }
            (Some(_), false) if !turn => errors.push(format!(
                "{name}.auth_secret is for turn: or turns: URLs; STUN needs no credential"
            )),
            (None, true) if self.username.is_none() || self.credential.is_none() => {
                errors.push(format!("{name}: username and credential go together"))
            }
            // Browsers refuse a TURN server without a credential.
            (None, false) if turn => errors.push(format!(
                "{name}: a turn: or turns: URL needs username and credential, or auth_secret"
            )),
            _ => {}
        }
        if !(MIN_CREDENTIAL_TTL_SECS..=MAX_CREDENTIAL_TTL_SECS).contains(&self.credential_ttl_secs)
        {
            errors.push(format!(
                "{name}.credential_ttl_secs must be between {MIN_CREDENTIAL_TTL_SECS} and {MAX_CREDENTIAL_TTL_SECS}"
            ));
        }
    }

    /// What a client joining as `user_id` at `now_ms` gets.
    pub fn for_user(&self, user_id: &str, now_ms: i64) -> IceServer {
        let (username, credential) = match &self.auth_secret {
            Some(secret) => {
                let expires = now_ms.div_euclid(1000) + self.credential_ttl_secs as i64;
                let (u, c) = rest_credential(secret, user_id, expires);
                (Some(u), Some(c))
            }
            None => (self.username.clone(), self.credential.clone()),
        };
        IceServer {
            urls: self.urls.clone(),
            username,
            credential,
        }
    }
}

/// The TURN REST username and credential for `user_id`, valid until
/// `expires` (unix seconds).
pub fn rest_credential(secret: &str, user_id: &str, expires: i64) -> (String, String) {
    let username = format!("{expires}:{user_id}");
    // SHA-1 because the TURN servers that take this scheme compute
    // exactly HMAC-SHA1; it is a MAC here, where SHA-1 is still sound.
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    (username, credential)
}

/// The servers for one join, in the order configured.
pub fn servers_for(list: &[IceServerConfig], user_id: &str, now_ms: i64) -> Vec<IceServer> {
    list.iter().map(|s| s.for_user(user_id, now_ms)).collect()
}

#[cfg(test)]
mod unit {
    use super::*;

    fn server(urls: &[&str]) -> IceServerConfig {
        IceServerConfig {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            username: None,
            credential: None,
            auth_secret: None,
            credential_ttl_secs: default_ttl(),
        }
    }

    fn problems(s: &IceServerConfig) -> Vec<String> {
        let mut e = Vec::new();
        s.validate(0, &mut e);
        e
    }

    #[test]
    fn urls_are_checked_as_a_browser_would() {
        for ok in [
            "stun:stun.corp.example",
            "stun:10.0.0.5:3478",
            "stuns:stun.corp.example:5349",
            "stun:[fd00::5]:3478",
        ] {
            assert_eq!(problems(&server(&[ok])), Vec::<String>::new(), "{ok}");
        }
        for bad in [
            "http://turn.corp.example",
            "stun://stun.corp.example",
            "stun:",
            "stun:host:0",
            "stun:host:99999",
            "stun:host?transport=udp",
            "STUN:host",
            "stun:host name",
        ] {
            assert!(!problems(&server(&[bad])).is_empty(), "{bad} accepted");
        }
        let mut turn = server(&["turn:t.example:3478?transport=tcp", "turns:t.example"]);
        turn.auth_secret = Some("s3cret".into());
        assert_eq!(problems(&turn), Vec::<String>::new());
        turn.urls = vec!["turn:t.example?transport=sctp".into()];
        assert_eq!(problems(&turn).len(), 1);
    }

    #[test]
    fn credentials_are_checked() {
        let bare_turn = server(&["turn:t.example"]);
        assert!(problems(&bare_turn)[0].contains("needs username and credential"));
        let mut both = bare_turn.clone();
        both.auth_secret = Some("x".into());
        both.username = Some("u".into());
        both.credential = Some("c".into());
        assert!(problems(&both)[0].contains("not both"));
        let mut half = bare_turn.clone();
        half.username = Some("u".into());
        assert!(problems(&half)[0].contains("go together"));
        let mut stun_secret = server(&["stun:s.example"]);
        stun_secret.auth_secret = Some("x".into());
        assert!(problems(&stun_secret)[0].contains("STUN needs no credential"));
        let mut ttl = bare_turn;
        ttl.auth_secret = Some("x".into());
        ttl.credential_ttl_secs = 10;
        assert!(problems(&ttl)[0].contains("credential_ttl_secs"));
    }

    #[test]
    fn rest_credentials_match_the_published_scheme() {
        // HMAC-SHA1("secret", "12345:alice") in base64, computed with
        // another implementation (Python's hmac module).
        let (u, c) = rest_credential("secret", "alice", 12345);
        assert_eq!(u, "12345:alice");
        assert_eq!(c, "TdiSoVbHhpRj+EVHDU6Nhl/juf4=");
    }
}
