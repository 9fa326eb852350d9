//! OpenID Connect login (authorization code + PKCE, state and nonce kept on
//! the server), with the Microsoft Entra ID rules that matter:
//!
//! - **Multi-tenant issuers.** Entra's `common`/`organizations` metadata
//!   names the issuer `https://login.microsoftonline.com/{tenantid}/v2.0`.
//!   Such a template is never compared literally: the token's `tid` must be
//!   a GUID, is substituted, and the result must equal `iss` exactly (and
//!   `tid` must be allowed, when a tenant list is configured). A JWKS key
//!   that carries its own `issuer` is only good for that issuer.
//! - **Stable identity.** A user is (tenant or issuer, `oid` if present else
//!   `sub`): see [`ExternalIdentity::account_key`]. Never the email, which
//!   users and admins can change.
//! - **Groups overage.** With too many groups Entra leaves `groups` out and
//!   points elsewhere (`_claim_names`/`_claim_sources`, or `hasgroups`). A
//!   missing list is then not "no groups": the login is refused unless
//!   configured to carry on without groups ([`GroupsOverage`]).
//!
//! Use: [`OidcClient::discover`] once, then per login
//! [`OidcClient::begin_login`] (redirect the browser to the URL; bind the
//! returned `state` to the browser, e.g. in a short-lived cookie, and check
//! it on the callback) and [`OidcClient::complete_login`] with the callback's
//! query parameters.

pub mod http;
mod provider;
mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IdToken, IdTokenVerifier, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use serde::{Deserialize, Serialize};

pub use http::{HttpClient, HttpError};
pub use provider::{Provider, refresh_loop};
pub use state::{LoginStateStore, MemoryLoginStates, PendingLogin, StateStoreError};

/// The placeholder in a multi-tenant issuer.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// What to do when the ID token says the user's groups did not fit in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupsOverage {
    /// Refuse the login (fail closed): group-based rules cannot be applied.
    #[default]
    Refuse,
    /// Log in with no groups.
    NoGroups,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer ID tokens must carry, e.g.
    /// `https://login.microsoftonline.com/<tid>/v2.0`, or with Entra's
    /// multi-tenant metadata `https://login.microsoftonline.com/{tenantid}/v2.0`.
    pub issuer: String,
    /// Where the provider's metadata is. Default: the issuer +
    /// `/.well-known/openid-configuration`; required for a templated issuer
    /// (e.g. `https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration`).
    #[serde(default)]
    pub discovery_url: Option<String>,
    pub client_id: String,
    /// Absent for a public client (PKCE alone).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Our callback URL, as registered with the provider.
    pub redirect_url: String,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Tenants (`tid`) accepted with a templated issuer; empty = any.
    #[serde(default)]
    pub allowed_tenants: Vec<String>,
    #[serde(default)]
    pub groups_overage: GroupsOverage,
    /// How long a started login may take, in seconds.
    #[serde(default = "default_login_timeout")]
    pub login_timeout_secs: u64,
    /// Clock difference tolerated on `exp` and `iat`, in seconds.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_secs: u64,
    /// The ID token claim that suggests a username for a new account.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// The ID token claim that holds the user's display name.
    #[serde(default = "default_display_name_claim")]
    pub display_name_claim: String,
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email"].map(String::from).to_vec()
}
fn default_login_timeout() -> u64 {
    600
}
fn default_clock_skew() -> u64 {
    120
}
fn default_username_claim() -> String {
    "preferred_username".into()
}
fn default_display_name_claim() -> String {
    "name".into()
}

impl OidcConfig {
    pub fn new(
        issuer: &str,
        client_id: &str,
        client_secret: Option<&str>,
        redirect_url: &str,
    ) -> Self {
        OidcConfig {
            issuer: issuer.into(),
            discovery_url: None,
            client_id: client_id.into(),
            client_secret: client_secret.map(String::from),
            redirect_url: redirect_url.into(),
            scopes: default_scopes(),
            allowed_tenants: Vec::new(),
            groups_overage: GroupsOverage::Refuse,
            login_timeout_secs: default_login_timeout(),
            clock_skew_secs: default_clock_skew(),
            username_claim: default_username_claim(),
            display_name_claim: default_display_name_claim(),
        }
    }

    fn templated(&self) -> bool {
        self.issuer.contains(TENANT_PLACEHOLDER)
    }
}

