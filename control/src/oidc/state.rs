//! Logins in flight: what the callback must find again (nonce, PKCE
//! verifier), kept on the server under the `state` value the provider
//! echoes back. The session store implements [`LoginStateStore`] in
//! production (so any node can finish a login another node started);
//! [`MemoryLoginStates`] serves one process and the tests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One login between the redirect to the provider and its callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub nonce: String,
    pub pkce_verifier: String,
    /// Unix seconds; the login expires `OidcConfig::login_timeout` later.
    pub created_at: u64,
    /// Where to send the user afterwards (a local path the caller chose).
    pub return_to: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("login state store: {0}")]
pub struct StateStoreError(pub String);

#[async_trait]
pub trait LoginStateStore: Send + Sync + 'static {
    /// Remembers `login` under `state` (a fresh random value).
    async fn put(&self, state: &str, login: PendingLogin) -> Result<(), StateStoreError>;
    /// Removes and returns the login under `state`: each state is good for
    /// one callback, so a replayed callback finds nothing. Must be atomic
    /// (e.g. `DELETE … RETURNING`).
    async fn take(&self, state: &str) -> Result<Option<PendingLogin>, StateStoreError>;
}

/// In-process [`LoginStateStore`], bounded: entries older than `ttl` are
/// dropped as new ones arrive.
#[derive(Debug)]
pub struct MemoryLoginStates {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<String, PendingLogin>>,
}

impl MemoryLoginStates {
    pub fn new(ttl: Duration, max: usize) -> Self {
        MemoryLoginStates {
            ttl,
            max,
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl Default for MemoryLoginStates {
    fn default() -> Self {
        MemoryLoginStates::new(Duration::from_secs(600), 10_000)
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[async_trait]
impl LoginStateStore for MemoryLoginStates {
    async fn put(&self, state: &str, login: PendingLogin) -> Result<(), StateStoreError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let cutoff = unix_now().saturating_sub(self.ttl.as_secs());
        map.retain(|_, l| l.created_at >= cutoff);
        if map.len() >= self.max {
            return Err(StateStoreError("too many logins in flight".into()));
        }
        map.insert(state.to_owned(), login);
        Ok(())
    }

    async fn take(&self, state: &str) -> Result<Option<PendingLogin>, StateStoreError> {
        Ok(self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(state))
    }
}
