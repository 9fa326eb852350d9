//! A stand-in for Microsoft Entra ID's signing side, for Teams sign-in
//! tests: keys made here, a JWKS document served on 127.0.0.1, and access
//! tokens minted with any header and claims.
//!
//! - [`SigningKey`]: an RSA (2048-bit) or P-256 key with its `kid`; its
//!   public half as a JWK ([`SigningKey::jwk`]), optionally naming an
//!   `issuer` as Entra's keys do.
//! - [`JwksServer`]: serves `{"keys": [...]}` over HTTP on a thread of its
//!   own, counts the fetches, and takes a new key list at any time (key
//!   rotation) or a failing status (an outage).
//! - [`v1_claims`] / [`v2_claims`]: the claims of a Teams SSO token of
//!   either version for an app and a user; tests change fields to make
//!   bad ones. [`SigningKey::mint`] signs them; [`unsigned`] and
//!   [`hs256`] make the forgeries a validator must refuse.
//!
//! Blocking std code only (with aws-lc-rs for the keys), like the rest of
//! this library.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The scope Teams asks for on the app's behalf (`api://…/access_as_user`).
pub const SCOPE: &str = "access_as_user";
/// The Teams desktop and mobile client's application id: the `appid`/`azp`
/// of the tokens Teams obtains for a tab.
pub const TEAMS_CLIENT_ID: &str = "1fec8e78-bce4-4aaf-ab1b-5451cc387264";
/// How long minted tokens live (Entra's are 60 to 90 minutes).
pub const LIFETIME_SECS: i64 = 3600;

/// base64url without padding, as JWS uses.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

enum Pair {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
}

/// A signing key and its key id.
pub struct SigningKey {
    pub kid: String,
    pair: Pair,
}

impl SigningKey {
    /// A fresh 2048-bit RSA key (RS256 by default).
    pub fn rsa(kid: &str) -> Result<SigningKey> {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| anyhow!("RSA key generation failed"))?;
        Ok(SigningKey {
            kid: kid.into(),
            pair: Pair::Rsa(pair),
        })
    }

    /// A fresh P-256 key (ES256).
    pub fn p256(kid: &str) -> Result<SigningKey> {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| anyhow!("P-256 key generation failed"))?;
        Ok(SigningKey {
            kid: kid.into(),
            pair: Pair::P256(pair),
        })
    }

    /// The algorithm [`mint`](Self::mint) signs with.
    pub fn default_alg(&self) -> &'static str {
        match self.pair {
            Pair::Rsa(_) => "RS256",
            Pair::P256(_) => "ES256",
        }
    }

    /// The public key's DER bytes (PKCS#1 `RSAPublicKey`, or the
    /// uncompressed EC point): what an HS256 forgery uses as its secret.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Rsa(p) => p.public_key().as_ref().to_vec(),
            Pair::P256(p) => p.public_key().as_ref().to_vec(),
        }
    }

    /// The public key as a JWKS entry (`kid`, `kty`, `use`, and `n`/`e` or
    /// `crv`/`x`/`y`).
    pub fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Rsa(p) => {
                let (n, e) = rsa_public_numbers(p.public_key().as_ref())
                    .expect("aws-lc-rs encodes RSA public keys as PKCS#1 DER");
                json!({"kty": "RSA", "use": "sig", "kid": self.kid, "n": b64(n), "e": b64(e)})
            }
            Pair::P256(p) => {
                // 0x04 || X || Y, 32 bytes each.
                let point = p.public_key().as_ref();
                json!({
                    "kty": "EC", "use": "sig", "kid": self.kid, "crv": "P-256",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                })
            }
        }
    }

    /// The JWKS entry with the `issuer` Entra puts on its keys (a template
    /// with `{tenantid}`, or one tenant's issuer).
    pub fn jwk_for_issuer(&self, issuer: &str) -> Value {
        let mut k = self.jwk();
        k["issuer"] = json!(issuer);
        k
    }

    /// A token with header `{"typ":"JWT","alg":<default>,"kid":<kid>}`.
    pub fn mint(&self, claims: &Value) -> String {
        let header = json!({"typ": "JWT", "alg": self.default_alg(), "kid": self.kid});
        self.mint_with_header(&header, claims)
            .expect("the default algorithm fits the key")
    }

    /// A token with `header` as given, signed with the algorithm it names
    /// (RS256/384/512 and PS256/384/512 for RSA keys, ES256 for P-256).
    pub fn mint_with_header(&self, header: &Value, claims: &Value) -> Result<String> {
        let alg = header["alg"].as_str().context("the header names no alg")?;
        let input = signing_input(header, claims);
        let rng = SystemRandom::new();
        let sig = match &self.pair {
            Pair::Rsa(p) => {
                let enc: &'static dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    other => bail!("an RSA key does not sign {other}"),
                };
                let mut sig = vec![0; p.public_modulus_len()];
                p.sign(enc, &rng, input.as_bytes(), &mut sig)
                    .map_err(|_| anyhow!("RSA signing failed"))?;
                sig
            }
            Pair::P256(p) => {
                if alg != "ES256" {
                    bail!("a P-256 key does not sign {alg}");
                }
                p.sign(&rng, input.as_bytes())
                    .map_err(|_| anyhow!("ECDSA signing failed"))?
                    .as_ref()
                    .to_vec()
            }
        };
        Ok(format!("{input}.{}", b64(&sig)))
    }
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// An `alg: none` token: header and claims, an empty signature.
pub fn unsigned(claims: &Value, kid: Option<&str>) -> String {
    let mut header = json!({"typ": "JWT", "alg": "none"});
    if let Some(k) = kid {
        header["kid"] = json!(k);
    }
    format!("{}.", signing_input(&header, claims))
}

