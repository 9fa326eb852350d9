//! Teams SSO access tokens: the checks, with the keys given ([`KeySet`])
//! and the time given, so this file does no IO and reads no clock
//! ([`super::jwks::KeyCache`] fetches the keys).
//!
//! A token is accepted when, in this order:
//! 1. it is a compact JWS whose header names an allowed asymmetric
//!    algorithm ([`Alg`]: RS256/384/512, PS256/384/512, ES256/384; `none`
//!    and HMAC are refused by name, never tried) and a `kid`;
//! 2. the JWKS holds that `kid`, of the algorithm's key type (and its
//!    `alg`, when the entry names one), and the signature verifies;
//! 3. `exp` is present and not past, `nbf` and `iat` (when present) not in
//!    the future, each with `clock_skew_secs`;
//! 4. `ver` pairs audience and issuer strictly: "1.0" needs `aud` = the
//!    App ID URI `api://<host>/<client id>` and `iss` =
//!    `https://sts.windows.net/<tid>/`; "2.0" needs `aud` = the client id
//!    and `iss` = the cloud's `<login>/<tid>/v2.0`;
//! 5. `tid` is a GUID (before it is put into any issuer) and the key, if
//!    its JWKS entry names an `issuer` (Entra's do, as a `{tenantid}`
//!    template or one tenant's), is good for that tenant: the entry's
//!    issuer with `tid` substituted is the token's `iss`, or (Entra names
//!    the v2 form on keys that also sign v1 tokens) the v2 issuer of `tid`;
//! 6. `tid` is in `allowed_tenants`, `scp` lists `access_as_user`, and
//!    `oid` is a GUID.
//!
//! Why aws-lc-rs directly rather than `jsonwebtoken` or `openidconnect`:
//! it is already what control signs and hashes with (no new crate), its
//! RSA parameters refuse keys under 2048 bits, and the JWS part we need is
//! small enough to read whole: split, base64url, one `match` from the
//! allow-listed algorithm to its verification parameters. `openidconnect`
//! checks ID tokens (nonce, `azp`, its own claim types) and cannot express
//! the v1/v2 pairing; `jsonwebtoken` would be a second JWT stack.

use std::collections::HashMap;

use aws_lc_rs::signature;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::M365Config;
use super::cloud::{Cloud, V1_ISSUER_TEMPLATE};
use crate::oidc::{ExternalIdentity, TENANT_PLACEHOLDER, is_guid};

/// The delegated scope the Teams tab's token must carry.
pub const SCOPE: &str = "access_as_user";
/// Entra's access tokens are a few KiB; anything far larger is not one.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused. [`Rejection::reason`] is the stable code (the
/// audit log and the answer's message carry it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    #[error("not a compact JWS: {0}")]
    Malformed(String),
    #[error("alg none: the token is not signed")]
    AlgNone,
    #[error("alg {0} is a shared-secret (HMAC) algorithm; only the tenant's public keys sign")]
    AlgSymmetric(String),
    #[error("alg {0:?} is not allowed (RS256/384/512, PS256/384/512, ES256/384 are)")]
    AlgNotAllowed(String),
    #[error("no key {0:?} in the tenant signing keys")]
    UnknownKey(String),
    #[error("key {kid:?} does not fit alg {alg}")]
    KeyMismatch { kid: String, alg: &'static str },
    #[error("the signature does not verify")]
    BadSignature,
    #[error("claim {0} is missing or not of its type")]
    MissingClaim(&'static str),
    #[error("expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    #[error("{0}")]
    NotYetValid(String),
    #[error("token version {0:?} is neither 1.0 nor 2.0")]
    UnsupportedVersion(String),
    #[error("tenant {0:?} is not a tenant id (GUID)")]
    InvalidTenant(String),
    #[error("audience {got:?} is not {want:?}")]
    WrongAudience { got: String, want: String },
    #[error("issuer {got:?} is not {want:?}")]
    WrongIssuer { got: String, want: String },
    #[error("key {kid:?} signs for {key_issuer:?}, not {iss:?}")]
    KeyIssuerMismatch {
        kid: String,
        key_issuer: String,
        iss: String,
    },
    #[error("tenant {0} may not sign in here")]
    TenantNotAllowed(String),
    #[error("scope access_as_user missing (scp {0:?})")]
    MissingScope(String),
    #[error("oid missing or not a GUID")]
    MissingOid,
}

impl Rejection {
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::AlgNone => "alg_none",
            Rejection::AlgSymmetric(_) => "alg_symmetric",
            Rejection::AlgNotAllowed(_) => "alg_not_allowed",
            Rejection::UnknownKey(_) => "unknown_key",
            Rejection::KeyMismatch { .. } => "key_mismatch",
            Rejection::BadSignature => "bad_signature",
            Rejection::MissingClaim(_) => "missing_claim",
            Rejection::Expired { .. } => "expired",
            Rejection::NotYetValid(_) => "not_yet_valid",
            Rejection::UnsupportedVersion(_) => "unsupported_version",
            Rejection::InvalidTenant(_) => "invalid_tenant",
            Rejection::WrongAudience { .. } => "wrong_audience",
            Rejection::WrongIssuer { .. } => "wrong_issuer",
            Rejection::KeyIssuerMismatch { .. } => "key_issuer_mismatch",
            Rejection::TenantNotAllowed(_) => "tenant_not_allowed",
            Rejection::MissingScope(_) => "missing_scope",
            Rejection::MissingOid => "missing_oid",
        }
    }
}

