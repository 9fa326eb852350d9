//! Microsoft 365: Enclave inside Teams and Outlook. `[m365]` in the
//! configuration; off unless `enabled`.
//!
//! - [`cloud`]: the hosts of the commercial, GCC High and DoD clouds.
//! - [`tab`]: the tab page, who may frame it, and its configuration.
//! - [`graph`]: app-only calls to Microsoft Graph (token per tenant,
//!   `sendActivityNotification`).
//! - [`notify`]: who gets which Teams activity notification, and the
//!   worker that sends them from the outbox.
//! - [`token`]: the checks on a Teams SSO token; [`jwks`]: the tenant
//!   signing keys they use (`POST /api/v1/m365/session` trades a token
//!   for a session).
//! - [`package`]: the Teams app package (manifest and icons) for the site.

pub mod cloud;
pub mod graph;
pub mod jwks;
pub mod notify;
pub mod package;
pub mod tab;
pub mod token;

use serde::{Deserialize, Serialize};

pub use cloud::{Cloud, CloudHosts};

use crate::config::Provisioning;
use crate::oidc::is_guid;

/// The tab page's path; `contentUrl` of the app's tabs.
pub const TAB_PATH: &str = "/m365/tab";
/// The personal tab's entity id.
pub const TAB_ENTITY_ID: &str = "enclave";
/// The tab Teams opens from an activity notification; its deep links
/// carry `subEntityId` `post_<post id>` (or `call_<channel id>`).
pub const NOTIFICATION_ENTITY_ID: &str = "notification_preview";

/// One kind of Teams activity notification: declared in the app manifest
/// (`activities.activityTypes`) and named by each Graph call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityType {
    pub name: &'static str,
    pub description: &'static str,
    /// Teams fills `{actor}` and `{place}` from the call's
    /// `templateParameters`.
    pub template: &'static str,
}

pub const MENTION: ActivityType = ActivityType {
    name: "mention",
    description: "Someone mentioned you in a channel",
    template: "{actor} mentioned you in {place}",
};
pub const DIRECT_MESSAGE: ActivityType = ActivityType {
    name: "direct_message",
    description: "Someone sent you a direct message",
    template: "{actor} sent you a message in {place}",
};
pub const CALL_RINGING: ActivityType = ActivityType {
    name: "call_ringing",
    description: "Someone is calling you",
    template: "{actor} is calling you in {place}",
};
pub const ACTIVITY_TYPES: [ActivityType; 3] = [MENTION, DIRECT_MESSAGE, CALL_RINGING];

/// `[m365]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct M365Config {
    /// Off: no app package, no Teams sign-in, no Graph calls.
    pub enabled: bool,
    pub cloud: Cloud,
    /// This site's origin as Teams and browsers reach it
    /// (`https://enclave.example.org`): the tab's address, `validDomains`
    /// and the host in the App ID URI `api://<host>/<client id>`.
    pub public_url: String,
    /// The Entra app registration's client (application) id.
    pub client_id: String,
    /// Tenants (`tid`) whose users may sign in from Teams. Required: a
    /// Teams token from any other tenant is refused.
    pub allowed_tenants: Vec<String>,
    /// A first sign-in from Teams creates the account, or is refused.
    pub provisioning: Provisioning,
    /// Where the tenant signing keys are; empty: the cloud's JWKS
    /// (an air-gapped site points this at its own mirror).
    pub jwks_url: String,
    /// Clock difference tolerated on `exp`, `nbf` and `iat`.
    pub clock_skew_secs: u64,
    /// Keys are fetched again this often (and at once for an unknown `kid`).
    pub jwks_refresh_secs: u64,
    /// Origins besides the cloud's own allowed to frame the tab and to
    /// speak the Teams host protocol to it (a private or test host).
    pub extra_host_origins: Vec<String>,
    pub app: AppConfig,
    pub notifications: NotificationsConfig,
}

impl Default for M365Config {
    fn default() -> Self {
        M365Config {
            enabled: false,
            cloud: Cloud::Commercial,
            public_url: String::new(),
            client_id: String::new(),
            allowed_tenants: Vec::new(),
            provisioning: Provisioning::Create,
            jwks_url: String::new(),
            clock_skew_secs: 60,
            jwks_refresh_secs: 24 * 3600,
            extra_host_origins: Vec::new(),
            app: AppConfig::default(),
            notifications: NotificationsConfig::default(),
        }
    }
}

