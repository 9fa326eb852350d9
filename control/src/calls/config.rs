//! `[calls]`: limits and timers of calls.

use serde::{Deserialize, Serialize};

use super::ice::IceServerConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// Most sessions in one call.
    pub max_participants: u32,
    /// A direct or group call rings each callee this long at most.
    pub ring_timeout_secs: u64,
    /// A participant whose media closed and whose client has not offered
    /// again within this long leaves the call (reason `disconnected`).
    pub reconnect_grace_secs: u64,
    /// Emoji reactions per session per minute, on each node.
    pub reactions_per_minute: u32,
    /// How often each node looks for rings that timed out and
    /// participants that did not come back.
    pub sweep_ms: u64,
    /// The offloader that records, transcribes and captions calls
    /// (`http://host:port`); empty: calls cannot be recorded.
    pub offloader_url: String,
    /// The offloader's API key (its `api_key`).
    pub offloader_api_key: String,
    /// Largest file a job hands back (a long composed recording is far
    /// larger than a chat upload; `[files] max_file_bytes` does not apply).
    pub max_recording_bytes: u64,
    /// How the offloader's bots reach this control plane
    /// (`http://host:port`, the address clients use or an internal one).
    /// Empty: the listen address.
    pub bot_url: String,
    /// STUN and TURN servers inside the operator's network, handed to
    /// every client in its join answer ([`super::ice`]). None by default:
    /// never a public server.
    pub ice_servers: Vec<IceServerConfig>,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            max_participants: 100,
            ring_timeout_secs: 30,
            reconnect_grace_secs: 15,
            reactions_per_minute: 30,
            sweep_ms: 1000,
            offloader_url: String::new(),
            offloader_api_key: String::new(),
            max_recording_bytes: 16 << 30,
            bot_url: String::new(),
            ice_servers: Vec::new(),
        }
    }
}

impl CallsConfig {
    pub(crate) fn validate(&self, errors: &mut Vec<String>) {
        if !(2..=1000).contains(&self.max_participants) {
            errors.push("calls.max_participants must be between 2 and 1000".into());
        }
        if !(5..=600).contains(&self.ring_timeout_secs) {
            errors.push("calls.ring_timeout_secs must be between 5 and 600".into());
        }
        if !(1..=600).contains(&self.reconnect_grace_secs) {
            errors.push("calls.reconnect_grace_secs must be between 1 and 600".into());
        }
        if self.reactions_per_minute == 0 {
            errors.push("calls.reactions_per_minute must be at least 1".into());
        }
        let url = self.offloader_url.trim_end_matches('/');
        if !url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://") {
            errors.push("calls.offloader_url must be an http:// or https:// URL".into());
        }
        if !url.is_empty() && self.offloader_api_key.is_empty() {
            errors.push("calls.offloader_api_key must be set with calls.offloader_url".into());
        }
        if !(50..=60_000).contains(&self.sweep_ms) {
            errors.push("calls.sweep_ms must be between 50 and 60000".into());
        }
        for (i, s) in self.ice_servers.iter().enumerate() {
            s.validate(i, errors);
        }
    }
}
