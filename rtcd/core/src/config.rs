//! What the core needs to know about its host; the driver fills it in.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use str0m::config::DtlsCert;

/// A 1:1 NAT: rtcd advertises `external` but its sockets see `internal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatMapping {
    pub external: IpAddr,
    pub internal: IpAddr,
}

#[derive(Clone)]
pub struct CoreConfig {
    /// Index of the worker running this core; prefixes every local ICE ufrag.
    pub worker: u8,
    /// Addresses advertised as UDP host candidates (after NAT mapping).
    pub udp_candidates: Vec<SocketAddr>,
    /// Addresses advertised as passive ICE-TCP host candidates.
    pub tcp_candidates: Vec<SocketAddr>,
    pub nat: Vec<NatMapping>,
    pub dtls_cert: DtlsCert,
    /// A session that never connects is closed after this long.
    pub connect_timeout: Duration,
    /// A connected session that loses connectivity is closed after this long.
    pub disconnect_timeout: Duration,
    /// Least time between two keyframe requests relayed to one publisher layer.
    pub keyframe_request_interval: Duration,
    /// Most sessions this core accepts; further joins are refused.
    pub max_sessions: usize,
}

impl CoreConfig {
    pub fn new(dtls_cert: DtlsCert) -> Self {
        CoreConfig {
            worker: 0,
            udp_candidates: Vec::new(),
            tcp_candidates: Vec::new(),
            nat: Vec::new(),
            dtls_cert,
            connect_timeout: Duration::from_secs(30),
            disconnect_timeout: Duration::from_secs(15),
            keyframe_request_interval: Duration::from_millis(500),
            max_sessions: 10_000,
        }
    }

    /// The address str0m should see as the local end, for a packet that
    /// arrived at `local` (maps internal → external).
    pub(crate) fn to_advertised(&self, local: SocketAddr) -> SocketAddr {
        match self.nat.iter().find(|m| m.internal == local.ip()) {
            Some(m) => SocketAddr::new(m.external, local.port()),
            None => local,
        }
    }

    /// The socket address to send from, for str0m's advertised source.
    pub(crate) fn to_internal(&self, advertised: SocketAddr) -> SocketAddr {
        match self.nat.iter().find(|m| m.external == advertised.ip()) {
            Some(m) => SocketAddr::new(m.internal, advertised.port()),
            None => advertised,
        }
    }
}