/// `[m365.app]`: what the generated Teams app package says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// The Teams app id (a GUID); empty: the client id.
    pub id: String,
    /// Manifest schema version.
    pub manifest_version: String,
    /// The package's own version, raised on each change an admin uploads.
    pub version: String,
    pub short_name: String,
    pub full_name: String,
    pub short_description: String,
    pub full_description: String,
    pub developer_name: String,
    /// Developer, privacy and terms pages; empty: the site's own address.
    pub website_url: String,
    pub privacy_url: String,
    pub terms_url: String,
    pub accent_color: String,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            id: String::new(),
            manifest_version: "1.22".into(),
            version: "1.0.0".into(),
            short_name: "Enclave".into(),
            full_name: "Enclave calls and chat".into(),
            short_description: "Calls and chat that stay on your own servers.".into(),
            full_description: "Channels, direct messages, calls, recordings and \
                transcripts, hosted by your organisation: nothing leaves its network."
                .into(),
            developer_name: "Enclave".into(),
            website_url: String::new(),
            privacy_url: String::new(),
            terms_url: String::new(),
            accent_color: "#1F4E79".into(),
        }
    }
}

/// How much of a message a Teams activity notification may carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preview {
    /// Nothing of the message: who and where only (ID-only).
    #[default]
    None,
    /// The first `preview_chars` characters.
    Short,
}

/// `[m365.notifications]`: Teams activity-feed notifications through
/// Microsoft Graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    pub enabled: bool,
    pub preview: Preview,
    /// At most 150 (Teams shows no more).
    pub preview_chars: usize,
    /// The app registration's secret, for Graph's client-credentials grant.
    pub client_secret: String,
    /// Overrides the cloud's sign-in and Graph URLs (a proxy, or a test).
    pub login_url: String,
    pub graph_url: String,
    pub timeout_ms: u64,
    pub max_attempts: u32,
    /// The first retry waits this long, each next one twice as long (a
    /// 429's or 503's `Retry-After` is honoured instead when given).
    pub retry_base_ms: u64,
    /// Each node looks for due notifications this often, besides being
    /// woken by its own posts and calls.
    pub poll_ms: u64,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            enabled: false,
            preview: Preview::None,
            preview_chars: 100,
            client_secret: String::new(),
            login_url: String::new(),
            graph_url: String::new(),
            timeout_ms: 10_000,
            max_attempts: 5,
            retry_base_ms: 2_000,
            poll_ms: 1_000,
        }
    }
}

