//! rtcd's configuration: a TOML file, overridden by `RTCD_`-prefixed
//! environment variables (`RTCD_API__LISTEN=…`, `__` between levels).
//! Every problem is reported at once, before anything binds.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Names this node in logs, metrics and the control handshake.
    pub node_id: String,
    pub rtc: RtcConfig,
    pub api: ApiConfig,
    pub drain: DrainConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtcConfig {
    /// Address the media sockets bind to.
    pub bind_ip: IpAddr,
    /// The one UDP port for every session; ICE-TCP listens on the same number.
    pub port: u16,
    /// Accept ICE-TCP (RFC 6544, passive) for networks that block UDP.
    pub ice_tcp: bool,
    /// Addresses to advertise as host candidates. Empty: the addresses of
    /// this machine's interfaces, without loopback and container bridges.
    pub advertise: Vec<IpAddr>,
    /// 1:1 NAT pairs "external/internal": advertise `external`, while the
    /// sockets see `internal`.
    pub nat: Vec<String>,
    /// Advertise loopback addresses (tests and single-machine setups only).
    pub allow_loopback: bool,
    /// Worker threads, each owning the calls placed on it. 0: one per core.
    pub workers: usize,
    /// recvmmsg/GSO batching; off sends and receives one datagram per syscall.
    pub batching: bool,
    pub socket_buffer_bytes: usize,
    /// Most sessions per worker.
    pub max_sessions_per_worker: usize,
    pub connect_timeout_secs: u64,
    pub disconnect_timeout_secs: u64,
    /// Longest time a subscriber's video packets are kept to answer NACKs
    /// (0: no resends): the window for the slowest round trips. Longer
    /// windows cost memory per subscribed video stream.
    pub resend_window_ms: u64,
    /// Shortest such window: each stream starts here and grows with the
    /// subscriber's round trip up to `resend_window_ms`. Equal to it: a
    /// fixed window.
    pub resend_window_min_ms: u64,
    /// Most video packets kept per subscribed stream, whatever their age.
    pub resend_window_packets: usize,
    /// Subscriber writes of a video fan-out between two reads of the
    /// socket, so audio that arrives meanwhile goes out before the rest of
    /// the video. Smaller: audio waits less, at a little CPU per slice.
    pub fanout_slice: usize,
}

/// ~0.2 ms of writes on the test machine: well under the 1 ms that audio
/// may wait behind video, at a per-slice cost (one non-blocking read) that
/// is small against 128 writes.
pub const DEFAULT_FANOUT_SLICE: usize = 128;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// HTTP: control WebSocket, WHIP/WHEP, /metrics, /healthz, /readyz.
    pub listen: SocketAddr,
    /// Keys control nodes present as `Authorization: Bearer <key>`. At
    /// least 32 characters each. Keep them in the config file (mode 0600)
    /// or the environment, never on a world-readable path.
    pub keys: Vec<String>,
    /// Secret that signs WHIP/WHEP tokens (`rtcd token`). Empty: WHIP and
    /// WHEP are off.
    pub token_secret: String,
    /// Origins allowed to call WHIP/WHEP from a browser; "*" for any.
    pub cors_origins: Vec<String>,
    /// Largest control or WHIP message accepted.
    pub max_message_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainConfig {
    /// After SIGTERM, running calls get this long to end on their own.
    pub deadline_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter, e.g. "info" or "rtcd=debug,str0m=warn".
    pub filter: String,
    pub json: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: "rtcd".into(),
            rtc: RtcConfig::default(),
            api: ApiConfig::default(),
            drain: DrainConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for RtcConfig {
    fn default() -> Self {
        RtcConfig {
            bind_ip: IpAddr::from([0, 0, 0, 0]),
            port: 8443,
            ice_tcp: true,
            advertise: Vec::new(),
            nat: Vec::new(),
            allow_loopback: false,
            workers: 0,
            batching: true,
            socket_buffer_bytes: 4 << 20,
            max_sessions_per_worker: 10_000,
            connect_timeout_secs: 30,
            disconnect_timeout_secs: 15,
            resend_window_ms: rtcd_core::DEFAULT_RESEND_WINDOW.as_millis() as u64,
            resend_window_min_ms: rtcd_core::DEFAULT_RESEND_WINDOW_MIN.as_millis() as u64,
            resend_window_packets: rtcd_core::DEFAULT_RESEND_WINDOW_PACKETS,
            fanout_slice: DEFAULT_FANOUT_SLICE,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8045)),
            keys: Vec::new(),
            token_secret: String::new(),
            cors_origins: vec!["*".into()],
            max_message_bytes: 256 << 10,
        }
    }
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig { deadline_secs: 300 }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
            json: false,
        }
    }
}

