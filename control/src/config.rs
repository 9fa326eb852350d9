//! Control's configuration: a TOML file, overridden by `ENCLAVE_`-prefixed
//! environment variables (`ENCLAVE_SERVER__LISTEN=…`, `__` between levels).
//! Every problem is reported at once, before anything binds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::oidc::{GroupsOverage, OidcConfig};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub events: EventsConfig,
    pub log: LogConfig,
    pub integrations: IntegrationsConfig,
    pub oidc: OidcSection,
    pub presence: PresenceConfig,
    pub storage: StorageConfig,
    pub files: FilesConfig,
    pub rtcd: crate::nodes::RtcdConfig,
    pub calls: crate::calls::CallsConfig,
    pub m365: crate::m365::M365Config,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrationsConfig {
    /// Hosts outgoing webhooks may call: `host` (any port) or `host:port`.
    /// Empty (the default) allows none, so a hook cannot reach hosts inside
    /// the operator's network unless the operator names them.
    pub allowed_hosts: Vec<String>,
    /// Largest body `POST /hooks/{secret}` accepts.
    pub max_payload_bytes: usize,
    /// Posts per incoming webhook per minute, on each node.
    pub incoming_rate_per_minute: u32,
    /// How long an outgoing delivery may take.
    pub timeout_ms: u64,
    /// Attempts per delivery before it is given up.
    pub max_attempts: u32,
    /// Wait before the first retry; each retry waits twice as long.
    pub retry_base_ms: u64,
    /// How often a node looks for due deliveries besides being woken.
    pub poll_ms: u64,
}