impl M365Config {
    /// The origin's host, as in the App ID URI.
    pub fn public_host(&self) -> Option<String> {
        let url = openidconnect::url::Url::parse(&self.public_url).ok()?;
        let host = url.host_str()?;
        Some(match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        })
    }

    /// `api://<host>/<client id>`: the audience of v1 tokens, and the
    /// manifest's `webApplicationInfo.resource`.
    pub fn app_id_uri(&self) -> String {
        format!(
            "api://{}/{}",
            self.public_host().unwrap_or_default(),
            self.client_id
        )
    }

    pub fn app_id(&self) -> &str {
        if self.app.id.is_empty() {
            &self.client_id
        } else {
            &self.app.id
        }
    }

    /// Whether posts and calls raise Teams activity notifications.
    pub fn notifications_on(&self) -> bool {
        self.enabled && self.notifications.enabled
    }

    /// The sign-in URL client-credentials tokens come from: the
    /// override, or the cloud's.
    pub fn login_url(&self) -> &str {
        match self.notifications.login_url.trim_end_matches('/') {
            "" => self.cloud.hosts().login_url,
            u => u,
        }
    }

    /// Where Graph calls go: the override, or the cloud's.
    pub fn graph_url(&self) -> &str {
        match self.notifications.graph_url.trim_end_matches('/') {
            "" => self.cloud.hosts().graph_url,
            u => u,
        }
    }

    pub fn jwks_url(&self) -> String {
        if self.jwks_url.is_empty() {
            self.cloud.jwks_url()
        } else {
            self.jwks_url.clone()
        }
    }

    pub(crate) fn validate(&self, errors: &mut Vec<String>) {
        if !self.enabled {
            return;
        }
        let url_ok = |u: &str| {
            openidconnect::url::Url::parse(u)
                .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
        };
        if !url_ok(&self.public_url) {
            errors.push(format!(
                "m365.public_url {:?} is not an http(s) URL",
                self.public_url
            ));
        }
        if !is_guid(&self.client_id) {
            errors.push("m365.client_id must be the Entra app's client id (a GUID)".into());
        }
        if !self.app.id.is_empty() && !is_guid(&self.app.id) {
            errors.push("m365.app.id must be a GUID".into());
        }
        package::validate_app(self, errors);
        if self.allowed_tenants.is_empty() {
            errors.push("m365.allowed_tenants must list the tenants that may sign in".into());
        }
        for t in &self.allowed_tenants {
            if !is_guid(t) {
                errors.push(format!(
                    "m365.allowed_tenants: {t:?} is not a tenant id (GUID)"
                ));
            }
        }
        if !self.jwks_url.is_empty() && !url_ok(&self.jwks_url) {
            errors.push(format!(
                "m365.jwks_url {:?} is not an http(s) URL",
                self.jwks_url
            ));
        }
        if self.clock_skew_secs > 300 {
            errors.push("m365.clock_skew_secs must be at most 300".into());
        }
        if self.jwks_refresh_secs < 60 {
            errors.push("m365.jwks_refresh_secs must be at least 60".into());
        }
        for o in &self.extra_host_origins {
            let ok = openidconnect::url::Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "https" | "http")
                    && u.host().is_some()
                    && u.path() == "/"
                    && !o.ends_with('/')
            });
            if !ok {
                errors.push(format!(
                    "m365.extra_host_origins: {o:?} is not an origin (scheme://host[:port])"
                ));
            }
        }
        let n = &self.notifications;
        if n.enabled {
            if n.client_secret.is_empty() {
                errors.push("m365.notifications.client_secret is required to call Graph".into());
            }
            if !(1..=150).contains(&n.preview_chars) {
                errors.push("m365.notifications.preview_chars must be between 1 and 150".into());
            }
            if !(1..=20).contains(&n.max_attempts) {
                errors.push("m365.notifications.max_attempts must be between 1 and 20".into());
            }
            if !(100..=120_000).contains(&n.timeout_ms) {
                errors.push("m365.notifications.timeout_ms must be between 100 and 120000".into());
            }
            if !(10..=600_000).contains(&n.retry_base_ms) {
                errors
                    .push("m365.notifications.retry_base_ms must be between 10 and 600000".into());
            }
            if !(10..=60_000).contains(&n.poll_ms) {
                errors.push("m365.notifications.poll_ms must be between 10 and 60000".into());
            }
            for (name, u) in [("login_url", &n.login_url), ("graph_url", &n.graph_url)] {
                if !u.is_empty() && !url_ok(u) {
                    errors.push(format!(
                        "m365.notifications.{name} {u:?} is not an http(s) URL"
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A complete, valid section: the unit tests' site.
    pub(crate) fn enabled() -> M365Config {
        M365Config {
            enabled: true,
            public_url: "https://enclave.example.org".into(),
            client_id: "00000000-1111-2222-3333-444444444444".into(),
            allowed_tenants: vec!["72f988bf-86f1-41af-91ab-2d7cd011db47".into()],
            ..M365Config::default()
        }
    }

    #[test]
    fn a_complete_section_passes_and_names_its_app_id_uri() {
        let c = enabled();
        let mut errors = Vec::new();
        c.validate(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            c.app_id_uri(),
            "api://enclave.example.org/00000000-1111-2222-3333-444444444444"
        );
        assert_eq!(c.app_id(), c.client_id);
    }

    #[test]
    fn each_mistake_is_named() {
        let mut c = enabled();
        c.client_id = "enclave".into();
        c.allowed_tenants = vec!["contoso.onmicrosoft.com".into()];
        c.extra_host_origins = vec!["http://127.0.0.1:9/path".into()];
        c.notifications.enabled = true;
        let mut errors = Vec::new();
        c.validate(&mut errors);
        let all = errors.join("\n");
        for needle in [
            "m365.client_id",
            "contoso.onmicrosoft.com",
            "extra_host_origins",
            "client_secret",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
    }
}
