//! The tenant signing keys for Teams sign-in, fetched from
//! [`super::M365Config::jwks_url`] and kept in memory.
//!
//! - The first sign-in fetches them; after that they are fetched again on
//!   the first use once `jwks_refresh_secs` have passed, so a key Entra
//!   retired stops working after that fetch.
//! - A token naming a `kid` the keys lack (Entra publishes new keys ahead
//!   of use, but a node may have fetched before) fetches again at once,
//!   at most once per [`REFETCH_AT_MOST_EVERY_MS`]: forged `kid`s cannot
//!   make us hammer the endpoint.
//! - When a fetch fails, the keys already held stay in use (and the next
//!   try waits as long); with none held, sign-in is unavailable.
//!
//! Times come from the caller (the app's clock), so tests move them.

use std::sync::{Arc, RwLock};

use super::token::KeySet;
use crate::oidc::HttpClient;

/// An unknown `kid`, or a failed fetch, fetches again no sooner than this.
pub const REFETCH_AT_MOST_EVERY_MS: i64 = 10_000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum KeysError {
    #[error("the signing keys at {url} could not be read: {detail}")]
    Fetch { url: String, detail: String },
    #[error("the signing keys at {url} were read moments ago and were not usable")]
    RecentlyFailed { url: String },
}

#[derive(Default)]
struct Fetches {
    /// When a fetch was last started, whatever came of it.
    attempted_ms: Option<i64>,
}

pub struct KeyCache {
    url: String,
    refresh_ms: i64,
    /// The keys held, and when they were fetched.
    keys: RwLock<Option<(Arc<KeySet>, i64)>>,
    /// Held while fetching: one fetch at a time, the others wait for it.
    fetches: tokio::sync::Mutex<Fetches>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    pub fn new(url: String, refresh_secs: u64) -> KeyCache {
        KeyCache {
            url,
            refresh_ms: (refresh_secs.min(i64::MAX as u64 / 1000) * 1000) as i64,
            keys: RwLock::new(None),
            fetches: tokio::sync::Mutex::new(Fetches::default()),
        }
    }

    fn held_since(&self) -> Option<(Arc<KeySet>, i64)> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn held(&self) -> Option<Arc<KeySet>> {
        self.held_since().map(|(k, _)| k)
    }

    /// The keys to check a token with, fetched first if none are held or
    /// they are due for a refresh.
    pub async fn current(&self, now_ms: i64) -> Result<Arc<KeySet>, KeysError> {
        // Fresh keys: no waiting behind a fetch in progress.
        if let Some((keys, at)) = self.held_since()
            && now_ms - at < self.refresh_ms
        {
            return Ok(keys);
        }
        let mut f = self.fetches.lock().await;
        // Another request may have fetched while this one waited.
        if let Some((keys, at)) = self.held_since()
            && now_ms - at < self.refresh_ms
        {
            return Ok(keys);
        }
        let held = self.held();
        if f.attempted_ms
            .is_some_and(|t| now_ms - t < REFETCH_AT_MOST_EVERY_MS)
        {
            return held.ok_or_else(|| KeysError::RecentlyFailed {
                url: self.url.clone(),
            });
        }
        match self.fetch(&mut f, now_ms).await {
            Ok(keys) => Ok(keys),
            Err(e) => match held {
                Some(keys) => {
                    tracing::warn!(error = %e, "Teams sign-in keys could not be refreshed; keeping the ones held");
                    Ok(keys)
                }
                None => Err(e),
            },
        }
    }

    /// After a token named a key that `seen` lacks: the keys fetched again
    /// (or by another request since `seen`), or `None` when a fetch was
    /// made too recently to make another.
    pub async fn refetch(
        &self,
        now_ms: i64,
        seen: &Arc<KeySet>,
    ) -> Result<Option<Arc<KeySet>>, KeysError> {
        let mut f = self.fetches.lock().await;
        if let Some(keys) = self.held()
            && !Arc::ptr_eq(&keys, seen)
        {
            return Ok(Some(keys));
        }
        if f.attempted_ms
            .is_some_and(|t| now_ms - t < REFETCH_AT_MOST_EVERY_MS)
        {
            return Ok(None);
        }
        let keys = self.fetch(&mut f, now_ms).await?;
        tracing::info!(
            keys = keys.len(),
            "Teams sign-in keys fetched again: a token named an unknown key"
        );
        Ok(Some(keys))
    }

    async fn fetch(&self, f: &mut Fetches, now_ms: i64) -> Result<Arc<KeySet>, KeysError> {
        f.attempted_ms = Some(now_ms);
        let err = |detail: String| KeysError::Fetch {
            url: self.url.clone(),
            detail,
        };
        let http = HttpClient::new().map_err(|e| err(e.to_string()))?;
        let request = openidconnect::http::Request::get(&self.url)
            .header("accept", "application/json")
            .body(Vec::new())
            .map_err(|e| err(e.to_string()))?;
        let resp = http.send(request).await.map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        let keys = Arc::new(KeySet::from_jwks(resp.body()).map_err(err)?);
        if keys.is_empty() {
            return Err(err("no signing key we can use".into()));
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some((keys.clone(), now_ms));
        Ok(keys)
    }
}