impl Default for IntegrationsConfig {
    fn default() -> Self {
        IntegrationsConfig {
            allowed_hosts: Vec::new(),
            max_payload_bytes: 64 << 10,
            incoming_rate_per_minute: 60,
            timeout_ms: 5000,
            max_attempts: 5,
            retry_base_ms: 5000,
            poll_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// HTTP API, WebSocket, /metrics, /healthz, /readyz.
    pub listen: SocketAddr,
    /// Names this node in logs, metrics and the event bus.
    pub node_id: String,
    /// Where the single-node default keeps its SQLite file and local files.
    pub data_dir: PathBuf,
    /// After SIGTERM, open requests get this long to finish.
    pub drain_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://…` or `sqlite://…`. Empty: `sqlite://<data_dir>/enclave.db`.
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A session unused for this long is dead (DISA STIG: 15 minutes).
    pub idle_timeout_secs: u64,
    /// A session is dead this long after login, however busy.
    pub absolute_lifetime_secs: u64,
    pub password_min_length: usize,
    /// Of lower case, upper case, digits and others, how many a password
    /// must contain.
    pub password_min_classes: usize,
    /// Consecutive failed logins that lock an account…
    pub lockout_attempts: u32,
    /// …for this long.
    pub lockout_secs: u64,
    /// Login attempts per client address per minute, on this node.
    pub login_rate_per_minute: u32,
    /// Send the session cookie with `Secure`. Off only for plain-HTTP trials.
    pub cookie_secure: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body accepted by the JSON API.
    pub max_body_bytes: usize,
    /// Longest post, in characters.
    pub max_post_chars: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// A reconnecting client gets what it missed if it is younger than this;
    /// otherwise it is told to resync.
    pub replay_window_secs: u64,
    /// Events are deleted from the replay log after this long (at least
    /// the replay window).
    pub retention_secs: u64,
    /// Events kept per socket before the socket is treated as too slow.
    pub socket_queue: usize,
    pub ping_interval_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter, e.g. "info" or "control=debug,sqlx=warn".
    pub filter: String,
    pub json: bool,
    /// Where the audit log (JSON lines) goes: a file path, or empty for
    /// standard output.
    pub audit_file: String,
}

/// Sign-in through an OpenID Connect provider (Microsoft Entra ID or any
/// other). Off while `issuer` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSection {
    /// The issuer ID tokens carry, e.g. `https://login.microsoftonline.com/<tenant id>/v2.0`;
    /// for Entra's multi-tenant apps the template
    /// `https://login.microsoftonline.com/{tenantid}/v2.0` (then `tid` is
    /// substituted and checked, and `discovery_url` is required).
    pub issuer: String,
    /// Default: `<issuer>/.well-known/openid-configuration`.
    pub discovery_url: String,
    pub client_id: String,
    /// Empty for a public client (PKCE alone).
    pub client_secret: String,
    /// `https://<this server>/api/v1/auth/oidc/callback`, as registered.
    pub redirect_url: String,
    pub scopes: Vec<String>,
    /// Tenants (`tid`) accepted with a templated issuer; empty = any.
    pub allowed_tenants: Vec<String>,
    /// A user must be in at least one of these groups (ids as the `groups`
    /// claim lists them); empty = no group rule.
    pub required_groups: Vec<String>,
    pub groups_overage: GroupsOverage,
    /// What an identity seen for the first time gets.
    pub provisioning: Provisioning,
    /// The claim that suggests a new account's username.
    pub username_claim: String,
    /// The claim that holds the display name (kept up to date at each sign-in).
    pub display_name_claim: String,
    /// What the login page's button says.
    pub button_text: String,
    /// How long a started sign-in may take.
    pub login_timeout_secs: u64,
    /// Clock difference tolerated on the token's `exp` and `iat`.
    pub clock_skew_secs: u64,
    /// The provider's metadata and keys are read again this often (and
    /// at once, rate-limited, when a token names an unknown key).
    pub refresh_secs: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provisioning {
    /// A first sign-in creates an account (no password).
    #[default]
    Create,
    /// Only identities already bound to an account may sign in.
    Refuse,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// A connected user with no activity for this long shows as away.
    pub away_after_secs: u64,
    /// Each node writes its heartbeat this often…
    pub heartbeat_secs: u64,
    /// …and a node silent for this long is dead: its sockets no longer
    /// count.
    pub node_timeout_secs: u64,
}

impl OidcSection {
    pub fn enabled(&self) -> bool {
        !self.issuer.is_empty()
    }

    /// The client configuration; call only when [`Self::enabled`].
    pub fn client_config(&self) -> OidcConfig {
        let mut c = OidcConfig::new(
            &self.issuer,
            &self.client_id,
            Some(self.client_secret.as_str()).filter(|s| !s.is_empty()),
            &self.redirect_url,
        );
        c.discovery_url = Some(self.discovery_url.clone()).filter(|s| !s.is_empty());
        c.scopes = self.scopes.clone();
        c.allowed_tenants = self.allowed_tenants.clone();
        c.groups_overage = self.groups_overage;
        c.login_timeout_secs = self.login_timeout_secs;
        c.clock_skew_secs = self.clock_skew_secs;
        c.username_claim = self.username_claim.clone();
        c.display_name_claim = self.display_name_claim.clone();
        c
    }

    fn validate(&self, errors: &mut Vec<String>) {
        if !self.enabled() {
            if !self.client_id.is_empty() || !self.redirect_url.is_empty() {
                errors.push(
                    "oidc.issuer is required when oidc.client_id or oidc.redirect_url is set"
                        .into(),
                );
            }
            return;
        }
        let http_url = |u: &str| {
            openidconnect::url::Url::parse(u)
                .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
        };
        let templated = self.issuer.contains(crate::oidc::TENANT_PLACEHOLDER);
        if !http_url(
            &self
                .issuer
                .replace(crate::oidc::TENANT_PLACEHOLDER, "tenant"),
        ) {
            errors.push(format!(
                "oidc.issuer {:?} is not an http(s) URL",
                self.issuer
            ));
        }
        if templated && self.discovery_url.is_empty() {
            errors.push("oidc.discovery_url is required with a {tenantid} issuer".into());
        }
        if !self.discovery_url.is_empty() && !http_url(&self.discovery_url) {
            errors.push(format!(
                "oidc.discovery_url {:?} is not an http(s) URL",
                self.discovery_url
            ));
        }
        if self.client_id.is_empty() {
            errors.push("oidc.client_id is required".into());
        }
        if !http_url(&self.redirect_url) {
            errors.push(format!(
                "oidc.redirect_url {:?} is not an http(s) URL",
                self.redirect_url
            ));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            errors.push("oidc.scopes must include \"openid\"".into());
        }
        if !self.allowed_tenants.is_empty() && !templated {
            errors.push("oidc.allowed_tenants applies only to a {tenantid} issuer".into());
        }
        if self.username_claim.is_empty() || self.display_name_claim.is_empty() {
            errors.push("oidc.username_claim and oidc.display_name_claim must name claims".into());
        }
        if !(30..=3600).contains(&self.login_timeout_secs) {
            errors.push("oidc.login_timeout_secs must be between 30 and 3600".into());
        }
        if self.refresh_secs < 60 {
            errors.push("oidc.refresh_secs must be at least 60".into());
        }
    }
}

impl Default for OidcSection {
    fn default() -> Self {
        OidcSection {
            issuer: String::new(),
            discovery_url: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            redirect_url: String::new(),
            scopes: ["openid", "profile", "email"].map(String::from).to_vec(),
            allowed_tenants: Vec::new(),
            required_groups: Vec::new(),
            groups_overage: GroupsOverage::Refuse,
            provisioning: Provisioning::Create,
            username_claim: "preferred_username".into(),
            display_name_claim: "name".into(),
            button_text: "Sign in with single sign-on".into(),
            login_timeout_secs: 600,
            clock_skew_secs: 120,
            refresh_secs: 24 * 3600,
        }
    }
}

/// Where file bytes live: a directory on this node (the default), or an
/// S3-compatible store when `[storage.s3]` is present.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The local store's folder; empty: `<server.data_dir>/objects`.
    pub local_dir: PathBuf,
    /// Every key this node writes starts with it (several deployments can
    /// share a bucket), and the cleanup job looks nowhere else.
    pub key_prefix: String,
    /// How long a download link from `GET /files/{id}/link` works.
    pub link_ttl_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Section>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// e.g. `https://s3.example.org`; empty means AWS's own endpoint.
    #[serde(default)]
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// Uploads above this go in parts of this size (at least 5 MiB).
    #[serde(default = "default_part_size")]
    pub part_size: usize,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_true() -> bool {
    true
}
fn default_part_size() -> usize {
    8 << 20
}

impl std::fmt::Debug for S3Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Section")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .field("part_size", &self.part_size)
            .finish()
    }
}