/// An HS256 token with `secret` as the HMAC key: given a public key's
/// bytes, the classic forgery against validators that let the token pick
/// the algorithm.
pub fn hs256(secret: &[u8], claims: &Value, kid: Option<&str>) -> String {
    let mut header = json!({"typ": "JWT", "alg": "HS256"});
    if let Some(k) = kid {
        header["kid"] = json!(k);
    }
    let input = signing_input(&header, claims);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// `n` and `e` of a PKCS#1 `RSAPublicKey` (SEQUENCE of two INTEGERs),
/// without leading zero bytes.
fn rsa_public_numbers(der: &[u8]) -> Result<(&[u8], &[u8])> {
    fn tlv(b: &[u8], tag: u8) -> Result<(&[u8], &[u8])> {
        let (&t, rest) = b.split_first().context("DER: empty")?;
        if t != tag {
            bail!("DER: tag {t:#x}, expected {tag:#x}");
        }
        let (&l, rest) = rest.split_first().context("DER: no length")?;
        let (len, rest) = if l < 0x80 {
            (l as usize, rest)
        } else {
            let n = (l & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                bail!("DER: bad length");
            }
            let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
            (len, &rest[n..])
        };
        if rest.len() < len {
            bail!("DER: truncated");
        }
        Ok((&rest[..len], &rest[len..]))
    }
    fn unsigned_int(b: &[u8]) -> &[u8] {
        let zeros = b.iter().take_while(|&&x| x == 0).count();
        &b[zeros.min(b.len().saturating_sub(1))..]
    }
    let (seq, _) = tlv(der, 0x30)?;
    let (n, rest) = tlv(seq, 0x02)?;
    let (e, _) = tlv(rest, 0x02)?;
    Ok((unsigned_int(n), unsigned_int(e)))
}

/// The app a token is for.
#[derive(Debug, Clone, Copy)]
pub struct App<'a> {
    /// The Entra app registration's client id.
    pub client_id: &'a str,
    /// The site's host (and port), as in `api://<host>/<client id>`.
    pub public_host: &'a str,
    /// The cloud's sign-in URL (`https://login.microsoftonline.com`).
    pub login_url: &'a str,
}

impl App<'_> {
    /// `api://<host>/<client id>`: the audience of v1 tokens.
    pub fn app_id_uri(&self) -> String {
        format!("api://{}/{}", self.public_host, self.client_id)
    }
}

/// The person a token names.
#[derive(Debug, Clone, Copy)]
pub struct Person<'a> {
    pub tenant: &'a str,
    /// Entra's object id (a GUID).
    pub oid: &'a str,
    /// User principal name (mutable; never an identity).
    pub upn: &'a str,
    pub name: &'a str,
}