/// A user as the identity provider vouched for them, after every check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalIdentity {
    /// The token's `iss` (for Entra, tenant-specific).
    pub issuer: String,
    /// Entra's `tid`, when present.
    pub tenant: Option<String>,
    /// `oid` when present (Entra's immutable user id), else `sub`.
    pub subject: String,
    /// For display and contact only: mutable, never an identity.
    pub email: Option<String>,
    /// The configured display-name claim (`name` by default).
    pub name: Option<String>,
    /// The configured username claim (`preferred_username` by default): a
    /// suggestion for a new account's username, nothing more.
    pub username: Option<String>,
    /// Group ids; empty when the token had none (or, with
    /// [`GroupsOverage::NoGroups`], did not list them).
    pub groups: Vec<String>,
}

impl ExternalIdentity {
    /// The key to bind a local account to: tenant and `oid` for Entra
    /// (one user across app registrations), issuer and `sub` otherwise.
    pub fn account_key(&self) -> String {
        match &self.tenant {
            Some(tid) => format!("tid:{tid}:{}", self.subject),
            None => format!("iss:{}:{}", self.issuer, self.subject),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("OIDC configuration: {0}")]
    Config(String),
    #[error("provider discovery failed: {0}")]
    Discovery(String),
    /// The callback's `state` is unknown: forged, replayed, or from another
    /// browser.
    #[error("login state mismatch (unknown, replayed or forged callback)")]
    StateMismatch,
    #[error("login took too long")]
    StateExpired,
    #[error("the provider refused the login: {0}")]
    ProviderError(String),
    /// The token endpoint refused the code (already used, expired, PKCE
    /// verifier wrong).
    #[error("authorization code rejected: {0}")]
    CodeRejected(String),
    #[error("token request failed: {0}")]
    TokenEndpoint(String),
    #[error("ID token issuer is wrong: {0}")]
    WrongIssuer(String),
    #[error("ID token audience is wrong: {0}")]
    WrongAudience(String),
    #[error("ID token expired or not yet valid: {0}")]
    Expired(String),
    #[error("ID token nonce does not match the login: {0}")]
    NonceMismatch(String),
    #[error("ID token signature invalid: {0}")]
    BadSignature(String),
    /// Signed with a key the provider's JWKS does not (or no longer, or not
    /// yet) list.
    #[error("ID token signed with an unknown key")]
    UnknownKey,
    #[error("ID token tenant not allowed: {0}")]
    TenantNotAllowed(String),
    #[error("the user's groups did not fit in the token (groups overage); refusing as configured")]
    GroupsOverage,
    #[error("ID token invalid: {0}")]
    InvalidToken(String),
    #[error(transparent)]
    State(#[from] StateStoreError),
}

/// Entra's claims on top of the standard ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntraClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Overage: `{"groups": "src1"}` means the groups are elsewhere.
    #[serde(
        rename = "_claim_names",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub claim_names: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(
        rename = "_claim_sources",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub claim_sources: Option<serde_json::Value>,
    /// Implicit-flow overage marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hasgroups: Option<bool>,
}

impl AdditionalClaims for EntraClaims {}

pub type EntraIdToken = IdToken<
    EntraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// Asymmetric algorithms only: no `none`, no HMAC (whose "key" would be the
/// client secret, or a public key misused as one).
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Checks ID tokens against one provider's keys and our rules. Separate
/// from [`OidcClient`] so tokens can be checked against a given key set.
#[derive(Clone)]
pub struct IdTokenValidator {
    config: OidcConfig,
    jwks: CoreJsonWebKeySet,
    /// Keys that name their own issuer (Entra's JWKS does): kid → issuer.
    key_issuers: HashMap<String, String>,
    clock: Clock,
}

impl std::fmt::Debug for IdTokenValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTokenValidator")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl IdTokenValidator {
    /// `jwks_json` is the provider's JWKS document as served.
    pub fn new(config: OidcConfig, jwks_json: &[u8]) -> Result<Self, OidcError> {
        let jwks: CoreJsonWebKeySet = serde_json::from_slice(jwks_json)
            .map_err(|e| OidcError::Discovery(format!("JWKS: {e}")))?;
        #[derive(Deserialize)]
        struct RawKey {
            kid: Option<String>,
            issuer: Option<String>,
        }
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<RawKey>,
        }
        let raw: RawSet = serde_json::from_slice(jwks_json)
            .map_err(|e| OidcError::Discovery(format!("JWKS: {e}")))?;
        let key_issuers = raw
            .keys
            .into_iter()
            .filter_map(|k| Some((k.kid?, k.issuer?)))
            .collect::<HashMap<String, String>>();
        Ok(IdTokenValidator {
            config,
            jwks,
            key_issuers,
            clock: Arc::new(SystemTime::now),
        })
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Verifies `id_token` (signature, issuer, audience, expiry, nonce, the
    /// Entra rules) and returns who it names.
    pub fn validate(&self, id_token: &str, nonce: &str) -> Result<ExternalIdentity, OidcError> {
        let token: EntraIdToken = id_token
            .parse()
            .map_err(|e| OidcError::InvalidToken(format!("{e}")))?;
        let skew = Duration::from_secs(self.config.clock_skew_secs);
        let now = (self.clock)();
        let templated = self.config.templated();
        // With a template the literal check is ours (below); openidconnect
        // still wants a URL.
        let issuer_url = if templated {
            IssuerUrl::new(self.config.issuer.replace(TENANT_PLACEHOLDER, "tenant"))
        } else {
            IssuerUrl::new(self.config.issuer.clone())
        }
        .map_err(|e| OidcError::Config(format!("issuer: {e}")))?;
        let expiry_now = chrono::DateTime::<chrono::Utc>::from(now - skew);
        let latest_iat = chrono::DateTime::<chrono::Utc>::from(now + skew);
        let verifier = IdTokenVerifier::new_public_client(
            ClientId::new(self.config.client_id.clone()),
            issuer_url,
            self.jwks.clone(),
        )
        .set_allowed_algs(ALLOWED_ALGS)
        .require_issuer_match(!templated)
        .set_time_fn(move || expiry_now)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > latest_iat {
                Err(format!("issued in the future ({iat})"))
            } else {
                Ok(())
            }
        });
        let claims = token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(map_verification_error)?;

        let iss = claims.issuer().as_str().to_owned();
        let extra = claims.additional_claims();
        let tid = extra.tid.clone();
        if templated {
            let tid = tid
                .as_deref()
                .ok_or_else(|| OidcError::WrongIssuer("no tid for a multi-tenant issuer".into()))?;
            if !is_guid(tid) {
                return Err(OidcError::WrongIssuer(format!("tid {tid:?} is not a GUID")));
            }
            let expected = self.config.issuer.replace(TENANT_PLACEHOLDER, tid);
            if iss != expected {
                return Err(OidcError::WrongIssuer(format!("{iss} is not {expected}")));
            }
            if !self.config.allowed_tenants.is_empty()
                && !self.config.allowed_tenants.iter().any(|t| t == tid)
            {
                return Err(OidcError::TenantNotAllowed(tid.to_owned()));
            }
        } else if iss != self.config.issuer {
            return Err(OidcError::WrongIssuer(format!(
                "{iss} is not {}",
                self.config.issuer
            )));
        }
        // A key pinned to an issuer signs only for that issuer.
        if let Some(kid) = jwt_kid(id_token)
            && let Some(key_issuer) = self.key_issuers.get(&kid)
        {
            let expected =
                key_issuer.replace(TENANT_PLACEHOLDER, tid.as_deref().unwrap_or_default());
            if expected != iss {
                return Err(OidcError::WrongIssuer(format!(
                    "key {kid} signs for {key_issuer}, not {iss}"
                )));
            }
        }

        let overage = extra
            .claim_names
            .as_ref()
            .is_some_and(|names| names.contains_key("groups"))
            || extra.hasgroups == Some(true);
        let groups = if overage {
            match self.config.groups_overage {
                GroupsOverage::Refuse => return Err(OidcError::GroupsOverage),
                GroupsOverage::NoGroups => Vec::new(),
            }
        } else {
            extra.groups.clone().unwrap_or_default()
        };
        let subject = extra
            .oid
            .clone()
            .unwrap_or_else(|| claims.subject().as_str().to_owned());
        // The signature is verified above, so the payload can be read as is
        // for the claims whose names are configured.
        let raw = jwt_payload(id_token).unwrap_or_default();
        let string_claim = |name: &str| {
            raw.get(name)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Ok(ExternalIdentity {
            issuer: iss,
            tenant: tid,
            subject,
            email: claims.email().map(|e| e.as_str().to_owned()),
            name: string_claim(&self.config.display_name_claim),
            username: string_claim(&self.config.username_claim),
            groups,
        })
    }
}

fn map_verification_error(e: openidconnect::ClaimsVerificationError) -> OidcError {
    use openidconnect::ClaimsVerificationError as E;
    match e {
        E::Expired(m) => OidcError::Expired(m),
        E::InvalidAudience(m) => OidcError::WrongAudience(m),
        E::InvalidIssuer(m) => OidcError::WrongIssuer(m),
        E::InvalidNonce(m) => OidcError::NonceMismatch(m),
        E::SignatureVerification(openidconnect::SignatureVerificationError::NoMatchingKey) => {
            OidcError::UnknownKey
        }
        E::SignatureVerification(e) => OidcError::BadSignature(e.to_string()),
        other => OidcError::InvalidToken(other.to_string()),
    }
}

/// `8-4-4-4-12` hex digits: how Entra writes tenant, object and client ids.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Part `n` of a compact JWT, decoded as a JSON object.
fn jwt_part(jwt: &str, n: usize) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine as _;
    let part = jwt.split('.').nth(n)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice::<serde_json::Value>(&bytes).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The `kid` in a compact JWT's header, if any.
fn jwt_kid(jwt: &str) -> Option<String> {
    jwt_part(jwt, 0)?.get("kid")?.as_str().map(str::to_owned)
}

fn jwt_payload(jwt: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    jwt_part(jwt, 1)
}

/// Where to send the browser, and the `state` it will come back with.
#[derive(Debug, Clone)]
pub struct LoginStart {
    pub authorize_url: String,
    pub state: String,
}

/// The query parameters of the provider's redirect to our callback.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    /// RFC 9207: the provider names itself, against mix-up attacks.
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub identity: ExternalIdentity,
    pub return_to: Option<String>,
}

type DiscoveredClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Keys are fetched again at most this often when a token names an
/// unknown one (rotation), so forged kids cannot make us hammer the provider.
const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// One relying party at one provider.
pub struct OidcClient {
    config: OidcConfig,
    client: DiscoveredClient,
    jwks_uri: String,
    validator: std::sync::RwLock<Arc<IdTokenValidator>>,
    keys_fetched: tokio::sync::Mutex<Option<std::time::Instant>>,
    states: Arc<dyn LoginStateStore>,
    http: HttpClient,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl OidcClient {
    /// Reads the provider's metadata and keys. The metadata must name the
    /// configured issuer (for a template, the same template).
    pub async fn discover(
        config: OidcConfig,
        states: Arc<dyn LoginStateStore>,
    ) -> Result<Self, OidcError> {
        let http = HttpClient::new().map_err(|e| OidcError::Config(e.to_string()))?;
        let discovery_url = match &config.discovery_url {
            Some(u) => u.clone(),
            None if config.templated() => {
                return Err(OidcError::Config(
                    "a multi-tenant issuer needs discovery_url".into(),
                ));
            }
            None => format!(
                "{}/.well-known/openid-configuration",
                config.issuer.trim_end_matches('/')
            ),
        };
        let body = get(&http, &discovery_url).await?;
        let metadata: CoreProviderMetadata = serde_json::from_slice(&body)
            .map_err(|e| OidcError::Discovery(format!("metadata: {e}")))?;
        if metadata.issuer().as_str() != config.issuer {
            return Err(OidcError::WrongIssuer(format!(
                "the provider at {discovery_url} is {}, not {}",
                metadata.issuer().as_str(),
                config.issuer
            )));
        }
        let jwks_uri = metadata.jwks_uri().as_str().to_owned();
        let jwks = get(&http, &jwks_uri).await?;
        let validator = IdTokenValidator::new(config.clone(), &jwks)?;
        let redirect = RedirectUrl::new(config.redirect_url.clone())
            .map_err(|e| OidcError::Config(format!("redirect_url: {e}")))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect);
        Ok(OidcClient {
            config,
            client,
            jwks_uri,
            validator: std::sync::RwLock::new(Arc::new(validator)),
            // The first unknown key may refresh at once.
            keys_fetched: tokio::sync::Mutex::new(None),
            states,
            http,
        })
    }