impl S3Section {
    pub fn to_store_config(&self) -> crate::storage::S3Config {
        let endpoint = (!self.endpoint.is_empty()).then(|| self.endpoint.clone());
        let mut c = crate::storage::S3Config::new(
            endpoint,
            &self.bucket,
            &self.access_key_id,
            &self.secret_access_key,
        );
        c.region = self.region.clone();
        c.path_style = self.path_style;
        c.part_size = self.part_size;
        c
    }
}

/// Limits on uploaded files and the cleanup of unused ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Largest file accepted, in bytes.
    pub max_file_bytes: u64,
    /// Most files attached to one post (and sent in one upload).
    pub max_files_per_post: usize,
    /// If not empty, only these types (`image/png`, or `image/*`) are
    /// accepted. The type is read from the bytes, not the client's claim.
    pub allowed_types: Vec<String>,
    /// Types refused even when allowed (executables by default).
    pub blocked_types: Vec<String>,
    /// Images larger than this get no thumbnail (they are decoded in memory).
    pub thumbnail_max_source_bytes: u64,
    /// Images with more pixels than this get no thumbnail: a small file
    /// can declare a huge canvas (a decompression bomb).
    pub thumbnail_max_pixels: u64,
    /// How often this node looks for unused uploads and orphaned objects.
    pub cleanup_interval_secs: u64,
    /// An upload never attached to a post is deleted after this long.
    pub unattached_grace_secs: u64,
    /// An object with no database row is deleted once it is this old
    /// (well beyond the longest upload, whose row comes after its bytes).
    pub orphan_grace_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            local_dir: PathBuf::new(),
            key_prefix: "files/".into(),
            link_ttl_secs: 300,
            s3: None,
        }
    }
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            away_after_secs: 5 * 60,
            heartbeat_secs: 10,
            node_timeout_secs: 45,
        }
    }
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            max_file_bytes: 100 << 20,
            max_files_per_post: 10,
            allowed_types: Vec::new(),
            blocked_types: vec![
                "application/vnd.microsoft.portable-executable".into(),
                "application/x-msdownload".into(),
                "application/x-executable".into(),
                "application/x-mach-binary".into(),
            ],
            thumbnail_max_source_bytes: 32 << 20,
            thumbnail_max_pixels: 40_000_000,
            cleanup_interval_secs: 600,
            unattached_grace_secs: 24 * 3600,
            orphan_grace_secs: 3600,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8065)),
            node_id: "control".into(),
            data_dir: PathBuf::from("enclave-data"),
            drain_secs: 30,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: String::new(),
            max_connections: 10,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            idle_timeout_secs: 15 * 60,
            absolute_lifetime_secs: 12 * 3600,
            password_min_length: 12,
            password_min_classes: 3,
            lockout_attempts: 5,
            lockout_secs: 15 * 60,
            login_rate_per_minute: 20,
            cookie_secure: true,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 256 << 10,
            max_post_chars: 16_383,
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            replay_window_secs: 300,
            retention_secs: 24 * 3600,
            socket_queue: 256,
            ping_interval_secs: 30,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
            json: false,
            audit_file: String::new(),
        }
    }
}

