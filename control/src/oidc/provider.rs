//! [`Provider`]: the configured identity provider as the app uses it. The
//! [`OidcClient`] is built from the provider's metadata on first use (so a
//! provider that is down at startup does not stop the node) and rebuilt
//! every `oidc.refresh_secs` by [`refresh_loop`], which re-reads the
//! metadata and the keys. An unknown `kid` in between refreshes the keys
//! at once, rate-limited ([`OidcClient`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::RwLock;

use super::{LoginStateStore, OidcClient, OidcError};
use crate::config::OidcSection;

/// After a failed discovery, the refresh loop tries again this soon.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// A login that finds no client waits for a discovery at most this often,
/// so a provider that is down is not asked once per click.
const DISCOVER_AT_MOST_EVERY: Duration = Duration::from_secs(5);

pub struct Provider {
    pub settings: OidcSection,
    states: Arc<dyn LoginStateStore>,
    client: RwLock<Option<Arc<OidcClient>>>,
    last_attempt: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Provider {
    pub fn new(settings: OidcSection, states: Arc<dyn LoginStateStore>) -> Self {
        Provider {
            settings,
            states,
            client: RwLock::new(None),
            last_attempt: tokio::sync::Mutex::new(None),
        }
    }

    /// The client, discovering the provider first if that has not
    /// succeeded yet.
    pub async fn client(&self) -> Result<Arc<OidcClient>, OidcError> {
        if let Some(c) = self.client.read().await.clone() {
            return Ok(c);
        }
        let mut last = self.last_attempt.lock().await;
        if let Some(c) = self.client.read().await.clone() {
            return Ok(c);
        }
        if last.is_some_and(|t| t.elapsed() < DISCOVER_AT_MOST_EVERY) {
            return Err(OidcError::Discovery(
                "the provider was unreachable moments ago".into(),
            ));
        }
        *last = Some(tokio::time::Instant::now());
        self.discover().await
    }

    /// Reads the metadata and keys again and swaps the client in. Logins in
    /// flight survive: their state is in the shared store.
    pub async fn discover(&self) -> Result<Arc<OidcClient>, OidcError> {
        let client = Arc::new(
            OidcClient::discover(self.settings.client_config(), self.states.clone()).await?,
        );
        *self.client.write().await = Some(client.clone());
        Ok(client)
    }
}

/// Keeps the provider's metadata and keys fresh; runs until aborted.
pub async fn refresh_loop(provider: Arc<Provider>) {
    let every = Duration::from_secs(provider.settings.refresh_secs);
    loop {
        let wait = match provider.discover().await {
            Ok(_) => every,
            Err(e) => {
                tracing::warn!(error = %e, issuer = %provider.settings.issuer, "OpenID Connect provider metadata could not be read; sign-in waits for it");
                RETRY_AFTER_FAILURE.min(every)
            }
        };
        tokio::time::sleep(wait).await;
    }
}