    /// The validator for the current key set.
    pub fn validator(&self) -> Arc<IdTokenValidator> {
        self.validator
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Fetches the provider's keys again. Keys rotate (new ones are
    /// published ahead of use); this runs by itself when a token names an
    /// unknown key, at most once a minute. Call it daily to drop retired
    /// keys.
    pub async fn refresh_keys(&self) -> Result<(), OidcError> {
        let mut fetched = self.keys_fetched.lock().await;
        self.fetch_keys().await?;
        *fetched = Some(std::time::Instant::now());
        Ok(())
    }

    async fn fetch_keys(&self) -> Result<Arc<IdTokenValidator>, OidcError> {
        let jwks = get(&self.http, &self.jwks_uri).await?;
        let validator = Arc::new(IdTokenValidator::new(self.config.clone(), &jwks)?);
        *self.validator.write().unwrap_or_else(|e| e.into_inner()) = validator.clone();
        Ok(validator)
    }

    /// Validates with the current keys; on an unknown key, refreshes them
    /// (rate-limited) and tries once more.
    async fn validate(&self, id_token: &str, nonce: &str) -> Result<ExternalIdentity, OidcError> {
        let current = self.validator();
        match current.validate(id_token, nonce) {
            Err(OidcError::UnknownKey) => {
                let mut fetched = self.keys_fetched.lock().await;
                // Another login may have refreshed while this one waited.
                let latest = self.validator();
                if !Arc::ptr_eq(&latest, &current) {
                    return latest.validate(id_token, nonce);
                }
                if fetched.is_some_and(|t| t.elapsed() < KEY_REFRESH_INTERVAL) {
                    return Err(OidcError::UnknownKey);
                }
                *fetched = Some(std::time::Instant::now());
                let validator = self.fetch_keys().await?;
                drop(fetched);
                tracing::info!(issuer = %self.config.issuer, "OIDC signing keys refreshed: a token named an unknown key");
                validator.validate(id_token, nonce)
            }
            other => other,
        }
    }

    /// Starts a login: a fresh state, nonce and PKCE (S256) verifier are
    /// stored; the browser goes to `authorize_url`.
    pub async fn begin_login(&self, return_to: Option<String>) -> Result<LoginStart, OidcError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let login = PendingLogin {
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            created_at: state::unix_now(),
            return_to,
        };
        self.states.put(state.secret(), login).await?;
        Ok(LoginStart {
            authorize_url: url.to_string(),
            state: state.secret().clone(),
        })
    }