const SECTIONS: [&str; 14] = [
    "server",
    "database",
    "auth",
    "limits",
    "events",
    "log",
    "integrations",
    "oidc",
    "presence",
    "storage",
    "files",
    "rtcd",
    "calls",
    "m365",
];

impl Config {
    /// Loads defaults ← file (if given) ← environment, then validates.
    /// Returns every problem found, not just the first.
    pub fn load(file: Option<&Path>) -> Result<Config, Vec<String>> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(vec![format!(
                    "config file {} does not exist",
                    path.display()
                )]);
            }
            fig = fig.merge(Toml::file(path));
        }
        // Only configuration sections come from ENCLAVE_* variables: the
        // test and setup switches (ENCLAVE_REQUIRE_BROWSER, ENCLAVE_TEST_S3_*,
        // …) share the prefix but are not keys.
        fig = fig.merge(Env::prefixed("ENCLAVE_").split("__").filter(|k| {
            let key = k.as_str().to_ascii_lowercase();
            let top = key.split("__").next().unwrap_or("");
            SECTIONS.contains(&top.split('.').next().unwrap_or(""))
        }));
        Self::from_figment(&fig)
    }

    /// Each section is read on its own so that a mistake in one does not
    /// hide mistakes in the others; then the values are checked together.
    pub fn from_figment(fig: &Figment) -> Result<Config, Vec<String>> {
        let mut errors = Vec::new();
        fn section<T: serde::de::DeserializeOwned + Default>(
            fig: &Figment,
            key: &str,
            errors: &mut Vec<String>,
        ) -> T {
            fig.extract_inner(key).unwrap_or_else(|e| {
                errors.extend(e.into_iter().map(|e| e.to_string()));
                T::default()
            })
        }
        let config = Config {
            server: section(fig, "server", &mut errors),
            database: section(fig, "database", &mut errors),
            auth: section(fig, "auth", &mut errors),
            limits: section(fig, "limits", &mut errors),
            events: section(fig, "events", &mut errors),
            log: section(fig, "log", &mut errors),
            integrations: section(fig, "integrations", &mut errors),
            oidc: section(fig, "oidc", &mut errors),
            presence: section(fig, "presence", &mut errors),
            storage: section(fig, "storage", &mut errors),
            files: section(fig, "files", &mut errors),
            rtcd: section(fig, "rtcd", &mut errors),
            calls: section(fig, "calls", &mut errors),
            m365: section(fig, "m365", &mut errors),
        };
        if let Ok(figment::value::Value::Dict(_, top)) = fig.find_value("") {
            for key in top.keys() {
                if !SECTIONS.contains(&key.as_str()) {
                    errors.push(format!("unknown section or key {key:?}"));
                }
            }
        }
        if let Err(more) = config.validate() {
            errors.extend(more);
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let url = &self.database.url;
        if !(url.is_empty()
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            errors.push(format!(
                "database.url must start with postgres:// or sqlite: (got {:?})",
                url.split(':').next().unwrap_or("")
            ));
        }
        if self.database.max_connections == 0 {
            errors.push("database.max_connections must be at least 1".into());
        }
        let a = &self.auth;
        if a.idle_timeout_secs == 0 {
            errors.push("auth.idle_timeout_secs must be positive".into());
        }
        if a.absolute_lifetime_secs < a.idle_timeout_secs {
            errors
                .push("auth.absolute_lifetime_secs must be at least auth.idle_timeout_secs".into());
        }
        if a.password_min_length < 8 {
            errors.push("auth.password_min_length must be at least 8".into());
        }
        if a.password_min_classes > 4 {
            errors.push("auth.password_min_classes must be between 0 and 4".into());
        }
        if a.lockout_attempts == 0 {
            errors.push("auth.lockout_attempts must be at least 1".into());
        }
        if a.login_rate_per_minute == 0 {
            errors.push("auth.login_rate_per_minute must be at least 1".into());
        }
        if self.limits.max_body_bytes < 4096 {
            errors.push("limits.max_body_bytes must be at least 4096".into());
        }
        if self.limits.max_post_chars == 0 {
            errors.push("limits.max_post_chars must be at least 1".into());
        }
        if self.events.retention_secs < self.events.replay_window_secs {
            errors.push("events.retention_secs must be at least events.replay_window_secs".into());
        }
        let i = &self.integrations;
        if i.max_payload_bytes == 0 || i.max_payload_bytes > self.limits.max_body_bytes {
            errors.push("integrations.max_payload_bytes must be 1 to limits.max_body_bytes".into());
        }
        if i.incoming_rate_per_minute == 0 {
            errors.push("integrations.incoming_rate_per_minute must be at least 1".into());
        }
        if i.timeout_ms == 0 || i.max_attempts == 0 || i.poll_ms == 0 {
            errors
                .push("integrations.timeout_ms, max_attempts and poll_ms must be positive".into());
        }
        if self.events.socket_queue < 16 {
            errors.push("events.socket_queue must be at least 16".into());
        }
        if self.events.ping_interval_secs == 0 {
            errors.push("events.ping_interval_secs must be positive".into());
        }
        if self.server.node_id.is_empty() || self.server.node_id.len() > 64 {
            errors.push("server.node_id must be 1 to 64 characters".into());
        }
        self.oidc.validate(&mut errors);
        let p = &self.presence;
        if p.heartbeat_secs == 0 || p.node_timeout_secs < 2 * p.heartbeat_secs {
            errors.push(
                "presence.heartbeat_secs must be positive and presence.node_timeout_secs at least twice it".into(),
            );
        }
        if p.away_after_secs == 0 {
            errors.push("presence.away_after_secs must be positive".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            errors.push(format!("log.filter {:?}: {e}", self.log.filter));
        }
        self.validate_files(&mut errors);
        self.rtcd.validate(&mut errors);
        self.calls.validate(&mut errors);
        self.m365.validate(&mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn validate_files(&self, errors: &mut Vec<String>) {
        let st = &self.storage;
        let prefix_ok = st.key_prefix.ends_with('/')
            && crate::storage::ObjectKey::new(st.key_prefix.trim_end_matches('/')).is_ok();
        if !prefix_ok {
            errors.push(format!(
                "storage.key_prefix must be key segments ending in '/' (got {:?})",
                st.key_prefix
            ));
        }
        if !(1..=7 * 24 * 3600).contains(&st.link_ttl_secs) {
            errors.push("storage.link_ttl_secs must be 1 s to 7 days".into());
        }
        if let Some(s3) = &st.s3 {
            if s3.bucket.is_empty() {
                errors.push("storage.s3.bucket must not be empty".into());
            }
            if s3.access_key_id.is_empty() || s3.secret_access_key.is_empty() {
                errors.push("storage.s3 needs access_key_id and secret_access_key".into());
            }
            if s3.part_size < crate::storage::MIN_PART_SIZE {
                errors.push(format!(
                    "storage.s3.part_size must be at least {} bytes",
                    crate::storage::MIN_PART_SIZE
                ));
            }
            if !(s3.endpoint.is_empty()
                || s3.endpoint.starts_with("http://")
                || s3.endpoint.starts_with("https://"))
            {
                errors.push("storage.s3.endpoint must start with http:// or https://".into());
            }
        }
        let f = &self.files;
        if f.max_file_bytes == 0 {
            errors.push("files.max_file_bytes must be at least 1".into());
        }
        if !(1..=100).contains(&f.max_files_per_post) {
            errors.push("files.max_files_per_post must be 1 to 100".into());
        }
        for (key, list) in [
            ("files.allowed_types", &f.allowed_types),
            ("files.blocked_types", &f.blocked_types),
        ] {
            for t in list {
                if !crate::files::kind::valid_pattern(t) {
                    errors.push(format!(
                        "{key}: {t:?} is not a type like \"image/png\" or \"image/*\""
                    ));
                }
            }
        }
        if f.cleanup_interval_secs == 0 {
            errors.push("files.cleanup_interval_secs must be positive".into());
        }
        if f.orphan_grace_secs < 60 {
            errors.push("files.orphan_grace_secs must be at least 60".into());
        }
    }

    /// The local object store's folder.
    pub fn local_store_dir(&self) -> PathBuf {
        if self.storage.local_dir.as_os_str().is_empty() {
            self.server.data_dir.join("objects")
        } else {
            self.storage.local_dir.clone()
        }
    }

    /// The database to use: the configured URL, or the single-node default.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.server.data_dir.join("enclave.db").display()
            )
        } else {
            self.database.url.clone()
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.auth.idle_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(Config::default().auth.idle_timeout_secs, 900);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let fig = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(
            "colour = 1\n[server]\nlisten = \"nope\"\n[auth]\nidle_timeout_secs = \"x\"\npassword_min_length = 3\n[database]\nurl = \"mysql://x\"\n[log]\nfilter = \"==\"\n",
        ));
        let errors = Config::from_figment(&fig).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("colour")), "{errors:#?}");
        assert!(
            errors.iter().any(|e| e.contains("socket address")),
            "{errors:#?}"
        );
        assert!(errors.iter().any(|e| e.contains("u64")), "{errors:#?}");
        assert!(
            errors.iter().any(|e| e.contains("database.url")),
            "{errors:#?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("log.filter")),
            "{errors:#?}"
        );
        assert_eq!(errors.len(), 5, "{errors:#?}");
    }

    #[test]
    fn oidc_mistakes_are_reported_with_the_others() {
        let fig = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(
            "[oidc]\nissuer = \"https://login.microsoftonline.com/{tenantid}/v2.0\"\nredirect_url = \"/callback\"\nscopes = [\"profile\"]\n[presence]\nheartbeat_secs = 10\nnode_timeout_secs = 5\n",
        ));
        let errors = Config::from_figment(&fig).unwrap_err();
        for want in [
            "oidc.discovery_url",
            "oidc.client_id",
            "oidc.redirect_url",
            "openid",
            "presence.heartbeat_secs",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{want}: {errors:#?}"
            );
        }
        let fig = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[oidc]\nprovisioning = \"maybe\"\n"));
        let errors = Config::from_figment(&fig).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("maybe")), "{errors:#?}");
        // Off by default, and a client id without an issuer is a mistake.
        assert!(!Config::default().oidc.enabled());
        let mut c = Config::default();
        c.oidc.client_id = "enclave".into();
        assert!(c.validate().unwrap_err()[0].contains("oidc.issuer"));
    }

    #[test]
    fn storage_and_file_mistakes_are_reported_together() {
        let fig = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(
            "[storage]\nkey_prefix = \"../x\"\nlink_ttl_secs = 0\n[storage.s3]\nbucket = \"\"\naccess_key_id = \"a\"\nsecret_access_key = \"s\"\npart_size = 1\n[files]\nmax_file_bytes = 0\nallowed_types = [\"image\", \"image/*\"]\n",
        ));
        let errors = Config::from_figment(&fig).unwrap_err();
        for want in [
            "storage.key_prefix",
            "storage.link_ttl_secs",
            "storage.s3.bucket",
            "storage.s3.part_size",
            "files.max_file_bytes",
            "files.allowed_types: \"image\"",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{want}: {errors:#?}"
            );
        }
        assert_eq!(errors.len(), 6, "{errors:#?}");
        let s3 = format!("{:?}", Config::from_figment(&Figment::from(Serialized::defaults(Config::default())).merge(Toml::string("[storage.s3]\nbucket = \"b\"\naccess_key_id = \"a\"\nsecret_access_key = \"hunter2\"\n"))).unwrap());
        assert!(!s3.contains("hunter2"), "the secret key is never printed");
    }

    #[test]
    fn the_default_database_is_a_sqlite_file_in_the_data_dir() {
        let mut c = Config::default();
        c.server.data_dir = "/var/lib/enclave".into();
        assert_eq!(
            c.database_url(),
            "sqlite:///var/lib/enclave/enclave.db?mode=rwc"
        );
    }
}