/// Claims of a v1 access token as Teams obtains it for a tab (the app
/// registration's `accessTokenAcceptedVersion` null or 1): audience the
/// App ID URI, issuer `https://sts.windows.net/<tid>/`.
pub fn v1_claims(app: &App<'_>, who: &Person<'_>, now_secs: i64) -> Value {
    json!({
        "aud": app.app_id_uri(),
        "iss": format!("https://sts.windows.net/{}/", who.tenant),
        "iat": now_secs,
        "nbf": now_secs,
        "exp": now_secs + LIFETIME_SECS,
        "ver": "1.0",
        "tid": who.tenant,
        "oid": who.oid,
        "sub": format!("sub-{}", who.oid),
        "scp": SCOPE,
        "appid": TEAMS_CLIENT_ID,
        "upn": who.upn,
        "unique_name": who.upn,
        "name": who.name,
    })
}

/// Claims of a v2 access token (`accessTokenAcceptedVersion` 2): audience
/// the client id, issuer `<login url>/<tid>/v2.0`.
pub fn v2_claims(app: &App<'_>, who: &Person<'_>, now_secs: i64) -> Value {
    json!({
        "aud": app.client_id,
        "iss": format!("{}/{}/v2.0", app.login_url, who.tenant),
        "iat": now_secs,
        "nbf": now_secs,
        "exp": now_secs + LIFETIME_SECS,
        "ver": "2.0",
        "tid": who.tenant,
        "oid": who.oid,
        "sub": format!("sub-{}", who.oid),
        "scp": SCOPE,
        "azp": TEAMS_CLIENT_ID,
        "preferred_username": who.upn,
        "name": who.name,
    })
}

struct Shared {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
    status: AtomicU16,
    stop: AtomicBool,
}

/// A JWKS document served at `http://127.0.0.1:<port>/keys`.
pub struct JwksServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl JwksServer {
    pub fn start(keys: Vec<Value>) -> Result<JwksServer> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the JWKS server")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            keys: Mutex::new(keys),
            fetches: AtomicUsize::new(0),
            status: AtomicU16::new(200),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("jwks-server".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(c) = conn {
                        // One short request per connection; a broken
                        // client only loses its own answer.
                        let _ = answer(c, &s);
                    }
                }
            })?;
        Ok(JwksServer {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// Where the keys are: the `[m365] jwks_url` of a test.
    pub fn url(&self) -> String {
        format!("http://{}/keys", self.addr)
    }

    /// How many times the key set was fetched.
    pub fn fetches(&self) -> usize {
        self.shared.fetches.load(Ordering::SeqCst)
    }

    /// Serves these keys from now on (rotation).
    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.shared.keys.lock().unwrap_or_else(|e| e.into_inner()) = keys;
    }

    /// Answers with this status (and no keys) unless it is 200.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut conn: TcpStream, s: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let status = s.status.load(Ordering::SeqCst);
    let body = if status == 200 {
        s.fetches.fetch_add(1, Ordering::SeqCst);
        let keys = s.keys.lock().unwrap_or_else(|e| e.into_inner()).clone();
        json!({ "keys": keys }).to_string()
    } else {
        "{}".to_owned()
    };
    write!(
        conn,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_with_the_published_key() {
        let key = SigningKey::rsa("k1").unwrap();
        let jwk = key.jwk();
        let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256);
        let token = key.mint(&json!({"a": 1}));
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        signature::RsaPublicKeyComponents { n: &n, e: &e }
            .verify(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                input.as_bytes(),
                &sig,
            )
            .unwrap();

        let ec = SigningKey::p256("k2").unwrap();
        let jwk = ec.jwk();
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
        let token = ec.mint(&json!({"a": 1}));
        let (input, sig) = token.rsplit_once('.').unwrap();
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
    }

    #[test]
    fn the_server_counts_fetches_and_rotates() {
        let server = JwksServer::start(vec![json!({"kid": "a"})]).unwrap();
        let get = || {
            let mut c = TcpStream::connect(server.addr).unwrap();
            c.write_all(b"GET /keys HTTP/1.1\r\nhost: x\r\n\r\n")
                .unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        };
        assert!(get().ends_with(r#"{"keys":[{"kid":"a"}]}"#));
        server.set_keys(vec![json!({"kid": "b"})]);
        assert!(get().ends_with(r#"{"keys":[{"kid":"b"}]}"#));
        server.set_status(503);
        assert!(get().starts_with("HTTP/1.1 503"));
        assert_eq!(server.fetches(), 2);
    }
}