/// The signature algorithms a token may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
}

impl Alg {
    pub fn parse(name: &str) -> Result<Alg, Rejection> {
        Ok(match name {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            n if n.eq_ignore_ascii_case("none") => return Err(Rejection::AlgNone),
            n if n.to_ascii_uppercase().starts_with("HS") => {
                return Err(Rejection::AlgSymmetric(n.to_owned()));
            }
            n => return Err(Rejection::AlgNotAllowed(n.to_owned())),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicKey {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed point (0x04 || X || Y).
    P256(Vec<u8>),
    P384(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    public: PublicKey,
    /// The entry's `alg`, when it pins one.
    alg: Option<String>,
    /// The entry's `issuer` (Entra's extension), when it names one.
    issuer: Option<String>,
}

impl Key {
    fn verify(&self, kid: &str, alg: Alg, input: &[u8], sig: &[u8]) -> Result<(), Rejection> {
        let mismatch = || Rejection::KeyMismatch {
            kid: kid.to_owned(),
            alg: alg.name(),
        };
        if self.alg.as_deref().is_some_and(|a| a != alg.name()) {
            return Err(mismatch());
        }
        let ok = match (&self.public, alg) {
            (PublicKey::Rsa { n, e }, _) => {
                let params = match alg {
                    Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Alg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
                    Alg::Es256 | Alg::Es384 => return Err(mismatch()),
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, input, sig)
                    .is_ok()
            }
            (PublicKey::P256(point), Alg::Es256) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(input, sig)
                    .is_ok()
            }
            (PublicKey::P384(point), Alg::Es384) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(input, sig)
                    .is_ok()
            }
            _ => return Err(mismatch()),
        };
        if ok {
            Ok(())
        } else {
            Err(Rejection::BadSignature)
        }
    }
}

/// The signing keys of a JWKS document, by `kid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: HashMap<String, Key>,
}

impl KeySet {
    /// Reads a JWKS document. Entries that cannot sign a token we accept
    /// (encryption keys, other key types or curves, no `kid`) are left
    /// out; a document that is not a JWKS is an error.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, String> {
        let doc: Value = serde_json::from_slice(json).map_err(|e| format!("JWKS: {e}"))?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS: no \"keys\" array")?;
        let mut keys = HashMap::new();
        for entry in entries {
            if let Some((kid, key)) = parse_jwk(entry) {
                keys.insert(kid, key);
            }
        }
        Ok(KeySet { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

fn parse_jwk(v: &Value) -> Option<(String, Key)> {
    let s = |name: &str| v.get(name).and_then(Value::as_str);
    if s("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let kid = s("kid")?.to_owned();
    let public = match s("kty")? {
        "RSA" => {
            let strip = |b: Vec<u8>| {
                let zeros = b.iter().take_while(|&&x| x == 0).count();
                b[zeros..].to_vec()
            };
            let n = strip(b64(s("n")?)?);
            let e = strip(b64(s("e")?)?);
            if n.is_empty() || e.is_empty() {
                return None;
            }
            PublicKey::Rsa { n, e }
        }
        "EC" => {
            let (len, p384) = match s("crv")? {
                "P-256" => (32, false),
                "P-384" => (48, true),
                _ => return None,
            };
            let x = b64(s("x")?)?;
            let y = b64(s("y")?)?;
            if x.len() != len || y.len() != len {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if p384 {
                PublicKey::P384(point)
            } else {
                PublicKey::P256(point)
            }
        }
        _ => return None,
    };
    Some((
        kid,
        Key {
            public,
            alg: s("alg").map(str::to_owned),
            issuer: s("issuer").map(str::to_owned),
        },
    ))
}

/// The token format Entra issued (the app registration's
/// `accessTokenAcceptedVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A person a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoIdentity {
    pub version: Version,
    pub issuer: String,
    pub tenant: String,
    pub oid: String,
    /// `name`: for display.
    pub name: Option<String>,
    /// `upn`/`unique_name` (v1) or `preferred_username` (v2): a username
    /// suggestion for a new account, never an identity.
    pub username: Option<String>,
    /// `email`, when the app registration adds it: for contact only.
    pub email: Option<String>,
}

impl SsoIdentity {
    /// As an OpenID Connect sign-in names the same person: its
    /// [`ExternalIdentity::account_key`] is `tid:<tid>:<oid>`, so one
    /// person signing in both ways has one account.
    pub fn external(&self) -> ExternalIdentity {
        ExternalIdentity {
            issuer: self.issuer.clone(),
            tenant: Some(self.tenant.clone()),
            subject: self.oid.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
            username: self.username.clone(),
            groups: Vec::new(),
        }
    }
}

/// What a token must say, from `[m365]`.
#[derive(Debug, Clone)]
pub struct Rules {
    pub cloud: Cloud,
    pub client_id: String,
    /// `api://<host>/<client id>`.
    pub app_id_uri: String,
    pub allowed_tenants: Vec<String>,
    pub clock_skew_secs: i64,
}

impl Rules {
    pub fn new(config: &M365Config) -> Rules {
        Rules {
            cloud: config.cloud,
            client_id: config.client_id.clone(),
            app_id_uri: config.app_id_uri(),
            allowed_tenants: config.allowed_tenants.clone(),
            clock_skew_secs: config.clock_skew_secs.min(i64::MAX as u64) as i64,
        }
    }

    /// Checks `token` against `keys` at `now` (Unix seconds).
    pub fn validate(&self, token: &str, keys: &KeySet, now: i64) -> Result<SsoIdentity, Rejection> {
        let jws = Jws::parse(token)?;
        let key = keys
            .keys
            .get(&jws.kid)
            .ok_or_else(|| Rejection::UnknownKey(jws.kid.clone()))?;
        key.verify(
            &jws.kid,
            jws.alg,
            jws.signing_input.as_bytes(),
            &jws.signature,
        )?;
        // Signed by the tenant's key: the claims can be read.
        let c = &jws.claims;
        let skew = self.clock_skew_secs;
        let exp = time_claim(c, "exp")?.ok_or(Rejection::MissingClaim("exp"))?;
        if now >= exp.saturating_add(skew) {
            return Err(Rejection::Expired { exp, now });
        }
        if let Some(nbf) = time_claim(c, "nbf")?
            && nbf > now.saturating_add(skew)
        {
            return Err(Rejection::NotYetValid(format!(
                "not valid before {nbf} (now {now})"
            )));
        }
        if let Some(iat) = time_claim(c, "iat")?
            && iat > now.saturating_add(skew)
        {
            return Err(Rejection::NotYetValid(format!(
                "issued in the future at {iat} (now {now})"
            )));
        }
        let ver = str_claim(c, "ver").ok_or(Rejection::MissingClaim("ver"))?;
        let version = match ver {
            "1.0" => Version::V1,
            "2.0" => Version::V2,
            other => return Err(Rejection::UnsupportedVersion(other.to_owned())),
        };
        let tid = str_claim(c, "tid").ok_or(Rejection::MissingClaim("tid"))?;
        if !is_guid(tid) {
            return Err(Rejection::InvalidTenant(tid.to_owned()));
        }
        let (want_aud, want_iss) = match version {
            Version::V1 => (
                self.app_id_uri.clone(),
                V1_ISSUER_TEMPLATE.replace("{tid}", tid),
            ),
            Version::V2 => (self.client_id.clone(), self.cloud.v2_issuer(tid)),
        };
        let aud = str_claim(c, "aud").ok_or(Rejection::MissingClaim("aud"))?;
        if aud != want_aud {
            return Err(Rejection::WrongAudience {
                got: aud.to_owned(),
                want: want_aud,
            });
        }
        let iss = str_claim(c, "iss").ok_or(Rejection::MissingClaim("iss"))?;
        if iss != want_iss {
            return Err(Rejection::WrongIssuer {
                got: iss.to_owned(),
                want: want_iss,
            });
        }
        if let Some(key_issuer) = &key.issuer {
            let for_tenant = key_issuer.replace(TENANT_PLACEHOLDER, tid);
            let fits = for_tenant == iss
                || (version == Version::V1 && for_tenant == self.cloud.v2_issuer(tid));
            if !fits {
                return Err(Rejection::KeyIssuerMismatch {
                    kid: jws.kid.clone(),
                    key_issuer: key_issuer.clone(),
                    iss: iss.to_owned(),
                });
            }
        }
        if !self
            .allowed_tenants
            .iter()
            .any(|t| t.eq_ignore_ascii_case(tid))
        {
            return Err(Rejection::TenantNotAllowed(tid.to_owned()));
        }
        let scp = str_claim(c, "scp").unwrap_or("");
        if !scp.split(' ').any(|s| s == SCOPE) {
            return Err(Rejection::MissingScope(scp.to_owned()));
        }
        let oid = str_claim(c, "oid")
            .filter(|o| is_guid(o))
            .ok_or(Rejection::MissingOid)?;
        let text = |name: &str| {
            str_claim(c, name)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let username = match version {
            Version::V1 => text("upn").or_else(|| text("unique_name")),
            Version::V2 => text("preferred_username"),
        };
        Ok(SsoIdentity {
            version,
            issuer: iss.to_owned(),
            // Lower case, as Entra writes ids: one person, one key.
            tenant: tid.to_ascii_lowercase(),
            oid: oid.to_ascii_lowercase(),
            name: text("name"),
            username,
            email: text("email"),
        })
    }
}

/// A compact JWS taken apart; nothing in it is trusted yet.
struct Jws {
    alg: Alg,
    kid: String,
    signing_input: String,
    signature: Vec<u8>,
    claims: Map<String, Value>,
}

impl Jws {
    fn parse(token: &str) -> Result<Jws, Rejection> {
        let bad = |m: &str| Rejection::Malformed(m.to_owned());
        if token.len() > MAX_TOKEN_BYTES {
            return Err(bad("longer than any Entra token"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not three dot-separated parts"));
        };
        let header = json_object(h).ok_or_else(|| bad("the header is not base64url JSON"))?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("the header names no alg"))?;
        let alg = Alg::parse(alg)?;
        if header.contains_key("crit") {
            return Err(bad("critical header extensions are not understood"));
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("the header names no kid"))?
            .to_owned();
        let claims = json_object(p).ok_or_else(|| bad("the payload is not base64url JSON"))?;
        let signature = b64(s).ok_or_else(|| bad("the signature is not base64url"))?;
        Ok(Jws {
            alg,
            kid,
            signing_input: format!("{h}.{p}"),
            signature,
            claims,
        })
    }
}

fn json_object(part: &str) -> Option<Map<String, Value>> {
    match serde_json::from_slice(&b64(part)?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn str_claim<'a>(c: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    c.get(name).and_then(Value::as_str)
}

/// A NumericDate claim: absent is `None`, present but not a number is
/// refused.
fn time_claim(c: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Rejection> {
    match c.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(Rejection::MissingClaim(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_outside_the_list_are_named() {
        assert_eq!(Alg::parse("none"), Err(Rejection::AlgNone));
        assert_eq!(Alg::parse("NONE"), Err(Rejection::AlgNone));
        assert_eq!(
            Alg::parse("HS256"),
            Err(Rejection::AlgSymmetric("HS256".into()))
        );
        assert_eq!(
            Alg::parse("EdDSA"),
            Err(Rejection::AlgNotAllowed("EdDSA".into()))
        );
        for a in [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
        ] {
            assert_eq!(Alg::parse(a).unwrap().name(), a);
        }
    }

    #[test]
    fn malformed_tokens_say_how() {
        let rules = Rules {
            cloud: Cloud::Commercial,
            client_id: "c".into(),
            app_id_uri: "api://h/c".into(),
            allowed_tenants: Vec::new(),
            clock_skew_secs: 60,
        };
        let keys = KeySet::default();
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k"}"#);
        let p = URL_SAFE_NO_PAD.encode(br#"{"a":1}"#);
        for (token, want) in [
            ("abc".to_owned(), "malformed"),
            ("a.b.c.d".to_owned(), "malformed"),
            (format!("{h}.{p}.!!"), "malformed"),
            (format!("{h}.bm90IGpzb24.c2ln"), "malformed"),
            ("x".repeat(MAX_TOKEN_BYTES + 1), "malformed"),
            (format!("{h}.{p}.c2ln"), "unknown_key"),
        ] {
            let r = rules.validate(&token, &keys, 0).unwrap_err();
            assert_eq!(r.reason(), want, "{token:.40}: {r}");
        }
    }

    #[test]
    fn jwks_entries_that_cannot_sign_are_left_out() {
        let doc = br#"{"keys":[
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","n":"AQAB","e":"AQAB"},
            {"kty":"OKP","kid":"ed","crv":"Ed25519","x":"AA"},
            {"kty":"EC","kid":"short","crv":"P-256","x":"AA","y":"AA"},
            {"kty":"RSA","kid":"ok","n":"AAEB","e":"AQAB","issuer":"https://i/{tenantid}/v2.0"}
        ]}"#;
        let set = KeySet::from_jwks(doc).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.contains("ok"));
        assert_eq!(
            set.keys["ok"].public,
            PublicKey::Rsa {
                n: vec![1, 1],
                e: vec![1, 0, 1]
            }
        );
        assert!(KeySet::from_jwks(b"[]").is_err());
    }
}