    /// Finishes a login from the callback's parameters: the state is used
    /// up, the code exchanged (with the PKCE verifier) and the ID token
    /// verified.
    pub async fn complete_login(&self, callback: &Callback) -> Result<LoginOutcome, OidcError> {
        let state = callback.state.as_deref().ok_or(OidcError::StateMismatch)?;
        let login = self
            .states
            .take(state)
            .await?
            .ok_or(OidcError::StateMismatch)?;
        if state::unix_now() > login.created_at + self.config.login_timeout_secs {
            return Err(OidcError::StateExpired);
        }
        if let Some(error) = &callback.error {
            let detail = callback.error_description.as_deref().unwrap_or("");
            return Err(OidcError::ProviderError(
                format!("{error} {detail}").trim().to_owned(),
            ));
        }
        if let Some(iss) = &callback.iss
            && !self.config.templated()
            && *iss != self.config.issuer
        {
            return Err(OidcError::WrongIssuer(format!("callback from {iss}")));
        }
        let code = callback
            .code
            .clone()
            .ok_or_else(|| OidcError::ProviderError("no code in the callback".into()))?;
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| OidcError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    let detail = r
                        .error_description()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default();
                    OidcError::CodeRejected(format!("{}{detail}", r.error()))
                }
                other => OidcError::TokenEndpoint(other.to_string()),
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::InvalidToken("the token response has no ID token".into()))?
            .to_string();
        let identity = self.validate(&id_token, &login.nonce).await?;
        Ok(LoginOutcome {
            identity,
            return_to: login.return_to,
        })
    }
}

async fn get(http: &HttpClient, url: &str) -> Result<Vec<u8>, OidcError> {
    let request = openidconnect::http::Request::get(url)
        .header("accept", "application/json")
        .body(Vec::new())
        .map_err(|e| OidcError::Config(format!("{url}: {e}")))?;
    let resp = http
        .send(request)
        .await
        .map_err(|e| OidcError::Discovery(format!("{url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(OidcError::Discovery(format!(
            "{url}: HTTP {}",
            resp.status()
        )));
    }
    Ok(resp.into_body())
}
