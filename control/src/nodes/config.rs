//! `[rtcd]`: where calls' media goes. By default an rtcd runs inside this
//! process; `mode = "external"` uses rtcd nodes named in the file or by DNS.

use serde::{Deserialize, Serialize};

/// Shortest API key accepted, as rtcd itself requires.
pub use rtcd::config::MIN_SECRET_LEN;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RtcdMode {
    /// One rtcd in this process, on a loopback API port with a random key.
    #[default]
    Embedded,
    /// rtcd processes elsewhere, from `nodes` and/or `dns`.
    External,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtcdConfig {
    pub mode: RtcdMode,
    /// External nodes' API URLs, e.g. `http://10.0.0.5:8045`.
    pub nodes: Vec<String>,
    /// `host:port` whose A and AAAA records are all nodes (API port).
    pub dns: String,
    /// How often `dns` is resolved again.
    pub dns_refresh_secs: u64,
    /// The key external nodes accept (`api.keys` in their config).
    pub api_key: String,
    /// Each node is asked for its load this often…
    pub heartbeat_ms: u64,
    /// …and a node silent for this long is down.
    pub node_timeout_ms: u64,
    /// Longest wait between reconnection attempts to a down node.
    pub reconnect_max_ms: u64,
    /// A draining node's calls move to another node this long before the
    /// node's drain deadline would close them (at once if less is left),
    /// so people are moved on a deadline rather than cut off by it.
    pub drain_move_margin_secs: u64,
    /// The embedded node's media settings (rtcd's `[rtc]` section): the
    /// port (UDP, and ICE-TCP on the same number), addresses to advertise,
    /// NAT pairs, workers.
    pub media: rtcd::config::RtcConfig,
}

impl std::fmt::Debug for RtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtcdConfig")
            .field("mode", &self.mode)
            .field("nodes", &self.nodes)
            .field("dns", &self.dns)
            .field("dns_refresh_secs", &self.dns_refresh_secs)
            .field("api_key", &"<redacted>")
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("node_timeout_ms", &self.node_timeout_ms)
            .field("reconnect_max_ms", &self.reconnect_max_ms)
            .field("drain_move_margin_secs", &self.drain_move_margin_secs)
            .field("media", &self.media)
            .finish()
    }
}

impl Default for RtcdConfig {
    fn default() -> Self {
        RtcdConfig {
            mode: RtcdMode::Embedded,
            nodes: Vec::new(),
            dns: String::new(),
            dns_refresh_secs: 30,
            api_key: String::new(),
            heartbeat_ms: 1000,
            node_timeout_ms: 3000,
            reconnect_max_ms: 5000,
            drain_move_margin_secs: 30,
            media: rtcd::config::RtcConfig::default(),
        }
    }
}

impl RtcdConfig {
    /// An embedded node on loopback with an ephemeral media port: tests and
    /// single-machine trials (browsers on other machines cannot reach it).
    pub fn loopback() -> RtcdConfig {
        let mut c = RtcdConfig::default();
        c.media.bind_ip = std::net::Ipv4Addr::LOCALHOST.into();
        c.media.port = 0;
        c.media.allow_loopback = true;
        c.media.workers = 1;
        c
    }