/// The top-level keys of the configuration.
const SECTIONS: [&str; 5] = ["node_id", "rtc", "api", "drain", "log"];

/// Shortest accepted secret: 32 characters (~190 bits from a generator).
pub const MIN_SECRET_LEN: usize = 32;

impl Config {
    /// Loads defaults ← file (if given) ← environment, then validates.
    /// Returns every problem found, not just the first.
    pub fn load(file: Option<&Path>) -> Result<Config, Vec<String>> {
        let config = Self::load_unchecked(file)?;
        config.validate()?;
        Ok(config)
    }

    /// Loads without [`Config::validate`], for callers that fill gaps first.
    /// Each section is read on its own so that a mistake in one does not
    /// hide mistakes in the others.
    pub fn load_unchecked(file: Option<&Path>) -> Result<Config, Vec<String>> {
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
        // Only the sections are configuration: RTCD_CONFIG names the file,
        // and other RTCD_* variables (test switches) are not keys.
        fig = fig.merge(Env::prefixed("RTCD_").split("__").filter(|k| {
            let key = k.as_str().to_ascii_lowercase();
            let top = key.split("__").next().unwrap_or("");
            let top = top.split('.').next().unwrap_or("");
            SECTIONS.contains(&top)
        }));
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
            node_id: section(&fig, "node_id", &mut errors),
            rtc: section(&fig, "rtc", &mut errors),
            api: section(&fig, "api", &mut errors),
            drain: section(&fig, "drain", &mut errors),
            log: section(&fig, "log", &mut errors),
        };
        if let Ok(figment::value::Value::Dict(_, top)) = fig.find_value("") {
            for key in top.keys() {
                if !SECTIONS.contains(&key.as_str()) {
                    errors.push(format!("unknown section or key {key:?}"));
                }
            }
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.api.keys.is_empty() {
            errors.push(
                "api.keys is empty: control nodes could not authenticate (set RTCD_API__KEYS='[\"…\"]' or api.keys in the file)"
                    .into(),
            );
        }
        for (i, k) in self.api.keys.iter().enumerate() {
            if k.len() < MIN_SECRET_LEN {
                errors.push(format!(
                    "api.keys[{i}] is {} characters; at least {MIN_SECRET_LEN} are required",
                    k.len()
                ));
            }
        }
        if !self.api.token_secret.is_empty() && self.api.token_secret.len() < MIN_SECRET_LEN {
            errors.push(format!(
                "api.token_secret is {} characters; at least {MIN_SECRET_LEN} are required",
                self.api.token_secret.len()
            ));
        }
        for n in &self.rtc.nat {
            if let Err(e) = parse_nat(n) {
                errors.push(format!("rtc.nat {n:?}: {e}"));
            }
        }
        if self.rtc.socket_buffer_bytes < 64 << 10 {
            errors.push("rtc.socket_buffer_bytes must be at least 65536".into());
        }
        if self.rtc.max_sessions_per_worker == 0 {
            errors.push("rtc.max_sessions_per_worker must be at least 1".into());
        }
        if self.rtc.resend_window_ms > 10_000 {
            errors.push("rtc.resend_window_ms must be at most 10000".into());
        }
        // 0 turns resends off, whatever the floor.
        if self.rtc.resend_window_ms > 0
            && self.rtc.resend_window_min_ms > self.rtc.resend_window_ms
        {
            errors.push(
                "rtc.resend_window_min_ms must not exceed rtc.resend_window_ms (equal: a fixed window)"
                    .into(),
            );
        }
        if !(1..=10_000).contains(&self.rtc.resend_window_packets) {
            errors.push("rtc.resend_window_packets must be between 1 and 10000".into());
        }
        if !(1..=65_536).contains(&self.rtc.fanout_slice) {
            errors.push("rtc.fanout_slice must be between 1 and 65536".into());
        }
        if self.api.max_message_bytes < 4096 {
            errors.push("api.max_message_bytes must be at least 4096".into());
        }
        if self.rtc.connect_timeout_secs == 0 || self.rtc.disconnect_timeout_secs == 0 {
            errors.push(
                "rtc.connect_timeout_secs and rtc.disconnect_timeout_secs must be positive".into(),
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            errors.push(format!("log.filter {:?}: {e}", self.log.filter));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    pub fn drain_deadline(&self) -> Duration {
        Duration::from_secs(self.drain.deadline_secs)
    }

    pub fn worker_count(&self) -> usize {
        match self.rtc.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(255)
    }
}

/// "external/internal", both IP addresses.
pub fn parse_nat(s: &str) -> Result<rtcd_core::NatMapping, String> {
    let (ext, int) = s.split_once('/').ok_or("expected \"external/internal\"")?;
    let external = ext
        .trim()
        .parse()
        .map_err(|_| format!("{ext:?} is not an IP address"))?;
    let internal = int
        .trim()
        .parse()
        .map_err(|_| format!("{int:?} is not an IP address"))?;
    Ok(rtcd_core::NatMapping { external, internal })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut c = Config::default();
        c.api.keys = vec!["short".into()];
        c.api.token_secret = "also-short".into();
        c.rtc.nat = vec!["1.2.3.4".into(), "1.2.3.4/x".into()];
        c.log.filter = "==".into();
        let errors = c.validate().unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(errors[0].contains("api.keys[0]"));
    }

    #[test]
    fn a_broken_file_reports_a_problem_per_section() {
        let path = std::env::temp_dir().join(format!("rtcd-config-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "colour = 1\n[rtc]\nport = \"x\"\n[api]\nlisten = \"nope\"\n",
        )
        .unwrap();
        let errors = Config::load(Some(&path)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors.iter().any(|e| e.contains("colour")));
        assert!(errors.iter().any(|e| e.contains("u16")));
        assert!(errors.iter().any(|e| e.contains("socket address")));
    }

    #[test]
    fn a_fanout_slice_is_at_least_one_write() {
        let about_the_slice = |c: &Config| {
            c.validate()
                .err()
                .unwrap_or_default()
                .iter()
                .filter(|e| e.contains("rtc.fanout_slice"))
                .count()
        };
        let mut c = Config::default();
        assert_eq!(about_the_slice(&c), 0);
        c.rtc.fanout_slice = 0;
        assert_eq!(about_the_slice(&c), 1);
        c.rtc.fanout_slice = 65_537;
        assert_eq!(about_the_slice(&c), 1);
    }

    #[test]
    fn the_resend_window_floor_may_not_pass_its_ceiling() {
        let about_the_floor = |c: &Config| {
            c.validate()
                .err()
                .unwrap_or_default()
                .iter()
                .filter(|e| e.contains("rtc.resend_window_min_ms"))
                .count()
        };
        let mut c = Config::default();
        assert_eq!(about_the_floor(&c), 0);
        c.rtc.resend_window_min_ms = c.rtc.resend_window_ms;
        assert_eq!(about_the_floor(&c), 0, "equal: a fixed window");
        c.rtc.resend_window_min_ms += 1;
        assert_eq!(about_the_floor(&c), 1);
        c.rtc.resend_window_ms = 0;
        assert_eq!(about_the_floor(&c), 0, "0: no resends at all");
    }

    #[test]
    fn nat_pairs_parse() {
        let m = parse_nat("203.0.113.7/10.0.0.7").unwrap();
        assert_eq!(m.external, "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(m.internal, "10.0.0.7".parse::<IpAddr>().unwrap());
    }
}