    pub fn validate(&self, errors: &mut Vec<String>) {
        match self.mode {
            RtcdMode::Embedded => {
                if !self.nodes.is_empty() || !self.dns.is_empty() {
                    errors.push(
                        "rtcd.nodes and rtcd.dns apply only with rtcd.mode = \"external\"".into(),
                    );
                }
                if !self.api_key.is_empty() {
                    errors.push(
                        "rtcd.api_key applies only with rtcd.mode = \"external\" (the embedded node gets a random key)"
                            .into(),
                    );
                }
                let mut probe = rtcd::Config {
                    rtc: self.media.clone(),
                    ..rtcd::Config::default()
                };
                probe.api.keys = vec!["k".repeat(MIN_SECRET_LEN)];
                if let Err(more) = probe.validate() {
                    errors.extend(
                        more.into_iter()
                            .map(|e| format!("rtcd.media: {}", e.trim_start_matches("rtc."))),
                    );
                }
            }
            RtcdMode::External => {
                if self.nodes.is_empty() && self.dns.is_empty() {
                    errors.push(
                        "rtcd.mode = \"external\" needs rtcd.nodes or rtcd.dns (or both)".into(),
                    );
                }
                for n in &self.nodes {
                    if let Err(e) = super::node_key(n) {
                        errors.push(format!("rtcd.nodes: {n:?} {e}"));
                    }
                }
                if !self.dns.is_empty() && super::dns::split_host_port(&self.dns).is_none() {
                    errors.push(format!(
                        "rtcd.dns {:?} must be host:port (the nodes' API port)",
                        self.dns
                    ));
                }
                if self.api_key.len() < MIN_SECRET_LEN {
                    errors.push(format!(
                        "rtcd.api_key is {} characters; at least {MIN_SECRET_LEN} are required (one of the nodes' api.keys)",
                        self.api_key.len()
                    ));
                }
            }
        }
        if self.dns_refresh_secs == 0 {
            errors.push("rtcd.dns_refresh_secs must be positive".into());
        }
        if self.heartbeat_ms < 50 || self.node_timeout_ms < 2 * self.heartbeat_ms {
            errors.push(
                "rtcd.heartbeat_ms must be at least 50 and rtcd.node_timeout_ms at least twice it"
                    .into(),
            );
        }
        if self.reconnect_max_ms < 100 {
            errors.push("rtcd.reconnect_max_ms must be at least 100".into());
        }
        if !(1..=86_400).contains(&self.drain_move_margin_secs) {
            errors.push("rtcd.drain_move_margin_secs must be between 1 and 86400".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(c: &RtcdConfig) -> Vec<String> {
        let mut errors = Vec::new();
        c.validate(&mut errors);
        errors
    }

    #[test]
    fn the_embedded_default_is_valid() {
        assert!(problems(&RtcdConfig::default()).is_empty());
        assert!(problems(&RtcdConfig::loopback()).is_empty());
    }

    #[test]
    fn external_mistakes_are_reported_together() {
        let c = RtcdConfig {
            mode: RtcdMode::External,
            nodes: vec![
                "http://10.0.0.5:8045".into(),
                "https://10.0.0.6:8045".into(),
                "http://10.0.0.7".into(),
            ],
            dns: "rtcd.internal".into(),
            api_key: "short".into(),
            heartbeat_ms: 1000,
            node_timeout_ms: 1500,
            ..RtcdConfig::default()
        };
        let errors = problems(&c);
        for want in [
            "\"https://10.0.0.6:8045\" must start with http://",
            "\"http://10.0.0.7\" must be http://host:port",
            "rtcd.dns \"rtcd.internal\" must be host:port",
            "rtcd.api_key is 5 characters",
            "rtcd.node_timeout_ms",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{want}: {errors:#?}"
            );
        }
        assert_eq!(errors.len(), 5, "{errors:#?}");
        let none = RtcdConfig {
            mode: RtcdMode::External,
            api_key: "k".repeat(40),
            ..RtcdConfig::default()
        };
        assert!(problems(&none)[0].contains("needs rtcd.nodes or rtcd.dns"));
    }

    #[test]
    fn embedded_mistakes_name_the_rtcd_section() {
        let mut c = RtcdConfig {
            nodes: vec!["http://10.0.0.5:8045".into()],
            api_key: "k".repeat(40),
            ..RtcdConfig::default()
        };
        c.media.nat = vec!["1.2.3.4".into()];
        let errors = problems(&c);
        assert!(
            errors[0].contains("only with rtcd.mode = \"external\""),
            "{errors:#?}"
        );
        assert!(
            errors[1].contains("rtcd.api_key applies only"),
            "{errors:#?}"
        );
        assert!(
            errors[2].starts_with("rtcd.media: nat \"1.2.3.4\""),
            "{errors:#?}"
        );
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            !format!("{c:?}").contains("kkkk"),
            "the key is never printed"
        );
    }

    #[test]
    fn node_urls_become_keys() {
        assert_eq!(
            super::super::node_key("http://10.0.0.5:8045/").unwrap(),
            "http://10.0.0.5:8045"
        );
        assert_eq!(
            super::super::node_key("http://[fd00::5]:8045").unwrap(),
            "http://[fd00::5]:8045"
        );
        assert!(super::super::node_key("http://rtcd-1:8045/x").is_err());
    }
}
